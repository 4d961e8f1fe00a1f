"""The shared Redis connection: everything sessiond writes, the store's keys and the
roster's alike, lives in the database that redis_url names."""
import json
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")

JSON = {"Content-Type": "application/json"}


def test_every_key_lands_in_the_urls_database(server_factory, redis_server):
    import redis
    import websockets
    from test_ws import next_push, op, run, url

    s = server_factory(conf=f"store redis\nredis_url redis://127.0.0.1:{redis_server.port}/3\n"
                            "redis_timeout 500ms\n")
    tokens = []
    for user in ("dora", "dan"):
        status, _, out = s.request("POST", "/api/sessions", headers=JSON,
                                   body=json.dumps({"user": user, "data": {}}).encode())
        assert status == 201, out
        tokens.append(json.loads(out)["token"])

    async def go():
        ws = await websockets.connect(url(s, tokens[0]))
        await op(ws, op="subscribe", channel="db3")
        await op(ws, op="publish", channel="db3", data="hi")
        assert (await next_push(ws))["data"] == "hi"
        r = await op(ws, op="presence", channel="db3")
        assert [m["user"] for m in r["members"]] == ["dora"]
        status, _, out = s.request("GET", "/api/channels/db3/presence")
        assert status == 200 and [m["user"] for m in json.loads(out)["members"]] == ["dora"]
        db0 = redis.Redis(port=redis_server.port, db=0).dbsize()
        keys3 = redis.Redis(port=redis_server.port, db=3).keys("*")
        await ws.close()
        return db0, keys3

    db0, keys3 = run(go(), timeout=30)
    assert db0 == 0
    names = {k.decode() for k in keys3}
    assert any(k.startswith("sessiond:s:") for k in names), names
    # The roster's keys (memberships, per-user counts) sit beside the sessions.
    assert any(not k.startswith("sessiond:s:") and k not in ("sessiond:all",)
               and not k.startswith("sessiond:u:") for k in names), names
