/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reader pins.
 *
 * Each process maps a version once (struct snap__map, which is the
 * snap_snapshot handed to callers) and counts references to it. The mapping
 * holds the segment's descriptor with flock(LOCK_SH): that is the pin other
 * processes see, dropped by close() when the last reference goes (never
 * LOCK_UN: a descriptor inherited across fork shares the lock).
 *
 * Per dataset, a slot caches the mapping of the version this process last
 * found current, plus the flips count at which it checked. The slot's pointer
 * is RCU-protected (urcu-bp: threads need no registration), and the slot owns
 * one reference to the mapping. Fast path of snap_pin(): load flips, compare
 * with the slot's checked count, rcu_read_lock, dereference, increment,
 * rcu_read_unlock: no lock and no system call. When flips moved, the slow
 * path reads the control file under the store lock and swaps the slot's
 * mapping; the old one loses the slot's reference after a grace period
 * (call_rcu), so a fast-path reader that already dereferenced it can still
 * take its reference safely.
 *
 * Lock order: store->lock, then urcu's internal locks, then the control-file
 * registry lock (control.c), then store->maps_lock.
 * Code under store->lock may call call_rcu() but never synchronize_rcu();
 * call_rcu callbacks take only maps_lock. The atfork handlers (registry.c)
 * take all of them in that order, so a fork from any thread leaves the child
 * consistent.
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
#include <urcu-bp.h>

#include "internal.h"

#define PIN_RETRIES 64

/* A process's mapping of one version is the snapshot callers hold. */
#define snap__map snap_snapshot

struct snap__slot {
  struct snap__slot *next; /* immutable once published */
  char *name;
  struct snap__map *cur; /* RCU-protected; holds one reference. Stored with an
                          * atomic exchange under the store lock, loaded with
                          * acquire in the fast path */
  _Atomic uint64_t checked;
};

struct snap_snapshot {
  atomic_long refs;
  snap_store *store;
  struct snap__slot *slot;
  int fd;
  void *addr;
  uint64_t size;
  uint64_t version;
  struct snap__segment seg;
  char *path;
  struct rcu_head rcu;
  struct snap_snapshot *next, *prev; /* store->maps, under maps_lock */
};

/* -------------------------------------------------------------- mappings */

static void map_destroy(struct snap__map *m) {
  snap_store *s = m->store;
  pthread_mutex_lock(&s->maps_lock);
  if (m->prev)
    m->prev->next = m->next;
  else
    s->maps = m->next;
  if (m->next) m->next->prev = m->prev;
  pthread_mutex_unlock(&s->maps_lock);
  snap__unmap(m->addr, m->size);
  close(m->fd); /* drops this process's flock pin */
  snap__segment_free(&m->seg);
  free(m->path);
  free(m);
  snap__store_unref(s);
}

static void map_unref(struct snap__map *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) map_destroy(m);
}

static void map_unref_rcu(struct rcu_head *head) {
  map_unref(caa_container_of(head, struct snap__map, rcu));
}

/* A reference to an already mapped version, if it is alive. Call with s->lock. */
static struct snap__map *map_find(snap_store *s, struct snap__slot *slot,
                                  uint64_t version) {
  struct snap__map *found = NULL;
  pthread_mutex_lock(&s->maps_lock);
  for (struct snap__map *m = s->maps; m; m = m->next) {
    if (m->slot != slot || m->version != version) continue;
    long r = atomic_load(&m->refs);
    while (r > 0 && !atomic_compare_exchange_weak(&m->refs, &r, r + 1)) {
    }
    if (r > 0) {
      found = m;
      break;
    }
  }
  pthread_mutex_unlock(&s->maps_lock);
  return found;
}

#define RETRY 1   /* the version vanished between lookup and open: look again */
#define MISSING 2 /* no file of that name: RETRY, unless nothing moved meanwhile */

/* After our shared lock: is @p version still one a pin may take (current or
 * retained)? Reclamation changes the state under its exclusive lock, and a v2
 * version that lends chunks keeps its file (with holes) in state lending, so
 * a link count is not enough. 0, RETRY, or an error. */
