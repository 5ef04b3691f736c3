"""The bot's handlers as an attacker and an unlucky on-call meet them, over both transports.

No lab: the route's cluster is a closed port (an investigation fails at once,
cleanly), and incidents, proposals and their messages are made directly in a
real SQLite store, so every click has a row to act on. Slack is the loopback
stand-in; slack-bolt and slack-sdk are real, as are the signatures over HTTP.
Each test checks what the person sees and that nothing ran, moved or got lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select
from support.slack_bot import (
    SECRET,
    BotRig,
    Transport,
    has_button,
    running_bot,
    texts,
    wait_for,
)
from support.slack_standin import Message, SlackStandIn, block_action, form_body, signed_headers

from agents.executor import Provenance
from agents.llm import ModelUnavailable
from agents.runtime import ClusterAccess, Limits
from bot import blocks
from bot.app import AoiBot
from bot.config import BotConfig, ClusterRoute
from bot.feedback import parse_command
from bot.slack_api import make_client
from store import slack as slack_store
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.models import (
    Feedback,
    Incident,
    IncidentStatus,
    Outcome,
    Proposal,
    ProposalState,
    Rating,
    SlackEvent,
)
from store.policy import ApprovalPolicy
from store.types import utcnow

T = TypeVar("T")
CLUSTER = "shop"
CHANNEL, OTHER, GENERAL = "C0INC1", "C0INC2", "C0GENERAL"
# The requester is an approver too: self-approval is what refuses them. U0ALICE is an
# approver only through the stand-in's user group S0SRE.
REQUESTER, APPROVER, GROUPIE, STRANGER = "U0BOB", "U0CAROL", "U0ALICE", "U0MALLORY"
POLICY = ApprovalPolicy(approvers=frozenset({APPROVER, REQUESTER}), groups=frozenset({"S0SRE"}))
BOTH = pytest.mark.parametrize("transport", ["socket", "http"])
DIAGNOSIS = {
    "components": ["geo"],
    "system_level": "Application",
    "fault_type": "Misconfiguration",
    "summary": "geo points at the wrong port",
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store of this test's own."""
    url = f"sqlite:///{tmp_path / 'aoi.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as standin:
        yield standin


def _nowhere() -> client.ApiClient:
    """A Kubernetes client for a closed port: every read fails at once."""
    config = client.Configuration(host="http://127.0.0.1:9")
    config.retries = 0
    return client.ApiClient(config)


def _config(
    *, executor: bool = True, sweep_s: float = 30.0, policy: ApprovalPolicy = POLICY
) -> BotConfig:
    api = _nowhere()
    route = ClusterRoute(
        name=CLUSTER, access=ClusterAccess(api=api), executor_api=api if executor else None
    )
    return BotConfig(
        routes=(route,),
        policy=policy,
        limits=Limits(max_steps=1),
        sweep_interval_s=sweep_s,
        grace_s=5.0,
        verify_timeout_s=2.0,
    )


# -- the store, written directly ------------------------------------------------------


