/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Core benchmarks: each figure is printed beside its baseline, measured in the
 * same run (the machine is shared and noisy: medians and ratios).
 *
 *   pin+unpin of an unchanged current version   vs an atomic inc+dec pair
 *   attach (fresh process: open store + pin)    vs raw open + mmap of the file
 *   publish of a float64 table (fill + commit)  vs memcpy into fresh malloc memory
 *     and its parts (begin, fill, commit) beside the kernel's page allocation,
 *     the page faults, the pure copy and the pure hash, each measured alone
 *   random single-element reads via the API     vs the same reads on a malloc'd array
 *
 * usage: bench_core [--gib N] [--runs N] [--dir DIR] [--no-huge]
 * The huge-page run mounts a private tmpfs with huge=always (needs root).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libsnap/libsnap.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench_util.h"

extern char **environ;

static void die(const char *what, const struct snap_error *err) {
  fprintf(stderr, "bench_core: %s: %s\n", what, err ? err->message : strerror(errno));
  exit(1);
}

static void rm_rf(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) fprintf(stderr, "bench_core: could not remove %s\n", dir);
}

/* ------------------------------------------------------------- publish */

/* The three parts of one publish, in seconds. */
struct publish_parts {
  double begin;  /* reserve number, O_TMPFILE, posix_fallocate, map, manifest */
  double fill;   /* memcpy into the mapped segment: page faults + copy */
  double commit; /* validate, seal (XXH3-128 of the data), unmap, flip, after-commit */
};

static double publish_once(snap_store *s, const double *src, uint64_t nrows,
                           uint32_t ncols, uint64_t *version, struct publish_parts *pp) {
  struct snap_field *f = calloc(ncols, sizeof *f);
  char(*names)[12] = calloc(ncols, 12);
  for (uint32_t c = 0; c < ncols; c++) {
    snprintf(names[c], 12, "c%u", c);
    f[c].name = names[c];
    f[c].type = SNAP_FLOAT64;
  }
  struct snap_schema schema = {nrows, ncols, f, NULL, 0};
  struct snap_error err;
  snap_publish *p;
  double t0 = now();
  if (snap_publish_begin(s, "bench", &schema, &p, &err)) die("publish_begin", &err);
  double t1 = now();
  memcpy(snap_publish_block(p, 0), src, nrows * ncols * sizeof(double));
  double t2 = now();
  if (snap_publish_commit(p, version, &err)) die("publish_commit", &err);
  double t3 = now();
  pp->begin = t1 - t0;
  pp->fill = t2 - t1;
  pp->commit = t3 - t2;
  free(f);
  free(names);
  return t3 - t0;
}

static double memcpy_fresh(const double *src, size_t bytes) {
  double t0 = now();
  char *dst = malloc(bytes);
  memcpy(dst, src, bytes);
  double t = now() - t0;
  volatile char sink = dst[bytes / 2];
  (void)sink;
  free(dst);
  return t;
}

/* Map @p fd as the library maps a segment: at a 2 MiB boundary (so that
 * huge-page tmpfs files get PMD mappings), shared, writable, MADV_HUGEPAGE. */
static char *map_like_segment(int fd, size_t size) {
  const size_t huge = 2u << 20;
  char *res = mmap(NULL, size + huge, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) die("mmap reserve", NULL);
  char *aligned = (char *)(((uintptr_t)res + huge - 1) & ~(uintptr_t)(huge - 1));
  if (mmap(aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
      MAP_FAILED)
    die("mmap", NULL);
  if (aligned > res) munmap(res, (size_t)(aligned - res));
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *end = aligned + ((size + page - 1) & ~(page - 1));
  if (res + size + huge > end) munmap(end, (size_t)(res + size + huge - end));
  madvise(aligned, size, MADV_HUGEPAGE);
  return aligned;
}

/* Write one byte in every 4 KiB page: the page faults of a fill, without its copy. */
static double touch_pages(char *m, size_t size) {
  volatile char *v = m;
  double t0 = now();
  for (size_t i = 0; i < size; i += 4096) v[i] = 1;
  return now() - t0;
}

static int fresh_tmpfile(const char *dir) {
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) die("O_TMPFILE", NULL);
  return fd;
}

