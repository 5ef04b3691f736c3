"""The bot through the real lab while Slack, the model or the bot itself misbehaves.

Each test breaks the lab (a wrong target port on user-service), mentions the
bot in an incident channel of the Slack stand-in and injects one kind of
trouble: rate limits, server errors, lost responses, an expired stream, a
follow-up, a shutdown mid-run, a restart with a pending approval, five
incidents at once, an unreachable model. Whatever happens, each thread must end
with its diagnosis and its proposal posted exactly once, every progress line
the writer rendered shown exactly once, and nothing run without a click.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from support.decisions import decision
from support.lab import LabThread
from support.slack_bot import BotRig, button_value, running_bot, texts, wait_for
from support.slack_standin import Message, SlackStandIn

from agents.llm import ChatModel, Completion, ModelUnavailable, ScriptedModel
from agents.llm.base import Message as ChatMessage
from agents.runtime import ClusterAccess, Limits
from bot.config import BotConfig, ClusterRoute
from bot.incidents import RunRecord
from bot.stream import ThreadStream, _State
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario
from store.db import session_scope
from store.models import Incident, IncidentStatus, Proposal, ProposalState, Step
from store.policy import ApprovalPolicy

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CATALOG = load_catalog()
SCENARIO = "k8s_target_port-misconfig-mitigation-1"
SOCIAL = "test-social-network"
CHANNEL = "C0INC1"
REQUESTER, APPROVER = "U0BOB", "U0ALICE"
QUESTION = "users get errors when they post"
NOTE_KEYS = ("aoi-interrupted-", "aoi-error-", "aoi-reply-")
_INCIDENT_REF = re.compile(r"incident #(\d+)", re.IGNORECASE)


# -- the model -----------------------------------------------------------------------------


def _decision(kind: str, instruction: str) -> str:
    return decision(kind, instruction, confidence=40, fault_type="Misconfiguration")


def scripted(runs: int = 1) -> ScriptedModel:
    """One probe, then submit; ``runs`` times over (a follow-up is a run too)."""
    one = [
        _decision("probe", f"kubectl get endpoints user-service -n {SOCIAL}"),
        _decision("submit", "user-service"),
    ]
    return ScriptedModel(one * runs)


class Slowed:
    """A model whose ``complete`` first waits ``delays[i]`` seconds (call i; 0 past the end).

    ``called`` is set once the first call began waiting: the investigation is then
    past triage and inside the Observer's loop.
    """

    def __init__(self, inner: ChatModel, delays: Sequence[float]) -> None:
        self.inner = inner
        self.delays = list(delays)
        self.calls = 0
        self.called = asyncio.Event()

    @property
    def name(self) -> str:
        return f"slow-{self.inner.name}"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        delay = self.delays[self.calls] if self.calls < len(self.delays) else 0.0
        self.calls += 1
        self.called.set()
        await asyncio.sleep(delay)
        return await self.inner.complete(
            messages, schema=schema, max_tokens=max_tokens, temperature=temperature
        )

    def stream(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        return self.inner.stream(messages, **kwargs)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Unreachable:
    """A model server that is down: every call fails the way an HTTP backend's would."""

    name = "unreachable"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Completion:
        self.calls += 1
        raise ModelUnavailable(
            "cannot reach the model server at http://127.0.0.1:9/v1 (connection refused); "
            "start it or set AOI_MODEL=embedded"
        )

    def stream(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        raise ModelUnavailable("cannot reach the model server")

    async def aclose(self) -> None:
        return None


# -- the lab -------------------------------------------------------------------------------


def _config(access: ClusterAccess, executor: client.ApiClient, steps: int = 2) -> BotConfig:
    return BotConfig(
        routes=(ClusterRoute(name="lab", access=access, executor_api=executor),),
        policy=ApprovalPolicy(approvers=frozenset({APPROVER})),
        limits=Limits(max_steps=steps, proposal_ttl_s=600),
        verify_timeout_s=30.0,
    )


def _mitigated(lab: LabThread, scenario: Scenario) -> bool:
    return bool(lab.run(lab.lab.check(scenario)).mitigated)


async def _broken(lab: LabThread) -> Scenario:
    scenario = CATALOG.get(SCENARIO)
    await asyncio.to_thread(lab.run, lab.lab.inject(scenario))
    for _ in range(100):
        if not await asyncio.to_thread(_mitigated, lab, scenario):
            return scenario
        await asyncio.sleep(0.1)
    raise AssertionError("the fault did not show")


# -- reading the store and the threads -----------------------------------------------------


def _proposals(engine: Engine) -> list[Proposal]:
    with session_scope(engine) as session:
        return list(session.exec(select(Proposal).order_by(col(Proposal.id))))


def _incidents(engine: Engine) -> list[Incident]:
    with session_scope(engine) as session:
        return list(session.exec(select(Incident).order_by(col(Incident.id))))


def _steps(engine: Engine, incident_id: int) -> list[int]:
    with session_scope(engine) as session:
        rows = session.exec(select(Step).where(col(Step.incident_id) == incident_id))
        return sorted(s.step_index for s in rows)


def _key(message: Message) -> str:
    payload = (message.metadata or {}).get("event_payload") or {}
    return str(payload.get("key", ""))


def _bot_messages(slack: SlackStandIn, channel: str, ts: str) -> list[Message]:
    return [
        m
        for m in slack.thread(channel, ts)
        if m.user == slack.bot_user_id and m.ephemeral_for is None
    ]


def _of_kind(slack: SlackStandIn, channel: str, ts: str, prefix: str) -> list[Message]:
    return [m for m in _bot_messages(slack, channel, ts) if _key(m).startswith(prefix)]


def _records(rig: BotRig, channel: str, ts: str) -> list[RunRecord]:
    return [r for r in rig.bot.runner.finished if r.thread.key == (channel, ts)]


async def _settled(rig: BotRig, runs: int, *, timeout_s: float = 120.0) -> None:
    """Wait until ``runs`` investigations of this bot have finished, streams closed."""
    runner = rig.bot.runner
    await wait_for(
        lambda: len(runner.finished) >= runs and runner.running == 0,
        timeout_s=timeout_s,
        what=f"{runs} investigation(s) to finish",
    )


def _assert_progress(slack: SlackStandIn, channel: str, stream: ThreadStream) -> None:
    """Slack shows exactly what the writer rendered: each line once, each task's end."""
    assert stream._messages, "the writer rendered nothing"
    for message in stream._messages:
        assert message.state in (_State.DONE, _State.TEXT), (message.index, message.state)
        assert message.ts is not None, f"progress message {message.index} never reached Slack"
        shown = slack.message(channel, message.ts)
        assert shown is not None
        if message.state is _State.DONE:  # streamed to the end
            assert shown.updated == 0
            lines = "".join(
                i.markdown + "\n" for i in message.items if i.task is None and i.plan is None
            )
            assert shown.text == lines, (shown.text, lines)
            tasks = {i.task.id: i.task.status for i in message.items if i.task is not None}
            assert {t: s[-1] for t, s in shown.tasks.items()} == tasks
        else:  # fell back: one edited (or posted) message with the whole rendering
            assert message.synced >= message.version, "the last edit never reached Slack"
            assert shown.text == stream._mrkdwn(message), (shown.text, stream._mrkdwn(message))
            assert all(i.task is None or i.task.status != "in_progress" for i in message.items)


def _assert_thread(
    rig: BotRig,
    channel: str,
    ts: str,
    *,
    diagnoses: int = 1,
    proposals: int | None = 1,
    earlier: Sequence[RunRecord] = (),
) -> list[Message]:
    """The thread's diagnosis and proposal messages, each posted once; its progress whole.

    Every bot message in the thread is a diagnosis, a proposal, a note of the bot, or
    one of the progress messages its writers created: nothing orphaned, nothing twice.
    ``earlier``: runs in this thread of a bot that has stopped since. Returns the
    proposal messages.
    """
    slack = rig.slack
    diagnosis = _of_kind(slack, channel, ts, "aoi-diagnosis-")
    proposal = _of_kind(slack, channel, ts, "aoi-proposal-")
    assert len(diagnosis) == diagnoses, [texts(m) for m in diagnosis]
    assert len({_key(m) for m in diagnosis}) == diagnoses
    if proposals is not None:
        assert len(proposal) == proposals, [texts(m) for m in proposal]
    assert len({_key(m) for m in proposal}) == len(proposal)
    for m in diagnosis:
        assert "user-service" in texts(m)
        assert m.thread_ts == ts
    records = [*earlier, *_records(rig, channel, ts)]
    assert records
    progress: set[str] = set()
    for record in records:
        assert record.stream is not None
        _assert_progress(slack, channel, record.stream)
        progress |= set(record.stream.message_ts)
    for m in _bot_messages(slack, channel, ts):
        kind = _key(m)
        if kind.startswith(("aoi-diagnosis-", "aoi-proposal-", *NOTE_KEYS)):
            continue
        assert m.ts in progress, f"an orphaned bot message in the thread: {texts(m)[:300]}"
    assert not slack.internal_errors, slack.internal_errors
    return proposal


def _progress_text(rig: BotRig, channel: str, ts: str) -> str:
    stamps = {t for r in _records(rig, channel, ts) if r.stream for t in r.stream.message_ts}
    return "\n".join(texts(m) for m in _bot_messages(rig.slack, channel, ts) if m.ts in stamps)


async def _nothing_ran(lab: LabThread, scenario: Scenario, engine: Engine) -> None:
    assert all(p.state is ProposalState.PENDING for p in _proposals(engine))
    assert not await asyncio.to_thread(_mitigated, lab, scenario), "fixed without a click"


async def _approve_and_check(
    rig: BotRig, lab: LabThread, scenario: Scenario, proposal: Message
) -> None:
    await rig.click(APPROVER, proposal, "aoi_approve")
    await wait_for(
        lambda: "DONE" in texts(rig.slack.message(proposal.channel, proposal.ts) or proposal),
        timeout_s=90,
        what="the proposal message to say DONE",
    )
    assert await wait_for(
        lambda: _mitigated(lab, scenario), timeout_s=30, what="the lab's mitigation check"
    )


def _samples(rig: BotRig, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ = rig.bot.metrics.render()
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _by_method(rig: BotRig, name: str, **labels: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for key, value in _samples(rig, name).items():
        label = dict(key)
        if all(label.get(k) == v for k, v in labels.items()):
            counts[label["method"]] += int(value)
    return counts


async def _storm(
    slack: SlackStandIn,
    methods: Sequence[str],
    *,
    status: int,
    until: Callable[[], bool],
    every_s: float = 0.25,
    limit: int = 30,
    queued: Counter[str] | None = None,
) -> int:
    """Now and then fail the next call of a method, while none of its faults is pending
    and its last call went through.

    So no single call meets more than the faults queued before the storm plus one: a
    storm, not a wall (the client gives up after five 429s on one call). ``queued``:
    the faults the test queued itself, by method.
    """
    queued = Counter(queued)
    injected = 0
    i = 0
    while not until() and injected < limit:
        method = methods[i % len(methods)]
        i += 1
        calls = slack.calls_to(method)
        answered = sum(1 for c in calls if c.status == status)
        if queued[method] <= answered and (not calls or calls[-1].status == 200):
            slack.fail_next(method, status=status, retry_after=i % 2)
            queued[method] += 1
            injected += 1
        await asyncio.sleep(every_s)
    return injected


# -- the tests -----------------------------------------------------------------------------

WRITES = ("chat.postMessage", "chat.appendStream", "chat.startStream", "chat.update")


async def test_a_429_storm_loses_and_repeats_nothing_and_is_counted(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    scenario = await _broken(clean_lab)
    model = Slowed(scripted(), [0.5, 0.5])
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=model) as rig,  # type: ignore[arg-type]
    ):
        # Before the mention: the very first stream call and post are refused as well.
        slack.fail_next("chat.startStream", status=429, retry_after=1)
        # The first post (the diagnosis) meets more 429s than the client retries (five).
        slack.fail_next("chat.postMessage", status=429, retry_after=0, count=7)
        slack.fail_next("chat.update", status=429, retry_after=1)
        queued = Counter({"chat.startStream": 1, "chat.postMessage": 7, "chat.update": 1})
        storm = asyncio.create_task(
            _storm(
                slack,
                WRITES,
                status=429,
                until=lambda: len(rig.bot.runner.finished) > 0,
                queued=queued,
            )
        )
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        await _settled(rig, 1)
        await storm
        (proposal,) = _assert_thread(rig, CHANNEL, ts)
        await _nothing_ran(clean_lab, scenario, engine)
        await _approve_and_check(rig, clean_lab, scenario, proposal)

        limited = Counter(c.method for c in slack.calls if c.status == 429)
        assert limited["chat.startStream"] >= 1, limited
        assert limited["chat.postMessage"] >= 7, limited
        assert limited["chat.update"] >= 1, limited
        assert limited["chat.appendStream"] >= 1, limited
        # A 429 is a refusal: retried after Retry-After, so the thread kept streaming.
        stream = _records(rig, CHANNEL, ts)[0].stream
        assert stream is not None
        assert stream.mode == "stream", stream.fallback_reason
        assert _by_method(rig, "aoi_slack_rate_limited_total") == limited
        assert [p.state for p in _proposals(engine)] == [ProposalState.DONE]


@pytest.mark.parametrize("where", ["append", "start"])
async def test_slack_5xx_is_retried_or_looked_up_never_repeated(
    clean_lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    where: str,
) -> None:
    scenario = await _broken(clean_lab)
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=scripted()) as rig,  # type: ignore[arg-type]
    ):
        # The stream fails (at its start, or at its first append) and the thread falls back
        # to edited text; its edits and every post meet 5xx too.
        if where == "start":
            slack.fail_next("chat.startStream", status=503)
        else:
            slack.fail_next("chat.appendStream", status=500)
        slack.fail_next("chat.postMessage", status=503, count=2)
        slack.fail_next("chat.update", status=500, count=2)
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        await _settled(rig, 1)
        await wait_for(
            lambda: sum(c.status == 500 for c in slack.calls_to("chat.update")) == 2,
            what="the 5xx on chat.update",
        )
        _assert_thread(rig, CHANNEL, ts)
        await _nothing_ran(clean_lab, scenario, engine)

        failed = Counter(c.method for c in slack.calls if c.status >= 500)
        assert failed["chat.postMessage"] == 2, failed
        assert failed["chat.update"] == 2, failed
        # chat.update is idempotent: retried by the client; a post is never resent blindly:
        # the Poster looked for it first (conversations.replies) and found nothing.
        assert slack.calls_to("conversations.replies", channel=CHANNEL)
        errors = _by_method(rig, "aoi_slack_api_errors_total")
        assert errors["chat.postMessage"] >= 2, errors
        assert errors["chat.update"] >= 2, errors
        stream = _records(rig, CHANNEL, ts)[0].stream
        assert stream is not None
        assert stream.mode == "text"


