"""A PromQL evaluator over the lab's series store.

Agents and SREs query metrics in PromQL, so the lab answers PromQL rather than a
bespoke API. Parsing is done by ``promql_parser`` (the Rust parser that tracks
Prometheus's grammar, so syntax errors read like Prometheus's); this module
evaluates the AST with Prometheus's semantics for what SREs actually type:
selectors with matchers, offset and @, range selectors and subqueries, the
rate/over_time family, histogram_quantile, math functions, label_replace,
aggregations with by/without, arithmetic, comparisons and set operators with
on/ignoring/group_left/group_right. Anything else is a ``PromQLError`` with a
Prometheus-style message, never a crash.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import promql_parser as pp

from lab.telemetry.series import Labels, Matcher, MatchOp, Series, SeriesStore

LOOKBACK_S = 300.0
MAX_SAMPLES = 20_000_000
"""Prometheus's --query.max-samples default is 50M; the lab is smaller."""


class PromQLError(ValueError):
    """A query the engine refuses; ``error_type`` is Prometheus's errorType."""

    def __init__(self, message: str, error_type: str = "bad_data") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Sample:
    labels: Labels
    value: float
    ts: float | None = None
    """Time of the underlying raw sample (for ``timestamp()``)."""


@dataclass
class RangeSeries:
    labels: Labels
    times: list[float]
    values: list[float]

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self.times, self.values, strict=True))


@dataclass
class Vector:
    samples: list[Sample]


@dataclass
class Matrix:
    series: list[RangeSeries]


@dataclass
class Scalar:
    value: float


@dataclass
class String:
    value: str


Value = Vector | Matrix | Scalar | String


@dataclass
class _Context:
    t: float
    start: float
    end: float
    selections: dict[str, list[Series]] = field(default_factory=dict)
    samples: int = 0


def parse(query: str) -> Any:
    """Parse ``query``; syntax errors become ``PromQLError`` like Prometheus's parse errors."""
    if not query.strip():
        raise PromQLError("1:1: parse error: no expression found in input")
    try:
        return pp.parse(query)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise PromQLError(f"1:1: parse error: {exc}") from exc
    except BaseException as exc:  # the Rust parser can panic on odd input
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise PromQLError(f"1:1: parse error: {exc}") from exc


