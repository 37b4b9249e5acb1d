# SPDX-License-Identifier: LGPL-2.1-or-later
"""CSV ingest speed: `snapctl publish --direct` (libsnap's C parser, typed and
published into a store; a new process each time) against pandas.read_csv (in this
process) and pyarrow.csv.read_csv of the same file in the same run: MB/s of
input, medians of interleaved runs, and the median of the per-run ratios.

    python bench/bench_csv.py [--mb 200] [--runs 7] [--snapctl build/snapctl/snapctl]

The file has a mix of the column types the parser infers: int64, float64, bool,
ISO timestamps and low-cardinality strings.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd


def make_csv(path, mb, messy=False):
    rng = np.random.default_rng(0)
    rows = int(mb * 1e6 / (95 if messy else 75))  # bytes a row
    df = pd.DataFrame({
        "id": np.arange(rows),
        "price": rng.random(rows) * 1000,
        "qty": rng.integers(0, 10_000, rows),
        "flag": rng.random(rows) > 0.5,
        "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**9, rows), "s"),
        "venue": rng.choice(["XNYS", "XNAS", "ARCX", "BATS"], rows),
    })
    if messy:  # what takes the full path: nulls, and quoted text with commas
        df.loc[rng.random(rows) < 0.01, "price"] = np.nan
        df["note"] = rng.choice(["ok", "late, resent", 'said "hold"', ""], rows)
    df.to_csv(path, index=False)
    return rows


def timed_pairs(fns, runs):
    """Run the functions in turn, runs times over (so that a noisy neighbour hits
    them alike); return each one's times."""
    out = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            out[i].append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--messy", action="store_true",
                    help="1%% empty prices and a quoted text column: the full two-pass path")
    ap.add_argument("--snapctl", default=os.path.join(os.path.dirname(__file__), "..",
                                                      "build", "snapctl", "snapctl"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="libsnap-csvbench-", dir="/dev/shm")
    try:
        path = os.path.join(tmp, "t.csv")
        rows = make_csv(path, args.mb, args.messy)
        size = os.path.getsize(path) / 1e6
        store = os.path.join(tmp, "store")
        subprocess.run([args.snapctl, "--store", store, "init"], check=True,
                       capture_output=True)

        def snap(threads):
            cmd = [args.snapctl, "--store", store, "publish", "--direct", "-q", "t", path]
            if threads:
                cmd[5:5] = ["--threads", str(threads)]
            return lambda: subprocess.run(cmd, check=True, capture_output=True)

        typed = dict(parse_dates=["ts"], dtype={"venue": "category"})
        if args.messy:
            typed["dtype"]["note"] = "category"
        ts2, ts1, tp, tt = timed_pairs([snap(0), snap(1), lambda: pd.read_csv(path),
                                        lambda: pd.read_csv(path, **typed)], args.runs)
        med = statistics.median
        print(f"CSV {size:.0f} MB, {rows} rows x {7 if args.messy else 6} columns (int, "
              f"float, int, bool, timestamp, string{', quoted text, 1% nulls' if args.messy else ''}"
              f"); medians of {args.runs} interleaved runs")
        print(f"pandas.read_csv (one thread, baseline)        {size / med(tp):7.1f} MB/s")
        for name, ts in (("default threads", ts2), ("--threads 1", ts1)):
            ratio = med([p / s for p, s in zip(tp, ts)])
            print(f"snapctl publish --direct, {name:16s}  {size / med(ts):7.1f} MB/s   "
                  f"ratio to pandas {ratio:.2f} (median of per-run ratios; target > 1)")
        print(f"pandas.read_csv giving the same types (timestamps parsed, venue a "
              f"category) {size / med(tt):7.1f} MB/s; snapctl default threads is "
              f"{med([p / s for p, s in zip(tt, ts2)]):.2f}x of it")
        try:
            import pyarrow.csv as pcsv

            (ta,) = timed_pairs([lambda: pcsv.read_csv(path)], args.runs)
            print(f"pyarrow.csv.read_csv (multithreaded, for reference) "
                  f"{size / med(ta):7.1f} MB/s")
        except ImportError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
