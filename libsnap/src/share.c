/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sealing a v2 segment: decide chunk by chunk whether the new version holds
 * its bytes itself or borrows the base version's (docs/design.md 16.4).
 *
 * The new data of a chunk is a list of pieces: bytes the caller gave
 * (snap_publish_copy(), still in caller memory), bytes already written into
 * the new file (snap_publish_fill()), and zero padding. For each chunk:
 *  1. identity: every piece is the caller's pointer into the base version's
 *     own view at the same offset (a frame read from the store and handed
 *     back), or into an edit's private view of it where the writer wrote no
 *     page of the chunk (edit.c): borrow without reading a byte;
 *  2. otherwise compare the pieces with the base's chunk at the same offset:
 *     on equality borrow it, with the base's hash (no hashing);
 *  3. otherwise hash the pieces (XXH3-64, streaming): the chunk is the new
 *     file's own: allocate it, copy the caller's pieces in, zero the padding.
 * A borrowed chunk that the caller had written into the new file is punched
 * out of it again, so that the sealed file holds only its own chunks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "internal.h"

static const uint8_t zeros[65536];

static void hash_zeros(XXH3_state_t *st, uint64_t len) {
  while (len) {
    uint64_t n = len < sizeof zeros ? len : sizeof zeros;
    XXH3_64bits_update(st, zeros, n);
    len -= n;
  }
}

int snap__cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint32_t snap__file_index(const uint64_t *vers, uint32_t nvers, uint64_t v) {
  for (uint32_t i = 0; v && i < nvers; i++)
    if (vers[i] == v) return i + 1;
  return 0;
}

enum {
  C_BORROW = 1,
  C_IN_FILE = 2,
  C_SRC = 4,
  C_IDENTITY = 8,
  C_COMPARED = 16,
  C_WRITTEN = 32 /* an own chunk written in phase 1, while its bytes were hot */
};

struct part;
struct pass {
  struct snap__share *sh;
  const struct snap__chunk *bchunks; /* the base's chunk at each offset, or NULL */
  uint64_t chunk, doff, data_end, bdoff, bn;
  uint64_t *hash;
  uint8_t *flag;
  int phase; /* 1: decide (and write own chunks), 2: the rest */
};

struct part {
  struct pass *ps;
  uint64_t from, to;
  int rc;
  struct snap_error err;
  uint64_t owned;
  /* compares that found a difference in a row; past SNAP__MISS_STREAK the
   * compare is only tried at chunk next_probe, the gap doubling up to
   * SNAP__MAX_SKIP chunks: scattered changes (every chunk differs) compare one
   * chunk in 16; where a change ends, up to 16 unchanged chunks may be
   * written instead of shared */
  unsigned miss;
  uint64_t skip, next_probe;
};
#define SNAP__MISS_STREAK 8u
#define SNAP__MAX_SKIP 16u

/* The first extent that ends after @p off (extents are sorted and disjoint,
 * so their ends are sorted too). */
