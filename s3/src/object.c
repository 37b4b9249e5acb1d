/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Single-request operations: bucket creation, put, get, head, delete, list. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The answer's ETag and size into *out (may be NULL). */
static void object_info(const struct s3_req *r, uint64_t size,
                        struct snap_s3_object *out) {
  if (!out) return;
  out->size = size;
  snprintf(out->etag, sizeof out->etag, "%s", r->etag);
}

int s3__check_cond(const char *op, const char *name, const struct snap_s3_cond *c,
                   struct snap_s3_error *err) {
  if (!c || !c->if_match) return 0;
  size_t n = strlen(c->if_match);
  /* An ETag is short, printable and goes into a header line as it is. */
  int ok = n > 0 && n < 128;
  for (size_t i = 0; ok && i < n; i++)
    ok = (unsigned char)c->if_match[i] >= 0x20 && c->if_match[i] != 0x7f;
  if (!ok)
    return s3__err(err, SNAP_S3_EINVAL, "%s %s: If-Match value is not an ETag", op, name);
  if (c->if_none_match)
    return s3__err(err, SNAP_S3_EINVAL, "%s %s: both If-Match and If-None-Match", op,
                   name);
  return 0;
}

int snap_s3_bucket_create(snap_s3 *s3, struct snap_s3_error *err) {
  char body[256];
  struct s3_req r = {.op = "CREATE BUCKET", .method = "PUT", .query = ""};
  /* us-east-1 is the default location and takes no configuration. */
  if (strcmp(s3->cfg.region, "us-east-1") != 0) {
    snprintf(body, sizeof body,
             "<CreateBucketConfiguration "
             "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>%s"
             "</LocationConstraint></CreateBucketConfiguration>",
             s3->cfg.region);
    r.body = BODY_MEM;
    r.mem = body;
    r.len = strlen(body);
    r.content_type = "application/xml";
  }
  int rc = s3__perform(s3, &r, err);
  if (rc == SNAP_S3_ECONFLICT && err &&
      strcmp(err->s3_code, "BucketAlreadyOwnedByYou") == 0)
    rc = 0;
  s3__req_done(&r);
  return rc;
}

static int put_common(snap_s3 *s3, const char *key, struct s3_req *r,
                      struct snap_s3_object *out, struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  if ((rc = s3__check_cond("PUT", name, r->cond, err)) != 0) return rc;
  r->op = "PUT";
  r->method = "PUT";
  r->name = name;
  r->query = "";
  rc = s3__perform(s3, r, err);
  if (rc == 0) object_info(r, r->len, out);
  s3__req_done(r);
  return rc;
}

int snap_s3_put(snap_s3 *s3, const char *key, const void *buf, size_t len,
                const struct snap_s3_cond *cond, struct snap_s3_object *out,
                struct snap_s3_error *err) {
  struct s3_req r = {.body = BODY_MEM, .mem = buf, .len = len, .cond = cond};
  return put_common(s3, key, &r, out, err);
}

int snap_s3_put_fd(snap_s3 *s3, const char *key, int fd, uint64_t offset, uint64_t length,
                   const struct snap_s3_cond *cond, struct snap_s3_object *out,
                   struct snap_s3_error *err) {
  if (fd < 0 || length > INT64_MAX || offset > INT64_MAX - length)
    return s3__err(err, SNAP_S3_EINVAL, "PUT %s: bad fd %d or range %llu+%llu",
                   key ? key : "(null)", fd, (unsigned long long)offset,
                   (unsigned long long)length);
  struct s3_req r = {
      .body = BODY_FD, .fd = fd, .off = offset, .len = length, .cond = cond};
  return put_common(s3, key, &r, out, err);
}

/* The object's total size from a GET answer: Content-Range's total for a 206
 * (or a 416), Content-Length for a 200. */
static uint64_t get_total(const struct s3_req *r) {
  if (r->cr_total_known) return r->cr_total;
  if (r->status == 200 && r->have_length) return r->content_length;
  return 0;
}

static int get_common(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length,
                      struct s3_req *r, struct snap_s3_object *info,
                      struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  if (length == 0)
    return s3__err(err, SNAP_S3_EINVAL, "GET s3://%s/%s: empty range", s3->cfg.bucket,
                   name);
  r->op = "GET";
  r->method = "GET";
  r->name = name;
  r->query = "";
  /* No Range for the whole object: an empty object has no byte 0 to ask for. */
  r->ranged = !(offset == 0 && length == SNAP_S3_TO_END);
  r->range_off = offset;
  r->range_len = length;
  rc = s3__perform(s3, r, err);
  if (rc == 0 && r->status == 206) {
    /* The bytes must be the ones asked for: from offset, at most length. */
    if (!r->have_crange || r->cr_start != offset ||
        (length != SNAP_S3_TO_END && r->cr_end - r->cr_start >= length) ||
        r->got != r->cr_end - r->cr_start + 1) {
      char where[400];
      rc = s3__err(err, SNAP_S3_EPROTO,
                   "GET %s: 206 with a Content-Range that does not match bytes %llu+%llu",
                   s3__where(s3, name, where, sizeof where), (unsigned long long)offset,
                   (unsigned long long)length);
    }
  }
  if (info && (rc == 0 || rc == SNAP_S3_ETOOBIG)) object_info(r, get_total(r), info);
  s3__req_done(r);
  return rc;
}

int snap_s3_get(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length, void *buf,
                size_t cap, size_t *got, struct snap_s3_object *info,
                struct snap_s3_error *err) {
  struct s3_req r = {.sink = SINK_MEM, .buf = buf, .cap = cap};
  *got = 0;
  int rc = get_common(s3, key, offset, length, &r, info, err);
  if (rc == 0) *got = (size_t)r.got;
  return rc;
}

