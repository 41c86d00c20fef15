"""acquire_lock and release_lock through the real MCP client, in both protocol eras and on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import BACKENDS_AND_ERAS, backend_url, fresh_settings
from helpers.mcp_session import Bus, connect, fill, text_of

from mcp_agentbus.settings import Settings

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # bound on any one test's MCP traffic; every test finishes far sooner


@pytest.fixture(
    scope="module",
    params=BACKENDS_AND_ERAS,
    ids=lambda p: "-".join(p),
)
async def lock_bus(request: pytest.FixtureRequest, real_redis_url: str | None) -> AsyncIterator[Bus]:
    """One server and session per backend and era for this module (tests use distinct resources)."""
    backend, mode = request.param
    url = backend_url(backend, real_redis_url)
    async with connect(fresh_settings(url), mode) as bus:
        yield bus


def fresh(name: str) -> str:
    """A resource name no other test of the shared session uses."""
    return f"{uuid.uuid4().hex[:8]}/{name}"


# --- end to end ------------------------------------------------------------------------------------


async def test_acquire_refuse_and_release_end_to_end(lock_bus: Bus) -> None:
    bus = lock_bus
    auth = fresh("src/auth/")
    login, sibling = auth + "login.py", auth[:-1] + ".py"  # below the directory, and beside it
    with anyio.fail_after(TIMEOUT):
        await bus.ok("heartbeat", {"agent": "alice"})
        got = await bus.ok("acquire_lock", {"agent": "alice", "resource": auth, "ttl_seconds": 60})
        assert got["acquired"] is True and got["resource"] == auth
        assert got["lock_token"] and isinstance(got["fencing_token"], int) and got["expires_at"]
        assert got["extended"] is False and got["holder"] is None
        line = text_of(await bus.call("acquire_lock", {"agent": "alice", "resource": auth}))
        assert line.startswith(f"Extended {auth} (fencing token {got['fencing_token']})"), line

        refused_call = await bus.call("acquire_lock", {"agent": "bob", "resource": login})
        refused = await bus.ok("acquire_lock", {"agent": "bob", "resource": login})
        assert refused_call.is_error is not True, "a refusal is a result, not a tool error"
        assert refused["acquired"] is False and refused["lock_token"] is None
        assert refused["holder"] == "alice" and refused["conflicting_resource"] == auth
        assert refused["expires_at"]
        first_line = text_of(refused_call).splitlines()[0]
        assert "alice" in first_line and auth in first_line and first_line.startswith("Not locked")

        other = await bus.ok("acquire_lock", {"agent": "bob", "resource": sibling})
        assert other["acquired"] is True, "a sibling name is not below the directory"

        again = await bus.ok("acquire_lock", {"agent": "alice", "resource": auth, "ttl_seconds": 120})
        assert again["extended"] is True
        assert (again["lock_token"], again["fencing_token"]) == (got["lock_token"], got["fencing_token"])
        assert again["expires_at"] > got["expires_at"]

        beat = await bus.ok("heartbeat", {"agent": "alice"})
        assert [lock["resource"] for lock in beat["locks_extended"]] == [auth]
        listed = await bus.ok("list_agents")
        assert next(a for a in listed["agents"] if a["agent"] == "alice")["locks"] == [auth]

        await bus.err(
            "release_lock",
            {"agent": "bob", "resource": auth, "lock_token": other["lock_token"]},
            "not_lock_owner",
            auth,
        )
        released_call = await bus.call(
            "release_lock", {"agent": "alice", "resource": auth, "lock_token": got["lock_token"]}
        )
        assert text_of(released_call).startswith(f"Released {auth}.")
        assert released_call.structured_content == {
            "notices": [],
            "released": True,
            "resource": auth,
            "reason": None,
        }
        twice = await bus.ok(
            "release_lock", {"agent": "alice", "resource": auth, "lock_token": got["lock_token"]}
        )
        assert twice["released"] is False and twice["reason"]
        twice_text = text_of(
            await bus.call(
                "release_lock", {"agent": "alice", "resource": auth, "lock_token": got["lock_token"]}
            )
        )
        assert twice_text.startswith("Nothing released: ")

        now_bob = await bus.ok("acquire_lock", {"agent": "bob", "resource": login})
        assert now_bob["acquired"] is True
        assert now_bob["fencing_token"] >= 1
        for resource, token in ((login, now_bob["lock_token"]), (sibling, other["lock_token"])):
            done = await bus.ok("release_lock", {"agent": "bob", "resource": resource, "lock_token": token})
            assert done["released"] is True


async def test_the_fencing_token_grows_with_every_grant(lock_bus: Bus) -> None:
    resource = fresh("db.sqlite")
    fences = []
    with anyio.fail_after(TIMEOUT):
        for agent in ("alice", "bob", "alice"):
            got = await lock_bus.ok("acquire_lock", {"agent": agent, "resource": resource})
            fences.append(got["fencing_token"])
            args = {"agent": agent, "resource": resource, "lock_token": got["lock_token"]}
            assert (await lock_bus.ok("release_lock", args))["released"] is True
    assert fences[0] < fences[1] < fences[2]


async def test_the_longest_resource_name_is_accepted(lock_bus: Bus) -> None:
    resource = fresh("")
    resource += "x" * (512 - len(resource))
    with anyio.fail_after(TIMEOUT):
        got = await lock_bus.ok("acquire_lock", {"resource": resource})
        assert got["acquired"] is True
        args = {"resource": resource, "lock_token": got["lock_token"]}
        assert (await lock_bus.ok("release_lock", args))["released"] is True


# --- waiting ---------------------------------------------------------------------------------------


async def test_a_waiting_acquire_gets_the_lock_when_another_client_releases_it(
    settings: Settings, mode: str
) -> None:
    got: dict[str, Any] = {}
    with anyio.fail_after(TIMEOUT):
        async with connect(settings, mode) as holder, connect(settings, mode) as waiter:
            held = await holder.ok("acquire_lock", {"agent": "alice", "resource": "app/", "ttl_seconds": 600})
            done = anyio.Event()

            async def wait_for_it() -> None:
                got["bob"] = await waiter.ok(
                    "acquire_lock", {"agent": "bob", "resource": "app/main.py", "wait_seconds": 5}
                )
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_it)
                while True:  # until bob is queued (a refused outsider reports the queue length)
                    seen = await holder.ok("acquire_lock", {"agent": "probe", "resource": "app/main.py"})
                    assert seen["acquired"] is False
                    if seen["waiters"] == 1:
                        break
                    await anyio.sleep(0.01)
                args = {"agent": "alice", "resource": "app/", "lock_token": held["lock_token"]}
                assert (await holder.ok("release_lock", args))["released"] is True
                with anyio.fail_after(2):  # bob would wait 5 s, the lock would last 600 s
                    await done.wait()
    assert got["bob"]["acquired"] is True and got["bob"]["lock_token"]


async def test_a_waiting_acquire_sends_progress(lock_bus: Bus) -> None:
    resource = fresh("busy.txt")
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TIMEOUT):
        await lock_bus.ok("acquire_lock", {"agent": "alice", "resource": resource})
        refused = await lock_bus.ok(
            "acquire_lock",
            # 2 s: progress comes each second while the wait lasts; a 1.2 s wait left 0.2 s after the
            # first tick, less than a slow first attempt takes under the suite's parallel workers
            {"agent": "bob", "resource": resource, "wait_seconds": 2},
            progress_callback=on_progress,
        )
    assert refused["acquired"] is False and refused["holder"] == "alice"
    assert updates, "no progress notification during a 2 s wait"
    for progress, total, message in updates:
        assert total == 2 and progress <= total
        assert message and "waiting" in message


ACTING = [
    pytest.param("acquire_lock", {"resource": "x"}, id="acquire_lock"),
    pytest.param("release_lock", {"resource": "x", "lock_token": "t"}, id="release_lock"),
]


@pytest.mark.parametrize(("tool", "args"), ACTING)
async def test_no_agent_anywhere_is_unknown_agent(
    settings: Settings, mode: str, tool: str, args: dict[str, Any]
) -> None:
    anonymous = settings.model_copy(update={"agent": None})
    with anyio.fail_after(TIMEOUT):
        async with connect(anonymous, mode) as bus:
            await bus.err(tool, args, "unknown_agent", "agent")
            assert (await bus.ok(tool, {**args, "agent": "named"}))["resource"] == "x"


# --- bad input on both tools -----------------------------------------------------------------------

HELD, TOKEN = "<held>", "<token>"  # a resource the default agent holds, and its lock_token

BAD_INPUT = [
    # acquire_lock
    pytest.param("acquire_lock", {}, "invalid_argument", ["resource", "required"], id="acquire-no-resource"),
    pytest.param("acquire_lock", {"resource": ""}, "invalid_argument", ["resource"], id="acquire-empty"),
    pytest.param(
        "acquire_lock", {"resource": "a\nb"}, "invalid_argument", ["resource"], id="acquire-newline"
    ),
    pytest.param("acquire_lock", {"resource": "a\rb"}, "invalid_argument", ["resource"], id="acquire-cr"),
    pytest.param("acquire_lock", {"resource": "a\tb"}, "invalid_argument", ["resource"], id="acquire-tab"),
    pytest.param("acquire_lock", {"resource": "a\x00b"}, "invalid_argument", ["resource"], id="acquire-nul"),
    pytest.param("acquire_lock", {"resource": "a\x1bb"}, "invalid_argument", ["resource"], id="acquire-esc"),
    pytest.param("acquire_lock", {"resource": "a\x7fb"}, "invalid_argument", ["resource"], id="acquire-del"),
    pytest.param(
        "acquire_lock",
        {"resource": "a\x85b"},
        "invalid_argument",
        ["resource"],
        id="acquire-c1-control",
    ),
    pytest.param(
        "acquire_lock", {"resource": "x" * 513}, "invalid_argument", ["resource"], id="acquire-resource-513"
    ),
    pytest.param(
        "acquire_lock", {"resource": 7}, "invalid_argument", ["resource"], id="acquire-resource-number"
    ),
    pytest.param(
        "acquire_lock", {"resource": ["a", "b"]}, "invalid_argument", ["resource"], id="acquire-resource-list"
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "ttl_seconds": 0},
        "invalid_argument",
        ["ttl_seconds"],
        id="acquire-ttl-0",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "ttl_seconds": 86_401},
        "invalid_argument",
        ["ttl_seconds"],
        id="acquire-ttl-86401",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "ttl_seconds": "abc"},
        "invalid_argument",
        ["ttl_seconds"],
        id="acquire-ttl-string",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "ttl_seconds": 1.5},
        "invalid_argument",
        ["ttl_seconds"],
        id="acquire-ttl-fraction",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "wait_seconds": -1},
        "invalid_argument",
        ["wait_seconds"],
        id="acquire-wait-negative",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "wait_seconds": "soon"},
        "invalid_argument",
        ["wait_seconds"],
        id="acquire-wait-string",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="acquire-bad-agent",
    ),
    pytest.param(
        "acquire_lock",
        {"resource": "r", "timeout": 5},
        "invalid_argument",
        ["timeout"],
        id="acquire-unknown-arg",
    ),
    # release_lock
    pytest.param(
        "release_lock",
        {"resource": HELD},
        "invalid_argument",
        ["lock_token", "required"],
        id="release-no-token",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": ""},
        "invalid_argument",
        ["lock_token"],
        id="release-empty-token",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": "t" * 65},
        "invalid_argument",
        ["lock_token"],
        id="release-token-65",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": 12345},
        "invalid_argument",
        ["lock_token"],
        id="release-token-number",
    ),
    pytest.param(
        "release_lock",
        {"lock_token": TOKEN},
        "invalid_argument",
        ["resource", "required"],
        id="release-no-resource",
    ),
    pytest.param(
        "release_lock",
        {"resource": "", "lock_token": TOKEN},
        "invalid_argument",
        ["resource"],
        id="release-empty-resource",
    ),
    pytest.param(
        "release_lock",
        {"resource": "a\nb", "lock_token": TOKEN},
        "invalid_argument",
        ["resource"],
        id="release-newline",
    ),
    pytest.param(
        "release_lock",
        {"resource": "x" * 513, "lock_token": TOKEN},
        "invalid_argument",
        ["resource"],
        id="release-resource-513",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": TOKEN, "agent": "bad agent"},
        "invalid_argument",
        ["agent"],
        id="release-bad-agent",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": TOKEN, "force": True},
        "invalid_argument",
        ["force"],
        id="release-unknown-arg",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": "not-the-token"},
        "not_lock_owner",
        [HELD],
        id="release-wrong-token",
    ),
    pytest.param(
        "release_lock",
        {"resource": HELD, "lock_token": "not-the-token", "agent": "intruder"},
        "not_lock_owner",
        [HELD],
        id="release-wrong-token-other-agent",
    ),
]


@pytest.mark.parametrize(("tool", "args", "code", "fragments"), BAD_INPUT)
async def test_bad_input_is_a_clear_tool_error(
    lock_bus: Bus, tool: str, args: dict[str, Any], code: str, fragments: list[str]
) -> None:
    bus = lock_bus
    with anyio.fail_after(TIMEOUT):
        held = fresh("world.txt")
        got = await bus.ok("acquire_lock", {"resource": held, "ttl_seconds": 600})
        world = {HELD: held, TOKEN: got["lock_token"]}

        await bus.err(tool, fill(args, world), code, *[fill(f, world) for f in fragments])

        # The refusal changed nothing: the lock is still the default agent's, under its token.
        seen = await bus.ok("acquire_lock", {"agent": "probe", "resource": held})
        assert seen["acquired"] is False and seen["holder"] == "tester"
        again = await bus.ok("acquire_lock", {"resource": held, "ttl_seconds": 600})
        assert again["extended"] is True and again["lock_token"] == got["lock_token"]
        assert again["fencing_token"] == got["fencing_token"]
        released = await bus.ok("release_lock", {"resource": held, "lock_token": got["lock_token"]})
        assert released["released"] is True
