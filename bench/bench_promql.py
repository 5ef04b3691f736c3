"""How much does the incident lab's telemetry cost: per tick, in memory, per query?

Fills an ``AppModel`` holding the lab's three applications (one broken, so
error series and traces exist) with an hour of 5-second ticks, then times the
PromQL queries responders and agents type most, as instant queries and as
one-hour range queries at a 15 s step. Printed: tick time (median, p95),
series and samples held, and each query's median time. A JSON line follows
the table for machines.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from rich.console import Console
from rich.table import Table

from lab.apps import APPS
from lab.telemetry.model import AppModel
from lab.telemetry.promql import Engine
from lab.telemetry.state import AppFaults

TICKS = int(os.environ.get("AOI_BENCH_PROMQL_TICKS", "720"))
STEP_S = 5.0
T0 = 1_717_000_000.0
REPEATS = 5
QUERIES = (
    'sum by (destination_service) (rate(istio_requests_total{response_code=~"5.."}[5m]))',
    "histogram_quantile(0.99, sum by (le, destination_service_name) "
    '(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[5m])))',
    "topk(5, sum by (pod) (rate(container_cpu_usage_seconds_total[5m])))",
    "max_over_time(container_memory_working_set_bytes[10m])",
    "increase(kube_pod_container_status_restarts_total[1h]) > 0",
)


def _fill() -> tuple[AppModel, list[float]]:
    model = AppModel(list(APPS.values()), seed=1)
    model.update({}, AppFaults(revoked_roles={"mongodb-geo"}, network_delay_ms={"user": 800.0}))
    ticks = []
    for i in range(TICKS):
        started = time.perf_counter()
        model.tick(T0 + i * STEP_S)
        ticks.append(time.perf_counter() - started)
    return model, ticks


def _median_s(run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    model, ticks = _fill()
    engine = Engine(model.series)
    now = T0 + (TICKS - 1) * STEP_S
    span = min(3600.0, now - T0)
    samples = sum(len(s.values) for s in model.series.select([]))
    table = Table(title=f"lab telemetry: {TICKS} ticks of {STEP_S:g} s, three apps")
    table.add_column("query")
    table.add_column("instant ms", justify="right")
    table.add_column("1 h range @15 s ms", justify="right")
    report: dict[str, object] = {
        "ticks": TICKS,
        "tick_median_ms": statistics.median(ticks) * 1000,
        "tick_p95_ms": statistics.quantiles(ticks, n=20)[-1] * 1000,
        "series": len(model.series),
        "samples": samples,
        "traces": len(model.traces),
        "queries": {},
    }
    for query in QUERIES:
        instant = _median_s(lambda q=query: engine.instant(q, now))
        ranged = _median_s(lambda q=query: engine.range(q, now - span, now, 15.0))
        table.add_row(query, f"{instant * 1000:.1f}", f"{ranged * 1000:.1f}")
        report["queries"][query] = {"instant_ms": instant * 1000, "range_ms": ranged * 1000}  # type: ignore[index]
    console = Console()
    console.print(
        f"tick median {report['tick_median_ms']:.1f} ms, p95 {report['tick_p95_ms']:.1f} ms; "
        f"{report['series']} series, {samples} samples (~{samples * 8 / 2**20:.0f} MiB of values),"
        f" {report['traces']} traces"
    )
    console.print(table)
    print(json.dumps(report))
