"""`agentbus demo`: worker processes speaking MCP analyse a tree, one crashes, its task is retried, and
the report comes out; and the analysis the workers do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_agentbus.demo.analysis import analyse, report, source_files

MODULE = [sys.executable, "-m", "mcp_agentbus"]
TIMEOUT = 120  # the demo itself gives up after 75 s

SAMPLE = """\
import os
from collections import Counter
from . import sibling


class Thing:
    def method(self):
        return 1


async def long_one():
    a = 1
    b = 2
    return a + b
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    for n in range(6):
        (root / "pkg" / f"mod{n}.py").write_text(SAMPLE + "\n" * n)
    (root / "broken.py").write_text("def nope(:\n")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "vendored.py").write_text("x = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "cached.py").write_text("x = 1\n")
    return root


def test_analyse_counts_lines_functions_classes_and_imports(tree: Path) -> None:
    finding = analyse(tree, "pkg/mod0.py")
    assert finding["lines"] == len(SAMPLE.splitlines())
    assert (finding["functions"], finding["classes"]) == (2, 1)
    assert finding["imports"] == ["collections", "os"]  # the relative import is the project's own
    assert finding["longest_function"] == {"name": "long_one", "lines": 4}


def test_a_file_that_does_not_parse_still_counts(tree: Path) -> None:
    finding = analyse(tree, "broken.py")
    assert finding["lines"] == 1 and finding["functions"] == 0
    assert finding["error"].startswith("does not parse")
    assert "## Not parsed" in report(tree, [finding])


def test_source_files_skip_hidden_and_cache_directories(tree: Path) -> None:
    assert source_files(tree, 100) == ["broken.py", *(f"pkg/mod{n}.py" for n in range(6))]
    assert source_files(tree, 2) == ["broken.py", "pkg/mod0.py"]


def run_demo(tree: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return subprocess.run(
        [*MODULE, "demo", "--dir", str(tree), "--out", str(out), "--workers", "3", "--pace", "0", *extra],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def assert_the_story_was_told(done: subprocess.CompletedProcess[str], out: Path) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    story = done.stdout
    assert "Traceback" not in story + done.stderr
    assert "3 worker processes" in story
    # The worker that claimed the marked task crashed holding it; the reaper took the lease back and
    # another worker finished it.
    crashed = re.search(
        r"(worker-\d) crashed holding \S+; its lease expired, the reaper put the task back, "
        r"and (worker-\d) finished it on attempt 2",
        story,
    )
    assert crashed and crashed.group(1) != crashed.group(2), story
    assert re.search(rf"{crashed.group(1)} +task\.reclaimed", story), story
    assert "crashing while holding" in (out / "logs" / f"{crashed.group(1)}.log").read_text()
    # 7 files and the merge; and what the time includes, from what the run measured
    took = r"8/8 tasks done in ([\d.]+) s, including ([\d.]+) s starting the bus and ([\d.]+) s more until"
    timing = re.search(took + r" its 3 worker processes had joined", story)
    assert timing, story
    assert float(timing.group(2)) + float(timing.group(3)) < float(timing.group(1)), story
    assert "leases taken back 1, retried tasks 1" in story
    assert "took over" in story  # the worker that finished it told the coordinator

    assert (out / "report.md").read_text().startswith("# project: 7 Python files")
    notes = (out / "notes.md").read_text().splitlines()
    assert len(notes) == 7  # one note per file: the crashed attempt wrote none
    fences = [int(m.group(1)) for line in notes if (m := re.search(r"fence (\d+)", line))]
    assert fences == sorted(fences) and len(set(fences)) == 7  # the lock was held by one at a time


def test_the_demo_runs_on_the_embedded_store(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_the_story_was_told(run_demo(tree, out), out)


def test_the_demo_runs_on_redis_and_can_be_looked_at_afterwards(
    tree: Path, tmp_path: Path, real_redis_url: str | None
) -> None:
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    out = tmp_path / "out"
    done = run_demo(tree, out, "--redis-url", real_redis_url)
    assert_the_story_was_told(done, out)
    namespace = re.search(r"namespace (demo-\d+)", done.stdout)
    assert namespace, done.stdout
    status = subprocess.run(
        [*MODULE, "status", "--json", "--redis-url", real_redis_url, "--namespace", namespace.group(1)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    snapshot = json.loads(status.stdout)
    assert snapshot["workflows"][0]["status"] == "done"
    assert snapshot["workflows"][0]["progress"]["done"] == 8


def test_a_tree_of_more_files_than_one_task_may_depend_on_is_cut_to_that_many(tmp_path: Path) -> None:
    """The merge task depends on every file's task, and a task may depend on at most 50."""
    root = tmp_path / "many"
    root.mkdir()
    for n in range(55):
        (root / f"m{n:02}.py").write_text("x = 1\n")
    done = run_demo(root, tmp_path / "out", "--limit", "500")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "51/51 tasks done" in done.stdout, done.stdout
    assert (tmp_path / "out" / "report.md").read_text().startswith("# many: 50 Python files, 50 lines")


def test_a_tree_without_python_files_is_refused(tmp_path: Path) -> None:
    done = run_demo(tmp_path, tmp_path / "out")
    assert done.returncode == 2
    assert "no Python files" in done.stderr and "Traceback" not in done.stderr
