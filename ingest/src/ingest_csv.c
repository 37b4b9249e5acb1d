/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CSV ingest (RFC 4180 plus the usual liberties) with type inference.
 *
 * Design: passes over the mapped file, no copy of the text.
 *  1. Scan: split records (quoted fields may hold commas, "" and newlines), check
 *     that every record has as many fields as the header, validate UTF-8, and narrow
 *     each column's candidate types (int64 > float64, bool, timestamp) value by
 *     value; whatever fits none is a string. The pass also counts string bytes and
 *     collects each string column's distinct values while there are few (they
 *     become a SNAP_CATEGORY). It runs on a chunk of the file per thread.
 *  2. Fill: with the schema known, begin the publish and parse every field
 *     straight into the segment's buffers (a range of rows per thread), then commit.
 * Two shortcuts keep the result the same (see sample() and quick_plan()): the types
 * of numeric-looking columns are guessed from the first rows and checked only in
 * pass 2; and when the guess covers every column and a fast scan shows plain
 * records only, pass 1 is skipped. A guess that fails sends the file down the
 * full path. Any error aborts: nothing is published. An unquoted empty field is
 * a null (validity bit 0; NaN as well in float columns; code -1 in categories);
 * a quoted empty field is an empty string.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"

/* ------------------------------------------------------------ messages */

#define cerr ingest_error

/* A short printable excerpt of a value for messages. */
static const char *excerpt(char *out, size_t cap, const char *p, size_t n) {
  size_t i = 0, j = 0;
  for (; i < n && j + 4 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    out[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (i < n) memcpy(out + j, "...", 3), j += 3;
  out[j] = 0;
  return out;
}

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

int ingest_parse_int64(const char *p, size_t n, int64_t *out) {
  if (n - 1 < 18) { /* the common case: 1 to 18 digits, which cannot overflow */
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
      unsigned d = (unsigned char)p[i] - '0';
      if (d > 9) break;
      v = v * 10 + d;
    }
    if (i == n) return *out = (int64_t)v, 1;
  }
  trim(&p, &n);
  if (!n) return 0;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p == '-', p++, n--;
  if (!n || n > 19) {
    if (n <= 19) return 0;
    /* more than 19 digits can only fit with leading zeros */
    while (n > 19 && *p == '0') p++, n--;
    if (n > 19) return 0;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned d = (unsigned char)p[i] - '0';
    if (d > 9) return 0;
    v = v * 10 + d; /* 19 digits fit in uint64 */
  }
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1) return 0;
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX) return 0;
    *out = (int64_t)v;
  }
  return 1;
}

int ingest_parse_uint64(const char *p, size_t n, uint64_t *out) {
  trim(&p, &n);
  if (!n) return 0;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p == '-', p++, n--;
  if (!n) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned d = (unsigned char)p[i] - '0';
    if (d > 9 || __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v))
      return 0;
  }
  if (neg && v) return 0;
  *out = v;
  return 1;
}

/* Whether [p, p + n) is an integer of any size: blanks, an optional sign, digits. */
static int int_literal(const char *p, size_t n) {
  trim(&p, &n);
  if (n && (*p == '+' || *p == '-')) p++, n--;
  if (!n) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned)(p[i] - '0') > 9) return 0;
  return 1;
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#ifdef __SIZEOF_INT128__
/* 5^0 .. 5^27: all fit in 64 bits. */
static const uint64_t pow5[28] = {1ull,
                                  5ull,
                                  25ull,
                                  125ull,
                                  625ull,
                                  3125ull,
                                  15625ull,
                                  78125ull,
                                  390625ull,
                                  1953125ull,
                                  9765625ull,
                                  48828125ull,
                                  244140625ull,
                                  1220703125ull,
                                  6103515625ull,
                                  30517578125ull,
                                  152587890625ull,
                                  762939453125ull,
                                  3814697265625ull,
                                  19073486328125ull,
                                  95367431640625ull,
                                  476837158203125ull,
                                  2384185791015625ull,
                                  11920928955078125ull,
                                  59604644775390625ull,
                                  298023223876953125ull,
                                  1490116119384765625ull,
                                  7450580596923828125ull};

/* recip5[k] = floor(2^(128 + log2_pow5[k]) / 5^k), in [2^127, 2^128), as {high, low}
 * 64 bits; log2_pow5[k] = floor(log2(5^k)). */
static const uint64_t recip5[28][2] = {
    {0x0000000000000000ull, 0x0000000000000000ull},
    {0xccccccccccccccccull, 0xccccccccccccccccull},
    {0xa3d70a3d70a3d70aull, 0x3d70a3d70a3d70a3ull},
    {0x83126e978d4fdf3bull, 0x645a1cac083126e9ull},
    {0xd1b71758e219652bull, 0xd3c36113404ea4a8ull},
    {0xa7c5ac471b478423ull, 0x0fcf80dc33721d53ull},
    {0x8637bd05af6c69b5ull, 0xa63f9a49c2c1b10full},
    {0xd6bf94d5e57a42bcull, 0x3d32907604691b4cull},
    {0xabcc77118461cefcull, 0xfdc20d2b36ba7c3dull},
    {0x89705f4136b4a597ull, 0x31680a88f8953030ull},
    {0xdbe6fecebdedd5beull, 0xb573440e5a884d1bull},
    {0xafebff0bcb24aafeull, 0xf78f69a51539d748ull},
    {0x8cbccc096f5088cbull, 0xf93f87b7442e45d3ull},
    {0xe12e13424bb40e13ull, 0x2865a5f206b06fb9ull},
    {0xb424dc35095cd80full, 0x538484c19ef38c94ull},
    {0x901d7cf73ab0acd9ull, 0x0f9d37014bf60a10ull},
    {0xe69594bec44de15bull, 0x4c2ebe687989a9b3ull},
    {0xb877aa3236a4b449ull, 0x09befeb9fad487c2ull},
    {0x9392ee8e921d5d07ull, 0x3aff322e62439fcfull},
    {0xec1e4a7db69561a5ull, 0x2b31e9e3d06c32e5ull},
    {0xbce5086492111aeaull, 0x88f4bb1ca6bcf584ull},
    {0x971da05074da7beeull, 0xd3f6fc16ebca5e03ull},
    {0xf1c90080baf72cb1ull, 0x5324c68b12dd6338ull},
    {0xc16d9a0095928a27ull, 0x75b7053c0f178293ull},
    {0x9abe14cd44753b52ull, 0xc4926a9672793542ull},
    {0xf79687aed3eec551ull, 0x3a83ddbd83f52204ull},
    {0xc612062576589ddaull, 0x95364afe032a819dull},
    {0x9e74d1b791e07e48ull, 0x775ea264cf55347dull},
};
static const uint8_t log2_pow5[28] = {0,  2,  4,  6,  9,  11, 13, 16, 18, 20,
                                      23, 25, 27, 30, 32, 34, 37, 39, 41, 44,
                                      46, 48, 51, 53, 55, 58, 60, 62};

/* mant * 10^-k for 1 <= k <= 27 without a division: P = mant * recip5[k] is
 * exact (192 bits) and the true product X = mant * 2^(128 + log2_pow5[k]) / 5^k
 * lies in [P, P + mant), mant < 2^64. Working on L = P >> 64, X / 2^64 lies in
 * [L, L + 2): when every value there rounds to the same 53 bits, and none is a
 * tie, that rounding is the correct one and 1 is returned; otherwise 0 (about
 * one call in 2^9 at worst, with one-digit mantissas) and exact_scale decides. */
static int recip_scale(uint64_t mant, int k, double *out) {
  unsigned __int128 lo = (unsigned __int128)mant * recip5[k][1];
  unsigned __int128 L = (unsigned __int128)mant * recip5[k][0] + (uint64_t)(lo >> 64);
  uint64_t top = (uint64_t)(L >> 64); /* L >= 2^63: P >= 2^127 */
  int bits = top ? 128 - __builtin_clzll(top) : 64 - __builtin_clzll((uint64_t)L);
  int sh = bits - 53; /* dropped bits: >= 11, as L >= 2^63 */
  unsigned __int128 one = 1, full = one << sh, half = one << (sh - 1);
  unsigned __int128 dropped = L & (full - 1);
  uint64_t m = (uint64_t)(L >> sh);
  if (dropped + 2 <= half) {
    /* down */
  } else if (dropped > half && dropped + 2 <= full) {
    m++;
  } else {
    return 0;
  }
  int e2 = sh + 64 - k - 128 - log2_pow5[k];
  if (m == 1ull << 53) m >>= 1, e2++;
  uint64_t b = (uint64_t)(e2 + 52 + 1023) << 52 | (m & ((1ull << 52) - 1));
  memcpy(out, &b, sizeof b);
  return 1;
}

/* mant * 10^e10 correctly rounded (to nearest, ties to even), for mant >= 1 and
 * |e10| <= 27, in exact integer arithmetic: the product or a quotient with at
 * least 64 significant bits plus a sticky bit for the remainder. The result is
 * always a normal double (1e-27 <= value < 1.9e46). */
static double exact_scale(uint64_t mant, int e10) {
  unsigned __int128 x;
  int e2, sticky = 0;
  if (e10 >= 0) {
    x = (unsigned __int128)mant * pow5[e10]; /* exact: < 2^128 */
    e2 = e10;
  } else {
    int lz = __builtin_clzll(mant);
    unsigned __int128 num = (unsigned __int128)(mant << lz) << 64; /* >= 2^127 */
    x = num / pow5[-e10];                                          /* >= 2^64 */
    sticky = num % pow5[-e10] != 0;
    e2 = e10 - 64 - lz;
  }
  uint64_t hi = (uint64_t)(x >> 64);
  int bits = hi ? 128 - __builtin_clzll(hi) : 64 - __builtin_clzll((uint64_t)x);
  if (bits <= 53) return ldexp((double)(uint64_t)x, e2); /* exact */
  int sh = bits - 54;                                    /* keep 54 bits */
  if (sh) sticky |= (x & (((unsigned __int128)1 << sh) - 1)) != 0;
  uint64_t m = (uint64_t)(x >> sh);
  e2 += sh + 1;
  int round = (int)(m & 1);
  m >>= 1; /* 53 bits: [2^52, 2^53) */
  if (round && (sticky || (m & 1))) m++;
  if (m == 1ull << 53) m >>= 1, e2++;
  uint64_t b = (uint64_t)(e2 + 52 + 1023) << 52 | (m & ((1ull << 52) - 1));
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}
#endif