def _incident(
    engine: Engine,
    *,
    thread_ts: str,
    channel: str = CHANNEL,
    status: IncidentStatus = IncidentStatus.DIAGNOSED,
) -> int:
    with session_scope(engine) as session:
        row = Incident(
            team_id="T0STANDIN",
            channel_id=channel,
            thread_ts=thread_ts,
            requester=REQUESTER,
            question="geo is down",
            cluster=CLUSTER,
            status=status,
            diagnosis=DIAGNOSIS,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _proposal(engine: Engine, incident_id: int, *, expires_in_s: float) -> int:
    provenance = Provenance()  # sets no value: a restart, a restoration
    with session_scope(engine) as session:
        row = Proposal(
            incident_id=incident_id,
            action="rollout_restart",
            action_spec={"action": "rollout_restart", "namespace": "shop", "name": "geo"},
            target_kind="Deployment",
            target_namespace="shop",
            target_name="geo",
            expected_effect="fresh geo pods",
            requester=REQUESTER,
            provenance=provenance.to_json(),
            restores_only=provenance.restores_only,
            expires_at=utcnow() + timedelta(seconds=expires_in_s),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _get(engine: Engine, model: type[Any], row_id: int) -> Any:
    with session_scope(engine) as session:
        row = session.get(model, row_id)
        assert row is not None
        session.expunge(row)
        return row


def _all(engine: Engine, model: type[SQLModel]) -> list[Any]:
    with session_scope(engine) as session:
        rows = list(session.exec(select(model)))
        for row in rows:
            session.expunge(row)
        return rows


def _states(engine: Engine) -> dict[int, ProposalState]:
    return {p.id: p.state for p in _all(engine, Proposal)}


def _events(rig: BotRig, kind: str) -> float:
    value = rig.bot.metrics.registry.get_sample_value("aoi_events_total", {"kind": kind})
    return value or 0.0


def _approvals(rig: BotRig, outcome: str) -> float:
    value = rig.bot.metrics.registry.get_sample_value("aoi_approvals_total", {"outcome": outcome})
    return value or 0.0


@dataclass
class Posted:
    """An incident thread with a PENDING proposal whose message the bot posted."""

    incident_id: int
    proposal_id: int
    thread_ts: str
    message: Message

    @property
    def value(self) -> str:
        return str(self.proposal_id)


async def _thread(rig: BotRig, channel: str = CHANNEL) -> tuple[str, int]:
    """A person's message in `channel` and the incident of its thread."""
    parent = rig.slack.add_message(channel, REQUESTER, "geo is down")
    incident_id = await asyncio.to_thread(
        _incident, rig.bot.engine, thread_ts=parent.ts, channel=channel
    )
    return parent.ts, incident_id


async def _posted(rig: BotRig, *, expires_in_s: float = 600.0, channel: str = CHANNEL) -> Posted:
    engine = rig.bot.engine
    thread_ts, incident_id = await _thread(rig, channel)
    proposal_id = await asyncio.to_thread(_proposal, engine, incident_id, expires_in_s=expires_in_s)
    row = await asyncio.to_thread(_get, engine, Proposal, proposal_id)
    body = blocks.proposal_blocks_from_row(row)
    response = await rig.bot.client.chat_postMessage(
        channel=channel, thread_ts=thread_ts, text=f"Proposal #{proposal_id}", blocks=body
    )
    ts = str(response["ts"])
    await asyncio.to_thread(
        slack_store.record_message,
        engine,
        incident_id=incident_id,
        kind="proposal",
        channel_id=channel,
        ts=ts,
        proposal_id=proposal_id,
        post_key=f"aoi-proposal-{proposal_id}",
    )
    message = rig.slack.message(channel, ts)
    assert message is not None
    assert has_button(message, "aoi_approve")
    return Posted(incident_id, proposal_id, thread_ts, message)


async def _diagnosis_message(rig: BotRig, channel: str = CHANNEL) -> tuple[int, Message]:
    thread_ts, incident_id = await _thread(rig, channel)
    response = await rig.bot.client.chat_postMessage(
        channel=channel, thread_ts=thread_ts, text=f"Diagnosis for incident #{incident_id}"
    )
    message = rig.slack.message(channel, str(response["ts"]))
    assert message is not None
    return incident_id, message


def _ephemeral(
    slack: SlackStandIn, user: str, words: str, channel: str = CHANNEL
) -> Callable[[], Message | None]:
    def find() -> Message | None:
        return next(
            (
                m
                for m in slack.messages.get(channel, [])
                if m.ephemeral_for == user and words.lower() in m.text.lower()
            ),
            None,
        )

    return find


def _ephemerals(slack: SlackStandIn, user: str, channel: str = CHANNEL) -> list[Message]:
    return [m for m in slack.messages.get(channel, []) if m.ephemeral_for == user]


def _replies(slack: SlackStandIn, thread_ts: str, channel: str = CHANNEL) -> list[Message]:
    """The bot's visible messages in a thread."""
    return [
        m
        for m in slack.thread(channel, thread_ts, include_ephemeral=False)
        if m.user == slack.bot_user_id
    ]


def _reply(slack: SlackStandIn, thread_ts: str, words: str) -> Callable[[], Message | None]:
    def find() -> Message | None:
        return next((m for m in _replies(slack, thread_ts) if words in texts(m)), None)

    return find


async def _settle(rig: BotRig, seconds: float = 0.3) -> None:
    """Let the bot's background tasks finish whatever a delivery started."""
    await asyncio.sleep(seconds)
    await wait_for(lambda: not rig.bot._tasks and not rig.bot.runner.running, timeout_s=10)


async def _click(
    rig: BotRig, user: str, posted_or_message: Posted | Message, action: str, value: Any
) -> Any:
    message = (
        posted_or_message.message if isinstance(posted_or_message, Posted) else posted_or_message
    )
    payload = rig.slack.click(user, message.channel, message.ts, action, "0")
    payload["actions"][0]["value"] = value
    delivery = await rig.interactive(payload)
    assert delivery.status == 200, delivery
    return delivery


# -- HTTP: signatures, bodies, the challenge ------------------------------------------


def _signed(raw: bytes, secret: str = SECRET) -> dict[str, str]:
    """Slack's signature headers over raw bytes (any bytes: Slack signs what it sends)."""
    stamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={mac.hexdigest()}",
        "Content-Type": "application/json"
        if raw.lstrip().startswith(b"{")
        else "application/x-www-form-urlencoded",
    }


def _forged(kind: str, raw: bytes) -> dict[str, str]:
    now = int(time.time())
    good = signed_headers(SECRET, raw)
    if kind == "wrong secret":
        return signed_headers("not-the-secret", raw)
    if kind == "stale":
        return signed_headers(SECRET, raw, timestamp=now - 6 * 60)
    if kind == "from the future":
        return signed_headers(SECRET, raw, timestamp=now + 6 * 60)
    if kind == "another body":
        return signed_headers(SECRET, raw + b" ")
    if kind == "no signature":
        return {k: v for k, v in good.items() if k != "X-Slack-Signature"}
    if kind == "no timestamp":
        return {k: v for k, v in good.items() if k != "X-Slack-Request-Timestamp"}
    if kind == "garbage timestamp":
        return good | {"X-Slack-Request-Timestamp": "yesterday"}
    if kind == "wrong content type":
        return {"Content-Type": "application/json"}
    assert kind == "no headers"
    return {}


FORGERY_KINDS = [
    "wrong secret",
    "stale",
    "from the future",
    "another body",
    "no signature",
    "no timestamp",
    "garbage timestamp",
    "no headers",
    "wrong content type",
]
FORGERIES = [
    "wrong secret",
    "stale",
    "from the future",
    "another body",
    "no signature",
    "no timestamp",
    "garbage timestamp",
    "no headers",
    "wrong content type",
]


@pytest.mark.parametrize("kind", FORGERIES)
async def test_http_refuses_unsigned_forged_and_stale_requests_and_runs_nothing(
    slack: SlackStandIn, engine: Engine, kind: str
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport="http") as rig:
        posted = await _posted(rig)
        calls_before = len(slack.calls)
        mention = slack.mention(CHANNEL, REQUESTER, f"<@{slack.bot_user_id}> geo is down")
        click = slack.click(APPROVER, CHANNEL, posted.message.ts, "aoi_approve", posted.value)
        for raw in (json.dumps(mention).encode(), form_body(click)):
            delivery = await rig.post(raw, _forged(kind, raw))
            assert delivery.status == 401, delivery
        await _settle(rig)
        # No handler ran: nothing claimed, nothing said, nothing approved.
        assert len(slack.calls) == calls_before, [c.method for c in slack.calls[calls_before:]]
        assert _all(engine, SlackEvent) == []
        assert [i.id for i in _all(engine, Incident)] == [posted.incident_id]
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}
        assert rig.bot.metrics.registry.get_sample_value(
            "aoi_events_total", {"kind": "app_mention"}
        ) in (
            None,
            0.0,
        )
        # The same mention, signed, is taken.
        raw = json.dumps(slack.mention(CHANNEL, REQUESTER, "help")).encode()
        assert (await rig.post(raw, signed_headers(SECRET, raw))).status == 200
        await wait_for(lambda: _events(rig, "app_mention") == 1, what="the signed mention")


