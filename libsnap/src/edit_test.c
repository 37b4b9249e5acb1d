/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Editing a version in place: copy on write, what changed read from the page
 * table, compare-and-swap on the base, and killed writers. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#define NROWS (1u << 18) /* 2 MiB per float64 column: 32 chunks of 64 KiB */
#define NCOLS 4
#define COL_BYTES ((uint64_t)NROWS * 8)
#define CHUNK (64u << 10)

static char *g_dir;
static snap_store *g_store;

static void open_store(uint64_t *v1) {
  g_store = tu_store_create("edit", &g_dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_store);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", NROWS, NCOLS, 1, v1), 0);
}

static void close_store(void) { tu_store_destroy(g_store, g_dir); }

/* Bytes the tmpfs holds for version @p v's file; -1 when it is gone. */
static int64_t held(uint64_t v) { return tu_held(g_dir, "d", v); }

static uint64_t current(void) {
  uint64_t v = 0;
  CU_ASSERT_EQUAL(snap_current_version(g_store, "d", &v, NULL), 0);
  return v;
}

static double *col_of(snap_edit *ed, uint32_t c) {
  return (double *)snap_edit_column(ed, c)->values;
}

static void test_in_place(void) {
  uint64_t v1, v2, pages;
  struct snap_error err;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  CU_ASSERT_EQUAL(snap_edit_base(ed), v1);
  CU_ASSERT_EQUAL(snap_edit_nrows(ed), NROWS);
  CU_ASSERT_EQUAL(snap_edit_written(ed, &pages, &err), 0);
  CU_ASSERT_EQUAL(pages, 0);
  /* reading the whole view writes nothing */
  double sum = 0;
  for (uint32_t c = 0; c < NCOLS; c++)
    for (uint64_t r = 0; r < NROWS; r++) sum += col_of(ed, c)[r];
  CU_ASSERT(sum > 0);
  CU_ASSERT_EQUAL(snap_edit_written(ed, &pages, &err), 0);
  CU_ASSERT_EQUAL(pages, 0);
  /* 1000 rows of column 2 (8000 bytes: 2 or 3 pages, one chunk), one cell of
   * column 0 */
  for (uint64_t r = 5000; r < 6000; r++) col_of(ed, 2)[r] *= -1;
  col_of(ed, 0)[NROWS - 1] = 42.5;
  CU_ASSERT_EQUAL(snap_edit_written(ed, &pages, &err), 0);
  CU_ASSERT(pages >= 2 && pages <= 4);
  /* the base and every other reader see none of it */
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 1);
  snap_unpin(s);
  int rc = snap_edit_commit(ed, &v2, &err);
  if (rc) printf("\ncommit: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(current(), v2);
  /* the new file holds the two written chunks and its manifest */
  CU_ASSERT(held(v2) >= 2 * CHUNK);
  CU_ASSERT(held(v2) <= 2 * CHUNK + 64 * 1024);
  CU_ASSERT_EQUAL(snap_edit_commit(ed, NULL, &err), SNAP_EINVAL); /* once */
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  for (uint32_t c = 0; c < NCOLS; c++) {
    const double *v = snap_snapshot_column(s, c)->values;
    for (uint64_t r = 0; r < NROWS; r++) {
      double want = tu_cell(1, r, c);
      if (c == 2 && r >= 5000 && r < 6000) want = -want;
      if (c == 0 && r == NROWS - 1) want = 42.5;
      if (v[r] != want) {
        CU_FAIL("a cell of the edited version");
        c = NCOLS;
        break;
      }
    }
  }
  snap_unpin(s);
  /* the view keeps the writes until it is freed; the base is untouched */
  CU_ASSERT_EQUAL(col_of(ed, 0)[NROWS - 1], 42.5);
  snap_edit_free(ed);
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "d", v1, &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 1);
  snap_unpin(s);
  close_store();
}

/* Pages of [@p addr, + @p len) mapped in this process's page table. */
static uint64_t present_pages(const void *addr, uint64_t len) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t n = 0, e;
  for (uintptr_t pg = (uintptr_t)addr / 4096; pg < ((uintptr_t)addr + len) / 4096; pg++)
    if (pread(fd, &e, 8, (off_t)(pg * 8)) == 8 && (e >> 63)) n++;
  close(fd);
  return n;
}

/* The unwritten chunks are shared unread: the commit does not even fault in
 * the base's pages there (a comparison would). */
