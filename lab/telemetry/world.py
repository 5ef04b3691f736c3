"""One tick of the simulated applications: load down, failures and latency back up.

The lab's apps do not run, so something has to decide what they would be doing.
This module does it from the call graph (``lab.apps.spec``), what the cluster
shows (``ServiceRuntime``) and the state inside the apps (``AppFaults``,
astronomy-shop feature flags): requests flow down the call graph from the
entrypoint, failures and latency flow back up to the callers, and CPU and
memory follow load. Every telemetry surface (metrics, traces, logs) reads the
resulting ``AppTick``, so a fault shows up consistently everywhere. Nothing
here knows which scenario is active; it only sees the causes.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lab.apps.spec import AppSpec, ServiceSpec
from lab.telemetry import vocabulary as vocab
from lab.telemetry.latency import Dist
from lab.telemetry.state import AppFaults, ServiceRuntime

Key = tuple[str, str]
"""(namespace, service)."""

CauseKind = Literal[
    "no_endpoints",
    "refused",
    "no_such_host",
    "x509",
    "timeout",
    "unauthorized",
    "auth_failed",
    "tls_required",
    "upstream",
    "flag",
]

DEADLINE_MS = 5000.0
"""Client deadline of service-to-service calls; slower calls fail as timeouts."""
PROXY_DEADLINE_MS = 15000.0
"""Envoy's default route timeout, for proxies and load generators."""
CACHE_MISS = 0.25
"""Share of requests a cache-fronted service sends on to its database."""
SIDE_SHARE = 0.2
"""Share of requests that evaluate a feature flag remotely (the rest hit the cache)."""
RETRY_STORM_FACTOR = 4.0
FLOOD_FACTOR = 10.0
BASE_SIGMA = 0.35
"""Spread of the log-normal latency distribution of a healthy service."""
TCP_KINDS = frozenset({"mongodb", "memcached", "redis", "kafka"})
CACHE_KINDS = frozenset({"memcached", "redis"})
ROUTER_KINDS = frozenset({"frontend", "proxy", "loadgenerator"})
IGNORED_KINDS = frozenset({"consul", "jaeger"})
"""Registration and trace export happen off the request path."""
CRASH_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "OOMKilled", "RunContainerError", "StartError", "Completed"}
)
"""Waiting or terminated reasons of a container that runs, dies and is restarted."""
TLS_REQUIRED = re.compile(r"mode:\s*require(TLS|SSL)")


@dataclass(frozen=True)
class ErrorCause:
    """Why some requests of a service fail, in the words its logs use."""

    kind: CauseKind
    message: str
    fraction: float
    """Share of the service's requests failing for this reason."""
    dependency: str | None = None
    """The callee the failure comes from; None when the service itself fails."""
    fatal: bool = True
    """False for failures the service absorbs (a cache miss falls back to the database)."""


@dataclass(frozen=True)
class Call:
    """One planned call from the call graph, fixed for the model's lifetime."""

    callee: str
    share: float
    """Share of the caller's requests that make this call."""
    fatal: bool
    sync: bool
    """Whether the caller waits for it (adds to its latency)."""
    protocol: Literal["grpc", "http", "tcp", "kafka"]
    delivery: bool = False
    """A Kafka broker handing messages to a consumer group."""


@dataclass
class CallState:
    """One call this tick."""

    call: Call
    rps: float = 0.0
    """Attempts per second leaving the caller."""
    reached: float = 1.0
    """Share of attempts that arrive at the callee's pods."""
    fail: float = 0.0
    codes: dict[str, float] = field(default_factory=dict)
    """Response code -> share of attempts; empty for calls that never leave the client."""
    reply: Dist = field(default_factory=lambda: Dist.point(0.0))
    """Caller-side latency of attempts answered before the deadline."""
    wait: Dist = field(default_factory=lambda: Dist.point(0.0))
    """What the caller waits for one attempt: answers, failures and timeouts."""
    delay_ms: float = 0.0
    causes: list[ErrorCause] = field(default_factory=list)
    infra_fail: float = 0.0
    infra_cause: ErrorCause | None = None
    infra_latency_ms: float = 1.0
    infra_code: str | None = None


