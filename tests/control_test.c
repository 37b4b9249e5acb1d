/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control file lost or damaged (issue 11): no segment is ever deleted
 * because of it, no process crashes on it, a writer never publishes into a
 * dead file, and snapctl doctor --rebuild brings the store back from its
 * segments, with live readers following. Real processes throughout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#ifndef SNAPCTL
#error "SNAPCTL: the path of the snapctl binary"
#endif

static char ctl_path[4200];

static void set_ctl(const char *dir) {
  snprintf(ctl_path, sizeof ctl_path, "%s/control.mdb", dir);
}

static int seg_count(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/segments", dir);
  return tu_count_files(p);
}

static int run_snapctl(const char *dir, const char *args) {
  char cmd[8800];
  snprintf(cmd, sizeof cmd, "%s --store %s %s >/dev/null 2>&1", SNAPCTL, dir, args);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ------------------------------------------------ bug 3: a lost control file */

static void test_create_never_over_segments(void) {
  char *dir;
  snap_store *s = tu_store_create("ctl-lost", &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  for (int i = 1; i <= 3; i++) CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 50, 2, i, &v), 0);
  snap_store_close(s);
  set_ctl(dir);
  int before = seg_count(dir);
  CU_ASSERT_EQUAL(before, 2); /* keep 2 */
  for (int kase = 0; kase < 2; kase++) {
    if (kase == 0) {
      CU_ASSERT_EQUAL(unlink(ctl_path), 0);
    } else {
      CU_ASSERT_EQUAL(truncate(ctl_path, 0), 0);
    }
    struct snap_error err = {0};
    s = NULL;
    CU_ASSERT_EQUAL(snap_store_open(dir, SNAP_CREATE, &s, &err), SNAP_ECONTROL);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "control.mdb"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "doctor --rebuild"));
    CU_ASSERT_EQUAL(run_snapctl(dir, "init"), 1);
    CU_ASSERT_EQUAL(run_snapctl(dir, "gc"), 1);
    CU_ASSERT_EQUAL(seg_count(dir), before); /* nothing swept */
    if (kase == 0) {
      /* recreate the first time, so that the second case truncates a real file */
      CU_ASSERT_EQUAL(snap_store_rebuild(dir, 0, NULL, NULL, &err), 0);
    }
  }
  CU_ASSERT_EQUAL(run_snapctl(dir, "doctor --rebuild --deep"), 0);
  struct snap_error err = {0};
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, SNAP_CREATE, &s, &err), 0);
  CU_ASSERT_EQUAL(snap_current_version(s, "d", &v, &err), 0);
  CU_ASSERT_EQUAL(v, 3);
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 50, 2, 4, &v), 0);
  CU_ASSERT_EQUAL(v, 4); /* never a reused number */
  CU_ASSERT_EQUAL(seg_count(dir), 2);
  tu_store_destroy(s, dir);
}

/* ------------------------------- end to end: live readers and a writer */

struct reply {
  int rc;
  uint64_t version;
  int64_t seed;
};

static void reader_loop(const char *dir, int in, int out) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, SNAP_RDONLY, &s, &err)) _exit(3);
  char cmd;
  while (read(in, &cmd, 1) == 1 && (cmd == 'p' || cmd == 'v')) {
    struct reply r = {0};
    snap_snapshot *snap;
    /* 'v': pin version 1 by number, which always takes the slow path */
    r.rc = cmd == 'p' ? snap_pin(s, "d", &snap, &err)
                      : snap_pin_version(s, "d", 1, &snap, &err);
    if (!r.rc) {
      r.version = snap_snapshot_version(snap);
      r.seed = tu_check_f64(snap);
      if (snap_snapshot_verify(snap, NULL)) r.seed = -2;
      snap_unpin(snap);
    }
    if (write(out, &r, sizeof r) != sizeof r) _exit(4);
  }
  snap_store_close(s);
  _exit(0);
}

