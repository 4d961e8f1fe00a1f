"""WebSockets (GET /ws): authentication, channels across workers, the API's publish, and
every way a connection ends: protocol errors, limits, slow readers, missing pongs, ended
sessions, drains and killed workers. Clients are python3-websockets, and a raw socket
client where a test needs to break the protocol or stop reading."""
import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import call, create, keyed, next_push, op, run, url, wait_for, worker_of


def token_for(s, user="u1", **kw):
    status, _, body = create(s, user, **kw)
    assert status == 201, body
    return body["token"], body["id"]


# ---- a raw client, for what a library client will not do ----

def frame(opcode, payload, fin=True, rsv1=False):
    """A client's frame (masked), as bytes: several may go in one write."""
    mask = os.urandom(4)
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    if n < 126:
        h += bytes([0x80 | n])
    elif n < 65536:
        h += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        h += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Raw:
    def __init__(self, port, token, extra=b"", rcvbuf=None, behind=b""):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so that the window is small from the start
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        self.s.sendall(b"GET /ws?token=" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n" +
                       extra + b"\r\n" + behind)  # behind: frames in the request's write
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            assert chunk, head
            head += chunk
        self.head = head.decode()
        assert self.head.startswith("HTTP/1.1 101"), self.head
        self.buf = b""

    def send_frame(self, opcode, payload, fin=True, rsv1=False):
        self.s.sendall(frame(opcode, payload, fin, rsv1))

    def read_frame(self, timeout=5):
        """(opcode, payload); (None, b"") when the server closed the TCP connection."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                self.rsv1 = bool(self.buf[0] & 0x40)  # of the frame returned
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126:
                    n, off = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127:
                    n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
                if len(self.buf) >= off + n:
                    f = (self.buf[0] & 0x0F, self.buf[off:off + n])
                    self.buf = self.buf[off + n:]
                    return f
            chunk = self.s.recv(65536)
            if not chunk:
                return None, b""
            self.buf += chunk

    def close_code(self, timeout=5):
        """Read until the server's close frame; its code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            opcode, payload = self.read_frame(timeout)
            if opcode is None:
                return None
            if opcode == 8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        raise AssertionError("no close frame")

    def until_close(self, timeout=5):
        """The text messages read up to the server's close frame, and its code (None if
        the connection ended without one)."""
        texts = []
        while True:
            opcode, payload = self.read_frame(timeout)
            if opcode is None:
                return texts, None
            if opcode == 8:
                return texts, struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            if opcode == 1:
                texts.append(json.loads(payload))

    def close(self):
        self.s.close()


# ---- the handshake ----

def test_upgrade_needs_a_live_token(server_factory):
    s = keyed(server_factory)
    tok, sid = token_for(s)

    async def refused(u, headers=None):
        with pytest.raises(InvalidStatusCode) as e:
            async with websockets.connect(u, extra_headers=headers or {}):
                pass
        return e.value.status_code

    assert run(refused(url(s))) == 401
    assert run(refused(url(s, "x" * 43))) == 401
    assert run(refused(url(s, "bad"))) == 401
    assert run(refused(url(s), {"Authorization": "Bearer " + "A" * 43})) == 401
    # a plain GET, or another protocol version, is told what to speak
    status, headers, _ = s.request("GET", "/ws")
    assert status == 426 and headers["Upgrade"] == "websocket"
    status, headers, _ = s.request("GET", "/ws", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert status == 426 and headers["Sec-WebSocket-Version"] == "13"
    status, _, _ = s.request("GET", "/ws?token=" + tok, headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "short"})
    assert status == 400

    async def accepted():
        async with websockets.connect(url(s, tok)) as ws:
            assert (await op(ws, op="ping", id=7)) == {"op": "pong", "id": 7}
        async with websockets.connect(url(s), extra_headers={"Authorization": "Bearer " + tok}) as ws:
            assert (await op(ws, op="ping", id="a")) == {"op": "pong", "id": "a"}

    run(accepted())
    assert call(s, "DELETE", f"/api/sessions/{sid}")[0] == 204
    assert run(refused(url(s, tok))) == 401  # an ended session opens nothing


