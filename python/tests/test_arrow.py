# SPDX-License-Identifier: LGPL-2.1-or-later
"""Arrow interoperability: PyCapsule export to pyarrow, polars and DuckDB without
copies, publishing Arrow tables and streams, and python -m libsnap publish/export."""
import gc
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import libsnap
from conftest import anon_kb

pa = pytest.importorskip("pyarrow")  # the pandas-2.2 leg runs without pyarrow


def seg_range(store, name):
    pin = store._s.pin(name)
    seg = np.frombuffer(pin.buffer("segment"), np.uint8)
    lo = seg.__array_interface__["data"][0]
    return lo, lo + seg.size


def mixed():
    return pd.DataFrame({
        "f": np.arange(1000, dtype=np.float64),
        "i": np.arange(1000, dtype=np.int32),
        "s": [f"s{k}" for k in range(1000)],
        "c": pd.Categorical(["a", "b", None, "a"] * 250),
        "t": pd.date_range("2024-01-01", periods=1000, freq="s", tz="Europe/Paris", unit="ns"),
        "b": np.arange(1000) % 2 == 0,
        "n": pd.array([None if k % 7 == 0 else k for k in range(1000)], dtype="Int64"),
    })


def test_pyarrow_table_zero_copy(store):
    store.publish("m", mixed())
    lo, hi = seg_range(store, "m")
    with store.pin("m") as snap:
        t = pa.table(snap)
        assert snap.to_arrow().equals(t)
    assert t.column_names == ["f", "i", "s", "c", "t", "b", "n"]
    assert t.schema.field("t").type == pa.timestamp("ns", "Europe/Paris")
    assert t.schema.field("c").type == pa.dictionary(pa.int8(), pa.large_string())
    assert t.schema.field("s").type == pa.large_string()
    for name in ["f", "i", "s", "t", "n"]:
        addr = t.column(name).chunk(0).buffers()[-1].address
        assert lo <= addr < hi, name  # values / string bytes inside the segment
    assert not (lo <= t.column("b").chunk(0).buffers()[1].address < hi)  # bool: a bitmap copy
    got = t.to_pandas()
    src = mixed()
    assert got["f"].tolist() == src["f"].tolist()
    assert got["s"].tolist() == src["s"].tolist()
    assert got["c"].astype(object).where(got["c"].notna(), None).tolist() == \
        src["c"].astype(object).where(src["c"].notna(), None).tolist()
    assert t.column("n").null_count == 143 and t.column("c").null_count == 250
    assert (got["t"] == src["t"]).all() and (got["b"] == src["b"]).all()


def test_polars_and_duckdb(store):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    store.publish("m", mixed())
    lo, hi = seg_range(store, "m")
    with store.pin("m") as snap:
        df = polars.DataFrame(snap)
        t = pa.table(snap)
        # DuckDB scans the snapshot itself (its Arrow stream), by variable name
        direct = duckdb.connect().execute("select sum(f), max(s) from snap").fetchall()
    assert direct == [(float(sum(range(1000))), "s999")]
    assert df.height == 1000 and df["f"].sum() == sum(range(1000))
    assert df["s"][7] == "s7"
    addr = df["f"].to_arrow().buffers()[1].address
    assert lo <= addr < hi  # polars keeps the segment's buffer
    con = duckdb.connect()
    con.register("m", t)
    total, strings = con.execute("select sum(i), count(distinct s) from m").fetchone()
    assert total == sum(range(1000)) and strings == 1000


def test_pin_held_until_the_last_arrow_consumer_releases(store):
    store.publish("p", pd.DataFrame({"x": np.arange(100.0)}))
    with store.pin("p") as snap:
        t = pa.table(snap)
    del snap
    gc.collect()
    for k in range(2):
        store.publish("p", pd.DataFrame({"x": np.zeros(100)}))
    assert store.gc().draining_versions == 1
    col = t.column("x")
    del t
    gc.collect()
    assert store.gc().draining_versions == 1  # one column still holds it
    assert col.to_numpy()[5] == 5.0
    del col
    gc.collect()
    assert store.gc().freed_versions == 1


