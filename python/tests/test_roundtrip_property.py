# SPDX-License-Identifier: LGPL-2.1-or-later
"""Property: any DataFrame over the supported dtypes either reads back equal
(after the documented deliberate differences, applied by expected_read() below:
docs/python.md "Deliberate differences") or is refused with libsnap.Error before
anything is published.

LIBSNAP_HYPOTHESIS_EXAMPLES=5000 runs a longer search (default 150).
"""
import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import libsnap

try:
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute below)
except ImportError:
    pa = None

EXAMPLES = int(os.environ.get("LIBSNAP_HYPOTHESIS_EXAMPLES", "150"))
I64 = np.iinfo(np.int64)
ZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Paris"]
# datetime64 bounds pandas handles in each unit: years 1..9999, or the ns range
_YEARS = {"s": (-62135596800, 253402300799)}
_YEARS["ms"] = (_YEARS["s"][0] * 1000, _YEARS["s"][1] * 1000 + 999)
_YEARS["us"] = (_YEARS["ms"][0] * 1000, _YEARS["ms"][1] * 1000 + 999)
_YEARS["ns"] = (I64.min + 1, I64.max)


def _ints(lo, hi):
    return st.one_of(st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 1]),
                     st.integers(lo, hi))


def _column(draw, n):
    """(kind, Series) of n rows of one supported (or, rarely, refused) dtype."""
    kind = draw(st.sampled_from([
        "int", "uint", "float", "bool", "masked_int", "masked_float", "boolean",
        "datetime", "datetime_tz", "timedelta", "str_object", "str_dtype", "str_arrow",
        "category", "arrow", "refused"]))
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if kind == "arrow" and pa is None:
        kind = "int"
    if kind in ("int", "uint", "masked_int"):
        signed = kind != "uint" and draw(st.booleans()) or kind == "int"
        bits = draw(st.sampled_from([8, 16, 32, 64]))
        info = np.iinfo(f"{'int' if signed else 'uint'}{bits}")
        vals = draw(st.lists(_ints(int(info.min), int(info.max)), min_size=n, max_size=n))
        if kind == "masked_int":
            name = f"{'Int' if signed else 'UInt'}{bits}"
            return kind, pd.Series(pd.array([None if m else v for v, m in zip(vals, nulls)],
                                            dtype=name))
        return kind, pd.Series(np.array(vals, dtype=info.dtype))
    if kind in ("float", "masked_float"):
        bits = draw(st.sampled_from([32, 64]))
        special = st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0])
        vals = draw(st.lists(st.one_of(special, st.floats(width=bits)), min_size=n,
                             max_size=n))
        if kind == "masked_float":
            vals = [0.5 if v != v else v for v in vals]  # NaN is a value only in numpy
            return kind, pd.Series(pd.array([None if m else v for v, m in zip(vals, nulls)],
                                            dtype=f"Float{bits}"))
        return kind, pd.Series(np.array(vals, dtype=f"float{bits}"))
    if kind in ("bool", "boolean"):
        vals = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if kind == "boolean":
            return kind, pd.Series(pd.array([None if m else v for v, m in zip(vals, nulls)],
                                            dtype="boolean"))
        return kind, pd.Series(np.array(vals, dtype=bool))
    if kind in ("datetime", "datetime_tz", "timedelta"):
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        lo, hi = _YEARS[unit] if kind != "timedelta" else (I64.min + 1, I64.max)
        vals = np.array(draw(st.lists(_ints(lo, hi), min_size=n, max_size=n)), np.int64)
        nat = np.array(nulls, bool) & draw(st.booleans())
        vals[nat] = I64.min
        arr = vals.view(f"{'m' if kind == 'timedelta' else 'M'}8[{unit}]")
        s = pd.Series(arr)
        if kind == "datetime_tz":
            s = s.dt.tz_localize("UTC").dt.tz_convert(draw(st.sampled_from(ZONES)))
        return kind, s
    text = st.text(max_size=6)
    if kind in ("str_object", "str_dtype", "str_arrow"):
        vals = draw(st.lists(st.one_of(text, st.sampled_from([""])), min_size=n, max_size=n))
        vals = [None if m else v for v, m in zip(vals, nulls)]
        if kind == "str_dtype":
            return kind, pd.Series(vals, dtype=draw(st.sampled_from(
                ["string"] + (["string[pyarrow]", "str"] if pa is not None else []))))
        if kind == "str_arrow" and pa is not None:
            return kind, pd.Series(vals, dtype=pd.ArrowDtype(pa.string()))
        return "str_object", pd.Series(vals, dtype=object)
    if kind == "arrow" and pa is not None:  # pyarrow-backed numeric/bool/temporal
        t = draw(st.sampled_from([pa.int8(), pa.int64(), pa.uint64(), pa.float64(),
                                  pa.bool_(), pa.timestamp("s"), pa.timestamp("ms", "UTC"),
                                  pa.duration("us")]))
        if pa.types.is_boolean(t):
            vals = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        elif pa.types.is_floating(t):
            vals = draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n))
        elif pa.types.is_timestamp(t):
            vals = draw(st.lists(_ints(*_YEARS[t.unit]), min_size=n, max_size=n))
        elif pa.types.is_duration(t):
            vals = draw(st.lists(_ints(I64.min + 1, I64.max), min_size=n, max_size=n))
        else:
            info = np.iinfo(t.to_pandas_dtype())
            vals = draw(st.lists(_ints(int(info.min), int(info.max)), min_size=n, max_size=n))
        arr = pa.array([None if m else v for v, m in zip(vals, nulls)], t)
        return kind, pd.Series(pd.arrays.ArrowExtensionArray(arr))
    if kind == "category":
        cats = draw(st.lists(text, unique=True, max_size=5))
        codes = draw(st.lists(st.integers(-1, len(cats) - 1), min_size=n, max_size=n))
        return kind, pd.Series(pd.Categorical.from_codes(
            codes, categories=cats, ordered=draw(st.booleans())))
    # refused: mixed objects, non-string categories, complex numbers
    which = draw(st.integers(0, 2))
    if which == 0 and n:
        return kind, pd.Series([1] + ["x"] * (n - 1), dtype=object)
    if which == 1 and n:
        return kind, pd.Series(pd.Categorical([1.5] * n))
    return kind, pd.Series(np.zeros(n, complex))


