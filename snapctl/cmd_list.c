/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl list: datasets and their versions, with totals of memory in use. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

struct totals {
  uint64_t versions, bytes, reclaimable, pinned_draining;
};

static void add_totals(struct totals *t, const struct snap_version_info *v) {
  t->versions++;
  t->bytes += v->bytes;
  if (v->state == SNAP_STATE_DRAINING) {
    if (v->holders == 0)
      t->reclaimable += v->bytes;
    else
      t->pinned_draining += v->bytes;
  }
}

/* What a version maps from earlier versions' files (format 2). */
static uint64_t shared(const struct snap_version_info *v) { return v->shared_bytes; }

/* The sync state of @p name, if writerd keeps one. */
static const struct ctl_sync_row *sync_row(const struct ctl_sync_row *rows, size_t n,
                                           const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(rows[i].dataset, name)) return &rows[i];
  return NULL;
}

static void json_sync(const struct ctl_sync_row *r, const char *mode,
                      const char *remote) {
  if (!r) return;
  printf(", \"sync\": {\"mode\": ");
  ctl_json_str(stdout, mode);
  printf(", \"remote\": ");
  ctl_json_str(stdout, remote);
  uint64_t lag = r->announced > r->local ? r->announced - r->local : 0;
  printf(
      ", \"announced\": %llu, \"local\": %llu, \"pushed\": %llu,"
      " \"lag_versions\": %llu, \"lag_seconds\": %.3f, \"bytes\": %llu,"
      " \"last_error\": ",
      (unsigned long long)r->announced, (unsigned long long)r->local,
      (unsigned long long)r->pushed,
      (unsigned long long)(!strcmp(mode, "follow") ? lag : 0),
      !strcmp(mode, "follow") ? ctl_sync_lag_seconds(r) : 0.0,
      (unsigned long long)r->bytes);
  if (r->error[0])
    ctl_json_str(stdout, r->error);
  else
    printf("null");
  printf("}");
}

static void json_dataset(const struct snap_dataset_info *d,
                         const struct snap_version_info *v, size_t nv, int first,
                         const struct ctl_sync_row *sr, const char *mode,
                         const char *remote) {
  char when[64];
  printf("%s\n    {\"name\": ", first ? "" : ",");
  ctl_json_str(stdout, d->name);
  printf(
      ", \"current\": %llu, \"next_version\": %llu, \"keep\": %u, \"bytes\": %llu,"
      " \"followed\": %s",
      (unsigned long long)d->current, (unsigned long long)d->next_version, d->keep,
      (unsigned long long)d->bytes, d->followed ? "true" : "false");
  json_sync(sr, mode, remote);
  printf(", \"versions\": [");
  for (size_t i = 0; i < nv; i++) {
    printf(
        "%s\n      {\"version\": %llu, \"state\": \"%s\", \"rows\": %llu, \"cols\": %u,"
        " \"bytes\": %llu, \"shared_bytes\": %llu, \"size\": %llu, \"created\": \"%s\","
        " \"created_ns\": %llu, \"pins\": ",
        i ? "," : "", (unsigned long long)v[i].version, snap_state_name(v[i].state),
        (unsigned long long)v[i].nrows, v[i].ncols, (unsigned long long)v[i].bytes,
        (unsigned long long)shared(&v[i]), (unsigned long long)v[i].size,
        ctl_time_iso(when, sizeof when, (int64_t)v[i].created_ns),
        (unsigned long long)v[i].created_ns);
    if (v[i].holders < 0)
      printf("null}");
    else
      printf("%d}", v[i].holders);
  }
  printf("%s]}", nv ? "\n    " : "");
}

