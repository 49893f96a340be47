"""The package's layers: every module imports only modules of its own rank or lower, in any form
(top level, inside a function, under TYPE_CHECKING), and the import graph has no cycle.

The rank table is written here, as data, and in the package docstring; the two must match.
A subpackage ranks as a whole; a module missing from the table fails with its name.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import aihub_nb

PACKAGE = Path(aihub_nb.__file__).parent

RANKS: dict[int, tuple[str, ...]] = {
    0: ("errors", "prisma", "clock"),
    1: ("store", "migrations", "payloads"),
    2: ("redact", "timespan", "media"),
    3: ("connections", "jobs", "recovery", "recording", "monitoring", "providers", "toolschema", "demo", "display", "views", "mcp", "telemetry", "discovery", "theme"),
    4: ("runtime",),
    5: ("tools", "embeddings", "images"),
    6: ("agents",),
    7: ("chat",),
    8: ("batch",),
    9: ("hub",),
    10: ("current",),
    11: ("plots",),
    12: ("widgets", "magics", "testing", "__init__", "__main__"),
}

# Imports that go up on purpose, each with its reason. They are function-level conveniences of the
# facade, left out of the cycle check too.
UPWARD: dict[tuple[str, str], str] = {}

_RANK = {name: rank for rank, names in RANKS.items() for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The name the table ranks `module` by: a subpackage as a whole, the package as __init__."""
    if module == "":
        return "__init__"
    if module.rsplit(".", 1)[-1] == "__main__":
        return "__main__"
    return module.split(".", 1)[0]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `module` imports, in any form, each resolved to the deepest module
    of `known` it names ("" is the package itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = [p for p in package if p]

    def deepest(name: str) -> str | None:
        if name != "aihub_nb" and not name.startswith("aihub_nb."):
            return None
        inner = name[len("aihub_nb."):] if name != "aihub_nb" else ""
        while inner and inner not in known:
            inner = inner.rpartition(".")[0]
        return inner

    targets: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(deepest(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                prefix = ".".join(["aihub_nb", *base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            for alias in node.names:  # `from .x import y`: the module x.y if there is one, else x
                targets.add(deepest(f"{prefix}.{alias.name}"))
    targets.discard(None)
    targets.discard(module)
    return targets  # type: ignore[return-value]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, set(modules)) for module, path in modules.items()}


def test_every_module_is_in_the_rank_table():
    missing = sorted({_unit(m) for m in _modules()} - set(_RANK))
    assert not missing, (
        f"modules missing from the rank table in tests/test_layers.py (and the package docstring): {missing}; "
        "put each at the rank its imports allow"
    )


def test_no_module_imports_a_higher_rank():
    upward = []
    for module, targets in _graph().items():
        here = _RANK.get(_unit(module))
        for target in sorted(targets):
            there = _RANK.get(_unit(target))
            if here is None or there is None or there <= here or (_unit(module), _unit(target)) in UPWARD:
                continue
            upward.append(f"aihub_nb.{module or '__init__'} (rank {here}) imports aihub_nb.{target} (rank {there})")
    assert not upward, "imports of a higher rank:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    graph = {m: {t for t in targets if (_unit(m), _unit(t)) not in UPWARD} for m, targets in _graph().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            assert cycle is None, "import cycle: " + " -> ".join(f"aihub_nb.{m}" for m in cycle)


def test_the_package_docstring_shows_the_same_table():
    doc = aihub_nb.__doc__ or ""
    shown = {
        int(rank): tuple(names.split())
        for rank, names in re.findall(r"^\s+(\d+)\s{2,}([a-z_ ]+?)\s*$", doc.split("Layers", 1)[-1], flags=re.M)
    }
    assert shown == RANKS


def test_the_checker_sees_every_form_of_import(tmp_path):
    """An absolute import, a TYPE_CHECKING import, a function-level import and `from . import x`
    all count, resolved to the module they name."""
    path = tmp_path / "chat.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import aihub_nb.store\n"
        "from .errors import UsageError\n"
        "if TYPE_CHECKING:\n    from .providers.base import ToolCall\n"
        "def f():\n    from . import hub\n    from .widgets import chat\n"
    )
    known = {"", "chat", "errors", "hub", "store", "providers", "providers.base", "widgets", "widgets.chat"}
    assert _imports("chat", path, known) == {"store", "errors", "providers.base", "hub", "widgets.chat"}
    nested = tmp_path / "writer.py"
    nested.write_text("from ..store import Store\nfrom . import frames\n")
    known |= {"monitoring", "monitoring.writer", "monitoring.frames"}
    assert _imports("monitoring.writer", nested, known) == {"store", "monitoring.frames"}


def test_a_script_defining_a_tool_does_not_import_ipython(tmp_path):
    code = (
        "import sys, aihub_nb\n"
        "@aihub_nb.tool\n"
        "def double(x: int) -> int:\n"
        "    '''Twice x.'''\n"
        "    return 2 * x\n"
        "from aihub_nb.current import current_hub\n"
        "print([t['name'] for t in current_hub().tools()], 'IPython' in sys.modules)\n"
    )
    env = {"AIHUB_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=Path(aihub_nb.__file__).parent.parent)
    assert out.stdout.strip() == "['double'] False"
