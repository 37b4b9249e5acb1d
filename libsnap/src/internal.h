/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interfaces shared by the library's source files. Not installed.
 *
 * Layering: a file calls only files on its own line or above it, never
 * below (no cycles; the declarations below are grouped per file).
 *
 *   error.c  crash.c  version.c        status codes, fault injection
 *   segment.c                          the segment format
 *   layout.c  map.c  locks.c           on-disk names, mmap, /proc/locks
 *   control_check.c  control.c         the control file (LMDB)
 *   registry.c                         open handles, fork handlers
 *   store.c                            handles, flips, read-only queries
 *   compose.c                          v2: mapping chunks borrowed from
 *                                      earlier versions' files
 *   orphans.c                          the write gate: orphan sweep, listing
 *   pin.c                              reader pins (store.c calls back into it
 *                                      only through struct snap_store's hooks)
 *   share.c                            v2 seal: which chunks to borrow
 *   gc.c                               reclamation of draining versions
 *   policy.c                           retention, rollback, keep, limits
 *   drop.c                             removing a dataset record
 *   publish.c  rebuild.c  arrow.c      publishing, rebuilding the control
 *                                      file, Arrow export of a snapshot
 *   edit.c                             editing a version in place, copy on
 *                                      write (publishes through publish.c)
 *   replica.c                          adopting another store's version
 *                                      chunk by chunk (a follower)
 */
#ifndef LIBSNAP_INTERNAL_H
#define LIBSNAP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "libsnap/libsnap.h"

#define SNAP__INTERNAL __attribute__((visibility("hidden")))

/* The store's permission model (docs/security.md): the owner writes; the
 * store's group reads (pins need only read access, plus the LMDB lock file);
 * others get nothing. Directories are setgid so that everything inherits the
 * group of the store directory. */
#define SNAP__MODE_DIR 02750
#define SNAP__MODE_FILE 0640      /* control.mdb, flips, a segment being filled */
#define SNAP__MODE_LOCK 0660      /* control.mdb-lock: LMDB readers register there */
#define SNAP__MODE_SEGMENT 0440   /* a sealed segment: read-only for everyone */
#define SNAP__MODE_INCOMING 03770 /* setgid, sticky, group may hand in segments */

/* ----------------------------------------------------------------- types */

#define SNAP__TYPE_LAST SNAP_DURATION_US /* highest enum snap_type value */

static inline bool snap__is_timestamp(int type) {
  return type == SNAP_TIMESTAMP_NS ||
         (type >= SNAP_TIMESTAMP_S && type <= SNAP_TIMESTAMP_US);
}
static inline bool snap__is_duration(int type) {
  return type == SNAP_DURATION_NS ||
         (type >= SNAP_DURATION_S && type <= SNAP_DURATION_US);
}
/* Nanoseconds per unit of a timestamp or duration type (0 for other types). */
static inline int64_t snap__time_unit_ns(int type) {
  switch (type) {
    case SNAP_TIMESTAMP_S:
    case SNAP_DURATION_S:
      return 1000000000;
    case SNAP_TIMESTAMP_MS:
    case SNAP_DURATION_MS:
      return 1000000;
    case SNAP_TIMESTAMP_US:
    case SNAP_DURATION_US:
      return 1000;
    case SNAP_TIMESTAMP_NS:
    case SNAP_DURATION_NS:
      return 1;
    default:
      return 0;
  }
}

/* Unaligned little-endian-as-host loads (the formats are little-endian, and so
 * is every platform libsnap builds on). */
static inline uint16_t snap__get16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
static inline uint32_t snap__get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t snap__get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* ---------------------------------------------------------------- errors */

/* Fill err (if any) with status and a printf-style message; returns status. */
SNAP__INTERNAL int snap__err(struct snap_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, for -errno: appends ": <strerror>" to the message. */
SNAP__INTERNAL int snap__errno(struct snap_error *err, int neg_errno, const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------ segment format v1 */

#define SNAP__HEADER_SIZE 4096u
#define SNAP__ALIGN 64u
#define SNAP__MAGIC "\x89SNP\r\n\x1a\n"
#define SNAP__NBUF 4 /* values, validity, offsets, data */
enum { SNAP__BUF_VALUES, SNAP__BUF_VALIDITY, SNAP__BUF_OFFSETS, SNAP__BUF_DATA };

/* Header field offsets (docs/format.md is the normative description). */
enum {
  SNAP__H_MAGIC = 0,
  SNAP__H_FORMAT = 8,
  SNAP__H_HEADER_SIZE = 12,
  SNAP__H_FLAGS = 16,
  SNAP__H_TOTAL_SIZE = 24,
  SNAP__H_VERSION = 32,
  SNAP__H_NROWS = 40,
  SNAP__H_NCOLS = 48,
  SNAP__H_NBLOCKS = 52,
  SNAP__H_MANIFEST_OFFSET = 56,
  SNAP__H_MANIFEST_SIZE = 64,
  SNAP__H_DATA_OFFSET = 72,
  SNAP__H_DATA_SIZE = 80,
  SNAP__H_STORE_ID = 88,
  SNAP__H_CREATED_NS = 104,
  SNAP__H_DATA_HASH_LO = 112,
  SNAP__H_DATA_HASH_HI = 120,
  SNAP__H_HEADER_HASH = 128,
  SNAP__H_METADATA_OFFSET = 136,
  SNAP__H_METADATA_SIZE = 144,
  SNAP__H_NAME_LEN = 152,
  SNAP__H_NAME = 160,
};
#define SNAP__BLOCK_ENTRY 32u
#define SNAP__COLUMN_FIXED 144u
#define SNAP__BUFREF 24u

/* Format v2 (docs/format.md section 11): the v1 layout, data region aligned to
 * the chunk size, and a chunk table ending the manifest: per chunk of the
 * data region its XXH3-64 and the file that holds it (0: this one, i: the
 * version files[i-1]), then the file table. */
#define SNAP__FORMAT_V1 1u
#define SNAP__FORMAT_V2 2u
#define SNAP__CHUNK_SHIFT_HUGE 21u  /* 2 MiB on a huge-page tmpfs: whole PMD pages */
#define SNAP__CHUNK_SHIFT_SMALL 16u /* 64 KiB on 4 KiB pages (docs/design.md 16.1) */
#define SNAP__CHUNK_SHIFT_MIN 12u
#define SNAP__CHUNK_SHIFT_MAX 30u
#define SNAP__MAX_FILES 64u /* files a version may borrow from */
/* Runs of borrowed chunks a version maps (share.c): past 64, runs of at most
 * 1 MiB are copied instead; past 1024, any run. */
#define SNAP__MAX_PIECES 64u
#define SNAP__MAX_PIECES_HARD 1024u
#define SNAP__SHORT_RUN (1ull << 20)
#define SNAP__CHUNK_ENTRY 16u
enum {
  SNAP__H_CHUNK_SHIFT = 416,
  SNAP__H_NFILES = 420,
  SNAP__H_CHUNK_TABLE = 424,
  SNAP__H_NCHUNKS = 432,
  SNAP__H_ROW_CAPACITY = 440,
};

struct snap__chunk {
  uint64_t hash;
  uint32_t file; /* 0: this file; i: the version files[i - 1] */
};

/* A parsed, validated segment: private copies of everything the reader uses,
 * with pointers into the mapping that have all been bounds-checked. */
struct snap__segment {
  const uint8_t *base;
  uint64_t size;
  uint64_t version, nrows, created_ns;
  uint64_t data_offset, data_size;
  uint64_t data_hash[2];
  uint64_t header_hash;
  uint32_t ncols, nblocks;
  uint8_t store_id[16];
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  const void *metadata;
  size_t metadata_len;
  struct snap_column *cols;
  struct snap_block *blocks;
  uint32_t *block_cols; /* storage for snap_block.columns */
  char *strings;        /* storage for names and time zones */
  /* format v2 (all zero for v1) */
  uint32_t format, chunk_shift, nfiles;
  uint64_t nchunks, chunk_table; /* the table's offset */
  uint64_t capacity;             /* rows each block has room for (v1: nrows) */
  uint64_t *files;               /* nfiles versions, increasing */
  struct snap__chunk *chunks;    /* nchunks entries */
};

/* What snap__segment_parse() checks. */
#define SNAP__SEG_NO_HASH 0x1u /* header not sealed yet (publish in progress) */
#define SNAP__SEG_NO_DATA 0x2u /* skip reading string/dictionary offsets */

/* The format new segments are written in: 2, or 1 for the tests that make v1
 * files (only they change it). */
SNAP__INTERNAL extern unsigned snap__write_format;

/* Total file size of the segment @p schema needs with room for @p cap rows in
 * each block (v2; less than nrows means nrows), and in @p head the bytes from
 * the start to the end of the largest manifest (v2: with every file). */
SNAP__INTERNAL int snap__segment_plan(const struct snap_schema *schema, unsigned shift,
                                      uint64_t cap, uint64_t *total, uint64_t *head,
                                      struct snap_error *err);
/* The data the parser skips with SNAP__SEG_NO_DATA: string and dictionary
 * offsets, then category codes, read through @p seg's pointers. */
SNAP__INTERNAL int snap__segment_check_data(const struct snap__segment *seg,
                                            const char *what, struct snap_error *err);
/* v1: the XXH3-128 of the data region; v2: every chunk's XXH3-64 against the
 * table and the table against the header. @p base is the composed view. */
SNAP__INTERNAL int snap__segment_verify_data(const struct snap__segment *seg,
                                             const uint8_t *base, const char *what,
                                             struct snap_error *err);
/* The same; own chunks that are holes of @p fd (the file) are hashed as zeros
 * without being read (reading a tmpfs hole through a mapping allocates it). */
SNAP__INTERNAL int snap__segment_verify_data_fd(const struct snap__segment *seg,
                                                const uint8_t *base, int fd,
                                                const char *what, struct snap_error *err);
/* v2: the hash of one chunk's bytes, and the data hash: XXH3-128 over the
 * chunk hashes of the table at @p table (not the file indices). */
SNAP__INTERNAL uint64_t snap__chunk_hash(const void *p, uint64_t len);
/* The hash of a chunk of 2^@p shift zero bytes (a hole reads as that). */
SNAP__INTERNAL uint64_t snap__zero_chunk_hash(unsigned shift);
/* [@p off, @p off + @p len) of @p fd holds no data (SEEK_DATA): a hole. */
SNAP__INTERNAL bool snap__is_hole(int fd, uint64_t off, uint64_t len);
SNAP__INTERNAL void snap__table_hash(const uint8_t *table, uint64_t nchunks,
                                     uint64_t out[2]);
/* Write header (unsealed) and manifest into a zeroed mapping of plan size
 * (@p shift: log2 of the chunk size, @p cap: rows each block has room for, as
 * planned; v2 only). */
SNAP__INTERNAL void snap__segment_write(uint8_t *base, uint64_t total,
                                        const struct snap_schema *schema, unsigned shift,
                                        uint64_t cap, const char *dataset,
                                        uint64_t version, const uint8_t store_id[16],
                                        uint64_t created_ns);
/* Validate @p base / @p size and fill @p seg. @p what names the file in messages.
 * Expected name/version are checked when non-NULL/non-zero. */
SNAP__INTERNAL int snap__segment_parse(const uint8_t *base, uint64_t size, unsigned flags,
                                       const char *what, const char *dataset,
                                       uint64_t version, struct snap__segment *seg,
                                       struct snap_error *err);
SNAP__INTERNAL void snap__segment_free(struct snap__segment *seg);
/* Check category codes; string offsets were checked by parse. */
SNAP__INTERNAL int snap__segment_check_codes(const struct snap__segment *seg,
                                             const char *what, struct snap_error *err);
/* Compute the data hash and seal the header (writes both hashes). */
/* XXH3-64 of the header (its own hash field as zero) and the manifest. */
SNAP__INTERNAL uint64_t snap__header_hash(const uint8_t *base, uint64_t manifest_size);
SNAP__INTERNAL void snap__segment_seal(uint8_t *base, uint64_t size);
SNAP__INTERNAL void snap__data_hash(const uint8_t *base, uint64_t data_offset,
                                    uint64_t data_size, uint64_t out[2]);
SNAP__INTERNAL bool snap__utf8_valid(const char *s, size_t len);
SNAP__INTERNAL int snap__dataset_name_check(const char *name, struct snap_error *err);
/* The strict rule for the name of a dataset being created. */
SNAP__INTERNAL int snap__dataset_name_new_check(const char *name, struct snap_error *err);

/* ------------------------------------------------------ control file (LMDB) */

struct snap__control;
struct snap__txn;

struct snap__dsrec {
  uint64_t id;
  uint64_t current; /* 0 = none */
  uint64_t next_version;
  uint32_t keep;
  uint32_t flags; /* SNAP__DS_* */
};
/* dsrec flags: the dataset is adopted from a primary (replica.c); local
 * publishes are refused (snap__followed_refuse()). */
#define SNAP__DS_FOLLOWED 0x1u

struct snap__verrec {
  uint32_t state;
  uint32_t ncols;
  uint64_t nrows;
  uint64_t bytes;
  uint64_t created_ns;
  uint64_t data_hash[2];
  uint64_t header_hash;
};

struct snap__meta {
  uint8_t store_id[16];
  uint32_t format;
  uint32_t default_keep;
  uint64_t next_dataset_id;
  char boot_id[40];
};

#define SNAP__CONTROL_FORMAT 1u

/* Shared per process and file (refcounted); a child of fork() gets its own.
 * The environment is read-write unless the file is not writable. */
SNAP__INTERNAL int snap__control_open(const char *path, bool create,
                                      struct snap__control **out, struct snap_error *err);
/* Drop a reference; an environment inherited from a parent is left alone. */
SNAP__INTERNAL void snap__control_close(struct snap__control *c);
/* For the atfork handlers (lock order: after urcu's, before maps_lock). */
SNAP__INTERNAL void snap__control_atfork_lock(void);
SNAP__INTERNAL void snap__control_atfork_unlock(void);
/* Clear reader slots of dead processes. */
SNAP__INTERNAL void snap__control_reader_check(struct snap__control *c);

SNAP__INTERNAL int snap__txn_begin(struct snap__control *c, bool write,
                                   struct snap__txn **out, struct snap_error *err);
SNAP__INTERNAL int snap__txn_commit(struct snap__txn *t, struct snap_error *err);
SNAP__INTERNAL void snap__txn_abort(struct snap__txn *t);

/* Each returns 0, SNAP_ENOTFOUND, or an error. */
/* The store's dataset limit (0: none) and the number of datasets. */
SNAP__INTERNAL int snap__max_datasets_get(struct snap__txn *t, uint32_t *max,
                                          struct snap_error *err);
SNAP__INTERNAL int snap__max_datasets_put(struct snap__txn *t, uint32_t max,
                                          struct snap_error *err);
SNAP__INTERNAL int snap__ds_count(struct snap__txn *t, uint64_t *count,
                                  struct snap_error *err);
SNAP__INTERNAL int snap__meta_get(struct snap__txn *t, struct snap__meta *m,
                                  struct snap_error *err);
SNAP__INTERNAL int snap__meta_put(struct snap__txn *t, const struct snap__meta *m,
                                  struct snap_error *err);
SNAP__INTERNAL int snap__ds_get(struct snap__txn *t, const char *name,
                                struct snap__dsrec *rec, struct snap_error *err);
SNAP__INTERNAL int snap__ds_put(struct snap__txn *t, const char *name,
                                const struct snap__dsrec *rec, struct snap_error *err);
SNAP__INTERNAL int snap__ds_del(struct snap__txn *t, const char *name,
                                struct snap_error *err);
/* Calls cb for each dataset in name order; cb returning non-zero stops with it. */
SNAP__INTERNAL int snap__ds_each(struct snap__txn *t,
                                 int (*cb)(const char *name, size_t len,
                                           const struct snap__dsrec *rec, void *arg),
                                 void *arg, struct snap_error *err);
SNAP__INTERNAL int snap__ver_get(struct snap__txn *t, uint64_t ds, uint64_t version,
                                 struct snap__verrec *rec, struct snap_error *err);
SNAP__INTERNAL int snap__ver_put(struct snap__txn *t, uint64_t ds, uint64_t version,
                                 const struct snap__verrec *rec, struct snap_error *err);
SNAP__INTERNAL int snap__ver_del(struct snap__txn *t, uint64_t ds, uint64_t version,
                                 struct snap_error *err);
/* Versions of dataset @p ds in increasing order. */
SNAP__INTERNAL int snap__ver_each(struct snap__txn *t, uint64_t ds,
                                  int (*cb)(uint64_t version,
                                            const struct snap__verrec *rec, void *arg),
                                  void *arg, struct snap_error *err);

/* Control-file damage and loss (control_check.c, rebuild.c) */

/* Structural check of the LMDB file open as @p fd, read with pread before LMDB
 * maps it: 0, SNAP_ECONTROL naming the page and field, or -errno. */
SNAP__INTERNAL int snap__control_check(int fd, const char *path, struct snap_error *err);
/* Only the two meta pages (two preads): what a write transaction checks. */
SNAP__INTERNAL int snap__control_check_metas(int fd, const char *path,
                                             struct snap_error *err);
/* snap__control_check_metas() on the environment's own descriptor. */
SNAP__INTERNAL int snap__control_verify_metas(struct snap__control *c,
                                              struct snap_error *err);
/* The file at the environment's path is no longer the one it opened (deleted,
 * replaced): one stat + fstat. */
SNAP__INTERNAL bool snap__control_stale(struct snap__control *c);
/* Take a stale environment out of the registry and never close it (threads of
 * other handles may still be in a transaction on it): one leak per rebuild. */
SNAP__INTERNAL void snap__control_retire(struct snap__control *c);

/* ------------------------------------------------------------------ store */

struct snap__slot; /* per-dataset reader cache, pin.c */

struct snap_store {
  atomic_int refs; /* the user's handle + one per live mapping */
  char *path;
  unsigned flags;
  int dirfd;     /* the store directory */
  int segfd;     /* segments/ */
  int writer_fd; /* flips, flock(LOCK_SH) once a write operation ran (rebuild.c) */
  struct snap__control *control;
  pid_t control_pid;             /* LMDB handles must not cross fork: reopen in a child */
  const _Atomic uint64_t *flips; /* shared counter, read-only mapping for readers */
  _Atomic uint64_t *flips_rw;    /* writable mapping (writers) */
  uint8_t store_id[16];
  pthread_mutex_t lock;               /* slow paths: slots, control reopen, sweep */
  pthread_mutex_t maps_lock;          /* the maps list; never held while calling out */
  bool swept;                         /* orphan sweep done by this handle */
  _Atomic(struct snap__slot *) slots; /* push-only list, freed with the store */
  struct snap_snapshot *maps;         /* every live mapping of this store */
  struct snap_store *next_store, *prev_store; /* global list for atfork */
  /* pin.c's teardown, set with the handle's first slot, so that store.c need
   * not call up into pin.c: pins_close drops the cached mappings at
   * snap_store_close(), pins_free frees the slots with the store. NULL until
   * then (nothing to tear down). */
  void (*pins_close)(snap_store *s);
  void (*pins_free)(snap_store *s);
};

/* crash.c: crash points for the fault-injection tests. The Nth point reached
 * after snap__crash_arm(N) kills the process with SIGKILL. Costs one load when
 * unarmed. */
SNAP__INTERNAL extern int snap__crash_countdown;
SNAP__INTERNAL void snap__crash_arm(int n);
/* Instead of SIGKILL, call @p fault at the Nth point (fault injection: e.g.
 * fill the tmpfs there). */
SNAP__INTERNAL void snap__fault_arm(int n, void (*fault)(void));
SNAP__INTERNAL int snap__crash_points_hit(void);
SNAP__INTERNAL void snap__crash_point_slow(void);
static inline void snap__crash_point(void) {
  if (__builtin_expect(snap__crash_countdown != 0, 0)) snap__crash_point_slow();
}

/* layout.c: the store directory's names (the only file that spells them). */
#define SNAP__CONTROL_FILE "control.mdb"
#define SNAP__DAMAGED_SUFFIX ".damaged" /* a segment set aside by a rebuild */
/* "segments/<dataset>/<version>.seg" relative to the store directory. */
SNAP__INTERNAL void snap__seg_relpath(char *buf, size_t len, const char *dataset,
                                      uint64_t version);
/* "<version>.seg", relative to the dataset's directory. */
SNAP__INTERNAL void snap__seg_name(char *buf, size_t len, uint64_t version);
/* "<store_path>/control.mdb". */
SNAP__INTERNAL void snap__control_path(char *buf, size_t len, const char *store_path);
/* @p name is "<version>.seg" (no leading zero, version >= 1): store it. */
SNAP__INTERNAL bool snap__seg_name_parse(const char *name, uint64_t *version);
/* segments/ holds at least one <version>.seg file. */
SNAP__INTERNAL bool snap__segments_present(int segfd);
/* Calls @p cb with each directory under segments/ (names starting with '.'
 * and entries that are not directories skipped) and a descriptor of it, which
 * is closed when cb returns. cb returning non-zero stops with it. */
SNAP__INTERNAL int snap__dataset_dirs_each(snap_store *s,
                                           int (*cb)(const char *dataset, int dsfd,
                                                     void *arg),
                                           void *arg, struct snap_error *err);
/* Open (creating it) segments/<dataset>/ and flock it with @p how: LOCK_SH for
 * a publish in progress, LOCK_EX(|LOCK_NB) to remove the dataset's record.
 * SNAP_EBUSY when LOCK_NB fails. *out is the caller's to close. */
SNAP__INTERNAL int snap__dataset_dir_lock(snap_store *s, const char *dataset, int how,
                                          int *out, struct snap_error *err);
/* The tombstone of @p dataset under the segments directory @p segfd: the first
 * version number of a dataset created under that name (1 if none). */
SNAP__INTERNAL uint64_t snap__tombstone_get(int segfd, const char *dataset);
/* Raise the tombstone of the dataset whose directory is @p dsfd to @p next. */
SNAP__INTERNAL int snap__tombstone_put(snap_store *s, int dsfd, const char *dataset,
                                       uint64_t next, struct snap_error *err);

/* compose.c: v2 versions borrowing chunks (after store.c, before pin.c). */
/* Open the file of @p version of @p dataset as a lender of chunks: a regular
 * file of at least @p need bytes whose header is that version's of this store.
 * *out is the caller's to close. */
SNAP__INTERNAL int snap__lender_open(snap_store *s, const char *dataset, uint64_t version,
                                     uint64_t need, int *out, struct snap_error *err);
/* Map every chunk @p seg borrows over its own mapping at @p addr: shared and
 * read-only, or (@p priv) private and writable, copy-on-write. */
SNAP__INTERNAL int snap__compose(snap_store *s, const struct snap__segment *seg,
                                 uint8_t *addr, bool priv, const char *what,
                                 struct snap_error *err);
/* Mappings a composed view of @p seg takes (1 for v1). */
SNAP__INTERNAL uint64_t snap__compose_pieces(const struct snap__segment *seg);

/* share.c: the chunk table of a v2 segment being sealed (after pin.c). */
struct snap__extent {
  uint64_t off, len;  /* a buffer of the new segment */
  const uint8_t *src; /* where its bytes are: the caller's memory, or map + off */
};
struct snap__share {
  const struct snap__segment *seg; /* the new segment, parsed */
  uint8_t *map;                    /* its writable mapping */
  int fd;
  const char *what;
  const struct snap__extent *ext; /* sorted by offset, not overlapping */
  size_t next;
  const struct snap__segment *base; /* the version to share with, or NULL */
  const uint8_t *base_addr;         /* its composed view */
  bool full;                        /* SNAP_PUBLISH_FULL: share nothing */
  /* an edit of the base (snap_publish_set_edit()): its private view, and per
   * chunk of the base 1 when no page of it was written there */
  const uint8_t *edit_addr;
  const uint8_t *edit_clean;
  /* results */
  uint64_t owned; /* data bytes the new file holds */
  uint64_t written, borrowed, identical, compared, compacted; /* chunks */
  uint32_t nfiles;
};
/* Hash, compare, copy or borrow every chunk; write the chunk table, the file
 * table, nfiles and manifest_size (not the hashes of the header). */
SNAP__INTERNAL int snap__chunks_write(struct snap__share *sh, struct snap_error *err);
/* qsort() order of uint64_t. */
SNAP__INTERNAL int snap__cmp_u64(const void *a, const void *b);
/* The chunk-table file index of version @p v in the sorted file table @p vers
 * (1-based); 0 for @p v 0 (a chunk the file holds itself). */
SNAP__INTERNAL uint32_t snap__file_index(const uint64_t *vers, uint32_t nvers,
                                         uint64_t v);

/* chunks.c: the chunk size of segments written in the directory @p dirfd:
 * 2 MiB on a tmpfs with huge pages, else 64 KiB; LIBSNAP_CHUNK_SHIFT (12..30)
 * overrides it. */
SNAP__INTERNAL unsigned snap__chunk_shift_for(int dirfd);

/* map.c: map @p size bytes of @p fd at a 2 MiB-aligned address (PMD-mappable). */
SNAP__INTERNAL int snap__map_aligned(int fd, uint64_t size, bool writable, void **out);
/* The same, private and writable: copy-on-write (edit.c). */
SNAP__INTERNAL int snap__map_private(int fd, uint64_t size, void **out);
SNAP__INTERNAL void snap__unmap(void *addr, uint64_t size);

/* locks.c: count flock holders of the file with @p dev/@p ino (from /proc/locks). */
SNAP__INTERNAL int snap__lock_holders(dev_t dev, ino_t ino, pid_t *pids, size_t cap,
                                      size_t *count);

/* registry.c: the process's open handles and the fork handlers. */
SNAP__INTERNAL void snap__library_init(void);
SNAP__INTERNAL void snap__store_register(snap_store *s);
SNAP__INTERNAL void snap__store_unregister(snap_store *s);

/* store.c: handles, the control file and flips. */
/* Control handle valid in this process (reopened after fork). Call with lock held. */
SNAP__INTERNAL int snap__store_control(snap_store *s, struct snap__control **out,
                                       struct snap_error *err);
/* The same, reopening the environment when the control file was replaced
 * (readers' slow paths). Call with lock held. */
SNAP__INTERNAL int snap__store_control_fresh(snap_store *s, struct snap__control **out,
                                             struct snap_error *err);
/* Begin a transaction on the store's control file (handles fork, locks briefly). */
SNAP__INTERNAL int snap__store_txn(snap_store *s, bool write, struct snap__txn **out,
                                   struct snap_error *err);
/* Refuse read-only handles; take the writer's shared flock on flips once. */
SNAP__INTERNAL int snap__store_writer_lock(snap_store *s, struct snap_error *err);
SNAP__INTERNAL void snap__store_ref(snap_store *s);
SNAP__INTERNAL void snap__store_unref(snap_store *s);
SNAP__INTERNAL void snap__flips_bump(snap_store *s);
SNAP__INTERNAL uint64_t snap__now_ns(void);

/* orphans.c: the gate of every write operation: snap__store_writer_lock(),
 * then the orphan sweep, once per handle. */
SNAP__INTERNAL int snap__store_writable(snap_store *s, struct snap_error *err);

/* pin.c: reader pins. */
/* The parsed segment behind a snapshot (its composed view is at seg->base). */
SNAP__INTERNAL const struct snap__segment *snap__snapshot_seg(const snap_snapshot *snap);
/* After this process changed @p dataset's current version: drop its cached
 * mapping of the old one, so that reclamation need not wait for a pin. */
SNAP__INTERNAL void snap__pin_trim(snap_store *s, const char *dataset);
/* Drop this process's cached mapping of @p dataset even if it is current (a
 * drop must not be refused because of our own cache). Pins taken stay. */
SNAP__INTERNAL void snap__pin_forget(snap_store *s, const char *dataset);

/* gc.c: try to reclaim draining versions of one dataset (or all when NULL). */
SNAP__INTERNAL int snap__gc(snap_store *s, const char *dataset, unsigned flags,
                            snap_gc_cb cb, void *arg, struct snap_gc_stats *stats,
                            struct snap_error *err);

/* policy.c: retention and limits. */
/* Retention: retire versions beyond keep inside write txn @p t. */
SNAP__INTERNAL int snap__retain(struct snap__txn *t, const struct snap__dsrec *ds,
                                struct snap_error *err);
/* A dataset about to be created in write txn @p t: its name follows the rule
 * for new names, and the store's dataset limit leaves room (-EDQUOT). */
SNAP__INTERNAL int snap__dataset_admit(snap_store *s, struct snap__txn *t,
                                       const char *dataset, struct snap_error *err);
/* What follows a committed change of @p dataset's current version (and the
 * flips bump): drop this process's cache of the old version, then reclaim
 * what retention released. Best effort. */
SNAP__INTERNAL void snap__after_commit(snap_store *s, const char *dataset);

/* @p ds (of @p dataset) is followed: SNAP_EINVAL naming @p op, else 0. */
SNAP__INTERNAL int snap__followed_refuse(const char *dataset,
                                         const struct snap__dsrec *ds, const char *op,
                                         struct snap_error *err);

/* drop.c: a first publish that failed or was aborted: remove the dataset
 * record if it has no version and no other publish of it is in progress.
 * @p dsfd holds our LOCK_SH on the dataset directory. Best effort. */
SNAP__INTERNAL void snap__first_publish_undo(snap_store *s, int dsfd,
                                             const char *dataset);

/* publish.c: a new version of @p dataset with @p seg's schema, metadata and
 * data (read through @p seg's pointers at commit), room for @p cap rows in each
 * block (0: nrows), published with SNAP_PUBLISH_* @p flags; @p hook (if any)
 * runs on the publish just before the commit. Compaction, import, edits. */
SNAP__INTERNAL int snap__republish(
    snap_store *s, const char *dataset, const struct snap__segment *seg, unsigned flags,
    uint64_t cap, int (*hook)(snap_publish *p, void *arg, struct snap_error *err),
    void *arg, uint64_t *version, struct snap_error *err);
/* Base the publish on an edit's private @p view (@p size bytes) of @p version:
 * sources in the view at their own offset are shared unread where @p clean
 * (one byte per chunk of @p version, owned by the publish from here on, even
 * on failure) says that no page of the chunk was written; the flip refuses
 * with SNAP_ECONFLICT unless @p version is still current. */
/* In write txn @p t: @p dataset's record into @p ds, created (admitted by
 * policy, with a new id and the store's default keep) when there is none;
 * *created says which. A followed dataset is refused unless @p replica. */
SNAP__INTERNAL int snap__ds_get_or_create(snap_store *s, struct snap__txn *t,
                                          const char *dataset, bool replica,
                                          struct snap__dsrec *ds, bool *created,
                                          struct snap_error *err);
/* In write txn @p t: version @p version (record @p vr) becomes the current one
 * of @p dataset (record @p ds, written back), the old current is retained and
 * retention runs. A crash point sits between the two version records. */
SNAP__INTERNAL int snap__make_current(struct snap__txn *t, const char *dataset,
                                      struct snap__dsrec *ds, uint64_t version,
                                      const struct snap__verrec *vr,
                                      struct snap_error *err);
/* @p p publishes @p dataset of store @p s. */
SNAP__INTERNAL bool snap__publish_is_of(const snap_publish *p, const snap_store *s,
                                        const char *dataset);
SNAP__INTERNAL int snap__publish_edit_base(snap_publish *p, const uint8_t *view,
                                           uint64_t size, uint64_t version,
                                           uint8_t *clean, struct snap_error *err);

#endif /* LIBSNAP_INTERNAL_H */
