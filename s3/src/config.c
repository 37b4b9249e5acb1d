/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration: defaults, s3:// URLs, the environment and the shared
 * credentials file, object names and request URLs. No network, no curl. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void snap_s3_config_init(struct snap_s3_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  strcpy(cfg->region, "us-east-1");
  cfg->addressing = SNAP_S3_ADDRESSING_AUTO;
  cfg->max_attempts = 5;
  cfg->retry_base_ms = 100;
  cfg->retry_max_ms = 5000;
  cfg->connect_timeout_ms = 5000;
  cfg->low_speed_bytes = 1024;
  cfg->low_speed_seconds = 30;
}

void snap_s3_config_clear(struct snap_s3_config *cfg) {
  if (!cfg) return;
  explicit_bzero(cfg->secret_key, sizeof cfg->secret_key);
  explicit_bzero(cfg->session_token, sizeof cfg->session_token);
}

/* Copy src into a fixed field; 0, or -1 when it does not fit. */
/* [A-Za-z0-9], whatever the locale (isalnum() under Latin-1 takes bytes >= 0x80,
 * which must be percent-encoded). */
static int ascii_alnum(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int put(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) return -1;
  memcpy(dst, src, n + 1);
  return 0;
}

int s3__check_bucket(const char *b) {
  /* S3's rules for new buckets: 3..63 of a-z 0-9 . -, starting and ending with a
   * letter or digit. They keep the name safe in a host name and a path alike. */
  size_t n = strlen(b);
  if (n < 3 || n > 63) return -1;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && c != '.' && c != '-') return -1;
    if ((i == 0 || i == n - 1) && !alnum) return -1;
  }
  return 0;
}

/* The rules of s3.h for keys, applied to [s, s + n): no control character, no
 * leading '/', no empty, "." or ".." segment. NULL or a reason. */
const char *s3__name_problem(const char *s, size_t n) {
  if (n == 0) return "empty";
  size_t seg = 0; /* start of the current segment */
  for (size_t i = 0; i <= n; i++) {
    if (i < n && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) return "control character";
    if (i == n || s[i] == '/') {
      size_t len = i - seg;
      if (len == 0) return i == 0 ? "leading '/'" : "empty segment";
      if ((len == 1 && s[seg] == '.') || (len == 2 && s[seg] == '.' && s[seg + 1] == '.'))
        return "'.' or '..' segment";
      seg = i + 1;
    }
  }
  return NULL;
}

int snap_s3_config_set_url(struct snap_s3_config *cfg, const char *url,
                           struct snap_s3_error *err) {
  if (!url || strncmp(url, "s3://", 5) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "%s: not an s3://BUCKET/PREFIX URL",
                   url ? url : "(null)");
  const char *b = url + 5, *slash = strchr(b, '/');
  size_t blen = slash ? (size_t)(slash - b) : strlen(b);
  char bucket[64];
  if (blen >= sizeof bucket)
    return s3__err(err, SNAP_S3_EINVAL, "%s: bucket name longer than 63", url);
  memcpy(bucket, b, blen);
  bucket[blen] = 0;
  if (s3__check_bucket(bucket) != 0)
    return s3__err(err, SNAP_S3_EINVAL,
                   "%s: bucket \"%s\" is not 3..63 characters of a-z 0-9 . -", url,
                   bucket);
  const char *p = slash ? slash + 1 : "";
  size_t plen = strlen(p);
  if (plen && p[plen - 1] == '/') plen--; /* "s3://b/p/" and "s3://b/p" alike */
  if (plen) {
    const char *why = s3__name_problem(p, plen);
    if (why) return s3__err(err, SNAP_S3_EINVAL, "%s: prefix: %s", url, why);
    if (plen + 1 >= sizeof cfg->prefix)
      return s3__err(err, SNAP_S3_EINVAL, "%s: prefix longer than %zu", url,
                     sizeof cfg->prefix - 2);
  }
  strcpy(cfg->bucket, bucket);
  memcpy(cfg->prefix, p, plen);
  if (plen) cfg->prefix[plen++] = '/';
  cfg->prefix[plen] = 0;
  return 0;
}

/* A variable's value, NULL when unset or empty (the AWS tools treat both alike). */
static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n &&
         (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = 0;
  return s;
}

/* The profile's keys from a shared credentials file (INI: "[name]" sections,
 * "key = value" lines, '#' and ';' comments). */
