/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl compact: republish the current version holding all its data itself. */
#define _GNU_SOURCE
#include <getopt.h>

#include "snapctl.h"

static int run(struct ctl *c, int argc, char **argv) {
  int opt, code;
  while ((opt = ctl_getopt(&ctl_cmd_compact, c, argc, argv, "", NULL, &code)) != -1)
    if (opt == -2) return code;
  if (argc - optind < 1) return ctl_usage(c, "needs DATASET");
  if (argc - optind > 1)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  const char *dataset = argv[optind];
  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  uint64_t before = 0, after = 0;
  rc = snap_current_version(store, dataset, &before, &err);
  if (rc == SNAP_ENOTFOUND) {
    rc = ctl_fail(c, "%s: no such dataset", dataset);
  } else if (rc) {
    rc = ctl_fail_snap(c, dataset, rc, &err);
  } else if ((rc = snap_compact(store, dataset, &after, &err))) {
    rc = ctl_fail_snap(c, dataset, rc, &err);
  } else {
    printf("%s: version %llu holds all its data (compacted from %llu)\n", dataset,
           (unsigned long long)after, (unsigned long long)before);
  }
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_compact = {
    "compact", "republish the current version unshared",
    "usage: snapctl [--store PATH] compact DATASET\n"
    "\n"
    "Publish DATASET's current version again as a new version that holds all its\n"
    "data itself instead of sharing chunks with earlier versions' files: readers\n"
    "then map it in one piece, and the files it shared from can be reclaimed once\n"
    "retention and pins let them go. Costs one full copy of the table. A publish\n"
    "compacts by itself when a version would map more than 64 runs of shared chunks\n"
    "(the shortest runs are copied) or share from more than 64 files.\n",
    run};
