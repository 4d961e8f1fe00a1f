"""TLS: HTTPS and WSS on a listener with the tls flag, ALPN, protocol versions, session
resumption across workers, the handshake timeout, certificates on reload and -t.

Certificates are made for each test with the openssl command line (ECDSA P-256 and RSA 2048,
self-signed for localhost and 127.0.0.1). Every server also has a plain listener, which the
harness uses to see that it serves.
"""
import http.client
import json
import signal
import socket
import ssl
import subprocess
import time

import pytest
import websockets

from conftest import (BIN, KEY, Hammer, alive, context, create, free_port, https, keyed,
                      make_cert, next_push, op, raw_exchange, run, tls_conf, wait_for)


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    return {"ec": make_cert(str(d), "ec", "ec"), "rsa": make_cert(str(d), "rsa", "rsa")}


def tls_server(server_factory, certs, kind="ec", extra="", **kw):
    port, plain = free_port(), free_port()
    while plain == port:  # two calls may well return the same free port
        plain = free_port()
    crt, key = certs[kind]
    s = keyed(server_factory, conf=tls_conf(port, crt, key, extra), port=plain, **kw)
    s.tls_port = port
    return s


def s_client(port, *args, stdin=b""):
    """openssl s_client against the TLS port; returns its exit status and output."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-servername", "localhost", *args],
                       input=stdin, capture_output=True, timeout=20)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_https_health_with_curl(server_factory, certs, kind):
    s = tls_server(server_factory, certs, kind)
    url = f"https://localhost:{s.tls_port}/api/health"
    r = subprocess.run(["curl", "-sS", "-v", "--cacert", certs[kind][0], url, url],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    bodies = r.stdout.replace("}{", "}\n{").splitlines()
    assert [json.loads(b)["status"] for b in bodies] == ["ok", "ok"]
    assert "ALPN: server accepted http/1.1" in r.stderr or \
        "ALPN, server accepted to use http/1.1" in r.stderr
    # The second request went over the same TLS connection (keep-alive).
    assert "Re-using existing connection" in r.stderr or "Reusing existing connection" in r.stderr
    # The plain listener of the same server still speaks plain HTTP.
    assert s.health()[0] == 200


def test_large_bodies_both_ways(server_factory, certs):
    """Bodies far larger than one TLS record: a request body (read in pieces, with bytes
    left inside OpenSSL between reads) and a response written in partial writes."""
    s = tls_server(server_factory, certs, extra="max_body_bytes 4m\n")
    ctx = context(certs["ec"][0])
    body = b"x" * (3 << 20)
    status, _, out = https(s, ctx, "POST", "/debug/echo", body=body,
                           headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(out) == {"bytes": len(body)}
    status, _, out = https(s, ctx, "GET", "/debug/big?kb=2048")
    assert status == 200 and len(out) == (2048 << 10) + 8
    # Pipelined requests in one write, answered in order.
    with socket.create_connection(("127.0.0.1", s.tls_port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n" * 3 +
                      b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while True:
                b = t.recv(65536)
                if not b:
                    break
                got += b
    assert got.count(b"HTTP/1.1 200 OK") == 4


def test_alpn_offers_http11_only(server_factory, certs):
    s = tls_server(server_factory, certs)
    rc, out = s_client(s.tls_port, "-alpn", "h2,http/1.1")
    assert rc == 0, out
    assert "ALPN protocol: http/1.1" in out
    rc, out = s_client(s.tls_port, "-alpn", "h2")
    assert "no application protocol" in out or rc != 0, out
    # A client without ALPN is served too.
    rc, out = s_client(s.tls_port)
    assert rc == 0 and "No ALPN negotiated" in out, out


def test_protocol_versions(server_factory, certs):
    s = tls_server(server_factory, certs)
    for flag, ok in [("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)]:
        rc, out = s_client(s.tls_port, flag)
        if ok:
            assert rc == 0 and "Cipher is" in out, (flag, out)
        else:
            assert rc != 0, (flag, out)
            assert "alert protocol version" in out or "no protocols available" in out, out
    s13 = tls_server(server_factory, certs, extra="tls_protocols TLSv1.3\n")
    rc, out = s_client(s13.tls_port, "-tls1_2")
    assert rc != 0, out
    # TLS 1.2 gets the configured ciphers (ECDSA suites for an ECDSA key).
    rc, out = s_client(s.tls_port, "-tls1_2")
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in out, out


def test_wss_subscribe_and_publish(server_factory, certs):
    s = tls_server(server_factory, certs)
    ctx = context(certs["ec"][0])
    toks = [create(s, f"u{i}")[2]["token"] for i in range(2)]

    async def go():
        a = await websockets.connect(f"wss://localhost:{s.tls_port}/ws?token={toks[0]}", ssl=ctx)
        b = await websockets.connect(f"wss://localhost:{s.tls_port}/ws?token={toks[1]}", ssl=ctx,
                                     compression=None)
        for ws in (a, b):
            assert (await op(ws, op="subscribe", channel="room", id=1))["op"] == "ok"
        assert (await op(a, op="publish", channel="room", data={"n": 1}))["op"] == "ok"
        for ws in (a, b):  # the publisher too: it did not unsubscribe
            assert (await next_push(ws))["data"] == {"n": 1}
        # A message larger than a TLS record, each way.
        big = "y" * 40000
        assert (await op(b, op="publish", channel="room", data=big))["op"] == "ok"
        for ws in (a, b):
            assert (await next_push(ws))["data"] == big
        # The backend publishes over HTTPS.
        status, _, out = https(s, ctx, "POST", "/api/channels/room/publish",
                               body=json.dumps({"data": "api"}),
                               headers={"Authorization": f"Bearer {KEY}",
                                        "Content-Type": "application/json"})
        assert status == 202, out
        assert (await next_push(a))["data"] == "api"
        assert (await next_push(b))["data"] == "api"
        await a.close()
        await b.close()

    run(go())


def test_session_resumption_across_workers(server_factory, certs, tmp_path):
    s = tls_server(server_factory, certs, workers=2)
    for proto in ("-tls1_2", "-tls1_3"):
        sess = str(tmp_path / f"sess{proto}")
        # A request makes the client wait for (and save) the TLS 1.3 ticket.
        rc, out = s_client(s.tls_port, proto, "-sess_out", sess, "-ign_eof",
                           stdin=b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert rc == 0 and "New," in out, out
        # Several reconnections: with two workers sharing the queue, both get some.
        for _ in range(6):
            rc, out = s_client(s.tls_port, proto, "-sess_in", sess)
            assert rc == 0 and "Reused," in out, (proto, out)


def test_tickets_resume_on_workers_that_never_saw_them(server_factory, certs):
    """A ticket issued by one generation of workers resumes on the next one, which was
    forked after it was issued: nothing but the master's secret is shared. Python's ssl
    module reports reuse itself."""
    s = tls_server(server_factory, certs, workers=2)
    ctx = context(certs["ec"][0])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2: the session exists at once

    def connect(session=None):
        t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.tls_port)),
                            server_hostname="localhost", session=session)
        reused, sess = t.session_reused, t.session
        t.close()
        return reused, sess

    reused, session = connect()
    assert not reused
    assert all(connect(session)[0] for _ in range(4))
    old = s.worker_pids()
    s.signal(signal.SIGHUP)
    wait_for(lambda: not set(s.health_pids()) & set(old), timeout=10, what="the new generation")
    wait_for(lambda: not any(alive(p) for p in old), timeout=15, what="old workers to exit")
    assert all(connect(session)[0] for _ in range(4))


def test_handshake_timeout_closes_a_silent_connection(server_factory, certs):
    s = tls_server(server_factory, certs, extra="tls_handshake_timeout 300ms\n")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", s.tls_port), timeout=5) as raw:
        assert raw.recv(100) == b""  # closed, without a byte
    assert time.monotonic() - t0 < 3
    # Half a ClientHello is no better than silence.
    with socket.create_connection(("127.0.0.1", s.tls_port), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert raw.recv(100) == b""
    # Plain HTTP on the TLS port is told so, in plain HTTP, and closed (as nginx does).
    resp = raw_exchange(s.tls_port, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400 ") and b"use https://" in resp, resp[:200]
    assert b"Connection: close" in resp and resp.count(b"HTTP/1.1 ") == 1
    assert s.health()[0] == 200


def served_cert(port):
    """The DER certificate a new connection to port gets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                         server_hostname="localhost") as t:
        return t.getpeercert(binary_form=True)


