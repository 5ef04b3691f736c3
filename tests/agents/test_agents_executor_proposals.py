"""Proposal handling against a real SQLite store: only APPROVED, fresh, allowed proposals run.

No cluster here: every refusal below happens before the Executor would touch one
(the API client points at a closed port, so an attempt to act would fail loudly).
That includes every bad approver, whether the store's approve refused it or a
front end wrote it around the store: ``execute`` asks the policy again.
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
from sqlmodel import col

from agents.executor import ActionError, ActionRules, action_to_json, execute, propose
from agents.executor.actions import PatchConfigMap, RolloutRestart
from agents.executor.proposals import fingerprint
from agents.executor.provenance import KnownGood, Origin, snapshot, trace
from store.db import make_engine, session_scope
from store.errors import ApprovalRefused
from store.migrate import upgrade
from store.models import Incident, Proposal, ProposalState
from store.policy import ApprovalPolicy
from store.proposals import approve, claim_for_execution, reject
from store.types import utcnow

SPEC = RolloutRestart(namespace="shop", name="cart")
POLICY = ApprovalPolicy(approvers=frozenset({"U1"}))


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
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert not result.ran
    assert "not been approved" in result.message
    assert _state(engine, pid)[0] is ProposalState.PENDING


async def test_pending_past_expiry_becomes_expired(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine, expires_in_s=-1)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.EXPIRED)


async def test_rejected_and_missing_proposals_are_refused(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert reject(engine, pid, approver="U1", reason="not now")
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.REJECTED)
    assert (await execute(engine, 999, nowhere, policy=POLICY)).state is None


async def test_an_approval_that_outlived_the_offer_runs_nothing(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine, expires_in_s=0.3)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    await asyncio.sleep(0.4)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    state, stored = _state(engine, pid)
    assert (result.ran, state) == (False, ProposalState.EXPIRED)
    assert stored is not None
    assert "expired" in stored["message"]


async def test_denylist_holds_for_approved_but_tampered_rows(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    tampered = {"action": "rollout_restart", "namespace": "aoi-system", "name": "aoi-bot"}
    pid = _row(engine, spec=tampered)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "denylist" in result.message


async def test_an_unreadable_cluster_leaves_the_approval_in_place(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert not result.ran
    assert "try again" in result.message
    assert _state(engine, pid)[0] is ProposalState.APPROVED


async def test_a_proposal_claimed_elsewhere_or_finished_never_runs_twice(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    assert claim_for_execution(engine, pid)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.EXECUTING)


async def test_garbage_specs_are_refused(engine: sa.Engine, nowhere: client.ApiClient) -> None:
    pid = _row(engine, spec={"action": "reboot", "namespace": "shop", "name": "cart"})
    assert approve(engine, pid, approver="U1", policy=POLICY)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)


def test_the_policy_says_why_it_refuses() -> None:
    policy = ApprovalPolicy(approvers=frozenset({"U1", "U2"}), groups=frozenset({"S1"}))
    assert policy.authorises("U1", requester="U9") is None
    assert policy.authorises("U7", requester="U9", approver_groups=frozenset({"S1"})) is None
    assert "not an approver" in (policy.authorises("U3", requester="U9") or "")
    assert "asked for this action" in (policy.authorises("U1", requester="U1") or "")
    assert "no approver" in (policy.authorises("", requester="U9") or "")
    assert "no approver" in (policy.authorises(None, requester="U9") or "")
    assert ApprovalPolicy(approvers=frozenset({""})).authorises("", requester="x") is not None
    selfish = ApprovalPolicy(approvers=frozenset({"U1"}), allow_self_approval=True)
    assert selfish.authorises("U1", requester="U1") is None


def _force_approved(engine: sa.Engine, proposal_id: int, **values: Any) -> None:
    """What a front end that bypassed the store would leave: APPROVED, whatever the approver."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(Proposal)
            .where(col(Proposal.id) == proposal_id)
            .values(state=ProposalState.APPROVED, decided_at=utcnow(), **values)
        )


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"approver": None}, "no approver"),
        ({"approver": ""}, "no approver"),
        ({"approver": "U-mallory"}, "not an approver"),
        ({"approver": "aoi"}, "not an approver"),  # the requester, not even listed
        ({"approver": "U2", "approval": {"via": "group:S-nope"}}, "not an approver"),
        ({"approver": "U1", "approval": {"via": "approvers", "automatic": True}}, "new value"),
    ],
)
async def test_execute_refuses_an_approval_the_policy_does_not_admit(
    engine: sa.Engine, nowhere: client.ApiClient, values: dict[str, Any], why: str
) -> None:
    pid = _row(engine)
    _force_approved(engine, pid, **values)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    state, stored = _state(engine, pid)
    assert (result.ran, result.state, state) == (False, ProposalState.FAILED, ProposalState.FAILED)
    assert "approval policy" in result.message
    assert why in result.message
    assert stored is not None
    assert stored["ran"] is False


