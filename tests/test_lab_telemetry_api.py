"""The Prometheus and Jaeger HTTP APIs, over a real loopback server and a real client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from lab.apps.spec import AppSpec, ServiceSpec
from lab.telemetry.model import AppModel
from lab.telemetry.server import TelemetryServer, start_telemetry_server
from lab.telemetry.state import AppFaults

T0 = 1_717_000_000.0
NS = "test-api"
APP = AppSpec(
    name="api",
    namespace=NS,
    entrypoint="web",
    base_rps=30.0,
    services=(
        ServiceSpec(
            name="web",
            kind="frontend",
            image="w:1",
            port=5000,
            command=("web",),
            calls=("orders", "catalog"),
        ),
        ServiceSpec(
            name="orders",
            kind="service",
            image="o:1",
            port=8081,
            command=("orders",),
            calls=("mongodb-orders",),
        ),
        ServiceSpec(name="catalog", kind="service", image="c:1", port=8082, command=("catalog",)),
        ServiceSpec(
            name="mongodb-orders",
            kind="mongodb",
            image="mongo:4.4.6",
            port=27017,
            log_style="mongodb",
        ),
    ),
)
TICKS = 40
NOW = T0 + (TICKS - 1) * 5


@pytest.fixture
async def server() -> AsyncIterator[TelemetryServer]:
    model = AppModel([APP], seed=1)
    model.update({}, AppFaults(revoked_roles={"mongodb-orders"}))
    for i in range(TICKS):
        model.tick(T0 + i * 5)
    running = await start_telemetry_server(model)
    yield running
    await running.close()


async def _get(url: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as resp:
        return resp.status, await resp.json(content_type=None)


async def _post(url: str, **form: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
        return resp.status, await resp.json()


def _value_ok(pair: list[Any]) -> bool:
    return isinstance(pair[0], int | float) and isinstance(pair[1], str) and float(pair[1]) >= 0


# -- Prometheus -----------------------------------------------------------------------------


async def test_instant_query_over_get_and_post(server: TelemetryServer) -> None:
    query = (
        'sum by (destination_service_name) (rate(istio_requests_total{response_code="500"}[1m]))'
    )
    status, body = await _get(f"{server.prometheus_url}/api/v1/query", query=query)
    assert status == 200
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    result = {r["metric"]["destination_service_name"]: r for r in body["data"]["result"]}
    assert set(result) == {"orders", "web"}
    assert result["orders"]["value"][0] == NOW
    assert all(_value_ok(r["value"]) for r in result.values())
    status, posted = await _post(f"{server.prometheus_url}/api/v1/query", query=query)
    assert status == 200
    assert posted == body


async def test_scalar_matrix_and_time_parameters(server: TelemetryServer) -> None:
    url = f"{server.prometheus_url}/api/v1/query"
    _, body = await _get(url, query="1 + 1", time="2024-05-29T16:00:00Z")
    assert body["data"] == {"resultType": "scalar", "result": [1716998400, "2"]}
    _, body = await _get(url, query='up{pod="web-0"}[30s]')
    assert body["data"]["resultType"] == "matrix"
    assert [v[1] for v in body["data"]["result"][0]["values"]] == ["1"] * 6
    _, body = await _get(url, query="up", time=str(T0 - 3600))
    assert body["data"]["result"] == []


async def test_query_range_shape(server: TelemetryServer) -> None:
    status, body = await _get(
        f"{server.prometheus_url}/api/v1/query_range",
        query="sum by (pod) (rate(container_cpu_usage_seconds_total[1m]))",
        start=str(NOW - 120),
        end=str(NOW),
        step="30s",
    )
    assert status == 200
    assert body["data"]["resultType"] == "matrix"
    series = body["data"]["result"]
    assert {s["metric"]["pod"] for s in series} == {
        "web-0",
        "orders-0",
        "catalog-0",
        "mongodb-orders-0",
    }
    for s in series:
        assert [v[0] for v in s["values"]] == [NOW - 120 + 30 * i for i in range(5)]
        assert all(_value_ok(v) for v in s["values"])


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("query", {"query": "sum(rate(x[1m]"}, "parse error"),
        ("query", {}, 'invalid parameter "query"'),
        ("query", {"query": "up", "time": "yesterday"}, 'invalid parameter "time"'),
        (
            "query_range",
            {"query": "up", "start": "0", "end": "200000", "step": "1"},
            "exceeded maximum resolution of 11,000 points",
        ),
        ("query_range", {"query": "up", "start": "10", "end": "0", "step": "1"}, "end timestamp"),
        (
            "query_range",
            {"query": "up", "start": "0", "end": "10", "step": "soon"},
            'invalid parameter "step"',
        ),
        (
            "query_range",
            {"query": "up[5m]", "start": "0", "end": "10", "step": "5"},
            "range vector",
        ),
        ("series", {}, "no match[] parameter provided"),
    ],
)
async def test_bad_requests_get_prometheus_errors(
    server: TelemetryServer, path: str, params: dict[str, str], fragment: str
) -> None:
    status, body = await _get(f"{server.prometheus_url}/api/v1/{path}", **params)
    assert status == 400
    assert body["status"] == "error"
    assert body["errorType"] == "bad_data"
    assert fragment in body["error"]


async def test_series_labels_and_label_values(server: TelemetryServer) -> None:
    status, body = await _get(
        f"{server.prometheus_url}/api/v1/series",
        **{"match[]": 'kube_deployment_status_replicas_available{deployment=~"web|orders"}'},
    )
    assert status == 200
    assert {s["deployment"] for s in body["data"]} == {"web", "orders"}
    assert all(s["__name__"] == "kube_deployment_status_replicas_available" for s in body["data"])
    _, labels = await _get(f"{server.prometheus_url}/api/v1/labels")
    assert {"__name__", "namespace", "pod", "destination_service", "le"} <= set(labels["data"])
    _, names = await _get(f"{server.prometheus_url}/api/v1/label/__name__/values")
    expected = {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_periods_total",
        "kube_pod_container_status_restarts_total",
        "kube_deployment_status_replicas_available",
        "up",
    }
    assert expected <= set(names["data"])
    _, pods = await _get(
        f"{server.prometheus_url}/api/v1/label/pod/values", **{"match[]": 'up{pod=~"web.*"}'}
    )
    assert pods["data"] == ["web-0"]


async def test_ready_metadata_and_buildinfo(server: TelemetryServer) -> None:
    url = f"{server.prometheus_url}/-/ready"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert "Ready" in await resp.text()
    _, meta = await _get(f"{server.prometheus_url}/api/v1/metadata", metric="up")
    assert meta["data"]["up"][0]["type"] == "gauge"
    _, info = await _get(f"{server.prometheus_url}/api/v1/status/buildinfo")
    assert info["data"]["version"].startswith("2.")


# -- Jaeger ---------------------------------------------------------------------------------


async def test_jaeger_services_and_operations(server: TelemetryServer) -> None:
    status, body = await _get(f"{server.jaeger_url}/api/services")
    assert status == 200
    assert body == {
        "data": ["catalog", "orders", "web"],
        "total": 3,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    _, ops = await _get(f"{server.jaeger_url}/api/services/orders/operations")
    assert "mongo_find" in ops["data"]
    _, kinds = await _get(
        f"{server.jaeger_url}/api/operations", service="orders", spanKind="client"
    )
    assert kinds["data"] == [{"name": "mongo_find", "spanKind": "client"}]


async def test_jaeger_trace_search_and_lookup(server: TelemetryServer) -> None:
    url = f"{server.jaeger_url}/api/traces"
    end = str(int(NOW * 1e6))
    status, body = await _get(url, service="web", limit="5", end=end, lookback="1h")
    assert status == 200
    assert 0 < len(body["data"]) <= 5
    trace = body["data"][0]
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}
    span = trace["spans"][0]
    assert {
        "traceID",
        "spanID",
        "operationName",
        "references",
        "startTime",
        "duration",
        "tags",
        "logs",
        "processID",
        "warnings",
    } <= set(span)
    assert span["processID"] in trace["processes"]
    assert all(
        p["serviceName"] in ("web", "orders", "catalog") for p in trace["processes"].values()
    )
    children = [s for s in trace["spans"] if s["references"]]
    assert all(r["refType"] == "CHILD_OF" for s in children for r in s["references"])
    _, one = await _get(f"{url}/{trace['traceID']}")
    assert one["data"][0]["traceID"] == trace["traceID"]
    status, missing = await _get(f"{url}/{'f' * 32}")
    assert status == 404
    assert missing["errors"][0]["msg"] == "trace not found"


async def test_jaeger_tag_and_duration_filters(server: TelemetryServer) -> None:
    url = f"{server.jaeger_url}/api/traces"
    _, errors = await _get(url, service="orders", tags=json.dumps({"error": "true"}), limit="20")
    assert errors["data"]
    for trace in errors["data"]:
        tags = [
            {t["key"]: t["value"] for t in s["tags"]}
            for s in trace["spans"]
            if trace["processes"][s["processID"]]["serviceName"] == "orders"
        ]
        assert any(
            t.get("error") is True and "not authorized" in t["otel.status_description"]
            for t in tags
        )
    _, peer = await _get(url, service="orders", tag="peer.service:mongodb-orders", limit="50")
    assert peer["data"]
    for trace in peer["data"]:
        assert any(
            t["key"] == "peer.service" and t["value"] == "mongodb-orders"
            for s in trace["spans"]
            for t in s["tags"]
        )
    _, slow = await _get(url, service="web", minDuration="10s")
    assert slow["data"] == []
    status, bad = await _get(url, service="web", minDuration="fast")
    assert status == 400
    assert "minDuration" in bad["errors"][0]["msg"]
    status, body = await _get(url)
    assert status == 400
    assert body["errors"][0]["msg"] == "parameter 'service' is required"


async def test_jaeger_dependencies(server: TelemetryServer) -> None:
    _, body = await _get(f"{server.jaeger_url}/api/dependencies", endTs=str(int(NOW * 1000)))
    links = {(d["parent"], d["child"]) for d in body["data"]}
    assert ("web", "orders") in links
