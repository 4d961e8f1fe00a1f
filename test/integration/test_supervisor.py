"""The master: worker count, respawn and backoff, watchdog, memory limit, reload, drain,
scaling, single-process mode, the environment, -t, -s and the pidfile."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import BIN, Hammer, alive, children_of, wait_for


def test_workers_counted_in_health_and_ps(server_factory):
    s = server_factory(workers=3)
    pids = s.worker_pids()
    assert len(pids) == 3
    assert s.health_pids() == pids
    assert s.health()[1]["workers"]["count"] == 3


def test_kill9_worker_is_replaced(server):
    old = server.worker_pids()
    os.kill(old[0], signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if len(p) == 2 and old[0] not in p else None)(
        server.health_pids()), what="a replacement worker")
    assert old[1] in new
    assert server.health()[1]["workers"]["restarts"] == 1
    assert re.search(rf"worker \d \(pid {old[0]}\) was killed by signal 9", server.log())
    assert "sessiond_worker_restarts_total 1" in server.request("GET", "/metrics")[2].decode()


def test_crash_loop_backs_off_then_recovers(server_factory, tmp_path):
    crash = tmp_path / "crash"
    s = server_factory(env={"SESSIOND_TEST_CRASH_FILE": str(crash)})
    victim = s.worker_pids()[0]
    crash.touch()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "respawning in 800 ms" in s.log(), timeout=10, what="backoff to 800 ms")
    log = s.log()
    delays = [int(x) for x in re.findall(r"respawning in (\d+) ms", log)]
    assert delays[:4] == [100, 200, 400, 800], delays
    assert s.health()[1]["workers"]["restarts"] >= 4
    assert s.health()[1]["workers"]["alive"] == 1   # the healthy sibling still serves
    crash.unlink()
    wait_for(lambda: s.health()[1]["workers"]["alive"] == 2, timeout=10, what="recovery")


def test_fatal_exit_code_is_not_respawned(server_factory):
    s = server_factory(workers=1)
    pid = s.worker_pids()[0]
    with pytest.raises(Exception):
        s.request("GET", "/debug/exit?code=2", timeout=5)
    assert s.wait_exit(10) != 0
    assert "fatal status; not respawning" in s.log()
    assert "no workers left" in s.log()
    assert not alive(pid)


def test_watchdog_kills_a_stuck_worker(server_factory):
    s = server_factory(conf="worker_timeout 1s")
    before = s.worker_pids()
    threading.Thread(target=lambda: _ignore(s.request, "GET", "/debug/spin", timeout=8),
                     daemon=True).start()
    wait_for(lambda: "missed its heartbeat" in s.log(), timeout=8, what="the watchdog")
    wait_for(lambda: len(s.health_pids()) == 2 and s.health_pids() != before, timeout=8,
             what="a replacement")
    assert s.health()[1]["workers"]["restarts"] == 1


def _ignore(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except Exception:
        pass


def test_worker_over_max_rss_is_replaced_gracefully(server_factory):
    s = server_factory(conf="worker_max_rss 40m", workers=1)
    old = s.worker_pids()[0]
    assert s.request("GET", "/debug/alloc?mb=64")[0] == 200
    wait_for(lambda: "over worker_max_rss" in s.log(), timeout=5, what="the rss check")
    wait_for(lambda: s.worker_pids() and old not in s.worker_pids(), timeout=10,
             what="the old worker to go")
    assert s.health()[1]["workers"]["alive"] == 1
    # A graceful replacement is not a crash.
    assert s.health()[1]["workers"]["restarts"] == 0


def test_reload_with_valid_config_replaces_workers(server):
    old = server.worker_pids()
    server.write_conf("", workers=3)
    server.signal(signal.SIGHUP)
    wait_for(lambda: (lambda p: len(p) == 3 and not set(p) & set(old))(server.health_pids()),
             timeout=10, what="3 new workers")
    wait_for(lambda: not any(alive(p) for p in old), timeout=10, what="old workers to exit")
    assert server.health()[1]["workers"]["count"] == 3
    assert "reloading: generation 1 with 3 worker(s)" in server.log()


def test_reload_with_bad_config_keeps_running(server):
    old = server.worker_pids()
    with open(server.conf_path, "a") as f:
        f.write("workers many\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log(), what="the refusal")
    assert re.search(re.escape(server.conf_path) + r":\d+: .*workers", server.log())
    time.sleep(0.3)
    assert server.worker_pids() == old
    assert server.request("GET", "/api/health")[0] == 200


def test_reload_with_bad_namespace_keeps_running(server):
    old = server.worker_pids()
    with open(server.conf_path, "a") as f:
        f.write("namespace user subscribe=owner publish=none\nnamespace room subscribe=all\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log(), what="the refusal")
    assert re.search(re.escape(server.conf_path) + r":\d+: invalid value \"all\" for "
                     r"\"subscribe\" in namespace \"room\"", server.log())
    time.sleep(0.3)
    assert server.worker_pids() == old
    assert server.request("GET", "/api/health")[0] == 200


def test_term_finishes_slow_requests_and_exits_0(server):
    results = []

    def slow():
        try:
            results.append(server.request("GET", "/debug/sleep?ms=1500", timeout=10)[0])
        except Exception as e:  # noqa: BLE001 - recorded, asserted below
            results.append(repr(e))

    threads = [threading.Thread(target=slow) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(12) == 0
    elapsed = time.monotonic() - t0
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert elapsed < 10
    assert not os.path.exists(server.pidfile)


def test_term_kills_what_outlives_shutdown_timeout(server_factory):
    s = server_factory(conf="shutdown_timeout 1s")
    threading.Thread(target=lambda: _ignore(s.request, "GET", "/debug/sleep?ms=8000",
                                            timeout=10), daemon=True).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(8) == 0
    assert time.monotonic() - t0 < 3


def test_quit_stops_at_once(server):
    pids = server.worker_pids()
    t0 = time.monotonic()
    server.signal(signal.SIGQUIT)
    assert server.wait_exit(5) == 0
    assert time.monotonic() - t0 < 2
    assert not any(alive(p) for p in pids)


def test_ttin_and_ttou(server):
    server.signal(signal.SIGTTIN)
    wait_for(lambda: len(server.health_pids()) == 3, what="3 workers")
    assert server.health()[1]["workers"]["count"] == 3
    # Signals of one kind sent back to back may merge into one: wait between them.
    server.signal(signal.SIGTTOU)
    wait_for(lambda: len(server.worker_pids()) == 2, what="2 workers")
    server.signal(signal.SIGTTOU)
    wait_for(lambda: len(server.worker_pids()) == 1, what="1 worker")
    server.signal(signal.SIGTTOU)   # never below one
    time.sleep(0.3)
    assert len(server.worker_pids()) == 1
    assert "not scaling to 0" in server.log()


def test_single_process_mode(server_factory):
    s = server_factory(env={"ENABLE_CLUSTERING": "false"}, workers=None)
    assert children_of(s.pid) == []
    h = s.health()[1]
    assert h["workers"]["count"] == 1
    assert h["workers"]["list"][0]["pid"] == s.pid
    # HUP re-reads the config; a bad one is refused.
    with open(s.conf_path, "a") as f:
        f.write("max_body_bytes lots\n")
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.log(), what="the refusal")
    assert s.request("GET", "/api/health")[0] == 200
    # TERM drains: the slow request still completes.
    out = []
    t = threading.Thread(target=lambda: out.append(s.request("GET", "/debug/sleep?ms=800")[0]))
    t.start()
    time.sleep(0.3)
    s.signal(signal.SIGTERM)
    assert s.wait_exit(10) == 0
    t.join()
    assert out == [200]


def test_port_and_workers_from_environment(server_factory):
    from conftest import free_port
    port = free_port()
    s = server_factory(env={"PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "3"},
                       workers=None, start=False)
    s.port = port
    s.workers = 3
    s.start()
    assert len(s.worker_pids()) == 3


def test_bad_environment_value_is_an_error(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("listen 127.0.0.1:1\n")
    r = subprocess.run([BIN, "-c", str(conf)], env={**os.environ, "WORKERS": "lots"},
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "environment WORKERS" in r.stderr


def test_config_check(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("listen 127.0.0.1:8080\nworkers 2\nshutdown_timeout 5s\n")
    r = subprocess.run([BIN, "-t", "-c", str(good)], capture_output=True, text=True, timeout=10)
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK")
    bad = tmp_path / "bad.conf"
    bad.write_text("listen 127.0.0.1:8080\n# comment\nmax_body_bytes 12x\n")
    r = subprocess.run([BIN, "-t", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}:3: ")
    assert "max_body_bytes" in r.stderr
    r = subprocess.run([BIN, "-t", "-c", str(tmp_path / "missing.conf")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and "missing.conf" in r.stderr
    repo_conf = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "sessiond.conf")
    r = subprocess.run([BIN, "-t", "-c", repo_conf], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_config_check_namespaces(tmp_path):
    conf = tmp_path / "ns.conf"
    conf.write_text("namespace user subscribe=owner publish=none\n"
                    "namespace public subscribe=any publish=subscribers\n"
                    "namespace room subscribe=grant publish=grant presence=subscribers\n")
    check = lambda env=None: subprocess.run(  # noqa: E731
        [BIN, "-t", "-c", str(conf)], env={**os.environ, **(env or {})}, capture_output=True,
        text=True, timeout=10)
    r = check()
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr
    r = check({"SESSIOND_NAMESPACE": "user publish=none; chat subscribe=any;"})
    assert (r.returncode, r.stdout.strip()) == (0, "configuration OK"), r.stderr
    r = check({"SESSIOND_NAMESPACE": "chat subscribe=any; x:y"})
    assert r.returncode == 1
    assert r.stderr.startswith("environment SESSIOND_NAMESPACE: invalid namespace name \"x:y\"")
    conf.write_text("# rooms\nnamespace room subscribe=grant\nnamespace room history=lots\n")
    r = check()
    assert r.returncode == 1
    assert r.stderr.startswith(f"{conf}:3: invalid value \"lots\" for \"history\" in namespace "
                               "\"room\": expected a number from 0 to 100000"), r.stderr


def test_signal_commands_through_the_pidfile(server):
    run = lambda *a: subprocess.run([BIN, "-c", server.conf_path, "-s", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=10)
    r = run("status")
    assert r.returncode == 0 and str(server.pid) in r.stdout
    old = server.worker_pids()
    assert run("reload").returncode == 0
    wait_for(lambda: not set(server.health_pids()) & set(old), what="reloaded workers")
    assert run("stop").returncode == 0
    assert server.wait_exit(12) == 0
    r = run("status")
    assert r.returncode == 3 and "not running" in r.stderr


def test_stale_pidfile_is_replaced_and_live_one_refused(server_factory, tmp_path):
    s = server_factory(start=False)
    with open(s.pidfile, "w") as f:
        f.write("999999\n")   # no such process
    s.start()
    assert open(s.pidfile).read().strip() == str(s.pid)
    # A second master on the same pidfile refuses to start.
    r = subprocess.run([BIN, "-c", s.conf_path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"already running as pid {s.pid}" in r.stdout + r.stderr


def test_usr1_reopens_the_log_file(server_factory, tmp_path):
    log = tmp_path / "file.log"
    s = server_factory(conf=f"log_file {log}")
    wait_for(lambda: log.exists() and "started worker" in log.read_text(), what="the log file")
    os.rename(log, tmp_path / "file.log.1")
    s.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists(), what="a new log file")
    s.signal(signal.SIGTTIN)
    wait_for(lambda: "scaling to 3" in log.read_text(), what="a line in the new file")


def test_listens_on_ipv6_and_unix_sockets(server_factory, tmp_path):
    import http.client
    import socket as so
    from conftest import free_port
    port6 = free_port()
    sock = tmp_path / "s.sock"
    s = server_factory(conf=f"listen [::1]:{port6}\nlisten unix:{sock}")
    c = http.client.HTTPConnection("::1", port6, timeout=5)
    c.request("GET", "/api/health")
    assert c.getresponse().status == 200
    u = so.socket(so.AF_UNIX)
    u.settimeout(5)
    u.connect(str(sock))
    u.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert u.recv(100).startswith(b"HTTP/1.1 200 ")
    u.close()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(12) == 0
    assert not sock.exists()   # removed on exit


def test_workers_do_not_outlive_a_killed_master(server):
    pids = server.worker_pids()
    os.kill(server.pid, signal.SIGKILL)
    server.wait_exit(5)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=12, what="workers to exit")


def test_drain_closes_keepalive_connections_politely(server):
    c = server.conn()
    c.request("GET", "/api/health")
    r = c.getresponse()
    r.read()
    slow = []
    t = threading.Thread(target=lambda: slow.append(server.request("GET", "/debug/sleep?ms=1500")))
    t.start()
    time.sleep(0.3)
    server.signal(signal.SIGTERM)
    time.sleep(0.2)
    # The next request on a kept-alive connection is answered, with Connection: close, and
    # the instance says it is draining.
    c.request("GET", "/api/health")
    r = c.getresponse()
    body = r.read()
    assert r.status == 503
    assert r.getheader("Connection") == "close"
    assert r.getheader("Retry-After") is not None
    assert b'"status":"draining"' in body
    t.join()
    assert slow[0][0] == 200
    assert server.wait_exit(12) == 0


def test_reload_under_load_drops_nothing(server):
    load = Hammer(server.conn, clients=4)
    for _ in range(3):
        time.sleep(0.7)
        old = server.worker_pids()
        server.signal(signal.SIGHUP)
        wait_for(lambda: not set(server.health_pids()) & set(old), timeout=10,
                 what="the new generation")
    time.sleep(0.5)
    errors, answered = load.stop()
    assert errors == []
    assert answered > 100


def test_without_a_config_file_it_runs_on_defaults(tmp_path):
    from conftest import free_port
    import http.client
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1"})
    p = subprocess.Popen([BIN], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        def up():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        wait_for(up, what="sessiond on built-in defaults")
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    assert "using built-in defaults" in out


def test_make_install_puts_binary_and_man_pages(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={tmp_path}", "PREFIX=/usr"], cwd=root,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for rel in ["usr/sbin/sessiond", "usr/share/man/man8/sessiond.8",
                "usr/share/man/man5/sessiond.conf.5"]:
        assert (tmp_path / rel).exists(), rel
    r = subprocess.run([str(tmp_path / "usr/sbin/sessiond"), "-v"], capture_output=True,
                       text=True, timeout=10)
    assert r.stdout.startswith("sessiond ")