MALFORMED_BODIES = {
    "broken JSON": b'{"type": "event_callback", "event": ',
    "a JSON list": b"[1, 2, 3]",
    "a JSON string": b'"event_callback"',
    "a JSON number": b"42",
    "JSON null": b"null",
    "a broken form payload": b"payload=%7B%22type%22%3A",
    "a form payload that is a list": b"payload=%5B1%2C2%5D",
    "a form payload that is a string": b"payload=%22x%22",
    "not UTF-8": b'{"type": "\xff\xfe"}',
    "an empty body": b"",
}


@pytest.mark.parametrize("kind", MALFORMED_BODIES)
async def test_http_answers_a_malformed_signed_body_with_4xx_and_stays_healthy(
    slack: SlackStandIn, engine: Engine, kind: str
) -> None:
    raw = MALFORMED_BODIES[kind]
    async with running_bot(slack, _config(), engine=engine, transport="http") as rig:
        headers = _signed(raw)
        if kind.startswith("a JSON") or kind == "JSON null":
            headers["Content-Type"] = "application/json"
        delivery = await rig.post(raw, headers)
        assert 400 <= delivery.status < 500, (kind, delivery)
        # Still healthy: a good mention afterwards is answered.
        body = await rig.mention(CHANNEL, REQUESTER, "help")
        await wait_for(
            _reply(slack, body["event"]["ts"], "investigates"), timeout_s=10, what="help"
        )
        assert _all(engine, Incident) == []


def test_http_refusal_judges_signatures_before_bodies(engine: Engine) -> None:
    unused = make_client("xoxb-unused", base_url="http://127.0.0.1:9/api/")
    bot = AoiBot(_config(), engine=engine, client=unused, model=None, signing_secret=SECRET)
    now = time.time()
    good = json.dumps({"type": "event_callback", "event_id": "Ev1"}).encode()
    assert bot.http_refusal(good, signed_headers(SECRET, good)) is None
    form = form_body({"type": "block_actions"})
    assert bot.http_refusal(form, signed_headers(SECRET, form)) is None
    for kind in FORGERY_KINDS:
        refusal = bot.http_refusal(good, _forged(kind, good), now=now)
        assert refusal is not None, kind
        assert refusal[0] == 401, kind
    odd = signed_headers(SECRET, good)
    for stamp in ("\uff11\uff17\uff10\uff10", "-5", "1e9", " 1", "9" * 40, ""):
        assert bot.http_refusal(good, odd | {"X-Slack-Request-Timestamp": stamp}) == (
            401,
            "missing or malformed signature headers",
        ), stamp
    assert bot.http_refusal(good, odd | {"X-Slack-Signature": "v0=é"})[0] == 401  # type: ignore[index]
    for kind, raw in MALFORMED_BODIES.items():
        unsigned = bot.http_refusal(raw, {"Content-Type": "application/json"})
        assert unsigned is not None, kind
        assert unsigned[0] == 401, kind
        headers = _signed(raw)
        if kind.startswith("a JSON") or kind == "JSON null":
            headers["Content-Type"] = "application/json"
        refusal = bot.http_refusal(raw, headers)
        assert refusal is not None, kind
        assert refusal[0] == 400, kind


async def test_http_answers_the_url_verification_challenge_only_when_signed(
    slack: SlackStandIn, engine: Engine
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport="http") as rig:
        challenge = {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY",
            "type": "url_verification",
        }
        raw = json.dumps(challenge).encode()
        delivery = await rig.post(raw, signed_headers(SECRET, raw))
        assert delivery.status == 200
        body = delivery.body
        answered = body.get("challenge") if isinstance(body, dict) else body
        assert answered == challenge["challenge"]
        forged = await rig.post(raw, signed_headers("not-the-secret", raw))
        assert forged.status == 401
        assert challenge["challenge"] not in json.dumps(forged.body)


async def test_http_refuses_an_oversized_body_and_stays_healthy(
    slack: SlackStandIn, engine: Engine
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport="http") as rig:
        body = slack.mention(CHANNEL, REQUESTER, "x" * (2 * 1024 * 1024))
        raw = json.dumps(body).encode()
        delivery = await rig.post(raw, signed_headers(SECRET, raw))
        assert delivery.status == 413, delivery.status
        good = await rig.mention(CHANNEL, REQUESTER, "help")
        await wait_for(_reply(slack, good["event"]["ts"], "investigates"), timeout_s=10)
        assert _all(engine, Incident) == []
        assert len(_all(engine, SlackEvent)) == 1


# -- duplicated deliveries --------------------------------------------------------------


