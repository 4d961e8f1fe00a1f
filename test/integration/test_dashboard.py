"""The live dashboard (/dashboard) in a real browser: headless Chromium, driven by
node/dashboard_probe.mjs with playwright-core, against a real sessiond with two workers.

The probe and this test talk in JSON lines: the probe says which worker pids the tiles
show, this test checks them against the master's children, SIGKILLs one worker and says
so on the probe's stdin, and the probe waits for the page, still the same page polling
/api/health, to replace the dead worker's tile with its successor's.
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import threading

import pytest

from conftest import wait_for

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
PROBE = os.path.join(NODE_DIR, "dashboard_probe.mjs")
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not (shutil.which("node") and os.path.exists(CHROMIUM)
         and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core"))),
    reason="needs node, /usr/bin/chromium and playwright-core in test/integration/node")


class Probe:
    """The node driver, in a process group of its own so that Chromium goes with it."""

    def __init__(self, url, shot, workers, log_path):
        self.stderr = open(log_path, "wb")
        self.proc = subprocess.Popen(["node", PROBE, url, shot, str(workers)], cwd=NODE_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace"))
        self.lines.put(None)  # end of output

    def step(self, want, timeout=40):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the probe said nothing for {timeout}s (waiting for {want!r})")
        assert line is not None, f"the probe exited ({self.proc.poll()}) before {want!r}"
        msg = json.loads(line)
        assert msg["step"] != "error", f"probe: {msg['message']}"
        assert msg["step"] == want, msg
        return msg

    def send(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (the node process, Chromium and its helpers).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.stderr.close()


def test_tiles_follow_the_workers_across_a_respawn(server_factory, tmp_path):
    server = server_factory(workers=2)
    pids = wait_for(lambda: len(server.worker_pids()) == 2 and server.worker_pids(),
                    what="two workers")
    shot = str(tmp_path / "dashboard.png")
    probe = Probe(f"http://127.0.0.1:{server.port}/dashboard", shot, 2,
                  str(tmp_path / "probe.stderr"))
    try:
        first = probe.step("tiles")
        assert first["pids"] == pids == server.worker_pids()
        assert all(t["state"] == "running" for t in first["tiles"])
        assert sorted(t["id"] for t in first["tiles"]) == [0, 1]
        assert first["status"] == "ok"

        with open(shot, "rb") as f:
            png = f.read()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 20000, f"the screenshot is only {len(png)} bytes"

        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        probe.send(f"killed {victim}")
        after = probe.step("changed")
        now = wait_for(lambda: (len(server.worker_pids()) == 2 and victim not in server.worker_pids()
                                and server.worker_pids()), what="the worker's successor")
        assert victim not in after["pids"]
        assert after["pids"] == now, "the tiles are not the master's workers after the respawn"
        assert set(after["pids"]) - set(pids), "no new pid appeared"
        assert pids[1] in after["pids"], "the surviving worker's tile went away"

        assert after["same_page"] and after["navigations"] == 1, "the page navigated or reloaded"
        assert after["csp_violations"] == []
        assert after["page_errors"] == []
        assert after["foreign_requests"] == []
        # A poll that was on the killed worker's connection may fail once; that is the
        # page's disconnected state working, not an error of the page.
        errors = [e for e in after["console_errors"]
                  if not (e["phase"] == "after kill" and "net::ERR_" in e["text"])]
        assert errors == []
    finally:
        probe.close()
