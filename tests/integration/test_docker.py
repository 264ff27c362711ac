"""The image and docker-compose.yml on a real Docker engine: one image built
once, run as a non-root user with a working HEALTHCHECK; three nodes that
form one cluster of three voters by themselves (RAFT_BOOTSTRAP_EXPECT on the
service names, no join by hand), a write read back from another node, a
stopped leader that the other two replace, and that node started again,
back in the same cluster with what was written while it was down.

Skips (saying why) when there is no Docker CLI or compose, no engine answers
and none can be started, or no base image can be had. It may start dockerd
itself (root, ``dockerd`` installed, no daemon running) and then stops it.
The base image has no registry to come from: it is built once per machine by
scripts/docker-base.sh and reused while it exists (``RAFTKV_DOCKER_BASE``
names another one, e.g. python:3.11-slim where a registry answers).

Traffic goes only to 127.0.0.1, on host ports Docker picks for this project
(``RAFTKV_N*_PORT`` empty), and every node's identity is checked before it
is used, so the test never talks to anything it did not start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from cluster import REPO, wait_until

# the first run on a machine builds the base image and downloads every wheel
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

DEFAULT_BASE = "raftkv-base:bookworm"
IMAGE = "raftkv:test"
NODES = {"n1": (8000, 9000), "n2": (8001, 9001), "n3": (8002, 9002)}  # HTTP, Raft (docker-compose.yml)
BASE_BUILD_TIMEOUT = float(os.environ.get("RAFTKV_DOCKER_BASE_TIMEOUT", "900"))
IMAGE_BUILD_TIMEOUT = float(os.environ.get("RAFTKV_DOCKER_BUILD_TIMEOUT", "900"))


def run(cmd: list[str], timeout: float = 120, check: bool = True, env: dict | None = None,
        ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def engine_answers() -> bool:
    try:
        return run(["docker", "info"], timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def compose_command() -> list[str] | None:
    """The compose v2 plugin if present, else the v1 docker-compose."""
    try:
        has_plugin = run(["docker", "compose", "version"], timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        has_plugin = False  # a CLI that hangs on `compose` has no working plugin
    if has_plugin:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """An answering Docker engine; started here (and stopped at the end) if
    none runs and this process may start one."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (apt-get install docker.io)")
    if engine_answers():
        yield None
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        pytest.skip("no Docker engine answers, and this test cannot start one "
                    "(needs root and dockerd: apt-get install docker.io)")
    # vfs works everywhere, including inside a container where overlayfs
    # cannot stack; RAFTKV_DOCKERD_ARGS overrides it.
    args = os.environ.get("RAFTKV_DOCKERD_ARGS", "--storage-driver=vfs").split()
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([dockerd, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-1500:]
                pytest.skip(f"dockerd {' '.join(args)} did not come up:\n{tail}")
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def image_exists(name: str) -> bool:
    return run(["docker", "image", "inspect", name], timeout=30, check=False).returncode == 0


def image_id(name: str) -> str | None:
    proc = run(["docker", "image", "inspect", "--format", "{{.Id}}", name], timeout=30, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def base_image(docker_engine) -> str:
    """The image the Dockerfile starts FROM: reused while it exists, else
    built by scripts/docker-base.sh (or pulled, if another one is named)."""
    name = os.environ.get("RAFTKV_DOCKER_BASE", DEFAULT_BASE)
    if image_exists(name):
        return name
    if name != DEFAULT_BASE:
        try:
            pulled = run(["docker", "pull", name], timeout=BASE_BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"pulling the base image {name} took over {BASE_BUILD_TIMEOUT:.0f}s")
        if pulled.returncode != 0:
            pytest.skip(f"base image {name} is not here and cannot be pulled: {pulled.stderr.strip()[-500:]}")
        return name
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip(f"no base image {name}, and scripts/docker-base.sh cannot build it here "
                    "(needs root and debootstrap: apt-get install debootstrap)")
    started = time.monotonic()
    try:
        proc = run([str(REPO / "scripts" / "docker-base.sh"), name], timeout=BASE_BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"building the base image {name} took over {BASE_BUILD_TIMEOUT:.0f}s "
                    "(RAFTKV_DOCKER_BASE_TIMEOUT)")
    if proc.returncode != 0:
        pytest.skip(f"scripts/docker-base.sh could not build {name} "
                    f"(is Debian's mirror reachable?):\n{proc.stderr.strip()[-1500:]}")
    print(f"built base image {name} in {time.monotonic() - started:.0f}s")
    return name


class Compose:
    """docker-compose.yml under its own project name, with Docker choosing
    the host ports (all on 127.0.0.1)."""

    def __init__(self, command: list[str], base: str):
        self.project = f"raftkvtest{uuid.uuid4().hex[:10]}"
        self.command = [*command, "-p", self.project, "-f", str(REPO / "docker-compose.yml")]
        self.env = {**os.environ, "RAFTKV_IMAGE": IMAGE, "RAFTKV_BASE_IMAGE": base,
                    "RAFTKV_N1_PORT": "", "RAFTKV_N2_PORT": "", "RAFTKV_N3_PORT": "",
                    "LOG_LEVEL": "INFO"}
        self.ports: dict[str, int] = {}

    def __call__(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return run([*self.command, *args], timeout=timeout, check=check, env=self.env)

    def container(self, service: str) -> str:
        cid = self("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def host_port(self, service: str) -> int:
        out = self("port", service, str(NODES[service][0])).stdout.strip()
        host, _, port = out.rpartition(":")
        assert host == "127.0.0.1", f"{service} published on {out!r}, not on 127.0.0.1"
        return int(port)

    def url(self, service: str, path: str, **params: str) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.ports[service]}{path}{query}"

    def get(self, service: str, path: str, timeout: float = 5, **params: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url(service, path, **params), timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, {"error": body.decode(errors="replace")}

    def first_event(self, service: str, path: str, **params: str) -> tuple[str, dict]:
        """The first server-sent event of a stream: (event name, data)."""
        with urllib.request.urlopen(self.url(service, path, **params), timeout=10) as resp:
            event = None
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event is not None:
                    return event, json.loads(line[len("data: "):])
        raise AssertionError(f"{path} on {service} ended before its first event")

    def logs(self) -> str:
        return self("logs", "--no-color", "--tail", "80", check=False).stdout


def test_compose_cluster_forms_writes_reads_and_survives_a_stopped_leader(docker_engine, base_image):
    compose_cmd = compose_command()
    if compose_cmd is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed "
                    "(apt-get install docker-compose)")
    timings: dict[str, float] = {}
    compose = Compose(compose_cmd, base_image)

    # One image for three services: only n1 builds, all three run it.
    config = compose("config").stdout
    assert len(re.findall(r"^    build:", config, re.M)) == 1, config
    assert len(re.findall(rf"^    image: {re.escape(IMAGE)}$", config, re.M)) == 3, config
    assert "RAFT_NODE_ID: n1" in config and "RAFT_NODE_ID: n2" in config
    assert config.count("RAFT_BOOTSTRAP_EXPECT:") == 3 and "RAFT_BOOTSTRAP:" not in config, config

    previous = image_id(IMAGE)
    started = time.monotonic()
    built = compose("build", "--force-rm", timeout=IMAGE_BUILD_TIMEOUT)
    timings["build"] = time.monotonic() - started
    current = image_id(IMAGE)
    assert current, built.stdout[-2000:]
    if previous and previous != current:
        run(["docker", "rmi", previous], check=False)  # this test's own older image, now untagged
    output = built.stdout + built.stderr
    if "Sending build context" in output:  # the classic builder says how much it sent
        size = re.search(r"Sending build context to Docker daemon\s+([0-9.]+)\s*([kMG]?B)", output)
        assert size and (size.group(2) in ("B", "kB") or float(size.group(1)) < 5), size and size.group(0)

    inspect = json.loads(run(["docker", "image", "inspect", IMAGE]).stdout)[0]["Config"]
    assert inspect["User"] not in ("", "root", "0"), inspect["User"]
    assert inspect["Healthcheck"]["Test"][0] == "CMD" and "/readyz" in " ".join(inspect["Healthcheck"]["Test"])
    assert not any(e.startswith("RAFT_NODE_ID=") for e in inspect["Env"]), inspect["Env"]

    try:
        started = time.monotonic()
        compose("up", "-d", "--no-build", timeout=300)
        compose.ports = {name: compose.host_port(name) for name in NODES}

        def identity(name: str) -> bool:
            # the node on this port is ours: its id and its compose-network addresses
            status, st = compose.get(name, "/status")
            http, raft = NODES[name]
            return (status == 200 and st["id"] == name and st.get("raft_address") == f"{name}:{raft}"
                    and st.get("http_address") == f"{name}:{http}")

        for name in NODES:
            wait_until(lambda: identity(name), timeout=90, interval=0.3, what=f"{name} to answer")

        def one_cluster() -> str | None:
            # every node follows the same leader, in one configuration of the three as voters
            statuses = [compose.get(name, "/status")[1] for name in NODES]
            leaders = {(st.get("leader") or {}).get("id") for st in statuses}
            confs = {tuple(sorted((c["id"], c["address"], c["suffrage"]) for c in st["latest_configuration"]))
                     for st in statuses}
            expected = tuple((name, f"{name}:{raft}", "Voter") for name, (_, raft) in sorted(NODES.items()))
            return leaders.pop() if len(leaders) == 1 and confs == {expected} else None

        # No join by hand: the three found each other by their service names.
        first_leader = wait_until(one_cluster, timeout=30, interval=0.3, what="one cluster of three voters")
        assert first_leader in NODES, first_leader
        timings["up"] = time.monotonic() - started

        status, body = compose.get("n2", "/set", key="user", value="kj")  # forwarded to the leader
        assert status == 200, body
        status, body = compose.get("n3", "/get", key="user")
        assert status == 200 and body["value"] == "kj", body
        # n3's own copy, not only the leader's
        wait_until(lambda: compose.get("n3", "/get", key="user", stale="true")[1].get("value") == "kj",
                   timeout=15, interval=0.2, what="n3 to apply the write")

        # The dashboard works from the host through one published port: n1
        # relays n3's stream over the compose network, once n3's HTTP address
        # is in the replicated registry (a founder registers itself with the
        # leader a few heartbeats after the cluster formed; until then the
        # relay answers "pending").
        def relayed() -> tuple[str, dict] | None:
            event, hello = compose.first_event("n1", "/ui/stream", node="n3")
            if event == "unreachable" and hello.get("pending"):
                return None
            return event, hello
        event, hello = wait_until(relayed, timeout=30, interval=0.5, what="n1 to relay n3's stream")
        assert event == "hello" and hello["id"] == "n3" and hello["http"] == "n3:8002", (event, hello)

        containers = {name: compose.container(name) for name in NODES}

        def health(name: str) -> str:
            return run(["docker", "inspect", "--format", "{{.State.Health.Status}}",
                        containers[name]]).stdout.strip()

        wait_until(lambda: all(health(n) == "healthy" for n in NODES), timeout=60, interval=1,
                   what="every container's HEALTHCHECK to pass")
        uid = run(["docker", "exec", containers["n2"], "id", "-u"]).stdout.strip()
        assert uid != "0", "the node runs as root"

        # Stop the leader: SIGTERM, which the node handles (exit 0, well within docker's 10 s).
        stopped = first_leader
        others = [name for name in NODES if name != stopped]
        started = time.monotonic()
        run(["docker", "stop", containers[stopped]], timeout=60)
        stop_seconds = time.monotonic() - started
        state = json.loads(run(["docker", "inspect", containers[stopped]]).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and stop_seconds < 9, (state, stop_seconds)

        def new_leader() -> str | None:
            _, st = compose.get(others[0], "/status")
            return st["leader"]["id"] if st.get("leader") and st["leader"]["id"] in others else None

        started = time.monotonic()
        wait_until(new_leader, timeout=30, interval=0.3, what=f"{' or '.join(others)} to take over")
        timings["failover"] = time.monotonic() - started

        def write_after_stop() -> bool:
            return compose.get(others[1], "/set", key="after", value="stop")[0] == 200

        wait_until(write_after_stop, timeout=20, interval=0.5, what="a write after the leader stopped")
        assert compose.get(others[0], "/get", key="after")[1].get("value") == "stop"
        status, body = compose.get(others[0], "/get", key="user")
        # it serves the linearizable read itself, as leader or with the index its leader confirmed
        assert status == 200 and body["value"] == "kj" and body.get("served_by") == others[0], body

        # Start the stopped node again: it has its volume, so it neither forms
        # nor joins, and is back in the same cluster with the write it missed.
        started = time.monotonic()
        run(["docker", "start", containers[stopped]], timeout=60)
        compose.ports[stopped] = compose.host_port(stopped)  # Docker may publish it on another port
        wait_until(lambda: identity(stopped), timeout=60, interval=0.3, what=f"{stopped} to answer again")
        wait_until(lambda: compose.get(stopped, "/get", key="after", stale="true")[1].get("value") == "stop",
                   timeout=30, interval=0.3, what=f"{stopped} to catch up")
        wait_until(one_cluster, timeout=30, interval=0.3, what="the same cluster of three voters again")
        timings["restart"] = time.monotonic() - started
        logs = compose("logs", "--no-color", stopped).stdout
        assert "not joining: node has existing state" in logs, logs[-3000:]
    except BaseException:
        print(compose.logs())
        raise
    finally:
        compose("down", "-v", "--remove-orphans", timeout=180, check=False)
        print("docker timings (s):", {k: round(v, 1) for k, v in timings.items()})
    left = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={compose.project}"]).stdout
    assert not left.strip(), f"containers left behind by down -v: {left}"
