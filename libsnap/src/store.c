/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Store handles: the directory, the control file, the shared flips page, and
 * the read-only queries over datasets and versions.
 *
 * The flips page is one 4 KiB file mapped by every process. Writers bump the
 * counter after every committed change of a current version; readers compare
 * it with what they last saw using one atomic load and only then look at the
 * control file. LMDB is the single source of truth; the counter is a hint
 * that can only be late, never wrong (it is bumped after the commit).
 */
#define _GNU_SOURCE
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

#define FLIPS_SIZE 4096
#define FLIPS_COUNTER 64 /* own cache line */
#define DEFAULT_KEEP 2

uint64_t snap__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* mkdir -p for the store directory itself. */
static int mkdirs(const char *path) {
  char *tmp = strdup(path);
  if (!tmp) return -ENOMEM;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) && errno != EEXIST) {
      int e = errno;
      free(tmp);
      return -e;
    }
    *p = '/';
  }
  /* parents stay world-searchable; the store directory itself is not */
  int rc = 0;
  if (mkdir(tmp, SNAP__MODE_DIR) == 0)
    chmod(tmp, SNAP__MODE_DIR); /* setgid past umask */
  else if (errno != EEXIST)
    rc = -errno;
  free(tmp);
  return rc;
}

static void read_boot_id(char out[40]) {
  memset(out, 0, 40);
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
  if (!f) return;
  if (fgets(out, 40, f)) out[strcspn(out, "\n")] = 0;
  fclose(f);
}

/* A store whose segments outlived its control file: creating a new control
 * file would make the first writer sweep every segment as an orphan. */
static int refuse_new_control(const char *path, const char *why, struct snap_error *err) {
  /* the repair first: the message is cut at 255 bytes */
  return snap__err(err, SNAP_ECONTROL,
                   "%s/control.mdb: %s next to segments (repair: snapctl --store %s "
                   "doctor --rebuild); not creating a new one over them",
                   path, why, path);
}

/* Read the meta record, creating it when the store is new. */
static int meta_init(snap_store *s, bool create, struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__txn_begin(s->control, create, &t, err);
  if (rc) return rc;
  struct snap__meta m;
  rc = snap__meta_get(t, &m, err);
  if (rc == SNAP_ENOTFOUND && create && snap__segments_present(s->segfd)) {
    snap__txn_abort(t);
    return refuse_new_control(s->path, "no meta record", err);
  }
  if (rc == SNAP_ENOTFOUND && create) {
    memset(&m, 0, sizeof m);
    if (getrandom(m.store_id, sizeof m.store_id, 0) != (ssize_t)sizeof m.store_id) {
      snap__txn_abort(t);
      return snap__errno(err, -errno, "%s: getrandom for the store id", s->path);
    }
    m.format = SNAP__CONTROL_FORMAT;
    m.default_keep = DEFAULT_KEEP;
    m.next_dataset_id = 1;
    read_boot_id(m.boot_id);
    if ((rc = snap__meta_put(t, &m, err))) {
      snap__txn_abort(t);
      return rc;
    }
    if ((rc = snap__txn_commit(t, err))) return rc;
    memcpy(s->store_id, m.store_id, 16);
    return 0;
  }
  snap__txn_abort(t);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND,
                     "%s: control file has no meta record (not "
                     "initialised; run snapctl init)",
                     s->path);
  if (rc) return rc;
  if (m.format != SNAP__CONTROL_FORMAT)
    return snap__err(err, SNAP_EFORMAT, "%s/control.mdb: meta format = %u, expected %u",
                     s->path, m.format, SNAP__CONTROL_FORMAT);
  memcpy(s->store_id, m.store_id, 16);
  return 0;
}

static int flips_open(snap_store *s, bool create, bool rdonly, struct snap_error *err) {
  int fd = openat(
      s->dirfd, "flips",
      (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0),
      SNAP__MODE_FILE);
  if (fd < 0) return snap__errno(err, -errno, "%s/flips", s->path);
  struct stat st;
  if (fstat(fd, &st)) {
    int e = errno;
    close(fd);
    return snap__errno(err, -e, "%s/flips", s->path);
  }
  if (st.st_size < FLIPS_SIZE) {
    if (rdonly || ftruncate(fd, FLIPS_SIZE)) {
      int e = rdonly ? EINVAL : errno;
      close(fd);
      return snap__errno(err, -e, "%s/flips: size %lld, expected %d", s->path,
                         (long long)st.st_size, FLIPS_SIZE);
    }
  }
  void *p =
      mmap(NULL, FLIPS_SIZE, PROT_READ | (rdonly ? 0 : PROT_WRITE), MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return snap__errno(err, -e, "%s/flips: mmap", s->path);
  s->flips = (const _Atomic uint64_t *)((char *)p + FLIPS_COUNTER);
  if (!rdonly) s->flips_rw = (_Atomic uint64_t *)((char *)p + FLIPS_COUNTER);
  return 0;
}

static void store_free(snap_store *s) {
  if (s->pins_free) s->pins_free(s);
  snap__control_close(s->control);
  if (s->writer_fd >= 0) close(s->writer_fd);
  if (s->flips) munmap((char *)s->flips - FLIPS_COUNTER, FLIPS_SIZE);
  if (s->segfd >= 0) close(s->segfd);
  if (s->dirfd >= 0) close(s->dirfd);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->maps_lock);
  free(s->path);
  free(s);
}

