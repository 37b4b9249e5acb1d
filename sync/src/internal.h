/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interfaces of snap_sync. Layering (a file calls only files above it):
 *
 *   error.c      struct snap_sync_error helpers, the clock
 *   remote.c     the object store: S3 through snap_s3, or a directory
 *   objects.c    the objects' formats: keys, pack names, the locator, the
 *                announcement (JSON)
 *   push.c       the primary's side
 *   follow.c     a follower's side
 */
#ifndef SNAP_SYNC_INTERNAL_H
#define SNAP_SYNC_INTERNAL_H

#include <snap_s3/s3.h>
#include <stdbool.h>

#include "snap_sync/sync.h"

/* ----------------------------------------------------------------- error.c */

int sync__err(struct snap_sync_error *err, int code, const char *kind, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));
/* From a snap_s3 failure, the kind chosen from its code; @p what prefixes it. */
int sync__s3(struct snap_sync_error *err, int code, const struct snap_s3_error *e,
             const char *what);
/* From a libsnap failure. */
int sync__snap(struct snap_sync_error *err, int code, const struct snap_error *e,
               const char *what);
/* Seconds on CLOCK_MONOTONIC, for the durations in results. */
double sync__now(void);
/* The kind of a snap_s3 status. */
const char *sync__s3_kind(int code);

/* ---------------------------------------------------------------- remote.c */

/* One thread's connection to the remote (an S3 handle, or nothing for a
 * directory). Taken from and given back to the remote's pool. */
struct rconn;
int r_conn(snap_remote *r, struct rconn **out, struct snap_sync_error *err);
void r_release(struct rconn *c);

/* The calls return 0 or a snap_s3 status (a directory maps its failures onto
 * them: ENOENT is SNAP_S3_ENOTFOUND, a failed condition SNAP_S3_EPRECONDITION)
 * or -errno, with @p e filled. */
int r_get(struct rconn *c, const char *key, uint64_t off, uint64_t len, void *buf,
          size_t cap, size_t *got, struct snap_s3_object *info, struct snap_s3_error *e);
/* The whole object into a malloc'd buffer (*buf, *len), at most @p max bytes;
 * unless its ETag is @p etag (SNAP_S3_ENOTMODIFIED). */
/* The same, the bytes handed to @p sink as they arrive (snap_s3_get_cb()). */
int r_get_cb(struct rconn *c, const char *key, uint64_t off, uint64_t len,
             snap_s3_sink sink, void *arg, uint64_t *got, struct snap_s3_error *e);
int r_get_all(struct rconn *c, const char *key, const char *etag, size_t max,
              uint8_t **buf, size_t *len, struct snap_s3_object *info,
              struct snap_s3_error *e);
int r_head(struct rconn *c, const char *key, struct snap_s3_object *info,
           struct snap_s3_error *e);
int r_put(struct rconn *c, const char *key, const void *buf, size_t len,
          const struct snap_s3_cond *cond, struct snap_s3_object *info,
          struct snap_s3_error *e);
int r_delete(struct rconn *c, const char *key, struct snap_s3_error *e);
/* Every key under @p prefix, all pages: cb(entry, arg) for each; non-zero stops. */
int r_list(struct rconn *c, const char *prefix,
           int (*cb)(const struct snap_s3_entry *ent, void *arg), void *arg,
           struct snap_s3_error *e);

/* A large upload in parts that several threads send at once (S3 multipart;
 * a directory: a temporary file renamed at the end). */
struct rupload;
int r_up_begin(struct rconn *c, const char *key, uint64_t size, struct rupload **out,
               struct snap_s3_error *e);
/* Part @p number (1-based) holding bytes [off, off + len) of the object. */
int r_up_part(struct rconn *c, struct rupload *u, unsigned number, uint64_t off,
              const void *buf, size_t len, struct snap_s3_error *e);
int r_up_complete(struct rconn *c, struct rupload *u, struct snap_s3_error *e);
void r_up_abort(struct rconn *c, struct rupload *u);

/* Bytes moved, for snap_remote_bytes(). */
void r_count(snap_remote *r, uint64_t up, uint64_t down);

/* --------------------------------------------------------------- objects.c */

