"""Prometheus's HTTP query API over the lab's series store.

The response JSON matches Prometheus byte for byte in shape (status, data,
resultType, values as ``[unix_seconds, "string"]``, errorType on failure), so
the official clients, Grafana and every PromQL-speaking agent tool work
against the lab unchanged.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import promql_parser as pp
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from lab.telemetry.promql import (
    Engine,
    Matrix,
    PromQLError,
    Scalar,
    String,
    Value,
    Vector,
    format_value,
    matcher_groups,
    parse,
)
from lab.telemetry.series import Labels, Series, SeriesStore

MAX_POINTS = 11000
BUILD_INFO = {
    "version": "2.45.0",
    "revision": "aoi-lab",
    "branch": "HEAD",
    "buildUser": "aoi@lab",
    "buildDate": "20230623-00:00:00",
    "goVersion": "go1.20.5",
}
_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "internal": 500}

Handler = Callable[[web.Request], Any]


class PrometheusAPI:
    """The ``/api/v1`` endpoints; ``clock`` is "now" for queries without a time.

    Usage::

        api = PrometheusAPI(model.series)
        app = web.Application()
        api.add_routes(app)
    """

    def __init__(self, store: SeriesStore, *, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.engine = Engine(store)
        self._clock = clock

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        latest = self.store.latest_time
        return latest if latest is not None else time.time()

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        both = (
            ("GET", "/api/v1/query", self.query),
            ("GET", "/api/v1/query_range", self.query_range),
            ("GET", "/api/v1/series", self.series),
            ("GET", "/api/v1/labels", self.labels),
        )
        for _method, path, handler in both:
            app.router.add_get(prefix + path, handler)
            app.router.add_post(prefix + path, handler)
        app.router.add_get(prefix + "/api/v1/label/{name}/values", self.label_values)
        app.router.add_get(prefix + "/api/v1/metadata", self.metadata)
        app.router.add_get(prefix + "/api/v1/status/buildinfo", self.buildinfo)
        app.router.add_get(prefix + "/api/v1/query_exemplars", self.exemplars)
        app.router.add_post(prefix + "/api/v1/query_exemplars", self.exemplars)
        app.router.add_get(prefix + "/-/ready", _text("Prometheus Server is Ready.\n"))
        app.router.add_get(prefix + "/-/healthy", _text("Prometheus Server is Healthy.\n"))

    # -- endpoints ---------------------------------------------------------------------

    async def query(self, request: web.Request) -> web.Response:
        params = await _params(request)
        try:
            query = _required(params, "query")
            t = _time(params.get("time"), "time", self.now())
            value = self.engine.instant(query, t)
            return _success(_encode(value, t))
        except PromQLError as exc:
            return _error(exc)

    async def query_range(self, request: web.Request) -> web.Response:
        params = await _params(request)
        try:
            query = _required(params, "query")
            start = _time(_required(params, "start"), "start", 0.0)
            end = _time(_required(params, "end"), "end", 0.0)
            step = _duration(_required(params, "step"), "step")
            if end < start:
                raise PromQLError(
                    'invalid parameter "end": end timestamp must not be before start time'
                )
            if step <= 0:
                raise PromQLError(
                    'invalid parameter "step": zero or negative query resolution '
                    "step widths are not accepted. Try a positive integer"
                )
            if (end - start) / step > MAX_POINTS:
                raise PromQLError(
                    "exceeded maximum resolution of 11,000 points per timeseries. "
                    "Try decreasing the query resolution (?step=XX)"
                )
            matrix = self.engine.range(query, start, end, step)
            return _success({"resultType": "matrix", "result": _matrix(matrix)})
        except PromQLError as exc:
            return _error(exc)

    async def series(self, request: web.Request) -> web.Response:
        params = await _params(request)
        try:
            matches = params.getall("match[]", [])
            if not matches:
                raise PromQLError("no match[] parameter provided")
            found = self._matching(matches, params)
            return _success([dict(s.labels) for s in found])
        except PromQLError as exc:
            return _error(exc)

    async def labels(self, request: web.Request) -> web.Response:
        params = await _params(request)
        try:
            found = self._matching(params.getall("match[]", []), params)
            names = sorted({name for s in found for name, _v in s.labels})
            return _success(names)
        except PromQLError as exc:
            return _error(exc)

    async def label_values(self, request: web.Request) -> web.Response:
        params = await _params(request)
        name = request.match_info["name"]
        try:
            found = self._matching(params.getall("match[]", []), params)
            values = sorted({v for s in found for k, v in s.labels if k == name})
            return _success(values)
        except PromQLError as exc:
            return _error(exc)

    async def metadata(self, request: web.Request) -> web.Response:
        metric = request.query.get("metric")
        data = {
            name: [{"type": meta.type, "help": meta.help, "unit": meta.unit}]
            for name, meta in sorted(self.store.metadata.items())
            if metric is None or name == metric
        }
        return _success(data)

    async def buildinfo(self, request: web.Request) -> web.Response:
        return _success(BUILD_INFO)

    async def exemplars(self, request: web.Request) -> web.Response:
        return _success([])

    # -- helpers -------------------------------------------------------------------------

    def _matching(self, matches: list[str], params: Mapping[str, str]) -> list[Series]:
        """Series selected by any ``match[]`` with samples in [start, end] (all when no match)."""
        start = _time(params.get("start"), "start", -math.inf)
        end = _time(params.get("end"), "end", math.inf)
        ticks = self.store.ticks_in(start - 1e-9, end)
        selected: dict[Labels, Series] = {}
        if not matches:
            candidates = self.store.select([])
        else:
            candidates = []
            for text in matches:
                candidates += self._select(text)
        for series in candidates:
            if series.labels not in selected and self.store.has_samples(series, ticks):
                selected[series.labels] = series
        return [selected[k] for k in sorted(selected)]

    def _select(self, text: str) -> list[Series]:
        node = parse(text)
        if not isinstance(node, pp.VectorSelector):
            raise PromQLError(f'invalid parameter "match[]": {text!r} is not a series selector')
        found: list[Series] = []
        for group in matcher_groups(node):
            found += self.store.select(group)
        return found


# -- encoding -----------------------------------------------------------------------------


def _ts(t: float) -> float | int:
    rounded = round(t, 3)
    return int(rounded) if rounded == int(rounded) else rounded


def _encode(value: Value, t: float) -> dict[str, Any]:
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [_ts(t), format_value(value.value)]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [_ts(t), value.value]}
    if isinstance(value, Matrix):
        return {"resultType": "matrix", "result": _matrix(value)}
    assert isinstance(value, Vector)
    result = [
        {"metric": dict(s.labels), "value": [_ts(t), format_value(s.value)]} for s in value.samples
    ]
    return {"resultType": "vector", "result": result}


def _matrix(matrix: Matrix) -> list[dict[str, Any]]:
    return [
        {
            "metric": dict(series.labels),
            "values": [[_ts(t), format_value(v)] for t, v in series.points],
        }
        for series in matrix.series
    ]


def _json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def _success(data: Any) -> web.Response:
    return _json_response({"status": "success", "data": data})


def _error(exc: PromQLError) -> web.Response:
    body = {"status": "error", "errorType": exc.error_type, "error": str(exc)}
    return _json_response(body, _STATUS.get(exc.error_type, 400))


def _text(body: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body)

    return handler


# -- parameters ---------------------------------------------------------------------------


async def _params(request: web.Request) -> MultiDictProxy[str]:
    """Query-string and form parameters together, as Prometheus's ParseForm merges them."""
    merged: MultiDict[str] = MultiDict(request.query)
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                merged.add(key, value)
    return MultiDictProxy(merged)


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise PromQLError(f'invalid parameter "{name}": parameter is missing')
    return value


def _time(text: str | None, name: str, default: float) -> float:
    """Unix seconds (float) or RFC 3339, like Prometheus's parseTime."""
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise PromQLError(
            f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
        ) from exc


def _duration(text: str, name: str) -> float:
    """Seconds (float) or a Prometheus duration like ``15s`` or ``1m30s``."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(pp.parse_duration(text).total_seconds())
    except (ValueError, TypeError) as exc:
        raise PromQLError(
            f'invalid parameter "{name}": cannot parse "{text}" to a valid duration'
        ) from exc
