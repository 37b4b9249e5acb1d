/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl export: write a version as .npy or CSV.
 *
 * .npy: one column gives a 1-D array; columns of one fixed-width type give a 2-D
 * Fortran-ordered array (each column written straight from the mapping); mixed
 * fixed-width types give a structured array. Strings and categories cannot be
 * represented and are refused (use CSV). Nulls become NaN in float columns and are
 * refused elsewhere. CSV: a header row, then one line per row, in the form
 * 'snapctl publish' reads back (nulls as empty fields, strings quoted when needed,
 * timestamps in ISO 8601 with 'Z' when zoned, durations as integer counts of their
 * unit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapctl.h"

static int is_null(const struct snap_column *col, uint64_t r) {
  return col->validity && !(col->validity[r >> 3] & (1u << (r & 7)));
}

/* ------------------------------------------------------------------ CSV */

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* @p v counts units of @p unit_ns nanoseconds (1, 1e3, 1e6 or 1e9), so that
 * the whole int64 range of every unit prints without overflow. */
static int64_t time_unit_ns(enum snap_type t) {
  return t == SNAP_TIMESTAMP_S    ? 1000000000
         : t == SNAP_TIMESTAMP_MS ? 1000000
         : t == SNAP_TIMESTAMP_US ? 1000
                                  : 1;
}

static void put_timestamp(FILE *f, int64_t v, int64_t unit_ns, int zoned) {
  int64_t per_sec = 1000000000 / unit_ns;
  int64_t secs = v / per_sec, frac = (v % per_sec) * unit_ns;
  if (frac < 0) frac += 1000000000, secs--;
  int64_t days = secs / 86400, sod = secs % 86400;
  if (sod < 0) sod += 86400, days--;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  fprintf(f, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", y, m, d, (int)(sod / 3600),
          (int)(sod / 60 % 60), (int)(sod % 60));
  if (frac) {
    char b[24];
    snprintf(b, sizeof b, "%09" PRId64, frac);
    int k = 9;
    while (b[k - 1] == '0') k--;
    fprintf(f, ".%.*s", k, b);
  }
  if (zoned) fputc('Z', f);
}

static void put_double(FILE *f, double v, int single) {
  if (isnan(v)) {
    fputs("NaN", f);
    return;
  }
  if (isinf(v)) {
    fputs(v < 0 ? "-inf" : "inf", f);
    return;
  }
  char b[40];
  /* the shortest of two precisions that reads back to the same value */
  snprintf(b, sizeof b, "%.*g", single ? 6 : 15, v);
  if (single ? strtof(b, NULL) != (float)v : strtod(b, NULL) != v)
    snprintf(b, sizeof b, "%.*g", single ? 9 : 17, v);
  fputs(b, f);
}

static int needs_quotes(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r') return 1;
  return n == 0; /* "" is an empty string; an empty field is a null */
}

static void put_text(FILE *f, const char *p, size_t n) {
  int quote = needs_quotes(p, n);
  if (!quote) {
    fwrite(p, 1, n, f);
    return;
  }
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '"') fputc('"', f);
    fputc(p[i], f);
  }
  fputc('"', f);
}

