/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replicas: a version of one store adopted by another chunk by chunk, as a
 * follower does (borrowed, copied, zero, resumed and fetched chunks), and the
 * refusals: bad chunks, missing chunks, older versions, damaged heads, local
 * publishes of a followed dataset. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#define NROWS (1u << 18) /* 2 MiB per float64 column: 32 chunks of 64 KiB */
#define NCOLS 4
#define CHUNK (64u << 10)

static char *g_pdir, *g_fdir; /* primary and follower */
static snap_store *g_p, *g_f;

static void open_stores(void) {
  g_p = tu_store_create("replica-p", &g_pdir);
  g_f = tu_store_create("replica-f", &g_fdir);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_p);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_f);
}

static void close_stores(void) {
  tu_store_destroy(g_p, g_pdir);
  tu_store_destroy(g_f, g_fdir);
}

/* The primary's current version edited in place: rows [a, b) of column c get
 * a new value, the rest is borrowed. */
static uint64_t edit_rows(uint32_t c, uint64_t a, uint64_t b, double value) {
  uint64_t v = 0;
  CU_ASSERT_EQUAL_FATAL(tu_edit_f64(g_p, "d", c, a, b, value, &v), 0);
  return v;
}

/* Begin a replica of the primary's pinned @p snap on the follower. */
static int begin_on(snap_store *st, const snap_snapshot *snap, snap_replica **r,
                    struct snap_error *err) {
  struct snap_chunk_layout l;
  CU_ASSERT_EQUAL_FATAL(snap_snapshot_chunks(snap, &l, NULL, NULL), 0);
  return snap_replica_begin(st, "d", snap_snapshot_segment(snap, NULL), l.data_offset, r,
                            err);
}

static int begin(const snap_snapshot *snap, snap_replica **r, struct snap_error *err) {
  return begin_on(g_f, snap, r, err);
}

/* The primary's first version, pinned into *s, and a replica of it begun. */
static void start_v1(snap_snapshot **s, snap_replica **r) {
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(*s, r, NULL), 0);
}

/* Write every chunk the replica still needs (at most @p max), from @p snap. */
static uint64_t fill(snap_replica *r, const snap_snapshot *snap, uint64_t max) {
  struct snap_chunk_layout l;
  snap_replica_layout(r, &l);
  const uint8_t *base = snap_snapshot_segment(snap, NULL);
  uint64_t n = 0;
  for (uint64_t k = 0; k < l.nchunks && n < max; k++)
    if (snap_replica_needs(r, k, NULL)) {
      CU_ASSERT_EQUAL(snap_replica_write(r, k, base + l.data_offset + (k << l.shift),
                                         1ull << l.shift, NULL),
                      0);
      n++;
    }
  return n;
}

static void same_data(uint64_t v) {
  CU_ASSERT_EQUAL(tu_same_version(g_p, g_f, "d", v), 0);
}

/* Bytes the follower's file of version @p v holds. */
static int64_t held(uint64_t v) { return tu_held(g_fdir, "d", v); }

