/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define _GNU_SOURCE
#include "test_util.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_store_dir(const char *tag) {
  const char *base = getenv("SNAP_TEST_DIR");
  char *path;
  if (asprintf(&path, "%s/snaptest-%s-XXXXXX", base ? base : "/dev/shm", tag) < 0)
    abort();
  if (!mkdtemp(path)) abort();
  return path;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

void tu_store_remove(const char *dir) {
  if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

snap_store *tu_store_create(const char *tag, char **dir) {
  *dir = tu_store_dir(tag);
  snap_store *s = NULL;
  struct snap_error err;
  if (snap_store_open(*dir, SNAP_CREATE, &s, &err))
    fprintf(stderr, "tu_store_create %s: %s\n", *dir, err.message);
  return s;
}

void tu_store_destroy(snap_store *s, char *dir) {
  snap_store_close(s);
  tu_store_remove(dir);
  free(dir);
}

int tu_segment_open_rw(const char *dir, const char *dataset, uint64_t version) {
  char path[4096];
  snprintf(path, sizeof path, "%s/segments/%s/%llu.seg", dir, dataset,
           (unsigned long long)version);
  chmod(path, 0644);
  return open(path, O_RDWR);
}

static int files;
static int count_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)p;
  (void)st;
  (void)ftw;
  if (flag == FTW_F) files++;
  return 0;
}

int tu_count_files(const char *dir) {
  files = 0;
  nftw(dir, count_one, 16, FTW_PHYS);
  return files;
}

void tu_f64_fields(struct snap_field *f, char (*names)[16], uint32_t ncols) {
  for (uint32_t c = 0; c < ncols; c++) {
    snprintf(names[c], 16, "c%u", c);
    f[c] = (struct snap_field){.name = names[c], .type = SNAP_FLOAT64};
  }
}

int64_t tu_held(const char *dir, const char *dataset, uint64_t version) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/segments/%s/%llu.seg", dir, dataset,
           (unsigned long long)version);
  return stat(path, &st) ? -1 : (int64_t)st.st_blocks * 512;
}

int tu_publish_f64(snap_store *s, const char *dataset, uint64_t nrows, uint32_t ncols,
                   uint64_t seed, uint64_t *version) {
  struct snap_field *f = calloc(ncols ? ncols : 1, sizeof *f);
  char(*names)[16] = calloc(ncols ? ncols : 1, 16);
  tu_f64_fields(f, names, ncols);
  struct snap_schema schema = {nrows, ncols, f, &seed, sizeof seed};
  snap_publish *p;
  struct snap_error err = {0};
  int rc = snap_publish_begin(s, dataset, &schema, &p, &err);
  if (!rc) {
    double *m = ncols ? snap_publish_block(p, 0) : NULL;
    for (uint32_t c = 0; c < ncols && m; c++)
      for (uint64_t r = 0; r < nrows; r++) m[c * nrows + r] = tu_cell(seed, r, c);
    rc = snap_publish_commit(p, version, &err);
  }
  if (rc) fprintf(stderr, "tu_publish_f64: %s\n", err.message);
  free(f);
  free(names);
  return rc;
}

int tu_edit_f64(snap_store *s, const char *dataset, uint32_t col, uint64_t a, uint64_t b,
                double value, uint64_t *version) {
  snap_edit *ed;
  struct snap_error err = {0};
  int rc = snap_edit_begin(s, dataset, &ed, &err);
  if (!rc) {
    double *v = (double *)snap_edit_column(ed, col)->values;
    for (uint64_t r = a; r < b; r++) v[r] = value;
    rc = snap_edit_commit(ed, version, &err);
    snap_edit_free(ed);
  }
  if (rc) fprintf(stderr, "tu_edit_f64: %s\n", err.message);
  return rc;
}

int tu_same_version(snap_store *primary, snap_store *follower, const char *dataset,
                    uint64_t v) {
  snap_snapshot *a = NULL, *b = NULL;
  int same = !snap_pin_version(primary, dataset, v, &a, NULL) &&
             !snap_pin(follower, dataset, &b, NULL) && snap_snapshot_version(b) == v &&
             snap_snapshot_nrows(a) == snap_snapshot_nrows(b) &&
             snap_snapshot_ncols(a) == snap_snapshot_ncols(b);
  for (uint32_t c = 0; same && c < snap_snapshot_ncols(a); c++) {
    const struct snap_column *x = snap_snapshot_column(a, c),
                             *y = snap_snapshot_column(b, c);
    same =
        x->type == y->type &&
        !memcmp(x->values, y->values, snap_snapshot_nrows(a) * snap_type_size(x->type));
  }
  if (same) same = !snap_snapshot_verify(b, NULL);
  if (!same)
    fprintf(stderr, "tu_same_version: %s version %llu differs\n", dataset,
            (unsigned long long)v);
  snap_unpin(a);
  snap_unpin(b);
  return same ? 0 : -1;
}

int64_t tu_check_f64(const snap_snapshot *snap) {
  size_t len;
  const void *meta = snap_snapshot_metadata(snap, &len);
  uint64_t seed;
  if (len != sizeof seed) return -1;
  memcpy(&seed, meta, sizeof seed);
  uint64_t nrows = snap_snapshot_nrows(snap);
  for (uint32_t c = 0; c < snap_snapshot_ncols(snap); c++) {
    const double *v = snap_snapshot_column(snap, c)->values;
    for (uint64_t r = 0; r < nrows; r++)
      if (v[r] != tu_cell(seed, r, c)) return -1;
  }
  return (int64_t)seed;
}

int tu_run(const char *suite, const tu_test *tests) {
  if (CU_initialize_registry() != CUE_SUCCESS) return 2;
  CU_pSuite s = CU_add_suite(suite, NULL, NULL);
  for (const tu_test *t = tests; t->name; t++) CU_add_test(s, t->name, t->fn);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  /* CU_get_error() is 0 even when assertions fail: count failure records. */
  unsigned failed = CU_get_number_of_failure_records();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
