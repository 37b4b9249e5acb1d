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
 *     back): borrow without reading a byte;
 *  2. otherwise hash the pieces (XXH3-64, streaming) and, when the base's
 *     chunk at that offset has the same hash, compare the bytes: borrow on
 *     equality (the hash only selects candidates);
 *  3. otherwise the chunk is the new file's own: allocate it, copy the
 *     caller's pieces in, zero the padding.
 * A borrowed chunk that the caller had written into the new file is punched
 * out of it again, so that the sealed file holds only its own chunks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static bool zero_eq(const uint8_t *p, uint64_t len) {
  while (len) {
    uint64_t n = len < sizeof zeros ? len : sizeof zeros;
    if (memcmp(p, zeros, n)) return false;
    p += n;
    len -= n;
  }
  return true;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int snap__chunks_write(struct snap__share *sh, struct snap_error *err) {
  const struct snap__segment *seg = sh->seg, *bs = sh->base;
  uint64_t shift = seg->chunk_shift, chunk = 1ull << shift;
  uint64_t doff = seg->data_offset, n = seg->nchunks;
  const struct snap__extent *ext = sh->ext;
  uint64_t *holder = calloc(n ? n : 1, sizeof *holder); /* 0: own */
  uint64_t *hash = calloc(n ? n : 1, sizeof *hash);
  uint64_t *vers = calloc(SNAP__MAX_FILES + 1, sizeof *vers);
  int rc = 0;
  if (!holder || !hash || !vers) {
    rc = snap__errno(err, -ENOMEM, "%s: chunk table of %llu chunks", sh->what,
                     (unsigned long long)n);
    goto out;
  }
  bool usebase =
      bs && bs->format == SNAP__FORMAT_V2 && bs->chunk_shift == shift && !sh->full;
  uint32_t nvers = 0;
  uint64_t data_end = doff;
  for (size_t i = 0; i < sh->next; i++)
    if (ext[i].off + ext[i].len > data_end) data_end = ext[i].off + ext[i].len;
  size_t first = 0;
  sh->owned = 0;
  for (uint64_t k = 0; k < n; k++) {
    uint64_t off = doff + k * chunk, end = off + chunk;
    while (first < sh->next && ext[first].off + ext[first].len <= off) first++;
    /* the base's chunk at the same file offset, if any */
    const struct snap__chunk *bc = NULL;
    if (usebase && off >= bs->data_offset &&
        ((off - bs->data_offset) >> shift) < bs->nchunks)
      bc = &bs->chunks[(off - bs->data_offset) >> shift];
    bool identity = bc != NULL, in_file = false, has_src = false;
    for (size_t i = first; i < sh->next && ext[i].off < end; i++) {
      if (ext[i].src == sh->map + ext[i].off)
        in_file = true, identity = false;
      else
        has_src = true;
      uint64_t a = ext[i].off > off ? ext[i].off : off;
      if (identity && ext[i].src + (a - ext[i].off) != sh->base_addr + a)
        identity = false;
    }
    if (identity && !has_src) identity = false; /* nothing but padding: hash it */
    uint64_t h;
    bool borrow = false;
    if (identity) {
      h = bc->hash;
      borrow = true;
      sh->identical++;
    } else {
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
      h = XXH3_64bits_digest(&st);
      if (bc && bc->hash == h) {
        borrow = true;
        cur = off;
        for (size_t i = first; borrow && i < sh->next && ext[i].off < end; i++) {
          uint64_t a = ext[i].off > off ? ext[i].off : off;
          uint64_t b = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
          if (a > cur && !zero_eq(sh->base_addr + cur, a - cur)) borrow = false;
          if (borrow && memcmp(ext[i].src + (a - ext[i].off), sh->base_addr + a, b - a))
            borrow = false;
          cur = b;
        }
        if (borrow && cur < end && !zero_eq(sh->base_addr + cur, end - cur))
          borrow = false;
        sh->compared++;
      }
    }
    if (borrow) {
      uint64_t v = bc->file ? bs->files[bc->file - 1] : bs->version;
      uint32_t j = 0;
      while (j < nvers && vers[j] != v) j++;
      if (j == nvers && nvers == SNAP__MAX_FILES)
        borrow = false; /* too many lenders: this chunk is copied (compaction) */
      else if (j == nvers)
        vers[nvers++] = v;
      if (borrow) holder[k] = v;
    }
    hash[k] = h;
    if (borrow) {
      sh->borrowed++;
      /* bytes the caller wrote into the new file for this chunk go again */
      if (in_file && fallocate(sh->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)off, (off_t)chunk)) {
        rc = snap__errno(err, -errno, "%s: punching chunk %llu", sh->what,
                         (unsigned long long)k);
        goto out;
      }
      continue;
    }
    /* own: allocate what holds data (not the padding after the data's end),
     * copy the caller's pieces, zero the gaps between buffers */
    uint64_t live_end = data_end < end ? data_end : end;
    if (live_end > off) {
      uint64_t aend = (live_end + 4095) & ~(uint64_t)4095;
      int e = has_src ? posix_fallocate(sh->fd, (off_t)off, (off_t)(aend - off)) : 0;
      if (e) {
        rc = snap__errno(err, -e, "%s: allocating chunk %llu (%llu bytes)", sh->what,
                         (unsigned long long)k, (unsigned long long)(aend - off));
        goto out;
      }
      uint64_t cur = off;
      for (size_t i = first; i < sh->next && ext[i].off < end; i++) {
        uint64_t a = ext[i].off > off ? ext[i].off : off;
        uint64_t b = ext[i].off + ext[i].len < end ? ext[i].off + ext[i].len : end;
        if (a > cur && has_src) memset(sh->map + cur, 0, a - cur);
        if (ext[i].src != sh->map + ext[i].off)
          memcpy(sh->map + a, ext[i].src + (a - ext[i].off), b - a);
        cur = b;
      }
      sh->owned += live_end - off;
    }
    sh->written++;
  }
  /* The file table in increasing order, then the entries. */
  qsort(vers, nvers, sizeof *vers, cmp_u64);
  uint8_t *t = sh->map + seg->chunk_table;
  for (uint64_t k = 0; k < n; k++) {
    uint32_t file = 0;
    if (holder[k])
      while (vers[file++] != holder[k]) {
      }
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
  free(vers);
  return rc;
}
