/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The remote: an S3 bucket through snap_s3, or a directory with the same
 * layout (a file per object, for writerd --mirror). Both answer with snap_s3's
 * status codes, so that push.c and follow.c need not know which it is.
 *
 * A directory's objects are written to a temporary name (".tmp-" in the file
 * name, never listed), synced, then renamed over the key, so a reader sees an
 * object whole or not at all, as with S3. Its ETag is the XXH3-64 of the
 * content for small objects (what conditional writes compare: the
 * announcement) and size-mtime for large ones. Conditional writes hold a
 * flock on DIR/.lock around the check and the rename.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define POOL_MAX 16
#define SMALL_OBJECT (1u << 20) /* a directory's ETag hashes objects up to this */

struct snap_remote {
  bool is_dir;
  char url[1100];
  struct snap_s3_config cfg; /* S3 */
  int dirfd;                 /* directory */
  char dir[PATH_MAX];
  pthread_mutex_t lock;
  struct rconn *pool[POOL_MAX];
  int npool;
  _Atomic uint64_t up, down;
};

struct rconn {
  snap_remote *r;
  snap_s3 *s3; /* NULL for a directory */
};

struct rupload {
  char key[1100];
  char upload_id[SNAP_S3_UPLOAD_ID_MAX];
  int fd; /* directory: the temporary file */
  char tmp[PATH_MAX];
  pthread_mutex_t lock;
  struct snap_s3_part *parts;
  unsigned nparts, cap;
};

/* ------------------------------------------------------------------ open */

static int mkdirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    int rc = mkdir(path, 0755);
    *p = '/';
    if (rc && errno != EEXIST) return -errno;
  }
  return mkdir(path, 0755) && errno != EEXIST ? -errno : 0;
}

