"""Turns SQLite and PostgreSQL driver errors into `store.errors` types with next steps.

Driver messages say what broke but not what to do, and they never say which
database: with a settings file, a CLI flag and an environment variable in play,
"which URL was that?" is the first question. Classification uses the drivers'
error codes (SQLite result codes, PostgreSQL SQLSTATE), not message text.
"""

from __future__ import annotations

import sqlite3

import psycopg

from store.errors import (
    DatabaseBusy,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DiskFull,
    StoreError,
)

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_READ_ONLY_HINT = (
    "Point the URL at a writable file or server, or fix its permissions "
    "(a SQLite URL with mode=ro never allows writes)."
)
_FULL_HINT = "Free disk space or move the database elsewhere, then retry."
_UNAVAILABLE_HINT = "Check that the server is running and reachable and that the URL is right."
_BUSY_HINT = (
    "Another process held the write lock too long: retry, and look for a stuck process "
    "using the same file (several bot replicas should share PostgreSQL, not SQLite)."
)


def translate_error(exc: BaseException, *, masked: str) -> StoreError | None:
    """The StoreError for a driver exception, or None when it is not one we recognise."""
    if isinstance(exc, sqlite3.Error):
        return _translate_sqlite(exc, masked=masked)
    if isinstance(exc, psycopg.Error):
        return _translate_postgres(exc, masked=masked)
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _connect_sqlstate(reason: str) -> str:
    # Errors while connecting arrive without a SQLSTATE; only the server's text tells.
    if "FATAL" not in reason:
        return ""
    if "database" in reason and "does not exist" in reason:
        return "3D000"
    if ("role" in reason and "does not exist" in reason) or "authentication failed" in reason:
        return "28000"
    return ""


def _translate_sqlite(exc: sqlite3.Error, *, masked: str) -> StoreError | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    reason = _first_line(exc)
    if primary == _SQLITE_READONLY:
        return _read_only(masked, reason)
    if primary == _SQLITE_FULL:
        return _disk_full(masked, reason)
    if primary in (_SQLITE_CANTOPEN, _SQLITE_NOTADB):
        return DatabaseUnavailable(
            f"cannot open the SQLite database at {masked} ({reason}). Check that the path "
            "exists, is a SQLite file, and that its folder is readable and writable."
        )
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return DatabaseBusy(f"the database at {masked} is locked ({reason}). {_BUSY_HINT}")
    return None


def _translate_postgres(exc: psycopg.Error, *, masked: str) -> StoreError | None:
    reason = _first_line(exc)
    state = exc.sqlstate or _connect_sqlstate(reason)
    if state == "25006":
        return _read_only(masked, reason)
    if state == "53100":
        return _disk_full(masked, reason)
    if state == "3D000":
        return DatabaseUnavailable(
            f"the database named in {masked} does not exist ({reason}). Create it "
            "(createdb NAME) or fix the URL."
        )
    if state in ("28000", "28P01"):
        return DatabaseUnavailable(
            f"the server at {masked} refused the login ({reason}). Check the user and password."
        )
    if (
        state.startswith("08")
        or state.startswith("57P")
        or (not state and isinstance(exc, psycopg.OperationalError))
    ):
        return DatabaseUnavailable(
            f"cannot reach the database at {masked} ({reason}). {_UNAVAILABLE_HINT}"
        )
    return None


def _read_only(masked: str, reason: str) -> DatabaseReadOnly:
    return DatabaseReadOnly(f"the database at {masked} is read-only ({reason}). {_READ_ONLY_HINT}")


def _disk_full(masked: str, reason: str) -> DiskFull:
    return DiskFull(f"the disk holding the database at {masked} is full ({reason}). {_FULL_HINT}")
