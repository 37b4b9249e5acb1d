/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snap_s3 end to end against a real S3 server: SeaweedFS on loopback, started by
 * tests/s3/seaweed.py, which exports AWS_* and SNAP_S3_TEST_URL (a bucket that
 * exists, a fresh prefix). Without SNAP_S3_TEST_URL the test is skipped (77).
 *
 * Also runnable against any S3 store: export the same variables by hand.
 * Everything it writes stays under the prefix and is deleted or overwritten.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "snap_s3/s3.h"
#include "test_util.h"

static struct snap_s3_config cfg; /* from the environment, in main() */
static snap_s3 *s3;

/* A client of cfg with changes applied by the caller. */
static snap_s3 *client(const struct snap_s3_config *c) {
  snap_s3 *h = NULL;
  struct snap_s3_error e;
  int rc = snap_s3_create(c, &h, &e);
  CU_ASSERT_EQUAL(rc, 0);
  if (rc) fprintf(stderr, "\n  snap_s3_create: %s\n", e.message);
  return h;
}

/* An unnamed temporary file of n pattern bytes (seeded), or -1. */
static unsigned char pattern(uint64_t i, unsigned seed) {
  uint64_t x = (i + seed) * 0x9E3779B97F4A7C15ull;
  return (unsigned char)(x >> 56);
}

static int temp_file(uint64_t n, unsigned seed) {
  char path[] = "/tmp/snap-s3-e2e-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  unlink(path);
  unsigned char buf[65536];
  for (uint64_t off = 0; off < n;) {
    size_t k = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
    for (size_t i = 0; i < k; i++) buf[i] = pattern(off + i, seed);
    if (pwrite(fd, buf, k, (off_t)off) != (ssize_t)k) {
      close(fd);
      return -1;
    }
    off += k;
  }
  return fd;
}

/* Do n bytes of fd at off hold pattern bytes from pos on? */
static int check_file(int fd, uint64_t off, uint64_t n, uint64_t pos, unsigned seed) {
  unsigned char buf[65536];
  for (uint64_t done = 0; done < n;) {
    size_t k = n - done < sizeof buf ? (size_t)(n - done) : sizeof buf;
    if (pread(fd, buf, k, (off_t)(off + done)) != (ssize_t)k) return 0;
    for (size_t i = 0; i < k; i++)
      if (buf[i] != pattern(pos + done + i, seed)) return 0;
    done += k;
  }
  return 1;
}

