/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A reader process for the CLI tests: pins a version, reports it on stdout, and
 * holds the pin until its standard input reaches end of file (the test closes the
 * pipe), so tests synchronise on pipes, never on sleeps.
 *
 * usage: pin_helper STORE DATASET [VERSION]
 * prints "pinned VERSION NROWS SUM" where SUM adds column 0 (int64 or float64).
 */
#include <libsnap/libsnap.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pin_helper STORE DATASET [VERSION]\n");
    return 2;
  }
  struct snap_error err = {0};
  snap_store *store;
  if (snap_store_open(argv[1], SNAP_RDONLY, &store, &err)) {
    fprintf(stderr, "pin_helper: %s\n", err.message);
    return 1;
  }
  snap_snapshot *snap;
  int rc = argc > 3 ? snap_pin_version(store, argv[2], strtoull(argv[3], NULL, 10), &snap,
                                       &err)
                    : snap_pin(store, argv[2], &snap, &err);
  if (rc) {
    fprintf(stderr, "pin_helper: %s\n", err.message);
    snap_store_close(store);
    return 1;
  }
  double sum = 0;
  const struct snap_column *c =
      snap_snapshot_ncols(snap) ? snap_snapshot_column(snap, 0) : NULL;
  for (uint64_t r = 0; c && r < snap_snapshot_nrows(snap); r++) {
    if (c->type == SNAP_INT64) sum += (double)((const int64_t *)c->values)[r];
    if (c->type == SNAP_FLOAT64) sum += ((const double *)c->values)[r];
  }
  printf("pinned %llu %llu %.17g\n", (unsigned long long)snap_snapshot_version(snap),
         (unsigned long long)snap_snapshot_nrows(snap), sum);
  fflush(stdout);
  char buf[256];
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  snap_unpin(snap);
  snap_store_close(store);
  return 0;
}
