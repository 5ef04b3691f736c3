"""The tables: everything the bot, the agents and the trainer remember.

One module on purpose: the migrations and the no-drift test compare against this
metadata as a whole, and the trainer reads trajectories across several tables.
Rows carry JSON where the shape belongs to another package (an Observer decision,
an action spec, a ground-truth label) so that those packages can evolve without a
schema change; everything the store itself filters on is a real column.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, enum_column, utcnow


class IncidentStatus(StrEnum):
    OPEN = "OPEN"
    INVESTIGATING = "INVESTIGATING"
    DIAGNOSED = "DIAGNOSED"
    MITIGATED = "MITIGATED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class StepPhase(StrEnum):
    OBSERVE = "observe"
    REASON = "reason"
    ACT = "act"


class ProposalState(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    EXECUTING = "EXECUTING"
    DONE = "DONE"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    STALE = "STALE"


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _optional_time() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


def _json(*, default_factory: Any = None) -> Any:
    if default_factory is None:
        return Field(default=None, sa_type=sa.JSON, nullable=True)
    return Field(default_factory=default_factory, sa_type=sa.JSON, nullable=False)


def _incident_fk() -> Any:
    return Field(foreign_key="incidents.id", index=True, nullable=False, ondelete="CASCADE")


class Incident(SQLModel, table=True):
    """One investigation: a Slack thread, a CLI run or a lab scenario."""

    __tablename__ = "incidents"
    __table_args__ = (sa.Index("ix_incidents_thread", "channel_id", "thread_ts"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = ""
    channel_id: str = ""
    thread_ts: str = ""
    requester: str = ""
    question: str = Field(default="", sa_type=sa.Text)
    cluster: str = ""
    scenario_id: str | None = None
    status: IncidentStatus = Field(
        default=IncidentStatus.OPEN,
        sa_column=enum_column(IncidentStatus, default=IncidentStatus.OPEN, index=True),
    )
    created_at: datetime = _created()
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )
    closed_at: datetime | None = _optional_time()
    ground_truth: dict[str, Any] | None = _json()
    diagnosis: dict[str, Any] | None = _json()


class Step(SQLModel, table=True):
    """One observe / reason / act iteration of the AOI loop, with its cost."""

    __tablename__ = "steps"
    __table_args__ = (sa.UniqueConstraint("incident_id", "step_index", name="uq_steps_position"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = _incident_fk()
    step_index: int
    phase: StepPhase = Field(
        default=StepPhase.OBSERVE,
        sa_column=enum_column(StepPhase, default=StepPhase.OBSERVE),
    )
    prompt_hash: str = ""
    decision: dict[str, Any] | None = _json()
    tool_calls: list[dict[str, Any]] = _json(default_factory=list)
    observation: str = Field(default="", sa_type=sa.Text)
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    created_at: datetime = _created()


class Proposal(SQLModel, table=True):
    """An action the Executor wants to run; nothing runs until a human approves it.

    `state` only moves through `store.proposals` (compare-and-set updates), and
    `version` counts those moves, so two replicas can never both act on one row.
    Moving to APPROVED applies a `store.policy.ApprovalPolicy` in the same statement.
    """

    __tablename__ = "proposals"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = _incident_fk()
    action: str
    action_spec: dict[str, Any] = _json(default_factory=dict)
    target_kind: str = ""
    target_namespace: str = ""
    target_name: str = ""
    target_resource_version: str | None = None
    target_fingerprint: str | None = None  # see agents.executor.proposals.fingerprint
    expected_effect: str = Field(default="", sa_type=sa.Text)
    verification_query: str = Field(default="", sa_type=sa.Text)
    requester: str = ""
    approver: str | None = None
    # What the approve transition admitted the approver by ({"via": "approvers" | "group:S..",
    # "automatic": bool}); execute re-checks it against the approval policy.
    approval: dict[str, Any] | None = _json()
    # Where each value of the action comes from (see agents.executor.provenance); the
    # store filters on restores_only: automatic approvals may only approve restorations.
    provenance: list[dict[str, Any]] | None = _json()
    restores_only: bool = False
    state: ProposalState = Field(
        default=ProposalState.PENDING,
        sa_column=enum_column(ProposalState, default=ProposalState.PENDING, index=True),
    )
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    result: dict[str, Any] | None = _json()
    created_at: datetime = _created()
    decided_at: datetime | None = _optional_time()
    finished_at: datetime | None = _optional_time()
    version: int = 0


class Outcome(SQLModel, table=True):
    """How an incident ended, graded against ground truth when the lab knows it."""

    __tablename__ = "outcomes"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = _incident_fk()
    resolved: bool = False
    root_cause: dict[str, Any] | None = _json()
    correct: bool | None = None
    time_to_detect_s: float | None = None
    time_to_localize_s: float | None = None
    time_to_mitigate_s: float | None = None
    notes: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created()


class Feedback(SQLModel, table=True):
    """A thumbs up or down (and maybe a comment) from someone in the thread."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = _incident_fk()
    slack_user: str
    rating: Rating = Field(sa_column=enum_column(Rating, default=Rating.UP))
    comment: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created()


class Guidance(SQLModel, table=True):
    """Advice the Evolver distilled from failed trajectories, retrieved into prompts."""

    __tablename__ = "guidance"

    id: int | None = Field(default=None, primary_key=True)
    symptom: str = Field(sa_type=sa.Text)
    guidance: str = Field(sa_type=sa.Text)
    source_incident_ids: list[int] = _json(default_factory=list)
    fault_type: str = ""
    created_at: datetime = _created()
    active: bool = Field(default=True, index=True)
    usage_count: int = 0


class ModelVersion(SQLModel, table=True):
    """A trained (or the base) model the runtime can load, with its evaluation."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_model_versions_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    path: str
    base_model: str = ""
    method: str = ""
    metrics: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = _created()
    active: bool = False


class Digest(SQLModel, table=True):
    """A weekly summary posted to Slack: what failed, what was learned."""

    __tablename__ = "digests"

    id: int | None = Field(default=None, primary_key=True)
    period_start: datetime = Field(sa_type=UTCDateTime, nullable=False)
    period_end: datetime = Field(sa_type=UTCDateTime, nullable=False)
    channel: str = ""
    content: dict[str, Any] = _json(default_factory=dict)
    posted_ts: str | None = None
    created_at: datetime = _created()


TABLES: tuple[type[SQLModel], ...] = (
    Incident,
    Step,
    Proposal,
    Outcome,
    Feedback,
    Guidance,
    ModelVersion,
    Digest,
)
