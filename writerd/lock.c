/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One writerd per store: an exclusive flock on <store>/writerd.lock, held for
 * the daemon's life by an open descriptor (the kernel drops it when the process
 * dies, however it dies). The file holds the holder's pid and its socket path,
 * one per line, so that a second instance can name the holder and snapctl can
 * find the socket. The file is never unlinked: removing a lock file races with
 * the next process that opens it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "writerd.h"

int wd_lock_take(const char *path, int *fd) {
  *fd = -1;
  int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (f < 0) {
    int e = errno;
    fprintf(stderr, "writerd: %s: %s\n", path, strerror(e));
    return -e;
  }
  if (flock(f, LOCK_EX | LOCK_NB)) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      char buf[64] = {0};
      ssize_t n = pread(f, buf, sizeof buf - 1, 0);
      long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
      if (pid > 0)
        fprintf(stderr,
                "writerd: store is already served: %s is held by writerd pid %ld\n", path,
                pid);
      else
        fprintf(stderr,
                "writerd: store is already served: %s is held by another writerd "
                "(pid not written yet)\n",
                path);
    } else {
      fprintf(stderr, "writerd: %s: flock: %s\n", path, strerror(e));
    }
    close(f);
    return -e;
  }
  *fd = f;
  return 0;
}

int wd_lock_write(int fd, pid_t pid, const char *socket_path) {
  char buf[4200];
  int n = snprintf(buf, sizeof buf, "%ld\n%s\n", (long)pid, socket_path);
  if (n < 0 || n >= (int)sizeof buf) return -ENAMETOOLONG;
  if (ftruncate(fd, 0) || pwrite(fd, buf, (size_t)n, 0) != n) return -errno;
  return 0;
}
