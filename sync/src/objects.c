/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The remote's objects (docs/multihost.md section 2): keys, pack names, the
 * manifest object (head + locator) and the announcement (JSON). Everything
 * read from the remote is untrusted: every length and index is checked before
 * use, and the failures name the object and the field.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "internal.h"

/* Header fields used here (docs/format.md sections 3 and 10a). */
enum {
  H_FORMAT = 8,
  H_TOTAL = 24,
  H_VERSION = 32,
  H_DATA_OFFSET = 72,
  H_NAME_LEN = 152,
  H_NAME = 160,
  H_SHIFT = 416,
  H_CHUNK_TABLE = 424,
  H_NCHUNKS = 432,
};

static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

void key_announce(char *buf, size_t cap, const char *dataset) {
  snprintf(buf, cap, "%s/announce", dataset);
}
void key_manifest(char *buf, size_t cap, const char *dataset, uint64_t version) {
  snprintf(buf, cap, "%s/v/%" PRIu64 ".manifest", dataset, version);
}
void key_pack(char *buf, size_t cap, const char *dataset, const char *pack) {
  snprintf(buf, cap, "%s/pack/%s", dataset, pack);
}

void pack_name(const uint64_t *hashes, uint64_t n, uint32_t shift, const void *deltas,
               size_t dlen, char out[SYNC_PACK_NAME + 1]) {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, hashes, n * 8);
  XXH3_128bits_update(&st, &shift, 4);
  XXH3_128bits_update(&st, &n, 8);
  if (dlen) XXH3_128bits_update(&st, deltas, dlen);
  XXH128_hash_t h = XXH3_128bits_digest(&st);
  snprintf(out, SYNC_PACK_NAME + 1, "%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64,
           (uint64_t)h.low64);
}

/* ------------------------------------------------------------------ deltas */

/* Runs closer than this are merged: a run header costs 8 bytes. */
#define RUN_GAP 32u

int delta_make(const uint8_t *a, const uint8_t *b, uint32_t len, uint32_t most,
               uint8_t **out, size_t *n, size_t *cap) {
  size_t start = *n;
  uint32_t i = 0;
  while (i < len) {
    /* the next differing byte, 8 at a time */
    while (i + 8 <= len && !memcmp(a + i, b + i, 8)) i += 8;
    while (i < len && a[i] == b[i]) i++;
    if (i >= len) break;
    uint32_t lo = i, hi = i + 1, same = 0;
    for (uint32_t j = i + 1; j < len && same < RUN_GAP; j++) {
      if (a[j] == b[j]) {
        same++;
      } else {
        same = 0;
        hi = j + 1;
      }
    }
    uint32_t rl = hi - lo;
    if (*n - start + SYNC_RUN_HEAD + rl > most) {
      *n = start;
      return 1;
    }
    if (*n + SYNC_RUN_HEAD + rl > *cap) {
      size_t c = (*cap ? *cap * 2 : 1 << 16) + SYNC_RUN_HEAD + rl;
      void *p = realloc(*out, c);
      if (!p) {
        *n = start;
        return 1;
      }
      *out = p;
      *cap = c;
    }
    memcpy(*out + *n, &lo, 4);
    memcpy(*out + *n + 4, &rl, 4);
    memcpy(*out + *n + SYNC_RUN_HEAD, b + lo, rl);
    *n += SYNC_RUN_HEAD + rl;
    i = hi;
  }
  return 0;
}

int delta_apply(uint8_t *chunk, uint32_t size, const uint8_t *runs, uint32_t len) {
  for (uint32_t i = 0; i < len;) {
    uint32_t off, rl;
    if (len - i < SYNC_RUN_HEAD) return -1;
    memcpy(&off, runs + i, 4);
    memcpy(&rl, runs + i + 4, 4);
    i += SYNC_RUN_HEAD;
    if (rl > len - i || off > size || rl > size - off) return -1;
    memcpy(chunk + off, runs + i, rl);
    i += rl;
  }
  return 0;
}

