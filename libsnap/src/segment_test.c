/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Segment format: round trip of every type, and validation of damaged segments. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#define NROWS 1000

/* A 256-byte UTF-8 column name: "é" repeated 128 times. */
static char long_name[257];

static const char *cats[] = {"red", "green", "", "blüe"};

static void fill_mixed(snap_publish *p, uint64_t nrows) {
  struct snap_fill f;
  /* columns: see mixed_fields() */
  for (uint32_t c = 0; c < 13; c++) {
    CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, c, &f, NULL), 0);
    for (uint64_t r = 0; r < nrows; r++) {
      switch (c) {
        case 0:
          ((int8_t *)f.values)[r] = (int8_t)(r * 7);
          break;
        case 1:
          ((int16_t *)f.values)[r] = (int16_t)(r * 301);
          break;
        case 2:
          ((int32_t *)f.values)[r] = (int32_t)(r * 70001);
          break;
        case 3:
          ((int64_t *)f.values)[r] = (int64_t)r * -3000000007LL;
          break;
        case 4:
          ((uint8_t *)f.values)[r] = (uint8_t)(r * 3);
          break;
        case 5:
          ((uint16_t *)f.values)[r] = (uint16_t)(r * 65);
          break;
        case 6:
          ((uint32_t *)f.values)[r] = (uint32_t)(r * 4000001u);
          break;
        case 7:
          ((uint64_t *)f.values)[r] = r * 0x9E3779B97F4A7C15ull;
          break;
        case 8:
          ((float *)f.values)[r] = (float)r * 0.5f;
          break;
        case 9:
          ((double *)f.values)[r] = (double)r * 0.25;
          break;
        case 10:
          ((uint8_t *)f.values)[r] = r % 3 == 0;
          break;
        case 11:
          ((int64_t *)f.values)[r] = 1700000000000000000LL + (int64_t)r;
          break;
        case 12:
          ((int64_t *)f.values)[r] = (int64_t)r * 1000;
          break;
      }
    }
  }
  /* nullable int64: every 5th row missing */
  CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, 13, &f, NULL), 0);
  for (uint64_t r = 0; r < nrows; r++) {
    ((int64_t *)f.values)[r] = (int64_t)r;
    if (r % 5) f.validity[r / 8] |= (uint8_t)(1u << (r % 8));
  }
  /* string: row r is "s<r>" */
  CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, 14, &f, NULL), 0);
  int64_t off = 0;
  f.offsets[0] = 0;
  for (uint64_t r = 0; r < nrows; r++) {
    off += sprintf(f.data + off, "s%llu", (unsigned long long)r);
    f.offsets[r + 1] = off;
  }
  /* category: code r % 5 - 1 (-1 = missing) */
  CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, 15, &f, NULL), 0);
  int64_t doff = 0;
  f.offsets[0] = 0;
  for (int i = 0; i < 4; i++) {
    memcpy(f.data + doff, cats[i], strlen(cats[i]));
    doff += (int64_t)strlen(cats[i]);
    f.offsets[i + 1] = doff;
  }
  for (uint64_t r = 0; r < nrows; r++) ((int8_t *)f.values)[r] = (int8_t)(r % 5) - 1;
  /* zoned timestamp, second column of its own block */
  CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, 16, &f, NULL), 0);
  for (uint64_t r = 0; r < nrows; r++) ((int64_t *)f.values)[r] = (int64_t)r;
  /* float64 in the same block as column 9 */
  CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, 17, &f, NULL), 0);
  for (uint64_t r = 0; r < nrows; r++) ((double *)f.values)[r] = -(double)r;
}

static uint64_t string_bytes(uint64_t nrows) {
  char buf[32];
  uint64_t n = 0;
  for (uint64_t r = 0; r < nrows; r++)
    n += (uint64_t)sprintf(buf, "s%llu", (unsigned long long)r);
  return n;
}

static void mixed_fields(struct snap_field *f, uint64_t nrows) {
  static const enum snap_type types[] = {
      SNAP_INT8,   SNAP_INT16,        SNAP_INT32,      SNAP_INT64,   SNAP_UINT8,
      SNAP_UINT16, SNAP_UINT32,       SNAP_UINT64,     SNAP_FLOAT32, SNAP_FLOAT64,
      SNAP_BOOL,   SNAP_TIMESTAMP_NS, SNAP_DURATION_NS};
  static const char *names[] = {"i8",  "i16", "i32", "i64", "u8", "u16", "u32",
                                "u64", "f32", "f64", "b",   "ts", "td"};
  memset(f, 0, 18 * sizeof *f);
  for (int i = 0; i < 13; i++)
    f[i] = (struct snap_field){.name = names[i], .type = types[i]};
  f[13] =
      (struct snap_field){.name = "nullable", .type = SNAP_INT64, .flags = SNAP_NULLABLE};
  f[14] = (struct snap_field){
      .name = "str", .type = SNAP_STRING, .data_bytes = string_bytes(nrows)};
  f[15] = (struct snap_field){.name = "cat",
                              .type = SNAP_CATEGORY,
                              .dict_size = 4,
                              .data_bytes = strlen("redgreenblüe")};
  f[16] = (struct snap_field){
      .name = "ts_paris", .type = SNAP_TIMESTAMP_NS, .timezone = "Europe/Paris"};
  f[17] = (struct snap_field){.name = long_name, .type = SNAP_FLOAT64};
}

