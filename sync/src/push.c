/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Push (docs/multihost.md section 3): the current version's chunks that the
 * remote lacks go up as one pack, then the manifest, then the announcement,
 * last and conditionally; then the sweep deletes what no kept version needs.
 *
 * "What the remote lacks" is decided against the manifest of the version the
 * announcement names: a chunk with the same hash at the same file offset there
 * is already in one of its packs (as the library's own sharing decides which
 * chunks a version borrows). Zero chunks are never sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* What a pusher remembers of a dataset between pushes. */
struct pushed {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  char etag[128]; /* of the announcement last read or written */
  bool known;     /* etag and ann are what the remote holds, as far as we know */
  bool stopped;   /* another writer changed the announcement: no more pushes */
  struct announce ann;
  struct manifest man; /* the announced version's, when loaded */
  snap_snapshot *last; /* the version this pusher announced last, pinned: the
                          base of the next push's deltas whatever retention does */
  /* the packs of kept versions, for the sweep */
  struct kept {
    uint64_t version;
    uint32_t n;
    char (*packs)[SYNC_PACK_NAME + 1];
  } kept[SYNC_KEEP_MAX + 1];
  unsigned nkept;
};

struct snap_pusher {
  snap_store *store;
  snap_remote *remote;
  struct snap_push_options opt;
  struct pushed *ds;
  size_t nds;
  char host[128];
};

int snap_pusher_create(snap_store *store, snap_remote *remote,
                       const struct snap_push_options *opt, snap_pusher **out,
                       struct snap_sync_error *err) {
  *out = NULL;
  snap_pusher *p = calloc(1, sizeof *p);
  if (!p) return sync__err(err, -ENOMEM, "local", "pusher: out of memory");
  p->store = store;
  p->remote = remote;
  p->opt = (struct snap_push_options){3, 600, 4, 16u << 20};
  if (opt) {
    if (opt->keep) p->opt.keep = opt->keep;
    p->opt.grace_s = opt->grace_s;
    if (opt->parallel) p->opt.parallel = opt->parallel;
    if (opt->part_size) p->opt.part_size = opt->part_size;
  }
  if (p->opt.keep > SYNC_KEEP_MAX || p->opt.parallel > 64 ||
      p->opt.part_size < (5u << 20)) {
    free(p);
    return sync__err(
        err, SNAP_EINVAL, "local",
        "push options: keep %u (1..64), parallel %u (1..64), part size %" PRIu64
        " (>= 5 MiB)",
        opt->keep, opt->parallel, opt->part_size);
  }
  if (gethostname(p->host, sizeof p->host)) snprintf(p->host, sizeof p->host, "unknown");
  p->host[sizeof p->host - 1] = 0;
  *out = p;
  return 0;
}

static void kept_free(struct kept *k) {
  free(k->packs);
  memset(k, 0, sizeof *k);
}

void snap_pusher_free(snap_pusher *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nds; i++) {
    manifest_free(&p->ds[i].man);
    snap_unpin(p->ds[i].last);
    for (unsigned k = 0; k < p->ds[i].nkept; k++) kept_free(&p->ds[i].kept[k]);
  }
  free(p->ds);
  free(p);
}

static struct pushed *pushed_of(snap_pusher *p, const char *dataset) {
  for (size_t i = 0; i < p->nds; i++)
    if (!strcmp(p->ds[i].dataset, dataset)) return &p->ds[i];
  void *n = realloc(p->ds, (p->nds + 1) * sizeof *p->ds);
  if (!n) return NULL;
  p->ds = n;
  struct pushed *d = &p->ds[p->nds++];
  memset(d, 0, sizeof *d);
  snprintf(d->dataset, sizeof d->dataset, "%s", dataset);
  return d;
}

/* Remember the packs of version @p v's manifest @p m (for the sweep). */
static void kept_add(struct pushed *d, uint64_t v, const struct manifest *m) {
  for (unsigned i = 0; i < d->nkept; i++)
    if (d->kept[i].version == v) return;
  if (d->nkept == SYNC_KEEP_MAX + 1) kept_free(&d->kept[--d->nkept]); /* the oldest */
  struct kept *k = &d->kept[d->nkept];
  k->packs = malloc((m->npacks ? m->npacks : 1) * sizeof *k->packs);
  if (!k->packs) return;
  memcpy(k->packs, m->packs, m->npacks * sizeof *k->packs);
  k->n = m->npacks;
  k->version = v;
  d->nkept++;
}