@dataclass
class ServiceState:
    """Everything the model computed for one service this tick."""

    app: AppSpec
    spec: ServiceSpec
    runtime: ServiceRuntime
    pods: list[str]
    running: list[str]
    family: str
    calls: list[CallState] = field(default_factory=list)
    rps: float = 0.0
    error: float = 0.0
    latency: Dist = field(default_factory=lambda: Dist.point(0.0))
    """Server-side latency of the service's requests, callees included."""
    own_ms: float = 0.0
    """Median time spent in the service itself, without waiting for callees."""
    own_sigma: float = BASE_SIGMA
    cpu_m: float = 0.0
    cpu_demand_m: float = 0.0
    throttled: float = 0.0
    memory_mib: float = 0.0
    down: CauseKind | None = None
    own: list[ErrorCause] = field(default_factory=list)
    causes: list[ErrorCause] = field(default_factory=list)
    impersonates: str | None = None
    """Another service whose binary this container runs (a wrong command)."""
    unknown_binary: str | None = None
    buggy_image: bool = False
    oom: bool = False

    @property
    def key(self) -> Key:
        return (self.app.namespace, self.spec.name)

    def percentile(self, q: float) -> float:
        return self.latency.quantile(q)

    @property
    def crashing(self) -> list[str]:
        """Pods whose container keeps dying (not running, and the runtime says why)."""
        if self.runtime.waiting_reason not in CRASH_REASONS:
            return []
        return [p for p in self.pods if p not in self.running]

    def restarts_per_pod(self) -> list[int]:
        """The service's restart count spread over its pods, crashing pods first."""
        total = max(self.runtime.restarts, 0)
        crashing = self.crashing
        owners = crashing or self.pods
        share, rest = divmod(total, max(len(owners), 1))
        counts = {p: share + (1 if i < rest else 0) for i, p in enumerate(owners)}
        return [counts.get(p, 0) for p in self.pods]

    @property
    def deadline_ms(self) -> float:
        return PROXY_DEADLINE_MS if self.spec.kind in ("proxy", "loadgenerator") else DEADLINE_MS


@dataclass
class FlagEffects:
    """What the astronomy shop's flagd flags do this tick, per service name."""

    errors: dict[str, tuple[float, str]] = field(default_factory=dict)
    latency_factor: dict[str, float] = field(default_factory=dict)
    latency_add_ms: dict[str, float] = field(default_factory=dict)
    sigma: dict[str, float] = field(default_factory=dict)
    cpu_add_m: dict[str, float] = field(default_factory=dict)
    memory_add_mib: dict[str, float] = field(default_factory=dict)
    call_delay_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    unreachable: set[tuple[str, str]] = field(default_factory=set)
    load_factor: float = 1.0
    kafka_factor: float = 1.0
    consumer_delay_ms: float = 0.0
    active: frozenset[str] = frozenset()
    """Flags that are on (the services that check them log about it)."""


@dataclass
class AppTick:
    """One application's computed state for one tick."""

    app: AppSpec
    states: dict[str, ServiceState]
    order: list[str]
    origin: str | None
    flags: FlagEffects = field(default_factory=FlagEffects)
    kafka_lag: dict[tuple[str, str], float] = field(default_factory=dict)
    """(consumer group, topic) -> lag in messages."""


@functools.lru_cache(maxsize=8192)
def cluster_ip(namespace: str, service: str) -> str:
    """A stable ClusterIP-looking address for log and error messages."""
    rng = random.Random(f"svc:{namespace}/{service}")
    return f"10.96.{rng.randrange(0, 256)}.{rng.randrange(2, 255)}"


@functools.lru_cache(maxsize=8192)
def pod_ip(namespace: str, pod: str) -> str:
    rng = random.Random(f"pod:{namespace}/{pod}")
    return f"10.244.{rng.randrange(0, 4)}.{rng.randrange(2, 255)}"