static volatile uint64_t bench_sink;

/* Baselines, each alone, in seconds. */
struct publish_baselines {
  double falloc;       /* posix_fallocate of a fresh O_TMPFILE: the kernel's allocation */
  double touch_falloc; /* first touch of that file: the kernel zeroes each page here */
  double touch_warm;  /* touch via a new mapping, pages present: the minor faults alone */
  double unmap_free;  /* munmap + close of that file: unmapping and freeing its pages */
  double fault_alloc; /* first touch of an ftruncate'd file: allocation by faulting */
  double copy;        /* memcpy between two warm buffers */
  double hash;        /* XXH3-128 over a warm buffer */
};

/* @p segdir and @p seg_bytes: the directory and size of the publish's segment
 * file; @p src and @p warm: two faulted-in buffers of @p bytes (the data). */
static void publish_baselines_once(const char *segdir, size_t seg_bytes, const void *src,
                                   void *warm, size_t bytes,
                                   struct publish_baselines *b) {
  int fd = fresh_tmpfile(segdir);
  double t0 = now();
  int rc = posix_fallocate(fd, 0, (off_t)seg_bytes);
  b->falloc = now() - t0;
  if (rc) {
    errno = rc;
    die("posix_fallocate", NULL);
  }
  /* tmpfs leaves fallocated pages not uptodate and clears each one at its first
   * fault: a second mapping of the same file then finds them ready. */
  char *m = map_like_segment(fd, seg_bytes);
  b->touch_falloc = touch_pages(m, seg_bytes);
  munmap(m, seg_bytes);
  m = map_like_segment(fd, seg_bytes);
  b->touch_warm = touch_pages(m, seg_bytes);
  t0 = now();
  munmap(m, seg_bytes);
  close(fd); /* the last reference to an O_TMPFILE: its pages are freed here */
  b->unmap_free = now() - t0;

  fd = fresh_tmpfile(segdir);
  if (ftruncate(fd, (off_t)seg_bytes)) die("ftruncate", NULL);
  m = map_like_segment(fd, seg_bytes);
  b->fault_alloc = touch_pages(m, seg_bytes);
  munmap(m, seg_bytes);
  close(fd);

  t0 = now();
  memcpy(warm, src, bytes);
  b->copy = now() - t0;

  t0 = now();
  XXH128_hash_t h = XXH3_128bits(src, bytes);
  b->hash = now() - t0;
  bench_sink += h.low64 ^ ((const uint8_t *)warm)[bytes / 2]; /* keep the results */
}