/* The table of followed and pushed datasets (writerd's sync.state). */
static void print_sync(const struct snap_dataset_info *ds, size_t nds, const char *only,
                       const struct ctl_sync_row *rows, size_t n, const char *mode,
                       const char *remote) {
  struct ctl_table t;
  int follow = !strcmp(mode, "follow");
  ctl_table_init(&t, 7, "lrrrrrl");
  const char *hdr[] = {"DATASET", follow ? "ANNOUNCED" : "PUSHED", "LOCAL",     "LAG",
                       "LAG_S",   follow ? "FETCHED" : "SENT",     "LAST ERROR"};
  for (size_t i = 0; i < 7; i++) ctl_table_cell(&t, "%s", hdr[i]);
  for (size_t i = 0; i < nds; i++) {
    if (only && strcmp(only, ds[i].name)) continue;
    const struct ctl_sync_row *r = sync_row(rows, n, ds[i].name);
    if (!r && !ds[i].followed) continue;
    char b[32];
    uint64_t lag = r && r->announced > ds[i].current ? r->announced - ds[i].current : 0;
    ctl_table_cell(&t, "%s", ds[i].name);
    ctl_table_cell(&t, "%llu",
                   (unsigned long long)(r ? follow ? r->announced : r->pushed : 0));
    ctl_table_cell(&t, "%llu", (unsigned long long)ds[i].current);
    ctl_table_cell(&t, "%llu", (unsigned long long)(follow ? lag : 0));
    ctl_table_cell(&t, "%.1f", r && follow ? ctl_sync_lag_seconds(r) : 0.0);
    ctl_table_cell(&t, "%s", ctl_bytes(b, sizeof b, r ? r->bytes : 0));
    ctl_table_cell(&t, "%s", r && r->error[0] ? r->error : "-");
  }
  if (t.ncells > 7) {
    printf("\n%s %s\n",
           follow    ? "followed from"
           : mode[0] ? "pushed to"
                     : "followed",
           remote[0] ? remote : "(writerd not running)");
    ctl_table_print(&t, stdout);
  }
  ctl_table_free(&t);
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
  int opt, code, json = 0;
  while ((opt = ctl_getopt(&ctl_cmd_list, c, argc, argv, "", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'j') json = 1;
  }
  const char *only = NULL;
  if (optind < argc) only = argv[optind++];
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);

  snap_store *store;
  int rc = ctl_open(c, SNAP_RDONLY, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  if ((rc = snap_dataset_list(store, &ds, &nds, &err))) {
    rc = ctl_fail_snap(c, snap_store_path(store), rc, &err);
    snap_store_close(store);
    return rc;
  }
  int found = !only;
  for (size_t i = 0; only && i < nds && !found; i++) found = !strcmp(only, ds[i].name);
  if (!found) {
    snap_free(ds);
    snap_store_close(store);
    return ctl_fail(c, "%s: no such dataset", only);
  }
  struct ctl_sync_row *srows = NULL;
  size_t nsrows = 0;
  char smode[16], sremote[1100];
  ctl_sync_state(snap_store_path(store), &srows, &nsrows, smode, sizeof smode, sremote,
                 sizeof sremote);
  struct totals tot = {0};
  struct ctl_table t;
  ctl_table_init(&t, 9, "lrlrrrrll");
  const char *hdr[] = {"DATASET", "VERSION", "STATE",   "ROWS", "COLS",
                       "BYTES",   "SHARED",  "CREATED", "PINS"};
  for (size_t i = 0; i < 9; i++) ctl_table_cell(&t, "%s", hdr[i]);
  if (json) {
    printf("{\"store\": ");
    ctl_json_str(stdout, snap_store_path(store));
    printf(", \"datasets\": [");
  }
  int first = 1, status = CTL_OK;
  for (size_t i = 0; i < nds; i++) {
    if (only && strcmp(only, ds[i].name)) continue;
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    rc = snap_version_list(store, ds[i].name, &v, &nv, &err);
    if (rc) {
      status = ctl_fail_snap(c, ds[i].name, rc, &err);
      continue;
    }
    for (size_t k = 0; k < nv; k++) add_totals(&tot, &v[k]);
    if (json) {
      json_dataset(&ds[i], v, nv, first, sync_row(srows, nsrows, ds[i].name), smode,
                   sremote);
      first = 0;
    } else {
      for (size_t k = 0; k < nv; k++) {
        char b[32], when[32];
        ctl_table_cell(&t, "%s", ds[i].name);
        ctl_table_cell(&t, "%llu", (unsigned long long)v[k].version);
        ctl_table_cell(&t, "%s", snap_state_name(v[k].state));
        ctl_table_cell(&t, "%llu", (unsigned long long)v[k].nrows);
        ctl_table_cell(&t, "%u", v[k].ncols);
        ctl_table_cell(&t, "%s", ctl_bytes(b, sizeof b, v[k].bytes));
        ctl_table_cell(&t, "%s", ctl_bytes(b, sizeof b, shared(&v[k])));
        ctl_table_cell(&t, "%s", ctl_time_local(when, sizeof when, v[k].created_ns));
        if (v[k].holders < 0)
          ctl_table_cell(&t, "?");
        else
          ctl_table_cell(&t, "%d", v[k].holders);
      }
      if (!nv) {
        ctl_table_cell(&t, "%s", ds[i].name);
        for (int k = 0; k < 8; k++) ctl_table_cell(&t, "-");
      }
    }
    snap_free(v);
  }
  uint32_t max = 0; /* the dataset limit (0: none) */
  if (snap_store_max_datasets(store, &max, NULL, NULL)) max = 0;
  if (json) {
    printf(
        "%s], \"totals\": {\"datasets\": %zu, \"versions\": %llu, \"bytes\": %llu,"
        " \"reclaimable_bytes\": %llu, \"draining_pinned_bytes\": %llu},"
        " \"max_datasets\": %u}\n",
        first ? "" : "\n  ", only ? (size_t)found : nds, (unsigned long long)tot.versions,
        (unsigned long long)tot.bytes, (unsigned long long)tot.reclaimable,
        (unsigned long long)tot.pinned_draining, max);
  } else {
    if (max) printf("%zu of at most %u datasets\n", nds, max);
    if (t.ncells > 9) ctl_table_print(&t, stdout);
    char b1[32], b2[32], b3[32];
    printf(
        "%s%llu version%s, %s in use; reclaimable now: %s%s; draining but pinned: %s\n",
        t.ncells > 8 ? "\n" : "", (unsigned long long)tot.versions,
        tot.versions == 1 ? "" : "s", ctl_bytes(b1, sizeof b1, tot.bytes),
        ctl_bytes(b2, sizeof b2, tot.reclaimable),
        tot.reclaimable ? " (run 'snapctl gc')" : "",
        ctl_bytes(b3, sizeof b3, tot.pinned_draining));
    print_sync(ds, nds, only, srows, nsrows, smode, sremote);
  }
  free(srows);
  ctl_table_free(&t);
  snap_free(ds);
  snap_store_close(store);
  return status;
}

const struct ctl_command ctl_cmd_list = {
    "list", "datasets and their versions",
    "usage: snapctl [--store PATH] list [DATASET] [--json]\n"
    "\n"
    "List every dataset (or one) and its versions: version, state (current, retained,\n"
    "draining, lending), rows, columns, bytes (the memory its own file holds), shared\n"
    "(what it maps from earlier versions' files instead of holding it: format 2),\n"
    "creation time and the number of processes that pin it; then the totals of memory\n"
    "in use (each byte counted once: the store's distinct bytes), reclaimable now,\n"
    "and draining but still pinned. A lending version is retired but keeps the\n"
    "chunks later versions share; it goes when they no longer do.\n"
    "\n"
    "  --json   one JSON object: {\"store\", \"datasets\": [{\"name\", \"current\",\n"
    "           \"next_version\", \"keep\", \"bytes\", \"versions\": [{\"version\", "
    "\"state\",\n"
    "           \"rows\", \"cols\", \"bytes\", \"shared_bytes\", \"size\", \"created\",\n"
    "           \"created_ns\", \"pins\"}]}],\n"
    "           \"totals\": {\"datasets\", \"versions\", \"bytes\", "
    "\"reclaimable_bytes\",\n"
    "           \"draining_pinned_bytes\"}, \"max_datasets\" (0: no limit)}\n",
    run};
