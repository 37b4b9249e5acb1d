/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl publish: publish a .npy or CSV file as a new version of a dataset.
 * When a writerd serves the store (its lock file <store>/writerd.lock names its
 * socket and the socket answers), the file is handed to it as a descriptor
 * (docs/protocol.md: PUBLISH DATASET - with SCM_RIGHTS), so the daemon stays
 * the store's only publisher; otherwise directly through the library
 * (ingest.c). A malformed input publishes nothing either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <snap_ingest/ingest.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "snapctl.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct progress {
  double start;
  int shown;
};

/* A progress bar on a terminal, once the input has taken more than a second. */
static void on_progress(uint64_t done, uint64_t total, void *arg) {
  struct progress *p = arg;
  double t = now() - p->start;
  if (t < 1.0 || !total) return;
  int pct = (int)(done * 100 / total), fill = pct * 30 / 100;
  fprintf(stderr, "\r[%.*s%*s] %3d%% %6.1f s", fill, "##############################",
          30 - fill, "", pct, t);
  p->shown = 1;
}

/* Percent-encode a protocol argument (space, '%', control bytes). */
static void put_arg(char *out, size_t cap, size_t *len, const char *arg) {
  for (const unsigned char *p = (const unsigned char *)arg; *p; p++) {
    if (*len + 4 >= cap) return;
    if (*p <= ' ' || *p == '%' || *p == 0x7f)
      *len += (size_t)snprintf(out + *len, cap - *len, "%%%02X", *p);
    else
      out[(*len)++] = (char)*p;
  }
  out[*len] = 0;
}

/* Connect to the writerd that serves the store, if one runs: -1 if none. */
static int writerd_connect(const struct ctl *c) {
  const char *store = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!store || !*store) store = SNAP_STORE_DEFAULT;
  char path[PATH_MAX + 32], buf[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/writerd.lock", store);
  int lf = open(path, O_RDONLY | O_CLOEXEC);
  if (lf < 0) return -1;
  ssize_t n = read(lf, buf, sizeof buf - 1);
  close(lf);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *sock = strchr(buf, '\n'); /* "PID\nSOCKET\n" */
  if (!sock) return -1;
  sock++;
  sock[strcspn(sock, "\n")] = 0;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (!*sock || strlen(sock) >= sizeof sa.sun_path) return -1;
  memcpy(sa.sun_path, sock, strlen(sock));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { /* stale: no writerd */
    close(fd);
    return -1;
  }
  return fd;
}

/* Publish through writerd: send the request with the file's descriptor, read the
 * one-line reply. Returns the exit status; prints like the direct path. */
