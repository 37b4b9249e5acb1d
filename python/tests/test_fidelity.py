# SPDX-License-Identifier: LGPL-2.1-or-later
"""Round-trip fidelity regressions (issue 11): bugs 1, 2 and 8, on both pandas versions."""
import os

import numpy as np
import pandas as pd
import pytest

import libsnap

try:
    import pyarrow as pa
except ImportError:
    pa = None


def test_bug1_dates_outside_the_ns_range_keep_value_and_unit(store):
    src = pd.DataFrame({
        "s": pd.Series(np.array(["9999-12-31", "1000-01-01", "0001-01-01"], "M8[s]")),
        "ms": pd.Series(np.array(["9999-12-31T23:59:59.999", "NaT", "1970-01-01"], "M8[ms]")),
        "us": pd.Series(np.array(["2500-06-01", "1500-01-01", "NaT"], "M8[us]")),
        "tz": pd.Series(np.array(["9999-12-31", "1000-01-01", "2024-03-31"], "M8[s]"))
                .dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"),
        "td": pd.Series(np.array([10**12, -10**12, 0], "m8[s]")),
        "td_ms": pd.Series(np.array([2**62, 1, 0], "m8[ms]")),
    })
    store.publish("d", src)
    got = store.read("d")
    pd.testing.assert_frame_equal(got, src)
    assert str(got["s"].iloc[0]) == "9999-12-31 00:00:00"
    assert got["td"].to_numpy()[0] == np.timedelta64(10**12, "s")  # not 44859 days
    with store.pin("d") as snap:
        assert snap["s"].dtype == np.dtype("M8[s]")
        if pa is not None:  # Arrow export keeps the unit and the zone
            t = pa.table(snap)
            assert t.schema.field("s").type == pa.timestamp("s")
            assert t.schema.field("tz").type == pa.timestamp("s", "Europe/Paris")
            assert t.schema.field("td_ms").type == pa.duration("ms")
            assert t.column("ms").null_count == 1


def test_bug1_conversions_that_would_wrap_are_refused(store):
    store.publish("d", {"x": np.arange(3)})
    days = np.array([0, 2**62], np.int64).view("M8[D]")  # fits days, not seconds
    with pytest.raises(libsnap.InvalidArgument, match=r"'when'.*does not fit"):
        store.publish("d", {"when": days})
    ps = np.array([1, 1500], "m8[ps]")  # 1500 ps is not a whole number of ns
    with pytest.raises(libsnap.InvalidArgument, match="'gap'"):
        store.publish("d", {"gap": ps})
    assert store.current_version("d") == 1
    ok = np.array(["2000-01-01", "NaT"], "M8[D]")  # exact in seconds: published
    store.publish("d", {"when": ok})
    assert store.read("d")["when"].dtype == np.dtype("M8[s]")


@pytest.mark.parametrize("col", [
    pd.Series([None, None], dtype=object),
    pd.Series(["", ""], dtype=object),
    pd.Series(["", ""], dtype="string"),
    pd.Series(pd.Categorical(["", ""])),
    pd.Series([], dtype=object),
    pd.Series(pd.Categorical([])),
], ids=["all-none", "all-empty", "StringDtype", "category", "0-row", "0-row-category"])
def test_bug2_strings_without_bytes_read_back(store, col):
    store.publish("s", pd.DataFrame({"c": col}))
    df = store.read("s")  # raised TypeError: a bytes-like object is required
    with store.pin("s") as snap:
        arr = snap["c"]
    assert len(df) == len(col) == len(arr)
    assert [None if pd.isna(x) else x for x in df["c"].tolist()] == \
        [None if pd.isna(x) else x for x in col.tolist()]
    if pa is not None:  # Arrow export of an empty data buffer is valid for pyarrow
        with store.pin("s") as snap:
            t = pa.table(snap)
        t.validate(full=True)
        assert t.num_rows == len(col)


