/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The chunk size of a store's format 2 segments (docs/design.md 16.1).
 *
 * On a tmpfs with huge pages a chunk is 2 MiB: a piece boundary on a chunk
 * boundary never splits a PMD mapping. On 4 KiB pages it is 64 KiB: a row
 * range rewritten in a 100-column table then costs 100 x 64 KiB pieces of new
 * memory instead of 100 x 2 MiB, while the chunk table stays small (16 bytes
 * per 64 KiB) and the pieces a reader maps are as many as with 2 MiB chunks
 * (one per run of borrowed chunks, whatever their size).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "internal.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* The super options of the mount with id @p id contain huge=always,
 * huge=within_size or huge=advise. */
static bool mount_has_huge(uint64_t id) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return false;
  char line[4096];
  bool huge = false;
  while (fgets(line, sizeof line, f)) {
    if (strtoull(line, NULL, 10) != id) continue;
    const char *opts = strstr(line, " - ");
    huge = opts && (strstr(opts, "huge=always") || strstr(opts, "huge=within_size") ||
                    strstr(opts, "huge=advise"));
    break;
  }
  fclose(f);
  return huge;
}

unsigned snap__chunk_shift_for(int dirfd) {
  const char *env = getenv("LIBSNAP_CHUNK_SHIFT");
  if (env && *env) {
    char *end;
    unsigned long v = strtoul(env, &end, 10);
    if (!*end && v >= SNAP__CHUNK_SHIFT_MIN && v <= SNAP__CHUNK_SHIFT_MAX)
      return (unsigned)v;
  }
  struct statfs sf;
  if (fstatfs(dirfd, &sf) || (unsigned long)sf.f_type != TMPFS_MAGIC)
    return SNAP__CHUNK_SHIFT_SMALL;
#ifdef STATX_MNT_ID
  struct statx sx;
  if (!statx(dirfd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) &&
      (sx.stx_mask & STATX_MNT_ID) && mount_has_huge(sx.stx_mnt_id))
    return SNAP__CHUNK_SHIFT_HUGE;
#endif
  return SNAP__CHUNK_SHIFT_SMALL;
}
