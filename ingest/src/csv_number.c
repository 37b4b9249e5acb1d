/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CSV field parsers for numbers and bools: int64 and uint64 (8 digits at a time),
 * float64 (Clinger's fast path, exact 128-bit scaling, strtod for the rest), bool.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

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
int csv_int_literal(const char *p, size_t n) {
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

/* Syntax check plus Clinger's fast path (exact when the mantissa fits 53 bits and
 * the power of ten is exact), then exact integer scaling for up to 19 digits and
 * powers of ten up to 27; anything else goes to strtod on a copy. */
/* lim >= p + n: how far bytes may be read (the digits are read 8 at a time). */
int csv_parse_float(const char *p, size_t n, const char *lim, double *out, int convert) {
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
  return csv_parse_float(p, n, p + n, out, 1);
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
