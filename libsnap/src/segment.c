/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Segment format v1: layout planning, writing and validation.
 *
 * A segment is untrusted input: snap__segment_parse() checks every field,
 * offset and length against the file size before any pointer leaves this
 * file, and copies what readers use into private memory so that nothing is
 * read twice from the mapping (no check-then-use window). docs/format.md
 * is the byte-by-byte description; keep the two in step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "segment format v1 is little-endian; add byte swapping first");

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

size_t snap_type_size(enum snap_type type) {
  switch (type) {
    case SNAP_INT8:
    case SNAP_UINT8:
    case SNAP_BOOL:
      return 1;
    case SNAP_INT16:
    case SNAP_UINT16:
      return 2;
    case SNAP_INT32:
    case SNAP_UINT32:
    case SNAP_FLOAT32:
      return 4;
    case SNAP_INT64:
    case SNAP_UINT64:
    case SNAP_FLOAT64:
    case SNAP_TIMESTAMP_NS:
    case SNAP_DURATION_NS:
    case SNAP_TIMESTAMP_S:
    case SNAP_TIMESTAMP_MS:
    case SNAP_TIMESTAMP_US:
    case SNAP_DURATION_S:
    case SNAP_DURATION_MS:
    case SNAP_DURATION_US:
      return 8;
    default:
      return 0;
  }
}

const char *snap_type_name(enum snap_type type) {
  static const char *const names[] = {
      NULL,           "int8",         "int16",         "int32",         "int64",
      "uint8",        "uint16",       "uint32",        "uint64",        "float32",
      "float64",      "bool",         "timestamp[ns]", "duration[ns]",  "string",
      "category",     "timestamp[s]", "timestamp[ms]", "timestamp[us]", "duration[s]",
      "duration[ms]", "duration[us]"};
  if ((unsigned)type >= sizeof names / sizeof names[0] || !names[type]) return "unknown";
  return names[type];
}

static bool is_code_type(uint32_t t) {
  return t == SNAP_INT8 || t == SNAP_INT16 || t == SNAP_INT32 || t == SNAP_INT64;
}

/* The width pandas picks for categorical codes (coerce_indexer_dtype). */
static enum snap_type auto_code_type(uint64_t n) {
  if (n < INT8_MAX) return SNAP_INT8;
  if (n < INT16_MAX) return SNAP_INT16;
  if (n < INT32_MAX) return SNAP_INT32;
  return SNAP_INT64;
}

bool snap__utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (len - i - 1 < n) return false;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

int snap__dataset_name_check(const char *name, struct snap_error *err) {
  if (!name) return snap__err(err, SNAP_EINVAL, "dataset name is NULL");
  size_t len = strlen(name);
  if (len == 0 || len > SNAP_DATASET_NAME_MAX)
    return snap__err(err, SNAP_EINVAL, "dataset name length %zu: must be 1..%d bytes",
                     len, SNAP_DATASET_NAME_MAX);
  if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || name[0] == '.')
    return snap__err(err, SNAP_EINVAL,
                     "dataset name \"%s\": must not contain '/' or start with '.'", name);
  if (!snap__utf8_valid(name, len))
    return snap__err(err, SNAP_EINVAL, "dataset name is not valid UTF-8");
  return 0;
}

/* The rule for a dataset being created (docs/design.md, "Dataset names"):
 * 1..255 bytes of ASCII letters, digits, '_', '-', '.', not starting with '.'.
 * No '@' (DATASET@VERSION), no space or control byte (one name per line in
 * listings), no non-ASCII (one spelling per name, no normalisation). */
int snap__dataset_name_new_check(const char *name, struct snap_error *err) {
  int rc = snap__dataset_name_check(name, err);
  if (rc) return rc;
  size_t bad = 0;
  for (; name[bad]; bad++) {
    unsigned char ch = (unsigned char)name[bad];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
      break;
  }
  if (!name[bad]) return 0;
  char esc[64];
  size_t n = 0;
  const char *p = name;
  for (; *p && n + 6 < sizeof esc; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\')
      n += (size_t)snprintf(esc + n, sizeof esc - n, "\\%c", ch);
    else if (ch >= 0x20 && ch < 0x7f)
      esc[n++] = (char)ch;
    else
      n += (size_t)snprintf(esc + n, sizeof esc - n, "\\x%02x", ch);
  }
  esc[n] = 0;
  return snap__err(err, SNAP_EINVAL,
                   "dataset name \"%s%s\": byte %zu (0x%02x) is not allowed; a new "
                   "dataset name is 1..%d bytes of ASCII letters, digits, '_', '-' and "
                   "'.', not starting with '.'",
                   esc, *p ? "..." : "", bad + 1, (unsigned char)name[bad],
                   SNAP_DATASET_NAME_MAX);
}

/* ------------------------------------------------------------------ layout */

struct bufref {
  uint64_t offset, length;
};

struct layout {
  uint32_t nblocks;
  uint32_t *col_block, *col_pos; /* per column */
  uint32_t *col_code;            /* per column: code type of categories */
  struct bufref *bufs;           /* ncols * SNAP__NBUF */
  uint32_t *blk_first;           /* per block: its first column (type, tz, flags) */
  uint32_t *blk_ncols;
  struct bufref *blk; /* per block */
  uint64_t manifest_size, data_offset, total, metadata_offset;
  uint64_t chunk_table, nchunks; /* v2 */
  uint64_t capacity;             /* v2: rows a block has room for (>= nrows) */
};

unsigned snap__write_format = SNAP__FORMAT_V2;

static void layout_free(struct layout *l) {
  free(l->col_block);
  free(l->col_pos);
  free(l->col_code);
  free(l->bufs);
  free(l->blk_first);
  free(l->blk_ncols);
  free(l->blk);
}

static const char *tz_of(const struct snap_field *f) {
  return snap__is_timestamp(f->type) && f->timezone && f->timezone[0] ? f->timezone
                                                                      : NULL;
}