static void writer_loop(const char *dir, int in, int out) {
  snap_store *s;
  struct snap_error err;
  if (snap_store_open(dir, 0, &s, &err)) _exit(3);
  char cmd;
  uint64_t seed = 100;
  while (read(in, &cmd, 1) == 1 && cmd == 'w') {
    struct reply r = {0};
    r.rc = tu_publish_f64(s, "d", 200, 3, ++seed, &r.version);
    r.seed = (int64_t)seed;
    if (write(out, &r, sizeof r) != sizeof r) _exit(4);
  }
  snap_store_close(s);
  _exit(0);
}

struct child {
  pid_t pid;
  int to, from;
};

static struct child spawn(const char *dir, void (*loop)(const char *, int, int)) {
  int a[2], b[2];
  struct child c = {-1, -1, -1};
  if (pipe(a) || pipe(b)) return c;
  c.pid = fork();
  if (c.pid == 0) {
    close(a[1]);
    close(b[0]);
    loop(dir, a[0], b[1]);
  }
  close(a[0]);
  close(b[1]);
  c.to = a[1];
  c.from = b[0];
  return c;
}

static struct reply ask(struct child *c, char cmd) {
  struct reply r = {.rc = -999};
  if (write(c->to, &cmd, 1) != 1 || read(c->from, &r, sizeof r) != sizeof r) r.rc = -998;
  return r;
}

static int finish(struct child *c) {
  char q = 'q';
  if (write(c->to, &q, 1) != 1) return -1;
  close(c->to);
  close(c->from);
  int st;
  if (waitpid(c->pid, &st, 0) != c->pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void damage(int kase) {
  if (kase == 0) {
    CU_ASSERT_EQUAL(unlink(ctl_path), 0);
  } else if (kase == 1) {
    CU_ASSERT_EQUAL(truncate(ctl_path, 0), 0);
  } else {
    /* both meta pages overwritten in place */
    int fd = open(ctl_path, O_WRONLY);
    char junk[8192];
    memset(junk, 0x5a, sizeof junk);
    CU_ASSERT_EQUAL(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    close(fd);
  }
}

static void e2e_case(int kase) {
  static const char *const names[] = {"deleted", "truncated", "corrupted"};
  char *dir;
  snap_store *s = tu_store_create("ctl-e2e", &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 200, 3, 1, &v), 0);
  snap_store_close(s);
  set_ctl(dir);
  struct child r[2] = {spawn(dir, reader_loop), spawn(dir, reader_loop)};
  struct child w = spawn(dir, writer_loop);
  struct reply x = ask(&w, 'w');
  CU_ASSERT_EQUAL(x.rc, 0);
  uint64_t before = x.version;
  for (int i = 0; i < 2; i++) {
    x = ask(&r[i], 'p');
    CU_ASSERT(x.rc == 0 && x.version == before && x.seed == 101);
  }
  damage(kase);
  /* the writer's next publish fails cleanly */
  x = ask(&w, 'w');
  CU_ASSERT_EQUAL(x.rc, SNAP_ECONTROL);
  if (x.rc != SNAP_ECONTROL) fprintf(stderr, "%s: writer got %d\n", names[kase], x.rc);
  CU_ASSERT_EQUAL(finish(&w), 0);
  /* readers keep their cached version meanwhile; their slow path refuses
   * cleanly (it must not read the damaged file through LMDB's map) */
  for (int i = 0; i < 2; i++) {
    x = ask(&r[i], 'p');
    CU_ASSERT(x.rc == 0 && x.version == before && x.seed == 101);
    x = ask(&r[i], 'v');
    CU_ASSERT_EQUAL(x.rc, SNAP_ECONTROL);
  }
  CU_ASSERT_EQUAL(run_snapctl(dir, "doctor --rebuild"), 0);
  /* every kept version, every byte and the data checksum */
  struct snap_error err = {0};
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, 0, &s, &err), 0);
  struct snap_version_info *vi;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(snap_version_list(s, "d", &vi, &n, &err), 0);
  CU_ASSERT_EQUAL(n, 2);
  for (size_t i = 0; i < n; i++) {
    snap_snapshot *snap;
    CU_ASSERT_EQUAL_FATAL(snap_pin_version(s, "d", vi[i].version, &snap, &err), 0);
    CU_ASSERT_EQUAL(tu_check_f64(snap), vi[i].version == 1 ? 1 : 101);
    CU_ASSERT_EQUAL(snap_snapshot_verify(snap, NULL), 0);
    snap_unpin(snap);
  }
  snap_free(vi);
  CU_ASSERT_EQUAL(snap_current_version(s, "d", &v, &err), 0);
  CU_ASSERT_EQUAL(v, before);
  /* readers follow new publishes through the new file */
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 200, 3, 7, &v), 0);
  CU_ASSERT_EQUAL(v, before + 1);
  for (int i = 0; i < 2; i++) {
    x = ask(&r[i], 'p');
    CU_ASSERT(x.rc == 0 && x.version == v && x.seed == 7);
    if (x.rc) fprintf(stderr, "%s: reader got %d\n", names[kase], x.rc);
    CU_ASSERT_EQUAL(finish(&r[i]), 0);
  }
  tu_store_destroy(s, dir);
}

