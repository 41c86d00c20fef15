"""Redis misbehaving under running servers: full, busy with a long script, paused (SIGSTOP), and the
background loops meeting any error at all.

The process tests run two real `agentbus serve --transport http` processes on a redis-server of the
test's own, make the fault happen for real, and check what a client and a load balancer see meanwhile
(`backend_unavailable` naming the cause, `/healthz` 503) and afterwards: every server serves MCP again by
itself, in both eras, and nothing acknowledged before the fault is lost or done twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import httpx2
import pytest
import redis
from helpers import free_port, fresh_settings
from helpers.http_servers import Server, bus_env, connect, fresh, http_server, throwaway_redis
from helpers.mcp_session import Bus
from helpers.redis_servers import start_redis, stop_redis
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.errors import BackendUnavailable, WrongState
from mcp_agentbus.outages import Outage
from mcp_agentbus.redis.connection import backend
from mcp_agentbus.redis.keys import Keys
from mcp_agentbus.redis.scripts import LOADS, Script, Scripts
from mcp_agentbus.redis.store import Store
from mcp_agentbus.server.http import build_app

pytestmark = pytest.mark.anyio

BOUND = 60  # seconds any one of these tests may take; each takes far less


@contextmanager
def two_servers(
    url: str, tmp_path: Path, namespace: str | None = None, **env: str
) -> Iterator[tuple[Server, Server]]:
    """Two HTTP server processes on one Redis and namespace, with a fast reaper."""
    environment = bus_env(url, namespace or fresh("faults")) | env
    with (
        http_server(environment, tmp_path / "a.log") as a,
        http_server(environment, tmp_path / "b.log") as b,
    ):
        yield a, b


@asynccontextmanager
async def sessions(a: Server, b: Server) -> AsyncIterator[tuple[Bus, Bus]]:
    async with connect(a, "legacy") as on_a, connect(b, "auto") as on_b:
        yield on_a, on_b


async def health(http: httpx2.AsyncClient, server: Server) -> tuple[int, dict[str, Any]]:
    response = await http.get(server.healthz)
    return response.status_code, response.json()


async def until_healthy(http: httpx2.AsyncClient, *servers: Server) -> None:
    """Poll (bounded by the caller) until every server's /healthz is 200 again."""
    for server in servers:
        while True:
            if (await health(http, server))[0] == 200:
                break
            await anyio.sleep(0.1)


async def serves_again(a: Server, b: Server, acknowledged: list[str]) -> None:
    """New sessions in both eras work on both servers, and every task acknowledged before the fault is
    claimed and completed exactly once. A create the fault left unanswered may have run (its outcome was
    unknown, and the error said so): such a task, titled "unanswered", is done once like the others."""
    async with sessions(a, b) as (on_a, on_b):
        done: list[str] = []
        extra: list[str] = []
        for bus in (on_a, on_b) * (len(acknowledged) + 2):
            claim = await bus.ok("claim_task", {"agent": "after"})
            if claim["task"] is None:
                break
            task = claim["task"]
            await bus.ok(
                "complete_task",
                {"agent": "after", "task_id": task["id"], "lease_token": claim["lease"]["lease_token"]},
            )
            (done if task["id"] in acknowledged else extra).append(task["title"] + ":" + task["id"])
        assert sorted(t.split(":")[1] for t in done) == sorted(acknowledged)
        assert all(t.startswith("unanswered:") for t in extra), extra


def assert_said_once(server: Server, fragment: str) -> None:
    """The log names the failure (with its detail), says when it is over, has no traceback, and does
    not repeat the failure at every sweep."""
    log = server.log.read_text()
    assert "Traceback" not in log, log
    said = [line for line in log.splitlines() if fragment in line]
    assert said, log
    assert len(said) <= 6, "\n".join(said)  # once per loop and outage, not once per sweep
    assert "works again" in log, log


