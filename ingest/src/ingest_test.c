/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ingest: field parsers, CSV type inference and errors, .npy layouts, in one process. */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <math.h>
#include <snap_ingest/compare.h>
#include <snap_ingest/ingest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[128];
static snap_store *g_store;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int suite_init(void) {
  snprintf(g_dir, sizeof g_dir, "/dev/shm/ingest_test.%d", (int)getpid());
  return snap_store_open(g_dir, SNAP_CREATE, &g_store, NULL) ? -1 : 0;
}

static int suite_clean(void) {
  snap_store_close(g_store);
  return nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int csv(const char *dataset, const char *text, struct ingest_result *res,
               struct snap_error *err) {
  struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv"};
  return ingest_buffer(g_store, dataset, text, strlen(text), &o, res, err);
}

static uint64_t current(const char *dataset) {
  uint64_t v = 0;
  if (snap_current_version(g_store, dataset, &v, NULL)) return 0;
  return v;
}

/* ------------------------------------------------------------- parsers */

static void test_int64(void) {
  int64_t v;
  CU_ASSERT(ingest_parse_int64("0", 1, &v) && v == 0);
  CU_ASSERT(ingest_parse_int64(" +42\t", 5, &v) && v == 42);
  CU_ASSERT(ingest_parse_int64("-9223372036854775808", 20, &v) && v == INT64_MIN);
  CU_ASSERT(ingest_parse_int64("9223372036854775807", 19, &v) && v == INT64_MAX);
  CU_ASSERT(ingest_parse_int64("000000000000000000000017", 24, &v) && v == 17);
  CU_ASSERT_FALSE(ingest_parse_int64("9223372036854775808", 19, &v));
  CU_ASSERT_FALSE(ingest_parse_int64("99999999999999999999", 20, &v));
  CU_ASSERT_FALSE(ingest_parse_int64("4 2", 3, &v));
  CU_ASSERT_FALSE(ingest_parse_int64("", 0, &v));
  CU_ASSERT_FALSE(ingest_parse_int64("-", 1, &v));
  CU_ASSERT_FALSE(ingest_parse_int64("1.0", 3, &v));
}

static void test_uint64(void) {
  uint64_t u;
  CU_ASSERT(ingest_parse_uint64("18446744073709551615", 20, &u) && u == UINT64_MAX);
  CU_ASSERT(ingest_parse_uint64(" +0000018446744073709551615", 27, &u) &&
            u == UINT64_MAX);
  CU_ASSERT(ingest_parse_uint64("-0", 2, &u) && u == 0);
  CU_ASSERT(ingest_parse_uint64("9223372036854775808", 19, &u) &&
            u == (uint64_t)INT64_MAX + 1);
  CU_ASSERT_FALSE(ingest_parse_uint64("18446744073709551616", 20, &u));
  CU_ASSERT_FALSE(ingest_parse_uint64("99999999999999999999", 20, &u));
  CU_ASSERT_FALSE(ingest_parse_uint64("-1", 2, &u));
  CU_ASSERT_FALSE(ingest_parse_uint64("1.0", 3, &u));
  CU_ASSERT_FALSE(ingest_parse_uint64("+", 1, &u));
  CU_ASSERT_FALSE(ingest_parse_uint64("", 0, &u));
}

/* Inputs that are hard to round correctly: long ties and near-ties, the
 * smallest normal, subnormals, and exponents too long to keep (strtod is
 * correctly rounded on glibc). */
static void test_float64_hard(void) {
  static const char *hard[] = {
      "9007199254740993",                        /* 2^53 + 1: a tie, to even: ...992 */
      "9007199254740993.0000000000000000000001", /* just past it: ...994 */
      "9007199254740992.9999999999999999999999",
      "1.00000000000000011102230246251565404236316680908203125", /* tie: 1 */
      "1.00000000000000011102230246251565404236316680908203126",
      "1.00000000000000011102230246251565404236316680908203124",
      "2.2250738585072011e-308",
      "2.2250738585072012e-308",
      "4.9406564584124654e-324",
      "2.4703282292062327e-324", /* half the smallest subnormal: a tie, to 0 */
      "2.4703282292062328e-324",
      "1.7976931348623157e308",
      "1.7976931348623158e308",
      "1.7976931348623159e308", /* rounds to inf */
      "7.038531e-26",
      "123456789012345678901234567890",
      "0.1000000000000000055511151231257827021181583404541015625",
      "3.14159265358979323846264338327950288419716939937510582097494459",
      "1e-100000000000",
      "1e+100000000000",
      "0.0000000000000000000000000000000000000000000000001e49",
  };
  unsigned bad = 0;
  for (size_t i = 0; i < sizeof hard / sizeof *hard; i++) {
    double want = strtod(hard[i], NULL), got = 0;
    if (!ingest_parse_float64(hard[i], strlen(hard[i]), &got) || memcmp(&want, &got, 8))
      bad++, printf("\nfloat mismatch: %s -> %.17g, strtod %.17g\n", hard[i], got, want);
  }
  CU_ASSERT_EQUAL(bad, 0);
  /* a fraction with 100000 leading zeros and an exponent that saturates the
   * parser's counter: 1e-100001 * 1e1000010 is inf, not 1 */
  size_t n = 2 + 100000 + 1 + 8;
  char *t = malloc(n + 1);
  memcpy(t, "0.", 2);
  memset(t + 2, '0', 100000);
  memcpy(t + 2 + 100000, "1e1000010", 9);
  t[n] = 0;
  double got = 0;
  CU_ASSERT(ingest_parse_float64(t, n, &got) && isinf(got));
  memcpy(t + 2 + 100000, "1e100001", 8); /* exactly 1 */
  CU_ASSERT(ingest_parse_float64(t, n - 1, &got) && got == 1.0);
  free(t);
}

/* Timestamps in each unit: whole units within int64, never rounded or wrapped. */
static void test_timestamp_units(void) {
  int64_t v;
  int z;
  CU_ASSERT_EQUAL(ingest_parse_timestamp_unit("9999-12-31", 10, 1000, &v, &z), 1);
  CU_ASSERT_EQUAL(v, 253402214400LL * 1000000);
  CU_ASSERT_EQUAL(ingest_parse_timestamp_unit("9999-12-31", 10, 1, &v, &z), -1);
  CU_ASSERT_EQUAL(
      ingest_parse_timestamp_unit("1000-01-01T00:00:00Z", 20, 1000000000, &v, &z), 1);
  CU_ASSERT(v == -30610224000LL && z);
  CU_ASSERT_EQUAL(ingest_parse_timestamp_unit("0000-01-01", 10, 1000, &v, &z), 1);
  CU_ASSERT_EQUAL(v, -62167219200LL * 1000000);
  CU_ASSERT_EQUAL(
      ingest_parse_timestamp_unit("1969-12-31T23:59:59.5", 21, 1000000, &v, &z), 1);
  CU_ASSERT_EQUAL(v, -500);
  CU_ASSERT_EQUAL(
      ingest_parse_timestamp_unit("2020-01-01T00:00:00.5", 21, 1000000000, &v, &z), -1);
  CU_ASSERT_EQUAL(
      ingest_parse_timestamp_unit("2020-01-01T00:00:00.0000001", 27, 1000, &v, &z), -1);
  CU_ASSERT_EQUAL(
      ingest_parse_timestamp_unit("2020-01-01T00:00:00.123000", 26, 1000, &v, &z), 1);
  CU_ASSERT_EQUAL(v, 1577836800123000LL);
  CU_ASSERT_EQUAL(ingest_parse_timestamp_unit("2020-13-01", 10, 1000, &v, &z), 0);
  /* the ns range's ends, and a fraction finer than 1 ns (not truncated) */
  CU_ASSERT(ingest_parse_timestamp("2262-04-11T23:47:16.854775807", 29, &v, &z) &&
            v == INT64_MAX);
  CU_ASSERT_FALSE(ingest_parse_timestamp("2262-04-11T23:47:16.854775808", 29, &v, &z));
  CU_ASSERT(ingest_parse_timestamp("1677-09-21T00:12:43.145224193", 29, &v, &z) &&
            v == INT64_MIN + 1);
  CU_ASSERT_FALSE(ingest_parse_timestamp("1677-09-21T00:12:43.145224192", 29, &v, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2020-01-01T00:00:00.1234567891", 30, &v, &z));
  CU_ASSERT(ingest_parse_timestamp("2020-01-01T00:00:00.1234567890", 30, &v, &z) &&
            v == 1577836800123456789LL);
}

/* The fast path must agree with strtod bit for bit. */
static void test_float64(void) {
  double d;
  CU_ASSERT(ingest_parse_float64("1.5", 3, &d) && d == 1.5);
  CU_ASSERT(ingest_parse_float64("-.5e1", 5, &d) && d == -5.0);
  CU_ASSERT(ingest_parse_float64("5.", 2, &d) && d == 5.0);
  CU_ASSERT(ingest_parse_float64("NaN", 3, &d) && isnan(d));
  CU_ASSERT(ingest_parse_float64("-inf", 4, &d) && isinf(d) && d < 0);
  CU_ASSERT(ingest_parse_float64("1e400", 5, &d) && isinf(d));
  CU_ASSERT(ingest_parse_float64("-0.0", 4, &d) && d == 0 && signbit(d));
  CU_ASSERT_FALSE(ingest_parse_float64(".", 1, &d));
  CU_ASSERT_FALSE(ingest_parse_float64("1e", 2, &d));
  CU_ASSERT_FALSE(ingest_parse_float64("1e+", 3, &d));
  CU_ASSERT_FALSE(ingest_parse_float64("0x10", 4, &d));
  CU_ASSERT_FALSE(ingest_parse_float64("1,5", 3, &d));
  CU_ASSERT_FALSE(ingest_parse_float64("nanx", 4, &d));
  unsigned seed = 12345;
  const char *fmts[] = {"%.17g", "%.6g", "%.3f", "%.15e", "%.1f", "%.0f"};
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t bits = (uint64_t)rand_r(&seed) << 33 ^ (uint64_t)rand_r(&seed) << 11 ^
                    (uint64_t)rand_r(&seed);
    double x;
    if (i % 2) {
      memcpy(&x, &bits, 8);
      if (!isfinite(x)) continue;
    } else {
      x = (double)(bits % 100000000) / (double)(1 + rand_r(&seed) % 10000);
    }
    char buf[64];
    snprintf(buf, sizeof buf, fmts[i % 6], x);
    double want = strtod(buf, NULL), got = 0;
    if (!ingest_parse_float64(buf, strlen(buf), &got) || memcmp(&want, &got, 8)) {
      if (bad++ < 5)
        printf("\nfloat mismatch: %s -> %.17g, strtod %.17g\n", buf, got, want);
    }
  }
  CU_ASSERT_EQUAL(bad, 0);
  /* mantissas of 1 to 19 digits times 10^-1 .. 10^-27 (the division-free path
   * and its fallback), and halfway cases: 2^53 + 1 is a tie at 17 digits */
  for (int i = 0; i < 300000; i++) {
    uint64_t m = (uint64_t)rand_r(&seed) << 33 ^ (uint64_t)rand_r(&seed) << 11 ^
                 (uint64_t)rand_r(&seed);
    int nd = 1 + i % 19;
    uint64_t lim = 1;
    for (int k = 0; k < nd; k++) lim *= 10;
    m %= lim;
    char buf[64];
    snprintf(buf, sizeof buf, "%llue-%d", (unsigned long long)m, 1 + (i / 19) % 27);
    if (i % 1000 == 0) snprintf(buf, sizeof buf, "9007199254740993e-%d", 1 + i % 27);
    if (i % 3 == 1) /* more than 19 digits with a fraction: the slow path keeps some */
      snprintf(buf, sizeof buf, "%.*f", 1 + i % 12, (double)m / (double)(1 + i % 977));
    if (i % 3 == 2) /* leading zeros count as digits too */
      snprintf(buf, sizeof buf, "0.%0*llu", 5 + i % 20, (unsigned long long)m);
    double want = strtod(buf, NULL), got = 0;
    if (!ingest_parse_float64(buf, strlen(buf), &got) || memcmp(&want, &got, 8)) {
      if (bad++ < 5)
        printf("\nfloat mismatch: %s -> %.17g, strtod %.17g\n", buf, got, want);
    }
  }
  CU_ASSERT_EQUAL(bad, 0);
}

static void test_bool_timestamp(void) {
  uint8_t b;
  CU_ASSERT(ingest_parse_bool("TRUE", 4, &b) && b == 1);
  CU_ASSERT(ingest_parse_bool("false", 5, &b) && b == 0);
  CU_ASSERT_FALSE(ingest_parse_bool("1", 1, &b));
  CU_ASSERT(ingest_parse_bool(" fAlSe", 6, &b) && b == 0);
  CU_ASSERT_FALSE(ingest_parse_bool("falsy", 5, &b));
  CU_ASSERT_FALSE(ingest_parse_bool("tru", 3, &b));
  CU_ASSERT_FALSE(ingest_parse_bool("true!", 5, &b));
  int64_t ns;
  int z;
  CU_ASSERT(ingest_parse_timestamp("1970-01-01", 10, &ns, &z) && ns == 0 && !z);
  CU_ASSERT(ingest_parse_timestamp("2024-02-29T12:00:00Z", 20, &ns, &z) &&
            ns == 1709208000LL * 1000000000 && z);
  CU_ASSERT(ingest_parse_timestamp("1970-01-01 01:00+01:00", 22, &ns, &z) && ns == 0 &&
            z);
  CU_ASSERT(ingest_parse_timestamp("1969-12-31T23:59:59.5", 21, &ns, &z) &&
            ns == -500000000);
  CU_ASSERT(ingest_parse_timestamp("2000-01-01T00:00:00.123456789", 29, &ns, &z) &&
            ns == 946684800123456789LL);
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-02-29", 10, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-13-01", 10, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-01T24:00", 16, &ns, &z));
  CU_ASSERT_FALSE(
      ingest_parse_timestamp("1600-01-01", 10, &ns, &z)); /* out of ns range */
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-01x", 11, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("20230101", 8, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-01 10:00:0x", 19, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-01_10:00:00", 19, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-01 10:60:00", 19, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023-01-0a", 10, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2023/01/01", 10, &ns, &z));
  CU_ASSERT_FALSE(ingest_parse_timestamp("2262-04-12", 10, &ns, &z)); /* overflows */
  CU_ASSERT(ingest_parse_timestamp("2262-04-11", 10, &ns, &z)); /* the general path */
  CU_ASSERT(ingest_parse_timestamp("1677-09-22", 10, &ns, &z));
  /* The fast forms (19 and 10 characters) against the general parser, which a
   * fraction forces: every day of years 1676..2263 at a varying time of day. */
  unsigned bad = 0;
  for (int y = 1676; y <= 2263; y++)
    for (int m = 1; m <= 12; m++)
      for (int d = 1; d <= 31; d++) {
        char a[32], b[40];
        int h = (y + d) % 24, mi = (m * d) % 60, s = (y * d) % 60;
        snprintf(a, sizeof a, "%04d-%02d-%02d%c%02d:%02d:%02d", y, m, d,
                 d % 2 ? ' ' : 'T', h, mi, s);
        snprintf(b, sizeof b, "%s.000", a);
        int64_t x = 1, w = 2;
        int zx, zw, ok = ingest_parse_timestamp(a, 19, &x, &zx),
                    want = ingest_parse_timestamp(b, 23, &w, &zw);
        if (ok != want || (ok && (x != w || zx || zw))) bad++;
        snprintf(b, sizeof b, "%.10sT00:00:00.0", a);
        ok = ingest_parse_timestamp(a, 10, &x, &zx);
        want = ingest_parse_timestamp(b, 21, &w, &zw);
        if (ok != want || (ok && x != w)) bad++;
      }
  CU_ASSERT_EQUAL(bad, 0);
}

