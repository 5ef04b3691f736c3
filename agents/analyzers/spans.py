"""Trace analyzer: where in the call graph requests fail, and who is to blame.

Traces separate the failing hop from everything above it: the deepest error
span of each failing trace is where the failure starts. A client span's error
is usually about its peer (a database that refuses, a callee that times out),
unless the message says otherwise (a host that does not exist is the caller's
mistake); a server span that fails with no failing child is the service's own
error. The same attribution rules as for logs apply.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from agents.analyzers.attribution import blame
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.snapshot import Snapshot
from agents.probe.traces import ErrorPath, JaegerClient, error_paths, error_traces
from agents.redact import redact

MIN_TRACES = 2
_TIMEOUT_WORDS = ("DeadlineExceeded", "DEADLINE_EXCEEDED", "timed out", "timeout", "Timeout")


@dataclass(frozen=True)
class _Verdict:
    component: str
    fault: Fault | None
    reason: str
    score: float


async def read_error_paths(jaeger: JaegerClient, namespace: str, lookback: str) -> list[ErrorPath]:
    return error_paths(await error_traces(jaeger, namespace=namespace, lookback=lookback))


def analyze_spans(snap: Snapshot, paths: list[ErrorPath]) -> list[Finding]:
    verdicts: Counter[_Verdict] = Counter()
    samples: dict[_Verdict, ErrorPath] = {}
    for path in paths:
        verdict = _judge(snap, path)
        if verdict is not None:
            verdicts[verdict] += path.count
            samples.setdefault(verdict, path)
    return [_finding(snap, v, n, samples[v]) for v, n in verdicts.items() if n >= MIN_TRACES]


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
