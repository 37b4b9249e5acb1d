/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A reader under load for the follow tests: pins DATASET's current version
 * again and again until its standard input reaches end of file, and checks
 * that what it maps is whole and the version it claims to be. The tables of
 * tests/sync are int64 with cell (r, c) = W * 10^9 + r * ncols + c, where W
 * is the version number the primary published them under for the rows that
 * version changed (row 0 among them), else 1; every read checks the first,
 * the last and 64 rows spread in between, in every column.
 *
 * usage: reader_load STORE DATASET
 * prints "ready" once it has pinned, then at the end
 * "reads N wrong M versions K last V" (exit 1 when M > 0), V being what its
 * last read, taken after its input ended, saw.
 */
#include <libsnap/libsnap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int check(const snap_snapshot *s) {
  uint64_t v = snap_snapshot_version(s), n = snap_snapshot_nrows(s);
  uint32_t nc = snap_snapshot_ncols(s);
  for (uint32_t c = 0; c < nc; c++) {
    const struct snap_column *col = snap_snapshot_column(s, c);
    if (col->type != SNAP_INT64) return 1;
    const int64_t *x = col->values;
    for (uint64_t i = 0; i < 66 && n; i++) {
      uint64_t r = i == 65 ? n - 1 : i * (n / 65);
      int64_t rest = x[r] - (int64_t)(r * nc + c), w = rest / 1000000000;
      if (rest % 1000000000 || (r == 0 ? w != (int64_t)v : w != (int64_t)v && w != 1))
        return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: reader_load STORE DATASET\n");
    return 2;
  }
  struct snap_error err = {0};
  snap_store *store;
  if (snap_store_open(argv[1], SNAP_RDONLY, &store, &err)) {
    fprintf(stderr, "reader_load: %s\n", err.message);
    return 1;
  }
  uint64_t reads = 0, wrong = 0, versions = 0, last = 0;
  int said = 0;
  for (int end = 0; !end;) {
    /* end of input: one more read, which must see what is current by then */
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    if (poll(&p, 1, 0) > 0) {
      char b[64];
      if (read(STDIN_FILENO, b, sizeof b) <= 0) end = 1;
    }
    snap_snapshot *s;
    if (snap_pin(store, argv[2], &s, &err)) {
      fprintf(stderr, "reader_load: %s\n", err.message);
      wrong++;
      break;
    }
    reads++;
    wrong += (uint64_t)check(s);
    if (snap_snapshot_version(s) != last) versions++;
    last = snap_snapshot_version(s);
    snap_unpin(s);
    if (!said) {
      printf("ready\n");
      fflush(stdout);
      said = 1;
    }
    usleep(1000); /* a load, not a spin: three followers share two cores here */
  }
  printf("reads %llu wrong %llu versions %llu last %llu\n", (unsigned long long)reads,
         (unsigned long long)wrong, (unsigned long long)versions,
         (unsigned long long)last);
  snap_store_close(store);
  return wrong ? 1 : 0;
}
