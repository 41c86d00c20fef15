"""Redis 6.2, the oldest Redis agentbus can run on (it uses XTRIM MINID and ZMSCORE, new in 6.2), on one
server and on a 3-master Cluster. The rest of the suite runs on Redis 7, where wake-ups on a
Cluster are shard channels (SPUBLISH/SSUBSCRIBE); before 7 there are none, and both the scripts
(common.lua's WAKE_PUBLISH) and the subscriber (connection.subscriber) fall back to PUBLISH/SUBSCRIBE.

The 6.2 binaries are built into the venv by the Makefile (`make check` does it once); the servers are
this module's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import pytest
import redis
import redis.asyncio as aioredis
from helpers import free_port, fresh_settings
from helpers.redis_servers import DATA_ARGS, redis6_binaries, start_cluster, start_redis, stop_redis
from redis.asyncio.cluster import RedisCluster

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.waiting import ProgressCallback
from mcp_agentbus.errors import BackendUnavailable
from mcp_agentbus.redis.connection import subscriber
from mcp_agentbus.redis.replies import READ_INBOX, RELEASE_TASK, UNREAD_MESSAGES
from mcp_agentbus.redis.scripts import SCRIPT_NAMES, Scripts, source

pytestmark = pytest.mark.anyio

WAIT = 30  # seconds a wait below asks for: far beyond WOKEN_WITHIN, so only a wake-up ends it in time
WOKEN_WITHIN = 3  # seconds from the change to the waiter's answer (it comes in milliseconds)

T = TypeVar("T")


def assert_redis_62(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    assert version.startswith("6.2."), f"the server on port {port} is Redis {version}, not 6.2"


@pytest.fixture(scope="module")
def single_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, _ = redis6_binaries()
    port = free_port()
    proc = start_redis(server, port, tmp_path_factory.mktemp("redis6"), *DATA_ARGS)
    try:
        assert_redis_62(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis([proc])


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    procs, ports = start_cluster(*redis6_binaries(), tmp_path_factory.mktemp("redis6-cluster"))
    try:
        for port in ports:
            assert_redis_62(port)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        stop_redis(procs)


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """The URL of the module's Redis 6.2 server, or of its Cluster."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def buses(url: str) -> AsyncIterator[tuple[AgentBus, AgentBus]]:
    """Two buses on one namespace, each with its own connections: a waiter's and a changer's."""
    settings = fresh_settings(url, max_wait_seconds=WAIT)
    async with AgentBus.open(settings) as waiter, AgentBus.open(settings) as changer:
        yield waiter, changer


def node_ports(url: str) -> list[int]:
    return [int(seed.rpartition(":")[2]) for seed in urlsplit(url).netloc.split(",")]


# --- every script -----------------------------------------------------------------------------------


async def test_every_script_loads_as_a_single_server_and_a_cluster_client_sends_it(single_url: str) -> None:
    """The text of each script in both its forms (a cluster client's asks for shard channels, which
    the Lua itself turns down below Redis 7) compiles on Redis 6.2."""
    client = aioredis.Redis.from_url(single_url)
    try:
        for name in SCRIPT_NAMES:
            for sharded in (False, True):
                assert await client.script_load(source(name, sharded)), name
    finally:
        await client.aclose()