static bool same_block(const struct snap_field *a, const struct snap_field *b) {
  if (a->type != b->type || (a->flags & SNAP_NULLABLE) != (b->flags & SNAP_NULLABLE))
    return false;
  const char *ta = tz_of(a), *tb = tz_of(b);
  return ta == tb || (ta && tb && !strcmp(ta, tb));
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

/* Reserve @p len bytes at 64-byte alignment after *end. */
static bool reserve(uint64_t *end, uint64_t len, struct bufref *ref) {
  uint64_t off = align_up(*end, SNAP__ALIGN);
  if (off < *end || __builtin_add_overflow(off, len, end)) return false;
  ref->offset = len ? off : 0;
  ref->length = len;
  return true;
}

static size_t column_entry_size(const struct snap_field *f) {
  const char *tz = tz_of(f);
  return align_up(SNAP__COLUMN_FIXED + strlen(f->name) + (tz ? strlen(tz) : 0), 8);
}

static int schema_check(const struct snap_schema *s, struct snap_error *err) {
  if (!s) return snap__err(err, SNAP_EINVAL, "schema is NULL");
  if (s->ncols && !s->fields) return snap__err(err, SNAP_EINVAL, "schema.fields is NULL");
  if (s->ncols > SNAP_COLUMNS_MAX)
    return snap__err(err, SNAP_EINVAL, "schema.ncols = %u: at most %u columns", s->ncols,
                     SNAP_COLUMNS_MAX);
  if (s->metadata_len && !s->metadata)
    return snap__err(err, SNAP_EINVAL, "schema.metadata is NULL with length %zu",
                     s->metadata_len);
  for (uint32_t i = 0; i < s->ncols; i++) {
    const struct snap_field *f = &s->fields[i];
    if (!f->name) return snap__err(err, SNAP_EINVAL, "column %u: name is NULL", i);
    size_t len = strlen(f->name);
    if (len == 0 || len > SNAP_COLUMN_NAME_MAX)
      return snap__err(err, SNAP_EINVAL, "column %u: name length %zu (1..%d)", i, len,
                       SNAP_COLUMN_NAME_MAX);
    if (!snap__utf8_valid(f->name, len))
      return snap__err(err, SNAP_EINVAL, "column %u: name is not valid UTF-8", i);
    if (f->type < SNAP_INT8 || f->type > SNAP__TYPE_LAST)
      return snap__err(err, SNAP_EINVAL, "column %u \"%.64s\": type %d unknown", i,
                       f->name, (int)f->type);
    if (f->flags & ~SNAP_NULLABLE)
      return snap__err(err, SNAP_EINVAL, "column %u \"%.64s\": flags 0x%x unknown", i,
                       f->name, f->flags);
    const char *tz = tz_of(f);
    if (tz && (strlen(tz) > 255 || !snap__utf8_valid(tz, strlen(tz))))
      return snap__err(err, SNAP_EINVAL, "column %u \"%.64s\": bad time zone name", i,
                       f->name);
    if (f->type == SNAP_CATEGORY && f->code_type && !is_code_type(f->code_type))
      return snap__err(err, SNAP_EINVAL, "column %u \"%.64s\": code_type %d not int8..64",
                       i, f->name, (int)f->code_type);
    if (f->type != SNAP_STRING && f->type != SNAP_CATEGORY && f->data_bytes)
      return snap__err(err, SNAP_EINVAL, "column %u \"%.64s\": data_bytes set on %s", i,
                       f->name, snap_type_name(f->type));
  }
  return 0;
}

static int layout_make(const struct snap_schema *s, unsigned fmt, unsigned shift,
                       uint64_t cap, struct layout *l, struct snap_error *err) {
  memset(l, 0, sizeof *l);
  int rc = schema_check(s, err);
  if (rc) return rc;
  if (fmt == SNAP__FORMAT_V1 || cap < s->nrows) cap = s->nrows;
  l->capacity = cap;
  uint32_t n = s->ncols;
  size_t cn = n ? n : 1;
  l->col_block = calloc(cn, sizeof *l->col_block);
  l->col_pos = calloc(cn, sizeof *l->col_pos);
  l->col_code = calloc(cn, sizeof *l->col_code);
  l->bufs = calloc(cn * SNAP__NBUF, sizeof *l->bufs);
  l->blk_first = calloc(cn, sizeof *l->blk_first);
  l->blk_ncols = calloc(cn, sizeof *l->blk_ncols);
  l->blk = calloc(cn, sizeof *l->blk);
  if (!l->col_block || !l->col_pos || !l->col_code || !l->bufs || !l->blk_first ||
      !l->blk_ncols || !l->blk) {
    layout_free(l);
    return snap__errno(err, -ENOMEM, "schema of %u columns", n);
  }
  /* Group fixed-width columns into blocks, in order of first appearance. */
  uint64_t manifest = 0;
  for (uint32_t i = 0; i < n; i++) {
    const struct snap_field *f = &s->fields[i];
    manifest += column_entry_size(f);
    l->col_block[i] = SNAP_NO_BLOCK;
    if (f->type == SNAP_CATEGORY)
      l->col_code[i] = f->code_type ? f->code_type : auto_code_type(f->dict_size);
    if (!snap_type_size(f->type)) continue;
    uint32_t b = 0;
    while (b < l->nblocks && !same_block(&s->fields[l->blk_first[b]], f)) b++;
    if (b == l->nblocks) l->blk_first[l->nblocks++] = i;
    l->col_block[i] = b;
    l->col_pos[i] = l->blk_ncols[b]++;
  }
  manifest += (uint64_t)l->nblocks * SNAP__BLOCK_ENTRY;
  l->metadata_offset = SNAP__HEADER_SIZE + manifest;
  manifest += s->metadata_len;
  l->manifest_size = manifest;

  /* Offsets relative to the data region first; moved by data_offset below. */
  uint64_t end = 0, len;
  bool ok = true;
  for (uint32_t b = 0; ok && b < l->nblocks; b++) {
    size_t sz = snap_type_size(s->fields[l->blk_first[b]].type);
    ok = mul_ok(cap, sz, &len) && mul_ok(len, l->blk_ncols[b], &len) &&
         reserve(&end, len, &l->blk[b]);
  }
  uint64_t bitmap = s->nrows / 8 + (s->nrows % 8 != 0);
  for (uint32_t i = 0; ok && i < n; i++) {
    const struct snap_field *f = &s->fields[i];
    struct bufref *r = &l->bufs[(size_t)i * SNAP__NBUF];
    if (l->col_block[i] != SNAP_NO_BLOCK) {
      uint64_t row = s->nrows * snap_type_size(f->type); /* no overflow: block fit */
      uint64_t stride = cap * snap_type_size(f->type);
      r[SNAP__BUF_VALUES].offset =
          l->blk[l->col_block[i]].offset + stride * l->col_pos[i];
      r[SNAP__BUF_VALUES].length = row;
      if (!row) r[SNAP__BUF_VALUES].offset = 0;
    } else if (f->type == SNAP_STRING) {
      ok = mul_ok(s->nrows + 1, 8, &len) && s->nrows != UINT64_MAX &&
           reserve(&end, len, &r[SNAP__BUF_OFFSETS]) &&
           reserve(&end, f->data_bytes, &r[SNAP__BUF_DATA]);
    } else { /* SNAP_CATEGORY */
      ok = mul_ok(s->nrows, snap_type_size(l->col_code[i]), &len) &&
           reserve(&end, len, &r[SNAP__BUF_VALUES]) && f->dict_size != UINT64_MAX &&
           mul_ok(f->dict_size + 1, 8, &len) &&
           reserve(&end, len, &r[SNAP__BUF_OFFSETS]) &&
           reserve(&end, f->data_bytes, &r[SNAP__BUF_DATA]);
    }
    if (ok && (f->flags & SNAP_NULLABLE))
      ok = reserve(&end, bitmap, &r[SNAP__BUF_VALIDITY]);
  }
  if (!ok || end > (UINT64_MAX >> 2)) {
    layout_free(l);
    return snap__err(err, SNAP_EINVAL, "table of %llu rows x %u columns is too large",
                     (unsigned long long)s->nrows, n);
  }
  uint64_t data_size;
  if (fmt == SNAP__FORMAT_V1) {
    l->data_offset = align_up(SNAP__HEADER_SIZE + manifest, 4096);
    data_size = align_up(end, SNAP__ALIGN);
  } else {
    /* v2: whole chunks, and room for the largest chunk table (every file) so
     * that the data region never moves when the table grows at seal. */
    uint64_t chunk = 1ull << shift;
    data_size = align_up(end, chunk);
    l->nchunks = data_size >> shift;
    l->chunk_table = align_up(SNAP__HEADER_SIZE + manifest, 8);
    l->manifest_size =
        l->chunk_table + l->nchunks * SNAP__CHUNK_ENTRY - SNAP__HEADER_SIZE;
    l->data_offset = align_up(
        l->chunk_table + l->nchunks * SNAP__CHUNK_ENTRY + 8ull * SNAP__MAX_FILES, chunk);
  }
  for (uint32_t b = 0; b < l->nblocks; b++)
    if (l->blk[b].length) l->blk[b].offset += l->data_offset;
  for (size_t k = 0; k < (size_t)n * SNAP__NBUF; k++)
    if (l->bufs[k].length) l->bufs[k].offset += l->data_offset;
  l->total = l->data_offset + data_size;
  return 0;
}

int snap__segment_plan(const struct snap_schema *schema, unsigned shift, uint64_t cap,
                       uint64_t *total, uint64_t *head, struct snap_error *err) {
  struct layout l;
  int rc = layout_make(schema, snap__write_format, shift, cap, &l, err);
  if (rc) return rc;
  *total = l.total;
  *head = l.chunk_table
              ? l.chunk_table + l.nchunks * SNAP__CHUNK_ENTRY + 8ull * SNAP__MAX_FILES
              : SNAP__HEADER_SIZE + l.manifest_size;
  layout_free(&l);
  return 0;
}

static void put_ref(uint8_t *p, const struct bufref *r) {
  put32(p, 0); /* file index: 0 = this segment */
  put32(p + 4, 0);
  put64(p + 8, r->offset);
  put64(p + 16, r->length);
}

void snap__segment_write(uint8_t *base, uint64_t total, const struct snap_schema *s,
                         unsigned shift, uint64_t cap, const char *dataset,
                         uint64_t version, const uint8_t store_id[16],
                         uint64_t created_ns) {
  struct layout l;
  unsigned fmt = snap__write_format;
  if (layout_make(s, fmt, shift, cap, &l, NULL)) abort(); /* planned: cannot fail now */
  if (l.total != total) abort();
  memcpy(base + SNAP__H_MAGIC, SNAP__MAGIC, 8);
  put32(base + SNAP__H_FORMAT, fmt);
  if (fmt == SNAP__FORMAT_V2) { /* the table itself starts all zero: own chunks */
    put32(base + SNAP__H_CHUNK_SHIFT, shift);
    put32(base + SNAP__H_NFILES, 0);
    put64(base + SNAP__H_CHUNK_TABLE, l.chunk_table);
    put64(base + SNAP__H_NCHUNKS, l.nchunks);
    put64(base + SNAP__H_ROW_CAPACITY, l.capacity);
  }
  put32(base + SNAP__H_HEADER_SIZE, SNAP__HEADER_SIZE);
  put64(base + SNAP__H_FLAGS, 0);
  put64(base + SNAP__H_TOTAL_SIZE, total);
  put64(base + SNAP__H_VERSION, version);
  put64(base + SNAP__H_NROWS, s->nrows);
  put32(base + SNAP__H_NCOLS, s->ncols);
  put32(base + SNAP__H_NBLOCKS, l.nblocks);
  put64(base + SNAP__H_MANIFEST_OFFSET, SNAP__HEADER_SIZE);
  put64(base + SNAP__H_MANIFEST_SIZE, l.manifest_size);
  put64(base + SNAP__H_DATA_OFFSET, l.data_offset);
  put64(base + SNAP__H_DATA_SIZE, total - l.data_offset);
  memcpy(base + SNAP__H_STORE_ID, store_id, 16);
  put64(base + SNAP__H_CREATED_NS, created_ns);
  put64(base + SNAP__H_METADATA_OFFSET, s->metadata_len ? l.metadata_offset : 0);
  put64(base + SNAP__H_METADATA_SIZE, s->metadata_len);
  size_t nlen = strlen(dataset);
  base[SNAP__H_NAME_LEN] = (uint8_t)nlen;
  base[SNAP__H_NAME_LEN + 1] = 0;
  memcpy(base + SNAP__H_NAME, dataset, nlen);

  uint8_t *p = base + SNAP__HEADER_SIZE;
  for (uint32_t b = 0; b < l.nblocks; b++, p += SNAP__BLOCK_ENTRY) {
    const struct snap_field *f = &s->fields[l.blk_first[b]];
    put32(p, f->type);
    put32(p + 4, f->flags & SNAP_NULLABLE);
    put32(p + 8, l.blk_ncols[b]);
    put32(p + 12, 0); /* file index */
    put64(p + 16, l.blk[b].length ? l.blk[b].offset : 0);
    put64(p + 24, l.blk[b].length);
  }
  for (uint32_t i = 0; i < s->ncols; i++) {
    const struct snap_field *f = &s->fields[i];
    const char *tz = tz_of(f);
    size_t name_len = strlen(f->name), tz_len = tz ? strlen(tz) : 0;
    size_t esz = column_entry_size(f);
    put32(p, (uint32_t)esz);
    put32(p + 4, f->type);
    put32(p + 8, f->flags & SNAP_NULLABLE);
    put32(p + 12, l.col_block[i]);
    put32(p + 16, l.col_pos[i]);
    put32(p + 20, l.col_code[i]);
    put32(p + 24, (uint32_t)name_len);
    put32(p + 28, (uint32_t)tz_len);
    put64(p + 32, f->type == SNAP_CATEGORY ? f->dict_size : 0);
    put64(p + 40, f->type == SNAP_STRING || f->type == SNAP_CATEGORY ? f->data_bytes : 0);
    for (int k = 0; k < SNAP__NBUF; k++)
      put_ref(p + 48 + k * SNAP__BUFREF, &l.bufs[(size_t)i * SNAP__NBUF + k]);
    memcpy(p + SNAP__COLUMN_FIXED, f->name, name_len);
    if (tz_len) memcpy(p + SNAP__COLUMN_FIXED + name_len, tz, tz_len);
    p += esz;
  }
  if (s->metadata_len) memcpy(p, s->metadata, s->metadata_len);
  layout_free(&l);
}

/* ------------------------------------------------------------------ hashes */

uint64_t snap__header_hash(const uint8_t *base, uint64_t manifest_size) {
  static const uint8_t zero[8];
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, base, SNAP__H_HEADER_HASH);
  XXH3_64bits_update(&st, zero, 8);
  XXH3_64bits_update(&st, base + SNAP__H_HEADER_HASH + 8,
                     SNAP__HEADER_SIZE - SNAP__H_HEADER_HASH - 8);
  XXH3_64bits_update(&st, base + SNAP__HEADER_SIZE, manifest_size);
  return XXH3_64bits_digest(&st);
}

