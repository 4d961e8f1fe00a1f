"""A new binary without a refused request (USR2, sessiond -s upgrade): the new master takes
the listening sockets, its workers serve, the old master drains and exits; a new master
that fails leaves the old one serving with its pidfile. And the sockets systemd hands over
(LISTEN_FDS), which are the same mechanism."""
import http.client
import os
import shutil
import signal
import subprocess
import time

from conftest import (BIN, Hammer, alive, call, children_of, create, deploy, exchange,
                      free_port, new_master, pidfile_pid, wait_for)


def upgradable(server_factory, tmp_path, conf="", **kw):
    """A server run from a copy of the binary in tmp_path, which a test can replace."""
    path = str(tmp_path / "sessiond-bin")
    shutil.copy(BIN, path)
    return server_factory(conf=conf, bin=path, **kw)


def upgrade_under_load(s, send):
    """One upgrade under keep-alive load; returns (old master, new master)."""
    old = pidfile_pid(s)
    old_workers = set(children_of(old))
    load = Hammer(s.conn, clients=6)
    try:
        time.sleep(0.3)
        deploy(s)
        send(old)
        new = new_master(s, old)
        wait_for(lambda: not alive(old), timeout=15, what="the old master to exit")
        time.sleep(0.3)
    finally:
        errors, answered = load.stop()
    assert errors == [] and answered > 100, (errors[:5], answered)
    workers = children_of(new)
    assert len(workers) == 2 and not set(workers) & old_workers, (workers, old_workers)
    assert s.health()[0] == 200
    return old, new


