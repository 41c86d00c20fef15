"""Counts read as English: one of a thing is singular, any other number plural."""

from __future__ import annotations

import pytest

from mcp_agentbus.cli.words import counted


@pytest.mark.parametrize(
    ("n", "noun", "plural", "said"),
    [
        (1, "workflow", None, "1 workflow"),
        (0, "function", None, "0 functions"),
        (2, "agent", None, "2 agents"),
        (1, "class", "classes", "1 class"),
        (3, "class", "classes", "3 classes"),
        (12345, "line", None, "12,345 lines"),
    ],
)
def test_a_count_takes_the_singular_only_for_one(n: int, noun: str, plural: str | None, said: str) -> None:
    assert counted(n, noun, plural) == said
