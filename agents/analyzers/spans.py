"""Trace analyzer: where in the call graph requests fail, and who is to blame.

Traces separate the failing hop from everything above it: the deepest error
span of each failing trace is where the failure starts. A client span's error
is usually about its peer (a database that refuses, a callee that times out),
unless the message says otherwise (a host that does not exist is the caller's
mistake); a server span that fails with no failing child is the service's own
error. The same attribution rules as for logs apply. Each failing path keeps
the start time of its newest span: a verdict none of whose failures started
within the recent window has stopped (``agents.analyzers.recency``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from agents.analyzers.attribution import blame
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.recency import aged
from agents.analyzers.snapshot import Snapshot
from agents.probe.traces import (
    ErrorPath,
    JaegerClient,
    error_paths,
    error_traces,
    failing_leaves,
    spans_of,
)
from agents.redact import redact

MIN_TRACES = 2
_TIMEOUT_WORDS = ("DeadlineExceeded", "DEADLINE_EXCEEDED", "timed out", "timeout", "Timeout")


@dataclass(frozen=True)
class _Verdict:
    component: str
    fault: Fault | None
    reason: str
    score: float


Newest = Mapping[ErrorPath, datetime]
"""A failing path (its ``count`` set to 1) → the start of its newest failing span."""


async def read_error_paths(jaeger: JaegerClient, namespace: str, lookback: str) -> list[ErrorPath]:
    return error_paths(await error_traces(jaeger, namespace=namespace, lookback=lookback))


async def read_error_history(
    jaeger: JaegerClient, namespace: str, lookback: str
) -> tuple[list[ErrorPath], dict[ErrorPath, datetime]]:
    """The failing paths, and when each last started failing."""
    traces = await error_traces(jaeger, namespace=namespace, lookback=lookback)
    return error_paths(traces), newest_failures(traces)


def newest_failures(traces: Sequence[Mapping[str, Any]]) -> dict[ErrorPath, datetime]:
    """Each failing path's newest failing-span start (Jaeger's ``startTime``, microseconds)."""
    newest: dict[ErrorPath, datetime] = {}
    for trace in traces:
        starts = {
            str(span.get("spanID")): span.get("startTime") for span in trace.get("spans") or []
        }
        for span, path in failing_leaves(spans_of(trace)):
            micros = starts.get(span.span_id)
            if not isinstance(micros, int | float):
                continue
            key = ErrorPath(
                path,
                span.service,
                span.operation,
                span.kind,
                span.peer,
                span.message,
                span.namespace,
            )
            when = datetime.fromtimestamp(micros / 1e6, UTC)
            newest[key] = max(newest.get(key, when), when)
    return newest


def analyze_spans(
    snap: Snapshot, paths: list[ErrorPath], *, newest: Newest | None = None
) -> list[Finding]:
    """Findings per verdict; with ``newest`` and ``snap.recent``, verdicts whose newest failure
    started before the recent window are reported as stopped."""
    verdicts: Counter[_Verdict] = Counter()
    samples: dict[_Verdict, ErrorPath] = {}
    last: dict[_Verdict, datetime | None] = {}
    for path in paths:
        verdict = _judge(snap, path)
        if verdict is not None:
            verdicts[verdict] += path.count
            samples.setdefault(verdict, path)
            seen = (newest or {}).get(replace(path, count=1))
            if verdict not in last:
                last[verdict] = seen
            else:  # one path of unknown time makes the verdict's unknown: never aged on a guess
                before = last[verdict]
                last[verdict] = None if before is None or seen is None else max(before, seen)
    findings = []
    for verdict, count in verdicts.items():
        if count < MIN_TRACES:
            continue
        found = _finding(snap, verdict, count, samples[verdict])
        if newest is not None:
            found = aged(found, last.get(verdict), snap.now, snap.recent, "newest error span")
        findings.append(found)
    return findings


def _judge(snap: Snapshot, path: ErrorPath) -> _Verdict | None:
    client_side = path.kind in ("client", "producer") and path.peer
    found = blame(
        path.message, client=path.service, peer=path.peer if client_side else None, snap=snap
    )
    if found is not None:
        return _Verdict(found.component, found.fault, found.reason, min(found.score, 0.7))
    if client_side and path.peer in snap.service_names:
        if any(word in path.message for word in _TIMEOUT_WORDS):
            return _Verdict(
                str(path.peer),
                ("Application", "Network/Storage Issue"),
                f"calls from {path.service} to {path.peer} time out",
                0.6,
            )
        return _Verdict(str(path.peer), None, f"calls from {path.service} to {path.peer} fail", 0.5)
    if path.kind == "server" and path.service in snap.service_names:
        return _Verdict(
            path.service,
            ("Application", "Code Defect"),
            f"{path.service} fails requests itself (no failing downstream call)",
            0.6,
        )
    return None


def _finding(snap: Snapshot, verdict: _Verdict, count: int, sample: ErrorPath) -> Finding:
    summary = f"{verdict.component}: {verdict.reason} (seen in {count} error traces)"
    return Finding(
        analyzer="traces",
        severity=Severity.WARNING,
        namespace=snap.namespace,
        kind="Service",
        name=verdict.component,
        component=verdict.component,
        summary=summary,
        evidence=[redact(sample.text())[:400]],
        suggested_fault=verdict.fault,
        score=verdict.score,
    )
