/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* struct snap_sync_error (one line, a status and a kind for metrics), and the clock. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int sync__err(struct snap_sync_error *err, int code, const char *kind, const char *fmt,
              ...) {
  if (!err) return code;
  err->code = code;
  snprintf(err->kind, sizeof err->kind, "%s", kind);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return code;
}

const char *sync__s3_kind(int code) {
  switch (code) {
    case SNAP_S3_EDENIED:
    case SNAP_S3_ECONFIG:
      return "denied";
    case SNAP_S3_ENET:
    case SNAP_S3_ETLS:
      return "network";
    case SNAP_S3_ESERVER:
      return "server";
    case SNAP_S3_ENOTFOUND:
      return "notfound";
    case SNAP_S3_EPRECONDITION:
    case SNAP_S3_ECONFLICT:
      return "conflict";
    case SNAP_S3_EPROTO:
    case SNAP_S3_EHTTP:
      return "server";
    default:
      return code > -2000 && code < 0 ? "local" : "other";
  }
}

int sync__s3(struct snap_sync_error *err, int code, const struct snap_s3_error *e,
             const char *what) {
  return sync__err(err, code, sync__s3_kind(code), "%s: %s", what,
                   e && e->message[0] ? e->message : snap_s3_strerror(code));
}

int sync__snap(struct snap_sync_error *err, int code, const struct snap_error *e,
               const char *what) {
  const char *kind = code == SNAP_ECHECKSUM                          ? "verify"
                     : code == SNAP_ECORRUPT || code == SNAP_EFORMAT ? "corrupt"
                     : code == SNAP_ECONFLICT                        ? "conflict"
                                                                     : "local";
  return sync__err(err, code, kind, "%s: %s", what,
                   e && e->message[0] ? e->message : snap_strerror(code));
}

double sync__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
