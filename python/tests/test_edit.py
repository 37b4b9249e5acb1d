# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writers without a private copy: store.edit() (copy on write, what changed
read from the page table) and store.build() (arrays inside the new segment).

Runs on pandas 3 and on pandas 2.2 (python_tests_second). Memory is what the
new version's file holds (VersionInfo.nbytes) and this process's anonymous
memory (where any private copy of the table would land).
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import libsnap
from conftest import anon_kb

CHUNK = 4096
ROWS = 64 * 1024  # 512 KiB per float64 column: 128 chunks of 4 KiB
NCOLS = 8
COL = ROWS * 8
TABLE = COL * NCOLS


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setenv("LIBSNAP_CHUNK_SHIFT", "12")


def frame(seed=1):
    rng = np.random.default_rng(seed)
    t = np.asfortranarray(rng.random((ROWS, NCOLS)))
    return pd.DataFrame(t, columns=[f"c{j}" for j in range(NCOLS)], copy=False)


def own_bytes(store, version):
    return {v.version: v for v in store.versions("t")}[version].nbytes


def edit_and_check(store, op, max_own):
    """Apply @op to an edit and to a private copy of the same frame: the
    published version equals the copy, and holds at most @max_own bytes."""
    v1 = store.publish("t", frame())
    want = frame().copy()
    op(want)
    ed = store.edit("t")
    with ed as df:
        assert ed.base == v1
        op(df)
    assert ed.version == v1 + 1
    assert store.current_version("t") == ed.version
    pd.testing.assert_frame_equal(store.read("t"), want)
    assert own_bytes(store, ed.version) <= max_own
    with store.pin("t", v1) as snap:  # the base is untouched
        pd.testing.assert_frame_equal(snap.to_pandas(), frame())
    return ed


def test_loc_mask_on_one_column(store):
    def op(df):
        df.loc[df["c1"] < 0.01, "c2"] = -1.0
    # about 1% of rows: every 4 KiB chunk of c2 may hold one (128 chunks)
    edit_and_check(store, op, COL + 64 * 1024)


def test_contiguous_rows_all_columns(store):
    def op(df):
        df.iloc[1000:1650] = df.iloc[1000:1650] * 1.01  # 1% of rows
    ed = edit_and_check(store, op, NCOLS * 3 * CHUNK + 64 * 1024)
    assert 0 < ed.written_bytes() <= NCOLS * 3 * CHUNK


def test_inplace_multiply_a_column(store):
    def op(df):
        df["c3"] *= 1.01
    edit_and_check(store, op, COL + 64 * 1024)


def test_iloc_and_iat_cells(store):
    def op(df):
        df.iloc[5, 4] = 99.0
        df.iat[ROWS - 1, 0] = -5.0
    ed = edit_and_check(store, op, 2 * CHUNK + 64 * 1024)
    assert ed.written_bytes() == 2 * 4096


def test_replace_a_column_with_a_new_array(store):
    def op(df):
        df["c5"] = np.arange(ROWS, dtype=np.float64)
    edit_and_check(store, op, COL + 64 * 1024)


def test_append_rows_in_the_same_session(store):
    store.publish("t", frame())
    first = frame(seed=4).iloc[:5]
    v1 = store.append("t", first)  # a first append makes room for rows (one copy)
    extra = frame(seed=2).iloc[:1000]
    ed = store.edit("t")
    with ed as df:
        df.iloc[7, 1] = 123.0
        ed.append(extra)
        ed.append(extra.iloc[:10])
    want = pd.concat([frame(), first, extra, extra.iloc[:10]], ignore_index=True)
    want.iloc[7, 1] = 123.0
    pd.testing.assert_frame_equal(store.read("t"), want)
    # the old rows were not copied: the cell's chunk and the new rows' chunks
    assert own_bytes(store, ed.version) <= NCOLS * 6 * CHUNK + 64 * 1024
    assert ed.version == v1 + 1


def test_append_after_a_column_was_replaced(store):
    store.publish("t", frame())
    extra = frame(seed=3).iloc[:100]
    ed = store.edit("t")
    with ed as df:
        df["c0"] = np.zeros(ROWS)
        ed.append(extra)
    want = frame().copy()
    want["c0"] = np.zeros(ROWS)
    want = pd.concat([want, extra], ignore_index=True)
    pd.testing.assert_frame_equal(store.read("t"), want)


