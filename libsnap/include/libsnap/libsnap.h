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
 *    snap_strerror() names any of them. The @return lists name every code a
 *    call can return; "-errno" stands for the operating-system failures named
 *    after it (and -ENOMEM wherever memory is allocated).
 *  - "A control-file status" is one of: SNAP_ECONTROL (control.mdb damaged,
 *    replaced or deleted under the handle, or an LMDB error), SNAP_EMAPFULL
 *    (its map or its reader table is full), or -errno (I/O, -ENOMEM).
 *  - "A write-handle status" is what every writing call returns before it
 *    does anything: SNAP_ERDONLY (handle opened with SNAP_RDONLY), SNAP_EBUSY
 *    (snap_store_rebuild() holds the store), or, from the first write of a
 *    handle (which sweeps orphan segments), a control-file status or -errno.
 *  - Every call that can fail takes an optional caller-owned struct snap_error;
 *    pass NULL when the message is not wanted. There is no global error state.
 *  - A call that fails leaves its output pointer NULL and has already released
 *    whatever it took: the caller has nothing to clean up.
 *  - Destructors accept NULL. Every other pointer argument must be valid unless
 *    its @param says NULL is allowed.
 *  - Strings are NUL-terminated UTF-8. Names of datasets follow docs/design.md
 *    ("Dataset names"); a name that can never exist gives SNAP_EINVAL.
 *
 * Threads and fork (the rules in one place; each call repeats what is special):
 *  - A snap_store handle may be used by any number of threads at once, for
 *    every call, except snap_store_close(), which must be the last call on it.
 *  - A snap_snapshot is immutable: its accessors may run concurrently from
 *    any thread; snap_snapshot_ref() and snap_unpin() too (each reference is
 *    dropped once, by whichever thread holds it).
 *  - A snap_publish handle is used by one thread at a time (any thread);
 *    different publishes may run concurrently, also of the same dataset.
 *  - fork(): the library's atfork handlers leave the child consistent when any
 *    thread forks. In the child, store handles and snapshots stay usable (the
 *    child opens its own control-file environment on first use; each process
 *    unpins its own copies). A publish handle belongs to the process that began
 *    it: the child must not use it, not even to abort it.
 *  - No call takes or returns a lock the caller can see; callbacks are named
 *    with their rules (snap_gc_cb, snap_rebuild_cb).
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

/** Library version (semantic; the SONAME carries the major number, and before
 *  1.0 the minor too: 0.x releases may change the ABI, see CHANGELOG.md). The one
 *  place the version is written: CMake, the Python package and writerd read it. */
#define SNAP_VERSION_MAJOR 0
#define SNAP_VERSION_MINOR 5
#define SNAP_VERSION_PATCH 0
/** On-disk segment format version written, independent of the library version.
 * Readers read this one and every earlier one (1: self-contained segments;
 * 2: chunked segments that may share chunks with earlier versions). */
#define SNAP_FORMAT_VERSION 2

/**
 * The version of the library actually linked (which may differ from the
 * SNAP_VERSION_* this header was compiled with).
 * @return "MAJOR.MINOR.PATCH", a static string. Thread-safe.
 */
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
  X(BUSY, -1010, "resource is in use")                                           \
  X(CONFLICT, -1011, "another version became current since the operation began")

/** The library's own status codes (see SNAP_ERROR_MAP for each one's meaning). */
enum snap_status {
#define SNAP_X_ENUM(name, code, msg) SNAP_E##name = (code),
  SNAP_ERROR_MAP(SNAP_X_ENUM)
#undef SNAP_X_ENUM
};

/** Caller-owned error detail, filled only when a call fails. */
struct snap_error {
  int code;          /**< the status the call returned */
  char message[256]; /**< NUL-terminated, names the file, field and value, e.g.
                          "segments/prices/7.seg: header field nrows = 9 ..." */
};

/**
 * @param status a status returned by any libsnap call (library code or -errno).
 * @return a static message, never NULL: "success" for 0, "unknown error" for a
 *         code in neither range. Thread-safe.
 */
SNAP_API const char *snap_strerror(int status);
/**
 * @param status as for snap_strerror().
 * @return a static symbolic name ("SNAP_ECORRUPT", "ENOSPC"; "OK" for 0), or
 *         "UNKNOWN". Thread-safe.
 */
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
  SNAP_INT8 = 1,          /**< int8_t */
  SNAP_INT16 = 2,         /**< int16_t */
  SNAP_INT32 = 3,         /**< int32_t */
  SNAP_INT64 = 4,         /**< int64_t */
  SNAP_UINT8 = 5,         /**< uint8_t */
  SNAP_UINT16 = 6,        /**< uint16_t */
  SNAP_UINT32 = 7,        /**< uint32_t */
  SNAP_UINT64 = 8,        /**< uint64_t */
  SNAP_FLOAT32 = 9,       /**< IEEE 754 binary32 */
  SNAP_FLOAT64 = 10,      /**< IEEE 754 binary64 */
  SNAP_BOOL = 11,         /**< one byte per value, 0 or 1 (numpy's layout) */
  SNAP_TIMESTAMP_NS = 12, /**< int64 ns since the Unix epoch; optional time zone;
                               INT64_MIN is NaT */
  SNAP_DURATION_NS = 13,  /**< int64 ns; INT64_MIN is NaT */
  SNAP_STRING = 14,       /**< int64 offsets (nrows + 1) + UTF-8 bytes */
  SNAP_CATEGORY = 15,     /**< integer codes (-1 = missing) + dictionary of strings */
  /* Timestamps and durations in coarser units (int64 counts of the unit), so
   * that values outside the nanosecond range (about 1677..2262) keep their
   * value and their dtype: pandas 3 keeps datetime64[s] / [ms] / [us]. */
  SNAP_TIMESTAMP_S = 16,  /**< int64 s since the epoch; optional time zone */
  SNAP_TIMESTAMP_MS = 17, /**< int64 ms since the epoch; optional time zone */
  SNAP_TIMESTAMP_US = 18, /**< int64 us since the epoch; optional time zone */
  SNAP_DURATION_S = 19,   /**< int64 s */
  SNAP_DURATION_MS = 20,  /**< int64 ms */
  SNAP_DURATION_US = 21,  /**< int64 us */
};

/**
 * @return bytes per value of fixed-width @p type (1 for SNAP_BOOL, 8 for every
 *         timestamp and duration); 0 for SNAP_STRING, SNAP_CATEGORY and values
 *         that are not a type. Thread-safe.
 */
SNAP_API size_t snap_type_size(enum snap_type type);
/**
 * @return the static lower-case name: "int8", ..., "timestamp[ns]", "string",
 *         "category"; "unknown" for a value that is not a type. Thread-safe.
 */
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

/** One column of a schema given to snap_publish_begin(). Read during the call only. */
struct snap_field {
  const char *name;         /**< UTF-8, 1..SNAP_COLUMN_NAME_MAX bytes, no NUL */
  enum snap_type type;      /**< the column's logical type */
  unsigned flags;           /**< 0 or SNAP_NULLABLE */
  const char *timezone;     /**< timestamps only: IANA name (<= 255 bytes); NULL or ""
                                 = naive; ignored for other types */
  uint64_t data_bytes;      /**< STRING: total bytes of all values; CATEGORY: total
                                 bytes of all categories; 0 for other types */
  uint64_t dict_size;       /**< CATEGORY: number of categories; else ignored */
  enum snap_type code_type; /**< CATEGORY: SNAP_INT8/16/32/64, or 0 for the width
                                 pandas would choose for dict_size categories */
};

