/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsnap: immutable, versioned tables in shared memory.
 *
 * A store is a directory on a tmpfs holding an LMDB control file, a shared
 * "flips" counter page and one immutable segment file per published version of
 * each dataset. Writers fill a new segment in place and flip the dataset's
 * current version in one transaction; readers in any number of processes pin a
 * version and read its columns straight out of the shared mapping.
 *
 * Conventions used by every call below:
 *  - Status: 0 is success, -errno an operating-system failure, and the
 *    SNAP_E* codes (a reserved range below -1000) the library's own failures.
 *    snap_strerror() names any of them.
 *  - Every call that can fail takes an optional caller-owned struct snap_error;
 *    pass NULL when the message is not wanted. There is no global error state.
 *  - A call that fails leaves its output pointer NULL and has already released
 *    whatever it took: the caller has nothing to clean up.
 *  - Destructors accept NULL.
 */
#ifndef LIBSNAP_H
#define LIBSNAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LIBSNAP_STATIC)
#define SNAP_API
#elif defined(LIBSNAP_BUILDING)
#define SNAP_API __attribute__((visibility("default")))
#else
#define SNAP_API
#endif

/** Library version (semantic; the SONAME carries the major number). The one place
 *  the version is written: CMake, the Python package and writerd read it here. */
#define SNAP_VERSION_MAJOR 0
#define SNAP_VERSION_MINOR 1
#define SNAP_VERSION_PATCH 0
/** On-disk segment format version, independent of the library version. */
#define SNAP_FORMAT_VERSION 1

/** Returns "MAJOR.MINOR.PATCH" of the library actually linked. */
SNAP_API const char *snap_version_string(void);

/* ------------------------------------------------------------------ errors */

/**
 * The library's error table: X(NAME, code, default message). It feeds the
 * SNAP_E* enum, snap_strerror(), snap_error_name() and the Python exception
 * classes, so the three never drift apart.
 */
#define SNAP_ERROR_MAP(X)                                                        \
  X(NOTFOUND, -1001, "no such store, dataset or version")                        \
  X(CORRUPT, -1002, "segment failed validation")                                 \
  X(FORMAT, -1003, "segment or store written by an incompatible format version") \
  X(INVAL, -1004, "invalid argument")                                            \
  X(CHECKSUM, -1005, "data checksum mismatch")                                   \
  X(DRAINING, -1006, "version is retired and accepts no new pins")               \
  X(CONTROL, -1007, "control file error")                                        \
  X(MAPFULL, -1008, "control file is full")                                      \
  X(RDONLY, -1009, "store was opened read-only")                                 \
  X(BUSY, -1010, "resource is in use")

enum snap_status {
#define SNAP_X_ENUM(name, code, msg) SNAP_E##name = (code),
  SNAP_ERROR_MAP(SNAP_X_ENUM)
#undef SNAP_X_ENUM
};

/** Caller-owned error detail. code repeats the returned status. */
struct snap_error {
  int code;
  char message[256]; /* e.g. "segments/prices/7.seg: header field nrows = 9 ..." */
};

/** Static message for a status (library code or -errno). Never NULL. Thread-safe. */
SNAP_API const char *snap_strerror(int status);
/** Symbolic name ("SNAP_ECORRUPT", "ENOSPC"); "UNKNOWN" if not known. */
SNAP_API const char *snap_error_name(int status);

/**
 * Free any array or string libsnap returned to the caller (snap_dataset_list(),
 * snap_version_list(), ...); NULL is a no-op. It is free(), in the library's
 * own C runtime: use it where the caller's allocator may not be libsnap's
 * (another language, a static CRT). Thread-safe.
 */
SNAP_API void snap_free(void *ptr);

/* ------------------------------------------------------------------- types */

