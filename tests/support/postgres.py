"""A real PostgreSQL server for tests: the configured one, the local one, or one we start.

Order: `AOI_TEST_DATABASE_URL` when set; else the server development and CI
machines run on 127.0.0.1:5432 (trust auth); else Debian's `postgresql`
package (installed with apt-get when running as root and missing), initialised
in a temporary folder and started on a free loopback port. Each test session
gets a fresh, uniquely named database that is dropped at the end; each test
gets its own schema inside it (selected through the URL's search_path), so
tests never see each other's tables.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.errors
import sqlalchemy as sa
from psycopg import sql

ENV_VAR = "AOI_TEST_DATABASE_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_CONNECT_TIMEOUT_S = 3


class PostgresUnavailable(Exception):  # noqa: N818  (reads as a sentence in except clauses)
    """No PostgreSQL server could be found or started; the message says why."""


class PostgresMisconfigured(Exception):  # noqa: N818  (reads as a sentence in except clauses)
    """The server the environment names does not answer: an error, not a reason to skip."""


def conninfo(url: str) -> str:
    """A psycopg connection string for an SQLAlchemy URL."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def answers(url: str) -> bool:
    """True when a server accepts a connection at `url`."""
    try:
        with psycopg.connect(conninfo(url), connect_timeout=_CONNECT_TIMEOUT_S):
            return True
    except psycopg.Error:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """The admin URL of a reachable server (see module docstring for the order)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        if not answers(explicit):
            raise PostgresMisconfigured(f"{ENV_VAR} is set but nothing answers at {explicit}")
        yield explicit
    elif answers(DEFAULT_ADMIN_URL):
        yield DEFAULT_ADMIN_URL
    else:
        with local_cluster() as url:
            yield url


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server at `admin_url`, dropped afterwards."""
    name = _create_database(admin_url)
    try:
        yield _database_url(admin_url, name)
    finally:
        _drop_database(admin_url, name)


@contextmanager
def session_database(admin_url: str) -> Iterator[str]:
    """A fresh database when the login may create one, else the database in `admin_url`.

    Tests work in schemas of their own either way, so sharing a database that a
    CI service handed out without CREATEDB rights is safe.
    """
    try:
        name = _create_database(admin_url)
    except psycopg.errors.InsufficientPrivilege:
        yield admin_url
        return
    try:
        yield _database_url(admin_url, name)
    finally:
        _drop_database(admin_url, name)


def _create_database(admin_url: str) -> str:
    name = f"aoi_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo(admin_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(conninfo(admin_url), autocommit=True) as connection:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        connection.execute(statement.format(sql.Identifier(name)))


def _database_url(admin_url: str, name: str) -> str:
    url = sa.make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


@contextmanager
def temporary_schema(database_url: str) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo(database_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = sa.make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo(database_url), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def _initdb() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    return Path(found[-1]) if found else None


def _major_version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _install_postgresql() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailable(
            "no PostgreSQL server answers and Debian's postgresql package is missing; "
            f"install it (apt-get install postgresql) or set {ENV_VAR}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "postgresql"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(f"apt-get install postgresql failed: {result.stderr[-500:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package creates this user.
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def local_cluster() -> Iterator[str]:
    """Start a throw-away cluster on a free loopback port; stop and delete it afterwards."""
    initdb = _initdb()
    if initdb is None:
        _install_postgresql()
        initdb = _initdb()
    if initdb is None:
        raise PostgresUnavailable("postgresql is installed but no initdb was found")
    pg_ctl = initdb.with_name("pg_ctl")
    data = Path(tempfile.mkdtemp(prefix="aoi-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(data, account.pw_uid, account.pw_gid)
    port = _free_port()
    try:
        _run(
            _as_postgres_user(
                [str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
            )
        )
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            _as_postgres_user(
                [
                    str(pg_ctl),
                    "-D",
                    str(data),
                    "-l",
                    str(data / "log"),
                    "-o",
                    options,
                    "-w",
                    "start",
                ]
            )
        )
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run(_as_postgres_user([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]))
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command[:6])} failed ({result.returncode}): {result.stderr.strip()[-500:]}"
        )