static void check_mixed(const snap_snapshot *s, uint64_t nrows) {
  CU_ASSERT_EQUAL_FATAL(snap_snapshot_ncols(s), 18);
  CU_ASSERT_EQUAL(snap_snapshot_nrows(s), nrows);
  /* blocks: one per fixed type, int64 nullable separate, zoned ts separate,
   * float64 shared by f64 and the long-named column */
  CU_ASSERT_EQUAL(snap_snapshot_nblocks(s), 15);
  const struct snap_column *c9 = snap_snapshot_column(s, 9),
                           *c17 = snap_snapshot_column(s, 17);
  CU_ASSERT_EQUAL(c9->block, c17->block);
  CU_ASSERT_EQUAL(c17->block_pos, 1);
  const struct snap_block *b = snap_snapshot_block(s, c9->block);
  CU_ASSERT_EQUAL(b->ncols, 2);
  CU_ASSERT_PTR_EQUAL(b->data, c9->values);
  if (nrows) CU_ASSERT_PTR_EQUAL((const double *)b->data + nrows, c17->values);
  CU_ASSERT_EQUAL((uintptr_t)b->data % 64, 0);
  CU_ASSERT_STRING_EQUAL(c17->name, long_name);
  CU_ASSERT_EQUAL(c17->name_len, 256);
  CU_ASSERT_EQUAL(snap_snapshot_find(s, long_name), 17);
  CU_ASSERT_EQUAL(snap_snapshot_find(s, "nope"), -1);
  CU_ASSERT_PTR_NULL(snap_snapshot_column(s, 11)->timezone);
  CU_ASSERT_STRING_EQUAL(snap_snapshot_column(s, 16)->timezone, "Europe/Paris");
  CU_ASSERT_NOT_EQUAL(snap_snapshot_column(s, 16)->block,
                      snap_snapshot_column(s, 11)->block);
  CU_ASSERT_NOT_EQUAL(snap_snapshot_column(s, 13)->block,
                      snap_snapshot_column(s, 3)->block);
  for (uint32_t i = 0; i < 18; i++) {
    const struct snap_column *c = snap_snapshot_column(s, i);
    CU_ASSERT_EQUAL(c->flags & SNAP_NULLABLE, i == 13 ? SNAP_NULLABLE : 0);
    CU_ASSERT_EQUAL(c->validity != NULL, i == 13 && nrows > 0);
  }
  const struct snap_column *c;
  for (uint64_t r = 0; r < nrows; r++) {
    CU_ASSERT_EQUAL(((const int8_t *)snap_snapshot_column(s, 0)->values)[r],
                    (int8_t)(r * 7));
    CU_ASSERT_EQUAL(((const int16_t *)snap_snapshot_column(s, 1)->values)[r],
                    (int16_t)(r * 301));
    CU_ASSERT_EQUAL(((const int32_t *)snap_snapshot_column(s, 2)->values)[r],
                    (int32_t)(r * 70001));
    CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(s, 3)->values)[r],
                    (int64_t)r * -3000000007LL);
    CU_ASSERT_EQUAL(((const uint8_t *)snap_snapshot_column(s, 4)->values)[r],
                    (uint8_t)(r * 3));
    CU_ASSERT_EQUAL(((const uint16_t *)snap_snapshot_column(s, 5)->values)[r],
                    (uint16_t)(r * 65));
    CU_ASSERT_EQUAL(((const uint32_t *)snap_snapshot_column(s, 6)->values)[r],
                    (uint32_t)(r * 4000001u));
    CU_ASSERT_EQUAL(((const uint64_t *)snap_snapshot_column(s, 7)->values)[r],
                    r * 0x9E3779B97F4A7C15ull);
    CU_ASSERT_EQUAL(((const float *)snap_snapshot_column(s, 8)->values)[r],
                    (float)r * 0.5f);
    CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 9)->values)[r],
                    (double)r * 0.25);
    CU_ASSERT_EQUAL(((const uint8_t *)snap_snapshot_column(s, 10)->values)[r],
                    r % 3 == 0);
    CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(s, 11)->values)[r],
                    1700000000000000000LL + (int64_t)r);
    CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(s, 12)->values)[r],
                    (int64_t)r * 1000);
    c = snap_snapshot_column(s, 13);
    CU_ASSERT_EQUAL(((const int64_t *)c->values)[r], (int64_t)r);
    CU_ASSERT_EQUAL((c->validity[r / 8] >> (r % 8)) & 1, r % 5 != 0);
    c = snap_snapshot_column(s, 14);
    char buf[32];
    int n = sprintf(buf, "s%llu", (unsigned long long)r);
    CU_ASSERT_EQUAL(c->offsets[r + 1] - c->offsets[r], n);
    CU_ASSERT(!memcmp(c->data + c->offsets[r], buf, (size_t)n));
    c = snap_snapshot_column(s, 15);
    CU_ASSERT_EQUAL(((const int8_t *)c->values)[r], (int8_t)(r % 5) - 1);
    CU_ASSERT_EQUAL(((const int64_t *)snap_snapshot_column(s, 16)->values)[r],
                    (int64_t)r);
    CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 17)->values)[r], -(double)r);
  }
  c = snap_snapshot_column(s, 15);
  CU_ASSERT_EQUAL(c->code_type, SNAP_INT8);
  CU_ASSERT_EQUAL(c->dict_size, 4);
  for (int i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL((size_t)(c->offsets[i + 1] - c->offsets[i]), strlen(cats[i]));
    CU_ASSERT(!memcmp(c->data + c->offsets[i], cats[i], strlen(cats[i])));
  }
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0);
}

