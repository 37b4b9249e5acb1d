/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replicas: a version of another store adopted chunk by chunk (a follower,
 * docs/multihost.md). The primary's header and manifest come first; every chunk
 * then is either found here (borrowed from a local file where the current
 * version has it with the same hash at the same place, copied from the current
 * version, or a hole when it is all zeros) or written by the caller after its
 * hash is checked. The file is named segments/<dataset>/.replica-<N> while it
 * fills, so that a follower killed mid-way keeps what it had; the commit
 * rewrites the chunk table for the local holders, stamps this store's id,
 * reseals the header and flips it in under the primary's number N.
 *
 * Why borrowing stays safe: only chunks the pinned current version holds or
 * borrows are borrowed, so the pin keeps them alive (gc.c) until the flip,
 * after which the new version's own manifest does.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

enum { R_NEED = 0, R_HAVE = 1 };

struct snap_replica {
  snap_store *store;
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  char part[48];   /* ".replica-<N>" in the dataset directory */
  char what[1200]; /* "<store>/segments/<dataset>/.replica-<N>", for messages */
  int dsfd;        /* the dataset directory, LOCK_SH held (no drop meanwhile) */
  int fd;          /* the .replica file, read-write */
  uint8_t *map;    /* its shared read-only mapping, total bytes */
  uint64_t total, version;
  struct snap__segment seg; /* the primary's header and manifest, parsed */
  snap_snapshot *base;      /* the current version, pinned; NULL if none usable */
  uint64_t *holder;         /* per chunk: 0 own, else the local version lending it */
  _Atomic uint8_t *state;   /* per chunk: R_NEED or R_HAVE */
  XXH3_state_t **hs; /* per chunk being fed (snap_replica_feed()): its hash so far */
  uint64_t *fed;     /* ... and its bytes so far */
  _Atomic uint64_t missing;
  struct snap_replica_stats stats;
};

/* ------------------------------------------------------- chunk accessors */

int snap_snapshot_chunks(const snap_snapshot *snap, struct snap_chunk_layout *layout,
                         struct snap_chunk_info *chunks, struct snap_error *err) {
  const struct snap__segment *sg = snap__snapshot_seg(snap);
  if (sg->format != SNAP__FORMAT_V2)
    return snap__err(err, SNAP_EFORMAT,
                     "dataset \"%s\" version %llu is format 1: it has no chunks "
                     "(snapctl compact rewrites it in format 2)",
                     sg->dataset, (unsigned long long)sg->version);
  *layout = (struct snap_chunk_layout){sg->chunk_shift, sg->data_offset, sg->nchunks};
  for (uint64_t k = 0; chunks && k < sg->nchunks; k++) {
    uint32_t f = sg->chunks[k].file;
    chunks[k] =
        (struct snap_chunk_info){sg->chunks[k].hash, f ? sg->files[f - 1] : sg->version};
  }
  return 0;
}

uint64_t snap_chunk_hash(const void *p, size_t len) { return snap__chunk_hash(p, len); }

/* ------------------------------------------------------------------ begin */

/* Remove the .replica files of other versions (a follower that jumped). */
static void stale_parts_remove(int dsfd, const char *keep) {
  int fd = openat(dsfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, ".replica-", 9) && strcmp(e->d_name, keep))
      unlinkat(dsfd, e->d_name, 0);
  closedir(d);
}

/* The current version, if this replica can share with it: format 2, the same
 * chunk size. */
static snap_snapshot *usable_base(snap_replica *r) {
  snap_snapshot *b;
  if (snap_pin(r->store, r->dataset, &b, NULL)) return NULL;
  const struct snap__segment *bs = snap__snapshot_seg(b);
  if (bs->format == SNAP__FORMAT_V2 && bs->chunk_shift == r->seg.chunk_shift) return b;
  snap_unpin(b);
  return NULL;
}