/* Read the announcement (conditionally when we know its ETag) and the manifest
 * it names. */
static int remote_state(struct rconn *c, struct pushed *d, struct snap_sync_error *err) {
  char key[400], what[1400];
  key_announce(key, sizeof key, d->dataset);
  snprintf(what, sizeof what, "push %s: %s", d->dataset, key);
  uint8_t *buf;
  size_t len;
  struct snap_s3_object info;
  struct snap_s3_error e;
  int rc = r_get_all(c, key, d->known ? d->etag : NULL, 1 << 20, &buf, &len, &info, &e);
  if (rc == SNAP_S3_ENOTMODIFIED) {
    rc = 0;
  } else if (rc == SNAP_S3_ENOTFOUND) {
    if (d->known && d->etag[0])
      return sync__err(err, SNAP_ECONFLICT, "conflict",
                       "%s: the announcement this primary wrote is gone: another writer "
                       "changed the prefix; pushing stops",
                       what);
    d->known = true;
    d->etag[0] = 0;
    memset(&d->ann, 0, sizeof d->ann);
    return 0;
  } else if (rc) {
    return sync__s3(err, rc, &e, what);
  } else {
    struct announce a;
    rc = announce_parse((const char *)buf, len, key, &a, err);
    free(buf);
    if (rc) return rc;
    if (d->known && d->etag[0])
      return sync__err(err, SNAP_ECONFLICT, "conflict",
                       "%s: changed by another writer (now version %" PRIu64
                       " from host %s pid %ld): pushing stops",
                       what, a.version, a.host, a.pid);
    d->ann = a;
    snprintf(d->etag, sizeof d->etag, "%s", info.etag);
    d->known = true;
  }
  if (!d->ann.version || (d->man.buf && d->man.version == d->ann.version)) return 0;
  manifest_free(&d->man);
  key_manifest(key, sizeof key, d->dataset, d->ann.version);
  if ((rc = r_get_all(c, key, NULL, (size_t)1 << 34, &buf, &len, NULL, &e)))
    return sync__s3(err, rc, &e, what);
  if ((rc = manifest_parse(buf, len, d->dataset, key, &d->man, err))) {
    manifest_free(&d->man);
    return rc;
  }
  kept_add(d, d->man.version, &d->man);
  return 0;
}

/* --------------------------------------------------------------- the pack */

struct upload {
  snap_pusher *p;
  struct rupload *u;
  const uint8_t *view;
  uint64_t data_offset;
  uint32_t shift;
  const uint64_t *chunks; /* the pack's chunks, by index in the version */
  uint64_t n, per_part;   /* chunks, and chunks per part */
  const uint8_t *deltas;  /* the delta bytes that end the pack */
  size_t dlen;
  uint64_t parts;        /* the last one also carries the deltas */
  _Atomic uint64_t next; /* next part to send (0-based) */
  _Atomic int failed;
  int rc;
  struct snap_s3_error e;
};

/* Part @p i's bytes: a pointer into the view when its chunks are adjacent
 * there and no delta rides along (a full publish: no copy), else copied into
 * @p buf (per_part chunks + dlen bytes). */
static const void *part_bytes(struct upload *up, uint64_t i, uint8_t *buf, size_t *len) {
  uint64_t first = i * up->per_part, last = first + up->per_part;
  if (first > up->n) first = up->n;
  if (last > up->n) last = up->n;
  uint64_t chunk = 1ull << up->shift;
  bool tail = i + 1 == up->parts && up->dlen;
  *len = (size_t)((last - first) * chunk) + (tail ? up->dlen : 0);
  bool adjacent = !tail && last > first;
  for (uint64_t k = first + 1; k < last && adjacent; k++)
    adjacent = up->chunks[k] == up->chunks[k - 1] + 1;
  if (adjacent) return up->view + up->data_offset + (up->chunks[first] << up->shift);
  for (uint64_t k = first; k < last; k++)
    memcpy(buf + (k - first) * chunk,
           up->view + up->data_offset + (up->chunks[k] << up->shift), chunk);
  if (tail) memcpy(buf + (last - first) * chunk, up->deltas, up->dlen);
  return buf;
}

