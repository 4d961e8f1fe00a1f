"""scripts/k8s/ holds what it claims, checked without a cluster: the manifests validate
against the Kubernetes API's schemas (kubernetes-models, as kubectl's client-side dry run
would check them), and their numbers agree with the image and the daemon (probes on the
container's port and /readyz and /livez, a grace period longer than the preStop pause plus the
drain, a CPU limit for "workers auto", selectors that find the pods, a store on a writable
volume)."""
import glob
import json
import os
import re
import subprocess

import pytest
import yaml  # python3-yaml, which scripts/install-deps installs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def manifest(name):
    docs = [d for d in yaml.safe_load_all(read("scripts", "k8s", name)) if d is not None]
    assert len(docs) == 1, f"{name}: one object per file"
    return docs[0]


def seconds(text):
    """A sessiond duration ("10s", "250ms", "2m", "1h", "7") in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text)
    assert m, f"not a duration: {text!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def conf_directive(text, name):
    m = re.search(rf"^{name}\s+(\S+)", text, re.M)
    return m.group(1) if m else None


def shutdown_timeout():
    """The drain the image's config asks for: its own value, else the built-in default."""
    m = re.search(r'\{"shutdown_timeout", CT_DURATION, [^"]*"(\w+)"', read("common", "conf.c"))
    assert m, "shutdown_timeout's default not found in common/conf.c"
    value = conf_directive(read("scripts", "container.conf"), "shutdown_timeout") or m.group(1)
    return max(seconds(value), seconds(m.group(1)))


@pytest.fixture(scope="module")
def deployment():
    return manifest("deployment.yaml")


@pytest.fixture(scope="module")
def pod(deployment):
    return deployment["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod):
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def container_port(container, port):
    """A probe's or Service's port (a name or a number) as the container's port number."""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return ports[port] if isinstance(port, str) else port


def test_the_manifests_are_the_kinds_they_say(deployment):
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    svc, pdb = manifest("service.yaml"), manifest("pdb.yaml")
    assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service")
    assert (pdb["apiVersion"], pdb["kind"]) == ("policy/v1", "PodDisruptionBudget")


def test_the_container_runs_the_images_sessiond_on_its_port(container):
    dockerfile = read("scripts", "Dockerfile")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert container.get("command", cmd) + container.get("args", []) == cmd
    assert cmd == ["sessiond", "-c", "/etc/sessiond/sessiond.conf"]
    port = container_port(container, "http")
    assert env_of(container)["PORT"]["value"] == str(port)
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.M)


@pytest.mark.parametrize("probe,path", [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")])
def test_probes_ask_health_on_the_container_port(container, probe, path):
    p = container[probe]
    assert p["httpGet"]["path"] == path
    assert container_port(container, p["httpGet"]["port"]) == int(env_of(container)["PORT"]["value"])
    assert 1 <= p["periodSeconds"] <= 30
    assert p["timeoutSeconds"] < p["periodSeconds"]


def test_liveness_is_more_patient_than_readiness(container):
    ready, live = container["readinessProbe"], container["livenessProbe"]
    # Readiness takes a draining or Redis-less pod out at once; liveness (which Redis
    # does not move) restarts only a pod whose loop stays stuck.
    assert ready["periodSeconds"] * ready["failureThreshold"] < \
        live["periodSeconds"] * live["failureThreshold"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30


def prestop_sleep(container):
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert os.path.basename(command[0]) == "sleep", command
    return float(command[1])


def test_grace_period_covers_the_prestop_pause_and_the_drain(pod, container):
    pause = prestop_sleep(container)
    assert 1 <= pause <= 15
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + shutdown_timeout(), \
        f"terminationGracePeriodSeconds {grace} <= preStop {pause} + shutdown_timeout " \
        f"{shutdown_timeout()}: the kubelet would SIGKILL a drain"


def test_a_cpu_limit_sizes_workers_auto(container):
    # workers auto reads the cgroup quota this limit sets; WORKERS would override it.
    assert "cpu.max" in read("common", "cores.c")
    assert conf_directive(read("scripts", "container.conf"), "workers") == "auto"
    cpu = str(container["resources"]["limits"]["cpu"])
    assert re.fullmatch(r"\d+(\.\d+)?|\d+m", cpu), cpu
    assert not {"WORKERS", "WEB_CONCURRENCY"} & set(env_of(container))


def test_replicas_share_redis_from_a_secret(deployment, container):
    assert deployment["spec"]["replicas"] > 1
    redis = env_of(container)["REDIS_URL"]
    assert "value" not in redis
    assert redis["valueFrom"]["secretKeyRef"]["key"]


def test_it_runs_unprivileged_on_a_read_only_root(pod, container):
    pod_sc, sc = pod["spec"]["securityContext"], container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    uid = re.search(r"^USER (\d+)", read("scripts", "Dockerfile"), re.M).group(1)
    assert str(pod_sc["runAsUser"]) == uid
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    # The store's directory must be a volume, since nothing else is writable.
    store_dir = os.path.dirname(conf_directive(read("scripts", "container.conf"), "store_path"))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert store_dir in mounts, f"{store_dir} is not mounted"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[store_dir]] or \
        "persistentVolumeClaim" in volumes[mounts[store_dir]]


def test_selectors_find_the_pods(deployment, pod, container):
    labels = pod["metadata"]["labels"]
    for name, selector in [("deployment", deployment["spec"]["selector"]["matchLabels"]),
                           ("service", manifest("service.yaml")["spec"]["selector"]),
                           ("pdb", manifest("pdb.yaml")["spec"]["selector"]["matchLabels"])]:
        assert selector, name
        assert selector.items() <= labels.items(), f"{name} selector {selector} misses {labels}"
    for port in manifest("service.yaml")["spec"]["ports"]:
        assert container_port(container, port["targetPort"]) == container_port(container, "http")


def test_the_budget_lets_a_node_drain(deployment):
    spec = manifest("pdb.yaml")["spec"]
    replicas = deployment["spec"]["replicas"]
    if "maxUnavailable" in spec:
        assert 1 <= spec["maxUnavailable"] < replicas
    else:
        assert spec["minAvailable"] < replicas


# The schemas: kubernetes-models (from npm, in test/integration/node) checks each object
# against the OpenAPI schema of its kind, as kubectl's client-side dry run would.
NODE_DIR = os.path.join(ROOT, "test", "integration", "node")


def validate(*args, stdin=None):
    r = subprocess.run(["node", os.path.join(NODE_DIR, "k8s_validate.mjs"), *args],
                       input=stdin, capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert r.stderr == "", r.stderr
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()]


def test_manifests_validate_against_the_kubernetes_schemas():
    rc, objects = validate(*sorted(glob.glob(os.path.join(ROOT, "scripts", "k8s", "*.yaml"))))
    assert [o for o in objects if not o["ok"]] == [] and rc == 0
    assert sorted(o["kind"] for o in objects) == ["Deployment", "PodDisruptionBudget", "Service"]


def test_the_schema_check_catches_a_broken_manifest():
    d = manifest("deployment.yaml")
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    rc, objects = validate("-", stdin=json.dumps(d))
    assert rc == 1 and not objects[0]["ok"]
    assert "containerPort" in objects[0]["error"]
