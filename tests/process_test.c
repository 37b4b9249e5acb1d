/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Multi-process behaviour with real processes: readers in other processes see
 * every flip and never a torn version; SIGKILLed readers leave no pins;
 * publishers SIGKILLed at every crash point leave a valid store and, after
 * the next writer open, no orphan files and no leaked memory; forked
 * children keep using their parent's pins; a full tmpfs gives ENOSPC.
 *
 * Children report through exit codes and pipes, never through CUnit.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

static char *g_dir;

static void xwrite(int fd, const void *buf, size_t n) {
  if (write(fd, buf, n) != (ssize_t)n) _exit(90);
}
static int xread(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int wait_exit(pid_t pid) {
  int st;
  if (waitpid(pid, &st, 0) != pid) return -1;
  if (WIFSIGNALED(st)) return 1000 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

static snap_store *open_store(unsigned flags) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(g_dir, flags, &s, &err)) {
    fprintf(stderr, "open %s: %s\n", g_dir, err.message);
    return NULL;
  }
  return s;
}

/* ----------------------------------------------------- lockstep readers */

#define NREADERS 4
#define LOCKSTEP_VERSIONS 40

/* Reader: for every version number v sent by the parent, pin current and
 * answer 0 if it is exactly v with the content of v, else 1. */
static void lockstep_reader(int in, int out) {
  snap_store *s = open_store(SNAP_RDONLY);
  if (!s) _exit(2);
  uint64_t v;
  while (xread(in, &v, sizeof v) == 0 && v) {
    snap_snapshot *snap;
    uint8_t ok = 1;
    if (snap_pin(s, "t", &snap, NULL) == 0) {
      ok = !(snap_snapshot_version(snap) == v && tu_check_f64(snap) == (int64_t)v);
      snap_unpin(snap);
    }
    xwrite(out, &ok, 1);
  }
  snap_store_close(s);
  _exit(0);
}

static void test_readers_see_every_flip(void) {
  g_dir = tu_store_dir("lockstep");
  snap_store *w = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(w);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "t", 3000, 5, 1, &v), 0);
  int to[NREADERS][2], from[NREADERS][2];
  pid_t pids[NREADERS];
  for (int i = 0; i < NREADERS; i++) {
    CU_ASSERT_EQUAL_FATAL(pipe(to[i]), 0);
    CU_ASSERT_EQUAL_FATAL(pipe(from[i]), 0);
    pids[i] = fork();
    if (pids[i] == 0) {
      close(to[i][1]);
      close(from[i][0]);
      lockstep_reader(to[i][0], from[i][1]);
    }
    close(to[i][0]);
    close(from[i][1]);
  }
  int wrong = 0;
  for (uint64_t n = 1; n <= LOCKSTEP_VERSIONS; n++) {
    if (n > 1) CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "t", 3000, 5, n, &v), 0);
    CU_ASSERT_EQUAL(v, n);
    for (int i = 0; i < NREADERS; i++) xwrite(to[i][1], &v, sizeof v);
    for (int i = 0; i < NREADERS; i++) {
      uint8_t ok = 1;
      CU_ASSERT_EQUAL(xread(from[i][0], &ok, 1), 0);
      wrong += ok;
    }
  }
  CU_ASSERT_EQUAL(wrong, 0);
  uint64_t zero = 0;
  for (int i = 0; i < NREADERS; i++) {
    xwrite(to[i][1], &zero, sizeof zero);
    CU_ASSERT_EQUAL(wait_exit(pids[i]), 0);
    close(to[i][1]);
    close(from[i][0]);
  }
  snap_store_close(w);
  tu_store_remove(g_dir);
  free(g_dir);
}

/* ------------------------------------------------ free-running readers */

/* Reader: pin in a loop until it sees version @p last; exit 0 only if every
 * read was whole and versions never went backwards. */
static void loop_reader(uint64_t last) {
  snap_store *s = open_store(SNAP_RDONLY);
  if (!s) _exit(2);
  uint64_t prev = 0, reads = 0;
  for (;;) {
    snap_snapshot *snap;
    if (snap_pin(s, "t", &snap, NULL)) _exit(3);
    uint64_t v = snap_snapshot_version(snap);
    if (tu_check_f64(snap) != (int64_t)v) _exit(4);
    if (v < prev) _exit(5);
    prev = v;
    reads++;
    snap_unpin(snap);
    if (v == last) break;
  }
  snap_store_close(s);
  _exit(reads ? 0 : 6);
}

static void test_free_running_readers(void) {
  g_dir = tu_store_dir("loop");
  snap_store *w = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(w);
  uint64_t v, last = 150;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "t", 20000, 4, 1, &v), 0);
  pid_t pids[NREADERS];
  for (int i = 0; i < NREADERS; i++)
    if ((pids[i] = fork()) == 0) loop_reader(last);
  for (uint64_t n = 2; n <= last; n++)
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "t", 20000, 4, n, &v), 0);
  for (int i = 0; i < NREADERS; i++) CU_ASSERT_EQUAL(wait_exit(pids[i]), 0);
  /* every reader is gone: nothing may stay pinned, only keep-2 remain */
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 0);
  CU_ASSERT_EQUAL(tu_count_files(g_dir) - 3, 2);
  snap_store_close(w);
  tu_store_remove(g_dir);
  free(g_dir);
}

