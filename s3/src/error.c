/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Status strings and the one-line messages of struct snap_s3_error. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *snap_s3_strerror(int status) {
  switch (status) {
    case 0:
      return "success";
#define SNAP_S3_X_MSG(name, code, msg) \
  case code:                           \
    return msg;
      SNAP_S3_ERROR_MAP(SNAP_S3_X_MSG)
#undef SNAP_S3_X_MSG
  }
  if (status < 0 && status > -4096) {
    const char *s = strerrordesc_np(-status);
    if (s) return s;
  }
  return "unknown error";
}

int s3__verr(struct snap_s3_error *err, int status, const char *fmt, va_list ap) {
  if (!err) return status;
  err->code = status;
  err->http_status = 0;
  err->attempts = 0;
  err->s3_code[0] = 0;
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  /* One line: a server's message or curl's may hold newlines or tabs. */
  for (char *p = err->message; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
  return status;
}

int s3__err(struct snap_s3_error *err, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  s3__verr(err, status, fmt, ap);
  va_end(ap);
  return status;
}

static void mask(char *msg, const char *secret) {
  size_t n = strlen(secret);
  if (n == 0) return;
  char *p, *from = msg;
  while ((p = strstr(from, secret)) != NULL) {
    /* Each occurrence becomes "***" (as many '*' as it has, when shorter);
     * the search goes on after it, so a secret made of '*' cannot loop. */
    size_t tail = strlen(p + n);
    size_t put = n < 3 ? n : 3;
    memset(p, '*', put);
    memmove(p + put, p + n, tail + 1);
    from = p + put;
  }
}

void s3__err_mask(struct snap_s3_error *err, const struct snap_s3_config *cfg) {
  if (!err) return;
  /* Nothing this library writes holds a secret; a server's message or curl's
   * could only echo one back. Mask it anyway: the message is made to be logged. */
  mask(err->message, cfg->secret_key);
  mask(err->message, cfg->session_token);
  mask(err->s3_code, cfg->secret_key);
}
