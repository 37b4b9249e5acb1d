/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl init: create a store (or leave an existing one alone).
 *
 * With --huge (root), first mount the store's own tmpfs with huge=within_size on the
 * store directory, owned and moded as the directory (so a directory prepared with
 * `install -d -m 2750 -o writer -g readers` keeps its owner and group), and write
 * what was mounted into <store>/mount (docs/format.md section 12) for doctor and for
 * the operator who has to mount it again after a reboot. The store is then created
 * as its owner would create it: when the directory's owner is not root, by a child
 * that has become that owner, so that the writer can open the files it creates.
 * Anything that fails after the mount unmounts it again.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "snapctl.h"

/* Mount flags of the store's tmpfs: segments are mapped for reading, never run. */
#define HUGE_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)
#define HUGE_FLAG_NAMES "nosuid,nodev,noexec"

/* A tmpfs size as tmpfs takes it: digits then one of k, m, g, t (either case), or a
 * percentage of RAM from 1 to 100 ("50%"). 0 when valid. */
static int size_check(const char *s) {
  uint64_t v;
  char digits[32];
  size_t n = strspn(s, "0123456789");
  if (n == 0 || n >= sizeof digits) return -1;
  memcpy(digits, s, n);
  digits[n] = 0;
  if (ctl_parse_u64(digits, &v) || v == 0) return -1;
  if (!s[n]) return 0;
  if (s[n + 1]) return -1;
  if (s[n] == '%') return v <= 100 ? 0 : -1;
  return strchr("kKmMgGtT", s[n]) ? 0 : -1;
}

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

/* mkdir -p as snap_store_open(SNAP_CREATE) does it: parents 0755, the store
 * directory 2750 whatever the umask. */
static int mkdirs(const char *path) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -ENAMETOOLONG;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(tmp, 02750) == 0) return chmod(tmp, 02750) ? -errno : 0;
  return errno == EEXIST ? 0 : -errno;
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

/* Write <dir>/mount: what was mounted and how to mount it again. 0 or -errno. */
static int write_record(const char *dir, const char *opts, const char *size_opt,
                        uint64_t bytes, uid_t uid, gid_t gid) {
  char path[PATH_MAX + 16], tstr[64], esc[4 * PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, CTL_MOUNT_RECORD);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return -errno;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    int e = errno;
    close(fd);
    unlink(path);
    return -e;
  }
  fprintf(f,
          "# Written by snapctl init --huge: this store is on its own tmpfs. A tmpfs is\n"
          "# empty after a reboot: mount it again at boot (then publish again) with\n"
          "#   snapctl --store '%s' init --huge --size %s\n"
          "# or with this /etc/fstab line (then snapctl --store '%s' init):\n"
          "#   libsnap %s tmpfs %s,%s 0 0\n",
          dir, size_opt, dir, fstab_escape(esc, sizeof esc, dir), HUGE_FLAG_NAMES, opts);
  fprintf(f, "fstype=tmpfs\nsource=libsnap\noptions=%s,%s\nsize=%llu\n", HUGE_FLAG_NAMES,
          opts, (unsigned long long)bytes);
  fprintf(f, "mounted=%s\nmounted_ns=%lld\n", ctl_time_iso(tstr, sizeof tstr, ns),
          (long long)ns);
  fprintf(f, "command=snapctl --store '%s' init --huge --size %s\n", dir, size_opt);
  int rc = 0;
  if (fchown(fd, uid, gid) || fchmod(fd, 0640)) rc = -errno;
  if (fflush(f) || fsync(fd)) rc = rc ? rc : -errno;
  if (fclose(f) && !rc) rc = -errno;
  if (rc) unlink(path);
  return rc;
}

/*
 * Mount the store's huge-page tmpfs on @p path (see the file's comment). Sets
 * *mounted when it mounted one (so the caller unmounts it on a later failure) and
 * the owner the store must be created as. CTL_OK (also when the directory already
 * is such a mount: nothing to do), else the exit status, the error printed.
 */
