#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End-to-end tests of writerd: real processes on a temporary store under /dev/shm.

Each test makes its own store and removes it. The tests synchronise on writerd's log
lines (read from its stderr by a thread), on socket replies, on pipes of reader
processes (pin_helper) and on files appearing, always with a deadline; never on
sleeps.

Run one test: WRITERD=... SNAPCTL=... PIN_HELPER=... ADOPT_CLIENT=... \
    python3 writerd_test.py WriterdTest.test_name
"""
import json
import os
import pty
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from snaptest import StoreCase  # noqa: E402
import snaptest  # noqa: E402

try:  # the reference parser, for a second reading of the metrics (python/requirements-test.txt)
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    text_string_to_metric_families = None

WRITERD = os.environ.get("WRITERD", "writerd")
SNAPCTL = os.environ.get("SNAPCTL", "snapctl")
ADOPT_CLIENT = os.environ.get("ADOPT_CLIENT", "adopt_client")
DEADLINE = 60.0  # seconds; generous for ASan builds on a shared machine


def _library_version():
    """The one version number, as libsnap.h writes it."""
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "libsnap",
                          "include", "libsnap", "libsnap.h")
    with open(header) as f:
        text = f.read()
    return ".".join(re.search(r"#define SNAP_VERSION_%s (\d+)" % p, text).group(1)
                    for p in ("MAJOR", "MINOR", "PATCH"))


VERSION = _library_version()


def npy_bytes(descr, shape, payload):
    """A .npy v1.0 file, written by hand (numpy is not needed)."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def wait_for(cond, what, timeout=DEADLINE):
    """Poll cond() until it is true, with a deadline (for files appearing or
    processes going away, which have no event to wait on here)."""
    end = time.monotonic() + timeout
    delay = 0.001
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# ------------------------------------------------------- Prometheus text format

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_FLOAT = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf)|NaN"
_SAMPLE = re.compile(r"(%s)(?:\{(.*)\})? (%s)(?: -?\d+)?" % (_NAME, _FLOAT))
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def _unescape(text):
    """\\\\ -> \\, \\n -> newline, \\" -> " (the format's escapes)."""
    return re.sub(r'\\([\\n"])', lambda e: "\n" if e.group(1) == "n" else e.group(1), text)


def parse_metrics(text):
    """Read Prometheus text exposition 0.0.4 strictly, as writerd must write it:
    every family has one HELP and one TYPE line before its samples, its samples
    are together, no sample repeats, names, label syntax, escapes and values are
    those of the format, the text ends with a newline and has no blank line.
    Returns {family: {"help", "type", "samples": {(name, labels): value}}} with
    labels a sorted tuple of (name, unescaped value); raises AssertionError."""
    if not text.endswith("\n"):
        raise AssertionError("the text does not end with a newline")
    families, order = {}, []

    def family(name):
        if name not in families:
            if name in order:
                raise AssertionError("family %s seen again after another one" % name)
            families[name] = {"help": None, "type": None, "samples": {}}
            order.append(name)
        elif order[-1] != name:
            raise AssertionError("family %s seen again after another one" % name)
        return families[name]

    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line)
        m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % _NAME, line)
        if m:
            f = family(m.group(2))
            key = m.group(1).lower()
            if f[key] is not None or f["samples"]:
                raise AssertionError("%s: %s repeated or after samples" % (where, m.group(1)))
            value = m.group(3)
            if key == "help":
                if re.search(r"\\[^\\n]|\\$", value.replace("\\\\", "")):
                    raise AssertionError("%s: bad escape in HELP" % where)
                value = _unescape(value)
            if key == "type" and value not in _TYPES:
                raise AssertionError("%s: unknown type" % where)
            f[key] = value
            continue
        if line.startswith("#") or not line:
            raise AssertionError("%s: not HELP, TYPE or a sample" % where)
        m = _SAMPLE.fullmatch(line)
        if not m:
            raise AssertionError("%s: not a sample" % where)
        name, labels_text, value = m.groups()
        f = family(name)  # counters and gauges: the sample is named as its family
        if f["help"] is None or f["type"] is None:
            raise AssertionError("%s: sample before its HELP and TYPE" % where)
        labels = {}
        rest = labels_text or ""
        while rest:
            lm = _LABEL.match(rest)
            if not lm or lm.group(1) in labels:
                raise AssertionError("%s: bad or repeated label at %r" % (where, rest))
            labels[lm.group(1)] = _unescape(lm.group(2))
            rest = rest[lm.end():]
        key = (name, tuple(sorted(labels.items())))
        if key in f["samples"]:
            raise AssertionError("%s: repeated sample" % where)
        f["samples"][key] = float(value)
    return families


def check_with_prometheus_client(test, text, families):
    """The reference parser reads the same families, types and samples (skipped
    when prometheus_client is missing: parse_metrics has checked the text)."""
    if text_string_to_metric_families is None:
        return
    theirs = {}
    for fam in text_string_to_metric_families(text):
        theirs[fam.name] = (fam.type, fam.documentation,
                            {(s.name, tuple(sorted(s.labels.items()))): s.value
                             for s in fam.samples})
    ours = {}
    for name, f in families.items():
        # the client names a counter family without its _total suffix
        if f["type"] == "counter" and name.endswith("_total"):
            name = name[:-len("_total")]
        ours[name] = (f["type"], f["help"], f["samples"])
    test.assertEqual(theirs, ours)


