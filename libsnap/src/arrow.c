/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Arrow C Data / Stream Interface export of pinned versions (see arrow.h).
 *
 * The segment's buffers already have Arrow's layouts (values, LSB-first
 * validity bitmaps, int64 offsets + UTF-8 bytes, dictionaries), so an exported
 * array's buffers are pointers into the mapping. Each array node owns one pin
 * (snap_snapshot_ref), released by its release callback; children and
 * dictionaries are released by their parent unless a consumer moved them out
 * (then their release is NULL and the parent skips them), as the specification
 * allows.
 */
#define _GNU_SOURCE
#include "libsnap/arrow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Valid address for the buffers of zero-length arrays. */
static const uint64_t empty_buffer[8] __attribute__((aligned(64)));

/* ----------------------------------------------------------------- schema */

struct schema_priv {
  char *format, *name;
  struct ArrowSchema **children;
  int64_t n;
};

static void schema_release(struct ArrowSchema *s) {
  struct schema_priv *p = s->private_data;
  for (int64_t i = 0; i < p->n; i++) {
    if (p->children[i]->release) p->children[i]->release(p->children[i]);
    free(p->children[i]);
  }
  free(p->children);
  if (s->dictionary) {
    if (s->dictionary->release) s->dictionary->release(s->dictionary);
    free(s->dictionary);
  }
  free(p->format);
  free(p->name);
  free(p);
  s->release = NULL;
}

/* Initialise @p s with owned copies of format and name and @p n blank children. */
static int schema_init(struct ArrowSchema *s, const char *format, const char *name,
                       int64_t flags, int64_t n) {
  memset(s, 0, sizeof *s);
  struct schema_priv *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->format = strdup(format);
  p->name = strdup(name ? name : "");
  p->children = calloc(n ? (size_t)n : 1, sizeof *p->children);
  bool ok = p->format && p->name && p->children;
  for (int64_t i = 0; ok && i < n; i++) {
    p->children[i] = calloc(1, sizeof **p->children);
    ok = p->children[i] != NULL;
    if (ok) p->n = i + 1;
  }
  s->format = p->format;
  s->name = p->name;
  s->flags = flags;
  s->n_children = n;
  s->children = p->children;
  s->private_data = p;
  s->release = schema_release;
  if (!ok) {
    s->n_children = 0;
    schema_release(s);
    return -ENOMEM;
  }
  return 0;
}

static const char *index_format(enum snap_type t) {
  switch (t) {
    case SNAP_INT8:
      return "c";
    case SNAP_INT16:
      return "s";
    case SNAP_INT32:
      return "i";
    default:
      return "l";
  }
}

static int column_schema(const struct snap_column *c, struct ArrowSchema *s) {
  static const char *const formats[] = {
      [SNAP_INT8] = "c",         [SNAP_INT16] = "s",        [SNAP_INT32] = "i",
      [SNAP_INT64] = "l",        [SNAP_UINT8] = "C",        [SNAP_UINT16] = "S",
      [SNAP_UINT32] = "I",       [SNAP_UINT64] = "L",       [SNAP_FLOAT32] = "f",
      [SNAP_FLOAT64] = "g",      [SNAP_BOOL] = "b",         [SNAP_DURATION_NS] = "tDn",
      [SNAP_STRING] = "U",       [SNAP_DURATION_S] = "tDs", [SNAP_DURATION_MS] = "tDm",
      [SNAP_DURATION_US] = "tDu"};
  char buf[300];
  const char *format;
  if (snap__is_timestamp(c->type)) {
    char unit = c->type == SNAP_TIMESTAMP_S    ? 's'
                : c->type == SNAP_TIMESTAMP_MS ? 'm'
                : c->type == SNAP_TIMESTAMP_US ? 'u'
                                               : 'n';
    snprintf(buf, sizeof buf, "ts%c:%s", unit, c->timezone ? c->timezone : "");
    format = buf;
  } else if (c->type == SNAP_CATEGORY) {
    format = index_format(c->code_type);
  } else {
    format = formats[c->type];
  }
  bool nullable = (c->flags & SNAP_NULLABLE) || c->type == SNAP_CATEGORY;
  int rc = schema_init(s, format, c->name, nullable ? ARROW_FLAG_NULLABLE : 0, 0);
  if (rc || c->type != SNAP_CATEGORY) return rc;
  s->dictionary = calloc(1, sizeof *s->dictionary);
  if (!s->dictionary || schema_init(s->dictionary, "U", "", 0, 0)) {
    schema_release(s);
    return -ENOMEM;
  }
  return 0;
}

