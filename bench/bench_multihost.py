# SPDX-License-Identifier: LGPL-2.1-or-later
"""Following a primary through S3 (docs/multihost.md): one primary writerd
--push and three follower writerds --follow on one SeaweedFS on loopback,
against plain curl transfers of the same bytes from the same server, same run,
medians.

    python bench/bench_multihost.py [--rows 2097152] [--cols 128] [--runs 3]
                                    [--poll-ms 250] [--doc FILE]

Needs writerd, snapctl and curl (7.75+, --aws-sigv4), and the weed binary of
.venv-s3 (scripts/test.sh makes it; or SNAP_WEED). Stores live under /dev/shm;
SeaweedFS keeps its data in a temporary directory under /tmp.

Each run:
  full     the primary publishes a new table of rows x cols float64 (a full
           version: nothing shared with the last); timed from the flip (the
           publish returning) to the moment the last of the three followers
           logs its flip. Includes the primary's push (the pack uploaded, the
           manifest, the announcement), the followers' poll (--poll-ms, with
           20% jitter) and their downloads, all three at once.
           Baselines: U1 = a plain parallel upload of the same bytes (4 curl
           PUTs of a quarter each, as 4 objects); D3 = three plain downloads
           of those 4 objects at once, right after (just written, as the
           followers read the pack: what three hosts pulling through one server
           cost); D1 = one plain parallel ranged GET of the pack (4 curl
           processes, a quarter each, into /dev/shm), after the followers read
           it.
  1%       the primary edits 1% of the rows (contiguous, every column) in place
           (store.edit); bytes fetched per follower (its log: deltas, whole
           chunks and the manifest) against the changed bytes, and time to all
           three flipped against the poll interval + 2x one plain GET of those
           bytes (the new pack's delta region).
  restore  an empty store takes the newest version with snapctl pull (what a
           follower does at start after a reboot, and writerd --restore),
           against D1.
"""
import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import libsnap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "s3"))
import seaweed  # noqa: E402
sys.path.insert(0, HERE)
from bench_publish import warm_free_pages  # noqa: E402

DEADLINE = 600