class Engine:
    """Evaluates PromQL against a ``SeriesStore``.

    Usage::

        engine = Engine(model.series)
        engine.instant('sum by (destination_service) (rate(istio_requests_total[1m]))', t)
        engine.range('up', start, end, 15.0)
    """

    def __init__(self, store: SeriesStore, *, lookback_s: float = LOOKBACK_S) -> None:
        self.store = store
        self.lookback_s = lookback_s

    def instant(self, query: str, t: float) -> Value:
        ast = parse(query)
        ctx = _Context(t, t, t)
        return self._eval(ast, ctx)

    def range(self, query: str, start: float, end: float, step: float) -> Matrix:
        """Evaluate at start, start+step, ... end; scalars become one unlabelled series."""
        if step <= 0:
            raise PromQLError(
                "zero or negative query resolution step widths are not accepted. "
                "Try a positive integer"
            )
        if end < start:
            raise PromQLError("end timestamp must not be before start time")
        ast = parse(query)
        ctx = _Context(start, start, end)
        out: dict[Labels, RangeSeries] = {}
        steps = int((end - start) / step + 1e-9) + 1
        for i in range(steps):
            ctx.t = start + i * step
            value = self._eval(ast, ctx)
            if isinstance(value, Scalar):
                _append(out, (), ctx.t, value.value)
            elif isinstance(value, Vector):
                _check_unique(value.samples)
                for sample in value.samples:
                    _append(out, sample.labels, ctx.t, sample.value)
            else:
                kind = "range vector" if isinstance(value, Matrix) else "string"
                raise PromQLError(
                    f'invalid expression type "{kind}" for range query, must be '
                    "Scalar or instant Vector"
                )
        return Matrix([out[labels] for labels in sorted(out)])

    # -- dispatch ----------------------------------------------------------------------

    def _eval(self, node: Any, ctx: _Context) -> Value:
        if isinstance(node, pp.NumberLiteral):
            return Scalar(float(node.val))
        if isinstance(node, pp.StringLiteral):
            return String(str(node.val))
        if isinstance(node, pp.ParenExpr):
            return self._eval(node.expr, ctx)
        if isinstance(node, pp.UnaryExpr):
            return _negate(self._eval(node.expr, ctx))
        if isinstance(node, pp.VectorSelector):
            return self._vector(node, ctx)
        if isinstance(node, pp.MatrixSelector):
            return self._matrix(node, ctx)
        if isinstance(node, pp.SubqueryExpr):
            return self._subquery(node, ctx)
        if isinstance(node, pp.Call):
            return self._call(node, ctx)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, ctx)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node, ctx)
        raise PromQLError(f"unsupported expression: {type(node).__name__}")

    # -- selectors ---------------------------------------------------------------------

    def _select(self, node: Any, ctx: _Context) -> list[Series]:
        key = str(node)
        found = ctx.selections.get(key)
        if found is None:
            found = []
            for group in matcher_groups(node):
                seen = {s.labels for s in found}
                found += [s for s in self.store.select(group) if s.labels not in seen]
            ctx.selections[key] = found
        return found

    def _eval_time(self, node: Any, ctx: _Context) -> float:
        t = ctx.t
        at = node.at
        if at is not None:
            kind = str(at.type).rsplit(".", 1)[-1]
            t = {"Start": ctx.start, "End": ctx.end}.get(kind, _seconds(at.at) if at.at else t)
        if node.offset is not None:
            t -= node.offset.total_seconds()
        return t

    def _vector(self, node: Any, ctx: _Context) -> Vector:
        t = self._eval_time(node, ctx)
        tick = self.store.last_tick_at(t)
        if tick is None or self.store.time_of(tick) <= t - self.lookback_s:
            return Vector([])
        ts = self.store.time_of(tick)
        samples = []
        for series in self._select(node, ctx):
            value = series.at(tick)
            if not math.isnan(value):
                samples.append(Sample(series.labels, value, ts))
        ctx.samples += len(samples)
        return Vector(samples)

    def _matrix(self, node: Any, ctx: _Context) -> Matrix:
        selector = node.vector_selector
        t = self._eval_time(selector, ctx)
        ticks = self.store.ticks_in(t - node.range.total_seconds(), t)
        times = self.store.times_of(ticks)
        out = []
        for series in self._select(selector, ctx):
            stamps, values = self.store.window(series, ticks, times)
            if values:
                out.append(RangeSeries(series.labels, stamps, values))
                ctx.samples += len(values)
        if ctx.samples > MAX_SAMPLES:
            raise PromQLError(
                "query processing would load too many samples into memory in query execution",
                "execution",
            )
        return Matrix(out)

    def _subquery(self, node: Any, ctx: _Context) -> Matrix:
        step = node.step.total_seconds() if node.step else 60.0
        if step <= 0:
            raise PromQLError("subquery step must be positive")
        t = self._eval_time(node, ctx)
        lo = t - node.range.total_seconds()
        first = math.floor(lo / step) * step
        if first <= lo:
            first += step
        out: dict[Labels, RangeSeries] = {}
        inner_t = ctx.t
        current = first
        while current <= t:
            ctx.t = current
            value = self._eval(node.expr, ctx)
            if isinstance(value, Scalar):
                _append(out, (), current, value.value)
            elif isinstance(value, Vector):
                for sample in value.samples:
                    _append(out, sample.labels, current, sample.value)
            else:
                raise PromQLError("subquery is only allowed on instant vector or scalar")
            current += step
        ctx.t = inner_t
        return Matrix(list(out.values()))

    # -- functions ---------------------------------------------------------------------

    def _call(self, node: Any, ctx: _Context) -> Value:
        name = node.func.name
        if name in RANGE_FUNCTIONS:
            return self._range_function(name, node.args, ctx)
        handler = _INSTANT_FUNCTIONS.get(name)
        if handler is None:
            raise PromQLError(f"function {name!r} is not supported by the lab's Prometheus")
        args = [self._eval(arg, ctx) for arg in node.args]
        return handler(self, node, args, ctx)

    def _range_function(self, name: str, args: Sequence[Any], ctx: _Context) -> Vector:
        params = [self._eval(a, ctx) for a in args if not _is_range(a)]
        ranged = next(a for a in args if _is_range(a))
        matrix = self._eval(ranged, ctx)
        assert isinstance(matrix, Matrix)
        window = ranged.range.total_seconds()
        t = (
            ctx.t
            if not isinstance(ranged, pp.MatrixSelector)
            else self._eval_time(ranged.vector_selector, ctx)
        )
        if name in ("absent_over_time",):
            if matrix.series:
                return Vector([])
            return Vector([Sample(_absent_labels(ranged.vector_selector), 1.0)])
        func = RANGE_FUNCTIONS[name]
        scalars = [_scalar(p) for p in params]
        out = []
        for series in matrix.series:
            value = func(series.times, series.values, t - window, t, scalars)
            if value is not None:
                labels = series.labels if name == "last_over_time" else _drop_name(series.labels)
                out.append(Sample(labels, value))
        return Vector(out)

    # -- aggregation -------------------------------------------------------------------

    def _aggregate(self, node: Any, ctx: _Context) -> Vector:
        op = str(node.op)
        inner = self._eval(node.expr, ctx)
        if not isinstance(inner, Vector):
            raise PromQLError(
                f"expected type instant vector in aggregation expression, got {_type_name(inner)}"
            )
        param = self._eval(node.param, ctx) if node.param is not None else None
        grouping = _grouping(node.modifier)
        return aggregate(op, inner.samples, grouping, param)

    # -- binary operators ----------------------------------------------------------------

    def _binary(self, node: Any, ctx: _Context) -> Value:
        op = str(node.op)
        lhs = self._eval(node.lhs, ctx)
        rhs = self._eval(node.rhs, ctx)
        modifier = node.modifier
        return_bool = bool(modifier and modifier.return_bool)
        if isinstance(lhs, String) or isinstance(rhs, String):
            raise PromQLError("binary expression must contain only scalar and instant vector types")
        if isinstance(lhs, Matrix) or isinstance(rhs, Matrix):
            raise PromQLError("binary expression must contain only scalar and instant vector types")
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(_scalar_op(op, lhs.value, rhs.value, return_bool))
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            return vector_binop(op, lhs.samples, rhs.samples, modifier)
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return Vector(_vector_scalar(op, lhs.samples, rhs.value, return_bool, swapped=False))
        assert isinstance(lhs, Scalar)
        assert isinstance(rhs, Vector)
        return Vector(_vector_scalar(op, rhs.samples, lhs.value, return_bool, swapped=True))