static int publish_via_writerd(struct ctl *c, int sock, const char *dataset,
                               const char *path, const struct ingest_options *o,
                               int quiet) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    close(sock);
    return ctl_fail(c, "%s: %s: %s", dataset, path, strerror(errno));
  }
  char req[8192];
  size_t len = 0;
  req[0] = 0;
  put_arg(req, sizeof req, &len, "PUBLISH");
  req[len++] = ' ';
  put_arg(req, sizeof req, &len, dataset);
  len += (size_t)snprintf(req + len, sizeof req - len, " - name=");
  put_arg(req, sizeof req, &len, path);
  if (o->format)
    len += (size_t)snprintf(req + len, sizeof req - len, " format=%s",
                            o->format == INGEST_NPY ? "npy" : "csv");
  if (o->category_max)
    len += (size_t)snprintf(req + len, sizeof req - len, " category-max=%u",
                            o->category_max);
  if (o->no_category)
    len += (size_t)snprintf(req + len, sizeof req - len, " no-category");
  int bar = !quiet && isatty(STDERR_FILENO);
  if (bar) len += (size_t)snprintf(req + len, sizeof req - len, " progress");
  if (o->schema) { /* the schema's text travels in the request, percent-encoded */
    char *text = strndup(o->schema, o->schema_len);
    len += (size_t)snprintf(req + len, sizeof req - len, " schema=");
    if (text) put_arg(req, sizeof req, &len, text);
    free(text);
  }
  if (len + 2 > 4096) { /* writerd's request line limit (docs/protocol.md) */
    close(fd);
    close(sock);
    return ctl_fail(c,
                    "%s: request too long for writerd (%zu bytes, at most 4096): "
                    "shorten the schema or use --direct",
                    dataset, len + 1);
  }
  if (len + 2 > sizeof req) {
    close(fd);
    close(sock);
    return ctl_fail(c, "%s: request too long", dataset);
  }
  req[len++] = '\n';
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {req, len};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = ctl.buf,
                     .msg_controllen = sizeof ctl.buf};
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &fd, sizeof fd);
  ssize_t sent = sendmsg(sock, &m, MSG_NOSIGNAL);
  close(fd);
  if (sent != (ssize_t)len) {
    close(sock);
    return ctl_fail(c, "%s: sending to writerd: %s", dataset, strerror(errno));
  }
  /* "PROGRESS DONE TOTAL" lines (when asked for), then the reply line */
  char reply[4096];
  size_t got = 0;
  struct progress prog = {.start = now()};
  for (;;) {
    char *nl = memchr(reply, '\n', got);
    if (nl) {
      unsigned long long done, total;
      if (strncmp(reply, "PROGRESS ", 9) ||
          sscanf(reply + 9, "%llu %llu", &done, &total) != 2)
        break; /* the reply */
      if (bar) on_progress(done, total, &prog);
      got -= (size_t)(nl + 1 - reply);
      memmove(reply, nl + 1, got);
      continue;
    }
    if (got == sizeof reply - 1) break;
    ssize_t n = read(sock, reply + got, sizeof reply - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(sock);
  if (prog.shown) fputc('\n', stderr);
  reply[got] = 0;
  reply[strcspn(reply, "\n")] = 0;
  unsigned long long version, rows, bytes, input;
  unsigned cols;
  double secs;
  if (sscanf(reply,
             "OK version=%llu rows=%llu cols=%u bytes=%llu input_bytes=%llu seconds=%lf",
             &version, &rows, &cols, &bytes, &input, &secs) == 6) {
    if (!quiet) {
      char b[32];
      printf(
          "%s: published version %llu (%llu rows x %u columns, %s in %.3f s, %.0f MB/s) "
          "by writerd\n",
          dataset, version, rows, cols, ctl_bytes(b, sizeof b, input), secs,
          secs > 0 ? (double)input / secs / 1e6 : 0.0);
    }
    return CTL_OK;
  }
  if (!strncmp(reply, "ERR ", 4)) { /* "ERR CODE message" */
    const char *msg = strchr(reply + 4, ' ');
    return ctl_fail(c, "%s: %s", dataset, msg ? msg + 1 : reply + 4);
  }
  return ctl_fail(c, "%s: writerd gave no reply%s%s", dataset, got ? ": " : "", reply);
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"format", required_argument, NULL, 'f'},
                                           {"category-max", required_argument, NULL, 'C'},
                                           {"no-category", no_argument, NULL, 'S'},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"direct", no_argument, NULL, 'D'},
                                           {"schema", required_argument, NULL, 's'},
                                           {"threads", required_argument, NULL, 'T'},
                                           {0}};
  struct ingest_options o = {0};
  int opt, code, quiet = 0, direct = 0;
  const char *schema_path = NULL;
  uint64_t u;
  while ((opt = ctl_getopt(&ctl_cmd_publish, c, argc, argv, "f:q", longopts, &code)) !=
         -1) {
    switch (opt) {
      case -2:
        return code;
      case 'f':
        if (!strcmp(optarg, "npy"))
          o.format = INGEST_NPY;
        else if (!strcmp(optarg, "csv"))
          o.format = INGEST_CSV;
        else
          return ctl_usage(c, "--format: '%s' is not npy or csv", optarg);
        break;
      case 'C':
        if (ctl_parse_u64(optarg, &u) || u < 1 || u > UINT32_MAX)
          return ctl_usage(c, "--category-max: '%s' is not a count >= 1", optarg);
        o.category_max = (uint32_t)u;
        break;
      case 'S':
        o.no_category = 1;
        break;
      case 'q':
        quiet = 1;
        break;
      case 'D':
        direct = 1;
        break;
      case 's':
        schema_path = optarg;
        break;
      case 'T':
        if (ctl_parse_u64(optarg, &u) || u < 1 || u > 8)
          return ctl_usage(c, "--threads: '%s' is not a count from 1 to 8", optarg);
        o.threads = (unsigned)u;
        break;
    }
  }
  if (argc - optind < 2) return ctl_usage(c, "needs DATASET and FILE");
  if (argc - optind > 2)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 2]);
  const char *dataset = argv[optind], *path = argv[optind + 1];
  if (o.format == INGEST_AUTO && ingest_format_from_name(path) == INGEST_AUTO)
    return ctl_usage(c, "%s: cannot tell the format from the name; give --format", path);

  char *schema = NULL;
  if (schema_path) {
    if (o.format == INGEST_NPY ||
        (o.format == INGEST_AUTO && ingest_format_from_name(path) == INGEST_NPY))
      return ctl_usage(c, "--schema applies to CSV input only");
    FILE *f = fopen(schema_path, "re");
    size_t cap = 1 << 20;
    schema = f ? malloc(cap) : NULL;
    size_t n = schema ? fread(schema, 1, cap, f) : 0;
    int bad = !f || !schema || ferror(f) || n == cap;
    int e = errno;
    if (f) fclose(f);
    if (bad) {
      free(schema);
      return ctl_fail(c, "%s: %s: %s", dataset, schema_path,
                      !f         ? strerror(e)
                      : n == cap ? "schema larger than 1 MiB"
                                 : "read error");
    }
    o.schema = schema;
    o.schema_len = n;
    o.schema_name = schema_path;
  }

  int sock = direct ? -1 : writerd_connect(c);
  if (sock >= 0) {
    int rc = publish_via_writerd(c, sock, dataset, path, &o, quiet);
    free(schema);
    return rc;
  }

  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) {
    free(schema);
    return rc;
  }
  struct progress prog = {.start = now()};
  if (!quiet && isatty(STDERR_FILENO)) {
    o.progress = on_progress;
    o.progress_arg = &prog;
  }
  struct snap_error err = {0};
  struct ingest_result res;
  rc = ingest_file(store, dataset, path, &o, &res, &err);
  double secs = now() - prog.start;
  if (prog.shown) fputc('\n', stderr);
  if (rc) {
    rc = ctl_fail_snap(c, dataset, rc, &err);
  } else if (!quiet) {
    char b[32];
    printf(
        "%s: published version %llu (%llu rows x %u columns, %s in %.3f s, %.0f MB/s)\n",
        dataset, (unsigned long long)res.version, (unsigned long long)res.nrows,
        res.ncols, ctl_bytes(b, sizeof b, res.input_bytes), secs,
        secs > 0 ? (double)res.input_bytes / secs / 1e6 : 0.0);
  }
  snap_store_close(store);
  free(schema);
  return rc;
}

