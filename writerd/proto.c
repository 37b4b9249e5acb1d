/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The request-line grammar (docs/protocol.md, "Framing"). */
#include "proto.h"

#include <string.h>

static int unhex(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Decode %XX escapes in place. Returns -1 on a bad escape or an encoded NUL. */
static int pct_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p != '%') {
      *o++ = *p;
      continue;
    }
    int hi = unhex((unsigned char)p[1]), lo = hi < 0 ? -1 : unhex((unsigned char)p[2]);
    if (hi < 0 || lo < 0 || (hi | lo) == 0) return -1;
    *o++ = (char)(hi * 16 + lo);
    p += 2;
  }
  *o = 0;
  return 0;
}

int wd_proto_parse(char *line, size_t len, char **argv, const char **why) {
  if (len && line[len - 1] == '\r') line[--len] = 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) {
      *why = "request holds control bytes (binary data?)";
      return -1;
    }
  int argc = 0;
  if (*line == ' ') { /* an empty verb (found by fuzz_protocol) */
    *why = "malformed request (arguments are separated by one space)";
    return -1;
  }
  for (char *p = line; *p && argc < WD_ARGV_MAX;) {
    argv[argc++] = p;
    char *sp = strchr(p, ' ');
    if (!sp) break;
    *sp = 0;
    p = sp + 1;
    if (!*p || *p == ' ') {
      argc = -1; /* empty argument: double or trailing space */
      break;
    }
  }
  if (argc <= 0 || argc >= WD_ARGV_MAX) {
    *why = argc == 0 ? "empty request"
                     : "malformed request (arguments are separated by one space)";
    return -1;
  }
  for (int i = 0; i < argc; i++)
    if (pct_decode(argv[i])) {
      *why = "bad %XX escape in an argument";
      return -1;
    }
  return argc;
}

int wd_proto_u64(const char *s, uint64_t *out) {
  if (!*s) return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}
