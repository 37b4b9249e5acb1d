/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snap_sync against a directory remote (the same code paths as S3 above
 * remote.c; tests/sync runs them against SeaweedFS): push and follow, what a
 * change costs, jumps, corrupted and missing objects, two primaries, the
 * sweep, and the announcement's parser on bad input. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

#define NROWS (1u << 18) /* 2 MiB per float64 column: 32 chunks of 64 KiB */
#define NCOLS 4
#define CHUNK (64u << 10)
#define NCHUNKS (NROWS * 8ull * NCOLS / CHUNK)

static char *g_pdir, *g_fdir, *g_rdir;
static snap_store *g_p, *g_f;
static snap_remote *g_remote;

static void setup(void) {
  g_p = tu_store_create("sync-p", &g_pdir);
  g_f = tu_store_create("sync-f", &g_fdir);
  g_rdir = tu_store_dir("sync-remote");
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_p);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g_f);
  struct snap_sync_error err;
  CU_ASSERT_EQUAL_FATAL(snap_remote_open(g_rdir, &g_remote, &err), 0);
}

static void teardown(void) {
  snap_remote_close(g_remote);
  tu_store_destroy(g_p, g_pdir);
  tu_store_destroy(g_f, g_fdir);
  tu_store_remove(g_rdir);
  free(g_rdir);
}

static uint64_t edit_rows(uint32_t c, uint64_t a, uint64_t b, double value) {
  uint64_t v = 0;
  CU_ASSERT_EQUAL_FATAL(tu_edit_f64(g_p, "d", c, a, b, value, &v), 0);
  return v;
}

static void same_data(uint64_t v) {
  CU_ASSERT_EQUAL(tu_same_version(g_p, g_f, "d", v), 0);
}

static int push(snap_pusher *p, struct snap_push_result *res) {
  struct snap_sync_error err = {0};
  int rc = snap_push(p, "d", res, &err);
  if (rc) fprintf(stderr, "push: %s\n", err.message);
  return rc;
}

static int follow(snap_follower *f, struct snap_follow_result *res,
                  struct snap_sync_error *err) {
  int rc = snap_follow_poll(f, "d", res, err);
  if (rc) fprintf(stderr, "follow: %s\n", err->message);
  return rc;
}

