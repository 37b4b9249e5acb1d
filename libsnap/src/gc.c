/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Retention, reclamation, rollback and the orphan sweep.
 *
 * A version leaves the current/retained set by becoming "draining" (no new
 * pins by number). It is reclaimed the moment flock(LOCK_EX|LOCK_NB) on its
 * file succeeds, i.e. no process holds the shared lock that pins it. While the
 * exclusive lock is held, the record is deleted and the file unlinked in one
 * write transaction; a reader that opened the name concurrently is refused
 * its shared lock or sees st_nlink == 0, and looks up current again.
 *
 * Crash window: the unlink comes before the commit, so a crash in between
 * leaves a draining record with no file; the next gc drops the record. (A
 * file with no record comes only from a publisher killed between linkat and
 * its commit; the orphan sweep removes it.)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------ retention */

struct vers {
  uint64_t *v;
  struct snap__verrec *r;
  size_t n, cap;
};

static int vers_add(uint64_t version, const struct snap__verrec *rec, void *arg) {
  struct vers *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    uint64_t *v = realloc(l->v, cap * sizeof *v);
    if (!v) return -ENOMEM;
    l->v = v;
    struct snap__verrec *r = realloc(l->r, cap * sizeof *r);
    if (!r) return -ENOMEM;
    l->r = r;
    l->cap = cap;
  }
  l->v[l->n] = version;
  l->r[l->n++] = *rec;
  return 0;
}

static void vers_free(struct vers *l) {
  free(l->v);
  free(l->r);
}

int snap__retain(struct snap__txn *t, const struct snap__dsrec *ds,
                 struct snap_error *err) {
  struct vers l = {0};
  int rc = snap__ver_each(t, ds->id, vers_add, &l, err);
  if (rc == -ENOMEM) rc = snap__errno(err, rc, "retention");
  /* Newest first: the current version plus keep - 1 others stay. */
  uint32_t kept = ds->current ? 1 : 0;
  for (size_t i = l.n; !rc && i-- > 0;) {
    struct snap__verrec *r = &l.r[i];
    uint32_t want;
    if (l.v[i] == ds->current)
      want = SNAP_STATE_CURRENT;
    else if (r->state != SNAP_STATE_DRAINING && kept < ds->keep)
      want = SNAP_STATE_RETAINED, kept++;
    else
      want = SNAP_STATE_DRAINING;
    if (r->state != want) {
      r->state = want;
      rc = snap__ver_put(t, ds->id, l.v[i], r, err);
    }
  }
  vers_free(&l);
  return rc;
}

/* ------------------------------------------------------------- /proc/locks */

int snap__lock_holders(dev_t dev, ino_t ino, pid_t *pids, size_t cap, size_t *count) {
  *count = 0;
  FILE *f = fopen("/proc/locks", "re");
  if (!f) return -errno;
  char line[256];
  size_t n = 0, seen_cap = 0;
  pid_t *seen = NULL; /* distinct pids, beyond what the caller has room for */
  while (fgets(line, sizeof line, f)) {
    /* "1: FLOCK  ADVISORY  READ  1234 00:19:5678 0 EOF"; waiters have "->". */
    char type[16], adv[16], mode[16];
    int pid;
    unsigned maj, min;
    unsigned long long inode;
    char *p = strchr(line, ':');
    if (!p || strstr(line, "->")) continue;
    if (sscanf(p + 1, "%15s %15s %15s %d %x:%x:%llu", type, adv, mode, &pid, &maj, &min,
               &inode) != 7)
      continue;
    if (strcmp(type, "FLOCK") || inode != (unsigned long long)ino || maj != major(dev) ||
        min != minor(dev))
      continue;
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++) dup = seen[i] == pid;
    if (dup) continue;
    if (n == seen_cap) {
      size_t nc = seen_cap ? 2 * seen_cap : 16;
      pid_t *p = realloc(seen, nc * sizeof *p);
      if (!p) {
        free(seen);
        fclose(f);
        return -ENOMEM;
      }
      seen = p;
      seen_cap = nc;
    }
    if (n < cap) pids[n] = pid;
    seen[n++] = pid;
  }
  free(seen);
  fclose(f);
  *count = n;
  return 0;
}

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

/* ------------------------------------------------- rollback and retention */

/* Run @p fn inside a write txn on @p dataset's record, then bump flips and
 * reclaim what retention released. */
