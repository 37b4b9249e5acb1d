/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics: counters and gauges that any thread updates, served as Prometheus text
 * (exposition format 0.0.4) by a small HTTP/1.1 server on its own thread.
 *
 * Counters are relaxed atomics: a scrape reads each one once, and nothing orders
 * one against another (a scrape may see a publish in snap_publishes_total and not
 * yet in snap_flips_total; the next one sees both). The gauges other code sets
 * live in one small table behind a mutex; a scrape copies it and formats the copy
 * outside the lock. The store's own figures (current version, pins, draining
 * bytes) are read at scrape time with the public API, on the metrics thread: a
 * scrape never waits for the event loop, and the event loop never waits for it.
 *
 * The server: one thread polls an eventfd (stop), the listening socket and up to
 * CONN_MAX connections, all non-blocking, so that no client holds up another.
 * Each connection carries one request: its head (at most HEAD_MAX bytes) is read
 * and answered, the answer written, the write side shut, and what the peer still
 * sends drained until it closes (closing with unread input would reset the
 * connection, and the peer could lose the answer). A connection has one deadline
 * for all of that, CONN_SECONDS after accept; whatever is slow, silent or endless
 * is closed then. Malformed input gets 400; nothing a client sends can do more.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "writerd.h"

#define HEAD_MAX 8192     /* longest request head (request line and headers) */
#define CONN_MAX 16       /* connections served at once; more wait in the backlog */
#define CONN_SECONDS 5.0  /* the whole life of a connection */
#define DRAIN_SECONDS 1.0 /* after the answer: how long to wait for the peer's close */
#define CONTENT_TYPE "text/plain; version=0.0.4"

/* ---------------------------------------------------------------- counters */

struct family {
  const char *name, *help;
};

static const struct family counter_families[WD_C_COUNT] = {
    [WD_C_PUBLISHES] = {"snap_publishes_total",
                        "Versions published by this writerd (socket, inbox, adopt)."},
    [WD_C_FLIPS] = {"snap_flips_total",
                    "Times this writerd changed a dataset's current version "
                    "(publishes and rollbacks)."},
    [WD_C_PUSHES] = {"snap_pushes_total", "Versions pushed to the remote."},
    [WD_C_FOLLOW_FLIPS] = {"snap_follow_flips_total",
                           "Versions made current by following the remote."},
    [WD_C_BYTES_PUSHED] = {"snap_bytes_pushed_total", "Bytes pushed to the remote."},
    [WD_C_BYTES_FETCHED] = {"snap_bytes_fetched_total", "Bytes fetched from the remote."},
};
static _Atomic uint64_t counters[WD_C_COUNT];

/* snap_errors_total's kinds; "other" (the last) takes any kind not listed */
static const char *const error_kinds[] = {
    "publish",    "push",      "fetch",    "verify",   "s3_denied",
    "s3_network", "s3_server", "s3_other", "protocol", "other"};
#define N_KINDS (sizeof error_kinds / sizeof *error_kinds)
static _Atomic uint64_t errors[N_KINDS];

