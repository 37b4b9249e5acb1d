/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: what a follower reads from a bucket before it trusts
 * anything (sync/src/objects.c): the announcement (JSON) and the manifest
 * object (a segment head plus the locator), on bytes anyone with write access
 * to the bucket, or anything on the way, could put there. The input is copied
 * to a buffer of exactly its size, so ASan catches a read past it. Whatever
 * parses must hold only indices and lengths the follower may use; a refusal
 * must say why.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  memcpy(text, data, size);
  struct announce a;
  struct snap_sync_error err = {0};
  int rc = announce_parse(text, size, "d/announce", &a, &err);
  if (rc == 0 &&
      (!a.version || a.nkept > SYNC_KEEP_MAX || strlen(a.dataset) >= sizeof a.dataset ||
       strlen(a.host) >= sizeof a.host))
    abort();
  if (rc && (!err.message[0] || !err.kind[0])) abort();
  free(text);

  uint8_t *buf = malloc(size ? size : 1); /* manifest_parse takes it */
  if (!buf) return 0;
  memcpy(buf, data, size);
  struct manifest m;
  memset(&err, 0, sizeof err);
  rc = manifest_parse(buf, size, "d", "d/v/1.manifest", &m, &err);
  if (rc == 0) {
    if (m.data_offset > size || m.shift < 12 || m.shift > 30) abort();
    for (uint64_t k = 0; k < m.nchunks; k++)
      if (m.loc[k].pack != SYNC_ZERO_PACK && m.loc[k].pack >= m.npacks) abort();
    for (uint64_t i = 0; i < m.ndeltas; i++) {
      const struct delta *d = &m.deltas[i];
      if (d->chunk >= m.nchunks || d->pack >= m.npacks) abort();
      if (manifest_delta(&m, d->chunk) != d) abort();
    }
    for (uint32_t i = 0; i < m.npacks; i++)
      if (strlen(m.packs[i]) != SYNC_PACK_NAME) abort();
  } else if (!err.message[0]) {
    abort();
  }
  manifest_free(&m);

  /* deltas from the bucket applied to a chunk: never out of bounds */
  static uint8_t chunk[4096];
  (void)delta_apply(chunk, sizeof chunk, data, (uint32_t)(size > UINT32_MAX ? 0 : size));
  return 0;
}
