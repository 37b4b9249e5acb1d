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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------ reclamation */

struct drain {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t id, version, bytes;
  uint32_t state; /* DRAINING or LENDING */
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
  if (rec->state != SNAP_STATE_DRAINING && rec->state != SNAP_STATE_LENDING) return 0;
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
  d->state = rec->state;
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
 * (draining), that nobody can pin (lending), or whose file is already gone. */
static int reclaim_locked(snap_store *s, const struct drain *d, struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__verrec vr;
  rc = snap__ver_get(t, d->id, d->version, &vr, NULL);
  if (rc == SNAP_ENOTFOUND || (!rc && vr.state != d->state)) {
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

/* ------------------------------------------------- chunks lent (format v2) */

/* Per lender: the file offsets of its chunks that live versions borrow. */
struct lent {
  uint64_t version;
  uint64_t *off;
  size_t n, cap;
};

struct live {
  snap_store *s;
  const char *dataset;
  struct lent *lenders;
  size_t nlenders;
  const uint64_t *skip; /* versions being reclaimed (locked): not live */
  size_t nskip;
  int rc;
  struct snap_error *err;
};

static struct lent *lent_find(struct live *lv, uint64_t version) {
  for (size_t i = 0; i < lv->nlenders; i++)
    if (lv->lenders[i].version == version) return &lv->lenders[i];
  return NULL;
}

/* Record which lenders' chunks version @p v borrows. -1 when it cannot be read
 * (then nothing may be freed). */
static int borrowed_by(struct live *lv, uint64_t v) {
  char rel[512];
  snap__seg_relpath(rel, sizeof rel, lv->dataset, v);
  int fd = openat(lv->s->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? 0 : -1; /* its own gc or a crash: no borrower */
  uint8_t h[SNAP__HEADER_SIZE];
  struct stat st;
  if (fstat(fd, &st) || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
    close(fd);
    return -1;
  }
  if (memcmp(h, SNAP__MAGIC, 8) || snap__get32(h + SNAP__H_FORMAT) != SNAP__FORMAT_V2 ||
      snap__get32(h + SNAP__H_NFILES) == 0) {
    close(fd);
    return memcmp(h, SNAP__MAGIC, 8) ? -1 : 0; /* v1, or borrows nothing */
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return -1;
  struct snap__segment seg;
  int rc = snap__segment_parse(m, (uint64_t)st.st_size, SNAP__SEG_NO_DATA, rel,
                               lv->dataset, v, &seg, NULL);
  if (!rc) {
    uint64_t chunk = 1ull << seg.chunk_shift;
    for (uint64_t k = 0; k < seg.nchunks && !rc; k++) {
      if (!seg.chunks[k].file) continue;
      struct lent *l = lent_find(lv, seg.files[seg.chunks[k].file - 1]);
      if (!l) continue;
      if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void *p = realloc(l->off, cap * sizeof *l->off);
        if (!p) {
          rc = -1;
          break;
        }
        l->off = p;
        l->cap = cap;
      }
      l->off[l->n++] = seg.data_offset + k * chunk;
    }
    snap__segment_free(&seg);
  }
  munmap(m, (size_t)st.st_size);
  return rc ? -1 : 0;
}

static int live_ver(uint64_t version, const struct snap__verrec *rec, void *arg) {
  struct live *lv = arg;
  if (rec->state == SNAP_STATE_LENDING) return 0;
  for (size_t i = 0; i < lv->nskip; i++)
    if (lv->skip[i] == version) return 0;
  if (borrowed_by(lv, version)) lv->rc = -1;
  return 0;
}

/* Punch every chunk of lender @p l's file that no live version borrows; the
 * file then holds only what it lends. Returns the bytes it still holds in
 * *held. The file is read-only (0440): made writable for the punch only. */
static int punch(snap_store *s, const char *dataset, struct lent *l, uint64_t *held,
                 struct snap_error *err) {
  char rel[512];
  snap__seg_relpath(rel, sizeof rel, dataset, l->version);
  int fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), wfd = -1, rc = 0;
  if (fd < 0) return snap__errno(err, -errno, "%s/%s", s->path, rel);
  uint8_t h[SNAP__HEADER_SIZE];
  struct stat st;
  if (fstat(fd, &st) || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
    rc = snap__errno(err, -errno, "%s/%s: header", s->path, rel);
    goto out;
  }
  uint64_t doff = snap__get64(h + SNAP__H_DATA_OFFSET);
  uint32_t shift = snap__get32(h + SNAP__H_CHUNK_SHIFT);
  if (shift < SNAP__CHUNK_SHIFT_MIN || shift > SNAP__CHUNK_SHIFT_MAX ||
      doff > (uint64_t)st.st_size) {
    rc = snap__err(err, SNAP_ECORRUPT, "%s/%s: chunk geometry", s->path, rel);
    goto out;
  }
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (fchmod(fd, SNAP__MODE_FILE) || (wfd = open(proc, O_WRONLY | O_CLOEXEC)) < 0) {
    rc = snap__errno(err, -errno, "%s/%s: opening to free chunks", s->path, rel);
    fchmod(fd, SNAP__MODE_SEGMENT);
    goto out;
  }
  fchmod(fd, SNAP__MODE_SEGMENT);
  qsort(l->off, l->n, sizeof *l->off, snap__cmp_u64);
  uint64_t chunk = 1ull << shift, cur = doff, size = (uint64_t)st.st_size;
  size_t i = 0;
  while (cur < size) {
    while (i < l->n && l->off[i] < cur) i++;
    uint64_t stop = i < l->n ? l->off[i] : size;
    if (stop > cur && fallocate(wfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)cur, (off_t)(stop - cur))) {
      rc = snap__errno(err, -errno, "%s/%s: freeing chunks at %llu", s->path, rel,
                       (unsigned long long)cur);
      goto out;
    }
    cur = stop + chunk;
  }
  snap__crash_point(); /* punched, state not yet lending */
  if (!fstat(fd, &st)) *held = (uint64_t)st.st_blocks * 512;
out:
  if (wfd >= 0) close(wfd);
  close(fd);
  return rc;
}

/* Mark @p d lending with @p held bytes (it was draining or lending). */
static int set_lending(snap_store *s, const struct drain *d, uint64_t held,
                       struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__verrec vr;
  rc = snap__ver_get(t, d->id, d->version, &vr, NULL);
  if (rc || vr.state != d->state) {
    snap__txn_abort(t);
    return rc == SNAP_ENOTFOUND || !rc ? 0 : rc;
  }
  vr.state = SNAP_STATE_LENDING;
  vr.bytes = held;
  if ((rc = snap__ver_put(t, d->id, d->version, &vr, err))) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
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

/*
 * One dataset's draining and lending versions, d[0..n).
 *
 * 1. Take LOCK_EX|LOCK_NB on each draining version (blocking on @p wait_for):
 *    the ones we get nobody pins, and nobody can pin while we hold it.
 * 2. Read which chunks of those and of the lending versions the other
 *    versions (current, retained, draining but pinned) borrow, from their
 *    manifests, in a fresh read after the locks. A version published later
 *    borrows only through its base, which is one of those (it pins its base
 *    until its own flip), so nothing borrowed can be missed.
 * 3. A version none of whose chunks is borrowed goes (record and file). One
 *    whose chunks are borrowed keeps only those: the rest are punched out of
 *    its file, and its state becomes lending (not pinnable).
 * Crash windows: punching comes before the state change; a crash between
 * leaves a draining version with holes, which pins refuse (a pin checks the
 * state after its lock) and the next gc finishes.
 */
static int gc_dataset(snap_store *s, struct drain *d, size_t n, uint64_t wait_for,
                      bool dry, snap_gc_cb cb, void *arg, struct snap_gc_stats *st,
                      struct snap_error *err) {
  int *fd = malloc(n * sizeof *fd);
  uint64_t *skip = malloc(n * sizeof *skip);
  struct lent *lenders = calloc(n, sizeof *lenders);
  struct drain **who = calloc(n, sizeof *who);
  int rc = 0;
  size_t nskip = 0, nl = 0;
  if (!fd || !skip || !lenders || !who) {
    rc = snap__errno(err, -ENOMEM, "gc");
    goto out;
  }
  for (size_t i = 0; i < n; i++) fd[i] = -1;
  for (size_t i = 0; i < n; i++) {
    if (wait_for && d[i].version != wait_for && d[i].state == SNAP_STATE_DRAINING)
      continue; /* snap_reclaim_wait: only that one */
    if (d[i].state == SNAP_STATE_LENDING) {
      lenders[nl].version = d[i].version;
      who[nl++] = &d[i];
      continue;
    }
    char rel[512];
    snap__seg_relpath(rel, sizeof rel, d[i].dataset, d[i].version);
    int f = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC);
    if (f < 0 && errno != ENOENT) {
      rc = snap__errno(err, -errno, "%s/%s", s->path, rel);
      goto out;
    }
    if (f >= 0 && flock(f, LOCK_EX | (wait_for ? 0 : LOCK_NB))) {
      int e = errno;
      struct stat sb;
      size_t holders = 0;
      if (!fstat(f, &sb)) snap__lock_holders(sb.st_dev, sb.st_ino, NULL, 0, &holders);
      close(f);
      if (e != EWOULDBLOCK) {
        rc = snap__errno(err, -e, "%s/%s: flock", s->path, rel);
        goto out;
      }
      struct snap_gc_item item = {d[i].dataset, d[i].version, d[i].bytes, 0,
                                  (int32_t)holders};
      st->draining_versions++;
      st->draining_bytes += d[i].bytes;
      if (cb) cb(&item, arg);
      continue;
    }
    fd[i] = f;
    skip[nskip++] = d[i].version;
    lenders[nl].version = d[i].version;
    who[nl++] = &d[i];
  }
  if (!nl) goto out;
  struct live lv = {s, d[0].dataset, lenders, nl, skip, nskip, 0, err};
  struct snap__txn *t;
  if ((rc = snap__store_txn(s, false, &t, err))) goto out;
  rc = snap__ver_each(t, d[0].id, live_ver, &lv, err);
  snap__txn_abort(t);
  if (rc) goto out;
  if (lv.rc) goto out; /* a live version's manifest unreadable: free nothing now */
  for (size_t j = 0; j < nl && !rc; j++) {
    struct drain *x = who[j];
    struct snap_gc_item item = {x->dataset, x->version, x->bytes, 1, 0};
    if (!lenders[j].n) { /* nothing borrowed: the version goes */
      int r = dry ? 0 : reclaim_locked(s, x, err);
      if (r == SNAP_EBUSY) continue;
      if (r) {
        rc = r;
        break;
      }
      st->freed_versions++;
      st->freed_bytes += x->bytes;
      if (cb) cb(&item, arg);
      continue;
    }
    if (dry) {
      if (x->state == SNAP_STATE_DRAINING) {
        item.freed = 2;
        st->lending_versions++;
        if (cb) cb(&item, arg);
      }
      continue;
    }
    uint64_t held = x->bytes;
    if ((rc = punch(s, x->dataset, &lenders[j], &held, err))) break;
    if ((rc = set_lending(s, x, held, err))) break;
    if (x->state == SNAP_STATE_DRAINING || held < x->bytes) {
      item.freed = 2;
      item.bytes = x->bytes > held ? x->bytes - held : 0;
      st->lending_versions++;
      st->freed_bytes += item.bytes;
      if (cb) cb(&item, arg);
    }
  }
out:
  if (fd)
    for (size_t i = 0; i < n; i++)
      if (fd[i] >= 0) close(fd[i]);
  if (lenders)
    for (size_t j = 0; j < n; j++) free(lenders[j].off);
  free(fd);
  free(skip);
  free(lenders);
  free(who);
  return rc;
}

int snap__gc(snap_store *s, const char *dataset, unsigned flags, snap_gc_cb cb, void *arg,
             struct snap_gc_stats *stats, struct snap_error *err) {
  struct snap_gc_stats st = {0};
  struct drains l;
  int rc = collect(s, dataset, &l, err);
  if (rc) return rc;
  for (size_t i = 0; i < l.n && !rc;) {
    size_t j = i;
    while (j < l.n && l.d[j].id == l.d[i].id) j++;
    rc = gc_dataset(s, l.d + i, j - i, 0, flags & SNAP_GC_DRY_RUN, cb, arg, &st, err);
    i = j;
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
  struct snap_gc_stats st = {0};
  for (size_t i = 0; i < l.n; i++) {
    if (l.d[i].version != version || l.d[i].state != SNAP_STATE_DRAINING) continue;
    size_t a = i, b = i;
    while (a > 0 && l.d[a - 1].id == l.d[i].id) a--;
    while (b < l.n && l.d[b].id == l.d[i].id) b++;
    rc = gc_dataset(s, l.d + a, b - a, version, false, NULL, NULL, &st, err);
    break;
  }
  free(l.d);
  return rc < 0 ? rc : 0;
}
