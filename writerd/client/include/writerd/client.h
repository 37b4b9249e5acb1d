/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client side of writerd's socket protocol (docs/protocol.md): connect to the
 * socket, send request lines (with a descriptor as SCM_RIGHTS when the request
 * takes one), read reply lines. Used by snapctl (publish through writerd) and the
 * writerd tests; the line limit is the server's own (WD_LINE_MAX in
 * writerd/proto.h), so a client cannot build a request the server must refuse.
 *
 * A wd_client is one connection. It is not thread-safe: one thread at a time
 * (requests are answered in order, so interleaving threads would mix replies).
 * Errors: 0 is success, a negative errno a failure, with a message in the
 * optional struct snap_error (libsnap's) naming what failed.
 */
#ifndef WRITERD_CLIENT_H
#define WRITERD_CLIENT_H

#include <libsnap/libsnap.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wd_client wd_client;

/**
 * Connect to the writerd socket at @p path.
 * @return 0 with *out set (close it with wd_client_close()), or -errno with *out
 *         NULL: -ENAMETOOLONG (path too long for a Unix socket), -ENOENT or
 *         -ECONNREFUSED (no writerd listens there), -ENOMEM, ...
 */
int wd_client_open(const char *path, wd_client **out, struct snap_error *err);

/**
 * Connect to the writerd that serves the store at @p store: its lock file
 * <store>/writerd.lock names the socket on its second line ("PID\nSOCKET\n").
 * @return as wd_client_open(); -ENOENT when the store has no lock file (no
 *         writerd ever served it), -EINVAL when the lock file names no socket;
 *         a stale lock file (writerd gone) gives -ECONNREFUSED or -ENOENT.
 */
int wd_client_open_store(const char *store, wd_client **out, struct snap_error *err);

/** Close the connection and free the client. NULL is a no-op. */
void wd_client_close(wd_client *c);

/**
 * Send one request line: @p line is NUL-terminated, without its '\n' (added
 * here); arguments already percent-encoded (wd_client_put_arg()). When @p fd is
 * 0 or more, the descriptor travels with the line's bytes (SCM_RIGHTS), as
 * "PUBLISH DATASET -" and "ADOPT DATASET" need; the caller keeps its own copy
 * and closes it when it likes (ADOPT wants it closed at once).
 * @return 0; -E2BIG when the line with its newline is longer than the
 *         protocol's limit (nothing sent; the message gives both lengths);
 *         -EINVAL when the line holds a '\n'; -errno of sendmsg (-EPIPE when
 *         writerd has closed the connection; no SIGPIPE is raised).
 */
int wd_client_send(wd_client *c, const char *line, int fd, struct snap_error *err);

/** Longest reply line the client accepts (requests: the server's WD_LINE_MAX). */
#define WD_REPLY_MAX (64 << 20)

/**
 * Read the next reply line. *line points at it, NUL-terminated, without its
 * newline; it stays valid until the next call on @p c. A last line that the
 * connection's end cut short is returned as it is.
 * Reply lines are not bound by the request limit (a STATUS reply lists every
 * dataset): the buffer grows up to WD_REPLY_MAX bytes.
 * @return 1 (a line), 0 (writerd closed the connection; no line), -EMSGSIZE (a
 *         line longer than WD_REPLY_MAX; the connection is of no more use),
 *         -ENOMEM, or -errno of read.
 */
int wd_client_read_line(wd_client *c, const char **line, struct snap_error *err);

/**
 * Append @p arg percent-encoded (space, '%', control bytes and 0x7f as %XX) to
 * the NUL-terminated string out[0..*len) of capacity @p cap, advancing *len.
 * @return 0, or -E2BIG when it did not fit (what fitted is kept, out stays
 *         NUL-terminated; with *len >= cap nothing is written).
 */
int wd_client_put_arg(char *out, size_t cap, size_t *len, const char *arg);

#ifdef __cplusplus
}
#endif
#endif /* WRITERD_CLIENT_H */