/** A table's shape as given to snap_publish_begin(). Read during the call only. */
struct snap_schema {
  uint64_t nrows;                  /**< rows of every column */
  uint32_t ncols;                  /**< 0..SNAP_COLUMNS_MAX */
  const struct snap_field *fields; /**< ncols entries (may be NULL when ncols = 0) */
  const void *metadata;            /**< opaque blob stored with the version (e.g. JSON
                                        describing the pandas index); may be NULL */
  size_t metadata_len;             /**< bytes at metadata; 0 when none */
};

/**
 * One column of a pinned snapshot (snap_snapshot_column()) or of a publish in
 * progress (snap_publish_column()): its type, its place in a block, and its
 * buffers with their byte lengths. For a snapshot every pointer is into the
 * read-only shared mapping and lives as long as the pin; for a publish they
 * are the writable buffers to fill (see snap_publish_column()).
 * A buffer the column does not have is NULL with length 0; a buffer it has
 * may also be NULL with length 0 (no rows, no bytes). Lengths:
 *  - values_bytes:   nrows * snap_type_size(type) for fixed-width types and
 *                    SNAP_BOOL; nrows * snap_type_size(code_type) for
 *                    SNAP_CATEGORY; 0 for SNAP_STRING.
 *  - validity_bytes: (nrows + 7) / 8 with SNAP_NULLABLE, else 0.
 *  - offsets_bytes:  8 * (nrows + 1) for SNAP_STRING, 8 * (dict_size + 1) for
 *                    SNAP_CATEGORY, else 0.
 *  - data_bytes:     offsets[last], the bytes of all strings or categories.
 * In a snapshot, string and dictionary offsets start at 0, never decrease and
 * end at data_bytes, and every category code is -1 or < dict_size: the
 * library checked them when it mapped the segment.
 */
struct snap_column {
  const char *name;         /**< NUL-terminated copy; contains no NUL itself */
  size_t name_len;          /**< strlen(name) */
  enum snap_type type;      /**< logical type */
  unsigned flags;           /**< 0 or SNAP_NULLABLE */
  const char *timezone;     /**< time zone of a zoned timestamp; NULL when naive or
                                 not a timestamp */
  enum snap_type code_type; /**< CATEGORY: SNAP_INT8..SNAP_INT64, the type of the
                                 codes (see snap_column_code()); else 0 */
  uint32_t block;           /**< index of its block, or SNAP_NO_BLOCK (STRING,
                                 CATEGORY) */
  uint32_t block_pos;       /**< its row inside its block (0 when no block) */
  const void *values;       /**< fixed-width values, bools, or category codes */
  const uint8_t *validity;  /**< SNAP_NULLABLE only: the validity bitmap */
  const int64_t *offsets;   /**< STRING: nrows + 1; CATEGORY: dict_size + 1 */
  const char *data;         /**< STRING: value bytes; CATEGORY: category bytes */
  uint64_t data_bytes;      /**< length of data */
  uint64_t dict_size;       /**< CATEGORY: number of categories; else 0 */
  uint64_t values_bytes;    /**< length of values */
  uint64_t validity_bytes;  /**< length of validity */
  uint64_t offsets_bytes;   /**< length of offsets */
};

/**
 * The code of row @p row of a category column, whatever its code width.
 * @param col a SNAP_CATEGORY column (snapshot or publish).
 * @param row < nrows; not checked.
 * @return the code widened to int64: -1 (missing) or 0..dict_size-1 in a
 *         snapshot; in a publish, whatever was written. Thread-safe, no call.
 */
static inline int64_t snap_column_code(const struct snap_column *col, uint64_t row) {
  switch (col->code_type) {
    case SNAP_INT8:
      return ((const int8_t *)col->values)[row];
    case SNAP_INT16:
      return ((const int16_t *)col->values)[row];
    case SNAP_INT32:
      return ((const int32_t *)col->values)[row];
    default:
      return ((const int64_t *)col->values)[row];
  }
}

/**
 * Fixed-width columns of the same type (and time zone and nullability) are
 * stored together as one C-contiguous (ncols, nrows) array: the layout pandas
 * keeps internally, so a homogeneous table is one 2-D matrix. Its data is the
 * values buffers of its columns end to end, in block-row order. Every pointer
 * lives as long as the snapshot's pin.
 */
struct snap_block {
  enum snap_type type;     /**< the fixed-width type of all its columns */
  const char *timezone;    /**< NULL unless a zoned timestamp block */
  unsigned flags;          /**< SNAP_NULLABLE if its columns carry validity bitmaps */
  uint32_t ncols;          /**< >= 1 */
  const uint32_t *columns; /**< ncols column indices, in block-row order */
  const void *data;        /**< the matrix; NULL when data_bytes is 0 */
  uint64_t data_bytes;     /**< ncols * column_stride */
  /** bytes from one column's first value to the next column's: nrows *
   * snap_type_size(type), or more when the block has room for appended rows
   * (format 2); column i's values start at data + i * column_stride */
  uint64_t column_stride;
};

/**
 * Writable buffers of one column of a publish in progress, with their byte
 * lengths (snap_publish_fill()). An absent buffer is NULL with length 0.
 */
struct snap_fill {
  void *values;            /**< values, bools or category codes */
  uint8_t *validity;       /**< SNAP_NULLABLE only */
  int64_t *offsets;        /**< STRING: nrows + 1; CATEGORY: dict_size + 1 */
  char *data;              /**< STRING: value bytes; CATEGORY: category bytes */
  uint64_t values_bytes;   /**< length of values */
  uint64_t validity_bytes; /**< length of validity: (nrows + 7) / 8 */
  uint64_t offsets_bytes;  /**< length of offsets */
  uint64_t data_bytes;     /**< length of data */
};

/* ------------------------------------------------------------------- store */

/** An open store (opaque). */
typedef struct snap_store snap_store;
/** One reference to a pinned version (opaque). */
typedef struct snap_snapshot snap_snapshot;
/** A version being written (opaque). */
typedef struct snap_publish snap_publish;

/** snap_store_open() flags. */
#define SNAP_CREATE 0x1u /**< create the store directory and control file if missing */
#define SNAP_RDONLY 0x2u /**< reader only: no publish, gc, rollback or orphan sweep */

/** Environment variable naming the default store directory. */
#define SNAP_STORE_ENV "LIBSNAP_STORE"
/** Directory of the default store when SNAP_STORE_ENV is not set. */
#define SNAP_STORE_DEFAULT "/dev/shm/libsnap/default"

/**
 * Open (or with SNAP_CREATE create) a store.
 * A writable handle sweeps orphan segment files and stale control-file readers
 * before its first write operation. The control file is checked page by page
 * the first time a process opens it; a missing or empty one next to segment
 * files is never replaced by a new store, even with SNAP_CREATE (repair:
 * snap_store_rebuild()).
 * @param path  the store directory; NULL or "" means $LIBSNAP_STORE, else
 *              SNAP_STORE_DEFAULT. Copied.
 * @param flags 0, SNAP_CREATE or SNAP_RDONLY (not both).
 * @param out   receives the handle (release with snap_store_close()); NULL on
 *              failure.
 * @param err   optional error detail.
 * @return 0;
 *         SNAP_EINVAL (unknown flags, or SNAP_CREATE with SNAP_RDONLY);
 *         SNAP_ENOTFOUND (no store directory, no segments/, or no meta record,
 *         without SNAP_CREATE);
 *         SNAP_EFORMAT (control file of another format);
 *         SNAP_ECONTROL (control file damaged, or missing or empty next to
 *         segments);
 *         SNAP_EMAPFULL; or -errno (-EACCES, -ENOMEM, ...).
 * Thread-safe. The handle is shared by all threads of the process and
 * survives fork() in parent and child. Snapshots pinned through it may outlive
 * snap_store_close().
 */
SNAP_API int snap_store_open(const char *path, unsigned flags, snap_store **out,
                             struct snap_error *err);