@pytest.mark.parametrize(
    "drops",
    [
        {"chat.postMessage": 2, "chat.appendStream": 1},  # the diagnosis, the proposal
        {"chat.startStream": 1, "chat.postMessage": 1},
    ],
    ids=["post+append", "start"],
)
async def test_lost_responses_post_nothing_twice(
    clean_lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    drops: dict[str, int],
) -> None:
    scenario = await _broken(clean_lab)
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=scripted()) as rig,  # type: ignore[arg-type]
    ):
        for method, count in drops.items():
            slack.drop_next(method, count=count)
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        await _settled(rig, 1, timeout_s=150)
        (proposal,) = _assert_thread(rig, CHANNEL, ts)
        dropped = Counter(c.method for c in slack.calls if c.dropped)
        assert dropped == drops
        (record,) = _records(rig, CHANNEL, ts)
        assert record.stream is not None
        assert record.stream.mode == "text"  # a stream call's answer was lost
        # Every stream this run opened was stopped (none is left spinning in the thread).
        assert all(m.stopped for m in slack.thread(CHANNEL, ts) if m.streaming)
        await _nothing_ran(clean_lab, scenario, engine)
        await _approve_and_check(rig, clean_lab, scenario, proposal)


async def test_an_expired_stream_falls_back_to_one_edited_message(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    await _broken(clean_lab)
    model = Slowed(scripted(), [0.0, 1.5])  # time to expire the stream after the probe
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=model) as rig,  # type: ignore[arg-type]
    ):
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        streamed = await wait_for(
            lambda: next((m for m in slack.thread(CHANNEL, ts) if m.streaming and m.tasks), None),
            what="the first task chunk",
        )
        slack.expire_streams()
        await _settled(rig, 1)
        _assert_thread(rig, CHANNEL, ts)
        (record,) = _records(rig, CHANNEL, ts)
        assert record.stream is not None
        assert record.stream.mode == "text"
        assert "message_not_in_streaming_state" in (record.stream.fallback_reason or "")
        # The stream that expired holds the whole rendering now, finished tasks included.
        final = slack.message(CHANNEL, streamed.ts)
        assert final is not None
        assert final.updated >= 1
        assert "kubectl get endpoints user-service" in final.text
        assert ":stethoscope:" in _progress_text(rig, CHANNEL, ts)
        assert ":checkered_flag: finished" in _progress_text(rig, CHANNEL, ts)