static void test_clean_chunks_not_read(void) {
  uint64_t v1, v2;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, NULL), 0);
  snap_snapshot *base = snap_edit_snapshot(ed);
  const struct snap_block *b = snap_snapshot_block(base, 0);
  CU_ASSERT_EQUAL(present_pages(b->data, b->data_bytes), 0);
  col_of(ed, 2)[1000] = -5;
  CU_ASSERT_EQUAL_FATAL(snap_edit_commit(ed, &v2, NULL), 0);
  /* the one written chunk was compared with the base's: at most its pages */
  uint64_t n = present_pages(b->data, b->data_bytes);
  CU_ASSERT(n >= 1 && n <= CHUNK / 4096);
  CU_ASSERT(held(v2) >= CHUNK && held(v2) < 2 * CHUNK);
  snap_edit_free(ed);
  close_store();
}

/* A page written with the bytes it had is compared and shared: no data. */
static void test_same_bytes_written(void) {
  uint64_t v1, v2, pages;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, NULL), 0);
  for (uint64_t r = 0; r < NROWS; r += 512) col_of(ed, 1)[r] = col_of(ed, 1)[r];
  CU_ASSERT_EQUAL(snap_edit_written(ed, &pages, NULL), 0);
  CU_ASSERT_EQUAL(pages, COL_BYTES / 4096);
  CU_ASSERT_EQUAL_FATAL(snap_edit_commit(ed, &v2, NULL), 0);
  CU_ASSERT(held(v2) < CHUNK); /* the manifest only */
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v2);
  CU_ASSERT_EQUAL(tu_check_f64(s), 1);
  snap_unpin(s);
  snap_edit_free(ed);
  close_store();
}

static void test_conflict(void) {
  uint64_t v1, v2, v3 = 0;
  struct snap_error err;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  col_of(ed, 3)[7] = -1;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", NROWS, NCOLS, 2, &v2), 0);
  int files = tu_count_files(g_dir);
  CU_ASSERT_EQUAL(snap_edit_commit(ed, &v3, &err), SNAP_ECONFLICT);
  CU_ASSERT_EQUAL(v3, 0);
  char want[128];
  snprintf(want, sizeof want,
           "version %llu became current after the edit began from "
           "version %llu",
           (unsigned long long)v2, (unsigned long long)v1);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, want));
  CU_ASSERT_EQUAL(current(), v2);
  CU_ASSERT_EQUAL(tu_count_files(g_dir), files);
  snap_edit_free(ed);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 2);
  snap_unpin(s);
  close_store();
}

/* The flip's own compare-and-swap: with SNAP_PUBLISH_FULL the commit pins no
 * base, so its early check does not run and only flip() can refuse. */
static void test_conflict_at_flip(void) {
  uint64_t v1, v2, v = 0;
  struct snap_error err;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  col_of(ed, 3)[7] = -1;
  snap_snapshot *base = snap_edit_snapshot(ed);
  struct snap_field f[NCOLS];
  for (uint32_t c = 0; c < NCOLS; c++)
    f[c] = (struct snap_field){.name = snap_snapshot_column(base, c)->name,
                               .type = SNAP_FLOAT64};
  struct snap_schema schema = {NROWS, NCOLS, f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(
      snap_publish_begin_ex(g_store, "d", &schema, SNAP_PUBLISH_FULL, &p, &err), 0);
  for (uint32_t c = 0; c < NCOLS; c++)
    CU_ASSERT_EQUAL(snap_publish_copy(p, c, SNAP_BUFFER_VALUES, col_of(ed, c), &err), 0);
  CU_ASSERT_EQUAL(snap_publish_set_edit(p, ed, &err), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", NROWS, NCOLS, 3, &v2), 0);
  CU_ASSERT_EQUAL(snap_publish_commit(p, &v, &err), SNAP_ECONFLICT);
  CU_ASSERT_EQUAL(v, 0);
  CU_ASSERT_EQUAL(current(), v2);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "nothing was published"));
  snap_edit_free(ed);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 3);
  snap_unpin(s);
  close_store();
}

/* An edit set on a publish of another dataset is refused: the base's version
 * number alone would match another dataset's. */
static void test_edit_of_another_dataset(void) {
  uint64_t v1, ve;
  struct snap_error err;
  open_store(&v1);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "e", NROWS, NCOLS, 5, &ve), 0);
  CU_ASSERT_EQUAL(ve, v1); /* the same number: only the name tells them apart */
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_append(g_store, "e", 1, NULL, 0, &p, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_set_edit(p, ed, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "the edit is of \"d\""));
  snap_publish_abort(p);
  snap_edit_free(ed);
  close_store();
}