/** Logical column types. Values are stored in the segment format; never renumber. */
enum snap_type {
  SNAP_INT8 = 1,
  SNAP_INT16 = 2,
  SNAP_INT32 = 3,
  SNAP_INT64 = 4,
  SNAP_UINT8 = 5,
  SNAP_UINT16 = 6,
  SNAP_UINT32 = 7,
  SNAP_UINT64 = 8,
  SNAP_FLOAT32 = 9,
  SNAP_FLOAT64 = 10,
  SNAP_BOOL = 11,         /* one byte per value, 0 or 1 (numpy's layout) */
  SNAP_TIMESTAMP_NS = 12, /* int64 ns since the Unix epoch; optional time zone */
  SNAP_DURATION_NS = 13,  /* int64 ns */
  SNAP_STRING = 14,       /* int64 offsets (nrows + 1) + UTF-8 bytes */
  SNAP_CATEGORY = 15,     /* integer codes + dictionary of strings */
  /* Timestamps and durations in coarser units (int64 counts of the unit), so
   * that values outside the nanosecond range (about 1677..2262) keep their
   * value and their dtype: pandas 3 keeps datetime64[s] / [ms] / [us]. */
  SNAP_TIMESTAMP_S = 16,
  SNAP_TIMESTAMP_MS = 17,
  SNAP_TIMESTAMP_US = 18,
  SNAP_DURATION_S = 19,
  SNAP_DURATION_MS = 20,
  SNAP_DURATION_US = 21,
};

/** Bytes per value of a fixed-width type (codes excluded); 0 for STRING/CATEGORY. */
SNAP_API size_t snap_type_size(enum snap_type type);
/** Lower-case name: "int8", ..., "timestamp[ns]", "string", "category". */
SNAP_API const char *snap_type_name(enum snap_type type);

/** The column has a validity bitmap (Arrow layout: bit i of byte i/8, LSB first,
 *  1 = valid). */
#define SNAP_NULLABLE 0x1u

/** Longest dataset name in bytes (it is also a directory name). */
#define SNAP_DATASET_NAME_MAX 255
/** Most columns in one table (the manifest of that many is ~150 MiB). */
#define SNAP_COLUMNS_MAX (1u << 20)
/** Longest column name in bytes. */
#define SNAP_COLUMN_NAME_MAX 65535
/** Column that is not part of a dtype block (strings, categoricals). */
#define SNAP_NO_BLOCK UINT32_MAX

/** One column of a schema given to snap_publish_begin(). */
struct snap_field {
  const char *name; /* UTF-8, 1..SNAP_COLUMN_NAME_MAX bytes, no NUL */
  enum snap_type type;
  unsigned flags;           /* SNAP_NULLABLE */
  const char *timezone;     /* SNAP_TIMESTAMP_NS only: IANA name, NULL or "" = naive */
  uint64_t data_bytes;      /* STRING: total bytes of all values;
                               CATEGORY: total bytes of all categories */
  uint64_t dict_size;       /* CATEGORY: number of categories */
  enum snap_type code_type; /* CATEGORY: INT8/16/32/64, or 0 for the width pandas
                               would choose for dict_size categories */
};

/** A table's shape as given to snap_publish_begin(). */
struct snap_schema {
  uint64_t nrows;
  uint32_t ncols;
  const struct snap_field *fields; /* ncols entries */
  const void *metadata;            /* opaque blob stored with the version (e.g. JSON
                                      describing the pandas index); may be NULL */
  size_t metadata_len;
};

/**
 * One column of a pinned snapshot. Every pointer is into the read-only shared
 * mapping and lives as long as the snapshot's pin. Absent buffers are NULL.
 */
struct snap_column {
  const char *name; /* NUL-terminated copy; may contain no NUL itself */
  size_t name_len;
  enum snap_type type;
  unsigned flags;           /* SNAP_NULLABLE */
  const char *timezone;     /* NULL when naive or not a timestamp */
  enum snap_type code_type; /* CATEGORY: physical type of the codes */
  uint32_t block;           /* block index or SNAP_NO_BLOCK */
  uint32_t block_pos;       /* row of this column inside its block */
  const void *values;       /* fixed-width values, bools, or category codes */
  const uint8_t *validity;  /* SNAP_NULLABLE only */
  const int64_t *offsets;   /* STRING: nrows + 1; CATEGORY: dict_size + 1 */
  const char *data;         /* STRING: value bytes; CATEGORY: category bytes */
  uint64_t data_bytes;      /* length of data */
  uint64_t dict_size;       /* CATEGORY: number of categories */
};

/**
 * Fixed-width columns of the same type (and time zone and nullability) are
 * stored together as one C-contiguous (ncols, nrows) array: the layout pandas
 * keeps internally, so a homogeneous table is one 2-D matrix.
 */
