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
 * Two shortcuts keep the result the same (see csv_sample() and quick_plan()): the types
 * of numeric-looking columns are guessed from the first rows and checked only in
 * pass 2; and when the guess covers every column and a fast scan shows plain
 * records only, pass 1 is skipped. A guess that fails sends the file down the
 * full path. Any error aborts: nothing is published. An unquoted empty field is
 * a null (validity bit 0; NaN as well in float columns; code -1 in categories);
 * a quoted empty field is an empty string.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csv.h"

/* ------------------------------------------------------------ messages */

/* A short printable excerpt of a value for messages. */
const char *csv_excerpt(char *out, size_t cap, const char *p, size_t n) {
  size_t i = 0, j = 0;
  for (; i < n && j + 4 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    out[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (i < n) memcpy(out + j, "...", 3), j += 3;
  out[j] = 0;
  return out;
}

int csv_bad_value(struct csv *c, uint64_t line, uint32_t k, const struct field *f,
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
                csv_excerpt(ex, sizeof ex, f->p, f->n), snap_type_name(t),
                t == SNAP_TIMESTAMP_NS
                    ? "outside 1677-09-21..2262-04-11; timestamp[us] holds any year"
                    : "finer than its unit; declare a finer one");
  return cerr(
      err, SNAP_EINVAL, "%s: line %llu, column %u (%s): cannot parse \"%s\" as %s",
      c->name, (unsigned long long)f->line, k + 1, c->cols[k].name,
      csv_excerpt(ex, sizeof ex, f->p, f->n), snap_type_name(c->cols[k].field.type));
}

/* ---------------------------------------------------------- the passes */

/* Run fn on each of n (<= CSV_MAX_THREADS) items of size bytes: the first on this
 * thread, the others on threads of their own (on this one too when no thread can
 * be had), and wait for all. */
void csv_run_all(void *(*fn)(void *), void *items, size_t size, unsigned n) {
  pthread_t tid[CSV_MAX_THREADS];
  unsigned started = 1;
  for (; started < n; started++)
    if (pthread_create(&tid[started], NULL, fn, (char *)items + started * size)) break;
  fn(items);
  for (unsigned i = started; i < n; i++) fn((char *)items + i * size);
  for (unsigned i = 1; i < started; i++) pthread_join(tid[i], NULL);
}

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

static int entry_cmp(const void *a, const void *b) {
  const struct sentry *x = *(struct sentry *const *)a, *y = *(struct sentry *const *)b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->p, y->p, n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
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
  rc = csv_header(&c, &s, err);
  const char *data_start = s.pos;
  uint64_t data_line = s.line;
  c.nthreads = csv_threads(c.opt, len);
  if (!rc && c.speculate && csv_sample(&c, &s))
    rc = cerr(err, -ENOMEM, "%s: out of memory", c.name);
  if (!rc && !c.quick) rc = csv_pass1(&c, &s, err);
  if (!rc && !c.quick) rc = csv_complete_sets(&c, &s, err);
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
    rc = csv_pass2(&c, &s, pub, err);
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