def test_exception_publishes_nothing(store):
    v1 = store.publish("t", frame())
    with pytest.raises(KeyError):
        with store.edit("t") as df:
            df.iloc[0, 0] = 5.0
            raise KeyError("boom")
    assert [v.version for v in store.versions("t")] == [v1]
    pd.testing.assert_frame_equal(store.read("t"), frame())


def test_untouched_edit_publishes_a_version_holding_no_data(store):
    v1 = store.publish("t", frame())
    with store.edit("t") as df:
        assert df.shape == (ROWS, NCOLS)
    assert store.current_version("t") == v1 + 1
    assert own_bytes(store, v1 + 1) <= 64 * 1024


def test_no_private_copy_of_the_table(store):
    rows = 1 << 20  # 8 MiB per column, 64 MiB in all
    big = pd.DataFrame(np.zeros((rows, 8), order="F"), columns=list("abcdefgh"), copy=False)
    store.publish("t", big)
    del big
    before = anon_kb()
    ed = store.edit("t")
    with ed as df:
        df.iloc[1000:11000, :] = 1.0  # 1% of rows
        during = anon_kb()
    assert (during - before) * 1024 < 0.05 * rows * 64  # not the table, ~1%
    got = store.read("t")
    assert got.iloc[1000:11000].to_numpy().min() == 1.0
    assert got.to_numpy().sum() == 10000 * 8