/* Syntax check plus Clinger's fast path (exact when the mantissa fits 53 bits and
 * the power of ten is exact), then exact integer scaling for up to 19 digits and
 * powers of ten up to 27; anything else goes to strtod on a copy. */
/* Append the decimal digits at *s to *mant, 8 at a time while they last, counting
 * them in *nd; -1 when they would make more than 19 digits in all. */
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

/* Append the decimal digits at *s (up to e) to *mant, counting them in *nd; 8
 * bytes at a time while at least 8 can be read (up to lim >= e); -1 when they
 * would make more than 19 digits in all. */
static inline int fast_digits(const char **s, const char *e, const char *lim,
                              uint64_t *mant, int *nd) {
  while (*nd <= 11 && lim - *s >= 8) {
    uint64_t v;
    memcpy(&v, *s, 8);
    unsigned k = leading_digits(v);
    if (k > (size_t)(e - *s)) k = (unsigned)(e - *s);
    if (k) *mant = *mant * pow10_u64[k] + parse_leading(v, k), *s += k, *nd += (int)k;
    if (k < 8) return 0;
  }
  for (; *s < e && (unsigned)(**s - '0') < 10; (*s)++, (*nd)++) {
    if (*nd == 19) return -1;
    *mant = *mant * 10 + (unsigned)(**s - '0');
  }
  return 0;
}

/* lim >= p + n: how far bytes may be read (the digits are read 8 at a time). */
static int parse_float(const char *p, size_t n, const char *lim, double *out,
                       int convert) {
  trim(&p, &n);
  if (!n) return 0;
  const char *s = p, *e = p + n;
  int neg = 0;
  if (*s == '+' || *s == '-') neg = *s++ == '-';
  if (s == e) return 0;
  if ((*s | 0x20) == 'n' || (*s | 0x20) == 'i') {
    size_t k = (size_t)(e - s);
    if (k == 3 && word_eq(s, "nan", 3))
      *out = neg ? -NAN : NAN;
    else if ((k == 3 && word_eq(s, "inf", 3)) || (k == 8 && word_eq(s, "infinity", 8)))
      *out = neg ? -INFINITY : INFINITY;
    else
      return 0;
    return 1;
  }
  uint64_t mant = 0;
  int ndig = 0, digits = 0, truncated = 0;
  long exp10 = 0;
  /* Fast path: at most 19 digits in all (leading zeros included), 8 at a time. */
  const char *s0 = s;
  int nd = 0, nint;
  if (fast_digits(&s, e, lim, &mant, &nd)) goto slow;
  nint = nd;
  if (s < e && *s == '.') {
    s++;
    if (fast_digits(&s, e, lim, &mant, &nd)) goto slow;
  }
  exp10 = nint - nd;
  digits = nd > 0;
  goto exponent;
slow: /* more digits: keep the first 19 significant ones */
  s = s0;
  mant = 0;
  for (int frac = 0; frac < 2; frac++) { /* the integer part, then the fraction */
    if (frac) {
      if (s >= e || *s != '.') break;
      s++;
    }
    while (s < e && (unsigned)(*s - '0') < 10) {
      unsigned d = (unsigned)(*s++ - '0');
      digits = 1;
      if (ndig < 19) {
        mant = mant * 10 + d;
        if (mant) ndig++;
        exp10 -= frac; /* a kept fraction digit scales down */
      } else {
        exp10 += !frac; /* a dropped integer digit scales up */
        truncated |= d != 0;
      }
    }
  }
exponent:
  if (!digits) return 0;
  if (s < e && (*s == 'e' || *s == 'E')) {
    s++;
    int eneg = 0;
    if (s < e && (*s == '+' || *s == '-')) eneg = *s++ == '-';
    if (s == e) return 0;
    long x = 0;
    while (s < e && (unsigned)(*s - '0') < 10) {
      if (x < 100000) x = x * 10 + (*s - '0');
      s++;
    }
    /* a saturated exponent is not the true one: strtod sees the whole text */
    if (x >= 100000) truncated = 1;
    exp10 += eneg ? -x : x;
  }
  if (s != e) return 0;
  if (!convert) return 1; /* syntax only (pass 1) */
  if (!truncated && mant <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
    double d = (double)mant;
    d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
    *out = neg ? -d : d;
    return 1;
  }
#ifdef __SIZEOF_INT128__
  if (!truncated && mant && exp10 >= -27 && exp10 <= 27) {
    double d;
    if (exp10 >= 0 || !recip_scale(mant, (int)-exp10, &d))
      d = exact_scale(mant, (int)exp10);
    *out = neg ? -d : d;
    return 1;
  }
#endif
  char small[128], *copy = n < sizeof small ? small : malloc(n + 1);
  if (!copy) return 0;
  memcpy(copy, p, n);
  copy[n] = 0;
  char *end;
  *out = strtod(copy, &end);
  int ok = end == copy + n;
  if (copy != small) free(copy);
  return ok;
}

int ingest_parse_float64(const char *p, size_t n, double *out) {
  return parse_float(p, n, p + n, out, 1);
}

int ingest_parse_bool(const char *p, size_t n, uint8_t *out) {
  trim(&p, &n);
  uint32_t w;
  if (n < 4 || n > 5) return 0;
  memcpy(&w, p, 4); /* any case: OR 0x20 into each byte, as word_eq does */
  w |= 0x20202020u;
  if (n == 4 && !memcmp(&w, "true", 4)) return *out = 1, 1;
  if (n == 5 && !memcmp(&w, "fals", 4) && (p[4] | 0x20) == 'e') return *out = 0, 1;
  return 0;
}

static int digits_at(const char *p, int k, int *v) {
  int x = 0;
  for (int i = 0; i < k; i++) {
    unsigned d = (unsigned)(p[i] - '0');
    if (d > 9) return 0;
    x = x * 10 + (int)d;
  }
  *v = x;
  return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
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

/* The general ISO 8601 parser: 1 with the seconds since the epoch (floor) and
 * the nanoseconds past them (0 .. 999999999), else 0. Years are 4 digits, so
 * *secs cannot overflow; scaling to a unit is the caller's (ts_scale). */
static int ts_split(const char *p, size_t n, int64_t *secs, int64_t *nanos, int *zoned) {
  int y, mo, d, h = 0, mi = 0, sec = 0;
  int64_t frac = 0;
  if (n < 10 || p[4] != '-' || p[7] != '-' || !digits_at(p, 4, &y) ||
      !digits_at(p + 5, 2, &mo) || !digits_at(p + 8, 2, &d))
    return 0;
  static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
    return 0;
  size_t i = 10;
  if (i < n && (p[i] == 'T' || p[i] == ' ')) {
    if (n < i + 6 || p[i + 3] != ':' || !digits_at(p + i + 1, 2, &h) ||
        !digits_at(p + i + 4, 2, &mi) || h > 23 || mi > 59)
      return 0;
    i += 6;
    if (i < n && p[i] == ':') {
      if (n < i + 3 || !digits_at(p + i + 1, 2, &sec) || sec > 59) return 0;
      i += 3;
      if (i < n && (p[i] == '.' || p[i] == ',')) {
        i++;
        int k = 0, lost = 0;
        while (i < n && (unsigned)(p[i] - '0') < 10) {
          if (k < 9)
            frac = frac * 10 + (p[i] - '0'), k++;
          else
            lost |= p[i] != '0';
          i++;
        }
        if (!k || lost) return 0; /* finer than 1 ns: not rounded, refused */
        while (k < 9) frac *= 10, k++;
      }
    }
  }
  int off = 0;
  *zoned = 0;
  if (i < n && p[i] == 'Z') {
    *zoned = 1;
    i++;
  } else if (i < n && (p[i] == '+' || p[i] == '-') && i > 10) {
    int sign = p[i] == '-' ? -1 : 1, oh, om;
    i++;
    if (n < i + 2 || !digits_at(p + i, 2, &oh)) return 0;
    i += 2;
    if (i < n && p[i] == ':') i++;
    if (n < i + 2 || !digits_at(p + i, 2, &om) || oh > 23 || om > 59) return 0;
    i += 2;
    off = sign * (oh * 3600 + om * 60);
    *zoned = 1;
  }
  if (i != n) return 0;
  *secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
          sec - off;
  *nanos = frac;
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

int ingest_parse_timestamp_unit(const char *p, size_t n, int64_t unit_ns, int64_t *out,
                                int *has_offset) {
  trim(&p, &n);
  if (unit_ns == 1 && (n == 19 || n == 10) && timestamp_fast(p, n, out))
    return *has_offset = 0, 1;
  int64_t secs, nanos;
  int zoned;
  if (!ts_split(p, n, &secs, &nanos, &zoned)) return 0;
  if (!ts_scale(secs, nanos, unit_ns, out)) return -1;
  *has_offset = zoned;
  return 1;
}

int ingest_parse_timestamp(const char *p, size_t n, int64_t *ns, int *has_offset) {
  return ingest_parse_timestamp_unit(p, n, 1, ns, has_offset) == 1;
}

/* Pass 1: 0 when the text is not a timestamp, else which of CAND_TIME_NS (its
 * value fits timestamp[ns]) and CAND_TIME_US (it is a whole number of
 * microseconds: any 4-digit year fits timestamp[us]) it allows. */
static inline unsigned ts_fits(const char *p, size_t n, int *zoned) {
  trim(&p, &n);
  int64_t v, secs, nanos;
  if ((n == 19 || n == 10) && timestamp_fast(p, n, &v))
    return *zoned = 0, CAND_TIME_NS | CAND_TIME_US;
  if (!ts_split(p, n, &secs, &nanos, zoned)) return 0;
  return (ts_scale(secs, nanos, 1, &v) ? CAND_TIME_NS : 0) |
         (ts_scale(secs, nanos, 1000, &v) ? CAND_TIME_US : 0);
}

/* 0 or the offset + 1 of the first bad byte. */
static size_t utf8_bad(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
      k = 1, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
      k = 2, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
      k = 3, min = 0x10000;
    else
      return i + 1;
    if (n - i <= k) return i + 1;
    unsigned cp = c & (0x3f >> k);
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return i + 1;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i + 1;
    i += k + 1;
  }
  return 0;
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

/* Set bits of a 16-bit mask (the builtin is a libgcc call without -mpopcnt). */
static inline unsigned popcount16(unsigned x) {
  x = x - ((x >> 1) & 0x5555);
  x = (x & 0x3333) + ((x >> 2) & 0x3333);
  x = (x + (x >> 4)) & 0x0f0f;
  return (x + (x >> 8)) & 0x1f;
}

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

/* Over [u, end): the bytes' high bits ORed into *acc, newlines added to *lines. */
static inline void span_scan(const unsigned char *u, const unsigned char *end,
                             unsigned char *acc, uint64_t *lines) {
#ifdef __SSE2__
  const __m128i vn = _mm_set1_epi8('\n');
  for (; end - u >= 16; u += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)u);
    if (_mm_movemask_epi8(v)) *acc |= 0x80;
    *lines += popcount16((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vn)));
  }
