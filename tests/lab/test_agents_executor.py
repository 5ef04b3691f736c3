"""The Executor against the real lab: approved fixes really mitigate, nothing else ever runs.

Each fix goes the whole way a Slack click would: a fault is injected, the
action is parsed from the kubectl command an SRE would type (or taken from the
analyzers' suggestion), proposed with the observer's snapshot, approved in the
store, executed with the separate executor identity, verified, and finally
judged by the lab's own fault-specific mitigation check. The refusals assert
that the cluster object did not change.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from support.lab import LabThread

from agents.analyzers import Diagnosis, analyze, diagnose
from agents.executor import ActionSpec, execute, parse_action, propose
from agents.executor.actions import (
    PatchConfigMap,
    PatchServiceSelector,
    RolloutRestart,
    Scale,
    SetCommand,
    SetImage,
)
from agents.executor.provenance import Origin, Provenance
from lab.apps import APPS
from lab.scenarios import Scenario, load_catalog, scenario_from_cli
from store.db import session_scope
from store.errors import ApprovalRefused
from store.models import Incident, Proposal, ProposalState
from store.policy import ApprovalPolicy
from store.proposals import approve
from store.types import utcnow

HOTEL, SOCIAL, SHOP = "test-hotel-reservation", "test-social-network", "astronomy-shop"
CATALOG = load_catalog()
POLICY = ApprovalPolicy(approvers=frozenset({"U-oncall"}))
PORT_FIX = """'{"spec":{"ports":[{"port":9090,"targetPort":9090}]}}'"""
PROFILE = (
    """'{"spec":{"template":{"spec":{"containers":[{"name":"profile","command":["profile"]}]}}}}'"""
)


def _incident(engine: Engine) -> int:
    with session_scope(engine) as session:
        incident = Incident(question="lab incident")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        return incident.id


def _wait(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _broken(lab: LabThread, scenario: Scenario) -> bool:
    return not lab.run(lab.lab.check(scenario)).mitigated


def _flag_fix(observer: client.ApiClient, flag: str) -> PatchConfigMap:
    cm = client.CoreV1Api(observer).read_namespaced_config_map("flagd-config", SHOP)
    key, text = next(iter(cm.data.items()))
    doc = json.loads(text)
    doc["flags"][flag]["defaultVariant"] = "off"
    return PatchConfigMap(
        namespace=SHOP, name="flagd-config", data={key: json.dumps(doc, indent=2)}
    )


def _diagnosis(lab: LabThread, observer: client.ApiClient, namespace: str) -> Diagnosis:
    ends = lab.lab.endpoints
    assert ends is not None
    report = asyncio.run(
        analyze(observer, namespaces=[namespace], prometheus_url=ends.prometheus_url, window="15s")
    )
    return diagnose(report.findings)


def _suggestion(lab: LabThread, observer: client.ApiClient, namespace: str) -> Diagnosis:
    """The analyzers' diagnosis once it carries a fix (or after ~15 s)."""
    deadline = time.monotonic() + 15
    diagnosis = _diagnosis(lab, observer, namespace)
    while diagnosis.mitigation is None and time.monotonic() < deadline:
        time.sleep(0.5)
        diagnosis = _diagnosis(lab, observer, namespace)
    return diagnosis


FIXES: list[tuple[str, str]] = [
    (
        "k8s_target_port-misconfig-mitigation-1",
        f"kubectl patch svc user-service -n {SOCIAL} -p {PORT_FIX}",
    ),
    (
        "scale_pod_zero_social_net-mitigation-1",
        f"kubectl scale deploy/user-service --replicas=1 -n {SOCIAL}",
    ),
    ("misconfig_app_hotel_res-mitigation-1", f"kubectl rollout undo deploy/geo -n {HOTEL}"),
    ("bad_rollout_hotel_res-mitigation-1", f"kubectl rollout undo deploy/search -n {HOTEL}"),
    ("wrong_bin_usage-mitigation-1", f"kubectl patch deploy profile -n {HOTEL} -p {PROFILE}"),
    ("revoke_auth_mongodb-mitigation-1", f"kubectl rollout restart deploy/mongodb-geo -n {HOTEL}"),
    ("feature_flag:cartFailure", "flag"),
    ("auth_miss_mongodb-mitigation-1", "analyzers"),
]


# Where each fix's values come from: the port its pods expose, an earlier ReplicaSet,
# no value at all (a restart); a feature flag's new ConfigMap data is a new value.
RESTORES = {
    "k8s_target_port-misconfig-mitigation-1": True,
    "misconfig_app_hotel_res-mitigation-1": True,
    "bad_rollout_hotel_res-mitigation-1": True,
    "wrong_bin_usage-mitigation-1": True,
    "revoke_auth_mongodb-mitigation-1": True,
    "feature_flag:cartFailure": False,
}


