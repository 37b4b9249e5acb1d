/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The header row (column names) and the schema text of ingest_options, which
 * declares each column's type instead of inferring it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

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
                  sn, line, csv_excerpt(ex, sizeof ex, w, wn));
    uint32_t k = 0;
    while (k < c->ncols &&
           !(strlen(c->cols[k].name) == n && !memcmp(c->cols[k].name, l, n)))
      k++;
    if (k == c->ncols)
      return cerr(err, SNAP_EINVAL, "%s: line %u: no column \"%s\" in the header of %s",
                  sn, line, csv_excerpt(ex, sizeof ex, l, n), c->name);
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

int csv_header(struct csv *c, struct scan *s, struct snap_error *err) {
  const char *start = s->pos;
  uint32_t nf = 0;
  uint64_t line;
  int rc = csv_next_record(s, NULL, 0, &nf, &line, err);
  if (rc < 0) return rc;
  if (rc == 0) return cerr(err, SNAP_EINVAL, "%s: empty file: no header row", c->name);
  c->ncols = nf;
  c->cols = calloc(nf, sizeof *c->cols);
  c->f = calloc(nf, sizeof *c->f);
  if (!c->cols || !c->f) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
  s->pos = start;
  s->line = 1;
  rc = csv_next_record(s, c->f, nf, &nf, &line, err);
  if (rc < 0) return rc;
  for (uint32_t i = 0; i < nf; i++) {
    const struct field *f = &c->f[i];
    size_t bad = f->high ? csv_utf8_bad((const unsigned char *)f->p, f->n) : 0;
    if (bad)
      return cerr(err, SNAP_EINVAL,
                  "%s: line %llu, column %u: header name is not valid UTF-8 (byte %zu)",
                  c->name, (unsigned long long)line, i + 1, bad);
    if (f->n - f->esc > SNAP_COLUMN_NAME_MAX)
      return cerr(err, SNAP_EINVAL, "%s: line %llu, column %u: header name too long",
                  c->name, (unsigned long long)line, i + 1);
    char *name = malloc(f->n + 32);
    if (!name) return cerr(err, -ENOMEM, "%s: out of memory", c->name);
    size_t n = csv_unescape(name, f);
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
