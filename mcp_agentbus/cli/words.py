"""How the terminal and the demo count things: ``counted(1, "workflow")`` is "1 workflow", never
"1 workflows" or "1 workflow(s)"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it takes (`plural` for the irregular ones: "class", "classes")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
