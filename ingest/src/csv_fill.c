/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pass 2 of the CSV ingest: with the schema decided and the publish begun, parse
 * every value straight into the segment's columns, a range of rows per thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

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
        if (q == p ||
            !csv_parse_float(p, (size_t)(q - p), e, (double *)fl->values + r, 1))
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
    if ((rc = csv_next_record(s, w->f, c->ncols, &nf, &line, err)) != 1) break;
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
            return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_UINT64:
          if (null) break;
          if (!ingest_parse_uint64(f->p, f->n, (uint64_t *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_FLOAT64:
          if (null) {
            ((double *)fl->values)[r] = NAN;
            break;
          }
          if (!ingest_parse_float64(f->p, f->n, (double *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
          if (fl->validity) set_valid(fl->validity, r, lo, hi);
          break;
        case SNAP_BOOL:
          if (null) break;
          if (!ingest_parse_bool(f->p, f->n, (uint8_t *)fl->values + r))
            return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
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
            return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
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
            off += fl->data ? csv_unescape(fl->data + off, f) : 0;
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
              n = csv_unescape(w->scratch, f);
              p = w->scratch;
            }
            if ((code = category_code(col, p, n)) < 0)
              return col->spec ? CSV_SPEC_MISS : csv_bad_value(c, line, k, f, err);
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
  if (w->stop) csv_skip_blank(s); /* the next range starts after blank lines */
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
int csv_pass2(struct csv *c, const struct scan *s0, snap_publish *pub,
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
  csv_run_all(pass2_thread, w, sizeof *w, nw);
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
