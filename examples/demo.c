/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsnap demo: one writer publishes a float64 table and refreshes it while
 * several reader processes query it from shared memory.
 *
 * usage: libsnap_demo [--store DIR] [--readers N] [--rows N] [--cols N] [--refreshes N]
 *
 * Each version's cell (r, c) is a known function of (version, r, c), so every
 * reader checks what it reads: a torn or mixed version would be counted.
 */
#define _GNU_SOURCE
#include <libsnap/libsnap.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cell(uint64_t version, uint64_t r, uint32_t c) {
  return (double)version * 1e6 + (double)(r % 1000) + c * 0.5;
}

struct shared {
  _Atomic uint64_t seen[64]; /* version each reader last pinned */
  _Atomic uint64_t queries[64];
  _Atomic uint64_t errors[64];
  atomic_int stop;
};

static int publish(snap_store *s, uint64_t nrows, uint32_t ncols, uint64_t *version) {
  struct snap_field *f = calloc(ncols, sizeof *f);
  char(*names)[24] = calloc(ncols, 24);
  for (uint32_t c = 0; c < ncols; c++) {
    snprintf(names[c], 24, "price_%u", c);
    f[c] = (struct snap_field){.name = names[c], .type = SNAP_FLOAT64};
  }
  struct snap_schema schema = {nrows, ncols, f, NULL, 0};
  struct snap_error err;
  snap_publish *p;
  int rc = snap_publish_begin(s, "prices", &schema, &p, &err);
  if (!rc) {
    /* fill in place: the values are written once, straight into shared memory */
    uint64_t v = snap_publish_version(p);
    double *m = snap_publish_block(p, 0);
    for (uint32_t c = 0; c < ncols; c++)
      for (uint64_t r = 0; r < nrows; r++) m[(uint64_t)c * nrows + r] = cell(v, r, c);
    rc = snap_publish_commit(p, version, &err);
  }
  if (rc) fprintf(stderr, "demo: publish: %s\n", err.message);
  free(f);
  free(names);
  return rc;
}

static void reader(const char *dir, int id, struct shared *sh) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_RDONLY, &s, &err)) {
    fprintf(stderr, "reader %d: %s\n", id, err.message);
    _exit(1);
  }
  uint64_t x = (uint64_t)id * 2654435761u + 1;
  while (!atomic_load(&sh->stop)) {
    snap_snapshot *snap;
    if (snap_pin(s, "prices", &snap, &err)) {
      atomic_fetch_add(&sh->errors[id], 1);
      continue;
    }
    uint64_t v = snap_snapshot_version(snap), nrows = snap_snapshot_nrows(snap);
    uint32_t ncols = snap_snapshot_ncols(snap);
    /* a "query": 1000 random cells, each checked against the version */
    for (int q = 0; q < 1000; q++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint64_t r = x % nrows;
      uint32_t c = (uint32_t)((x >> 40) % ncols);
      const double *col = snap_snapshot_column(snap, c)->values;
      if (col[r] != cell(v, r, c)) atomic_fetch_add(&sh->errors[id], 1);
    }
    atomic_store(&sh->seen[id], v);
    atomic_fetch_add(&sh->queries[id], 1);
    snap_unpin(snap);
  }
  snap_store_close(s);
  _exit(0);
}

int main(int argc, char **argv) {
  const char *dir = "/dev/shm/libsnap/demo";
  int nreaders = 4, refreshes = 8;
  uint64_t nrows = 1000000;
  uint32_t ncols = 32;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--store") && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--readers") && i + 1 < argc)
      nreaders = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
      nrows = strtoull(argv[++i], 0, 10);
    else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
      ncols = (uint32_t)atoi(argv[++i]);
    else if (!strcmp(argv[i], "--refreshes") && i + 1 < argc)
      refreshes = atoi(argv[++i]);
    else {
      fprintf(stderr,
              "usage: %s [--store DIR] [--readers N] [--rows N] [--cols N] "
              "[--refreshes N]\n",
              argv[0]);
      return 2;
    }
  }
  if (nreaders < 1 || nreaders > 64 || !nrows || !ncols) {
    fprintf(stderr, "demo: readers must be 1..64, rows and cols > 0\n");
    return 2;
  }
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_CREATE, &s, &err)) {
    fprintf(stderr, "demo: %s\n", err.message);
    return 1;
  }
  double mb = (double)nrows * ncols * 8 / 1e6;
  printf("store %s: table \"prices\" %llu rows x %u float64 columns (%.0f MB)\n", dir,
         (unsigned long long)nrows, ncols, mb);
  uint64_t v;
  double t0 = now();
  if (publish(s, nrows, ncols, &v)) return 1;
  printf("published v%llu in %.0f ms\n", (unsigned long long)v, (now() - t0) * 1e3);

  struct shared *sh =
      mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[64];
  for (int i = 0; i < nreaders; i++)
    if ((pids[i] = fork()) == 0) reader(dir, i, sh);
  printf("%d reader processes querying (1000 checked random cells per query)\n",
         nreaders);
  int failed = 0;
  for (int k = 0; k < refreshes; k++) {
    t0 = now();
    if (publish(s, nrows, ncols, &v)) {
      failed = 1;
      break;
    }
    double t1 = now();
    /* wait until every reader has pinned the new version */
    for (int i = 0; i < nreaders; i++)
      while (atomic_load(&sh->seen[i]) < v) sched_yield();
    double t2 = now();
    struct snap_gc_stats st;
    snap_gc(s, "prices", 0, NULL, NULL, &st, NULL);
    uint64_t q = 0;
    for (int i = 0; i < nreaders; i++) q += atomic_load(&sh->queries[i]);
    printf(
        "refresh: v%llu published in %4.0f ms (%5.2f GB/s); all readers on it %5.2f ms "
        "later; %llu queries so far; %llu version(s) draining\n",
        (unsigned long long)v, (t1 - t0) * 1e3, mb / 1e3 / (t1 - t0), (t2 - t1) * 1e3,
        (unsigned long long)q, (unsigned long long)st.draining_versions);
  }
  atomic_store(&sh->stop, 1);
  uint64_t queries = 0, errors = 0;
  for (int i = 0; i < nreaders; i++) {
    int st;
    waitpid(pids[i], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) failed = 1;
    queries += sh->queries[i];
    errors += sh->errors[i];
  }
  struct snap_gc_stats st;
  snap_gc(s, NULL, 0, NULL, NULL, &st, NULL);
  struct snap_version_info *vi;
  size_t n;
  if (!snap_version_list(s, "prices", &vi, &n, NULL)) {
    printf("versions kept:");
    for (size_t i = 0; i < n; i++)
      printf(" v%llu (%s)", (unsigned long long)vi[i].version,
             snap_state_name(vi[i].state));
    printf("\n");
    snap_free(vi);
  }
  printf("%llu queries, %llu wrong reads, %llu draining after readers exit\n",
         (unsigned long long)queries, (unsigned long long)errors,
         (unsigned long long)st.draining_versions);
  snap_store_close(s);
  return failed || errors || st.draining_versions ? 1 : 0;
}
