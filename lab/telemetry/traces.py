"""Distributed traces of sampled requests, walked through the model's call graph.

Traces are how a responder tells "slow because of me" from "slow because of my
callee": the client span of a delayed call is long while the callee's server
span is short; an auth failure is an error span naming the database. Each tick
samples a few requests (more when something fails, so error traces can be
found) and walks them through the same per-tick state the metrics and logs
use. The store is a bounded deque with the queries the Jaeger API needs.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.telemetry import vocabulary as vocab
from lab.telemetry.world import (
    TCP_KINDS,
    AppTick,
    CallState,
    ErrorCause,
    ServiceState,
    database_name,
    pod_ip,
)

Tag = tuple[str, str, object]
"""(key, Jaeger type: string | bool | int64 | float64, value)."""

TRACES_PER_S = 0.5
ERROR_TRACES_PER_S = 0.4
GRPC_CODES = {"timeout": 4, "upstream": 2, "flag": 13, "tls_required": 14}
HTTP_CODES = {"timeout": 504, "upstream": 500, "flag": 500}


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    operation: str
    service: str
    pod: str
    start_us: int
    duration_us: int
    tags: list[Tag]
    logs: list[tuple[int, str]] = field(default_factory=list)
    """(timestamp µs, error message) events."""
    follows_from: bool = False
    process_tags: tuple[Tag, ...] = ()

    @property
    def kind(self) -> str:
        for key, _type, value in self.tags:
            if key == "span.kind":
                return str(value)
        return ""

    def has_error(self) -> bool:
        return any(key == "error" and value is True for key, _t, value in self.tags)


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]

    @property
    def start_us(self) -> int:
        return min(s.start_us for s in self.spans)

    @property
    def duration_us(self) -> int:
        return max(s.start_us + s.duration_us for s in self.spans) - self.start_us

    def has_error(self) -> bool:
        return any(s.has_error() for s in self.spans)


class TraceStore:
    """The newest ``max_traces`` traces, with Jaeger's search semantics."""

    def __init__(self, *, max_traces: int = 4000) -> None:
        self._traces: deque[Trace] = deque(maxlen=max_traces)
        self._by_id: dict[str, Trace] = {}
        self._operations: dict[str, dict[str, str]] = {}
        """Service -> operation -> span kind, for every span ever stored."""

    def add_all(self, traces: Iterable[Trace]) -> None:
        for trace in traces:
            if len(self._traces) == self._traces.maxlen:
                self._by_id.pop(self._traces[0].trace_id, None)
            self._traces.append(trace)
            self._by_id[trace.trace_id] = trace
            for span in trace.spans:
                self._operations.setdefault(span.service, {})[span.operation] = span.kind

    def services(self) -> list[str]:
        return sorted(self._operations)

    def operations(self, service: str, span_kind: str | None = None) -> list[tuple[str, str]]:
        ops = self._operations.get(service, {})
        return sorted((op, kind) for op, kind in ops.items() if not span_kind or kind == span_kind)

    def get(self, trace_id: str) -> Trace | None:
        return self._by_id.get(trace_id.lower().lstrip("0").rjust(32, "0"))

    def find(
        self,
        *,
        service: str,
        operation: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        min_duration_us: int | None = None,
        max_duration_us: int | None = None,
        limit: int = 20,
    ) -> list[Trace]:
        """Newest first: traces with one span matching every condition, as Jaeger searches."""
        found: list[Trace] = []
        for trace in reversed(self._traces):
            if any(
                _span_matches(
                    span,
                    service,
                    operation,
                    tags or {},
                    start_us,
                    end_us,
                    min_duration_us,
                    max_duration_us,
                )
                for span in trace.spans
            ):
                found.append(trace)
                if limit and len(found) >= limit:
                    break
        return found

    def dependencies(self, end_us: int, lookback_us: int) -> list[tuple[str, str, int]]:
        """(parent service, child service, call count) over the window."""
        counts: dict[tuple[str, str], int] = {}
        for trace in self._traces:
            if not end_us - lookback_us <= trace.start_us <= end_us:
                continue
            by_id = {s.span_id: s for s in trace.spans}
            for span in trace.spans:
                parent = by_id.get(span.parent_id or "")
                if parent and parent.service != span.service:
                    key = (parent.service, span.service)
                    counts[key] = counts.get(key, 0) + 1
        return sorted((p, c, n) for (p, c), n in counts.items())

    def __len__(self) -> int:
        return len(self._traces)


