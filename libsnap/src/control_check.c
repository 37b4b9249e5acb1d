/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Structural validation of the control file before LMDB maps it.
 *
 * LMDB does not checksum its pages and trusts every page number, offset and
 * size it finds in its map: one overwritten page is enough for a SIGBUS (a
 * page number past the end of the file) or a wild read. So a process checks
 * the file the first time it opens the environment, reading it with pread()
 * (never through a mapping), as LMDB 0.9 lays it out (liblmdb/mdb.c, data
 * version 1, 64-bit page numbers):
 *
 *   page header (16 bytes): pgno u64, pad u16, flags u16, lower u16, upper u16
 *                           (an overflow page has a u32 page count there)
 *   meta (pages 0 and 1, at byte 16): magic u32, version u32, address, mapsize,
 *         free DB (48 bytes; its pad field is the page size), main DB, last_pg,
 *         txnid. LMDB uses the meta with the higher txnid.
 *   DB record (48 bytes): pad u32, flags u16, depth u16, branch, leaf and
 *         overflow page counts, entries, root (P_INVALID = ~0: empty)
 *   branch/leaf page: u16 node offsets from byte 16 to lower; nodes between
 *         upper and the page end: lo u16, hi u16, flags u16, ksize u16, key,
 *         data. A branch node's child is lo | hi << 16 | flags << 32; a leaf
 *         node's data size is lo | hi << 16, and with F_BIGDATA its data is
 *         the page number of an overflow run.
 *
 * Every tree reachable from the newest meta is walked: the free-page DB, the
 * main DB, and each named DB it lists. Each page is in range, read once (a
 * bitmap catches cycles and shared pages), has the flags its place requires,
 * sane bounds and node offsets, and lies at the depth the DB record claims;
 * the counts in the DB records must match what was walked; the records of
 * the three libsnap DBs have the sizes control.c expects, and dataset names
 * are valid (they become paths). The walk reads every page once: O(file).
 *
 * The walk is done without a read transaction, so a writer in another process
 * may recycle pages of the snapshot being walked. That takes two commits
 * after the meta was read; a failure is only reported when the newest txnid
 * moved by at most one during the walk, else the walk is repeated.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(size_t) == 8, "the control-file check reads 64-bit LMDB files");

#define HDR 16u /* page header */
#define META_SIZE 136u
#define DB_SIZE 48u
#define MAGIC 0xBEEFC0DEu
#define DATA_VERSION 1u
#define P_BRANCH 0x01u
#define P_LEAF 0x02u
#define P_OVERFLOW 0x04u
#define P_META 0x08u
#define F_BIGDATA 0x01u
#define F_SUBDATA 0x02u
#define INVALID_PGNO UINT64_MAX
#define MAX_DEPTH 32u /* LMDB's cursor stack */
#define RETRIES 8

struct db {
  uint32_t pad;
  uint16_t flags, depth;
  uint64_t branch, leaf, overflow, entries, root;
};

struct meta {
  uint32_t magic, version;
  struct db free, main;
  uint64_t last_pg, txnid;
};

enum kind { K_FREE, K_MAIN, K_META, K_DATASETS, K_VERSIONS, K_OTHER };
static const char *const kind_name[] = {"free-page DB", "main DB",     "meta DB",
                                        "datasets DB",  "versions DB", "named DB"};

struct walk {
  int fd;
  const char *path;
  uint32_t psize;
  uint64_t last_pg;
  uint8_t *seen; /* one bit per page */
  uint8_t *page; /* scratch, MAX_DEPTH + 1 pages */
  uint64_t branch, leaf, overflow, entries;
  struct snap_error *err;
};

static void db_parse(const uint8_t *p, struct db *d) {
  d->pad = snap__get32(p);
  d->flags = snap__get16(p + 4);
  d->depth = snap__get16(p + 6);
  d->branch = snap__get64(p + 8);
  d->leaf = snap__get64(p + 16);
  d->overflow = snap__get64(p + 24);
  d->entries = snap__get64(p + 32);
  d->root = snap__get64(p + 40);
}