void snap__data_hash(const uint8_t *base, uint64_t data_offset, uint64_t data_size,
                     uint64_t out[2]) {
  XXH128_hash_t h = XXH3_128bits(base + data_offset, data_size);
  out[0] = h.low64;
  out[1] = h.high64;
}

uint64_t snap__chunk_hash(const void *p, uint64_t len) { return XXH3_64bits(p, len); }

uint64_t snap__zero_chunk_hash(unsigned shift) {
  static const uint8_t z[4096];
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  for (uint64_t i = 0; i < 1ull << shift; i += sizeof z)
    XXH3_64bits_update(&st, z, sizeof z);
  return XXH3_64bits_digest(&st);
}

bool snap__is_hole(int fd, uint64_t off, uint64_t len) {
  off_t d = lseek(fd, (off_t)off, SEEK_DATA);
  return (d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= off + len);
}

void snap__table_hash(const uint8_t *table, uint64_t nchunks, uint64_t out[2]) {
  /* the chunk hashes only, not where the chunks are: equal data, equal hash */
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  for (uint64_t k = 0; k < nchunks; k++)
    XXH3_128bits_update(&st, table + k * SNAP__CHUNK_ENTRY, 8);
  XXH128_hash_t h = XXH3_128bits_digest(&st);
  out[0] = h.low64;
  out[1] = h.high64;
}

