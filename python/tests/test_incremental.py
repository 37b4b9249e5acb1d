# SPDX-License-Identifier: LGPL-2.1-or-later
"""Incremental versions (segment format 2): each kind of refresh reads back
exactly, and a new version holds only the chunks that changed (docs/design.md
section 16). Memory is what the store's files hold on the tmpfs (st_blocks),
and what Store.versions() reports.

The chunk size is set small (LIBSNAP_CHUNK_SHIFT, 4 KiB) so that small tables
have many chunks; the library reads it at each publish.
"""
import os

import numpy as np
import pandas as pd
import pytest

import libsnap

CHUNK = 4096
ROWS = 64 * 1024  # 512 KiB per float64 column: 128 chunks


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setenv("LIBSNAP_CHUNK_SHIFT", "12")


def held(store_path, dataset, version):
    st = os.stat(os.path.join(store_path, "segments", dataset, f"{version}.seg"))
    return st.st_blocks * 512


def total_held(store_path):
    total = 0
    for root, _, files in os.walk(os.path.join(store_path, "segments")):
        for f in files:
            total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


def frame(ncols=8, seed=1):
    rng = np.random.default_rng(seed)
    # column-major like a frame pandas consolidated: every column contiguous
    t = np.asfortranarray(rng.random((ROWS, ncols)))
    return pd.DataFrame(t, columns=[f"c{j}" for j in range(ncols)], copy=False)


COL = ROWS * 8


def test_one_column_replaced_in_a_frame_read_back(store, store_path):
    v1 = store.publish("t", frame())
    df = store.read("t")
    new = np.arange(ROWS, dtype=np.float64)
    df["c3"] = new
    v2 = store.publish("t", df)
    assert held(store_path, "t", v2) <= COL + 64 * 1024  # one column + manifest
    info = {v.version: v for v in store.versions("t")}
    assert info[v2].shared >= 7 * COL
    assert info[v2].nbytes <= COL + 64 * 1024
    got = store.read("t")
    want = frame()
    want["c3"] = new
    pd.testing.assert_frame_equal(got, want)
    assert store.pin("t").__enter__() is not None
    # the old version is untouched
    with store.pin("t", v1) as old:
        pd.testing.assert_frame_equal(old.to_pandas(), frame())


def test_same_frame_again_holds_no_data(store, store_path):
    store.publish("t", frame())
    v2 = store.publish("t", frame())  # an equal private copy: compared, not written
    assert held(store_path, "t", v2) < 64 * 1024
    pd.testing.assert_frame_equal(store.read("t"), frame())


def test_rows_rewritten_cost_their_chunks(store, store_path):
    store.publish("t", frame())
    df = frame()
    lo, n = ROWS // 2, ROWS // 100  # 1% of the rows, contiguous
    df.iloc[lo:lo + n, :] = -1.0
    v2 = store.publish("t", df)
    # per column: the chunks the rows touch (at most 2 each, plus neighbours' edges)
    assert held(store_path, "t", v2) <= 8 * (n * 8 + 2 * CHUNK) + 64 * 1024
    pd.testing.assert_frame_equal(store.read("t"), df)


def test_scattered_cells_and_share_false(store, store_path):
    store.publish("t", frame())
    df = frame()
    rng = np.random.default_rng(5)
    idx = rng.choice(ROWS, ROWS // 100, replace=False)
    df.iloc[idx, 2] = 0.25
    v2 = store.publish("t", df)
    pd.testing.assert_frame_equal(store.read("t"), df)
    # only column 2's chunks changed
    assert held(store_path, "t", v2) <= COL + 64 * 1024
    v3 = store.publish("t", df, share=False)  # a full copy
    assert held(store_path, "t", v3) >= 8 * COL
    assert {v.version: v.shared for v in store.versions("t")}[v3] == 0
    with store.pin("t") as s:
        s.verify()


def test_mixed_dtypes_refresh(store):
    n = 20000
    base = pd.DataFrame({
        "x": np.arange(n, dtype=np.int64),
        "s": pd.Series([f"row {i}" for i in range(n)], dtype=object),
        "c": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3]),
        "t": pd.date_range("2024-01-01", periods=n, freq="s"),
        "m": pd.array([None if i % 7 == 0 else i for i in range(n)], dtype="Int64"),
    })
    store.publish("m", base)
    df = base.copy()
    df.loc[100:200, "s"] = "changed"
    df.loc[5000:5100, "m"] = None
    df["t"] = df["t"] + pd.Timedelta("1D")
    store.publish("m", df)
    got = store.read("m")
    assert got["s"].tolist() == df["s"].tolist()  # read back as Arrow-backed strings
    pd.testing.assert_frame_equal(got.drop(columns="s"), df.drop(columns="s"))
    with store.pin("m") as s:
        s.verify()


def test_retired_version_keeps_only_what_is_shared(store, store_path):
    store.set_keep(1, None)  # datasets created from now on keep only the current one
    v1 = store.publish("k", frame())
    df = store.read("k")
    df["c0"] = np.zeros(ROWS)
    v2 = store.publish("k", df)
    # the frame still pins v1 (its other columns are v1's memory): draining, whole
    assert {v.version: v.state for v in store.versions("k")}[v1] == "draining"
    del df
    report = store.gc("k")
    assert report.lending_versions == 1
    states = {v.version: v.state for v in store.versions("k")}
    assert states[v1] == "lending"
    # the store holds each distinct chunk once: 8 columns, not 9 or 16
    assert total_held(store_path) <= 8 * COL + 2 * 64 * 1024
    with pytest.raises(libsnap.Error):
        store.pin("k", v1).__enter__()
    want = frame()
    want["c0"] = np.zeros(ROWS)
    pd.testing.assert_frame_equal(store.read("k"), want)
    # a new table shares nothing: both old files go
    store.publish("k", frame(seed=9))
    assert {v.version for v in store.versions("k")} == {v2 + 1}
    assert not os.path.exists(os.path.join(store_path, "segments", "k", f"{v1}.seg"))