/* -------------------------------------------------- SIGKILLed readers */

static void test_killed_reader_leaves_no_pin(void) {
  g_dir = tu_store_dir("killreader");
  snap_store *w = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(w);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "d", 1000, 2, 1, &v), 0);
  int p[2];
  CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    snap_store *s = open_store(SNAP_RDONLY);
    snap_snapshot *snap;
    if (!s || snap_pin(s, "d", &snap, NULL)) _exit(2);
    xwrite(p[1], "p", 1);
    for (;;) pause(); /* holds the pin until killed */
  }
  close(p[1]);
  char c;
  CU_ASSERT_EQUAL_FATAL(xread(p[0], &c, 1), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "d", 1000, 2, 2, &v), 0);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(w, "d", 1000, 2, 3, &v), 0);
  pid_t holders[4];
  size_t n;
  CU_ASSERT_EQUAL(snap_version_holders(w, "d", 1, holders, 4, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 1);
  CU_ASSERT_EQUAL(holders[0], pid);
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 1);
  kill(pid, SIGKILL);
  CU_ASSERT_EQUAL(wait_exit(pid), 1000 + SIGKILL);
  CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.freed_versions, 1);
  CU_ASSERT_EQUAL(st.draining_versions, 0);
  CU_ASSERT_EQUAL(tu_count_files(g_dir) - 3, 2);
  close(p[0]);
  snap_store_close(w);
  tu_store_remove(g_dir);
  free(g_dir);
}

/* ------------------------------------------- SIGKILLed publishers */