/* ----------------------------------------------------------------- CSV */

static void test_csv_types(void) {
  const char *text =
      "\xef\xbb\xbfi,f,b,t,s,c,n,,mixed\r\n"
      "1,1.5,true,2024-01-01,\"a,b\",red,,x,1\r\n"
      "2,2,false,2024-01-02T10:00:00,\"say \"\"hi\"\"\",red,,y,2\r\n"
      "\r\n"
      "-3,,TRUE,2024-01-03 00:00:01.25,\"multi\nline\",blue,,z,three\r\n"
      "4,1e3,False,,\"\",red,,w,4";
  struct ingest_result res;
  struct snap_error err = {0};
  int rc = csv("types", text, &res, &err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  if (rc) printf("\n%s\n", err.message);
  CU_ASSERT_EQUAL(res.nrows, 4);
  CU_ASSERT_EQUAL(res.ncols, 9);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "types", &snap, NULL), 0);
  const struct snap_column *c;
  c = snap_snapshot_column(snap, 0);
  CU_ASSERT_STRING_EQUAL(c->name, "i");
  CU_ASSERT_EQUAL(c->type, SNAP_INT64);
  CU_ASSERT_EQUAL(((const int64_t *)c->values)[2], -3);
  c = snap_snapshot_column(snap, 1);
  CU_ASSERT_EQUAL(c->type, SNAP_FLOAT64);
  CU_ASSERT(c->flags & SNAP_NULLABLE);
  CU_ASSERT(isnan(((const double *)c->values)[2]));
  CU_ASSERT_EQUAL(c->validity[0] & 0xf, 0xb); /* rows 0, 1, 3 valid */
  CU_ASSERT_EQUAL(((const double *)c->values)[3], 1000.0);
  c = snap_snapshot_column(snap, 2);
  CU_ASSERT_EQUAL(c->type, SNAP_BOOL);
  CU_ASSERT_EQUAL(memcmp(c->values, "\1\0\1\0", 4), 0);
  c = snap_snapshot_column(snap, 3);
  CU_ASSERT_EQUAL(c->type, SNAP_TIMESTAMP_NS);
  CU_ASSERT_PTR_NULL(c->timezone);
  CU_ASSERT_EQUAL(((const int64_t *)c->values)[2], 1704240001250000000LL);
  CU_ASSERT(c->flags & SNAP_NULLABLE);
  c = snap_snapshot_column(snap, 4);
  CU_ASSERT_EQUAL(c->type, SNAP_STRING);
  CU_ASSERT_EQUAL(c->offsets[4], (int64_t)strlen("a,bsay \"hi\"multi\nline"));
  CU_ASSERT_EQUAL(memcmp(c->data, "a,bsay \"hi\"multi\nline", (size_t)c->offsets[4]), 0);
  CU_ASSERT_EQUAL(c->offsets[3], c->offsets[4]); /* quoted empty: empty string */
  CU_ASSERT_FALSE(c->flags & SNAP_NULLABLE);
  c = snap_snapshot_column(snap, 5);
  CU_ASSERT_EQUAL(c->type, SNAP_CATEGORY);
  CU_ASSERT_EQUAL(c->dict_size, 2);
  CU_ASSERT_EQUAL(memcmp(c->data, "bluered", 7), 0); /* sorted */
  CU_ASSERT_EQUAL(memcmp(c->values, "\1\1\0\1", 4), 0);
  c = snap_snapshot_column(snap, 6);
  CU_ASSERT_EQUAL(c->type, SNAP_FLOAT64); /* all null */
  c = snap_snapshot_column(snap, 7);
  CU_ASSERT_STRING_EQUAL(c->name, "Unnamed: 7");
  CU_ASSERT_EQUAL(c->type, SNAP_STRING); /* 4 distinct of 4: not a category */
  c = snap_snapshot_column(snap, 8);
  CU_ASSERT_EQUAL(c->type, SNAP_STRING); /* numbers then a word */
  snap_unpin(snap);
}

