"""sd_notify as systemd's Type=notify sees it: a datagram socket of our own in
NOTIFY_SOCKET, and the master's messages through a start, reloads and a stop; and the
unit file's promises."""
import os
import re
import signal
import socket

from conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Notifications:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(10)

    def next(self):
        return dict(line.split("=", 1) for line in self.sock.recv(4096).decode().splitlines())

    def until(self, key):
        """Messages up to the first that has key (STATUS-only updates may come between)."""
        seen = []
        while True:
            m = self.next()
            seen.append(m)
            if key in m:
                return m, seen


def test_ready_reloading_stopping_and_status(server_factory, tmp_path):
    note = Notifications(str(tmp_path / "notify.sock"))
    s = server_factory(env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}, start=False)
    s.start(wait=False)
    ready, _ = note.until("READY")
    assert ready["READY"] == "1" and ready["MAINPID"] == str(s.pid)
    assert ready["STATUS"] == "2 of 2 workers serving"
    assert s.health()[0] == 200  # READY=1 came once the workers serve
    # A reload: RELOADING=1, then READY=1 once the new generation serves.
    old = s.worker_pids()
    s.signal(signal.SIGHUP)
    reloading, _ = note.until("RELOADING")
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    ready, _ = note.until("READY")
    assert ready["STATUS"] == "2 of 2 workers serving"
    assert len(set(s.health_pids()) - set(old)) == 2  # the new generation serves
    # A refused reload is RELOADING=1 and READY=1 at once, the old workers still serving.
    with open(s.conf_path, "a") as f:
        f.write("bogus_directive 1\n")
    s.signal(signal.SIGHUP)
    note.until("RELOADING")
    ready, _ = note.until("READY")
    assert "reload refused" in ready["STATUS"]
    # A killed worker shows in STATUS until its replacement serves (once the workers of
    # the old generation are gone, so that the one killed is a current one).
    wait_for(lambda: len(s.worker_pids()) == 2, what="the old generation to exit")
    os.kill(s.worker_pids()[0], signal.SIGKILL)
    down, _ = note.until("STATUS")
    assert down["STATUS"] == "1 of 2 workers serving"
    up, _ = note.until("STATUS")
    assert up["STATUS"] == "2 of 2 workers serving"
    s.signal(signal.SIGTERM)
    stopping, _ = note.until("STOPPING")
    assert stopping["STOPPING"] == "1"
    assert s.wait_exit(15) == 0


def test_abstract_notify_socket(server_factory, tmp_path):
    name = f"sessiond-test-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    server_factory(env={"NOTIFY_SOCKET": "@" + name})
    assert b"READY=1" in sock.recv(4096)


def test_unit_file_keeps_its_promises():
    with open(os.path.join(ROOT, "scripts", "sessiond.service")) as f:
        unit = f.read()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert keys["Type"] == "notify"
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["KillSignal"] == "SIGTERM"
    # Above shutdown_timeout (10 s by default): systemd must not kill a drain in progress.
    assert int(keys["TimeoutStopSec"].rstrip("s")) > 10
    assert keys["NoNewPrivileges"] == "yes"
    assert keys["ProtectSystem"] == "strict"
    assert keys["StateDirectory"] == "sessiond"
    assert "-c /etc/sessiond/sessiond.conf" in keys["ExecStart"]