/* tmpfs usage in bytes, for leak checks on a private mount. */
static uint64_t fs_used(const char *dir) {
  struct statvfs sv;
  if (statvfs(dir, &sv)) return 0;
  return (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
}

static uint64_t seg_bytes_and_check(const char *dir, snap_store *s, int *orphans) {
  /* every .seg file must have a record, every record a file */
  uint64_t bytes = 0;
  *orphans = 0;
  struct snap_dataset_info *di;
  size_t nd;
  if (snap_dataset_list(s, &di, &nd, NULL)) return 0;
  char path[4096];
  for (size_t d = 0; d < nd; d++) {
    struct snap_version_info *vi;
    size_t nv;
    if (snap_version_list(s, di[d].name, &vi, &nv, NULL)) continue;
    for (size_t i = 0; i < nv; i++) {
      struct stat st;
      snprintf(path, sizeof path, "%s/segments/%s/%llu.seg", dir, di[d].name,
               (unsigned long long)vi[i].version);
      if (stat(path, &st))
        (*orphans)++; /* a record without a file */
      else
        bytes += (uint64_t)st.st_blocks * 512;
    }
    snap_free(vi);
    snprintf(path, sizeof path, "%s/segments/%s", dir, di[d].name);
    DIR *dd = opendir(path);
    struct dirent *e;
    int files = 0;
    while (dd && (e = readdir(dd)))
      if (e->d_name[0] != '.') files++;
    if (dd) closedir(dd);
    *orphans += files - (int)nv;
  }
  snap_free(di);
  return bytes;
}

#define CRASH_ROWS 100000
#define CRASH_COLS 4

/* Child: publish versions while armed to die at the Nth crash point; each
 * committed version is reported through @p out. Also crash points in the
 * fill itself, one per column. */
static void crashing_publisher(int n, int out) {
  snap_store *s = open_store(0);
  if (!s) _exit(2);
  snap__crash_arm(n);
  for (int k = 0; k < 3; k++) {
    struct snap_field f[CRASH_COLS] = {{.name = "a", .type = SNAP_FLOAT64},
                                       {.name = "b", .type = SNAP_FLOAT64},
                                       {.name = "c", .type = SNAP_FLOAT64},
                                       {.name = "d", .type = SNAP_FLOAT64}};
    snap_publish *p;
    struct snap_schema schema = {CRASH_ROWS, CRASH_COLS, f, NULL, 0};
    if (snap_publish_begin(s, "d", &schema, &p, NULL)) _exit(3);
    uint64_t seed = snap_publish_version(p); /* content is a function of the version */
    double *m = snap_publish_block(p, 0);
    for (uint32_t c = 0; c < CRASH_COLS; c++) {
      for (uint64_t r = 0; r < CRASH_ROWS; r++)
        m[c * CRASH_ROWS + r] = tu_cell(seed, r, c);
      snap__crash_point();
    }
    uint64_t v;
    if (snap_publish_commit(p, &v, NULL)) _exit(4);
    xwrite(out, &v, sizeof v);
  }
  snap_gc(s, NULL, 0, NULL, NULL, NULL, NULL);
  int hits = snap__crash_points_hit();
  xwrite(out, &(uint64_t){0}, sizeof(uint64_t));
  xwrite(out, &hits, sizeof hits);
  snap_store_close(s);
  _exit(0);
}

static bool check_current(snap_store *s, uint64_t *cur) {
  snap_snapshot *snap;
  *cur = 0;
  if (snap_pin(s, "d", &snap, NULL)) return false;
  *cur = snap_snapshot_version(snap);
  uint64_t nrows = snap_snapshot_nrows(snap);
  bool ok = nrows == CRASH_ROWS && snap_snapshot_ncols(snap) == CRASH_COLS;
  for (uint32_t c = 0; ok && c < CRASH_COLS; c++) {
    const double *v = snap_snapshot_column(snap, c)->values;
    for (uint64_t r = 0; ok && r < nrows; r++) ok = v[r] == tu_cell(*cur, r, c);
  }
  ok = ok && snap_snapshot_verify(snap, NULL) == 0;
  snap_unpin(snap);
  return ok;
}

static char *mount_tmpfs(const char *tag, const char *size) {
  char *dir = tu_store_dir(tag);
  char opts[64];
  snprintf(opts, sizeof opts, "size=%s,mode=0755", size);
  if (mount("libsnap-test", dir, "tmpfs", 0, opts)) {
    fprintf(stderr, "\n  mount tmpfs on %s: %s (these tests need root)\n", dir,
            strerror(errno));
    rmdir(dir);
    free(dir);
    return NULL;
  }
  return dir;
}

static void unmount_tmpfs(char *dir) {
  umount2(dir, MNT_DETACH);
  rmdir(dir);
  free(dir);
}

static void test_killed_publisher(void) {
  char *mnt = mount_tmpfs("crash", "256m");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mnt);
  if (asprintf(&g_dir, "%s/store", mnt) < 0) abort();
  snap_store *w = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(w);
  /* A first version whose content follows the crash children's rule. */
  int p0[2];
  CU_ASSERT_EQUAL_FATAL(pipe(p0), 0);
  pid_t first = fork();
  if (first == 0) crashing_publisher(0, p0[1]); /* unarmed: three clean publishes */
  close(p0[1]);
  uint64_t v0;
  while (xread(p0[0], &v0, sizeof v0) == 0 && v0) {
  }
  int ignored;
  CU_ASSERT_EQUAL(xread(p0[0], &ignored, sizeof ignored), 0);
  close(p0[0]);
  CU_ASSERT_EQUAL_FATAL(wait_exit(first), 0);
  snap_store_close(w);
  /* A long-lived reader: its cached view must follow every change, including
   * one whose publisher died between commit and the flips bump. */
  snap_store *reader = open_store(SNAP_RDONLY);
  CU_ASSERT_PTR_NOT_NULL_FATAL(reader);
  uint64_t last_committed = 3, prev_current = 3;
  int kills = 0, total_points = 0, bad = 0;
  for (int n = 1; n < 200; n++) {
    int p[2];
    CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      crashing_publisher(n, p[1]);
    }
    close(p[1]);
    uint64_t v;
    bool finished = false;
    while (xread(p[0], &v, sizeof v) == 0) {
      if (v == 0) {
        CU_ASSERT_EQUAL(xread(p[0], &total_points, sizeof total_points), 0);
        finished = true;
        break;
      }
      CU_ASSERT(v > last_committed); /* numbers increase, never reused */
      last_committed = v;
    }
    close(p[0]);
    int st = wait_exit(pid);
    /* The state after the crash, through a fresh writer handle (which
     * sweeps orphans at its first write operation). */
    snap_store *s = open_store(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(snap_gc(s, NULL, 0, NULL, NULL, NULL, NULL), 0);
    uint64_t cur;
    if (last_committed) {
      bool ok = check_current(s, &cur);
      /* current is whole, at least the last one reported committed (a crash
       * after commit but before the report may leave a newer one), and
       * never goes back */
      if (!ok || cur < last_committed || cur < prev_current) {
        bad++;
        fprintf(stderr, "\n  crash point %d: current %llu ok=%d last committed %llu", n,
                (unsigned long long)cur, ok, (unsigned long long)last_committed);
      }
      prev_current = cur;
      snap_snapshot *rs;
      CU_ASSERT_EQUAL(snap_pin(reader, "d", &rs, NULL), 0);
      if (rs) {
        CU_ASSERT_EQUAL(snap_snapshot_version(rs), cur);
        snap_unpin(rs);
      }
    }
    int orphans;
    uint64_t bytes = seg_bytes_and_check(g_dir, s, &orphans);
    CU_ASSERT_EQUAL(orphans, 0);
    /* no leaked memory: the tmpfs holds the segments plus the control files */
    uint64_t used = fs_used(mnt);
    CU_ASSERT(used >= bytes && used - bytes < (2u << 20));
    if (!(used >= bytes && used - bytes < (2u << 20)))
      fprintf(stderr, "\n  crash point %d: tmpfs used %llu, segments %llu", n,
              (unsigned long long)used, (unsigned long long)bytes);
    snap_store_close(s);
    if (finished) {
      CU_ASSERT_EQUAL(st, 0);
      break;
    }
    CU_ASSERT_EQUAL(st, 1000 + SIGKILL);
    kills++;
  }
  snap_store_close(reader);
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT(kills >= 50);
  CU_ASSERT_EQUAL(kills, total_points);
  printf("\n  %d crash points, each killed once, store valid after every one ", kills);
  free(g_dir);
  unmount_tmpfs(mnt);
}

