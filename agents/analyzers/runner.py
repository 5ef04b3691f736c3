"""Run every analyzer over the chosen namespaces, each failure contained.

One namespace at a time: a snapshot through the observer identity (in a
thread, the client blocks), the cluster analyzers over it, then logs, metrics
and traces when their sources are given. An analyzer that fails (Prometheus
down, a forbidden list) is recorded in ``errors`` and the rest still report:
a partial analysis beats none in an incident. Metrics, traces, logs and
restart times are read over ``window`` and judged again over ``recent``: what
stopped before the recent window is reported as stopped, not as the incident
(``agents.analyzers.recency``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from kubernetes import client

from agents.analyzers import changes, dns, services, storage, workloads
from agents.analyzers.finding import Finding
from agents.analyzers.logs import analyze_logs
from agents.analyzers.rank import diagnose
from agents.analyzers.snapshot import (
    Snapshot,
    app_namespaces,
    read_cluster,
    read_namespace,
)
from agents.analyzers.spans import analyze_spans, read_error_history
from agents.analyzers.telemetry import analyze_telemetry, read_telemetry
from agents.probe.metrics import PrometheusClient
from agents.probe.traces import JaegerClient
from agents.tools.errors import describe_error
from agents.tools.result import ToolResult

log = logging.getLogger(__name__)
ClusterAnalyzer = Callable[[Snapshot], list[Finding]]
CLUSTER_ANALYZERS: tuple[ClusterAnalyzer, ...] = (
    *workloads.ANALYZERS,
    changes.analyze_changes,
    services.analyze_services,
    storage.analyze_claims,
    dns.analyze_dns,
)


@dataclass
class AnalysisReport:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)


async def analyze(
    api: client.ApiClient,
    *,
    namespaces: Sequence[str] | None = None,
    prometheus_url: str | None = None,
    jaeger_url: str | None = None,
    window: str = "1m",
    recent: str = "15s",
    log_since_s: int | None = None,
) -> AnalysisReport:
    """All findings for ``namespaces`` (default: every non-system namespace); never raises
    for a single failing source, only when the API itself cannot be read.

    ``recent`` (a duration shorter than ``window``) is how far back a symptom must still
    show to count as happening now; one as long as the window turns that judgement off.
    """
    report = AnalysisReport()
    short = recent_window(window, recent)
    report.namespaces = (
        list(namespaces) if namespaces else await asyncio.to_thread(app_namespaces, api)
    )
    cluster = await asyncio.to_thread(read_cluster, api)
    prom = PrometheusClient(prometheus_url) if prometheus_url else None
    jaeger = JaegerClient(jaeger_url) if jaeger_url else None
    since = max(window_seconds(window), 15) if log_since_s is None else log_since_s
    for namespace in report.namespaces:
        snap = await asyncio.to_thread(read_namespace, api, namespace, cluster)
        snap.recent = short
        snap.window = timedelta(seconds=window_seconds(window)) if short else None
        report.findings += _cluster_findings(snap, report)
        report.findings += await _guard(report, "logs", analyze_logs(api, snap, since_s=since))
        if prom is not None:
            report.findings += await _guard(report, "metrics", _metrics(prom, snap, window))
        if jaeger is not None:
            report.findings += await _guard(report, "traces", _traces(jaeger, snap, window))
    return report


def _cluster_findings(snap: Snapshot, report: AnalysisReport) -> list[Finding]:
    found: list[Finding] = []
    for analyzer in CLUSTER_ANALYZERS:
        try:
            found += analyzer(snap)
        except Exception as exc:  # one broken analyzer must not hide the others' findings
            log.exception("analyzer %s failed", analyzer.__name__)
            report.errors.append(f"{analyzer.__name__} on {snap.namespace}: {describe_error(exc)}")
    return found


async def _guard(
    report: AnalysisReport, source: str, job: Awaitable[list[Finding]]
) -> list[Finding]:
    try:
        result = await job
    except Exception as exc:  # a telemetry source may be down; the cluster findings still count
        report.errors.append(f"{source}: {describe_error(exc, service=source)}")
        return []
    return list(result)


async def _metrics(prom: PrometheusClient, snap: Snapshot, window: str) -> list[Finding]:
    data = await read_telemetry(prom, snap.namespace, window, snap.recent)
    return analyze_telemetry(snap, data)


async def _traces(jaeger: JaegerClient, snap: Snapshot, window: str) -> list[Finding]:
    lookback = f"{max(window_seconds(window), 10)}s"
    paths, newest = await read_error_history(jaeger, snap.namespace, lookback)
    return analyze_spans(snap, paths, newest=newest)


def window_seconds(window: str) -> int:
    """``30s``, ``5m``, ``1h`` as seconds (PromQL's simple durations); 60 when unreadable."""
    units = {"s": 1, "m": 60, "h": 3600}
    if len(window) < 2 or window[-1] not in units or not window[:-1].isdigit():
        return 60
    return int(window[:-1]) * units[window[-1]]


def recent_window(window: str, recent: str) -> timedelta | None:
    """The recent window as a duration, or None when it would not be shorter than ``window``
    (a 15 s analysis has no "earlier" to tell apart) or cannot be read."""
    units = {"s": 1, "m": 60, "h": 3600}
    if len(recent) < 2 or recent[-1] not in units or not recent[:-1].isdigit():
        return None
    seconds = int(recent[:-1]) * units[recent[-1]]
    if seconds <= 0 or seconds >= window_seconds(window):
        return None
    return timedelta(seconds=seconds)


async def analyzers_tool(
    api: client.ApiClient,
    *,
    namespaces: Sequence[str] | None = None,
    prometheus_url: str | None = None,
    jaeger_url: str | None = None,
    window: str = "1m",
    recent: str = "15s",
    top: int = 8,
) -> ToolResult:
    """The analyzers as a Probe tool: the diagnosis, then the strongest findings; never raises."""
    where = f" -n {','.join(namespaces)}" if namespaces else ""
    invocation = f"analyze{where} [{window}]"
    try:
        report = await analyze(
            api,
            namespaces=namespaces,
            prometheus_url=prometheus_url,
            jaeger_url=jaeger_url,
            window=window,
            recent=recent,
        )
    except Exception as exc:  # a tool never raises into the loop
        return ToolResult.failure(invocation, describe_error(exc))
    diagnosis = diagnose(report.findings)
    lines = [diagnosis.text(), ""]
    lines += [f.text() for f in diagnosis.findings[:top]]
    lines += [f"(analyzer unavailable: {e})" for e in report.errors]
    return ToolResult.success(
        invocation,
        "\n".join(lines).strip() + "\n",
        answers=diagnosis.answers(),
        findings=len(report.findings),
    )


__all__ = [
    "CLUSTER_ANALYZERS",
    "AnalysisReport",
    "analyze",
    "analyzers_tool",
    "recent_window",
    "window_seconds",
]
