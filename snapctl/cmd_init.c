/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl init: create a store (or leave an existing one alone). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapctl.h"

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"keep", required_argument, NULL, 'k'},
                                           {"max-datasets", required_argument, NULL, 'm'},
                                           {0}};
  uint64_t keep = 0, max = 0;
  int opt, code, set_max = 0;
  while ((opt = ctl_getopt(&ctl_cmd_init, c, argc, argv, "k:", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'k' && (ctl_parse_u64(optarg, &keep) || keep < 1 || keep > UINT32_MAX))
      return ctl_usage(c, "--keep: '%s' is not a count >= 1", optarg);
    if (opt == 'm') {
      if (ctl_parse_u64(optarg, &max) || max > UINT32_MAX)
        return ctl_usage(c, "--max-datasets: '%s' is not a count (0: no limit)", optarg);
      set_max = 1;
    }
  }
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);

  /* Tell "created" from "already there" by the control file's presence. */
  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  char control[4096];
  snprintf(control, sizeof control, "%s/control.mdb", path);
  struct stat st;
  /* an empty file (init killed before LMDB wrote it) is a new store; a lost or
   * damaged one next to segments is refused by the library, naming the repair
   * (snapctl doctor --rebuild) */
  int existed = stat(control, &st) == 0 && st.st_size > 0;

  snap_store *store;
  int rc = ctl_open(c, SNAP_CREATE, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  if (keep && (rc = snap_store_set_keep(store, NULL, (uint32_t)keep, &err))) {
    snap_store_close(store);
    return ctl_fail_snap(c, "--keep", rc, &err);
  }
  if (set_max && (rc = snap_store_set_max_datasets(store, (uint32_t)max, &err))) {
    snap_store_close(store);
    return ctl_fail_snap(c, "--max-datasets", rc, &err);
  }
  printf("%s store %s", existed ? "existing" : "created", snap_store_path(store));
  if (keep) printf(" (new datasets keep %llu versions)", (unsigned long long)keep);
  if (set_max && max) printf(" (at most %llu datasets)", (unsigned long long)max);
  if (set_max && !max) printf(" (no dataset limit)");
  printf("\n");
  snap_store_close(store);
  return CTL_OK;
}

const struct ctl_command ctl_cmd_init = {
    "init", "create a store",
    "usage: snapctl [--store PATH] init [--keep N] [--max-datasets N]\n"
    "\n"
    "Create the store directory and its control file (parents included). An existing\n"
    "store is left as it is (its settings are updated when options are given).\n"
    "\n"
    "  -k, --keep N          datasets created from now on keep the current version\n"
    "                        plus N-1 others for rollback\n"
    "      --max-datasets N  refuse to create more than N datasets (a publish of a\n"
    "                        new one fails, naming the limit); 0: no limit (default)\n",
    run};