/**
 * Release the caller's handle and drop this process's cached mappings made
 * through it (waiting for an RCU grace period if it cached any). Pins and
 * publishes still open keep what they need alive: the handle's descriptors and
 * its writer flock go when the last of them ends.
 * @param store the handle, or NULL (no-op). Must not be in use by another
 *              thread, and must not be used afterwards.
 */
SNAP_API void snap_store_close(snap_store *store);

/**
 * @return the store's directory as opened (after the NULL default was
 *         applied). Lives as long as the handle. Thread-safe.
 */
SNAP_API const char *snap_store_path(const snap_store *store);

/**
 * Copy the 16 random bytes that identify the store (written into every
 * segment) to @p id. Thread-safe.
 */
SNAP_API void snap_store_id(const snap_store *store, uint8_t id[16]);

/**
 * Set the retention of one dataset (keep the current version plus keep - 1
 * others), or the default of datasets created afterwards. For a dataset,
 * versions that fall out of retention start draining at once and those no one
 * pins are reclaimed before the call returns.
 * @param dataset a dataset name, or NULL for the store's default.
 * @param keep    >= 1.
 * @return 0; SNAP_EINVAL (keep < 1, or a name that cannot exist);
 *         SNAP_ENOTFOUND (no such dataset); a write-handle status; or a
 *         control-file status. Thread-safe; writers only.
 */
SNAP_API int snap_store_set_keep(snap_store *store, const char *dataset, uint32_t keep,
                                 struct snap_error *err);

/**
 * Limit the number of datasets the store may hold (0: no limit, the default).
 * A publish that would create one more dataset fails at snap_publish_begin()
 * (or adopt, import) with -EDQUOT, naming the limit; existing datasets are not
 * affected, also when there are already more.
 * @return 0; a write-handle status; or a control-file status. Thread-safe;
 *         writers only.
 */
SNAP_API int snap_store_set_max_datasets(snap_store *store, uint32_t max,
                                         struct snap_error *err);

/**
 * Read the store's dataset limit.
 * @param max   receives the limit (0: none).
 * @param count if not NULL, receives the number of datasets.
 * @return 0 or a control-file status. Thread-safe; any handle.
 */
SNAP_API int snap_store_max_datasets(snap_store *store, uint32_t *max, uint64_t *count,
                                     struct snap_error *err);

/* ----------------------------------------------------------------- publish */

/*
 * One writable accessor per buffer of a publish in progress:
 *  - a column's values, validity, offsets and data: snap_publish_fill(), with
 *    their byte lengths;
 *  - a block's (ncols, nrows) matrix, the values of its columns end to end:
 *    snap_publish_block().
 * snap_publish_column() describes the planned layout (the struct snap_column
 * readers will get: type, code_type, block, block_pos); its pointers are the
 * same buffers, read-only.
 */

/**
 * Begin a new version of @p dataset (created on first publish) with @p schema.
 * Reserves the next version number, creates the segment and writes the
 * manifest. The caller then gives each column's buffers, either in place
 * (snap_publish_fill(), snap_publish_block(), which allocate the buffers they
 * hand out) or from its own memory (snap_publish_copy()), and ends with
 * snap_publish_commit() or snap_publish_abort(). Until commit nothing is
 * visible and a crash leaves nothing behind. Memory is allocated where it is
 * written, so a full tmpfs fails with -ENOSPC at fill, block or commit, never
 * later with SIGBUS; the committed version holds only the chunks that differ
 * from the current version (docs/design.md section 16).
 * A dataset is created by its first publish (begin, adopt or import) only
 * if its name follows the rule for new names: 1..255 bytes of ASCII letters,
 * digits, '_', '-' and '.', not starting with '.'. Existing datasets keep
 * whatever name they have. If the first publish of a dataset fails or is
 * aborted (and no other publish of it is in progress), no dataset is left:
 * it does not count against snap_store_set_max_datasets().
 * @param store   a writable handle.
 * @param dataset the dataset name.
 * @param schema  the table's shape; read during the call only.
 * @param out     receives the publish handle (ended by commit or abort);
 *                NULL on failure.
 * @return 0;
 *         SNAP_EINVAL (bad name or schema, or a table too large; the message
 *         names the field);
 *         -EDQUOT (dataset limit reached);
 *         a write-handle status; a control-file status;
 *         or -errno (-ENOSPC, -EMFILE, -ENOMEM, ...).
 * Thread-safe; any number of publishes may be in progress. The handle is used
 * by one thread at a time and is not valid in a child of fork().
 */
SNAP_API int snap_publish_begin(snap_store *store, const char *dataset,
                                const struct snap_schema *schema, snap_publish **out,
                                struct snap_error *err);

/** @return the version number reserved for this publish (0 for a detached one). */
SNAP_API uint64_t snap_publish_version(const snap_publish *pub);
/** @return the row count of the table being published. */
SNAP_API uint64_t snap_publish_nrows(const snap_publish *pub);

/**
 * The planned layout of column @p col of a publish in progress (type, resolved
 * code_type, block, block_pos, dict_size) and its buffers with their byte
 * lengths, exactly as snap_snapshot_column() will show them. The pointers are
 * read-only here: write through snap_publish_fill(). Buffers start zeroed.
 * They are filled as follows: fixed-width and bool values in values (bools 0 or 1);
 * the validity bitmap if SNAP_NULLABLE; strings: offsets[0..nrows]
 * (offsets[0] = 0, non-decreasing, offsets[nrows] = data_bytes) and data;
 * categories: codes in values (-1 = missing, else < dict_size), the dictionary
 * in offsets/data as for strings. Commit checks all of this.
 * @return the column, or NULL when @p col is out of range or @p pub is NULL.
 *         Lives until commit, seal or abort.
 */
SNAP_API const struct snap_column *snap_publish_column(const snap_publish *pub,
                                                       uint32_t col);

/**
 * The writable buffers of column @p col of a publish in progress and their
 * byte lengths (the layout and the rules for their contents:
 * snap_publish_column()), allocated on the store's tmpfs by this call. They
 * live until commit, seal or abort. At commit, chunks equal to the current
 * version's are freed again and shared with it.
 * @param pub the publish handle.
 * @param col column index, < the schema's ncols.
 * @param out receives the buffers; zeroed on failure.
 * @param err if not NULL, receives the message on failure.
 * @return 0, SNAP_EINVAL (@p col out of range, or no publish in progress), or
 *         -ENOSPC (the tmpfs is full; the message names the file).
 * Not thread-safe on one handle; different columns' buffers may be written by
 * different threads at once.
 */
SNAP_API int snap_publish_fill(snap_publish *pub, uint32_t col, struct snap_fill *out,
                               struct snap_error *err);

/**
 * The one accessor for the (ncols, nrows) matrix of block @p block, C order:
 * the values buffers of its columns end to end, in block-row order (a column's
 * block and block_pos say where it is; its length is the sum of their
 * values_bytes). Useful to copy a whole 2-D matrix in one go.
 * @return a writable pointer, allocated on the store's tmpfs by this call, that
 *         lives until commit, seal or abort; NULL when @p block is out of range
 *         (or the block has no bytes: 0 rows), or with errno ENOSPC when the
 *         tmpfs is full.
 */
SNAP_API void *snap_publish_block(snap_publish *pub, uint32_t block);

/**
 * Block @p block of a publish in progress as planned (type, columns in
 * block-row order, column_stride, data_bytes), like snap_snapshot_block() for
 * a pin; its data pointer is where snap_publish_block() allocates the matrix.
 * @return NULL when @p block is out of range or no publish is in progress;
 *         valid until commit, seal or abort.
 */
SNAP_API const struct snap_block *snap_publish_block_plan(const snap_publish *pub,
                                                          uint32_t block);

