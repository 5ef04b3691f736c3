"""The benchmark's bookkeeping: the paper's metrics, resuming a crashed run, the report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.benchmark import report
from lab.benchmark.results import (
    AttemptResult,
    BenchmarkError,
    ResultsFile,
    RunInfo,
    aggregate,
)
from lab.benchmark.runner import Benchmark, BenchSettings, answer_of
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario


def _attempt(sid: str, n: int, ok: bool, task: str = "detection", **kw: Any) -> AttemptResult:
    fields: dict[str, Any] = {
        "scenario_id": sid,
        "attempt": n,
        "task_type": task,
        "app": "hotel-reservation",
        "families": ["pod_failure"],
        "split": "train",
        "source": "aiopslab",
        "success": ok,
        "score": float(ok),
        "detail": "right" if ok else "wrong",
        "valid": True,
    }
    return AttemptResult(**(fields | kw))


def _info(**kw: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "suite": "ids",
        "scenarios": ["a", "b", "c"],
        "agent": "analyzers",
        "model": "analyzers",
        "attempts": 2,
        "max_steps": 4,
        "window_s": 20,
        "symptom_s": 8.0,
        "back_to_back": False,
        "concurrent": True,
    }
    return RunInfo(**(fields | kw))


def test_avg_and_best_at_k_follow_the_papers_definitions() -> None:
    # task a: right, right; b: wrong, right; c: wrong, wrong
    runs = [
        _attempt("a", 1, True),
        _attempt("a", 2, True),
        _attempt("b", 1, False),
        _attempt("b", 2, True),
        _attempt("c", 1, False),
        _attempt("c", 2, False),
    ]
    agg = aggregate(runs, k=2)
    assert agg["tasks"] == 3
    assert agg["attempts"] == 6
    assert agg["avg_at_1"] == pytest.approx(33.3)  # only a's first attempt
    assert agg["avg_at_2"] == pytest.approx(50.0)  # (1 + 0.5 + 0) / 3
    assert agg["best_at_2"] == pytest.approx(66.7)  # a and b
    assert agg["best_at_k"] == agg["best_at_2"]
    # attempt 1: 1/3, attempt 2: 2/3 of the suite -> population sd of 33.3 and 66.7
    assert agg["std_across_attempts"] == pytest.approx(16.7)


def test_metrics_per_task_type_and_costs() -> None:
    runs = [
        _attempt("a", 1, True, "detection", time_to_answer_s=2.0, steps=1, tokens_in=10),
        _attempt("b", 1, False, "localization", time_to_answer_s=4.0, valid=False),
        _attempt("c", 1, True, "localization", time_to_answer_s=6.0, tool_errors=2),
    ]
    agg = aggregate(runs, k=1)
    assert set(agg["by_task_type"]) == {"detection", "localization"}
    loc = agg["by_task_type"]["localization"]
    assert loc["avg_at_1"] == 50.0
    assert loc["median_time_to_answer_s"] == 5.0
    assert loc["invalid_submissions"] == 1
    assert agg["tool_errors"] == 2
    assert agg["tokens_in"] == 10
    assert agg["std_across_attempts"] == 0.0


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3), st.booleans()), max_size=40))
def test_metrics_are_ordered_and_bounded(rows: list[tuple[int, int, bool]]) -> None:
    seen = {(sid, n): ok for sid, n, ok in rows}
    runs = [_attempt(f"s{sid}", n, ok) for (sid, n), ok in seen.items()]
    agg = aggregate(runs, k=3)
    if not runs:
        assert agg["tasks"] == 0
        assert agg["avg_at_1"] is None
        return
    # best@K is at least avg@K; every figure is a percentage
    assert agg["best_at_3"] >= agg["avg_at_3"] - 1e-9
    for key in ("avg_at_1", "avg_at_3", "best_at_3"):
        assert 0.0 <= agg[key] <= 100.0


def test_results_resume_and_refuse_other_settings(tmp_path: Path) -> None:
    first = ResultsFile.open(tmp_path, _info(started_at="t0"))
    first.add(_attempt("a", 1, True))
    first.add(_attempt("b", 1, False))
    again = ResultsFile.open(tmp_path, _info(started_at="t1"))
    assert again.done() == {("a", 1), ("b", 1)}
    assert again.run.started_at == "t0"  # one run, continued
    with pytest.raises(BenchmarkError, match="agent differ"):
        ResultsFile.open(tmp_path, _info(agent="llm"))
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(BenchmarkError, match="cannot be read"):
        ResultsFile.open(tmp_path, _info())


def test_a_failed_write_says_so_and_keeps_the_last_good_file(tmp_path: Path) -> None:
    results = ResultsFile.open(tmp_path, _info())
    results.add(_attempt("a", 1, True))
    before = (tmp_path / "results.json").read_text()
    blocker = tmp_path / "results.tmp"
    blocker.mkdir()  # the temporary file cannot be created: as a full or read-only disk
    with pytest.raises(BenchmarkError, match="free space and rerun"):
        results.add(_attempt("b", 1, True))
    assert (tmp_path / "results.json").read_text() == before
    assert len(results.attempts) == 2  # still in memory for the caller


class _Crashing(Benchmark):
    """A benchmark whose attempts are scripted, and which dies after ``crash_after``."""

    def __init__(self, settings: BenchSettings, crash_after: int | None) -> None:
        self.settings = settings
        self.crash_after = crash_after
        self.ran: list[tuple[str, int]] = []

    async def attempt(self, scenario: Scenario, attempt: int) -> AttemptResult:
        if self.crash_after is not None and len(self.ran) >= self.crash_after:
            raise RuntimeError("the machine went away")
        self.ran.append((scenario.id, attempt))
        return _attempt(scenario.id, attempt, True, scenario.task_type)

    async def _recover(self, app: str, *, settle_s: float) -> Any:
        return None


def _scenarios() -> Sequence[Scenario]:
    return load_catalog().select(source="aiopslab")[:4]


def test_a_crashed_run_resumes_with_the_unfinished_attempts_only(tmp_path: Path) -> None:
    scenarios = _scenarios()
    info = _info(scenarios=[s.id for s in scenarios])
    settings = BenchSettings(attempts=2, concurrent=False)
    crashing = _Crashing(settings, crash_after=3)
    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(crashing.run(scenarios, ResultsFile.open(tmp_path, info)))
    kept = json.loads((tmp_path / "results.json").read_text())
    assert len(kept["attempts"]) == 3
    resumed = _Crashing(settings, crash_after=None)
    asyncio.run(resumed.run(scenarios, ResultsFile.open(tmp_path, info)))
    assert set(resumed.ran).isdisjoint(crashing.ran)
    assert len(crashing.ran) + len(resumed.ran) == 2 * len(scenarios)
    final = json.loads((tmp_path / "results.json").read_text())
    assert final["aggregate"]["attempts"] == 2 * len(scenarios)
    assert final["aggregate"]["best_at_k"] == 100.0


def test_attempt_one_of_every_task_comes_before_attempt_two(tmp_path: Path) -> None:
    scenarios = _scenarios()
    bench = _Crashing(BenchSettings(attempts=2, concurrent=False), crash_after=None)
    asyncio.run(
        bench.run(scenarios, ResultsFile.open(tmp_path, _info(scenarios=[s.id for s in scenarios])))
    )
    assert [n for _, n in bench.ran] == [1] * len(scenarios) + [2] * len(scenarios)


def test_report_has_tables_and_a_chart(tmp_path: Path) -> None:
    results = ResultsFile.open(tmp_path, _info(attempts=1, scenarios=["a", "b"]))
    results.add(_attempt("a", 1, True))
    results.add(_attempt("b", 1, False, "analysis", answer={"system_level": "Hardware"}))
    md, png = report.write(tmp_path, [report.load(tmp_path)])
    text = md.read_text()
    assert "| detection | 1 | 100.0 |" in text
    assert "| analysis | 1 | 0.0 |" in text
    assert "`b` #1: wrong" in text
    assert png is not None
    assert png.stat().st_size > 1000


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="agent must be one of"):
        BenchSettings(agent="gpt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be >= 1"):
        BenchSettings(attempts=0)
    assert BenchSettings(window_s=20, symptom_s=8).settle_s == 12
    assert BenchSettings(back_to_back=True).settle_s == 0


def test_answers_per_agent_and_task_type() -> None:
    from agents.events import DiagnosisEvent, ObserverAnswer

    own = ObserverAnswer(
        kind="submit",
        instruction='["geo"]',
        component="geo",
        system_level="Application",
        fault_type="Code Defect",
        confidence=40,
    )
    merged = DiagnosisEvent(
        incident_id=1,
        detected=True,
        components=["mongodb-geo"],
        system_level="Application",
        fault_type="Authentication Issue",
        confidence=80,
        summary="x",
        source="analyzers",
        observer=own,
    )
    assert answer_of("localization", merged, agent="analyzers") == ["mongodb-geo"]
    assert answer_of("localization", merged, agent="llm") == ["geo"]
    assert answer_of("analysis", merged, agent="llm")["fault_type"] == "Code Defect"  # type: ignore[index]
    assert answer_of("detection", merged, agent="llm+analyzers") == "Yes"
    silent = merged.model_copy(update={"observer": None})
    assert answer_of("detection", silent, agent="llm") is None
    assert answer_of("detection", None, agent="analyzers") is None
