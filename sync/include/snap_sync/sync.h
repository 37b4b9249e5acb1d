/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snap_sync: versions of a store pushed to a remote and followed from it by
 * other stores (docs/multihost.md). The remote is an S3 bucket
 * ("s3://BUCKET/PREFIX", through snap_s3) or a local directory with the same
 * layout, a file per object (a path: writerd --mirror). writerd and snapctl
 * use it; it uses libsnap's public API only.
 *
 * Per dataset D under the remote:
 *   D/pack/P          chunks, concatenated; P names the content
 *   D/v/N.manifest    version N's header and manifest as the primary sealed
 *                     them, then a locator: where each chunk is (pack, offset)
 *   D/announce        JSON naming the newest version; written last, with a
 *                     conditional write
 *
 * Errors: every call that can fail fills a caller-owned struct snap_sync_error
 * (optional) with the status (0, -errno, a libsnap SNAP_E* or a snap_s3
 * SNAP_S3_E* code), a short kind for metrics and one line naming the dataset,
 * object and cause. Secrets never appear (snap_s3's rule).
 *
 * Threads: a snap_remote is thread-safe (each thread that transfers gets its
 * own connection); a pusher or follower is used by one thread at a time and
 * runs its own transfer threads inside a call.
 */
#ifndef SNAP_SYNC_H
#define SNAP_SYNC_H

#include <libsnap/libsnap.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Caller-owned error detail, filled only when a call fails. */
struct snap_sync_error {
  int code;          /**< the status returned */
  char kind[16];     /**< "denied", "network", "server", "notfound", "verify",
                          "conflict", "corrupt", "local", "other" */
  char message[768]; /**< one line */
};

/* ----------------------------------------------------------------- remotes */

typedef struct snap_remote snap_remote;

/**
 * Open the remote at @p url: "s3://BUCKET[/PREFIX]" (configured from the
 * AWS_* environment and the shared credentials file, docs/s3.md) or a
 * directory path (created if missing). Connects to nothing yet.
 * @return 0, or a status with @p err filled (bad URL, missing credentials).
 */
int snap_remote_open(const char *url, snap_remote **out, struct snap_sync_error *err);
/** The URL it was opened with (no secret). */
const char *snap_remote_url(const snap_remote *r);
/** Close. NULL is a no-op. */
void snap_remote_close(snap_remote *r);
/** Bytes sent and received so far, all threads. */
void snap_remote_bytes(const snap_remote *r, uint64_t *up, uint64_t *down);

/* -------------------------------------------------------------------- push */

struct snap_push_options {
  unsigned keep;      /**< versions the announcement keeps (default 3, >= 1) */
  unsigned grace_s;   /**< seconds an unreferenced object stays (default 600) */
  unsigned parallel;  /**< transfers at once (default 4) */
  uint64_t part_size; /**< bytes per upload part (default 16 MiB, >= 5 MiB) */
};

/** What one push did. */
struct snap_push_result {
  uint64_t version;    /**< the version announced; 0: nothing to do */
  uint64_t chunks;     /**< chunks of the version */
  uint64_t new_chunks; /**< chunks not in the remote before, uploaded */
  uint64_t deltas;     /**< of them, also uploaded as a delta against the version
                            announced before (what followers in step fetch) */
  uint64_t bytes;      /**< bytes uploaded (pack and manifest) */
  uint64_t swept;      /**< objects the sweep deleted */
  char pack[33];       /**< the new chunks' pack (D/pack/NAME), "" when none */
  double seconds;
  double announce_seconds; /**< from the start to the announcement's write (the
                                rest is the sweep) */
  char warning[768];       /**< a sweep that failed (the push itself succeeded), or "" */
};

typedef struct snap_pusher snap_pusher;

/** A pusher of @p store's datasets to @p remote (both outlive it); @p opt may
 *  be NULL for the defaults. */
int snap_pusher_create(snap_store *store, snap_remote *remote,
                       const struct snap_push_options *opt, snap_pusher **out,
                       struct snap_sync_error *err);
/**
 * Push @p dataset's current version if the remote's announcement names an
 * older one: upload the chunks the remote lacks (one pack, multipart and
 * parallel; a pack already there by name is not sent again), the manifest,
 * then the announcement with If-Match on the one read or written last
 * (If-None-Match: * for the first), then sweep. A version already announced
 * is nothing to do.
 * @return 0; SNAP_ECONFLICT (the announcement names a newer version, or
 *         another writer changed it: the push stops, nothing announced);
 *         SNAP_EFORMAT (a format 1 version: compact it first); or a libsnap,
 *         snap_s3 or -errno status.
 */
int snap_push(snap_pusher *p, const char *dataset, struct snap_push_result *res,
              struct snap_sync_error *err);
void snap_pusher_free(snap_pusher *p);

/* ------------------------------------------------------------------ follow */

struct snap_follow_options {
  unsigned parallel; /**< ranged GETs at once (default 4) */
  uint64_t range;    /**< most bytes per GET (default 16 MiB) */
  unsigned retries;  /**< rounds a chunk that fails its hash is fetched (default 3) */
  int promote;       /**< 1: leave the dataset not followed after the flip
                          (writerd --restore on a primary) */
};

/** What one poll of a dataset saw and did. */
struct snap_follow_result {
  uint64_t announced;    /**< version the announcement names (0: none read yet) */
  uint64_t announced_ns; /**< its publish time, ns since the epoch */
  uint64_t local;        /**< the local current version after the poll */
  int flipped;           /**< 1: a new version became current */
  int unchanged;         /**< 1: the announcement had not changed (304) */
  struct snap_replica_stats chunks; /**< of the version adopted */
  uint64_t bytes;                   /**< bytes fetched by this poll (manifest included) */
  uint64_t manifest_bytes;          /**< of them, the manifest's */
  uint64_t deltas;                  /**< chunks rebuilt from a delta and the local copy */
  uint64_t refetched;               /**< chunks that failed their hash, fetched again */
  double seconds;
};

typedef struct snap_follower snap_follower;

int snap_follower_create(snap_store *store, snap_remote *remote,
                         const struct snap_follow_options *opt, snap_follower **out,
                         struct snap_sync_error *err);
/**
 * The datasets the remote announces (a listing), sorted; free the array and
 * each name with free().
 */
int snap_follow_datasets(snap_follower *f, char ***names, size_t *count,
                         struct snap_sync_error *err);
/**
 * Poll @p dataset's announcement (conditionally: a 304 costs nothing) and, when
 * it names a version newer than the local current one, adopt it: its manifest,
 * then every chunk the store lacks (ranged GETs, in parallel, each chunk's hash
 * checked, a chunk that fails fetched again up to retries rounds), then the
 * flip (snap_replica_commit()). A killed follower resumes from its .replica
 * file. @p res is filled on failure too (what was seen).
 * @return 0, or a status: nothing was flipped and the current version stays.
 */
int snap_follow_poll(snap_follower *f, const char *dataset,
                     struct snap_follow_result *res, struct snap_sync_error *err);
void snap_follower_free(snap_follower *f);

#ifdef __cplusplus
}
#endif
#endif
