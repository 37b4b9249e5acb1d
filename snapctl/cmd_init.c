/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl init: create a store (or leave an existing one alone).
 *
 * With --huge (root), first mount the store's own tmpfs with huge=within_size on the
 * store directory, owned and moded as the directory (so a directory prepared with
 * `install -d -m 2750 -o writer -g readers` keeps its owner and group), and write
 * what was mounted into <store>/mount (docs/format.md section 12) for doctor and for
 * the operator who has to mount it again after a reboot.
 *
 * Root acts here on a path other users may be able to change (any component whose
 * parent they can write), so the path is resolved once, following no symlink at any
 * component, and everything after that goes through file descriptors: the checks
 * (owner, mode, mount point, emptiness) are made on the directory's fd, the tmpfs is
 * made with the new mount API as a detached mount, the record and the store are
 * written through that mount's fd, and only then is it attached onto the directory's
 * fd (move_mount). A failure before that step leaves nothing mounted: closing the
 * detached mount's fd discards it. The store is created by a child, as the
 * directory's owner when that is not root (so the writer can open the files it
 * creates), working in the new mount's root; a child killed by a signal (LMDB's
 * SIGBUS on a full tmpfs) is a failure like any other.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snapctl.h"

/* Mount attributes of the store's tmpfs: segments are mapped for reading, never run. */
#define HUGE_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)
#define HUGE_FLAG_NAMES "nosuid,nodev,noexec"
/* The smallest --size: room for the control file (LMDB reserves its map in it) and a
 * first segment; below it LMDB dies of SIGBUS on the full tmpfs. */
#define HUGE_MIN_BYTES (16ull << 20)
/* The largest: tmpfs rounds the size up to pages, which must not wrap to 0
 * ("unlimited"). */
#define HUGE_MAX_BYTES (1ull << 62)

/* MemTotal in bytes, 0 if unknown. */
static uint64_t mem_total(void) {
  FILE *f = fopen("/proc/meminfo", "re");
  char line[256];
  unsigned long long kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) break;
  if (f) fclose(f);
  return (uint64_t)kb * 1024;
}

/* --size in bytes: digits with an optional K, M, G or T (powers of 1024, either
 * case), or a percentage of RAM from 1 to 100 ("50%", of MemTotal in whole pages as
 * tmpfs counts it). 0, -1 when not a size, -2 when too large (HUGE_MAX_BYTES). */
static int size_parse(const char *s, uint64_t *out) {
  static const char units[] = "kmgt";
  uint64_t v;
  char digits[32];
  size_t n = strspn(s, "0123456789");
  if (n == 0 || n >= sizeof digits) return n ? -2 : -1;
  memcpy(digits, s, n);
  digits[n] = 0;
  if (ctl_parse_u64(digits, &v)) return -2;
  if (v == 0 || (s[n] && s[n + 1])) return -1;
  if (s[n] == '%') {
    if (v > 100) return -1;
    uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
    *out = mem_total() / ps * v / 100 * ps;
    return 0;
  }
  const char *u = s[n] ? strchr(units, tolower((unsigned char)s[n])) : NULL;
  if (s[n] && !u) return -1;
  unsigned shift = u ? 10 * (unsigned)(u - units + 1) : 0;
  if (v > HUGE_MAX_BYTES >> shift) return -2;
  *out = v << shift;
  return 0;
}

/* @p s with spaces, tabs, newlines and backslashes as fstab's octal escapes. */
static const char *fstab_escape(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 5 < cap; s++) {
    if (strchr(" \t\n\\", *s))
      n += (size_t)snprintf(out + n, cap - n, "\\%03o", (unsigned char)*s);
    else
      out[n++] = *s;
  }
  out[n] = 0;
  return out;
}

/* The huge= setting in a mount's super options ("never" when absent). */
static void huge_setting(const char *opts, char *out, size_t cap) {
  const char *h = strstr(opts, "huge=");
  snprintf(out, cap, "never");
  if (h) snprintf(out, cap, "%.*s", (int)strcspn(h + 5, ","), h + 5);
}

/* @p name under @p at, a directory, following no symlink: an O_PATH fd or -errno
 * (-ELOOP for a symlink). */
