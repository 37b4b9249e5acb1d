# SPDX-License-Identifier: LGPL-2.1-or-later
"""Zero-copy frames and arrays, type mapping, read-only contract, lifetime."""
import gc

import numpy as np
import pandas as pd
import pytest

import libsnap
import os

from conftest import anon_kb, uss_kb

pa = pytest.importorskip("pyarrow") if False else None
try:
    import pyarrow as pa  # noqa: F811
except ImportError:
    pa = None


def segment_array(store, name, version=None):
    """The whole segment of a pinned version as a uint8 array (for shares_memory)."""
    pin = store._s.pin(name, version or 0)
    return np.frombuffer(pin.buffer("segment"), np.uint8)


def test_float_table_is_one_block_over_shared_memory(store):
    src = np.random.default_rng(1).random((10_000, 40))
    store.publish("m", src)
    df = store.read("m")
    assert df.shape == (10_000, 40)
    assert len(df._mgr.blocks) == 1
    seg = segment_array(store, "m")
    assert np.shares_memory(df._mgr.blocks[0].values, seg)
    assert np.shares_memory(df.to_numpy(), seg)
    assert np.shares_memory(df.values, seg)
    assert np.shares_memory(df[7].to_numpy(), seg)
    np.testing.assert_array_equal(df.to_numpy(), src)
    assert list(df.columns) == list(range(40))


def test_common_read_operations(store):
    rng = np.random.default_rng(2)
    src = pd.DataFrame({"a": rng.random(5000), "b": rng.integers(0, 10, 5000),
                        "c": rng.random(5000)})
    store.publish("ops", src)
    df = store.read("ops")
    pd.testing.assert_series_equal(df.sum(), src.sum())
    pd.testing.assert_frame_equal(df.describe(), src.describe())
    pd.testing.assert_frame_equal(df.groupby("b").mean(), src.groupby("b").mean())
    pd.testing.assert_frame_equal(df[df.a > 0.5], src[src.a > 0.5])
    pd.testing.assert_frame_equal(df.loc[100:200, ["a", "c"]], src.loc[100:200, ["a", "c"]])
    assert df.iat[17, 1] == src.iat[17, 1]


def test_read_only(store):
    store.publish("ro", np.ones((100, 3)))
    df = store.read("ro")
    with pytest.raises(ValueError, match="read-only"):
        df.values[0, 0] = 2.0
    with pytest.raises(ValueError, match="read-only"):
        df.iloc[0, 0] = 2.0
    with store.pin("ro") as snap:
        a = snap[0]
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 5
    assert (store.read("ro").to_numpy() == 1.0).all()


def all_types_frame(n=1000):
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-01-01", periods=n, freq="min", unit="ns")
    return pd.DataFrame({
        "i8": rng.integers(-100, 100, n).astype(np.int8),
        "i16": rng.integers(-1000, 1000, n).astype(np.int16),
        "i32": rng.integers(-10**6, 10**6, n).astype(np.int32),
        "i64": rng.integers(-10**12, 10**12, n),
        "u8": rng.integers(0, 255, n).astype(np.uint8),
        "u16": rng.integers(0, 60000, n).astype(np.uint16),
        "u32": rng.integers(0, 4 * 10**9, n).astype(np.uint32),
        "u64": rng.integers(0, 2**63, n).astype(np.uint64),
        "f32": rng.random(n).astype(np.float32),
        "f64": rng.random(n),
        "b": rng.random(n) > 0.5,
        "ts": ts,
        "tz": ts.tz_localize("Europe/Paris"),
        "td": pd.to_timedelta(np.arange(n), unit="s").as_unit("ns"),
        "cat": pd.Categorical(rng.choice(["red", "green", "blüe"], n)),
        "s": np.array([f"row {k} ✓" for k in range(n)], dtype=object),
        "s_null": pd.Series([None if k % 7 == 0 else f"v{k}" for k in range(n)], dtype=object),
        "I64": pd.array([None if k % 5 == 0 else k for k in range(n)], dtype="Int64"),
        "F64": pd.array([None if k % 3 == 0 else k / 2 for k in range(n)], dtype="Float64"),
        "B": pd.array([None if k % 4 == 0 else k % 2 == 0 for k in range(n)], dtype="boolean"),
    })


def test_every_type_round_trips_to_its_natural_dtype(store):
    src = all_types_frame()
    store.publish("t", src)
    df = store.read("t")
    assert list(df.columns) == list(src.columns)
    for name in ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "b",
                 "ts", "tz", "td", "cat", "I64", "F64", "B"]:
        assert df[name].dtype == src[name].dtype, name
        pd.testing.assert_series_equal(df[name], src[name], check_names=True)
    if pa is not None:
        assert df["s"].dtype == pd.ArrowDtype(pa.large_string())
    assert df["s"].tolist() == src["s"].tolist()
    got = [None if pd.isna(x) else x for x in df["s_null"].tolist()]
    assert got == src["s_null"].tolist()


