"""Jaeger's query API (the JSON the Jaeger UI uses) over the lab's trace store.

Agents that know Jaeger call ``/api/services``, ``/api/traces?service=...`` and
``/api/traces/{id}``; answering in Jaeger's own shapes (data/total/limit/
offset/errors envelopes, spans with references, processes keyed p1, p2...)
means the same tools work against the lab and against a real cluster.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from lab.telemetry.traces import Span, Trace, TraceStore

DEFAULT_LIMIT = 100
"""Jaeger query's default when the request gives no limit."""
_UNITS_US = {"ns": 0.001, "us": 1.0, "µs": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


class JaegerError(ValueError):
    pass


class JaegerAPI:
    """The ``/api/*`` endpoints of jaeger-query; ``clock`` gives "now" in seconds.

    Usage::

        api = JaegerAPI(model.traces)
        api.add_routes(app, prefix="/jaeger")
    """

    def __init__(self, store: TraceStore, *, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self._clock = clock or time.time

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        app.router.add_get(prefix + "/api/services", self.services)
        app.router.add_get(prefix + "/api/services/{service}/operations", self.service_operations)
        app.router.add_get(prefix + "/api/operations", self.operations)
        app.router.add_get(prefix + "/api/traces", self.traces)
        app.router.add_get(prefix + "/api/traces/{trace_id}", self.trace)
        app.router.add_get(prefix + "/api/dependencies", self.dependencies)

    async def services(self, request: web.Request) -> web.Response:
        return _envelope(self.store.services())

    async def service_operations(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        return _envelope([op for op, _kind in self.store.operations(service)])

    async def operations(self, request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if not service:
            return _failure(400, "parameter 'service' is required")
        kind = request.query.get("spanKind") or None
        ops = [{"name": op, "spanKind": k} for op, k in self.store.operations(service, kind)]
        return _envelope(ops)

    async def traces(self, request: web.Request) -> web.Response:
        try:
            query = self._search(request)
        except JaegerError as exc:
            return _failure(400, str(exc))
        found = self.store.find(**query)
        return _envelope([encode_trace(t) for t in found], total=len(found))

    async def trace(self, request: web.Request) -> web.Response:
        found = self.store.get(request.match_info["trace_id"])
        if found is None:
            return _failure(404, "trace not found")
        return _envelope([encode_trace(found)])

    async def dependencies(self, request: web.Request) -> web.Response:
        try:
            end_ms = int(request.query.get("endTs") or self._clock() * 1000)
            lookback_ms = int(request.query.get("lookback") or 86_400_000)
        except ValueError:
            return _failure(400, "unable to parse param 'endTs' or 'lookback'")
        links = self.store.dependencies(end_ms * 1000, lookback_ms * 1000)
        data = [{"parent": p, "child": c, "callCount": n} for p, c, n in links]
        return _envelope(data)

    def _search(self, request: web.Request) -> dict[str, Any]:
        q = request.query
        service = q.get("service", "")
        if not service:
            raise JaegerError("parameter 'service' is required")
        end_us = _int(q.get("end"), "end", int(self._clock() * 1e6))
        lookback = q.get("lookback", "")
        default_start = end_us - _lookback_us(lookback) if lookback not in ("", "custom") else None
        start_us = _int(q.get("start"), "start", default_start)
        limit = _int(q.get("limit"), "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
        return {
            "service": service,
            "operation": q.get("operation") or None,
            "tags": _tags(q.getall("tags", []), q.getall("tag", [])),
            "start_us": start_us,
            "end_us": end_us,
            "min_duration_us": _duration_us(q.get("minDuration"), "minDuration"),
            "max_duration_us": _duration_us(q.get("maxDuration"), "maxDuration"),
            "limit": limit,
        }


# -- encoding -----------------------------------------------------------------------------


def encode_trace(trace: Trace) -> dict[str, Any]:
    """One trace as Jaeger's UI model: spans referencing processes p1, p2..."""
    processes: dict[tuple[str, str], str] = {}
    process_json: dict[str, Any] = {}
    spans = []
    for span in sorted(trace.spans, key=lambda s: s.start_us):
        key = (span.service, span.pod)
        if key not in processes:
            pid = f"p{len(processes) + 1}"
            processes[key] = pid
            process_json[pid] = {"serviceName": span.service, "tags": _tags_json(span.process_tags)}
        spans.append(_span_json(span, processes[key]))
    return {"traceID": trace.trace_id, "spans": spans, "processes": process_json, "warnings": None}


def _span_json(span: Span, process_id: str) -> dict[str, Any]:
    references = []
    if span.parent_id:
        ref = "FOLLOWS_FROM" if span.follows_from else "CHILD_OF"
        references.append({"refType": ref, "traceID": span.trace_id, "spanID": span.parent_id})
    logs = [
        {
            "timestamp": ts,
            "fields": [
                {"key": "event", "type": "string", "value": "error"},
                {"key": "message", "type": "string", "value": msg},
            ],
        }
        for ts, msg in span.logs
    ]
    return {
        "traceID": span.trace_id,
        "spanID": span.span_id,
        "flags": 1,
        "operationName": span.operation,
        "references": references,
        "startTime": span.start_us,
        "duration": span.duration_us,
        "tags": _tags_json(span.tags),
        "logs": logs,
        "processID": process_id,
        "warnings": None,
    }


def _tags_json(tags: Any) -> list[dict[str, Any]]:
    return [{"key": key, "type": type_, "value": value} for key, type_, value in tags]


def _envelope(data: Any, *, total: int | None = None) -> web.Response:
    body = {
        "data": data,
        "total": len(data) if total is None else total,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    return web.json_response(body)


def _failure(code: int, message: str) -> web.Response:
    body = {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": code, "msg": message}],
    }
    return web.json_response(body, status=code)


# -- parameters ---------------------------------------------------------------------------


def _int(text: str | None, name: str, default: int | None) -> Any:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise JaegerError(f"unable to parse param '{name}': {text!r} is not an integer") from exc


def _duration_us(text: str | None, name: str) -> int | None:
    """Go's time.ParseDuration subset Jaeger accepts (``1.2s``, ``100ms``, ``1m30s``)."""
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise JaegerError(f"unable to parse param '{name}': time: invalid duration {text!r}")
    return int(sum(float(n) * _UNITS_US[u] for n, u in parts))


def _lookback_us(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    if not match:
        raise JaegerError(f"unable to parse param 'lookback': {text!r}")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return int(match.group(1)) * seconds * 1_000_000


def _tags(json_params: list[str], pairs: list[str]) -> dict[str, str]:
    """``tags={"error":"true"}`` (the UI) and ``tag=error:true`` (the API) both filter."""
    tags: dict[str, str] = {}
    for text in json_params:
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JaegerError(f"malformed 'tags' parameter: {exc}") from exc
        if not isinstance(decoded, dict):
            raise JaegerError("malformed 'tags' parameter: expected a JSON object")
        tags.update({str(k): _tag_value(v) for k, v in decoded.items()})
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep:
            raise JaegerError(f"malformed 'tag' parameter {pair!r}: expected key:value")
        tags[key] = value
    return tags


def _tag_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