/* ------------------------------------------------------------- fork */

static void test_fork_children(void) {
  g_dir = tu_store_dir("fork");
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 5000, 3, 1, &v), 0);
  snap_snapshot *held;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "d", &held, NULL), 0);
  int go[2], ready[2];
  CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
  CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* the child keeps using its parent's pin, after the parent dropped it */
    close(go[1]);
    close(ready[0]);
    char c;
    if (xread(go[0], &c, 1)) _exit(2);
    if (tu_check_f64(held) != 1) _exit(3);
    /* it can pin new versions (its own control handle, its own RCU state) */
    snap_snapshot *cur;
    if (snap_pin(s, "d", &cur, NULL) || snap_snapshot_version(cur) != 2 ||
        tu_check_f64(cur) != 2)
      _exit(4);
    /* and publish */
    uint64_t cv;
    if (tu_publish_f64(s, "d", 5000, 3, 3, &cv) || cv != 3) _exit(5);
    snap_unpin(cur);
    xwrite(ready[1], "r", 1);
    if (xread(go[0], &c, 1)) _exit(6); /* parent checks v1 is still pinned */
    snap_unpin(held);
    snap_store_close(s);
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  snap_unpin(held);
  snap_store_trim(s);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 5000, 3, 2, &v), 0);
  xwrite(go[1], "g", 1);
  char c;
  CU_ASSERT_EQUAL_FATAL(xread(ready[0], &c, 1), 0);
  /* v1 is out of keep-2 now (v3 current, v2 retained), but the child still
   * holds the pin it inherited */
  struct snap_gc_stats st;
  CU_ASSERT_EQUAL(snap_gc(s, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 1);
  xwrite(go[1], "g", 1);
  CU_ASSERT_EQUAL(wait_exit(pid), 0);
  CU_ASSERT_EQUAL(snap_gc(s, NULL, 0, NULL, NULL, &st, NULL), 0);
  CU_ASSERT_EQUAL(st.draining_versions, 0);
  CU_ASSERT_EQUAL(st.freed_versions, 1);
  snap_snapshot *cur;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "d", &cur, NULL), 0);
  CU_ASSERT_EQUAL(snap_snapshot_version(cur), 3);
  CU_ASSERT_EQUAL(tu_check_f64(cur), 3);
  snap_unpin(cur);
  close(go[1]);
  close(ready[0]);
  snap_store_close(s);
  tu_store_remove(g_dir);
  free(g_dir);
}

/* ------------------------------------------------------------- ENOSPC */

static void test_full_tmpfs(void) {
  char *mnt = mount_tmpfs("enospc", "8m");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mnt);
  if (asprintf(&g_dir, "%s/store", mnt) < 0) abort();
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 100000, 2, 1, &v), 0); /* 1.6 MB */
  uint64_t before = fs_used(mnt);
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {2000000, 1, &f, NULL, 0}; /* 16 MB: does not fit */
  snap_publish *p;
  struct snap_error err;
  /* format 2 allocates a buffer when it is handed out for writing (or its
   * chunks at commit): that is where a full tmpfs says so, not later */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "d", &schema, &p, &err), 0);
  struct snap_fill fill;
  CU_ASSERT_EQUAL(snap_publish_fill(p, 0, &fill, &err), -ENOSPC);
  CU_ASSERT_PTR_NULL(fill.values);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "segments/d/2.seg"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "No space left"));
  snap_publish_abort(p);
  /* the same through the copy path: commit fails, nothing is published */
  double *src = calloc(2000000, sizeof *src);
  CU_ASSERT_PTR_NOT_NULL_FATAL(src);
  for (size_t i = 0; i < 2000000; i++) src[i] = (double)i;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "d", &schema, &p, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_copy(p, 0, SNAP_BUFFER_VALUES, src, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_commit(p, &v, &err), -ENOSPC);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "segments/d/"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "No space left"));
  free(src);
  CU_ASSERT_EQUAL(fs_used(mnt), before); /* nothing held back */
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(s, "d", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, 1);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "d", &snap, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(snap), 1);
  snap_unpin(snap);
  /* a version that fits still publishes afterwards */
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 100000, 2, 3, &v), 0);
  CU_ASSERT_EQUAL(v, 4);
  snap_store_close(s);
  free(g_dir);
  unmount_tmpfs(mnt);
}

