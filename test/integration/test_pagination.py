"""GET /api/users/{user}/sessions in pages, on both engines: limit (100 by default, at
most 1000) and an opaque next_cursor that walks the whole list, oldest first, each
session once, also when the session it names is gone by the next page."""
import pytest

from conftest import call, create


@pytest.fixture
def server(keyed_on_both):
    return keyed_on_both("max_sessions_per_user 1000\n")


def page(s, user, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    status, _, body = call(s, "GET", f"/api/users/{user}/sessions" + (f"?{qs}" if qs else ""))
    assert status == 200, body
    return body


def test_pages_walk_the_whole_list_once_in_order(server):
    made = [create(server, "pager")[2] for _ in range(250)]
    first = page(server, "pager")
    assert len(first["sessions"]) == 100 and first["next_cursor"]  # the default limit
    seen, cursor, pages = [], None, 0
    while True:
        body = page(server, "pager", limit=70, **({"cursor": cursor} if cursor else {}))
        seen += [x["id"] for x in body["sessions"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4  # 70 + 70 + 70 + 40
    assert len(seen) == 250 and len(set(seen)) == 250
    order = sorted(made, key=lambda x: (x["created_at"], x["id"].encode()))
    assert seen == [x["id"] for x in order]
    # a page that ends exactly at the last session says so
    body = page(server, "pager", limit=250)
    assert len(body["sessions"]) == 250 and body["next_cursor"] is None
    assert page(server, "nobody")["sessions"] == [] and page(server, "nobody")["next_cursor"] is None


def test_a_cursor_survives_its_session_being_deleted(server):
    for _ in range(5):
        create(server, "mover")
    body = page(server, "mover", limit=2)
    last = body["sessions"][-1]
    assert call(server, "DELETE", f"/api/sessions/{last['id']}")[0] == 204
    create(server, "mover")
    rest = page(server, "mover", limit=10, cursor=body["next_cursor"])
    # what follows the deleted session's place in (created_at, id) order, the new one
    # included when it sorts there (a session of the same second may sort before it)
    key = (last["created_at"], last["id"].encode())
    want = [x["id"] for x in page(server, "mover")["sessions"]
            if (x["created_at"], x["id"].encode()) > key]
    assert [x["id"] for x in rest["sessions"]] == want and len(want) >= 3
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("query, message", [
    ("limit=0", "limit must be a number from 1 to 1000."),
    ("limit=1001", "limit must be a number from 1 to 1000."),
    ("limit=ten", "limit must be a number from 1 to 1000."),
    ("cursor=abc", "cursor must be a next_cursor this API returned."),
    ("cursor=12.short", "cursor must be a next_cursor this API returned."),
    ("cursor=.AAAAAAAAAAAAAAAAAAAAAA", "cursor must be a next_cursor this API returned."),
])
def test_bad_limits_and_cursors_are_400(server, query, message):
    status, _, body = call(server, "GET", f"/api/users/u1/sessions?{query}")
    assert status == 400 and body["error"]["message"] == message, body
