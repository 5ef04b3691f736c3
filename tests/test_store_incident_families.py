"""Revision 0006 and ``store.outcomes``: a lab incident keeps its fault families, split and verdict.

On SQLite and PostgreSQL: the upgrade keeps every existing incident (and its steps
and outcomes: nothing cascades) and marks it as no lab family's,
``record_lab_outcome`` writes the families, the split and a "lab" Outcome together
(or nothing, for a bad argument or an unknown incident), and the downgrade removes
the two columns and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from store.db import make_engine, session_scope
from store.migrate import alembic_config, current_revision, head_revision, schema_drift, upgrade
from store.models import Incident, Outcome, Step
from store.outcomes import LAB_SOURCE, record_lab_outcome
from store.slack import OUTCOME_SOURCES, IncidentNotFound

NEW_COLUMNS = {"families", "split"}
TRUTH = {"detection": True, "components": ["geo"], "system_level": None, "fault_type": None}


def _downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _incident_columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("incidents")}


def _insert_old_incident(engine: sa.Engine) -> None:
    """A lab incident as a 0005 store holds it: scenario id and ground truth, no families."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO incidents (team_id, channel_id, thread_ts, requester, question, "
                "cluster, scenario_id, status, created_at, updated_at, ground_truth) VALUES "
                "('', '', '', 'bench', 'geo fails', 'lab', 'geo-port', 'DIAGNOSED', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :truth)"
            ),
            {"truth": json.dumps(TRUTH)},
        )


def _incident(engine: sa.Engine) -> Incident:
    with session_scope(engine) as session:
        return session.exec(select(Incident)).one()


def _outcomes(engine: sa.Engine) -> list[Outcome]:
    with session_scope(engine) as session:
        return list(session.exec(select(Outcome).order_by(col(Outcome.id))))


def test_0006_upgrades_a_store_with_incidents_and_downgrades_cleanly(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, revision="0005")
        _insert_old_incident(engine)
        assert not _incident_columns(engine) & NEW_COLUMNS

        assert upgrade(engine) == head_revision()
        assert schema_drift(engine) == []
        old = _incident(engine)
        assert (old.families, old.split) == (None, "")
        assert (old.scenario_id, old.ground_truth) == ("geo-port", TRUTH)
        assert old.id is not None
        with session_scope(engine) as session:
            session.add(Step(incident_id=old.id, step_index=0, observation="seen"))

        record_lab_outcome(
            engine, old.id, families=["target_port_misconfig"], split="train", correct=True
        )
        graded = _incident(engine)
        assert (graded.families, graded.split) == (["target_port_misconfig"], "train")
        (outcome,) = _outcomes(engine)
        assert (outcome.source, outcome.correct, outcome.resolved) == (LAB_SOURCE, True, False)
        assert outcome.labelled_by == ""

        _downgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        assert not _incident_columns(engine) & NEW_COLUMNS
        # The incident's rows in other tables survive: nothing cascaded from incidents.
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT scenario_id FROM incidents")).all()
            outcomes = connection.execute(sa.text("SELECT source FROM outcomes")).all()
            steps = connection.execute(sa.text("SELECT observation FROM steps")).all()
        assert [tuple(r) for r in rows] == [("geo-port",)]
        assert [tuple(r) for r in outcomes] == [(LAB_SOURCE,)]
        assert [tuple(r) for r in steps] == [("seen",)]

        upgrade(engine)
        assert schema_drift(engine) == []
        assert _incident(engine).families is None
    finally:
        engine.dispose()


def test_the_lab_source_is_one_the_store_knows() -> None:
    assert LAB_SOURCE in OUTCOME_SOURCES


def _open(engine: sa.Engine) -> int:
    with session_scope(engine) as session:
        incident = Incident(question="q", ground_truth=TRUTH)
        session.add(incident)
        session.flush()
        assert incident.id is not None
        return incident.id


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"families": "pod_kill"}, "list of at most"),
        ({"families": ["pod_kill", ""]}, "family must not be empty"),
        ({"families": ["pod\x00kill"]}, "NUL"),
        ({"families": [f"f{n}" for n in range(17)]}, "at most 16"),
        ({"split": 3}, "split must be a string"),
        ({"correct": None}, "True or False"),
        ({"notes": "x" * 20_001}, "at most 20000"),
    ],
)
def test_a_malformed_record_is_refused_and_nothing_is_written(
    migrated_engine: sa.Engine, arguments: dict[str, Any], message: str
) -> None:
    incident_id = _open(migrated_engine)
    given_args: dict[str, Any] = {
        "families": ["pod_kill"],
        "split": "train",
        "correct": True,
        **arguments,
    }
    with pytest.raises(ValueError, match=message):
        record_lab_outcome(migrated_engine, incident_id, **given_args)
    assert _outcomes(migrated_engine) == []
    assert _incident(migrated_engine).families is None


def test_an_unknown_incident_is_named_and_nothing_is_written(migrated_engine: sa.Engine) -> None:
    with pytest.raises(IncidentNotFound, match="no incident has id 404"):
        record_lab_outcome(
            migrated_engine, 404, families=["pod_kill"], split="train", correct=False
        )
    assert _outcomes(migrated_engine) == []


_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)


@given(
    families=st.lists(_names.filter(str.strip), max_size=4),
    split=st.sampled_from(["train", "held_out", ""]),
    correct=st.booleans(),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_families_and_verdicts_come_back_as_recorded(
    migrated_engine: sa.Engine, families: list[str], split: str, correct: bool
) -> None:
    incident_id = _open(migrated_engine)
    record_lab_outcome(
        migrated_engine, incident_id, families=families, split=split, correct=correct
    )
    with session_scope(migrated_engine) as session:
        incident = session.get(Incident, incident_id)
        outcome = session.exec(select(Outcome).where(col(Outcome.incident_id) == incident_id)).one()
    assert incident is not None
    assert (incident.families, incident.split, incident.ground_truth) == (families, split, TRUTH)
    assert (outcome.correct, outcome.source) == (correct, LAB_SOURCE)