def _scenario(key: str) -> Scenario:
    if key.startswith("feature_flag:"):
        return scenario_from_cli("feature_flag", "cart", {"flag": key.split(":", 1)[1]})
    return CATALOG.get(key)


@pytest.mark.parametrize(("key", "instruction"), FIXES, ids=[k for k, _ in FIXES])
def test_an_approved_proposal_mitigates_the_fault(
    clean_lab: LabThread,
    observer: client.ApiClient,
    executor: client.ApiClient,
    engine: Engine,
    key: str,
    instruction: str,
) -> None:
    scenario = _scenario(key)
    clean_lab.run(clean_lab.lab.inject(scenario))
    assert _wait(lambda: _broken(clean_lab, scenario), 10)
    namespace = APPS[scenario.app].namespace
    if instruction == "flag":
        spec: ActionSpec | None = _flag_fix(observer, str(scenario.fault.params["flag"]))
    elif instruction == "analyzers":
        diagnosis = _suggestion(clean_lab, observer, namespace)
        assert diagnosis.mitigation is not None, diagnosis.text()
        spec = diagnosis.mitigation
    else:
        spec = parse_action(instruction)
    assert spec is not None
    proposal = asyncio.run(
        propose(engine, _incident(engine), spec, requester="aoi", ttl_s=300, api=observer)
    )
    assert proposal.id is not None
    assert proposal.state is ProposalState.PENDING
    if key in RESTORES:
        assert proposal.restores_only is RESTORES[key], proposal.provenance
    assert approve(engine, proposal.id, approver="U-oncall", policy=POLICY)
    result = asyncio.run(execute(engine, proposal.id, executor, policy=POLICY, verify_timeout_s=30))
    assert result.ran, result.message
    assert result.state is ProposalState.DONE, result.message
    assert _wait(lambda: not _broken(clean_lab, scenario), 20), clean_lab.run(
        clean_lab.lab.check(scenario)
    )


def _replicas(admin: client.ApiClient, name: str = "frontend") -> tuple[int, str]:
    """What the refused actions would have changed: replicas and the pod template."""
    dep = client.AppsV1Api(admin).read_namespaced_deployment(name, HOTEL)
    template = client.ApiClient().sanitize_for_serialization(dep.spec.template)
    return int(dep.spec.replicas), json.dumps(template, sort_keys=True)


def _proposal(
    engine: Engine, observer: client.ApiClient, spec: ActionSpec, ttl_s: float = 300
) -> int:
    proposal = asyncio.run(
        propose(engine, _incident(engine), spec, requester="aoi", ttl_s=ttl_s, api=observer)
    )
    assert proposal.id is not None
    return proposal.id


def test_unapproved_and_expired_proposals_never_run(
    lab: LabThread,
    observer: client.ApiClient,
    executor: client.ApiClient,
    admin: client.ApiClient,
    engine: Engine,
) -> None:
    before = _replicas(admin)
    pending = _proposal(engine, observer, Scale(namespace=HOTEL, name="frontend", replicas=3))
    result = asyncio.run(execute(engine, pending, executor, policy=POLICY))
    assert (result.ran, result.state) == (False, ProposalState.PENDING)
    short = _proposal(
        engine, observer, Scale(namespace=HOTEL, name="frontend", replicas=3), ttl_s=1
    )
    assert approve(engine, short, approver="U-oncall", policy=POLICY)
    time.sleep(1.2)
    result = asyncio.run(execute(engine, short, executor, policy=POLICY))
    assert (result.ran, result.state) == (False, ProposalState.EXPIRED)
    assert _replicas(admin) == before


def test_a_stale_proposal_never_runs(
    lab: LabThread,
    observer: client.ApiClient,
    executor: client.ApiClient,
    admin: client.ApiClient,
    engine: Engine,
) -> None:
    before = _replicas(admin)
    pid = _proposal(engine, observer, Scale(namespace=HOTEL, name="frontend", replicas=3))
    apps = client.AppsV1Api(admin)
    apps.patch_namespaced_deployment(
        "frontend", HOTEL, {"metadata": {"annotations": {"aoi.test/touched": "1"}}}
    )
    try:
        assert approve(engine, pid, approver="U-oncall", policy=POLICY)
        result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
        assert (result.ran, result.state) == (False, ProposalState.STALE)
        assert _replicas(admin) == before
    finally:
        apps.patch_namespaced_deployment(
            "frontend", HOTEL, {"metadata": {"annotations": {"aoi.test/touched": None}}}
        )


