/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control file: an LMDB environment with three named databases.
 *   meta      "meta"                   -> struct snap__meta
 *   datasets  name (UTF-8 bytes)       -> struct snap__dsrec
 *   versions  dataset id, version (BE) -> struct snap__verrec
 * This is the only file that includes <lmdb.h>. Transactions are short: no
 * caller holds one across user code (a held read transaction stops LMDB from
 * reusing pages, and a reader's query may last minutes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CONTROL_MAPSIZE ((size_t)64 << 20)
#define CONTROL_MAXREADERS 1024

/* LMDB forbids opening one environment twice in a process (closing one
 * handle drops the process's fcntl locks that the other relies on) and using
 * an environment after fork(). So environments are shared per process and per
 * file, refcounted, and one inherited from a parent is never touched again:
 * the child opens its own and leaks the parent's. */
struct snap__control {
  MDB_env *env;
  MDB_dbi meta, datasets, versions;
  char *path;
  dev_t dev;
  ino_t ino;
  off_t min_size; /* the size at open: LMDB files never shrink */
  pid_t pid;
  int refs; /* under g_ctl_lock */
  struct snap__control *next;
};

static pthread_mutex_t g_ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snap__control *g_ctls;

void snap__control_atfork_lock(void) { pthread_mutex_lock(&g_ctl_lock); }
void snap__control_atfork_unlock(void) { pthread_mutex_unlock(&g_ctl_lock); }

struct snap__txn {
  MDB_txn *txn;
  struct snap__control *c;
};

/* The control file's map: LIBSNAP_CONTROL_MAP_MIB MiB (1..65536), else 64 MiB.
 * A file larger than the map is opened at its own size by LMDB. */
static size_t control_mapsize(void) {
  const char *env = getenv("LIBSNAP_CONTROL_MAP_MIB");
  long mib = env ? strtol(env, NULL, 10) : 0;
  return mib >= 1 && mib <= 65536 ? (size_t)mib << 20 : CONTROL_MAPSIZE;
}

static int lmdb_status(struct snap_error *err, int rc, const char *path,
                       const char *what) {
  if (rc == MDB_NOTFOUND) return snap__err(err, SNAP_ENOTFOUND, "%s: %s", path, what);
  if (rc == MDB_MAP_FULL || rc == MDB_READERS_FULL)
    return snap__err(err, SNAP_EMAPFULL,
                     "%s: %s: %s (the control map holds %zu MiB; "
                     "LIBSNAP_CONTROL_MAP_MIB sets it)",
                     path, what, mdb_strerror(rc), control_mapsize() >> 20);
  if (rc > 0) return snap__errno(err, -rc, "%s: %s", path, what);
  return snap__err(err, SNAP_ECONTROL, "%s: %s: %s", path, what, mdb_strerror(rc));
}

static int control_open(const char *path, bool create, struct snap__control **out,
                        struct snap_error *err);

int snap__control_open(const char *path, bool create, struct snap__control **out,
                       struct snap_error *err) {
  *out = NULL;
  struct stat st;
  pthread_mutex_lock(&g_ctl_lock);
  if (stat(path, &st) == 0) {
    for (struct snap__control *c = g_ctls; c; c = c->next)
      if (c->dev == st.st_dev && c->ino == st.st_ino && c->pid == getpid()) {
        c->refs++;
        *out = c;
        pthread_mutex_unlock(&g_ctl_lock);
        return 0;
      }
  } else if (!create || errno != ENOENT) {
    int e = errno;
    pthread_mutex_unlock(&g_ctl_lock);
    if (e == ENOENT) return snap__err(err, SNAP_ENOTFOUND, "%s: no control file", path);
    return snap__errno(err, -e, "%s", path);
  }
  int rc = control_open(path, create, out, err);
  if (!rc && stat(path, &st) == 0) {
    (*out)->dev = st.st_dev;
    (*out)->ino = st.st_ino;
    (*out)->min_size = st.st_size;
    (*out)->pid = getpid();
    (*out)->refs = 1;
    (*out)->next = g_ctls;
    g_ctls = *out;
  }
  pthread_mutex_unlock(&g_ctl_lock);
  return rc;
}

/* Before LMDB maps the file: LMDB initialises an empty file as a new
 * environment and trusts every page of a damaged one (control_check.c). */
static int control_precheck(const char *path, bool create, struct snap_error *err) {
  /* LMDB opens control.mdb and control.mdb-lock by name, read-write and
   * creating, following symbolic links: a store owner could point them at any
   * file and wait for root (an admin's snapctl) to open the store. Refuse links
   * (the store directory's owner can still race this check; docs/security.md). */
  char lock[4200];
  snprintf(lock, sizeof lock, "%s-lock", path);
  struct stat lst;
  if (lstat(lock, &lst) == 0 && !S_ISREG(lst.st_mode))
    return snap__err(err, SNAP_ECONTROL,
                     "%s: not a regular file (a link or other file in place of LMDB's "
                     "lock file is refused: it could point at any file)",
                     lock);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ELOOP)
      return snap__err(err, SNAP_ECONTROL,
                       "%s: a symbolic link (refused: it could point at any file)", path);
    if (errno == ENOENT && create) return 0;
    if (errno == ENOENT)
      return snap__err(err, SNAP_ENOTFOUND, "%s: no control file", path);
    return snap__errno(err, -errno, "%s", path);
  }
  struct stat st;
  int rc = fstat(fd, &st) ? snap__errno(err, -errno, "%s: fstat", path) : 0;
  if (!rc && !S_ISREG(st.st_mode))
    rc = snap__err(err, SNAP_ECONTROL, "%s: not a regular file", path);
  if (!rc && !(st.st_size == 0 && create)) rc = snap__control_check(fd, path, err);
  close(fd);
  return rc;
}

