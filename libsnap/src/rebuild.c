/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snap_store_rebuild: a new control file from the segment headers.
 *
 * Segments are self-describing (store id, dataset, version, checksums), so
 * everything the control file holds except the retention history can be
 * derived from them. Order of the swap, chosen so that no moment leaves a
 * store a writer could mistake for a new one: build the new environment under
 * a temporary name; rename the old control.mdb aside (never delete it); drop
 * the old lock file (it holds no data, and a stale reader table or txnid
 * must not be inherited by the new file); rename the new file into place;
 * bump flips. During the gap an opener finds no control file next to
 * segments and refuses (store.c), even with SNAP_CREATE.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_KEEP 2

struct found {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version;
  struct snap__verrec rec;
};

struct scan {
  struct found *v;
  size_t n, cap;
  bool have_id;
  uint8_t store_id[16];
  char id_from[600];
};

static int cmp_found(const void *a, const void *b) {
  const struct found *x = a, *y = b;
  int c = strcmp(x->dataset, y->dataset);
  if (c) return c;
  return x->version < y->version ? -1 : x->version > y->version;
}

static void report(snap_rebuild_cb cb, void *arg, const char *ds, uint64_t v, int status,
                   uint32_t state, const char *msg) {
  if (!cb) return;
  struct snap_rebuild_item it = {ds, v, status, state, msg ? msg : ""};
  cb(&it, arg);
}

/* v2: the chunks the file holds itself. A chunk that is a hole whose hash is
 * not that of zeros was punched by gc: the version was lending chunks (1). With
 * @p deep, every other own chunk's hash is checked (SNAP_ECHECKSUM). */
static int v2_own_chunks(int fd, const struct snap__segment *seg, const uint8_t *base,
                         bool deep, const char *what, struct snap_error *err) {
  uint64_t chunk = 1ull << seg->chunk_shift,
           zhash = snap__zero_chunk_hash(seg->chunk_shift);
  int lending = 0;
  for (uint64_t k = 0; k < seg->nchunks; k++) {
    if (seg->chunks[k].file) continue;
    uint64_t off = seg->data_offset + k * chunk;
    bool hole = snap__is_hole(fd, off, chunk);
    if (hole && seg->chunks[k].hash != zhash) {
      lending = 1;
      continue;
    }
    if (deep && !hole && snap__chunk_hash(base + off, chunk) != seg->chunks[k].hash)
      return snap__err(err, SNAP_ECHECKSUM, "%s: chunk %llu (offset %llu): checksum",
                       what, (unsigned long long)k, (unsigned long long)off);
  }
  if (deep && !lending) {
    /* the table itself, against the header */
    uint64_t h[2];
    snap__table_hash(base + seg->chunk_table, seg->nchunks, h);
    if (h[0] != seg->data_hash[0] || h[1] != seg->data_hash[1])
      return snap__err(err, SNAP_ECHECKSUM, "%s: chunk table checksum", what);
  }
  return lending;
}

