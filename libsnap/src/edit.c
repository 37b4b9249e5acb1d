/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Editing a version in place (docs/design.md section 17).
 *
 * An edit pins the current version (its base) and maps the base's file a
 * second time, privately: MAP_PRIVATE, writable, composed like a reader's
 * view (the chunks the base borrows are mapped privately from their files
 * too). The writer writes into that view; the kernel copies a page into the
 * writer's anonymous memory on its first write and leaves every other page
 * the file's. Nobody else sees the writes.
 *
 * At commit, what changed is read from the kernel's page table, not found by
 * comparing: in /proc/self/pagemap a page of a private file mapping that was
 * written is present and anonymous (bit 61 "file page or shared anon" clear),
 * or swapped (bit 62). A chunk of the base with no such page is shared with
 * the new version unread (share.c); a chunk with one is compared with the
 * base (a write may have put back the same bytes), then written. So an edit
 * costs time and memory in proportion to the pages written.
 *
 * The new version is a compare-and-swap on the base: the flip refuses with
 * SNAP_ECONFLICT when another version became current meanwhile (publish.c).
 * A killed writer leaves nothing: the view is its private memory, the pin a
 * lock that dies with it, the new file an O_TMPFILE until the flip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct snap_edit {
  snap_store *store;
  snap_snapshot *base; /* the pin: keeps every chunk the view maps alive */
  uint8_t *view;
  uint64_t size;
  struct snap__segment seg; /* parsed over the view: its pointers are writable */
  bool committed;
};

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

int snap_edit_begin(snap_store *s, const char *dataset, snap_edit **out,
                    struct snap_error *err) {
  *out = NULL;
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err))) return rc;
  snap_edit *ed = calloc(1, sizeof *ed);
  if (!ed) return snap__errno(err, -ENOMEM, "edit \"%s\"", dataset);
  if ((rc = snap_pin(s, dataset, &ed->base, err))) {
    free(ed);
    return rc;
  }
  const char *path = snap_snapshot_path(ed->base);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = snap__errno(err, -errno, "%s: opening for an edit", path);
    goto fail;
  }
  size_t size;
  snap_snapshot_segment(ed->base, &size);
  ed->size = size;
  void *view;
  if ((rc = snap__map_private(fd, ed->size, &view))) {
    close(fd);
    rc = snap__errno(err, rc, "%s: private mapping of %llu bytes", path,
                     (unsigned long long)ed->size);
    goto fail;
  }
  close(fd);
  ed->view = view;
  /* the pin validated the file; parse it again for pointers into the view */
  if ((rc = snap__segment_parse(ed->view, ed->size, SNAP__SEG_NO_DATA, path, dataset,
                                snap_snapshot_version(ed->base), &ed->seg, err)) ||
      (rc = snap__compose(s, &ed->seg, ed->view, true, path, err)))
    goto fail;
  ed->store = s;
  snap__store_ref(s);
  *out = ed;
  return 0;
fail:
  snap__segment_free(&ed->seg);
  snap__unmap(ed->view, ed->size);
  snap_unpin(ed->base);
  free(ed);
  return rc;
}

uint64_t snap_edit_base(const snap_edit *ed) { return snap_snapshot_version(ed->base); }
snap_snapshot *snap_edit_snapshot(const snap_edit *ed) { return ed->base; }
uint64_t snap_edit_nrows(const snap_edit *ed) { return ed->seg.nrows; }

const struct snap_column *snap_edit_column(const snap_edit *ed, uint32_t col) {
  return col < ed->seg.ncols ? &ed->seg.cols[col] : NULL;
}

const struct snap_block *snap_edit_block(const snap_edit *ed, uint32_t block) {
  return block < ed->seg.nblocks ? &ed->seg.blocks[block] : NULL;
}

void *snap_edit_view(const snap_edit *ed, size_t *len) {
  if (len) *len = ed->size;
  return ed->view;
}

/* Per chunk of the base's data region, 1 when the writer wrote none of its
 * pages (*out, malloc'd; NULL for a v1 base, which has no chunks), and the
 * number of pages written in the data region. */
