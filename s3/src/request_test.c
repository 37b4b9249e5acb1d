/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snap_s3's requests against a scripted fake server on loopback: what is sent
 * (headers, canonical queries, no secret), which answers are retried and which
 * are final, how many attempts each takes, and answers a real server rarely
 * gives (an ignored Range, a wrong Content-Range, an <Error> inside a 200, a
 * connection closed without an answer, a secret echoed back). No sleeps: the
 * fake answers one scripted reply per connection, and the client's backoff is
 * 1 ms.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "snap_s3/s3.h"
#include "test_util.h"

#define CLOSE_NOW "" /* a reply that closes the connection without answering */

struct fake {
  int lfd, port;
  const char *const *replies; /* one per connection, NULL-terminated */
  int served;                 /* connections answered */
  char request[16384];        /* the last request: line, headers, body */
  pthread_t thread;
};

static void *fake_main(void *arg) {
  struct fake *f = arg;
  for (const char *const *r = f->replies; *r; r++) {
    int c = accept(f->lfd, NULL, NULL);
    if (c < 0) break;
    size_t n = 0;
    char *end = NULL;
    /* headers, then the body Content-Length announces */
    while (n < sizeof f->request - 1) {
      ssize_t k = recv(c, f->request + n, sizeof f->request - 1 - n, 0);
      if (k <= 0) break;
      n += (size_t)k;
      f->request[n] = 0;
      if (!end) end = strstr(f->request, "\r\n\r\n");
      if (end) {
        const char *cl = strcasestr(f->request, "\r\nContent-Length:");
        size_t want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        if (n >= (size_t)(end + 4 - f->request) + want) break;
      }
    }
    if (**r) send(c, *r, strlen(*r), MSG_NOSIGNAL);
    close(c);
    f->served++;
  }
  return NULL;
}

