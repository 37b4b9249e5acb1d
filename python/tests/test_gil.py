# SPDX-License-Identifier: LGPL-2.1-or-later
"""A pin that misses the cache runs the library's slow path without the GIL.

The slow path opens the segment file. The test puts a FIFO where the segment
should be, so that open() blocks until someone opens the FIFO for writing, and
makes the main thread be that someone. Holding the GIL there would deadlock:
the main thread could never run. The scenario runs in a child interpreter with
a timeout, so a regression fails instead of hanging the suite.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np

import libsnap

CHILD = textwrap.dedent("""
    import os, sys, threading
    import libsnap
    store_path, fifo = sys.argv[1], sys.argv[2]
    store = libsnap.open(store_path)          # a fresh handle: nothing cached
    result = {}
    def pin():
        try:
            store.pin("d")
            result["got"] = "pinned"
        except libsnap.Error as e:
            result["got"] = type(e).__name__ + ": " + str(e)
    t = threading.Thread(target=pin)
    t.start()
    # Blocks until the pinning thread opens the FIFO for reading, which it can
    # only do while this thread runs Python code, i.e. without the GIL held.
    fd = os.open(fifo, os.O_WRONLY)
    os.close(fd)
    t.join()
    print(result["got"])
""")


def test_pin_slow_path_releases_the_gil(store, store_path):
    store.publish("d", np.arange(12.0).reshape(4, 3))
    seg = os.path.join(store_path, "segments", "d", "1.seg")
    os.rename(seg, seg + ".aside")
    os.mkfifo(seg, 0o600)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, store_path, seg],
                             capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(seg)
        os.rename(seg + ".aside", seg)
    assert out.returncode == 0, out.stderr
    # the FIFO is no segment: the pin itself fails, naming the file
    assert "1.seg" in out.stdout, out.stdout
    assert libsnap.open(store_path).read("d").shape == (4, 3)