/* Decide where each chunk comes from (see the file comment). */
static int plan(snap_replica *r, bool resumed, struct snap_error *err) {
  const struct snap__segment *sg = &r->seg;
  const struct snap__segment *bs = r->base ? snap__snapshot_seg(r->base) : NULL;
  uint64_t chunk = 1ull << sg->chunk_shift, zero = snap__zero_chunk_hash(sg->chunk_shift);
  uint64_t vers[SNAP__MAX_FILES];
  uint32_t nvers = 0;
  r->stats.chunks = sg->nchunks;
  for (uint64_t k = 0; k < sg->nchunks; k++) {
    uint64_t off = sg->data_offset + k * chunk, h = sg->chunks[k].hash;
    const struct snap__chunk *bc = NULL;
    if (bs && off >= bs->data_offset && (off - bs->data_offset) / chunk < bs->nchunks &&
        bs->chunks[(off - bs->data_offset) / chunk].hash == h)
      bc = &bs->chunks[(off - bs->data_offset) / chunk];
    r->state[k] = R_HAVE;
    if (h == zero) { /* a hole reads as zeros */
      if (!snap__is_hole(r->fd, off, chunk) &&
          fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                    (off_t)chunk))
        return snap__errno(err, -errno, "%s: punching chunk %llu", r->what,
                           (unsigned long long)k);
      r->stats.zero++;
      continue;
    }
    if (bc && sg->chunks[k].file) { /* the primary borrows it, and so can we */
      uint64_t v = bc->file ? bs->files[bc->file - 1] : bs->version;
      uint32_t j = 0;
      while (j < nvers && vers[j] != v) j++;
      if (j < nvers || nvers < SNAP__MAX_FILES) {
        if (j == nvers) vers[nvers++] = v;
        r->holder[k] = v;
        r->stats.borrowed++;
        continue;
      }
    }
    if (bc) { /* the same bytes here: a local copy, no fetch */
      if (pwrite(r->fd, bs->base + off, chunk, (off_t)off) != (ssize_t)chunk)
        return snap__errno(err, errno ? -errno : -EIO, "%s: copying chunk %llu", r->what,
                           (unsigned long long)k);
      r->stats.copied++;
      continue;
    }
    if (resumed && !snap__is_hole(r->fd, off, chunk) &&
        snap__chunk_hash(r->map + off, chunk) == h) {
      r->stats.resumed++;
      continue;
    }
    r->state[k] = R_NEED;
    r->stats.fetch++;
  }
  atomic_store(&r->missing, r->stats.fetch);
  return 0;
}

/* The header fields begin needs before parsing (parse checks them all again). */
static int head_sizes(const uint8_t *h, size_t len, const char *dataset, uint64_t *total,
                      uint64_t *version, struct snap_error *err) {
  if (len < SNAP__HEADER_SIZE || memcmp(h, SNAP__MAGIC, 8))
    return snap__err(
        err, SNAP_ECORRUPT, "replica of \"%s\": %zu bytes of head%s", dataset, len,
        len < SNAP__HEADER_SIZE ? ", shorter than a header" : " without the magic");
  uint64_t data_offset = snap__get64(h + SNAP__H_DATA_OFFSET);
  *total = snap__get64(h + SNAP__H_TOTAL_SIZE);
  *version = snap__get64(h + SNAP__H_VERSION);
  if (data_offset != len || *total < data_offset || *total > (1ull << 50) || !*version)
    return snap__err(err, data_offset != len ? SNAP_EINVAL : SNAP_ECORRUPT,
                     "replica of \"%s\": head of %zu bytes, header data_offset = %llu, "
                     "total_size = %llu, version = %llu",
                     dataset, len, (unsigned long long)data_offset,
                     (unsigned long long)*total, (unsigned long long)*version);
  return 0;
}