void snap__segment_seal(uint8_t *base, uint64_t size) {
  uint64_t doff = snap__get64(base + SNAP__H_DATA_OFFSET), h[2];
  if (snap__get32(base + SNAP__H_FORMAT) == SNAP__FORMAT_V2) {
    /* v2: the chunk hashes are in the table already; the data hash covers it */
    snap__table_hash(base + snap__get64(base + SNAP__H_CHUNK_TABLE),
                     snap__get64(base + SNAP__H_NCHUNKS), h);
  } else {
    snap__data_hash(base, doff, size - doff, h);
  }
  put64(base + SNAP__H_DATA_HASH_LO, h[0]);
  put64(base + SNAP__H_DATA_HASH_HI, h[1]);
  put64(base + SNAP__H_HEADER_HASH,
        snap__header_hash(base, snap__get64(base + SNAP__H_MANIFEST_SIZE)));
}

/* ------------------------------------------------------------------- parse */

void snap__segment_free(struct snap__segment *seg) {
  if (!seg) return;
  free(seg->files);
  free(seg->chunks);
  seg->files = NULL;
  seg->chunks = NULL;
  free(seg->cols);
  free(seg->blocks);
  free(seg->block_cols);
  free(seg->strings);
  seg->cols = NULL;
  seg->blocks = NULL;
  seg->block_cols = NULL;
  seg->strings = NULL;
}

#define CORRUPT(...)                                 \
  do {                                               \
    rc = snap__err(err, SNAP_ECORRUPT, __VA_ARGS__); \
    goto fail;                                       \
  } while (0)

/* A buffer reference must lie inside the data region, aligned, file index 0. */
static int ref_check(const uint8_t *p, const struct snap__segment *seg, uint64_t want,
                     uint64_t align, const char *what, uint32_t col, const char *buf,
                     struct snap_error *err) {
  uint32_t file = snap__get32(p);
  uint64_t off = snap__get64(p + 8), len = snap__get64(p + 16);
  if (file != 0)
    return snap__err(err, SNAP_EFORMAT,
                     "%s: column %u %s buffer: file index %u (v1 readers support 0 only)",
                     what, col, buf, file);
  if (snap__get32(p + 4) != 0)
    return snap__err(err, SNAP_ECORRUPT, "%s: column %u %s buffer: reserved field = %u",
                     what, col, buf, snap__get32(p + 4));
  if (len != want)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: column %u %s buffer: length = %llu, expected %llu", what, col,
                     buf, (unsigned long long)len, (unsigned long long)want);
  if (len == 0) return 0;
  if (off < seg->data_offset || off > seg->size || len > seg->size - off || off % align)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: column %u %s buffer: offset = %llu length %llu outside data "
                     "[%llu, %llu) or misaligned",
                     what, col, buf, (unsigned long long)off, (unsigned long long)len,
                     (unsigned long long)seg->data_offset, (unsigned long long)seg->size);
  return 0;
}

/* Offsets of strings or a dictionary: start at 0, never decrease, end at @p end. */
static int offsets_check(const int64_t *o, uint64_t n, uint64_t end, const char *what,
                         uint32_t col, const char *kind, struct snap_error *err) {
  if (o[0] != 0)
    return snap__err(err, SNAP_ECORRUPT, "%s: column %u %s offsets[0] = %lld, expected 0",
                     what, col, kind, (long long)o[0]);
  for (uint64_t i = 0; i < n; i++)
    if (o[i + 1] < o[i])
      return snap__err(err, SNAP_ECORRUPT,
                       "%s: column %u %s offsets[%llu] = %lld < offsets[%llu] = %lld",
                       what, col, kind, (unsigned long long)(i + 1), (long long)o[i + 1],
                       (unsigned long long)i, (long long)o[i]);
  if ((uint64_t)o[n] != end)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: column %u %s offsets[%llu] = %lld, expected data length %llu",
                     what, col, kind, (unsigned long long)n, (long long)o[n],
                     (unsigned long long)end);
  return 0;
}

