"""The rooms' import rules (DESIGN §2): service/ never imports worker/ or cli/; nothing imports cli/; the
engine never imports the database; and no package's imports form a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "worker", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_service_imports_neither_worker_nor_cli():
    bad = {(m, i) for m, deps in _graph().items() if _top(m) == "service"
           for i in deps if _top(i) != "service"}
    assert bad == set()


def test_nothing_imports_cli():
    bad = {(m, i) for m, deps in _graph().items() if _top(m) != "cli" for i in deps if _top(i) == "cli"}
    assert bad == set()


def test_the_engine_never_imports_the_database_or_celery():
    # service.masks is the one database-free module the engine shares: the mask conventions (IGNORE).
    engine = {m: deps for m, deps in _graph().items() if m.startswith("worker.engine")}
    bad = {(m, i) for m, deps in engine.items() for i in deps
           if not i.startswith("worker.engine") and i not in ("service.masks", "service.masks.IGNORE")}
    assert bad == set()


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # Importing a package runs its __init__, so an edge into "a.b.c" is also an edge into "a" and "a.b";
    # those are only checked as far as the __init__ files import anything, which they do not here.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