def test_operations_and_their_errors(server_factory):
    s = keyed(server_factory)
    tok, sid = token_for(s, "alice")

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            assert await op(ws, op="subscribe", channel="room1", id=1) == {"op": "ok", "id": 1}
            assert await op(ws, op="subscribe", channel="room1", id=2) == {"op": "ok", "id": 2}
            r = await op(ws, op="publish", channel="room1", data={"n": 19.99, "s": "é"}, id=3)
            assert r == {"op": "ok", "id": 3}
            m = await next_push(ws)
            assert m == {"op": "message", "channel": "room1", "data": {"n": 19.99, "s": "é"},
                         "from": "alice"}
            r = await op(ws, op="presence", channel="room1", id=4)
            assert r["members"] == [{"user": "alice"}]  # a client sees users only
            _, _, body = call(s, "GET", "/api/channels/room1/presence")
            assert [(x["user"], x["session"]) for x in body["members"]] == [("alice", sid)]
            for bad, code in [({"op": "subscribe", "channel": "a b"}, "bad_request"),
                              ({"op": "subscribe"}, "bad_request"),
                              ({"op": "dance", "channel": "c"}, "unknown_op"),
                              ({"channel": "c"}, "bad_request"),
                              ({"op": "publish", "channel": "c"}, "bad_request")]:
                r = await op(ws, id=9, **bad)
                assert r["op"] == "error" and r["id"] == 9 and r["error"]["code"] == code, r
            await ws.send("[1, 2]")
            assert json.loads(await ws.recv())["error"]["code"] == "bad_request"
            await ws.send("{nope")
            assert json.loads(await ws.recv())["error"]["code"] == "bad_request"
            assert await op(ws, op="unsubscribe", channel="room1", id=5) == {"op": "ok", "id": 5}
            await op(ws, op="publish", channel="room1", data=1)
            with pytest.raises(asyncio.TimeoutError):  # no longer subscribed
                await next_push(ws, timeout=0.5)
            # presence=subscribers: no longer its to ask; the API sees nobody
            assert (await op(ws, op="presence", channel="room1"))["error"]["code"] == "forbidden"
            assert call(s, "GET", "/api/channels/room1/presence")[2]["members"] == []

    run(go())


def test_malformed_messages_are_told_what_is_wrong(server_factory):
    """A message that is not a JSON object is answered bad_request with what is wrong
    and, when the JSON breaks, at which byte (as the API's 400s say it); the socket stays
    open."""
    s = keyed(server_factory)
    tok, _ = token_for(s)
    deep = "[" * 3000 + "]" * 3000
    cases = [
        ('{"op":"publish","op":"ping"}',
         "Invalid JSON at byte 20: duplicate object key near '\"op\"'."),
        ('{"op":"publish","data":{"a":1,"a":2}}',
         "Invalid JSON at byte 33: duplicate object key near '\"a\"'."),
        ("{nope", "Invalid JSON at byte 5: string or '}' expected near 'nope'."),
        ('{"op":"ping"} x', "Invalid JSON at byte 15: end of file expected near 'x'."),
        ("", "A message must be a JSON object, not empty."),
        ('{"op":"ping"\x00}', "Invalid JSON at byte 12: a NUL byte."),
        ('{"op":"ping","x":"\\u0000"}',
         "Invalid JSON at byte 25: \\u0000 is not allowed in a string."),
        (deep, "Invalid JSON at byte 2049: maximum parsing depth reached near '['."),
        ("[1, 2]", "A message must be a JSON object, not an array."),
        ('"ping"', "A message must be a JSON object, not a string."),
        ("42", "A message must be a JSON object, not a number."),
        ("4.2", "A message must be a JSON object, not a number."),
        ("true", "A message must be a JSON object, not true."),
        ("null", "A message must be a JSON object, not null."),
    ]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            for text, message in cases:
                await ws.send(text)
                r = json.loads(await ws.recv())
                assert r == {"op": "error",
                             "error": {"code": "bad_request", "message": message}}, text[:40]
            assert await op(ws, op="ping", id=1) == {"op": "pong", "id": 1}

    run(go())


def test_client_publish_off(server_factory):
    s = keyed(server_factory, "client_publish off")
    tok, _ = token_for(s)

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            await op(ws, op="subscribe", channel="news")
            r = await op(ws, op="publish", channel="news", data=1)
            assert r["error"]["code"] == "forbidden"
            st, _, body = call(s, "POST", "/api/channels/news/publish", {"data": {"v": 1}})
            assert st == 202 and body["channel"] == "news"
            assert (await next_push(ws))["data"] == {"v": 1}

    run(go())


