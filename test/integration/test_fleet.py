"""A fleet: nginx in front of two sessiond instances that share one Redis, run from the
checked-in scripts/fleet configs with only their ports and paths replaced, so that what
operators copy is what is tested. Sessions and WebSocket channels span the instances,
and stopping one instance with SIGTERM under load loses no request."""
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest
import websockets

from conftest import (children_of, exchange, free_port, kill_leftovers, next_push, op, run,
                      wait_for, worker_of)

FLEET = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "fleet")


def read_fleet(name):
    with open(os.path.join(FLEET, name)) as f:
        return f.read()


def replace_once(text, old, new):
    # A config that no longer has the line fails here, instead of testing something else.
    assert text.count(old) == 1, f"{old!r} is not in the fleet config exactly once"
    return text.replace(old, new)


def directive(text, name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"no {name} in the fleet config"
    return m.group(1)


# The fleet's files hold no key: as their comment says, it comes from the environment.
API_KEY = secrets.token_hex(32)
KEY = {"Authorization": f"Bearer {API_KEY}"}
JSON_KEY = {**KEY, "Content-Type": "application/json"}


def start_instance(server_factory, redis_server, name):
    """One instance from scripts/fleet/NAME.conf, on a free port and the test's Redis.
    Its relative paths (pidfile, log, roster) land beside the copy, in its own directory."""
    s = server_factory(start=False, workers=2)
    text = read_fleet(f"{name}.conf")
    s.fleet_addr = directive(text, "listen")
    text = replace_once(text, f"listen {s.fleet_addr}\n", f"listen 127.0.0.1:{s.port}\n")
    text = replace_once(text, f"redis_url {directive(text, 'redis_url')}\n",
                        f"redis_url {redis_server.url}\n")
    with open(s.conf_path, "w") as f:
        f.write(text)
    for k in ("REDIS_URL", "SESSIOND_STORE"):
        s.env.pop(k, None)
    s.env["SESSIOND_API_KEY"] = API_KEY
    return s.start()


class Nginx:
    """nginx in the foreground on scripts/fleet/nginx.conf, its upstreams pointed at the
    given instances; stopped by pid."""

    def __init__(self, tmp_path, instances):
        self.dir = os.path.join(tmp_path, "nginx")
        os.makedirs(os.path.join(self.dir, "nginx-tmp"))  # as scripts/fleet has it
        self.port = free_port()
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        self.access_log = os.path.join(self.dir, "nginx-access.log")
        self.instance_of = {}
        self.marks = 0
        text = read_fleet("nginx.conf")
        text = replace_once(text, "listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};")
        for s in instances:
            text = replace_once(text, f"server {s.fleet_addr} ", f"server 127.0.0.1:{s.port} ")
            self.instance_of[f"127.0.0.1:{s.port}"] = s
        with open(self.conf_path, "w") as f:
            f.write(text)
        self.proc = None
        self.kids = set()

    def start(self):
        self.logf = open(os.path.join(self.dir, "nginx.out"), "ab")
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.dir + "/", "-c", self.conf_path, "-e", "stderr",
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_for(lambda: self.request("GET", "/api/health")[0] == 200, what="nginx serving")
        self.kids.update(children_of(self.proc.pid))
        return self

    def stop(self):
        if self.proc is None:
            return
        self.kids.update(children_of(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_leftovers(self.kids)
        self.logf.close()

    def conn(self, timeout=20):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        return exchange(self.conn(), method, path, body, headers)

    def log_lines(self):
        with open(self.access_log) as f:
            return f.read().splitlines()

    def served(self, method, path, body=None, headers=None):
        """A request through nginx, and the instance that answered it (from the access
        log, which nginx writes once the response is out)."""
        # nginx may write an earlier request's line after that client had its answer,
        # so this request is found by a mark of its own in the query, which sessiond
        # ignores and the log's request line shows.
        self.marks += 1
        mark = f"fleet-mark={self.marks}"
        path += ("&" if "?" in path else "?") + mark
        status, h, out = self.request(method, path, body, headers)
        lines = wait_for(lambda: [ln for ln in self.log_lines() if mark + " " in ln],
                         what="the access log line")
        assert len(lines) == 1, lines
        addr = re.search(r" upstream=(\S+) ", lines[0]).group(1)
        return status, out, self.instance_of[addr]


def create(ng, user, data=None):
    """A session granted the channel the tests use (the fleet keeps the default rules)."""
    body = {"user": user, "data": data or {}, "channels": ["room"]}
    status, _, out = ng.request("POST", "/api/sessions", headers=JSON_KEY,
                                body=json.dumps(body).encode())
    assert status == 201, out
    return json.loads(out)


@pytest.fixture
def fleet(server_factory, redis_server, tmp_path):
    a = start_instance(server_factory, redis_server, "a")
    b = start_instance(server_factory, redis_server, "b")
    ng = Nginx(str(tmp_path), [a, b])
    try:
        yield a, b, ng.start()
    finally:
        ng.stop()


def test_sessions_span_the_instances_behind_nginx(fleet):
    a, b, ng = fleet
    assert (a.health()[1]["instance"], b.health()[1]["instance"]) == ("fleet-a", "fleet-b")
    # Both instances answer through nginx.
    names = {json.loads(ng.request("GET", "/api/health")[2])["instance"] for _ in range(6)}
    assert names == {"fleet-a", "fleet-b"}
    # A session made by a request that one instance served is read, by the admin and by
    # its owner, and deleted by requests that the other instance served.
    for attempt in range(10):
        status, out, made_on = ng.served("POST", "/api/sessions", headers=JSON_KEY,
                                         body=b'{"user": "fleet1", "data": {"n": 1}}')
        assert status == 201, out
        made = json.loads(out)
        sid, tok = made["id"], made["token"]
        read_on = set()
        for _ in range(4):
            status, out, on = ng.served("GET", f"/api/sessions/{sid}", headers=KEY)
            assert status == 200 and json.loads(out)["data"] == {"n": 1}, out
            status, out, on2 = ng.served("GET", "/api/session",
                                         headers={"Authorization": f"Bearer {tok}"})
            assert status == 200 and json.loads(out)["id"] == sid, out
            read_on |= {on, on2}
        assert read_on == {a, b}
        status, _, deleted_on = ng.served("DELETE", f"/api/sessions/{sid}", headers=KEY)
        assert status == 204
        if deleted_on is not made_on:
            break
    else:
        raise AssertionError("nginx never sent a delete to the other instance")
    for s in (a, b):
        assert s.request("GET", f"/api/sessions/{sid}", headers=KEY)[0] == 404
        assert s.request("GET", "/api/session",
                         headers={"Authorization": f"Bearer {tok}"})[0] == 401


async def event_of(ws, kind, user, timeout=5):
    """The next join or leave event of user (alice sees her own join first)."""
    while True:
        m = await next_push(ws, timeout=timeout, want=(kind,))
        if m["user"] == user:
            return m


async def message_with(ws, data, timeout=5):
    """The next channel message carrying data (earlier ones, such as a client's own copy
    of what it published before, are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        m = await next_push(ws, timeout=max(0.01, deadline - time.monotonic()))
        if m["data"] == data:
            return m


def test_websockets_span_the_instances_behind_nginx(fleet):
    a, b, ng = fleet
    alice, bob = create(ng, "alice"), create(ng, "bob")

    def members():
        status, _, out = ng.request("GET", "/api/channels/room/presence", headers=KEY)
        assert status == 200, out
        return sorted(m["user"] for m in json.loads(out)["members"])

    async def go():
        wa = await websockets.connect(f"ws://127.0.0.1:{ng.port}/ws?token={alice['token']}")
        # Whichever instance nginx chose for alice, bob goes to the other one.
        pid = await worker_of(wa, "alice")
        here = a if pid in children_of(a.pid) else b
        assert pid in children_of(here.pid)
        there = b if here is a else a
        wb = await websockets.connect(f"ws://127.0.0.1:{there.port}/ws?token={bob['token']}")
        assert (await op(wa, op="subscribe", channel="room", id=1)) == {"op": "ok", "id": 1}
        assert (await op(wb, op="subscribe", channel="room", id=2)) == {"op": "ok", "id": 2}
        assert (await event_of(wa, "join", "bob"))["channel"] == "room"
        r = await op(wa, op="presence", channel="room")
        assert sorted(m["user"] for m in r["members"]) == ["alice", "bob"]
        assert members() == ["alice", "bob"]
        # Publishes cross the instances both ways, and the API's through nginx reach both.
        await op(wb, op="publish", channel="room", data={"text": "from bob"})
        assert (await message_with(wa, {"text": "from bob"}))["from"] == "bob"
        await op(wa, op="publish", channel="room", data={"text": "from alice"})
        assert (await message_with(wb, {"text": "from alice"}))["from"] == "alice"
        status, _, out = ng.request("POST", "/api/channels/room/publish", headers=JSON_KEY,
                                    body=b'{"data": "from the api"}')
        assert status == 202, out
        for ws in (wa, wb):
            await message_with(ws, "from the api")
        # Bob leaves on his instance: alice sees it on hers.
        await wb.close()
        assert (await event_of(wa, "leave", "bob"))["channel"] == "room"
        assert members() == ["alice"]
        await wa.close()

    run(go(), timeout=30)


def test_stopping_one_instance_through_nginx_loses_no_request(fleet):
    a, b, ng = fleet
    tokens = [create(ng, f"reader{i}")["token"] for i in range(4)]
    stopping = threading.Event()
    done = []  # (monotonic time, method, status or the error)

    def client(i):
        c, n = ng.conn(), 0
        while not stopping.is_set():
            n += 1
            if n % 2:
                method, path, body = "GET", "/api/session", None
                headers = {"Authorization": f"Bearer {tokens[i]}"}
            else:
                method, path, headers = "POST", "/api/sessions", JSON_KEY
                body = json.dumps({"user": f"load{i}.{n}", "data": {"n": n}}).encode()
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                r.read()
                done.append((time.monotonic(), method, r.status))
            except (OSError, http.client.HTTPException) as e:
                done.append((time.monotonic(), method, repr(e)))
                c.close()
                c = ng.conn()
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    try:
        a_addr = f"127.0.0.1:{a.port}"
        wait_for(lambda: len(done) > 200 and
                 sum(a_addr in line for line in ng.log_lines()) > 50,
                 timeout=20, what="load on both instances")
        # A slow request in flight on a keeps its drain going for a while, as a busy
        # instance's would: new connections must not wait on it meanwhile.
        slow = a.conn()
        slow.request("GET", "/debug/sleep?ms=1500")
        time.sleep(0.2)
        t_stop = time.monotonic()
        a.signal(signal.SIGTERM)
        r = slow.getresponse()
        assert (r.status, r.getheader("Connection")) == (200, "close")
        slow.close()
        assert a.wait_exit(15) == 0
        t_gone = time.monotonic()
        at_exit = len(done)
        wait_for(lambda: len(done) > at_exit + 300, timeout=20, what="requests after the stop")
    finally:
        stopping.set()
        for t in threads:
            t.join()
    failed = [d for d in done if not (isinstance(d[2], int) and 200 <= d[2] < 300)]
    during = sum(t_stop <= d[0] < t_gone for d in done)
    after = {m for t, m, _ in done if t >= t_gone}
    summary = f"{len(done)} requests, {during} during the drain, {len(failed)} failed"
    assert failed == [], f"{summary}: {failed[:10]}\n" + "\n".join(ng.log_lines()[-20:])
    assert during > 20 and after == {"GET", "POST"}, summary
    # nginx did meet the stopped instance: a request that a refused went on to b.
    retried = f"upstream=127.0.0.1:{a.port}, 127.0.0.1:{b.port} "
    assert any(retried in line for line in ng.log_lines()), summary
    assert b.health()[0] == 200