static void test_push_follow(void) {
  setup();
  snap_pusher *p;
  snap_follower *f;
  struct snap_push_options po = {.keep = 2, .grace_s = 0, .part_size = 5u << 20};
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, &po, &p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_follower_create(g_f, g_remote, NULL, &f, NULL), 0);
  struct snap_push_result pr;
  struct snap_follow_result fr;
  struct snap_sync_error err;
  uint64_t v1;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, &v1), 0);
  /* nothing announced yet */
  CU_ASSERT_EQUAL(snap_follow_poll(f, "d", &fr, &err), SNAP_S3_ENOTFOUND);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL(pr.version, v1);
  CU_ASSERT_EQUAL(pr.new_chunks, NCHUNKS);
  CU_ASSERT(pr.bytes >= NCHUNKS * CHUNK);
  /* again: nothing to do */
  CU_ASSERT_EQUAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL(pr.version, 0);
  CU_ASSERT_EQUAL(pr.bytes, 0);
  char **names;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(snap_follow_datasets(f, &names, &n, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(n, 1);
  CU_ASSERT_STRING_EQUAL(names[0], "d");
  free(names[0]);
  free(names);
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  CU_ASSERT_EQUAL(fr.flipped, 1);
  CU_ASSERT_EQUAL(fr.announced, v1);
  CU_ASSERT_EQUAL(fr.chunks.fetch, NCHUNKS);
  CU_ASSERT_EQUAL(fr.bytes - fr.manifest_bytes, NCHUNKS * CHUNK);
  CU_ASSERT_EQUAL(fr.deltas, 0);
  same_data(v1);
  /* unchanged: a poll costs nothing */
  CU_ASSERT_EQUAL(follow(f, &fr, &err), 0);
  CU_ASSERT_EQUAL(fr.unchanged, 1);
  CU_ASSERT_EQUAL(fr.flipped, 0);
  CU_ASSERT_EQUAL(fr.bytes, 0);
  /* a change of 800 bytes in one chunk: the chunk and its delta up, the delta
   * (its 800 bytes and a run header) down; with keep 1 the base of the delta
   * is retired at the flip, and the pusher's own pin keeps it */
  CU_ASSERT_EQUAL(snap_store_set_keep(g_p, "d", 1, NULL), 0);
  uint64_t v2 = edit_rows(2, 5000, 5100, 3.25);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL(pr.version, v2);
  CU_ASSERT_EQUAL(pr.new_chunks, 1);
  CU_ASSERT_EQUAL(pr.deltas, 1);
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  CU_ASSERT_EQUAL(fr.flipped, 1);
  CU_ASSERT_EQUAL(fr.chunks.fetch, 1);
  CU_ASSERT_EQUAL(fr.deltas, 1);
  CU_ASSERT_EQUAL(fr.chunks.borrowed, NCHUNKS - 1);
  CU_ASSERT(fr.bytes - fr.manifest_bytes > 0 && fr.bytes - fr.manifest_bytes <= 800 + 8);
  same_data(v2);
  /* the follower refuses local publishes */
  CU_ASSERT_EQUAL(tu_publish_f64(g_f, "d", 10, 1, 1, NULL), SNAP_EINVAL);
  /* keep 2: after v3 the manifest of v1 is swept (grace 0), its pack stays
   * (v2 and v3 still use its chunks) */
  uint64_t v3 = edit_rows(0, 0, 1, 1.0);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL(pr.swept, 1);
  char path[4200];
  snprintf(path, sizeof path, "%s/d/v/%llu.manifest", g_rdir, (unsigned long long)v1);
  CU_ASSERT_EQUAL(access(path, F_OK), -1);
  snprintf(path, sizeof path, "%s/d/v/%llu.manifest", g_rdir, (unsigned long long)v2);
  CU_ASSERT_EQUAL(access(path, F_OK), 0);
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  same_data(v3);
  snap_pusher_free(p);
  snap_follower_free(f);
  teardown();
}

/* A follower that missed versions jumps to the newest, fetching what differs
 * from its current version; a fresh pusher (a restarted primary) continues
 * from the announcement without sending what is there. */
static void test_jump_and_restart(void) {
  setup();
  snap_pusher *p;
  snap_follower *f;
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, NULL, &p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_follower_create(g_f, g_remote, NULL, &f, NULL), 0);
  struct snap_push_result pr;
  struct snap_follow_result fr;
  struct snap_sync_error err;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  edit_rows(0, 0, 1, 1.0);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  snap_pusher_free(p); /* the primary restarts */
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, NULL, &p, NULL), 0);
  uint64_t v3 = edit_rows(3, NROWS - 1, NROWS, 2.0);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  CU_ASSERT_EQUAL(pr.new_chunks, 1); /* the rest is located in the remote */
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  /* chunk 0 changed in v2, which this follower skipped: whole; the last one
   * changed in v3 only: its delta against v2, which equals v1 there */
  CU_ASSERT_EQUAL(fr.chunks.fetch, 2);
  CU_ASSERT_EQUAL(fr.deltas, 1);
  CU_ASSERT(fr.bytes - fr.manifest_bytes > CHUNK &&
            fr.bytes - fr.manifest_bytes <= CHUNK + 8 + 8);
  same_data(v3);
  snap_pusher_free(p);
  snap_follower_free(f);
  teardown();
}

/* Overwrite @p len bytes at @p off of the remote's pack (the only one). */
static void damage_pack(uint8_t x) {
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "ls %s/d/pack/", g_rdir);
  FILE *ls = popen(cmd, "r");
  char name[64] = "";
  CU_ASSERT_PTR_NOT_NULL_FATAL(fgets(name, sizeof name, ls));
  pclose(ls);
  name[strcspn(name, "\n")] = 0;
  snprintf(cmd, sizeof cmd, "%s/d/pack/%s", g_rdir, name);
  int fd = open(cmd, O_WRONLY);
  CU_ASSERT_FATAL(fd >= 0);
  CU_ASSERT_EQUAL(pwrite(fd, &x, 1, 3 * CHUNK + 17), 1);
  close(fd);
}