# -- helpers: selectors ---------------------------------------------------------------------

_OPS: dict[str, MatchOp] = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def matcher_groups(node: Any) -> list[list[Matcher]]:
    base = list(node.matchers.matchers)
    groups = [base + list(g) for g in node.matchers.or_matchers] or [base]
    out = []
    for group in groups:
        matchers = []
        if node.name:
            matchers.append(Matcher.of("__name__", "=", node.name))
        for m in group:
            op = _OPS[str(m.op).rsplit(".", 1)[-1]]
            try:
                matchers.append(Matcher.of(m.name, op, m.value))
            except ValueError as exc:
                raise PromQLError(str(exc)) from exc
        if all(m.matches("") for m in matchers):
            raise PromQLError("vector selector must contain at least one non-empty matcher")
        out.append(matchers)
    return out


def _absent_labels(node: Any) -> Labels:
    groups = matcher_groups(node)
    labels = {m.name: m.value for m in groups[0] if m.op == "=" and m.name != "__name__"}
    return tuple(sorted(labels.items()))


def _seconds(value: datetime | timedelta) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value.timestamp()


def _is_range(node: Any) -> bool:
    return isinstance(node, pp.MatrixSelector | pp.SubqueryExpr)


def _append(out: dict[Labels, RangeSeries], labels: Labels, t: float, value: float) -> None:
    series = out.get(labels)
    if series is None:
        series = out[labels] = RangeSeries(labels, [], [])
    series.times.append(t)
    series.values.append(value)


def _drop_name(labels: Labels) -> Labels:
    return tuple(item for item in labels if item[0] != "__name__")


