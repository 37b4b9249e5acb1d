/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Arrow C Data / Stream export: formats, zero-copy buffers, pins held by arrays. */
#define _GNU_SOURCE
#include "libsnap/arrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test_util.h"

static char *g_dir;
static snap_store *g_store;

#define N 100

static void publish_mixed(void) {
  static const char *cats[] = {"x", "yy"};
  struct snap_field f[5] = {
      {.name = "f", .type = SNAP_FLOAT64, .flags = SNAP_NULLABLE},
      {.name = "b", .type = SNAP_BOOL},
      {.name = "s", .type = SNAP_STRING, .data_bytes = N},
      {.name = "c", .type = SNAP_CATEGORY, .dict_size = 2, .data_bytes = 3},
      {.name = "t", .type = SNAP_TIMESTAMP_NS, .timezone = "Asia/Tokyo"}};
  struct snap_schema schema = {N, 5, f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "m", &schema, &p, NULL), 0);
  struct snap_fill fl[5];
  for (uint32_t i = 0; i < 5; i++) snap_publish_fill(p, i, &fl[i], NULL);
  for (int r = 0; r < N; r++) {
    ((double *)fl[0].values)[r] = r * 1.5;
    if (r % 3) fl[0].validity[r / 8] |= (uint8_t)(1u << (r % 8));
    ((uint8_t *)fl[1].values)[r] = r % 2;
    fl[2].data[r] = (char)('a' + r % 26);
    fl[2].offsets[r + 1] = r + 1;
    ((int8_t *)fl[3].values)[r] = (int8_t)(r % 3 - 1); /* -1, 0, 1 */
    ((int64_t *)fl[4].values)[r] = r;
  }
  fl[3].offsets[1] = 1, fl[3].offsets[2] = 3;
  memcpy(fl[3].data, "xyy", 3);
  (void)cats;
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0);
}

static bool inside(const snap_snapshot *s, const void *p) {
  size_t len;
  const char *base = snap_snapshot_segment(s, &len);
  return (const char *)p >= base && (const char *)p < base + len;
}

static void test_export_record_batch(void) {
  g_store = tu_store_create("arrow", &g_dir);
  publish_mixed();
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "m", &s, NULL), 0);
  struct ArrowSchema sch;
  struct ArrowArray arr;
  CU_ASSERT_EQUAL_FATAL(snap_arrow_export(s, &sch, &arr, NULL), 0);
  CU_ASSERT_STRING_EQUAL(sch.format, "+s");
  CU_ASSERT_EQUAL_FATAL(sch.n_children, 5);
  CU_ASSERT_STRING_EQUAL(sch.children[0]->format, "g");
  CU_ASSERT_STRING_EQUAL(sch.children[0]->name, "f");
  CU_ASSERT(sch.children[0]->flags & ARROW_FLAG_NULLABLE);
  CU_ASSERT_STRING_EQUAL(sch.children[1]->format, "b");
  CU_ASSERT_STRING_EQUAL(sch.children[2]->format, "U");
  CU_ASSERT_STRING_EQUAL(sch.children[3]->format, "c");
  CU_ASSERT_STRING_EQUAL(sch.children[3]->dictionary->format, "U");
  CU_ASSERT_STRING_EQUAL(sch.children[4]->format, "tsn:Asia/Tokyo");
  CU_ASSERT_EQUAL(arr.length, N);
  CU_ASSERT_EQUAL(arr.n_children, 5);
  struct ArrowArray *f = arr.children[0], *b = arr.children[1], *str = arr.children[2],
                    *c = arr.children[3];
  /* zero copy: values, validity, offsets, data, codes, dictionary */
  CU_ASSERT(inside(s, f->buffers[0]) && inside(s, f->buffers[1]));
  CU_ASSERT_EQUAL(((const double *)f->buffers[1])[7], 7 * 1.5);
  CU_ASSERT(inside(s, str->buffers[1]) && inside(s, str->buffers[2]));
  CU_ASSERT(inside(s, c->buffers[1]) && inside(s, c->dictionary->buffers[2]));
  CU_ASSERT_EQUAL(c->dictionary->length, 2);
  /* the documented copies: bool bits and the category validity */
  CU_ASSERT(!inside(s, b->buffers[1]));
  for (int r = 0; r < N; r++) {
    CU_ASSERT_EQUAL((((const uint8_t *)b->buffers[1])[r / 8] >> (r % 8)) & 1, r % 2);
    CU_ASSERT_EQUAL((((const uint8_t *)c->buffers[0])[r / 8] >> (r % 8)) & 1, r % 3 != 0);
  }
  CU_ASSERT_EQUAL(c->null_count, (N + 2) / 3);
  /* the arrays hold the version after the caller unpins and the version retires */
  snap_unpin(s);
  uint64_t v;
  for (int k = 0; k < 2; k++)
    CU_ASSERT_EQUAL(tu_publish_f64(g_store, "m", 10, 1, k, &v), 0);
  struct snap_gc_stats st;
  snap_store_trim(g_store);
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 1);
  /* a consumer may move a child out and release the parent first */
  struct ArrowArray moved = *arr.children[2];
  arr.children[2]->release = NULL;
  arr.release(&arr);
  sch.release(&sch);
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 1); /* the moved child still pins it */
  CU_ASSERT_EQUAL(((const char *)moved.buffers[2])[3], 'd');
  moved.release(&moved);
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 0);
  CU_ASSERT_EQUAL(st.freed_versions, 1);
  tu_store_destroy(g_store, g_dir);
}