/* --------------------------------------------------------------- manifest */

int manifest_build(const void *head, uint64_t data_offset, uint64_t nchunks,
                   const struct loc *loc, char (*packs)[SYNC_PACK_NAME + 1],
                   uint32_t npacks, const struct delta *deltas, uint64_t ndeltas,
                   uint8_t **out, size_t *len) {
  size_t n = (size_t)data_offset + SYNC_LOC_HEAD + (size_t)npacks * SYNC_PACK_NAME +
             (size_t)nchunks * SYNC_LOC_ENTRY + (size_t)ndeltas * SYNC_DELTA_ENTRY + 8;
  uint8_t *b = calloc(1, n), *p;
  if (!b) return -ENOMEM;
  memcpy(b, head, data_offset);
  p = b + data_offset;
  memcpy(p, SYNC_LOC_MAGIC, 8);
  memcpy(p + 8, &npacks, 4);
  memcpy(p + 16, &nchunks, 8);
  memcpy(p + 24, &ndeltas, 8);
  p += SYNC_LOC_HEAD;
  for (uint32_t i = 0; i < npacks; i++, p += SYNC_PACK_NAME) memcpy(p, packs[i], 32);
  for (uint64_t k = 0; k < nchunks; k++, p += SYNC_LOC_ENTRY) {
    memcpy(p, &loc[k].pack, 4);
    memcpy(p + 4, &loc[k].index, 4);
  }
  for (uint64_t i = 0; i < ndeltas; i++, p += SYNC_DELTA_ENTRY) {
    memcpy(p, &deltas[i].chunk, 8);
    memcpy(p + 8, &deltas[i].base, 8);
    memcpy(p + 16, &deltas[i].pack, 4);
    memcpy(p + 20, &deltas[i].len, 4);
    memcpy(p + 24, &deltas[i].off, 8);
  }
  uint64_t h = XXH3_64bits(b + data_offset, (size_t)(p - b - data_offset));
  memcpy(p, &h, 8);
  *out = b;
  *len = n;
  return 0;
}

static int bad(struct snap_sync_error *err, const char *key, const char *fmt,
               uint64_t value) {
  char what[160];
  snprintf(what, sizeof what, fmt, value);
  return sync__err(err, SNAP_ECORRUPT, "corrupt", "%s: %s", key, what);
}

