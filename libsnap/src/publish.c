/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Publishing a version: atomic appearance, no leaks.
 *
 *  begin:  reserve the version number (short write txn); open an O_TMPFILE in
 *          segments/<dataset>/, fallocate the whole size (a full tmpfs fails
 *          here with ENOSPC, not later with SIGBUS), map it, write the header
 *          and manifest. The caller fills the buffers in place.
 *  commit: validate the fill, checksum, seal the header, unmap, make the file
 *          read-only; then in one write txn link it in as <version>.seg,
 *          record it, make it current and apply retention; then bump flips.
 *
 * A crash before the final txn leaves nothing: the O_TMPFILE file dies with
 * its process. A crash between linkat and commit leaves a named file no
 * record mentions; the next writable open sweeps it (orphans.c), inside a write
 * txn, so no publisher can be between those two steps then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Where a buffer's bytes come from at commit (v2). */
enum { BUF_UNTOUCHED, BUF_FILLED, BUF_SOURCE };

struct snap_publish {
  snap_store *store;
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  char what[SNAP_DATASET_NAME_MAX + 64]; /* "segments/<dataset>/<version>.seg" */
  uint64_t version, total, head;         /* head: the header and the largest manifest */
  unsigned shift;                        /* log2 of the chunk size (v2) */
  uint64_t cap;                          /* rows the blocks have room for (0: nrows) */
  snap_snapshot *append_base;            /* snap_publish_append(): the old rows */
  struct snap__extent *parts;            /* snap_publish_copy_rows(), by offset */
  size_t nparts, capparts;
  int dsfd, fd;
  char where[4096]; /* the store directory, or the detached publish's directory */
  uint8_t *base;
  struct snap__segment seg; /* parsed header: the fill pointers */
  bool committed;           /* else freeing it may have to undo a first publish */
  unsigned flags;           /* SNAP_PUBLISH_* */
  uint8_t *bufstate;        /* ncols * SNAP__NBUF: BUF_* */
  const void **bufsrc;      /* ncols * SNAP__NBUF: the caller's bytes (BUF_SOURCE) */
  uint64_t owned;           /* bytes the sealed file holds itself */
  /* snap_publish_set_edit(): the edit's private view of version expect, and
   * per chunk of that version whether the writer left it untouched */
  const uint8_t *edit_view;
  uint64_t edit_size, expect;
  uint8_t *clean;
};

/* A name that does not exist yet must follow the rule for new names; an
 * existing dataset keeps its name whatever it is. Checked before anything is
 * created on disk, and again where the record is created. */
static int name_creatable(snap_store *s, const char *dataset, struct snap_error *err) {
  if (!snap__dataset_name_new_check(dataset, NULL)) return 0;
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  rc = snap__ds_get(t, dataset, &ds, NULL);
  snap__txn_abort(t);
  return rc == SNAP_ENOTFOUND ? snap__dataset_name_new_check(dataset, err) : rc;
}

int snap__ds_get_or_create(snap_store *s, struct snap__txn *t, const char *dataset,
                           bool replica, struct snap__dsrec *ds, bool *created,
                           struct snap_error *err) {
  *created = false;
  int rc = snap__ds_get(t, dataset, ds, err);
  if (!rc) return replica ? 0 : snap__followed_refuse(dataset, ds, "publish", err);
  if (rc != SNAP_ENOTFOUND) return rc;
  struct snap__meta m;
  if ((rc = snap__dataset_admit(s, t, dataset, err)) || /* policy.c */
      (rc = snap__meta_get(t, &m, err)))
    return rc;
  memset(ds, 0, sizeof *ds);
  ds->id = m.next_dataset_id++;
  ds->next_version = snap__tombstone_get(s->segfd, dataset); /* never reuse a number */
  ds->keep = m.default_keep;
  *created = true;
  return snap__meta_put(t, &m, err);
}

/* Reserve the next version number, creating the dataset on first use. */
static int reserve_version(snap_store *s, const char *dataset, uint64_t *version,
                           struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  bool created;
  if ((rc = snap__ds_get_or_create(s, t, dataset, false, &ds, &created, err))) goto fail;
  *version = ds.next_version++;
  if ((rc = snap__ds_put(t, dataset, &ds, err))) goto fail;
  return snap__txn_commit(t, err);
fail:
  snap__txn_abort(t);
  return rc;
}

/* Create the O_TMPFILE in p->dsfd, allocate it whole, map it and write the
 * header and manifest (p->what names it in messages). */
static int segment_create(snap_publish *p, const struct snap_schema *schema,
                          const uint8_t store_id[16], struct snap_error *err) {
  int rc;
  p->fd = openat(p->dsfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, SNAP__MODE_FILE);
  if (p->fd < 0) return snap__errno(err, -errno, "%s: O_TMPFILE", p->where);
  snap__crash_point();
  /* v1 allocates the whole file now. v2 allocates the header and manifest now
   * and the rest where it is written (snap_publish_fill(), snap_publish_block(),
   * commit), so that chunks shared with the current version never take memory;
   * each allocation still fails with ENOSPC rather than a later SIGBUS. */
  uint64_t now = p->total;
  if (snap__write_format == SNAP__FORMAT_V2) {
    if (ftruncate(p->fd, (off_t)p->total))
      return snap__errno(err, -errno, "%s/%s: size %llu for version %llu", p->where,
                         p->what, (unsigned long long)p->total,
                         (unsigned long long)p->version);
    now = 0; /* set below, once the manifest's extent is known */
  }
  if (now && (rc = posix_fallocate(p->fd, 0, (off_t)now)))
    return snap__errno(err, -rc, "%s/%s: allocating %llu bytes for version %llu",
                       p->where, p->what, (unsigned long long)now,
                       (unsigned long long)p->version);
  snap__crash_point();
  void *addr;
  if ((rc = snap__map_aligned(p->fd, p->total, true, &addr)))
    return snap__errno(err, rc, "%s/%s: mmap %llu bytes", p->where, p->what,
                       (unsigned long long)p->total);
  p->base = addr;
  madvise(p->base, p->total, MADV_HUGEPAGE); /* honoured on huge=advise mounts */
  /* v2: the header and the largest manifest, written below and at seal */
  if (snap__write_format == SNAP__FORMAT_V2 &&
      (rc = posix_fallocate(p->fd, 0, (off_t)((p->head + 4095) & ~(uint64_t)4095))))
    return snap__errno(err, -rc, "%s/%s: allocating the manifest of version %llu",
                       p->where, p->what, (unsigned long long)p->version);
  snap__segment_write(p->base, p->total, schema, p->shift, p->cap, p->dataset, p->version,
                      store_id, snap__now_ns());
  if (snap__segment_parse(p->base, p->total, SNAP__SEG_NO_HASH | SNAP__SEG_NO_DATA,
                          p->what, p->dataset, p->version, &p->seg, err))
    abort(); /* we just wrote it: a failure is a bug in the writer or parser */
  size_t nb = (size_t)(p->seg.ncols ? p->seg.ncols : 1) * SNAP__NBUF;
  p->bufstate = calloc(nb, 1);
  p->bufsrc = calloc(nb, sizeof *p->bufsrc);
  if (!p->bufstate || !p->bufsrc)
    return snap__errno(err, -ENOMEM, "%s/%s: %u columns", p->where, p->what,
                       p->seg.ncols);
  return 0;
}