void snap__store_ref(snap_store *s) { atomic_fetch_add(&s->refs, 1); }

void snap__store_unref(snap_store *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1) store_free(s);
}

int snap_store_open(const char *path, unsigned flags, snap_store **out,
                    struct snap_error *err) {
  *out = NULL;
  snap__library_init();
  if (flags & ~(SNAP_CREATE | SNAP_RDONLY))
    return snap__err(err, SNAP_EINVAL, "snap_store_open: flags 0x%x unknown", flags);
  if ((flags & SNAP_CREATE) && (flags & SNAP_RDONLY))
    return snap__err(err, SNAP_EINVAL, "snap_store_open: SNAP_CREATE with SNAP_RDONLY");
  if (!path || !*path) path = getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  bool create = flags & SNAP_CREATE, rdonly = flags & SNAP_RDONLY;
  snap_store *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path))) {
    free(s);
    return snap__errno(err, -ENOMEM, "%s", path);
  }
  atomic_init(&s->refs, 1);
  s->flags = flags;
  s->dirfd = s->segfd = s->writer_fd = -1;
  s->control_pid = getpid();
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->maps_lock, NULL);
  int rc;
  char buf[4096];
  if (create && (rc = mkdirs(path))) {
    rc = snap__errno(err, rc, "%s: creating the store directory", path);
    goto fail;
  }
  s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->dirfd < 0) {
    rc = errno == ENOENT ? snap__err(err, SNAP_ENOTFOUND,
                                     "%s: no store (create it with snapctl init)", path)
                         : snap__errno(err, -errno, "%s", path);
    goto fail;
  }
  if (create && mkdirat(s->dirfd, "segments", SNAP__MODE_DIR) == 0)
    fchmodat(s->dirfd, "segments", SNAP__MODE_DIR, 0);
  else if (create && errno != EEXIST) {
    rc = snap__errno(err, -errno, "%s/segments", path);
    goto fail;
  }
  /* incoming/: where detached publishers make their segments (same filesystem,
   * so the writer can link them in); setgid and sticky, writable by the group */
  if (create && mkdirat(s->dirfd, "incoming", SNAP__MODE_DIR) == 0)
    fchmodat(s->dirfd, "incoming", SNAP__MODE_INCOMING, 0);
  s->segfd = openat(s->dirfd, "segments", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->segfd < 0) {
    rc = errno == ENOENT ? snap__err(err, SNAP_ENOTFOUND,
                                     "%s: no segments directory "
                                     "(not a store?)",
                                     path)
                         : snap__errno(err, -errno, "%s/segments", path);
    goto fail;
  }
  snap__control_path(buf, sizeof buf, path);
  {
    /* LMDB would take a missing or empty file for a new store: only when
     * there are no segments is that true. */
    struct stat cst;
    bool missing = stat(buf, &cst) ? errno == ENOENT : cst.st_size == 0;
    if (missing && snap__segments_present(s->segfd)) {
      rc = refuse_new_control(path, stat(buf, &cst) ? "missing" : "empty", err);
      goto fail;
    }
  }
  if ((rc = snap__control_open(buf, create, &s->control, err))) goto fail;
  if ((rc = meta_init(s, create, err))) goto fail;
  if ((rc = flips_open(s, create, rdonly, err))) goto fail;
  snap__store_register(s);
  *out = s;
  return 0;
fail:
  store_free(s);
  return rc;
}

void snap_store_close(snap_store *s) {
  if (!s) return;
  snap__store_unregister(s);
  if (s->pins_close) s->pins_close(s); /* pin.c: drop the cached mappings */
  snap__store_unref(s);
}

const char *snap_store_path(const snap_store *s) { return s->path; }

void snap_store_id(const snap_store *s, uint8_t id[16]) { memcpy(id, s->store_id, 16); }

int snap__store_control(snap_store *s, struct snap__control **out,
                        struct snap_error *err) {
  /* LMDB forbids using an environment opened by the parent after fork():
   * a child opens its own on first use. */
  if (s->control_pid != getpid()) {
    char buf[4096];
    snap__control_path(buf, sizeof buf, s->path);
    struct snap__control *c;
    int rc = snap__control_open(buf, false, &c, err);
    if (rc) return rc;
    snap__control_close(s->control); /* inherited: only forgotten, see control.c */
    s->control = c;
    s->control_pid = getpid();
  }
  *out = s->control;
  return 0;
}

