"""RAFT_TLS_*: all three or none, and the contexts they build."""

import ssl
import subprocess
from pathlib import Path

import pytest

from raftkv.config.settings import ConfigError, load_settings
from raftkv.config.tls import build_contexts

ROOT = Path(__file__).resolve().parents[2]
FILES = {"RAFT_TLS_CERT_FILE": "/c/n1.pem", "RAFT_TLS_KEY_FILE": "/c/n1-key.pem", "RAFT_TLS_CA_FILE": "/c/ca.pem"}


def env(**extra):
    return {"RAFT_NODE_ID": "n1", **extra}


def test_tls_off_by_default():
    s = load_settings(env())
    assert not s.tls and s.http_scheme == "http"


def test_all_three_turn_tls_on_and_join_defaults_to_https():
    s = load_settings(env(RAFT_JOIN="localhost:8000,http://h2:8001,https://h3:8002", **FILES))
    assert s.tls and s.http_scheme == "https"
    assert s.tls_ca_file == "/c/ca.pem"
    assert s.join == ("https://localhost:8000", "https://h2:8001", "https://h3:8002")


def test_flags_set_tls_too():
    s = load_settings(env(), {"tls_cert_file": "a.pem", "tls_key_file": "a-key.pem", "tls_ca_file": "ca.pem"})
    assert s.tls and s.tls_key_file == "a-key.pem"


@pytest.mark.parametrize("missing", sorted(FILES))
def test_one_missing_is_an_error_naming_it(missing):
    given = {k: v for k, v in FILES.items() if k != missing}
    with pytest.raises(ConfigError) as e:
        load_settings(env(**given))
    assert missing in str(e.value)
    assert "none of them" in str(e.value)


def test_cert_alone_is_an_error():
    with pytest.raises(ConfigError, match="RAFT_TLS_KEY_FILE, RAFT_TLS_CA_FILE: required"):
        load_settings(env(RAFT_TLS_CERT_FILE="/c/n1.pem"))


def test_tls_refuses_the_hashicorp_protocol_and_workers():
    with pytest.raises(ConfigError, match="RAFT_PROTOCOL"):
        load_settings(env(RAFT_PROTOCOL="hashicorp", **FILES))
    with pytest.raises(ConfigError, match="HTTP_WORKERS"):
        load_settings(env(HTTP_WORKERS="2", **FILES))


def test_contexts_from_tls_certs_script(tmp_path):
    subprocess.run([str(ROOT / "scripts/tls-certs.sh"), str(tmp_path), "n1"], check=True,
                   capture_output=True)
    ctx = build_contexts(str(tmp_path / "n1.pem"), str(tmp_path / "n1-key.pem"), str(tmp_path / "ca.pem"))
    assert ctx.raft_server.verify_mode == ssl.CERT_REQUIRED
    assert ctx.https_server.verify_mode == ssl.CERT_NONE
    assert ctx.raft_client.verify_mode == ssl.CERT_REQUIRED and ctx.raft_client.check_hostname
    assert ctx.https_client.verify_mode == ssl.CERT_REQUIRED


def test_bad_file_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="RAFT_TLS_CA_FILE"):
        build_contexts(__file__, __file__, str(tmp_path / "nope.pem"))
