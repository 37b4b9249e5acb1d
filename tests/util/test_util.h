/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the CUnit tests: temporary stores, tables, processes. */
#ifndef SNAP_TEST_UTIL_H
#define SNAP_TEST_UTIL_H
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <sys/types.h>

#include "libsnap/libsnap.h"

/* A fresh store directory under /dev/shm (or $SNAP_TEST_DIR); removed by
 * tu_store_remove(). Returns a malloc'd path. */
char *tu_store_dir(const char *tag);
void tu_store_remove(const char *dir);
/* A fresh store in a fresh directory (the fixture of most tests), and its end. */
snap_store *tu_store_create(const char *tag, char **dir);
void tu_store_destroy(snap_store *s, char *dir);
/* The segment file of @p dataset @p version in store directory @p dir, opened
 * read-write behind the library's back (for damage tests); -1 on failure. */
int tu_segment_open_rw(const char *dir, const char *dataset, uint64_t version);
/* Bytes the tmpfs holds for the file of @p dataset @p version in store
 * directory @p dir (st_blocks); -1 when there is none. */
int64_t tu_held(const char *dir, const char *dataset, uint64_t version);
/* Number of regular files below dir (recursive). */
int tu_count_files(const char *dir);

/* The fields of tu_publish_f64's tables: @p ncols float64 columns named "c0",
 * "c1", ... (the names are written into @p names, which must outlive @p f). */
void tu_f64_fields(struct snap_field *f, char (*names)[16], uint32_t ncols);
/* Publish a float64 table of nrows x ncols whose cell (r, c) = tu_cell(seed, r, c). */
int tu_publish_f64(snap_store *s, const char *dataset, uint64_t nrows, uint32_t ncols,
                   uint64_t seed, uint64_t *version);
static inline double tu_cell(uint64_t seed, uint64_t r, uint32_t c) {
  return (double)(seed * 1000003u + r * 131u + c);
}
/* Edit the current version of @p dataset in place (snap_edit_*): rows [a, b)
 * of column @p col become @p value; the new version into *version. */
int tu_edit_f64(snap_store *s, const char *dataset, uint32_t col, uint64_t a, uint64_t b,
                double value, uint64_t *version);
/* 0 when @p follower's current version of @p dataset is version @p v of
 * @p primary: the same number, rows and column bytes (every column holding
 * its type's values), and it verifies; else -1 (printed). */
int tu_same_version(snap_store *primary, snap_store *follower, const char *dataset,
                    uint64_t v);
/* Check every cell of a pinned tu_publish_f64 table; returns the seed or -1. */
int64_t tu_check_f64(const snap_snapshot *snap);

/* Register the suite's tests and run everything; returns the exit code. */
typedef struct {
  const char *name;
  void (*fn)(void);
} tu_test;
int tu_run(const char *suite, const tu_test *tests);
#endif