/** A buffer of a column, for snap_publish_copy(). */
enum snap_buffer {
  SNAP_BUFFER_VALUES = 0,   /**< values, bools or category codes */
  SNAP_BUFFER_VALIDITY = 1, /**< the validity bitmap (SNAP_NULLABLE) */
  SNAP_BUFFER_OFFSETS = 2,  /**< string or dictionary offsets */
  SNAP_BUFFER_DATA = 3,     /**< string or dictionary bytes */
};

/**
 * Give the contents of one buffer of column @p col from the caller's memory
 * instead of writing them through snap_publish_fill(): the library reads
 * @p src at commit and writes into the new version only the 2 MiB chunks that
 * differ from the current version's (the others are shared with it, and take
 * no memory). A @p src that points into the current version's own view at
 * the buffer's place (a column of a pinned current version, handed back) is
 * shared without being read. The length is the buffer's (snap_publish_column()).
 * A later snap_publish_fill() of the column takes the buffer back.
 * @param src must stay readable and unchanged until commit or abort returns;
 *            may be NULL only for an absent buffer.
 * @return 0, or SNAP_EINVAL (@p col or @p buffer out of range, NULL @p src, no
 *         publish in progress). Not thread-safe on one handle.
 */
SNAP_API int snap_publish_copy(snap_publish *pub, uint32_t col, enum snap_buffer buffer,
                               const void *src, struct snap_error *err);

/**
 * Give rows [@p first_row, @p first_row + @p nrows) of the values of
 * non-nullable fixed-width column @p col from the caller's memory (read at
 * commit, like snap_publish_copy()); the rows not given come from what was
 * written in place (zero otherwise). Ranges may not overlap.
 * @return 0, or SNAP_EINVAL (not such a column, rows out of range or given
 *         twice, NULL @p src, the whole values given already).
 */
SNAP_API int snap_publish_copy_rows(snap_publish *pub, uint32_t col, uint64_t first_row,
                                    uint64_t nrows, const void *src,
                                    struct snap_error *err);

/** Write every chunk, share none with the current version (no comparison at
 * commit): snap_publish_set_flags(), snap_publish_begin_ex(). */
#define SNAP_PUBLISH_FULL 0x1u
/** snap_publish_begin_ex(): if the current version's blocks have room for more
 * rows than this table (after snap_publish_append()) and the same layout, keep
 * that room, so that its chunks can be shared. A block matrix is then strided
 * (struct snap_block column_stride): do not fill it through
 * snap_publish_block() as one contiguous (ncols, nrows) array. */
#define SNAP_PUBLISH_KEEP_ROOM 0x2u
/** snap_publish_set_flags(): the buffers written in place (snap_publish_fill(),
 * snap_publish_block()) stay readable after the commit, abort or failure,
 * with what was written: the library remaps the publish's whole range
 * (snap_publish_view()) privately, copy on write, over the same file, and
 * never unmaps it; the caller does, with munmap(), when it no longer needs
 * them. A write there after the commit changes only the caller's memory,
 * never the published version. If the range cannot be remapped so (mappings
 * or memory exhausted), the commit fails and publishes nothing; after an abort
 * or a failed commit the range is left read-only with what it could keep. Once
 * set, later snap_publish_set_flags() calls keep it. For bindings whose arrays
 * may outlive the publish (Python's store.build()). */
#define SNAP_PUBLISH_KEEP_VIEW 0x4u

/** The publish's writable mapping (the whole segment being written) and its
 * size: with SNAP_PUBLISH_KEEP_VIEW, the range to munmap() at the end (ask
 * before the commit or abort, which free @p pub). */
SNAP_API void *snap_publish_view(const snap_publish *pub, size_t *len);

/**
 * snap_publish_begin() with SNAP_PUBLISH_* @p flags.
 * @return as snap_publish_begin(), or SNAP_EINVAL for an unknown flag.
 */
SNAP_API int snap_publish_begin_ex(snap_store *store, const char *dataset,
                                   const struct snap_schema *schema, unsigned flags,
                                   snap_publish **out, struct snap_error *err);

/**
 * Begin a version of @p dataset that is its current version plus @p nrows
 * rows at the end: the caller gives the new rows of every column with
 * snap_publish_copy_rows(pub, col, old_nrows, nrows, src) (old_nrows:
 * snap_publish_nrows(pub) - @p nrows), then commits. The blocks of a version
 * have room for more rows than they hold (format 2): when the current version
 * has room for the new rows, the old rows are shared with it unread, and the
 * append costs memory and time in proportion to the new rows only; otherwise
 * the room doubles (one full copy, amortised). Readers of the old version are
 * not disturbed.
 * @param nrows        rows to append (0 republishes the current version).
 * @param metadata     the new version's metadata blob (e.g. an index that
 *                     grew), or NULL to keep the current one's.
 * @return as snap_publish_begin(), plus SNAP_ENOTFOUND (no current version)
 *         and SNAP_EINVAL (a string, category or nullable column: publish the
 *         whole table instead; the message names the column).
 */
SNAP_API int snap_publish_append(snap_store *store, const char *dataset, uint64_t nrows,
                                 const void *metadata, size_t metadata_len,
                                 snap_publish **out, struct snap_error *err);

/**
 * Set SNAP_PUBLISH_* flags of a publish in progress (0 restores the default:
 * share unchanged chunks with the current version).
 * @return 0, or SNAP_EINVAL (unknown flag, no publish in progress).
 */
SNAP_API int snap_publish_set_flags(snap_publish *pub, unsigned flags,
                                    struct snap_error *err);

/**
 * Validate the filled buffers (string offsets, category codes), write NaT into
 * the null slots of temporal columns, then chunk by chunk (on every core):
 * share the chunks equal to the current version's, write the others, hash
 * them; seal the file read-only, link it in as the new current version and
 * apply retention, all or nothing; then reclaim retired versions nobody pins
 * (or, when later versions share some of their chunks, all but those).
 * @param pub     the publish; freed whether or not the commit succeeds.
 * @param version if not NULL, receives the version number (0 on failure).
 * @return 0 (the version is current);
 *         SNAP_EINVAL (bad fill: the message names the column, row and value;
 *         a NULL or detached publish);
 *         a control-file status; or -errno (-EIO, ...).
 */
SNAP_API int snap_publish_commit(snap_publish *pub, uint64_t *version,
                                 struct snap_error *err);

/**
 * Compaction: publish the current version of @p dataset again as a version
 * that holds all its data itself (format 2 shares nothing then), so that
 * older files it borrowed from can go and readers map it in one piece. A
 * publish compacts by itself past 64 runs of shared chunks (the shortest runs
 * are copied) or 64 files shared from; this forces it.
 * @param version if not NULL, receives the new version number (0 on failure).
 * @return as snap_publish_commit(), plus SNAP_ENOTFOUND (no such dataset or no
 *         version yet). Thread-safe.
 */
SNAP_API int snap_compact(snap_store *store, const char *dataset, uint64_t *version,
                          struct snap_error *err);

/**
 * Abandon the publish: the reserved number is skipped, nothing remains (a
 * first publish that created its dataset removes it again).
 * @param pub the publish, or NULL (no-op); freed.
 */
SNAP_API void snap_publish_abort(snap_publish *pub);

/* ------------------------------------------------------- editing in place */

/** An edit in progress: a private, writable, copy-on-write view of a version. */
typedef struct snap_edit snap_edit;

