/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The set of distinct strings of a column (open addressing, linear probing),
 * from which a category's dictionary is made. One set per column and chunk; a
 * set is used by one thread at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

void strset_free(struct strset *s) {
  free(s->tab);
  for (size_t i = 0; i < s->narena; i++) free(s->arena[i]);
  free(s->arena);
  memset(s, 0, sizeof *s);
}

/* Insert (p, n) with hash h, known to be absent. */
static int strset_insert(struct strset *s, const char *p, size_t n, uint64_t h,
                         int copy) {
  if ((s->count + 1) * 2 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    struct sentry *t = calloc(cap, sizeof *t);
    if (!t) return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
      struct sentry *e = &s->tab[i];
      if (!e->p) continue;
      size_t j = e->hash & (cap - 1);
      while (t[j].p) j = (j + 1) & (cap - 1);
      t[j] = *e;
    }
    free(s->tab);
    s->tab = t;
    s->cap = cap;
  }
  struct sentry *e = strset_find(s, p, n, h);
  if (copy) {
    char **a = realloc(s->arena, (s->narena + 1) * sizeof *a);
    if (!a) return -ENOMEM;
    s->arena = a;
    char *c = malloc(n ? n : 1);
    if (!c) return -ENOMEM;
    memcpy(c, p, n);
    s->arena[s->narena++] = c;
    p = c;
  }
  *e = (struct sentry){.p = n ? p : "", .n = (uint32_t)n, .code = -1, .hash = h};
  s->count++;
  return 0;
}

/* Insert (p, n) if new; p must outlive the set unless copy. -ENOMEM on failure. */
int strset_add(struct strset *s, const char *p, size_t n, int copy) {
  uint64_t h = hash_bytes(p, n);
  struct sentry *e = strset_find(s, p, n, h);
  if (e && e->p) return 0;
  return strset_insert(s, p, n, h, copy);
}

/* Move every value of src into dst (src's copies too); src is left empty. */
int strset_merge(struct strset *dst, struct strset *src) {
  if (src->narena) {
    char **a = realloc(dst->arena, (dst->narena + src->narena) * sizeof *a);
    if (!a) return -ENOMEM;
    dst->arena = a;
    memcpy(a + dst->narena, src->arena, src->narena * sizeof *a);
    dst->narena += src->narena;
    src->narena = 0;
  }
  for (size_t i = 0; i < src->cap; i++)
    if (src->tab[i].p) {
      int rc = strset_add(dst, src->tab[i].p, src->tab[i].n, 0);
      if (rc) return rc;
    }
  strset_free(src);
  return 0;
}
