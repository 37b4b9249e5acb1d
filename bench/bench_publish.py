# SPDX-License-Identifier: LGPL-2.1-or-later
"""Full publish (every byte of the table new, nothing shared with the previous
version) against what the kernel and the CPU need for the same bytes, measured
in the same run, right next to each publish.

    python bench/bench_publish.py [--rows 2700000] [--cols 100] [--runs 5]
                                  [--dir DIR] [--no-huge] [--doc FILE]

  huge       on a private huge-page tmpfs (mount -t tmpfs -o huge=always, needs
             root; unmounted at the end): store.publish of a ROWS x COLS float64
             DataFrame, seconds, against the sum of two baselines: (a) np.copyto
             of the same bytes between two warm (already faulted) buffers, the pure
             copy, and (b) os.posix_fallocate of a fresh file of the same size on
             the same tmpfs, the kernel's allocation of fresh huge pages.
             Target: publish <= 1.3x (a) + (b). Also: (b) as a share of the publish.
  /dev/shm   on the default tmpfs (4 KiB pages): publish GB/s against
             multiprocessing.shared_memory.SharedMemory(create=True) + np.copyto of
             the same table into it. Target: libsnap >= 1.5x the GB/s.

Each run publishes a new frame (a base array plus the run number: every value,
so every chunk, differs from the previous version), built before the timing.
The store keeps 1 version; retention is held off during the timed publish (as
no baseline's creation includes a free) and the freeing of the previous
version is timed apart, beside the baselines' freeing. Before each run's
steps the tmpfs's pages are made recently used (warm_free_pages), so that no
step pays for the host backing pages again in a VM. Medians of RUNS.
"""
import argparse
import mmap
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing import shared_memory

import numpy as np
import pandas as pd

import libsnap

GIB = 2**30
NAME = "t"


