"""The client library (web/client.js, served at /client.js) against the real sessiond: in
Node on the ws package (node/client_test.mjs: channels, presence, timeouts, a server
restart mid-test, revoked and unknown tokens) and in headless Chromium through
playwright-core (node/client_browser.mjs). Both import the library from the server, so
what is tested is what it serves. Sessions are made with the admin API from loopback (no
API key is configured).

Channel permissions as the client sees them (refused subscribes, the server's own
"subscribed" and "unsubscribed" pushes, what is asked for again after a reconnect) are
tested against a fake server in Node (node/client_fake.mjs), one scenario per test: it can
refuse, push and drop at will, and needs no sessiond. So are history and recovery (offsets,
`since` after a reconnect, duplicates and replays dropped, "lost" when the history cannot
fill the gap): the fake answers as API.md's "History and recovery" says sessiond does."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import Redis, alive

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
NODE = shutil.which("node")
CHROMIUM = "/usr/bin/chromium"


def need(module):
    if NODE is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", module)):
        pytest.skip(f"Node or its {module} module is not installed (npm ci in {NODE_DIR})")


def session(s, user):
    status, _, data = s.request("POST", "/api/sessions", body=json.dumps({"user": user}),
                                headers={"Content-Type": "application/json"})
    assert status == 201, data
    body = json.loads(data)
    return {"token": body["token"], "id": body["id"]}


def restart(s):
    """Drain and stop s (SIGTERM, wait for the exit), stay down a moment so that clients
    go through a few reconnect attempts, then start it again on the same port, config
    and store."""
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    s.logf.close()
    time.sleep(1.0)
    s.start()


class Driven:
    """A node script run by pid: its stdout lines are JSON; the last is the result."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([NODE, *args], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines(self):
        for line in self.proc.stdout:
            yield json.loads(line)

    def say(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self):
        if alive(self.proc.pid):
            self.proc.kill()
        self.proc.wait(10)
        return self.proc.stderr.read()


def run_node(s, script, *args, on_event=None):
    """Run script; s is the server it talks to (None for the fake server's tests)."""
    d = Driven(os.path.join(NODE_DIR, script), *args)
    result = None
    try:
        for msg in d.lines():
            if "result" in msg:
                result = msg["result"]
                break
            on_event(msg, d)
    finally:
        stderr = d.close()
    assert result is not None, f"{script} printed no result; stderr: {stderr[-2000:]}"
    assert "error" not in result, json.dumps(result, indent=1)
    return result