static void test_first_and_mirror(void) {
  open_stores();
  uint64_t v1, v2, got;
  struct snap_error err;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, &v1), 0);
  snap_snapshot *s1;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s1, NULL), 0);
  snap_replica *r;
  CU_ASSERT_EQUAL_FATAL(begin(s1, &r, &err), 0);
  struct snap_replica_stats st;
  snap_replica_stats(r, &st);
  CU_ASSERT_EQUAL(st.chunks, NROWS * 8ull * NCOLS / CHUNK);
  CU_ASSERT_EQUAL(st.fetch, st.chunks); /* an empty store has nothing */
  CU_ASSERT_EQUAL(snap_replica_version(r), v1);
  CU_ASSERT_EQUAL(fill(r, s1, UINT64_MAX), st.chunks);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, &got, &err), 0);
  CU_ASSERT_EQUAL(got, v1);
  snap_unpin(s1);
  same_data(v1);

  /* v2 changes one chunk; the follower borrows the rest from its v1 */
  v2 = edit_rows(1, 100, 200, -1.5);
  snap_snapshot *s2;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s2, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(s2, &r, &err), 0);
  snap_replica_stats(r, &st);
  CU_ASSERT_EQUAL(st.fetch, 1);
  CU_ASSERT_EQUAL(st.borrowed, st.chunks - 1);
  CU_ASSERT_EQUAL(fill(r, s2, UINT64_MAX), 1);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, &got, &err), 0);
  CU_ASSERT_EQUAL(got, v2);
  same_data(v2);
  CU_ASSERT(held(v2) <= 2 * CHUNK + 64 * 1024); /* one chunk plus the manifest */
  /* the same data and data hash as the primary's */
  struct snap_version_info *pv, *fv;
  size_t pn, fn;
  CU_ASSERT_EQUAL_FATAL(snap_version_list(g_p, "d", &pv, &pn, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_version_list(g_f, "d", &fv, &fn, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(pn, fn);
  for (size_t i = 0; i < pn; i++) {
    CU_ASSERT_EQUAL(pv[i].version, fv[i].version);
    CU_ASSERT(!memcmp(pv[i].data_hash, fv[i].data_hash, 16));
  }
  snap_free(pv);
  snap_free(fv);
  snap_unpin(s2);

  /* the follower's dataset is followed: local writes refused */
  struct snap_dataset_info *di;
  size_t dn;
  CU_ASSERT_EQUAL_FATAL(snap_dataset_list(g_f, &di, &dn, NULL), 0);
  CU_ASSERT_EQUAL(dn, 1);
  CU_ASSERT_EQUAL(di[0].followed, 1);
  CU_ASSERT_EQUAL(di[0].next_version, v2 + 1);
  snap_free(di);
  CU_ASSERT_EQUAL(tu_publish_f64(g_f, "d", 10, 1, 1, NULL), SNAP_EINVAL);
  snap_edit *ed;
  CU_ASSERT_EQUAL_FATAL(snap_edit_begin(g_f, "d", &ed, NULL), 0);
  CU_ASSERT_EQUAL(snap_edit_commit(ed, NULL, &err), SNAP_EINVAL);
  CU_ASSERT(strstr(err.message, "follows a primary") != NULL);
  snap_edit_free(ed);
  CU_ASSERT_EQUAL(snap_rollback(g_f, "d", v1, &err), SNAP_EINVAL);
  /* promoted: publishes again, numbered after the primary's */
  CU_ASSERT_EQUAL(snap_dataset_set_followed(g_f, "d", 0, NULL), 0);
  CU_ASSERT_EQUAL(tu_publish_f64(g_f, "d", 10, 1, 1, &got), 0);
  CU_ASSERT_EQUAL(got, v2 + 1);
  close_stores();
}

static void test_jump(void) {
  open_stores();
  uint64_t v1, v3, got;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, &v1), 0);
  snap_snapshot *s;
  snap_replica *r;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(s, &r, NULL), 0);
  fill(r, s, UINT64_MAX);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, NULL, NULL), 0);
  snap_unpin(s);
  /* v2 and v3 change one chunk each; the follower goes from v1 to v3 */
  edit_rows(0, 0, 10, 1.0);
  v3 = edit_rows(3, NROWS - 10, NROWS, 2.0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(s, &r, NULL), 0);
  struct snap_replica_stats st;
  snap_replica_stats(r, &st);
  CU_ASSERT_EQUAL(st.fetch, 2);
  CU_ASSERT_EQUAL(fill(r, s, UINT64_MAX), 2);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, &got, NULL), 0);
  CU_ASSERT_EQUAL(got, v3);
  snap_unpin(s);
  same_data(v3);
  /* an older version than the current one: refused */
  CU_ASSERT_EQUAL_FATAL(snap_pin_version(g_p, "d", v3 - 1, &s, NULL), 0);
  struct snap_error err;
  CU_ASSERT_EQUAL(begin(s, &r, &err), SNAP_ECONFLICT);
  CU_ASSERT_PTR_NULL(r);
  snap_unpin(s);
  close_stores();
}

/* A full republish on the primary (every chunk its own): the follower copies
 * the equal chunks from its current version instead of fetching them. */
static void test_copied(void) {
  open_stores();
  snap_snapshot *s;
  snap_replica *r;
  start_v1(&s, &r);
  fill(r, s, UINT64_MAX);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, NULL, NULL), 0);
  snap_unpin(s);
  uint64_t v2;
  CU_ASSERT_EQUAL_FATAL(snap_compact(g_p, "d", &v2, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(s, &r, NULL), 0);
  struct snap_replica_stats st;
  snap_replica_stats(r, &st);
  CU_ASSERT_EQUAL(st.fetch, 0);
  CU_ASSERT_EQUAL(st.copied, st.chunks);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, NULL, NULL), 0);
  snap_unpin(s);
  same_data(v2);
  close_stores();
}

/* A chunk written piece by piece: in order, restartable, hash checked at its
 * last piece. */
static void test_feed(void) {
  open_stores();
  struct snap_error err;
  snap_snapshot *s;
  snap_replica *r;
  start_v1(&s, &r);
  struct snap_chunk_layout l;
  snap_replica_layout(r, &l);
  const uint8_t *base = snap_snapshot_segment(s, NULL);
  for (uint64_t k = 0; k < l.nchunks; k++) {
    const uint8_t *c = base + l.data_offset + (k << l.shift);
    if (k == 2) { /* a wrong byte: refused at the last piece, fed again from 0 */
      static uint8_t bad[CHUNK];
      memcpy(bad, c, CHUNK);
      bad[100] ^= 1;
      CU_ASSERT_EQUAL(snap_replica_feed(r, k, 0, bad, 1000, NULL), 0);
      CU_ASSERT_EQUAL(snap_replica_feed(r, k, 2000, bad + 2000, 10, &err), SNAP_EINVAL);
      CU_ASSERT_EQUAL(snap_replica_feed(r, k, 1000, bad + 1000, CHUNK - 1000, &err),
                      SNAP_ECHECKSUM);
      CU_ASSERT_EQUAL(snap_replica_needs(r, k, NULL), 1);
    }
    for (uint64_t pos = 0; pos < CHUNK; pos += 4096 + 17) {
      size_t n = CHUNK - pos < 4096 + 17 ? CHUNK - pos : 4096 + 17;
      CU_ASSERT_EQUAL(snap_replica_feed(r, k, pos, c + pos, n, NULL), 0);
    }
    CU_ASSERT_EQUAL(snap_replica_needs(r, k, NULL), 0);
  }
  CU_ASSERT_EQUAL(snap_replica_feed(r, l.nchunks, 0, base, 1, &err), SNAP_EINVAL);
  CU_ASSERT_EQUAL_FATAL(snap_replica_commit(r, NULL, &err), 0);
  snap_unpin(s);
  same_data(1);
  close_stores();
}