# ---- across workers ----

def test_publish_reaches_subscribers_on_every_worker(server_factory):
    s = keyed(server_factory, "max_connections_per_user 100", workers=2)
    toks = [token_for(s, f"u{i}")[0] for i in range(12)]

    async def go():
        conns = [await websockets.connect(url(s, t)) for t in toks]
        try:
            pids = {await worker_of(ws, i) for i, ws in enumerate(conns)}
            assert pids == set(s.health_pids()), (pids, s.health_pids())
            for ws in conns:
                await op(ws, op="subscribe", channel="all")
            # from a client on one worker ...
            await op(conns[0], op="publish", channel="all", data={"from": "ws"})
            for ws in conns:
                assert (await next_push(ws))["data"] == {"from": "ws"}
            # ... and from the API, whichever worker answers it
            for i in range(4):
                st, _, body = call(s, "POST", "/api/channels/all/publish", {"data": i})
                assert st == 202, body
                for ws in conns:
                    m = await next_push(ws)
                    assert m["data"] == i and "from" not in m, m  # the API's
        finally:
            for ws in conns:
                await ws.close()

    run(go())


def test_ending_a_session_closes_its_sockets_everywhere(server_factory):
    s = keyed(server_factory, "max_connections_per_user 100", workers=2)
    tok, sid = token_for(s, "bob")
    other, _ = token_for(s, "carol")
    tok2, _ = token_for(s, "dave")

    async def go():
        mine = [await websockets.connect(url(s, tok)) for _ in range(6)]
        theirs = await websockets.connect(url(s, other))
        dave = [await websockets.connect(url(s, tok2)) for _ in range(4)]
        assert len({await worker_of(ws, i) for i, ws in enumerate(mine)}) == 2
        assert call(s, "DELETE", f"/api/sessions/{sid}")[0] == 204
        for ws in mine:
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 2)
            assert e.value.rcvd.code == 4001
        assert (await op(theirs, op="ping"))["op"] == "pong"
        # revoking every session of a user
        assert call(s, "DELETE", "/api/users/dave/sessions")[0] == 204
        for ws in dave:
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 2)
            assert e.value.rcvd.code == 4001
        await theirs.close()

    run(go())


def test_expired_session_is_closed_within_a_second_or_two(server_factory):
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s, "eve", ttl=2)

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            t0 = time.monotonic()
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    await asyncio.wait_for(ws.recv(), 6)
            assert e.value.rcvd.code == 4001
            assert time.monotonic() - t0 < 4.5

    run(go())


# ---- limits and protocol errors ----

def test_invalid_utf8_closes_1007_and_binary_1003(server_factory):
    s = keyed(server_factory)
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    r.send_frame(1, b'{"op":"ping","x":"\xc0\xaf"}')
    assert r.close_code() == 1007
    r.close()
    r = Raw(s.port, tok)
    r.send_frame(2, b"\x00\x01")
    assert r.close_code() == 1003
    r.close()


def test_oversized_message_closes_1009(server_factory):
    s = keyed(server_factory, "ws_max_message_bytes 1k")
    tok, _ = token_for(s)

    async def go():
        async with websockets.connect(url(s, tok), max_size=None) as ws:
            await ws.send(json.dumps({"op": "ping", "pad": "x" * 900}))
            assert json.loads(await ws.recv())["op"] == "pong"
            await ws.send(json.dumps({"op": "ping", "pad": "x" * 2000}))
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 1009

    run(go())


def test_rate_limit_answers_then_closes_1008(server_factory):
    s = keyed(server_factory, "ws_rate_limit 20")
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    for _ in range(30):
        r.send_frame(1, b'{"op":"ping"}')
    replies = []
    for _ in range(30):
        opcode, payload = r.read_frame()
        replies.append(json.loads(payload)["op"])
    assert replies.count("pong") == 20 and replies.count("error") == 10, replies
    for _ in range(60):  # it goes on: a second full bucket of refusals
        r.send_frame(1, b'{"op":"ping"}')
    assert r.close_code() == 1008
    r.close()


def burst(r, n, **msg):
    """n messages with ids 1..n in one write: one read for the server, in one instant."""
    r.s.sendall(b"".join(frame(1, json.dumps(dict(msg, id=i)).encode()) for i in range(1, n + 1)))


