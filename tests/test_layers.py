"""The layers of raftkv, checked on the source: no import circle anywhere,
the runtime never reaches into the HTTP side, and the core stays alone; and
the parts stay small enough to read: at most ten modules in a folder (the
core excepted), no module over 600 lines.

Every import counts, wherever it sits (module level, inside a function, or
under ``TYPE_CHECKING``): an import moved into a function to dodge a circle
is still a circle.
"""

import ast
import pathlib

import raftkv

ROOT = pathlib.Path(raftkv.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the raftkv modules it imports (``from pkg import mod`` counts as pkg.mod)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("raftkv") and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in graph}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = GREY
        stack.append(m)
        for n in sorted(graph[m]):
            if colour[n] == GREY:
                return stack[stack.index(n):] + [n]
            if colour[n] == WHITE:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(graph):
        if colour[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circle_anywhere():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_runtime_never_imports_the_http_side():
    for module, targets in import_graph().items():
        if module.startswith("raftkv.node"):
            bad = sorted(t for t in targets if t.startswith("raftkv.http"))
            assert not bad, f"{module} imports {bad}"


def test_only_main_and_the_cli_build_the_http_side():
    for module, targets in import_graph().items():
        if not module.startswith("raftkv.http") and module not in ("raftkv.main",):
            bad = sorted(t for t in targets if t.startswith("raftkv.http"))
            assert not bad, f"{module} imports {bad}"


def test_the_core_imports_nothing_else_of_raftkv():
    for module, targets in import_graph().items():
        if module.startswith("raftkv.raft"):
            bad = sorted(t for t in targets if not t.startswith("raftkv.raft"))
            assert not bad, f"{module} imports {bad}"


MAX_MODULES_PER_FOLDER = 10
MAX_LINES = 600


def test_no_folder_holds_more_than_ten_modules():
    """A folder reads as a handful of parts; past ten, its modules go into
    subpackages that name the parts. The core (raftkv/raft) keeps its many
    small files, one rule or role each."""
    crowded = {}
    for folder in sorted({path.parent for path in ROOT.rglob("*.py")}):
        if folder == ROOT / "raft":
            continue
        modules = sorted(p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
        if len(modules) > MAX_MODULES_PER_FOLDER:
            crowded[str(folder.relative_to(ROOT.parent))] = modules
    assert not crowded, f"more than {MAX_MODULES_PER_FOLDER} modules in a folder: {crowded}"


def test_no_module_is_longer_than_600_lines():
    too_long = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = str(path.relative_to(ROOT.parent))
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[name] = lines
    assert not too_long, f"modules over {MAX_LINES} lines (split them along a seam): {too_long}"


def test_a_circle_is_detected():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