static void test_csv_zoned_and_options(void) {
  struct snap_error err = {0};
  CU_ASSERT_EQUAL_FATAL(
      csv("z", "t,s\n2024-01-01T00:00:00Z,a\n2024-01-01T01:00:00+01:00,a\n", NULL, &err),
      0);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "z", &snap, NULL), 0);
  const struct snap_column *c = snap_snapshot_column(snap, 0);
  CU_ASSERT_EQUAL(c->type, SNAP_TIMESTAMP_NS);
  CU_ASSERT(c->timezone && !strcmp(c->timezone, "UTC"));
  CU_ASSERT_EQUAL(((const int64_t *)c->values)[0], ((const int64_t *)c->values)[1]);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 1)->type, SNAP_CATEGORY);
  snap_unpin(snap);
  struct ingest_options o = {.format = INGEST_CSV, .no_category = 1};
  const char *t = "s\na\na\n";
  CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "z", t, strlen(t), &o, NULL, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "z", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->type, SNAP_STRING);
  snap_unpin(snap);
  /* only empty strings: no character data at all */
  t = "s\n\"\"\n\"\"\n";
  CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "z", t, strlen(t), &o, NULL, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "z", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->offsets[2], 0);
  snap_unpin(snap);
  CU_ASSERT_EQUAL_FATAL(csv("z", t, NULL, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "z", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->type, SNAP_CATEGORY);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->dict_size, 1);
  snap_unpin(snap);
}

/* Every malformed input is refused with its place, and publishes nothing. */
static void test_csv_errors(void) {
  CU_ASSERT_EQUAL_FATAL(csv("bad", "a,b\n1,2\n", NULL, NULL), 0);
  uint64_t before = current("bad");
  struct {
    const char *text, *want;
  } cases[] = {
      {"", "t.csv: empty file"},
      {"a,b\n1,2\n3\n", "t.csv: line 3: 1 field, expected 2"},
      {"a,b\n1,2\n3,4,5\n", "t.csv: line 3: 3 fields, expected 2"},
      {"a,b\n1,\"2\n3,4\n", "t.csv: line 2, column 2: quoted field never closed"},
      {"a,b\n1,\"2\"x\n", "t.csv: line 2, column 2: unexpected character after closing"},
      {"a,b\n1,2\n\"x\ny\",\xc3\x28\n", "t.csv: line 4, column 2 (b): invalid UTF-8"},
      {"a,\xff\n1,2\n", "t.csv: line 1, column 2: header name is not valid UTF-8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct snap_error err = {0};
    int rc = csv("bad", cases[i].text, NULL, &err);
    CU_ASSERT_EQUAL(rc, SNAP_EINVAL);
    if (!strstr(err.message, cases[i].want)) {
      printf("\ncase %zu: got \"%s\", want \"%s\"\n", i, err.message, cases[i].want);
      CU_FAIL("message");
    }
    CU_ASSERT_EQUAL(current("bad"), before);
  }
  struct snap_version_info *v;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(snap_version_list(g_store, "bad", &v, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 1);
  snap_free(v);
}

static void test_cancel(void) {
  volatile int cancel = 1;
  struct ingest_options o = {.format = INGEST_CSV,
                             .cancel = (const volatile int *)&cancel};
  size_t rows = 70000;
  char *text = malloc(rows * 8 + 8);
  strcpy(text, "a\n");
  for (size_t i = 0; i < rows; i++) strcat(text + i * 2, "1\n");
  struct snap_error err = {0};
  int rc = ingest_buffer(g_store, "cancelled", text, strlen(text), &o, NULL, &err);
  CU_ASSERT_EQUAL(rc, -ECANCELED);
  CU_ASSERT_EQUAL(current("cancelled"), 0);
  free(text);
}

/* ----------------------------------------------------------------- npy */

static size_t npy(char *out, const char *dict, const void *data, size_t len) {
  size_t n = strlen(dict), pad = (64 - (10 + n + 1) % 64) % 64, h = n + pad + 1;
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (char)(h & 0xff), out[9] = (char)(h >> 8);
  memcpy(out + 10, dict, n);
  memset(out + 10 + n, ' ', pad);
  out[10 + n + pad] = '\n';
  memcpy(out + 10 + h, data, len);
  return 10 + h + len;
}

static int npy_publish(const char *dataset, const char *dict, const void *data,
                       size_t len, struct snap_error *err) {
  char buf[1024];
  size_t n = npy(buf, dict, data, len);
  struct ingest_options o = {.display_name = "t.npy"};
  return ingest_buffer(g_store, dataset, buf, n, &o, NULL, err);
}

static void test_npy(void) {
  snap_snapshot *snap;
  const double m[6] = {1, 2, 3, 4, 5, 6};
  /* C order (3, 2): columns are 1 3 5 and 2 4 6 */
  CU_ASSERT_EQUAL_FATAL(
      npy_publish("n", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", m,
                  sizeof m, NULL),
      0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "n", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_ncols(snap), 2);
  CU_ASSERT_STRING_EQUAL(snap_snapshot_column(snap, 1)->name, "1");
  const double *c1 = snap_snapshot_column(snap, 1)->values;
  CU_ASSERT(c1[0] == 2 && c1[1] == 4 && c1[2] == 6);
  snap_unpin(snap);
  /* Fortran order: columns are 1 2 3 and 4 5 6 */
  CU_ASSERT_EQUAL_FATAL(
      npy_publish("n", "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }", m,
                  sizeof m, NULL),
      0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "n", &snap, NULL), 0);
  c1 = snap_snapshot_column(snap, 1)->values;
  CU_ASSERT(c1[0] == 4 && c1[1] == 5 && c1[2] == 6);
  snap_unpin(snap);
  /* big-endian int32, 1-D */
  const unsigned char be[8] = {0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe};
  CU_ASSERT_EQUAL_FATAL(
      npy_publish("n", "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be, 8,
                  NULL),
      0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "n", &snap, NULL), 0);
  const struct snap_column *c = snap_snapshot_column(snap, 0);
  CU_ASSERT_EQUAL(c->type, SNAP_INT32);
  CU_ASSERT(((const int32_t *)c->values)[0] == 256 &&
            ((const int32_t *)c->values)[1] == -2);
  snap_unpin(snap);
  /* datetime64/timedelta64 keep their unit and values (9999-12-31 in seconds
   * would wrap as nanoseconds); NaT stays NaT */
  static const struct {
    const char *descr;
    enum snap_type type;
  } units[] = {{"<M8[s]", SNAP_TIMESTAMP_S},   {"<M8[ms]", SNAP_TIMESTAMP_MS},
               {"<M8[us]", SNAP_TIMESTAMP_US}, {"<M8[ns]", SNAP_TIMESTAMP_NS},
               {"<m8[s]", SNAP_DURATION_S},    {"<m8[ms]", SNAP_DURATION_MS},
               {"<m8[us]", SNAP_DURATION_US},  {"<m8[ns]", SNAP_DURATION_NS}};
  const int64_t tv[3] = {253402214400, INT64_MIN, INT64_MAX}; /* 9999-12-31 in s */
  for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
    char dict[96];
    snprintf(dict, sizeof dict,
             "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }", units[i].descr);
    CU_ASSERT_EQUAL_FATAL(npy_publish("n", dict, tv, sizeof tv, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "n", &snap, NULL), 0);
    c = snap_snapshot_column(snap, 0);
    CU_ASSERT_EQUAL(c->type, units[i].type);
    CU_ASSERT(!memcmp(c->values, tv, sizeof tv));
    snap_unpin(snap);
  }
}