def received(r, channel, end="end"):
    """The data of the messages a raw subscriber reads, up to a message whose data is end."""
    got = []
    while True:
        opcode, payload = r.read_frame()
        assert opcode == 1, (opcode, payload)
        m = json.loads(payload)
        if m["op"] == "message" and m["channel"] == channel:
            if m["data"] == end:
                return got
            got.append(m["data"])


def assert_answered_then_closed(replies, code, n, op="ok"):
    """The first n ops took effect: their replies come first, in order, then only the
    refusals of ops that did not, then the close for the rate."""
    assert [m["op"] for m in replies[:n]] == [op] * n, replies[:n + 1]
    assert [m["id"] for m in replies[:n]] == list(range(1, n + 1))
    assert all(m["op"] == "error" and m["error"]["code"] == "rate_limited"
               for m in replies[n:]), replies[n:]
    assert code == 1008


def test_rate_limit_close_comes_after_the_replies_to_every_op_that_took_effect(server_factory):
    """250 publishes in one write at the default ws_rate_limit of 100: the 100 that went
    out are answered, in order, before the 1008, so that a client knows which to retry.
    The same for pings."""
    s = keyed(server_factory, workers=1)
    pub_tok, _ = token_for(s, "pub")
    sub_tok, _ = token_for(s, "sub")
    sub = Raw(s.port, sub_tok)
    sub.send_frame(1, b'{"op":"subscribe","channel":"burst","id":0}')
    assert json.loads(sub.read_frame()[1]) == {"op": "ok", "id": 0}
    pub = Raw(s.port, pub_tok)
    burst(pub, 250, op="publish", channel="burst", data=0)
    replies, code = pub.until_close()
    assert_answered_then_closed(replies, code, 100)
    pub.close()
    assert call(s, "POST", "/api/channels/burst/publish", {"data": "end"})[0] == 202
    assert received(sub, "burst") == [0] * 100
    sub.close()

    pinger = Raw(s.port, pub_tok)
    burst(pinger, 250, op="ping")
    replies, code = pinger.until_close()
    assert_answered_then_closed(replies, code, 100, op="pong")
    pinger.close()


def test_rate_limit_close_waits_for_the_answers_in_flight(server_factory, redis_server):
    """With history in Redis a publish is answered once Redis has numbered it: the close
    for the rate waits for those answers too."""
    s = keyed(server_factory, f"store redis\nredis_url {redis_server.url}\n"
              "namespace chat subscribe=any publish=any history=1000\n", workers=1)
    pub_tok, _ = token_for(s, "pub")
    sub_tok, _ = token_for(s, "sub")
    sub = Raw(s.port, sub_tok)
    sub.send_frame(1, b'{"op":"subscribe","channel":"chat:burst","id":0}')
    assert json.loads(sub.read_frame()[1])["op"] == "ok"
    pub = Raw(s.port, pub_tok)
    burst(pub, 250, op="publish", channel="chat:burst", data=0)
    replies, code = pub.until_close()
    # The refusals are answered at once and may overtake the answers Redis gives later;
    # every publish that went out is answered before the close all the same.
    oks = [m for m in replies if m["op"] == "ok"]
    assert [m["id"] for m in oks] == list(range(1, 101)), replies
    assert [m["offset"] for m in oks] == list(range(1, 101))
    assert all(m["error"]["code"] == "rate_limited" for m in replies if m["op"] != "ok")
    assert code == 1008
    pub.close()
    assert call(s, "POST", "/api/channels/chat:burst/publish", {"data": "end"})[0] == 202
    assert received(sub, "chat:burst") == [0] * 100
    sub.close()


def close_frame(code, reason=b""):
    return struct.pack(">H", code) + reason


