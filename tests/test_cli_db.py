"""The real `aoi` entry point, run as a subprocess the way people and CI run it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cli import AOI_SCRIPT, assert_one_clean_error, run_aoi

from store.db import table_names
from store.migrate import head_revision, upgrade


def test_entry_point_is_installed() -> None:
    assert AOI_SCRIPT.is_file(), f"run `make setup`: {AOI_SCRIPT} is missing"


@pytest.mark.parametrize("module", [False, True])
def test_help(tmp_path: Path, module: bool) -> None:
    result = run_aoi("--help", cwd=tmp_path, module=module)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "db" in result.stdout


def test_db_help_works_even_with_a_broken_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AOI_MAX_STEPS=ten\n")
    result = run_aoi("db", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "upgrade" in result.stdout
    assert "stats" in result.stdout


def test_upgrade_on_an_empty_sqlite_url_creates_every_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new/aoi.db"
    result = run_aoi("db", "upgrade", cwd=tmp_path, env={"AOI_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout
    engine = sa.create_engine(url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= set(table_names())
    finally:
        engine.dispose()


def test_default_database_is_a_file_under_var(tmp_path: Path) -> None:
    assert run_aoi("db", "upgrade", cwd=tmp_path).returncode == 0
    assert (tmp_path / "var" / "aoi.db").is_file()


def test_stats_json_prints_counts(tmp_path: Path) -> None:
    env = {"AOI_DATABASE_URL": f"sqlite:///{tmp_path}/aoi.db"}
    upgrade(env["AOI_DATABASE_URL"])
    result = run_aoi("db", "stats", "--json", cwd=tmp_path, env=env, module=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dict.fromkeys(sorted(table_names()), 0)


def test_stats_table_for_people(tmp_path: Path) -> None:
    env = {"AOI_DATABASE_URL": f"sqlite:///{tmp_path}/aoi.db"}
    upgrade(env["AOI_DATABASE_URL"])
    result = run_aoi("db", "stats", cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert "proposals" in result.stdout


def test_a_sqlite_store_prepares_itself_on_first_use(tmp_path: Path) -> None:
    env = {"AOI_DATABASE_URL": f"sqlite:///{tmp_path}/new/aoi.db"}
    result = run_aoi("db", "stats", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == set(table_names())
    engine = sa.create_engine(f"sqlite:///{tmp_path}/new/aoi.db")
    with engine.connect() as connection:
        assert connection.scalar(sa.text("select version_num from alembic_version")) == (
            head_revision()
        )
    engine.dispose()


@pytest.mark.postgres
def test_stats_on_an_unmigrated_postgres_says_to_run_upgrade(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {"AOI_DATABASE_URL": postgres_url}
    line = assert_one_clean_error(run_aoi("db", "stats", cwd=tmp_path, env=env), code=1)
    assert "has no tables yet" in line
    assert "aoi db upgrade" in line


@pytest.mark.postgres
def test_a_postgres_store_behind_this_release_is_not_migrated_behind_its_back(
    tmp_path: Path, postgres_url: str
) -> None:
    upgrade(postgres_url, revision="0001")
    env = {"AOI_DATABASE_URL": postgres_url}
    line = assert_one_clean_error(run_aoi("db", "stats", cwd=tmp_path, env=env), code=1)
    assert "is at revision 0001" in line
    assert "aoi db upgrade" in line


def test_a_store_newer_than_this_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/aoi.db"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("update alembic_version set version_num = '9999_future'"))
    engine.dispose()
    line = assert_one_clean_error(
        run_aoi("db", "stats", cwd=tmp_path, env={"AOI_DATABASE_URL": url}), code=1
    )
    assert "9999_future" in line
    assert "newer aoi" in line


def test_unreachable_database(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"AOI_DATABASE_URL": f"postgresql://aoi:hunter2@127.0.0.1:{port}/aoi"}
    line = assert_one_clean_error(run_aoi("db", "upgrade", cwd=tmp_path, env=env), code=1)
    assert f"cannot reach the database at postgresql://aoi:***@127.0.0.1:{port}/aoi" in line
    assert "hunter2" not in line


def test_read_only_database_file(tmp_path: Path) -> None:
    # Tests run as root, which ignores permission bits; SQLite's URI mode=ro really refuses.
    path = tmp_path / "aoi.db"
    path.touch()
    env = {"AOI_DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"}
    line = assert_one_clean_error(run_aoi("db", "upgrade", cwd=tmp_path, env=env), code=1)
    assert "is read-only" in line
    assert str(path) in line


def test_malformed_env_value(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# local settings\nAOI_MAX_STEPS=ten\n")
    line = assert_one_clean_error(run_aoi("db", "stats", cwd=tmp_path), code=2)
    assert line == (
        "error: AOI_MAX_STEPS: Input should be a valid integer, unable to parse string as an "
        "integer (from .env)"
    )


def test_malformed_environment_value(tmp_path: Path) -> None:
    env = {"AOI_DIGEST_SCHEDULE": "every monday"}
    line = assert_one_clean_error(run_aoi("db", "upgrade", cwd=tmp_path, env=env), code=2)
    assert line.startswith("error: AOI_DIGEST_SCHEDULE: ")
    assert line.endswith("(from environment)")


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_aoi("db", "frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
