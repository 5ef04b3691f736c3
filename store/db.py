"""Engines, sessions and row counts for SQLite files and PostgreSQL servers.

Why a module of its own: the two back ends need different care. SQLite needs its
folder created, a busy timeout (two bot replicas or the CLI and the bot write the
same file), write-ahead logging and foreign keys switched on per connection.
PostgreSQL URLs are rewritten to the psycopg 3 driver, which is the one we ship.
Every engine made here translates driver failures into `store.errors` types whose
messages a person can act on.

Example::

    engine = make_engine("sqlite:///./var/aoi.db")
    with session_scope(engine) as session:
        session.add(Incident(question="checkout is slow"))
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

from store import models as _models  # noqa: F401  (registers the tables in the metadata)
from store.errors import DatabaseUnavailable, SchemaMissing, UnsupportedDatabase
from store.translate import translate_error

DEFAULT_BUSY_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 5
_POSTGRES_ALIASES = ("postgres", "postgresql", "postgresql+psycopg")


def parse_url(url: str | URL) -> URL:
    """Parse a database URL and pin PostgreSQL to psycopg 3 (`postgresql://` is accepted)."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError as exc:
        raise UnsupportedDatabase(
            f"cannot parse the database URL {mask_url(url)!r}: write it like "
            "sqlite:///./var/aoi.db or postgresql://user:password@host:5432/dbname"
        ) from exc
    if parsed.drivername in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed
    raise UnsupportedDatabase(
        f"unsupported database URL {mask_url(parsed)}: use sqlite:///PATH or "
        "postgresql://user:password@host:port/dbname"
    )


def mask_url(url: str | URL) -> str:
    """The URL as written, with its password replaced by ***, safe for logs and Slack."""
    if isinstance(url, URL):
        # Rendering percent-escapes the path (file: URIs); people wrote it unescaped.
        return unquote(url.render_as_string(hide_password=True))
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    credentials, _, host = netloc.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    masked_credentials = f"{user}:***" if has_password else user
    return f"{scheme}://{masked_credentials}@{host}{slash}{path}"


def make_engine(url: str | URL, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """An engine for `url` whose driver errors arrive as `store.errors` types.

    SQLite: the file's folder is created, connections wait up to `busy_timeout_s`
    for a lock, use WAL and enforce foreign keys. A read-only file is opened with
    `sqlite:///file:PATH?mode=ro&uri=true`. PostgreSQL: `postgresql://` and
    `postgres://` mean psycopg 3; connecting gives up after a few seconds.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, busy_timeout_s=busy_timeout_s)
    else:
        engine = sa.create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S},
        )
    _install_error_translation(engine, masked=mask_url(url))
    return engine


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL (plain or `file:` URI form); None when in memory."""
    database = url.database or ""
    if url.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def _sqlite_engine(url: URL, *, busy_timeout_s: float) -> Engine:
    path = sqlite_path(url)
    if path is None:
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args=_sqlite_args())
    else:
        if url.query.get("mode") != "ro":
            _create_folder(path, masked=mask_url(url))
        if url.query.get("uri") != "true" and (url.database or "").startswith("~"):
            url = url.set(database=str(path))
        engine = sa.create_engine(url, connect_args=_sqlite_args(timeout=busy_timeout_s))
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _sqlite_args(*, timeout: float = DEFAULT_BUSY_TIMEOUT_S) -> dict[str, Any]:
    # Threads: the bot hands store calls to worker threads; the pool still gives
    # each connection to one thread at a time.
    return {"timeout": timeout, "check_same_thread": False}


def _create_folder(path: Path, *, masked: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the folder {path.parent} for the database at {masked}: "
            f"{exc.strerror}. Create it yourself or point the URL somewhere writable."
        ) from exc


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        # A read-only file keeps its journal mode; writes then fail with a clear error.
        with suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _install_error_translation(engine: Engine, *, masked: str) -> None:
    def handle_error(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # let the pool reconnect quietly
        translated = translate_error(context.original_exception, masked=masked)
        if translated is not None:
            raise translated from context.original_exception

    event.listen(engine, "handle_error", handle_error)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    Objects stay readable after the commit (no expiry), so they can be handed to
    code that runs after the block.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def table_names() -> list[str]:
    """Every table the store defines, in dependency order."""
    return [table.name for table in SQLModel.metadata.sorted_tables]


def stats(engine: Engine) -> dict[str, int]:
    """Row counts per table, alphabetically; raises SchemaMissing before the first upgrade."""
    with engine.connect() as connection:
        present = set(sa.inspect(connection).get_table_names())
        expected = sorted(table_names())
        missing = [name for name in expected if name not in present]
        if missing:
            raise SchemaMissing(
                f"the database at {mask_url(engine.url)} lacks the tables {', '.join(missing)}: "
                "create them with `aoi db upgrade` (store.migrate.upgrade)"
            )
        tables = SQLModel.metadata.tables
        count = sa.select(sa.func.count())
        return {
            name: int(connection.execute(count.select_from(tables[name])).scalar_one())
            for name in expected
        }


__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "make_engine",
    "mask_url",
    "parse_url",
    "session_scope",
    "sqlite_path",
    "stats",
    "table_names",
]