struct snap_block {
  enum snap_type type;
  const char *timezone; /* NULL unless a zoned timestamp block */
  unsigned flags;       /* SNAP_NULLABLE if its columns carry validity bitmaps */
  uint32_t ncols;
  const uint32_t *columns; /* ncols column indices, in block-row order */
  const void *data;        /* ncols * nrows * snap_type_size(type) bytes */
};

/** Writable buffers of one column of a publish in progress (see snap_column). */
struct snap_fill {
  void *values;
  uint8_t *validity;
  int64_t *offsets;
  char *data;
};

/* ------------------------------------------------------------------- store */

typedef struct snap_store snap_store;
typedef struct snap_snapshot snap_snapshot;
typedef struct snap_publish snap_publish;

/** snap_store_open() flags. */
#define SNAP_CREATE 0x1u /* create the store directory and control file if missing */
#define SNAP_RDONLY 0x2u /* reader only: no publish, gc, rollback or orphan sweep */

/** Environment variable naming the default store directory. */
#define SNAP_STORE_ENV "LIBSNAP_STORE"
/** Directory of the default store when SNAP_STORE_ENV is not set. */
#define SNAP_STORE_DEFAULT "/dev/shm/libsnap/default"

/**
 * Open (or with SNAP_CREATE create) the store in directory @p path. NULL means
 * $LIBSNAP_STORE, else SNAP_STORE_DEFAULT. The handle may be shared by all
 * threads of the process and survives fork() in both parent and child.
 * Snapshots pinned through the handle may outlive snap_store_close().
 * A writable handle sweeps orphan segment files and stale control-file readers
 * before its first write operation.
 * The control file is checked page by page the first time a process opens
 * it; a missing or empty one next to segment files is never replaced by a new
 * store, even with SNAP_CREATE (repair: snap_store_rebuild()).
 * @return 0; SNAP_ENOTFOUND (no store there and no SNAP_CREATE);
 *         SNAP_EFORMAT (store of another format); SNAP_ECONTROL (control file
 *         damaged, or lost next to segments); or -errno.
 */
SNAP_API int snap_store_open(const char *path, unsigned flags, snap_store **out,
                             struct snap_error *err);

/** Release the caller's handle. Pins still held keep what they need alive. */
SNAP_API void snap_store_close(snap_store *store);

/** The store's directory (absolute as given). Lives as long as the handle. */
SNAP_API const char *snap_store_path(const snap_store *store);

/** 16 random bytes that identify the store; written into every segment. */
SNAP_API void snap_store_id(const snap_store *store, uint8_t id[16]);

/**
 * Set the retention of one dataset (keep the current version plus keep - 1
 * others), or of every dataset created afterwards when @p dataset is NULL.
 * Versions that fall out of retention start draining at once.
 * @return 0, SNAP_EINVAL (keep < 1), SNAP_ENOTFOUND, SNAP_ERDONLY, or -errno.
 */
SNAP_API int snap_store_set_keep(snap_store *store, const char *dataset, uint32_t keep,
                                 struct snap_error *err);

/**
 * Limit the number of datasets the store may hold (0: no limit, the default).
 * A publish that would create one more dataset fails at snap_publish_begin()
 * (or adopt, import) with -EDQUOT, naming the limit; existing datasets are not
 * affected, also when there are already more. Writers only.
 * @return 0, SNAP_ERDONLY, or a control-file status.
 */
SNAP_API int snap_store_set_max_datasets(snap_store *store, uint32_t max,
                                         struct snap_error *err);

/**
 * The store's dataset limit (0: none) and, when @p count is not NULL, how many
 * datasets it holds. Any handle. @return 0 or a control-file status.
 */
SNAP_API int snap_store_max_datasets(snap_store *store, uint32_t *max, uint64_t *count,
                                     struct snap_error *err);

/* ----------------------------------------------------------------- publish */

