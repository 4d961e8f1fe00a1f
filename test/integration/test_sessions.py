"""The session API on the embedded store: every endpoint, every error path, limits,
expiry, visibility across workers, and durability across kill -9 and restarts."""
import os
import re
import signal
import threading
import time

from conftest import AUTH, JSON, KEY, alive, call, create, keyed, wait_for


def error_code(body):
    return body["error"]["code"]


def test_create_get_and_shapes(server_factory):
    s = keyed(server_factory)
    t0 = int(time.time())
    status, h, body = create(s, "alice@example.com", {"cart": [1, 2], "n": 1}, ttl=600)
    assert status == 201
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", body["id"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body["token"])
    assert h["Location"] == f"/api/sessions/{body['id']}"
    assert h["ETag"] == '"1"'
    assert body["user"] == "alice@example.com"
    assert body["data"] == {"cart": [1, 2], "n": 1}
    assert body["version"] == 1
    assert t0 <= body["created_at"] <= t0 + 2
    # expires_at is rounded up: the session lives at least its whole ttl
    assert body["created_at"] + 600 <= body["expires_at"] <= body["created_at"] + 601
    status, h, got = call(s, "GET", f"/api/sessions/{body['id']}")
    assert status == 200 and h["ETag"] == '"1"'
    assert "token" not in got
    assert {k: got[k] for k in ("id", "user", "data", "created_at", "expires_at", "version")} \
        == {k: body[k] for k in ("id", "user", "data", "created_at", "expires_at", "version")}
    # Ids and tokens are random, not sequential.
    other = create(s, "alice@example.com")[2]
    assert other["id"] != body["id"] and other["token"] != body["token"]
    assert other["data"] == {}
    assert other["expires_at"] - other["created_at"] in (3600, 3601)   # session_ttl default


def test_patch_is_a_merge_patch_with_versions(server_factory):
    s = keyed(server_factory)
    sid = create(s, data={"a": 1, "b": {"c": 2, "d": 3}, "e": [1]})[2]["id"]
    status, h, body = call(s, "PATCH", f"/api/sessions/{sid}",
                           {"data": {"a": None, "b": {"c": 9}, "e": [2, 3], "f": "x"}})
    assert status == 200
    assert body["data"] == {"b": {"c": 9, "d": 3}, "e": [2, 3], "f": "x"}
    assert body["version"] == 2 and h["ETag"] == '"2"'
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"g": 1}},
                           headers={"If-Match": '"1"'})
    assert status == 412 and error_code(body) == "precondition_failed"
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"g": 1}},
                           headers={"If-Match": '"2"'})
    assert status == 200 and body["version"] == 3 and body["data"]["g"] == 1
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", {"ttl": 50})
    assert status == 200 and body["ttl"] == 50
    assert body["expires_at"] - int(time.time()) <= 51


def test_touch_extends_expiry(server_factory):
    s = keyed(server_factory)
    created = create(s, ttl=100)[2]
    time.sleep(1.1)
    status, _, body = call(s, "POST", f"/api/sessions/{created['id']}/touch")
    assert status == 200
    assert body["expires_at"] > created["expires_at"]
    assert body["version"] == created["version"]   # a touch changes no data


def test_delete_and_users(server_factory):
    s = keyed(server_factory)
    ids = [create(s, "bob")[2]["id"] for _ in range(3)]
    create(s, "carol")
    status, _, body = call(s, "GET", "/api/users/bob/sessions")
    assert status == 200 and body["user"] == "bob"
    assert sorted(x["id"] for x in body["sessions"]) == sorted(ids)
    created = [x["created_at"] for x in body["sessions"]]
    assert created == sorted(created)                      # oldest first (to the second)
    assert all("token" not in x for x in body["sessions"])
    assert call(s, "DELETE", f"/api/sessions/{ids[0]}")[0] == 204
    assert call(s, "GET", f"/api/sessions/{ids[0]}")[0] == 404
    assert call(s, "DELETE", f"/api/sessions/{ids[0]}")[0] == 404
    assert len(call(s, "GET", "/api/users/bob/sessions")[2]["sessions"]) == 2
    assert call(s, "DELETE", "/api/users/bob/sessions")[0] == 204
    assert call(s, "GET", "/api/users/bob/sessions")[2]["sessions"] == []
    assert len(call(s, "GET", "/api/users/carol/sessions")[2]["sessions"]) == 1


