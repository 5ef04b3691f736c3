"""Telemetry analyzers: error-rate and latency outliers, CPU throttling, memory near its
limit and Kafka consumer lag, from Prometheus.

Faults inside applications (packet loss, a feature flag, a hot loop) change no
Kubernetes object; only metrics show them. Failures propagate to every caller,
so an outlier is reported only for the *deepest* failing service: one whose
own outgoing calls succeed. The response codes say what kind of failure it is
(504: requests time out on the way; 500: the service itself answers errors),
and the cluster snapshot says why a container is throttled (its limit was just
lowered, a new neighbour shares its node, or the code itself burns CPU).
Error rates and latency are also read over the recent window: an outlier of
the long window that the recent one no longer shows (or shows far weaker) has
stopped, and is reported as such (``agents.analyzers.recency``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timedelta

from agents.analyzers.changes import first_container, history, pod_spec
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.recency import TREND_FACTOR, label, stopped
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import ActionSpec, ScaleNeighbour, SetResources
from agents.probe.metrics import (
    PrometheusClient,
    Sample,
    ServiceRates,
    edge_errors,
    error_rates,
    kafka_lag,
    latency_quantiles,
    memory_vs_limit,
    throttling,
)
from agents.probe.render import parse_time

ERROR_RATIO = 0.05
MIN_RPS = 0.05
LATENCY_FLOOR_MS = 50.0
LATENCY_FACTOR = 4.0
THROTTLED = 0.2
MEMORY_SHARE = 0.95
KAFKA_LAG = 500.0
NEIGHBOUR_AGE = timedelta(minutes=30)


@dataclass
class Telemetry:
    """The numbers of one namespace over one window."""

    rates: list[ServiceRates] = field(default_factory=list)
    edges: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    p99: dict[str, float] = field(default_factory=dict)
    throttled: dict[str, float] = field(default_factory=dict)
    memory: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    lag: list[Sample] = field(default_factory=list)
    lag_before: dict[tuple[str, str], float] = field(default_factory=dict)
    """(group, topic) → lag one window earlier: a lag that drains is recovery, not an incident."""
    recent: timedelta | None = None
    """The recent window the two fields below cover; None: not read (no recency judgement)."""
    recent_rates: list[ServiceRates] = field(default_factory=list)
    recent_p99: dict[str, float] = field(default_factory=dict)


async def read_telemetry(
    prom: PrometheusClient, namespace: str, window: str, recent: timedelta | None = None
) -> Telemetry:
    """The namespace's numbers over ``window``, and error rates and p99 over ``recent`` too."""
    p99 = await latency_quantiles(prom, namespace, 0.99, window)
    data = Telemetry(
        rates=await error_rates(prom, namespace, window),
        edges=await edge_errors(prom, namespace, window),
        p99={svc: ms for (_, svc), ms in p99.items()},
        throttled={c: v for (_, c), v in (await throttling(prom, namespace, window)).items()},
        memory={c: v for (_, c), v in (await memory_vs_limit(prom, namespace)).items()},
        lag=await kafka_lag(prom, namespace),
        lag_before={_group(s): s.value for s in await kafka_lag(prom, namespace, offset=window)},
    )
    if recent is not None:
        short = f"{int(recent.total_seconds())}s"
        data.recent = recent
        data.recent_rates = await error_rates(prom, namespace, short)
        recent_p99 = await latency_quantiles(prom, namespace, 0.99, short)
        data.recent_p99 = {svc: ms for (_, svc), ms in recent_p99.items()}
    return data


def _group(sample: Sample) -> tuple[str, str]:
    return sample.labels.get("consumergroup", ""), sample.labels.get("topic", "")


def _finding(
    snap: Snapshot,
    component: str,
    analyzer: str,
    summary: str,
    evidence: list[str],
    *,
    fault: Fault | None = None,
    fix: ActionSpec | None = None,
    score: float = 0.55,
) -> Finding:
    return Finding(
        analyzer=analyzer,
        severity=Severity.WARNING,
        namespace=snap.namespace,
        kind="Service",
        name=component,
        component=component,
        summary=summary,
        evidence=evidence,
        suggested_fault=fault,
        remediation=fix,
        score=score,
    )


def analyze_telemetry(snap: Snapshot, data: Telemetry) -> list[Finding]:
    return (
        error_outliers(snap, data)
        + latency_outliers(snap, data)
        + throttled_containers(snap, data)
        + memory_pressure(snap, data)
        + consumer_lag(snap, data)
    )


# -- errors and latency ------------------------------------------------------------------


def _failing(data: Telemetry) -> dict[str, ServiceRates]:
    return {r.service: r for r in data.rates if r.rps >= MIN_RPS and r.error_ratio >= ERROR_RATIO}


def _callees(data: Telemetry, service: str) -> set[str]:
    return {
        callee for (caller, callee), (rps, _) in data.edges.items() if caller == service and rps > 0
    }


