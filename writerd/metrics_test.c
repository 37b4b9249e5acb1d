/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of metrics.c: the --metrics address rule, the HTTP request-head
 * parser, and the exposition text (counters, error kinds, gauges and their label
 * escaping, the store's figures). The server itself is tested end to end in
 * tests/writerd/writerd_test.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "writerd.h"

static void test_addr(void) {
  static const char *good[] = {"127.0.0.1:0",    "0.0.0.0:9100", "127.0.0.1:65535",
                               "[::1]:9100",     "[::]:0",       "[fe80::1]:1",
                               "10.1.2.3:000080"};
  static const char *bad[] = {"",
                              "127.0.0.1",
                              "127.0.0.1:",
                              "127.0.0.1:65536",
                              "127.0.0.1:-1",
                              "127.0.0.1:+80",
                              ":80",
                              "localhost:80",
                              "::1:80",
                              "[::1]80",
                              "[::1]",
                              "[::1]:",
                              "[127.0.0.1]:80",
                              "1.2.3:80",
                              "127.0.0.1:80x",
                              "127.0.0.1:0000080",
                              "[::1%lo]:80",
                              "127.0.0.1 :80",
                              "[]:80"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    int rc = wd_metrics_addr_check(good[i]);
    if (rc) fprintf(stderr, "refused: %s\n", good[i]);
    CU_ASSERT_EQUAL(rc, 0);
  }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = wd_metrics_addr_check(bad[i]);
    if (rc != -EINVAL) fprintf(stderr, "accepted: %s\n", bad[i]);
    CU_ASSERT_EQUAL(rc, -EINVAL);
  }
  CU_ASSERT_EQUAL(wd_metrics_addr_check(NULL), -EINVAL);
}

static int parse(const char *s, struct wd_http_req *req) {
  return wd_http_parse(s, strlen(s), req);
}

