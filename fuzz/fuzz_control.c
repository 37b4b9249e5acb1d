/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the control file. Each input is installed as the
 * control.mdb of a real store (seeds: real control files, so the mutations
 * are damage to real pages), then every read path runs on it: the structural
 * check, open, the dataset list, each dataset's versions, pins of the current
 * version and of each listed version, current_version. Any status is fine;
 * a crash, a sanitizer report or a status outside the documented ones is not.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static char g_dir[4096], g_ctl[4200], g_tmp[4200];

static struct snap_error err;

static void ok(int rc) {
  if (rc == 0 || rc == SNAP_ECONTROL || rc == SNAP_ECORRUPT || rc == SNAP_ENOTFOUND ||
      rc == SNAP_EFORMAT || rc == SNAP_EBUSY || rc == SNAP_EDRAINING ||
      rc == SNAP_EMAPFULL)
    return;
  fprintf(stderr, "fuzz_control: unexpected status %d (%s): %s\n", rc, snap_strerror(rc),
          err.message);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *base = getenv("SNAP_FUZZ_DIR");
  snprintf(g_dir, sizeof g_dir, "%s/fuzz-control-%d", base ? base : "/dev/shm",
           (int)getpid());
  snap_store *s;
  if (snap_store_open(g_dir, SNAP_CREATE, &s, &err)) {
    fprintf(stderr, "fuzz_control: %s\n", err.message);
    abort();
  }
  snap_store_close(s);
  snprintf(g_ctl, sizeof g_ctl, "%s/control.mdb", g_dir);
  snprintf(g_tmp, sizeof g_tmp, "%s/control.mdb.in", g_dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a new file (new inode) each time, as a process opening a damaged store sees it */
  int fd = open(g_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
  ok(size ? snap__control_check(fd, g_tmp, &err) : 0);
  close(fd);
  if (rename(g_tmp, g_ctl)) abort();
  snap_store *s;
  int rc = snap_store_open(g_dir, SNAP_RDONLY, &s, &err);
  ok(rc);
  if (rc) return 0;
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  ok(snap_dataset_list(s, &ds, &nds, &err));
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *vi = NULL;
    size_t nv = 0;
    ok(snap_version_list(s, ds[i].name, &vi, &nv, &err));
    snap_snapshot *snap;
    rc = snap_pin(s, ds[i].name, &snap, &err);
    ok(rc);
    if (!rc) snap_unpin(snap);
    for (size_t k = 0; k < nv && k < 4; k++) {
      rc = snap_pin_version(s, ds[i].name, vi[k].version, &snap, &err);
      ok(rc);
      if (!rc) snap_unpin(snap);
    }
    uint64_t v;
    ok(snap_current_version(s, ds[i].name, &v, &err));
    snap_free(vi);
  }
  snap_free(ds);
  snap_store_close(s);
  return 0;
}