static void test_e2e_deleted(void) { e2e_case(0); }
static void test_e2e_truncated(void) { e2e_case(1); }
static void test_e2e_corrupted(void) { e2e_case(2); }

/* A writer that still has the store open blocks a rebuild. */
static void test_rebuild_refused_while_writing(void) {
  char *dir;
  snap_store *s = tu_store_create("ctl-busy", &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 10, 1, 1, &v), 0);
  struct snap_error err = {0};
  CU_ASSERT_EQUAL(snap_store_rebuild(dir, 0, NULL, NULL, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "flips"));
  set_ctl(dir);
  struct stat st;
  CU_ASSERT_EQUAL(stat(ctl_path, &st), 0); /* untouched */
  snap_store_close(s);
  /* writerd's single-instance lock (flock on writerd.lock, writerd/lock.c) */
  char lock[4200];
  snprintf(lock, sizeof lock, "%s/writerd.lock", dir);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  CU_ASSERT_FATAL(fd >= 0 && flock(fd, LOCK_EX) == 0);
  CU_ASSERT_EQUAL(snap_store_rebuild(dir, 0, NULL, NULL, &err), SNAP_EBUSY);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "writerd.lock"));
  close(fd);
  CU_ASSERT_EQUAL(snap_store_rebuild(dir, 0, NULL, NULL, &err), 0);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, 0, &s, &err), 0);
  CU_ASSERT_EQUAL(snap_current_version(s, "d", &v, &err), 0);
  CU_ASSERT_EQUAL(v, 1);
  tu_store_destroy(s, dir);
}

/* A closed store in a new directory holding one version of dataset "d". */
static char *store_with_one_version(const char *name) {
  char *dir;
  snap_store *s = tu_store_create(name, &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  uint64_t v;
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 10, 1, 1, &v), 0);
  snap_store_close(s);
  return dir;
}

/* A rebuild numbers on from a dataset's tombstone (segments/<d>/.next_version,
 * left by a drop) when it is past the files: a number never names two segments. */
static void test_rebuild_keeps_tombstone(void) {
  char *dir = store_with_one_version("ctl-tomb");
  snap_store *s;
  uint64_t v;
  char p[4200];
  snprintf(p, sizeof p, "%s/segments/d/.next_version", dir);
  FILE *f = fopen(p, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs("40\n", f);
  fclose(f);
  set_ctl(dir);
  CU_ASSERT_EQUAL(unlink(ctl_path), 0);
  struct snap_error err = {0};
  CU_ASSERT_EQUAL(snap_store_rebuild(dir, 0, NULL, NULL, &err), 0);
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, 0, &s, &err), 0);
  CU_ASSERT_EQUAL(snap_current_version(s, "d", &v, &err), 0);
  CU_ASSERT_EQUAL(v, 1);
  CU_ASSERT_EQUAL(tu_publish_f64(s, "d", 10, 1, 2, &v), 0);
  CU_ASSERT_EQUAL(v, 40);
  tu_store_destroy(s, dir);
}

