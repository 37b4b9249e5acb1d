/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Store, publish, pins, retention, rollback, gc and the orphan sweep, in one process. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

static char *g_dir;
static snap_store *g_store;

static void open_store(void) {
  g_store = tu_store_create("store", &g_dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_store);
}

static void close_store(void) { tu_store_destroy(g_store, g_dir); }

static int seg_files(void) {
  return tu_count_files(g_dir) - 3;
} /* control.mdb, -lock, flips */

static bool seg_exists(const char *ds, uint64_t v) {
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/%s/%llu.seg", g_dir, ds,
           (unsigned long long)v);
  return access(path, F_OK) == 0;
}

static enum snap_state state_of(const char *ds, uint64_t v) {
  struct snap_version_info *vi;
  size_t n;
  enum snap_state st = 0;
  if (snap_version_list(g_store, ds, &vi, &n, NULL)) return 0;
  for (size_t i = 0; i < n; i++)
    if (vi[i].version == v) st = vi[i].state;
  snap_free(vi);
  return st;
}

static void test_open_errors(void) {
  snap_store *s;
  struct snap_error err;
  char *dir = tu_store_dir("open");
  char path[4096];
  snprintf(path, sizeof path, "%s/missing", dir);
  CU_ASSERT_EQUAL(snap_store_open(path, 0, &s, &err), SNAP_ENOTFOUND);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, path));
  CU_ASSERT_EQUAL(snap_store_open(path, SNAP_CREATE | SNAP_RDONLY, &s, &err),
                  SNAP_EINVAL);
  /* a directory that is not a store */
  CU_ASSERT_EQUAL(snap_store_open(dir, 0, &s, &err), SNAP_ENOTFOUND);
  /* the environment variable names the default store */
  setenv(SNAP_STORE_ENV, path, 1);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(NULL, SNAP_CREATE, &s, &err), 0);
  CU_ASSERT_STRING_EQUAL(snap_store_path(s), path);
  snap_store_close(s);
  unsetenv(SNAP_STORE_ENV);
  /* read-only handles read but do not write */
  CU_ASSERT_EQUAL_FATAL(snap_store_open(path, SNAP_RDONLY, &s, &err), 0);
  struct snap_schema schema = {0};
  snap_publish *p;
  CU_ASSERT_EQUAL(snap_publish_begin(s, "d", &schema, &p, &err), SNAP_ERDONLY);
  CU_ASSERT_EQUAL(snap_gc(s, NULL, 0, NULL, NULL, NULL, &err), SNAP_ERDONLY);
  CU_ASSERT_EQUAL(snap_gc(s, NULL, SNAP_GC_DRY_RUN, NULL, NULL, NULL, &err), 0);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL(snap_pin(s, "d", &snap, &err), SNAP_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "\"d\""));
  snap_store_close(s);
  snap_store_close(NULL);
  tu_store_remove(dir);
  free(dir);
}

static void test_publish_pin_flip(void) {
  open_store();
  snap_snapshot *a, *b, *c;
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_pin(g_store, "prices", &a, &err), SNAP_ENOTFOUND);
  uint64_t v1, v2;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "prices", 1000, 4, 11, &v1), 0);
  CU_ASSERT_EQUAL(v1, 1);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "prices", &a, &err), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(a), 1);
  CU_ASSERT_EQUAL(tu_check_f64(a), 11);
  /* the fast path hands out the same mapping */
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "prices", &b, &err), 0);
  CU_ASSERT_PTR_EQUAL(a, b);
  CU_ASSERT_EQUAL((uintptr_t)snap_snapshot_segment(a, NULL) % (2u << 20), 0);
  snap_unpin(b);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "prices", 500, 3, 22, &v2), 0);
  CU_ASSERT_EQUAL(v2, 2);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "prices", &c, &err), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(c), 2);
  CU_ASSERT_EQUAL(tu_check_f64(c), 22);
  /* the old pin is untouched by the flip */
  CU_ASSERT_EQUAL(tu_check_f64(a), 11);
  CU_ASSERT_EQUAL(snap_snapshot_nrows(a), 1000);
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(g_store, "prices", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, 2);
  /* pinning a retained version by number */
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "prices", 1, &b, &err), 0);
  CU_ASSERT_PTR_EQUAL(a, b); /* one mapping per version per process */
  snap_unpin(b);
  CU_ASSERT_EQUAL(snap_pin_version(g_store, "prices", 9, &b, &err), SNAP_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "version 9"));
  snap_unpin(a);
  snap_unpin(c);
  close_store();
}

