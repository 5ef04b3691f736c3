"""Shared fixtures: real SQLite files and a real PostgreSQL server, never mocks.

PostgreSQL comes from `support.postgres` (the server named by
AOI_TEST_DATABASE_URL, else the local one, else a throw-away cluster of Debian's
package); when none can be had, PostgreSQL tests are skipped with the reason,
but a configured server that does not answer fails them. `database_url` runs a
test once per back end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.postgres import (
    PostgresMisconfigured,
    PostgresUnavailable,
    postgres_server,
    session_database,
    temporary_schema,
)

from store.db import make_engine
from store.migrate import upgrade


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh database for this test session on a real server; dropped at the end."""
    stack = ExitStack()
    try:
        admin_url = stack.enter_context(postgres_server())
        url = stack.enter_context(session_database(admin_url))
    except PostgresMisconfigured as exc:
        stack.close()
        pytest.fail(str(exc), pytrace=False)
    except PostgresUnavailable as exc:
        stack.close()
        pytest.skip(f"no PostgreSQL for these tests: {exc}")
    with stack:
        yield url


@pytest.fixture
def postgres_url(postgres_database_url: str) -> Iterator[str]:
    """A URL whose connections use a schema of this test's own (dropped afterwards)."""
    with temporary_schema(postgres_database_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet, in a folder that does not exist yet."""
    return f"sqlite:///{tmp_path}/var/aoi.db"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each back end in turn: an empty SQLite file, then an empty PostgreSQL schema."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a database upgraded to the newest revision."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
