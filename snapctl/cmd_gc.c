/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl gc: reclaim every draining version no process pins; report the rest
 * and who holds them.
 *
 * --dry-run opens the store read-only and works from snap_version_list(): the
 * library's SNAP_GC_DRY_RUN needs a writable handle, and a writable handle sweeps
 * orphan files before its first write operation, which a dry run must not do.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

struct item {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version, bytes;
  int freed;
};

struct items {
  struct item *v;
  size_t n, cap;
  int oom;
};

static void items_add(struct items *l, const char *dataset, uint64_t version,
                      uint64_t bytes, int freed) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    struct item *p = realloc(l->v, cap * sizeof *p);
    if (!p) {
      l->oom = 1;
      return;
    }
    l->v = p;
    l->cap = cap;
  }
  struct item *it = &l->v[l->n++];
  snprintf(it->dataset, sizeof it->dataset, "%s", dataset);
  it->version = version;
  it->bytes = bytes;
  it->freed = freed;
}

static void on_item(const struct snap_gc_item *item, void *arg) {
  items_add(arg, item->dataset, item->version, item->bytes, item->freed);
}

/* Draining versions from the records, without touching anything. */
static int dry_collect(struct ctl *c, snap_store *store, const char *only,
                       struct items *l) {
  struct snap_error err = {0};
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  int rc = snap_dataset_list(store, &ds, &nds, &err);
  if (rc) return ctl_fail_snap(c, snap_store_path(store), rc, &err);
  int status = CTL_OK;
  for (size_t i = 0; i < nds; i++) {
    if (only && strcmp(only, ds[i].name)) continue;
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    if ((rc = snap_version_list(store, ds[i].name, &v, &nv, &err))) {
      status = ctl_fail_snap(c, ds[i].name, rc, &err);
      continue;
    }
    for (size_t k = 0; k < nv; k++)
      if (v[k].state == SNAP_STATE_DRAINING)
        items_add(l, ds[i].name, v[k].version, v[k].bytes, v[k].holders == 0);
    snap_free(v);
  }
  snap_free(ds);
  return status;
}

static void print_holders(snap_store *store, const struct item *it) {
  pid_t pids[64];
  size_t n = 0;
  if (snap_version_holders(store, it->dataset, it->version, pids, 64, &n, NULL) || !n) {
    printf("\n");
    return;
  }
  printf("  held by");
  for (size_t i = 0; i < n && i < 64; i++) {
    char cmd[128];
    printf("%s %d (%s)", i ? "," : "", (int)pids[i],
           ctl_proc_cmdline(cmd, sizeof cmd, pids[i]));
  }
  if (n > 64) printf(", ... %zu in all", n);
  printf("\n");
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"dry-run", no_argument, NULL, 'n'}, {0}};
  int opt, code, dry = 0;
  while ((opt = ctl_getopt(&ctl_cmd_gc, c, argc, argv, "n", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'n') dry = 1;
  }
  const char *only = optind < argc ? argv[optind++] : NULL;
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
  snap_store *store;
  int rc = ctl_open(c, dry ? SNAP_RDONLY : 0, &store);
  if (rc) return rc;
  struct items l = {0};
  struct snap_error err = {0};
  if (dry) {
    rc = dry_collect(c, store, only, &l);
  } else if ((rc = snap_gc(store, only, 0, on_item, &l, NULL, &err))) {
    rc = ctl_fail_snap(c, only ? only : snap_store_path(store), rc, &err);
  }
  if (!rc && l.oom) rc = ctl_fail(c, "out of memory");
  uint64_t freed = 0, freed_bytes = 0, draining = 0, draining_bytes = 0;
  for (size_t i = 0; !rc && i < l.n; i++) {
    const struct item *it = &l.v[i];
    char b[32];
    const char *what = it->freed == 2   ? (dry ? "would lend" : "lending")
                       : it->freed == 1 ? (dry ? "would free" : "freed")
                                        : "draining";
    printf("%-12s %s@%llu  %s", what, it->dataset, (unsigned long long)it->version,
           ctl_bytes(b, sizeof b, it->bytes));
    if (it->freed == 2) {
      printf(" freed; the chunks later versions share stay\n");
      freed_bytes += it->bytes;
    } else if (it->freed) {
      freed++, freed_bytes += it->bytes;
      printf("\n");
    } else {
      draining++, draining_bytes += it->bytes;
      print_holders(store, it);
    }
  }
  if (!rc) {
    char b1[32], b2[32];
    printf("%s %llu version%s (%s); %llu version%s (%s) still draining\n",
           dry ? "would free" : "freed", (unsigned long long)freed, freed == 1 ? "" : "s",
           ctl_bytes(b1, sizeof b1, freed_bytes), (unsigned long long)draining,
           draining == 1 ? "" : "s", ctl_bytes(b2, sizeof b2, draining_bytes));
  }
  free(l.v);
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_gc = {
    "gc", "reclaim versions nobody pins",
    "usage: snapctl [--store PATH] gc [--dry-run] [DATASET]\n"
    "\n"
    "Reclaim every draining version (of DATASET, or of all datasets) that no process\n"
    "pins, and remove orphan segment files left by crashed publishers. Prints what was\n"
    "freed, and each version still draining with the processes that hold it. A\n"
    "retired version whose chunks later versions share keeps only those and becomes\n"
    "lending (printed with the bytes freed); it goes once nothing shares them.\n"
    "\n"
    "  -n, --dry-run   report what would be freed; change nothing\n",
    run};
