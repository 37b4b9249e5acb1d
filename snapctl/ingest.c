/* Ingest entry points: pick the format, map the input, hand it to a parser. */
#define _GNU_SOURCE
#include "ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ingest_error(struct snap_error *err, int status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = status;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return status;
}
#define fail ingest_error

enum ingest_format ingest_format_from_name(const char *name) {
  const char *dot = name ? strrchr(name, '.') : NULL;
  if (!dot || strchr(dot, '/')) return INGEST_AUTO;
  if (!strcasecmp(dot, ".npy")) return INGEST_NPY;
  if (!strcasecmp(dot, ".seg")) return INGEST_SEG;
  if (!strcasecmp(dot, ".csv") || !strcasecmp(dot, ".txt")) return INGEST_CSV;
  return INGEST_AUTO;
}

int ingest_buffer(snap_store *store, const char *dataset, const void *buf, size_t len,
                  const struct ingest_options *opt, struct ingest_result *res,
                  struct snap_error *err) {
  struct ingest_options o = {0};
  if (opt) o = *opt;
  if (!o.display_name) o.display_name = "<input>";
  if (o.format == INGEST_AUTO) o.format = ingest_format_from_name(o.display_name);
  if (res) memset(res, 0, sizeof *res);
  switch (o.format) {
    case INGEST_NPY:
      return ingest_npy(store, dataset, buf, len, &o, res, err);
    case INGEST_CSV:
      return ingest_csv(store, dataset, buf, len, &o, res, err);
    case INGEST_SEG:
      return fail(err, SNAP_EINVAL,
                  "%s: a segment is published from a file, not a buffer%s",
                  o.display_name, "");
    default:
      return fail(err, SNAP_EINVAL,
                  "%s: unknown input format (name it .npy or .csv, or give the format)%s",
                  o.display_name, "");
  }
}

int ingest_fd(snap_store *store, const char *dataset, int fd,
              const struct ingest_options *opt, struct ingest_result *res,
              struct snap_error *err) {
  const char *name = opt && opt->display_name ? opt->display_name : "<input>";
  struct stat st;
  if (fstat(fd, &st)) return fail(err, -errno, "%s: fstat: %s", name, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail(err, SNAP_EINVAL, "%s: not a regular file%s", name, "");
  enum ingest_format format = opt ? opt->format : INGEST_AUTO;
  if (format == INGEST_AUTO) format = ingest_format_from_name(name);
  if (format == INGEST_SEG) { /* validated completely, copied once, by the library */
    uint64_t v;
    int rc = snap_publish_import(store, dataset, fd, &v, err);
    if (rc) {
      if (err && !strncmp(err->message, "import: ", 8)) { /* name the file */
        char why[sizeof err->message];
        snprintf(why, sizeof why, "%s", err->message + 8);
        ingest_error(err, rc, "%s: %s", name, why);
      }
      return rc;
    }
    if (res) {
      memset(res, 0, sizeof *res);
      res->version = v;
      res->input_bytes = (uint64_t)st.st_size;
      snap_snapshot *s;
      if (!snap_pin_version(store, dataset, v, &s, NULL)) {
        res->nrows = snap_snapshot_nrows(s);
        res->ncols = snap_snapshot_ncols(s);
        snap_unpin(s);
      }
    }
    return 0;
  }
  size_t len = (size_t)st.st_size;
  void *map = NULL;
  if (len) {
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED)
      return fail(err, -errno, "%s: mmap: %s", name, strerror(errno));
    madvise(map, len, MADV_SEQUENTIAL);
  }
  int rc = ingest_buffer(store, dataset, len ? map : "", len, opt, res, err);
  if (len) munmap(map, len);
  return rc;
}

int ingest_file(snap_store *store, const char *dataset, const char *path,
                const struct ingest_options *opt, struct ingest_result *res,
                struct snap_error *err) {
  struct ingest_options o = {0};
  if (opt) o = *opt;
  if (!o.display_name) o.display_name = path;
  if (o.format == INGEST_AUTO) o.format = ingest_format_from_name(path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(err, -errno, "%s: %s", path, strerror(errno));
  int rc = ingest_fd(store, dataset, fd, &o, res, err);
  close(fd);
  return rc;
}
