"""A claimer that goes away (client disconnect, timeout) leaves nothing claimed."""

from __future__ import annotations

import anyio
import pytest

from mcp_agentbus.core.bus import AgentBus

pytestmark = pytest.mark.anyio


async def test_a_claim_cancelled_while_waiting_claims_nothing(bus: AgentBus) -> None:
    with anyio.move_on_after(0.3):
        await bus.tasks.claim("w1", wait_seconds=5)
    created = await bus.tasks.create("planner", title="later")
    claim = await bus.tasks.claim("w2")
    assert claim.task is not None
    assert claim.task.id == created.task_id
    assert claim.task.attempt == 1


async def test_a_claim_cancelled_during_its_script_hands_the_task_back(bus: AgentBus) -> None:
    created = await bus.tasks.create("planner", title="raced")
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before the script returns: the claim runs shielded, then is undone
        await bus.tasks.claim("w1")
    assert scope.cancelled_caught
    claim = await bus.tasks.claim("w2")
    assert claim.task is not None
    assert claim.task.id == created.task_id
    assert claim.task.attempt == 1, "the handed-back claim must not count as an attempt"
    assert claim.lease is not None
    assert claim.lease.fence == 2, "the fence still grows, so the handed-back lease can never be used"
