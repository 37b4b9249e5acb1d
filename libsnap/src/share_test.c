/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Format 2: versions sharing chunks, composition, lending and reclamation.
 * Memory is measured as the tmpfs blocks each segment file holds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#define NROWS (1u << 20) /* 8 MiB per float64 column: 4 whole chunks */
#define NCOLS 8
#define COL_BYTES ((uint64_t)NROWS * 8)
#define MIB (1ull << 20)

static char *g_dir;
static snap_store *g_store;
static double *g_cols[NCOLS];

static void open_store(void) {
  g_store = tu_store_create("share", &g_dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_store);
  for (int c = 0; c < NCOLS; c++) {
    g_cols[c] = malloc(COL_BYTES);
    for (uint64_t r = 0; r < NROWS; r++) g_cols[c][r] = tu_cell(1, r, (uint32_t)c);
  }
}

static void close_store(void) {
  tu_store_destroy(g_store, g_dir);
  for (int c = 0; c < NCOLS; c++) free(g_cols[c]);
}

/* Publish g_cols (or @p src where non-NULL) through snap_publish_copy(). */
static uint64_t publish(const void *const *src, unsigned flags) {
  struct snap_field f[NCOLS];
  char names[NCOLS][16];
  tu_f64_fields(f, names, NCOLS);
  struct snap_schema schema = {NROWS, NCOLS, f, NULL, 0};
  snap_publish *p;
  struct snap_error err;
  uint64_t v = 0;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, &err), 0);
  if (flags) CU_ASSERT_EQUAL(snap_publish_set_flags(p, flags, NULL), 0);
  for (uint32_t c = 0; c < NCOLS; c++)
    CU_ASSERT_EQUAL(snap_publish_copy(p, c, SNAP_BUFFER_VALUES,
                                      src && src[c] ? src[c] : g_cols[c], &err),
                    0);
  int rc = snap_publish_commit(p, &v, &err);
  if (rc) printf("\ncommit: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return v;
}

/* Bytes the tmpfs holds for version @p v's file; -1 when it is gone. */
static int64_t held(uint64_t v) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/segments/d/%llu.seg", g_dir, (unsigned long long)v);
  return stat(path, &st) ? -1 : (int64_t)st.st_blocks * 512;
}

static enum snap_state state_of(uint64_t v) {
  struct snap_version_info *vi;
  size_t n;
  enum snap_state st = 0;
  if (snap_version_list(g_store, "d", &vi, &n, NULL)) return 0;
  for (size_t i = 0; i < n; i++)
    if (vi[i].version == v) st = vi[i].state;
  snap_free(vi);
  return st;
}

/* Every cell of the pinned version equals g_cols; verify passes. */
static void check_pinned(snap_snapshot *s) {
  for (uint32_t c = 0; c < NCOLS; c++) {
    const struct snap_column *col = snap_snapshot_column(s, c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(col);
    CU_ASSERT(memcmp(col->values, g_cols[c], COL_BYTES) == 0);
  }
  /* a block is still one contiguous matrix */
  const struct snap_block *b = snap_snapshot_block(s, 0);
  CU_ASSERT_EQUAL(b->data_bytes, COL_BYTES * NCOLS);
  CU_ASSERT_PTR_EQUAL(b->data, snap_snapshot_column(s, 0)->values);
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
}

static void check_current(uint64_t want) {
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), want);
  check_pinned(s);
  snap_unpin(s);
}

static uint32_t nfiles_of(uint64_t v) {
  snap_snapshot *s;
  if (snap_pin_version(g_store, "d", v, &s, NULL)) return UINT32_MAX;
  uint32_t n = snap__snapshot_seg(s)->nfiles;
  snap_unpin(s);
  return n;
}