static void test_bad_chunks(void) {
  open_stores();
  struct snap_error err;
  snap_snapshot *s;
  snap_replica *r;
  start_v1(&s, &r);
  static uint8_t junk[CHUNK];
  memset(junk, 0x5a, sizeof junk);
  CU_ASSERT_EQUAL(snap_replica_write(r, 3, junk, CHUNK, &err), SNAP_ECHECKSUM);
  CU_ASSERT(strstr(err.message, "chunk 3") != NULL);
  CU_ASSERT_EQUAL(snap_replica_needs(r, 3, NULL), 1);
  CU_ASSERT_EQUAL(snap_replica_write(r, 3, junk, CHUNK - 1, &err), SNAP_EINVAL);
  CU_ASSERT_EQUAL(snap_replica_write(r, 1u << 30, junk, CHUNK, &err), SNAP_EINVAL);
  fill(r, s, 5);
  CU_ASSERT_EQUAL(snap_replica_commit(r, NULL, &err), SNAP_EINVAL); /* frees r */
  CU_ASSERT(strstr(err.message, "still missing") != NULL);
  uint64_t v;
  CU_ASSERT_EQUAL(snap_current_version(g_f, "d", &v, NULL), SNAP_ENOTFOUND);
  /* a damaged head: its header hash refuses it */
  struct snap_chunk_layout l;
  snap_snapshot_chunks(s, &l, NULL, NULL);
  uint8_t *head = malloc(l.data_offset);
  memcpy(head, snap_snapshot_segment(s, NULL), l.data_offset);
  head[SNAP__H_NROWS] ^= 1;
  CU_ASSERT_EQUAL(snap_replica_begin(g_f, "d", head, l.data_offset, &r, &err),
                  SNAP_ECORRUPT);
  CU_ASSERT_EQUAL(snap_replica_begin(g_f, "d", head, l.data_offset - 1, &r, &err),
                  SNAP_EINVAL);
  CU_ASSERT_EQUAL(snap_replica_begin(g_f, "d", head, 100, &r, &err), SNAP_ECORRUPT);
  free(head);
  snap_unpin(s);
  close_stores();
}

/* A follower killed half-way through keeps what it wrote; a replica of a newer
 * version removes it. */
static void test_resume_after_kill(void) {
  open_stores();
  snap_snapshot *s;
  snap_replica *r;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  pid_t pid = fork();
  if (pid == 0) {
    snap_store *f;
    if (snap_store_open(g_fdir, 0, &f, NULL) || begin_on(f, s, &r, NULL)) _exit(3);
    fill(r, s, 50);
    raise(SIGKILL);
    _exit(4);
  }
  int status;
  CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
  CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  CU_ASSERT_EQUAL_FATAL(begin(s, &r, NULL), 0);
  struct snap_replica_stats st;
  snap_replica_stats(r, &st);
  CU_ASSERT_EQUAL(st.resumed, 50);
  CU_ASSERT_EQUAL(st.fetch, st.chunks - 50);
  snap_replica_free(r);
  snap_unpin(s);
  /* a newer version: the old .replica file goes */
  uint64_t v2 = edit_rows(0, 0, 1, 9.0);
  char part[4096];
  snprintf(part, sizeof part, "%s/segments/d/.replica-%llu", g_fdir,
           (unsigned long long)(v2 - 1));
  CU_ASSERT_EQUAL(access(part, F_OK), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(begin(s, &r, NULL), 0);
  CU_ASSERT_EQUAL(access(part, F_OK), -1);
  fill(r, s, UINT64_MAX);
  CU_ASSERT_EQUAL(snap_replica_commit(r, NULL, NULL), 0);
  snap_unpin(s);
  same_data(v2);
  close_stores();
}

int main(void) {
  setenv("LIBSNAP_CHUNK_SHIFT", "16", 1); /* the tests count 64 KiB chunks */
  static const tu_test tests[] = {
      {"a first replica, then one that borrows as the primary does",
       test_first_and_mirror},
      {"a follower that jumps versions fetches only what differs", test_jump},
      {"a full republish is copied locally, not fetched", test_copied},
      {"bad chunks, missing chunks and damaged heads are refused", test_bad_chunks},
      {"a chunk fed piece by piece", test_feed},
      {"a follower killed mid-way resumes", test_resume_after_kill},
      {NULL, NULL}};
  return tu_run("replica", tests);
}