def test_own_session_by_token(server_factory):
    s = keyed(server_factory, "session_rolling on")
    created = create(s, "dave", {"x": 1}, ttl=100)[2]
    tok = {"Authorization": f"Bearer {created['token']}"}
    time.sleep(1.1)
    status, body = s.get_json("/api/session", headers=tok)
    assert status == 200 and body["id"] == created["id"] and "token" not in body
    assert body["expires_at"] > created["expires_at"]          # rolling
    assert s.request("GET", "/api/session")[0] == 401
    bad = {"Authorization": "Bearer " + "A" * 43}
    assert s.request("GET", "/api/session", headers=bad)[0] == 401
    # The API key is not a session token, and a token is not the API key.
    assert s.request("GET", "/api/session", headers=AUTH)[0] == 401
    assert s.request("GET", f"/api/sessions/{created['id']}", headers=tok)[0] == 401
    assert s.request("DELETE", "/api/session", headers=tok)[0] == 204
    assert s.request("GET", "/api/session", headers=tok)[0] == 401
    assert call(s, "GET", f"/api/sessions/{created['id']}")[0] == 404


def test_api_key_is_required_when_configured(server_factory):
    s = keyed(server_factory)
    status, h, body = s.request("GET", "/api/users/u1/sessions")
    assert status == 401 and h["WWW-Authenticate"] == "Bearer"
    status, _, _ = s.request("GET", "/api/users/u1/sessions",
                             headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert "no api_key" not in s.log()


def test_without_api_key_loopback_is_admin_and_a_warning_is_logged(server):
    status, _, body = server.request("POST", "/api/sessions", body=b'{"user": "u"}',
                                     headers=JSON)
    assert status == 201
    assert "no api_key is configured" in server.log()


def test_input_errors_write_nothing(server_factory):
    s = keyed(server_factory, "session_max_bytes 64")
    cases = [
        (dict(raw=b'{"user": "u1"}', headers={"Content-Type": "text/plain"}), 415, None),
        (dict(raw=b'{"user": "u1",}'), 400, "byte"),
        (dict(raw=b'[1,2]'), 400, "object"),
        (dict(raw=b'{"user": "bad user"}'), 400, '"user"'),
        (dict(raw=b'{"user": ""}'), 400, '"user"'),
        (dict(raw=b'{"user": "' + b"u" * 129 + b'"}'), 400, '"user"'),
        (dict(raw=b'{"user": "u1", "data": [1]}'), 400, '"data"'),
        (dict(raw=b'{"user": "u1", "ttl": 0}'), 400, '"ttl"'),
        (dict(raw=b'{"user": "u1", "ttl": 99999999999}'), 400, '"ttl"'),
        (dict(raw=b'{"user": "u1", "ttl": "60"}'), 400, '"ttl"'),
        (dict(raw=b'{"user": "u1", "extra": 1}'), 400, '"extra"'),
        (dict(raw=b'{"user": "u1", "data": {"k": "' + b"x" * 100 + b'"}}'), 413, None),
    ]
    for kw, status, word in cases:
        got, _, body = call(s, "POST", "/api/sessions", **kw)
        assert got == status, (kw, got, body)
        if word:
            assert word in body["error"]["message"], (kw, body)
    assert call(s, "GET", "/api/users/u1/sessions")[2]["sessions"] == []
    # Malformed JSON names the byte offset of the problem.
    _, _, body = call(s, "POST", "/api/sessions", raw=b'{"user": "u1",}')
    assert re.search(r"at byte \d+", body["error"]["message"])
    # A POST without a length is 411.
    from conftest import raw_exchange
    resp = raw_exchange(s.port, b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 411 ")
    # Patches are validated the same way.
    sid = create(s)[2]["id"]
    assert call(s, "PATCH", f"/api/sessions/{sid}", {"data": [1]})[0] == 400
    assert call(s, "PATCH", f"/api/sessions/{sid}", {})[0] == 400
    assert call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"k": "y" * 100}})[0] == 413
    assert call(s, "PATCH", f"/api/sessions/{sid}", {"data": {}},
                headers={"If-Match": "banana"})[0] == 400
    assert call(s, "GET", f"/api/sessions/{sid}")[2]["version"] == 1
    assert call(s, "GET", "/api/sessions/not-an-id")[0] == 404


