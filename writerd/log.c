/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging: one line per event on stderr, "EVENT key=value ...", written with a
 * single write(2) so that lines from several threads never interleave. No time
 * stamp and no program name: journald (or whatever collects stderr) adds both.
 * Also the small growable buffer the protocol and the JSON status use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "writerd.h"

double wd_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void wd_log(const char *event, const char *fmt, ...) {
  char line[2048];
  int n = snprintf(line, sizeof line, "%s", event);
  if (fmt && *fmt && n < (int)sizeof line - 2) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : n + m;
  }
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2; /* truncated */
  /* a value may carry a newline (an error message): keep one event per line */
  for (int i = 0; i < n; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[n++] = '\n';
  /* one write per line: atomic on a pipe below PIPE_BUF, and never split by
   * another thread's line on a file or a tty either (O_APPEND semantics aside) */
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  const char *p = line;
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    n -= (int)w;
  }
  pthread_mutex_unlock(&mu);
}

const char *wd_q(char *out, size_t cap, const char *value) {
  if (!value) value = "";
  int plain = *value != 0;
  for (const char *c = value; *c && plain; c++)
    if (*c == ' ' || *c == '"' || *c == '=' || *c == '\\' || (unsigned char)*c < 0x20)
      plain = 0;
  if (plain) {
    snprintf(out, cap, "%s", value);
    return out;
  }
  size_t o = 0;
  if (cap < 3) return "\"\"";
  out[o++] = '"';
  for (const char *c = value; *c && o + 3 < cap; c++) {
    if (*c == '"' || *c == '\\') out[o++] = '\\';
    out[o++] = (unsigned char)*c < 0x20 ? ' ' : *c;
  }
  out[o++] = '"';
  out[o] = 0;
  return out;
}

/* ---------------------------------------------------------------- buffers */

void wd_buf_add(struct wd_buf *b, const void *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort(); /* out of memory in the daemon: nothing sensible to do */
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = 0;
}

void wd_buf_printf(struct wd_buf *b, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    wd_buf_add(b, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) abort();
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  wd_buf_add(b, big, (size_t)n);
  free(big);
}

void wd_buf_json_str(struct wd_buf *b, const char *s) {
  wd_buf_add(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\')
      wd_buf_printf(b, "\\%c", *c);
    else if (*c < 0x20)
      wd_buf_printf(b, "\\u%04x", *c);
    else
      wd_buf_add(b, c, 1);
  }
  wd_buf_add(b, "\"", 1);
}

void wd_buf_free(struct wd_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
