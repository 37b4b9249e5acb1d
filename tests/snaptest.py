# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by the end-to-end tests (tests/cli, tests/writerd): files in the
test's scratch directory and reader processes that pin a version (pin_helper).

A test case using StoreCase sets self.tmp, self.store and self.procs (reader
processes, killed in its tearDown)."""
import os
import re
import subprocess

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