void wd_count(enum wd_counter c, uint64_t n) {
  if ((unsigned)c < WD_C_COUNT)
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void wd_count_error(const char *kind) {
  size_t k = 0;
  while (k < N_KINDS - 1 && (!kind || strcmp(kind, error_kinds[k]))) k++;
  atomic_fetch_add_explicit(&errors[k], 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------ gauges */

/* The gauges other code sets, per dataset. Every name it may use is here, so
 * that each has its HELP and TYPE lines. */
static const struct family gauge_families[] = {
    {"snap_follow_lag_versions",
     "Versions the followed remote has announced that are not current here yet."},
    {"snap_follow_lag_seconds",
     "Seconds since the remote announced a version that is not current here yet "
     "(0: none)."},
    {"snap_follow_announced_version",
     "The latest version the followed remote announced."},
    {"snap_push_version", "The latest version pushed to the remote."},
};
#define N_GAUGES (sizeof gauge_families / sizeof *gauge_families)

struct gauge {
  unsigned family; /* index in gauge_families */
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  double value;
};
static pthread_mutex_t gauge_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gauge *gauges; /* in no order: a scrape sorts its copy */
static size_t ngauges, gauge_cap;

void wd_gauge_set(const char *metric, const char *dataset, double value) {
  unsigned f = 0;
  while (f < N_GAUGES && (!metric || strcmp(metric, gauge_families[f].name))) f++;
  if (f == N_GAUGES || !dataset || strlen(dataset) > SNAP_DATASET_NAME_MAX) return;
  pthread_mutex_lock(&gauge_mu);
  size_t i = 0;
  while (i < ngauges && (gauges[i].family != f || strcmp(gauges[i].dataset, dataset)))
    i++;
  if (i == ngauges && ngauges == gauge_cap) {
    size_t cap = gauge_cap ? 2 * gauge_cap : 16;
    struct gauge *p = realloc(gauges, cap * sizeof *p);
    if (!p) { /* out of memory: the sample stays missing, nothing else breaks */
      pthread_mutex_unlock(&gauge_mu);
      return;
    }
    gauges = p;
    gauge_cap = cap;
  }
  if (i == ngauges) {
    gauges[i].family = f;
    strcpy(gauges[i].dataset, dataset);
    ngauges++;
  }
  gauges[i].value = value;
  pthread_mutex_unlock(&gauge_mu);
}

void wd_gauge_drop(const char *dataset) {
  if (!dataset) return;
  pthread_mutex_lock(&gauge_mu);
  size_t o = 0;
  for (size_t i = 0; i < ngauges; i++)
    if (strcmp(gauges[i].dataset, dataset)) gauges[o++] = gauges[i];
  ngauges = o;
  pthread_mutex_unlock(&gauge_mu);
}

static int gauge_cmp(const void *a, const void *b) {
  const struct gauge *x = a, *y = b;
  if (x->family != y->family) return x->family < y->family ? -1 : 1;
  return strcmp(x->dataset, y->dataset);
}

/* --------------------------------------------------------------- rendering */

static void family_head(struct wd_buf *b, const char *name, const char *type,
                        const char *help) {
  wd_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "name{dataset=\"...\"} ": the label value escaped as the format wants
 * (backslash, double quote, newline; nothing else is special). */
static void sample_ds(struct wd_buf *b, const char *name, const char *dataset) {
  wd_buf_printf(b, "%s{dataset=\"", name);
  for (const char *c = dataset; *c; c++) {
    if (*c == '\\')
      wd_buf_add(b, "\\\\", 2);
    else if (*c == '"')
      wd_buf_add(b, "\\\"", 2);
    else if (*c == '\n')
      wd_buf_add(b, "\\n", 2);
    else
      wd_buf_add(b, c, 1);
  }
  wd_buf_add(b, "\"} ", 3);
}

static void value_double(struct wd_buf *b, double v) {
  if (isnan(v))
    wd_buf_add(b, "NaN\n", 4);
  else if (isinf(v))
    wd_buf_printf(b, "%s\n", v > 0 ? "+Inf" : "-Inf");
  else
    wd_buf_printf(b, "%.17g\n", v);
}

/* The store's figures of one dataset, read at scrape time. */
struct ds_figures {
  const char *name;
  uint64_t v[4]; /* in the order of store_families */
};
static const struct family store_families[4] = {
    {"snap_current_version", "The dataset's current version (0: none yet)."},
    {"snap_pinned_versions", "Versions of the dataset that some process pins now."},
    {"snap_draining_bytes",
     "Bytes held by the dataset's retired versions that wait for their last reader."},
    {"snap_dataset_bytes", "Bytes of all the dataset's segments."},
};

static void render_store(snap_store *store, struct wd_buf *b) {
  struct snap_dataset_info *ds = NULL;
  size_t nds = 0;
  struct snap_error err = {0};
  int rc = snap_dataset_list(store, &ds, &nds, &err);
  if (rc) {
    char q[600];
    wd_log("error", "op=metrics code=%s message=%s", snap_error_name(rc),
           wd_q(q, sizeof q, err.message[0] ? err.message : snap_strerror(rc)));
    nds = 0;
  }
  struct ds_figures *f = nds ? calloc(nds, sizeof *f) : NULL;
  size_t nf = 0;
  for (size_t i = 0; f && i < nds; i++) {
    struct snap_version_info *v;
    size_t nv;
    /* a dataset dropped since the list is gone: no samples for it */
    if (snap_version_list(store, ds[i].name, &v, &nv, NULL)) continue;
    struct ds_figures *d = &f[nf++];
    d->name = ds[i].name;
    d->v[0] = ds[i].current;
    d->v[3] = ds[i].bytes;
    for (size_t j = 0; j < nv; j++) {
      if (v[j].holders > 0) d->v[1]++;
      if (v[j].state == SNAP_STATE_DRAINING) d->v[2] += v[j].bytes;
    }
    snap_free(v);
  }
  for (size_t k = 0; k < 4; k++) {
    family_head(b, store_families[k].name, "gauge", store_families[k].help);
    for (size_t i = 0; i < nf; i++) {
      sample_ds(b, store_families[k].name, f[i].name);
      wd_buf_printf(b, "%llu\n", (unsigned long long)f[i].v[k]);
    }
  }
  free(f);
  snap_free(ds);
}

static void render_gauges(struct wd_buf *b) {
  pthread_mutex_lock(&gauge_mu);
  size_t n = ngauges;
  struct gauge *g = n ? malloc(n * sizeof *g) : NULL;
  if (g) memcpy(g, gauges, n * sizeof *g);
  pthread_mutex_unlock(&gauge_mu);
  if (!g) n = 0;
  if (n) qsort(g, n, sizeof *g, gauge_cmp); /* qsort(NULL, 0, ...) is undefined */
  size_t i = 0;
  for (unsigned f = 0; f < N_GAUGES; f++) {
    family_head(b, gauge_families[f].name, "gauge", gauge_families[f].help);
    for (; i < n && g[i].family == f; i++) {
      sample_ds(b, gauge_families[f].name, g[i].dataset);
      value_double(b, g[i].value);
    }
  }
  free(g);
}

void wd_metrics_render(snap_store *store, struct wd_buf *b) {
  for (unsigned c = 0; c < WD_C_COUNT; c++) {
    family_head(b, counter_families[c].name, "counter", counter_families[c].help);
    wd_buf_printf(
        b, "%s %llu\n", counter_families[c].name,
        (unsigned long long)atomic_load_explicit(&counters[c], memory_order_relaxed));
  }
  family_head(b, "snap_errors_total", "counter", "Errors, by kind.");
  for (size_t k = 0; k < N_KINDS; k++)
    wd_buf_printf(
        b, "snap_errors_total{kind=\"%s\"} %llu\n", error_kinds[k],
        (unsigned long long)atomic_load_explicit(&errors[k], memory_order_relaxed));
  render_store(store, b);
  render_gauges(b);
}

/* ------------------------------------------------------------ HTTP parsing */

/* RFC 9110 token characters (method and header names). */
static int tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A control byte that no request head may carry (HTAB is allowed in values). */
static int ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

/* The request line (without its line end): METHOD SP TARGET SP HTTP/1.x. */
static int request_line(const char *p, size_t n, struct wd_http_req *req) {
  size_t m = 0;
  while (m < n && tchar((unsigned char)p[m])) m++;
  if (m == 0 || m == n || p[m] != ' ') return -1;
  const char *target = p + m + 1;
  size_t t = 0;
  while (m + 1 + t < n && p[m + 1 + t] > 0x20 && p[m + 1 + t] < 0x7f) t++;
  if (t == 0 || m + 1 + t == n || target[t] != ' ') return -1;
  const char *version = target + t + 1;
  size_t vlen = n - (size_t)(version - p);
  if (vlen != 8 || memcmp(version, "HTTP/1.", 7) || version[7] < '0' || version[7] > '9')
    return -1;
  req->get = m == 3 && !memcmp(p, "GET", 3);
  /* the path: origin form "/metrics?query", or absolute form "http://host/metrics" */
  const char *path = target, *end = target + t;
  if (t > 7 && !strncasecmp(target, "http://", 7)) {
    path = memchr(target + 7, '/', t - 7);
    if (!path) path = end;
  }
  const char *q = memchr(path, '?', (size_t)(end - path));
  if (q) end = q;
  req->metrics = end - path == 8 && !memcmp(path, "/metrics", 8);
  return 0;
}

/* One header line (without its line end): NAME ":" value. */
static int header_line(const char *p, size_t n) {
  size_t m = 0;
  while (m < n && tchar((unsigned char)p[m])) m++;
  if (m == 0 || m == n || p[m] != ':') return -1; /* also obsolete line folding */
  for (size_t i = m + 1; i < n; i++)
    if (ctl((unsigned char)p[i])) return -1;
  return 0;
}

int wd_http_parse(const char *buf, size_t len, struct wd_http_req *req) {
  memset(req, 0, sizeof *req);
  if (!len) return 0;
  size_t off = 0;
  for (int first = 1;; first = 0) {
    const char *nl = off < len ? memchr(buf + off, '\n', len - off) : NULL;
    size_t n = (nl ? (size_t)(nl - buf) : len) - off; /* the line, so far */
    const char *line = buf + off;
    if (!nl) {
      /* incomplete: refuse now what can never become valid (binary data, a TLS
       * handshake), else wait for more */
      for (size_t i = 0; i < n; i++)
        if (ctl((unsigned char)line[i]) && !(line[i] == '\r' && i == n - 1)) return -1;
      if (first) {
        size_t m = 0;
        while (m < n && tchar((unsigned char)line[m])) m++;
        if (m < n && line[m] != ' ') return -1;
      }
      return 0;
    }
    if (n && line[n - 1] == '\r') n--;
    off = (size_t)(nl - buf) + 1;
    for (size_t i = 0; i < n; i++)
      if (line[i] == '\r') return -1; /* a bare CR */
    if (first) {
      if (request_line(line, n, req)) return -1;
    } else if (n == 0) {
      return off > (size_t)INT_MAX ? -1 : (int)off;
    } else if (header_line(line, n)) {
      return -1;
    }
  }
}

/* ------------------------------------------------------------------ server */

enum conn_state { C_READ, C_WRITE, C_DRAIN };

struct conn {
  int fd; /* -1: a free slot */
  enum conn_state state;
  double deadline;
  struct wd_buf out;
  size_t sent;
  size_t inlen;
  char in[HEAD_MAX];
};

struct wd_metrics {
  snap_store *store;
  int fd;   /* listening */
  int wake; /* eventfd: wd_metrics_stop() */
  pthread_t thread;
  struct conn conn[CONN_MAX];
};

static int addr_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen) {
  char host[INET6_ADDRSTRLEN];
  const char *h = addr, *port;
  size_t hlen;
  int v6 = addr[0] == '[';
  if (v6) {
    const char *close = strchr(addr, ']');
    if (!close || close[1] != ':') return -EINVAL;
    h = addr + 1;
    hlen = (size_t)(close - h);
    port = close + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (!colon) return -EINVAL;
    hlen = (size_t)(colon - addr);
    port = colon + 1;
  }
  if (hlen == 0 || hlen >= sizeof host) return -EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = 0;
  unsigned long p = 0;
  size_t nd = 0;
  for (; port[nd] >= '0' && port[nd] <= '9' && nd < 6; nd++)
    p = p * 10 + (unsigned long)(port[nd] - '0');
  if (nd == 0 || port[nd] || p > 65535) return -EINVAL;
  memset(ss, 0, sizeof *ss);
  if (v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)p);
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) return -EINVAL;
    *sslen = sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)p);
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) return -EINVAL;
    *sslen = sizeof *s4;
  }
  return 0;
}

