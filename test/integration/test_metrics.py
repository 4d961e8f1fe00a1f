"""/metrics as Prometheus's own linter sees it, and the Grafana dashboard against it: every
series a panel queries is one the server exports, with labels it has, in PromQL that
parses (promtool, from Debian's prometheus package)."""
import asyncio
import json
import os
import re
import shutil
import subprocess

import pytest
import websockets

from conftest import call, create, keyed, run

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DASHBOARD = os.path.join(ROOT, "scripts", "grafana", "sessiond.json")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                                "(scripts/install-deps installs Debian's prometheus)")

# Grafana's variables, replaced by what Grafana would put there, so that promtool sees the
# PromQL that Prometheus will.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                "${instance}": ".*", "$instance": ".*"}
# Labels Prometheus adds to every scraped series, and the one histograms carry.
TARGET_LABELS = {"instance", "job", "le"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


async def traffic(s, token):
    """A subscriber, a publish from a client and one from the API, so that every series,
    the WebSocket counters too, has samples."""
    async with websockets.connect(f"ws://127.0.0.1:{s.port}/ws?token={token}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "room1", "id": 1}))
        assert json.loads(await ws.recv()) == {"op": "ok", "id": 1}
        await ws.send(json.dumps({"op": "publish", "channel": "room1", "data": {"n": 1},
                                  "id": 2}))
        status, _, body = await asyncio.to_thread(call, s, "POST",
                                                  "/api/channels/room1/publish",
                                                  {"data": {"n": 2}})
        assert status == 202 and body["recipients"] == 1, body
        got = []
        while len(got) < 2:
            r = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if r["op"] == "message":
                got.append(r["data"])
        assert sorted(d["n"] for d in got) == [1, 2]


def exposition(server_factory):
    s = keyed(server_factory)
    tokens = []
    for i in range(3):
        status, _, body = create(s, f"user{i}", {"i": i})
        assert status == 201, body
        tokens.append(body["token"])
    status, _, body = call(s, "GET", "/api/session",
                           headers={"Authorization": f"Bearer {tokens[0]}"})
    assert status == 200 and body["user"] == "user0"
    assert call(s, "GET", "/api/sessions/nope")[0] == 404
    run(traffic(s, tokens[1]))
    status, headers, data = s.request("GET", "/metrics")
    assert status == 200
    return data.decode()


def exported(text):
    """{series name: label names} of every sample in an exposition, with the labels
    Prometheus adds when it scrapes."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ", line)
        assert m, line
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        series.setdefault(m.group(1), set(TARGET_LABELS)).update(labels)
    return series


def promql(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def dashboard_queries(dash):
    """(where, PromQL) of every panel target and of the label_values() variables, whose
    metric is given as a selector."""
    out = []
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", promql(t["expr"])))
    for v in dash["templating"]["list"]:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", q)
        assert m, f"variable {v['name']}: {q!r} is not label_values(metric, label)"
        out.append((f"variable {v['name']!r}", f"count by ({m.group(2)}) ({m.group(1)})"))
    return out


def names_in(expr):
    """(metric names, label names) an expression refers to. Strings and durations go
    first; then what a label list or matcher holds is a label, a word before "(" is a
    function, and any other word is a metric."""
    labels = set()
    expr = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    def grouping(m):
        labels.update(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", m.group(2)))
        return ""
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                  grouping, expr)
    def matchers(m):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
        return " "
    expr = re.sub(r"\{([^}]*)\}", matchers, expr)
    metrics = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        word = m.group(1)
        if m.group(2) or word.lower() in PROMQL_WORDS or re.fullmatch(r"[0-9a-fA-Fx]+", word):
            continue
        metrics.add(word)
    return metrics, labels


def unknown_names(queries, series):
    """What the queries name that the server does not export, one line each."""
    problems = []
    all_labels = set().union(*series.values())
    for where, expr in queries:
        metrics, labels = names_in(expr)
        if not metrics:
            problems.append(f"{where}: no metric in {expr!r}")
        for name in sorted(metrics - series.keys()):
            problems.append(f"{where}: {name} is not exported")
        # A label is fine if one of the series the expression reads has it.
        have = set().union(*(series[n] for n in metrics if n in series)) or all_labels
        for label in sorted(labels - have):
            problems.append(f"{where}: no series of {sorted(metrics)} has label {label!r}")
    return problems


def check_rules(tmp_path, queries):
    """promtool check rules on the expressions as recording rules: (exit status, output).
    JSON strings are YAML strings, so json.dumps quotes each expression."""
    path = os.path.join(tmp_path, "dashboard.rules.yml")
    with open(path, "w") as f:
        f.write("groups:\n  - name: grafana\n    rules:\n")
        for i, (where, expr) in enumerate(queries):
            f.write(f"      # {where}\n      - record: dashboard:query_{i}\n"
                    f"        expr: {json.dumps(expr)}\n")
    r = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture
def metrics_text(server_factory):
    return exposition(server_factory)


def test_promtool_finds_no_problem_in_the_exposition(metrics_text):
    # The traffic shows in the figures this checks.
    assert re.search(r'^sessiond_http_requests_total\{code="201"\} 3$', metrics_text, re.M)
    assert re.search(r'^sessiond_http_requests_total\{code="404"\} [1-9]', metrics_text, re.M)
    assert re.search(r'^sessiond_websocket_messages_total\{direction="in"\} [2-9]',
                     metrics_text, re.M)
    assert re.search(r"^sessiond_sessions_active 3$", metrics_text, re.M)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=metrics_text,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_dashboard_queries_only_exported_series(metrics_text, tmp_path):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert 36 <= dash["schemaVersion"] <= 39
    assert any(v["name"] == "instance" for v in dash["templating"]["list"])
    queries = dashboard_queries(dash)
    assert len(queries) >= 15
    series = exported(metrics_text)
    problems = unknown_names(queries, series)
    assert not problems, "\n".join(problems)
    status, out = check_rules(str(tmp_path), queries)
    assert status == 0, out
    assert f"SUCCESS: {len(queries)} rules found" in out, out
    # Every series the server exports is on some panel (histograms by their buckets).
    shown = set().union(*(names_in(e)[0] for _, e in queries))
    wanted = {n for n in series if not n.endswith(("_sum", "_count"))}
    assert not wanted - shown, f"exported but on no panel: {sorted(wanted - shown)}"


def test_the_dashboard_checks_can_fail(metrics_text, tmp_path):
    # The checks above hold only if they can see a wrong panel: a renamed metric, a
    # histogram without its _bucket, a label the series lacks, PromQL that does not parse.
    series = exported(metrics_text)
    bad = [("a", 'sum(rate(sessiond_requests_total{instance=~".*"}[1m]))'),
           ("b", "histogram_quantile(0.99, sum by (le) "
                 "(rate(sessiond_http_request_duration_seconds[1m])))"),
           ("c", "sum by (status) (rate(sessiond_http_requests_total[1m]))")]
    problems = unknown_names(bad, series)
    assert any(p.startswith("a: sessiond_requests_total ") for p in problems), problems
    assert any(p.startswith("b: sessiond_http_request_duration_seconds ") for p in problems)
    assert any(p.startswith("c: ") and "'status'" in p for p in problems), problems
    assert unknown_names([("ok", "sum by (code) (rate(sessiond_http_requests_total[1m]))")],
                         series) == []
    status, out = check_rules(str(tmp_path), [("d", "sum(rate(sessiond_connections[1m])")])
    assert status != 0, out
