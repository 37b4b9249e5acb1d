/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Unix-socket request protocol (docs/protocol.md): one request per line,
 * "VERB arg...\n", arguments separated by one space and percent-encoded where
 * they hold a space, '%' or a control byte; one reply line per request,
 * "OK ...\n" or "ERR CODE message\n". Descriptors (SCM_RIGHTS) travel with
 * the request that uses them: PUBLISH DATASET - and ADOPT DATASET.
 *
 * Every client is authorised once, at accept, by its SO_PEERCRED uid/gid against
 * the allow-list. Clients are non-blocking and served from the main epoll loop;
 * a publish goes to the worker thread and the client's further requests wait
 * (its input is not read) until the reply is sent, so replies keep the order of
 * the requests. Malformed input gets an ERR reply; an oversize line, too many
 * errors or too many descriptors close the connection. Nothing a client sends
 * can stop the daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"
#include "writerd.h"

#define OUT_MAX (64u << 20) /* a client that does not read its replies is dropped */

struct client {
  struct wd_ev ev; /* first: the epoll data pointer */
  struct client *next, *prev;
  uint64_t id;
  int fd;
  struct ucred cred;
  char in[WD_LINE_MAX];
  size_t inlen;
  struct wd_buf out;
  size_t outoff;
  int fds[WD_MAX_FDS];
  int nfds;
  int busy;    /* a publish is in the worker */
  int closing; /* close once the output is flushed */
  int eof;     /* the peer will send nothing more */
  int in_epoll;
  uint32_t events; /* registered interest */
  int errors;
};

struct wd_server {
  struct wd_server_config cfg;
  char *path, *store_path;
  int fd, epfd;
  dev_t dev;
  ino_t ino;
  snap_store *store;
  struct wd_worker *worker;
  struct wd_reaper *reaper;
  struct wd_sync *sync; /* NULL unless --push, --follow or --mirror */
  struct client *clients;
  size_t nclients;
  uint64_t next_id;
};

/* ------------------------------------------------------------- plumbing */

int wd_server_fd(const struct wd_server *s) { return s->fd; }

void wd_server_set_sync(struct wd_server *srv, struct wd_sync *s) { srv->sync = s; }

static void destroy(struct wd_server *s, struct client *c) {
  if (c->in_epoll) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  for (int i = 0; i < c->nfds; i++) close(c->fds[i]);
  wd_buf_free(&c->out);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nclients--;
  free(c);
}

/* Register what the client waits for: input unless busy/closing/eof, output
 * while some is pending. */
static void interest(struct wd_server *s, struct client *c) {
  if (!c->in_epoll) return;
  uint32_t ev = 0;
  if (!c->busy && !c->closing && !c->eof) ev |= EPOLLIN;
  if (c->out.len > c->outoff) ev |= EPOLLOUT;
  if (ev == c->events) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &e);
  c->events = ev;
}

/* Write what is pending. Returns -1 when the client is gone (destroyed). */
static int flush(struct wd_server *s, struct client *c) {
  while (c->out.len > c->outoff) {
    ssize_t n = send(c->fd, c->out.p + c->outoff, c->out.len - c->outoff,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      destroy(s, c);
      return -1;
    }
    c->outoff += (size_t)n;
  }
  if (c->out.len == c->outoff) {
    c->out.len = c->outoff = 0;
    if (c->closing || (c->eof && !c->busy)) {
      destroy(s, c);
      return -1;
    }
  } else if (c->out.len - c->outoff > OUT_MAX) {
    destroy(s, c);
    return -1;
  }
  interest(s, c);
  return 0;
}

/* Queue one reply line; control bytes in it become spaces. */
static void reply(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...) {
  size_t start = c->out.len;
  char small[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof small) n = sizeof small - 1;
  wd_buf_add(&c->out, small, (size_t)n);
  for (size_t i = start; i < c->out.len; i++)
    if ((unsigned char)c->out.p[i] < 0x20) c->out.p[i] = ' ';
  wd_buf_add(&c->out, "\n", 1);
}

static void reply_err(struct client *c, int status, const char *message) {
  reply(c, "ERR %s %s", snap_error_name(status),
        message && *message ? message : snap_strerror(status));
}