def database_name(spec: ServiceSpec, runtime: ServiceRuntime) -> str:
    """The application database a MongoDB service holds (``geo-db`` for ``mongodb-geo``)."""
    if runtime.config.get("app-database"):
        return runtime.config["app-database"]
    name = spec.name
    if name.startswith("mongodb-"):
        return f"{name.removeprefix('mongodb-')}-db"
    return name.removesuffix("-mongodb")


# -- static plans --------------------------------------------------------------


def _kinds(app: AppSpec) -> dict[str, str]:
    return {s.name: s.kind for s in app.services}


def _reachable(app: AppSpec, start: str) -> set[str]:
    specs = {s.name: s for s in app.services}
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in specs:
            continue
        seen.add(name)
        stack.extend(c for c in specs[name].calls if specs.get(c) and specs[c].kind != "kafka")
    return seen


def origin_of(app: AppSpec) -> str | None:
    """The in-mesh load generator that calls the entrypoint, if the app has one."""
    for spec in app.services:
        if spec.kind == "loadgenerator" and app.entrypoint in spec.calls:
            return spec.name
    return None


def kafka_consumers(app: AppSpec) -> dict[str, list[str]]:
    """Broker -> consumer services: callers of a broker that no request reaches."""
    kinds = _kinds(app)
    start = origin_of(app) or app.entrypoint
    served = _reachable(app, start)
    consumers: dict[str, list[str]] = {}
    for spec in app.services:
        if spec.kind == "kafka":
            consumers.setdefault(spec.name, []).extend(c for c in spec.calls if c in kinds)
        elif spec.name not in served:
            for callee in spec.calls:
                if kinds.get(callee) == "kafka" and spec.kind != "loadgenerator":
                    consumers.setdefault(callee, []).append(spec.name)
    return consumers


def _protocol(kind: str) -> Literal["grpc", "http", "tcp", "kafka"]:
    if kind == "kafka":
        return "kafka"
    if kind in TCP_KINDS:
        return "tcp"
    return "http" if kind in ("frontend", "proxy") else "grpc"


def build_plan(app: AppSpec, spec: ServiceSpec, consumers: Mapping[str, list[str]]) -> list[Call]:
    """The calls ``spec`` makes per request, with shares for routes, caches and flags."""
    kinds = _kinds(app)
    consumed = {b for b, groups in consumers.items() if spec.name in groups}
    callees = [
        c for c in spec.calls if c in kinds and kinds[c] not in IGNORED_KINDS and c not in consumed
    ]
    if spec.kind == "kafka":
        callees = []
    path = [c for c in callees if kinds[c] not in ("flagd", "kafka")]
    router = spec.kind in ROUTER_KINDS and len(path) > 1
    has_db = any(kinds[c] == "mongodb" for c in callees)
    has_cache = any(kinds[c] in CACHE_KINDS for c in callees)
    plan: list[Call] = []
    for callee in callees:
        kind = kinds[callee]
        if kind == "flagd":
            plan.append(Call(callee, SIDE_SHARE, fatal=False, sync=False, protocol="grpc"))
        elif kind == "kafka":
            plan.append(Call(callee, 1.0, fatal=False, sync=False, protocol="kafka"))
        elif router:
            plan.append(Call(callee, 1.0 / len(path), True, True, _protocol(kind)))
        else:
            share = CACHE_MISS if kind == "mongodb" and has_cache else 1.0
            fatal = not (kind in CACHE_KINDS and has_db)
            plan.append(Call(callee, share, fatal, True, _protocol(kind)))
    for group in consumers.get(spec.name, []):
        plan.append(Call(group, 1.0, False, False, "kafka", delivery=True))
    return plan


def call_order(app: AppSpec, plans: Mapping[str, list[Call]], start: str | None) -> list[str]:
    """Callers before callees (reverse post-order); cycles are cut where found."""
    seen: set[str] = set()
    post: list[str] = []

    def visit(name: str) -> None:
        stack: list[tuple[str, int]] = [(name, 0)]
        seen.add(name)
        while stack:
            node, pos = stack.pop()
            calls = plans.get(node, [])
            if pos < len(calls):
                stack.append((node, pos + 1))
                nxt = calls[pos].callee
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, 0))
            else:
                post.append(node)

    roots = ([start] if start else []) + [app.entrypoint] + list(app.service_names)
    for root in roots:
        if root not in seen:
            visit(root)
    return post[::-1]


