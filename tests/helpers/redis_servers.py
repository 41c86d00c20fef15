"""Private redis-server processes for the fixtures and the tests that need their own."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from helpers import free_ports

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def redis_binary(name: str) -> str | None:
    """Path of a Redis binary; None when missing locally, a failure under CI."""
    binary = shutil.which(name)
    if binary is None and IN_CI:
        pytest.fail(f"{name} is not installed; CI must test against a real Redis (.ci/run installs it)")
    return binary


# The oldest Redis agentbus is tested on, built once into the venv by the Makefile (`make redis6`, which
# `make test` and `make check` run first): Debian, and so this machine and CI, ship Redis 7.
REDIS6_DIR = Path(sys.prefix) / "redis-6.2"


def redis6_binaries() -> tuple[str, str]:
    """The Redis 6.2 redis-server and redis-cli; skips the test locally without them, fails it in CI."""
    missing = [name for name in ("redis-server", "redis-cli") if not (REDIS6_DIR / name).is_file()]
    if missing:
        message = f"Redis 6.2 is not built ({REDIS6_DIR / missing[0]} is missing): `make check` builds it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(REDIS6_DIR / "redis-server"), str(REDIS6_DIR / "redis-cli")


def server_major(binary: str) -> int:
    """The major version of a redis-server binary (`redis-server --version`: `... v=7.0.15 ...`)."""
    shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"\bv=(\d+)\.", shown)
    if found is None:
        pytest.fail(f"{binary} --version did not say its version: {shown!r}")
    return int(found.group(1))


def start_redis(binary: str, port: int, workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    """A redis-server (or sentinel, with `--sentinel` in args) on 127.0.0.1:`port`, answering PING."""
    proc = subprocess.Popen(
        [binary, *args, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    favour(proc.pid)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                break  # it exited (say, the port was taken meanwhile): whatever answers is not ours
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    stop_redis([proc])
    pytest.fail(f"redis-server {' '.join(args)} did not start on port {port}")


def favour(pid: int) -> None:
    """Run a test's redis-server ahead of the test processes where that is allowed (as root, in CI).

    `make test` keeps both cores busy with several workers; a redis-server that waits for the CPU
    mid-command would count the wait in SLOWLOG, and the tests that hold scripts under a SLOWLOG
    threshold (tests/redis/test_bounded_scripts.py) would measure the scheduler instead of the script.
    Elsewhere the server keeps the default priority."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, -10)


def stop_redis(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


DATA_ARGS = ("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")

# Before Redis 7 a node's cluster bus port is always its client port + 10000 (7 has --cluster-port).
LEGACY_BUS_OFFSET = 10000


def free_ports_with_bus(count: int) -> list[int]:
    """`count` distinct free loopback ports each with its port + LEGACY_BUS_OFFSET free too (all held at
    once while picked), below the ephemeral range (32768 and up on Linux) so that no client connection
    takes one meanwhile; random, so that test workers picking at once rarely meet."""
    with contextlib.ExitStack() as stack:
        picked: list[int] = []
        for port in random.sample(range(20000, 32768 - LEGACY_BUS_OFFSET), 200):
            socks = [stack.enter_context(socket.socket()) for _ in range(2)]
            try:
                socks[0].bind(("127.0.0.1", port))
                socks[1].bind(("127.0.0.1", port + LEGACY_BUS_OFFSET))
            except OSError:
                continue
            picked.append(port)
            if len(picked) == count:
                return picked
    pytest.fail(f"found no {count} free loopback ports with their port + {LEGACY_BUS_OFFSET} free")


def start_cluster(server: str, cli: str, workdir: Path) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """A 3-master Redis Cluster (no replicas) of `server`, created with `cli`, each node in a directory
    under `workdir`, waited on until every node reports it ok: the processes and the client ports. The
    caller stops them (stop_redis); when starting fails, this does."""
    nodes: list[tuple[int, tuple[str, ...]]]
    if server_major(server) >= 7:
        ports = free_ports(6)  # a client port and a cluster bus port per node
        nodes = [(port, ("--cluster-port", str(bus))) for port, bus in zip(ports[:3], ports[3:], strict=True)]
    else:
        nodes = [(port, ()) for port in free_ports_with_bus(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, bus_args in nodes:
            node_dir = workdir / f"node-{port}"
            node_dir.mkdir(parents=True)
            procs.append(
                start_redis(
                    server,
                    port,
                    node_dir,
                    *DATA_ARGS,
                    "--cluster-enabled",
                    "yes",
                    *bus_args,
                    "--cluster-config-file",
                    str(node_dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        addresses = [f"127.0.0.1:{port}" for port, _ in nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        wait_for_cluster([port for port, _ in nodes])
    except BaseException:
        stop_redis(procs)
        raise
    return procs, [port for port, _ in nodes]


def wait_for_cluster(ports: list[int]) -> None:
    """Poll (bounded) until every node reports the cluster ok, all slots covered, every node known."""
    clients = [redis.Redis(host="127.0.0.1", port=port, decode_responses=True) for port in ports]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [str(client.execute_command("CLUSTER", "INFO")) for client in clients]  # type: ignore[no-untyped-call]
            if all(
                "cluster_state:ok" in info
                and "cluster_slots_ok:16384" in info
                and f"cluster_known_nodes:{len(ports)}" in info
                for info in infos
            ):
                return
            time.sleep(0.1)
        pytest.fail(f"the Redis Cluster on ports {ports} did not reach cluster_state:ok: {infos}")
    finally:
        for client in clients:
            client.close()
