"""``agentbus serve --transport http --workers N``: N server processes on one port, serving one bus.

The parent binds the port once, then forks N workers that each accept connections on that socket (the
kernel hands each new connection to one worker that is ready) and run the whole HTTP server of
``http.py``. The bus lives in Redis, so the processes behave as one bus. A legacy (``initialize``)
session lives in the process that made it; a request of it that reaches another worker is passed on to
that one over its Unix socket (``session_routes.py``). 2026-07-28 clients are sessionless.

The parent only supervises: it restarts a worker that exits (at most one start a second per worker,
so a worker that cannot start does not spin), and passes SIGTERM or SIGINT on to them all; those still
running after their shutdown grace (``http.shutdown_grace``) and a margin are killed. While its
event loop runs, each worker stamps its slot in a page of memory the processes share (`Fleet`);
``/healthz`` on any worker reads every slot, so it answers for all of them. A worker whose stamp is
older than the stuck bound (``--worker-timeout``; its loop blocked, or the process stopped) is killed,
as gunicorn does, and so started again: what it held (its sessions, the requests passed on to it) ends
then instead of waiting for good.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

STAMP_SECONDS = 1.0  # how often a serving worker stamps its slot
STALE_SECONDS = 5.0  # a slot older than this is a worker that is not serving (exited, starting, or stuck)
RESTART_SECONDS = 1.0  # the least time between two starts of one worker
STUCK_SECONDS = 30.0  # default --worker-timeout: a stamp this old is a worker to kill and start again
STOP_MARGIN_SECONDS = 5.0  # past the workers' own shutdown grace, before they are killed
POLL_SECONDS = 0.2  # how often the parent looks for a worker that exited
STOPS = {signal.SIGTERM, signal.SIGINT}
_SLOT = struct.Struct("d")  # time.monotonic() of the last stamp; the same clock in every process


@dataclass(frozen=True)
class Fleet:
    """The workers of one server, as every one of them sees them: a shared page of stamps, and the
    private directory of their Unix sockets (session_routes.py)."""

    size: int
    sockets: Path
    _page: mmap.mmap

    @classmethod
    def shared(cls, size: int) -> Fleet:
        """A fleet of `size` slots in anonymous shared memory; create it before forking."""
        return cls(size, Path(tempfile.mkdtemp(prefix="agentbus-workers-")), mmap.mmap(-1, _SLOT.size * size))

    def stamp(self, slot: int) -> None:
        _SLOT.pack_into(self._page, slot * _SLOT.size, time.monotonic())

    def clear(self, slot: int) -> None:
        """Mark worker `slot` not serving (it exited) before its stamp would go stale."""
        _SLOT.pack_into(self._page, slot * _SLOT.size, 0.0)

    def silent_for(self, slot: int) -> float | None:
        """Seconds since worker `slot` last stamped; None if it has not since it (re)started."""
        at: float = _SLOT.unpack_from(self._page, slot * _SLOT.size)[0]
        return time.monotonic() - at if at else None

    def serving(self) -> int:
        """How many workers stamped their slot within `STALE_SECONDS`."""
        silences = (self.silent_for(slot) for slot in range(self.size))
        return sum(1 for silent in silences if silent is not None and silent < STALE_SECONDS)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket all workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(
    fleet: Fleet,
    run_worker: Callable[[int], int],
    grace_seconds: float,
    listening: socket.socket,
    stuck_seconds: float,
) -> None:
    """Fork a worker per slot of `fleet` that runs ``run_worker(slot)`` (its exit status) on the shared
    `listening` socket, and keep them running (killing one silent for `stuck_seconds`) until SIGTERM or
    SIGINT; then pass that signal on, close the parent's copy of the socket (so the port refuses new
    connections once the workers have closed theirs, rather than queueing them until the parent exits),
    and kill those still running `grace_seconds` (their own shutdown grace) and a margin later."""
    workers: dict[int, int] = {}  # pid → slot
    started: dict[int, float] = {}  # slot → monotonic time of its last start
    # The stop signals received. The handler only notes them; the wait loop passes them on, so a worker
    # forked just as one came (after `start` looked) gets it too, and the handler never logs.
    stops: list[signal.Signals] = []

    def start(slot: int) -> None:
        wait = started.get(slot, -RESTART_SECONDS) + RESTART_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if stops:  # a stop came while it waited
            return
        started[slot] = time.monotonic()
        # Blocked across the fork: the child must not run the parent's handler before it resets it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        pid = os.fork()
        if pid == 0:  # the worker: its own process group, so a terminal's Ctrl-C reaches only the parent
            os.setpgid(0, 0)
            for sig in STOPS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = 1
            try:
                status = run_worker(slot)
            except BaseException:
                logger.exception("worker %d failed", slot)
            finally:
                logging.shutdown()
                os._exit(status)
        workers[pid] = slot
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    for sig in STOPS:
        signal.signal(sig, lambda signum, _frame: stops.append(signal.Signals(signum)))
    try:
        for slot in range(fleet.size):
            start(slot)
        deadline = None
        passed = 0  # of `stops`
        while workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if len(stops) > passed:
                if deadline is None:
                    logger.info("stopping %d workers (%s)", len(workers), stops[0].name)
                    listening.close()
                    deadline = time.monotonic() + grace_seconds + STOP_MARGIN_SECONDS
                for sig in stops[passed:]:  # each: a second Ctrl-C makes uvicorn stop at once
                    for left in workers:
                        _signal(left, sig)
                passed = len(stops)
            if pid == 0:  # polled, so a stop that comes meanwhile is passed on within `POLL_SECONDS`
                if deadline is not None and time.monotonic() > deadline:
                    for left in workers:
                        _signal(left, signal.SIGKILL)
                elif deadline is None:
                    _kill_stuck(fleet, workers, stuck_seconds)
                time.sleep(POLL_SECONDS)
                continue
            slot = workers.pop(pid)
            fleet.clear(slot)
            if not stops:
                code = os.waitstatus_to_exitcode(status)
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
                logger.warning("worker %d (pid %d) %s; starting it again", slot, pid, how)
                start(slot)
    finally:  # a forked worker never comes back here: os._exit
        shutil.rmtree(fleet.sockets, ignore_errors=True)


def _kill_stuck(fleet: Fleet, workers: dict[int, int], stuck_seconds: float) -> None:
    """SIGKILL (which a stopped process takes too) each worker silent for `stuck_seconds`; its slot is
    cleared at once, so it is killed once, and the wait loop starts it again."""
    for pid, slot in workers.items():
        silent = fleet.silent_for(slot)
        if silent is not None and silent > stuck_seconds:
            how = "has not turned its event loop for %.0f s (blocked, or stopped); killing it"
            logger.warning("worker %d (pid %d) " + how, slot, pid, silent)
            fleet.clear(slot)
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile; the wait loop collects it
        os.kill(pid, sig)