@pytest.mark.parametrize("opcode,payload,fin,want", [
    pytest.param(9, b"x" * 126, True, 1002, id="a ping over 125 bytes"),
    pytest.param(10, b"x" * 126, True, 1002, id="a pong over 125 bytes"),
    pytest.param(8, close_frame(1000, b"x" * 124), True, 1002, id="a close over 125 bytes"),
    pytest.param(9, b"p", False, 1002, id="a fragmented ping"),
    pytest.param(8, b"\x03", True, 1002, id="a close of one byte"),
    pytest.param(8, close_frame(1005), True, 1002, id="close code 1005"),
    pytest.param(8, close_frame(999), True, 1002, id="close code 999"),
    pytest.param(8, close_frame(1004), True, 1002, id="close code 1004"),
    pytest.param(8, close_frame(5000), True, 1002, id="close code 5000"),
    pytest.param(8, close_frame(1000, b"\xc0\xaf"), True, 1007, id="a close reason that is not UTF-8"),
])
def test_bad_control_frames_fail_the_connection(server_factory, opcode, payload, fin, want):
    """RFC 6455 5.5: a control frame has at most 125 bytes of payload and is never
    fragmented; 5.5.1 and 7.4: a close payload is empty or a valid code and a UTF-8
    reason. Anything else fails the connection with 1002 (1007 for the UTF-8), after the
    replies to what came before it in the same write."""
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    r.s.sendall(frame(1, b'{"op":"ping","id":1}') + frame(opcode, payload, fin=fin))
    replies, code = r.until_close()
    assert (replies, code) == ([{"op": "pong", "id": 1}], want)
    r.close()


def test_good_close_frames_are_echoed(server_factory):
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s)
    for payload, want in [(b"", 1005), (close_frame(1000), 1000),
                          (close_frame(4000, "au revoir, été".encode()), 4000),
                          (close_frame(1001, b"x" * 123), 1001)]:
        r = Raw(s.port, tok)
        r.send_frame(8, payload)
        assert r.until_close() == ([], want), payload
        r.close()


def test_a_close_reason_cut_across_reads_is_still_checked(server_factory):
    """wslay checks a close reason's UTF-8 one chunk at a time and skips the first two
    bytes of every chunk as if they were the code: the whole reason is checked again."""
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    f = frame(8, close_frame(1000, b"ok\xc0\xafok"))
    r.s.sendall(f[:2 + 4 + 4])  # header, mask, the code and "ok"
    time.sleep(0.3)
    r.s.sendall(f[2 + 4 + 4:])
    assert r.until_close()[1] == 1007
    r.close()


def test_missing_pong_closes_the_connection(server_factory):
    s = keyed(server_factory, "ws_ping_interval 1s\nws_pong_timeout 1s")
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    opcode, _ = r.read_frame(timeout=3)
    assert opcode == 9  # the server's ping, which we do not answer
    t0 = time.monotonic()
    while True:
        opcode, _ = r.read_frame(timeout=5)
        if opcode is None:
            break
    assert time.monotonic() - t0 < 3
    wait_for(lambda: s.health()[1]["connections"]["websocket"] == 0, what="websocket count 0")
    r.close()
    # a client that answers pings stays
    r = Raw(s.port, tok)
    for _ in range(3):
        opcode, payload = r.read_frame(timeout=3)
        assert opcode == 9
        r.send_frame(10, payload)
    r.send_frame(1, b'{"op":"ping"}')
    opcode, payload = r.read_frame()
    assert json.loads(payload)["op"] == "pong"
    r.close()


def test_slow_reader_is_closed_and_fast_one_keeps_receiving(server_factory):
    s = keyed(server_factory, "ws_max_queue 64k", workers=1)
    slow_tok, _ = token_for(s, "slow")
    fast_tok, _ = token_for(s, "fast")
    slow = Raw(s.port, slow_tok, rcvbuf=65536)
    slow.send_frame(1, b'{"op":"subscribe","channel":"firehose"}')
    slow.read_frame()

    def slow_closed():
        text = s.request("GET", "/metrics")[2].decode()
        return int(re.search(r"^sessiond_websocket_slow_closed_total (\d+)$", text,
                             re.M).group(1))

    async def go():
        code = None
        async with websockets.connect(url(s, fast_tok), max_size=None) as fast:
            await op(fast, op="subscribe", channel="firehose")
            pad = "y" * 30000
            for i in range(400):  # 12 MB: far beyond what the kernel buffers hold
                st, _, _ = call(s, "POST", "/api/channels/firehose/publish",
                                {"data": {"i": i, "pad": pad}})
                assert st == 202
                m = await next_push(fast)
                assert m["data"]["i"] == i
                # A reader that catches up within the grace (2 s from its overflow: read
                # it as soon as it is seen, however slow this machine) finds a 1008 close
                # behind what it had.
                if code is None and i % 10 == 9 and slow_closed() == 1:
                    code = slow.close_code(timeout=5)
        return code

    assert run(go(), timeout=60) == 1008
    assert slow_closed() == 1
    slow.close()
    wait_for(lambda: s.health()[1]["connections"]["websocket"] == 0, what="no websocket left")
    # One that never reads again is reset after the grace: the server holds nothing for it.
    dead = Raw(s.port, slow_tok, rcvbuf=65536)
    dead.send_frame(1, b'{"op":"subscribe","channel":"firehose"}')
    dead.read_frame()
    for i in range(400):
        call(s, "POST", "/api/channels/firehose/publish", {"data": {"pad": "z" * 30000}})
    wait_for(lambda: s.health()[1]["connections"]["websocket"] == 0, timeout=5,
             what="the dead reader reset")
    with pytest.raises(ConnectionResetError):
        while dead.read_frame(timeout=5)[0] is not None:
            pass
    dead.close()


