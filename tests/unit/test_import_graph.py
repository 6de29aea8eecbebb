"""The import graph of storage/ and cli/ has no circles, and the disk server does not import upward.

Read from the source with `ast` (nothing is imported), counting imports inside functions
too: a lazy import that closes a circle is still a circle, only one that fails later.
Imports under `if TYPE_CHECKING:` are left out, they never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("storage", "cli")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def owner(name: str) -> str | None:       # `storage.s3.acl.from_headers` -> `storage.s3.acl`
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(owner(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets.update(owner(f"{base}.{alias.name}") for alias in node.names)
        graph[name] = {t for t in targets if t and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read():
    graph = _graph()
    assert "storage.s3.access" in graph["storage.s3.acl"]
    assert "storage.throttle" in graph["storage.verify"]
    assert "storage.node.disk" not in graph["storage.verify"]   # a TYPE_CHECKING import only
    assert "storage.index.backend" in graph["storage.index.ops"]
    assert not {"storage.index.lmdb_backend", "storage.index.pg_backend"} & graph["storage.index.ops"]   # above the seam


def test_no_import_cycles():
    assert _cycles(_graph()) == [], "modules that import each other in a circle; move what both need below them"


def test_no_cycles_between_the_folders_of_storage():
    """storage/'s folders and top modules form layers (node below durability below tools, ...):
    any circle between them means one no longer stands on the other."""
    def folder(name: str) -> str:
        return ".".join(name.split(".")[:2])
    layers: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        if name.startswith("storage."):
            layers.setdefault(folder(name), set()).update(folder(t) for t in targets
                                                          if t.startswith("storage.") and folder(t) != folder(name))
    assert _cycles(layers) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_node_does_not_import_upward():
    """The disk server sits below durability, disk moves, the tools and the S3 layer: a node
    process loads none of them."""
    above = ("storage.durability", "storage.disks", "storage.tools", "storage.s3", "storage.gateway")
    upward = {(name, target) for name, targets in _graph().items() if name.startswith("storage.node")
              for target in targets if target.startswith(above)}
    assert upward == set()


def test_only_the_server_commands_import_the_gateway():
    """One-shot tools open disks, the index and the services themselves (node/open_disks.py,
    objects/build.py, executor.py), so a `pocket scrub` never loads the S3 front end."""
    importers = {name for name, targets in _graph().items() if "storage.gateway" in targets}
    assert importers <= {"cli.serve"}


def test_bench_and_tests_import_modules_that_exist():
    """A moved module breaks the scripts that import it by path; bench/ is run by hand, not by CI."""
    modules = _modules()
    missing = []
    for folder in ("bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("storage"):
                    if node.module not in modules:
                        missing.append(f"{path.relative_to(ROOT)}: {node.module}")
    assert missing == []
