"""Least privilege and what the daemon gives away: workers that drop root, /metrics behind
the key, a Server header without a version, and logs without secrets."""
import json
import os
import pwd
import re
import shutil
import socket
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import websockets

from conftest import (AUTH, BIN, KEY, SANITIZED, Redis, Server, call, context, create, free_port,
                      https, keyed, make_cert, next_push, op, raw_exchange, run, tls_conf, url,
                      wait_for)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")


def ids(pid, field):
    """The ids of a /proc/PID/status line (Uid:, Gid: or Groups:)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture
def open_dir():
    """A directory the workers' user can reach (pytest's own are root's alone)."""
    d = tempfile.mkdtemp(prefix="sessiond-privs-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@root_only
def test_workers_drop_to_the_configured_user(open_dir):
    nobody = pwd.getpwnam("nobody")
    s = Server(open_dir, conf=f'api_key "{KEY}"\nuser nobody\ngroup nogroup\n'
               f"log_file {open_dir}/sessiond.log-file\n")
    try:
        s.start()
        assert ids(s.pid, "Uid") == [0, 0, 0, 0]
        gid = ids(s.worker_pids()[0], "Gid")[0]
        for pid in s.worker_pids():
            assert ids(pid, "Uid") == [nobody.pw_uid] * 4
            assert ids(pid, "Gid") == [gid] * 4
            assert ids(pid, "Groups") == [gid]
        # The workers write the store and the log the master gave them.
        for name in ("sessiond.db", "sessiond.db-lock", "sessiond.log-file"):
            assert os.stat(os.path.join(open_dir, name)).st_uid == nobody.pw_uid, name
        status, _, body = create(s, "alice")
        assert status == 201, body
        assert call(s, "GET", f"/api/sessions/{body['id']}")[0] == 200
        # The bus between workers believes only its own user: still every worker hears.
        assert publish_reaches_all(s, 6)
        # A replacement worker drops too.
        victim = s.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in s.worker_pids() and len(s.worker_pids()) == 2,
                 what="a replacement worker")
        for pid in s.worker_pids():
            assert ids(pid, "Uid") == [nobody.pw_uid] * 4
        assert call(s, "GET", f"/api/sessions/{body['id']}")[0] == 200
        # Rotation: the master reopens the log and gives the new file to the workers.
        os.rename(f"{open_dir}/sessiond.log-file", f"{open_dir}/sessiond.log-file.1")
        s.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(f"{open_dir}/sessiond.log-file") and
                 os.stat(f"{open_dir}/sessiond.log-file").st_uid == nobody.pw_uid,
                 what="a new log file given to the workers' user")
    finally:
        s.stop()


def publish_reaches_all(s, n):
    """Whether a message published by one of n clients (spread over the workers) reaches
    all of them."""
    async def go():
        clients = []
        for i in range(n):
            status, _, body = create(s, f"u{i}")
            c = await websockets.connect(url(s, body["token"]))
            clients.append(c)
            assert (await op(c, op="subscribe", channel="all"))["op"] == "ok"
        try:
            assert (await op(clients[0], op="publish", channel="all", data="hi"))["op"] == "ok"
            got = [await next_push(c) for c in clients]
            return all(m["data"] == "hi" for m in got)
        finally:
            for c in clients:
                await c.close()
    return run(go())