static void put_cell(FILE *f, const struct snap_column *col, uint64_t r) {
  if (is_null(col, r)) return;
  const void *v = col->values;
  switch (col->type) {
    case SNAP_INT8:
      fprintf(f, "%d", ((const int8_t *)v)[r]);
      break;
    case SNAP_INT16:
      fprintf(f, "%d", ((const int16_t *)v)[r]);
      break;
    case SNAP_INT32:
      fprintf(f, "%" PRId32, ((const int32_t *)v)[r]);
      break;
    case SNAP_INT64:
    case SNAP_DURATION_NS:
    case SNAP_DURATION_S:
    case SNAP_DURATION_MS:
    case SNAP_DURATION_US:
      fprintf(f, "%" PRId64, ((const int64_t *)v)[r]);
      break;
    case SNAP_UINT8:
      fprintf(f, "%u", ((const uint8_t *)v)[r]);
      break;
    case SNAP_UINT16:
      fprintf(f, "%u", ((const uint16_t *)v)[r]);
      break;
    case SNAP_UINT32:
      fprintf(f, "%" PRIu32, ((const uint32_t *)v)[r]);
      break;
    case SNAP_UINT64:
      fprintf(f, "%" PRIu64, ((const uint64_t *)v)[r]);
      break;
    case SNAP_FLOAT32:
      put_double(f, ((const float *)v)[r], 1);
      break;
    case SNAP_FLOAT64:
      put_double(f, ((const double *)v)[r], 0);
      break;
    case SNAP_BOOL:
      fputs(((const uint8_t *)v)[r] ? "true" : "false", f);
      break;
    case SNAP_TIMESTAMP_NS:
    case SNAP_TIMESTAMP_S:
    case SNAP_TIMESTAMP_MS:
    case SNAP_TIMESTAMP_US: {
      int64_t t = ((const int64_t *)v)[r];
      if (t != INT64_MIN)
        put_timestamp(f, t, time_unit_ns(col->type), col->timezone != NULL);
      break;
    }
    case SNAP_STRING:
      put_text(f, col->data + col->offsets[r],
               (size_t)(col->offsets[r + 1] - col->offsets[r]));
      break;
    case SNAP_CATEGORY: {
      int64_t code = snap_column_code(col, r);
      if (code >= 0 && (uint64_t)code < col->dict_size)
        put_text(f, col->data + col->offsets[code],
                 (size_t)(col->offsets[code + 1] - col->offsets[code]));
      break;
    }
  }
}

static int write_csv(snap_snapshot *snap, FILE *f) {
  uint32_t ncols = snap_snapshot_ncols(snap);
  uint64_t nrows = snap_snapshot_nrows(snap);
  const struct snap_column **cols = calloc(ncols ? ncols : 1, sizeof *cols);
  if (!cols) return -ENOMEM;
  for (uint32_t k = 0; k < ncols; k++) {
    cols[k] = snap_snapshot_column(snap, k);
    if (k) fputc(',', f);
    put_text(f, cols[k]->name, cols[k]->name_len);
  }
  fputc('\n', f);
  for (uint64_t r = 0; r < nrows; r++) {
    for (uint32_t k = 0; k < ncols; k++) {
      if (k) fputc(',', f);
      put_cell(f, cols[k], r);
    }
    fputc('\n', f);
  }
  free(cols);
  return 0;
}

/* ------------------------------------------------------------------ npy */

static const char *npy_descr(enum snap_type t) {
  switch (t) {
    case SNAP_BOOL:
      return "|b1";
    case SNAP_INT8:
      return "|i1";
    case SNAP_INT16:
      return "<i2";
    case SNAP_INT32:
      return "<i4";
    case SNAP_INT64:
      return "<i8";
    case SNAP_UINT8:
      return "|u1";
    case SNAP_UINT16:
      return "<u2";
    case SNAP_UINT32:
      return "<u4";
    case SNAP_UINT64:
      return "<u8";
    case SNAP_FLOAT32:
      return "<f4";
    case SNAP_FLOAT64:
      return "<f8";
    case SNAP_TIMESTAMP_NS:
      return "<M8[ns]";
    case SNAP_TIMESTAMP_US:
      return "<M8[us]";
    case SNAP_TIMESTAMP_MS:
      return "<M8[ms]";
    case SNAP_TIMESTAMP_S:
      return "<M8[s]";
    case SNAP_DURATION_NS:
      return "<m8[ns]";
    case SNAP_DURATION_US:
      return "<m8[us]";
    case SNAP_DURATION_MS:
      return "<m8[ms]";
    case SNAP_DURATION_S:
      return "<m8[s]";
    default:
      return NULL;
  }
}

