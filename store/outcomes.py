"""How a graded lab attempt is remembered: its fault families, its split, and whether it succeeded.

The benchmark knows, for each incident it ran, which fault families the scenario
injected, which split (train / held_out) the scenario belongs to, and whether the
agent's answer passed AIOpsLab's grader. The trainer needs all three to build
samples (only successful trajectories, no held-out family in training) and may not
import the lab, so the benchmark writes them here, next to the ground truth the
incident was opened with. One transaction: the incident's families and split, and
an Outcome of source "lab" with the verdict, are written together or not at all.

Example::

    record_lab_outcome(engine, finished.incident_id, families=scenario.families,
                       split=scenario.split, correct=verdict.success, notes=verdict.detail)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from store.db import session_scope
from store.models import Incident, Outcome
from store.slack import MAX_LABEL_CHARS, MAX_NOTE_CHARS, IncidentNotFound, checked_text
from store.types import utcnow

LAB_SOURCE = "lab"
"""The Outcome source of a benchmark verdict (one of ``store.slack.OUTCOME_SOURCES``)."""
MAX_FAMILIES = 16


def record_lab_outcome(
    engine: Engine,
    incident_id: int,
    *,
    families: Sequence[str],
    split: str,
    correct: bool,
    resolved: bool = False,
    notes: str = "",
) -> Outcome:
    """Record a lab attempt's families, split and verdict; returns the new Outcome.

    ``correct``: whether the graded answer passed; ``resolved``: whether the fault is
    gone (mitigation tasks). Raises ValueError for a malformed argument (nothing is
    written then) and ``IncidentNotFound`` for an unknown id.
    """
    if isinstance(families, str) or len(families) > MAX_FAMILIES:
        raise ValueError(f"families must be a list of at most {MAX_FAMILIES} family names")
    names = [_checked("family", name, limit=MAX_LABEL_CHARS, required=True) for name in families]
    split = _checked("split", split, limit=MAX_LABEL_CHARS)
    notes = _checked("notes", notes, limit=MAX_NOTE_CHARS)
    if not isinstance(correct, bool) or not isinstance(resolved, bool):
        raise ValueError("correct and resolved must be True or False")
    outcome = Outcome(
        incident_id=incident_id,
        resolved=resolved,
        correct=correct,
        notes=notes,
        source=LAB_SOURCE,
    )
    with session_scope(engine) as session:
        updated = session.exec(
            sa.update(Incident)
            .where(col(Incident.id) == incident_id)
            .values(families=names, split=split, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        ).rowcount
        if updated != 1:
            raise IncidentNotFound(f"no incident has id {incident_id}")
        session.add(outcome)
    return outcome


def _checked(name: str, value: object, *, limit: int, required: bool = False) -> str:
    """``value`` if it is text the store can keep (``store.slack.checked_text``), else a
    ValueError; a required value of only spaces is empty too."""
    text = checked_text(name, value, limit=limit, required=required)
    if required and not text.strip():
        raise ValueError(f"{name} must not be empty")
    return text