def test_check_warns_about_whom_workers_serve_as(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("listen 127.0.0.1:1\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout
    if os.geteuid() == 0:
        assert 'running as root without "user"' in r.stderr
    else:
        assert r.stderr == ""
    conf.write_text("listen 127.0.0.1:1\nuser nobody\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0
    if os.geteuid() == 0:
        assert r.stderr == ""
    else:
        assert '"user" is ignored' in r.stderr
    conf.write_text("listen 127.0.0.1:1\nuser no-such-user-here\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "no user no-such-user-here" in r.stderr


def test_metrics_can_be_private(server_factory):
    s = keyed(server_factory, "metrics_public off\n")
    status, headers, _ = s.request("GET", "/metrics")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, _, data = s.request("GET", "/metrics", headers=AUTH)
    assert status == 200 and b"sessiond_http_requests_total" in data
    # Health stays open for probes.
    assert s.request("GET", "/api/health")[0] == 200
    public = keyed(server_factory)
    assert public.request("GET", "/metrics")[0] == 200


def test_server_header_has_no_version(server):
    _, headers, _ = server.request("GET", "/api/health")
    assert headers["Server"] == "sessiond"
    _, headers, _ = server.request("GET", "/nowhere")
    assert headers["Server"] == "sessiond"


def test_logs_and_errors_never_hold_secrets(server_factory):
    s = keyed(server_factory, "log_level debug\n")
    status, _, body = create(s, "alice")
    token = body["token"]
    assert call(s, "GET", "/api/session", headers={"Authorization": f"Bearer {token}"})[0] == 200
    # Wrong credentials of every kind: the answers do not repeat them.
    wrong_key = KEY + "-wrong"
    status, _, err = call(s, "GET", "/api/sessions/x", headers={
        "Authorization": f"Bearer {wrong_key}"})
    assert status == 401 and wrong_key not in str(err)
    status, _, err = call(s, "GET", "/api/session", headers={
        "Authorization": f"Bearer {token}x"})
    assert status == 401 and token not in str(err)

    async def ws():
        async with websockets.connect(url(s, token)) as c:
            assert (await op(c, op="subscribe", channel="c"))["op"] == "ok"
    run(ws())
    assert call(s, "DELETE", f"/api/sessions/{body['id']}")[0] == 204
    log = s.log()
    assert "serving" in log  # the debug log was written
    for secret in (token, KEY, token[:16]):
        assert secret not in log


SMUGGLING = [
    # (what, raw request, status): each is followed by a valid request on the same bytes.
    ("CL and TE", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE and CL", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 4\r\n\r\n0\r\n\r\n", 400),
    ("two lengths", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
     b"Content-Length: 40\r\n\r\n", 400),
    ("length list", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 40\r\n\r\n",
     400),
    ("negative length", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
     400),
    ("overflowing length", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 18446744073709551617\r\n\r\n", 400),
    ("huge length", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 9000000000000\r\n\r\n", 413),
    ("TE chunked twice", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE with a space before the colon", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("bad chunk size", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
     b"\r\n\r\nz\r\nabc\r\n0\r\n\r\n", 400),
    ("negative chunk size", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", 400),
    ("overflowing chunk size", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk without CRLF", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 400),
    ("NUL in a header", b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bare CR in a header", b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    ("bare LF ending a header", b"GET /api/health HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    ("NUL in the target", b"GET /api/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("two Hosts", b"GET /api/health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("method not a token", b"GE(T /api/health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("no method", b" /api/health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("unknown version", b"GET /api/health HTTP/2.7\r\nHost: x\r\n\r\n", 505),
    ("overlong request line", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("overlong header", b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 +
     b"\r\n\r\n", 431),
]


@pytest.mark.parametrize("what,raw,want", SMUGGLING, ids=[c[0] for c in SMUGGLING])
def test_smuggling_and_parser_abuse_get_one_answer_and_a_close(server, what, raw, want):
    follow = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    resp = raw_exchange(server.port, raw + follow)
    assert resp.startswith(b"HTTP/1.1 %d " % want), (what, resp[:120])
    assert resp.count(b"HTTP/1.1 ") == 1, what
    assert b"Connection: close" in resp.split(b"\r\n\r\n")[0]


def held_connection(s):
    """A keep-alive connection the server has certainly accepted (it answered on it)."""
    c = s.conn()
    c.request("GET", "/api/health")
    r = c.getresponse()
    r.read()
    assert r.status == 200
    return c


def test_connections_per_ip_across_workers(server_factory):
    s = server_factory(conf="max_connections_per_ip 3\nlimit_exempt_loopback off\n")
    held = [held_connection(s) for _ in range(3)]
    resp = raw_exchange(s.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 429 "), resp[:80]
    assert b"Retry-After: 1\r\n" in resp and b'"too_many_connections"' in resp
    held.pop().close()
    wait_for(lambda: raw_exchange(s.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200 "),
             what="a place freed by a closed connection")
    for c in held:
        c.close()
    # Loopback is exempt by default.
    free = server_factory(conf="max_connections_per_ip 3\n")
    more = [held_connection(free) for _ in range(8)]
    for c in more:
        c.close()


def test_request_rate_per_ip_is_shared_by_workers(server_factory):
    s = server_factory(conf="rate_limit_per_ip 5\nlimit_exempt_loopback off\n", workers=2)
    time.sleep(1.1)  # the bucket refills after the start-up probes
    t0 = time.monotonic()
    answers = [s.request("GET", "/api/health") for _ in range(20)]  # a new connection each
    elapsed = time.monotonic() - t0
    ok = [a for a in answers if a[0] == 200]
    limited = [a for a in answers if a[0] == 429]
    assert len(ok) + len(limited) == 20
    assert 5 <= len(ok) <= 5 + int(elapsed * 5) + 1, (len(ok), elapsed)
    status, headers, body = limited[0]
    assert headers["Retry-After"] == "1" and b'"too_many_requests"' in body
    time.sleep(1.1)
    assert s.request("GET", "/api/health")[0] == 200


def test_requests_in_flight_per_user(server_factory, tmp_path):
    redis = Redis(tmp_path).start()
    try:
        s = server_factory(conf=f"store redis\nredis_url {redis.url}\nredis_timeout 3s\n"
                                "max_inflight_per_user 3\n")
        tokens = []
        for user in ("alice", "bob"):
            status, _, out = s.request("POST", "/api/sessions", body=b'{"user":"%s"}' % user.encode(),
                                       headers={"Content-Type": "application/json"})
            assert status == 201
            tokens.append(json.loads(out)["token"])
        os.kill(redis.proc.pid, signal.SIGSTOP)  # every store call now waits
        try:
            results = []

            def own(tok):
                t = time.monotonic()
                st = s.request("GET", "/api/session", headers={"Authorization": f"Bearer {tok}"})[0]
                results.append((tok, st, time.monotonic() - t))
            threads = [threading.Thread(target=own, args=(tokens[0],)) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.5)  # alice's three are in flight
            t = time.monotonic()
            status, headers, body = s.request("GET", "/api/session",
                                              headers={"Authorization": f"Bearer {tokens[0]}"})
            assert status == 429 and time.monotonic() - t < 0.5
            assert headers["Retry-After"] == "1" and b'"too_many_requests"' in body
            other = threading.Thread(target=own, args=(tokens[1],))  # bob is not alice
            other.start()
            time.sleep(0.3)
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        for t in threads + [other]:
            t.join(10)
        assert sorted(st for _, st, _ in results) == [200, 200, 200, 200], results
        # Every answered request gave its place back.
        for _ in range(4):
            assert s.request("GET", "/api/session",
                             headers={"Authorization": f"Bearer {tokens[0]}"})[0] == 200
    finally:
        redis.stop()


PIPELINED = 64  # requests of 256 KiB each that a stalled reader asks for


def test_slowloris_and_friends_are_cut_off_while_health_answers(server_factory):
    """Hundreds of connections trickling a head, trickling a body, or never reading what
    they asked for: each is closed by its timeout, health keeps answering fast, and the
    stalled connections cost bounded memory."""
    import selectors
    s = server_factory(conf="header_timeout 2s\nbody_timeout 2s\nsend_timeout 2s\n"
                            "max_connections 5000\n")
    base_rss = s.health()[1]["memory"]["rss_bytes"]
    n = 300  # of each kind
    socks = {"head": [], "body": [], "unread": []}
    born = {}
    for kind in socks:
        for _ in range(n if kind != "unread" else n // 6):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.setblocking(False)
            if kind == "head":
                c.send(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "body":
                c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                       b"\r\nContent-Length: 100000\r\n\r\n{\"a\":\"")
            else:
                c.send(b"GET /debug/big?kb=256 HTTP/1.1\r\nHost: x\r\n"
                       b"Accept-Encoding: identity\r\n\r\n" * PIPELINED)
            socks[kind].append(c)
            born[c] = time.monotonic()
    probes, closed_at = [], {}
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    for kind, lst in socks.items():
        for c in lst:
            sel.register(c, selectors.EVENT_READ, kind)
    while time.monotonic() - t0 < 6 and len(closed_at) < 3 * n:
        for c in socks["head"] + socks["body"]:  # one byte each, every 100 ms or so
            if c.fileno() >= 0 and c not in closed_at:
                try:
                    c.send(b"a")
                except OSError:
                    pass
        t = time.monotonic()
        status, _ = s.health()
        probes.append((time.monotonic() - t, status))
        for key, _ in sel.select(timeout=0.1):
            c = key.fileobj
            if key.data == "unread":
                continue  # never read: the server must give up on its own
            try:
                data = c.recv(65536)
            except OSError:
                data = b""
            if not data or b"408" in data:
                closed_at[c] = (key.data, time.monotonic() - born[c], data[:12])
                sel.unregister(c)
        if time.monotonic() - t0 > 3 and "rss" not in closed_at:
            closed_at["rss"] = s.health()[1]["memory"]["rss_bytes"]
    stalled_rss = closed_at.pop("rss")
    # Every trickler got 408 (or a close) after its 2 s, not before, and not much later.
    for kind in ("head", "body"):
        got = [v for v in closed_at.values() if v[0] == kind]
        assert len(got) == n, (kind, len(got))
        assert all(1.5 < when < 4.5 for _, when, _ in got), sorted(w for _, w, _ in got)[:3]
        assert all(data.startswith(b"HTTP/1.1 408") or data == b"" for _, _, data in got)
    # The readers that never read were closed by send_timeout: what the kernel buffers
    # held, then EOF or a reset, far from all they asked for.
    for c in socks["unread"]:
        sel.unregister(c)
        c.setblocking(True)
        c.settimeout(5)
        total = 0
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                total += len(b)
        except ConnectionResetError:
            pass
        assert total < PIPELINED * (256 << 10) // 2, "a stalled reader was not cut off"
    latencies = sorted(p[0] for p in probes)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert all(st == 200 for _, st in probes)
    assert p99 < 0.05, f"health p99 {p99 * 1000:.1f} ms during the attack"
    # Memory per stalled connection stays small (buffers are bounded and shared).
    per_conn = (stalled_rss - base_rss) / (2 * n + n // 6)
    print(f"health p99 {p99 * 1000:.1f} ms over {len(probes)} probes; "
          f"{per_conn / 1024:.1f} KiB per stalled connection")
    if not SANITIZED:
        assert per_conn < 64 << 10, f"{per_conn / 1024:.1f} KiB per stalled connection"
    for lst in socks.values():
        for c in lst:
            c.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_pauses_accept_instead_of_spinning(server_factory):
    s = server_factory(workers=1, nofile=64)
    assert "open-file limit (64) is below" in s.log()  # said at start
    worker = s.worker_pids()[0]
    clients = []
    for _ in range(90):  # more than the worker can hold
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        clients.append(c)
    wait_for(lambda: "pausing until connections close" in s.log(), what="the pause")
    before = cpu_seconds(worker)
    time.sleep(2)
    assert cpu_seconds(worker) - before < 0.3, "the worker spins on accept"
    assert s.log().count("pausing until connections close") == 1  # once, not 20 times
    for c in clients:
        c.close()
    # Once descriptors are free, the queued and new clients are served.
    wait_for(lambda: s.health()[0] == 200, timeout=5, what="serving again")
    assert "accepting again" in s.log()
    assert s.worker_pids() == [worker]


@pytest.fixture
def small_disk():
    """A 128 MiB tmpfs of our own, so that the store's disk can be filled."""
    d = tempfile.mkdtemp(prefix="sessiond-disk-", dir="/tmp")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m,mode=0755", "tmpfs", d],
                      capture_output=True).returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here")
    yield d
    subprocess.run(["umount", "-l", d])
    os.rmdir(d)


def fill(path):
    """Write until the disk is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_full_disk_fails_writes_clearly_keeps_reads_and_recovers(server_factory, small_disk):
    # The map (800 x 64 KiB, doubled: 100 MiB) fits the disk at start, as it must; the
    # store reserves blocks ahead of its use, and the filler then takes the rest.
    s = keyed(server_factory, f"store_path {small_disk}/sessions.db\nmax_sessions 800\n"
                              "session_max_bytes 64k\nmax_sessions_per_user 800\n")
    made = []
    for i in range(20):
        status, _, body = create(s, f"u{i}", {"n": i})
        assert status == 201
        made.append(body)
    victim = [create(s, "victim", {"pad": "y" * 60000})[2]["id"] for _ in range(5)]
    fill(f"{small_disk}/filler")
    refused = None
    for i in range(700):  # the reservation runs out, then a write needs the disk
        status, _, body = create(s, f"late{i}", {"pad": "x" * 60000})
        if status != 201:
            refused = (status, body)
            break
    assert refused is not None, "the store never noticed the full disk"
    status, body = refused
    assert status == 503 and body["error"]["code"] == "store_unavailable", body
    assert "disk is full" in body["error"]["message"]
    assert status == 503 and refused[1]["error"]["code"] == "store_unavailable"
    metrics = s.request("GET", "/metrics")[2].decode()  # visible, not silent
    assert int(re.search(r"^sessiond_store_errors_total (\d+)", metrics, re.M).group(1)) >= 1
    for m in made:  # reads keep working
        status, _, got = call(s, "GET", f"/api/sessions/{m['id']}")
        assert status == 200 and got["data"]["n"] == m["data"]["n"]
    # A compromised user can be revoked now, when a single delete can be made.
    assert call(s, "DELETE", f"/api/sessions/{victim[0]}")[0] == 204
    status, _, body = call(s, "DELETE", "/api/users/victim/sessions")
    assert status == 204, body
    assert all(call(s, "GET", f"/api/sessions/{v}")[0] == 404 for v in victim)
    # Space returns: writes succeed again, by themselves, with no restart.
    pids = s.worker_pids()
    os.unlink(f"{small_disk}/filler")
    wait_for(lambda: create(s, "after")[0] == 201, timeout=5, what="writes to resume")
    assert s.worker_pids() == pids
    # Nothing was corrupted: a restart reads every session back.
    s.stop()
    again = Server(s.dir, conf=s.extra, workers=2, port=s.port)
    try:
        again.start()
        for m in made:
            assert call(again, "GET", f"/api/sessions/{m['id']}")[0] == 200
    finally:
        again.stop()


def test_a_start_refused_for_want_of_disk_leaves_no_empty_store(tmp_path, small_disk):
    # The map for a million 64 KiB sessions does not fit a 128 MiB disk.
    (tmp_path / "refused").mkdir()
    (tmp_path / "ok").mkdir()
    s = Server(str(tmp_path / "refused"), conf=f"store_path {small_disk}/sessions.db\n"
                                               "max_sessions 1000000\nsession_max_bytes 64k\n")
    s.start(wait=False)
    assert s.wait_exit(10) == 1
    s.logf.close()
    assert f"store_path {small_disk}/sessions.db" in s.log()
    assert sorted(os.listdir(small_disk)) == []
    # A store that was there before a refused start stays.
    ok = Server(str(tmp_path / "ok"), conf=f"store_path {small_disk}/sessions.db\n"
                                           "max_sessions 800\nsession_max_bytes 64k\n")
    ok.start()
    ok.stop()
    assert "sessions.db" in os.listdir(small_disk)
    s.start(wait=False)
    assert s.wait_exit(10) == 1
    s.logf.close()
    assert "sessions.db" in os.listdir(small_disk)


def test_read_only_store_is_a_clear_startup_error(tmp_path):
    d = tempfile.mkdtemp(prefix="sessiond-ro-", dir="/tmp")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,ro", "tmpfs", d],
                      capture_output=True).returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here")
    try:
        s = Server(str(tmp_path), conf=f"store_path {d}/sessions.db\n")
        s.start(wait=False)
        assert s.wait_exit(10) == 1
        s.logf.close()
        assert f"store_path {d}/sessions.db: Read-only file system" in s.log()
    finally:
        subprocess.run(["umount", "-l", d])
        os.rmdir(d)


@root_only
def test_a_root_only_key_serves_tls_from_dropped_workers(open_dir, tmp_path):
    d = tmp_path / "certs"  # under pytest's root-only directory: nobody cannot even look
    d.mkdir(mode=0o700)
    crt, key = make_cert(str(d), "ec", "ec")
    os.chmod(key, 0o600)
    port = free_port()
    s = Server(open_dir, conf=f'api_key "{KEY}"\nuser nobody\n' + tls_conf(port, crt, key))
    try:
        s.start()
        s.tls_port = port
        for pid in s.worker_pids():
            assert ids(pid, "Uid")[0] == pwd.getpwnam("nobody").pw_uid
        status, _, body = https(s, context(crt), "GET", "/api/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        s.stop()