# ---- ends of workers and of the server ----

def test_drain_closes_websockets_with_1001(server_factory):
    s = keyed(server_factory, "ws_drain_spread 500ms", workers=2)
    toks = [token_for(s, f"d{i}")[0] for i in range(6)]

    async def go():
        conns = [await websockets.connect(url(s, t)) for t in toks]
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        for ws in conns:
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 1001
        assert time.monotonic() - t0 < 3

    run(go())
    assert s.wait_exit(12) == 0


def test_killed_worker_drops_its_clients_who_can_reconnect(server_factory):
    s = keyed(server_factory, "max_connections_per_user 100", workers=2)
    tok, _ = token_for(s)
    tok2, _ = token_for(s, "u2")

    async def go():
        conns = [await websockets.connect(url(s, tok if i % 2 else tok2)) for i in range(8)]
        where = [await worker_of(ws, i) for i, ws in enumerate(conns)]
        victim = where[0]
        os.kill(victim, signal.SIGKILL)
        for ws, pid in zip(conns, where):
            if pid == victim:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
            else:
                assert (await op(ws, op="ping"))["op"] == "pong"
        wait_for(lambda: len(s.health_pids()) == 2 and victim not in s.health_pids(),
                 what="a replacement worker")
        async with websockets.connect(url(s, tok)) as again:
            await op(again, op="subscribe", channel="back")
            st, _, body = call(s, "POST", "/api/channels/back/publish", {"data": "hi"})
            assert st == 202
            assert (await next_push(again))["data"] == "hi"
        for ws in conns:
            await ws.close()

    run(go())