const struct ctl_command ctl_cmd_publish = {
    "publish", "publish a .npy or CSV file as a new version",
    "usage: snapctl [--store PATH] publish [OPTIONS] DATASET FILE\n"
    "\n"
    "Publish FILE as the new current version of DATASET (created on first publish).\n"
    "When a writerd serves the store, the file is handed to it (it stays the only\n"
    "publisher); otherwise it is published directly.\n"
    "Nothing is published when FILE is malformed; the error names the file, line and\n"
    "column. A progress bar is shown on a terminal for inputs that take over a second.\n"
    "\n"
    ".npy: 1-D or 2-D, dtypes b1 i1-i8 u1-u8 f4 f8 M8[s|ms|us|ns] m8[...]; columns\n"
    "      are named 0, 1, ...\n"
    "CSV:  a header row; each column's type is inferred: int64, float64, bool\n"
    "      (true/false), timestamp (ISO 8601; zoned values become UTC), else string;\n"
    "      a string column with few distinct values becomes a category. An unquoted\n"
    "      empty field is a null.\n"
    "\n"
    "  -f, --format npy|csv    input format (default: from the file name)\n"
    "      --category-max N    most distinct values for a category column (1024)\n"
    "      --no-category       keep every string column a string\n"
    "  -q, --quiet             print nothing on success\n"
    "      --direct            publish through the library even when writerd runs\n"
    "      --schema FILE       CSV: take the column types from FILE, one line\n"
    "                          \"COLUMN TYPE [nullable]\" per column; TYPE is int64,\n"
    "                          float64, bool, timestamp, string or category\n"
    "      --threads N         CSV, published directly: threads for parsing, 1 to 8\n"
    "                          (default: 2 for inputs of 4 MiB and more when the\n"
    "                          machine has 2 or more CPUs, else 1)\n",
    run};