/* Fault injection for the test of a server stopped mid-upload:
 * SNAP_SYNC_PAUSE_AFTER_PART=DIR (two FIFOs there, "reached" and "go"): once,
 * after the first part of a multipart upload is sent, write a byte to
 * DIR/reached, then wait for one on DIR/go. Blocking on pipes, not on time. */
static void pause_after_part(void) {
  static _Atomic int done;
  const char *dir = getenv("SNAP_SYNC_PAUSE_AFTER_PART");
  if (!dir || !*dir || atomic_exchange(&done, 1)) return;
  char path[4096];
  char b = 'p';
  snprintf(path, sizeof path, "%s/reached", dir);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (write(fd, &b, 1) < 0) {
    }
    close(fd);
  }
  snprintf(path, sizeof path, "%s/go", dir);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
    if (read(fd, &b, 1) < 0) {
    }
    close(fd);
  }
}

static void *upload_thread(void *arg) {
  struct upload *up = arg;
  struct rconn *c = NULL;
  struct snap_sync_error se;
  uint8_t *buf = malloc((size_t)(up->per_part << up->shift) + up->dlen);
  int rc = buf ? r_conn(up->p->remote, &c, &se) : -ENOMEM;
  struct snap_s3_error e = {0};
  while (!rc && !atomic_load(&up->failed)) {
    uint64_t i = atomic_fetch_add(&up->next, 1);
    if (i >= up->parts) break;
    size_t len;
    const void *b = part_bytes(up, i, buf, &len);
    rc =
        r_up_part(c, up->u, (unsigned)i + 1, (i * up->per_part) << up->shift, b, len, &e);
    if (!rc) pause_after_part();
  }
  if (rc && !atomic_exchange(&up->failed, 1)) {
    up->rc = rc;
    up->e = e;
    if (!e.message[0] && rc == -ENOMEM)
      snprintf(up->e.message, sizeof up->e.message, "out of memory");
  }
  r_release(c);
  free(buf);
  return NULL;
}

/* The pack: @p n chunks of the view, then @p dlen bytes of deltas. */
static int pack_upload(snap_pusher *p, struct rconn *c, const char *key,
                       const uint8_t *view, const struct snap_chunk_layout *l,
                       const uint64_t *chunks, uint64_t n, const uint8_t *deltas,
                       size_t dlen, uint64_t *bytes, struct snap_sync_error *err) {
  uint64_t chunk = 1ull << l->shift, size = n * chunk + dlen;
  struct upload up = {
      .p = p,
      .view = view,
      .data_offset = l->data_offset,
      .shift = l->shift,
      .chunks = chunks,
      .n = n,
      .per_part = p->opt.part_size >= chunk ? p->opt.part_size / chunk : 1,
      .deltas = deltas,
      .dlen = dlen};
  up.parts = (n + up.per_part - 1) / up.per_part;
  if (dlen && (n % up.per_part == 0)) up.parts++; /* the deltas alone, last */
  char what[1400];
  snprintf(what, sizeof what, "push: %s", key);
  struct snap_s3_error e;
  int rc;
  if (up.parts == 1) { /* one PUT */
    uint8_t *buf = malloc((size_t)size);
    if (!buf) return sync__err(err, -ENOMEM, "local", "%s: out of memory", what);
    size_t len;
    const void *b = part_bytes(&up, 0, buf, &len);
    rc = r_put(c, key, b, len, NULL, NULL, &e);
    free(buf);
    if (rc) return sync__s3(err, rc, &e, what);
    *bytes += size;
    return 0;
  }
  if ((rc = r_up_begin(c, key, size, &up.u, &e))) return sync__s3(err, rc, &e, what);
  unsigned nt = p->opt.parallel;
  if (nt > up.parts) nt = (unsigned)up.parts;
  pthread_t th[64];
  unsigned started = 0;
  for (; started < nt; started++)
    if (pthread_create(&th[started], NULL, upload_thread, &up)) break;
  if (!started) upload_thread(&up);
  for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
  if (up.rc) {
    r_up_abort(c, up.u);
    return sync__s3(err, up.rc, &up.e, what);
  }
  if ((rc = r_up_complete(c, up.u, &e))) {
    r_up_abort(c, up.u);
    return sync__s3(err, rc, &e, what);
  }
  *bytes += size;
  return 0;
}

