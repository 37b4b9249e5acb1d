/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer targets: the CSV and .npy ingest parsers (ingest/src/, also
 * used by writerd), publishing into a store on /dev/shm. A malformed input must
 * be refused with an error and publish nothing; an accepted one must give a
 * version whose every column reads back. CSV is also checked differentially: the
 * guessing, chunked paths against checking every value on one thread.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <snap_ingest/compare.h>
#include <snap_ingest/ingest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FUZZ_FORMAT
#error define FUZZ_FORMAT as INGEST_CSV or INGEST_NPY
#endif

static snap_store *store;
static char dir[4096];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

static void cleanup(void) {
  snap_store_close(store);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* libFuzzer may end without running atexit handlers: scripts/fuzz.sh points
   * SNAP_FUZZ_DIR at a directory it removes itself */
  const char *base = getenv("SNAP_FUZZ_DIR");
  snprintf(dir, sizeof dir, "%s/snapfuzz-XXXXXX", base ? base : "/dev/shm");
  if (!mkdtemp(dir)) abort();
  atexit(cleanup);
  struct snap_error err;
  if (snap_store_open(dir, SNAP_CREATE, &store, &err)) {
    fprintf(stderr, "%s\n", err.message);
    abort();
  }
  snap_store_set_keep(store, NULL, 1, NULL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* CSV: types guessed from the first 2 rows (32 for inputs of odd size, so that
   * categories can be guessed too), on 2 threads, so that small inputs take the
   * chunked, guessing and quick paths; the reference checks every value on one
   * thread. Both must give the same table, or the same message. */
  struct ingest_options opt = {.format = FUZZ_FORMAT,
                               .display_name = "fuzz",
                               .threads = 2,
                               .csv_sample_rows = size % 2 ? 32u : 2u};
  struct ingest_result res;
  struct snap_error err = {0};
  uint64_t before = 0, after = 0;
  snap_current_version(store, "f", &before, NULL);
  int rc = ingest_buffer(store, "f", data, size, &opt, &res, &err);
  snap_current_version(store, "f", &after, NULL);
  if (rc) {
    if (after != before) abort(); /* refused input must publish nothing */
    if (!err.message[0]) abort(); /* and must say why */
  } else {
    snap_snapshot *s;
    if (snap_pin(store, "f", &s, NULL) || snap_snapshot_version(s) != res.version ||
        snap_snapshot_nrows(s) != res.nrows || snap_snapshot_verify(s, NULL))
      abort();
    snap_unpin(s);
  }
  if (FUZZ_FORMAT != INGEST_CSV) return 0;
  struct ingest_options full = {
      .format = INGEST_CSV, .display_name = "fuzz", .threads = 1, .csv_full_check = 1};
  struct snap_error err2 = {0};
  int rc2 = ingest_buffer(store, "g", data, size, &full, NULL, &err2);
  if ((rc != 0) != (rc2 != 0)) abort();
  if (rc) {
    if (rc != rc2 || strcmp(err.message, err2.message)) {
      fprintf(stderr, "messages differ:\n  %s\n  %s\n", err.message, err2.message);
      abort();
    }
    return 0;
  }
  snap_snapshot *a, *b;
  if (snap_pin(store, "f", &a, NULL) || snap_pin(store, "g", &b, NULL)) abort();
  const char *why = ingest_tables_differ(a, b);
  if (why) {
    fprintf(stderr, "tables differ: %s\n", why);
    abort();
  }
  snap_unpin(a);
  snap_unpin(b);
  return 0;
}