static int written(const snap_edit *ed, uint8_t **out, uint64_t *pages,
                   struct snap_error *err) {
  const struct snap__segment *g = &ed->seg;
  *out = NULL;
  *pages = 0;
  uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t d0 = (uintptr_t)ed->view + g->data_offset, d1 = d0 + g->data_size;
  uint64_t first = d0 / psz, npages = d1 > d0 ? (d1 - 1) / psz + 1 - first : 0;
  bool v2 = g->format == SNAP__FORMAT_V2 && g->nchunks;
  uint8_t *clean = NULL;
  if (v2) {
    if (!(clean = malloc(g->nchunks)))
      return snap__errno(err, -ENOMEM, "%s: edit", snap_snapshot_path(ed->base));
    memset(clean, 1, g->nchunks);
  }
  enum { BATCH = 8192 }; /* 64 KiB of entries: 32 MiB of 4 KiB pages per read */
  uint64_t *pm = malloc(BATCH * sizeof *pm);
  int fd = pm ? open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    int e = pm ? -errno : -ENOMEM;
    free(pm);
    free(clean);
    return snap__errno(err, e, "/proc/self/pagemap: the pages an edit wrote");
  }
  for (uint64_t at = 0; at < npages;) {
    uint64_t n = npages - at < BATCH ? npages - at : BATCH;
    ssize_t got = pread(fd, pm, n * 8, (off_t)((first + at) * 8));
    if (got <= 0 || got % 8) {
      int e = got < 0 ? errno : EIO;
      close(fd);
      free(pm);
      free(clean);
      return snap__errno(err, -e, "/proc/self/pagemap: reading %llu entries at page %llu",
                         (unsigned long long)n, (unsigned long long)(first + at));
    }
    n = (uint64_t)got / 8;
    for (uint64_t i = 0; i < n; i++) {
      uint64_t e = pm[i];
      if (!(((e & PM_PRESENT) && !(e & PM_FILE)) || (e & PM_SWAPPED))) continue;
      ++*pages;
      if (!clean) continue;
      /* every chunk the page overlaps (a page may be larger than a chunk) */
      uint64_t pa = (first + at + i) * psz;
      uint64_t lo = (pa > d0 ? pa : d0) - d0, hi = (pa + psz < d1 ? pa + psz : d1) - d0;
      for (uint64_t c = lo >> g->chunk_shift;
           c <= (hi - 1) >> g->chunk_shift && c < g->nchunks; c++)
        clean[c] = 0;
    }
    at += n;
  }
  close(fd);
  free(pm);
  *out = clean;
  return 0;
}

int snap_edit_written(const snap_edit *ed, uint64_t *pages, struct snap_error *err) {
  uint8_t *clean;
  int rc = written(ed, &clean, pages, err);
  free(clean);
  return rc;
}

int snap_publish_set_edit(snap_publish *pub, snap_edit *ed, struct snap_error *err) {
  if (!ed || ed->committed)
    return snap__err(err, SNAP_EINVAL, "snap_publish_set_edit: %s edit",
                     ed ? "a committed" : "no");
  /* the base's version number alone does not say which dataset it is */
  if (!snap__publish_is_of(pub, ed->store, ed->seg.dataset))
    return snap__err(err, SNAP_EINVAL,
                     "snap_publish_set_edit: the edit is of \"%s\" in %s, not of this "
                     "publish's dataset",
                     ed->seg.dataset, snap_store_path(ed->store));
  uint8_t *clean;
  uint64_t pages;
  int rc = written(ed, &clean, &pages, err);
  if (rc) return rc;
  return snap__publish_edit_base(pub, ed->view, ed->size, snap_edit_base(ed), clean, err);
}

static int set_edit(snap_publish *p, void *ed, struct snap_error *err) {
  return snap_publish_set_edit(p, ed, err);
}

int snap_edit_commit(snap_edit *ed, uint64_t *version, struct snap_error *err) {
  if (version) *version = 0;
  if (!ed || ed->committed)
    return snap__err(err, SNAP_EINVAL, "snap_edit_commit: %s edit",
                     ed ? "a committed" : "no");
  const struct snap__segment *g = &ed->seg;
  /* the base's room for rows too: the same layout, so every chunk can be shared */
  int rc = snap__republish(ed->store, g->dataset, g, 0,
                           g->format == SNAP__FORMAT_V2 ? g->capacity : 0, set_edit, ed,
                           version, err);
  if (!rc) ed->committed = true;
  return rc;
}

void snap_edit_free(snap_edit *ed) {
  if (!ed) return;
  snap__segment_free(&ed->seg);
  snap__unmap(ed->view, ed->size);
  snap_unpin(ed->base);
  snap__store_unref(ed->store);
  free(ed);
}