@dataclass(frozen=True)
class AppPlan:
    """What never changes for an application: its calls, their order and its nominal load."""

    app: AppSpec
    calls: dict[str, list[Call]]
    order: list[str]
    origin: str | None
    consumers: dict[str, list[str]]
    nominal_rps: dict[str, float]


@dataclass
class WorldInputs:
    """The world as the lab last described it."""

    runtimes: Mapping[tuple[str, str], ServiceRuntime] = field(default_factory=dict)
    pods: Mapping[tuple[str, str], Sequence[str]] = field(default_factory=dict)
    faults: AppFaults = field(default_factory=AppFaults)
    flags: Mapping[str, bool] = field(default_factory=dict)
    flag_since: Mapping[str, float] = field(default_factory=dict)


def plan_app(app: AppSpec) -> AppPlan:
    consumers = kafka_consumers(app)
    calls = {s.name: build_plan(app, s, consumers) for s in app.services}
    origin = origin_of(app)
    order = call_order(app, calls, origin)
    plan = AppPlan(app, calls, order, origin, consumers, {})
    states = initial_states(plan, WorldInputs())
    propagate_load(states, order, origin or app.entrypoint, app.base_rps)
    plan.nominal_rps.update({name: st.rps for name, st in states.items()})
    return plan


def initial_states(plan: AppPlan, inputs: WorldInputs) -> dict[str, ServiceState]:
    states = {}
    for spec in plan.app.services:
        key = (plan.app.namespace, spec.name)
        runtime = inputs.runtimes.get(key) or default_runtime(plan.app, spec)
        pods = list(inputs.pods.get(key, ()))
        if key not in inputs.pods:
            count = max(runtime.desired_replicas, runtime.ready_replicas)
            pods = [f"{spec.name}-{i}" for i in range(count)]
        running = pods[: max(runtime.ready_replicas, 0)]
        st = ServiceState(plan.app, spec, runtime, pods, running, vocab.family_of(spec))
        st.calls = [CallState(call) for call in plan.calls[spec.name]]
        states[spec.name] = st
    return states


def compute_app(plan: AppPlan, inputs: WorldInputs, rng: random.Random, now: float) -> AppTick:
    """The application's state for one tick."""
    app, faults = plan.app, inputs.faults
    flags = flag_effects(app, inputs.flags, inputs.flag_since, now)
    states = initial_states(plan, inputs)
    for name in plan.order:
        _assess_service(states[name], faults, flags)
    for name in plan.order:
        _assess_calls(states[name], states, faults, flags, now)
    entry_rps = app.base_rps * faults.load_multiplier * flags.load_factor
    entry_rps *= 1.0 + 0.04 * rng.gauss(0.0, 1.0)
    start = plan.origin or app.entrypoint
    propagate_load(states, plan.order, start, max(entry_rps, 0.0), flags, faults)
    for name in plan.order:
        _resources(states[name], plan.nominal_rps.get(name, 0.0), faults, flags, rng)
    for name in reversed(plan.order):
        _errors_and_latency(states[name], states, flags, rng)
    return AppTick(app, states, plan.order, plan.origin, flags=flags)


def advance_kafka(
    plan: AppPlan, app_tick: AppTick, lag: dict[tuple[str, str], float], dt: float
) -> None:
    """Consumer lag grows when producers outrun what a slowed consumer can take."""
    for broker, groups in plan.consumers.items():
        produced = app_tick.states[broker].rps
        base = plan.nominal_rps.get(broker, 0.0)
        for group in groups:
            capacity = max(base * 3.0, 1.0)
            if app_tick.flags.consumer_delay_ms > 0:
                capacity = max(base * 1.5, 0.5)
            if not app_tick.states[group].running:
                capacity = 0.0
            key = (group, "orders")
            lag[key] = max(lag.get(key, 0.0) + (produced - capacity) * dt, 0.0)
            app_tick.kafka_lag[key] = lag[key] + min(produced, capacity) * 0.5


