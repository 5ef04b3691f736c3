"""Database failures arrive as StoreErrors that name the URL (password masked) and a next step."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.db import make_engine, mask_url, parse_url, session_scope, stats
from store.errors import (
    DatabaseBusy,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DiskFull,
    UnsupportedDatabase,
)
from store.migrate import upgrade
from store.models import Incident


def _add_incident(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        session.add(Incident(question="q"))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there now


def test_unreachable_server_names_the_masked_url() -> None:
    url = f"postgresql://aoi:hunter2@127.0.0.1:{_closed_port()}/aoi"
    with pytest.raises(DatabaseUnavailable) as caught:
        upgrade(url)
    message = str(caught.value)
    assert "hunter2" not in message
    assert f"postgresql://aoi:***@127.0.0.1:{url.split(':')[3]}" in message
    assert "Check that the server is running" in message


@pytest.mark.postgres
def test_missing_postgres_database_says_create_it(postgres_database_url: str) -> None:
    url = sa.make_url(postgres_database_url).set(database="aoi_no_such_database")
    with pytest.raises(DatabaseUnavailable, match=r"does not exist.*Create it"):
        stats(make_engine(url))


def test_read_only_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "aoi.db"
    upgrade(f"sqlite:///{path}")
    # Root ignores permission bits, so read-only is asked of SQLite itself (URI mode=ro).
    engine = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert stats(engine)["incidents"] == 0
    with pytest.raises(DatabaseReadOnly, match=r"read-only.*mode=ro") as caught:
        _add_incident(engine)
    assert f"sqlite:///file:{path}?mode=ro&uri=true" in str(caught.value)


@pytest.mark.postgres
def test_read_only_postgres_transaction(postgres_url: str) -> None:
    upgrade(postgres_url)
    read_only = sa.make_url(postgres_url)
    options = f"{read_only.query['options']} -cdefault_transaction_read_only=on"
    engine = make_engine(read_only.update_query_dict({"options": options}))
    with pytest.raises(DatabaseReadOnly, match="read-only"):
        _add_incident(engine)


def test_full_disk(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/aoi.db")
    upgrade(engine)
    with engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
        # SQLite reports a capped file exactly like a full disk: SQLITE_FULL.
        connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DiskFull, match=r"full \(database or disk is full\).*Free disk space"):
            connection.execute(sa.insert(Incident), [{"question": "x" * 100_000}])


def test_locked_file_reports_busy(tmp_path: Path) -> None:
    path = tmp_path / "aoi.db"
    upgrade(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        engine = make_engine(f"sqlite:///{path}", busy_timeout_s=0.1)
        with pytest.raises(DatabaseBusy, match="locked"):
            _add_incident(engine)
    finally:
        holder.rollback()
        holder.close()


def test_folder_that_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseUnavailable, match=r"cannot create the folder .*a-file"):
        make_engine(f"sqlite:///{blocker}/aoi.db")


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(DatabaseUnavailable, match="not a database"):
        upgrade(f"sqlite:///{path}")


def test_missing_folder_is_created(tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path}/deep/er/aoi.db")
    assert (tmp_path / "deep" / "er" / "aoi.db").is_file()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "oracle://x"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(UnsupportedDatabase, match="postgresql://"):
        parse_url(url)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgres_urls_use_psycopg3(scheme: str) -> None:
    assert parse_url(f"{scheme}://u@h/db").drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///./var/aoi.db", "sqlite:///./var/aoi.db"),
        ("sqlite:///file:/x.db?mode=ro&uri=true", "sqlite:///file:/x.db?mode=ro&uri=true"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "secret" not in mask_url(sa.make_url(url))