int snap__store_control_fresh(snap_store *s, struct snap__control **out,
                              struct snap_error *err) {
  int rc = snap__store_control(s, out, err);
  if (rc) return rc;
  if (!snap__control_stale(*out)) /* same file: are its meta pages still sane? */
    return snap__control_verify_metas(*out, err);
  /* The control file was replaced (snapctl doctor --rebuild) or deleted since
   * this process opened it: follow the new one. The old environment is
   * retired, not closed: other threads may be inside a transaction on it. */
  char buf[4096];
  snap__control_path(buf, sizeof buf, s->path);
  struct snap__control *c;
  /* out of the registry first: a file truncated in place keeps its inode, and
   * the lookup must not hand the same environment back */
  snap__control_retire(s->control);
  rc = snap__control_open(buf, false, &c, err);
  if (rc == SNAP_ENOTFOUND)
    rc = snap__err(err, SNAP_ECONTROL,
                   "%s: deleted while this process had it open (repair: snapctl doctor "
                   "--rebuild)",
                   buf);
  if (rc) return rc;
  s->control = c;
  *out = c;
  return 0;
}

int snap__store_txn(snap_store *s, bool write, struct snap__txn **out,
                    struct snap_error *err) {
  struct snap__control *c;
  pthread_mutex_lock(&s->lock);
  int rc =
      write ? snap__store_control(s, &c, err) : snap__store_control_fresh(s, &c, err);
  pthread_mutex_unlock(&s->lock);
  if (rc) {
    *out = NULL;
    return rc;
  }
  return snap__txn_begin(c, write, out, err);
}