static void test_one_column_replaced(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  CU_ASSERT(held(v1) >= (int64_t)(NCOLS * COL_BYTES));
  for (uint64_t r = 0; r < NROWS; r++) g_cols[3][r] = -g_cols[3][r];
  uint64_t v2 = publish(NULL, 0);
  /* the new file holds one column (4 chunks) and its manifest, nothing more */
  CU_ASSERT(held(v2) >= (int64_t)COL_BYTES);
  CU_ASSERT(held(v2) <= (int64_t)(COL_BYTES + MIB));
  CU_ASSERT_EQUAL(nfiles_of(v2), 1);
  check_current(v2);
  /* the old version is untouched */
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "d", v1, &s, NULL), 0);
  CU_ASSERT(((const double *)snap_snapshot_column(s, 3)->values)[5] == -g_cols[3][5]);
  snap_unpin(s);
  /* SNAP_PUBLISH_FULL shares nothing */
  uint64_t v3 = publish(NULL, SNAP_PUBLISH_FULL);
  CU_ASSERT(held(v3) >= (int64_t)(NCOLS * COL_BYTES));
  CU_ASSERT_EQUAL(nfiles_of(v3), 0);
  check_current(v3);
  close_store();
}

static void test_same_data_and_identity(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  /* an equal copy: compared, nothing written */
  uint64_t v2 = publish(NULL, 0);
  CU_ASSERT(held(v2) < (int64_t)MIB);
  check_current(v2);
  /* the current version's own columns handed back, one replaced: the others
   * are shared by identity, the new one is written */
  snap_snapshot *cur;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &cur, NULL), 0);
  const void *src[NCOLS];
  for (uint32_t c = 0; c < NCOLS; c++) src[c] = snap_snapshot_column(cur, c)->values;
  double *fresh = malloc(COL_BYTES);
  for (uint64_t r = 0; r < NROWS; r++) fresh[r] = (double)r * 0.5;
  src[6] = fresh;
  uint64_t v3 = publish(src, 0);
  snap_unpin(cur);
  memcpy(g_cols[6], fresh, COL_BYTES);
  free(fresh);
  CU_ASSERT(held(v3) >= (int64_t)COL_BYTES && held(v3) <= (int64_t)(COL_BYTES + MIB));
  /* v3 borrows from v1 (the holder of v2's chunks), never through v2 */
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  const struct snap__segment *seg = snap__snapshot_seg(s);
  CU_ASSERT_EQUAL(seg->nfiles, 1);
  CU_ASSERT_EQUAL(seg->files[0], v1);
  check_pinned(s);
  snap_unpin(s);
  close_store();
}

/* keep = 1: retired versions go, or keep only what later versions borrow. The
 * store then holds exactly the distinct chunks live versions reference. */
static void test_lending_and_reclamation(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 1, NULL), 0);
  for (uint64_t r = 0; r < NROWS; r++) g_cols[0][r] += 1;
  uint64_t v2 = publish(NULL, 0);
  /* commit's gc: v1 is retired, its column 0 freed, the rest lent to v2 */
  CU_ASSERT_EQUAL(state_of(v1), SNAP_STATE_LENDING);
  int64_t total = held(v1) + held(v2);
  /* (where a changed run ends, up to 16 unchanged chunks may be written: 1 MiB) */
  CU_ASSERT(held(v1) >= (int64_t)((NCOLS - 1) * COL_BYTES - MIB));
  CU_ASSERT(held(v1) <= (int64_t)((NCOLS - 1) * COL_BYTES + MIB));
  CU_ASSERT(total <= (int64_t)(NCOLS * COL_BYTES + 2 * MIB));
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_pin_version(g_store, "d", v1, &s, &err), SNAP_EDRAINING);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "retired"));
  CU_ASSERT_EQUAL(snap_rollback(g_store, "d", v1, &err), SNAP_EDRAINING);
  check_current(v2);
  /* gc again changes nothing */
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(g_store, "d", 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.freed_versions, 0);
  CU_ASSERT_EQUAL(held(v1) + held(v2), total);
  /* an entirely new table: nothing borrowed any more, v1 and v2 go */
  for (int c = 0; c < NCOLS; c++)
    for (uint64_t r = 0; r < NROWS; r++) g_cols[c][r] = tu_cell(9, r, (uint32_t)c);
  uint64_t v3 = publish(NULL, 0);
  CU_ASSERT_EQUAL(held(v1), -1);
  CU_ASSERT_EQUAL(held(v2), -1);
  CU_ASSERT_EQUAL(nfiles_of(v3), 0);
  check_current(v3);
  close_store();
}

