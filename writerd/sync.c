/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sync thread (docs/multihost.md): with --push URL or --mirror DIR it
 * pushes every dataset's new current version after each flip; with --follow
 * URL it polls the announcements and adopts newer versions; with --restore (or
 * --mirror, or --follow on a store without the dataset) it first rebuilds
 * what the store lacks from the remote, newest version per dataset, so that
 * readers are served as soon as each one flips.
 *
 * Failures never stop writerd: each is one log line, and the dataset is tried
 * again after a backoff that doubles up to 30 s (wrong credentials are not
 * retried in a tight loop). The state per dataset (announced and local
 * versions, lag, bytes, last error) goes to STATUS, to the metrics, and to
 * STORE/sync.state for snapctl list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <snap_sync/sync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "writerd.h"

#define BACKOFF_MAX_MS 30000u
#define DISCOVER_EVERY 10 /* polls between listings of the remote's datasets */

struct ds_state {
  char name[SNAP_DATASET_NAME_MAX + 1];
  uint64_t announced, announced_ns, local, pushed;
  uint64_t bytes;  /* fetched (follow) or pushed (push), in total */
  unsigned fails;  /* consecutive failures */
  double next_try; /* wd_now() before which it is not tried again */
  char error[768]; /* the last failure's message, "" after a success */
  double error_at; /* wd_now() of it */
};

struct wd_sync {
  snap_store *store;
  struct wd_reaper *reaper;
  struct wd_sync_config cfg;
  snap_remote *remote;
  snap_pusher *pusher;
  snap_follower *follower;
  pthread_t thread;
  unsigned list_fails;  /* consecutive failed listings (the sync thread's) */
  pthread_mutex_t lock; /* everything below */
  pthread_cond_t cond;
  int stop, kicked;
  struct ds_state *ds;
  size_t nds;
  int state_dirty;
  double state_written;
};

static struct ds_state *state_of(struct wd_sync *s, const char *name) {
  for (size_t i = 0; i < s->nds; i++)
    if (!strcmp(s->ds[i].name, name)) return &s->ds[i];
  void *p = realloc(s->ds, (s->nds + 1) * sizeof *s->ds);
  if (!p) return NULL;
  s->ds = p;
  struct ds_state *d = &s->ds[s->nds++];
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "%s", name);
  return d;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Lag of a followed dataset: versions, and seconds since the announced
 * version was published while it is not current here. */
static void lag_of(const struct ds_state *d, uint64_t *versions, double *seconds) {
  *versions = d->announced > d->local ? d->announced - d->local : 0;
  uint64_t now = now_ns();
  *seconds = *versions && d->announced_ns && now > d->announced_ns
                 ? (double)(now - d->announced_ns) / 1e9
                 : 0;
}

/* STORE/sync.state, for snapctl list: written whole, then renamed. */
static void state_write(struct wd_sync *s) {
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/sync.state", snap_store_path(s->store));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "we");
  if (!f) return;
  fprintf(f, "# libsnap sync state, written by writerd pid %ld\n", (long)getpid());
  fprintf(f, "mode\t%s\t%s\n",
          s->cfg.follow_url ? "follow"
          : s->cfg.push_url ? "push"
                            : "mirror",
          snap_remote_url(s->remote));
  fprintf(f, "# dataset\tannounced\tannounced_ns\tlocal\tpushed\tbytes\terror\n");
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->nds; i++) {
    const struct ds_state *d = &s->ds[i];
    char err[800];
    snprintf(err, sizeof err, "%s", d->error);
    for (char *p = err; *p; p++)
      if (*p == '\t' || *p == '\n') *p = ' ';
    fprintf(f, "%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%s\n", d->name,
            (unsigned long long)d->announced, (unsigned long long)d->announced_ns,
            (unsigned long long)d->local, (unsigned long long)d->pushed,
            (unsigned long long)d->bytes, err);
  }
  s->state_dirty = 0;
  s->state_written = wd_now();
  pthread_mutex_unlock(&s->lock);
  if (fclose(f) == 0) rename(tmp, path);
}

static void metrics_update(struct wd_sync *s) {
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->nds; i++) {
    const struct ds_state *d = &s->ds[i];
    if (s->cfg.follow_url) {
      uint64_t lv;
      double ls;
      lag_of(d, &lv, &ls);
      wd_gauge_set("snap_follow_lag_versions", d->name, (double)lv);
      wd_gauge_set("snap_follow_lag_seconds", d->name, ls);
      wd_gauge_set("snap_follow_announced_version", d->name, (double)d->announced);
    } else {
      wd_gauge_set("snap_push_version", d->name, (double)d->pushed);
    }
  }
  pthread_mutex_unlock(&s->lock);
}

