"""Ranking findings into one diagnosis, and the telemetry rules that find the deepest failure."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.rank import diagnose
from agents.analyzers.snapshot import Snapshot
from agents.analyzers.spans import analyze_spans
from agents.analyzers.telemetry import Telemetry, error_outliers, latency_outliers
from agents.executor.actions import RolloutRestart
from agents.probe.metrics import ServiceRates
from agents.probe.traces import ErrorPath


def _finding(
    component: str,
    analyzer: str,
    score: float,
    *,
    severity: Severity = Severity.WARNING,
    fault: Fault | None = None,
    namespace: str = "ns",
) -> Finding:
    return Finding(
        analyzer=analyzer,
        severity=severity,
        namespace=namespace,
        kind="Service",
        name=component,
        component=component,
        summary=f"{component} via {analyzer}",
        suggested_fault=fault,
        score=score,
    )


def test_no_findings_means_no_detection() -> None:
    diagnosis = diagnose([])
    assert diagnosis.answers() == {
        "detection": "No",
        "localization": [],
        "analysis": {"system_level": None, "fault_type": None},
        "mitigation": None,
    }


def test_info_findings_localise_without_raising_an_alarm() -> None:
    diagnosis = diagnose([_finding("geo", "restart", 0.3, severity=Severity.INFO)])
    assert not diagnosis.detected
    assert diagnosis.components == ["geo"]


def test_one_direct_cause_beats_many_symptoms() -> None:
    fix = RolloutRestart(namespace="ns", name="mongodb-geo")
    cause = _finding("mongodb-geo", "logs", 0.95, fault=("Application", "Authentication Issue"))
    cause = cause.model_copy(update={"remediation": fix})
    symptoms = [
        _finding("geo", a, s)
        for a, s in (("error_rate", 0.55), ("latency", 0.45), ("traces", 0.6), ("endpoints", 0.6))
    ]
    diagnosis = diagnose([*symptoms, cause])
    assert diagnosis.detected
    assert diagnosis.components == ["mongodb-geo"]
    assert (diagnosis.system_level, diagnosis.fault_type) == ("Application", "Authentication Issue")
    assert diagnosis.mitigation == fix
    assert diagnosis.confidence > 60


def test_identical_findings_on_several_components_are_all_named() -> None:
    fault: Fault = ("Virtualization", "Operation Error")
    found = [
        _finding(f"mongodb-{n}", "storage", 0.93, fault=fault) for n in ("geo", "rate", "user")
    ]
    found.append(_finding("search", "error_rate", 0.55))
    assert diagnose(found).components == ["mongodb-geo", "mongodb-rate", "mongodb-user"]


def test_labels_come_from_the_strongest_labelled_finding_of_the_top_component() -> None:
    found = [
        _finding("user", "error_rate", 0.55, fault=("Application", "Network/Storage Issue")),
        _finding("user", "latency", 0.45, fault=("Application", "Code Defect")),
    ]
    assert diagnose(found).fault_type == "Network/Storage Issue"


def _snap() -> Snapshot:
    return Snapshot(
        namespace="ns",
        now=datetime(2026, 1, 1, tzinfo=UTC),
        services=[{"metadata": {"name": n}} for n in ("frontend", "search", "geo", "user")],
    )


def test_only_the_deepest_failing_service_is_reported() -> None:
    data = Telemetry(
        rates=[
            ServiceRates("ns", "search", {"200": 5.0, "500": 5.0}),
            ServiceRates("ns", "geo", {"200": 4.0, "500": 6.0}),
            ServiceRates("ns", "user", {"200": 10.0}),
        ],
        edges={
            ("frontend", "search"): (10.0, 5.0),
            ("search", "geo"): (10.0, 6.0),
            ("frontend", "user"): (10.0, 0.0),
        },
    )
    (finding,) = error_outliers(_snap(), data)
    assert finding.component == "geo"
    assert finding.suggested_fault == ("Application", "Code Defect")


def test_timeouts_suggest_a_network_problem() -> None:
    data = Telemetry(
        rates=[ServiceRates("ns", "user", {"200": 1.0, "504": 9.0})],
        edges={("frontend", "user"): (10.0, 9.0)},
    )
    (finding,) = error_outliers(_snap(), data)
    assert finding.suggested_fault == ("Application", "Network/Storage Issue")


def test_latency_outliers_need_a_clear_margin() -> None:
    calm = Telemetry(p99={"frontend": 9.0, "search": 22.0, "geo": 8.0, "user": 6.0})
    assert latency_outliers(_snap(), calm) == []
    slow = Telemetry(
        p99={"frontend": 9.0, "search": 10.0, "geo": 400.0, "user": 6.0},
        edges={("search", "geo"): (5.0, 0.0)},
    )
    (finding,) = latency_outliers(_snap(), slow)
    assert finding.component == "geo"


def test_trace_paths_blame_the_peer_of_a_failing_client_span() -> None:
    timeout = ErrorPath(
        ("frontend",),
        "frontend",
        "user.User/CheckUser",
        "client",
        "user",
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        "ns",
        count=5,
    )
    own = ErrorPath(
        ("frontend", "search"),
        "search",
        "search.Search/Nearby",
        "server",
        None,
        "runtime error: invalid memory address",
        "ns",
        count=1,
    )
    (finding,) = analyze_spans(_snap(), [timeout, own])
    assert finding.component == "user"
    assert finding.suggested_fault == ("Application", "Network/Storage Issue")
