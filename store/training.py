"""What the store remembers of training: each run, how it was configured, and every step's metrics.

The trainer (`trainer/`) writes here as it goes, so a run that crashes at step 40
still shows its first 39 steps, and `aoi models show` can say which run a model
version came from and how its last step looked. Runs move RUNNING → SUCCEEDED |
FAILED | INTERRUPTED through `finish_run` (a compare-and-set: a run finishes once);
a run resumed from a checkpoint is set RUNNING again with `resume_run` and keeps
its row.

Steps are idempotent per (run, step): a resumed run re-recording step 40 replaces
the first step 40 (one upsert statement, so a retry can never leave two). Metric
values must be numbers; a non-finite one (NaN, ±inf: a diverged loss, a zero-length
batch) is stored as null rather than refused, so one bad metric never costs the
step's other metrics or stops training. JSON cannot carry NaN portably (PostgreSQL
refuses it), which is why it is not stored as is.

Example::

    run_id = start_run(engine, base="smollm2.gguf", config=asdict(cfg),
                       dataset={"samples": 640, "held_out": ["k8s_target_port"]},
                       output_dir="var/train/run-3")
    record_step(engine, run_id, 1, {"reward": 0.42, "kl": 0.0, "loss": 0.013})
    finish_run(engine, run_id, status=TrainingStatus.SUCCEEDED, summary={"reward": 0.61})
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from store.db import session_scope
from store.errors import StoreError
from store.models import TrainingRun, TrainingStatus, TrainingStep
from store.outcomes import _checked
from store.slack import MAX_LABEL_CHARS, MAX_NOTE_CHARS
from store.types import utcnow

MAX_PATH_CHARS = 4096
MAX_METRICS = 256
"""Most metric names one step may carry (TRL logs a few dozen)."""
MAX_JSON_BYTES = 1_000_000
"""Largest config, dataset, summary or metrics object, as JSON (a config is a few KB)."""
MAX_STEP = 2**31 - 1
FINAL_STATUSES = frozenset(
    {TrainingStatus.SUCCEEDED, TrainingStatus.FAILED, TrainingStatus.INTERRUPTED}
)


class RunNotFound(StoreError):  # noqa: N818
    """No training run has the given id."""


class RunNotRunning(StoreError):  # noqa: N818
    """The run already finished (finish it once), or is running (resume a finished one only)."""


def start_run(
    engine: Engine,
    *,
    base: str,
    config: Mapping[str, Any],
    dataset: Mapping[str, Any],
    output_dir: str,
    kind: str = "grpo",
) -> int:
    """Record a new RUNNING training run; returns its id.

    ``base``: the base model's path or name; ``config``: the whole training
    configuration and ``dataset`` what the samples were built from, both JSON
    objects (non-finite floats inside become null); ``output_dir``: where its
    checkpoints go. Raises ValueError for a malformed argument (nothing is written).
    """
    run = TrainingRun(
        kind=_checked("kind", kind, limit=MAX_LABEL_CHARS, required=True),
        base=_checked("base", base, limit=MAX_PATH_CHARS, required=True),
        config=json_object("config", config),
        dataset=json_object("dataset", dataset),
        output_dir=_checked("output_dir", output_dir, limit=MAX_PATH_CHARS),
    )
    with session_scope(engine) as session:
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def record_step(engine: Engine, run_id: int, step: int, metrics: Mapping[str, float]) -> None:
    """Record (or replace) the metrics of step ``step`` of run ``run_id``.

    Idempotent per (run, step): recording a step again replaces its metrics. Values
    must be numbers (ints are kept as floats); NaN and ±inf are stored as null.
    The run's ``last_step`` becomes the largest step recorded. Raises ValueError for
    a malformed argument and ``RunNotFound`` for an unknown run (nothing is written).
    """
    step = _step(step)
    values = _metrics(metrics)
    now = utcnow()
    with session_scope(engine) as session:
        # The run's row first: it proves the run exists and takes its lock (PostgreSQL
        # row lock, SQLite file lock) before the step is written.
        newest = sa.case(
            (col(TrainingRun.last_step).is_(None), step),
            (col(TrainingRun.last_step) < step, step),
            else_=col(TrainingRun.last_step),
        )
        updated = session.exec(
            sa.update(TrainingRun).where(col(TrainingRun.id) == run_id).values(last_step=newest),
            execution_options={"synchronize_session": False},
        ).rowcount
        if updated != 1:
            raise RunNotFound(f"no training run has id {run_id}")
        insert = _insert_for(engine)(TrainingStep).values(
            run_id=run_id, step=step, created_at=now, metrics=values
        )
        session.exec(
            insert.on_conflict_do_update(
                index_elements=["run_id", "step"],
                set_={"metrics": insert.excluded.metrics, "created_at": insert.excluded.created_at},
            )
        )


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: TrainingStatus | str,
    summary: Mapping[str, Any] | None = None,
    error: str = "",
) -> TrainingRun:
    """End a RUNNING run with ``status`` (succeeded, failed or interrupted); returns it.

    ``summary``: the final metrics (a JSON object; non-finite floats become null);
    ``error``: what went wrong, kept as text (NUL characters replaced, the end kept
    when it is longer than the store keeps: a failure must always be recordable).
    Raises ValueError for a malformed argument, ``RunNotFound`` for an unknown run
    and ``RunNotRunning`` for a run that already finished.
    """
    final = _final_status(status)
    values: dict[str, Any] = {
        "status": final,
        "finished_at": utcnow(),
        "summary": None if summary is None else json_object("summary", summary),
        "error": _error_text(error),
    }
    with session_scope(engine) as session:
        updated = session.exec(
            sa.update(TrainingRun)
            .where(col(TrainingRun.id) == run_id, col(TrainingRun.status) == TrainingStatus.RUNNING)
            .values(**values),
            execution_options={"synchronize_session": False},
        ).rowcount
        run = session.get(TrainingRun, run_id, populate_existing=True)
        if run is None:
            raise RunNotFound(f"no training run has id {run_id}")
        if updated != 1:
            raise RunNotRunning(
                f"training run {run_id} already finished ({run.status.value}); a resumed "
                "run is set running again with store.training.resume_run first"
            )
        return run


def resume_run(engine: Engine, run_id: int) -> TrainingRun:
    """Set a finished run RUNNING again (resumed from its checkpoint); returns it.

    Its steps and ``last_step`` stay; ``finished_at``, ``summary`` and ``error`` are
    cleared. Raises ``RunNotFound`` for an unknown run and ``RunNotRunning`` (with
    what to do) for one that is running already.
    """
    with session_scope(engine) as session:
        updated = session.exec(
            sa.update(TrainingRun)
            .where(col(TrainingRun.id) == run_id, col(TrainingRun.status) != TrainingStatus.RUNNING)
            .values(status=TrainingStatus.RUNNING, finished_at=None, summary=None, error=""),
            execution_options={"synchronize_session": False},
        ).rowcount
        run = session.get(TrainingRun, run_id, populate_existing=True)
        if run is None:
            raise RunNotFound(f"no training run has id {run_id}")
        if updated != 1:
            raise RunNotRunning(
                f"training run {run_id} is running already: record its steps, or finish it "
                "(status interrupted) if its process is gone, then resume it"
            )
        return run


def get_run(engine: Engine, run_id: int) -> TrainingRun:
    """The run with id ``run_id``; raises ``RunNotFound`` when there is none."""
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
    if run is None:
        raise RunNotFound(f"no training run has id {run_id}")
    return run


def list_runs(
    engine: Engine, *, status: TrainingStatus | str | None = None, limit: int = 50
) -> list[TrainingRun]:
    """The newest ``limit`` runs (newest first), only those with ``status`` when given."""
    query = select(TrainingRun).order_by(col(TrainingRun.id).desc()).limit(max(0, limit))
    if status is not None:
        query = query.where(col(TrainingRun.status) == _status(status))
    with session_scope(engine) as session:
        return list(session.exec(query))


def run_steps(engine: Engine, run_id: int) -> list[TrainingStep]:
    """Every recorded step of run ``run_id``, in step order (empty for an unknown run)."""
    query = (
        select(TrainingStep)
        .where(col(TrainingStep.run_id) == run_id)
        .order_by(col(TrainingStep.step))
    )
    with session_scope(engine) as session:
        return list(session.exec(query))


def last_step(engine: Engine, run_id: int) -> TrainingStep | None:
    """The highest-numbered recorded step of run ``run_id``, or None before the first."""
    query = (
        select(TrainingStep)
        .where(col(TrainingStep.run_id) == run_id)
        .order_by(col(TrainingStep.step).desc())
        .limit(1)
    )
    with session_scope(engine) as session:
        return session.exec(query).first()


def json_object(name: str, value: object) -> dict[str, Any]:
    """``value`` as a JSON object the store can keep (non-finite floats → null), else ValueError."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping (a JSON object), not {type(value).__name__}")
    cleaned = _json_value(name, value)
    size = len(json.dumps(cleaned, allow_nan=False))
    if size > MAX_JSON_BYTES:
        raise ValueError(
            f"{name} is {size} bytes as JSON; the store keeps at most {MAX_JSON_BYTES}"
        )
    assert isinstance(cleaned, dict)
    return cleaned


