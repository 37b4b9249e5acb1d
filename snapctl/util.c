/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl helpers: messages, option parsing, store opening, formatting, tables. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "snapctl.h"

int ctl_fail(const struct ctl *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "snapctl: %s: ", c->cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return CTL_FAIL;
}

int ctl_usage(const struct ctl *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "snapctl: %s: ", c->cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see 'snapctl %s --help')\n", c->cmd);
  va_end(ap);
  return CTL_USAGE;
}

/* @p s with control bytes as \xNN, so that a message stays on one line. */
static const char *one_line(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 5 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 0x20 || ch == 0x7f)
      n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
    else
      out[n++] = (char)ch;
  }
  out[n] = 0;
  return out;
}

int ctl_fail_snap(const struct ctl *c, const char *what, int status,
                  const struct snap_error *err) {
  const char *msg = err && err->message[0] ? err->message : snap_strerror(status);
  char w[4 * SNAP_DATASET_NAME_MAX + 64], m[4 * sizeof err->message];
  if (what)
    return ctl_fail(c, "%s: %s", one_line(w, sizeof w, what), one_line(m, sizeof m, msg));
  return ctl_fail(c, "%s", one_line(m, sizeof m, msg));
}

int ctl_getopt(const struct ctl_command *cmd, struct ctl *c, int argc, char **argv,
               const char *shortopts, const struct option *longopts, int *exit_code) {
  struct option all[32];
  size_t n = 0;
  while (longopts && longopts[n].name && n < 30) all[n] = longopts[n], n++;
  all[n++] = (struct option){"help", no_argument, NULL, 'h'};
  all[n] = (struct option){0};
  char shorts[64];
  snprintf(shorts, sizeof shorts, ":h%s", shortopts ? shortopts : "");
  int opt = getopt_long(argc, argv, shorts, all, NULL);
  if (opt == 'h') {
    fputs(cmd->usage, stdout);
    *exit_code = CTL_OK;
    return -2;
  }
  if (opt == '?') {
    if (optopt)
      ctl_usage(c, "unknown option '-%c'", optopt);
    else
      ctl_usage(c, "unknown option '%s'", argv[optind - 1]);
    *exit_code = CTL_USAGE;
    return -2;
  }
  if (opt == ':') {
    ctl_usage(c, "option '%s' needs a value", argv[optind - 1]);
    *exit_code = CTL_USAGE;
    return -2;
  }
  return opt;
}

int ctl_open(struct ctl *c, unsigned flags, snap_store **out) {
  struct snap_error err = {0};
  int rc = snap_store_open(c->store_path, flags, out, &err);
  if (!rc) return CTL_OK;
  const char *path = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!path || !*path) path = SNAP_STORE_DEFAULT;
  if (rc == SNAP_ENOTFOUND && !(flags & SNAP_CREATE))
    return ctl_fail(c, "%s: no store here (create one with 'snapctl --store %s init')",
                    path, path);
  return ctl_fail_snap(c, path, rc, &err);
}

int ctl_parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - d) / 10) return -1; /* no wrap */
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int ctl_parse_range(const struct ctl *c, const char *what, const char *s, uint64_t lo,
                    uint64_t hi, uint64_t *out) {
  if (!ctl_parse_u64(s, out) && *out >= lo && *out <= hi) return CTL_OK;
  return ctl_usage(c, "%s: '%s' is not an integer from %llu to %llu", what, s,
                   (unsigned long long)lo, (unsigned long long)hi);
}

int ctl_parse_target(struct ctl *c, const char *arg, char *dataset, size_t cap,
                     uint64_t *version) {
  *version = 0;
  const char *at = strrchr(arg, '@');
  size_t n = strlen(arg);
  /* "@" then something number-like is a version, checked in full ("d@-1",
   * "d@1.5", "d@99999999999999999999" are errors, not names) */
  if (at && at[1] && strchr("0123456789+-", at[1])) {
    char what[64];
    snprintf(what, sizeof what, "version in '%.40s'", arg);
    if (ctl_parse_range(c, what, at + 1, 1, UINT64_MAX, version)) return CTL_USAGE;
    n = (size_t)(at - arg);
  } else if (at && !at[1]) {
    return ctl_usage(c, "missing version after '@' in '%s'", arg);
  }
  if (n == 0) return ctl_usage(c, "missing dataset name in '%s'", arg);
  if (n >= cap) return ctl_usage(c, "dataset name too long: '%s'", arg);
  memcpy(dataset, arg, n);
  dataset[n] = 0;
  return CTL_OK;
}

const char *ctl_bytes(char *out, size_t cap, uint64_t bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) {
    snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    return out;
  }
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 5) v /= 1024, u++;
  snprintf(out, cap, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return out;
}

