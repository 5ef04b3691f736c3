"""The console's approvals: ``--yes`` approves restorations only, through the store's policy.

No cluster: the executor's client points at a closed port, so an approval that got
as far as executing reports that the cluster could not be read ("try again") and
stays APPROVED, while everything the console must not approve stays PENDING,
REJECTED or unapproved. The proposals are real rows in a real SQLite store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from kubernetes import client
from rich.console import Console

from agents.events import ProposalEvent
from agents.executor import DEFAULT_RULES, Provenance
from agents.executor.provenance import Origin, ValueChange
from agents.runtime import ClusterAccess
from aoi.approvals import approval_policy, local_approver
from aoi.console import Approvals, decide
from aoi.settings import Settings
from aoi.wiring import Wiring
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.models import Incident, Proposal, ProposalState
from store.types import utcnow

NEW = ValueChange(
    field="containers[geo].image",
    origin=Origin.NEW,
    source="new value",
    diff=("mongo:4.4.6 -> mongo:9.9",),
)


@pytest.fixture
def wiring(sqlite_url: str) -> Iterator[Wiring]:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    config = client.Configuration(host="https://127.0.0.1:9")
    config.retries = 0
    nowhere = client.ApiClient(config)
    yield Wiring(
        engine=engine, cluster=ClusterAccess(api=nowhere), executor_api=nowhere, cluster_name="x"
    )
    engine.dispose()


def _proposal(wiring: Wiring, provenance: Provenance, *, requester: str = "console") -> int:
    with session_scope(wiring.engine) as session:
        incident = Incident(question="geo is down")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        row = Proposal(
            incident_id=incident.id,
            action="rollout_restart",
            action_spec={"action": "rollout_restart", "namespace": "shop", "name": "geo"},
            target_kind="Deployment",
            target_namespace="shop",
            target_name="geo",
            requester=requester,
            provenance=provenance.to_json(),
            restores_only=provenance.restores_only,
            expires_at=utcnow() + timedelta(minutes=5),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _event(proposal_id: int) -> ProposalEvent:
    return ProposalEvent(
        incident_id=1,
        proposal_id=proposal_id,
        action="rollout_restart",
        target="Deployment/shop/geo",
        expected_effect="fresh pods",
        expires_at=utcnow().isoformat(),
        command="kubectl rollout restart deploy/geo -n shop",
    )


def _approvals(*, automatic: bool, answer: bool | None, asked: list[int]) -> Approvals:
    local = local_approver()

    def ask(event: ProposalEvent, provenance: Provenance) -> bool | None:
        asked.append(event.proposal_id)
        return answer

    settings = Settings(_env_file=None)
    return Approvals(
        ask=ask,
        approver=local,
        policy=approval_policy(settings, local=local),
        rules=DEFAULT_RULES,
        automatic=automatic,
    )


def _row(wiring: Wiring, proposal_id: int) -> Proposal:
    with session_scope(wiring.engine) as session:
        row = session.get(Proposal, proposal_id)
        assert row is not None
        return row


async def test_yes_approves_a_restoration_without_asking(wiring: Wiring) -> None:
    pid = _proposal(wiring, Provenance())
    asked: list[int] = []
    out = StringIO()
    record = await decide(
        _event(pid), wiring, _approvals(automatic=True, answer=None, asked=asked), Console(file=out)
    )
    assert asked == []
    row = _row(wiring, pid)
    assert row.state is ProposalState.APPROVED  # the closed port: execute said "try again"
    assert (row.approver, row.approval) == (
        local_approver(),
        {"via": "approvers", "automatic": True},
    )
    assert "try again" in record["detail"]
    assert "restorations only" in out.getvalue()


async def test_yes_leaves_a_new_value_to_a_person(wiring: Wiring) -> None:
    pid = _proposal(wiring, Provenance(changes=(NEW,)))
    asked: list[int] = []
    out = StringIO()
    record = await decide(
        _event(pid), wiring, _approvals(automatic=True, answer=None, asked=asked), Console(file=out)
    )
    assert asked == [pid]
    assert record["state"] == "PENDING"
    assert _row(wiring, pid).state is ProposalState.PENDING
    assert "mongo:4.4.6 -> mongo:9.9" in out.getvalue()


async def test_a_person_at_the_terminal_may_approve_a_new_value(wiring: Wiring) -> None:
    pid = _proposal(wiring, Provenance(changes=(NEW,)))
    asked: list[int] = []
    approvals = _approvals(automatic=True, answer=True, asked=asked)
    await decide(_event(pid), wiring, approvals, Console(file=StringIO()))
    row = _row(wiring, pid)
    assert asked == [pid]
    assert row.state is ProposalState.APPROVED
    assert row.approval == {"via": "approvers", "automatic": False}


async def test_no_answer_leaves_it_pending_and_no_rejects(wiring: Wiring) -> None:
    waiting, refused = _proposal(wiring, Provenance()), _proposal(wiring, Provenance())
    console = Console(file=StringIO())
    await decide(
        _event(waiting), wiring, _approvals(automatic=False, answer=None, asked=[]), console
    )
    await decide(
        _event(refused), wiring, _approvals(automatic=False, answer=False, asked=[]), console
    )
    assert _row(wiring, waiting).state is ProposalState.PENDING
    assert _row(wiring, refused).state is ProposalState.REJECTED


async def test_the_console_operator_cannot_approve_their_own_request(wiring: Wiring) -> None:
    pid = _proposal(wiring, Provenance(), requester=local_approver())
    out = StringIO()
    record = await decide(
        _event(pid), wiring, _approvals(automatic=True, answer=None, asked=[]), Console(file=out)
    )
    assert record["state"] == "NOT_APPROVED"
    assert "asked for this action" in record["detail"]
    assert _row(wiring, pid).state is ProposalState.PENDING


def test_the_policy_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_APPROVERS", "U012AB3CD")
    monkeypatch.setenv("AOI_APPROVER_GROUPS", "S0SRE1")
    monkeypatch.setenv("AOI_ALLOW_SELF_APPROVAL", "true")
    settings = Settings(_env_file=None)
    policy = approval_policy(settings, local="console:alice")
    assert policy.approvers == frozenset({"U012AB3CD", "console:alice"})
    assert (policy.groups, policy.allow_self_approval) == (frozenset({"S0SRE1"}), True)
    assert approval_policy(settings).approvers == frozenset({"U012AB3CD"})
