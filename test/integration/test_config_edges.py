"""The edges of the configuration an operator trips on: a misspelt SESSIOND_ variable, a
path under a directory that does not exist, a reload that would switch stores, start-up
errors hidden in a log file, a weak api_key, and what the man pages promise (the
channel cap, their examples, the version)."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, call, create, free_port, keyed, wait_for

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def check(conf, env=None, drop=()):
    """sessiond -t on the file conf, with env added to (and drop removed from) ours."""
    e = {k: v for k, v in os.environ.items() if k not in drop}
    e.update(env or {})
    return subprocess.run([BIN, "-t", "-c", str(conf)], env=e, capture_output=True, text=True,
                          timeout=10)


# ---- (4) typos: SESSIOND_ variables, and directories that do not exist ----

def test_a_misspelt_sessiond_variable_is_an_error(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\n")
    r = check(conf, {"SESSIOND_MAX_BODY_BYTE": "2m"})
    assert r.returncode == 1, r.stdout
    assert "configuration OK" not in r.stdout
    assert r.stderr.startswith("environment SESSIOND_MAX_BODY_BYTE: "), r.stderr
    assert "SESSIOND_MAX_BODY_BYTES" in r.stderr  # the near miss is named
    # An empty value is no excuse for the name.
    r = check(conf, {"SESSIOND_NO_SUCH_THING": ""})
    assert r.returncode == 1 and "SESSIOND_NO_SUCH_THING" in r.stderr, r.stderr
    # Lower case is not how the variables are spelt.
    r = check(conf, {"SESSIOND_max_body_bytes": "2m"})
    assert r.returncode == 1 and "SESSIOND_MAX_BODY_BYTES" in r.stderr, r.stderr
    # A start is refused too, before anything is bound or written.
    r = subprocess.run([BIN, "-c", str(conf)], env={**os.environ, "SESSIOND_GZIPP": "off"},
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "environment SESSIOND_GZIPP" in r.stderr, r.stderr


def test_the_sessiond_variables_in_use_are_accepted(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\n")
    r = check(conf, {"SESSIOND_MAX_BODY_BYTES": "2m", "SESSIOND_API_KEY": "k" * 40,
                     "SESSIOND_STORE": "lmdb", "SESSIOND_NAMESPACE": "chat subscribe=any",
                     "SESSIOND_BIN": BIN, "SESSIOND_TEST_CRASH_FILE": str(tmp_path / "x")})
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr


def test_paths_under_a_missing_directory_are_refused_by_check(tmp_path):
    missing = tmp_path / "no" / "such"
    for name in ("store_path", "log_file", "pidfile"):
        conf = tmp_path / f"{name}.conf"
        path = missing / f"{name}.file"
        conf.write_text(f"listen 127.0.0.1:1\n{name} {path}\n")
        r = check(conf)
        assert r.returncode == 1, (name, r.stdout)
        assert "configuration OK" not in r.stdout
        assert f'{name} "{path}"' in r.stderr and f"{missing} does not exist" in r.stderr, \
            r.stderr
    # A file where the directory should be.
    (tmp_path / "plain").write_text("")
    conf = tmp_path / "file.conf"
    conf.write_text(f"listen 127.0.0.1:1\nstore_path {tmp_path / 'plain' / 's.db'}\n")
    r = check(conf)
    assert r.returncode == 1 and "is not a directory" in r.stderr, r.stderr
    # From the environment as well.
    conf.write_text("listen 127.0.0.1:1\n")
    r = check(conf, {"SESSIOND_STORE_PATH": str(missing / "s.db")})
    assert r.returncode == 1 and f'store_path "{missing / "s.db"}"' in r.stderr, r.stderr
    # The environment may also move a path that the file puts somewhere missing.
    conf.write_text(f"listen 127.0.0.1:1\nstore_path {missing / 's.db'}\n")
    r = check(conf, {"SESSIOND_STORE_PATH": str(tmp_path / "s.db")})
    assert r.returncode == 0, r.stderr


def test_a_start_under_a_missing_directory_creates_nothing(tmp_path):
    missing = tmp_path / "typo"
    conf = tmp_path / "s.conf"
    conf.write_text(f"listen 127.0.0.1:1\nstore_path {missing / 'deeper' / 's.db'}\n")
    r = subprocess.run([BIN, "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"{missing / 'deeper'} does not exist" in r.stderr, r.stderr
    assert not missing.exists()


def test_a_reload_under_a_missing_directory_keeps_the_old_config(server_factory, tmp_path):
    s = server_factory()
    old = s.worker_pids()
    s.write_conf(f"store_path {tmp_path / 'gone' / 's.db'}\n", workers=2)
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.log(), what="the refusal")
    assert f'store_path "{tmp_path / "gone" / "s.db"}"' in s.log()
    assert not (tmp_path / "gone").exists()
    time.sleep(0.3)
    assert s.worker_pids() == old


# ---- (5) a reload cannot switch stores ----

def _reload_refused(s, conf, what):
    """Rewrite s's config with conf, SIGHUP, and check the reload is refused for what,
    the workers stay and the sessions with them."""
    status, _, body = create(s, "u1")
    assert status == 201, body
    old = s.worker_pids()
    s.write_conf(conf, workers=s.workers)
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.log(), what="the refusal")
    assert re.search(rf"reload refused, keeping the running configuration: .*{what} cannot "
                     r"change on reload.*restart", s.log()), s.log()
    time.sleep(0.3)
    assert s.worker_pids() == old
    assert call(s, "GET", f"/api/sessions/{body['id']}")[0] == 200


def test_a_reload_may_not_change_store_path(server_factory, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    s = keyed(server_factory, f"store_path {tmp_path}/one.db\n")
    _reload_refused(s, f'api_key "k{"x" * 40}"\nstore_path {tmp_path}/elsewhere/two.db\n',
                    "store_path")
    assert not (tmp_path / "elsewhere" / "two.db").exists()
    # The same file spelt another way is no change.
    s.write_conf(f'api_key "k{"x" * 40}"\nstore_path {tmp_path}/elsewhere/../one.db\n',
                 workers=2)
    before = s.log().count("reloading: generation")
    s.signal(signal.SIGHUP)
    wait_for(lambda: s.log().count("reloading: generation") > before, what="the reload")


def test_a_reload_may_not_change_store(server_factory, tmp_path):
    s = keyed(server_factory, f"store_path {tmp_path}/one.db\n")
    _reload_refused(s, f"store_path {tmp_path}/one.db\nstore redis\n"
                       "redis_url redis://127.0.0.1:1/0\n", "store")


def test_a_single_process_reload_may_not_change_store_path(server_factory, tmp_path):
    s = keyed(server_factory, f"store_path {tmp_path}/one.db\n",
              env={"ENABLE_CLUSTERING": "false"}, workers=None)
    _reload_refused(s, f"store_path {tmp_path}/two.db\n", "store_path")
    assert "configuration reloaded" not in s.log()


# ---- (6) a start that fails says why on the terminal, not only in the log file ----

def _start(conf, stderr=subprocess.PIPE, env=None):
    return subprocess.run([BIN, "-c", str(conf)], stdout=subprocess.PIPE, stderr=stderr,
                          text=True, timeout=20, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("clustering", ["on", "off"])
def test_address_in_use_is_said_on_stderr_with_a_log_file(tmp_path, clustering):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "s.conf"
        log = tmp_path / "s.log"
        conf.write_text(f"listen 127.0.0.1:{port}\nworkers 1\nlog_file {log}\n"
                        f"store_path {tmp_path}/s.db\nclustering {clustering}\n")
        r = _start(conf)
    assert r.returncode == 1
    want = f"listen 127.0.0.1:{port}: Address already in use"
    assert want in log.read_text()
    assert f"sessiond: {want}" in r.stderr, r.stderr
    assert "[error]" not in r.stderr  # a line for a person, not the log's


def test_already_running_is_said_on_stderr_with_a_log_file(server_factory, tmp_path):
    s = server_factory(conf=f"log_file {tmp_path}/file.log")
    other = tmp_path / "other.conf"
    other.write_text(f"listen 127.0.0.1:{free_port()}\n"
                     f"pidfile {s.pidfile}\nlog_file {tmp_path}/other.log\n"
                     f"store_path {tmp_path}/other.db\n")
    r = _start(other)
    assert r.returncode == 1
    assert f"already running as pid {s.pid}" in (tmp_path / "other.log").read_text()
    assert f"sessiond: already running as pid {s.pid}" in r.stderr, r.stderr


def test_a_start_error_is_not_said_twice_when_stderr_is_the_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "s.conf"
        log = tmp_path / "s.log"
        conf.write_text(f"listen 127.0.0.1:{port}\nworkers 1\nlog_file {log}\n"
                        f"store_path {tmp_path}/s.db\n")
        with open(log, "ab") as f:
            r = _start(conf, stderr=f)
    assert r.returncode == 1
    assert log.read_text().count("Address already in use") == 1, log.read_text()


def test_once_it_serves_errors_are_the_log_files_alone(server_factory, tmp_path):
    # The Server's stdout and stderr are s.log(); the log proper is file.log.
    s = server_factory(conf=f"log_file {tmp_path}/file.log", workers=2)
    try:
        s.request("GET", "/debug/exit?code=2", timeout=5)  # a worker exits fatally
    except Exception:
        pass
    wait_for(lambda: "fatal status" in (tmp_path / "file.log").read_text(),
             what="the fatal exit logged")
    assert s.log() == "", s.log()


def test_the_last_worker_gone_is_said_on_stderr(server_factory, tmp_path):
    s = server_factory(conf=f"log_file {tmp_path}/file.log", workers=1)
    try:
        s.request("GET", "/debug/exit?code=2", timeout=5)
    except Exception:
        pass
    assert s.wait_exit(10) == 1
    assert s.log() == "sessiond: no workers left; exiting\n", s.log()


# ---- (7) weak keys ----

SHORT_KEY_WARNING = "api_key is 1 character long"


def test_a_short_api_key_is_warned_about_by_check(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text('listen 127.0.0.1:1\napi_key "x"\n')
    r = check(conf, drop=("SESSIOND_API_KEY",))
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr
    assert f"sessiond: warning: {SHORT_KEY_WARNING}" in r.stderr, r.stderr
    assert "at least 32" in r.stderr
    # From the environment too; a key of 32 characters is quiet.
    conf.write_text("listen 127.0.0.1:1\n")
    r = check(conf, {"SESSIOND_API_KEY": "k" * 31})
    assert r.returncode == 0 and "api_key is 31 characters long" in r.stderr, r.stderr
    r = check(conf, {"SESSIOND_API_KEY": "k" * 32})
    assert r.returncode == 0 and "api_key" not in r.stderr, r.stderr


def test_a_short_api_key_is_warned_about_in_the_log(server_factory):
    s = server_factory(conf='api_key "x"\n')
    assert re.search(rf"\[warn\] master \d+: {SHORT_KEY_WARNING}", s.log()), s.log()
    # And again by a reload that keeps it.
    s.signal(signal.SIGHUP)
    wait_for(lambda: len(re.findall(SHORT_KEY_WARNING, s.log())) == 2, what="the reload's warning")


def test_the_fleet_configs_hold_no_key(tmp_path):
    for name in ("a.conf", "b.conf"):
        with open(os.path.join(ROOT, "scripts", "fleet", name)) as f:
            text = f.read()
        assert not re.search(r"^\s*api_key\b", text, re.M), f"{name} sets an api_key"
        assert "SESSIOND_API_KEY" in text


# ---- (13) what the man pages promise ----

def test_ws_max_channels_caps_a_connections_channels(server_factory):
    import asyncio
    import json
    import websockets
    from conftest import op, run, url
    s = keyed(server_factory, "ws_max_channels 3\n")
    status, _, body = create(s, "u1")
    assert status == 201, body
    tok = body["token"]
    status, _, body = call(s, "POST", "/api/sessions",
                           {"user": "u2", "subscribe": ["s1", "s2", "s3", "s4", "s5"]})
    assert status == 201, body
    server_side = body["token"]

    async def go():
        async with websockets.connect(url(s, tok)) as ws:
            for i in range(3):
                assert (await op(ws, op="subscribe", channel=f"c{i}", id=i))["op"] == "ok"
            r = await op(ws, op="subscribe", channel="c3", id=3)
            assert r["op"] == "error" and r["error"]["code"] == "too_many_channels", r
            assert r["error"]["message"] == "A connection may be in 3 channels."
            # Already in it: not one more.
            assert (await op(ws, op="subscribe", channel="c0", id=4))["op"] == "ok"
            assert (await op(ws, op="unsubscribe", channel="c1", id=5))["op"] == "ok"
            assert (await op(ws, op="subscribe", channel="c3", id=6))["op"] == "ok"
        # The session's server-side channels are held to the cap too.
        async with websockets.connect(url(s, server_side)) as ws:
            await ws.send(json.dumps({"op": "ping", "id": 1}))
            pushed = []
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m["op"] == "pong":
                    break
                if m["op"] == "subscribed":
                    pushed.append(m["channel"])
            return pushed
    assert len(run(go())) == 3


def test_ws_max_channels_has_bounds(tmp_path):
    conf = tmp_path / "s.conf"
    for good in ("1", "256", "16384"):
        conf.write_text(f"listen 127.0.0.1:1\nws_max_channels {good}\n")
        r = check(conf)
        assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr
    for bad in ("0", "16385", "lots"):
        conf.write_text(f"listen 127.0.0.1:1\nws_max_channels {bad}\n")
        r = check(conf)
        assert r.returncode == 1 and f"{conf}:2: " in r.stderr, r.stderr
        assert "ws_max_channels" in r.stderr, r.stderr


def _man_example(page, first_line):
    """The text of the literal block of man/PAGE whose first line is first_line."""
    with open(os.path.join(ROOT, "man", page)) as f:
        text = f.read()
    for block in re.findall(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed$", text, re.M | re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"no example starting {first_line!r} in {page}")


def test_the_example_file_of_sessiond_conf_5_is_accepted(tmp_path):
    conf = tmp_path / "sessiond.conf"
    conf.write_text(_man_example("sessiond.conf.5", "# sessiond.conf"))
    r = check(conf)
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr


def _makefile_version():
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)\s*$", f.read(), re.M)
    assert m, "no VERSION in the Makefile"
    return m.group(1)


def test_one_version_from_the_makefile_to_the_binary_health_status_and_man_pages(server):
    r = subprocess.run([BIN, "-v"], capture_output=True, text=True, timeout=10)
    m = re.fullmatch(r"sessiond (\d+\.\d+\.\d+)\n", r.stdout)
    assert m, r.stdout
    version = m.group(1)
    assert server.health()[1]["version"] == version
    r = subprocess.run([BIN, "-c", server.conf_path, "-s", "status"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and f"sessiond {version} on " in r.stdout, r.stdout + r.stderr
    for page in ("sessiond.8", "sessiond.conf.5"):
        with open(os.path.join(ROOT, "man", page)) as f:
            shown = re.findall(r"sessiond (\d+\.\d+\.\d+)", f.read())
        assert shown == [version] * len(shown), (page, shown)
    with open(os.path.join(ROOT, "man", "sessiond.8")) as f:
        assert f"sessiond {version} on " in f.read()  # the -s status example
    # And the one place it is written down.
    assert _makefile_version() == version
