"""The package's layout rules, checked on the source files (nothing is imported).

1. No module under lgvq/ is longer than 400 lines: a module that grows past that is split.
2. The module-level imports between lgvq modules form no cycle. "Module-level" means the import
   runs when the module is imported: a statement at the top of the file (also inside a top-level
   `try:` / `if` block), but not one inside a function or class, nor inside `if TYPE_CHECKING:`.
   `from pkg import name` depends on `pkg.name` when that is a module, else on `pkg`.
3. No module imports another's private (underscored) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lgvq"
MAX_LINES = 400

# Cycles that exist today outside lgvq/data/ and are allowed until they are fixed, each written
# as `a -> b -> ... -> a` starting at its alphabetically first module. Any other cycle fails the
# test, and so does an entry here that is no longer a cycle (remove it then).
KNOWN_CYCLES: set[str] = set()


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under lgvq/ (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level_imports(block)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The lgvq module `name` refers to: itself, or its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the lgvq modules it imports at module level."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import: counted from the importing module's package
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            deps |= {t for t in (_resolve(t, modules) for t in targets) if t and t != mod}
        graph[mod] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> set[str]:
    """Every elementary cycle, as `a -> b -> ... -> a` starting at its smallest module."""
    found: set[str] = set()
    for start in sorted(graph):
        # only cycles whose smallest module is `start`, so each is found once
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    found.add(" -> ".join(path + [start]))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return found


def test_no_module_is_longer_than_400_lines():
    too_long = {}
    for mod, path in module_files().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            too_long[mod] = n
    listed = ", ".join(f"{mod} ({n})" for mod, n in sorted(too_long.items()))
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {listed}"


def test_module_level_imports_form_no_cycle():
    cycles = find_cycles(import_graph())
    new = sorted(cycles - KNOWN_CYCLES)
    gone = sorted(KNOWN_CYCLES - cycles)
    assert not new, "import cycles among module-level imports:\n" + "\n".join(new)
    assert not gone, "no longer cycles; remove them from KNOWN_CYCLES:\n" + "\n".join(gone)


def test_no_module_imports_another_modules_private_names():
    """3. What modules share is public: `from lgvq.x import _name` (at any depth) is refused; a helper two
    modules need drops its underscore (or moves to lgvq.pipeline.artifacts for the stages)."""
    offenders = []
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lgvq") and node.level == 0:
                offenders += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, "\n".join(offenders)