static void test_http_parse(void) {
  struct wd_http_req r;
  const char *get =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: Prometheus/2\r\n"
      "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nX-Empty:\r\n\r\n";
  CU_ASSERT_EQUAL(parse(get, &r), (int)strlen(get));
  CU_ASSERT(r.get && r.metrics);
  /* every proper prefix may still become this head */
  for (size_t n = 0; n < strlen(get); n++) CU_ASSERT_EQUAL(wd_http_parse(get, n, &r), 0);
  /* what follows the head is not the head's business */
  char more[200];
  snprintf(more, sizeof more, "%s\x01\x02garbage", get);
  CU_ASSERT_EQUAL(parse(more, &r), (int)strlen(get));

  CU_ASSERT_EQUAL(parse("GET /metrics HTTP/1.0\n\n", &r), 23); /* LF line ends */
  CU_ASSERT(r.get && r.metrics);
  CU_ASSERT(parse("GET /metrics?name[]=x HTTP/1.1\r\n\r\n", &r) > 0 && r.metrics);
  CU_ASSERT(parse("GET http://h:1/metrics HTTP/1.1\r\n\r\n", &r) > 0 && r.metrics);
  CU_ASSERT(parse("GET HTTP://h HTTP/1.1\r\n\r\n", &r) > 0 && r.get && !r.metrics);
  CU_ASSERT(parse("GET /metricsx HTTP/1.1\r\n\r\n", &r) > 0 && r.get && !r.metrics);
  CU_ASSERT(parse("GET / HTTP/1.1\r\n\r\n", &r) > 0 && !r.metrics);
  CU_ASSERT(parse("GET /Metrics HTTP/1.1\r\n\r\n", &r) > 0 && !r.metrics);
  CU_ASSERT(parse("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &r) > 0 &&
            !r.get && r.metrics);
  CU_ASSERT(parse("get /metrics HTTP/1.1\r\n\r\n", &r) > 0 && !r.get);
  CU_ASSERT(parse("HEAD /metrics HTTP/1.1\r\n\r\n", &r) > 0 && !r.get);

  static const char *bad[] = {
      "garbage\r\n\r\n",
      "\x16\x03\x01\x02\x00", /* a TLS handshake: refused before any line end */
      "GET\x00",
      "GET /metrics\r\n\r\n",
      "GET /metrics HTTP/2.0\r\n\r\n",
      "GET /metrics HTTP/1.1 \r\n\r\n",
      "GET  /metrics HTTP/1.1\r\n\r\n",
      "GET /metrics  HTTP/1.1\r\n\r\n",
      "GET /met rics HTTP/1.1\r\n\r\n",
      "GET /m\x7f HTTP/1.1\r\n\r\n",
      "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
      " GET /metrics HTTP/1.1\r\n\r\n",
      "\r\nGET /metrics HTTP/1.1\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost\r\n\r\n",
      "GET /metrics HTTP/1.1\r\n: x\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHo st: x\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: a\rb\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: a\x01\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost: a\r\r\n\r\n",
      "GET /metrics HTTP/1.1\rHost: a\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t n = strlen(bad[i]) + (bad[i][0] == 'G' && bad[i][3] == 0); /* "GET\0" */
    int rc = wd_http_parse(bad[i], n, &r);
    if (rc != -1) fprintf(stderr, "not refused (%d): %zu\n", rc, i);
    CU_ASSERT_EQUAL(rc, -1);
  }
  /* header values may carry tabs and bytes above 0x7f */
  CU_ASSERT(parse("GET /metrics HTTP/1.1\r\nX: a\tb \xc3\xa9\r\n\r\n", &r) > 0);
}

/* The sample line of @p name with exactly these labels (or none), or NULL. */
static const char *line_of(const char *text, const char *prefix) {
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (!strncmp(p, prefix, n)) return p + n;
  return NULL;
}

static int value_is(const char *text, const char *prefix, const char *want) {
  const char *v = line_of(text, prefix);
  if (!v) {
    fprintf(stderr, "no line '%s'\n", prefix);
    return 0;
  }
  size_t n = strcspn(v, "\n");
  if (n != strlen(want) || strncmp(v, want, n)) {
    fprintf(stderr, "'%s' is '%.*s', not '%s'\n", prefix, (int)n, v, want);
    return 0;
  }
  return 1;
}

/* Every sample's family has HELP and TYPE before it, each family once, its
 * samples together. */
static int well_formed(const char *text) {
  char seen[64][64];
  int nseen = 0;
  char current[64] = "";
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    if (!nl) return 0; /* the last line ends too */
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
    p = nl + 1;
    char name[64];
    if (!strncmp(line, "# HELP ", 7)) {
      if (sscanf(line + 7, "%63s", name) != 1) return 0;
      for (int i = 0; i < nseen; i++)
        if (!strcmp(seen[i], name)) return 0;
      snprintf(seen[nseen++], sizeof seen[0], "%s", name);
      snprintf(current, sizeof current, "%s", name);
      /* TYPE next */
      char type[80];
      snprintf(type, sizeof type, "# TYPE %s ", name);
      if (strncmp(p, type, strlen(type))) return 0;
    } else if (!strncmp(line, "# TYPE ", 7)) {
      if (sscanf(line + 7, "%63s", name) != 1 || strcmp(name, current)) return 0;
    } else {
      size_t n = strcspn(line, "{ ");
      if (n != strlen(current) || strncmp(line, current, n)) return 0;
    }
  }
  return 1;
}

