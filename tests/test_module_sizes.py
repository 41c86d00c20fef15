"""No module of the package passes MAX_LINES lines (STYLE: modules stay small enough to read in one go):
its Python, its Lua scripts and includes, and the dashboard page's files. A module that must be longer
is listed in LONGER with the reason."""

from __future__ import annotations

from pathlib import Path

import mcp_agentbus

PACKAGE = Path(mcp_agentbus.__file__).parent
MAX_LINES = 300
SUFFIXES = {".py", ".lua", ".js", ".css", ".html"}
LONGER: dict[str, str] = {}  # path under mcp_agentbus/ → why it may pass MAX_LINES (none must today)


def too_long(root: Path) -> dict[str, int]:
    """The modules under `root` past MAX_LINES, by path under `root`, with their line counts."""
    counted = {
        path.relative_to(root).as_posix(): len(path.read_text().splitlines())
        for path in sorted(root.rglob("*"))
        if path.suffix in SUFFIXES and path.is_file()
    }
    return {path: lines for path, lines in counted.items() if lines > MAX_LINES}


def test_no_module_of_the_package_passes_300_lines_unless_listed_with_a_reason() -> None:
    found = too_long(PACKAGE)
    assert {path: lines for path, lines in found.items() if path not in LONGER} == {}, (
        "split these modules (or list one in LONGER with the reason it must be longer)"
    )
    assert sorted(set(LONGER) - set(found)) == [], "listed in LONGER but no longer long: take them out"


def test_a_long_module_is_found_in_any_of_the_checked_languages(tmp_path: Path) -> None:
    """The walk sees nested files of every checked kind (else the test above would prove nothing)."""
    (tmp_path / "server" / "static").mkdir(parents=True)
    (tmp_path / "server" / "static" / "page.js").write_text("x;\n" * (MAX_LINES + 1))
    (tmp_path / "script.lua").write_text("-- x\n" * (MAX_LINES + 1))
    (tmp_path / "fits.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "notes.txt").write_text("x\n" * (MAX_LINES + 1))  # not a module
    assert too_long(tmp_path) == {"script.lua": MAX_LINES + 1, "server/static/page.js": MAX_LINES + 1}
