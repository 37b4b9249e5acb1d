/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reclamation: draining versions go when nobody pins them.
 *
 * A version leaves the current/retained set by becoming "draining" (no new
 * pins by number; retention in policy.c decides which). It is reclaimed the
 * moment flock(LOCK_EX|LOCK_NB) on its
 * file succeeds, i.e. no process holds the shared lock that pins it. While the
 * exclusive lock is held, the record is deleted and the file unlinked in one
 * write transaction; a reader that opened the name concurrently is refused
 * its shared lock or sees st_nlink == 0, and looks up current again.
 *
 * Crash window: the unlink comes before the commit, so a crash in between
 * leaves a draining record with no file; the next gc drops the record. (A
 * file with no record comes only from a publisher killed between linkat and
 * its commit; the orphan sweep removes it, orphans.c.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------ reclamation */

struct drain {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t id, version, bytes;
};

struct drains {
  struct drain *d;
  size_t n, cap;
  const char *only;
  struct snap__txn *t;
  struct snap__dsrec ds;
  const char *name;
  struct snap_error *err;
};

static int drain_ver(uint64_t version, const struct snap__verrec *rec, void *arg) {
  struct drains *l = arg;
  if (rec->state != SNAP_STATE_DRAINING) return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    void *p = realloc(l->d, cap * sizeof *l->d);
    if (!p) return snap__errno(l->err, -ENOMEM, "gc");
    l->d = p;
    l->cap = cap;
  }
  struct drain *d = &l->d[l->n++];
  snprintf(d->dataset, sizeof d->dataset, "%s", l->name);
  d->id = l->ds.id;
  d->version = version;
  d->bytes = rec->bytes;
  return 0;
}

static int drain_ds(const char *name, size_t len, const struct snap__dsrec *rec,
                    void *arg) {
  (void)len;
  struct drains *l = arg;
  if (l->only && strcmp(l->only, name)) return 0;
  l->ds = *rec;
  l->name = name;
  return snap__ver_each(l->t, rec->id, drain_ver, l, l->err);
}

/* Drop the record and the file of a version whose exclusive lock we hold
 * (fd >= 0) or whose file is already gone (fd < 0). */
static int reclaim_locked(snap_store *s, const struct drain *d, struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__verrec vr;
  rc = snap__ver_get(t, d->id, d->version, &vr, NULL);
  if (rc == SNAP_ENOTFOUND || (!rc && vr.state != SNAP_STATE_DRAINING)) {
    snap__txn_abort(t); /* someone else reclaimed it, or it is not ours to take */
    return rc == SNAP_ENOTFOUND ? 0 : SNAP_EBUSY;
  }
  if (!rc) rc = snap__ver_del(t, d->id, d->version, err);
  snap__crash_point();
  if (rc) {
    snap__txn_abort(t);
    return rc;
  }
  char rel[512];
  snap__seg_relpath(rel, sizeof rel, d->dataset, d->version);
  if (unlinkat(s->dirfd, rel, 0) && errno != ENOENT) {
    rc = snap__errno(err, -errno, "%s/%s: unlink", s->path, rel);
    snap__txn_abort(t);
    return rc;
  }
  snap__crash_point(); /* unlinked, record not yet dropped */
  return snap__txn_commit(t, err);
}

/* Try (or with @p wait, block) to take one draining version. Returns 1 when
 * reclaimed (or reclaimable in a dry run), 0 when still pinned. */
static int reclaim_one(snap_store *s, const struct drain *d, bool wait, bool dry,
                       int32_t *holders, struct snap_error *err) {
  char rel[512];
  snap__seg_relpath(rel, sizeof rel, d->dataset, d->version);
  *holders = 0;
  int fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) return snap__errno(err, -errno, "%s/%s", s->path, rel);
  if (fd >= 0 && flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) {
    int e = errno;
    struct stat st;
    size_t n = 0;
    if (!fstat(fd, &st)) snap__lock_holders(st.st_dev, st.st_ino, NULL, 0, &n);
    close(fd);
    if (e != EWOULDBLOCK) return snap__errno(err, -e, "%s/%s: flock", s->path, rel);
    *holders = (int32_t)n;
    return 0;
  }
  int rc = dry ? 0 : reclaim_locked(s, d, err);
  if (fd >= 0) close(fd);
  if (rc == SNAP_EBUSY) return 0;
  return rc ? rc : 1;
}

static int collect(snap_store *s, const char *dataset, struct drains *l,
                   struct snap_error *err) {
  memset(l, 0, sizeof *l);
  l->only = dataset;
  l->err = err;
  int rc = snap__store_txn(s, false, &l->t, err);
  if (rc) return rc;
  rc = snap__ds_each(l->t, drain_ds, l, err);
  snap__txn_abort(l->t);
  if (rc) free(l->d);
  return rc;
}

int snap__gc(snap_store *s, const char *dataset, unsigned flags, snap_gc_cb cb, void *arg,
             struct snap_gc_stats *stats, struct snap_error *err) {
  struct snap_gc_stats st = {0};
  struct drains l;
  int rc = collect(s, dataset, &l, err);
  if (rc) return rc;
  for (size_t i = 0; i < l.n && !rc; i++) {
    struct snap_gc_item item = {l.d[i].dataset, l.d[i].version, l.d[i].bytes, 0, 0};
    int r = reclaim_one(s, &l.d[i], false, flags & SNAP_GC_DRY_RUN, &item.holders, err);
    if (r < 0) {
      rc = r;
      break;
    }
    item.freed = r;
    if (r) {
      st.freed_versions++;
      st.freed_bytes += item.bytes;
    } else {
      st.draining_versions++;
      st.draining_bytes += item.bytes;
    }
    if (cb) cb(&item, arg);
  }
  free(l.d);
  if (stats) *stats = st;
  return rc;
}

int snap_gc(snap_store *s, const char *dataset, unsigned flags, snap_gc_cb cb, void *arg,
            struct snap_gc_stats *stats, struct snap_error *err) {
  if (stats) memset(stats, 0, sizeof *stats);
  if (flags & ~SNAP_GC_DRY_RUN)
    return snap__err(err, SNAP_EINVAL, "snap_gc: flags 0x%x unknown", flags);
  /* A dry run changes nothing, so it needs no writable handle (and no sweep). */
  int rc = flags & SNAP_GC_DRY_RUN ? 0 : snap__store_writable(s, err);
  if (rc) return rc;
  if (dataset && (rc = snap__dataset_name_check(dataset, err))) return rc;
  return snap__gc(s, dataset, flags, cb, arg, stats, err);
}

int snap_reclaim_wait(snap_store *s, const char *dataset, uint64_t version,
                      struct snap_error *err) {
  int rc = snap__store_writable(s, err);
  if (rc) return rc;
  struct drains l;
  if ((rc = collect(s, dataset, &l, err))) return rc;
  for (size_t i = 0; i < l.n; i++) {
    if (l.d[i].version != version) continue;
    int32_t holders;
    rc = reclaim_one(s, &l.d[i], true, false, &holders, err);
    break;
  }
  free(l.d);
  return rc < 0 ? rc : 0;
}
