"""/livez and /readyz: liveness never depends on the store, readiness follows the drain,
the store and (with Redis) pub/sub; the container's probe is liveness."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed")


def get(s, path, conn=None):
    if conn is None:
        status, headers, body = s.request("GET", path)
        return status, json.loads(body), headers
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, json.loads(r.read()), dict(r.getheaders())


def container_probe(s):
    env = dict(os.environ, PORT=str(s.port), HOST="127.0.0.1")
    return subprocess.run([os.path.join(ROOT, "scripts", "container-health")], env=env,
                          capture_output=True, timeout=15).returncode


def test_alive_and_ready_on_the_embedded_store(server):
    assert get(server, "/livez")[:2] == (200, {"status": "alive"})
    assert get(server, "/readyz")[:2] == (200, {"status": "ready"})
    status, _, body = server.request("HEAD", "/readyz")
    assert (status, body) == (200, b"")
    assert container_probe(server) == 0


def test_a_drain_is_not_ready_but_still_alive(server):
    ready, live = server.conn(), server.conn()
    assert get(server, "/readyz", ready)[0] == 200 and get(server, "/livez", live)[0] == 200
    slow = []
    t = threading.Thread(target=lambda: slow.append(server.request("GET", "/debug/sleep?ms=1500")))
    t.start()
    time.sleep(0.3)
    server.signal(signal.SIGTERM)
    time.sleep(0.2)
    status, body, headers = get(server, "/readyz", ready)
    assert (status, body) == (503, {"status": "draining"})
    assert headers.get("Retry-After") is not None
    assert get(server, "/livez", live)[:2] == (200, {"status": "alive"})
    t.join()
    assert slow[0][0] == 200
    assert server.wait_exit(12) == 0


@needs_redis
def test_a_redis_outage_is_not_ready_but_alive(server_factory, redis_server):
    s = server_factory(conf=f"store redis\nredis_url {redis_server.url}\nredis_timeout 500ms\n")
    wait_for(lambda: get(s, "/readyz")[0] == 200, timeout=5, what="ready on Redis")
    redis_server.stop()
    # No session call is needed for readiness to notice: pub/sub's subscriber sees the
    # connection drop, and the store's circuit follows.
    t0 = time.monotonic()
    wait_for(lambda: get(s, "/readyz")[0] == 503, timeout=3, what="not ready")
    assert time.monotonic() - t0 < 2
    status, body, _ = get(s, "/readyz")
    assert status == 503 and body["status"] in ("store_unavailable", "pubsub_unavailable"), body
    for _ in range(3):
        assert get(s, "/livez")[:2] == (200, {"status": "alive"})
    assert container_probe(s) == 0       # a Redis outage restarts no container
    redis_server.start()
    wait_for(lambda: get(s, "/readyz")[0] == 200, timeout=8, what="ready again")
    assert s.health()[1]["workers"]["restarts"] == 0


@needs_redis
def test_a_lost_subscriber_is_not_ready_while_sessions_still_work(server_factory, redis_server):
    import redis
    s = server_factory(conf=f"store redis\nredis_url {redis_server.url}\nredis_timeout 500ms\n")
    wait_for(lambda: get(s, "/readyz")[0] == 200, timeout=5, what="ready on Redis")
    r = redis.Redis(port=redis_server.port)
    # Let no new connection in, then drop only the subscribers: the store's connections
    # stay, the subscribers cannot come back.
    r.config_set("maxclients", len(r.client_list()) - len(r.client_list(_type="pubsub")))
    assert r.client_kill_filter(_type="pubsub") >= 1
    wait_for(lambda: get(s, "/readyz")[1] == {"status": "pubsub_unavailable"}, timeout=3,
             what="pubsub_unavailable")
    status, _, _ = s.request("POST", "/api/sessions", body=b'{"user":"u1"}',
                             headers={"Content-Type": "application/json"})
    assert status == 201                  # the store is fine; only the fan-out is not
    assert get(s, "/livez")[0] == 200
    r.config_set("maxclients", 10000)
    wait_for(lambda: get(s, "/readyz")[0] == 200, timeout=8, what="ready again")