def default_runtime(app: AppSpec, spec: ServiceSpec) -> ServiceRuntime:
    """How a service looks when the cluster reports nothing about it: as deployed."""
    config: dict[str, str] = {}
    for configmap, _mount in spec.config_mounts:
        config.update(app.configmaps.get(configmap, {}))
    return ServiceRuntime(
        namespace=app.namespace,
        name=spec.name,
        desired_replicas=spec.replicas,
        ready_replicas=spec.replicas,
        ready_endpoints=spec.replicas,
        image=spec.image,
        command=spec.command,
        env=dict(spec.env),
        memory_limit_mib=spec.memory_limit_mib,
        cpu_limit_m=spec.cpu_limit_m,
        config=config,
    )


# -- per-tick steps --------------------------------------------------------------


def _binary(command: Sequence[str]) -> str:
    return command[0].rsplit("/", 1)[-1] if command else ""


def _assess_service(st: ServiceState, faults: AppFaults, flags: FlagEffects) -> None:
    """Whether callers can reach the service at all, and what fails inside it.

    Whether a container crashes is the kubelet simulator's call (it reports it through
    the runtime); the model only notes what the crash output should say.
    """
    rt, spec = st.runtime, st.spec
    _assess_process(st)
    if rt.ready_endpoints <= 0 or not st.running:
        st.down = "no_endpoints"
    elif not rt.port_reachable or st.impersonates or st.unknown_binary:
        st.down = "refused"
    need = spec.working_set_mib + faults.memory_leak_mib.get(spec.name, 0.0)
    need += flags.memory_add_mib.get(spec.name, 0.0)
    limit = rt.memory_limit_mib
    st.oom = rt.last_termination_reason == "OOMKilled" or (limit is not None and limit < need)
    flagged = flags.errors.get(spec.name)
    if flagged:
        st.own.append(ErrorCause("flag", flagged[1], flagged[0]))


def _assess_process(st: ServiceState) -> None:
    """Which program the container runs: a wrong command or image changes everything."""
    rt, spec = st.runtime, st.spec
    if rt.image and spec.image and rt.image != spec.image:
        st.buggy_image = True
    binary = _binary(rt.command)
    if not binary or binary in (_binary(spec.command), spec.name):
        return
    for other in st.app.services:
        if other.name != spec.name and binary in (_binary(other.command), other.name):
            st.impersonates = other.name
            return
    if rt.waiting_reason:
        st.unknown_binary = binary


def _assess_calls(
    st: ServiceState,
    states: Mapping[str, ServiceState],
    faults: AppFaults,
    flags: FlagEffects,
    now: float,
) -> None:
    """Failures that happen on the wire or at the callee's door, before any work is done."""
    for cs in st.calls:
        callee = states[cs.call.callee]
        # netem on the callee's interface: its answers are late or lost, whoever calls.
        cs.delay_ms = faults.network_delay_ms.get(callee.spec.name, 0.0)
        cs.delay_ms += flags.call_delay_ms.get((st.spec.name, callee.spec.name), 0.0)
        kind, code, reached = _door_failure(st, callee, faults, flags)
        if kind is not None:
            cs.infra_fail, cs.reached, cs.infra_code = 1.0, reached, code
            host = "badAddress" if (st.spec.name, callee.spec.name) in flags.unreachable else ""
            cs.infra_cause = _call_cause(st, callee, kind, 1.0, cs, now, host=host)
            continue
        loss = min(max(faults.network_loss.get(callee.spec.name, 0.0), 0.0), 1.0)
        if loss > 0:
            cs.infra_fail, cs.reached, cs.infra_code = loss, 1.0 - loss, "504"
            cs.infra_latency_ms = st.deadline_ms
            cs.infra_cause = _call_cause(st, callee, "timeout", loss, cs, now)