/* Rows the current version of @p dataset has room for, if its blocks are laid
 * out as @p schema's would be (same fixed-width columns in the same order):
 * keeping that room keeps the layout, so that its chunks can be shared. */
static uint64_t room_of_current(snap_store *s, const char *dataset,
                                const struct snap_schema *schema) {
  snap_snapshot *cur;
  if (snap_pin(s, dataset, &cur, NULL)) return 0;
  const struct snap__segment *b = snap__snapshot_seg(cur);
  uint64_t room =
      b->format == SNAP__FORMAT_V2 && b->ncols == schema->ncols ? b->capacity : 0;
  for (uint32_t i = 0; room && i < b->ncols; i++) {
    const struct snap_column *c = &b->cols[i];
    const struct snap_field *f = &schema->fields[i];
    const char *tz =
        snap__is_timestamp(f->type) && f->timezone && f->timezone[0] ? f->timezone : NULL;
    if (c->type != f->type || c->flags != (f->flags & SNAP_NULLABLE) ||
        (c->timezone == NULL) != (tz == NULL) || (tz && strcmp(tz, c->timezone)))
      room = 0;
  }
  snap_unpin(cur);
  return room;
}

/* snap_publish_begin() with a row capacity for the blocks (0: nrows). */
static int publish_begin(snap_store *s, const char *dataset,
                         const struct snap_schema *schema, uint64_t cap,
                         snap_publish **out, struct snap_error *err) {
  *out = NULL;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc) return rc;
  uint64_t total, head;
  unsigned shift = snap__chunk_shift_for(s->dirfd);
  if ((rc = snap__segment_plan(schema, shift, cap, &total, &head, err))) return rc;
  if ((rc = snap__store_writable(s, err)) || (rc = name_creatable(s, dataset, err)))
    return rc;
  snap_publish *p = calloc(1, sizeof *p);
  if (!p) return snap__errno(err, -ENOMEM, "publish \"%s\"", dataset);
  p->store = s;
  p->dsfd = p->fd = -1;
  p->total = total;
  p->head = head;
  p->shift = shift;
  p->cap = cap;
  strcpy(p->dataset, dataset);
  snprintf(p->where, sizeof p->where, "%s", s->path);
  /* The directory's shared lock before the number: see layout.c "dataset directory". */
  if ((rc = snap__dataset_dir_lock(s, dataset, LOCK_SH, &p->dsfd, err))) goto fail;
  if ((rc = reserve_version(s, dataset, &p->version, err))) goto fail;
  snap__crash_point();
  snap__seg_relpath(p->what, sizeof p->what, dataset, p->version);
  if ((rc = segment_create(p, schema, s->store_id, err))) goto fail;
  snap__crash_point();
  snap__store_ref(s);
  *out = p;
  return 0;
fail:
  snap__unmap(p->base, p->total);
  if (p->fd >= 0) close(p->fd);
  if (p->version) snap__first_publish_undo(s, p->dsfd, dataset);
  if (p->dsfd >= 0) close(p->dsfd);
  free(p);
  return rc;
}

bool snap__publish_is_of(const snap_publish *p, const snap_store *s,
                         const char *dataset) {
  return p && p->store == s && !strcmp(p->dataset, dataset);
}

int snap__publish_edit_base(snap_publish *p, const uint8_t *view, uint64_t size,
                            uint64_t version, uint8_t *clean, struct snap_error *err) {
  if (!p || !p->base || !p->store) {
    free(clean);
    return snap__err(err, SNAP_EINVAL, "snap_publish_set_edit: no publish in progress");
  }
  if (p->expect) {
    free(clean);
    return snap__err(err, SNAP_EINVAL, "%s: an edit is set already", p->what);
  }
  if (p->append_base) {
    /* an append: its old rows were given from the base's shared view; take
     * them from the edit's view instead (same version, same offsets) */
    if (snap_snapshot_version(p->append_base) != version) {
      free(clean);
      return snap__err(err, SNAP_ECONFLICT,
                       "dataset \"%s\": version %llu became current after the edit "
                       "began from version %llu; nothing was published",
                       p->dataset,
                       (unsigned long long)snap_snapshot_version(p->append_base),
                       (unsigned long long)version);
    }
    size_t blen;
    const uint8_t *b = snap_snapshot_segment(p->append_base, &blen);
    for (size_t i = 0; i < p->nparts; i++)
      if (p->parts[i].src >= b && p->parts[i].src < b + blen)
        p->parts[i].src = view + (p->parts[i].src - b);
  }
  p->edit_view = view;
  p->edit_size = size;
  p->expect = version;
  p->clean = clean;
  return 0;
}

int snap_publish_begin(snap_store *s, const char *dataset,
                       const struct snap_schema *schema, snap_publish **out,
                       struct snap_error *err) {
  return snap_publish_begin_ex(s, dataset, schema, 0, out, err);
}

int snap_publish_begin_ex(snap_store *s, const char *dataset,
                          const struct snap_schema *schema, unsigned flags,
                          snap_publish **out, struct snap_error *err) {
  *out = NULL;
  if (flags & ~(SNAP_PUBLISH_FULL | SNAP_PUBLISH_KEEP_ROOM))
    return snap__err(err, SNAP_EINVAL, "snap_publish_begin_ex: flags 0x%x unknown",
                     flags);
  uint64_t cap = 0;
  if ((flags & SNAP_PUBLISH_KEEP_ROOM) && schema &&
      snap__write_format == SNAP__FORMAT_V2 && !snap__dataset_name_check(dataset, NULL))
    cap = room_of_current(s, dataset, schema);
  int rc = publish_begin(s, dataset, schema, cap, out, err);
  if (!rc) (*out)->flags = flags & SNAP_PUBLISH_FULL;
  return rc;
}