def _type_name(value: Value) -> str:
    return {Vector: "instant vector", Matrix: "range vector", Scalar: "scalar"}.get(
        type(value), "string"
    )


def _scalar(value: Value) -> float:
    if isinstance(value, Scalar):
        return value.value
    raise PromQLError(f"expected scalar, got {_type_name(value)}")


def _check_unique(samples: Sequence[Sample]) -> None:
    seen: set[Labels] = set()
    for sample in samples:
        if sample.labels in seen:
            raise PromQLError("vector cannot contain metrics with the same labelset", "execution")
        seen.add(sample.labels)


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.value)
    if isinstance(value, Vector):
        return Vector([Sample(_drop_name(s.labels), -s.value) for s in value.samples])
    raise PromQLError("unary expression only allowed on expressions of type scalar or vector")


# -- helpers: range functions ----------------------------------------------------------------

Times = list[float]
Values = list[float]
RangeFunc = Callable[[Times, Values, float, float, list[float]], float | None]


def extrapolated_rate(
    ts: Times, vs: Values, start: float, end: float, *, is_counter: bool, is_rate: bool
) -> float | None:
    """Prometheus's rate/increase/delta: counter resets and extrapolation to the window."""
    if len(vs) < 2:
        return None
    first_t, first_v, last_t, last_v = ts[0], vs[0], ts[-1], vs[-1]
    result = last_v - first_v
    if is_counter and vs != sorted(vs):  # a reset somewhere: add back what it dropped
        result += sum(prev for prev, cur in itertools.pairwise(vs) if cur < prev)
    to_start = first_t - start
    to_end = end - last_t
    sampled = last_t - first_t
    average = sampled / (len(vs) - 1)
    if is_counter and result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if is_rate:
        factor /= end - start
    return result * factor


def _instant_rate(ts: Times, vs: Values, *, is_rate: bool) -> float | None:
    if len(vs) < 2:
        return None
    t0, v0, t1, v1 = ts[-2], vs[-2], ts[-1], vs[-1]
    diff = v1 - v0
    if is_rate and v1 < v0:
        diff = v1
    if not is_rate:
        return diff
    return diff / (t1 - t0) if t1 > t0 else None


def _regression(ts: Times, vs: Values, at: float) -> tuple[float, float] | None:
    """Least-squares (slope, intercept at ``at``)."""
    if len(vs) < 2:
        return None
    n = len(vs)
    xs = [t - at for t in ts]
    mean_x, mean_y = sum(xs) / n, sum(vs) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, vs, strict=True))
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    slope = cov / var
    return slope, mean_y - slope * mean_x


