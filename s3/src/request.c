/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One S3 request, signed by libcurl, with its retries.
 *
 * Each attempt resets the easy handle (curl_easy_reset keeps the live
 * connections, so a retry or the next call reuses them) and sets every option
 * again, so nothing leaks from one request into the next (NOBODY from a HEAD,
 * a custom method, a body). The answer's headers are parsed as they arrive; a
 * 2xx body goes to the request's sink (memory, a file with pwrite, or a bounded
 * buffer for XML), any other body into a small bounded buffer for its <Error>.
 *
 * What curl 7.88's SigV4 signer does, and what this file does about it:
 *  - it signs every header we add (If-Match, Range, x-amz-security-token, ...);
 *  - it signs the query string as given, without sorting or encoding it, so
 *    callers pass queries already in canonical form (sorted, "key=" for a bare
 *    key like "uploads", values percent-encoded);
 *  - it sends no x-amz-content-sha256, which S3 requires, so we send
 *    "UNSIGNED-PAYLOAD", and curl signs that value instead of hashing the body.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Error bodies are short; a SINK_XML answer (a list page of 1000 keys is about
 * 300 KiB) is capped far above any real one. */
#define ERROR_BODY_MAX (64u << 10)
#define XML_BODY_MAX (16u << 20)
/* Bodies from this size on are sent after the server's "100 Continue". */
#define EXPECT_MIN (1u << 20)

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int snap_s3_create(const struct snap_s3_config *cfg, snap_s3 **out,
                   struct snap_s3_error *err) {
  *out = NULL;
  int rc = s3__check_config(cfg, err);
  if (rc) return rc;
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK)
    return s3__err(err, -ENOMEM, "curl_global_init: %s", curl_easy_strerror(global_rc));
  snap_s3 *s3 = calloc(1, sizeof *s3);
  if (!s3) return s3__err(err, -ENOMEM, "s3://%s: out of memory", cfg->bucket);
  s3->cfg = *cfg;
  s3->curl = curl_easy_init();
  if (!s3->curl) {
    snap_s3_destroy(s3);
    return s3__err(err, -ENOMEM, "s3://%s: curl_easy_init failed", cfg->bucket);
  }
  snprintf(s3->sigv4, sizeof s3->sigv4, "aws:amz:%s:s3", cfg->region);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  s3->rng = (unsigned)ts.tv_nsec ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)s3;
  *out = s3;
  return 0;
}

void snap_s3_destroy(snap_s3 *s3) {
  if (!s3) return;
  if (s3->curl) curl_easy_cleanup(s3->curl);
  snap_s3_config_clear(&s3->cfg);
  free(s3);
}

const char *s3__where(const snap_s3 *s3, const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "s3://%s/%.*s", s3->cfg.bucket, 300, name ? name : "");
  return buf;
}

/* ---------------------------------------------------------------- callbacks */

static void grow_append(struct s3_growbuf *g, const char *p, size_t n) {
  if (g->len + n > g->max) n = g->max > g->len ? g->max - g->len : 0;
  if (n == 0) return;
  if (g->len + n + 1 > g->cap) {
    size_t ncap = g->cap ? g->cap : 4096;
    while (ncap < g->len + n + 1) ncap *= 2;
    char *np = realloc(g->p, ncap);
    if (!np) return; /* keep what fits: an error message, at worst cut short */
    g->p = np;
    g->cap = ncap;
  }
  memcpy(g->p + g->len, p, n);
  g->len += n;
  g->p[g->len] = 0;
}

