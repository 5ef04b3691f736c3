"""incidents.families, incidents.split: which fault families a lab incident injected.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

A lab incident kept its scenario id and ground truth, but not the fault families
it injected nor the split (train / held_out) its scenario belongs to, so the
trainer could not keep held-out families out of training without importing the
lab's catalogue. The benchmark now records both when it grades an attempt (with
an Outcome of source "lab" saying whether the attempt succeeded). Older rows and
production incidents keep NULL families and an empty split, which readers take
as "no lab family". The downgrade drops the two columns and what they held.

On SQLite the columns are added and dropped in place (``recreate="never"``; SQLite
3.35 and later drop a plain column natively): recreating ``incidents`` would drop
the old table, and with foreign keys on (the store turns them on, and a migration's
transaction cannot turn them off) that cascades to every step, proposal, outcome and
message of every incident.

Frozen: plain SQLAlchemy types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", recreate="never") as batch:
        batch.add_column(sa.Column("families", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("split", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("incidents", recreate="never") as batch:
        batch.drop_column("split")
        batch.drop_column("families")
