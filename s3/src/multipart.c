/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Multipart uploads: create, upload a part from a file range, complete, abort,
 * and the whole sequence in one call. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PART_MIN (5ull << 20)
#define PARTS_MAX 10000u

/* "uploadId=ENC" (and "partNumber=N&" before it, in canonical order). */
static int upload_query(const char *upload_id, unsigned part, char *q, size_t cap) {
  char enc[3 * SNAP_S3_UPLOAD_ID_MAX + 1];
  size_t n = strlen(upload_id);
  if (n == 0 || n >= SNAP_S3_UPLOAD_ID_MAX ||
      s3__encode(upload_id, 0, enc, sizeof enc) < 0)
    return -1;
  int m = part ? snprintf(q, cap, "partNumber=%u&uploadId=%s", part, enc)
               : snprintf(q, cap, "uploadId=%s", enc);
  return m < 0 || (size_t)m >= cap ? -1 : 0;
}

int snap_s3_multipart_create(snap_s3 *s3, const char *key,
                             char upload_id[SNAP_S3_UPLOAD_ID_MAX],
                             struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1], where[400];
  upload_id[0] = 0;
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  struct s3_req r = {.op = "CREATE MULTIPART",
                     .method = "POST",
                     .name = name,
                     .query = "uploads=",
                     .sink = SINK_XML,
                     .content_type = "application/octet-stream"};
  rc = s3__perform(s3, &r, err);
  if (rc == 0) {
    /* no pointer arithmetic on an empty body's NULL (UBSan) */
    if (!r.body_in.p || s3__xml_get(r.body_in.p, r.body_in.p + r.body_in.len, "UploadId",
                                    upload_id, SNAP_S3_UPLOAD_ID_MAX) <= 0) {
      upload_id[0] = 0;
      rc = s3__err(err, SNAP_S3_EPROTO, "CREATE MULTIPART %s: no usable UploadId",
                   s3__where(s3, name, where, sizeof where));
    }
  }
  s3__req_done(&r);
  return rc;
}

/* One part from @p body (BODY_FD: fd at offset; BODY_MEM: mem). */
static int put_part(snap_s3 *s3, const char *key, const char *upload_id, unsigned number,
                    struct s3_req *r, struct snap_s3_part *part,
                    struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1], where[400], query[3 * SNAP_S3_UPLOAD_ID_MAX + 64];
  memset(part, 0, sizeof *part);
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  if (number < 1 || number > PARTS_MAX || (r->body == BODY_FD && r->fd < 0) ||
      (r->body == BODY_MEM && !r->mem && r->len) || r->len > INT64_MAX ||
      r->off > INT64_MAX - r->len || upload_query(upload_id, number, query, sizeof query))
    return s3__err(err, SNAP_S3_EINVAL,
                   "UPLOAD PART %s: bad part number %u, source, range or upload id",
                   s3__where(s3, name, where, sizeof where), number);
  r->op = "UPLOAD PART";
  r->method = "PUT";
  r->name = name;
  r->query = query;
  uint64_t length = r->len;
  rc = s3__perform(s3, r, err);
  if (rc == 0 && !r->etag[0])
    rc = s3__err(err, SNAP_S3_EPROTO, "UPLOAD PART %s: part %u: no ETag in the answer",
                 s3__where(s3, name, where, sizeof where), number);
  if (rc == 0) {
    part->number = number;
    part->size = length;
    memcpy(part->etag, r->etag, sizeof part->etag);
  }
  s3__req_done(r);
  return rc;
}

int snap_s3_multipart_put_fd(snap_s3 *s3, const char *key, const char *upload_id,
                             unsigned number, int fd, uint64_t offset, uint64_t length,
                             struct snap_s3_part *part, struct snap_s3_error *err) {
  struct s3_req r = {.body = BODY_FD, .fd = fd, .off = offset, .len = length};
  return put_part(s3, key, upload_id, number, &r, part, err);
}

int snap_s3_multipart_put(snap_s3 *s3, const char *key, const char *upload_id,
                          unsigned number, const void *buf, size_t len,
                          struct snap_s3_part *part, struct snap_s3_error *err) {
  struct s3_req r = {.body = BODY_MEM, .mem = buf, .len = len};
  return put_part(s3, key, upload_id, number, &r, part, err);
}

/* Append s to the body with XML's five special characters escaped. */
static size_t xml_escape(char *out, size_t n, const char *s) {
  for (; *s; s++) {
    const char *e = NULL;
    switch (*s) {
      case '&':
        e = "&amp;";
        break;
      case '<':
        e = "&lt;";
        break;
      case '>':
        e = "&gt;";
        break;
      case '"':
        e = "&quot;";
        break;
      case '\'':
        e = "&apos;";
        break;
    }
    if (e) {
      memcpy(out + n, e, strlen(e));
      n += strlen(e);
    } else {
      out[n++] = *s;
    }
  }
  return n;
}

