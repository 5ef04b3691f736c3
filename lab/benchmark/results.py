"""What a benchmark run records, how it resumes, and the paper's metrics over it.

Each finished attempt is written to ``results.json`` at once (atomically), so a
crash halfway keeps every finished task and a rerun with the same settings
continues where it stopped; a rerun with other settings is refused rather than
mixing two experiments in one file.

Metrics follow the AOI paper: for each task, attempt 1's success gives avg@1;
the mean of its K attempts gives avg@K; whether any attempt succeeded gives
best@K. Each is averaged over tasks, overall and per task type, with the
standard deviation across attempts (the suite's accuracy per attempt index).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.errors import LabError
from store.labels import TASK_TYPES

RESULTS_FILE = "results.json"
FORMAT = 1


class BenchmarkError(LabError):
    """A benchmark cannot run as asked; the message says what to do."""


class AttemptResult(BaseModel):
    """One scenario, one attempt: the verdict and what it cost."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    attempt: int
    task_type: str
    app: str
    families: list[str]
    split: str
    source: str
    success: bool
    score: float
    detail: str
    valid: bool
    """Whether the submission had the task's shape (a malformed one is an invalid submission)."""
    answer: Any = None
    time_to_answer_s: float | None = None
    """Time to detect / localize / analyze / mitigate, by the task's type."""
    agent_s: float = 0.0
    wait_s: float = 0.0
    """Deliberate waits: the quiet gap after recovery, the symptoms' onset, mitigation checks."""
    overhead_s: float = 0.0
    """Everything else: recovery and readiness, injection, checks, scoring, the store."""
    wall_s: float = 0.0
    steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tool_errors: int = 0
    quiet: bool = True
    """Whether the lab was quiet (the previous fault's symptoms gone) before injection."""
    error: str | None = None
    views: dict[str, bool] = Field(default_factory=dict)
    """Success of every agent view of this same trajectory (``llm`` and ``llm+analyzers`` for
    a model's run), so the model's own contribution and the merge are compared on one run."""


class RunInfo(BaseModel):
    """The settings that define a run; a resume must match them."""

    model_config = ConfigDict(frozen=True)

    suite: str
    scenarios: list[str]
    agent: str
    model: str
    attempts: int
    seed: int | None = None
    max_steps: int
    window_s: int
    symptom_s: float
    back_to_back: bool
    concurrent: bool
    git_commit: str = ""
    started_at: str = ""

    def differs(self, other: RunInfo) -> list[str]:
        """The defining settings in which ``other`` differs from this run."""
        keys = (
            "suite",
            "scenarios",
            "agent",
            "model",
            "attempts",
            "seed",
            "max_steps",
            "window_s",
            "symptom_s",
            "back_to_back",
        )
        return [k for k in keys if getattr(self, k) != getattr(other, k)]