def test_a_status_update_does_not_make_a_proposal_stale(
    lab: LabThread,
    observer: client.ApiClient,
    executor: client.ApiClient,
    admin: client.ApiClient,
    engine: Engine,
) -> None:
    # A sick workload's status moves all the time; the fix must stay approvable.
    replicas, _template = _replicas(admin)
    pid = _proposal(engine, observer, Scale(namespace=HOTEL, name="frontend", replicas=replicas))
    apps = client.AppsV1Api(admin)
    dep = apps.read_namespaced_deployment("frontend", HOTEL)
    condition = {
        "type": "AOITestProbe",
        "status": "True",
        "reason": "StatusOnly",
        "message": "written by the test",
    }
    apps.patch_namespaced_deployment_status(
        "frontend", HOTEL, {"status": {"conditions": [*_conditions(dep), condition]}}
    )
    after = apps.read_namespaced_deployment("frontend", HOTEL).metadata.resource_version
    with session_scope(engine) as session:
        row = session.get(Proposal, pid)
        assert row is not None
        assert row.target_resource_version != after  # the status update did land
    assert approve(engine, pid, approver="U-oncall", policy=POLICY)
    result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
    assert (result.ran, result.state) == (True, ProposalState.DONE), result.message


def _conditions(dep: Any) -> list[dict[str, Any]]:
    raw = client.ApiClient().sanitize_for_serialization(dep.status.conditions or [])
    return [c for c in raw if c["type"] != "AOITestProbe"]