static void fake_start(struct fake *f, const char *const *replies) {
  memset(f, 0, sizeof *f);
  f->replies = replies;
  f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  CU_ASSERT_FATAL(f->lfd >= 0 && bind(f->lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
                  listen(f->lfd, 8) == 0 &&
                  getsockname(f->lfd, (struct sockaddr *)&a, &len) == 0);
  f->port = ntohs(a.sin_port);
  CU_ASSERT_FATAL(pthread_create(&f->thread, NULL, fake_main, f) == 0);
}

/* After the call under test: every scripted reply was used (a client that sent
 * fewer requests would leave the thread in accept: shut the socket down). */
static int fake_stop(struct fake *f) {
  shutdown(f->lfd, SHUT_RDWR);
  pthread_join(f->thread, NULL);
  close(f->lfd);
  return f->served;
}

static snap_s3 *client_of(const struct fake *f, const char *token) {
  struct snap_s3_config c;
  struct snap_s3_error e;
  snap_s3 *s3 = NULL;
  snap_s3_config_init(&c);
  snap_s3_config_set_url(&c, "s3://bkt/p", NULL);
  snprintf(c.endpoint, sizeof c.endpoint, "http://127.0.0.1:%d", f->port);
  strcpy(c.access_key, "AKIDFAKE");
  strcpy(c.secret_key, "SECRETfake0123456789");
  if (token) strcpy(c.session_token, token);
  strcpy(c.credentials_from, "test");
  c.max_attempts = 3;
  c.retry_base_ms = 1;
  c.low_speed_bytes = 1;
  c.low_speed_seconds = 5;
  CU_ASSERT_EQUAL(snap_s3_create(&c, &s3, &e), 0);
  return s3;
}

/* A reply with its Content-Length, closing the connection; malloc'd. */
static char *http(const char *status, const char *headers, const char *body) {
  char *r = NULL;
  if (asprintf(&r, "HTTP/1.1 %s\r\n%sConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
               status, headers, strlen(body), body) < 0)
    abort();
  return r;
}

/* An S3 error reply. */
static char *error_reply(const char *status, const char *code, const char *msg) {
  char body[512];
  snprintf(body, sizeof body,
           "<?xml version=\"1.0\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>",
           code, msg);
  return http(status, "Content-Type: application/xml\r\n", body);
}

/* Run one snap_s3_put against replies; the status, attempts and requests seen. */
static int put_against(const char *const *replies, const struct snap_s3_cond *cond,
                       struct snap_s3_error *e, int *served, struct fake *f) {
  fake_start(f, replies);
  snap_s3 *s3 = client_of(f, NULL);
  int rc = snap_s3_put(s3, "k", "body", 4, cond, NULL, e);
  snap_s3_destroy(s3);
  *served = fake_stop(f);
  return rc;
}

static void test_transient_then_success(void) {
  char *slow =
      error_reply("503 Slow Down", "SlowDown", "Please reduce your request rate.");
  char *tooMany = error_reply("429 Too Many Requests", "TooManyRequests", "m");
  char *empty = http("200 OK", "ETag: \"e1\"\r\n", "");
  const char *const replies[] = {slow, CLOSE_NOW, tooMany, NULL};
  const char *const ok[] = {slow, CLOSE_NOW, empty, NULL};
  struct fake f;
  struct snap_s3_error e;
  int served;
  /* 503 SlowDown, a connection closed unanswered, then 200: success on the third */
  CU_ASSERT_EQUAL(put_against(ok, NULL, &e, &served, &f), 0);
  CU_ASSERT_EQUAL(served, 3);
  /* the third request carried the whole body again */
  const char *body = strstr(f.request, "\r\n\r\n");
  CU_ASSERT(body && strcmp(body + 4, "body") == 0);
  /* the same from a file: each retry reads it again from its offset */
  FILE *tf = tmpfile();
  CU_ASSERT_PTR_NOT_NULL_FATAL(tf);
  CU_ASSERT_EQUAL(pwrite(fileno(tf), "xx0123456789", 12, 0), 12);
  fake_start(&f, ok);
  snap_s3 *s3 = client_of(&f, NULL);
  CU_ASSERT_EQUAL(snap_s3_put_fd(s3, "k", fileno(tf), 2, 10, NULL, NULL, &e), 0);
  snap_s3_destroy(s3);
  CU_ASSERT_EQUAL(fake_stop(&f), 3);
  body = strstr(f.request, "\r\n\r\n");
  CU_ASSERT(body && strcmp(body + 4, "0123456789") == 0);
  fclose(tf);
  /* three transient failures in a row: given up after max_attempts (3) */
  CU_ASSERT_EQUAL(put_against(replies, NULL, &e, &served, &f), SNAP_S3_ESERVER);
  CU_ASSERT_EQUAL(served, 3);
  CU_ASSERT_EQUAL(e.attempts, 3);
  CU_ASSERT_EQUAL(e.http_status, 429);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "PUT s3://bkt/p/k: 429 TooManyRequests: m"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "3 attempts"));
  free(slow);
  free(tooMany);
  free(empty);
}

static void test_final_answers_not_retried(void) {
  static const struct {
    const char *status, *code;
    int want;
  } cases[] = {{"403 Forbidden", "AccessDenied", SNAP_S3_EDENIED},
               {"404 Not Found", "NoSuchBucket", SNAP_S3_ENOTFOUND},
               {"412 Precondition Failed", "PreconditionFailed", SNAP_S3_EPRECONDITION},
               {"400 Bad Request", "InvalidArgument", SNAP_S3_EHTTP},
               {"409 Conflict", "BucketNotEmpty", SNAP_S3_ECONFLICT},
               {"501 Not Implemented", "NotImplemented", SNAP_S3_ESERVER}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *r = error_reply(cases[i].status, cases[i].code, "no");
    const char *const replies[] = {r, NULL};
    struct fake f;
    struct snap_s3_error e;
    int served;
    CU_ASSERT_EQUAL(put_against(replies, NULL, &e, &served, &f), cases[i].want);
    CU_ASSERT_EQUAL(served, 1);
    CU_ASSERT_EQUAL(e.attempts, 1);
    CU_ASSERT_STRING_EQUAL(e.s3_code, cases[i].code);
    CU_ASSERT_PTR_NULL(strstr(e.message, "attempts"));
    free(r);
  }
  /* 409 ConditionalRequestConflict (a concurrent conditional write) is retried */
  char *conflict = error_reply("409 Conflict", "ConditionalRequestConflict", "retry");
  char *failed = error_reply("412 Precondition Failed", "PreconditionFailed", "no");
  const char *const replies[] = {conflict, failed, NULL};
  struct snap_s3_cond create = {.if_none_match = 1};
  struct fake f;
  struct snap_s3_error e;
  int served;
  CU_ASSERT_EQUAL(put_against(replies, &create, &e, &served, &f), SNAP_S3_EPRECONDITION);
  CU_ASSERT_EQUAL(served, 2);
  CU_ASSERT_EQUAL(e.attempts, 2); /* the caller can tell the 412 may be its own */
  free(conflict);
  free(failed);
}

