"""steps.messages, prompt_version, guidance_ids: the exact prompt behind each decision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Steps kept only a hash of the Observer's prompt, and not which guidance it
showed, so a training sample could not rebuild what the model saw. A reason step
now keeps the messages themselves (redacted, as the model received them), the
version of the prompt layout that built them, and the ids of the guidance they
included. Rows from before this revision cannot be rebuilt: they keep NULL
messages and guidance ids and an empty prompt version, which readers take as
"not recorded". The downgrade drops the three columns and what they held.

Frozen: plain SQLAlchemy types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("messages", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("prompt_version", sa.String(), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("guidance_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("guidance_ids")
        batch.drop_column("prompt_version")
        batch.drop_column("messages")
