"""The `aoi` command: one entry point for the bot, the lab, training and the store.

Each group lives in `aoi.commands.<group>` and is registered below with
`app.add_typer`. `main` is the console script: it turns the errors a person can
fix (a bad setting, an unreachable or read-only database) into one line on
stderr and an exit code, never a traceback. Exit codes: 0 ok, 1 runtime
failure (the database), 2 bad settings or bad command-line usage.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from agents.llm import ModelError
from agents.tools.identity import UnsafeObserver
from aoi.commands import bench, bot, db, doctor, investigate, lab, models, train
from aoi.errors import SettingsError
from bot.slack_api import SlackUnavailable
from lab.errors import LabError
from store.errors import StoreError

EXIT_RUNTIME = 1
EXIT_SETTINGS = 2

app = typer.Typer(
    name="aoi",
    help=(
        "AOI ChatOps: investigate Kubernetes incidents read-only with local LLM agents; "
        "change nothing without a human's approval. Settings come from AOI_* environment "
        "variables and ./.env (see .env.example)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(lab.app, name="lab")
app.add_typer(models.app, name="models")
app.add_typer(train.app, name="train")
app.command(name="investigate")(investigate.investigate)
app.command(name="run")(investigate.run)
app.command(name="doctor")(doctor.doctor)
app.command(name="bot")(bot.bot)
app.command(name="bench")(bench.bench)


def _version() -> str:
    try:
        return version("aoi-chatops")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"aoi {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version),
    ] = False,
) -> None:
    """Top-level options; settings are read by each command, so --help always works."""


def _fail(lines: list[str], *, code: int) -> None:
    # Plain writes, not rich: a console would wrap long lines and break "one line per error".
    for line in lines:
        sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main() -> None:
    """Console-script entry point (`aoi`, `python -m aoi`)."""
    try:
        app()
    except SettingsError as exc:
        _fail([str(problem) for problem in exc.problems], code=EXIT_SETTINGS)
    except UnsafeObserver as exc:
        _fail([str(exc)], code=EXIT_SETTINGS)
    except (StoreError, LabError, ModelError) as exc:
        _fail([" ".join(str(exc).split())], code=EXIT_RUNTIME)
    except SlackUnavailable as exc:
        _fail(
            [
                f"{' '.join(str(exc).split())}: check AOI_SLACK_BOT_TOKEN, AOI_SLACK_APP_TOKEN "
                "and AOI_SLACK_API_URL (`aoi doctor` checks them)"
            ],
            code=EXIT_RUNTIME,
        )