/* "Name: value" of a header line, value trimmed; NULL if it is another header. */
static const char *header_value(const char *line, size_t n, const char *name,
                                size_t *vlen) {
  size_t nl = strlen(name);
  if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) return NULL;
  const char *v = line + nl + 1, *e = line + n;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
  *vlen = (size_t)(e - v);
  return v;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg) {
  struct s3_req *r = arg;
  size_t n = size * nitems, vlen;
  const char *v;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    /* A new answer (after "100 Continue", a new one replaces it): forget the
     * headers of the previous one. */
    /* "HTTP/1.1 404 Not Found\r\n", "HTTP/2 200 \r\n": not NUL-terminated */
    const char *end = line + n, *p = memchr(line, ' ', n);
    r->status = 0;
    r->reason[0] = 0;
    if (p) {
      for (p++; p < end && *p >= '0' && *p <= '9' && r->status < 1000; p++)
        r->status = r->status * 10 + (*p - '0');
      while (p < end && *p == ' ') p++;
      while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
      size_t len =
          (size_t)(end - p) < sizeof r->reason ? (size_t)(end - p) : sizeof r->reason - 1;
      memcpy(r->reason, p, len);
      r->reason[len] = 0;
    }
    r->etag[0] = 0;
    r->have_length = r->have_crange = r->cr_total_known = 0;
  } else if ((v = header_value(line, n, "ETag", &vlen)) != NULL) {
    if (vlen < sizeof r->etag) {
      memcpy(r->etag, v, vlen);
      r->etag[vlen] = 0;
    }
  } else if ((v = header_value(line, n, "Content-Length", &vlen)) != NULL) {
    r->have_length = s3__parse_u64(v, v + vlen, &r->content_length) == 0;
  } else if ((v = header_value(line, n, "Content-Range", &vlen)) != NULL) {
    /* "bytes START-END/TOTAL", "bytes START-END/(star)" or "bytes (star)/TOTAL" */
    const char *e = v + vlen;
    if (vlen > 6 && memcmp(v, "bytes ", 6) == 0) {
      const char *a = v + 6, *dash = memchr(a, '-', (size_t)(e - a)),
                 *slash = memchr(a, '/', (size_t)(e - a));
      if (slash) {
        r->cr_total_known = s3__parse_u64(slash + 1, e, &r->cr_total) == 0;
        r->have_crange =
            dash && dash < slash && s3__parse_u64(a, dash, &r->cr_start) == 0 &&
            s3__parse_u64(dash + 1, slash, &r->cr_end) == 0 && r->cr_end >= r->cr_start;
      }
    }
  }
  return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
  struct s3_req *r = arg;
  size_t n = size * nmemb;
  if (r->status < 200 || r->status > 299) {
    grow_append(&r->body_in, data, n);
    return n;
  }
  if (r->ranged && r->status == 206) {
    /* Nothing is written before the Content-Range is the one asked for, and
     * never more than it says: an answer that strays would overwrite bytes
     * outside the range (a neighbour's, in a file filled by several GETs). */
    if (!r->have_crange || r->cr_start != r->range_off ||
        (r->range_len != SNAP_S3_TO_END && r->cr_end - r->cr_start >= r->range_len) ||
        n > r->cr_end - r->cr_start + 1 - r->got) {
      r->bad_range = 1;
      return 0;
    }
  }
  if (r->ranged && r->status == 200) {
    /* The server ignored Range and sends the whole object. From offset 0 it is
     * still the right bytes: keep range_len of them, then stop on purpose. */
    if (r->range_off != 0) {
      r->ignored_range = 1;
      return 0;
    }
    if (r->got + n >= r->range_len) {
      n = (size_t)(r->range_len - r->got);
      r->stop_ok = 1;
    }
  }
  switch (r->sink) {
    case SINK_NONE:
      break;
    case SINK_XML:
      if (r->body_in.len + n > r->body_in.max) {
        r->too_big = 1;
        return 0;
      }
      grow_append(&r->body_in, data, n);
      break;
    case SINK_MEM:
      if (n > r->cap - r->got) {
        r->too_big = 1;
        return 0;
      }
      memcpy((char *)r->buf + r->got, data, n);
      break;
    case SINK_CB: {
      int rc = r->cb(r->cb_arg, r->got, data, n);
      if (rc) {
        r->local_status = rc < 0 ? rc : -EIO;
        r->local_what = "the caller's sink";
        return 0;
      }
      break;
    }
    case SINK_FD:
      for (size_t done = 0; done < n;) {
        ssize_t w =
            pwrite(r->out_fd, data + done, n - done, (off_t)(r->out_off + r->got + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          r->local_status = w < 0 ? -errno : -EIO;
          r->local_what = "pwrite";
          return 0;
        }
        done += (size_t)w;
      }
      break;
  }
  r->got += n;
  return r->stop_ok ? 0 : size * nmemb;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg) {
  struct s3_req *r = arg;
  size_t want = size * nitems;
  if (want > r->len - r->sent) want = (size_t)(r->len - r->sent);
  if (want == 0) return 0;
  if (r->body == BODY_MEM) {
    memcpy(dst, (const char *)r->mem + r->sent, want);
  } else {
    ssize_t got;
    do got = pread(r->fd, dst, want, (off_t)(r->off + r->sent));
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
      /* 0: the file ends before the range does (truncated under us) */
      r->local_status = got < 0 ? -errno : -EIO;
      r->local_what = "pread";
      return CURL_READFUNC_ABORT;
    }
    want = (size_t)got;
  }
  r->sent += want;
  return want;
}

