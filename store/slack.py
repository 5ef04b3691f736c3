"""What the Slack bot remembers: events taken on, messages posted, how incidents ended.

Slack redelivers events it thinks went unanswered, users click buttons twice,
and the bot may run as several replicas, so every "do this once" here is one
statement the database decides: `claim_event` is an INSERT against a unique
key (the loser sees the violation and gets False), and `mark_message_final`,
`mark_interrupted` and `close_incident` are compare-and-set UPDATEs (one
caller sees one row changed). Each function runs in a transaction of its own
whose first statement is its write, so SQLite's file lock and PostgreSQL's row
and index locks make the loser re-check after the winner commits.

Text arrives from Slack users (labels, notes, causes). The store does not
redact it: the bot redacts before calling (agents.redact), like every other
writer. The store only checks shape: strings within their limits, no NUL
(PostgreSQL cannot store it), valid Unicode; anything else is a ValueError
before any SQL runs. Ids that do not exist give False or a `StoreError`
naming them, never a driver error.

Example::

    if claim_event(engine, body["event_id"], kind="app_mention"):
        incident = thread_incident(engine, channel, thread_ts)   # a follow-up?
        ...
        bind_event(engine, body["event_id"], incident_id)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import session_scope
from store.errors import ProposalNotFound, StoreError
from store.models import (
    SLACK_KEY_LENGTH,
    Incident,
    IncidentStatus,
    Outcome,
    Proposal,
    ProposalState,
    SlackEvent,
    SlackMessage,
    SlackMessageKind,
)
from store.proposals import LEGAL_TRANSITIONS
from store.types import utcnow

MAX_KIND_CHARS = 64
MAX_ID_CHARS = 255
"""Channel ids, message timestamps, user ids: Slack's are far shorter."""
MAX_NOTE_CHARS = 20_000
MAX_LABEL_CHARS = 200
ROOT_CAUSE_KEYS = frozenset({"component", "system_level", "fault_type"})
OUTCOME_SOURCES = frozenset({"lab", "slack_feedback", "slack_resolved", "console", "bot"})
INTERRUPTIBLE = (IncidentStatus.OPEN, IncidentStatus.INVESTIGATING)
WAITING_STATES = (ProposalState.PENDING, ProposalState.APPROVED)
"""A proposal in these states has a message with live buttons."""
END_STATES = tuple(state for state in ProposalState if state not in LEGAL_TRANSITIONS)
"""A proposal in these states never moves again; its message should say so."""

_SQLITE_CONSTRAINT_UNIQUE = 2067
_SQLITE_CONSTRAINT_PRIMARYKEY = 1555


class IncidentNotFound(StoreError):  # noqa: N818
    """No incident has the given id."""


class SlackEventNotFound(StoreError):  # noqa: N818
    """No claimed Slack event has the given event id."""


class SlackEventBound(StoreError):  # noqa: N818
    """The Slack event already belongs to another incident."""


def claim_event(engine: Engine, event_id: str, *, kind: str) -> bool:
    """True for the one caller, in any process, that first records `event_id`; False after.

    `event_id` is 1 to 255 characters (Slack's event_id, or a key the bot derives
    for interactions); `kind` is what it is (app_mention, block_actions...).
    """
    event_id = checked_text("event_id", event_id, limit=SLACK_KEY_LENGTH, required=True)
    kind = checked_text("kind", kind, limit=MAX_KIND_CHARS, required=True)
    statement = sa.insert(SlackEvent).values(event_id=event_id, kind=kind, received_at=utcnow())
    try:
        with engine.begin() as connection:
            connection.execute(statement)
    except IntegrityError as exc:
        if _unique_violation(exc):
            return False
        raise
    return True


def bind_event(engine: Engine, event_id: str, incident_id: int) -> None:
    """Record that the claimed event `event_id` started (or continued) incident `incident_id`.

    Binding again to the same incident is a no-op. Raises `SlackEventNotFound`
    for an unclaimed event, `IncidentNotFound` for an unknown incident, and
    `SlackEventBound` when the event already belongs to another incident.
    """
    event_id = checked_text("event_id", event_id, limit=SLACK_KEY_LENGTH, required=True)
    statement = (
        sa.update(SlackEvent)
        .where(
            col(SlackEvent.event_id) == event_id,
            sa.or_(
                col(SlackEvent.incident_id).is_(None), col(SlackEvent.incident_id) == incident_id
            ),
        )
        .values(incident_id=incident_id)
    )
    try:
        with engine.begin() as connection:
            if connection.execute(statement).rowcount == 1:
                return
            bound = connection.execute(
                sa.select(col(SlackEvent.incident_id)).where(col(SlackEvent.event_id) == event_id)
            ).first()
    except IntegrityError:
        raise IncidentNotFound(f"no incident has id {incident_id}") from None
    if bound is None:
        raise SlackEventNotFound(f"no claimed Slack event has id {event_id!r}: claim it first")
    raise SlackEventBound(
        f"the Slack event {event_id!r} already belongs to incident {bound.incident_id}, "
        f"not {incident_id}"
    )