/* The metrics' error kind of a failure of @p op ("push", "follow", "list", ...). */
static const char *error_metric(const struct snap_sync_error *e, const char *op) {
  return !strcmp(e->kind, "verify")    ? "verify"
         : !strcmp(e->kind, "denied")  ? "s3_denied"
         : !strcmp(e->kind, "network") ? "s3_network"
         : !strcmp(e->kind, "server")  ? "s3_server"
         : !strcmp(op, "push")         ? "push"
                                       : "fetch";
}

/* A failure: logged, counted, and the dataset waits before its next try. */
static void failed(struct wd_sync *s, struct ds_state *d, const char *op,
                   const struct snap_sync_error *e) {
  char q[1000], q2[600];
  pthread_mutex_lock(&s->lock);
  d->fails++;
  unsigned ms = s->cfg.poll_ms ? s->cfg.poll_ms : 1000;
  for (unsigned i = 1; i < d->fails && ms < BACKOFF_MAX_MS; i++) ms *= 2;
  if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
  d->next_try = wd_now() + ms / 1000.0;
  snprintf(d->error, sizeof d->error, "%s", e->message);
  d->error_at = wd_now();
  s->state_dirty = 1;
  pthread_mutex_unlock(&s->lock);
  wd_count_error(error_metric(e, op));
  wd_log("error", "op=%s dataset=%s kind=%s retry_in_ms=%u message=%s", op,
         wd_q(q2, sizeof q2, d->name), e->kind, ms, wd_q(q, sizeof q, e->message));
}

