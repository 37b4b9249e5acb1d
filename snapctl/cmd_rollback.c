/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl rollback: make a retained version current again. */
#define _GNU_SOURCE
#include <getopt.h>

#include "snapctl.h"

static int run(struct ctl *c, int argc, char **argv) {
  int opt, code;
  while ((opt = ctl_getopt(&ctl_cmd_rollback, c, argc, argv, "", NULL, &code)) != -1)
    if (opt == -2) return code;
  if (argc - optind < 2) return ctl_usage(c, "needs DATASET and VERSION");
  if (argc - optind > 2)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 2]);
  const char *dataset = argv[optind];
  uint64_t version;
  if (ctl_parse_range(c, "VERSION", argv[optind + 1], 1, UINT64_MAX, &version))
    return CTL_USAGE;
  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  uint64_t before = 0;
  rc = snap_current_version(store, dataset, &before, &err);
  if (rc == SNAP_ENOTFOUND) {
    rc = ctl_fail(c, "%s: no such dataset", dataset);
  } else if (rc) {
    rc = ctl_fail_snap(c, dataset, rc, &err);
  } else if ((rc = snap_rollback(store, dataset, version, &err))) {
    char what[SNAP_DATASET_NAME_MAX + 32];
    snprintf(what, sizeof what, "%s@%llu", dataset, (unsigned long long)version);
    rc = ctl_fail_snap(c, what, rc, &err);
  } else {
    printf("%s: current version is now %llu (was %llu)\n", dataset,
           (unsigned long long)version, (unsigned long long)before);
  }
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_rollback = {
    "rollback", "make a retained version current",
    "usage: snapctl [--store PATH] rollback DATASET VERSION\n"
    "\n"
    "Make VERSION (current or retained, see 'snapctl list') the current version of\n"
    "DATASET; the old current version becomes retained. Readers see the change at\n"
    "their next pin. A draining version cannot be made current.\n",
    run};
