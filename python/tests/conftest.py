# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import shutil
import tempfile

import pytest

import libsnap


@pytest.fixture
def store_path():
    base = os.environ.get("SNAP_TEST_DIR", "/dev/shm")
    path = tempfile.mkdtemp(prefix="snaptest-py-", dir=base)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(store_path):
    s = libsnap.open(store_path, create=True)
    yield s
    s.close()


def anon_kb():
    """Anonymous memory of this process (where any copy of the data would land)."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise AssertionError("no Anonymous line in smaps_rollup")


def uss_kb():
    """Unique set size: memory only this process maps (Private_Clean + Private_Dirty)."""
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total
