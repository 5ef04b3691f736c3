"""Prometheus for the agents: PromQL queries as compact tables, and named queries by intent.

Small models write poor PromQL, so the Observer can ask for an *intent*
("error rate by service", "p99 latency", "restarts", "CPU throttling", "memory
vs limit") and get a ready table. Ratios and quantiles are computed here from
plain per-series rates rather than with nested PromQL, which keeps every query
a one-liner any Prometheus answers, and lets the analyzers reuse the numbers.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from agents.tools.errors import describe_error
from agents.tools.paths import dns_label
from agents.tools.result import ToolResult
from agents.tools.table import render_table

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WINDOW = "1m"


class PrometheusError(RuntimeError):
    """Prometheus refused a query (bad PromQL) or could not be reached."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    """Instant and range queries against the Prometheus HTTP API.

    Usage::

        prom = PrometheusClient("http://prometheus:9090")
        samples = await prom.query('up{job="kubernetes-pods"}')
    """

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = self.base_url + path
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as session,
            session.get(url, params=dict(params)) as response,
        ):
            try:
                # Decoding a large answer is CPU work: off the loop concurrent incidents share.
                body = await asyncio.to_thread(json.loads, await response.read())
            except ValueError:
                body = None
        if not isinstance(body, dict):
            raise PrometheusError(f"Prometheus answered {response.status} without JSON")
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused the query: {body.get('error', body)}")
        return body.get("data") or {}

    async def query(self, promql: str, *, at: float | None = None) -> list[Sample]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self._get("/api/v1/query", params)
        return [_sample(item) for item in data.get("result") or [] if "value" in item]

    async def query_range(
        self, promql: str, *, start: float, end: float, step_s: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s:g}",
        }
        data = await self._get("/api/v1/query_range", params)
        return [
            (dict(item.get("metric") or {}), [(float(t), float(v)) for t, v in item["values"]])
            for item in data.get("result") or []
        ]


def _sample(item: Mapping[str, Any]) -> Sample:
    return Sample(dict(item.get("metric") or {}), float(item["value"][1]))


def _selector(namespace: str | None, extra: str = "") -> str:
    # A namespace is spliced into PromQL: only a valid one, so no quote can end the string.
    parts = [f'namespace="{dns_label(namespace, what="namespace")}"'] if namespace else []
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def _rate(metric: str, by: str, selector: str, window: str, agg: str = "sum") -> str:
    """``sum by (labels) (rate(metric{selector}[window]))``."""
    return f"{agg} by ({by}) (rate({metric}{selector}[{window}]))"


# -- the numbers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRates:
    """Requests to one destination service as its callers see them, by response code."""

    namespace: str
    service: str
    codes: dict[str, float]

    @property
    def rps(self) -> float:
        return sum(self.codes.values())

    @property
    def error_rps(self) -> float:
        return sum(v for code, v in self.codes.items() if code.startswith("5"))

    @property
    def error_ratio(self) -> float:
        return self.error_rps / self.rps if self.rps > 0 else 0.0

    def share(self, code: str) -> float:
        """Share of the failures answered with ``code`` (504: timeouts, 503: unavailable)."""
        return self.codes.get(code, 0.0) / self.error_rps if self.error_rps > 0 else 0.0


async def error_rates(
    prom: PrometheusClient, namespace: str | None, window: str = DEFAULT_WINDOW
) -> list[ServiceRates]:
    """Requests per destination service and response code (the callers' sidecars report them)."""
    selector = _selector(namespace, 'reporter="source"')
    by = "namespace, destination_service_name, response_code"
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for s in await prom.query(_rate("istio_requests_total", by, selector, window)):
        key = (s.labels.get("namespace", ""), s.labels.get("destination_service_name", ""))
        codes = totals.setdefault(key, {})
        code = s.labels.get("response_code", "")
        codes[code] = codes.get(code, 0.0) + (0.0 if math.isnan(s.value) else s.value)
    return [ServiceRates(ns, svc, codes) for (ns, svc), codes in sorted(totals.items())]


async def edge_errors(
    prom: PrometheusClient, namespace: str | None, window: str = DEFAULT_WINDOW
) -> dict[tuple[str, str], tuple[float, float]]:
    """(caller, callee) → (requests/s, 5xx/s), for finding the deepest failing call."""
    selector = _selector(namespace, 'reporter="source"')
    promql = (
        "sum by (source_workload, destination_service_name, response_code) "
        f"(rate(istio_requests_total{selector}[{window}]))"
    )
    edges: dict[tuple[str, str], tuple[float, float]] = {}
    for s in await prom.query(promql):
        key = (s.labels.get("source_workload", ""), s.labels.get("destination_service_name", ""))
        rps, err = edges.get(key, (0.0, 0.0))
        value = 0.0 if math.isnan(s.value) else s.value
        failed = value if s.labels.get("response_code", "").startswith("5") else 0.0
        edges[key] = (rps + value, err + failed)
    return edges


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


async def latency_quantiles(
    prom: PrometheusClient, namespace: str | None, q: float = 0.99, window: str = DEFAULT_WINDOW
) -> dict[tuple[str, str], float]:
    """(namespace, destination service) → the q-quantile of request duration in ms."""
    selector = _selector(namespace, 'reporter="source"')
    promql = (
        "sum by (namespace, destination_service_name, le) "
        f"(rate(istio_request_duration_milliseconds_bucket{selector}[{window}]))"
    )
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for s in await prom.query(promql):
        key = (s.labels.get("namespace", ""), s.labels.get("destination_service_name", ""))
        if not math.isnan(s.value):
            buckets.setdefault(key, []).append((float(s.labels.get("le", "inf")), s.value))
    found = {key: histogram_quantile(q, b) for key, b in buckets.items()}
    return {key: value for key, value in found.items() if not math.isnan(value)}


async def by_container(
    prom: PrometheusClient, promql: str, label: str = "container"
) -> dict[tuple[str, str], float]:
    """(namespace, container) → the largest value over its pods (or keyed by another label)."""
    out: dict[tuple[str, str], float] = {}
    for s in await prom.query(promql):
        key = (s.labels.get("namespace", ""), s.labels.get(label, ""))
        if key[1] and not math.isnan(s.value):
            out[key] = max(out.get(key, -math.inf), s.value)
    return out


async def throttling(
    prom: PrometheusClient, namespace: str | None, window: str = DEFAULT_WINDOW
) -> dict[tuple[str, str], float]:
    """(namespace, container) → share of CFS periods throttled (0..1)."""
    sel = _selector(namespace)
    by = "namespace, container"
    throttled = await by_container(
        prom, _rate("container_cpu_cfs_throttled_periods_total", by, sel, window)
    )
    periods = await by_container(prom, _rate("container_cpu_cfs_periods_total", by, sel, window))
    return {k: throttled.get(k, 0.0) / v for k, v in periods.items() if v > 0}


async def cpu_usage(
    prom: PrometheusClient, namespace: str | None, window: str = DEFAULT_WINDOW
) -> dict[tuple[str, str], float]:
    """(namespace, container) → cores used by its busiest pod."""
    sel = _selector(namespace)
    return await by_container(
        prom,
        f"max by (namespace, container) (rate(container_cpu_usage_seconds_total{sel}[{window}]))",
    )


async def memory_vs_limit(
    prom: PrometheusClient, namespace: str | None
) -> dict[tuple[str, str], tuple[float, float | None]]:
    """(namespace, container) → (working set bytes, memory limit bytes or None)."""
    sel = _selector(namespace)
    used = await by_container(
        prom, f"max by (namespace, container) (container_memory_working_set_bytes{sel})"
    )
    limit_sel = _selector(namespace, 'resource="memory"')
    limits = await by_container(
        prom, f"max by (namespace, container) (kube_pod_container_resource_limits{limit_sel})"
    )
    return {key: (value, limits.get(key)) for key, value in used.items()}


async def pod_usage(
    prom: PrometheusClient, namespace: str | None, window: str = DEFAULT_WINDOW
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """(namespace, pod) → CPU cores, and (namespace, pod) → working set bytes."""
    sel = _selector(namespace)
    cpu = await by_container(
        prom, _rate("container_cpu_usage_seconds_total", "namespace, pod", sel, window), "pod"
    )
    memory_promql = f"sum by (namespace, pod) (container_memory_working_set_bytes{sel})"
    return cpu, await by_container(prom, memory_promql, "pod")


async def restarts(prom: PrometheusClient, namespace: str | None) -> dict[tuple[str, str], float]:
    sel = _selector(namespace)
    return await by_container(
        prom, f"sum by (namespace, container) (kube_pod_container_status_restarts_total{sel})"
    )


async def kafka_lag(
    prom: PrometheusClient, namespace: str | None, offset: str | None = None
) -> list[Sample]:
    """Consumer-group lag now, or ``offset`` ago (``30s``) to see whether it grows."""
    shift = f" offset {offset}" if offset else ""
    selector = _selector(namespace)
    return await prom.query(
        f"sum by (namespace, consumergroup, topic) (kafka_consumergroup_lag{selector}{shift})"
    )


async def request_rates(
    prom: PrometheusClient,
    namespace: str | None,
    *,
    window: str = DEFAULT_WINDOW,
    at: float | None = None,
) -> dict[tuple[str, str], float]:
    """(namespace, service) → requests/s arriving (reported by the service's own sidecar)."""
    selector = _selector(namespace, 'reporter="destination"')
    promql = _rate("istio_requests_total", "namespace, destination_service_name", selector, window)
    out: dict[tuple[str, str], float] = {}
    for s in await prom.query(promql, at=at):
        if not math.isnan(s.value):
            out[(s.labels.get("namespace", ""), s.labels.get("destination_service_name", ""))] = (
                s.value
            )
    return out


# -- named queries for the Observer ------------------------------------------------------

INTENTS = {
    "error_rate": "share of failing (5xx) requests per destination service",
    "latency_p99": "p99 request latency per destination service",
    "restarts": "container restarts per container",
    "cpu_throttling": "share of CPU periods throttled per container",
    "memory": "working set vs memory limit per container",
    "cpu": "CPU cores used per container",
    "request_rate": "requests per second arriving at each service",
    "kafka_lag": "consumer group lag per topic",
}


async def named_query(
    prom: PrometheusClient, intent: str, namespace: str | None, window: str = DEFAULT_WINDOW
) -> ToolResult:
    """One intent as a compact table; never raises."""
    invocation = f"metrics {intent}" + (f" -n {namespace}" if namespace else "") + f" [{window}]"
    if intent not in INTENTS:
        return ToolResult.failure(
            invocation, f"unknown metrics intent {intent!r}; use one of {', '.join(INTENTS)}"
        )
    try:
        text = await _intent_table(prom, intent, namespace, window)
    except Exception as exc:  # a tool never raises into the loop
        return ToolResult.failure(invocation, _prom_error(exc, prom))
    if not text:
        return ToolResult.no_data(invocation, f"no {INTENTS[intent]} series found")
    return ToolResult.success(invocation, text, intent=intent)


def _prom_error(exc: BaseException, prom: PrometheusClient) -> str:
    if isinstance(exc, PrometheusError):
        return str(exc)
    return describe_error(exc, service=f"Prometheus at {prom.base_url}")


async def _intent_table(
    prom: PrometheusClient, intent: str, namespace: str | None, window: str
) -> str:
    if intent == "error_rate":
        rates = await error_rates(prom, namespace, window)
        rows = [
            [r.namespace, r.service, f"{r.rps:.2f}", f"{100 * r.error_ratio:.1f}%"]
            for r in sorted(rates, key=lambda r: -r.error_ratio)
        ]
        return render_table(["NAMESPACE", "SERVICE", "RPS", "ERRORS"], rows) if rows else ""
    if intent == "latency_p99":
        p99 = await latency_quantiles(prom, namespace, 0.99, window)
        rows = [
            [ns, svc, f"{ms:.1f}"] for (ns, svc), ms in sorted(p99.items(), key=lambda i: -i[1])
        ]
        return render_table(["NAMESPACE", "SERVICE", "P99_MS"], rows) if rows else ""
    return await _container_table(prom, intent, namespace, window)


async def _container_table(
    prom: PrometheusClient, intent: str, namespace: str | None, window: str
) -> str:
    if intent == "memory":
        memory = await memory_vs_limit(prom, namespace)
        rows = [
            [ns, c, _mib(used), _mib(limit), f"{100 * used / limit:.0f}%" if limit else ""]
            for (ns, c), (used, limit) in sorted(memory.items())
        ]
        return (
            render_table(["NAMESPACE", "CONTAINER", "WORKING_SET", "LIMIT", "USED"], rows)
            if rows
            else ""
        )
    if intent == "kafka_lag":
        lag = await kafka_lag(prom, namespace)
        keys = ("namespace", "consumergroup", "topic")
        rows = [[*(s.labels.get(k, "") for k in keys), f"{s.value:.0f}"] for s in lag]
        return render_table(["NAMESPACE", "GROUP", "TOPIC", "LAG"], rows) if rows else ""
    if intent == "request_rate":
        values = await request_rates(prom, namespace, window=window)
        header, fmt = "RPS", "{:.2f}"
    else:
        values, header, fmt = await _per_container(prom, intent, namespace, window)
    ordered = sorted(values.items(), key=lambda i: -i[1])
    # Restart and throttling tables list only the containers that have any: zeros are noise.
    keep_zero = intent not in ("restarts", "cpu_throttling")
    rows = [[ns, name, fmt.format(v)] for (ns, name), v in ordered if keep_zero or v >= 0.5]
    return render_table(["NAMESPACE", "NAME", header], rows) if rows else ""


async def _per_container(
    prom: PrometheusClient, intent: str, namespace: str | None, window: str
) -> tuple[dict[tuple[str, str], float], str, str]:
    if intent == "restarts":
        return await restarts(prom, namespace), "RESTARTS", "{:.0f}"
    if intent == "cpu_throttling":
        found = await throttling(prom, namespace, window)
        return {k: 100 * v for k, v in found.items()}, "THROTTLED_%", "{:.0f}"
    found = await cpu_usage(prom, namespace, window)
    return {k: 1000 * v for k, v in found.items()}, "CPU_MILLICORES", "{:.0f}"


def _mib(value: float | None) -> str:
    return f"{value / 1048576:.0f}Mi" if value is not None else ""


# -- raw PromQL for the Observer ---------------------------------------------------------

MAX_ROWS = 40


def _labels_text(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or "{}"


async def promql_tool(
    prom: PrometheusClient, promql: str, *, minutes: int | None = None
) -> ToolResult:
    """A PromQL query as a compact table: instant values, or min/avg/max/last over ``minutes``."""
    invocation = f"promql {promql}" + (f" [last {minutes}m]" if minutes else "")
    try:
        rows = await (
            _range_rows(prom, promql, minutes) if minutes else _instant_rows(prom, promql)
        )
    except Exception as exc:  # a tool never raises into the loop
        return ToolResult.failure(invocation, _prom_error(exc, prom))
    if not rows:
        return ToolResult.no_data(invocation, "the query returned no series")
    headers = ["SERIES", "MIN", "AVG", "MAX", "LAST"] if minutes else ["SERIES", "VALUE"]
    more = f"({len(rows) - MAX_ROWS} more series not shown)\n" if len(rows) > MAX_ROWS else ""
    return ToolResult.success(invocation, render_table(headers, rows[:MAX_ROWS]) + more)


async def _instant_rows(prom: PrometheusClient, promql: str) -> list[list[str]]:
    samples = sorted(
        await prom.query(promql), key=lambda s: -abs(s.value) if not math.isnan(s.value) else 0
    )
    return [[_labels_text(s.labels), f"{s.value:.4g}"] for s in samples]


async def _range_rows(prom: PrometheusClient, promql: str, minutes: int) -> list[list[str]]:
    end = time.time()
    step = max(minutes * 60 / 60, 1.0)
    series = await prom.query_range(promql, start=end - minutes * 60, end=end, step_s=step)
    rows = []
    for labels, points in series:
        values = [v for _, v in points if not math.isnan(v)]
        if values:
            stats = (min(values), sum(values) / len(values), max(values), values[-1])
            rows.append([_labels_text(labels), *(f"{v:.4g}" for v in stats)])
    return rows