/* Validate one segment file; 0 and *rec filled, or a status with err. */
static int seg_check(int dfd, const char *name, const char *what, const char *dataset,
                     uint64_t version, unsigned flags, struct snap__verrec *rec,
                     uint8_t store_id[16], struct snap_error *err) {
  int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return snap__errno(err, -errno, "%s", what);
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return snap__err(err, SNAP_ECORRUPT, "%s: not a regular file", what);
  }
  if (st.st_size < (off_t)SNAP__HEADER_SIZE) {
    close(fd);
    return snap__err(err, SNAP_ECORRUPT, "%s: size %lld, less than a header", what,
                     (long long)st.st_size);
  }
  void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    close(fd);
    return snap__errno(err, -errno, "%s: mmap", what);
  }
  struct snap__segment seg;
  /* The data checks need a composed view, which a v2 file that borrows chunks
   * cannot give alone: its own chunks are checked instead. */
  int rc = snap__segment_parse(base, (uint64_t)st.st_size, SNAP__SEG_NO_DATA, what,
                               dataset, version, &seg, err);
  uint32_t state = SNAP_STATE_RETAINED;
  if (!rc && seg.format == SNAP__FORMAT_V2) {
    int lend = v2_own_chunks(fd, &seg, base, flags & SNAP_REBUILD_DEEP, what, err);
    if (lend < 0) rc = lend;
    if (lend == 1) state = SNAP_STATE_LENDING;
    if (!rc && !seg.nfiles && state != SNAP_STATE_LENDING)
      rc = snap__segment_check_data(&seg, what, err);
  } else if (!rc) {
    rc = snap__segment_check_data(&seg, what, err);
    if (!rc && (flags & SNAP_REBUILD_DEEP))
      rc = snap__segment_verify_data(&seg, base, what, err);
  }
  close(fd);
  if (!rc) {
    *rec = (struct snap__verrec){.state = state,
                                 .ncols = seg.ncols,
                                 .nrows = seg.nrows,
                                 .bytes = (uint64_t)st.st_size,
                                 .created_ns = seg.created_ns,
                                 .data_hash = {seg.data_hash[0], seg.data_hash[1]},
                                 .header_hash = seg.header_hash};
    memcpy(store_id, seg.store_id, 16);
    snap__segment_free(&seg);
  }
  munmap(base, (size_t)st.st_size);
  return rc;
}

/* Walk segments/: record whole versions, set damaged ones aside. */
static int scan(const char *path, int segfd, unsigned flags, snap_rebuild_cb cb,
                void *arg, struct scan *sc, uint64_t **maxv, char ***names,
                size_t *nnames, struct snap_error *err) {
  int fd = openat(segfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *top = fd >= 0 ? fdopendir(fd) : NULL;
  if (!top) {
    int e = errno;
    if (fd >= 0) close(fd);
    return snap__errno(err, -e, "%s/segments", path);
  }
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(top))) {
    if (e->d_name[0] == '.' || snap__dataset_name_check(e->d_name, NULL)) continue;
    int dfd = openat(segfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
      if (dfd >= 0) close(dfd);
      continue;
    }
    char **nn = realloc(*names, (*nnames + 1) * sizeof *nn);
    uint64_t *mv = realloc(*maxv, (*nnames + 1) * sizeof *mv);
    if (nn) *names = nn;
    if (mv) *maxv = mv;
    if (!nn || !mv || !((*names)[*nnames] = strdup(e->d_name))) {
      closedir(d);
      rc = snap__errno(err, -ENOMEM, "rebuild");
      break;
    }
    size_t di = (*nnames)++;
    (*maxv)[di] = 0;
    struct dirent *f;
    while (!rc && (f = readdir(d))) {
      uint64_t v;
      if (!snap__seg_name_parse(f->d_name, &v)) continue;
      if (v > (*maxv)[di]) (*maxv)[di] = v;
      char what[600];
      snprintf(what, sizeof what, "%s/segments/%s/%s", path, e->d_name, f->d_name);
      struct snap_error serr = {0};
      struct snap__verrec rec;
      uint8_t id[16];
      int s = seg_check(dirfd(d), f->d_name, what, e->d_name, v, flags, &rec, id, &serr);
      if (s == -ENOMEM) {
        rc = snap__errno(err, s, "rebuild");
        break;
      }
      if (s) {
        /* set aside under a name the orphan sweep never matches */
        char aside[300];
        snprintf(aside, sizeof aside, "%s" SNAP__DAMAGED_SUFFIX, f->d_name);
        renameat(dirfd(d), f->d_name, dirfd(d), aside);
        report(cb, arg, e->d_name, v, s, 0, serr.message);
        continue;
      }
      if (!sc->have_id) {
        memcpy(sc->store_id, id, 16);
        snprintf(sc->id_from, sizeof sc->id_from, "%s", what);
        sc->have_id = true;
      } else if (memcmp(sc->store_id, id, 16)) {
        rc = snap__err(err, SNAP_ECORRUPT,
                       "%s and %s carry different store ids: segments of two stores are "
                       "mixed; move the foreign ones out and run the rebuild again",
                       sc->id_from, what);
        break;
      }
      if (sc->n == sc->cap) {
        size_t cap = sc->cap ? 2 * sc->cap : 64;
        void *p = realloc(sc->v, cap * sizeof *sc->v);
        if (!p) {
          rc = snap__errno(err, -ENOMEM, "rebuild");
          break;
        }
        sc->v = p;
        sc->cap = cap;
      }
      struct found *fo = &sc->v[sc->n++];
      snprintf(fo->dataset, sizeof fo->dataset, "%s", e->d_name);
      fo->version = v;
      fo->rec = rec;
    }
    closedir(d);
  }
  closedir(top);
  return rc;
}

