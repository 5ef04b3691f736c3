"""Atomic state changes of action proposals: the guarantee that nothing runs twice.

Slack does not de-duplicate button clicks and the bot may run as several
replicas, so "read the state, check it, write the new one" would let two
clicks both approve and both execute. Every change here is instead a single
compare-and-set statement::

    UPDATE proposals SET state = :to, version = version + 1, ...
    WHERE id = :id AND state = :from

The database applies it atomically; exactly one caller sees one row changed and
wins, everyone else sees zero and must stop. On SQLite the statement is the
first of its transaction (writers queue on the file lock, then re-check the
WHERE clause); on PostgreSQL the row lock makes the loser re-check after the
winner commits.

States::

    PENDING ─approve─▶ APPROVED ─claim_for_execution─▶ EXECUTING ─finish─▶ DONE | FAILED
       │ reject ▶ REJECTED      │
       │ expire ▶ EXPIRED       │
       └─ mark_stale ▶ STALE ◀──┘

Example::

    if approve(engine, proposal_id, approver="U123") and claim_for_execution(engine, proposal_id):
        run_the_action()
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from store.errors import IllegalTransition
from store.models import Proposal, ProposalState
from store.types import utcnow

Target = Engine | Session

LEGAL_TRANSITIONS: dict[ProposalState, frozenset[ProposalState]] = {
    ProposalState.PENDING: frozenset(
        {
            ProposalState.APPROVED,
            ProposalState.REJECTED,
            ProposalState.EXPIRED,
            ProposalState.STALE,
        }
    ),
    # An approval that outlived the proposal's expiry before anyone ran it.
    ProposalState.APPROVED: frozenset(
        {ProposalState.EXECUTING, ProposalState.STALE, ProposalState.EXPIRED}
    ),
    ProposalState.EXECUTING: frozenset({ProposalState.DONE, ProposalState.FAILED}),
}

# Columns a transition may never set directly: identity, the state machine itself,
# and the row's history.
_PROTECTED_FIELDS = frozenset({"id", "incident_id", "state", "version", "created_at"})
_PROPOSAL_FIELDS = frozenset(Proposal.model_fields)


def check_transition(from_state: ProposalState, to_state: ProposalState) -> None:
    """Raise IllegalTransition unless the state machine allows `from_state` → `to_state`."""
    allowed = LEGAL_TRANSITIONS.get(from_state, frozenset())
    if to_state not in allowed:
        choices = ", ".join(sorted(allowed)) or "nothing (it is final)"
        raise IllegalTransition(
            f"a proposal cannot go from {from_state} to {to_state}; from {from_state} it may "
            f"go to {choices}"
        )


def transition(
    target: Target,
    proposal_id: int,
    *,
    from_state: ProposalState,
    to_state: ProposalState,
    **fields: Any,
) -> bool:
    """Move one proposal from `from_state` to `to_state` in one statement; True if we won.

    `fields` are other proposal columns to set in the same statement (approver,
    decided_at, result...). False means the proposal was not in `from_state`
    (someone else moved it first, or it does not exist). With a Session the
    change joins the session's transaction and the caller commits; with an
    Engine it commits at once. Objects already loaded in a session are not
    refreshed.
    """
    return _compare_and_set(
        target, proposal_id, from_states=(from_state,), to_state=to_state, **fields
    )


def approve(
    target: Target, proposal_id: int, *, approver: str, now: datetime | None = None
) -> bool:
    """PENDING → APPROVED by `approver`, only while the proposal has not expired."""
    now = now or utcnow()
    return _compare_and_set(
        target,
        proposal_id,
        from_states=(ProposalState.PENDING,),
        to_state=ProposalState.APPROVED,
        extra_where=col(Proposal.expires_at) > now,
        approver=approver,
        decided_at=now,
    )


def reject(
    target: Target,
    proposal_id: int,
    *,
    approver: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """PENDING → REJECTED by `approver` (the person who decided), with an optional reason."""
    now = now or utcnow()
    return transition(
        target,
        proposal_id,
        from_state=ProposalState.PENDING,
        to_state=ProposalState.REJECTED,
        approver=approver,
        decided_at=now,
        finished_at=now,
        result={"reason": reason} if reason else None,
    )


def claim_for_execution(target: Target, proposal_id: int) -> bool:
    """APPROVED → EXECUTING: the one caller that gets True runs the action."""
    return transition(
        target,
        proposal_id,
        from_state=ProposalState.APPROVED,
        to_state=ProposalState.EXECUTING,
    )


def finish(
    target: Target,
    proposal_id: int,
    *,
    succeeded: bool,
    result: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """EXECUTING → DONE (or FAILED when `succeeded` is False), recording the result."""
    return transition(
        target,
        proposal_id,
        from_state=ProposalState.EXECUTING,
        to_state=ProposalState.DONE if succeeded else ProposalState.FAILED,
        result=result,
        finished_at=now or utcnow(),
    )


def mark_stale(
    target: Target,
    proposal_id: int,
    *,
    observed_resource_version: str | None = None,
    now: datetime | None = None,
) -> bool:
    """PENDING or APPROVED → STALE: the target changed since the proposal was made."""
    return _compare_and_set(
        target,
        proposal_id,
        from_states=(ProposalState.PENDING, ProposalState.APPROVED),
        to_state=ProposalState.STALE,
        finished_at=now or utcnow(),
        result={"observed_resource_version": observed_resource_version},
    )


def expire(target: Target, *, now: datetime | None = None) -> int:
    """Every PENDING proposal past its expires_at → EXPIRED, in one statement; returns how many."""
    now = now or utcnow()
    statement = (
        sa.update(Proposal)
        .where(
            col(Proposal.state) == ProposalState.PENDING,
            col(Proposal.expires_at) <= now,
        )
        .values(state=ProposalState.EXPIRED, version=Proposal.version + 1, finished_at=now)
    )
    return _execute(target, statement)


def _compare_and_set(
    target: Target,
    proposal_id: int,
    *,
    from_states: Collection[ProposalState],
    to_state: ProposalState,
    extra_where: sa.ColumnElement[bool] | None = None,
    **fields: Any,
) -> bool:
    for from_state in from_states:
        check_transition(from_state, to_state)
    _check_fields(fields)
    conditions: list[sa.ColumnElement[bool]] = [
        col(Proposal.id) == proposal_id,
        col(Proposal.state).in_(list(from_states)),
    ]
    if extra_where is not None:
        conditions.append(extra_where)
    statement = (
        sa.update(Proposal)
        .where(*conditions)
        .values(state=to_state, version=Proposal.version + 1, **fields)
    )
    return _execute(target, statement) == 1


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - _PROPOSAL_FIELDS)
    protected = sorted(set(fields) & _PROTECTED_FIELDS)
    if unknown:
        raise TypeError(f"proposals have no column(s) {', '.join(unknown)}")
    if protected:
        raise TypeError(f"a transition may not set {', '.join(protected)} directly")


def _execute(target: Target, statement: sa.Update) -> int:
    if isinstance(target, Engine):
        with target.begin() as connection:
            return connection.execute(statement).rowcount
    result = target.exec(statement, execution_options={"synchronize_session": False})
    return result.rowcount