/* Refuse a version that is not newer than everything the dataset has. */
static int newer_check(snap_replica *r, struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(r->store, false, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  struct snap__verrec vr;
  rc = snap__ds_get(t, r->dataset, &ds, NULL);
  if (rc == SNAP_ENOTFOUND) {
    rc = 0;
  } else if (!rc && (ds.current >= r->version ||
                     !snap__ver_get(t, ds.id, r->version, &vr, NULL))) {
    rc = snap__err(err, SNAP_ECONFLICT,
                   "replica of \"%s\" version %llu: the local current version is %llu "
                   "(versions only grow)",
                   r->dataset, (unsigned long long)r->version,
                   (unsigned long long)ds.current);
  }
  snap__txn_abort(t);
  return rc;
}

int snap_replica_begin(snap_store *s, const char *dataset, const void *head, size_t len,
                       snap_replica **out, struct snap_error *err) {
  *out = NULL;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err))) return rc;
  uint64_t total = 0, version = 0;
  if ((rc = head_sizes(head, len, dataset, &total, &version, err))) return rc;
  snap_replica *r = calloc(1, sizeof *r);
  if (!r) return snap__errno(err, -ENOMEM, "replica of \"%s\"", dataset);
  r->store = s;
  r->fd = r->dsfd = -1;
  r->total = total;
  r->version = version;
  strcpy(r->dataset, dataset);
  snprintf(r->part, sizeof r->part, ".replica-%llu", (unsigned long long)version);
  snprintf(r->what, sizeof r->what, "%s/segments/%s/%s", s->path, dataset, r->part);
  if ((rc = snap__dataset_dir_lock(s, dataset, LOCK_SH, &r->dsfd, err)) ||
      (rc = newer_check(r, err)))
    goto fail;
  stale_parts_remove(r->dsfd, r->part);
  r->fd = openat(r->dsfd, r->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                 SNAP__MODE_FILE);
  struct stat st;
  if (r->fd < 0 || fstat(r->fd, &st)) {
    rc = snap__errno(err, -errno, "%s: open", r->what);
    goto fail;
  }
  bool resumed = S_ISREG(st.st_mode) && (uint64_t)st.st_size == total;
  /* no posix_fallocate: what is borrowed or zero stays a hole */
  if ((!resumed && (ftruncate(r->fd, 0) || ftruncate(r->fd, (off_t)total))) ||
      pwrite(r->fd, head, len, 0) != (ssize_t)len) {
    rc = snap__errno(err, errno ? -errno : -EIO, "%s: writing %llu bytes", r->what,
                     (unsigned long long)len);
    goto fail;
  }
  void *addr;
  if ((rc = snap__map_aligned(r->fd, total, false, &addr))) {
    rc = snap__errno(err, rc, "%s: mmap", r->what);
    goto fail;
  }
  r->map = addr;
  if ((rc = snap__segment_parse(r->map, total, SNAP__SEG_NO_DATA, r->what, dataset,
                                version, &r->seg, err)))
    goto fail;
  if (r->seg.format != SNAP__FORMAT_V2) {
    rc = snap__err(err, SNAP_EFORMAT, "%s: format %u; a replica needs format 2", r->what,
                   r->seg.format);
    goto fail;
  }
  uint64_t n = r->seg.nchunks ? r->seg.nchunks : 1;
  r->holder = calloc(n, sizeof *r->holder);
  r->state = calloc(n, sizeof *r->state);
  r->hs = calloc(n, sizeof *r->hs);
  r->fed = calloc(n, sizeof *r->fed);
  if (!r->holder || !r->state || !r->hs || !r->fed) {
    rc = snap__errno(err, -ENOMEM, "%s: %llu chunks", r->what,
                     (unsigned long long)r->seg.nchunks);
    goto fail;
  }
  r->base = usable_base(r);
  if ((rc = plan(r, resumed, err))) goto fail;
  *out = r;
  return 0;
fail:
  snap_replica_free(r);
  return rc;
}

uint64_t snap_replica_version(const snap_replica *r) { return r->version; }

void snap_replica_layout(const snap_replica *r, struct snap_chunk_layout *out) {
  *out =
      (struct snap_chunk_layout){r->seg.chunk_shift, r->seg.data_offset, r->seg.nchunks};
}

void snap_replica_stats(const snap_replica *r, struct snap_replica_stats *out) {
  *out = r->stats;
  out->fetch = atomic_load(&r->missing);
}

int snap_replica_needs(const snap_replica *r, uint64_t k, uint64_t *hash) {
  if (k >= r->seg.nchunks) return 0;
  if (hash) *hash = r->seg.chunks[k].hash;
  return atomic_load(&r->state[k]) == R_NEED;
}