/* ------------------------------------------------------------------ sweep */

struct sweep {
  snap_pusher *p;
  struct pushed *d;
  struct rconn *c;
  time_t cutoff;
  uint64_t deleted;
  int rc;
  struct snap_s3_error e;
};

static bool is_kept(const struct pushed *d, uint64_t v) {
  for (unsigned i = 0; i < d->ann.nkept; i++)
    if (d->ann.kept[i] == v) return true;
  return false;
}

static bool pack_marked(const struct pushed *d, const char *name) {
  for (unsigned i = 0; i < d->nkept; i++)
    if (is_kept(d, d->kept[i].version))
      for (uint32_t j = 0; j < d->kept[i].n; j++)
        if (!strcmp(d->kept[i].packs[j], name)) return true;
  return false;
}

static int sweep_one(const struct snap_s3_entry *ent, void *arg) {
  struct sweep *s = arg;
  size_t n = strlen(s->d->dataset);
  const char *rest = ent->key + n + 1, *end;
  uint64_t v;
  bool ours = false, marked = true;
  if (!strncmp(rest, "v/", 2) && (v = strtoull(rest + 2, (char **)&end, 10)) &&
      !strcmp(end, ".manifest")) {
    ours = true;
    marked = is_kept(s->d, v);
  } else if (!strncmp(rest, "pack/", 5) && strlen(rest + 5) == SYNC_PACK_NAME) {
    ours = true;
    marked = pack_marked(s->d, rest + 5);
  }
  if (!ours || marked || ent->last_modified > s->cutoff) return 0;
  struct snap_s3_error e;
  int rc = r_delete(s->c, ent->key, &e);
  if (rc) {
    s->rc = rc;
    s->e = e;
    return 1;
  }
  s->deleted++;
  return 0;
}

/* Mark what the kept versions reference, delete the rest once older than the
 * grace period. Versions kept but not remembered are read first. */
static int sweep(snap_pusher *p, struct rconn *c, struct pushed *d, uint64_t *deleted,
                 struct snap_sync_error *err) {
  char key[400], what[1400];
  for (unsigned i = 0; i < d->ann.nkept; i++) {
    bool have = false;
    for (unsigned j = 0; j < d->nkept && !have; j++)
      have = d->kept[j].version == d->ann.kept[i];
    if (have) continue;
    key_manifest(key, sizeof key, d->dataset, d->ann.kept[i]);
    uint8_t *buf;
    size_t len;
    struct snap_s3_error e;
    struct manifest m;
    int rc = r_get_all(c, key, NULL, (size_t)1 << 34, &buf, &len, NULL, &e);
    if (rc == SNAP_S3_ENOTFOUND) continue; /* swept before: nothing of it to keep */
    if (rc) return sync__s3(err, rc, &e, "sweep");
    if ((rc = manifest_parse(buf, len, d->dataset, key, &m, err))) {
      manifest_free(&m);
      return rc; /* a kept manifest we cannot read: sweep nothing */
    }
    kept_add(d, d->ann.kept[i], &m);
    manifest_free(&m);
  }
  struct sweep s = {p, d, c, time(NULL) - (time_t)p->opt.grace_s, 0, 0, {0}};
  snprintf(key, sizeof key, "%s/", d->dataset);
  int rc = r_list(c, key, sweep_one, &s, &s.e);
  *deleted = s.deleted;
  snprintf(what, sizeof what, "sweep %s", key);
  if (s.rc) return sync__s3(err, s.rc, &s.e, what);
  if (rc < 0 || (rc > 0 && rc != 1)) return sync__s3(err, rc, &s.e, what);
  return 0;
}

/* ------------------------------------------------------------------- push */

static uint64_t zero_hash(uint32_t shift) {
  void *z = calloc(1, (size_t)1 << shift);
  uint64_t h = z ? snap_chunk_hash(z, (size_t)1 << shift) : 0;
  free(z);
  return h;
}

