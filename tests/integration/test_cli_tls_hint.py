"""The CLI against a TLS node, as a new user first meets it: plain HTTP to
the HTTPS port, an https:// address without the CA, and --cacert pointed at
a plain node each end in one line saying what to do, never "Remote end
closed connection without response" or a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from cluster import REPO, Cluster, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test CA")]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def nodes(tmp_path):
    """One TLS node and one plain node, each a one-voter cluster."""
    certs = tmp_path / "certs"
    subprocess.run([str(REPO / "scripts/tls-certs.sh"), str(certs), "n1"], check=True, capture_output=True)
    tls = Cluster(tmp_path / "tls", {"RAFT_TLS_CERT_FILE": str(certs / "n1.pem"),
                                     "RAFT_TLS_KEY_FILE": str(certs / "n1-key.pem"),
                                     "RAFT_TLS_CA_FILE": str(certs / "ca.pem")})
    plain = Cluster(tmp_path / "plain")
    try:
        t = tls.add("n1", bootstrap=True)
        p = plain.add("n1", bootstrap=True).wait_ready()
        wait_until(lambda: "scheme=https" in t.log(), what="the TLS node to serve HTTPS")
        yield t, p, str(certs / "ca.pem")
    finally:
        tls.close()
        plain.close()


def test_the_cli_names_a_tls_port_and_says_what_to_pass(nodes):
    tls, plain, ca = nodes
    hint = "pass --cacert FILE (or set RAFTKV_CACERT)"

    # host:port without a CA means http: the node hangs up on plain HTTP
    for args in (("status",), ("peers",), ("watch", "--once"), ("set", "k", "v")):
        r = cli("--addr", tls.http_addr, *args)
        assert r.returncode == 2, (args, r)
        said = r.stderr if args[0] != "watch" else r.stdout.splitlines()[-1] + "\n"
        assert said == f"raftkv: {tls.http_addr} looks like a TLS (HTTPS) port: {hint}\n", (args, r)
        assert "Traceback" not in r.stderr and "Remote end closed" not in r.stderr + r.stdout

    # https:// without the CA: the certificate is not trusted
    r = cli("--addr", f"https://{tls.http_addr}", "status")
    assert r.returncode == 2 and r.stderr.startswith(f"raftkv: https://{tls.http_addr}: its TLS certificate "
                                                     "is not trusted (")
    assert r.stderr.endswith(f"): {hint}\n") and len(r.stderr.splitlines()) == 1, r.stderr

    # with the CA all is well, and `raftkv wait` works over HTTPS too
    r = cli("--cacert", ca, "--addr", tls.http_addr, "wait", "--leader", "--timeout", "30")
    assert r.returncode == 0, r

    # the CA given for a node that speaks plain HTTP
    r = cli("--cacert", ca, "--addr", plain.http_addr, "status")
    assert r.returncode == 2
    assert r.stderr == (f"raftkv: {plain.http_addr} does not speak TLS: use http://{plain.http_addr} "
                        "(and no --cacert or RAFTKV_CACERT)\n"), r.stderr
