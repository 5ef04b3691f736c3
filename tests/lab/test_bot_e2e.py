"""The bot end to end: a mention in Slack to a fixed fault in the lab, over both transports.

Everything is real but Slack itself: slack-bolt and slack-sdk talk to the
loopback stand-in over Socket Mode or signed HTTP, the runtime reads the lab's
real kube-apiserver with the observer identity, the approved action runs with
the executor identity, and the lab's own fault-specific check judges the fix.
The scripted model drives the Observer here; one test uses the embedded GGUF.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import select
from support.decisions import decision
from support.lab import LabThread
from support.slack_bot import BotRig, button_value, has_button, running_bot, texts, wait_for
from support.slack_standin import Message, SlackStandIn

from agents.llm import ChatModel, ScriptedModel, make_model
from agents.runtime import ClusterAccess, Limits
from bot.config import BotConfig, ClusterRoute
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario
from store.db import session_scope
from store.models import Proposal, ProposalState
from store.policy import ApprovalPolicy

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CATALOG = load_catalog()
SCENARIO = "k8s_target_port-misconfig-mitigation-1"
SOCIAL = "test-social-network"
CHANNEL = "C0INC1"
REQUESTER, APPROVER, STRANGER = "U0BOB", "U0ALICE", "U0MALLORY"


def _decision(kind: str, instruction: str) -> str:
    return decision(kind, instruction, confidence=40, fault_type="Misconfiguration")


def scripted() -> ScriptedModel:
    return ScriptedModel(
        [
            _decision("probe", f"kubectl get endpoints user-service -n {SOCIAL}"),
            _decision("submit", "user-service"),
        ]
    )


def _config(access: ClusterAccess, executor: client.ApiClient, steps: int = 2) -> BotConfig:
    return BotConfig(
        routes=(ClusterRoute(name="lab", access=access, executor_api=executor),),
        # The requester is an approver too: self-approval is what refuses them.
        policy=ApprovalPolicy(approvers=frozenset({APPROVER, REQUESTER})),
        limits=Limits(max_steps=steps, proposal_ttl_s=600),
        verify_timeout_s=30.0,
    )


def _mitigated(lab: LabThread, scenario: Scenario) -> bool:
    return bool(lab.run(lab.lab.check(scenario)).mitigated)


async def _broken(lab: LabThread, scenario: Scenario) -> None:
    await asyncio.to_thread(lab.run, lab.lab.inject(scenario))
    for _ in range(100):
        if not await asyncio.to_thread(_mitigated, lab, scenario):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the fault did not show")


def _find(rig: BotRig, ts: str, match: Callable[[Message], bool]) -> Callable[[], Any]:
    def find() -> Message | None:
        return next((m for m in rig.thread(CHANNEL, ts) if match(m)), None)

    return find


def _ephemeral(rig: BotRig, ts: str, user: str, words: str) -> Callable[[], Any]:
    return _find(rig, ts, lambda m: m.ephemeral_for == user and words in m.text)


def _proposals(engine: Engine) -> list[Proposal]:
    with session_scope(engine) as session:
        return list(session.exec(select(Proposal)))


async def _mention_to_fix(
    lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    *,
    transport: str,
    model: ChatModel,
    timeout_s: float = 120.0,
) -> None:
    scenario = CATALOG.get(SCENARIO)
    await _broken(lab, scenario)
    async with (
        SlackStandIn() as slack,
        running_bot(
            slack, _config(access, executor), engine=engine, transport=transport, model=model
        ) as rig,  # type: ignore[arg-type]
    ):
        body = await rig.mention(CHANNEL, REQUESTER, "users get errors when they post")
        ts = body["event"]["ts"]
        proposal = await wait_for(
            _find(rig, ts, lambda m: has_button(m, "aoi_approve")),
            timeout_s=timeout_s,
            what="the proposal message",
        )
        proposal_id = button_value(proposal, "aoi_approve")
        # The stream writer runs behind the events: wait for it to close the stream.
        await wait_for(
            _find(rig, ts, lambda m: m.streaming and m.stopped),
            what="the streamed progress message to be stopped",
        )
        thread = rig.thread(CHANNEL, ts)

        # Streamed natively, in plan mode, with a task per probe call that completed.
        streams = [m for m in thread if m.streaming]
        assert streams, [m.text for m in thread]
        tasks = {tid: s for m in streams for tid, s in m.tasks.items()}
        if isinstance(model, ScriptedModel):
            assert tasks, [(m.text, m.chunks) for m in thread]
            assert all(s[-1] in ("complete", "error") for s in tasks.values()), tasks
            assert any(s[0] in ("pending", "in_progress") for s in tasks.values()), tasks
        assert any(m.plan_titles for m in streams)
        assert slack.status_history(CHANNEL, ts), "no loading status was set"

        diagnosis = next(m for m in thread if has_button(m, "aoi_feedback_correct"))
        assert "user-service" in texts(diagnosis)
        assert "restoration" in texts(proposal).lower()

        # The requester may not approve their own action; a stranger may not at all.
        await rig.click(REQUESTER, proposal, "aoi_approve")
        await wait_for(_ephemeral(rig, ts, REQUESTER, "may not approve"), what="self refusal")
        await rig.click(STRANGER, proposal, "aoi_approve")
        await wait_for(_ephemeral(rig, ts, STRANGER, "not an approver"), what="refusal")
        assert [p.state for p in _proposals(engine)] == [ProposalState.PENDING]
        assert not await asyncio.to_thread(_mitigated, lab, scenario)

        # The authorised click runs it once, and the message says who, when and what.
        await rig.click(APPROVER, proposal, "aoi_approve")
        await wait_for(
            lambda: "DONE" in texts(slack.message(CHANNEL, proposal.ts) or proposal),
            timeout_s=90,
            what="the proposal message to say DONE",
        )
        updated = slack.message(CHANNEL, proposal.ts)
        assert updated is not None
        assert not has_button(updated, "aoi_approve")
        assert APPROVER in texts(updated)
        assert await wait_for(
            lambda: _mitigated(lab, scenario), timeout_s=30, what="the lab's mitigation check"
        )
        await wait_for(
            _find(rig, ts, lambda m: m.ephemeral_for is None and "verified" in m.text),
            what="the verification note",
        )

        # A second click (double click, another replica) runs nothing again.
        await rig.click(APPROVER, proposal, "aoi_approve", value=proposal_id)
        await wait_for(_ephemeral(rig, ts, APPROVER, "already"), what="the double-click answer")
        (row,) = _proposals(engine)
        assert row.state is ProposalState.DONE
        assert row.approver == APPROVER


@pytest.mark.parametrize("transport", ["socket", "http"])
async def test_a_mention_ends_with_the_fault_fixed_after_an_authorised_click(
    clean_lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    transport: str,
) -> None:
    await _mention_to_fix(
        clean_lab, engine, access, executor, transport=transport, model=scripted()
    )


async def test_the_embedded_model_drives_a_thread_to_a_fix(
    clean_lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
) -> None:
    model = make_model("embedded", threads=1, timeout_s=120.0, api_key=None, model_name="")
    assert model is not None
    try:
        await _mention_to_fix(
            clean_lab, engine, access, executor, transport="socket", model=model, timeout_s=300
        )
    finally:
        await model.aclose()