#define OK(call)                                                         \
  do {                                                                   \
    struct snap_s3_error e_;                                             \
    int rc_ = (call);                                                    \
    if (rc_) fprintf(stderr, "\n  %s: %d %s\n", #call, rc_, e_.message); \
    CU_ASSERT_EQUAL_FATAL(rc_, 0);                                       \
  } while (0)
/* OK() passes &e_ as the error: write the calls with ERR. */
#define ERR (&e_)

static void test_put_get_head(void) {
  struct snap_s3_object put, head, info;
  struct snap_s3_error e;
  char buf[64];
  size_t got;
  OK(snap_s3_put(s3, "basic/hello", "hello world", 11, NULL, &put, ERR));
  CU_ASSERT_EQUAL(put.size, 11);
  CU_ASSERT(strlen(put.etag) > 2 && put.etag[0] == '"');
  OK(snap_s3_head(s3, "basic/hello", &head, ERR));
  CU_ASSERT_EQUAL(head.size, 11);
  CU_ASSERT_STRING_EQUAL(head.etag, put.etag);

  OK(snap_s3_get(s3, "basic/hello", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, &info,
                 ERR));
  CU_ASSERT_EQUAL(got, 11);
  CU_ASSERT_EQUAL(memcmp(buf, "hello world", 11), 0);
  CU_ASSERT_EQUAL(info.size, 11);
  CU_ASSERT_STRING_EQUAL(info.etag, put.etag);
  /* ranges: inside, to the end, past the end (clamped) */
  OK(snap_s3_get(s3, "basic/hello", 6, 3, buf, sizeof buf, &got, &info, ERR));
  CU_ASSERT_EQUAL(got, 3);
  CU_ASSERT_EQUAL(memcmp(buf, "wor", 3), 0);
  CU_ASSERT_EQUAL(info.size, 11); /* the whole object's, from Content-Range */
  OK(snap_s3_get(s3, "basic/hello", 6, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL, ERR));
  CU_ASSERT_EQUAL(got, 5);
  CU_ASSERT_EQUAL(memcmp(buf, "world", 5), 0);
  OK(snap_s3_get(s3, "basic/hello", 9, 100, buf, sizeof buf, &got, NULL, ERR));
  CU_ASSERT_EQUAL(got, 2);
  CU_ASSERT_EQUAL(snap_s3_get(s3, "basic/hello", 11, 1, buf, sizeof buf, &got, NULL, &e),
                  SNAP_S3_ERANGE);
  CU_ASSERT_EQUAL(e.http_status, 416);
  /* a buffer too small: refused, with the size to retry with */
  CU_ASSERT_EQUAL(
      snap_s3_get(s3, "basic/hello", 0, SNAP_S3_TO_END, buf, 4, &got, &info, &e),
      SNAP_S3_ETOOBIG);
  CU_ASSERT_EQUAL(info.size, 11);
  CU_ASSERT_EQUAL(e.attempts, 1);

  /* missing keys: 404 with the server's code, and the object named */
  CU_ASSERT_EQUAL(
      snap_s3_get(s3, "basic/nosuch", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL, &e),
      SNAP_S3_ENOTFOUND);
  CU_ASSERT_EQUAL(e.http_status, 404);
  CU_ASSERT_STRING_EQUAL(e.s3_code, "NoSuchKey");
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "GET s3://"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "basic/nosuch: 404 NoSuchKey"));
  CU_ASSERT_EQUAL(e.attempts, 1); /* a 404 is not retried */
  CU_ASSERT_EQUAL(snap_s3_head(s3, "basic/nosuch", &head, &e), SNAP_S3_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "HEAD s3://"));

  /* an empty object, whole and "ranged" */
  OK(snap_s3_put(s3, "basic/empty", "", 0, NULL, NULL, ERR));
  OK(snap_s3_get(s3, "basic/empty", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, &info,
                 ERR));
  CU_ASSERT_EQUAL(got, 0);
  CU_ASSERT_EQUAL(info.size, 0);
  OK(snap_s3_get(s3, "basic/empty", 0, 10, buf, sizeof buf, &got, &info, ERR));
  CU_ASSERT_EQUAL(got, 0);
  OK(snap_s3_head(s3, "basic/empty", &head, ERR));
  CU_ASSERT_EQUAL(head.size, 0);

  /* a key that needs percent-encoding, signed as sent */
  OK(snap_s3_put(s3, "basic/a b+c=d&e%f~g", "x", 1, NULL, NULL, ERR));
  OK(snap_s3_get(s3, "basic/a b+c=d&e%f~g", 0, SNAP_S3_TO_END, buf, sizeof buf, &got,
                 NULL, ERR));
  CU_ASSERT_EQUAL(got, 1);
}

