"""proposals.approval, provenance, restores_only: who admitted an approval, where values come from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

The approve transition now applies an approval policy and records what admitted
the approver (`approval`), so `execute` can check it again. Each proposal also
says, value by value, whether it restores something the target had before or
sets a new value (`provenance`), and `restores_only` lets the approve statement
itself refuse an automatic approval of anything new. Rows from before this
revision have no provenance and count as new values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proposals") as batch:
        batch.add_column(sa.Column("approval", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("restores_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("proposals") as batch:
        batch.drop_column("restores_only")
        batch.drop_column("provenance")
        batch.drop_column("approval")
