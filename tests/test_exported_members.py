"""The package's public surface, as httpx's tests/test_exported_members.py: `__all__` is exactly every
public error, every result model of the core API, the entry points and the version, and each resolves."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

from pydantic import BaseModel

import mcp_agentbus
from mcp_agentbus import errors
from mcp_agentbus.core import models, state, workflow_views

ENTRY_POINTS = {"AgentBus", "Settings", "build_server", "__version__"}


def defined_in(module: object, base: type) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, base) and value.__module__ == module.__name__  # type: ignore[attr-defined]
    }


def test_all_is_exactly_the_errors_the_result_models_and_the_entry_points() -> None:
    results = set().union(*(defined_in(module, BaseModel) for module in (models, workflow_views, state)))
    expected = defined_in(errors, errors.AgentBusError) | results | ENTRY_POINTS
    assert mcp_agentbus.__all__ == sorted(expected)


def test_every_exported_name_resolves_to_the_object_its_module_defines() -> None:
    for name in mcp_agentbus.__all__:
        value = getattr(mcp_agentbus, name)
        if inspect.isclass(value):
            assert getattr(sys.modules[value.__module__], name) is value, name
    assert set(mcp_agentbus.__all__) <= set(dir(mcp_agentbus))


def test_importing_the_package_loads_neither_the_core_nor_the_mcp_stack() -> None:
    """The errors and Settings come at once; the rest on first use."""
    code = "import json, sys, mcp_agentbus; print(json.dumps(list(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = json.loads(done.stdout)
    assert not [
        m for m in loaded if m.startswith(("mcp_agentbus.core", "mcp_agentbus.server", "mcp.", "redis"))
    ]
    assert "mcp" not in loaded