/* A reader (another process) pinning the old version keeps all of it; its
 * death (SIGKILL) releases it, through the kernel's lock. */
static void test_pinned_reader_then_killed(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 1, NULL), 0);
  int ready[2];
  CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    snap_store *r;
    snap_snapshot *s;
    if (snap_store_open(g_dir, SNAP_RDONLY, &r, NULL) || snap_pin(r, "d", &s, NULL))
      _exit(2);
    double first = ((const double *)snap_snapshot_column(s, 2)->values)[7];
    char ok = first == g_cols[2][7] ? 'y' : 'n';
    if (write(ready[1], &ok, 1) != 1) _exit(3);
    for (;;) pause();
  }
  char ok = 0;
  CU_ASSERT_EQUAL(read(ready[0], &ok, 1), 1);
  CU_ASSERT_EQUAL(ok, 'y');
  for (uint64_t r = 0; r < NROWS; r++) g_cols[2][r] *= 3;
  uint64_t v2 = publish(NULL, 0);
  /* pinned: draining, whole */
  CU_ASSERT_EQUAL(state_of(v1), SNAP_STATE_DRAINING);
  CU_ASSERT(held(v1) >= (int64_t)(NCOLS * COL_BYTES));
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(g_store, "d", 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.lending_versions, 1);
  CU_ASSERT_EQUAL(state_of(v1), SNAP_STATE_LENDING);
  CU_ASSERT(held(v1) <= (int64_t)((NCOLS - 1) * COL_BYTES + MIB));
  check_current(v2);
  close(ready[0]);
  close(ready[1]);
  close_store();
}

/* A rebuilt control file knows a lending version by its punched chunks. */
static void test_rebuild_keeps_lending(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 1, NULL), 0);
  for (uint64_t r = 0; r < NROWS; r++) g_cols[5][r] = 1.0;
  uint64_t v2 = publish(NULL, 0);
  CU_ASSERT_EQUAL(state_of(v1), SNAP_STATE_LENDING);
  snap_store_close(g_store);
  char path[4096];
  snprintf(path, sizeof path, "%s/control.mdb", g_dir);
  CU_ASSERT_EQUAL(unlink(path), 0);
  struct snap_error err;
  int rc = snap_store_rebuild(g_dir, SNAP_REBUILD_DEEP, NULL, NULL, &err);
  if (rc) printf("\nrebuild: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &g_store, NULL), 0);
  CU_ASSERT_EQUAL(state_of(v1), SNAP_STATE_LENDING);
  CU_ASSERT_EQUAL(state_of(v2), SNAP_STATE_CURRENT);
  check_current(v2);
  close_store();
}

/* A lender's file gone (damage): the borrower's pin fails naming the file,
 * verify and gc do not free anything on a guess. */
static void test_lender_missing(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  for (uint64_t r = 0; r < NROWS; r++) g_cols[1][r] = 2.0;
  uint64_t v2 = publish(NULL, 0);
  check_current(v2);
  snap_store_trim(g_store);
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/d/%llu.seg", g_dir, (unsigned long long)v1);
  CU_ASSERT_EQUAL(unlink(path), 0);
  snap_store *other;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &other, NULL), 0);
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_pin(other, "d", &s, &err), SNAP_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "1.seg"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "2.seg"));
  snap_store_close(other);
  close_store();
}

