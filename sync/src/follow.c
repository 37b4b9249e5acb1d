/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Follow (docs/multihost.md section 4): poll the announcement, and adopt a
 * newer version as a replica: its manifest, then the chunks the local store
 * lacks, fetched with ranged GETs of the packs (adjacent chunks of a pack
 * merged into one range), several at once, each chunk's hash checked by
 * snap_replica_write(); a range with a bad chunk is fetched again, up to
 * `retries` rounds. Then the flip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct followed {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  char etag[128];
  struct announce ann;
};

struct snap_follower {
  snap_store *store;
  snap_remote *remote;
  struct snap_follow_options opt;
  struct followed *ds;
  size_t nds;
};

int snap_follower_create(snap_store *store, snap_remote *remote,
                         const struct snap_follow_options *opt, snap_follower **out,
                         struct snap_sync_error *err) {
  *out = NULL;
  snap_follower *f = calloc(1, sizeof *f);
  if (!f) return sync__err(err, -ENOMEM, "local", "follower: out of memory");
  f->store = store;
  f->remote = remote;
  f->opt = (struct snap_follow_options){4, 16u << 20, 3, 0};
  if (opt) {
    if (opt->parallel) f->opt.parallel = opt->parallel;
    if (opt->range) f->opt.range = opt->range;
    if (opt->retries) f->opt.retries = opt->retries;
    f->opt.promote = opt->promote;
  }
  if (f->opt.parallel > 64 || f->opt.range > (1u << 30)) {
    free(f);
    return sync__err(err, SNAP_EINVAL, "local",
                     "follow options: parallel %u (1..64), range %" PRIu64 " (<= 1 GiB)",
                     opt->parallel, opt->range);
  }
  *out = f;
  return 0;
}

void snap_follower_free(snap_follower *f) {
  if (!f) return;
  free(f->ds);
  free(f);
}

static struct followed *followed_of(snap_follower *f, const char *dataset) {
  for (size_t i = 0; i < f->nds; i++)
    if (!strcmp(f->ds[i].dataset, dataset)) return &f->ds[i];
  void *n = realloc(f->ds, (f->nds + 1) * sizeof *f->ds);
  if (!n) return NULL;
  f->ds = n;
  struct followed *d = &f->ds[f->nds++];
  memset(d, 0, sizeof *d);
  snprintf(d->dataset, sizeof d->dataset, "%s", dataset);
  return d;
}

/* ------------------------------------------------------------- discovery */

struct names {
  char **v;
  size_t n, cap;
};

static int name_of_announce(const struct snap_s3_entry *ent, void *arg) {
  struct names *l = arg;
  const char *slash = strchr(ent->key, '/');
  if (!slash || strcmp(slash, "/announce") || slash == ent->key) return 0;
  size_t len = (size_t)(slash - ent->key);
  if (len > SNAP_DATASET_NAME_MAX) return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    void *p = realloc(l->v, cap * sizeof *l->v);
    if (!p) return -ENOMEM;
    l->v = p;
    l->cap = cap;
  }
  if (!(l->v[l->n] = strndup(ent->key, len))) return -ENOMEM;
  l->n++;
  return 0;
}