int wd_metrics_addr_check(const char *addr) {
  struct sockaddr_storage ss;
  socklen_t len;
  return addr ? addr_parse(addr, &ss, &len) : -EINVAL;
}

static void conn_close(struct conn *c) {
  close(c->fd);
  c->fd = -1;
  wd_buf_free(&c->out);
}

static void respond(struct conn *c, int code, const char *reason, const char *extra,
                    const char *type, const char *body, size_t n) {
  wd_buf_printf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n%s\r\n",
                code, reason, type, n, extra);
  wd_buf_add(&c->out, body, n);
  c->state = C_WRITE;
}

static void respond_text(struct conn *c, int code, const char *reason,
                         const char *extra) {
  char body[64];
  int n = snprintf(body, sizeof body, "%d %s\n", code, reason);
  respond(c, code, reason, extra, "text/plain; charset=utf-8", body, (size_t)n);
}

/* Read what is already waiting, then, once the head is complete (or cannot be),
 * prepare the answer. */
static void conn_read(struct wd_metrics *m, struct conn *c) {
  for (;;) {
    ssize_t r = recv(c->fd, c->in + c->inlen, HEAD_MAX - c->inlen, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r < 0 || (r == 0 && c->inlen == 0)) { /* reset, or closed without a word */
      conn_close(c);
      return;
    }
    if (r == 0) { /* the peer stopped sending mid-head */
      respond_text(c, 400, "Bad Request", "");
      return;
    }
    c->inlen += (size_t)r;
    struct wd_http_req req;
    int h = wd_http_parse(c->in, c->inlen, &req);
    if (h < 0 || (h == 0 && c->inlen == HEAD_MAX)) {
      respond_text(c, 400, "Bad Request", "");
    } else if (h > 0 && !req.get) {
      respond_text(c, 405, "Method Not Allowed", "Allow: GET\r\n");
    } else if (h > 0 && !req.metrics) {
      respond_text(c, 404, "Not Found", "");
    } else if (h > 0) {
      struct wd_buf body = {0};
      wd_metrics_render(m->store, &body);
      respond(c, 200, "OK", "", CONTENT_TYPE, body.p, body.len);
      wd_buf_free(&body);
    } else {
      continue;
    }
    return;
  }
}

