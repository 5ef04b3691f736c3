"""The lab's application model: one world, three telemetry surfaces.

``AppModel`` is what the lab holds: it keeps the last description of the world
(runtimes, in-app faults, feature flags, pod names), computes each tick with
``lab.telemetry.world`` and hands the result to the three surfaces agents
query: the series store behind the Prometheus API, the trace store behind the
Jaeger API and the log store the kubelet simulator serves. Keeping them behind
one object means every surface always describes the same tick.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab.apps.spec import AppSpec
from lab.telemetry.logs import LogStore
from lab.telemetry.metrics import MetricsRecorder
from lab.telemetry.series import SeriesStore
from lab.telemetry.state import AppFaults, ServiceRuntime
from lab.telemetry.traces import TraceStore, sample_traces
from lab.telemetry.world import (
    AppPlan,
    AppTick,
    ErrorCause,
    WorldInputs,
    advance_kafka,
    compute_app,
    plan_app,
)

Key = tuple[str, str]
"""(namespace, service)."""

MAX_DT_S = 300.0
"""A longer pause (a suspended laptop) is integrated as five minutes, not as a burst."""

__all__ = ["AppModel", "ErrorCause", "ServiceHealth"]


@dataclass(frozen=True)
class ServiceHealth:
    """What one service looks like at the last tick. Rates are per service, resources per pod."""

    namespace: str
    service: str
    rps: float
    """Requests per second reaching the service's pods."""
    error_rate: float
    """Share of requests to the service that fail, as its callers see them."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_m: float
    memory_mib: float
    causes: tuple[ErrorCause, ...] = ()
    """Why requests fail, most with the dependency they come from and the logged message."""


class AppModel:
    """Turns applications, cluster state and in-app faults into telemetry.

    Usage::

        model = AppModel([HOTEL_RESERVATION], seed=7)
        model.update(runtimes, AppFaults(revoked_roles={"mongodb-geo"}))
        model.tick(time.time())
        model.health("test-hotel-reservation", "geo").error_rate        # ~1.0
        model.logs.logs_for("test-hotel-reservation", "geo", "geo-0", "geo", tail=20)
        # model.series, model.traces: the stores behind the Prometheus and Jaeger APIs
    """

    def __init__(
        self,
        apps: Sequence[AppSpec],
        *,
        seed: int = 0,
        retention_s: float = 7200.0,
        max_samples: int = 1440,
        max_traces: int = 3000,
        log_lines_per_pod: int = 2000,
    ) -> None:
        names = [a.namespace for a in apps]
        if len(set(names)) != len(names):
            raise ValueError(f"two applications share a namespace: {names}")
        self.apps = tuple(apps)
        self.seed = seed
        self.series = SeriesStore(retention_s=retention_s, max_samples=max_samples)
        self.traces = TraceStore(max_traces=max_traces)
        self.logs = LogStore(max_lines=log_lines_per_pod, seed=seed)
        self._metrics = MetricsRecorder(self.series)
        self._plans: dict[str, AppPlan] = {a.namespace: plan_app(a) for a in self.apps}
        self._inputs = WorldInputs()
        self._flag_since: dict[str, float] = {}
        self._kafka_lag: dict[str, dict[tuple[str, str], float]] = {n: {} for n in names}
        self._now: float | None = None
        self._tick = 0
        self._ticks: dict[str, AppTick] = {}
        self._dirty = True

    def update(
        self,
        runtimes: Mapping[Key, ServiceRuntime],
        faults: AppFaults,
        flags: Mapping[str, bool] | None = None,
        pods: Mapping[Key, Sequence[str]] | None = None,
    ) -> None:
        """Replace the model's view of the world; the next tick (or ``health``) uses it.

        ``runtimes`` and ``pods`` are keyed by (namespace, service); a service
        missing from ``runtimes`` is taken as deployed and healthy, one missing
        from ``pods`` gets ``<service>-0``... ``flags`` are flagd flag names -> on.
        """
        self._inputs = WorldInputs(
            runtimes=dict(runtimes),
            pods={k: list(v) for k, v in (pods or {}).items()},
            faults=faults,
            flags=dict(flags or {}),
            flag_since=self._flag_since,
        )
        self._dirty = True

    def tick(self, now: float) -> None:
        """Advance simulated time to ``now`` (seconds) and record one sample of every signal.

        A ``now`` not after the previous tick is ignored.
        """
        if self._now is not None and now <= self._now:
            return
        dt = 0.0 if self._now is None else min(now - self._now, MAX_DT_S)
        self._now = now
        self._tick += 1
        self._track_flags(now)
        self._compute(now)
        self.series.begin(now)
        for ns, app_tick in self._ticks.items():
            advance_kafka(self._plans[ns], app_tick, self._kafka_lag[ns], dt)
            self._metrics.record(app_tick, dt)
            rng = random.Random(f"{self.seed}:{self._tick}:traces:{ns}")
            self.traces.add_all(sample_traces(app_tick, rng, now, dt))
            self.logs.advance(app_tick, self._inputs.faults, now, dt)

    def health(self, namespace: str, service: str) -> ServiceHealth:
        """The service's rates, latency, resources and current error causes."""
        if self._dirty:
            self._compute(self._now if self._now is not None else 0.0)
        app_tick = self._ticks.get(namespace)
        if app_tick is None or service not in app_tick.states:
            raise KeyError(f"no service {service!r} in namespace {namespace!r}")
        st = app_tick.states[service]
        return ServiceHealth(
            namespace=namespace,
            service=service,
            rps=st.rps,
            error_rate=st.error,
            p50_ms=st.percentile(0.5),
            p95_ms=st.percentile(0.95),
            p99_ms=st.percentile(0.99),
            cpu_m=st.cpu_m,
            memory_mib=st.memory_mib,
            causes=tuple(st.causes),
        )

    @property
    def now(self) -> float | None:
        """Time of the last tick."""
        return self._now

    def _track_flags(self, now: float) -> None:
        """Remember when each flag went on: some effects (a leaking cache) grow with time."""
        on = {name for name, value in self._inputs.flags.items() if value}
        for name in on:
            self._flag_since.setdefault(name, now)
        for name in set(self._flag_since) - on:
            del self._flag_since[name]

    def _compute(self, now: float) -> None:
        """Noise is seeded by (seed, tick, namespace): recomputing a tick gives the same tick."""
        self._ticks = {}
        for ns, plan in self._plans.items():
            rng = random.Random(f"{self.seed}:{self._tick}:{ns}")
            self._ticks[ns] = compute_app(plan, self._inputs, rng, now)
        self._dirty = False