/**
 * Begin a new version of @p dataset (created on first publish) with @p schema.
 * Reserves the next version number, allocates the whole segment on the store's
 * tmpfs (a full tmpfs fails here with -ENOSPC, not later with SIGBUS) and
 * writes the manifest. The caller then fills each column's buffers in place
 * through snap_publish_fill() and ends with snap_publish_commit() or
 * snap_publish_abort(). Until commit nothing is visible and a crash leaves
 * nothing behind. One thread at a time may use a publish handle; any number
 * of publishes may be in progress.
 * A dataset is created by its first publish (begin, adopt or import) only
 * if its name follows the rule for new names: 1..255 bytes of ASCII letters,
 * digits, '_', '-' and '.', not starting with '.'. Existing datasets keep
 * whatever name they have. If the first publish of a dataset fails or is
 * aborted (and no other publish of it is in progress), no dataset is left:
 * it does not count against snap_store_set_max_datasets().
 * @return 0, SNAP_EINVAL (bad name or schema; message names the field),
 *         SNAP_ERDONLY, SNAP_EMAPFULL, -EDQUOT (dataset limit), or -errno
 *         (-ENOSPC, -EMFILE, ...).
 */
SNAP_API int snap_publish_begin(snap_store *store, const char *dataset,
                                const struct snap_schema *schema, snap_publish **out,
                                struct snap_error *err);

/** Version number reserved for this publish. */
SNAP_API uint64_t snap_publish_version(const snap_publish *pub);
/** Row count of the table being published. */
SNAP_API uint64_t snap_publish_nrows(const snap_publish *pub);

/**
 * The planned layout of column @p col (type, resolved category code type,
 * block, buffer pointers and sizes), or NULL when out of range. The pointers
 * are the same as snap_publish_fill()'s, read-only typed. Lives until commit
 * or abort.
 */
SNAP_API const struct snap_column *snap_publish_column(const snap_publish *pub,
                                                       uint32_t col);

/**
 * Writable buffers of column @p col. Pointers live until commit or abort.
 * Buffers start zeroed. Strings: fill offsets[0..nrows] (offsets[0] = 0,
 * non-decreasing, offsets[nrows] = data_bytes) and data. Categories: codes in
 * values (-1 = missing, else < dict_size), dictionary in offsets/data.
 * @return 0 or SNAP_EINVAL (col out of range).
 */
SNAP_API int snap_publish_fill(snap_publish *pub, uint32_t col, struct snap_fill *out,
                               struct snap_error *err);

/**
 * Writable view of block @p block: ncols * nrows values of one type, C order.
 * Useful to copy a whole 2-D matrix in one go.
 * @return pointer or NULL when out of range.
 */
SNAP_API void *snap_publish_block(snap_publish *pub, uint32_t block);

/**
 * Validate the filled buffers (string offsets, category codes), checksum the
 * data, seal the file read-only, link it in as the new current version and
 * apply retention, all or nothing; then reclaim retired versions nobody pins.
 * The handle is freed whether or not the commit succeeds.
 * @return 0 (the version is current), SNAP_EINVAL (bad fill, message names
 *         the column, row and value), SNAP_EMAPFULL, or -errno.
 */
SNAP_API int snap_publish_commit(snap_publish *pub, uint64_t *version,
                                 struct snap_error *err);

/** Abandon the publish: the reserved number is skipped, nothing remains. NULL ok. */
SNAP_API void snap_publish_abort(snap_publish *pub);

/*
 * Detached publishing: a process that may not (or should not) write the
 * store fills a segment on its own and hands the file to the store's writer
 * (writerd) as a descriptor, which validates it and links it in without a copy.
 *
 *   client:  snap_publish_begin_detached(dir, ...); fill as usual;
 *            snap_publish_seal(pub, &fd, ...); send fd (SCM_RIGHTS); close(fd)
 *   writer:  snap_publish_adopt(store, dataset, fd, &version, ...)
 */

/**
 * Begin a segment of @p dataset in an O_TMPFILE under directory @p dir, which
 * must be on the store's filesystem (e.g. the store's incoming/ directory)
 * and writable by the caller. No store is involved: the header carries
 * version 0 until the writer adopts it. Fill with snap_publish_fill() /
 * snap_publish_block(); end with snap_publish_seal() or snap_publish_abort().
 * @return 0, SNAP_EINVAL, or -errno (-ENOSPC, ...).
 */
SNAP_API int snap_publish_begin_detached(const char *dir, const char *dataset,
                                         const struct snap_schema *schema,
                                         snap_publish **out, struct snap_error *err);

/**
 * Validate and checksum a detached publish, make the file read-only, and give
 * its descriptor (read-write, caller-owned) to the caller. The handle is freed
 * whether or not this succeeds.
 * @return 0, SNAP_EINVAL (bad fill, or not a detached publish), or -errno.
 */
