/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snap_s3: a small client for S3-compatible object stores, over libcurl.
 *
 * It does what a host that follows another through a bucket needs and no more:
 * objects put from memory or from a file range, conditional puts (create only,
 * replace only a known version), whole or ranged gets into memory or into a file
 * at an offset, head, delete, ListObjectsV2 one page at a time, and multipart
 * uploads from file ranges. Requests are signed with AWS Signature Version 4
 * (libcurl's CURLOPT_AWS_SIGV4); bodies are sent as UNSIGNED-PAYLOAD, so a body
 * is streamed once and never hashed by this library (TLS protects it on the wire;
 * the caller's own checksums end to end).
 *
 * Conventions used by every call below:
 *  - Status: 0 is success, -errno a local operating-system failure (reading or
 *    writing the caller's file, -ENOMEM), and the SNAP_S3_E* codes (-2001 and
 *    below) everything else; snap_s3_strerror() names any of them.
 *  - Every call that can fail takes an optional caller-owned struct
 *    snap_s3_error, filled only on failure; pass NULL when it is not wanted.
 *    Its message is one line naming the operation, the object and the cause:
 *      "PUT s3://bucket/prefix/x: 403 SignatureDoesNotMatch: The request ..."
 *      "GET s3://bucket/prefix/x: http://127.0.0.1:9: Couldn't connect to
 *       server (...), 5 attempts"
 *    No message ever contains the secret access key or the session token.
 *  - Keys are relative to the configured prefix: with "s3://b/data/", key "v/1"
 *    is the object "data/v/1" of bucket "b". A key is 1..1024 bytes of UTF-8
 *    without control characters, does not start with '/', and has no empty, "."
 *    or ".." segment (such keys are legal S3 but not portable across servers).
 *  - ETags are kept exactly as the server sent them, quotes included
 *    ("\"9b2cf535f27731c974343645a3985328\""), which is the form If-Match wants.
 *  - Transient failures are retried with exponential backoff and jitter:
 *    connection refused or reset, timeouts, HTTP 500/502/503/504, 429, and the
 *    S3 codes SlowDown, InternalError, RequestTimeout and
 *    ConditionalRequestConflict. Other 4xx answers (403, 404, 412, ...) are
 *    final at once. err->attempts says how many requests were sent.
 *  - A retried request may repeat one whose answer was lost: a conditional PUT
 *    whose first attempt succeeded but whose response never arrived gets 412 on
 *    the retry, and a completed multipart upload retried gets 404 NoSuchUpload.
 *    err->attempts > 1 says the answer may be ambiguous, but attempts == 1 does
 *    not prove it is not: libcurl itself resends a request once when a reused
 *    connection turns out dead. A caller that must know (the announcement of a
 *    push) reads the object back and compares it with what it sent.
 *
 * Threads: a snap_s3 handle holds one libcurl easy handle (and its connection
 * cache) and is used by one thread at a time. Threads that transfer in parallel
 * each create their own handle from the same configuration; handles share
 * nothing. The functions that take only a configuration are thread-safe.
 * The library calls curl_global_init() once (thread-safely) and never
 * curl_global_cleanup().
 */
#ifndef SNAP_S3_H
#define SNAP_S3_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/** The library's error table: X(NAME, code, default message). */
#define SNAP_S3_ERROR_MAP(X)                                                    \
  X(INVAL, -2001, "invalid argument, URL or key")                               \
  X(CONFIG, -2002, "incomplete configuration or credentials")                   \
  X(NOTFOUND, -2003, "no such key, bucket or upload (404)")                     \
  X(PRECONDITION, -2004, "precondition failed (412): object exists or changed") \
  X(DENIED, -2005, "access denied or bad signature (401/403)")                  \
  X(CONFLICT, -2006, "conflicting operation (409)")                             \
  X(RANGE, -2007, "range not satisfiable (416)")                                \
  X(TOOBIG, -2008, "object or range larger than the buffer")                    \
  X(SERVER, -2009, "server error or throttling, retries exhausted")             \
  X(HTTP, -2010, "unexpected HTTP status")                                      \
  X(NET, -2011, "connection failed or timed out, retries exhausted")            \
  X(TLS, -2012, "TLS handshake or certificate verification failed")             \
  X(PROTO, -2013, "malformed or unexpected response")                           \
  X(NOTMODIFIED, -2014, "not modified since the ETag given (304)")

/** The library's own status codes (see SNAP_S3_ERROR_MAP). */
enum snap_s3_status {
#define SNAP_S3_X_ENUM(name, code, msg) SNAP_S3_E##name = (code),
  SNAP_S3_ERROR_MAP(SNAP_S3_X_ENUM)
#undef SNAP_S3_X_ENUM
};

/** Caller-owned error detail, filled only when a call fails. */
struct snap_s3_error {
  int code;          /**< the status the call returned */
  int http_status;   /**< the last HTTP status received, 0 if none */
  unsigned attempts; /**< requests sent, retries included (0: failed before) */
  char s3_code[64];  /**< the S3 error code of the last answer ("NoSuchKey"), or "" */
  char message[512]; /**< one line, see the conventions above */
};

/**
 * @return a static message for any status this library returns ("success" for
 *         0, strerror text for -errno). Thread-safe.
 */
const char *snap_s3_strerror(int status);

/* ----------------------------------------------------------- configuration */

/** How a bucket appears in request URLs. */
enum snap_s3_addressing {
  SNAP_S3_ADDRESSING_AUTO = 0, /**< path-style for a custom endpoint or a bucket
                                    name with dots, virtual-hosted otherwise */
  SNAP_S3_ADDRESSING_PATH,     /**< ENDPOINT/BUCKET/KEY */
  SNAP_S3_ADDRESSING_VIRTUAL,  /**< scheme://BUCKET.HOST/KEY */
};

/**
 * Everything a client needs, by value: no pointer in it, so it may be copied,
 * and nothing in it needs freeing. It holds secrets: snap_s3_config_clear()
 * wipes them once the caller is done with it (a client keeps its own copy).
 */
struct snap_s3_config {
  char bucket[64];             /**< 3..63 characters: a-z 0-9 . - */
  char prefix[1024];           /**< "" or ends with '/': prepended to every key */
  char region[64];             /**< signing region, "us-east-1" by default */
  char endpoint[256];          /**< "http[s]://host[:port]", no path; "" for AWS:
                                    "https://s3.REGION.amazonaws.com" */
  char access_key[128];        /**< AWS_ACCESS_KEY_ID: appears in messages */
  char secret_key[256];        /**< never in a message */
  char session_token[4096];    /**< "" when none; never in a message */
  char credentials_from[320];  /**< where the keys came from, for messages:
                                    "environment", "/root/.aws/credentials [ci]" */
  char ca_file[1024];          /**< CA bundle to verify with, "" for the system's */
  int addressing;              /**< enum snap_s3_addressing */
  int tls_insecure;            /**< 1: do not verify the server's certificate. Tests
                                    only; never set from the environment. */
  unsigned max_attempts;       /**< requests per call, first included (default 5) */
  unsigned retry_base_ms;      /**< first backoff (default 100); doubles each retry */
  unsigned retry_max_ms;       /**< cap of one backoff (default 5000) */
  unsigned connect_timeout_ms; /**< per connection attempt (default 5000) */
  unsigned low_speed_bytes;    /**< a transfer slower than this many bytes/s ... */
  unsigned low_speed_seconds;  /**< ... for this long is aborted and retried
                                    (defaults 1024 and 30; 0 and 0: no limit): a
                                    stopped server cannot hang a call forever */
  unsigned timeout_ms;         /**< whole-request cap per attempt, 0 for none (default) */
};

/** Fill @p cfg with the defaults above and empty strings. Never fails. */
void snap_s3_config_init(struct snap_s3_config *cfg);

/**
 * Parse "s3://BUCKET[/PREFIX]" into cfg->bucket and cfg->prefix ('/' appended to
 * a non-empty prefix). Leaves the other fields alone.
 * @return 0 or SNAP_S3_EINVAL (bad scheme, bucket name or prefix).
 */
int snap_s3_config_set_url(struct snap_s3_config *cfg, const char *url,
                           struct snap_s3_error *err);

/**
 * snap_s3_config_init(), snap_s3_config_set_url(), then, from the environment:
 *  - credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (both or neither),
 *    with AWS_SESSION_TOKEN; else the profile $AWS_PROFILE (or "default") of the
 *    shared credentials file $AWS_SHARED_CREDENTIALS_FILE (or
 *    $HOME/.aws/credentials): aws_access_key_id, aws_secret_access_key,
 *    aws_session_token;
 *  - region: AWS_REGION, else AWS_DEFAULT_REGION, else "us-east-1";
 *  - endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else
 *    "https://s3.REGION.amazonaws.com";
 *  - addressing: AWS_S3_ADDRESSING_STYLE = path | virtual | auto (default auto);
 *  - CA bundle: AWS_CA_BUNDLE. Certificates are always verified.
 * Reads the environment and files only; no network. Thread-safe as far as
 * getenv() is (no thread may change the environment meanwhile).
 * @return 0, SNAP_S3_EINVAL (URL, or a malformed variable: the message names
 *         it), or SNAP_S3_ECONFIG (no credentials, half of a key pair, profile
 *         missing from the file, a value too long). On failure the secrets
 *         already read are wiped.
 */
int snap_s3_config_from_env(struct snap_s3_config *cfg, const char *url,
                            struct snap_s3_error *err);

/** Wipe the secrets of @p cfg (explicit_bzero). NULL is a no-op. */
void snap_s3_config_clear(struct snap_s3_config *cfg);

/**
 * The URL a request for @p key goes to (NULL or "" for the bucket itself),
 * percent-encoded as it is signed, e.g. "http://127.0.0.1:8333/b/p/a%20b" or
 * "https://b.s3.eu-west-1.amazonaws.com/p/a%20b". Thread-safe.
 * @return 0, SNAP_S3_EINVAL (bad key, bucket, endpoint) or SNAP_S3_ETOOBIG
 *         (@p cap too small).
 */
int snap_s3_config_url(const struct snap_s3_config *cfg, const char *key, char *buf,
                       size_t cap, struct snap_s3_error *err);

/* ------------------------------------------------------------------ client */

typedef struct snap_s3 snap_s3;

/**
 * A client for @p cfg (copied: the caller may clear or reuse it at once).
 * Checks the configuration and makes the curl handle; connects to nothing.
 * @return 0 (*out set; snap_s3_destroy() it), SNAP_S3_EINVAL, SNAP_S3_ECONFIG
 *         (no credentials) or -ENOMEM; on failure *out is NULL.
 */
int snap_s3_create(const struct snap_s3_config *cfg, snap_s3 **out,
                   struct snap_s3_error *err);

/** Close the connections, wipe the secrets, free. NULL is a no-op. */
void snap_s3_destroy(snap_s3 *s3);

/** Size and version of an object. */
struct snap_s3_object {
  uint64_t size;  /**< bytes of the whole object */
  char etag[128]; /**< as sent by the server, quotes included; "" if it sent none */
};

/** Conditions of a write (PUT or multipart complete); NULL means none. */
struct snap_s3_cond {
  int if_none_match;    /**< 1: create only: fail if the key exists */
  const char *if_match; /**< an ETag: replace only that version (fail if the key
                             is missing or holds another version); NULL: none */
};

/**
 * Create the configured bucket (PUT Bucket, with a LocationConstraint outside
 * us-east-1). A bucket that already exists and is ours is success.
 * @return 0 or a request status (the conventions above).
 */
int snap_s3_bucket_create(snap_s3 *s3, struct snap_s3_error *err);

/**
 * PUT @p len bytes at @p buf as @p key. @p out (may be NULL) receives the new
 * ETag and the size.
 * @return 0, SNAP_S3_EPRECONDITION (a condition of @p cond failed), or another
 *         request status.
 */
int snap_s3_put(snap_s3 *s3, const char *key, const void *buf, size_t len,
                const struct snap_s3_cond *cond, struct snap_s3_object *out,
                struct snap_s3_error *err);

/**
 * PUT @p length bytes of @p fd from @p offset as @p key, read with pread() as
 * they are sent (never all in memory; retries read again). @p fd's file offset
 * is not used or changed. As snap_s3_put() otherwise; -errno when pread fails,
 * -EIO when the file ends before offset + length.
 */
int snap_s3_put_fd(snap_s3 *s3, const char *key, int fd, uint64_t offset, uint64_t length,
                   const struct snap_s3_cond *cond, struct snap_s3_object *out,
                   struct snap_s3_error *err);

/** "To the end of the object" as a length for the GET calls. */
#define SNAP_S3_TO_END UINT64_MAX

/**
 * GET bytes [offset, offset + length) of @p key (clamped to the object's end;
 * offset 0 and SNAP_S3_TO_END: the whole object) into @p buf of @p cap bytes.
 * *got receives the bytes written; @p info (may be NULL) the object's total size
 * and ETag. A retry starts the range again from its first byte.
 * @return 0, SNAP_S3_ENOTFOUND, SNAP_S3_ERANGE (offset at or past the end of a
 *         non-empty object), SNAP_S3_ETOOBIG (more than @p cap bytes: nothing
 *         useful is in @p buf, but @p info holds the size when the server sent
 *         it), or another request status.
 */
int snap_s3_get(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length, void *buf,
                size_t cap, size_t *got, struct snap_s3_object *info,
                struct snap_s3_error *err);

/**
 * GET the whole of @p key into @p buf unless its ETag is still @p etag (a poll:
 * If-None-Match, answered 304 without a body).
 * @return as snap_s3_get(), or SNAP_S3_ENOTMODIFIED: the object is unchanged,
 *         nothing was read (*got 0, @p info untouched). @p etag NULL or "" is a
 *         plain GET.
 */
int snap_s3_get_changed(snap_s3 *s3, const char *key, const char *etag, void *buf,
                        size_t cap, size_t *got, struct snap_s3_object *info,
                        struct snap_s3_error *err);

/**
 * As snap_s3_get(), but written into @p fd with pwrite() at @p fd_offset, the
 * first byte of the range at @p fd_offset (the file is not truncated or
 * extended beyond what is written; @p fd's file offset is not used). A retry
 * writes the same positions again.
 * @return as snap_s3_get() (no SNAP_S3_ETOOBIG), or -errno when pwrite fails.
 */
int snap_s3_get_fd(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length, int fd,
                   uint64_t fd_offset, uint64_t *got, struct snap_s3_object *info,
                   struct snap_s3_error *err);

/**
 * Where snap_s3_get_cb() hands a GET's body: @p len bytes at @p pos from the
 * range's first byte, in order. A retry starts again at @p pos 0 (undo what
 * the earlier attempt gave). Return 0 to go on, or a negative errno to stop
 * the request with that status (not retried).
 */
typedef int (*snap_s3_sink)(void *arg, uint64_t pos, const void *data, size_t len);

/**
 * As snap_s3_get(), but the body goes to @p sink as it arrives (no buffer of
 * the whole range): for a caller that checks or places it piece by piece.
 * @return as snap_s3_get() (no SNAP_S3_ETOOBIG), or the sink's status.
 */
int snap_s3_get_cb(snap_s3 *s3, const char *key, uint64_t offset, uint64_t length,
                   snap_s3_sink sink, void *arg, uint64_t *got,
                   struct snap_s3_object *info, struct snap_s3_error *err);

/**
 * HEAD @p key: its size and ETag into @p out.
 * @return 0, SNAP_S3_ENOTFOUND, or another request status.
 */
int snap_s3_head(snap_s3 *s3, const char *key, struct snap_s3_object *out,
                 struct snap_s3_error *err);

/**
 * DELETE @p key. Deleting a missing key is success (S3 answers 204 either way).
 * @return 0 or a request status.
 */
int snap_s3_delete(snap_s3 *s3, const char *key, struct snap_s3_error *err);

/** One object of a listing. */
struct snap_s3_entry {
  char *key; /**< relative to the configured prefix */
  uint64_t size;
  char etag[128];        /**< quotes included */
  int64_t last_modified; /**< seconds since 1970 (UTC), whole; 0 if none was sent */
  /** the key breaks the rules of the keys this library writes (empty, a control
   * character, a leading '/', an empty, '.' or '..' segment): another writer's
   * object; the other calls refuse it, so never map it to a file or act on it */
  int odd;
};

/** One page of a listing, filled by snap_s3_list(); snap_s3_list_free() it. */
struct snap_s3_list {
  struct snap_s3_entry *entries; /**< in the server's (lexicographic) order */
  size_t count;
  char *next_token; /**< pass to the next call; NULL: this was the last page */
};

/**
 * One page of ListObjectsV2 of the keys that start with @p prefix (relative to
 * the configured prefix; NULL or "" for all of it). @p token is NULL for the
 * first page, then the previous page's next_token. @p max_keys caps the page
 * (0: the server's default, 1000 on AWS).
 * @return 0 (*out filled; free it with snap_s3_list_free()), SNAP_S3_EPROTO
 *         (a response that does not parse), -ENOMEM, or a request status; on
 *         failure *out is empty and needs no freeing.
 */
int snap_s3_list(snap_s3 *s3, const char *prefix, const char *token, unsigned max_keys,
                 struct snap_s3_list *out, struct snap_s3_error *err);

/** Free what snap_s3_list() put in @p list and empty it. NULL is a no-op. */
void snap_s3_list_free(struct snap_s3_list *list);

/* --------------------------------------------------------------- multipart */

/** Room for an upload id (AWS documents no limit; longer ids are refused). */
#define SNAP_S3_UPLOAD_ID_MAX 1024

/** A part already uploaded, for snap_s3_multipart_complete(). */
struct snap_s3_part {
  unsigned number; /**< 1..10000 */
  uint64_t size;   /**< bytes (only summed into the completed object's size) */
  char etag[128];  /**< as snap_s3_multipart_put_fd() returned it */
};

/**
 * Start a multipart upload of @p key; the id goes to @p upload_id
 * (SNAP_S3_UPLOAD_ID_MAX bytes). An upload that is neither completed nor
 * aborted keeps its parts (and their storage cost) on the server.
 * @return 0, SNAP_S3_EPROTO, or a request status.
 */
int snap_s3_multipart_create(snap_s3 *s3, const char *key,
                             char upload_id[SNAP_S3_UPLOAD_ID_MAX],
                             struct snap_s3_error *err);

/**
 * Upload part @p number (1..10000) of an upload from @p length bytes of @p fd at
 * @p offset (pread, as snap_s3_put_fd()). Every part but the last must be at
 * least 5 MiB on AWS. @p part receives the number, size and ETag. Parts of one
 * upload may be sent by several handles at once.
 * @return 0, SNAP_S3_ENOTFOUND (no such upload), -errno, or a request status.
 */
int snap_s3_multipart_put_fd(snap_s3 *s3, const char *key, const char *upload_id,
                             unsigned number, int fd, uint64_t offset, uint64_t length,
                             struct snap_s3_part *part, struct snap_s3_error *err);

/**
 * As snap_s3_multipart_put_fd(), from @p len bytes at @p buf (kept by the
 * caller until the call returns; a retry sends them again).
 */
int snap_s3_multipart_put(snap_s3 *s3, const char *key, const char *upload_id,
                          unsigned number, const void *buf, size_t len,
                          struct snap_s3_part *part, struct snap_s3_error *err);

/**
 * Complete an upload from its @p nparts parts in ascending number order, under
 * the conditions @p cond (NULL: none). The object appears at once and whole.
 * A failed condition leaves the upload open: abort it (or retry).
 * @return 0, SNAP_S3_EPRECONDITION, SNAP_S3_ENOTFOUND (no such upload), or
 *         another request status (an error the server reports in a 200 answer
 *         included).
 */
int snap_s3_multipart_complete(snap_s3 *s3, const char *key, const char *upload_id,
                               const struct snap_s3_part *parts, size_t nparts,
                               const struct snap_s3_cond *cond,
                               struct snap_s3_object *out, struct snap_s3_error *err);

/**
 * Abort an upload and free its parts on the server.
 * @return 0, SNAP_S3_ENOTFOUND (no such upload), or a request status.
 */
int snap_s3_multipart_abort(snap_s3 *s3, const char *key, const char *upload_id,
                            struct snap_s3_error *err);

/**
 * The whole multipart sequence for @p length bytes of @p fd at @p offset, in
 * parts of @p part_size bytes (at least 5 MiB; the last may be smaller), one
 * after the other on this handle: create, upload each part, complete under
 * @p cond. On any failure the upload is aborted (best effort) and the first
 * error is returned.
 * @return as the calls above; SNAP_S3_EINVAL when @p part_size is under 5 MiB or
 *         @p length needs more than 10000 parts.
 */
int snap_s3_put_fd_multipart(snap_s3 *s3, const char *key, int fd, uint64_t offset,
                             uint64_t length, uint64_t part_size,
                             const struct snap_s3_cond *cond, struct snap_s3_object *out,
                             struct snap_s3_error *err);

#ifdef __cplusplus
}
#endif
#endif
