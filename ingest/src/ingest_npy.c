/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * .npy ingest: a 1-D array becomes one column named "0", a 2-D array of shape
 * (rows, cols) becomes cols columns named "0" .. "cols-1" (pandas' names for
 * DataFrame(matrix)). Fortran-ordered arrays are copied column by column; C-ordered
 * ones are transposed in row tiles that stay in cache. Supported dtypes: b1, i1-i8,
 * u1-u8, f4, f8, M8[s|ms|us|ns] and m8[s|ms|us|ns] (published in their own unit,
 * never scaled: pandas 3 keeps datetime64[s] for dates like 9999-12-31), either
 * byte order. The header is untrusted: every field and the data size are checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define nerr ingest_error

struct npy {
  enum snap_type type;
  size_t itemsize;
  int swap; /* big-endian data */
  int fortran;
  int ndim;
  uint64_t shape[2];
  size_t data_off;
};

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Parse a Python string literal ('...' or "...") into out. */
static const char *pystr(const char *p, const char *e, char *out, size_t cap) {
  if (p >= e || (*p != '\'' && *p != '"')) return NULL;
  char q = *p++;
  size_t n = 0;
  while (p < e && *p != q) {
    if (n + 1 >= cap) return NULL;
    out[n++] = *p++;
  }
  if (p >= e) return NULL;
  out[n] = 0;
  return p + 1;
}

