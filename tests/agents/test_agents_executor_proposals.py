"""Proposal handling against a real SQLite store: only APPROVED, fresh, allowed proposals run.

No cluster here: every refusal below happens before the Executor would touch one
(the API client points at a closed port, so an attempt to act would fail loudly).
The lab-backed tests run the same paths against a real apiserver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from kubernetes import client

from agents.executor import ActionError, action_to_json, authorize, execute, propose
from agents.executor.actions import RolloutRestart
from agents.executor.proposals import fingerprint
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.models import Incident, Proposal, ProposalState
from store.proposals import approve, claim_for_execution, reject
from store.types import utcnow

SPEC = RolloutRestart(namespace="shop", name="cart")


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[sa.Engine]:
    upgrade(sqlite_url)
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def nowhere() -> client.ApiClient:
    """A client for a cluster that is not there: any request is refused at once."""
    config = client.Configuration(host="https://127.0.0.1:9")
    config.retries = 0
    return client.ApiClient(config)


def _row(
    engine: sa.Engine, *, spec: dict[str, Any] | None = None, expires_in_s: float = 600
) -> int:
    with session_scope(engine) as session:
        incident = Incident(question="cart is down")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        proposal = Proposal(
            incident_id=incident.id,
            action="rollout_restart",
            action_spec=spec or action_to_json(SPEC),
            target_kind="Deployment",
            target_namespace="shop",
            target_name="cart",
            target_resource_version="42",
            requester="aoi",
            expires_at=utcnow() + timedelta(seconds=expires_in_s),
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        return proposal.id


def _state(engine: sa.Engine, proposal_id: int) -> tuple[ProposalState, dict[str, Any] | None]:
    with session_scope(engine) as session:
        found = session.get(Proposal, proposal_id)
        assert found is not None
        return found.state, found.result


async def test_propose_needs_a_readable_target(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    with pytest.raises(ActionError, match="cannot read Deployment shop/cart"):
        await propose(engine, 1, SPEC, requester="aoi", ttl_s=60, api=nowhere)
    with session_scope(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Proposal)) == 0


async def test_propose_refuses_denylisted_actions(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    spec = RolloutRestart(namespace="kube-system", name="coredns")
    with pytest.raises(ActionError) as info:
        await propose(engine, 1, spec, requester="aoi", ttl_s=60, api=nowhere)
    assert info.value.denied


async def test_unapproved_proposals_never_run(engine: sa.Engine, nowhere: client.ApiClient) -> None:
    pid = _row(engine)
    result = await execute(engine, pid, nowhere)
    assert not result.ran
    assert "not been approved" in result.message
    assert _state(engine, pid)[0] is ProposalState.PENDING


async def test_pending_past_expiry_becomes_expired(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine, expires_in_s=-1)
    result = await execute(engine, pid, nowhere)
    assert (result.ran, result.state) == (False, ProposalState.EXPIRED)


async def test_rejected_and_missing_proposals_are_refused(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert reject(engine, pid, approver="U1", reason="not now")
    result = await execute(engine, pid, nowhere)
    assert (result.ran, result.state) == (False, ProposalState.REJECTED)
    assert (await execute(engine, 999, nowhere)).state is None


async def test_an_approval_that_outlived_the_offer_runs_nothing(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine, expires_in_s=0.3)
    assert approve(engine, pid, approver="U1")
    await asyncio.sleep(0.4)
    result = await execute(engine, pid, nowhere)
    state, stored = _state(engine, pid)
    assert (result.ran, state) == (False, ProposalState.EXPIRED)
    assert stored is not None
    assert "expired" in stored["message"]


async def test_denylist_holds_for_approved_but_tampered_rows(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    tampered = {"action": "rollout_restart", "namespace": "aoi-system", "name": "aoi-bot"}
    pid = _row(engine, spec=tampered)
    assert approve(engine, pid, approver="U1")
    result = await execute(engine, pid, nowhere)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "denylist" in result.message


async def test_an_unreadable_cluster_leaves_the_approval_in_place(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert approve(engine, pid, approver="U1")
    result = await execute(engine, pid, nowhere)
    assert not result.ran
    assert "try again" in result.message
    assert _state(engine, pid)[0] is ProposalState.APPROVED


async def test_a_proposal_claimed_elsewhere_or_finished_never_runs_twice(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert approve(engine, pid, approver="U1")
    assert claim_for_execution(engine, pid)
    result = await execute(engine, pid, nowhere)
    assert (result.ran, result.state) == (False, ProposalState.EXECUTING)


async def test_garbage_specs_are_refused(engine: sa.Engine, nowhere: client.ApiClient) -> None:
    pid = _row(engine, spec={"action": "reboot", "namespace": "shop", "name": "cart"})
    assert approve(engine, pid, approver="U1")
    result = await execute(engine, pid, nowhere)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)


def test_only_allowlisted_people_approve() -> None:
    assert authorize("U1", ["U1", "U2"])
    assert not authorize("U3", ["U1", "U2"])
    assert not authorize("", [""])
    assert not authorize("U1", [])


def _deployment(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "100",
            "labels": {"app": "geo"},
            "annotations": {"deployment.kubernetes.io/revision": "2"},
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "geo"}]}}},
        "status": {"replicas": 1, "unavailableReplicas": 1},
    }
    for path, value in changes.items():
        node = obj
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return obj


def test_the_fingerprint_ignores_status_and_bookkeeping() -> None:
    base = fingerprint(_deployment())
    assert base.startswith("sha256:")
    for path, value in [
        ("metadata.resourceVersion", "101"),
        ("metadata.managedFields", []),
        ("status.unavailableReplicas", 0),
        ("status.conditions", [{"type": "Available", "status": "False"}]),
    ]:
        assert fingerprint(_deployment(**{path: value})) == base, path


def test_the_fingerprint_changes_with_what_a_human_approved_against() -> None:
    base = fingerprint(_deployment())
    for path, value in [
        ("metadata.uid", "u-2"),  # deleted and recreated under the same name
        ("metadata.generation", 4),
        ("metadata.labels", {"app": "geo", "tier": "db"}),
        ("metadata.annotations", {"aoi.test/touched": "1"}),
        ("spec.replicas", 0),
    ]:
        assert fingerprint(_deployment(**{path: value})) != base, path
    config = {"metadata": {"uid": "c"}, "data": {"k": "v"}}
    assert fingerprint(config) != fingerprint({**config, "data": {"k": "w"}})