static char *g_dir;
static snap_store *g_store;

static void open_store(void) {
  g_store = tu_store_create("segment", &g_dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_store);
}

static void close_store(void) { tu_store_destroy(g_store, g_dir); }

static uint64_t publish_mixed(uint64_t nrows) {
  struct snap_field f[18];
  mixed_fields(f, nrows);
  const char meta[] = "{\"index\": null}";
  struct snap_schema schema = {nrows, 18, f, meta, sizeof meta - 1};
  snap_publish *p;
  struct snap_error err;
  int rc = snap_publish_begin(g_store, "mixed", &schema, &p, &err);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  fill_mixed(p, nrows);
  uint64_t v;
  rc = snap_publish_commit(p, &v, &err);
  if (rc) fprintf(stderr, "commit: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return v;
}

static void test_roundtrip_all_types(void) {
  open_store();
  for (uint64_t nrows = 0; nrows <= NROWS; nrows += NROWS / 2 - 3) {
    uint64_t v = publish_mixed(nrows);
    snap_snapshot *s;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "mixed", &s, NULL), 0);
    CU_ASSERT_EQUAL(snap_snapshot_version(s), v);
    check_mixed(s, nrows);
    size_t mlen;
    const char *meta = snap_snapshot_metadata(s, &mlen);
    CU_ASSERT_EQUAL(mlen, 15);
    CU_ASSERT(!memcmp(meta, "{\"index\": null}", 15));
    CU_ASSERT_STRING_EQUAL(snap_snapshot_dataset(s), "mixed");
    snap_unpin(s);
  }
  close_store();
}

/* The byte lengths a column reports, worked out here from the format rules. */
static void check_lengths(const struct snap_column *c, uint64_t nrows, bool filled) {
  uint64_t values = c->type == SNAP_CATEGORY ? nrows * snap_type_size(c->code_type)
                                             : nrows * snap_type_size(c->type);
  uint64_t offsets = c->type == SNAP_STRING     ? 8 * (nrows + 1)
                     : c->type == SNAP_CATEGORY ? 8 * (c->dict_size + 1)
                                                : 0;
  CU_ASSERT_EQUAL(c->values_bytes, values);
  CU_ASSERT_EQUAL(c->validity_bytes, (c->flags & SNAP_NULLABLE) ? (nrows + 7) / 8 : 0);
  CU_ASSERT_EQUAL(c->offsets_bytes, offsets);
  CU_ASSERT_EQUAL(c->values == NULL, c->values_bytes == 0);
  CU_ASSERT_EQUAL(c->validity == NULL, c->validity_bytes == 0);
  CU_ASSERT_EQUAL(c->offsets == NULL, c->offsets_bytes == 0);
  CU_ASSERT_EQUAL(c->data == NULL, c->data_bytes == 0);
  if (filled && c->offsets)
    CU_ASSERT_EQUAL((uint64_t)c->offsets[c->offsets_bytes / 8 - 1], c->data_bytes);
}

/* snap_column gives the length of every buffer, the same in the publish and in
 * the pinned snapshot: fixed widths, bool, string, category, nullable. */