def test_the_denylist_holds_for_an_approved_row(
    lab: LabThread, executor: client.ApiClient, admin: client.ApiClient, engine: Engine
) -> None:
    core = client.CoreV1Api(admin)
    coredns = core.read_namespaced_config_map("coredns", "kube-system")
    spec: dict[str, Any] = {
        "action": "patch_configmap",
        "namespace": "kube-system",
        "name": "coredns",
        "data": {"Corefile": ".:53 {\n}\n"},
    }
    with session_scope(engine) as session:
        row = Proposal(
            incident_id=_incident(engine),
            action="patch_configmap",
            action_spec=spec,
            target_kind="ConfigMap",
            target_namespace="kube-system",
            target_name="coredns",
            target_resource_version=coredns.metadata.resource_version,
            requester="mallory",
            expires_at=utcnow().replace(year=utcnow().year + 1),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        pid = row.id
    assert approve(engine, pid, approver="U-oncall", policy=POLICY)
    result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "denylist" in result.message
    after = core.read_namespaced_config_map("coredns", "kube-system")
    assert after.data == coredns.data


def test_two_concurrent_executions_run_once(
    lab: LabThread, observer: client.ApiClient, executor: client.ApiClient, engine: Engine
) -> None:
    cm = client.CoreV1Api(observer).read_namespaced_config_map("mongodb-geo-init", HOTEL)
    spec = PatchConfigMap(namespace=HOTEL, name="mongodb-geo-init", data=dict(cm.data))
    pid = _proposal(engine, observer, spec)
    assert approve(engine, pid, approver="U-oncall", policy=POLICY)

    async def both() -> list[Any]:
        return list(
            await asyncio.gather(
                execute(engine, pid, executor, policy=POLICY),
                execute(engine, pid, executor, policy=POLICY),
            )
        )

    results = asyncio.run(both())
    assert sorted(r.ran for r in results) == [False, True]
    assert {r.state for r in results if r.ran} == {ProposalState.DONE}


def test_the_executor_identity_cannot_do_what_the_catalogue_leaves_out(
    executor: client.ApiClient,
) -> None:
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as info:
        client.CoreV1Api(executor).list_namespaced_secret(HOTEL)
    assert info.value.status == 403
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(executor).delete_namespace("astronomy-shop")
    assert info.value.status == 403


def test_proposing_never_executes(
    lab: LabThread, observer: client.ApiClient, admin: client.ApiClient, engine: Engine
) -> None:
    before = _replicas(admin, "geo")
    _proposal(engine, observer, RolloutRestart(namespace=HOTEL, name="geo"))
    _proposal(engine, observer, Scale(namespace=HOTEL, name="geo", replicas=3))
    time.sleep(0.5)
    assert _replicas(admin, "geo") == before


def _selector(admin: client.ApiClient, name: str = "geo") -> dict[str, str]:
    return dict(client.CoreV1Api(admin).read_namespaced_service(name, HOTEL).spec.selector)


def _provenance(engine: Engine, proposal_id: int) -> Provenance:
    with session_scope(engine) as session:
        row = session.get(Proposal, proposal_id)
        assert row is not None
        return Provenance.from_json(row.provenance)


def test_new_values_are_shown_with_their_diff_and_never_approved_automatically(
    lab: LabThread,
    observer: client.ApiClient,
    executor: client.ApiClient,
    admin: client.ApiClient,
    engine: Engine,
) -> None:
    selector, before = _selector(admin), _replicas(admin, "geo")
    hijack = PatchServiceSelector(namespace=HOTEL, name="geo", selector={"app": "attacker"})
    other = PatchServiceSelector(
        namespace=HOTEL, name="geo", selector={"app.kubernetes.io/name": "rate"}
    )
    image = SetImage(namespace=HOTEL, name="geo", image="mongo:9.9")
    command = SetCommand(namespace=HOTEL, name="geo", command=["curl", "http://a.invalid/x"])
    for spec in (hijack, other, image, command):
        pid = _proposal(engine, observer, spec)
        provenance = _provenance(engine, pid)
        assert not provenance.restores_only, provenance.diff()
        assert [c.origin for c in provenance.changes] == [Origin.NEW]
        assert " -> " in provenance.changes[0].diff[0]
        with pytest.raises(ApprovalRefused, match="restorations only"):
            approve(engine, pid, approver="U-oncall", policy=POLICY, automatic=True)
        result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
        assert (result.ran, result.state) == (False, ProposalState.PENDING)
    diff = _provenance(engine, _proposal(engine, observer, hijack)).changes[0].diff[0]
    assert diff == f"{json.dumps(selector, sort_keys=True)} -> {json.dumps({'app': 'attacker'})}"
    assert _selector(admin) == selector
    assert _replicas(admin, "geo") == before


def test_restorations_name_where_the_value_was_seen(
    lab: LabThread, observer: client.ApiClient, admin: client.ApiClient, engine: Engine
) -> None:
    own = PatchServiceSelector(namespace=HOTEL, name="geo", selector=_selector(admin))
    restart = RolloutRestart(namespace=HOTEL, name="geo")
    for spec, source in ((own, "unchanged"), (restart, None)):
        provenance = _provenance(engine, _proposal(engine, observer, spec))
        assert provenance.restores_only, provenance.diff()
        if source:
            assert source in provenance.changes[0].source
    labels = {"app.kubernetes.io/name": "geo"}  # a subset of what geo's own pods carry
    subset = PatchServiceSelector(namespace=HOTEL, name="geo", selector=labels)
    provenance = _provenance(engine, _proposal(engine, observer, subset))
    assert provenance.restores_only, provenance.diff()
    assert "deployment geo's pods" in provenance.changes[0].source


def test_automatic_approval_runs_a_restoration(
    lab: LabThread, observer: client.ApiClient, executor: client.ApiClient, engine: Engine
) -> None:
    cm = client.CoreV1Api(observer).read_namespaced_config_map("mongodb-geo-init", HOTEL)
    spec = PatchConfigMap(namespace=HOTEL, name="mongodb-geo-init", data=dict(cm.data))
    pid = _proposal(engine, observer, spec)
    assert approve(engine, pid, approver="U-oncall", policy=POLICY, automatic=True)
    result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
    assert (result.ran, result.state) == (True, ProposalState.DONE), result.message
    with session_scope(engine) as session:
        row = session.get(Proposal, pid)
        assert row is not None
        assert row.result is not None
        assert set(row.result["known_good"]) == {f"data[{k}]" for k in cm.data}


def test_an_approved_action_outside_the_managed_namespaces_is_refused_by_the_apiserver(
    lab: LabThread, observer: client.ApiClient, executor: client.ApiClient, engine: Engine
) -> None:
    # default is not protected by the denylist, but the executor is not bound there:
    # the identity, not our code, stops the approved action.
    cm = client.CoreV1Api(observer).read_namespaced_config_map("kube-root-ca.crt", "default")
    spec = PatchConfigMap(namespace="default", name="kube-root-ca.crt", data={"x": "y"})
    pid = _proposal(engine, observer, spec)
    assert approve(engine, pid, approver="U-oncall", policy=POLICY)
    result = asyncio.run(execute(engine, pid, executor, policy=POLICY))
    assert (result.ran, result.state) == (False, ProposalState.FAILED)
    assert "403" in result.message
    after = client.CoreV1Api(observer).read_namespaced_config_map("kube-root-ca.crt", "default")
    assert after.data == cm.data