def test_permessage_deflate_both_ways_and_off(server_factory):
    s = keyed(server_factory)
    tok, _ = token_for(s)
    big = {"text": "all work and no play " * 200}

    async def go():
        async with websockets.connect(url(s, tok), max_size=None) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            assert ext.startswith("permessage-deflate; server_no_context_takeover; "
                                  "client_no_context_takeover"), ext
            await op(ws, op="subscribe", channel="z")
            # the client compresses this publish; the server inflates it, then compresses
            # the push it sends back
            assert (await op(ws, op="publish", channel="z", data=big))["op"] == "ok"
            assert (await next_push(ws))["data"] == big

    run(go())
    # a zip bomb: small on the wire, far over ws_max_message_bytes once inflated
    r = Raw(s.port, tok, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert "permessage-deflate" in r.head
    import zlib
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(b'{"op":"ping","pad":"' + b"a" * (8 << 20) + b'"}') + z.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff") and len(bomb) < 64 * 1024
    r.send_frame(1, bomb[:-4], rsv1=True)
    assert r.close_code() == 1009
    r.close()

    off = keyed(server_factory, "ws_compression off")
    tok2, _ = token_for(off)

    async def plain():
        async with websockets.connect(url(off, tok2)) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            assert (await op(ws, op="ping"))["op"] == "pong"

    run(plain())


# ---- over the whole instance: presence, limits, recipients ----

def test_presence_and_events_span_workers(server_factory):
    s = keyed(server_factory, workers=2)
    users = [f"p{i}" for i in range(8)]
    toks = {u: token_for(s, u) for u in users}

    async def go():
        conns = {u: await websockets.connect(url(s, toks[u][0])) for u in users}
        where = {u: await worker_of(ws, u) for u, ws in conns.items()}
        assert len(set(where.values())) == 2
        first = conns[users[0]]
        await op(first, op="subscribe", channel="lobby")
        assert (await next_push(first, want=("join",)))["user"] == users[0]  # its own
        for u in users[1:]:
            await op(conns[u], op="subscribe", channel="lobby")
            # the first member hears every later join, whichever worker it came through
            ev = await next_push(first, want=("join", "leave"))
            assert ev == {"op": "join", "channel": "lobby", "user": u}, ev
        r = await op(conns[users[-1]], op="presence", channel="lobby")
        assert r["members"] == [{"user": u} for u in sorted(users)]
        st, _, body = call(s, "GET", "/api/channels/lobby/presence")
        assert st == 200 and sorted(m["user"] for m in body["members"]) == users
        assert {m["session"] for m in body["members"]} == {toks[u][1] for u in users}
        st, _, body = call(s, "POST", "/api/channels/lobby/publish", {"data": 1})
        assert st == 202 and body["recipients"] == len(users)
        await conns[users[1]].close()
        ev = await next_push(first, want=("leave",))
        assert ev == {"op": "leave", "channel": "lobby", "user": users[1]}, ev
        st, _, body = call(s, "GET", "/api/channels/lobby/presence")
        assert len(body["members"]) == len(users) - 1
        for u in users:
            await conns[u].close()

    run(go())


def test_no_events_beyond_presence_events_max(server_factory):
    s = keyed(server_factory, "presence_events_max 2", workers=1)
    toks = [token_for(s, f"e{i}")[0] for i in range(4)]

    async def go():
        c = [await websockets.connect(url(s, t)) for t in toks]
        for ws in c:
            await op(ws, op="subscribe", channel="big")
        # c[0] heard its own join and e1's (1 and 2 members), not e2's or e3's (3 and 4)
        assert [(await next_push(c[0], want=("join",)))["user"] for _ in range(2)] == ["e0", "e1"]
        with pytest.raises(asyncio.TimeoutError):
            await next_push(c[0], timeout=0.5, want=("join",))
        for ws in c:
            await ws.close()

    run(go())


def test_connections_per_user_over_the_instance(server_factory):
    s = keyed(server_factory, "max_connections_per_user 3", workers=2)
    tok, _ = token_for(s, "greedy")
    tok2, _ = token_for(s, "greedy")  # another session of the same user counts too

    async def go():
        held = [await websockets.connect(url(s, t)) for t in (tok, tok2, tok)]
        for _ in range(4):  # whichever worker takes the fourth, it is refused
            with pytest.raises(InvalidStatusCode) as e:
                async with websockets.connect(url(s, tok2)):
                    pass
            assert e.value.status_code == 429
        await held[0].close()
        await asyncio.sleep(0.1)
        again = await websockets.connect(url(s, tok))  # a place came free
        await again.close()
        for ws in held[1:]:
            await ws.close()

    run(go())


def test_dead_workers_members_leave(server_factory):
    s = keyed(server_factory, "max_connections_per_user 1", workers=2)
    users = [f"k{i}" for i in range(8)]
    toks = {u: token_for(s, u)[0] for u in users}

    async def go():
        conns = {u: await websockets.connect(url(s, toks[u])) for u in users}
        where = {u: await worker_of(ws, u) for u, ws in conns.items()}
        for ws in conns.values():
            await op(ws, op="subscribe", channel="room")
        victim = next(iter(where.values()))
        gone = {u for u, p in where.items() if p == victim}
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: sorted(m["user"] for m in call(s, "GET", "/api/channels/room/presence")[2]["members"])
                 == sorted(set(users) - gone), timeout=2, what="the dead worker's members gone")
        assert time.monotonic() - t0 < 2
        # and their places under max_connections_per_user are free again
        for u in gone:
            ws = await websockets.connect(url(s, toks[u]))
            await ws.close()
        for u, ws in conns.items():
            if u not in gone:
                await ws.close()

    run(go())


def test_quiet_connections_keep_their_half_received_frames(server_factory):
    """An idle connection's wslay state is freed after a second or so and made again
    when the client speaks: nothing may be lost across that, not half a frame, not the
    first fragments of a message."""
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s)
    r = Raw(s.port, tok)
    time.sleep(2.5)  # parked by now
    r.send_frame(1, b'{"op":"ping","id":1}')
    assert json.loads(r.read_frame()[1]) == {"op": "pong", "id": 1}
    # the first fragment of a message, then quiet, then the rest
    r.send_frame(1, b'{"op":"ping",', fin=False)
    time.sleep(2.5)
    r.send_frame(0, b'"id":2}')
    assert json.loads(r.read_frame()[1]) == {"op": "pong", "id": 2}
    # half a frame header, then quiet, then the rest of the frame
    mask = os.urandom(4)
    payload = b'{"op":"ping","id":3}'
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    r.s.sendall(frame[:3])
    time.sleep(2.5)
    r.s.sendall(frame[3:])
    assert json.loads(r.read_frame()[1]) == {"op": "pong", "id": 3}
    r.close()


