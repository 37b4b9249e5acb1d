# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by the end-to-end tests (tests/cli, tests/writerd, tests/sync):
files in the test's scratch directory, reader processes that pin a version
(pin_helper), and writerd processes whose log lines a test waits on (Daemon).

A test case using StoreCase sets self.tmp, self.store and self.procs (reader
processes, killed in its tearDown)."""
import os
import re
import signal
import subprocess
import threading
import time

PIN_HELPER = os.environ.get("PIN_HELPER", "pin_helper")


class StoreCase:
    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return path

    def pin(self, dataset, version=None):
        """Start a reader that pins; returns (process, version, nrows, sum)."""
        argv = [PIN_HELPER, self.store, dataset] + ([str(version)] if version else [])
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()  # blocks until the pin is taken
        m = re.match(r"pinned (\d+) (\d+) (\S+)", line)
        self.assertIsNotNone(m, "pin_helper said %r" % line)
        return p, int(m.group(1)), int(m.group(2)), float(m.group(3))


class Daemon:
    """A writerd process (in the foreground, with @args) whose stderr log lines are
    collected by a thread; tests synchronise on them with deadlines."""

    def __init__(self, store, *args, writerd="writerd", env=None, deadline=60.0):
        self.store = store
        self.deadline = deadline
        self.argv = [writerd, "--store", store, "--foreground"] + list(args)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of the log
            self.cond.notify_all()

    def wait_log(self, pattern, start=0, timeout=None):
        """Wait for a log line matching pattern (from line index start); returns
        (match, index)."""
        timeout = self.deadline if timeout is None else timeout
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError("writerd exited before logging %r; log:\n%s"
                                             % (pattern, self.log()))
                    m = rx.search(line)
                    if m:
                        return m, i
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no log line %r within %ds; log:\n%s"
                                         % (pattern, timeout, self.log()))
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def log(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=self.deadline)
        self.thread.join(timeout=self.deadline)
        return rc