/* snap_pin_cached: the fast path alone, never a system call or a lock. */
static void test_pin_cached(void) {
  open_store();
  uint64_t v;
  snap_snapshot *snap = (snap_snapshot *)1;
  CU_ASSERT_EQUAL(snap_pin_cached(g_store, "cached", &snap), -EAGAIN); /* unknown */
  CU_ASSERT_PTR_NULL(snap);
  CU_ASSERT_EQUAL(snap_pin_cached(g_store, NULL, &snap), -EAGAIN);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "cached", 10, 1, 1, &v), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "cached", &snap, NULL),
                        0); /* fills the cache */
  snap_unpin(snap);
  CU_ASSERT_EQUAL_FATAL(snap_pin_cached(g_store, "cached", &snap), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(snap), v);
  snap_unpin(snap);
  uint64_t v2;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "cached", 10, 1, 2, &v2), 0);
  CU_ASSERT_EQUAL(snap_pin_cached(g_store, "cached", &snap), -EAGAIN); /* flipped */
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "cached", &snap, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(snap), v2);
  snap_unpin(snap);
  CU_ASSERT_EQUAL_FATAL(snap_pin_cached(g_store, "cached", &snap), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(snap), v2);
  snap_unpin(snap);
  close_store();
}

static void test_retention_and_gc(void) {
  open_store();
  uint64_t v;
  for (int i = 1; i <= 4; i++)
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 100, 2, i, &v), 0);
  /* default keep 2: current + one previous; unpinned ones are gone at once */
  CU_ASSERT_EQUAL(seg_files(), 2);
  CU_ASSERT_EQUAL(state_of("d", 4), SNAP_STATE_CURRENT);
  CU_ASSERT_EQUAL(state_of("d", 3), SNAP_STATE_RETAINED);
  CU_ASSERT_EQUAL(state_of("d", 2), 0);
  /* a pinned version drains instead of vanishing */
  snap_snapshot *held;
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_store, "d", 3, &held, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 100, 2, 5, &v), 0);
  CU_ASSERT_EQUAL(state_of("d", 3), SNAP_STATE_DRAINING);
  CU_ASSERT(seg_exists("d", 3));
  CU_ASSERT_EQUAL(tu_check_f64(held), 3);
  snap_snapshot *s;
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_pin_version(g_store, "d", 3, &s, &err), SNAP_EDRAINING);
  struct snap_version_info *vi;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(snap_version_list(g_store, "d", &vi, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, 3);
  CU_ASSERT_EQUAL(vi[0].version, 3);
  CU_ASSERT_EQUAL(vi[0].holders, 1);
  CU_ASSERT_EQUAL(vi[0].nrows, 100);
  CU_ASSERT_EQUAL(vi[0].ncols, 2);
  CU_ASSERT(vi[0].bytes >= 4096 + 1600);
  CU_ASSERT_EQUAL(vi[2].state, SNAP_STATE_CURRENT);
  snap_free(vi);
  pid_t pids[4];
  CU_ASSERT_EQUAL(snap_version_holders(g_store, "d", 3, pids, 4, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 1);
  CU_ASSERT_EQUAL(pids[0], getpid());
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.freed_versions, 0);
  CU_ASSERT_EQUAL(st.draining_versions, 1);
  snap_unpin(held);
  /* dry run reports, changes nothing */
  CU_ASSERT_EQUAL(snap_gc(g_store, "d", SNAP_GC_DRY_RUN, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.freed_versions, 1);
  CU_ASSERT(seg_exists("d", 3));
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.freed_versions, 1);
  CU_ASSERT(st.freed_bytes > 0);
  CU_ASSERT(!seg_exists("d", 3));
  CU_ASSERT_EQUAL(seg_files(), 2);
  /* keep 1: the previous version is released */
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 1, NULL), 0);
  CU_ASSERT_EQUAL(seg_files(), 1);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 0, &err), SNAP_EINVAL);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, NULL, 3, NULL), 0);
  for (int i = 0; i < 4; i++)
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "e", 10, 1, i, &v), 0);
  CU_ASSERT_EQUAL(seg_files(), 1 + 3);
  close_store();
}

static void test_rollback(void) {
  open_store();
  uint64_t v;
  for (int i = 1; i <= 3; i++)
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 64, 1, i * 10, &v), 0);
  CU_ASSERT_EQUAL(snap_store_set_keep(g_store, "d", 3, NULL), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), 3);
  snap_unpin(s);
  struct snap_error err;
  /* v1 fell out of keep-2 before keep became 3 */
  CU_ASSERT_EQUAL(snap_rollback(g_store, "d", 1, &err), SNAP_ENOTFOUND);
  CU_ASSERT_EQUAL(snap_rollback(g_store, "d", 2, &err), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), 2);
  CU_ASSERT_EQUAL(tu_check_f64(s), 20);
  snap_unpin(s);
  CU_ASSERT_EQUAL(state_of("d", 3), SNAP_STATE_RETAINED);
  CU_ASSERT_EQUAL(snap_rollback(g_store, "nope", 2, &err), SNAP_ENOTFOUND);
  /* a new publish after a rollback takes the next number, never reuses one */
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 64, 1, 40, &v), 0);
  CU_ASSERT_EQUAL(v, 4);
  CU_ASSERT_EQUAL(snap_rollback(g_store, "d", 3, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 30);
  snap_unpin(s);
  close_store();
}