static void test_buffer_lengths(void) {
  open_store();
  for (uint64_t nrows = 0; nrows <= 13; nrows += 13) {
    struct snap_field f[18];
    mixed_fields(f, nrows);
    struct snap_schema schema = {nrows, 18, f, NULL, 0};
    snap_publish *p;
    CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "lengths", &schema, &p, NULL), 0);
    for (uint32_t i = 0; i < 18; i++) {
      const struct snap_column *c = snap_publish_column(p, i);
      check_lengths(c, nrows, false);
      struct snap_fill fl; /* the writable accessor: the same buffers and lengths */
      CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, i, &fl, NULL), 0);
      CU_ASSERT(fl.values == c->values && fl.values_bytes == c->values_bytes);
      CU_ASSERT(fl.validity == c->validity && fl.validity_bytes == c->validity_bytes);
      CU_ASSERT(fl.offsets == c->offsets && fl.offsets_bytes == c->offsets_bytes);
      CU_ASSERT((const char *)fl.data == c->data && fl.data_bytes == c->data_bytes);
    }
    const struct snap_column *b = snap_publish_column(p, 10),
                             *st = snap_publish_column(p, 14),
                             *ct = snap_publish_column(p, 15),
                             *nl = snap_publish_column(p, 13);
    CU_ASSERT_EQUAL(b->values_bytes, nrows); /* bool: one byte a value */
    CU_ASSERT_EQUAL(st->values_bytes, 0);
    CU_ASSERT_EQUAL(st->offsets_bytes, 8 * (nrows + 1));
    CU_ASSERT_EQUAL(st->data_bytes, string_bytes(nrows));
    CU_ASSERT_EQUAL(ct->values_bytes, nrows); /* int8 codes for 4 categories */
    CU_ASSERT_EQUAL(ct->offsets_bytes, 8 * 5);
    CU_ASSERT_EQUAL(ct->data_bytes, strlen("redgreenblüe"));
    CU_ASSERT_EQUAL(nl->values_bytes, 8 * nrows);
    CU_ASSERT_EQUAL(nl->validity_bytes, (nrows + 7) / 8);
    fill_mixed(p, nrows);
    for (uint64_t r = 0; r < nrows; r++)
      CU_ASSERT_EQUAL(snap_column_code(ct, r), (int64_t)(r % 5) - 1);
    CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0);
    snap_snapshot *s;
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "lengths", &s, NULL), 0);
    for (uint32_t i = 0; i < 18; i++)
      check_lengths(snap_snapshot_column(s, i), nrows, true);
    CU_ASSERT_EQUAL(snap_snapshot_column(s, 14)->data_bytes, string_bytes(nrows));
    for (uint32_t k = 0; k < snap_snapshot_nblocks(s); k++) {
      const struct snap_block *blk = snap_snapshot_block(s, k);
      CU_ASSERT_EQUAL(blk->data_bytes, blk->ncols * nrows * snap_type_size(blk->type));
      CU_ASSERT_EQUAL(
          blk->data_bytes,
          blk->ncols * snap_snapshot_column(s, blk->columns[0])->values_bytes);
    }
    const struct snap_column *c = snap_snapshot_column(s, 15);
    for (uint64_t r = 0; r < nrows; r++)
      CU_ASSERT_EQUAL(snap_column_code(c, r), (int64_t)(r % 5) - 1);
    snap_unpin(s);
  }
  close_store();
}

/* snap_column_code() widens every code width, -1 included. */
static void test_column_code(void) {
  const int8_t c8[] = {-1, 0, 127};
  const int16_t c16[] = {-1, 0, 32767};
  const int32_t c32[] = {-1, 0, INT32_MAX};
  const int64_t c64[] = {-1, 0, INT64_MAX};
  const void *v[] = {c8, c16, c32, c64};
  const int64_t top[] = {127, 32767, INT32_MAX, INT64_MAX};
  for (int w = 0; w < 4; w++) {
    struct snap_column c = {.type = SNAP_CATEGORY,
                            .code_type = (enum snap_type)(SNAP_INT8 + w),
                            .values = v[w]};
    CU_ASSERT_EQUAL(snap_column_code(&c, 0), -1);
    CU_ASSERT_EQUAL(snap_column_code(&c, 1), 0);
    CU_ASSERT_EQUAL(snap_column_code(&c, 2), top[w]);
  }
}

static void test_zero_columns(void) {
  open_store();
  struct snap_schema schema = {.nrows = 5};
  snap_publish *p;
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "empty", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, &v, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "empty", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_ncols(s), 0);
  CU_ASSERT_EQUAL(snap_snapshot_nrows(s), 5);
  CU_ASSERT_EQUAL(snap_snapshot_nblocks(s), 0);
  CU_ASSERT_PTR_NULL(snap_snapshot_column(s, 0));
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0);
  snap_unpin(s);
  close_store();
}