static void reply_proto(struct client *c, const char *name, const char *message) {
  c->errors++;
  reply(c, "ERR %s %s", name, message);
  if (c->errors >= WD_MAX_ERRORS) {
    reply(c, "ERR EPROTO too many bad requests; closing");
    c->closing = 1;
  }
}

/* ---------------------------------------------------------------- open */

int wd_server_open(const struct wd_server_config *cfg, snap_store *store, int epfd,
                   struct wd_worker *w, struct wd_reaper *r, struct wd_server **out) {
  *out = NULL;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(cfg->path) >= sizeof sa.sun_path) {
    fprintf(stderr, "writerd: socket path %s: longer than %zu bytes\n", cfg->path,
            sizeof sa.sun_path - 1);
    return -ENAMETOOLONG;
  }
  memcpy(sa.sun_path, cfg->path, strlen(cfg->path) + 1);
  /* we hold the store's lock, so a socket left at the path is a dead writerd's */
  struct stat st;
  if (!lstat(cfg->path, &st)) {
    if (!S_ISSOCK(st.st_mode)) {
      fprintf(stderr, "writerd: %s exists and is not a socket\n", cfg->path);
      return -EEXIST;
    }
    unlink(cfg->path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = 0;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || chmod(cfg->path, 0666) ||
      listen(fd, SOMAXCONN) || lstat(cfg->path, &st)) {
    rc = -errno;
    fprintf(stderr, "writerd: socket %s: %s\n", cfg->path, strerror(-rc));
    close(fd);
    return rc;
  }
  struct wd_server *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(cfg->path)) ||
      !(s->store_path = strdup(cfg->store_path))) {
    if (s) free(s->path);
    free(s);
    close(fd);
    return -ENOMEM;
  }
  s->cfg = *cfg;
  s->fd = fd;
  s->epfd = epfd;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->store = store;
  s->worker = w;
  s->reaper = r;
  *out = s;
  return 0;
}

static int allowed(const struct wd_server *s, const struct ucred *cr) {
  if (cr->uid == 0 || cr->uid == geteuid()) return 1;
  for (size_t i = 0; i < s->cfg.n_allow_uid; i++)
    if (s->cfg.allow_uid[i] == cr->uid) return 1;
  for (size_t i = 0; i < s->cfg.n_allow_gid; i++)
    if (s->cfg.allow_gid[i] == cr->gid) return 1;
  return 0;
}

void wd_server_accept(struct wd_server *s) {
  for (;;) {
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
        wd_log("error", "op=accept message=\"%s\"", strerror(errno));
      return;
    }
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len)) {
      close(fd);
      continue;
    }
    const char *refusal = NULL;
    char msg[160];
    if (!allowed(s, &cr)) {
      snprintf(msg, sizeof msg, "ERR EACCES uid %u gid %u is not allowed by writerd\n",
               (unsigned)cr.uid, (unsigned)cr.gid);
      refusal = msg;
      wd_log("refused", "pid=%ld uid=%u gid=%u reason=not-allowed", (long)cr.pid,
             (unsigned)cr.uid, (unsigned)cr.gid);
    } else if (s->nclients >= WD_MAX_CLIENTS) {
      snprintf(msg, sizeof msg, "ERR EBUSY too many clients (%d)\n", WD_MAX_CLIENTS);
      refusal = msg;
      wd_log("refused", "pid=%ld uid=%u gid=%u reason=too-many-clients", (long)cr.pid,
             (unsigned)cr.uid, (unsigned)cr.gid);
    }
    if (refusal) {
      /* a fresh socket's buffer takes the line; if not, the close says enough */
      if (send(fd, refusal, strlen(refusal), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      }
      close(fd);
      continue;
    }
    struct client *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->ev.kind = WD_EV_CLIENT;
    c->id = ++s->next_id;
    c->fd = fd;
    c->cred = cr;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e)) {
      close(fd);
      free(c);
      continue;
    }
    c->in_epoll = 1;
    c->events = EPOLLIN;
    c->next = s->clients;
    if (s->clients) s->clients->prev = c;
    s->clients = c;
    s->nclients++;
  }
}

/* ------------------------------------------------------------- requests */