static int open_dir_nofollow(int at, const char *name) {
  struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                         .resolve = RESOLVE_NO_SYMLINKS};
  long fd = syscall(SYS_openat2, at, name, &how, sizeof how);
  return fd < 0 ? -errno : (int)fd;
}

/*
 * mkdir -p @p path as snap_store_open(SNAP_CREATE) does it (parents 0755, the store
 * directory 2750 whatever the umask), one component at a time through file
 * descriptors, following no symlink. Returns an O_PATH fd of the store directory, or
 * -errno with the component that failed in @p bad.
 */
static int store_dir_open(const char *path, char *bad, size_t cap) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -ENAMETOOLONG;
  int at = open_dir_nofollow(AT_FDCWD, tmp[0] == '/' ? "/" : ".");
  char *save, *comp = strtok_r(tmp, "/", &save);
  while (at >= 0 && comp) {
    char *next = strtok_r(NULL, "/", &save);
    snprintf(bad, cap, "%.*s", (int)(comp + strlen(comp) - tmp), path);
    if (!strcmp(comp, "..")) { /* a renamed parent could redirect the walk */
      close(at);
      return -EINVAL;
    }
    bool made = mkdirat(at, comp, next ? 0755 : 02750) == 0;
    int fd = made || errno == EEXIST ? open_dir_nofollow(at, comp) : -errno;
    if (fd >= 0 && made && !next) {
      /* setgid past the umask, on the directory just made (not on what may have
       * replaced it: fchmod needs an fd that can be read) */
      int rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      struct stat mst;
      if (rd >= 0 && (fstat(rd, &mst) || mst.st_uid != geteuid() || mst.st_nlink != 2)) {
        close(rd); /* not the empty directory this process made: swapped in */
        rd = -1;
        errno = EEXIST;
      }
      if (rd < 0 || fchmod(rd, 02750)) {
        close(fd);
        fd = -errno;
      }
      if (rd >= 0) close(rd);
    }
    close(at);
    at = fd;
    comp = next;
  }
  return at;
}

/* Whether @p s holds a control character (a newline would split the record's lines). */
static bool control_char(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
  return false;
}

/* What --huge works on. */
struct huge {
  int dirfd; /* O_PATH fd of the store directory */
  int mntfd; /* the new tmpfs, detached, or -1 when the directory already is one */
  uid_t uid; /* the directory's owner and group: the store is created as them */
  gid_t gid;
  char real[PATH_MAX]; /* the directory's path, for messages and the record */
  char size_opt[64];   /* --size as given, or the default in bytes */
  uint64_t bytes;      /* the size asked for, in bytes */
};

/* Write the record (docs/format.md section 12) into the new tmpfs, root's, 0644:
 * readable by everyone, replaceable by the directory's owner (who owns the tmpfs's
 * root) but not writable in place. 0 or -errno. */
static int write_record(const struct huge *h, const char *opts, uint64_t bytes) {
  char tstr[64], esc[4 * PATH_MAX], q[4 * PATH_MAX];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  int fd = openat(h->mntfd, CTL_MOUNT_RECORD,
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return -errno;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    int e = errno;
    close(fd);
    return -e;
  }
  ctl_shell_quote(q, sizeof q, h->real);
  fprintf(f,
          "# Written by snapctl init --huge: this store is on its own tmpfs. A tmpfs is\n"
          "# empty after a reboot: mount it again at boot (then publish again) with\n"
          "#   snapctl --store %s init --huge --size %s\n"
          "# or with this /etc/fstab line (then snapctl --store %s init --huge):\n"
          "#   libsnap %s tmpfs %s,%s 0 0\n",
          q, h->size_opt, q, fstab_escape(esc, sizeof esc, h->real), HUGE_FLAG_NAMES,
          opts);
  fprintf(f, "fstype=tmpfs\nsource=libsnap\noptions=%s,%s\nsize=%llu\n", HUGE_FLAG_NAMES,
          opts, (unsigned long long)bytes);
  fprintf(f, "mounted=%s\nmounted_ns=%lld\n", ctl_time_iso(tstr, sizeof tstr, ns),
          (long long)ns);
  fprintf(f, "command=snapctl --store %s init --huge --size %s\n", q, h->size_opt);
  int rc = fchmod(fd, 0644) ? -errno : 0;
  if (fflush(f) || fsync(fd)) rc = rc ? rc : -errno;
  if (fclose(f) && !rc) rc = -errno;
  return rc;
}