def test_node_client_end_to_end_with_a_restart(server_factory, tmp_path):
    need("ws")
    s = server_factory(conf=f"store_path {tmp_path}/sessions.db", workers=2)
    cfg = {"base": f"http://127.0.0.1:{s.port}", "a": session(s, "alice"),
           "b": session(s, "bob"), "c": session(s, "carol")}
    restarts = []

    def on_event(msg, d):
        assert msg == {"event": "restart"}, msg
        restart(s)
        restarts.append(s.pid)
        d.say("restarted")

    r = run_node(s, "client_test.mjs", json.dumps(cfg), on_event=on_event)
    print(json.dumps(r, indent=1))
    assert r["steps"] == ["connected", "channels", "timeouts", "restart", "revoked", "closed"]
    assert restarts, "the script never asked for the restart"

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "web", "client.js")) as f:
        assert r["served"]["bytes"] == len(f.read())
    assert r["served"]["type"].startswith("text/javascript")
    assert {"connect", "SessiondClient", "SessiondError"} <= set(r["exports"])

    # Channels, publish from one client to another, presence and its events.
    assert r["subA"]["ok"]["op"] == "ok" and r["subB"]["ok"]["op"] == "ok"
    assert r["presence"] == ["alice", "bob"]
    assert r["pubB"]["ok"]["op"] == "ok"
    assert r["firstMessage"] == {"channel": "room:t", "data": {"n": 1}, "from": "bob"}
    assert {"channel": "room:t", "user": "bob"} in r["joins"]
    assert {"channel": "room:t", "user": "bob"} in r["leaves"]
    assert r["unsubB"]["ok"]["op"] == "ok"
    assert r["badChannel"]["code"] == "bad_request" and r["badChannel"]["name"] == "SessiondError"
    assert r["channelsAfterRefusal"] == ["room:t"]
    assert isinstance(r["ping"]["ok"], int)  # the round trip, ms

    # Timeouts and drops reject with a clear error; the client goes on afterwards.
    t = r["timeout"]
    assert t["code"] == "timeout" and "ping" in t["message"] and "300 ms" in t["message"], t
    assert 290 <= t["ms"] < 2000, t
    assert isinstance(r["afterTimeout"]["ok"], int)
    assert r["dropped"]["code"] == "disconnected" and r["dropped"]["ms"] < 1000, r["dropped"]

    # The restart: back by itself, after jittered delays under the cap (800 ms, base 100),
    # each under its attempt's bound, and resubscribed: the HTTP publish reached it.
    assert r["reopened"] == {"reconnected": True}
    assert 1001 in r["closeCodes"]  # the drain said "going away"
    delays = r["delays"]
    assert len(delays) >= 3, delays
    assert all(0 <= x["delay"] < min(800, 100 * 2 ** (x["attempt"] - 1)) for x in delays), delays
    assert len({x["delay"] for x in delays}) > 1, delays
    # Jittered, not merely growing: the share of each attempt's bound varies.
    assert len({round(x["delay"] / min(800, 100 * 2 ** (x["attempt"] - 1)), 2)
                for x in delays}) > 1, delays
    assert [x["attempt"] for x in delays] == list(range(1, len(delays) + 1)), delays
    assert r["httpPublish"] == {"status": 202, "body": {"channel": "room:t", "recipients": 1}}
    assert r["afterRestart"] == {"channel": "room:t", "data": {"n": 2}}  # the API's: no from

    # A revoked session: 4001, an "unauthorized" error, no reconnect, requests refused.
    v = r["revoked"]
    assert r["revoke"]["status"] == 204
    assert [c["code"] for c in v["close"]] == [4001] and v["close"][0]["reconnect"] is False
    assert [e["code"] for e in v["errors"]] == ["unauthorized"]
    assert v["reconnecting"] == 0 and v["connected"] is False
    assert v["ready"]["code"] == "unauthorized" and v["ping"]["code"] == "unauthorized"
    # A token the server never issued: the 401 before the upgrade stops it the same way.
    bad = r["badToken"]
    assert len(bad["close"]) == 1 and bad["close"][0]["reconnect"] is False, bad
    assert [e["code"] for e in bad["errors"]] == ["unauthorized"] and bad["reconnecting"] == 0

    # close(): what waited rejects, nothing reconnects.
    assert r["closedPending"]["code"] == "closed"
    assert r["closed"]["a"] is False and r["closed"]["b"] is False
    assert r["closed"]["reconnectingAfterClose"] == 0
    assert r["closed"]["lastClose"] == {"code": 1000, "reason": "client closed",
                                        "reconnect": False}


@pytest.mark.parametrize("store", ["lmdb", "redis"])
def test_node_clients_lose_nothing_across_a_killed_worker_and_a_reload(server_factory, tmp_path,
                                                                     store):
    """200 clients of the library on a channel with history, 50 API publishes a second,
    one worker SIGKILLed, then a HUP: every application gets every message once, in
    order; with the history in the machine's file and in Redis."""
    need("ws")
    conf = "namespace feed subscribe=any publish=any history=1000\nws_drain_spread 500ms\n"
    redis = None
    if store == "redis":
        (tmp_path / "redis").mkdir()
        redis = Redis(tmp_path / "redis").start()
        conf = f"store redis\nredis_url {redis.url}\n" + conf
    try:
        node_clients_lose_nothing(server_factory(conf=conf, workers=2))
    finally:
        if redis:
            redis.stop()


def node_clients_lose_nothing(s):
    cfg = {"base": f"http://127.0.0.1:{s.port}", "channel": "feed:all", "seconds": 6,
           "tokens": [session(s, f"reader{i}")["token"] for i in range(200)]}
    killed = []

    def on_event(msg, d):
        if msg == {"event": "kill"}:
            victim = s.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        else:
            assert msg == {"event": "hup"}, msg
            s.signal(signal.SIGHUP)
        d.say("done")

    r = run_node(s, "client_recovery.mjs", json.dumps(cfg), on_event=on_event)
    print(json.dumps(r, indent=1))
    assert killed
    # a publish in flight on the killed worker, or on a connection the reload closed, may
    # fail (its answer is lost with it)
    assert r["publishFailures"] <= 2 and 300 - r["publishFailures"] <= r["top"] <= 300, r
    assert r["exact"] == 200, r["bad"]
    assert r["lost"] == 0 and r["recovered"] >= 1, r


