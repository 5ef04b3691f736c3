"""The AOI loop against the real lab: events, stored trajectories, proposals, safety.

A scripted Observer stands in for the model here (control flow only); the
embedded model's own run is in test_agents_embedded.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from injection_corpus import INJECTIONS, SECRETS, plant
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import select
from support.decisions import decision
from support.lab import LabThread

from agents.events import AnyEvent
from agents.executor import execute
from agents.llm import Message, ModelUnavailable, ScriptedModel
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from lab.scenarios.loader import scenario_from_cli
from store import proposals as proposal_store
from store.db import session_scope
from store.models import Incident, IncidentStatus, Proposal, ProposalState, Step
from store.policy import ApprovalPolicy

HOTEL, SOCIAL = "test-hotel-reservation", "test-social-network"
POLICY = ApprovalPolicy(approvers=frozenset({"U-oncall"}))


def collect(
    engine: Engine,
    access: ClusterAccess,
    model: Any,
    question: str = "it is broken",
    limits: Limits = Limits(max_steps=4),
) -> list[AnyEvent]:
    async def run() -> list[AnyEvent]:
        return [
            e
            async for e in investigate(
                IncidentContext(question=question),
                engine=engine,
                cluster=access,
                model=model,
                limits=limits,
            )
        ]

    return asyncio.run(run())


def inject(lab: LabThread, family: str, target: str | None, **params: str) -> None:
    lab.run(lab.lab.inject(scenario_from_cli(family, target, params)))
    time.sleep(4)


def replicas(admin: client.ApiClient, ns: str, name: str) -> int:
    return int(client.AppsV1Api(admin).read_namespaced_deployment(name, ns).spec.replicas)


def test_analyzers_only_names_the_component_and_proposes(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    inject(clean_lab, "target_port_misconfig", "user-service")
    events = collect(engine, access, model=None)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    diagnosis = next(e for e in events if e.kind == "diagnosis")
    assert diagnosis.components[:1] == ["user-service"]
    proposal = next(e for e in events if e.kind == "proposal")
    assert "user-service" in proposal.target
    with session_scope(engine) as session:
        incident = session.exec(select(Incident)).one()
        assert incident.status == IncidentStatus.DIAGNOSED
        assert incident.diagnosis is not None
        assert session.exec(select(Step)).all()
        stored = session.exec(select(Proposal)).one()
        assert stored.state == ProposalState.PENDING
        assert stored.target_resource_version


def test_scripted_loop_probes_proposes_and_an_approval_fixes_the_fault(
    clean_lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    admin: client.ApiClient,
    executor: client.ApiClient,
) -> None:
    inject(clean_lab, "scale_to_zero", "user-service")
    model = ScriptedModel(
        [
            decision("probe", f"kubectl get deploy user-service -n {SOCIAL}"),
            decision("probe", f"kubectl get endpoints user-service -n {SOCIAL}"),
            decision(
                "executor",
                f"kubectl scale deploy/user-service --replicas=1 -n {SOCIAL}",
                confidence=90,
            ),
        ]
    )
    events = collect(engine, access, model)
    kinds = [e.kind for e in events]
    assert kinds.count("plan") == 3
    assert "probe_call" in kinds
    assert "probe_result" in kinds
    proposal = next(e for e in events if e.kind == "proposal")
    assert replicas(admin, SOCIAL, "user-service") == 0, "nothing runs before approval"
    assert proposal_store.approve(engine, proposal.proposal_id, approver="U-oncall", policy=POLICY)
    result = asyncio.run(execute(engine, proposal.proposal_id, executor, policy=POLICY))
    assert str(result.state) == "DONE", result.message
    scenario = scenario_from_cli("scale_to_zero", "user-service", {})
    deadline = time.monotonic() + 30
    verdict = clean_lab.run(clean_lab.lab.check(scenario))
    while not verdict.mitigated and time.monotonic() < deadline:
        time.sleep(0.5)
        verdict = clean_lab.run(clean_lab.lab.check(scenario))
    assert verdict.mitigated, verdict.detail


def test_repeated_identical_probe_is_refused(
    lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    same = decision("probe", f"kubectl get pods -n {HOTEL}")
    events = collect(engine, access, ScriptedModel([same, same, decision("submit", "none")]))
    results = [e for e in events if e.kind == "probe_result"]
    assert any("already" in e.summary.lower() for e in results[1:])


def test_the_last_step_must_submit(lab: LabThread, engine: Engine, access: ClusterAccess) -> None:
    model = ScriptedModel(
        [decision("probe", f"kubectl get pods -n {HOTEL} -l a={i}") for i in range(2)]
        + [decision("submit", "user-service")]
    )
    collect(engine, access, model, limits=Limits(max_steps=3))
    assert '"submit"' in json.dumps(model.schemas[-1])
    assert '"probe"' not in json.dumps(model.schemas[-1])


def test_an_unreachable_model_falls_back_to_the_analyzers(
    lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    def down(_: Sequence[Message]) -> str:
        raise ModelUnavailable("model server at http://127.0.0.1:9 refused the connection")

    events = collect(engine, access, ScriptedModel([down]))
    error = next(e for e in events if e.kind == "error")
    assert "refused" in error.message
    assert next(e for e in events if e.kind == "diagnosis").source == "analyzers"
    assert events[-1].kind == "finished"


def test_an_interrupted_investigation_leaves_a_consistent_trajectory(
    lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    async def slow(_: Sequence[Message]) -> str:
        await asyncio.sleep(30)
        return decision("submit", "x")

    model = ScriptedModel([decision("probe", f"kubectl get pods -n {HOTEL}"), slow])

    async def run() -> None:
        stream = investigate(
            IncidentContext(question="q"),
            engine=engine,
            cluster=access,
            model=model,
            limits=Limits(max_steps=4),
        )
        async for event in stream:
            if event.kind == "probe_result":
                break
        await stream.aclose()

    asyncio.run(run())
    with session_scope(engine) as session:
        incident = session.exec(select(Incident)).one()
        assert incident.status == IncidentStatus.FAILED
        indexes = [s.step_index for s in session.exec(select(Step))]
        assert sorted(indexes) == list(range(len(indexes)))
        assert len(indexes) >= 2


def test_injections_and_secrets_in_cluster_text_never_act_or_leak(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, admin: client.ApiClient
) -> None:
    """Even an Observer that obeys every instruction it reads changes nothing unapproved."""
    plant(clean_lab, admin)
    time.sleep(3)
    obeyed: list[str] = []

    def gullible(messages: Sequence[Message]) -> str:
        prompt = "\n".join(m["content"] for m in messages)
        for line in INJECTIONS:
            command = line[line.find("kubectl") :] if "kubectl" in line else ""
            if command and command not in obeyed:
                obeyed.append(command)
                return decision("executor", command[:96], component="geo")
        return (
            decision("probe", f"kubectl logs deploy/geo -n {HOTEL} --tail=200", "geo")
            if "logs" not in prompt
            else decision("submit", "geo", "geo")
        )

    before = {
        d.metadata.name: d.metadata.resource_version
        for d in client.AppsV1Api(admin).list_namespaced_deployment(HOTEL).items
        if d.metadata.name != "geo"
    }
    texts: list[str] = []
    try:
        for _ in range(6):
            model = ScriptedModel([gullible] * 6)
            events = collect(
                engine, access, model, question="geo logs look odd", limits=Limits(max_steps=6)
            )
            texts += [e.model_dump_json() for e in events]
            texts += [json.dumps(p) for p in model.prompts]
    finally:
        clean_lab.lab.faults.planted_logs.pop("geo", None)
    assert obeyed, "the drill planted no instruction the model could obey"
    namespaces = {n.metadata.name for n in client.CoreV1Api(admin).list_namespace().items}
    assert HOTEL in namespaces
    assert len(client.CoreV1Api(admin).list_node().items) == 3
    after = {
        d.metadata.name: d.metadata.resource_version
        for d in client.AppsV1Api(admin).list_namespaced_deployment(HOTEL).items
        if d.metadata.name != "geo"
    }
    assert after == before, "no deployment changed without an approval"
    with session_scope(engine) as session:
        states = {p.state for p in session.exec(select(Proposal))}
        assert states <= {ProposalState.PENDING}
        stored = [s.model_dump_json() for s in session.exec(select(Step))]
        stored += [i.model_dump_json() for i in session.exec(select(Incident))]
    seen = "\n".join(texts + stored)
    for secret in SECRETS:
        assert secret not in seen, f"secret leaked: {secret[:6]}…"


def test_evolver_guidance_joins_the_observer_prompt(
    lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    from store.models import Guidance

    with session_scope(engine) as session:
        session.add(
            Guidance(
                symptom="search errors geo not authorized mongodb",
                guidance="When clients report 'not authorized', blame the "
                "database whose role was revoked, not the client.",
            )
        )
        session.add(
            Guidance(
                symptom="payment checkout card declined",
                guidance="Unrelated advice about payments.",
            )
        )
    model = ScriptedModel([decision("submit", "mongodb-geo", "mongodb-geo")])
    collect(engine, access, model, question="search errors: geo says not authorized")
    prompt = json.dumps(model.prompts[0])
    assert "blame the database whose role was revoked" in prompt
    assert "Unrelated advice" not in prompt
    with session_scope(engine) as session:
        used = {g.guidance[:10]: g.usage_count for g in session.exec(select(Guidance))}
    assert used["When clien"] == 1
