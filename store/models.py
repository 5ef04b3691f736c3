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
    # The bot stopped (restart, crash) while the investigation was running; nobody
    # will resume it, the thread says so.
    INTERRUPTED = "INTERRUPTED"


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


class SlackMessageKind(StrEnum):
    PROGRESS = "progress"
    DIAGNOSIS = "diagnosis"
    PROPOSAL = "proposal"
    NOTE = "note"


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
    """One investigation: a Slack thread, a CLI run or a lab scenario.

    A lab incident carries its answer key (`ground_truth`, a `store.labels.GroundTruth`
    as JSON), the fault `families` its scenario injected and the scenario's `split`
    ("train" or "held_out"), written by the benchmark with an Outcome of source "lab"
    saying whether the attempt succeeded (`store.outcomes.record_lab_outcome`); the
    trainer keeps held-out families out of training by them. Production incidents and
    rows from before revision 0006 leave them NULL and "".
    """

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
    families: list[str] | None = _json()
    split: str = ""
    diagnosis: dict[str, Any] | None = _json()


class Step(SQLModel, table=True):
    """One observe / reason / act iteration of the AOI loop, with its cost.

    A reason step (an Observer decision) keeps the exact prompt the model was sent:
    `messages` (role / content pairs, already redacted: they are built from redacted
    text), `prompt_version` (which prompt layout built them) and `guidance_ids` (the
    Evolver guidance shown, in order), so a training sample can rebuild what the
    Observer saw. `prompt_hash` is the hash of `messages`; `agents.prompts.step_messages`
    reads them back and refuses a row where the two disagree. Observe and act steps,
    and steps written before revision 0005, leave them NULL and "".
    """

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
    messages: list[dict[str, str]] | None = _json()
    prompt_version: str = ""
    guidance_ids: list[str] | None = _json()
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
    # Who graded it: lab | slack_feedback | slack_resolved | console | bot (see store.slack),
    # and the person who did (a Slack user id), empty for automatic outcomes.
    source: str = ""
    labelled_by: str = ""
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
    """A model file the runtime can serve (a trained GGUF), with its evaluation.

    `sha256` and `size_bytes` are the file's at registration: a file that changed
    or vanished since is refused when it is activated or served. `run_id` is the
    training run it came from (NULL for a file registered by hand, or once the run
    is deleted). Which version is served is not a column: it is the newest
    `ModelActivation` (see `store.model_versions`). Revision 0007 renamed
    `base_model` to `base` and dropped the `active` flag nothing read.
    """

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_model_versions_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    path: str
    sha256: str = ""
    size_bytes: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    base: str = ""
    method: str = ""
    run_id: int | None = Field(
        default=None, foreign_key="training_runs.id", index=True, nullable=True, ondelete="SET NULL"
    )
    metrics: dict[str, Any] = _json(default_factory=dict)
    notes: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created()


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


SLACK_KEY_LENGTH = 255
"""The longest Slack event id or post key the store keeps (VARCHAR length, checked first)."""


class SlackEvent(SQLModel, table=True):
    """A Slack event or interaction the bot has taken on; the unique key makes that once only.

    Slack redelivers events it thinks went unanswered, and several replicas may
    receive the same one; the first INSERT of an `event_id` wins (see store.slack).
    """

    __tablename__ = "slack_events"
    __table_args__ = (sa.UniqueConstraint("event_id", name="uq_slack_events_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_type=sa.String(length=SLACK_KEY_LENGTH), nullable=False)
    kind: str = ""
    incident_id: int | None = Field(
        default=None, foreign_key="incidents.id", index=True, nullable=True, ondelete="SET NULL"
    )
    received_at: datetime = _created()


class SlackMessage(SQLModel, table=True):
    """A message the bot posted in an incident's thread, so it can be found and edited later.

    `post_key` is the poster's idempotency key ("" when the message has none); a
    non-empty key is unique. `final` is set once a proposal's message shows its
    final state, so an expiry sweep edits it once only.
    """

    __tablename__ = "slack_messages"
    __table_args__ = (
        sa.Index(
            "uq_slack_messages_post_key",
            "post_key",
            unique=True,
            sqlite_where=sa.text("post_key != ''"),
            postgresql_where=sa.text("post_key != ''"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = _incident_fk()
    proposal_id: int | None = Field(
        default=None, foreign_key="proposals.id", index=True, nullable=True, ondelete="CASCADE"
    )
    kind: SlackMessageKind = Field(
        default=SlackMessageKind.NOTE,
        sa_column=enum_column(SlackMessageKind, default=SlackMessageKind.NOTE),
    )
    channel_id: str
    ts: str
    post_key: str = Field(default="", sa_type=sa.String(length=SLACK_KEY_LENGTH), nullable=False)
    final: bool = False
    created_at: datetime = _created()
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )


class TrainingStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The process stopped (Ctrl-C, a killed Job) before the run finished; resuming it
    # from its last checkpoint sets the same row running again (store.training.resume_run).
    INTERRUPTED = "interrupted"


class TrainingRun(SQLModel, table=True):
    """One training job (GRPO today): what it trained from, with what, and how it ended.

    `config` is the whole training configuration and `dataset` what it was built from
    (sizes, held-out families, prompt versions), both as JSON so the trainer can add
    fields without a schema change. `last_step` is the newest recorded step (NULL
    before the first); `summary` the final metrics. Written by `store.training`.
    """

    __tablename__ = "training_runs"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _created()
    finished_at: datetime | None = _optional_time()
    status: TrainingStatus = Field(
        default=TrainingStatus.RUNNING,
        sa_column=enum_column(TrainingStatus, default=TrainingStatus.RUNNING),
    )
    kind: str = "grpo"
    base: str = ""
    config: dict[str, Any] = _json(default_factory=dict)
    dataset: dict[str, Any] = _json(default_factory=dict)
    output_dir: str = ""
    error: str = Field(default="", sa_type=sa.Text)
    last_step: int | None = None
    summary: dict[str, Any] | None = _json()


class TrainingStep(SQLModel, table=True):
    """The metrics one optimizer step of a run logged ({name: value}; NULL for a non-finite one)."""

    __tablename__ = "training_steps"
    __table_args__ = (sa.UniqueConstraint("run_id", "step", name="uq_training_steps_position"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_runs.id", nullable=False, ondelete="CASCADE")
    step: int
    created_at: datetime = _created()
    metrics: dict[str, float | None] = _json(default_factory=dict)


class ModelActivation(SQLModel, table=True):
    """Someone chose which model version is served; the newest row is the one served.

    Append-only: `aoi models use` and `rollback` add a row, nothing edits one.
    `version_id` NULL means the built-in default (the embedded model).
    """

    __tablename__ = "model_activations"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int | None = Field(
        default=None, foreign_key="model_versions.id", index=True, nullable=True
    )
    activated_at: datetime = _created()
    actor: str = ""
    reason: str = Field(default="", sa_type=sa.Text)


TABLES: tuple[type[SQLModel], ...] = (
    Incident,
    Step,
    Proposal,
    Outcome,
    Feedback,
    Guidance,
    ModelVersion,
    Digest,
    SlackEvent,
    SlackMessage,
    TrainingRun,
    TrainingStep,
    ModelActivation,
)