#define SYNC_PACK_NAME 32 /* hex digits of a pack's name */
#define SYNC_ZERO_PACK UINT32_MAX
#define SYNC_LOC_MAGIC "SNAPLOC\x02"
#define SYNC_LOC_HEAD 32u    /* magic, npacks, reserved, nchunks, ndeltas */
#define SYNC_LOC_ENTRY 8u    /* u32 pack, u32 index of the chunk in the pack */
#define SYNC_DELTA_ENTRY 32u /* u64 chunk, u64 base hash, u32 pack, u32 len, u64 off */
#define SYNC_RUN_HEAD 8u     /* a delta run: u32 offset in the chunk, u32 length */

/* Where a chunk is in the remote: chunk @index of pack @pack (its bytes at
 * index << shift), or nowhere (SYNC_ZERO_PACK: all zeros). */
struct loc {
  uint32_t pack;
  uint32_t index;
};

/* A changed chunk also stored as a delta against the chunk at the same place
 * in the version the announcement named before (hash @base): @len bytes at
 * @off of pack @pack, runs of (u32 offset, u32 length, bytes). */
struct delta {
  uint64_t chunk, base;
  uint32_t pack, len;
  uint64_t off;
};

/* A version's manifest object, parsed: the head (header + manifest of the
 * primary's file) and the locator. */
struct manifest {
  uint8_t *buf; /* the whole object (owned) */
  size_t len;
  uint64_t version, data_offset, nchunks, total;
  uint32_t shift;
  uint64_t *hash;  /* per chunk (owned) */
  struct loc *loc; /* per chunk (owned) */
  uint32_t npacks;
  char (*packs)[SYNC_PACK_NAME + 1]; /* owned */
  struct delta *deltas;              /* sorted by chunk (owned) */
  uint64_t ndeltas;
};
/* Parse and check a manifest object of @p dataset (taking @p buf). */
int manifest_parse(uint8_t *buf, size_t len, const char *dataset, const char *key,
                   struct manifest *m, struct snap_sync_error *err);
void manifest_free(struct manifest *m);
/* The delta of chunk @p k, or NULL. */
const struct delta *manifest_delta(const struct manifest *m, uint64_t k);
/* Serialize: @p head (data_offset bytes) then the locator. malloc'd. */
int manifest_build(const void *head, uint64_t data_offset, uint64_t nchunks,
                   const struct loc *loc, char (*packs)[SYNC_PACK_NAME + 1],
                   uint32_t npacks, const struct delta *deltas, uint64_t ndeltas,
                   uint8_t **out, size_t *len);
/* A pack's name: the XXH3-128 of its chunk hashes, the shift, the count and its
 * delta bytes. */
void pack_name(const uint64_t *hashes, uint64_t n, uint32_t shift, const void *deltas,
               size_t dlen, char out[SYNC_PACK_NAME + 1]);
/* The runs where @p b differs from @p a (@p len bytes), appended to @p out
 * (*n bytes used of *cap, grown); fails (returns 1) when they would take more
 * than @p most bytes. */
int delta_make(const uint8_t *a, const uint8_t *b, uint32_t len, uint32_t most,
               uint8_t **out, size_t *n, size_t *cap);
/* Apply @p len bytes of runs to @p chunk (@p size bytes); -1 if they do not fit. */
int delta_apply(uint8_t *chunk, uint32_t size, const uint8_t *runs, uint32_t len);

/* Keys. */
void key_announce(char *buf, size_t cap, const char *dataset);
void key_manifest(char *buf, size_t cap, const char *dataset, uint64_t version);
void key_pack(char *buf, size_t cap, const char *dataset, const char *pack);

#define SYNC_KEEP_MAX 64
struct announce {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version, published_ns;
  uint64_t kept[SYNC_KEEP_MAX];
  unsigned nkept;
  char manifest[320];
  char data_hash[33];
  char host[128];
  long pid;
};
/* JSON text of @p a into @p buf; returns its length (< cap) or -1. */
int announce_write(const struct announce *a, char *buf, size_t cap);
/* Parse; SNAP_ECORRUPT with the field named when it is not ours or wrong. */
int announce_parse(const char *buf, size_t len, const char *key, struct announce *a,
                   struct snap_sync_error *err);

#endif
