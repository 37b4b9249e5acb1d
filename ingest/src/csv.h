/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the CSV parser (ingest_csv.c and the csv_*.c files): the types and
 * functions that cross its files. Names internal across files carry the csv_
 * prefix (the strset_ ones their noun); the library's API is <snap_ingest/ingest.h>.
 *
 *   ingest_csv.c   ingest_csv(): the two passes in order, the type decision, messages
 *   csv_number.c   integers, floats and bools (the ingest_parse_* of them)
 *   csv_time.c     ISO 8601 timestamps (ingest_parse_timestamp*)
 *   csv_scan.c     the tokenizer: records and fields, UTF-8 validation
 *   csv_strset.c   the set of distinct strings (category dictionaries)
 *   csv_schema.c   the header row and the optional schema text
 *   csv_infer.c    pass 1: chunks on threads, type inference, the quick-path plan
 *   csv_fill.c     pass 2: every value parsed into the segment, ranges on threads
 *
 * The parsers that pass 2 runs for every value were static inline in one file;
 * they are static inline here so that the split costs no call. None of this is
 * thread-aware beyond what each function says: the threads of a pass each work
 * on their own struct chunk / worker and read the shared struct csv.
 */
#ifndef SNAP_INGEST_CSV_H
#define SNAP_INGEST_CSV_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

#define cerr ingest_error

/* ------------------------------------------------------- field parsers */

/* The types a column's values so far allow (pass 1 narrows them value by value;
 * each is a property of every value, so chunks merge by intersection). */
enum {
  CAND_INT = 1,      /* fits int64 */
  CAND_UINT = 2,     /* a non-negative integer that fits uint64 */
  CAND_INTLIT = 4,   /* an integer of any size */
  CAND_FLOAT = 8,    /* parses as float64 */
  CAND_BOOL = 16,    /* true / false */
  CAND_TIME_NS = 32, /* a timestamp that fits timestamp[ns] */
  CAND_TIME_US = 64, /* a timestamp that is a whole number of microseconds */
  CAND_TIME = CAND_TIME_NS | CAND_TIME_US,
  CAND_ALL = 127,
};

/* The type inference gives a column whose non-null values allow cand, or 0 for
 * a string: integers before floats, floats before bools before timestamps, the
 * finest timestamp unit that holds every value. Integers that fit neither int64
 * nor uint64 (or mix negatives with values past int64) are not floats: they
 * become a string column, exact (pandas makes them Python ints or strings). */
static inline enum snap_type cand_type(unsigned cand) {
  return cand & CAND_INT                                     ? SNAP_INT64
         : cand & CAND_UINT                                  ? SNAP_UINT64
         : (cand & (CAND_FLOAT | CAND_INTLIT)) == CAND_FLOAT ? SNAP_FLOAT64
         : cand & CAND_BOOL                                  ? SNAP_BOOL
         : cand & CAND_TIME_NS                               ? SNAP_TIMESTAMP_NS
         : cand & CAND_TIME_US                               ? SNAP_TIMESTAMP_US
                                                             : (enum snap_type)0;
}

static inline int is_timestamp(enum snap_type t) {
  return t == SNAP_TIMESTAMP_NS || (t >= SNAP_TIMESTAMP_S && t <= SNAP_TIMESTAMP_US);
}

/* Nanoseconds per unit of a timestamp type. */
static inline int64_t ts_unit_ns(enum snap_type t) {
  return t == SNAP_TIMESTAMP_S    ? 1000000000
         : t == SNAP_TIMESTAMP_MS ? 1000000
         : t == SNAP_TIMESTAMP_US ? 1000
                                  : 1;
}

static inline int blank(char c) { return c == ' ' || c == '\t'; }

static inline void trim(const char **p, size_t *n) {
  if (__builtin_expect(!*n || (!blank(**p) && !blank((*p)[*n - 1])), 1)) return;
  while (*n && blank(**p)) (*p)++, (*n)--;
  while (*n && blank((*p)[*n - 1])) (*n)--;
}