/**
 * Begin editing the current version of @p dataset in place, with no copy of
 * the table. The edit pins that version (its base) and maps it a second time,
 * privately and copy-on-write: the buffers of snap_edit_column() and
 * snap_edit_block() are writable, and the kernel copies a page into this
 * process's memory only when it is first written. Nobody else sees the writes.
 * snap_edit_commit() then publishes a version that holds only the chunks with
 * written pages, sharing the rest with the base; which pages were written is
 * read from the kernel's page table (/proc/self/pagemap), never found by
 * comparing (docs/design.md section 17).
 * @param out receives the edit; release it with snap_edit_free() (committed or
 *            not). It belongs to the process that began it (not to a child of
 *            fork()); one thread at a time calls its functions, and any thread
 *            may write into its view, but none while snap_edit_commit() (or a
 *            publish the edit is set on) runs: a write then may be lost, or
 *            published under another chunk's hash (a version readers refuse).
 * @return 0; SNAP_ENOTFOUND (no such dataset or no version yet); SNAP_EINVAL
 *         (a name that cannot exist); SNAP_ERDONLY; the statuses of
 *         snap_pin(); or -errno (-ENOMEM: no address space for the view).
 */
SNAP_API int snap_edit_begin(snap_store *store, const char *dataset, snap_edit **out,
                             struct snap_error *err);
/** The version the edit began from. */
SNAP_API uint64_t snap_edit_base(const snap_edit *ed);
/** The pinned base (names, types, metadata; its buffers are the shared,
 * read-only ones). Owned by the edit: do not unpin. */
SNAP_API snap_snapshot *snap_edit_snapshot(const snap_edit *ed);
/** Rows of the base. */
SNAP_API uint64_t snap_edit_nrows(const snap_edit *ed);
/**
 * Column @p col of the edit's view, or NULL when out of range. Its buffer
 * pointers are into the private view and may be written (cast away const):
 * values, validity, offsets and data alike, as long as the result is valid (a
 * commit validates string offsets and category codes as a publish does).
 * Valid until snap_edit_free(). Write nothing while a commit runs (see
 * snap_edit_begin()).
 */
SNAP_API const struct snap_column *snap_edit_column(const snap_edit *ed, uint32_t col);
/** Block @p block of the edit's view (writable, like snap_edit_column()). */
SNAP_API const struct snap_block *snap_edit_block(const snap_edit *ed, uint32_t block);
/** The whole private view (the segment's layout), @p len its size. */
SNAP_API void *snap_edit_view(const snap_edit *ed, size_t *len);
/**
 * Count the pages of the view's data region that were written so far (each is
 * this process's private memory until snap_edit_free()).
 * @return 0, or -errno reading /proc/self/pagemap.
 */
SNAP_API int snap_edit_written(const snap_edit *ed, uint64_t *pages,
                               struct snap_error *err);
/**
 * Publish the view as it is now: a new version with the base's columns, rows
 * and metadata, holding only the chunks of the base with written pages (each
 * compared with the base first: a write may have put back the same bytes).
 * The flip is a compare-and-swap: if another version became current after
 * snap_edit_begin(), nothing is published and the call fails with
 * SNAP_ECONFLICT, naming both versions (begin a new edit from the new one).
 * The view stays mapped, with the writes, until snap_edit_free().
 * @param version if not NULL, receives the new version number (0 on failure).
 * @return 0; SNAP_ECONFLICT; SNAP_EINVAL (already committed; a write left
 *         invalid string offsets or category codes: the message names the
 *         column and row); or the statuses of snap_publish_commit().
 */
SNAP_API int snap_edit_commit(snap_edit *ed, uint64_t *version, struct snap_error *err);
/**
 * Base a publish on an edit, for a writer whose new version is more than the
 * view (columns replaced, rows appended with snap_publish_append(), another
 * layout): every source given with snap_publish_copy() or
 * snap_publish_copy_rows() that lies in the view at its own place in the
 * layout is shared unread where no page of its chunk was written. The flip
 * refuses with SNAP_ECONFLICT unless the edit's base is still current. Which
 * pages were written is read now: call it after the last write to the view.
 * @return 0; SNAP_EINVAL (no publish in progress, an edit set already, a
 *         committed edit, an edit of another dataset or store); SNAP_ECONFLICT
 *         (an append begun from another version); or -errno reading
 *         /proc/self/pagemap.
 */
SNAP_API int snap_publish_set_edit(snap_publish *pub, snap_edit *ed,
                                   struct snap_error *err);
/** Unmap the view, unpin the base and free the edit (NULL: no-op). Without a
 * commit nothing is published. */
SNAP_API void snap_edit_free(snap_edit *ed);

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
 * version 0 until the writer adopts it. Fill with snap_publish_column() /
 * snap_publish_block(); end with snap_publish_seal() or snap_publish_abort().
 * @param dir     directory of the temporary file.
 * @param dataset the dataset name the segment is meant for.
 * @param schema  as for snap_publish_begin().
 * @param out     receives the handle; NULL on failure.
 * @return 0; SNAP_EINVAL (bad name, NULL dir, bad schema); or -errno
 *         (-ENOENT, -EACCES, -EOPNOTSUPP for O_TMPFILE, -ENOSPC, -ENOMEM, ...).
 * Thread-safe; the handle follows snap_publish_begin()'s rules.
 */
SNAP_API int snap_publish_begin_detached(const char *dir, const char *dataset,
                                         const struct snap_schema *schema,
                                         snap_publish **out, struct snap_error *err);

/**
 * Validate and checksum a detached publish and make the file read-only.
 * @param pub the detached publish; freed whether or not this succeeds.
 * @param fd  receives the file's descriptor (read-write, close-on-exec, the
 *            caller's to close); -1 on failure.
 * @return 0; SNAP_EINVAL (bad fill, NULL, or not a detached publish); or
 *         -errno (fchmod).
 */
SNAP_API int snap_publish_seal(snap_publish *pub, int *fd, struct snap_error *err);

/**
 * Adopt a sealed detached segment received as @p fd (a regular file on the
 * store's filesystem, open read-write): validate its structure, give it the
 * next version number and the store id, then, holding a read lease that the
 * kernel grants only while no process has the file open for writing, validate
 * it again with its data checksum, make it read-only and flip it in as the
 * current version of @p dataset. The sender closes its copy after sending,
 * so this waits up to 2 s for every other writable descriptor to go. Needs
 * the file's owner or root (for the lease and fchmod).
 * @param fd      taken over: closed whether or not the call succeeds.
 * @param version if not NULL, receives the new version (0 on failure).
 * @return 0;
 *         SNAP_ECORRUPT / SNAP_EFORMAT / SNAP_ECHECKSUM (bad file, nothing
 *         published);
 *         SNAP_EBUSY (still open for writing elsewhere after 2 s);
 *         SNAP_EINVAL (bad name, not a regular read-write file, or a header
 *         version other than 0);
 *         -EDQUOT (dataset limit); -EXDEV (another filesystem);
 *         a write-handle status; a control-file status; or -errno (-EPERM,
 *         -EACCES, ...). Thread-safe.
 */
SNAP_API int snap_publish_adopt(snap_store *store, const char *dataset, int fd,
                                uint64_t *version, struct snap_error *err);

/**
 * Publish a copy of a segment file from anywhere (another store, an export, a
 * detached segment saved under a name) as the next version of @p dataset. The
 * file is untrusted: it is validated completely (structure, header checksum,
 * data checksum, string offsets, category codes) before anything is written;
 * its own version number, store id and dataset name are ignored. The data is
 * written once, into the new segment.
 * @param fd      a readable descriptor; stays the caller's.
 * @param version if not NULL, receives the new version (0 on failure).
 * @return 0;
 *         SNAP_ECORRUPT / SNAP_EFORMAT / SNAP_ECHECKSUM (nothing published);
 *         SNAP_EINVAL (not a regular file, bad name); and whatever
 *         snap_publish_begin() and snap_publish_commit() return.
 *         Thread-safe.
 */
SNAP_API int snap_publish_import(snap_store *store, const char *dataset, int fd,
                                 uint64_t *version, struct snap_error *err);

/* ------------------------------------------------------------------- pins */

