"""sessiond -s status: the running instance as a table, asked of its /api/health over one of
the configured listeners (loopback for a wildcard address, a Unix socket, TLS), with the LSB
exit statuses: 0 running, 3 not running."""
import os
import re
import signal
import subprocess

from conftest import BIN, Hammer, children_of, free_port, make_cert, wait_for

COLUMNS = ["ID", "PID", "STATE", "UPTIME", "RESTARTS", "CONNS", "REQUESTS", "RSS", "CPU"]


def status(conf_path):
    return subprocess.run([BIN, "-c", conf_path, "-s", "status"], capture_output=True,
                          text=True, timeout=15)


def table(r):
    """The master line and the worker rows (dicts by column name) of a status output."""
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split() == COLUMNS, r.stdout
    rows = []
    for line in lines[2:]:
        # RSS is "5.0 MiB": two words for one column.
        cells = line.split()
        cells[7:9] = [" ".join(cells[7:9])]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells)))
    return lines[0], rows


def replaced(s, pid, want):
    """Whether one health answer shows want workers running, pid not among them."""
    _, h = s.health()
    running = [w["pid"] for w in h["workers"]["list"] if w["state"] == "running"]
    return len(running) == want and pid not in running


def test_table_lists_every_worker_and_counts_its_restarts(server_factory):
    s = server_factory(workers=3)
    head, rows = table(status(s.conf_path))
    assert head.startswith(f"master pid {s.pid}, up ") and ", status ok;" in head
    assert "store lmdb, circuit closed;" in head and "3 of 3 worker(s) alive" in head
    assert sorted(int(r["PID"]) for r in rows) == s.worker_pids()
    assert sorted(int(r["ID"]) for r in rows) == [0, 1, 2]
    assert {r["STATE"] for r in rows} == {"running"}
    assert all(r["RESTARTS"] == "0" and r["RSS"].endswith(" MiB") and r["CPU"].endswith("%")
               for r in rows)

    victim = next(r for r in rows if r["ID"] == "1")
    os.kill(int(victim["PID"]), signal.SIGKILL)
    wait_for(lambda: replaced(s, int(victim["PID"]), 3), what="worker 1 respawned")
    head, after = table(status(s.conf_path))
    by_id = {r["ID"]: r for r in after}
    assert by_id["1"]["PID"] != victim["PID"] and by_id["1"]["RESTARTS"] == "1"
    assert by_id["0"]["RESTARTS"] == "0" and by_id["2"]["RESTARTS"] == "0"
    assert sorted(int(r["PID"]) for r in after) == s.worker_pids()
    assert "1 restart(s)" in head

    # Twice more for the same id: the count is the id's, not the instance's alone.
    for n in (2, 3):
        pid = int(by_id["1"]["PID"])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: replaced(s, pid, 3), what="worker 1 respawned again")
        _, after = table(status(s.conf_path))
        by_id = {r["ID"]: r for r in after}
        assert by_id["1"]["RESTARTS"] == str(n)


def test_not_running_exits_3(server_factory):
    s = server_factory(workers=1)
    assert status(s.conf_path).returncode == 0
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    r = status(s.conf_path)
    assert r.returncode == 3 and r.stdout == ""
    assert f"not running (no live master in {s.pidfile})" in r.stderr


def test_stale_pidfile_exits_3(server_factory):
    s = server_factory(start=False)
    with open(s.pidfile, "w") as f:
        f.write("999999\n")  # no such process
    r = status(s.conf_path)
    assert r.returncode == 3 and "not running" in r.stderr


def only_listeners(server_factory, listen, extra="", workers=1):
    """A server whose only listeners are listen (lines of the config), started and
    waited for through -s status itself, since the harness's loopback port is not one."""
    s = server_factory(workers=workers, start=False)
    with open(s.conf_path, "w") as f:
        f.write(f"{listen}\npidfile {s.pidfile}\nworkers {workers}\n{extra}\n")
    s.start(wait=False)
    wait_for(lambda: status(s.conf_path).returncode == 0 and
             len(children_of(s.pid)) == workers, what="status through the listener")
    return s


def test_wildcard_listener_is_asked_over_loopback(server_factory):
    s = only_listeners(server_factory, f"listen 0.0.0.0:{free_port()}", workers=2)
    _, rows = table(status(s.conf_path))
    assert sorted(int(r["PID"]) for r in rows) == s.worker_pids()


def test_unix_socket_listener(server_factory, tmp_path):
    sock = tmp_path / "s.sock"
    s = only_listeners(server_factory, f"listen unix:{sock}")
    _, rows = table(status(s.conf_path))
    assert [int(r["PID"]) for r in rows] == s.worker_pids()


def test_tls_only_listener(server_factory, tmp_path):
    crt, key = make_cert(str(tmp_path), "st", "ec")
    s = only_listeners(server_factory, f"listen 127.0.0.1:{free_port()} tls",
                       extra=f"tls_cert {crt}\ntls_key {key}")
    _, rows = table(status(s.conf_path))
    assert [int(r["PID"]) for r in rows] == s.worker_pids()


def test_unreachable_instance_is_an_error(server_factory, tmp_path):
    s = server_factory(workers=1)
    # The running master's config now names a port nobody listens on.
    with open(s.conf_path, "w") as f:
        f.write(f"listen 127.0.0.1:{free_port()}\npidfile {s.pidfile}\n")
    r = status(s.conf_path)
    assert r.returncode == 1
    assert f"pid {s.pid} is running, but its health cannot be read" in r.stderr
    assert "Connection refused" in r.stderr


def test_another_server_on_the_port_is_not_taken_for_ours(server_factory):
    ours = server_factory(workers=1)
    other = server_factory(workers=1)
    # Our pidfile, the other server's port.
    with open(ours.conf_path, "w") as f:
        f.write(f"listen 127.0.0.1:{other.port}\npidfile {ours.pidfile}\n")
    r = status(ours.conf_path)
    assert r.returncode == 1 and f"is not pid {ours.pid}'s" in r.stderr


def test_health_reports_each_workers_cpu(server_factory):
    s = server_factory(workers=1)
    _, h = s.health()
    w = h["workers"]["list"][0]
    assert isinstance(w["cpu"], float) and isinstance(w["restarts"], int)
    # A worker kept busy for a while shows a share of a core above nothing.
    hammer = Hammer(s.conn, clients=2)
    try:
        wait_for(lambda: s.health()[1]["workers"]["list"][0]["cpu"] > 0, timeout=15,
                 what="a busy worker's cpu above 0")
    finally:
        errors, _ = hammer.stop()
    assert errors == []
    _, rows = table(status(s.conf_path))
    assert re.fullmatch(r"\d+\.\d%", rows[0]["CPU"]), rows[0]["CPU"]