async def test_redis_out_of_memory_is_503_and_backend_unavailable_and_every_server_recovers(
    tmp_path: Path,
) -> None:
    async with httpx2.AsyncClient(timeout=5) as http:
        with throwaway_redis(tmp_path) as (_, url), two_servers(url, tmp_path) as (a, b):
            admin = redis.Redis.from_url(url)
            with anyio.fail_after(BOUND):
                async with sessions(a, b) as (on_a, on_b):
                    created = await on_a.ok("create_task", {"title": "acknowledged before"})
                    await on_b.ok("heartbeat", {"agent": "reader", "ttl_seconds": 60})
                    admin.config_set("maxmemory", 1)
                    try:
                        for bus in (on_a, on_b):
                            error = await bus.err(
                                "create_task", {"title": "refused"}, "backend_unavailable", "out of memory"
                            )
                            assert "maxmemory" in error["hint"] and "127.0.0.1" not in error["message"]
                        for server in (a, b):
                            status, body = await health(http, server)
                            assert status == 503 and "out of memory" in body["redis"], body
                            assert "127.0.0.1" not in str(body)
                        await anyio.sleep(3)  # every reaper meets the refusal at sweep after sweep
                        # reads still work, also for a live agent, whose presence each call renews (a write)
                        (agent,) = (await on_b.ok("list_agents", {"agent": "reader"}))["agents"]
                        assert agent["agent"] == "reader"
                        assert (await on_b.ok("read_inbox", {"agent": "reader", "peek": True}))[
                            "messages"
                        ] == []
                        assert (await on_b.ok("get_state", {"agent": "reader", "key": "k"}))["entries"] == []
                    finally:
                        admin.config_set("maxmemory", 0)
                await until_healthy(http, a, b)
                await serves_again(a, b, [created["task_id"]])
            admin.close()
    for server in (a, b):
        assert_said_once(server, "OutOfMemoryError")


def run_long_script(url: str, seconds: int) -> threading.Thread:
    """A script that keeps Redis busy for `seconds`, run from a thread of its own."""

    def run() -> None:
        client = redis.Redis.from_url(url, socket_timeout=seconds + 10)
        try:
            client.eval(f"local t=redis.call('TIME')[1] while redis.call('TIME')[1]-t<{seconds} do end", 0)
        except ResponseError:
            pass  # some clients of a busy server are told BUSY themselves; the script ran all the same
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_a_long_script_is_503_and_backend_unavailable_and_every_server_recovers(tmp_path: Path) -> None:
    async with httpx2.AsyncClient(timeout=5) as http:
        with throwaway_redis(tmp_path) as (_, url), two_servers(url, tmp_path) as (a, b):
            admin = redis.Redis.from_url(url)
            admin.config_set("lua-time-limit", 500)  # BUSY after half a second instead of five
            admin.close()
            with anyio.fail_after(BOUND):
                async with sessions(a, b) as (on_a, on_b):
                    created = await on_a.ok("create_task", {"title": "acknowledged before"})
                    script = run_long_script(url, 4)
                    await anyio.sleep(1.5)
                    for bus in (on_a, on_b):
                        error = await bus.err("heartbeat", {"agent": "w"}, "backend_unavailable", "busy")
                        assert "127.0.0.1" not in error["message"]
                    for server in (a, b):
                        status, body = await health(http, server)
                        assert status == 503 and "busy" in body["redis"], body
                    await anyio.to_thread.run_sync(script.join)
                await until_healthy(http, a, b)
                await serves_again(a, b, [created["task_id"]])
    for server in (a, b):
        assert_said_once(server, "BUSY")


async def test_a_paused_redis_fails_calls_within_the_timeout_and_every_server_recovers(
    tmp_path: Path,
) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        with (
            throwaway_redis(tmp_path) as (redis_proc, url),
            two_servers(url, tmp_path, AGENTBUS_REDIS_TIMEOUT_SECONDS="1") as (a, b),
        ):
            with anyio.fail_after(BOUND):
                async with sessions(a, b) as (on_a, on_b):
                    created = await on_a.ok("create_task", {"title": "acknowledged before"})
                    os.kill(redis_proc.pid, signal.SIGSTOP)
                    try:
                        for bus in (on_a, on_b):
                            started = time.monotonic()
                            await bus.err(
                                "create_task",
                                {"title": "unanswered"},
                                "backend_unavailable",
                                "did not answer",
                            )
                            # one deadline, not a timeout per retry: well under the 40 s this used to take
                            assert time.monotonic() - started < 8
                        status, body = await health(http, a)
                        assert status == 503 and "did not answer" in body["redis"], body
                    finally:
                        os.kill(redis_proc.pid, signal.SIGCONT)
                await until_healthy(http, a, b)
                await serves_again(a, b, [created["task_id"]])
    assert "Traceback" not in a.log.read_text()


