"""Start the real sessiond on loopback for each test, and clean up every process it made.

Servers are started from build/sessiond-test (the daemon with its test-only hooks), on a
free port, with a config file written into the test's temporary directory. Every process
is stopped by pid at the end: the master, then any worker that outlived it.

The helpers that more than one test file uses live here too (the session API with the
test key, WebSocket operations, self-signed certificates), so that no test module imports
another.
"""
import asyncio
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

BIN = os.environ.get("SESSIOND_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "sessiond-test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    """Pids whose parent is pid, read from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry))
    return sorted(kids)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def exchange(c, method, path, body=None, headers=None):
    """One request on a fresh http.client connection, which it closes: (status, headers,
    body)."""
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    finally:
        c.close()


def kill_leftovers(pids):
    """SIGKILL whichever of these processes (ours, by pid) outlived their stop."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _sanitized():
    try:
        with open(BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# Built with SANITIZE=address: memory figures include ASan's redzones and quarantine.
SANITIZED = _sanitized()
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")


# What the tests written before channel permissions assume: any session may subscribe
# and publish anywhere. A test of the permissions passes open_channels=False.
OPEN_CHANNELS = "namespace default subscribe=any publish=any presence=subscribers"


class Server:
    def __init__(self, tmp_path, conf="", env=None, workers=2, port=None, nofile=None,
                 open_channels=True, bin=BIN):
        self.dir = tmp_path
        self.bin = bin  # a copy in tmp_path, for a test that replaces it (an upgrade)
        self.nofile = nofile  # an open-file limit (soft and hard) for the whole group
        self.port = port or free_port()
        self.conf_path = os.path.join(tmp_path, "sessiond.conf")
        self.log_path = os.path.join(tmp_path, "sessiond.log")
        self.pidfile = os.path.join(tmp_path, "sessiond.pid")
        self.extra = conf
        self.open_channels = open_channels
        self.workers = workers
        self.env = dict(os.environ)
        for k in ("PORT", "HOST", "WORKERS", "WEB_CONCURRENCY", "ENABLE_CLUSTERING",
                  "LOG_LEVEL"):
            self.env.pop(k, None)
        self.env.update(env or {})
        self.proc = None
        self.seen = set()
        self.masters = []  # masters that took over from proc (USR2), stopped by pid too
        self.write_conf(conf, workers)

    def write_conf(self, extra="", workers=None):
        lines = [f"listen 127.0.0.1:{self.port}", f"pidfile {self.pidfile}"]
        if self.open_channels:
            lines.append(OPEN_CHANNELS)
        if workers is not None:
            lines.append(f"workers {workers}")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra + "\n")

    def start(self, wait=True, args=()):
        self.logf = open(self.log_path, "ab")
        def limit():
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.proc = subprocess.Popen([self.bin, "-c", self.conf_path, *args],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=limit)
        if wait:
            want = self.workers or 1
            wait_for(lambda: self.health_ok(want), what=f"{want} worker(s) serving")
        return self

    def health_ok(self, want):
        status, body = self.health()
        return status == 200 and body["workers"]["alive"] == want

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        return exchange(self.conn(timeout), method, path, body, headers)

    def get_json(self, path, **kw):
        status, headers, data = self.request("GET", path, **kw)
        return status, json.loads(data)

    def health(self):
        return self.get_json("/api/health")

    def worker_pids(self):
        pids = children_of(self.pid)
        self.seen.update(pids)
        return pids

    def health_pids(self):
        _, body = self.health()
        return sorted(w["pid"] for w in body["workers"]["list"] if w["state"] == "running")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=15):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc is None:
            return
        for pid in self.masters:
            kids = children_of(pid)
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
                try:
                    wait_for(lambda: not alive(pid), timeout=15, what=f"master {pid} to exit")
                except AssertionError:
                    pass
            kill_leftovers([pid, *kids])
        kids = set(children_of(self.pid)) | self.seen
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_leftovers(kids)
        self.logf.close()
        # Under SANITIZE=address,undefined a report goes to stderr, which is the log:
        # any of them fails the test that ran this server.
        reports = [line for line in self.log().splitlines() if SANITIZER_REPORT.search(line)]
        assert not reports, f"sanitizer report in {self.log_path}: {reports[:3]}"


@pytest.fixture
def server_factory(tmp_path):
    made = []

    def make(conf="", env=None, workers=2, start=True, **kw):
        # Each server of a test gets a directory of its own (config, pidfile, log, store).
        d = tmp_path / f"server{len(made)}" if made else tmp_path
        d.mkdir(exist_ok=True)
        s = Server(str(d), conf=conf, env=env, workers=workers, **kw)
        made.append(s)
        return s.start() if start else s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def server(server_factory):
    return server_factory()


class Redis:
    """A redis-server of a test's own, on a free loopback port, stopped by pid: the store
    that several instances share (test_redis.py, test_fleet.py)."""

    def __init__(self, tmp_path, port=None, args=()):
        self.port = port or free_port()
        self.dir = tmp_path
        self.args = list(args)  # more redis-server options: --replicaof host port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis  # here, so that the tests without Redis do not need its module

        def up():
            try:
                return redis.Redis(port=self.port, socket_timeout=0.5).ping()
            except redis.exceptions.ConnectionError:
                return False
        wait_for(up, what="redis-server")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(params=["lmdb", "redis"])
