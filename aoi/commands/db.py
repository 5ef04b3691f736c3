"""`aoi db`: create or migrate the incident store and count what it holds.

On PostgreSQL operators run `aoi db upgrade` once per release (the bot and the
CLI never migrate a shared server behind their back; they say when it is
needed). A local SQLite file prepares itself on first use. `aoi db stats` shows
that trajectories, proposals and feedback are being recorded.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aoi.settings import load_settings
from aoi.wiring import store_engine
from store import migrate
from store.db import mask_url, stats

app = typer.Typer(
    help="The incident store: create or migrate its tables, count its rows.",
    no_args_is_help=True,
)


@app.command()
def upgrade() -> None:
    """Create the tables or migrate them to the newest revision (safe to repeat)."""
    settings = load_settings()
    revision = migrate.upgrade(settings.database_url)
    typer.echo(f"database {mask_url(settings.database_url)} is at revision {revision}")


@app.command(name="stats")
def show_stats(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: table name -> row count.")
    ] = False,
) -> None:
    """Row counts per table."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        counts = stats(engine)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(counts, sort_keys=True))
        return
    table = Table(title=escape(f"incident store at {mask_url(settings.database_url)}"))
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in counts.items():
        table.add_row(name, str(count))
    Console().print(table)