/**
 * Pin the current version of a dataset for reading.
 * While any process pins a version it is not reclaimed.
 * Fast path (the version has not changed since this process last looked): no
 * system call and no lock. Slow path: a control-file read transaction under
 * the store's lock, and on first sight of a version an open, flock, mmap and
 * full validation of its segment.
 * @param store   an open handle (read-only or writable).
 * @param dataset the dataset name.
 * @param out     receives the snapshot (release with snap_unpin()); NULL on
 *                failure. It and every pointer taken from it stay valid until
 *                snap_unpin(), in this process and in children forked while it
 *                is pinned (each process unpins its own copy).
 * @return 0;
 *         SNAP_ENOTFOUND (no such dataset, or no version yet);
 *         SNAP_EINVAL (a name that cannot exist);
 *         SNAP_ECORRUPT / SNAP_EFORMAT (the segment failed validation);
 *         SNAP_ECONTROL (also: the control file names a segment that is missing);
 *         SNAP_EBUSY (the version changed 64 times while pinning);
 *         a control-file status; or -errno (-EACCES, -ENOMEM, ...).
 * Thread-safe; any thread may call it, no registration needed.
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
 * Pin a given version (current or retained) of a dataset. Always the slow path
 * (a control-file read), then the cached mapping when this process has one.
 * @param version >= 1.
 * @return as snap_pin(), plus SNAP_EINVAL (version 0), SNAP_ENOTFOUND (no such
 *         version) and SNAP_EDRAINING (the version is retired).
 */
SNAP_API int snap_pin_version(snap_store *store, const char *dataset, uint64_t version,
                              snap_snapshot **out, struct snap_error *err);

/**
 * Take one more reference on a pinned snapshot (one atomic increment; for
 * handing it to another owner or thread).
 * @return @p snap; release it with its own snap_unpin().
 */
SNAP_API snap_snapshot *snap_snapshot_ref(snap_snapshot *snap);

/**
 * Drop one reference. Pointers taken from the snapshot must not be used
 * afterwards. The last reference of a version that is no longer current also
 * drops this process's cached mapping of it, which may wait for an RCU grace
 * period (never call it inside an RCU read-side section of your own).
 * @param snap a snapshot, or NULL (no-op). Any thread.
 */
SNAP_API void snap_unpin(snap_snapshot *snap);

/*
 * Snapshot accessors. None fails, none blocks, all are thread-safe; pointers
 * they return live as long as the snapshot's pin.
 * Buffers: a column's values, validity, offsets and data through
 * snap_snapshot_column() (struct snap_column, with lengths); a block's matrix
 * through snap_snapshot_block(); the raw file through snap_snapshot_segment().
 */

/** @return the dataset name (NUL-terminated, as recorded in the segment). */
SNAP_API const char *snap_snapshot_dataset(const snap_snapshot *snap);
/** @return the version number (>= 1). */
SNAP_API uint64_t snap_snapshot_version(const snap_snapshot *snap);
/** @return the row count of every column. */
SNAP_API uint64_t snap_snapshot_nrows(const snap_snapshot *snap);
/** @return the number of columns. */
SNAP_API uint32_t snap_snapshot_ncols(const snap_snapshot *snap);
/** @return the number of blocks (0..ncols). */
SNAP_API uint32_t snap_snapshot_nblocks(const snap_snapshot *snap);
/** @return column @p i, or NULL when i >= ncols. */
SNAP_API const struct snap_column *snap_snapshot_column(const snap_snapshot *snap,
                                                        uint32_t i);
/** @return the index of the first column named @p name, or -1 (a linear scan). */
SNAP_API int64_t snap_snapshot_find(const snap_snapshot *snap, const char *name);
/** @return block @p i, or NULL when i >= nblocks. */
SNAP_API const struct snap_block *snap_snapshot_block(const snap_snapshot *snap,
                                                      uint32_t i);
/**
 * @param len if not NULL, receives the blob's length (0 when none).
 * @return the metadata blob given at publish, or NULL when it was empty.
 */
SNAP_API const void *snap_snapshot_metadata(const snap_snapshot *snap, size_t *len);
/** @return the creation time, ns since the Unix epoch. */
SNAP_API uint64_t snap_snapshot_created_ns(const snap_snapshot *snap);
/**
 * @param len if not NULL, receives the file size.
 * @return the whole segment mapping (header included), 2 MiB aligned: the raw
 *         file, in the format of docs/format.md.
 */
SNAP_API const void *snap_snapshot_segment(const snap_snapshot *snap, size_t *len);
/**
 * @return the memory mappings this version's view takes in the process: 1 for
 *         a version that holds all its data, 1 + the runs of chunks it shares
 *         with earlier versions otherwise (format 2). Each counts against
 *         vm.max_map_count while the version is pinned.
 */
SNAP_API uint64_t snap_snapshot_mappings(const snap_snapshot *snap);
/** @return the path of the segment file (it may have been unlinked since). */
SNAP_API const char *snap_snapshot_path(const snap_snapshot *snap);

/**
 * Recompute the data checksum of a pinned version (reads every byte) and
 * check every category code against its dictionary.
 * @return 0, SNAP_ECHECKSUM (data differs from the sealed checksum), or
 *         SNAP_ECORRUPT (a code out of range). Thread-safe.
 */
SNAP_API int snap_snapshot_verify(const snap_snapshot *snap, struct snap_error *err);

/* --------------------------------------------------------- chunks (format 2) */

/** Where a format 2 version's chunks are (docs/format.md section 10a). */
struct snap_chunk_layout {
  uint32_t shift;       /**< log2 of the chunk size */
  uint64_t data_offset; /**< file offset of chunk 0; the header and manifest are
                             the file's bytes before it */
  uint64_t nchunks;     /**< chunks of the data region */
};

/** One chunk of a version. */
struct snap_chunk_info {
  uint64_t hash;   /**< XXH3-64 (seed 0) of its 2^shift bytes */
  uint64_t holder; /**< the version whose file holds it: this one or an earlier one */
};

/**
 * The chunk layout of a pinned format 2 version and, when @p chunks is not
 * NULL, its @p layout->nchunks chunks (call once with NULL to size the array).
 * Chunk k is at byte data_offset + (k << shift) of snap_snapshot_segment()'s
 * view, whichever file holds it.
 * @return 0, or SNAP_EFORMAT (a format 1 version has no chunks). Thread-safe.
 */
SNAP_API int snap_snapshot_chunks(const snap_snapshot *snap,
                                  struct snap_chunk_layout *layout,
                                  struct snap_chunk_info *chunks, struct snap_error *err);

/** XXH3-64 (seed 0) of @p len bytes: the hash of a chunk. Thread-safe. */
SNAP_API uint64_t snap_chunk_hash(const void *p, size_t len);

/* ------------------------------------------------------------------ replicas */

/*
 * A replica is a version made on this host from another store's version, given
 * its header and manifest (the file's bytes before data_offset) and its chunks
 * one by one, each checked against its hash: how a follower adopts what a
 * primary published (docs/multihost.md). It keeps the primary's version number
 * and data hash. Chunks equal to the current version's at the same place are
 * borrowed or copied locally and never asked for; zero chunks are holes. The
 * chunks written so far live in segments/<dataset>/.replica-<N> (named, so a
 * process killed mid-way resumes with what it had: snap_replica_begin() keeps
 * every chunk there whose hash matches).
 *
 *   snap_replica_begin(store, dataset, head, len, &r, &err);
 *   for each k with snap_replica_needs(r, k, &hash): fetch it, snap_replica_write()
 *   snap_replica_commit(r, &version, &err);
 *
 * A dataset adopted this way is marked followed: local publishes, appends,
 * edits, imports and rollbacks of it are refused with SNAP_EINVAL until
 * snap_dataset_set_followed(store, dataset, 0).
 */
