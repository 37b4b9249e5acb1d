/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl drop: remove a dataset and all its versions. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>

#include "snapctl.h"

/* After SNAP_EBUSY: every process pinning a version, as 'snapctl readers' shows
 * (on stdout: the error itself is the one line on stderr). */
static void print_holders(snap_store *store, const char *dataset) {
  struct snap_version_info *v;
  size_t nv;
  if (snap_version_list(store, dataset, &v, &nv, NULL)) return;
  for (size_t k = 0; k < nv; k++) {
    pid_t pids[64];
    size_t n = 0;
    if (v[k].holders == 0 ||
        snap_version_holders(store, dataset, v[k].version, pids, 64, &n, NULL))
      continue;
    for (size_t j = 0; j < n && j < 64; j++) {
      char cmd[256];
      printf("pid %d pins %s@%llu (%s): %s\n", (int)pids[j], dataset,
             (unsigned long long)v[k].version, snap_state_name(v[k].state),
             ctl_proc_cmdline(cmd, sizeof cmd, pids[j]));
    }
  }
  snap_free(v);
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"force", no_argument, NULL, 'f'}, {0}};
  int opt, code;
  unsigned flags = 0;
  while ((opt = ctl_getopt(&ctl_cmd_drop, c, argc, argv, "f", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'f') flags |= SNAP_DROP_FORCE;
  }
  if (optind >= argc) return ctl_usage(c, "needs DATASET");
  if (argc - optind > 1)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  const char *dataset = argv[optind];
  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  rc = snap_dataset_drop(store, dataset, flags, &err);
  if (rc == SNAP_ENOTFOUND) {
    rc = ctl_fail(c, "%s: no such dataset", dataset);
  } else if (rc) {
    int status = rc;
    rc = ctl_fail_snap(c, dataset, rc, &err);
    if (status == SNAP_EBUSY) print_holders(store, dataset);
  } else {
    printf("%s: dropped%s\n", dataset,
           flags & SNAP_DROP_FORCE ? " (pinned versions drain as their readers finish)"
                                   : "");
  }
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_drop = {
    "drop", "remove a dataset and all its versions",
    "usage: snapctl [--store PATH] drop [--force] DATASET\n"
    "\n"
    "Remove DATASET: its record, every version and every segment file. Refused\n"
    "(exit 1, listing the pinning processes as 'snapctl readers' does) while any\n"
    "process pins one of its versions, or while a publish of it is in progress.\n"
    "The dataset no longer counts against --max-datasets. A dataset created again\n"
    "under the same name never reuses a version number of the dropped one.\n"
    "\n"
    "  -f, --force   drop even while versions are pinned: their readers keep\n"
    "                reading, and the memory returns when the last one unpins\n",
    run};