def der_of(crt):
    with open(crt) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.mark.parametrize("breakage", ["mismatch", "missing", "garbage"])
def test_bad_certificate_on_hup_is_refused(server_factory, certs, tmp_path, breakage):
    s = tls_server(server_factory, certs)
    old = s.worker_pids()
    ec_crt, _ = certs["ec"]
    if breakage == "mismatch":
        key, want = certs["rsa"][1], "does not match the certificate"
    elif breakage == "missing":
        key, want = str(tmp_path / "nope.key"), "No such file or directory"
    else:
        key = str(tmp_path / "garbage.key")
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        want = "tls_key"
    s.write_conf(f'api_key "{KEY}"\n' + tls_conf(s.tls_port, ec_crt, key), workers=2)
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.log(), what="the refusal")
    assert want in s.log()
    time.sleep(0.3)
    assert s.worker_pids() == old
    status, _, _ = https(s, context(ec_crt), "GET", "/api/health")
    assert status == 200
    assert served_cert(s.tls_port) == der_of(ec_crt)


def test_new_certificate_on_hup_drops_no_request(server_factory, certs):
    s = tls_server(server_factory, certs)
    ctx = context(certs["ec"][0], certs["rsa"][0])
    load = Hammer(lambda: http.client.HTTPSConnection("localhost", s.tls_port, context=ctx,
                                                      timeout=10), clients=3)
    time.sleep(0.5)
    old = s.worker_pids()
    rsa_crt, rsa_key = certs["rsa"]
    s.write_conf(f'api_key "{KEY}"\n' + tls_conf(s.tls_port, rsa_crt, rsa_key), workers=2)
    s.signal(signal.SIGHUP)
    wait_for(lambda: not set(s.health_pids()) & set(old), timeout=10, what="the new generation")
    wait_for(lambda: not any(alive(p) for p in old), timeout=15, what="old workers to exit")
    time.sleep(0.3)
    errors, answered = load.stop()
    assert errors == []
    assert answered > 30
    assert served_cert(s.tls_port) == der_of(rsa_crt)