def test_append_costs_its_rows(store, store_path):
    df = frame()
    store.publish("a", df)
    add = pd.DataFrame(np.random.default_rng(3).random((ROWS // 100, 8)), columns=df.columns)
    v2 = store.append("a", add)  # no room yet: the room doubles (a full copy)
    v3 = store.append("a", add)  # room: the old rows are shared unread
    assert v3 == v2 + 1
    assert held(store_path, "a", v3) <= 8 * (len(add) * 8 + 2 * CHUNK) + 64 * 1024
    want = pd.concat([df, add, add], ignore_index=True)
    got = store.read("a")
    pd.testing.assert_frame_equal(got, want)
    assert got.index.equals(pd.RangeIndex(len(want)))
    with store.pin("a") as s:
        s.verify()
    # the old versions read as they were
    with store.pin("a", v2) as s:
        pd.testing.assert_frame_equal(s.to_pandas(), pd.concat([df, add], ignore_index=True))
    # a whole republish of the same table keeps the room and shares everything
    v4 = store.publish("a", want)
    assert held(store_path, "a", v4) < 64 * 1024
    pd.testing.assert_frame_equal(store.read("a"), want)


def test_append_other_tables_publish_the_concatenation(store):
    base = pd.DataFrame({"x": np.arange(5, dtype=np.int64), "s": list("abcde")})
    store.publish("s", base)
    add = pd.DataFrame({"x": np.array([9], dtype=np.int64), "s": ["z"]})
    store.append("s", add)
    got = store.read("s")
    assert got["x"].tolist() == [0, 1, 2, 3, 4, 9]
    assert got["s"].tolist() == list("abcdez")
    # a dtype that does not match the table is not appended in place either
    store.publish("f", pd.DataFrame({"x": np.arange(3, dtype=np.float64)}))
    store.append("f", pd.DataFrame({"x": np.array([7], dtype=np.int64)}))
    assert store.read("f")["x"].tolist() == [0.0, 1.0, 2.0, 7.0]


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_EXAMPLES = int(os.environ.get("LIBSNAP_HYPOTHESIS_EXAMPLES", "40"))
_STEP = st.one_of(
    st.tuples(st.just("column"), st.integers(0, 5), st.integers(0, 2**31)),
    st.tuples(st.just("rows"), st.integers(0, 3000), st.integers(1, 2000)),
    st.tuples(st.just("cells"), st.integers(1, 50), st.integers(0, 2**31)),
    st.tuples(st.just("append"), st.integers(1, 700), st.integers(0, 2**31)),
    st.tuples(st.just("same"), st.just(0), st.just(0)),
    st.tuples(st.just("full"), st.just(0), st.integers(0, 2**31)),
    st.tuples(st.just("gc"), st.integers(1, 3), st.just(0)),
)


@settings(max_examples=_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=8))
def test_any_sequence_of_refreshes_reads_back(store_path, steps):
    """Property: after any sequence of refresh kinds (frames read back and changed,
    private frames, appends, full copies, retention and gc in between), every kept
    version reads back exactly what was published as it, verifies, and the store
    holds no more than the distinct chunks (at most its versions' whole sizes)."""
    name = f"p{abs(hash(tuple(steps))) % 10**9}"
    s = libsnap.open(store_path, create=True)
    try:
        rng = np.random.default_rng(7)
        model = pd.DataFrame(np.asfortranarray(rng.random((3000, 6))),
                             columns=[f"c{j}" for j in range(6)], copy=False)
        published = {s.publish(name, model): model.copy()}
        for kind, a, b in steps:
            r = np.random.default_rng(b)
            if kind == "column":
                df = s.read(name)
                df[f"c{a}"] = r.random(len(df))
                model = df.copy()
                v = s.publish(name, df)
                del df
            elif kind == "rows":
                model = model.copy()
                lo = min(a, len(model) - 1)
                model.iloc[lo:lo + b, :] = -float(b)
                v = s.publish(name, model)
            elif kind == "cells":
                model = model.copy()
                for _ in range(a):
                    model.iat[int(r.integers(len(model))), int(r.integers(6))] = r.random()
                v = s.publish(name, model)
            elif kind == "append":
                add = pd.DataFrame(r.random((a, 6)), columns=model.columns)
                v = s.append(name, add)
                model = pd.concat([model, add], ignore_index=True)
            elif kind == "same":
                v = s.publish(name, model.copy())
            elif kind == "full":
                model = pd.DataFrame(np.asfortranarray(r.random((len(model), 6))),
                                     columns=model.columns, copy=False)
                v = s.publish(name, model, share=False)
            else:  # retention and gc: retired versions go or keep what is shared
                s.set_keep(a, name)
                s.gc(name)
                continue
            published[v] = model.copy()
        kept = {x.version: x for x in s.versions(name)}
        for v, want in published.items():
            if v not in kept or kept[v].state in ("draining", "lending"):
                continue
            with s.pin(name, v) as snap:
                pd.testing.assert_frame_equal(snap.to_pandas(), want)
                snap.verify()
        # each byte once: the files hold no more than the versions' whole tables
        held = sum(os.stat(os.path.join(store_path, "segments", name, f)).st_blocks * 512
                   for f in os.listdir(os.path.join(store_path, "segments", name)))
        assert held <= sum(8 * 6 * x.nrows + 2**20 for x in kept.values())
    finally:
        s.close()