static void test_npy_errors(void) {
  uint64_t before = current("n");
  struct {
    const char *dict;
    size_t len;
    const char *want;
  } cases[] = {
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", 40,
       "t.npy: .npy data truncated: shape needs 48 bytes, the file has 40"},
      {"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8,
       "unsupported .npy dtype '|O'"},
      {"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }", 8,
       "structured .npy dtypes are not supported"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), }", 8,
       "more than 2 dimensions"},
      {"{'descr': '<f8', 'shape': (1,), }", 8, "lacks 'fortran_order'"},
      {"{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }", 1, "is not 0/1"},
  };
  const unsigned char data[64] = {7};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct snap_error err = {0};
    CU_ASSERT_EQUAL(npy_publish("n", cases[i].dict, data, cases[i].len, &err),
                    SNAP_EINVAL);
    if (!strstr(err.message, cases[i].want)) {
      printf("\ncase %zu: got \"%s\", want \"%s\"\n", i, err.message, cases[i].want);
      CU_FAIL("message");
    }
  }
  /* a header cut short */
  char buf[256];
  size_t n =
      npy(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", data, 8);
  struct snap_error err = {0};
  struct ingest_options o = {.display_name = "t.npy"};
  CU_ASSERT_EQUAL(ingest_buffer(g_store, "n", buf, 40, &o, NULL, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "t.npy: .npy header truncated"));
  CU_ASSERT_EQUAL(ingest_buffer(g_store, "n", "\x93NUMP", 5, &o, NULL, &err),
                  SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "not a .npy file"));
  (void)n;
  CU_ASSERT_EQUAL(current("n"), before);
}

static void compare_tables(snap_snapshot *a, snap_snapshot *b) {
  const char *why = ingest_tables_differ(a, b);
  if (why) printf("\ntables differ: %s\n", why);
  CU_ASSERT_PTR_NULL(why);
}

/* Pass 2 on several threads gives the same table as on one. */
static void test_csv_threads(void) {
  size_t cap = 1 << 20, len = 0;
  char *t = malloc(cap);
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  len += (size_t)snprintf(t, cap, "i,f,s,c,ts\n");
  unsigned seed = 7;
  for (int r = 0; r < 5000 && len + 200 < cap; r++) {
    int x = rand_r(&seed);
    const char *s = x % 7 == 0   ? ""
                    : x % 7 == 1 ? "\"a,\"\"b\"\"\nc\""
                    : x % 7 == 2 ? "\xc3\xa9t\xc3\xa9"
                                 : "plain";
    len += (size_t)snprintf(t + len, cap - len, "%s,%.17g,%s,%s,2024-01-0%d 10:00:%02d\n",
                            x % 11 ? "12" : "", (double)x / 7.0, s,
                            x % 3 ? "XNYS" : "\"ARCX\"", 1 + x % 9, x % 60);
    if (x % 13 == 0) len += (size_t)snprintf(t + len, cap - len, "\n");
  }
  struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv", .threads = 1};
  struct snap_error err = {0};
  int rc = ingest_buffer(g_store, "thr1", t, len, &o, NULL, &err);
  if (rc) printf("\n%s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  snap_snapshot *a, *b;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "thr1", &a, NULL), 0);
  for (unsigned n = 2; n <= 9; n += 3) {
    o.threads = n;
    rc = ingest_buffer(g_store, "thrn", t, len, &o, NULL, &err);
    if (rc) printf("\n%u threads: %s\n", n, err.message);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "thrn", &b, NULL), 0);
    compare_tables(a, b);
    snap_unpin(b);
  }
  snap_unpin(a);
  free(t);
}

/* Pass 1 scans chunks of the file in parallel: the result and the messages must
 * not depend on how many. Rows are long enough that the chunks of 4 threads start
 * inside the quoted multi-line fields of some rows. */
static char *chunk_text(size_t *len, int rows, int bad_row, const char *bad,
                        int zone_from, size_t *row_off) {
  size_t cap = (size_t)rows * 80 + 256;
  char *t = malloc(cap);
  size_t n = (size_t)snprintf(t, cap, "i,c,ts,q\n");
  for (int r = 0; r < rows; r++) {
    if (row_off) row_off[r] = n;
    if (r == bad_row) {
      n += (size_t)snprintf(t + n, cap - n, "%s\n", bad);
      continue;
    }
    /* c: integers for the first half, then words: a category of 5 values */
    const char *words[] = {"x", "y", "z"};
    char c[8];
    if (r < rows / 2)
      snprintf(c, sizeof c, "%d", r % 2);
    else
      snprintf(c, sizeof c, "%s", words[r % 3]);
    n += (size_t)snprintf(t + n, cap - n, "%d,%s,2024-01-01 00:00:%02d%s,\"%s\"\n", r, c,
                          r % 60, r >= zone_from ? "Z" : "",
                          r % 5 ? "plain" : "two\nlines");
  }
  *len = n;
  return t;
}

/* A text whose zoned timestamps start exactly at the row where the second of two
 * chunks starts (the first newline after the middle of the data). */
static char *zoned_at_split(size_t *len, int *row) {
  static size_t off[20000];
  int from = 10000;
  for (int iter = 0; iter < 50; iter++) {
    char *t = chunk_text(len, 20000, -1, NULL, from, off);
    size_t mid = off[0] + (*len - off[0]) / 2;
    const char *nl = memchr(t + mid, '\n', *len - mid);
    size_t at = (size_t)(nl - t) + 1;
    int r = 0;
    while (r < 20000 && off[r] < at) r++;
    if (r < 20000 && off[r] == at && r == from) return *row = r, t;
    free(t);
    from = r < 20000 && off[r] == at ? r : from + 1;
  }
  CU_FAIL_FATAL("no row starts at the split");
  return NULL;
}

