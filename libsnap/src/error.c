/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The error table: one X-macro feeds the status codes, names and messages. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *snap_strerror(int status) {
  switch (status) {
    case 0:
      return "success";
#define SNAP_X_MSG(name, code, msg) \
  case code:                        \
    return msg;
      SNAP_ERROR_MAP(SNAP_X_MSG)
#undef SNAP_X_MSG
  }
  if (status < 0 && status > -4096) {
    const char *s = strerrordesc_np(-status);
    if (s) return s;
  }
  return "unknown error";
}

const char *snap_error_name(int status) {
  switch (status) {
    case 0:
      return "OK";
#define SNAP_X_NAME(name, code, msg) \
  case code:                         \
    return "SNAP_E" #name;
      SNAP_ERROR_MAP(SNAP_X_NAME)
#undef SNAP_X_NAME
  }
  if (status < 0 && status > -4096) {
    const char *s = strerrorname_np(-status);
    if (s) return s;
  }
  return "UNKNOWN";
}

static void vset(struct snap_error *err, int status, const char *fmt, va_list ap) {
  err->code = status;
  vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int snap__err(struct snap_error *err, int status, const char *fmt, ...) {
  if (!err) return status;
  va_list ap;
  va_start(ap, fmt);
  vset(err, status, fmt, ap);
  va_end(ap);
  return status;
}

int snap__errno(struct snap_error *err, int neg_errno, const char *fmt, ...) {
  if (!err) return neg_errno;
  va_list ap;
  va_start(ap, fmt);
  vset(err, neg_errno, fmt, ap);
  va_end(ap);
  size_t len = strlen(err->message);
  snprintf(err->message + len, sizeof err->message - len, ": %s",
           snap_strerror(neg_errno));
  return neg_errno;
}
