/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Composing a v2 version: the chunks it borrows from earlier versions' files
 * are mapped over its own mapping, at the same offsets, so that every column
 * and block stays one contiguous range (docs/design.md section 16.1).
 *
 * A borrowed chunk lies at the same file offset in the lender's file as in
 * the borrower's, so a run of consecutive chunks held by one file is one
 * mmap(MAP_FIXED) piece. The lender's file is opened by name only to map it;
 * the borrower's pin keeps the chunks alive (gc.c computes liveness from the
 * manifests of live versions), so no lock is taken on the lender.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int snap__lender_open(snap_store *s, const char *dataset, uint64_t version, uint64_t need,
                      int *out, struct snap_error *err) {
  char rel[512];
  uint8_t h[SNAP__HEADER_SIZE];
  struct stat st;
  *out = -1;
  snap__seg_relpath(rel, sizeof rel, dataset, version);
  int fd = openat(s->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return snap__errno(err, -errno, "%s/%s: the file of a version lending chunks",
                       s->path, rel);
  const char *bad = NULL;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode))
    bad = "not a regular file";
  else if ((uint64_t)st.st_size < need)
    bad = "shorter than the chunks borrowed from it";
  else if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, SNAP__MAGIC, 8))
    bad = "no segment header";
  else if (snap__get32(h + SNAP__H_FORMAT) != SNAP__FORMAT_V2 ||
           snap__get64(h + SNAP__H_VERSION) != version ||
           snap__get64(h + SNAP__H_TOTAL_SIZE) != (uint64_t)st.st_size ||
           memcmp(h + SNAP__H_STORE_ID, s->store_id, 16))
    bad = "header is not that of this store's version";
  else {
    size_t nlen = h[SNAP__H_NAME_LEN];
    if (nlen != strlen(dataset) || h[SNAP__H_NAME_LEN + 1] ||
        memcmp(h + SNAP__H_NAME, dataset, nlen))
      bad = "header names another dataset";
  }
  if (bad) {
    close(fd);
    return snap__err(err, SNAP_ECORRUPT, "%s/%s: lends chunks but its %s", s->path, rel,
                     bad);
  }
  *out = fd;
  return 0;
}

int snap__compose(snap_store *s, const struct snap__segment *seg, uint8_t *addr,
                  bool priv, const char *what, struct snap_error *err) {
  if (seg->format != SNAP__FORMAT_V2 || !seg->nfiles) return 0;
  uint64_t chunk = 1ull << seg->chunk_shift;
  for (uint32_t f = 1; f <= seg->nfiles; f++) {
    /* the end of the last chunk borrowed from this file bounds its size */
    uint64_t need = 0;
    for (uint64_t k = 0; k < seg->nchunks; k++)
      if (seg->chunks[k].file == f) need = seg->data_offset + (k + 1) * chunk;
    if (!need) continue;
    int fd, rc = snap__lender_open(s, seg->dataset, seg->files[f - 1], need, &fd, err);
    if (rc) {
      /* a live version's lender is gone or not what it should be: damage */
      if (rc == -ENOENT) rc = SNAP_ECORRUPT;
      if (err) {
        char msg[sizeof err->message + 8];
        int n = snprintf(msg, sizeof msg, "%s: %s", what, err->message);
        (void)n;
        snprintf(err->message, sizeof err->message, "%.255s", msg);
        err->code = rc;
      }
      return rc;
    }
    for (uint64_t k = 0; k < seg->nchunks;) {
      if (seg->chunks[k].file != f) {
        k++;
        continue;
      }
      uint64_t run = k;
      while (run < seg->nchunks && seg->chunks[run].file == f) run++;
      uint64_t off = seg->data_offset + k * chunk, len = (run - k) * chunk;
      int prot = PROT_READ | (priv ? PROT_WRITE : 0);
      if (mmap(addr + off, len, prot, (priv ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED, fd,
               (off_t)off) == MAP_FAILED) {
        rc = snap__errno(err, -errno, "%s: mapping chunks %llu..%llu of version %llu",
                         what, (unsigned long long)k, (unsigned long long)(run - 1),
                         (unsigned long long)seg->files[f - 1]);
        close(fd);
        return rc;
      }
      k = run;
    }
    close(fd);
  }
  return 0;
}

uint64_t snap__compose_pieces(const struct snap__segment *seg) {
  if (seg->format != SNAP__FORMAT_V2) return 1;
  uint64_t n = 1; /* the own mapping */
  for (uint64_t k = 0; k < seg->nchunks; k++)
    if (seg->chunks[k].file && (k == 0 || seg->chunks[k - 1].file != seg->chunks[k].file))
      n++;
  return n;
}