/* A detached tmpfs for the store, as h says: its fd, or -1 with the error printed. */
static int tmpfs_make(struct ctl *c, const struct huge *h, mode_t mode) {
  char val[5][32];
  const char *keys[5] = {"huge", "size", "mode", "uid", "gid"};
  snprintf(val[0], sizeof val[0], "within_size");
  snprintf(val[1], sizeof val[1], "%llu", (unsigned long long)h->bytes);
  snprintf(val[2], sizeof val[2], "%o", (unsigned)(mode & 07777));
  snprintf(val[3], sizeof val[3], "%u", (unsigned)h->uid);
  snprintf(val[4], sizeof val[4], "%u", (unsigned)h->gid);
  int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC), mntfd = -1;
  const char *step = "fsopen tmpfs";
  for (int i = 0; fsfd >= 0 && i < 5; i++)
    if (fsconfig(fsfd, FSCONFIG_SET_STRING, keys[i], val[i], 0)) {
      step = keys[i];
      goto fail;
    }
  if (fsfd < 0) goto fail;
  if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "libsnap", 0) ||
      fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
    step = "creating the tmpfs";
    goto fail;
  }
  if ((mntfd = fsmount(fsfd, FSMOUNT_CLOEXEC, HUGE_ATTRS)) < 0) {
    step = "fsmount";
    goto fail;
  }
  close(fsfd);
  return mntfd;
fail:;
  int e = errno;
  if (fsfd >= 0) close(fsfd);
  return ctl_fail(c,
                  "--huge: tmpfs huge=%s,size=%s,mode=%s,uid=%s,gid=%s for %s: %s: %s%s",
                  val[0], val[1], val[2], val[3], val[4], h->real, step, strerror(e),
                  e == EINVAL ? " (a kernel without huge pages for tmpfs?)" : ""),
         -1;
}

/*
 * Check the store directory for --huge and make its tmpfs, detached (see the file's
 * comment), in h->mntfd; h->mntfd stays -1 when the directory already is such a
 * mount (nothing to do). CTL_OK, else the exit status, the error printed; the caller
 * closes h's fds either way.
 */