async def test_a_flow_through_every_family_runs_every_script(
    buses: tuple[AgentBus, AgentBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: set[str] = set()
    reaped = anyio.Event()
    call = Scripts.__call__

    async def recorded(scripts: Scripts, name: Any, keys: tuple[str, ...], args: list[Any]) -> Any:
        reply = await call(scripts, name, keys, args)
        ran.add(name)  # it ran and answered
        if name == "reap":
            reaped.set()
        return reply

    monkeypatch.setattr(Scripts, "__call__", recorded)
    bus, _ = buses

    # presence
    beat = await bus.presence.heartbeat("worker", capabilities=["build"], note="on 6.2")
    assert beat.joined and beat.live_agents == 1

    # tasks: create, claim, a claim handed back (its caller went away), fail, complete
    created = await bus.tasks.create("planner", title="first", capability="build")
    claim = await bus.tasks.claim("worker", capabilities=["build"])
    assert claim.task is not None and claim.lease is not None and claim.task.id == created.task_id
    await bus.store.run(RELEASE_TASK, "worker", created.task_id, claim.lease.lease_token)
    claim = await bus.tasks.claim("worker", capabilities=["build"])
    assert claim.task is not None and claim.lease is not None and claim.task.id == created.task_id
    failed = await bus.tasks.fail("worker", created.task_id, claim.lease.lease_token, error="flaky")
    assert failed.state in ("ready", "delayed") and failed.attempts == 1
    claim = await bus.tasks.claim("worker", capabilities=["build"], wait_seconds=5)  # after its backoff
    assert claim.task is not None and claim.lease is not None and claim.task.id == created.task_id
    done = await bus.tasks.complete("worker", created.task_id, claim.lease.lease_token, result={"ok": 1})
    assert done.task_id == created.task_id and not done.already_completed

    # a workflow; a task cancelled, then retried
    flow = await bus.workflows.create(
        "planner",
        title="release",
        tasks=[
            {"key": "build", "title": "build", "capability": "build"},
            {"key": "ship", "title": "ship", "capability": "ship", "depends_on": ["build"]},
        ],
    )
    assert flow.ready == ["build"]
    build = flow.task_ids["build"]
    cancelled = await bus.control.cancel("planner", task_id=build, reason="wrong branch")
    assert set(cancelled.cancelled) == {build, flow.task_ids["ship"]}
    retried = await bus.control.retry("planner", build, reason="right branch now")
    assert retried.state == "ready" and retried.restored == [flow.task_ids["ship"]]
    got = await bus.workflows.get(flow.workflow_id)
    assert got.workflow is not None
    assert {t.key: t.state for t in got.workflow.tasks} == {"build": "ready", "ship": "blocked"}

    # inbox: send, a read handed back (its caller went away), read
    sent = await bus.inbox.send("planner", "worker", "hello from 6.2", subject="hi")
    assert sent.recipients == ["worker"]
    read = await bus.store.run(READ_INBOX, "worker", 20, "0", "", 100_000)
    assert [e.body for e in read.entries] == ["hello from 6.2"]
    marked = await bus.store.run(
        UNREAD_MESSAGES,
        "worker",
        *(p for e in read.entries for p in (e.entry_id, e.message_id.removeprefix("m-"))),
    )
    assert marked == 1
    inbox = await bus.inbox.read("worker")
    assert [m.body for m in inbox.messages] == ["hello from 6.2"] and inbox.unread_remaining == 0

    # locks: acquire, a refused wait that leaves its queue, revoke, acquire, release
    lock = await bus.locks.acquire("worker", "src/app.py", ttl_seconds=30)
    assert lock.acquired and lock.lock_token is not None
    refused = await bus.locks.acquire("other", "src/", ttl_seconds=30, wait_seconds=0.2)
    assert not refused.acquired and refused.holder == "worker"
    revoked = await bus.locks.revoke("src/app.py", by="operator")
    assert revoked.holder == "worker"
    lock = await bus.locks.acquire("other", "src/app.py", ttl_seconds=30)
    assert lock.acquired and lock.lock_token is not None
    assert (await bus.locks.held()).locks[0].holder == "other"  # and the clock script
    assert (await bus.locks.release("other", "src/app.py", lock.lock_token)).released

    # events
    published = await bus.events.publish("worker", "deploy.started", data={"on": "6.2"})
    events = await bus.events.read(topics=["deploy.*"], after="0")
    assert [(e.id, e.topic, e.data) for e in events.events] == [
        (published.event_id, "deploy.started", {"on": "6.2"})
    ]

    # state
    assert (await bus.state.set("worker", "cfg/mode", value="fast")).version == 1
    state = await bus.state.get("cfg/mode")
    assert [(e.value, e.version) for e in state.entries] == [("fast", 1)]

    with anyio.fail_after(5):  # the reaper runs every 0.1 s (helpers.fresh_settings)
        await reaped.wait()
    assert ran == set(SCRIPT_NAMES)


# --- wake-ups across buses --------------------------------------------------------------------------


async def woken(wait: Callable[[ProgressCallback], Awaitable[T]], change: Callable[[], Awaitable[Any]]) -> T:
    """Start `wait` (a call that waits WAIT seconds on the server, given a progress callback); once it
    reports progress it has looked, found nothing and waits. Then `change` (through the other bus)
    must end it within WOKEN_WITHIN seconds: only the wake-up can."""
    waiting, done = anyio.Event(), anyio.Event()
    got: list[T] = []

    async def progressed(_waited: float, _total: float | None, _message: str | None) -> None:
        waiting.set()

    async def run() -> None:
        got.append(await wait(progressed))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            await waiting.wait()
        assert not done.is_set()
        await change()
        with anyio.fail_after(WOKEN_WITHIN):
            await done.wait()
    return got[0]


async def test_a_waiting_claim_is_woken_by_a_task_created_through_another_bus(
    buses: tuple[AgentBus, AgentBus],
) -> None:
    waiter, changer = buses
    created: list[str] = []

    async def create() -> None:
        created.append((await changer.tasks.create("planner", title="wake", capability="deploy")).task_id)

    claim = await woken(
        lambda progressed: waiter.tasks.claim(
            "worker", capabilities=["deploy"], wait_seconds=WAIT, on_progress=progressed
        ),
        create,
    )
    assert claim.task is not None and claim.task.id == created[0]


async def test_a_waiting_lock_is_woken_by_its_release_through_another_bus(
    buses: tuple[AgentBus, AgentBus],
) -> None:
    waiter, changer = buses
    held = await changer.locks.acquire("holder", "src/auth/login.py", ttl_seconds=60)
    assert held.acquired and held.lock_token is not None
    lock_token = held.lock_token

    got = await woken(
        lambda progressed: waiter.locks.acquire(
            "worker", "src/", ttl_seconds=30, wait_seconds=WAIT, on_progress=progressed
        ),
        lambda: changer.locks.release("holder", "src/auth/login.py", lock_token),
    )
    assert got.acquired and got.fencing_token is not None
    assert held.fencing_token is not None and got.fencing_token > held.fencing_token


async def test_a_waiting_inbox_read_is_woken_by_a_message_sent_through_another_bus(
    buses: tuple[AgentBus, AgentBus],
) -> None:
    waiter, changer = buses
    read = await woken(
        lambda progressed: waiter.inbox.read("worker", wait_seconds=WAIT, on_progress=progressed),
        lambda: changer.inbox.send("planner", "worker", "wake up"),
    )
    assert [m.body for m in read.messages] == ["wake up"]


async def test_a_waiting_state_read_is_woken_by_a_change_through_another_bus(
    buses: tuple[AgentBus, AgentBus],
) -> None:
    waiter, changer = buses
    got = await woken(
        lambda progressed: waiter.state.get(
            "cfg/mode", after_version=0, wait_seconds=WAIT, on_progress=progressed
        ),
        lambda: changer.state.set("planner", "cfg/mode", value="fast"),
    )
    assert [(e.value, e.version) for e in got.entries] == [("fast", 1)]


async def test_a_waiting_event_read_is_woken_by_an_event_published_through_another_bus(
    buses: tuple[AgentBus, AgentBus],
) -> None:
    waiter, changer = buses
    got = await woken(
        lambda progressed: waiter.events.read(topics=["deploy.*"], wait_seconds=WAIT, on_progress=progressed),
        lambda: changer.events.publish("planner", "deploy.started"),
    )
    assert [e.topic for e in got.events] == ["deploy.started"]


# --- a Redis 6.2 Cluster: plain pub/sub -------------------------------------------------------------


async def test_on_a_cluster_the_waits_subscribe_on_their_node_and_hints_go_to_every_node(
    cluster_url: str,
) -> None:
    """No shard channels before Redis 7: the subscriber SUBSCRIBEs on the node serving the namespace's
    slot, and the scripts PUBLISH, which the Cluster carries to every node."""
    async with (
        AgentBus.open(fresh_settings(cluster_url, max_wait_seconds=WAIT)) as bus,
        AsyncExitStack() as stack,
    ):
        assert isinstance(bus.redis, RedisCluster)
        keys = bus.store.keys
        client, pubsub, sharded = await subscriber(bus.redis, keys.wake(""))
        await pubsub.aclose()
        if client is not None:
            await client.aclose()
        assert sharded is False

        ports = node_ports(cluster_url)
        nodes = [
            await stack.enter_async_context(
                aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            )
            for port in ports
        ]
        # A claim waiting for `deploy` tasks: one SUBSCRIBE, on the slot's node.
        channel = keys.wake("task:deploy")
        slot_node = bus.redis.get_node_from_key(channel)
        assert slot_node is not None
        waiting = anyio.Event()

        async def progressed(_waited: float, _total: float | None, _message: str | None) -> None:
            waiting.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: bus.tasks.claim(
                    "worker", capabilities=["deploy"], wait_seconds=WAIT, on_progress=progressed
                )
            )
            with anyio.fail_after(5):
                await waiting.wait()
            counts = [dict(await node.pubsub_numsub(channel))[channel] for node in nodes]
            assert counts == [int(port == slot_node.port) for port in ports]
            tg.cancel_scope.cancel()

        # Hints published by a script reach a plain subscriber on every node.
        listeners = [await stack.enter_async_context(node.pubsub()) for node in nodes]
        for listener in listeners:
            await listener.subscribe(keys.wake("event:*"))
            with anyio.fail_after(5):
                assert (await listener.get_message(timeout=5))["type"] == "subscribe"
        await bus.events.publish("planner", "deploy.started")
        for listener in listeners:
            with anyio.fail_after(5):
                message = await listener.get_message(timeout=5)
            assert message is not None and message["data"] == "event:deploy.started"


async def test_a_refusal_inside_a_script_is_told_as_redis_refusing_work(single_url: str) -> None:
    """Before 7, Redis wraps a command a script ran and it refused ("Error running script …: -OOM …");
    the caller is still told Redis is out of memory and nothing changed, not an internal error."""
    settings = fresh_settings(single_url)
    admin = redis.Redis.from_url(single_url)
    async with AgentBus.open(settings) as bus:
        await bus.tasks.create("planner", title="before")
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(BackendUnavailable, match="out of memory") as refused:
                await bus.tasks.create("planner", title="refused")
            assert refused.value.hint is not None and "Nothing was changed" in refused.value.hint
        finally:
            admin.config_set("maxmemory", 0)
            admin.close()
        created = await bus.events.read(topics=["task.created"], after="0")
        assert len(created.events) == 1, "the refused create left nothing behind"