static int take_fd(struct client *c) {
  if (!c->nfds) return -1;
  int fd = c->fds[0];
  memmove(c->fds, c->fds + 1, (size_t)(c->nfds - 1) * sizeof *c->fds);
  c->nfds--;
  return fd;
}

/* May the peer read this file? Root may read anything; others by the mode bits
 * (owner, primary group, others). Only for a writerd that is not root: see
 * open_as_peer(). */
static int peer_may_read(const struct ucred *cr, const struct stat *st) {
  if (cr->uid == 0) return 1;
  if (st->st_uid == cr->uid) return (st->st_mode & S_IRUSR) != 0;
  if (st->st_gid == cr->gid) return (st->st_mode & S_IRGRP) != 0;
  return (st->st_mode & S_IROTH) != 0;
}

/* Open PATH for reading as the peer would: a root writerd takes on the peer's
 * file-system uid, gid and supplementary groups (SO_PEERGROUPS) for the open,
 * on this thread only (setfsuid/setfsgid and the raw setgroups system call are
 * per thread; glibc's setgroups would change every thread), so that the kernel
 * checks every directory on the way, ACLs included, as for the peer itself.
 * Returns the descriptor or -errno. *checked tells whether it did so (else the
 * caller checks the mode bits). */
static int open_as_peer(int sock, const struct ucred *cr, const char *path,
                        int *checked) {
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  *checked = 0;
  if (geteuid() != 0 || cr->uid == 0) {
    int fd = open(path, flags);
    return fd < 0 ? -errno : fd;
  }
  static gid_t peer[NGROUPS_MAX], mine[NGROUPS_MAX]; /* the event-loop thread only */
  socklen_t len = sizeof peer;
  int npeer = getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, peer, &len)
                  ? 0
                  : (int)(len / sizeof *peer);
  int nmine = getgroups(NGROUPS_MAX, mine);
  if (nmine < 0 || syscall(SYS_setgroups, (size_t)npeer, peer)) return -EPERM;
  gid_t gid = getegid();
  setfsgid(cr->gid);
  setfsuid(cr->uid);
  int fd = open(path, flags), e = errno;
  setfsuid(0);
  setfsgid(gid);
  if (syscall(SYS_setgroups, (size_t)nmine, mine)) abort(); /* cannot stay the peer */
  *checked = 1;
  return fd < 0 ? -e : fd;
}