def _door_failure(
    st: ServiceState, callee: ServiceState, faults: AppFaults, flags: FlagEffects
) -> tuple[CauseKind | None, str | None, float]:
    """(cause, response code seen by the sidecar, share of attempts reaching the callee)."""
    name = callee.spec.name
    if (st.spec.name, name) in flags.unreachable or name in faults.dns_failure:
        return "no_such_host", None, 0.0
    if callee.down is not None:
        return callee.down, "503", 0.0
    if name in faults.cert_expired:
        return "x509", "503", 0.0
    if callee.spec.kind == "mongodb":
        if TLS_REQUIRED.search(callee.runtime.config.get("mongod.conf", "")):
            return "tls_required", None, 1.0
        if name in faults.dropped_users:
            return "auth_failed", None, 1.0
        if name in faults.revoked_roles:
            return "unauthorized", None, 1.0
    return None, None, 1.0


def _call_cause(
    st: ServiceState,
    callee: ServiceState,
    kind: CauseKind,
    fraction: float,
    cs: CallState,
    now: float,
    *,
    inner: str = "",
    host: str = "",
) -> ErrorCause:
    ctx = vocab.FailureContext(
        caller=st.spec.name,
        callee=callee.spec.name,
        callee_kind=callee.spec.kind,
        port=callee.spec.port,
        ip=cluster_ip(st.app.namespace, callee.spec.name),
        database=database_name(callee.spec, callee.runtime),
        user=callee.runtime.config.get("app-user", "admin"),
        now=now,
        deadline_ms=st.deadline_ms,
        inner=inner,
        host=host or callee.spec.name,
    )
    message = vocab.failure_message(kind, st.family, ctx)
    return ErrorCause(kind, message, fraction, callee.spec.name, cs.call.fatal)


def propagate_load(
    states: Mapping[str, ServiceState],
    order: Sequence[str],
    start: str,
    entry_rps: float,
    flags: FlagEffects | None = None,
    faults: AppFaults | None = None,
) -> None:
    """Requests flow from the entry down the call graph; retries multiply them."""
    inbound = dict.fromkeys(states, 0.0)
    inbound[start] = entry_rps
    storms = faults.retry_storm if faults else set()
    for name in order:
        st = states[name]
        st.rps = inbound[name]
        for cs in st.calls:
            factor = 1.0 + (cs.infra_fail if cs.infra_code == "504" else 0.0)
            if cs.call.callee in storms:
                factor *= RETRY_STORM_FACTOR
            if cs.call.protocol == "kafka" and not cs.call.delivery and flags is not None:
                factor *= flags.kafka_factor
            cs.rps = st.rps * cs.call.share * factor
            inbound[cs.call.callee] += cs.rps * cs.reached


def _resources(
    st: ServiceState,
    nominal_rps: float,
    faults: AppFaults,
    flags: FlagEffects,
    rng: random.Random,
) -> None:
    """CPU follows load (and stress); memory is the working set plus leaks; limits throttle."""
    spec, name = st.spec, st.spec.name
    if not st.running:
        st.cpu_m = st.cpu_demand_m = st.memory_mib = 0.0
        return
    replicas = len(st.running)
    ratio = st.rps / nominal_rps if nominal_rps > 0 else 0.0
    demand = spec.base_cpu_m * (0.3 + 0.7 * ratio) / replicas
    demand += faults.cpu_stress_m.get(name, 0) + flags.cpu_add_m.get(name, 0.0)
    demand *= 1.0 + 0.05 * rng.gauss(0.0, 1.0)
    limit = st.runtime.cpu_limit_m or 0
    st.cpu_demand_m = max(demand, 0.1)
    st.cpu_m = min(st.cpu_demand_m, limit) if limit else st.cpu_demand_m
    st.throttled = min(max((st.cpu_demand_m / limit - 0.6) / 0.6, 0.0), 1.0) if limit else 0.0
    memory = spec.working_set_mib * (0.9 + 0.1 * min(ratio, 5.0))
    memory += faults.memory_leak_mib.get(name, 0.0) + flags.memory_add_mib.get(name, 0.0)
    st.memory_mib = memory * (1.0 + 0.01 * rng.gauss(0.0, 1.0))


