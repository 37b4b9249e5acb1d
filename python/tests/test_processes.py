# SPDX-License-Identifier: LGPL-2.1-or-later
"""Workers started by fork, spawn and forkserver, process pools, and threads."""
import concurrent.futures as cf
import gc
import multiprocessing as mp
import os
import threading

import numpy as np
import pandas as pd
import pytest

import libsnap


def _column_sum(path, dataset, col):
    """Worker: open the store in the child and sum one column."""
    store = libsnap.open(path, readonly=True)
    with store.pin(dataset) as snap:
        return snap.version, float(snap[col].sum())


def _inherited_sum(q):
    """fork worker: use the frame the parent read before forking."""
    q.put(float(INHERITED.to_numpy().sum()))


INHERITED = None


def _publish(store, k, n=20_000):
    return store.publish("t", pd.DataFrame({"a": np.full(n, float(k)), "b": np.arange(n)}))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_by_start_method(store, method):
    _publish(store, 1)
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        got = pool.starmap(_column_sum, [(store.path, "t", "a")] * 4)
    assert got == [(1, 20_000.0)] * 4


def test_process_pool_executor(store):
    _publish(store, 3)
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        got = list(ex.map(_column_sum, [store.path] * 3, ["t"] * 3, ["b"] * 3))
    assert got == [(1, float(np.arange(20_000).sum()))] * 3


def test_frame_inherited_through_fork_stays_valid(store):
    global INHERITED
    _publish(store, 2)
    INHERITED = store.read("t")
    expected = float(INHERITED.to_numpy().sum())
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_inherited_sum, args=(q,))
    # a refresh after the fork must not disturb the child's view
    p.start()
    _publish(store, 5)
    _publish(store, 6)
    assert q.get(timeout=60) == expected
    p.join(60)
    assert p.exitcode == 0
    INHERITED = None


def test_fork_child_can_pin_and_publish(store):
    _publish(store, 1)
    df = store.read("t")
    pid = os.fork()
    if pid == 0:  # child: use the parent's frame, pin anew, publish
        code = 1
        try:
            ok = df["a"].iloc[0] == 1.0 and store.read("t")["a"].iloc[0] == 1.0
            v = _publish(store, 7)
            code = 0 if ok and v == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.current_version("t") == 2 and store.read("t")["a"].iloc[0] == 7.0
    assert df["a"].iloc[0] == 1.0


def test_threads_share_a_store(store):
    _publish(store, 1)
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            with store.pin("t") as snap:
                a = snap["a"]
                # every row of a version holds the same value: a torn read would mix
                if not (a == a[0]).all():
                    errors.append(snap.version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for k in range(2, 30):
        _publish(store, k)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    gc.collect()
    store.trim()
    assert store.gc().draining_versions == 0
