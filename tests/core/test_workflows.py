"""Workflows through the core API: a DAG created in one call, results handed down, progress views."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_agentbus.core.bus import AgentBus
from mcp_agentbus.core.models import ClaimResult, Lease, Progress
from mcp_agentbus.core.workflow_views import GetWorkflowBriefResult, TaskBrief, TaskProgress, WorkflowBrief
from mcp_agentbus.errors import InvalidArgument, NotFound, PayloadTooLarge
from mcp_agentbus.ids import MAX_NOTE, MAX_REPLY_BYTES, MAX_TITLE, MAX_WORKFLOW_TASKS, REPLY_ROOM

pytestmark = pytest.mark.anyio

DIAMOND: list[dict[str, Any]] = [
    {"key": "a", "title": "research", "payload": {"topic": "auth"}},
    {"key": "b", "title": "write code", "capability": "code", "depends_on": ["a"]},
    {"key": "c", "title": "write tests", "depends_on": ["a"], "priority": "high"},
    {"key": "d", "title": "review", "depends_on": ["b", "c"]},
]


def leased(claim: ClaimResult) -> Lease:
    assert claim.task is not None
    assert claim.lease is not None
    return claim.lease


async def test_a_three_level_dag_passes_results_down_and_finishes_done(bus: AgentBus) -> None:
    await bus.presence.heartbeat("coder", capabilities=["code"])
    created = await bus.workflows.create("planner", title="ship auth", tasks=DIAMOND)
    ids = created.task_ids
    assert set(ids) == {"a", "b", "c", "d"}
    assert len(set(ids.values())) == 4
    assert created.ready == ["a"]
    assert not created.duplicate

    a = await bus.tasks.claim("researcher")
    assert a.task is not None
    assert a.task.id == ids["a"]
    assert a.task.key == "a"
    assert a.task.workflow_id == created.workflow_id
    assert a.task.payload == {"topic": "auth"}
    assert a.task.inputs == {}
    done_a = await bus.tasks.complete(
        "researcher", ids["a"], leased(a).lease_token, result={"notes": "use JWT"}
    )
    assert sorted(done_a.unblocked) == sorted([ids["b"], ids["c"]])
    assert done_a.workflow_id == created.workflow_id
    assert done_a.workflow_status == "running"
    assert done_a.progress is not None
    assert (done_a.progress.total, done_a.progress.done, done_a.progress.ready, done_a.progress.blocked) == (
        4,
        1,
        2,
        1,
    )

    b = await bus.tasks.claim("coder", capabilities=["code"])
    c = await bus.tasks.claim("tester")
    assert b.task is not None
    assert b.task.id == ids["b"]
    assert c.task is not None
    assert c.task.id == ids["c"]
    assert b.task.inputs == {"a": {"notes": "use JWT"}}
    assert c.task.inputs == {"a": {"notes": "use JWT"}}

    # Mid-way, get_workflow shows who holds what.
    mid = await bus.workflows.get(created.workflow_id)
    assert mid.workflow is not None
    by_key = {t.key: t for t in mid.workflow.tasks}
    assert by_key["b"].state == "claimed"
    assert by_key["b"].assignee == "coder"
    assert by_key["b"].lease_expires_at is not None
    assert by_key["d"].state == "blocked"
    assert by_key["d"].assignee is None
    assert mid.workflow.progress.claimed == 2

    done_b = await bus.tasks.complete("coder", ids["b"], leased(b).lease_token, result="diff-b")
    assert done_b.unblocked == []  # d still waits for c
    done_c = await bus.tasks.complete("tester", ids["c"], leased(c).lease_token, result=["test_1", "test_2"])
    assert done_c.unblocked == [ids["d"]]

    d = await bus.tasks.claim("reviewer")
    assert d.task is not None
    assert d.task.id == ids["d"]
    assert d.task.inputs == {"b": "diff-b", "c": ["test_1", "test_2"]}
    done_d = await bus.tasks.complete("reviewer", ids["d"], leased(d).lease_token, result={"approved": True})
    assert done_d.workflow_status == "done"
    assert done_d.progress is not None
    assert done_d.progress.done == 4
    assert done_d.progress.total == 4

    got = await bus.workflows.get(created.workflow_id)
    wf = got.workflow
    assert wf is not None
    assert wf.status == "done"
    assert wf.title == "ship auth"
    assert wf.finished_at is not None
    assert wf.progress.model_dump() == {
        "total": 4,
        "blocked": 0,
        "ready": 0,
        "delayed": 0,
        "claimed": 0,
        "done": 4,
        "dead": 0,
        "cancelled": 0,
    }
    tasks = {t.key: t for t in wf.tasks}
    assert [t.key for t in wf.tasks] == ["a", "b", "c", "d"]
    assert {k: t.state for k, t in tasks.items()} == dict.fromkeys("abcd", "done")
    assert {k: t.assignee for k, t in tasks.items()} == {
        "a": "researcher",
        "b": "coder",
        "c": "tester",
        "d": "reviewer",
    }
    assert {k: t.attempts for k, t in tasks.items()} == dict.fromkeys("abcd", 1)
    assert {k: t.depends_on for k, t in tasks.items()} == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert {k: t.result for k, t in tasks.items()} == {
        "a": {"notes": "use JWT"},
        "b": "diff-b",
        "c": ["test_1", "test_2"],
        "d": {"approved": True},
    }
    assert tasks["b"].capability == "code"
    assert tasks["c"].priority == "high"
    assert all(t.lease_expires_at is None for t in wf.tasks)


async def test_get_without_an_id_lists_recent_workflows_with_progress(bus: AgentBus) -> None:
    first = await bus.workflows.create("planner", title="first", tasks=[{"key": "x", "title": "x"}])
    second = await bus.workflows.create("planner", title="second", tasks=DIAMOND)

    listed = await bus.workflows.get()
    assert listed.workflow is None
    assert listed.workflows is not None
    by_id = {w.workflow_id: w for w in listed.workflows}
    assert set(by_id) == {first.workflow_id, second.workflow_id}
    assert by_id[second.workflow_id].title == "second"
    assert by_id[second.workflow_id].status == "running"
    assert by_id[second.workflow_id].progress.total == 4
    assert by_id[second.workflow_id].progress.ready == 1
    assert by_id[second.workflow_id].progress.blocked == 3
    assert by_id[first.workflow_id].progress.ready == 1
    assert listed.notices == []


async def test_the_recent_workflows_say_how_many_more_there_are(bus: AgentBus) -> None:
    for n in range(4):
        await bus.workflows.create("planner", title=f"w{n}", tasks=[{"key": "x", "title": "x"}])
    listed = await bus.workflows.get(limit=3)
    assert [w.title for w in listed.workflows or []] == ["w3", "w2", "w1"]
    assert listed.notices == ["The 3 newest of 4 workflows are shown."]


async def test_getting_an_unknown_workflow_is_not_found(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="wf-404"):
        await bus.workflows.get("wf-404")
    with pytest.raises(InvalidArgument, match="workflow_id"):
        await bus.workflows.get("x")


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        pytest.param(
            [{"key": "a", "title": "a"}, {"key": "b", "title": "b", "depends_on": ["ghost"]}],
            "unknown key 'ghost'",
            id="unknown-dependency",
        ),
        pytest.param(
            [{"key": "a", "title": "a"}, {"key": "a", "title": "again"}],
            "'a' is used twice",
            id="duplicate-key",
        ),
        pytest.param(
            [{"key": "a", "title": "a", "depends_on": ["a"]}],
            "'a' depends on itself",
            id="self-dependency",
        ),
        pytest.param(
            [
                {"key": "start", "title": "s"},
                {"key": "x", "title": "x", "depends_on": ["start", "z"]},
                {"key": "y", "title": "y", "depends_on": ["x"]},
                {"key": "z", "title": "z", "depends_on": ["y"]},
            ],
            "cycle",
            id="cycle",
        ),
        pytest.param([], "at least one task", id="no-tasks"),
    ],
)
async def test_an_invalid_workflow_is_refused_and_nothing_is_created(
    bus: AgentBus, tasks: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as refused:
        await bus.workflows.create("planner", title="broken", tasks=tasks)
    assert not refused.value.hint.startswith("Fix the argument"), refused.value.hint  # says what to fix
    if message == "cycle":
        named = refused.value.message.split(": ", 1)[1].split(" -> ")
        assert set(named) == {"x", "y", "z"}  # the keys on the cycle, and not "start"
    listed = await bus.workflows.get()
    assert listed.workflows == []
    assert (await bus.tasks.claim("worker")).task is None


async def test_a_cycle_message_names_the_keys_along_the_cycle(bus: AgentBus) -> None:
    tasks = [
        {"key": "plan", "title": "p", "depends_on": ["review"]},
        {"key": "build", "title": "b", "depends_on": ["plan"]},
        {"key": "review", "title": "r", "depends_on": ["build"]},
    ]
    with pytest.raises(InvalidArgument) as refused:
        await bus.workflows.create("planner", title="loop", tasks=tasks)
    text = refused.value.message
    assert text.startswith("dependencies form a cycle: ")
    path = text.removeprefix("dependencies form a cycle: ").split(" -> ")
    assert set(path) == {"plan", "build", "review"}
    assert path[0] == path[-1]  # the cycle closes on itself
    assert (await bus.workflows.get()).workflows == []


async def test_create_workflow_with_the_same_idempotency_key_returns_the_same_workflow_once(
    bus: AgentBus,
) -> None:
    first = await bus.workflows.create("planner", title="once", tasks=DIAMOND, idempotency_key="wf-key-1")
    again = await bus.workflows.create("planner", title="once", tasks=DIAMOND, idempotency_key="wf-key-1")

    assert not first.duplicate
    assert again.duplicate
    assert again.workflow_id == first.workflow_id
    assert again.task_ids == first.task_ids
    assert again.ready == first.ready == ["a"]
    listed = await bus.workflows.get()
    assert listed.workflows is not None
    assert [w.workflow_id for w in listed.workflows] == [first.workflow_id]
    claim = await bus.tasks.claim("worker")
    assert claim.task is not None
    assert claim.task.id == first.task_ids["a"]
    assert (await bus.tasks.claim("worker")).task is None  # only one "a" was ever made ready


async def test_workflow_payloads_over_64_kib_are_payload_too_large(bus: AgentBus) -> None:
    with pytest.raises(PayloadTooLarge, match="'big'"):
        await bus.workflows.create(
            "planner", title="heavy", tasks=[{"key": "big", "title": "b", "payload": "x" * 70_000}]
        )
    assert (await bus.workflows.get()).workflows == []


async def test_a_dead_task_fails_the_workflow_and_cancels_everything_downstream(bus: AgentBus) -> None:
    created = await bus.workflows.create(
        "planner", title="doomed", tasks=[{**DIAMOND[0], "max_attempts": 1}, *DIAMOND[1:]]
    )
    claim = await bus.tasks.claim("worker")
    failed = await bus.tasks.fail("worker", created.task_ids["a"], leased(claim).lease_token, error="no data")
    assert failed.state == "dead"
    assert sorted(failed.cancelled) == sorted(created.task_ids[k] for k in "bcd")

    wf = (await bus.workflows.get(created.workflow_id)).workflow
    assert wf is not None
    assert wf.status == "failed"
    assert (wf.progress.dead, wf.progress.cancelled, wf.progress.blocked) == (1, 3, 0)
    for task in wf.tasks[1:]:
        assert task.state == "cancelled"
        assert task.error is not None
        assert created.task_ids["a"] in task.error
        assert "no data" in task.error
    assert (await bus.tasks.claim("worker", capabilities=["any", "code"])).task is None


async def test_a_bad_agent_id_cannot_create_a_workflow(bus: AgentBus) -> None:
    with pytest.raises(InvalidArgument, match="agent id"):
        await bus.workflows.create("bad agent", title="x", tasks=[{"key": "a", "title": "a"}])
    assert (await bus.workflows.get()).workflows == []


async def test_a_summary_shows_states_assignees_and_progress_without_results(bus: AgentBus) -> None:
    """get_workflow detail "summary", for coordinators that poll: where each task stands and who has
    it; no results, summaries or errors."""
    created = await bus.workflows.create("planner", title="ship auth", tasks=DIAMOND)
    ids = created.task_ids
    a = await bus.tasks.claim("researcher")
    await bus.tasks.complete("researcher", ids["a"], leased(a).lease_token, result={"notes": "x" * 500})
    b = await bus.tasks.claim("coder", task_id=ids["b"])
    await bus.tasks.fail("coder", ids["b"], leased(b).lease_token, error="flaky", retry=False)
    await bus.tasks.claim("tester", task_id=ids["c"])
    await bus.presence.heartbeat("tester", progress={"task_id": ids["c"], "percent": 40, "message": "2 of 5"})

    full = await bus.workflows.get(created.workflow_id)
    brief = await bus.workflows.brief(created.workflow_id)
    assert full.workflow is not None
    shown = brief.workflow.model_dump(mode="json")
    assert {k: v for k, v in shown.items() if k != "tasks"} == full.workflow.model_dump(
        mode="json",
        include={"workflow_id", "title", "status", "progress", "created_at", "finished_at"},
    )
    reported = shown["tasks"][2].pop("progress")
    assert (reported["percent"], reported["message"]) == (40, "2 of 5") and reported["at"]
    assert shown["tasks"] == [
        {
            "id": ids["a"],
            "key": "a",
            "state": "done",
            "assignee": "researcher",
            "attempts": 1,
            "progress": None,
        },
        {"id": ids["b"], "key": "b", "state": "dead", "assignee": None, "attempts": 1, "progress": None},
        {"id": ids["c"], "key": "c", "state": "claimed", "assignee": "tester", "attempts": 1},
        {"id": ids["d"], "key": "d", "state": "cancelled", "assignee": None, "attempts": 0, "progress": None},
    ]
    assert "x" * 500 not in brief.model_dump_json() and "flaky" not in brief.model_dump_json()
    assert len(brief.model_dump_json()) < len(full.model_dump_json())


async def test_a_summary_of_an_unknown_or_malformed_workflow_is_refused(bus: AgentBus) -> None:
    with pytest.raises(NotFound, match="wf-404"):
        await bus.workflows.brief("wf-404")
    with pytest.raises(InvalidArgument, match="workflow_id"):
        await bus.workflows.brief("x")


def test_a_summary_of_the_largest_workflow_fits_in_one_reply() -> None:
    """A summary lists every task (Workflows.brief fits none out): the largest has MAX_WORKFLOW_TASKS
    tasks with the longest key and assignee ids, each with the longest progress message."""
    longest = "x" * 64
    report = TaskProgress(percent=99.5, message="m" * MAX_NOTE, at="2026-12-03T18:00:00.000Z")
    brief = TaskBrief(
        id="t-" + "9" * 18, key=longest, state="claimed", assignee=longest, attempts=100, progress=report
    )
    view = WorkflowBrief(
        workflow_id="wf-" + "9" * 18,
        title="\U0001f600" * MAX_TITLE,  # 4 bytes each
        status="running",
        progress=Progress(total=10**6, blocked=10**6, ready=10**6, delayed=10**6, claimed=10**6),
        created_at="2026-12-03T17:00:00.000Z",
        finished_at="2026-12-03T17:00:00.000Z",
        tasks=[brief] * MAX_WORKFLOW_TASKS,
    )
    assert (
        len(GetWorkflowBriefResult(workflow=view).model_dump_json().encode()) + REPLY_ROOM <= MAX_REPLY_BYTES
    )
