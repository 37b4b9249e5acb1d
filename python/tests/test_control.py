# SPDX-License-Identifier: LGPL-2.1-or-later
"""A lost or damaged control file (issue 11, bugs 3 and 4) from Python.

A lost control.mdb must never make libsnap.open(create=True) start a new store
over the old segments (its first write swept them all); a damaged one must give
libsnap.Error naming control.mdb and the repair, never kill the interpreter.
"""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import libsnap

ECONTROL = -1007


def _fill(store):
    for k in (1, 2, 3):
        store.publish("t", pd.DataFrame({"a": np.full(1000, float(k))}))


def _segments(path):
    out = []
    for root, _, files in os.walk(os.path.join(path, "segments")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_lost_control_file_create_refuses(store_path, how):
    s = libsnap.open(store_path, create=True)
    _fill(s)
    s.close()
    before = _segments(store_path)
    assert len(before) == 2
    control = os.path.join(store_path, "control.mdb")
    if how == "deleted":
        os.unlink(control)
    else:
        os.truncate(control, 0)
    for create in (True, False):
        with pytest.raises(libsnap.Error) as e:
            libsnap.open(store_path, create=create)
        assert e.value.code == ECONTROL
        assert "control.mdb" in str(e.value)
        assert "doctor --rebuild" in str(e.value)
    assert _segments(store_path) == before  # nothing swept


_READ_ALL = r"""
import sys, libsnap
path = sys.argv[1]
try:
    s = libsnap.open(path)
    for name in s.datasets():
        s.versions(name)
        s.read(name).sum()
        with s.pin(name) as snap:
            snap.version
except libsnap.Error as e:
    msg = str(e)
    assert "control.mdb" in msg or "segments" in msg, msg
    print("refused:", msg)
"""


def test_damaged_control_file_never_crashes(store_path):
    s = libsnap.open(store_path, create=True)
    _fill(s)
    s.publish("u", pd.DataFrame({"b": np.arange(10)}))
    s.close()
    control = os.path.join(store_path, "control.mdb")
    with open(control, "rb") as f:
        good = f.read()
    psize = 4096
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    refused = 0
    rng = np.random.default_rng(11)
    for page in range(len(good) // psize):
        for pattern in ("junk", "bits"):
            bad = bytearray(good)
            chunk = slice(page * psize, (page + 1) * psize)
            if pattern == "junk":
                bad[chunk] = rng.integers(0, 256, psize, dtype=np.uint8).tobytes()
            else:
                for i in rng.integers(page * psize, (page + 1) * psize, 8):
                    bad[i] ^= 0x41
            with open(control, "wb") as f:  # in place, as a stray write would
                f.write(bad)
            p = subprocess.run([sys.executable, "-c", _READ_ALL, store_path], env=env,
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, (page, pattern, p.returncode, p.stderr[-2000:])
            refused += "refused" in p.stdout
    assert refused > 0
