"""Recency: a symptom of the long window that the recent one no longer shows has stopped.

Hand-made series, traces, log lines and pod states: each analyzer that knows when it
saw a symptom demotes the stopped ones (INFO, a fraction of the score, a suffix), keeps
what fails now as it was, and never ages a symptom whose time it does not know.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.analyzers import logs, workloads
from agents.analyzers.finding import Finding, Severity
from agents.analyzers.rank import diagnose
from agents.analyzers.recency import STOPPED_FACTOR, is_stopped, stopped
from agents.analyzers.runner import recent_window
from agents.analyzers.snapshot import Snapshot
from agents.analyzers.spans import analyze_spans, newest_failures
from agents.analyzers.telemetry import Telemetry, error_outliers, latency_outliers
from agents.probe.metrics import ServiceRates
from agents.probe.traces import ErrorPath

NS = "ns"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RECENT = timedelta(seconds=15)
SUFFIX = "(stopped: not seen in the last 15s)"
Obj = dict[str, Any]


def _snap(**objects: Any) -> Snapshot:
    names = ("frontend", "search", "geo", "user", "mongodb-geo")
    objects.setdefault("services", [{"metadata": {"name": n}} for n in names])
    return Snapshot(namespace=NS, now=NOW, recent=RECENT, **objects)


def _finding(component: str, score: float = 0.8, *, namespace: str = NS) -> Finding:
    return Finding(
        analyzer="logs",
        severity=Severity.WARNING,
        namespace=namespace,
        kind="Service",
        name=component,
        component=component,
        summary=f"{component} fails",
        score=score,
    )


# -- the mark ------------------------------------------------------------------------------


def test_a_stopped_finding_is_information_with_a_fraction_of_its_score() -> None:
    found = stopped(_finding("geo", 0.8), RECENT, evidence="newest such line 40s ago")
    assert found.severity is Severity.INFO
    assert not found.alarming
    assert found.score == pytest.approx(0.8 * STOPPED_FACTOR)
    assert found.summary == f"geo fails {SUFFIX}"
    assert found.evidence == ["newest such line 40s ago"]
    assert is_stopped(found)
    assert stopped(found, RECENT) == found  # marking twice changes nothing


def test_the_recent_window_must_be_shorter_than_the_long_one() -> None:
    assert recent_window("1m", "15s") == timedelta(seconds=15)
    assert recent_window("15s", "15s") is None
    assert recent_window("10s", "15s") is None
    assert recent_window("1m", "soon") is None
    assert recent_window("5m", "1m") == timedelta(minutes=1)


# -- metrics ------------------------------------------------------------------------------


def _failing_geo(recent: list[ServiceRates] | None) -> Telemetry:
    return Telemetry(
        rates=[
            ServiceRates(NS, "search", {"200": 5.0, "500": 5.0}),
            ServiceRates(NS, "geo", {"200": 2.0, "500": 8.0}),
        ],
        edges={("frontend", "search"): (10.0, 5.0), ("search", "geo"): (10.0, 8.0)},
        recent=RECENT if recent is not None else None,
        recent_rates=recent or [],
    )


def test_errors_the_recent_window_no_longer_shows_have_stopped() -> None:
    data = _failing_geo([ServiceRates(NS, "geo", {"200": 10.0})])
    (finding,) = error_outliers(_snap(), data)
    assert finding.component == "geo"
    assert finding.severity is Severity.INFO
    assert finding.summary.endswith(SUFFIX)
    assert "last 15s: 0% of 10.0 req/s fail" in finding.evidence[-1]


def test_errors_still_failing_now_stay_an_alarm() -> None:
    data = _failing_geo([ServiceRates(NS, "geo", {"200": 1.0, "500": 9.0})])
    (finding,) = error_outliers(_snap(), data)
    assert finding.alarming
    assert not is_stopped(finding)


def test_a_recent_window_without_traffic_proves_nothing() -> None:
    for recent in ([], [ServiceRates(NS, "geo", {"500": 0.01})]):
        data = _failing_geo(recent)
        data.recent = RECENT
        (finding,) = error_outliers(_snap(), data)
        assert finding.alarming, recent


def test_a_steep_fall_in_the_error_rate_is_a_recovery() -> None:
    # 80% over the minute, 10% in the last 15 s: the tail of a fault that was undone.
    data = _failing_geo([ServiceRates(NS, "geo", {"200": 9.0, "500": 1.0})])
    (finding,) = error_outliers(_snap(), data)
    assert is_stopped(finding)


def test_a_fault_that_just_started_is_not_a_recovery() -> None:
    data = Telemetry(
        rates=[ServiceRates(NS, "geo", {"200": 8.0, "500": 2.0})],
        edges={("search", "geo"): (10.0, 2.0)},
        recent=RECENT,
        recent_rates=[ServiceRates(NS, "geo", {"200": 2.0, "500": 8.0})],
    )
    (finding,) = error_outliers(_snap(), data)
    assert finding.alarming


def test_a_callee_that_stopped_failing_does_not_hide_its_caller_failing_now() -> None:
    # geo failed a minute ago and recovered; search fails now on its own.
    data = Telemetry(
        rates=[
            ServiceRates(NS, "search", {"200": 2.0, "500": 8.0}),
            ServiceRates(NS, "geo", {"200": 2.0, "500": 8.0}),
        ],
        edges={("frontend", "search"): (10.0, 8.0), ("search", "geo"): (10.0, 4.0)},
        recent=RECENT,
        recent_rates=[
            ServiceRates(NS, "search", {"200": 1.0, "500": 9.0}),
            ServiceRates(NS, "geo", {"200": 10.0}),
        ],
    )
    found = {f.component: f for f in error_outliers(_snap(), data)}
    assert found["search"].alarming
    assert is_stopped(found["geo"])
    assert diagnose(list(found.values())).components == ["search"]


def test_latency_back_under_the_threshold_has_stopped() -> None:
    p99 = {"frontend": 9.0, "search": 10.0, "geo": 400.0, "user": 6.0}
    edges = {("search", "geo"): (5.0, 0.0)}
    calm = {**p99, "geo": 11.0}
    (gone,) = latency_outliers(
        _snap(), Telemetry(p99=p99, edges=edges, recent=RECENT, recent_p99=calm)
    )
    assert is_stopped(gone)
    (still,) = latency_outliers(
        _snap(), Telemetry(p99=p99, edges=edges, recent=RECENT, recent_p99=p99)
    )
    assert still.alarming
    (unknown,) = latency_outliers(_snap(), Telemetry(p99=p99, edges=edges, recent=RECENT))
    assert unknown.alarming


# -- traces -------------------------------------------------------------------------------


def _path(count: int = 5) -> ErrorPath:
    return ErrorPath(
        ("frontend", "search", "geo"),
        "geo",
        "mongo_find",
        "client",
        "mongodb-geo",
        "not authorized on geo-db to execute command",
        NS,
        count=count,
    )


def test_error_spans_older_than_the_recent_window_have_stopped() -> None:
    key = _path(count=1)
    (old,) = analyze_spans(_snap(), [_path()], newest={key: NOW - timedelta(seconds=40)})
    assert is_stopped(old)
    assert "newest error span 40s ago" in old.evidence
    (fresh,) = analyze_spans(_snap(), [_path()], newest={key: NOW - timedelta(seconds=3)})
    assert fresh.alarming
    (unknown,) = analyze_spans(_snap(), [_path()], newest={})
    assert unknown.alarming


def test_the_newest_failing_span_of_each_path_is_found() -> None:
    def trace(trace_id: str, start_s: float) -> Obj:
        return {
            "traceID": trace_id,
            "processes": {"p1": {"serviceName": "geo"}},
            "spans": [
                {
                    "spanID": f"{trace_id}-1",
                    "processID": "p1",
                    "operationName": "mongo_find",
                    "startTime": int(start_s * 1e6),
                    "tags": [
                        {"key": "error", "value": True},
                        {"key": "span.kind", "value": "client"},
                        {"key": "peer.service", "value": "mongodb-geo"},
                        {"key": "otel.status_description", "value": "not authorized"},
                    ],
                }
            ],
        }

    base = NOW.timestamp()
    newest = newest_failures([trace("a", base - 50), trace("b", base - 20)])
    (when,) = newest.values()
    assert when == NOW - timedelta(seconds=20)


# -- logs ---------------------------------------------------------------------------------


def _stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


AUTH = 'Failed to query geo-db: not authorized on geo-db to execute command { find: "geo" }'


def _log_snap(*, ready: bool = True, restarts: int = 0) -> Snapshot:
    state = {"running": {}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
    pod = {
        "metadata": {"name": "geo-0", "labels": {"app": "geo"}},
        "status": {
            "containerStatuses": [{"ready": ready, "restartCount": restarts, "state": state}]
        },
    }
    return _snap(
        pods=[pod],
        services=[{"metadata": {"name": n}} for n in ("geo", "mongodb-geo")],
        deployments=[
            {
                "metadata": {"name": "geo"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"env": [{"name": "MONGO_ADDRESS", "value": "mongodb-geo:27017"}]}
                            ]
                        }
                    }
                },
            }
        ],
    )


def _logs(
    monkeypatch: pytest.MonkeyPatch, snap: Snapshot, current: str, previous: str = ""
) -> list[Finding]:
    def fake_get_text(api: object, path: str, query: dict[str, Any]) -> str:
        assert query["timestamps"] is True
        return previous if query.get("previous") else current

    monkeypatch.setattr(logs, "get_text", fake_get_text)
    return asyncio.run(logs.analyze_logs(object(), snap, since_s=60))  # type: ignore[arg-type]


def test_log_signatures_last_seen_before_the_recent_window_have_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "".join(f"{_stamp(age)} {AUTH}\n" for age in (50, 45, 40))
    (finding,) = _logs(monkeypatch, _log_snap(), text)
    assert finding.component == "mongodb-geo"
    assert is_stopped(finding)
    assert "newest such line 40s ago" in finding.evidence
    assert not finding.evidence[0].startswith("2026")  # the sample is the line, not its stamp


def test_log_signatures_seen_now_stay_an_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "".join(f"{_stamp(age)} {AUTH}\n" for age in (50, 20, 2))
    (finding,) = _logs(monkeypatch, _log_snap(), text)
    assert finding.alarming


def test_log_lines_without_a_timestamp_are_never_aged(monkeypatch: pytest.MonkeyPatch) -> None:
    text = f"{_stamp(50)} {AUTH}\n{AUTH}\n{AUTH}\n"
    (finding,) = _logs(monkeypatch, _log_snap(), text)
    assert finding.alarming


def test_the_last_words_of_a_container_down_now_are_never_aged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = "".join(f"{_stamp(age)} {AUTH}\n" for age in (90, 85, 80))
    (down,) = _logs(monkeypatch, _log_snap(ready=False, restarts=3), "", previous=old)
    assert down.alarming
    (back,) = _logs(monkeypatch, _log_snap(ready=True, restarts=3), "", previous=old)
    assert is_stopped(back)


def test_kubelet_timestamps_are_split_off() -> None:
    when, rest = logs.split_stamp("2026-01-01T11:59:20.123456789Z hello world")
    assert when == datetime(2026, 1, 1, 11, 59, 20, 123456, tzinfo=UTC)
    assert rest == "hello world"
    assert logs.split_stamp("no stamp here") == (None, "no stamp here")
    assert logs.split_stamp("2026-13-45T99:99:99Z x") == (None, "2026-13-45T99:99:99Z x")


# -- restarts and events -------------------------------------------------------------------


def _workload(cs: Obj, events: list[Obj] | None = None) -> Snapshot:
    dep = {
        "metadata": {"name": "rate", "uid": "u1", "labels": {"app": "rate"}},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"ports": [{"containerPort": 8084}]}]}},
        },
    }
    rs = {"metadata": {"name": "rate-rs", "ownerReferences": [{"uid": "u1"}]}}
    pod = {
        "metadata": {
            "name": "rate-rs-a",
            "labels": {"app": "rate"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rate-rs"}],
        },
        "status": {"containerStatuses": [cs]},
    }
    return _snap(deployments=[dep], replicasets=[rs], pods=[pod], events=events or [])


def _rfc(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _oom(seconds_ago: float, *, ready: bool) -> Obj:
    state = {"running": {}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
    last = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": _rfc(seconds_ago)}}
    return {"ready": ready, "restartCount": 2, "state": state, "lastState": last}


def test_a_past_oom_kill_of_a_container_serving_again_has_stopped() -> None:
    (past,) = workloads.oom_kills(_workload(_oom(120, ready=True)))
    assert is_stopped(past)
    assert "last OOM kill 120s ago" in past.evidence
    (fresh,) = workloads.oom_kills(_workload(_oom(5, ready=True)))
    assert fresh.alarming
    (looping,) = workloads.oom_kills(_workload(_oom(120, ready=False)))
    assert looping.alarming


def test_probe_failures_that_stopped_while_the_pods_are_ready_have_stopped() -> None:
    def event(seconds_ago: float) -> Obj:
        return {
            "involvedObject": {"kind": "Pod", "name": "rate-rs-a"},
            "reason": "Unhealthy",
            "message": "Liveness probe failed: dial tcp 10.0.0.1:9091: connect: refused",
            "lastTimestamp": _rfc(seconds_ago),
            "count": 3,
        }

    ready = {"ready": True, "restartCount": 1, "state": {"running": {}}}
    (old,) = workloads.probe_failures(_workload(ready, [event(90)]))
    assert is_stopped(old)
    (now,) = workloads.probe_failures(_workload(ready, [event(5)]))
    assert now.alarming
    unready = {"ready": False, "restartCount": 1, "state": {"running": {}}}
    (failing,) = workloads.probe_failures(_workload(unready, [event(90)]))
    assert failing.alarming


def test_a_restart_from_before_the_long_window_has_stopped() -> None:
    def restarted(seconds_ago: float) -> Obj:
        last = {"terminated": {"reason": "Error", "exitCode": 137, "finishedAt": _rfc(seconds_ago)}}
        return {"ready": True, "restartCount": 1, "state": {"running": {}}, "lastState": last}

    snap = _workload(restarted(300))
    snap.window = timedelta(minutes=1)
    (old,) = workloads.recent_restarts(snap)
    assert is_stopped(old)
    assert old.summary.endswith("(stopped: not seen in the last 1m)")
    # Within the window it stays the weak lead a killed container leaves (never an alarm).
    snap = _workload(restarted(30))
    snap.window = timedelta(minutes=1)
    (lead,) = workloads.recent_restarts(snap)
    assert not is_stopped(lead)
    assert diagnose([lead]).components == ["rate"]


def test_state_that_is_true_now_is_never_aged() -> None:
    crashing = {
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": _rfc(300)}},
    }
    (crash,) = workloads.crash_loops(_workload(crashing))
    assert crash.alarming
    assert not is_stopped(crash)


# -- ranking ------------------------------------------------------------------------------


def test_stopped_findings_never_name_the_root_cause() -> None:
    old = stopped(_finding("mongodb-geo", 0.95), RECENT)
    now = _finding("user", 0.5).model_copy(update={"severity": Severity.INFO})
    diagnosis = diagnose([old, now])
    assert not diagnosis.detected
    assert diagnosis.components == ["user"]  # a weak lead, but one that is happening now
    only_old = diagnose([old])
    assert not only_old.detected
    assert only_old.components == []
    assert only_old.findings == [old]  # kept as context