static int on_seek(void *arg, curl_off_t offset, int origin) {
  struct s3_req *r = arg;
  if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->len)
    return CURL_SEEKFUNC_CANTSEEK;
  r->sent = (uint64_t)offset;
  return CURL_SEEKFUNC_OK;
}

/* ---------------------------------------------------------------- attempts */

static void reset_answer(struct s3_req *r) {
  r->status = 0;
  r->reason[0] = r->etag[0] = 0;
  r->have_length = r->have_crange = r->cr_total_known = 0;
  r->got = r->sent = 0;
  r->local_status = 0;
  r->local_what = NULL;
  r->too_big = r->ignored_range = r->stop_ok = r->bad_range = 0;
  r->body_in.len = 0;
  if (r->body_in.p) r->body_in.p[0] = 0;
  r->body_in.max = r->sink == SINK_XML ? XML_BODY_MAX : ERROR_BODY_MAX;
}

/* Set every option of one attempt; the header list goes to *hdrs (caller frees). */
static int setup(snap_s3 *s3, struct s3_req *r, const char *url,
                 struct curl_slist **hdrs) {
  CURL *c = s3->curl;
  const struct snap_s3_config *cfg = &s3->cfg;
  char line[SNAP_S3_UPLOAD_ID_MAX + 64];
  struct curl_slist *h = NULL, *t;
#define ADD(s)                     \
  do {                             \
    t = curl_slist_append(h, (s)); \
    if (!t) goto nomem;            \
    h = t;                         \
  } while (0)
  ADD("x-amz-content-sha256: UNSIGNED-PAYLOAD");
  if (cfg->session_token[0]) {
    /* The token is long (up to 4 KiB): its own buffer, wiped after use. */
    size_t n = strlen(cfg->session_token) + 32;
    char *tok = malloc(n);
    if (!tok) goto nomem;
    snprintf(tok, n, "x-amz-security-token: %s", cfg->session_token);
    t = curl_slist_append(h, tok);
    explicit_bzero(tok, n);
    free(tok);
    if (!t) goto nomem;
    h = t;
  }
  if (r->cond && r->cond->if_none_match) ADD("If-None-Match: *");
  if (r->if_none_match_etag) {
    snprintf(line, sizeof line, "If-None-Match: %.200s", r->if_none_match_etag);
    ADD(line);
  }
  if (r->cond && r->cond->if_match) {
    snprintf(line, sizeof line, "If-Match: %.200s", r->cond->if_match);
    ADD(line);
  }
  if (r->ranged) {
    if (r->range_len == SNAP_S3_TO_END || r->range_len > UINT64_MAX - r->range_off)
      snprintf(line, sizeof line, "Range: bytes=%llu-", (unsigned long long)r->range_off);
    else
      snprintf(line, sizeof line, "Range: bytes=%llu-%llu",
               (unsigned long long)r->range_off,
               (unsigned long long)(r->range_off + r->range_len - 1));
    ADD(line);
  }
  if (r->content_type) {
    snprintf(line, sizeof line, "Content-Type: %s", r->content_type);
    ADD(line);
  }
#undef ADD
  *hdrs = h;

  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* the path is signed as sent */
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  /* the largest buffers libcurl allows: a 16 KiB receive buffer costs a write
   * callback (and the caller's pwrite) per 16 KiB, which for a 1 GiB body is
   * 65536 system calls of page allocation on a tmpfs */
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s3->curl_error);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s3->sigv4);
  curl_easy_setopt(c, CURLOPT_USERNAME, cfg->access_key);
  curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->secret_key);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
  /* a CompleteMultipartUpload answer may trickle whitespace for minutes while
   * the server assembles the object: only the overall timeout bounds it */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT,
                   r->error_in_200 ? 0L : (long)cfg->low_speed_bytes);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)cfg->low_speed_seconds);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg->tls_insecure ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg->tls_insecure ? 0L : 2L);
  if (cfg->ca_file[0]) curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);

  if (strcmp(r->method, "HEAD") == 0) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (strcmp(r->method, "PUT") == 0) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->len);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, r);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, r);
    /* curl sends "Expect: 100-continue" before every PUT body and waits up to a
     * second for the go-ahead: worth it for a large body the server may refuse
     * (403, 412) unsent, a wasted second when the server does not answer 100 and
     * a round trip for a small body. (Removing the header with "Expect:" is no
     * way out: curl 7.88 signs the empty header it does not send.) */
    if (r->len < EXPECT_MIN) curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
  } else if (strcmp(r->method, "POST") == 0) {
    /* POSTFIELDS are not copied: r->mem outlives the transfer. */
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body == BODY_MEM ? r->mem : "");
  } else if (strcmp(r->method, "GET") != 0) {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
  }
  return 0;
