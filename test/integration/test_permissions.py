"""Channel permissions (API.md, "Channels: namespaces and permissions"): the secure
default, grants, owner channels, the namespace rules, server-side subscriptions, changes
that reach live sockets on every worker and instance, and presence that shows clients
users only. Every refusal leaves the socket open."""
import asyncio
import re
import subprocess
import time

import pytest
import websockets

from conftest import BIN, Redis, call, next_push, op, run, url, worker_of

NS = """namespace user subscribe=owner publish=none
namespace public subscribe=any publish=subscribers
namespace quiet subscribe=any publish=any presence=off join_events=off
"""


@pytest.fixture(params=["lmdb", "redis"])
def closed(request, server_factory, tmp_path):
    """Servers with the built-in rules (the other tests open the default namespace), on
    the embedded store or on a Redis of the test's own."""
    redis = None
    if request.param == "redis":
        (tmp_path / "redis").mkdir()
        redis = Redis(tmp_path / "redis").start()

    def make(conf="", **kw):
        if redis:
            conf = f"store redis\nredis_url {redis.url}\n" + conf
        return server_factory(conf=conf, open_channels=False, **kw)
    yield make
    if redis:
        redis.stop()


def session(s, user="u1", **fields):
    status, _, body = call(s, "POST", "/api/sessions", {"user": user, **fields})
    assert status == 201, body
    return body


async def still_open(ws):
    """A refusal must not close the socket: it still answers a ping."""
    assert (await op(ws, op="ping"))["op"] == "pong"


def forbidden(r):
    return r["op"] == "error" and r["error"]["code"] == "forbidden"