/* An edit of a version that borrows chunks: a write into a borrowed chunk is
 * private (the lender's file is untouched) and counted. */
static void test_edit_of_a_borrowing_version(void) {
  uint64_t v1, v2, v3, pages;
  struct snap_error err;
  open_store(&v1);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 5, NULL), 0); /* v1 stays pinnable */
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  col_of(ed, 3)[0] = -3; /* v2 holds one chunk, borrows the rest from v1 */
  CU_ASSERT_EQUAL_FATAL(snap_edit_commit(ed, &v2, &err), 0);
  snap_edit_free(ed);
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  CU_ASSERT_EQUAL(snap_edit_base(ed), v2);
  col_of(ed, 1)[100] = -1; /* a chunk v2 borrows from v1 */
  CU_ASSERT_EQUAL(snap_edit_written(ed, &pages, &err), 0);
  CU_ASSERT_EQUAL(pages, 1);
  CU_ASSERT_EQUAL_FATAL(snap_edit_commit(ed, &v3, &err), 0);
  snap_edit_free(ed);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "d", v1, &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 1); /* the lender's bytes as published */
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v3);
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 1)->values)[100], -1);
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 3)->values)[0], -3);
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 1)->values)[101],
                  tu_cell(1, 101, 1));
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  close_store();
}

/* A writer SIGKILLed while editing, and one killed inside its commit: nothing
 * published, nothing left behind. */
static void test_killed_writer(void) {
  uint64_t v1;
  open_store(&v1);
  int files = tu_count_files(g_dir);
  /* 0: killed while editing; then crash points of the commit: in begin (3),
   * in the seal (6), in the flip before the link (9), linked but not
   * committed (10): publish.c's points in the order a commit reaches them */
  static const int crashes[] = {0, 3, 6, 9, 10};
  for (size_t ci = 0; ci < sizeof crashes / sizeof crashes[0]; ci++) {
    int crash = crashes[ci];
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      snap_store *s;
      snap_edit *ed;
      if (snap_store_open(g_dir, 0, &s, NULL) || snap_edit_begin(s, "d", &ed, NULL))
        _exit(1);
      for (uint64_t r = 0; r < NROWS; r++)
        ((double *)snap_edit_column(ed, 1)->values)[r] = -1;
      if (crash) {
        snap__crash_arm(crash);
        snap_edit_commit(ed, NULL, NULL);
        _exit(2); /* the crash point should have killed us */
      }
      if (write(fds[1], "x", 1) != 1) _exit(3);
      pause();
      _exit(4);
    }
    close(fds[1]);
    char c;
    if (!crash) {
      CU_ASSERT_EQUAL(read(fds[0], &c, 1), 1);
      kill(pid, SIGKILL);
    }
    int st;
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    close(fds[0]);
    CU_ASSERT_EQUAL(current(), v1);
  }
  /* the kill between link and flip left one orphan, which a fresh handle's
   * first write operation sweeps (orphans.c) */
  snap_store_close(g_store);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &g_store, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v1);
  CU_ASSERT_EQUAL(tu_check_f64(s), 1);
  snap_unpin(s);
  struct snap_orphan *o;
  size_t n;
  CU_ASSERT_EQUAL(snap_orphan_list(g_store, &o, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 1);
  snap_orphan_list_free(o, n);
  CU_ASSERT_EQUAL(snap_gc(g_store, "d", 0, NULL, NULL, NULL, NULL), 0); /* a write op */
  CU_ASSERT_EQUAL(tu_count_files(g_dir), files);
  CU_ASSERT_EQUAL(snap_orphan_list(g_store, &o, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  snap_orphan_list_free(o, n);
  /* and the next edit works */
  snap_edit *ed;
  uint64_t v2;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, NULL), 0);
  col_of(ed, 0)[0] = 7;
  CU_ASSERT_EQUAL(snap_edit_commit(ed, &v2, NULL), 0);
  CU_ASSERT(v2 > v1);
  snap_edit_free(ed);
  close_store();
}