static void npy_header(FILE *f, const char *dict) {
  size_t n = strlen(dict), pre = 10, total = pre + n + 1;
  int v2 = 0;
  size_t pad = (64 - total % 64) % 64;
  if (n + 1 + pad > 65535) {
    v2 = 1, pre = 12, total = pre + n + 1, pad = (64 - total % 64) % 64;
  }
  size_t hlen = n + pad + 1;
  fwrite("\x93NUMPY", 1, 6, f);
  fputc(v2 ? 2 : 1, f);
  fputc(0, f);
  for (int i = 0; i < (v2 ? 4 : 2); i++) fputc((int)(hlen >> (8 * i)) & 0xff, f);
  fputs(dict, f);
  for (size_t i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
}

/* Python string literal of a column name (for structured dtypes). */
static char *py_literal(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(4 * n + 3), *p = out;
  if (!out) return NULL;
  *p++ = '\'';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\'' || ch == '\\')
      *p++ = '\\', *p++ = (char)ch;
    else if (ch < 0x20)
      p += sprintf(p, "\\x%02x", ch);
    else
      *p++ = (char)ch;
  }
  *p++ = '\'';
  *p = 0;
  return out;
}

/* Writes column k's values, NaN for nulls of float columns. */
static void write_values(FILE *f, const struct snap_column *col, uint64_t nrows) {
  size_t sz = snap_type_size(col->type);
  if (!col->validity || !nrows) {
    if (nrows) fwrite(col->values, sz, nrows, f);
    return;
  }
  for (uint64_t r = 0; r < nrows; r++) {
    if (!is_null(col, r)) {
      fwrite((const char *)col->values + r * sz, sz, 1, f);
    } else if (col->type == SNAP_FLOAT32) {
      float nan = NAN;
      fwrite(&nan, sizeof nan, 1, f);
    } else {
      double nan = NAN;
      fwrite(&nan, sizeof nan, 1, f);
    }
  }
}

static int write_npy(struct ctl *c, snap_snapshot *snap, FILE *f) {
  uint32_t ncols = snap_snapshot_ncols(snap);
  uint64_t nrows = snap_snapshot_nrows(snap);
  if (!ncols) return ctl_fail(c, "a version without columns cannot be written as .npy");
  int same = 1;
  const struct snap_column *c0 = snap_snapshot_column(snap, 0);
  for (uint32_t k = 0; k < ncols; k++) {
    const struct snap_column *col = snap_snapshot_column(snap, k);
    if (!npy_descr(col->type))
      return ctl_fail(c,
                      "column %u (%s) is %s: .npy holds fixed-width values only "
                      "(use --format csv)",
                      k, col->name, snap_type_name(col->type));
    if (col->validity && col->type != SNAP_FLOAT32 && col->type != SNAP_FLOAT64)
      for (uint64_t r = 0; r < nrows; r++)
        if (is_null(col, r))
          return ctl_fail(c,
                          "column %u (%s) has nulls at row %llu, which .npy cannot hold "
                          "for %s (use --format csv)",
                          k, col->name, (unsigned long long)r, snap_type_name(col->type));
    if (col->type != c0->type) same = 0;
  }
  char *dict = NULL;
  int n;
  if (same) {
    if (ncols == 1)
      n = asprintf(&dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%llu,), }",
                   npy_descr(c0->type), (unsigned long long)nrows);
    else
      n = asprintf(&dict, "{'descr': '%s', 'fortran_order': True, 'shape': (%llu, %u), }",
                   npy_descr(c0->type), (unsigned long long)nrows, ncols);
    if (n < 0) return ctl_fail(c, "out of memory");
    npy_header(f, dict);
    free(dict);
    for (uint32_t k = 0; k < ncols; k++)
      write_values(f, snap_snapshot_column(snap, k), nrows);
    return CTL_OK;
  }
  /* structured: [('name', '<f8'), ...], rows interleaved */
  size_t cap = 64, len = 0;
  dict = malloc(cap);
  if (!dict) return ctl_fail(c, "out of memory");
  len = (size_t)sprintf(dict, "{'descr': [");
  for (uint32_t k = 0; k < ncols; k++) {
    const struct snap_column *col = snap_snapshot_column(snap, k);
    char *lit = py_literal(col->name);
    if (!lit) return free(dict), ctl_fail(c, "out of memory");
    size_t need = len + strlen(lit) + 32;
    if (need > cap) {
      char *p = realloc(dict, cap = 2 * need);
      if (!p) return free(lit), free(dict), ctl_fail(c, "out of memory");
      dict = p;
    }
    len += (size_t)sprintf(dict + len, "(%s, '%s'), ", lit, npy_descr(col->type));
    free(lit);
  }
  char *full = NULL;
  n = asprintf(&full, "%s], 'fortran_order': False, 'shape': (%llu,), }", dict,
               (unsigned long long)nrows);
  free(dict);
  if (n < 0) return ctl_fail(c, "out of memory");
  npy_header(f, full);
  free(full);
  for (uint64_t r = 0; r < nrows; r++)
    for (uint32_t k = 0; k < ncols; k++) {
      const struct snap_column *col = snap_snapshot_column(snap, k);
      size_t sz = snap_type_size(col->type);
      if (is_null(col, r) && col->type == SNAP_FLOAT64) {
        double nan = NAN;
        fwrite(&nan, 8, 1, f);
      } else if (is_null(col, r) && col->type == SNAP_FLOAT32) {
        float nan = NAN;
        fwrite(&nan, 4, 1, f);
      } else {
        fwrite((const char *)col->values + r * sz, sz, 1, f);
      }
    }
  return CTL_OK;
}

