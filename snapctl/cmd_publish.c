/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl publish: publish a .npy or CSV file as a new version of a dataset.
 * When a writerd serves the store (its lock file <store>/writerd.lock names its
 * socket and the socket answers), the file is handed to it as a descriptor
 * (docs/protocol.md: PUBLISH DATASET - with SCM_RIGHTS, sent by the
 * writerd_client library), so the daemon stays the store's only publisher;
 * otherwise directly through the snap_ingest library. A malformed input publishes
 * nothing either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <snap_ingest/ingest.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <writerd/client.h>

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

/* Connect to the writerd that serves the store, if one runs: NULL if none. */
static wd_client *writerd_connect(const struct ctl *c) {
  const char *store = c->store_path ? c->store_path : getenv(SNAP_STORE_ENV);
  if (!store || !*store) store = SNAP_STORE_DEFAULT;
  wd_client *wd;
  if (wd_client_open_store(store, &wd, NULL)) return NULL; /* stale or none */
  return wd;
}

/* Append printf output to req[0..*len) of capacity cap. Returns 0, or -E2BIG
 * (nothing more is written; *len stays within cap). */
static int req_add(char *req, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int req_add(char *req, size_t cap, size_t *len, const char *fmt, ...) {
  if (*len >= cap) return -E2BIG;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(req + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= cap - *len) {
    req[*len] = 0;
    return -E2BIG;
  }
  *len += (size_t)n;
  return 0;
}

/* Publish through writerd: send the request with the file's descriptor, read the
 * one-line reply. Returns the exit status; prints like the direct path. */
static int publish_via_writerd(struct ctl *c, wd_client *wd, const char *dataset,
                               const char *path, const struct ingest_options *o,
                               int quiet) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    wd_client_close(wd);
    return ctl_fail(c, "%s: %s: %s", dataset, path, strerror(errno));
  }
  char req[8192];
  size_t len = 0;
  int big = 0; /* set when any part did not fit: the request is refused whole */
  req[0] = 0;
  big |= wd_client_put_arg(req, sizeof req, &len, "PUBLISH");
  big |= req_add(req, sizeof req, &len, " ");
  big |= wd_client_put_arg(req, sizeof req, &len, dataset);
  big |= req_add(req, sizeof req, &len, " - name=");
  big |= wd_client_put_arg(req, sizeof req, &len, path);
  if (o->format)
    big |= req_add(req, sizeof req, &len, " format=%s",
                   o->format == INGEST_NPY ? "npy" : "csv");
  if (o->category_max)
    big |= req_add(req, sizeof req, &len, " category-max=%u", o->category_max);
  if (o->no_category) big |= req_add(req, sizeof req, &len, " no-category");
  int bar = !quiet && isatty(STDERR_FILENO);
  if (bar) big |= req_add(req, sizeof req, &len, " progress");
  if (o->schema) { /* the schema's text travels in the request, percent-encoded */
    char *text = strndup(o->schema, o->schema_len);
    big |= req_add(req, sizeof req, &len, " schema=");
    if (text) big |= wd_client_put_arg(req, sizeof req, &len, text);
    free(text);
  }
  if (big) {
    close(fd);
    wd_client_close(wd);
    return ctl_fail(c,
                    "%s: request too long for writerd (more than %zu bytes): shorten "
                    "the schema or use --direct",
                    dataset, sizeof req - 1);
  }
  struct snap_error err = {0};
  int rc = wd_client_send(wd, req, fd, &err);
  close(fd);
  if (rc) {
    wd_client_close(wd);
    if (rc == -E2BIG) /* the protocol's line limit */
      return ctl_fail(c, "%s: %s: shorten the schema or use --direct", dataset,
                      err.message);
    return ctl_fail(c, "%s: %s", dataset, err.message);
  }
  /* "PROGRESS DONE TOTAL" lines (when asked for), then the reply line */
  const char *reply = NULL;
  struct progress prog = {.start = now()};
  while (wd_client_read_line(wd, &reply, NULL) == 1) {
    unsigned long long done, total;
    if (strncmp(reply, "PROGRESS ", 9) ||
        sscanf(reply + 9, "%llu %llu", &done, &total) != 2)
      break; /* the reply */
    if (bar) on_progress(done, total, &prog);
    reply = NULL;
  }
  if (prog.shown) fputc('\n', stderr);
  if (!reply) reply = "";
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
    rc = CTL_OK;
  } else if (!strncmp(reply, "ERR ", 4)) { /* "ERR CODE message" */
    const char *msg = strchr(reply + 4, ' ');
    rc = ctl_fail(c, "%s: %s", dataset, msg ? msg + 1 : reply + 4);
  } else {
    rc = ctl_fail(c, "%s: writerd gave no reply%s%s", dataset, *reply ? ": " : "", reply);
  }
  wd_client_close(wd); /* reply points into it */
  return rc;
}

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"format", required_argument, NULL, 'f'},
                                           {"category-max", required_argument, NULL, 'C'},
                                           {"no-category", no_argument, NULL, 'S'},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {"direct", no_argument, NULL, 'D'},
                                           {"schema", required_argument, NULL, 's'},
                                           {"threads", required_argument, NULL, 'T'},
                                           {"append", no_argument, NULL, 'A'},
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
      case 'A':
        o.append = 1;
        direct = 1; /* writerd has no append request: the library appends */
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

  if (o.append && o.format != INGEST_NPY &&
      !(o.format == INGEST_AUTO && ingest_format_from_name(path) == INGEST_NPY))
    return ctl_usage(c, "--append takes .npy input");
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

  wd_client *wd = direct ? NULL : writerd_connect(c);
  if (wd) {
    int rc = publish_via_writerd(c, wd, dataset, path, &o, quiet);
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
    printf("%s: %s version %llu (%llu rows x %u columns, %s in %.3f s, %.0f MB/s)\n",
           dataset, o.append ? "appended rows as" : "published",
           (unsigned long long)res.version, (unsigned long long)res.nrows, res.ncols,
           ctl_bytes(b, sizeof b, res.input_bytes), secs,
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
    "      --append            .npy: append the file's rows to the current version\n"
    "                          (same columns and type; the old rows are shared, the\n"
    "                          new version costs the new rows); through the library\n"
    "      --schema FILE       CSV: take the column types from FILE, one line\n"
    "                          \"COLUMN TYPE [nullable]\" per column; TYPE is int64,\n"
    "                          float64, bool, timestamp, string or category\n"
    "      --threads N         CSV, published directly: threads for parsing, 1 to 8\n"
    "                          (default: 2 for inputs of 4 MiB and more when the\n"
    "                          machine has 2 or more CPUs, else 1)\n",
    run};