const void *snap_replica_base(const snap_replica *r, uint64_t k, uint64_t *hash) {
  if (!r->base || k >= r->seg.nchunks) return NULL;
  const struct snap__segment *bs = snap__snapshot_seg(r->base);
  uint64_t chunk = 1ull << r->seg.chunk_shift, off = r->seg.data_offset + k * chunk;
  if (off < bs->data_offset || (off - bs->data_offset) / chunk >= bs->nchunks)
    return NULL;
  if (hash) *hash = bs->chunks[(off - bs->data_offset) / chunk].hash;
  return bs->base + off;
}

/* ------------------------------------------------------------------ write */

static int write_at(snap_replica *r, uint64_t k, uint64_t off, const void *buf,
                    size_t len, struct snap_error *err) {
  for (size_t done = 0; done < len;) {
    ssize_t w =
        pwrite(r->fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (w <= 0)
      return snap__errno(err, w < 0 ? -errno : -EIO, "%s: writing chunk %llu", r->what,
                         (unsigned long long)k);
    done += (size_t)w;
  }
  return 0;
}

/* Chunk @p k's bytes hash to @p got: present when that is the table's hash. */
static int arrived(snap_replica *r, uint64_t k, uint64_t got, struct snap_error *err) {
  uint64_t want = r->seg.chunks[k].hash;
  if (got != want)
    return snap__err(err, SNAP_ECHECKSUM,
                     "dataset \"%s\" version %llu chunk %llu: XXH3-64 = %016llx, the "
                     "chunk table says %016llx",
                     r->dataset, (unsigned long long)r->version, (unsigned long long)k,
                     (unsigned long long)got, (unsigned long long)want);
  uint8_t expect = R_NEED;
  if (atomic_compare_exchange_strong(&r->state[k], &expect, R_HAVE))
    atomic_fetch_sub(&r->missing, 1);
  return 0;
}

int snap_replica_write(snap_replica *r, uint64_t k, const void *buf, size_t len,
                       struct snap_error *err) {
  uint64_t chunk = 1ull << r->seg.chunk_shift;
  if (k >= r->seg.nchunks || len != chunk)
    return snap__err(err, SNAP_EINVAL,
                     "%s: chunk %llu of %llu, %zu bytes (chunks are %llu)", r->what,
                     (unsigned long long)k, (unsigned long long)r->seg.nchunks, len,
                     (unsigned long long)chunk);
  if (atomic_load(&r->state[k]) == R_HAVE) return 0;
  uint64_t got = snap__chunk_hash(buf, len);
  if (got != r->seg.chunks[k].hash) return arrived(r, k, got, err); /* nothing written */
  int rc = write_at(r, k, r->seg.data_offset + k * chunk, buf, len, err);
  return rc ? rc : arrived(r, k, got, err);
}

int snap_replica_feed(snap_replica *r, uint64_t k, uint64_t pos, const void *data,
                      size_t len, struct snap_error *err) {
  uint64_t chunk = 1ull << r->seg.chunk_shift;
  if (k >= r->seg.nchunks || pos > chunk || len > chunk - pos)
    return snap__err(err, SNAP_EINVAL, "%s: chunk %llu of %llu, bytes %llu+%zu", r->what,
                     (unsigned long long)k, (unsigned long long)r->seg.nchunks,
                     (unsigned long long)pos, len);
  if (atomic_load(&r->state[k]) == R_HAVE) return 0;
  if (pos == 0) {
    if (!r->hs[k] && !(r->hs[k] = XXH3_createState()))
      return snap__errno(err, -ENOMEM, "%s: chunk %llu", r->what, (unsigned long long)k);
    XXH3_64bits_reset(r->hs[k]);
    r->fed[k] = 0;
  } else if (!r->hs[k] || r->fed[k] != pos) {
    return snap__err(err, SNAP_EINVAL, "%s: chunk %llu fed at %llu after %llu bytes",
                     r->what, (unsigned long long)k, (unsigned long long)pos,
                     (unsigned long long)(r->hs[k] ? r->fed[k] : 0));
  }
  int rc = write_at(r, k, r->seg.data_offset + k * chunk + pos, data, len, err);
  if (rc) return rc;
  XXH3_64bits_update(r->hs[k], data, len);
  if ((r->fed[k] += len) < chunk) return 0;
  uint64_t got = XXH3_64bits_digest(r->hs[k]);
  XXH3_freeState(r->hs[k]);
  r->hs[k] = NULL;
  return arrived(r, k, got, err);
}

/* ----------------------------------------------------------------- commit */

/* The local chunk table and file table, this store's id, the header hash. */
static int restamp(snap_replica *r, struct snap_error *err) {
  const struct snap__segment *sg = &r->seg;
  uint64_t vers[SNAP__MAX_FILES];
  uint32_t nvers = 0;
  for (uint64_t k = 0; k < sg->nchunks; k++) {
    uint64_t v = r->holder[k];
    if (!v) continue;
    uint32_t j = 0;
    while (j < nvers && vers[j] != v) j++;
    if (j == nvers) vers[nvers++] = v; /* at most SNAP__MAX_FILES: plan() saw to it */
  }
  qsort(vers, nvers, sizeof *vers, snap__cmp_u64);
  size_t tlen = (size_t)sg->nchunks * SNAP__CHUNK_ENTRY;
  uint8_t *table = malloc(tlen + 8ull * SNAP__MAX_FILES + 1);
  if (!table) return snap__errno(err, -ENOMEM, "%s: chunk table", r->what);
  for (uint64_t k = 0; k < sg->nchunks; k++) {
    uint32_t f = snap__file_index(vers, nvers, r->holder[k]), zero = 0;
    memcpy(table + k * SNAP__CHUNK_ENTRY, &sg->chunks[k].hash, 8);
    memcpy(table + k * SNAP__CHUNK_ENTRY + 8, &f, 4);
    memcpy(table + k * SNAP__CHUNK_ENTRY + 12, &zero, 4);
  }
  /* our file table, then zeros where the primary's longer one was (the gap
   * before data_offset is zero) */
  uint32_t old = sg->nfiles > nvers ? sg->nfiles : nvers;
  memset(table + tlen, 0, 8ull * old);
  memcpy(table + tlen, vers, 8ull * nvers);
  uint64_t msize = sg->chunk_table + tlen + 8ull * nvers - SNAP__HEADER_SIZE;
  int rc = 0;
  if (pwrite(r->fd, table, tlen + 8ull * old, (off_t)sg->chunk_table) !=
          (ssize_t)(tlen + 8ull * old) ||
      pwrite(r->fd, &nvers, 4, SNAP__H_NFILES) != 4 ||
      pwrite(r->fd, &msize, 8, SNAP__H_MANIFEST_SIZE) != 8 ||
      pwrite(r->fd, r->store->store_id, 16, SNAP__H_STORE_ID) != 16)
    rc = snap__errno(err, errno ? -errno : -EIO, "%s: chunk table", r->what);
  free(table);
  if (rc) return rc;
  uint64_t hh = snap__header_hash(r->map, msize); /* the shared mapping sees the writes */
  if (pwrite(r->fd, &hh, 8, SNAP__H_HEADER_HASH) != 8)
    return snap__errno(err, errno ? -errno : -EIO, "%s: header hash", r->what);
  return 0;
}

/* What a pin will check, now, on the composed view: structure, lenders, the
 * data hash against the table, string offsets and category codes. */
static int final_check(snap_replica *r, struct snap__segment *out,
                       struct snap_error *err) {
  int rc = snap__segment_parse(r->map, r->total, SNAP__SEG_NO_DATA, r->what, r->dataset,
                               r->version, out, err);
  if (rc) return rc;
  uint64_t h[2];
  snap__table_hash(r->map + out->chunk_table, out->nchunks, h);
  if (h[0] != out->data_hash[0] || h[1] != out->data_hash[1])
    return snap__err(err, SNAP_ECHECKSUM, "%s: data hash does not match the chunk table",
                     r->what);
  /* compose maps the lenders over a private copy of our read-only view */
  void *view;
  if ((rc = snap__map_aligned(r->fd, r->total, false, &view)))
    return snap__errno(err, rc, "%s: mmap", r->what);
  struct snap__segment v;
  rc = snap__segment_parse(view, r->total, SNAP__SEG_NO_DATA, r->what, r->dataset,
                           r->version, &v, err);
  if (!rc) {
    rc = snap__compose(r->store, &v, view, false, r->what, err);
    if (!rc) rc = snap__segment_check_data(&v, r->what, err);
    snap__segment_free(&v);
  }
  snap__unmap(view, r->total);
  return rc;
}

/* Flip the replica in under its own number, in one transaction. */
static int replica_flip(snap_replica *r, const struct snap__verrec *vr,
                        struct snap_error *err) {
  snap_store *s = r->store;
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  struct snap__verrec old;
  bool created;
  char name[32];
  snap__seg_name(name, sizeof name, r->version);
  if ((rc = snap__ds_get_or_create(s, t, r->dataset, true, &ds, &created, err)))
    goto fail;
  if (!created &&
      (ds.current >= r->version || !snap__ver_get(t, ds.id, r->version, &old, NULL))) {
    rc = snap__err(err, SNAP_ECONFLICT,
                   "%s: version %llu is current now; the replica of %llu is not newer",
                   r->what, (unsigned long long)ds.current,
                   (unsigned long long)r->version);
    goto fail;
  }
  if (ds.next_version <= r->version) ds.next_version = r->version + 1;
  ds.flags |= SNAP__DS_FOLLOWED;
  if ((rc = snap__make_current(t, r->dataset, &ds, r->version, vr, err))) goto fail;
  /* name it last, just before the commit; RENAME_NOREPLACE: never over a file */
  if (renameat2(r->dsfd, r->part, r->dsfd, name, RENAME_NOREPLACE)) {
    rc = snap__errno(err, -errno, "%s: rename to %s", r->what, name);
    goto fail;
  }
  snap__crash_point(); /* named, not committed: the orphan case */
  if ((rc = snap__txn_commit(t, err))) {
    renameat2(r->dsfd, name, r->dsfd, r->part, RENAME_NOREPLACE);
    return rc;
  }
  snap__flips_bump(s);
  return 0;
fail:
  snap__txn_abort(t);
  return rc;
}

int snap_replica_commit(snap_replica *r, uint64_t *version, struct snap_error *err) {
  if (version) *version = 0;
  if (!r) return snap__err(err, SNAP_EINVAL, "snap_replica_commit: NULL replica");
  struct snap__segment fin = {0};
  uint64_t missing = atomic_load(&r->missing);
  int rc = 0;
  if (missing) {
    rc = snap__err(err, SNAP_EINVAL, "%s: %llu of %llu chunks still missing", r->what,
                   (unsigned long long)missing, (unsigned long long)r->seg.nchunks);
    goto out;
  }
  struct stat st;
  if ((rc = restamp(r, err)) || (rc = final_check(r, &fin, err))) goto out;
  if (fchmod(r->fd, SNAP__MODE_SEGMENT) || fstat(r->fd, &st)) {
    rc = snap__errno(err, -errno, "%s: fchmod", r->what);
    goto out;
  }
  struct snap__verrec vr = {.state = SNAP_STATE_CURRENT,
                            .ncols = fin.ncols,
                            .nrows = fin.nrows,
                            .bytes = (uint64_t)st.st_blocks * 512,
                            .created_ns = fin.created_ns,
                            .data_hash = {fin.data_hash[0], fin.data_hash[1]},
                            .header_hash = fin.header_hash};
  if ((rc = replica_flip(r, &vr, err))) {
    fchmod(r->fd, SNAP__MODE_FILE); /* writable again for the retry */
    goto out;
  }
  if (version) *version = r->version;
  snap_unpin(r->base); /* before retention, which may reclaim it */
  r->base = NULL;
  snap__after_commit(r->store, r->dataset);
out:
  snap__segment_free(&fin);
  snap_replica_free(r);
  return rc;
}

void snap_replica_free(snap_replica *r) {
  if (!r) return;
  snap_unpin(r->base);
  snap__segment_free(&r->seg);
  if (r->map) snap__unmap(r->map, r->total);
  if (r->fd >= 0) close(r->fd);
  if (r->dsfd >= 0) close(r->dsfd);
  for (uint64_t k = 0; r->hs && k < r->seg.nchunks; k++) XXH3_freeState(r->hs[k]);
  free(r->hs);
  free(r->fed);
  free(r->holder);
  free((void *)r->state);
  free(r);
}
