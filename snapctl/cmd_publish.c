/*
 * snapctl publish: publish a .npy or CSV file as a new version of a dataset,
 * directly through the library (ingest.c). A malformed input publishes nothing.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"
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

static int run(struct ctl *c, int argc, char **argv) {
  static const struct option longopts[] = {{"format", required_argument, NULL, 'f'},
                                           {"category-max", required_argument, NULL, 'C'},
                                           {"no-category", no_argument, NULL, 'S'},
                                           {"quiet", no_argument, NULL, 'q'},
                                           {0}};
  struct ingest_options o = {0};
  int opt, code, quiet = 0;
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
    }
  }
  if (argc - optind < 2) return ctl_usage(c, "needs DATASET and FILE");
  if (argc - optind > 2)
    return ctl_usage(c, "unexpected argument '%s'", argv[optind + 2]);
  const char *dataset = argv[optind], *path = argv[optind + 1];
  if (o.format == INGEST_AUTO && ingest_format_from_name(path) == INGEST_AUTO)
    return ctl_usage(c, "%s: cannot tell the format from the name; give --format", path);

  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) return rc;
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
  return rc;
}

const struct ctl_command ctl_cmd_publish = {
    "publish", "publish a .npy or CSV file as a new version",
    "usage: snapctl [--store PATH] publish [OPTIONS] DATASET FILE\n"
    "\n"
    "Publish FILE as the new current version of DATASET (created on first publish).\n"
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
    "  -q, --quiet             print nothing on success\n",
    run};
