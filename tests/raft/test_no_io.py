"""The Raft core imports only the standard library and does no IO (docs/architecture.md, "The layers")."""

import ast
import pathlib

import raftkv.raft

FORBIDDEN = {"asyncio", "socket", "os", "time", "threading", "selectors", "subprocess", "io"}


def test_core_imports_no_io_and_nothing_else_of_raftkv():
    root = pathlib.Path(raftkv.raft.__file__).parent
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue  # relative imports stay inside raftkv.raft
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert top != "raftkv", f"{path.name} imports {name} from outside the core"