static void test_abort_and_numbers(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {1 << 20, 1, &f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_version(p), 2);
  CU_ASSERT_EQUAL(snap_publish_nrows(p), 1 << 20);
  const struct snap_column *pc = snap_publish_column(p, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(pc);
  CU_ASSERT_EQUAL(pc->type, SNAP_FLOAT64);
  CU_ASSERT_PTR_EQUAL(pc->values, snap_publish_block(p, 0));
  CU_ASSERT_PTR_NULL(snap_publish_column(p, 1));
  memset(snap_publish_block(p, 0), 0xab, 8 << 20);
  CU_ASSERT_PTR_NULL(snap_publish_block(p, 1));
  struct snap_fill fill;
  CU_ASSERT_EQUAL(snap_publish_fill(p, 1, &fill, NULL), SNAP_EINVAL);
  snap_publish_abort(p);
  snap_publish_abort(NULL);
  CU_ASSERT_EQUAL(seg_files(), 1);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 3, &v), 0);
  CU_ASSERT_EQUAL(v, 3);
  struct snap_dataset_info *di;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "a", 10, 1, 3, &v), 0);
  CU_ASSERT_EQUAL_FATAL(snap_dataset_list(g_store, &di, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, 2);
  CU_ASSERT_STRING_EQUAL(di[0].name, "a");
  CU_ASSERT_STRING_EQUAL(di[1].name, "d");
  CU_ASSERT_EQUAL(di[1].current, 3);
  CU_ASSERT_EQUAL(di[1].next_version, 4);
  CU_ASSERT_EQUAL(di[1].nversions, 2);
  CU_ASSERT_EQUAL(di[1].keep, 2);
  snap_free(di);
  close_store();
}

/* The dataset limit: a new dataset beyond it is refused (-EDQUOT, naming it);
 * new versions of existing ones and a raised or removed limit go through. */
static void test_max_datasets(void) {
  open_store();
  uint64_t v, n = 9;
  uint32_t max = 7;
  CU_ASSERT_EQUAL(snap_store_max_datasets(g_store, &max, &n, NULL), 0);
  CU_ASSERT_EQUAL(max, 0); /* none by default */
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "a", 8, 1, 1, &v), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "b", 8, 1, 2, &v), 0);
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(g_store, 2, NULL), 0);
  CU_ASSERT_EQUAL(snap_store_max_datasets(g_store, &max, &n, NULL), 0);
  CU_ASSERT(max == 2 && n == 2);
  struct snap_error err = {0};
  snap_publish *p;
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema sch = {.nrows = 1, .ncols = 1, .fields = &f};
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "c", &sch, &p, &err), -EDQUOT);
  CU_ASSERT_PTR_NOT_NULL(
      strstr(err.message, "dataset \"c\" would be dataset 3 of at most 2"));
  CU_ASSERT_EQUAL(tu_count_files(g_dir) - 3, 2); /* nothing created for it */
  CU_ASSERT_EQUAL(snap_current_version(g_store, "c", &v, NULL), SNAP_ENOTFOUND);
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, "a", 8, 1, 3, &v), 0);     /* existing: fine */
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(g_store, 1, NULL), 0); /* below the count */
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, "b", 8, 1, 4, &v), 0);
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(g_store, 0, NULL), 0);
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, "c", 8, 1, 5, &v), 0);
  snap_store *ro;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &ro, NULL), 0);
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(ro, 5, NULL), SNAP_ERDONLY);
  CU_ASSERT_EQUAL(snap_store_max_datasets(ro, &max, &n, NULL), 0);
  CU_ASSERT(max == 0 && n == 3);
  snap_store_close(ro);
  close_store();
}

static void test_orphan_sweep(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  /* Files no record names: what a publisher killed between linkat and
   * commit leaves, and a dataset directory the control file never saw. */
  char src[4096], dst[4096];
  snprintf(src, sizeof src, "%s/segments/d/1.seg", g_dir);
  snprintf(dst, sizeof dst, "%s/segments/d/7.seg", g_dir);
  CU_ASSERT_EQUAL(link(src, dst), 0);
  snprintf(dst, sizeof dst, "%s/segments/ghost", g_dir);
  mkdir(dst, 0755);
  snprintf(dst, sizeof dst, "%s/segments/ghost/3.seg", g_dir);
  CU_ASSERT_EQUAL(link(src, dst), 0);
  snprintf(dst, sizeof dst, "%s/segments/d/notes.txt", g_dir);
  close(open(dst, O_CREAT | O_WRONLY, 0644));
  CU_ASSERT_EQUAL(seg_files(), 4);
  snap_store *w;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &w, NULL), 0);
  CU_ASSERT_EQUAL(seg_files(), 4); /* opening alone writes nothing */
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, NULL, NULL), 0);
  CU_ASSERT_EQUAL(seg_files(), 2); /* 1.seg and notes.txt */
  CU_ASSERT(seg_exists("d", 1));
  snap_store_close(w);
  close_store();
}

