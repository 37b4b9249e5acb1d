/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Removing a dataset's record: snap_dataset_drop(), and the undo of a first
 * publish that failed (the record it created goes again). Both hold the
 * dataset directory's LOCK_EX (layout.c) and raise the tombstone first.
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

static int count_ver(uint64_t version, const struct snap__verrec *rec, void *arg) {
  (void)version;
  (void)rec;
  ++*(size_t *)arg;
  return 0;
}

void snap__first_publish_undo(snap_store *s, int dsfd, const char *dataset) {
  /* Another publish of the dataset in progress holds LOCK_SH: it owns the
   * record now (and undoes it in turn if it fails too). */
  if (dsfd < 0 || flock(dsfd, LOCK_EX | LOCK_NB)) return;
  struct snap__txn *t;
  if (snap__store_txn(s, true, &t, NULL)) return;
  struct snap__dsrec ds;
  size_t n = 0;
  if (snap__ds_get(t, dataset, &ds, NULL) || ds.current ||
      snap__ver_each(t, ds.id, count_ver, &n, NULL) || n ||
      snap__tombstone_put(s, dsfd, dataset, ds.next_version, NULL) ||
      snap__ds_del(t, dataset, NULL)) {
    snap__txn_abort(t);
    return;
  }
  snap__txn_commit(t, NULL);
}

/* ------------------------------------------------------------------ drop */

struct held {
  uint64_t *v;
  int *fd;
  size_t n, cap;
};

static int held_add(uint64_t version, const struct snap__verrec *rec, void *arg) {
  (void)rec;
  struct held *h = arg;
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 8;
    uint64_t *v = realloc(h->v, cap * sizeof *v);
    if (!v) return -ENOMEM;
    h->v = v;
    int *fd = realloc(h->fd, cap * sizeof *fd);
    if (!fd) return -ENOMEM;
    h->fd = fd;
    h->cap = cap;
  }
  h->v[h->n] = version;
  h->fd[h->n++] = -1;
  return 0;
}

/* "pid 12, 34 and 2 more" into @p out. */
static void pid_list(char *out, size_t cap, const pid_t *pids, size_t shown, size_t n) {
  size_t len = (size_t)snprintf(out, cap, "pid ");
  for (size_t i = 0; i < shown && len < cap; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? ", " : "", (int)pids[i]);
  if (n > shown && len < cap) snprintf(out + len, cap - len, " and %zu more", n - shown);
}

int snap_dataset_drop(snap_store *s, const char *dataset, unsigned flags,
                      struct snap_error *err) {
  if (flags & ~SNAP_DROP_FORCE)
    return snap__err(err, SNAP_EINVAL, "snap_dataset_drop: flags 0x%x unknown", flags);
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err))) return rc;
  struct snap__txn *t;
  struct snap__dsrec ds;
  /* Existence first, so that dropping a name that is not there creates no
   * directory. */
  if ((rc = snap__store_txn(s, false, &t, err))) return rc;
  rc = snap__ds_get(t, dataset, &ds, err);
  snap__txn_abort(t);
  if (rc) return rc;
  /* Our own cache of the current version is a pin as far as flock goes. */
  snap__pin_forget(s, dataset);
  int dsfd;
  if ((rc = snap__dataset_dir_lock(s, dataset, LOCK_EX | LOCK_NB, &dsfd, err))) return rc;
  struct held h = {0};
  /* No publish can add a version now; take every version's exclusive lock so
   * that no reader pins one while the records go. */
  if ((rc = snap__store_txn(s, false, &t, err))) goto out;
  if (!(rc = snap__ds_get(t, dataset, &ds, err)))
    rc = snap__ver_each(t, ds.id, held_add, &h, err);
  snap__txn_abort(t);
  if (rc == -ENOMEM) rc = snap__errno(err, rc, "drop \"%s\"", dataset);
  if (rc) goto out;
  for (size_t i = 0; i < h.n; i++) {
    char rel[512];
    snap__seg_relpath(rel, sizeof rel, dataset, h.v[i]);
    int fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue; /* a record whose file is gone: nothing to lock */
      rc = snap__errno(err, -errno, "%s/%s", s->path, rel);
      goto out;
    }
    h.fd[i] = fd;
    if (!flock(fd, LOCK_EX | LOCK_NB)) continue;
    if (errno != EWOULDBLOCK) {
      rc = snap__errno(err, -errno, "%s/%s: flock", s->path, rel);
      goto out;
    }
    if (flags & SNAP_DROP_FORCE) continue; /* its readers keep their mapping */
    struct stat st;
    pid_t pids[8];
    size_t n = 0;
    char who[128] = "a process that is letting go";
    if (!fstat(fd, &st) && !snap__lock_holders(st.st_dev, st.st_ino, pids, 8, &n) && n)
      pid_list(who, sizeof who, pids, n < 8 ? n : 8, n);
    rc = snap__err(err, SNAP_EBUSY,
                   "%s/%s: version %llu of \"%s\" is pinned by %s; nothing dropped "
                   "(snapctl readers %s; --force drops it and lets them finish)",
                   s->path, rel, (unsigned long long)h.v[i], dataset, who, dataset);
    goto out;
  }
  /* Records first, then names: a crash in between leaves files no record
   * names, which the orphan sweep removes. The tombstone goes before both. */
  if ((rc = snap__tombstone_put(s, dsfd, dataset, ds.next_version, err))) goto out;
  if ((rc = snap__store_txn(s, true, &t, err))) goto out;
  for (size_t i = 0; i < h.n && !rc; i++) rc = snap__ver_del(t, ds.id, h.v[i], err);
  if (!rc) rc = snap__ds_del(t, dataset, err);
  snap__crash_point();
  if (rc) {
    snap__txn_abort(t);
    goto out;
  }
  if ((rc = snap__txn_commit(t, err))) goto out;
  snap__crash_point(); /* records gone, files still named: orphans */
  for (size_t i = 0; i < h.n; i++) {
    char name[32];
    snap__seg_name(name, sizeof name, h.v[i]);
    unlinkat(dsfd, name, 0); /* best effort: the sweep takes what is left */
  }
  snap__flips_bump(s);
  snap__pin_trim(s, dataset);
out:
  for (size_t i = 0; i < h.n; i++)
    if (h.fd[i] >= 0) close(h.fd[i]);
  free(h.v);
  free(h.fd);
  close(dsfd);
  return rc;
}
