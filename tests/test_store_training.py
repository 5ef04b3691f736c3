"""``store.training``: runs, their configuration and per-step metrics, on SQLite and PostgreSQL.

A run starts RUNNING and finishes once; a step recorded twice (a resumed run) is
replaced, never doubled; NaN and ±inf metrics are stored as null (not refused), so
one diverged value never costs a step's other metrics; malformed input is a
ValueError before any SQL runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.models import TrainingRun, TrainingStatus, TrainingStep
from store.training import (
    MAX_METRICS,
    RunNotFound,
    RunNotRunning,
    finish_run,
    get_run,
    last_step,
    list_runs,
    record_step,
    resume_run,
    run_steps,
    start_run,
)

CONFIG = {"learning_rate": 1e-5, "num_generations": 4, "lora": {"r": 8}, "steps": 20}
DATASET = {"samples": 640, "held_out": ["k8s_target_port-misconfig"], "prompt_versions": ["v2"]}


def _start(engine: sa.Engine, **changes: object) -> int:
    arguments: dict[str, object] = {
        "base": "/models/smollm2.gguf",
        "config": CONFIG,
        "dataset": DATASET,
        "output_dir": "var/train/run-1",
        **changes,
    }
    return start_run(engine, **arguments)  # type: ignore[arg-type]


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


def test_a_run_starts_running_with_its_configuration(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    run = get_run(migrated_engine, run_id)
    assert run.status is TrainingStatus.RUNNING
    assert (run.kind, run.base, run.output_dir) == (
        "grpo",
        "/models/smollm2.gguf",
        "var/train/run-1",
    )
    assert (run.config, run.dataset) == (CONFIG, DATASET)
    assert (run.last_step, run.finished_at, run.summary, run.error) == (None, None, None, "")
    assert run.created_at.tzinfo is not None


def test_steps_are_recorded_in_order_and_last_step_follows(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    record_step(migrated_engine, run_id, 2, {"reward": 0.5, "kl": 0.01})
    record_step(migrated_engine, run_id, 1, {"reward": 0.25, "loss": 3})
    steps = run_steps(migrated_engine, run_id)
    assert [(s.step, s.metrics) for s in steps] == [
        (1, {"reward": 0.25, "loss": 3.0}),
        (2, {"reward": 0.5, "kl": 0.01}),
    ]
    assert get_run(migrated_engine, run_id).last_step == 2
    newest = last_step(migrated_engine, run_id)
    assert newest is not None
    assert newest.step == 2


def test_recording_a_step_again_replaces_it(migrated_engine: sa.Engine) -> None:
    # A run resumed from its step-5 checkpoint records steps 6.. again.
    run_id = _start(migrated_engine)
    for step in range(1, 9):
        record_step(migrated_engine, run_id, step, {"reward": float(step)})
    record_step(migrated_engine, run_id, 6, {"reward": -1.0, "kl": 0.5})
    steps = {s.step: s.metrics for s in run_steps(migrated_engine, run_id)}
    assert len(steps) == 8
    assert steps[6] == {"reward": -1.0, "kl": 0.5}
    assert get_run(migrated_engine, run_id).last_step == 8
    assert _count(migrated_engine, "training_steps") == 8


def test_non_finite_metrics_are_stored_as_null(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    record_step(
        migrated_engine,
        run_id,
        1,
        {"loss": math.nan, "grad_norm": math.inf, "kl": -math.inf, "reward": 0.1},
    )
    (step,) = run_steps(migrated_engine, run_id)
    assert step.metrics == {"loss": None, "grad_norm": None, "kl": None, "reward": 0.1}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"reward": "high"}, "must be numbers"),
        ({"reward": True}, "must be numbers"),
        ({"reward": None}, "must be numbers"),
        ({"": 1.0}, "must not be empty"),
        ({"re\x00ward": 1.0}, "NUL"),
        ({"r" * 201: 1.0}, "at most 200"),
        ({f"m{i}": 1.0 for i in range(MAX_METRICS + 1)}, "at most"),
        ([("reward", 1.0)], "mapping"),
    ],
)
def test_malformed_metrics_are_refused_before_anything_is_written(
    migrated_engine: sa.Engine, metrics: object, message: str
) -> None:
    run_id = _start(migrated_engine)
    with pytest.raises(ValueError, match=message):
        record_step(migrated_engine, run_id, 1, metrics)  # type: ignore[arg-type]
    assert _count(migrated_engine, "training_steps") == 0
    assert get_run(migrated_engine, run_id).last_step is None


@pytest.mark.parametrize("step", [-1, 2**31, 1.0, True, "1"])
def test_steps_are_non_negative_integers(migrated_engine: sa.Engine, step: object) -> None:
    run_id = _start(migrated_engine)
    with pytest.raises(ValueError, match="step"):
        record_step(migrated_engine, run_id, step, {"reward": 1.0})  # type: ignore[arg-type]


def test_a_step_of_an_unknown_run_is_refused(migrated_engine: sa.Engine) -> None:
    with pytest.raises(RunNotFound, match="12345"):
        record_step(migrated_engine, 12345, 1, {"reward": 1.0})
    assert _count(migrated_engine, "training_steps") == 0


def test_a_run_finishes_once_and_can_be_resumed(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    record_step(migrated_engine, run_id, 1, {"reward": 0.2})
    stopped = finish_run(migrated_engine, run_id, status="interrupted", error="KeyboardInterrupt")
    assert stopped.status is TrainingStatus.INTERRUPTED
    assert stopped.finished_at is not None
    with pytest.raises(RunNotRunning, match="resume_run"):
        finish_run(migrated_engine, run_id, status=TrainingStatus.SUCCEEDED)

    resumed = resume_run(migrated_engine, run_id)
    assert (resumed.status, resumed.finished_at, resumed.error) == (
        TrainingStatus.RUNNING,
        None,
        "",
    )
    assert resumed.last_step == 1
    with pytest.raises(RunNotRunning, match="running already"):
        resume_run(migrated_engine, run_id)
    done = finish_run(
        migrated_engine, run_id, status="succeeded", summary={"reward": 0.6, "kl": math.nan}
    )
    assert done.status is TrainingStatus.SUCCEEDED
    assert done.summary == {"reward": 0.6, "kl": None}
    assert get_run(migrated_engine, run_id).summary == {"reward": 0.6, "kl": None}


def test_finishing_checks_its_status_and_run(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    with pytest.raises(ValueError, match="finishes as one of"):
        finish_run(migrated_engine, run_id, status="running")
    with pytest.raises(ValueError, match="unknown training status"):
        finish_run(migrated_engine, run_id, status="done")
    with pytest.raises(RunNotFound):
        finish_run(migrated_engine, run_id + 1, status="failed")
    with pytest.raises(RunNotFound):
        resume_run(migrated_engine, run_id + 1)
    with pytest.raises(RunNotFound):
        get_run(migrated_engine, run_id + 1)
    assert get_run(migrated_engine, run_id).status is TrainingStatus.RUNNING


def test_an_error_is_always_recordable(migrated_engine: sa.Engine) -> None:
    # A traceback may be long, or hold a NUL a model printed: the failure still gets recorded.
    run_id = _start(migrated_engine)
    error = "Traceback\x00 (most recent call last):\n" + "x" * 30_000 + "\nRuntimeError: OOM"
    run = finish_run(migrated_engine, run_id, status="failed", error=error)
    stored = get_run(migrated_engine, run_id).error
    assert stored == run.error
    assert len(stored) == 20_000
    assert stored.endswith("RuntimeError: OOM")
    assert "\x00" not in stored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base": ""}, "base must not be empty"),
        ({"base": "a\x00b"}, "NUL"),
        ({"output_dir": "x" * 5000}, "at most 4096"),
        ({"kind": ""}, "kind must not be empty"),
        ({"config": {"out": Path("/tmp")}}, "str\\(\\) for a path"),
        ({"config": {1: "a"}}, "not a string"),
        ({"config": ["lr", 1e-5]}, "mapping"),
        ({"dataset": {"families": {"a", "b"}}}, "a list for a set"),
    ],
)
def test_malformed_runs_are_refused(
    migrated_engine: sa.Engine, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _start(migrated_engine, **changes)
    assert _count(migrated_engine, "training_runs") == 0


def test_non_finite_values_in_a_config_become_null(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine, config={"max_grad_norm": math.inf, "steps": [1, math.nan]})
    assert get_run(migrated_engine, run_id).config == {"max_grad_norm": None, "steps": [1, None]}


def test_list_runs_newest_first_and_by_status(migrated_engine: sa.Engine) -> None:
    first = _start(migrated_engine)
    second = _start(migrated_engine, kind="sft")
    finish_run(migrated_engine, first, status="failed", error="boom")
    assert [run.id for run in list_runs(migrated_engine)] == [second, first]
    assert [run.id for run in list_runs(migrated_engine, status="failed")] == [first]
    assert [run.id for run in list_runs(migrated_engine, limit=1)] == [second]
    with pytest.raises(ValueError, match="unknown training status"):
        list_runs(migrated_engine, status="broken")


def test_deleting_a_run_deletes_its_steps(migrated_engine: sa.Engine) -> None:
    run_id = _start(migrated_engine)
    record_step(migrated_engine, run_id, 1, {"reward": 1.0})
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(TrainingRun))
    assert _count(migrated_engine, "training_steps") == 0


def test_steps_need_their_run(migrated_engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), migrated_engine.begin() as connection:
        connection.execute(sa.insert(TrainingStep).values(run_id=999, step=1, metrics={}))


_metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(10**6), max_value=10**6),
)
_records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),
        st.dictionaries(
            st.sampled_from(["reward", "reward/format", "kl", "loss", "grad_norm"]),
            _metric_values,
            max_size=5,
        ),
    ),
    min_size=1,
    max_size=15,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(records=_records)
def test_the_store_keeps_the_last_record_of_each_step(
    migrated_engine: sa.Engine, records: list[tuple[int, dict[str, float]]]
) -> None:
    run_id = _start(migrated_engine)
    expected: dict[int, dict[str, float | None]] = {}
    for step, metrics in records:
        record_step(migrated_engine, run_id, step, metrics)
        expected[step] = {
            name: float(value) if math.isfinite(value) else None for name, value in metrics.items()
        }
    steps = run_steps(migrated_engine, run_id)
    assert [s.step for s in steps] == sorted(expected)
    assert {s.step: s.metrics for s in steps} == expected
    assert get_run(migrated_engine, run_id).last_step == max(expected)