def test_zero_copy_per_type(store):
    src = all_types_frame(4096)
    store.publish("z", src)
    df = store.read("z")
    seg = segment_array(store, "z")
    for name in ["i8", "i64", "u64", "f32", "f64", "b", "ts", "td"]:
        assert np.shares_memory(df[name].to_numpy(), seg), name
    assert np.shares_memory(np.asarray(df["tz"].array.asi8), seg)
    assert np.shares_memory(df["cat"].array.codes, seg)  # int8 codes, the width pandas picks
    assert np.shares_memory(df["I64"].array._data, seg)
    if pa is not None:
        chunk = df["s"].array._pa_array.chunk(0)
        lo, hi = seg.__array_interface__["data"][0], seg.__array_interface__["data"][0] + seg.size
        assert lo <= chunk.buffers()[2].address < hi


def test_named_index_and_range_index_round_trip(store):
    src = pd.DataFrame({"x": np.arange(5.0)}, index=pd.Index(list("abcde"), name="key"))
    store.publish("ix", src)
    got = store.read("ix")
    assert list(got.index) == list("abcde") and got.index.name == "key"
    assert got.columns.tolist() == ["x"]
    src2 = pd.DataFrame({"x": np.arange(6.0)}, index=pd.RangeIndex(10, 22, 2, name="r"))
    store.publish("rng", src2)
    got2 = store.read("rng")
    assert isinstance(got2.index, pd.RangeIndex)
    pd.testing.assert_index_equal(got2.index, src2.index)
    src3 = pd.DataFrame({"v": np.arange(4.0)}, index=pd.Index(np.arange(4) * 10, name="n"))
    store.publish("intix", src3)
    got3 = store.read("intix")
    pd.testing.assert_frame_equal(got3, src3)
    assert len(got3._mgr.blocks) == 1  # the index column is not a data column


def test_dict_and_ndarray_inputs(store):
    store.publish("d", {"a": np.arange(3), "b": pd.Series([1.5, 2.5, 3.5])})
    pd.testing.assert_frame_equal(store.read("d"),
                                  pd.DataFrame({"a": np.arange(3), "b": [1.5, 2.5, 3.5]}))
    with pytest.raises(libsnap.InvalidArgument, match="different lengths"):
        store.publish("d", {"a": np.arange(3), "b": np.arange(4)})
    with pytest.raises(libsnap.InvalidArgument, match="2-D"):
        store.publish("d", np.arange(3))


def test_zero_rows_and_zero_columns(store):
    store.publish("empty_rows", pd.DataFrame({"a": np.array([], dtype=np.float64)}))
    df = store.read("empty_rows")
    assert df.shape == (0, 1) and df["a"].dtype == np.float64
    store.publish("no_cols", pd.DataFrame(index=pd.RangeIndex(4)))
    assert store.read("no_cols").shape == (4, 0)


def test_unsupported_dtype_refused_and_nothing_published(store):
    store.publish("u", pd.DataFrame({"ok": [1.0, 2.0]}))
    bad = pd.DataFrame({"ok": [1.0, 2.0], "mixed": [1, "two"]})
    with pytest.raises(libsnap.InvalidArgument) as e:
        store.publish("u", bad)
    assert "'mixed'" in str(e.value) and "object" in str(e.value)
    assert e.value.code == -1004 and e.value.name == "SNAP_EINVAL"
    assert [v.version for v in store.versions("u")] == [1]
    with pytest.raises(libsnap.InvalidArgument, match="complex"):
        store.publish("u", pd.DataFrame({"c": np.array([1 + 2j])}))
    with pytest.raises(libsnap.InvalidArgument, match="float16"):
        store.publish("u", pd.DataFrame({"h": np.array([1.0], dtype=np.float16)}))
    assert store.current_version("u") == 1


def test_snapshot_api(store):
    store.publish("p", pd.DataFrame({"price": [1.0, 2.0, 3.0], "qty": [1, 2, 3]}))
    with store.pin("p") as snap:
        assert (snap.dataset, snap.version, snap.nrows) == ("p", 1, 3)
        assert snap.columns == ["price", "qty"]
        assert snap.dtypes == {"price": np.dtype("f8"), "qty": np.dtype("i8")}
        a = snap["price"]
        assert isinstance(a, np.ndarray) and a.tolist() == [1.0, 2.0, 3.0]
        with pytest.raises(TypeError, match="one dtype"):
            snap.to_numpy()
        with pytest.raises(KeyError):
            snap["nope"]
        snap.verify()
    with pytest.raises(ValueError, match="released"):
        snap.version
    assert a.tolist() == [1.0, 2.0, 3.0]  # the array keeps its own pin