#endif
  for (; u < end; u++) {
    *acc |= *u;
    *lines += *u == '\n';
  }
}

#ifdef __SSE2__
/* One field [fs, c) of a record fast_record() split: 1 with *out filled when it is
 * unquoted and holds no quote, or quoted ("...", inner quotes doubled, nothing
 * after the closing one); 0 when the general scanner must decide (a stray quote,
 * which it keeps as a character or refuses with the line and column). @p lastq:
 * the last quote before c (NULL: none). */
static inline int fast_field(const unsigned char *fs, const unsigned char *c,
                             const unsigned char *lastq, uint64_t line,
                             struct field *out) {
  if (!lastq || lastq < fs) {
    *out = (struct field){.p = (const char *)fs, .n = (size_t)(c - fs), .line = line};
    return 1;
  }
  if (*fs != '"' || c - fs < 2 || c[-1] != '"') return 0;
  uint32_t esc = 0;
  for (const unsigned char *u = fs + 1, *end = c - 1; u < end;) {
    const unsigned char *x = memchr(u, '"', (size_t)(end - u));
    if (!x) break;
    if (x + 1 >= end || x[1] != '"') return 0; /* a quote that is not doubled */
    esc++;
    u = x + 2;
  }
  *out = (struct field){.p = (const char *)fs + 1,
                        .n = (size_t)(c - fs - 2),
                        .line = line,
                        .esc = esc,
                        .quoted = 1};
  return 1;
}

/* The common case of next_record, 16 bytes at a time: a record of one line with
 * no byte >= 0x80, whose fields are plain or quoted without a newline inside,
 * that ends (\n or \r) inside the buffer's last whole 16-byte block. Returns 1
 * with the record read as next_record would, or 0 (nothing consumed; fields may
 * have been written to f) when the general scanner must take it. */
static int fast_record(struct scan *s, struct field *f, uint32_t cap, uint32_t *nf) {
  const unsigned char *blk = (const unsigned char *)s->pos;
  const unsigned char *e = (const unsigned char *)s->end, *fs = blk;
  const __m128i vc = _mm_set1_epi8(','), vn = _mm_set1_epi8('\n'),
                vr = _mm_set1_epi8('\r'), vq = _mm_set1_epi8('"');
  uint32_t k = 0;
  unsigned inq = 0;               /* inside quotes at the block's start */
  const unsigned char *lq = NULL; /* the last quote in earlier blocks */
  struct field spare, *dst;
  for (; (size_t)(e - blk) >= 16; blk += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)blk);
    unsigned eol = (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(v, vn), _mm_cmpeq_epi8(v, vr)));
    unsigned q = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq));
    unsigned high = (unsigned)_mm_movemask_epi8(v);
    unsigned comma = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vc));
    /* in: bit i set when an odd number of quotes of the record precede byte i
     * (a prefix XOR of the quote mask); delimiters there are quoted text */
    unsigned in = 0;
    if (q | inq) {
      in = q;
      in ^= in << 1, in ^= in << 2, in ^= in << 4, in ^= in << 8;
      in = (in ^ (inq ? 0xffffu : 0)) & 0xffffu;
    }
    unsigned eolo = eol & ~in;
    unsigned lim = eolo ? (eolo & (0u - eolo)) - 1 : 0xffffu; /* bytes of this record */
    if ((high | (eol & in)) & lim) return 0; /* UTF-8 to check, or a quoted newline */
    for (comma &= ~in & lim; comma; comma &= comma - 1) {
      unsigned i = (unsigned)__builtin_ctz(comma), before = q & ((1u << i) - 1);
      const unsigned char *c = blk + i,
                          *last = before ? blk + 31 - __builtin_clz(before) : lq;
      dst = k < cap ? &f[k] : &spare;
      if (!fast_field(fs, c, last, s->line, dst)) return 0;
      k++;
      fs = c + 1;
    }
    if (eolo) {
      unsigned i = (unsigned)__builtin_ctz(eolo), before = q & ((1u << i) - 1);
      const unsigned char *t = blk + i,
                          *last = before ? blk + 31 - __builtin_clz(before) : lq;
      dst = k < cap ? &f[k] : &spare;
      if (!fast_field(fs, t, last, s->line, dst)) return 0;
      k++;
      if (*t == '\r' && t + 1 < e && t[1] == '\n') t++;
      s->pos = (const char *)t + 1;
      s->line++;
      *nf = k;
      return 1;
    }
    inq = in >> 15;
    if (q) lq = blk + 31 - __builtin_clz(q);
  }
  return 0;
}
#endif

/* Read one record. Stores at most cap fields, counts all in *nf.
 * @return 1 (a record), 0 (end of input) or a status (err filled). */
static int next_record(struct scan *s, struct field *f, uint32_t cap, uint32_t *nf,
                       uint64_t *rec_line, struct snap_error *err) {
  /* skip blank lines */
  while (s->pos < s->end && (*s->pos == '\n' || *s->pos == '\r')) {
    if (*s->pos == '\r' && s->pos + 1 < s->end && s->pos[1] == '\n') s->pos++;
    s->pos++;
    s->line++;
  }
  if (s->pos >= s->end) return 0;
  *rec_line = s->line;
#ifdef __SSE2__
  if (!s->general && fast_record(s, f, cap, nf)) return 1;
#endif
  uint32_t k = 0;
  for (;;) {
    struct field cur = {.line = s->line};
    const unsigned char *u = (const unsigned char *)s->pos;
    const unsigned char *e = (const unsigned char *)s->end;
    if (u < e && *u == '"') {
      uint64_t open_line = s->line;
      const unsigned char *q = ++u;
      unsigned char acc = 0;
      for (;;) {
        const unsigned char *qq = memchr(u, '"', (size_t)(e - u));
        if (!qq)
          return cerr(err, SNAP_EINVAL,
                      "%s: line %llu, column %u: quoted field never closed", s->name,
                      (unsigned long long)open_line, k + 1);
        span_scan(u, qq, &acc, &s->line);
        if (qq + 1 < e && qq[1] == '"') {
          cur.esc++;
          u = qq + 2;
          continue;
        }
        cur.p = (const char *)q;
        cur.n = (size_t)(qq - q);
        u = qq + 1;
        break;
      }
      cur.quoted = 1;
      cur.high = acc >= 0x80;
      if (u < e && !stop_tab[*u])
        return cerr(err, SNAP_EINVAL,
                    "%s: line %llu, column %u: unexpected character after closing quote",
                    s->name, (unsigned long long)s->line, k + 1);
    } else {
      const unsigned char *start = u;
      unsigned char acc = 0;
      u = plain_end(u, e, &acc);
      cur.p = (const char *)start;
      cur.n = (size_t)(u - start);
      cur.high = acc >= 0x80;
    }
    if (k < cap) f[k] = cur;
    k++;
    if (u >= e) {
      s->pos = (const char *)u;
      break;
    }
    if (*u == ',') {
      s->pos = (const char *)u + 1;
      if (u + 1 >= e) { /* trailing comma at end of input: one more empty field */
        if (k < cap) f[k] = (struct field){.p = (const char *)e};
        k++;
        break;
      }
      continue;
    }
    if (*u == '\r' && u + 1 < e && u[1] == '\n') u++;
    s->pos = (const char *)u + 1;
    s->line++;
    break;
  }
  *nf = k;
  return 1;
}

