"""The fallback server: a throw-away cluster of Debian's PostgreSQL, started and removed again.

The suite normally finds a running server; this proves that a fresh machine
without one still runs the PostgreSQL tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.postgres import answers, local_cluster, session_database, temporary_schema

from store.db import make_engine, stats
from store.migrate import upgrade


@pytest.mark.postgres
@pytest.mark.slow
def test_throw_away_cluster_serves_the_store() -> None:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("Debian's postgresql package is not installed (the fixture would install it)")
    with local_cluster() as admin_url:
        assert answers(admin_url)
        with session_database(admin_url) as database_url, temporary_schema(database_url) as url:
            engine = make_engine(url)
            upgrade(engine)
            assert stats(engine)["proposals"] == 0
            engine.dispose()
    assert not answers(admin_url)