static void test_export_stream_and_column(void) {
  g_store = tu_store_create("arrow", &g_dir);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 1000, 3, 4, &v), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  struct ArrowArrayStream st;
  CU_ASSERT_EQUAL_FATAL(snap_arrow_export_stream(s, &st, NULL), 0);
  snap_unpin(s);
  struct ArrowSchema sch;
  struct ArrowArray a;
  CU_ASSERT_EQUAL(st.get_schema(&st, &sch), 0);
  CU_ASSERT_EQUAL(sch.n_children, 3);
  sch.release(&sch);
  CU_ASSERT_EQUAL(st.get_next(&st, &a), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a.release);
  CU_ASSERT_EQUAL(a.length, 1000);
  CU_ASSERT_EQUAL(((const double *)a.children[2]->buffers[1])[5], tu_cell(4, 5, 2));
  a.release(&a);
  CU_ASSERT_EQUAL(st.get_next(&st, &a), 0);
  CU_ASSERT_PTR_NULL(a.release); /* end of stream */
  st.release(&st);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_arrow_export_column(s, 9, &sch, &a, &err), SNAP_EINVAL);
  CU_ASSERT_EQUAL_FATAL(snap_arrow_export_column(s, 1, &sch, &a, NULL), 0);
  CU_ASSERT_STRING_EQUAL(sch.name, "c1");
  CU_ASSERT_EQUAL(a.n_buffers, 2);
  CU_ASSERT_PTR_NULL(a.buffers[0]);
  sch.release(&sch);
  a.release(&a);
  snap_unpin(s);
  tu_store_destroy(g_store, g_dir);
}

/* The unit types export as timestamp/duration of their unit (zone kept); a
 * string or dictionary with no bytes at all, and a table of 0 rows, still get
 * non-NULL data buffers (consumers such as pyarrow dereference them). */
static void test_units_and_empty_buffers(void) {
  g_store = tu_store_create("arrow", &g_dir);
  struct snap_field f[8] = {
      {.name = "s", .type = SNAP_TIMESTAMP_S, .timezone = "UTC"},
      {.name = "ms", .type = SNAP_TIMESTAMP_MS},
      {.name = "us", .type = SNAP_TIMESTAMP_US, .flags = SNAP_NULLABLE},
      {.name = "ds", .type = SNAP_DURATION_S},
      {.name = "dms", .type = SNAP_DURATION_MS},
      {.name = "dus", .type = SNAP_DURATION_US},
      {.name = "str", .type = SNAP_STRING, .data_bytes = 0},
      {.name = "cat", .type = SNAP_CATEGORY, .dict_size = 1, .data_bytes = 0}};
  static const char *formats[] = {"tss:UTC", "tsm:", "tsu:", "tDs",
                                  "tDm",     "tDu",  "U",    "c"};
  for (uint64_t nrows = 0; nrows <= 3; nrows += 3) {
    struct snap_schema schema = {nrows, 8, f, NULL, 0};
    snap_publish *p;
    CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "u", &schema, &p, NULL), 0);
    struct snap_fill fl;
    for (uint32_t i = 0; i < 6; i++) {
      CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, i, &fl, NULL), 0);
      for (uint64_t r = 0; r < nrows; r++) ((int64_t *)fl.values)[r] = 253402214400LL;
      if (fl.validity) fl.validity[0] = 0x5; /* row 1 missing */
    }
    CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0); /* all-zero offsets */
    snap_snapshot *s;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "u", &s, NULL), 0);
    CU_ASSERT_PTR_NULL(snap_snapshot_column(s, 6)->data); /* absent in the C API */
    struct ArrowSchema sch;
    struct ArrowArray arr;
    CU_ASSERT_EQUAL_FATAL(snap_arrow_export(s, &sch, &arr, NULL), 0);
    for (int i = 0; i < 8; i++) {
      CU_ASSERT_STRING_EQUAL(sch.children[i]->format, formats[i]);
      const struct ArrowArray *a = arr.children[i];
      CU_ASSERT_EQUAL(a->length, (int64_t)nrows);
      for (int64_t b = 1; b < a->n_buffers; b++) CU_ASSERT_PTR_NOT_NULL(a->buffers[b]);
    }
    const struct ArrowArray *str = arr.children[6], *cat = arr.children[7];
    CU_ASSERT_EQUAL(str->n_buffers, 3);
    CU_ASSERT_EQUAL(((const int64_t *)str->buffers[1])[nrows], 0);
    CU_ASSERT_EQUAL(cat->dictionary->length, 1);
    CU_ASSERT_PTR_NOT_NULL(cat->dictionary->buffers[1]);
    CU_ASSERT_PTR_NOT_NULL(cat->dictionary->buffers[2]);
    if (nrows) {
      CU_ASSERT_EQUAL(((const int64_t *)arr.children[0]->buffers[1])[2], 253402214400LL);
      CU_ASSERT_EQUAL(((const int64_t *)arr.children[2]->buffers[1])[1], INT64_MIN);
    }
    arr.release(&arr);
    sch.release(&sch);
    snap_unpin(s);
  }
  tu_store_destroy(g_store, g_dir);
}

int main(void) {
  static const tu_test tests[] = {
      {"export a record batch, zero copy, pins", test_export_record_batch},
      {"export a stream and a column", test_export_stream_and_column},
      {"unit types and empty buffers", test_units_and_empty_buffers},
      {NULL, NULL}};
  return tu_run("arrow", tests);
}