static void req_publish(struct wd_server *s, struct client *c, char **argv, int argc,
                        int adopt) {
  int need = adopt ? 2 : 3;
  if (argc < need) {
    reply_proto(c, "EPROTO",
                adopt ? "usage: ADOPT DATASET (a descriptor attached)"
                      : "usage: PUBLISH DATASET PATH|- [format=npy|csv] "
                        "[category-max=N] [no-category] [name=NAME] [schema=TEXT] "
                        "[progress]");
    return;
  }
  if (adopt && argc > 2) {
    reply_proto(c, "EPROTO", "ADOPT takes one argument");
    return;
  }
  struct wd_job *job = calloc(1, sizeof *job);
  if (!job) {
    reply_err(c, -ENOMEM, NULL);
    return;
  }
  job->fd = -1;
  job->source = WD_SRC_SOCKET;
  job->client = c->id;
  job->peer = c->cred.pid;
  job->adopt = adopt;
  const char *dataset = argv[1];
  if (strlen(dataset) > SNAP_DATASET_NAME_MAX) {
    reply_err(c, SNAP_EINVAL, "dataset name too long");
    wd_job_free(job);
    return;
  }
  snprintf(job->dataset, sizeof job->dataset, "%s", dataset);
  const char *display = NULL;
  int want_progress = 0;
  for (int i = 3; i < argc; i++) {
    uint64_t u;
    if (!strcmp(argv[i], "format=npy")) {
      job->opt.format = INGEST_NPY;
    } else if (!strcmp(argv[i], "format=csv")) {
      job->opt.format = INGEST_CSV;
    } else if (!strncmp(argv[i], "category-max=", 13) &&
               !wd_proto_u64(argv[i] + 13, &u) && u >= 1 && u <= UINT32_MAX) {
      job->opt.category_max = (uint32_t)u;
    } else if (!strcmp(argv[i], "no-category")) {
      job->opt.no_category = 1;
    } else if (!strcmp(argv[i], "progress")) {
      want_progress = 1; /* job->progress only once it has its descriptor */
    } else if (!strncmp(argv[i], "name=", 5) && argv[i][5]) {
      display = argv[i] + 5;
    } else if (!strncmp(argv[i], "schema=", 7) && argv[i][7] && !job->schema) {
      /* the schema's text itself (snapctl publish --schema), percent-decoded */
      if (!(job->schema = strdup(argv[i] + 7)) ||
          !(job->schema_name = strdup("<schema>"))) {
        reply_err(c, -ENOMEM, "out of memory");
        wd_job_free(job);
        return;
      }
      job->opt.schema = job->schema;
      job->opt.schema_len = strlen(job->schema);
      job->opt.schema_name = job->schema_name;
    } else {
      char m[300];
      snprintf(m, sizeof m, "unknown PUBLISH option '%.200s'", argv[i]);
      reply_proto(c, "EPROTO", m);
      wd_job_free(job);
      return;
    }
  }
  const char *src = adopt ? "-" : argv[2];
  if (!strcmp(src, "-")) {
    job->fd = take_fd(c);
    if (job->fd < 0) {
      reply_proto(c, "EPROTO", "no descriptor was sent with the request (SCM_RIGHTS)");
      wd_job_free(job);
      return;
    }
    job->name = strdup(display ? display : adopt ? "<segment>" : "<descriptor>");
    if (!adopt && job->opt.format == INGEST_AUTO &&
        ingest_format_from_name(job->name) == INGEST_AUTO) {
      reply_err(c, SNAP_EINVAL,
                "cannot tell the format of a descriptor: give format=npy|csv or name=");
      wd_job_free(job);
      return;
    }
  } else {
    if (src[0] != '/') {
      reply_err(c, SNAP_EINVAL, "PATH must be absolute (or '-' with a descriptor)");
      wd_job_free(job);
      return;
    }
    job->name = strdup(display ? display : src);
    int checked, fd = open_as_peer(c->fd, &c->cred, src, &checked);
    struct stat st;
    char m[400];
    if (fd < 0) {
      snprintf(m, sizeof m, "%.300s: %s", src, strerror(-fd));
      reply_err(c, fd, m);
      wd_job_free(job);
      return;
    }
    job->fd = fd;
    if (fstat(fd, &st) || (!checked && !peer_may_read(&c->cred, &st))) {
      snprintf(m, sizeof m, "%.300s: uid %u may not read it", src, (unsigned)c->cred.uid);
      reply_err(c, -EACCES, m);
      wd_job_free(job);
      return;
    }
  }
  if (!job->name) {
    reply_err(c, -ENOMEM, NULL);
    wd_job_free(job);
    return;
  }
  if (want_progress && (job->progress_fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) >= 0)
    job->progress = 1; /* (no descriptor to spare: no progress; the reply still comes) */
  c->busy = 1;
  wd_worker_submit(s->worker, job);
}

