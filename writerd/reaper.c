/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The reaper: reclaims each draining (retired) version the moment its last
 * reader lets go.
 *
 * A scanner thread lists the draining versions of every dataset (at start, when
 * kicked after a publish, rollback or keep change, and every interval, which
 * catches changes made by other processes) and starts one waiter thread per
 * draining version. A waiter blocks in snap_reclaim_wait(), i.e. in a blocking
 * flock(LOCK_EX) on the segment, which the kernel grants when the last shared
 * lock (pin) goes, crashed readers included; the library then unlinks the file
 * and drops the record.
 *
 * Stopping: a waiter blocked in flock() is woken by SIGUSR1 (a no-op handler
 * installed without SA_RESTART, so flock fails with EINTR). The signal may land
 * just before the waiter enters flock(), so it is repeated until the join
 * succeeds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "writerd.h"

#define MAX_WAITERS 256

struct waiter {
  struct waiter *next;
  struct wd_reaper *r;
  pthread_t thread;
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version, bytes;
  int done;
};

struct wd_reaper {
  snap_store *store;
  unsigned interval_ms;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  int kick, stop;
  pthread_t scanner;
  struct waiter *waiters;
  size_t nwaiters;
};

static void on_sigusr1(int sig) { (void)sig; }

/* Is @p version of @p dataset still listed? (-1 when the list fails) */
static int version_exists(snap_store *store, const char *dataset, uint64_t version) {
  struct snap_version_info *v;
  size_t n;
  int rc = snap_version_list(store, dataset, &v, &n, NULL);
  if (rc == SNAP_ENOTFOUND) return 0;
  if (rc) return -1;
  int found = 0;
  for (size_t i = 0; i < n; i++) found |= v[i].version == version;
  snap_free(v);
  return found;
}

void wd_log_reclaimed(snap_store *store, const char *dataset,
                      const struct snap_version_info *before, size_t n, const char *by) {
  char q[600];
  for (size_t i = 0; i < n; i++) {
    if (version_exists(store, dataset, before[i].version) != 0) continue;
    wd_log("reclaim", "dataset=%s version=%llu bytes=%llu by=%s",
           wd_q(q, sizeof q, dataset), (unsigned long long)before[i].version,
           (unsigned long long)before[i].bytes, by);
  }
}