/* ENOSPC on a dataset's first publish leaves no dataset behind: two failures
 * on a store limited to 2 datasets must not block it. */
static void test_full_tmpfs_first_publish(void) {
  char *mnt = mount_tmpfs("enospc1", "8m");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mnt);
  if (asprintf(&g_dir, "%s/store", mnt) < 0) abort();
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(s, 2, NULL), 0);
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {2000000, 1, &f, NULL, 0}; /* 16 MB: does not fit */
  snap_publish *p;
  struct snap_error err;
  struct snap_fill fill;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "big1", &schema, &p, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_fill(p, 0, &fill, &err), -ENOSPC);
  snap_publish_abort(p);
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "big2", &schema, &p, &err), 0);
  CU_ASSERT_EQUAL(snap_publish_fill(p, 0, &fill, &err), -ENOSPC);
  snap_publish_abort(p);
  uint32_t max;
  uint64_t n = 9, v;
  CU_ASSERT_EQUAL(snap_store_max_datasets(s, &max, &n, NULL), 0);
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(snap_current_version(s, "big1", &v, &err), SNAP_ENOTFOUND);
  CU_ASSERT_EQUAL(tu_publish_f64(s, "a", 1000, 1, 1, &v), 0);
  CU_ASSERT_EQUAL(tu_publish_f64(s, "b", 1000, 1, 1, &v), 0);
  CU_ASSERT_EQUAL(v, 1);
  snap_store_close(s);
  free(g_dir);
  unmount_tmpfs(mnt);
}

/* Two processes publish the same new dataset at once; the one that gives up
 * first (abort, or SIGKILL) must not remove the record under the other. */
static void test_concurrent_first_publish(void) {
  g_dir = tu_store_dir("firstpub");
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_EQUAL(snap_store_set_max_datasets(s, 1, NULL), 0);
  int up[2], down[2];
  CU_ASSERT_EQUAL_FATAL(pipe(up), 0);
  CU_ASSERT_EQUAL_FATAL(pipe(down), 0);
  pid_t pid = fork();
  if (pid == 0) { /* begins "n", says so, waits, commits */
    snap_store *c = open_store(0);
    struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
    struct snap_schema schema = {1, 1, &f, NULL, 0};
    snap_publish *p;
    char ch = 'b';
    uint64_t v = 0;
    if (!c || snap_publish_begin(c, "n", &schema, &p, NULL)) _exit(2);
    if (write(up[1], &ch, 1) != 1 || read(down[0], &ch, 1) != 1) _exit(3);
    if (snap_publish_commit(p, &v, NULL)) _exit(4);
    _exit(v == 1 ? 0 : 5);
  }
  char ch;
  CU_ASSERT_FATAL(read(up[0], &ch, 1) == 1);
  struct snap_field f = {.name = "x", .type = SNAP_FLOAT64};
  struct snap_schema schema = {1, 1, &f, NULL, 0};
  snap_publish *p;
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "n", &schema, &p, NULL), 0);
  CU_ASSERT_EQUAL(snap_publish_version(p), 2);
  snap_publish_abort(p); /* the child's publish still holds the dataset */
  uint64_t count = 0;
  uint32_t max;
  CU_ASSERT_EQUAL(snap_store_max_datasets(s, &max, &count, NULL), 0);
  CU_ASSERT_EQUAL(count, 1);
  CU_ASSERT_FATAL(write(down[1], &ch, 1) == 1);
  CU_ASSERT_EQUAL(wait_exit(pid), 0);
  uint64_t cur;
  CU_ASSERT_EQUAL(snap_current_version(s, "n", &cur, NULL), 0);
  CU_ASSERT_EQUAL(cur, 1);
  /* a first publisher SIGKILLed mid-publish leaves the record (its lock goes
   * with it): the next failed first publish of the name cleans it up */
  CU_ASSERT_EQUAL(snap_dataset_drop(s, "n", 0, NULL), 0);
  pid = fork();
  if (pid == 0) {
    snap_store *c = open_store(0);
    if (!c || snap_publish_begin(c, "k", &schema, &p, NULL)) _exit(2);
    kill(getpid(), SIGKILL);
  }
  CU_ASSERT_EQUAL(wait_exit(pid), 1000 + SIGKILL);
  CU_ASSERT_EQUAL(snap_store_max_datasets(s, &max, &count, NULL), 0);
  CU_ASSERT_EQUAL(count, 1); /* "k", with no version */
  CU_ASSERT_EQUAL_FATAL(snap_publish_begin(s, "k", &schema, &p, NULL), 0);
  snap_publish_abort(p);
  CU_ASSERT_EQUAL(snap_store_max_datasets(s, &max, &count, NULL), 0);
  CU_ASSERT_EQUAL(count, 0);
  close(up[0]), close(up[1]), close(down[0]), close(down[1]);
  snap_store_close(s);
  tu_store_remove(g_dir);
  free(g_dir);
}