/* v2: the chunk geometry and where the table lies. */
static int chunk_geometry(const uint8_t *base, struct snap__segment *seg, uint64_t mend,
                          const char *what, struct snap_error *err) {
  uint32_t shift = snap__get32(base + SNAP__H_CHUNK_SHIFT);
  uint32_t nfiles = snap__get32(base + SNAP__H_NFILES);
  uint64_t table = snap__get64(base + SNAP__H_CHUNK_TABLE);
  uint64_t nchunks = snap__get64(base + SNAP__H_NCHUNKS), tlen;
  if (shift < SNAP__CHUNK_SHIFT_MIN || shift > SNAP__CHUNK_SHIFT_MAX)
    return snap__err(err, SNAP_ECORRUPT, "%s: chunk_shift = %u (%u..%u)", what, shift,
                     SNAP__CHUNK_SHIFT_MIN, SNAP__CHUNK_SHIFT_MAX);
  uint64_t chunk = 1ull << shift;
  if (seg->data_offset % chunk || seg->data_size % chunk ||
      nchunks != seg->data_size >> shift)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: data_offset = %llu data_size = %llu are not %llu whole chunks "
                     "of %llu bytes",
                     what, (unsigned long long)seg->data_offset,
                     (unsigned long long)seg->data_size, (unsigned long long)nchunks,
                     (unsigned long long)chunk);
  if (nfiles > SNAP__MAX_FILES)
    return snap__err(err, SNAP_ECORRUPT, "%s: nfiles = %u (at most %u)", what, nfiles,
                     SNAP__MAX_FILES);
  /* nchunks <= data_size / 4096 bounds the product */
  tlen = nchunks * SNAP__CHUNK_ENTRY + 8ull * nfiles;
  if (table % 8 || table < SNAP__HEADER_SIZE || table > mend || tlen != mend - table)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: chunk table at %llu (%llu chunks, %u files) does not end the "
                     "manifest at %llu",
                     what, (unsigned long long)table, (unsigned long long)nchunks, nfiles,
                     (unsigned long long)mend);
  uint64_t cap = snap__get64(base + SNAP__H_ROW_CAPACITY);
  if (cap < seg->nrows || cap > (UINT64_MAX >> 4))
    return snap__err(err, SNAP_ECORRUPT, "%s: row_capacity = %llu, below nrows %llu",
                     what, (unsigned long long)cap, (unsigned long long)seg->nrows);
  seg->chunk_shift = shift;
  seg->nfiles = nfiles;
  seg->nchunks = nchunks;
  seg->chunk_table = table;
  seg->capacity = cap;
  return 0;
}

/* v2: the file table and the chunk entries, copied out (after the geometry
 * checks of chunk_geometry()). On failure the caller frees @p seg. */
static int chunk_entries(const uint8_t *base, struct snap__segment *seg, const char *what,
                         struct snap_error *err) {
  uint64_t table = seg->chunk_table, nchunks = seg->nchunks;
  uint32_t nfiles = seg->nfiles;
  seg->chunks = malloc((nchunks ? nchunks : 1) * sizeof *seg->chunks);
  seg->files = malloc((nfiles ? nfiles : 1) * sizeof *seg->files);
  if (!seg->chunks || !seg->files) {
    return snap__errno(err, -ENOMEM, "%s: chunk table of %llu chunks", what,
                       (unsigned long long)nchunks);
  }
  const uint8_t *f = base + table + nchunks * SNAP__CHUNK_ENTRY;
  for (uint32_t i = 0; i < nfiles; i++) {
    uint64_t v = snap__get64(f + 8 * i);
    /* a file strictly older than this version, in increasing order; a version
     * 0 segment (detached, not adopted yet) borrows nothing */
    if (v == 0 || v >= seg->version || (i && v <= seg->files[i - 1])) {
      return snap__err(err, SNAP_ECORRUPT,
                       "%s: file table entry %u = version %llu (must increase and be "
                       "below this version %llu)",
                       what, i + 1, (unsigned long long)v,
                       (unsigned long long)seg->version);
    }
    seg->files[i] = v;
  }
  for (uint64_t k = 0; k < nchunks; k++) {
    const uint8_t *e = base + table + k * SNAP__CHUNK_ENTRY;
    uint32_t file = snap__get32(e + 8), rsv = snap__get32(e + 12);
    if (file > nfiles || rsv) {
      return snap__err(err, SNAP_ECORRUPT,
                       "%s: chunk %llu: file index = %u (%u files), reserved = %u", what,
                       (unsigned long long)k, file, nfiles, rsv);
    }
    seg->chunks[k].hash = snap__get64(e);
    seg->chunks[k].file = file;
  }
  return 0;
}

