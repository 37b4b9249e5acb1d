/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A detached publisher for the writerd tests: fills a one-column int64 segment
 * (values 0..NROWS-1) in an O_TMPFILE under DIR with snap_publish_begin_detached,
 * seals it, and hands it to writerd with "ADOPT DATASET" and the descriptor
 * (SCM_RIGHTS), closing its own copy right after sending as the protocol asks.
 * Prints writerd's reply line on stdout.
 *
 * usage: adopt_client SOCKET DIR DATASET NROWS [corrupt]
 * "corrupt" damages the sealed header before sending: writerd must refuse it.
 */
#include <libsnap/libsnap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa)) {
    perror("adopt_client: connect");
    return 1;
  }
  char req[400];
  int len = snprintf(req, sizeof req, "ADOPT %s\n", argv[3]);
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {req, (size_t)len};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = ctl.buf,
                     .msg_controllen = sizeof ctl.buf};
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET;
  h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &fd, sizeof fd);
  if (sendmsg(s, &m, 0) != len) {
    perror("adopt_client: sendmsg");
    return 1;
  }
  close(fd); /* at once: writerd adopts only a file nobody has open for writing */
  char reply[1024];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof reply - 1 &&
         (r = read(s, reply + got, sizeof reply - 1 - got)) > 0) {
    got += (size_t)r;
    if (memchr(reply, '\n', got)) break;
  }
  reply[got] = 0;
  fputs(reply, stdout);
  close(s);
  return 0;
}
