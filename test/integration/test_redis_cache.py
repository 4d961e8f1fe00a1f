"""redis_cache_sessions: each worker keeps the sessions it read while Redis tracks them
(CLIENT TRACKING, REDIRECT to a subscriber of __redis__:invalidate). A session changed or
deleted through any instance, or in Redis itself, is refused by every worker of every
instance within the documented bound (100 ms, sessiond.conf(5)); a cache whose
invalidations may have been lost is never served from."""
import json
import shutil
import time

import pytest

from conftest import JSON

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")

BOUND = 0.1     # REDIS_CACHE_BOUND, as documented
GETS = 40       # new connections each: both workers get some


def cached(server_factory, redis_server, conf="redis_cache_sessions 1000\n", **kw):
    return server_factory(conf=f"store redis\nredis_url {redis_server.url}\n"
                               f"redis_timeout 500ms\n{conf}", **kw)


def create(s, user="c1", data=None):
    body = json.dumps({"user": user, "data": data or {"n": 0}}).encode()
    status, _, out = s.request("POST", "/api/sessions", body=body, headers=JSON)
    assert status == 201
    return json.loads(out)


def hmgets(r):
    return r.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)


def statuses(s, sid, n=GETS):
    return [s.request("GET", f"/api/sessions/{sid}")[0] for _ in range(n)]


def warm(s, sid, r):
    """GET sid until every worker answers it from its cache: Redis sees no more reads."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = hmgets(r)
        assert statuses(s, sid) == [200] * GETS
        if hmgets(r) == before:
            return
    pytest.fail("the cache never took over: every GET still reads Redis")


def subscribers(r):
    return [c for c in r.client_list() if int(c.get("sub", 0)) > 0]


@pytest.fixture
def rc(redis_server):
    import redis
    return redis.Redis(port=redis_server.port)


def test_gets_come_from_the_cache_and_a_delete_elsewhere_is_refused_within_the_bound(
        server_factory, redis_server, rc):
    a = cached(server_factory, redis_server)
    b = cached(server_factory, redis_server)
    sid = create(a)["id"]
    warm(b, sid, rc)
    assert a.request("DELETE", f"/api/sessions/{sid}")[0] == 204
    time.sleep(BOUND)
    assert statuses(b, sid) == [404] * GETS


def test_a_patch_elsewhere_is_seen_within_the_bound(server_factory, redis_server, rc):
    a = cached(server_factory, redis_server)
    b = cached(server_factory, redis_server)
    sid = create(a)["id"]
    warm(b, sid, rc)
    assert a.request("PATCH", f"/api/sessions/{sid}", headers=JSON,
                     body=b'{"data": {"n": 1}}')[0] == 200
    time.sleep(BOUND)
    for _ in range(GETS):
        status, body = b.get_json(f"/api/sessions/{sid}")
        assert status == 200 and body["data"] == {"n": 1} and body["version"] == 2


def test_a_delete_in_redis_itself_is_refused(server_factory, redis_server, rc):
    s = cached(server_factory, redis_server)
    sid = create(s)["id"]
    warm(s, sid, rc)
    rc.delete(f"sessiond:s:{sid}")
    time.sleep(BOUND)
    assert statuses(s, sid) == [404] * GETS


def test_a_worker_reads_its_own_writes_at_once(server_factory, redis_server, rc):
    s = cached(server_factory, redis_server, workers=1)
    sid = create(s)["id"]
    warm(s, sid, rc)
    for n in range(1, 21):
        assert s.request("PATCH", f"/api/sessions/{sid}", headers=JSON,
                         body=json.dumps({"data": {"n": n}}).encode())[0] == 200
        assert s.get_json(f"/api/sessions/{sid}")[1]["data"] == {"n": n}
    assert s.request("DELETE", f"/api/sessions/{sid}")[0] == 204
    assert s.request("GET", f"/api/sessions/{sid}")[0] == 404


def test_a_lost_invalidation_connection_empties_the_cache(server_factory, redis_server, rc):
    """Killed, the subscriber misses what changes until it is back (RESP2 has no notice of
    a broken redirect): nothing cached before may be served after."""
    s = cached(server_factory, redis_server)
    sid = create(s)["id"]
    warm(s, sid, rc)
    subs = subscribers(rc)
    assert subs
    for c in subs:
        rc.client_kill_filter(_id=c["id"])
    # Redis has no one to tell: this delete's invalidation is lost.
    rc.delete(f"sessiond:s:{sid}")
    # Only once the subscribers are back (and answer PINGs again) could a hit be served.
    deadline = time.monotonic() + 5
    while len(subscribers(rc)) < len(subs) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(subscribers(rc)) == len(subs)
    time.sleep(2 * BOUND)
    assert statuses(s, sid) == [404] * GETS


def test_without_the_directive_nothing_is_cached(server_factory, redis_server, rc):
    s = cached(server_factory, redis_server, conf="")
    sid = create(s)["id"]
    assert statuses(s, sid, 5) == [200] * 5
    before = hmgets(rc)
    assert statuses(s, sid, 10) == [200] * 10
    assert hmgets(rc) - before == 10
    assert not [c for c in rc.client_list() if "tracking" in c.get("flags", "")
                or "t" in c.get("flags", "")]