static void test_csv_chunks(void) {
  size_t len;
  char *t = chunk_text(&len, 20000, -1, NULL, 20000, NULL);
  struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv"};
  uint64_t dict = 0;
  for (unsigned n = 1; n <= 4; n++) {
    o.threads = n;
    struct snap_error err = {0};
    int rc = ingest_buffer(g_store, "chunks", t, len, &o, NULL, &err);
    if (rc) printf("\n%u threads: %s\n", n, err.message);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    snap_snapshot *snap;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "chunks", &snap, NULL), 0);
    CU_ASSERT_EQUAL(snap_snapshot_nrows(snap), 20000);
    const struct snap_column *c = snap_snapshot_column(snap, 1);
    CU_ASSERT_EQUAL(c->type, SNAP_CATEGORY); /* numbers first, then words */
    CU_ASSERT_EQUAL(c->dict_size, 5);
    CU_ASSERT_EQUAL(memcmp(c->data, "01xyz", 5), 0);
    CU_ASSERT_EQUAL(((const int8_t *)c->values)[19999], 2 + 19999 % 3);
    if (n == 1) dict = c->dict_size;
    CU_ASSERT_EQUAL(c->dict_size, dict);
    c = snap_snapshot_column(snap, 3);
    CU_ASSERT_EQUAL(c->type, SNAP_CATEGORY);
    CU_ASSERT_EQUAL(memcmp(c->data, "plaintwo\nlines", 14), 0);
    int wrong = 0; /* a short value (key table) and a quoted long one (hash table) */
    for (int r = 0; r < 20000; r++)
      wrong += ((const int8_t *)c->values)[r] != (r % 5 == 0);
    CU_ASSERT_EQUAL(wrong, 0);
    snap_unpin(snap);
  }
  free(t);
  /* a bad row late in the file: the same message, true line numbers */
  static const char *bad[] = {"1,2", "1,x,2024-01-01 00:00:00,\xc3\x28",
                              "1,x,2024-01-01T00:00:00Z,q", "1,x,,q", NULL};
  static const char *want[] = {"t.csv: line %d: 2 fields, expected 4",
                               "t.csv: line %d, column 4 (q): invalid UTF-8",
                               "t.csv: line %d, column 3 (ts): timestamps with and "
                               "without a zone mixed",
                               "t.csv: line %d, column 3 (ts): empty value",
                               "t.csv: line %d, column 3 (ts): timestamps with and "
                               "without a zone mixed"};
  const char *schema = "i int64\nc string\nts timestamp\nq string\n";
  for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
    /* the last case: only zoned timestamps from row 15000 on, so that no chunk
     * mixes them alone (the rows in the second chunk of two are zoned) */
    int row = 15000;
    t = b == 4 ? zoned_at_split(&len, &row)
               : chunk_text(&len, 20000, row, bad[b], 20000, NULL);
    /* header, then rows 0 .. row - 1, one in five (r % 5 == 0) on two lines */
    char msg[160];
    snprintf(msg, sizeof msg, want[b], 2 + row + (row + 4) / 5);
    for (unsigned n = 1; n <= 4; n += b == 4 ? 1 : 3) {
      if (b == 4 && n == 3) continue;
      o.threads = n;
      o.schema = b >= 2 ? schema : NULL;
      o.schema_len = b >= 2 ? strlen(schema) : 0;
      struct snap_error err = {0};
      CU_ASSERT_EQUAL(ingest_buffer(g_store, "chunks", t, len, &o, NULL, &err),
                      SNAP_EINVAL);
      if (!strstr(err.message, msg)) {
        printf("\n%u threads: got \"%s\", want \"%s\"\n", n, err.message, msg);
        CU_FAIL("message");
      }
    }
    free(t);
  }
}

/* Types guessed from the first rows: a later value that does not fit makes the
 * ingest start again with every value checked, and the table is the one full
 * inference gives (the abandoned try burns a version number). */
static void test_csv_speculation(void) {
  static const struct {
    const char *first, *late;
    enum snap_type type;
    int miss;
  } cases[] = {
      {"7", "1.5", SNAP_FLOAT64, 1},
      {"7", "x", SNAP_CATEGORY, 1}, /* two distinct values */
      {"true", "1", SNAP_CATEGORY, 1},
      {"2024-01-01 10:00:00", "2024-01-01T10:00:00Z", SNAP_CATEGORY, 1},
      {"1.25", "inf", SNAP_FLOAT64, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    for (unsigned threads = 1; threads <= 2; threads++) {
      size_t cap = 10000 * 32, n = 0;
      char *t = malloc(cap);
      n += (size_t)snprintf(t, cap, "k,v\n");
      for (int r = 0; r < 9000; r++)
        n += (size_t)snprintf(t + n, cap - n, "%d,%s\n", r,
                              r == 8000 ? cases[i].late : cases[i].first);
      struct ingest_options o = {.format = INGEST_CSV, .threads = threads};
      uint64_t before = current("spec");
      struct ingest_result res;
      struct snap_error err = {0};
      int rc = ingest_buffer(g_store, "spec", t, n, &o, &res, &err);
      if (rc) printf("\ncase %zu: %s\n", i, err.message);
      CU_ASSERT_EQUAL_FATAL(rc, 0);
      CU_ASSERT_EQUAL(res.version, before + 1 + cases[i].miss); /* a try abandoned */
      snap_snapshot *snap;
      CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "spec", &snap, NULL), 0);
      const struct snap_column *c = snap_snapshot_column(snap, 1);
      CU_ASSERT_EQUAL(c->type, cases[i].type);
      if (c->type == SNAP_FLOAT64) {
        CU_ASSERT_EQUAL(((const double *)c->values)[0], strtod(cases[i].first, NULL));
        CU_ASSERT_EQUAL(((const double *)c->values)[8000], strtod(cases[i].late, NULL));
      } else {
        CU_ASSERT_EQUAL(c->dict_size, 2);
        int8_t code = ((const int8_t *)c->values)[8000];
        CU_ASSERT(code == 0 || code == 1);
        size_t len = (size_t)(c->offsets[code + 1] - c->offsets[code]);
        CU_ASSERT_EQUAL(len, strlen(cases[i].late));
        CU_ASSERT_EQUAL(memcmp(c->data + c->offsets[code], cases[i].late, len), 0);
      }
      CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->type, SNAP_INT64); /* guessed */
      snap_unpin(snap);
      free(t);
    }
  }
  /* a guess that holds: no number burned; a bad value late in a guessed column:
   * the message of a full check */
  size_t cap = 10000 * 16, n = 0;
  char *t = malloc(cap);
  n += (size_t)snprintf(t, cap, "v\n");
  for (int r = 0; r < 9000; r++) n += (size_t)snprintf(t + n, cap - n, "%d\n", r);
  struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv"};
  uint64_t before = current("spec");
  struct ingest_result res;
  CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "spec", t, n, &o, &res, NULL), 0);
  CU_ASSERT_EQUAL(res.version, before + 1);
  memcpy(t + n - 5, "\xff", 1); /* "8999\n" -> "\xff999\n" */
  struct snap_error err = {0};
  CU_ASSERT_EQUAL(ingest_buffer(g_store, "spec", t, n, &o, NULL, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(
      strstr(err.message, "t.csv: line 9001, column 1 (v): invalid UTF-8"));
  CU_ASSERT_EQUAL(current("spec"), before + 1);
  free(t);
}

/* The quick path (no pass 1) against full checking of every value, and each way
 * off it: the same table either way, with the same messages. */

static char *quick_text(size_t *len, const char *eol, const char *late, int final_eol) {
  size_t cap = 12000 * 96, n = 0;
  char *t = malloc(cap);
  n += (size_t)snprintf(t, cap, "id,price,qty,flag,ts,venue%s", eol);
  static const char *venues[] = {"XNYS", "XNAS", "ARCX", "BATS-EXCHANGE-LONG"};
  unsigned seed = 99;
  for (int r = 0; r < 10000; r++) {
    int x = rand_r(&seed);
    n += (size_t)snprintf(
        t + n, cap - n, "%d,%.17g,%d,%s,2024-%02d-%02d %02d:%02d:%02d,%s%s", r,
        (double)x / 977.0, x % 10000, x % 2 ? "True" : "False", 1 + x % 12, 1 + x % 28,
        x % 24, x % 60, (x / 7) % 60, venues[x % 4], eol);
    if (r == 7000 && late) n += (size_t)snprintf(t + n, cap - n, "%s%s", late, eol);
  }
  if (!final_eol) n -= strlen(eol);
  *len = n;
  return t;
}

/* The quick path's own integer and float scanners against full checking: signs,
 * 18 and 19 digits (the general parser takes over), values near a buffer's end. */
static void test_csv_quick_numbers(void) {
  static const char *ints[] = {"0",
                               "-0",
                               "-5",
                               "+7",
                               "123456789012345678",
                               "-123456789012345678",
                               "1234567890123456789",
                               "9223372036854775807",
                               "-9223372036854775808",
                               "00000000012"};
  static const char *floats[] = {
      "0.5",  "-1e-7", "+3.25", "636.9616873214543", "12345678901234567890", "1e22",
      "-0.0", "inf",   "7"};
  size_t cap = 1 << 20, n = 0;
  char *t = malloc(cap);
  n += (size_t)snprintf(t, cap, "i,f\n");
  for (int r = 0; r < 5000; r++)
    n += (size_t)snprintf(t + n, cap - n, "%s,%s\n", ints[r % 10], floats[r % 9]);
  n += (size_t)snprintf(t + n, cap - n, "-12345678,1.5"); /* no final newline */
  struct ingest_options o = {.format = INGEST_CSV, .csv_sample_rows = 64};
  struct ingest_result res;
  CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "qn", t, n, &o, &res, NULL), 0);
  CU_ASSERT_EQUAL(res.quick, 1);
  o.csv_full_check = 1;
  CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "qn_full", t, n, &o, NULL, NULL), 0);
  snap_snapshot *a, *b;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "qn", &a, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "qn_full", &b, NULL), 0);
  compare_tables(a, b);
  CU_ASSERT_EQUAL(snap_snapshot_column(a, 0)->type, SNAP_INT64);
  CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(a, 0)->values)[8], INT64_MIN);
  CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(a, 0)->values)[5000], -12345678);
  snap_unpin(a);
  snap_unpin(b);
  free(t);
}