def keyed_on_both(request, server_factory, tmp_path):
    """A maker of servers with the API key, on the embedded store and then on a Redis of
    the test's own: for the session API's promises, which both engines keep."""
    r = None
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        (tmp_path / "redis").mkdir()
        r = Redis(tmp_path / "redis").start()

    def make(conf="", **kw):
        store = f"store redis\nredis_url {r.url}\n" if r else ""
        return server_factory(conf=f'api_key "{KEY}"\n{store}{conf}', **kw)
    yield make
    if r:
        r.stop()


@pytest.fixture
def redis_server(tmp_path):
    r = Redis(tmp_path).start()
    yield r
    r.stop()


def raw_exchange(port, data, timeout=5.0, read_until_close=True):
    """Send raw bytes and return everything the server sent back until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
                if not read_until_close:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


class Hammer:
    """Clients that GET path in a loop, each on one keep-alive connection (from connect),
    until stopped: a failure is recorded and the connection replaced. For checking that
    a reload or a drain loses no request."""

    def __init__(self, connect, clients=4, path="/api/health"):
        self.connect, self.path = connect, path
        self.stopping = threading.Event()
        self.errors, self.counts = [], []
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def client(self):
        c, n = self.connect(), 0
        while not self.stopping.is_set():
            try:
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    self.errors.append(r.status)
                n += 1
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
                c.close()
                c = self.connect()
        c.close()
        self.counts.append(n)

    def stop(self):
        """Stop the clients; returns (errors, requests answered)."""
        self.stopping.set()
        for t in self.threads:
            t.join()
        return self.errors, sum(self.counts)


# ---- binary upgrades (USR2): a server run from a copy of the binary that a test replaces ----

def deploy(s, script=None):
    """Replace s's binary as a deploy does, a new file renamed over the old: a copy of
    BIN, or a shell script (one that wraps the real binary, or that fails)."""
    tmp = s.bin + ".new"
    if script is None:
        shutil.copy(BIN, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(f"#!/bin/sh\n{script}\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, s.bin)


def pidfile_pid(s):
    with open(s.pidfile) as f:
        return int(f.read())


def new_master(s, old):
    """Wait for the pidfile to name a live master other than old; s stops it by pid."""
    pid = wait_for(lambda: (p := pidfile_pid(s)) != old and alive(p) and p, timeout=20,
                   what="the pidfile to name the new master")
    if pid not in s.masters:
        s.masters.append(pid)
    return pid


# ---- the session API, on a server with the tests' API key ----

JSON = {"Content-Type": "application/json"}
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def call(s, method, path, body=None, headers=None, raw=None, timeout=10):
    h = dict(AUTH)
    if body is not None or raw is not None:
        h.update(JSON)
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    status, hdrs, out = s.request(method, path, body=data, headers=h, timeout=timeout)
    return status, hdrs, (json.loads(out) if out else None)


def create(s, user="u1", data=None, ttl=None, **kw):
    body = {"user": user}
    if data is not None:
        body["data"] = data
    if ttl is not None:
        body["ttl"] = ttl
    return call(s, "POST", "/api/sessions", body, **kw)


def keyed(server_factory, conf="", **kw):
    return server_factory(conf=f'api_key "{KEY}"\n' + conf, **kw)


# ---- WebSockets (the tests' clients are python3-websockets) ----


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(s, tok=None):
    return f"ws://127.0.0.1:{s.port}/ws" + (f"?token={tok}" if tok else "")


async def op(ws, **msg):
    """Send one operation and return its reply (skipping pushed messages)."""
    await ws.send(json.dumps(msg))
    while True:
        r = json.loads(await ws.recv())
        if r["op"] in ("ok", "error", "pong"):
            return r


async def next_push(ws, timeout=5, want=("message",)):
    """The next pushed message whose op is in want (by default a channel message: join
    and leave events are skipped)."""
    while True:
        r = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if r["op"] in want:
            return r


async def worker_of(ws, tag=None):
    """The pid of the worker holding this connection: sessiond-test answers it (the
    connection ids of presence are opaque)."""
    pid = (await op(ws, op="test_worker_pid"))["worker_pid"]
    assert pid > 1  # the tests kill it: never the process group
    return pid


# ---- TLS: certificates made with the openssl command line ----

SUBJ = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]


def make_cert(d, name, kind):
    """A self-signed certificate and its key as name.crt and name.key in d."""
    key_opts = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
                else ["-newkey", "rsa:2048"])
    crt, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", *key_opts, "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", *SUBJ], check=True, capture_output=True)
    return crt, key


def tls_conf(port, crt, key, extra=""):
    return f"listen 127.0.0.1:{port} tls\ntls_cert {crt}\ntls_key {key}\n{extra}"


def context(*cafiles):
    ctx = ssl.create_default_context()
    for f in cafiles:
        ctx.load_verify_locations(f)
    return ctx


def https(s, ctx, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPSConnection("localhost", s.tls_port, context=ctx, timeout=timeout)
    return exchange(c, method, path, body, headers)