/* A dropper SIGKILLed at each of drop's crash points: afterwards the dataset
 * is either whole (both versions readable) or gone (no segment file left once
 * a writable open has swept), and a new dataset of the name never reuses a
 * version number. */
static void test_killed_dropper(void) {
  for (int n = 1;; n++) {
    g_dir = tu_store_dir("killdrop");
    snap_store *s = open_store(SNAP_CREATE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    uint64_t v;
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 100, 1, 1, &v), 0);
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 100, 1, 2, &v), 0);
    snap_store_close(s);
    pid_t pid = fork();
    if (pid == 0) {
      snap_store *c = open_store(0);
      if (!c) _exit(3);
      snap__crash_arm(n);
      _exit(snap_dataset_drop(c, "d", 0, NULL) ? 2 : 0);
    }
    int st = wait_exit(pid);
    CU_ASSERT(st == 0 || st == 1000 + SIGKILL);
    s = open_store(0); /* writable: the orphan sweep runs at the first write */
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    snap_gc(s, NULL, 0, NULL, NULL, NULL, NULL);
    struct snap_version_info *vi = NULL;
    size_t nv = 0;
    int rc = snap_version_list(s, "d", &vi, &nv, NULL);
    if (rc == 0) { /* the drop did not happen: all there */
      CU_ASSERT_EQUAL(nv, 2);
      snap_snapshot *snap;
      CU_ASSERT_EQUAL(snap_pin_version(s, "d", 1, &snap, NULL), 0);
      if (snap) CU_ASSERT_EQUAL(tu_check_f64(snap), 1);
      snap_unpin(snap);
      CU_ASSERT_EQUAL(snap_dataset_drop(s, "d", 0, NULL), 0);
    } else {
      CU_ASSERT_EQUAL(rc, SNAP_ENOTFOUND);
      CU_ASSERT_EQUAL(tu_count_files(g_dir) - 3, 1); /* only the tombstone */
    }
    snap_free(vi);
    CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 100, 1, 3, &v), 0);
    CU_ASSERT_EQUAL(v, 3);
    snap_store_close(s);
    tu_store_remove(g_dir);
    free(g_dir);
    if (st == 0) break; /* ran to the end: every crash point was tried */
    CU_ASSERT_FATAL(n < 10);
  }
}

/* ------------------------------------------------------ huge pages */

/* kB of ShmemPmdMapped in the mapping that contains @p addr (from smaps). */
static long pmd_mapped_kb(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "re");
  char line[512];
  bool inside = false;
  long kb = -1;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
        strchr(line, '-') < strchr(line, ' ')) {
      inside = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
      continue;
    }
    if (inside && sscanf(line, "ShmemPmdMapped: %ld kB", &kb) == 1) break;
  }
  if (f) fclose(f);
  return kb;
}

static void test_huge_page_mapping(void) {
  char *mnt = mount_tmpfs("huge", "64m");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mnt);
  /* the mount option is what matters; without it this kernel gives 4 KiB */
  umount2(mnt, MNT_DETACH);
  CU_ASSERT_EQUAL_FATAL(mount("libsnap-test", mnt, "tmpfs", 0, "size=64m,huge=always"),
                        0);
  if (asprintf(&g_dir, "%s/store", mnt) < 0) abort();
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 1 << 20, 2, 1, &v), 0); /* 16 MiB */
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "d", &snap, NULL), 0);
  size_t len;
  const volatile uint8_t *base = snap_snapshot_segment(snap, &len);
  CU_ASSERT_EQUAL((uintptr_t)base % (2u << 20), 0);
  for (size_t off = 0; off < len; off += 4096) (void)base[off];
  long kb = pmd_mapped_kb((const void *)base);
  printf("\n  ShmemPmdMapped %ld kB of a %zu kB segment ", kb, len / 1024);
  CU_ASSERT(kb >= 8 * 1024); /* most of it in 2 MiB PMD mappings */
  CU_ASSERT_EQUAL(tu_check_f64(snap), 1);
  snap_unpin(snap);
  snap_store_close(s);
  free(g_dir);
  unmount_tmpfs(mnt);
}

/* ------------------------------------------------------------- faults */

static void test_control_file_deleted_or_corrupted(void) {
  g_dir = tu_store_dir("control");
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 100, 1, 1, &v), 0);
  snap_store_close(s);
  char path[4096];
  snprintf(path, sizeof path, "%s/control.mdb", g_dir);
  /* corrupted: the first page overwritten with garbage */
  int fd = open(path, O_WRONLY);
  char junk[4096];
  memset(junk, 0x5a, sizeof junk);
  CU_ASSERT_EQUAL(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
  close(fd);
  struct snap_error err;
  int rc = snap_store_open(g_dir, 0, &s, &err);
  CU_ASSERT(rc == SNAP_ECONTROL || rc == SNAP_ENOTFOUND || rc == SNAP_EFORMAT);
  CU_ASSERT_PTR_NULL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "control.mdb"));
  /* deleted */
  unlink(path);
  /* deleted next to segments: refused, naming the repair (not a missing store) */
  CU_ASSERT_EQUAL(snap_store_open(g_dir, 0, &s, &err), SNAP_ECONTROL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "control.mdb"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "doctor --rebuild"));
  tu_store_remove(g_dir);
  free(g_dir);
}

