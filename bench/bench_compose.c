/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What composing a version from pieces of several files costs a reader: the
 * measurement behind the chunk size and the piece limit of incremental
 * versions (docs/design.md, "Incremental versions").
 *
 * A table of N bytes lives in two files on a tmpfs: "old" (the previous
 * version) and "new" (the chunks that changed). A composed view reserves a
 * 2 MiB-aligned PROT_NONE range and maps P pieces into it with MAP_FIXED,
 * alternating between the two files (the worst case: no two neighbours merge).
 * The baseline, in the same run, is what a reader does today: one mmap of one
 * file.
 *
 *   map      time to build the view (lazy: no page is touched)
 *   fault    first touch of every page through the view (page-table fill)
 *   scan     a second pass summing one double per 64 bytes (TLB and caches)
 *
 * Figures are medians over --runs, with the ratio to the one-file baseline.
 *
 * usage: bench_compose [--gib N] [--runs N] [--dir DIR] [--pieces P,P,...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define ALIGN ((size_t)2 << 20)

static void die(const char *what) {
  fprintf(stderr, "bench_compose: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* A file of @p size bytes filled with doubles, unlinked at once (the
 * descriptor keeps it). */
static int make_file(const char *dir, const char *tag, size_t size, double seed) {
  char path[4096];
  snprintf(path, sizeof path, "%s/bench_compose.%d.%s", dir, (int)getpid(), tag);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) die(path);
  unlink(path);
  if (ftruncate(fd, (off_t)size)) die("ftruncate");
  double *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  for (size_t i = 0; i < size / sizeof *p; i++) p[i] = seed + (double)(i & 1023);
  munmap(p, size);
  return fd;
}

/* Map @p size bytes as @p pieces pieces alternating between fds[0] and fds[1]
 * (pieces = 1: one mmap of fds[0], the baseline). Returns the view; *res and
 * *span what to munmap. */
static const double *view(const int fds[2], size_t size, size_t pieces, void **res,
                          size_t *span) {
  if (pieces == 1) {
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fds[0], 0);
    if (p == MAP_FAILED) die("mmap");
    *res = p;
    *span = size;
    return p;
  }
  *span = size + ALIGN;
  char *r =
      mmap(NULL, *span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) die("reserve");
  char *base = (char *)(((uintptr_t)r + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
  size_t piece = size / pieces;
  for (size_t i = 0; i < pieces; i++) {
    size_t len = i + 1 == pieces ? size - i * piece : piece;
    if (mmap(base + i * piece, len, PROT_READ, MAP_SHARED | MAP_FIXED, fds[i & 1],
             (off_t)(i * piece)) == MAP_FAILED)
      die("mmap MAP_FIXED (vm.max_map_count?)");
  }
  *res = r;
  return (const double *)base;
}

static double touch(const double *p, size_t size, size_t step) {
  double s = 0;
  for (size_t i = 0; i < size / sizeof *p; i += step / sizeof *p) s += p[i];
  return s;
}

int main(int argc, char **argv) {
  double gib = 1;
  int runs = 5;
  const char *dir = "/dev/shm";
  char pieces_arg[256] = "16,512,4096,16384";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--gib") && i + 1 < argc)
      gib = atof(argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--pieces") && i + 1 < argc)
      snprintf(pieces_arg, sizeof pieces_arg, "%s", argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--gib N] [--runs N] [--dir DIR] [--pieces P,P,...]\n",
              argv[0]);
      return 2;
    }
  }
  if (gib <= 0 || runs < 1 || runs > 101) return 2;
  size_t size = ((size_t)(gib * (double)(1u << 30)) + ALIGN - 1) & ~(ALIGN - 1);
  int fds[2] = {make_file(dir, "old", size, 1), make_file(dir, "new", size, 2)};
  printf(
      "bench_compose: %.2f GiB in %s, medians of %d runs; baseline = one mmap of one "
      "file\n",
      (double)size / (1u << 30), dir, runs);
  double base[3] = {0, 0, 0};
  char *save = NULL;
  char list[260];
  snprintf(list, sizeof list, "1,%s", pieces_arg);
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t pieces = strtoull(tok, NULL, 10);
    if (!pieces || size / pieces < 4096 || (size / pieces) % 4096) {
      fprintf(stderr, "bench_compose: %zu pieces: each must be a multiple of 4 KiB\n",
              pieces);
      return 2;
    }
    double t_map[101], t_fault[101], t_scan[101], sink = 0;
    for (int r = 0; r < runs; r++) {
      void *res;
      size_t span;
      double t0 = now();
      const double *p = view(fds, size, pieces, &res, &span);
      double t1 = now();
      sink += touch(p, size, 4096);
      double t2 = now();
      sink += touch(p, size, 64);
      double t3 = now();
      munmap(res, span);
      t_map[r] = t1 - t0, t_fault[r] = t2 - t1, t_scan[r] = t3 - t2;
    }
    double m[3] = {median(t_map, runs), median(t_fault, runs), median(t_scan, runs)};
    if (pieces == 1) memcpy(base, m, sizeof m);
    printf(
        "%6zu pieces (%7.1f KiB each): map %8.3f ms (%5.2f us/piece)   fault %7.2f ms "
        "(x%.2f)   scan %7.2f ms (x%.2f)%s\n",
        pieces, (double)size / (double)pieces / 1024, m[0] * 1e3,
        m[0] * 1e6 / (double)pieces, m[1] * 1e3, m[1] / base[1], m[2] * 1e3,
        m[2] / base[2], sink == 0.5 ? " " : "");
  }
  close(fds[0]);
  close(fds[1]);
  return 0;
}