# --- the loops themselves, in process: any exception, not only Redis's -------------------------------


class Flaky:
    """Makes `Store.run` raise `error` for one script `times` times, then behave."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, script: str, error: Exception, times: int) -> None:
        self.failed = 0
        real = Store.run

        async def run(store: Store, called: Script[Any], *args: Any) -> Any:
            if called.name == script and self.failed < times:
                self.failed += 1
                raise error
            return await real(store, called, *args)

        monkeypatch.setattr(Store, "run", run)


async def test_the_reaper_survives_any_error_and_takes_back_leases_afterwards(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fresh_settings(redis_url)
    flaky = Flaky(monkeypatch, "reap", RuntimeError("a bug in a sweep"), times=4)
    with caplog.at_level(logging.WARNING, logger="mcp_agentbus.core.reaper"):
        async with AgentBus.open(settings) as bus:
            created = await bus.tasks.create("boss", title="short lease")
            claim = await bus.tasks.claim("w1", lease_seconds=0.2)
            assert claim.task is not None and claim.task.id == created.task_id
            with anyio.fail_after(20):
                while True:  # the reaper takes the lease back once its sweeps stop failing
                    again = await bus.tasks.claim("w2", wait_seconds=1)
                    if again.task is not None:
                        break
            assert again.task.id == created.task_id and again.task.attempt == 2
    assert flaky.failed == 4
    failures = [r for r in caplog.records if "a bug in a sweep" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # a bug keeps its trace, once
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_the_wakeup_subscription_survives_a_failing_listener(redis_url: str) -> None:
    settings = fresh_settings(redis_url)
    calls: list[str] = []

    def listener(hint: str) -> None:
        calls.append(hint)
        if len(calls) == 1:
            raise RuntimeError("a listener bug")

    async with AgentBus.open(settings) as bus:
        await bus.wakeups.follow(["task:*"], listener, lambda: None).confirmed()
        await bus.tasks.create("boss", title="first")  # its hint breaks the listener once
        with anyio.fail_after(10):
            while True:  # the subscription comes back and wakes a claim waiting for the next task
                claim = await bus.tasks.claim("w", wait_seconds=0.5)
                if claim.task is not None and claim.task.title == "first":
                    break
            async with anyio.create_task_group() as tg:
                waited: list[str] = []

                async def wait_for_one() -> None:
                    got = await bus.tasks.claim("w", wait_seconds=5)
                    assert got.task is not None
                    waited.append(got.task.title)

                tg.start_soon(wait_for_one)
                await anyio.sleep(0.3)
                await bus.tasks.create("boss", title="second")
    assert waited == ["second"]
    assert len(calls) >= 2


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "out of memory"),
        (ResponseError("BUSY Redis is busy running a script."), "busy running a long script"),
        (MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."), "master"),
        (ResponseError("NOREPLICAS Not enough good replicas to write."), "replicas"),
        (ClusterDownError("The cluster is down"), "cluster is down"),
        (TryAgainError("Multiple keys request during rehashing of slot"), "moving"),
        (NoScriptError("No matching script. Please use EVAL."), "dropping agentbus's scripts"),
        (
            ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable"),
            "disk",
        ),
        (RedisConnectionError("Error 111 connecting to 10.1.2.3:6379. Connection refused."), "unreachable"),
        (RedisTimeoutError("Timeout reading from 10.1.2.3:6379"), "did not answer within 5 s"),
    ],
)
def test_redis_refusing_work_is_backend_unavailable_naming_the_cause_not_the_host(
    error: Exception, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://user:secret@10.1.2.3:6379/0?case={said}"  # an outage of its own: logged afresh
    with caplog.at_level(logging.WARNING), pytest.raises(BackendUnavailable) as raised, backend(url, 5):
        raise error
    assert said in raised.value.message.lower()
    assert raised.value.hint
    assert "10.1.2.3" not in raised.value.message + raised.value.hint
    logged = caplog.text
    assert "10.1.2.3" in logged and "secret" not in logged  # the detail is in the log, the password never


def test_an_error_that_is_not_redis_refusing_stays_itself() -> None:
    with pytest.raises(ResponseError, match="user_script"), backend("redis://127.0.0.1:1/0"):
        raise ResponseError("ERR user_script:1: Script attempted to access nonexistent global variable")


def test_an_outage_is_logged_once_reminded_and_its_end_said(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.outage")
    outage = Outage("the thing", logger, first_delay=0.5, max_delay=4)
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        delays = [outage.failed(OSError("down")) for _ in range(6)]
        outage.recovered()
        outage.recovered()
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "the thing failed: OSError: down; retrying until it works",
        messages[1],
    ]
    assert messages[1].startswith("the thing works again after") and "(6 failed tries)" in messages[1]


async def test_healthz_is_503_whenever_the_mcp_endpoint_is_not_running(redis_url: str) -> None:
    """A load balancer must not send requests to a process whose MCP endpoint cannot serve them, even
    though its Redis is fine: before its lifespan runs and after it has ended."""
    app = build_app(fresh_settings(redis_url))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        before = await http.get("/healthz")
        assert before.status_code == 503 and before.json()["mcp"].startswith("not serving")
        async with app.router.lifespan_context(app):
            during = await http.get("/healthz")
            assert during.status_code == 200 and during.json()["status"] == "ok"
        after = await http.get("/healthz")
        assert after.status_code == 503 and after.json()["status"] == "unavailable"


# --- a fault run: agents keep working through every fault in turn -------------------------------------


class Agents:
    """A producer creating tasks (each retried with its idempotency key until acknowledged) and workers
    claiming and completing them, over both servers, riding out `backend_unavailable` by retrying."""

    def __init__(self) -> None:
        self.acknowledged: list[str] = []  # task ids whose create_task answered
        self.completed: list[str] = []  # task ids whose complete_task answered
        self.refused = 0  # backend_unavailable answers met along the way
        self.producing = True

    async def until_answered(self, bus: Bus, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Call until the call is answered; None when refused for good (lease_lost)."""
        while True:
            result = await bus.call(tool, args)
            content: dict[str, Any] | None = result.structured_content
            assert content is not None
            if result.is_error is not True:
                return content
            code = content["error"]["code"]
            if code == "lease_lost":
                return None
            assert code == "backend_unavailable", content
            self.refused += 1
            await anyio.sleep(0.1)

    async def produce(self, bus: Bus, count: int) -> None:
        for n in range(count):
            created = await self.until_answered(
                bus, "create_task", {"title": f"task {n}", "idempotency_key": f"create-{n}"}
            )
            assert created is not None
            self.acknowledged.append(created["task_id"])
            await anyio.sleep(0.05)
        self.producing = False

    async def work(self, bus: Bus, agent: str) -> None:
        while self.producing or len(self.completed) < len(self.acknowledged):
            # A short lease: a claim whose answer a fault swallowed goes back to the queue soon.
            claim = await self.until_answered(
                bus, "claim_task", {"agent": agent, "wait_seconds": 0.5, "lease_seconds": 3}
            )
            if claim is None or claim["task"] is None:
                continue
            args = {
                "agent": agent,
                "task_id": claim["task"]["id"],
                "lease_token": claim["lease"]["lease_token"],
            }
            done = await self.until_answered(bus, "complete_task", args)
            if done is not None:
                self.completed.append(claim["task"]["id"])