/* Case-insensitive comparison of n bytes with a lower-case ASCII word. */
static inline int word_eq(const char *p, const char *w, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)p[i] | 0x20) != (unsigned char)w[i]) return 0;
  return 1;
}

/* Whether the 8 bytes of v (little-endian) are all ASCII digits. */
static inline int eight_digits(uint64_t v) {
  return ((v & 0xf0f0f0f0f0f0f0f0ull) |
          (((v + 0x0606060606060606ull) & 0xf0f0f0f0f0f0f0f0ull) >> 4)) ==
         0x3333333333333333ull;
}

/* The value of 8 ASCII digits (first digit in the lowest byte). */
static inline uint64_t parse_eight(uint64_t v) {
  v -= 0x3030303030303030ull;
  v = v * 10 + (v >> 8);
  return ((v & 0x000000ff000000ffull) * (100 + (1000000ull << 32)) +
          ((v >> 16) & 0x000000ff000000ffull) * (1 + (10000ull << 32))) >>
         32;
}

/* 10^0 .. 10^8. */
static const uint64_t pow10_u64[9] = {1,      10,      100,      1000,     10000,
                                      100000, 1000000, 10000000, 100000000};

/* How many of the 8 bytes of v, from the first (lowest), are ASCII digits before
 * the first that is not. A byte >= 0xfa carries into the next one, which is
 * later and so does not matter. */
static inline unsigned leading_digits(uint64_t v) {
  uint64_t x = ((v & 0xf0f0f0f0f0f0f0f0ull) |
                (((v + 0x0606060606060606ull) & 0xf0f0f0f0f0f0f0f0ull) >> 4)) ^
               0x3333333333333333ull;
  return x ? (unsigned)__builtin_ctzll(x) >> 3 : 8;
}

/* The value of the first k (1..8) digits of v: moved to the top, '0's below. */
static inline uint64_t parse_leading(uint64_t v, unsigned k) {
  if (k < 8) v = v << (8 * (8 - k)) | 0x3030303030303030ull >> (8 * k);
  return parse_eight(v);
}

/* The common forms "YYYY-MM-DD" and "YYYY-MM-DD HH:MM:SS" (or with T) in years
 * 1678..2261, where nanoseconds cannot overflow: 1 and the value, or 0 when the
 * general parser must decide. The separators and digits are checked 8 bytes at a
 * time. */