nomem:
  curl_slist_free_all(h);
  *hdrs = NULL;
  return -ENOMEM;
}

/* What S3's own code says about retrying, whatever the HTTP status. */
static int s3_code_transient(const char *code) {
  return strcmp(code, "SlowDown") == 0 || strcmp(code, "InternalError") == 0 ||
         strcmp(code, "RequestTimeout") == 0 || strcmp(code, "ServiceUnavailable") == 0 ||
         strcmp(code, "ConditionalRequestConflict") == 0;
}

static int curl_transient(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: /* also a reset during the handshake */
      return 1;
    default:
      return 0;
  }
}

static int curl_tls(CURLcode rc) {
  return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
         rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
         rc == CURLE_SSL_CIPHER || rc == CURLE_SSL_ISSUER_ERROR;
}

static void backoff(snap_s3 *s3, unsigned attempt) {
  /* Exponential, capped, with "equal jitter": half the delay fixed, half random,
   * so that clients failing together do not retry together. */
  uint64_t d = s3->cfg.retry_base_ms;
  for (unsigned i = 1; i < attempt && d < s3->cfg.retry_max_ms; i++) d *= 2;
  if (d > s3->cfg.retry_max_ms) d = s3->cfg.retry_max_ms;
  uint64_t ms = d / 2 + (uint64_t)rand_r(&s3->rng) % (d / 2 + 1);
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                        .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The outcome of one finished attempt: 0, or a status with err filled;
 * *retry set when another attempt may succeed. */
static int judge(snap_s3 *s3, struct s3_req *r, CURLcode cr, const char *url, int *retry,
                 struct snap_s3_error *err) {
  char where[400];
  s3__where(s3, r->name, where, sizeof where);
  *retry = 0;
  if (r->local_status && strcmp(r->local_what, "pread") == 0)
    return s3__err(err, r->local_status, "%s %s: pread of the source at %llu: %s", r->op,
                   where, (unsigned long long)(r->off + r->sent),
                   r->local_status == -EIO ? "file shorter than the range"
                                           : strerror(-r->local_status));
  if (r->local_status && r->sink == SINK_CB)
    return s3__err(err, r->local_status, "%s %s: %s refused the bytes at %llu: %s", r->op,
                   where, r->local_what, (unsigned long long)r->got,
                   strerror(-r->local_status));
  if (r->local_status)
    return s3__err(err, r->local_status, "%s %s: pwrite of the destination at %llu: %s",
                   r->op, where, (unsigned long long)(r->out_off + r->got),
                   strerror(-r->local_status));
  if (r->too_big && r->sink == SINK_XML)
    return s3__err(err, SNAP_S3_ETOOBIG, "%s %s: answer larger than %u bytes", r->op,
                   where, XML_BODY_MAX);
  if (r->too_big)
    return s3__err(err, SNAP_S3_ETOOBIG, "%s %s: more than the buffer's %zu bytes", r->op,
                   where, r->cap);
  if (r->ignored_range)
    return s3__err(err, SNAP_S3_EPROTO,
                   "%s %s: the server ignored Range (200 instead of 206)", r->op, where);
  if (r->bad_range)
    return s3__err(err, SNAP_S3_EPROTO,
                   "%s %s: 206 whose Content-Range or length is not the range asked for "
                   "(bytes %llu+%llu): nothing past it was written",
                   r->op, where, (unsigned long long)r->range_off,
                   (unsigned long long)r->range_len);
  if (cr != CURLE_OK && !(r->stop_ok && cr == CURLE_WRITE_ERROR)) {
    /* No usable answer: name the endpoint and curl's reason. */
    char ep[300];
    const char *q = strstr(url, "://");
    const char *slash = q ? strchr(q + 3, '/') : NULL;
    snprintf(ep, sizeof ep, "%.*s", slash ? (int)(slash - url) : 250, url);
    *retry = curl_transient(cr);
    int status = curl_tls(cr) ? SNAP_S3_ETLS : *retry ? SNAP_S3_ENET : SNAP_S3_EHTTP;
    return s3__err(err, status, "%s %s: %s: %s (%s)", r->op, where, ep,
                   curl_easy_strerror(cr),
                   s3->curl_error[0] ? s3->curl_error : "no detail");
  }
  long st = r->status;
  char code[64] = "", msg[300] = "";
  int body_error = r->body_in.len && s3__xml_error(r->body_in.p, r->body_in.len, code,
                                                   sizeof code, msg, sizeof msg) == 0;
  if (st >= 200 && st <= 299 && !(r->error_in_200 && body_error)) return 0;
  if (st == 304 && r->if_none_match_etag) {
    s3__err(err, SNAP_S3_ENOTMODIFIED, "%s %s: not modified since %s", r->op, where,
            r->if_none_match_etag);
    if (err) err->http_status = 304;
    return SNAP_S3_ENOTMODIFIED;
  }
  if (st == 416 && r->ranged && r->range_off == 0) return 0; /* an empty object */
  int status;
  if (st >= 200 && st <= 299) { /* an <Error> inside a 200 */
    status = SNAP_S3_ESERVER;
    *retry = s3_code_transient(code);
  } else if (st == 404) {
    status = SNAP_S3_ENOTFOUND;
  } else if (st == 412) {
    status = SNAP_S3_EPRECONDITION;
  } else if (st == 401 || st == 403) {
    status = SNAP_S3_EDENIED;
  } else if (st == 409) {
    status = SNAP_S3_ECONFLICT;
    *retry = s3_code_transient(code);
  } else if (st == 416) {
    status = SNAP_S3_ERANGE;
  } else if (st == 429 || st == 500 || st == 502 || st == 503 || st == 504) {
    status = SNAP_S3_ESERVER;
    *retry = 1;
  } else if (st >= 500) {
    status = SNAP_S3_ESERVER;
  } else {
    status = SNAP_S3_EHTTP;
    *retry = s3_code_transient(code); /* 400 RequestTimeout */
  }
  char who[300] = "";
  if (status == SNAP_S3_EDENIED)
    snprintf(who, sizeof who, " (access key %.64s from %.200s)", s3->cfg.access_key,
             s3->cfg.credentials_from[0] ? s3->cfg.credentials_from : "the caller");
  if (code[0])
    s3__err(err, status, "%s %s: %ld %s: %s%s", r->op, where, st, code,
            msg[0] ? msg : "(no message)", who);
  else
    s3__err(err, status, "%s %s: %ld %s%s", r->op, where, st,
            r->reason[0] ? r->reason : "(no reason)", who);
  if (err) {
    err->http_status = (int)st;
    snprintf(err->s3_code, sizeof err->s3_code, "%s", code);
  }
  return status;
}

int s3__perform(snap_s3 *s3, struct s3_req *r, struct snap_s3_error *err) {
  char *url = malloc(S3_URL_MAX);
  if (!url) return s3__err(err, -ENOMEM, "%s: out of memory", r->op);
  int rc;
  if (s3__url(&s3->cfg, r->name, r->query ? r->query : "", url, S3_URL_MAX) != 0) {
    rc = s3__err(err, SNAP_S3_EINVAL, "%s s3://%s/%.300s: URL too long", r->op,
                 s3->cfg.bucket, r->name ? r->name : "");
    goto out;
  }
  for (unsigned attempt = 1;; attempt++) {
    reset_answer(r);
    s3->curl_error[0] = 0;
    struct curl_slist *hdrs = NULL;
    if (setup(s3, r, url, &hdrs) != 0) {
      rc = s3__err(err, -ENOMEM, "%s: out of memory", r->op);
      break;
    }
    CURLcode cr = curl_easy_perform(s3->curl);
    /* The handle keeps a pointer to the header list until the next reset:
     * drop it, then wipe every line (one holds the session token) before the
     * list is freed. libcurl's own copies (the password, the signing key, its
     * request buffer) are freed by libcurl without being wiped (docs/s3.md). */
    curl_easy_setopt(s3->curl, CURLOPT_HTTPHEADER, NULL);
    for (struct curl_slist *l = hdrs; l; l = l->next)
      explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(hdrs);
    int retry;
    rc = judge(s3, r, cr, url, &retry, err);
    if (err) err->attempts = attempt;
    if (rc == 0 || !retry || attempt >= s3->cfg.max_attempts) {
      if (rc != 0 && attempt > 1 && err) {
        size_t n = strlen(err->message);
        snprintf(err->message + n, sizeof err->message - n, ", %u attempts", attempt);
      }
      break;
    }
    backoff(s3, attempt);
  }
  if (rc != 0) s3__err_mask(err, &s3->cfg);
out:
  free(url);
  return rc;
}

void s3__req_done(struct s3_req *r) {
  /* an error body may quote the request back (AWS's SignatureDoesNotMatch
   * carries the canonical request, with the session token) */
  if (r->body_in.p) explicit_bzero(r->body_in.p, r->body_in.cap);
  free(r->body_in.p);
  r->body_in.p = NULL;
  r->body_in.len = r->body_in.cap = 0;
}