/* A record whose segment file is gone (no flip in between) is control-file
 * trouble, said as such, not "version changed 64 times". */
static void test_pin_names_missing_segment(void) {
  char *dir = store_with_one_version("ctl-missing");
  snap_store *s;
  char p[4200];
  snprintf(p, sizeof p, "%s/segments/d/1.seg", dir);
  CU_ASSERT_EQUAL(unlink(p), 0);
  struct snap_error err = {0};
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, SNAP_RDONLY, &s, &err), 0);
  snap_snapshot *snap = NULL;
  CU_ASSERT_EQUAL(snap_pin(s, "d", &snap, &err), SNAP_ECONTROL);
  CU_ASSERT_PTR_NULL(snap);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "segments/d/1.seg is missing"));
  CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "doctor --rebuild"));
  tu_store_destroy(s, dir);
}

/* --------------------------- random damage: every read path, no signal */

static struct snap_error last_err;
static int allowed(int rc) {
  /* EFORMAT: a damaged meta record's format field; EBUSY: a damaged record
   * names a version whose file does not exist, and the pin retries until it
   * gives up (pin.c) */
  bool ok = rc == 0 || rc == SNAP_ECONTROL || rc == SNAP_ECORRUPT ||
            rc == SNAP_ENOTFOUND || rc == SNAP_EFORMAT || rc == SNAP_EBUSY;
  if (!ok) fprintf(stderr, "  status %d: %s\n", rc, last_err.message);
  return ok;
}

/* In a child: every read path; exit 0 when each returned an allowed status,
 * 2 otherwise, 1 when the store opened (0 when refused). */
static void read_everything(const char *dir) {
  snap_store *s;
#define err last_err
  int rc = snap_store_open(dir, SNAP_RDONLY, &s, &err);
  if (rc) _exit(allowed(rc) ? 0 : 2);
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  rc = snap_dataset_list(s, &ds, &nds, &err);
  if (!allowed(rc)) _exit(2);
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *vi = NULL;
    size_t nv = 0;
    if (!allowed(snap_version_list(s, ds[i].name, &vi, &nv, &err))) _exit(2);
    snap_snapshot *snap;
    rc = snap_pin(s, ds[i].name, &snap, &err);
    if (!allowed(rc)) _exit(2);
    if (!rc) snap_unpin(snap);
    for (size_t k = 0; k < nv; k++) {
      rc = snap_pin_version(s, ds[i].name, vi[k].version, &snap, &err);
      if (!allowed(rc) && rc != SNAP_EDRAINING) _exit(2);
      if (!rc) snap_unpin(snap);
    }
    uint64_t v;
    if (!allowed(snap_current_version(s, ds[i].name, &v, &err))) _exit(2);
    snap_free(vi);
  }
  snap_free(ds);
  snap_snapshot *snap;
  rc = snap_pin(s, "d0", &snap, &err);
  if (!allowed(rc)) _exit(2);
  if (!rc) snap_unpin(snap);
  snap_store_close(s);
  _exit(1);
#undef err
}