async def test_a_second_mention_in_the_thread_continues_the_incident(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    await _broken(clean_lab)
    model = Slowed(scripted(3), [1.5])
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=model) as rig,  # type: ignore[arg-type]
    ):
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        # While it runs, a second mention in the thread is told to wait; nothing starts.
        await asyncio.wait_for(model.called.wait(), 60)
        await rig.mention(CHANNEL, REQUESTER, "any news?", thread_ts=ts)
        (busy,) = await wait_for(
            lambda: _of_kind(slack, CHANNEL, ts, "aoi-reply-"), what="the busy reply"
        )
        assert "still investigating" in busy.text
        await _settled(rig, 1)
        (incident,) = _incidents(engine)
        assert incident.id is not None
        first_steps = _steps(engine, incident.id)
        assert _of_kind(slack, CHANNEL, ts, "aoi-diagnosis-")

        await rig.mention(CHANNEL, REQUESTER, "is it still the port?", thread_ts=ts)
        await _settled(rig, 2)
        (again,) = _incidents(engine)
        assert again.id == incident.id
        steps = _steps(engine, incident.id)
        assert steps == list(range(len(steps)))
        assert len(steps) > len(first_steps)
        _assert_thread(rig, CHANNEL, ts, diagnoses=2, proposals=None)
        first, second = _records(rig, CHANNEL, ts)
        assert first.incident_id == second.incident_id == incident.id
        assert second.stream is not None
        follow = "\n".join(
            texts(m) for m in _bot_messages(slack, CHANNEL, ts) if m.ts in second.stream.message_ts
        )
        assert f"Follow-up on** incident #{incident.id}" in follow, follow[:500]
        assert "Follow-up" not in "\n".join(
            texts(m)
            for m in _bot_messages(slack, CHANNEL, ts)
            if m.ts in (first.stream.message_ts if first.stream else [])
        )

        other = (await rig.mention(CHANNEL, REQUESTER, "and the timeline is empty"))["event"]["ts"]
        await _settled(rig, 3)
        incidents = _incidents(engine)
        assert len(incidents) == 2
        assert incidents[1].thread_ts == other
        _assert_thread(rig, CHANNEL, other)
        assert f"Investigating** incident #{incidents[1].id}" in _progress_text(rig, CHANNEL, other)