def _callers(data: Telemetry, service: str) -> list[str]:
    return sorted({caller for (caller, callee) in data.edges if callee == service})


def error_outliers(snap: Snapshot, data: Telemetry) -> list[Finding]:
    failing = _failing(data)
    now = {service: _errors_now(data, rates) for service, rates in failing.items()}
    still = {service for service, state in now.items() if state is not False}
    findings = []
    for service, rates in failing.items():
        # A service seen failing now is a symptom only of callees not seen to recover; one
        # that stopped (or whose recent state is unknown), of any callee failing in the window.
        suspects = still if now[service] is True else failing.keys()
        if _callees(data, service) & suspects:
            continue  # a symptom: one of its own calls fails too
        found = _error_finding(snap, data, rates)
        ended = _errors_ended(data, rates) if now[service] is False else None
        if ended is not None and data.recent is not None:
            found = stopped(found, data.recent, evidence=ended)
        findings.append(found)
    return findings


def _recent_rates(data: Telemetry, service: str) -> ServiceRates | None:
    """The service's rates over the recent window; None when they cannot tell (not read, or
    too little traffic: an absent series proves nothing)."""
    if data.recent is None:
        return None
    now = next((r for r in data.recent_rates if r.service == service), None)
    return now if now is not None and now.rps >= MIN_RPS else None


def _errors_now(data: Telemetry, rates: ServiceRates) -> bool | None:
    """Whether the service still fails in the recent window (a steep fall counts as no):
    True, False, or None when the recent window cannot tell."""
    now = _recent_rates(data, rates.service)
    if now is None:
        return None
    return now.error_ratio >= ERROR_RATIO and now.error_ratio >= TREND_FACTOR * rates.error_ratio


def _errors_ended(data: Telemetry, rates: ServiceRates) -> str | None:
    """The evidence line of a stopped error rate (None: no recent numbers to quote)."""
    now = _recent_rates(data, rates.service)
    if now is None or data.recent is None:
        return None
    return (
        f"last {label(data.recent)}: {100 * now.error_ratio:.0f}% of {now.rps:.1f} req/s fail "
        f"(was {100 * rates.error_ratio:.0f}% over the window)"
    )


def _error_finding(snap: Snapshot, data: Telemetry, rates: ServiceRates) -> Finding:
    service = rates.service
    codes = ", ".join(
        f"{code}: {100 * rates.share(code):.0f}%"
        for code in sorted(rates.codes)
        if code.startswith("5")
    )
    evidence = [
        f"{100 * rates.error_ratio:.0f}% of {rates.rps:.1f} req/s to {service} fail ({codes})",
        f"callers: {', '.join(_callers(data, service)) or 'unknown'}",
        f"{service}'s own calls succeed",
    ]
    fault: Fault | None = None
    if rates.share("504") >= 0.5:
        what, fault = "requests to it time out", ("Application", "Network/Storage Issue")
    elif rates.share("500") >= 0.5:
        what, fault = "it answers with errors", ("Application", "Code Defect")
    else:
        what = "it is unavailable to its callers"
    summary = (
        f"{service} is the deepest failing service ({100 * rates.error_ratio:.0f}% errors): {what}"
    )
    return _finding(snap, service, "error_rate", summary, evidence, fault=fault, score=0.55)


def latency_outliers(snap: Snapshot, data: Telemetry) -> list[Finding]:
    if len(data.p99) < 3:
        return []
    typical = statistics.median(data.p99.values())
    threshold = max(LATENCY_FLOOR_MS, LATENCY_FACTOR * typical)
    slow = {svc: ms for svc, ms in data.p99.items() if ms >= threshold}
    failing = _failing(data)
    now = {service: _slow_now(data, service, threshold) for service in slow}
    still = {s for s, state in now.items() if state is not False} | {
        s for s, rates in failing.items() if _errors_now(data, rates) is not False
    }
    findings = []
    for service, ms in slow.items():
        suspects = still if now[service] is True else slow.keys() | failing.keys()
        if _callees(data, service) & suspects:
            continue
        evidence = [
            f"p99 {ms:.0f} ms vs a typical {typical:.0f} ms in {snap.namespace}",
            f"callers: {', '.join(_callers(data, service)) or 'unknown'}",
        ]
        factor = ms / max(typical, 0.1)
        summary = f"{service} is slow: p99 {ms:.0f} ms, {factor:.0f}x the namespace's typical"
        found = _finding(
            snap,
            service,
            "latency",
            summary,
            evidence,
            fault=("Application", "Code Defect"),
            score=0.45,
        )
        if now[service] is False and data.recent is not None:
            recent_ms = data.recent_p99[service]
            line = f"last {label(data.recent)}: p99 {recent_ms:.0f} ms, under {threshold:.0f} ms"
            found = stopped(found, data.recent, evidence=line)
        findings.append(found)
    return findings


