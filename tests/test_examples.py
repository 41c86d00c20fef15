"""The examples in examples/ run as documented.

The coordinator, the workers and the runner are separate processes, each starting its own `agentbus
serve` over stdio (the venv's, first on PATH), all on the session's real Redis in a namespace of their
own: the workflow they run must finish with every task completed exactly once, including the one that
fails on its first attempt.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from helpers.examples import BIN, BOUND, ROOT, stop, wait_until
from mcp import Client

from mcp_agentbus import Settings, build_server

EXAMPLES = ROOT / "examples"
KEYS = ["fetch", "count-a", "count-b", "count-c", "merge", "report"]
RUNNER_IDLE_EXIT = 10  # examples/runner.py: a worker stops after this many seconds without a task
REPORT = "report: 31 distinct words; most common: the (6), a (3), lease (3)"


def bus_env(redis_url: str, **extra: str) -> dict[str, str]:
    """This environment without AGENTBUS_*, the venv's bin first on PATH, the test Redis, a fresh
    namespace, short retry backoffs, and no tokens file (whatever the user has)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    return base | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AGENTBUS_REDIS_URL": redis_url,
        "AGENTBUS_NAMESPACE": f"examples-{uuid.uuid4().hex[:12]}",
        "AGENTBUS_RETRY_BACKOFF_SECONDS": "0.2",
        "AGENTBUS_REAPER_INTERVAL_SECONDS": "0.2",
        "AGENTBUS_TOKENS_FILE": "/nonexistent/agentbus/tokens.json",
        **extra,
    }