int snap__segment_parse(const uint8_t *base, uint64_t size, unsigned flags,
                        const char *what, const char *dataset, uint64_t version,
                        struct snap__segment *seg, struct snap_error *err) {
  int rc = 0;
  memset(seg, 0, sizeof *seg);
  seg->base = base;
  seg->size = size;
  if (size < SNAP__HEADER_SIZE)
    return snap__err(err, SNAP_ECORRUPT, "%s: file size %llu is smaller than the header",
                     what, (unsigned long long)size);
  if (memcmp(base, SNAP__MAGIC, 8))
    return snap__err(err, SNAP_ECORRUPT, "%s: magic is not a libsnap segment", what);
  uint32_t fmt = snap__get32(base + SNAP__H_FORMAT);
  if (fmt != SNAP__FORMAT_V1 && fmt != SNAP__FORMAT_V2)
    return snap__err(err, SNAP_EFORMAT,
                     "%s: format version = %u, this library reads versions 1 to %d", what,
                     fmt, SNAP_FORMAT_VERSION);
  seg->format = fmt;
  uint32_t hsize = snap__get32(base + SNAP__H_HEADER_SIZE);
  if (hsize != SNAP__HEADER_SIZE)
    return snap__err(err, SNAP_ECORRUPT, "%s: header_size = %u, expected %u", what, hsize,
                     SNAP__HEADER_SIZE);
  uint64_t msize = snap__get64(base + SNAP__H_MANIFEST_SIZE);
  uint64_t moff = snap__get64(base + SNAP__H_MANIFEST_OFFSET);
  uint64_t total = snap__get64(base + SNAP__H_TOTAL_SIZE);
  if (total != size)
    return snap__err(err, SNAP_ECORRUPT, "%s: total_size = %llu but the file has %llu",
                     what, (unsigned long long)total, (unsigned long long)size);
  if (moff != SNAP__HEADER_SIZE || msize > size - SNAP__HEADER_SIZE)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: manifest at %llu size %llu lies outside the file", what,
                     (unsigned long long)moff, (unsigned long long)msize);
  if (!(flags & SNAP__SEG_NO_HASH)) {
    uint64_t want = snap__get64(base + SNAP__H_HEADER_HASH),
             got = snap__header_hash(base, msize);
    if (want != got)
      return snap__err(err, SNAP_ECORRUPT,
                       "%s: header checksum = %016llx, computed %016llx", what,
                       (unsigned long long)want, (unsigned long long)got);
  }
  uint64_t hflags = snap__get64(base + SNAP__H_FLAGS);
  if (hflags)
    return snap__err(err, SNAP_EFORMAT, "%s: header flags = 0x%llx unknown to v%u", what,
                     (unsigned long long)hflags, fmt);
  seg->version = snap__get64(base + SNAP__H_VERSION);
  seg->nrows = snap__get64(base + SNAP__H_NROWS);
  seg->ncols = snap__get32(base + SNAP__H_NCOLS);
  seg->nblocks = snap__get32(base + SNAP__H_NBLOCKS);
  seg->data_offset = snap__get64(base + SNAP__H_DATA_OFFSET);
  seg->data_size = snap__get64(base + SNAP__H_DATA_SIZE);
  seg->created_ns = snap__get64(base + SNAP__H_CREATED_NS);
  seg->data_hash[0] = snap__get64(base + SNAP__H_DATA_HASH_LO);
  seg->data_hash[1] = snap__get64(base + SNAP__H_DATA_HASH_HI);
  seg->header_hash = snap__get64(base + SNAP__H_HEADER_HASH);
  memcpy(seg->store_id, base + SNAP__H_STORE_ID, 16);
  if (seg->data_offset < SNAP__HEADER_SIZE + msize || seg->data_offset > size ||
      seg->data_offset % SNAP__ALIGN || seg->data_size != size - seg->data_offset)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: data_offset = %llu data_size = %llu do not fit file size %llu "
                     "after manifest end %llu",
                     what, (unsigned long long)seg->data_offset,
                     (unsigned long long)seg->data_size, (unsigned long long)size,
                     (unsigned long long)(SNAP__HEADER_SIZE + msize));
  unsigned nlen = base[SNAP__H_NAME_LEN] | (unsigned)base[SNAP__H_NAME_LEN + 1] << 8;
  if (nlen == 0 || nlen > SNAP_DATASET_NAME_MAX)
    return snap__err(err, SNAP_ECORRUPT, "%s: name_len = %u", what, nlen);
  memcpy(seg->dataset, base + SNAP__H_NAME, nlen);
  seg->dataset[nlen] = 0;
  if (strlen(seg->dataset) != nlen || !snap__utf8_valid(seg->dataset, nlen))
    return snap__err(err, SNAP_ECORRUPT, "%s: dataset name is not NUL-free UTF-8", what);
  if (dataset && strcmp(dataset, seg->dataset))
    return snap__err(err, SNAP_ECORRUPT, "%s: dataset name = \"%s\", expected \"%s\"",
                     what, seg->dataset, dataset);
  if (version && version != seg->version)
    return snap__err(err, SNAP_ECORRUPT, "%s: version = %llu, expected %llu", what,
                     (unsigned long long)seg->version, (unsigned long long)version);
  uint64_t meta_off = snap__get64(base + SNAP__H_METADATA_OFFSET);
  uint64_t meta_len = snap__get64(base + SNAP__H_METADATA_SIZE);
  uint64_t mend = SNAP__HEADER_SIZE + msize;
  if (fmt == SNAP__FORMAT_V2 && (rc = chunk_geometry(base, seg, mend, what, err)))
    return rc;
  /* v2: the column entries and the blob end where the chunk table starts */
  if (fmt == SNAP__FORMAT_V2) mend = seg->chunk_table;
  if (fmt == SNAP__FORMAT_V1) seg->capacity = seg->nrows;
  if (meta_len &&
      (meta_off < SNAP__HEADER_SIZE || meta_off > mend || meta_len > mend - meta_off))
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: metadata at %llu length %llu outside the manifest", what,
                     (unsigned long long)meta_off, (unsigned long long)meta_len);
  seg->metadata = meta_len ? base + meta_off : NULL;
  seg->metadata_len = meta_len;
  /* Every entry is at least SNAP__COLUMN_FIXED / SNAP__BLOCK_ENTRY bytes, so the
   * counts are bounded by the manifest size before anything is allocated. */
  if (seg->nblocks > seg->ncols || (uint64_t)seg->nblocks * SNAP__BLOCK_ENTRY +
                                           (uint64_t)seg->ncols * SNAP__COLUMN_FIXED >
                                       msize)
    return snap__err(err, SNAP_ECORRUPT,
                     "%s: ncols = %u nblocks = %u do not fit a manifest of %llu bytes",
                     what, seg->ncols, seg->nblocks, (unsigned long long)msize);

  seg->cols = calloc(seg->ncols ? seg->ncols : 1, sizeof *seg->cols);
  seg->blocks = calloc(seg->nblocks ? seg->nblocks : 1, sizeof *seg->blocks);
  seg->block_cols = calloc(seg->ncols ? seg->ncols : 1, sizeof *seg->block_cols);
  seg->strings = malloc(msize + 2 * (size_t)seg->ncols + 1);
  if (!seg->cols || !seg->blocks || !seg->block_cols || !seg->strings) {
    snap__segment_free(seg);
    return snap__errno(err, -ENOMEM, "%s: manifest of %u columns", what, seg->ncols);
  }
  char *strp = seg->strings;
  const uint8_t *p = base + SNAP__HEADER_SIZE;
  uint64_t *boff = calloc(seg->nblocks ? seg->nblocks : 1, sizeof *boff);
  uint32_t *bcount = calloc(seg->nblocks ? seg->nblocks : 1, sizeof *bcount);
  if (!boff || !bcount) {
    free(boff);
    free(bcount);
    snap__segment_free(seg);
    return snap__errno(err, -ENOMEM, "%s: manifest of %u blocks", what, seg->nblocks);
  }
  uint32_t assigned = 0;
  for (uint32_t b = 0; b < seg->nblocks; b++, p += SNAP__BLOCK_ENTRY) {
    struct snap_block *blk = &seg->blocks[b];
    uint32_t type = snap__get32(p), bflags = snap__get32(p + 4),
             ncols = snap__get32(p + 8);
    uint32_t file = snap__get32(p + 12);
    uint64_t off = snap__get64(p + 16), len = snap__get64(p + 24), want;
    size_t sz = snap_type_size(type);
    if (!sz) CORRUPT("%s: block %u: type = %u is not a fixed-width type", what, b, type);
    if (bflags & ~SNAP_NULLABLE) CORRUPT("%s: block %u: flags = 0x%x", what, b, bflags);
    if (file != 0) {
      rc = snap__err(err, SNAP_EFORMAT,
                     "%s: block %u: file index %u (v1 readers support 0 only)", what, b,
                     file);
      goto fail;
    }
    if (ncols == 0 || ncols > seg->ncols - assigned)
      CORRUPT("%s: block %u: ncols = %u", what, b, ncols);
    if (!mul_ok(seg->capacity, sz, &want) || !mul_ok(want, ncols, &want) || len != want)
      CORRUPT("%s: block %u: length = %llu, expected %u x %llu rows x %zu", what, b,
              (unsigned long long)len, ncols, (unsigned long long)seg->capacity, sz);
    if (len &&
        (off < seg->data_offset || off > size || len > size - off || off % SNAP__ALIGN))
      CORRUPT("%s: block %u: offset = %llu length %llu outside data or misaligned", what,
              b, (unsigned long long)off, (unsigned long long)len);
    blk->type = type;
    blk->flags = bflags;
    blk->ncols = ncols;
    blk->columns = seg->block_cols + assigned;
    blk->data = len ? base + off : NULL;
    blk->data_bytes = len;
    blk->column_stride = seg->capacity * sz; /* the length check bounds it */
    boff[b] = off;
    assigned += ncols;
  }
  const uint8_t *mend_p = base + mend;
  uint64_t bitmap = seg->nrows / 8 + (seg->nrows % 8 != 0);
  for (uint32_t i = 0; i < seg->ncols; i++) {
    struct snap_column *c = &seg->cols[i];
    if ((uint64_t)(mend_p - p) < SNAP__COLUMN_FIXED)
      CORRUPT("%s: column %u: entry runs past the manifest end", what, i);
    uint32_t esz = snap__get32(p), type = snap__get32(p + 4), cflags = snap__get32(p + 8);
    uint32_t block = snap__get32(p + 12), pos = snap__get32(p + 16),
             code = snap__get32(p + 20);
    uint32_t name_len = snap__get32(p + 24), tz_len = snap__get32(p + 28);
    uint64_t dict = snap__get64(p + 32), dbytes = snap__get64(p + 40);
    if (esz % 8 || esz < SNAP__COLUMN_FIXED || esz > (uint64_t)(mend_p - p) ||
        (uint64_t)name_len + tz_len > esz - SNAP__COLUMN_FIXED)
      CORRUPT("%s: column %u: entry size = %u with name %u and time zone %u bytes", what,
              i, esz, name_len, tz_len);
    const char *name = (const char *)p + SNAP__COLUMN_FIXED;
    if (name_len == 0 || memchr(name, 0, name_len) || !snap__utf8_valid(name, name_len))
      CORRUPT("%s: column %u: name is empty, has NUL or is not UTF-8", what, i);
    memcpy(strp, name, name_len);
    strp[name_len] = 0;
    c->name = strp;
    c->name_len = name_len;
    strp += name_len + 1;
    if (tz_len) {
      const char *tz = name + name_len;
      if (!snap__is_timestamp(type) || memchr(tz, 0, tz_len) ||
          !snap__utf8_valid(tz, tz_len))
        CORRUPT("%s: column %u \"%.64s\": bad time zone of %u bytes", what, i, c->name,
                tz_len);
      memcpy(strp, tz, tz_len);
      strp[tz_len] = 0;
      c->timezone = strp;
      strp += tz_len + 1;
    }
    if (type < SNAP_INT8 || type > SNAP__TYPE_LAST)
      CORRUPT("%s: column %u \"%.64s\": type = %u unknown", what, i, c->name, type);
    if (cflags & ~SNAP_NULLABLE)
      CORRUPT("%s: column %u \"%.64s\": flags = 0x%x", what, i, c->name, cflags);
    c->type = type;
    c->flags = cflags;
    c->block = block;
    c->block_pos = pos;
    const uint8_t *refs = p + 48;
    size_t sz = snap_type_size(type);
#define REF(k, want, al, nm)                                                             \
  do {                                                                                   \
    if ((rc =                                                                            \
             ref_check(refs + (k)*SNAP__BUFREF, seg, (want), (al), what, i, (nm), err))) \
      goto fail;                                                                         \
  } while (0)
#define PTR(k)                                           \
  (snap__get64(refs + (k)*SNAP__BUFREF + 16)             \
       ? base + snap__get64(refs + (k)*SNAP__BUFREF + 8) \
       : NULL)
    if (sz) {
      if (block >= seg->nblocks || pos >= seg->blocks[block].ncols ||
          seg->blocks[block].type != type ||
          seg->blocks[block].flags != (cflags & SNAP_NULLABLE))
        CORRUPT(
            "%s: column %u \"%.64s\": block = %u position %u does not match a %s "
            "block",
            what, i, c->name, block, pos, snap_type_name(type));
      if (bcount[block] != pos)
        CORRUPT("%s: column %u \"%.64s\": block %u position = %u, expected %u", what, i,
                c->name, block, pos, bcount[block]);
      const char *btz = seg->blocks[block].timezone;
      if (bcount[block] == 0)
        seg->blocks[block].timezone = c->timezone;
      else if ((btz == NULL) != (c->timezone == NULL) ||
               (btz && strcmp(btz, c->timezone)))
        CORRUPT("%s: column %u \"%.64s\": time zone differs from block %u", what, i,
                c->name, block);
      ((uint32_t *)seg->blocks[block].columns)[bcount[block]++] = i;
      uint64_t row = seg->nrows * sz; /* the block length check bounds this */
      uint64_t stride = seg->capacity * sz;
      REF(SNAP__BUF_VALUES, row, 1, "values");
      if (row && snap__get64(refs + 8) != boff[block] + stride * pos)
        CORRUPT(
            "%s: column %u \"%.64s\": values offset = %llu, expected %llu in block %u",
            what, i, c->name, (unsigned long long)snap__get64(refs + 8),
            (unsigned long long)(boff[block] + stride * pos), block);
      c->values = PTR(SNAP__BUF_VALUES);
      c->values_bytes = row;
      REF(SNAP__BUF_OFFSETS, 0, 1, "offsets");
      REF(SNAP__BUF_DATA, 0, 1, "data");
      if (dict || dbytes)
        CORRUPT("%s: column %u \"%.64s\": dict_size/data_bytes set on %s", what, i,
                c->name, snap_type_name(type));
    } else {
      if (block != SNAP_NO_BLOCK)
        CORRUPT("%s: column %u \"%.64s\": block = %u on a %s column", what, i, c->name,
                block, snap_type_name(type));
      uint64_t n = type == SNAP_STRING ? seg->nrows : dict, olen;
      if (n == UINT64_MAX || !mul_ok(n + 1, 8, &olen))
        CORRUPT("%s: column %u \"%.64s\": count = %llu", what, i, c->name,
                (unsigned long long)n);
      if (type == SNAP_CATEGORY) {
        uint64_t vlen;
        if (!is_code_type(code))
          CORRUPT("%s: column %u \"%.64s\": code_type = %u", what, i, c->name, code);
        if (!mul_ok(seg->nrows, snap_type_size(code), &vlen))
          CORRUPT("%s: column %u \"%.64s\": codes overflow", what, i, c->name);
        REF(SNAP__BUF_VALUES, vlen, SNAP__ALIGN, "codes");
        c->values = PTR(SNAP__BUF_VALUES);
        c->values_bytes = vlen;
        c->code_type = code;
        c->dict_size = dict;
      } else {
        REF(SNAP__BUF_VALUES, 0, 1, "values");
        if (dict)
          CORRUPT("%s: column %u \"%.64s\": dict_size set on string", what, i, c->name);
      }
      REF(SNAP__BUF_OFFSETS, olen, SNAP__ALIGN, "offsets");
      REF(SNAP__BUF_DATA, dbytes, SNAP__ALIGN, "data");
      c->offsets = (const int64_t *)PTR(SNAP__BUF_OFFSETS);
      c->offsets_bytes = olen;
      c->data = (const char *)PTR(SNAP__BUF_DATA);
      c->data_bytes = dbytes;
    }
    if (type != SNAP_CATEGORY && code)
      CORRUPT("%s: column %u \"%.64s\": code_type = %u on %s", what, i, c->name, code,
              snap_type_name(type));
    c->validity_bytes = (cflags & SNAP_NULLABLE) ? bitmap : 0;
    REF(SNAP__BUF_VALIDITY, c->validity_bytes, SNAP__ALIGN, "validity");
    c->validity = PTR(SNAP__BUF_VALIDITY);
#undef REF
#undef PTR
    p += esz;
  }
  for (uint32_t b = 0; b < seg->nblocks; b++)
    if (bcount[b] != seg->blocks[b].ncols)
      CORRUPT("%s: block %u: %u of its %u columns present", what, b, bcount[b],
              seg->blocks[b].ncols);
  if (seg->format == SNAP__FORMAT_V2 && (rc = chunk_entries(base, seg, what, err)))
    goto fail;
  /* Offsets and codes index other buffers: a reader must be able to trust them. */
  if (!(flags & SNAP__SEG_NO_DATA) && (rc = snap__segment_check_data(seg, what, err)))
    goto fail;
  free(boff);
  free(bcount);
  return 0;
