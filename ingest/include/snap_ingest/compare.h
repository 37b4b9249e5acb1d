/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test helper shared by ingest_test and fuzz_ingest: whether two published
 * tables hold the same columns, bit for bit. Header-only, libsnap's public API
 * alone: #include <snap_ingest/compare.h>.
 */
#ifndef SNAP_INGEST_COMPARE_H
#define SNAP_INGEST_COMPARE_H

#include <string.h>

#include "libsnap/libsnap.h"

/* NULL when a and b are equal (schema, values, validity, offsets, data), else
 * what differs first (a static string). */
static inline const char *ingest_tables_differ(snap_snapshot *a, snap_snapshot *b) {
  uint64_t nr = snap_snapshot_nrows(a);
  if (nr != snap_snapshot_nrows(b)) return "rows";
  if (snap_snapshot_ncols(a) != snap_snapshot_ncols(b)) return "columns";
  for (uint32_t k = 0; k < snap_snapshot_ncols(a); k++) {
    const struct snap_column *x = snap_snapshot_column(a, k),
                             *y = snap_snapshot_column(b, k);
    if (x->type != y->type) return "type";
    if (x->flags != y->flags) return "flags";
    if (strcmp(x->name, y->name)) return "name";
    if (!x->timezone != !y->timezone || (x->timezone && strcmp(x->timezone, y->timezone)))
      return "timezone";
    size_t w = x->type == SNAP_STRING     ? 0
               : x->type == SNAP_CATEGORY ? snap_type_size(x->code_type)
                                          : snap_type_size(x->type);
    if (w && nr && memcmp(x->values, y->values, w * nr)) return "values";
    if (!x->validity != !y->validity ||
        (x->validity && nr && memcmp(x->validity, y->validity, (nr + 7) / 8)))
      return "validity";
    if (x->type == SNAP_CATEGORY && x->dict_size != y->dict_size)
      return "dictionary size";
    uint64_t no = x->type == SNAP_CATEGORY ? x->dict_size
                  : x->type == SNAP_STRING ? nr
                                           : 0;
    if (no && memcmp(x->offsets, y->offsets, 8 * (no + 1))) return "offsets";
    if (x->data_bytes != y->data_bytes ||
        (x->data_bytes && memcmp(x->data, y->data, x->data_bytes)))
      return "string data";
  }
  return NULL;
}

#endif /* SNAP_INGEST_COMPARE_H */