/* Copy a field's text with "" collapsed; returns bytes written (n - esc). */
static size_t unescape(char *dst, const struct field *f) {
  if (!f->n) return 0; /* dst may be NULL: an all-empty string column has no data */
  if (!f->esc) {
    memcpy(dst, f->p, f->n);
    return f->n;
  }
  size_t j = 0;
  for (size_t i = 0; i < f->n; i++) {
    dst[j++] = f->p[i];
    if (f->p[i] == '"') i++; /* skip the second quote of a pair */
  }
  return j;
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

static void strset_free(struct strset *s) {
  free(s->tab);
  for (size_t i = 0; i < s->narena; i++) free(s->arena[i]);
  free(s->arena);
  memset(s, 0, sizeof *s);
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

/* Insert (p, n) with hash h, known to be absent. */
static int strset_insert(struct strset *s, const char *p, size_t n, uint64_t h,
                         int copy) {
  if ((s->count + 1) * 2 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    struct sentry *t = calloc(cap, sizeof *t);
    if (!t) return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
      struct sentry *e = &s->tab[i];
      if (!e->p) continue;
      size_t j = e->hash & (cap - 1);
      while (t[j].p) j = (j + 1) & (cap - 1);
      t[j] = *e;
    }
    free(s->tab);
    s->tab = t;
    s->cap = cap;
  }
  struct sentry *e = strset_find(s, p, n, h);
  if (copy) {
    char **a = realloc(s->arena, (s->narena + 1) * sizeof *a);
    if (!a) return -ENOMEM;
    s->arena = a;
    char *c = malloc(n ? n : 1);
    if (!c) return -ENOMEM;
    memcpy(c, p, n);
    s->arena[s->narena++] = c;
    p = c;
  }
  *e = (struct sentry){.p = n ? p : "", .n = (uint32_t)n, .code = -1, .hash = h};
  s->count++;
  return 0;
}

/* Insert (p, n) if new; p must outlive the set unless copy. -ENOMEM on failure. */
static inline int strset_add(struct strset *s, const char *p, size_t n, int copy) {
  uint64_t h = hash_bytes(p, n);
  struct sentry *e = strset_find(s, p, n, h);
  if (e && e->p) return 0;
  return strset_insert(s, p, n, h, copy);
}

/* Move every value of src into dst (src's copies too); src is left empty. */
static int strset_merge(struct strset *dst, struct strset *src) {
  if (src->narena) {
    char **a = realloc(dst->arena, (dst->narena + src->narena) * sizeof *a);
    if (!a) return -ENOMEM;
    dst->arena = a;
    memcpy(a + dst->narena, src->arena, src->narena * sizeof *a);
    dst->narena += src->narena;
    src->narena = 0;
  }
  for (size_t i = 0; i < src->cap; i++)
    if (src->tab[i].p) {
      int rc = strset_add(dst, src->tab[i].p, src->tab[i].n, 0);
      if (rc) return rc;
    }
  strset_free(src);
  return 0;
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

static int entry_cmp(const void *a, const void *b) {
  const struct sentry *x = *(struct sentry *const *)a, *y = *(struct sentry *const *)b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->p, y->p, n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

#define CSV_MAX_THREADS 8

/* Run fn on each of n (<= CSV_MAX_THREADS) items of size bytes: the first on this
 * thread, the others on threads of their own (on this one too when no thread can
 * be had), and wait for all. */
static void run_all(void *(*fn)(void *), void *items, size_t size, unsigned n) {
  pthread_t tid[CSV_MAX_THREADS];
  unsigned started = 1;
  for (; started < n; started++)
    if (pthread_create(&tid[started], NULL, fn, (char *)items + started * size)) break;
  fn(items);
  for (unsigned i = started; i < n; i++) fn((char *)items + i * size);
  for (unsigned i = 1; i < started; i++) pthread_join(tid[i], NULL);
}

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

static void csv_free(struct csv *c) {
  for (uint32_t i = 0; i < c->ncols; i++) {
    free(c->cols[i].name);
    strset_free(&c->cols[i].st.set);
    free(c->cols[i].sorted);
  }
  free(c->cols);
  free(c->f);
  for (unsigned i = 0; i < c->nsplits; i++) free(c->splits[i].bytes);
}

static int grow(char **buf, size_t *cap, size_t n) {
  if (n <= *cap) return 0;
  char *p = realloc(*buf, n);
  if (!p) return -ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

/* ------------------------------------------------------------- schema */

static const struct {
  const char *name;
  enum snap_type type;
} schema_types[] = {{"int64", SNAP_INT64},
                    {"uint64", SNAP_UINT64},
                    {"float64", SNAP_FLOAT64},
                    {"bool", SNAP_BOOL},
                    {"timestamp", SNAP_TIMESTAMP_NS},
                    {"timestamp[ns]", SNAP_TIMESTAMP_NS},
                    {"timestamp[us]", SNAP_TIMESTAMP_US},
                    {"timestamp[ms]", SNAP_TIMESTAMP_MS},
                    {"timestamp[s]", SNAP_TIMESTAMP_S},
                    {"string", SNAP_STRING},
                    {"category", SNAP_CATEGORY}};

/* The last blank-separated word of [p, *n): its start; *n becomes the length of
 * what precedes it, blanks trimmed. */
static const char *last_word(const char *p, size_t *n, size_t *wn) {
  size_t e = *n;
  while (e && blank(p[e - 1])) e--;
  size_t b = e;
  while (b && !blank(p[b - 1])) b--;
  *wn = e - b;
  size_t r = b;
  while (r && blank(p[r - 1])) r--;
  *n = r;
  return p + b;
}

/* Declare each column's type from the schema text: one "NAME TYPE [nullable]"
 * line per column of the header (any order); blank lines and lines starting with
 * '#' are ignored. NAME may contain blanks; TYPE is one of schema_types. */
static int apply_schema(struct csv *c, struct snap_error *err) {
  const char *sn = c->opt->schema_name ? c->opt->schema_name : "<schema>";
  const char *p = c->opt->schema, *end = p + c->opt->schema_len;
  unsigned line = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *l = p;
    p = nl ? nl + 1 : end;
    line++;
    if (n && l[n - 1] == '\r') n--;
    trim(&l, &n);
    if (!n || *l == '#') continue;
    size_t wn;
    const char *w = last_word(l, &n, &wn);
    int nullable = 0;
    if (wn == 8 && !memcmp(w, "nullable", 8)) {
      nullable = 1;
      w = last_word(l, &n, &wn);
    }
    if (!n || !wn)
      return cerr(err, SNAP_EINVAL, "%s: line %u: expected \"COLUMN TYPE [nullable]\"",
                  sn, line);
    int t = -1;
    for (size_t i = 0; i < sizeof schema_types / sizeof *schema_types; i++)
      if (strlen(schema_types[i].name) == wn && !memcmp(schema_types[i].name, w, wn))
        t = (int)i;
    char ex[48];
    if (t < 0)
      return cerr(err, SNAP_EINVAL,
                  "%s: line %u: unknown type \"%s\" (int64, uint64, float64, bool, "
                  "timestamp[s|ms|us|ns], string, category)",
                  sn, line, excerpt(ex, sizeof ex, w, wn));
    uint32_t k = 0;
    while (k < c->ncols &&
           !(strlen(c->cols[k].name) == n && !memcmp(c->cols[k].name, l, n)))
      k++;
    if (k == c->ncols)
      return cerr(err, SNAP_EINVAL, "%s: line %u: no column \"%s\" in the header of %s",
                  sn, line, excerpt(ex, sizeof ex, l, n), c->name);
    struct col *col = &c->cols[k];
    if (col->declared)
      return cerr(err, SNAP_EINVAL, "%s: line %u: column \"%s\" is declared twice", sn,
                  line, col->name);
    col->declared = 1;
    col->nullable = nullable;
    col->field.type = schema_types[t].type;
    col->st.cand = 0;
  }
  for (uint32_t k = 0; k < c->ncols; k++)
    if (!c->cols[k].declared)
      return cerr(err, SNAP_EINVAL, "%s: column %u (%s) of %s is not in the schema", sn,
                  k + 1, c->cols[k].name, c->name);
  return 0;
}

static int bad_value(struct csv *c, uint64_t line, uint32_t k, const struct field *f,
                     struct snap_error *err);

/* Pass 1 of a range of records (a chunk): the stats of every column over the
 * range, on a thread of its own. Chunk 0 works on the columns' own stats with
 * true line numbers; any other chunk on fresh stats with lines counted from 1. */
struct chunk {
  struct csv *c;
  struct scan s;
  const char *start; /* where the chunk begins: after a newline and blank lines */
  const char *stop;  /* the next chunk's start; NULL: the end of input */
  struct colstat *st;
  struct field *f;
  char *scratch;
  size_t scratch_cap;
  uint64_t rows;
  uint64_t limit; /* stop after this many rows (0: no limit) */
  int first;      /* reports progress */
  int rc;
  struct snap_error err;
};

/* Add a value's unescaped text to a set of distinct values. */
static int hash_value(struct chunk *ch, struct colstat *st, const struct field *f) {
  int rc;
  if (!f->esc && f->n <= 8) { /* known short values skip the hash table */
    uint64_t key = short_key(f->p, f->n);
    for (unsigned i = 0; i < st->nkeys; i++)
      if (st->keys[i] == key && st->keylen[i] == f->n) return 0;
    rc = strset_add(&st->set, f->p, f->n, 0);
    if (!rc && st->nkeys < 16)
      st->keys[st->nkeys] = key, st->keylen[st->nkeys++] = (uint8_t)f->n;
    return rc;
  }
  if (!f->esc) return strset_add(&st->set, f->p, f->n, 0);
  if ((rc = grow(&ch->scratch, &ch->scratch_cap, f->n))) return rc;
  size_t n = unescape(ch->scratch, f);
  return strset_add(&st->set, ch->scratch, n, 1);
}

/* Pass 1 for one value (not null) of a column whose type the schema gives. */
static int check_declared(struct chunk *ch, struct colstat *st, const struct field *f,
                          uint32_t k, struct snap_error *err) {
  struct csv *c = ch->c;
  struct col *col = &c->cols[k];
  int64_t i64;
  uint64_t u64;
  double d;
  uint8_t b;
  int zoned, rc;
  switch (col->field.type) {
    case SNAP_INT64:
      if (!ingest_parse_int64(f->p, f->n, &i64)) return bad_value(c, 0, k, f, err);
      break;
    case SNAP_UINT64:
      if (!ingest_parse_uint64(f->p, f->n, &u64)) return bad_value(c, 0, k, f, err);
      break;
    case SNAP_FLOAT64:
      if (!parse_float(f->p, f->n, f->p + f->n, &d, 0)) return bad_value(c, 0, k, f, err);
      break;
    case SNAP_BOOL:
      if (!ingest_parse_bool(f->p, f->n, &b)) return bad_value(c, 0, k, f, err);
      break;
    case SNAP_TIMESTAMP_NS:
    case SNAP_TIMESTAMP_US:
    case SNAP_TIMESTAMP_MS:
    case SNAP_TIMESTAMP_S:
      if (ingest_parse_timestamp_unit(f->p, f->n, ts_unit_ns(col->field.type), &i64,
                                      &zoned) != 1)
        return bad_value(c, 0, k, f, err);
      st->tz |= zoned ? 2 : 1;
      if (st->tz == 3)
        return cerr(err, SNAP_EINVAL,
                    "%s: line %llu, column %u (%s): timestamps with and without a zone "
                    "mixed",
                    c->name, (unsigned long long)f->line, k + 1, col->name);
      break;
    case SNAP_CATEGORY:
      if ((rc = hash_value(ch, st, f)))
        return cerr(err, rc, "%s: out of memory", c->name);
      if (st->set.count > INT32_MAX)
        return cerr(err, SNAP_EINVAL, "%s: column %u (%s): too many categories", c->name,
                    k + 1, col->name);
      break;
    default:
      break;
  }
  return 0;
}

static int header(struct csv *c, struct scan *s, struct snap_error *err) {
  const char *start = s->pos;
  uint32_t nf = 0;
  uint64_t line;
  int rc = next_record(s, NULL, 0, &nf, &line, err);
  if (rc < 0) return rc;
  if (rc == 0) return cerr(err, SNAP_EINVAL, "%s: empty file: no header row", c->name);
  c->ncols = nf;
  c->cols = calloc(nf, sizeof *c->cols);
  c->f = calloc(nf, sizeof *c->f);
  if (!c->cols || !c->f) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
  s->pos = start;
  s->line = 1;
  rc = next_record(s, c->f, nf, &nf, &line, err);
  if (rc < 0) return rc;
  for (uint32_t i = 0; i < nf; i++) {
    const struct field *f = &c->f[i];
    size_t bad = f->high ? utf8_bad((const unsigned char *)f->p, f->n) : 0;
    if (bad)
      return cerr(err, SNAP_EINVAL,
                  "%s: line %llu, column %u: header name is not valid UTF-8 (byte %zu)",
                  c->name, (unsigned long long)line, i + 1, bad);
    if (f->n - f->esc > SNAP_COLUMN_NAME_MAX)
      return cerr(err, SNAP_EINVAL, "%s: line %llu, column %u: header name too long",
                  c->name, (unsigned long long)line, i + 1);
    char *name = malloc(f->n + 32);
    if (!name) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
    size_t n = unescape(name, f);
    if (n == 0) n = (size_t)sprintf(name, "Unnamed: %u", i);
    name[n] = 0;
    if (memchr(name, 0, n)) {
      free(name); /* found by fuzz_csv: leaked on this error */
      return cerr(err, SNAP_EINVAL, "%s: line %llu, column %u: NUL byte in header name",
                  c->name, (unsigned long long)line, i + 1);
    }
    c->cols[i].name = name;
    c->cols[i].st.cand = CAND_ALL;
  }
  return c->opt->schema ? apply_schema(c, err) : 0;
}

/* Pass 1 for one value of column k (not null). */
static int infer(struct chunk *ch, struct colstat *st, const struct field *f, uint32_t k,
                 struct snap_error *err) {
  struct csv *c = ch->c;
  struct col *col = &c->cols[k];
  if (f->high) {
    size_t bad = utf8_bad((const unsigned char *)f->p, f->n);
    if (bad)
      return cerr(err, SNAP_EINVAL,
                  "%s: line %llu, column %u (%s): invalid UTF-8 at byte %zu of the value "
                  "(0x%02x)",
                  c->name, (unsigned long long)f->line, k + 1, col->name, bad,
                  (unsigned char)f->p[bad - 1]);
  }
  st->nonnull++;
  st->bytes += f->n - f->esc;
  if (col->declared) return check_declared(ch, st, f, k, err);
  if (st->cand) {
    unsigned cand = st->cand;
    int64_t i64;
    uint64_t u64;
    double d;
    uint8_t b;
    if ((cand & CAND_INT) && ingest_parse_int64(f->p, f->n, &i64)) {
      cand &= CAND_INT | CAND_INTLIT | CAND_FLOAT | (i64 >= 0 ? CAND_UINT : 0);
    } else if ((cand & CAND_INTLIT) && int_literal(f->p, f->n)) {
      /* past int64: uint64 while no value is negative, never float64 */
      cand &= CAND_INTLIT | CAND_FLOAT |
              (ingest_parse_uint64(f->p, f->n, &u64) ? CAND_UINT : 0);
    } else {
      cand &= ~(unsigned)(CAND_INT | CAND_UINT | CAND_INTLIT);
      if ((cand & CAND_FLOAT) && !parse_float(f->p, f->n, f->p + f->n, &d, 0))
        cand &= ~(unsigned)CAND_FLOAT;
      if ((cand & CAND_BOOL) && !ingest_parse_bool(f->p, f->n, &b))
        cand &= ~(unsigned)CAND_BOOL;
      if (cand & CAND_TIME) {
        int zoned = 0;
        unsigned fits = ts_fits(f->p, f->n, &zoned);
        cand &= ~(unsigned)CAND_TIME | fits;
        if (fits) {
          st->tz |= zoned ? 2 : 1;
          if (st->tz == 3) cand &= ~(unsigned)CAND_TIME; /* naive and zoned mixed */
        }
      }
    }
    st->cand = cand;
    if (cand) { /* maybe not a string: its distinct values are not collected */
      st->unhashed++;
      return 0;
    }
  }
  if (!st->overflow && !c->opt->no_category) {
    int rc = hash_value(ch, st, f);
    if (rc) return cerr(err, rc, "%s: out of memory", c->name);
    if (st->set.count > c->category_max) {
      st->overflow = 1;
      strset_free(&st->set);
      st->nkeys = 0;
    }
  }
  return 0;
}

/* Skip blank lines at s->pos. */
static void skip_blank(struct scan *s) {
  while (s->pos < s->end && (*s->pos == '\n' || *s->pos == '\r')) {
    if (*s->pos == '\r' && s->pos + 1 < s->end && s->pos[1] == '\n') s->pos++;
    s->pos++;
    s->line++;
  }
}

/* Pass 1 over the records of a chunk: from s.pos to the first record boundary at
 * or after stop (or the end of input). */
static int pass1_range(struct chunk *ch) {
  struct csv *c = ch->c;
  struct scan *s = &ch->s;
  struct snap_error *err = &ch->err;
  const char *origin = s->pos;
  uint32_t nf;
  uint64_t line;
  int rc = 0;
  for (;;) {
    skip_blank(s);
    if (ch->stop && s->pos >= ch->stop) break;
    if ((rc = next_record(s, ch->f, c->ncols, &nf, &line, err)) != 1) break;
    if (nf != c->ncols)
      return cerr(err, SNAP_EINVAL,
                  "%s: line %llu: %u field%s, expected %u (as in the header)", c->name,
                  (unsigned long long)line, nf, nf == 1 ? "" : "s", c->ncols);
    for (uint32_t k = 0; k < nf; k++) {
      const struct field *f = &ch->f[k];
      if (!f->n && !f->quoted) {
        if (c->cols[k].declared && !c->cols[k].nullable)
          return cerr(err, SNAP_EINVAL,
                      "%s: line %llu, column %u (%s): empty value (null) in a column the "
                      "schema does not declare nullable",
                      c->name, (unsigned long long)f->line, k + 1, c->cols[k].name);
        ch->st[k].nulls++;
        continue;
      }
      if (c->cols[k].spec) continue; /* checked by pass 2 */
      if ((rc = infer(ch, &ch->st[k], f, k, err))) return rc;
    }
    if (++ch->rows == ch->limit) break;
    if ((ch->rows & 0xffff) == 0) {
      if (c->opt->progress && ch->first) { /* progress of the whole pass */
        uint64_t done = (uint64_t)(s->pos - origin) * c->nthreads;
        c->opt->progress(done < c->total / 2 ? done : c->total / 2, c->total,
                         c->opt->progress_arg);
      }
      if ((rc = ingest_interrupted(c->opt, c->name, err))) return rc;
    }
  }
  return rc < 0 ? rc : 0;
}

static void *pass1_thread(void *arg) {
  struct chunk *ch = arg;
  ch->rc = pass1_range(ch);
  return NULL;
}

static int chunk_init(struct csv *c, struct chunk *ch, const struct scan *s0,
                      const char *start, uint64_t line, const char *stop) {
  *ch = (struct chunk){.c = c, .s = *s0, .start = start, .stop = stop};
  ch->s.pos = start;
  ch->s.line = line;
  ch->st = calloc(c->ncols, sizeof *ch->st);
  ch->f = calloc(c->ncols, sizeof *ch->f);
  if (!ch->st || !ch->f) return -ENOMEM;
  for (uint32_t k = 0; k < c->ncols; k++) {
    ch->st[k].cand = c->cols[k].st.cand;
    ch->st[k].tz = c->cols[k].st.tz;
  }
  return 0;
}

static void chunk_free(struct csv *c, struct chunk *ch) {
  if (ch->st)
    for (uint32_t k = 0; k < c->ncols; k++) strset_free(&ch->st[k].set);
  free(ch->st);
  free(ch->f);
  free(ch->scratch);
  memset(ch, 0, sizeof *ch);
}

/* Whether merging the chunk would mix naive and zoned timestamps in a column the
 * schema declares: an error the chunk could not see alone. */
static int chunk_conflicts(const struct csv *c, const struct chunk *ch) {
  for (uint32_t k = 0; k < c->ncols; k++)
    if (c->cols[k].declared && (c->cols[k].st.tz | ch->st[k].tz) == 3) return 1;
  return 0;
}

/* Fold a chunk's stats into the columns'. */
static int chunk_merge(struct csv *c, struct chunk *ch) {
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    struct colstat *d = &col->st, *s = &ch->st[k];
    d->cand &= s->cand;
    d->tz |= s->tz;
    if (!col->declared && d->tz == 3) d->cand &= ~(unsigned)CAND_TIME;
    d->nulls += s->nulls;
    d->nonnull += s->nonnull;
    d->bytes += s->bytes;
    d->unhashed += s->unhashed;
    if (d->overflow || s->overflow) {
      d->overflow = 1;
      strset_free(&d->set);
      strset_free(&s->set);
      continue;
    }
    int rc = strset_merge(&d->set, &s->set);
    if (rc) return rc;
    if (!col->declared && d->set.count > c->category_max) {
      d->overflow = 1;
      strset_free(&d->set);
    }
  }
  c->nrows += ch->rows;
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
#define CSV_SAMPLE_ROWS 4096

#ifdef __SSE2__
/* The quick path's scan of [a, b) (a[-1] must be readable): counts newlines and
 * tells whether the range has anything that makes a record other than one plain
 * line of non-empty fields: a quote, a blank line, an empty field, a carriage
 * return not followed by a newline. */
struct prescan {
  const unsigned char *a, *b;
  uint64_t newlines;
  int plain;
};

static void prescan_range(struct prescan *ps) {
  const unsigned char *p = ps->a, *e = ps->b;
  const __m128i vq = _mm_set1_epi8('"'), vc = _mm_set1_epi8(','),
                vn = _mm_set1_epi8('\n'), vr = _mm_set1_epi8('\r'),
                zero = _mm_setzero_si128();
  __m128i bad = zero;
  uint64_t nl = 0;
  /* each byte against the byte before it (p[-1] is readable: the header or the
   * newline before a chunk); newlines counted in bytes, 255 blocks at a time */
  while (e - p >= 16 && !_mm_movemask_epi8(bad)) {
    __m128i cnt = zero;
    for (int i = 0; i < 255 && e - p >= 16; i++, p += 16) {
      __m128i v = _mm_loadu_si128((const __m128i *)p),
              u = _mm_loadu_si128((const __m128i *)(p - 1));
      __m128i n = _mm_cmpeq_epi8(v, vn), un = _mm_cmpeq_epi8(u, vn);
      __m128i delim =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vc), n), _mm_cmpeq_epi8(v, vr));
      __m128i after = _mm_or_si128(_mm_cmpeq_epi8(u, vc), un); /* a field begins here */
      bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, vq));
      bad = _mm_or_si128(bad, _mm_and_si128(delim, after));
      bad = _mm_or_si128(bad, _mm_andnot_si128(n, _mm_cmpeq_epi8(u, vr)));
      cnt = _mm_sub_epi8(cnt, n);
    }
    __m128i s = _mm_sad_epu8(cnt, zero);
    nl += (uint64_t)_mm_cvtsi128_si32(s) + (uint64_t)_mm_extract_epi16(s, 4);
  }
  int plain = !_mm_movemask_epi8(bad);
  for (; p < e && plain; p++) {
    unsigned char x = *p, u = p[-1];
    int delim = x == ',' || x == '\n' || x == '\r';
    plain = x != '"' && !(delim && (u == ',' || u == '\n')) && !(u == '\r' && x != '\n');
    nl += x == '\n';
  }
  ps->newlines = nl;
  ps->plain = plain;
}

