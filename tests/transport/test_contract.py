"""Every transport keeps the contract of raftkv/transport/contract.py, and the
contract is exactly what the node runtime calls on a transport."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import pathlib
import subprocess
import sys
import textwrap

import pytest

import raftkv
from raftkv.transport.contract import Transport
from raftkv.transport.hashicorp_protocol.transport import HashicorpTransport
from raftkv.transport.memory import MemoryNetwork
from raftkv.transport.raftkv_protocol.tcp import TcpTransport

CALLS = {"start", "send", "learn_configuration", "disconnect", "close"}
# the node's modules that hold a transport: the runtime, and the executor's host
NODE = pathlib.Path(raftkv.__file__).parent / "node"
RUNTIME = [NODE / "runtime.py", NODE / "host.py", NODE / "api.py"]


def _handler(from_id, message):
    """The transports here are built, never sent to: nothing arrives."""


def each_transport():
    yield TcpTransport("n1", "127.0.0.1", 0, _handler)
    yield HashicorpTransport("n1", "127.0.0.1", 0, _handler)
    yield MemoryNetwork().transport("n1", _handler)


def takes(transport: Transport) -> Transport:
    """What the runtime does with a transport, typed: mypy checks the calls
    in test_mypy_sees_every_transport_as_a_transport."""
    return transport


def test_the_contract_is_what_the_runtime_calls():
    declared = {name for name, value in vars(Transport).items() if callable(value) and not name.startswith("_")}
    assert declared == CALLS
    called = set()
    for path in RUNTIME:
        for node in ast.walk(ast.parse(path.read_text())):
            # self.transport.X, self._network.transport.X and a local transport.X alike
            if isinstance(node, ast.Attribute) and (
                    isinstance(node.value, ast.Attribute) and node.value.attr == "transport"
                    or isinstance(node.value, ast.Name) and node.value.id == "transport"):
                called.add(node.attr)
    assert called == CALLS


@pytest.mark.parametrize("transport", list(each_transport()), ids=lambda t: type(t).__name__)
def test_each_transport_is_a_transport(transport):
    assert isinstance(takes(transport), Transport)
    for name in CALLS:
        want = getattr(Transport, name)
        have = getattr(type(transport), name)
        assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(want), name
        want_params = list(inspect.signature(want).parameters)
        have_params = [p.name for p in inspect.signature(have).parameters.values()
                       if p.default is inspect.Parameter.empty]
        assert have_params == want_params, name


def test_a_class_missing_a_call_is_not_a_transport():
    class Half:
        async def start(self) -> None: ...
        def send(self, to_id: str, address: str, message: object) -> None: ...
        async def close(self) -> None: ...

    assert not isinstance(Half(), Transport)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_sees_every_transport_as_a_transport(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        from raftkv.transport.contract import Transport
        from raftkv.transport.hashicorp_protocol.transport import HashicorpTransport
        from raftkv.transport.memory import MemoryTransport
        from raftkv.transport.raftkv_protocol.tcp import TcpTransport

        def takes(transport: Transport) -> None: ...

        def check(a: TcpTransport, b: HashicorpTransport, c: MemoryTransport) -> None:
            takes(a)
            takes(b)
            takes(c)
    """))
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                           "--no-incremental", "--cache-dir=/dev/null", str(probe)],
                          capture_output=True, text=True, cwd=pathlib.Path(raftkv.__file__).parent.parent,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
