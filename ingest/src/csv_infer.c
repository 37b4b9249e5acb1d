/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pass 1 of the CSV ingest: split the data into chunks, scan them on threads and
 * narrow each column's candidate types value by value, count nulls and string
 * bytes, collect distinct strings; merge the chunks in file order. Also the
 * shortcuts that skip work: types guessed from the first rows (csv_sample) and
 * the quick path that skips pass 1 altogether (quick_plan).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

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
  size_t n = csv_unescape(ch->scratch, f);
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
      if (!ingest_parse_int64(f->p, f->n, &i64)) return csv_bad_value(c, 0, k, f, err);
      break;
    case SNAP_UINT64:
      if (!ingest_parse_uint64(f->p, f->n, &u64)) return csv_bad_value(c, 0, k, f, err);
      break;
    case SNAP_FLOAT64:
      if (!csv_parse_float(f->p, f->n, f->p + f->n, &d, 0))
        return csv_bad_value(c, 0, k, f, err);
      break;
    case SNAP_BOOL:
      if (!ingest_parse_bool(f->p, f->n, &b)) return csv_bad_value(c, 0, k, f, err);
      break;
    case SNAP_TIMESTAMP_NS:
    case SNAP_TIMESTAMP_US:
    case SNAP_TIMESTAMP_MS:
    case SNAP_TIMESTAMP_S:
      if (ingest_parse_timestamp_unit(f->p, f->n, ts_unit_ns(col->field.type), &i64,
                                      &zoned) != 1)
        return csv_bad_value(c, 0, k, f, err);
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

/* Pass 1 for one value of column k (not null). */
static int infer(struct chunk *ch, struct colstat *st, const struct field *f, uint32_t k,
                 struct snap_error *err) {
  struct csv *c = ch->c;
  struct col *col = &c->cols[k];
  if (f->high) {
    size_t bad = csv_utf8_bad((const unsigned char *)f->p, f->n);
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
    } else if ((cand & CAND_INTLIT) && csv_int_literal(f->p, f->n)) {
      /* past int64: uint64 while no value is negative, never float64 */
      cand &= CAND_INTLIT | CAND_FLOAT |
              (ingest_parse_uint64(f->p, f->n, &u64) ? CAND_UINT : 0);
    } else {
      cand &= ~(unsigned)(CAND_INT | CAND_UINT | CAND_INTLIT);
      if ((cand & CAND_FLOAT) && !csv_parse_float(f->p, f->n, f->p + f->n, &d, 0))
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
    csv_skip_blank(s);
    if (ch->stop && s->pos >= ch->stop) break;
    if ((rc = csv_next_record(s, ch->f, c->ncols, &nf, &line, err)) != 1) break;
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
  csv_run_all(prescan_thread, ps, sizeof *ps, n);
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
    if (st->cand) continue; /* numeric: csv_sample() made its guess */
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

int csv_sample(struct csv *c, const struct scan *s0) {
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
int csv_pass1(struct csv *c, const struct scan *s0, struct snap_error *err) {
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
  csv_run_all(pass1_thread, ch, sizeof *ch, n);

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
int csv_complete_sets(struct csv *c, const struct scan *s0, struct snap_error *err) {
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
  while (!rc && need &&
         (rc = csv_next_record(&ch.s, ch.f, c->ncols, &nf, &line, err)) == 1) {
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
  if (rc < 0 && rc != -ENOMEM) goto out; /* err filled by csv_next_record */
  if (rc) {
    rc = cerr(err, rc, "%s: out of memory", c->name);
    goto out;
  }
  for (uint32_t k = 0; k < c->ncols; k++) c->cols[k].st.unhashed = 0;
out:
  chunk_free(c, &ch);
  return rc;
}