static void test_corrupt_pack(void) {
  setup();
  snap_pusher *p;
  snap_follower *f;
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, NULL, &p, NULL), 0);
  struct snap_follow_options fo = {.retries = 2};
  CU_ASSERT_EQUAL_FATAL(snap_follower_create(g_f, g_remote, &fo, &f, NULL), 0);
  struct snap_push_result pr;
  struct snap_follow_result fr;
  struct snap_sync_error err;
  uint64_t v1;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, &v1), 0);
  CU_ASSERT_EQUAL_FATAL(push(p, &pr), 0);
  damage_pack(0xee);
  CU_ASSERT_EQUAL(snap_follow_poll(f, "d", &fr, &err), SNAP_ECHECKSUM);
  CU_ASSERT_STRING_EQUAL(err.kind, "verify");
  CU_ASSERT(strstr(err.message, "failed their chunk hashes 2 times") != NULL);
  CU_ASSERT_EQUAL(fr.refetched, 2);
  uint64_t cur = 99;
  CU_ASSERT_EQUAL(snap_current_version(g_f, "d", &cur, NULL), SNAP_ENOTFOUND);
  /* repaired: the next poll fetches only the chunk that was refused */
  snap_snapshot *s;
  CU_ASSERT_EQUAL_FATAL(snap_pin(g_p, "d", &s, NULL), 0);
  struct snap_chunk_layout l;
  snap_snapshot_chunks(s, &l, NULL, NULL);
  damage_pack(
      ((const uint8_t *)snap_snapshot_segment(s, NULL))[l.data_offset + 3 * CHUNK + 17]);
  snap_unpin(s);
  CU_ASSERT_EQUAL_FATAL(follow(f, &fr, &err), 0);
  CU_ASSERT_EQUAL(fr.flipped, 1);
  CU_ASSERT_EQUAL(fr.chunks.resumed, NCHUNKS - 1);
  CU_ASSERT_EQUAL(fr.bytes - fr.manifest_bytes, CHUNK);
  same_data(v1);
  snap_pusher_free(p);
  snap_follower_free(f);
  teardown();
}

/* Two primaries on one prefix: the second's announcement is refused, and the
 * first stops when it finds its announcement changed. */