static void test_what_is_sent(void) {
  char *empty = http("200 OK", "ETag: \"e1\"\r\n", "");
  const char *const replies[] = {empty, NULL};
  struct fake f;
  fake_start(&f, replies);
  snap_s3 *s3 = client_of(&f, "TOKENfake9876543210");
  struct snap_s3_cond create = {.if_none_match = 1};
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(snap_s3_put(s3, "dir/a b", "body", 4, &create, NULL, &e), 0);
  snap_s3_destroy(s3);
  CU_ASSERT_EQUAL(fake_stop(&f), 1);
  const char *q = f.request;
  CU_ASSERT(strncmp(q, "PUT /bkt/p/dir/a%20b HTTP/1.1\r\n", 31) == 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(q, "\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(q, "\r\nx-amz-security-token: TOKENfake9876543210\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(q, "\r\nIf-None-Match: *\r\n"));
  CU_ASSERT_PTR_NOT_NULL(
      strstr(q, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDFAKE/"));
  CU_ASSERT_PTR_NOT_NULL(strstr(q, "/us-east-1/s3/aws4_request, SignedHeaders="));
  /* the token and the condition are signed, not merely sent */
  CU_ASSERT_PTR_NOT_NULL(strstr(q, "if-none-match;"));
  CU_ASSERT_PTR_NOT_NULL(strstr(q, ";x-amz-security-token,"));
  CU_ASSERT_PTR_NULL(strstr(q, "SECRETfake"));
  CU_ASSERT(strlen(q) > 4 && strcmp(q + strlen(q) - 4, "body") == 0);
  free(empty);
}

static void test_canonical_queries(void) {
  char *list_reply = http("200 OK", "",
                          "<ListBucketResult><IsTruncated>false</IsTruncated><Contents>"
                          "<Key>p/x/1</Key><Size>3</Size></Contents></ListBucketResult>");
  const char *const replies[] = {list_reply, NULL};
  struct fake f;
  fake_start(&f, replies);
  snap_s3 *s3 = client_of(&f, NULL);
  struct snap_s3_list l;
  struct snap_s3_error e;
  /* sorted by name, every value encoded ('/' too): curl 7.88 signs it as written */
  CU_ASSERT_EQUAL(snap_s3_list(s3, "x/", "a/b=c", 5, &l, &e), 0);
  CU_ASSERT_EQUAL(l.count, 1);
  if (l.count) CU_ASSERT_STRING_EQUAL(l.entries[0].key, "x/1");
  snap_s3_list_free(&l);
  snap_s3_destroy(s3);
  fake_stop(&f);
  CU_ASSERT(strncmp(f.request,
                    "GET /bkt/?continuation-token=a%2Fb%3Dc&list-type=2&max-keys=5&"
                    "prefix=p%2Fx%2F HTTP/1.1\r\n",
                    83) == 0);

  char *create_reply = http("200 OK", "",
                            "<InitiateMultipartUploadResult><UploadId>u/1+2</UploadId>"
                            "</InitiateMultipartUploadResult>");
  char *empty = http("204 No Content", "", "");
  const char *const replies2[] = {create_reply, empty, NULL};
  fake_start(&f, replies2);
  s3 = client_of(&f, NULL);
  char id[SNAP_S3_UPLOAD_ID_MAX];
  CU_ASSERT_EQUAL(snap_s3_multipart_create(s3, "k", id, &e), 0);
  CU_ASSERT_STRING_EQUAL(id, "u/1+2");
  CU_ASSERT_EQUAL(snap_s3_multipart_abort(s3, "k", id, &e), 0);
  snap_s3_destroy(s3);
  fake_stop(&f);
  CU_ASSERT(strncmp(f.request, "DELETE /bkt/p/k?uploadId=u%2F1%2B2 HTTP/1.1\r\n", 45) ==
            0);
  free(list_reply);
  free(create_reply);
  free(empty);
}

static void test_odd_answers(void) {
  struct fake f;
  struct snap_s3_error e;
  char buf[64];
  size_t got;
  /* Range ignored: a 200 with the whole object to a request from offset 5 */
  char *whole = http("200 OK", "", "0123456789");
  const char *const r1[] = {whole, NULL};
  fake_start(&f, r1);
  snap_s3 *s3 = client_of(&f, NULL);
  CU_ASSERT_EQUAL(snap_s3_get(s3, "k", 5, 2, buf, sizeof buf, &got, NULL, &e),
                  SNAP_S3_EPROTO);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "ignored Range"));
  snap_s3_destroy(s3);
  CU_ASSERT_EQUAL(fake_stop(&f), 1);
  /* ... from offset 0 the bytes are right: keep what was asked for */
  const char *const r2[] = {whole, NULL};
  fake_start(&f, r2);
  s3 = client_of(&f, NULL);
  CU_ASSERT_EQUAL(snap_s3_get(s3, "k", 0, 4, buf, sizeof buf, &got, NULL, &e), 0);
  CU_ASSERT_EQUAL(got, 4);
  CU_ASSERT_EQUAL(memcmp(buf, "0123", 4), 0);
  snap_s3_destroy(s3);
  fake_stop(&f);
  /* a 206 for other bytes than those asked for */
  char *wrong = http("206 Partial Content", "Content-Range: bytes 0-1/10\r\n", "01");
  const char *const r3[] = {wrong, NULL};
  fake_start(&f, r3);
  s3 = client_of(&f, NULL);
  CU_ASSERT_EQUAL(snap_s3_get(s3, "k", 5, 2, buf, sizeof buf, &got, NULL, &e),
                  SNAP_S3_EPROTO);
  snap_s3_destroy(s3);
  fake_stop(&f);
  /* an <Error> inside a 200 (CompleteMultipartUpload): retried, then the result */
  char *err200 = http(
      "200 OK", "", "<Error><Code>InternalError</Code><Message>later</Message></Error>");
  char *done = http("200 OK", "",
                    "<CompleteMultipartUploadResult><ETag>&quot;abc-1&quot;</ETag>"
                    "</CompleteMultipartUploadResult>");
  const char *const r4[] = {err200, done, NULL};
  fake_start(&f, r4);
  s3 = client_of(&f, NULL);
  struct snap_s3_part part = {.number = 1, .size = 3, .etag = "\"p1\""};
  struct snap_s3_object out;
  CU_ASSERT_EQUAL(snap_s3_multipart_complete(s3, "k", "up1", &part, 1, NULL, &out, &e),
                  0);
  CU_ASSERT_STRING_EQUAL(out.etag, "\"abc-1\"");
  CU_ASSERT_EQUAL(out.size, 3);
  snap_s3_destroy(s3);
  CU_ASSERT_EQUAL(fake_stop(&f), 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(
      f.request, "<Part><PartNumber>1</PartNumber><ETag>&quot;p1&quot;</ETag></Part>"));
  /* a HEAD answer has no body: the status line's reason is the message */
  char *gone = http("404 Not Found", "", "");
  const char *const r5[] = {gone, NULL};
  fake_start(&f, r5);
  s3 = client_of(&f, NULL);
  CU_ASSERT_EQUAL(snap_s3_head(s3, "k", &out, &e), SNAP_S3_ENOTFOUND);
  CU_ASSERT_STRING_EQUAL(e.message, "HEAD s3://bkt/p/k: 404 Not Found");
  CU_ASSERT_EQUAL(e.http_status, 404);
  snap_s3_destroy(s3);
  fake_stop(&f);
  free(gone);
  free(whole);
  free(wrong);
  free(err200);
  free(done);
}

/* A 206 that strays from the range asked for writes nothing into the file:
 * neither other bytes (a wider Content-Range) nor more bytes than it says. */
static void test_stray_206_writes_nothing(void) {
  char body[101];
  memset(body, 'y', 100);
  body[100] = 0;
  char *wider =
      http("206 Partial Content", "Content-Range: bytes 100-199/1000\r\n", body);
  char *longer =
      http("206 Partial Content", "Content-Range: bytes 100-109/1000\r\n", body);
  char *const replies[] = {wider, longer};
  for (int i = 0; i < 2; i++) {
    FILE *tf = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(tf);
    int fd = fileno(tf);
    char x[300];
    memset(x, 'x', sizeof x);
    CU_ASSERT_EQUAL(pwrite(fd, x, sizeof x, 0), (ssize_t)sizeof x);
    struct fake f;
    const char *const r[] = {replies[i], NULL};
    fake_start(&f, r);
    snap_s3 *s3 = client_of(&f, NULL);
    struct snap_s3_error e;
    uint64_t got = 0;
    CU_ASSERT_EQUAL(snap_s3_get_fd(s3, "k", 100, 10, fd, 50, &got, NULL, &e),
                    SNAP_S3_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "not the range asked for"));
    snap_s3_destroy(s3);
    fake_stop(&f);
    char back[300];
    CU_ASSERT_EQUAL(pread(fd, back, sizeof back, 0), (ssize_t)sizeof back);
    CU_ASSERT_EQUAL(memcmp(back, x, sizeof x), 0); /* not one byte written */
    fclose(tf);
  }
  free(wider);
  free(longer);
}

