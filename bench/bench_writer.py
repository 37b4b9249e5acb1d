# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writers without a private copy (issue "writers without a private copy"):
store.edit() and store.build() against a full publish, same run, medians.

    python bench/bench_writer.py [--rows 2700000] [--cols 100] [--readers 10]
                                 [--runs 3] [--doc FILE]

Every round starts with N reader processes pinning the current version and
touching every page of it (they hold the table, as query workers do), then:

  edit     ``with store.edit(name) as df: df.iloc[a:b] = df.iloc[a:b] * 1.01``
           on 1% contiguous rows, timed from entering the block to the flip
           (leaving it); baseline: a full publish of a private frame of the
           same table (share=False), timed in the same round.
           Memory: the store's tmpfs bytes (segment files' st_blocks: the base
           plus the new version's own chunks) plus the writer's growth of
           anonymous memory (the pages copied on write), right after the flip
           with the frame still alive (both only grow until then), over the
           table's bytes.
  build    ``with store.build(name, schema, nrows) as b:`` filling every column
           in place (numpy's Generator.random(out=b[col])), while the readers
           pin the old version; memory as above, after the fill and after the
           flip; the baseline is the usual way: the same data generated into a
           private frame, then store.publish(frame): its peak is the frame
           plus both versions.

Needs no root. The store is a temporary directory under /dev/shm (--store).
Before each timed step the tmpfs's free pages are made recently used
(bench_publish.warm_free_pages): in a VM whose balloon hands free pages back to
the host, a step that touches them first would otherwise pay for that (the
same full publish took 0.85 s in one run and 2.4 s in another without it).
"""
import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import libsnap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_incremental import reader, tmpfs_bytes  # noqa: E402
from bench_publish import warm_free_pages  # noqa: E402


def anon_bytes():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


class Readers:
    """N processes pinning the current version until the block ends. Spawned,
    not forked: a forked child would share the writer's private memory copy on
    write, and the writer's own writes to its heap would then pay copies that
    no separate reader process causes (seen: 4 ms of numpy became 12 ms)."""

    def __init__(self, store_dir, name, n):
        ctx = mp.get_context("spawn")
        self.ready = [ctx.Event() for _ in range(n)]
        self.release = ctx.Event()
        self.procs = [ctx.Process(target=reader, args=(store_dir, name, r, self.release))
                      for r in self.ready]

    def __enter__(self):
        for p in self.procs:
            p.start()
        for e in self.ready:
            e.wait()
        return self

    def __exit__(self, *exc):
        self.release.set()
        for p in self.procs:
            p.join()


@contextlib.contextmanager
def held(store, store_dir, name, readers):
    """A round: only the current version left, @readers processes holding it,
    retention held off inside (freeing an unrelated old version is not the
    measured step's cost)."""
    store.set_keep(1, name)
    store.gc(name)
    with Readers(store_dir, name, readers):
        store.set_keep(1000, name)
        yield


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_700_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--readers", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", default=None)
    ap.add_argument("--doc", default=None,
                    help="also write the figures as a markdown page (docs/benchmarks-writer.md)")
    a = ap.parse_args()
    base = a.store or tempfile.mkdtemp(prefix="bench-writer-", dir="/dev/shm")
    store_dir = os.path.join(base, "store")
    name = "t"
    cols = [f"c{j}" for j in range(a.cols)]
    table_bytes = a.rows * a.cols * 8
    load = os.getloadavg()[0]
    print(f"table {a.rows} x {a.cols} float64 = {table_bytes / 2**30:.2f} GiB, "
          f"{a.readers} readers holding it, medians of {a.runs}, load {load:.2f}")
    store = libsnap.Store(store_dir, create=True)
    rng = np.random.default_rng(1)
    try:
        store.publish(name, pd.DataFrame(np.asfortranarray(rng.random((a.rows, a.cols))),
                                         columns=cols, copy=False), share=False)
        n1 = a.rows // 100
        edit_t, full_t, edit_mem, written = [], [], [], []
        for run in range(a.runs):
            # baseline: a full publish of a private frame of the same table
            frame = store.read(name).copy()  # private, outside the timing
            frame.iloc[0, 0] += 1
            with held(store, store_dir, name, a.readers):
                warm_free_pages(store_dir, table_bytes)  # see bench_publish.py
                t0 = time.perf_counter()
                store.publish(name, frame, share=False)
                full_t.append(time.perf_counter() - t0)
            del frame
            lo = (run * 7919 * n1) % (a.rows - n1)
            with held(store, store_dir, name, a.readers):
                warm_free_pages(store_dir, table_bytes)
                a0 = anon_bytes()
                t0 = time.perf_counter()
                ed = store.edit(name)
                with ed as df:
                    df.iloc[lo:lo + n1] = df.iloc[lo:lo + n1] * 1.01
                edit_t.append(time.perf_counter() - t0)
                edit_mem.append((tmpfs_bytes(store_dir) + anon_bytes() - a0) / table_bytes)
                written.append(ed.written_bytes())
                del df, ed
        e, f = statistics.median(edit_t), statistics.median(full_t)
        print(f"edit of 1% contiguous rows ({n1} rows x {a.cols}):")
        print(f"  time, entering the block to the flip: {e * 1e3:.1f} ms; full publish of "
              f"the same table {f * 1e3:.0f} ms; ratio {e / f:.3f} (target <= 0.05)")
        print(f"  peak memory (store + writer's private growth): {max(edit_mem):.3f}x the "
              f"table (target <= 1.05x); pages written {statistics.median(written) / 2**20:.1f}"
              f" MiB")

        build_mem, build_t, usual_mem, usual_t = [], [], [], []
        for run in range(a.runs):
            with held(store, store_dir, name, a.readers):
                g = np.random.default_rng(100 + run)
                a0 = anon_bytes()
                t0 = time.perf_counter()
                with store.build(name, {c: "float64" for c in cols}, a.rows) as b:
                    for c in cols:
                        g.random(out=b[c])
                    filled = tmpfs_bytes(store_dir) + anon_bytes() - a0
                build_t.append(time.perf_counter() - t0)
                after = tmpfs_bytes(store_dir) + anon_bytes() - a0
                build_mem.append(max(filled, after) / table_bytes)
                del b
            with held(store, store_dir, name, a.readers):
                g = np.random.default_rng(200 + run)
                a0 = anon_bytes()
                t0 = time.perf_counter()
                frame = pd.DataFrame(np.asfortranarray(g.random((a.rows, a.cols))),
                                     columns=cols, copy=False)
                store.publish(name, frame)
                usual_t.append(time.perf_counter() - t0)
                usual_mem.append((tmpfs_bytes(store_dir) + anon_bytes() - a0) / table_bytes)
                del frame
        print("new full version while the readers pin the old one:")
        print(f"  build: peak {max(build_mem):.3f}x the table (target <= 2.02x), "
              f"{statistics.median(build_t):.2f} s generating + publishing")
        print(f"  usual way (private frame, then publish): peak {max(usual_mem):.3f}x, "
              f"{statistics.median(usual_t):.2f} s")
        if a.doc:
            ok = lambda c: "met" if c else "**missed**"  # noqa: E731
            with open(a.doc, "w") as out:
                out.write(
                    "# Writers without a private copy: store.edit and store.build\n\n"
                    "Generated by `bench/bench_writer.py --doc` (what each figure times: "
                    "the script's docstring and `bench/README.md`; the design: "
                    "`docs/design.md` section 17).\n\n"
                    f"`python bench/bench_writer.py --runs {a.runs}`: table {a.rows} x "
                    f"{a.cols} float64 ({table_bytes / 2**30:.2f} GiB), {a.readers} readers "
                    f"holding it, medians of {a.runs} (peaks: the largest), load average "
                    f"{load:.2f} at start.\n\n"
                    "| figure | libsnap | baseline, same run | ratio | target | verdict |\n"
                    "|---|---|---|---|---|---|\n"
                    f"| `edit` of 1% contiguous rows: entering the block to the flip | "
                    f"{e * 1e3:.1f} ms | full publish {f * 1e3:.0f} ms | {e / f:.3f} | <= 0.05 | "
                    f"{ok(e / f <= 0.05)} |\n"
                    f"| peak memory while editing 1% of rows (store + writer private) | "
                    f"{max(edit_mem):.3f}x | the table | {max(edit_mem):.3f} | <= 1.05x | "
                    f"{ok(max(edit_mem) <= 1.05)} |\n"
                    f"| peak memory building a full new version, old one pinned | "
                    f"{max(build_mem):.3f}x | private frame + publish: "
                    f"{max(usual_mem):.3f}x | {max(build_mem):.3f} | <= 2.02x | "
                    f"{ok(max(build_mem) <= 2.02)} |\n"
                    f"\nTimes beside the memory figures: the build (generating the random "
                    f"data into the arrays, then the commit) took "
                    f"{statistics.median(build_t):.2f} s, the usual way (generating into a "
                    f"private frame, then `publish`) {statistics.median(usual_t):.2f} s; "
                    f"the edit wrote {statistics.median(written) / 2**20:.1f} MiB of pages.\n")
    finally:
        store.close()
        if not a.store:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
