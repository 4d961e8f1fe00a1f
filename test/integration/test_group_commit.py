"""The group commit on LMDB, durable (store_sync on): the PATCHes, touches and DELETEs that
reach a worker in the same loop iteration share one transaction, yet each request is
answered only once its change is committed, with its own answer: exactly one of
concurrent PATCHes with the same If-Match wins, a failing patch fails alone, and what a
connection sends after an answered change sees that change.

One worker, and every request written on its own connection before any answer is read,
so that the requests land in the same loop iteration (the most a test can arrange from
outside); the properties checked hold however they are grouped."""
import json
import socket
import time

import pytest

from conftest import AUTH, JSON, call, create, keyed

MAX_BYTES = 512


@pytest.fixture
def server(server_factory):
    return keyed(server_factory, f"store_sync on\nsession_max_bytes {MAX_BYTES}\n", workers=1)


def raw_request(method, path, body=None, headers=None):
    h = dict(AUTH)
    if body is not None:
        h.update(JSON)
    h.update(headers or {})
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(data)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + data


def read_response(fp):
    """One HTTP/1.1 answer from fp (a socket's makefile("rb"), read through by every answer
    of a pipeline): (status, parsed JSON body or None)."""
    status = int(fp.readline().split()[1])
    length = 0
    while (line := fp.readline().strip()) != b"":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    out = fp.read(length)
    return status, (json.loads(out) if out else None)


def at_once(s, requests):
    """Send each request on a connection of its own, all before reading any answer;
    returns the answers [(status, body)] in the order of the requests."""
    socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in requests]
    try:
        for sock, req in zip(socks, requests):
            sock.sendall(req)
        return [read_response(sock.makefile("rb")) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def patch(sid, data, version=None):
    headers = {"If-Match": f'"{version}"'} if version is not None else None
    return raw_request("PATCH", f"/api/sessions/{sid}", {"data": data}, headers)


def test_concurrent_if_match_patches_one_wins_per_version(server):
    sid = create(server, data={"w": -1})[2]["id"]
    for version in (1, 2, 3):
        got = at_once(server, [patch(sid, {"w": i}, version) for i in range(16)])
        statuses = [st for st, _ in got]
        assert statuses.count(200) == 1, statuses
        assert statuses.count(412) == 15, statuses
        winner = statuses.index(200)
        assert got[winner][1]["version"] == version + 1
        status, _, body = call(server, "GET", f"/api/sessions/{sid}")
        assert status == 200 and body["version"] == version + 1
        assert body["data"]["w"] == winner


def test_a_failing_patch_fails_alone(server):
    sid = create(server, data={"keep": 1})[2]["id"]
    good = [patch(sid, {f"k{i}": i}) for i in range(8)]
    too_big = patch(sid, {"big": "x" * MAX_BYTES})
    stale = patch(sid, {"stale": 1}, version=1000)
    not_object = raw_request("PATCH", f"/api/sessions/{sid}", {"data": 5})
    got = at_once(server, good[:4] + [too_big, stale, not_object] + good[4:])
    statuses = [st for st, _ in got]
    assert statuses == [200] * 4 + [413, 412, 400] + [200] * 4, statuses
    # each good one saw the ones before it: the versions are 2..9, each once
    assert sorted(b["version"] for st, b in got if st == 200) == list(range(2, 10))
    status, _, body = call(server, "GET", f"/api/sessions/{sid}")
    assert status == 200 and body["version"] == 9
    assert body["data"] == {"keep": 1, **{f"k{i}": i for i in range(8)}}


def test_deletes_then_get_404(server):
    doomed = [create(server, user=f"d{i}")[2]["id"] for i in range(8)]
    kept = [create(server, user=f"k{i}")[2]["id"] for i in range(4)]
    reqs = [raw_request("DELETE", f"/api/sessions/{sid}") for sid in doomed]
    reqs += [raw_request("POST", f"/api/sessions/{sid}/touch") for sid in kept]
    reqs.append(raw_request("DELETE", f"/api/sessions/{doomed[0]}"))  # twice: one 404
    statuses = [st for st, _ in at_once(server, reqs)]
    assert sorted(statuses[:8] + statuses[-1:]) == [204] * 8 + [404], statuses
    assert statuses[8:12] == [200] * 4, statuses
    for sid in doomed:
        assert call(server, "GET", f"/api/sessions/{sid}")[0] == 404
    for sid in kept:
        assert call(server, "GET", f"/api/sessions/{sid}")[0] == 200


def test_a_pipelined_read_sees_the_write_before_it(server):
    """Requests pipelined on one connection: the GET after a PATCH or a DELETE runs after
    that write is answered, so it sees it."""
    sid = create(server, data={"v": 0})[2]["id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(patch(sid, {"v": 1}) + raw_request("GET", f"/api/sessions/{sid}")
                     + raw_request("DELETE", f"/api/sessions/{sid}")
                     + raw_request("GET", f"/api/sessions/{sid}"))
        fp = sock.makefile("rb")
        first, second, third, fourth = (read_response(fp) for _ in range(4))
    assert first[0] == 200 and first[1]["version"] == 2
    assert second[0] == 200 and second[1]["data"] == {"v": 1} and second[1]["version"] == 2
    assert third[0] == 204
    assert fourth[0] == 404


def test_concurrent_touches_extend(server):
    sids = [create(server, user=f"t{i}", ttl=100)[2]["id"] for i in range(6)]
    before = {sid: call(server, "GET", f"/api/sessions/{sid}")[2]["expires_at"] for sid in sids}
    time.sleep(1.1)  # a touch runs from now, rounded up to the second: past created_at + 1
    got = at_once(server, [raw_request("POST", f"/api/sessions/{sid}/touch") for sid in sids])
    assert [st for st, _ in got] == [200] * 6
    for sid, (_, body) in zip(sids, got):
        assert body["expires_at"] > before[sid]
        assert body["version"] == 1  # a touch alone is no new version
        status, _, now = call(server, "GET", f"/api/sessions/{sid}")
        assert status == 200 and now["expires_at"] == body["expires_at"]