int snap_publish_append(snap_store *s, const char *dataset, uint64_t nrows,
                        const void *metadata, size_t metadata_len, snap_publish **out,
                        struct snap_error *err) {
  *out = NULL;
  snap_snapshot *cur;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err)) || (rc = snap_pin(s, dataset, &cur, err)))
    return rc;
  const struct snap__segment *b = snap__snapshot_seg(cur);
  struct snap_field *f = calloc(b->ncols ? b->ncols : 1, sizeof *f);
  if (!f) {
    snap_unpin(cur);
    return snap__errno(err, -ENOMEM, "append to \"%s\"", dataset);
  }
  for (uint32_t i = 0; i < b->ncols && !rc; i++) {
    const struct snap_column *c = &b->cols[i];
    if (!snap_type_size(c->type) || (c->flags & SNAP_NULLABLE))
      rc = snap__err(err, SNAP_EINVAL,
                     "append to \"%s\": column %u \"%.64s\" is %s%s; appends take "
                     "tables of non-nullable fixed-width columns (publish the whole "
                     "table instead)",
                     dataset, i, c->name, c->flags & SNAP_NULLABLE ? "nullable " : "",
                     snap_type_name(c->type));
    f[i] = (struct snap_field){
        .name = c->name, .type = c->type, .flags = c->flags, .timezone = c->timezone};
  }
  uint64_t total_rows;
  if (!rc && __builtin_add_overflow(b->nrows, nrows, &total_rows))
    rc = snap__err(err, SNAP_EINVAL, "append to \"%s\": %llu rows is too many", dataset,
                   (unsigned long long)nrows);
  if (!rc && metadata_len && !metadata)
    rc = snap__err(err, SNAP_EINVAL, "append: metadata is NULL with length %zu",
                   metadata_len);
  if (!rc) {
    /* room for the new rows: the current layout when it has it (the old rows
     * are then shared whole), else double it (amortised, like a vector) */
    uint64_t cap = b->format == SNAP__FORMAT_V2 ? b->capacity : b->nrows;
    if (cap < total_rows) cap = total_rows > cap * 2 ? total_rows : cap * 2;
    struct snap_schema schema = {total_rows, b->ncols, f,
                                 metadata ? metadata : b->metadata,
                                 metadata ? metadata_len : b->metadata_len};
    rc = publish_begin(s, dataset, &schema, cap, out, err);
  }
  if (!rc) {
    /* the old rows come from the current version's own view: shared unread
     * when the layout is kept */
    snap_publish *p = *out;
    for (uint32_t i = 0; i < b->ncols && !rc; i++)
      if (b->nrows)
        rc = snap_publish_copy_rows(p, i, 0, b->nrows, b->cols[i].values, err);
    if (rc) {
      snap_publish_abort(p);
      *out = NULL;
    } else {
      p->append_base = cur;
      cur = NULL;
    }
  }
  free(f);
  snap_unpin(cur);
  return rc;
}

uint64_t snap_publish_version(const snap_publish *p) { return p->version; }
uint64_t snap_publish_nrows(const snap_publish *p) { return p->seg.nrows; }

const struct snap_column *snap_publish_column(const snap_publish *p, uint32_t col) {
  return p && p->base && col < p->seg.ncols ? &p->seg.cols[col] : NULL;
}

const struct snap_block *snap_publish_block_plan(const snap_publish *p, uint32_t block) {
  return p && p->base && block < p->seg.nblocks ? &p->seg.blocks[block] : NULL;
}

/* v2: allocate [off, off + len) (whole pages) before the caller writes it. */
static int alloc_range(snap_publish *p, const void *ptr, uint64_t len,
                       struct snap_error *err) {
  if (!ptr || !len || p->seg.format != SNAP__FORMAT_V2) return 0;
  uint64_t off = (uint64_t)((const uint8_t *)ptr - p->base);
  uint64_t start = off & ~(uint64_t)4095, end = (off + len + 4095) & ~(uint64_t)4095;
  if (end > p->total) end = p->total;
  int rc = posix_fallocate(p->fd, (off_t)start, (off_t)(end - start));
  if (rc)
    return snap__errno(err, -rc, "%s/%s: allocating %llu bytes at offset %llu", p->where,
                       p->what, (unsigned long long)(end - start),
                       (unsigned long long)start);
  return 0;
}

int snap_publish_fill(snap_publish *p, uint32_t col, struct snap_fill *out,
                      struct snap_error *err) {
  memset(out, 0, sizeof *out);
  const struct snap_column *c = snap_publish_column(p, col);
  if (!p || !p->base)
    return snap__err(err, SNAP_EINVAL, "snap_publish_fill: no publish in progress");
  if (!c)
    return snap__err(err, SNAP_EINVAL, "%s: column %u out of range (%u columns)", p->what,
                     col, p->seg.ncols);
  int rc;
  if ((rc = alloc_range(p, c->values, c->values_bytes, err)) ||
      (rc = alloc_range(p, c->validity, c->validity_bytes, err)) ||
      (rc = alloc_range(p, c->offsets, c->offsets_bytes, err)) ||
      (rc = alloc_range(p, c->data, c->data_bytes, err)))
    return rc;
  for (int k = 0; k < SNAP__NBUF; k++) {
    p->bufstate[(size_t)col * SNAP__NBUF + k] = BUF_FILLED;
    p->bufsrc[(size_t)col * SNAP__NBUF + k] = NULL;
  }
  out->values = (void *)c->values;
  out->validity = (uint8_t *)c->validity;
  out->offsets = (int64_t *)c->offsets;
  out->data = (char *)c->data;
  out->values_bytes = c->values_bytes;
  out->validity_bytes = c->validity_bytes;
  out->offsets_bytes = c->offsets_bytes;
  out->data_bytes = c->data_bytes;
  return 0;
}

void *snap_publish_view(const snap_publish *p, size_t *len) {
  if (len) *len = p && p->base ? p->total : 0;
  return p ? p->base : NULL;
}

void *snap_publish_block(snap_publish *p, uint32_t block) {
  if (!p || !p->base || block >= p->seg.nblocks) return NULL;
  const struct snap_block *b = &p->seg.blocks[block];
  int rc = alloc_range(p, b->data, b->data_bytes, NULL);
  if (rc) {
    errno = -rc;
    return NULL;
  }
  for (uint32_t i = 0; i < b->ncols; i++) {
    p->bufstate[(size_t)b->columns[i] * SNAP__NBUF + SNAP__BUF_VALUES] = BUF_FILLED;
    p->bufsrc[(size_t)b->columns[i] * SNAP__NBUF + SNAP__BUF_VALUES] = NULL;
  }
  return (void *)b->data;
}

int snap_publish_copy(snap_publish *p, uint32_t col, enum snap_buffer buffer,
                      const void *src, struct snap_error *err) {
  const struct snap_column *c = snap_publish_column(p, col);
  if (!p || !p->base)
    return snap__err(err, SNAP_EINVAL, "snap_publish_copy: no publish in progress");
  if (!c)
    return snap__err(err, SNAP_EINVAL, "%s: column %u out of range (%u columns)", p->what,
                     col, p->seg.ncols);
  if ((unsigned)buffer >= SNAP__NBUF)
    return snap__err(err, SNAP_EINVAL, "%s: column %u: buffer %d unknown", p->what, col,
                     (int)buffer);
  const uint64_t lens[] = {c->values_bytes, c->validity_bytes, c->offsets_bytes,
                           c->data_bytes};
  if (!src && lens[buffer])
    return snap__err(err, SNAP_EINVAL,
                     "%s: column %u \"%.64s\": source of %llu bytes is NULL", p->what,
                     col, c->name, (unsigned long long)lens[buffer]);
  size_t k = (size_t)col * SNAP__NBUF + buffer;
  if (!lens[buffer]) return 0;            /* an absent buffer has nothing to copy */
  if (p->seg.format != SNAP__FORMAT_V2) { /* v1 files: copy now */
    const void *dst[] = {c->values, c->validity, c->offsets, c->data};
    memcpy((void *)dst[buffer], src, lens[buffer]);
    p->bufstate[k] = BUF_FILLED;
    return 0;
  }
  p->bufstate[k] = BUF_SOURCE;
  p->bufsrc[k] = src;
  return 0;
}