/* An append based on an edit: edited old rows and new rows in one version. */
static void test_append_with_edit(void) {
  uint64_t v1, v2;
  struct snap_error err;
  open_store(&v1);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_store, "d", &ed, &err), 0);
  col_of(ed, 1)[10] = 99;
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_append(g_store, "d", 100, NULL, 0, &p, &err), 0);
  double rows[100];
  for (int i = 0; i < 100; i++) rows[i] = 1000 + i;
  for (uint32_t c = 0; c < NCOLS; c++)
    CU_ASSERT_EQUAL(snap_publish_copy_rows(p, c, NROWS, 100, rows, &err), 0);
  CU_ASSERT_EQUAL_FATAL(snap_publish_set_edit(p, ed, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_set_edit(p, ed, &err), SNAP_EINVAL); /* once */
  int rc = snap_publish_commit(p, &v2, &err);
  if (rc) printf("\ncommit: %s\n", err.message);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_nrows(s), NROWS + 100);
  const double *c1 = snap_snapshot_column(s, 1)->values;
  CU_ASSERT_EQUAL(c1[10], 99);
  CU_ASSERT_EQUAL(c1[11], tu_cell(1, 11, 1));
  CU_ASSERT_EQUAL(c1[NROWS + 5], 1005);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  snap_edit_free(ed);
  close_store();
}

/* Building in place with SNAP_PUBLISH_KEEP_VIEW: what was written stays
 * readable after the commit, chunks shared with the previous version too, and
 * a later write reaches only this process. */
static void test_keep_view(void) {
  uint64_t v1, v2;
  struct snap_error err;
  open_store(&v1);
  struct snap_field f[NCOLS];
  char names[NCOLS][16];
  tu_f64_fields(f, names, NCOLS);
  struct snap_schema schema = {NROWS, NCOLS, f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_set_flags(p, SNAP_PUBLISH_KEEP_VIEW, &err), 0);
  size_t len;
  uint8_t *view = snap_publish_view(p, &len);
  CU_ASSERT_PTR_NOT_NULL_FATAL(view);
  double *m = snap_publish_block(p, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  /* the same table as v1 but column 3, so columns 0..2 are shared */
  for (uint32_t c = 0; c < NCOLS; c++)
    for (uint64_t r = 0; r < NROWS; r++) m[c * NROWS + r] = tu_cell(1, r, c) + (c == 3);
  CU_ASSERT_EQUAL_FATAL(snap_publish_commit(p, &v2, &err), 0);
  CU_ASSERT(held(v2) >= (int64_t)COL_BYTES && held(v2) < (int64_t)(2 * COL_BYTES));
  int bad = 0;
  for (uint32_t c = 0; c < NCOLS; c++)
    for (uint64_t r = 0; r < NROWS; r++)
      bad += m[c * NROWS + r] != tu_cell(1, r, c) + (c == 3);
  CU_ASSERT_EQUAL(bad, 0);
  m[0] = -1;
  m[3 * NROWS] = -1;
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), v2);
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 0)->values)[0],
                  tu_cell(1, 0, 0));
  CU_ASSERT_EQUAL(((const double *)snap_snapshot_column(s, 3)->values)[0],
                  tu_cell(1, 0, 3) + 1);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, &err), 0);
  snap_unpin(s);
  munmap(view, len);
  close_store();
}

static void test_errors(void) {
  uint64_t v1;
  struct snap_error err;
  open_store(&v1);
  snap_edit *ed = (snap_edit *)1;
  CU_ASSERT_EQUAL(snap_edit_begin(g_store, "nope", &ed, &err), SNAP_ENOTFOUND);
  CU_ASSERT_PTR_NULL(ed);
  CU_ASSERT_EQUAL(snap_edit_begin(g_store, "../x", &ed, &err), SNAP_EINVAL);
  CU_ASSERT_EQUAL(snap_edit_commit(NULL, NULL, &err), SNAP_EINVAL);
  snap_edit_free(NULL);
  snap_store *ro;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &ro, NULL), 0);
  CU_ASSERT_EQUAL(snap_edit_begin(ro, "d", &ed, &err), SNAP_ERDONLY);
  snap_store_close(ro);
  close_store();
}

int main(void) {
  setenv("LIBSNAP_CHUNK_SHIFT", "16", 1); /* the tests count 64 KiB chunks */
  static const tu_test tests[] = {
      {"in place: written chunks only, base untouched", test_in_place},
      {"unwritten chunks are shared unread", test_clean_chunks_not_read},
      {"the same bytes written back: shared", test_same_bytes_written},
      {"a version published meanwhile: SNAP_ECONFLICT", test_conflict},
      {"the flip's compare-and-swap", test_conflict_at_flip},
      {"an edit set on another dataset's publish", test_edit_of_another_dataset},
      {"an edit of a version that borrows chunks", test_edit_of_a_borrowing_version},
      {"a writer killed editing or committing leaves nothing", test_killed_writer},
      {"an append based on an edit", test_append_with_edit},
      {"build in place: the view outlives the commit", test_keep_view},
      {"errors", test_errors},
      {NULL, NULL}};
  return tu_run("edit", tests);
}