static bool hex_name(const uint8_t *p) {
  for (int i = 0; i < SYNC_PACK_NAME; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return false;
  return true;
}

int manifest_parse(uint8_t *buf, size_t len, const char *dataset, const char *key,
                   struct manifest *m, struct snap_sync_error *err) {
  memset(m, 0, sizeof *m);
  m->buf = buf;
  m->len = len;
  if (len < 4096 || memcmp(buf, "\x89SNP\r\n\x1a\n", 8))
    return bad(err, key, "not a manifest (%" PRIu64 " bytes, no segment magic)", len);
  if (get32(buf + H_FORMAT) != 2)
    return bad(err, key, "header field format = %" PRIu64 ", expected 2",
               get32(buf + H_FORMAT));
  size_t nl = buf[H_NAME_LEN];
  if (nl != strlen(dataset) || memcmp(buf + H_NAME, dataset, nl))
    return bad(err, key, "header field name: not this dataset (%" PRIu64 " bytes)", nl);
  m->version = get64(buf + H_VERSION);
  m->data_offset = get64(buf + H_DATA_OFFSET);
  m->total = get64(buf + H_TOTAL);
  m->shift = get32(buf + H_SHIFT);
  m->nchunks = get64(buf + H_NCHUNKS);
  uint64_t table = get64(buf + H_CHUNK_TABLE);
  if (m->shift < 12 || m->shift > 30)
    return bad(err, key, "header field chunk_shift = %" PRIu64, m->shift);
  if (m->data_offset < 4096 || m->data_offset > len - SYNC_LOC_HEAD - 8)
    return bad(err, key, "header field data_offset = %" PRIu64 " past the object",
               m->data_offset);
  if (m->nchunks > (m->data_offset - 4096) / 16 || table < 4096 ||
      table > m->data_offset - 16 * m->nchunks)
    return bad(err, key, "header field nchunks = %" PRIu64 " does not fit the manifest",
               m->nchunks);
  if (m->total != m->data_offset + (m->nchunks << m->shift))
    return bad(err, key, "header field total_size = %" PRIu64 " is not the chunks' end",
               m->total);
  const uint8_t *p = buf + m->data_offset;
  if (memcmp(p, SYNC_LOC_MAGIC, 8))
    return bad(err, key, "no locator (version 2) after the %" PRIu64 " bytes of head",
               m->data_offset);
  m->npacks = get32(p + 8);
  m->ndeltas = get64(p + 24);
  if (get64(p + 16) != m->nchunks)
    return bad(err, key, "locator nchunks = %" PRIu64 ", the header's differs",
               get64(p + 16));
  if (m->npacks > m->nchunks + 1 || m->ndeltas > m->nchunks)
    return bad(err, key, "locator counts out of range (%" PRIu64 " packs)", m->npacks);
  uint64_t need = (uint64_t)SYNC_LOC_HEAD + (uint64_t)m->npacks * SYNC_PACK_NAME +
                  m->nchunks * SYNC_LOC_ENTRY + m->ndeltas * SYNC_DELTA_ENTRY + 8;
  if (need != len - m->data_offset)
    return bad(err, key, "locator of %" PRIu64 " bytes: its counts disagree",
               (uint64_t)(len - m->data_offset));
  if (XXH3_64bits(p, (size_t)need - 8) != get64(p + need - 8))
    return bad(err, key, "locator hash mismatch (%" PRIu64 " bytes)", need);
  m->hash = malloc((m->nchunks ? m->nchunks : 1) * sizeof *m->hash);
  m->loc = malloc((m->nchunks ? m->nchunks : 1) * sizeof *m->loc);
  m->packs = malloc((m->npacks ? m->npacks : 1) * sizeof *m->packs);
  m->deltas = malloc((m->ndeltas ? m->ndeltas : 1) * sizeof *m->deltas);
  if (!m->hash || !m->loc || !m->packs || !m->deltas)
    return sync__err(err, -ENOMEM, "local", "%s: out of memory", key);
  p += SYNC_LOC_HEAD;
  for (uint32_t i = 0; i < m->npacks; i++, p += SYNC_PACK_NAME) {
    if (!hex_name(p)) return bad(err, key, "locator pack %" PRIu64 " name", i);
    memcpy(m->packs[i], p, SYNC_PACK_NAME);
    m->packs[i][SYNC_PACK_NAME] = 0;
  }
  for (uint64_t k = 0; k < m->nchunks; k++, p += SYNC_LOC_ENTRY) {
    m->hash[k] = get64(buf + table + 16 * k);
    m->loc[k].pack = get32(p);
    m->loc[k].index = get32(p + 4);
    if (m->loc[k].pack != SYNC_ZERO_PACK && m->loc[k].pack >= m->npacks)
      return bad(err, key, "locator entry of chunk %" PRIu64 ": no such pack", k);
  }
  for (uint64_t i = 0; i < m->ndeltas; i++, p += SYNC_DELTA_ENTRY) {
    struct delta *d = &m->deltas[i];
    d->chunk = get64(p);
    d->base = get64(p + 8);
    d->pack = get32(p + 16);
    d->len = get32(p + 20);
    d->off = get64(p + 24);
    if (d->chunk >= m->nchunks || (i && d->chunk <= m->deltas[i - 1].chunk) ||
        d->pack >= m->npacks || d->len > (1u << m->shift) * 2 || d->off > (1ull << 50))
      return bad(err, key, "locator delta %" PRIu64 " out of range or order", i);
  }
  return 0;
}

const struct delta *manifest_delta(const struct manifest *m, uint64_t k) {
  uint64_t lo = 0, hi = m->ndeltas;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (m->deltas[mid].chunk < k)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < m->ndeltas && m->deltas[lo].chunk == k ? &m->deltas[lo] : NULL;
}

void manifest_free(struct manifest *m) {
  free(m->buf);
  free(m->hash);
  free(m->loc);
  free(m->packs);
  free(m->deltas);
  memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------- announcement */

/* JSON string characters that need no escape in our names (checked by the
 * writer's callers: dataset names and keys are [A-Za-z0-9_.-/]). */
static void json_str(char *out, size_t cap, const char *s) {
  size_t j = 0;
  for (; *s && j + 7 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[j++] = '\\';
      out[j++] = (char)ch;
    } else if (ch < 0x20) {
      j += (size_t)snprintf(out + j, cap - j, "\\u%04x", ch);
    } else {
      out[j++] = (char)ch;
    }
  }
  out[j] = 0;
}

int announce_write(const struct announce *a, char *buf, size_t cap) {
  char ds[2 * SNAP_DATASET_NAME_MAX + 8], man[700], host[300], kept[SYNC_KEEP_MAX * 22];
  json_str(ds, sizeof ds, a->dataset);
  json_str(man, sizeof man, a->manifest);
  json_str(host, sizeof host, a->host);
  size_t k = 0;
  kept[0] = 0;
  for (unsigned i = 0; i < a->nkept; i++)
    k += (size_t)snprintf(kept + k, sizeof kept - k, "%s%" PRIu64, i ? ", " : "",
                          a->kept[i]);
  int n =
      snprintf(buf, cap,
               "{\"libsnap_announce\": 1, \"dataset\": \"%s\", \"version\": %" PRIu64
               ", \"manifest\": \"%s\", \"data_hash\": \"%s\", \"published_ns\": "
               "%" PRIu64
               ", \"kept\": [%s], \"primary\": {\"host\": \"%s\", "
               "\"pid\": %ld}}\n",
               ds, a->version, man, a->data_hash, a->published_ns, kept, host, a->pid);
  return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* A small JSON reader for the announcement: one object whose values are
 * strings, unsigned integers, arrays of unsigned integers, or objects (read
 * for "primary", skipped otherwise). Depth is bounded; anything else fails. */
struct jr {
  const char *p, *end;
};

static void ws(struct jr *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r'))
    j->p++;
}
static bool eat(struct jr *j, char c) {
  ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return true;
  }
  return false;
}
static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static bool jstring(struct jr *j, char *out, size_t cap) {
  if (!eat(j, '"')) return false;
  size_t n = 0;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c == '\\') {
      if (j->p >= j->end) return false;
      c = *j->p++;
      if (c == 'u') { /* only what our writer emits: \u00XX (the bytes are not
                       * NUL-terminated: no sscanf) */
        int hi, lo;
        if (j->end - j->p < 4 || j->p[0] != '0' || j->p[1] != '0' ||
            (hi = hexval(j->p[2])) < 0 || (lo = hexval(j->p[3])) < 0)
          return false;
        c = (char)(hi << 4 | lo);
        j->p += 4;
      } else if (c != '"' && c != '\\' && c != '/') {
        return false;
      }
    } else if ((unsigned char)c < 0x20) {
      return false;
    }
    if (n + 1 >= cap) return false;
    out[n++] = c;
  }
  out[n] = 0;
  return eat(j, '"');
}
static bool jnumber(struct jr *j, uint64_t *v) {
  ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return false;
  uint64_t x = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned)(*j->p++ - '0');
    if (x > (UINT64_MAX - d) / 10) return false;
    x = x * 10 + d;
  }
  *v = x;
  return true;
}
/* Skip any value (strings, numbers, arrays, objects, true/false/null). */
static bool jskip(struct jr *j, int depth) {
  char tmp[1024];
  uint64_t v;
  ws(j);
  if (depth > 8 || j->p >= j->end) return false;
  if (*j->p == '"') return jstring(j, tmp, sizeof tmp);
  if (*j->p >= '0' && *j->p <= '9') return jnumber(j, &v);
  for (const char *lit = "true\0false\0null\0"; *lit; lit += strlen(lit) + 1)
    if ((size_t)(j->end - j->p) >= strlen(lit) && !strncmp(j->p, lit, strlen(lit))) {
      j->p += strlen(lit);
      return true;
    }
  char open = *j->p, close = open == '{' ? '}' : ']';
  if (open != '{' && open != '[') return false;
  j->p++;
  if (eat(j, close)) return true;
  do {
    if (open == '{' && (!jstring(j, tmp, sizeof tmp) || !eat(j, ':'))) return false;
    if (!jskip(j, depth + 1)) return false;
  } while (eat(j, ','));
  return eat(j, close);
}

