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

Moving to APPROVED is only ever `approve`, which applies an `ApprovalPolicy` in
the same statement: an approver outside the policy, or an empty one, is refused
before it; the requester approving their own proposal (self-approval off) and an
automatic approval of anything but restorations are conditions of the WHERE
clause itself, so no concurrent path can slip between a check and the write.

Example::

    policy = ApprovalPolicy(approvers=frozenset({"U123"}))
    if approve(engine, proposal_id, approver="U123", policy=policy) and claim_for_execution(
        engine, proposal_id
    ):
        run_the_action()
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from store.errors import ApprovalRefused, IllegalTransition
from store.models import Proposal, ProposalState
from store.policy import ApprovalPolicy
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
_PROTECTED_FIELDS = frozenset(
    {"id", "incident_id", "state", "version", "created_at", "approval", "restores_only"}
)
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
    refreshed. APPROVED is reached only through `approve`, which applies the policy.
    """
    _check_fields(fields)
    check_transition(from_state, to_state)
    if to_state is ProposalState.APPROVED:
        raise IllegalTransition(
            "a proposal becomes APPROVED only through store.proposals.approve, which applies "
            "the approval policy"
        )
    return _compare_and_set(
        target, proposal_id, from_states=(from_state,), to_state=to_state, **fields
    )


def approve(
    target: Target,
    proposal_id: int,
    *,
    approver: str | None,
    policy: ApprovalPolicy,
    approver_groups: frozenset[str] = frozenset(),
    automatic: bool = False,
    now: datetime | None = None,
) -> bool:
    """PENDING → APPROVED by `approver` if `policy` admits them, while the proposal is unexpired.

    `approver_groups` are the groups the front end resolved for the approver;
    `automatic` marks an approval no person gave (`--yes`, a benchmark), which
    may only approve a proposal that restores values. Raises `ApprovalRefused`
    (nothing changed) when the policy refuses; returns False when the proposal
    is not PENDING any more, has expired, or does not exist.
    """
    now = now or utcnow()
    groups = frozenset(approver_groups)
    # Who the approver is; whether they are also the requester is the statement's to check.
    refusal = policy.authorises(approver, requester="", approver_groups=groups)
    if refusal is not None or approver is None:
        raise ApprovalRefused(f"proposal {proposal_id} not approved: {refusal}")
    conditions = [col(Proposal.expires_at) > now]
    if not policy.allow_self_approval:
        conditions.append(col(Proposal.requester) != approver)
    if automatic:
        conditions.append(col(Proposal.restores_only).is_(True))
    won = _compare_and_set(
        target,
        proposal_id,
        from_states=(ProposalState.PENDING,),
        to_state=ProposalState.APPROVED,
        extra_where=sa.and_(*conditions),
        approver=approver,
        approval={"via": policy.admitted_by(approver, groups), "automatic": automatic},
        decided_at=now,
        _approving=True,
    )
    if not won:
        _explain_lost_approval(target, proposal_id, approver, policy, automatic=automatic, now=now)
    return won


def _explain_lost_approval(
    target: Target,
    proposal_id: int,
    approver: str,
    policy: ApprovalPolicy,
    *,
    automatic: bool,
    now: datetime,
) -> None:
    """Raise `ApprovalRefused` when the policy's own conditions, not a race, stopped the write."""
    statement = sa.select(
        col(Proposal.state),
        col(Proposal.requester),
        col(Proposal.expires_at),
        col(Proposal.restores_only),
    ).where(col(Proposal.id) == proposal_id)
    row = _first(target, statement)
    if row is None or row.state is not ProposalState.PENDING or row.expires_at <= now:
        return
    refusal = policy.authorises(approver, requester=row.requester)
    if refusal is None and automatic and not row.restores_only:
        refusal = (
            "an automatic approval covers restorations only, and this proposal sets a new "
            "value: a person must look at its diff and approve it"
        )
    if refusal is not None:
        raise ApprovalRefused(f"proposal {proposal_id} not approved: {refusal}")


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
    _approving: bool = False,
    **fields: Any,
) -> bool:
    for from_state in from_states:
        check_transition(from_state, to_state)
    if not _approving:
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


def _first(target: Target, statement: sa.Executable) -> sa.Row[Any] | None:
    """One row read through the session's own connection (inside its transaction) or a new one."""
    if isinstance(target, Engine):
        with target.connect() as connection:
            return connection.execute(statement).first()
    return target.connection().execute(statement).first()


def _execute(target: Target, statement: sa.Update) -> int:
    if isinstance(target, Engine):
        with target.begin() as connection:
            return connection.execute(statement).rowcount
    result = target.exec(statement, execution_options={"synchronize_session": False})
    return result.rowcount