static int huge_mount(struct ctl *c, const char *path, const char *size_arg, char *real,
                      bool *mounted, uid_t *uid, gid_t *gid) {
  *mounted = false;
  if (geteuid() != 0)
    return ctl_fail(c,
                    "--huge: only root can mount the store's tmpfs on %s (run it as "
                    "root, e.g. sudo snapctl --store %s init --huge)",
                    path, path);
  int rc = mkdirs(path);
  if (rc) return ctl_fail(c, "%s: creating the store directory: %s", path, strerror(-rc));
  if (!realpath(path, real)) return ctl_fail(c, "%s: %s", path, strerror(errno));
  struct stat st;
  if (stat(real, &st)) return ctl_fail(c, "%s: %s", real, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return ctl_fail(c, "%s: not a directory", real);
  *uid = st.st_uid;
  *gid = st.st_gid;

  /* Already a mount point: ours again (idempotent), else refused. */
  char mnt[PATH_MAX], type[64], opts[1024], setting[32], b[32];
  if (!ctl_find_mount(real, mnt, sizeof mnt, type, sizeof type, opts, sizeof opts) &&
      !strcmp(mnt, real)) {
    huge_setting(opts, setting, sizeof setting);
    bool huge = !strcmp(type, "tmpfs") &&
                (!strcmp(setting, "within_size") || !strcmp(setting, "always"));
    if (!huge && !strcmp(type, "tmpfs"))
      return ctl_fail(c,
                      "--huge: %s is already a tmpfs mount point, with huge=%s; remount "
                      "it instead: mount -o remount,huge=within_size %s",
                      real, setting, real);
    if (!huge)
      return ctl_fail(c,
                      "--huge: %s is already a mount point (%s); unmount it first, or "
                      "choose another directory",
                      real, type);
    if (size_arg)
      return ctl_fail(c,
                      "--huge: %s is already a huge-page tmpfs; --size changes nothing "
                      "there (resize it with: mount -o remount,size=%s %s)",
                      real, size_arg, real);
    struct statvfs sv;
    uint64_t bytes = statvfs(real, &sv) ? 0 : (uint64_t)sv.f_blocks * sv.f_frsize;
    printf("%s is already a tmpfs with huge=%s (size %s); not mounted again\n", real,
           setting, ctl_bytes(b, sizeof b, bytes));
    return CTL_OK;
  }

  /* A tmpfs over a directory hides what is in it: only an empty one will do. */
  DIR *d = opendir(real);
  if (!d) return ctl_fail(c, "%s: %s", real, strerror(errno));
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
                    real, first);

  /* Default size: half of the smaller of RAM and this process's cgroup limit (tmpfs
   * pages are charged to the writer's cgroup), in whole huge pages. */
  char size_opt[64], where[1200];
  if (size_arg) {
    snprintf(size_opt, sizeof size_opt, "%s", size_arg);
  } else {
    uint64_t mem = mem_total(), cg = ctl_cgroup_limit(where, sizeof where);
    if (cg && (cg < mem || !mem)) mem = cg;
    uint64_t half = mem / 2 / (2u << 20) * (2u << 20);
    if (!half) half = 2u << 20;
    snprintf(size_opt, sizeof size_opt, "%llu", (unsigned long long)half);
  }
  char mopts[256];
  snprintf(mopts, sizeof mopts, "huge=within_size,size=%s,mode=%o,uid=%u,gid=%u",
           size_opt, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
           (unsigned)st.st_gid);
  if (mount("libsnap", real, "tmpfs", HUGE_FLAGS, mopts))
    return ctl_fail(c, "--huge: mount -t tmpfs -o %s,%s libsnap %s: %s%s",
                    HUGE_FLAG_NAMES, mopts, real, strerror(errno),
                    errno == EINVAL ? " (a size tmpfs refuses, or a kernel without "
                                      "huge pages for tmpfs)"
                                    : "");
  *mounted = true;
  struct statvfs sv;
  uint64_t bytes = statvfs(real, &sv) ? 0 : (uint64_t)sv.f_blocks * sv.f_frsize;
  if ((rc = write_record(real, mopts, size_opt, bytes, st.st_uid, st.st_gid))) {
    umount2(real, 0);
    *mounted = false;
    return ctl_fail(c, "%s/%s: %s (the tmpfs is unmounted again)", real, CTL_MOUNT_RECORD,
                    strerror(-rc));
  }
  printf("mounted tmpfs huge=within_size, size %s, on %s (recorded in %s/%s)\n",
         ctl_bytes(b, sizeof b, bytes), real, real, CTL_MOUNT_RECORD);
  return CTL_OK;
}