SNAP_API int snap_publish_seal(snap_publish *pub, int *fd, struct snap_error *err);

/**
 * Adopt a sealed detached segment received as @p fd (a regular file on the
 * store's filesystem, open read-write): validate its structure, give it the
 * next version number and the store id, then, holding a read lease that the
 * kernel grants only while no process has the file open for writing, validate
 * it again with its data checksum, make it read-only and flip it in as the
 * current version of @p dataset. The sender closes its copy after sending,
 * so this waits up to 2 s for every other writable descriptor to go. Takes
 * ownership of @p fd: it is closed whether or not the call succeeds. Needs
 * the file's owner or root (for the lease and fchmod).
 * @return 0; SNAP_ECORRUPT / SNAP_EFORMAT / SNAP_ECHECKSUM (bad file, nothing
 *         published); SNAP_EBUSY (still open for writing elsewhere after 2 s);
 *         SNAP_EINVAL; -EXDEV (another filesystem); or -errno.
 */
SNAP_API int snap_publish_adopt(snap_store *store, const char *dataset, int fd,
                                uint64_t *version, struct snap_error *err);

/**
 * Publish a copy of a segment file from anywhere (another store, an export, a
 * detached segment saved under a name) as the next version of @p dataset. The
 * file is untrusted: it is validated completely (structure, header checksum,
 * data checksum, string offsets, category codes) before anything is written;
 * its own version number, store id and dataset name are ignored. The data is
 * written once, into the new segment. @p fd (readable) stays the caller's.
 * @return 0; SNAP_ECORRUPT / SNAP_EFORMAT / SNAP_ECHECKSUM (nothing published);
 *         SNAP_EINVAL, SNAP_ERDONLY, or -errno.
 */
SNAP_API int snap_publish_import(snap_store *store, const char *dataset, int fd,
                                 uint64_t *version, struct snap_error *err);

/* ------------------------------------------------------------------- pins */

/**
 * Pin the current version of a dataset for reading.
 * The snapshot and every pointer taken from it stay valid until snap_unpin(),
 * in this process and in children forked while it is pinned (each process
 * unpins its own copy). While any process pins a version it is not reclaimed.
 * Fast path (the version has not changed since this process last looked): no
 * system call and no lock. Thread-safe; any thread may call it.
 * @return 0, SNAP_ENOTFOUND (no such dataset, or no version yet),
 *         SNAP_ECORRUPT / SNAP_EFORMAT (the segment failed validation), or -errno.
 */
SNAP_API int snap_pin(snap_store *store, const char *dataset, snap_snapshot **out,
                      struct snap_error *err);

/**
 * snap_pin()'s fast path alone: pin the current version of @p dataset if this
 * process has it mapped and no flip happened since it last looked. Makes no
 * system call, takes no lock and never blocks, so it may run where blocking
 * is not allowed (a binding holding an interpreter lock, a signal-free hot
 * loop); on -EAGAIN, call snap_pin() from where blocking is fine.
 * @param store   an open store handle.
 * @param dataset the dataset name (NUL-terminated); NULL gives -EAGAIN.
 * @param out     receives the snapshot on success, NULL otherwise.
 * @return 0 (pinned: release with snap_unpin()), or -EAGAIN (the fast path
 *         cannot answer: nothing cached for this dataset, or the store flipped
 *         since). Sets no error message. Thread-safe.
 */
SNAP_API int snap_pin_cached(snap_store *store, const char *dataset, snap_snapshot **out);

/**
 * Pin a given version (current or retained) of a dataset.
 * @return as snap_pin(), plus SNAP_EDRAINING when the version is retired.
 */
SNAP_API int snap_pin_version(snap_store *store, const char *dataset, uint64_t version,
                              snap_snapshot **out, struct snap_error *err);

/** Take one more pin on a pinned snapshot (cheap; for handing it to another owner). */
SNAP_API snap_snapshot *snap_snapshot_ref(snap_snapshot *snap);

/** Drop a pin. Pointers taken from the snapshot must not be used afterwards. */
SNAP_API void snap_unpin(snap_snapshot *snap);