int snap_remote_open(const char *url, snap_remote **out, struct snap_sync_error *err) {
  *out = NULL;
  snap_remote *r = calloc(1, sizeof *r);
  if (!r) return sync__err(err, -ENOMEM, "local", "%s: out of memory", url);
  r->dirfd = -1;
  pthread_mutex_init(&r->lock, NULL);
  snprintf(r->url, sizeof r->url, "%s", url);
  int rc;
  if (!strncmp(url, "s3://", 5)) {
    struct snap_s3_error e = {0};
    if ((rc = snap_s3_config_from_env(&r->cfg, url, &e))) {
      sync__s3(err, rc, &e, url);
      snap_remote_close(r);
      return rc;
    }
  } else {
    r->is_dir = true;
    if (!url[0] || strlen(url) >= sizeof r->dir - 1) {
      snap_remote_close(r);
      return sync__err(err, -EINVAL, "local",
                       "'%s': not s3://BUCKET/PREFIX or a directory", url);
    }
    snprintf(r->dir, sizeof r->dir, "%s", url);
    if ((rc = mkdirs(r->dir)) ||
        (r->dirfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
      rc = rc ? rc : -errno;
      sync__err(err, rc, "local", "%s: %s", url, strerror(-rc));
      snap_remote_close(r);
      return rc;
    }
  }
  *out = r;
  return 0;
}

const char *snap_remote_url(const snap_remote *r) { return r->url; }

void snap_remote_close(snap_remote *r) {
  if (!r) return;
  for (int i = 0; i < r->npool; i++) {
    snap_s3_destroy(r->pool[i]->s3);
    free(r->pool[i]);
  }
  if (r->dirfd >= 0) close(r->dirfd);
  snap_s3_config_clear(&r->cfg);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

void snap_remote_bytes(const snap_remote *r, uint64_t *up, uint64_t *down) {
  *up = atomic_load(&((snap_remote *)r)->up);
  *down = atomic_load(&((snap_remote *)r)->down);
}

void r_count(snap_remote *r, uint64_t up, uint64_t down) {
  if (up) atomic_fetch_add(&r->up, up);
  if (down) atomic_fetch_add(&r->down, down);
}

int r_conn(snap_remote *r, struct rconn **out, struct snap_sync_error *err) {
  pthread_mutex_lock(&r->lock);
  struct rconn *c = r->npool ? r->pool[--r->npool] : NULL;
  pthread_mutex_unlock(&r->lock);
  if (!c && !(c = calloc(1, sizeof *c)))
    return sync__err(err, -ENOMEM, "local", "%s: out of memory", r->url);
  c->r = r;
  if (!r->is_dir && !c->s3) {
    struct snap_s3_error e = {0};
    int rc = snap_s3_create(&r->cfg, &c->s3, &e);
    if (rc) {
      free(c);
      return sync__s3(err, rc, &e, r->url);
    }
  }
  *out = c;
  return 0;
}

void r_release(struct rconn *c) {
  if (!c) return;
  snap_remote *r = c->r;
  pthread_mutex_lock(&r->lock);
  if (r->npool < POOL_MAX) {
    r->pool[r->npool++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&r->lock);
  if (c) {
    snap_s3_destroy(c->s3);
    free(c);
  }
}

/* ------------------------------------------------------------- directory */

static int dir_fail(struct snap_s3_error *e, int rc, const char *op, const snap_remote *r,
                    const char *key) {
  if (rc == -ENOENT) rc = SNAP_S3_ENOTFOUND;
  if (e) {
    memset(e, 0, sizeof *e);
    e->code = rc;
    const char *why = rc == SNAP_S3_ENOTFOUND       ? "no such object"
                      : rc == SNAP_S3_EPRECONDITION ? "precondition failed"
                                                    : strerror(-rc);
    if (snprintf(e->message, sizeof e->message, "%s %s/%s: %s", op, r->dir, key, why) >=
        (int)sizeof e->message)
      memcpy(e->message + sizeof e->message - 4, "...", 4);
  }
  return rc;
}

/* An object's ETag: the content hash for small objects, else size and mtime. */
static int dir_etag(int fd, const struct stat *st, char out[128]) {
  if (st->st_size > SMALL_OBJECT) {
    snprintf(out, 128, "\"%llx-%llx\"", (unsigned long long)st->st_size,
             (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st->st_mtim.tv_nsec);
    return 0;
  }
  uint8_t *b = malloc((size_t)st->st_size + 1);
  if (!b) return -ENOMEM;
  ssize_t n = pread(fd, b, (size_t)st->st_size, 0);
  if (n != st->st_size) {
    free(b);
    return n < 0 ? -errno : -EIO;
  }
  snprintf(out, 128, "\"%016llx\"", (unsigned long long)XXH3_64bits(b, (size_t)n));
  free(b);
  return 0;
}

static int dir_open(const snap_remote *r, const char *key, struct snap_s3_object *info) {
  int fd = openat(r->dirfd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = fstat(fd, &st) ? -errno : S_ISREG(st.st_mode) ? 0 : -EISDIR;
  if (!rc && info) {
    info->size = (uint64_t)st.st_size;
    rc = dir_etag(fd, &st, info->etag);
  }
  if (rc) {
    close(fd);
    return rc;
  }
  return fd;
}

/* Write @p len bytes to a temporary file beside @p key, synced; its path into
 * @p tmp. */
static int dir_tmp(const snap_remote *r, const char *key, char *tmp, size_t cap) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", r->dir, key) >= (int)sizeof path)
    return -ENAMETOOLONG;
  char *slash = strrchr(path, '/');
  *slash = 0;
  int rc = mkdirs(path);
  if (rc) return rc;
  static _Atomic unsigned seq;
  snprintf(tmp, cap, "%s.tmp-%d-%u", key, (int)getpid(), atomic_fetch_add(&seq, 1));
  int fd = openat(r->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  return fd < 0 ? -errno : fd;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off) {
  for (size_t done = 0; done < len;) {
    ssize_t w = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (w <= 0) return w < 0 ? -errno : -EIO;
    done += (size_t)w;
  }
  return 0;
}

/* The rename that publishes @p tmp as @p key, under @p cond (checked with the
 * directory's lock held). */
static int dir_commit(const snap_remote *r, const char *tmp, const char *key,
                      const struct snap_s3_cond *cond) {
  int lk = -1, rc = 0;
  if (cond && (cond->if_none_match || cond->if_match)) {
    lk = openat(r->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lk < 0 || flock(lk, LOCK_EX)) rc = -errno;
    struct snap_s3_object cur;
    int fd = rc ? -1 : dir_open(r, key, &cur);
    if (!rc && cond->if_none_match && fd >= 0) rc = SNAP_S3_EPRECONDITION;
    if (!rc && cond->if_match && (fd < 0 || strcmp(cur.etag, cond->if_match)))
      rc = SNAP_S3_EPRECONDITION;
    if (fd >= 0) close(fd);
  }
  if (!rc && renameat(r->dirfd, tmp, r->dirfd, key)) rc = -errno;
  if (!rc) fsync(r->dirfd);
  if (lk >= 0) close(lk);
  return rc;
}

/* ------------------------------------------------------------- operations */

int r_get(struct rconn *c, const char *key, uint64_t off, uint64_t len, void *buf,
          size_t cap, size_t *got, struct snap_s3_object *info, struct snap_s3_error *e) {
  *got = 0;
  int rc;
  if (c->s3) {
    rc = snap_s3_get(c->s3, key, off, len, buf, cap, got, info, e);
  } else {
    struct snap_s3_object o;
    int fd = dir_open(c->r, key, &o);
    if (fd < 0) return dir_fail(e, fd, "GET", c->r, key);
    if (info) *info = o;
    uint64_t want = off >= o.size ? 0 : o.size - off < len ? o.size - off : len;
    ssize_t n = 0;
    rc = off >= o.size && o.size ? SNAP_S3_ERANGE : want > cap ? SNAP_S3_ETOOBIG : 0;
    if (!rc && want) {
      n = pread(fd, buf, (size_t)want, (off_t)off);
      rc = n == (ssize_t)want ? 0 : n < 0 ? -errno : -EIO;
    }
    close(fd);
    if (rc) return dir_fail(e, rc, "GET", c->r, key);
    *got = (size_t)want;
  }
  if (!rc) r_count(c->r, 0, *got);
  return rc;
}

int r_get_cb(struct rconn *c, const char *key, uint64_t off, uint64_t len,
             snap_s3_sink sink, void *arg, uint64_t *got, struct snap_s3_error *e) {
  *got = 0;
  int rc;
  if (c->s3) {
    rc = snap_s3_get_cb(c->s3, key, off, len, sink, arg, got, NULL, e);
  } else {
    struct snap_s3_object o;
    int fd = dir_open(c->r, key, &o);
    if (fd < 0) return dir_fail(e, fd, "GET", c->r, key);
    uint64_t want = off >= o.size ? 0 : o.size - off < len ? o.size - off : len;
    rc = off >= o.size && o.size ? SNAP_S3_ERANGE : 0;
    static __thread uint8_t piece[1 << 20];
    for (uint64_t done = 0; !rc && done < want;) {
      size_t n = want - done < sizeof piece ? (size_t)(want - done) : sizeof piece;
      ssize_t k = pread(fd, piece, n, (off_t)(off + done));
      if (k <= 0) {
        rc = k < 0 ? -errno : -EIO;
        break;
      }
      if ((rc = sink(arg, done, piece, (size_t)k))) break;
      done += (uint64_t)k;
      *got = done;
    }
    close(fd);
    if (rc) return dir_fail(e, rc, "GET", c->r, key);
  }
  if (!rc) r_count(c->r, 0, *got);
  return rc;
}

int r_get_all(struct rconn *c, const char *key, const char *etag, size_t max,
              uint8_t **buf, size_t *len, struct snap_s3_object *info,
              struct snap_s3_error *e) {
  *buf = NULL;
  *len = 0;
  size_t cap = 64 << 10;
  for (;;) {
    uint8_t *b = malloc(cap);
    if (!b) return -ENOMEM;
    struct snap_s3_object o = {0};
    size_t got = 0;
    int rc;
    if (c->s3) {
      rc = snap_s3_get_changed(c->s3, key, etag, b, cap, &got, &o, e);
      if (!rc) r_count(c->r, 0, got);
    } else {
      rc = r_get(c, key, 0, SNAP_S3_TO_END, b, cap, &got, &o, e);
      if (!rc && etag && etag[0] && !strcmp(etag, o.etag)) rc = SNAP_S3_ENOTMODIFIED;
    }
    if (rc == SNAP_S3_ETOOBIG && o.size > cap && o.size <= max) {
      free(b);
      cap = (size_t)o.size;
      continue; /* the object grew between the two: the next round sees its size */
    }
    if (rc) {
      free(b);
      return rc;
    }
    if (info) *info = o;
    *buf = b;
    *len = got;
    return 0;
  }
}

int r_head(struct rconn *c, const char *key, struct snap_s3_object *info,
           struct snap_s3_error *e) {
  if (c->s3) return snap_s3_head(c->s3, key, info, e);
  int fd = dir_open(c->r, key, info);
  if (fd < 0) return dir_fail(e, fd, "HEAD", c->r, key);
  close(fd);
  return 0;
}

int r_put(struct rconn *c, const char *key, const void *buf, size_t len,
          const struct snap_s3_cond *cond, struct snap_s3_object *info,
          struct snap_s3_error *e) {
  int rc;
  if (c->s3) {
    rc = snap_s3_put(c->s3, key, buf, len, cond, info, e);
  } else {
    char tmp[PATH_MAX];
    int fd = dir_tmp(c->r, key, tmp, sizeof tmp);
    if (fd < 0) return dir_fail(e, fd, "PUT", c->r, key);
    rc = write_all(fd, buf, len, 0);
    if (!rc && fsync(fd)) rc = -errno;
    if (!rc) rc = dir_commit(c->r, tmp, key, cond);
    if (!rc && info) {
      struct stat st;
      rc = fstat(fd, &st) ? -errno : 0;
      info->size = len;
      if (!rc) rc = dir_etag(fd, &st, info->etag);
    }
    close(fd);
    if (rc) {
      unlinkat(c->r->dirfd, tmp, 0);
      return dir_fail(e, rc, "PUT", c->r, key);
    }
  }
  if (!rc) r_count(c->r, len, 0);
  return rc;
}

int r_delete(struct rconn *c, const char *key, struct snap_s3_error *e) {
  if (c->s3) return snap_s3_delete(c->s3, key, e);
  if (unlinkat(c->r->dirfd, key, 0) && errno != ENOENT)
    return dir_fail(e, -errno, "DELETE", c->r, key);
  return 0;
}

/* A directory listing, recursive, keys relative to the remote's directory. */
static int dir_walk(const snap_remote *r, const char *rel,
                    int (*cb)(const struct snap_s3_entry *, void *), void *arg) {
  int fd = openat(r->dirfd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -errno;
  }
  /* sorted, as S3 lists */
  struct dirent **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp-")) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      void *p = realloc(names, cap * sizeof *names);
      if (!p) {
        rc = -ENOMEM;
        break;
      }
      names = p;
    }
    size_t sz = offsetof(struct dirent, d_name) + strlen(de->d_name) + 1;
    if (!(names[n] = malloc(sz > sizeof *de ? sz : sizeof *de))) {
      rc = -ENOMEM;
      break;
    }
    memcpy(names[n++], de, sz);
  }
  for (size_t i = 0; i + 1 < n; i++) /* insertion sort: directories are small */
    for (size_t j = i + 1; j > 0 && strcmp(names[j - 1]->d_name, names[j]->d_name) > 0;
         j--) {
      struct dirent *t = names[j];
      names[j] = names[j - 1];
      names[j - 1] = t;
    }
  for (size_t i = 0; i < n && !rc; i++) {
    char key[PATH_MAX];
    snprintf(key, sizeof key, "%s%s%s", rel, rel[0] ? "/" : "", names[i]->d_name);
    struct stat st;
    if (fstatat(r->dirfd, key, &st, AT_SYMLINK_NOFOLLOW)) continue;
    if (S_ISDIR(st.st_mode)) {
      rc = dir_walk(r, key, cb, arg);
    } else if (S_ISREG(st.st_mode)) {
      struct snap_s3_entry ent = {
          .key = key, .size = (uint64_t)st.st_size, .last_modified = st.st_mtim.tv_sec};
      rc = cb(&ent, arg);
    }
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  closedir(d);
  return rc;
}

int r_list(struct rconn *c, const char *prefix,
           int (*cb)(const struct snap_s3_entry *ent, void *arg), void *arg,
           struct snap_s3_error *e) {
  if (!c->s3) {
    /* the prefixes asked for are "" or "D/" */
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s", prefix ? prefix : "");
    size_t n = strlen(rel);
    if (n && rel[n - 1] == '/') rel[n - 1] = 0;
    int rc = dir_walk(c->r, rel, cb, arg);
    return rc < 0 ? dir_fail(e, rc, "LIST", c->r, prefix ? prefix : "") : rc;
  }
  char *token = NULL;
  int rc = 0;
  do {
    struct snap_s3_list page;
    if ((rc = snap_s3_list(c->s3, prefix, token, 0, &page, e))) break;
    free(token);
    token = page.next_token ? strdup(page.next_token) : NULL;
    for (size_t i = 0; i < page.count && !rc; i++)
      if (!page.entries[i].odd) rc = cb(&page.entries[i], arg);
    snap_s3_list_free(&page);
  } while (!rc && token);
  free(token);
  return rc;
}

/* ---------------------------------------------------------------- uploads */

int r_up_begin(struct rconn *c, const char *key, uint64_t size, struct rupload **out,
               struct snap_s3_error *e) {
  struct rupload *u = calloc(1, sizeof *u);
  if (!u) return -ENOMEM;
  snprintf(u->key, sizeof u->key, "%s", key);
  u->fd = -1;
  pthread_mutex_init(&u->lock, NULL);
  int rc;
  if (c->s3) {
    rc = snap_s3_multipart_create(c->s3, key, u->upload_id, e);
  } else {
    rc = u->fd = dir_tmp(c->r, key, u->tmp, sizeof u->tmp);
    if (u->fd >= 0) rc = ftruncate(u->fd, (off_t)size) ? -errno : 0;
    if (rc) rc = dir_fail(e, rc, "PUT", c->r, key);
  }
  if (rc) {
    r_up_abort(c, u);
    return rc;
  }
  *out = u;
  return 0;
}

int r_up_part(struct rconn *c, struct rupload *u, unsigned number, uint64_t off,
              const void *buf, size_t len, struct snap_s3_error *e) {
  int rc;
  if (c->s3) {
    struct snap_s3_part part;
    rc = snap_s3_multipart_put(c->s3, u->key, u->upload_id, number, buf, len, &part, e);
    if (!rc) {
      pthread_mutex_lock(&u->lock);
      if (number > u->cap) {
        unsigned cap = number * 2;
        void *p = realloc(u->parts, cap * sizeof *u->parts);
        if (p) {
          memset((struct snap_s3_part *)p + u->cap, 0, (cap - u->cap) * sizeof *u->parts);
          u->parts = p;
          u->cap = cap;
        } else {
          rc = -ENOMEM;
        }
      }
      if (!rc) {
        u->parts[number - 1] = part;
        if (number > u->nparts) u->nparts = number;
      }
      pthread_mutex_unlock(&u->lock);
    }
  } else {
    rc = write_all(u->fd, buf, len, off);
    if (rc) rc = dir_fail(e, rc, "PUT", c->r, u->key);
  }
  if (!rc) r_count(c->r, len, 0);
  return rc;
}

int r_up_complete(struct rconn *c, struct rupload *u, struct snap_s3_error *e) {
  int rc;
  if (c->s3) {
    for (unsigned i = 0; i < u->nparts; i++)
      if (!u->parts[i].number) return -EINVAL; /* a part never sent */
    rc = snap_s3_multipart_complete(c->s3, u->key, u->upload_id, u->parts, u->nparts,
                                    NULL, NULL, e);
    if (rc) return rc;
    u->upload_id[0] = 0;
  } else {
    rc = fsync(u->fd) ? -errno : dir_commit(c->r, u->tmp, u->key, NULL);
    if (rc) return dir_fail(e, rc, "PUT", c->r, u->key);
    u->tmp[0] = 0;
  }
  r_up_abort(c, u); /* frees */
  return 0;
}

void r_up_abort(struct rconn *c, struct rupload *u) {
  if (!u) return;
  if (c->s3 && u->upload_id[0])
    snap_s3_multipart_abort(c->s3, u->key, u->upload_id, NULL);
  if (u->fd >= 0) close(u->fd);
  if (u->tmp[0]) unlinkat(c->r->dirfd, u->tmp, 0);
  pthread_mutex_destroy(&u->lock);
  free(u->parts);
  free(u);
}