static void succeeded(struct wd_sync *s, struct ds_state *d) {
  pthread_mutex_lock(&s->lock);
  if (d->fails || d->error[0]) s->state_dirty = 1;
  d->fails = 0;
  d->next_try = 0;
  d->error[0] = 0;
  pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ follow */

/* One poll of one dataset. @p restore: a dataset the primary's store lacks,
 * adopted and left not followed. */
static void follow_one(struct wd_sync *s, const char *name, int restore) {
  pthread_mutex_lock(&s->lock);
  struct ds_state *d = state_of(s, name);
  int wait = d && d->next_try > wd_now();
  pthread_mutex_unlock(&s->lock);
  if (!d || wait) return;
  struct snap_follow_result res;
  struct snap_sync_error e = {0};
  int rc = snap_follow_poll(s->follower, name, &res, &e);
  pthread_mutex_lock(&s->lock);
  if (res.announced && res.announced != d->announced) s->state_dirty = 1;
  if (res.announced) {
    d->announced = res.announced;
    d->announced_ns = res.announced_ns;
  }
  if (res.local && res.local != d->local) s->state_dirty = 1;
  if (res.local) d->local = res.local;
  d->bytes += res.bytes;
  pthread_mutex_unlock(&s->lock);
  wd_count(WD_C_BYTES_FETCHED, res.bytes);
  if (rc) {
    failed(s, d, restore ? "restore" : "follow", &e);
    return;
  }
  succeeded(s, d);
  if (!res.flipped) return;
  char q[600];
  wd_count(WD_C_FOLLOW_FLIPS, 1);
  wd_log(restore ? "restore" : "follow",
         "dataset=%s version=%llu bytes=%llu manifest_bytes=%llu fetched_chunks=%llu "
         "delta_chunks=%llu borrowed_chunks=%llu copied_chunks=%llu zero_chunks=%llu "
         "resumed_chunks=%llu refetched=%llu seconds=%.3f",
         wd_q(q, sizeof q, name), (unsigned long long)res.local,
         (unsigned long long)res.bytes, (unsigned long long)res.manifest_bytes,
         (unsigned long long)res.chunks.fetch, (unsigned long long)res.deltas,
         (unsigned long long)res.chunks.borrowed, (unsigned long long)res.chunks.copied,
         (unsigned long long)res.chunks.zero, (unsigned long long)res.chunks.resumed,
         (unsigned long long)res.refetched, res.seconds);
  if (restore) {
    pthread_mutex_lock(&s->lock); /* a primary's dataset: not a followed one */
    d->announced = d->announced_ns = 0;
    pthread_mutex_unlock(&s->lock);
  }
  wd_reaper_kick(s->reaper);
}

/* The remote's datasets; on failure logged, none. */
static size_t discover(struct wd_sync *s, char ***names) {
  size_t n = 0;
  struct snap_sync_error e = {0};
  if (snap_follow_datasets(s->follower, names, &n, &e)) {
    char q[1000];
    s->list_fails++;
    wd_count_error(error_metric(&e, "list"));
    wd_log("error", "op=list kind=%s message=%s", e.kind, wd_q(q, sizeof q, e.message));
    *names = NULL;
    return 0;
  }
  s->list_fails = 0;
  return n;
}

static void names_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* What the store lacks, from the remote, before anything else. */
static void restore(struct wd_sync *s, int promote) {
  char **names;
  size_t n = discover(s, &names);
  size_t done = 0;
  double t0 = wd_now();
  for (size_t i = 0; i < n && !s->stop; i++) {
    uint64_t cur;
    if (!snap_current_version(s->store, names[i], &cur, NULL)) continue; /* has it */
    follow_one(s, names[i], promote);
    done++;
  }
  wd_log("restored", "datasets=%zu from=%s seconds=%.3f", done,
         snap_remote_url(s->remote), wd_now() - t0);
  names_free(names, n);
}

/* ------------------------------------------------------------------- push */

static void push_all(struct wd_sync *s) {
  struct snap_dataset_info *ds;
  size_t n;
  if (snap_dataset_list(s->store, &ds, &n, NULL)) return;
  for (size_t i = 0; i < n && !s->stop; i++) {
    if (ds[i].followed || !ds[i].current) continue;
    pthread_mutex_lock(&s->lock);
    struct ds_state *d = state_of(s, ds[i].name);
    int skip = !d || d->next_try > wd_now() || d->pushed == ds[i].current;
    pthread_mutex_unlock(&s->lock);
    if (skip) continue;
    struct snap_push_result res;
    struct snap_sync_error e = {0};
    int rc = snap_push(s->pusher, ds[i].name, &res, &e);
    wd_count(WD_C_BYTES_PUSHED, res.bytes);
    if (rc) {
      failed(s, d, "push", &e);
      continue;
    }
    succeeded(s, d);
    char q[600], q2[1000];
    pthread_mutex_lock(&s->lock);
    d->pushed = res.version ? res.version : ds[i].current;
    d->bytes += res.bytes;
    s->state_dirty = 1;
    pthread_mutex_unlock(&s->lock);
    if (!res.version) continue;
    wd_count(WD_C_PUSHES, 1);
    wd_log("push",
           "dataset=%s version=%llu chunks=%llu new_chunks=%llu deltas=%llu bytes=%llu "
           "pack=%s swept=%llu announce_seconds=%.3f seconds=%.3f",
           wd_q(q, sizeof q, ds[i].name), (unsigned long long)res.version,
           (unsigned long long)res.chunks, (unsigned long long)res.new_chunks,
           (unsigned long long)res.deltas, (unsigned long long)res.bytes,
           res.pack[0] ? res.pack : "none", (unsigned long long)res.swept,
           res.announce_seconds, res.seconds);
    if (res.warning[0])
      wd_log("warning", "op=sweep dataset=%s message=%s", q,
             wd_q(q2, sizeof q2, res.warning));
  }
  snap_free(ds);
}

/* ----------------------------------------------------------------- thread */

/* Sleep until @p ms passed, a kick, or stop. */
static void nap(struct wd_sync *s, unsigned ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&s->lock);
  while (!s->stop && !s->kicked)
    if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) break;
  s->kicked = 0;
  pthread_mutex_unlock(&s->lock);
}

static void *sync_thread(void *arg) {
  struct wd_sync *s = arg;
  unsigned poll = s->cfg.poll_ms ? s->cfg.poll_ms : 1000;
  if (s->cfg.restore || s->cfg.mirror_dir) restore(s, 1);
  unsigned round = 0;
  char **names = NULL;
  size_t n = 0;
  while (!s->stop) {
    if (s->follower && s->cfg.follow_url) {
      if (round++ % DISCOVER_EVERY == 0 || !n) {
        names_free(names, n);
        n = discover(s, &names);
      }
      for (size_t i = 0; i < n && !s->stop; i++) follow_one(s, names[i], 0);
    }
    if (s->pusher) push_all(s);
    metrics_update(s);
    if (s->state_dirty || wd_now() - s->state_written > 10) state_write(s);
    /* jitter: up to jitter_pct% more, so that many followers spread out */
    unsigned ms = poll;
    for (unsigned i = 0; i < s->list_fails && ms < BACKOFF_MAX_MS; i++) ms *= 2;
    if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
    if (s->cfg.follow_url && s->cfg.jitter_pct)
      ms += (unsigned)((uint64_t)poll * s->cfg.jitter_pct / 100 * (unsigned)rand() /
                       RAND_MAX);
    nap(s, ms);
  }
  names_free(names, n);
  state_write(s);
  return NULL;
}

