/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl doctor: check the store's environment and state, and say for each
 * finding the command that fixes it.
 *
 * Checks: the store opens; the file system (tmpfs, size, free space against the
 * largest dataset); the mount's huge-page setting and the kernel's shmem THP
 * override, and whether the store is big enough to gain from 2 MiB pages; the
 * record snapctl init --huge leaves in <store>/mount; the cgroup memory limit;
 * orphan segment files (no record names them, left by a publisher killed
 * mid-commit); draining versions (reclaimable now, or held by processes).
 * Read-only: it never changes the store.
 * Exit status: 0 when nothing needs fixing (advice aside), 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "snapctl.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

struct doctor {
  int problems, advice;
};

static void finding(struct doctor *d, const char *level, const char *fix, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
static void finding(struct doctor *d, const char *level, const char *fix, const char *fmt,
                    ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%-8s ", level);
  vprintf(fmt, ap);
  printf("\n");
  if (fix) printf("         fix: %s\n", fix);
  va_end(ap);
  if (!strcmp(level, "problem")) d->problems++;
  if (!strcmp(level, "advice")) d->advice++;
}

/* The page size of the store's tmpfs, and whether the store is big enough to gain
 * from 2 MiB pages (CTL_HUGE_ADVICE_BYTES; docs/design.md section 7.1). The kernel's
 * shmem_enabled 'deny' overrides the mount's huge= (and is advised against here). */
static void check_huge(struct doctor *d, const char *real, const char *mnt,
                       const char *opts, const char *shmem, uint64_t segments) {
  const char *h = strstr(opts, "huge=");
  char setting[32] = "never", b1[32], b2[32], b3[32], qr[4 * PATH_MAX], qm[4 * PATH_MAX],
       qs[4 * PATH_MAX + 16], *fix = NULL;
  if (h) sscanf(h + 5, "%31[^,]", setting);
  bool huge = !strcmp(setting, "within_size") || !strcmp(setting, "always");
  if (!strcmp(shmem, "deny")) {
    finding(d, "advice",
            "echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled",
            "huge pages: %s is mounted with huge=%s, but the kernel's shmem_enabled is "
            "'deny', which overrides the mount's huge= option: 4 KiB pages",
            mnt, setting);
    return;
  }
  if (huge || !strcmp(shmem, "force")) {
    finding(d, "ok", NULL, "huge pages: %s is mounted with huge=%s%s", mnt, setting,
            strcmp(shmem, "force") ? "" : " (the kernel's shmem_enabled forces them)");
    return;
  }
  if (segments < CTL_HUGE_ADVICE_BYTES) {
    finding(d, "ok", NULL,
            "huge pages: %s has 4 KiB pages (huge=%s); below %s of segments (this "
            "store: %s) 2 MiB pages gain little",
            mnt, setting, ctl_bytes(b1, sizeof b1, CTL_HUGE_ADVICE_BYTES),
            ctl_bytes(b2, sizeof b2, segments));
    return;
  }
  ctl_shell_quote(qr, sizeof qr, real);
  ctl_shell_quote(qm, sizeof qm, mnt);
  if (!strcmp(mnt, real)) {
    /* the store has its own tmpfs: new allocations follow the new option */
    if (asprintf(
            &fix,
            "mount -o remount,huge=within_size %s   (versions published from then on "
            "get 2 MiB pages)",
            qm) < 0)
      fix = NULL;
  } else {
    /* a shared tmpfs such as /dev/shm: move the store onto its own one, keeping the
     * path, owner, group and mode (cp writes files growing, so the copies keep 4 KiB
     * pages; a publish writes into a sized file and gets 2 MiB ones) */
    struct stat st = {0};
    stat(real, &st);
    char old[4 * PATH_MAX];
    snprintf(old, sizeof old, "%s.4k", real);
    ctl_shell_quote(qs, sizeof qs, old);
    if (asprintf(&fix,
                 "stop writerd, every publisher and reader, then: mv %s %s && install -d "
                 "-m %o -o %u -g %u %s && snapctl --store %s init --huge && cp -a "
                 "%s/segments %s/control.mdb %s/ && rm -r %s   (copied versions "
                 "keep 4 KiB pages until their next publish); or for all of %s: mount -o "
                 "remount,huge=within_size %s",
                 qr, qs, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                 (unsigned)st.st_gid, qr, qr, qs, qs, qr, qs, mnt, qm) < 0)
      fix = NULL;
  }
  finding(d, "advice", fix,
          "huge pages: %s has 4 KiB pages (huge=%s) under %s of segments: every reader "
          "that maps them all spends %s on page tables (%s with 2 MiB pages), and a "
          "publish takes a page fault per 4 KiB (512 times as many as with 2 MiB pages)",
          mnt, setting, ctl_bytes(b1, sizeof b1, segments),
          ctl_bytes(b2, sizeof b2, segments / 4096 * 8),
          ctl_bytes(b3, sizeof b3, (segments + (1ull << 30) - 1) >> 30 << 12));
  free(fix);
}

/* @p s with only printable ASCII kept (a field of a record someone else may have
 * written, shown on root's terminal). */
static const char *printable(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 1 < cap; s++)
    if (*s >= 0x20 && *s < 0x7f) out[n++] = *s;
  out[n] = 0;
  return out;
}

