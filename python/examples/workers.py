# SPDX-License-Identifier: LGPL-2.1-or-later
"""The motivating workload: N worker processes answer random queries against the
current version of one large table while a writer refreshes it every few seconds.

    python python/examples/workers.py [--workers 10] [--rows 1000000]
        [--cols 64] [--seconds 15] [--refresh 4] [--store DIR]

Every cell of version v holds v * 1000 + column, so each worker checks every value
it reads: a torn or mixed version would show up as a wrong read. At the end it
prints, per worker, queries/s, versions seen and wrong reads, and the memory of all
workers (sum of PSS) beside the table size: the table is in memory once, however
many workers read it.
"""
import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

import libsnap

DATASET = "prices"


def table(version, rows, cols):
    return np.broadcast_to(version * 1000.0 + np.arange(cols), (rows, cols)).copy()


def worker(path, seconds, ready, results):
    store = libsnap.open(path, readonly=True)
    rng = np.random.default_rng(os.getpid())
    queries = wrong = 0
    seen = set()
    deadline = None
    while True:
        with store.pin(DATASET) as snap:
            df = snap.to_pandas()  # zero-copy frame over shared memory
            v = snap.version
        if v not in seen:
            seen.add(v)
            df.to_numpy().sum()  # full access: touch the whole table once per version
            if deadline is None:
                ready.put(os.getpid())
                deadline = time.monotonic() + seconds
        m = df.to_numpy()
        rows, cols = m.shape
        for _ in range(50):  # a "query": 100 random cells, each checked
            r = rng.integers(0, rows, 100)
            c = rng.integers(0, cols, 100)
            wrong += int(np.count_nonzero(m[r, c] != v * 1000.0 + c))
            queries += 1
        del df, m
        if time.monotonic() > deadline:
            break
    store.trim()
    results.put((os.getpid(), queries / seconds, sorted(seen), wrong))


def pss_kb(pid, segments_dir):
    """(total PSS, PSS of libsnap segment mappings) of a process, in kB."""
    total = seg = 0
    in_seg = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                in_seg = len(head) >= 6 and head[5].startswith(segments_dir)
            elif line.startswith("Pss:"):
                kb = int(head[1])
                total += kb
                if in_seg:
                    seg += kb
    return total, seg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--refresh", type=float, default=4, help="seconds between refreshes")
    ap.add_argument("--store", default=os.environ.get("LIBSNAP_STORE", "/dev/shm/libsnap/demo"))
    args = ap.parse_args()

    store = libsnap.open(args.store, create=True)
    nbytes = args.rows * args.cols * 8
    print(f"store {args.store}: table {DATASET!r} {args.rows} x {args.cols} float64 "
          f"({nbytes / 2**20:.0f} MiB), {args.workers} workers, {args.seconds:.0f} s")
    version = store.current_version(DATASET) if DATASET in store.datasets() else 0
    t0 = time.perf_counter()
    version = store.publish(DATASET, table(version + 1, args.rows, args.cols))
    print(f"published v{version} in {time.perf_counter() - t0:.2f} s")

    ctx = mp.get_context("spawn")  # independent workers, as a server would start them
    ready, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(args.store, args.seconds, ready, results))
             for _ in range(args.workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    end = time.monotonic() + args.seconds
    refreshes = []
    segdir = os.path.join(os.path.realpath(args.store), "segments")
    mem = []
    while time.monotonic() + args.refresh < end:
        time.sleep(args.refresh)  # the refresh cadence, not synchronisation
        # memory while every worker is settled on the current version
        mem = [pss_kb(p.pid, segdir) for p in procs if p.is_alive()]
        t0 = time.perf_counter()
        version = store.publish(DATASET, table(version + 1, args.rows, args.cols))
        refreshes.append(time.perf_counter() - t0)
        print(f"refresh: published v{version} in {refreshes[-1]:.2f} s")
    if not mem:
        mem = [pss_kb(p.pid, segdir) for p in procs if p.is_alive()]
    out = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    print(f"\n{'worker':>8} {'queries/s':>10} {'versions seen':>20} {'wrong reads':>12}")
    for pid, qps, seen, wrong in sorted(out):
        print(f"{pid:>8} {qps:>10.0f} {','.join(map(str, seen)):>20} {wrong:>12}")
    total_wrong = sum(o[3] for o in out)
    if mem:
        tot, seg = sum(m[0] for m in mem), sum(m[1] for m in mem)
        print(f"\nmemory of {len(mem)} workers: sum of PSS {tot / 1024:.0f} MiB, of which "
              f"table mappings {seg / 1024:.0f} MiB = {seg * 1024 / nbytes:.2f} x the table "
              f"({nbytes / 2**20:.0f} MiB); the rest is each interpreter's own memory")
    print(f"{sum(o[1] for o in out):.0f} queries/s in all, {total_wrong} wrong reads, "
          f"{len(refreshes)} refreshes")
    gc = store.gc()
    print(f"after the workers exit: {gc.draining_versions} version(s) still draining, "
          f"{len(store.versions(DATASET))} kept")
    return 1 if total_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
