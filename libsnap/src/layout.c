/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store directory's layout: the one file that knows the on-disk names.
 *
 *   control.mdb, control.mdb-lock   the control file (control.c)
 *   flips                           the flips page (store.c)
 *   incoming/                       detached publishers' segments
 *   segments/<dataset>/             a dataset's directory, also its lock
 *   segments/<dataset>/<version>.seg          a version's segment
 *   segments/<dataset>/.next_version          the tombstone
 *   segments/<dataset>/<version>.seg.damaged  set aside by a rebuild
 *
 * Only names and directories here: which files are orphans is orphans.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------------ names */

void snap__seg_relpath(char *buf, size_t len, const char *dataset, uint64_t version) {
  snprintf(buf, len, "segments/%s/%llu.seg", dataset, (unsigned long long)version);
}

void snap__seg_name(char *buf, size_t len, uint64_t version) {
  snprintf(buf, len, "%llu.seg", (unsigned long long)version);
}

void snap__control_path(char *buf, size_t len, const char *store_path) {
  snprintf(buf, len, "%s/" SNAP__CONTROL_FILE, store_path);
}

bool snap__seg_name_parse(const char *name, uint64_t *version) {
  char *end;
  if (name[0] < '1' || name[0] > '9') return false;
  errno = 0;
  unsigned long long v = strtoull(name, &end, 10);
  /* UINT64_MAX is no version: rebuild's next_version = max + 1 would wrap */
  if (errno || strcmp(end, ".seg") || v == UINT64_MAX) return false;
  *version = v;
  return true;
}

/* ------------------------------------------------------------- segments/ */

bool snap__segments_present(int segfd) {
  int fd = openat(segfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *top = fd >= 0 ? fdopendir(fd) : NULL;
  if (!top) {
    if (fd >= 0) close(fd);
    return true; /* unreadable: assume there is something to protect */
  }
  bool found = false;
  struct dirent *e;
  while (!found && (e = readdir(top))) {
    if (e->d_name[0] == '.') continue;
    int dfd = openat(dirfd(top), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
      if (dfd >= 0) close(dfd);
      continue;
    }
    struct dirent *f;
    while (!found && (f = readdir(d))) {
      size_t n = strlen(f->d_name);
      found = n > 4 && !strcmp(f->d_name + n - 4, ".seg");
    }
    closedir(d);
  }
  closedir(top);
  return found;
}

int snap__dataset_dirs_each(snap_store *s,
                            int (*cb)(const char *dataset, int dsfd, void *arg),
                            void *arg, struct snap_error *err) {
  int sfd = openat(s->segfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
  if (!d) {
    int rc = snap__errno(err, -errno, "%s/segments", s->path);
    if (sfd >= 0) close(sfd);
    return rc;
  }
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int dfd = openat(s->segfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) { /* gone, or a stray file that is not a dataset directory */
      if (errno != ENOENT && errno != ENOTDIR)
        rc = snap__errno(err, -errno, "%s/segments/%s", s->path, e->d_name);
      continue;
    }
    rc = cb(e->d_name, dfd, arg);
    close(dfd);
  }
  closedir(d);
  return rc;
}

/* ------------------------------------------------------- dataset directory
 *
 * segments/<dataset>/ is also the dataset's lock: every publish holds
 * flock(LOCK_SH) on it from before it reserves a version number until it has
 * committed or given up, and whoever removes the dataset record (a drop, or
 * the last failed first publish) holds LOCK_EX. So a record is never removed
 * under a publish in progress, and a record removed is never half-used.
 *
 * It also keeps the tombstone: segments/<dataset>/.next_version holds the
 * dataset's next version number when its record was removed, and a dataset
 * created again under that name starts there. Readers cache mappings by name
 * and version, so a number must never name two different segments. The
 * directory (and the tombstone) outlive the record on purpose. */

#define TOMBSTONE ".next_version"

int snap__dataset_dir_lock(snap_store *s, const char *dataset, int how, int *out,
                           struct snap_error *err) {
  *out = -1;
  if (mkdirat(s->segfd, dataset, SNAP__MODE_DIR) && errno != EEXIST)
    return snap__errno(err, -errno, "%s/segments/%s", s->path, dataset);
  int fd = openat(s->segfd, dataset, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return snap__errno(err, -errno, "%s/segments/%s", s->path, dataset);
  while (flock(fd, how)) {
    if (errno == EINTR) continue;
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return snap__err(err, SNAP_EBUSY,
                       "%s/segments/%s: a publish of \"%s\" is in progress", s->path,
                       dataset, dataset);
    return snap__errno(err, -e, "%s/segments/%s: flock", s->path, dataset);
  }
  *out = fd;
  return 0;
}

uint64_t snap__tombstone_get(int segfd, const char *dataset) {
  char rel[SNAP_DATASET_NAME_MAX + 32], buf[32];
  snprintf(rel, sizeof rel, "%s/" TOMBSTONE, dataset);
  int fd = openat(segfd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 1;
  buf[n] = 0;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  return errno || end == buf || v < 1 ? 1 : (uint64_t)v;
}

/* Raise the tombstone of the dataset whose directory is @p dsfd to @p next. */
int snap__tombstone_put(snap_store *s, int dsfd, const char *dataset, uint64_t next,
                        struct snap_error *err) {
  if (snap__tombstone_get(s->segfd, dataset) >= next) return 0;
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)next);
  unlinkat(dsfd, TOMBSTONE ".tmp", 0); /* left by a crash, and read-only */
  int fd = openat(dsfd, TOMBSTONE ".tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  SNAP__MODE_SEGMENT);
  if (fd < 0)
    return snap__errno(err, -errno, "%s/segments/%s/" TOMBSTONE ".tmp", s->path, dataset);
  bool ok = write(fd, buf, (size_t)len) == len;
  int e = errno;
  close(fd);
  if (!ok || renameat(dsfd, TOMBSTONE ".tmp", dsfd, TOMBSTONE)) {
    if (ok) e = errno;
    unlinkat(dsfd, TOMBSTONE ".tmp", 0);
    return snap__errno(err, -e, "%s/segments/%s/" TOMBSTONE, s->path, dataset);
  }
  return 0;
}