/* A size as --size takes it: the largest of T, G, M, K that divides it. */
static const char *size_arg(char *out, size_t cap, uint64_t bytes) {
  static const char units[] = "KMGT";
  int u = 0;
  while (u < 4 && bytes && bytes % (1ull << (10 * (u + 1))) == 0) u++;
  if (u)
    snprintf(out, cap, "%llu%c", (unsigned long long)(bytes >> (10 * u)), units[u - 1]);
  else
    snprintf(out, cap, "%llu", (unsigned long long)bytes);
  return out;
}

/*
 * <store>/mount, written by snapctl init --huge: what was mounted. The directory's
 * owner can replace it, so nothing in it is taken as a command: the command to mount
 * the store again is made from what is mounted (path, size), and the record is
 * opened as a regular file only (no symlink, no FIFO to hang on).
 */
static void check_record(struct doctor *d, const char *real, const char *mnt,
                         const char *type, const char *opts, uint64_t size) {
  char path[PATH_MAX + 16], line[4 * PATH_MAX],
      when[64] = "", fix[5 * PATH_MAX], q[4 * PATH_MAX], qp[4 * PATH_MAX + 64], sz[32];
  snprintf(path, sizeof path, "%s/%s", real, CTL_MOUNT_RECORD);
  ctl_shell_quote(qp, sizeof qp, path);
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return;
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    if (fd >= 0) close(fd);
    snprintf(fix, sizeof fix, "rm %s   (snapctl init --huge writes a regular file)", qp);
    finding(d, "advice", fix, "mount: %s is not a regular file", path);
    return;
  }
  FILE *f = fdopen(fd, "re");
  if (!f) {
    close(fd);
    return;
  }
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "mounted=", 8)) printable(when, sizeof when, line + 8);
  }
  fclose(f);
  if (strcmp(mnt, real) || strcmp(type, "tmpfs")) {
    snprintf(fix, sizeof fix,
             "rm %s   (it describes a mount that is not there; snapctl init --huge "
             "mounts one on an empty directory)",
             qp);
    finding(d, "advice", fix,
            "mount: %s records a tmpfs mounted by snapctl init --huge at %s, but %s is "
            "not a tmpfs mount point now (a copied store?)",
            path, when[0] ? when : "?", real);
    return;
  }
  if (st.st_uid != 0)
    finding(d, "advice", NULL,
            "mount: %s is not root's (uid %u): snapctl init --huge writes it as root; "
            "it may have been replaced, so doctor shows only what is mounted",
            path, (unsigned)st.st_uid);
  finding(d, "ok", NULL,
          "mount: %s is the tmpfs snapctl init --huge mounted at %s (%s); recorded in %s",
          real, when[0] ? when : "?", opts, path);
  printf(
      "         a tmpfs is empty after a reboot; mount it again at boot with: snapctl "
      "--store %s init --huge --size %s\n",
      ctl_shell_quote(q, sizeof q, real), size_arg(sz, sizeof sz, size));
}