static void *prescan_thread(void *arg) {
  prescan_range(arg);
  return NULL;
}

/* The quick path. When the first rows show only numeric, bool and timestamp
 * columns and categories with a few values (taken as the whole dictionary), and
 * a scan of the file (prescan_range, on every thread) finds every record to be
 * one line of non-empty unquoted fields, the number of rows is the number of
 * newlines and nothing is left for pass 1 to learn: pass 2 runs at once and
 * checks every value against the plan; a value that does not fit sends the
 * file down the full path (CSV_SPEC_MISS). Returns 1 when planned. */
static int quick_plan(struct csv *c, const struct scan *s0, struct chunk *sm) {
  if (c->opt->schema || c->opt->csv_full_check) return 0;
  for (uint32_t k = 0; k < c->ncols; k++) {
    const struct colstat *st = &sm->st[k];
    if (st->nulls || !st->nonnull) return 0;
    if (st->cand && !c->cols[k].spec) return 0; /* no guess (integers past uint64) */
    if (!st->cand && (c->opt->no_category || st->overflow || st->unhashed ||
                      st->set.count > 64 || st->set.count * 16 > st->nonnull))
      return 0;
  }
  const unsigned char *d = (const unsigned char *)s0->pos,
                      *end = (const unsigned char *)s0->end;
  if (end - d < 1 || end[-1] == ',' || end[-1] == '\r') return 0;
  struct prescan ps[CSV_MAX_THREADS];
  const unsigned char *start[CSV_MAX_THREADS + 1] = {d};
  unsigned n = 1;
  for (unsigned i = 1; i < c->nthreads; i++) {
    const unsigned char *t = d + (size_t)(end - d) * i / c->nthreads;
    if (t <= start[n - 1]) continue;
    const unsigned char *nl = memchr(t, '\n', (size_t)(end - t));
    if (!nl || nl + 1 >= end) break;
    start[n++] = nl + 1;
  }
  start[n] = end;
  for (unsigned i = 0; i < n; i++)
    ps[i] = (struct prescan){.a = start[i], .b = start[i + 1]};
  run_all(prescan_thread, ps, sizeof *ps, n);
  for (unsigned i = 0; i < n; i++)
    if (!ps[i].plain) return 0;
  uint64_t rows = 0;
  for (unsigned i = 0; i < n; i++) {
    if (i) {
      struct split *sp = &c->splits[c->nsplits];
      if (!(sp->bytes = calloc(c->ncols, sizeof *sp->bytes))) return -ENOMEM;
      sp->pos = (const char *)start[i];
      sp->row = rows;
      sp->line = s0->line + rows;
      c->nsplits++;
    }
    rows += ps[i].newlines;
  }
  c->nrows = rows + (end[-1] != '\n'); /* the last record may lack its newline */
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    struct colstat *st = &sm->st[k];
    if (st->cand) continue; /* numeric: sample() made its guess */
    col->spec = 1;
    col->field.type = SNAP_CATEGORY;
    col->st.nonnull = c->nrows;
    col->st.cand = 0;
    if (strset_merge(&col->st.set, &st->set)) return -ENOMEM;
  }
  c->quick = 1;
  return 1;
}
#endif