static inline int timestamp_fast(const char *p, size_t n, int64_t *ns) {
  static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const uint64_t dash = 0xff0000ff00000000ull; /* bytes 4 and 7 of "YYYY-MM-" */
  uint64_t a;
  memcpy(&a, p, 8);
  if ((a & dash) != 0x2d00002d00000000ull ||
      !eight_digits((a & ~dash) | 0x3000003000000000ull))
    return 0;
  int h = 0, mi = 0, sec = 0;
  if (n == 19) {
    const uint64_t sep = 0x0000ff0000ff0000ull; /* bytes 2 and 5 of "DD HH:MM" */
    uint64_t b;
    memcpy(&b, p + 8, 8);
    unsigned t = (unsigned)(b >> 16) & 0xff;
    if (((b >> 40) & 0xff) != ':' || (t != ' ' && t != 'T') ||
        !eight_digits((b & ~sep) | 0x0000300000300000ull) || p[16] != ':' ||
        (unsigned)(p[17] - '0') > 9 || (unsigned)(p[18] - '0') > 9)
      return 0;
    h = (p[11] - '0') * 10 + (p[12] - '0');
    mi = (p[14] - '0') * 10 + (p[15] - '0');
    sec = (p[17] - '0') * 10 + (p[18] - '0');
    if (h > 23 || mi > 59 || sec > 59) return 0;
  } else if (n != 10 || (unsigned)(p[8] - '0') > 9 || (unsigned)(p[9] - '0') > 9) {
    return 0;
  }
  int y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
  int mo = (p[5] - '0') * 10 + (p[6] - '0'), d = (p[8] - '0') * 10 + (p[9] - '0');
  if (y < 1678 || y > 2261 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
    return 0;
  static const int before[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0, x = y - 1;
  int64_t days = 365 * (int64_t)(y - 1970) + (x / 4 - x / 100 + x / 400) - 477 +
                 before[mo - 1] + (mo > 2 && leap) + d - 1; /* 477: leap days to 1969 */
  *ns = (days * 86400 + h * 3600 + mi * 60 + sec) * 1000000000;
  return 1;
}

/* The time secs + nanos / 1e9 in units of unit_ns: 1 when it is a whole number
 * of units within int64 other than INT64_MIN (NaT), else 0. Never wraps. */
static inline int ts_scale(int64_t secs, int64_t nanos, int64_t unit_ns, int64_t *out) {
  int64_t v, per = 1000000000 / unit_ns, f = nanos / unit_ns;
  if (secs < 0 && f) secs++, f -= per; /* so that secs * per cannot pass INT64_MIN */
  if (nanos % unit_ns || __builtin_mul_overflow(secs, per, &v) ||
      __builtin_add_overflow(v, f, &v) || v == INT64_MIN)
    return 0;
  *out = v;
  return 1;
}

/* csv_time.c: the general ISO 8601 parser (seconds since the epoch, floor, and
 * nanoseconds past them); 1, or 0 when the text is not a timestamp. */
int csv_ts_split(const char *p, size_t n, int64_t *secs, int64_t *nanos, int *zoned);

/* Pass 1: 0 when the text is not a timestamp, else which of CAND_TIME_NS (its
 * value fits timestamp[ns]) and CAND_TIME_US (it is a whole number of
 * microseconds: any 4-digit year fits timestamp[us]) it allows. */
static inline unsigned ts_fits(const char *p, size_t n, int *zoned) {
  trim(&p, &n);
  int64_t v, secs, nanos;
  if ((n == 19 || n == 10) && timestamp_fast(p, n, &v))
    return *zoned = 0, CAND_TIME_NS | CAND_TIME_US;
  if (!csv_ts_split(p, n, &secs, &nanos, zoned)) return 0;
  return (ts_scale(secs, nanos, 1, &v) ? CAND_TIME_NS : 0) |
         (ts_scale(secs, nanos, 1000, &v) ? CAND_TIME_US : 0);
}

/* ------------------------------------------------------------ tokenizer */

struct field {
  const char *p; /* text, surrounding quotes excluded, "" not yet unescaped */
  size_t n;
  uint64_t line; /* where the field starts */
  uint32_t esc;  /* number of "" pairs inside */
  uint8_t quoted;
  uint8_t high; /* some byte >= 0x80 */
};

struct scan {
  const char *buf, *pos, *end;
  uint64_t line; /* line of pos, 1-based */
  const char *name;
  int general; /* never fast_record() (the reference of the differential tests) */
};

static const unsigned char stop_tab[256] = {[','] = 1, ['\n'] = 1, ['\r'] = 1};

/* The first ',', '\n' or '\r' at or after u, or e; 0x80 is ORed into *high when a
 * byte before it is >= 0x80. 16 bytes at a time. */
static inline const unsigned char *plain_end(const unsigned char *u,
                                             const unsigned char *e,
                                             unsigned char *high) {
#ifdef __SSE2__
  const __m128i vc = _mm_set1_epi8(','), vn = _mm_set1_epi8('\n'),
                vr = _mm_set1_epi8('\r');
  for (; e - u >= 16; u += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)u);
    unsigned m = (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v, vc),
                     _mm_or_si128(_mm_cmpeq_epi8(v, vn), _mm_cmpeq_epi8(v, vr))));
    unsigned h = (unsigned)_mm_movemask_epi8(v);
    if (m) {
      unsigned k = (unsigned)__builtin_ctz(m);
      if (h & ((1u << k) - 1)) *high |= 0x80;
      return u + k;
    }
    if (h) *high |= 0x80;
  }
#endif
  while (u < e && !stop_tab[*u]) *high |= *u++;
  return u;
}

/* ------------------------------------------------------ distinct strings */

struct sentry {
  const char *p;
  uint32_t n;
  int32_t code;
  uint64_t hash;
};

