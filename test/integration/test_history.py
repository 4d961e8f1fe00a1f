"""Channel history and recovery on the embedded store (API.md, "History and recovery"):
offsets with no gap across workers, the epoch, recovery with since, the history endpoint,
trimming, kill -9 of everything, and what store redis says of it for now."""
import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import websockets

from conftest import BIN, call, children_of, next_push, op, run, url, wait_for, worker_of

NS = "namespace chat subscribe=any publish=any history=100 history_ttl=1h\n" \
     "namespace tiny subscribe=any publish=any history=3\n"


def publish(s, channel, data):
    status, _, body = call(s, "POST", f"/api/channels/{channel}/publish", {"data": data})
    assert status == 202, body
    return body


def token(s, user="u1"):
    status, _, body = call(s, "POST", "/api/sessions", {"user": user})
    assert status == 201, body
    return body["token"]


def history(s, channel, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    return call(s, "GET", f"/api/channels/{channel}/history" + (f"?{qs}" if qs else ""))


def test_offsets_epoch_and_the_history_endpoint(server_factory):
    s = server_factory(conf=NS)
    assert [publish(s, "chat:a", i)["offset"] for i in range(3)] == [1, 2, 3]
    assert publish(s, "chat:b", "x")["offset"] == 1  # per channel
    assert "offset" not in publish(s, "room", 1)      # no history in default
    status, _, h = history(s, "chat:a")
    assert status == 200 and h["channel"] == "chat:a" and h["offset"] == 3
    assert len(h["epoch"]) == 16
    assert [(m["offset"], m["data"]) for m in h["messages"]] == [(1, 0), (2, 1), (3, 2)]
    assert all("from" not in m and abs(m["ts"] - time.time()) < 60 for m in h["messages"])
    status, _, h = history(s, "chat:a", since=1, limit=1)
    assert [m["offset"] for m in h["messages"]] == [2] and h["offset"] == 3
    assert history(s, "room")[0] == 404
    assert history(s, "chat:a", limit=0)[0] == 400
    assert history(s, "chat:a", limit=1001)[0] == 400


def test_messages_carry_offsets_and_a_subscribe_says_where_it_starts(server_factory):
    s = server_factory(conf=NS)
    publish(s, "chat:r", "before")

    async def go():
        async with websockets.connect(url(s, token(s))) as ws:
            r = await op(ws, op="subscribe", channel="chat:r", id=1)
            assert r["op"] == "ok" and r["offset"] == 1 and len(r["epoch"]) == 16, r
            assert "recovered" not in r
            assert (await op(ws, op="publish", channel="chat:r", data="mine"))["op"] == "ok"
            m = await next_push(ws)
            assert m["data"] == "mine" and m["offset"] == 2 and m["from"] == "u1", m
            publish(s, "chat:r", "api")
            m = await next_push(ws)
            assert m["data"] == "api" and m["offset"] == 3 and "from" not in m
    run(go())


def test_recovery_replays_what_was_missed_in_order_then_live(server_factory):
    s = server_factory(conf=NS)
    tok = token(s)

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            r = await op(ws, op="subscribe", channel="chat:x")
            epoch, seen = r["epoch"], r["offset"]
            publish(s, "chat:x", "a")
            seen = (await next_push(ws))["offset"]
        for d in ("b", "c", "d"):  # while away
            publish(s, "chat:x", d)
        async with websockets.connect(url(s, tok)) as ws:
            r = await op(ws, op="subscribe", channel="chat:x",
                         since={"offset": seen, "epoch": epoch}, id=7)
            assert r == {"op": "ok", "id": 7, "recovered": True, "offset": 4, "epoch": epoch}, r
            got = [await next_push(ws) for _ in range(3)]
            assert [(m["offset"], m["data"]) for m in got] == [(2, "b"), (3, "c"), (4, "d")]
            publish(s, "chat:x", "e")
            assert (await next_push(ws))["offset"] == 5
            # nothing after the top: recovered, nothing replayed
            async with websockets.connect(url(s, tok)) as again:
                r = await op(again, op="subscribe", channel="chat:x",
                             since={"offset": 5, "epoch": epoch})
                assert r["recovered"] is True and r["offset"] == 5
                with pytest.raises(asyncio.TimeoutError):
                    await next_push(again, timeout=0.3)
    run(go())


def test_recovery_fails_when_the_window_or_the_epoch_does_not_hold(server_factory):
    s = server_factory(conf=NS)
    tok = token(s)
    for i in range(10):
        publish(s, "tiny:t", i)  # history=3 keeps 8, 9, 10
    epoch = history(s, "tiny:t")[2]["epoch"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            r = await op(ws, op="subscribe", channel="tiny:t", since={"offset": 2, "epoch": epoch})
            assert r["recovered"] is False and r["offset"] == 10, r
            with pytest.raises(asyncio.TimeoutError):
                await next_push(ws, timeout=0.3)  # nothing replayed
            await op(ws, op="unsubscribe", channel="tiny:t")
            r = await op(ws, op="subscribe", channel="tiny:t", since={"offset": 7, "epoch": epoch})
            assert r["recovered"] is True
            assert [(await next_push(ws))["offset"] for _ in range(3)] == [8, 9, 10]
            await op(ws, op="unsubscribe", channel="tiny:t")
            r = await op(ws, op="subscribe", channel="tiny:t",
                         since={"offset": 9, "epoch": "0123456789abcdef"})
            assert r["recovered"] is False and r["epoch"] == epoch
            r = await op(ws, op="subscribe", channel="tiny:u", since={"offset": "x"})
            assert r["op"] == "error" and r["error"]["code"] == "bad_request"
    run(go())


def test_publishers_on_both_workers_reach_every_socket_once_in_order(server_factory):
    s = server_factory(conf=NS, workers=2)
    n = 60

    async def go():
        socks, where = [], {}
        while len(set(where.values())) < 2:
            ws = await websockets.connect(url(s, token(s, f"u{len(socks)}")))
            where[len(socks)] = await worker_of(ws)
            socks.append(ws)
            assert len(socks) < 40
        for ws in socks:
            assert (await op(ws, op="subscribe", channel="chat:race"))["op"] == "ok"
        # one publisher on each worker, racing
        pubs = [socks[min(i for i in where if where[i] == p)] for p in set(where.values())]
        await asyncio.gather(*(
            asyncio.gather(*(p.send(json.dumps({"op": "publish", "channel": "chat:race",
                                                "data": [k, i]})) for i in range(n)))
            for k, p in enumerate(pubs)))
        for ws in socks:
            offs = []
            while len(offs) < 2 * n:
                offs.append((await next_push(ws))["offset"])
            assert offs == list(range(1, 2 * n + 1)), offs
        for ws in socks:
            await ws.close()
    run(go(), timeout=60)


def test_kill_9_of_everything_keeps_history_and_epoch(server_factory):
    s = server_factory(conf=NS)
    for i in range(5):
        publish(s, "chat:k", i)
    before = history(s, "chat:k")[2]
    pids = children_of(s.pid) + [s.pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    s.proc.wait(10)
    s.logf.close()
    s.start()
    after = history(s, "chat:k")[2]
    assert after["epoch"] == before["epoch"] and after["messages"] == before["messages"]
    assert publish(s, "chat:k", 5)["offset"] == 6


def test_a_new_store_file_is_a_new_epoch(server_factory, tmp_path):
    s = server_factory(conf=NS + f"store_path {tmp_path}/one.db\n")
    publish(s, "chat:e", 1)
    first = history(s, "chat:e")[2]["epoch"]
    s.stop()
    os.unlink(f"{tmp_path}/one.db-history")
    s.start()
    h = history(s, "chat:e")[2]
    assert h["epoch"] != first and h["offset"] == 0 and h["messages"] == []


def test_history_with_store_redis_is_a_config_error(tmp_path):
    p = tmp_path / "r.conf"
    p.write_text("listen 127.0.0.1:1\nstore redis\nnamespace chat history=10\n")
    out = subprocess.run([BIN, "-t", "-c", str(p)], capture_output=True, text=True)
    assert out.returncode == 1 and "store lmdb only" in out.stderr + out.stdout, out