static int descr_parse(struct npy *a, const char *d) {
  char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return -1;
  a->swap = order == '>';
  const char *t = d + 1;
  static const struct {
    const char *code;
    enum snap_type type;
  } simple[] = {{"b1", SNAP_BOOL},    {"i1", SNAP_INT8},   {"i2", SNAP_INT16},
                {"i4", SNAP_INT32},   {"i8", SNAP_INT64},  {"u1", SNAP_UINT8},
                {"u2", SNAP_UINT16},  {"u4", SNAP_UINT32}, {"u8", SNAP_UINT64},
                {"f4", SNAP_FLOAT32}, {"f8", SNAP_FLOAT64}};
  for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
    if (!strcmp(t, simple[i].code)) {
      a->type = simple[i].type;
      a->itemsize = snap_type_size(a->type);
      return 0;
    }
  if ((t[0] == 'M' || t[0] == 'm') && t[1] == '8' && t[2] == '[') {
    static const struct {
      const char *unit;
      enum snap_type timestamp, duration;
    } units[] = {{"ns]", SNAP_TIMESTAMP_NS, SNAP_DURATION_NS},
                 {"us]", SNAP_TIMESTAMP_US, SNAP_DURATION_US},
                 {"ms]", SNAP_TIMESTAMP_MS, SNAP_DURATION_MS},
                 {"s]", SNAP_TIMESTAMP_S, SNAP_DURATION_S}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
      if (!strcmp(t + 3, units[i].unit)) {
        a->type = t[0] == 'M' ? units[i].timestamp : units[i].duration;
        a->itemsize = 8;
        return 0;
      }
  }
  return -1;
}

static int header_parse(struct npy *a, const char *buf, size_t len, const char *name,
                        struct snap_error *err) {
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6))
    return nerr(err, SNAP_EINVAL, "%s: not a .npy file (bad magic)", name);
  unsigned major = (unsigned char)buf[6];
  size_t hlen, pre;
  if (major == 1) {
    hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    pre = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return nerr(err, SNAP_EINVAL, "%s: .npy header truncated", name);
    hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8 |
           (size_t)(unsigned char)buf[10] << 16 | (size_t)(unsigned char)buf[11] << 24;
    pre = 12;
  } else {
    return nerr(err, SNAP_EINVAL, "%s: unsupported .npy version %u", name, major);
  }
  if (hlen > len - pre)
    return nerr(err, SNAP_EINVAL,
                "%s: .npy header truncated: it says %zu bytes, the file has %zu", name,
                hlen, len - pre);
  const char *p = buf + pre, *e = p + hlen;
  a->data_off = pre + hlen;
  int have_descr = 0, have_order = 0, have_shape = 0;
  p = skip_ws(p, e);
  if (p >= e || *p++ != '{')
    return nerr(err, SNAP_EINVAL, "%s: .npy header at byte %zu: expected '{'", name,
                (size_t)(p - buf));
  for (;;) {
    p = skip_ws(p, e);
    if (p < e && *p == '}') break;
    char key[32], val[64];
    const char *k0 = p;
    if (!(p = pystr(p, e, key, sizeof key)))
      return nerr(err, SNAP_EINVAL, "%s: .npy header at byte %zu: expected a key", name,
                  (size_t)(k0 - buf));
    p = skip_ws(p, e);
    if (p >= e || *p++ != ':')
      return nerr(err, SNAP_EINVAL, "%s: .npy header: expected ':' after '%s'", name,
                  key);
    p = skip_ws(p, e);
    if (!strcmp(key, "descr")) {
      if (p < e && *p == '[')
        return nerr(err, SNAP_EINVAL,
                    "%s: structured .npy dtypes are not supported (one dtype per file)",
                    name);
      if (!(p = pystr(p, e, val, sizeof val)))
        return nerr(err, SNAP_EINVAL, "%s: .npy header: bad 'descr'", name);
      if (descr_parse(a, val))
        return nerr(err, SNAP_EINVAL, "%s: unsupported .npy dtype '%s'", name, val);
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (e - p >= 4 && !memcmp(p, "True", 4))
        a->fortran = 1, p += 4;
      else if (e - p >= 5 && !memcmp(p, "False", 5))
        a->fortran = 0, p += 5;
      else
        return nerr(err, SNAP_EINVAL, "%s: .npy header: bad 'fortran_order'", name);
      have_order = 1;
    } else if (!strcmp(key, "shape")) {
      if (p >= e || *p++ != '(')
        return nerr(err, SNAP_EINVAL, "%s: .npy header: bad 'shape'", name);
      a->ndim = 0;
      for (;;) {
        p = skip_ws(p, e);
        if (p < e && *p == ')') {
          p++;
          break;
        }
        uint64_t v = 0;
        int digits = 0;
        while (p < e && *p >= '0' && *p <= '9') {
          if (v > (UINT64_MAX - 9) / 10)
            return nerr(err, SNAP_EINVAL, "%s: .npy header: shape too large", name);
          v = v * 10 + (uint64_t)(*p++ - '0');
          digits = 1;
        }
        if (!digits) return nerr(err, SNAP_EINVAL, "%s: .npy header: bad 'shape'", name);
        if (a->ndim >= 2)
          return nerr(err, SNAP_EINVAL,
                      "%s: .npy arrays of more than 2 dimensions are not supported",
                      name);
        a->shape[a->ndim++] = v;
        p = skip_ws(p, e);
        if (p < e && *p == ',') p++;
      }
      if (a->ndim == 0)
        return nerr(err, SNAP_EINVAL, "%s: 0-dimensional .npy arrays are not supported",
                    name);
      have_shape = 1;
    } else {
      return nerr(err, SNAP_EINVAL, "%s: .npy header: unknown key '%s'", name, key);
    }
    p = skip_ws(p, e);
    if (p < e && *p == ',') p++;
  }
  if (!have_descr || !have_order || !have_shape)
    return nerr(err, SNAP_EINVAL, "%s: .npy header lacks '%s'", name,
                !have_descr   ? "descr"
                : !have_order ? "fortran_order"
                              : "shape");
  if (a->ndim == 1) a->shape[1] = 1;
  if (a->shape[1] == 0 || a->shape[1] > UINT32_MAX)
    return nerr(err, SNAP_EINVAL, "%s: .npy shape has %llu columns", name,
                (unsigned long long)a->shape[1]);
  uint64_t need;
  if (__builtin_mul_overflow(a->shape[0], a->shape[1], &need) ||
      __builtin_mul_overflow(need, (uint64_t)a->itemsize, &need))
    return nerr(err, SNAP_EINVAL, "%s: .npy shape too large", name);
  if (need > len - a->data_off)
    return nerr(err, SNAP_EINVAL,
                "%s: .npy data truncated: shape needs %llu bytes, the file has %zu", name,
                (unsigned long long)need, len - a->data_off);
  return 0;
}

