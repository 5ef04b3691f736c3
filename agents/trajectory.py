"""Writing an investigation to the store as it happens, and reading guidance back.

Every step is committed the moment it is taken, so an investigation that is
interrupted (a crash, a cancelled Slack thread) leaves a consistent trajectory:
the steps so far plus an incident marked FAILED with the reason. The trainer
and the Evolver read exactly these rows, so this is also where redaction guards
the store: the question, each decision, tool call and observation, and the
diagnosis are redacted here, whatever the caller did before.

A follow-up (a later question in the same Slack thread, ``IncidentContext.incident_id``)
continues its incident instead of opening one: the question is appended to the
incident's, its steps are numbered after the stored ones, and ``Trajectory.earlier``
hands the runtime what was asked and diagnosed before. Reopening is one
compare-and-set statement, so of two follow-ups racing for one incident exactly one
runs; a CLOSED incident is never reopened.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from agents.redact import redact, redact_json
from store.db import session_scope
from store.models import Guidance, Incident, IncidentStatus, Step, StepPhase

FOLLOW_UP_MARK = "\n\nFollow-up: "
"""Joins a follow-up's question to the incident's stored question."""

_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
_STOP = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "are",
        "was",
        "not",
        "but",
        "has",
        "have",
        "its",
        "into",
        "when",
        "why",
        "what",
        "all",
    }
)


@dataclass(frozen=True)
class IncidentContext:
    """Where the question came from (Slack thread, console, benchmark)."""

    question: str
    requester: str = "console"
    cluster: str = ""
    team_id: str = ""
    channel_id: str = ""
    thread_ts: str = ""
    scenario_id: str | None = None
    ground_truth: dict[str, Any] | None = None
    incident_id: int | None = None
    """Continue this incident (a follow-up in its thread) instead of opening a new one."""


class UnknownIncident(ValueError):  # noqa: N818  (reads as a sentence in except clauses)
    """A follow-up names an incident the store does not have."""


class IncidentClosed(ValueError):  # noqa: N818
    """A follow-up names a CLOSED incident: it is over, a new question opens a new one."""


class IncidentBusy(ValueError):  # noqa: N818
    """A follow-up names an incident that is being investigated right now."""


@dataclass(frozen=True)
class Earlier:
    """What a follow-up inherits: the questions asked so far (oldest first, redacted) and
    the last stored diagnosis (``Incident.diagnosis``, None when there was none)."""

    questions: tuple[str, ...]
    diagnosis: dict[str, Any] | None


class Trajectory:
    """One incident's rows; every method is a short transaction run off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.incident_id = 0
        self.steps = 0
        """Steps taken by this run (a follow-up's count starts at 0 too)."""
        self.first_step = 0
        """The ``step_index`` of this run's first step: after every step already stored."""
        self.earlier: Earlier | None = None
        """Set by ``open`` for a follow-up."""

    @property
    def follow_up(self) -> bool:
        return self.earlier is not None

    async def open(self, ctx: IncidentContext) -> int:
        """Open a new incident, or reopen ``ctx.incident_id`` for a follow-up.

        Raises ``UnknownIncident``, ``IncidentClosed`` or ``IncidentBusy`` (all
        ``ValueError``) for a follow-up that cannot continue; nothing is written then.
        """
        if ctx.incident_id is None:
            self.incident_id = await asyncio.to_thread(self._open, ctx)
        else:
            self.first_step, self.earlier = await asyncio.to_thread(self._reopen, ctx)
            self.incident_id = ctx.incident_id
        return self.incident_id

    def _open(self, ctx: IncidentContext) -> int:
        with session_scope(self.engine) as session:
            incident = Incident(
                team_id=ctx.team_id,
                channel_id=ctx.channel_id,
                thread_ts=ctx.thread_ts,
                requester=ctx.requester,
                question=redact(ctx.question),
                cluster=ctx.cluster,
                scenario_id=ctx.scenario_id,
                status=IncidentStatus.INVESTIGATING,
                ground_truth=ctx.ground_truth,
            )
            session.add(incident)
            session.flush()
            assert incident.id is not None
            return incident.id

    def _reopen(self, ctx: IncidentContext) -> tuple[int, Earlier]:
        incident_id = ctx.incident_id
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            # The claim is the transaction's first statement (SQLite then holds the write
            # lock; PostgreSQL's row lock makes a racing claim re-check after the commit).
            claimed = connection.execute(
                sa.update(Incident)
                .where(
                    col(Incident.id) == incident_id,
                    col(Incident.status).not_in(
                        [IncidentStatus.CLOSED, IncidentStatus.INVESTIGATING]
                    ),
                )
                .values(status=IncidentStatus.INVESTIGATING, closed_at=None, updated_at=now)
            ).rowcount
            row = connection.execute(
                sa.select(
                    col(Incident.status), col(Incident.question), col(Incident.diagnosis)
                ).where(col(Incident.id) == incident_id)
            ).first()
            if row is None:
                raise UnknownIncident(f"no incident #{incident_id} to follow up")
            status, question, diagnosis = row
            if claimed != 1:
                if status == IncidentStatus.CLOSED:
                    raise IncidentClosed(
                        f"incident #{incident_id} is closed; ask in a new thread to open a new one"
                    )
                raise IncidentBusy(
                    f"incident #{incident_id} is still being investigated; "
                    "ask again when it has finished"
                )
            connection.execute(
                sa.update(Incident)
                .where(col(Incident.id) == incident_id)
                .values(question=f"{question}{FOLLOW_UP_MARK}{redact(ctx.question)}")
            )
            last = connection.execute(
                sa.select(sa.func.max(col(Step.step_index))).where(
                    col(Step.incident_id) == incident_id
                )
            ).scalar()
        earlier = Earlier(
            tuple(str(question).split(FOLLOW_UP_MARK)),
            diagnosis if isinstance(diagnosis, dict) else None,
        )
        return (-1 if last is None else int(last)) + 1, earlier

    async def step(self, phase: StepPhase, **fields: Any) -> int:
        index = self.first_step + self.steps
        self.steps += 1
        await asyncio.to_thread(self._step, index, phase, fields)
        return index

    def _step(self, index: int, phase: StepPhase, fields: dict[str, Any]) -> None:
        # Every field: the decision, tool calls and observation are text, however nested.
        fields = redact_json(fields)
        with session_scope(self.engine) as session:
            session.add(Step(incident_id=self.incident_id, step_index=index, phase=phase, **fields))
            # A heartbeat: an incident INVESTIGATING with no step for long was abandoned.
            session.execute(
                sa.update(Incident)
                .where(col(Incident.id) == self.incident_id)
                .values(updated_at=datetime.now(UTC))
            )

    async def close(self, status: IncidentStatus, diagnosis: dict[str, Any] | None) -> None:
        await asyncio.to_thread(self._close, status, diagnosis)

    def _close(self, status: IncidentStatus, diagnosis: dict[str, Any] | None) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if diagnosis is not None:
            values["diagnosis"] = redact_json(diagnosis)
        if status in (IncidentStatus.FAILED, IncidentStatus.CLOSED):
            values["closed_at"] = now
        with session_scope(self.engine) as session:
            session.execute(
                sa.update(Incident).where(col(Incident.id) == self.incident_id).values(**values)
            )


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def retrieve_guidance(engine: Engine, text: str, *, limit: int = 3) -> list[str]:
    """Active Evolver guidance whose symptom shares the most words with ``text``."""
    wanted = _words(text)
    if not wanted:
        return []
    with session_scope(engine) as session:
        rows = list(session.exec(select(Guidance).where(Guidance.active == True)))  # noqa: E712
        scored = sorted(((len(wanted & _words(g.symptom)), g) for g in rows), key=lambda x: -x[0])
        chosen = [g for score, g in scored[:limit] if score >= 2]
        for g in chosen:
            g.usage_count += 1
            session.add(g)
        return [g.guidance for g in chosen]