static const struct snap_orphan *orphan_find(const struct snap_orphan *o, size_t n,
                                             const char *dataset, const char *file) {
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/%s/%s", g_dir, dataset, file);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(o[i].path, path) && !strcmp(o[i].dataset, dataset)) return &o[i];
  return NULL;
}

static void test_orphan_list(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  char src[4096], dst[4096];
  struct stat st;
  snprintf(src, sizeof src, "%s/segments/d/1.seg", g_dir);
  CU_ASSERT_EQUAL_FATAL(stat(src, &st), 0);
  /* a segment no record names, one in a directory no record names, a stray
   * file, a leftover tombstone temp file (the store's own: never listed),
   * and a stray file beside the dataset directories (not a dataset) */
  snprintf(dst, sizeof dst, "%s/segments/d/7.seg", g_dir);
  CU_ASSERT_EQUAL(link(src, dst), 0);
  snprintf(dst, sizeof dst, "%s/segments/ghost", g_dir);
  mkdir(dst, 0755);
  snprintf(dst, sizeof dst, "%s/segments/ghost/3.seg", g_dir);
  CU_ASSERT_EQUAL(link(src, dst), 0);
  snprintf(dst, sizeof dst, "%s/segments/d/2.seg.damaged", g_dir);
  close(open(dst, O_CREAT | O_WRONLY, 0644));
  snprintf(dst, sizeof dst, "%s/segments/d/.next_version.tmp", g_dir);
  close(open(dst, O_CREAT | O_WRONLY, 0644));
  snprintf(dst, sizeof dst, "%s/segments/README", g_dir);
  close(open(dst, O_CREAT | O_WRONLY, 0644));
  int files = seg_files();

  snap_store *ro;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &ro, NULL), 0);
  struct snap_orphan *o;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(snap_orphan_list(ro, &o, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 3);
  const struct snap_orphan *a = orphan_find(o, n, "d", "7.seg");
  const struct snap_orphan *b = orphan_find(o, n, "ghost", "3.seg");
  const struct snap_orphan *c = orphan_find(o, n, "d", "2.seg.damaged");
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(a->kind, SNAP_ORPHAN_SEGMENT);
  CU_ASSERT_EQUAL(a->version, 7);
  CU_ASSERT_EQUAL(a->bytes, (uint64_t)st.st_size);
  CU_ASSERT_EQUAL(b->kind, SNAP_ORPHAN_SEGMENT);
  CU_ASSERT_EQUAL(b->version, 3);
  CU_ASSERT_EQUAL(c->kind, SNAP_ORPHAN_OTHER);
  CU_ASSERT_EQUAL(c->version, 0);
  CU_ASSERT_EQUAL(c->bytes, 0);
  snap_orphan_list_free(o, n);
  CU_ASSERT_EQUAL(seg_files(), files); /* listing changes nothing */

  /* the first write operation of a handle sweeps the segments, and only them */
  snap_store *w;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &w, NULL), 0);
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, NULL, NULL), 0);
  snap_store_close(w);
  CU_ASSERT_EQUAL_FATAL(snap_orphan_list(ro, &o, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 1);
  CU_ASSERT_PTR_NOT_NULL(orphan_find(o, n, "d", "2.seg.damaged"));
  snap_orphan_list_free(o, n);
  CU_ASSERT(seg_exists("d", 1));

  /* none left: NULL and 0 */
  snprintf(dst, sizeof dst, "%s/segments/d/2.seg.damaged", g_dir);
  CU_ASSERT_EQUAL(unlink(dst), 0);
  o = (void *)1;
  CU_ASSERT_EQUAL_FATAL(snap_orphan_list(ro, &o, &n, NULL), 0);
  CU_ASSERT_PTR_NULL(o);
  CU_ASSERT_EQUAL(n, 0);
  snap_orphan_list_free(NULL, 0);

  /* snap_free frees the other lists */
  struct snap_version_info *vi;
  CU_ASSERT_EQUAL(snap_version_list(ro, "d", &vi, &n, NULL), 0);
  snap_free(vi);
  snap_free(NULL);
  snap_store_close(ro);
  close_store();
}