struct strset {
  struct sentry *tab;
  size_t cap, count;
  char **arena; /* copies of unescaped values */
  size_t narena;
};

/* A multiply-xorshift hash, 8 bytes at a time; the last 1 to 8 bytes are read
 * with two overlapping loads (never past p + n). */
static inline uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n, v = 0;
  for (; n > 8; p += 8, n -= 8) {
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    v = (uint64_t)a << 32 | b;
  } else if (n) {
    v = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n / 2] << 8 |
        (unsigned char)p[n - 1];
  }
  h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

/* Whether n bytes at a and b are equal; short ones with two overlapping loads. */
static inline int bytes_eq(const char *a, const char *b, size_t n) {
  if (n > 8 || n < 4) return !memcmp(a, b, n);
  uint32_t x0, x1, y0, y1;
  memcpy(&x0, a, 4), memcpy(&x1, a + n - 4, 4);
  memcpy(&y0, b, 4), memcpy(&y1, b + n - 4, 4);
  return x0 == y0 && x1 == y1;
}

static inline struct sentry *strset_find(const struct strset *s, const char *p, size_t n,
                                         uint64_t h) {
  if (!s->cap) return NULL;
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    struct sentry *e = &s->tab[i];
    if (!e->p) return e;
    if (e->hash == h && e->n == n && bytes_eq(e->p, p, n)) return e;
  }
}

/* A value of at most 8 bytes as a number (its bytes, little-endian, zero-padded),
 * read without going past p + n: with the length, a key for quick comparisons. */
static inline uint64_t short_key(const char *p, size_t n) {
  uint64_t v = 0;
  if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    v = a | (uint64_t)b << (8 * (n - 4)); /* the overlap holds the same bytes */
  } else {
    for (size_t i = 0; i < n; i++) v |= (uint64_t)(unsigned char)p[i] << (8 * i);
  }
  return v;
}

/* ------------------------------------------------------------- columns */

/* What pass 1 learns of one column over some rows. Chunks of the file are
 * scanned in parallel, each into its own stats, merged in file order; every
 * field merges in an order-independent way (sums, intersections, unions). */
struct colstat {
  unsigned cand;
  unsigned tz;    /* 1: a naive timestamp seen, 2: a zoned one */
  int overflow;   /* more distinct values than a category may have: set freed */
  uint64_t nulls; /* unquoted empty fields */
  uint64_t nonnull;
  uint64_t bytes;    /* unescaped bytes of all values */
  uint64_t unhashed; /* non-null values not in set (seen while cand was not 0) */
  struct strset set; /* distinct values, for a category */
  /* a cache of short members of set: most categories have a few short values */
  uint64_t keys[16];
  uint8_t keylen[16];
  unsigned nkeys;
};

struct col {
  char *name;
  int declared; /* type given by the schema (in field.type) */
  int nullable; /* declared nullable */
  int spec;     /* type guessed from the first rows (in field.type): see sample() */
  unsigned spec_tz;
  struct colstat st;
  struct sentry **sorted; /* CATEGORY: entries by code */
  uint64_t dkey[16];      /* CATEGORY: short entries as keys, for pass 2 */
  uint8_t dkeylen[16];
  int32_t dcode[16];
  unsigned ndkeys;
  struct snap_field field;
  struct snap_fill fill;
};

#define CSV_MAX_THREADS 8

struct csv {
  const struct ingest_options *opt;
  const char *name;
  struct col *cols;
  uint32_t ncols;
  struct field *f; /* the header's fields */
  uint64_t nrows;
  uint32_t category_max;
  int speculate;  /* guess the types of numeric-looking columns (sample()) */
  int quick;      /* no pass 1 at all (quick_plan()) */
  uint64_t total; /* progress units */
  /* Pass 2 runs in parallel on the row ranges of the chunks pass 1 scanned:
   * split i is where chunk i + 1 starts. */
  unsigned nthreads, nsplits;
  struct split {
    const char *pos; /* the record (after any blank lines before it) */
    uint64_t line, row;
    uint64_t *bytes; /* each column's string bytes before the row */
  } splits[CSV_MAX_THREADS - 1];
};

