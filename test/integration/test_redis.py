"""Sessions on Redis: two instances sharing one Redis, limits across them, and a Redis
outage that degrades service visibly and recovers by itself."""
import json
import re
import shutil
import threading
import time

import pytest

from conftest import JSON, Redis, free_port, next_push, op, run, url, wait_for, worker_of

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


def on_redis(server_factory, redis_server, conf="", **kw):
    return server_factory(conf=f"store redis\nredis_url {redis_server.url}\n"
                               f"redis_timeout 500ms\n{conf}", **kw)


def create(s, user="u1", data=None):
    body = json.dumps({"user": user, "data": data or {}}).encode()
    status, _, out = s.request("POST", "/api/sessions", body=body, headers=JSON)
    return status, (json.loads(out) if out else None)


def test_api_on_redis(server_factory, redis_server):
    s = on_redis(server_factory, redis_server)
    assert s.health()[1]["store"] == {"backend": "redis", "healthy": True, "circuit": "closed"}
    status, body = create(s, "r1", {"a": 1})
    assert status == 201
    sid, tok = body["id"], body["token"]
    assert s.get_json(f"/api/sessions/{sid}")[1]["data"] == {"a": 1}
    status, h, out = s.request("PATCH", f"/api/sessions/{sid}", headers=JSON,
                               body=b'{"data": {"b": 2}}')
    assert status == 200 and json.loads(out)["data"] == {"a": 1, "b": 2}
    assert s.get_json("/api/session", headers={"Authorization": f"Bearer {tok}"})[0] == 200
    # Redis expires the keys itself.
    import redis
    r = redis.Redis(port=redis_server.port)
    ttl = r.ttl(f"sessiond:s:{sid}")
    assert 3500 < ttl <= 3601
    assert s.request("DELETE", f"/api/sessions/{sid}")[0] == 204
    assert s.request("GET", f"/api/sessions/{sid}")[0] == 404