@BOTH
async def test_a_redelivered_mention_is_investigated_once(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        body = slack.mention(CHANNEL, REQUESTER, "checkout returns 502s")
        ts = body["event"]["ts"]
        for retry in (0, 1, 2, 1):
            delivery = await rig.event(body, retry=retry)
            assert delivery.status == 200
        # The cluster is a closed port: the one investigation says it cannot read it.
        await wait_for(lambda: rig.bot.runner.finished, timeout_s=20, what="the investigation")
        await _settle(rig)
        assert len(_all(engine, Incident)) == 1
        assert len(_all(engine, SlackEvent)) == 1
        assert len(slack.calls_to("chat.startStream")) == 1
        errors = [m for m in _replies(slack, ts) if "cannot be read" in m.text]
        assert len(errors) == 1, [m.text for m in _replies(slack, ts)]
        assert len([m for m in _replies(slack, ts) if m.text.startswith("Diagnosis")]) == 1
        assert _events(rig, "duplicate") == 3
        assert _events(rig, "app_mention") == 1


@BOTH
async def test_a_redelivered_command_is_answered_once(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        body = slack.mention(CHANNEL, REQUESTER, "help")
        await asyncio.gather(rig.event(body), rig.event(body, retry=1), rig.event(body, retry=2))
        await wait_for(_reply(slack, body["event"]["ts"], "investigates"), timeout_s=10)
        await _settle(rig)
        assert len(_replies(slack, body["event"]["ts"])) == 1
        assert len(slack.calls_to("chat.postMessage")) == 1


# -- mentions outside incident channels, malformed ones ---------------------------------


@BOTH
async def test_a_mention_outside_incident_channels_gets_one_polite_refusal(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        await rig.mention(GENERAL, REQUESTER, "checkout is down")
        refusal = await wait_for(
            _ephemeral(slack, REQUESTER, "only investigate in incident channels", GENERAL),
            timeout_s=10,
        )
        await _settle(rig)
        assert "inc" in refusal.text  # says where it does
        assert len(_ephemerals(slack, REQUESTER, GENERAL)) == 1
        assert slack.calls_to("chat.postMessage") == []
        assert slack.calls_to("chat.startStream") == []
        assert _all(engine, Incident) == []


@BOTH
async def test_a_channel_slack_will_not_describe_is_refused_not_crashed(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        slack.fail_next("conversations.info", status=500, count=50)
        await rig.mention(CHANNEL, REQUESTER, "checkout is down")
        await wait_for(
            _ephemeral(slack, REQUESTER, "would not tell me about this channel"), timeout_s=15
        )
        await _settle(rig)
        assert _all(engine, Incident) == []
        assert slack.calls_to("chat.startStream") == []
        # Once Slack answers again, the same channel is served.
        slack._faults.clear()
        body = await rig.mention(CHANNEL, REQUESTER, "help")
        await wait_for(_reply(slack, body["event"]["ts"], "investigates"), timeout_s=10)


def _malformed_mentions(slack: SlackStandIn) -> list[dict[str, Any]]:
    bodies = []
    for change in (
        {"user": None},
        {"channel": None},
        {"ts": None},
        {"ts": "not-a-ts"},
        {"ts": "1700000000.000100\n"},
        {"thread_ts": "yesterday"},
        {"user": "U0BOB<script>"},
        {"user": ["U0BOB"]},
        {"channel": {"id": CHANNEL}},
        {"channel": "C0INC1\n"},
    ):
        body = slack.mention(CHANNEL, REQUESTER, "checkout is down")
        for key, value in change.items():
            if value is None:
                body["event"].pop(key, None)
            else:
                body["event"][key] = value
        bodies.append(body)
    no_id = slack.mention(CHANNEL, REQUESTER, "checkout is down")
    no_id.pop("event_id")
    bodies.append(no_id)
    return bodies


@BOTH
async def test_malformed_mentions_are_ignored_and_counted(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        bodies = _malformed_mentions(slack)
        for body in bodies:
            assert (await rig.event(body)).status == 200
        await _settle(rig)
        assert _events(rig, "malformed") == len(bodies)
        assert _all(engine, SlackEvent) == []
        assert _all(engine, Incident) == []
        assert [c.method for c in slack.calls if c.method.startswith("chat.")] == []
        good = await rig.mention(CHANNEL, REQUESTER, "help")
        await wait_for(_reply(slack, good["event"]["ts"], "investigates"), timeout_s=10)


# -- commands ---------------------------------------------------------------------------


@BOTH
async def test_help_and_status_answer_in_the_thread(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        body = await rig.mention(CHANNEL, REQUESTER, "help")
        helped = await wait_for(_reply(slack, body["event"]["ts"], "investigates"), timeout_s=10)
        assert "@aoi status" in helped.text
        assert helped.thread_ts == body["event"]["ts"]

        body = await rig.mention(CHANNEL, REQUESTER, "status")
        await wait_for(
            _reply(slack, body["event"]["ts"], "no incident in this thread yet"), timeout_s=10
        )

        posted = await _posted(rig)
        await rig.mention(CHANNEL, STRANGER, "status", thread_ts=posted.thread_ts)
        status = await wait_for(
            _reply(slack, posted.thread_ts, f"Incident #{posted.incident_id}:"), timeout_s=10
        )
        assert "DIAGNOSED" in status.text
        assert f"#{posted.proposal_id}" in status.text
        await _settle(rig)
        assert len(_all(engine, Incident)) == 1
        assert slack.calls_to("chat.startStream") == []


@BOTH
async def test_resolved_closes_the_incident_once(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        body = await rig.mention(CHANNEL, REQUESTER, "resolved: the geo port")
        await wait_for(
            _reply(slack, body["event"]["ts"], "no incident in this thread to resolve"),
            timeout_s=10,
        )
        thread_ts, incident_id = await _thread(rig)
        await rig.mention(CHANNEL, REQUESTER, "resolved:", thread_ts=thread_ts)
        await wait_for(_reply(slack, thread_ts, "Tell me the cause"), timeout_s=10)
        assert _get(engine, Incident, incident_id).status is IncidentStatus.DIAGNOSED

        await rig.mention(
            CHANNEL, APPROVER, "resolved: geo's Service targeted port 9090", thread_ts=thread_ts
        )
        await wait_for(_reply(slack, thread_ts, "closed as resolved"), timeout_s=10)
        incident = _get(engine, Incident, incident_id)
        assert incident.status is IncidentStatus.CLOSED
        assert incident.closed_at is not None
        (outcome,) = _all(engine, Outcome)
        assert (outcome.source, outcome.labelled_by, outcome.resolved) == (
            "slack_resolved",
            APPROVER,
            True,
        )
        assert "9090" in outcome.notes

        await rig.mention(CHANNEL, STRANGER, "resolved: it was DNS", thread_ts=thread_ts)
        await wait_for(_reply(slack, thread_ts, "Only the person who asked"), timeout_s=10)
        await rig.mention(CHANNEL, REQUESTER, "resolved: it was DNS", thread_ts=thread_ts)
        await wait_for(_reply(slack, thread_ts, "already closed"), timeout_s=10)
        await _settle(rig)
        assert len(_all(engine, Outcome)) == 1


@BOTH
async def test_follow_ups_in_closed_and_busy_threads_are_refused(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        closed_ts, closed_id = await _thread(rig)
        assert slack_store.close_incident(engine, closed_id, by=APPROVER, cause="fixed")
        busy = slack.add_message(CHANNEL, REQUESTER, "payments are slow")
        busy_id = _incident(engine, thread_ts=busy.ts, status=IncidentStatus.INVESTIGATING)

        await rig.mention(CHANNEL, REQUESTER, "and what about geo now?", thread_ts=closed_ts)
        await wait_for(_reply(slack, closed_ts, "I do not reopen it"), timeout_s=10)
        await rig.mention(CHANNEL, REQUESTER, "anything new?", thread_ts=busy.ts)
        await wait_for(_reply(slack, busy.ts, "still investigating"), timeout_s=10)
        await _settle(rig)

        assert sorted(i.id for i in _all(engine, Incident)) == sorted([closed_id, busy_id])
        assert _get(engine, Incident, closed_id).status is IncidentStatus.CLOSED
        assert _get(engine, Incident, busy_id).status is IncidentStatus.INVESTIGATING
        assert slack.calls_to("chat.startStream") == []
        assert rig.bot.runner.finished == []


# -- clicks on proposals -----------------------------------------------------------------


@BOTH
async def test_a_click_on_an_unknown_proposal_is_answered_and_moves_nothing(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        unknown = str(posted.proposal_id + 1000)
        await _click(rig, APPROVER, posted, "aoi_approve", unknown)
        await wait_for(_ephemeral(slack, APPROVER, f"no proposal #{unknown}"), timeout_s=10)
        await _click(rig, REQUESTER, posted, "aoi_reject", unknown)
        await wait_for(_ephemeral(slack, REQUESTER, f"no proposal #{unknown}"), timeout_s=10)
        await _settle(rig)
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}
        assert slack.message(CHANNEL, posted.message.ts).updated == 0  # type: ignore[union-attr]


BAD_VALUES: list[Any] = [
    "abc",
    "-1",
    "0",
    "",
    "1.0",
    " 1",
    "1\n",
    "0x1",
    "99999999999999999999999",
    "1e3",
    "\u0661",  # an Arabic-Indic digit one
    None,
    7,
    True,
    ["1"],
    {"id": "1"},
]


@BOTH
async def test_clicks_with_malformed_values_are_refused_and_move_nothing(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        # Point every value at the real proposal where a lenient parser would find it.
        values = [
            v.replace("1", posted.value) if isinstance(v, str) and v != "0x1" else v
            for v in BAD_VALUES
        ]
        values += [[posted.value], {"id": posted.value}, posted.value + "\n", posted.value * 13]
        for value in values:
            await _click(rig, APPROVER, posted, "aoi_approve", value)
            await _click(rig, REQUESTER, posted, "aoi_reject", value)
        await _settle(rig, 0.5)
        refusals = _ephemerals(slack, APPROVER) + _ephemerals(slack, REQUESTER)
        assert len(refusals) == 2 * len(values), [m.text for m in refusals]
        assert all("nothing changed" in m.text for m in refusals), [m.text for m in refusals]
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}
        row = _get(engine, Proposal, posted.proposal_id)
        assert (row.approver, row.decided_at) == (None, None)
        assert slack.message(CHANNEL, posted.message.ts).updated == 0  # type: ignore[union-attr]


@BOTH
async def test_a_click_from_another_channel_is_refused(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        elsewhere = slack.add_message(OTHER, APPROVER, "see this")
        for action, user in (("aoi_approve", APPROVER), ("aoi_reject", REQUESTER)):
            payload = block_action(user, OTHER, elsewhere.ts, action, posted.value)
            assert (await rig.interactive(payload)).status == 200
            await wait_for(_ephemeral(slack, user, "is not proposal", OTHER), timeout_s=10)
        await _settle(rig)
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}
        assert slack.message(CHANNEL, posted.message.ts).updated == 0  # type: ignore[union-attr]


@BOTH
async def test_strangers_and_the_requester_may_not_approve(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        await _click(rig, STRANGER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, STRANGER, "not an approver"), timeout_s=10)
        await _click(rig, REQUESTER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, REQUESTER, "may not approve"), timeout_s=10)
        await _click(rig, STRANGER, posted, "aoi_reject", posted.value)
        await wait_for(_ephemeral(slack, STRANGER, "Only an approver"), timeout_s=10)
        await _settle(rig)
        row = _get(engine, Proposal, posted.proposal_id)
        assert (row.state, row.approver) == (ProposalState.PENDING, None)
        assert slack.message(CHANNEL, posted.message.ts).updated == 0  # type: ignore[union-attr]
        assert _approvals(rig, "refused") == 3


@BOTH
async def test_a_group_member_approves_and_an_unreachable_cluster_fails_cleanly(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        await _click(rig, GROUPIE, posted, "aoi_approve", posted.value)
        updated = await wait_for(
            lambda: (
                (m := slack.message(CHANNEL, posted.message.ts)) and "try again" in texts(m) and m
            ),
            timeout_s=15,
            what="the proposal message to say it could not run",
        )
        await _settle(rig)
        row = _get(engine, Proposal, posted.proposal_id)
        # Approved by the group, but nothing ran: the cluster could not be read.
        assert row.state is ProposalState.APPROVED
        assert (row.approver, row.approval) == (GROUPIE, {"via": "group:S0SRE", "automatic": False})
        assert GROUPIE in texts(updated)
        # "Try again" must be possible: the Approve button is still there.
        assert has_button(updated, "aoi_approve"), texts(updated)
        # A retry by an approver runs the execution again (and fails the same way).
        before = updated.updated
        await _click(rig, APPROVER, updated, "aoi_approve", posted.value)
        await wait_for(
            lambda: slack.message(CHANNEL, posted.message.ts).updated > before,  # type: ignore[union-attr]
            timeout_s=15,
            what="the retry to update the message",
        )
        await _settle(rig)
        assert _get(engine, Proposal, posted.proposal_id).state is ProposalState.APPROVED
        # A stranger's retry is refused and runs nothing.
        await _click(rig, STRANGER, updated, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, STRANGER, "not an approver"), timeout_s=10)


@BOTH
async def test_two_approvers_clicking_at_once_approve_once(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        await asyncio.gather(
            *(
                _click(rig, user, posted, "aoi_approve", posted.value)
                for user in (APPROVER, GROUPIE, APPROVER, GROUPIE)
            )
        )
        await _settle(rig, 0.5)
        row = _get(engine, Proposal, posted.proposal_id)
        assert row.state is ProposalState.APPROVED  # nothing could run: the cluster is closed
        assert row.approver in (APPROVER, GROUPIE)
        via = "approvers" if row.approver == APPROVER else "group:S0SRE"
        assert row.approval == {"via": via, "automatic": False}
        assert _approvals(rig, "approved") == 1
        message = slack.message(CHANNEL, posted.message.ts)
        assert message is not None
        assert "try again" in texts(message)
        assert has_button(message, "aoi_approve")


@BOTH
async def test_no_executor_identity_refuses_before_approving(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(
        slack, _config(executor=False), engine=engine, transport=transport
    ) as rig:
        posted = await _posted(rig)
        await _click(rig, APPROVER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, APPROVER, "no executor identity"), timeout_s=10)
        await _settle(rig)
        row = _get(engine, Proposal, posted.proposal_id)
        assert (row.state, row.approver) == (ProposalState.PENDING, None)
        assert slack.message(CHANNEL, posted.message.ts).updated == 0  # type: ignore[union-attr]


@BOTH
async def test_an_unreadable_user_group_is_named_in_the_refusal(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        slack.fail_next("usergroups.users.list", status=500, count=50)
        await _click(rig, GROUPIE, posted, "aoi_approve", posted.value)
        refusal = await wait_for(_ephemeral(slack, GROUPIE, "not an approver"), timeout_s=15)
        assert "S0SRE" in refusal.text
        await _click(rig, GROUPIE, posted, "aoi_reject", posted.value)
        refusal = await wait_for(_ephemeral(slack, GROUPIE, "Only an approver"), timeout_s=15)
        assert "S0SRE" in refusal.text
        await _settle(rig)
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}


@BOTH
async def test_a_click_on_an_expired_proposal_says_so_and_updates_its_message(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig, expires_in_s=-5)
        await _click(rig, APPROVER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, APPROVER, "already *EXPIRED*"), timeout_s=10)
        message = await wait_for(
            lambda: (m := slack.message(CHANNEL, posted.message.ts)) and m.updated and m,
            timeout_s=10,
        )
        assert "Expired" in texts(message)
        assert not has_button(message, "aoi_approve")
        await _settle(rig)
        assert _states(engine) == {posted.proposal_id: ProposalState.EXPIRED}
        assert _get(engine, Proposal, posted.proposal_id).approver is None


@BOTH
async def test_reject_by_the_requester_once_and_never_by_a_stranger(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        posted = await _posted(rig)
        await _click(rig, STRANGER, posted, "aoi_reject", posted.value)
        await wait_for(_ephemeral(slack, STRANGER, "Only an approver"), timeout_s=10)
        assert _states(engine) == {posted.proposal_id: ProposalState.PENDING}

        await _click(rig, REQUESTER, posted, "aoi_reject", posted.value)
        message = await wait_for(
            lambda: (
                (m := slack.message(CHANNEL, posted.message.ts)) and "Rejected" in texts(m) and m
            ),
            timeout_s=10,
        )
        assert not has_button(message, "aoi_approve")
        assert REQUESTER in texts(message)
        row = _get(engine, Proposal, posted.proposal_id)
        assert (row.state, row.approver) == (ProposalState.REJECTED, REQUESTER)

        await _click(rig, REQUESTER, posted, "aoi_reject", posted.value)
        await wait_for(_ephemeral(slack, REQUESTER, "already *REJECTED*"), timeout_s=10)
        await _click(rig, APPROVER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, APPROVER, "already *REJECTED*"), timeout_s=10)
        await _settle(rig)
        assert _states(engine) == {posted.proposal_id: ProposalState.REJECTED}


@BOTH
async def test_a_click_after_a_restart_is_judged_from_the_store(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as first:
        posted = await _posted(first)
        kept = await _posted(first)
    async with running_bot(slack, _config(), engine=engine, transport=transport) as second:
        await _click(second, STRANGER, posted, "aoi_approve", posted.value)
        await wait_for(_ephemeral(slack, STRANGER, "not an approver"), timeout_s=10)
        await _click(second, REQUESTER, posted, "aoi_reject", posted.value)
        await wait_for(
            lambda: "Rejected" in texts(slack.message(CHANNEL, posted.message.ts)),  # type: ignore[arg-type]
            timeout_s=10,
        )
        await _settle(second)
        assert _states(engine) == {
            posted.proposal_id: ProposalState.REJECTED,
            kept.proposal_id: ProposalState.PENDING,
        }
        assert slack.message(CHANNEL, kept.message.ts).updated == 0  # type: ignore[union-attr]


# -- the expiry sweep --------------------------------------------------------------------


@pytest.mark.slow
async def test_two_replicas_sweeping_update_an_expired_proposal_once(
    slack: SlackStandIn, engine: Engine
) -> None:
    config = _config(sweep_s=0.2)
    async with (
        running_bot(slack, config, engine=engine, transport="http") as one,
        running_bot(slack, config, engine=engine, transport="http") as two,
    ):
        posted = await _posted(one, expires_in_s=1.0)
        kept = await _posted(two, expires_in_s=600)
        message = await wait_for(
            lambda: (m := slack.message(CHANNEL, posted.message.ts)) and m.updated and m,
            timeout_s=10,
            what="the sweep to update the expired proposal",
        )
        await asyncio.sleep(1.5)  # several more sweeps of both replicas
        assert message.updated == 1
        updates = [c for c in slack.calls_to("chat.update") if c.params.get("ts") == message.ts]
        assert len(updates) == 1
        assert "Expired" in texts(message)
        assert not has_button(message, "aoi_approve")
        assert _states(engine) == {
            posted.proposal_id: ProposalState.EXPIRED,
            kept.proposal_id: ProposalState.PENDING,
        }
        assert slack.message(CHANNEL, kept.message.ts).updated == 0  # type: ignore[union-attr]


# -- feedback ----------------------------------------------------------------------------


@BOTH
async def test_correct_records_an_outcome_and_an_up_vote(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        incident_id, message = await _diagnosis_message(rig)
        await _click(rig, APPROVER, message, "aoi_feedback_correct", str(incident_id))
        await wait_for(_ephemeral(slack, APPROVER, "recorded as correct"), timeout_s=10)
        await _settle(rig)
        (outcome,) = _all(engine, Outcome)
        assert (outcome.incident_id, outcome.correct, outcome.source, outcome.labelled_by) == (
            incident_id,
            True,
            "slack_feedback",
            APPROVER,
        )
        assert outcome.root_cause == {
            "component": "geo",
            "system_level": "Application",
            "fault_type": "Misconfiguration",
        }
        (vote,) = _all(engine, Feedback)
        assert (vote.incident_id, vote.slack_user, vote.rating) == (
            incident_id,
            APPROVER,
            Rating.UP,
        )


def _label_values(
    component: str = "geo-db",
    system_level: str = "Virtualization",
    fault_type: str = "Network/Storage Issue",
    note: str = "the Service pointed at 9090",
) -> dict[str, dict[str, Any]]:
    def chosen(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value}}

    return {
        "component": {"value": component},
        "system_level": {"value": chosen(system_level)},
        "fault_type": {"value": chosen(fault_type)},
        "note": {"value": note},
    }


def _ack_errors(rig: BotRig, delivery: Any) -> dict[str, str] | None:
    body = delivery.body
    if rig.transport == "socket":
        body = body.get("payload") if isinstance(body, dict) else None
    if not body:
        return None
    assert isinstance(body, dict), body
    assert body.get("response_action") == "errors", body
    errors = body.get("errors")
    assert isinstance(errors, dict)
    return errors


@BOTH
async def test_wrong_opens_the_label_modal_and_a_valid_label_is_stored(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        incident_id, message = await _diagnosis_message(rig)
        await _click(rig, APPROVER, message, "aoi_feedback_wrong", str(incident_id))
        await wait_for(lambda: slack.views, timeout_s=10, what="views.open")
        (opened,) = slack.views
        view = opened["view"]
        assert (view["callback_id"], view["private_metadata"]) == ("aoi_label", str(incident_id))
        assert "geo" in json.dumps(view["blocks"])  # the diagnosed component is offered
        assert _all(engine, Outcome) == []

        payload = slack.submit(APPROVER, "aoi_label", str(incident_id), _label_values())
        delivery = await rig.interactive(payload)
        assert delivery.status == 200
        assert _ack_errors(rig, delivery) is None
        note = await wait_for(
            lambda: next(
                (m for m in _replies(slack, message.thread_ts or "") if "labelled" in m.text), None
            ),
            timeout_s=10,
        )
        assert "geo-db" in note.text
        (outcome,) = _all(engine, Outcome)
        assert (outcome.correct, outcome.source, outcome.labelled_by) == (
            False,
            "slack_feedback",
            APPROVER,
        )
        assert outcome.root_cause == {
            "component": "geo-db",
            "system_level": "Virtualization",
            "fault_type": "Network/Storage Issue",
        }
        assert "9090" in outcome.notes
        (vote,) = _all(engine, Feedback)
        assert vote.rating is Rating.DOWN


INVALID_LABELS: dict[str, tuple[str, dict[str, Any]]] = {
    "unknown fault type": ("fault_type", _label_values(fault_type="Cosmic Rays")),
    "Unknown fault type": ("fault_type", _label_values(fault_type="Unknown")),
    "unknown system level": ("system_level", _label_values(system_level="Mainframe")),
    "empty component": ("component", _label_values(component="")),
    "blank component": ("component", _label_values(component="   ")),
    "component with spaces": ("component", _label_values(component="geo db; drop table")),
    "over-long component": ("component", _label_values(component="g" * 81)),
    "over-long note": ("note", _label_values(note="n" * 2001)),
    "component not text": ("component", {**_label_values(), "component": {"value": 5}}),
    "no fault type": (
        "fault_type",
        {k: v for k, v in _label_values().items() if k != "fault_type"},
    ),
}


@BOTH
async def test_invalid_labels_are_answered_with_field_errors_and_nothing_is_stored(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        incident_id, message = await _diagnosis_message(rig)
        for kind, (field, values) in INVALID_LABELS.items():
            payload = slack.submit(APPROVER, "aoi_label", str(incident_id), values)
            delivery = await rig.interactive(payload)
            assert delivery.status == 200, kind
            errors = _ack_errors(rig, delivery)
            assert errors is not None, kind
            assert field in errors, (kind, errors)
        for metadata in ("", "abc", "-1", str(incident_id + 100), f"{incident_id}\n"):
            payload = slack.submit(APPROVER, "aoi_label", metadata, _label_values())
            errors = _ack_errors(rig, await rig.interactive(payload))
            assert errors, metadata
        forged = slack.submit("not a user", "aoi_label", str(incident_id), _label_values())
        assert _ack_errors(rig, await rig.interactive(forged))
        await _settle(rig)
        assert _all(engine, Outcome) == []
        assert _all(engine, Feedback) == []
        assert [m for m in _replies(slack, message.thread_ts or "") if m.ts != message.ts] == []


@BOTH
async def test_feedback_buttons_for_an_incident_of_another_channel_are_refused(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        incident_id, _ = await _diagnosis_message(rig, OTHER)
        _, here = await _diagnosis_message(rig, CHANNEL)
        for action in ("aoi_feedback_correct", "aoi_feedback_wrong"):
            await _click(rig, APPROVER, here, action, str(incident_id))
        await wait_for(
            lambda: (
                len([m for m in _ephemerals(slack, APPROVER) if "does not belong" in m.text]) == 2
            ),
            timeout_s=10,
        )
        for value in ("999", "abc", ["1"], None):
            await _click(rig, APPROVER, here, "aoi_feedback_correct", value)
        await _settle(rig)
        assert slack.views == []
        assert _all(engine, Outcome) == []
        assert _all(engine, Feedback) == []


# -- random interactive payloads ---------------------------------------------------------


class _BotThread:
    """The stand-in and a Socket Mode bot on an event loop of their own thread.

    Hypothesis drives synchronous examples; each delivers on that loop and waits.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.slack: SlackStandIn | None = None
        self.rig: BotRig | None = None
        self._stop: asyncio.Event | None = None
        self._serving: asyncio.Future[None] | None = None

    def run(self, work: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout_s)

    def __enter__(self) -> _BotThread:
        self.thread.start()
        ready = self.run(self._start())
        assert ready
        return self

    async def _start(self) -> bool:
        self._stop = asyncio.Event()
        started = asyncio.Event()

        async def serve() -> None:
            async with (
                SlackStandIn() as slack,
                running_bot(slack, _config(), engine=self.engine, transport="socket") as rig,
            ):
                self.slack, self.rig = slack, rig
                started.set()
                assert self._stop is not None
                await self._stop.wait()

        self._serving = asyncio.ensure_future(serve())
        await asyncio.wait(
            [self._serving, asyncio.ensure_future(started.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._serving.done():
            self._serving.result()
        return True

    async def _finish(self) -> None:
        assert self._stop is not None
        assert self._serving is not None
        self._stop.set()
        await self._serving

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._finish())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


_ids = st.one_of(
    st.sampled_from([STRANGER, "U0NOBODY", "W0ENTERPRISE", CHANNEL, OTHER, ""]),
    st.text(max_size=20),
)
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_action_ids = st.sampled_from(
    ["aoi_approve", "aoi_reject", "aoi_feedback_correct", "aoi_feedback_wrong", "something_else"]
)
_actions = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"action_id": _action_ids, "type": st.just("button")},
            optional={
                "value": st.one_of(st.sampled_from(["1", "2", "3", "-1", "0", "1\n"]), _json),
                "block_id": st.one_of(st.just("aoi_actions"), _json),
            },
        ),
        # Not Slack's shape at all: no action id, or not an object.
        st.dictionaries(st.sampled_from(["value", "type", "action_id"]), _json, max_size=3),
        _json_leaf,
    ),
    min_size=1,
    max_size=3,
)


def _payloads(message_ts: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.just("block_actions"),
            "user": st.fixed_dictionaries({"id": _ids}),
            # Never empty nor a non-list: bolt itself fails on those before any code of ours
            # runs (Slack never sends them).
            "actions": _actions,
            "team": st.just({"id": "T0STANDIN"}),
        },
        optional={
            "channel": st.one_of(st.fixed_dictionaries({"id": _ids}), st.just({})),
            "container": st.one_of(
                st.fixed_dictionaries(
                    {"message_ts": st.one_of(st.just(message_ts), st.text(max_size=20))}
                ),
                _json,
            ),
            "message": st.one_of(
                st.fixed_dictionaries({"ts": st.just(message_ts)}, optional={"thread_ts": _json}),
                _json,
            ),
            "trigger_id": st.one_of(st.text(max_size=10), _json),
            "state": _json,
        },
    )


@pytest.mark.slow
def test_random_block_actions_never_crash_the_bot_nor_move_a_proposal(engine: Engine) -> None:
    with _BotThread(engine) as bot:
        assert bot.rig is not None
        assert bot.slack is not None
        rig, slack = bot.rig, bot.slack
        posted = [bot.run(_posted(rig)) for _ in range(3)]
        ts = posted[0].message.ts
        before = _states(engine)
        assert set(before.values()) == {ProposalState.PENDING}

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(payload=_payloads(ts))
        def delivered(payload: dict[str, Any]) -> None:
            ack = bot.run(slack.socket_mode.deliver("interactive", payload, timeout_s=2.0))
            assert isinstance(ack.get("envelope_id"), str)

        delivered()
        bot.run(_settle(rig, 0.5))
        assert _states(engine) == before
        assert all(p.approver is None for p in _all(engine, Proposal))
        assert slack.internal_errors == []
        # Still answering.
        body = bot.run(rig.mention(CHANNEL, REQUESTER, "help"))
        bot.run(wait_for(_reply(slack, body["event"]["ts"], "investigates"), timeout_s=10))


# -- health ------------------------------------------------------------------------------


@BOTH
async def test_health_readiness_and_metrics(
    slack: SlackStandIn, engine: Engine, transport: Transport
) -> None:
    async with running_bot(slack, _config(), engine=engine, transport=transport) as rig:
        base = f"http://127.0.0.1:{rig.serving.port}"
        body = await rig.mention(CHANNEL, REQUESTER, "geo is down")
        await wait_for(lambda: rig.bot.runner.finished, timeout_s=20)
        await _settle(rig)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200, await response.text()
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200
                metrics = await response.text()
            for series in (
                "aoi_investigations_running 0.0",
                'aoi_investigations_total{status="DIAGNOSED"} 1.0',
                "aoi_investigation_seconds_count 1.0",
                "# TYPE aoi_slack_api_errors_total counter",
                "# TYPE aoi_slack_rate_limited_total counter",
                'aoi_events_total{kind="app_mention"} 1.0',
                "# TYPE aoi_approvals_total counter",
            ):
                assert series in metrics, series
            assert body["event"]["text"] not in metrics
            await rig.serving.stop_events()
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert "shutting down" in await response.text()
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
        if transport == "http":
            raw = json.dumps(slack.mention(CHANNEL, REQUESTER, "help")).encode()
            assert (await rig.post(raw, signed_headers(SECRET, raw))).status == 503


class _Gate:
    """A model that answers only once ``open`` is set (the first investigation holds a slot)."""

    name = "gate"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.waiting = asyncio.Event()

    async def complete(self, messages: Any, **_: Any) -> Any:
        self.waiting.set()
        await self.open.wait()
        raise ModelUnavailable("the gate model answers nothing")

    async def aclose(self) -> None:
        return None


async def test_investigations_beyond_capacity_wait_their_turn_and_are_told(
    slack: SlackStandIn, engine: Engine
) -> None:
    gate = _Gate()
    config = dataclasses.replace(_config(), max_investigations=1)
    async with running_bot(slack, config, engine=engine, model=gate) as rig:  # type: ignore[arg-type]
        first = await rig.mention(CHANNEL, REQUESTER, "checkout is down")
        await asyncio.wait_for(gate.waiting.wait(), 30)
        second = await rig.mention(CHANNEL, REQUESTER, "payments too")
        ts = second["event"]["ts"]
        await wait_for(
            lambda: any("yours starts" in m.text for m in _replies(slack, ts)),
            what="the queued note",
        )
        assert not [m for m in _replies(slack, ts) if m.streaming]
        assert rig.bot.runner.running == 2
        gate.open.set()
        for body in (first, second):
            await wait_for(
                lambda b=body: any(  # type: ignore[misc]
                    m.text.startswith("Diagnosis") for m in _replies(slack, b["event"]["ts"])
                ),
                timeout_s=60,
                what="both diagnoses",
            )


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("help", "help"),
        (" Status? ", "status"),
        ("resolved: the geo port", "resolved"),
        ("RESOLVED :dns", "resolved"),
        ("help! checkout is down", None),
        ("status code 503 on checkout", None),
        ("resolved the configmap but pods still crash, what next?", None),
        ("checkout is slow", None),
    ],
)
def test_commands_are_whole_words_and_resolved_needs_its_colon(
    text: str, command: str | None
) -> None:
    parsed = parse_command(text)
    assert (parsed.name if parsed else None) == command