SNAP_API const char *snap_snapshot_dataset(const snap_snapshot *snap);
SNAP_API uint64_t snap_snapshot_version(const snap_snapshot *snap);
SNAP_API uint64_t snap_snapshot_nrows(const snap_snapshot *snap);
SNAP_API uint32_t snap_snapshot_ncols(const snap_snapshot *snap);
SNAP_API uint32_t snap_snapshot_nblocks(const snap_snapshot *snap);
/** Column @p i (< ncols) or NULL. Lives as long as the pin. */
SNAP_API const struct snap_column *snap_snapshot_column(const snap_snapshot *snap,
                                                        uint32_t i);
/** Index of the first column named @p name, or -1. */
SNAP_API int64_t snap_snapshot_find(const snap_snapshot *snap, const char *name);
/** Block @p i (< nblocks) or NULL. Lives as long as the pin. */
SNAP_API const struct snap_block *snap_snapshot_block(const snap_snapshot *snap,
                                                      uint32_t i);
/** The metadata blob given at publish (may be empty). */
SNAP_API const void *snap_snapshot_metadata(const snap_snapshot *snap, size_t *len);
/** Creation time, ns since the Unix epoch. */
SNAP_API uint64_t snap_snapshot_created_ns(const snap_snapshot *snap);
/** The whole segment mapping (header included) and its size. */
SNAP_API const void *snap_snapshot_segment(const snap_snapshot *snap, size_t *len);
/** Path of the segment file (it may have been unlinked since). */
SNAP_API const char *snap_snapshot_path(const snap_snapshot *snap);

/**
 * Recompute the data checksum of a pinned version (reads every byte) and
 * check every category code against its dictionary.
 * @return 0, SNAP_ECHECKSUM, or SNAP_ECORRUPT.
 */
SNAP_API int snap_snapshot_verify(const snap_snapshot *snap, struct snap_error *err);

/**
 * Drop this process's cached mappings of versions that are no longer current
 * and not pinned by the caller. Unpinning does this on its own after a flip;
 * call it from an idle process so that a retired version can be reclaimed
 * without waiting for the next pin. When it returns, this process pins only
 * what its callers pin plus the current versions. Thread-safe; may block
 * for an RCU grace period.
 */
SNAP_API void snap_store_trim(snap_store *store);

/* ------------------------------------------------ versions and reclamation */

enum snap_state {
  SNAP_STATE_CURRENT = 1,  /* what snap_pin() returns */
  SNAP_STATE_RETAINED = 2, /* kept by the retention policy; pinnable by number */
  SNAP_STATE_DRAINING = 3, /* retired; reclaimed when its last pin goes */
};
SNAP_API const char *snap_state_name(enum snap_state state);

struct snap_version_info {
  uint64_t version;
  enum snap_state state;
  uint32_t ncols;
  uint64_t nrows;
  uint64_t bytes; /* segment file size */
  uint64_t created_ns;
  uint64_t data_hash[2]; /* XXH3-128 of the data region, low then high */
  int32_t holders;       /* processes pinning it now (from /proc/locks), -1 unknown */
};

struct snap_dataset_info {
  char name[SNAP_DATASET_NAME_MAX + 1];
  uint64_t current; /* 0: no version yet */
  uint64_t next_version;
  uint32_t keep;
  uint32_t nversions;
  uint64_t bytes; /* all its segments */
};

/**
 * List the datasets (sorted by name). *out is malloc'd; free with free().
 * Thread-safe. @return 0 or an error.
 */
SNAP_API int snap_dataset_list(snap_store *store, struct snap_dataset_info **out,
                               size_t *count, struct snap_error *err);

/**
 * List the versions of a dataset, oldest first, with how many processes pin
 * each. *out is malloc'd; free with free(). @return 0, SNAP_ENOTFOUND, or an error.
 */
SNAP_API int snap_version_list(snap_store *store, const char *dataset,
                               struct snap_version_info **out, size_t *count,
                               struct snap_error *err);

/** Current version number of a dataset. @return 0 or SNAP_ENOTFOUND. */
SNAP_API int snap_current_version(snap_store *store, const char *dataset,
                                  uint64_t *version, struct snap_error *err);

/**
 * Make a retained version current again (the old current becomes retained).
 * Readers see it at their next pin.
 * @return 0, SNAP_ENOTFOUND, SNAP_EDRAINING, SNAP_ERDONLY, or an error.
 */
