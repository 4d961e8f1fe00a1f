"""A shortened scripts/chaos: workers SIGKILLed every second under load, and one
SIGSTOPped past worker_timeout. The script judges its own figures; this checks that
it ran both scenarios and that they held."""
import os
import re
import subprocess
import sys

from conftest import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_chaos_kill_and_stop_hold():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "chaos"), "kill", "stop",
                        "--duration", "6", "--load", "python"],
                       env=dict(os.environ, SESSIOND_BIN=BIN), capture_output=True, text=True,
                       timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert out.count("HELD") == 2, out
    kills = int(re.search(r"kill: (\d+) workers SIGKILLed", out).group(1))
    assert kills >= 5, out
    acked, lost = map(int, re.search(r"sessions acknowledged\s+(\d+)\s+lost (\d+)", out).groups())
    assert acked > 100 and lost == 0, out
    assert re.search(r"replaced after\s+[0-9.]+ s", out), out
