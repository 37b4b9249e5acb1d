/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl verify: recompute a version's data checksum and check its categories. */
#define _GNU_SOURCE
#include <getopt.h>
#include <time.h>

#include "snapctl.h"

static int run(struct ctl *c, int argc, char **argv) {
  int opt, code;
  while ((opt = ctl_getopt(&ctl_cmd_verify, c, argc, argv, "", NULL, &code)) != -1)
    if (opt == -2) return code;
  if (optind >= argc) return ctl_usage(c, "missing DATASET[@VERSION]");
  if (optind + 1 < argc)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  snap_store *store;
  snap_snapshot *snap;
  int rc = ctl_pin_target(c, argv[optind], &store, &snap);
  if (rc) return rc;
  struct snap_error err = {0};
  {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int vrc = snap_snapshot_verify(snap, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs =
        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    size_t len = 0;
    snap_snapshot_segment(snap, &len);
    char what[SNAP_DATASET_NAME_MAX + 32], b[32];
    snprintf(what, sizeof what, "%s@%llu", snap_snapshot_dataset(snap),
             (unsigned long long)snap_snapshot_version(snap));
    if (vrc) {
      rc = ctl_fail_snap(c, what, vrc, &err);
    } else {
      printf("%s: ok (%s checked in %.3f s)\n", what, ctl_bytes(b, sizeof b, len), secs);
    }
  }
  snap_unpin(snap);
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_verify = {
    "verify", "re-check a version's data checksum",
    "usage: snapctl [--store PATH] verify DATASET[@VERSION]\n"
    "\n"
    "Read every byte of a version (default: the current one), recompute its data\n"
    "checksum (XXH3-128) and check every category code against its dictionary.\n"
    "Exit status 1 when the version is damaged.\n",
    run};