static int sample(struct csv *c, const struct scan *s0) {
  struct chunk ch;
  int rc = 0;
  if (chunk_init(c, &ch, s0, s0->pos, s0->line, NULL)) goto out;
  ch.limit = c->opt->csv_sample_rows ? c->opt->csv_sample_rows : CSV_SAMPLE_ROWS;
  if (pass1_range(&ch) || ch.rows < ch.limit) goto out; /* small: no gain */
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    const struct colstat *st = &ch.st[k];
    if (col->declared || !st->nonnull || !cand_type(st->cand)) continue;
    col->spec = 1;
    col->spec_tz = st->tz;
    col->field.type = cand_type(st->cand);
  }
#ifdef __SSE2__
  rc = quick_plan(c, s0, &ch) < 0 ? -ENOMEM : 0;
#endif
out:
  chunk_free(c, &ch);
  return rc; /* only -ENOMEM, half-way through a plan: the ingest must fail */
}

/* Pass 1: split the data at newlines into one chunk per thread and scan the chunks
 * in parallel, then merge them in file order. A chunk's results count only when the
 * chunk before it ended exactly where it starts (a newline inside a quoted field
 * makes a false start: then the chunk before it runs on to the end alone). A chunk
 * that failed is scanned again from its start with true line numbers, so that the
 * message is the one a single pass gives. Records where each merged chunk starts
 * as the ranges of pass 2. */
static int pass1(struct csv *c, const struct scan *s0, struct snap_error *err) {
  const char *start[CSV_MAX_THREADS] = {s0->pos}, *end = s0->end;
  unsigned n = 1;
  size_t span = (size_t)(end - s0->pos);
  for (unsigned i = 1; i < c->nthreads; i++) {
    const char *t = s0->pos + span * i / c->nthreads;
    if (t <= start[n - 1]) continue;
    const char *nl = memchr(t, '\n', (size_t)(end - t));
    if (!nl) break;
    const char *p = nl + 1;
    while (p < end && (*p == '\n' || *p == '\r')) p++;
    if (p >= end) break;
    start[n++] = p;
  }
  struct chunk ch[CSV_MAX_THREADS], cont;
  memset(ch, 0, sizeof ch);
  memset(&cont, 0, sizeof cont);
  int rc = 0;
  for (unsigned i = 0; i < n && !rc; i++)
    rc = chunk_init(c, &ch[i], s0, start[i], i ? 1 : s0->line,
                    i + 1 < n ? start[i + 1] : NULL);
  if (rc) {
    rc = cerr(err, -ENOMEM, "%s: out of memory", c->name);
    goto out;
  }
  ch[0].first = 1;
  run_all(pass1_thread, ch, sizeof *ch, n);

  const char *resume = NULL;
  uint64_t line = s0->line; /* of the current chunk's start */
  for (unsigned i = 0; i < n; i++) {
    if (i && ch[i - 1].s.pos != ch[i].start) { /* false start */
      resume = ch[i - 1].s.pos;
      break;
    }
    if (ch[i].rc || chunk_conflicts(c, &ch[i])) {
      if (!i) {
        rc = ch[i].rc;
        if (err) *err = ch[i].err;
        goto out;
      }
      resume = ch[i].start;
      break;
    }
    if (i) {
      struct split *sp = &c->splits[c->nsplits];
      sp->bytes = malloc(c->ncols * sizeof *sp->bytes);
      if (!sp->bytes) {
        rc = cerr(err, -ENOMEM, "%s: out of memory", c->name);
        goto out;
      }
      for (uint32_t k = 0; k < c->ncols; k++) sp->bytes[k] = c->cols[k].st.bytes;
      sp->pos = ch[i].start;
      sp->line = line;
      sp->row = c->nrows;
      c->nsplits++;
    }
    if ((rc = chunk_merge(c, &ch[i]))) {
      rc = cerr(err, rc, "%s: out of memory", c->name);
      goto out;
    }
    line = i ? line + ch[i].s.line - 1 : ch[i].s.line;
  }
  if (resume) { /* the rest in one piece, on this thread */
    if (chunk_init(c, &cont, s0, resume, line, NULL)) {
      rc = cerr(err, -ENOMEM, "%s: out of memory", c->name);
      goto out;
    }
    cont.first = 1;
    if ((rc = pass1_range(&cont))) {
      if (err) *err = cont.err;
      goto out;
    }
    if ((rc = chunk_merge(c, &cont))) rc = cerr(err, rc, "%s: out of memory", c->name);
  }
out:
  for (unsigned i = 0; i < n; i++) chunk_free(c, &ch[i]);
  chunk_free(c, &cont);
  return rc;
}

/* The distinct values of string columns that were not strings from their first
 * value: pass 1 collected them only from there on, so scan their values again
 * (stopping at the first column that has too many to be a category). */
static int complete_sets(struct csv *c, const struct scan *s0, struct snap_error *err) {
  uint32_t need = 0;
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct colstat *st = &c->cols[k].st;
    if (!c->cols[k].declared && !cand_type(st->cand) && !st->overflow && st->unhashed &&
        !c->opt->no_category)
      need++;
    else
      st->unhashed = 0;
  }
  if (!need) return 0;
  struct chunk ch;
  int rc = chunk_init(c, &ch, s0, s0->pos, s0->line, NULL);
  uint32_t nf;
  uint64_t line;
  while (!rc && need && (rc = next_record(&ch.s, ch.f, c->ncols, &nf, &line, err)) == 1) {
    rc = 0;
    for (uint32_t k = 0; k < c->ncols && !rc; k++) {
      struct colstat *st = &c->cols[k].st;
      const struct field *f = &ch.f[k];
      if (!st->unhashed || st->overflow || (!f->n && !f->quoted)) continue;
      rc = hash_value(&ch, st, f);
      if (!rc && st->set.count > c->category_max) {
        st->overflow = 1;
        strset_free(&st->set);
        st->nkeys = 0;
        need--;
      }
    }
  }
  if (rc < 0 && rc != -ENOMEM) goto out; /* err filled by next_record */
  if (rc) {
    rc = cerr(err, rc, "%s: out of memory", c->name);
    goto out;
  }
  for (uint32_t k = 0; k < c->ncols; k++) c->cols[k].st.unhashed = 0;