/* The directory and size of the current version's segment file. */
static void segment_file(snap_store *s, char *dir, size_t dirlen, size_t *size) {
  snap_snapshot *snap;
  struct stat st;
  if (snap_pin(s, "bench", &snap, NULL)) die("pin", NULL);
  const char *path = snap_snapshot_path(snap);
  if (stat(path, &st)) die(path, NULL);
  snprintf(dir, dirlen, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  *size = (size_t)st.st_size;
  snap_unpin(snap);
}

static void print_part(const char *what, double t, double whole) {
  printf("  %-70s %8.1f ms %5.1f%%\n", what, t * 1e3, 100 * t / whole);
}

static void bench_publish(const char *label, const char *dir, const double *src,
                          uint64_t nrows, uint32_t ncols, int runs) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_CREATE, &s, &err)) die("store_open", &err);
  snap_store_set_keep(s, NULL, 1, NULL);
  size_t bytes = nrows * ncols * sizeof(double);
  double tp[16], tm[16];
  double tbeg[16], tfill[16], tcom[16]; /* publish's parts */
  double tfa[16], ttf[16], ttw[16], tz[16], tuf[16], tff[16], tcp[16], th[16]; /* alone */
  uint64_t v;
  char segdir[4096];
  size_t seg_bytes = 0;
  /* the pure copy's destination, faulted in once */
  char *warm = malloc(bytes);
  if (!warm) die("malloc", NULL);
  memset(warm, 0, bytes);
  for (int i = 0; i < runs; i++) {
    struct publish_parts pp;
    struct publish_baselines b;
    tm[i] = memcpy_fresh(src, bytes);
    tp[i] = publish_once(s, src, nrows, ncols, &v, &pp);
    if (!i) segment_file(s, segdir, sizeof segdir, &seg_bytes);
    publish_baselines_once(segdir, seg_bytes, src, warm, bytes, &b);
    tbeg[i] = pp.begin, tfill[i] = pp.fill, tcom[i] = pp.commit;
    tfa[i] = b.falloc, ttf[i] = b.touch_falloc, ttw[i] = b.touch_warm;
    tz[i] = b.touch_falloc - b.touch_warm;
    tuf[i] = b.unmap_free, tff[i] = b.fault_alloc, tcp[i] = b.copy, th[i] = b.hash;
  }
  free(warm);
  double mp = median(tp, runs), mm = median(tm, runs);
  printf(
      "publish %-28s %6.2f GB/s   memcpy into fresh malloc %6.2f GB/s   ratio %.2f"
      "  (target >= 0.8 on huge pages)\n",
      label, bytes / mp / 1e9, bytes / mm / 1e9, mm / mp);
  double falloc = median(tfa, runs), zero = median(tz, runs), faults = median(ttw, runs),
         copy = median(tcp, runs), hash = median(th, runs), alloc = falloc + zero;
  printf("  publish %s %.1f ms: its parts, and baselines alone (medians; %% of it)\n",
         label, mp * 1e3);
  print_part("begin  (reserve number, O_TMPFILE, posix_fallocate, map, manifest)",
             median(tbeg, runs), mp);
  print_part("fill   (memcpy into the mapped segment: page faults + copy)",
             median(tfill, runs), mp);
  print_part("commit (validate, seal = XXH3-128, unmap, flip, after-commit)",
             median(tcom, runs), mp);
  print_part("alone: posix_fallocate of a fresh O_TMPFILE (same size, same dir)", falloc,
             mp);
  print_part("alone: first touch of it (the kernel zeroes each page + faults)",
             median(ttf, runs), mp);
  print_part("alone: touch via a new mapping of it (the minor faults alone)", faults, mp);
  print_part("alone: munmap + close of it (unmap, free the pages)", median(tuf, runs),
             mp);
  print_part("alone: first touch of an ftruncate'd tmpfile (allocation by faulting)",
             median(tff, runs), mp);
  print_part("alone: memcpy between two warm buffers (the pure copy)", copy, mp);
  print_part("alone: XXH3-128 over a warm buffer (the pure hash)", hash, mp);
  printf(
      "  publish = %.1f%% allocation + %.1f%% faults + %.1f%% copy + %.1f%% hash"
      " + rest %.1f%%   (allocation = fallocate %.1f ms + zeroing at first touch"
      " %.1f ms)\n",
      100 * alloc / mp, 100 * faults / mp, 100 * copy / mp, 100 * hash / mp,
      100 * (1 - (alloc + faults + copy + hash) / mp), falloc * 1e3, zero * 1e3);
  snap_store_close(s);
}

/* -------------------------------------------------------------- attach */

static int attach_child(const char *dir) {
  double t0 = now();
  snap_store *s;
  snap_snapshot *snap;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_RDONLY, &s, &err)) die("attach open", &err);
  if (snap_pin(s, "bench", &snap, &err)) die("attach pin", &err);
  const double *v = snap_snapshot_column(snap, 0)->values;
  double t1 = now();
  volatile double x = v[0];
  (void)x;
  /* baseline: the least any reader must do, open + fstat + mmap of the file */
  double t2 = now();
  int fd = open(snap_snapshot_path(snap), O_RDONLY);
  struct stat st;
  fstat(fd, &st);
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  double t3 = now();
  munmap(m, (size_t)st.st_size);
  close(fd);
  printf("%.1f %.1f\n", (t1 - t0) * 1e6, (t3 - t2) * 1e6);
  snap_unpin(snap);
  snap_store_close(s);
  return 0;
}

