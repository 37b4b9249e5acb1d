/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inbox: a directory watched with inotify. A file <dataset>.<ext> (.npy,
 * .csv, .seg) that appears in it (renamed in: IN_MOVED_TO, or written in place and
 * closed: IN_CLOSE_WRITE) is published as a new version of <dataset>, then moved
 * to done/; a file that fails is moved to failed/ with <file>.error beside it
 * holding the one-line error. Names starting with '.' are ignored (temporary
 * files of producers that write, then rename). Files present at start are
 * processed too: the watch is added before the scan, and a name already queued
 * is not queued twice.
 *
 * A file whose publish is cancelled by shutdown stays in the inbox and is
 * published at the next start.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writerd.h"

struct pending {
  struct pending *next;
  char name[];
};

struct wd_inbox {
  char *dir;
  int dirfd, ifd, wd;
  int done_keep;           /* files kept in done/ (-1: all) */
  struct pending *pending; /* names queued or being published */
  struct wd_worker *w;
};

static int mkdir_at(int dirfd, const char *name) {
  if (mkdirat(dirfd, name, 0755) && errno != EEXIST) return -errno;
  return 0;
}

int wd_inbox_open(const char *dir, int done_keep, struct wd_inbox **out, int *ifd,
                  int *dirfd) {
  *out = NULL;
  if (mkdir(dir, 0755) && errno != EEXIST) {
    int e = errno;
    fprintf(stderr, "writerd: inbox %s: %s\n", dir, strerror(e));
    return -e;
  }
  struct wd_inbox *in = calloc(1, sizeof *in);
  if (!in || !(in->dir = strdup(dir))) {
    free(in);
    return -ENOMEM;
  }
  in->ifd = -1;
  in->done_keep = done_keep;
  in->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = 0;
  if (in->dirfd < 0 || (rc = mkdir_at(in->dirfd, "done")) ||
      (rc = mkdir_at(in->dirfd, "failed"))) {
    if (!rc) rc = -errno;
    fprintf(stderr, "writerd: inbox %s: %s\n", dir, strerror(-rc));
    goto fail;
  }
  in->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in->ifd < 0 || (in->wd = inotify_add_watch(in->ifd, dir,
                                                 IN_MOVED_TO | IN_CLOSE_WRITE |
                                                     IN_ONLYDIR | IN_DONT_FOLLOW)) < 0) {
    rc = -errno;
    fprintf(stderr, "writerd: inbox %s: inotify: %s\n", dir, strerror(-rc));
    goto fail;
  }
  *ifd = in->ifd;
  *dirfd = in->dirfd;
  *out = in;
  return 0;
fail:
  if (in->ifd >= 0) close(in->ifd);
  if (in->dirfd >= 0) close(in->dirfd);
  free(in->dir);
  free(in);
  return rc;
}

static int is_pending(struct wd_inbox *in, const char *name) {
  for (struct pending *p = in->pending; p; p = p->next)
    if (!strcmp(p->name, name)) return 1;
  return 0;
}

static void unpend(struct wd_inbox *in, const char *name) {
  for (struct pending **p = &in->pending; *p; p = &(*p)->next)
    if (!strcmp((*p)->name, name)) {
      struct pending *d = *p;
      *p = d->next;
      free(d);
      return;
    }
}

/* A <dataset>.schema file in the inbox gives the column types of the dataset's
 * CSV files (snapctl publish --schema's format) instead of inference. */
static void attach_schema(struct wd_inbox *in, struct wd_job *job) {
  char name[SNAP_DATASET_NAME_MAX + 16];
  snprintf(name, sizeof name, "%s.schema", job->dataset);
  int fd = openat(in->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size <= (1 << 20) &&
      (job->schema = malloc((size_t)st.st_size + 1)) &&
      read(fd, job->schema, (size_t)st.st_size) == st.st_size &&
      (job->schema_name = strdup(name))) {
    job->opt.schema = job->schema;
    job->opt.schema_len = (size_t)st.st_size;
    job->opt.schema_name = job->schema_name;
  }
  close(fd);
}

