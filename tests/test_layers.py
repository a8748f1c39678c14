"""The package's layers point one way (docs/ARCHITECTURE.md): every import inside vtag, at module level
or inside a function, goes to the same layer or a lower one, and no chain of imports comes back to
where it started. Imports under `if TYPE_CHECKING:` are annotations only and never run, so they are
left out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vtag"

# lowest first; a module's layer is that of the longest prefix that names it
LAYERS = {
    "vtag.errors": 0, "vtag.devices": 0,
    "vtag.io": 1, "vtag.weights": 1,
    "vtag.features": 2,
    "vtag.models": 3,
    "vtag.tasks": 4,
    "vtag": 5,  # the public API in vtag/__init__.py
    "vtag.cli": 6, "vtag.__main__": 6,
}
MAX_LINES = 520  # "no module much over 500 lines"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str, layers: dict[str, int]) -> int:
    best = max((prefix for prefix in layers if module == prefix or module.startswith(prefix + ".")), key=len)
    return layers[best]


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(path: Path, root: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, imported module inside the package) for every import that runs."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == root.name:
            for alias in node.names:  # `from a import b` imports the module a.b where there is one
                child = f"{node.module}.{alias.name}"
                found.append((node.lineno, child if child in modules else node.module))
        for child_node in ast.iter_child_nodes(node):
            visit(child_node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_violations(root: Path, layers: dict[str, int]) -> list[str]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in files.items():
        own = layer_of(module, layers)
        for line, target in imports_of(path, root, modules):
            if target not in modules:
                problems.append(f"{path.name}:{line}: imports {target}, which is not a module of the package")
                continue
            if target != module:
                graph[module].add(target)
            if layer_of(target, layers) > own:
                problems.append(f"{module} (layer {own}) imports {target} (layer {layer_of(target, layers)}) "
                                f"at line {line}: upward")
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [group + [group[0]] for group in groups]


def test_vtag_imports_only_point_down_and_never_circle():
    assert import_violations(PACKAGE, LAYERS) == []


def test_every_module_belongs_to_a_layer_package():
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "errors", "devices", "weights"))
    assert flat == [], "modules outside the stage packages; place them in io/, features/, models/ or tasks/"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_much_over_500_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by responsibility"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from pkg.high.b import g\n",  # upward, even inside a function
        "high/__init__.py": "",
        "high/b.py": "from pkg.high import c\n",
        "high/c.py": "import pkg.high.b\n",  # b -> c -> b
        "high/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.b import g\n",
    })
    problems = import_violations(root, {"pkg": 9, "pkg.low": 1, "pkg.high": 2})
    assert any("pkg.low.a (layer 1) imports pkg.high.b (layer 2)" in p for p in problems), problems
    assert "import cycle: pkg.high.b -> pkg.high.c -> pkg.high.b" in problems, problems
    assert len(problems) == 2, problems  # the TYPE_CHECKING import counts for nothing