int snap__store_writer_lock(snap_store *s, struct snap_error *err) {
  if (s->flags & SNAP_RDONLY)
    return snap__err(err, SNAP_ERDONLY, "%s: store handle is read-only", s->path);
  pthread_mutex_lock(&s->lock);
  int rc = 0;
  if (s->writer_fd < 0) {
    /* A shared flock on the flips file for the handle's life says "a writer
     * has this store open"; snap_store_rebuild() takes it exclusively. (flips:
     * every store has it, and readers never flock it.) */
    int fd = openat(s->dirfd, "flips", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      rc = snap__errno(err, -errno, "%s/flips", s->path);
    else if (flock(fd, LOCK_SH | LOCK_NB)) {
      rc = errno == EWOULDBLOCK
               ? snap__err(err, SNAP_EBUSY,
                           "%s/flips is locked: the control file is being rebuilt",
                           s->path)
               : snap__errno(err, -errno, "%s/flips: flock", s->path);
      close(fd);
    } else {
      s->writer_fd = fd;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

void snap__flips_bump(snap_store *s) {
  atomic_fetch_add_explicit(s->flips_rw, 1, memory_order_release);
}

/* ------------------------------------------------------------- queries */

void snap_free(void *ptr) { free(ptr); }

int snap_current_version(snap_store *s, const char *dataset, uint64_t *version,
                         struct snap_error *err) {
  *version = 0;
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  rc = snap__ds_get(t, dataset, &ds, err);
  snap__txn_abort(t);
  if (rc) return rc;
  if (!ds.current)
    return snap__err(err, SNAP_ENOTFOUND, "dataset \"%s\" has no version yet", dataset);
  *version = ds.current;
  return 0;
}

struct vlist {
  struct snap_version_info *v;
  size_t n, cap;
};

static int vlist_add(uint64_t version, const struct snap__verrec *rec, void *arg) {
  struct vlist *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    void *p = realloc(l->v, cap * sizeof *l->v);
    if (!p) return -ENOMEM;
    l->v = p;
    l->cap = cap;
  }
  struct snap_version_info *i = &l->v[l->n++];
  memset(i, 0, sizeof *i);
  i->version = version;
  i->state = rec->state;
  i->ncols = rec->ncols;
  i->nrows = rec->nrows;
  i->bytes = rec->bytes;
  i->created_ns = rec->created_ns;
  i->data_hash[0] = rec->data_hash[0];
  i->data_hash[1] = rec->data_hash[1];
  i->holders = -1;
  return 0;
}

/* Format 2: the bytes of the chunks the file at @p rel borrows (read from its
 * chunk table); 0 for format 1, a self-contained file, or one unreadable. */
static uint64_t shared_bytes(int dirfd, const char *rel) {
  uint8_t h[SNAP__HEADER_SIZE];
  int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  uint64_t shared = 0;
  if (pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && !memcmp(h, SNAP__MAGIC, 8) &&
      snap__get32(h + SNAP__H_FORMAT) == SNAP__FORMAT_V2 &&
      snap__get32(h + SNAP__H_NFILES)) {
    uint32_t shift = snap__get32(h + SNAP__H_CHUNK_SHIFT);
    uint64_t n = snap__get64(h + SNAP__H_NCHUNKS),
             table = snap__get64(h + SNAP__H_CHUNK_TABLE);
    uint8_t e[4096];
    for (uint64_t k = 0;
         shift >= SNAP__CHUNK_SHIFT_MIN && shift <= SNAP__CHUNK_SHIFT_MAX && k < n;) {
      uint64_t m =
          n - k < sizeof e / SNAP__CHUNK_ENTRY ? n - k : sizeof e / SNAP__CHUNK_ENTRY;
      if (pread(fd, e, m * SNAP__CHUNK_ENTRY, (off_t)(table + k * SNAP__CHUNK_ENTRY)) !=
          (ssize_t)(m * SNAP__CHUNK_ENTRY))
        break;
      for (uint64_t j = 0; j < m; j++)
        if (snap__get32(e + j * SNAP__CHUNK_ENTRY + 8)) shared += 1ull << shift;
      k += m;
    }
  }
  close(fd);
  return shared;
}

int snap_version_list(snap_store *s, const char *dataset, struct snap_version_info **out,
                      size_t *count, struct snap_error *err) {
  *out = NULL;
  *count = 0;
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  struct vlist l = {0};
  rc = snap__ds_get(t, dataset, &ds, err);
  if (!rc) rc = snap__ver_each(t, ds.id, vlist_add, &l, err);
  snap__txn_abort(t);
  if (rc == -ENOMEM) rc = snap__errno(err, rc, "listing versions of \"%s\"", dataset);
  if (rc) {
    free(l.v);
    return rc;
  }
  for (size_t i = 0; i < l.n; i++) {
    char rel[512];
    struct stat st;
    snap__seg_relpath(rel, sizeof rel, dataset, l.v[i].version);
    size_t n;
    if (fstatat(s->dirfd, rel, &st, 0) == 0) {
      l.v[i].size = (uint64_t)st.st_size;
      l.v[i].shared_bytes = shared_bytes(s->dirfd, rel);
      if (snap__lock_holders(st.st_dev, st.st_ino, NULL, 0, &n) == 0)
        l.v[i].holders = (int32_t)n;
    }
  }
  *out = l.v;
  *count = l.n;
  return 0;
}

struct dlist {
  struct snap__txn *t;
  struct snap_dataset_info *d;
  size_t n, cap;
  struct snap_error *err;
};

static int ver_sum(uint64_t version, const struct snap__verrec *rec, void *arg) {
  (void)version;
  struct snap_dataset_info *d = arg;
  d->nversions++;
  d->bytes += rec->bytes;
  return 0;
}

static int dlist_add(const char *name, size_t len, const struct snap__dsrec *rec,
                     void *arg) {
  struct dlist *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    void *p = realloc(l->d, cap * sizeof *l->d);
    if (!p) return snap__errno(l->err, -ENOMEM, "listing datasets");
    l->d = p;
    l->cap = cap;
  }
  struct snap_dataset_info *d = &l->d[l->n++];
  memset(d, 0, sizeof *d);
  memcpy(d->name, name, len);
  d->current = rec->current;
  d->next_version = rec->next_version;
  d->keep = rec->keep;
  d->followed = !!(rec->flags & SNAP__DS_FOLLOWED);
  return snap__ver_each(l->t, rec->id, ver_sum, d, l->err);
}

int snap_dataset_list(snap_store *s, struct snap_dataset_info **out, size_t *count,
                      struct snap_error *err) {
  *out = NULL;
  *count = 0;
  struct dlist l = {.err = err};
  int rc = snap__store_txn(s, false, &l.t, err);
  if (rc) return rc;
  rc = snap__ds_each(l.t, dlist_add, &l, err);
  snap__txn_abort(l.t);
  if (rc) {
    free(l.d);
    return rc;
  }
  *out = l.d;
  *count = l.n;
  return 0;
}

int snap_version_holders(snap_store *s, const char *dataset, uint64_t version,
                         pid_t *pids, size_t cap, size_t *count, struct snap_error *err) {
  *count = 0;
  char rel[512];
  struct stat st;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc) return rc;
  snap__seg_relpath(rel, sizeof rel, dataset, version);
  if (fstatat(s->dirfd, rel, &st, 0)) {
    if (errno == ENOENT)
      return snap__err(err, SNAP_ENOTFOUND, "%s/%s: no such version", s->path, rel);
    return snap__errno(err, -errno, "%s/%s", s->path, rel);
  }
  rc = snap__lock_holders(st.st_dev, st.st_ino, pids, cap, count);
  return rc ? snap__errno(err, rc, "/proc/locks") : 0;
}