def _json_value(where: str, value: object) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _checked(where, value, limit=MAX_JSON_BYTES)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a key {key!r} that is not a string")
            _checked(f"a key of {where}", key, limit=MAX_LABEL_CHARS)
            out[key] = _json_value(f"{where}[{key!r}]", item)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(f"{where}[{index}]", item) for index, item in enumerate(value)]
    raise ValueError(
        f"{where} is a {type(value).__name__}, which JSON cannot hold: convert it first "
        "(str() for a path, a list for a set)"
    )


def _metrics(metrics: object) -> dict[str, float | None]:
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"metrics must be a mapping of name to number, not {type(metrics).__name__}"
        )
    if len(metrics) > MAX_METRICS:
        raise ValueError(
            f"{len(metrics)} metrics in one step; the store keeps at most {MAX_METRICS}"
        )
    values: dict[str, float | None] = {}
    for name, value in metrics.items():
        name = _checked("a metric name", name, limit=MAX_LABEL_CHARS, required=True)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {name!r} is {value!r}; metrics must be numbers")
        number = float(value)
        values[name] = number if math.isfinite(number) else None
    return values


def _step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"step must be an integer, not {type(step).__name__}")
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"step {step} is out of range: steps count from 0 up to {MAX_STEP}")
    return step


def _status(status: TrainingStatus | str) -> TrainingStatus:
    try:
        return TrainingStatus(status)
    except ValueError:
        known = ", ".join(member.value for member in TrainingStatus)
        raise ValueError(f"unknown training status {status!r}: use one of {known}") from None


def _final_status(status: TrainingStatus | str) -> TrainingStatus:
    final = _status(status)
    if final not in FINAL_STATUSES:
        known = ", ".join(sorted(member.value for member in FINAL_STATUSES))
        raise ValueError(f"a run finishes as one of {known}, not {final.value}")
    return final


def _error_text(error: object) -> str:
    if not isinstance(error, str):
        raise ValueError(f"error must be a string, not {type(error).__name__}")
    text = error.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_NOTE_CHARS:
        text = "…" + text[-(MAX_NOTE_CHARS - 1) :]
    return text


def _insert_for(engine: Engine) -> Any:
    # Both dialects' INSERT ... ON CONFLICT DO UPDATE: one statement, so a retried or
    # concurrent record of the same step can never leave two rows.
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


__all__ = [
    "FINAL_STATUSES",
    "RunNotFound",
    "RunNotRunning",
    "finish_run",
    "get_run",
    "json_object",
    "last_step",
    "list_runs",
    "record_step",
    "resume_run",
    "run_steps",
    "start_run",
]
