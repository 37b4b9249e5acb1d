/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * writerd: the publishing daemon. Shared declarations of its parts, one file each:
 *
 *   main.c    options, start-up, the event loop (epoll), shutdown
 *   log.c     one line per event on stderr
 *   lock.c    one writerd per store: flock on <store>/writerd.lock
 *   worker.c  the publish thread: ingest (.npy, CSV) or adopt a sealed segment
 *   inbox.c   the watched inbox directory (inotify), done/ and failed/
 *   socket.c  the Unix-socket request protocol (docs/protocol.md)
 *   reaper.c  reclaims each draining version the moment its last reader lets go
 *   metrics.c counters and gauges, served as Prometheus text over HTTP (--metrics)
 *
 * Threads: the main thread owns the event loop, the clients and the inbox; the
 * worker thread runs one publish at a time; the reaper runs one scanner thread
 * plus one thread per draining version it waits on; with --metrics, one more thread
 * answers HTTP scrapes. They share the store handle
 * (libsnap handles are thread-safe) and talk through the queues in worker.c and
 * reaper.c, whose completion eventfds the main loop watches.
 */
#ifndef WRITERD_H
#define WRITERD_H

#include <libsnap/libsnap.h>
#include <pthread.h>
#include <snap_ingest/ingest.h>
#include <stdint.h>
#include <sys/types.h>

/* writerd ships with the library: one version number (libsnap.h). */
#define WD_STR2(x) #x
#define WD_STR(x) WD_STR2(x)
#define WD_VERSION \
  WD_STR(SNAP_VERSION_MAJOR) "." WD_STR(SNAP_VERSION_MINOR) "." WD_STR(SNAP_VERSION_PATCH)
/** Most descriptors a client may have sent and not yet used. */
#define WD_MAX_FDS 4
/** Most simultaneous clients; more are refused with ERR EBUSY. */
#define WD_MAX_CLIENTS 1024
/** Protocol errors after which a connection is closed. */
#define WD_MAX_ERRORS 8
#define WD_MAX_ALLOW 32

/* ------------------------------------------------------------ event loop */

/** What an epoll data pointer points at: every source starts with this. */
enum wd_ev_kind {
  WD_EV_SIGNAL = 1,
  WD_EV_LISTEN,
  WD_EV_INBOX,
  WD_EV_WORKER,
  WD_EV_CLIENT
};
struct wd_ev {
  enum wd_ev_kind kind;
};

/* ------------------------------------------------------------------ log.c */

/**
 * Write one event line "EVENT key=value ..." on stderr in a single write(2).
 * @p fmt gives the key=value part; use wd_q() for values that may hold spaces.
 * Thread-safe.
 */