static void test_pins_outlive_close(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 1000, 2, 5, &v), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  snap_snapshot *r = snap_snapshot_ref(s);
  snap_store_close(g_store);
  CU_ASSERT_EQUAL(tu_check_f64(s), 5);
  snap_unpin(s);
  CU_ASSERT_EQUAL(tu_check_f64(r), 5);
  snap_unpin(r);
  tu_store_remove(g_dir);
  free(g_dir);
}

struct reader_arg {
  long reads, bad;
  atomic_int *stop;
};

static void *reader_thread(void *p) {
  struct reader_arg *a = p;
  while (!atomic_load(a->stop)) {
    snap_snapshot *s;
    if (snap_pin(g_store, "t", &s, NULL)) {
      a->bad++;
      continue;
    }
    /* content is a function of the version: a torn or wrong version fails */
    if (tu_check_f64(s) != (int64_t)snap_snapshot_version(s)) a->bad++;
    a->reads++;
    snap_unpin(s);
  }
  return NULL;
}

static void test_threads_see_whole_versions(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "t", 2000, 3, 1, &v), 0);
  atomic_int stop = 0;
  pthread_t th[4];
  struct reader_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (struct reader_arg){0, 0, &stop};
    pthread_create(&th[i], NULL, reader_thread, &args[i]);
  }
  for (uint64_t i = 2; i <= 60; i++) {
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "t", 2000, 3, i, &v), 0);
    CU_ASSERT_EQUAL(v, i);
  }
  atomic_store(&stop, 1);
  long reads = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(args[i].bad, 0);
    reads += args[i].reads;
  }
  CU_ASSERT(reads > 0);
  snap_store_trim(g_store);
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(g_store, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 0);
  CU_ASSERT_EQUAL(seg_files(), 2);
  close_store();
}

static snap_store *g_waiter_store;
static void *waiter(void *p) {
  (void)p;
  long rc = snap_reclaim_wait(g_waiter_store, "d", 1, NULL);
  return (void *)rc;
}

static void test_reclaim_wait(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 2, &v), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 3, &v), 0);
  CU_ASSERT_EQUAL(state_of("d", 1), SNAP_STATE_DRAINING);
  /* A second handle, as writerd's reaper would have, blocks in LOCK_EX. */
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &g_waiter_store, NULL), 0);
  pthread_t th;
  pthread_create(&th, NULL, waiter, NULL);
  CU_ASSERT(seg_exists("d", 1)); /* cannot be reclaimed while pinned */
  snap_unpin(s);
  snap_store_trim(g_store);
  void *ret;
  pthread_join(th, &ret);
  CU_ASSERT_EQUAL((long)ret, 0);
  CU_ASSERT(!seg_exists("d", 1));
  CU_ASSERT_EQUAL(state_of("d", 1), 0);
  snap_store_close(g_waiter_store);
  close_store();
}

static int count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  int n = 0, c;
  while (f && (c = fgetc(f)) != EOF) n += c == '\n';
  if (f) fclose(f);
  return n;
}

static void test_shared_control_and_mappings(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 1000, 3, 1, &v), 0);
  /* Several handles on one store share one LMDB environment (LMDB forbids
   * opening it twice in a process); closing one leaves the others working. */
  snap_store *h2, *h3;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &h2, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &h3, NULL), 0);
  CU_ASSERT_PTR_EQUAL(g_store->control, h2->control);
  CU_ASSERT_PTR_EQUAL(g_store->control, h3->control);
  snap_store_close(h2);
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, "d", 1000, 3, 2, &v), 0);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(h3, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 2);
  snap_unpin(s);
  snap_store_close(h3);
  /* Mapping a version leaves no address-space reservation behind. */
  int before = count_maps();
  for (uint64_t i = 3; i < 40; i++) {
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 1000 + i, 3, i, &v), 0);
    CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
    snap_unpin(s);
  }
  snap_store_trim(g_store);
  CU_ASSERT(count_maps() - before < 5);
  /* a stray file in segments/ does not stop writers */
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/README", g_dir);
  close(open(path, O_CREAT | O_WRONLY, 0644));
  snap_store *w;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, 0, &w, NULL), 0);
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, NULL, NULL), 0);
  snap_store_close(w);
  close_store();
}

/* A detached segment of tu_publish_f64's shape, sealed; returns its fd. */
static int detached_f64(const char *dataset, uint64_t nrows, uint64_t seed) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/incoming", g_dir);
  struct snap_field f = {.name = "c0", .type = SNAP_FLOAT64};
  struct snap_schema schema = {nrows, 1, &f, &seed, sizeof seed};
  snap_publish *p;
  struct snap_error err;
  if (snap_publish_begin_detached(dir, dataset, &schema, &p, &err)) {
    fprintf(stderr, "detached: %s\n", err.message);
    return -1;
  }
  double *m = snap_publish_block(p, 0);
  for (uint64_t r = 0; r < nrows; r++) m[r] = tu_cell(seed, r, 0);
  int fd;
  if (snap_publish_seal(p, &fd, &err)) {
    fprintf(stderr, "seal: %s\n", err.message);
    return -1;
  }
  return fd;
}