/* ------------------------------------------------------------------ array */

struct array_priv {
  snap_snapshot *snap;
  const void *bufs[3];
  struct ArrowArray **children;
  int64_t n;
  void *owned; /* a bitmap we had to build (bool values, category validity) */
};

static void array_release(struct ArrowArray *a) {
  struct array_priv *p = a->private_data;
  for (int64_t i = 0; i < p->n; i++) {
    if (p->children[i]->release) p->children[i]->release(p->children[i]);
    free(p->children[i]);
  }
  free(p->children);
  if (a->dictionary) {
    if (a->dictionary->release) a->dictionary->release(a->dictionary);
    free(a->dictionary);
  }
  free(p->owned);
  snap_unpin(p->snap);
  free(p);
  a->release = NULL;
}

static int array_init(struct ArrowArray *a, snap_snapshot *snap, int64_t length,
                      int64_t null_count, int64_t nbuf, const void *b0, const void *b1,
                      const void *b2, int64_t n) {
  memset(a, 0, sizeof *a);
  struct array_priv *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->children = calloc(n ? (size_t)n : 1, sizeof *p->children);
  bool ok = p->children != NULL;
  for (int64_t i = 0; ok && i < n; i++) {
    p->children[i] = calloc(1, sizeof **p->children);
    ok = p->children[i] != NULL;
    if (ok) p->n = i + 1;
  }
  p->snap = snap_snapshot_ref(snap);
  /* mandatory buffers of empty arrays still need an address */
  p->bufs[0] = b0;
  p->bufs[1] = b1 ? b1 : (nbuf > 1 ? (const void *)empty_buffer : NULL);
  p->bufs[2] = b2 ? b2 : (nbuf > 2 ? (const void *)empty_buffer : NULL);
  a->length = length;
  a->null_count = null_count;
  a->n_buffers = nbuf;
  a->buffers = p->bufs;
  a->n_children = n;
  a->children = p->children;
  a->private_data = p;
  a->release = array_release;
  if (!ok) {
    a->n_children = 0;
    array_release(a);
    return -ENOMEM;
  }
  return 0;
}

static int column_array(snap_snapshot *snap, const struct snap_column *c, uint64_t nrows,
                        struct ArrowArray *a) {
  int64_t n = (int64_t)nrows;
  int64_t nulls = c->validity ? -1 : 0;
  int rc;
  switch (c->type) {
    case SNAP_STRING:
      return array_init(a, snap, n, nulls, 3, c->validity, c->offsets, c->data, 0);
    case SNAP_BOOL: {
      /* one byte per value in the segment, one bit in Arrow: the one copy */
      uint8_t *bits = calloc(nrows / 8 + 1, 1);
      if (!bits) return -ENOMEM;
      const uint8_t *v = c->values;
      for (uint64_t i = 0; i < nrows; i++)
        bits[i / 8] |= (uint8_t)((v[i] != 0) << (i % 8));
      if ((rc = array_init(a, snap, n, nulls, 2, c->validity, bits, NULL, 0))) {
        free(bits);
        return rc;
      }
      ((struct array_priv *)a->private_data)->owned = bits;
      return 0;
    }
    case SNAP_CATEGORY: {
      /* code -1 means missing: Arrow needs that in a validity bitmap */
      uint8_t *valid = NULL;
      int64_t missing = 0;
      for (uint64_t i = 0; i < nrows; i++) {
        int64_t code = snap_column_code(c, i);
        bool ok = code >= 0 && (!c->validity || (c->validity[i / 8] >> (i % 8) & 1));
        if (!ok && !valid) {
          valid = malloc(nrows / 8 + 1);
          if (!valid) return -ENOMEM;
          memset(valid, 0xff, nrows / 8 + 1);
        }
        if (!ok) {
          valid[i / 8] &= (uint8_t) ~(1u << (i % 8));
          missing++;
        }
      }
      if ((rc = array_init(a, snap, n, missing, 2, valid, c->values, NULL, 0))) {
        free(valid);
        return rc;
      }
      ((struct array_priv *)a->private_data)->owned = valid;
      a->dictionary = calloc(1, sizeof *a->dictionary);
      if (!a->dictionary || array_init(a->dictionary, snap, (int64_t)c->dict_size, 0, 3,
                                       NULL, c->offsets, c->data, 0)) {
        array_release(a);
        return -ENOMEM;
      }
      return 0;
    }
    default:
      return array_init(a, snap, n, nulls, 2, c->validity, c->values, NULL, 0);
  }
}

