"""How fast is the approval compare-and-set, and does it hold under real contention?

Spawned processes (stand-ins for bot replicas or double clicks) race to
approve and then claim a fresh proposal per round, on SQLite (WAL, one file)
and on PostgreSQL. Printed per back end and process count: rounds, rounds with
exactly one winner (must equal rounds), median and p95 latency of one
compare-and-set statement under contention, and contended rounds per second.
A JSON line follows the table for machines.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from rich.console import Console
from rich.table import Table

from store.migrate import upgrade
from tests.support.postgres import (
    PostgresUnavailable,
    postgres_server,
    session_database,
    temporary_schema,
)
from tests.support.race import RaceReport, race

ROUNDS = int(os.environ.get("AOI_BENCH_RACE_ROUNDS", "1000"))
PROCESS_COUNTS = (2, 4)


@contextmanager
def _sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="aoi-bench-") as folder:
        yield f"sqlite:///{folder}/race.db"


@contextmanager
def _postgres() -> Iterator[str]:
    with ExitStack() as stack:
        admin = stack.enter_context(postgres_server())
        database = stack.enter_context(session_database(admin))
        yield stack.enter_context(temporary_schema(database))


def _row(backend: str, report: RaceReport) -> dict[str, object]:
    return {
        "backend": backend,
        "processes": report.processes,
        "rounds": report.rounds,
        "one_winner_rounds": report.one_winner_rounds,
        "cas_median_ms": round(report.median_ms, 3),
        "cas_p95_ms": round(report.p95_ms, 3),
        "rounds_per_s": round(report.rounds_per_s, 1),
    }


def measure(backend: str, url: str) -> list[dict[str, object]]:
    rows = []
    for processes in PROCESS_COUNTS:
        upgrade(url)  # once per database in effect; every round gets a fresh proposal anyway
        rows.append(_row(backend, race(url, rounds=ROUNDS, processes=processes)))
    return rows


def main() -> None:
    rows: list[dict[str, object]] = []
    skipped: dict[str, str] = {}
    rows += _measure_with(_sqlite, "sqlite")
    try:
        rows += _measure_with(_postgres, "postgresql")
    except PostgresUnavailable as exc:
        skipped["postgresql"] = str(exc)
    _print_table(rows, skipped)
    print(json.dumps({"bench": "approval_race", "results": rows, "skipped": skipped}))
    if any(row["one_winner_rounds"] != row["rounds"] for row in rows):
        raise AssertionError("a round had more or fewer than one winner")


def _measure_with(
    database: Callable[[], AbstractContextManager[str]], backend: str
) -> list[dict[str, object]]:
    with database() as url:
        return measure(backend, url)


def _print_table(rows: list[dict[str, object]], skipped: dict[str, str]) -> None:
    table = Table(title="approval race: approve then claim, a fresh proposal per round")
    table.add_column("backend", no_wrap=True)
    for column in ("procs", "rounds", "1 winner", "CAS p50 ms", "CAS p95 ms", "rounds/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    for backend, reason in skipped.items():
        table.add_row(backend, "-", "-", "-", "-", "-", f"skipped: {reason}")
    Console(width=100).print(table)