const char *ctl_time_local(char *out, size_t cap, uint64_t ns) {
  time_t t = (time_t)(ns / 1000000000u);
  struct tm tm;
  if (!ns || !localtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
    snprintf(out, cap, "-");
  return out;
}

const char *ctl_time_iso(char *out, size_t cap, int64_t ns) {
  int64_t s = ns / 1000000000, f = ns % 1000000000;
  if (f < 0) f += 1000000000, s--;
  time_t t = (time_t)s;
  struct tm tm;
  char base[32];
  if (!gmtime_r(&t, &tm) || !strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm)) {
    snprintf(out, cap, "%lld", (long long)ns);
    return out;
  }
  if (!f) {
    snprintf(out, cap, "%sZ", base);
  } else {
    char frac[16];
    snprintf(frac, sizeof frac, "%09lld", (long long)f);
    size_t k = 9;
    while (k > 0 && frac[k - 1] == '0') k--;
    frac[k] = 0;
    snprintf(out, cap, "%s.%sZ", base, frac);
  }
  return out;
}

void ctl_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"':
        fputs("\\\"", f);
        break;
      case '\\':
        fputs("\\\\", f);
        break;
      case '\n':
        fputs("\\n", f);
        break;
      case '\t':
        fputs("\\t", f);
        break;
      case '\r':
        fputs("\\r", f);
        break;
      default:
        if (*p < 0x20)
          fprintf(f, "\\u%04x", *p);
        else
          fputc(*p, f);
    }
  }
  fputc('"', f);
}

const char *ctl_proc_cmdline(char *out, size_t cap, pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, out, cap - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) {
    snprintf(out, cap, "?");
    return out;
  }
  while (n > 0 && out[n - 1] == 0) n--;
  for (ssize_t i = 0; i < n; i++)
    if (out[i] == 0 || out[i] == '\n') out[i] = ' ';
  out[n] = 0;
  return out;
}

uint64_t ctl_proc_start_ns(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  /* field 22 (starttime, clock ticks after boot); the command (field 2) may hold
   * spaces and parentheses, so count fields after the last ')' */
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  unsigned long long ticks = 0;
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " "))
    if (++field == 22) {
      ticks = strtoull(tok, NULL, 10);
      break;
    }
  if (field != 22) return 0;
  long hz = sysconf(_SC_CLK_TCK);
  struct timespec now, up;
  clock_gettime(CLOCK_REALTIME, &now);
  clock_gettime(CLOCK_BOOTTIME, &up);
  int64_t boot_ns =
      ((int64_t)now.tv_sec - up.tv_sec) * 1000000000 + now.tv_nsec - up.tv_nsec;
  return (uint64_t)(boot_ns + (int64_t)(ticks * 1000000000ull / (unsigned long long)hz));
}

void ctl_table_init(struct ctl_table *t, size_t ncols, const char *align) {
  memset(t, 0, sizeof *t);
  t->ncols = ncols;
  t->right = align;
}

void ctl_table_cell(struct ctl_table *t, const char *fmt, ...) {
  if (t->ncells == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    char **p = realloc(t->cells, cap * sizeof *p);
    if (!p) abort(); /* a CLI out of memory for a few table cells */
    t->cells = p;
    t->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) abort();
  va_end(ap);
  t->cells[t->ncells++] = s;
}

void ctl_table_print(const struct ctl_table *t, FILE *f) {
  size_t w[32] = {0}, nc = t->ncols < 32 ? t->ncols : 32;
  for (size_t i = 0; i < t->ncells; i++) {
    size_t k = i % t->ncols, len = strlen(t->cells[i]);
    if (k < nc && len > w[k]) w[k] = len;
  }
  char *line = NULL;
  size_t cap = 0;
  FILE *m = open_memstream(&line, &cap);
  if (!m) return;
  for (size_t i = 0; i < t->ncells; i++) {
    size_t k = i % t->ncols;
    int last = k == t->ncols - 1 || i == t->ncells - 1;
    int width = k < nc ? (int)w[k] : 0;
    if (t->right && t->right[k] == 'r')
      fprintf(m, "%*s", width, t->cells[i]);
    else
      fprintf(m, "%-*s", width, t->cells[i]);
    if (!last) {
      fputs("  ", m);
      continue;
    }
    fflush(m);
    size_t n = strlen(line);
    while (n && line[n - 1] == ' ') n--; /* no trailing blanks */
    fwrite(line, 1, n, f);
    fputc('\n', f);
    rewind(m);
    fflush(m);
    line[0] = 0;
  }
  fclose(m);
  free(line);
}

void ctl_table_free(struct ctl_table *t) {
  for (size_t i = 0; i < t->ncells; i++) free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof *t);
}

int ctl_pin_target(struct ctl *c, const char *arg, snap_store **store,
                   snap_snapshot **snap) {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version;
  *store = NULL;
  *snap = NULL;
  int rc = ctl_parse_target(c, arg, dataset, sizeof dataset, &version);
  if (rc || (rc = ctl_open(c, SNAP_RDONLY, store))) return rc;
  struct snap_error err = {0};
  rc = version ? snap_pin_version(*store, dataset, version, snap, &err)
               : snap_pin(*store, dataset, snap, &err);
  if (rc) {
    rc = ctl_fail_snap(c, arg, rc, &err);
    snap_store_close(*store);
    *store = NULL;
  }
  return rc;
}