async def test_a_shutdown_interrupts_and_a_new_bot_continues_the_incident(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    scenario = await _broken(clean_lab)
    config = _config(access, executor)
    stuck = Slowed(scripted(), [30.0])
    async with SlackStandIn() as slack:
        async with running_bot(slack, config, engine=engine, model=stuck) as rig:  # type: ignore[arg-type]
            ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
            await asyncio.wait_for(stuck.called.wait(), 60)
            loop = asyncio.get_running_loop()
            began = loop.time()
            interrupted = await rig.bot.stop(grace_s=0.5)
            assert loop.time() - began < 15
            (incident,) = _incidents(engine)
            assert interrupted == [incident.id]
            assert incident.status is IncidentStatus.INTERRUPTED
            (note,) = _of_kind(slack, CHANNEL, ts, "aoi-interrupted-")
            assert "interrupted" in note.text
            assert f"#{incident.id}" in note.text
            assert not _of_kind(slack, CHANNEL, ts, "aoi-diagnosis-")
            _assert_thread(rig, CHANNEL, ts, diagnoses=0, proposals=0)
            before = _records(rig, CHANNEL, ts)

        async with running_bot(slack, config, engine=engine, model=scripted()) as rig:  # type: ignore[arg-type]
            await rig.mention(CHANNEL, REQUESTER, "please carry on", thread_ts=ts)
            await _settled(rig, 1)
            (again,) = _incidents(engine)
            assert again.id == incident.id
            assert again.status is IncidentStatus.DIAGNOSED
            _assert_thread(rig, CHANNEL, ts, earlier=before)
            assert f"Follow-up on** incident #{incident.id}" in _progress_text(rig, CHANNEL, ts)
            await _nothing_ran(clean_lab, scenario, engine)


async def test_a_pending_approval_survives_a_restart(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    scenario = await _broken(clean_lab)
    config = _config(access, executor)
    async with SlackStandIn() as slack:
        async with running_bot(slack, config, engine=engine, model=scripted()) as rig:  # type: ignore[arg-type]
            ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
            await _settled(rig, 1)
            (proposal,) = _assert_thread(rig, CHANNEL, ts)
        await _nothing_ran(clean_lab, scenario, engine)

        async with running_bot(slack, config, engine=engine, model=None) as rig:
            assert button_value(proposal, "aoi_approve")
            await _approve_and_check(rig, clean_lab, scenario, proposal)
            (row,) = _proposals(engine)
            assert row.state is ProposalState.DONE
            assert row.approver == APPROVER


async def test_five_incidents_at_once_keep_to_their_threads(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    scenario = await _broken(clean_lab)
    channels = {f"C0INC{i}": f"inc-{name}" for i, name in enumerate("abcde", 1)}
    async with (
        SlackStandIn(channels=channels) as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=None) as rig,
    ):
        bodies = await asyncio.gather(
            *(rig.mention(c, REQUESTER, f"{QUESTION} ({name})") for c, name in channels.items())
        )
        await _settled(rig, 5)
        incidents = {(i.channel_id, i.thread_ts): i.id for i in _incidents(engine)}
        assert len(incidents) == 5
        proposals = {p.id: p.incident_id for p in _proposals(engine)}
        for body in bodies:
            channel, ts = body["event"]["channel"], body["event"]["ts"]
            own = incidents[(channel, ts)]
            shown = _assert_thread(rig, channel, ts, proposals=None)
            assert len(shown) <= 1
            for m in shown:
                assert proposals[int(button_value(m, "aoi_approve"))] == own
            refs = {
                int(n)
                for m in _bot_messages(slack, channel, ts)
                for n in _INCIDENT_REF.findall(texts(m))
            }
            assert refs == {own}, (channel, own, refs)
            (record,) = _records(rig, channel, ts)
            assert record.incident_id == own
        await _nothing_ran(clean_lab, scenario, engine)


async def test_an_unreachable_model_still_ends_with_the_analyzers_diagnosis(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, executor: client.ApiClient
) -> None:
    scenario = await _broken(clean_lab)
    model = Unreachable()
    async with (
        SlackStandIn() as slack,
        running_bot(slack, _config(access, executor), engine=engine, model=model) as rig,  # type: ignore[arg-type]
    ):
        ts = (await rig.mention(CHANNEL, REQUESTER, QUESTION))["event"]["ts"]
        await _settled(rig, 1)
        assert model.calls == 1
        _assert_thread(rig, CHANNEL, ts, proposals=None)
        progress = _progress_text(rig, CHANNEL, ts)
        assert "the model failed" in progress
        assert "answering from the analyzers" in progress
        assert "connection refused" in progress
        (incident,) = _incidents(engine)
        assert incident.status is IncidentStatus.DIAGNOSED
        await _nothing_ran(clean_lab, scenario, engine)