@st.composite
def frames(draw):
    n = draw(st.integers(0, 12))
    ncols = draw(st.integers(1, 5))
    labels = draw(st.lists(st.one_of(st.text(max_size=4), st.integers(-3, 3)),
                           min_size=ncols, max_size=ncols))
    cols = [_column(draw, n) for _ in range(ncols)]
    df = pd.DataFrame({i: s for i, (_, s) in enumerate(cols)})
    df.columns = pd.Index(labels, tupleize_cols=False) if draw(st.booleans()) \
        else pd.RangeIndex(ncols)
    index = draw(st.sampled_from(["default", "range", "int", "str", "datetime"]))
    name = draw(st.one_of(st.none(), st.text(max_size=3), st.integers(0, 3)))
    if index == "range":
        start, step = draw(st.integers(-50, 50)), draw(st.integers(1, 7)) * \
            draw(st.sampled_from([1, -1]))
        df.index = pd.RangeIndex(start, start + step * n, step, name=name)
    elif index == "int":
        df.index = pd.Index(draw(st.lists(_ints(I64.min, I64.max), min_size=n, max_size=n)),
                            dtype=np.int64, name=name)
    elif index == "str":
        df.index = pd.Index(draw(st.lists(st.text(max_size=4), min_size=n, max_size=n)),
                            dtype=object, name=name)
    elif index == "datetime":
        df.index = pd.DatetimeIndex(np.array(draw(st.lists(
            st.integers(0, 2**50), min_size=n, max_size=n)), np.int64).view("M8[ns]"),
            name=name)
    return [k for k, _ in cols], df


def _as_read_strings(s):
    """A string column as the reader gives it (deliberate difference 1)."""
    if pa is not None:
        return s.astype(object).where(s.notna(), None).astype(pd.ArrowDtype(pa.large_string()))
    return s.astype(object).where(s.notna(), None)


_MASKED_NAME = {"i": "Int", "u": "UInt", "f": "Float"}


def expected_read(src):
    """THE deliberate differences between what is published and what is read
    (docs/python.md, "Deliberate differences"); everything else must be equal."""
    out = src.copy()
    for j in range(out.shape[1]):
        s = out.iloc[:, j]
        if pa is not None and isinstance(s.dtype, pd.ArrowDtype) and not (
                pa.types.is_string(s.dtype.pyarrow_dtype) or
                pa.types.is_large_string(s.dtype.pyarrow_dtype)):
            # 3. Arrow numerics -> masked dtypes; Arrow temporals -> numpy with NaT
            t = s.dtype.pyarrow_dtype
            if pa.types.is_boolean(t):
                out.isetitem(j, s.astype("boolean"))
            elif pa.types.is_timestamp(t) or pa.types.is_duration(t):
                ints = pa.compute.fill_null(s.array._pa_array.cast(pa.int64()), I64.min)
                v = ints.to_numpy().view(f"{'M' if pa.types.is_timestamp(t) else 'm'}8"
                                         f"[{t.unit}]")
                e = pd.Series(v, index=s.index, name=s.name)
                if getattr(t, "tz", None):
                    e = e.dt.tz_localize("UTC").dt.tz_convert(t.tz)
                out.isetitem(j, e)
            else:
                npd = np.dtype(t.to_pandas_dtype())
                out.isetitem(j, s.astype(f"{_MASKED_NAME[npd.kind]}{npd.itemsize * 8}"))
        elif not isinstance(s.dtype, pd.CategoricalDtype) and (
                s.dtype == object or isinstance(s.dtype, (pd.StringDtype,)) or
                (pa is not None and isinstance(s.dtype, pd.ArrowDtype))):
            # 1. strings: large_string[pyarrow] with pyarrow, else object with None
            out.isetitem(j, _as_read_strings(s))
        elif isinstance(s.dtype, pd.CategoricalDtype):
            # 2. categories are rebuilt as pandas infers them from str values
            cats = pd.Index(list(s.cat.categories))
            out.isetitem(j, pd.Series(pd.Categorical.from_codes(
                s.cat.codes, dtype=pd.CategoricalDtype(cats, s.cat.ordered)), index=s.index))
    if out.index.dtype == object or isinstance(out.index.dtype, pd.StringDtype):
        # 1 again, for an index of strings
        out.index = pd.Index(_as_read_strings(pd.Series(out.index)).array,
                             name=out.index.name)
    return out


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(frames())
def test_round_trip_or_refused(store, case):
    kinds, src = case
    try:
        before = store.current_version("p")
    except libsnap.NotFound:
        before = None
    try:
        store.publish("p", src)
    except libsnap.Error as e:
        assert "refused" in kinds, f"{kinds}: {e}"
        after = None
        try:
            after = store.current_version("p")
        except libsnap.NotFound:
            pass
        assert after == before  # nothing was published
        return
    assert "refused" not in kinds, f"{kinds} was published"
    got = store.read("p")
    pd.testing.assert_frame_equal(got, expected_read(src))
    if got.columns.is_unique:  # Snapshot.dtypes announces what to_pandas() gives
        with store.pin("p") as snap:
            announced = snap.dtypes
        assert [announced[lab] for lab in got.columns] == list(got.dtypes)
