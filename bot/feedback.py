"""Feedback and labels: Correct / Wrong buttons, the label modal, `@aoi resolved|status|help`.

What people say about a diagnosis becomes an outcome label in the store, the
trainer's and the Evolver's ground truth for production incidents: "Correct"
confirms the diagnosis as it stands; "Wrong" opens a modal for the actual
component, system level and fault type; ``@aoi resolved <cause>`` closes the
incident with the cause in the person's words. Every text a person typed is
redacted before it is stored or shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from agents.decision import FAULT_TYPES, SYSTEM_LEVELS
from agents.redact import redact
from bot import blocks
from bot.approvals import parse_id
from bot.metrics import BotMetrics
from bot.slack_api import CALL_ERRORS, Poster, SlackUnavailable
from bot.text import safe
from store import proposals as proposal_store
from store import slack as slack_store
from store.db import session_scope
from store.models import Feedback, Incident, Proposal, ProposalState, Rating, Step

log = logging.getLogger("aoi.bot")

# `help` and `status` are commands only as the whole mention ("help! checkout is down" is a
# question); `resolved:` needs its colon ("resolved the configmap but..." is a question too).
_WORD_COMMAND = re.compile(r"^\s*(help|status)[\s.!?]*$", re.IGNORECASE)
_RESOLVED = re.compile(r"^\s*resolved\s*:\s*(.*)$", re.IGNORECASE | re.DOTALL)
LABEL_CALLBACK = "aoi_label"


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


def parse_command(text: str) -> Command | None:
    """``help`` or ``status`` as the whole mention, or ``resolved: <cause>``; else None."""
    word = _WORD_COMMAND.match(text)
    if word is not None:
        return Command(word.group(1).lower(), "")
    resolved = _RESOLVED.match(text)
    if resolved is not None:
        return Command("resolved", " ".join(resolved.group(1).split()))
    return None


@dataclass(frozen=True)
class IncidentStatusView:
    incident_id: int
    status: str
    steps: int
    pending: list[int]
    question: str
    created_at: Any


class FeedbackDesk:
    """Records what people say about diagnoses and incidents."""

    def __init__(
        self, *, engine: Engine, client: AsyncWebClient, poster: Poster, metrics: BotMetrics
    ) -> None:
        self._engine = engine
        self._client = client
        self._poster = poster
        self._metrics = metrics

    async def correct(self, *, user: str, channel: str, value: object, thread_ts: str) -> None:
        incident = await self._incident(user, channel, value, thread_ts)
        if incident is None:
            return
        assert incident.id is not None
        diagnosis = incident.diagnosis or {}
        components = diagnosis.get("components") or []
        root_cause = {
            "component": str(components[0]) if components else "",
            "system_level": str(diagnosis.get("system_level") or ""),
            "fault_type": str(diagnosis.get("fault_type") or ""),
        }
        await asyncio.to_thread(
            _label, self._engine, incident.id, user, True, root_cause, "", Rating.UP
        )
        self._metrics.event("feedback_correct")
        await self._ephemeral(
            channel,
            user,
            f"Thanks: incident #{incident.id}'s diagnosis is recorded as correct.",
            thread_ts,
        )

    async def wrong(
        self, *, user: str, channel: str, value: object, thread_ts: str, trigger_id: str
    ) -> None:
        incident = await self._incident(user, channel, value, thread_ts)
        if incident is None:
            return
        assert incident.id is not None
        components = list((incident.diagnosis or {}).get("components") or [])
        view = blocks.label_modal(
            incident_id=incident.id,
            component_options=[str(c) for c in components][:20],
            system_levels=[s for s in SYSTEM_LEVELS if s != "Unknown"],
            fault_types=[f for f in FAULT_TYPES if f != "Unknown"],
        )
        try:
            await self._client.views_open(trigger_id=trigger_id, view=view)
        except (*CALL_ERRORS, OSError) as exc:
            log.warning("could not open the label modal: %s", exc)
            await self._ephemeral(
                channel,
                user,
                "I could not open the label form (Slack said no); try the button again, or "
                "say `@aoi resolved <cause>` in the thread.",
                thread_ts,
            )

    async def submit_label(
        self, *, user: str, private_metadata: str, values: dict[str, Any]
    ) -> dict[str, str] | None:
        """Store the modal's label; returns Slack's per-field errors when it is not valid."""
        incident_id = parse_id(private_metadata)
        if incident_id is None:
            return {"component": "This form does not belong to an incident of mine."}
        try:
            label = blocks.parse_label_submission(values)
        except blocks.LabelError as exc:
            return dict(exc.errors)
        incident = await asyncio.to_thread(_incident_row, self._engine, incident_id)
        if incident is None:
            return {"component": f"There is no incident #{incident_id}."}
        root_cause = {
            "component": redact(label.component),
            "system_level": label.system_level,
            "fault_type": label.fault_type,
        }
        await asyncio.to_thread(
            _label,
            self._engine,
            incident_id,
            user,
            False,
            root_cause,
            redact(label.note),
            Rating.DOWN,
        )
        self._metrics.event("feedback_label")
        if incident.channel_id:
            text = (
                f"<@{user}> labelled incident #{incident_id}: *{safe(label.component, 100)}* — "
                f"{label.system_level} / {label.fault_type}. Thanks, this trains the next model."
            )
            try:
                await self._poster.post(
                    incident.channel_id,
                    thread_ts=incident.thread_ts or None,
                    text=text,
                    key=f"aoi-label-{incident_id}-{user}-{_digest(root_cause)}",
                )
            except SlackUnavailable as exc:
                log.warning("could not post the label note: %s", exc)
        return None

    async def resolved(
        self, *, incident_id: int, user: str, cause: str, allowed: bool = True
    ) -> str:
        """Close the incident with ``cause``; returns the thread's reply.

        ``allowed``: whether ``user`` may close it (the requester or an approver); the
        incident's proposals still waiting are rejected with it, so none runs later.
        """
        if not allowed:
            return (
                "Only the person who asked or an approver may close an incident; nothing changed."
            )
        cause = redact(cause)[:2000]
        if not cause:
            return "Tell me the cause too: `@aoi resolved: <what it was>`."
        closed = await asyncio.to_thread(
            slack_store.close_incident, self._engine, incident_id, by=user, cause=cause
        )
        if not closed:
            return f"Incident #{incident_id} is already closed."
        await asyncio.to_thread(_reject_pending, self._engine, incident_id, user)
        self._metrics.event("resolved")
        return (
            f"Incident #{incident_id} closed as resolved by <@{user}>: {safe(cause, 500)}. "
            "I recorded it as a label for training."
        )

    async def status(self, incident_id: int | None) -> str:
        if incident_id is None:
            return "There is no incident in this thread yet: mention me with what is wrong."
        view = await asyncio.to_thread(_status, self._engine, incident_id)
        if view is None:
            return f"There is no incident #{incident_id}."
        pending = ", ".join(f"#{p}" for p in view.pending) or "none"
        return (
            f"Incident #{view.incident_id}: *{view.status}*, {view.steps} step(s) so far, "
            f"proposals waiting for approval: {pending}. Question: {safe(view.question, 300)}"
        )

    async def _incident(
        self, user: str, channel: str, value: object, thread_ts: str
    ) -> Incident | None:
        incident_id = parse_id(value)
        incident = (
            await asyncio.to_thread(_incident_row, self._engine, incident_id)
            if incident_id is not None
            else None
        )
        if incident is None or (incident.channel_id and incident.channel_id != channel):
            await self._ephemeral(
                channel, user, "That button does not belong to an incident of mine.", thread_ts
            )
            return None
        return incident

    async def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str) -> None:
        try:
            await self._poster.ephemeral(channel, user, text, thread_ts=thread_ts or None)
        except SlackUnavailable as exc:
            log.warning("could not answer %s: %s", user, exc)


def _digest(label: dict[str, str]) -> str:
    """A short digest of a label, the same in every process (``hash`` is salted per process,
    so replicas and restarts would post the same label's note again)."""
    text = json.dumps(label, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _incident_row(engine: Engine, incident_id: int) -> Incident | None:
    with session_scope(engine) as session:
        return session.get(Incident, incident_id)


def _label(
    engine: Engine,
    incident_id: int,
    user: str,
    correct: bool,
    root_cause: dict[str, str],
    note: str,
    rating: Rating,
) -> None:
    slack_store.record_label(
        engine,
        incident_id,
        by=user,
        source="slack_feedback",
        correct=correct,
        root_cause=root_cause,
        notes=note,
    )
    with session_scope(engine) as session:
        session.add(Feedback(incident_id=incident_id, slack_user=user, rating=rating, comment=note))


def _status(engine: Engine, incident_id: int) -> IncidentStatusView | None:
    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return None
        steps = session.exec(
            select(func.count()).select_from(Step).where(col(Step.incident_id) == incident_id)
        ).one()
        pending = session.exec(
            select(Proposal.id).where(
                col(Proposal.incident_id) == incident_id,
                col(Proposal.state) == ProposalState.PENDING,
            )
        ).all()
        return IncidentStatusView(
            incident_id=incident_id,
            status=str(incident.status),
            steps=int(steps),
            pending=[int(p) for p in pending if p is not None],
            question=incident.question,
            created_at=incident.created_at,
        )


def _reject_pending(engine: Engine, incident_id: int, user: str) -> None:
    """A closed incident's proposals that still wait are rejected: nothing runs after it."""
    with session_scope(engine) as session:
        waiting = session.exec(
            select(Proposal.id).where(
                col(Proposal.incident_id) == incident_id,
                col(Proposal.state) == ProposalState.PENDING,
            )
        ).all()
    for proposal_id in waiting:
        if proposal_id is not None:
            proposal_store.reject(
                engine, proposal_id, approver=user, reason="the incident was closed as resolved"
            )