static void test_csv_quick(void) {
  static const struct {
    const char *eol, *late, *want_error;
    int final_eol, quick, tries;
  } cases[] = {
      {"\n", NULL, NULL, 1, 1, 1},
      {"\r\n", NULL, NULL, 1, 1, 1},
      {"\n", NULL, NULL, 0, 1, 1}, /* no final newline */
      {"\n", "1,2.5,3,True,2024-01-01 00:00:00,NEW", NULL, 1, 0, 2}, /* 5th category */
      {"\n", "1,,3,True,2024-01-01 00:00:00,XNYS", NULL, 1, 0, 1},   /* a null */
      {"\n", "1,2.5,3,True,2024-01-01 00:00:00,\"XNYS\"", NULL, 1, 0, 1}, /* quoted */
      {"\n", "", NULL, 1, 0, 1},                                          /* blank line */
      {"\n", "1,2.5,3,True,2024-01-01 00:00:00,XNYS\r1,2,3,True,2024-01-01,XNYS", NULL, 1,
       0, 1}, /* a bare CR ends a record */
      {"\n", "1,2.5,3,x,2024-01-01 00:00:00,XNYS", NULL, 1, 0, 2}, /* not a bool */
      {"\n", "1,2.5,3,True", "t.csv: line 7003: 4 fields, expected 6", 1, 0, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t len;
    char *t = quick_text(&len, cases[i].eol, cases[i].late, cases[i].final_eol);
    struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv"};
    struct ingest_result res = {0};
    struct snap_error err = {0};
    for (unsigned threads = 1; threads <= 3; threads += 2) {
      o.threads = threads;
      o.csv_full_check = 0;
      uint64_t before = current("quick");
      int rc = ingest_buffer(g_store, "quick", t, len, &o, &res, &err);
      if (cases[i].want_error) {
        CU_ASSERT_EQUAL(rc, SNAP_EINVAL);
        if (!strstr(err.message, cases[i].want_error)) {
          printf("\ncase %zu: got \"%s\", want \"%s\"\n", i, err.message,
                 cases[i].want_error);
          CU_FAIL("message");
        }
        continue;
      }
      if (rc) printf("\ncase %zu: %s\n", i, err.message);
      CU_ASSERT_EQUAL_FATAL(rc, 0);
      CU_ASSERT_EQUAL(res.quick, cases[i].quick);
      CU_ASSERT_EQUAL(res.version,
                      before + (uint64_t)cases[i].tries); /* a miss burns one */
      CU_ASSERT_EQUAL(res.nrows, 10000 + (cases[i].late && *cases[i].late) +
                                     (cases[i].late && strchr(cases[i].late, '\r')));
      o.csv_full_check = 1;
      CU_ASSERT_EQUAL_FATAL(ingest_buffer(g_store, "full", t, len, &o, &res, &err), 0);
      CU_ASSERT_EQUAL(res.quick, 0);
      snap_snapshot *a, *b;
      CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "quick", &a, NULL), 0);
      CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "full", &b, NULL), 0);
      compare_tables(a, b);
      if (i == 0) { /* the types it was meant to find */
        static const enum snap_type want[] = {SNAP_INT64,        SNAP_FLOAT64,
                                              SNAP_INT64,        SNAP_BOOL,
                                              SNAP_TIMESTAMP_NS, SNAP_CATEGORY};
        for (uint32_t k = 0; k < 6; k++)
          CU_ASSERT_EQUAL(snap_snapshot_column(a, k)->type, want[k]);
      }
      snap_unpin(a);
      snap_unpin(b);
    }
    free(t);
  }
}

/* The input file under a read lease: refused while another process has it open
 * for writing; abandoned (nothing published, no SIGBUS) when one opens it during
 * the ingest; read instead of mapped on request, giving the same table. */
struct lease_probe {
  int fd;
  const char *path;
  pid_t child;
};

static void break_lease_once(uint64_t done, uint64_t total, void *arg) {
  struct lease_probe *lp = arg;
  (void)done, (void)total;
  if (lp->child) return;
  lp->child = fork();
  if (lp->child == 0) { /* waits in open() until the ingest gives the lease back */
    int wfd = open(lp->path, O_WRONLY);
    _exit(wfd < 0 ? 1 : 0);
  }
  /* until the kernel marks the lease as being broken: the child is in open() */
  for (int i = 0; i < 10000 && fcntl(lp->fd, F_GETLEASE) == F_RDLCK; i++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

static void test_input_lease(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/lease.csv", g_dir);
  FILE *fp = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fputs("v\n", fp);
  for (int r = 0; r < 200000; r++) fprintf(fp, "%d\n", r % 1000);
  fclose(fp);
  uint64_t before = current("lease");
  struct ingest_options o = {.format = INGEST_CSV, .threads = 1};
  struct snap_error err = {0};
  /* open for writing (by anyone, this process too): refused */
  int wfd = open(path, O_WRONLY);
  CU_ASSERT_EQUAL(ingest_file(g_store, "lease", path, &o, NULL, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "open for writing by another process"));
  close(wfd);
  /* opened for writing half-way */
  int fd = open(path, O_RDONLY);
  struct lease_probe lp = {.fd = fd, .path = path};
  o.progress = break_lease_once;
  o.progress_arg = &lp;
  o.display_name = "lease.csv";
  CU_ASSERT_EQUAL(ingest_fd(g_store, "lease", fd, &o, NULL, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(
      strstr(err.message, "lease.csv: another process opened it for writing"));
  CU_ASSERT_EQUAL(current("lease"), before);
  CU_ASSERT(lp.child > 0);
  int status = -1;
  CU_ASSERT_EQUAL(waitpid(lp.child, &status, 0), lp.child);
  CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* its open() went through */
  close(fd);
  /* read, not mapped: the same table */
  o.progress = NULL;
  CU_ASSERT_EQUAL_FATAL(ingest_file(g_store, "lease", path, &o, NULL, NULL), 0);
  o.read_input = 1;
  CU_ASSERT_EQUAL_FATAL(ingest_file(g_store, "lease_read", path, &o, NULL, NULL), 0);
  snap_snapshot *a, *b;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "lease", &a, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "lease_read", &b, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_nrows(a), 200000);
  compare_tables(a, b);
  snap_unpin(a);
  snap_unpin(b);
  unlink(path);
}

/* The 16-byte record scanner against the general one (csv_full_check): quoted
 * fields of every shape, across block boundaries, stray quotes, a bad quote. */
static void test_csv_fast_tokenizer(void) {
  static const char *cells[] = {"plain",
                                "\"a,b\"",
                                "\"say \"\"hi\"\"\"",
                                "\"\"",
                                "",
                                "5\"6",
                                "\"a long quoted field, with commas, past 16 bytes\"",
                                "\"\"\"\"",
                                "x\"",
                                "\"ends \"\"\"\"\""};
  static const char *bad[] = {"\"x\"y", "\"unclosed", "\"a\"\"", "\"q\" "};
  for (size_t round = 0; round <= sizeof bad / sizeof *bad; round++) {
    size_t cap = 1 << 16, n = 0;
    char *t = malloc(cap);
    n += (size_t)snprintf(t, cap, "k,s,v\n");
    for (int r = 0; r < 300; r++) {
      const char *s = round && r == 150 ? bad[round - 1] : cells[(r * 7) % 10];
      n += (size_t)snprintf(t + n, cap - n, "%d,%s,%d.5\n", r, s, r % 13);
    }
    struct ingest_options o = {.format = INGEST_CSV, .display_name = "t.csv"};
    struct snap_error e1 = {0}, e2 = {0};
    int rc1 = ingest_buffer(g_store, "tok", t, n, &o, NULL, &e1);
    o.csv_full_check = 1;
    int rc2 = ingest_buffer(g_store, "tok_ref", t, n, &o, NULL, &e2);
    CU_ASSERT_EQUAL(rc1, rc2);
    if (round == 0) {
      CU_ASSERT_EQUAL_FATAL(rc1, 0);
      snap_snapshot *a, *b;
      CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "tok", &a, NULL), 0);
      CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "tok_ref", &b, NULL), 0);
      compare_tables(a, b);
      CU_ASSERT_EQUAL(snap_snapshot_column(a, 1)->type, SNAP_CATEGORY);
      snap_unpin(a);
      snap_unpin(b);
    } else if (rc1) {
      CU_ASSERT_STRING_EQUAL(e1.message, e2.message);
    }
    free(t);
  }
}

