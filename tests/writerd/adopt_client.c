/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A detached publisher for the writerd tests: fills a one-column int64 segment
 * (values 0..NROWS-1) in an O_TMPFILE under DIR with snap_publish_begin_detached,
 * seals it, and hands it to writerd with "ADOPT DATASET" and the descriptor
 * (SCM_RIGHTS, through the writerd_client library), closing its own copy right
 * after sending as the protocol asks. Prints writerd's reply line on stdout.
 *
 * usage: adopt_client SOCKET DIR DATASET NROWS [corrupt]
 * "corrupt" damages the sealed header before sending: writerd must refuse it.
 */
#include <libsnap/libsnap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <writerd/client.h>

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: adopt_client SOCKET DIR DATASET NROWS [corrupt]\n");
    return 2;
  }
  uint64_t n = strtoull(argv[4], NULL, 10);
  struct snap_field f = {.name = "v", .type = SNAP_INT64};
  struct snap_schema schema = {.nrows = n, .ncols = 1, .fields = &f};
  struct snap_error err = {0};
  snap_publish *pub;
  struct snap_fill fill;
  int fd;
  if (snap_publish_begin_detached(argv[2], argv[3], &schema, &pub, &err) ||
      snap_publish_fill(pub, 0, &fill, &err)) {
    fprintf(stderr, "adopt_client: %s\n", err.message);
    return 1;
  }
  for (uint64_t i = 0; i < n; i++) ((int64_t *)fill.values)[i] = (int64_t)i;
  if (snap_publish_seal(pub, &fd, &err)) {
    fprintf(stderr, "adopt_client: seal: %s\n", err.message);
    return 1;
  }
  if (argc > 5 && !strcmp(argv[5], "corrupt")) {
    uint64_t junk = 0x4141414141414141ull;
    if (pwrite(fd, &junk, sizeof junk, 64) != sizeof junk) return 1;
  }
  wd_client *wd;
  if (wd_client_open(argv[1], &wd, &err)) {
    fprintf(stderr, "adopt_client: %s\n", err.message);
    return 1;
  }
  char req[400];
  snprintf(req, sizeof req, "ADOPT %s", argv[3]);
  if (wd_client_send(wd, req, fd, &err)) {
    fprintf(stderr, "adopt_client: %s\n", err.message);
    return 1;
  }
  close(fd); /* at once: writerd adopts only a file nobody has open for writing */
  const char *reply;
  if (wd_client_read_line(wd, &reply, NULL) == 1) printf("%s\n", reply);
  wd_client_close(wd);
  return 0;
}
