/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsnap <-> Arrow: export a pinned version through the Arrow C Data Interface
 * and the Arrow C Stream Interface, without copying the data.
 *
 * The structures below are the ABI-stable ones of the Arrow specification
 * ("The Arrow C data interface", "The Arrow C stream interface"), guarded by
 * the macros the specification prescribes so that they coexist with Arrow's
 * own headers.
 *
 * Every exported array holds its own pin on the version (snap_snapshot_ref);
 * its release callback drops it. The snapshot passed in stays the caller's.
 * Buffers point into the read-only segment mapping, except where a copy is
 * unavoidable: bool columns (libsnap stores one byte per value, Arrow one
 * bit) and the validity bitmap of a category column that has missing codes.
 */
#ifndef LIBSNAP_ARROW_H
#define LIBSNAP_ARROW_H

#include <stdint.h>

#include "libsnap/libsnap.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  const char *format;
  const char *name;
  const char *metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema **children;
  struct ArrowSchema *dictionary;
  void (*release)(struct ArrowSchema *);
  void *private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void **buffers;
  struct ArrowArray **children;
  struct ArrowArray *dictionary;
  void (*release)(struct ArrowArray *);
  void *private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE

struct ArrowArrayStream {
  int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
  int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
  const char *(*get_last_error)(struct ArrowArrayStream *);
  void (*release)(struct ArrowArrayStream *);
  void *private_data;
};

#endif /* ARROW_C_STREAM_INTERFACE */

/**
 * Export the whole version as one record batch: a struct array ("+s") with one
 * child per column, in column order, named as in the segment.
 * Type mapping: int8..uint64, float32/64 as themselves; bool as "b" (copied
 * into a bitmap); timestamp[s|ms|us|ns] as "ts<unit>:<zone>"; duration[...]
 * as "tD<unit>"; string as large_utf8 "U"; category as a dictionary array
 * (int8..int64 indices, large_utf8 dictionary, code -1 as null); validity
 * bitmaps as Arrow's.
 * @param snap   a pinned snapshot; stays the caller's (the export takes its own
 *               references, so the caller may unpin at once).
 * @param schema receives the schema; on success the caller owns it and must
 *               call its release callback; nothing to release on failure.
 * @param array  receives the batch; the same rules as @p schema. Each child
 *               holds its own pin: it may be moved out and released alone.
 * @return 0, or -ENOMEM (nothing to release then).
 * Thread-safe. The release callbacks may run on any thread, in any order, also
 * after snap_store_close(); they free memory and call snap_unpin() only.
 */
SNAP_API int snap_arrow_export(snap_snapshot *snap, struct ArrowSchema *schema,
                               struct ArrowArray *array, struct snap_error *err);

/**
 * Export column @p col alone (the mapping of snap_arrow_export()).
 * @param col < snap_snapshot_ncols(snap).
 * @return 0, SNAP_EINVAL (col out of range), or -ENOMEM (nothing to release).
 * Ownership and threads as for snap_arrow_export().
 */
SNAP_API int snap_arrow_export_column(snap_snapshot *snap, uint32_t col,
                                      struct ArrowSchema *schema,
                                      struct ArrowArray *array, struct snap_error *err);

/**
 * A stream of exactly one record batch (the whole version), then end of
 * stream (a released array). get_schema and get_next return 0 or ENOMEM (a
 * positive errno, as the stream interface wants; get_last_error says more).
 * @param stream receives the stream; the caller owns it and must call its
 *               release callback; the stream holds its own pin until then.
 * @return 0 or -ENOMEM (nothing to release then).
 * Thread-safe to create; the stream itself, as the interface says, is used by
 * one thread at a time.
 */
SNAP_API int snap_arrow_export_stream(snap_snapshot *snap,
                                      struct ArrowArrayStream *stream,
                                      struct snap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LIBSNAP_ARROW_H */