SNAP_API int snap_rollback(snap_store *store, const char *dataset, uint64_t version,
                           struct snap_error *err);

/** snap_dataset_drop() flags. */
#define SNAP_DROP_FORCE 0x1u /* drop even while versions are pinned (see below) */

/**
 * Remove dataset @p dataset: its record, every version's record and every
 * segment file. Works for any existing name, also one that the rule for new
 * names (docs/design.md) would refuse now.
 * Without SNAP_DROP_FORCE, nothing is removed while any process pins any of
 * its versions: the call fails with SNAP_EBUSY and the message names the file,
 * the version and up to 8 pinning pids. With SNAP_DROP_FORCE the dataset goes
 * anyway; the segment files of pinned versions are unlinked but their pinners
 * keep reading their mapping, and the memory returns to the tmpfs when the
 * last of them unpins (snapctl gc and readers no longer see those versions).
 * Either way new pins of the name fail with SNAP_ENOTFOUND at once.
 * Version numbers are never reused: a dataset created again under the same
 * name continues from the dropped one's next version number (the tombstone
 * segments/<dataset>/.next_version stays behind for that).
 * Writers only; thread-safe; any number of handles and processes may call it.
 * @return 0; SNAP_ENOTFOUND (no such dataset); SNAP_EBUSY (a version is
 *         pinned, or a publish of the dataset is in progress: retry after it);
 *         SNAP_EINVAL (unknown flags, or a name that cannot exist);
 *         SNAP_ERDONLY; a control-file status; or -errno.
 */
SNAP_API int snap_dataset_drop(snap_store *store, const char *dataset, unsigned flags,
                               struct snap_error *err);

/** Processes that pin a version now: up to @p cap pids in @p pids, total in *count. */
SNAP_API int snap_version_holders(snap_store *store, const char *dataset,
                                  uint64_t version, pid_t *pids, size_t cap,
                                  size_t *count, struct snap_error *err);

/** One version looked at by snap_gc(). */
struct snap_gc_item {
  const char *dataset;
  uint64_t version;
  uint64_t bytes;
  int freed;       /* 1: reclaimed now (or would be, in a dry run); 0: still draining */
  int32_t holders; /* pinning processes when not freed */
};

struct snap_gc_stats {
  uint64_t freed_versions, freed_bytes;
  uint64_t draining_versions, draining_bytes;
};

typedef void (*snap_gc_cb)(const struct snap_gc_item *item, void *arg);

#define SNAP_GC_DRY_RUN 0x1u /* report, change nothing */

/**
 * Reclaim every draining version (of @p dataset, or all when NULL) that no
 * process pins: the moment flock(LOCK_EX|LOCK_NB) on its file succeeds, the
 * file is unlinked and its record dropped. @p cb (may be NULL) sees each
 * draining version; @p stats (may be NULL) gets the totals. A dry run changes
 * nothing and also works through a read-only handle.
 * @return 0, SNAP_ERDONLY, or an error.
 */
SNAP_API int snap_gc(snap_store *store, const char *dataset, unsigned flags,
                     snap_gc_cb cb, void *arg, struct snap_gc_stats *stats,
                     struct snap_error *err);

/**
 * Block until the draining version @p version of @p dataset has no pins, then
 * reclaim it (for a reaper thread). Returns at once if it is not draining.
 * @return 0 (reclaimed or nothing to do) or an error.
 */
SNAP_API int snap_reclaim_wait(snap_store *store, const char *dataset, uint64_t version,
                               struct snap_error *err);

/* ----------------------------------------------------------------- orphans */

/** What a struct snap_orphan is. */
enum snap_orphan_kind {
  SNAP_ORPHAN_SEGMENT = 1, /* <version>.seg that no version record names */
  SNAP_ORPHAN_OTHER = 2,   /* any other file in a dataset directory, e.g. a
                            * <version>.seg.damaged set aside by snap_store_rebuild() */
};

/** A file under segments/<dataset>/ that no version record names. */
struct snap_orphan {
  char *dataset;    /* the name of its directory under segments/ */
  uint64_t version; /* from the file name; 0 for SNAP_ORPHAN_OTHER */
  char *path;       /* "<store path>/segments/<dataset>/<file name>" */
  uint64_t bytes;   /* its size; 0 if it could not be read (e.g. gone meanwhile) */
  enum snap_orphan_kind kind;
};