static int ds_update(snap_store *s, const char *dataset,
                     int (*fn)(struct snap__txn *, struct snap__dsrec *, void *,
                               struct snap_error *),
                     void *arg, struct snap_error *err) {
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err))) return rc;
  struct snap__txn *t;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  struct snap__dsrec ds;
  if ((rc = snap__ds_get(t, dataset, &ds, err)) || (rc = fn(t, &ds, arg, err)) ||
      (rc = snap__ds_put(t, dataset, &ds, err)) || (rc = snap__retain(t, &ds, err))) {
    snap__txn_abort(t);
    return rc;
  }
  if ((rc = snap__txn_commit(t, err))) return rc;
  snap__flips_bump(s);
  snap__pin_trim(s, dataset);
  snap__gc(s, dataset, 0, NULL, NULL, NULL, NULL);
  return 0;
}

static int rollback_fn(struct snap__txn *t, struct snap__dsrec *ds, void *arg,
                       struct snap_error *err) {
  uint64_t version = *(uint64_t *)arg;
  struct snap__verrec vr, old;
  int rc = snap__ver_get(t, ds->id, version, &vr, NULL);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND, "rollback: version %llu does not exist",
                     (unsigned long long)version);
  if (rc)
    return snap__err(err, rc, "rollback: reading version %llu",
                     (unsigned long long)version);
  if (vr.state == SNAP_STATE_DRAINING)
    return snap__err(err, SNAP_EDRAINING,
                     "rollback: version %llu is draining (retired); it cannot be current",
                     (unsigned long long)version);
  if (ds->current == version) return 0;
  if (ds->current && !snap__ver_get(t, ds->id, ds->current, &old, NULL)) {
    old.state = SNAP_STATE_RETAINED;
    if ((rc = snap__ver_put(t, ds->id, ds->current, &old, err))) return rc;
  }
  vr.state = SNAP_STATE_CURRENT;
  if ((rc = snap__ver_put(t, ds->id, version, &vr, err))) return rc;
  ds->current = version;
  return 0;
}

int snap_rollback(snap_store *s, const char *dataset, uint64_t version,
                  struct snap_error *err) {
  return ds_update(s, dataset, rollback_fn, &version, err);
}

static int keep_fn(struct snap__txn *t, struct snap__dsrec *ds, void *arg,
                   struct snap_error *err) {
  (void)t;
  (void)err;
  ds->keep = *(uint32_t *)arg;
  return 0;
}

int snap_store_set_keep(snap_store *s, const char *dataset, uint32_t keep,
                        struct snap_error *err) {
  if (keep < 1) return snap__err(err, SNAP_EINVAL, "keep = %u: must be at least 1", keep);
  if (dataset) return ds_update(s, dataset, keep_fn, &keep, err);
  int rc = snap__store_writable(s, err);
  if (rc) return rc;
  struct snap__txn *t;
  struct snap__meta m;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  if ((rc = snap__meta_get(t, &m, err))) {
    snap__txn_abort(t);
    return rc;
  }
  m.default_keep = keep;
  if ((rc = snap__meta_put(t, &m, err))) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
}

int snap_store_set_max_datasets(snap_store *s, uint32_t max, struct snap_error *err) {
  int rc = snap__store_writable(s, err);
  if (rc) return rc;
  struct snap__txn *t;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  if ((rc = snap__max_datasets_put(t, max, err))) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
}

int snap_store_max_datasets(snap_store *s, uint32_t *max, uint64_t *count,
                            struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  uint64_t n = 0;
  if (!(rc = snap__max_datasets_get(t, max, err)) && count)
    rc = snap__ds_count(t, &n, err);
  snap__txn_abort(t);
  if (!rc && count) *count = n;
  return rc;
}

/* ------------------------------------------------------------ orphan sweep */

static bool parse_seg_name(const char *name, uint64_t *version) {
  char *end;
  if (name[0] < '1' || name[0] > '9') return false;
  errno = 0;
  unsigned long long v = strtoull(name, &end, 10);
  if (errno || strcmp(end, ".seg")) return false;
  *version = v;
  return true;
}

/* Remove segment files of @p dataset that no record names. */
static int sweep_dir(snap_store *s, struct snap__txn *t, const char *dataset,
                     const struct snap__dsrec *ds, struct snap_error *err) {
  int dfd = openat(s->segfd, dataset, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) /* gone, or a stray file that is not a dataset directory */
    return errno == ENOENT || errno == ENOTDIR
               ? 0
               : snap__errno(err, -errno, "%s/segments/%s", s->path, dataset);
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return snap__errno(err, -e, "%s/segments/%s", s->path, dataset);
  }
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d))) {
    uint64_t v;
    struct snap__verrec vr;
    if (!parse_seg_name(e->d_name, &v)) continue;
    if (ds && snap__ver_get(t, ds->id, v, &vr, NULL) == 0) continue;
    if (unlinkat(dfd, e->d_name, 0) && errno != ENOENT) {
      rc = snap__errno(err, -errno, "%s/segments/%s/%s: unlink orphan", s->path, dataset,
                       e->d_name);
      break;
    }
  }
  closedir(d);
  return rc;
}