static void test_fd_put_and_get(void) {
  const uint64_t n = (3u << 20) + 12345; /* 3 MiB and a bit: curl sends it in pieces */
  int src = temp_file(n, 7);
  CU_ASSERT_FATAL(src >= 0);
  struct snap_s3_object put, info;
  /* a range of the file, not from its start; the file offset is not used */
  OK(snap_s3_put_fd(s3, "fd/obj", src, 1000, n - 2000, NULL, &put, ERR));
  CU_ASSERT_EQUAL(put.size, n - 2000);
  CU_ASSERT_EQUAL(lseek(src, 0, SEEK_CUR), 0); /* pread only: the offset is untouched */

  int dst = temp_file(0, 0);
  CU_ASSERT_FATAL(dst >= 0);
  uint64_t got;
  /* into the file at an offset: bytes before it stay as they were (a hole) */
  OK(snap_s3_get_fd(s3, "fd/obj", 0, SNAP_S3_TO_END, dst, 4096, &got, &info, ERR));
  CU_ASSERT_EQUAL(got, n - 2000);
  CU_ASSERT_EQUAL(info.size, n - 2000);
  CU_ASSERT_STRING_EQUAL(info.etag, put.etag);
  CU_ASSERT(check_file(dst, 4096, n - 2000, 1000, 7));
  CU_ASSERT_EQUAL(lseek(dst, 0, SEEK_END), (off_t)(4096 + n - 2000));
  /* a range into the middle of the file */
  OK(snap_s3_get_fd(s3, "fd/obj", 500000, 70000, dst, 10, &got, NULL, ERR));
  CU_ASSERT_EQUAL(got, 70000);
  CU_ASSERT(check_file(dst, 10, 70000, 1000 + 500000, 7));

  /* a range past the end of the source file: a local error, not sent as short */
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(snap_s3_put_fd(s3, "fd/short", src, n - 10, 100, NULL, NULL, &e), -EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "shorter than the range"));
  CU_ASSERT_EQUAL(e.attempts, 1);
  struct snap_s3_object head;
  CU_ASSERT_EQUAL(snap_s3_head(s3, "fd/short", &head, &e), SNAP_S3_ENOTFOUND);
  close(src);
  close(dst);
}

static void test_list_pages(void) {
  char key[64];
  /* 7 keys under list/, one beside it that a prefixed listing must not show */
  for (int i = 0; i < 7; i++) {
    snprintf(key, sizeof key, "list/k%02d", i);
    OK(snap_s3_put(s3, key, key, (size_t)i, NULL, NULL, ERR));
  }
  OK(snap_s3_put(s3, "listx", "x", 1, NULL, NULL, ERR));
  char *token = NULL;
  int seen = 0, pages = 0;
  do {
    struct snap_s3_list l;
    OK(snap_s3_list(s3, "list/", token, 3, &l, ERR));
    free(token);
    token = l.next_token ? strdup(l.next_token) : NULL;
    pages++;
    CU_ASSERT(l.count <= 3);
    for (size_t i = 0; i < l.count; i++, seen++) {
      snprintf(key, sizeof key, "list/k%02d", seen);
      CU_ASSERT_STRING_EQUAL(l.entries[i].key, key);
      CU_ASSERT_EQUAL(l.entries[i].size, (uint64_t)seen);
      struct snap_s3_object head;
      OK(snap_s3_head(s3, key, &head, ERR));
      CU_ASSERT_STRING_EQUAL(l.entries[i].etag, head.etag);
      /* written a moment ago, by this machine's clock within 10 minutes */
      CU_ASSERT(llabs((long long)(l.entries[i].last_modified - time(NULL))) < 600);
      CU_ASSERT(!l.entries[i].odd);
    }
    snap_s3_list_free(&l);
  } while (token && pages < 10);
  CU_ASSERT_EQUAL(seen, 7);
  CU_ASSERT_EQUAL(pages, 3);
  free(token);

  /* a prefix with nothing under it is an empty, complete page */
  struct snap_s3_list l;
  OK(snap_s3_list(s3, "nothing-here/", NULL, 0, &l, ERR));
  CU_ASSERT_EQUAL(l.count, 0);
  CU_ASSERT_PTR_NULL(l.next_token);
  snap_s3_list_free(&l);
}

