/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The publish thread. Publishes run one at a time, off the event loop, so that
 * status, gc and new connections stay responsive while a large CSV is parsed.
 *
 * Shutdown: wd_worker_stop() sets the ingest's cancel flag, which the parsers
 * poll every 65536 rows (CSV) or column (.npy); a cancelled ingest aborts its
 * publish, and an aborted publish leaves nothing (the segment is an O_TMPFILE
 * that dies with its descriptor; the reserved number is burned). A publish
 * already past its last poll commits completely. Either way no half version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "writerd.h"

struct wd_worker {
  snap_store *store;
  int inbox_dirfd;
  int efd;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct wd_job *queue, **queue_tail; /* submitted, not started */
  struct wd_job *done, **done_tail;   /* finished, for the main thread */
  char current[SNAP_DATASET_NAME_MAX + 1];
  int stop;
  volatile int cancel; /* read by the ingest (struct ingest_options.cancel) */
};

void wd_job_free(struct wd_job *job) {
  if (!job) return;
  if (job->fd >= 0) close(job->fd);
  if (job->progress) close(job->progress_fd);
  free(job->name);
  free(job->schema);
  free(job->schema_name);
  free(job);
}

/* PROGRESS lines for a socket client that asked: the first, then at most one every
 * 100 ms, and the last. The line is small enough to go whole or not at all on a
 * non-blocking Unix stream socket, so a client that stops reading loses lines,
 * never receives half of one, and never stalls the worker. */