class ResultsFile:
    """``results.json`` in an output folder: the run's settings and every finished attempt."""

    def __init__(self, out_dir: Path, run: RunInfo) -> None:
        self.path = out_dir / RESULTS_FILE
        self.run = run
        self.attempts: list[AttemptResult] = []
        self.wall_s = 0.0

    @classmethod
    def open(cls, out_dir: Path, run: RunInfo) -> ResultsFile:
        """A fresh file, or the earlier run in ``out_dir`` when its settings are the same."""
        out_dir.mkdir(parents=True, exist_ok=True)
        results = cls(out_dir, run)
        if not results.path.exists():
            return results
        try:
            data = json.loads(results.path.read_text())
            earlier = RunInfo.model_validate(data["run"])
            attempts = [AttemptResult.model_validate(a) for a in data["attempts"]]
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            raise BenchmarkError(
                f"{results.path} cannot be read ({exc}); move it away or pick another --out"
            ) from exc
        changed = earlier.differs(run)
        if changed:
            raise BenchmarkError(
                f"{results.path} holds a run with other settings ({', '.join(changed)} differ); "
                "rerun with the same settings to resume it, or pick another --out"
            )
        results.run = run.model_copy(update={"started_at": earlier.started_at})
        results.attempts = attempts
        results.wall_s = float(data.get("wall_s", 0.0))
        return results

    def done(self) -> set[tuple[str, int]]:
        return {(a.scenario_id, a.attempt) for a in self.attempts}

    def add(self, attempt: AttemptResult) -> None:
        """Record one attempt and write the file (the attempt is kept in memory if that fails)."""
        self.attempts.append(attempt)
        self.save()

    def save(self) -> None:
        body = {
            "format": FORMAT,
            "run": self.run.model_dump(mode="json"),
            "wall_s": round(self.wall_s, 2),
            "aggregate": aggregate(self.attempts, k=self.run.attempts),
            "attempts": [a.model_dump(mode="json") for a in self.attempts],
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("w") as fh:
                json.dump(body, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise BenchmarkError(
                f"cannot write {self.path} ({exc.strerror or exc}); the finished attempts are in "
                "the file as it was before this one: free space and rerun to continue"
            ) from exc


def _pct(values: Iterable[float]) -> float | None:
    items = list(values)
    return round(100 * statistics.fmean(items), 1) if items else None


def _median(values: Iterable[float | None]) -> float | None:
    items = [v for v in values if v is not None]
    return round(statistics.median(items), 2) if items else None


def _summary(attempts: Sequence[AttemptResult], k: int) -> dict[str, Any]:
    by_task: dict[str, list[AttemptResult]] = defaultdict(list)
    for a in sorted(attempts, key=lambda a: (a.scenario_id, a.attempt)):
        by_task[a.scenario_id].append(a)
    firsts = [runs[0].success for runs in by_task.values()]
    means = [statistics.fmean(r.success for r in runs) for runs in by_task.values()]
    bests = [any(r.success for r in runs) for runs in by_task.values()]
    per_index: dict[int, list[bool]] = defaultdict(list)
    for a in attempts:
        per_index[a.attempt].append(a.success)
    index_acc = [100 * statistics.fmean(v) for _, v in sorted(per_index.items())]
    return {
        "tasks": len(by_task),
        "attempts": len(attempts),
        "avg_at_1": _pct(firsts),
        f"avg_at_{k}": _pct(means),
        f"best_at_{k}": _pct(bests),
        "std_across_attempts": round(statistics.pstdev(index_acc), 1)
        if len(index_acc) > 1
        else 0.0,
        "median_time_to_answer_s": _median(a.time_to_answer_s for a in attempts),
        "median_agent_s": _median(a.agent_s for a in attempts),
        "median_overhead_s": _median(a.overhead_s for a in attempts),
        "mean_steps": round(statistics.fmean(a.steps for a in attempts), 2) if attempts else None,
        "tokens_in": sum(a.tokens_in for a in attempts),
        "tokens_out": sum(a.tokens_out for a in attempts),
        "tool_errors": sum(a.tool_errors for a in attempts),
        "invalid_submissions": sum(not a.valid for a in attempts),
        "errors": sum(a.error is not None for a in attempts),
        "not_quiet": sum(not a.quiet for a in attempts),
        "views_avg_at_1": _views_at_1(by_task),
    }


def _views_at_1(by_task: dict[str, list[AttemptResult]]) -> dict[str, float | None]:
    names = sorted({v for runs in by_task.values() for v in runs[0].views})
    return {v: _pct(float(runs[0].views.get(v, False)) for runs in by_task.values()) for v in names}


def aggregate(attempts: Sequence[AttemptResult], *, k: int) -> dict[str, Any]:
    """Overall and per-task-type metrics, with K the attempts per task.

    Both ``best_at_k`` and ``best_at_<K>`` (``best_at_5``) are given, so scripts need
    not know K and people can read it.
    """
    overall = _summary(attempts, k)
    overall["best_at_k"] = overall[f"best_at_{k}"]
    overall["avg_at_k"] = overall[f"avg_at_{k}"]
    overall["k"] = k
    overall["by_task_type"] = {
        task: _summary(group, k)
        for task in TASK_TYPES
        if (group := [a for a in attempts if a.task_type == task])
    }
    return overall