static void test_random_page_damage(void) {
  char *dir;
  snap_store *s = tu_store_create("ctl-fuzz", &dir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  char name[32];
  uint64_t v;
  /* enough records for branch pages in both DBs */
  for (int i = 0; i < 150; i++) {
    snprintf(name, sizeof name, "d%d", i);
    for (int k = 0; k < 2; k++) CU_ASSERT_EQUAL(tu_publish_f64(s, name, 4, 1, k, &v), 0);
  }
  snap_store_close(s);
  set_ctl(dir);
  int fd = open(ctl_path, O_RDONLY);
  struct stat st;
  CU_ASSERT_FATAL(fd >= 0 && fstat(fd, &st) == 0);
  size_t size = (size_t)st.st_size, psize = 4096, npages = size / psize;
  uint8_t *good = malloc(size), *bad = malloc(size);
  CU_ASSERT_FATAL(pread(fd, good, size, 0) == (ssize_t)size);
  close(fd);
  unsigned seed = (unsigned)time(NULL);
  const char *env = getenv("SNAP_CONTROL_SEED");
  if (env) seed = (unsigned)strtoul(env, NULL, 10);
  srand(seed);
  int attempts = 400, opened = 0, refused = 0, failures = 0;
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", ctl_path);
  for (int i = 0; i < attempts; i++) {
    memcpy(bad, good, size);
    size_t pg = (size_t)rand() % npages;
    uint8_t *p = bad + pg * psize;
    int mode = rand() % 5;
    if (mode == 0)
      for (size_t k = 0; k < psize; k++) p[k] = (uint8_t)rand();
    else if (mode == 1)
      for (int k = 0; k < 1 + rand() % 8; k++)
        p[rand() % psize] ^= (uint8_t)(1 + rand() % 255);
    else if (mode == 2)
      memset(p, 0, psize);
    else if (mode == 3)
      memcpy(p, bad + ((size_t)rand() % npages) * psize, psize);
    else /* a 16-bit field of the header or the node area */
      p[rand() % 64] = (uint8_t)rand();
    int wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    CU_ASSERT_FATAL(wfd >= 0 && write(wfd, bad, size) == (ssize_t)size);
    close(wfd);
    CU_ASSERT_FATAL(rename(tmp, ctl_path) == 0);
    pid_t pid = fork();
    if (pid == 0) read_everything(dir);
    int status;
    CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) {
      failures++;
      fprintf(stderr, "seed %u attempt %d: page %zu mode %d: %s %d\n", seed, i, pg, mode,
              WIFEXITED(status) ? "exit" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    } else if (WEXITSTATUS(status) == 1) {
      opened++;
    } else {
      refused++;
    }
  }
  CU_ASSERT_EQUAL(failures, 0);
  printf("\n  %d damaged control files (seed %u, %zu pages): %d opened, %d refused\n",
         attempts, seed, npages, opened, refused);
  free(good);
  free(bad);
  tu_store_remove(dir);
  free(dir);
}

/* --------------------------------------------- cost of the check at open */

static void test_check_cost(void) {
  char *dir = tu_store_dir("ctl-cost");
  char path[4200];
  snprintf(path, sizeof path, "%s/control.mdb", dir);
  struct snap__control *c;
  struct snap_error err = {0};
  CU_ASSERT_EQUAL_FATAL(snap__control_open(path, true, &c, &err), 0);
  struct snap__txn *t;
  CU_ASSERT_EQUAL_FATAL(snap__txn_begin(c, true, &t, &err), 0);
  struct snap__meta m = {
      .format = SNAP__CONTROL_FORMAT, .default_keep = 2, .next_dataset_id = 1001};
  CU_ASSERT_EQUAL(snap__meta_put(t, &m, &err), 0);
  for (uint64_t d = 1; d <= 1000; d++) {
    char name[32];
    snprintf(name, sizeof name, "dataset-%04llu", (unsigned long long)d);
    struct snap__dsrec ds = {.id = d, .current = 10, .next_version = 11, .keep = 10};
    CU_ASSERT_EQUAL(snap__ds_put(t, name, &ds, &err), 0);
    for (uint64_t v = 1; v <= 10; v++) {
      struct snap__verrec vr = {.state = v == 10 ? 1 : 2, .ncols = 3, .nrows = 1000};
      CU_ASSERT_EQUAL(snap__ver_put(t, d, v, &vr, &err), 0);
    }
  }
  CU_ASSERT_EQUAL_FATAL(snap__txn_commit(t, &err), 0);
  snap__control_close(c);
  int fd = open(path, O_RDONLY);
  struct stat st;
  CU_ASSERT_FATAL(fd >= 0 && fstat(fd, &st) == 0);
  double best = 1e9;
  for (int i = 0; i < 20; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CU_ASSERT_EQUAL(snap__control_check(fd, path, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double us = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
    if (us < best) best = us;
  }
  close(fd);
  printf(
      "\n  control check of 1000 datasets x 10 versions (%lld KiB): %.0f us (best of "
      "20)\n",
      (long long)st.st_size / 1024, best);
  tu_store_remove(dir);
  free(dir);
}

/* A store owner must not be able to make another user (root running snapctl)
 * write a file of its choosing: a link in place of control.mdb, its lock file or
 * flips is refused, and the file it points at is left as it was. */
static bool file_is(const char *path, const char *want) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n == (ssize_t)strlen(want) && !memcmp(buf, want, (size_t)n);
}

static void test_links_refused(void) {
  char *dir;
  snap_store *s = tu_store_create("ctl-links", &dir);
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(s, "d", 3, 1, 1, NULL), 0);
  snap_store_close(s);
  char victim[4200], path[4200], moved[4300];
  snprintf(victim, sizeof victim, "%s.victim", dir);
  const char *names[] = {"control.mdb-lock", "control.mdb", "flips"};
  for (int i = 0; i < 3; i++) {
    FILE *f = fopen(victim, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("precious", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    snprintf(moved, sizeof moved, "%s.saved", path);
    CU_ASSERT_EQUAL_FATAL(rename(path, moved), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(victim, path), 0);
    for (int ro = 0; ro < 2; ro++) {
      struct snap_error err = {0};
      snap_store *t = NULL;
      int rc = snap_store_open(dir, ro ? SNAP_RDONLY : 0, &t, &err);
      CU_ASSERT(rc == SNAP_ECONTROL || rc == -ELOOP);
      CU_ASSERT_PTR_NULL(t);
      CU_ASSERT_PTR_NOT_NULL(strstr(err.message, names[i]));
      if (t) snap_store_close(t);
    }
    CU_ASSERT(file_is(victim, "precious"));
    CU_ASSERT_EQUAL(unlink(path), 0);
    CU_ASSERT_EQUAL_FATAL(rename(moved, path), 0);
  }
  /* the real files back: the store opens and reads as before */
  CU_ASSERT_EQUAL_FATAL(snap_store_open(dir, 0, &s, NULL), 0);
  snap_snapshot *snap;
  CU_ASSERT_EQUAL_FATAL(snap_pin(s, "d", &snap, NULL), 0);
  CU_ASSERT_EQUAL(tu_check_f64(snap), 1);
  snap_unpin(snap);
  snap_store_close(s);
  unlink(victim);
  tu_store_remove(dir);
  free(dir);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* a dead child is an assertion, not the test's death */
  static const tu_test tests[] = {
      {"lost control file: create refuses, nothing swept",
       test_create_never_over_segments},
      {"deleted under readers and a writer, rebuilt", test_e2e_deleted},
      {"truncated under readers and a writer, rebuilt", test_e2e_truncated},
      {"corrupted under readers and a writer, rebuilt", test_e2e_corrupted},
      {"rebuild refused while a writer has the store",
       test_rebuild_refused_while_writing},
      {"rebuild numbers on from a tombstone", test_rebuild_keeps_tombstone},
      {"pin of a record without its segment names the repair",
       test_pin_names_missing_segment},
      {"random page damage: every read path, no signal", test_random_page_damage},
      {"cost of the check at open", test_check_cost},
      {"links in place of control.mdb, its lock or flips are refused",
       test_links_refused},
      {NULL, NULL}};
  return tu_run("control", tests);
}