static void bench_attach(const char *self, const char *dir, int runs) {
  double ta[32], tb[32];
  if (runs > 32) runs = 32;
  for (int i = 0; i < runs; i++) {
    int p[2];
    if (pipe(p)) die("pipe", NULL);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = {(char *)self, "--attach-child", (char *)dir, NULL};
    pid_t pid;
    if (posix_spawn(&pid, self, &fa, NULL, argv, environ)) die("spawn", NULL);
    close(p[1]);
    char buf[128] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (n <= 0 || sscanf(buf, "%lf %lf", &ta[i], &tb[i]) != 2) die("attach child", NULL);
    posix_spawn_file_actions_destroy(&fa);
  }
  double ma = median(ta, runs), mb = median(tb, runs);
  printf(
      "attach (fresh process: open store + pin + map) %8.1f us   raw open+mmap %6.1f us"
      "   ratio %.1f  (target <= 200 us)\n",
      ma, mb, ma / mb);
}

/* ------------------------------------------------------------ pin+unpin */

static void bench_pin(snap_store *s, int runs) {
  const long iters = 10 * 1000 * 1000;
  double tp[16], tb[16];
  atomic_long ctr = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = now();
    for (long i = 0; i < iters; i++) {
      snap_snapshot *snap;
      if (snap_pin(s, "bench", &snap, NULL)) die("pin", NULL);
      snap_unpin(snap);
    }
    tp[r] = (now() - t0) / iters * 1e9;
    t0 = now();
    for (long i = 0; i < iters; i++) {
      atomic_fetch_add(&ctr, 1);
      atomic_fetch_sub(&ctr, 1);
    }
    tb[r] = (now() - t0) / iters * 1e9;
  }
  double mp = median(tp, runs), mb = median(tb, runs);
  printf(
      "pin+unpin (unchanged current) %8.2f ns   atomic inc+dec pair %6.2f ns   ratio %.1f"
      "  (target <= 20 ns)\n",
      mp, mb, mp / mb);
}

/* ------------------------------------------------------- random reads */

/* Random reads of cells given as flat indexes into (ncols, nrows) arrays. */
static double reads_ns(const double *const *cols, const uint64_t *idx, long n,
                       uint64_t nrows, double *sink) {
  double t0 = now(), acc = 0;
  for (long i = 0; i < n; i++) acc += cols[idx[i] / nrows][idx[i] % nrows];
  *sink += acc;
  return (now() - t0) / n * 1e9;
}