@contextmanager
def restartable_redis(tmp_path: Path) -> Iterator[tuple[list[Any], str, Callable[[], None]]]:
    """A redis-server with AOF (fsync always), and a function that restarts it on its port and data."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    args = (
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    )
    procs = [start_redis(binary, port, tmp_path, *args)]

    def restart() -> None:
        stop_redis(procs[-1:])
        procs.append(start_redis(binary, port, tmp_path, *args))

    try:
        yield procs, f"redis://127.0.0.1:{port}/0", restart
    finally:
        stop_redis([p for p in procs if p.poll() is None])


async def test_agents_keep_working_through_every_fault_and_nothing_acknowledged_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    agents = Agents()
    namespace = fresh("fault-run")
    async with httpx2.AsyncClient(timeout=10) as http:
        with (
            restartable_redis(tmp_path) as (procs, url, restart),
            two_servers(url, tmp_path, namespace, AGENTBUS_REDIS_TIMEOUT_SECONDS="1") as (a, b),
        ):
            admin = redis.Redis.from_url(url, decode_responses=True)
            with anyio.fail_after(BOUND * 2):
                async with (
                    sessions(a, b) as (on_a, on_b),
                    connect(a, "auto") as w1,
                    connect(b, "legacy") as w2,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(agents.produce, on_a, 60)
                    tg.start_soon(agents.work, w1, "w1")
                    tg.start_soon(agents.work, w2, "w2")
                    tg.start_soon(agents.work, on_b, "w3")
                    await anyio.sleep(0.5)
                    admin.config_set("maxmemory", 1)
                    await anyio.sleep(1.5)
                    admin.config_set("maxmemory", 0)
                    admin.config_set("lua-time-limit", 200)
                    await anyio.to_thread.run_sync(run_long_script(url, 2).join)
                    os.kill(procs[-1].pid, signal.SIGSTOP)
                    await anyio.sleep(2)
                    os.kill(procs[-1].pid, signal.SIGCONT)
                    await anyio.to_thread.run_sync(restart)
                await until_healthy(http, a, b)
            events = cast(list[tuple[str, dict[str, str]]], admin.xrange(Keys(namespace).events))
            completions = Counter(
                json.loads(fields["data"])["task"]
                for _, fields in events
                if fields["topic"] == "task.completed"
            )
            admin.close()
    assert agents.refused > 0  # the faults were met, not missed
    assert len(agents.acknowledged) == 60 and len(set(agents.acknowledged)) == 60
    assert sorted(agents.completed) == sorted(agents.acknowledged)
    assert all(completions[task] == 1 for task in agents.acknowledged), completions
    for server in (a, b):
        assert "Traceback" not in server.log.read_text()


# --- a connection lost after a command went out ----------------------------------------------------


@asynccontextmanager
async def cutting_proxy(redis_url_real: str, marker: bytes) -> AsyncIterator[str]:
    """A TCP proxy to the real Redis, as a URL: it passes everything on, except that the first command
    holding `marker` is passed to Redis and then its connection is cut before the reply comes back, as
    a Redis restart, a failover or a network fault can do. Redis has run the command by then."""
    host, port = redis_url_real.removeprefix("redis://").split("/")[0].split(":")
    cut = anyio.Event()

    async def serve(client: anyio.abc.SocketStream) -> None:
        cutting = anyio.Event()  # of this connection
        async with client, await anyio.connect_tcp(host, int(port)) as upstream:

            async def replies() -> None:
                async for chunk in upstream:
                    if cutting.is_set():  # the reply to the command cut off
                        return
                    await client.send(chunk)

            async with anyio.create_task_group() as tg:
                tg.start_soon(replies)
                async for chunk in client:
                    if marker in chunk and not cut.is_set():
                        cut.set()
                        cutting.set()
                        await upstream.send(chunk)
                        await anyio.sleep(0.3)  # Redis runs it; its reply is not passed back
                        break
                    await upstream.send(chunk)
                tg.cancel_scope.cancel()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"redis://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/0"
        tg.cancel_scope.cancel()


async def test_a_call_whose_connection_is_lost_after_it_went_out_is_not_sent_again(
    redis_url_real: str,
) -> None:
    """The task is created once, and the caller is told the outcome is unknown (sent again, as redis-py
    retries a lost connection, it was created twice); the next call goes through."""
    with anyio.fail_after(BOUND):
        async with cutting_proxy(redis_url_real, b"made-once") as url:
            settings = fresh_settings(url)
            async with AgentBus.open(settings, reaper=False) as bus:
                await bus.tasks.create("boss", title="before")  # Redis has the script from here on
                with pytest.raises(BackendUnavailable, match="lost before it answered") as refused:
                    await bus.tasks.create("boss", title="made-once")
                assert "unknown" in refused.value.hint
                after = await bus.tasks.create("boss", title="after")
            async with AgentBus.open(
                settings.model_copy(update={"redis_url": redis_url_real}), reaper=False
            ) as direct:
                created = await direct.events.recent("task.created")
    titles = [event.data["title"] for event in created.events]
    assert sorted(titles) == ["after", "before", "made-once"], titles
    assert after.task_id != ""


class _Forgetful:
    """A Redis that forgets its scripts `times` times (a SCRIPT FLUSH, or restarts, under way)."""

    def __init__(self, times: int) -> None:
        self.times, self.loads = times, 0

    async def evalsha(self, *args: Any) -> str:
        if self.times:
            self.times -= 1
            raise NoScriptError("No matching script. Please use EVAL.")
        return "ran"

    async def script_load(self, text: str) -> None:
        self.loads += 1


@pytest.mark.parametrize("forgets", [1, LOADS])
async def test_a_script_dropped_again_while_it_is_loaded_is_loaded_again(forgets: int) -> None:
    redis = _Forgetful(forgets)
    assert await Scripts(cast("Any", redis))("heartbeat", ("k",), []) == "ran"
    assert redis.loads == forgets


async def test_a_script_redis_keeps_dropping_is_backend_unavailable() -> None:
    redis = _Forgetful(LOADS + 1)
    with pytest.raises(BackendUnavailable, match="dropping agentbus's scripts"), backend("redis://x:1/0"):
        await Scripts(cast("Any", redis))("heartbeat", ("k",), [])


def test_outages_that_come_and_go_are_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One caller refused while another is served: failure and recovery alternate call by call. The
    first outage is logged with its end; those within the next minute are counted, and named with the
    first one logged after it."""
    now = [1_000.0]
    monkeypatch.setattr("mcp_agentbus.outages.time.monotonic", lambda: now[0])
    outage = Outage("the thing", logging.getLogger("test.flaps"))
    with caplog.at_level(logging.WARNING, logger="test.flaps"):
        for _ in range(50):
            outage.failed(OSError("down"))
            outage.recovered()
            now[0] += 0.5
        now[0] += 60
        outage.failed(OSError("down again"))
        outage.recovered()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages
    assert messages[0] == "the thing failed: OSError: down; retrying until it works"
    assert messages[1].startswith("the thing works again")
    assert messages[2] == (
        "the thing failed: OSError: down again; retrying until it works (49 short outage(s) before it)"
    )
    assert messages[3].startswith("the thing works again")