int wd_sync_start(snap_store *store, struct wd_reaper *reaper,
                  const struct wd_sync_config *cfg, struct wd_sync **out) {
  *out = NULL;
  struct wd_sync *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->store = store;
  s->reaper = reaper;
  s->cfg = *cfg;
  pthread_mutex_init(&s->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cond, &ca);
  pthread_condattr_destroy(&ca);
  srand((unsigned)(getpid() ^ (unsigned)time(NULL)));
  const char *url = cfg->follow_url ? cfg->follow_url
                    : cfg->push_url ? cfg->push_url
                                    : cfg->mirror_dir;
  struct snap_sync_error e = {0};
  struct snap_push_options po = {
      .keep = cfg->push_keep, .grace_s = cfg->push_grace_s, .parallel = cfg->parallel};
  struct snap_follow_options fo = {.parallel = cfg->parallel,
                                   .promote = !cfg->follow_url};
  int rc = snap_remote_open(url, &s->remote, &e);
  if (!rc && (cfg->follow_url || cfg->restore || cfg->mirror_dir))
    rc = snap_follower_create(store, s->remote, &fo, &s->follower, &e);
  if (!rc && !cfg->follow_url)
    rc = snap_pusher_create(store, s->remote, &po, &s->pusher, &e);
  if (rc) {
    fprintf(stderr, "writerd: %s\n", e.message);
    wd_sync_free(s);
    return rc;
  }
  if ((rc = pthread_create(&s->thread, NULL, sync_thread, s))) {
    wd_sync_free(s);
    return -rc;
  }
  char q[1200];
  wd_log("sync", "mode=%s remote=%s poll_ms=%u",
         cfg->follow_url ? "follow"
         : cfg->push_url ? "push"
                         : "mirror",
         wd_q(q, sizeof q, snap_remote_url(s->remote)), cfg->poll_ms);
  *out = s;
  return 0;
}

void wd_sync_kick(struct wd_sync *s) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  s->kicked = 1;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

void wd_sync_free(struct wd_sync *s) {
  if (!s) return;
  snap_pusher_free(s->pusher);
  snap_follower_free(s->follower);
  snap_remote_close(s->remote);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->lock);
  free(s->ds);
  free(s);
}

void wd_sync_stop(struct wd_sync *s) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  s->stop = 1;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  wd_sync_free(s);
}

void wd_sync_json(struct wd_sync *s, const char *dataset, struct wd_buf *b) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->nds; i++) {
    const struct ds_state *d = &s->ds[i];
    if (strcmp(d->name, dataset)) continue;
    if (s->cfg.follow_url) {
      uint64_t lv;
      double ls;
      lag_of(d, &lv, &ls);
      wd_buf_printf(b, ",\"follow\":{\"remote\":");
      wd_buf_json_str(b, snap_remote_url(s->remote));
      wd_buf_printf(b,
                    ",\"announced\":%llu,\"announced_ns\":%llu,\"local\":%llu,"
                    "\"lag_versions\":%llu,\"lag_seconds\":%.3f,\"bytes_fetched\":%llu,"
                    "\"last_error\":",
                    (unsigned long long)d->announced, (unsigned long long)d->announced_ns,
                    (unsigned long long)d->local, (unsigned long long)lv, ls,
                    (unsigned long long)d->bytes);
    } else {
      wd_buf_printf(b, ",\"push\":{\"remote\":");
      wd_buf_json_str(b, snap_remote_url(s->remote));
      wd_buf_printf(b, ",\"pushed\":%llu,\"bytes_pushed\":%llu,\"last_error\":",
                    (unsigned long long)d->pushed, (unsigned long long)d->bytes);
    }
    if (d->error[0])
      wd_buf_json_str(b, d->error);
    else
      wd_buf_add(b, "null", 4);
    wd_buf_add(b, "}", 1);
  }
  pthread_mutex_unlock(&s->lock);
}
