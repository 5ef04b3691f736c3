"""Schema migrations, run from code: `upgrade(url)` is all a deployment needs.

Alembic usually wants an alembic.ini next to the project; a wheel installed in a
container has none, so the configuration is built here and points at the
migrations shipped inside this package. `schema_drift` compares a migrated
database with the SQLModel tables, which is how the tests prove that the
revision scripts and the models agree.

Example::

    revision = upgrade("sqlite:///./var/aoi.db")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine
from sqlmodel import SQLModel

from store import models as _models  # noqa: F401  (registers the tables in the metadata)
from store.db import make_engine, mask_url
from store.errors import SchemaMissing

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK_KEY = 0x414F4944  # "AOID": any constant shared by every aoi process


def alembic_config() -> Config:
    """An Alembic configuration for the packaged migrations, without any ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the packaged migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None before the first upgrade."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(target: str | URL | Engine, *, revision: str = "head") -> str | None:
    """Migrate the database at `target` (a URL or an engine) to `revision`; returns where it is.

    Safe to run again: an up-to-date database is left untouched.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as connection:
            _serialise_upgrades(connection)
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return current_revision(engine)
    finally:
        if engine is not target:
            engine.dispose()


def prepares_itself(engine: Engine) -> bool:
    """Whether `prepare` migrates this database on its own: a writable SQLite file."""
    return engine.dialect.name == "sqlite" and engine.url.query.get("mode") != "ro"


def prepare(engine: Engine) -> str:
    """Make sure the schema at `engine` is this release's; returns its revision.

    A writable SQLite database is created or migrated in place: it belongs to this
    machine, so its first use is its setup. Anywhere else (PostgreSQL, a read-only
    file) schema changes are an operator's step, so a missing or older schema raises
    `SchemaMissing` naming `aoi db upgrade`. A schema newer than this release is
    refused on every back end: an older binary must not write to it.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return head
    where = mask_url(engine.url)
    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        raise SchemaMissing(
            f"the database at {where} is at revision {current}, which this release of aoi does "
            f"not know (its newest is {head}): a newer aoi migrated it; run that version"
        )
    if prepares_itself(engine):
        upgrade(engine)
        return head
    state = "has no tables yet" if current is None else f"is at revision {current}"
    raise SchemaMissing(
        f"the database at {where} {state}; this release needs revision {head}: "
        "run `aoi db upgrade` once (operators do this per release)"
    )


def _serialise_upgrades(connection: Connection) -> None:
    # Replicas (or a Job and a replica) may upgrade at the same moment; on PostgreSQL
    # the first takes this lock until its transaction ends and the others then find
    # the schema current. SQLite already serialises writers on the file lock.
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_UPGRADE_LOCK_KEY)))


def schema_drift(engine: Engine) -> list[Any]:
    """Differences between the database and the models (empty when they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))