/* The announcement for @p v after @p prev (kept: v, then prev's, newest first). */
static void announce_make(snap_pusher *p, const struct pushed *d,
                          const snap_snapshot *snap, struct announce *a) {
  memset(a, 0, sizeof *a);
  snprintf(a->dataset, sizeof a->dataset, "%s", d->dataset);
  a->version = snap_snapshot_version(snap);
  a->published_ns = snap_snapshot_created_ns(snap);
  key_manifest(a->manifest, sizeof a->manifest, d->dataset, a->version);
  const uint8_t *h = snap_snapshot_segment(snap, NULL);
  uint64_t lo, hi;
  memcpy(&lo, h + 112, 8);
  memcpy(&hi, h + 120, 8);
  snprintf(a->data_hash, sizeof a->data_hash, "%016" PRIx64 "%016" PRIx64, hi, lo);
  a->kept[a->nkept++] = a->version;
  for (unsigned i = 0; i < d->ann.nkept && a->nkept < p->opt.keep; i++)
    if (d->ann.kept[i] < a->version) a->kept[a->nkept++] = d->ann.kept[i];
  snprintf(a->host, sizeof a->host, "%s", p->host);
  a->pid = (long)getpid();
}

/* Where each chunk of the version is: reused from the announced manifest, zero,
 * or in the new pack (listed in @p fresh). */
static int locate(const struct pushed *d, const struct snap_chunk_layout *l,
                  const struct snap_chunk_info *ci, struct loc *loc,
                  char (*packs)[SYNC_PACK_NAME + 1], uint32_t *npacks, uint64_t *fresh,
                  uint64_t *nfresh) {
  const struct manifest *m = d->man.buf ? &d->man : NULL;
  uint64_t zero = zero_hash(l->shift);
  uint32_t *map = NULL; /* the old manifest's pack index -> ours */
  if (m && m->shift == l->shift && !(map = calloc(m->npacks + 1, sizeof *map)))
    return -ENOMEM;
  *npacks = 0;
  *nfresh = 0;
  for (uint64_t k = 0; k < l->nchunks; k++) {
    uint64_t off = l->data_offset + (k << l->shift), pk;
    if (ci[k].hash == zero) {
      loc[k] = (struct loc){SYNC_ZERO_PACK, 0};
    } else if (map && off >= m->data_offset &&
               (pk = (off - m->data_offset) >> l->shift) < m->nchunks &&
               m->hash[pk] == ci[k].hash && m->loc[pk].pack != SYNC_ZERO_PACK) {
      uint32_t op = m->loc[pk].pack;
      if (!map[op]) {
        memcpy(packs[*npacks], m->packs[op], SYNC_PACK_NAME + 1);
        map[op] = ++*npacks;
      }
      loc[k] = (struct loc){map[op] - 1, m->loc[pk].index};
    } else {
      loc[k] = (struct loc){UINT32_MAX - 1, (uint32_t)*nfresh}; /* the new pack */
      fresh[(*nfresh)++] = k;
    }
  }
  free(map);
  if (*nfresh)
    for (uint64_t k = 0; k < l->nchunks; k++)
      if (loc[k].pack == UINT32_MAX - 1) loc[k].pack = *npacks;
  return 0;
}

/* Deltas of the fresh chunks against the announced version's chunk at the same
 * place, where that version is still pinnable here and a delta is at least a
 * sixteenth smaller than the chunk: followers that have it fetch the delta instead of the
 * chunk (the chunk stays in the pack for the others). The deltas' offsets are within the
 * delta region, which ends the pack after the @p nfresh chunks. */
static void deltas_make(snap_pusher *p, struct pushed *d, const uint8_t *view,
                        const struct snap_chunk_layout *l, const uint64_t *fresh,
                        uint64_t nfresh, uint32_t pack, struct delta *out,
                        uint64_t *ndeltas, uint8_t **buf, size_t *dlen) {
  *ndeltas = 0;
  *dlen = 0;
  const struct manifest *m = d->man.buf ? &d->man : NULL;
  snap_snapshot *prev = NULL;
  if (!m || m->shift != l->shift) return;
  if (d->last && snap_snapshot_version(d->last) == m->version)
    prev = snap_snapshot_ref(d->last);
  else if (snap_pin_version(p->store, d->dataset, m->version, &prev, NULL))
    return;
  size_t plen, cap = 0;
  const uint8_t *pv = snap_snapshot_segment(prev, &plen);
  uint32_t chunk = 1u << l->shift;
  for (uint64_t i = 0; i < nfresh; i++) {
    uint64_t k = fresh[i], off = l->data_offset + (k << l->shift), pk;
    if (off < m->data_offset || (pk = (off - m->data_offset) >> l->shift) >= m->nchunks ||
        off + chunk > plen)
      continue;
    size_t at = *dlen;
    if (delta_make(pv + off, view + off, chunk, chunk - chunk / 16, buf, dlen, &cap))
      continue;
    out[(*ndeltas)++] = (struct delta){k, m->hash[pk], pack, (uint32_t)(*dlen - at),
                                       ((uint64_t)nfresh << l->shift) + at};
  }
  snap_unpin(prev);
}

