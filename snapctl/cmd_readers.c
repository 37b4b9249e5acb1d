/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl readers: which processes pin which versions.
 * Pins are flock(LOCK_SH) locks on the segment files; snap_version_holders() reads
 * them from /proc/locks. The library does not record when a pin was taken, so
 * "since" is the start time of the pinning process (a lower bound).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

struct pin_row {
  pid_t pid;
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version;
  enum snap_state state;
};

struct rows {
  struct pin_row *r;
  size_t n, cap;
};

static int rows_add(struct rows *l, const struct pin_row *r) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 32;
    struct pin_row *p = realloc(l->r, cap * sizeof *p);
    if (!p) return -1;
    l->r = p;
    l->cap = cap;
  }
  l->r[l->n++] = *r;
  return 0;
}

static int by_pid(const void *a, const void *b) {
  const struct pin_row *x = a, *y = b;
  if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
  int c = strcmp(x->dataset, y->dataset);
  if (c) return c;
  return (x->version > y->version) - (x->version < y->version);
}

/* Every (pid, version) pin in the store. */
static int collect(struct ctl *c, snap_store *store, struct rows *out) {
  struct snap_error err = {0};
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  int rc = snap_dataset_list(store, &ds, &nds, &err);
  if (rc) return ctl_fail_snap(c, snap_store_path(store), rc, &err);
  int status = CTL_OK;
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    if ((rc = snap_version_list(store, ds[i].name, &v, &nv, &err))) {
      if (rc != SNAP_ENOTFOUND) status = ctl_fail_snap(c, ds[i].name, rc, &err);
      continue;
    }
    for (size_t k = 0; k < nv; k++) {
      if (v[k].holders == 0) continue;
      pid_t pids[256];
      size_t n = 0;
      rc = snap_version_holders(store, ds[i].name, v[k].version, pids, 256, &n, &err);
      if (rc == SNAP_ENOTFOUND) continue; /* reclaimed meanwhile */
      if (rc) {
        status = ctl_fail_snap(c, ds[i].name, rc, &err);
        continue;
      }
      if (n > 256) n = 256;
      for (size_t j = 0; j < n; j++) {
        struct pin_row r = {.pid = pids[j], .version = v[k].version, .state = v[k].state};
        snprintf(r.dataset, sizeof r.dataset, "%s", ds[i].name);
        if (rows_add(out, &r)) status = ctl_fail(c, "out of memory");
      }
    }
    snap_free(v);
  }
  snap_free(ds);
  if (out->n) qsort(out->r, out->n, sizeof *out->r, by_pid);
  return status;
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
  int opt, code, json = 0;
  while ((opt = ctl_getopt(&ctl_cmd_readers, c, argc, argv, "", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'j') json = 1;
  }
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
  snap_store *store;
  int rc = ctl_open(c, SNAP_RDONLY, &store);
  if (rc) return rc;
  struct rows l = {0};
  rc = collect(c, store, &l);
  if (json) {
    printf("{\"store\": ");
    ctl_json_str(stdout, snap_store_path(store));
    printf(", \"readers\": [");
  }
  struct ctl_table t;
  ctl_table_init(&t, 6, "rlllrl");
  const char *hdr[] = {"PID", "SINCE", "DATASET", "STATE", "VERSION", "COMMAND"};
  for (int i = 0; i < 6; i++) ctl_table_cell(&t, "%s", hdr[i]);
  for (size_t i = 0; i < l.n; i++) {
    const struct pin_row *r = &l.r[i];
    char cmd[512], when[64];
    uint64_t start = ctl_proc_start_ns(r->pid);
    ctl_proc_cmdline(cmd, sizeof cmd, r->pid);
    if (json) {
      printf("%s\n  {\"pid\": %d, \"command\": ", i ? "," : "", (int)r->pid);
      ctl_json_str(stdout, cmd);
      printf(", \"dataset\": ");
      ctl_json_str(stdout, r->dataset);
      printf(", \"version\": %llu, \"state\": \"%s\", \"since\": ",
             (unsigned long long)r->version, snap_state_name(r->state));
      if (start)
        printf("\"%s\", \"since_ns\": %llu}",
               ctl_time_iso(when, sizeof when, (int64_t)start),
               (unsigned long long)start);
      else
        printf("null, \"since_ns\": null}");
    } else {
      ctl_table_cell(&t, "%d", (int)r->pid);
      ctl_table_cell(&t, "%s", ctl_time_local(when, sizeof when, start));
      ctl_table_cell(&t, "%s", r->dataset);
      ctl_table_cell(&t, "%s", snap_state_name(r->state));
      ctl_table_cell(&t, "%llu", (unsigned long long)r->version);
      ctl_table_cell(&t, "%s", cmd);
    }
  }
  if (json)
    printf("%s]}\n", l.n ? "\n" : "");
  else if (l.n)
    ctl_table_print(&t, stdout);
  else
    printf("no process pins a version\n");
  ctl_table_free(&t);
  free(l.r);
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_readers = {
    "readers", "processes that pin versions",
    "usage: snapctl [--store PATH] readers [--json]\n"
    "\n"
    "List the processes that pin a version now: pid, since when (the process's start\n"
    "time: pins carry no time of their own), dataset, state, version and command line.\n"
    "Pins are kernel file locks, so a crashed reader never shows up.\n"
    "\n"
    "  --json   {\"store\", \"readers\": [{\"pid\", \"command\", \"dataset\", "
    "\"version\",\n"
    "           \"state\", \"since\", \"since_ns\"}]}\n",
    run};