def test_concurrent_publish_is_refused(store, store_path):
    v1 = store.publish("t", frame())
    with pytest.raises(libsnap.Conflict) as ei:
        with store.edit("t") as df:
            df.iloc[0, 0] = -1.0
            # another process publishes meanwhile
            subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
                import numpy as np, pandas as pd, libsnap
                s = libsnap.open({store_path!r})
                s.publish("t", pd.DataFrame({{"c0": np.ones(3)}}))
            """)], check=True, env=dict(os.environ))
    assert f"became current after the edit began from version {v1}" in str(ei.value)
    assert "nothing was published" in str(ei.value)
    assert store.current_version("t") == v1 + 1
    assert list(store.read("t")["c0"]) == [1.0, 1.0, 1.0]


def test_writer_killed_mid_edit(store, store_path):
    v1 = store.publish("t", frame())
    store.read("t")  # this process's own cached pin, counted before and after
    pinned = store.versions("t")[0].pinned
    files = sorted(os.listdir(os.path.join(store_path, "segments", "t")))
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, libsnap
        s = libsnap.open({store_path!r})
        ed = s.edit("t")
        df = ed.__enter__()
        df.iloc[:, :] = 0.0
        print("ready", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert store.current_version("t") == v1
    assert sorted(os.listdir(os.path.join(store_path, "segments", "t"))) == files
    pd.testing.assert_frame_equal(store.read("t"), frame())
    assert store.versions("t")[0].pinned == pinned  # the child's pin died with it
    with store.edit("t") as df:  # and the next edit works
        df.iloc[0, 0] = 1.5
    assert store.read("t").iloc[0, 0] == 1.5


def test_edit_errors(store):
    with pytest.raises(libsnap.NotFound):
        store.edit("nope").__enter__()
    store.publish("t", frame())
    ed = store.edit("t")
    with ed:
        pass
    with pytest.raises(ValueError):
        ed.__enter__()
    with pytest.raises(ValueError, match="inside"):
        ed.append(frame())


def test_edit_of_a_table_with_strings_and_nulls(store):
    base = pd.DataFrame({"s": pd.array(["a", None, "ccc"] * 100, dtype="string"),
                         "i": pd.array([1, None, 3] * 100, dtype="Int64"),
                         "f": np.arange(300.0)})
    store.publish("t", base)
    with store.edit("t") as df:
        df.loc[0, "f"] = -1.0
        df.loc[1, "i"] = 7
        df.loc[2, "s"] = "zz"
    want = base.copy()
    want.loc[0, "f"] = -1.0
    want.loc[1, "i"] = 7
    want.loc[2, "s"] = "zz"
    got = store.read("t")
    assert got["f"].tolist() == want["f"].tolist()
    assert got["i"].tolist() == want["i"].tolist()
    def norm(x):
        return [None if pd.isna(v) else v for v in x]
    assert norm(got["s"]) == norm(want["s"])  # pandas 2.2 without pyarrow: None


# ------------------------------------------------------------------ build


def test_build_column_by_column(store):
    n = 100_000
    with store.build("m", {"a": "float64", "b": "int64", "t": "datetime64[ns]"}, n) as b:
        b["a"][:] = np.arange(n) * 0.5
        col = b["b"]  # a named array alive at the end of the block is fine
        for lo in range(0, n, 30_000):
            col[lo:lo + 30_000] = np.arange(lo, min(n, lo + 30_000))
        b["t"][:] = np.datetime64("2026-01-01", "ns")
    assert b.version == store.current_version("m")
    got = store.read("m")
    assert list(got.columns) == ["a", "b", "t"]
    assert got["a"].iloc[-1] == (n - 1) * 0.5
    assert (got["b"].to_numpy() == np.arange(n)).all()
    assert got["t"].dtype == np.dtype("datetime64[ns]")
    # the arrays outlive the block with what was written; a later write never
    # reaches the published version
    assert col[5] == 5
    col[5] = -1
    assert store.read("m")["b"].iloc[5] == 5


def test_build_frame_and_like(store):
    model = pd.DataFrame({"x": np.zeros(3), "y": np.zeros(3, np.int32), "z": [True] * 3})
    with store.build("m", like=model) as b:
        assert b.frame.shape == (3, 3)
        b.frame.iloc[1, 0] = 2.5
        b.frame.loc[2, "y"] = 9
        b["z"][0] = True
    got = store.read("m")
    assert got["x"].tolist() == [0.0, 2.5, 0.0]
    assert got["y"].tolist() == [0, 0, 9]
    assert got["y"].dtype == np.int32
    assert got["z"].tolist() == [True, False, False]


def test_build_like_arrow_schema(store):
    pa = pytest.importorskip("pyarrow")
    schema = pa.schema([("p", pa.float32()), ("q", pa.uint16())])
    with store.build("m", nrows=4, like=schema) as b:
        b["p"][:] = [1, 2, 3, 4]
        b["q"][:] = 7
    got = store.read("m")
    assert got["p"].dtype == np.float32 and got["p"].tolist() == [1, 2, 3, 4]
    assert got["q"].dtype == np.uint16 and got["q"].tolist() == [7] * 4


def test_build_no_private_copy_and_shares(store):
    n = 1 << 20  # 8 MiB per column
    before = anon_kb()
    with store.build("m", {"a": "float64", "b": "float64"}, n) as b:
        b["a"][:] = 1.0
        b["b"][:] = 2.0
        during = anon_kb()
    assert (during - before) * 1024 < 0.1 * 2 * n * 8
    v1 = b.version
    with store.build("m", {"a": "float64", "b": "float64"}, n) as b:  # b unchanged
        b["a"][:] = 3.0
        b["b"][:] = 2.0
    info = {v.version: v for v in store.versions("m")}
    assert info[b.version].nbytes <= n * 8 + 128 * 1024  # one column + manifest
    assert info[b.version].shared >= n * 8
    got = store.read("m")
    assert got["a"].iloc[0] == 3.0 and got["b"].iloc[-1] == 2.0
    assert v1 in info


def test_build_exception_and_errors(store):
    with pytest.raises(RuntimeError):
        with store.build("m", {"a": "float64"}, 10) as b:
            b["a"][:] = 1
            raise RuntimeError("x")
    assert store.datasets() == []
    with pytest.raises(libsnap.InvalidArgument, match="column 's': dtype object"):
        store.build("m", {"a": "float64", "s": object}, 10)
    with pytest.raises(libsnap.InvalidArgument, match="nrows"):
        store.build("m", {"a": "float64"}, -1)
    with pytest.raises(TypeError):
        store.build("m", {"a": "float64"})
    with pytest.raises(KeyError):
        with store.build("m", {"a": "float64"}, 1) as b:
            b["nope"]
    assert store.datasets() == []


def test_the_edit_object_keeps_nothing_after_the_block(store):
    v1 = store.publish("t", frame())
    ed = store.edit("t")
    with ed as df:
        df.iloc[0, 0] = 1.0
        assert {v.version: v.pinned for v in store.versions("t")}[v1] == 1
    del df  # the frame held the view (and with it the base's pin)
    store.trim()
    # ed is alive, but holds neither the base's pin nor the written pages
    assert {v.version: v.pinned for v in store.versions("t")}[v1] == 0
    assert ed.base == v1 and ed.version == v1 + 1 and ed.written_bytes() == 4096


def test_renamed_axes_are_published(store):
    store.publish("t", frame())
    with store.edit("t") as df:
        df.index.name = "row"  # renames the same Index object in place
        df.iloc[0, 0] = 2.0
    got = store.read("t")
    assert got.index.name == "row"
    assert got.iloc[0, 0] == 2.0
