/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The README's quick start: publish a two-column table, then pin and read it. */
#include <libsnap/libsnap.h>
#include <stdio.h>

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/dev/shm/libsnap/quickstart";
  struct snap_error err;
  snap_store *store;
  if (snap_store_open(dir, SNAP_CREATE, &store, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }

  /* Writer: describe the table, fill the buffers in place, commit. */
  struct snap_field fields[] = {{.name = "price", .type = SNAP_FLOAT64},
                                {.name = "qty", .type = SNAP_INT64}};
  struct snap_schema schema = {.nrows = 3, .ncols = 2, .fields = fields};
  snap_publish *pub;
  if (snap_publish_begin(store, "orders", &schema, &pub, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  struct snap_fill price, qty;
  snap_publish_fill(pub, 0, &price, NULL);
  snap_publish_fill(pub, 1, &qty, NULL);
  for (int r = 0; r < 3; r++) {
    ((double *)price.values)[r] = 10.5 * (r + 1);
    ((int64_t *)qty.values)[r] = r + 1;
  }
  uint64_t version;
  if (snap_publish_commit(pub, &version, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }

  /* Reader (any process): pin the current version, read, unpin. */
  snap_snapshot *snap;
  if (snap_pin(store, "orders", &snap, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  const double *p = snap_snapshot_column(snap, 0)->values;
  const int64_t *q = snap_snapshot_column(snap, 1)->values;
  for (uint64_t r = 0; r < snap_snapshot_nrows(snap); r++)
    printf("v%llu row %llu: price %.2f qty %lld\n",
           (unsigned long long)snap_snapshot_version(snap), (unsigned long long)r, p[r],
           (long long)q[r]);
  snap_unpin(snap);
  snap_store_close(store);
  return 0;
}
