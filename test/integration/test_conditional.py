"""Conditional requests on sessions, on both engines: If-Match makes PATCH, DELETE and
touch conditional (412 on a stale version, nothing changed), If-None-Match on a GET
answers 304 while the version holds."""
import pytest

from conftest import call, create


@pytest.fixture
def server(keyed_on_both):
    return keyed_on_both()


def at_version(s, n):
    """A session patched until its version is n."""
    sid = create(s, data={"v": 1})[2]["id"]
    for i in range(2, n + 1):
        assert call(s, "PATCH", f"/api/sessions/{sid}", {"data": {"v": i}})[0] == 200
    return sid


def test_a_stale_if_match_deletes_nothing(server):
    sid = at_version(server, 6)
    status, _, body = call(server, "DELETE", f"/api/sessions/{sid}", headers={"If-Match": '"5"'})
    assert status == 412 and body["error"]["code"] == "precondition_failed"
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 200
    assert call(server, "DELETE", f"/api/sessions/{sid}", headers={"If-Match": "banana"})[0] == 400
    assert call(server, "DELETE", f"/api/sessions/{sid}", headers={"If-Match": '"6"'})[0] == 204
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 404
    # * and no header at all are unconditional
    other = at_version(server, 2)
    assert call(server, "DELETE", f"/api/sessions/{other}", headers={"If-Match": "*"})[0] == 204


def test_a_stale_if_match_touches_nothing(server):
    sid = create(server, ttl=100)[2]["id"]
    before = call(server, "GET", f"/api/sessions/{sid}")[2]
    assert call(server, "PATCH", f"/api/sessions/{sid}", {"data": {"x": 1}})[0] == 200  # v2
    status, _, body = call(server, "POST", f"/api/sessions/{sid}/touch",
                           headers={"If-Match": '"1"'})
    assert status == 412 and body["error"]["code"] == "precondition_failed"
    status, h, body = call(server, "POST", f"/api/sessions/{sid}/touch",
                           headers={"If-Match": '"2"'})
    assert status == 200 and h["ETag"] == '"2"' and body["version"] == 2
    assert body["expires_at"] >= before["expires_at"]


def test_if_none_match_answers_304_while_the_version_holds(server):
    sid = at_version(server, 3)
    status, h, body = call(server, "GET", f"/api/sessions/{sid}", headers={"If-None-Match": '"3"'})
    assert status == 304 and h["ETag"] == '"3"' and body is None
    for tags in ('W/"3"', '"1", "3"', "*"):
        assert call(server, "GET", f"/api/sessions/{sid}",
                    headers={"If-None-Match": tags})[0] == 304, tags
    for tags in ('"2"', '"33"', '"13"'):
        status, h, body = call(server, "GET", f"/api/sessions/{sid}",
                               headers={"If-None-Match": tags})
        assert status == 200 and body["version"] == 3, tags
    assert call(server, "PATCH", f"/api/sessions/{sid}", {"data": {"v": 4}})[0] == 200
    status, h, body = call(server, "GET", f"/api/sessions/{sid}", headers={"If-None-Match": '"3"'})
    assert status == 200 and h["ETag"] == '"4"' and body["data"] == {"v": 4}
    # a session that is gone is still 404, whatever the header says
    assert call(server, "DELETE", f"/api/sessions/{sid}")[0] == 204
    assert call(server, "GET", f"/api/sessions/{sid}", headers={"If-None-Match": "*"})[0] == 404