def meminfo_kb(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


class Table:
    """The source frames: base + k for the k-th publish, written into one warm
    buffer (so the source's page faults are never timed), plus a warm
    destination for the memcpy baseline."""

    def __init__(self, rows, cols):
        # column-major, as pandas keeps a frame's block: every column contiguous
        self.base = np.asfortranarray(np.random.default_rng(1).random((rows, cols)))
        self.buf = np.empty_like(self.base, order="F")
        self.warm = np.empty_like(self.base, order="F")
        self.buf.fill(0)  # fault both in now
        self.warm.fill(0)
        self.nbytes = self.base.nbytes
        self.k = 0  # one number per publish in the whole run: no two frames alike

    def next_frame(self):
        self.k += 1
        np.add(self.base, self.k, out=self.buf)
        return pd.DataFrame(self.buf, copy=False)  # a view of buf, no copy

    def memcpy(self):
        """(a) the pure copy: warm source to warm destination."""
        return timed(np.copyto, self.warm, self.buf)


def new_store(path):
    store = libsnap.open(path, create=True)
    store.set_keep(1)  # only the current version: the tmpfs holds one table (+ one
    return store       # during a publish)


def publish(store, df):
    """store.publish, timed, with retention held off (keep 2) so that freeing the
    previous version is not counted in it, as no baseline's creation counts a
    free; then the freeing (set_keep(1) applies retention at once), timed apart.
    Checks that nothing was shared (a full publish). Returns both times."""
    store.set_keep(2, NAME)
    dt = timed(store.publish, NAME, df)
    t0 = time.perf_counter()
    store.set_keep(1, NAME)
    store.gc(NAME)
    free = time.perf_counter() - t0
    vs = store.versions(NAME)
    if vs[-1].shared or len(vs) != 1:
        print(f"  warning: version {vs[-1].version} shares {vs[-1].shared} bytes, "
              f"{len(vs)} versions kept: not a full publish", file=sys.stderr)
    return dt, free


def touch_pages(fd, nbytes):
    """Map the file, write one byte per 4 KiB page, unmap; the write, timed."""
    mm = mmap.mmap(fd, nbytes)
    pages = None
    try:
        pages = np.frombuffer(mm, np.uint8)[::4096]
        return timed(pages.fill, 1)
    except BaseException as e:
        # Ctrl-C / SIGTERM: the traceback's finished frames hold the view, which
        # would keep the mapping (and the huge-page tmpfs busy): let go of them
        traceback.clear_frames(e.__traceback__)
        raise
    finally:
        del pages
        mm.close()


def kernel_alloc(directory, nbytes):
    """(b) posix_fallocate of a fresh file in DIRECTORY, timed. For context also:
    the first touch of it through a mapping (tmpfs leaves a fallocated page
    uncleared and zeroes it at its first fault: zeroing + faults), the same touch
    through a second mapping (the pages present: the faults alone), the unlink +
    close (freeing the pages) and the share of the file that huge pages back."""
    path = os.path.join(directory, f"falloc-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    r = {}
    try:
        h0 = meminfo_kb("ShmemHugePages")
        r["alloc"] = timed(os.posix_fallocate, fd, 0, nbytes)
        r["huge"] = (meminfo_kb("ShmemHugePages") - h0) * 1024 / nbytes
        r["touch"] = touch_pages(fd, nbytes)
        r["retouch"] = touch_pages(fd, nbytes)  # a new mapping, the pages present
    finally:
        t0 = time.perf_counter()
        os.unlink(path)
        os.close(fd)  # the last reference: the pages are freed here
        r["free"] = time.perf_counter() - t0
    r["zero"] = max(0.0, r["touch"] - r["retouch"])
    return r


def warm_free_pages(directory, nbytes):
    """Allocate, touch and free NBYTES on the tmpfs of DIRECTORY, untimed, so that
    the timed step after it gets recently used pages like every other. In a VM
    whose balloon reports free pages to the host (page_reporting_order 9: 2 MiB
    blocks), pages freed a while ago may have gone back to the host, and the
    first touch of them waits for it to back them again: whichever step ran
    first would pay that (seen here: a 0.2 GiB first touch taking 0.6 s instead
    of 0.02 s)."""
    fd, path = tempfile.mkstemp(prefix="warm-", dir=directory)
    try:
        os.posix_fallocate(fd, 0, nbytes)
        touch_pages(fd, nbytes)
    finally:
        os.unlink(path)
        os.close(fd)


def shm_copy(tab):
    """shared_memory + np.copyto of the table, timed; close + unlink timed
    apart (for context)."""
    t0 = time.perf_counter()
    shm = shared_memory.SharedMemory(create=True, size=tab.nbytes)
    try:
        dst = np.ndarray(tab.buf.shape, tab.buf.dtype, buffer=shm.buf, order="F")
        np.copyto(dst, tab.buf)
        t1 = time.perf_counter()
        del dst
        shm.close()
    finally:
        shm.unlink()  # also on Ctrl-C: nothing left in /dev/shm
    return t1 - t0, time.perf_counter() - t1


def mount_huge(size):
    """A private tmpfs with huge=always in a fresh temp dir; raises RuntimeError
    (nothing left behind) if it cannot be mounted."""
    d = tempfile.mkdtemp(prefix="bench-publish-huge-")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},huge=always",
                        "tmpfs", d], check=True, capture_output=True, text=True)
    except BaseException as e:
        if os.path.ismount(d):  # interrupted after the mount itself
            umount(d)
        else:
            os.rmdir(d)
        if isinstance(e, (OSError, subprocess.CalledProcessError)):
            why = getattr(e, "stderr", "") or str(e)
            raise RuntimeError(f"mount failed: {why.strip()}") from None
        raise
    return d


def umount(d):
    if subprocess.run(["umount", d]).returncode:
        subprocess.run(["umount", "-l", d])  # still busy: detach it anyway
    os.rmdir(d)


def med(xs):
    return statistics.median(xs)


def spread_of(ratios):
    """The per-run ratios' range: how far one run's pair strays from the median."""
    return f"(runs {min(ratios):.2f}-{max(ratios):.2f})"


def ms(t):
    return f"{t * 1e3:.1f} ms"


def shm_pages():
    """The page size of /dev/shm's tmpfs, from its huge= mount option."""
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fs, opts = line.split()[:4]
            if mnt == "/dev/shm" and fs == "tmpfs":
                huge = [o for o in opts.split(",") if o.startswith("huge=")]
                return huge[0] if huge else "no huge= option: 4 KiB pages"
    return "not a tmpfs?"


