"""training_runs, training_steps, model_activations; model_versions gains its file's identity.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

The trainer records each run and its per-step metrics; a trained GGUF becomes a
model version, and which version the bot serves is an append-only history of
activations (`aoi models use` / `rollback`), so "who switched the model, when and
why" has an answer and a rollback has something to go back to.

`model_versions` exists since 0001 but nothing wrote it. It gains `sha256`,
`size_bytes`, `run_id` (the training run, SET NULL when the run is deleted) and
`notes`; `base_model` is renamed `base`; the `active` flag is dropped. Nothing
ever read that flag (the bot served AOI_MODEL), so the history starts empty and
the served model does not change with the upgrade; such old rows have no sha256
and are refused when activated (register the file again). The downgrade sets the
flag on the version the newest activation names, then removes what the upgrade
added (runs, steps and the activation history are lost).

SQLite: the new tables are only added. `model_versions` alone is copied (Alembic's
batch "move and copy"), because SQLite cannot add a foreign key to an existing
table in place (a column added with an inline REFERENCES works, but is not
reflected with its ON DELETE, so the schema would not match the models). Copying
is safe here, unlike `incidents` in 0006: when it happens no table references
`model_versions` (its activations are created after the copy, and dropped before
the downgrade's copy), so dropping the old table cascades nowhere.

Frozen: plain SQLAlchemy types only, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_VERSION_RUN_FK = "model_versions_run_id_fkey"


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def _long_text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _run_fk() -> sa.Column[int]:
    return sa.Column(
        "run_id",
        sa.Integer(),
        sa.ForeignKey("training_runs.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "training_runs",
        _id(),
        _time("created_at"),
        _time("finished_at", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _text("kind"),
        _text("base"),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        _text("output_dir"),
        _long_text("error"),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
    )
    op.create_table(
        "training_steps",
        _id(),
        _run_fk(),
        sa.Column("step", sa.Integer(), nullable=False),
        _time("created_at"),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.UniqueConstraint("run_id", "step", name="uq_training_steps_position"),
    )

    with op.batch_alter_table("model_versions", recreate="auto") as batch:
        batch.add_column(sa.Column("sha256", sa.String(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        # Named as PostgreSQL names an unnamed one: the batch copy needs a name.
        batch.create_foreign_key(
            _VERSION_RUN_FK, "training_runs", ["run_id"], ["id"], ondelete="SET NULL"
        )
        batch.add_column(sa.Column("notes", sa.Text(), nullable=False, server_default=""))
        batch.alter_column("base_model", new_column_name="base")
        batch.drop_column("active")
        batch.create_index("ix_model_versions_run_id", ["run_id"])

    op.create_table(
        "model_activations",
        _id(),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True),
        _time("activated_at"),
        _text("actor"),
        _long_text("reason"),
    )
    op.create_index("ix_model_activations_version_id", "model_activations", ["version_id"])


def downgrade() -> None:
    bind = op.get_bind()
    active_id = bind.execute(
        sa.text(
            "SELECT version_id FROM model_activations "
            "WHERE id = (SELECT max(id) FROM model_activations)"
        )
    ).scalar()
    op.drop_index("ix_model_activations_version_id", table_name="model_activations")
    op.drop_table("model_activations")

    with op.batch_alter_table("model_versions", recreate="auto") as batch:
        batch.drop_index("ix_model_versions_run_id")
        batch.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.alter_column("base", new_column_name="base_model")
        batch.drop_column("notes")
        batch.drop_constraint(_VERSION_RUN_FK, type_="foreignkey")
        batch.drop_column("run_id")
        batch.drop_column("size_bytes")
        batch.drop_column("sha256")
    if active_id is not None:
        bind.execute(
            sa.text("UPDATE model_versions SET active = TRUE WHERE id = :id"), {"id": active_id}
        )

    op.drop_table("training_steps")
    op.drop_table("training_runs")
