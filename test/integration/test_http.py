"""The worker's HTTP/1.1 core against a real sessiond: framing, limits, errors, keep-alive,
pipelining, gzip, health and metrics."""
import gzip
import json
import re
import socket
import time

from conftest import raw_exchange


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", resp)
    assert m, resp[:200]
    return int(m.group(1))


def body_of(resp):
    return resp.split(b"\r\n\r\n", 1)[1]


def error_code(resp):
    return json.loads(body_of(resp))["error"]["code"]


def test_health_has_the_contract_shape(server):
    status, headers, data = server.request("GET", "/api/health")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    h = json.loads(data)
    assert h["status"] == "ok"
    assert set(h) >= {"status", "version", "uptime_s", "instance", "sessions", "connections",
                      "workers", "store", "memory"}
    assert set(h["sessions"]) == {"active", "max"}
    assert set(h["connections"]) == {"http", "websocket", "limit", "utilization"}
    assert h["connections"]["limit"] == 10000
    assert h["connections"]["http"] >= 1   # this very request
    assert h["workers"]["count"] == 2 and h["workers"]["alive"] == 2
    assert len(h["workers"]["list"]) == 2
    for w in h["workers"]["list"]:
        assert set(w) >= {"id", "pid", "uptime_s", "connections", "requests", "rss_bytes", "load"}
        assert w["rss_bytes"] > 0
    assert sorted(w["id"] for w in h["workers"]["list"]) == [0, 1]
    assert h["memory"]["rss_bytes"] > sum(w["rss_bytes"] for w in h["workers"]["list"])
    assert server.request("GET", "/health")[0] == 200


def test_health_counts_requests_of_every_worker(server):
    before = sum(w["requests"] for w in server.health()[1]["workers"]["list"])
    for _ in range(40):
        assert server.request("GET", "/api/health")[0] == 200
    time.sleep(0.05)
    after = sum(w["requests"] for w in server.health()[1]["workers"]["list"])
    assert after - before >= 40


def test_not_found_and_method_not_allowed(server):
    status, headers, data = server.request("GET", "/nope")
    assert status == 404
    assert json.loads(data) == {"error": {"code": "not_found", "message": "No such endpoint."}}
    status, headers, data = server.request("POST", "/api/health", body=b"{}",
                                           headers={"Content-Type": "application/json"})
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert json.loads(data)["error"]["code"] == "method_not_allowed"