typedef struct snap_replica snap_replica;

/** What snap_replica_begin() found for the chunks. */
struct snap_replica_stats {
  uint64_t chunks;   /**< all chunks of the version */
  uint64_t borrowed; /**< borrowed from local files, as the primary borrows them */
  uint64_t copied;   /**< copied from the current version (equal hash, same place) */
  uint64_t zero;     /**< all-zero chunks: holes, nothing to fetch */
  uint64_t resumed;  /**< already in the .replica file from an earlier attempt */
  uint64_t fetch;    /**< still to be written with snap_replica_write() */
};

/**
 * Begin a replica of version N of @p dataset from @p head, the @p len bytes
 * before data_offset of the primary's segment file (format 2; its header hash
 * is checked; its store id, which names the primary's store, is replaced by
 * this store's). Pins the current version (if any) until commit or free.
 * @param out receives the handle; NULL on failure.
 * @return 0;
 *         SNAP_ECORRUPT (the head fails validation, with the field named);
 *         SNAP_EFORMAT (not format 2);
 *         SNAP_ECONFLICT (N is not newer than the current version, or a local
 *         version numbered N or above exists);
 *         SNAP_EINVAL (a bad name, or @p len other than data_offset);
 *         a write-handle or control-file status; or -errno (-ENOSPC, ...).
 * Thread-safe; one replica of a dataset at a time (a second one of the same
 * version would share the .replica file).
 */
SNAP_API int snap_replica_begin(snap_store *store, const char *dataset, const void *head,
                                size_t len, snap_replica **out, struct snap_error *err);
/** @return the version being replicated. */
SNAP_API uint64_t snap_replica_version(const snap_replica *r);
/** Its chunk layout. */
SNAP_API void snap_replica_layout(const snap_replica *r, struct snap_chunk_layout *out);
/** What begin found, and (fetch) how many chunks are still missing now. */
SNAP_API void snap_replica_stats(const snap_replica *r, struct snap_replica_stats *out);
/**
 * @param hash if not NULL, receives chunk @p k's hash.
 * @return 1 when chunk @p k must still be written, 0 when it is present (or k
 *         is out of range). Thread-safe.
 */
SNAP_API int snap_replica_needs(const snap_replica *r, uint64_t k, uint64_t *hash);
/**
 * The current version's bytes at the place of chunk @p k (pinned until commit
 * or free), for a caller that rebuilds a changed chunk from them and a delta.
 * @param hash if not NULL, receives their chunk hash.
 * @return a pointer to 2^shift bytes, or NULL when the current version has no
 *         chunk there (or there is no current version).
 */
SNAP_API const void *snap_replica_base(const snap_replica *r, uint64_t k, uint64_t *hash);
/**
 * Write chunk @p k: @p len must be the chunk size and the bytes must hash to
 * the table's value. Writing a chunk already present is a no-op.
 * @return 0; SNAP_ECHECKSUM (the bytes are not the chunk: nothing written, the
 *         message names the dataset, version, chunk and both hashes);
 *         SNAP_EINVAL (k out of range, wrong length); or -errno (-ENOSPC).
 * Thread-safe for distinct chunks: several threads may write at once.
 */
SNAP_API int snap_replica_write(snap_replica *r, uint64_t k, const void *buf, size_t len,
                                struct snap_error *err);
/**
 * Write chunk @p k piece by piece as it arrives (a download straight into
 * place, no buffer of the chunk): @p len bytes at @p pos within the chunk, in
 * order from 0; @p pos 0 starts the chunk again (a retried transfer). The
 * bytes are hashed as they pass; the piece that completes the chunk checks its
 * hash: SNAP_ECHECKSUM then, and the chunk is still needed (its bytes in the
 * file are overwritten by the next try). A chunk already present ignores it.
 * @return 0; SNAP_ECHECKSUM; SNAP_EINVAL (out of range, or out of order);
 *         -ENOMEM; or -errno. Thread-safe for distinct chunks.
 */
SNAP_API int snap_replica_feed(snap_replica *r, uint64_t k, uint64_t pos,
                               const void *data, size_t len, struct snap_error *err);
/**
 * Seal the replica and make it the current version of its dataset, under the
 * primary's number (the dataset's next local number moves past it), marking
 * the dataset followed; then retention runs as after a publish. Frees @p r
 * whether or not it succeeds (on failure the .replica file stays for a retry).
 * @param version if not NULL, receives the version (0 on failure).
 * @return 0; SNAP_EINVAL (chunks still missing); SNAP_ECONFLICT (a version
 *         numbered N or above became current meanwhile); SNAP_ECORRUPT (the
 *         data fails the checks a pin makes); -EDQUOT (dataset limit); a
 *         control-file status; or -errno.
 */
SNAP_API int snap_replica_commit(snap_replica *r, uint64_t *version,
                                 struct snap_error *err);
/** Abandon @p r, keeping what was written for a later snap_replica_begin() of
 * the same version (a begin of another version removes it). NULL is a no-op. */
SNAP_API void snap_replica_free(snap_replica *r);

/**
 * Mark @p dataset followed (1: local publishes refused) or not (0: this store
 * becomes the dataset's primary; a follower would then stop adopting it).
 * @return 0; SNAP_ENOTFOUND (no such dataset); a write-handle or control-file
 *         status. Thread-safe; writers only.
 */
SNAP_API int snap_dataset_set_followed(snap_store *store, const char *dataset,
                                       int followed, struct snap_error *err);

/**
 * Drop this process's cached mappings of versions that are no longer current
 * and not pinned by the caller. Unpinning does this on its own after a flip;
 * call it from an idle process so that a retired version can be reclaimed
 * without waiting for the next pin. When it returns, this process pins only
 * what its callers pin plus the current versions. Errors are ignored (the
 * cache stays). Thread-safe; blocks for an RCU grace period.
 */
SNAP_API void snap_store_trim(snap_store *store);

/* ------------------------------------------------ versions and reclamation */

/** The state of a version. */
enum snap_state {
  SNAP_STATE_CURRENT = 1,  /**< what snap_pin() returns */
  SNAP_STATE_RETAINED = 2, /**< kept by the retention policy; pinnable by number */
  SNAP_STATE_DRAINING = 3, /**< retired; reclaimed when its last pin goes */
  /** retired and unpinned, but later versions still borrow chunks of its file:
   * not pinnable; the file keeps only those chunks (the rest are holes) and
   * goes when no kept version borrows from it any more */
  SNAP_STATE_LENDING = 4,
};
/** @return "current", "retained", "draining", "lending" or "unknown". Static;
 * thread-safe. */
SNAP_API const char *snap_state_name(enum snap_state state);

/** One version as listed by snap_version_list(). */
struct snap_version_info {
  uint64_t version;      /**< version number */
  enum snap_state state; /**< its state */
  uint32_t ncols;        /**< columns */
  uint64_t nrows;        /**< rows */
  uint64_t bytes;        /**< memory its own file holds: format 1, the file size;
                              format 2, its own chunks and manifest (a lending
                              version: the chunks it still lends) */
  uint64_t created_ns;   /**< creation time, ns since the Unix epoch */
  uint64_t data_hash[2]; /**< format 1: XXH3-128 of the data region; format 2: of
                              its chunk hashes; low then high */
  int32_t holders;       /**< processes pinning it now (from /proc/locks), -1 unknown */
  uint64_t size;         /**< its segment's file size (the layout, holes included);
                              0 when the file cannot be read */
  uint64_t shared_bytes; /**< format 2: the bytes of the chunks it maps from earlier
                              versions' files instead of holding them; 0 otherwise */
};