static void send_progress(uint64_t done, uint64_t total, void *arg) {
  struct wd_job *job = arg;
  double t = wd_now();
  if (job->progress_sent && done < total && t - job->progress_sent < 0.1) return;
  char line[64];
  int n = snprintf(line, sizeof line, "PROGRESS %llu %llu\n", (unsigned long long)done,
                   (unsigned long long)total);
  if (send(job->progress_fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
    job->progress_sent = t;
}

/* Segment size (and for an adopted segment, its shape) of the new version. */
static void version_facts(snap_store *store, struct wd_job *job) {
  struct snap_version_info *v;
  size_t n;
  if (snap_version_list(store, job->dataset, &v, &n, NULL)) return;
  for (size_t i = 0; i < n; i++)
    if (v[i].version == job->res.version) {
      job->seg_bytes = v[i].bytes;
      if (job->adopt) {
        job->res.nrows = v[i].nrows;
        job->res.ncols = v[i].ncols;
      }
    }
  snap_free(v);
}

static void run_job(struct wd_worker *w, struct wd_job *job) {
  char qname[600], qds[600];
  wd_log("publish-start", "dataset=%s source=%s file=%s",
         wd_q(qds, sizeof qds, job->dataset),
         job->source == WD_SRC_INBOX ? "inbox" : "socket",
         wd_q(qname, sizeof qname, job->name));
  double t0 = wd_now();
  if (job->fd < 0 && job->source == WD_SRC_INBOX) {
    /* O_NONBLOCK: a FIFO renamed into the inbox must not hang the thread */
    job->fd = openat(w->inbox_dirfd, job->name,
                     O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (job->fd < 0) {
      int e = errno;
      if (e == ENOENT) {
        job->vanished = 1;
        job->status = -ENOENT;
        return;
      }
      job->status = -e;
      job->err.code = -e;
      snprintf(job->err.message, sizeof job->err.message, "%s: %s", job->name,
               strerror(e));
      return;
    }
  }
  /* versions before, to report what the commit's own gc reclaims */
  struct snap_version_info *before = NULL;
  size_t nbefore = 0;
  if (snap_version_list(w->store, job->dataset, &before, &nbefore, NULL)) {
    before = NULL;
    nbefore = 0;
  }
  if (job->adopt) {
    int fd = job->fd;
    job->fd = -1; /* snap_publish_adopt() takes it, success or not */
    struct stat st;
    if (!fstat(fd, &st)) job->res.input_bytes = (uint64_t)st.st_size;
    job->status =
        snap_publish_adopt(w->store, job->dataset, fd, &job->res.version, &job->err);
  } else {
    struct ingest_options o = job->opt;
    o.display_name = job->name;
    o.cancel = &w->cancel;
    if (job->progress) {
      o.progress = send_progress;
      o.progress_arg = job;
    }
    /* ingest_fd() reads the input under a read lease (or reads it into memory
     * when it cannot have one): a producer truncating or rewriting the file
     * meanwhile cannot SIGBUS the daemon; it waits, and the ingest stops */
    job->status = ingest_fd(w->store, job->dataset, job->fd, &o, &job->res, &job->err);
  }
  job->seconds = wd_now() - t0;
  if (!job->status) {
    version_facts(w->store, job);
    wd_log_reclaimed(w->store, job->dataset, before, nbefore, "publish");
  }
  snap_free(before);
}

static void *worker_main(void *arg) {
  struct wd_worker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->queue && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
    if (w->stop) break;
    struct wd_job *job = w->queue;
    w->queue = job->next;
    if (!w->queue) w->queue_tail = &w->queue;
    job->next = NULL;
    snprintf(w->current, sizeof w->current, "%s", job->dataset);
    pthread_mutex_unlock(&w->mu);

    run_job(w, job);
    /* counted before the job goes back, so before its client has the reply */
    if (!job->status) {
      wd_count(WD_C_PUBLISHES, 1);
      wd_count(WD_C_FLIPS, 1); /* a publish makes its version current */
    } else if (!job->vanished && job->status != -ECANCELED) {
      wd_count_error("publish"); /* (not a file gone, nor a shutdown's cancel) */
    }

    pthread_mutex_lock(&w->mu);
    w->current[0] = 0;
    *w->done_tail = job;
    w->done_tail = &job->next;
    uint64_t one = 1;
    if (write(w->efd, &one, sizeof one) < 0) {
      /* the counter cannot overflow in practice; nothing to do */
    }
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int wd_worker_start(snap_store *store, int inbox_dirfd, struct wd_worker **out,
                    int *efd) {
  *out = NULL;
  struct wd_worker *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->store = store;
  w->inbox_dirfd = inbox_dirfd;
  w->queue_tail = &w->queue;
  w->done_tail = &w->done;
  w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->efd < 0) {
    int e = -errno;
    free(w);
    return e;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  int rc = pthread_create(&w->thread, NULL, worker_main, w);
  if (rc) {
    close(w->efd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return -rc;
  }
  *efd = w->efd;
  *out = w;
  return 0;
}

void wd_worker_submit(struct wd_worker *w, struct wd_job *job) {
  job->next = NULL;
  pthread_mutex_lock(&w->mu);
  *w->queue_tail = job;
  w->queue_tail = &job->next;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

struct wd_job *wd_worker_take_done(struct wd_worker *w) {
  pthread_mutex_lock(&w->mu);
  struct wd_job *job = w->done;
  if (job) {
    w->done = job->next;
    if (!w->done) w->done_tail = &w->done;
    job->next = NULL;
  } else {
    uint64_t v;
    if (read(w->efd, &v, sizeof v) < 0) {
      /* EAGAIN: already clear */
    }
  }
  pthread_mutex_unlock(&w->mu);
  return job;
}

void wd_worker_state(struct wd_worker *w, size_t *queued, char *current, size_t cap) {
  pthread_mutex_lock(&w->mu);
  size_t n = 0;
  for (struct wd_job *j = w->queue; j; j = j->next) n++;
  *queued = n;
  snprintf(current, cap, "%s", w->current);
  pthread_mutex_unlock(&w->mu);
}

void wd_worker_stop(struct wd_worker *w, struct wd_job **dropped) {
  *dropped = NULL;
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  __atomic_store_n(&w->cancel, 1, __ATOMIC_SEQ_CST);
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  /* finished jobs first (their results stand), then those never started */
  struct wd_job *list = w->done, **tail = w->done ? w->done_tail : &list;
  for (struct wd_job *j = w->queue; j; j = j->next) {
    j->status = -ECANCELED;
    j->err.code = -ECANCELED;
    snprintf(j->err.message, sizeof j->err.message, "writerd is shutting down");
  }
  *tail = w->queue;
  *dropped = list;
  close(w->efd);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

void wd_log_publish(const struct wd_job *job) {
  char qd[600], qf[600], qm[600];
  const char *src = job->source == WD_SRC_INBOX ? "inbox" : "socket";
  wd_q(qd, sizeof qd, job->dataset);
  wd_q(qf, sizeof qf, job->name ? job->name : "");
  if (!job->status) {
    wd_log("publish",
           "dataset=%s version=%llu rows=%llu cols=%u bytes=%llu input_bytes=%llu "
           "seconds=%.3f source=%s file=%s%s",
           qd, (unsigned long long)job->res.version, (unsigned long long)job->res.nrows,
           job->res.ncols, (unsigned long long)job->seg_bytes,
           (unsigned long long)job->res.input_bytes, job->seconds, src, qf,
           job->adopt ? " adopted=1" : "");
  } else if (job->status == -ECANCELED) {
    wd_log("cancel", "dataset=%s source=%s file=%s reason=shutdown", qd, src, qf);
  } else {
    wd_log("error", "op=publish dataset=%s source=%s file=%s code=%s message=%s", qd, src,
           qf, snap_error_name(job->status),
           wd_q(qm, sizeof qm,
                job->err.message[0] ? job->err.message : snap_strerror(job->status)));
  }
}
