/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl info: one version's record, schema, checksum and segment path. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

/* Find the record of a version; version 0 means the current one. */
static int find_version(struct ctl *c, snap_store *store, const char *dataset,
                        uint64_t *version, struct snap_version_info *out) {
  struct snap_error err = {0};
  struct snap_version_info *v = NULL;
  size_t n = 0;
  int rc = snap_version_list(store, dataset, &v, &n, &err);
  if (rc == SNAP_ENOTFOUND) return ctl_fail(c, "%s: no such dataset", dataset);
  if (rc) return ctl_fail_snap(c, dataset, rc, &err);
  int found = 0;
  for (size_t i = 0; i < n && !found; i++)
    if (*version ? v[i].version == *version : v[i].state == SNAP_STATE_CURRENT)
      *out = v[i], found = 1;
  snap_free(v);
  if (found) {
    *version = out->version;
    return CTL_OK;
  }
  if (*version)
    return ctl_fail(c, "%s@%llu: no such version", dataset, (unsigned long long)*version);
  return ctl_fail(c, "%s: no version published yet", dataset);
}

static void column_detail(char *out, size_t cap, const struct snap_column *col) {
  out[0] = 0;
  if (col->type == SNAP_TIMESTAMP_NS || col->type == SNAP_TIMESTAMP_S ||
      col->type == SNAP_TIMESTAMP_MS || col->type == SNAP_TIMESTAMP_US)
    snprintf(out, cap, "tz=%s", col->timezone ? col->timezone : "naive");
  else if (col->type == SNAP_CATEGORY)
    snprintf(out, cap, "%llu categories, %s codes", (unsigned long long)col->dict_size,
             snap_type_name(col->code_type));
  else if (col->type == SNAP_STRING)
    snprintf(out, cap, "%llu bytes", (unsigned long long)col->data_bytes);
}

static void print_json(snap_store *store, const char *dataset,
                       const struct snap_version_info *vi, snap_snapshot *snap) {
  char when[64];
  printf("{\"store\": ");
  ctl_json_str(stdout, snap_store_path(store));
  printf(", \"dataset\": ");
  ctl_json_str(stdout, dataset);
  printf(
      ", \"version\": %llu, \"state\": \"%s\", \"rows\": %llu, \"cols\": %u,"
      " \"bytes\": %llu, \"shared_bytes\": %llu, \"created\": \"%s\", \"created_ns\": "
      "%llu,"
      " \"data_hash\": \"%016llx%016llx\", \"pins\": ",
      (unsigned long long)vi->version, snap_state_name(vi->state),
      (unsigned long long)vi->nrows, vi->ncols, (unsigned long long)vi->bytes,
      (unsigned long long)vi->shared_bytes,
      ctl_time_iso(when, sizeof when, (int64_t)vi->created_ns),
      (unsigned long long)vi->created_ns, (unsigned long long)vi->data_hash[1],
      (unsigned long long)vi->data_hash[0]);
  if (vi->holders < 0)
    printf("null");
  else
    printf("%d", vi->holders);
  if (!snap) {
    printf(", \"segment\": null, \"columns\": null}\n");
    return;
  }
  size_t mlen = 0;
  snap_snapshot_metadata(snap, &mlen);
  printf(", \"segment\": ");
  ctl_json_str(stdout, snap_snapshot_path(snap));
  printf(", \"metadata_bytes\": %zu, \"mappings\": %llu, \"blocks\": %u, \"columns\": [",
         mlen, (unsigned long long)snap_snapshot_mappings(snap),
         snap_snapshot_nblocks(snap));
  for (uint32_t i = 0; i < snap_snapshot_ncols(snap); i++) {
    const struct snap_column *col = snap_snapshot_column(snap, i);
    printf("%s\n  {\"name\": ", i ? "," : "");
    ctl_json_str(stdout, col->name);
    printf(", \"type\": \"%s\", \"nullable\": %s, \"block\": ", snap_type_name(col->type),
           col->flags & SNAP_NULLABLE ? "true" : "false");
    if (col->block == SNAP_NO_BLOCK)
      printf("null");
    else
      printf("%u", col->block);
    printf(", \"timezone\": ");
    if (col->timezone)
      ctl_json_str(stdout, col->timezone);
    else
      printf("null");
    if (col->type == SNAP_CATEGORY)
      printf(", \"dict_size\": %llu, \"code_type\": \"%s\"",
             (unsigned long long)col->dict_size, snap_type_name(col->code_type));
    printf("}");
  }
  printf("%s]}\n", snap_snapshot_ncols(snap) ? "\n" : "");
}

