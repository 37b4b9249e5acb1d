/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the request-head parser of writerd's metrics server
 * (wd_http_parse, writerd/metrics.c), which reads whatever any local process
 * sends to the --metrics port. A complete head must end with its empty line and
 * parse the same alone; every shorter prefix of it must be "incomplete" (the
 * server waits for more of a head that is still valid), never refused or
 * complete. ASan catches any read outside the buffer (the input is copied into a
 * buffer of exactly its size).
 */
#include <stdlib.h>
#include <string.h>

#include "writerd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 16384) return 0; /* the server reads at most 8 KiB */
  char *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  struct wd_http_req req, again;
  int h = wd_http_parse(buf, size, &req);
  if (h < -1 || h > (int)size) abort();
  if (h > 0) {
    if (buf[h - 1] != '\n' ||
        !(h >= 2 &&
          (buf[h - 2] == '\n' || (h >= 3 && !memcmp(buf + h - 3, "\n\r\n", 3)))))
      abort();
    if (wd_http_parse(buf, (size_t)h, &again) != h || again.get != req.get ||
        again.metrics != req.metrics)
      abort();
    /* prefixes: all of them for small heads, a sample of larger ones */
    size_t step = h > 512 ? (size_t)h / 97 + 1 : 1;
    for (size_t n = 0; n < (size_t)h; n += step)
      if (wd_http_parse(buf, n, &again) != 0) abort();
  }
  free(buf);
  return 0;
}