class Daemon:
    """A writerd in the foreground; its log lines, with their arrival times."""

    def __init__(self, writerd, store, args, env):
        self.store = store
        self.lines = []  # (monotonic time, line)
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([writerd, "--store", store, "--no-inbox",
                                      "--foreground"] + args, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(r"^ready ")

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait(self, pattern, start=0):
        rx = re.compile(pattern)
        end = time.monotonic() + DEADLINE
        with self.cond:
            i = start
            while True:
                for i in range(i, len(self.lines)):
                    if rx.search(self.lines[i][1]):
                        return self.lines[i]
                i = len(self.lines)
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise RuntimeError("no /%s/ from %s:\n%s" % (
                        pattern, self.store, "\n".join(x[1] for x in self.lines[-20:])))
                self.cond.wait(1.0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def wait_flips(p, fs, marks, v):
    """The primary's push line of version @v (logged once the announcement is
    written), and each follower's flip: (push line, its arrival time, the
    followers' arrival times, their lines), searched from @marks."""
    tp, pline = p.wait(r"^push dataset=t version=%d " % v, marks[0])
    # the line comes after the sweep: the announcement was written earlier
    tp -= field(pline, "seconds") - field(pline, "announce_seconds")
    got = [d.wait(r"^follow dataset=t version=%d " % v, m) for d, m in zip(fs, marks[1:])]
    return pline, tp, [t for t, _ in got], [line for _, line in got]


def field(line, name):
    return float(re.search(r"\b%s=([0-9.]+)" % name, line).group(1))


def curl_get(env, url_base, key, ranges, out_dir, copies=1):
    """copies x len(ranges) curl processes at once; seconds until all are done."""
    procs, t0 = [], time.monotonic()
    for c in range(copies):
        for i, (a, b) in enumerate(ranges):
            out = os.path.join(out_dir, "get-%d-%d" % (c, i))
            procs.append(subprocess.Popen(
                ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                 "%s:%s" % (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
                 "-r", "%d-%d" % (a, b - 1), "-o", out, url_base + key]))
    rcs = [p.wait() for p in procs]
    dt = time.monotonic() - t0
    if any(rcs):
        raise RuntimeError("curl GET failed: %s" % rcs)
    for f in os.listdir(out_dir):
        if f.startswith("get-"):
            os.unlink(os.path.join(out_dir, f))
    return dt


def curl_get_objects(env, url_base, keys, out_dir, copies=1):
    """copies x len(keys) whole-object curl GETs at once; seconds until all done."""
    procs, t0 = [], time.monotonic()
    for c in range(copies):
        for i, key in enumerate(keys):
            procs.append(subprocess.Popen(
                ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                 "%s:%s" % (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
                 "-o", os.path.join(out_dir, "get-%d-%d" % (c, i)), url_base + key]))
    rcs = [p.wait() for p in procs]
    dt = time.monotonic() - t0
    for f in os.listdir(out_dir):
        if f.startswith("get-"):
            os.unlink(os.path.join(out_dir, f))
    if any(rcs):
        raise RuntimeError("curl GET failed: %s" % rcs)
    return dt


def curl_put(env, url_base, key, path, size, parts, out_dir):
    """parts curl PUTs at once, each of size/parts bytes of @path (copied into
    @out_dir first)."""
    step = -(-size // parts)
    procs, t0 = [], None
    for i in range(parts):
        part = os.path.join(out_dir, "put-%d" % i)
        if not os.path.exists(part):
            with open(path, "rb") as src, open(part, "wb") as dst:
                src.seek(i * step)
                dst.write(src.read(step))
    t0 = time.monotonic()
    for i in range(parts):
        part = os.path.join(out_dir, "put-%d" % i)
        procs.append(subprocess.Popen(
            ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
             "%s:%s" % (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]),
             "-T", part, "%s%s.%d" % (url_base, key, i)]))
    rcs = [p.wait() for p in procs]
    dt = time.monotonic() - t0
    for i in range(parts):
        os.unlink(os.path.join(out_dir, "put-%d" % i))
    if any(rcs):
        raise RuntimeError("curl PUT failed: %s" % rcs)
    return dt


def quarters(size, n=4):
    step = -(-size // n)
    return [(i * step, min(size, (i + 1) * step)) for i in range(n) if i * step < size]


def reading(med, a):
    """What the figures say about the targets, in numbers of this run."""
    return (
        "## Reading the figures\n\n"
        "- **From the primary's flip, the targets measure the push too.** The "
        "announcement is written after the last byte is uploaded (so no follower ever "
        "sees an incomplete version), so a follower cannot start before the upload "
        "ends. On this server a plain parallel upload of the table alone (U1, %.2f s) "
        "is %.1fx one plain download (D1, %.2f s): no order of work can bring flip to "
        "flipped under 1.3x D1 here. The push itself runs at %.2fx U1, and flip to "
        "all three followers flipped at %.2fx a plain upload followed by three plain "
        "downloads at once (U1 + D3).\n"
        "- **From the announcement, the followers' side.** Three followers fetch and "
        "flip in %.2fx the time three plain downloads of just-written objects take "
        "(D3); they also hash every chunk and flip, on two cores shared with the "
        "server. A single follower restoring an empty store: %.2fx D1.\n"
        "- **A 1%% change.** Each follower fetches %.3fx the changed bytes (deltas, "
        "whole chunks where a delta would not be smaller, and the %.2f MB manifest). "
        "From the announcement the three followers have flipped after %.3f s, %.2fx "
        "the poll interval plus twice a plain GET of those bytes. From the flip it "
        "takes %.3f s more: the push, which uploads the changed chunks whole (for "
        "restores and followers that jumped) and their deltas.\n" % (
            med["u1"], med["u1"] / med["d1"], med["d1"], med["push"] / med["u1"],
            med["full"] / (med["u1"] + med["d3"]), med["follow1"] / med["d3"],
            med["restore"] / med["restore_d1"], med["chg_fetched"] / med["chg_bytes"],
            med["chg_manifest"] / 1e6, med["chg_ann"],
            med["chg_ann"] / (a.poll_ms / 1000 + 2 * med["chg_get"]),
            med["chg_time"] - med["chg_ann"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1 << 21)
    ap.add_argument("--cols", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll-ms", type=int, default=250)
    ap.add_argument("--writerd", default=os.path.join(ROOT, "build", "writerd", "writerd"))
    ap.add_argument("--snapctl", default=os.path.join(ROOT, "build", "snapctl", "snapctl"))
    ap.add_argument("--doc", help="write the figures as Markdown to this file")
    a = ap.parse_args()
    weed = seaweed.find_weed(None)
    if not weed:
        sys.exit("bench_multihost: no weed binary (bash scripts/test.sh makes .venv-s3)")
    server = seaweed.Server(weed)
    server.start()
    server.wait_ready()
    env = server.env()
    url = env["SNAP_S3_TEST_URL"]
    bucket_path = url[len("s3://"):]
    url_base = "%s/%s" % (env["AWS_ENDPOINT_URL"], bucket_path)
    tmp = tempfile.mkdtemp(prefix="bench-mh-", dir="/dev/shm")
    daemons = []
    fig = {k: [] for k in ("full", "full_ann", "push", "follow1", "d1", "d3", "u1",
                           "chg_bytes", "chg_fetched", "chg_time", "chg_ann", "chg_push",
                           "chg_manifest",
                           "chg_get", "restore", "restore_d1")}
    try:
        pstore = os.path.join(tmp, "p")
        libsnap.Store(pstore, create=True)
        # --keep 1 everywhere: four 2 GiB stores, three downloads and the frame
        # share 24 GiB; the pusher keeps the version it pushed last pinned itself
        p = Daemon(a.writerd, pstore, ["--push", url, "--poll-interval", "50",
                                      "--push-grace", "0", "--push-keep", "2",
                                      "--keep", "1"], env)
        daemons.append(p)
        fs = [Daemon(a.writerd, os.path.join(tmp, "f%d" % i),
                     ["--follow", url, "--poll-interval", str(a.poll_ms), "--keep", "1"],
                     env)
              for i in range(3)]
        daemons += fs
        store = libsnap.Store(pstore)
        rng = np.random.default_rng(1)
        nbytes = a.rows * a.cols * 8
        print("table: %d x %d float64 = %.2f GiB; poll interval %d ms (+ up to 20%%)" % (
            a.rows, a.cols, nbytes / 2**30, a.poll_ms), flush=True)
        import pandas as pd
        for run in range(a.runs):
            # ---------------------------------------------------------- full
            frame = pd.DataFrame(rng.random((a.rows, a.cols)), copy=False,
                                 columns=["c%d" % i for i in range(a.cols)])
            marks = [len(d.lines) for d in [p] + fs]
            warm_free_pages(tmp, 4 * nbytes)
            store.publish("t", frame, share=False)
            t0 = time.monotonic()
            del frame
            v = store.current_version("t")
            pline, tp, arrivals, lines = wait_flips(p, fs, marks, v)
            follows = [field(line, "seconds") for line in lines]
            full = max(arrivals) - t0
            fig["full_ann"].append(max(arrivals) - tp)
            pack = re.search(r" pack=([0-9a-f]{32}) ", pline).group(1)
            key = "t/pack/" + pack
            size = int(field(pline, "new_chunks")) * (64 << 10)
            # a plain upload of the same bytes (the first follower's file), as 4
            # objects; then three plain downloads of them at once: just written,
            # as the followers read the pack
            src = os.path.join(tmp, "f0", "segments", "t", "%d.seg" % v)
            u1 = curl_put(env, url_base, "bench/u-%d" % run, src, size, 4, tmp)
            d3 = curl_get_objects(env, url_base, ["bench/u-%d.%d" % (run, i)
                                                  for i in range(4)], tmp, copies=3)
            d1 = curl_get(env, url_base, key, quarters(size), tmp)
            fig["full"].append(full)
            fig["push"].append(field(pline, "announce_seconds"))
            fig["follow1"].append(statistics.median(follows))
            fig["d1"].append(d1)
            fig["d3"].append(d3)
            fig["u1"].append(u1)
            print("run %d full: flip -> 3 followers %.2f s (push %.2f s, follow %.2f s "
                  "median); D1 %.2f s, D3 %.2f s, U1 %.2f s" % (
                      run, full, fig["push"][-1], fig["follow1"][-1], d1, d3, u1),
                  flush=True)
            # ------------------------------------------------------------ 1%
            n = a.rows // 100
            lo = rng.integers(0, a.rows - n)
            marks = [len(d.lines) for d in [p] + fs]
            with store.edit("t") as df:
                df.iloc[lo:lo + n] = df.iloc[lo:lo + n] * 1.01
            t0 = time.monotonic()
            v = store.current_version("t")
            pline, tp, arrivals, lines = wait_flips(p, fs, marks, v)
            fetched = [field(line, "bytes") for line in lines]
            fig["chg_manifest"].append(statistics.median(
                field(line, "manifest_bytes") for line in lines))
            fig["chg_ann"].append(max(arrivals) - tp)
            fig["chg_push"].append(field(pline, "announce_seconds"))
            pack = re.search(r" pack=([0-9a-f]{32}) ", pline).group(1)
            # the deltas end the pack, after its whole chunks: what a follower in
            # step fetches of it
            csize = int(field(pline, "new_chunks")) * (64 << 10)
            get = curl_get(env, url_base, "t/pack/" + pack, [(csize, csize + (1 << 40))],
                           tmp)
            fig["chg_bytes"].append(n * a.cols * 8)
            fig["chg_fetched"].append(statistics.median(fetched))
            fig["chg_time"].append(max(arrivals) - t0)
            fig["chg_get"].append(get)
            print("run %d 1%%: %.1f MB changed, %.1f MB fetched per follower (%.3fx); "
                  "flip -> 3 followers %.3f s; one GET of the new pack %.3f s" % (
                      run, n * a.cols * 8 / 1e6, fig["chg_fetched"][-1] / 1e6,
                      fig["chg_fetched"][-1] / (n * a.cols * 8), fig["chg_time"][-1], get),
                  flush=True)
            # ------------------------------------------------------- restore
            rstore = os.path.join(tmp, "r")
            shutil.rmtree(rstore, ignore_errors=True)
            warm_free_pages(tmp, 2 * nbytes)
            t0 = time.monotonic()
            r = subprocess.run([a.snapctl, "--store", rstore, "pull", url], env=env,
                               capture_output=True, text=True)
            restore = time.monotonic() - t0
            if r.returncode:
                raise RuntimeError(r.stderr)
            rsize = os.path.getsize(os.path.join(rstore, "segments", "t", "%d.seg" % v))
            shutil.rmtree(rstore)
            # D1 again on the newest full pack: the same bytes a restore fetches
            rd1 = curl_get(env, url_base, key, quarters(size), tmp)
            fig["restore"].append(restore)
            fig["restore_d1"].append(rd1)
            print("run %d restore: %.2f s (%.2f GiB file) against D1 %.2f s" % (
                run, restore, rsize / 2**30, rd1), flush=True)
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        server.stop()
    med = {k: statistics.median(v) for k, v in fig.items() if v}
    rows = [
        ("flip -> 3 followers flipped, full 2 GiB version", "%.2f s" % med["full"],
         "D1 one plain parallel ranged GET %.2f s: **%.2fx**" % (
             med["d1"], med["full"] / med["d1"]), "<= 1.3x D1"),
        ("the same", "%.2f s" % med["full"],
         "U1 + D3: a plain upload, then three plain downloads at once, %.2f s: %.2fx" % (
             med["u1"] + med["d3"], med["full"] / (med["u1"] + med["d3"])), ""),
        ("the same, from the announcement", "%.2f s" % med["full_ann"],
         "D1 %.2f s: %.2fx; D3 %.2f s: %.2fx" % (
             med["d1"], med["full_ann"] / med["d1"], med["d3"],
             med["full_ann"] / med["d3"]), ""),
        ("  of which the push (upload, manifest, announcement)", "%.2f s" % med["push"],
         "U1 plain parallel upload %.2f s: %.2fx" % (med["u1"], med["push"] / med["u1"]),
         ""),
        ("  of which one follower's poll, fetch and flip (three at once)",
         "%.2f s" % med["follow1"], "D3 three plain downloads at once %.2f s: %.2fx" % (
             med["d3"], med["follow1"] / med["d3"]), ""),
        ("1% change: bytes fetched per follower", "%.2f MB" % (med["chg_fetched"] / 1e6),
         "changed %.2f MB: **%.3fx**" % (med["chg_bytes"] / 1e6,
                                         med["chg_fetched"] / med["chg_bytes"]),
         "<= 1.1x"),
        ("1% change: flip -> 3 followers flipped", "%.3f s" % med["chg_time"],
         "poll %.3f s + 2 x GET %.3f s = %.3f s: **%.2fx**" % (
             a.poll_ms / 1000, med["chg_get"], a.poll_ms / 1000 + 2 * med["chg_get"],
             med["chg_time"] / (a.poll_ms / 1000 + 2 * med["chg_get"])), "<= 1x"),
        ("1% change: the same, from the announcement", "%.3f s" % med["chg_ann"],
         "poll + 2 x GET = %.3f s: **%.2fx**" % (
             a.poll_ms / 1000 + 2 * med["chg_get"],
             med["chg_ann"] / (a.poll_ms / 1000 + 2 * med["chg_get"])), "<= 1x"),
        ("1% change: the push, to the announcement", "%.3f s" % med["chg_push"], "", ""),
        ("restore of the store (snapctl pull)", "%.2f s" % med["restore"],
         "D1 %.2f s: **%.2fx**" % (med["restore_d1"], med["restore"] / med["restore_d1"]),
         "<= 1.3x"),
    ]
    out = ["| figure | measured | baseline, same run | target |", "|---|---|---|---|"]
    out += ["| %s | %s | %s | %s |" % r for r in rows]
    text = "\n".join(out)
    print(text)
    if a.doc:
        with open(a.doc, "w") as f:
            f.write("# Following a primary through S3: figures\n\n"
                    "Written by `python bench/bench_multihost.py --runs %d --doc %s` "
                    "(medians of %d runs; %d x %d float64, %.2f GiB; SeaweedFS on "
                    "loopback, 2 cores shared by the server, the primary and three "
                    "followers). See the script's docstring for what each figure "
                    "times.\n\n%s\n\n%s\n" % (a.runs, a.doc, a.runs, a.rows, a.cols,
                                              nbytes / 2**30, text, reading(med, a)))


if __name__ == "__main__":
    main()