def test_reload_moves_websockets_to_new_workers(server_factory):
    s = keyed(server_factory, "ws_drain_spread 300ms\nmax_connections_per_user 100", workers=2)
    tok, _ = token_for(s)

    async def go():
        conns = [await websockets.connect(url(s, tok)) for _ in range(4)]
        old = set(s.health_pids())
        s.signal(signal.SIGHUP)
        for ws in conns:  # the old workers say goodbye: going away, come back
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd.code == 1001
        wait_for(lambda: set(s.health_pids()).isdisjoint(old) and len(s.health_pids()) == 2,
                 what="new workers only")
        async with websockets.connect(url(s, tok)) as again:
            assert await worker_of(again, "new") not in old
            await op(again, op="subscribe", channel="r")
            st, _, body = call(s, "POST", "/api/channels/r/publish", {"data": 1})
            assert st == 202 and body["recipients"] == 1  # the old members are gone

    run(go())


NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def test_node_ws_client_compresses_both_ways(server_factory):
    """Node's ws (what most JavaScript clients use) with permessage-deflate on every
    message it sends: negotiated, inflated by us, and answered compressed."""
    import shutil
    import subprocess
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")):
        pytest.skip("Node or its ws module is not installed (scripts/install-deps installs ws "
                    "where npm is available)")
    s = keyed(server_factory)
    tok, _ = token_for(s, "nodeuser")
    out = subprocess.run([node, os.path.join(NODE_DIR, "deflate_client.js"), url(s, tok)],
                         capture_output=True, text=True, timeout=15, cwd=NODE_DIR)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, res
    assert res["extensions"].startswith("permessage-deflate"), res
    assert res["replies"] == [{"op": "ok", "id": 1}, {"op": "ok", "id": 2}], res
    assert res["message"] == {"same": True, "from": "nodeuser"}, res


@pytest.mark.parametrize("deflate", [False, True])
def test_idle_connection_then_large_messages_both_ways(server_factory, deflate):
    """An idle socket keeps nothing but its state (no input or output buffer, no wslay
    context, no zlib stream): the bytes that came with the upgrade request are still
    answered, and after each quiet spell a message near ws_max_message_bytes goes both
    ways, in pieces, compressed or not."""
    import zlib
    s = keyed(server_factory, workers=1)
    tok, _ = token_for(s)
    ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    r = Raw(s.port, tok, extra=ext, behind=frame(1, b'{"op":"ping","id":0}'))
    assert ("permessage-deflate" in r.head) == deflate
    assert json.loads(r.read_frame()[1]) == {"op": "pong", "id": 0}

    def text():
        """The next text message but presence events (its own join, among them)."""
        while True:
            opcode, payload = r.read_frame()
            assert opcode == 1, (opcode, payload[:80])
            if r.rsv1:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            msg = json.loads(payload)
            if msg["op"] not in ("join", "leave"):
                return msg

    def send(msg):
        data = json.dumps(msg).encode()
        if deflate:  # a client may send it either way; this one compresses
            z = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        f = frame(1, data, rsv1=deflate)
        for i in range(0, len(f), 7000):  # over several reads
            r.s.sendall(f[i:i + 7000])
            time.sleep(0.01)

    r.send_frame(1, b'{"op":"subscribe","channel":"big","id":1}')
    assert text() == {"op": "ok", "id": 1}
    # random, so that compression cannot make it small
    big = base64.b64encode(os.urandom(45000)).decode()
    for rnd in range(2):
        time.sleep(2.5)  # quiet: the socket parks
        send({"op": "publish", "channel": "big", "data": big, "id": 2 + rnd})
        assert text() == {"op": "ok", "id": 2 + rnd}
        got = text()
        assert got["op"] == "message" and got["data"] == big and r.rsv1 == deflate
        time.sleep(2.5)
        assert call(s, "POST", "/api/channels/big/publish", {"data": big})[0] == 202
        got = text()
        assert got["op"] == "message" and got["data"] == big and r.rsv1 == deflate
    r.send_frame(8, struct.pack(">H", 1000))
    assert r.close_code() == 1000
    r.close()
