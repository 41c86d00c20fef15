"""The floors of the package, read from its imports (ast: nothing is imported to check them).

Top to bottom: cli (with demo and ``__main__``) → server → core → redis → base (the modules at the top of
the package). An import may only go down a floor or stay on its own; ``core``, ``redis`` and the base never
import the MCP edge or the terminal libraries. ``mcp_agentbus/__init__.py`` is exempt: it only re-exports
(lazily) what the floors define.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mcp_agentbus

PACKAGE = Path(mcp_agentbus.__file__).parent
FLOORS = {"base": 0, "redis": 1, "core": 2, "server": 3, "cli": 4}
EDGE_LIBRARIES = {"mcp", "starlette", "uvicorn", "click", "typer", "rich"}
MAY_USE_EDGE = {"server", "cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if parts[1] in ("demo", "__main__"):
        return "cli"  # the demo and `python -m` run the CLI's way
    return parts[1] if parts[1] in FLOORS else "base"


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `path` (the module `module`), at any depth: TYPE_CHECKING and
    lazy ones too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from mcp_agentbus.server import resources` imports the module server/resources.py.
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if base.startswith("mcp_agentbus") and is_module(sub) else base


def arrows(path: Path, module: str) -> Iterator[str]:
    """The imports of `path` that run up a floor or into a library its floor may not use."""
    here = floor(module)
    for line, target in imports(path, module):
        where = f"{module}:{line} imports {target}"
        if target == "mcp_agentbus" or target.startswith("mcp_agentbus."):
            there = floor(target)
            if FLOORS[there] > FLOORS[here]:
                yield f"{where}: {here} may not import from {there}, a floor up"
        elif target.split(".")[0] in EDGE_LIBRARIES and here not in MAY_USE_EDGE:
            yield f"{where}: {here} may not import the MCP edge or terminal libraries"


def test_every_import_goes_down_a_floor_or_stays_on_its_own() -> None:
    found = [
        arrow
        for path in sorted(PACKAGE.rglob("*.py"))
        if module_name(path) != "mcp_agentbus"
        for arrow in arrows(path, module_name(path))
    ]
    assert found == []


def test_an_import_up_a_floor_or_into_the_edge_is_caught_wherever_it_hides(tmp_path: Path) -> None:
    """The walk finds lazy, TYPE_CHECKING and relative imports (else the test above would prove nothing)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from mcp_agentbus.redis.store import Store\n"
        "if TYPE_CHECKING:\n    from mcp_agentbus.server.tools import App\n"
        "def f():\n    from ..cli import main\n    import rich.console\n"
        "from mcp_agentbus.server import resources\n"
    )
    found = list(arrows(probe, "mcp_agentbus.core.probe"))
    assert sorted(arrow.split(":")[1].split(" ")[0] for arrow in found) == ["4", "6", "7", "8"], found
    assert list(arrows(probe, "mcp_agentbus.cli.probe")) == [], "the top floor may import all of them"
