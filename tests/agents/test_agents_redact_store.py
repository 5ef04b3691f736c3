"""The store is a redaction choke point: whatever the runtime hands `Trajectory`, the
question, decisions, tool calls, observations and the diagnosis reach the database
redacted, on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import select

from agents.trajectory import IncidentContext, Trajectory
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.models import Incident, IncidentStatus, Step, StepPhase

SECRETS = ["geo-Passw0rd", "hunter2-prod", "abc123def456ghi", "xoxb-123456789012-secret"]


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(sqlite_url)
    upgrade(eng)
    yield eng
    eng.dispose()


async def test_everything_written_to_the_store_is_redacted(engine: sa.Engine) -> None:
    trajectory = Trajectory(engine)
    question = "geo cannot reach mongodb://admin:geo-Passw0rd@mongodb-geo:27017, why?"
    await trajectory.open(IncidentContext(question=question, requester="U123"))
    await trajectory.step(
        StepPhase.REASON,
        prompt_hash="0" * 64,
        decision={
            "summary": "auth fails with DB_PASS=hunter2-prod",
            "next_action": {
                "kind": "probe",
                "instruction": "kubectl logs geo --token=abc123def456ghi",
            },
            "confidence": 70,
        },
        tokens_in=120,
    )
    await trajectory.step(
        StepPhase.OBSERVE,
        tool_calls=[
            {"invocation": "kubectl logs geo --token=abc123def456ghi", "status": "SUCCESS"}
        ],
        observation="SLACK_BOT_TOKEN=xoxb-123456789012-secret\nconnecting: password=hunter2-prod",
    )
    await trajectory.close(
        IncidentStatus.DIAGNOSED,
        {"summary": "stale secret: DB_PASS=hunter2-prod", "evidence": ["password=hunter2-prod"]},
    )

    with session_scope(engine) as session:
        incident = session.exec(select(Incident)).one()
        steps = list(session.exec(select(Step).order_by(Step.step_index)))
        stored = json.dumps(
            [incident.question, incident.diagnosis]
            + [[s.decision, s.tool_calls, s.observation, s.prompt_hash] for s in steps]
        )
    for secret in SECRETS:
        assert secret not in stored
    assert incident.question.startswith("geo cannot reach mongodb://admin:[REDACTED:url_password]@")
    assert steps[0].decision is not None
    assert steps[0].decision["confidence"] == 70
    assert steps[0].tokens_in == 120
    assert steps[0].prompt_hash == "0" * 64
    assert steps[1].tool_calls == [
        {"invocation": "kubectl logs geo --token=[REDACTED:token]", "status": "SUCCESS"}
    ]
    assert incident.diagnosis is not None
    assert incident.diagnosis["evidence"] == ["password=[REDACTED:password]"]