static void test_fd_limit_while_pinning(void) {
  g_dir = tu_store_dir("emfile");
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_EQUAL(snap_store_set_keep(s, NULL, 64, NULL), 0);
  uint64_t v;
  for (int i = 1; i <= 40; i++)
    CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 10, 1, i, &v), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* a child with few descriptors: pins fail cleanly once they run out */
    struct rlimit rl = {24, 24};
    setrlimit(RLIMIT_NOFILE, &rl);
    snap_snapshot *pins[40];
    int n = 0, emfile = 0;
    struct snap_error err;
    for (int i = 1; i <= 40; i++) {
      int rc = snap_pin_version(s, "d", (uint64_t)i, &pins[n], &err);
      if (rc == 0) {
        if (tu_check_f64(pins[n]) != i) _exit(3);
        n++;
      } else if (rc == -EMFILE && strstr(err.message, "segments/d/")) {
        emfile++;
      } else {
        fprintf(stderr, "pin %d: %d %s\n", i, rc, err.message);
        _exit(4);
      }
    }
    for (int i = 0; i < n; i++) snap_unpin(pins[i]);
    /* after letting go, pinning works again */
    snap_snapshot *again;
    if (snap_pin(s, "d", &again, NULL) || tu_check_f64(again) != 40) _exit(5);
    snap_unpin(again);
    _exit(n > 0 && emfile > 0 ? 0 : 6);
  }
  CU_ASSERT_EQUAL(wait_exit(pid), 0);
  snap_store_close(s);
  tu_store_remove(g_dir);
  free(g_dir);
}

static atomic_int g_stop_pinning;
static snap_store *g_pin_store;

static void *pin_loop(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop_pinning)) {
    snap_snapshot *s;
    if (snap_pin(g_pin_store, "d", &s, NULL) == 0) snap_unpin(s);
    snap_store_trim(g_pin_store); /* slow paths too: lock, LMDB, call_rcu */
  }
  return NULL;
}

static void test_fork_while_another_thread_pins(void) {
  g_dir = tu_store_dir("forkpin");
  g_pin_store = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_pin_store);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_pin_store, "d", 1000, 2, 1, &v), 0);
  atomic_store(&g_stop_pinning, 0);
  pthread_t th;
  pthread_create(&th, NULL, pin_loop, NULL);
  int ok = 0;
  for (int i = 0; i < 40; i++) {
    CU_ASSERT_EQUAL(tu_publish_f64(g_pin_store, "d", 1000, 2, (uint64_t)i + 2, &v), 0);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20); /* a deadlocked child would hang the suite: fail it instead */
      snap_snapshot *s;
      if (snap_pin(g_pin_store, "d", &s, NULL)) _exit(2);
      int64_t seed = tu_check_f64(s);
      snap_unpin(s);
      if (tu_publish_f64(g_pin_store, "d", 10, 1, 999, &v)) _exit(3);
      _exit(seed > 0 ? 0 : 4);
    }
    ok += wait_exit(pid) == 0;
  }
  atomic_store(&g_stop_pinning, 1);
  pthread_join(th, NULL);
  CU_ASSERT_EQUAL(ok, 40);
  snap_store_close(g_pin_store);
  tu_store_remove(g_dir);
  free(g_dir);
}

static void test_control_map_full(void) {
  g_dir = tu_store_dir("mapfull");
  setenv("LIBSNAP_CONTROL_MAP_MIB", "1", 1);
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "keep", 100, 1, 7, &v), 0);
  /* many datasets with long names until the 1 MiB map is full */
  char name[SNAP_DATASET_NAME_MAX + 1];
  struct snap_error err;
  int rc = 0, made = 0;
  for (int i = 0; i < 100000 && !rc; i++) {
    snprintf(name, sizeof name, "%0240d", i);
    struct snap_schema schema = {.nrows = 1};
    snap_publish *p;
    rc = snap_publish_begin(s, name, &schema, &p, &err);
    if (!rc) {
      rc = snap_publish_commit(p, NULL, &err);
      made += !rc;
    }
  }
  CU_ASSERT_EQUAL(rc, SNAP_EMAPFULL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "LIBSNAP_CONTROL_MAP_MIB"));
  CU_ASSERT(made > 100);
  /* what was there is intact and still readable */
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "keep", &snap, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(snap), 7);
  snap_unpin(snap);
  snap_store_close(s);
  unsetenv("LIBSNAP_CONTROL_MAP_MIB");
  tu_store_remove(g_dir);
  free(g_dir);
}

/* ENOSPC at every step of a publish: at crash point N the tmpfs is filled to
 * the last block, and the publish goes on from there. */
static char *g_fill_path;