static int read_credentials_file(struct snap_s3_config *cfg, const char *path,
                                 const char *profile, int explicit_path,
                                 struct snap_s3_error *err) {
  FILE *f = fopen(path, "re");
  if (!f) {
    int e = errno;
    if (!explicit_path && e == ENOENT)
      return s3__err(err, SNAP_S3_ECONFIG,
                     "no credentials: AWS_ACCESS_KEY_ID is not set and %s does not "
                     "exist",
                     path);
    return s3__err(err, SNAP_S3_ECONFIG, "credentials file %s: %s", path, strerror(e));
  }
  /* No stdio buffer (it would hold every profile's secret and be freed
   * unwiped), and a line buffer large enough that getline() need not move it
   * (leaving a copy behind): both wiped below. */
  setvbuf(f, NULL, _IONBF, 0);
  size_t linecap = 8192;
  char *line = malloc(linecap);
  if (!line) {
    fclose(f);
    return s3__err(err, -ENOMEM, "credentials file %s: out of memory", path);
  }
  int in = 0, found = 0, rc = 0;
  unsigned lineno = 0;
  while (getline(&line, &linecap, f) >= 0) {
    lineno++;
    char *s = trim(line);
    if (*s == 0 || *s == '#' || *s == ';') continue;
    if (*s == '[') {
      char *end = strchr(s, ']');
      if (!end) {
        rc = s3__err(err, SNAP_S3_ECONFIG, "credentials file %s:%u: unterminated [", path,
                     lineno);
        break;
      }
      *end = 0;
      char *name = trim(s + 1);
      /* "[profile x]" is the config file's spelling; accept it here too. */
      if (strncmp(name, "profile ", 8) == 0) name = trim(name + 8);
      in = strcmp(name, profile) == 0;
      found |= in;
      continue;
    }
    if (!in) continue;
    char *eq = strchr(s, '=');
    if (!eq) continue;
    *eq = 0;
    char *k = trim(s), *v = trim(eq + 1);
    char *dst = NULL;
    size_t cap = 0;
    if (strcmp(k, "aws_access_key_id") == 0) {
      dst = cfg->access_key;
      cap = sizeof cfg->access_key;
    } else if (strcmp(k, "aws_secret_access_key") == 0) {
      dst = cfg->secret_key;
      cap = sizeof cfg->secret_key;
    } else if (strcmp(k, "aws_session_token") == 0) {
      dst = cfg->session_token;
      cap = sizeof cfg->session_token;
    }
    if (dst && put(dst, cap, v) != 0) {
      rc = s3__err(err, SNAP_S3_ECONFIG, "credentials file %s:%u: %s longer than %zu",
                   path, lineno, k, cap - 1);
      break;
    }
  }
  if (line) explicit_bzero(line, linecap);
  free(line);
  fclose(f);
  if (rc) return rc;
  if (!found)
    return s3__err(err, SNAP_S3_ECONFIG, "credentials file %s: no profile [%s]", path,
                   profile);
  if (!cfg->access_key[0] || !cfg->secret_key[0])
    return s3__err(err, SNAP_S3_ECONFIG,
                   "credentials file %s: profile [%s] lacks aws_access_key_id or "
                   "aws_secret_access_key",
                   path, profile);
  snprintf(cfg->credentials_from, sizeof cfg->credentials_from, "%.280s [%.30s]", path,
           profile);
  return 0;
}

static int credentials_from_env(struct snap_s3_config *cfg, struct snap_s3_error *err) {
  const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
  if (id || secret) {
    if (!id || !secret)
      return s3__err(err, SNAP_S3_ECONFIG, "%s is set but %s is not",
                     id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                     id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    const char *token = env("AWS_SESSION_TOKEN");
    if (put(cfg->access_key, sizeof cfg->access_key, id) ||
        put(cfg->secret_key, sizeof cfg->secret_key, secret) ||
        put(cfg->session_token, sizeof cfg->session_token, token ? token : ""))
      return s3__err(err, SNAP_S3_ECONFIG,
                     "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN "
                     "too long");
    strcpy(cfg->credentials_from, "environment");
    return 0;
  }
  const char *profile = env("AWS_PROFILE");
  if (!profile) profile = "default";
  const char *file = env("AWS_SHARED_CREDENTIALS_FILE");
  char path[4096];
  if (file) {
    if (put(path, sizeof path, file))
      return s3__err(err, SNAP_S3_ECONFIG, "AWS_SHARED_CREDENTIALS_FILE too long");
  } else {
    const char *home = env("HOME");
    if (!home)
      return s3__err(err, SNAP_S3_ECONFIG,
                     "no credentials: AWS_ACCESS_KEY_ID is not set, nor HOME to find "
                     "~/.aws/credentials");
    if ((size_t)snprintf(path, sizeof path, "%s/.aws/credentials", home) >= sizeof path)
      return s3__err(err, SNAP_S3_ECONFIG, "HOME too long");
  }
  return read_credentials_file(cfg, path, profile, file != NULL, err);
}

/* "http[s]://host[:port]" with an optional trailing '/'; nothing else. */
static int check_endpoint(const char *e) {
  const char *h;
  if (strncmp(e, "http://", 7) == 0)
    h = e + 7;
  else if (strncmp(e, "https://", 8) == 0)
    h = e + 8;
  else
    return -1;
  size_t n = strlen(h);
  if (n && h[n - 1] == '/') n--;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    /* host name, IPv4, [IPv6], port; no userinfo, path, query or fragment */
    if (!ascii_alnum(c) && !strchr(".-:[]_", c)) return -1;
  }
  return 0;
}

