/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snap_s3's private interface, shared by its source files (and its tests).
 * Files, in layers: error.c (status strings, messages) < config.c (configuration,
 * names, URLs) < xml.c (response parsing) < request.c (one signed request with its
 * retries) < object.c, multipart.c (the operations). */
#ifndef SNAP_S3_INTERNAL_H
#define SNAP_S3_INTERNAL_H

#include <curl/curl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snap_s3/s3.h"

/* Longest object name (prefix + key), S3's limit. */
#define S3_NAME_MAX 1024
/* Room for a request URL: endpoint, bucket, an object name percent-encoded
 * (3 bytes per byte at worst) and a query. */
#define S3_URL_MAX (256 + 64 + 3 * S3_NAME_MAX + 3 * SNAP_S3_UPLOAD_ID_MAX + 128)

struct snap_s3 {
  struct snap_s3_config cfg; /* a copy; secrets wiped by snap_s3_destroy */
  CURL *curl;                /* reset before each attempt, connections kept */
  char sigv4[96];            /* "aws:amz:REGION:s3" */
  unsigned rng;              /* backoff jitter (rand_r) */
  char curl_error[CURL_ERROR_SIZE];
};

/* ---- error.c */
/* Fill err (if not NULL) with status and a formatted one-line message; returns
 * status. Control characters become spaces. */
int s3__err(struct snap_s3_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int s3__verr(struct snap_s3_error *err, int status, const char *fmt, va_list ap);
/* Replace every occurrence of the configuration's secret key and session token
 * in err->message by "***". */
void s3__err_mask(struct snap_s3_error *err, const struct snap_s3_config *cfg);

/* ---- config.c */
/* prefix + key, checked (see s3.h for the rules), into out (S3_NAME_MAX + 1). */
int s3__object_name(const struct snap_s3_config *cfg, const char *key, char *out,
                    struct snap_s3_error *err);
/* The request URL of object @p name (NULL: the bucket) with @p query ("" or
 * "a=1&b=2", already sorted and encoded as it must be signed). */
int s3__url(const struct snap_s3_config *cfg, const char *name, const char *query,
            char *buf, size_t cap);
/* Percent-encode @p s as SigV4 wants (unreserved kept; '/' kept iff keep_slash).
 * Returns the length, or -1 when cap is too small. */
ssize_t s3__encode(const char *s, int keep_slash, char *out, size_t cap);
int s3__check_bucket(const char *b);
int s3__check_config(const struct snap_s3_config *cfg, struct snap_s3_error *err);

/* ---- xml.c: just enough XML for S3's answers, on untrusted bytes. */
/* The first element <name> in [p, end): its raw content in [*cs, *ce) and the
 * position after its end tag in *next (each may be NULL). 0, or -1 if absent or
 * unterminated. */
int s3__xml_find(const char *p, const char *end, const char *name, const char **cs,
                 const char **ce, const char **next);
/* The text of [s, e) with entities decoded into out (cap bytes, NUL-terminated).
 * Returns the length, or -1 (bad entity, markup inside, or too long). */
ssize_t s3__xml_text(const char *s, const char *e, char *out, size_t cap);
/* Element <name>'s decoded text in one call; -1 if absent or malformed. */
ssize_t s3__xml_get(const char *p, const char *end, const char *name, char *out,
                    size_t cap);
/* An <Error> document's Code and Message (each "" when absent). 0 if the body is
 * an <Error>, -1 otherwise. */
int s3__xml_error(const char *body, size_t n, char *code, size_t code_cap, char *msg,
                  size_t msg_cap);
/* A ListObjectsV2 result: entries whose keys start with @p strip (which is
 * removed), the next token when truncated. 0, -ENOMEM, or SNAP_S3_EPROTO with
 * a reason in *why. */
int s3__xml_list(const char *body, size_t n, const char *strip, struct snap_s3_list *out,
                 const char **why);
/* A decimal uint64 from [s, e); -1 if not one. */
int s3__parse_u64(const char *s, const char *e, uint64_t *out);

/* ---- request.c: one operation = one request, retried. */
enum s3_body { BODY_NONE, BODY_MEM, BODY_FD };
enum s3_sink { SINK_NONE, SINK_MEM, SINK_FD, SINK_XML, SINK_CB };

struct s3_growbuf {
  char *p;
  size_t len, cap, max; /* max: bytes kept at most (more is dropped) */
};

struct s3_req {
  /* what to send */
  const char *op;     /* the operation's name in messages: "PUT", "LIST", ... */
  const char *method; /* "GET", "PUT", "POST", "DELETE", "HEAD" */
  const char *name;   /* the object name (prefix + key), NULL for the bucket */
  const char *query;  /* "" or sorted, encoded pairs */
  const struct snap_s3_cond *cond;
  const char *if_none_match_etag; /* a GET's If-None-Match: ETAG (a poll) */
  int ranged; /* send Range: bytes=range_off-(range_off+range_len-1) */
  uint64_t range_off, range_len;
  const char *content_type;
  enum s3_body body;
  const void *mem; /* BODY_MEM */
  int fd;          /* BODY_FD */
  uint64_t off, len;
  /* where a 2xx body goes */
  enum s3_sink sink;
  void *buf; /* SINK_MEM */
  size_t cap;
  int out_fd; /* SINK_FD */
  uint64_t out_off;
  snap_s3_sink cb; /* SINK_CB */
  void *cb_arg;
  int error_in_200; /* a 200 answer may carry an <Error> (CompleteMultipartUpload) */

  /* what came back, reset at each attempt */
  long status;
  char reason[64]; /* the status line's reason phrase */
  char etag[128];
  int have_length;
  uint64_t content_length;
  int have_crange; /* Content-Range: bytes START-END/TOTAL or bytes * /TOTAL */
  uint64_t cr_start, cr_end, cr_total;
  int cr_total_known;
  uint64_t got;     /* body bytes given to the sink */
  uint64_t sent;    /* request body bytes read so far */
  int local_status; /* -errno of pread/pwrite, -EIO for a short file */
  const char *local_what;
  int too_big;               /* SINK_MEM overflow */
  int ignored_range;         /* 200 to a Range request with range_off > 0 */
  int stop_ok;               /* stopped on purpose after range_len bytes of a 200 */
  int bad_range;             /* a 206 for other bytes than asked, or more of them */
  struct s3_growbuf body_in; /* SINK_XML, or an error answer's body */
};

/* Send @p r, retrying transient failures. 0 on a 2xx answer (r's results
 * filled), else a status with err filled. Frees nothing of r: call
 * s3__req_done(). */
int s3__perform(snap_s3 *s3, struct s3_req *r, struct snap_s3_error *err);
void s3__req_done(struct s3_req *r);
/* "s3://bucket/name" for messages, into buf. */
const char *s3__where(const snap_s3 *s3, const char *name, char *buf, size_t cap);

/* object.c: a condition's If-Match must be an ETag (short, printable: it goes
 * into a header line as it is) and not come with If-None-Match. */
int s3__check_cond(const char *op, const char *name, const struct snap_s3_cond *c,
                   struct snap_s3_error *err);

/* config.c: why @p s (@p n bytes) cannot be an object name or prefix: empty,
 * a control character, a leading '/', an empty, '.' or '..' segment; NULL if
 * it can. */
const char *s3__name_problem(const char *s, size_t n);

#endif