/* Without a lease to be had (another user's file, no CAP_LEASE): a CSV is read
 * into memory and a segment imported from a private copy, in a child that drops
 * to uid 65534 (the suite runs as root). */
static void test_input_no_lease(void) {
  if (geteuid() != 0) {
    CU_FAIL("needs root: it drops to uid 65534 to lose CAP_LEASE");
    return;
  }
  char dir[160], csv_path[200], seg_path[200];
  snprintf(dir, sizeof dir, "%s.nolease", g_dir);
  snprintf(csv_path, sizeof csv_path, "%s.in.csv", g_dir);
  snprintf(seg_path, sizeof seg_path, "%s.in.seg", g_dir);
  CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
  CU_ASSERT_EQUAL_FATAL(chown(dir, 65534, 65534), 0);
  FILE *fp = fopen(csv_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fputs("v,w\n", fp);
  for (int r = 0; r < 1000; r++) fprintf(fp, "%d,%d.5\n", r, r);
  fclose(fp);
  /* a segment file: a copy of a version of this store, readable by all */
  CU_ASSERT_EQUAL_FATAL(csv("noleaseseg", "a,b\n1,x\n2,y\n", NULL, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "noleaseseg", &s, NULL), 0);
  size_t len;
  const void *seg = snap_snapshot_segment(s, &len);
  fp = fopen(seg_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  CU_ASSERT_EQUAL(fwrite(seg, 1, len, fp), len);
  fclose(fp);
  snap_unpin(s);
  chmod(csv_path, 0644);
  chmod(seg_path, 0644);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = setgroups(0, NULL) || setgid(65534) || setuid(65534);
    snap_store *st = NULL;
    struct ingest_result r1 = {0}, r2 = {0};
    struct snap_error e = {0};
    bad = bad || snap_store_open(dir, SNAP_CREATE, &st, &e) ||
          fcntl(open(csv_path, O_RDONLY), F_SETLEASE, F_RDLCK) == 0; /* must not lease */
    bad = bad || ingest_file(st, "c", csv_path, NULL, &r1, &e) || r1.nrows != 1000;
    bad = bad || ingest_file(st, "s", seg_path, NULL, &r2, &e) || r2.nrows != 2;
    if (bad) fprintf(stderr, "\nno-lease child: %s\n", e.message);
    snap_store_close(st);
    _exit(bad);
  }
  int status = -1;
  CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
  CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  unlink(csv_path);
  unlink(seg_path);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int csv_schema(const char *dataset, const char *text, const char *schema,
                      struct snap_error *err) {
  struct ingest_options o = {.format = INGEST_CSV,
                             .display_name = "t.csv",
                             .schema = schema,
                             .schema_len = strlen(schema),
                             .schema_name = "t.schema"};
  return ingest_buffer(g_store, dataset, text, strlen(text), &o, NULL, err);
}

/* Integers past int64 and timestamps past the nanosecond range keep their value:
 * uint64, a string, timestamp[us]; never a float or a wrapped time. Each case is
 * ingested with every value checked, by default, and with the types guessed from
 * the first row (so that the guess misses), on one and two threads: the same
 * table every way. */
static void test_csv_wide(void) {
  static const struct {
    const char *text;
    enum snap_type type;
    const char *tz;
    int nullable;
  } cases[] = {
      {"1\n9007199254740993\n12345678901234567890\n", SNAP_UINT64, NULL, 0},
      {"9007199254740993\n-5\n", SNAP_INT64, NULL, 0},
      {"-1\n12345678901234567890\n7\n", SNAP_STRING, NULL, 0},
      {"123456789012345678901234\n1\n2\n", SNAP_STRING, NULL, 0},
      {"-9223372036854775809\n1\n2\n", SNAP_STRING, NULL, 0},
      {"12345678901234567890\n1.5\n", SNAP_FLOAT64, NULL, 0}, /* as pandas */
      {"18446744073709551615\n\"\"\n0\n", SNAP_STRING, NULL, 0},
      {"18446744073709551615,\n,\n0,\n", SNAP_UINT64, NULL, 1},
      {"2020-01-01\n9999-12-31\n1000-01-01T00:00:00.000001\n", SNAP_TIMESTAMP_US, NULL,
       0},
      {"2020-01-01\n2262-04-11T23:47:16.854775807\n", SNAP_TIMESTAMP_NS, NULL, 0},
      {"2020-01-01\n2262-04-11T23:47:17\n", SNAP_TIMESTAMP_US, NULL, 0},
      {"2020-01-01T00:00:00.123456789\n9999-12-31\n0001-01-01\n", SNAP_STRING, NULL, 0},
      {"9999-12-31T00:00:00Z\n2020-01-01T00:00:00+01:00\n", SNAP_TIMESTAMP_US, "UTC", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char text[256];
    int nc = strchr(cases[i].text, ',') != NULL;
    snprintf(text, sizeof text, "%s\n%s", nc ? "v,w" : "v", cases[i].text);
    struct ingest_options full = {.format = INGEST_CSV,
                                  .display_name = "t.csv",
                                  .no_category = 1,
                                  .csv_full_check = 1};
    struct snap_error err = {0};
    int rc = ingest_buffer(g_store, "wide", text, strlen(text), &full, NULL, &err);
    if (rc) printf("\ncase %zu: %s\n", i, err.message);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    snap_snapshot *a, *b;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "wide", &a, NULL), 0);
    const struct snap_column *c = snap_snapshot_column(a, 0);
    if (c->type != cases[i].type)
      printf("\ncase %zu: %s, wanted %s\n", i, snap_type_name(c->type),
             snap_type_name(cases[i].type));
    CU_ASSERT_EQUAL(c->type, cases[i].type);
    CU_ASSERT_EQUAL(!!(c->flags & SNAP_NULLABLE), cases[i].nullable);
    CU_ASSERT(cases[i].tz ? c->timezone && !strcmp(c->timezone, cases[i].tz)
                          : !c->timezone);
    if (c->type == SNAP_STRING) { /* every value exactly as written */
      const char *p = cases[i].text;
      for (uint64_t r = 0; r < snap_snapshot_nrows(a); r++) {
        size_t n = strcspn(p, "\n");
        size_t got = (size_t)(c->offsets[r + 1] - c->offsets[r]);
        int quoted = n == 2 && !memcmp(p, "\"\"", 2);
        CU_ASSERT(quoted ? got == 0 : got == n && !memcmp(c->data + c->offsets[r], p, n));
        p += n + 1;
      }
    }
    struct ingest_options other[] = {
        {.format = INGEST_CSV, .no_category = 1},
        {.format = INGEST_CSV, .no_category = 1, .csv_sample_rows = 1},
        {.format = INGEST_CSV, .no_category = 1, .csv_sample_rows = 1, .threads = 2},
    };
    for (size_t j = 0; j < sizeof other / sizeof *other; j++) {
      rc = ingest_buffer(g_store, "wide2", text, strlen(text), &other[j], NULL, &err);
      if (rc) printf("\ncase %zu, options %zu: %s\n", i, j, err.message);
      CU_ASSERT_EQUAL_FATAL(rc, 0);
      rc = snap_pin(g_store, "wide2", &b, &err);
      if (rc) printf("\npin: %s\n", err.message);
      CU_ASSERT_EQUAL_FATAL(rc, 0);
      compare_tables(a, b);
      snap_unpin(b);
    }
    snap_unpin(a);
  }
  /* the values themselves */
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(csv("wide",
                            "u,t\n12345678901234567890,9999-12-31T23:59:59.999999\n"
                            "9007199254740993,1000-01-01\n",
                            NULL, NULL),
                        0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "wide", &snap, NULL), 0);
  const uint64_t *u = snap_snapshot_column(snap, 0)->values;
  CU_ASSERT(u[0] == 12345678901234567890ull && u[1] == 9007199254740993ull);
  const int64_t *t = snap_snapshot_column(snap, 1)->values;
  CU_ASSERT(t[0] == 253402300799999999LL && t[1] == -30610224000LL * 1000000);
  snap_unpin(snap);
  /* a schema names the unit and the unsigned type; a value that does not fit is
   * an error naming it, never rounded */
  CU_ASSERT_EQUAL_FATAL(csv_schema("wide", "a,b,c\n9999-12-31,2020-01-01T00:00:00.5,1\n",
                                   "a timestamp[s]\nb timestamp[ms]\nc uint64\n", NULL),
                        0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "wide", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->type, SNAP_TIMESTAMP_S);
  CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(snap, 0)->values)[0],
                  253402214400LL);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 1)->type, SNAP_TIMESTAMP_MS);
  CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(snap, 1)->values)[0],
                  1577836800500LL);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 2)->type, SNAP_UINT64);
  snap_unpin(snap);
  uint64_t before = current("wide");
  struct {
    const char *csv, *schema, *want;
  } bad[] = {
      {"a\n2020-01-01\n9999-12-31\n", "a timestamp\n",
       "t.csv: line 3, column 1 (a): \"9999-12-31\" does not fit timestamp[ns] (outside"},
      {"a\n2020-01-01T00:00:00.5\n", "a timestamp[s]\n",
       "t.csv: line 2, column 1 (a): \"2020-01-01T00:00:00.5\" does not fit "
       "timestamp[s]"},
      {"a\n-1\n", "a uint64\n",
       "t.csv: line 2, column 1 (a): cannot parse \"-1\" as uint64"},
      {"a\n18446744073709551616\n", "a uint64\n",
       "t.csv: line 2, column 1 (a): cannot parse \"18446744073709551616\" as uint64"},
      {"a\n12345678901234567890\n", "a int64\n",
       "t.csv: line 2, column 1 (a): cannot parse \"12345678901234567890\" as int64"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct snap_error err = {0};
    CU_ASSERT_EQUAL(csv_schema("wide", bad[i].csv, bad[i].schema, &err), SNAP_EINVAL);
    if (strncmp(err.message, bad[i].want, strlen(bad[i].want)))
      printf("\nwide schema case %zu: got \"%s\"\n", i, err.message);
    CU_ASSERT(!strncmp(err.message, bad[i].want, strlen(bad[i].want)));
  }
  CU_ASSERT_EQUAL(current("wide"), before);
}