static int control_open(const char *path, bool create, struct snap__control **out,
                        struct snap_error *err) {
  *out = NULL;
  int prc = control_precheck(path, create, err);
  if (prc) return prc;
  /* Read-write whenever the file allows it, so that read-only and writable
   * handles of one process share the environment; the API enforces
   * SNAP_RDONLY itself. */
  bool rdonly = access(path, W_OK) != 0 && errno != ENOENT;
  struct snap__control *c = calloc(1, sizeof *c);
  if (!c || !(c->path = strdup(path))) {
    free(c);
    return snap__errno(err, -ENOMEM, "%s", path);
  }
  int rc = mdb_env_create(&c->env);
  if (rc) goto fail_nocreate;
  if ((rc = mdb_env_set_maxdbs(c->env, 4)) ||
      (rc = mdb_env_set_mapsize(c->env, control_mapsize())) ||
      (rc = mdb_env_set_maxreaders(c->env, CONTROL_MAXREADERS)))
    goto fail;
  /* NOSYNC: the file lives on tmpfs, where there is no power-loss case and
   * LMDB stays consistent across process crashes. NOTLS: read transactions
   * are not tied to threads. */
  unsigned envflags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC | (rdonly ? MDB_RDONLY : 0);
  if ((rc = mdb_env_open(c->env, path, envflags, SNAP__MODE_FILE))) goto fail;
  if (!rdonly) { /* the umask may have narrowed these; the lock must be group-writable */
    char lock[4200];
    snprintf(lock, sizeof lock, "%s-lock", path);
    struct stat st;
    if (lstat(lock, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        (st.st_mode & 07777) != SNAP__MODE_LOCK)
      chmod(lock, SNAP__MODE_LOCK);
  }
  MDB_txn *txn;
  if ((rc = mdb_txn_begin(c->env, NULL, rdonly ? MDB_RDONLY : 0, &txn))) goto fail;
  unsigned dbflags = rdonly ? 0 : MDB_CREATE;
  if ((rc = mdb_dbi_open(txn, "meta", dbflags, &c->meta)) ||
      (rc = mdb_dbi_open(txn, "datasets", dbflags, &c->datasets)) ||
      (rc = mdb_dbi_open(txn, "versions", dbflags, &c->versions))) {
    mdb_txn_abort(txn);
    goto fail;
  }
  if ((rc = mdb_txn_commit(txn))) goto fail;
  *out = c;
  return 0;
fail:
  mdb_env_close(c->env);
fail_nocreate:
  rc = lmdb_status(err, rc, path, "open");
  free(c->path);
  free(c);
  return rc == SNAP_ENOTFOUND
             ? snap__err(err, SNAP_ENOTFOUND, "%s: not a libsnap control file", path)
             : rc;
}

void snap__control_close(struct snap__control *c) {
  if (!c) return;
  pthread_mutex_lock(&g_ctl_lock);
  if (c->pid != getpid() || --c->refs > 0) { /* inherited: never touch it */
    pthread_mutex_unlock(&g_ctl_lock);
    return;
  }
  for (struct snap__control **pp = &g_ctls; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  pthread_mutex_unlock(&g_ctl_lock);
  mdb_env_close(c->env);
  free(c->path);
  free(c);
}

void snap__control_reader_check(struct snap__control *c) {
  int dead;
  mdb_reader_check(c->env, &dead);
}

bool snap__control_stale(struct snap__control *c) {
  struct stat st;
  if (stat(c->path, &st)) return true;
  if (st.st_dev != c->dev || st.st_ino != c->ino) return true;
  int fd;
  return mdb_env_get_fd(c->env, &fd) == 0 && fstat(fd, &st) == 0 &&
         (st.st_nlink == 0 || st.st_size < c->min_size);
}

int snap__control_verify_metas(struct snap__control *c, struct snap_error *err) {
  int fd;
  if (mdb_env_get_fd(c->env, &fd)) return 0;
  return snap__control_check_metas(fd, c->path, err);
}

void snap__control_retire(struct snap__control *c) {
  pthread_mutex_lock(&g_ctl_lock);
  for (struct snap__control **pp = &g_ctls; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  c->pid = 0; /* snap__control_close() never touches it again */
  pthread_mutex_unlock(&g_ctl_lock);
}

int snap__txn_begin(struct snap__control *c, bool write, struct snap__txn **out,
                    struct snap_error *err) {
  *out = NULL;
  /* A writer must not commit into a control file that was deleted or replaced
   * under it (its commits would be lost, and an orphan sweep would judge the
   * segments by a file that is not the store's). One fstat + stat. */
  if (write && snap__control_stale(c))
    return snap__err(err, SNAP_ECONTROL,
                     "%s: deleted, truncated or replaced while this process had it "
                     "open (repair: snapctl doctor --rebuild, then reopen the store): "
                     "nothing written",
                     c->path);
  /* and its meta pages, which LMDB reads through its map when the txn begins
   * (two preads); deeper damage is found when a process opens the file */
  if (write) {
    int rc = snap__control_verify_metas(c, err);
    if (rc) return rc;
  }
  struct snap__txn *t = malloc(sizeof *t);
  if (!t) return snap__errno(err, -ENOMEM, "%s: transaction", c->path);
  int rc = mdb_txn_begin(c->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
  if (rc) {
    free(t);
    return lmdb_status(err, rc, c->path, write ? "begin write" : "begin read");
  }
  t->c = c;
  *out = t;
  return 0;
}

int snap__txn_commit(struct snap__txn *t, struct snap_error *err) {
  int rc = mdb_txn_commit(t->txn);
  struct snap__control *c = t->c;
  free(t);
  return rc ? lmdb_status(err, rc, c->path, "commit") : 0;
}

void snap__txn_abort(struct snap__txn *t) {
  if (!t) return;
  mdb_txn_abort(t->txn);
  free(t);
}

static int get_exact(struct snap__txn *t, MDB_dbi dbi, MDB_val *k, void *out, size_t size,
                     const char *what, struct snap_error *err) {
  MDB_val v;
  int rc = mdb_get(t->txn, dbi, k, &v);
  if (rc == MDB_NOTFOUND) return SNAP_ENOTFOUND; /* callers word the message */
  if (rc) return lmdb_status(err, rc, t->c->path, what);
  if (v.mv_size != size)
    return snap__err(err, SNAP_ECONTROL, "%s: %s record has %zu bytes, expected %zu",
                     t->c->path, what, v.mv_size, size);
  memcpy(out, v.mv_data, size);
  return 0;
}

static int put(struct snap__txn *t, MDB_dbi dbi, MDB_val *k, const void *val, size_t size,
               const char *what, struct snap_error *err) {
  MDB_val v = {size, (void *)val};
  int rc = mdb_put(t->txn, dbi, k, &v, 0);
  return rc ? lmdb_status(err, rc, t->c->path, what) : 0;
}

int snap__meta_get(struct snap__txn *t, struct snap__meta *m, struct snap_error *err) {
  MDB_val k = {4, "meta"};
  int rc = get_exact(t, t->c->meta, &k, m, sizeof *m, "meta", err);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND, "%s: meta record missing", t->c->path);
  return rc;
}

int snap__meta_put(struct snap__txn *t, const struct snap__meta *m,
                   struct snap_error *err) {
  MDB_val k = {4, "meta"};
  return put(t, t->c->meta, &k, m, sizeof *m, "meta", err);
}

/* The dataset limit: its own key in the meta database, so that stores made before
 * it existed (no key) read as unlimited and the meta record keeps its size. */
int snap__max_datasets_get(struct snap__txn *t, uint32_t *max, struct snap_error *err) {
  MDB_val k = {12, "max_datasets"};
  int rc = get_exact(t, t->c->meta, &k, max, sizeof *max, "max_datasets", err);
  if (rc == SNAP_ENOTFOUND) *max = 0, rc = 0;
  return rc;
}

int snap__max_datasets_put(struct snap__txn *t, uint32_t max, struct snap_error *err) {
  MDB_val k = {12, "max_datasets"};
  return put(t, t->c->meta, &k, &max, sizeof max, "max_datasets", err);
}

int snap__ds_count(struct snap__txn *t, uint64_t *count, struct snap_error *err) {
  MDB_stat st;
  int rc = mdb_stat(t->txn, t->c->datasets, &st);
  if (rc) return lmdb_status(err, rc, t->c->path, "datasets");
  *count = st.ms_entries;
  return 0;
}

int snap__ds_get(struct snap__txn *t, const char *name, struct snap__dsrec *rec,
                 struct snap_error *err) {
  MDB_val k = {strlen(name), (void *)name};
  int rc = get_exact(t, t->c->datasets, &k, rec, sizeof *rec, "datasets", err);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND, "dataset \"%s\" not found in %s", name,
                     t->c->path);
  return rc;
}

int snap__ds_put(struct snap__txn *t, const char *name, const struct snap__dsrec *rec,
                 struct snap_error *err) {
  MDB_val k = {strlen(name), (void *)name};
  return put(t, t->c->datasets, &k, rec, sizeof *rec, "datasets", err);
}

/* Delete a dataset record (its versions are the caller's business). 0 if absent. */
int snap__ds_del(struct snap__txn *t, const char *name, struct snap_error *err) {
  MDB_val k = {strlen(name), (void *)name};
  int rc = mdb_del(t->txn, t->c->datasets, &k, NULL);
  if (rc == MDB_NOTFOUND) return 0;
  return rc ? lmdb_status(err, rc, t->c->path, "delete dataset") : 0;
}

int snap__ds_each(struct snap__txn *t,
                  int (*cb)(const char *name, size_t len, const struct snap__dsrec *rec,
                            void *arg),
                  void *arg, struct snap_error *err) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->c->datasets, &cur);
  if (rc) return lmdb_status(err, rc, t->c->path, "datasets cursor");
  MDB_val k, v;
  int ret = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    struct snap__dsrec rec;
    if (v.mv_size != sizeof rec || k.mv_size > SNAP_DATASET_NAME_MAX) {
      ret = snap__err(err, SNAP_ECONTROL, "%s: datasets record of %zu bytes", t->c->path,
                      v.mv_size);
      break;
    }
    memcpy(&rec, v.mv_data, sizeof rec);
    char name[SNAP_DATASET_NAME_MAX + 1];
    memcpy(name, k.mv_data, k.mv_size);
    name[k.mv_size] = 0;
    if ((ret = cb(name, k.mv_size, &rec, arg))) break;
  }
  if (!ret && rc != MDB_NOTFOUND) ret = lmdb_status(err, rc, t->c->path, "datasets scan");
  mdb_cursor_close(cur);
  return ret;
}