def _span_matches(
    span: Span,
    service: str,
    operation: str | None,
    tags: Mapping[str, str],
    start_us: int | None,
    end_us: int | None,
    min_us: int | None,
    max_us: int | None,
) -> bool:
    if span.service != service or (operation and span.operation != operation):
        return False
    if (start_us is not None and span.start_us < start_us) or (
        end_us is not None and span.start_us > end_us
    ):
        return False
    if (min_us is not None and span.duration_us < min_us) or (
        max_us is not None and span.duration_us > max_us
    ):
        return False
    if not tags:
        return True
    values = {key: _tag_text(value) for key, _t, value in (*span.tags, *span.process_tags)}
    return all(values.get(key) == str(want) for key, want in tags.items())


def _tag_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- sampling ---------------------------------------------------------------------


def sample_traces(app_tick: AppTick, rng: random.Random, now: float, dt: float) -> list[Trace]:
    """A few requests' traces from the last ``dt`` seconds, plus error traces when failing."""
    entry = app_tick.states[app_tick.app.entrypoint]
    if not entry.running or entry.rps <= 0 or dt <= 0:
        return []
    traces = [_walk_one(app_tick, rng, now, dt) for _ in range(_count(rng, TRACES_PER_S * dt))]
    if entry.error > 0.005:
        wanted = _count(rng, ERROR_TRACES_PER_S * dt)
        for _ in range(30 * wanted):
            if wanted <= 0:
                break
            trace = _walk_one(app_tick, rng, now, dt)
            if trace.has_error():
                traces.append(trace)
                wanted -= 1
    return traces