static void bench_reads(snap_store *s, const double *priv, uint64_t nrows, uint32_t ncols,
                        int runs) {
  snap_snapshot *snap;
  if (snap_pin(s, "bench", &snap, NULL)) die("pin", NULL);
  const long n = 20 * 1000 * 1000;
  uint64_t *idx = malloc(n * sizeof *idx);
  uint64_t x = 88172645463325252ull;
  for (long i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    idx[i] = x % (nrows * ncols);
  }
  /* A private copy in 4 KiB pages, to separate page size from everything else. */
  size_t bytes = nrows * ncols * sizeof(double);
  double *small =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(small, bytes, MADV_NOHUGEPAGE);
  memcpy(small, priv, bytes);
  const double **api = malloc(ncols * sizeof *api), **thp = malloc(ncols * sizeof *thp),
               **p4k = malloc(ncols * sizeof *p4k);
  double sink = 0;
  for (uint32_t c = 0; c < ncols; c++) {
    api[c] = snap_snapshot_column(snap, c)->values; /* what a query does once */
    thp[c] = priv + (uint64_t)c * nrows;
    p4k[c] = small + (uint64_t)c * nrows;
    for (uint64_t r = 0; r < nrows; r += 512) sink += api[c][r]; /* first touch */
  }
  double ta[16], tb[16], tc[16], td[16];
  for (int r = 0; r < runs; r++) {
    ta[r] = reads_ns(api, idx, n, nrows, &sink);
    tb[r] = reads_ns(thp, idx, n, nrows, &sink);
    tc[r] = reads_ns(p4k, idx, n, nrows, &sink);
    /* the same reads, calling snap_snapshot_column() for every element */
    double t0 = now(), acc = 0;
    for (long i = 0; i < n; i++)
      acc += ((const double *)snap_snapshot_column(snap, (uint32_t)(idx[i] / nrows))
                  ->values)[idx[i] % nrows];
    sink += acc;
    td[r] = (now() - t0) / n * 1e9;
  }
  double ma = median(ta, runs), mb = median(tb, runs), mc = median(tc, runs),
         md = median(td, runs);
  printf(
      "random element read via API pointers %6.2f ns   private malloc (THP) %6.2f ns "
      "ratio %.3f   private 4 KiB pages %6.2f ns ratio %.3f  (target <= 1.05)\n",
      ma, mb, ma / mb, mc, ma / mc);
  printf("random element read, snap_snapshot_column() per element %6.2f ns  [sink %d]\n",
         md, sink > 0);
  munmap(small, bytes);
  free(api);
  free(thp);
  free(p4k);
  free(idx);
  snap_unpin(snap);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--attach-child")) return attach_child(argv[2]);
  double gib = 2;
  int runs = 5, huge = 1;
  const char *base = "/dev/shm";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--gib") && i + 1 < argc)
      gib = atof(argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
      base = argv[++i];
    else if (!strcmp(argv[i], "--no-huge"))
      huge = 0;
    else {
      fprintf(stderr, "usage: %s [--gib N] [--runs N] [--dir DIR] [--no-huge]\n",
              argv[0]);
      return 2;
    }
  }
  if (runs < 1 || runs > 15) runs = 5;
  const uint32_t ncols = 100;
  uint64_t nrows = (uint64_t)(gib * (1u << 30) / 8 / ncols);
  size_t bytes = nrows * ncols * sizeof(double);
  printf(
      "libsnap %s core benchmark: %llu rows x %u float64 = %.2f GiB, median of %d runs\n",
      snap_version_string(), (unsigned long long)nrows, ncols, bytes / 1073741824.0,
      runs);
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
  char thp[128] = "?";
  if (f && fgets(thp, sizeof thp, f)) thp[strcspn(thp, "\n")] = 0;
  if (f) fclose(f);
  printf("machine: %ld cores, shmem_enabled: %s\n", sysconf(_SC_NPROCESSORS_ONLN), thp);

  double *src = malloc(bytes);
  for (size_t i = 0; i < bytes / 8; i++) src[i] = (double)i;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/libsnap-bench-%d", base, getpid());
  bench_publish("(/dev/shm, 4 KiB pages)", dir, src, nrows, ncols, runs < 3 ? runs : 3);

  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, 0, &s, &err)) die("store_open", &err);
  bench_pin(s, runs);
  bench_attach(argv[0], dir, runs * 3);
  bench_reads(s, src, nrows, ncols, runs);
  snap_store_close(s);
  rm_rf(dir);

  if (huge) {
    char mnt[256];
    snprintf(mnt, sizeof mnt, "/tmp/libsnap-bench-huge-%d", getpid());
    mkdir(mnt, 0755);
    char opts[64];
    snprintf(opts, sizeof opts, "huge=always,size=%llum",
             (unsigned long long)(bytes * 2 / 1048576 + 64));
    if (mount("libsnap-bench", mnt, "tmpfs", 0, opts)) {
      printf("publish (huge-page tmpfs): skipped, mount failed: %s (needs root)\n",
             strerror(errno));
    } else {
      snprintf(dir, sizeof dir, "%s/store", mnt);
      bench_publish("(tmpfs huge=always)", dir, src, nrows, ncols, runs < 3 ? runs : 3);
      if (snap_store_open(dir, 0, &s, &err)) die("store_open", &err);
      bench_attach(argv[0], dir, runs * 3);
      bench_reads(s, src, nrows, ncols, runs);
      snap_store_close(s);
      umount2(mnt, MNT_DETACH);
    }
    rmdir(mnt);
  }
  free(src);
  return 0;
}
