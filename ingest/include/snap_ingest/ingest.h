/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Ingest: parse a .npy or CSV file straight into a libsnap publish.
 *
 * Shared by snapctl (publish) and writerd (inbox, socket), so it depends only on
 * libsnap's public API and reports failures the library's way: an int status and
 * an optional struct snap_error whose message names the file, the line, the column
 * and the value. A malformed input publishes nothing: the publish is aborted and
 * the reserved version number is skipped.
 *
 * Inputs are read through a read-only mapping. CSV is scanned twice: once to find
 * the row count, infer each column's type and size its string data, once to parse
 * every value straight into the new segment (values are written exactly once, into
 * shared memory). A .npy file is copied column by column into the segment.
 *
 * The public interface of the snap_ingest library: #include <snap_ingest/ingest.h>.
 */
#ifndef SNAP_INGEST_INGEST_H
#define SNAP_INGEST_INGEST_H

#include <libsnap/libsnap.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ingest_format {
  INGEST_AUTO = 0, /* from the file name: .npy, .seg, else .csv/.tsv/.txt; else refused */
  INGEST_NPY = 1,
  INGEST_CSV = 2,
  INGEST_SEG = 3, /* a libsnap segment file (snap_publish_import); files only */
};

/** Progress callback: @p done of @p total units (bytes of input, counted twice
 *  for CSV's two passes, so total is 2 * size). Called from the ingesting thread. */
typedef void (*ingest_progress_cb)(uint64_t done, uint64_t total, void *arg);

/** Options; a zeroed struct (or NULL) gives the defaults. */
struct ingest_options {
  enum ingest_format format;
  /** Name of the input in messages (default: the path, or "<input>"). */
  const char *display_name;
  /** CSV: a string column with at most this many distinct values, and at most
   *  half as many as it has non-null values, is stored as SNAP_CATEGORY.
   *  0 means the default (1024); set no_category to keep every string a string. */
  uint32_t category_max;
  int no_category;
  /** Called about every 8 MiB of input; may be NULL. */
  ingest_progress_cb progress;
  void *progress_arg;
  /** Polled as often as progress: when *cancel becomes nonzero the publish is
   *  aborted and the call returns -ECANCELED. May be NULL. */
  const volatile int *cancel;
  /** CSV: threads for both passes. The first splits the data at newlines into a
   *  chunk per thread and infers the types of each chunk in parallel (a chunk that
   *  starts inside a quoted field is detected and scanned again in one piece);
   *  the second parses the same row ranges into the segment. The table, and every
   *  message, is the same for any number. 0: 2 when the machine has 2 or more CPUs
   *  and the input is 4 MiB or more, else 1; N: up to N (at most 8) at any size. */
  unsigned threads;
  /** CSV: the text of a schema (schema_len bytes; need not be NUL-terminated),
   *  or NULL to infer every type. One "COLUMN TYPE [nullable]" line per column of
   *  the header, in any order; TYPE is int64, uint64, float64, bool, timestamp
   *  (= timestamp[ns]), timestamp[s|ms|us|ns], string or category; blank lines and lines
   * starting with '#' are ignored. A value that does not parse as its column's type, or
   * an empty value in a column not declared nullable, is an error naming the file, line,
   * column and value. */
  const char *schema;
  size_t schema_len;
  const char *schema_name; /* the schema's name in messages (default "<schema>") */
  /** CSV, for tests: check every value in the first pass, guessing no type from
   *  the first rows and never skipping the first pass, and split every record
   *  with the general scanner, not the 16-byte one (the result is the same). */
  int csv_full_check;
  /** CSV, for tests and fuzzing: how many first rows the types are guessed from
   *  (0: 4096), so that small inputs take the guessing paths too. */
  unsigned csv_sample_rows;
  /** Read the input file into memory instead of mapping it. ingest_fd() does so
   *  anyway when it cannot take a read lease on the file (see there). */
  int read_input;
  /** .npy only: append the file's rows to the dataset's current version
   *  (snap_publish_append(): the old rows are shared, the version costs the new
   *  rows). The file must have as many columns as the dataset, of its type; the
   *  dataset's columns must all be non-nullable and fixed-width. */
  int append;
  /** Internal: ingest_fd() sets it to the input's descriptor + 1 while it holds
   *  a read lease on it (0: none); ingest_interrupted() checks the lease. */
  int lease_fd;
};

/** What was published. */
struct ingest_result {
  uint64_t version;
  uint64_t nrows;
  uint32_t ncols;
  uint64_t input_bytes;
  /** CSV: 1 when the types were planned from the first rows and a scan for
   *  newlines, and the first pass skipped (ingest_csv.c, "quick path"). */
  int quick;
};

/** The format a file name implies, or INGEST_AUTO when it implies none. */
enum ingest_format ingest_format_from_name(const char *name);

/**
 * Publish the file at @p path as a new version of @p dataset in @p store.
 * Blocking; thread-safe as long as each call has its own options.
 * @return 0 (res filled), SNAP_EINVAL (malformed input: the message says where),
 *         -ECANCELED, or any snap_publish_begin/commit status.
 */
int ingest_file(snap_store *store, const char *dataset, const char *path,
                const struct ingest_options *opt, struct ingest_result *res,
                struct snap_error *err);

/** As ingest_file() for an open descriptor (read from offset 0; not closed). */
int ingest_fd(snap_store *store, const char *dataset, int fd,
              const struct ingest_options *opt, struct ingest_result *res,
              struct snap_error *err);

/** As ingest_file() for bytes in memory; opt->format must not be INGEST_AUTO
 *  unless display_name has an extension that names the format. */
int ingest_buffer(snap_store *store, const char *dataset, const void *buf, size_t len,
                  const struct ingest_options *opt, struct ingest_result *res,
                  struct snap_error *err);

/* Format-specific entry points (used by ingest_buffer; exposed for tests). */
int ingest_csv(snap_store *store, const char *dataset, const char *buf, size_t len,
               const struct ingest_options *opt, struct ingest_result *res,
               struct snap_error *err);
int ingest_npy(snap_store *store, const char *dataset, const void *buf, size_t len,
               const struct ingest_options *opt, struct ingest_result *res,
               struct snap_error *err);

/* Parsers of one CSV field, shared with export's round-trip tests. Each returns 1
 * and stores the value when the whole text [p, p + n) is one, else 0. Leading and
 * trailing blanks are allowed. */
int ingest_parse_int64(const char *p, size_t n, int64_t *out);
/** A non-negative integer up to 2^64 - 1 ("-0" is 0). */
int ingest_parse_uint64(const char *p, size_t n, uint64_t *out);
int ingest_parse_float64(const char *p, size_t n, double *out);
int ingest_parse_bool(const char *p, size_t n, uint8_t *out);
/** ISO 8601 date or date-time: YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|(+|-)HH[:]MM].
 *  *has_offset tells whether a zone designator was given (the value is then UTC). */
int ingest_parse_timestamp(const char *p, size_t n, int64_t *ns, int *has_offset);
/** As ingest_parse_timestamp() in units of @p unit_ns nanoseconds (1, 1000,
 *  1000000 or 1000000000): 1 and the value when it is a whole number of units
 *  that fits int64 (INT64_MIN, NaT, excluded); -1 when the text is a timestamp
 *  that does not (out of the unit's range, or finer than the unit); 0 when it
 *  is not a timestamp. Nothing is ever rounded or wrapped. */
int ingest_parse_timestamp_unit(const char *p, size_t n, int64_t unit_ns, int64_t *out,
                                int *has_offset);

#ifdef __cplusplus
}
#endif
#endif /* SNAP_INGEST_INGEST_H */
