# SPDX-License-Identifier: LGPL-2.1-or-later
"""Range checks on every integer crossing into libsnap, drop, and dataset names."""
import gc
import os

import numpy as np
import pandas as pd
import pytest

import libsnap


@pytest.fixture
def pub(store):
    store.publish("d", pd.DataFrame({"x": [1.0, 2.0]}))
    return store


BAD_KEEP = [-1, 0, 2**32, True, 1.5, "2", None]


@pytest.mark.parametrize("keep", BAD_KEEP)
def test_set_keep_out_of_range(pub, keep):
    with pytest.raises(libsnap.InvalidArgument, match="keep = ") as e:
        pub.set_keep(keep)
    assert "keep = %r" % (keep,) in str(e.value)
    assert isinstance(e.value, ValueError)
    assert e.value.code == libsnap.InvalidArgument.code
    with pytest.raises(ValueError, match="keep"):
        pub._s.set_keep(None, keep)  # the C boundary checks too
    assert [v.version for v in pub.versions("d")] == [1]


def test_set_keep_bounds_ok(pub):
    pub.set_keep(1)
    pub.set_keep(np.uint32(2**32 - 1))


@pytest.mark.parametrize("version", [2**64, 2**64 + 1, -1, 0, True, 1.0])
def test_read_version_out_of_range(pub, version):
    with pytest.raises(libsnap.InvalidArgument, match="version = "):
        pub.read("d", version=version)
    with pytest.raises(libsnap.InvalidArgument, match="version = "):
        pub.pin("d", version)
    with pytest.raises(libsnap.InvalidArgument, match="version = "):
        pub.rollback("d", version)


def test_core_pin_version_2_64(pub):
    # what read(version=2**64) used to reach: the C layer wrapped it to 0, "current"
    with pytest.raises(libsnap.InvalidArgument, match="version = 18446744073709551616"):
        pub._s.pin("d", 2**64)
    with pytest.raises(libsnap.InvalidArgument):
        pub._s.rollback("d", 2**64)


def test_numpy_integers_accepted(pub):
    assert pub.read("d", version=np.int64(1))["x"].tolist() == [1.0, 2.0]


def test_max_datasets_and_nrows(pub):
    for bad in [-1, 2**32, False, 0.0]:
        with pytest.raises(libsnap.InvalidArgument, match="max_datasets = "):
            pub.set_max_datasets(bad)
        with pytest.raises(libsnap.InvalidArgument, match="max_datasets = "):
            pub._s.set_max_datasets(bad)
    for bad in [-1, 2**64, True, 2.0]:
        with pytest.raises(libsnap.InvalidArgument, match="nrows = "):
            pub._s.begin("e", bad, [], b"")
        with pytest.raises(libsnap.InvalidArgument, match="data_bytes = "):
            pub._s.begin("e", 1, [("s", libsnap._core.TYPES["string"], False, None, bad, 0, 0)], b"")
    assert pub.datasets() == ["d"]


def test_drop(pub):
    snap = pub.pin("d")
    with pytest.raises(libsnap.Busy, match="pinned by pid %d" % os.getpid()):
        pub.drop("d")
    assert pub.datasets() == ["d"]
    snap.release()
    del snap
    gc.collect()
    pub.drop("d")
    assert pub.datasets() == []
    with pytest.raises(libsnap.NotFound):
        pub.read("d")
    with pytest.raises(libsnap.NotFound):
        pub.drop("d")
    # numbers are never reused: a new "d" starts after the dropped one
    assert pub.publish("d", pd.DataFrame({"x": [3.0]})) == 2
    df = pub.read("d")
    pub.drop("d", force=True)  # df keeps its mapping
    assert df["x"].tolist() == [3.0]


def test_failed_first_publish_leaves_nothing(pub):
    pub.set_max_datasets(2)
    for name in ["e", "f", "g"]:
        with pytest.raises(libsnap.InvalidArgument):
            pub.publish(name, pd.DataFrame({"x": [1 + 2j]}))  # refused before begin
        p = pub._s.begin(name, 1, [], b"")
        p.abort()
    assert pub.datasets() == ["d"]
    pub.publish("e", pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize("name", ["a b", "x@1", "a\nb", "caf\u00e9", ".x"])
def test_bad_new_names(pub, name):
    with pytest.raises(libsnap.InvalidArgument, match="dataset name"):
        pub.publish(name, pd.DataFrame({"x": [1.0]}))
    assert pub.datasets() == ["d"]