static void test_detached_publish_adopted(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 100, 1, 1, &v), 0);
  struct snap_error err;
  /* the normal case: sealed, handed over, linked in without a copy */
  int fd = detached_f64("d", 1000, 7);
  CU_ASSERT_FATAL(fd >= 0);
  int arc = snap_publish_adopt(g_store, "d", fd, &v, &err);
  if (arc) fprintf(stderr, "adopt: %s\n", err.message);
  CU_ASSERT_EQUAL(arc, 0);
  CU_ASSERT_EQUAL(v, 2);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(s), 2);
  CU_ASSERT_EQUAL(tu_check_f64(s), 7);
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0);
  snap_unpin(s);
  /* still open for writing elsewhere: refused, nothing published */
  fd = detached_f64("d", 1000, 8);
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int writer = open(proc, O_RDWR);
  CU_ASSERT_EQUAL(snap_publish_adopt(g_store, "d", fd, &v, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "open for writing"));
  close(writer);
  /* damaged after sealing: header, then data */
  fd = detached_f64("d", 1000, 9);
  uint8_t b = 0x5a;
  CU_ASSERT_EQUAL(pwrite(fd, &b, 1, SNAP__H_NROWS), 1);
  CU_ASSERT_EQUAL(snap_publish_adopt(g_store, "d", fd, &v, &err), SNAP_ECORRUPT);
  fd = detached_f64("d", 1000, 10);
  uint64_t doff = 0;
  CU_ASSERT_EQUAL(pread(fd, &doff, 8, SNAP__H_DATA_OFFSET), 8);
  CU_ASSERT_EQUAL(pwrite(fd, &b, 1, (off_t)doff + 5), 1);
  CU_ASSERT_EQUAL(snap_publish_adopt(g_store, "d", fd, &v, &err), SNAP_ECHECKSUM);
  /* the name in the segment must be the dataset's */
  fd = detached_f64("other", 10, 11);
  CU_ASSERT_EQUAL(snap_publish_adopt(g_store, "d", fd, &v, &err), SNAP_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "\"other\""));
  /* not on the store's filesystem */
  int other = open("/tmp", O_TMPFILE | O_RDWR, 0600);
  if (other >= 0) {
    CU_ASSERT_EQUAL(snap_publish_adopt(g_store, "d", other, &v, &err), -EXDEV);
  }
  /* nothing of the refused ones remains; v2 is still current */
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(g_store, "d", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, 2);
  CU_ASSERT_EQUAL(seg_files(), 2);
  /* a detached publish is sealed, never committed */
  struct snap_field f = {.name = "x", .type = SNAP_INT8};
  struct snap_schema schema = {1, 1, &f, NULL, 0};
  snap_publish *p;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/incoming", g_dir);
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin_detached(dir, "d", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_commit(p, &v, &err), SNAP_EINVAL);
  close_store();
}

static void test_import_a_segment_file(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "src", 3000, 3, 42, &v), 0);
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/src/%llu.seg", g_dir, (unsigned long long)v);
  /* into another store, under another name */
  char *dir2;
  snap_store *other = tu_store_create("import", &dir2);
  CU_ASSERT_PTR_NOT_NULL_FATAL(other);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(other, "dst", 10, 1, 1, &v), 0);
  int fd = open(path, O_RDONLY);
  struct snap_error err;
  CU_ASSERT_EQUAL(snap_publish_import(other, "dst", fd, &v, &err), 0);
  CU_ASSERT_EQUAL(v, 2);
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(other, "dst", &s, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(s), 42);
  CU_ASSERT_STRING_EQUAL(snap_snapshot_dataset(s), "dst");
  CU_ASSERT_EQUAL(snap_snapshot_verify(s, NULL), 0);
  snap_unpin(s);
  close(fd);
  /* damaged copies are refused and publish nothing */
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/bad.seg", dir2);
  for (int k = 0; k < 2; k++) {
    int in = open(path, O_RDONLY), out = open(bad, O_CREAT | O_TRUNC | O_RDWR, 0600);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
      CU_ASSERT_EQUAL(write(out, buf, (size_t)n), n);
    close(in);
    uint8_t b = 0x77;
    uint64_t doff = 0;
    CU_ASSERT_EQUAL(pread(out, &doff, 8, SNAP__H_DATA_OFFSET), 8);
    CU_ASSERT_EQUAL(pwrite(out, &b, 1, k ? (off_t)doff + 100 : SNAP__H_NROWS), 1);
    int rc = snap_publish_import(other, "dst", out, &v, &err);
    CU_ASSERT_EQUAL(rc, k ? SNAP_ECHECKSUM : SNAP_ECORRUPT);
    close(out);
  }
  int notseg = open(g_dir, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_EQUAL(snap_publish_import(other, "dst", notseg, &v, &err), SNAP_EINVAL);
  close(notseg);
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(other, "dst", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, 2);
  tu_store_destroy(other, dir2);
  close_store();
}

