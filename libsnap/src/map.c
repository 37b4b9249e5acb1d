/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Mapping segment files at 2 MiB-aligned addresses (huge-page tmpfs). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define HUGE_ALIGN ((uint64_t)2 << 20)

static int map_at_2m(int fd, uint64_t size, int prot, int flags, void **out) {
  /* Reserve size + 2 MiB of address space, then map the file at the first
   * 2 MiB boundary inside it, so that huge-page tmpfs files get PMD mappings. */
  size_t span = size + HUGE_ALIGN;
  char *res =
      mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) return -errno;
  char *aligned = (char *)(((uintptr_t)res + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1));
  void *p = mmap(aligned, size, prot, flags | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    munmap(res, span);
    return -e;
  }
  if (aligned > res) munmap(res, aligned - res);
  /* the file mapping covers whole pages: the reservation's tail starts after */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *end = aligned + ((size + page - 1) & ~(page - 1));
  if (res + span > end) munmap(end, (size_t)(res + span - end));
  *out = aligned;
  return 0;
}

int snap__map_aligned(int fd, uint64_t size, bool writable, void **out) {
  return map_at_2m(fd, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, out);
}

int snap__map_private(int fd, uint64_t size, void **out) {
  return map_at_2m(fd, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, out);
}

void snap__unmap(void *addr, uint64_t size) {
  if (addr) munmap(addr, size);
}
