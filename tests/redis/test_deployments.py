"""Deployments beyond one server: URL handling for Redis Cluster and Sentinel, a bus through a sentinel
end to end, and namespaces spread over the masters of a Redis Cluster.

The sentinel (one master, one sentinel) and the 3-master cluster are session fixtures in conftest.py;
the task, lock and inbox suites also run on the cluster (`helpers.ALSO_ON_CLUSTER`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import pytest
import redis.asyncio as aioredis
from helpers import WAIT_BOUND, fresh_settings
from pydantic import ValidationError
from redis.exceptions import MovedError

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult
from mcp_agentbus.redis.connection import connect, redact
from mcp_agentbus.redis.keys import LAYOUT, Keys
from mcp_agentbus.settings import Settings

# --- URL handling (no server needed) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "redis+cluster://ops:s3cret@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002",
            "redis+cluster://ops:***@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002",
            id="cluster",
        ),
        pytest.param(
            "rediss+cluster://:s3cret@node-a:7000,node-b:7000",
            "rediss+cluster://:***@node-a:7000,node-b:7000",
            id="cluster-tls-no-user",
        ),
        pytest.param(
            "redis+sentinel://ops:s3cret@s1:26379,s2:26380,s3/mymaster/2",
            "redis+sentinel://ops:***@s1:26379,s2:26380,s3/mymaster/2",
            id="sentinel",
        ),
        pytest.param(
            "redis+sentinel://:s3cret@[::1]:26379,[::2]:26379/mymaster",
            "redis+sentinel://:***@[::1]:26379,[::2]:26379/mymaster",
            id="sentinel-ipv6",
        ),
    ],
)
def test_redact_hides_the_password_of_a_multi_host_url(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379,s2:26379/mymaster?sentinel_password=s3cret",
        "redis+sentinel://:master-pw@s1:26379/mymaster?sentinel_password=s3cret",
    ],
)
def test_redact_hides_the_sentinel_password_of_the_query(url: str) -> None:
    assert "s3cret" not in redact(url)


def test_redact_leaves_a_url_without_password_alone() -> None:
    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    assert redact(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://:s3cret@s1:26379,s2:26379/",
    ],
)
def test_a_sentinel_url_without_a_service_name_is_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match=r"name the master after the hosts, as …/mymaster") as caught:
        connect(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.anyio
async def test_a_bus_on_a_sentinel_url_without_a_service_name_does_not_open() -> None:
    with pytest.raises(ValueError, match="name the master"):
        async with AgentBus.open(fresh_settings("redis+sentinel://127.0.0.1:1")):
            pass


@pytest.mark.anyio
async def test_a_cluster_url_names_its_seeds_and_credentials() -> None:
    client = connect("redis+cluster://us%40er:p%40ss@h1,h2:7001,[::1]:7002")
    assert isinstance(client, aioredis.RedisCluster)
    try:
        assert list(client.nodes_manager.startup_nodes) == ["h1:6379", "h2:7001", "::1:7002"]
        assert client.connection_kwargs["username"] == "us@er"
        assert client.connection_kwargs["password"] == "p@ss"
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_a_sentinel_url_names_its_sentinels_service_db_and_passwords() -> None:
    client = connect("redis+sentinel://:master-pw@s1:26380,s2/mymaster/3?sentinel_password=sent-pw")
    assert isinstance(client, aioredis.Redis)
    try:
        pool: Any = client.connection_pool
        assert pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["password"] == "master-pw"
        sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        assert [(s["host"], s["port"]) for s in sentinels] == [("s1", 26380), ("s2", 26379)]
        assert {s.get("password") for s in sentinels} == {"sent-pw"}
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "rediss+cluster://u:p@10.0.0.1:7000",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
        "rediss+sentinel://:p@s1:26379/mymaster/1?sentinel_password=q",
    ],
)
def test_settings_accept_cluster_and_sentinel_urls(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url", ["redis+foo://127.0.0.1:7000", "cluster://127.0.0.1:7000", "sentinel://s1/mymaster"]
)
def test_settings_refuse_an_unknown_scheme(url: str) -> None:
    with pytest.raises(ValidationError, match="redis_url must start with one of"):
        Settings(redis_url=url)


# --- Sentinel --------------------------------------------------------------------------------------


@pytest.fixture
def sentinel_url(sentinel_redis_url: str | None) -> str:
    if sentinel_redis_url is None:
        pytest.skip("redis-server not installed")
    return sentinel_redis_url


def sentinel_clients(bus: AgentBus) -> list[aioredis.Redis]:
    """The clients of the `Sentinel` behind a bus on a sentinel URL (they find the master)."""
    assert isinstance(bus.redis, aioredis.Redis)  # a sentinel URL gives a plain client
    pool: Any = bus.redis.connection_pool
    return list(pool.sentinel_manager.sentinels)


async def master_address(sentinel_url: str) -> tuple[str, int]:
    """The master's address as the sentinel names it."""
    parts = urlsplit(sentinel_url)
    sentinel = aioredis.Redis(host=parts.hostname or "", port=parts.port or 0, decode_responses=True)
    try:
        host, port = cast("tuple[str, int]", await sentinel.sentinel_get_master_addr_by_name("mymaster"))
        return str(host), int(port)
    finally:
        await sentinel.aclose()


