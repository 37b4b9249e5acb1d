/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: segment validation. Every input is parsed twice: as is
 * (almost everything dies at the header checksum, as real damage would), and
 * with the header checksum recomputed first, so the fuzzer explores the
 * structural checks behind it, as a forged file would. Whatever the parser
 * accepts must be safe to read: every byte of every buffer it hands out is
 * touched (ASan catches anything out of bounds).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static volatile uint64_t sink;

static void touch(const void *p, uint64_t len) {
  const uint8_t *b = p;
  uint64_t acc = 0;
  for (uint64_t i = 0; i < len; i++) acc += b[i];
  sink += acc;
}

static void check(const uint8_t *buf, size_t size) {
  struct snap__segment seg;
  struct snap_error err;
  if (snap__segment_parse(buf, size, 0, "fuzz", NULL, 0, &seg, &err)) return;
  for (uint32_t b = 0; b < seg.nblocks; b++)
    touch(seg.blocks[b].data,
          seg.blocks[b].ncols * seg.nrows * snap_type_size(seg.blocks[b].type));
  for (uint32_t i = 0; i < seg.ncols; i++) {
    const struct snap_column *c = &seg.cols[i];
    size_t vs =
        c->type == SNAP_CATEGORY ? snap_type_size(c->code_type) : snap_type_size(c->type);
    touch(c->values, vs * seg.nrows);
    if (c->validity) touch(c->validity, (seg.nrows + 7) / 8);
    if (c->offsets) {
      uint64_t n = c->type == SNAP_STRING ? seg.nrows : c->dict_size;
      touch(c->offsets, (n + 1) * 8);
      /* what a reader does with them: slices of the data */
      for (uint64_t k = 0; k < n; k++)
        touch(c->data + c->offsets[k], c->offsets[k + 1] - c->offsets[k]);
    }
    if (c->type == SNAP_CATEGORY)
      for (uint64_t r = 0; r < seg.nrows; r++) {
        int64_t code = c->code_type == SNAP_INT8    ? ((const int8_t *)c->values)[r]
                       : c->code_type == SNAP_INT16 ? ((const int16_t *)c->values)[r]
                       : c->code_type == SNAP_INT32 ? ((const int32_t *)c->values)[r]
                                                    : ((const int64_t *)c->values)[r];
        if (code >= 0)
          touch(c->data + c->offsets[code], c->offsets[code + 1] - c->offsets[code]);
      }
  }
  touch(seg.metadata, seg.metadata_len);
  snap__segment_free(&seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* the mapping is page-aligned; give the parser the same alignment */
  uint8_t *buf = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
  if (!buf) return 0;
  memcpy(buf, data, size);
  check(buf, size);
  if (size >= SNAP__HEADER_SIZE) {
    uint64_t msize;
    memcpy(&msize, buf + SNAP__H_MANIFEST_SIZE, 8);
    if (msize <= size - SNAP__HEADER_SIZE) {
      uint64_t h = snap__header_hash(buf, msize);
      memcpy(buf + SNAP__H_HEADER_HASH, &h, 8);
      check(buf, size);
    }
  }
  free(buf);
  return 0;
}