/* Drain the peer's input until it closes (a bounded amount per call). */
static void conn_drain(struct conn *c) {
  char sink[4096];
  for (int i = 0; i < 16; i++) {
    ssize_t r = recv(c->fd, sink, sizeof sink, 0);
    if (r > 0 || (r < 0 && errno == EINTR)) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    conn_close(c);
    return;
  }
}

static void conn_write(struct conn *c) {
  while (c->sent < c->out.len) {
    ssize_t w = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (w < 0) {
      conn_close(c);
      return;
    }
    c->sent += (size_t)w;
  }
  wd_buf_free(&c->out);
  shutdown(c->fd, SHUT_WR);
  c->state = C_DRAIN;
  double d = wd_now() + DRAIN_SECONDS;
  if (d < c->deadline) c->deadline = d;
  conn_drain(c);
}

/* Accept while there is a free slot. Returns 0, or -1 after an error that would
 * make the listening socket stay readable (EMFILE, ENOBUFS, ...). */
static int accept_some(struct wd_metrics *m) {
  for (;;) {
    struct conn *c = NULL;
    for (int i = 0; i < CONN_MAX && !c; i++)
      if (m->conn[i].fd < 0) c = &m->conn[i];
    if (!c) return 0;
    int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    c->fd = fd;
    c->state = C_READ;
    c->deadline = wd_now() + CONN_SECONDS;
    c->inlen = 0;
    c->sent = 0;
  }
}

