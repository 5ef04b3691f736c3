"""Initial tables: incidents, steps, proposals, outcomes, feedback, guidance, models, digests.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Frozen: types are spelled out with plain SQLAlchemy types (no imports from the
models) so later model edits cannot silently change what this revision creates.
Enums are VARCHAR(16) holding the enum values; timestamps carry a time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _long_text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=False)


def _enum(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=16), nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(), nullable=nullable)


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def _incident_fk() -> sa.Column[int]:
    return sa.Column(
        "incident_id",
        sa.Integer(),
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "incidents",
        _id(),
        _text("team_id"),
        _text("channel_id"),
        _text("thread_ts"),
        _text("requester"),
        _long_text("question"),
        _text("cluster"),
        _text("scenario_id", nullable=True),
        _enum("status"),
        _time("created_at"),
        _time("updated_at"),
        _time("closed_at", nullable=True),
        _json("ground_truth", nullable=True),
        _json("diagnosis", nullable=True),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_incidents_thread", "incidents", ["channel_id", "thread_ts"])

    op.create_table(
        "steps",
        _id(),
        _incident_fk(),
        _int("step_index"),
        _enum("phase"),
        _text("prompt_hash"),
        _json("decision", nullable=True),
        _json("tool_calls", nullable=False),
        _long_text("observation"),
        _int("tokens_in"),
        _int("tokens_out"),
        _int("latency_ms"),
        _time("created_at"),
        sa.UniqueConstraint("incident_id", "step_index", name="uq_steps_position"),
    )
    op.create_index("ix_steps_incident_id", "steps", ["incident_id"])

    op.create_table(
        "proposals",
        _id(),
        _incident_fk(),
        _text("action"),
        _json("action_spec", nullable=False),
        _text("target_kind"),
        _text("target_namespace"),
        _text("target_name"),
        _text("target_resource_version", nullable=True),
        _long_text("expected_effect"),
        _long_text("verification_query"),
        _text("requester"),
        _text("approver", nullable=True),
        _enum("state"),
        _time("expires_at"),
        _json("result", nullable=True),
        _time("created_at"),
        _time("decided_at", nullable=True),
        _time("finished_at", nullable=True),
        _int("version"),
    )
    op.create_index("ix_proposals_incident_id", "proposals", ["incident_id"])
    op.create_index("ix_proposals_state", "proposals", ["state"])

    op.create_table(
        "outcomes",
        _id(),
        _incident_fk(),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        _json("root_cause", nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("time_to_detect_s", sa.Float(), nullable=True),
        sa.Column("time_to_localize_s", sa.Float(), nullable=True),
        sa.Column("time_to_mitigate_s", sa.Float(), nullable=True),
        _long_text("notes"),
        _time("created_at"),
    )
    op.create_index("ix_outcomes_incident_id", "outcomes", ["incident_id"])

    op.create_table(
        "feedback",
        _id(),
        _incident_fk(),
        _text("slack_user"),
        _enum("rating"),
        _long_text("comment"),
        _time("created_at"),
    )
    op.create_index("ix_feedback_incident_id", "feedback", ["incident_id"])

    op.create_table(
        "guidance",
        _id(),
        _long_text("symptom"),
        _long_text("guidance"),
        _json("source_incident_ids", nullable=False),
        _text("fault_type"),
        _time("created_at"),
        sa.Column("active", sa.Boolean(), nullable=False),
        _int("usage_count"),
    )
    op.create_index("ix_guidance_active", "guidance", ["active"])

    op.create_table(
        "model_versions",
        _id(),
        _text("name"),
        _text("path"),
        _text("base_model"),
        _text("method"),
        _json("metrics", nullable=False),
        _time("created_at"),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("name", name="uq_model_versions_name"),
    )

    op.create_table(
        "digests",
        _id(),
        _time("period_start"),
        _time("period_end"),
        _text("channel"),
        _json("content", nullable=False),
        _text("posted_ts", nullable=True),
        _time("created_at"),
    )


def downgrade() -> None:
    for table in (
        "digests",
        "model_versions",
        "guidance",
        "feedback",
        "outcomes",
        "proposals",
        "steps",
        "incidents",
    ):
        op.drop_table(table)
