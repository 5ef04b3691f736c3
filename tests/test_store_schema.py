"""The migrations create exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel, select

from store.db import make_engine, session_scope, stats, table_names
from store.errors import SchemaMissing
from store.migrate import current_revision, head_revision, schema_drift, upgrade
from store.models import (
    Digest,
    Feedback,
    Guidance,
    Incident,
    IncidentStatus,
    ModelVersion,
    Outcome,
    Proposal,
    Rating,
    Step,
    StepPhase,
)

EXPECTED_TABLES = {
    "incidents",
    "steps",
    "proposals",
    "outcomes",
    "feedback",
    "guidance",
    "model_versions",
    "digests",
    "slack_events",
    "slack_messages",
    "training_runs",
    "training_steps",
    "model_activations",
}


def test_upgrade_creates_every_table(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert upgrade(engine) == head_revision()
        present = set(sa.inspect(engine).get_table_names())
        assert present >= EXPECTED_TABLES | {"alembic_version"}
        assert set(table_names()) == EXPECTED_TABLES
    finally:
        engine.dispose()


def test_upgrade_is_repeatable(database_url: str) -> None:
    assert upgrade(database_url) == upgrade(database_url) == head_revision()


def test_migrations_match_the_models(migrated_engine: sa.Engine) -> None:
    assert schema_drift(migrated_engine) == []


def test_drift_check_notices_a_missing_index(migrated_engine: sa.Engine) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_proposals_state"))
    drift = schema_drift(migrated_engine)
    assert any("ix_proposals_state" in str(change) for change in drift)


def test_indexes_on_foreign_keys_and_proposal_state(migrated_engine: sa.Engine) -> None:
    inspector = sa.inspect(migrated_engine)
    for table in ("steps", "proposals", "outcomes", "feedback"):
        indexed = {tuple(index["column_names"]) for index in inspector.get_indexes(table)}
        assert ("incident_id",) in indexed, table
    proposal_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("proposals")}
    assert ("state",) in proposal_indexes


def test_stats_counts_rows_per_table(migrated_engine: sa.Engine) -> None:
    with session_scope(migrated_engine) as session:
        incident = Incident(question="why is checkout slow?", requester="U1")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add_all(
            [
                Step(incident_id=incident.id, step_index=0),
                Step(incident_id=incident.id, step_index=1, phase=StepPhase.ACT),
                Feedback(incident_id=incident.id, slack_user="U2", rating=Rating.DOWN),
                Outcome(incident_id=incident.id, resolved=True, correct=None),
                Guidance(symptom="5xx on checkout", guidance="look at payment first"),
                ModelVersion(name="base", path="/models/base.gguf"),
                Digest(period_start=_utc(2026, 1, 1), period_end=_utc(2026, 1, 8)),
            ]
        )
    counts = stats(migrated_engine)
    assert counts == {
        "digests": 1,
        "feedback": 1,
        "guidance": 1,
        "incidents": 1,
        "model_activations": 0,
        "model_versions": 1,
        "outcomes": 1,
        "proposals": 0,
        "slack_events": 0,
        "slack_messages": 0,
        "steps": 2,
        "training_runs": 0,
        "training_steps": 0,
    }
    assert list(counts) == sorted(counts)


def test_stats_before_upgrade_says_what_to_do(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(SchemaMissing, match=r"aoi db upgrade"):
            stats(engine)
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_timestamps_come_back_aware_utc(migrated_engine: sa.Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    expires = datetime(2026, 3, 1, 12, 0, tzinfo=plus_two)
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add(Proposal(incident_id=incident.id, action="scale", expires_at=expires))
    with session_scope(migrated_engine) as session:
        proposal = session.exec(select(Proposal)).one()
        assert proposal.expires_at == expires
        assert proposal.expires_at.tzinfo == UTC
        assert proposal.created_at.tzinfo == UTC


def test_naive_timestamps_are_refused(migrated_engine: sa.Engine) -> None:
    naive = Digest(period_start=datetime(2026, 1, 1), period_end=datetime(2026, 1, 8))
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        _save(migrated_engine, naive)


def test_enums_are_stored_as_their_values(migrated_engine: sa.Engine) -> None:
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add(Step(incident_id=incident.id, step_index=0, phase=StepPhase.REASON))
    with migrated_engine.connect() as connection:
        raw = connection.execute(sa.text("SELECT phase FROM steps")).scalar_one()
        status = connection.execute(sa.text("SELECT status FROM incidents")).scalar_one()
    assert (raw, status) == ("reason", "OPEN")


def test_json_columns_round_trip(migrated_engine: sa.Engine) -> None:
    decision = {"phase": "diagnosis", "confidence": 70, "hypotheses": ["svc down", "dns"]}
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q", ground_truth={"service": "user", "fault": "scale-0"})
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add(
            Step(
                incident_id=incident.id,
                step_index=0,
                decision=decision,
                tool_calls=[{"tool": "kubectl", "args": ["get", "pods"]}],
            )
        )
    with session_scope(migrated_engine) as session:
        step = session.exec(select(Step)).one()
        assert step.decision == decision
        assert step.tool_calls == [{"tool": "kubectl", "args": ["get", "pods"]}]


def test_deleting_an_incident_deletes_its_steps(migrated_engine: sa.Engine) -> None:
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        session.add(Step(incident_id=incident.id, step_index=0))
    with migrated_engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM incidents"))
    assert stats(migrated_engine)["steps"] == 0


def test_steps_need_an_existing_incident(migrated_engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        _save(migrated_engine, Step(incident_id=12345, step_index=0))


def _save(engine: sa.Engine, row: SQLModel) -> None:
    with session_scope(engine) as session:
        session.add(row)


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@pytest.mark.postgres
def test_concurrent_upgrades_do_not_collide(postgres_url: str) -> None:
    # Several replicas (or a Job and a replica) may run `aoi db upgrade` at once.
    barrier = threading.Barrier(4)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(10)
            results.append(upgrade(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == [head_revision()] * 4


def test_in_memory_database_keeps_its_tables_across_connections() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        assert stats(engine)["incidents"] == 0
    finally:
        engine.dispose()


def test_updating_an_incident_moves_updated_at(migrated_engine: sa.Engine) -> None:
    with session_scope(migrated_engine) as session:
        incident = Incident(question="q")
        session.add(incident)
    before = incident.updated_at
    with session_scope(migrated_engine) as session:
        stored = session.exec(select(Incident)).one()
        stored.status = IncidentStatus.DIAGNOSED
    assert stored.updated_at > before
    assert stored.created_at <= before