int snap_publish_copy_rows(snap_publish *p, uint32_t col, uint64_t first_row,
                           uint64_t nrows, const void *src, struct snap_error *err) {
  const struct snap_column *c = snap_publish_column(p, col);
  if (!p || !p->base)
    return snap__err(err, SNAP_EINVAL, "snap_publish_copy_rows: no publish in progress");
  if (!c)
    return snap__err(err, SNAP_EINVAL, "%s: column %u out of range (%u columns)", p->what,
                     col, p->seg.ncols);
  size_t sz = snap_type_size(c->type);
  if (!sz || (c->flags & SNAP_NULLABLE))
    return snap__err(err, SNAP_EINVAL,
                     "%s: column %u \"%.64s\": rows can be given for non-nullable "
                     "fixed-width columns only",
                     p->what, col, c->name);
  if (first_row > p->seg.nrows || nrows > p->seg.nrows - first_row || (nrows && !src))
    return snap__err(err, SNAP_EINVAL,
                     "%s: column %u \"%.64s\": rows %llu + %llu of %llu, source %p",
                     p->what, col, c->name, (unsigned long long)first_row,
                     (unsigned long long)nrows, (unsigned long long)p->seg.nrows, src);
  if (!nrows) return 0;
  size_t k = (size_t)col * SNAP__NBUF + SNAP__BUF_VALUES;
  if (p->bufstate[k] == BUF_SOURCE)
    return snap__err(err, SNAP_EINVAL, "%s: column %u: whole values given already",
                     p->what, col);
  uint64_t off = (uint64_t)((const uint8_t *)c->values - p->base) + first_row * sz;
  struct snap__extent e = {off, nrows * sz, src};
  size_t at = p->nparts;
  while (at > 0 && p->parts[at - 1].off > off) at--;
  if ((at > 0 && p->parts[at - 1].off + p->parts[at - 1].len > off) ||
      (at < p->nparts && off + e.len > p->parts[at].off))
    return snap__err(err, SNAP_EINVAL, "%s: column %u: rows %llu + %llu given twice",
                     p->what, col, (unsigned long long)first_row,
                     (unsigned long long)nrows);
  if (p->nparts == p->capparts) {
    size_t cap = p->capparts ? 2 * p->capparts : 16;
    void *np = realloc(p->parts, cap * sizeof *p->parts);
    if (!np) return snap__errno(err, -ENOMEM, "%s", p->what);
    p->parts = np;
    p->capparts = cap;
  }
  memmove(p->parts + at + 1, p->parts + at, (p->nparts - at) * sizeof *p->parts);
  p->parts[at] = e;
  p->nparts++;
  if (p->seg.format != SNAP__FORMAT_V2) { /* v1: copy now */
    int rc = alloc_range(p, p->base + off, e.len, err);
    if (rc) return rc;
    memcpy(p->base + off, src, e.len);
  }
  return 0;
}

int snap_publish_set_flags(snap_publish *p, unsigned flags, struct snap_error *err) {
  if (!p || !p->base)
    return snap__err(err, SNAP_EINVAL, "snap_publish_set_flags: no publish in progress");
  if (flags & ~(SNAP_PUBLISH_FULL | SNAP_PUBLISH_KEEP_VIEW))
    return snap__err(err, SNAP_EINVAL, "snap_publish_set_flags: flags 0x%x unknown",
                     flags);
  /* KEEP_VIEW once set stays: the range was promised to the caller */
  p->flags = flags | (p->flags & SNAP_PUBLISH_KEEP_VIEW);
  return 0;
}

/* Let go of the writable mapping. With SNAP_PUBLISH_KEEP_VIEW the range stays
 * the caller's: remapped in place (MAP_FIXED replaces it atomically, so no
 * other mapping can take the addresses meanwhile), privately and copy on
 * write, over the same file, so what was written stays readable and a later
 * write reaches only this process's memory, never the file. */
static int view_release(snap_publish *p, bool sealed, struct snap_error *err) {
  if (!p->base) return 0;
  int rc = 0;
  if (p->flags & SNAP_PUBLISH_KEEP_VIEW) {
    struct snap__segment g = {0};
    /* a sealed v2 file has holes where it borrows chunks: map those from the
     * files that hold them (pinned as the commit's base) */
    bool borrows = sealed && p->store &&
                   !snap__segment_parse(p->base, p->total, SNAP__SEG_NO_DATA, p->what,
                                        NULL, 0, &g, NULL) &&
                   g.format == SNAP__FORMAT_V2 && g.nfiles;
    if (mmap(p->base, p->total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, p->fd,
             0) == MAP_FAILED)
      rc = snap__errno(err, -errno, "%s: keeping the written buffers mapped", p->what);
    else if (borrows)
      rc = snap__compose(p->store, &g, p->base, true, p->what, err);
    /* after a failure the range holds what it could (a hole reads as zeros);
     * at least it never writes the file */
    if (rc) mprotect(p->base, p->total, PROT_READ);
    snap__segment_free(&g);
  } else {
    snap__unmap(p->base, p->total);
  }
  p->base = NULL;
  return rc;
}

static void publish_free(snap_publish *p) {
  snap_unpin(p->append_base);
  free(p->clean);
  free(p->parts);
  free(p->bufstate);
  free(p->bufsrc);
  snap__segment_free(&p->seg);
  view_release(p, false, NULL);
  if (p->fd >= 0) close(p->fd);
  if (p->store && !p->committed) snap__first_publish_undo(p->store, p->dsfd, p->dataset);
  if (p->dsfd >= 0) close(p->dsfd);
  if (p->store) snap__store_unref(p->store);
  free(p);
}

void snap_publish_abort(snap_publish *p) {
  if (p) publish_free(p);
}

/* An edit's base is no longer current: nothing is published. */
static int conflict(const snap_publish *p, uint64_t current, struct snap_error *err) {
  return snap__err(err, SNAP_ECONFLICT,
                   "dataset \"%s\": version %llu became current after the edit began "
                   "from version %llu; nothing was published (edit version %llu "
                   "again)",
                   p->dataset, (unsigned long long)current, (unsigned long long)p->expect,
                   (unsigned long long)current);
}

int snap__make_current(struct snap__txn *t, const char *dataset, struct snap__dsrec *ds,
                       uint64_t version, const struct snap__verrec *vr,
                       struct snap_error *err) {
  struct snap__verrec old;
  int rc;
  if (ds->current && !snap__ver_get(t, ds->id, ds->current, &old, NULL)) {
    old.state = SNAP_STATE_RETAINED;
    if ((rc = snap__ver_put(t, ds->id, ds->current, &old, err))) return rc;
  }
  snap__crash_point();
  if ((rc = snap__ver_put(t, ds->id, version, vr, err))) return rc;
  ds->current = version;
  if ((rc = snap__ds_put(t, dataset, ds, err))) return rc;
  return snap__retain(t, ds, err);
}