out:
  chunk_free(c, &ch);
  return rc;
}

/* Decide each column's type and fill in the schema fields. */
static int decide(struct csv *c, struct snap_error *err) {
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    struct colstat *st = &col->st;
    struct snap_field *fl = &col->field;
    fl->name = col->name;
    fl->flags = st->nulls ? SNAP_NULLABLE : 0;
    if (col->declared) {
      fl->flags = col->nullable ? SNAP_NULLABLE : 0;
      if (is_timestamp(fl->type)) fl->timezone = st->tz == 2 ? "UTC" : NULL;
    }
    if (col->spec && fl->type != SNAP_CATEGORY) {
      if (is_timestamp(fl->type)) fl->timezone = col->spec_tz == 2 ? "UTC" : NULL;
    } else if (col->declared && fl->type != SNAP_CATEGORY && fl->type != SNAP_STRING) {
      /* as declared */
    } else if (col->declared && fl->type == SNAP_STRING) {
      fl->data_bytes = st->bytes;
      strset_free(&st->set);
    } else if (!col->declared && !st->nonnull) {
      fl->type = SNAP_FLOAT64; /* nothing but nulls */
    } else if (!col->declared && cand_type(st->cand)) {
      fl->type = cand_type(st->cand);
      if (is_timestamp(fl->type)) fl->timezone = st->tz == 2 ? "UTC" : NULL;
    } else if (col->declared || (!c->opt->no_category && !st->overflow && !st->unhashed &&
                                 st->set.count * 2 <= st->nonnull)) {
      fl->type = SNAP_CATEGORY;
      fl->flags = 0; /* missing values are code -1 */
      size_t n = st->set.count;
      col->sorted = malloc((n ? n : 1) * sizeof *col->sorted);
      if (!col->sorted) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
      size_t j = 0;
      uint64_t bytes = 0;
      for (size_t i = 0; i < st->set.cap; i++)
        if (st->set.tab[i].p)
          col->sorted[j++] = &st->set.tab[i], bytes += st->set.tab[i].n;
      qsort(col->sorted, n, sizeof *col->sorted, entry_cmp);
      for (size_t i = 0; i < n; i++) {
        struct sentry *e = col->sorted[i];
        e->code = (int32_t)i;
        if (e->n <= 8 && col->ndkeys < 16) {
          col->dkey[col->ndkeys] = short_key(e->p, e->n);
          col->dkeylen[col->ndkeys] = (uint8_t)e->n;
          col->dcode[col->ndkeys++] = (int32_t)i;
        }
      }
      fl->dict_size = n;
      fl->data_bytes = bytes;
      fl->code_type = n < 128 ? SNAP_INT8 : n < 32768 ? SNAP_INT16 : SNAP_INT32;
    } else {
      fl->type = SNAP_STRING;
      fl->data_bytes = st->bytes;
      strset_free(&st->set);
    }
  }
  return 0;
}

/* Mark row r valid. Ranges of pass 2 need not start on a multiple of 8 rows, so
 * the bitmap bytes at either end of a range are shared with the neighbours: those
 * are set atomically, the ones inside with a plain store. */
static inline void set_valid(uint8_t *bits, uint64_t r, uint64_t lo, uint64_t hi) {
  uint8_t bit = (uint8_t)(1u << (r & 7));
  if (__builtin_expect(r >= lo && r < hi, 1))
    bits[r >> 3] |= bit;
  else
    __atomic_fetch_or(&bits[r >> 3], bit, __ATOMIC_RELAXED);
}

static int bad_value(struct csv *c, uint64_t line, uint32_t k, const struct field *f,
                     struct snap_error *err) {
  char ex[48];
  enum snap_type t = c->cols[k].field.type;
  int64_t v;
  int zoned;
  (void)line;
  if (is_timestamp(t) &&
      ingest_parse_timestamp_unit(f->p, f->n, ts_unit_ns(t), &v, &zoned) == -1)
    return cerr(err, SNAP_EINVAL,
                "%s: line %llu, column %u (%s): \"%s\" does not fit %s (%s)", c->name,
                (unsigned long long)f->line, k + 1, c->cols[k].name,
                excerpt(ex, sizeof ex, f->p, f->n), snap_type_name(t),
                t == SNAP_TIMESTAMP_NS
                    ? "outside 1677-09-21..2262-04-11; timestamp[us] holds any year"
                    : "finer than its unit; declare a finer one");
  return cerr(err, SNAP_EINVAL,
              "%s: line %llu, column %u (%s): cannot parse \"%s\" as %s", c->name,
              (unsigned long long)f->line, k + 1, c->cols[k].name,
              excerpt(ex, sizeof ex, f->p, f->n), snap_type_name(c->cols[k].field.type));
}

/* Pass 2 over rows [row, row_end) from scan position s: parse every value into
 * the segment. Each worker has its own fields, scratch and string offsets. */
struct worker {
  struct csv *c;
  struct scan s;
  uint64_t row, row_end;
  const char *stop;   /* where the range must end (NULL: at the end of input) */
  uint64_t *str_off;  /* per column: running offset into string data */
  const char *origin; /* progress: where pass 2 starts */
  struct field *f;
  char *scratch;
  size_t scratch_cap;
  int first; /* the calling thread: reports progress */
  int rc;
  struct snap_error err;
};

/* The first ',', '\n' or '\r' at or after p, or e. */
static inline const char *field_end(const char *p, const char *e) {
  unsigned char high = 0;
  return (const char *)plain_end((const unsigned char *)p, (const unsigned char *)e,
                                 &high);
}

/* The code of the unescaped value (p, n) in a category column's dictionary: the
 * table of short values first, then the hash table; -1 when it is not there. */
static inline int32_t category_code(const struct col *col, const char *p, size_t n) {
  if (n <= 8) {
    uint64_t key = short_key(p, n);
    for (unsigned i = 0; i < col->ndkeys; i++)
      if (col->dkey[i] == key && col->dkeylen[i] == n) return col->dcode[i];
  }
  struct sentry *e = strset_find(&col->st.set, p, n, hash_bytes(p, n));
  return e && e->p ? e->code : -1;
}

/* Store a code at row r in the column's code width. */
static inline void put_code(struct col *col, uint64_t r, int32_t code) {
  void *v = col->fill.values;
  switch (col->field.code_type) {
    case SNAP_INT8:
      ((int8_t *)v)[r] = (int8_t)code;
      break;
    case SNAP_INT16:
      ((int16_t *)v)[r] = (int16_t)code;
      break;
    default:
      ((int32_t *)v)[r] = code;
      break;
  }
}

/* Pass 2 of one record on the quick path in a single scan: each value is parsed
 * where it starts, and its parser's end must be the delimiter (',' between
 * fields, the end of the line after the last). 1 when done; 0 when anything
 * else is there (the general path then takes the record, and finds the same
 * values or the same miss). The quick path has no string column and no null. */
static int quick_record(struct worker *w, uint64_t r) {
  struct csv *c = w->c;
  struct scan *s = &w->s;
  const char *p = s->pos, *e = s->end, *q;
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    struct snap_fill *fl = &col->fill;
    switch (col->field.type) {
      case SNAP_INT64: { /* [-]digits, at most 18 of them, 8 at a time */
        uint64_t v = 0;
        int neg = p < e && *p == '-';
        unsigned nd = 0, k;
        q = p + neg;
        for (;;) {
          if (e - q >= 8) {
            uint64_t x;
            memcpy(&x, q, 8);
            if ((k = leading_digits(x))) v = v * pow10_u64[k] + parse_leading(x, k);
            q += k, nd += k;
            if (k < 8 || nd > 18) break;
          } else if (q < e && (unsigned)(*q - '0') < 10) {
            v = v * 10 + (unsigned)(*q++ - '0'), nd++;
          } else {
            break;
          }
        }
        if (!nd || nd > 18) return 0;
        ((int64_t *)fl->values)[r] = neg ? -(int64_t)v : (int64_t)v;
        break;
      }
      case SNAP_TIMESTAMP_NS: { /* the two fixed-width forms */
        size_t n = e - p > 19 && stop_tab[(unsigned char)p[19]]   ? 19
                   : e - p > 10 && stop_tab[(unsigned char)p[10]] ? 10
                                                                  : 0;
        if (!n || !timestamp_fast(p, n, (int64_t *)fl->values + r)) return 0;
        if (col->spec_tz == 2) return 0; /* zoned values never take these forms */
        q = p + n;
        break;
      }
      case SNAP_BOOL: {
        size_t n = e - p > 4 && stop_tab[(unsigned char)p[4]]   ? 4
                   : e - p > 5 && stop_tab[(unsigned char)p[5]] ? 5
                                                                : 0;
        if (!n || !ingest_parse_bool(p, n, (uint8_t *)fl->values + r)) return 0;
        q = p + n;
        break;
      }
      case SNAP_FLOAT64:
        q = field_end(p, e);
        if (q == p || !parse_float(p, (size_t)(q - p), e, (double *)fl->values + r, 1))
          return 0;
        break;
      case SNAP_CATEGORY: {
        q = field_end(p, e);
        int32_t code = q > p && *p != '"' ? category_code(col, p, (size_t)(q - p)) : -1;
        if (code < 0) return 0;
        put_code(col, r, code);
        break;
      }
      default:
        return 0;
    }
    if (k + 1 < c->ncols) {
      if (q >= e || *q != ',') return 0;
      p = q + 1;
    } else {
      if (q < e && *q == '\r') q++;
      if (q < e && *q != '\n') return 0;
      s->pos = q < e ? q + 1 : e;
    }
  }
  s->line++;
  return 1;
}

/* Every 64k rows of pass 2: progress (from the first range), cancel, lease. */
static int pass2_tick(struct worker *w) {
  struct csv *c = w->c;
  if (w->first && c->opt->progress) {
    uint64_t done = (uint64_t)(w->s.pos - w->origin) * c->nthreads;
    uint64_t half = c->total / 2;
    c->opt->progress(half + (done < half ? done : half), c->total, c->opt->progress_arg);
  }
  return ingest_interrupted(c->opt, c->name, &w->err);
}