/* A poll: GET only when the ETag moved (If-None-Match, 304). */
static void test_get_changed(void) {
  struct snap_s3_object first, now, info;
  struct snap_s3_error e;
  char buf[16];
  size_t got = 99;
  OK(snap_s3_put(s3, "poll/a", "one", 3, NULL, &first, ERR));
  CU_ASSERT_EQUAL(
      snap_s3_get_changed(s3, "poll/a", first.etag, buf, sizeof buf, &got, &info, &e),
      SNAP_S3_ENOTMODIFIED);
  CU_ASSERT_EQUAL(got, 0);
  CU_ASSERT_EQUAL(e.http_status, 304);
  OK(snap_s3_put(s3, "poll/a", "two!", 4, NULL, &now, ERR));
  OK(snap_s3_get_changed(s3, "poll/a", first.etag, buf, sizeof buf, &got, &info, ERR));
  CU_ASSERT_EQUAL(got, 4);
  CU_ASSERT_EQUAL(memcmp(buf, "two!", 4), 0);
  CU_ASSERT_STRING_EQUAL(info.etag, now.etag);
  OK(snap_s3_get_changed(s3, "poll/a", NULL, buf, sizeof buf, &got, NULL, ERR));
  CU_ASSERT_EQUAL(got, 4);
  CU_ASSERT_EQUAL(snap_s3_get_changed(s3, "poll/a", "\"bad\r\nX: y\"", buf, sizeof buf,
                                      &got, NULL, &e),
                  SNAP_S3_EINVAL);
}

static void test_delete(void) {
  struct snap_s3_object head;
  struct snap_s3_error e;
  OK(snap_s3_put(s3, "del/x", "x", 1, NULL, NULL, ERR));
  OK(snap_s3_delete(s3, "del/x", ERR));
  CU_ASSERT_EQUAL(snap_s3_head(s3, "del/x", &head, &e), SNAP_S3_ENOTFOUND);
  OK(snap_s3_delete(s3, "del/x", ERR)); /* deleting a missing key is success */
}

static void test_create_only(void) {
  struct snap_s3_cond create = {.if_none_match = 1};
  struct snap_s3_object first;
  struct snap_s3_error e;
  char buf[16];
  size_t got;
  OK(snap_s3_put(s3, "cond/announce", "first", 5, &create, &first, ERR));
  CU_ASSERT_EQUAL(snap_s3_put(s3, "cond/announce", "second", 6, &create, NULL, &e),
                  SNAP_S3_EPRECONDITION);
  CU_ASSERT_EQUAL(e.code, SNAP_S3_EPRECONDITION);
  CU_ASSERT_EQUAL(e.http_status, 412);
  CU_ASSERT_STRING_EQUAL(e.s3_code, "PreconditionFailed");
  CU_ASSERT_EQUAL(e.attempts, 1);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "cond/announce: 412 PreconditionFailed"));
  OK(snap_s3_get(s3, "cond/announce", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL,
                 ERR));
  CU_ASSERT_EQUAL(got, 5);
  CU_ASSERT_EQUAL(memcmp(buf, "first", 5), 0);
}

/* Writers racing to create one key: exactly one wins (the announcement object of
 * a replica set depends on it). Each thread has its own handle. */
#define RACERS 8
static pthread_barrier_t race_start;
struct racer {
  snap_s3 *h;
  int id, rc;
};

static void *race(void *arg) {
  struct racer *r = arg;
  char body[32];
  struct snap_s3_cond create = {.if_none_match = 1};
  snprintf(body, sizeof body, "writer %d", r->id);
  pthread_barrier_wait(&race_start);
  r->rc = snap_s3_put(r->h, "race/announce", body, strlen(body), &create, NULL, NULL);
  return NULL;
}