/* Queue @p name if it is a regular file not already queued. */
static void consider(struct wd_inbox *in, struct wd_worker *w, const char *name) {
  if (name[0] == '.' || is_pending(in, name)) return;
  size_t nlen = strlen(name);
  if (nlen > 7 && !strcmp(name + nlen - 7, ".schema"))
    return; /* <dataset>.schema stays: it types every <dataset>.csv that comes in */
  struct stat st;
  if (fstatat(in->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) || S_ISDIR(st.st_mode)) return;
  size_t len = strlen(name);
  struct pending *p = malloc(sizeof *p + len + 1);
  struct wd_job *job = calloc(1, sizeof *job);
  if (!p || !job || !(job->name = strdup(name))) {
    free(p);
    free(job);
    wd_log("error", "op=inbox message=\"out of memory\"");
    return;
  }
  job->source = WD_SRC_INBOX;
  job->fd = -1;
  /* <dataset>.<ext>: the dataset is the name without its last extension; a name
   * without one (or an unknown one) keeps its whole name and fails in the
   * ingest with "unknown input format", which lands it in failed/ */
  const char *dot = strrchr(name, '.');
  size_t dl = dot && dot != name ? (size_t)(dot - name) : len;
  if (dl > SNAP_DATASET_NAME_MAX) dl = SNAP_DATASET_NAME_MAX;
  memcpy(job->dataset, name, dl);
  job->dataset[dl] = 0;
  job->opt.format = ingest_format_from_name(name);
  if (job->opt.format == INGEST_AUTO || !dot || dot == name) {
    /* refused here, with the same one-line error file as any failure */
    free(p);
    job->status = SNAP_EINVAL;
    job->err.code = SNAP_EINVAL;
    snprintf(job->err.message, sizeof job->err.message,
             "%s: unknown input format (name it <dataset>.npy, <dataset>.csv or "
             "<dataset>.seg)",
             name);
    wd_inbox_finish(in, job);
    return;
  }
  if (job->opt.format == INGEST_CSV) attach_schema(in, job);
  memcpy(p->name, name, len + 1);
  p->next = in->pending;
  in->pending = p;
  wd_worker_submit(w, job);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void wd_inbox_scan(struct wd_inbox *in, struct wd_worker *w) {
  in->w = w;
  int fd = openat(in->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    wd_log("error", "op=inbox-scan dir=%s message=\"%s\"", in->dir, strerror(errno));
    return;
  }
  /* sorted, so that files present at start publish in name order */
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **p = realloc(names, cap * sizeof *p);
      if (!p) break;
      names = p;
    }
    if (n < cap && (names[n] = strdup(e->d_name))) n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_name);
  for (size_t i = 0; i < n; i++) {
    consider(in, w, names[i]);
    free(names[i]);
  }
  free(names);
}

void wd_inbox_event(struct wd_inbox *in, struct wd_worker *w) {
  in->w = w;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t n = read(in->ifd, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return; /* EAGAIN: drained */
    }
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      p += sizeof *ev + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        wd_log("inbox-overflow", "dir=%s action=rescan", in->dir);
        wd_inbox_scan(in, w);
      } else if (ev->mask & IN_IGNORED) {
        wd_log("error", "op=inbox dir=%s message=\"inbox removed; no longer watched\"",
               in->dir);
      } else if (ev->len && !(ev->mask & IN_ISDIR)) {
        consider(in, w, ev->name);
      }
    }
  }
}

/* Write failed/<name>.error holding the message and a newline. */
static void write_error_file(struct wd_inbox *in, const char *name, const char *msg) {
  char rel[NAME_MAX + 32];
  snprintf(rel, sizeof rel, "failed/%s.error", name);
  int fd =
      openat(in->dirfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    wd_log("error", "op=inbox file=%s message=\"%s\"", rel, strerror(errno));
    return;
  }
  size_t len = strlen(msg);
  char *line = malloc(len + 2);
  if (line) {
    memcpy(line, msg, len);
    for (size_t i = 0; i < len; i++)
      if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[len] = '\n';
    if (write(fd, line, len + 1) != (ssize_t)(len + 1))
      wd_log("error", "op=inbox file=%s message=\"short write\"", rel);
    free(line);
  }
  close(fd);
}