/**
 * List the orphan files of the store: every file in a directory under
 * segments/ that no version record names (names starting with '.', such as
 * the dataset's .next_version, are the store's own and never listed). Changes
 * nothing; works through a read-only handle.
 *
 * A SNAP_ORPHAN_SEGMENT is left by a publisher killed between linking its
 * segment in and committing (or a drop killed after its commit): the first
 * write operation of a writable handle (snap_publish_begin(), snap_gc(),
 * snap_rollback(), ...) removes all of them. libsnap never removes a
 * SNAP_ORPHAN_OTHER. A publish committing while the list is made may show its
 * new segment as an orphan: list from a quiet store, or check again.
 *
 * On success *out is an array of *count entries (NULL and 0 when there are
 * none), owned by the caller: free it with snap_orphan_list_free(). On error
 * *out is NULL and *count 0. Thread-safe: any thread, any handle.
 * @param store  an open store handle
 * @param out    receives the array
 * @param count  receives its length
 * @param err    error detail (may be NULL)
 * @return 0, SNAP_ECONTROL (or another control-file error) when the records
 *         cannot be read, or -errno (a directory under segments/ unreadable,
 *         -ENOMEM).
 */
SNAP_API int snap_orphan_list(snap_store *store, struct snap_orphan **out, size_t *count,
                              struct snap_error *err);

/**
 * Free what snap_orphan_list() returned: @p count entries' strings, then the
 * array. NULL is a no-op. (Not snap_free(): the entries own strings.)
 */
SNAP_API void snap_orphan_list_free(struct snap_orphan *list, size_t count);

/* ------------------------------------------------------ control-file repair */

/** One segment file looked at by snap_store_rebuild(). */
struct snap_rebuild_item {
  const char *dataset;
  uint64_t version;
  int status;          /* 0: recorded; else why it was set aside (SNAP_ECORRUPT, ...) */
  uint32_t state;      /* enum snap_state given to a recorded version */
  const char *message; /* why it was set aside, naming the file and field; else "" */
};

typedef void (*snap_rebuild_cb)(const struct snap_rebuild_item *item, void *arg);

#define SNAP_REBUILD_DEEP 0x1u /* also check every segment's data checksum */

/**
 * Recreate the control file of the store in @p path (NULL: $LIBSNAP_STORE, else
 * SNAP_STORE_DEFAULT) from the headers of its segment files, for a store whose
 * control.mdb was deleted, truncated or damaged (snapctl doctor --rebuild).
 *
 * Every segments/<dataset>/<version>.seg is validated (header, header checksum,
 * manifest, size; with SNAP_REBUILD_DEEP also the data checksum). Whole ones
 * are recorded: per dataset the highest becomes current, the next keep - 1
 * (default retention, 2) retained, older ones draining; next_version is the
 * highest number found plus one, so numbers are never reused. A segment that
 * fails validation is renamed to <version>.seg.damaged (never deleted) and
 * reported. The store id is taken from the segments; if they disagree nothing
 * changes (SNAP_ECORRUPT naming two files). The old control.mdb, if any, is
 * renamed to control.mdb.damaged-<UTC time>, the new one takes its place, and
 * the flips counter is bumped so that every reader looks again (readers
 * reopen the new file on their next slow path).
 *
 * Needs write access to the store directory. Refuses with SNAP_EBUSY, naming
 * the process, while a writer has the store: writerd (its writerd.lock) or any
 * handle that ran a write operation (publish, gc, rollback, set_keep), which
 * holds a shared flock on the store's flips file until snap_store_close(). A
 * writer whose control file was replaced fails its next write with
 * SNAP_ECONTROL and must reopen the store.
 * @p cb (may be NULL) sees each segment file, from the calling thread. Any
 * thread may call it; one rebuild runs at a time per store (the others get
 * SNAP_EBUSY).
 * @return 0, SNAP_EBUSY, SNAP_ECORRUPT (store ids disagree), SNAP_ENOTFOUND (no
 *         store directory), or -errno.
 */
SNAP_API int snap_store_rebuild(const char *path, unsigned flags, snap_rebuild_cb cb,
                                void *arg, struct snap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LIBSNAP_H */