static void test_create_only_race(void) {
  struct racer rs[RACERS];
  pthread_t th[RACERS];
  pthread_barrier_init(&race_start, NULL, RACERS);
  for (int i = 0; i < RACERS; i++) {
    rs[i] = (struct racer){.h = client(&cfg), .id = i};
    CU_ASSERT_PTR_NOT_NULL_FATAL(rs[i].h);
  }
  for (int i = 0; i < RACERS; i++) pthread_create(&th[i], NULL, race, &rs[i]);
  int winners = 0, winner = -1;
  for (int i = 0; i < RACERS; i++) {
    pthread_join(th[i], NULL);
    snap_s3_destroy(rs[i].h);
    if (rs[i].rc == 0) {
      winners++;
      winner = i;
    } else {
      CU_ASSERT_EQUAL(rs[i].rc, SNAP_S3_EPRECONDITION);
    }
  }
  pthread_barrier_destroy(&race_start);
  CU_ASSERT_EQUAL_FATAL(winners, 1);
  char buf[32], want[32];
  size_t got;
  snprintf(want, sizeof want, "writer %d", winner);
  OK(snap_s3_get(s3, "race/announce", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL,
                 ERR));
  CU_ASSERT_EQUAL(got, strlen(want));
  CU_ASSERT_EQUAL(memcmp(buf, want, got), 0);
}

static void test_if_match(void) {
  struct snap_s3_object v1, v2;
  struct snap_s3_error e;
  char buf[16];
  size_t got;
  OK(snap_s3_put(s3, "cond/current", "v1", 2, NULL, &v1, ERR));
  struct snap_s3_cond on_v1 = {.if_match = v1.etag};
  OK(snap_s3_put(s3, "cond/current", "v2", 2, &on_v1, &v2, ERR));
  CU_ASSERT_STRING_NOT_EQUAL(v2.etag, v1.etag);
  /* v1's ETag is stale now: the replace is refused and v2 stays */
  CU_ASSERT_EQUAL(snap_s3_put(s3, "cond/current", "v3", 2, &on_v1, NULL, &e),
                  SNAP_S3_EPRECONDITION);
  CU_ASSERT_EQUAL(e.http_status, 412);
  OK(snap_s3_get(s3, "cond/current", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL,
                 ERR));
  CU_ASSERT_EQUAL(memcmp(buf, "v2", 2), 0);
  /* If-Match on a missing key: SeaweedFS answers 412 (AWS documents 404) */
  int rc = snap_s3_put(s3, "cond/missing", "v", 1, &on_v1, NULL, &e);
  CU_ASSERT(rc == SNAP_S3_EPRECONDITION || rc == SNAP_S3_ENOTFOUND);
  struct snap_s3_cond both = {.if_none_match = 1, .if_match = v1.etag};
  CU_ASSERT_EQUAL(snap_s3_put(s3, "cond/current", "v", 1, &both, NULL, &e),
                  SNAP_S3_EINVAL);
}

