/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the snap_ingest library: what its parsers (ingest_csv.c and the
 * csv_*.c files, ingest_npy.c) share with the entry points in ingest.c. Not
 * installed, not seen by snapctl, writerd or the tests.
 */
#ifndef SNAP_INGEST_INTERNAL_H
#define SNAP_INGEST_INTERNAL_H

#include "snap_ingest/ingest.h"

/* Fill err (if any) with status and a printf-style message; returns status.
 * Shared by the parsers. */
int ingest_error(struct snap_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether the caller asked to cancel: an atomic load (another thread sets the
 * flag with __atomic_store_n; a plain volatile read would race). */
static inline int ingest_cancelled(const struct ingest_options *o) {
  return o->cancel && __atomic_load_n(o->cancel, __ATOMIC_RELAXED);
}

/* Polled by the parsers about every 64k rows: 0 to go on; -ECANCELED when the
 * caller asked to cancel; SNAP_EBUSY when another process has opened the input
 * for writing since ingest_fd() leased it (the kernel lets that open wait while
 * the lease is being broken: the ingest must stop reading the file now). */
int ingest_interrupted(const struct ingest_options *o, const char *name,
                       struct snap_error *err);

#endif /* SNAP_INGEST_INTERNAL_H */