def test_the_default_namespace_refuses_what_the_session_was_not_granted(closed):
    s = closed()
    tok = session(s)["token"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            r = await op(ws, op="subscribe", channel="room1", id=1)
            assert forbidden(r) and r["id"] == 1, r
            assert "subscribe=grant" in r["error"]["message"]
            assert forbidden(await op(ws, op="publish", channel="room1", data=1))
            assert forbidden(await op(ws, op="presence", channel="room1"))
            await still_open(ws)
    run(go())


def test_grants_allow_their_channels_and_prefixes_only(closed):
    s = closed()
    a = session(s, "alice", channels=["room:42", "chat:*"])["token"]
    b = session(s, "bob", channels=["room:42"])["token"]

    async def go():
        async with websockets.connect(url(s, a)) as wa, websockets.connect(url(s, b)) as wb:
            assert (await op(wa, op="subscribe", channel="room:42"))["op"] == "ok"
            assert (await op(wa, op="subscribe", channel="chat:x.y"))["op"] == "ok"
            assert forbidden(await op(wa, op="subscribe", channel="room:43"))
            assert forbidden(await op(wa, op="subscribe", channel="room:420"))
            assert (await op(wb, op="subscribe", channel="room:42"))["op"] == "ok"
            assert forbidden(await op(wb, op="subscribe", channel="chat:x"))
            # publish=grant: a granted publisher, heard by the other subscriber
            assert (await op(wb, op="publish", channel="room:42", data={"hi": 1}))["op"] == "ok"
            m = await next_push(wa)
            assert m["channel"] == "room:42" and m["data"] == {"hi": 1} and m["from"] == "bob"
            assert forbidden(await op(wb, op="publish", channel="chat:x", data=1))
            await still_open(wa)
            await still_open(wb)
    run(go())


def test_owner_channels_are_their_users_alone_and_api_messages_have_no_from(closed):
    s = closed(NS)
    alice = session(s, "alice")["token"]
    mallory = session(s, "mallory", channels=["*"])["token"]

    async def go():
        async with websockets.connect(url(s, alice)) as wa, \
                websockets.connect(url(s, mallory)) as wm:
            assert (await op(wa, op="subscribe", channel="user:alice"))["op"] == "ok"
            # a grant of everything does not open someone else's owner channel
            for ch in ("user:alice", "user:alice2", "user:"):
                assert forbidden(await op(wm, op="subscribe", channel=ch)), ch
            assert forbidden(await op(wm, op="presence", channel="user:alice"))
            # publish=none: the API only, even for the owner
            assert forbidden(await op(wa, op="publish", channel="user:alice", data=1))
            status, _, body = call(s, "POST", "/api/channels/user:alice/publish",
                                   {"data": {"msg": "your 2FA code is 123456"}})
            assert status == 202 and body["recipients"] == 1, body
            m = await next_push(wa)
            assert m["data"] == {"msg": "your 2FA code is 123456"} and "from" not in m, m
            with pytest.raises(asyncio.TimeoutError):
                await next_push(wm, timeout=0.5)
            await still_open(wm)
    run(go())


def test_publish_subscribers_presence_off_and_no_join_events(closed):
    s = closed(NS)
    a, b = session(s, "a")["token"], session(s, "b")["token"]

    async def go():
        async with websockets.connect(url(s, a)) as wa, websockets.connect(url(s, b)) as wb:
            assert forbidden(await op(wa, op="publish", channel="public:x", data=1))
            assert (await op(wa, op="subscribe", channel="public:x"))["op"] == "ok"
            assert (await op(wb, op="subscribe", channel="public:x"))["op"] == "ok"
            assert (await op(wa, op="publish", channel="public:x", data=2))["op"] == "ok"
            assert (await next_push(wb))["data"] == 2
            # presence=off and join_events=off
            assert (await op(wa, op="subscribe", channel="quiet:x"))["op"] == "ok"
            assert forbidden(await op(wa, op="presence", channel="quiet:x"))
            assert (await op(wb, op="subscribe", channel="quiet:x"))["op"] == "ok"
            with pytest.raises(asyncio.TimeoutError):
                await next_push(wa, timeout=0.5, want=("join", "leave"))
    run(go())


def test_client_publish_off_is_publish_none_everywhere(closed):
    s = closed(NS + "client_publish off\n")
    tok = session(s)["token"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            assert (await op(ws, op="subscribe", channel="quiet:x"))["op"] == "ok"
            r = await op(ws, op="publish", channel="quiet:x", data=1)
            assert forbidden(r) and "client_publish" in r["error"]["message"]
    run(go())


def test_presence_shows_clients_users_and_the_api_opaque_connections(closed):
    s = closed(NS)
    toks = [session(s, u)["token"] for u in ("alice", "alice", "bob")]

    async def go():
        socks = [await websockets.connect(url(s, t)) for t in toks]
        try:
            for ws in socks:
                assert (await op(ws, op="subscribe", channel="public:room"))["op"] == "ok"
            r = await op(socks[0], op="presence", channel="public:room")
            assert r["op"] == "ok" and r["members"] == [{"user": "alice"}, {"user": "bob"}], r
            status, _, body = call(s, "GET", "/api/channels/public:room/presence")
            assert status == 200 and len(body["members"]) == 3, body
            conns = {m["conn"] for m in body["members"]}
            assert len(conns) == 3
            for m in body["members"]:
                assert set(m) == {"user", "session", "conn"}
                # 64 bits of a keyed mix: no slot.pid.count any more
                assert re.fullmatch(r"[0-9a-f]{16}", m["conn"]), m
        finally:
            for ws in socks:
                await ws.close()
    run(go())


def test_server_side_subscriptions_need_no_op_and_no_grant(closed):
    s = closed("namespace news subscribe=none publish=none\n")
    tok = session(s, "u1", subscribe=["news:today", "alerts"])["token"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            got = {(await next_push(ws, want=("subscribed",)))["channel"] for _ in range(2)}
            assert got == {"news:today", "alerts"}
            status, _, body = call(s, "POST", "/api/channels/news:today/publish", {"data": 7})
            assert status == 202 and body["recipients"] == 1, body
            assert (await next_push(ws))["data"] == 7
            # a server-side subscription counts as a grant (publish=grant in default)
            assert (await op(ws, op="publish", channel="alerts", data=8))["op"] == "ok"
            assert forbidden(await op(ws, op="publish", channel="news:today", data=9))
    run(go())


def patch(s, sid, **fields):
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", fields)
    assert status == 200, body
    return body


def test_a_patch_reaches_every_socket_of_the_session_on_every_worker(closed):
    # one session's sockets are opened until each worker holds one: more than the
    # default two per user when the kernel hands the first ones to the same worker
    s = closed("max_connections_per_user 40\n")
    body = session(s, "u1", channels=["room:*"])
    tok, sid = body["token"], body["id"]
    other = session(s, "u2", channels=["room:*"])["token"]

    async def go():
        socks, where = [], set()
        while len(where) < 2:  # one socket of the session on each worker
            ws = await websockets.connect(url(s, tok))
            socks.append(ws)
            where.add(await worker_of(ws))
            assert len(socks) < 40, "the connections all went to one worker"
        async with websockets.connect(url(s, other)) as pub:
            for ws in socks:
                assert (await op(ws, op="subscribe", channel="room:1"))["op"] == "ok"
            t0 = time.monotonic()
            patch(s, sid, channels=["lobby"], subscribe=["room:2"])
            for ws in socks:
                u = await next_push(ws, timeout=2, want=("unsubscribed",))
                assert u == {"op": "unsubscribed", "channel": "room:1"}, u
                sub = await next_push(ws, timeout=2, want=("subscribed",))
                assert sub == {"op": "subscribed", "channel": "room:2"}, sub
            assert time.monotonic() - t0 < 1.0
            # a revoked grant stops delivery at once, and the client may not rejoin
            assert (await op(pub, op="subscribe", channel="room:1"))["op"] == "ok"
            assert (await op(pub, op="publish", channel="room:1", data="late"))["op"] == "ok"
            assert (await op(pub, op="publish", channel="room:2", data="new"))["op"] == "ok"
            for ws in socks:
                assert (await next_push(ws, timeout=2))["data"] == "new"
                assert forbidden(await op(ws, op="subscribe", channel="room:1"))
                assert (await op(ws, op="subscribe", channel="lobby"))["op"] == "ok"
        for ws in socks:
            await ws.close()
    run(go())


def test_get_and_if_match_cover_the_grants(closed):
    s = closed()
    body = session(s, "u1", channels=["a", "b:*"], subscribe=["c"])
    status, headers, got = call(s, "GET", f"/api/sessions/{body['id']}")
    assert status == 200 and got["channels"] == ["a", "b:*"] and got["subscribe"] == ["c"]
    status, _, _ = call(s, "PATCH", f"/api/sessions/{body['id']}", {"channels": []},
                        headers={"If-Match": '"999"'})
    assert status == 412
    status, _, got = call(s, "GET", f"/api/sessions/{body['id']}")
    assert got["channels"] == ["a", "b:*"]


def test_a_patch_on_one_instance_reaches_a_socket_on_another(server_factory, redis_server):
    conf = f"store redis\nredis_url {redis_server.url}\n"
    a = server_factory(conf=conf, open_channels=False)
    b = server_factory(conf=conf, open_channels=False)
    body = session(a, "u1", channels=["room:1"])

    async def go():
        async with websockets.connect(url(b, body["token"])) as ws:
            assert (await op(ws, op="subscribe", channel="room:1"))["op"] == "ok"
            t0 = time.monotonic()
            patch(a, body["id"], channels=[])
            u = await next_push(ws, timeout=2, want=("unsubscribed",))
            assert u["channel"] == "room:1" and time.monotonic() - t0 < 1.0
            status, _, r = call(a, "POST", "/api/channels/room:1/publish", {"data": 1})
            assert status == 202
            with pytest.raises(asyncio.TimeoutError):
                await next_push(ws, timeout=0.5)
    run(go())


def test_bad_namespace_lines_are_config_errors(tmp_path):
    for line, words in (("namespace user subscribe=sometimes", "subscribe"),
                        ("namespace user colour=red", "colour"),
                        ("namespace bad:name subscribe=any", "bad:name"),
                        ("namespace user history=-1", "history")):
        p = tmp_path / "bad.conf"
        p.write_text("listen 127.0.0.1:1\n" + line + "\n")
        out = subprocess.run([BIN, "-t", "-c", str(p)], capture_output=True, text=True)
        assert out.returncode == 1, (line, out)
        assert f"{p}:2:" in out.stderr + out.stdout and words in out.stderr + out.stdout, out