static int still_pinnable(struct snap__control *c, const char *dataset, uint64_t version,
                          struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__txn_begin(c, false, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  struct snap__verrec vr;
  rc = snap__ds_get(t, dataset, &ds, NULL);
  if (!rc) rc = snap__ver_get(t, ds.id, version, &vr, NULL);
  snap__txn_abort(t);
  if (rc == SNAP_ENOTFOUND) return RETRY;
  if (rc)
    return snap__err(err, rc, "pin \"%s\" version %llu: control file", dataset,
                     (unsigned long long)version);
  return vr.state == SNAP_STATE_CURRENT || vr.state == SNAP_STATE_RETAINED ? 0 : RETRY;
}

/* Open, pin, map and validate one version. Call with s->lock held. */
static int map_open(snap_store *s, struct snap__control *c, struct snap__slot *slot,
                    uint64_t version, struct snap__map **out, struct snap_error *err) {
  char rel[512];
  snap__seg_relpath(rel, sizeof rel, slot->name, version);
  int fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return MISSING;
    return snap__errno(err, -errno, "%s/%s", s->path, rel);
  }
  /* The shared lock is the cross-process pin. A refusal means a writer holds
   * LOCK_EX to reclaim the file; a link count of 0 means it already did. */
  if (flock(fd, LOCK_SH | LOCK_NB)) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return RETRY;
    return snap__errno(err, -e, "%s/%s: flock", s->path, rel);
  }
  struct stat st;
  if (fstat(fd, &st)) {
    int e = errno;
    close(fd);
    return snap__errno(err, -e, "%s/%s", s->path, rel);
  }
  if (st.st_nlink == 0) {
    close(fd);
    return RETRY;
  }
  int rc = still_pinnable(c, slot->name, version, err);
  if (rc) {
    close(fd);
    return rc;
  }
  struct snap__map *m = calloc(1, sizeof *m);
  if (!m || asprintf(&m->path, "%s/%s", s->path, rel) < 0) {
    free(m);
    close(fd);
    return snap__errno(err, -ENOMEM, "%s/%s", s->path, rel);
  }
  m->fd = fd;
  m->size = (uint64_t)st.st_size;
  m->version = version;
  m->slot = slot;
  m->store = s;
  atomic_init(&m->refs, 1);
  if (m->size < SNAP__HEADER_SIZE) {
    rc = snap__err(err, SNAP_ECORRUPT, "%s: file size %llu is smaller than the header",
                   m->path, (unsigned long long)m->size);
    goto fail;
  }
  if ((rc = snap__map_aligned(fd, m->size, false, &m->addr))) {
    rc =
        snap__errno(err, rc, "%s: mmap %llu bytes", m->path, (unsigned long long)m->size);
    goto fail;
  }
  /* structure first; the data checks read through the composed view */
  if ((rc = snap__segment_parse(m->addr, m->size, SNAP__SEG_NO_DATA, m->path, slot->name,
                                version, &m->seg, err)) ||
      (rc = snap__compose(s, &m->seg, m->addr, false, m->path, err)) ||
      (rc = snap__segment_check_data(&m->seg, m->path, err)))
    goto fail;
  if (memcmp(m->seg.store_id, s->store_id, 16)) {
    rc = snap__err(err, SNAP_ECORRUPT, "%s: store id differs from the store's", m->path);
    goto fail;
  }
  snap__store_ref(s);
  pthread_mutex_lock(&s->maps_lock);
  m->next = s->maps;
  if (s->maps) s->maps->prev = m;
  s->maps = m;
  pthread_mutex_unlock(&s->maps_lock);
  *out = m;
  return 0;
fail:
  snap__segment_free(&m->seg);
  snap__unmap(m->addr, m->size);
  close(fd);
  free(m->path);
  free(m);
  return rc;
}

/* ------------------------------------------------------------------ slots */

static struct snap__slot *slot_find(snap_store *s, const char *name) {
  for (struct snap__slot *sl = atomic_load_explicit(&s->slots, memory_order_acquire); sl;
       sl = sl->next)
    if (!strcmp(sl->name, name)) return sl;
  return NULL;
}

static void pins_close(snap_store *s);
static void pins_free(snap_store *s);