def _throttle_factor(st: ServiceState) -> float:
    limit = st.runtime.cpu_limit_m or 0
    if not limit:
        return 1.0
    load = st.cpu_demand_m / limit
    return 1.0 + 4.0 * max(load - 0.7, 0.0) + 6.0 * max(load - 1.0, 0.0)


def _errors_and_latency(
    st: ServiceState,
    states: Mapping[str, ServiceState],
    flags: FlagEffects,
    rng: random.Random,
) -> None:
    """Callee failures and slowness come back up to the caller (callees are done first)."""
    name = st.spec.name
    own_ms = st.spec.base_latency_ms * _throttle_factor(st) * flags.latency_factor.get(name, 1.0)
    own_ms += flags.latency_add_ms.get(name, 0.0)
    st.own_ms = max(own_ms * (1.0 + 0.05 * rng.gauss(0.0, 1.0)), 0.05)
    st.own_sigma = flags.sigma.get(name, BASE_SIGMA)
    latency = Dist.lognormal(st.own_ms, st.own_sigma)
    routes: list[tuple[float, Dist]] = []
    router = _is_router(st)
    for cs in st.calls:
        _settle_call(st, cs, states[cs.call.callee])
        if not cs.call.sync:
            continue
        if router and cs.call.fatal:
            routes.append((cs.call.share, cs.wait))
        elif cs.call.share >= 0.999:
            latency = latency.plus(cs.wait)
        else:
            skipped = (1.0 - cs.call.share, Dist.point(0.0))
            latency = latency.plus(Dist.mixture([(cs.call.share, cs.wait), skipped]))
    if routes:
        total = sum(p for p, _ in routes)
        latency = latency.plus(Dist.mixture((p / total, d) for p, d in routes))
    st.latency = latency
    _combine_errors(st)


def _is_router(st: ServiceState) -> bool:
    return st.spec.kind in ROUTER_KINDS and sum(1 for c in st.calls if c.call.fatal) > 1


def _settle_call(st: ServiceState, cs: CallState, callee: ServiceState) -> None:
    """The call's failure share, response codes and caller-side latency."""
    deadline = st.deadline_ms
    arriving = callee.latency.shift(cs.delay_ms + (200.0 if cs.infra_code == "504" else 0.0))
    late, cs.reply = arriving.split_at(deadline)
    timeout = late if cs.reached else 0.0
    ok_door = 1.0 - cs.infra_fail
    upstream = callee.error if cs.reached else 0.0
    cs.fail = cs.infra_fail + ok_door * (timeout + (1.0 - timeout) * upstream)
    cs.wait = Dist.mixture(
        [
            (cs.infra_fail, Dist.point(min(cs.infra_latency_ms, deadline))),
            (ok_door * timeout, Dist.point(deadline)),
            (ok_door * (1.0 - timeout), cs.reply),
        ]
    )
    cs.causes = [cs.infra_cause] if cs.infra_cause else []
    if ok_door * timeout > 1e-4:
        if cs.infra_cause and cs.infra_cause.kind == "timeout":
            cs.causes[0] = _rescaled(cs.infra_cause, cs.infra_fail + ok_door * timeout)
        else:
            cs.causes.append(_call_cause(st, callee, "timeout", ok_door * timeout, cs, 0.0))
    if ok_door * upstream > 1e-4 and callee.causes:
        inner = max(callee.causes, key=lambda c: c.fraction if c.fatal else -1.0)
        share = ok_door * (1.0 - timeout) * upstream
        cause = _call_cause(st, callee, "upstream", share, cs, 0.0, inner=inner.message)
        cs.causes.append(cause)
    cs.codes = _response_codes(cs, ok_door, timeout, upstream)


def _response_codes(
    cs: CallState, ok_door: float, timeout: float, upstream: float
) -> dict[str, float]:
    if cs.call.protocol in ("tcp", "kafka"):
        return {}
    codes: dict[str, float] = {}
    if cs.infra_code and cs.infra_fail > 0:
        codes[cs.infra_code] = cs.infra_fail
    if ok_door > 0:
        codes["504"] = codes.get("504", 0.0) + ok_door * timeout
        codes["500"] = ok_door * (1.0 - timeout) * upstream
        codes["200"] = ok_door * (1.0 - timeout) * (1.0 - upstream)
    return {code: share for code, share in codes.items() if share > 1e-6}