def test_chromium_imports_the_client_and_receives_a_publish(server_factory):
    need("playwright-core")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM}")
    s = server_factory(workers=2)
    tok = session(s, "browser-user")["token"]

    def unexpected(msg, d):
        raise AssertionError(f"unexpected line from the driver: {msg}")

    r = run_node(s, "client_browser.mjs", f"http://127.0.0.1:{s.port}", tok,
                 on_event=unexpected)
    print(json.dumps(r, indent=1))
    assert r["pageErrors"] == [] and r["consoleErrors"] == [], r
    assert r["page"]["connected"] is True and r["page"]["nativeWebSocket"] is True, r
    assert "connect" in r["page"]["exports"]
    assert r["page"]["sub"]["op"] == "ok"
    assert r["publish"] == {"status": 202, "body": {"channel": "room:browser", "recipients": 1}}
    assert r["page"]["origin"] != f"http://127.0.0.1:{s.port}"  # a cross-origin import
    # published by the API, not by a user: no from
    assert r["received"] == {"channel": "room:browser", "data": {"text": "hello, browser"}}
    assert [m["user"] for m in r["members"]] == ["browser-user"]


def fake(scenario):
    """Run one scenario of node/client_fake.mjs; its result, with asked: the channels each
    connection subscribed to, in order."""
    need("ws")

    def unexpected(msg, d):
        raise AssertionError(f"unexpected line from the driver: {msg}")

    r = run_node(None, "client_fake.mjs", scenario, on_event=unexpected)
    print(json.dumps(r, indent=1))
    return r


def test_node_client_sees_grants_of_a_real_server(server_factory):
    """The events and refusals of the fake server's tests, from sessiond itself."""
    need("ws")
    s = server_factory(conf="namespace user subscribe=owner publish=none", open_channels=False)
    status, _, data = s.request(
        "POST", "/api/sessions", headers={"Content-Type": "application/json"},
        body=json.dumps({"user": "alice", "channels": ["room:1"], "subscribe": ["user:alice"]}))
    assert status == 201, data
    body = json.loads(data)
    cfg = {"base": f"http://127.0.0.1:{s.port}", "token": body["token"], "id": body["id"]}
    r = run_node(s, "client_grants.mjs", json.dumps(cfg))
    assert r["subscribed"] == [{"channel": "user:alice"}]
    assert r["granted"] == "ok"
    assert r["refused"] == {"name": "SessiondError", "code": "forbidden"}
    assert r["channelsBefore"] == ["room:1"]  # the refused one is not kept
    assert r["patch"] == 200
    assert r["unsubscribed"] == [{"channel": "room:1"}] and r["unsubscribedMs"] < 1000, r
    assert r["channelsAfter"] == [] and r["again"] == "forbidden"


def test_fake_client_emits_server_side_subscribed_and_unsubscribed():
    r = fake("events")
    assert r["subscribedOnConnect"] == [{"channel": "user:alice"}, {"channel": "feed:news"}]
    assert r["unsubscribed"] == [{"channel": "feed:news"}]
    # The server subscribes again on its own after the reconnect; the client asks nothing.
    assert r["subscribedAfterReconnect"] == [{"channel": "user:alice"}, {"channel": "feed:news"},
                                           {"channel": "user:alice"}]
    assert r["channelsAfterPush"] == []
    assert r["connections"] == 2 and r["asked"] == [[], []]


def test_fake_client_refused_subscribe_rejects_forbidden_and_is_not_resubscribed():
    r = fake("refused")
    assert r["granted"]["ok"]["op"] == "ok"
    assert r["refused"]["code"] == "forbidden" and r["refused"]["name"] == "SessiondError", r
    assert "room:secret" in r["refused"]["message"]
    assert r["channelsAfter"] == ["room:lobby"]
    assert r["asked"] == [["room:lobby", "room:secret"], ["room:lobby"]]
    assert r["errors"] == []  # no refused resubscribe to report


def test_fake_client_unsubscribed_channel_is_not_resubscribed():
    r = fake("revoked")
    assert [x["ok"]["op"] for x in r["subs"]] == ["ok", "ok"]
    assert r["unsubscribed"] == [{"channel": "room:b"}]
    assert r["channelsAfter"] == ["room:a"]
    assert r["asked"] == [["room:a", "room:b"], ["room:a"]]
    assert r["errors"] == []


def test_fake_client_resubscribe_refused_after_reconnect_is_dropped():
    # A grant revoked while the client was away: no push told it, the resubscribe is
    # refused (an error event), and the next connection does not ask again.
    r = fake("revokedOffline")
    assert [e["code"] for e in r["errors"]] == ["forbidden"], r["errors"]
    assert r["channelsAfter"] == ["room:a"]
    assert r["asked"] == [["room:a", "room:b"], ["room:a", "room:b"], ["room:a"]]


def test_fake_client_timed_out_subscribe_is_kept_and_asked_again():
    r = fake("timedOut")
    assert r["timedOut"]["code"] == "timeout"
    assert r["channelsAfter"] == ["room:slow"]
    assert r["asked"] == [["room:slow"], ["room:slow"]] and r["errors"] == []