def http_get(url, method="GET", timeout=DEADLINE):
    """(status, headers, body) of one request; no exception for 4xx."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read().decode()


def http_raw(port, data, shut=True, host="127.0.0.1"):
    """Send raw bytes (then, if shut, end our side) and read until the server
    closes; returns what it sent."""
    s = socket.create_connection((host, port), timeout=DEADLINE)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


class Client:
    """A protocol client: one request line out, one reply line back."""

    def __init__(self, path, timeout=DEADLINE):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)  # blocking: waits for room in the backlog
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data, fds=None):
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def readline(self):
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:  # closed with our unread input pending
                chunk = b""
            if not chunk:
                line, self.buf = self.buf, b""
                return line.decode(errors="replace") if line else None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def request(self, line, fds=None):
        self.send(line.encode() + b"\n", fds)
        return self.readline()

    def close(self):
        self.sock.close()


class WriterdTest(StoreCase, unittest.TestCase):
    def setUp(self):
        self.store = "/dev/shm/writerd-test-%d-%s" % (os.getpid(), self._testMethodName)
        self.tmp = self.store + ".files"
        for d in (self.store, self.tmp):
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(self.tmp)
        os.chmod(self.tmp, 0o755)
        self.sock = os.path.join(self.store, "writerd.sock")
        self.inbox = os.path.join(self.store, "inbox")
        self.daemons = []
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.stdin.close()
                p.wait()
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            failed = not getattr(getattr(self, "_outcome", None), "success", True)
            died = d.proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)
            if failed or died:
                # the daemon's log is the evidence (a crash, a sanitizer report)
                sys.stderr.write("writerd exited with %s; the end of its log:\n%s\n" % (
                    d.proc.returncode,
                    "\n".join(x for x in d.lines[-60:] if x is not None)))
        shutil.rmtree(self.store, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def start(self, *args):
        d = snaptest.Daemon(self.store, *args, writerd=WRITERD, deadline=DEADLINE)
        self.daemons.append(d)
        d.wait_log(r"^ready pid=%d$" % d.proc.pid)
        return d

    def client(self):
        return Client(self.sock)

    def drop(self, name, data):
        """Write a file elsewhere and rename it into the inbox, as producers should."""
        tmp = self.write(".drop-" + name, data)
        os.rename(tmp, os.path.join(self.inbox, name))

    def ctl(self, *args, code=0):
        p = subprocess.run([SNAPCTL, "--store", self.store] + list(args),
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, code, "snapctl %s: %s %s" % (args, p.stdout, p.stderr))
        return p

    def status(self, dataset=None):
        c = self.client()
        reply = c.request("STATUS" + (" " + dataset if dataset else ""))
        c.close()
        self.assertTrue(reply.startswith("OK {"), reply)
        return json.loads(reply[3:])

    def versions(self, dataset):
        doc = self.status(dataset)
        return {v["version"]: v for v in doc["datasets"][0]["versions"]}

    def read_version(self, dataset):
        """(version, nrows, sum of column 0) as a fresh reader process sees it."""
        p, v, n, s = self.pin(dataset)
        p.stdin.close()
        self.assertEqual(p.wait(), 0)
        return v, n, s

    def segment_files(self):
        out = []
        for root, _, files in os.walk(os.path.join(self.store, "segments")):
            out += [os.path.join(root, f) for f in files]
        return sorted(out)

    def big_csv(self, mib=48):
        """A CSV large enough that its publish takes a while (cancel/kill tests)."""
        chunk = "".join("%d,%d.25,k%d\n" % (i, i, i % 5) for i in range(20000))
        reps = mib * 1024 * 1024 // len(chunk) + 1
        return self.write("big.csv", "i,f,k\n" + chunk * reps)

    # ---------------------------------------------------------------- start

    def test_start_and_second_instance(self):
        d = self.start()
        with open(os.path.join(self.store, "writerd.lock")) as f:
            pid, sock = f.read().split("\n")[:2]
        self.assertEqual((int(pid), sock), (d.proc.pid, self.sock))
        self.assertTrue(os.path.isdir(os.path.join(self.inbox, "done")))
        self.assertTrue(os.path.isdir(os.path.join(self.inbox, "failed")))
        # a second writerd on the same store is refused, naming the holder
        for extra in ([], ["--foreground"]):
            p = subprocess.run([WRITERD, "--store", self.store] + extra, capture_output=True,
                               text=True, timeout=DEADLINE)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("writerd pid %d" % d.proc.pid, p.stderr)
        c = self.client()
        self.assertEqual(c.request("PING"), "OK writerd %s pid=%d" % (VERSION, d.proc.pid))
        c.close()
        # usage errors exit 2
        p = subprocess.run([WRITERD, "--keep", "0"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        # clean shutdown: socket removed, exit 0, the next one starts
        self.assertEqual(d.stop(), 0)
        d.wait_log(r"^exit status=0$")
        self.assertFalse(os.path.exists(self.sock))
        self.start()

    def test_daemon_mode(self):
        # without --foreground writerd detaches once it is ready: the command exits 0
        env = dict(os.environ, LIBSNAP_STORE=self.store)
        log = open(os.path.join(self.tmp, "daemon.log"), "w")
        p = subprocess.run([WRITERD], env=env, stderr=log, timeout=DEADLINE)
        log.close()
        self.assertEqual(p.returncode, 0)
        with open(os.path.join(self.store, "writerd.lock")) as f:
            pid = int(f.read().split("\n")[0])
        try:
            c = self.client()
            self.assertEqual(c.request("PING"), "OK writerd %s pid=%d" % (VERSION, pid))
            c.close()
        finally:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                 open("/proc/%d/stat" % pid).read().split()[2] == "Z", "daemon exit")
        wait_for(lambda: "exit status=0" in open(os.path.join(self.tmp, "daemon.log")).read(),
                 "exit line")

    # -------------------------------------------------------------- publish

    def test_publish_socket_inbox_snapctl(self):
        # a file already in the inbox at start is published too
        os.makedirs(self.inbox)
        with open(os.path.join(self.inbox, "early.csv"), "w") as f:
            f.write("v\n5\n6\n")
        d = self.start()
        d.wait_log(r"^publish dataset=early version=1 rows=2 cols=1 .*source=inbox")
        self.assertEqual(self.read_version("early"), (1, 2, 11.0))

        # 1. the socket, by path
        c = self.client()
        path = self.write("a.csv", "v,name\n1,a\n2,b\n3,c\n")
        reply = c.request("PUBLISH prices " + path)
        self.assertRegex(reply, r"^OK version=1 rows=3 cols=2 bytes=\d+ input_bytes=\d+ "
                                r"seconds=[\d.]+$")
        d.wait_log(r"^publish dataset=prices version=1 rows=3 cols=2 bytes=[1-9]\d* "
                   r"input_bytes=\d+ seconds=[\d.]+ source=socket")
        self.assertEqual(self.read_version("prices"), (1, 3, 6.0))
        # a descriptor instead of a path (name= only names it in messages)
        with open(self.write("b.npy", npy_bytes("<f8", "(4,)", struct.pack("<4d", 1, 2, 3, 4.5))),
                  "rb") as f:
            reply = c.request("PUBLISH prices - name=b%20file.npy", fds=[f.fileno()])
        self.assertRegex(reply, r"^OK version=2 rows=4 cols=1 ")
        self.assertEqual(self.read_version("prices"), (2, 4, 10.5))
        c.close()

        # 2. the inbox: renamed in, published, moved to done/
        mark = d.mark()
        self.drop("prices.csv", "v\n10\n20\n")
        d.wait_log(r"^publish dataset=prices version=3 rows=2 .*source=inbox file=prices\.csv",
                   start=mark)
        self.assertTrue(os.path.exists(os.path.join(self.inbox, "done", "prices.csv")))
        self.assertFalse(os.path.exists(os.path.join(self.inbox, "prices.csv")))
        self.assertEqual(self.read_version("prices"), (3, 2, 30.0))
        # written in place and closed (IN_CLOSE_WRITE) works too
        mark = d.mark()
        with open(os.path.join(self.inbox, "prices.npy"), "wb") as f:
            f.write(npy_bytes("<i8", "(3,)", struct.pack("<3q", 7, 8, 9)))
        d.wait_log(r"^publish dataset=prices version=4 .*source=inbox", start=mark)
        self.assertEqual(self.read_version("prices"), (4, 3, 24.0))

        # 3. snapctl publish goes through writerd when it runs
        mark = d.mark()
        p = self.ctl("publish", "prices", self.write("c.csv", "v\n100\n200\n"))
        self.assertRegex(p.stdout, r"prices: published version 5 \(2 rows x 1 columns.* "
                                   r"by writerd")
        d.wait_log(r"^publish dataset=prices version=5 .*source=socket file=%s"
                   % re.escape(os.path.join(self.tmp, "c.csv")), start=mark)
        self.assertEqual(self.read_version("prices"), (5, 2, 300.0))
        # its errors come back on one line, naming file and line
        p = self.ctl("publish", "prices", self.write("r.csv", "a,b\n1,2\n3\n"), code=1)
        self.assertRegex(p.stderr, r"r\.csv: line 3: 1 field, expected 2")
        # and without writerd it publishes directly
        self.assertEqual(d.stop(), 0)
        p = self.ctl("publish", "prices", self.write("d.csv", "v\n1\n"))
        self.assertNotIn("by writerd", p.stdout)
        self.assertGreater(self.read_version("prices")[0], 5)

    def test_publish_request_too_long(self):
        # snapctl percent-encodes the path (a space is 3 bytes): a 2.7 KiB path of
        # spaces and a schema overflow even its 8 KiB request buffer. Refused with
        # the way out named, nothing published, writerd still serving.
        d = self.start()
        deep = self.tmp
        for _ in range(13):
            deep = os.path.join(deep, " " * 200)
        os.makedirs(deep)
        path = os.path.join(deep, "t.csv")
        with open(path, "w") as f:
            f.write("v\n1\n")
        schema = self.write("s.schema", "v float64\n")
        for extra in ([], ["--schema", schema, "--category-max", "7"]):
            p = self.ctl("publish", "long", path, *extra, code=1)
            self.assertRegex(p.stderr, r"long: .*too long.*shorten the schema or use --direct")
        self.ctl("info", "long", code=1)  # nothing was published
        self.assertEqual(d.proc.poll(), None)
        p = self.ctl("publish", "long", path, "--direct")
        self.assertEqual(self.read_version("long"), (1, 1, 1.0))

    def test_inbox_schema_and_segment(self):
        d = self.start()
        # <dataset>.schema in the inbox types every <dataset>.csv after it
        self.drop("p.schema", "v float64\nw string\n")
        mark = d.mark()
        self.drop("p.csv", "v,w\n1,2\n3,4\n")  # inferred, these would be int64s
        d.wait_log(r"^publish dataset=p version=1 ", start=mark)
        info = json.loads(self.ctl("info", "p", "--json").stdout)
        self.assertEqual([c["type"] for c in info["columns"]], ["float64", "string"])
        self.assertTrue(os.path.exists(os.path.join(self.inbox, "p.schema")))
        mark = d.mark()
        self.drop("p.csv", "v,w\nnot-a-number,x\n")
        d.wait_log(r"^error op=publish dataset=p source=inbox file=p\.csv", start=mark)
        with open(os.path.join(self.inbox, "failed", "p.csv.error")) as f:
            self.assertIn("p.csv: line 2", f.read())
        # snapctl publish --schema through writerd: the schema travels in the request
        mark = d.mark()
        self.ctl("publish", "--schema", self.write("r.schema", "v float64\nw string\n"), "r",
                 self.write("r.csv", "v,w\n5,6\n"))
        d.wait_log(r"^publish dataset=r version=1 ", start=mark)
        info = json.loads(self.ctl("info", "r", "--json").stdout)
        self.assertEqual([c["type"] for c in info["columns"]], ["float64", "string"])
        # a libsnap segment dropped in is validated and copied in as a new version
        mark = d.mark()
        self.drop("q.seg", open(self.segment_files()[0], "rb").read())
        d.wait_log(r"^publish dataset=q version=1 ", start=mark)
        self.assertEqual(self.read_version("q"), (1, 2, 4.0))
        self.assertEqual(d.stop(), 0)

    def test_inbox_bad_inputs(self):
        d = self.start()
        cases = [
            ("ragged.csv", b"a,b\n1,2\n3,4,5\n", r"ragged\.csv: line 3: 3 fields, expected 2"),
            ("utf8.csv", b"a,b\n1,ok\n2,\xe2\x28\xa1\n",
             r"utf8\.csv: line 3, column 2 \(b\): invalid UTF-8"),
            ("empty.csv", b"", r"empty\.csv: empty file"),
            ("trunc.npy", npy_bytes("<f8", "(4,)", b"\0" * 32)[:30],
             r"trunc\.npy: \.npy header truncated"),
            ("short.npy", npy_bytes("<f8", "(4,)", b"\0" * 24), r"short\.npy: \.npy data truncated"),
            ("notes.parquet", b"PAR1", r"notes\.parquet: unknown input format"),
            ("noext", b"x", r"noext: unknown input format"),
        ]
        for name, data, want in cases:
            mark = d.mark()
            self.drop(name, data)
            d.wait_log(r"^error op=publish dataset=\S+ source=inbox file=%s code=SNAP_EINVAL"
                       % re.escape(name), start=mark)
            failed = os.path.join(self.inbox, "failed", name)
            self.assertTrue(os.path.exists(failed), name)
            with open(failed + ".error") as f:
                text = f.read()
            self.assertRegex(text, want)
            self.assertEqual(text.count("\n"), 1, text)  # one line
            self.assertFalse(os.path.exists(os.path.join(self.inbox, name)))
        self.assertEqual(self.segment_files(), [])
        # names starting with '.' are left alone (producers' temporary files)
        with open(os.path.join(self.inbox, ".partial.csv"), "w") as f:
            f.write("v\n1\n")
        # the daemon goes on: a good file after them publishes, the socket answers
        mark = d.mark()
        self.drop("ragged.csv", "a,b\n1,2\n")
        d.wait_log(r"^publish dataset=ragged version=\d+ rows=1 cols=2 .*source=inbox",
                   start=mark)
        self.assertTrue(os.path.exists(os.path.join(self.inbox, "done", "ragged.csv")))
        self.assertTrue(os.path.exists(os.path.join(self.inbox, ".partial.csv")))
        c = self.client()
        self.assertTrue(c.request("PING").startswith("OK writerd"))
        c.close()

    def test_inbox_open_for_writing_and_done_keep(self):
        d = self.start("--done-keep", "2")
        # renamed in while its writer still has it open: refused, the daemon goes on
        tmp = self.write(".drop-busy.csv", "v\n1\n")
        with open(tmp, "a") as writer:
            mark = d.mark()
            os.rename(tmp, os.path.join(self.inbox, "busy.csv"))
            d.wait_log(r"^error op=publish dataset=busy source=inbox file=busy\.csv "
                       r"code=SNAP_EBUSY", start=mark)
            writer.write("2\n")
        with open(os.path.join(self.inbox, "failed", "busy.csv.error")) as f:
            self.assertIn("busy.csv: open for writing by another process", f.read())
        self.assertEqual(self.segment_files(), [])
        # done/ keeps the 2 files published last
        for name in ("a.csv", "b.csv", "c.csv"):
            mark = d.mark()
            self.drop(name, "v\n1\n")
            d.wait_log(r"^publish dataset=%s version=1 .*source=inbox" % name[0], start=mark)
        d.wait_log(r"^inbox-prune file=done/a\.csv$")
        self.assertEqual(sorted(os.listdir(os.path.join(self.inbox, "done"))),
                         ["b.csv", "c.csv"])

    # --------------------------------------------------------------- socket

    def test_socket_garbage(self):
        d = self.start()
        c = self.client()
        bad = [
            (b"FROB x\n", r"^ERR EPROTO unknown request"),
            (b"\x00\xff\xfe junk\n", r"^ERR EPROTO request holds NUL bytes"),
            (b"\x01\x02\x03\n", r"^ERR EPROTO request holds control bytes"),
            (b"\n", r"^ERR EPROTO empty request"),
            (b"STATUS  x\n", r"^ERR EPROTO malformed request"),
            (b"PUBLISH d\n", r"^ERR EPROTO usage: PUBLISH"),
            (b"PUBLISH d relative.csv\n", r"^ERR SNAP_EINVAL PATH must be absolute"),
            (b"PUBLISH d /nonexistent/x.csv\n", r"^ERR ENOENT /nonexistent/x\.csv"),
            (b"PUBLISH d - format=csv\n", r"^ERR EPROTO no descriptor was sent"),
            (b"PUBLISH d /x.csv bogus=1\n", r"^ERR EPROTO unknown PUBLISH option"),
            (b"ROLLBACK d x\n", r"^ERR EPROTO usage: ROLLBACK"),
            (b"STATUS %zz\n", r"^ERR EPROTO bad %XX escape"),
        ]
        for data, want in bad[:7]:
            c.send(data)
            self.assertRegex(c.readline(), want, data)
        c.close()
        c = self.client()
        for data, want in bad[7:]:
            c.send(data)
            self.assertRegex(c.readline(), want, data)
        # after 8 bad requests on one connection writerd closes it (4 so far)
        for _ in range(4):
            c.send(b"NOPE\n")
        lines = []
        while True:
            line = c.readline()
            if line is None:
                break
            lines.append(line)
        self.assertEqual(len(lines), 5, lines)
        self.assertRegex(lines[-1], r"^ERR EPROTO too many bad requests; closing$")
        c.close()
        # an oversize line: error, then the connection is closed
        c = self.client()
        c.send(b"A" * 5000)
        self.assertRegex(c.readline(), r"^ERR E2BIG request line longer than 4096")
        self.assertIsNone(c.readline())
        c.close()
        # early close in the middle of a request, and right after a publish request
        c = self.client()
        c.send(b"STAT")
        c.close()
        c = self.client()
        c.send(("PUBLISH d %s\n" % self.write("x.csv", "v\n1\n")).encode())
        c.close()
        d.wait_log(r"^publish dataset=d version=1 ")
        # a request split across writes, and several in one write, in order
        c = self.client()
        c.send(b"PI")
        c.send(b"NG\nPING\nSTATUS d\n")
        self.assertTrue(c.readline().startswith("OK writerd"))
        self.assertTrue(c.readline().startswith("OK writerd"))
        self.assertEqual(json.loads(c.readline()[3:])["datasets"][0]["current"], 1)
        c.close()
        self.assertEqual(d.proc.poll(), None)
        self.assertEqual(d.stop(), 0)

    def test_many_clients(self):
        d = self.start()
        clients = [self.client() for _ in range(200)]
        for c in clients:
            c.send(b"PING\n")
        for c in clients:
            self.assertTrue(c.readline().startswith("OK writerd"))
        # a slow publish does not stop status from answering
        big = self.big_csv(mib=8)
        pub = self.client()
        pub.send(("PUBLISH big %s\n" % big).encode())
        for c in clients[:20]:
            self.assertTrue(c.request("STATUS").startswith("OK {"))
        self.assertRegex(pub.readline(), r"^OK version=1 ")
        for c in clients:
            c.close()
        pub.close()
        self.assertEqual(d.stop(), 0)

    def ping_as(self, uid, gid):
        """PING from a forked child that has dropped to uid/gid; returns the reply."""
        return self.request_as(uid, gid, "PING")

    def request_as(self, uid, gid, line):
        """A request from a forked child that has dropped to uid/gid; returns the
        reply."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no exceptions may escape into the test runner
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(DEADLINE)
                s.connect(self.sock)
                try:  # a refusing writerd may have closed already
                    s.sendall(line.encode() + b"\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data = b""
                while b"\n" not in data:
                    try:
                        chunk = s.recv(4096)
                    except ConnectionResetError:
                        chunk = b""
                    if not chunk:
                        break
                    data += chunk
                os.write(w, data or b"<closed>")
            except BaseException as e:  # noqa: BLE001
                os.write(w, ("child: %r" % e).encode())
            finally:
                os._exit(0)
        os.close(w)
        out = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            out += chunk
        os.close(r)
        os.waitpid(pid, 0)
        return out.decode().strip()

    def test_uid_refused(self):
        d = self.start()
        # outside the store's group: the store directory (2750) keeps it out
        self.assertIn("PermissionError", self.ping_as(65533, 65533))
        # in the store's group (a reader): it reaches the socket, writerd refuses it
        os.chown(self.store, -1, 65534)
        self.assertEqual(self.ping_as(65534, 65534),
                         "ERR EACCES uid 65534 gid 65534 is not allowed by writerd")
        d.wait_log(r"^refused pid=\d+ uid=65534 gid=65534 reason=not-allowed")
        c = self.client()  # root still is
        self.assertTrue(c.request("PING").startswith("OK"))
        c.close()
        self.assertEqual(d.stop(), 0)
        # allowed by uid, then by gid
        for opt in ("--allow-uid", "--allow-gid"):
            d = self.start(opt, "65534")
            os.chown(self.store, -1, 65534)
            self.assertTrue(self.ping_as(65534, 65534).startswith("OK writerd"))
            self.assertEqual(d.stop(), 0)

    def test_publish_path_as_peer(self):
        """PUBLISH by path opens the file as the peer would: a file the peer may
        not reach (a private directory, though the file itself is world-readable)
        is refused, while the root daemon itself could read it."""
        d = self.start("--allow-uid", "65534")
        os.chown(self.store, -1, 65534)
        private = os.path.join(self.tmp, "private")
        os.makedirs(private)
        os.chmod(private, 0o700)
        hidden = os.path.join(private, "h.csv")
        with open(hidden, "w") as f:
            f.write("v\n1\n")
        os.chmod(hidden, 0o644)
        reply = self.request_as(65534, 65534, "PUBLISH h %s" % hidden)
        self.assertEqual(reply, "ERR EACCES %s: Permission denied" % hidden)
        shown = self.write("s.csv", "v\n1\n2\n")
        os.chmod(shown, 0o644)
        self.assertRegex(self.request_as(65534, 65534, "PUBLISH s %s" % shown),
                         r"^OK version=1 rows=2 cols=1 ")
        c = self.client()  # root may read it
        self.assertRegex(c.request("PUBLISH h %s" % hidden), r"^OK version=1 rows=1 ")
        c.close()
        self.assertEqual(d.stop(), 0)

    def test_publish_progress(self):
        """PUBLISH ... progress: PROGRESS DONE TOTAL lines, then the reply; snapctl
        asks for them when its stderr is a terminal, and skips them."""
        self.start()
        path = self.write("p.csv", "i,f\n" + "".join("%d,%d.5\n" % (i, i) for i in range(300000)))
        c = self.client()
        c.send(("PUBLISH p %s progress\n" % path).encode())
        seen = []
        while True:
            line = c.readline()
            self.assertIsNotNone(line)
            if not line.startswith("PROGRESS "):
                break
            done, total = map(int, line.split()[1:])
            self.assertTrue(0 <= done <= total, line)
            seen.append((done, total))
        c.close()
        self.assertRegex(line, r"^OK version=1 rows=300000 cols=2 ")
        self.assertGreaterEqual(len(seen), 1)
        self.assertEqual(seen[-1][0], seen[-1][1])  # the last one says 100%
        self.assertEqual(seen, sorted(seen))
        # snapctl with a terminal on stderr
        master, slave = pty.openpty()
        p = subprocess.Popen([SNAPCTL, "--store", self.store, "publish", "p", path],
                             stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        out, _ = p.communicate(timeout=DEADLINE)
        os.close(master)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(out, r"^p: published version 2 \(300000 rows x 2 columns, .* by writerd$")

    def test_requests(self):
        d = self.start("--keep", "3")
        c = self.client()
        for i in (1, 2, 3):
            self.assertTrue(c.request("PUBLISH d %s" % self.write("%d.csv" % i, "v\n%d\n" % i))
                            .startswith("OK version=%d" % i))
        self.assertEqual(c.request("ROLLBACK d 1"), "OK current=1 previous=3")
        d.wait_log(r"^rollback dataset=d version=1 previous=3$")
        self.assertEqual(self.read_version("d"), (1, 1, 1.0))
        self.assertRegex(c.request("ROLLBACK d 42"), r"^ERR SNAP_ENOTFOUND ")
        self.assertRegex(c.request("ROLLBACK nosuch 1"), r"^ERR SNAP_ENOTFOUND ")
        doc = self.status()
        self.assertEqual(doc["writerd"]["pid"], d.proc.pid)
        self.assertEqual(doc["writerd"]["store"], self.store)
        ds = doc["datasets"][0]
        self.assertEqual((ds["name"], ds["current"], ds["keep"]), ("d", 1, 3))
        self.assertEqual([(v["version"], v["state"], v["rows"], v["pins"])
                          for v in ds["versions"]],
                         [(1, "current", 1, 0), (2, "retained", 1, 0), (3, "retained", 1, 0)])
        self.assertRegex(c.request("STATUS nosuch"), r"^ERR SNAP_ENOTFOUND ")
        # KEEP 1: the retained versions drain and, unpinned, are reclaimed at once
        self.assertEqual(c.request("KEEP d 1"), "OK keep=1")
        d.wait_log(r"^reclaim dataset=d version=2 ")
        d.wait_log(r"^reclaim dataset=d version=3 ")
        self.assertEqual(list(self.versions("d")), [1])
        self.assertEqual(len(self.segment_files()), 1)
        self.assertEqual(c.request("KEEP 2"), "OK keep=2")
        self.assertRegex(c.request("KEEP 0"), r"^ERR EPROTO")
        self.assertRegex(c.request("GC"), r"^OK freed_versions=0 freed_bytes=0 "
                                          r"draining_versions=0 draining_bytes=0$")
        c.close()

    # --------------------------------------------------------------- reaper

    def test_reaper(self):
        d = self.start("--keep", "1")
        c = self.client()
        self.assertTrue(c.request("PUBLISH d %s" % self.write("a.csv", "v\n1\n2\n"))
                        .startswith("OK version=1"))
        holder, version, _, _ = self.pin("d")
        self.assertEqual(version, 1)
        seg1 = [f for f in self.segment_files() if f.endswith("/1.seg")]
        self.assertEqual(len(seg1), 1)
        self.assertTrue(c.request("PUBLISH d %s" % self.write("b.csv", "v\n3\n"))
                        .startswith("OK version=2"))
        v = self.versions("d")
        self.assertEqual((v[1]["state"], v[1]["pins"]), ("draining", 1))
        # the reaper waits on it (blocking flock), and reclaims it the moment the
        # reader exits, without any request
        wait_for(lambda: {"dataset": "d", "version": 1} in self.status()["writerd"]["reaping"],
                 "the reaper to wait on d@1")
        mark = d.mark()
        holder.stdin.close()
        self.assertEqual(holder.wait(), 0)
        d.wait_log(r"^reclaim dataset=d version=1 bytes=[1-9]\d* waited=[\d.]+ by=reaper$",
                   start=mark)
        self.assertFalse(os.path.exists(seg1[0]))
        self.assertEqual(list(self.versions("d")), [2])
        c.close()
        self.assertEqual(d.stop(), 0)

    def test_drop_while_reaping(self):
        """DROP with the reaper waiting on a draining version of the dataset."""
        d = self.start("--keep", "1")
        c = self.client()
        c.request("PUBLISH d %s" % self.write("a.csv", "v\n1\n"))
        holder, version, _, _ = self.pin("d")
        self.assertEqual(version, 1)
        self.assertTrue(c.request("PUBLISH d %s" % self.write("b.csv", "v\n2\n"))
                        .startswith("OK version=2"))
        wait_for(lambda: {"dataset": "d", "version": 1} in self.status()["writerd"]["reaping"],
                 "the reaper to wait on d@1")
        self.assertRegex(c.request("DROP d"),
                         r"^ERR SNAP_EBUSY .*version 1 of \"d\" is pinned by pid %d" % holder.pid)
        self.assertRegex(c.request("DROP d now"), r"^ERR EPROTO usage: DROP")
        self.assertEqual(c.request("DROP d force"), "OK dropped")
        d.wait_log(r"^drop dataset=d force=1$")
        self.assertEqual(self.status()["datasets"], [])
        holder.stdin.close()
        self.assertEqual(holder.wait(), 0)  # it read its version to the end
        wait_for(lambda: self.status()["writerd"]["reaping"] == [], "the waiter to end")
        self.assertTrue(c.request("PUBLISH d %s" % self.write("c.csv", "v\n3\n"))
                        .startswith("OK version=3"))  # numbers are not reused
        self.assertRegex(c.request("DROP nosuch"), r"^ERR SNAP_ENOTFOUND ")
        # a new dataset's name follows the rule, through writerd too
        self.assertRegex(c.request("PUBLISH a%%20b %s" % self.write("e.csv", "v\n1\n")),
                         r'^ERR SNAP_EINVAL dataset name "a b": byte 2 \(0x20\)')
        self.assertEqual(c.request("DROP d"), "OK dropped")
        c.close()
        self.assertEqual(d.stop(), 0)

    # ---------------------------------------------------------------- adopt

    def test_adopt(self):
        d = self.start()
        incoming = os.path.join(self.store, "incoming")
        p = subprocess.run([ADOPT_CLIENT, self.sock, incoming, "seg", "1000"],
                           capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^OK version=1 rows=1000 cols=1 bytes=[1-9]")
        d.wait_log(r"^publish dataset=seg version=1 rows=1000 cols=1 .* adopted=1$")
        self.assertEqual(self.read_version("seg"), (1, 1000, 999 * 1000 / 2))
        # a damaged segment is refused; nothing is published; the daemon goes on
        p = subprocess.run([ADOPT_CLIENT, self.sock, incoming, "seg", "10", "corrupt"],
                           capture_output=True, text=True, timeout=DEADLINE)
        self.assertRegex(p.stdout, r"^ERR SNAP_E(CORRUPT|FORMAT) ")
        d.wait_log(r"^error op=publish dataset=seg source=socket .*code=SNAP_E")
        self.assertEqual(list(self.versions("seg")), [1])
        self.assertEqual(len(self.segment_files()), 1)
        self.assertEqual(self.read_version("seg")[0], 1)
        c = self.client()  # a plain file (not a sealed segment) is refused too
        with open(self.write("x.csv", "v\n1\n"), "rb") as f:
            self.assertRegex(c.request("ADOPT seg", fds=[f.fileno()]), r"^ERR SNAP_E")
        c.close()

    # -------------------------------------------------------------- metrics

    METRIC_FAMILIES = {
        "snap_publishes_total": "counter", "snap_flips_total": "counter",
        "snap_pushes_total": "counter", "snap_follow_flips_total": "counter",
        "snap_bytes_pushed_total": "counter", "snap_bytes_fetched_total": "counter",
        "snap_errors_total": "counter", "snap_current_version": "gauge",
        "snap_pinned_versions": "gauge", "snap_draining_bytes": "gauge",
        "snap_dataset_bytes": "gauge", "snap_follow_lag_versions": "gauge",
        "snap_follow_lag_seconds": "gauge", "snap_follow_announced_version": "gauge",
        "snap_push_version": "gauge"}
    ERROR_KINDS = ("publish", "push", "fetch", "verify", "s3_denied", "s3_network",
                   "s3_server", "s3_other", "protocol", "other")

    def start_metrics(self, *args):
        """writerd with --metrics 127.0.0.1:0; returns (daemon, port) from its log."""
        d = self.start("--metrics", "127.0.0.1:0", *args)
        m, _ = d.wait_log(r"^metrics listen=127\.0\.0\.1:(\d+)$")
        return d, int(m.group(1))

    def scrape(self, port):
        """GET /metrics: {family: {sample key: value}}, read strictly (and by
        prometheus_client when installed), every family present with HELP/TYPE."""
        status, headers, body = http_get("http://127.0.0.1:%d/metrics" % port)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4")
        self.assertEqual(int(headers["Content-Length"]), len(body.encode()))
        fams = parse_metrics(body)
        check_with_prometheus_client(self, body, fams)
        self.assertEqual({n: f["type"] for n, f in fams.items()}, self.METRIC_FAMILIES)
        for n, f in fams.items():
            self.assertTrue(f["help"], n)
        out = {}
        for n, f in fams.items():
            out[n] = {}
            for (_, labels), v in f["samples"].items():
                out[n][labels[0][1] if labels else None] = v
        return out

    def test_metrics(self):
        d, port = self.start_metrics("--keep", "1")
        m = self.scrape(port)
        for name in ("snap_publishes_total", "snap_flips_total", "snap_pushes_total"):
            self.assertEqual(m[name], {None: 0}, name)
        # every error kind from the start, at 0
        self.assertEqual(m["snap_errors_total"], {k: 0 for k in self.ERROR_KINDS})
        self.assertEqual(m["snap_current_version"], {})

        c = self.client()
        self.assertTrue(c.request("PUBLISH d %s" % self.write("a.csv", "v\n1\n2\n"))
                        .startswith("OK version=1"))
        holder, version, _, _ = self.pin("d")  # a reader keeps version 1
        self.assertEqual(version, 1)
        self.assertTrue(c.request("PUBLISH d %s" % self.write("b.csv", "v\n3\n"))
                        .startswith("OK version=2"))
        doc = self.status("d")["datasets"][0]
        v1 = doc["versions"][0]
        self.assertEqual((v1["version"], v1["state"], v1["pins"]), (1, "draining", 1))
        m = self.scrape(port)
        self.assertEqual(m["snap_publishes_total"], {None: 2})
        self.assertEqual(m["snap_flips_total"], {None: 2})
        self.assertEqual(m["snap_current_version"], {"d": 2})
        self.assertEqual(m["snap_pinned_versions"], {"d": 1})
        self.assertGreater(v1["bytes"], 0)
        self.assertEqual(m["snap_draining_bytes"], {"d": v1["bytes"]})
        self.assertEqual(m["snap_dataset_bytes"], {"d": doc["bytes"]})
        self.assertEqual(m["snap_errors_total"]["publish"], 0)

        # a failed publish is an error of kind "publish", and no publish
        self.assertRegex(c.request("PUBLISH d %s" % self.write("r.csv", "a,b\n1,2\n3\n")),
                         r"^ERR ")
        # a rollback flips too
        self.assertTrue(c.request("PUBLISH e %s" % self.write("e.csv", "v\n1\n"))
                        .startswith("OK version=1"))
        self.assertEqual(c.request("KEEP e 2"), "OK keep=2")
        self.assertTrue(c.request("PUBLISH e %s" % self.write("f.csv", "v\n2\n"))
                        .startswith("OK version=2"))
        self.assertEqual(c.request("ROLLBACK e 1"), "OK current=1 previous=2")
        c.close()
        m = self.scrape(port)
        self.assertEqual(m["snap_errors_total"]["publish"], 1)
        self.assertEqual(m["snap_publishes_total"], {None: 4})
        self.assertEqual(m["snap_flips_total"], {None: 5})
        self.assertEqual(m["snap_current_version"], {"d": 2, "e": 1})

        # the reader lets go: its version is reclaimed, nothing pinned or draining
        mark = d.mark()
        holder.stdin.close()
        self.assertEqual(holder.wait(), 0)
        d.wait_log(r"^reclaim dataset=d version=1 ", start=mark)
        wait_for(lambda: all(v["state"] != "draining" for ds in self.status()["datasets"]
                             for v in ds["versions"]), "no draining version")
        m = self.scrape(port)
        self.assertEqual(m["snap_pinned_versions"], {"d": 0, "e": 0})
        self.assertEqual(m["snap_draining_bytes"], {"d": 0, "e": 0})
        self.assertEqual(d.stop(), 0)

    def test_metrics_bad_requests(self):
        d, port = self.start_metrics()
        url = "http://127.0.0.1:%d" % port
        for path in ("/", "/nosuch", "/metrics/", "/metricsx"):
            self.assertEqual(http_get(url + path)[0], 404, path)
        self.assertEqual(http_get(url + "/metrics?x=1")[0], 200)
        status, headers, _ = http_get(url + "/metrics", method="POST")
        self.assertEqual((status, headers["Allow"]), (405, "GET"))
        self.assertEqual(http_get(url + "/metrics", method="HEAD")[0], 405)

        # garbage: 400, and the connection is closed (http_raw reads to the end)
        for data, shut in ((b"garbage\r\n\r\n", True), (bytes(range(256)), True),
                           (b"GET /metrics HTTP/9.9\r\n\r\n", True),
                           (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", True),
                           (b"GET /metrics", True),  # ended mid-head
                           (b"\x16\x03\x01\x00\xa5\x01\x00", False)):  # TLS: refused at once
            out = http_raw(port, data, shut)
            self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (data, out))
            self.assertIn(b"\r\nConnection: close\r\n", out)
        # a request head of 8 KiB is served; one byte more is refused
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
        pad = 8192 - len(head) - 4
        out = http_raw(port, head + b"a" * pad + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:100])
        out = http_raw(port, head + b"a" * (pad + 1) + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
        out = http_raw(port, head + b"a" * 100000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])

        # a slow client does not hold up the others: with one connection sending
        # half a request, a scrape is answered before that one is given up
        slow = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        slow.sendall(b"GET /metr")
        idle = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.assertEqual(self.scrape(port)["snap_publishes_total"], {None: 0})
        slow.setblocking(False)
        with self.assertRaises(BlockingIOError):  # still open, nothing said
            slow.recv(1)
        # ... and is closed at its deadline, without an answer
        slow.settimeout(DEADLINE)
        self.assertEqual(slow.recv(1), b"")
        idle.settimeout(DEADLINE)
        self.assertEqual(idle.recv(1), b"")
        slow.close()
        idle.close()

        # writerd serves on, both ways, and stops cleanly
        self.assertEqual(self.scrape(port)["snap_errors_total"]["other"], 0)
        c = self.client()
        self.assertTrue(c.request("PING").startswith("OK writerd"))
        c.close()
        self.assertEqual(d.stop(), 0)

    def test_metrics_option(self):
        for bad in ("localhost:9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                    "::1:9100", "[::1]9100", "", "127.0.0.1:-1", "http://127.0.0.1:9100"):
            p = subprocess.run([WRITERD, "--store", self.store, "--foreground",
                                "--metrics", bad], capture_output=True, text=True,
                               timeout=DEADLINE)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn("writerd: --metrics: '%s' is not ADDR:PORT" % bad, p.stderr)
        self.assertFalse(os.path.exists(self.store))  # refused before anything
        p = subprocess.run([WRITERD, "--metrics"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        # a port already taken: a start-up error (1) naming it; nothing left behind
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = "127.0.0.1:%d" % taken.getsockname()[1]
        p = subprocess.run([WRITERD, "--store", self.store, "--foreground", "--metrics", addr],
                           capture_output=True, text=True, timeout=DEADLINE)
        taken.close()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("writerd: --metrics %s: bind: Address already in use" % addr, p.stderr)
        self.assertFalse(os.path.exists(self.sock))
        # IPv6, in brackets (where the machine has a loopback for it)
        try:
            with socket.socket(socket.AF_INET6) as s6:
                s6.bind(("::1", 0))
        except OSError:
            return
        d = self.start("--metrics", "[::1]:0")
        m, _ = d.wait_log(r"^metrics listen=\[::1\]:(\d+)$")
        self.assertEqual(http_get("http://[::1]:%s/metrics" % m.group(1))[0], 200)
        self.assertEqual(d.stop(), 0)

    # ------------------------------------------------------ signals, crashes

    def test_sigterm_during_publish(self):
        d = self.start()
        c = self.client()
        self.assertTrue(c.request("PUBLISH d %s" % self.write("a.csv", "i,f,k\n1,1.5,a\n"))
                        .startswith("OK version=1"))
        files = self.segment_files()
        big = self.big_csv()
        mark = d.mark()
        os.rename(big, os.path.join(self.inbox, "d.csv"))
        d.wait_log(r"^publish-start dataset=d source=inbox", start=mark)
        self.assertEqual(d.stop(signal.SIGTERM), 0)
        log = d.log()
        self.assertRegex(log, r"(?m)^cancel dataset=d source=inbox file=d\.csv "
                              r"reason=shutdown$", "the publish finished before SIGTERM "
                                                   "took effect; make the file bigger")
        self.assertRegex(log, r"(?m)^exit status=0$")
        # the old version is current, no half version and no orphan file remains,
        # and the input stays in the inbox for the next start
        p = self.ctl("list", "d", "--json")
        doc = json.loads(p.stdout)["datasets"][0]
        self.assertEqual((doc["current"], [v["version"] for v in doc["versions"]]), (1, [1]))
        self.assertEqual(self.segment_files(), files)
        self.assertTrue(os.path.exists(os.path.join(self.inbox, "d.csv")))
        self.ctl("doctor")
        self.ctl("verify", "d")

    def test_sigkill_restart_sweeps(self):
        d = self.start()
        c = self.client()
        self.assertTrue(c.request("PUBLISH d %s" % self.write("a.csv", "i,f,k\n1,1.5,a\n"))
                        .startswith("OK version=1"))
        c.close()
        files = self.segment_files()
        big = self.big_csv()
        c = self.client()
        c.send(("PUBLISH d %s\n" % big).encode())
        d.wait_log(r"^publish-start dataset=d source=socket")
        self.assertEqual(d.stop(signal.SIGKILL), -signal.SIGKILL)
        c.close()
        # what a writer killed between link and commit leaves: a segment file no
        # record names
        orphan = os.path.join(os.path.dirname(files[0]), "77.seg")
        shutil.copyfile(files[0], orphan)
        # restart: the stale socket is replaced, the orphan swept
        d = self.start()
        d.wait_log(r"^orphan dataset=d version=77 action=removed$")
        d.wait_log(r"^sweep orphans=1 ")
        self.assertEqual(self.segment_files(), files)
        self.assertEqual(self.read_version("d"), (1, 1, 1.0))
        self.ctl("doctor")
        self.ctl("verify", "d")
        c = self.client()
        self.assertTrue(c.request("PUBLISH d %s" % self.write("b.csv", "i\n5\n"))
                        .startswith("OK version="))
        c.close()
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