def test_two_instances_share_sessions_and_limits(server_factory, redis_server):
    a = on_redis(server_factory, redis_server, "max_sessions_per_user 4")
    b = on_redis(server_factory, redis_server, "max_sessions_per_user 4")
    assert a.port != b.port
    status, body = create(a, "shared", {"x": 1})
    sid = body["id"]
    assert b.get_json(f"/api/sessions/{sid}")[1]["data"] == {"x": 1}
    assert b.request("PATCH", f"/api/sessions/{sid}", headers=JSON,
                     body=b'{"data": {"y": 2}}')[0] == 200
    assert a.get_json(f"/api/sessions/{sid}")[1]["data"] == {"x": 1, "y": 2}
    assert a.request("DELETE", f"/api/sessions/{sid}")[0] == 204
    assert b.request("GET", f"/api/sessions/{sid}")[0] == 404
    # The per-user limit holds across both instances under concurrent creates.
    results = []

    def burst(s):
        for _ in range(10):
            results.append(create(s, "racer")[0])

    threads = [threading.Thread(target=burst, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(201) == 4 and results.count(429) == 36


def api(s, method, path, body=None, headers=None):
    h = dict(JSON, **(headers or {}))
    data = json.dumps(body).encode() if body is not None else None
    status, hdrs, out = s.request(method, path, body=data, headers=h)
    return status, hdrs, (json.loads(out) if out else None)


def test_channels_and_subscribe_on_redis(server_factory, redis_server):
    a = on_redis(server_factory, redis_server)
    b = on_redis(server_factory, redis_server)
    status, _, body = api(a, "POST", "/api/sessions",
                          {"user": "rg", "channels": ["room:*", "room:*", "x"],
                           "subscribe": ["news"]})
    assert status == 201
    assert body["channels"] == ["room:*", "x"] and body["subscribe"] == ["news"]
    sid, tok = body["id"], body["token"]
    # The other instance reads them, by id, by token and in the user's list.
    got = api(b, "GET", f"/api/sessions/{sid}")[2]
    assert got["channels"] == ["room:*", "x"] and got["subscribe"] == ["news"]
    own = b.get_json("/api/session", headers={"Authorization": f"Bearer {tok}"})[1]
    assert own["channels"] == ["room:*", "x"] and own["subscribe"] == ["news"]
    listed = api(b, "GET", "/api/users/rg/sessions")[2]["sessions"]
    assert [(x["channels"], x["subscribe"]) for x in listed] == [(["room:*", "x"], ["news"])]
    # PATCH on one instance, seen on the other; each is a new version.
    status, h, body = api(b, "PATCH", f"/api/sessions/{sid}", {"subscribe": ["a", "b"]})
    assert status == 200 and h["ETag"] == '"2"'
    assert body["channels"] == ["room:*", "x"] and body["subscribe"] == ["a", "b"]
    status, _, body = api(a, "PATCH", f"/api/sessions/{sid}", {"channels": None},
                          headers={"If-Match": '"1"'})
    assert status == 412
    status, _, body = api(a, "PATCH", f"/api/sessions/{sid}",
                          {"channels": None, "data": {"k": 1}}, headers={"If-Match": '"2"'})
    assert status == 200 and body["version"] == 3
    assert body["channels"] == [] and body["subscribe"] == ["a", "b"] and body["data"] == {"k": 1}
    got = api(b, "GET", f"/api/sessions/{sid}")[2]
    assert (got["version"], got["channels"], got["subscribe"]) == (3, [], ["a", "b"])
    # Stored as the engine's header says: sub holds the array, and none is no field.
    import redis
    r = redis.Redis(port=redis_server.port)
    assert r.hget(f"sessiond:s:{sid}", "sub") == b'["a","b"]'
    assert not r.hexists(f"sessiond:s:{sid}", "ch")
    # A session written before the fields existed reads as none.
    r.hdel(f"sessiond:s:{sid}", "sub")
    got = api(a, "GET", f"/api/sessions/{sid}")[2]
    assert got["channels"] == [] and got["subscribe"] == [] and got["data"] == {"k": 1}
    # Validation is the API's, whatever the engine.
    status, _, body = api(a, "POST", "/api/sessions", {"user": "rg", "subscribe": ["r:*"]})
    assert status == 400 and '"subscribe"[0]' in body["error"]["message"]
    status, _, body = api(a, "PATCH", f"/api/sessions/{sid}",
                          {"channels": [f"c{i}" for i in range(65)]})
    assert status == 400 and '"channels"' in body["error"]["message"]
    assert api(a, "GET", f"/api/sessions/{sid}")[2]["version"] == 3


def test_redis_outage_degrades_fast_and_recovers(server_factory, redis_server):
    s = on_redis(server_factory, redis_server)
    assert create(s)[0] == 201
    pids = s.worker_pids()
    redis_server.stop()
    # Within a few failures the circuit opens: answers are fast 503s.
    wait_for(lambda: s.health()[1]["store"]["circuit"] == "open", timeout=10,
             what="the circuit to open")
    status, h = s.health()
    assert status == 503 and h["status"] == "degraded" and h["store"]["healthy"] is False
    t0 = time.monotonic()
    status, body = create(s)
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    assert time.monotonic() - t0 < 0.1
    # Redis comes back on the same port: service recovers by itself within 2 s.
    redis_server.start()
    t0 = time.monotonic()
    wait_for(lambda: create(s)[0] == 201, timeout=5, what="recovery")
    assert time.monotonic() - t0 < 2.5
    wait_for(lambda: s.health()[0] == 200, timeout=3, what="healthy again")
    assert s.worker_pids() == pids                 # no worker restarted
    assert s.health()[1]["workers"]["restarts"] == 0


def test_redis_down_at_start_is_not_fatal(server_factory, tmp_path):
    port = free_port()
    s = server_factory(conf=f"store redis\nredis_url redis://127.0.0.1:{port}/0\n"
                            "redis_timeout 300ms", start=False)
    s.start(wait=False)
    wait_for(lambda: s.health()[1]["status"] == "degraded", what="degraded health")
    assert create(s)[0] == 503
    r = Redis(tmp_path, port).start()
    try:
        wait_for(lambda: create(s)[0] == 201, timeout=8, what="sessions once Redis is up")
    finally:
        r.stop()


# ---- WebSockets across instances ----

def test_websockets_across_instances_and_a_redis_restart(server_factory, redis_server):
    import asyncio
    import websockets
    from websockets.exceptions import ConnectionClosed

    a = on_redis(server_factory, redis_server)
    b = on_redis(server_factory, redis_server)
    sa, sb = create(a, "alice")[1], create(b, "bob")[1]

    async def publish_reaches(pub, sub, data, timeout=5):
        await op(pub, op="publish", channel="room", data=data)
        assert (await next_push(pub, timeout=timeout))["data"] == data  # its own copy
        got = await next_push(sub, timeout=timeout)
        assert got["data"] == data, got
        return True

    async def go():
        ws_a = await websockets.connect(url(a, sa["token"]))
        ws_b = await websockets.connect(url(b, sb["token"]))
        await op(ws_a, op="subscribe", channel="room")
        await op(ws_b, op="subscribe", channel="room")
        # a client of one instance reaches the other's, both ways, and the API too
        assert await publish_reaches(ws_b, ws_a, {"from": "b"})
        assert await publish_reaches(ws_a, ws_b, {"from": "a"})
        status, _, _ = b.request("POST", "/api/channels/room/publish",
                                 body=json.dumps({"data": "api"}).encode(), headers=JSON)
        assert status == 202
        assert (await next_push(ws_a))["data"] == "api"
        assert (await next_push(ws_b))["data"] == "api"
        # ending a session on one instance closes its sockets on the other
        sa2 = create(a, "alice")[1]
        ws_a2 = await websockets.connect(url(a, sa2["token"]))
        status, _, _ = b.request("DELETE", f"/api/sessions/{sa2['id']}")
        assert status == 204
        with pytest.raises(ConnectionClosed) as e:
            while True:
                await asyncio.wait_for(ws_a2.recv(), 3)
        assert e.value.rcvd.code == 4001
        assert (await op(ws_a, op="ping"))["op"] == "pong"  # another session's socket stays
        # Redis restarts: both instances resubscribe by themselves, and delivery resumes
        redis_server.stop()
        await asyncio.sleep(0.3)
        # what is published meanwhile reaches this instance only, and the loss is counted
        await op(ws_b, op="publish", channel="room", data="lost")
        assert (await next_push(ws_b))["data"] == "lost"

        def dropped():
            text = b.request("GET", "/metrics")[2].decode()
            return int(re.search(r"^sessiond_pubsub_dropped_total (\d+)$", text, re.M).group(1))
        wait_for(lambda: dropped() >= 1, timeout=3, what="the lost publish counted")
        redis_server.start()
        deadline = time.monotonic() + 10
        n = 0
        while True:
            n += 1
            try:
                if await publish_reaches(ws_b, ws_a, {"n": n}, timeout=0.5):
                    break
            except asyncio.TimeoutError:
                assert time.monotonic() < deadline, "delivery did not resume after Redis restarted"
        await ws_a.close()
        await ws_b.close()

    run(go(), timeout=40)


def test_presence_and_connection_limits_span_instances(server_factory, redis_server):
    import asyncio
    import os
    import signal
    import websockets
    from websockets.exceptions import InvalidStatusCode
    from conftest import children_of

    a = on_redis(server_factory, redis_server, "max_connections_per_user 2")
    b = on_redis(server_factory, redis_server, "max_connections_per_user 2")
    ta, tb = create(a, "ann")[1]["token"], create(b, "ben")[1]["token"]

    def members(s):
        status, _, out = s.request("GET", "/api/channels/hall/presence")
        assert status == 200, out
        return sorted(m["user"] for m in json.loads(out)["members"])

    async def go():
        wa = await websockets.connect(url(a, ta))
        wb = await websockets.connect(url(b, tb))
        await op(wa, op="subscribe", channel="hall")
        await op(wb, op="subscribe", channel="hall")
        assert members(a) == members(b) == ["ann", "ben"]
        r = await op(wa, op="presence", channel="hall")
        assert sorted(m["user"] for m in r["members"]) == ["ann", "ben"]
        # ben holds one socket on b; one more on a is his second, a third anywhere is refused
        wb2 = await websockets.connect(url(a, tb))
        for s in (a, b):
            with pytest.raises(InvalidStatusCode) as e:
                async with websockets.connect(url(s, tb)):
                    pass
            assert e.value.status_code == 429
        await wb2.close()
        await asyncio.sleep(0.2)
        wb3 = await websockets.connect(url(b, tb))  # the place came free
        await wb3.close()
        # Instance a dies at once (no drain, no goodbye): its lease lapses, and then its
        # members leave everyone's presence and its places under the limit come free.
        pids = [a.pid] + children_of(a.pid)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        a.proc.wait()
        await wb.close()

    run(go(), timeout=30)

    async def after():
        ws = await websockets.connect(url(b, tb))
        await op(ws, op="subscribe", channel="hall")
        t0 = time.monotonic()
        wait_for(lambda: members(b) == ["ben"], timeout=10,
                 what=f"the dead instance's member gone (now {members(b)})")
        assert time.monotonic() - t0 < 8  # the lease is 6 s
        # and ann's place is free again: b admits two of her sockets
        s2 = [await websockets.connect(url(b, ta)) for _ in range(2)]
        for w in s2 + [ws]:
            await w.close()

    run(after(), timeout=30)


def test_a_killed_workers_members_leave_redis_presence(server_factory, redis_server):
    import os
    import signal
    import websockets

    s = on_redis(server_factory, redis_server, "max_connections_per_user 100", workers=2)
    users = [f"w{i}" for i in range(6)]
    toks = {u: create(s, u)[1]["token"] for u in users}

    def members():
        status, _, out = s.request("GET", "/api/channels/room/presence")
        return sorted(m["user"] for m in json.loads(out)["members"]) if status == 200 else None

    async def go():
        conns = {u: await websockets.connect(url(s, toks[u])) for u in users}
        where = {u: await worker_of(ws, u) for u, ws in conns.items()}
        assert len(set(where.values())) == 2
        for ws in conns.values():
            await op(ws, op="subscribe", channel="room")
        assert members() == users
        victim = where[users[0]]
        os.kill(victim, signal.SIGKILL)
        alive = sorted(u for u in users if where[u] != victim)
        t0 = time.monotonic()
        wait_for(lambda: members() == alive, timeout=10, what="the killed worker's members gone")
        # its siblings end its lease as soon as they see its slot change (each second)
        assert time.monotonic() - t0 < 2.5
        for u, ws in conns.items():
            if where[u] != victim:
                await ws.close()

    run(go(), timeout=30)


def test_subscribe_is_answered_once_redis_holds_the_membership(server_factory, redis_server):
    # The "ok" promises that a presence asked on any instance lists the connection: with
    # Redis stopped, the subscription is made here but not answered until Redis has it.
    import asyncio
    import os
    import signal
    import websockets

    a = on_redis(server_factory, redis_server, workers=1)
    b = on_redis(server_factory, redis_server, workers=1)
    tb = create(b, "ben")[1]["token"]

    async def go():
        async with websockets.connect(url(b, tb)) as wb:
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                await wb.send(json.dumps({"op": "subscribe", "channel": "hall", "id": 7}))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(wb.recv(), 0.3)
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            reply = json.loads(await asyncio.wait_for(wb.recv(), 2))
            assert (reply["op"], reply["id"]) == ("ok", 7)
            status, _, out = a.request("GET", "/api/channels/hall/presence")
            assert status == 200
            assert [m["user"] for m in json.loads(out)["members"]] == ["ben"]

    run(go(), timeout=15)


def test_every_key_lands_in_the_database_of_redis_url(server_factory, redis_server):
    # redis_url names database 3: the sessions, the channels' roster and presence are all
    # kept there, and nothing in the default database 0.
    import redis
    import websockets

    s = server_factory(conf=f"store redis\nredis_url redis://127.0.0.1:{redis_server.port}/3\n"
                            "redis_timeout 500ms\n")
    db0 = redis.Redis(port=redis_server.port, db=0, socket_timeout=2)
    db3 = redis.Redis(port=redis_server.port, db=3, socket_timeout=2)
    status, dee = create(s, "dee", {"n": 1})
    assert status == 201, dee
    assert create(s, "dan")[0] == 201

    async def go():
        async with websockets.connect(url(s, dee["token"])) as ws:
            assert (await op(ws, op="subscribe", channel="db3"))["op"] == "ok"
            status, _, out = s.request("POST", "/api/channels/db3/publish",
                                       body=json.dumps({"data": "api"}).encode(), headers=JSON)
            assert status == 202, out
            assert (await next_push(ws))["data"] == "api"
            r = await op(ws, op="presence", channel="db3")
            assert [m["user"] for m in r["members"]] == ["dee"]
            status, _, out = s.request("GET", "/api/channels/db3/presence")
            assert status == 200 and [m["user"] for m in json.loads(out)["members"]] == ["dee"]
            # asked while the connection holds its membership, so that its keys exist
            assert db0.dbsize() == 0, f"keys in database 0: {sorted(db0.keys())}"
            assert db3.dbsize() > 0

    run(go(), timeout=20)


# ---- a stalled Redis, and one restarted empty (issue 14) ----

STALL_OPS = ["session", "presence", "subscribe", "publish", "ws_open"]


@pytest.mark.parametrize("what", STALL_OPS)
def test_a_stalled_redis_delays_no_request_past_its_timeout(server_factory, redis_server, what):
    # Each op is the first to meet the stall on its worker's connections, so that its
    # answer can come only from the deadline's hard disconnect.
    import asyncio
    import os
    import signal
    import websockets
    from websockets.exceptions import InvalidStatusCode

    s = on_redis(server_factory, redis_server, workers=1)
    sess = create(s, "ann")[1]

    async def attempt(ws):
        if what == "session":
            return s.request("GET", f"/api/sessions/{sess['id']}")[0]
        if what == "presence":
            return s.request("GET", "/api/channels/c/presence")[0]
        if what == "publish":
            return s.request("POST", "/api/channels/c/publish", body=b'{"data": 1}',
                             headers=JSON)[0]
        if what == "subscribe":
            return (await asyncio.wait_for(op(ws, op="subscribe", channel="d"), 10))["op"]
        try:
            async with websockets.connect(url(s, sess["token"]), open_timeout=10):
                return 101
        except InvalidStatusCode as e:
            return e.status_code

    async def go():
        ws = await websockets.connect(url(s, sess["token"]))
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            got = await attempt(ws)
            took = time.monotonic() - t0
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert took < 1.5, f"{what} answered after {took:.2f} s"
        # the store's own answer is 503; presence and limits fall back to the instance
        assert got == {"session": 503, "ws_open": 503, "presence": 200, "publish": 202,
                       "subscribe": "ok"}[what]
        deadline = time.monotonic() + 5
        while await attempt(ws) not in (200, 202, 101, "ok"):
            assert time.monotonic() < deadline, f"{what} did not recover"
            await asyncio.sleep(0.1)
        await ws.close()

    run(go(), timeout=30)


def _presence_conns(s, channel="hall"):
    status, _, out = s.request("GET", f"/api/channels/{channel}/presence")
    assert status == 200, out
    return sorted(m["conn"] for m in json.loads(out)["members"])


def test_the_roster_is_written_back_when_redis_comes_back_empty(server_factory, redis_server):
    # a holds the sockets; b has none, so that b's presence and limits come from Redis.
    import asyncio
    import websockets
    from websockets.exceptions import InvalidStatusCode

    a = on_redis(server_factory, redis_server, "max_connections_per_user 2")
    b = on_redis(server_factory, redis_server, "max_connections_per_user 2")
    ta = create(a, "ann")[1]["token"]

    async def go():
        socks = [await websockets.connect(url(a, ta)) for _ in range(2)]
        for w in socks:
            await op(w, op="subscribe", channel="hall")
        before = _presence_conns(b)
        assert len(before) == 2
        redis_server.stop()
        redis_server.start()  # the same port, and empty
        deadline = time.monotonic() + 2
        while _presence_conns(b) != before:
            assert time.monotonic() < deadline, f"presence is {_presence_conns(b)}"
            await asyncio.sleep(0.05)
        # the sessions went with Redis: a new one for ann, and her third socket is refused
        wait_for(lambda: create(b, "ann")[0] == 201, timeout=5, what="the store back")
        tok = create(b, "ann")[1]["token"]
        with pytest.raises(InvalidStatusCode) as e:
            async with websockets.connect(url(b, tok)):
                pass
        assert e.value.status_code == 429
        for w in socks:
            await w.close()

    run(go(), timeout=30)


def test_a_socket_closed_during_a_stall_leaves_no_ghost(server_factory, redis_server):
    import asyncio
    import os
    import signal
    import websockets

    from websockets.exceptions import InvalidStatusCode

    a = on_redis(server_factory, redis_server, "max_connections_per_user 2", workers=1)
    b = on_redis(server_factory, redis_server, "max_connections_per_user 2", workers=1)
    ta = create(a, "ann")[1]["token"]

    async def go():
        socks = [await websockets.connect(url(a, ta)) for _ in range(2)]
        for w in socks:
            await op(w, op="subscribe", channel="hall")
        assert len(_presence_conns(b)) == 2
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(1.6)  # a's lease renewal has timed out: no connection now
            await socks[0].close()
            await asyncio.sleep(0.2)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 2
        while len(_presence_conns(b)) != 1:
            assert time.monotonic() < deadline, f"presence is {_presence_conns(b)}"
            await asyncio.sleep(0.05)
        # ann's place came free (b's store may take a moment: its circuit opened too)
        while True:
            try:
                w = await websockets.connect(url(b, ta))
                break
            except InvalidStatusCode as e:
                assert e.status_code == 503 and time.monotonic() < deadline + 3, e
                await asyncio.sleep(0.1)
        await w.close()
        await socks[1].close()

    run(go(), timeout=30)