/* Call with s->lock held. */
static struct snap__slot *slot_get(snap_store *s, const char *name) {
  struct snap__slot *sl = slot_find(s, name);
  if (sl) return sl;
  sl = calloc(1, sizeof *sl);
  if (!sl || !(sl->name = strdup(name))) {
    free(sl);
    return NULL;
  }
  atomic_init(&sl->checked, UINT64_MAX);
  /* store.c calls these back at close and free (it does not call pin.c) */
  s->pins_close = pins_close;
  s->pins_free = pins_free;
  sl->next = atomic_load(&s->slots);
  atomic_store_explicit(&s->slots, sl, memory_order_release);
  return sl;
}

/* store.c's pins_free hook: the slots go with the store. */
static void pins_free(snap_store *s) {
  struct snap__slot *sl = atomic_load(&s->slots);
  while (sl) {
    struct snap__slot *next = sl->next;
    free(sl->name);
    free(sl);
    sl = next;
  }
  atomic_store(&s->slots, NULL);
}

/* Replace the slot's cached mapping (may be NULL). Call with s->lock held. */
static void slot_set(struct snap__slot *sl, struct snap__map *m) {
  if (m) atomic_fetch_add(&m->refs, 1);
  struct snap__map *old = __atomic_exchange_n(&sl->cur, m, __ATOMIC_ACQ_REL);
  if (old) urcu_bp_call_rcu(&old->rcu, map_unref_rcu);
}

