"""Revision 0005 adds the steps' prompt columns to a store that already holds steps.

On SQLite and PostgreSQL: the upgrade keeps every existing row and marks its prompt
as not recorded, new steps keep theirs byte for byte (odd characters included), and
the downgrade removes the columns and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from agents.llm import Message
from agents.prompts import StoredPromptError, prompt_hash, step_messages
from store.db import make_engine, session_scope
from store.migrate import alembic_config, current_revision, head_revision, schema_drift, upgrade
from store.models import Incident, Step, StepPhase

OLD_DECISION = {"summary": "user-service has no replicas", "confidence": 70}
PROMPT_COLUMNS = {"messages", "prompt_version", "guidance_ids"}


def _plain(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the JSON column holds them."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _step_columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("steps")}


def _insert_old_steps(engine: sa.Engine) -> None:
    """Rows as a 0004 store holds them: an observe step and a decision with only a hash."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO incidents (team_id, channel_id, thread_ts, requester, question, "
                "cluster, status, created_at, updated_at) VALUES ('', 'C1', '1.1', 'U1', "
                "'why is user-service down?', '', 'DIAGNOSED', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        for index, phase, decision in ((0, "observe", None), (1, "reason", OLD_DECISION)):
            connection.execute(
                sa.text(
                    "INSERT INTO steps (incident_id, step_index, phase, prompt_hash, decision, "
                    "tool_calls, observation, tokens_in, tokens_out, latency_ms, created_at) "
                    "SELECT id, :index, :phase, :hash, :decision, '[]', 'seen', 10, 2, 5, "
                    "CURRENT_TIMESTAMP FROM incidents"
                ),
                {
                    "index": index,
                    "phase": phase,
                    "hash": "ab" * 32 if decision else "",
                    "decision": json.dumps(decision) if decision else None,
                },
            )


def _steps(engine: sa.Engine) -> list[Step]:
    with session_scope(engine) as session:
        return list(session.exec(select(Step).order_by(col(Step.step_index))))


_PROMPT = [
    Message(role="system", content="You are the Observer."),
    Message(role="user", content="Incident: user-service is down\nStep 1 of 3."),
]


def test_0005_upgrades_a_store_with_steps_and_downgrades_cleanly(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, revision="0004")
        _insert_old_steps(engine)
        assert not _step_columns(engine) & PROMPT_COLUMNS

        assert upgrade(engine) == head_revision()
        assert schema_drift(engine) == []
        observe, reason = _steps(engine)
        for old in (observe, reason):
            assert (old.messages, old.prompt_version, old.guidance_ids) == (None, "", None)
            assert (old.observation, old.tokens_in, old.latency_ms) == ("seen", 10, 5)
        assert reason.decision == OLD_DECISION
        assert reason.prompt_hash == "ab" * 32
        for old in (observe, reason):
            with pytest.raises(StoredPromptError, match="no stored prompt"):
                step_messages(old)

        with session_scope(engine) as session:
            incident = session.exec(select(Incident)).one()
            assert incident.id is not None
            session.add(
                Step(
                    incident_id=incident.id,
                    step_index=2,
                    phase=StepPhase.REASON,
                    prompt_hash=prompt_hash(_PROMPT),
                    messages=_plain(_PROMPT),
                    prompt_version="observer-1+test",
                    guidance_ids=["cd" * 32],
                )
            )
        assert step_messages(_steps(engine)[2]) == _PROMPT

        _downgrade(engine, "0004")
        assert current_revision(engine) == "0004"
        assert not _step_columns(engine) & PROMPT_COLUMNS
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT step_index, prompt_hash, observation FROM steps ORDER BY 1")
            ).all()
        assert [tuple(r) for r in rows] == [
            (0, "", "seen"),
            (1, "ab" * 32, "seen"),
            (2, prompt_hash(_PROMPT), ""),
        ]

        upgrade(engine)
        assert schema_drift(engine) == []
        assert [s.messages for s in _steps(engine)] == [None, None, None]
    finally:
        engine.dispose()


_content = st.text(st.characters(codec="utf-8"), max_size=300)


@given(contents=st.lists(_content, min_size=1, max_size=3))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_stored_messages_come_back_byte_for_byte(
    migrated_engine: sa.Engine, contents: list[str]
) -> None:
    # NUL, quotes, backslashes, escapes-looking text, any plane: JSON on both back ends.
    messages = [
        Message(role="system", content="s"),
        *(Message(role="user", content=c) for c in contents),
    ]
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        step = Step(
            incident_id=incident.id,
            step_index=0,
            phase=StepPhase.REASON,
            prompt_hash=prompt_hash(messages),
            messages=_plain(messages),
        )
        session.add(step)
        session.flush()
        step_id = step.id
    with session_scope(migrated_engine) as session:
        stored = session.get(Step, step_id)
        assert stored is not None
        again = step_messages(stored)
    assert again == messages
    assert [m["content"].encode() for m in again] == [c.encode() for c in ["s", *contents]]