static void fill_tmpfs(void) {
  int fd = open(g_fill_path, O_CREAT | O_WRONLY, 0600);
  struct statvfs sv;
  if (fd < 0 || fstatvfs(fd, &sv)) return;
  off_t left = (off_t)sv.f_bavail * (off_t)sv.f_frsize;
  while (left > 4096 && posix_fallocate(fd, 0, left)) left -= 4096;
  close(fd);
}

static void test_enospc_at_every_step(void) {
  char *mnt = mount_tmpfs("enospc-steps", "32m");
  CU_ASSERT_PTR_NOT_NULL_FATAL(mnt);
  if (asprintf(&g_dir, "%s/store", mnt) < 0 ||
      asprintf(&g_fill_path, "%s/filler", mnt) < 0)
    abort();
  snap_store *s = open_store(SNAP_CREATE);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v, current = 0;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 20000, 4, 1, &v), 0);
  current = v;
  int failed = 0, succeeded = 0;
  for (int n = 1; n <= 20; n++) {
    snap__fault_arm(n, fill_tmpfs);
    struct snap_error err = {0};
    uint64_t nv = 0;
    int rc = 0;
    struct snap_field f[4] = {{.name = "c0", .type = SNAP_FLOAT64},
                              {.name = "c1", .type = SNAP_FLOAT64},
                              {.name = "c2", .type = SNAP_FLOAT64},
                              {.name = "c3", .type = SNAP_FLOAT64}};
    uint64_t seed = 1000 + (uint64_t)n;
    struct snap_schema schema = {20000, 4, f, &seed, sizeof seed};
    snap_publish *p;
    rc = snap_publish_begin(s, "d", &schema, &p, &err);
    if (!rc) {
      double *m = snap_publish_block(p, 0);
      if (!m) { /* allocating the block failed (format 2 allocates it here) */
        CU_ASSERT_EQUAL(errno, ENOSPC);
        rc = -errno;
        snprintf(err.message, sizeof err.message, "block: %s", strerror(errno));
        snap_publish_abort(p);
      } else {
        for (uint32_t c = 0; c < 4; c++)
          for (uint64_t r = 0; r < 20000; r++) m[c * 20000 + r] = tu_cell(seed, r, c);
        rc = snap_publish_commit(p, &nv, &err);
      }
    }
    snap__crash_arm(0);
    unlink(g_fill_path);
    if (rc) {
      failed++;
      /* a clean error naming what failed; the old version stays current */
      CU_ASSERT(err.message[0] != 0);
    } else {
      succeeded++;
      current = nv;
    }
    snap_store *w = open_store(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(snap_gc(w, NULL, 0, NULL, NULL, NULL, NULL), 0);
    snap_snapshot *snap;
    CU_ASSERT_EQUAL_FATAL(snap_pin(w, "d", &snap, NULL), 0);
    CU_ASSERT_EQUAL(snap_snapshot_version(snap), current);
    CU_ASSERT(tu_check_f64(snap) > 0);
    CU_ASSERT_EQUAL(snap_snapshot_verify(snap, NULL), 0);
    snap_unpin(snap);
    int orphans;
    uint64_t bytes = seg_bytes_and_check(g_dir, w, &orphans);
    CU_ASSERT_EQUAL(orphans, 0);
    uint64_t used = fs_used(mnt);
    CU_ASSERT(used >= bytes && used - bytes < (2u << 20));
    snap_store_close(w);
  }
  printf("\n  20 fault points: %d publishes refused cleanly, %d completed ", failed,
         succeeded);
  CU_ASSERT(failed >= 3); /* allocation, LMDB reservation and/or the flip txn */
  snap_store_close(s);
  free(g_fill_path);
  free(g_dir);
  unmount_tmpfs(mnt);
}

int main(void) {
  static const tu_test tests[] = {
      {"readers in other processes see every flip", test_readers_see_every_flip},
      {"free-running readers never see a torn version", test_free_running_readers},
      {"SIGKILLed reader leaves nothing pinned", test_killed_reader_leaves_no_pin},
      {"publisher SIGKILLed at every crash point", test_killed_publisher},
      {"forked children use and drop inherited pins", test_fork_children},
      {"full tmpfs: ENOSPC, old version stays", test_full_tmpfs},
      {"full tmpfs on a first publish: no dataset left", test_full_tmpfs_first_publish},
      {"dropper SIGKILLed at every crash point", test_killed_dropper},
      {"two processes publish one new dataset; one gives up",
       test_concurrent_first_publish},
      {"2 MiB-aligned mapping gets PMD pages on huge tmpfs", test_huge_page_mapping},
      {"control file corrupted or deleted: clear error",
       test_control_file_deleted_or_corrupted},
      {"fd limit while pinning many versions", test_fd_limit_while_pinning},
      {"fork while another thread pins", test_fork_while_another_thread_pins},
      {"control file map full: clear error, data intact", test_control_map_full},
      {"ENOSPC at every publish step", test_enospc_at_every_step},
      {NULL, NULL}};
  return tu_run("process", tests);
}