def test_check_mode_reads_the_certificate(tmp_path, certs):
    conf = tmp_path / "t.conf"
    port = free_port()
    ec_crt, ec_key = certs["ec"]

    def check(crt, key):
        conf.write_text(tls_conf(port, crt, key) + f"store_path {tmp_path}/s.db\n")
        return subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True,
                              timeout=10)

    r = check(ec_crt, ec_key)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    r = check(ec_crt, certs["rsa"][1])
    assert r.returncode == 1
    assert r.stderr.strip() == (f'{conf}: tls_key "{certs["rsa"][1]}" does not match the '
                                f'certificate in tls_cert "{ec_crt}"')
    r = check(ec_crt, str(tmp_path / "missing.key"))
    assert r.returncode == 1
    assert f'tls_key "{tmp_path}/missing.key": No such file or directory' in r.stderr
    conf.write_text(f"listen 127.0.0.1:{port} tls\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert 'needs "tls_cert" and "tls_key"' in r.stderr


def test_single_process_mode_serves_tls_and_reloads_the_certificate(server_factory, certs):
    s = tls_server(server_factory, certs, env={"ENABLE_CLUSTERING": "false"}, workers=None)
    assert served_cert(s.tls_port) == der_of(certs["ec"][0])
    rsa_crt, rsa_key = certs["rsa"]
    s.write_conf(f'api_key "{KEY}"\n' + tls_conf(s.tls_port, rsa_crt, rsa_key))
    s.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in s.log(), what="the reload")
    assert served_cert(s.tls_port) == der_of(rsa_crt)
