"""Proposal state changes: legal moves win once, illegal moves are refused, expiry sweeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from store.db import session_scope
from store.errors import ApprovalRefused, IllegalTransition
from store.models import Incident, Proposal, ProposalState
from store.policy import ApprovalPolicy
from store.proposals import (
    LEGAL_TRANSITIONS,
    approve,
    claim_for_execution,
    expire,
    finish,
    mark_stale,
    reject,
    transition,
)
from store.types import utcnow

POLICY = ApprovalPolicy(approvers=frozenset({"U2", "U3"}))


def _proposal(engine: sa.Engine, *, ttl: timedelta = timedelta(minutes=15)) -> int:
    with session_scope(engine) as session:
        incident = Incident(question="user-service is down")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        proposal = Proposal(
            incident_id=incident.id,
            action="scale_deployment",
            action_spec={"namespace": "social", "name": "user-service", "replicas": 1},
            target_kind="Deployment",
            target_namespace="social",
            target_name="user-service",
            target_resource_version="4711",
            requester="U1",
            expires_at=utcnow() + ttl,
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        return proposal.id


def _load(engine: sa.Engine, proposal_id: int) -> Proposal:
    with session_scope(engine) as session:
        proposal = session.get(Proposal, proposal_id)
        assert proposal is not None
        return proposal


def test_happy_path_approve_claim_finish(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    assert approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    assert claim_for_execution(migrated_engine, proposal_id)
    assert finish(migrated_engine, proposal_id, succeeded=True, result={"replicas": 1})
    proposal = _load(migrated_engine, proposal_id)
    assert proposal.state is ProposalState.DONE
    assert proposal.approver == "U2"
    assert proposal.version == 3
    assert proposal.result == {"replicas": 1}
    assert proposal.decided_at is not None
    assert proposal.finished_at is not None
    assert proposal.decided_at <= proposal.finished_at


def test_second_approval_and_second_claim_lose(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    assert approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    assert not approve(migrated_engine, proposal_id, approver="U3", policy=POLICY)
    assert claim_for_execution(migrated_engine, proposal_id)
    assert not claim_for_execution(migrated_engine, proposal_id)
    proposal = _load(migrated_engine, proposal_id)
    assert (proposal.approver, proposal.version) == ("U2", 2)


def test_failed_execution_is_recorded(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    claim_for_execution(migrated_engine, proposal_id)
    assert finish(migrated_engine, proposal_id, succeeded=False, result={"error": "forbidden"})
    assert _load(migrated_engine, proposal_id).state is ProposalState.FAILED


def test_cannot_claim_before_approval(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    assert not claim_for_execution(migrated_engine, proposal_id)
    assert _load(migrated_engine, proposal_id).state is ProposalState.PENDING


def test_rejected_proposal_cannot_be_approved(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    assert reject(migrated_engine, proposal_id, approver="U2", reason="wrong service")
    assert not approve(migrated_engine, proposal_id, approver="U3", policy=POLICY)
    proposal = _load(migrated_engine, proposal_id)
    assert proposal.state is ProposalState.REJECTED
    assert proposal.result == {"reason": "wrong service"}


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (ProposalState.PENDING, ProposalState.EXECUTING),
        (ProposalState.PENDING, ProposalState.DONE),
        (ProposalState.APPROVED, ProposalState.PENDING),
        (ProposalState.EXECUTING, ProposalState.APPROVED),
        (ProposalState.DONE, ProposalState.EXECUTING),
        (ProposalState.REJECTED, ProposalState.APPROVED),
        (ProposalState.EXPIRED, ProposalState.APPROVED),
        (ProposalState.STALE, ProposalState.APPROVED),
    ],
)
def test_illegal_transitions_are_refused(
    migrated_engine: sa.Engine, from_state: ProposalState, to_state: ProposalState
) -> None:
    proposal_id = _proposal(migrated_engine)
    with pytest.raises(IllegalTransition, match=f"from {from_state} to {to_state}"):
        transition(migrated_engine, proposal_id, from_state=from_state, to_state=to_state)
    assert _load(migrated_engine, proposal_id).version == 0


def test_every_final_state_has_no_way_out() -> None:
    finals = set(ProposalState) - set(LEGAL_TRANSITIONS)
    assert finals == {
        ProposalState.DONE,
        ProposalState.FAILED,
        ProposalState.REJECTED,
        ProposalState.EXPIRED,
        ProposalState.STALE,
    }


def test_transition_refuses_protected_and_unknown_fields(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    pending, approved = ProposalState.PENDING, ProposalState.APPROVED
    with pytest.raises(TypeError, match="version"):
        transition(migrated_engine, proposal_id, from_state=pending, to_state=approved, version=9)
    with pytest.raises(TypeError, match="colour"):
        transition(migrated_engine, proposal_id, from_state=pending, to_state=approved, colour=1)


def test_unknown_proposal_is_not_won(migrated_engine: sa.Engine) -> None:
    assert not approve(migrated_engine, 987654, approver="U2", policy=POLICY)


def test_transition_inside_a_session_commits_with_it(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    with pytest.raises(RuntimeError, match="before commit"):
        _approve_then_fail(migrated_engine, proposal_id)
    assert _load(migrated_engine, proposal_id).state is ProposalState.PENDING
    with session_scope(migrated_engine) as session:
        assert approve(session, proposal_id, approver="U2", policy=POLICY)
    assert _load(migrated_engine, proposal_id).state is ProposalState.APPROVED


def _approve_then_fail(engine: sa.Engine, proposal_id: int) -> None:
    with session_scope(engine) as session:
        assert approve(session, proposal_id, approver="U2", policy=POLICY)
        raise RuntimeError("the caller failed before commit")


def test_expired_proposal_cannot_be_approved(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine, ttl=timedelta(seconds=-1))
    assert not approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    assert _load(migrated_engine, proposal_id).state is ProposalState.PENDING


def test_expire_sweeps_only_overdue_pending_proposals(migrated_engine: sa.Engine) -> None:
    overdue = _proposal(migrated_engine, ttl=timedelta(seconds=-5))
    also_overdue = _proposal(migrated_engine, ttl=timedelta(seconds=-1))
    fresh = _proposal(migrated_engine, ttl=timedelta(minutes=5))
    approved_then_due = _proposal(migrated_engine, ttl=timedelta(minutes=5))
    approve(migrated_engine, approved_then_due, approver="U2", policy=POLICY)

    assert expire(migrated_engine) == 2
    assert expire(migrated_engine) == 0
    assert _load(migrated_engine, overdue).state is ProposalState.EXPIRED
    assert _load(migrated_engine, also_overdue).state is ProposalState.EXPIRED
    assert _load(migrated_engine, fresh).state is ProposalState.PENDING
    assert _load(migrated_engine, approved_then_due).state is ProposalState.APPROVED

    assert expire(migrated_engine, now=utcnow() + timedelta(minutes=10)) == 1
    assert _load(migrated_engine, fresh).state is ProposalState.EXPIRED
    assert _load(migrated_engine, approved_then_due).state is ProposalState.APPROVED


@pytest.mark.parametrize("approve_first", [False, True])
def test_stale_target_blocks_execution(migrated_engine: sa.Engine, approve_first: bool) -> None:
    proposal_id = _proposal(migrated_engine)
    if approve_first:
        approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    assert mark_stale(migrated_engine, proposal_id, observed_resource_version="4712")
    assert not claim_for_execution(migrated_engine, proposal_id)
    proposal = _load(migrated_engine, proposal_id)
    assert proposal.state is ProposalState.STALE
    assert proposal.result == {"observed_resource_version": "4712"}


def test_running_action_cannot_turn_stale(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    claim_for_execution(migrated_engine, proposal_id)
    assert not mark_stale(migrated_engine, proposal_id)
    assert _load(migrated_engine, proposal_id).state is ProposalState.EXECUTING


def _set_requester(engine: sa.Engine, proposal_id: int, requester: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(Proposal).where(col(Proposal.id) == proposal_id).values(requester=requester)
        )


def _untouched(engine: sa.Engine, proposal_id: int) -> None:
    proposal = _load(engine, proposal_id)
    assert (proposal.state, proposal.version, proposal.approver) == (
        ProposalState.PENDING,
        0,
        None,
    )


@pytest.mark.parametrize("approver", ["U9", "", "   ", None])
def test_an_approver_outside_the_policy_is_refused(
    migrated_engine: sa.Engine, approver: str | None
) -> None:
    proposal_id = _proposal(migrated_engine)
    with pytest.raises(ApprovalRefused, match="not approved"):
        approve(migrated_engine, proposal_id, approver=approver, policy=POLICY)
    _untouched(migrated_engine, proposal_id)


def test_nobody_approves_under_an_empty_policy(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    empty = ApprovalPolicy(approvers=frozenset({"", " "}))
    with pytest.raises(ApprovalRefused, match="U2 is not an approver"):
        approve(migrated_engine, proposal_id, approver="U2", policy=empty)
    _untouched(migrated_engine, proposal_id)


def test_the_requester_cannot_approve_their_own_proposal(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)  # requested by U1
    policy = ApprovalPolicy(approvers=frozenset({"U1", "U2"}))
    with pytest.raises(ApprovalRefused, match="asked for this action"):
        approve(migrated_engine, proposal_id, approver="U1", policy=policy)
    _untouched(migrated_engine, proposal_id)
    allowed = ApprovalPolicy(approvers=frozenset({"U1"}), allow_self_approval=True)
    assert approve(migrated_engine, proposal_id, approver="U1", policy=allowed)
    assert _load(migrated_engine, proposal_id).approval == {"via": "approvers", "automatic": False}


def test_self_approval_is_part_of_the_compare_and_set(migrated_engine: sa.Engine) -> None:
    # The statement compares the row's own requester, not one read before it: a
    # requester changed by another writer in the meantime still counts.
    proposal_id = _proposal(migrated_engine)
    _set_requester(migrated_engine, proposal_id, "U2")
    with pytest.raises(ApprovalRefused, match="U2 asked for this action"):
        approve(migrated_engine, proposal_id, approver="U2", policy=POLICY)
    _untouched(migrated_engine, proposal_id)


def test_a_group_member_approves_and_the_group_is_recorded(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    policy = ApprovalPolicy(approvers=frozenset(), groups=frozenset({"S0SRE"}))
    with pytest.raises(ApprovalRefused):
        approve(migrated_engine, proposal_id, approver="U7", policy=policy)
    groups = frozenset({"S0SRE", "S0DEV"})
    assert approve(
        migrated_engine, proposal_id, approver="U7", policy=policy, approver_groups=groups
    )
    proposal = _load(migrated_engine, proposal_id)
    assert (proposal.approver, proposal.approval) == (
        "U7",
        {"via": "group:S0SRE", "automatic": False},
    )


def test_automatic_approval_covers_restorations_only(migrated_engine: sa.Engine) -> None:
    new_value = _proposal(migrated_engine)
    with pytest.raises(ApprovalRefused, match="restorations only"):
        approve(migrated_engine, new_value, approver="U2", policy=POLICY, automatic=True)
    _untouched(migrated_engine, new_value)
    restoration = _proposal(migrated_engine)
    with migrated_engine.begin() as connection:
        connection.execute(
            sa.update(Proposal).where(col(Proposal.id) == restoration).values(restores_only=True)
        )
    assert approve(migrated_engine, restoration, approver="U2", policy=POLICY, automatic=True)
    assert _load(migrated_engine, restoration).approval == {"via": "approvers", "automatic": True}


def test_approved_is_reached_only_through_approve(migrated_engine: sa.Engine) -> None:
    proposal_id = _proposal(migrated_engine)
    pending, approved = ProposalState.PENDING, ProposalState.APPROVED
    with pytest.raises(IllegalTransition, match=r"only through store\.proposals\.approve"):
        transition(migrated_engine, proposal_id, from_state=pending, to_state=approved)
    with pytest.raises(TypeError, match="approval"):
        transition(
            migrated_engine,
            proposal_id,
            from_state=pending,
            to_state=ProposalState.REJECTED,
            approval={"via": "approvers"},
        )
    _untouched(migrated_engine, proposal_id)