/* Link the sealed file in and make it current, all in one transaction. */
static int flip(snap_publish *p, const struct snap__verrec *vr, struct snap_error *err) {
  snap_store *s = p->store;
  struct snap__txn *t;
  int rc = snap__store_txn(s, true, &t, err);
  if (rc) return rc;
  struct snap__dsrec ds;
  char name[32], proc[64];
  snap__seg_name(name, sizeof name, p->version);
  if ((rc = snap__ds_get(t, p->dataset, &ds, err)) ||
      (rc = snap__followed_refuse(p->dataset, &ds, "publish", err)))
    goto fail;
  if (p->expect && ds.current != p->expect) { /* compare-and-swap: an edit's base */
    rc = conflict(p, ds.current, err);
    goto fail;
  }
  if ((rc = snap__make_current(t, p->dataset, &ds, p->version, vr, err))) goto fail;
  snap__crash_point();
  /* Link last, just before the commit: a failure above leaves no name. */
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", p->fd);
  if (linkat(AT_FDCWD, proc, p->dsfd, name, AT_SYMLINK_FOLLOW) &&
      linkat(p->fd, "", p->dsfd, name, AT_EMPTY_PATH)) {
    rc = snap__errno(err, -errno, "%s/%s: linkat", s->path, p->what);
    goto fail;
  }
  snap__crash_point(); /* linked, not committed: the orphan case */
  if ((rc = snap__txn_commit(t, err))) {
    unlinkat(p->dsfd, name, 0);
    return rc;
  }
  snap__crash_point(); /* committed, flips not bumped yet */
  snap__flips_bump(s);
  return 0;
fail:
  snap__txn_abort(t);
  return rc;
}

/* Null slots of nullable timestamp/duration columns get INT64_MIN (NaT), so
 * readers can view the values as datetime64/timedelta64 with no copy, whatever
 * the writer left there. One pass over the bitmap: whole valid bytes are skipped. */
static void nat_fill(const struct snap__segment *seg) {
  for (uint32_t i = 0; i < seg->ncols; i++) {
    const struct snap_column *c = &seg->cols[i];
    if (!(c->flags & SNAP_NULLABLE) || !c->validity || !c->values ||
        !(snap__is_timestamp(c->type) || snap__is_duration(c->type)))
      continue;
    int64_t *v = (int64_t *)c->values;
    for (uint64_t byte = 0; byte * 8 < seg->nrows; byte++) {
      uint8_t bits = c->validity[byte];
      if (bits == 0xff) continue;
      for (uint64_t r = byte * 8; r < byte * 8 + 8 && r < seg->nrows; r++)
        if (!(bits >> (r % 8) & 1)) v[r] = INT64_MIN;
    }
  }
}

/* Validate the untrusted fill (string and dictionary offsets, category codes),
 * write NaT into null temporal slots, checksum, seal the header, unmap. Fills
 * the version record. Every writer passes here: commit, seal, import. */
/* A source buffer that the seal must change (NaT into null temporal slots) is
 * copied into the file first. */
static int sources_materialize(snap_publish *p, struct snap_error *err) {
  for (uint32_t i = 0; i < p->seg.ncols; i++) {
    const struct snap_column *c = &p->seg.cols[i];
    if (!(c->flags & SNAP_NULLABLE) ||
        !(snap__is_timestamp(c->type) || snap__is_duration(c->type)))
      continue;
    /* nat_fill() reads the bitmap and writes the values, in the file */
    const void *dst[] = {c->values, c->validity};
    const uint64_t len[] = {c->values_bytes, c->validity_bytes};
    for (int b = 0; b < 2; b++) {
      size_t k = (size_t)i * SNAP__NBUF + (b ? SNAP__BUF_VALIDITY : SNAP__BUF_VALUES);
      if (p->bufstate[k] != BUF_SOURCE || !dst[b]) continue;
      int rc = alloc_range(p, dst[b], len[b], err);
      if (rc) return rc;
      memcpy((void *)dst[b], p->bufsrc[k], len[b]);
      p->bufstate[k] = BUF_FILLED;
    }
  }
  return 0;
}

