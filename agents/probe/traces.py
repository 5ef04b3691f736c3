"""Jaeger for the agents: error traces summarised as call paths with the failing span.

A raw trace is hundreds of spans; what a responder needs is "frontend → search
→ geo → mongo_find failed: not authorized on geo-db". Each error trace is cut
down to its deepest failing spans (an error span none of whose children
failed), the path of services that led there, the span's error message, and
the peer a client span was calling, which is often the real culprit.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from agents.redact import redact
from agents.tools.errors import describe_error
from agents.tools.result import ToolResult

DEFAULT_TIMEOUT_S = 10.0
NAMESPACE_TAG = "k8s.namespace.name"


class JaegerError(RuntimeError):
    """Jaeger refused a query or could not be reached."""


class JaegerClient:
    """The Jaeger query API (``/api/services``, ``/api/traces``).

    Usage::

        jaeger = JaegerClient("http://jaeger-query:16686")
        traces = await jaeger.traces("frontend", lookback="5m", tags={"error": "true"})
    """

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = self.base_url + path
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as session,
            session.get(url, params=dict(params or {})) as response,
        ):
            try:
                # Decoding a large answer is CPU work: off the loop concurrent incidents share.
                body = await asyncio.to_thread(json.loads, await response.read())
            except ValueError:
                body = None
        if not isinstance(body, dict):
            raise JaegerError(f"Jaeger answered {response.status} without JSON")
        if body.get("errors"):
            raise JaegerError(f"Jaeger refused the query: {body['errors']}")
        return body.get("data")

    async def services(self) -> list[str]:
        return [str(s) for s in await self._get("/api/services") or []]

    async def traces(
        self,
        service: str,
        *,
        lookback: str = "5m",
        limit: int = 20,
        tags: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {"service": service, "lookback": lookback, "limit": str(limit)}
        if tags:
            params["tags"] = json.dumps(dict(tags))
        return list(await self._get("/api/traces", params) or [])


@dataclass(frozen=True)
class SpanView:
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    kind: str
    error: bool
    message: str
    peer: str | None
    namespace: str | None


def spans_of(trace: Mapping[str, Any]) -> list[SpanView]:
    """The spans of one Jaeger trace JSON, with the fields a diagnosis needs."""
    processes = trace.get("processes") or {}
    views = []
    for span in trace.get("spans") or []:
        process = processes.get(span.get("processID"), {})
        tags = {t.get("key"): t.get("value") for t in span.get("tags") or []}
        ptags = {t.get("key"): t.get("value") for t in process.get("tags") or []}
        parent = next(
            (
                r.get("spanID")
                for r in span.get("references") or []
                if r.get("refType") == "CHILD_OF"
            ),
            None,
        )
        views.append(
            SpanView(
                span_id=str(span.get("spanID")),
                parent_id=parent,
                service=str(process.get("serviceName", "")),
                operation=str(span.get("operationName", "")),
                kind=str(tags.get("span.kind", "")),
                error=_is_error(tags),
                message=_message(span, tags),
                peer=_peer(tags),
                namespace=ptags.get(NAMESPACE_TAG),
            )
        )
    return views


def _is_error(tags: Mapping[str, Any]) -> bool:
    if tags.get("error") in (True, "true"):
        return True
    if str(tags.get("otel.status_code", "")).upper() == "ERROR":
        return True
    code = tags.get("http.status_code")
    return isinstance(code, int) and code >= 500


def _message(span: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
    for key in ("otel.status_description", "error.message", "exception.message"):
        if tags.get(key):
            return str(tags[key])
    for log in span.get("logs") or []:
        fields = {f.get("key"): f.get("value") for f in log.get("fields") or []}
        for key in ("message", "error.object", "error", "event"):
            if fields.get(key) and fields.get(key) != "error":
                return str(fields[key])
    return ""


def _peer(tags: Mapping[str, Any]) -> str | None:
    for key in ("peer.service", "net.peer.name", "server.address", "db.instance"):
        if tags.get(key):
            return str(tags[key])
    return None


@dataclass(frozen=True)
class ErrorPath:
    """Where requests fail: the path of services down to the deepest failing span."""

    path: tuple[str, ...]
    service: str
    operation: str
    kind: str
    peer: str | None
    message: str
    namespace: str | None
    count: int = 1

    def text(self) -> str:
        target = f" → {self.peer}" if self.kind in ("client", "producer") and self.peer else ""
        return (
            f"{' → '.join(self.path)}{target} [{self.count}x]: {self.service} "
            f"{self.operation} failed: {self.message or '(no message)'}"
        )


def failing_leaves(spans: Sequence[SpanView]) -> list[tuple[SpanView, tuple[str, ...]]]:
    """Error spans none of whose children failed, each with its path of services from the root."""
    by_id = {s.span_id: s for s in spans}
    failed_parents = {s.parent_id for s in spans if s.error and s.parent_id}
    leaves = []
    for span in spans:
        if span.error and span.span_id not in failed_parents:
            leaves.append((span, _path(span, by_id)))
    return leaves


def _path(span: SpanView, by_id: Mapping[str, SpanView]) -> tuple[str, ...]:
    services: list[str] = []
    current: SpanView | None = span
    seen: set[str] = set()
    while current is not None and current.span_id not in seen:
        seen.add(current.span_id)
        if not services or services[-1] != current.service:
            services.append(current.service)
        current = by_id.get(current.parent_id or "")
    return tuple(reversed(services))


def error_paths(traces: Sequence[Mapping[str, Any]]) -> list[ErrorPath]:
    """Distinct failing paths over many traces, most frequent first."""
    counts: Counter[ErrorPath] = Counter()
    for trace in traces:
        for span, path in failing_leaves(spans_of(trace)):
            counts[
                ErrorPath(
                    path,
                    span.service,
                    span.operation,
                    span.kind,
                    span.peer,
                    span.message,
                    span.namespace,
                )
            ] += 1
    merged = []
    for found, count in counts.most_common():
        merged.append(
            ErrorPath(
                found.path,
                found.service,
                found.operation,
                found.kind,
                found.peer,
                found.message,
                found.namespace,
                count,
            )
        )
    return merged


async def error_traces(
    jaeger: JaegerClient,
    *,
    namespace: str | None,
    services: Sequence[str] | None = None,
    lookback: str = "5m",
    limit: int = 10,
) -> list[dict[str, Any]]:
    """Recent traces with an error span, for the given services (default: all), deduplicated."""
    names = list(services) if services else await jaeger.services()
    tags = {"error": "true"}
    if namespace:
        tags[NAMESPACE_TAG] = namespace
    batches = await asyncio.gather(
        *(jaeger.traces(name, lookback=lookback, limit=limit, tags=tags) for name in names)
    )
    unique: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for trace in batch:
            unique.setdefault(str(trace.get("traceID")), trace)
    return list(unique.values())


async def error_traces_tool(
    jaeger: JaegerClient,
    *,
    namespace: str | None,
    service: str | None = None,
    minutes: int = 5,
    top: int = 8,
) -> ToolResult:
    """The Observer's trace tool: failing call paths in the last ``minutes``; never raises."""
    invocation = (
        f"traces errors{f' {service}' if service else ''}"
        + (f" -n {namespace}" if namespace else "")
        + f" --since={minutes}m"
    )
    try:
        traces = await error_traces(
            jaeger,
            namespace=namespace,
            services=[service] if service else None,
            lookback=f"{minutes}m",
        )
    except Exception as exc:  # a tool never raises into the loop
        message = (
            str(exc)
            if isinstance(exc, JaegerError)
            else describe_error(exc, service=f"Jaeger at {jaeger.base_url}")
        )
        return ToolResult.failure(invocation, message)
    paths = error_paths(traces)
    if not paths:
        return ToolResult.no_data(invocation, f"no error traces in the last {minutes}m")
    lines = [f"{len(traces)} error traces; failing paths (most frequent first):"]
    lines += [f"- {p.text()}" for p in paths[:top]]
    return ToolResult.success(invocation, redact("\n".join(lines)) + "\n", traces=len(traces))