def test_fake_client_late_refusal_does_not_undo_a_later_subscribe():
    r = fake("race")
    assert r["results"][0]["code"] == "forbidden" and r["results"][1]["ok"]["op"] == "ok"
    assert r["channelsAfter"] == ["room:r"]
    assert r["asked"] == [["room:r", "room:r"], ["room:r"]]


def test_fake_client_recovers_after_a_reconnect_each_message_once_in_order():
    r = fake("recovery")
    assert r["firstOk"]["offset"] == 0 and r["firstOk"]["epoch"] == "e1"
    assert r["positionAtFirst"] == {"offset": 0, "epoch": "e1"}
    assert r["positionBefore"] == {"offset": 3, "epoch": "e1"}
    # The resubscribe asks for what came after the last message delivered; the first had
    # nothing to ask for.
    assert r["sinces"] == [[None], [{"offset": 3, "epoch": "e1"}]]
    # The replay repeats 3 (already delivered): dropped. 4 and 5 (missed) come before 6 (live).
    assert r["seen"] == [[n, {"n": n}] for n in range(1, 7)], r["seen"]
    assert r["recovered"] == [{"channel": "room:h", "epoch": "e1", "offset": 5, "since": 3}]
    assert r["lost"] == []
    assert r["position"] == {"offset": 6, "epoch": "e1"}


def test_fake_client_emits_lost_when_recovery_fails_and_goes_on():
    r = fake("lost")
    assert r["sinces"] == [[None], [{"offset": 2, "epoch": "e1"}]]
    assert r["lostThen"] == [{"channel": "room:h", "epoch": "e1", "offset": 3}]
    assert r["recovered"] == []
    assert r["seen"] == [[1, {"n": 1}], [2, {"n": 2}], [4, {"n": 4}]]  # 3 is the lost one
    assert r["position"] == {"offset": 4, "epoch": "e1"}


def test_fake_client_drops_a_duplicate_and_an_older_live_message():
    r = fake("dropped")
    assert r["seen"] == [[n, {"n": n}] for n in range(1, 5)], r["seen"]
    assert r["position"] == {"offset": 4, "epoch": "e1"}


def test_fake_client_new_epoch_resets_the_count_and_emits_lost():
    r = fake("epoch")
    assert r["sinces"] == [[None], [{"offset": 3, "epoch": "e1"}]]
    assert r["lostAfterReconnect"] == [{"channel": "room:h", "epoch": "e2", "offset": 1}]
    assert r["positionE2"] == {"offset": 2, "epoch": "e2"}
    # Offsets 2 and 1 of the new epochs are below the old position, and are not dropped.
    assert r["seen"] == [[1, {"n": 1}], [2, {"n": 2}], [3, {"n": 3}], [2, {"n": "e2-2"}],
                         [1, {"n": "e3-1"}]], r["seen"]
    # A message naming another epoch: lost, standing before it (it is delivered).
    assert r["lost"][1:] == [{"channel": "room:h", "epoch": "e3", "offset": 0}]
    assert r["position"] == {"offset": 1, "epoch": "e3"}


def test_fake_client_channel_without_history_is_as_before():
    r = fake("plain")
    assert r["sinces"] == [[None], [None]] and r["asked"] == [["room:p"], ["room:p"]]
    # The subscribes are what they were: no since key at all, not even a null one.
    assert r["frames"] == [[["channel", "id", "op"]], [["channel", "id", "op"]]]
    # No offsets: nothing dropped (two equal messages are two messages), no offset key.
    assert r["seen"] == [["none", {"n": 1}], ["none", {"n": 1}], ["none", {"n": 2}]]
    assert r["keys"] == [["channel", "data", "from"]] * 3
    assert r["position"] is None and r["lost"] == [] and r["recovered"] == []


def test_fake_client_first_subscribe_sends_the_applications_since():
    r = fake("since")
    assert r["sinces"] == [[{"offset": 2, "epoch": "e1"}, {"offset": 7, "epoch": "e8"}]]
    assert r["ok"]["recovered"] is True and r["stale"]["recovered"] is False
    assert r["seen"] == [[3, {"n": 3}], [4, {"n": 4}]]
    assert r["recovered"] == [{"channel": "room:h", "epoch": "e1", "offset": 4, "since": 2}]
    assert r["lost"] == [{"channel": "room:old", "epoch": "e9", "offset": 1}]
    assert r["positions"] == [{"offset": 4, "epoch": "e1"}, {"offset": 1, "epoch": "e9"}]
    # A malformed since is refused before anything is sent or kept.
    assert r["bad"]["name"] == "TypeError" and r["channelsAfter"] == ["room:h", "room:old"]
    assert r["asked"] == [["room:h", "room:old"]]
