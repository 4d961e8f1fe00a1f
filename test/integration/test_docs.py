"""Every directive is documented where operators look for it, and the man pages lint clean."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def directives():
    names = re.findall(r'^\s+\{"([a-z_]+)", CT_', read("common/conf.c"), re.M)
    assert len(names) >= 20
    return names


def test_every_directive_is_in_the_man_page_and_the_example_config():
    man = read("man/sessiond.conf.5")
    example = read("conf/sessiond.conf")
    for name in directives():
        assert re.search(rf"^\.It Ic {name}\b", man, re.M), f"{name} missing from sessiond.conf.5"
        assert re.search(rf"^(# )?{name} ", example, re.M), f"{name} missing from sessiond.conf"


def test_signals_and_environment_are_in_sessiond_8():
    man = read("man/sessiond.8")
    for word in ["SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGTTIN", "SIGTTOU", "SIGUSR1",
                 "PORT", "HOST", "WORKERS", "WEB_CONCURRENCY", "ENABLE_CLUSTERING", "LOG_LEVEL",
                 "SESSIOND_", "/api/health", "/livez", "/readyz", "/metrics"]:
        assert word in man, word


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
def test_man_pages_lint_clean():
    # Cross-references to pages that are not installed yet are STYLE notes, not warnings.
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning", "man/sessiond.8",
                        "man/sessiond.conf.5"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