/* The unit types 16..21: names, sizes, time zones on every timestamp unit,
 * values outside the nanosecond range kept as they are, one block per
 * (type, zone, nullability). */
static void test_time_units(void) {
  static const enum snap_type t[] = {
      SNAP_TIMESTAMP_S, SNAP_TIMESTAMP_MS, SNAP_TIMESTAMP_US, SNAP_DURATION_S,
      SNAP_DURATION_MS, SNAP_DURATION_US,  SNAP_TIMESTAMP_NS, SNAP_DURATION_NS};
  static const char *names[] = {"timestamp[s]",  "timestamp[ms]", "timestamp[us]",
                                "duration[s]",   "duration[ms]",  "duration[us]",
                                "timestamp[ns]", "duration[ns]"};
  static const int64_t unit_ns[] = {1000000000, 1000000, 1000, 1000000000,
                                    1000000,    1000,    1,    1};
  for (int i = 0; i < 8; i++) {
    CU_ASSERT_STRING_EQUAL(snap_type_name(t[i]), names[i]);
    CU_ASSERT_EQUAL(snap_type_size(t[i]), 8);
    CU_ASSERT_EQUAL(snap__time_unit_ns(t[i]), unit_ns[i]);
    CU_ASSERT_EQUAL(snap__is_timestamp(t[i]), strncmp(names[i], "timestamp", 9) == 0);
    CU_ASSERT_EQUAL(snap__is_duration(t[i]), strncmp(names[i], "duration", 8) == 0);
  }
  CU_ASSERT_STRING_EQUAL(snap_type_name(SNAP__TYPE_LAST + 1), "unknown");
  open_store();
  struct snap_field f[8];
  for (int i = 0; i < 8; i++) f[i] = (struct snap_field){.name = names[i], .type = t[i]};
  f[0].timezone = "Pacific/Kiritimati"; /* a zone on a seconds timestamp is kept */
  f[3].timezone = "UTC";                /* a zone on a duration is ignored */
  struct snap_schema schema = {3, 8, f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "units", &schema, &p, NULL), 0);
  /* 9999-12-31 in seconds; 10^12 s; year 1 in microseconds: none fits in ns */
  static const int64_t vals[3] = {253402214400LL, 1000000000000LL, -62135596800000000LL};
  for (uint32_t i = 0; i < 8; i++) {
    struct snap_fill fl;
    CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, i, &fl, NULL), 0);
    memcpy(fl.values, vals, sizeof vals);
  }
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "units", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_nblocks(s), 8);
  for (uint32_t i = 0; i < 8; i++) {
    const struct snap_column *c = snap_snapshot_column(s, i);
    CU_ASSERT_EQUAL(c->type, t[i]);
    CU_ASSERT_EQUAL(memcmp(c->values, vals, sizeof vals), 0);
    if (i == 0) {
      CU_ASSERT_STRING_EQUAL(c->timezone, "Pacific/Kiritimati");
    } else {
      CU_ASSERT_PTR_NULL(c->timezone);
    }
  }
  CU_ASSERT_STRING_EQUAL(snap_snapshot_block(s, 0)->timezone, "Pacific/Kiritimati");
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0);
  snap_unpin(s);
  close_store();
}

/* Null slots of nullable timestamp/duration columns read as INT64_MIN (NaT)
 * whatever the writer left there; valid slots, non-temporal nullable columns
 * and non-nullable columns are untouched. */
static void test_null_temporal_slots_are_nat(void) {
  open_store();
  enum { R = 21 }; /* not a multiple of 8: the last bitmap byte is partial */
  struct snap_field f[4] = {
      {.name = "ts",
       .type = SNAP_TIMESTAMP_US,
       .flags = SNAP_NULLABLE,
       .timezone = "UTC"},
      {.name = "td", .type = SNAP_DURATION_NS, .flags = SNAP_NULLABLE},
      {.name = "i", .type = SNAP_INT64, .flags = SNAP_NULLABLE},
      {.name = "plain", .type = SNAP_TIMESTAMP_S}};
  struct snap_schema schema = {R, 4, f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "nat", &schema, &p, NULL), 0);
  for (uint32_t i = 0; i < 4; i++) {
    struct snap_fill fl;
    CU_ASSERT_EQUAL_FATAL(snap_publish_fill(p, i, &fl, NULL), 0);
    for (int r = 0; r < R; r++) {
      ((int64_t *)fl.values)[r] = 1000 + r; /* garbage under the nulls too */
      if (fl.validity && r % 3) fl.validity[r / 8] |= (uint8_t)(1u << (r % 8));
    }
  }
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "nat", &s, NULL), 0);
  for (uint32_t i = 0; i < 4; i++) {
    const int64_t *v = snap_snapshot_column(s, i)->values;
    for (int r = 0; r < R; r++) {
      int64_t want = (i < 2 && r % 3 == 0) ? INT64_MIN : 1000 + r;
      if (v[r] != want) {
        CU_FAIL("null temporal slot not NaT, or another slot changed");
        fprintf(stderr, "column %u row %d: %lld, want %lld\n", i, r, (long long)v[r],
                (long long)want);
        break;
      }
    }
  }
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0); /* hashed after the fill */
  snap_unpin(s);
  close_store();
}

