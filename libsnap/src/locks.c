/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who holds a flock: the pins on a segment file, read from /proc/locks. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "internal.h"

int snap__lock_holders(dev_t dev, ino_t ino, pid_t *pids, size_t cap, size_t *count) {
  *count = 0;
  FILE *f = fopen("/proc/locks", "re");
  if (!f) return -errno;
  char line[256];
  size_t n = 0, seen_cap = 0;
  pid_t *seen = NULL; /* distinct pids, beyond what the caller has room for */
  while (fgets(line, sizeof line, f)) {
    /* "1: FLOCK  ADVISORY  READ  1234 00:19:5678 0 EOF"; waiters have "->". */
    char type[16], adv[16], mode[16];
    int pid;
    unsigned maj, min;
    unsigned long long inode;
    char *p = strchr(line, ':');
    if (!p || strstr(line, "->")) continue;
    if (sscanf(p + 1, "%15s %15s %15s %d %x:%x:%llu", type, adv, mode, &pid, &maj, &min,
               &inode) != 7)
      continue;
    if (strcmp(type, "FLOCK") || inode != (unsigned long long)ino || maj != major(dev) ||
        min != minor(dev))
      continue;
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++) dup = seen[i] == pid;
    if (dup) continue;
    if (n == seen_cap) {
      size_t nc = seen_cap ? 2 * seen_cap : 16;
      pid_t *p = realloc(seen, nc * sizeof *p);
      if (!p) {
        free(seen);
        fclose(f);
        return -ENOMEM;
      }
      seen = p;
      seen_cap = nc;
    }
    if (n < cap) pids[n] = pid;
    seen[n++] = pid;
  }
  free(seen);
  fclose(f);
  *count = n;
  return 0;
}