int snap_push(snap_pusher *p, const char *dataset, struct snap_push_result *res,
              struct snap_sync_error *err) {
  memset(res, 0, sizeof *res);
  double t0 = sync__now();
  struct pushed *d = pushed_of(p, dataset);
  if (!d) return sync__err(err, -ENOMEM, "local", "push %s: out of memory", dataset);
  if (d->stopped)
    return sync__err(err, SNAP_ECONFLICT, "conflict",
                     "push %s: stopped after another writer changed %s/%s/announce",
                     dataset, snap_remote_url(p->remote), dataset);
  snap_snapshot *snap = NULL;
  struct rconn *c = NULL;
  struct snap_error se = {0};
  struct snap_chunk_info *ci = NULL;
  struct loc *loc = NULL;
  uint64_t *fresh = NULL, *fh = NULL;
  char(*packs)[SYNC_PACK_NAME + 1] = NULL;
  uint8_t *mbuf = NULL, *dbuf = NULL;
  size_t mlen = 0, dlen = 0;
  struct delta *deltas = NULL;
  uint64_t ndeltas = 0;
  char key[400], what[1400];
  int rc = snap_pin(p->store, dataset, &snap, &se);
  if (rc) return sync__snap(err, rc, &se, "push");
  uint64_t v = snap_snapshot_version(snap);
  if ((rc = r_conn(p->remote, &c, err)) || (rc = remote_state(c, d, err))) {
    if (rc == SNAP_ECONFLICT) d->stopped = true;
    goto out;
  }
  if (d->ann.version == v) goto out; /* announced already */
  if (d->ann.version > v) {
    rc = sync__err(err, SNAP_ECONFLICT, "conflict",
                   "push %s: %s announces version %" PRIu64
                   ", newer than this store's current %" PRIu64
                   " (another primary, or this store was rolled back)",
                   dataset, snap_remote_url(p->remote), d->ann.version, v);
    goto out;
  }
  struct snap_chunk_layout l;
  if ((rc = snap_snapshot_chunks(snap, &l, NULL, &se))) {
    rc = sync__snap(err, rc, &se, "push");
    goto out;
  }
  ci = malloc((l.nchunks ? l.nchunks : 1) * sizeof *ci);
  loc = malloc((l.nchunks ? l.nchunks : 1) * sizeof *loc);
  fresh = malloc((l.nchunks ? l.nchunks : 1) * sizeof *fresh);
  packs = malloc(((d->man.buf ? d->man.npacks : 0) + 1) * sizeof *packs);
  if (!ci || !loc || !fresh || !packs) {
    rc = sync__err(err, -ENOMEM, "local", "push %s: out of memory", dataset);
    goto out;
  }
  snap_snapshot_chunks(snap, &l, ci, NULL);
  uint32_t npacks;
  uint64_t nfresh;
  if ((rc = locate(d, &l, ci, loc, packs, &npacks, fresh, &nfresh))) {
    rc = sync__err(err, rc, "local", "push %s: out of memory", dataset);
    goto out;
  }
  const uint8_t *view = snap_snapshot_segment(snap, NULL);
  if (nfresh) {
    if (!(fh = malloc(nfresh * sizeof *fh))) {
      rc = sync__err(err, -ENOMEM, "local", "push %s: out of memory", dataset);
      goto out;
    }
    for (uint64_t i = 0; i < nfresh; i++) fh[i] = ci[fresh[i]].hash;
    if (!(deltas = malloc(nfresh * sizeof *deltas))) {
      rc = sync__err(err, -ENOMEM, "local", "push %s: out of memory", dataset);
      goto out;
    }
    deltas_make(p, d, view, &l, fresh, nfresh, npacks, deltas, &ndeltas, &dbuf, &dlen);
    pack_name(fh, nfresh, l.shift, dbuf, dlen, packs[npacks]);
    key_pack(key, sizeof key, dataset, packs[npacks]);
    struct snap_s3_object info;
    struct snap_s3_error e;
    rc = r_head(c, key, &info, &e);
    if (rc == SNAP_S3_ENOTFOUND || (!rc && info.size != (nfresh << l.shift) + dlen))
      rc = pack_upload(p, c, key, view, &l, fresh, nfresh, dbuf, dlen, &res->bytes, err);
    else if (rc)
      rc = sync__s3(err, rc, &e, "push");
    if (rc) goto out;
    memcpy(res->pack, packs[npacks], sizeof res->pack);
    npacks++;
    res->new_chunks = nfresh;
  }
  /* the manifest: the head as sealed, then the locator */
  res->deltas = ndeltas;
  if ((rc = manifest_build(view, l.data_offset, l.nchunks, loc, packs, npacks, deltas,
                           ndeltas, &mbuf, &mlen))) {
    rc = sync__err(err, rc, "local", "push %s: out of memory", dataset);
    goto out;
  }
  key_manifest(key, sizeof key, dataset, v);
  struct snap_s3_error e;
  if ((rc = r_put(c, key, mbuf, mlen, NULL, NULL, &e))) {
    rc = sync__s3(err, rc, &e, "push");
    goto out;
  }
  res->bytes += mlen;
  /* the announcement, last, on the one we read or wrote */
  struct announce a;
  announce_make(p, d, snap, &a);
  char text[4096];
  int tn = announce_write(&a, text, sizeof text);
  struct snap_s3_cond cond = {.if_none_match = !d->etag[0],
                              .if_match = d->etag[0] ? d->etag : NULL};
  struct snap_s3_object ainfo = {0};
  key_announce(key, sizeof key, dataset);
  snprintf(what, sizeof what, "push %s: %s", dataset, key);
  rc = r_put(c, key, text, (size_t)tn, &cond, &ainfo, &e);
  if (rc == SNAP_S3_EPRECONDITION) {
    /* our own earlier attempt whose answer was lost, or another writer? */
    uint8_t *back;
    size_t blen;
    struct snap_s3_error e2;
    if (!r_get_all(c, key, NULL, 1 << 20, &back, &blen, &ainfo, &e2)) {
      bool ours = blen == (size_t)tn && !memcmp(back, text, blen);
      free(back);
      if (ours) rc = 0;
    }
    if (rc) {
      d->stopped = true;
      rc = sync__err(err, SNAP_ECONFLICT, "conflict",
                     "%s: another writer changed it since this primary read it (412): "
                     "two primaries on one prefix? pushing stops",
                     what);
      goto out;
    }
  } else if (rc) {
    d->known = false; /* an unknown outcome: read it again next time */
    rc = sync__s3(err, rc, &e, what);
    goto out;
  }
  if (!ainfo.etag[0] && (rc = r_head(c, key, &ainfo, &e))) {
    d->known = false;
    rc = sync__s3(err, rc, &e, what);
    goto out;
  }
  snprintf(d->etag, sizeof d->etag, "%s", ainfo.etag);
  d->ann = a;
  snap_unpin(d->last);
  d->last = snap_snapshot_ref(snap);
  res->bytes += (uint64_t)tn;
  res->version = v;
  res->announce_seconds = sync__now() - t0;
  res->chunks = l.nchunks;
  manifest_free(&d->man);
  if (!manifest_parse(mbuf, mlen, dataset, key, &d->man, NULL)) {
    mbuf = NULL; /* the cache owns it now */
    kept_add(d, v, &d->man);
  } else {
    manifest_free(&d->man);
    mbuf = NULL;
  }
  /* the sweep: an error there fails nothing that was pushed */
  struct snap_sync_error swerr;
  if (sweep(p, c, d, &res->swept, &swerr)) {
    snprintf(res->warning, sizeof res->warning, "%s", swerr.message);
    res->swept = 0;
  }
out:
  res->seconds = sync__now() - t0;
  free(mbuf);
  free(dbuf);
  free(deltas);
  free(ci);
  free(loc);
  free(fresh);
  free(fh);
  free(packs);
  r_release(c);
  snap_unpin(snap);
  return rc;
}