async def test_a_claim_whose_answer_was_lost_is_found_by_heartbeat_and_its_lease_claimed_again(
    redis_url_real: str,
) -> None:
    """The claim ran, its answer was cut off: the worker is told the outcome is unknown, its heartbeat
    lists the task it holds, and claim_task with that task_id gives it the lease it holds (no second
    attempt), with which it completes the task."""
    async with cutting_proxy(redis_url_real, b"cut-claimer") as url:
        with anyio.fail_after(BOUND):
            async with AgentBus.open(fresh_settings(url), reaper=False) as bus:
                await bus.presence.heartbeat("warm-up")  # Redis has the scripts from here on
                await bus.tasks.claim("warm-up")
                task = await bus.tasks.create("boss", title="lost answer")
                with pytest.raises(BackendUnavailable, match="lost before it answered") as refused:
                    await bus.tasks.claim("cut-claimer", task_id=task.task_id)
                assert "leases_extended" in refused.value.hint
                beat = await bus.presence.heartbeat("cut-claimer")
                assert [lease.task_id for lease in beat.leases_extended] == [task.task_id]
                again = await bus.tasks.claim("cut-claimer", task_id=task.task_id)
                assert again.task is not None and again.lease is not None
                assert (again.task.id, again.task.attempt, again.lease.fence) == (task.task_id, 1, 1)
                done = await bus.tasks.complete("cut-claimer", task.task_id, again.lease.lease_token)
                assert done.state == "done"
                with pytest.raises(WrongState, match="done"):
                    await bus.tasks.claim("other", task_id=task.task_id)
