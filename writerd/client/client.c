/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client side of writerd's socket protocol (docs/protocol.md). */
#define _GNU_SOURCE
#include "writerd/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h" /* WD_LINE_MAX: the server's limit, shared */

struct wd_client {
  int fd;
  size_t got;  /* bytes in buf */
  size_t used; /* bytes of buf the last line returned took, newline included */
  size_t cap;  /* allocated bytes of buf, one more than a line may hold */
  char *buf;   /* grows: replies (STATUS) are not bound by the request limit */
};

static int fail(struct snap_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct snap_error *err, int status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = status;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return status;
}

int wd_client_open(const char *path, wd_client **out, struct snap_error *err) {
  *out = NULL;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (!n || n >= sizeof sa.sun_path)
    return fail(err, -ENAMETOOLONG,
                "%s: not a usable socket path (empty, or %zu bytes "
                "or more)",
                path, sizeof sa.sun_path);
  memcpy(sa.sun_path, path, n);
  wd_client *c = malloc(sizeof *c);
  if (!c) return fail(err, -ENOMEM, "out of memory");
  c->got = c->used = c->cap = 0;
  c->buf = NULL;
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int rc = -errno;
    free(c);
    return fail(err, rc, "socket: %s", strerror(-rc));
  }
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) {
    int rc = -errno;
    close(c->fd);
    free(c);
    return fail(err, rc, "connect to %s: %s", path, strerror(-rc));
  }
  *out = c;
  return 0;
}

int wd_client_open_store(const char *store, wd_client **out, struct snap_error *err) {
  *out = NULL;
  char path[PATH_MAX + 32], buf[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/writerd.lock", store);
  int lf = open(path, O_RDONLY | O_CLOEXEC);
  if (lf < 0) {
    int rc = -errno;
    return fail(err, rc, "%s: %s", path, strerror(-rc));
  }
  ssize_t n = read(lf, buf, sizeof buf - 1);
  int e = errno;
  close(lf);
  if (n < 0) return fail(err, -e, "%s: %s", path, strerror(e));
  buf[n] = 0;
  char *sock = strchr(buf, '\n'); /* "PID\nSOCKET\n" */
  if (sock) sock[1 + strcspn(sock + 1, "\n")] = 0;
  if (!sock || !sock[1]) return fail(err, -EINVAL, "%s: names no socket", path);
  return wd_client_open(sock + 1, out, err);
}

void wd_client_close(wd_client *c) {
  if (!c) return;
  close(c->fd);
  free(c->buf);
  free(c);
}

int wd_client_send(wd_client *c, const char *line, int fd, struct snap_error *err) {
  size_t len = strlen(line);
  if (len + 1 > WD_LINE_MAX)
    return fail(err, -E2BIG, "request too long for writerd (%zu bytes, at most %d)",
                len + 1, WD_LINE_MAX);
  if (memchr(line, '\n', len))
    return fail(err, -EINVAL, "request holds a newline: send one line at a time");
  char req[WD_LINE_MAX];
  memcpy(req, line, len);
  req[len++] = '\n';
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {req, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
  }
  /* the descriptor goes with the first bytes; the rest of a short send without */
  while (iov.iov_len) {
    ssize_t sent = sendmsg(c->fd, &m, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return fail(err, -errno, "sending to writerd: %s", strerror(errno));
    iov.iov_base = (char *)iov.iov_base + sent;
    iov.iov_len -= (size_t)sent;
    m.msg_control = NULL;
    m.msg_controllen = 0;
  }
  return 0;
}

int wd_client_read_line(wd_client *c, const char **line, struct snap_error *err) {
  *line = NULL;
  c->got -= c->used; /* drop the line returned last time */
  if (c->used) memmove(c->buf, c->buf + c->used, c->got);
  c->used = 0;
  for (;;) {
    char *nl = c->got ? memchr(c->buf, '\n', c->got) : NULL;
    if (nl) {
      *nl = 0;
      c->used = (size_t)(nl + 1 - c->buf);
      *line = c->buf;
      return 1;
    }
    if (c->got + 1 >= c->cap) {
      size_t cap = c->cap ? 2 * c->cap : WD_LINE_MAX + 1;
      if (cap > WD_REPLY_MAX + 1)
        return fail(err, -EMSGSIZE, "reply line from writerd longer than %d bytes",
                    WD_REPLY_MAX);
      char *buf = realloc(c->buf, cap);
      if (!buf) return fail(err, -ENOMEM, "reading from writerd: out of memory");
      c->buf = buf, c->cap = cap;
    }
    ssize_t n = read(c->fd, c->buf + c->got, c->cap - 1 - c->got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(err, -errno, "reading from writerd: %s", strerror(errno));
    if (n == 0) {
      if (!c->got) return 0;
      c->buf[c->got] = 0; /* a last line without its newline */
      c->used = c->got;
      *line = c->buf;
      return 1;
    }
    c->got += (size_t)n;
  }
}

int wd_client_put_arg(char *out, size_t cap, size_t *len, const char *arg) {
  if (*len >= cap) return -E2BIG; /* out is already full: write nothing */
  for (const unsigned char *p = (const unsigned char *)arg; *p; p++) {
    if (*len + 4 >= cap) {
      out[*len] = 0;
      return -E2BIG;
    }
    if (*p <= ' ' || *p == '%' || *p == 0x7f)
      *len += (size_t)snprintf(out + *len, cap - *len, "%%%02X", *p);
    else
      out[(*len)++] = (char)*p;
  }
  out[*len] = 0;
  return 0;
}