static void *waiter_main(void *arg) {
  struct waiter *wt = arg;
  struct wd_reaper *r = wt->r;
  double t0 = wd_now();
  struct snap_error err = {0};
  int rc = snap_reclaim_wait(r->store, wt->dataset, wt->version, &err);
  pthread_mutex_lock(&r->mu);
  int stop = r->stop;
  pthread_mutex_unlock(&r->mu);
  char q[600];
  if (!stop) {
    if (rc) {
      wd_log("error", "op=reclaim dataset=%s version=%llu code=%s message=%s",
             wd_q(q, sizeof q, wt->dataset), (unsigned long long)wt->version,
             snap_error_name(rc), wd_q((char[600]){0}, 600, err.message));
    } else if (version_exists(r->store, wt->dataset, wt->version) == 0) {
      wd_log("reclaim", "dataset=%s version=%llu bytes=%llu waited=%.3f by=reaper",
             wd_q(q, sizeof q, wt->dataset), (unsigned long long)wt->version,
             (unsigned long long)wt->bytes, wd_now() - t0);
    }
  }
  pthread_mutex_lock(&r->mu);
  wt->done = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

struct drain {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t version, bytes;
};

/* Every draining version in the store. */
static size_t list_draining(snap_store *store, struct drain **out) {
  struct snap_dataset_info *ds;
  size_t nds, n = 0, cap = 0;
  *out = NULL;
  if (snap_dataset_list(store, &ds, &nds, NULL)) return 0;
  for (size_t i = 0; i < nds; i++) {
    struct snap_version_info *v;
    size_t nv;
    if (snap_version_list(store, ds[i].name, &v, &nv, NULL)) continue;
    for (size_t j = 0; j < nv; j++) {
      if (v[j].state != SNAP_STATE_DRAINING) continue;
      if (n == cap) {
        cap = cap ? 2 * cap : 16;
        struct drain *p = realloc(*out, cap * sizeof *p);
        if (!p) break;
        *out = p;
      }
      if (n < cap) {
        snprintf((*out)[n].dataset, sizeof(*out)[n].dataset, "%s", ds[i].name);
        (*out)[n].version = v[j].version;
        (*out)[n].bytes = v[j].bytes;
        n++;
      }
    }
    snap_free(v);
  }
  snap_free(ds);
  return n;
}

/* Join waiters that finished. Called with r->mu held. */
static void reap_waiters(struct wd_reaper *r) {
  for (struct waiter **p = &r->waiters; *p;) {
    struct waiter *wt = *p;
    if (!wt->done) {
      p = &wt->next;
      continue;
    }
    *p = wt->next;
    pthread_join(wt->thread, NULL); /* it has unlocked r->mu and is returning */
    free(wt);
    r->nwaiters--;
  }
}

static void *scanner_main(void *arg) {
  struct wd_reaper *r = arg;
  pthread_mutex_lock(&r->mu);
  while (!r->stop) {
    reap_waiters(r);
    r->kick = 0;
    pthread_mutex_unlock(&r->mu);
    struct drain *d;
    size_t n = list_draining(r->store, &d);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n && !r->stop; i++) {
      int known = 0;
      for (struct waiter *wt = r->waiters; wt && !known; wt = wt->next)
        known = wt->version == d[i].version && !strcmp(wt->dataset, d[i].dataset);
      if (known || r->nwaiters >= MAX_WAITERS) continue;
      struct waiter *wt = calloc(1, sizeof *wt);
      if (!wt) break;
      wt->r = r;
      memcpy(wt->dataset, d[i].dataset, sizeof wt->dataset);
      wt->version = d[i].version;
      wt->bytes = d[i].bytes;
      if (pthread_create(&wt->thread, NULL, waiter_main, wt)) {
        free(wt);
        break;
      }
      wt->next = r->waiters;
      r->waiters = wt;
      r->nwaiters++;
    }
    free(d);
    /* sleep until kicked, a waiter finishes, or the interval passes */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += r->interval_ms / 1000;
    until.tv_nsec += (long)(r->interval_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!r->stop && !r->kick) {
      int finished = 0;
      for (struct waiter *wt = r->waiters; wt && !finished; wt = wt->next)
        finished = wt->done;
      if (finished) {
        reap_waiters(r);
        continue;
      }
      if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT) break;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

int wd_reaper_start(snap_store *store, unsigned interval_ms, struct wd_reaper **out) {
  *out = NULL;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigusr1; /* no SA_RESTART: flock() returns EINTR */
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, NULL)) return -errno;
  struct wd_reaper *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->store = store;
  r->interval_ms = interval_ms ? interval_ms : 1000;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  int rc = pthread_create(&r->scanner, NULL, scanner_main, r);
  if (rc) {
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return -rc;
  }
  *out = r;
  return 0;
}

void wd_reaper_kick(struct wd_reaper *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->kick = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void wd_reaper_json(struct wd_reaper *r, struct wd_buf *b) {
  wd_buf_add(b, "[", 1);
  pthread_mutex_lock(&r->mu);
  int first = 1;
  for (struct waiter *wt = r->waiters; wt; wt = wt->next) {
    if (wt->done) continue;
    wd_buf_printf(b, "%s{\"dataset\":", first ? "" : ",");
    wd_buf_json_str(b, wt->dataset);
    wd_buf_printf(b, ",\"version\":%llu}", (unsigned long long)wt->version);
    first = 0;
  }
  pthread_mutex_unlock(&r->mu);
  wd_buf_add(b, "]", 1);
}

int wd_reaper_stop(struct wd_reaper *r) {
  if (!r) return 0;
  pthread_mutex_lock(&r->mu);
  r->stop = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->scanner, NULL);
  /* no new waiters from here on; wake the ones blocked in flock() */
  int stuck = 0;
  while (r->waiters) {
    struct waiter *wt = r->waiters;
    int joined = 0;
    for (int tries = 0; tries < 200 && !joined; tries++) {
      pthread_kill(wt->thread, SIGUSR1);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 10 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      joined = pthread_timedjoin_np(wt->thread, NULL, &ts) == 0;
    }
    r->waiters = wt->next;
    if (joined)
      free(wt);
    else
      stuck = 1; /* leave it (and r) allocated: the thread may still use them */
  }
  if (stuck) return -EBUSY;
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
  return 0;
}