static int cmp_extent(const void *a, const void *b) {
  const struct snap__extent *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* v2: every buffer as an extent, with where its bytes are now; then the
 * chunk pass (share.c) against @p base. */
static int chunks(snap_publish *p, const snap_snapshot *base, struct snap_error *err) {
  size_t n = 0,
         cap = (size_t)(p->seg.ncols ? p->seg.ncols : 1) * SNAP__NBUF + 2 * p->nparts + 1;
  struct snap__extent *ext = malloc(cap * sizeof *ext);
  if (!ext) return snap__errno(err, -ENOMEM, "%s/%s", p->where, p->what);
  for (uint32_t i = 0; i < p->seg.ncols; i++) {
    const struct snap_column *c = &p->seg.cols[i];
    const void *ptr[] = {c->values, c->validity, c->offsets, c->data};
    const uint64_t len[] = {c->values_bytes, c->validity_bytes, c->offsets_bytes,
                            c->data_bytes};
    for (int k = 0; k < SNAP__NBUF; k++) {
      if (!ptr[k] || !len[k]) continue;
      size_t b = (size_t)i * SNAP__NBUF + k;
      uint64_t off = (uint64_t)((const uint8_t *)ptr[k] - p->base), end = off + len[k];
      if (p->bufstate[b] == BUF_SOURCE) {
        ext[n++] = (struct snap__extent){off, len[k], p->bufsrc[b]};
        continue;
      }
      /* rows given by snap_publish_copy_rows(), the rest from the file */
      uint64_t cur = off;
      for (size_t j = 0; j < p->nparts; j++) {
        const struct snap__extent *e = &p->parts[j];
        if (e->off < off || e->off >= end) continue;
        if (e->off > cur)
          ext[n++] = (struct snap__extent){cur, e->off - cur, p->base + cur};
        ext[n++] = *e;
        cur = e->off + e->len;
      }
      if (cur < end) ext[n++] = (struct snap__extent){cur, end - cur, p->base + cur};
    }
  }
  qsort(ext, n, sizeof *ext, cmp_extent);
  char what[sizeof p->where + sizeof p->what + 2];
  snprintf(what, sizeof what, "%s/%s", p->where, p->what);
  struct snap__share sh = {.seg = &p->seg,
                           .map = p->base,
                           .fd = p->fd,
                           .what = what,
                           .ext = ext,
                           .next = n,
                           .full = p->flags & SNAP_PUBLISH_FULL};
  if (base) {
    sh.base = snap__snapshot_seg(base);
    sh.base_addr = sh.base->base;
    if (p->clean && snap_snapshot_version(base) == p->expect) {
      sh.edit_addr = p->edit_view;
      sh.edit_clean = p->clean;
    }
  }
  int rc = snap__chunks_write(&sh, err);
  free(ext);
  /* what the file really holds: pages written, minus the chunks punched */
  struct stat st;
  p->owned = fstat(p->fd, &st) ? ((p->head + 4095) & ~(uint64_t)4095) + sh.owned
                               : (uint64_t)st.st_blocks * 512;
  return rc;
}

static int seal(snap_publish *p, const snap_snapshot *base, struct snap__verrec *vr,
                struct snap_error *err) {
  struct snap__segment check;
  int rc = snap__segment_parse(p->base, p->total, SNAP__SEG_NO_HASH | SNAP__SEG_NO_DATA,
                               p->what, p->dataset, p->version, &check, err);
  if (!rc) {
    /* the data checks read the caller's sources where it gave some */
    for (uint32_t i = 0; i < check.ncols; i++) {
      struct snap_column *c = &check.cols[i];
      const void **ptr[] = {&c->values, (const void **)&c->validity,
                            (const void **)&c->offsets, (const void **)&c->data};
      for (int k = 0; k < SNAP__NBUF; k++)
        if (p->bufstate[(size_t)i * SNAP__NBUF + k] == BUF_SOURCE)
          *ptr[k] = p->bufsrc[(size_t)i * SNAP__NBUF + k];
    }
    rc = snap__segment_check_data(&check, p->what, err);
    snap__segment_free(&check);
  }
  if (rc) {
    if (err) err->code = SNAP_EINVAL;
    return SNAP_EINVAL;
  }
  if ((rc = sources_materialize(p, err))) return rc;
  nat_fill(&p->seg); /* before the data hash */
  snap__crash_point();
  p->owned = p->total;
  if (p->seg.format == SNAP__FORMAT_V2 && (rc = chunks(p, base, err))) return rc;
  snap__segment_seal(p->base, p->total);
  snap__crash_point();
  *vr = (struct snap__verrec){
      .state = SNAP_STATE_CURRENT,
      .ncols = p->seg.ncols,
      .nrows = p->seg.nrows,
      .bytes = p->owned,
      .created_ns = p->seg.created_ns,
  };
  memcpy(&vr->data_hash[0], p->base + SNAP__H_DATA_HASH_LO, 8);
  memcpy(&vr->data_hash[1], p->base + SNAP__H_DATA_HASH_HI, 8);
  memcpy(&vr->header_hash, p->base + SNAP__H_HEADER_HASH, 8);
  /* a view the caller was promised and cannot have: nothing is published */
  if ((rc = view_release(p, true, err))) return rc;
  if (fchmod(p->fd, SNAP__MODE_SEGMENT))
    return snap__errno(err, -errno, "%s/%s: fchmod", p->where, p->what);
  return 0;
}

int snap_publish_commit(snap_publish *p, uint64_t *version, struct snap_error *err) {
  if (version) *version = 0;
  if (!p) return snap__err(err, SNAP_EINVAL, "snap_publish_commit: NULL publish");
  if (!p->store) {
    publish_free(p);
    return snap__err(
        err, SNAP_EINVAL,
        "snap_publish_commit: a detached publish ends with snap_publish_seal");
  }
  snap_store *s = p->store;
  struct snap__verrec vr;
  /* The version to share chunks with: the current one, pinned until after the
   * flip so that what we borrow stays live (gc.c). None: every chunk is own. */
  snap_snapshot *base = NULL;
  if (p->seg.format == SNAP__FORMAT_V2 && !(p->flags & SNAP_PUBLISH_FULL) &&
      snap_pin(s, p->dataset, &base, NULL))
    base = NULL;
  int rc = 0;
  if (p->expect && base && snap_snapshot_version(base) != p->expect) {
    rc = conflict(p, snap_snapshot_version(base), err); /* flip() checks it again */
    goto out;
  }
  rc = seal(p, base, &vr, err);
  if (rc) goto out;
  snap__crash_point();
  if ((rc = flip(p, &vr, err))) goto out;
  p->committed = true;
  snap__crash_point();
  if (version) *version = p->version;
  snap_unpin(base);
  base = NULL;
  /* The mechanism ends with the flip; what follows is policy's call. */
  snap__after_commit(s, p->dataset);
out:
  snap_unpin(base);
  publish_free(p);
  return rc;
}

/* ------------------------------------------------------ detached publish */

int snap_publish_begin_detached(const char *dir, const char *dataset,
                                const struct snap_schema *schema, snap_publish **out,
                                struct snap_error *err) {
  *out = NULL;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc) return rc;
  if (!dir) return snap__err(err, SNAP_EINVAL, "detached publish: directory is NULL");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return snap__errno(err, -errno, "%s", dir);
  uint64_t total, head;
  unsigned shift = snap__chunk_shift_for(dfd);
  if ((rc = snap__segment_plan(schema, shift, 0, &total, &head, err))) {
    close(dfd);
    return rc;
  }
  snap_publish *p = calloc(1, sizeof *p);
  if (!p) {
    close(dfd);
    return snap__errno(err, -ENOMEM, "publish \"%s\"", dataset);
  }
  p->dsfd = dfd;
  p->fd = -1;
  p->total = total;
  p->head = head;
  p->shift = shift;
  strcpy(p->dataset, dataset);
  snprintf(p->where, sizeof p->where, "%s", dir);
  snprintf(p->what, sizeof p->what, "new segment of %s", dataset);
  static const uint8_t no_store[16];
  rc = segment_create(p, schema, no_store, err);
  if (rc) {
    publish_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

int snap_publish_seal(snap_publish *p, int *fd, struct snap_error *err) {
  *fd = -1;
  if (!p) return snap__err(err, SNAP_EINVAL, "snap_publish_seal: NULL publish");
  int rc;
  struct snap__verrec vr;
  if (p->store)
    rc = snap__err(err, SNAP_EINVAL, "snap_publish_seal: not a detached publish");
  else if (!(rc = seal(p, NULL, &vr, err))) {
    *fd = p->fd;
    p->fd = -1;
  }
  publish_free(p);
  return rc;
}

/* Adopt, format 2: the chunks of the received file (open read-write as @p fd,
 * mapped at @p map) that equal the current version's (@p base, pinned) are
 * punched out and borrowed instead; the chunk table is rewritten in place (the
 * caller reseals the header). The sender's hashes only select candidates: the
 * bytes are compared. A file whose manifest has no room left is kept whole. */
static int adopt_share(int fd, const uint8_t *map, uint64_t total,
                       const snap_snapshot *base, const char *what,
                       struct snap_error *err) {
  struct snap__segment sg;
  const struct snap__segment *bs = snap__snapshot_seg(base);
  if (snap__segment_parse(map, total, SNAP__SEG_NO_DATA, what, NULL, 0, &sg, NULL))
    return 0; /* refused later, with its message */
  int rc = 0;
  uint64_t chunk = 1ull << sg.chunk_shift, vers[SNAP__MAX_FILES], *holder = NULL;
  uint32_t nvers = 0;
  if (sg.format != SNAP__FORMAT_V2 || sg.nfiles || bs->format != SNAP__FORMAT_V2 ||
      bs->chunk_shift != sg.chunk_shift ||
      sg.chunk_table + sg.nchunks * SNAP__CHUNK_ENTRY + 8ull * SNAP__MAX_FILES >
          sg.data_offset ||
      !(holder = calloc(sg.nchunks ? sg.nchunks : 1, sizeof *holder)))
    goto done;
  for (uint64_t k = 0; k < sg.nchunks; k++) {
    uint64_t off = sg.data_offset + k * chunk;
    if (off < bs->data_offset || (off - bs->data_offset) / chunk >= bs->nchunks) continue;
    const struct snap__chunk *bc = &bs->chunks[(off - bs->data_offset) / chunk];
    if (bc->hash != sg.chunks[k].hash) continue;
    /* compare where the received file has data; its holes read as zeros and
     * the equal hash covers the base there (reading a hole allocates it) */
    bool eq = true;
    for (uint64_t cur = off; eq && cur < off + chunk;) {
      off_t d = lseek(fd, (off_t)cur, SEEK_DATA);
      if (d < 0 || (uint64_t)d >= off + chunk) break;
      off_t h = lseek(fd, d, SEEK_HOLE);
      uint64_t e = h < 0 || (uint64_t)h > off + chunk ? off + chunk : (uint64_t)h;
      eq = !memcmp(map + d, bs->base + d, e - (uint64_t)d);
      cur = e;
    }
    if (!eq) continue;
    uint64_t v = bc->file ? bs->files[bc->file - 1] : bs->version;
    uint32_t j = 0;
    while (j < nvers && vers[j] != v) j++;
    if (j == nvers && nvers == SNAP__MAX_FILES) continue;
    if (j == nvers) vers[nvers++] = v;
    holder[k] = v;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)chunk)) {
      rc = snap__errno(err, -errno, "%s: punching chunk %llu", what,
                       (unsigned long long)k);
      goto done;
    }
  }
  if (!nvers) goto done;
  /* the file table in increasing order, and the entries' indices into it */
  qsort(vers, nvers, sizeof *vers, snap__cmp_u64);
  for (uint64_t k = 0; k < sg.nchunks && !rc; k++) {
    if (!holder[k]) continue;
    uint32_t f = snap__file_index(vers, nvers, holder[k]);
    if (pwrite(fd, &f, 4, (off_t)(sg.chunk_table + k * SNAP__CHUNK_ENTRY + 8)) != 4)
      rc = snap__errno(err, -errno, "%s: chunk table", what);
  }
  uint64_t msize =
      sg.chunk_table + sg.nchunks * SNAP__CHUNK_ENTRY + 8ull * nvers - SNAP__HEADER_SIZE;
  if (!rc && (pwrite(fd, vers, 8ull * nvers,
                     (off_t)(sg.chunk_table + sg.nchunks * SNAP__CHUNK_ENTRY)) !=
                  (ssize_t)(8 * nvers) ||
              pwrite(fd, &nvers, 4, SNAP__H_NFILES) != 4 ||
              pwrite(fd, &msize, 8, SNAP__H_MANIFEST_SIZE) != 8))
    rc = snap__errno(err, -errno, "%s: chunk table", what);
