/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The request-line grammar of docs/protocol.md, apart from the daemon so that it
 * can be tested and fuzzed on its own (fuzz/fuzz_protocol.c), and the protocol's
 * limits, shared with the client library (writerd/client/). */
#ifndef WRITERD_PROTO_H
#define WRITERD_PROTO_H

#include <stddef.h>
#include <stdint.h>

/** Longest request line in bytes, newline included (docs/protocol.md, "Framing").
 *  The server refuses a longer one (socket.c); the client will not send one, and
 *  reads replies with a buffer of this size. */
#define WD_LINE_MAX 4096
#define WD_ARGV_MAX 16 /* a request has fewer arguments than this, verb included */

/*
 * Parse one request line in place: @p line holds @p len bytes and a NUL after
 * them, no '\n'. A trailing '\r' is dropped; control bytes, empty arguments
 * (two spaces, a trailing space), too many arguments and bad or NUL %XX escapes
 * are refused. On success fills argv[0..argc) with NUL-terminated, decoded,
 * non-empty strings inside @p line and returns argc (1..WD_ARGV_MAX-1); on
 * failure returns -1 and sets *why to a static message.
 */
int wd_proto_parse(char *line, size_t len, char **argv, const char **why);

/* A decimal number without sign or blanks that fits in 64 bits. 0 or -1. */
int wd_proto_u64(const char *s, uint64_t *out);

#endif