/* ------------------------------------------------------------- command */

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"format", required_argument, NULL, 'f'},
                                           {"output", required_argument, NULL, 'o'},
                                           {0}};
  int opt, code;
  const char *format = NULL, *out = NULL;
  while ((opt = ctl_getopt(&ctl_cmd_export, c, argc, argv, "f:o:", longopts, &code)) !=
         -1) {
    if (opt == -2) return code;
    if (opt == 'f') format = optarg;
    if (opt == 'o') out = optarg;
  }
  if (optind >= argc) return ctl_usage(c, "missing DATASET[@VERSION]");
  if (optind + 1 < argc)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  if (!format) return ctl_usage(c, "missing --format npy|csv");
  int npy = !strcmp(format, "npy");
  if (!npy && strcmp(format, "csv"))
    return ctl_usage(c, "--format: '%s' is not npy or csv", format);
  if (npy && !out && isatty(STDOUT_FILENO))
    return ctl_usage(c, "refusing to write .npy to a terminal; give -o FILE");
  snap_store *store;
  snap_snapshot *snap;
  int rc = ctl_pin_target(c, argv[optind], &store, &snap);
  if (rc) return rc;
  FILE *f = stdout;
  if (out && !(f = fopen(out, "wbe"))) {
    rc = ctl_fail(c, "%s: %s", out, strerror(errno));
  } else {
    static char buf[1 << 16];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    if (npy) {
      rc = write_npy(c, snap, f);
    } else if ((rc = write_csv(snap, f))) {
      rc = ctl_fail(c, "%s", strerror(-rc));
    }
    int werr = ferror(f);
    if ((f == stdout ? fflush(f) : fclose(f)) || werr) {
      if (!rc)
        rc = ctl_fail(c, "%s: write failed: %s", out ? out : "stdout", strerror(errno));
    }
    if (rc && out) unlink(out);
  }
  snap_unpin(snap);
  snap_store_close(store);
  return rc;
}

const struct ctl_command ctl_cmd_export = {
    "export", "write a version as .npy or CSV",
    "usage: snapctl [--store PATH] export DATASET[@VERSION] --format npy|csv [-o FILE]\n"
    "\n"
    "Write a version (default: the current one) to FILE, or to standard output.\n"
    "\n"
    "  -f, --format npy   one column: a 1-D array; columns of one type: a 2-D\n"
    "                     (rows, cols) Fortran-ordered array; mixed fixed-width types:\n"
    "                     a structured array. Strings and categories are refused;\n"
    "                     nulls become NaN in float columns and are refused elsewhere.\n"
    "  -f, --format csv   a header row, then one line per row; nulls are empty fields,\n"
    "                     timestamps ISO 8601 (with Z when zoned), durations integer\n"
    "                     counts of their unit.\n"
    "  -o, --output FILE  write here instead of standard output\n",
    run};