class Processes:
    """Processes started by one test, each writing stdout and stderr to files; all stopped after it."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with self.out(name).open("wb") as out, self.err(name).open("wb") as err:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
            )
        return self.procs[name]

    def out(self, name: str) -> Path:
        return self.workdir / f"{name}.out"

    def err(self, name: str) -> Path:
        return self.workdir / f"{name}.err"

    def text(self, name: str) -> str:
        return self.out(name).read_text()

    def report(self, name: str) -> str:
        code = self.procs[name].poll()
        return f"{name} (exit {code}):\n{self.text(name)}\n{self.err(name).read_text()}"

    def finish(self, name: str) -> str:
        """Wait (bounded) for the process to exit 0 and return its stdout; fail at once if another
        process of the test exits with an error meanwhile."""
        proc = self.procs[name]

        def failed_others() -> list[str]:
            return [n for n, p in self.procs.items() if n != name and p.poll() not in (None, 0)]

        wait_until(lambda: proc.poll() is not None or bool(failed_others()), f"{name} to finish")
        for other in failed_others():
            pytest.fail(f"{self.report(other)}\nwhile waiting for {self.report(name)}")
        assert proc.returncode == 0, self.report(name)
        assert "Traceback" not in self.err(name).read_text(), self.report(name)
        return self.text(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)


@contextmanager
def processes(workdir: Path, env: dict[str, str]) -> Iterator[Processes]:
    procs = Processes(workdir, env)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def redis_url_real(real_redis_url: str | None) -> str:
    if real_redis_url is None:
        pytest.skip("redis-server not installed")
    return real_redis_url


def start_coordinator(procs: Processes) -> None:
    """Start examples/coordinator.py and wait until it has created its workflow."""
    coordinator = procs.start("coordinator", str(EXAMPLES / "coordinator.py"), "--timeout", str(BOUND))
    wait_until(
        lambda: "created wf-" in procs.text("coordinator") or coordinator.poll() is not None,
        "the coordinator to create its workflow",
    )
    assert "created wf-" in procs.text("coordinator"), procs.err("coordinator").read_text()


def assert_workflow_done_once_each(coordinator_out: str, worker_outs: list[str]) -> None:
    assert "workflow done: 6/6 done" in coordinator_out, coordinator_out
    for key in KEYS:
        attempts = 2 if key == "count-b" else 1
        said = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        assert re.search(rf"^  {key} +done +by \S+ in {said}:", coordinator_out, re.M), (
            key,
            coordinator_out,
        )
    assert REPORT in coordinator_out, coordinator_out

    lines = "\n".join(worker_outs)
    completed = Counter(re.findall(r": completed (\S+)$", lines, re.M))
    assert completed == Counter(KEYS), lines  # every task completed, none twice
    assert len(re.findall(r": failed count-b: simulated crash on the first attempt", lines)) == 1, lines
    assert len(re.findall(r": claimed count-b \(t-\d+, attempt 2\)", lines)) == 1, lines


def test_coordinator_and_three_workers_finish_the_workflow_each_task_once(
    redis_url_real: str, tmp_path: Path
) -> None:
    with processes(tmp_path, bus_env(redis_url_real)) as procs:
        start_coordinator(procs)
        workers = [f"worker-{i}" for i in (1, 2, 3)]
        for name in workers:
            procs.start(name, str(EXAMPLES / "worker.py"), "--agent", name, "--idle-exit", "5", "--wait", "2")
        coordinator_out = procs.finish("coordinator")
        worker_outs = [procs.finish(name) for name in workers]

    assert_workflow_done_once_each(coordinator_out, worker_outs)
    for name, out in zip(workers, worker_outs, strict=True):
        assert all(line.startswith(f"{name}: ") for line in out.splitlines()), out  # its own id
        assert f"{name}: no task for 5 s, stopping" in out, out


def test_runner_starts_workers_with_their_own_ids_that_finish_the_workflow(
    redis_url_real: str, tmp_path: Path
) -> None:
    with processes(tmp_path, bus_env(redis_url_real)) as procs:
        start_coordinator(procs)
        procs.start(
            "runner", str(EXAMPLES / "runner.py"), "2", "--prefix", "indexer", "--", "--idle-exit", "5"
        )
        runner_out = procs.finish("runner")  # its workers stop once idle, after the workflow is done
        coordinator_out = procs.finish("coordinator")

    for name in ("indexer-1", "indexer-2"):
        assert f"runner: started {name} (pid " in runner_out, runner_out
        assert f"runner: {name} exited with 0" in runner_out, runner_out
        assert f"{name}: no task for 5 s, stopping" in runner_out, runner_out
    assert_workflow_done_once_each(coordinator_out, [runner_out])


def test_runner_stops_its_workers_when_it_is_stopped(redis_url_real: str, tmp_path: Path) -> None:
    with processes(tmp_path, bus_env(redis_url_real)) as procs:
        runner = procs.start("runner", str(EXAMPLES / "runner.py"), "2", "--", "--idle-exit", "0")
        wait_until(lambda: procs.text("runner").count(": waiting for tasks") == 2, "both workers to start")
        pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", procs.text("runner"))]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=BOUND) == 128 + signal.SIGTERM
        for pid in pids:  # runner.py waited for them, so they are gone, not zombies
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    out = procs.text("runner")
    for name in ("worker-1", "worker-2"):
        assert f"{name}: stopping on SIGTERM" in out, out  # each closed its server cleanly
    assert "Traceback" not in procs.err("runner").read_text(), procs.report("runner")


@pytest.mark.anyio
async def test_subagent_prompt_calls_real_tools_with_real_arguments_always_naming_its_agent() -> None:
    """Every call the prompt shows (`tool {json}`) names a tool the server lists, with arguments its
    input schema accepts, and passes `agent`: subagents sharing a server must never leave it out."""
    text = (EXAMPLES / "subagent_prompt.md").read_text()
    calls = [(tool, json.loads(arguments)) for tool, arguments in re.findall(r"`([a-z_]+) (\{.*?\})`", text)]
    settings = Settings(redis_url=f"memory://{uuid.uuid4().hex}", namespace="prompt")
    async with Client(build_server(settings)) as client:
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    shown = {tool for tool, _ in calls}
    needed = {"heartbeat", "claim_task", "complete_task", "fail_task", "acquire_lock", "release_lock"}
    assert shown >= needed | {"send_message", "read_inbox"}, shown
    for tool, arguments in calls:
        assert arguments["agent"] == "<your-id>", (tool, arguments)
        assert set(arguments) <= set(schemas[tool]["properties"]), (tool, arguments)
        jsonschema.validate(arguments, schemas[tool])


def test_runner_as_the_readme_runs_it_exits_once_the_workflow_is_done(
    redis_url_real: str, tmp_path: Path
) -> None:
    """`python examples/runner.py 3`, no other argument: its workers stop once idle, so it exits."""
    with processes(tmp_path, bus_env(redis_url_real)) as procs:
        start_coordinator(procs)
        runner = procs.start("runner", str(EXAMPLES / "runner.py"), "3")
        coordinator_out = procs.finish("coordinator")
        # The workflow is done; the workers' idle exit is the rest of the bound.
        wait_until(lambda: runner.poll() is not None, "the runner to exit", bound=RUNNER_IDLE_EXIT + 30)
        runner_out = procs.finish("runner")
    for name in ("worker-1", "worker-2", "worker-3"):
        assert f"{name}: no task for {RUNNER_IDLE_EXIT} s, stopping" in runner_out, runner_out
        assert f"runner: {name} exited with 0" in runner_out, runner_out
    assert_workflow_done_once_each(coordinator_out, [runner_out])