struct settings {
  uint64_t keep, max;
  int set_max;
};

/* Create (or open) the store and apply the settings, as its current user. */
static int init_store(struct ctl *c, const struct settings *o) {
  /* Tell "created" from "already there" by the control file's presence. */
  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  char control[4096];
  snprintf(control, sizeof control, "%s/control.mdb", path);
  struct stat st;
  /* an empty file (init killed before LMDB wrote it) is a new store; a lost or
   * damaged one next to segments is refused by the library, naming the repair
   * (snapctl doctor --rebuild) */
  int existed = stat(control, &st) == 0 && st.st_size > 0;

  snap_store *store;
  int rc = ctl_open(c, SNAP_CREATE, &store);
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
  printf("%s store %s", existed ? "existing" : "created", snap_store_path(store));
  if (o->keep) printf(" (new datasets keep %llu versions)", (unsigned long long)o->keep);
  if (o->set_max && o->max)
    printf(" (at most %llu datasets)", (unsigned long long)o->max);
  if (o->set_max && !o->max) printf(" (no dataset limit)");
  printf("\n");
  snap_store_close(store);
  return CTL_OK;
}

/* init_store as @p uid (group @p gid, no supplementary groups), in a child. */
static int init_store_as(struct ctl *c, const struct settings *o, uid_t uid, gid_t gid) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return ctl_fail(c, "fork: %s", strerror(errno));
  if (pid == 0) {
    if (setgroups(0, NULL) || setgid(gid) || setuid(uid)) {
      ctl_fail(c, "becoming uid %u gid %u: %s", (unsigned)uid, (unsigned)gid,
               strerror(errno));
      _exit(CTL_FAIL);
    }
    int code = init_store(c, o);
    fflush(stdout);
    _exit(code);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return ctl_fail(c, "waitpid: %s", strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : CTL_FAIL;
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"keep", required_argument, NULL, 'k'},
                                           {"max-datasets", required_argument, NULL, 'm'},
                                           {"huge", no_argument, NULL, 'H'},
                                           {"size", required_argument, NULL, 'S'},
                                           {0}};
  struct settings o = {0};
  const char *size_arg = NULL;
  bool huge = false;
  int opt, code;
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
      if (size_check(optarg))
        return ctl_usage(c,
                         "--size: '%s' is not a size (bytes, with an optional K, M, G "
                         "or T, or a percentage of RAM such as 50%%)",
                         optarg);
      size_arg = optarg;
    }
  }
  if (optind < argc) return ctl_usage(c, "unexpected argument '%s'", argv[optind]);
  if (size_arg && !huge) return ctl_usage(c, "--size goes with --huge");
  if (!huge) return init_store(c, &o);

  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  char real[PATH_MAX];
  bool mounted = false;
  uid_t uid = 0;
  gid_t gid = 0;
  int rc = huge_mount(c, path, size_arg, real, &mounted, &uid, &gid);
  if (rc) return rc;
  rc = uid == geteuid() ? init_store(c, &o) : init_store_as(c, &o, uid, gid);
  if (rc && mounted) {
    /* leave nothing behind: the tmpfs holds only what this command made */
    if (umount2(real, 0) && umount2(real, MNT_DETACH))
      return ctl_fail(c, "%s: unmounting after the failure above: %s", real,
                      strerror(errno));
    fprintf(stderr, "snapctl: init: %s: the tmpfs is unmounted again\n", real);
  }
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
    "      --size SIZE       the tmpfs's size: bytes with an optional K, M, G or T, or\n"
    "                        a percentage of RAM (50%); default half of the smaller of\n"
    "                        RAM and this process's cgroup memory limit\n",
    run};