static void test_two_primaries(void) {
  setup();
  snap_pusher *a, *b;
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, NULL, &a, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(snap_pusher_create(g_p, g_remote, NULL, &b, NULL), 0);
  struct snap_push_result pr;
  struct snap_sync_error err;
  CU_ASSERT_EQUAL_FATAL(tu_publish_f64(g_p, "d", NROWS, NCOLS, 7, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(push(a, &pr), 0);
  CU_ASSERT_EQUAL_FATAL(push(b, &pr), 0); /* b reads a's announcement: nothing to do */
  edit_rows(0, 0, 1, 1.0);
  CU_ASSERT_EQUAL_FATAL(push(b, &pr), 0); /* b announces v2 */
  edit_rows(0, 0, 1, 2.0);
  CU_ASSERT_EQUAL(snap_push(a, "d", &pr, &err), SNAP_ECONFLICT);
  CU_ASSERT(strstr(err.message, "another writer") != NULL);
  CU_ASSERT_EQUAL(snap_push(a, "d", &pr, &err), SNAP_ECONFLICT); /* stays stopped */
  snap_pusher_free(a);
  snap_pusher_free(b);
  teardown();
}

static void test_announce_parser(void) {
  struct announce a = {.dataset = "prices",
                       .version = 42,
                       .published_ns = 7,
                       .nkept = 2,
                       .kept = {42, 41},
                       .manifest = "prices/v/42.manifest",
                       .data_hash = "00112233445566778899aabbccddeeff",
                       .host = "db\"1",
                       .pid = 4242};
  char text[4096], bad[4096];
  int n = announce_write(&a, text, sizeof text);
  CU_ASSERT_FATAL(n > 0);
  struct announce b;
  struct snap_sync_error err;
  CU_ASSERT_EQUAL_FATAL(announce_parse(text, (size_t)n, "k", &b, &err), 0);
  CU_ASSERT_EQUAL(b.version, 42);
  CU_ASSERT_EQUAL(b.nkept, 2);
  CU_ASSERT_EQUAL(b.kept[1], 41);
  CU_ASSERT_STRING_EQUAL(b.host, "db\"1");
  CU_ASSERT_EQUAL(b.pid, 4242);
  /* every truncation is refused, never read past */
  for (int i = 0; i < n - 1; i++) {
    memcpy(bad, text, (size_t)i);
    CU_ASSERT_NOT_EQUAL(announce_parse(bad, (size_t)i, "k", &b, &err), 0);
  }
  const char *refused[] = {
      "{\"libsnap_announce\": 2, \"version\": 1}",
      "{\"libsnap_announce\": 1}",
      "{\"libsnap_announce\": 1, \"version\": 0}",
      "{\"libsnap_announce\": 1, \"version\": 99999999999999999999}",
      "{\"libsnap_announce\": 1, \"version\": -1}",
      "{\"libsnap_announce\": 1, \"version\": 1} x",
      "[1]",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    CU_ASSERT_NOT_EQUAL(announce_parse(refused[i], strlen(refused[i]), "k", &b, &err), 0);
  const char *newer =
      "{\"libsnap_announce\": 1, \"version\": 3, \"x\": {\"y\": [1, "
      "\"z\", null]}, \"flag\": true}";
  CU_ASSERT_EQUAL(announce_parse(newer, strlen(newer), "k", &b, &err), 0);
}

/* Deltas rebuild the chunk exactly, stay within their bound, and refuse runs
 * that do not fit. */
static void test_deltas(void) {
  enum { N = 1 << 16 };
  static uint8_t a[N], b[N], c[N];
  srand(7);
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < N; i++) a[i] = (uint8_t)rand();
    memcpy(b, a, N);
    int spans = rand() % 20;
    for (int k = 0; k < spans; k++) {
      int at = rand() % N, len = rand() % 300;
      for (int i = at; i < at + len && i < N; i++)
        b[i] = (uint8_t)(b[i] + 1 + rand() % 255);
    }
    uint8_t *d = NULL;
    size_t n = 0, cap = 0;
    CU_ASSERT_EQUAL_FATAL(delta_make(a, b, N, N, &d, &n, &cap), 0);
    memcpy(c, a, N);
    CU_ASSERT_EQUAL(delta_apply(c, N, d, (uint32_t)n), 0);
    CU_ASSERT(!memcmp(c, b, N));
    if (!spans) CU_ASSERT_EQUAL(n, 0);
    /* a bound below the delta's size: refused, nothing appended */
    if (n > 16) {
      size_t m = 0, mcap = 0;
      uint8_t *e = NULL;
      CU_ASSERT_EQUAL(delta_make(a, b, N, (uint32_t)n - 1, &e, &m, &mcap), 1);
      CU_ASSERT_EQUAL(m, 0);
      free(e);
      /* truncated: refused */
      CU_ASSERT_EQUAL(delta_apply(c, N, d, (uint32_t)n - 1), -1);
    }
    free(d);
  }
  /* a run past the chunk's end: refused */
  uint8_t run[16] = {0};
  uint32_t off = N - 4, len = 8;
  memcpy(run, &off, 4);
  memcpy(run + 4, &len, 4);
  CU_ASSERT_EQUAL(delta_apply(c, N, run, 16), -1);
}

int main(void) {
  setenv("LIBSNAP_CHUNK_SHIFT", "16", 1);
  static const tu_test tests[] = {
      {"push, follow, a one-chunk change, the sweep", test_push_follow},
      {"a follower jumps; a restarted primary sends only what is new",
       test_jump_and_restart},
      {"a corrupted pack is refused, then fetched again", test_corrupt_pack},
      {"two primaries on one prefix", test_two_primaries},
      {"the announcement's parser", test_announce_parser},
      {"deltas", test_deltas},
      {NULL, NULL}};
  return tu_run("sync", tests);
}