/* ----------------------------------------------------------------- public */

int snap_arrow_export_column(snap_snapshot *snap, uint32_t col,
                             struct ArrowSchema *schema, struct ArrowArray *array,
                             struct snap_error *err) {
  const struct snap_column *c = snap_snapshot_column(snap, col);
  if (!c)
    return snap__err(err, SNAP_EINVAL, "%s: column %u out of range (%u columns)",
                     snap_snapshot_path(snap), col, snap_snapshot_ncols(snap));
  int rc = column_schema(c, schema);
  if (rc) return snap__errno(err, rc, "exporting column \"%.64s\"", c->name);
  if ((rc = column_array(snap, c, snap_snapshot_nrows(snap), array))) {
    schema->release(schema);
    return snap__errno(err, rc, "exporting column \"%.64s\"", c->name);
  }
  return 0;
}

static int export_schema(snap_snapshot *snap, struct ArrowSchema *schema) {
  uint32_t n = snap_snapshot_ncols(snap);
  int rc = schema_init(schema, "+s", "", 0, n);
  for (uint32_t i = 0; !rc && i < n; i++)
    rc = column_schema(snap_snapshot_column(snap, i), schema->children[i]);
  if (rc && schema->release) schema->release(schema);
  return rc;
}

static int export_array(snap_snapshot *snap, struct ArrowArray *array) {
  uint32_t n = snap_snapshot_ncols(snap);
  uint64_t nrows = snap_snapshot_nrows(snap);
  int rc = array_init(array, snap, (int64_t)nrows, 0, 1, NULL, NULL, NULL, n);
  for (uint32_t i = 0; !rc && i < n; i++)
    rc = column_array(snap, snap_snapshot_column(snap, i), nrows, array->children[i]);
  if (rc && array->release) array->release(array);
  return rc;
}

int snap_arrow_export(snap_snapshot *snap, struct ArrowSchema *schema,
                      struct ArrowArray *array, struct snap_error *err) {
  int rc = export_schema(snap, schema);
  if (rc)
    return snap__errno(err, rc, "%s: exporting the schema", snap_snapshot_path(snap));
  if ((rc = export_array(snap, array))) {
    schema->release(schema);
    return snap__errno(err, rc, "%s: exporting the arrays", snap_snapshot_path(snap));
  }
  return 0;
}

/* ----------------------------------------------------------------- stream */

struct stream_priv {
  snap_snapshot *snap;
  bool done;
  char error[256];
};

static int stream_get_schema(struct ArrowArrayStream *st, struct ArrowSchema *out) {
  struct stream_priv *p = st->private_data;
  int rc = export_schema(p->snap, out);
  if (rc) snprintf(p->error, sizeof p->error, "exporting the schema: %s", strerror(-rc));
  return -rc;
}

static int stream_get_next(struct ArrowArrayStream *st, struct ArrowArray *out) {
  struct stream_priv *p = st->private_data;
  if (p->done) { /* end of stream */
    memset(out, 0, sizeof *out);
    return 0;
  }
  int rc = export_array(p->snap, out);
  if (rc) {
    snprintf(p->error, sizeof p->error, "exporting the batch: %s", strerror(-rc));
    return -rc;
  }
  p->done = true;
  return 0;
}

static const char *stream_last_error(struct ArrowArrayStream *st) {
  struct stream_priv *p = st->private_data;
  return p->error[0] ? p->error : NULL;
}

static void stream_release(struct ArrowArrayStream *st) {
  struct stream_priv *p = st->private_data;
  snap_unpin(p->snap);
  free(p);
  st->release = NULL;
}

int snap_arrow_export_stream(snap_snapshot *snap, struct ArrowArrayStream *stream,
                             struct snap_error *err) {
  memset(stream, 0, sizeof *stream);
  struct stream_priv *p = calloc(1, sizeof *p);
  if (!p)
    return snap__errno(err, -ENOMEM, "%s: exporting a stream", snap_snapshot_path(snap));
  p->snap = snap_snapshot_ref(snap);
  stream->get_schema = stream_get_schema;
  stream->get_next = stream_get_next;
  stream->get_last_error = stream_last_error;
  stream->release = stream_release;
  stream->private_data = p;
  return 0;
}