static void test_multipart(void) {
  const uint64_t n = 12u << 20, part = 5u << 20; /* three parts: 5, 5, 2 MiB */
  int src = temp_file(n, 3);
  CU_ASSERT_FATAL(src >= 0);
  struct snap_s3_object put, head, info;
  OK(snap_s3_put_fd_multipart(s3, "mp/big", src, 0, n, part, NULL, &put, ERR));
  CU_ASSERT_EQUAL(put.size, n);
  CU_ASSERT_PTR_NOT_NULL(strstr(put.etag, "-3\"")); /* S3's multipart ETag: md5-PARTS */
  OK(snap_s3_head(s3, "mp/big", &head, ERR));
  CU_ASSERT_EQUAL(head.size, n);
  CU_ASSERT_STRING_EQUAL(head.etag, put.etag);
  int dst = temp_file(0, 0);
  CU_ASSERT_FATAL(dst >= 0);
  uint64_t got;
  OK(snap_s3_get_fd(s3, "mp/big", 0, SNAP_S3_TO_END, dst, 0, &got, &info, ERR));
  CU_ASSERT_EQUAL(got, n);
  CU_ASSERT(check_file(dst, 0, n, 0, 3));
  /* a range across the first part boundary */
  OK(snap_s3_get_fd(s3, "mp/big", part - 100, 200, dst, 0, &got, NULL, ERR));
  CU_ASSERT_EQUAL(got, 200);
  CU_ASSERT(check_file(dst, 0, 200, part - 100, 3));

  /* create only, on a key that exists: refused at complete, the object unchanged */
  struct snap_s3_cond create = {.if_none_match = 1};
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(
      snap_s3_put_fd_multipart(s3, "mp/big", src, 0, part + 1, part, &create, NULL, &e),
      SNAP_S3_EPRECONDITION);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "COMPLETE MULTIPART"));
  OK(snap_s3_head(s3, "mp/big", &head, ERR));
  CU_ASSERT_EQUAL(head.size, n);
  /* replace only a known version: a stale ETag is refused, the current one works */
  struct snap_s3_cond stale = {.if_match = "\"0123456789abcdef0123456789abcdef\""};
  CU_ASSERT_EQUAL(
      snap_s3_put_fd_multipart(s3, "mp/big", src, 0, part + 1, part, &stale, NULL, &e),
      SNAP_S3_EPRECONDITION);
  struct snap_s3_cond current = {.if_match = head.etag};
  OK(snap_s3_put_fd_multipart(s3, "mp/big", src, 0, part + 1, part, &current, &put, ERR));
  CU_ASSERT_EQUAL(put.size, part + 1);

  /* the low-level calls: an aborted upload cannot be completed */
  char id[SNAP_S3_UPLOAD_ID_MAX];
  struct snap_s3_part p;
  OK(snap_s3_multipart_create(s3, "mp/aborted", id, ERR));
  CU_ASSERT(strlen(id) > 0);
  OK(snap_s3_multipart_put_fd(s3, "mp/aborted", id, 1, src, 0, 1000, &p, ERR));
  CU_ASSERT_EQUAL(p.number, 1);
  CU_ASSERT(strlen(p.etag) > 2);
  OK(snap_s3_multipart_abort(s3, "mp/aborted", id, ERR));
  CU_ASSERT_EQUAL(snap_s3_multipart_complete(s3, "mp/aborted", id, &p, 1, NULL, NULL, &e),
                  SNAP_S3_ENOTFOUND);
  CU_ASSERT_STRING_EQUAL(e.s3_code, "NoSuchUpload");
  CU_ASSERT_EQUAL(snap_s3_head(s3, "mp/aborted", &head, &e), SNAP_S3_ENOTFOUND);
  close(src);
  close(dst);
}

static void test_wrong_secret(void) {
  static const char bad[] = "WrongSecret-0123456789abcdefXYZ";
  struct snap_s3_config c = cfg;
  strcpy(c.secret_key, bad);
  snap_s3 *h = client(&c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(snap_s3_put(h, "auth/x", "x", 1, NULL, NULL, &e), SNAP_S3_EDENIED);
  fprintf(stderr, "\n  wrong secret: %s\n", e.message);
  CU_ASSERT_EQUAL(e.http_status, 403);
  CU_ASSERT_EQUAL(e.attempts, 1); /* a 403 is not retried */
  CU_ASSERT_STRING_EQUAL(e.s3_code, "SignatureDoesNotMatch");
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "PUT s3://"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "auth/x: 403 SignatureDoesNotMatch: "));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, cfg.access_key)); /* not a secret */
  CU_ASSERT_PTR_NULL(strstr(e.message, bad));
  CU_ASSERT_PTR_NULL(strstr(e.message, cfg.secret_key));
  CU_ASSERT_PTR_NULL(strchr(e.message, '\n'));
  /* reads too, and a listing */
  size_t got;
  char buf[8];
  CU_ASSERT_EQUAL(
      snap_s3_get(h, "auth/x", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL, &e),
      SNAP_S3_EDENIED);
  struct snap_s3_list l;
  CU_ASSERT_EQUAL(snap_s3_list(h, NULL, NULL, 0, &l, &e), SNAP_S3_EDENIED);
  snap_s3_destroy(h);
}

