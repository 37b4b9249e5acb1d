/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: format 2 manifests with cross-file references. A real
 * store (4 KiB chunks) holds versions 1 and 2 of dataset "d", 2 sharing most
 * of 1's chunks. Each input is taken as the file of a later version of "d":
 * stamped with the store's id (and, in a second pass, with its header hash
 * recomputed, as a forged file would be), written to a tmpfs file, mapped, and
 * read as a pin reads it: parse, compose the borrowed chunks from the lenders'
 * files, check the data through the composed view, verify every chunk. Whatever
 * passes must be safe to read: every byte of every buffer is touched.
 *
 * The seeds (fuzz/corpus/compose) are version 3 files of this same store
 * layout; LLVMFuzzerInitialize rebuilds versions 1 and 2 identically each run.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static snap_store *g_store;
static int g_dsfd = -1;
static volatile uint64_t sink;

static void touch(const void *p, uint64_t len) {
  const uint8_t *b = p;
  uint64_t acc = 0;
  for (uint64_t i = 0; i < len; i++) acc += b[i];
  sink += acc;
}

#define ROWS 3000

/* Version @p v of "d": int64, float64 and string columns; version 2 changes
 * the float column only. */
static void publish(int v) {
  struct snap_field f[3] = {{.name = "i", .type = SNAP_INT64},
                            {.name = "x", .type = SNAP_FLOAT64},
                            {.name = "s", .type = SNAP_STRING, .data_bytes = ROWS * 3}};
  struct snap_schema schema = {ROWS, 3, f, NULL, 0};
  snap_publish *p;
  struct snap_fill fl;
  if (snap_publish_begin(g_store, "d", &schema, &p, NULL)) abort();
  snap_publish_fill(p, 0, &fl, NULL);
  for (int r = 0; r < ROWS; r++) ((int64_t *)fl.values)[r] = r;
  snap_publish_fill(p, 1, &fl, NULL);
  for (int r = 0; r < ROWS; r++) ((double *)fl.values)[r] = r * (v == 1 ? 0.5 : 2.0);
  snap_publish_fill(p, 2, &fl, NULL);
  for (int r = 0; r <= ROWS; r++) fl.offsets[r] = 3 * r;
  for (int r = 0; r < ROWS * 3; r++) fl.data[r] = (char)('a' + r % 26);
  if (snap_publish_commit(p, NULL, NULL)) abort();
}

static char g_tmp[4096];

/* The store goes with the process, however the run ends normally. */
static void cleanup(void) {
  if (g_dsfd >= 0) close(g_dsfd);
  if (g_store) snap_store_close(g_store);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (g_tmp[0] && system(cmd)) {
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("LIBSNAP_CHUNK_SHIFT", "12", 1);
  const char *base = getenv("SNAP_FUZZ_DIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/fuzzcompose-XXXXXX", base ? base : "/dev/shm");
  if (!mkdtemp(tmpl)) abort();
  snprintf(g_tmp, sizeof g_tmp, "%s", tmpl);
  atexit(cleanup);
  char path[4200];
  snprintf(path, sizeof path, "%s/store", tmpl);
  if (snap_store_open(path, SNAP_CREATE, &g_store, NULL)) abort();
  /* a fixed store id, so that the seeds' lenders are this store's */
  static const uint8_t id[16] = "libsnap-fuzz-id";
  memcpy(g_store->store_id, id, 16);
  if (snap_store_set_keep(g_store, NULL, 10, NULL)) abort();
  publish(1);
  publish(2);
  snprintf(path, sizeof path, "%s/store/segments/d", tmpl);
  g_dsfd = open(path, O_RDONLY | O_DIRECTORY);
  if (g_dsfd < 0) abort();
  /* a seed for the corpus: SNAP_FUZZ_SEED=FILE writes version 3 (sharing) there */
  const char *seed = getenv("SNAP_FUZZ_SEED");
  if (seed) {
    publish(3);
    snprintf(path, sizeof path, "%s/store/segments/d/3.seg", tmpl);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, seed);
    if (system(cmd)) abort();
  }
  return 0;
}

static void check(const uint8_t *data, size_t size) {
  int fd = openat(g_dsfd, ".", O_TMPFILE | O_RDWR, 0600);
  if (fd < 0) return;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return;
  }
  void *addr;
  if (snap__map_aligned(fd, size, false, &addr)) {
    close(fd);
    return;
  }
  struct snap__segment seg;
  struct snap_error err;
  if (!snap__segment_parse(addr, size, SNAP__SEG_NO_DATA, "fuzz", "d", 0, &seg, &err)) {
    if (!snap__compose(g_store, &seg, addr, false, "fuzz", &err) &&
        !snap__segment_check_data(&seg, "fuzz", &err)) {
      for (uint32_t i = 0; i < seg.ncols; i++) {
        const struct snap_column *c = &seg.cols[i];
        touch(c->values, c->values_bytes);
        touch(c->validity, c->validity_bytes);
        touch(c->offsets, c->offsets_bytes);
        touch(c->data, c->data_bytes);
      }
      snap__segment_verify_data(&seg, addr, "fuzz", &err);
    }
    snap__segment_free(&seg);
  }
  snap__unmap(addr, size);
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < SNAP__HEADER_SIZE || size > (64u << 20)) return 0;
  uint8_t *buf = malloc(size);
  if (!buf) return 0;
  memcpy(buf, data, size);
  memcpy(buf + SNAP__H_STORE_ID, g_store->store_id, 16);
  check(buf, size);
  uint64_t msize;
  memcpy(&msize, buf + SNAP__H_MANIFEST_SIZE, 8);
  if (msize <= size - SNAP__HEADER_SIZE) {
    uint64_t h = snap__header_hash(buf, msize);
    memcpy(buf + SNAP__H_HEADER_HASH, &h, 8);
    check(buf, size);
  }
  free(buf);
  return 0;
}
