/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy: which versions stay and which go, and how many datasets a store
 * may hold. Retention (keep), rollback, the dataset limit and the version
 * states' names live here; the mechanisms they drive are elsewhere (gc.c
 * reclaims what retention released, publish.c flips).
 *
 * After a change of a current version committed, snap__after_commit() is the
 * one place that decides what follows: drop this process's cache of the old
 * version, then reclaim what retention released (best effort).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *snap_state_name(enum snap_state state) {
  switch (state) {
    case SNAP_STATE_CURRENT:
      return "current";
    case SNAP_STATE_RETAINED:
      return "retained";
    case SNAP_STATE_DRAINING:
      return "draining";
    case SNAP_STATE_LENDING:
      return "lending";
  }
  return "unknown";
}

/* ------------------------------------------------------------ retention */

struct vers {
  uint64_t *v;
  struct snap__verrec *r;
  size_t n, cap;
};

static int vers_add(uint64_t version, const struct snap__verrec *rec, void *arg) {
  struct vers *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    uint64_t *v = realloc(l->v, cap * sizeof *v);
    if (!v) return -ENOMEM;
    l->v = v;
    struct snap__verrec *r = realloc(l->r, cap * sizeof *r);
    if (!r) return -ENOMEM;
    l->r = r;
    l->cap = cap;
  }
  l->v[l->n] = version;
  l->r[l->n++] = *rec;
  return 0;
}

static void vers_free(struct vers *l) {
  free(l->v);
  free(l->r);
}

int snap__retain(struct snap__txn *t, const struct snap__dsrec *ds,
                 struct snap_error *err) {
  struct vers l = {0};
  int rc = snap__ver_each(t, ds->id, vers_add, &l, err);
  if (rc == -ENOMEM) rc = snap__errno(err, rc, "retention");
  /* Newest first: the current version plus keep - 1 others stay. */
  uint32_t kept = ds->current ? 1 : 0;
  for (size_t i = l.n; !rc && i-- > 0;) {
    struct snap__verrec *r = &l.r[i];
    uint32_t want;
    if (r->state == SNAP_STATE_LENDING) /* only gc changes it (gc.c) */
      continue;
    if (l.v[i] == ds->current)
      want = SNAP_STATE_CURRENT;
    else if (r->state != SNAP_STATE_DRAINING && kept < ds->keep)
      want = SNAP_STATE_RETAINED, kept++;
    else
      want = SNAP_STATE_DRAINING;
    if (r->state != want) {
      r->state = want;
      rc = snap__ver_put(t, ds->id, l.v[i], r, err);
    }
  }
  vers_free(&l);
  return rc;
}

/* ------------------------------------------------------- after a commit */

void snap__after_commit(snap_store *s, const char *dataset) {
  snap__pin_trim(s, dataset);
  snap__gc(s, dataset, 0, NULL, NULL, NULL, NULL); /* best effort */
}

/* ------------------------------------------------- rollback and retention */

/* Run @p fn inside a write txn on @p dataset's record, then bump flips and
 * reclaim what retention released. */
static int ds_update(snap_store *s, const char *dataset,
                     int (*fn)(struct snap__txn *, struct snap__dsrec *, void *,
                               struct snap_error *),
                     void *arg, struct snap_error *err) {
  int rc = snap__dataset_name_check(dataset, err);
  if (rc || (rc = snap__store_writable(s, err))) return rc;
  struct snap__txn *t;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  struct snap__dsrec ds;
  if ((rc = snap__ds_get(t, dataset, &ds, err)) || (rc = fn(t, &ds, arg, err)) ||
      (rc = snap__ds_put(t, dataset, &ds, err)) || (rc = snap__retain(t, &ds, err))) {
    snap__txn_abort(t);
    return rc;
  }
  if ((rc = snap__txn_commit(t, err))) return rc;
  snap__flips_bump(s);
  snap__after_commit(s, dataset);
  return 0;
}

int snap__followed_refuse(const char *dataset, const struct snap__dsrec *ds,
                          const char *op, struct snap_error *err) {
  if (!(ds->flags & SNAP__DS_FOLLOWED)) return 0;
  return snap__err(err, SNAP_EINVAL,
                   "%s of dataset \"%s\" refused: it follows a primary store (publish "
                   "there, or run snapctl unfollow %s to make this store its primary)",
                   op, dataset, dataset);
}