static int pass2_range(struct worker *w) {
  struct csv *c = w->c;
  struct scan *s = &w->s;
  struct snap_error *err = &w->err;
  uint32_t nf;
  uint64_t line, r = w->row;
  /* rows whose validity byte no other range touches */
  uint64_t lo = (w->row + 7) & ~(uint64_t)7, hi = w->row_end & ~(uint64_t)7;
  int rc = 0;
  while (r < w->row_end || !w->stop) {
    if (c->quick && r < w->row_end && s->pos < s->end && quick_record(w, r)) {
      if ((++r & 0xffff) == 0 && (rc = pass2_tick(w))) return rc;
      continue;
    }
    if ((rc = next_record(s, w->f, c->ncols, &nf, &line, err)) != 1) break;
    if (nf != c->ncols || r >= w->row_end) {
      if (c->quick) return CSV_SPEC_MISS; /* the plan was wrong: check everything */
      return cerr(err, SNAP_EINVAL, "%s: line %llu: input changed while reading", c->name,
                  (unsigned long long)line);
    }
    for (uint32_t k = 0; k < nf; k++) {
      const struct field *f = &w->f[k];
      struct col *col = &c->cols[k];
      struct snap_fill *fl = &col->fill;
      int null = !f->n && !f->quoted;
      if (null && c->quick) return CSV_SPEC_MISS; /* the prescan found no empty field */
      switch (col->field.type) {
        case SNAP_INT64:
          if (null) break;
          if (!ingest_parse_int64(f->p, f->n, (int64_t *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_UINT64:
          if (null) break;
          if (!ingest_parse_uint64(f->p, f->n, (uint64_t *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_FLOAT64:
          if (null) {
            ((double *)fl->values)[r] = NAN;
            break;
          }
          if (!ingest_parse_float64(f->p, f->n, (double *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_BOOL:
          if (null) break;
          if (!ingest_parse_bool(f->p, f->n, (uint8_t *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_TIMESTAMP_NS:
        case SNAP_TIMESTAMP_US:
        case SNAP_TIMESTAMP_MS:
        case SNAP_TIMESTAMP_S: {
          int zoned;
          if (null) break;
          if (ingest_parse_timestamp_unit(f->p, f->n, ts_unit_ns(col->field.type),
                                          (int64_t *)fl->values + r, &zoned) != 1)
            return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          if (col->spec && zoned != (col->spec_tz == 2)) return CSV_SPEC_MISS;
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        }
        case SNAP_STRING: {
          int64_t *str_off = fl->offsets;
          uint64_t off = w->str_off[k];
          if (!null) {
            if (off + f->n - f->esc > col->field.data_bytes)
              return cerr(err, SNAP_EINVAL, "%s: line %llu: input changed while reading",
                          c->name, (unsigned long long)line);
            /* no data buffer when every value is empty (found by fuzz_csv: UB) */
            off += fl->data ? unescape(fl->data + off, f) : 0;
            if (fl->validity) set_valid(fl->validity, r, lo, hi);
          }
          str_off[r + 1] = (int64_t)off;
          w->str_off[k] = off;
          break;
        }
        case SNAP_CATEGORY: {
          int32_t code = -1;
          if (!null) {
            const char *p = f->p;
            size_t n = f->n;
            if (f->esc) {
              if ((rc = grow(&w->scratch, &w->scratch_cap, f->n)))
                return cerr(err, rc, "%s: out of memory", c->name);
              n = unescape(w->scratch, f);
              p = w->scratch;
            }
            if ((code = category_code(col, p, n)) < 0)
              return col->spec ? CSV_SPEC_MISS : bad_value(c, line, k, f, err);
          }
          put_code(col, r, code);
          break;
        }
        default:
          return cerr(err, SNAP_EINVAL, "%s: internal: unexpected column type", c->name);
      }
    }
    if ((++r & 0xffff) == 0 && (rc = pass2_tick(w))) return rc;
  }
  if (!w->stop && rc < 0) return rc;
  if (w->stop) skip_blank(s); /* the next range starts after blank lines */
  if (r != w->row_end || (w->stop && s->pos != w->stop)) {
    if (c->quick) return CSV_SPEC_MISS;
    return cerr(err, SNAP_EINVAL, "%s: input changed while reading", c->name);
  }
  return 0;
}

static void *pass2_thread(void *arg) {
  struct worker *w = arg;
  w->rc = pass2_range(w);
  return NULL;
}

/* Pass 2: fill the category dictionaries, then parse every value into the
 * segment, on up to nsplits + 1 threads. The first failure in file order wins. */
static int pass2(struct csv *c, const struct scan *s0, snap_publish *pub,
                 struct snap_error *err) {
  int rc;
  for (uint32_t k = 0; k < c->ncols; k++) {
    struct col *col = &c->cols[k];
    if ((rc = snap_publish_fill(pub, k, &col->fill, err))) return rc;
    if (col->field.type == SNAP_CATEGORY) {
      int64_t off = 0;
      col->fill.offsets[0] = 0;
      for (size_t i = 0; i < col->field.dict_size; i++) {
        if (col->sorted[i]->n)
          memcpy(col->fill.data + off, col->sorted[i]->p, col->sorted[i]->n);
        off += col->sorted[i]->n;
        col->fill.offsets[i + 1] = off;
      }
    }
  }
  unsigned nw = c->nsplits + 1;
  struct worker *w = calloc(nw, sizeof *w);
  if (!w) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
  for (unsigned i = 0; i < nw; i++) {
    w[i].c = c;
    w[i].s = *s0;
    w[i].origin = s0->pos;
    w[i].first = i == 0;
    if (i) {
      w[i].s.pos = c->splits[i - 1].pos;
      w[i].s.line = c->splits[i - 1].line;
      w[i].row = c->splits[i - 1].row;
    }
    w[i].row_end = i < c->nsplits ? c->splits[i].row : c->nrows;
    w[i].stop = i < c->nsplits ? c->splits[i].pos : NULL;
    w[i].f = calloc(c->ncols, sizeof *w[i].f);
    w[i].str_off = calloc(c->ncols, sizeof *w[i].str_off);
    if (!w[i].f || !w[i].str_off) {
      rc = cerr(err, -ENOMEM, "%s: out of memory", c->name);
      goto out;
    }
    if (i) memcpy(w[i].str_off, c->splits[i - 1].bytes, c->ncols * sizeof *w[i].str_off);
  }
  run_all(pass2_thread, w, sizeof *w, nw);
  rc = 0;
  for (unsigned i = 0; i < nw && !rc; i++) {
    if (w[i].rc) {
      rc = w[i].rc;
      if (err) *err = w[i].err;
    } else if (i + 1 < nw) {
      /* each range must end where the next one's string data begins */
      for (uint32_t k = 0; k < c->ncols; k++)
        if (w[i].str_off[k] != c->splits[i].bytes[k] &&
            c->cols[k].field.type == SNAP_STRING) {
          rc = cerr(err, SNAP_EINVAL, "%s: input changed while reading", c->name);
          break;
        }
    }
  }
out:
  for (unsigned i = 0; i < nw; i++) {
    free(w[i].f);
    free(w[i].str_off);
    free(w[i].scratch);
  }
  free(w);
  return rc;
}

/* Threads for pass 2: opt->threads, else 2 on a machine with 2+ CPUs for
 * inputs of 4 MiB and more. */
static unsigned csv_threads(const struct ingest_options *o, size_t len) {
  unsigned n = o->threads;
  if (!n) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus >= 2 && len >= ((size_t)4 << 20) ? 2 : 1;
  }
  return n > CSV_MAX_THREADS ? CSV_MAX_THREADS : n;
}

int ingest_csv(snap_store *store, const char *dataset, const char *buf, size_t len,
               const struct ingest_options *opt, struct ingest_result *res,
               struct snap_error *err) {
  static const struct ingest_options defaults = {0};
  int rc, speculate = !(opt && opt->csv_full_check);
again:;
  struct csv c = {.opt = opt ? opt : &defaults, .speculate = speculate};
  c.name = c.opt->display_name ? c.opt->display_name : "<input>";
  c.total = 2 * (uint64_t)len;
  struct scan s = {.buf = buf,
                   .pos = buf,
                   .end = buf + len,
                   .line = 1,
                   .name = c.name,
                   .general = c.opt->csv_full_check};
  if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) s.pos += 3; /* UTF-8 BOM */
  c.category_max = c.opt->category_max ? c.opt->category_max : 1024;
  rc = header(&c, &s, err);
  const char *data_start = s.pos;
  uint64_t data_line = s.line;
  c.nthreads = csv_threads(c.opt, len);
  if (!rc && c.speculate && sample(&c, &s))
    rc = cerr(err, -ENOMEM, "%s: out of memory", c.name);
  if (!rc && !c.quick) rc = pass1(&c, &s, err);
  if (!rc && !c.quick) rc = complete_sets(&c, &s, err);
  if (rc == SNAP_EINVAL && c.speculate) {
    /* a bad record; but a value of a guessed column before it, which pass 1
     * did not check, may be bad too: the message must name the first */
    csv_free(&c);
    speculate = 0;
    goto again;
  }
  if (!rc) rc = decide(&c, err);
  snap_publish *pub = NULL;
  if (!rc) {
    struct snap_field *fields = calloc(c.ncols, sizeof *fields);
    if (!fields) {
      rc = cerr(err, -ENOMEM, "%s: out of memory", c.name);
    } else {
      for (uint32_t k = 0; k < c.ncols; k++) fields[k] = c.cols[k].field;
      struct snap_schema schema = {.nrows = c.nrows, .ncols = c.ncols, .fields = fields};
      rc = snap_publish_begin(store, dataset, &schema, &pub, err);
      free(fields);
    }
  }
  if (!rc) {
    s.pos = data_start;
    s.line = data_line;
    rc = pass2(&c, &s, pub, err);
    if (rc) {
      snap_publish_abort(pub);
    } else {
      uint64_t version = 0;
      rc = snap_publish_commit(pub, &version, err);
      if (!rc && res) {
        res->quick = c.quick;
        res->version = version;
        res->nrows = c.nrows;
        res->ncols = c.ncols;
        res->input_bytes = len;
      }
    }
  }
  csv_free(&c);
  if (rc == CSV_SPEC_MISS) { /* a guessed type was wrong: again, checking all */
    speculate = 0;
    goto again;
  }
  if (!rc && c.opt->progress) c.opt->progress(c.total, c.total, c.opt->progress_arg);
  return rc;
}