static void check_fs(struct doctor *d, const char *path, uint64_t largest,
                     uint64_t segments) {
  char real[PATH_MAX], mnt[PATH_MAX], type[64], opts[1024], fix[PATH_MAX + 128], b1[32],
      b2[32], b3[32];
  if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
  struct statfs sf;
  struct statvfs sv;
  if (statfs(real, &sf) || statvfs(real, &sv)) {
    finding(d, "problem", NULL, "%s: statfs: %s", real, strerror(errno));
    return;
  }
  int have_mount =
      !ctl_find_mount(real, mnt, sizeof mnt, type, sizeof type, opts, sizeof opts);
  if (!have_mount) snprintf(mnt, sizeof mnt, "?"), type[0] = 0, opts[0] = 0;
  uint64_t size = (uint64_t)sv.f_blocks * sv.f_frsize,
           avail = (uint64_t)sv.f_bavail * sv.f_frsize;
  if (sf.f_type != TMPFS_MAGIC) {
    snprintf(fix, sizeof fix,
             "put the store on a tmpfs, e.g. mount -t tmpfs -o "
             "size=16G,huge=within_size tmpfs /mnt/libsnap; snapctl --store "
             "/mnt/libsnap/NAME init");
    finding(d, "problem", fix, "file system: %s at %s is not tmpfs (%s)", real, mnt,
            type[0] ? type : "unknown type");
  } else {
    finding(d, "ok", NULL, "file system: tmpfs mounted at %s, size %s, free %s", mnt,
            ctl_bytes(b1, sizeof b1, size), ctl_bytes(b2, sizeof b2, avail));
  }
  if (largest && avail < largest) {
    snprintf(fix, sizeof fix, "snapctl gc; or mount -o remount,size=<larger> %s", mnt);
    finding(d, "problem", fix,
            "free space: %s free, less than the largest dataset's current version (%s): "
            "its next publish would fail with ENOSPC",
            ctl_bytes(b1, sizeof b1, avail), ctl_bytes(b3, sizeof b3, largest));
  }
  char shmem[32] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
  char line[256];
  if (f && fgets(line, sizeof line, f)) {
    char *sel = strchr(line, '[');
    if (sel) sscanf(sel + 1, "%31[^]]", shmem);
  }
  if (f) fclose(f);
  if (sf.f_type == TMPFS_MAGIC) check_huge(d, real, mnt, opts, shmem, segments);
  if (sf.f_type != TMPFS_MAGIC && !strcmp(shmem, "deny"))
    finding(
        d, "advice", "echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled",
        "huge pages: the kernel's shmem_enabled is 'deny', which overrides the mount's "
        "huge= option");
  check_record(d, real, mnt, type, opts, size);
}

/* Files under segments/<dataset>/ that no record names (snap_orphan_list):
 * segment files (a publisher died mid-commit; the sweep of the next writable
 * open removes them) are problems; other files (a segment doctor set aside as
 * <v>.seg.damaged, anything else) are kept on purpose and only reported. */
static void check_orphans(struct doctor *d, snap_store *store) {
  struct snap_orphan *o;
  size_t n;
  if (snap_orphan_list(store, &o, &n, NULL)) return;
  uint64_t bytes = 0;
  size_t segs = 0;
  for (size_t i = 0; i < n; i++) {
    if (o[i].kind == SNAP_ORPHAN_SEGMENT) {
      segs++;
      bytes += o[i].bytes;
      finding(d, "problem", NULL, "orphan: %s is named by no version record", o[i].path);
    } else {
      char b[32], fix[4200];
      snprintf(fix, sizeof fix, "rm '%s'   (once it is no longer needed)", o[i].path);
      finding(d, "advice", fix,
              "kept file: %s (%s) is not a segment of the store; libsnap "
              "never removes it",
              o[i].path, ctl_bytes(b, sizeof b, o[i].bytes));
    }
  }
  snap_orphan_list_free(o, n);
  if (segs) {
    char b[32];
    finding(d, "problem", "snapctl gc   (a writable open removes orphans)",
            "orphans: %zu segment file%s (%s) left by publishers that died mid-commit",
            segs, segs == 1 ? "" : "s", ctl_bytes(b, sizeof b, bytes));
  } else {
    finding(d, "ok", NULL, "orphans: none");
  }
}