/* Copy every column out of the source layout. C order is transposed in row tiles
 * of about 256 KiB so that each source cache line is read once. */
static void copy_columns(const struct npy *a, const unsigned char *src, void **dst) {
  uint64_t nrows = a->shape[0], ncols = a->shape[1];
  size_t sz = a->itemsize;
  if (!nrows) return;
  if (a->fortran || ncols == 1) {
    for (uint64_t c = 0; c < ncols; c++) memcpy(dst[c], src + c * nrows * sz, nrows * sz);
    return;
  }
  uint64_t tile = 262144 / (ncols * sz);
  if (tile < 16) tile = 16;
  for (uint64_t r0 = 0; r0 < nrows; r0 += tile) {
    uint64_t r1 = r0 + tile < nrows ? r0 + tile : nrows;
    for (uint64_t c = 0; c < ncols; c++) {
      const unsigned char *s = src + (r0 * ncols + c) * sz;
      unsigned char *d = (unsigned char *)dst[c] + r0 * sz;
      size_t stride = ncols * sz;
      switch (sz) {
        case 1:
          for (uint64_t r = r0; r < r1; r++, s += stride) *d++ = *s;
          break;
        case 2:
          for (uint64_t r = r0; r < r1; r++, s += stride, d += 2) memcpy(d, s, 2);
          break;
        case 4:
          for (uint64_t r = r0; r < r1; r++, s += stride, d += 4) memcpy(d, s, 4);
          break;
        default:
          for (uint64_t r = r0; r < r1; r++, s += stride, d += 8) memcpy(d, s, 8);
          break;
      }
    }
  }
}

/* Byte order and bool checks of one copied column. */
static int fix_column(const struct npy *a, uint32_t c, void *dst, const char *name,
                      struct snap_error *err) {
  uint64_t nrows = a->shape[0];
  size_t sz = a->itemsize;
  unsigned char *d = dst;
  if (a->swap && sz > 1) {
    for (uint64_t r = 0; r < nrows; r++) {
      unsigned char *v = d + r * sz;
      for (size_t i = 0; i < sz / 2; i++) {
        unsigned char t = v[i];
        v[i] = v[sz - 1 - i];
        v[sz - 1 - i] = t;
      }
    }
  }
  if (a->type == SNAP_BOOL) {
    for (uint64_t r = 0; r < nrows; r++)
      if (d[r] > 1)
        return nerr(err, SNAP_EINVAL, "%s: row %llu, column %u: bool byte %u is not 0/1",
                    name, (unsigned long long)r, c, d[r]);
  }
  return 0;
}

/* opt->append: the rows of @p a appended to @p dataset's current version. */
static int npy_append(snap_store *store, const char *dataset, const struct npy *a,
                      const void *buf, size_t len, const char *name,
                      const struct ingest_options *opt, struct ingest_result *res,
                      struct snap_error *err) {
  uint64_t nrows = a->shape[0];
  uint32_t ncols = (uint32_t)a->shape[1];
  snap_publish *pub = NULL;
  int rc = snap_publish_append(store, dataset, nrows, NULL, 0, &pub, err);
  if (rc) return rc;
  uint32_t have = 0;
  while (snap_publish_column(pub, have)) have++;
  for (uint32_t c = 0; !rc && c < have && c < ncols; c++)
    if (snap_publish_column(pub, c)->type != a->type)
      rc = nerr(err, SNAP_EINVAL, "%s: column %u is %s, the dataset's \"%s\" is %s", name,
                c, snap_type_name(a->type), snap_publish_column(pub, c)->name,
                snap_type_name(snap_publish_column(pub, c)->type));
  if (!rc && have != ncols)
    rc = nerr(err, SNAP_EINVAL, "%s: %u columns, the dataset \"%s\" has %u", name, ncols,
              dataset, have);
  void **dst = rc ? NULL : calloc(ncols ? ncols : 1, sizeof *dst);
  if (!rc && !dst) rc = nerr(err, -ENOMEM, "%s: out of memory", name);
  for (uint32_t c = 0; !rc && c < ncols; c++)
    if (!(dst[c] = malloc(nrows * a->itemsize + 1)))
      rc = nerr(err, -ENOMEM, "%s: out of memory", name);
  if (!rc) copy_columns(a, (const unsigned char *)buf + a->data_off, dst);
  for (uint32_t c = 0; !rc && c < ncols; c++) rc = fix_column(a, c, dst[c], name, err);
  uint64_t old = snap_publish_nrows(pub) - nrows;
  for (uint32_t c = 0; !rc && c < ncols; c++)
    rc = snap_publish_copy_rows(pub, c, old, nrows, dst[c], err);
  if (!rc) rc = ingest_interrupted(opt, name, err);
  uint64_t version = 0;
  if (rc)
    snap_publish_abort(pub);
  else
    rc = snap_publish_commit(pub, &version, err); /* reads the rows: free after */
  for (uint32_t c = 0; dst && c < ncols; c++) free(dst[c]);
  free(dst);
  if (!rc && res) {
    *res = (struct ingest_result){0};
    res->version = version;
    res->nrows = nrows;
    res->ncols = ncols;
    res->input_bytes = len;
  }
  return rc;
}