def test_per_user_and_total_limits(server_factory):
    s = keyed(server_factory, "max_sessions_per_user 2\nmax_sessions 5")
    assert create(s, "eve")[0] == 201
    assert create(s, "eve")[0] == 201
    status, h, body = create(s, "eve")
    assert status == 429 and error_code(body) == "too_many_sessions" and "Retry-After" in h
    for u in ("f1", "f2", "f3"):
        assert create(s, u)[0] == 201
    status, h, body = create(s, "g1")
    assert status == 503 and error_code(body) == "over_capacity" and "Retry-After" in h
    assert s.health()[1]["sessions"] == {"active": 5, "max": 5}


def test_per_user_limit_holds_under_concurrent_creates(server_factory):
    s = keyed(server_factory, "max_sessions_per_user 5")
    results = []

    def burst():
        for _ in range(10):
            results.append(create(s, "racer")[0])

    threads = [threading.Thread(target=burst) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(201) == 5 and results.count(429) == 55
    assert len(call(s, "GET", "/api/users/racer/sessions")[2]["sessions"]) == 5


def test_expiry(server_factory):
    s = keyed(server_factory)
    # Times are whole seconds: a ttl of 2 lives between 1 and 2 seconds.
    sid = create(s, "short", ttl=2)[2]["id"]
    keep = create(s, "short", ttl=100)[2]["id"]
    assert call(s, "GET", f"/api/sessions/{sid}")[0] == 200
    time.sleep(3.1)
    assert call(s, "GET", f"/api/sessions/{sid}")[0] == 404
    assert [x["id"] for x in call(s, "GET", "/api/users/short/sessions")[2]["sessions"]] == [keep]
    # The sweep reclaims it: the active count drops without any read of the session.
    wait_for(lambda: s.health()[1]["sessions"]["active"] == 1, timeout=5, what="the sweep")


def test_visible_across_workers(server_factory):
    s = keyed(server_factory, workers=2)
    ids = [create(s, f"w{i}")[2]["id"] for i in range(40)]
    before = {w["pid"]: w["requests"] for w in s.health()[1]["workers"]["list"]}
    for sid in ids:   # each call is a new connection, so both workers serve some
        assert call(s, "GET", f"/api/sessions/{sid}")[0] == 200
    after = {w["pid"]: w["requests"] for w in s.health()[1]["workers"]["list"]}
    assert all(after[p] > before.get(p, 0) for p in after), (before, after)


def test_metrics_count_sessions_and_store_operations(server_factory):
    s = keyed(server_factory)
    for _ in range(3):
        create(s)
    text = s.request("GET", "/metrics")[2].decode()
    assert re.search(r"^sessiond_sessions_active 3$", text, re.M)
    n = int(re.search(r"^sessiond_store_operations_total (\d+)$", text, re.M).group(1))
    assert n >= 3
    done = int(re.search(r"^sessiond_store_operation_seconds_count (\d+)$", text, re.M).group(1))
    assert done == n                     # every call was answered, and timed
    secs = float(re.search(r"^sessiond_store_operation_seconds_sum ([0-9.]+)$", text,
                           re.M).group(1))
    assert 0 < secs < 1
    # a histogram: cumulative buckets, the last one (+Inf) holding every operation
    buckets = [(le, int(v)) for le, v in re.findall(
        r'^sessiond_store_operation_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)]
    assert buckets and buckets[-1] == ("+Inf", done), text
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[0] >= 0
    assert "# TYPE sessiond_store_operation_seconds histogram" in text
    h = s.health()[1]
    assert h["store"] == {"backend": "lmdb", "healthy": True, "circuit": "closed"}


def test_sessions_survive_a_restart(server_factory):
    s = keyed(server_factory)
    sid = create(s, "persist", {"k": "v"})[2]["id"]
    s.signal(signal.SIGTERM)
    assert s.wait_exit(12) == 0
    s.start()
    status, _, body = call(s, "GET", f"/api/sessions/{sid}")
    assert status == 200 and body["data"] == {"k": "v"}


def test_kill9_storm_loses_no_acknowledged_write(server_factory):
    s = keyed(server_factory, workers=2)
    acked, stop = [], threading.Event()

    def storm(n):
        i = 0
        while not stop.is_set():
            try:
                status, _, body = create(s, f"storm{n}", {"i": i}, timeout=5)
            except Exception:   # noqa: BLE001 - a worker died mid-request: not acknowledged
                continue
            if status == 201:
                acked.append((body["id"], body["data"]))
            i += 1

    threads = [threading.Thread(target=storm, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(8):
        time.sleep(0.3)
        pids = s.worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 50
    wait_for(lambda: s.health()[1]["workers"]["alive"] == 2, what="workers back")
    for sid, data in acked:
        status, _, body = call(s, "GET", f"/api/sessions/{sid}")
        assert status == 200 and body["data"] == data
    # Kill the whole group at once, start again: still all there.
    pids = s.worker_pids()
    os.kill(s.pid, signal.SIGKILL)
    for p in pids:
        os.kill(p, signal.SIGKILL)
    s.wait_exit(5)
    wait_for(lambda: not any(alive(p) for p in pids), what="the group to die")
    s.start()
    for sid, data in acked:
        assert call(s, "GET", f"/api/sessions/{sid}")[2]["data"] == data


def test_bad_store_path_is_a_startup_error(server_factory, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = server_factory(conf=f"store_path {blocker}/sub/s.db", start=False)
    s.start(wait=False)
    assert s.wait_exit(10) == 1
    assert "store_path" in s.log()


# ---- channels (grants) and subscribe (server-side subscriptions) ----

def test_channels_and_subscribe_are_kept_and_replaced_whole(server_factory):
    s = keyed(server_factory, "session_rolling on")
    status, h, body = call(s, "POST", "/api/sessions",
                           {"user": "gina", "channels": ["room:*", "lobby", "room:*"],
                            "subscribe": ["news", "user:gina", "news"]})
    assert status == 201
    # Duplicates go, the first occurrence keeping its place.
    assert body["channels"] == ["room:*", "lobby"]
    assert body["subscribe"] == ["news", "user:gina"]
    sid, tok = body["id"], body["token"]
    plain = create(s, "gina")[2]
    assert plain["channels"] == [] and plain["subscribe"] == []
    nulls = call(s, "POST", "/api/sessions", {"user": "gina", "channels": None,
                                              "subscribe": []})[2]
    assert nulls["channels"] == [] and nulls["subscribe"] == []

    # Every session response carries them.
    got = call(s, "GET", f"/api/sessions/{sid}")[2]
    assert got["channels"] == ["room:*", "lobby"] and got["subscribe"] == ["news", "user:gina"]
    listed = {x["id"]: (x["channels"], x["subscribe"])
              for x in call(s, "GET", "/api/users/gina/sessions")[2]["sessions"]}
    assert listed == {sid: (["room:*", "lobby"], ["news", "user:gina"]),
                      plain["id"]: ([], []), nulls["id"]: ([], [])}
    own = s.get_json("/api/session", headers={"Authorization": f"Bearer {tok}"})[1]
    assert own["channels"] == ["room:*", "lobby"] and own["subscribe"] == ["news", "user:gina"]
    touched = call(s, "POST", f"/api/sessions/{sid}/touch")[2]
    assert touched["channels"] == ["room:*", "lobby"] and touched["version"] == 1

    # PATCH replaces a list whole, leaves the other, and makes a new version.
    status, h, body = call(s, "PATCH", f"/api/sessions/{sid}", {"channels": ["a"]})
    assert status == 200 and h["ETag"] == '"2"'
    assert body["channels"] == ["a"] and body["subscribe"] == ["news", "user:gina"]
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", {"subscribe": None})
    assert status == 200 and body["version"] == 3
    assert body["channels"] == ["a"] and body["subscribe"] == []
    # The same lists again are a new version too, as any PATCH is.
    assert call(s, "PATCH", f"/api/sessions/{sid}", {"channels": ["a"]})[2]["version"] == 4
    # If-Match: a stale version changes nothing.
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}",
                           {"channels": ["b"], "subscribe": ["c"]}, headers={"If-Match": '"3"'})
    assert status == 412 and error_code(body) == "precondition_failed"
    got = call(s, "GET", f"/api/sessions/{sid}")[2]
    assert (got["version"], got["channels"], got["subscribe"]) == (4, ["a"], [])
    status, _, body = call(s, "PATCH", f"/api/sessions/{sid}",
                           {"channels": ["b"], "subscribe": ["c"], "data": {"k": 1}},
                           headers={"If-Match": '"4"'})
    assert status == 200
    assert (body["version"], body["channels"], body["subscribe"], body["data"]) == \
        (5, ["b"], ["c"], {"k": 1})
    # A data patch keeps them.
    body = call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"k": 2}})[2]
    assert body["channels"] == ["b"] and body["subscribe"] == ["c"]
    body = call(s, "PATCH", f"/api/sessions/{sid}", {"channels": [], "subscribe": []})[2]
    assert body["channels"] == [] and body["subscribe"] == [] and body["data"] == {"k": 2}
    assert call(s, "GET", f"/api/sessions/{sid}")[2]["channels"] == []


LONGEST_PATTERN = "p" * 127 + "*"   # 128 bytes: the longest prefix grant


def test_channels_and_subscribe_bounds(server_factory):
    s = keyed(server_factory)
    most = [f"c{i}" for i in range(64)]
    status, _, body = call(s, "POST", "/api/sessions",
                           {"user": "hal", "channels": most, "subscribe": most})
    assert status == 201 and body["channels"] == most and body["subscribe"] == most
    body = call(s, "POST", "/api/sessions",
                {"user": "hal", "channels": ["*", LONGEST_PATTERN, "n" * 128, "a:b.c@d-e_f"],
                 "subscribe": ["n" * 128, "user:hal"]})[2]
    assert body["channels"] == ["*", LONGEST_PATTERN, "n" * 128, "a:b.c@d-e_f"]
    # 65 entries with a repeat are still 65 entries.
    assert call(s, "POST", "/api/sessions",
                {"user": "hal", "channels": most + ["c0"]})[0] == 400


BAD_GRANTS = [
    ({"channels": [f"c{i}" for i in range(65)]}, '"channels"'),
    ({"subscribe": [f"c{i}" for i in range(65)]}, '"subscribe"'),
    ({"channels": ["ok", "bad char"]}, '"channels"[1]'),
    ({"channels": ["a*b"]}, '"channels"[0]'),
    ({"channels": ["**"]}, '"channels"[0]'),
    ({"channels": [""]}, '"channels"[0]'),
    ({"channels": ["n" * 129]}, '"channels"[0]'),
    ({"channels": ["p" * 128 + "*"]}, '"channels"[0]'),
    ({"channels": ["\u00e9t\u00e9"]}, '"channels"[0]'),
    ({"channels": ["ok", 7]}, '"channels"[1]'),
    ({"channels": [["x"]]}, '"channels"[0]'),
    ({"channels": "room:1"}, '"channels"'),
    ({"channels": {"room:1": True}}, '"channels"'),
    ({"subscribe": ["room:*"]}, '"subscribe"[0]'),
    ({"subscribe": ["*"]}, '"subscribe"[0]'),
    ({"subscribe": ["a", None]}, '"subscribe"[1]'),
    ({"subscribe": "news"}, '"subscribe"'),
    ({"channels": ["fine"], "subscribe": [1]}, '"subscribe"[0]'),
]


def test_bad_channels_or_subscribe_are_400_and_write_nothing(server_factory):
    s = keyed(server_factory)
    for extra, word in BAD_GRANTS:
        status, _, body = call(s, "POST", "/api/sessions", {"user": "ivy", **extra})
        assert status == 400 and error_code(body) == "bad_request", (extra, body)
        assert word in body["error"]["message"], (extra, body)
    assert call(s, "GET", "/api/users/ivy/sessions")[2]["sessions"] == []
    sid = call(s, "POST", "/api/sessions", {"user": "ivy", "channels": ["keep"]})[2]["id"]
    for extra, word in BAD_GRANTS:
        status, _, body = call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"x": 1}, **extra})
        assert status == 400 and word in body["error"]["message"], (extra, body)
    got = call(s, "GET", f"/api/sessions/{sid}")[2]
    assert (got["version"], got["channels"], got["subscribe"], got["data"]) == \
        (1, ["keep"], [], {})


def test_a_bad_body_is_told_what_is_wrong_as_a_websocket_message_is(server_factory):
    # The same words as for a WebSocket message (common/json_in.c), "The body" for "A message".
    s = keyed(server_factory)
    cases = [
        (b'{"user":"a","user":"b"}', "Invalid JSON at byte 18: duplicate object key near '\"user\"'."),
        (b'{"user":"a"}\x00', "Invalid JSON at byte 12: a NUL byte."),
        (b'{"user":"a\\u0000"}', "Invalid JSON at byte 17: \\u0000 is not allowed in a string."),
        (b'["user"]', "The body must be a JSON object, not an array."),
        (b'"alice"', "The body must be a JSON object, not a string."),
        (b'', "The body must be a JSON object, not empty."),
    ]
    for raw, want in cases:
        status, _, body = call(s, "POST", "/api/sessions", raw=raw)
        assert status == 400 and body["error"]["message"] == want, (raw, body)
    assert call(s, "GET", "/api/users/a/sessions")[2]["sessions"] == []  # nothing written