static size_t first_after(const struct snap__extent *e, size_t n, uint64_t off) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (e[mid].off + e[mid].len <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int write_chunk(struct part *pt, uint64_t k);

/* Phase 1 for one chunk: its hash, and whether the base's chunk is equal. */
static void decide(struct part *pt, uint64_t k) {
  struct pass *ps = pt->ps;
  struct snap__share *sh = ps->sh;
  const struct snap__extent *ext = sh->ext;
  uint64_t off = ps->doff + k * ps->chunk, end = off + ps->chunk;
  size_t first = first_after(ext, sh->next, off);
  const struct snap__chunk *bc = NULL;
  if (ps->bchunks && off >= ps->bdoff && (off - ps->bdoff) / ps->chunk < ps->bn)
    bc = &ps->bchunks[(off - ps->bdoff) / ps->chunk];
  uint8_t fl = 0;
  bool identity = bc != NULL;
  /* an edit's view of the base where the writer wrote no page: the same */
  bool edited = bc && sh->edit_clean && sh->edit_clean[bc - ps->bchunks];
  for (size_t i = first; i < sh->next && ext[i].off < end; i++) {
    uint64_t a = ext[i].off > off ? ext[i].off : off;
    if (ext[i].src == sh->map + ext[i].off)
      fl |= C_IN_FILE, identity = edited = false;
    else
      fl |= C_SRC;
    if (identity && ext[i].src + (a - ext[i].off) != sh->base_addr + a) identity = false;
    if (edited && ext[i].src + (a - ext[i].off) != sh->edit_addr + a) edited = false;
  }
  if ((identity || edited) && (fl & C_SRC)) { /* the base's own bytes, handed back */
    ps->hash[k] = bc->hash;
    ps->flag[k] = fl | C_BORROW | C_IDENTITY;
    return;
  }
  bool probe = pt->miss < SNAP__MISS_STREAK || k >= pt->next_probe;
  if (bc && probe) {
    /* Compare the buffers' bytes with the base's chunk at the same offset: equal
     * means shared, with the base's hash (checked when the base was sealed),
     * and this chunk is never hashed. A changed chunk usually differs early.
     * The padding between buffers (and the room for appended rows) is not
     * read: in the base it may be a hole, and reading a tmpfs hole through a
     * mapping allocates it; no reader reads it. */
    const uint8_t *b0 = sh->base_addr;
    bool eq = true;
    for (size_t i = first; eq && i < sh->next && ext[i].off < end; i++) {
      uint64_t a = ext[i].off > off ? ext[i].off : off;
      uint64_t b = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
      /* no MADV_POPULATE_READ: a changed chunk differs early, and populating
       * the whole base chunk first made scattered changes cost more than a
       * full publish (fault-around maps 16 pages per fault anyway) */
      if (memcmp(ext[i].src + (a - ext[i].off), b0 + a, b - a)) eq = false;
    }
    fl |= C_COMPARED;
    if (eq) {
      pt->miss = 0;
      pt->skip = 1;
      ps->hash[k] = bc->hash;
      ps->flag[k] = fl | C_BORROW;
      return;
    }
    if (++pt->miss >= SNAP__MISS_STREAK) {
      pt->next_probe = k + pt->skip;
      pt->skip = pt->skip < SNAP__MAX_SKIP ? pt->skip * 2 : SNAP__MAX_SKIP;
    }
  }
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  uint64_t cur = off;
  for (size_t i = first; i < sh->next && ext[i].off < end; i++) {
    uint64_t a = ext[i].off > off ? ext[i].off : off;
    uint64_t b = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
    if (a > cur) hash_zeros(&st, a - cur);
    XXH3_64bits_update(&st, ext[i].src + (a - ext[i].off), b - a);
    cur = b;
  }
  if (cur < end) hash_zeros(&st, end - cur);
  ps->hash[k] = XXH3_64bits_digest(&st);
  ps->flag[k] = fl;
  /* an own chunk stays own (compaction only turns borrowed chunks into own
   * ones): write it now, its bytes still in the cache from the hash */
  if (!(pt->rc = write_chunk(pt, k))) ps->flag[k] |= C_WRITTEN;
}

/* pwritev() all of @p n segments at @p off; 0 or -errno (-ENOSPC on a full
 * tmpfs). Advances the segments it wrote. */
static int pwritev_all(int fd, struct iovec *v, int n, uint64_t off) {
  while (n > 0) {
    ssize_t w = pwritev(fd, v, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? -errno : -ENOSPC;
    off += (uint64_t)w;
    while (n > 0 && (size_t)w >= v->iov_len) w -= (ssize_t)v->iov_len, v++, n--;
    if (n > 0) v->iov_base = (uint8_t *)v->iov_base + w, v->iov_len -= (size_t)w;
  }
  return 0;
}

/* Write an own chunk's bytes up to @p end (the caller's pieces, zeros between
 * them) with one pwritev() per run of pieces that are not in the file yet. The
 * page cache takes them without a page fault, and a whole page or huge page
 * written at once is never zeroed first: on 4 KiB pages that saves the fault
 * and zeroing per page that cost more than the copy, on a huge-page tmpfs the
 * zeroing of each fresh 2 MiB page (docs/design.md 17.3). */
static int write_pieces(struct part *pt, uint64_t k, uint64_t off, uint64_t end) {
  struct snap__share *sh = pt->ps->sh;
  const struct snap__extent *ext = sh->ext;
  enum { NV = 64 };
  struct iovec v[NV];
  int n = 0, rc = 0;
  uint64_t cur = off, at = off; /* at: where v[0] goes */
  for (size_t i = first_after(ext, sh->next, off);
       !rc && i < sh->next && ext[i].off < end; i++) {
    uint64_t a = ext[i].off > off ? ext[i].off : off;
    uint64_t b = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
    bool in_file = ext[i].src == sh->map + ext[i].off;
    while (!rc && cur < a) { /* zeros between pieces */
      if (n == NV) rc = pwritev_all(sh->fd, v, n, at), at = cur, n = 0;
      size_t z = a - cur < sizeof zeros ? a - cur : sizeof zeros;
      v[n++] = (struct iovec){(void *)zeros, z};
      cur += z;
    }
    if (!rc && (in_file || n == NV)) { /* flush: a piece in the file stays as is */
      rc = pwritev_all(sh->fd, v, n, at);
      n = 0;
      at = in_file ? b : a;
    }
    if (!rc && !in_file)
      v[n++] = (struct iovec){(void *)(ext[i].src + (a - ext[i].off)), b - a};
    cur = b;
  }
  if (!rc && n) rc = pwritev_all(sh->fd, v, n, at);
  if (rc)
    return snap__errno(&pt->err, rc, "%s: writing chunk %llu (%llu bytes)", sh->what,
                       (unsigned long long)k, (unsigned long long)(end - off));
  return 0;
}

/* Punch a borrowed chunk the caller had written, or allocate an own chunk and
 * copy the caller's pieces in (once: phase 1 writes the chunks it decides are
 * own, phase 2 the ones compaction made own). */
static int write_chunk(struct part *pt, uint64_t k) {
  struct pass *ps = pt->ps;
  struct snap__share *sh = ps->sh;
  const struct snap__extent *ext = sh->ext;
  uint64_t off = ps->doff + k * ps->chunk, end = off + ps->chunk;
  uint8_t fl = ps->flag[k];
  if (fl & C_WRITTEN) return 0;
  if (fl & C_BORROW) {
    if ((fl & C_IN_FILE) && fallocate(sh->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                      (off_t)off, (off_t)ps->chunk))
      return snap__errno(&pt->err, -errno, "%s: punching chunk %llu", sh->what,
                         (unsigned long long)k);
    return 0;
  }
  /* up to the last buffer byte in the chunk: not the padding or the room for
   * rows after it, which stay holes */
  uint64_t live_end = off;
  for (size_t i = first_after(ext, sh->next, off); i < sh->next && ext[i].off < end; i++)
    live_end = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
  if (live_end <= off) return 0;
  int rc = (fl & C_SRC) ? write_pieces(pt, k, off, live_end) : 0;
  if (!rc) pt->owned += live_end - off;
  return rc;
}

static void *part_run(void *arg) {
  struct part *pt = arg;
  for (uint64_t k = pt->from; k < pt->to && !pt->rc; k++) {
    if (pt->ps->phase == 1)
      decide(pt, k);
    else
      pt->rc = write_chunk(pt, k);
  }
  return NULL;
}

/* Run the phase over all chunks on up to SNAP__SHARE_THREADS threads
 * (contiguous ranges; this thread takes the first). */
#define SNAP__SHARE_THREADS 8
static int run_phase(struct pass *ps, uint64_t n, uint64_t *owned,
                     struct snap_error *err) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t t = cpus > 1 ? (uint64_t)cpus : 1;
  if (t > SNAP__SHARE_THREADS) t = SNAP__SHARE_THREADS;
  if (t > n / 8 + 1) t = n / 8 + 1; /* small tables: no threads */
  struct part parts[SNAP__SHARE_THREADS];
  pthread_t tid[SNAP__SHARE_THREADS];
  bool started[SNAP__SHARE_THREADS] = {false};
  for (uint64_t i = 0; i < t; i++) {
    parts[i] = (struct part){ps, n * i / t, n * (i + 1) / t, 0, {0}, 0, 0, 1, 0};
    if (i && !pthread_create(&tid[i], NULL, part_run, &parts[i])) started[i] = true;
  }
  part_run(&parts[0]);
  for (uint64_t i = 1; i < t; i++) {
    if (started[i])
      pthread_join(tid[i], NULL);
    else
      part_run(&parts[i]); /* no thread: do its share here */
  }
  int rc = 0;
  for (uint64_t i = 0; i < t; i++) {
    if (owned) *owned += parts[i].owned;
    if (parts[i].rc && !rc) {
      rc = parts[i].rc;
      if (err) *err = parts[i].err;
    }
  }
  return rc;
}

int snap__chunks_write(struct snap__share *sh, struct snap_error *err) {
  const struct snap__segment *seg = sh->seg, *bs = sh->base;
  uint64_t shift = seg->chunk_shift, n = seg->nchunks;
  uint64_t *holder = calloc(n ? n : 1, sizeof *holder); /* 0: own */
  uint64_t *hash = calloc(n ? n : 1, sizeof *hash);
  uint8_t *flag = calloc(n ? n : 1, 1);
  uint64_t *vers = calloc(SNAP__MAX_FILES + 1, sizeof *vers);
  int rc = 0;
  if (!holder || !hash || !flag || !vers) {
    rc = snap__errno(err, -ENOMEM, "%s: chunk table of %llu chunks", sh->what,
                     (unsigned long long)n);
    goto out;
  }
  bool usebase =
      bs && bs->format == SNAP__FORMAT_V2 && bs->chunk_shift == shift && !sh->full;
  struct pass ps = {.sh = sh,
                    .bchunks = usebase ? bs->chunks : NULL,
                    .chunk = 1ull << shift,
                    .doff = seg->data_offset,
                    .data_end = seg->data_offset,
                    .bdoff = usebase ? bs->data_offset : 0,
                    .bn = usebase ? bs->nchunks : 0,
                    .hash = hash,
                    .flag = flag,
                    .phase = 1};
  for (size_t i = 0; i < sh->next; i++)
    if (sh->ext[i].off + sh->ext[i].len > ps.data_end)
      ps.data_end = sh->ext[i].off + sh->ext[i].len;
  sh->owned = 0;
  if ((rc = run_phase(&ps, n, &sh->owned, err))) goto out;
  /* Who holds each borrowed chunk; at most SNAP__MAX_FILES files (a chunk
   * from one more is copied instead: compaction). */
  uint32_t nvers = 0;
  for (uint64_t k = 0; k < n; k++) {
    if (flag[k] & C_IDENTITY) sh->identical++;
    if (flag[k] & C_COMPARED) sh->compared++;
    if (!(flag[k] & C_BORROW)) continue;
    const struct snap__chunk *bc =
        &bs->chunks[(ps.doff + k * ps.chunk - ps.bdoff) >> shift];
    uint64_t v = bc->file ? bs->files[bc->file - 1] : bs->version;
    uint32_t j = 0;
    while (j < nvers && vers[j] != v) j++;
    if (j == nvers && nvers == SNAP__MAX_FILES) {
      flag[k] &= (uint8_t)~C_BORROW;
      continue;
    }
    if (j == nvers) vers[nvers++] = v;
    holder[k] = v;
    sh->borrowed++;
  }
  /* Bounded mappings (compaction): past SNAP__MAX_PIECES runs of borrowed
   * chunks, runs shorter than SNAP__SHORT_RUN bytes (the scattered parts: cheap
   * to copy) are copied instead, shortest first; past SNAP__MAX_PIECES_HARD,
   * any run, shortest first. */
  uint64_t runs = 0;
  for (uint64_t k = 0; k < n; k++)
    if (holder[k] && (k == 0 || holder[k - 1] != holder[k])) runs++;
  if (runs > SNAP__MAX_PIECES) {
    uint64_t *len = malloc(runs * 2 * sizeof *len), r = 0;
    if (!len) {
      rc = snap__errno(err, -ENOMEM, "%s: %llu runs", sh->what, (unsigned long long)runs);
      goto out;
    }
    for (uint64_t k = 0; k < n; k++) /* (length << 32 | index) pairs: sortable */
      if (holder[k] && (k == 0 || holder[k - 1] != holder[k])) {
        uint64_t e = k;
        while (e < n && holder[e] == holder[k]) e++;
        len[r] = (e - k) << 32 | r;
        len[runs + r] = k;
        r++;
      }
    qsort(len, runs, sizeof *len, snap__cmp_u64);
    uint64_t short_run = SNAP__SHORT_RUN >> shift;
    for (uint64_t i = 0; i + SNAP__MAX_PIECES < runs; i++) {
      if (i + SNAP__MAX_PIECES_HARD >= runs && (len[i] >> 32) > short_run) break;
      uint64_t k = len[runs + (len[i] & 0xffffffffu)], v = holder[k];
      for (; k < n && holder[k] == v; k++) {
        holder[k] = 0;
        flag[k] &= (uint8_t)~C_BORROW;
        sh->borrowed--;
        sh->compacted++;
      }
    }
    free(len);
    /* the file table keeps only the lenders still used */
    uint32_t keep = 0;
    for (uint32_t j = 0; j < nvers; j++) {
      bool used = false;
      for (uint64_t k = 0; k < n && !used; k++) used = holder[k] == vers[j];
      if (used) vers[keep++] = vers[j];
    }
    nvers = keep;
  }
  sh->written = n - sh->borrowed;
  ps.phase = 2;
  if ((rc = run_phase(&ps, n, &sh->owned, err))) goto out;
  /* The file table in increasing order, then the entries. */
  qsort(vers, nvers, sizeof *vers, snap__cmp_u64);
  uint8_t *t = sh->map + seg->chunk_table;
  for (uint64_t k = 0; k < n; k++) {
    uint32_t file = snap__file_index(vers, nvers, holder[k]);
    memcpy(t + k * SNAP__CHUNK_ENTRY, &hash[k], 8);
    memcpy(t + k * SNAP__CHUNK_ENTRY + 8, &file, 4);
    memset(t + k * SNAP__CHUNK_ENTRY + 12, 0, 4);
  }
  memcpy(t + n * SNAP__CHUNK_ENTRY, vers, 8ull * nvers);
  uint64_t msize =
      seg->chunk_table + n * SNAP__CHUNK_ENTRY + 8ull * nvers - SNAP__HEADER_SIZE;
  memcpy(sh->map + SNAP__H_NFILES, &nvers, 4);
  memcpy(sh->map + SNAP__H_MANIFEST_SIZE, &msize, 8);
  sh->nfiles = nvers;
out:
  free(holder);
  free(hash);
  free(flag);
  free(vers);
  return rc;
}
