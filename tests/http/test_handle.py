"""The contract of raftkv/http/api/handle.py: the runtime's Node is a
NodeHandle, an HTTP worker's stand-in a KeyValueNode, both contexts are a
KeyValueContext (mypy checks), and the contract declares exactly what the
source of raftkv/http calls on a node."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import subprocess
import sys
import textwrap

import pytest

import raftkv
from raftkv.http.api.handle import KeyValueNode, LogTail, NodeHandle

HTTP = pathlib.Path(raftkv.__file__).parent / "http"


def declared(protocol: type) -> set[str]:
    """The members a Protocol declares (its attributes, annotated only,
    included), its bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls.__module__ == NodeHandle.__module__:
            members = [*vars(cls), *vars(cls).get("__annotations__", {})]
            names |= {n for n in members if not n.startswith("_")}
    return names


def called_on_a_node() -> dict[str, list[str]]:
    """``X`` -> where, for every ``node.X``, ``ctx.node.X`` or ``self.node.X``
    in raftkv/http (a node held in a variable or attribute called ``node``)."""
    found: dict[str, list[str]] = {}
    for path in sorted(HTTP.rglob("*.py")):
        for expr in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(expr, ast.Attribute):
                continue
            base = expr.value
            if (isinstance(base, ast.Name) and base.id == "node") or \
                    (isinstance(base, ast.Attribute) and base.attr == "node"):
                found.setdefault(expr.attr, []).append(f"{path.relative_to(HTTP)}:{expr.lineno}")
    return found


def test_the_contract_is_what_the_http_side_calls():
    calls = called_on_a_node()
    assert set(calls) <= declared(NodeHandle), {n: calls[n] for n in set(calls) - declared(NodeHandle)}
    assert declared(NodeHandle) <= set(calls), f"declared, never called: {declared(NodeHandle) - set(calls)}"


def test_the_data_plane_calls_only_what_a_worker_has():
    kv = (HTTP / "api" / "kv.py").read_text()
    used = {node.attr for node in ast.walk(ast.parse(kv))
            if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute))
            and getattr(node.value, "id", getattr(node.value, "attr", None)) == "node"}
    assert used and used <= declared(KeyValueNode), used - declared(KeyValueNode)
    assert declared(LogTail) >= {"first_index", "last_index", "entries"}


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_sees_the_node_and_the_worker_keep_the_contract(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        from raftkv.http.api.context import HttpContext, KeyValueContext
        from raftkv.http.api.handle import KeyValueNode, NodeHandle
        from raftkv.http.workers.worker import WorkerContext, WorkerNode
        from raftkv.node.runtime import Node

        def node(n: Node) -> NodeHandle:
            return n

        def worker_node(n: WorkerNode) -> KeyValueNode:
            return n

        def node_context(c: HttpContext) -> KeyValueContext:
            return c

        def worker_context(c: WorkerContext) -> KeyValueContext:
            return c
    """))
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                           "--no-incremental", "--cache-dir=/dev/null", str(probe)],
                          capture_output=True, text=True, cwd=HTTP.parent.parent, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