static void test_bad_schemas(void) {
  open_store();
  struct snap_error err;
  snap_publish *p;
  struct snap_field f = {.name = "x", .type = 99};
  struct snap_schema schema = {10, 1, &f, NULL, 0};
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "d", &schema, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NULL(p);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "type 99"));
  f.type = SNAP_INT8;
  f.name = "bad\xff";
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "d", &schema, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "UTF-8"));
  f.name = "";
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "d", &schema, &p, &err), SNAP_EINVAL);
  f.name = "x";
  schema.nrows = UINT64_MAX / 2;
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "d", &schema, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "too large"));
  schema.nrows = 1;
  const char *bad_names[] = {"", "a/b", ".", "..", ".hidden", "\xc3\x28"};
  for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
    CU_ASSERT_EQUAL(snap_publish_begin(g_store, bad_names[i], &schema, &p, &err),
                    SNAP_EINVAL);
  char longds[300];
  memset(longds, 'a', 299);
  longds[299] = 0;
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, longds, &schema, &p, &err), SNAP_EINVAL);
  longds[255] = 0; /* 255 bytes is the limit and is accepted */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, longds, &schema, &p, &err), 0);
  uint64_t v;
  CU_ASSERT_EQUAL(snap_publish_commit(p, &v, &err), 0);
  close_store();
}

static void test_bad_fill_refused(void) {
  open_store();
  struct snap_error err;
  uint64_t v;
  /* a good version first: it must stay current */
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  struct snap_field f[2] = {
      {.name = "s", .type = SNAP_STRING, .data_bytes = 4},
      {.name = "c", .type = SNAP_CATEGORY, .dict_size = 2, .data_bytes = 2}};
  struct snap_schema schema = {2, 2, f, NULL, 0};
  snap_publish *p;
  struct snap_fill fs, fc;
  /* string offsets decreasing */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, NULL), 0);
  snap_publish_fill(p, 0, &fs, NULL);
  snap_publish_fill(p, 1, &fc, NULL);
  fs.offsets[1] = 3, fs.offsets[2] = 1;
  fc.offsets[1] = 1, fc.offsets[2] = 2;
  CU_ASSERT_EQUAL(snap_publish_commit(p, NULL, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "string offsets[2] = 1"));
  /* category code out of range */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, NULL), 0);
  snap_publish_fill(p, 0, &fs, NULL);
  snap_publish_fill(p, 1, &fc, NULL);
  fs.offsets[1] = 2, fs.offsets[2] = 4;
  fc.offsets[1] = 1, fc.offsets[2] = 2;
  ((int8_t *)fc.values)[1] = 2;
  CU_ASSERT_EQUAL(snap_publish_commit(p, NULL, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "row 1: category code = 2"));
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(g_store, "d", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, v);
  CU_ASSERT_EQUAL(tu_count_files(g_dir) - 3, 1); /* control.mdb, -lock, flips */
  close_store();
}

/* ------------------------------------------------------- damaged segments */

static uint8_t *read_file(const char *path, size_t *size) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) abort();
  uint8_t *buf = malloc((size_t)st.st_size);
  if (read(fd, buf, (size_t)st.st_size) != st.st_size) abort();
  close(fd);
  *size = (size_t)st.st_size;
  return buf;
}

/* Recompute the header checksum only: a forged but self-consistent header must
 * still be caught by the structural checks. */
static void reseal_header(uint8_t *b, size_t size) {
  uint64_t msize;
  memcpy(&msize, b + SNAP__H_MANIFEST_SIZE, 8);
  if (msize > size - SNAP__HEADER_SIZE) return;
  uint64_t h = snap__header_hash(b, msize);
  memcpy(b + SNAP__H_HEADER_HASH, &h, 8);
}

