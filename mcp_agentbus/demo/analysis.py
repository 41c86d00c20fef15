"""The demo's actual work: what is in one Python source file, and one report from many of them."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

from mcp_agentbus.cli.words import counted

SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages"}


def source_files(root: Path, limit: int) -> list[str]:
    """Up to `limit` Python files under `root` (relative paths, sorted), skipping hidden and vendored
    directories."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") or p in SKIPPED_DIRS or p.startswith("venv") for p in parts[:-1]):
            continue
        found.append(str(path.relative_to(root)))
        if len(found) == limit:
            break
    return found


def analyse(root: Path, relative: str) -> dict[str, Any]:
    """Lines, functions, classes and imports of one file (a file that does not parse still counts)."""
    text = (root / relative).read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    finding: dict[str, Any] = {
        "file": relative,
        "lines": len(lines),
        "code_lines": sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#")),
        "functions": 0,
        "classes": 0,
        "imports": [],
        "longest_function": None,
    }
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        finding["error"] = f"does not parse: {exc.msg} (line {exc.lineno})"
        return finding
    imports: set[str] = set()
    longest: tuple[int, str] = (0, "")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            finding["functions"] += 1
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            longest = max(longest, (length, node.name))
        elif isinstance(node, ast.ClassDef):
            finding["classes"] += 1
        elif isinstance(node, ast.Import):
            imports.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports.add(node.module.split(".")[0])
    finding["imports"] = sorted(imports)
    if longest[0]:
        finding["longest_function"] = {"name": longest[1], "lines": longest[0]}
    return finding


def size(finding: dict[str, Any]) -> str:
    """ "120 lines, 1 function": how big one file is."""
    return f"{counted(finding['lines'], 'line')}, {counted(finding['functions'], 'function')}"


def report(root: Path, findings: list[dict[str, Any]]) -> str:
    """One Markdown report from every file's findings."""
    total = sum(f["lines"] for f in findings)
    imports = Counter(module for f in findings for module in f["imports"])
    biggest = sorted(findings, key=lambda f: f["lines"], reverse=True)[:5]
    longest = sorted(
        (f for f in findings if f["longest_function"]),
        key=lambda f: f["longest_function"]["lines"],
        reverse=True,
    )[:5]
    out = [
        f"# {root.name}: {counted(len(findings), 'Python file')}, {counted(total, 'line')}",
        "",
        f"- code lines: {sum(f['code_lines'] for f in findings):,}",
        f"- {counted(sum(f['functions'] for f in findings), 'function')}, "
        f"{counted(sum(f['classes'] for f in findings), 'class', 'classes')}",
        "- most imported: " + ", ".join(f"`{m}` ({n})" for m, n in imports.most_common(6)),
        "",
        "## Biggest files",
        "",
        *(f"- `{f['file']}`: {size(f)}" for f in biggest),
        "",
        "## Longest functions",
        "",
        *(
            f"- `{f['longest_function']['name']}` in `{f['file']}`: "
            f"{counted(f['longest_function']['lines'], 'line')}"
            for f in longest
        ),
    ]
    unparsed = [f for f in findings if "error" in f]
    if unparsed:
        out += ["", "## Not parsed", "", *(f"- `{f['file']}`: {f['error']}" for f in unparsed)]
    return "\n".join(out) + "\n"