static void print_human(const char *dataset, const struct snap_version_info *vi,
                        snap_snapshot *snap) {
  char b[32], when[64], iso[64];
  printf("dataset:    %s\n", dataset);
  printf("version:    %llu (%s)\n", (unsigned long long)vi->version,
         snap_state_name(vi->state));
  printf("rows:       %llu\n", (unsigned long long)vi->nrows);
  printf("columns:    %u\n", vi->ncols);
  printf("bytes:      %s (%llu) held", ctl_bytes(b, sizeof b, vi->bytes),
         (unsigned long long)vi->bytes);
  printf(", %s shared with earlier versions\n", ctl_bytes(b, sizeof b, vi->shared_bytes));
  printf("created:    %s (%s)\n", ctl_time_local(when, sizeof when, vi->created_ns),
         ctl_time_iso(iso, sizeof iso, (int64_t)vi->created_ns));
  printf("data hash:  XXH3-128 %016llx%016llx\n", (unsigned long long)vi->data_hash[1],
         (unsigned long long)vi->data_hash[0]);
  if (vi->holders < 0)
    printf("pins:       unknown\n");
  else
    printf("pins:       %d process%s\n", vi->holders, vi->holders == 1 ? "" : "es");
  if (!snap) {
    printf("segment:    (draining: accepts no new pins, schema not shown)\n");
    return;
  }
  size_t mlen = 0;
  snap_snapshot_metadata(snap, &mlen);
  printf("segment:    %s (%llu mapping%s)\n", snap_snapshot_path(snap),
         (unsigned long long)snap_snapshot_mappings(snap),
         snap_snapshot_mappings(snap) == 1 ? "" : "s");
  printf("metadata:   %zu bytes\n", mlen);
  printf("blocks:     %u\n\n", snap_snapshot_nblocks(snap));
  struct ctl_table t;
  ctl_table_init(&t, 6, "rlllrl");
  const char *hdr[] = {"#", "NAME", "TYPE", "NULLABLE", "BLOCK", "DETAIL"};
  for (int i = 0; i < 6; i++) ctl_table_cell(&t, "%s", hdr[i]);
  for (uint32_t i = 0; i < snap_snapshot_ncols(snap); i++) {
    const struct snap_column *col = snap_snapshot_column(snap, i);
    char detail[96];
    column_detail(detail, sizeof detail, col);
    ctl_table_cell(&t, "%u", i);
    ctl_table_cell(&t, "%s", col->name);
    ctl_table_cell(&t, "%s", snap_type_name(col->type));
    ctl_table_cell(&t, "%s", col->flags & SNAP_NULLABLE ? "yes" : "no");
    if (col->block == SNAP_NO_BLOCK)
      ctl_table_cell(&t, "-");
    else
      ctl_table_cell(&t, "%u", col->block);
    ctl_table_cell(&t, "%s", detail);
  }
  ctl_table_print(&t, stdout);
  ctl_table_free(&t);
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
  int opt, code, json = 0;
  while ((opt = ctl_getopt(&ctl_cmd_info, c, argc, argv, "", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'j') json = 1;
  }
  if (optind >= argc) return ctl_usage(c, "missing DATASET[@VERSION]");
  if (optind + 1 < argc)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version;
  int rc = ctl_parse_target(c, argv[optind], dataset, sizeof dataset, &version);
  if (rc) return rc;

  snap_store *store;
  if ((rc = ctl_open(c, SNAP_RDONLY, &store))) return rc;
  struct snap_version_info vi = {0};
  rc = find_version(c, store, dataset, &version, &vi);
  snap_snapshot *snap = NULL;
  if (!rc && vi.state != SNAP_STATE_DRAINING) {
    struct snap_error err = {0};
    int prc = snap_pin_version(store, dataset, version, &snap, &err);
    /* it may have started draining since the listing */
    if (prc && prc != SNAP_EDRAINING && prc != SNAP_ENOTFOUND) {
      char what[SNAP_DATASET_NAME_MAX + 32];
      snprintf(what, sizeof what, "%s@%llu", dataset, (unsigned long long)version);
      rc = ctl_fail_snap(c, what, prc, &err);
    }
  }
  if (!rc) {
    if (json)
      print_json(store, dataset, &vi, snap);
    else
      print_human(dataset, &vi, snap);
  }
  snap_unpin(snap);
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_info = {
    "info", "schema, checksum and segment of a version",
    "usage: snapctl [--store PATH] info DATASET[@VERSION] [--json]\n"
    "\n"
    "Show one version (default: the current one): state, rows, columns, bytes,\n"
    "creation time, data checksum (XXH3-128), pinning processes, the segment file, and\n"
    "the schema (name, type, nullability, dtype block and details per column).\n"
    "A draining version accepts no new pins, so only its record is shown.\n"
    "\n"
    "  --json   one JSON object with the same fields; \"columns\" is a list of\n"
    "           {\"name\", \"type\", \"nullable\", \"block\", \"timezone\"[, "
    "\"dict_size\",\n"
    "           \"code_type\"]}\n",
    run};