int announce_parse(const char *buf, size_t len, const char *key, struct announce *a,
                   struct snap_sync_error *err) {
  memset(a, 0, sizeof *a);
  struct jr j = {buf, buf + len};
  char name[64];
  const char *field = "{";
  uint64_t magic = 0, pid = 0;
  bool have_version = false;
  if (!eat(&j, '{')) goto fail;
  do {
    field = "a key";
    if (!jstring(&j, name, sizeof name) || !eat(&j, ':')) goto fail;
    field = name;
    if (!strcmp(name, "libsnap_announce")) {
      if (!jnumber(&j, &magic)) goto fail;
    } else if (!strcmp(name, "dataset")) {
      if (!jstring(&j, a->dataset, sizeof a->dataset)) goto fail;
    } else if (!strcmp(name, "version")) {
      if (!jnumber(&j, &a->version)) goto fail;
      have_version = true;
    } else if (!strcmp(name, "manifest")) {
      if (!jstring(&j, a->manifest, sizeof a->manifest)) goto fail;
    } else if (!strcmp(name, "data_hash")) {
      if (!jstring(&j, a->data_hash, sizeof a->data_hash)) goto fail;
    } else if (!strcmp(name, "published_ns")) {
      if (!jnumber(&j, &a->published_ns)) goto fail;
    } else if (!strcmp(name, "kept")) {
      if (!eat(&j, '[')) goto fail;
      if (!eat(&j, ']')) {
        do {
          if (a->nkept == SYNC_KEEP_MAX || !jnumber(&j, &a->kept[a->nkept++])) goto fail;
        } while (eat(&j, ','));
        if (!eat(&j, ']')) goto fail;
      }
    } else if (!strcmp(name, "primary")) {
      char sub[32];
      if (!eat(&j, '{')) goto fail;
      if (!eat(&j, '}')) {
        do {
          if (!jstring(&j, sub, sizeof sub) || !eat(&j, ':')) goto fail;
          if (!strcmp(sub, "host")) {
            if (!jstring(&j, a->host, sizeof a->host)) goto fail;
          } else if (!strcmp(sub, "pid")) {
            if (!jnumber(&j, &pid)) goto fail;
          } else if (!jskip(&j, 1)) {
            goto fail;
          }
        } while (eat(&j, ','));
        if (!eat(&j, '}')) goto fail;
      }
      a->pid = (long)(pid > 0x7fffffff ? 0 : pid);
    } else if (!jskip(&j, 0)) { /* a newer writer's field */
      goto fail;
    }
  } while (eat(&j, ','));
  field = "}";
  if (!eat(&j, '}')) goto fail;
  ws(&j);
  if (j.p != j.end) goto fail;
  if (magic != 1)
    return sync__err(err, SNAP_EFORMAT, "corrupt",
                     "%s: libsnap_announce = %" PRIu64 ", this reader knows 1", key,
                     magic);
  if (!have_version || !a->version)
    return sync__err(err, SNAP_ECORRUPT, "corrupt", "%s: no version (or version 0)", key);
  return 0;
fail:
  return sync__err(err, SNAP_ECORRUPT, "corrupt",
                   "%s: not an announcement: bad JSON at byte %zu (field %s)", key,
                   (size_t)(j.p - buf), field);
}