static inline int grow(char **buf, size_t *cap, size_t n) {
  if (n <= *cap) return 0;
  char *p = realloc(*buf, n);
  if (!p) return -ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

/* Speculation. Checking every value of a numeric column in pass 1 costs as much
 * as parsing it in pass 2, so the types of the columns whose first rows are all
 * numbers, bools or timestamps are guessed from those rows: pass 1 then only
 * counts their nulls, and pass 2 checks each value against the guess as it parses
 * it. A value that does not fit (CSV_SPEC_MISS) aborts that publish, and the
 * file is ingested again with every value checked in pass 1. When pass 2 goes
 * through, every value parsed as the guessed type, and inference over all values
 * would have chosen that same type: the table is the one a full inference gives.
 * A string column is never guessed, as one value that fits no other type makes
 * a column a string for good. */
#define CSV_SPEC_MISS 1

/* ------------------------------------------------- across the files */

/* csv_number.c: the float parser behind ingest_parse_float64. lim >= p + n: how far
 * bytes may be read (the digits are read 8 at a time); convert 0: syntax only. */
int csv_parse_float(const char *p, size_t n, const char *lim, double *out, int convert);
/* csv_number.c: whether [p, p + n) is an integer of any size. */
int csv_int_literal(const char *p, size_t n);

/* csv_scan.c: read one record into at most cap fields (all counted in *nf):
 * 1 (a record), 0 (end of input) or a status (err filled). */
int csv_next_record(struct scan *s, struct field *f, uint32_t cap, uint32_t *nf,
                    uint64_t *rec_line, struct snap_error *err);
/* csv_scan.c: skip blank lines at s->pos. */
void csv_skip_blank(struct scan *s);
/* csv_scan.c: copy a field's text with "" collapsed; returns bytes written. */
size_t csv_unescape(char *dst, const struct field *f);
/* csv_scan.c: 0 or the offset + 1 of the first byte that is not valid UTF-8. */
size_t csv_utf8_bad(const unsigned char *s, size_t n);

/* csv_strset.c: free the set's table and copies; the set is left empty. */
void strset_free(struct strset *s);
/* csv_strset.c: insert (p, n) if new; p must outlive the set unless copy.
 * -ENOMEM on failure. */
int strset_add(struct strset *s, const char *p, size_t n, int copy);
/* csv_strset.c: move every value of src into dst; src is left empty. */
int strset_merge(struct strset *dst, struct strset *src);

/* csv_schema.c: read the header row (the columns' names) and apply the schema
 * text of the options, if any. */
int csv_header(struct csv *c, struct scan *s, struct snap_error *err);

/* csv_infer.c: guess the types of numeric-looking columns from the first rows and
 * maybe plan the quick path (c->quick); 0, or -ENOMEM. */
int csv_sample(struct csv *c, const struct scan *s0);
/* csv_infer.c: pass 1 over the data from s0, on c->nthreads threads. */
int csv_pass1(struct csv *c, const struct scan *s0, struct snap_error *err);
/* csv_infer.c: finish the distinct values of late string columns. */
int csv_complete_sets(struct csv *c, const struct scan *s0, struct snap_error *err);

/* csv_fill.c: pass 2: fill the publish's columns (0, CSV_SPEC_MISS or a status). */
int csv_pass2(struct csv *c, const struct scan *s0, snap_publish *pub,
              struct snap_error *err);

/* ingest_csv.c: a short printable excerpt of a value for messages. */
const char *csv_excerpt(char *out, size_t cap, const char *p, size_t n);
/* ingest_csv.c: the message for a value that does not parse as column k's type. */
int csv_bad_value(struct csv *c, uint64_t line, uint32_t k, const struct field *f,
                  struct snap_error *err);
/* ingest_csv.c: run fn on n items, the first on this thread, and wait for all. */
void csv_run_all(void *(*fn)(void *), void *items, size_t size, unsigned n);

#endif /* SNAP_INGEST_CSV_H */
