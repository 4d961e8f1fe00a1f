"""rediss://: sessiond speaks TLS to a real redis-server (Debian's is built with TLS), verifies
its certificate against a CA of the test's own, checks the name, presents a client
certificate when Redis asks for one, and refuses a server that a wrong CA signed."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import BIN, JSON, free_port, next_push, op, run, url, wait_for

# The CA and certificates the scripts make for bench and chaos, made the same way here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
from redis_proc import issue, make_ca  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


class TlsRedis:
    """redis-server listening only on a TLS port, stopped by pid."""

    def __init__(self, d, ca, cert, clients="no"):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", cert[0], "--tls-key-file", cert[1], "--tls-ca-cert-file", ca[0],
             "--tls-auth-clients", clients, "--save", "", "--appendonly", "no", "--dir", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ca = ca
        import redis

        def up():
            try:
                return redis.Redis(port=self.port, ssl=True, ssl_ca_certs=ca[0],
                                   ssl_certfile=self.client[0] if clients == "yes" else None,
                                   ssl_keyfile=self.client[1] if clients == "yes" else None,
                                   socket_timeout=0.5).ping()
            except (redis.exceptions.ConnectionError, OSError):
                return False
        self.client = issue(d, ca, "probe-client", "DNS:probe") if clients == "yes" else None
        wait_for(up, what="redis-server with TLS")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def pki(tmp_path):
    ca = make_ca(tmp_path, "test-ca")
    return {"dir": tmp_path, "ca": ca, "other_ca": make_ca(tmp_path, "other-ca"),
            "server": issue(tmp_path, ca, "redis", "DNS:localhost,IP:127.0.0.1"),
            "client": issue(tmp_path, ca, "sessiond", "DNS:sessiond")}


@pytest.fixture
def tls_redis(pki):
    made = []

    def start(clients="no", cert=None):
        r = TlsRedis(pki["dir"], pki["ca"], cert or pki["server"], clients)
        made.append(r)
        return r
    yield start
    for r in made:
        r.stop()


def conf(host, port, ca, extra=""):
    return (f"store redis\nredis_url rediss://{host}:{port}/0\nredis_timeout 500ms\n"
            f"redis_tls_ca {ca}\n{extra}")


def degraded(server_factory, text):
    """A server whose Redis cannot be reached: it starts and serves, degraded."""
    s = server_factory(conf=text, start=False)
    s.start(wait=False)
    wait_for(lambda: s.health()[1]["workers"]["alive"] == 2, what="2 workers serving")
    return s


def create(s, user="u1"):
    status, _, out = s.request("POST", "/api/sessions", body=json.dumps({"user": user}).encode(),
                               headers=JSON)
    return status, (json.loads(out) if out else None)


def test_sessions_and_pubsub_over_tls(server_factory, pki, tls_redis):
    r = tls_redis()
    s = server_factory(conf=conf("127.0.0.1", r.port, pki["ca"][0],
                                 "namespace default subscribe=any publish=any\n"))
    wait_for(lambda: s.request("GET", "/readyz")[0] == 200, timeout=5, what="ready over TLS")
    status, sess = create(s)
    assert status == 201
    status, _, body = s.request("GET", f"/api/sessions/{sess['id']}")
    assert status == 200 and json.loads(body)["user"] == "u1"
    # The data is in that Redis, reached over TLS by a client of the test's own.
    import redis
    rc = redis.Redis(port=r.port, ssl=True, ssl_ca_certs=pki["ca"][0])
    assert any(sess["id"].encode() in k for k in rc.keys("*"))

    async def pubsub():
        import websockets
        async with websockets.connect(url(s, sess["token"])) as ws:
            await op(ws, op="subscribe", channel="news")
            await op(ws, op="publish", channel="news", data={"n": 1})
            push = await next_push(ws)
            assert push["data"] == {"n": 1}, push
    run(pubsub())


def test_a_server_signed_by_another_ca_is_refused_clearly(server_factory, pki, tls_redis):
    r = tls_redis()
    s = degraded(server_factory, conf("127.0.0.1", r.port, pki["other_ca"][0]))
    wait_for(lambda: "certificate verify failed" in s.log(), timeout=5, what="the log line")
    status, body = create(s)
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    assert s.request("GET", "/readyz")[0] == 503
    assert s.health()[1]["store"]["circuit"] == "open"
    time.sleep(2.5)  # reconnects fail the same way: no new line for them
    lines = [l for l in s.log().splitlines() if "certificate verify failed" in l]
    assert 1 <= len(lines) <= 2, lines  # one per worker at most
    assert f"redis 127.0.0.1:{r.port}: TLS: certificate verify failed: " in lines[0], lines[0]
    assert s.health()[1]["workers"]["restarts"] == 0


def test_the_name_in_the_url_must_be_in_the_certificate(server_factory, pki, tls_redis):
    r = tls_redis(cert=issue(pki["dir"], pki["ca"], "elsewhere", "DNS:redis.example"))
    s = degraded(server_factory, conf("127.0.0.1", r.port, pki["ca"][0]))
    wait_for(lambda: "certificate verify failed" in s.log(), timeout=5, what="the log line")
    assert "IP address mismatch" in s.log(), s.log()
    assert create(s)[0] == 503
    s2 = degraded(server_factory, conf("localhost", r.port, pki["ca"][0]))
    wait_for(lambda: "hostname mismatch" in s2.log().lower(), timeout=5, what="the log line")
    assert create(s2)[0] == 503


def test_a_client_certificate_when_redis_asks_for_one(server_factory, pki, tls_redis):
    r = tls_redis(clients="yes")
    without = degraded(server_factory, conf("localhost", r.port, pki["ca"][0]))
    wait_for(lambda: "redis" in without.log() and "TLS" in without.log(), timeout=5,
             what="a TLS failure in the log")
    assert create(without)[0] == 503
    crt, key = pki["client"]
    s = server_factory(conf=conf("localhost", r.port, pki["ca"][0],
                                 f"redis_tls_cert {crt}\nredis_tls_key {key}\n"))
    wait_for(lambda: create(s)[0] == 201, timeout=5, what="sessions with a client certificate")


def test_tls_files_are_checked_with_the_config(server_factory, pki, tmp_path):
    s = server_factory(conf=conf("127.0.0.1", 6390, str(tmp_path / "missing.pem")), start=False)
    r = subprocess.run([BIN, "-t", "-c", s.conf_path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0
    assert f"redis_tls_ca {tmp_path / 'missing.pem'}: No such file or directory" in \
        r.stdout + r.stderr
    crt, _ = pki["client"]
    s.write_conf(conf("127.0.0.1", 6390, pki["ca"][0],
                      f"redis_tls_cert {crt}\nredis_tls_key {pki['other_ca'][1]}\n"))
    r = subprocess.run([BIN, "-t", "-c", s.conf_path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "redis_tls_key" in r.stdout + r.stderr, r.stdout + r.stderr