def test_memory_does_not_grow_through_arrow(store):
    rows = 256 * 1024 * 1024 // 8 // 16
    store.publish("big", np.random.default_rng(4).random((rows, 16)))
    gc.collect()
    before = anon_kb()
    with store.pin("big") as snap:
        t = pa.table(snap)
    s = sum(pa.compute.sum(c).as_py() for c in t.columns)
    grew = anon_kb() - before
    assert s > 0
    assert grew < 16 * 1024, grew


def test_publish_arrow_table_batch_and_stream(store):
    t = pa.table({
        "a": pa.array([1, 2, None], pa.int64()),
        "s": pa.array(["x", None, "z"]),
        "d": pa.array(["p", "q", "p"]).dictionary_encode(),
        "ts": pa.array([1, 2, 3], pa.timestamp("ms", "UTC")),
        "b": pa.array([True, None, False]),
        "f": pa.array([1.5, 2.5, 3.5]),
    })
    store.publish("t", t)
    df = store.read("t")
    assert df["a"].dtype == "Int64" and df["a"].isna().tolist() == [False, False, True]
    assert df["s"].tolist()[0] == "x" and pd.isna(df["s"].tolist()[1])
    assert df["d"].dtype == "category" and df["d"].tolist() == ["p", "q", "p"]
    assert df["ts"].dt.tz is not None and df["ts"].iloc[2].value == 3_000_000
    assert df["f"].tolist() == [1.5, 2.5, 3.5]
    store.publish("t", t.to_batches()[0])
    assert store.current_version("t") == 2
    polars = pytest.importorskip("polars")
    store.publish("t", polars.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]}))
    got = store.read("t")
    assert got["k"].tolist() == [1, 2, 3] and got["v"].tolist() == ["a", "b", "c"]
    with pytest.raises(libsnap.InvalidArgument, match="'l'"):
        store.publish("t", pa.table({"l": pa.array([[1], [2]])}))
    assert store.current_version("t") == 3


def run_cli(*args, env_store):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "libsnap", "--store", env_store, *args],
                          capture_output=True, text=True, env=env)


def test_cli_publish_and_export(store, tmp_path):
    import pyarrow.csv as csv
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    t = pa.table({"x": np.arange(50, dtype=np.int64), "y": [f"r{k}" for k in range(50)]})
    pq.write_table(t, tmp_path / "t.parquet")
    feather.write_feather(t, tmp_path / "t.arrow")
    csv.write_csv(t, tmp_path / "t.csv")
    for k, name in enumerate(["t.parquet", "t.arrow", "t.csv"], 1):
        r = run_cli("publish", "cli", str(tmp_path / name), env_store=store.path)
        assert r.returncode == 0, r.stderr
        assert f"version {k}" in r.stdout
        assert store.read("cli")["y"].tolist()[3] == "r3"
    for fmt, out in [("arrow", "o.arrow"), ("parquet", "o.parquet")]:
        r = run_cli("export", "cli@2", "--format", fmt, "-o", str(tmp_path / out),
                    env_store=store.path)
        assert r.returncode == 0, r.stderr
        back = feather.read_table(tmp_path / out) if fmt == "arrow" else pq.read_table(tmp_path / out)
        assert back.schema.types == [pa.int64(), pa.large_string()]
        assert back["x"].to_pylist() == t["x"].to_pylist()
        assert back["y"].to_pylist() == t["y"].to_pylist()
    # malformed input: refused with the file named, nothing published
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n3\n")
    r = run_cli("publish", "cli", str(tmp_path / "bad.csv"), env_store=store.path)
    assert r.returncode == 1 and "bad.csv" in r.stderr
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    r = run_cli("publish", "cli", str(tmp_path / "bad.parquet"), env_store=store.path)
    assert r.returncode == 1 and "bad.parquet" in r.stderr and "parquet" in r.stderr
    r = run_cli("publish", "cli", str(tmp_path / "missing.csv"), env_store=store.path)
    assert r.returncode == 1 and "missing.csv" in r.stderr
    r = run_cli("publish", "cli", str(tmp_path / "t.xyz"), env_store=store.path)
    assert r.returncode == 2
    assert store.current_version("cli") == 3