/* Every pointer a parse hands out lies inside the buffer. */
static bool all_in_bounds(const struct snap__segment *g, const uint8_t *b, size_t size) {
#define IN(p, len) \
  ((len) == 0 || ((const uint8_t *)(p) >= b && (const uint8_t *)(p) + (len) <= b + size))
  for (uint32_t i = 0; i < g->nblocks; i++) {
    const struct snap_block *k = &g->blocks[i];
    if (!IN(k->data, k->ncols * g->nrows * snap_type_size(k->type))) return false;
  }
  for (uint32_t i = 0; i < g->ncols; i++) {
    const struct snap_column *c = &g->cols[i];
    size_t vs =
        c->type == SNAP_CATEGORY ? snap_type_size(c->code_type) : snap_type_size(c->type);
    uint64_t n = c->type == SNAP_STRING ? g->nrows : c->dict_size;
    if (!IN(c->values, vs * g->nrows)) return false;
    if (c->validity && !IN(c->validity, (g->nrows + 7) / 8)) return false;
    if (c->offsets && !IN(c->offsets, (n + 1) * 8)) return false;
    if (c->data && !IN(c->data, c->data_bytes)) return false;
    if (c->offsets && (uint64_t)c->offsets[n] > c->data_bytes) return false;
  }
  return IN(g->metadata, g->metadata_len);
#undef IN
}

static void test_corruption_every_byte(void) {
  open_store();
  uint64_t v = publish_mixed(50);
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/mixed/%llu.seg", g_dir, (unsigned long long)v);
  size_t size;
  uint8_t *orig = read_file(path, &size);
  uint8_t *b = malloc(size);
  struct snap__segment g;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap__segment_parse(orig, size, 0, "t", "mixed", v, &g, &err), 0);
  snap__segment_free(&g);
  uint64_t msize;
  memcpy(&msize, orig + SNAP__H_MANIFEST_SIZE, 8);
  uint64_t mend = SNAP__HEADER_SIZE + msize;
  static const uint8_t xors[] = {0x01, 0x80, 0xff};
  int rejected = 0, forged_ok = 0;
  for (uint64_t off = 0; off < mend; off++) {
    if (off >= SNAP__H_NAME + 6 && off < SNAP__HEADER_SIZE && off % 97)
      continue; /* zeros */
    for (size_t x = 0; x < sizeof xors; x++) {
      memcpy(b, orig, size);
      b[off] ^= xors[x];
      int rc = snap__segment_parse(b, size, 0, "t", "mixed", v, &g, &err);
      /* Any change to header or manifest is caught (checksum or format). */
      CU_ASSERT(rc == SNAP_ECORRUPT || rc == SNAP_EFORMAT);
      if (rc == 0) snap__segment_free(&g);
      rejected += rc != 0;
      /* Forged: the same change with a valid header checksum. The parse may
       * accept it (e.g. a changed value in a name) but every pointer it
       * hands out must stay inside the file. */
      reseal_header(b, size);
      rc = snap__segment_parse(b, size, 0, "t", NULL, 0, &g, &err);
      if (rc == 0) {
        CU_ASSERT(all_in_bounds(&g, b, size));
        snap__segment_free(&g);
        forged_ok++;
      } else {
        CU_ASSERT(rc == SNAP_ECORRUPT || rc == SNAP_EFORMAT);
        CU_ASSERT(strlen(err.message) > 3 && !strncmp(err.message, "t: ", 3));
      }
    }
  }
  CU_ASSERT(rejected > 1000);
  printf("\n  every-byte: %d rejected, %d forged-but-consistent accepted ", rejected,
         forged_ok);
  /* A data byte changes nothing structural; verify catches it. */
  memcpy(b, orig, size);
  uint64_t doff;
  memcpy(&doff, orig + SNAP__H_DATA_OFFSET, 8);
  b[doff + 10] ^= 1;
  CU_ASSERT_EQUAL(snap__segment_parse(b, size, 0, "t", "mixed", v, &g, &err), 0);
  uint64_t h[2];
  snap__data_hash(b, g.data_offset, g.data_size, h);
  CU_ASSERT(h[0] != g.data_hash[0] || h[1] != g.data_hash[1]);
  snap__segment_free(&g);
  free(b);
  free(orig);
  close_store();
}

static void test_truncated(void) {
  open_store();
  uint64_t v = publish_mixed(300);
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/mixed/%llu.seg", g_dir, (unsigned long long)v);
  size_t size;
  uint8_t *orig = read_file(path, &size);
  struct snap__segment g;
  struct snap_error err;
  int tried = 0;
  for (size_t cut = 0; cut < size; cut += cut < 5000 ? 1 : 997) {
    int rc = snap__segment_parse(orig, cut, 0, "t", "mixed", v, &g, &err);
    CU_ASSERT_EQUAL(rc, SNAP_ECORRUPT);
    if (rc == 0) snap__segment_free(&g);
    tried++;
  }
  CU_ASSERT(tried > 5000);
  /* The same through the store: truncate the file behind the library's back. */
  chmod(path, 0644);
  CU_ASSERT_EQUAL(truncate(path, (off_t)size - 64), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL(snap_pin(g_store, "mixed", &s, &err), SNAP_ECORRUPT);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "total_size"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "mixed/"));
  free(orig);
  close_store();
}