def test_head_has_length_but_no_body(server):
    resp = raw_exchange(server.port, b"HEAD /api/health HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert status_of(resp) == 200
    length = int(re.search(rb"Content-Length: (\d+)", resp).group(1))
    assert length > 100
    assert body_of(resp) == b""


def test_header_too_large_is_431(server):
    big = b"X-Big: " + b"a" * 9000 + b"\r\n"
    resp = raw_exchange(server.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert status_of(resp) == 431
    assert error_code(resp) == "header_too_large"


def test_body_too_large_is_413(server_factory):
    s = server_factory(conf="max_body_bytes 1k")
    head = (b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n")
    resp = raw_exchange(s.port, head + b"x" * 5000)
    assert status_of(resp) == 413
    assert error_code(resp) == "payload_too_large"
    chunked = (b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"800\r\n" + b"y" * 0x800 + b"\r\n0\r\n\r\n")
    assert status_of(raw_exchange(s.port, chunked)) == 413


def test_slow_header_is_408(server_factory):
    s = server_factory(conf="header_timeout 500ms")
    t0 = time.monotonic()
    resp = raw_exchange(s.port, b"GET /api/health HTTP/1.1\r\nHost:", timeout=5)
    assert status_of(resp) == 408
    assert error_code(resp) == "request_timeout"
    assert time.monotonic() - t0 < 3


def test_idle_connections_are_closed_silently(server_factory):
    s = server_factory(conf="keepalive_timeout 300ms\nheader_timeout 600ms")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(c.recv(65536)) == 200
        t0 = time.monotonic()
        assert c.recv(100) == b""   # closed after keepalive_timeout, without a response
        assert 0.2 < time.monotonic() - t0 < 2
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        t0 = time.monotonic()
        assert c.recv(100) == b""   # a connection that never sends: header_timeout, silently
        assert 0.5 < time.monotonic() - t0 < 2


def test_malformed_requests_are_400_and_closed(server):
    cases = [
        b"GET /api/health HTTP/1.1\nHost: x\n\n",                                  # bare LF
        b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                             # CL + TE
        b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Content-Length: 3\r\n\r\nabc",                                            # dup CL
        b"GET /api/health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",                  # obs-fold
        b"G@T /api/health HTTP/1.1\r\nHost: x\r\n\r\n",                             # bad method
        b"GET /api/health HTTP/1.1\r\n\r\n",                                        # no Host
    ]
    for raw in cases:
        # A second, valid request follows: it must never be answered from the same bytes.
        resp = raw_exchange(server.port, raw + b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(resp) == 400, raw
        assert resp.count(b"HTTP/1.1 ") == 1, raw
        assert b"Connection: close" in resp
        assert error_code(resp) == "bad_request"


def test_pipelined_requests_answered_in_order(server):
    reqs = (b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resp = raw_exchange(server.port, reqs)
    statuses = [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]
    assert statuses == [200, 404, 200]


def test_keepalive_reuses_the_connection_and_close_is_honoured(server):
    c = server.conn()
    for _ in range(5):
        c.request("GET", "/api/health")
        r = c.getresponse()
        r.read()
        assert r.status == 200 and r.getheader("Connection") is None
    c.request("GET", "/api/health", headers={"Connection": "close"})
    r = c.getresponse()
    r.read()
    assert r.getheader("Connection") == "close"
    c.close()


def test_http10(server):
    resp = raw_exchange(server.port, b"GET /api/health HTTP/1.0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.0 200 ")
    assert b"Connection: close" in resp
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
        c.sendall(b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = c.recv(65536)
        assert b"Connection: keep-alive" in first
        c.sendall(b"GET /api/health HTTP/1.0\r\n\r\n")
        assert status_of(c.recv(65536)) == 200


def test_chunked_body_and_expect_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
        c.sendall(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b'{"a": 1234}')
        resp = c.recv(65536)
        assert status_of(resp) == 200
        assert json.loads(body_of(resp)) == {"bytes": 11}
    resp = raw_exchange(server.port,
                        b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    assert json.loads(body_of(resp)) == {"bytes": 11}


def test_gzip_when_accepted_and_large(server):
    status, headers, data = server.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    text = gzip.decompress(data).decode()
    assert "sessiond_http_requests_total" in text
    status, headers, data = server.request("GET", "/metrics")
    assert "Content-Encoding" not in headers
    status, headers, data = server.request("GET", "/metrics",
                                           headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in headers
    # Small bodies are sent as they are.
    status, headers, data = server.request("GET", "/nope", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in headers


def test_metrics_exposition(server):
    for _ in range(3):
        server.request("GET", "/nope")
    status, headers, data = server.request("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = data.decode()
    assert re.search(r'^sessiond_http_requests_total\{code="404"\} ([3-9]|\d\d+)$', text, re.M)
    assert re.search(r'^sessiond_http_request_duration_seconds_bucket\{le="\+Inf"\} \d+$',
                     text, re.M)
    assert re.search(r'^sessiond_connections\{kind="http"\} [1-9]\d*$', text, re.M)
    assert "sessiond_worker_restarts_total 0" in text
    assert "# TYPE sessiond_http_request_duration_seconds histogram" in text
    # Every sample line is "name{labels} value".
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^sessiond_[a-z_]+(\{[^}]*\})? [0-9.e+-]+$', line), line


def test_server_header_has_no_version(server):
    status, headers, _ = server.request("GET", "/api/health")
    assert headers["Server"] == "sessiond"
    assert re.match(r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", headers["Date"])


def test_slow_body_is_408(server_factory):
    s = server_factory(conf="body_timeout 500ms")
    t0 = time.monotonic()
    resp = raw_exchange(s.port, b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                                b"{\"partial\":", timeout=5)
    assert status_of(resp) == 408
    assert time.monotonic() - t0 < 3


def test_expect_other_than_continue_is_417(server):
    resp = raw_exchange(server.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\n"
                                     b"Expect: something\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 417


def test_unsupported_transfer_coding_and_version(server):
    resp = raw_exchange(server.port, b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
                                     b"Transfer-Encoding: gzip\r\n\r\n")
    assert status_of(resp) == 501
    resp = raw_exchange(server.port, b"GET /api/health HTTP/2.0\r\nHost: x\r\n\r\n")
    assert status_of(resp) == 505
    resp = raw_exchange(server.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(resp) == 414
