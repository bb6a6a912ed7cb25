"""The layers hold: a lower layer never imports a higher one, peers never import each other,
and no module of ``embedscope`` takes part in an import cycle.

Every import counts, also one inside a function: a late import is still a dependency.

    base (errors, config, formats, objectstore, hashing)
      <- store, models        (independent of each other: models know tensors, not tables)
      <- ingest, analysis     (independent of each other)
      <- dashboard, api, cli, demo
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embedscope"

LAYER = {
    "errors": 0, "config": 0, "formats": 0, "objectstore": 0, "hashing": 0,
    "store": 1, "models": 1,
    "ingest": 2, "analysis": 2,
    "dashboard": 3, "api": 3, "cli": 3, "demo": 3, "__main__": 3,
}
PEER_LAYERS = {1, 2}  # packages of these layers are independent of each other; base and top may share
# `embedscope/__init__.py` is the public face: it re-exports the API lazily (PEP 562).
FACADE = "embedscope"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in the file that names an ``embedscope`` module."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from embedscope.x import y` may import the submodule y
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names
                      if _is_module(f"{target}.{a.name}", root)]
    return [(line, t) for line, t in found if t == "embedscope" or t.startswith("embedscope.")]


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        if source == FACADE:
            continue
        mine = layer_of(source)
        named: dict[tuple[int, str | None], str] = {}  # the most precise target per line and layer
        for line, target in imports_of(path, root):
            key = (line, layer_of(target))
            if len(target) > len(named.get(key, "")):
                named[key] = target
        for (line, theirs), target in sorted(named.items()):
            if theirs is None or theirs == mine:
                continue
            if theirs not in LAYER:
                bad.append(f"{path.relative_to(root.parent)}:{line}: imports {target}, which is in no layer")
            elif LAYER[theirs] > LAYER[mine] or (LAYER[theirs] == LAYER[mine] in PEER_LAYERS):
                bad.append(f"{path.relative_to(root.parent)}:{line}: {mine} (layer {LAYER[mine]}) imports "
                           f"{target} ({theirs}, layer {LAYER[theirs]})")
    return bad


def import_cycles(root: Path = PACKAGE) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        source = module_name(path, root)
        targets = {t for _, t in imports_of(path, root) if t != source}
        # importing a.b.c runs a/__init__ and a/b/__init__: only count real modules
        graph[source] = {t for t in targets if _is_module(t, root) or t == FACADE}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_runs_up_the_layers() -> None:
    bad = layer_violations()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("planted, expected", [
    ("from embedscope.analysis import jobs\n", "store (layer 1) imports embedscope.analysis"),
    ("import embedscope.models.registry\n", "store (layer 1) imports embedscope.models.registry"),
])
def test_a_planted_bad_import_is_named(tmp_path: Path, planted: str, expected: str) -> None:
    root = tmp_path / "embedscope"
    for sub in ("store", "models", "analysis"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "models" / "registry.py").write_text("")
    (root / "analysis" / "jobs.py").write_text("")
    (root / "store" / "bad.py").write_text("def f():\n    " + planted)
    bad = layer_violations(root)
    assert len(bad) == 1 and "embedscope/store/bad.py:2" in bad[0] and expected in bad[0], bad


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    root = tmp_path / "embedscope"
    (root / "analysis").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "analysis" / "__init__.py").write_text("")
    (root / "analysis" / "a.py").write_text("from embedscope.analysis.b import x\n")
    (root / "analysis" / "b.py").write_text("def f():\n    from embedscope.analysis import a\n")
    assert import_cycles(root) == [["embedscope.analysis.a", "embedscope.analysis.b"]]