def run_huge(a, tab):
    """Figure 1; returns each step's times, or a string saying why it was skipped."""
    if a.no_huge:
        return "skipped (--no-huge)"
    if os.geteuid() != 0:
        return "skipped: mounting a huge-page tmpfs needs root"
    # room for two versions during a publish plus the fallocated file
    size = max(8 * GIB, (3 * tab.nbytes // GIB + 2) * GIB)
    try:
        d = mount_huge(size)
    except RuntimeError as e:
        return f"skipped: {e}"
    try:
        store = new_store(os.path.join(d, "store"))
        try:
            store.publish(NAME, tab.next_frame())  # the first version: not timed
            r = {"publish": [], "retention": [], "memcpy": []}
            for i in range(a.runs):
                df = tab.next_frame()  # built before any timing
                r["memcpy"].append(tab.memcpy())
                warm_free_pages(d, tab.nbytes)
                # its touch + free leaves recently used pages for the publish, as
                # warm_free_pages did for it
                for k, v in kernel_alloc(d, tab.nbytes).items():
                    r.setdefault(k, []).append(v)
                for k, v in zip(("publish", "retention"), publish(store, df)):
                    r[k].append(v)
                del df
                print(f"  huge run {i + 1}: publish {r['publish'][-1]:.3f} s, memcpy "
                      f"{r['memcpy'][-1]:.3f} s, fallocate {r['alloc'][-1]:.4f} s, "
                      f"zeroing {r['zero'][-1]:.3f} s", flush=True)
        finally:
            store.close()
    finally:
        umount(d)  # also on an error or Ctrl-C
    return r


def run_shm(a, tab):
    """Figure 2: publish on /dev/shm against shared_memory + np.copyto."""
    tmp = tempfile.mkdtemp(prefix="bench-publish-", dir=a.dir)
    try:
        store = new_store(os.path.join(tmp, "store"))
        try:
            store.publish(NAME, tab.next_frame())  # the first version: not timed
            r = {k: [] for k in ("publish", "retention", "shm", "shm_free")}
            for i in range(a.runs):
                df = tab.next_frame()
                warm_free_pages(tmp, tab.nbytes)
                t, free = shm_copy(tab)
                r["shm"].append(t)
                r["shm_free"].append(free)
                # the same kernel work on 4 KiB pages, for context; its touch +
                # free leaves recently used pages for the publish
                for k, v in kernel_alloc(tmp, tab.nbytes).items():
                    r.setdefault(k, []).append(v)
                for k, v in zip(("publish", "retention"), publish(store, df)):
                    r[k].append(v)
                del df
                print(f"  /dev/shm run {i + 1}: publish {r['publish'][-1]:.3f} s, "
                      f"shared_memory + copyto {t:.3f} s, fallocate "
                      f"{r['alloc'][-1]:.3f} s, zeroing {r['zero'][-1]:.3f} s", flush=True)
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return r


def rows_of(a, tab, huge, shm):
    """The figures as (figure, libsnap, baselines, ratio, target, met) rows,
    then context lines."""
    gb = tab.nbytes / 1e9
    rows, notes = [], []
    if isinstance(huge, str):
        rows.append(("full publish, huge-page tmpfs", huge, "", "", "<= 1.3x", ""))
    else:
        spread = spread_of([p / (c + f) for p, c, f in
                            zip(huge["publish"], huge["memcpy"], huge["alloc"])])
        huge = {k: med(v) for k, v in huge.items()}
        p, base = huge["publish"], huge["memcpy"] + huge["alloc"]
        rows.append(("full publish, huge-page tmpfs (time)", ms(p),
                     f"memcpy {ms(huge['memcpy'])} + fallocate {ms(huge['alloc'])} "
                     f"= {ms(base)}", f"{p / base:.2f}x {spread}", "<= 1.3x",
                     p / base <= 1.3))
        alloc = huge["alloc"] + huge["zero"]
        rows.append(("kernel page allocation (fallocate) / publish", ms(p),
                     ms(huge['alloc']), f"{huge['alloc'] / p:.1%}", "report", None))
        rows.append(("kernel page allocation incl. zeroing / publish", ms(p),
                     f"{ms(huge['alloc'])} + zeroing {ms(huge['zero'])} = {ms(alloc)}",
                     f"{alloc / p:.0%}", "report", None))
        notes += [
            f"huge pages backed {huge['huge']:.0%} of the fallocated file "
            "(ShmemHugePages before/after)",
            "tmpfs leaves fallocated pages uncleared and zeroes each at its first fault: "
            "zeroing = first touch of the fallocated file - the same touch through a "
            "second mapping (a difference of two figures: 0 within noise). Beside the "
            "baselines, same runs, each alone and single-threaded (share of the "
            "publish):"] + context(huge)
    spread = spread_of([b / p for p, b in zip(shm["publish"], shm["shm"])])
    shm = {k: med(v) for k, v in shm.items()}
    p, s = shm["publish"], shm["shm"]
    rows.append(("full publish, /dev/shm (throughput)", f"{gb / p:.2f} GB/s",
                 f"shared_memory + copyto {gb / s:.2f} GB/s", f"{s / p:.2f}x {spread}",
                 ">= 1.5x", s / p >= 1.5))
    notes += [f"/dev/shm ({shm_pages()}): publish {ms(p)}, shared_memory create + copyto "
              f"{ms(s)}; the same kernel work alone, same runs (share of the publish):",
              f"  posix_fallocate {ms(shm['alloc'])} = {shm['alloc'] / p:.0%}"] + \
        context(shm) + [f"  shared_memory close + unlink {ms(shm['shm_free'])}"]
    ncpu = os.cpu_count()
    threads = min(os.sysconf("SC_NPROCESSORS_ONLN"), 8)
    notes.append(f"CPUs: os.cpu_count() = {ncpu}. The publish's chunk pass "
                 f"(libsnap/src/share.c: compare, hash, allocate, copy) ran on {threads} "
                 "threads (one per online CPU, at most 8); the baselines (np.copyto, "
                 "posix_fallocate, shared_memory + copyto) on one.")
    return rows, notes


def context(r):
    """The context lines of a figure: zeroing, faults, freeing (share of publish)."""
    p = r["publish"]
    return [f"  first touch of the fallocated file (zeroing + faults) {ms(r['touch'])}"
            f" = {r['touch'] / p:.0%}; through a second mapping (faults alone) "
            f"{ms(r['retouch'])}; zeroing {ms(r['zero'])} = {r['zero'] / p:.0%}",
            f"  unlink + close of it (freeing the pages) {ms(r['free'])}; the publish's "
            f"retention freeing the previous version (timed apart) {ms(r['retention'])}"]


def verdict(ok):
    return "" if ok is None or ok == "" else ("**met**" if ok else "**missed**")


def print_table(rows, notes):
    head = ("figure", "libsnap median", "baseline(s) median", "ratio", "target", "")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]

    def line(r):
        return "  ".join(str(r[i]).ljust(w[i]) for i in range(5)) + "  " + \
            verdict(r[5]).strip("*")
    print()
    print(line(head))
    for r in rows:
        print(line(r))
    for n in notes:
        print(n)


def loadavg(la):
    return " ".join(f"{x:.2f}" for x in la)


def write_doc(path, a, tab, load, rows, notes):
    cmd = " ".join(shlex.quote(x) for x in ["python"] + sys.argv)
    L = ["## Full publish: against memcpy, page allocation and shared_memory\n",
         f"Generated by `bench/bench_publish.py` (rerun it; do not edit by hand). "
         f"Command: `{cmd}`. Load average at start: {loadavg(load[0])} (at the end: "
         f"{loadavg(load[1])}). Machine: {os.cpu_count()} CPUs, Linux {platform.release()}, "
         f"Python {sys.version.split()[0]}, numpy {np.__version__}, pandas "
         f"{pd.__version__}, libsnap {libsnap.__version__}.\n",
         f"Table: {a.rows} rows x {a.cols} float64 ({tab.nbytes / GIB:.2f} GiB), a "
         "DataFrame whose every value (so every chunk) differs from the previous "
         "version's, built before the timing. The store keeps 1 version; retention is "
         "held off during the timed publish and the freeing of the previous version is "
         "timed apart (below). Each baseline is measured right next "
         f"to each publish in the same run; medians of {a.runs} runs; ratio = libsnap "
         "over the baseline for the time, libsnap's GB/s over the baseline's for the "
         "throughput: the ratio of the medians, and in brackets the range of the "
         "ratios of each run's pair.\n",
         "| figure | libsnap median | baseline(s) median | ratio | target | |",
         "|---|---:|---:|---:|---:|---|"]
    L += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {verdict(r[5])} |"
          for r in rows]
    L.append("")
    L += [f"- {n.strip()}" if not n.startswith("  ") else f"  - {n.strip()}"
          for n in notes]
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_700_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm",
                    help="where the /dev/shm store's temp dir goes (removed at the end)")
    ap.add_argument("--no-huge", action="store_true", help="skip the huge-page figure")
    ap.add_argument("--doc", default=None, help="also write the figures as markdown")
    a = ap.parse_args()
    # SIGTERM ends the run like Ctrl-C, through every finally (unmount, rmtree)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()
    tab = Table(a.rows, a.cols)
    print(f"libsnap {libsnap.__version__}, numpy {np.__version__}, pandas {pd.__version__}"
          f": {a.rows} x {a.cols} float64 = {tab.nbytes / GIB:.2f} GiB, medians of "
          f"{a.runs}; load average at start {loadavg(load)}",
          flush=True)
    huge = run_huge(a, tab)
    if isinstance(huge, str):
        print(f"huge-page tmpfs figure {huge}")
    shm = run_shm(a, tab)
    rows, notes = rows_of(a, tab, huge, shm)
    print_table(rows, notes)
    end = os.getloadavg()
    print(f"load average at the end {loadavg(end)}")
    if a.doc:
        write_doc(a.doc, a, tab, (load, end), rows, notes)
        print(f"wrote {a.doc}")


if __name__ == "__main__":
    main()