@pytest.mark.anyio
async def test_a_bus_through_a_sentinel_creates_claims_and_completes_a_task(sentinel_url: str) -> None:
    async with AgentBus.open(fresh_settings(sentinel_url)) as bus:
        await bus.ping()
        created = await bus.tasks.create("planner", title="through the sentinel", capability="build")
        claim = await bus.tasks.claim("worker", capabilities=["build"])
        assert claim.task is not None and claim.lease is not None
        assert claim.task.id == created.task_id
        done = await bus.tasks.complete("worker", created.task_id, claim.lease.lease_token, result={"ok": 1})
        assert done.state == "done" and not done.already_completed
        again = await bus.tasks.claim("worker", capabilities=["build"])
        assert again.task is None


@pytest.mark.anyio
async def test_a_waiting_claim_through_a_sentinel_is_woken_by_another_bus(sentinel_url: str) -> None:
    settings = fresh_settings(sentinel_url)
    result: list[ClaimResult] = []
    waiting, done = anyio.Event(), anyio.Event()

    async def progressed(_waited: float, _total: float | None, _message: str | None) -> None:
        waiting.set()  # a progress report: the claim found nothing and is inside its wait

    async with AgentBus.open(settings) as claimer, AgentBus.open(settings) as creator:

        async def claim() -> None:
            result.append(
                await claimer.tasks.claim(
                    "worker", capabilities=["deploy"], wait_seconds=5, on_progress=progressed
                )
            )
            done.set()

        with anyio.fail_after(WAIT_BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim)
                await waiting.wait()
                assert not done.is_set()
                created = await creator.tasks.create("planner", title="wake up", capability="deploy")
                # the wait has about 4 s left: only the pub/sub wake-up ends it now
                with anyio.fail_after(2):
                    await done.wait()

    assert result[0].task is not None
    assert result[0].task.id == created.task_id


@pytest.mark.anyio
async def test_a_lock_through_a_sentinel_is_granted_refused_and_released(sentinel_url: str) -> None:
    async with AgentBus.open(fresh_settings(sentinel_url)) as bus:
        got = await bus.locks.acquire("alice", "src/app.py", ttl_seconds=30)
        assert got.acquired and got.lock_token and got.fencing_token is not None
        refused = await bus.locks.acquire("bob", "src/app.py", ttl_seconds=30)
        assert refused.acquired is False and refused.holder == "alice"
        assert (await bus.locks.release("alice", "src/app.py", got.lock_token)).released is True
        after = await bus.locks.acquire("bob", "src/app.py", ttl_seconds=30)
        assert after.acquired is True
        assert after.fencing_token is not None and after.fencing_token > got.fencing_token