/* ------------------------------------------------------------------ drop */

static bool ds_listed(const char *name) {
  struct snap_dataset_info *di;
  size_t n;
  bool found = false;
  if (snap_dataset_list(g_store, &di, &n, NULL)) return false;
  for (size_t i = 0; i < n; i++) found |= !strcmp(di[i].name, name);
  snap_free(di);
  return found;
}

/* A child that pins @p ds at @p version, says 'p' (or 'e') on @p up, waits
 * for a byte on @p down, then checks the pinned data and exits 0 if intact. */
static pid_t pinning_child(const char *ds, uint64_t version, int up[2], int down[2]) {
  if (pipe(up) || pipe(down)) return -1;
  pid_t pid = fork();
  if (pid) return pid;
  snap_store *s;
  snap_snapshot *snap;
  char c = 'e';
  if (snap_store_open(g_dir, SNAP_RDONLY, &s, NULL) ||
      snap_pin_version(s, ds, version, &snap, NULL)) {
    if (write(up[1], &c, 1)) _exit(2);
    _exit(2);
  }
  c = 'p';
  if (write(up[1], &c, 1) != 1 || read(down[0], &c, 1) != 1) _exit(3);
  int ok = tu_check_f64(snap) == (int64_t)version && !snap_snapshot_verify(snap, NULL);
  snap_unpin(snap);
  snap_store_close(s);
  _exit(ok ? 0 : 4);
}

static int child_finish(pid_t pid, int up[2], int down[2]) {
  char c = 'x';
  int st = -1;
  if (write(down[1], &c, 1) != 1) return -1;
  waitpid(pid, &st, 0);
  close(up[0]), close(up[1]), close(down[0]), close(down[1]);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_drop(void) {
  open_store();
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 1, &v), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 2, &v), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "other", 10, 1, 1, &v), 0);
  int up[2], down[2];
  char c;
  pid_t pid = pinning_child("d", 1, up, down);
  CU_ASSERT_FATAL(pid > 0);
  CU_ASSERT_FATAL(read(up[0], &c, 1) == 1 && c == 'p');
  struct snap_error err = {0};
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 0, &err), SNAP_EBUSY);
  char want[64];
  snprintf(want, sizeof want, "version 1 of \"d\" is pinned by pid %d", (int)pid);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, want));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "segments/d/1.seg"));
  CU_ASSERT(ds_listed("d") && seg_exists("d", 1) && seg_exists("d", 2));
  CU_ASSERT_EQUAL(child_finish(pid, up, down), 0);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &snap, NULL), 0);
  snap_unpin(snap); /* our own cache of the current version does not block it */
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 0, &err), 0);
  CU_ASSERT(!ds_listed("d") && ds_listed("other"));
  CU_ASSERT(!seg_exists("d", 1) && !seg_exists("d", 2));
  CU_ASSERT_EQUAL(snap_pin(g_store, "d", &snap, NULL), SNAP_ENOTFOUND);
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 0, NULL), SNAP_ENOTFOUND);
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 8, NULL), SNAP_EINVAL);
  /* Created again: the numbers go on from where the dropped one stopped. */
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 3, &v), 0);
  CU_ASSERT_EQUAL(v, 3);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, "d", &snap, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(snap), 3);
  snap_unpin(snap);
  /* --force: the pinner keeps reading its version; the name is gone at once. */
  pid = pinning_child("d", 3, up, down);
  CU_ASSERT_FATAL(pid > 0);
  CU_ASSERT_FATAL(read(up[0], &c, 1) == 1 && c == 'p');
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", SNAP_DROP_FORCE, &err), 0);
  CU_ASSERT(!ds_listed("d") && !seg_exists("d", 3));
  CU_ASSERT_EQUAL(child_finish(pid, up, down), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_store, "d", 10, 1, 4, &v), 0);
  CU_ASSERT_EQUAL(v, 4);
  /* A publish in progress holds the dataset: drop waits for it. */
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {1, 1, &f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "d", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 0, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "a publish of \"d\" is in progress"));
  snap_publish_abort(p);
  CU_ASSERT(ds_listed("d")); /* not a first publish: the dataset stays */
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, "d", 0, NULL), 0);
  snap_store *ro;
  CU_ASSERT_EQUAL_FATAL(snap_store_open(g_dir, SNAP_RDONLY, &ro, NULL), 0);
  CU_ASSERT_EQUAL(snap_dataset_drop(ro, "other", 0, NULL), SNAP_ERDONLY);
  snap_store_close(ro);
  close_store();
}

