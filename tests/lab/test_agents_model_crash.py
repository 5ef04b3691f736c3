"""The model worker dies in the middle of a lab investigation; the investigation does not.

The embedded GGUF runs in its supervised worker. The worker is killed while it
decodes the Observer's first decision, once with SIGKILL from outside and once
with a real SIGSEGV raised inside generation. The investigation must end
consistently (every step stored, an error event saying what happened, a
diagnosis from the analyzers), and the next investigation must get the
Observer's answers from a restarted worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from support.crash import CRASHING_WORKER, kill_when_busy
from support.lab import LabThread

from agents.events import AnyEvent, DiagnosisEvent, ErrorEvent
from agents.llm import SupervisedModel, embedded_model_path
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from lab.scenarios.loader import scenario_from_cli
from store.db import session_scope
from store.models import Incident, IncidentStatus, Step, StepPhase


async def _investigate(
    engine: Engine, access: ClusterAccess, model: SupervisedModel
) -> list[AnyEvent]:
    return [
        event
        async for event in investigate(
            IncidentContext(question="posts fail to load in the social network"),
            engine=engine,
            cluster=access,
            model=model,
            limits=Limits(max_steps=2),
        )
    ]


@pytest.mark.slow
@pytest.mark.parametrize("death", ["SIGKILL", "SIGSEGV"])
def test_a_worker_death_mid_investigation_costs_one_decision(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, tmp_path: Path, death: str
) -> None:
    clean_lab.run(clean_lab.lab.inject(scenario_from_cli("scale_to_zero", "user-service", {})))
    trigger = tmp_path / "crash-once"
    if death == "SIGSEGV":
        trigger.touch()
    os.environ["AOI_TEST_CRASH_FILE"] = str(trigger)
    model = SupervisedModel(embedded_model_path(), threads=1, worker_argv=CRASHING_WORKER)

    async def both() -> tuple[list[AnyEvent], list[AnyEvent]]:
        try:
            killer = None
            if death == "SIGKILL":
                killer = asyncio.create_task(kill_when_busy(model, signal.SIGKILL, 0.5))
            first = await _investigate(engine, access, model)
            if killer is not None:
                await killer
            second = await _investigate(engine, access, model)
            return first, second
        finally:
            await model.aclose()

    try:
        first, second = asyncio.run(both())
    finally:
        del os.environ["AOI_TEST_CRASH_FILE"]

    errors = [e for e in first if isinstance(e, ErrorEvent)]
    assert len(errors) == 1
    assert f"killed by {death}" in errors[0].message
    assert "answering from the analyzers" in errors[0].message
    diagnosis = next(e for e in first if isinstance(e, DiagnosisEvent))
    assert diagnosis.source == "analyzers"
    assert "user-service" in diagnosis.components
    assert first[-1].kind == "finished"

    assert not [e for e in second if isinstance(e, ErrorEvent)]
    assert [e for e in second if e.kind == "plan"]
    assert model.stats()["restarts"] == 1

    with session_scope(engine) as session:
        incidents = session.exec(select(Incident).order_by(Incident.id)).all()
        assert [i.status for i in incidents] == [IncidentStatus.DIAGNOSED] * 2
        crashed = session.exec(
            select(Step).where(Step.incident_id == incidents[0].id).order_by(Step.step_index)
        ).all()
        assert [s.step_index for s in crashed] == list(range(len(crashed)))
        assert crashed[0].phase == StepPhase.OBSERVE
        failed = [s for s in crashed if s.phase == StepPhase.REASON]
        assert len(failed) == 1
        assert failed[0].decision is None
        assert f"killed by {death}" in failed[0].observation
        assert incidents[0].diagnosis is not None
        assert incidents[0].diagnosis["source"] == "analyzers"
        answered = session.exec(
            select(Step).where(Step.incident_id == incidents[1].id, Step.phase == StepPhase.REASON)
        ).all()
        assert answered
        assert all(s.decision is not None for s in answered)