static void json_status(struct wd_server *s, struct client *c, const char *only) {
  struct snap_error err = {0};
  struct snap_dataset_info *ds;
  size_t nds;
  int rc = snap_dataset_list(s->store, &ds, &nds, &err);
  if (rc) {
    reply_err(c, rc, err.message);
    return;
  }
  struct wd_buf b = {0};
  size_t queued;
  char current[SNAP_DATASET_NAME_MAX + 1];
  wd_worker_state(s->worker, &queued, current, sizeof current);
  wd_buf_printf(&b, "OK {\"writerd\":{\"pid\":%ld,\"version\":\"%s\",\"store\":",
                (long)getpid(), WD_VERSION);
  wd_buf_json_str(&b, s->store_path);
  wd_buf_printf(&b, ",\"clients\":%zu,\"queued\":%zu,\"publishing\":", s->nclients,
                queued);
  if (current[0])
    wd_buf_json_str(&b, current);
  else
    wd_buf_add(&b, "null", 4);
  wd_buf_add(&b, ",\"reaping\":", 11);
  wd_reaper_json(s->reaper, &b);
  wd_buf_add(&b, "},\"datasets\":[", 14);
  int first = 1, found = 0;
  for (size_t i = 0; i < nds; i++) {
    if (only && strcmp(only, ds[i].name)) continue;
    found = 1;
    struct snap_version_info *v = NULL;
    size_t nv = 0;
    if (snap_version_list(s->store, ds[i].name, &v, &nv, NULL)) nv = 0;
    wd_buf_printf(&b, "%s{\"name\":", first ? "" : ",");
    first = 0;
    wd_buf_json_str(&b, ds[i].name);
    wd_buf_printf(&b,
                  ",\"current\":%llu,\"next_version\":%llu,\"keep\":%u,\"bytes\":%llu,"
                  "\"followed\":%s",
                  (unsigned long long)ds[i].current,
                  (unsigned long long)ds[i].next_version, ds[i].keep,
                  (unsigned long long)ds[i].bytes, ds[i].followed ? "true" : "false");
    wd_sync_json(s->sync, ds[i].name, &b);
    wd_buf_add(&b, ",\"versions\":[", 13);
    for (size_t j = 0; j < nv; j++)
      wd_buf_printf(&b,
                    "%s{\"version\":%llu,\"state\":\"%s\",\"rows\":%llu,\"cols\":%u,"
                    "\"bytes\":%llu,\"created_ns\":%llu,\"pins\":%d}",
                    j ? "," : "", (unsigned long long)v[j].version,
                    snap_state_name(v[j].state), (unsigned long long)v[j].nrows,
                    v[j].ncols, (unsigned long long)v[j].bytes,
                    (unsigned long long)v[j].created_ns, (int)v[j].holders);
    snap_free(v);
    wd_buf_add(&b, "]}", 2);
  }
  snap_free(ds);
  wd_buf_add(&b, "]}\n", 3);
  if (only && !found) {
    wd_buf_free(&b);
    char m[400];
    snprintf(m, sizeof m, "no dataset '%.300s'", only);
    reply_err(c, SNAP_ENOTFOUND, m);
    return;
  }
  wd_buf_add(&c->out, b.p, b.len);
  wd_buf_free(&b);
}

static void req_gc(struct wd_server *s, struct client *c) {
  struct snap_gc_stats st;
  struct snap_error err = {0};
  int rc = snap_gc(s->store, NULL, 0, NULL, NULL, &st, &err);
  if (rc) {
    reply_err(c, rc, err.message);
    return;
  }
  wd_log("gc",
         "freed_versions=%llu freed_bytes=%llu draining_versions=%llu "
         "draining_bytes=%llu by=request",
         (unsigned long long)st.freed_versions, (unsigned long long)st.freed_bytes,
         (unsigned long long)st.draining_versions, (unsigned long long)st.draining_bytes);
  reply(c,
        "OK freed_versions=%llu freed_bytes=%llu draining_versions=%llu "
        "draining_bytes=%llu",
        (unsigned long long)st.freed_versions, (unsigned long long)st.freed_bytes,
        (unsigned long long)st.draining_versions, (unsigned long long)st.draining_bytes);
  wd_reaper_kick(s->reaper);
}

static void req_rollback(struct wd_server *s, struct client *c, char **argv, int argc) {
  uint64_t version;
  if (argc != 3 || wd_proto_u64(argv[2], &version) || !version) {
    reply_proto(c, "EPROTO", "usage: ROLLBACK DATASET VERSION");
    return;
  }
  struct snap_error err = {0};
  uint64_t was = 0;
  struct snap_version_info *before = NULL;
  size_t n = 0;
  int rc = snap_current_version(s->store, argv[1], &was, &err);
  if (!rc && snap_version_list(s->store, argv[1], &before, &n, NULL)) n = 0;
  if (!rc) rc = snap_rollback(s->store, argv[1], version, &err);
  char q[600];
  if (rc) {
    wd_log("error", "op=rollback dataset=%s version=%llu code=%s message=%s",
           wd_q(q, sizeof q, argv[1]), (unsigned long long)version, snap_error_name(rc),
           wd_q((char[600]){0}, 600, err.message));
    reply_err(c, rc, err.message);
  } else {
    wd_log("rollback", "dataset=%s version=%llu previous=%llu",
           wd_q(q, sizeof q, argv[1]), (unsigned long long)version,
           (unsigned long long)was);
    wd_log_reclaimed(s->store, argv[1], before, n, "rollback");
    wd_count(WD_C_FLIPS, 1);
    reply(c, "OK current=%llu previous=%llu", (unsigned long long)version,
          (unsigned long long)was);
    wd_reaper_kick(s->reaper);
  }
  snap_free(before);
}