/* A loopback port with nothing listening (bound, then closed), or one that
 * listens and never accepts (listening != 0; *fd keeps it). */
static int loopback_port(int listening, int *fd) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0 ||
      (listening && listen(s, 8) != 0))
    return -1;
  if (listening)
    *fd = s;
  else
    close(s);
  return ntohs(a.sin_port);
}

static void test_unreachable_endpoint(void) {
  struct snap_s3_config c = cfg;
  int port = loopback_port(0, NULL);
  CU_ASSERT_FATAL(port > 0);
  snprintf(c.endpoint, sizeof c.endpoint, "http://127.0.0.1:%d", port);
  c.max_attempts = 3;
  c.retry_base_ms = 1;
  snap_s3 *h = client(&c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(snap_s3_put(h, "net/x", "x", 1, NULL, NULL, &e), SNAP_S3_ENET);
  fprintf(stderr, "\n  closed port: %s\n", e.message);
  CU_ASSERT_EQUAL(e.attempts, 3); /* retried, then given up */
  CU_ASSERT_EQUAL(e.http_status, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, c.endpoint));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "connect"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "3 attempts"));
  CU_ASSERT_PTR_NULL(strstr(e.message, cfg.secret_key));
  snap_s3_destroy(h);
}

static void test_stalled_server(void) {
  /* A server that accepts connections (the kernel's backlog) and never answers:
   * the low-speed limit ends each attempt. */
  struct snap_s3_config c = cfg;
  int lfd = -1, port = loopback_port(1, &lfd);
  CU_ASSERT_FATAL(port > 0);
  snprintf(c.endpoint, sizeof c.endpoint, "http://127.0.0.1:%d", port);
  c.max_attempts = 2;
  c.retry_base_ms = 1;
  c.low_speed_bytes = 1;
  c.low_speed_seconds = 1;
  snap_s3 *h = client(&c);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  struct snap_s3_error e;
  char buf[8];
  size_t got;
  CU_ASSERT_EQUAL(
      snap_s3_get(h, "net/x", 0, SNAP_S3_TO_END, buf, sizeof buf, &got, NULL, &e),
      SNAP_S3_ENET);
  fprintf(stderr, "\n  stalled server: %s\n", e.message);
  CU_ASSERT_EQUAL(e.attempts, 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "Timeout"));
  snap_s3_destroy(h);
  close(lfd);
}

int main(void) {
  const char *url = getenv("SNAP_S3_TEST_URL");
  if (!url) {
    printf("SKIP: SNAP_S3_TEST_URL is not set (run me through tests/s3/seaweed.py)\n");
    return 77;
  }
  struct snap_s3_error e;
  if (snap_s3_config_from_env(&cfg, url, &e) != 0) {
    fprintf(stderr, "config: %s\n", e.message);
    return 1;
  }
  cfg.retry_base_ms = 10; /* keep a retried test fast */
  if (snap_s3_create(&cfg, &s3, &e) != 0 || snap_s3_bucket_create(s3, &e) != 0) {
    fprintf(stderr, "setup: %s\n", e.message);
    return 1;
  }
  static const tu_test tests[] = {{"put_get_head", test_put_get_head},
                                  {"fd_put_and_get", test_fd_put_and_get},
                                  {"list_pages", test_list_pages},
                                  {"get_changed", test_get_changed},
                                  {"delete", test_delete},
                                  {"create_only", test_create_only},
                                  {"create_only_race", test_create_only_race},
                                  {"if_match", test_if_match},
                                  {"multipart", test_multipart},
                                  {"wrong_secret", test_wrong_secret},
                                  {"unreachable_endpoint", test_unreachable_endpoint},
                                  {"stalled_server", test_stalled_server},
                                  {NULL, NULL}};
  int rc = tu_run("s3_e2e", tests);
  snap_s3_destroy(s3);
  snap_s3_config_clear(&cfg);
  return rc;
}
