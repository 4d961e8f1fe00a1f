"""The log: every line names the process that wrote it (master, or worker and its id) and
its pid, in text and in log_format json, where every line must be a JSON object whatever
the message holds (here, a refused reload quoting a config value with quotes and a byte
that is not UTF-8)."""
import json
import os
import re
import signal

from conftest import wait_for

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(error|warn|info|debug)\] "
                  r"(master|worker (\d+)) (\d+): ")


def workers(s):
    """{pid: id} of the workers health lists now."""
    _, h = s.health()
    return {w["pid"]: w["id"] for w in h["workers"]["list"]}


def run_through_a_life(s, bad_value):
    """Kill a worker, refuse one reload (bad_value in the config), make another, then
    drain. Returns {pid: id} of every worker seen."""
    seen = workers(s)
    victim = next(pid for pid, wid in seen.items() if wid == 0)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in workers(s) and len(workers(s)) == 2 and s.health_ok(2),
             what="worker 0 respawned")
    seen.update(workers(s))

    with open(s.conf_path, "rb") as f:
        good = f.read()
    with open(s.conf_path, "wb") as f:
        f.write(good + b"max_body_bytes " + bad_value + b"\n")
    s.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in s.log(), what="the refused reload logged")
    with open(s.conf_path, "wb") as f:
        f.write(good)
    old = set(workers(s))
    s.signal(signal.SIGHUP)
    wait_for(lambda: not set(workers(s)) & old and s.health_ok(2), what="reloaded workers")
    seen.update(workers(s))

    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    return seen


def test_json_lines_name_their_process(server_factory):
    s = server_factory(conf="log_format json", workers=2)
    seen = run_through_a_life(s, b'"12\\"x\xff\\\\"')

    with open(s.log_path, "rb") as f:
        raw = f.read()
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    by_process = {"master": 0, "worker": 0}
    for obj in lines:
        assert TS.fullmatch(obj["ts"]), obj
        assert obj["level"] in ("error", "warn", "info", "debug"), obj
        assert isinstance(obj["msg"], str) and obj["msg"], obj
        by_process[obj["process"]] += 1
        if obj["process"] == "master":
            assert obj["pid"] == s.pid and "worker" not in obj, obj
        else:
            assert obj["process"] == "worker", obj
            assert seen.get(obj["pid"]) == obj["worker"], (obj, seen)
    assert by_process["master"] > 0 and by_process["worker"] > 0, by_process

    # The master's own account agrees with health about which pid is which worker.
    for obj in lines:
        m = re.fullmatch(r"started worker (\d+) \(pid (\d+)\)", obj["msg"])
        if m and int(m[2]) in seen:
            assert seen[int(m[2])] == int(m[1]), obj
    refused = [o for o in lines if o["msg"].startswith("reload refused")]
    assert len(refused) == 1 and refused[0]["level"] == "error"
    # The quotes and backslash came through as they were, the bad byte as U+FFFD.
    assert 'invalid size "12"x\ufffd\\" for "max_body_bytes"' in refused[0]["msg"], refused[0]
    # The worker killed with SIGKILL, the refused and the accepted reload all happened
    # in this one file, in JSON: the master said so.
    assert any("was killed by signal 9" in o["msg"] for o in lines if o["process"] == "master")
    assert any(o["msg"].startswith("reloading: generation 1") for o in lines)


def test_text_lines_name_their_process(server_factory):
    s = server_factory(workers=2)
    seen = run_through_a_life(s, b"12x")
    lines = s.log().splitlines()
    assert lines
    # Every line, from the very first (before the master had started its workers).
    for line in lines:
        m = TEXT.match(line)
        assert m, line
        pid = int(m[4])
        if m[2] == "master":
            assert pid == s.pid, line
        else:
            assert seen.get(pid) == int(m[3]), (line, seen)


def test_reload_switches_to_json(server_factory):
    s = server_factory(workers=1)
    old = set(workers(s))
    with open(s.conf_path, "a") as f:
        f.write("log_format json\n")
    s.signal(signal.SIGHUP)
    wait_for(lambda: not set(workers(s)) & old and s.health_ok(1), what="reloaded workers")
    new = workers(s)
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    lines = s.log().splitlines()
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert all(TEXT.match(line) for line in lines[:first_json])
    # After the switch: the master's and the new worker's lines are JSON; only the
    # replaced worker may finish its drain in text.
    for line in lines[first_json:]:
        if line.startswith("{"):
            obj = json.loads(line)
            assert obj["pid"] == s.pid or new.get(obj["pid"]) == obj.get("worker"), obj
        else:
            m = TEXT.match(line)
            assert m and int(m[4]) in old, line
    assert any(json.loads(line)["process"] == "worker" for line in lines[first_json:]
               if line.startswith("{"))