def thread_incident(engine: Engine, channel_id: str, thread_ts: str) -> Incident | None:
    """The newest incident started in that Slack thread; None when there is none.

    Incidents from outside Slack have no channel or thread, so an empty
    `channel_id` or `thread_ts` matches nothing.
    """
    if not (_storable(channel_id, MAX_ID_CHARS) and _storable(thread_ts, MAX_ID_CHARS)):
        return None
    statement = (
        select(Incident)
        .where(col(Incident.channel_id) == channel_id, col(Incident.thread_ts) == thread_ts)
        .order_by(col(Incident.created_at).desc(), col(Incident.id).desc())
        .limit(1)
    )
    with session_scope(engine) as session:
        return session.exec(statement).first()


def record_message(
    engine: Engine,
    *,
    incident_id: int,
    kind: str,
    channel_id: str,
    ts: str,
    proposal_id: int | None = None,
    post_key: str = "",
) -> SlackMessage:
    """Remember a message the bot posted; with a `post_key`, at most one row per key.

    `kind` is progress, diagnosis, proposal or note. Recording a `post_key` that
    is already recorded returns that row as it was first recorded (whatever the
    other arguments say now), unless it belongs to another incident (ValueError).
    A `proposal_id` must be a proposal of `incident_id`. Raises `IncidentNotFound`
    or `ProposalNotFound` for unknown ids.
    """
    message_kind = _message_kind(kind)
    channel_id = checked_text("channel_id", channel_id, limit=MAX_ID_CHARS, required=True)
    ts = checked_text("ts", ts, limit=MAX_ID_CHARS, required=True)
    post_key = checked_text("post_key", post_key, limit=SLACK_KEY_LENGTH)
    row = SlackMessage(
        incident_id=incident_id,
        proposal_id=proposal_id,
        kind=message_kind,
        channel_id=channel_id,
        ts=ts,
        post_key=post_key,
    )
    try:
        with session_scope(engine) as session:
            session.add(row)
            session.flush()
            if proposal_id is not None:
                _check_proposal_of(session, proposal_id, incident_id)
        return row
    except IntegrityError as exc:
        if post_key and _unique_violation(exc):
            existing = _message_by_key(engine, post_key)
            if existing is not None:
                if existing.incident_id != incident_id:
                    raise ValueError(
                        f"the post key {post_key!r} is already recorded for incident "
                        f"{existing.incident_id}, not {incident_id}"
                    ) from None
                return existing
        missing = _missing_parent(engine, incident_id, proposal_id)
        if missing is None:
            raise
        raise missing from None


def proposal_message(engine: Engine, proposal_id: int) -> SlackMessage | None:
    """The newest proposal message (the one with the buttons) of a proposal; None if none."""
    statement = (
        select(SlackMessage)
        .where(
            col(SlackMessage.proposal_id) == proposal_id,
            col(SlackMessage.kind) == SlackMessageKind.PROPOSAL,
        )
        .order_by(col(SlackMessage.id).desc())
        .limit(1)
    )
    with session_scope(engine) as session:
        return session.exec(statement).first()


def pending_proposal_messages(engine: Engine) -> list[tuple[Proposal, SlackMessage]]:
    """Proposals still waiting (PENDING or APPROVED) with their newest proposal message, oldest
    proposal first; proposals without a message (CLI, lab) are left out."""
    return _proposals_with_messages(engine, WAITING_STATES, only_unfinal=False)


def settled_proposal_messages(engine: Engine) -> list[tuple[Proposal, SlackMessage]]:
    """Proposals in an end state (DONE, FAILED, REJECTED, EXPIRED, STALE) whose newest
    proposal message is not final yet, oldest proposal first: what an expiry sweep edits.

    Claim each with `mark_message_final` before editing it, so that one replica does.
    """
    return _proposals_with_messages(engine, END_STATES, only_unfinal=True)


