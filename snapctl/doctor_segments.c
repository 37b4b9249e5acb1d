/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl doctor: the segments a reader can be sent to. Every kept version
 * (current and retained) is pinned exactly as a reader pins it: the file is
 * opened and locked, its size, header, header checksum and manifest (and the
 * string offsets) are validated. With --deep, the data checksum is recomputed
 * and every category code checked too (snapctl verify, for each version).
 * Draining versions are left out: no new reader can reach them.
 * Each damaged version is reported with the command that gets readers off it.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

struct seg_check {
  uint64_t version;
  enum snap_state state;
  int status; /* 0: good */
  struct snap_error err;
};

/* Pin (and with @p deep verify) one version. SNAP_ENOTFOUND / SNAP_EDRAINING
 * mean it left the kept set while we looked: not a finding. */
static int check_one(snap_store *store, const char *dataset, uint64_t version, bool deep,
                     struct snap_error *err) {
  snap_snapshot *snap;
  int rc = snap_pin_version(store, dataset, version, &snap, err);
  if (rc) return rc;
  if (deep) rc = snap_snapshot_verify(snap, err);
  snap_unpin(snap);
  return rc;
}

static void report(const char *dataset, const struct seg_check *bad,
                   const struct seg_check *all, size_t n, uint32_t keep) {
  uint64_t good = 0; /* newest good retained version */
  for (size_t i = 0; i < n; i++)
    if (all[i].state == SNAP_STATE_RETAINED && !all[i].status) good = all[i].version;
  const char *msg = bad->err.message[0] ? bad->err.message : snap_strerror(bad->status);
  printf("%-8s segment: %s@%llu (%s) fails as a reader would see it: %s [%s]\n",
         "problem", dataset, (unsigned long long)bad->version,
         snap_state_name(bad->state), msg, snap_error_name(bad->status));
  if (bad->state == SNAP_STATE_CURRENT && good)
    printf(
        "         fix: snapctl rollback %s %llu   (the newest good retained version; "
        "then republish %s)\n",
        dataset, (unsigned long long)good, dataset);
  else if (bad->state == SNAP_STATE_CURRENT)
    printf(
        "         fix: republish %s (snapctl publish %s FILE); no good retained "
        "version to roll back to; or snapctl drop %s\n",
        dataset, dataset, dataset);
  else
    printf(
        "         fix: do not roll back to %s@%llu; it drains after %u more "
        "publish%s of %s; or snapctl drop %s\n",
        dataset, (unsigned long long)bad->version, keep ? keep - 1 : 0,
        keep == 2 ? "" : "es", dataset, dataset);
}

int ctl_doctor_segments(snap_store *store, const struct snap_dataset_info *ds, size_t nds,
                        bool deep, int *advice) {
  int problems = 0;
  size_t checked = 0;
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    struct snap_error err = {0};
    int rc = snap_version_list(store, ds[i].name, &v, &nv, &err);
    if (rc == SNAP_ENOTFOUND) continue; /* dropped meanwhile */
    if (rc) {
      printf("%-8s segment: %s: listing versions: %s\n", "problem", ds[i].name,
             err.message[0] ? err.message : snap_strerror(rc));
      problems++;
      continue;
    }
    struct seg_check *all = calloc(nv ? nv : 1, sizeof *all);
    if (!all) {
      snap_free(v);
      printf("%-8s segment: %s: out of memory\n", "problem", ds[i].name);
      problems++;
      continue;
    }
    if (!ds[i].current && !nv && ++*advice)
      printf(
          "%-8s dataset: %s has no version: a first publish in progress, or one whose "
          "process died\n         fix: snapctl drop %s   (if no publish of it is "
          "running)\n",
          "advice", ds[i].name, ds[i].name);
    size_t n = 0;
    for (size_t k = 0; k < nv; k++) {
      if (v[k].state != SNAP_STATE_CURRENT && v[k].state != SNAP_STATE_RETAINED) continue;
      struct seg_check *sc = &all[n++];
      sc->version = v[k].version;
      sc->state = v[k].state;
      sc->status = check_one(store, ds[i].name, v[k].version, deep, &sc->err);
      if (sc->status == SNAP_ENOTFOUND || sc->status == SNAP_EDRAINING) n--;
    }
    for (size_t k = 0; k < n; k++) {
      checked++;
      if (!all[k].status) continue;
      report(ds[i].name, &all[k], all, n, ds[i].keep);
      problems++;
    }
    free(all);
    snap_free(v);
  }
  if (!problems)
    printf("%-8s segments: %zu kept version%s pass a reader's checks%s\n", "ok", checked,
           checked == 1 ? "" : "s",
           deep ? ", data checksums and category codes"
                : " (--deep also checks data checksums)");
  return problems;
}
