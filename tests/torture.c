/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Torture run: many reader processes (several threads each) pin the current
 * version in a loop and check every cell, which is a known function of
 * (version, row, column), while a publisher flips versions as fast as it can
 * and a killer SIGKILLs random readers and the publisher at random moments,
 * restarting them. The refreshes mix full rewrites, one column replaced and a
 * row range rewritten, written in place or handed over from memory, so that
 * versions share chunks (format 2) and retired ones become lending.
 *
 * At the end: zero wrong reads (every version seen whole or not at all), no
 * version number committed twice, no orphan files, no pins left once every
 * reader is gone, and the private tmpfs holding the store back to what the
 * retained versions need (no leaked memory).
 *
 * usage: torture [--seconds S] [--readers N] [--threads T] [--rows R] [--cols C]
 *                [--seed X]
 * Default: a short run for the test suite; `--seconds 600` for a soak. Needs
 * root (mounts a private tmpfs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libsnap/libsnap.h"

#define MAX_READERS 64

struct shared {
  atomic_int stop;
  _Atomic uint64_t reads[MAX_READERS], wrong[MAX_READERS], errors[MAX_READERS];
};

static struct shared *sh;
static const char *store_dir;
static uint64_t nrows = 20000;
static uint32_t ncols = 8, nthreads = 3;

static double cell(uint64_t v, uint64_t r, uint32_t c) {
  return (double)(v * 1000003u + r * 131u + c);
}

/* Refreshes of mixed kinds (format 2 shares what did not change): version u
 * rewrites every cell when u % 4 == 0, a 1% row range of every column when
 * u % 4 == 2, and one column (u % ncols) otherwise. A cell of version v holds
 * cell(u, r, c) for the last u <= v that rewrote it, whichever versions were
 * committed in between (a killed publisher skips numbers). */
static uint64_t row_lo(uint64_t u) { return (u * 7919u) % (nrows - nrows / 100); }

static double expected(uint64_t v, uint64_t r, uint32_t c) {
  for (uint64_t u = v;; u--) {
    if (u % 4 == 0 || u == 1) return cell(u, r, c);
    if (u % 4 == 2) {
      if (r >= row_lo(u) && r < row_lo(u) + nrows / 100) return cell(u, r, c);
    } else if (u % ncols == c) {
      return cell(u, r, c);
    }
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- readers */

struct reader_arg {
  snap_store *store;
  int id;
};

static void *reader_thread(void *p) {
  struct reader_arg *a = p;
  while (!atomic_load(&sh->stop)) {
    snap_snapshot *s;
    if (snap_pin(a->store, "t", &s, NULL)) {
      atomic_fetch_add(&sh->errors[a->id], 1);
      continue;
    }
    uint64_t v = snap_snapshot_version(s);
    bool ok = snap_snapshot_nrows(s) == nrows && snap_snapshot_ncols(s) == ncols;
    for (uint32_t c = 0; ok && c < ncols; c++) {
      const double *col = snap_snapshot_column(s, c)->values;
      for (uint64_t r = 0; ok && r < nrows; r++) ok = col[r] == expected(v, r, c);
    }
    atomic_fetch_add(ok ? &sh->reads[a->id] : &sh->wrong[a->id], 1);
    snap_unpin(s);
  }
  return NULL;
}

static void reader_main(int id) {
  snap_store *s;
  if (snap_store_open(store_dir, SNAP_RDONLY, &s, NULL)) _exit(2);
  pthread_t th[16];
  struct reader_arg a = {s, id};
  for (uint32_t i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, reader_thread, &a);
  for (uint32_t i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
  snap_store_close(s);
  _exit(0);
}

/* -------------------------------------------------------------- publisher */

static void publisher_main(int out) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(store_dir, 0, &s, &err)) {
    fprintf(stderr, "torture publisher: %s\n", err.message);
    _exit(2);
  }
  struct snap_field *f = calloc(ncols, sizeof *f);
  char(*names)[16] = calloc(ncols, 16);
  for (uint32_t c = 0; c < ncols; c++) {
    snprintf(names[c], 16, "c%u", c);
    f[c] = (struct snap_field){.name = names[c], .type = SNAP_FLOAT64};
  }
  struct snap_schema schema = {nrows, ncols, f, NULL, 0};
  double *priv = malloc(nrows * ncols * sizeof *priv);
  if (!priv) _exit(2);
  while (!atomic_load(&sh->stop)) {
    snap_publish *p;
    if (snap_publish_begin(s, "t", &schema, &p, &err)) {
      fprintf(stderr, "torture publisher: %s\n", err.message);
      _exit(3);
    }
    uint64_t v = snap_publish_version(p);
    /* half the versions are written in place, half handed over from memory */
    bool copy = v % 2;
    double *m = copy ? priv : snap_publish_block(p, 0);
    if (!m) _exit(6);
    for (uint32_t c = 0; c < ncols; c++)
      for (uint64_t r = 0; r < nrows; r++) m[c * nrows + r] = expected(v, r, c);
    for (uint32_t c = 0; copy && c < ncols; c++)
      if (snap_publish_copy(p, c, SNAP_BUFFER_VALUES, priv + c * nrows, &err)) _exit(7);
    if (snap_publish_commit(p, &v, &err)) {
      fprintf(stderr, "torture publisher: %s\n", err.message);
      _exit(4);
    }
    if (write(out, &v, sizeof v) != sizeof v) _exit(5);
  }
  snap_store_close(s);
  _exit(0);
}

/* ----------------------------------------------------------------- killer */

static pid_t spawn_reader(int id) {
  pid_t pid = fork();
  if (pid == 0) reader_main(id);
  return pid;
}

static pid_t spawn_publisher(int *rfd) {
  int p[2];
  if (pipe(p)) abort();
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    publisher_main(p[1]);
  }
  close(p[1]);
  *rfd = p[0];
  return pid;
}

/* Read every version a publisher incarnation reported; check they increase. */
static int drain_versions(int fd, uint64_t *last, uint64_t *count) {
  uint64_t v;
  int bad = 0;
  ssize_t n;
  while ((n = read(fd, &v, sizeof v)) == sizeof v) {
    if (v <= *last) {
      fprintf(stderr, "torture: version %llu committed after %llu\n",
              (unsigned long long)v, (unsigned long long)*last);
      bad++;
    }
    *last = v;
    (*count)++;
  }
  close(fd);
  return bad;
}

static uint64_t fs_used(const char *dir) {
  struct statvfs sv;
  return statvfs(dir, &sv) ? 0 : (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
}

static int count_seg_files(const char *dir) {
  char path[4300];
  snprintf(path, sizeof path, "%s/segments/t", dir);
  DIR *d = opendir(path);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

int main(int argc, char **argv) {
  double seconds = 15;
  int nreaders = 10;
  unsigned seed = (unsigned)time(NULL);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--readers") && i + 1 < argc)
      nreaders = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      nthreads = (uint32_t)atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
      nrows = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
      ncols = (uint32_t)atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = (unsigned)atoi(argv[++i]);
    else {
      fprintf(stderr,
              "usage: %s [--seconds S] [--readers N] [--threads T] [--rows R] "
              "[--cols C] [--seed X]\n",
              argv[0]);
      return 2;
    }
  }
  if (nreaders < 1 || nreaders > MAX_READERS || nthreads < 1 || nthreads > 16) return 2;
  srand(seed);
  char mnt[] = "/dev/shm/snaptorture-XXXXXX";
  if (!mkdtemp(mnt) || mount("libsnap-torture", mnt, "tmpfs", 0, "size=1g")) {
    fprintf(stderr, "torture: mount tmpfs on %s: %s (needs root)\n", mnt,
            strerror(errno));
    return 1;
  }
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/store", mnt);
  store_dir = dir;
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_CREATE, &s, &err)) {
    fprintf(stderr, "torture: %s\n", err.message);
    return 1;
  }
  snap_store_close(s);
  printf("torture: %d readers x %u threads, %llu x %u table, %.0f s, seed %u\n", nreaders,
         nthreads, (unsigned long long)nrows, ncols, seconds, seed);
  fflush(stdout);

  uint64_t last = 0, committed = 0;
  int bad = 0, pubfd;
  pid_t pub = spawn_publisher(&pubfd);
  /* the first version, before readers start */
  uint64_t v;
  if (read(pubfd, &v, sizeof v) != sizeof v) {
    fprintf(stderr, "torture: publisher produced nothing\n");
    return 1;
  }
  last = v, committed = 1;
  pid_t readers[MAX_READERS];
  for (int i = 0; i < nreaders; i++) readers[i] = spawn_reader(i);
  long reader_kills = 0, publisher_kills = 0;
  double end = now() + seconds;
  while (now() < end) {
    /* random pacing of the killer: this is the workload, not synchronisation */
    struct timespec ts = {0, (long)(5 + rand() % 45) * 1000000L};
    nanosleep(&ts, NULL);
    if (rand() % 10 < 7) {
      int i = rand() % nreaders;
      kill(readers[i], SIGKILL);
      waitpid(readers[i], NULL, 0);
      readers[i] = spawn_reader(i);
      reader_kills++;
    } else {
      kill(pub, SIGKILL);
      waitpid(pub, NULL, 0);
      bad += drain_versions(pubfd, &last, &committed);
      pub = spawn_publisher(&pubfd);
      publisher_kills++;
    }
  }
  atomic_store(&sh->stop, 1);
  int st, failed_exits = 0;
  for (int i = 0; i < nreaders; i++) {
    waitpid(readers[i], &st, 0);
    failed_exits += !WIFEXITED(st) || WEXITSTATUS(st);
  }
  waitpid(pub, &st, 0);
  failed_exits += !WIFEXITED(st) || WEXITSTATUS(st);
  bad += drain_versions(pubfd, &last, &committed);

  uint64_t reads = 0, wrong = 0, errors = 0;
  for (int i = 0; i < nreaders; i++) {
    reads += sh->reads[i];
    wrong += sh->wrong[i];
    errors += sh->errors[i];
  }
  /* Everyone is gone: a writer handle sweeps, gc must free everything retired. */
  if (snap_store_open(dir, 0, &s, &err)) {
    fprintf(stderr, "torture: reopen: %s\n", err.message);
    return 1;
  }
  struct snap_gc_stats gcs;
  snap_gc(s, NULL, 0, NULL, NULL, &gcs, NULL);
  struct snap_version_info *vi;
  size_t nv = 0;
  uint64_t kept = 0;
  if (snap_version_list(s, "t", &vi, &nv, &err) == 0) {
    for (size_t i = 0; i < nv; i++) kept += vi[i].bytes;
    snap_free(vi);
  }
  int files = count_seg_files(dir);
  uint64_t used = fs_used(mnt);
  snap_store_close(s);
  bool mem_ok = used >= kept && used - kept < (4u << 20);
  printf(
      "torture: %llu reads checked, %llu wrong, %llu pin errors; %llu versions "
      "committed (last %llu); %ld reader kills, %ld publisher kills; after: %llu "
      "draining, %zu versions kept, %d segment files, tmpfs %llu kB for %llu kB of "
      "segments\n",
      (unsigned long long)reads, (unsigned long long)wrong, (unsigned long long)errors,
      (unsigned long long)committed, (unsigned long long)last, reader_kills,
      publisher_kills, (unsigned long long)gcs.draining_versions, nv, files,
      (unsigned long long)(used >> 10), (unsigned long long)(kept >> 10));
  umount2(mnt, MNT_DETACH);
  rmdir(mnt);
  int fail = wrong || errors || bad || failed_exits || gcs.draining_versions ||
             (size_t)files != nv || !mem_ok || reads == 0 || committed < 2;
  printf("%d passed, %d failed\n", fail ? 0 : 1, fail ? 1 : 0);
  return fail;
}