/* Move @p name into @p sub (done or failed), replacing an older file of that name. */
static int move_to(struct wd_inbox *in, const char *name, const char *sub) {
  char rel[NAME_MAX + 16];
  snprintf(rel, sizeof rel, "%s/%s", sub, name);
  if (renameat(in->dirfd, name, in->dirfd, rel)) {
    char q[600];
    wd_log("error", "op=inbox file=%s message=\"rename to %s: %s\"",
           wd_q(q, sizeof q, name), sub, strerror(errno));
    return -1;
  }
  return 0;
}

/* Keep the done_keep files that came into done/ last (by ctime, which the rename
 * into done/ sets) and remove the others. */
static void prune_done(struct wd_inbox *in) {
  if (in->done_keep < 0) return;
  int fd = openat(in->dirfd, "done", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  struct entry {
    struct timespec t;
    char name[NAME_MAX + 1];
  } *v = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    struct stat st;
    if (de->d_name[0] == '.' || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
        !S_ISREG(st.st_mode))
      continue;
    if (n == cap) {
      struct entry *nv = realloc(v, (cap = cap ? 2 * cap : 32) * sizeof *v);
      if (!nv) break;
      v = nv;
    }
    v[n].t = st.st_ctim;
    snprintf(v[n].name, sizeof v[n].name, "%s", de->d_name);
    n++;
  }
  /* newest first; remove from done_keep on */
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (v[j].t.tv_sec > v[i].t.tv_sec ||
          (v[j].t.tv_sec == v[i].t.tv_sec && v[j].t.tv_nsec > v[i].t.tv_nsec)) {
        struct entry x = v[i];
        v[i] = v[j];
        v[j] = x;
      }
  for (size_t i = (size_t)in->done_keep; i < n; i++) {
    char q[600];
    if (unlinkat(fd, v[i].name, 0))
      wd_log("error", "op=inbox file=done/%s message=\"unlink: %s\"",
             wd_q(q, sizeof q, v[i].name), strerror(errno));
    else
      wd_log("inbox-prune", "file=done/%s", wd_q(q, sizeof q, v[i].name));
  }
  free(v);
  closedir(d);
}

/* Does the name now denote another file than the one the job published? */
static int replaced(struct wd_inbox *in, const struct wd_job *job) {
  struct stat a, b;
  if (job->fd < 0 || fstat(job->fd, &a)) return 0;
  if (fstatat(in->dirfd, job->name, &b, AT_SYMLINK_NOFOLLOW)) return 0;
  return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

void wd_inbox_finish(struct wd_inbox *in, struct wd_job *job) {
  unpend(in, job->name);
  char qn[600];
  if (job->vanished) {
    wd_log("inbox-skip", "file=%s reason=vanished", wd_q(qn, sizeof qn, job->name));
  } else if (job->status == -ECANCELED) {
    /* shutdown: leave it where it is; the next start publishes it */
    wd_log("cancel", "dataset=%s source=inbox file=%s reason=shutdown",
           wd_q((char[600]){0}, 600, job->dataset), wd_q(qn, sizeof qn, job->name));
  } else if (replaced(in, job)) {
    /* a new file took the name while the old one was being published: report the
     * old one, leave the new one in place and queue it */
    wd_log_publish(job);
    wd_log("inbox-replaced", "file=%s action=requeue", qn);
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", job->name);
    wd_job_free(job);
    if (in->w) consider(in, in->w, name);
    return;
  } else if (job->status) {
    /* the .error first, then the file: whoever sees the file in failed/ finds its
     * reason beside it */
    write_error_file(in, job->name,
                     job->err.message[0] ? job->err.message : snap_strerror(job->status));
    move_to(in, job->name, "failed");
    wd_log_publish(job);
  } else {
    move_to(in, job->name, "done");
    wd_log_publish(job);
    prune_done(in);
  }
  wd_job_free(job);
}

void wd_inbox_close(struct wd_inbox *in) {
  if (!in) return;
  while (in->pending) unpend(in, in->pending->name);
  close(in->ifd);
  close(in->dirfd);
  free(in->dir);
  free(in);
}