static void check_draining(struct doctor *d, snap_store *store,
                           const struct snap_dataset_info *ds, size_t nds) {
  int any = 0;
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    if (snap_version_list(store, ds[i].name, &v, &nv, NULL)) continue;
    for (size_t k = 0; k < nv; k++) {
      if (v[k].state != SNAP_STATE_DRAINING) continue;
      char b[32];
      any = 1;
      if (v[k].holders == 0) {
        finding(d, "problem", "snapctl gc", "draining: %s@%llu (%s) is pinned by nobody",
                ds[i].name, (unsigned long long)v[k].version,
                ctl_bytes(b, sizeof b, v[k].bytes));
        continue;
      }
      pid_t pids[16];
      size_t n = 0;
      snap_version_holders(store, ds[i].name, v[k].version, pids, 16, &n, NULL);
      char who[512] = "", fix[512] = "";
      size_t wl = 0, fl = 0;
      fl += (size_t)snprintf(fix, sizeof fix,
                             "snapctl readers; the holders must unpin "
                             "(or exit): kill");
      for (size_t j = 0; j < n && j < 16; j++) {
        char cmd[64];
        if (wl < sizeof who)
          wl +=
              (size_t)snprintf(who + wl, sizeof who - wl, "%s%d (%s)", j ? ", " : "",
                               (int)pids[j], ctl_proc_cmdline(cmd, sizeof cmd, pids[j]));
        if (fl < sizeof fix)
          fl += (size_t)snprintf(fix + fl, sizeof fix - fl, " %d", (int)pids[j]);
      }
      finding(d, "problem", fix,
              "stale pin: %s@%llu (%s) is retired but still pinned by %s", ds[i].name,
              (unsigned long long)v[k].version, ctl_bytes(b, sizeof b, v[k].bytes),
              n ? who : "processes that just let go");
    }
    snap_free(v);
  }
  if (!any) finding(d, "ok", NULL, "draining versions: none");
}

static void rebuild_item(const struct snap_rebuild_item *it, void *arg) {
  int *set_aside = arg;
  if (it->status) {
    (*set_aside)++;
    printf("set aside %s@%llu (renamed to %llu.seg.damaged): %s\n", it->dataset,
           (unsigned long long)it->version, (unsigned long long)it->version, it->message);
  } else {
    printf("recorded  %s@%llu %s\n", it->dataset, (unsigned long long)it->version,
           snap_state_name((enum snap_state)it->state));
  }
}

