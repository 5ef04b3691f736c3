"""The embedded model (SmolLM2-135M GGUF via llama-cpp-python) runs a whole investigation.

Every decision must be schema-valid: the grammar constrains decoding and
`parse_decision` validates and clamps; a model failure would show as an error
event saying the runtime fell back to the analyzers.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from support.lab import LabThread

from agents.llm import SupervisedModel, embedded_model_path
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from lab.scenarios.loader import scenario_from_cli
from store.db import session_scope
from store.models import Step, StepPhase


@pytest.mark.slow
def test_embedded_model_investigates_with_valid_decisions(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    clean_lab.run(clean_lab.lab.inject(scenario_from_cli("mongodb_revoke_auth", "mongodb-geo", {})))
    time.sleep(4)
    model = SupervisedModel(embedded_model_path(), threads=1)

    async def run() -> list[str]:
        try:
            return [
                e.kind
                async for e in investigate(
                    IncidentContext(question="search returns errors"),
                    engine=engine,
                    cluster=access,
                    model=model,
                    limits=Limits(max_steps=3),
                )
            ]
        finally:
            await model.aclose()

    kinds = asyncio.run(run())
    assert "error" not in kinds
    assert kinds.count("plan") >= 1
    assert kinds[-1] == "finished"
    with session_scope(engine) as session:
        reasons = session.exec(select(Step).where(Step.phase == StepPhase.REASON)).all()
        assert reasons
        for step in reasons:
            assert step.decision is not None
            assert 0 <= step.decision["confidence"] <= 100
            assert step.tokens_out > 0