def mark_message_final(engine: Engine, message_id: int) -> bool:
    """Mark a message as showing its final state; True for the one caller that did it first.

    False when it was already final or does not exist.
    """
    statement = (
        sa.update(SlackMessage)
        .where(col(SlackMessage.id) == message_id, col(SlackMessage.final).is_(False))
        .values(final=True, updated_at=utcnow())
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount == 1


def mark_interrupted(engine: Engine, incident_id: int, reason: str) -> bool:
    """OPEN or INVESTIGATING → INTERRUPTED, with an Outcome (source "bot") holding `reason`.

    True for the one caller that moved it; False when the incident is in any
    other state or does not exist (nothing is written then).
    """
    reason = checked_text("reason", reason, limit=MAX_NOTE_CHARS)
    now = utcnow()
    statement = (
        sa.update(Incident)
        .where(col(Incident.id) == incident_id, col(Incident.status).in_(INTERRUPTIBLE))
        .values(status=IncidentStatus.INTERRUPTED, updated_at=now)
    )
    outcome = Outcome(incident_id=incident_id, resolved=False, notes=reason, source="bot")
    return _set_status_with_outcome(engine, statement, outcome)


def record_label(
    engine: Engine,
    incident_id: int,
    *,
    by: str,
    source: str,
    correct: bool | None,
    root_cause: Mapping[str, str] | None,
    notes: str = "",
) -> Outcome:
    """Record a person's verdict on an incident's diagnosis as a new Outcome row.

    `correct` says whether the diagnosis was right (None: not said); `root_cause`
    holds any of component, system_level, fault_type (strings of at most 200
    characters; the vocabularies are the agents' to check); `source` is one of
    OUTCOME_SOURCES. A label says nothing about resolution: `resolved` is False.
    Raises ValueError for a malformed label, `IncidentNotFound` for an unknown id.
    """
    by = checked_text("by", by, limit=MAX_ID_CHARS, required=True)
    if source not in OUTCOME_SOURCES:
        raise ValueError(f"unknown outcome source {source!r}: use one of {sorted(OUTCOME_SOURCES)}")
    if correct is not None and not isinstance(correct, bool):
        raise ValueError(f"correct must be True, False or None, not {correct!r}")
    notes = checked_text("notes", notes, limit=MAX_NOTE_CHARS)
    row = Outcome(
        incident_id=incident_id,
        resolved=False,
        correct=correct,
        root_cause=_root_cause(root_cause),
        notes=notes,
        source=source,
        labelled_by=by,
    )
    try:
        with session_scope(engine) as session:
            session.add(row)
    except IntegrityError:
        if _exists(engine, Incident, incident_id):
            raise
        raise IncidentNotFound(f"no incident has id {incident_id}") from None
    return row


def close_incident(engine: Engine, incident_id: int, *, by: str, cause: str) -> bool:
    """Any status but CLOSED → CLOSED (closed_at now), with a resolved Outcome holding `cause`.

    The Outcome's source is "slack_resolved" and labelled_by is `by`. True for the
    one caller that closed it; False when it was closed already or does not exist.
    """
    by = checked_text("by", by, limit=MAX_ID_CHARS, required=True)
    cause = checked_text("cause", cause, limit=MAX_NOTE_CHARS)
    now = utcnow()
    statement = (
        sa.update(Incident)
        .where(col(Incident.id) == incident_id, col(Incident.status) != IncidentStatus.CLOSED)
        .values(status=IncidentStatus.CLOSED, closed_at=now, updated_at=now)
    )
    outcome = Outcome(
        incident_id=incident_id,
        resolved=True,
        notes=cause,
        source="slack_resolved",
        labelled_by=by,
    )
    return _set_status_with_outcome(engine, statement, outcome)


def prune_events(engine: Engine, *, before: datetime) -> int:
    """Forget claimed events received before `before`; returns how many.

    Slack stops redelivering an event within the hour, so keeping a day is plenty.
    `before` is an aware datetime (ValueError otherwise).
    """
    if before.tzinfo is None:
        raise ValueError(f"naive datetime {before!r}: pass an aware UTC datetime")
    statement = sa.delete(SlackEvent).where(col(SlackEvent.received_at) < before)
    with engine.begin() as connection:
        return connection.execute(statement).rowcount


def _set_status_with_outcome(engine: Engine, statement: sa.Update, outcome: Outcome) -> bool:
    # The compare-and-set first (it takes the lock), then the winner's Outcome, one transaction.
    with session_scope(engine) as session:
        result = session.exec(statement, execution_options={"synchronize_session": False})
        if result.rowcount != 1:
            return False
        session.add(outcome)
    return True


def _proposals_with_messages(
    engine: Engine, states: Collection[ProposalState], *, only_unfinal: bool
) -> list[tuple[Proposal, SlackMessage]]:
    statement = (
        select(Proposal, SlackMessage)
        .join(SlackMessage, col(SlackMessage.proposal_id) == col(Proposal.id))
        .where(
            col(Proposal.state).in_(list(states)),
            col(SlackMessage.kind) == SlackMessageKind.PROPOSAL,
        )
        .order_by(col(Proposal.created_at), col(Proposal.id), col(SlackMessage.id))
    )
    if only_unfinal:
        # Only proposals with a message still to finalise: the sweep's work, not history.
        unfinal = select(col(SlackMessage.proposal_id)).where(
            col(SlackMessage.final).is_(False),
            col(SlackMessage.kind) == SlackMessageKind.PROPOSAL,
            col(SlackMessage.proposal_id).is_not(None),
        )
        statement = statement.where(col(Proposal.id).in_(unfinal))
    with session_scope(engine) as session:
        rows = session.exec(statement).all()
    newest: dict[int, tuple[Proposal, SlackMessage]] = {}
    for proposal, message in rows:  # ordered by message id: the last one per proposal wins
        assert proposal.id is not None
        newest[proposal.id] = (proposal, message)
    pairs = list(newest.values())  # insertion order: the proposals' order
    if only_unfinal:
        pairs = [(proposal, message) for proposal, message in pairs if not message.final]
    return pairs


def _check_proposal_of(session: Session, proposal_id: int, incident_id: int) -> None:
    owner = session.exec(
        select(col(Proposal.incident_id)).where(col(Proposal.id) == proposal_id)
    ).first()
    if owner is not None and owner != incident_id:
        raise ValueError(
            f"proposal {proposal_id} belongs to incident {owner}, not {incident_id}: "
            "record its message under that incident"
        )


def _message_by_key(engine: Engine, post_key: str) -> SlackMessage | None:
    with session_scope(engine) as session:
        return session.exec(
            select(SlackMessage).where(col(SlackMessage.post_key) == post_key)
        ).first()


def _missing_parent(engine: Engine, incident_id: int, proposal_id: int | None) -> StoreError | None:
    if not _exists(engine, Incident, incident_id):
        return IncidentNotFound(f"no incident has id {incident_id}")
    if proposal_id is not None and not _exists(engine, Proposal, proposal_id):
        return ProposalNotFound(f"no proposal has id {proposal_id}")
    return None


def _exists(engine: Engine, table: type[Incident] | type[Proposal], row_id: int) -> bool:
    with engine.connect() as connection:
        found = connection.execute(sa.select(col(table.id)).where(col(table.id) == row_id))
        return found.first() is not None


def _unique_violation(exc: IntegrityError) -> bool:
    original = exc.orig
    if isinstance(original, sqlite3.IntegrityError):
        code = getattr(original, "sqlite_errorcode", None)
        return code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY)
    if isinstance(original, psycopg.Error):
        return original.sqlstate == "23505"
    return False