int snap__sweep_orphans(snap_store *s, struct snap_error *err) {
  /* Inside a write txn: no publisher can be between linkat and commit. */
  struct snap__txn *t;
  pthread_mutex_lock(&s->lock);
  struct snap__control *c;
  int rc = snap__store_control(s, &c, err);
  if (!rc) snap__control_reader_check(c);
  pthread_mutex_unlock(&s->lock);
  if (rc || (rc = snap__store_txn(s, true, &t, err))) return rc;
  int sfd = dup(s->segfd);
  DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
  if (!d) {
    rc = snap__errno(err, -errno, "%s/segments", s->path);
    if (sfd >= 0) close(sfd);
    snap__txn_abort(t);
    return rc;
  }
  rewinddir(d);
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    struct snap__dsrec ds;
    int g = snap__ds_get(t, e->d_name, &ds, NULL);
    if (g && g != SNAP_ENOTFOUND) {
      rc = snap__err(err, g, "%s: reading dataset \"%s\"", s->path, e->d_name);
      break;
    }
    rc = sweep_dir(s, t, e->d_name, g ? NULL : &ds, err);
  }
  closedir(d);
  if (rc) {
    snap__txn_abort(t);
    return rc;
  }
  if ((rc = snap__txn_commit(t, err))) return rc;
  /* A publisher that died between its commit and its flips bump left readers
   * believing the old version is current: bump for it. */
  snap__flips_bump(s);
  return 0;
}

/* ------------------------------------------------------- dataset directory
 *
 * segments/<dataset>/ is also the dataset's lock: every publish holds
 * flock(LOCK_SH) on it from before it reserves a version number until it has
 * committed or given up, and whoever removes the dataset record (a drop, or
 * the last failed first publish) holds LOCK_EX. So a record is never removed
 * under a publish in progress, and a record removed is never half-used.
 *
 * It also keeps the tombstone: segments/<dataset>/.next_version holds the
 * dataset's next version number when its record was removed, and a dataset
 * created again under that name starts there. Readers cache mappings by name
 * and version, so a number must never name two different segments. The
 * directory (and the tombstone) outlive the record on purpose. */

#define TOMBSTONE ".next_version"

int snap__dataset_dir_lock(snap_store *s, const char *dataset, int how, int *out,
                           struct snap_error *err) {
  *out = -1;
  if (mkdirat(s->segfd, dataset, SNAP__MODE_DIR) && errno != EEXIST)
    return snap__errno(err, -errno, "%s/segments/%s", s->path, dataset);
  int fd = openat(s->segfd, dataset, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return snap__errno(err, -errno, "%s/segments/%s", s->path, dataset);
  while (flock(fd, how)) {
    if (errno == EINTR) continue;
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return snap__err(err, SNAP_EBUSY,
                       "%s/segments/%s: a publish of \"%s\" is in progress", s->path,
                       dataset, dataset);
    return snap__errno(err, -e, "%s/segments/%s: flock", s->path, dataset);
  }
  *out = fd;
  return 0;
}

uint64_t snap__tombstone_get(int segfd, const char *dataset) {
  char rel[SNAP_DATASET_NAME_MAX + 32], buf[32];
  snprintf(rel, sizeof rel, "%s/" TOMBSTONE, dataset);
  int fd = openat(segfd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = 0;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  return errno || end == buf || v < 1 ? 1 : (uint64_t)v;
}

/* Raise the tombstone of the dataset whose directory is @p dsfd to @p next. */
static int tombstone_put(snap_store *s, int dsfd, const char *dataset, uint64_t next,
                         struct snap_error *err) {
  if (snap__tombstone_get(s->segfd, dataset) >= next) return 0;
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)next);
  unlinkat(dsfd, TOMBSTONE ".tmp", 0); /* left by a crash, and read-only */
  int fd = openat(dsfd, TOMBSTONE ".tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  SNAP__MODE_SEGMENT);
  if (fd < 0)
    return snap__errno(err, -errno, "%s/segments/%s/" TOMBSTONE ".tmp", s->path, dataset);
  bool ok = write(fd, buf, (size_t)len) == len;
  int e = errno;
  close(fd);
  if (!ok || renameat(dsfd, TOMBSTONE ".tmp", dsfd, TOMBSTONE)) {
    if (ok) e = errno;
    unlinkat(dsfd, TOMBSTONE ".tmp", 0);
    return snap__errno(err, -e, "%s/segments/%s/" TOMBSTONE, s->path, dataset);
  }
  return 0;
}

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
      tombstone_put(s, dsfd, dataset, ds.next_version, NULL) ||
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
  if ((rc = tombstone_put(s, dsfd, dataset, ds.next_version, err))) goto out;
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
    snprintf(name, sizeof name, "%llu.seg", (unsigned long long)h.v[i]);
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
