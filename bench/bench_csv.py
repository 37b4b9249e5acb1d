"""CSV ingest speed: `snapctl publish --direct` (libsnap's C parser, typed and
published into a store) against pandas.read_csv and pyarrow.csv.read_csv of the
same file in the same run (medians; MB/s of input).

    python bench/bench_csv.py [--mb 200] [--runs 3] [--snapctl build/snapctl/snapctl]

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


def make_csv(path, mb):
    rng = np.random.default_rng(0)
    rows = int(mb * 1e6 / 75)  # about 75 bytes a row
    df = pd.DataFrame({
        "id": np.arange(rows),
        "price": rng.random(rows) * 1000,
        "qty": rng.integers(0, 10_000, rows),
        "flag": rng.random(rows) > 0.5,
        "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**9, rows), "s"),
        "venue": rng.choice(["XNYS", "XNAS", "ARCX", "BATS"], rows),
    })
    df.to_csv(path, index=False)
    return rows


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--snapctl", default=os.path.join(os.path.dirname(__file__), "..",
                                                      "build", "snapctl", "snapctl"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="libsnap-csvbench-", dir="/dev/shm")
    try:
        path = os.path.join(tmp, "t.csv")
        rows = make_csv(path, args.mb)
        size = os.path.getsize(path) / 1e6
        store = os.path.join(tmp, "store")
        subprocess.run([args.snapctl, "--store", store, "init"], check=True,
                       capture_output=True)

        def snap():
            subprocess.run([args.snapctl, "--store", store, "publish", "--direct", "t", path],
                           check=True, capture_output=True)

        ts = timed(snap, args.runs)
        tp = timed(lambda: pd.read_csv(path), args.runs)
        print(f"CSV {size:.0f} MB, {rows} rows x 6 columns (int, float, int, bool, "
              f"timestamp, string), medians of {args.runs}")
        print(f"snapctl publish (parse + type + publish) {size / ts:7.1f} MB/s   "
              f"pandas.read_csv {size / tp:7.1f} MB/s   ratio {tp / ts:.2f}  (target > 1)")
        try:
            import pyarrow.csv as pcsv

            ta = timed(lambda: pcsv.read_csv(path), args.runs)
            print(f"pyarrow.csv.read_csv (multithreaded, for reference) {size / ta:7.1f} MB/s")
        except ImportError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
