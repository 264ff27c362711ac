"""deploy/kubernetes/raftkv.yaml agrees with raftkv: no cluster runs here, so
the manifests are read, not applied. Every variable set is a setting raftkv
reads (from the settings table itself) and every value parses as the node
would parse it; the ports, the probes, the names the pods dial and the
labels that tie the objects together all agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from raftkv.config.settings import _setting_fields, load_settings

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "raftkv.yaml"
# set only to be expanded into the settings below them ($(POD_NAME))
HELPERS = {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
# what the downward API and the expansion would give the first pod
POD = {"POD_NAME": "raftkv-0", "POD_NAMESPACE": "prod"}


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind_name = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    assert len(by_kind_name) == len(docs), "two objects of one kind share a name"
    return by_kind_name


@pytest.fixture(scope="module")
def statefulset(objects) -> dict:
    return objects["StatefulSet/raftkv"]


@pytest.fixture(scope="module")
def container(statefulset) -> dict:
    (c,) = statefulset["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def env(container) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def _expand(value: str, known: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion, for the variables defined above."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: known[m.group(1)], value)


def _pod_environment(env: dict[str, dict], pod: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, e in env.items():
        if "valueFrom" in e:
            out[name] = {"metadata.name": pod["POD_NAME"],
                         "metadata.namespace": pod["POD_NAMESPACE"]}[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            out[name] = _expand(e["value"], out)  # only variables defined earlier expand
    return out


def test_every_variable_set_is_a_raftkv_setting(env):
    settings = {f.metadata["env"] for f in _setting_fields()}
    unknown = set(env) - settings - set(HELPERS)
    assert not unknown, f"not raftkv settings: {sorted(unknown)}"
    for name, field_path in HELPERS.items():
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == field_path
    used = " ".join(e.get("value", "") for e in env.values())
    assert all(f"$({name})" in used for name in HELPERS), "a helper variable that nothing expands"
    for name in ("RAFT_BOOTSTRAP_EXPECT", "RAFT_JOIN", "RAFT_LEAVE_ON_TERMINATE", "ADVERTISE_ADDR",
                 "HTTP_ADVERTISE_ADDR", "RAFT_NODE_ID", "RAFT_VOLUME_DIR", "BIND_ADDR"):
        assert name in env, name


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_each_pod_starts_with_settings_raftkv_accepts(env, ordinal):
    pod = {**POD, "POD_NAME": f"raftkv-{ordinal}"}
    values = {k: v for k, v in _pod_environment(env, pod).items() if k not in HELPERS}
    s = load_settings(values)  # ConfigError if any value does not parse, or they contradict
    host = f"raftkv-{ordinal}.raftkv-peers.prod.svc.cluster.local"
    assert s.node_id == f"raftkv-{ordinal}"
    assert s.bind_addr == "0.0.0.0"
    assert s.raft_address() == f"{host}:{s.raft_port}"
    assert s.http_address() == f"{host}:{s.http_port}"
    assert s.bootstrap_expect == 3 and not s.bootstrap
    assert s.leave_on_terminate is False  # pods of a StatefulSet come back with their volume


def test_the_seeds_are_every_pod_on_the_headless_service(objects, statefulset, env):
    s = load_settings({k: v for k, v in _pod_environment(env, POD).items() if k not in HELPERS})
    replicas = statefulset["spec"]["replicas"]
    assert replicas == s.bootstrap_expect == 3
    service = statefulset["spec"]["serviceName"]
    assert objects[f"Service/{service}"]["spec"]["clusterIP"] == "None"
    assert objects[f"Service/{service}"]["spec"]["publishNotReadyAddresses"] is True
    name = statefulset["metadata"]["name"]
    assert s.join == tuple(f"http://{name}-{i}.{service}.prod.svc.cluster.local:{s.http_port}"
                           for i in range(replicas))
    # each pod advertises the name the others have among their seeds
    assert all(f"http://{_expand(env['HTTP_ADVERTISE_ADDR']['value'], {**POD, 'POD_NAME': f'{name}-{i}'})}"
               in s.join for i in range(replicas))
    # all at once: with OrderedReady the second pod would wait for the first
    # to be ready, which needs the cluster the three of them form
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_ports_agree_with_the_settings(objects, container, env):
    s = load_settings({k: v for k, v in _pod_environment(env, POD).items() if k not in HELPERS})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": s.http_port, "raft": s.raft_port}
    peers = {p["name"]: (p["port"], p["targetPort"]) for p in objects["Service/raftkv-peers"]["spec"]["ports"]}
    assert peers == {"http": (s.http_port, "http"), "raft": (s.raft_port, "raft")}
    clients = objects["Service/raftkv"]["spec"]
    assert clients.get("clusterIP") != "None"
    assert [(p["name"], p["targetPort"]) for p in clients["ports"]] == [("http", "http")]


def test_probes_ask_readyz_and_status_on_the_http_port(container):
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/readyz", "http")
    assert (live["path"], live["port"]) == ("/status", "http")
    # /readyz waits up to half a second for the node to apply the leader's commit index
    assert container["readinessProbe"]["timeoutSeconds"] >= 1


def test_the_volume_is_mounted_where_the_node_keeps_its_data(statefulset, container, env):
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["RAFT_VOLUME_DIR"]["value"]
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 10001  # the image's user (Dockerfile)
    # room for the leave (RAFT_APPLY_TIMEOUT, 10s) before the SIGKILL
    assert pod["terminationGracePeriodSeconds"] >= 15


def test_labels_and_selectors_agree(objects, statefulset):
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in ("Service/raftkv", "Service/raftkv-peers"):
        assert objects[service]["spec"]["selector"].items() <= labels.items(), service
    pdb = objects["PodDisruptionBudget/raftkv"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