def _combine_errors(st: ServiceState) -> None:
    """A request fails if the service fails it itself or a fatal call on its path fails."""
    router = _is_router(st)
    dep_ok = 1.0
    dep_fail = 0.0
    causes: list[ErrorCause] = []
    for cs in st.calls:
        if cs.call.delivery:
            continue
        for cause in cs.causes:
            share = cs.call.share * cause.fraction
            if share > 1e-4:
                causes.append(_rescaled(cause, share))
        if not cs.call.fatal:
            continue
        if router:
            dep_fail += cs.call.share * cs.fail
        else:
            dep_ok *= 1.0 - cs.call.share * cs.fail
    dependency = dep_fail if router else 1.0 - dep_ok
    own = 1.0
    for cause in st.own:
        own *= 1.0 - cause.fraction
    st.error = 1.0 if st.down else 1.0 - own * (1.0 - min(dependency, 1.0))
    st.causes = list(st.own) + causes
    if st.down:
        message = vocab.down_message(st.down, st.spec.name, st.spec.port)
        st.causes.insert(0, ErrorCause(st.down, message, 1.0))


def _rescaled(cause: ErrorCause, fraction: float) -> ErrorCause:
    return ErrorCause(cause.kind, cause.message, fraction, cause.dependency, cause.fatal)


# -- feature flags -----------------------------------------------------------------


def flag_effects(
    app: AppSpec, flags: Mapping[str, bool], since: Mapping[str, float], now: float
) -> FlagEffects:
    """The astronomy shop's flagd flags, as the demo implements them."""
    fx = FlagEffects()
    if not any(s.kind == "flagd" for s in app.services):
        return fx
    names = set(app.service_names)
    on = {name for name, value in flags.items() if value}
    fx.active = frozenset(on)

    def has(service: str) -> bool:
        return service in names

    if "adFailure" in on and has("ad"):
        fx.errors["ad"] = (0.1, vocab.FLAG_MESSAGES["adFailure"])
    if "adHighCpu" in on and has("ad"):
        fx.cpu_add_m["ad"] = 2.0 * app.service("ad").cpu_limit_m
    if "adManualGc" in on and has("ad"):
        fx.sigma["ad"] = 1.3
        fx.latency_factor["ad"] = 2.0
    if "cartFailure" in on and has("cart"):
        fx.errors["cart"] = (1.0, vocab.FLAG_MESSAGES["cartFailure"])
    if "imageSlowLoad" in on:
        target = "image-provider" if has("image-provider") else "frontend"
        for spec in app.services:
            if target in spec.calls:
                fx.call_delay_ms[(spec.name, target)] = 10000.0
    if "kafkaQueueProblems" in on:
        fx.kafka_factor = 100.0
        fx.consumer_delay_ms = 1000.0
        for group in ("accounting", "fraud-detection"):
            fx.latency_add_ms[group] = 1000.0
    if "loadGeneratorFloodHomepage" in on:
        fx.load_factor = FLOOD_FACTOR
    if "paymentFailure" in on and has("payment"):
        fx.errors["payment"] = (1.0, vocab.FLAG_MESSAGES["paymentFailure"])
    if "paymentUnreachable" in on and has("payment"):
        fx.unreachable |= {(s.name, "payment") for s in app.services if "payment" in s.calls}
    if "productCatalogFailure" in on and has("product-catalog"):
        fx.errors["product-catalog"] = (0.1, vocab.FLAG_MESSAGES["productCatalogFailure"])
    if "recommendationCacheFailure" in on and has("recommendation"):
        minutes = max(now - since.get("recommendationCacheFailure", now), 0.0) / 60.0
        fx.memory_add_mib["recommendation"] = 20.0 * minutes
        fx.latency_factor["recommendation"] = 1.0 + min(minutes * 0.8, 40.0)
    return fx
