/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl push, pull and unfollow (docs/multihost.md), and the sync state that
 * snapctl list shows (STORE/sync.state, written by writerd --push/--follow).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <snap_sync/sync.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snapctl.h"

/* --transfers N, --push-keep N, --push-grace S: shared by push and pull. */
struct sync_opts {
  unsigned parallel, keep, grace_s;
};

static int parse_sync_opts(const struct ctl_command *cmd, struct ctl *c, int argc,
                           char **argv, struct sync_opts *o, int push) {
  static const struct option longopts[] = {{"transfers", required_argument, NULL, 't'},
                                           {"keep", required_argument, NULL, 'k'},
                                           {"grace", required_argument, NULL, 'g'},
                                           {0}};
  int opt, code;
  uint64_t v;
  *o = (struct sync_opts){4, 3, 600};
  while ((opt = ctl_getopt(cmd, c, argc, argv, "", longopts, &code)) != -1) {
    if (opt == -2) return code;
    if (!push && opt != 't') return ctl_usage(c, "--keep and --grace are push options");
    const char *what = opt == 't' ? "--transfers" : opt == 'k' ? "--keep" : "--grace";
    uint64_t hi = opt == 'g' ? 86400 * 30 : 64, lo = opt == 'g' ? 0 : 1;
    if ((code = ctl_parse_range(c, what, optarg, lo, hi, &v))) return code;
    if (opt == 't') o->parallel = (unsigned)v;
    if (opt == 'k') o->keep = (unsigned)v;
    if (opt == 'g') o->grace_s = (unsigned)v;
  }
  if (argc - optind < 1)
    return ctl_usage(c, "needs a remote (s3://BUCKET/PREFIX or DIR)");
  return -1;
}

/* The datasets named after the remote, or every dataset of the store. */
static int datasets(struct ctl *c, snap_store *store, int argc, char **argv,
                    struct snap_dataset_info **ds, size_t *n) {
  struct snap_error err = {0};
  int rc = snap_dataset_list(store, ds, n, &err);
  if (rc) return ctl_fail_snap(c, snap_store_path(store), rc, &err);
  for (int i = optind + 1; i < argc; i++) {
    size_t k = 0;
    while (k < *n && strcmp((*ds)[k].name, argv[i])) k++;
    if (k == *n) {
      snap_free(*ds);
      return ctl_fail(c, "%s: no such dataset", argv[i]);
    }
  }
  return CTL_OK;
}

static int named(int argc, char **argv, const char *name) {
  if (argc - optind < 2) return 1;
  for (int i = optind + 1; i < argc; i++)
    if (!strcmp(argv[i], name)) return 1;
  return 0;
}

static int run_push(struct ctl *c, int argc, char **argv) {
  struct sync_opts o;
  int rc = parse_sync_opts(&ctl_cmd_push, c, argc, argv, &o, 1);
  if (rc >= 0) return rc;
  snap_store *store;
  if ((rc = ctl_open(c, SNAP_RDONLY, &store))) return rc;
  struct snap_dataset_info *ds = NULL;
  size_t n = 0;
  snap_remote *remote = NULL;
  snap_pusher *p = NULL;
  struct snap_sync_error e = {0};
  struct snap_push_options po = {o.keep, o.grace_s, o.parallel, 0};
  if ((rc = datasets(c, store, argc, argv, &ds, &n))) goto out;
  if (snap_remote_open(argv[optind], &remote, &e) ||
      snap_pusher_create(store, remote, &po, &p, &e)) {
    rc = ctl_fail(c, "%s", e.message);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!named(argc, argv, ds[i].name) || !ds[i].current) continue;
    if (ds[i].followed) {
      if (argc - optind >= 2)
        rc = ctl_fail(c, "%s: a followed dataset is pushed by its primary", ds[i].name);
      continue;
    }
    struct snap_push_result res;
    if (snap_push(p, ds[i].name, &res, &e)) {
      rc = ctl_fail(c, "%s", e.message);
      continue;
    }
    char b[32];
    if (res.version)
      printf(
          "%s: version %llu pushed: %llu of %llu chunks new (%llu also as deltas), "
          "%s sent, %llu objects swept, %.3f s\n",
          ds[i].name, (unsigned long long)res.version, (unsigned long long)res.new_chunks,
          (unsigned long long)res.chunks, (unsigned long long)res.deltas,
          ctl_bytes(b, sizeof b, res.bytes), (unsigned long long)res.swept, res.seconds);
    else
      printf("%s: version %llu is announced already\n", ds[i].name,
             (unsigned long long)ds[i].current);
    if (res.warning[0])
      fprintf(stderr, "snapctl: push: %s: %s\n", ds[i].name, res.warning);
  }
