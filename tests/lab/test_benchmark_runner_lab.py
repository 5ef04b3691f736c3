"""The benchmark runner on the real lab: each task type end to end, concurrently, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support.decisions import decision
from support.lab import CACHE_DIR, LabThread

from agents.executor import DEFAULT_RULES
from agents.llm import ScriptedModel
from agents.runtime import ClusterAccess
from lab.benchmark.results import ResultsFile, RunInfo
from lab.benchmark.runner import Benchmark, BenchSettings
from lab.benchmark.teacher import AnalyzerTeacher
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario
from store.models import Proposal, ProposalState
from trainer.dataset import collect_samples

ONE_OF_EACH = (
    "pod_failure_hotel_res-detection-1",
    "noop_detection_social_network-1",
    "k8s_target_port-misconfig-localization-1",
    "revoke_auth_mongodb-analysis-1",
    "k8s_target_port-misconfig-mitigation-2",
    "astronomy_shop_cart_service_failure-localization-1",
    "scale_pod_zero_social_net-mitigation-1",
)


@pytest.fixture
def recovered(lab: LabThread) -> Iterator[LabThread]:
    yield lab
    lab.run(lab.lab.recover())
    lab.run(lab.lab.wait_ready(timeout_s=60))


def _info(scenarios: list[Scenario], settings: BenchSettings) -> RunInfo:
    return RunInfo(
        suite="ids",
        scenarios=[s.id for s in scenarios],
        agent=settings.agent,
        model="analyzers",
        attempts=settings.attempts,
        max_steps=settings.max_steps,
        window_s=settings.window_s,
        symptom_s=settings.symptom_s,
        back_to_back=settings.back_to_back,
        concurrent=settings.concurrent,
    )


def _proposals(engine: Engine, action: str) -> list[Proposal]:
    with Session(engine) as session:
        return list(session.exec(select(Proposal).where(Proposal.action == action)))


def _bench(
    lab: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    settings: BenchSettings,
    model: ScriptedModel | None = None,
) -> Benchmark:
    return Benchmark(
        lab=lab,
        engine=engine,
        access=access,
        executor_api=executor,
        model=model,
        settings=settings,
        rules=DEFAULT_RULES,
    )


def test_every_task_type_is_run_and_scored_concurrently(
    recovered: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    tmp_path: Path,
) -> None:
    registry = load_catalog()
    scenarios = [registry.get(sid) for sid in ONE_OF_EACH]
    settings = BenchSettings(window_s=12, symptom_s=8)
    results = ResultsFile.open(tmp_path, _info(scenarios, settings))
    seen: list[str] = []
    asyncio.run(
        _bench(recovered, engine, access, executor, settings).run(
            scenarios, results, progress=lambda r: seen.append(r.scenario_id)
        )
    )
    assert sorted(seen) == sorted(ONE_OF_EACH)
    by_id = {a.scenario_id: a for a in results.attempts}
    assert all(a.error is None for a in by_id.values()), by_id
    assert all(a.quiet for a in by_id.values())
    # The analyzers answer these catalogue tasks; each verdict is AIOpsLab's rule.
    assert by_id["noop_detection_social_network-1"].answer == "No"
    assert by_id["pod_failure_hotel_res-detection-1"].answer == "Yes"
    assert by_id["k8s_target_port-misconfig-localization-1"].answer == ["user-service"]
    # The targetPort its Pods expose is a restoration: approved automatically, run, checked.
    restored = by_id["k8s_target_port-misconfig-mitigation-2"]
    assert restored.success, restored
    assert restored.time_to_answer_s is not None
    # From zero replicas back to one is a restoration only when the Deployment's history shows
    # it (an older ReplicaSet that ran 1, which earlier tests on this lab may have left): then
    # it is approved automatically; otherwise it is a new value, which the benchmark, like
    # --yes, leaves to a person. Either way the rule, not the lab's past, decides.
    scaled = by_id["scale_pod_zero_social_net-mitigation-1"]
    scales = _proposals(engine, "scale")
    assert scales, "the analyzers propose scaling the Deployment back up"
    if all(not p.restores_only for p in scales):
        assert not scaled.success
        assert "only a person may approve" in scaled.detail
        assert all(p.state != ProposalState.DONE for p in scales)
    else:
        restoring = [p for p in scales if p.restores_only]
        assert any("ReplicaSet" in str(p.provenance) for p in restoring), restoring
        assert scaled.success == any(p.state == ProposalState.DONE for p in restoring)
    assert sum(a.success for a in by_id.values()) >= 5, {k: a.detail for k, a in by_id.items()}
    for attempt in by_id.values():
        assert attempt.overhead_s < 30
        assert attempt.wait_s >= settings.symptom_s
    written = json.loads(results.path.read_text())
    assert written["aggregate"]["tasks"] == len(ONE_OF_EACH)
    assert set(written["aggregate"]["by_task_type"]) == {
        "detection",
        "localization",
        "analysis",
        "mitigation",
    }


def test_llm_agent_scores_the_observers_own_answer_not_the_merge(
    recovered: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    tmp_path: Path,
) -> None:
    # The analyzers find user-service; a model that says "geo" (unsure, so the merge keeps
    # the analyzers' answer) is scored on "geo" as the llm agent.
    scenario = load_catalog().get("k8s_target_port-misconfig-localization-1")
    wrong = decision("submit", '["geo"]', component="geo", confidence=10)
    for agent, expected in (("llm", False), ("llm+analyzers", True)):
        settings = BenchSettings(agent=agent, window_s=10, symptom_s=6, max_steps=1)  # type: ignore[arg-type]
        results = ResultsFile.open(tmp_path / agent, _info([scenario], settings))
        model = ScriptedModel([wrong])
        asyncio.run(
            _bench(recovered, engine, access, executor, settings, model).run([scenario], results)
        )
        (attempt,) = results.attempts
        if agent == "llm":
            assert attempt.answer == ["geo"]
        assert attempt.success is expected, attempt


def test_the_teacher_records_trajectories_the_trainer_learns_from(
    recovered: LabThread,
    engine: Engine,
    access: ClusterAccess,
    executor: client.ApiClient,
    tmp_path: Path,
) -> None:
    # One scenario per application, so the three lanes run at once, each with its own teacher.
    ids = (
        "k8s_target_port-misconfig-localization-1",
        "revoke_auth_mongodb-analysis-1",
        "astronomy_shop_cart_service_failure-localization-1",
    )
    registry = load_catalog()
    scenarios = [registry.get(sid) for sid in ids]
    settings = BenchSettings(agent="llm", window_s=12, symptom_s=8)
    results = ResultsFile.open(tmp_path, _info(scenarios, settings))
    bench = _bench(recovered, engine, access, executor, settings)
    bench.model_for = AnalyzerTeacher.for_scenario
    asyncio.run(bench.run(scenarios, results))

    by_id = {a.scenario_id: a for a in results.attempts}
    assert all(a.success for a in by_id.values()), {k: a.detail for k, a in by_id.items()}
    assert by_id["k8s_target_port-misconfig-localization-1"].answer == ["user-service"]
    samples = collect_samples(engine)
    assert {s.scenario_id for s in samples} == set(ids)
    for scenario in scenarios:
        steps = sorted(
            (s for s in samples if s.scenario_id == scenario.id), key=lambda s: s.step_index
        )
        probe, submit = (s.reference for s in steps)  # probe what they name, then submit
        target = scenario.ground_truth.components[0]
        assert probe.next_action.kind == "probe"
        assert probe.next_action.instruction.startswith(f"kubectl describe deploy/{target} ")
        assert submit.next_action.kind == "submit"
        assert submit.root_cause.component == target
        assert submit.root_cause.fault_type == scenario.ground_truth.fault_type
        assert all(s.split == "train" and s.success and s.truth for s in steps)
        assert "<observation>" in steps[1].prompt[1]["content"]  # the probe's output, as sent


def test_aoi_bench_cli_runs_resumes_and_prints_the_aggregate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "AOI_CACHE_DIR": str(CACHE_DIR),
        "AOI_LAB_STATE_DIR": str(tmp_path / "lab-state"),
    }
    argv = [
        sys.executable,
        "-m",
        "aoi",
        "bench",
        "--suite",
        "noop_detection_hotel_reservation-1,scale_pod_zero_social_net-localization-1",
        "--window",
        "10",
        "--symptom-wait",
        "6",
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    aggregate = json.loads(done.stdout.strip().splitlines()[-1])
    assert aggregate["tasks"] == 2
    assert aggregate["attempts"] == 2
    for key in ("avg_at_1", "best_at_k", "by_task_type"):
        assert key in aggregate
    assert (out / "report.md").exists()
    assert (out / "report.png").exists()
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert "starting a private lab" not in again.stderr
    other = subprocess.run(
        [*argv, "--back-to-back"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert other.returncode == 1
    assert "back_to_back differ" in other.stderr
    unknown = subprocess.run(
        [*argv[:5], "no-such-scenario", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 1
    assert "no-such-scenario" in unknown.stderr