/* A first publish that fails or is aborted leaves no dataset behind, unless
 * another publish of the same new dataset is still going. */
static void test_failed_first_publish(void) {
  open_store();
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(g_store, 1, NULL), 0);
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {1, 1, &f, NULL, 0};
  snap_publish *p, *q;
  uint64_t v, n = 9;
  uint32_t max;
  for (int i = 0; i < 3; i++) {
    char name[8];
    snprintf(name, sizeof name, "n%d", i);
    CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, name, &schema, &p, NULL), 0);
    snap_publish_abort(p);
    CU_ASSERT(!ds_listed(name));
  }
  /* a commit that fails validation is a failed first publish too */
  struct snap_field sf = {.name = "s", .type = SNAP_STRING, .data_bytes = 4};
  struct snap_schema sschema = {1, 1, &sf, NULL, 0};
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "bad", &sschema, &p, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_commit(p, &v, NULL), SNAP_EINVAL); /* offsets all 0 */
  CU_ASSERT_EQUAL(snap_store_max_datasets(g_store, &max, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  /* two publishes of one new dataset: the first one's abort leaves it to the other */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "m", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(g_store, "m", &schema, &q, NULL), 0);
  snap_publish_abort(p);
  CU_ASSERT(ds_listed("m"));
  CU_ASSERT_EQUAL(snap_publish_commit(q, &v, NULL), 0);
  CU_ASSERT_EQUAL(v, 2);
  CU_ASSERT(ds_listed("m"));
  close_store();
}

/* New dataset names follow the rule; the message names the name and the rule. */
static void test_dataset_names(void) {
  open_store();
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {1, 1, &f, NULL, 0};
  snap_publish *p;
  struct snap_error err = {0};
  const char *bad[] = {"a b", "x@1", "a\nb", "caf\xc3\xa9", ".hidden", "a/b", ""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CU_ASSERT_EQUAL(snap_publish_begin(g_store, bad[i], &schema, &p, &err), SNAP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
  }
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "a\nb", &schema, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "\"a\\x0ab\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "ASCII letters, digits"));
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, "x@1", &schema, &p, &err), SNAP_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "byte 2 (0x40)"));
  CU_ASSERT_EQUAL(seg_files(), 0); /* not even a directory */
  uint64_t v;
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, "Ok_name-1.v2", 1, 1, 1, &v), 0);
  /* A dataset made under the old, looser rule (its record written directly
   * here) still publishes, pins and drops under its name. */
  const char *old = "old name@x";
  struct snap__txn *t;
  struct snap__meta m;
  CU_ASSERT_EQUAL_FATAL(snap__store_txn(g_store, true, &t, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap__meta_get(t, &m, NULL), 0);
  struct snap__dsrec ds = {.id = m.next_dataset_id++, .next_version = 1, .keep = 2};
  CU_ASSERT_EQUAL(snap__meta_put(t, &m, NULL), 0);
  CU_ASSERT_EQUAL(snap__ds_put(t, old, &ds, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap__txn_commit(t, NULL), 0);
  CU_ASSERT_EQUAL(tu_publish_f64(g_store, old, 4, 1, 1, &v), 0);
  CU_ASSERT_EQUAL(v, 1);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_store, old, &snap, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(snap), 1);
  snap_unpin(snap);
  CU_ASSERT_EQUAL(snap_dataset_drop(g_store, old, 0, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_begin(g_store, old, &schema, &p, &err), SNAP_EINVAL);
  close_store();
}

int main(void) {
  static const tu_test tests[] = {
      {"open errors, env default, read-only", test_open_errors},
      {"publish, pin, flip", test_publish_pin_flip},
      {"pin_cached: the fast path alone", test_pin_cached},
      {"retention and gc", test_retention_and_gc},
      {"rollback", test_rollback},
      {"abort leaves nothing; numbers never reused", test_abort_and_numbers},
      {"orphan sweep at first write", test_orphan_sweep},
      {"orphan list: dry, every kind, freed", test_orphan_list},
      {"dataset limit", test_max_datasets},
      {"pins outlive store close", test_pins_outlive_close},
      {"threads see whole versions", test_threads_see_whole_versions},
      {"reclaim_wait blocks until unpinned", test_reclaim_wait},
      {"handles share the control file; no mapping leaks",
       test_shared_control_and_mappings},
      {"detached publish sealed and adopted", test_detached_publish_adopted},
      {"import a segment file from another store", test_import_a_segment_file},
      {"drop: busy while pinned, --force, numbers never reused", test_drop},
      {"failed first publish leaves no dataset", test_failed_first_publish},
      {"new dataset names follow the rule", test_dataset_names},
      {NULL, NULL}};
  return tu_run("store", tests);
}
