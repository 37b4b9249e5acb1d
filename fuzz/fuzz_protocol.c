/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: writerd's request lines (writerd/proto.c), split the way the
 * daemon splits its input (at '\n', lines holding NUL refused). Every accepted
 * line must give 1..15 non-empty, NUL-terminated arguments inside the line
 * without NUL or control bytes; numbers parse or are refused. ASan catches any
 * read or write outside the buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  size_t off = 0;
  while (off <= size) {
    char *nl = memchr(buf + off, '\n', size - off);
    size_t len = nl ? (size_t)(nl - (buf + off)) : size - off;
    char *line = buf + off;
    line[len] = 0;
    if (!memchr(line, 0, len)) { /* the daemon refuses lines with NUL first */
      char *argv[WD_ARGV_MAX];
      const char *why = NULL;
      int argc = wd_proto_parse(line, len, argv, &why);
      if (argc < 0) {
        if (!why || !*why) abort(); /* a refusal must say why */
      } else {
        if (argc < 1 || argc >= WD_ARGV_MAX) abort();
        for (int i = 0; i < argc; i++) {
          if (argv[i] < line || argv[i] > line + len) abort();
          size_t n = strlen(argv[i]);
          if (n == 0 || argv[i] + n > line + len) abort();
          uint64_t v; /* an accepted number means what strtoull reads */
          if (wd_proto_u64(argv[i], &v) == 0 && v != strtoull(argv[i], NULL, 10)) abort();
        }
      }
    }
    if (!nl) break;
    off += len + 1;
  }
  free(buf);
  return 0;
}