static void test_secret_echoed_is_masked(void) {
  /* A server that quotes the token or the secret back never gets them logged. */
  char *r = error_reply("400 Bad Request", "InvalidToken",
                        "token TOKENfake9876543210 or SECRETfake0123456789 is bad");
  const char *const replies[] = {r, NULL};
  struct fake f;
  fake_start(&f, replies);
  snap_s3 *s3 = client_of(&f, "TOKENfake9876543210");
  struct snap_s3_error e;
  CU_ASSERT_EQUAL(snap_s3_delete(s3, "k", &e), SNAP_S3_EHTTP);
  CU_ASSERT_PTR_NULL(strstr(e.message, "TOKENfake"));
  CU_ASSERT_PTR_NULL(strstr(e.message, "SECRETfake"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "token *** or *** is bad"));
  snap_s3_destroy(s3);
  fake_stop(&f);
  free(r);
  /* a token of stars, echoed: masked once per occurrence (this looped forever
   * when the search restarted at the stars it had just written) */
  r = error_reply("400 Bad Request", "InvalidToken", "token ** is bad");
  const char *const again[] = {r, NULL};
  fake_start(&f, again);
  s3 = client_of(&f, "**");
  CU_ASSERT_EQUAL(snap_s3_delete(s3, "k", &e), SNAP_S3_EHTTP);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "token ** is bad"));
  snap_s3_destroy(s3);
  fake_stop(&f);
  free(r);
}

int main(void) {
  static const tu_test tests[] = {
      {"transient_then_success", test_transient_then_success},
      {"final_answers_not_retried", test_final_answers_not_retried},
      {"what_is_sent", test_what_is_sent},
      {"canonical_queries", test_canonical_queries},
      {"odd_answers", test_odd_answers},
      {"secret_echoed_is_masked", test_secret_echoed_is_masked},
      {"stray_206_writes_nothing", test_stray_206_writes_nothing},
      {NULL, NULL}};
  return tu_run("s3_request", tests);
}