/* Look up the current (version == 0) or a given version and pin it. */
static int pin_slow(snap_store *s, const char *dataset, uint64_t want,
                    struct snap__map **out, struct snap_error *err) {
  int rc = snap__dataset_name_check(dataset, err);
  if (rc) return rc;
  pthread_mutex_lock(&s->lock);
  struct snap__slot *sl = slot_get(s, dataset);
  if (!sl) {
    pthread_mutex_unlock(&s->lock);
    return snap__errno(err, -ENOMEM, "pin \"%s\"", dataset);
  }
  struct snap__control *c;
  /* the slow path (flips moved): also notice a replaced control file */
  if ((rc = snap__store_control_fresh(s, &c, err))) goto out;
  uint64_t missing_flips = UINT64_MAX, missing_version = 0;
  for (int attempt = 0; attempt < PIN_RETRIES; attempt++) {
    uint64_t flips = atomic_load_explicit(s->flips, memory_order_acquire);
    struct snap__txn *t;
    if ((rc = snap__txn_begin(c, false, &t, err))) goto out;
    struct snap__dsrec ds;
    struct snap__verrec vr;
    uint64_t version = want;
    rc = snap__ds_get(t, dataset, &ds, err);
    if (!rc && !want && !(version = ds.current))
      rc = snap__err(err, SNAP_ENOTFOUND, "dataset \"%s\" has no version yet", dataset);
    if (!rc) rc = snap__ver_get(t, ds.id, version, &vr, err);
    snap__txn_abort(t);
    if (rc == SNAP_ENOTFOUND && want)
      rc = snap__err(err, SNAP_ENOTFOUND, "dataset \"%s\" has no version %llu", dataset,
                     (unsigned long long)want);
    if (rc) goto out;
    if (want && (vr.state == SNAP_STATE_DRAINING || vr.state == SNAP_STATE_LENDING)) {
      rc = snap__err(err, SNAP_EDRAINING,
                     "dataset \"%s\" version %llu is retired (draining): no new pins",
                     dataset, (unsigned long long)want);
      goto out;
    }
    struct snap__map *m = sl->cur && sl->cur->version == version ? sl->cur : NULL;
    if (m)
      atomic_fetch_add(&m->refs, 1); /* the slot's reference keeps it alive */
    else
      m = map_find(s, sl, version);
    if (!m) {
      rc = map_open(s, c, sl, version, &m, err);
      if (rc == MISSING && missing_flips == flips && missing_version == version) {
        /* Twice the same record, no flip in between, and no file: a version is
         * reclaimed only after it was retired by a flip, so the control file
         * names a segment that is not there. */
        char rel[512];
        snap__seg_relpath(rel, sizeof rel, dataset, version);
        rc = snap__err(err, SNAP_ECONTROL,
                       "%s/control.mdb names version %llu of \"%s\" but %s is missing "
                       "(repair: snapctl --store %s doctor --rebuild)",
                       s->path, (unsigned long long)version, dataset, rel, s->path);
        goto out;
      }
      if (rc == MISSING) missing_flips = flips, missing_version = version;
      if (rc == RETRY || rc == MISSING) continue;
      if (rc) goto out;
    }
    if (!want) {
      if (sl->cur != m) slot_set(sl, m);
      atomic_store_explicit(&sl->checked, flips, memory_order_release);
    }
    *out = m;
    goto out;
  }
  rc =
      snap__err(err, SNAP_EBUSY, "dataset \"%s\": version changed %d times while pinning",
                dataset, PIN_RETRIES);
out:
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* The fast path, inlined into both entries (a call to the exported
 * snap_pin_cached from snap_pin would go through the PLT: ~1.5 ns a pin). */
static inline __attribute__((always_inline)) int pin_fast(snap_store *s,
                                                          const char *dataset,
                                                          snap_snapshot **out) {
  *out = NULL;
  struct snap__slot *sl = dataset ? slot_find(s, dataset) : NULL;
  if (sl) {
    /* checked is read before cur: the slow path stores cur, then checked
     * (release), so a matching count guarantees the mapping it verified. */
    uint64_t flips = atomic_load_explicit(s->flips, memory_order_acquire);
    if (atomic_load_explicit(&sl->checked, memory_order_acquire) == flips) {
      urcu_bp_read_lock();
      /* an acquire load: the consume that rcu_dereference() stands for, but
       * one that ThreadSanitizer sees, with the exchanges that store cur */
      struct snap__map *m = __atomic_load_n(&sl->cur, __ATOMIC_ACQUIRE);
      if (m) atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
      urcu_bp_read_unlock();
      if (m) {
        *out = m;
        return 0;
      }
    }
  }
  return -EAGAIN;
}

int snap_pin_cached(snap_store *s, const char *dataset, snap_snapshot **out) {
  return pin_fast(s, dataset, out);
}

int snap_pin(snap_store *s, const char *dataset, snap_snapshot **out,
             struct snap_error *err) {
  if (!pin_fast(s, dataset, out)) return 0;
  return pin_slow(s, dataset, 0, out, err);
}

int snap_pin_version(snap_store *s, const char *dataset, uint64_t version,
                     snap_snapshot **out, struct snap_error *err) {
  *out = NULL;
  if (!version) return snap__err(err, SNAP_EINVAL, "version 0 does not exist");
  return pin_slow(s, dataset, version, out, err);
}

snap_snapshot *snap_snapshot_ref(snap_snapshot *m) {
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

/* Drop the slot's mapping if it is no longer current. The release waits for
 * a grace period here, outside the store lock, so that when this returns the
 * process no longer pins the old version. */
static void slot_trim(snap_store *s, struct snap__slot *sl) {
  struct snap__map *old = NULL;
  pthread_mutex_lock(&s->lock);
  uint64_t flips = atomic_load_explicit(s->flips, memory_order_acquire);
  struct snap__control *c;
  struct snap__txn *t;
  struct snap__dsrec ds;
  if (!sl->cur) {
    /* nothing cached: only note the count, so unpins stop coming here */
    atomic_store_explicit(&sl->checked, flips, memory_order_release);
  } else if (atomic_load(&sl->checked) != flips &&
             !snap__store_control_fresh(s, &c, NULL) &&
             !snap__txn_begin(c, false, &t, NULL)) {
    int rc = snap__ds_get(t, sl->name, &ds, NULL);
    snap__txn_abort(t);
    if (!rc) {
      if (sl->cur->version != ds.current)
        old = __atomic_exchange_n(&sl->cur, NULL, __ATOMIC_ACQ_REL);
      atomic_store_explicit(&sl->checked, flips, memory_order_release);
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (old) {
    urcu_bp_synchronize_rcu();
    map_unref(old);
  }
}

void snap_unpin(snap_snapshot *m) {
  if (!m) return;
  snap_store *s = m->store;
  struct snap__slot *sl = m->slot;
  /* After a flip, the last user of an old version must not leave it pinned
   * by the slot's cache until the next snap_pin(): check (one atomic load). */
  bool moved = atomic_load_explicit(s->flips, memory_order_relaxed) !=
               atomic_load_explicit(&sl->checked, memory_order_relaxed);
  if (moved) snap__store_ref(s);
  map_unref(m);
  if (moved) {
    slot_trim(s, sl);
    snap__store_unref(s);
  }
}

void snap__pin_trim(snap_store *s, const char *dataset) {
  struct snap__slot *sl = slot_find(s, dataset);
  if (sl) slot_trim(s, sl);
}

void snap__pin_forget(snap_store *s, const char *dataset) {
  struct snap__slot *sl = slot_find(s, dataset);
  if (!sl) return;
  pthread_mutex_lock(&s->lock);
  struct snap__map *old = __atomic_exchange_n(&sl->cur, NULL, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock(&s->lock);
  if (old) {
    urcu_bp_synchronize_rcu();
    map_unref(old);
  }
}

void snap_store_trim(snap_store *s) {
  for (struct snap__slot *sl = atomic_load_explicit(&s->slots, memory_order_acquire); sl;
       sl = sl->next)
    slot_trim(s, sl);
  urcu_bp_barrier(); /* mappings already queued for release by call_rcu */
}

/* store.c's pins_close hook, from snap_store_close(). */
static void pins_close(snap_store *s) {
  /* Take the cached mappings out of the slots, wait out readers that may
   * have dereferenced them, then drop the slots' references directly. */
  struct snap__map *olds[64];
  size_t n = 0;
  bool more = true;
  while (more) {
    more = false;
    pthread_mutex_lock(&s->lock);
    for (struct snap__slot *sl = atomic_load(&s->slots); sl; sl = sl->next) {
      if (!sl->cur) continue;
      if (n == 64) {
        more = true;
        break;
      }
      olds[n++] = __atomic_exchange_n(&sl->cur, NULL, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&s->lock);
    urcu_bp_synchronize_rcu();
    for (size_t i = 0; i < n; i++) map_unref(olds[i]);
    n = 0;
  }
  urcu_bp_barrier(); /* earlier call_rcu releases of this store's mappings */
}

/* ------------------------------------------------------------- accessors */

const struct snap__segment *snap__snapshot_seg(const snap_snapshot *m) { return &m->seg; }
uint64_t snap_snapshot_mappings(const snap_snapshot *m) {
  return snap__compose_pieces(&m->seg);
}
const char *snap_snapshot_dataset(const snap_snapshot *m) { return m->seg.dataset; }
uint64_t snap_snapshot_version(const snap_snapshot *m) { return m->version; }
uint64_t snap_snapshot_nrows(const snap_snapshot *m) { return m->seg.nrows; }
uint32_t snap_snapshot_ncols(const snap_snapshot *m) { return m->seg.ncols; }
uint32_t snap_snapshot_nblocks(const snap_snapshot *m) { return m->seg.nblocks; }
uint64_t snap_snapshot_created_ns(const snap_snapshot *m) { return m->seg.created_ns; }
const char *snap_snapshot_path(const snap_snapshot *m) { return m->path; }

const struct snap_column *snap_snapshot_column(const snap_snapshot *m, uint32_t i) {
  return i < m->seg.ncols ? &m->seg.cols[i] : NULL;
}

int64_t snap_snapshot_find(const snap_snapshot *m, const char *name) {
  for (uint32_t i = 0; i < m->seg.ncols; i++)
    if (!strcmp(m->seg.cols[i].name, name)) return i;
  return -1;
}

const struct snap_block *snap_snapshot_block(const snap_snapshot *m, uint32_t i) {
  return i < m->seg.nblocks ? &m->seg.blocks[i] : NULL;
}

const void *snap_snapshot_metadata(const snap_snapshot *m, size_t *len) {
  if (len) *len = m->seg.metadata_len;
  return m->seg.metadata;
}

const void *snap_snapshot_segment(const snap_snapshot *m, size_t *len) {
  if (len) *len = m->size;
  return m->addr;
}

int snap_snapshot_verify(const snap_snapshot *m, struct snap_error *err) {
  int rc = snap__segment_verify_data_fd(&m->seg, m->addr, m->fd, m->path, err);
  return rc ? rc : snap__segment_check_data(&m->seg, m->path, err);
}
