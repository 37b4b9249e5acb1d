/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ingest entry points: pick the format, map the input, hand it to a parser. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

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
  if (o.append && o.format != INGEST_NPY)
    return fail(err, SNAP_EINVAL,
                "%s: appending takes .npy input (a CSV is published whole)%s",
                o.display_name, "");
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

/* Whether the input may change under a mapping of it: a read lease, which the
 * kernel grants only while no process has the file open for writing, makes any
 * later open for writing (or truncate) wait until the lease is given back, and
 * ingest_interrupted() sees that as soon as it starts. 0: leased; 1: no lease to
 * be had (not the owner and no CAP_LEASE, or a file system without leases): the
 * caller reads the file instead of mapping it, so that nothing can turn into a
 * SIGBUS; SNAP_EBUSY: open for writing now. */
static int take_lease(int fd, const char *name, struct snap_error *err) {
  if (!fcntl(fd, F_SETLEASE, F_RDLCK)) {
    /* taking a lease makes this process the file's owner, which a lease break
     * signals with SIGIO, whose default action is to terminate: no owner, no
     * signal (ingest_interrupted() polls instead) */
    fcntl(fd, F_SETOWN, 0);
    return 0;
  }
  if (errno == EAGAIN || errno == EBUSY)
    return fail(err, SNAP_EBUSY,
                "%s: open for writing by another process: publish a file once it is "
                "complete (write it elsewhere, then rename it in)",
                name);
  return 1;
}

/* Read len bytes of fd into a new buffer; a file that is not len bytes long any
 * more is an error. */
static int read_all(int fd, size_t len, void **out, const char *name,
                    struct snap_error *err) {
  char *buf = malloc(len);
  if (!buf) return fail(err, -ENOMEM, "%s: out of memory for %zu bytes", name, len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : 0;
      free(buf);
      return e ? fail(err, -e, "%s: read: %s", name, strerror(e))
               : fail(err, SNAP_EINVAL, "%s: changed while reading: %zu bytes, not %zu",
                      name, got, len);
    }
    got += (size_t)n;
  }
  *out = buf;
  return 0;
}

int ingest_interrupted(const struct ingest_options *o, const char *name,
                       struct snap_error *err) {
  if (ingest_cancelled(o)) return fail(err, -ECANCELED, "%s: cancelled", name);
  if (o->lease_fd && fcntl(o->lease_fd - 1, F_GETLEASE) != F_RDLCK)
    return fail(err, SNAP_EBUSY,
                "%s: another process opened it for writing during the ingest: nothing "
                "published",
                name);
  return 0;
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
    int rc = st.st_size ? take_lease(fd, name, err) : 1, from = fd;
    if (rc < 0) return rc;
    if (rc == 1) { /* no lease: import a private copy, which nobody can change */
      void *copy = NULL;
      from = memfd_create("snapctl-import", MFD_CLOEXEC);
      if (from < 0)
        return fail(err, -errno, "%s: memfd_create: %s", name, strerror(errno));
      rc = st.st_size ? read_all(fd, (size_t)st.st_size, &copy, name, err) : 0;
      for (size_t done = 0;
           !rc && done < (size_t)st.st_size;) { /* write() may be short */
        ssize_t n = write(from, (char *)copy + done, (size_t)st.st_size - done);
        if (n > 0)
          done += (size_t)n;
        else if (n < 0 && errno != EINTR)
          rc = fail(err, -errno, "%s: copying: %s", name, strerror(errno));
      }
      free(copy);
      if (rc) {
        close(from);
        return rc;
      }
    }
    rc = snap_publish_import(store, dataset, from, &v, err);
    if (from != fd)
      close(from);
    else
      fcntl(fd, F_SETLEASE, F_UNLCK);
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
  struct ingest_options o = {0};
  if (opt) o = *opt;
  int rc = 0;
  void *map = NULL, *copy = NULL;
  if (len && !o.read_input) {
    if (!(rc = take_lease(fd, name, err))) {
      o.lease_fd = fd + 1;
      map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (map == MAP_FAILED) {
        map = NULL;
        rc = fail(err, -errno, "%s: mmap: %s", name, strerror(errno));
      } else {
        madvise(map, len, MADV_SEQUENTIAL);
      }
    } else if (rc == 1) {
      rc = 0; /* no lease to be had: read it instead */
    }
  }
  if (!rc && len && !map) rc = read_all(fd, len, &copy, name, err);
  if (!rc)
    rc = ingest_buffer(store, dataset, map ? map : copy ? copy : "", len, &o, res, err);
  if (map) munmap(map, len);
  free(copy);
  if (o.lease_fd) fcntl(fd, F_SETLEASE, F_UNLCK);
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
