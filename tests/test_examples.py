"""The examples in examples/ run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs_a_workflow_through_a_crash_to_the_report() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "crashes while holding" in done.stdout
    assert "(attempt 2)" in done.stdout
    assert "workflow done: 4/4 done" in done.stdout
    assert '"8 rows, max 9, sorted: [1, 1, 2, 3, 4, 5, 6, 9]"' in done.stdout
