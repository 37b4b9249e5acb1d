/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the S3 client's reader of server answers (s3/src/xml.c), on
 * bytes a server, or anything between it and us, could send. The input is copied
 * to a buffer of exactly its size, without a NUL, so ASan catches a read past it.
 * Every accepted list must hold keys (relative to the prefix, at most 1024 bytes)
 * and a token only when it says more pages follow; every refusal says why.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);

  struct snap_s3_list l;
  const char *why = NULL;
  int rc = s3__xml_list(buf, size, "p/", &l, &why);
  if (rc == 0) {
    for (size_t i = 0; i < l.count; i++)
      if (!l.entries[i].key || strlen(l.entries[i].key) > 1024 ||
          strlen(l.entries[i].etag) >= sizeof l.entries[i].etag)
        abort();
    if (l.next_token && !*l.next_token) abort();
    snap_s3_list_free(&l);
  } else {
    if (rc != SNAP_S3_EPROTO && rc != -12 /* ENOMEM */) abort();
    if (!why || !*why || l.count || l.entries || l.next_token) abort();
  }

  char code[64], msg[300], small[8];
  if (s3__xml_error(buf, size, code, sizeof code, msg, sizeof msg) == 0 &&
      (strlen(code) >= sizeof code || strlen(msg) >= sizeof msg))
    abort();
  static const char *const names[] = {"UploadId", "ETag", "Key", "Code", NULL};
  for (int i = 0; names[i]; i++) {
    ssize_t n = s3__xml_get(buf, buf + size, names[i], small, sizeof small);
    if (n >= (ssize_t)sizeof small || (n >= 0 && (size_t)n != strlen(small))) abort();
  }
  free(buf);
  return 0;
}