static int huge_prepare(struct ctl *c, const char *path, const char *size_arg,
                        struct huge *h) {
  char bad[PATH_MAX], b[32];
  if (geteuid() != 0)
    return ctl_fail(c,
                    "--huge: only root can mount the store's tmpfs on %s (run it as "
                    "root, e.g. sudo snapctl --store %s init --huge)",
                    path, path);
  /* the record's lines and the commands in it stay one line each */
  if (control_char(path))
    return ctl_fail(c,
                    "--huge: the store path holds a control character (a newline?); "
                    "choose a path without");
  if ((h->dirfd = store_dir_open(path, bad, sizeof bad)) < 0) {
    int e = -h->dirfd;
    if (e == ELOOP)
      return ctl_fail(c,
                      "--huge: %s: %s is a symlink; --huge follows none (a user who can "
                      "change it could have root mount over another directory): give "
                      "the directory's real path",
                      path, bad);
    if (e == EINVAL)
      return ctl_fail(c,
                      "--huge: %s: '..' is refused in the store path; give the "
                      "directory's real path",
                      path);
    return ctl_fail(c, "--huge: %s: %s", bad, strerror(e));
  }
  char fdpath[64];
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", h->dirfd);
  ssize_t n = readlink(fdpath, h->real, sizeof h->real - 1);
  if (n < 0) return ctl_fail(c, "%s: %s", fdpath, strerror(errno));
  h->real[n] = 0;
  if (control_char(h->real))
    return ctl_fail(c, "--huge: %s: the path holds a control character", path);
  struct stat st;
  if (fstat(h->dirfd, &st)) return ctl_fail(c, "%s: %s", h->real, strerror(errno));
  h->uid = st.st_uid;
  h->gid = st.st_gid;

  /* Already a mount point: ours again (idempotent), else refused. */
  struct statx sx;
  if (statx(h->dirfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx))
    return ctl_fail(c, "%s: statx: %s", h->real, strerror(errno));
  if (!(sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) /* kernels before 5.8 */
    return ctl_fail(c,
                    "--huge: this kernel cannot tell whether %s is a mount point "
                    "(statx without STATX_ATTR_MOUNT_ROOT)",
                    h->real);
  char mnt[PATH_MAX], type[64], opts[1024], setting[32];
  if (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) {
    if (ctl_fd_mount(h->dirfd, mnt, sizeof mnt, type, sizeof type, opts, sizeof opts))
      return ctl_fail(c, "--huge: %s is a mount point not in /proc/self/mountinfo",
                      h->real);
    huge_setting(opts, setting, sizeof setting);
    bool huge = !strcmp(type, "tmpfs") &&
                (!strcmp(setting, "within_size") || !strcmp(setting, "always"));
    if (!huge && !strcmp(type, "tmpfs"))
      return ctl_fail(c,
                      "--huge: %s is already a tmpfs mount point, with huge=%s; remount "
                      "it instead: mount -o remount,huge=within_size %s",
                      h->real, setting, h->real);
    if (!huge)
      return ctl_fail(c,
                      "--huge: %s is already a mount point (%s); unmount it first, or "
                      "choose another directory",
                      h->real, type);
    struct statvfs sv;
    uint64_t bytes = fstatvfs(h->dirfd, &sv) ? 0 : (uint64_t)sv.f_blocks * sv.f_frsize;
    uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
    /* tmpfs rounds the size up to whole pages: the same --size is no change */
    if (size_arg && (h->bytes + ps - 1) / ps * ps != bytes)
      return ctl_fail(c,
                      "--huge: %s is already a huge-page tmpfs of %s; --size %s does not "
                      "resize it (resize it with: mount -o remount,size=%s %s)",
                      h->real, ctl_bytes(b, sizeof b, bytes), size_arg, size_arg,
                      h->real);
    printf("%s is already a tmpfs with huge=%s (size %s); not mounted again\n", h->real,
           setting, ctl_bytes(b, sizeof b, bytes));
    return CTL_OK;
  }
  if (!S_ISDIR(st.st_mode)) return ctl_fail(c, "%s: not a directory", h->real);

  /* A tmpfs over a directory hides what is in it: only an empty one will do. */
  int rd = openat(h->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = rd < 0 ? NULL : fdopendir(rd);
  if (!d) {
    int e = errno;
    if (rd >= 0) close(rd);
    return ctl_fail(c, "%s: %s", h->real, strerror(e));
  }
  struct dirent *e;
  char first[NAME_MAX + 1] = "";
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(first, sizeof first, "%s", e->d_name);
      break;
    }
  closedir(d);
  if (first[0])
    return ctl_fail(c,
                    "--huge: %s is not empty (it holds '%s'): a tmpfs mounted over it "
                    "would hide its files; give an empty or new directory (to move an "
                    "existing store, see snapctl doctor)",
                    h->real, first);

  /* Default size: half of the smaller of RAM and this process's cgroup limit (tmpfs
   * pages are charged to the writer's cgroup), in whole huge pages. */
  if (size_arg) {
    snprintf(h->size_opt, sizeof h->size_opt, "%s", size_arg);
  } else {
    char where[1200];
    uint64_t mem = mem_total(), cg = ctl_cgroup_limit(where, sizeof where);
    if (cg && (cg < mem || !mem)) mem = cg;
    h->bytes = mem / 2 / (2u << 20) * (2u << 20);
    if (h->bytes < HUGE_MIN_BYTES) h->bytes = HUGE_MIN_BYTES;
    snprintf(h->size_opt, sizeof h->size_opt, "%llu", (unsigned long long)h->bytes);
  }
  h->mntfd = tmpfs_make(c, h, st.st_mode);
  return h->mntfd < 0 ? CTL_FAIL : CTL_OK;
}

/* Attach the prepared tmpfs onto the store directory, the record written first.
 * Nothing is mounted when it fails. CTL_OK or CTL_FAIL, printed. */
static int huge_attach(struct ctl *c, const struct huge *h) {
  char opts[256], b[32];
  struct statvfs sv;
  uint64_t bytes = fstatvfs(h->mntfd, &sv) ? 0 : (uint64_t)sv.f_blocks * sv.f_frsize;
  struct stat st;
  if (fstat(h->mntfd, &st)) return ctl_fail(c, "%s: %s", h->real, strerror(errno));
  snprintf(opts, sizeof opts, "huge=within_size,size=%s,mode=%o,uid=%u,gid=%u",
           h->size_opt, (unsigned)(st.st_mode & 07777), (unsigned)h->uid,
           (unsigned)h->gid);
  int rc = write_record(h, opts, bytes);
  if (rc)
    return ctl_fail(c, "%s/%s: %s (nothing was mounted)", h->real, CTL_MOUNT_RECORD,
                    strerror(-rc));
  if (move_mount(h->mntfd, "", h->dirfd, "",
                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))
    return ctl_fail(c, "--huge: attaching the tmpfs on %s: %s (nothing was mounted)",
                    h->real, strerror(errno));
  printf("mounted tmpfs huge=within_size, size %s, on %s (recorded in %s/%s)\n",
         ctl_bytes(b, sizeof b, bytes), h->real, h->real, CTL_MOUNT_RECORD);
  return CTL_OK;
}

struct settings {
  uint64_t keep, max;
  int set_max;
};

/* Create (or open) the store at @p path (shown as @p shown) and apply the settings,
 * as its current user. */
static int init_store(struct ctl *c, const struct settings *o, const char *path,
                      const char *shown) {
  /* Tell "created" from "already there" by the control file's presence. */
  char control[4096];
  snprintf(control, sizeof control, "%s/control.mdb", path);
  struct stat st;
  /* an empty file (init killed before LMDB wrote it) is a new store; a lost or
   * damaged one next to segments is refused by the library, naming the repair
   * (snapctl doctor --rebuild) */
  int existed = stat(control, &st) == 0 && st.st_size > 0;

  snap_store *store;
  struct ctl at = *c;
  at.store_path = path;
  int rc = ctl_open(&at, SNAP_CREATE, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  if (o->keep && (rc = snap_store_set_keep(store, NULL, (uint32_t)o->keep, &err))) {
    snap_store_close(store);
    return ctl_fail_snap(c, "--keep", rc, &err);
  }
  if (o->set_max && (rc = snap_store_set_max_datasets(store, (uint32_t)o->max, &err))) {
    snap_store_close(store);
    return ctl_fail_snap(c, "--max-datasets", rc, &err);
  }
  printf("%s store %s", existed ? "existing" : "created", shown);
  if (o->keep) printf(" (new datasets keep %llu versions)", (unsigned long long)o->keep);
  if (o->set_max && o->max)
    printf(" (at most %llu datasets)", (unsigned long long)o->max);
  if (o->set_max && !o->max) printf(" (no dataset limit)");
  printf("\n");
  snap_store_close(store);
  return CTL_OK;
}

/* init_store in the directory @p dirfd, in a child that works there as @p uid (group
 * @p gid, no supplementary groups) when that is not root. A child killed by a signal
 * is a failure. */
static int init_store_in(struct ctl *c, const struct settings *o, int dirfd,
                         const char *shown, uid_t uid, gid_t gid) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return ctl_fail(c, "fork: %s", strerror(errno));
  if (pid == 0) {
    if (fchdir(dirfd)) {
      ctl_fail(c, "%s: %s", shown, strerror(errno));
      _exit(CTL_FAIL);
    }
    if (uid != geteuid() && (setgroups(0, NULL) || setgid(gid) || setuid(uid))) {
      ctl_fail(c, "becoming uid %u gid %u: %s", (unsigned)uid, (unsigned)gid,
               strerror(errno));
      _exit(CTL_FAIL);
    }
    int code = init_store(c, o, ".", shown);
    fflush(stdout);
    _exit(code);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return ctl_fail(c, "waitpid: %s", strerror(errno));
  if (WIFSIGNALED(status))
    return ctl_fail(c, "%s: creating the store: killed by signal %d (%s)", shown,
                    WTERMSIG(status), strsignal(WTERMSIG(status)));
  return WIFEXITED(status) ? WEXITSTATUS(status) : CTL_FAIL;
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"keep", required_argument, NULL, 'k'},
                                           {"max-datasets", required_argument, NULL, 'm'},
                                           {"huge", no_argument, NULL, 'H'},
                                           {"size", required_argument, NULL, 'S'},
                                           {0}};
  struct settings o = {0};
  struct huge h = {.dirfd = -1, .mntfd = -1};
  const char *size_arg = NULL;
  bool huge = false;
  int opt, code;
  char b[32], b2[32];
  while ((opt = ctl_getopt(&ctl_cmd_init, c, argc, argv, "k:", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (opt == 'k' &&
        (ctl_parse_u64(optarg, &o.keep) || o.keep < 1 || o.keep > UINT32_MAX))
      return ctl_usage(c, "--keep: '%s' is not a count >= 1", optarg);
    if (opt == 'm') {
      if (ctl_parse_u64(optarg, &o.max) || o.max > UINT32_MAX)
        return ctl_usage(c, "--max-datasets: '%s' is not a count (0: no limit)", optarg);
      o.set_max = 1;
    }
    if (opt == 'H') huge = true;
    if (opt == 'S') {
      int rc = size_parse(optarg, &h.bytes);
      if (rc == -2)
        return ctl_usage(c, "--size: '%s' is too large (at most %s)", optarg,
                         ctl_bytes(b, sizeof b, HUGE_MAX_BYTES));
      if (rc)
        return ctl_usage(c,
                         "--size: '%s' is not a size (bytes, with an optional K, M, G "
                         "or T, or a percentage of RAM such as 50%%)",
                         optarg);
      if (h.bytes < HUGE_MIN_BYTES)
        return ctl_usage(c, "--size: '%s' is %s, below the minimum of %s", optarg,
                         ctl_bytes(b, sizeof b, h.bytes),
                         ctl_bytes(b2, sizeof b2, HUGE_MIN_BYTES));
      size_arg = optarg;
    }
  }
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
  if (size_arg && !huge) return ctl_usage(c, "--size goes with --huge");
  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  if (!huge) return init_store(c, &o, path, path);

  int rc = huge_prepare(c, path, size_arg, &h);
  /* the store is made in the new tmpfs before it is attached (or in the existing one) */
  if (!rc)
    rc = init_store_in(c, &o, h.mntfd >= 0 ? h.mntfd : h.dirfd, h.real, h.uid, h.gid);
  if (rc && h.mntfd >= 0)
    fprintf(stderr, "snapctl: init: %s: nothing was mounted\n", h.real);
  if (!rc && h.mntfd >= 0) rc = huge_attach(c, &h);
  /* a detached tmpfs goes away with its last fd */
  if (h.mntfd >= 0) close(h.mntfd);
  if (h.dirfd >= 0) close(h.dirfd);
  return rc;
}

const struct ctl_command ctl_cmd_init = {
    "init", "create a store",
    "usage: snapctl [--store PATH] init [--keep N] [--max-datasets N] [--huge [--size "
    "SIZE]]\n"
    "\n"
    "Create the store directory and its control file (parents included). An existing\n"
    "store is left as it is (its settings are updated when options are given).\n"
    "\n"
    "  -k, --keep N          datasets created from now on keep the current version\n"
    "                        plus N-1 others for rollback\n"
    "      --max-datasets N  refuse to create more than N datasets (a publish of a\n"
    "                        new one fails, naming the limit); 0: no limit (default)\n"
    "      --huge            (root) first mount the store's own tmpfs with\n"
    "                        huge=within_size on the store directory (new or empty),\n"
    "                        with the directory's owner, group and mode, and record it\n"
    "                        in PATH/mount; the store is created as the directory's\n"
    "                        owner. A tmpfs is empty after a reboot: mount it again.\n"
    "                        Nothing is done when PATH already is a huge-page tmpfs.\n"
    "      --size SIZE       the tmpfs's size, at least 16M: bytes with an optional K,\n"
    "                        M, G or T, or a percentage of RAM (50%); default half of\n"
    "                        the smaller of RAM and this process's cgroup memory limit.\n"
    "                        The same size again on a mounted store is no change.\n"
    "                        No component of PATH may be a symlink.\n",
    run};