@pytest.mark.anyio
async def test_the_db_of_a_sentinel_url_is_the_masters_db(sentinel_url: str) -> None:
    settings = fresh_settings(f"{sentinel_url}/2")
    async with AgentBus.open(settings) as bus:
        created = await bus.tasks.create("planner", title="in db 2")
    host, port = await master_address(sentinel_url)
    key = Keys(settings.namespace).task(created.task_id)
    async with aioredis.Redis(host=host, port=port, db=2) as db2, aioredis.Redis(host=host, port=port) as db0:
        assert await db2.exists(key) == 1
        assert await db0.exists(key) == 0


@pytest.mark.anyio
async def test_closing_a_bus_closes_its_connections_to_the_sentinels(sentinel_url: str) -> None:
    async with AgentBus.open(fresh_settings(sentinel_url)) as bus:
        await bus.ping()
    try:
        still_open = [
            connection
            for client in sentinel_clients(bus)
            for connection in client.connection_pool._available_connections
            if connection.is_connected
        ]
        assert still_open == []
    finally:
        for client in sentinel_clients(bus):
            await client.aclose()  # so a failure here does not also leak them


# --- Redis Cluster ---------------------------------------------------------------------------------


@pytest.fixture
def cluster_url(cluster_redis_url: str | None) -> str:
    if cluster_redis_url is None:
        pytest.skip("redis-server or redis-cli not installed")
    return cluster_redis_url


@pytest.fixture
async def nodes(cluster_url: str) -> AsyncIterator[dict[int, aioredis.Redis]]:
    """A plain client per master, by port."""
    ports = [int(seed.rpartition(":")[2]) for seed in urlsplit(cluster_url).netloc.split(",")]
    async with AsyncExitStack() as stack:
        yield {
            port: await stack.enter_async_context(
                aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            )
            for port in ports
        }


async def master_of(nodes: dict[int, aioredis.Redis], key: str) -> int:
    """The port of the master serving `key`, from CLUSTER KEYSLOT and CLUSTER SLOTS."""
    any_node = next(iter(nodes.values()))
    slot = int(await any_node.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
    slots = await any_node.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    ranges = cast(list[list[Any]], slots)
    return next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))


@pytest.mark.anyio
async def test_the_namespaces_tests_create_spread_over_the_masters(
    cluster_url: str, nodes: dict[int, aioredis.Redis]
) -> None:
    """Every key of a namespace lands on one master; different namespaces land on different ones."""
    assert len(nodes) == 3
    placed: dict[str, int] = {}
    for _ in range(12):
        settings = fresh_settings(cluster_url)  # the namespaces every cluster-leg test gets
        keys = Keys(settings.namespace)
        layout = (keys.prefix + name for name in LAYOUT)
        owners = {await master_of(nodes, key) for key in (*keys.script_keys, *layout, keys.task("t-1"))}
        assert len(owners) == 1, "a namespace's keys must share one slot"
        placed[settings.namespace] = owners.pop()
        async with AgentBus.open(settings) as bus:
            created = await bus.tasks.create("planner", title=settings.namespace)
        owner = placed[settings.namespace]
        assert await nodes[owner].exists(keys.task(created.task_id)) == 1  # stored on its master
        for port, node in nodes.items():  # and the other masters send a client there
            if port != owner:
                with pytest.raises(MovedError, match=f"127.0.0.1:{owner}$"):
                    await node.exists(keys.task(created.task_id))
    assert len(set(placed.values())) > 1, f"12 namespaces all on one master: {placed}"


async def namespaces_on_two_masters(cluster_url: str, nodes: dict[int, aioredis.Redis]) -> list[Settings]:
    """Fresh settings for two namespaces served by different masters."""
    by_master: dict[int, Settings] = {}
    for _ in range(100):
        settings = fresh_settings(cluster_url)
        by_master.setdefault(await master_of(nodes, Keys(settings.namespace).events), settings)
        if len(by_master) == 2:
            return list(by_master.values())
    pytest.fail("100 fresh namespaces all hashed to one master")


