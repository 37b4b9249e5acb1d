/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Just enough XML for S3's answers: find an element by name, decode its text.
 *
 * The input is a server's bytes and is not trusted: every scan is bounded by the
 * buffer's end (never by a NUL), every decoded value by its destination, and
 * anything unexpected (markup inside a text element, an unknown entity, an
 * unterminated element) is an error rather than a guess. What it does not do:
 * namespaces, CDATA, comments, DTDs, or elements nested in one of the same name;
 * S3's ListObjectsV2, Error, InitiateMultipartUpload and CompleteMultipartUpload
 * answers use none of them. Tested by s3/src/xml_test.c and fuzz/fuzz_s3_xml.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int s3__xml_find(const char *p, const char *end, const char *name, const char **cs,
                 const char **ce, const char **next) {
  size_t nl = strlen(name);
  for (const char *q = p; q < end; q++) {
    q = memchr(q, '<', (size_t)(end - q));
    if (!q) return -1;
    if ((size_t)(end - q) < nl + 2 || memcmp(q + 1, name, nl) != 0) continue;
    const char *a = q + 1 + nl;
    if (*a != '>' && *a != '/' && !is_space(*a)) continue; /* <Keys> is not <Key> */
    const char *gt = memchr(a, '>', (size_t)(end - a));
    if (!gt) return -1;
    if (gt[-1] == '/') { /* <Name/> */
      if (cs) *cs = gt + 1;
      if (ce) *ce = gt + 1;
      if (next) *next = gt + 1;
      return 0;
    }
    const char *c = gt + 1;
    for (const char *s = c; s < end; s++) {
      s = memchr(s, '<', (size_t)(end - s));
      if (!s) return -1;
      if ((size_t)(end - s) < nl + 3 || s[1] != '/' || memcmp(s + 2, name, nl) != 0)
        continue;
      const char *t = s + 2 + nl;
      while (t < end && is_space(*t)) t++;
      if (t < end && *t == '>') {
        if (cs) *cs = c;
        if (ce) *ce = s;
        if (next) *next = t + 1;
        return 0;
      }
    }
    return -1;
  }
  return -1;
}

/* Append code point cp as UTF-8; -1 if it is not a valid XML character. */
static int put_utf8(unsigned long cp, char *out, size_t *n, size_t cap) {
  char b[4];
  size_t k;
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  if (cp < 0x80) {
    b[0] = (char)cp;
    k = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3F));
    k = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    k = 3;
  } else {
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    k = 4;
  }
  if (*n + k >= cap) return -1;
  memcpy(out + *n, b, k);
  *n += k;
  return 0;
}

ssize_t s3__xml_text(const char *s, const char *e, char *out, size_t cap) {
  size_t n = 0;
  if (cap == 0) return -1;
  while (s < e) {
    char c = *s;
    if (c == '<' || c == 0) return -1;
    if (c != '&') {
      if (n + 1 >= cap) return -1;
      out[n++] = c;
      s++;
      continue;
    }
    const char *semi = memchr(s, ';', (size_t)(e - s) < 12 ? (size_t)(e - s) : 12);
    if (!semi) return -1;
    const char *ent = s + 1;
    size_t len = (size_t)(semi - ent);
    unsigned long cp = 0;
    if (len == 2 && memcmp(ent, "lt", 2) == 0)
      cp = '<';
    else if (len == 2 && memcmp(ent, "gt", 2) == 0)
      cp = '>';
    else if (len == 3 && memcmp(ent, "amp", 3) == 0)
      cp = '&';
    else if (len == 4 && memcmp(ent, "quot", 4) == 0)
      cp = '"';
    else if (len == 4 && memcmp(ent, "apos", 4) == 0)
      cp = '\'';
    else if (len >= 2 && ent[0] == '#') {
      int hex = ent[1] == 'x';
      const char *d = ent + 1 + hex;
      if (d == semi) return -1;
      for (; d < semi; d++) {
        int v;
        if (*d >= '0' && *d <= '9')
          v = *d - '0';
        else if (hex && *d >= 'a' && *d <= 'f')
          v = *d - 'a' + 10;
        else if (hex && *d >= 'A' && *d <= 'F')
          v = *d - 'A' + 10;
        else
          return -1;
        cp = cp * (hex ? 16 : 10) + (unsigned long)v;
        if (cp > 0x10FFFF) return -1;
      }
    } else {
      return -1;
    }
    if (put_utf8(cp, out, &n, cap) != 0) return -1;
    s = semi + 1;
  }
  out[n] = 0;
  return (ssize_t)n;
}

ssize_t s3__xml_get(const char *p, const char *end, const char *name, char *out,
                    size_t cap) {
  const char *cs, *ce;
  if (s3__xml_find(p, end, name, &cs, &ce, NULL) != 0) return -1;
  return s3__xml_text(cs, ce, out, cap);
}