static void test_render(void) {
  char *dir;
  snap_store *s = tu_store_create("metrics", &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 10, 2, 1, &v), 0);
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 10, 2, 2, &v), 0);
  CU_ASSERT_EQUAL(v, 2);

  wd_count(WD_C_PUBLISHES, 2);
  wd_count(WD_C_BYTES_PUSHED, 1ull << 40);
  wd_count(WD_C_COUNT, 5); /* out of range: ignored */
  wd_count_error("publish");
  wd_count_error("s3_denied");
  wd_count_error("nonsense");
  wd_count_error(NULL);
  wd_gauge_set("snap_push_version", "b", 7);
  wd_gauge_set("snap_push_version", "a\"q\\b\nc", 3);
  wd_gauge_set("snap_push_version", "b", 8); /* replaces */
  wd_gauge_set("snap_follow_lag_seconds", "b", 0.25);
  wd_gauge_set("snap_follow_lag_versions", "b", NAN);
  wd_gauge_set("snap_follow_announced_version", "b", INFINITY);
  wd_gauge_set("snap_follow_announced_version", "c", -INFINITY);
  wd_gauge_set("snap_unknown_gauge", "b", 1); /* no HELP for it: ignored */
  wd_gauge_set(NULL, "b", 1);
  wd_gauge_set("snap_push_version", NULL, 1);
  char longname[SNAP_DATASET_NAME_MAX + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  wd_gauge_set("snap_push_version", longname, 1);

  struct wd_buf b = {0};
  wd_metrics_render(s, &b);
  const char *t = b.p;
  CU_ASSERT(well_formed(t));
  CU_ASSERT(value_is(t, "snap_publishes_total ", "2"));
  CU_ASSERT(value_is(t, "snap_flips_total ", "0"));
  CU_ASSERT(value_is(t, "snap_bytes_pushed_total ", "1099511627776"));
  CU_ASSERT(value_is(t, "snap_errors_total{kind=\"publish\"} ", "1"));
  CU_ASSERT(value_is(t, "snap_errors_total{kind=\"s3_denied\"} ", "1"));
  CU_ASSERT(value_is(t, "snap_errors_total{kind=\"other\"} ", "2"));
  CU_ASSERT(value_is(t, "snap_errors_total{kind=\"protocol\"} ", "0"));
  CU_ASSERT(value_is(t, "snap_current_version{dataset=\"d\"} ", "2"));
  CU_ASSERT(value_is(t, "snap_draining_bytes{dataset=\"d\"} ", "0"));
  CU_ASSERT_PTR_NOT_NULL(line_of(t, "snap_dataset_bytes{dataset=\"d\"} "));
  CU_ASSERT_PTR_NOT_NULL(line_of(t, "snap_pinned_versions{dataset=\"d\"} "));
  CU_ASSERT(value_is(t, "snap_push_version{dataset=\"b\"} ", "8"));
  CU_ASSERT(value_is(t, "snap_push_version{dataset=\"a\\\"q\\\\b\\nc\"} ", "3"));
  CU_ASSERT(value_is(t, "snap_follow_lag_seconds{dataset=\"b\"} ", "0.25"));
  CU_ASSERT(value_is(t, "snap_follow_lag_versions{dataset=\"b\"} ", "NaN"));
  CU_ASSERT(value_is(t, "snap_follow_announced_version{dataset=\"b\"} ", "+Inf"));
  CU_ASSERT(value_is(t, "snap_follow_announced_version{dataset=\"c\"} ", "-Inf"));
  CU_ASSERT_PTR_NULL(strstr(t, "snap_unknown_gauge"));
  CU_ASSERT_PTR_NULL(strstr(t, "xxxxxxxx"));
  /* samples sorted by dataset: "a..." before "b" */
  CU_ASSERT(strstr(t, "snap_push_version{dataset=\"a") <
            strstr(t, "snap_push_version{dataset=\"b\"}"));
  static const char *families[] = {
      "snap_publishes_total",    "snap_flips_total",
      "snap_pushes_total",       "snap_follow_flips_total",
      "snap_bytes_pushed_total", "snap_bytes_fetched_total",
      "snap_errors_total",       "snap_current_version",
      "snap_pinned_versions",    "snap_draining_bytes",
      "snap_dataset_bytes",      "snap_follow_lag_versions",
      "snap_follow_lag_seconds", "snap_follow_announced_version",
      "snap_push_version"};
  for (size_t i = 0; i < sizeof families / sizeof *families; i++) {
    char help[100], type[100];
    snprintf(help, sizeof help, "\n# HELP %s ", families[i]);
    snprintf(type, sizeof type, "\n# TYPE %s %s\n", families[i],
             strstr(families[i], "_total") ? "counter" : "gauge");
    CU_ASSERT_PTR_NOT_NULL(strstr(t, help + 1)); /* (the first has no \n before it) */
    CU_ASSERT_PTR_NOT_NULL(strstr(t, type));
  }
  wd_buf_free(&b);

  /* a dataset that is gone loses its gauges */
  wd_gauge_drop("b");
  wd_gauge_drop(NULL);
  wd_metrics_render(s, &b);
  CU_ASSERT(well_formed(b.p));
  CU_ASSERT_PTR_NULL(strstr(b.p, "{dataset=\"b\"}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(b.p, "{dataset=\"c\"}"));
  CU_ASSERT_PTR_NOT_NULL(strstr(b.p, "snap_push_version{dataset=\"a"));
  wd_buf_free(&b);
  tu_store_destroy(s, dir);
}

int main(void) {
  static const tu_test tests[] = {{"addr", test_addr},
                                  {"http_parse", test_http_parse},
                                  {"render", test_render},
                                  {NULL, NULL}};
  return tu_run("writerd_metrics", tests);
}