static void req_keep(struct wd_server *s, struct client *c, char **argv, int argc) {
  uint64_t keep;
  if (argc < 2 || argc > 3 || wd_proto_u64(argv[argc - 1], &keep) || keep < 1 ||
      keep > UINT32_MAX) {
    reply_proto(c, "EPROTO", "usage: KEEP [DATASET] N (N >= 1)");
    return;
  }
  const char *ds = argc == 3 ? argv[1] : NULL;
  struct snap_error err = {0};
  struct snap_version_info *before = NULL;
  size_t n = 0;
  if (ds && snap_version_list(s->store, ds, &before, &n, NULL)) n = 0;
  int rc = snap_store_set_keep(s->store, ds, (uint32_t)keep, &err);
  char q[600];
  if (rc) {
    reply_err(c, rc, err.message);
  } else {
    wd_log("keep", "dataset=%s keep=%llu", ds ? wd_q(q, sizeof q, ds) : "*",
           (unsigned long long)keep);
    if (ds) wd_log_reclaimed(s->store, ds, before, n, "keep");
    reply(c, "OK keep=%llu", (unsigned long long)keep);
    wd_reaper_kick(s->reaper);
  }
  snap_free(before);
}

/* DROP DATASET [force]: snap_dataset_drop. The reaper keys its waiters by
 * dataset and version, and numbers are never reused, so a waiter left on a
 * version of a dropped dataset finds nothing to reclaim and ends. */
static void req_drop(struct wd_server *s, struct client *c, char **argv, int argc) {
  if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "force"))) {
    reply_proto(c, "EPROTO", "usage: DROP DATASET [force]");
    return;
  }
  unsigned flags = argc == 3 ? SNAP_DROP_FORCE : 0;
  struct snap_error err = {0};
  int rc = snap_dataset_drop(s->store, argv[1], flags, &err);
  char q[600];
  if (rc) {
    wd_log("error", "op=drop dataset=%s code=%s message=%s", wd_q(q, sizeof q, argv[1]),
           snap_error_name(rc), wd_q((char[600]){0}, 600, err.message));
    reply_err(c, rc, err.message);
    return;
  }
  wd_log("drop", "dataset=%s force=%d", wd_q(q, sizeof q, argv[1]), argc == 3);
  reply(c, "OK dropped");
  wd_reaper_kick(s->reaper);
}

/* One request line (no newline, NUL-terminated). */
static void request(struct wd_server *s, struct client *c, char *line, size_t len) {
  char *argv[WD_ARGV_MAX];
  const char *why;
  int argc = wd_proto_parse(line, len, argv, &why);
  if (argc < 0) {
    reply_proto(c, "EPROTO", why);
    return;
  }
  const char *verb = argv[0];
  if (!strcmp(verb, "PING") && argc == 1) {
    reply(c, "OK writerd %s pid=%ld", WD_VERSION, (long)getpid());
  } else if (!strcmp(verb, "STATUS") && argc <= 2) {
    json_status(s, c, argc == 2 ? argv[1] : NULL);
  } else if (!strcmp(verb, "PUBLISH")) {
    req_publish(s, c, argv, argc, 0);
  } else if (!strcmp(verb, "ADOPT")) {
    req_publish(s, c, argv, argc, 1);
  } else if (!strcmp(verb, "GC") && argc == 1) {
    req_gc(s, c);
  } else if (!strcmp(verb, "ROLLBACK")) {
    req_rollback(s, c, argv, argc);
  } else if (!strcmp(verb, "KEEP")) {
    req_keep(s, c, argv, argc);
  } else if (!strcmp(verb, "DROP")) {
    req_drop(s, c, argv, argc);
  } else {
    char m[120];
    snprintf(m, sizeof m, "unknown request '%.40s' (or wrong number of arguments)", verb);
    reply_proto(c, "EPROTO", m);
  }
}

