"""WebSockets across a binary upgrade (USR2): the old workers close theirs with 1001 and a
client that comes back lands on the new master's workers; with history, recovery with
since loses nothing published before, during or after; the roster (max_connections_per_user
and presence) that both masters share counts each live connection once, no ghost, no
forgotten one; and the client library (web/client.js, in Node) loses no message."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import (BIN, alive, call, children_of, create, deploy, keyed, new_master,
                      next_push, op, pidfile_pid, run, url, wait_for, worker_of)

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
FEED = "namespace feed subscribe=any publish=any history=1000\nws_drain_spread 300ms\n"


def upgradable(server_factory, tmp_path, conf=""):
    """A keyed server run from a copy of the binary in tmp_path, which deploy replaces."""
    shutil.copy(BIN, tmp_path / "sessiond-bin")
    return keyed(server_factory, conf, bin=str(tmp_path / "sessiond-bin"))


def upgrade(s):
    """USR2 to the master the pidfile names; returns (old, new) once the old has exited."""
    old = pidfile_pid(s)
    deploy(s)
    os.kill(old, signal.SIGUSR2)
    return old, finish_upgrade(s, old)


def finish_upgrade(s, old):
    new = new_master(s, old)
    wait_for(lambda: not alive(old), timeout=15, what="the old master to exit")
    return new


def token(s, user):
    status, _, body = create(s, user)
    assert status == 201, body
    return body["token"]


def presence(s, channel):
    status, _, body = call(s, "GET", f"/api/channels/{channel}/presence")
    assert status == 200, body
    return sorted((m["user"], m["conn"]) for m in body["members"])


async def closed_code(ws, timeout=10):
    """Read until the server closes ws; the close code it sent."""
    with pytest.raises(ConnectionClosed) as e:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return e.value.rcvd.code if e.value.rcvd else None


def test_websockets_are_closed_1001_and_come_back_on_a_new_worker(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    tok = token(s, "u1")

    async def go():
        ws = await websockets.connect(url(s, tok))
        before = await worker_of(ws)
        old_workers = children_of(s.pid)
        assert before in old_workers
        # The upgrade's waits block: in a thread, so that the close is read as it comes.
        upgrading = asyncio.create_task(asyncio.to_thread(upgrade, s))
        assert await closed_code(ws) == 1001  # going away: come back
        old, new = await upgrading
        assert old == s.pid and not any(alive(p) for p in [old, *old_workers])
        async with websockets.connect(url(s, tok)) as again:
            assert await worker_of(again) in children_of(new)
            assert (await op(again, op="subscribe", channel="after")) == {"op": "ok"}
            status, _, body = call(s, "POST", "/api/channels/after/publish", {"data": "hi"})
            assert status == 202 and body["recipients"] == 1, body
            m = await next_push(again)
            assert m["channel"] == "after" and m["data"] == "hi" and "from" not in m, m

    run(go())


def test_history_recovers_every_message_published_across_the_upgrade(server_factory,
                                                                      tmp_path):
    s = upgradable(server_factory, tmp_path, FEED)
    tok = token(s, "reader")
    acked, failed, stop = [], [], threading.Event()

    def publisher():  # the API, one fresh connection a request, every 10 ms
        while not stop.is_set():
            status, _, body = call(s, "POST", "/api/channels/feed:x/publish",
                                   {"data": len(acked)})
            (acked.append(body["offset"]) if status == 202 else failed.append(status))
            time.sleep(0.01)

    async def go():
        got, closes, recoveries = [], [], []
        ws = await websockets.connect(url(s, tok))
        r = await op(ws, op="subscribe", channel="feed:x")
        assert r["offset"] == 0, r  # nothing yet: every offset from 1 is the client's
        epoch = r["epoch"]
        pub = threading.Thread(target=publisher)
        pub.start()

        def upgrade_mid_stream():  # the waits block: in a thread, while ws is read
            try:
                time.sleep(0.5)
                upgrade(s)
                time.sleep(0.5)
            finally:
                stop.set()
                pub.join()
        upgrading = asyncio.create_task(asyncio.to_thread(upgrade_mid_stream))
        while not (upgrading.done() and got and got[-1] == max(acked)):
            try:
                m = await next_push(ws, timeout=0.2)
                got.append(m["offset"])
            except asyncio.TimeoutError:
                if upgrading.done():
                    await upgrading  # its failure, if it failed
            except ConnectionClosed as e:
                # The drain's 1001, perhaps again from an old worker that took the retry.
                closes.append(e.rcvd.code if e.rcvd else None)
                ws = await websockets.connect(url(s, tok))
                last = got[-1] if got else 0
                r = await op(ws, op="subscribe", channel="feed:x",
                             since={"offset": last, "epoch": epoch})
                assert r["recovered"] is True and r["epoch"] == epoch, r
                recoveries.append(last)
        await upgrading
        await ws.close()
        return got, closes, recoveries

    try:
        got, closes, recoveries = run(go(), timeout=60)
    finally:
        stop.set()
    assert failed == [] and len(acked) > 80, (failed, len(acked))
    assert sorted(acked) == list(range(1, len(acked) + 1))
    assert closes and set(closes) == {1001}, closes
    assert got == list(range(1, len(acked) + 1)), (recoveries, got)
    assert 0 < recoveries[0] < len(acked), recoveries  # the upgrade fell mid-stream


def test_the_roster_counts_each_live_connection_once(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path, "max_connections_per_user 1\n"
                   "upgrade_timeout 20s\nrestart_delay 50ms\nws_drain_spread 300ms")
    ta, tb = token(s, "alice"), token(s, "bob")

    async def over_limit(tok):
        with pytest.raises(InvalidStatusCode) as e:
            async with websockets.connect(url(s, tok)):
                pass
        return e.value.status_code

    async def go():
        a, b = await websockets.connect(url(s, ta)), await websockets.connect(url(s, tb))
        for ws in (a, b):
            await op(ws, op="subscribe", channel="room")
        held = presence(s, "room")
        assert [u for u, _ in held] == ["alice", "bob"]
        # Hold the upgrade open: the new master has prepared the roster, and its workers
        # crash at start (and are purged) until the file goes. The old connections must
        # still count: once they are closed, a roster emptied or purged under them no
        # longer shows.
        crash = tmp_path / "crash"
        crash.touch()
        old = s.pid
        deploy(s, f'SESSIOND_TEST_CRASH_FILE={crash} exec {BIN} "$@"')
        s.signal(signal.SIGUSR2)
        wait_for(lambda: s.log().count("exited with status 1") >= 2,
                 what="the new master's workers to crash")
        assert await over_limit(ta) == 429
        assert presence(s, "room") == held
        crash.unlink()
        upgrading = asyncio.create_task(asyncio.to_thread(finish_upgrade, s, old))
        assert await closed_code(a) == 1001 and await closed_code(b) == 1001
        # alice comes back at once: admitted, her old place is free
        a = await websockets.connect(url(s, ta))
        await op(a, op="subscribe", channel="room")
        new = await upgrading
        # Once the old master and its workers are gone (their slots purged), the roster
        # holds alice's new connection alone: no ghost, and not purged with the old ones.
        assert await worker_of(a) in children_of(new)
        now = presence(s, "room")
        assert [u for u, _ in now] == ["alice"] and now[0][1] != held[0][1], (held, now)
        assert await over_limit(ta) == 429
        b = await websockets.connect(url(s, tb))
        await op(b, op="subscribe", channel="room")
        both = presence(s, "room")
        assert [u for u, _ in both] == ["alice", "bob"] and both[0] == now[0], both
        r = await op(b, op="presence", channel="room")
        assert r["members"] == [{"user": "alice"}, {"user": "bob"}], r
        await asyncio.gather(a.close(), b.close())

    run(go(), timeout=60)


def test_node_client_loses_nothing_across_two_upgrades(server_factory, tmp_path):
    """client_recovery.mjs (test_client.py's): 100 library clients on a channel with
    history while the script publishes through the API; where it asks for a killed worker
    and a reload, the master is upgraded instead, twice."""
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")):
        pytest.skip("Node or its ws module is not installed (npm ci in test/integration/node)")
    shutil.copy(BIN, tmp_path / "sessiond-bin")  # no API key: the script publishes without
    s = server_factory(conf=FEED, bin=str(tmp_path / "sessiond-bin"))
    cfg = {"base": f"http://127.0.0.1:{s.port}", "channel": "feed:all", "seconds": 6,
           "tokens": [token(s, f"r{i}") for i in range(100)]}
    upgrades, errors = [], []

    def upgrading():
        try:
            upgrade(s)
        except AssertionError as e:  # a wait_for that timed out: said after the run
            errors.append(e)

    proc = subprocess.Popen([node, os.path.join(NODE_DIR, "client_recovery.mjs"),
                             json.dumps(cfg)], cwd=NODE_DIR, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = None
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if "result" in msg:
                r = msg["result"]
                break
            assert msg["event"] in ("kill", "hup"), msg
            # Answered at once, so that publishing goes on during the upgrade; the second
            # waits for the first to be over (a master refuses USR2 while its
            # predecessor drains).
            for t in upgrades:
                t.join()
            upgrades.append(threading.Thread(target=upgrading))
            upgrades[-1].start()
            proc.stdin.write("done\n")
            proc.stdin.flush()
    finally:
        for t in upgrades:
            t.join()
        proc.kill()
        stderr = proc.communicate(timeout=10)[1]
    assert r is not None and "error" not in r, (r, stderr[-2000:])
    assert errors == [] and len(upgrades) == 2 and len(s.masters) == 2, errors
    assert r["publishFailures"] == 0 and r["top"] == 300, r
    # every client reconnected at each upgrade, and recovered each time
    assert r["exact"] == 100 and r["lost"] == 0 and r["recovered"] >= 200, r