int snap_s3_multipart_complete(snap_s3 *s3, const char *key, const char *upload_id,
                               const struct snap_s3_part *parts, size_t nparts,
                               const struct snap_s3_cond *cond,
                               struct snap_s3_object *out, struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1], where[400], query[3 * SNAP_S3_UPLOAD_ID_MAX + 64];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  s3__where(s3, name, where, sizeof where);
  if (nparts == 0 || nparts > PARTS_MAX ||
      upload_query(upload_id, 0, query, sizeof query))
    return s3__err(err, SNAP_S3_EINVAL,
                   "COMPLETE MULTIPART %s: %zu parts or bad upload id", where, nparts);
  if ((rc = s3__check_cond("COMPLETE MULTIPART", where, cond, err)) != 0) return rc;
  uint64_t size = 0;
  for (size_t i = 0; i < nparts; i++) {
    size_t el = strnlen(parts[i].etag, sizeof parts[i].etag);
    if (parts[i].number < 1 || parts[i].number > PARTS_MAX ||
        (i && parts[i].number <= parts[i - 1].number) || el == 0 ||
        el == sizeof parts[i].etag)
      return s3__err(err, SNAP_S3_EINVAL,
                     "COMPLETE MULTIPART %s: part %zu: number %u out of order or no ETag",
                     where, i, parts[i].number);
    size += parts[i].size;
  }
  /* Each part: <Part><PartNumber>N</PartNumber><ETag>...</ETag></Part>, an ETag of
   * up to 127 characters escaped to at most 6 bytes each. */
  size_t cap = 128 + nparts * (64 + 6 * 128);
  char *body = malloc(cap);
  if (!body) return s3__err(err, -ENOMEM, "COMPLETE MULTIPART %s: out of memory", where);
  size_t n = (size_t)snprintf(body, cap,
                              "<CompleteMultipartUpload "
                              "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (size_t i = 0; i < nparts; i++) {
    n += (size_t)snprintf(body + n, cap - n, "<Part><PartNumber>%u</PartNumber><ETag>",
                          parts[i].number);
    n = xml_escape(body, n, parts[i].etag);
    n += (size_t)snprintf(body + n, cap - n, "</ETag></Part>");
  }
  n += (size_t)snprintf(body + n, cap - n, "</CompleteMultipartUpload>");

  struct s3_req r = {.op = "COMPLETE MULTIPART",
                     .method = "POST",
                     .name = name,
                     .query = query,
                     .cond = cond,
                     .body = BODY_MEM,
                     .mem = body,
                     .len = n,
                     .content_type = "application/xml",
                     .sink = SINK_XML,
                     .error_in_200 = 1};
  rc = s3__perform(s3, &r, err);
  if (rc == 0 && out) {
    out->size = size;
    /* The final ETag is in the answer's body (the header may be absent). */
    if (!r.body_in.p || s3__xml_get(r.body_in.p, r.body_in.p + r.body_in.len, "ETag",
                                    out->etag, sizeof out->etag) < 0)
      snprintf(out->etag, sizeof out->etag, "%s", r.etag);
  }
  s3__req_done(&r);
  free(body);
  return rc;
}

int snap_s3_multipart_abort(snap_s3 *s3, const char *key, const char *upload_id,
                            struct snap_s3_error *err) {
  char name[S3_NAME_MAX + 1], where[400], query[3 * SNAP_S3_UPLOAD_ID_MAX + 64];
  int rc = s3__object_name(&s3->cfg, key, name, err);
  if (rc) return rc;
  if (upload_query(upload_id, 0, query, sizeof query))
    return s3__err(err, SNAP_S3_EINVAL, "ABORT MULTIPART %s: bad upload id",
                   s3__where(s3, name, where, sizeof where));
  struct s3_req r = {
      .op = "ABORT MULTIPART", .method = "DELETE", .name = name, .query = query};
  rc = s3__perform(s3, &r, err);
  s3__req_done(&r);
  return rc;
}

int snap_s3_put_fd_multipart(snap_s3 *s3, const char *key, int fd, uint64_t offset,
                             uint64_t length, uint64_t part_size,
                             const struct snap_s3_cond *cond, struct snap_s3_object *out,
                             struct snap_s3_error *err) {
  if (part_size < PART_MIN || length > INT64_MAX ||
      length / part_size + (length % part_size != 0) > PARTS_MAX)
    return s3__err(err, SNAP_S3_EINVAL,
                   "PUT MULTIPART %s: part size %llu under 5 MiB or more than %u parts",
                   key ? key : "(null)", (unsigned long long)part_size, PARTS_MAX);
  size_t nparts = length ? (size_t)(length / part_size + (length % part_size != 0)) : 1;
  struct snap_s3_part *parts = calloc(nparts, sizeof *parts);
  if (!parts) return s3__err(err, -ENOMEM, "PUT MULTIPART: out of memory");
  char upload_id[SNAP_S3_UPLOAD_ID_MAX];
  int rc = snap_s3_multipart_create(s3, key, upload_id, err);
  for (size_t i = 0; rc == 0 && i < nparts; i++) {
    uint64_t off = (uint64_t)i * part_size;
    uint64_t len = length - off < part_size ? length - off : part_size;
    rc = snap_s3_multipart_put_fd(s3, key, upload_id, (unsigned)i + 1, fd, offset + off,
                                  len, &parts[i], err);
  }
  if (rc == 0)
    rc = snap_s3_multipart_complete(s3, key, upload_id, parts, nparts, cond, out, err);
  if (rc != 0 && upload_id[0]) /* best effort; the first error is the one reported */
    snap_s3_multipart_abort(s3, key, upload_id, NULL);
  free(parts);
  return rc;
}
