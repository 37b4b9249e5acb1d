/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Orphans: files under segments/<dataset>/ that no version record names.
 *
 * A <version>.seg orphan comes only from a publisher killed between linkat
 * and its commit, or from a drop that crashed after its commit (publish.c,
 * drop.c). The first write operation of each handle sweeps them, inside a
 * write transaction, so that no publisher can be between those two steps
 * then: snap__store_writable() is that gate. snap_orphan_list() shows the
 * same files (and any other stray file, which the sweep leaves alone)
 * without changing anything.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct walk {
  snap_store *s;
  struct snap__txn *t;
  bool sweep; /* remove <version>.seg orphans; else list every orphan */
  struct snap_orphan *v;
  size_t n, cap;
  struct snap_error *err;
};

static int orphan_add(struct walk *w, const char *dataset, int dsfd, const char *file,
                      uint64_t version) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 8;
    void *p = realloc(w->v, cap * sizeof *w->v);
    if (!p) return snap__errno(w->err, -ENOMEM, "listing orphans");
    w->v = p;
    w->cap = cap;
  }
  struct snap_orphan *o = &w->v[w->n];
  memset(o, 0, sizeof *o);
  o->version = version;
  o->kind = version ? SNAP_ORPHAN_SEGMENT : SNAP_ORPHAN_OTHER;
  struct stat st;
  if (!fstatat(dsfd, file, &st, 0)) o->bytes = (uint64_t)st.st_size;
  if (!(o->dataset = strdup(dataset)) ||
      asprintf(&o->path, "%s/segments/%s/%s", w->s->path, dataset, file) < 0) {
    free(o->dataset);
    return snap__errno(w->err, -ENOMEM, "listing orphans");
  }
  w->n++;
  return 0;
}

/* One dataset directory: remove (sweep) or list the files no record names. */
static int orphan_dir(const char *dataset, int dsfd, void *arg) {
  struct walk *w = arg;
  struct snap__dsrec ds;
  int g = snap__ds_get(w->t, dataset, &ds, NULL);
  if (g && g != SNAP_ENOTFOUND)
    return snap__err(w->err, g, "%s: reading dataset \"%s\"", w->s->path, dataset);
  int fd = openat(dsfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    int e = errno;
    if (fd >= 0) close(fd);
    return snap__errno(w->err, -e, "%s/segments/%s", w->s->path, dataset);
  }
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    uint64_t v = 0;
    struct snap__verrec vr;
    bool seg = snap__seg_name_parse(e->d_name, &v);
    if (e->d_name[0] == '.') continue; /* . .. and the tombstone (layout.c) */
    if (seg && !g && snap__ver_get(w->t, ds.id, v, &vr, NULL) == 0) continue;
    if (!w->sweep) {
      rc = orphan_add(w, dataset, dsfd, e->d_name, seg ? v : 0);
    } else if (seg && unlinkat(dsfd, e->d_name, 0) && errno != ENOENT) {
      rc = snap__errno(w->err, -errno, "%s/segments/%s/%s: unlink orphan", w->s->path,
                       dataset, e->d_name);
    }
  }
  closedir(d);
  return rc;
}

/* Remove the <version>.seg files that no record names. */
static int sweep_orphans(snap_store *s, struct snap_error *err) {
  /* Inside a write txn: no publisher can be between linkat and commit. */
  struct snap__txn *t;
  pthread_mutex_lock(&s->lock);
  struct snap__control *c;
  int rc = snap__store_control(s, &c, err);
  if (!rc) snap__control_reader_check(c);
  pthread_mutex_unlock(&s->lock);
  if (rc || (rc = snap__store_txn(s, true, &t, err))) return rc;
  struct walk w = {.s = s, .t = t, .sweep = true, .err = err};
  rc = snap__dataset_dirs_each(s, orphan_dir, &w, err);
  if (rc) {
    snap__txn_abort(t);
    return rc;
  }
  if ((rc = snap__txn_commit(t, err))) return rc;
  /* A publisher that died between its commit and its flips bump left readers
   * believing the old version is current: bump for it. */
  snap__flips_bump(s);
  return 0;
}

int snap__store_writable(snap_store *s, struct snap_error *err) {
  int rc = snap__store_writer_lock(s, err);
  if (rc) return rc;
  pthread_mutex_lock(&s->lock);
  bool swept = s->swept;
  pthread_mutex_unlock(&s->lock);
  if (swept) return 0;
  rc = sweep_orphans(s, err);
  if (rc) return rc;
  pthread_mutex_lock(&s->lock);
  s->swept = true;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

int snap_orphan_list(snap_store *s, struct snap_orphan **out, size_t *count,
                     struct snap_error *err) {
  *out = NULL;
  *count = 0;
  struct snap__txn *t;
  int rc = snap__store_txn(s, false, &t, err);
  if (rc) return rc;
  struct walk w = {.s = s, .t = t, .err = err};
  rc = snap__dataset_dirs_each(s, orphan_dir, &w, err);
  snap__txn_abort(t);
  if (rc) {
    snap_orphan_list_free(w.v, w.n);
    return rc;
  }
  *out = w.v;
  *count = w.n;
  return 0;
}

void snap_orphan_list_free(struct snap_orphan *list, size_t count) {
  for (size_t i = 0; list && i < count; i++) {
    free(list[i].dataset);
    free(list[i].path);
  }
  free(list);
}