out:
  snap_pusher_free(p);
  snap_remote_close(remote);
  snap_free(ds);
  snap_store_close(store);
  return rc;
}

static int run_pull(struct ctl *c, int argc, char **argv) {
  struct sync_opts o;
  int rc = parse_sync_opts(&ctl_cmd_pull, c, argc, argv, &o, 0);
  if (rc >= 0) return rc;
  snap_store *store;
  if ((rc = ctl_open(c, SNAP_CREATE, &store))) return rc;
  snap_remote *remote = NULL;
  snap_follower *f = NULL;
  char **names = NULL;
  size_t n = 0;
  struct snap_sync_error e = {0};
  struct snap_follow_options fo = {.parallel = o.parallel};
  if (snap_remote_open(argv[optind], &remote, &e) ||
      snap_follower_create(store, remote, &fo, &f, &e) ||
      snap_follow_datasets(f, &names, &n, &e)) {
    rc = ctl_fail(c, "%s", e.message);
    goto out;
  }
  for (int i = optind + 1; i < argc; i++) {
    size_t k = 0;
    while (k < n && strcmp(names[k], argv[i])) k++;
    if (k == n)
      rc = ctl_fail(c, "%s: %s announces no such dataset", argv[i], argv[optind]);
  }
  for (size_t i = 0; i < n && !rc; i++) {
    if (!named(argc, argv, names[i])) continue;
    struct snap_follow_result res;
    if (snap_follow_poll(f, names[i], &res, &e)) {
      rc = ctl_fail(c, "%s", e.message);
      continue;
    }
    char b[32];
    if (res.flipped)
      printf(
          "%s: version %llu adopted: %llu chunks fetched (%llu as deltas; %s with the "
          "manifest), %llu borrowed, %llu copied, %llu zero, %llu resumed, %.3f s\n",
          names[i], (unsigned long long)res.local, (unsigned long long)res.chunks.fetch,
          (unsigned long long)res.deltas, ctl_bytes(b, sizeof b, res.bytes),
          (unsigned long long)res.chunks.borrowed, (unsigned long long)res.chunks.copied,
          (unsigned long long)res.chunks.zero, (unsigned long long)res.chunks.resumed,
          res.seconds);
    else
      printf("%s: version %llu is current (announced: %llu)\n", names[i],
             (unsigned long long)res.local, (unsigned long long)res.announced);
  }
out:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  snap_follower_free(f);
  snap_remote_close(remote);
  snap_store_close(store);
  return rc;
}

static int run_unfollow(struct ctl *c, int argc, char **argv) {
  int opt, code;
  while ((opt = ctl_getopt(&ctl_cmd_unfollow, c, argc, argv, "", NULL, &code)) != -1)
    if (opt == -2) return code;
  if (argc - optind != 1) return ctl_usage(c, "needs DATASET");
  snap_store *store;
  int rc = ctl_open(c, 0, &store);
  if (rc) return rc;
  struct snap_error err = {0};
  if ((rc = snap_dataset_set_followed(store, argv[optind], 0, &err)))
    rc = ctl_fail_snap(c, argv[optind], rc, &err);
  else
    printf("%s: no longer followed; this store publishes it now\n", argv[optind]);
  snap_store_close(store);
  return rc;
}

