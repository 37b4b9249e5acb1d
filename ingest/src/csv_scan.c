/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CSV tokenizer: records and fields (RFC 4180: quoted fields may hold commas,
 * "" and newlines), 16 bytes at a time on the common path, and UTF-8 validation.
 */
#define _GNU_SOURCE
#include <string.h>

#include "csv.h"

/* 0 or the offset + 1 of the first bad byte. */
size_t csv_utf8_bad(const unsigned char *s, size_t n) {
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

/* Set bits of a 16-bit mask (the builtin is a libgcc call without -mpopcnt). */
static inline unsigned popcount16(unsigned x) {
  x = x - ((x >> 1) & 0x5555);
  x = (x & 0x3333) + ((x >> 2) & 0x3333);
  x = (x + (x >> 4)) & 0x0f0f;
  return (x + (x >> 8)) & 0x1f;
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

/* The common case of csv_next_record, 16 bytes at a time: a record of one line with
 * no byte >= 0x80, whose fields are plain or quoted without a newline inside,
 * that ends (\n or \r) inside the buffer's last whole 16-byte block. Returns 1
 * with the record read as csv_next_record would, or 0 (nothing consumed; fields may
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
int csv_next_record(struct scan *s, struct field *f, uint32_t cap, uint32_t *nf,
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
size_t csv_unescape(char *dst, const struct field *f) {
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

/* Skip blank lines at s->pos. */
void csv_skip_blank(struct scan *s) {
  while (s->pos < s->end && (*s->pos == '\n' || *s->pos == '\r')) {
    if (*s->pos == '\r' && s->pos + 1 < s->end && s->pos[1] == '\n') s->pos++;
    s->pos++;
    s->line++;
  }
}