/* writerd's path: a detached segment, sealed whole by the client, adopted by
 * the store's writer shares what equals the current version. */
static void test_adopt_shares(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  for (uint64_t r = 0; r < NROWS; r++) g_cols[4][r] = 7.0;
  struct snap_field f[NCOLS];
  char names[NCOLS][16];
  tu_f64_fields(f, names, NCOLS);
  struct snap_schema schema = {NROWS, NCOLS, f, NULL, 0};
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/segments", g_dir);
  snap_publish *p;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin_detached(dir, "d", &schema, &p, &err), 0);
  for (uint32_t c = 0; c < NCOLS; c++)
    CU_ASSERT_EQUAL(snap_publish_copy(p, c, SNAP_BUFFER_VALUES, g_cols[c], NULL), 0);
  int fd;
  CU_ASSERT_EQUAL_FATAL(snap_publish_seal(p, &fd, &err), 0);
  uint64_t v2;
  int rc = snap_publish_adopt(g_store, "d", fd, &v2, &err);
  if (rc) printf("\nadopt: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT(held(v2) <= (int64_t)(COL_BYTES + MIB));
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap__snapshot_seg(s)->nfiles, 1);
  CU_ASSERT_EQUAL(snap__snapshot_seg(s)->files[0], v1);
  check_pinned(s);
  snap_unpin(s);
  close_store();
}

/* Scattered changes: past 64 runs of shared chunks the shortest runs are
 * copied (a reader maps at most 65 pieces); snap_compact() forces a version
 * that shares nothing, and the files it shared from can go. */