done:
  free(holder);
  snap__segment_free(&sg);
  return rc;
}

/* Adopt a sealed segment handed over by another process: see libsnap.h. */
int snap_publish_adopt(snap_store *s, const char *dataset, int fd, uint64_t *version,
                       struct snap_error *err) {
  if (version) *version = 0;
  snap_publish p = {.store = s, .dsfd = -1, .fd = -1};
  struct snap__segment seg = {0};
  snap_snapshot *base = NULL;
  int rofd = -1, rc = snap__dataset_name_check(dataset, err);
  bool leased = false;
  if (rc || (rc = snap__store_writable(s, err))) goto out;
  strcpy(p.dataset, dataset);
  snprintf(p.where, sizeof p.where, "%s", s->path);
  snprintf(p.what, sizeof p.what, "segment for %s received as descriptor %d", dataset,
           fd);
  struct stat st, sst;
  if (fstat(fd, &st) || fstat(s->segfd, &sst)) {
    rc = snap__errno(err, -errno, "%s", p.what);
    goto out;
  }
  int mode = fcntl(fd, F_GETFL);
  if (!S_ISREG(st.st_mode) || mode < 0 || (mode & O_ACCMODE) != O_RDWR) {
    rc =
        snap__err(err, SNAP_EINVAL, "%s: must be a regular file open read-write", p.what);
    goto out;
  }
  if (st.st_dev != sst.st_dev) {
    rc = snap__errno(err, -EXDEV, "%s: must be on the store's filesystem (%s)", p.what,
                     s->path);
    goto out;
  }
  p.total = (uint64_t)st.st_size;
  /* Structure first (the client sealed it with version 0 and no store id), so
   * that a bad file does not burn a version number. */
  void *addr;
  if (p.total < SNAP__HEADER_SIZE) {
    rc = snap__err(err, SNAP_ECORRUPT, "%s: %llu bytes is smaller than a header", p.what,
                   (unsigned long long)p.total);
    goto out;
  }
  if ((rc = snap__map_aligned(fd, p.total, false, &addr))) {
    rc = snap__errno(err, rc, "%s: mmap", p.what);
    goto out;
  }
  p.base = addr;
  if ((rc = snap__segment_parse(p.base, p.total, 0, p.what, dataset, 0, &seg, err)))
    goto out;
  if (seg.version != 0) {
    rc =
        snap__err(err, SNAP_EINVAL, "%s: header version = %llu, a detached segment has 0",
                  p.what, (unsigned long long)seg.version);
    goto out;
  }
  snap__segment_free(&seg);
  if ((rc = name_creatable(s, dataset, err)) ||
      (rc = snap__dataset_dir_lock(s, dataset, LOCK_SH, &p.dsfd, err)) ||
      (rc = reserve_version(s, dataset, &p.version, err)))
    goto out;
  snap__seg_relpath(p.what, sizeof p.what, dataset, p.version);
  /* Share what equals the current version (pinned until after the flip). */
  if (!snap_pin(s, dataset, &base, NULL) &&
      (rc = adopt_share(fd, p.base, p.total, base, p.what, err)))
    goto out;
  /* Stamp the version and the store id, reseal the header. */
  uint64_t msize, hh;
  memcpy(&msize, p.base + SNAP__H_MANIFEST_SIZE, 8);
  if (pwrite(fd, &p.version, 8, SNAP__H_VERSION) != 8 ||
      pwrite(fd, s->store_id, 16, SNAP__H_STORE_ID) != 16 ||
      (hh = snap__header_hash(p.base, msize), pwrite(fd, &hh, 8, SNAP__H_HEADER_HASH)) !=
          8) {
    rc = snap__errno(err, -errno, "%s/%s: stamping the header", s->path, p.what);
    goto out;
  }
  /* From here on nobody may write to it: keep only a read-only descriptor and
   * take a read lease, which the kernel grants only while no process at all
   * has the file open for writing (the sender must have closed its copy). */
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  rofd = open(proc, O_RDONLY | O_CLOEXEC);
  if (rofd < 0) {
    rc = snap__errno(err, -errno, "%s/%s: reopen read-only", s->path, p.what);
    goto out;
  }
  /* the mapping made through fd counts as a writer too: drop it as well */
  snap__unmap(p.base, p.total);
  p.base = NULL;
  close(fd);
  fd = -1;
  /* The sender closes its copy only after sending it: give it a moment (a
   * bounded wait of up to 2 s, polling every millisecond). */
  int lease_rc;
  for (int tries = 0; (lease_rc = fcntl(rofd, F_SETLEASE, F_RDLCK)) != 0 &&
                      (errno == EAGAIN || errno == EBUSY) && tries < 2000;
       tries++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  if (lease_rc) {
    rc = errno == EAGAIN || errno == EBUSY
             ? snap__err(err, SNAP_EBUSY,
                         "%s/%s: still open for writing by another process: the sender "
                         "must close its descriptor before handing it over",
                         s->path, p.what)
             : snap__errno(err, -errno, "%s/%s: read lease", s->path, p.what);
    goto out;
  }
  leased = true;
  /* the lease made us the file's owner, and a lease break would SIGIO us, which
   * terminates by default: no owner, no signal */
  fcntl(rofd, F_SETOWN, 0);
  if ((rc = snap__map_aligned(rofd, p.total, false, &addr))) {
    rc = snap__errno(err, rc, "%s/%s: mmap", s->path, p.what);
    goto out;
  }
  p.base = addr;
  /* Everything again, now that it cannot change: structure, our stamp, data
   * (through the composed view when chunks are shared). */
  if ((rc = snap__segment_parse(p.base, p.total, SNAP__SEG_NO_DATA, p.what, dataset,
                                p.version, &seg, err)) ||
      (rc = snap__compose(s, &seg, p.base, false, p.what, err)) ||
      (rc = snap__segment_check_data(&seg, p.what, err)))
    goto out;
  if (memcmp(seg.store_id, s->store_id, 16)) {
    rc = snap__err(err, SNAP_ECHECKSUM, "%s/%s: store id changed after stamping", s->path,
                   p.what);
    goto out;
  }
  char what[sizeof p.where + sizeof p.what + 2];
  snprintf(what, sizeof what, "%s/%s", s->path, p.what);
  if ((rc = snap__segment_verify_data(&seg, p.base, what, err))) goto out;
  if (fchmod(rofd, SNAP__MODE_SEGMENT)) {
    rc = snap__errno(err, -errno, "%s/%s: fchmod", s->path, p.what);
    goto out;
  }
  struct snap__verrec vr = {.state = SNAP_STATE_CURRENT,
                            .ncols = seg.ncols,
                            .nrows = seg.nrows,
                            .bytes = p.total,
                            .created_ns = seg.created_ns,
                            .data_hash = {seg.data_hash[0], seg.data_hash[1]},
                            .header_hash = seg.header_hash};
  p.fd = rofd;
  if ((rc = flip(&p, &vr, err))) goto out;
  p.committed = true;
  if (version) *version = p.version;
  /* The mechanism ends with the flip; what follows is policy's call. */
  snap__after_commit(s, dataset);
out:
  snap_unpin(base);
  snap__segment_free(&seg);
  snap__unmap(p.base, p.total);
  if (leased) fcntl(rofd, F_SETLEASE, F_UNLCK);
  if (rofd >= 0) close(rofd);
  if (fd >= 0) close(fd);
  if (p.version && !p.committed) snap__first_publish_undo(s, p.dsfd, dataset);
  if (p.dsfd >= 0) close(p.dsfd);
  return rc;
}

/* ------------------------------------------------------------------ import */

int snap__republish(snap_store *s, const char *dataset, const struct snap__segment *seg,
                    unsigned flags, uint64_t cap,
                    int (*hook)(snap_publish *p, void *arg, struct snap_error *err),
                    void *arg, uint64_t *version, struct snap_error *err) {
  struct snap_field *f = calloc(seg->ncols ? seg->ncols : 1, sizeof *f);
  if (!f) return snap__errno(err, -ENOMEM, "%s: %u columns", dataset, seg->ncols);
  for (uint32_t i = 0; i < seg->ncols; i++) {
    const struct snap_column *c = &seg->cols[i];
    f[i] = (struct snap_field){.name = c->name,
                               .type = c->type,
                               .flags = c->flags,
                               .timezone = c->timezone,
                               .data_bytes = c->data_bytes,
                               .dict_size = c->dict_size,
                               .code_type = c->type == SNAP_CATEGORY ? c->code_type : 0};
  }
  struct snap_schema schema = {seg->nrows, seg->ncols, f, seg->metadata,
                               seg->metadata_len};
  snap_publish *p = NULL;
  int rc = publish_begin(s, dataset, &schema, cap, &p, err);
  if (!rc && flags) rc = snap_publish_set_flags(p, flags, err);
  /* the same buffers, read at commit */
  for (uint32_t i = 0; i < seg->ncols && !rc; i++) {
    const struct snap_column *src = &seg->cols[i];
    const void *b[] = {src->values, src->validity, src->offsets, src->data};
    for (int k = 0; k < SNAP__NBUF && !rc; k++)
      if (b[k]) rc = snap_publish_copy(p, i, (enum snap_buffer)k, b[k], err);
  }
  if (!rc && hook) rc = hook(p, arg, err);
  if (!rc) {
    rc = snap_publish_commit(p, version, err); /* frees p either way */
    p = NULL;
  }
  snap_publish_abort(p);
  free(f);
  return rc;
}

int snap_compact(snap_store *s, const char *dataset, uint64_t *version,
                 struct snap_error *err) {
  if (version) *version = 0;
  snap_snapshot *cur;
  int rc = snap__store_writable(s, err);
  if (rc || (rc = snap_pin(s, dataset, &cur, err))) return rc;
  rc = snap__republish(s, dataset, snap__snapshot_seg(cur), SNAP_PUBLISH_FULL, 0, NULL,
                       NULL, version, err);
  snap_unpin(cur);
  return rc;
}

int snap_publish_import(snap_store *s, const char *dataset, int fd, uint64_t *version,
                        struct snap_error *err) {
  if (version) *version = 0;
  struct stat st;
  if (fstat(fd, &st)) return snap__errno(err, -errno, "import: descriptor %d", fd);
  if (!S_ISREG(st.st_mode))
    return snap__err(err, SNAP_EINVAL, "import: descriptor %d is not a regular file", fd);
  uint64_t size = (uint64_t)st.st_size;
  if (size < SNAP__HEADER_SIZE)
    return snap__err(err, SNAP_ECORRUPT, "import: %llu bytes is smaller than a header",
                     (unsigned long long)size);
  void *addr;
  int rc = snap__map_aligned(fd, size, false, &addr);
  if (rc)
    return snap__errno(err, rc, "import: mmap %llu bytes", (unsigned long long)size);
  struct snap__segment seg;
  /* structure first: a segment that borrows chunks is not whole on its own */
  if ((rc = snap__segment_parse(addr, size, SNAP__SEG_NO_DATA, "import", NULL, 0, &seg,
                                err)))
    goto out_map;
  if (seg.nfiles) {
    rc = snap__err(err, SNAP_EFORMAT,
                   "import: the segment (version %llu) borrows chunks from %u earlier "
                   "versions' files; export it with snapctl export first",
                   (unsigned long long)seg.version, seg.nfiles);
    goto out;
  }
  if ((rc = snap__segment_check_data(&seg, "import", err)) ||
      (rc = snap__segment_verify_data(&seg, addr, "import", err)))
    goto out;
  rc = snap__republish(s, dataset, &seg, 0, 0, NULL, NULL, version, err);
out:
  snap__segment_free(&seg);
out_map:
  snap__unmap(addr, size);
  return rc;
}