/* ------------------------------------------------------- state for list */

int ctl_sync_state(const char *store_path, struct ctl_sync_row **rows, size_t *n,
                   char *mode, size_t mcap, char *remote, size_t rcap) {
  *rows = NULL;
  *n = 0;
  mode[0] = remote[0] = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/sync.state", store_path);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  char line[2048];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (line[0] == '#') continue;
    char *save, *tok[7] = {0};
    int k = 0;
    for (char *p = strtok_r(line, "\t", &save); p && k < 7;
         p = strtok_r(NULL, "\t", &save))
      tok[k++] = p;
    if (k >= 3 && !strcmp(tok[0], "mode")) {
      snprintf(mode, mcap, "%s", tok[1]);
      snprintf(remote, rcap, "%s", tok[2]);
      continue;
    }
    if (k < 6) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 8;
      void *p = realloc(*rows, cap * sizeof **rows);
      if (!p) break;
      *rows = p;
    }
    struct ctl_sync_row *r = &(*rows)[(*n)++];
    memset(r, 0, sizeof *r);
    snprintf(r->dataset, sizeof r->dataset, "%s", tok[0]);
    r->announced = strtoull(tok[1], NULL, 10);
    r->announced_ns = strtoull(tok[2], NULL, 10);
    r->local = strtoull(tok[3], NULL, 10);
    r->pushed = strtoull(tok[4], NULL, 10);
    r->bytes = strtoull(tok[5], NULL, 10);
    snprintf(r->error, sizeof r->error, "%s", k > 6 ? tok[6] : "");
  }
  fclose(f);
  return 0;
}

double ctl_sync_lag_seconds(const struct ctl_sync_row *r) {
  if (r->announced <= r->local || !r->announced_ns) return 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
  double lag = now - (double)r->announced_ns / 1e9;
  return lag > 0 ? lag : 0;
}

const struct ctl_command ctl_cmd_push = {
    "push", "push datasets' current versions to a remote",
    "usage: snapctl [--store PATH] push [--transfers N] [--keep N] [--grace S]\n"
    "                               REMOTE [DATASET...]\n"
    "\n"
    "Push the current version of every dataset (or of each DATASET) to REMOTE,\n"
    "s3://BUCKET/PREFIX or a directory, once (writerd --push does it after every\n"
    "publish): the chunks the remote lacks, then the manifest, then the\n"
    "announcement, written last and conditionally (docs/multihost.md). Credentials\n"
    "and endpoint come from AWS_* variables and ~/.aws/credentials (docs/s3.md).\n"
    "\n"
    "  --transfers N  parallel uploads (4)\n"
    "  --keep N       versions the announcement keeps (3)\n"
    "  --grace S      seconds before unreferenced objects are deleted (600)\n",
    run_push};

const struct ctl_command ctl_cmd_pull = {
    "pull", "adopt the newest versions a remote announces",
    "usage: snapctl [--store PATH] pull [--transfers N] REMOTE [DATASET...]\n"
    "\n"
    "Once, for every dataset REMOTE announces (or each DATASET): when its newest\n"
    "version is newer than the local current one, fetch the chunks this store\n"
    "lacks, check each one's hash, and flip to it under the same version number\n"
    "(writerd --follow does it continuously). The dataset is then followed: local\n"
    "publishes are refused until 'snapctl unfollow'. A pull killed mid-way resumes.\n"
    "\n"
    "  --transfers N  parallel ranged downloads (4)\n",
    run_pull};

const struct ctl_command ctl_cmd_unfollow = {
    "unfollow", "make this store a followed dataset's primary",
    "usage: snapctl [--store PATH] unfollow DATASET\n"
    "\n"
    "Stop treating DATASET as followed: local publishes are accepted again (a\n"
    "follower promoted to primary). Stop writerd --follow first, or it keeps\n"
    "adopting what the old primary announces.\n",
    run_unfollow};