/* doctor --rebuild: a new control file from the segment headers. */
static int run_rebuild(struct ctl *c, const char *path, bool deep) {
  struct snap_error err = {0};
  int set_aside = 0;
  int rc = snap_store_rebuild(path, deep ? SNAP_REBUILD_DEEP : 0, rebuild_item,
                              &set_aside, &err);
  fflush(stdout);
  if (rc) return ctl_fail_snap(c, "--rebuild", rc, &err);
  printf(
      "rebuilt %s/control.mdb from the segments (%d set aside); the old file, if "
      "any, is %s/control.mdb.damaged-<time>\n",
      path, set_aside, path);
  return CTL_OK;
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {
      {"deep", no_argument, NULL, 'D'}, {"rebuild", no_argument, NULL, 'R'}, {0}};
  int opt, code;
  bool deep = false, rebuild = false;
  while ((opt = ctl_getopt(&ctl_cmd_doctor, c, argc, argv, "", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'D') deep = true;
    if (opt == 'R') rebuild = true;
  }
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
  struct doctor d = {0};
  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  if (rebuild) return run_rebuild(c, path, deep);
  snap_store *store;
  struct snap_error err = {0};
  int rc = snap_store_open(path, SNAP_RDONLY, &store, &err);
  if (rc) {
    char fix[3 * PATH_MAX + 256];
    const char *msg = err.message[0] ? err.message : snap_strerror(rc);
    bool control = strstr(msg, "control.mdb") != NULL;
    bool lock = strstr(msg, "control.mdb-lock") != NULL;
    if (lock)
      snprintf(fix, sizeof fix,
               "stop every process using the store, then rm %s/control.mdb-lock "
               "(LMDB recreates it; no data is lost)",
               path);
    else if (control)
      /* the records are gone or unreadable: the segment headers carry what is
       * needed to write them again (the highest whole version becomes current) */
      snprintf(fix, sizeof fix,
               "stop writerd and every publisher, then snapctl --store %s doctor "
               "--rebuild (the old file is kept as control.mdb.damaged-<time>)",
               path);
    else
      snprintf(fix, sizeof fix, "snapctl --store %s init", path);
    finding(&d, "problem", rc == SNAP_ENOTFOUND || control ? fix : NULL, "store: %s: %s",
            path, msg);
    fflush(stdout);
    return ctl_fail(c, "%s: the store does not open", path);
  }
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  if ((rc = snap_dataset_list(store, &ds, &nds, &err))) {
    finding(&d, "problem", NULL, "store: %s: %s", path, err.message);
    snap_store_close(store);
    fflush(stdout);
    return ctl_fail(c, "%s: the store cannot be listed", path);
  }
  uint64_t total = 0, largest = 0;
  for (size_t i = 0; i < nds; i++) {
    total += ds[i].bytes;
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    if (snap_version_list(store, ds[i].name, &v, &nv, NULL)) continue;
    for (size_t k = 0; k < nv; k++)
      if (v[k].state == SNAP_STATE_CURRENT && v[k].bytes > largest) largest = v[k].bytes;
    snap_free(v);
  }
  char b[32], b2[32];
  finding(&d, "ok", NULL, "store: %s opens (%zu dataset%s, %s)", snap_store_path(store),
          nds, nds == 1 ? "" : "s", ctl_bytes(b, sizeof b, total));
  check_fs(&d, snap_store_path(store), largest, total);
  char where[1200] = "";
  uint64_t limit = ctl_cgroup_limit(where, sizeof where);
  if (!limit) {
    finding(&d, "ok", NULL, "memory: no cgroup memory limit");
  } else if (limit < total + largest) {
    finding(&d, "problem",
            "raise the limit (systemd: systemctl set-property UNIT MemoryMax=SIZE)",
            "memory: cgroup limit %s (%s) is below the store's size plus one new version "
            "(%s); tmpfs pages count against the writer's cgroup",
            ctl_bytes(b, sizeof b, limit), where,
            ctl_bytes(b2, sizeof b2, total + largest));
  } else {
    finding(&d, "ok", NULL, "memory: cgroup limit %s (%s)", ctl_bytes(b, sizeof b, limit),
            where);
  }
  check_orphans(&d, store);
  check_draining(&d, store, ds, nds);
  d.problems += ctl_doctor_segments(store, ds, nds, deep, &d.advice); /* segments */
  printf("%d problem%s, %d piece%s of advice\n", d.problems, d.problems == 1 ? "" : "s",
         d.advice, d.advice == 1 ? "" : "s");
  snap_free(ds);
  snap_store_close(store);
  if (!d.problems) return CTL_OK;
  fflush(stdout);
  return ctl_fail(c, "%d problem%s found in %s", d.problems, d.problems == 1 ? "" : "s",
                  path);
}

const struct ctl_command ctl_cmd_doctor = {
    "doctor", "check the store and its environment",
    "usage: snapctl [--store PATH] doctor [--deep] [--rebuild]\n"
    "\n"
    "Check the store and its environment, and print each finding (ok, advice,\n"
    "problem) with the command that fixes it: the store opens; the file system is\n"
    "tmpfs, its size and free space (against the largest current version); the\n"
    "mount's huge-page setting (advice to use 2 MiB pages from 64 MiB of segments\n"
    "on, with the command); the record of init --huge (PATH/mount) and how to mount\n"
    "it again after a reboot; the cgroup memory limit; orphan segment files; and\n"
    "draining versions, reclaimable or still pinned (by whom); every kept version\n"
    "(current and retained) pinned as a reader would: size, header, checksum of\n"
    "header and manifest. Changes nothing.\n"
    "\n"
    "  --deep   also recompute each kept version's data checksum and check its\n"
    "           category codes (reads every byte, like snapctl verify)\n"
    "  --rebuild  recreate a lost or damaged control.mdb from the segment headers\n"
    "           (highest whole version current; with --deep, whole includes the\n"
    "           data checksum); the old file is renamed control.mdb.damaged-<time>.\n"
    "           Refused while writerd or another writer has the store open.\n"
    "Exit status 1 when a problem was found.\n",
    run};
