"""slack_events, slack_messages; outcomes.source and labelled_by: what the Slack bot remembers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

`slack_events` holds one row per Slack event or interaction the bot took on; its
unique `event_id` is what makes a redelivered event, or one two replicas
received, run once. `slack_messages` holds the messages the bot posted in a
thread (progress, diagnosis, proposal, note) so that a restarted bot can find
and edit them; a non-empty `post_key` is unique (a partial index: "" means no
key). Outcomes say who graded them (`source`, `labelled_by`); older rows get "".
The new incident status INTERRUPTED needs no DDL (statuses are VARCHAR(16));
the downgrade turns it into FAILED, which older releases know.

Frozen: plain SQLAlchemy types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_LENGTH = 255


def upgrade() -> None:
    op.create_table(
        "slack_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(length=_KEY_LENGTH), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_slack_events_event_id"),
    )
    op.create_index("ix_slack_events_incident_id", "slack_events", ["incident_id"])

    op.create_table(
        "slack_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "proposal_id",
            sa.Integer(),
            sa.ForeignKey("proposals.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel_id", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("post_key", sa.String(length=_KEY_LENGTH), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_slack_messages_incident_id", "slack_messages", ["incident_id"])
    op.create_index("ix_slack_messages_proposal_id", "slack_messages", ["proposal_id"])
    op.create_index(
        "uq_slack_messages_post_key",
        "slack_messages",
        ["post_key"],
        unique=True,
        sqlite_where=sa.text("post_key != ''"),
        postgresql_where=sa.text("post_key != ''"),
    )

    with op.batch_alter_table("outcomes") as batch:
        batch.add_column(sa.Column("source", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("labelled_by", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("outcomes") as batch:
        batch.drop_column("labelled_by")
        batch.drop_column("source")
    op.drop_table("slack_messages")
    op.drop_table("slack_events")
    op.execute("UPDATE incidents SET status = 'FAILED' WHERE status = 'INTERRUPTED'")