def _count(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _walk_one(app_tick: AppTick, rng: random.Random, now: float, dt: float) -> Trace:
    trace_id = f"{rng.getrandbits(128):032x}"
    start_us = int((now - rng.random() * dt) * 1_000_000)
    walker = _Walker(app_tick, rng, trace_id)
    walker.serve(app_tick.states[app_tick.app.entrypoint], None, start_us)
    return Trace(trace_id, walker.spans)


@dataclass
class _Outcome:
    duration_us: int
    error: ErrorCause | None = None
    operation: str = ""


class _Walker:
    """Walks one request down the call graph, sampling each call's fate from the tick state."""

    def __init__(self, app_tick: AppTick, rng: random.Random, trace_id: str) -> None:
        self.tick = app_tick
        self.rng = rng
        self.trace_id = trace_id
        self.spans: list[Span] = []

    def _id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _sample_ms(self, median: float, sigma: float) -> float:
        return max(median, 0.01) * math.exp(sigma * self.rng.gauss(0.0, 1.0))

    def serve(self, st: ServiceState, parent: str | None, start_us: int) -> _Outcome:
        """The server span of ``st`` handling one request, and its calls."""
        span_id = self._id()
        own_us = int(self._sample_ms(st.own_ms, st.own_sigma) * 1000)
        cursor = start_us + own_us // 2
        error = next((c for c in st.own if self.rng.random() < c.fraction), None)
        route = self._route(st)
        for cs in self._calls_made(st, route):
            if error is not None:
                break
            outcome = self.call(st, cs, span_id, cursor)
            if cs.call.sync:
                cursor += outcome.duration_us
            if outcome.error is not None and cs.call.fatal:
                error = outcome.error
        duration = cursor + own_us - own_us // 2 - start_us
        operation = vocab.operation_name(st.spec.name, st.spec.kind, family=st.family, route=route)
        if st.family == "cpp":
            operation += "_server"
        tags = _server_tags(st, error)
        span = self._span(st, span_id, parent, operation, start_us, duration, tags, error)
        self.spans.append(span)
        return _Outcome(duration, error, operation)

    def _route(self, st: ServiceState) -> str:
        """Frontends and proxies send each request down one route."""
        routes = [cs for cs in st.calls if cs.call.fatal and cs.call.sync]
        if st.spec.kind not in ("frontend", "proxy", "loadgenerator") or len(routes) < 2:
            return routes[0].call.callee if routes else ""
        weights = [cs.call.share for cs in routes]
        return self.rng.choices(routes, weights)[0].call.callee

    def _calls_made(self, st: ServiceState, route: str) -> list[CallState]:
        router = st.spec.kind in ("frontend", "proxy", "loadgenerator")
        made = []
        for cs in st.calls:
            if cs.call.delivery:
                continue
            if router and cs.call.fatal and cs.call.sync:
                if cs.call.callee == route:
                    made.append(cs)
            elif self.rng.random() < cs.call.share:
                made.append(cs)
        return made

    def call(self, st: ServiceState, cs: CallState, parent: str, start_us: int) -> _Outcome:
        """The client span of one call, and the callee's server span when it got there."""
        callee = self.tick.states[cs.call.callee]
        span_id = self._id()
        deadline_us = int(st.deadline_ms * 1000)
        if self.rng.random() < cs.infra_fail and cs.infra_cause is not None:
            duration = int(
                min(cs.infra_latency_ms, st.deadline_ms) * 1000 * self.rng.uniform(0.8, 1.2)
            )
            outcome = _Outcome(duration, cs.infra_cause, _client_operation(callee, st))
        elif callee.spec.kind in TCP_KINDS:
            outcome = self._store_call(callee, cs, deadline_us)
            if cs.call.protocol == "kafka":
                self._deliver(callee, span_id, start_us + outcome.duration_us)
        else:
            delay_us = int(cs.delay_ms * 1000)
            inner = self.serve(callee, span_id, start_us + delay_us // 2)
            outcome = _Outcome(inner.duration_us + delay_us, None, inner.operation)
            if inner.error is not None:
                outcome.error = _cause_of(cs, "upstream") or inner.error
        if outcome.duration_us > deadline_us:
            outcome = _Outcome(deadline_us, _cause_of(cs, "timeout"), outcome.operation)
        operation = outcome.operation
        if st.family == "cpp" and callee.spec.kind not in TCP_KINDS:
            operation = operation.removesuffix("_server") + "_client"
        tags = _client_tags(st, callee, outcome.error)
        span = self._span(
            st, span_id, parent, operation, start_us, outcome.duration_us, tags, outcome.error
        )
        self.spans.append(span)
        return outcome

    def _store_call(self, callee: ServiceState, cs: CallState, deadline_us: int) -> _Outcome:
        duration = callee.latency.shift(cs.delay_ms).sample(self.rng)
        return _Outcome(int(duration * 1000), None, _client_operation(callee, None))

    def _deliver(self, broker: ServiceState, producer_span: str, start_us: int) -> None:
        """Kafka consumers pick the message up later, in their own spans (FOLLOWS_FROM)."""
        for cs in broker.calls:
            if not cs.call.delivery:
                continue
            group = self.tick.states[cs.call.callee]
            if not group.running:
                continue
            lag_us = int(self._sample_ms(5.0 + self.tick.flags.consumer_delay_ms, 0.4) * 1000)
            duration = int(self._sample_ms(group.own_ms, group.own_sigma) * 1000)
            tags: list[Tag] = [
                ("span.kind", "string", "consumer"),
                ("messaging.system", "string", "kafka"),
                ("messaging.destination.name", "string", "orders"),
            ]
            span = self._span(
                group,
                self._id(),
                producer_span,
                "orders process",
                start_us + lag_us,
                duration,
                tags,
                None,
            )
            span.follows_from = True
            self.spans.append(span)

    def _span(
        self,
        st: ServiceState,
        span_id: str,
        parent: str | None,
        operation: str,
        start_us: int,
        duration_us: int,
        tags: list[Tag],
        error: ErrorCause | None,
    ) -> Span:
        pod = st.running[self.rng.randrange(len(st.running))] if st.running else st.spec.name
        process: tuple[Tag, ...] = (
            ("hostname", "string", pod),
            ("ip", "string", pod_ip(st.app.namespace, pod)),
            ("k8s.namespace.name", "string", st.app.namespace),
        )
        span = Span(
            self.trace_id,
            span_id,
            parent,
            operation,
            st.spec.name,
            pod,
            start_us,
            max(duration_us, 1),
            tags,
            process_tags=process,
        )
        if error is not None:
            span.logs.append((start_us + duration_us, error.message))
        return span


def _cause_of(cs: CallState, kind: str) -> ErrorCause | None:
    found = next((c for c in cs.causes if c.kind == kind), None)
    if found is None and kind == "timeout" and cs.infra_cause and cs.infra_cause.kind == kind:
        return cs.infra_cause
    return found


def _client_operation(callee: ServiceState, caller: ServiceState | None) -> str:
    if callee.spec.kind in TCP_KINDS:
        return vocab.STORE_OPERATIONS[callee.spec.kind]
    return vocab.operation_name(callee.spec.name, callee.spec.kind, family=callee.family)


def _status_tags(st: ServiceState, error: ErrorCause | None, protocol: str) -> list[Tag]:
    tags: list[Tag] = []
    if protocol == "http":
        code = 200 if error is None else HTTP_CODES.get(error.kind, 503)
        tags.append(("http.status_code", "int64", code))
    elif protocol == "grpc":
        code = 0 if error is None else GRPC_CODES.get(error.kind, 14)
        tags.append(("rpc.grpc.status_code", "int64", code))
        tags.append(("grpc.status_code", "int64", code))
    if error is not None:
        tags += [
            ("error", "bool", True),
            ("otel.status_code", "string", "ERROR"),
            ("otel.status_description", "string", error.message),
        ]
    return tags


def _protocol_of(st: ServiceState) -> str:
    if st.spec.kind in ("frontend", "proxy", "loadgenerator") or st.family == "cpp":
        return "http" if st.family != "cpp" else "thrift"
    return "grpc"


def _server_tags(st: ServiceState, error: ErrorCause | None) -> list[Tag]:
    protocol = _protocol_of(st)
    tags: list[Tag] = [("span.kind", "string", "server")]
    if protocol == "grpc":
        tags += [("rpc.system", "string", "grpc"), ("component", "string", "gRPC")]
    elif protocol == "http":
        tags += [("component", "string", "net/http"), ("http.method", "string", "GET")]
    return tags + _status_tags(st, error, protocol)


def _client_tags(st: ServiceState, callee: ServiceState, error: ErrorCause | None) -> list[Tag]:
    tags: list[Tag] = [
        ("span.kind", "string", "producer" if callee.spec.kind == "kafka" else "client"),
        ("peer.service", "string", callee.spec.name),
        ("net.peer.name", "string", callee.spec.name),
        ("net.peer.port", "int64", callee.spec.port),
    ]
    kind = callee.spec.kind
    if kind == "kafka":
        tags += [
            ("messaging.system", "string", "kafka"),
            ("messaging.destination.name", "string", "orders"),
        ]
    elif kind in TCP_KINDS:
        tags.append(("db.system", "string", kind))
        if kind == "mongodb":
            tags += [
                ("db.name", "string", database_name(callee.spec, callee.runtime)),
                ("db.operation", "string", "find"),
            ]
    protocol = "tcp" if kind in TCP_KINDS else _protocol_of(callee)
    if protocol == "tcp" and error is not None:
        tags += [
            ("error", "bool", True),
            ("otel.status_code", "string", "ERROR"),
            ("otel.status_description", "string", error.message),
        ]
        return tags
    return tags + _status_tags(st, error, protocol)