int snap_follow_datasets(snap_follower *f, char ***names, size_t *count,
                         struct snap_sync_error *err) {
  *names = NULL;
  *count = 0;
  struct rconn *c;
  int rc = r_conn(f->remote, &c, err);
  if (rc) return rc;
  struct names l = {0};
  struct snap_s3_error e = {0};
  rc = r_list(c, "", name_of_announce, &l, &e);
  r_release(c);
  if (rc) {
    for (size_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    return rc == -ENOMEM ? sync__err(err, rc, "local", "listing: out of memory")
                         : sync__s3(err, rc, &e, "follow: listing");
  }
  *names = l.v;
  *count = l.n;
  return 0;
}

/* ---------------------------------------------------------------- fetches */

/* One chunk to fetch: whole (@len = the chunk size) or as a delta applied to
 * the current version's chunk at the same place. */
struct item {
  uint64_t k;
  uint64_t off; /* in the pack */
  uint32_t pack, len;
  int delta;
};

struct range {
  uint32_t pack;
  uint64_t off, len; /* in the pack */
  uint64_t first, n; /* its items */
};

struct fetch {
  snap_follower *f;
  snap_replica *r;
  const struct manifest *m;
  const char *dataset;
  struct item *items; /* in range order */
  struct range *ranges;
  uint64_t nranges;
  _Atomic uint64_t next;
  _Atomic int failed;
  _Atomic uint64_t bytes, refetched, deltas;
  pthread_mutex_t lock;
  int rc;
  struct snap_sync_error err;
};

static void fetch_fail(struct fetch *fe, const struct snap_sync_error *e) {
  pthread_mutex_lock(&fe->lock);
  if (!fe->rc) {
    fe->rc = e->code ? e->code : -EIO;
    fe->err = *e;
  }
  pthread_mutex_unlock(&fe->lock);
  atomic_store(&fe->failed, 1);
}

/* A range's bytes as they arrive: whole chunks go straight into the replica's
 * file (hashed on the way), delta blobs into @blob until complete, then applied
 * to the local chunk. A retry starts again at pos 0. */
struct sink {
  struct fetch *fe;
  const struct range *rg;
  uint64_t item, ipos; /* the item being received, and its bytes so far */
  uint8_t *blob, *scratch;
  bool bad; /* a chunk failed its hash: fetch the range again */
  int rc;   /* another failure */
  struct snap_error se;
};

/* A complete delta item: the local chunk, the runs, the hash check. */
static int delta_done(struct sink *st, const struct item *it) {
  struct fetch *fe = st->fe;
  uint32_t chunk = 1u << fe->m->shift;
  const void *base = snap_replica_base(fe->r, it->k, NULL);
  if (!base) return SNAP_ECHECKSUM;
  memcpy(st->scratch, base, chunk);
  if (delta_apply(st->scratch, chunk, st->blob, it->len)) return SNAP_ECHECKSUM;
  return snap_replica_write(fe->r, it->k, st->scratch, chunk, &st->se);
}

static int sink_bytes(void *arg, uint64_t pos, const void *data, size_t len) {
  struct sink *st = arg;
  struct fetch *fe = st->fe;
  const uint8_t *p = data;
  if (pos == 0) {
    st->item = st->ipos = 0;
    st->bad = false;
  }
  while (len) {
    if (st->item >= st->rg->n) return -EIO; /* more than asked for */
    const struct item *it = &fe->items[st->rg->first + st->item];
    size_t take = len < it->len - st->ipos ? len : (size_t)(it->len - st->ipos);
    int rc = 0;
    if (!it->delta)
      rc = snap_replica_feed(fe->r, it->k, st->ipos, p, take, &st->se);
    else
      memcpy(st->blob + st->ipos, p, take);
    st->ipos += take;
    p += take;
    len -= take;
    if (st->ipos == it->len) {
      if (it->delta) rc = delta_done(st, it);
      st->item++;
      st->ipos = 0;
    }
    if (rc == SNAP_ECHECKSUM) {
      st->bad = true;
    } else if (rc) {
      st->rc = rc;
      return rc < 0 ? rc : -EIO;
    }
  }
  return 0;
}

/* One range: GET it through the sink; again when a chunk fails its hash (a
 * corrupted transfer or object). */
static int fetch_range(struct fetch *fe, struct rconn *c, const struct range *rg,
                       struct sink *st, struct snap_sync_error *err) {
  char key[400], what[1400];
  key_pack(key, sizeof key, fe->dataset, fe->m->packs[rg->pack]);
  snprintf(what, sizeof what, "follow %s version %" PRIu64, fe->dataset, fe->m->version);
  st->rg = rg;
  for (unsigned round = 0;; round++) {
    uint64_t got;
    struct snap_s3_error e;
    st->rc = 0;
    st->se.message[0] = 0;
    int rc = r_get_cb(c, key, rg->off, rg->len, sink_bytes, st, &got, &e);
    if (st->rc) return sync__snap(err, st->rc, &st->se, what);
    if (rc) return sync__s3(err, rc, &e, what);
    atomic_fetch_add(&fe->bytes, got);
    if (got != rg->len || st->item != rg->n)
      return sync__err(err, SNAP_ECORRUPT, "corrupt",
                       "%s: %s: %" PRIu64 " bytes at %" PRIu64 ", expected %" PRIu64,
                       what, key, got, rg->off, rg->len);
    if (!st->bad) return 0;
    atomic_fetch_add(&fe->refetched, 1);
    if (round + 1 >= fe->f->opt.retries)
      return sync__err(
          err, SNAP_ECHECKSUM, "verify",
          "%s: %s bytes %" PRIu64 "+%" PRIu64
          " failed their chunk hashes %u times (%s); the current version "
          "stays",
          what, key, rg->off, rg->len, round + 1,
          st->se.message[0] ? st->se.message : "a delta that does not apply");
  }
}

/* Fault injection for the tests of a follower killed mid-download:
 * SNAP_SYNC_CRASH_AFTER_RANGES=N kills the process (SIGKILL) once N ranges
 * are written. Read once; costs one load otherwise. */
static long crash_after(void) {
  static _Atomic long v = -1;
  long x = atomic_load(&v);
  if (x < 0) {
    const char *e = getenv("SNAP_SYNC_CRASH_AFTER_RANGES");
    x = e && *e ? strtol(e, NULL, 10) : 0;
    atomic_store(&v, x);
  }
  return x;
}

static void *fetch_thread(void *arg) {
  static _Atomic long ranges_done;
  struct fetch *fe = arg;
  struct rconn *c = NULL;
  struct snap_sync_error e = {0};
  uint32_t chunk = 1u << fe->m->shift;
  struct sink st = {
      .fe = fe, .blob = malloc(2 * (size_t)chunk), .scratch = malloc(chunk)};
  int rc = !st.blob || !st.scratch
               ? sync__err(&e, -ENOMEM, "local", "follow: out of memory")
               : r_conn(fe->f->remote, &c, &e);
  while (!rc && !atomic_load(&fe->failed)) {
    uint64_t i = atomic_fetch_add(&fe->next, 1);
    if (i >= fe->nranges) break;
    rc = fetch_range(fe, c, &fe->ranges[i], &st, &e);
    if (!rc && crash_after() && atomic_fetch_add(&ranges_done, 1) + 1 >= crash_after())
      raise(SIGKILL);
  }
  if (rc) fetch_fail(fe, &e);
  r_release(c);
  free(st.blob);
  free(st.scratch);
  return NULL;
}

static int item_cmp(const void *a, const void *b) {
  const struct item *x = a, *y = b;
  if (x->pack != y->pack) return x->pack < y->pack ? -1 : 1;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The chunks the replica needs: each as a delta when the manifest has one
 * against the chunk this store has at that place, else whole; grouped into
 * ranges of adjacent pack bytes of at most @p max bytes. */
static int plan_ranges(struct fetch *fe, uint64_t max, struct snap_sync_error *err) {
  const struct manifest *m = fe->m;
  uint32_t chunk = 1u << m->shift;
  uint64_t n = 0, nd = 0;
  struct item *it = malloc((m->nchunks ? m->nchunks : 1) * sizeof *it);
  struct range *rg = malloc((m->nchunks ? m->nchunks : 1) * sizeof *rg);
  if (!it || !rg) {
    free(it);
    free(rg);
    return sync__err(err, -ENOMEM, "local", "follow: out of memory");
  }
  for (uint64_t k = 0; k < m->nchunks; k++) {
    if (!snap_replica_needs(fe->r, k, NULL)) continue;
    const struct delta *d = manifest_delta(m, k);
    uint64_t bh;
    if (d && snap_replica_base(fe->r, k, &bh) && bh == d->base) {
      it[n++] = (struct item){k, d->off, d->pack, d->len, 1};
      nd++;
      continue;
    }
    if (m->loc[k].pack == SYNC_ZERO_PACK) {
      free(it);
      free(rg);
      return sync__err(err, SNAP_ECORRUPT, "corrupt",
                       "follow %s version %" PRIu64 ": the locator calls chunk %" PRIu64
                       " zero, its hash says not",
                       fe->dataset, m->version, k);
    }
    it[n++] =
        (struct item){k, (uint64_t)m->loc[k].index << m->shift, m->loc[k].pack, chunk, 0};
  }
  qsort(it, n, sizeof *it, item_cmp);
  uint64_t nr = 0;
  for (uint64_t i = 0; i < n; i++) {
    struct range *last = nr ? &rg[nr - 1] : NULL;
    if (last && last->pack == it[i].pack && last->off + last->len == it[i].off &&
        last->len + it[i].len <= max) {
      last->len += it[i].len;
      last->n++;
    } else {
      rg[nr++] = (struct range){it[i].pack, it[i].off, it[i].len, i, 1};
    }
  }
  fe->items = it;
  fe->ranges = rg;
  fe->nranges = nr;
  atomic_store(&fe->deltas, nd);
  return 0;
}

/* ------------------------------------------------------------------- poll */

static int poll_announce(struct rconn *c, struct followed *d,
                         struct snap_follow_result *res, struct snap_sync_error *err) {
  char key[400];
  key_announce(key, sizeof key, d->dataset);
  uint8_t *buf;
  size_t len;
  struct snap_s3_object info;
  struct snap_s3_error e;
  int rc = r_get_all(c, key, d->etag, 1 << 20, &buf, &len, &info, &e);
  if (rc == SNAP_S3_ENOTMODIFIED) {
    res->unchanged = 1;
    return 0;
  }
  if (rc) {
    char what[600];
    snprintf(what, sizeof what, "follow %s", d->dataset);
    return sync__s3(err, rc, &e, what);
  }
  struct announce a;
  rc = announce_parse((const char *)buf, len, key, &a, err);
  free(buf);
  if (rc) return rc;
  if (strcmp(a.dataset, d->dataset))
    return sync__err(err, SNAP_ECORRUPT, "corrupt", "%s: names dataset \"%s\"", key,
                     a.dataset);
  d->ann = a;
  snprintf(d->etag, sizeof d->etag, "%s", info.etag);
  return 0;
}

int snap_follow_poll(snap_follower *f, const char *dataset,
                     struct snap_follow_result *res, struct snap_sync_error *err) {
  memset(res, 0, sizeof *res);
  double t0 = sync__now();
  struct followed *d = followed_of(f, dataset);
  if (!d) return sync__err(err, -ENOMEM, "local", "follow %s: out of memory", dataset);
  struct rconn *c = NULL;
  struct manifest m = {0};
  snap_replica *r = NULL;
  struct fetch fe = {.f = f, .dataset = dataset};
  pthread_mutex_init(&fe.lock, NULL);
  struct snap_error se = {0};
  char key[400], what[600];
  snprintf(what, sizeof what, "follow %s", dataset);
  int rc = r_conn(f->remote, &c, err);
  if (rc || (rc = poll_announce(c, d, res, err))) goto out;
  res->announced = d->ann.version;
  res->announced_ns = d->ann.published_ns;
  rc = snap_current_version(f->store, dataset, &res->local, &se);
  if (rc && rc != SNAP_ENOTFOUND) {
    rc = sync__snap(err, rc, &se, what);
    goto out;
  }
  rc = 0;
  if (!d->ann.version || res->local >= d->ann.version) goto out;
  /* a newer version: its manifest */
  key_manifest(key, sizeof key, dataset, d->ann.version);
  uint8_t *buf;
  size_t len;
  struct snap_s3_error e;
  if ((rc = r_get_all(c, key, NULL, (size_t)1 << 34, &buf, &len, NULL, &e))) {
    d->etag[0] = 0; /* swept under us? read the announcement again next time */
    rc = sync__s3(err, rc, &e, what);
    goto out;
  }
  res->bytes += len;
  res->manifest_bytes = len;
  if ((rc = manifest_parse(buf, len, dataset, key, &m, err))) goto out;
  if (m.version != d->ann.version) {
    rc = sync__err(err, SNAP_ECORRUPT, "corrupt", "%s: header version %" PRIu64, key,
                   m.version);
    goto out;
  }
  rc = snap_replica_begin(f->store, dataset, m.buf, (size_t)m.data_offset, &r, &se);
  if (rc == SNAP_ECONFLICT) { /* a newer version is current already */
    rc = 0;
    goto out;
  }
  if (rc) {
    rc = sync__snap(err, rc, &se, what);
    goto out;
  }
  fe.r = r;
  fe.m = &m;
  snap_replica_stats(r, &res->chunks); /* what begin found: the fetch is what is left */
  if ((rc = plan_ranges(
           &fe, f->opt.range < (1ull << m.shift) ? 1ull << m.shift : f->opt.range, err)))
    goto out;
  unsigned nt = f->opt.parallel;
  if (nt > fe.nranges) nt = (unsigned)fe.nranges;
  pthread_t th[64];
  unsigned started = 0;
  for (; started < nt; started++)
    if (pthread_create(&th[started], NULL, fetch_thread, &fe)) break;
  if (!started && fe.nranges) fetch_thread(&fe);
  for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
  res->bytes += atomic_load(&fe.bytes);
  res->deltas = atomic_load(&fe.deltas);
  res->refetched = atomic_load(&fe.refetched);
  if (fe.rc) {
    rc = fe.rc;
    if (err) *err = fe.err;
    goto out;
  }
  uint64_t v;
  rc = snap_replica_commit(r, &v, &se);
  r = NULL;
  if (rc) {
    rc = sync__snap(err, rc, &se, what);
    goto out;
  }
  if (f->opt.promote && (rc = snap_dataset_set_followed(f->store, dataset, 0, &se))) {
    rc = sync__snap(err, rc, &se, what);
    goto out;
  }
  res->local = v;
  res->flipped = 1;
out:
  res->seconds = sync__now() - t0;
  snap_replica_free(r);
  manifest_free(&m);
  free(fe.items);
  free(fe.ranges);
  pthread_mutex_destroy(&fe.lock);
  r_release(c);
  return rc;
}