/** One dataset as listed by snap_dataset_list(). */
struct snap_dataset_info {
  char name[SNAP_DATASET_NAME_MAX + 1]; /**< NUL-terminated */
  uint64_t current;                     /**< current version; 0: none yet */
  uint64_t next_version;                /**< number the next publish reserves */
  uint32_t keep;                        /**< retention (snap_store_set_keep()) */
  uint32_t nversions;                   /**< versions recorded, in any state */
  uint64_t bytes;                       /**< all its segments */
  int followed; /**< 1: adopted from a primary (snap_replica_commit()); local
                     publishes are refused */
};

/**
 * List the datasets, sorted by name (bytewise).
 * @param out   receives an array; free it with snap_free(). NULL when empty or
 *              on failure.
 * @param count receives its length (0 on failure).
 * @return 0 or a control-file status. Thread-safe; any handle.
 */
SNAP_API int snap_dataset_list(snap_store *store, struct snap_dataset_info **out,
                               size_t *count, struct snap_error *err);

/**
 * List the versions of a dataset, oldest first, with how many processes pin
 * each.
 * @param out   receives an array; free it with snap_free(). NULL when empty or
 *              on failure.
 * @param count receives its length (0 on failure).
 * @return 0, SNAP_ENOTFOUND (no such dataset), or a control-file status.
 *         Thread-safe; any handle.
 */
SNAP_API int snap_version_list(snap_store *store, const char *dataset,
                               struct snap_version_info **out, size_t *count,
                               struct snap_error *err);

/**
 * @param version receives the current version number (0 on failure).
 * @return 0, SNAP_ENOTFOUND (no such dataset, or no version yet), or a
 *         control-file status. Thread-safe; any handle.
 */
SNAP_API int snap_current_version(snap_store *store, const char *dataset,
                                  uint64_t *version, struct snap_error *err);

/**
 * Make a retained version current again (the old current becomes retained).
 * Readers see it at their next pin.
 * @return 0; SNAP_ENOTFOUND (no such dataset or version); SNAP_EDRAINING (the
 *         version is retired); SNAP_EINVAL (a name that cannot exist); a
 *         write-handle status; or a control-file status. Thread-safe; writers
 *         only.
 */
SNAP_API int snap_rollback(snap_store *store, const char *dataset, uint64_t version,
                           struct snap_error *err);

/** snap_dataset_drop() flags. */
#define SNAP_DROP_FORCE 0x1u /**< drop even while versions are pinned (see below) */

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
 * @param flags 0 or SNAP_DROP_FORCE.
 * @return 0; SNAP_ENOTFOUND (no such dataset); SNAP_EBUSY (a version is
 *         pinned, or a publish of the dataset is in progress: retry after it);
 *         SNAP_EINVAL (unknown flags, or a name that cannot exist);
 *         a write-handle status; a control-file status; or -errno.
 * Writers only; thread-safe; any number of handles and processes may call it.
 */
SNAP_API int snap_dataset_drop(snap_store *store, const char *dataset, unsigned flags,
                               struct snap_error *err);

/**
 * The processes that pin a version now (flock holders, from /proc/locks).
 * @param pids  array of @p cap entries receiving up to cap pids (may be NULL
 *              when cap is 0).
 * @param count receives the total number of holders (may exceed cap).
 * @return 0; SNAP_ENOTFOUND (no segment file of that version); SNAP_EINVAL (a
 *         name that cannot exist); or -errno (reading /proc/locks, -ENOMEM).
 *         Thread-safe; any handle.
 */
SNAP_API int snap_version_holders(snap_store *store, const char *dataset,
                                  uint64_t version, pid_t *pids, size_t cap,
                                  size_t *count, struct snap_error *err);

/** One version looked at by snap_gc(). Valid during the callback only. */
struct snap_gc_item {
  const char *dataset; /**< its dataset */
  uint64_t version;    /**< its number */
  uint64_t bytes;      /**< segment file size */
  int freed;           /**< 1: reclaimed now (or would be, in a dry run); 0: still
                            draining; 2: lending (format 2): later versions borrow
                            some of its chunks, the others were freed (bytes: the
                            freed bytes), and it can no longer be pinned */
  int32_t holders;     /**< pinning processes when not freed (0 when freed) */
};

/** Totals of one snap_gc() run. */
struct snap_gc_stats {
  uint64_t freed_versions;    /**< versions reclaimed (or reclaimable, dry run) */
  uint64_t freed_bytes;       /**< their bytes */
  uint64_t draining_versions; /**< versions still pinned */
  uint64_t draining_bytes;    /**< their bytes */
  uint64_t lending_versions;  /**< versions that became lending (freed = 2) */
};

/**
 * Called by snap_gc() for each draining version, on the thread that called
 * snap_gc(), after that version was dealt with and with no libsnap lock held:
 * it may call any libsnap function (on this store too). @p item lives until it
 * returns.
 */
typedef void (*snap_gc_cb)(const struct snap_gc_item *item, void *arg);

#define SNAP_GC_DRY_RUN 0x1u /**< report, change nothing */

/**
 * Reclaim every draining version (of @p dataset, or all when NULL) that no
 * process pins: the moment flock(LOCK_EX|LOCK_NB) on its file succeeds, the
 * file is unlinked and its record dropped. A dry run changes nothing and also
 * works through a read-only handle.
 * @param flags 0 or SNAP_GC_DRY_RUN.
 * @param cb    may be NULL; see snap_gc_cb.
 * @param arg   passed to @p cb.
 * @param stats may be NULL; receives the totals (zeroed first, also on failure).
 * @return 0; SNAP_EINVAL (unknown flags, or a name that cannot exist); a
 *         write-handle status (not for a dry run); a control-file status; or
 *         -errno (open, flock, unlink). Thread-safe.
 */
SNAP_API int snap_gc(snap_store *store, const char *dataset, unsigned flags,
                     snap_gc_cb cb, void *arg, struct snap_gc_stats *stats,
                     struct snap_error *err);

/**
 * Block until the draining version @p version of @p dataset has no pins, then
 * reclaim it (for a reaper thread). Returns at once if it is not draining or
 * does not exist.
 * @return 0 (reclaimed or nothing to do); a write-handle status; a
 *         control-file status; or -errno (open, flock, unlink). Thread-safe;
 *         blocks in flock() without any libsnap lock held.
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

/** One segment file looked at by snap_store_rebuild(). Valid during the callback. */
struct snap_rebuild_item {
  const char *dataset; /**< its dataset (directory name) */
  uint64_t version;    /**< its number (file name) */
  int status;          /**< 0: recorded; else why it was set aside (SNAP_ECORRUPT, ...) */
  uint32_t state;      /**< enum snap_state given to a recorded version */
  const char *message; /**< why it was set aside, naming the file and field; else "" */
};

/**
 * Called by snap_store_rebuild() for each segment file, on the calling thread,
 * while the rebuild holds the store's writer locks: it must not call
 * snap_store_rebuild() or write to this store (those fail with SNAP_EBUSY).
 * @p item lives until it returns.
 */
typedef void (*snap_rebuild_cb)(const struct snap_rebuild_item *item, void *arg);

#define SNAP_REBUILD_DEEP 0x1u /**< also check every segment's data checksum */

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
 * @param flags 0 or SNAP_REBUILD_DEEP.
 * @param cb    may be NULL; see snap_rebuild_cb.
 * @param arg   passed to @p cb.
 * @return 0; SNAP_EINVAL (unknown flags); SNAP_EBUSY (a writer has the store,
 *         or another rebuild runs); SNAP_ECORRUPT (store ids disagree);
 *         SNAP_ENOTFOUND (no store directory); a control-file status (creating
 *         the new file); or -errno.
 * Any thread may call it; one rebuild runs at a time per store.
 */
SNAP_API int snap_store_rebuild(const char *path, unsigned flags, snap_rebuild_cb cb,
                                void *arg, struct snap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LIBSNAP_H */