/* A column of quoted empty strings and nulls: a string column (or a category of
 * one empty value) whose data buffer is empty and whose offsets are all 0. */
static void test_csv_empty_strings(void) {
  const char *text = "s,i\n\"\",1\n,2\n\"\",3\n";
  for (int nocat = 0; nocat <= 1; nocat++) {
    struct ingest_options o = {.format = INGEST_CSV, .no_category = nocat};
    struct snap_error err = {0};
    CU_ASSERT_EQUAL_FATAL(
        ingest_buffer(g_store, "empty", text, strlen(text), &o, NULL, &err), 0);
    snap_snapshot *snap;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "empty", &snap, NULL), 0);
    CU_ASSERT_EQUAL(snap_snapshot_verify(snap, NULL), 0);
    const struct snap_column *c = snap_snapshot_column(snap, 0);
    CU_ASSERT_EQUAL(c->type, nocat ? SNAP_STRING : SNAP_CATEGORY);
    CU_ASSERT_EQUAL(c->data_bytes, 0);
    CU_ASSERT_PTR_NOT_NULL(c->offsets);
    uint64_t no = nocat ? 3 : c->dict_size;
    for (uint64_t r = 0; r <= no; r++) CU_ASSERT_EQUAL(c->offsets[r], 0);
    if (nocat) { /* rows 0 and 2 are "", row 1 null */
      CU_ASSERT(c->flags & SNAP_NULLABLE);
      CU_ASSERT_EQUAL(c->validity[0] & 7, 5);
    } else {
      CU_ASSERT_EQUAL(c->dict_size, 1);
      const int8_t *code = c->values;
      CU_ASSERT(code[0] == 0 && code[1] == -1 && code[2] == 0);
    }
    snap_unpin(snap);
  }
}

static void test_csv_schema(void) {
  struct snap_error err = {0};
  const char *t = "a,b,c d,e,f,g\n1,2,x,true,2024-01-01,u\n3,,y,false,2024-01-02,v\n";
  const char *sch =
      "# types\n\nb float64 nullable\na   float64\nc d string\ne bool\r\nf timestamp\n"
      "g category\n";
  CU_ASSERT_EQUAL_FATAL(csv_schema("sc", t, sch, &err), 0);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "sc", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->type, SNAP_FLOAT64); /* not int64 */
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 0)->flags, 0);
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(snap, 0)->values)[1], 3.0);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 1)->flags, SNAP_NULLABLE);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 2)->type, SNAP_STRING); /* not category */
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 3)->type, SNAP_BOOL);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 4)->type, SNAP_TIMESTAMP_NS);
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 5)->type, SNAP_CATEGORY); /* 2 of 2 */
  CU_ASSERT_EQUAL(snap_snapshot_column(snap, 5)->dict_size, 2);
  snap_unpin(snap);
  uint64_t before = current("sc");
  const char *ok = "a,b\n1,2\n";
  struct {
    const char *csv, *schema, *want;
  } bad[] = {
      {"a,b\n1,2\n1,x\n", "a int64\nb int64\n",
       "t.csv: line 3, column 2 (b): cannot parse \"x\" as int64"},
      {"a,b\n1,\n", "a int64\nb int64\n", "t.csv: line 2, column 2 (b): empty value"},
      {ok, "a int64\n", "t.schema: column 2 (b) of t.csv is not in the schema"},
      {ok, "a int64\nb int64\nc int64\n", "t.schema: line 3: no column \"c\""},
      {ok, "a int64\nb int32\n", "t.schema: line 2: unknown type \"int32\""},
      {ok, "a int64\na bool\nb bool\n",
       "t.schema: line 2: column \"a\" is declared twice"},
      {ok, "a\nb int64\n", "t.schema: line 1: expected"},
      {"a,b\n2024-01-01,1\n2024-01-01Z,1\n", "a timestamp\nb int64\n",
       "t.csv: line 3, column 1 (a): timestamps with"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    memset(&err, 0, sizeof err);
    CU_ASSERT_EQUAL(csv_schema("sc", bad[i].csv, bad[i].schema, &err), SNAP_EINVAL);
    if (strncmp(err.message, bad[i].want, strlen(bad[i].want)))
      printf("\nschema case %zu: got \"%s\"\n", i, err.message);
    CU_ASSERT(!strncmp(err.message, bad[i].want, strlen(bad[i].want)));
  }
  CU_ASSERT_EQUAL(current("sc"), before);
}

int main(void) {
  if (CU_initialize_registry() != CUE_SUCCESS) return 1;
  CU_pSuite s = CU_add_suite("ingest", suite_init, suite_clean);
  CU_TestInfo tests[] = {
      {"int64 parser", test_int64},
      {"uint64 parser", test_uint64},
      {"float64 parser on hard cases", test_float64_hard},
      {"timestamp parser in each unit", test_timestamp_units},
      {"CSV integers past int64, timestamps past ns", test_csv_wide},
      {"CSV of empty strings only", test_csv_empty_strings},
      {"float64 parser agrees with strtod", test_float64},
      {"bool and timestamp parsers", test_bool_timestamp},
      {"CSV type inference, quoting, nulls, categories", test_csv_types},
      {"CSV zoned timestamps and options", test_csv_zoned_and_options},
      {"CSV errors name the place and publish nothing", test_csv_errors},
      {"cancel aborts the publish", test_cancel},
      {"CSV pass 2 on several threads", test_csv_threads},
      {"CSV pass 1 in chunks: same table, same messages", test_csv_chunks},
      {"CSV types guessed from the first rows", test_csv_speculation},
      {"CSV quick path: the table of full checking, or off it", test_csv_quick},
      {"CSV quick path: integer and float scanners", test_csv_quick_numbers},
      {"CSV 16-byte record scanner against the general one", test_csv_fast_tokenizer},
      {"the input under a read lease", test_input_lease},
      {"no lease to be had: read, or imported from a copy", test_input_no_lease},
      {"CSV schema file", test_csv_schema},
      {"npy layouts, byte order, time units", test_npy},
      {"npy errors", test_npy_errors},
      CU_TEST_INFO_NULL,
  };
  for (CU_TestInfo *t = tests; t->pName; t++) CU_add_test(s, t->pName, t->pTestFunc);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed =
      CU_get_number_of_failure_records(); /* counts suite-setup failures too */
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