static void *serve(void *arg) {
  struct wd_metrics *m = arg;
  double accept_pause = 0; /* after an accept error: not before this time */
  for (;;) {
    struct pollfd p[2 + CONN_MAX];
    int slot[CONN_MAX];
    double now = wd_now(), next = accept_pause > now ? accept_pause : 0;
    int n = 0, room = 0;
    for (int i = 0; i < CONN_MAX; i++) {
      struct conn *c = &m->conn[i];
      if (c->fd < 0) {
        room = 1;
        continue;
      }
      p[2 + n] = (struct pollfd){c->fd, c->state == C_WRITE ? POLLOUT : POLLIN, 0};
      slot[n++] = i;
      if (!next || c->deadline < next) next = c->deadline;
    }
    p[0] = (struct pollfd){m->wake, POLLIN, 0};
    /* a negative descriptor is ignored by poll: when full, the backlog waits */
    p[1] = (struct pollfd){room && now >= accept_pause ? m->fd : -1, POLLIN, 0};
    int timeout = -1;
    if (next) timeout = next <= now ? 0 : (int)((next - now) * 1000) + 1;
    if (poll(p, (nfds_t)(2 + n), timeout) < 0) {
      if (errno == EINTR) continue;
      wd_log("error", "op=metrics-poll message=%s",
             wd_q((char[200]){0}, 200, strerror(errno)));
      break;
    }
    if (p[0].revents) break; /* stop */
    if (p[1].fd >= 0 && p[1].revents && accept_some(m))
      accept_pause = wd_now() + 0.1; /* e.g. out of descriptors: do not spin */
    for (int j = 0; j < n; j++) {
      struct conn *c = &m->conn[slot[j]];
      if (!p[2 + j].revents || c->fd < 0) continue;
      if (c->state == C_READ) conn_read(m, c);
      if (c->fd >= 0 && c->state == C_WRITE)
        conn_write(c); /* at once: the socket's buffer usually takes it all */
      else if (c->fd >= 0 && c->state == C_DRAIN)
        conn_drain(c);
    }
    now = wd_now();
    for (int i = 0; i < CONN_MAX; i++)
      if (m->conn[i].fd >= 0 && now >= m->conn[i].deadline) conn_close(&m->conn[i]);
  }
  for (int i = 0; i < CONN_MAX; i++)
    if (m->conn[i].fd >= 0) conn_close(&m->conn[i]);
  return NULL;
}

