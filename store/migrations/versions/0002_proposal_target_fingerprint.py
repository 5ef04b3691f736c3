"""proposals.target_fingerprint: what a proposal's target looked like, less its status.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A Deployment's resourceVersion moves with every status update (a crash-looping
pod changes it every few seconds), so comparing resourceVersions made proposals
on sick workloads go STALE before anyone could approve them. The fingerprint
covers what a human approves against: identity, spec, data, labels and
annotations. Rows from before this revision keep NULL and are compared by
resourceVersion as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proposals") as batch:
        batch.add_column(sa.Column("target_fingerprint", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proposals") as batch:
        batch.drop_column("target_fingerprint")