/* Write the meta, dataset and version records into the new environment. */
static int fill(struct snap__control *c, int segfd, struct scan *sc, char **names,
                uint64_t *maxv, size_t nnames, snap_rebuild_cb cb, void *arg,
                struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__txn_begin(c, true, &t, err);
  if (rc) return rc;
  struct snap__meta m = {.format = SNAP__CONTROL_FORMAT, .default_keep = DEFAULT_KEEP};
  if (sc->have_id)
    memcpy(m.store_id, sc->store_id, 16);
  else if (getrandom(m.store_id, 16, 0) != 16)
    rc = snap__errno(err, -errno, "getrandom");
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
  if (f) {
    if (fgets(m.boot_id, sizeof m.boot_id, f)) m.boot_id[strcspn(m.boot_id, "\n")] = 0;
    fclose(f);
  }
  qsort(sc->v, sc->n, sizeof *sc->v, cmp_found);
  uint64_t id = 1;
  for (size_t di = 0; !rc && di < nnames; di++) {
    size_t first = 0, n = 0;
    for (size_t i = 0; i < sc->n; i++)
      if (!strcmp(sc->v[i].dataset, names[di])) {
        if (!n) first = i;
        n++;
      }
    if (!n && !maxv[di]) continue; /* an empty directory: no dataset */
    /* a dropped and recreated dataset's tombstone may be past its files */
    uint64_t tomb = snap__tombstone_get(segfd, names[di]), cur = 0;
    for (size_t i = first + n; !cur && i-- > first;) /* a lender cannot be current */
      if (sc->v[i].rec.state != SNAP_STATE_LENDING) cur = sc->v[i].version;
    struct snap__dsrec ds = {.id = id++,
                             .current = cur,
                             .next_version = maxv[di] + 1 > tomb ? maxv[di] + 1 : tomb,
                             .keep = DEFAULT_KEEP};
    for (size_t i = first; !rc && i < first + n; i++)
      rc = snap__ver_put(t, ds.id, sc->v[i].version, &sc->v[i].rec, err);
    if (!rc) rc = snap__ds_put(t, names[di], &ds, err);
    if (!rc) rc = snap__retain(t, &ds, err);
    for (size_t i = first; !rc && i < first + n; i++) {
      struct snap__verrec r;
      if (!snap__ver_get(t, ds.id, sc->v[i].version, &r, NULL))
        report(cb, arg, names[di], sc->v[i].version, 0, r.state, NULL);
    }
  }
  m.next_dataset_id = id;
  if (!rc) rc = snap__meta_put(t, &m, err);
  if (rc) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
}

/* Take @p name exclusively (without creating it unless @p create). */
static int lock_ex(int dirfd, const char *path, const char *name, bool create, int *out,
                   struct snap_error *err) {
  *out = -1;
  int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0),
                  SNAP__MODE_FILE);
  if (fd < 0) return errno == ENOENT ? 0 : snap__errno(err, -errno, "%s/%s", path, name);
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    *out = fd;
    return 0;
  }
  int e = errno;
  struct stat st;
  pid_t pids[4];
  size_t n = 0;
  if (e == EWOULDBLOCK && !fstat(fd, &st))
    snap__lock_holders(st.st_dev, st.st_ino, pids, 4, &n);
  close(fd);
  if (e != EWOULDBLOCK) return snap__errno(err, -e, "%s/%s: flock", path, name);
  return snap__err(err, SNAP_EBUSY,
                   "%s/%s is held by pid %d%s: a writer has the store open; stop it "
                   "(or close its handle) before rebuilding the control file",
                   path, name, n ? (int)pids[0] : 0, n > 1 ? " and others" : "");
}