/* Run the complete lines in the input buffer, until one makes the client busy. */
static void run_lines(struct wd_server *s, struct client *c) {
  size_t off = 0;
  while (!c->busy && !c->closing) {
    char *nl = memchr(c->in + off, '\n', c->inlen - off);
    if (!nl) break;
    *nl = 0;
    size_t len = (size_t)(nl - (c->in + off));
    if (memchr(c->in + off, 0, len))
      reply_proto(c, "EPROTO", "request holds NUL bytes (binary data?)");
    else
      request(s, c, c->in + off, len);
    off += len + 1;
  }
  memmove(c->in, c->in + off, c->inlen - off);
  c->inlen -= off;
  if (!c->busy && !c->closing && c->inlen == sizeof c->in) {
    reply(c, "ERR E2BIG request line longer than %d bytes; closing", WD_LINE_MAX);
    c->closing = 1;
  }
}

/* Read what the client sent (data and descriptors). Returns -1 if destroyed. */
static int read_client(struct wd_server *s, struct client *c) {
  while (!c->busy && !c->closing && !c->eof) {
    if (c->inlen == sizeof c->in) break;
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(sizeof(int) * WD_MAX_FDS)];
    } ctl;
    struct iovec iov = {c->in + c->inlen, sizeof c->in - c->inlen};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
    ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      destroy(s, c);
      return -1;
    }
    int too_many = (m.msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
      if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      int *fds = (int *)CMSG_DATA(h);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, fds + i, sizeof fd);
        if (c->nfds < WD_MAX_FDS)
          c->fds[c->nfds++] = fd;
        else {
          close(fd);
          too_many = 1;
        }
      }
    }
    if (too_many) {
      reply(c, "ERR EPROTO more than %d descriptors pending; closing", WD_MAX_FDS);
      c->closing = 1;
      break;
    }
    if (n == 0) {
      c->eof = 1;
      break;
    }
    c->inlen += (size_t)n;
    run_lines(s, c);
  }
  if (c->eof && !c->busy) {
    run_lines(s, c);
    if (c->inlen && !c->closing) /* a last line without its newline */
      reply_proto(c, "EPROTO", "connection closed in the middle of a request");
  }
  return 0;
}

void wd_server_client_event(struct wd_server *s, struct wd_ev *ev, uint32_t events) {
  struct client *c = (struct client *)ev;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (c->busy && (events & (EPOLLHUP | EPOLLERR))) {
      /* gone while its publish runs: stop watching; the reply is attempted and
       * the client dropped when the job ends */
      epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
      c->in_epoll = 0;
      c->eof = 1;
      return;
    }
    if (read_client(s, c)) return;
  }
  flush(s, c);
}

void wd_server_finish(struct wd_server *s, struct wd_job *job) {
  struct client *c = s->clients;
  while (c && c->id != job->client) c = c->next;
  wd_log_publish(job);
  if (!c) {
    wd_job_free(job);
    return;
  }
  c->busy = 0;
  if (!job->status)
    reply(c, "OK version=%llu rows=%llu cols=%u bytes=%llu input_bytes=%llu seconds=%.3f",
          (unsigned long long)job->res.version, (unsigned long long)job->res.nrows,
          job->res.ncols, (unsigned long long)job->seg_bytes,
          (unsigned long long)job->res.input_bytes, job->seconds);
  else
    reply_err(c, job->status, job->err.message);
  wd_job_free(job);
  if (!c->in_epoll) { /* the peer hung up: one try, then drop it */
    if (send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    }
    destroy(s, c);
    return;
  }
  /* the requests that waited behind the publish, then whatever came since */
  if (!c->closing) run_lines(s, c);
  if (!c->busy && !c->closing && read_client(s, c)) return;
  flush(s, c);
}

void wd_server_close(struct wd_server *s) {
  if (!s) return;
  while (s->clients) destroy(s, s->clients);
  close(s->fd);
  struct stat st;
  if (!lstat(s->path, &st) && st.st_dev == s->dev && st.st_ino == s->ino) unlink(s->path);
  free(s->path);
  free(s->store_path);
  free(s);
}