def _quantile(phi: float, values: Sequence[float]) -> float:
    if not values:
        return math.nan
    if math.isnan(phi):
        return math.nan
    if phi < 0:
        return -math.inf
    if phi > 1:
        return math.inf
    ordered = sorted(values)
    rank = phi * (len(ordered) - 1)
    lower = max(math.floor(rank), 0)
    upper = min(lower + 1, len(ordered) - 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def _variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def _deriv(ts: Times, vs: Values, start: float, end: float, params: list[float]) -> float | None:
    fit = _regression(ts, vs, ts[0]) if ts else None
    return fit[0] if fit else None


def _predict(ts: Times, vs: Values, start: float, end: float, params: list[float]) -> float | None:
    fit = _regression(ts, vs, end)
    return fit[1] + fit[0] * params[0] if fit else None


def _changes(ts: Times, vs: Values, start: float, end: float, params: list[float]) -> float | None:
    return float(sum(1 for a, b in itertools.pairwise(vs) if a != b))


def _resets(ts: Times, vs: Values, start: float, end: float, params: list[float]) -> float | None:
    return float(sum(1 for a, b in itertools.pairwise(vs) if b < a))


RANGE_FUNCTIONS: dict[str, RangeFunc] = {
    "rate": lambda t, v, s, e, _: extrapolated_rate(t, v, s, e, is_counter=True, is_rate=True),
    "increase": lambda t, v, s, e, _: extrapolated_rate(t, v, s, e, is_counter=True, is_rate=False),
    "delta": lambda t, v, s, e, _: extrapolated_rate(t, v, s, e, is_counter=False, is_rate=False),
    "irate": lambda t, v, s, e, _: _instant_rate(t, v, is_rate=True),
    "idelta": lambda t, v, s, e, _: _instant_rate(t, v, is_rate=False),
    "avg_over_time": lambda t, v, s, e, _: math.fsum(v) / len(v),
    "sum_over_time": lambda t, v, s, e, _: math.fsum(v),
    "min_over_time": lambda t, v, s, e, _: min(v),
    "max_over_time": lambda t, v, s, e, _: max(v),
    "count_over_time": lambda t, v, s, e, _: float(len(v)),
    "last_over_time": lambda t, v, s, e, _: v[-1],
    "stddev_over_time": lambda t, v, s, e, _: math.sqrt(_variance(v)),
    "stdvar_over_time": lambda t, v, s, e, _: _variance(v),
    "quantile_over_time": lambda t, v, s, e, params: _quantile(params[0], v),
    "present_over_time": lambda t, v, s, e, _: 1.0,
    "deriv": _deriv,
    "predict_linear": _predict,
    "changes": _changes,
    "resets": _resets,
    "absent_over_time": lambda t, v, s, e, _: None,
}


# -- helpers: instant functions ------------------------------------------------------------

InstantHandler = Callable[[Engine, Any, list[Value], _Context], Value]


def _math(func: Callable[[float], float]) -> InstantHandler:
    def handler(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
        vector = _vector_arg(args[0])
        return Vector([Sample(_drop_name(s.labels), _safe(func, s.value)) for s in vector])

    return handler


def _safe(func: Callable[[float], float], value: float) -> float:
    try:
        return func(value)
    except (ValueError, OverflowError):
        return math.nan


def _vector_arg(value: Value) -> list[Sample]:
    if not isinstance(value, Vector):
        raise PromQLError(f"expected instant vector, got {_type_name(value)}")
    return value.samples


def _clamp(lo: float | None, hi: float | None) -> Callable[[float], float]:
    def clamp(v: float) -> float:
        if lo is not None and hi is not None and lo > hi:
            return math.nan
        if lo is not None:
            v = max(v, lo)
        if hi is not None:
            v = min(v, hi)
        return v

    return clamp


def _fn_clamp(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    name = node.func.name
    bounds = [_scalar(a) for a in args[1:]]
    lo = bounds[0] if name in ("clamp", "clamp_min") else None
    hi = bounds[-1] if name in ("clamp", "clamp_max") else None
    return _math(_clamp(lo, hi))(engine, node, args[:1], ctx)


def _fn_round(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    to = _scalar(args[1]) if len(args) > 1 else 1.0

    def rnd(v: float) -> float:
        return math.floor(v / to + 0.5) * to if to else math.nan

    return _math(rnd)(engine, node, args[:1], ctx)


def _fn_scalar(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    samples = _vector_arg(args[0])
    return Scalar(samples[0].value if len(samples) == 1 else math.nan)


def _fn_vector(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    return Vector([Sample((), _scalar(args[0]))])


def _fn_time(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    return Scalar(ctx.t)


def _fn_timestamp(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    samples = _vector_arg(args[0])
    return Vector(
        [Sample(_drop_name(s.labels), s.ts if s.ts is not None else ctx.t) for s in samples]
    )


def _fn_sort(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    samples = sorted(_vector_arg(args[0]), key=lambda s: (math.isnan(s.value), s.value))
    if node.func.name == "sort_desc":
        samples = sorted(_vector_arg(args[0]), key=lambda s: (math.isnan(s.value), -s.value))
    return Vector(samples)


def _fn_absent(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    if _vector_arg(args[0]):
        return Vector([])
    arg = node.args[0]
    labels = _absent_labels(arg) if isinstance(arg, pp.VectorSelector) else ()
    return Vector([Sample(labels, 1.0)])


def histogram_quantile(phi: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's bucketQuantile over (upper bound, cumulative count) pairs."""
    if math.isnan(phi):
        return math.nan
    if phi < 0:
        return -math.inf
    if phi > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    monotonic: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in buckets:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    if len(monotonic) < 2 or monotonic[-1][1] == 0:
        return math.nan
    rank = phi * monotonic[-1][1]
    index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end_bound, count = 0.0, monotonic[index][0], monotonic[index][1]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    if count == 0:
        return end_bound
    return start + (end_bound - start) * (rank / count)


def _fn_histogram_quantile(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    phi = _scalar(args[0])
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for sample in _vector_arg(args[1]):
        labels = dict(sample.labels)
        le = labels.pop("le", None)
        if le is None:
            continue
        try:
            bound = float(le.replace("+Inf", "inf"))
        except ValueError:
            continue
        labels.pop("__name__", None)
        groups.setdefault(tuple(sorted(labels.items())), []).append((bound, sample.value))
    return Vector([Sample(k, histogram_quantile(phi, v)) for k, v in sorted(groups.items())])


def _expand(replacement: str, match: re.Match[str]) -> str:
    def group(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        try:
            return match.group(int(name) if name.isdigit() else name) or ""
        except IndexError:
            return ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, replacement)


def _set_label(labels: Labels, name: str, value: str) -> Labels:
    items = {k: v for k, v in labels if k != name}
    if value:
        items[name] = value
    return tuple(sorted(items.items()))


def _fn_label_replace(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    dst, replacement, src, regex = (_string(a) for a in args[1:5])
    try:
        pattern = re.compile(f"(?:{regex})\\Z", re.DOTALL)
    except re.error as exc:
        raise PromQLError(f"invalid regular expression in label_replace(): {regex}") from exc
    out = []
    for sample in _vector_arg(args[0]):
        match = pattern.match(dict(sample.labels).get(src, ""))
        labels = sample.labels
        if match:
            labels = _set_label(labels, dst, _expand(replacement, match))
        out.append(Sample(labels, sample.value, sample.ts))
    return Vector(out)


def _fn_label_join(engine: Engine, node: Any, args: list[Value], ctx: _Context) -> Value:
    dst, sep, *sources = (_string(a) for a in args[1:])
    out = []
    for sample in _vector_arg(args[0]):
        labels = dict(sample.labels)
        value = sep.join(labels.get(s, "") for s in sources)
        out.append(Sample(_set_label(sample.labels, dst, value), sample.value, sample.ts))
    return Vector(out)


def _string(value: Value) -> str:
    if isinstance(value, String):
        return value.value
    raise PromQLError(f"expected string, got {_type_name(value)}")


_INSTANT_FUNCTIONS: dict[str, InstantHandler] = {
    "abs": _math(abs),
    "ceil": _math(lambda v: float(math.ceil(v)) if math.isfinite(v) else v),
    "floor": _math(lambda v: float(math.floor(v)) if math.isfinite(v) else v),
    "exp": _math(math.exp),
    "ln": _math(lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    "log2": _math(lambda v: math.log2(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    "log10": _math(lambda v: math.log10(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    "sqrt": _math(lambda v: math.sqrt(v) if v >= 0 else math.nan),
    "sgn": _math(lambda v: float((v > 0) - (v < 0))),
    "round": _fn_round,
    "clamp": _fn_clamp,
    "clamp_min": _fn_clamp,
    "clamp_max": _fn_clamp,
    "scalar": _fn_scalar,
    "vector": _fn_vector,
    "time": _fn_time,
    "timestamp": _fn_timestamp,
    "sort": _fn_sort,
    "sort_desc": _fn_sort,
    "absent": _fn_absent,
    "histogram_quantile": _fn_histogram_quantile,
    "label_replace": _fn_label_replace,
    "label_join": _fn_label_join,
}


# -- helpers: aggregation ----------------------------------------------------------------------


def _grouping(modifier: Any) -> tuple[bool, tuple[str, ...]]:
    """(without?, labels); no modifier means ``by ()``."""
    if modifier is None:
        return False, ()
    without = str(modifier.type).endswith("Without")
    return without, tuple(modifier.labels)


_GROUP_KEYS: dict[tuple[Labels, tuple[bool, tuple[str, ...]]], Labels] = {}


def _group_key(labels: Labels, grouping: tuple[bool, tuple[str, ...]]) -> Labels:
    """Memoized: range queries group the same few thousand label sets at every step."""
    key = (labels, grouping)
    found = _GROUP_KEYS.get(key)
    if found is None:
        if len(_GROUP_KEYS) > 200_000:
            _GROUP_KEYS.clear()
        found = _GROUP_KEYS[key] = _compute_group_key(labels, grouping)
    return found


def _compute_group_key(labels: Labels, grouping: tuple[bool, tuple[str, ...]]) -> Labels:
    without, names = grouping
    if without:
        return tuple(i for i in labels if i[0] not in names and i[0] != "__name__")
    return tuple(i for i in labels if i[0] in names)


def aggregate(
    op: str, samples: list[Sample], grouping: tuple[bool, tuple[str, ...]], param: Value | None
) -> Vector:
    groups: dict[Labels, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(_group_key(sample.labels, grouping), []).append(sample)
    if op in ("topk", "bottomk"):
        k = int(_scalar(param)) if param is not None else 0
        return Vector(_top(groups, k, largest=op == "topk"))
    if op == "count_values":
        if not isinstance(param, String):
            raise PromQLError("count_values needs a label name string parameter")
        return Vector(_count_values(groups, param.value))
    reducer = _REDUCERS.get(op)
    if reducer is None:
        raise PromQLError(f"aggregation {op!r} is not supported by the lab's Prometheus")
    phi = _scalar(param) if op == "quantile" and param is not None else 0.0
    return Vector(
        [Sample(k, reducer([s.value for s in v], phi)) for k, v in sorted(groups.items())]
    )


_REDUCERS: dict[str, Callable[[list[float], float], float]] = {
    "sum": lambda v, _: math.fsum(v),
    "avg": lambda v, _: math.fsum(v) / len(v),
    "max": lambda v, _: max(v),
    "min": lambda v, _: min(v),
    "count": lambda v, _: float(len(v)),
    "group": lambda v, _: 1.0,
    "stddev": lambda v, _: math.sqrt(_variance(v)),
    "stdvar": lambda v, _: _variance(v),
    "quantile": lambda v, phi: _quantile(phi, v),
}


def _top(groups: dict[Labels, list[Sample]], k: int, *, largest: bool) -> list[Sample]:
    out: list[Sample] = []
    if k < 1:
        return out
    for _key, members in sorted(groups.items()):
        ranked = sorted(
            members,
            key=lambda s: (math.isnan(s.value), -s.value if largest else s.value),
        )
        out += ranked[:k]
    return out


def _count_values(groups: dict[Labels, list[Sample]], label: str) -> list[Sample]:
    out: list[Sample] = []
    for key, members in sorted(groups.items()):
        counts: dict[str, int] = {}
        for sample in members:
            text = format_value(sample.value)
            counts[text] = counts.get(text, 0) + 1
        for text, count in sorted(counts.items()):
            out.append(Sample(_set_label(key, label, text), float(count)))
    return out


# -- helpers: binary operators ------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return _divide(a, b)
        if op == "%":
            return math.fmod(a, b) if b != 0 else math.nan
        if op == "^":
            return math.pow(a, b)
        if op == "atan2":
            return math.atan2(a, b)
    except (OverflowError, ValueError):
        return math.inf if op == "^" else math.nan
    raise PromQLError(f"operator {op!r} is not supported by the lab's Prometheus")


def _divide(a: float, b: float) -> float:
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _scalar_op(op: str, a: float, b: float, return_bool: bool) -> float:
    if op in _COMPARISONS:
        return 1.0 if _COMPARISONS[op](a, b) else 0.0
    return _arith(op, a, b)


def _vector_scalar(
    op: str, samples: list[Sample], scalar: float, return_bool: bool, *, swapped: bool
) -> list[Sample]:
    out = []
    for sample in samples:
        a, b = (scalar, sample.value) if swapped else (sample.value, scalar)
        if op in _COMPARISONS:
            keep = _COMPARISONS[op](a, b)
            if return_bool:
                out.append(Sample(_drop_name(sample.labels), 1.0 if keep else 0.0))
            elif keep:
                out.append(Sample(sample.labels, sample.value))
        elif op in ("and", "or", "unless"):
            raise PromQLError(f"set operator {op!r} not allowed in binary scalar expression")
        else:
            out.append(Sample(_drop_name(sample.labels), _arith(op, a, b)))
    return out


@dataclass(frozen=True)
class _Matching:
    on: bool
    names: tuple[str, ...]
    card: str
    include: tuple[str, ...]

    def signature(self, labels: Labels) -> Labels:
        if self.on:
            return tuple(i for i in labels if i[0] in self.names)
        return tuple(i for i in labels if i[0] not in self.names and i[0] != "__name__")


def _matching(modifier: Any) -> _Matching:
    if modifier is None:
        return _Matching(False, (), "OneToOne", ())
    matching = modifier.matching
    on = matching is not None and str(matching.type).endswith("Include")
    names = tuple(matching.labels) if matching is not None else ()
    card = str(modifier.card).rsplit(".", 1)[-1]
    return _Matching(on, names, card, tuple(modifier.group_labels or ()))


def vector_binop(op: str, lhs: list[Sample], rhs: list[Sample], modifier: Any) -> Vector:
    m = _matching(modifier)
    if op in ("and", "or", "unless"):
        return Vector(_set_op(op, lhs, rhs, m))
    return_bool = bool(modifier and modifier.return_bool)
    if m.card == "OneToMany":
        pairs = [(b, a) for a, b in _pairs(rhs, lhs, m, "right")]
        many_side = "right"
    else:
        pairs = _pairs(lhs, rhs, m, "left")
        many_side = "left"
    out = []
    for left, right in pairs:
        labels = _result_labels(left, right, m, op, return_bool, many_side)
        if op in _COMPARISONS:
            keep = _COMPARISONS[op](left.value, right.value)
            if return_bool:
                out.append(Sample(labels, 1.0 if keep else 0.0))
            elif keep:
                out.append(Sample(labels, left.value))
        else:
            out.append(Sample(labels, _arith(op, left.value, right.value)))
    _check_unique(out)
    return Vector(out)


def _pairs(
    many: list[Sample], one: list[Sample], m: _Matching, side: str
) -> list[tuple[Sample, Sample]]:
    """Match each sample of ``many`` with the one sample of ``one`` sharing its signature."""
    index: dict[Labels, Sample] = {}
    other = "right" if side == "left" else "left"
    for sample in one:
        sig = m.signature(sample.labels)
        if sig in index:
            raise PromQLError(
                f"found duplicate series for the match group {_fmt(sig)} on the {other} "
                "hand-side of the operation; many-to-many matching not allowed: matching "
                "labels must be unique on one side",
                "execution",
            )
        index[sig] = sample
    pairs = []
    seen: set[Labels] = set()
    for sample in many:
        sig = m.signature(sample.labels)
        match = index.get(sig)
        if match is None:
            continue
        if m.card == "OneToOne":
            if sig in seen:
                raise PromQLError(
                    f"multiple matches for labels: many-to-one matching must be explicit "
                    f"(group_left/group_right) for {_fmt(sig)}",
                    "execution",
                )
            seen.add(sig)
        pairs.append((sample, match))
    return pairs


def _result_labels(
    left: Sample, right: Sample, m: _Matching, op: str, return_bool: bool, many_side: str
) -> Labels:
    many, one = (left, right) if many_side == "left" else (right, left)
    labels = dict(many.labels)
    if op not in _COMPARISONS or return_bool:
        labels.pop("__name__", None)
    if m.card == "OneToOne":
        if m.on:
            labels = {k: v for k, v in labels.items() if k in m.names}
        else:
            labels = {k: v for k, v in labels.items() if k not in m.names}
    for name in m.include:
        value = dict(one.labels).get(name, "")
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))


def _set_op(op: str, lhs: list[Sample], rhs: list[Sample], m: _Matching) -> list[Sample]:
    right_sigs = {m.signature(s.labels) for s in rhs}
    if op == "and":
        return [s for s in lhs if m.signature(s.labels) in right_sigs]
    if op == "unless":
        return [s for s in lhs if m.signature(s.labels) not in right_sigs]
    left_sigs = {m.signature(s.labels) for s in lhs}
    return list(lhs) + [s for s in rhs if m.signature(s.labels) not in left_sigs]


def _fmt(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


# -- output ----------------------------------------------------------------------------------


def format_value(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses for sample values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text