def test_errors_from_the_c_table(store):
    with pytest.raises(libsnap.NotFound) as e:
        store.read("missing")
    assert isinstance(e.value, libsnap.Error)
    assert e.value.code == -1001 and "missing" in str(e.value)
    with pytest.raises(libsnap.NotFound):
        libsnap.open("/dev/shm/definitely-not-a-store-xyz")
    names = {row[0] for row in libsnap.ERRORS}
    assert {"NotFound", "Corrupt", "FormatError", "InvalidArgument", "ChecksumError",
            "Draining", "ReadOnly", "Busy"} <= names


def test_pin_lifetime_follows_arrays(store):
    store.publish("life", np.ones((1000, 2)))
    df = store.read("life")
    store.publish("life", np.full((1000, 2), 2.0))
    store.publish("life", np.full((1000, 2), 3.0))  # keep 2: v1 retired
    r = store.gc()
    assert (r.freed_versions, r.draining_versions) == (0, 1)
    assert r.items[0]["version"] == 1 and r.items[0]["pinned"] == 1
    del df
    gc.collect()
    r = store.gc()
    assert (r.freed_versions, r.draining_versions) == (1, 0)


def test_a_single_series_keeps_its_version(store):
    store.publish("ser", pd.DataFrame({"a": np.arange(1000.0), "b": np.zeros(1000)}))
    s = store.read("ser")["a"]
    gc.collect()
    for k in range(2):
        store.publish("ser", pd.DataFrame({"a": -np.arange(1000.0), "b": np.ones(1000)}))
    assert store.gc().draining_versions == 1
    assert s.sum() == np.arange(1000.0).sum()  # still the old version's data
    del s
    gc.collect()
    assert store.gc().freed_versions == 1
    assert [v.state for v in store.versions("ser")] == ["retained", "current"]


def test_retained_versions_rollback_and_listing(store):
    for k in range(3):
        store.publish("r", pd.DataFrame({"v": [float(k)]}))
    store.set_keep(3, "r")
    store.publish("r", pd.DataFrame({"v": [3.0]}))
    assert [v.version for v in store.versions("r")] == [2, 3, 4]
    assert store.read("r", version=2)["v"].iloc[0] == 1.0
    store.rollback("r", 3)
    assert store.current_version("r") == 3
    assert store.read("r")["v"].iloc[0] == 2.0
    assert store.datasets() == ["r"]
    info = store.versions("r")[-1]
    assert info.state == "retained" and info.nrows == 1 and info.ncols == 1
    with pytest.raises(libsnap.NotFound):
        store.read("r", version=1)


def test_memory_does_not_grow_by_the_table(store):
    rows = 256 * 1024 * 1024 // 8 // 16  # 256 MiB of float64 in 16 columns
    src = np.random.default_rng(5).random((rows, 16))
    store.publish("big", src)
    total = float(src.sum())
    del src
    gc.collect()
    before = anon_kb()
    df = store.read("big")
    s = float(df.sum().sum())
    col = df[3].to_numpy()
    after = anon_kb()
    assert abs(s - total) / total < 1e-9
    assert np.shares_memory(col, segment_array(store, "big"))
    grew = after - before
    print(f"anonymous memory grew {grew} kB while reading a 262144 kB table")
    assert grew < 16 * 1024


def test_uss_does_not_grow_by_the_table_with_another_reader(store):
    """USS counts shared-memory pages as private when no other process maps them,
    so a second reader holds the table as a real deployment has; then reading the
    256 MiB table must not grow this process's unique memory by its size."""
    rows = 256 * 1024 * 1024 // 8 // 16
    store.publish("big2", np.random.default_rng(6).random((rows, 16)))
    gc.collect()
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.close(w2)
            held = store.read("big2")
            held.to_numpy().sum()  # map every page
            os.write(w, b"r")
            os.read(r2, 1)  # hold until the parent has measured
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    assert os.read(r, 1) == b"r"
    before = uss_kb()
    df = store.read("big2")
    df.to_numpy().sum()
    grew = uss_kb() - before
    os.write(w2, b"g")
    os.waitpid(pid, 0)
    print(f"USS grew {grew} kB while reading a 262144 kB table")
    assert grew < 16 * 1024