int s3__parse_u64(const char *s, const char *e, uint64_t *out) {
  uint64_t v = 0;
  while (s < e && is_space(*s)) s++;
  while (e > s && is_space(e[-1])) e--;
  if (s == e || e - s > 20) return -1;
  for (; s < e; s++) {
    if (*s < '0' || *s > '9') return -1;
    uint64_t d = (uint64_t)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Does the document's root element have this name? (after <?xml ...?>) */
static int root_is(const char *p, const char *end, const char *name) {
  size_t nl = strlen(name);
  while (p < end && is_space(*p)) p++;
  if (end - p >= 2 && p[0] == '<' && p[1] == '?') {
    const char *q = memmem(p, (size_t)(end - p), "?>", 2);
    if (!q) return 0;
    p = q + 2;
    while (p < end && is_space(*p)) p++;
  }
  if ((size_t)(end - p) < nl + 2 || p[0] != '<' || memcmp(p + 1, name, nl) != 0) return 0;
  char c = p[1 + nl];
  return c == '>' || c == '/' || is_space(c);
}

int s3__xml_error(const char *body, size_t n, char *code, size_t code_cap, char *msg,
                  size_t msg_cap) {
  const char *end = body + n;
  code[0] = msg[0] = 0;
  if (!root_is(body, end, "Error")) return -1;
  if (s3__xml_get(body, end, "Code", code, code_cap) < 0) code[0] = 0;
  if (s3__xml_get(body, end, "Message", msg, msg_cap) < 0) msg[0] = 0;
  return 0;
}

/* A fresh, decoded copy of [cs, ce): decoding never lengthens the text. */
static char *dup_text(const char *cs, const char *ce) {
  size_t cap = (size_t)(ce - cs) + 1;
  char *s = malloc(cap);
  if (!s) return NULL;
  if (s3__xml_text(cs, ce, s, cap) < 0) {
    free(s);
    errno = EINVAL;
    return NULL;
  }
  return s;
}

int s3__xml_list(const char *body, size_t n, const char *strip, struct snap_s3_list *out,
                 const char **why) {
  const char *end = body + n, *cs, *ce;
  size_t slen = strlen(strip), cap = 0;
  memset(out, 0, sizeof *out);
  int rc = SNAP_S3_EPROTO;
  /* The whole document, to its end tag: a cut-off answer is not a short list. */
  if (!root_is(body, end, "ListBucketResult") ||
      s3__xml_find(body, end, "ListBucketResult", NULL, NULL, NULL) != 0) {
    *why = "not a whole ListBucketResult";
    goto fail;
  }
  char flag[8];
  int truncated = 0;
  if (s3__xml_find(body, end, "IsTruncated", &cs, &ce, NULL) == 0) {
    if (s3__xml_text(cs, ce, flag, sizeof flag) < 0 ||
        (strcmp(flag, "true") != 0 && strcmp(flag, "false") != 0)) {
      *why = "IsTruncated is not true or false";
      goto fail;
    }
    truncated = strcmp(flag, "true") == 0;
  }
  const char *p = body, *next;
  while (s3__xml_find(p, end, "Contents", &cs, &ce, &next) == 0) {
    p = next;
    const char *ks, *ke, *zs, *ze;
    if (s3__xml_find(cs, ce, "Key", &ks, &ke, NULL) != 0 ||
        s3__xml_find(cs, ce, "Size", &zs, &ze, NULL) != 0) {
      *why = "Contents without Key or Size";
      goto fail;
    }
    if (out->count == cap) {
      size_t ncap = cap ? 2 * cap : 64;
      struct snap_s3_entry *ne = realloc(out->entries, ncap * sizeof *ne);
      if (!ne) {
        rc = -ENOMEM;
        goto fail;
      }
      out->entries = ne;
      cap = ncap;
    }
    struct snap_s3_entry *en = &out->entries[out->count];
    memset(en, 0, sizeof *en);
    char *key = dup_text(ks, ke);
    if (!key) {
      rc = errno == ENOMEM ? -ENOMEM : SNAP_S3_EPROTO;
      *why = "bad Key text";
      goto fail;
    }
    if (strncmp(key, strip, slen) != 0 || strlen(key) > S3_NAME_MAX) {
      free(key);
      *why = "a Key outside the requested prefix";
      goto fail;
    }
    memmove(key, key + slen, strlen(key + slen) + 1);
    en->key = key;
    out->count++; /* owned by out from here */
    if (s3__parse_u64(zs, ze, &en->size) != 0) {
      *why = "bad Size";
      goto fail;
    }
    const char *es, *ee;
    if (s3__xml_find(cs, ce, "ETag", &es, &ee, NULL) == 0 &&
        s3__xml_text(es, ee, en->etag, sizeof en->etag) < 0) {
      *why = "bad ETag";
      goto fail;
    }
    en->odd = s3__name_problem(en->key, strlen(en->key)) != NULL;
    char when[40];
    if (s3__xml_find(cs, ce, "LastModified", &es, &ee, NULL) == 0) {
      struct tm tm = {0};
      if (s3__xml_text(es, ee, when, sizeof when) < 0 ||
          sscanf(when, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                 &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
        *why = "bad LastModified";
        goto fail;
      }
      tm.tm_year -= 1900;
      tm.tm_mon -= 1;
      en->last_modified = (int64_t)timegm(&tm);
    }
  }
  if (truncated) {
    if (s3__xml_find(body, end, "NextContinuationToken", &cs, &ce, NULL) != 0 ||
        cs == ce) {
      *why = "IsTruncated without NextContinuationToken";
      goto fail;
    }
    out->next_token = dup_text(cs, ce);
    if (!out->next_token) {
      rc = errno == ENOMEM ? -ENOMEM : SNAP_S3_EPROTO;
      *why = "bad NextContinuationToken";
      goto fail;
    }
  }
  return 0;
fail:
  if (rc == -ENOMEM) *why = "out of memory";
  snap_s3_list_free(out);
  return rc;
}

void snap_s3_list_free(struct snap_s3_list *list) {
  if (!list) return;
  for (size_t i = 0; i < list->count; i++) free(list->entries[i].key);
  free(list->entries);
  free(list->next_token);
  memset(list, 0, sizeof *list);
}