@pytest.mark.parametrize("dtype", ["Int64", "Int8", "UInt64", "Float64", "Float32", "boolean"])
def test_bug8_masked_dtype_kept_with_and_without_nulls(store, dtype):
    vals = [True, False] if dtype == "boolean" else [1, 2]
    for data in (vals, vals[:1] + [None]):
        src = pd.DataFrame({"m": pd.array(data, dtype=dtype)})
        store.publish("m", src)
        got = store.read("m")
        assert got["m"].dtype == src["m"].dtype, data
        pd.testing.assert_frame_equal(got, src)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "Asia/Tokyo"])
def test_bug8_datetime_dtype_does_not_depend_on_nat(store, unit, tz):
    dtypes = set()
    for with_nat in (False, True):
        s = pd.Series(np.array(["2024-01-01", "NaT" if with_nat else "2024-01-02"],
                               f"M8[{unit}]"))
        if tz:
            s = s.dt.tz_localize(tz)
        src = pd.DataFrame({"t": s, "d": pd.Series(s.to_numpy() - s.to_numpy()[0])
                            if not tz else s - s.iloc[0]})
        store.publish("t", src)
        got = store.read("t")
        pd.testing.assert_frame_equal(got, src)
        dtypes.add((str(got["t"].dtype), str(got["d"].dtype)))
    assert len(dtypes) == 1, dtypes


def test_bug8_nullable_temporal_is_a_zero_copy_view_with_nat(store):
    s = pd.Series(pd.to_datetime(["2024-01-01", None, "2024-01-03"] * 1000))
    store.publish("z", pd.DataFrame({"t": s}))
    got = store.read("z")
    assert got["t"].dtype == s.dtype and got["t"].isna().sum() == 1000
    pin = store._s.pin("z", 0)
    seg = np.frombuffer(pin.buffer("segment"), np.uint8)
    assert np.shares_memory(got["t"].to_numpy(), seg)


def test_bug8_null_slots_hold_nat_for_every_writer(store):
    if pa is None:
        pytest.skip("needs pyarrow input")
    # Arrow input leaves 0 under the null; the seal writes INT64_MIN (NaT)
    store.publish("a", pa.table({"t": pa.array([5, None, 7], pa.timestamp("us"))}))
    got = store.read("a")
    assert got["t"].dtype == np.dtype("M8[us]")
    assert got["t"].isna().tolist() == [False, True, False]
    pin = store._s.pin("a", 0)
    assert np.frombuffer(pin.buffer("values", 0), np.int64)[1] == np.iinfo(np.int64).min


def test_bug8_arrow_numeric_columns_are_nullable_by_type(store):
    if pa is None:
        pytest.skip("needs pyarrow")
    for data in ([1, 2, 3], [1, None, 3]):
        store.publish("a", pa.table({"a": pa.array(data, pa.int64())}))
        assert store.read("a")["a"].dtype == "Int64"
    store.publish("a", pa.table({"a": pa.array([1, 2], pa.int64())},
                                schema=pa.schema([pa.field("a", pa.int64(), False)])))
    assert store.read("a")["a"].dtype == np.int64  # declared non-nullable


def test_segment_sealed_before_the_nat_rule_still_reads_nat(store):
    """A null slot holding 0 (what the C API and Arrow input left before the seal
    wrote NaT) reads back as NaT, through a copy; the dtype is the same."""
    s = pd.Series(np.array(["2024-01-01", "NaT", "2024-01-03"], "M8[ms]"))
    store.publish("old", pd.DataFrame({"t": s}))
    pin = store._s.pin("old", 0)
    off = pin.buffer("values", 0).address - pin.buffer("segment").address
    path = pin.path
    del pin
    store.trim()
    os.chmod(path, 0o640)  # sealed segments are 0440; we own the file
    fd = os.open(path, os.O_WRONLY)  # behind the library's back, as an old writer would
    try:
        os.pwrite(fd, np.int64(0).tobytes(), off + 8)
    finally:
        os.close(fd)
    raw = np.frombuffer(store._s.pin("old", 0).buffer("values", 0), np.int64)
    assert raw[1] == 0  # the damage is what the reader sees
    got = store.read("old")
    assert got["t"].dtype == np.dtype("M8[ms]")
    assert not np.shares_memory(got["t"].to_numpy(), raw)  # the documented copy
    assert got["t"].isna().tolist() == [False, True, False]
    pd.testing.assert_frame_equal(got, pd.DataFrame({"t": s}))