static int check_region(const char *r) {
  size_t n = strlen(r);
  if (n == 0 || n > 63) return -1;
  for (size_t i = 0; i < n; i++)
    if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
      return -1;
  return 0;
}

static int from_env(struct snap_s3_config *cfg, const char *url,
                    struct snap_s3_error *err) {
  int rc = snap_s3_config_set_url(cfg, url, err);
  if (rc) return rc;

  const char *region = env("AWS_REGION");
  const char *rvar = "AWS_REGION";
  if (!region) {
    region = env("AWS_DEFAULT_REGION");
    rvar = "AWS_DEFAULT_REGION";
  }
  if (region) {
    if (check_region(region) != 0)
      return s3__err(err, SNAP_S3_EINVAL, "%s=%s: not a region name (a-z 0-9 -)", rvar,
                     region);
    strcpy(cfg->region, region);
  }

  const char *ep = env("AWS_ENDPOINT_URL_S3");
  const char *evar = "AWS_ENDPOINT_URL_S3";
  if (!ep) {
    ep = env("AWS_ENDPOINT_URL");
    evar = "AWS_ENDPOINT_URL";
  }
  if (ep) {
    if (check_endpoint(ep) != 0 || put(cfg->endpoint, sizeof cfg->endpoint, ep) != 0)
      return s3__err(err, SNAP_S3_EINVAL,
                     "%s=%s: not an http[s]://HOST[:PORT] URL without a path", evar, ep);
    size_t n = strlen(cfg->endpoint);
    if (cfg->endpoint[n - 1] == '/') cfg->endpoint[n - 1] = 0;
  }

  const char *style = env("AWS_S3_ADDRESSING_STYLE");
  if (style) {
    if (strcmp(style, "path") == 0)
      cfg->addressing = SNAP_S3_ADDRESSING_PATH;
    else if (strcmp(style, "virtual") == 0)
      cfg->addressing = SNAP_S3_ADDRESSING_VIRTUAL;
    else if (strcmp(style, "auto") == 0)
      cfg->addressing = SNAP_S3_ADDRESSING_AUTO;
    else
      return s3__err(err, SNAP_S3_EINVAL,
                     "AWS_S3_ADDRESSING_STYLE=%s: not path, virtual or auto", style);
  }

  const char *ca = env("AWS_CA_BUNDLE");
  if (ca && put(cfg->ca_file, sizeof cfg->ca_file, ca) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "AWS_CA_BUNDLE too long");

  return credentials_from_env(cfg, err);
}

int snap_s3_config_from_env(struct snap_s3_config *cfg, const char *url,
                            struct snap_s3_error *err) {
  snap_s3_config_init(cfg);
  int rc = from_env(cfg, url, err);
  if (rc) snap_s3_config_clear(cfg);
  return rc;
}

int s3__check_config(const struct snap_s3_config *cfg, struct snap_s3_error *err) {
  if (s3__check_bucket(cfg->bucket) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "bucket \"%.63s\": not 3..63 of a-z 0-9 . -",
                   cfg->bucket);
  size_t plen = strnlen(cfg->prefix, sizeof cfg->prefix);
  if (plen == sizeof cfg->prefix ||
      (plen && (cfg->prefix[plen - 1] != '/' || s3__name_problem(cfg->prefix, plen - 1))))
    return s3__err(err, SNAP_S3_EINVAL, "s3://%s: bad prefix (see s3.h)", cfg->bucket);
  if (check_region(cfg->region) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "region \"%.63s\": not a-z 0-9 -", cfg->region);
  if (cfg->endpoint[0] && check_endpoint(cfg->endpoint) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "endpoint \"%.200s\": not http[s]://HOST[:PORT]",
                   cfg->endpoint);
  if (cfg->addressing < SNAP_S3_ADDRESSING_AUTO ||
      cfg->addressing > SNAP_S3_ADDRESSING_VIRTUAL)
    return s3__err(err, SNAP_S3_EINVAL, "addressing %d: not an enum snap_s3_addressing",
                   cfg->addressing);
  if (cfg->max_attempts == 0) return s3__err(err, SNAP_S3_EINVAL, "max_attempts is 0");
  if (!cfg->access_key[0] || !cfg->secret_key[0])
    return s3__err(err, SNAP_S3_ECONFIG, "s3://%s: no access key or secret key",
                   cfg->bucket);
  return 0;
}