static void ver_key(uint8_t key[16], uint64_t ds, uint64_t version) {
  for (int i = 0; i < 8; i++) {
    key[i] = (uint8_t)(ds >> (56 - 8 * i));
    key[8 + i] = (uint8_t)(version >> (56 - 8 * i));
  }
}

static uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

int snap__ver_get(struct snap__txn *t, uint64_t ds, uint64_t version,
                  struct snap__verrec *rec, struct snap_error *err) {
  uint8_t key[16];
  ver_key(key, ds, version);
  MDB_val k = {16, key};
  int rc = get_exact(t, t->c->versions, &k, rec, sizeof *rec, "versions", err);
  if (rc == SNAP_ENOTFOUND)
    return snap__err(err, SNAP_ENOTFOUND, "version %llu not found in %s",
                     (unsigned long long)version, t->c->path);
  return rc;
}

int snap__ver_put(struct snap__txn *t, uint64_t ds, uint64_t version,
                  const struct snap__verrec *rec, struct snap_error *err) {
  uint8_t key[16];
  ver_key(key, ds, version);
  MDB_val k = {16, key};
  return put(t, t->c->versions, &k, rec, sizeof *rec, "versions", err);
}

int snap__ver_del(struct snap__txn *t, uint64_t ds, uint64_t version,
                  struct snap_error *err) {
  uint8_t key[16];
  ver_key(key, ds, version);
  MDB_val k = {16, key};
  int rc = mdb_del(t->txn, t->c->versions, &k, NULL);
  if (rc == MDB_NOTFOUND) return 0;
  return rc ? lmdb_status(err, rc, t->c->path, "delete version") : 0;
}

int snap__ver_each(struct snap__txn *t, uint64_t ds,
                   int (*cb)(uint64_t version, const struct snap__verrec *rec, void *arg),
                   void *arg, struct snap_error *err) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->c->versions, &cur);
  if (rc) return lmdb_status(err, rc, t->c->path, "versions cursor");
  uint8_t key[16];
  ver_key(key, ds, 0);
  MDB_val k = {16, key}, v;
  int ret = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 16 || be64(k.mv_data) != ds) break;
    struct snap__verrec rec;
    if (v.mv_size != sizeof rec) {
      ret = snap__err(err, SNAP_ECONTROL, "%s: versions record of %zu bytes", t->c->path,
                      v.mv_size);
      break;
    }
    memcpy(&rec, v.mv_data, sizeof rec);
    if ((ret = cb(be64((const uint8_t *)k.mv_data + 8), &rec, arg))) break;
  }
  if (!ret && rc && rc != MDB_NOTFOUND)
    ret = lmdb_status(err, rc, t->c->path, "versions scan");
  mdb_cursor_close(cur);
  return ret;
}
