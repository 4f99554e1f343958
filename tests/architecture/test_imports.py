"""The house rules of the import graph, checked statically over every import (those inside functions too).

- nothing under damoxing/ imports the package face (damoxing/__init__.py);
- only the command line imports the recipes (damoxing/recipes/, the top layer);
- the Trainer never imports checkpoint code (damoxing/io/): it is handed `save` and `load`;
- the module graph has no cycle (an import of a.b.c also loads the package a.b first).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "damoxing"
ROOT = "damoxing"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def exists(name: str) -> bool:
    p = PACKAGE.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every damoxing module `path` imports, anywhere in the file, resolved to absolute names."""
    me = module_name(path)
    package = me if is_package(path) else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{target}.{alias.name}"
                found.add(sub if exists(sub) else target)
    return found


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me, targets = module_name(path), set()
        for name in imports(path):
            parts = name.split(".")
            targets.add(name)
            for i in range(2, len(parts)):  # a.b.c loads the package a.b first, unless we are inside a.b
                parent = ".".join(parts[:i])
                if not (me == parent or me.startswith(parent + ".")):
                    targets.add(parent)
        edges[me] = targets - {me}
    return edges


def test_no_module_imports_the_package_face():
    offenders = sorted(m for m, targets in graph().items() if ROOT in targets and m != ROOT)
    assert not offenders, f"these modules import damoxing/__init__.py: {offenders}"


def test_only_the_command_line_imports_recipes():
    allowed = (f"{ROOT}.cli", f"{ROOT}.recipes")
    offenders = {
        m: sorted(t for t in targets if t.startswith(f"{ROOT}.recipes"))
        for m, targets in graph().items()
        if not m.startswith(allowed)
    }
    offenders = {m: t for m, t in offenders.items() if t}
    assert not offenders, f"the library imports recipes: {offenders}"


def test_the_trainer_never_imports_checkpoint_code():
    edges = graph()
    offenders = {
        m: sorted(t for t in edges[m] if t.startswith(f"{ROOT}.io")) for m in edges if m.startswith(f"{ROOT}.training")
    }
    assert not {m: t for m, t in offenders.items() if t}, offenders


def test_the_import_graph_has_no_cycle():
    edges = graph()
    cycles, state, stack = [], {}, []

    def visit(node):  # depth-first search; a grey node met again closes a cycle
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == ROOT or nxt not in edges:
                continue
            if state.get(nxt) == "grey":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "black"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The walk must find a function-level import, or the tests above prove nothing."""
    found = imports(PACKAGE / "cli.py")
    assert f"{ROOT}.recipes.pretrain" in found and f"{ROOT}.io.checkpoint" in found
