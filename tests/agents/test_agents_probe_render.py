"""kubectl-style rendering, PromQL helpers and Jaeger trace summaries, without a cluster."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from kubernetes.client.rest import ApiException

from agents.probe.describe import events_table, probe_text
from agents.probe.kubectl import rollout_status
from agents.probe.metrics import ServiceRates, histogram_quantile
from agents.probe.render import age, get_table, pod_status, to_yaml
from agents.probe.traces import error_paths, spans_of
from agents.tools.errors import api_error_message
from agents.tools.result import ToolResult, ToolStatus

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _pod(name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": (NOW - timedelta(minutes=7)).isoformat()},
        "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.0.0.1", **status},
    }


def test_pod_status_follows_kubectl_rules() -> None:
    waiting = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    assert pod_status(_pod("a", **waiting)) == "CrashLoopBackOff"
    oom = {"containerStatuses": [{"state": {"terminated": {"reason": "OOMKilled"}}}]}
    assert pod_status(_pod("b", **oom)) == "OOMKilled"
    running = {"containerStatuses": [{"state": {"running": {}}, "ready": True}]}
    assert pod_status(_pod("c", **running)) == "Running"
    deleting = _pod("d")
    deleting["metadata"]["deletionTimestamp"] = NOW.isoformat()
    assert pod_status(deleting) == "Terminating"


def test_get_table_has_kubectl_columns() -> None:
    statuses = {"containerStatuses": [{"state": {"running": {}}, "ready": True, "restartCount": 2}]}
    text = get_table("Pod", [_pod("geo-1", **statuses)], wide=True, now=NOW)
    header, row = text.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert row.split() == ["geo-1", "1/1", "Running", "2", "7m", "10.0.0.1", "n1"]
    assert age((NOW - timedelta(hours=5)).isoformat(), NOW) == "5h"
    assert age((NOW - timedelta(seconds=42)).isoformat(), NOW) == "42s"


def test_yaml_drops_managed_fields_and_keeps_multiline_text_readable() -> None:
    obj = {
        "kind": "ConfigMap",
        "metadata": {"name": "x", "managedFields": [{"manager": "kubectl"}]},
        "data": {"mongod.conf": "net:\n  port: 27017\n"},
    }
    text = to_yaml([obj], single=True)
    assert "managedFields" not in text
    assert "mongod.conf: |" in text
    assert yaml.safe_load(text)["data"]["mongod.conf"] == "net:\n  port: 27017\n"


def test_rollout_status_and_probe_summary() -> None:
    dep = {
        "metadata": {"name": "geo", "generation": 2},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }
    assert "1 old replicas are pending termination" in rollout_status(dep)
    dep["status"]["replicas"] = 1
    assert rollout_status(dep) == 'deployment "geo" successfully rolled out'
    probe = {"tcpSocket": {"port": 9091}, "periodSeconds": 20}
    assert probe_text(probe).startswith("tcp-socket :9091 delay=0s")


def test_events_table_orders_by_time_and_counts() -> None:
    events = [
        {
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting",
            "lastTimestamp": (NOW - timedelta(seconds=5)).isoformat(),
            "count": 4,
            "firstTimestamp": (NOW - timedelta(minutes=2)).isoformat(),
        },
        {
            "type": "Normal",
            "reason": "Pulled",
            "message": "pulled",
            "lastTimestamp": (NOW - timedelta(minutes=3)).isoformat(),
        },
    ]
    lines = events_table(events, NOW)
    assert lines[0] == "Events:"
    assert "Pulled" in lines[2]
    assert "BackOff" in lines[3]
    assert "x4 over 2m" in lines[3]


def test_histogram_quantile_matches_prometheus() -> None:
    buckets = [(5.0, 50.0), (10.0, 90.0), (50.0, 99.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == 5.0
    assert histogram_quantile(0.9, buckets) == 10.0
    assert 10.0 < histogram_quantile(0.95, buckets) < 50.0
    assert math.isnan(histogram_quantile(0.99, []))
    rates = ServiceRates("ns", "geo", {"200": 6.0, "504": 3.0, "503": 1.0})
    assert rates.error_ratio == 0.4
    assert rates.share("504") == 0.75


def _span(sid: str, parent: str | None, pid: str, op: str, tags: dict[str, Any]) -> dict[str, Any]:
    refs = [{"refType": "CHILD_OF", "spanID": parent}] if parent else []
    tag_list = [{"key": k, "value": v} for k, v in tags.items()]
    return {
        "spanID": sid,
        "operationName": op,
        "references": refs,
        "tags": tag_list,
        "processID": pid,
        "logs": [],
    }


def test_error_paths_point_at_the_deepest_failing_span() -> None:
    trace = {
        "traceID": "t1",
        "processes": {"p1": {"serviceName": "frontend"}, "p2": {"serviceName": "geo"}},
        "spans": [
            _span("a", None, "p1", "/hotels", {"span.kind": "server", "error": True}),
            _span("b", "a", "p2", "geo.Geo/Nearby", {"span.kind": "server", "error": True}),
            _span(
                "c",
                "b",
                "p2",
                "mongo_find",
                {
                    "span.kind": "client",
                    "error": True,
                    "peer.service": "mongodb-geo",
                    "otel.status_description": "not authorized on geo-db to execute command",
                },
            ),
        ],
    }
    assert [s.service for s in spans_of(trace)] == ["frontend", "geo", "geo"]
    (path,) = error_paths([trace, trace])
    assert path.count == 2
    assert path.peer == "mongodb-geo"
    assert path.path == ("frontend", "geo")
    assert "not authorized" in path.text()
    assert "→ mongodb-geo" in path.text()


def test_tool_results_render_and_errors_read_like_sentences() -> None:
    denied = ToolResult.denied("kubectl delete pod x", "refused, nothing ran")
    assert denied.status is ToolStatus.DENIED
    assert not denied.ok
    assert denied.render().splitlines()[:2] == ["$ kubectl delete pod x", "[DENIED]"]
    user = "system:serviceaccount:aoi-system:aoi-observer"
    message = (
        f'secrets is forbidden: User "{user}" cannot list resource "secrets" '
        'in API group "" in the namespace "hotel"'
    )
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"message": message})
    assert api_error_message(exc) == (
        "403 Forbidden: the observer identity may not list secrets in namespace hotel"
    )
