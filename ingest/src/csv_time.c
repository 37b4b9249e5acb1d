/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CSV field parser for ISO 8601 timestamps. The fixed-width fast forms
 * (timestamp_fast) and the pass-1 check (ts_fits) are inline in csv.h.
 */
#define _GNU_SOURCE
#include "csv.h"

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

/* The general ISO 8601 parser: 1 with the seconds since the epoch (floor) and
 * the nanoseconds past them (0 .. 999999999), else 0. Years are 4 digits, so
 * *secs cannot overflow; scaling to a unit is the caller's (ts_scale). */
int csv_ts_split(const char *p, size_t n, int64_t *secs, int64_t *nanos, int *zoned) {
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

int ingest_parse_timestamp_unit(const char *p, size_t n, int64_t unit_ns, int64_t *out,
                                int *has_offset) {
  trim(&p, &n);
  if (unit_ns == 1 && (n == 19 || n == 10) && timestamp_fast(p, n, out))
    return *has_offset = 0, 1;
  int64_t secs, nanos;
  int zoned;
  if (!csv_ts_split(p, n, &secs, &nanos, &zoned)) return 0;
  if (!ts_scale(secs, nanos, unit_ns, out)) return -1;
  *has_offset = zoned;
  return 1;
}

int ingest_parse_timestamp(const char *p, size_t n, int64_t *ns, int *has_offset) {
  return ingest_parse_timestamp_unit(p, n, 1, ns, has_offset) == 1;
}