def _slow_now(data: Telemetry, service: str, threshold: float) -> bool | None:
    """Whether the recent window still shows the service's p99 over the outlier threshold:
    True, False, or None when it has no p99 for it."""
    recent_ms = data.recent_p99.get(service)
    if data.recent is None or recent_ms is None:
        return None
    return recent_ms >= threshold


# -- resources ----------------------------------------------------------------------------


def throttled_containers(snap: Snapshot, data: Telemetry) -> list[Finding]:
    findings = []
    for container, share in data.throttled.items():
        dep = snap.by_name(snap.deployments, container)
        if share < THROTTLED or dep is None:
            continue
        fault, fix, why, score = _throttle_cause(snap, dep)
        evidence = [f"{100 * share:.0f}% of CPU periods throttled", why]
        summary = f"{container} is CPU-throttled ({100 * share:.0f}% of periods): {why}"
        found = _finding(snap, container, "cpu_throttling", summary, evidence, fault=fault, fix=fix)
        findings.append(found.model_copy(update={"score": score}))
    return findings


def _throttle_cause(snap: Snapshot, dep: Obj) -> tuple[Fault, ActionSpec | None, str, float]:
    """(fault, fix, why, score): a lowered limit or a new neighbour explain it best; otherwise
    the code (or its load) burns CPU, which is weaker evidence of a root cause."""
    current, previous = history(snap, dep)
    now_limit = _cpu_limit(pod_spec(current))
    before = _cpu_limit(pod_spec(previous)) if previous else None
    name = dep["metadata"]["name"]
    if before and now_limit and _millis(now_limit) < _millis(before):
        fix = SetResources(namespace=snap.namespace, name=name, limits={"cpu": before})
        why = f"its CPU limit was lowered from {before} to {now_limit}"
        return ("Virtualization", "Misconfiguration"), fix, why, 0.7
    neighbour = _new_neighbour(snap, dep)
    if neighbour:
        move = ScaleNeighbour(namespace=snap.namespace, name=neighbour, replicas=0)
        return (
            ("Virtualization", "Dependency Problem"),
            move,
            f"new workload {neighbour} shares its node",
            0.7,
        )
    why = "its limit did not change and no new neighbour: the code (or its load) burns CPU"
    return ("Application", "Code Defect"), None, why, 0.6


def _cpu_limit(spec: Obj) -> str | None:
    value = ((first_container(spec).get("resources") or {}).get("limits") or {}).get("cpu")
    return str(value) if value else None


def _millis(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def _new_neighbour(snap: Snapshot, dep: Obj) -> str | None:
    """A recently created Deployment, selected by no Service, with a pod on the same node."""
    nodes = {(p.get("spec") or {}).get("nodeName") for p in snap.pods_of(dep)} - {None}
    served = {
        d["metadata"]["name"]
        for s in snap.services
        for d in snap.deployments_matching((s.get("spec") or {}).get("selector") or {})
    }
    for other in snap.deployments:
        created = parse_time(other["metadata"].get("creationTimestamp"))
        name = other["metadata"]["name"]
        if name == dep["metadata"]["name"] or name in served or created is None:
            continue
        if snap.now - created > NEIGHBOUR_AGE:
            continue
        if any((p.get("spec") or {}).get("nodeName") in nodes for p in snap.pods_of(other)):
            return str(name)
    return None


def memory_pressure(snap: Snapshot, data: Telemetry) -> list[Finding]:
    findings = []
    for container, (used, limit) in data.memory.items():
        if not limit or used < MEMORY_SHARE * limit:
            continue
        mib = int(limit / 1048576)
        fix = SetResources(
            namespace=snap.namespace, name=container, limits={"memory": f"{2 * mib}Mi"}
        )
        summary = f"{container} uses {100 * used / limit:.0f}% of its {mib}Mi memory limit"
        found = _finding(snap, container, "memory", summary, [summary], fix=fix, score=0.4)
        # Close to the limit is a risk, not an outage: OOM kills are the oom analyzer's.
        findings.append(found.model_copy(update={"severity": Severity.INFO}))
    return findings


def consumer_lag(snap: Snapshot, data: Telemetry) -> list[Finding]:
    lagging = [
        s
        for s in data.lag
        if s.value >= KAFKA_LAG and s.value > 1.1 * data.lag_before.get(_group(s), 0.0)
    ]
    broker = next((n for n in sorted(snap.service_names) if "kafka" in n), None)
    if not lagging or broker is None:
        return []
    evidence = [
        f"group {s.labels.get('consumergroup')} lags {s.value:.0f} messages on "
        f"{s.labels.get('topic')}"
        for s in lagging
    ]
    summary = f"consumers of {broker} fall behind ({evidence[0]}): the queue is overloaded or slow"
    return [
        _finding(
            snap,
            broker,
            "kafka_lag",
            summary,
            evidence,
            fault=("Application", "Dependency Problem"),
            score=0.75,
        )
    ]
