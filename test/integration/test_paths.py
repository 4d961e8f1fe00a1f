"""Path parameters are percent-decoded before they are matched or validated (API.md,
"Conventions"): users, session ids and channel names alike; a decoded '/' stays inside
its segment; a bad escape or %00 is 400 with a message that says so."""
import websockets

from conftest import call, create, keyed, next_push, op, run, url


def test_a_user_name_with_escapes_is_the_same_user(server_factory):
    s = keyed(server_factory)
    ids = sorted(create(s, "alice")[2]["id"] for _ in range(2))
    create(s, "bob")
    for path in ("/api/users/al%69ce/sessions", "/api/users/%61%6C%69%63%65/sessions"):
        status, _, body = call(s, "GET", path)
        assert status == 200, body
        assert body["user"] == "alice"
        assert sorted(x["id"] for x in body["sessions"]) == ids
    mail = create(s, "alice@example.com")[2]["id"]
    status, _, body = call(s, "GET", "/api/users/alice%40example.com/sessions")
    assert status == 200 and body["user"] == "alice@example.com"
    assert [x["id"] for x in body["sessions"]] == [mail]
    status, _, _ = call(s, "DELETE", "/api/users/al%69ce/sessions")
    assert status == 204
    assert call(s, "GET", "/api/users/alice/sessions")[2]["sessions"] == []
    assert len(call(s, "GET", "/api/users/bob/sessions")[2]["sessions"]) == 1


def test_a_session_id_with_escapes_is_the_same_session(server_factory):
    s = keyed(server_factory)
    sid = create(s, "u1", {"a": 1})[2]["id"]
    esc = "".join(f"%{ord(c):02X}" for c in sid)  # every byte escaped
    status, _, body = call(s, "GET", f"/api/sessions/{esc}")
    assert status == 200 and body["id"] == sid
    status, _, body = call(s, "PATCH", f"/api/sessions/%{ord(sid[0]):02x}{sid[1:]}",
                           {"data": {"b": 2}})
    assert status == 200 and body["data"] == {"a": 1, "b": 2}
    assert call(s, "POST", f"/api/sessions/{esc}/touch")[0] == 200
    assert call(s, "POST", f"/api/sessions/{sid}/t%6Fuch")[0] == 200  # literal segments too
    assert call(s, "DELETE", f"/api/sessions/{esc}")[0] == 204
    assert call(s, "GET", f"/api/sessions/{sid}")[0] == 404


def test_channel_names_with_escapes(server_factory):
    s = keyed(server_factory, conf="namespace chat subscribe=any publish=any history=10")
    tok = create(s, "u1")[2]["token"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            assert (await op(ws, op="subscribe", channel="room:1", id=1))["op"] == "ok"
            assert (await op(ws, op="subscribe", channel="chat:x", id=2))["op"] == "ok"
            status, _, body = call(s, "POST", "/api/channels/room%3A1/publish", {"data": 7})
            assert status == 202, body
            assert body == {"channel": "room:1", "recipients": 1}
            m = await next_push(ws)
            assert m["channel"] == "room:1" and m["data"] == 7
            status, _, body = call(s, "GET", "/api/channels/room%3a1/presence")
            assert status == 200 and body["channel"] == "room:1"
            assert [x["user"] for x in body["members"]] == ["u1"]
            status, _, body = call(s, "POST", "/api/channels/chat%3Ax/publish", {"data": 8})
            assert status == 202 and body["channel"] == "chat:x" and body["offset"] == 1
            assert (await next_push(ws))["data"] == 8
            status, _, body = call(s, "GET", "/api/channels/chat%3Ax/history?since=0")
            assert status == 200 and body["channel"] == "chat:x"
            assert [x["data"] for x in body["messages"]] == [8]
    run(go())


def test_bad_escapes_and_encoded_slashes(server_factory):
    s = keyed(server_factory)
    for path in ("/api/users/al%6/sessions", "/api/users/al%zzce/sessions",
                 "/api/sessions/abc%", "/api/channels/%G0/presence", "/no/such/%"):
        status, _, body = call(s, "GET", path)
        assert status == 400, (path, body)
        assert body["error"]["code"] == "bad_request"
        assert "bad percent-escape" in body["error"]["message"], body
    status, _, body = call(s, "GET", "/api/users/al%00ice/sessions")
    assert status == 400 and "NUL" in body["error"]["message"], body
    # %2F is a byte of the name, which names may not hold: 400, not another route (404).
    status, _, body = call(s, "POST", "/api/channels/a%2Fb/publish", {"data": 1})
    assert status == 400 and "channel" in body["error"]["message"], body
    assert call(s, "POST", "/api/channels/a/b/publish", {"data": 1})[0] == 404
    status, _, body = call(s, "GET", "/api/users/al%2Fice/sessions")
    assert status == 400 and "user" in body["error"]["message"], body
    # Decoded names are validated as names: an escaped space is no user.
    assert call(s, "GET", "/api/users/al%20ice/sessions")[0] == 400
