# SPDX-License-Identifier: LGPL-2.1-or-later
"""Python binding benchmarks; each figure beside its baseline from the same run.

    python bench/bench_python.py [--gib 2] [--cols 100] [--runs 5] [--workers 10]

  read       fresh process: libsnap.open + store.read -> usable DataFrame, ms, and the
             growth of its anonymous memory; baseline np.load(mmap_mode='r') of the same
             table as a .npy on /dev/shm (plus pd.DataFrame over it, copy=False)
  pin        `with store.pin(...)` enter + exit of an unchanged version, us;
             baseline: an empty `with` over a trivial context manager
  publish    store.publish of the DataFrame, GB/s; baseline np.copyto of the same
             data into a fresh np.empty array (page faults included)
  workers    N processes each holding full access: sum of PSS of the table mappings
             / table size, and total PSS
"""
import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import libsnap

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd, libsnap
t_import = time.perf_counter() - t0
def anon():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
mode, path = sys.argv[1], sys.argv[2]
a0 = anon()
t0 = time.perf_counter()
if mode == "libsnap":
    df = libsnap.open(path, readonly=True).read("bench")
else:
    m = np.load(path, mmap_mode="r")
    df = pd.DataFrame(m, copy=False)
t1 = time.perf_counter()
x = df.iat[len(df) // 2, 3]  # usable: one random access
a1 = anon()
print(json.dumps({"ms": (t1 - t0) * 1e3, "anon_kb": a1 - a0}))
"""


def fresh_read(mode, path, runs):
    ms, kb = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, mode, path], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        ms.append(r["ms"])
        kb.append(r["anon_kb"])
    return statistics.median(ms), statistics.median(kb)


def pss(pid, prefix):
    total = seg = 0
    in_seg = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                in_seg = len(head) >= 6 and head[5].startswith(prefix)
            elif line.startswith("Pss:"):
                total += int(head[1])
                seg += int(head[1]) if in_seg else 0
    return total, seg


HOLDER = r"""
import sys, libsnap
df = libsnap.open(sys.argv[1], readonly=True).read("bench")
df.to_numpy().sum()          # touch every page: full access
print("ready", flush=True)
sys.stdin.readline()          # hold until told to go
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=10)
    args = ap.parse_args()
    rows = int(args.gib * 2**30 / 8 / args.cols)
    nbytes = rows * args.cols * 8
    print(f"libsnap {libsnap.__version__} (C {libsnap.LIBRARY_VERSION}), pandas "
          f"{pd.__version__}, numpy {np.__version__}: {rows} x {args.cols} float64 = "
          f"{nbytes / 2**30:.2f} GiB, medians of {args.runs}")
    tmp = tempfile.mkdtemp(prefix="libsnap-pybench-", dir="/dev/shm")
    try:
        store = libsnap.open(os.path.join(tmp, "store"), create=True)
        store.set_keep(1)
        src = np.random.default_rng(0).random((args.cols, rows)).T  # pandas' own layout
        df = pd.DataFrame(src, copy=False)

        # publish vs np.copyto into fresh memory
        tp, tc = [], []
        for _ in range(min(args.runs, 3)):
            t0 = time.perf_counter()
            dst = np.empty_like(src)
            np.copyto(dst, src)
            tc.append(time.perf_counter() - t0)
            del dst
            t0 = time.perf_counter()
            store.publish("bench", df)
            tp.append(time.perf_counter() - t0)
        p, c = statistics.median(tp), statistics.median(tc)
        print(f"publish          {nbytes / p / 1e9:6.2f} GB/s   np.copyto into np.empty "
              f"{nbytes / c / 1e9:6.2f} GB/s   ratio {c / p:.2f}  (target >= 0.8)")

        # read in a fresh process vs np.load(mmap_mode='r')
        npy = os.path.join(tmp, "bench.npy")
        np.save(npy, src)
        del src, df
        lm, lkb = fresh_read("libsnap", os.path.join(tmp, "store"), args.runs)
        nm, nkb = fresh_read("npy", npy, args.runs)
        print(f"read (fresh)     {lm:6.2f} ms, anon +{lkb} kB   np.load(mmap_mode='r') "
              f"{nm:6.2f} ms, anon +{nkb} kB   ratio {lm / nm:.2f}  (target <= 1 ms, < 1 MiB)")
        os.unlink(npy)

        # pin enter+exit
        n = 200_000
        tw, tb = [], []
        null = contextlib.nullcontext()
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for _ in range(n):
                with store.pin("bench"):
                    pass
            tw.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            for _ in range(n):
                with null:
                    pass
            tb.append((time.perf_counter() - t0) / n * 1e6)
        w, b = statistics.median(tw), statistics.median(tb)
        print(f"pin enter+exit   {w:6.3f} us   empty with-block {b:6.3f} us   "
              f"(target <= 2 us)")

        # N workers holding the full table
        seg = os.path.join(os.path.realpath(tmp), "store", "segments")
        procs = [subprocess.Popen([sys.executable, "-c", HOLDER, os.path.join(tmp, "store")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(args.workers)]
        for p_ in procs:
            assert p_.stdout.readline().strip() == "ready"
        mem = [pss(p_.pid, seg) for p_ in procs]
        for p_ in procs:
            p_.stdin.write("go\n")
            p_.stdin.flush()
            p_.wait()
        tot, tab = sum(m[0] for m in mem), sum(m[1] for m in mem)
        print(f"{args.workers} workers        table PSS {tab / 1024:8.0f} MiB = "
              f"{tab * 1024 / nbytes:.3f} x table   total PSS {tot / 1024:.0f} MiB "
              f"({(tot - tab) / 1024 / args.workers:.0f} MiB interpreter per worker)  "
              f"(target <= 1.02)")
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