async def test_execute_refuses_the_requester_as_approver(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    pid = _row(engine)  # requested by "aoi"
    _force_approved(engine, pid, approver="aoi")
    policy = ApprovalPolicy(approvers=frozenset({"aoi"}))
    result = await execute(engine, pid, nowhere, policy=policy)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "asked for this action" in result.message


@pytest.mark.parametrize("approver", ["U-mallory", "", "aoi"])
async def test_a_refused_approval_leaves_nothing_to_execute(
    engine: sa.Engine, nowhere: client.ApiClient, approver: str
) -> None:
    pid = _row(engine)
    policy = ApprovalPolicy(approvers=frozenset({"U1", "aoi"}))
    with pytest.raises(ApprovalRefused):
        approve(engine, pid, approver=approver, policy=policy)
    result = await execute(engine, pid, nowhere, policy=policy)
    assert (result.ran, result.state) == (False, ProposalState.PENDING)
    assert "not been approved" in result.message


async def test_execute_applies_the_configured_rules(
    engine: sa.Engine, nowhere: client.ApiClient
) -> None:
    image = {"action": "set_image", "namespace": "shop", "name": "cart", "image": "evil.io/x"}
    pid = _row(engine, spec=image)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    result = await execute(engine, pid, nowhere, policy=POLICY)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "allowed registry" in result.message
    pid = _row(engine)
    assert approve(engine, pid, approver="U1", policy=POLICY)
    shop = ActionRules(protected_namespaces=frozenset({"shop"}))
    result = await execute(engine, pid, nowhere, policy=POLICY, rules=shop)
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "protected namespace" in result.message


def _config(data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "flags", "namespace": "shop", "uid": "c-1"}, "data": data}


def test_provenance_tells_restorations_from_new_values(nowhere: client.ApiClient) -> None:
    live = _config({"mode": "on", "flags.json": '{\n  "cart": "off"\n}'})
    spec = PatchConfigMap(
        namespace="shop",
        name="flags",
        data={"mode": "on", "flags.json": '{\n  "cart": "on"\n}', "token": "password=hunter22"},
    )
    changes = {c.field: c for c in trace(nowhere, spec, live).changes}
    assert changes["data[mode]"].origin is Origin.RESTORATION
    assert "unchanged" in changes["data[mode]"].source
    assert changes["data[flags.json]"].origin is Origin.NEW
    assert '-  "cart": "off"' in changes["data[flags.json]"].diff
    assert '+  "cart": "on"' in changes["data[flags.json]"].diff
    assert changes["data[token]"].diff[0].startswith("(unset) -> ")
    assert "hunter22" not in changes["data[token]"].diff[0]
    good = KnownGood(
        proposal_id=7,
        at="2026-11-26T10:00:00+00:00",
        fields=snapshot("ConfigMap", _config({"flags.json": '{\n  "cart": "on"\n}'})),
    )
    again = trace(nowhere, spec, live, known_good=good)
    restored = {c.field: c for c in again.changes}["data[flags.json]"]
    assert restored.origin is Origin.RESTORATION
    assert "proposal #7" in restored.source
    assert not again.restores_only  # the token is still new


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
