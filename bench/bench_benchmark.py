"""The benchmark runner's own cost (issue 10), measured in one run on one lab.

- framework overhead per task: everything but the agents' time and the
  deliberate waits (recovery and readiness, injection, checks, scoring, the
  store), median over the attempts; target < 5 s;
- the same scenarios run serially and then concurrently (one lane per app),
  with the wall times and their ratio, and both runs' avg@1 so the speed-up is
  not bought with accuracy.

AOI_BENCH_RUNNER_TASKS (default 18) sets how many AIOpsLab tasks are used,
taken round-robin across the three apps.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

from agents.runtime import ClusterAccess
from lab.benchmark.harness import LabThread
from lab.benchmark.results import ResultsFile, RunInfo
from lab.benchmark.runner import Benchmark, BenchSettings
from lab.k8s import api_client
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario
from store.db import make_engine
from store.migrate import upgrade

TASKS = int(os.environ.get("AOI_BENCH_RUNNER_TASKS", "18"))


def _spread(scenarios: list[Scenario], count: int) -> list[Scenario]:
    by_app: dict[str, list[Scenario]] = defaultdict(list)
    for scenario in scenarios:
        by_app[scenario.app].append(scenario)
    mixed = [s for row in zip_longest(*by_app.values()) for s in row if s is not None]
    return mixed[:count]


def _run(bench: Benchmark, scenarios: list[Scenario], out: Path, concurrent: bool) -> ResultsFile:
    info = RunInfo(
        suite="ids",
        scenarios=[s.id for s in scenarios],
        agent="analyzers",
        model="analyzers",
        attempts=1,
        max_steps=1,
        window_s=bench.settings.window_s,
        symptom_s=bench.settings.symptom_s,
        back_to_back=False,
        concurrent=concurrent,
    )
    results = ResultsFile.open(out, info)
    asyncio.run(bench.run(scenarios, results))
    return results


def main() -> None:
    from aoi.approvals import action_rules
    from aoi.settings import load_settings

    state = Path(tempfile.mkdtemp(prefix="aoi-bench-runner-"))
    url = f"sqlite:///{state / 'aoi.db'}"
    upgrade(url)
    engine = make_engine(url)
    handle = LabThread(state / "lab", cache_dir=load_settings().cache_dir)
    handle.start()
    figures: dict[str, Any] = {"lab_ready_s": round(handle.ready_s, 1)}
    try:
        ends = handle.lab.endpoints
        assert ends is not None
        scenarios = _spread(load_catalog().select(source="aiopslab"), TASKS)
        walls = {}
        for concurrent in (False, True):
            bench = Benchmark(
                lab=handle,
                engine=engine,
                access=ClusterAccess(
                    api=api_client(Path(ends.observer_kubeconfig)),
                    prometheus_url=ends.prometheus_url,
                    jaeger_url=ends.jaeger_url,
                ),
                executor_api=api_client(Path(ends.executor_kubeconfig)),
                model=None,
                settings=BenchSettings(concurrent=concurrent),
                rules=action_rules(load_settings()),
            )
            name = "concurrent" if concurrent else "serial"
            results = _run(bench, scenarios, state / name, concurrent)
            agg = json.loads(results.path.read_text())["aggregate"]
            walls[name] = results.wall_s
            figures[f"{name}_wall_s"] = round(results.wall_s, 1)
            figures[f"{name}_avg_at_1"] = agg["avg_at_1"]
            figures[f"{name}_overhead_median_s"] = agg["median_overhead_s"]
            figures[f"{name}_agent_median_s"] = agg["median_agent_s"]
        figures["tasks"] = len(scenarios)
        figures["speedup_concurrent_vs_serial"] = round(walls["serial"] / walls["concurrent"], 2)
        figures["projected_86_tasks_concurrent_min"] = round(
            walls["concurrent"] / len(scenarios) * 86 / 60, 1
        )
    finally:
        handle.stop()
        engine.dispose()
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps({"bench": "benchmark", **figures}))


if __name__ == "__main__":
    main()