int snap_s3_get_changed(snap_s3 *s3, const char *key, const char *etag, void *buf,
                        size_t cap, size_t *got, struct snap_s3_object *info,
                        struct snap_s3_error *err) {
  struct s3_req r = {.sink = SINK_MEM, .buf = buf, .cap = cap};
  *got = 0;
  if (etag && *etag) {
    struct snap_s3_cond c = {.if_match = etag}; /* the same rules for an ETag */
    int rc = s3__check_cond("GET", key ? key : "(null)", &c, err);
    if (rc) return rc;
    r.if_none_match_etag = etag;
  }
  int rc = get_common(s3, key, 0, SNAP_S3_TO_END, &r, info, err);
  if (rc == 0) *got = (size_t)r.got;
  return rc;
}

int snap_s3_get_fd(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length, int fd,
                   uint64_t fd_offset, uint64_t *got, struct snap_s3_object *info,
                   struct snap_s3_error *err) {
  *got = 0;
  if (fd < 0 || fd_offset > INT64_MAX)
    return s3__err(err, SNAP_S3_EINVAL, "GET %s: bad fd %d or offset %llu",
                   key ? key : "(null)", fd, (unsigned long long)fd_offset);
  struct s3_req r = {.sink = SINK_FD, .out_fd = fd, .out_off = fd_offset};
  int rc = get_common(s3, key, offset, length, &r, info, err);
  if (rc == 0) *got = r.got;
  return rc;
}

int snap_s3_get_cb(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length,
                   snap_s3_sink sink, void *arg, uint64_t *got,
                   struct snap_s3_object *info, struct snap_s3_error *err) {
  *got = 0;
  if (!sink) return s3__err(err, SNAP_S3_EINVAL, "GET %s: no sink", key ? key : "(null)");
  struct s3_req r = {.sink = SINK_CB, .cb = sink, .cb_arg = arg};
  int rc = get_common(s3, key, offset, length, &r, info, err);
  if (rc == 0) *got = r.got;
  return rc;
}

int snap_s3_head(snap_s3 *s3, const char *key, struct snap_s3_object *out,
                 struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  struct s3_req r = {.op = "HEAD", .method = "HEAD", .name = name, .query = ""};
  rc = s3__perform(s3, &r, err);
  if (rc == 0 && !r.have_length) {
    char where[400];
    rc = s3__err(err, SNAP_S3_EPROTO, "HEAD %s: no Content-Length",
                 s3__where(s3, name, where, sizeof where));
  }
  if (rc == 0) object_info(&r, r.content_length, out);
  s3__req_done(&r);
  return rc;
}

int snap_s3_delete(snap_s3 *s3, const char *key, struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  struct s3_req r = {.op = "DELETE", .method = "DELETE", .name = name, .query = ""};
  rc = s3__perform(s3, &r, err);
  s3__req_done(&r);
  return rc;
}

int snap_s3_list(snap_s3 *s3, const char *prefix, const char *token, unsigned max_keys,
                 struct snap_s3_list *out, struct snap_s3_error *err) {
  memset(out, 0, sizeof *out);
  char full[S3_NAME_MAX + 1];
  size_t plen = strlen(s3->cfg.prefix), ulen = prefix ? strlen(prefix) : 0;
  if (plen + ulen > S3_NAME_MAX)
    return s3__err(err, SNAP_S3_EINVAL, "LIST s3://%s/%s: prefix too long",
                   s3->cfg.bucket, s3->cfg.prefix);
  for (size_t i = 0; i < ulen; i++)
    if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f)
      return s3__err(err, SNAP_S3_EINVAL, "LIST s3://%s/%s: control character in prefix",
                     s3->cfg.bucket, s3->cfg.prefix);
  memcpy(full, s3->cfg.prefix, plen);
  memcpy(full + plen, prefix ? prefix : "", ulen + 1);

  /* The query in canonical order: continuation-token, list-type, max-keys,
   * prefix (curl 7.88 signs it as written). */
  size_t tlen = token ? strlen(token) : 0;
  size_t qcap = 3 * (tlen + S3_NAME_MAX) + 128;
  char *query = malloc(qcap), *enc = malloc(qcap);
  int rc = 0;
  if (!query || !enc) {
    rc = s3__err(err, -ENOMEM, "LIST: out of memory");
    goto done;
  }
  size_t n = 0;
  query[0] = 0;
  if (token) {
    if (tlen == 0 || s3__encode(token, 0, enc, qcap) < 0) {
      rc = s3__err(err, SNAP_S3_EINVAL, "LIST s3://%s/%s: bad continuation token",
                   s3->cfg.bucket, full);
      goto done;
    }
    n += (size_t)snprintf(query + n, qcap - n, "continuation-token=%s&", enc);
  }
  n += (size_t)snprintf(query + n, qcap - n, "list-type=2&");
  if (max_keys) n += (size_t)snprintf(query + n, qcap - n, "max-keys=%u&", max_keys);
  s3__encode(full, 0, enc, qcap); /* fits: qcap >= 3 * S3_NAME_MAX + 1 */
  snprintf(query + n, qcap - n, "prefix=%s", enc);

  struct s3_req r = {.op = "LIST", .method = "GET", .query = query, .sink = SINK_XML};
  rc = s3__perform(s3, &r, err);
  if (rc == 0) {
    const char *why = "";
    rc = s3__xml_list(r.body_in.p ? r.body_in.p : "", r.body_in.len, s3->cfg.prefix, out,
                      &why);
    if (rc)
      s3__err(err, rc, "LIST s3://%s/%s: %s (%s)", s3->cfg.bucket, full,
              rc == SNAP_S3_EPROTO ? "malformed answer" : "out of memory", why);
  }
  s3__req_done(&r);
done:
  free(query);
  free(enc);
  return rc;
}