int ingest_npy(snap_store *store, const char *dataset, const void *buf, size_t len,
               const struct ingest_options *opt, struct ingest_result *res,
               struct snap_error *err) {
  static const struct ingest_options defaults = {0};
  if (!opt) opt = &defaults;
  const char *name = opt->display_name ? opt->display_name : "<input>";
  struct npy a = {0};
  int rc = header_parse(&a, buf, len, name, err);
  if (rc) return rc;
  if (a.shape[1] > SNAP_COLUMNS_MAX) /* found by fuzz_npy: (0, 25777777) took minutes */
    return nerr(err, SNAP_EINVAL, "%s: shape has %llu columns, more than libsnap's %u",
                name, (unsigned long long)a.shape[1], SNAP_COLUMNS_MAX);
  uint32_t ncols = (uint32_t)a.shape[1];
  struct snap_field *fields = calloc(ncols, sizeof *fields);
  char(*names)[12] = calloc(ncols, sizeof *names);
  if (!fields || !names) {
    free(fields);
    free(names);
    return nerr(err, -ENOMEM, "%s: out of memory", name);
  }
  for (uint32_t c = 0; c < ncols; c++) {
    snprintf(names[c], sizeof names[c], "%u", c);
    fields[c] = (struct snap_field){.name = names[c], .type = a.type};
  }
  struct snap_schema schema = {.nrows = a.shape[0], .ncols = ncols, .fields = fields};
  snap_publish *pub = NULL;
  if (opt->append) {
    free(fields);
    free(names);
    return npy_append(store, dataset, &a, buf, len, name, opt, res, err);
  }
  rc = snap_publish_begin(store, dataset, &schema, &pub, err);
  free(fields);
  const unsigned char *src = (const unsigned char *)buf + a.data_off;
  void **dst = rc ? NULL : calloc(ncols, sizeof *dst);
  if (!rc && !dst) rc = nerr(err, -ENOMEM, "%s: out of memory", name);
  for (uint32_t c = 0; !rc && c < ncols; c++) {
    struct snap_fill fill;
    rc = snap_publish_fill(pub, c, &fill, err);
    dst[c] = fill.values;
  }
  if (!rc) {
    copy_columns(&a, src, dst);
    if (opt->progress) opt->progress(len / 2, len, opt->progress_arg);
  }
  for (uint32_t c = 0; !rc && c < ncols; c++) rc = fix_column(&a, c, dst[c], name, err);
  if (!rc) rc = ingest_interrupted(opt, name, err);
  free(dst);
  free(names);
  if (rc) {
    snap_publish_abort(pub);
    return rc;
  }
  uint64_t version = 0;
  rc = snap_publish_commit(pub, &version, err);
  if (!rc && res) {
    *res = (struct ingest_result){0};
    res->version = version;
    res->nrows = a.shape[0];
    res->ncols = ncols;
    res->input_bytes = len;
  }
  return rc;
}
