"""The package's layout rules, checked on the source files (nothing is imported).

1. No module under lgvq/ is longer than 400 lines: a module that grows past that is split.
2. The module-level imports between lgvq modules form no cycle. "Module-level" means the import
   runs when the module is imported: a statement at the top of the file (also inside a top-level
   `try:` / `if` block), but not one inside a function or class, nor inside `if TYPE_CHECKING:`.
   `from pkg import name` depends on `pkg.name` when that is a module, else on `pkg`.
   Nor do all the imports, those inside functions and methods included (still not `if TYPE_CHECKING:`):
   a function-level import is a cycle deferred, not removed (what two modules share moves below both).
   Imports by name string (the registries' built-in tables, importlib) are not seen.
3. No module imports another's private (underscored) names.
4. The rules (workflow/rules/*.smk) spell no path under the results folder: outputs, inputs and logs
   come from lgvq.pipeline.paths, so a path is spelled once.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lgvq"
RULES = PACKAGE.parent / "workflow" / "rules"
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


def _all_imports(tree: ast.Module):
    """Every import statement of a file, at any depth, except under `if TYPE_CHECKING:`."""
    hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
              for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in hidden]


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The lgvq module `name` refers to: itself, or its longest prefix that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(function_level: bool = False) -> dict[str, set[str]]:
    """Module -> the lgvq modules it imports at module level (`function_level`: anywhere in the file)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in (_all_imports(tree) if function_level else _module_level_imports(tree.body)):
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


def tangles(graph: dict[str, set[str]]) -> list[str]:
    """The strongly connected components of more than one module (every cycle lies in one), each as its
    modules and the imports among them, sorted. Unlike listing every elementary cycle, this stays fast
    however tangled the graph becomes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[str] = []
    for root in sorted(graph):  # Tarjan's algorithm, iterative (no recursion limit)
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    m = stack.pop()
                    members.append(m)
                    if m == node:
                        break
                if len(members) > 1:
                    group = set(members)
                    out.append("; ".join(f"{m} -> {', '.join(sorted(graph[m] & group))}" for m in sorted(group)))
    return sorted(out)


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


def test_imports_inside_functions_form_no_cycle_either():
    found = tangles(import_graph(function_level=True))
    assert not found, ("import cycles through imports inside functions (move what both need below both):\n"
                       + "\n".join(found))


def test_the_cycle_checks_see_a_cycle():
    # a -> b at module level, b -> a inside a function: only the function-level graph has the cycle
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set()}
    assert find_cycles(graph) == {"a -> b -> a"}
    assert tangles(graph) == ["a -> b; b -> a"]
    assert tangles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


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


def test_the_rules_spell_no_results_path():
    """4. `f"{R}/..."` in a rule is a path spelled beside lgvq.pipeline.paths (logs included: paths.*_log)."""
    spelled = [f"{smk.name}:{i}: {line.strip()}" for smk in sorted(RULES.glob("*.smk"))
               for i, line in enumerate(smk.read_text(encoding="utf-8").splitlines(), 1) if "{R}/" in line]
    assert not spelled, "paths spelled in the rules (add a function to lgvq/pipeline/paths.py):\n" + "\n".join(spelled)
