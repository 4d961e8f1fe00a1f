"""A session lives at least its ttl, to the millisecond, on both engines, although the
API's times are whole seconds: expires_at is rounded up, and the session is gone once
the clock reaches it."""
import time

import pytest

from conftest import call, create


@pytest.fixture
def server(keyed_on_both):
    return keyed_on_both()


def at_phase(frac):
    """Sleep until the clock's fraction of a second is frac."""
    now = time.time()
    time.sleep((frac - now % 1) % 1)


@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95])
def test_a_one_second_session_lives_a_whole_second(server, frac):
    at_phase(frac)
    t0 = time.time()
    status, _, body = create(server, "brief", ttl=1)
    assert status == 201
    assert body["expires_at"] >= t0 + 1 and body["expires_at"] - body["created_at"] <= 2
    sid = body["id"]
    time.sleep(max(0.0, t0 + 0.97 - time.time()))
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 200, \
        f"gone {time.time() - t0:.3f} s after it was created with ttl 1"
    # gone once the clock reaches expires_at (time(2) is the coarse clock, a few ms late)
    time.sleep(max(0.0, body["expires_at"] + 0.05 - time.time()))
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 404


def test_a_touch_gives_a_whole_ttl_again(server):
    sid = create(server, "toucher", ttl=2)[2]["id"]
    at_phase(0.9)
    t0 = time.time()
    status, _, body = call(server, "POST", f"/api/sessions/{sid}/touch")
    assert status == 200 and body["expires_at"] >= t0 + 2
    time.sleep(max(0.0, t0 + 1.97 - time.time()))
    assert call(server, "GET", f"/api/sessions/{sid}")[0] == 200