def test_usr2_under_keepalive_load_replaces_every_process(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    first, second = upgrade_under_load(s, lambda pid: os.kill(pid, signal.SIGUSR2))
    assert first == s.pid
    # The new master can be upgraded in turn (its workers' roster range is the other one).
    _, third = upgrade_under_load(s, lambda pid: os.kill(pid, signal.SIGUSR2))
    assert len({first, second, third}) == 3
    log = s.log()
    assert f"upgrade: the new master (pid {second}) serves; draining this one" in log
    assert f"upgrade: serving in place of pid {first}" in log


def test_s_upgrade_waits_for_the_new_master(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    done = {}

    def command(old):
        done["r"] = subprocess.run([s.bin, "-c", s.conf_path, "-s", "upgrade"], text=True,
                                   capture_output=True, timeout=60)

    old, new = upgrade_under_load(s, command)
    r = done["r"]
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sessiond: upgraded: pid {new} serves in place of pid {old}\n"


def test_a_binary_that_fails_leaves_the_old_master_serving(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    workers = s.worker_pids()
    deploy(s, "exit 1")
    r = subprocess.run([BIN, "-c", s.conf_path, "-s", "upgrade"], text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 1 and "the upgrade did not take" in r.stderr, r
    assert pidfile_pid(s) == s.pid and s.worker_pids() == workers
    assert s.health()[0] == 200
    lines = [ln for ln in s.log().splitlines() if "upgrade failed" in ln]
    assert len(lines) == 1 and "exited with status 1" in lines[0], lines
    # The next deploy is a good one, and takes.
    deploy(s)
    os.kill(s.pid, signal.SIGUSR2)
    new_master(s, s.pid)


def test_a_config_broken_since_start_leaves_the_old_master_serving(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    with open(s.conf_path, "a") as f:
        f.write("bogus_directive 1\n")
    deploy(s)
    s.signal(signal.SIGUSR2)
    wait_for(lambda: "upgrade failed" in s.log(), what="the failure in the log")
    assert pidfile_pid(s) == s.pid and s.health()[0] == 200
    assert 'unknown directive "bogus_directive"' in s.log()  # the new master's own word


def test_an_upgrade_keeps_the_store(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path)
    with open(s.conf_path, "a") as f:
        f.write(f"store_path {tmp_path}/elsewhere\n")
    s.signal(signal.SIGUSR2)
    wait_for(lambda: "upgrade failed" in s.log(), what="the failure in the log")
    assert "an upgrade keeps the store: store_path" in s.log()
    assert not os.path.exists(tmp_path / "elsewhere")  # refused before anything was made
    assert pidfile_pid(s) == s.pid and s.health()[0] == 200


def deploy_crashing_workers(s, tmp_path):
    """A new binary whose workers die at start (the test build's crash hook): never ready."""
    crash = tmp_path / "crash"
    crash.touch()
    real = s.bin + ".real"
    shutil.copy(BIN, real)
    deploy(s, f'SESSIOND_TEST_CRASH_FILE={crash} exec {real} "$@"')


def started_pid(s):
    """The pid of the new master the log says the old one started."""
    line = [ln for ln in s.log().splitlines() if "upgrade: started a new master" in ln][-1]
    return int(line.split("(pid ")[1].split(")")[0])


def test_workers_that_never_serve_are_stopped_at_upgrade_timeout(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path, conf="upgrade_timeout 1s")
    deploy_crashing_workers(s, tmp_path)
    s.signal(signal.SIGUSR2)
    line = wait_for(lambda: [ln for ln in s.log().splitlines() if "upgrade failed" in ln],
                    what="the failure in the log")
    assert "did not serve within upgrade_timeout (1000 ms), and is stopped" in line[0]
    pid = started_pid(s)
    assert f"the new master (pid {pid})" in line[0]
    wait_for(lambda: not alive(pid), what="the stopped new master to exit")
    assert pidfile_pid(s) == s.pid and s.health()[0] == 200
    assert len(s.worker_pids()) == 2


def test_term_during_an_upgrade_stops_the_new_master_too(server_factory, tmp_path):
    s = upgradable(server_factory, tmp_path, conf="upgrade_timeout 30s")
    deploy_crashing_workers(s, tmp_path)
    s.signal(signal.SIGUSR2)
    wait_for(lambda: "taking over from pid" in s.log(), what="the new master to start")
    new = started_pid(s)
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert f"upgrade abandoned: stopping the new master (pid {new}) too" in s.log()
    wait_for(lambda: not alive(new), what="the new master to exit")


def test_socket_activation_takes_the_inherited_socket(server_factory, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate (Debian's systemd package) is needed"
    s = server_factory(start=False)
    other = free_port()
    with open(s.conf_path, "a") as f:
        f.write(f"listen 127.0.0.1:{other}\n")
    # The activator binds the config's first address, and execs sessiond in its own
    # process at the first connection, with the socket as fd 3.
    s.bin = str(tmp_path / "sessiond-bin")
    shutil.copy(BIN, s.bin)
    s.logf = open(s.log_path, "ab")
    s.proc = subprocess.Popen([activate, "-l", f"127.0.0.1:{s.port}", s.bin, "-c", s.conf_path],
                              stdin=subprocess.DEVNULL, stdout=s.logf,
                              stderr=subprocess.STDOUT, env=s.env)
    wait_for(lambda: s.health()[0] == 200, what="the activated sessiond to serve")
    assert pidfile_pid(s) == s.pid
    assert os.readlink(f"/proc/{s.pid}/fd/3").startswith("socket:")
    assert "1 listening socket(s) from systemd (LISTEN_FDS)" in s.log()
    c = http.client.HTTPConnection("127.0.0.1", other, timeout=5)
    assert exchange(c, "GET", "/api/health")[0] == 200  # the address it bound itself
    # The inherited socket is handed on at an upgrade, like those the master bound.
    deploy(s)
    s.signal(signal.SIGUSR2)
    new = new_master(s, s.pid)
    wait_for(lambda: not alive(s.pid), what="the activated master to exit")
    assert s.health()[0] == 200 and exchange(c, "GET", "/api/health")[0] == 200
    assert os.readlink(f"/proc/{new}/fd/3").startswith("socket:")


def test_a_symlink_deploy_runs_the_new_release(server_factory, tmp_path):
    for release in ("r1", "r2"):
        (tmp_path / release).mkdir()
        shutil.copy(BIN, tmp_path / release / "sessiond")
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "r1" / "sessiond")
    s = server_factory(bin=str(link))
    assert os.readlink(f"/proc/{s.pid}/exe") == str(tmp_path / "r1" / "sessiond")
    # Capistrano's way: point the link at the new release, then upgrade.
    (tmp_path / "next").symlink_to(tmp_path / "r2" / "sessiond")
    os.replace(tmp_path / "next", link)
    s.signal(signal.SIGUSR2)
    new = new_master(s, s.pid)
    assert os.readlink(f"/proc/{new}/exe") == str(tmp_path / "r2" / "sessiond")
    # The instance lock names its holder now, for a second instance's refusal.
    with open(os.path.join(s.dir, "sessiond.db-instance.lock")) as f:
        assert int(f.read()) == new


def test_sessions_and_store_survive_an_upgrade(keyed_on_both, tmp_path):
    path = str(tmp_path / "sessiond-bin")
    shutil.copy(BIN, path)
    s = keyed_on_both(bin=path)
    status, _, made = create(s, user="alice", data={"n": 1})
    assert status == 201
    deploy(s)
    upgrade_under_load(s, lambda pid: os.kill(pid, signal.SIGUSR2))
    status, _, got = call(s, "GET", f"/api/sessions/{made['id']}")
    assert status == 200 and got["user"] == "alice" and got["data"] == {"n": 1}, got
    status, _, own = call(s, "GET", "/api/session",
                          headers={"Authorization": f"Bearer {made['token']}"})
    assert status == 200 and own["id"] == made["id"]  # the token still authenticates
    status, _, _ = create(s, user="alice")
    assert status == 201  # writes go on, in the same store
    status, _, page = call(s, "GET", "/api/users/alice/sessions")
    assert status == 200 and len(page["sessions"]) == 2, page