static void test_format_version_refused(void) {
  open_store();
  uint64_t v = publish_mixed(10);
  int fd = tu_segment_open_rw(g_dir, "mixed", v);
  uint32_t three = 3;
  CU_ASSERT_EQUAL(pwrite(fd, &three, 4, SNAP__H_FORMAT), 4);
  close(fd);
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_pin(g_store, "mixed", &s, &err), SNAP_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "format version = 3"));
  close_store();
}

/* Segments written in format 1 (every earlier release) stay readable and
 * verifiable next to format 2 ones, and a v2 publish over a v1 current
 * version shares nothing with it. */
static void test_v1_segments_readable(void) {
  open_store();
  snap__write_format = SNAP__FORMAT_V1;
  uint64_t v1 = publish_mixed(1000);
  snap__write_format = SNAP__FORMAT_V2;
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "mixed", &s, &err), 0);
  const uint8_t *b = snap_snapshot_segment(s, NULL);
  CU_ASSERT_EQUAL(snap__get32(b + SNAP__H_FORMAT), 1);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  size_t before = snap_snapshot_ncols(s);
  snap_unpin(s);
  uint64_t v2 = publish_mixed(1000);
  CU_ASSERT_EQUAL(v2, v1 + 1);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "mixed", &s, &err), 0);
  b = snap_snapshot_segment(s, NULL);
  CU_ASSERT_EQUAL(snap__get32(b + SNAP__H_FORMAT), 2);
  CU_ASSERT_EQUAL(snap__get32(b + SNAP__H_NFILES), 0);
  CU_ASSERT_EQUAL(snap_snapshot_ncols(s), before);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "mixed", v1, &s, &err), 0);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  close_store();
}

static void test_verify_detects_data_damage(void) {
  open_store();
  uint64_t v = publish_mixed(100);
  int fd = tu_segment_open_rw(g_dir, "mixed", v);
  uint64_t doff;
  CU_ASSERT_EQUAL(pread(fd, &doff, 8, SNAP__H_DATA_OFFSET), 8);
  uint8_t byte;
  CU_ASSERT_EQUAL(pread(fd, &byte, 1, (off_t)doff + 3), 1);
  byte ^= 0x40;
  CU_ASSERT_EQUAL(pwrite(fd, &byte, 1, (off_t)doff + 3), 1);
  close(fd);
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "mixed", &s, &err), 0);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), SNAP_ECHECKSUM);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "chunk 0 (offset"));
  snap_unpin(s);
  close_store();
}

static void test_utf8(void) {
  CU_ASSERT(snap__utf8_valid("plain", 5));
  CU_ASSERT(snap__utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
  CU_ASSERT(!snap__utf8_valid("\xc0\xaf", 2));         /* overlong */
  CU_ASSERT(!snap__utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  CU_ASSERT(!snap__utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
  CU_ASSERT(!snap__utf8_valid("\xe2\x82", 2));         /* truncated */
  CU_ASSERT_STRING_EQUAL(snap_error_name(SNAP_ECORRUPT), "SNAP_ECORRUPT");
  CU_ASSERT_STRING_EQUAL(snap_error_name(-ENOSPC), "ENOSPC");
  CU_ASSERT_STRING_EQUAL(snap_strerror(SNAP_ENOTFOUND),
                         "no such store, dataset or version");
  CU_ASSERT_STRING_EQUAL(snap_type_name(SNAP_TIMESTAMP_NS), "timestamp[ns]");
}

int main(void) {
  for (int i = 0; i < 128; i++) memcpy(long_name + 2 * i, "\xc3\xa9", 2);
  static const tu_test tests[] = {
      {"round trip of every type", test_roundtrip_all_types},
      {"zero columns", test_zero_columns},
      {"buffer byte lengths", test_buffer_lengths},
      {"category code reader", test_column_code},
      {"timestamp and duration units", test_time_units},
      {"null temporal slots are NaT", test_null_temporal_slots_are_nat},
      {"bad schemas refused", test_bad_schemas},
      {"bad fill refused, old version stays", test_bad_fill_refused},
      {"every header/manifest byte flipped", test_corruption_every_byte},
      {"truncated at many lengths", test_truncated},
      {"unknown format version refused", test_format_version_refused},
      {"format 1 segments stay readable beside format 2", test_v1_segments_readable},
      {"verify detects data damage", test_verify_detects_data_damage},
      {"utf8 and error table", test_utf8},
      {NULL, NULL}};
  return tu_run("segment", tests);
}
