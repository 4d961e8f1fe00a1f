"""One instance per store_path: a second sessiond on the same path (its own port and
pidfile) refuses to start and names the pid that holds it, without touching the first
one's roster, sessions or history; the lock outlives reloads (which cannot change
store_path) and dead workers, and a killed instance's leftover file blocks nobody."""
import asyncio
import os
import signal
import subprocess

import pytest
import websockets
from websockets.exceptions import InvalidStatusCode

from conftest import BIN, KEY, alive, call, children_of, create, keyed, op, run, url, wait_for

LIMIT = "max_connections_per_user 2\n"


def token_for(s, user):
    status, _, body = create(s, user)
    assert status == 201, body
    return body["token"], body["id"]


def members(s, channel):
    status, _, body = call(s, "GET", f"/api/channels/{channel}/presence")
    assert status == 200, body
    return sorted((m["user"], m["session"]) for m in body["members"])


def refused(server_factory, conf, holder):
    """Start another instance on conf's store_path: it must exit non-zero, promptly,
    saying who holds the path."""
    other = keyed(server_factory, conf, start=False)
    other.start(wait=False)
    rc = other.wait_exit(10)
    log = other.log()
    assert rc != 0, log
    assert f"is in use by pid {holder} (another sessiond instance)" in log, log
    assert "give each instance its own store_path" in log
    assert "listening on" not in log  # it stopped before its listeners
    return other


def kill_all(s):
    """SIGKILL the master and every worker, by pid, and wait until they are gone."""
    pids = children_of(s.pid) + [s.pid]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    s.wait_exit(10)
    wait_for(lambda: not any(alive(p) for p in pids), what="the killed instance to die")


def test_second_instance_on_the_same_store_path_is_refused(server_factory, tmp_path):
    conf = f"store_path {tmp_path}/shared.db\n" + LIMIT
    a = keyed(server_factory, conf)
    tok, sid = token_for(a, "u1")

    async def two_sockets_then_a_rival():
        socks = [await websockets.connect(url(a, tok)) for _ in range(2)]
        for ws in socks:
            assert (await op(ws, op="subscribe", channel="room"))["op"] == "ok"
        before = members(a, "room")
        assert before == [("u1", sid), ("u1", sid)]
        other = await asyncio.to_thread(refused, server_factory, conf, a.pid)
        # -t only reads the configuration: it is no instance, and takes no lock.
        r = subprocess.run([BIN, "-t", "-c", other.conf_path], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
        # A's roster is intact: presence still lists both sockets, and the user still
        # holds its two places under max_connections_per_user (a third is refused).
        assert members(a, "room") == before
        with pytest.raises(InvalidStatusCode) as e:
            async with websockets.connect(url(a, tok)):
                pass
        assert e.value.status_code == 429
        for ws in socks:
            await ws.close()

    run(two_sockets_then_a_rival())
    status, _, body = call(a, "GET", f"/api/sessions/{sid}")
    assert status == 200 and body["user"] == "u1"

    # A reload and a killed (respawned) worker keep the lock with A.
    old = a.worker_pids()
    a.signal(signal.SIGHUP)
    wait_for(lambda: (lambda p: len(p) == 2 and not set(p) & set(old))(a.health_pids()),
             what="the reloaded workers")
    refused(server_factory, conf, a.pid)
    victim = a.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (lambda p: len(p) == 2 and victim not in p)(a.health_pids()),
             what="a replacement worker")
    refused(server_factory, conf, a.pid)

    # Once A is killed outright, its lock file (naming a dead pid) blocks nobody.
    kill_all(a)
    assert open(f"{tmp_path}/shared.db-instance.lock").read().strip() == str(a.pid)
    b = keyed(server_factory, conf)
    assert open(f"{tmp_path}/shared.db-instance.lock").read().strip() == str(b.pid)
    status, _, body = call(b, "GET", f"/api/sessions/{sid}")
    assert status == 200 and body["user"] == "u1"


def test_single_process_mode_holds_the_lock_too(server_factory, tmp_path):
    conf = f"store_path {tmp_path}/single.db\n"
    a = keyed(server_factory, conf, env={"ENABLE_CLUSTERING": "false"}, workers=None)
    refused(server_factory, conf, a.pid)
    a.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in a.log(), what="the reload")
    refused(server_factory, conf, a.pid)


def test_with_redis_the_local_roster_is_locked(server_factory, redis_server, tmp_path):
    """Sessions live in Redis, but each instance's roster (store_path-roster) is its
    own: two instances may share the Redis, not the path."""
    shared = f"store redis\nredis_url {redis_server.url}\n"
    a = keyed(server_factory, shared + f"store_path {tmp_path}/r.db\n")
    refused(server_factory, shared + f"store_path {tmp_path}/r.db\n", a.pid)
    keyed(server_factory, shared + f"store_path {tmp_path}/r2.db\n")  # a fleet: fine


def test_a_reload_onto_another_store_path_is_refused_and_keeps_the_lock(server_factory,
                                                                      tmp_path):
    # store_path cannot change on reload (test_config_edges.py): the lock stays where it is.
    first, second = f"store_path {tmp_path}/one.db\n", f"store_path {tmp_path}/two.db\n"
    a = keyed(server_factory, first)
    old = a.worker_pids()
    a.write_conf(f'api_key "{KEY}"\n' + second, workers=2)
    a.signal(signal.SIGHUP)
    wait_for(lambda: "store_path cannot change on reload" in a.log(), what="the refusal")
    assert a.worker_pids() == old
    refused(server_factory, first, a.pid)
    keyed(server_factory, second)  # never taken: free for another instance
