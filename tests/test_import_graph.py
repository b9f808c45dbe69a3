"""The package's import graph: every module imports, no command imports another command or
the CLI, and no two modules import each other, directly or round a longer circle. And the
map as built: docs/architecture.md lists every module (and only those), every module says
its job in a docstring, and a module over 420 lines says in it why it is that long.

Imports are read from the source (``ast``), those inside functions included: an import
deferred into a function still ties the two modules together.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import echofm

SRC = Path(echofm.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _imports(name: str, path: Path) -> set[str]:
    """The echofm modules that module ``name`` imports (a from-import of a submodule counts as that submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def _is_command(name: str) -> bool:
    # commands/_*.py are shared helpers of the commands (option vocabulary), not commands
    return name.startswith("echofm.commands.") and not name.rpartition(".")[2].startswith("_")


def test_no_command_imports_another_command_or_the_cli():
    offences = []
    for name, deps in GRAPH.items():
        if _is_command(name):
            offences += [f"{name} imports {dep}" for dep in sorted(deps) if dep == "echofm.cli" or _is_command(dep)]
    assert not offences, "\n".join(offences)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    circles = _cycles(GRAPH)
    described = ["; ".join(f"{a} -> {', '.join(sorted(GRAPH[a] & set(c)))}" for a in c) for c in circles]
    assert not circles, "import circles:\n" + "\n".join(described)


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# --- the map as built (docs/architecture.md) -------------------------------------------------

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
LONG_MODULE_LINES = 420  # "about 400": past this a module's docstring must say why it is long


def _listed_modules(text: str) -> set[str]:
    """The module paths (relative to src/echofm) in the first column of the page's tables."""
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", text, re.MULTILINE))


def test_the_architecture_page_lists_every_module_and_only_those():
    listed = _listed_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    present = {path.relative_to(SRC).as_posix() for path in MODULES.values()}
    missing, gone = sorted(present - listed), sorted(listed - present)
    assert not missing, f"add a line saying each module's job to docs/architecture.md: {missing}"
    assert not gone, f"docs/architecture.md lists modules that do not exist: {gone}"


def test_the_module_list_reader_sees_table_rows_only():
    page = "| `a/b.py` | job |\n`c.py` in prose\n| module | job |\n| `d.py` | x |\n"
    assert _listed_modules(page) == {"a/b.py", "d.py"}


def test_every_module_says_its_job_and_long_ones_say_why():
    undocumented, unexplained = [], []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(text, str(path))) or ""
        if not doc.strip():
            undocumented.append(name)
        lines = len(text.splitlines())
        if lines > LONG_MODULE_LINES and not re.search(r"\b\d{3} lines\b", doc):
            unexplained.append(f"{name} ({lines} lines)")
    assert not undocumented, f"modules without a docstring: {undocumented}"
    assert not unexplained, f"modules over {LONG_MODULE_LINES} lines whose docstring does not say why: {unexplained}"