static int bad(struct walk *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad(struct walk *w, const char *fmt, ...) {
  char what[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return snap__err(w->err, SNAP_ECONTROL,
                   "%s: damaged (repair: snapctl doctor --rebuild): %s", w->path, what);
}

static int read_at(struct walk *w, void *buf, size_t len, uint64_t off) {
  ssize_t n = pread(w->fd, buf, len, (off_t)off);
  if (n == (ssize_t)len) return 0;
  if (n < 0)
    return snap__errno(w->err, -errno, "%s: read at %llu", w->path,
                       (unsigned long long)off);
  return bad(w, "short read at byte %llu", (unsigned long long)off);
}

/* Mark pages [pgno, pgno + n) seen; refuse out-of-range and repeated pages. */
static int claim(struct walk *w, uint64_t pgno, uint64_t n, const char *what) {
  if (pgno < 2 || n == 0 || pgno > w->last_pg || n > w->last_pg - pgno + 1)
    return bad(w, "%s: page %llu (+%llu) outside pages 2..%llu", what,
               (unsigned long long)pgno, (unsigned long long)n,
               (unsigned long long)w->last_pg);
  for (uint64_t i = pgno; i < pgno + n; i++) {
    if (w->seen[i >> 3] & (1u << (i & 7)))
      return bad(w, "%s: page %llu reached twice (a cycle or shared page)", what,
                 (unsigned long long)i);
    w->seen[i >> 3] |= (uint8_t)(1u << (i & 7));
  }
  return 0;
}

/* Check one leaf record's key and data (data NULL: on overflow pages). */
static int record_check(struct walk *w, enum kind k, const uint8_t *key, uint32_t ksize,
                        const uint8_t *data, uint64_t dsize, uint16_t nflags,
                        uint64_t pgno) {
  const char *kn = kind_name[k];
  if (k == K_MAIN) return 0; /* checked by the caller, which walks the named DB */
  if (nflags & F_SUBDATA)
    return bad(w, "%s page %llu: a record marked as a named DB", kn,
               (unsigned long long)pgno);
  switch (k) {
    case K_FREE: {
      if (ksize != 8 || dsize < 8 || dsize % 8)
        return bad(w, "%s page %llu: record key %u bytes, data %llu bytes", kn,
                   (unsigned long long)pgno, ksize, (unsigned long long)dsize);
      if (data) {
        uint64_t count = snap__get64(data);
        if (count != dsize / 8 - 1)
          return bad(w, "%s page %llu: free list of %llu bytes says %llu pages", kn,
                     (unsigned long long)pgno, (unsigned long long)dsize,
                     (unsigned long long)count);
        for (uint64_t i = 1; i <= count; i++)
          if (snap__get64(data + 8 * i) < 2 || snap__get64(data + 8 * i) > w->last_pg)
            return bad(w, "%s page %llu: free page %llu past last page %llu", kn,
                       (unsigned long long)pgno,
                       (unsigned long long)snap__get64(data + 8 * i),
                       (unsigned long long)w->last_pg);
      }
      return 0;
    }
    case K_META:
      if (ksize == 4 && !memcmp(key, "meta", 4) && dsize != sizeof(struct snap__meta))
        return bad(w, "meta record: %llu bytes, expected %zu", (unsigned long long)dsize,
                   sizeof(struct snap__meta));
      if (ksize == 12 && !memcmp(key, "max_datasets", 12) && dsize != 4)
        return bad(w, "max_datasets record: %llu bytes, expected 4",
                   (unsigned long long)dsize);
      return 0;
    case K_DATASETS: {
      if (dsize != sizeof(struct snap__dsrec))
        return bad(w, "datasets record: %llu bytes, expected %zu",
                   (unsigned long long)dsize, sizeof(struct snap__dsrec));
      char name[SNAP_DATASET_NAME_MAX + 1];
      if (ksize == 0 || ksize > SNAP_DATASET_NAME_MAX || memchr(key, 0, ksize))
        return bad(w, "datasets page %llu: name of %u bytes", (unsigned long long)pgno,
                   ksize);
      memcpy(name, key, ksize);
      name[ksize] = 0;
      if (snap__dataset_name_check(name, NULL))
        return bad(w, "datasets page %llu: invalid dataset name",
                   (unsigned long long)pgno);
      return 0;
    }
    case K_VERSIONS:
      if (ksize != 16 || dsize != sizeof(struct snap__verrec))
        return bad(w,
                   "versions record: key %u bytes, data %llu bytes, expected 16 and %zu",
                   ksize, (unsigned long long)dsize, sizeof(struct snap__verrec));
      if (!snap__get64(key) || !snap__get64(key + 8)) /* big-endian ids; 0 means none */
        return bad(w, "versions page %llu: dataset id or version 0",
                   (unsigned long long)pgno);
      return 0;
    default:
      return 0;
  }
}

static int tree_check(struct walk *w, enum kind k, const char *name, const struct db *d);

/* Walk the subtree at @p pgno, which sits at @p level (1 = root) of a DB of @p depth. */
static int page_walk(struct walk *w, enum kind k, uint64_t pgno, unsigned level,
                     unsigned depth) {
  const char *kn = kind_name[k];
  int rc = claim(w, pgno, 1, kn);
  if (rc) return rc;
  uint8_t *p = w->page + (size_t)level * w->psize;
  if ((rc = read_at(w, p, w->psize, pgno * w->psize))) return rc;
  uint16_t flags = snap__get16(p + 10), lower = snap__get16(p + 12),
           upper = snap__get16(p + 14);
  if (snap__get64(p) != pgno)
    return bad(w, "%s page %llu: header says page %llu", kn, (unsigned long long)pgno,
               (unsigned long long)snap__get64(p));
  bool leaf = level == depth;
  if (flags != (leaf ? P_LEAF : P_BRANCH))
    return bad(w, "%s page %llu: flags 0x%x at level %u of %u, expected a %s page", kn,
               (unsigned long long)pgno, flags, level, depth, leaf ? "leaf" : "branch");
  if (lower < HDR || lower > upper || upper > w->psize || (lower - HDR) % 2)
    return bad(w, "%s page %llu: lower %u, upper %u (page size %u)", kn,
               (unsigned long long)pgno, lower, upper, w->psize);
  unsigned n = (lower - HDR) / 2;
  if (n < (leaf ? 1u : 2u))
    return bad(w, "%s page %llu: %u nodes on a %s page", kn, (unsigned long long)pgno, n,
               leaf ? "leaf" : "branch");
  if (leaf)
    w->leaf++;
  else
    w->branch++;
  for (unsigned i = 0; i < n; i++) {
    uint32_t off = snap__get16(p + HDR + 2 * i);
    if (off < upper || off % 2 || off + 8u > w->psize)
      return bad(w, "%s page %llu: node %u at offset %u (upper %u, page size %u)", kn,
                 (unsigned long long)pgno, i, off, upper, w->psize);
    const uint8_t *node = p + off;
    uint16_t nflags = snap__get16(node + 4);
    uint32_t ksize = snap__get16(node + 6);
    if (off + 8u + ksize > w->psize)
      return bad(w, "%s page %llu: node %u key of %u bytes past the page end", kn,
                 (unsigned long long)pgno, i, ksize);
    if (!leaf) {
      uint64_t child = snap__get16(node) | (uint64_t)snap__get16(node + 2) << 16 |
                       (uint64_t)nflags << 32;
      /* the child is read into the next scratch page: p stays valid */
      if ((rc = page_walk(w, k, child, level + 1, depth))) return rc;
      continue;
    }
    w->entries++;
    uint64_t dsize = snap__get16(node) | (uint64_t)snap__get16(node + 2) << 16;
    if (nflags & ~(F_BIGDATA | F_SUBDATA))
      return bad(w, "%s page %llu: node %u flags 0x%x", kn, (unsigned long long)pgno, i,
                 nflags);
    const uint8_t *key = node + 8, *data = key + ksize;
    if (!(nflags & F_BIGDATA)) {
      if (off + 8u + ksize + dsize > w->psize)
        return bad(w, "%s page %llu: node %u data of %llu bytes past the page end", kn,
                   (unsigned long long)pgno, i, (unsigned long long)dsize);
    } else {
      if (off + 8u + ksize + 8u > w->psize || (nflags & F_SUBDATA))
        return bad(w, "%s page %llu: node %u overflow reference past the page end", kn,
                   (unsigned long long)pgno, i);
      uint64_t ov = snap__get64(data);
      uint8_t h[HDR];
      if (ov < 2 || ov > w->last_pg)
        return bad(w, "%s page %llu: node %u overflow page %llu past last page %llu", kn,
                   (unsigned long long)pgno, i, (unsigned long long)ov,
                   (unsigned long long)w->last_pg);
      if ((rc = read_at(w, h, HDR, ov * w->psize))) return rc;
      uint32_t pages = snap__get32(h + 12);
      if (snap__get64(h) != ov || snap__get16(h + 10) != P_OVERFLOW || pages == 0 ||
          dsize > (uint64_t)pages * w->psize - HDR)
        return bad(w, "%s overflow page %llu: flags 0x%x, %u pages for %llu bytes", kn,
                   (unsigned long long)ov, snap__get16(h + 10), pages,
                   (unsigned long long)dsize);
      if ((rc = claim(w, ov, pages, kn))) return rc;
      w->overflow += pages;
      if (k == K_FREE) { /* the only DB with records this large: check the list */
        uint8_t *buf = malloc(dsize ? dsize : 1);
        if (!buf) return snap__errno(w->err, -ENOMEM, "%s", w->path);
        rc = read_at(w, buf, dsize, ov * w->psize + HDR);
        if (!rc) rc = record_check(w, k, key, ksize, buf, dsize, nflags, pgno);
        free(buf);
        if (rc) return rc;
        continue;
      }
      data = NULL;
    }
    if (k == K_MAIN) {
      if (!(nflags & F_SUBDATA) || dsize != DB_SIZE || !data)
        return bad(w,
                   "main DB page %llu: record %u is not a named DB (flags 0x%x, %llu "
                   "bytes)",
                   (unsigned long long)pgno, i, nflags, (unsigned long long)dsize);
      char dbname[64];
      snprintf(dbname, sizeof dbname, "%.*s", (int)(ksize < 60 ? ksize : 60), key);
      enum kind sub = !strcmp(dbname, "meta")       ? K_META
                      : !strcmp(dbname, "datasets") ? K_DATASETS
                      : !strcmp(dbname, "versions") ? K_VERSIONS
                                                    : K_OTHER;
      struct db d;
      db_parse(data, &d);
      /* a nested walk: it must not disturb this walk's counts or scratch pages */
      struct walk inner = *w;
      inner.branch = inner.leaf = inner.overflow = inner.entries = 0;
      inner.page = malloc((size_t)(MAX_DEPTH + 1) * w->psize);
      if (!inner.page) return snap__errno(w->err, -ENOMEM, "%s", w->path);
      rc = tree_check(&inner, sub, dbname, &d);
      free(inner.page);
      if (rc) return rc;
      continue;
    }
    if ((rc = record_check(w, k, key, ksize, data, dsize, nflags, pgno))) return rc;
  }
  return 0;
}

/* Walk one DB from its record and compare the counts it claims. */
static int tree_check(struct walk *w, enum kind k, const char *name, const struct db *d) {
  /* the free DB's flags word holds the environment's flags (LMDB's mm_flags),
   * except MDB_FIXEDMAP (0x01), which would map at an address from the file */
  uint16_t allowed = k == K_FREE ? (uint16_t)~1u : 0;
  if (d->flags & ~allowed) return bad(w, "DB \"%s\": flags 0x%x", name, d->flags);
  if (d->root == INVALID_PGNO) {
    if (d->depth || d->entries || d->branch || d->leaf || d->overflow)
      return bad(w, "DB \"%s\": empty but depth %u, %llu entries", name, d->depth,
                 (unsigned long long)d->entries);
    return 0;
  }
  if (d->depth < 1 || d->depth > MAX_DEPTH)
    return bad(w, "DB \"%s\": depth %u", name, d->depth);
  int rc = page_walk(w, k, d->root, 1, d->depth);
  if (rc) return rc;
  if (w->entries != d->entries || w->branch != d->branch || w->leaf != d->leaf ||
      w->overflow != d->overflow)
    return bad(
        w,
        "DB \"%s\": record says %llu entries in %llu/%llu/%llu branch/leaf/overflow "
        "pages, the tree has %llu in %llu/%llu/%llu",
        name, (unsigned long long)d->entries, (unsigned long long)d->branch,
        (unsigned long long)d->leaf, (unsigned long long)d->overflow,
        (unsigned long long)w->entries, (unsigned long long)w->branch,
        (unsigned long long)w->leaf, (unsigned long long)w->overflow);
  return 0;
}

static int meta_read(struct walk *w, uint64_t off, int i, struct meta *m,
                     uint32_t *psize) {
  uint8_t b[HDR + META_SIZE];
  int rc = read_at(w, b, sizeof b, off);
  if (rc) return rc;
  m->magic = snap__get32(b + 16);
  m->version = snap__get32(b + 20);
  db_parse(b + 40, &m->free);
  db_parse(b + 88, &m->main);
  m->last_pg = snap__get64(b + 136);
  m->txnid = snap__get64(b + 144);
  *psize = m->free.pad;
  if (!(snap__get16(b + 10) & P_META) || m->magic != MAGIC)
    return bad(w, "meta page %d: flags 0x%x, magic 0x%x, expected LMDB's 0x%x", i,
               snap__get16(b + 10), m->magic, MAGIC);
  if (m->version != DATA_VERSION)
    return bad(w, "meta page %d: LMDB data version %u, expected %u", i, m->version,
               DATA_VERSION);
  /* Transaction N writes meta page N & 1, and a read transaction picks its meta
   * by that parity (from the lock file's txnid), not by comparing the two: a
   * meta on the wrong page would make readers use a tree this walk never saw. */
  if (m->txnid && (m->txnid & 1) != (uint64_t)i)
    return bad(w, "meta page %d: txnid %llu belongs on meta page %d", i,
               (unsigned long long)m->txnid, (int)(m->txnid & 1));
  return 0;
}

/* The newest txnid of the two metas (0 when unreadable). */
static uint64_t newest_txnid(struct walk *w) {
  struct meta m[2];
  uint32_t ps;
  struct walk q = *w;
  q.err = NULL;
  if (meta_read(&q, 0, 0, &m[0], &ps) || meta_read(&q, w->psize, 1, &m[1], &ps)) return 0;
  return m[0].txnid > m[1].txnid ? m[0].txnid : m[1].txnid;
}

static int check_once(struct walk *w, uint64_t fsize, uint64_t *txnid) {
  struct meta m[2];
  uint32_t ps0, ps1;
  long os = sysconf(_SC_PAGESIZE);
  int rc = meta_read(w, 0, 0, &m[0], &ps0);
  if (rc) return rc;
  if (ps0 != (uint32_t)os)
    return bad(w, "meta page 0: page size %u, expected %ld", ps0, os);
  w->psize = ps0;
  if (fsize < 2u * (uint64_t)ps0)
    return bad(w, "file of %llu bytes is shorter than its two meta pages",
               (unsigned long long)fsize);
  if ((rc = meta_read(w, ps0, 1, &m[1], &ps1))) return rc;
  if (ps1 != ps0)
    return bad(w, "meta page 1: page size %u, meta page 0 says %u", ps1, ps0);
  for (int i = 0; i < 2; i++)
    if (m[i].last_pg < 1 || m[i].last_pg >= fsize / ps0)
      return bad(w, "meta page %d: last page %llu, the file holds %llu pages", i,
                 (unsigned long long)m[i].last_pg, (unsigned long long)(fsize / ps0));
  const struct meta *cur = &m[m[0].txnid < m[1].txnid];
  *txnid = cur->txnid;
  w->last_pg = cur->last_pg;
  free(w->seen);
  w->seen = calloc(1, (size_t)(w->last_pg / 8 + 1));
  free(w->page);
  w->page = malloc((size_t)(MAX_DEPTH + 1) * ps0);
  if (!w->seen || !w->page) return snap__errno(w->err, -ENOMEM, "%s", w->path);
  w->branch = w->leaf = w->overflow = w->entries = 0;
  if ((rc = tree_check(w, K_FREE, "free pages", &cur->free))) return rc;
  w->branch = w->leaf = w->overflow = w->entries = 0;
  return tree_check(w, K_MAIN, "main", &cur->main);
}

int snap__control_check_metas(int fd, const char *path, struct snap_error *err) {
  struct stat st;
  if (fstat(fd, &st)) return snap__errno(err, -errno, "%s: fstat", path);
  struct walk w = {.fd = fd, .path = path, .err = err};
  struct meta m[2];
  uint32_t ps0, ps1;
  int rc = meta_read(&w, 0, 0, &m[0], &ps0);
  if (rc) return rc;
  if (ps0 != (uint32_t)sysconf(_SC_PAGESIZE) || (uint64_t)st.st_size < 2u * (uint64_t)ps0)
    return bad(&w, "meta page 0: page size %u for a file of %lld bytes", ps0,
               (long long)st.st_size);
  if ((rc = meta_read(&w, ps0, 1, &m[1], &ps1))) return rc;
  for (int i = 0; i < 2; i++) {
    uint64_t last = m[i].last_pg;
    if (last < 1 || last >= (uint64_t)st.st_size / ps0 ||
        (m[i].main.root != INVALID_PGNO && m[i].main.root > last) ||
        (m[i].free.root != INVALID_PGNO && m[i].free.root > last))
      return bad(&w,
                 "meta page %d: last page %llu, roots %llu and %llu, file of %llu pages",
                 i, (unsigned long long)last, (unsigned long long)m[i].main.root,
                 (unsigned long long)m[i].free.root,
                 (unsigned long long)((uint64_t)st.st_size / ps0));
  }
  return 0;
}

int snap__control_check(int fd, const char *path, struct snap_error *err) {
  struct stat st;
  if (fstat(fd, &st)) return snap__errno(err, -errno, "%s: fstat", path);
  struct walk w = {.fd = fd, .path = path, .err = err};
  if (st.st_size == 0) return bad(&w, "the file is empty");
  int rc = 0;
  for (int attempt = 0; attempt < RETRIES; attempt++) {
    uint64_t txnid = 0;
    struct snap_error mine = {0};
    w.err = &mine;
    rc = check_once(&w, (uint64_t)st.st_size, &txnid);
    w.err = err;
    if (!rc) break;
    /* A writer that grew the file or committed twice since the walk began
     * may have changed pages under it: look again. */
    struct stat now;
    if (fstat(fd, &now) == 0 && now.st_size != st.st_size) {
      st = now;
      continue;
    }
    if (txnid && w.psize && newest_txnid(&w) > txnid + 1) continue;
    if (err) *err = mine;
    break;
  }
  free(w.seen);
  free(w.page);
  return rc;
}
