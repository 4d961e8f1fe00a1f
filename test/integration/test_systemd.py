"""sd_notify as systemd's Type=notify sees it: a datagram socket of our own in
NOTIFY_SOCKET, and the master's messages through a start, reloads and a stop; and the
unit file's promises."""
import os
import re
import shutil
import signal
import socket

from conftest import BIN, wait_for

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


def test_socket_unit_hands_over_the_default_address():
    with open(os.path.join(ROOT, "scripts", "sessiond.socket")) as f:
        keys = dict(re.findall(r"^(\w+)=(.*)$", f.read(), re.M))
    # The address sessiond listens on by default, which it takes from LISTEN_FDS.
    assert keys["ListenStream"] == "0.0.0.0:8080"
    assert keys["Accept"] == "no" and keys["Service"] == "sessiond.service"


def test_an_upgrade_reports_the_new_mainpid(server_factory, tmp_path):
    note = Notifications(str(tmp_path / "notify.sock"))
    binary = str(tmp_path / "sessiond-bin")
    shutil.copy(BIN, binary)
    s = server_factory(env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}, bin=binary,
                       start=False)
    s.start(wait=False)
    note.until("READY")
    os.replace(shutil.copy(BIN, binary + ".new"), binary)
    s.signal(signal.SIGUSR2)
    moved, seen = note.until("MAINPID")
    # The new master's own READY=1 may come first; the old master's word is what counts
    # under NotifyAccess=main, and it names the new master.
    while "READY" in moved:
        moved, more = note.until("MAINPID")
        seen += more
    new = int(moved["MAINPID"])
    s.masters.append(new)
    assert new != s.pid and moved["STATUS"] == f"replaced by pid {new}"
    assert s.wait_exit(15) == 0
    note.sock.settimeout(0.5)  # whatever else the old master said on its way out
    try:
        while True:
            seen.append(note.next())
    except socket.timeout:
        note.sock.settimeout(10)
    assert not any("STOPPING" in m for m in seen), seen
    # systemd hears the new master from now on; its drain is the service's stop.
    os.kill(new, signal.SIGTERM)
    stopping, _ = note.until("STOPPING")
    assert stopping["STOPPING"] == "1"