int s3__object_name(const struct snap_s3_config *cfg, const char *key, char *out,
                    struct snap_s3_error *err) {
  if (!key)
    return s3__err(err, SNAP_S3_EINVAL, "s3://%s/%s: NULL key", cfg->bucket, cfg->prefix);
  size_t plen = strlen(cfg->prefix), klen = strlen(key);
  const char *why = s3__name_problem(key, klen);
  if (why)
    return s3__err(err, SNAP_S3_EINVAL, "s3://%s/%s%.200s: bad key: %s", cfg->bucket,
                   cfg->prefix, key, why);
  if (plen + klen > S3_NAME_MAX)
    return s3__err(err, SNAP_S3_EINVAL, "s3://%s/%s%.200s...: name longer than %d bytes",
                   cfg->bucket, cfg->prefix, key, S3_NAME_MAX);
  memcpy(out, cfg->prefix, plen);
  memcpy(out + plen, key, klen + 1);
  return 0;
}

ssize_t s3__encode(const char *s, int keep_slash, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    int keep = ascii_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
               (keep_slash && c == '/');
    if (n + (keep ? 1 : 3) >= cap) return -1;
    if (keep) {
      out[n++] = (char)c;
    } else {
      out[n++] = '%';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 15];
    }
  }
  if (n >= cap) return -1;
  out[n] = 0;
  return (ssize_t)n;
}

static int use_path_style(const struct snap_s3_config *cfg) {
  if (cfg->addressing == SNAP_S3_ADDRESSING_PATH) return 1;
  if (cfg->addressing == SNAP_S3_ADDRESSING_VIRTUAL) return 0;
  /* AUTO: a custom endpoint rarely has wildcard DNS for buckets; a dotted bucket
   * name does not match AWS's *.s3 certificate. */
  return cfg->endpoint[0] || strchr(cfg->bucket, '.') != NULL;
}

int s3__url(const struct snap_s3_config *cfg, const char *name, const char *query,
            char *buf, size_t cap) {
  char def[128];
  const char *ep = cfg->endpoint;
  if (!ep[0]) {
    snprintf(def, sizeof def, "https://s3.%s.amazonaws.com", cfg->region);
    ep = def;
  }
  const char *host = strstr(ep, "://") + 3;
  int eplen = (int)strlen(ep), n;
  if (ep[eplen - 1] == '/') eplen--; /* check_endpoint() allows one */
  if (use_path_style(cfg))
    n = snprintf(buf, cap, "%.*s/%s/", eplen, ep, cfg->bucket);
  else
    n = snprintf(buf, cap, "%.*s%s.%.*s/", (int)(host - ep), ep, cfg->bucket,
                 (int)(ep + eplen - host), host);
  if (n < 0 || (size_t)n >= cap) return -1;
  if (name) {
    ssize_t m = s3__encode(name, 1, buf + n, cap - (size_t)n);
    if (m < 0) return -1;
    n += (int)m;
  }
  if (query && *query) {
    int m = snprintf(buf + n, cap - (size_t)n, "?%s", query);
    if (m < 0 || (size_t)m >= cap - (size_t)n) return -1;
  }
  return 0;
}

int snap_s3_config_url(const struct snap_s3_config *cfg, const char *key, char *buf,
                       size_t cap, struct snap_s3_error *err) {
  if (s3__check_bucket(cfg->bucket) != 0 ||
      (cfg->endpoint[0] && check_endpoint(cfg->endpoint) != 0) ||
      check_region(cfg->region) != 0)
    return s3__err(err, SNAP_S3_EINVAL, "s3://%.63s: bad bucket, endpoint or region",
                   cfg->bucket);
  char name[S3_NAME_MAX + 1];
  const char *np = NULL;
  if (key && *key) {
    int rc = s3__object_name(cfg, key, name, err);
    if (rc) return rc;
    np = name;
  }
  if (s3__url(cfg, np, "", buf, cap) != 0)
    return s3__err(err, SNAP_S3_ETOOBIG, "s3://%s/%s%s: URL longer than %zu", cfg->bucket,
                   cfg->prefix, np ? key : "", cap);
  return 0;
}