static int flips_bump(int dirfd, const char *path, struct snap_error *err) {
  int fd = openat(dirfd, "flips", O_RDWR | O_CREAT | O_CLOEXEC, SNAP__MODE_FILE);
  if (fd < 0) return snap__errno(err, -errno, "%s/flips", path);
  struct stat st;
  if (fstat(fd, &st) || (st.st_size < 4096 && ftruncate(fd, 4096))) {
    int e = errno;
    close(fd);
    return snap__errno(err, -e, "%s/flips", path);
  }
  void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return snap__errno(err, -e, "%s/flips: mmap", path);
  atomic_fetch_add_explicit((_Atomic uint64_t *)((char *)p + 64), 1,
                            memory_order_release);
  munmap(p, 4096);
  return 0;
}

int snap_store_rebuild(const char *path, unsigned flags, snap_rebuild_cb cb, void *arg,
                       struct snap_error *err) {
  if (flags & ~SNAP_REBUILD_DEEP)
    return snap__err(err, SNAP_EINVAL, "snap_store_rebuild: flags 0x%x unknown", flags);
  if (!path || !*path) path = getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return errno == ENOENT
               ? snap__err(err, SNAP_ENOTFOUND, "%s: no store directory", path)
               : snap__errno(err, -errno, "%s", path);
  int segfd = openat(dirfd, "segments", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int wdfd = -1, wfd = -1, rc;
  struct scan sc = {0};
  uint64_t *maxv = NULL;
  char **names = NULL;
  size_t nnames = 0;
  char ctl[4200], tmp[4200], aside[4300];
  if (segfd < 0) {
    rc = snap__errno(err, -errno, "%s/segments", path);
    goto out;
  }
  /* writerd first (it opens the store after taking its lock), then library
   * writers; both stay locked until the new file is in place */
  if ((rc = lock_ex(dirfd, path, "writerd.lock", false, &wdfd, err)) ||
      (rc = lock_ex(dirfd, path, "flips", true, &wfd, err)))
    goto out;
  if ((rc = scan(path, segfd, flags, cb, arg, &sc, &maxv, &names, &nnames, err)))
    goto out;
  snap__control_path(ctl, sizeof ctl, path);
  snprintf(tmp, sizeof tmp, "%s/control.mdb.rebuild", path);
  unlinkat(dirfd, "control.mdb.rebuild", 0);
  unlinkat(dirfd, "control.mdb.rebuild-lock", 0);
  struct snap__control *c;
  if ((rc = snap__control_open(tmp, true, &c, err))) goto out;
  rc = fill(c, segfd, &sc, names, maxv, nnames, cb, arg, err);
  snap__control_close(c);
  if (rc) goto out;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  /* never over an earlier damaged file: a second rebuild in the same second
   * gets a suffix */
  int r = -1;
  for (int i = 0; i < 100; i++) {
    snprintf(aside, sizeof aside,
             i ? "control.mdb.damaged-%s.%d" : "control.mdb.damaged-%s", stamp, i);
    if (!(r = renameat2(dirfd, "control.mdb", dirfd, aside, RENAME_NOREPLACE)) ||
        errno != EEXIST)
      break;
  }
  if (r && errno != ENOENT) {
    rc = snap__errno(err, -errno, "%s: moving it aside to %s", ctl, aside);
    goto out;
  }
  unlinkat(dirfd, "control.mdb-lock", 0);
  if (renameat(dirfd, "control.mdb.rebuild", dirfd, "control.mdb")) {
    rc = snap__errno(err, -errno, "%s: installing the rebuilt file", ctl);
    goto out;
  }
  unlinkat(dirfd, "control.mdb.rebuild-lock", 0);
  fchmodat(dirfd, "control.mdb", SNAP__MODE_FILE, 0);
  rc = flips_bump(dirfd, path, err);
out:
  for (size_t i = 0; i < nnames; i++) free(names[i]);
  free(names);
  free(maxv);
  free(sc.v);
  if (wfd >= 0) close(wfd);
  if (wdfd >= 0) close(wdfd);
  if (segfd >= 0) close(segfd);
  close(dirfd);
  return rc;
}