@pytest.mark.anyio
async def test_two_buses_on_namespaces_of_different_masters_both_work(
    cluster_url: str, nodes: dict[int, aioredis.Redis]
) -> None:
    one, two = await namespaces_on_two_masters(cluster_url, nodes)
    async with AgentBus.open(one) as bus_one, AgentBus.open(two) as bus_two:
        await bus_one.ping()
        await bus_two.ping()
        task_one = await bus_one.tasks.create("planner", title="one", capability="c")
        task_two = await bus_two.tasks.create("planner", title="two", capability="c")
        for bus, mine in ((bus_one, task_one.task_id), (bus_two, task_two.task_id)):
            claim = await bus.tasks.claim("worker", capabilities=["c"])
            assert claim.task is not None and claim.lease is not None
            assert claim.task.id == mine
            done = await bus.tasks.complete("worker", mine, claim.lease.lease_token)
            assert done.state == "done"
            assert (await bus.tasks.claim("worker", capabilities=["c"])).task is None, "namespaces mix"
        lock_one = await bus_one.locks.acquire("alice", "shared/name")
        lock_two = await bus_two.locks.acquire("bob", "shared/name")
        assert lock_one.acquired and lock_two.acquired, "a lock in one namespace blocked the other"
        sent = await bus_two.inbox.send("alice", "bob", "hello", subject="from two")
        assert (await bus_one.inbox.read("bob", peek=True)).messages == []
        assert [m.id for m in (await bus_two.inbox.read("bob")).messages] == [sent.message_id]


@pytest.mark.anyio
async def test_the_reaper_takes_an_expired_lock_back_on_the_cluster(cluster_url: str) -> None:
    """The reaper's sweep on a cluster, seen through the event log and the keys themselves."""
    async with AgentBus.open(fresh_settings(cluster_url)) as bus:
        keys = bus.store.keys
        got = await bus.locks.acquire("alice", "tmp/cache", ttl_seconds=0.3)
        assert got.acquired and got.lock_token and got.fencing_token is not None
        assert await bus.redis.smembers(keys.agent_locks("alice")) == {"tmp/cache"}

        with anyio.fail_after(WAIT_BOUND):  # the test reaper sweeps every 0.1 s
            expired = await bus.events.read(after="0", topics=["lock.expired"], wait_seconds=4)
        # nothing but the reaper touches the lock after its acquire
        assert [(e.topic, e.agent, e.data) for e in expired.events] == [
            ("lock.expired", "alice", {"resource": "tmp/cache"})
        ]
        assert await bus.redis.smembers(keys.agent_locks("alice")) == set()
        assert await bus.redis.exists(keys.lock("tmp/cache")) == 0

        late = await bus.locks.release("alice", "tmp/cache", got.lock_token)
        assert late.released is False and late.reason
        other = await bus.locks.acquire("bob", "tmp/cache")
        assert other.acquired and other.fencing_token is not None
        assert other.fencing_token > got.fencing_token


@pytest.fixture
async def cluster_bus(cluster_url: str) -> AsyncIterator[AgentBus]:
    async with AgentBus.open(fresh_settings(cluster_url)) as bus:
        yield bus


@pytest.mark.anyio
async def test_the_held_locks_view_works_on_the_cluster(cluster_bus: AgentBus) -> None:
    got = await cluster_bus.locks.acquire("alice", "docs/", ttl_seconds=30)
    assert got.acquired
    view = await cluster_bus.locks.held()
    assert [(lock.resource, lock.holder) for lock in view.locks] == [("docs/", "alice")]


def test_every_namespace_key_carries_the_hash_tag() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    keys = Keys(namespace)
    for key in (*keys.script_keys, keys.task("t-1"), keys.lock("a/b"), keys.held("x")):
        assert f"{{{namespace}}}" in key
        assert key.index("{") == key.index(f"{{{namespace}}}"), "the first {…} is the namespace"
