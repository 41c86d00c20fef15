"""An agent runner: starts N example workers (examples/worker.py), each with its own agent id, and
waits for them. The runnable counterpart of client_configs/runner.sh, which starts headless Claude
Code workers instead.

    python examples/runner.py 3                        # worker-1, worker-2, worker-3
    python examples/runner.py 2 --prefix indexer -- --capabilities text --idle-exit 30

Arguments after `--` go to every worker. Unless they say otherwise (`--idle-exit 0` keeps them
waiting for good), each worker stops after 10 s without a task, so the runner exits once the work is
done. They all inherit this environment, so they join the same
AGENTBUS_NAMESPACE. Ctrl-C (or SIGTERM) stops them all; a task one of them held goes back to the
queue when its lease expires. Exits 0 when every worker exited 0.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

WORKER = Path(__file__).with_name("worker.py")
IDLE_EXIT = "10"  # seconds without a task before a worker stops, unless the worker arguments say


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The runner's own arguments, and in `worker_args` those after `--`."""
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s [-h] [--prefix PREFIX] count [-- worker args]"
    )
    parser.add_argument("count", type=int, help="how many workers to start")
    parser.add_argument("--prefix", default="worker", help="agent ids are PREFIX-1 ... PREFIX-N")
    args = parser.parse_args(argv[:split])
    if args.count < 1:
        parser.error("count must be at least 1")
    args.worker_args = argv[split + 1 :]
    if not any(a.startswith("--idle-exit") for a in args.worker_args):
        args.worker_args += ["--idle-exit", IDLE_EXIT]
    return args


def stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    args = parse_args(sys.argv[1:])
    signal.signal(signal.SIGTERM, stop)
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for i in range(1, args.count + 1):
            agent = f"{args.prefix}-{i}"
            workers[agent] = subprocess.Popen(
                [sys.executable, str(WORKER), "--agent", agent, *args.worker_args]
            )
            print(f"runner: started {agent} (pid {workers[agent].pid})", flush=True)
        failed = 0
        for agent, proc in workers.items():
            code = proc.wait()
            print(f"runner: {agent} exited with {code}", flush=True)
            failed += code != 0
        sys.exit(1 if failed else 0)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in workers.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