int wd_metrics_start(snap_store *store, const char *addr, struct wd_metrics **out,
                     char *bound, size_t cap) {
  *out = NULL;
  if (cap) bound[0] = 0;
  struct sockaddr_storage ss;
  socklen_t len;
  if (addr_parse(addr, &ss, &len)) {
    fprintf(stderr, "writerd: --metrics '%s': not ADDR:PORT\n", addr);
    return -EINVAL;
  }
  struct wd_metrics *m = calloc(1, sizeof *m);
  if (!m) {
    fprintf(stderr, "writerd: --metrics: out of memory\n");
    return -ENOMEM;
  }
  m->store = store;
  m->wake = -1;
  for (int i = 0; i < CONN_MAX; i++) m->conn[i].fd = -1;
  const char *op = NULL;
  int e = 0, one = 1;
  m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m->fd < 0)
    op = "socket";
  else if (setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one))
    op = "setsockopt";
  else if (bind(m->fd, (struct sockaddr *)&ss, len))
    op = "bind";
  else if (listen(m->fd, 64))
    op = "listen";
  else if ((len = sizeof ss, getsockname(m->fd, (struct sockaddr *)&ss, &len)))
    op = "getsockname";
  else if ((m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
    op = "eventfd";
  if (op) e = errno;
  if (!op && (e = pthread_create(&m->thread, NULL, serve, m))) op = "pthread_create";
  if (op) {
    fprintf(stderr, "writerd: --metrics %s: %s: %s\n", addr, op, strerror(e));
    if (m->fd >= 0) close(m->fd);
    if (m->wake >= 0) close(m->wake);
    free(m);
    return -e;
  }
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    port = ntohs(s6->sin6_port);
    snprintf(bound, cap, "[%s]:%u", host, port);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    port = ntohs(s4->sin_port);
    snprintf(bound, cap, "%s:%u", host, port);
  }
  *out = m;
  return 0;
}

void wd_metrics_stop(struct wd_metrics *m) {
  if (!m) return;
  uint64_t one = 1;
  if (write(m->wake, &one, sizeof one) < 0) {
    /* an eventfd counter does not overflow from one write */
  }
  pthread_join(m->thread, NULL);
  close(m->wake);
  close(m->fd);
  free(m);
}