fail:
  free(boff);
  free(bcount);
  snap__segment_free(seg);
  return rc;
}

int snap__segment_check_data(const struct snap__segment *seg, const char *what,
                             struct snap_error *err) {
  int rc;
  for (uint32_t i = 0; i < seg->ncols; i++) {
    const struct snap_column *c = &seg->cols[i];
    if (c->type != SNAP_STRING && c->type != SNAP_CATEGORY) continue;
    uint64_t n = c->type == SNAP_STRING ? seg->nrows : c->dict_size;
    if ((rc = offsets_check(c->offsets, n, c->data_bytes, what, i,
                            c->type == SNAP_STRING ? "string" : "dictionary", err)))
      return rc;
  }
  return snap__segment_check_codes(seg, what, err);
}

int snap__segment_verify_data(const struct snap__segment *seg, const uint8_t *base,
                              const char *what, struct snap_error *err) {
  return snap__segment_verify_data_fd(seg, base, -1, what, err);
}

int snap__segment_verify_data_fd(const struct snap__segment *seg, const uint8_t *base,
                                 int fd, const char *what, struct snap_error *err) {
  uint64_t h[2];
  if (seg->format != SNAP__FORMAT_V2) {
    snap__data_hash(base, seg->data_offset, seg->data_size, h);
    if (h[0] != seg->data_hash[0] || h[1] != seg->data_hash[1])
      return snap__err(err, SNAP_ECHECKSUM,
                       "%s: data checksum = %016llx%016llx, computed %016llx%016llx",
                       what, (unsigned long long)seg->data_hash[1],
                       (unsigned long long)seg->data_hash[0], (unsigned long long)h[1],
                       (unsigned long long)h[0]);
    return 0;
  }
  snap__table_hash(seg->base + seg->chunk_table, seg->nchunks, h);
  if (h[0] != seg->data_hash[0] || h[1] != seg->data_hash[1])
    return snap__err(err, SNAP_ECHECKSUM,
                     "%s: chunk table checksum = %016llx%016llx, computed %016llx%016llx",
                     what, (unsigned long long)seg->data_hash[1],
                     (unsigned long long)seg->data_hash[0], (unsigned long long)h[1],
                     (unsigned long long)h[0]);
  uint64_t chunk = 1ull << seg->chunk_shift, zhash = 0;
  for (uint64_t k = 0; k < seg->nchunks; k++) {
    uint64_t off = seg->data_offset + k * chunk, got;
    /* a hole of the file itself (room for rows, padding) reads as zeros: hash
     * zeros instead of touching it (a read fault on tmpfs allocates a page) */
    if (fd >= 0 && !seg->chunks[k].file && snap__is_hole(fd, off, chunk)) {
      if (!zhash) zhash = snap__zero_chunk_hash(seg->chunk_shift);
      got = zhash;
    } else {
      got = snap__chunk_hash(base + off, chunk);
    }
    if (got != seg->chunks[k].hash) {
      uint32_t f = seg->chunks[k].file;
      return snap__err(err, SNAP_ECHECKSUM,
                       "%s: chunk %llu (offset %llu, held by version %llu) checksum = "
                       "%016llx, computed %016llx",
                       what, (unsigned long long)k,
                       (unsigned long long)(seg->data_offset + k * chunk),
                       (unsigned long long)(f ? seg->files[f - 1] : seg->version),
                       (unsigned long long)seg->chunks[k].hash, (unsigned long long)got);
    }
  }
  return 0;
}

int snap__segment_check_codes(const struct snap__segment *seg, const char *what,
                              struct snap_error *err) {
  for (uint32_t i = 0; i < seg->ncols; i++) {
    const struct snap_column *c = &seg->cols[i];
    if (c->type != SNAP_CATEGORY) continue;
    int64_t lim = (int64_t)(c->dict_size > INT64_MAX ? INT64_MAX : c->dict_size);
    for (uint64_t r = 0; r < seg->nrows; r++) {
      int64_t v = snap_column_code(c, r);
      if (v < -1 || v >= lim)
        return snap__err(err, SNAP_ECORRUPT,
                         "%s: column %u \"%.64s\" row %llu: category code = %lld, "
                         "dictionary has %llu entries",
                         what, i, c->name, (unsigned long long)r, (long long)v,
                         (unsigned long long)c->dict_size);
    }
  }
  return 0;
}