def _message_kind(kind: str) -> SlackMessageKind:
    try:
        return SlackMessageKind(kind)
    except ValueError:
        choices = ", ".join(member.value for member in SlackMessageKind)
        raise ValueError(f"unknown message kind {kind!r}: use one of {choices}") from None


def _root_cause(root_cause: Mapping[str, Any] | None) -> dict[str, str] | None:
    if root_cause is None:
        return None
    if not isinstance(root_cause, Mapping):
        raise ValueError(f"root_cause must be a mapping or None, not {type(root_cause).__name__}")
    unknown = sorted(str(key) for key in root_cause if key not in ROOT_CAUSE_KEYS)
    if unknown:
        raise ValueError(
            f"root_cause has unknown key(s) {', '.join(unknown)}: use {sorted(ROOT_CAUSE_KEYS)}"
        )
    label = {
        key: checked_text(f"root_cause[{key!r}]", value, limit=MAX_LABEL_CHARS)
        for key, value in root_cause.items()
    }
    return label or None


def checked_text(name: str, value: object, *, limit: int, required: bool = False) -> str:
    """`value` if it is a string the store can keep, else a ValueError saying why not."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if required and not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; the store keeps at most {limit}")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which the database cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode text (it has a lone surrogate)") from None
    return value


def _storable(value: object, limit: int) -> bool:
    try:
        return bool(checked_text("value", value, limit=limit, required=True))
    except ValueError:
        return False


__all__ = [
    "END_STATES",
    "OUTCOME_SOURCES",
    "ROOT_CAUSE_KEYS",
    "WAITING_STATES",
    "IncidentNotFound",
    "SlackEventBound",
    "SlackEventNotFound",
    "bind_event",
    "claim_event",
    "close_incident",
    "mark_interrupted",
    "mark_message_final",
    "pending_proposal_messages",
    "proposal_message",
    "prune_events",
    "record_label",
    "record_message",
    "settled_proposal_messages",
    "thread_incident",
]