static void test_compaction(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0);
  /* one cell in every 4th chunk: ~NCOLS*NROWS*8/64KiB/4 = 256 runs */
  uint64_t per_chunk = (1u << SNAP__CHUNK_SHIFT_SMALL) / 8;
  for (int c = 0; c < NCOLS; c++)
    for (uint64_t r = 0; r < NROWS; r += 4 * per_chunk) g_cols[c][r] = -1.0;
  uint64_t v2 = publish(NULL, 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v2);
  CU_ASSERT(snap_snapshot_mappings(s) <= 1 + SNAP__MAX_PIECES);
  CU_ASSERT(snap_snapshot_mappings(s) > 1);
  check_pinned(s);
  snap_unpin(s);
  /* forced: one piece, nothing borrowed */
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 1, NULL), 0);
  uint64_t v3;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_compact(g_store, "d", &v3, &err), 0);
  CU_ASSERT_EQUAL(v3, v2 + 1);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_mappings(s), 1);
  check_pinned(s);
  snap_unpin(s);
  CU_ASSERT(held(v3) >= (int64_t)(NCOLS * COL_BYTES));
  CU_ASSERT_EQUAL(snap_gc(g_store, "d", 0, NULL, NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(held(v1), -1);
  CU_ASSERT_EQUAL(held(v2), -1);
  CU_ASSERT_EQUAL(snap_compact(g_store, "nosuch", NULL, &err), SNAP_ENOTFOUND);
  close_store();
}

/* Appends: the first doubles the room (one full copy), the next ones cost
 * their rows; every version reads back whole, the old one undisturbed. */
static void append_rows(uint64_t add, uint64_t *v) {
  snap_publish *p;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_publish_append(g_store, "d", add, NULL, 0, &p, &err), 0);
  uint64_t old = snap_publish_nrows(p) - add;
  /* the sources are read at commit: one buffer per column */
  double *rows = malloc(NCOLS * add * sizeof *rows);
  for (uint32_t c = 0; c < NCOLS; c++) {
    for (uint64_t r = 0; r < add; r++) rows[c * add + r] = tu_cell(77, old + r, c);
    CU_ASSERT_EQUAL(snap_publish_copy_rows(p, c, old, add, rows + c * add, &err), 0);
  }
  int rc = snap_publish_commit(p, v, &err);
  if (rc) printf("\nappend: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  free(rows);
}

static bool check_rows(snap_snapshot *s, uint64_t nrows) {
  bool ok = snap_snapshot_nrows(s) == nrows;
  const struct snap_block *b = snap_snapshot_block(s, 0);
  for (uint32_t c = 0; ok && c < NCOLS; c++) {
    const double *v = snap_snapshot_column(s, c)->values;
    ok = (const uint8_t *)v == (const uint8_t *)b->data + c * b->column_stride;
    for (uint64_t r = 0; ok && r < nrows; r++) {
      ok = v[r] == (r < NROWS ? g_cols[c][r] : tu_cell(77, r, c));
      if (!ok)
        printf("\nversion %llu column %u row %llu: %.17g, expected %.17g\n",
               (unsigned long long)snap_snapshot_version(s), c, (unsigned long long)r,
               v[r], r < NROWS ? g_cols[c][r] : tu_cell(77, r, c));
    }
  }
  return ok && snap_snapshot_verify(s, NULL) == 0;
}

static void test_appends(void) {
  open_store();
  uint64_t v1 = publish(NULL, 0), v2, v3, v4;
  snap_snapshot *old, *s0;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &old, NULL), 0);
  uint64_t add = NROWS / 100;
  append_rows(add, &v2); /* no room yet: doubles it, a full copy */
  CU_ASSERT(held(v2) >= (int64_t)((NCOLS - 1) * COL_BYTES));
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s0, NULL), 0);
  CU_ASSERT(check_rows(s0, NROWS + add));
  snap_unpin(s0);
  append_rows(add, &v3); /* room: the old rows are shared */
  append_rows(add, &v4);
  /* per column: the new rows and the chunk they start in */
  int64_t per = (int64_t)(NCOLS * (add * 8 + 2 * (1u << SNAP__CHUNK_SHIFT_SMALL)));
  CU_ASSERT(held(v3) <= per + (int64_t)MIB);
  CU_ASSERT(held(v4) <= per + (int64_t)MIB);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v4);
  CU_ASSERT(snap_snapshot_block(s, 0)->column_stride >= (NROWS + 3 * add) * 8);
  CU_ASSERT(check_rows(s, NROWS + 3 * add));
  snap_unpin(s);
  /* the version pinned before the appends is unchanged */
  CU_ASSERT_EQUAL(snap_snapshot_version(old), v1);
  CU_ASSERT(check_rows(old, NROWS));
  snap_unpin(old);
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "d", v3, &s, NULL), 0);
  CU_ASSERT(check_rows(s, NROWS + 2 * add));
  snap_unpin(s);
  /* a table with a string column is refused, naming it */
  struct snap_field f = {.name = "s", .type = SNAP_STRING};
  struct snap_schema schema = {0, 1, &f, NULL, 0};
  snap_publish *p;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "str", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, NULL, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_append(g_store, "str", 5, NULL, 0, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "\"s\""));
  close_store();
}

int main(void) {
  /* the tests count 64 KiB chunks, whatever the test directory's mount */
  setenv("LIBSNAP_CHUNK_SHIFT", "16", 1);
  static const tu_test tests[] = {
      {"one column replaced: the rest is shared", test_one_column_replaced},
      {"same data, and the current version handed back", test_same_data_and_identity},
      {"lending, then reclaimed; memory = distinct chunks", test_lending_and_reclamation},
      {"a pinned reader keeps the old version; SIGKILL frees it",
       test_pinned_reader_then_killed},
      {"rebuild keeps a lending version lending", test_rebuild_keeps_lending},
      {"a lender's file missing: clear error", test_lender_missing},
      {"an adopted detached segment shares too", test_adopt_shares},
      {"compaction: bounded pieces, and forced", test_compaction},
      {"appends cost their rows; old versions undisturbed", test_appends},
      {NULL, NULL}};
  return tu_run("share", tests);
}