void wd_log(const char *event, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Quote a value for a log line when it needs it (spaces, quotes, '=', empty):
 *  "a b" -> "\"a b\"". Returns @p out (cap bytes). */
const char *wd_q(char *out, size_t cap, const char *value);

/** Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double wd_now(void);

/* ----------------------------------------------------------------- lock.c */

/**
 * Take the store's writerd lock (flock LOCK_EX|LOCK_NB on @p path, created
 * 0644). On success *fd holds it (close-on-exec). When another process holds
 * it, prints "writerd: ... held by writerd pid N" and returns -EWOULDBLOCK.
 * @return 0 or -errno (message printed).
 */
int wd_lock_take(const char *path, int *fd);

/** Write "PID\nSOCKET\n" into the held lock file (what snapctl reads). */
int wd_lock_write(int fd, pid_t pid, const char *socket_path);

/* --------------------------------------------------------------- worker.c */

enum wd_source { WD_SRC_INBOX = 1, WD_SRC_SOCKET = 2 };

/** One publish request, from the inbox or the socket. Owned by whoever holds it:
 *  the submitter until wd_worker_submit(), then the worker, then the main thread
 *  again once wd_worker_take_done() hands it back. */
struct wd_job {
  struct wd_job *next;
  enum wd_source source;
  uint64_t client; /* WD_SRC_SOCKET: the requesting client's id */
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  char *name;           /* inbox: file name in the inbox; socket: path or display name */
  int fd;               /* input descriptor owned by the job, or -1 (inbox: opened by
                           the worker relative to the inbox directory) */
  int adopt;            /* fd is a sealed detached segment: snap_publish_adopt() */
  pid_t peer;           /* socket: the client's pid (SO_PEERCRED) */
  int progress;         /* socket: the client asked for PROGRESS lines ... */
  int progress_fd;      /* ... sent on this dup of its socket (valid when progress) */
  double progress_sent; /* when the last one went (wd_now()) */
  struct ingest_options opt; /* format, category_max, no_category, schema */
  char *schema;              /* owned text behind opt.schema (inbox: <dataset>.schema) */
  char *schema_name;         /* owned, behind opt.schema_name */
  /* results, filled by the worker */
  int status;   /* 0, a libsnap/ingest status, or -ECANCELED */
  int vanished; /* inbox: the file was gone when the worker came to it */
  struct snap_error err;
  struct ingest_result res;
  uint64_t seg_bytes; /* size of the new segment */
  double seconds;
};

/** Free a job and close its descriptor. NULL ok. */
void wd_job_free(struct wd_job *job);

struct wd_worker;

/**
 * Start the publish thread on @p store. @p inbox_dirfd (or -1) resolves inbox
 * jobs' names. The returned eventfd (*efd) becomes readable when finished jobs
 * wait in wd_worker_take_done().
 */
int wd_worker_start(snap_store *store, int inbox_dirfd, struct wd_worker **out, int *efd);
/** Queue a job (takes ownership). Main thread. */
void wd_worker_submit(struct wd_worker *w, struct wd_job *job);
/** Pop one finished job, or NULL. Main thread. Clears the eventfd when empty. */
struct wd_job *wd_worker_take_done(struct wd_worker *w);
/** Jobs queued (not started) and the dataset being published now ("" if none). */
void wd_worker_state(struct wd_worker *w, size_t *queued, char *current, size_t cap);
/**
 * Stop: abort the running publish (its ingest is cancelled, so no version
 * appears; a publish already committing finishes), drop queued jobs, join the
 * thread. Jobs not run are returned through *dropped (a list, status -ECANCELED)
 * so the caller can answer their clients. Frees the worker.
 */
void wd_worker_stop(struct wd_worker *w, struct wd_job **dropped);

/* --------------------------------------------------------------- reaper.c */

struct wd_reaper;

/** Start the reaper on @p store: a scanner that finds draining versions (at
 *  once, on wd_reaper_kick(), and every @p interval_ms) and one waiter thread
 *  per draining version. */
int wd_reaper_start(snap_store *store, unsigned interval_ms, struct wd_reaper **out);
/** Ask for a scan now (after a publish, rollback, keep change). Thread-safe. */
void wd_reaper_kick(struct wd_reaper *r);
/** Append the versions being waited on as a JSON array to @p buf. */
struct wd_buf;
void wd_reaper_json(struct wd_reaper *r, struct wd_buf *buf);
/** Interrupt every waiter, join all threads, free. Returns -EBUSY when a waiter
 *  could not be joined within 2 s (then the store must not be closed). */
int wd_reaper_stop(struct wd_reaper *r);

/** Log "reclaim" for versions of @p dataset listed in @p before but not in the
 *  store now (reclaimed by a commit's own gc). */
void wd_log_reclaimed(snap_store *store, const char *dataset,
                      const struct snap_version_info *before, size_t n, const char *by);

/* --------------------------------------------------------------- buffers */

/** A growable byte buffer (replies, JSON). */
struct wd_buf {
  char *p;
  size_t len, cap;
};
void wd_buf_add(struct wd_buf *b, const void *data, size_t n);
void wd_buf_printf(struct wd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Append a JSON string literal. */
void wd_buf_json_str(struct wd_buf *b, const char *s);
void wd_buf_free(struct wd_buf *b);

/* ---------------------------------------------------------------- inbox.c */

struct wd_inbox;

/** Create DIR, DIR/done and DIR/failed as needed, watch DIR. *ifd is the inotify
 *  descriptor for the event loop; *dirfd the inbox directory (for the worker).
 *  done/ keeps the @p done_keep files published last (-1: all). */
int wd_inbox_open(const char *dir, int done_keep, struct wd_inbox **out, int *ifd,
                  int *dirfd);
/** Queue every eligible file now in the inbox (at start, after an overflow). */
void wd_inbox_scan(struct wd_inbox *in, struct wd_worker *w);
/** Read inotify events and queue the files they name. */
void wd_inbox_event(struct wd_inbox *in, struct wd_worker *w);
/** A finished inbox job: move the file to done/ or failed/ (+ .error), log. */
void wd_inbox_finish(struct wd_inbox *in, struct wd_job *job);
void wd_inbox_close(struct wd_inbox *in);

/* --------------------------------------------------------------- socket.c */

struct wd_server;

struct wd_server_config {
  const char *path;
  const char *store_path;
  uid_t allow_uid[WD_MAX_ALLOW];
  size_t n_allow_uid;
  gid_t allow_gid[WD_MAX_ALLOW];
  size_t n_allow_gid;
};

/** Bind and listen on cfg->path (a stale socket there is replaced; the file is
 *  made 0666: access is decided by SO_PEERCRED against the allow-list). */
int wd_server_open(const struct wd_server_config *cfg, snap_store *store, int epfd,
                   struct wd_worker *w, struct wd_reaper *r, struct wd_server **out);
/** The listening descriptor. */
int wd_server_fd(const struct wd_server *s);
/** Accept pending connections; each new client is added to the server's epoll
 *  set (given at open). */
void wd_server_accept(struct wd_server *s);
/** Handle readiness of a client (the epoll data pointer, kind WD_EV_CLIENT). */
void wd_server_client_event(struct wd_server *s, struct wd_ev *client, uint32_t events);
/** A finished socket job: reply to its client if it is still connected. */
void wd_server_finish(struct wd_server *s, struct wd_job *job);
/** Close every client, unlink the socket (if still ours), free. */
void wd_server_close(struct wd_server *s);

/** Log a finished publish (either source) and its reclaims; shared. */
void wd_log_publish(const struct wd_job *job);

/* -------------------------------------------------------------- metrics.c */

/** Event counters, exported as the counters named in metrics.c's table
 *  (snap_publishes_total, ...). */
enum wd_counter {
  WD_C_PUBLISHES,     /**< versions this writerd published (socket, inbox, adopt) */
  WD_C_FLIPS,         /**< times it changed a current version (publish, rollback) */
  WD_C_BYTES_PUSHED,  /**< bytes pushed to a remote */
  WD_C_BYTES_FETCHED, /**< bytes fetched from a remote */
  WD_C_PUSHES,        /**< versions pushed to a remote */
  WD_C_FOLLOW_FLIPS,  /**< versions made current by following a remote */
  WD_C_COUNT
};

/** Add @p n to counter @p c. Lock-free (a relaxed atomic add): any thread, at
 *  any time, also without a metrics server. */
void wd_count(enum wd_counter c, uint64_t n);

/**
 * Count one error of @p kind in snap_errors_total{kind=...}: one of "publish",
 * "push", "fetch", "verify", "s3_denied", "s3_network", "s3_server", "s3_other",
 * "protocol"; any other kind (NULL too) counts as "other". Lock-free; any thread.
 */
void wd_count_error(const char *kind);

/**
 * Set the gauge @p metric of @p dataset to @p value (exported as
 * metric{dataset="..."}). @p metric must be one of the gauge names of metrics.c's
 * table, each with its HELP text: "snap_follow_lag_versions",
 * "snap_follow_lag_seconds", "snap_follow_announced_version", "snap_push_version";
 * an unknown name, or a dataset name longer than SNAP_DATASET_NAME_MAX, is
 * ignored. The strings are copied. Takes a mutex held briefly; any thread.
 */
void wd_gauge_set(const char *metric, const char *dataset, double value);
/** Forget every gauge of @p dataset (a dataset that is gone). Any thread. */
void wd_gauge_drop(const char *dataset);

/** @return 0 when @p addr is a valid --metrics address: "HOST:PORT" with HOST a
 *  numeric IPv4 address or a numeric IPv6 address in brackets ("[::1]:9100"),
 *  PORT 0 to 65535 (0: any free port); else -EINVAL. */
int wd_metrics_addr_check(const char *addr);

struct wd_metrics;

/**
 * Listen on @p addr (see wd_metrics_addr_check()) and start the metrics thread:
 * GET /metrics answers the Prometheus text exposition (format 0.0.4) of the
 * counters, the gauges and the figures of @p store read at scrape time; one
 * request per connection, each connection closed after 5 s at the latest.
 * @p bound receives the address actually bound ("127.0.0.1:43121",
 * "[::1]:9100"; @p cap bytes, 64 are enough). The store must stay open until
 * wd_metrics_stop().
 * @return 0, or -errno with a message printed (nothing left to clean up).
 */
int wd_metrics_start(snap_store *store, const char *addr, struct wd_metrics **out,
                     char *bound, size_t cap);
/** Wake the metrics thread, join it, close its sockets, free. NULL ok. */
void wd_metrics_stop(struct wd_metrics *m);

/** Append the whole exposition (what GET /metrics answers) to @p out. Any
 *  thread; reads @p store with the public API. */
void wd_metrics_render(snap_store *store, struct wd_buf *out);

/** What wd_http_parse() found in a complete request head. */
struct wd_http_req {
  int get;     /**< the method is GET */
  int metrics; /**< the path is /metrics (a query string aside) */
};
/**
 * Parse an HTTP/1.x request head received so far (@p len bytes): the request
 * line, header lines (each "NAME: value"), an empty line; CRLF or LF line ends.
 * @return the head's length when complete (*req filled), 0 when the bytes so far
 *         may begin a valid head, -1 when they cannot. Bounded by @p len; never
 *         reads past it. Pure; any thread.
 */
int wd_http_parse(const char *buf, size_t len, struct wd_http_req *req);
/* ----------------------------------------------------------------- sync.c */

/** Push, follow, restore and mirror (docs/multihost.md): one of follow_url,
 *  push_url, mirror_dir is set. */
struct wd_sync_config {
  const char *push_url;   /**< --push s3://BUCKET/PREFIX */
  const char *follow_url; /**< --follow s3://BUCKET/PREFIX */
  const char *mirror_dir; /**< --mirror DIR: push there, restore from it at start */
  int restore;            /**< --restore: rebuild what the store lacks at start */
  unsigned push_keep;     /**< --push-keep (0: the library's default, 3) */
  unsigned push_grace_s;  /**< --push-grace seconds */
  unsigned poll_ms;       /**< --poll-interval (default 1000) */
  unsigned jitter_pct;    /**< --poll-jitter percent (default 20) */
  unsigned parallel;      /**< --transfers (0: 4) */
};

struct wd_sync;

/** Open the remote and start the sync thread. @return 0 or a status (the
 *  message is printed). */
int wd_sync_start(snap_store *store, struct wd_reaper *reaper,
                  const struct wd_sync_config *cfg, struct wd_sync **out);
/** A publish flipped: push now rather than at the next interval. NULL ok. */
void wd_sync_kick(struct wd_sync *s);
/** Stop the thread (an upload or download in flight is finished or abandoned;
 *  a .replica file stays for the next start) and free. NULL ok. */
void wd_sync_stop(struct wd_sync *s);
/** Free without a thread (start-up failures). */
void wd_sync_free(struct wd_sync *s);
/** Append ,"follow":{...} or ,"push":{...} for @p dataset to a STATUS object. */
void wd_sync_json(struct wd_sync *s, const char *dataset, struct wd_buf *b);
/** Give the server the sync state for STATUS (after wd_server_open()). */
void wd_server_set_sync(struct wd_server *srv, struct wd_sync *s);

#endif /* WRITERD_H */