static int followed_fn(struct snap__txn *t, struct snap__dsrec *ds, void *arg,
                       struct snap_error *err) {
  (void)t;
  (void)err;
  if (*(int *)arg)
    ds->flags |= SNAP__DS_FOLLOWED;
  else
    ds->flags &= ~SNAP__DS_FOLLOWED;
  return 0;
}

int snap_dataset_set_followed(snap_store *s, const char *dataset, int followed,
                              struct snap_error *err) {
  return ds_update(s, dataset, followed_fn, &followed, err);
}

struct rollback_arg {
  const char *dataset;
  uint64_t version;
};

static int rollback_fn(struct snap__txn *t, struct snap__dsrec *ds, void *arg,
                       struct snap_error *err) {
  const struct rollback_arg *a = arg;
  uint64_t version = a->version;
  struct snap__verrec vr, old;
  int rc = snap__followed_refuse(a->dataset, ds, "rollback", err);
  if (rc) return rc;
  rc = snap__ver_get(t, ds->id, version, &vr, NULL);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND, "rollback: version %llu does not exist",
                     (unsigned long long)version);
  if (rc)
    return snap__err(err, rc, "rollback: reading version %llu",
                     (unsigned long long)version);
  if (vr.state == SNAP_STATE_DRAINING || vr.state == SNAP_STATE_LENDING)
    return snap__err(err, SNAP_EDRAINING,
                     "rollback: version %llu is %s (retired); it cannot be current",
                     (unsigned long long)version, snap_state_name(vr.state));
  if (ds->current == version) return 0;
  if (ds->current && !snap__ver_get(t, ds->id, ds->current, &old, NULL)) {
    old.state = SNAP_STATE_RETAINED;
    if ((rc = snap__ver_put(t, ds->id, ds->current, &old, err))) return rc;
  }
  vr.state = SNAP_STATE_CURRENT;
  if ((rc = snap__ver_put(t, ds->id, version, &vr, err))) return rc;
  ds->current = version;
  return 0;
}

int snap_rollback(snap_store *s, const char *dataset, uint64_t version,
                  struct snap_error *err) {
  struct rollback_arg a = {dataset, version};
  return ds_update(s, dataset, rollback_fn, &a, err);
}

static int keep_fn(struct snap__txn *t, struct snap__dsrec *ds, void *arg,
                   struct snap_error *err) {
  (void)t;
  (void)err;
  ds->keep = *(uint32_t *)arg;
  return 0;
}

int snap_store_set_keep(snap_store *s, const char *dataset, uint32_t keep,
                        struct snap_error *err) {
  if (keep < 1) return snap__err(err, SNAP_EINVAL, "keep = %u: must be at least 1", keep);
  if (dataset) return ds_update(s, dataset, keep_fn, &keep, err);
  int rc = snap__store_writable(s, err);
  if (rc) return rc;
  struct snap__txn *t;
  struct snap__meta m;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  if ((rc = snap__meta_get(t, &m, err))) {
    snap__txn_abort(t);
    return rc;
  }
  m.default_keep = keep;
  if ((rc = snap__meta_put(t, &m, err))) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
}

int snap_store_set_max_datasets(snap_store *s, uint32_t max, struct snap_error *err) {
  int rc = snap__store_writable(s, err);
  if (rc) return rc;
  struct snap__txn *t;
  if ((rc = snap__store_txn(s, true, &t, err))) return rc;
  if ((rc = snap__max_datasets_put(t, max, err))) {
    snap__txn_abort(t);
    return rc;
  }
  return snap__txn_commit(t, err);
}

int snap_store_max_datasets(snap_store *s, uint32_t *max, uint64_t *count,
                            struct snap_error *err) {
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  uint64_t n = 0;
  if (!(rc = snap__max_datasets_get(t, max, err)) && count)
    rc = snap__ds_count(t, &n, err);
  snap__txn_abort(t);
  if (!rc && count) *count = n;
  return rc;
}

/* The limits on a dataset about to be created inside write txn @p t. */
int snap__dataset_admit(snap_store *s, struct snap__txn *t, const char *dataset,
                        struct snap_error *err) {
  uint32_t max;
  uint64_t n;
  int rc;
  if ((rc = snap__dataset_name_new_check(dataset, err)) ||
      (rc = snap__max_datasets_get(t, &max, err)) ||
      (max && (rc = snap__ds_count(t, &n, err))))
    return rc;
  if (max && n >= max)
    return snap__err(err, -EDQUOT,
                     "%s: dataset \"%s\" would be dataset %llu of at most %u "
                     "(snapctl init --max-datasets raises the limit)",
                     s->path, dataset, (unsigned long long)n + 1, max);
  return 0;
}