/* ---------------------------------------------------------- mounts, memory */

/* Decode mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_mount(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
      *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else {
      *o++ = *p;
    }
  }
  *o = 0;
}

/* One line of mountinfo, split in place: "id parent maj:min root mountpoint options
 * [optional...] - fstype source superopts". 0, or -1 when malformed. */
static int mountinfo_split(char *line, unsigned long long *id, char **point, char **type,
                           char **super) {
  char *save, *tok = strtok_r(line, " \n", &save);
  if (!tok) return -1;
  *id = strtoull(tok, NULL, 10);
  *point = NULL;
  for (int i = 1; tok && i < 5; i++) tok = strtok_r(NULL, " \n", &save), *point = tok;
  if (!*point) return -1;
  while ((tok = strtok_r(NULL, " \n", &save)) && strcmp(tok, "-")) {
  }
  *type = strtok_r(NULL, " \n", &save);
  strtok_r(NULL, " \n", &save); /* source */
  *super = strtok_r(NULL, " \n", &save);
  if (!*type || !*super) return -1;
  unescape_mount(*point);
  return 0;
}

/* The mount chosen by @p path (longest mount point holding it) or, when @p path is
 * NULL, the one with mount ID @p want. */
static int mount_find(const char *path, unsigned long long want, char *mnt, size_t mcap,
                      char *fstype, size_t fcap, char *opts, size_t ocap) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return -1;
  char *line = NULL, *point, *type, *super;
  size_t cap = 0, best = 0;
  unsigned long long id;
  int found = -1;
  while (getline(&line, &cap, f) > 0) {
    if (mountinfo_split(line, &id, &point, &type, &super)) continue;
    size_t n = strlen(point);
    int match = path ? !strncmp(path, point, n) &&
                           (path[n] == '/' || path[n] == 0 || n == 1) && n >= best
                     : id == want;
    if (match) {
      best = n;
      snprintf(mnt, mcap, "%s", point);
      snprintf(fstype, fcap, "%s", type);
      snprintf(opts, ocap, "%s", super);
      found = 0;
    }
  }
  free(line);
  fclose(f);
  return found;
}

int ctl_find_mount(const char *path, char *mnt, size_t mcap, char *fstype, size_t fcap,
                   char *opts, size_t ocap) {
  return mount_find(path, 0, mnt, mcap, fstype, fcap, opts, ocap);
}

int ctl_fd_mount(int fd, char *mnt, size_t mcap, char *fstype, size_t fcap, char *opts,
                 size_t ocap) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  unsigned long long id = 0;
  int have = 0;
  while (!have && fgets(line, sizeof line, f))
    have = sscanf(line, "mnt_id: %llu", &id) == 1;
  fclose(f);
  return have ? mount_find(NULL, id, mnt, mcap, fstype, fcap, opts, ocap) : -1;
}

const char *ctl_shell_quote(char *out, size_t cap, const char *s) {
  size_t n = 0;
  if (cap < 3) return "''";
  out[n++] = '\'';
  for (; *s && n + 6 < cap; s++) {
    if (*s == '\'') {
      memcpy(out + n, "'\\''", 4); /* close, an escaped quote, reopen */
      n += 4;
    } else {
      out[n++] = *s;
    }
  }
  out[n++] = '\'';
  out[n] = 0;
  return out;
}

uint64_t ctl_cgroup_limit(char *where, size_t cap) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return 0;
  char line[1024], v2[1024] = "", v1[1024] = "";
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "0::", 3)) snprintf(v2, sizeof v2, "%s", line + 3);
    char *m = strstr(line, ":memory:");
    if (m) snprintf(v1, sizeof v1, "%s", m + 8);
  }
  fclose(f);
  const char *candidates[4][2] = {{"/sys/fs/cgroup%s/memory.max", v2},
                                  {"/sys/fs/cgroup/unified%s/memory.max", v2},
                                  {"/sys/fs/cgroup/memory%s/memory.limit_in_bytes", v1},
                                  {"/sys/fs/cgroup/memory/memory.limit_in_bytes", ""}};
  for (int i = 0; i < 4; i++) {
    char path[1200];
    if (i < 3 && !candidates[i][1][0]) continue;
    snprintf(path, sizeof path, candidates[i][0], candidates[i][1]);
    FILE *g = fopen(path, "re");
    if (!g) continue;
    char val[64] = "";
    int ok = fgets(val, sizeof val, g) != NULL;
    fclose(g);
    if (!ok) continue;
    snprintf(where, cap, "%s", path);
    if (!strncmp(val, "max", 3)) return 0;
    unsigned long long v = strtoull(val, NULL, 10);
    return v >= (1ull << 62) ? 0 : v; /* v1's "unlimited" is a huge number */
  }
  return 0;
}
