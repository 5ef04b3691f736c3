"""The metric families the lab's Prometheus holds, written from the model's tick state.

Names and labels are the ones Istio, cAdvisor, kube-state-metrics and
kafka-exporter export, because those are what SREs and LLM agents already type:
``istio_requests_total{destination_service="geo.<ns>.svc.cluster.local"}``,
``container_cpu_usage_seconds_total{pod=...}`` and so on. Counters only grow
(a container restart resets its cAdvisor counters, as in a real cluster), and a
series that stops being exported goes stale, which the store records.
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.telemetry.latency import Dist
from lab.telemetry.series import Labels, SeriesStore, make_labels
from lab.telemetry.world import AppTick, CallState, ServiceState, pod_ip

BUCKETS_MS = (
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
)
"""Istio's default request-duration buckets, trimmed to what the lab can produce."""
MIB = 1024.0 * 1024.0
CFS_PERIODS_PER_S = 10.0

FAMILIES: dict[str, tuple[str, str]] = {
    "istio_requests_total": ("counter", "Requests seen by the Envoy sidecars."),
    "istio_request_duration_milliseconds": ("histogram", "Request duration seen by Envoy."),
    "istio_tcp_connections_opened_total": ("counter", "TCP connections opened."),
    "istio_tcp_sent_bytes_total": ("counter", "Bytes sent over TCP connections."),
    "istio_tcp_received_bytes_total": ("counter", "Bytes received over TCP connections."),
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed in seconds."),
    "container_memory_working_set_bytes": ("gauge", "Current working set in bytes."),
    "container_cpu_cfs_periods_total": ("counter", "Number of elapsed enforcement periods."),
    "container_cpu_cfs_throttled_periods_total": (
        "counter",
        "Number of throttled period intervals.",
    ),
    "kube_pod_container_status_restarts_total": (
        "counter",
        "The number of container restarts per container.",
    ),
    "kube_pod_container_status_ready": ("gauge", "Whether the container's readiness check ok."),
    "kube_pod_container_status_waiting_reason": (
        "gauge",
        "Describes the reason the container is currently in waiting state.",
    ),
    "kube_pod_container_resource_limits": ("gauge", "The resource limit of a container."),
    "kube_deployment_status_replicas_available": ("gauge", "Available replicas per deployment."),
    "kube_deployment_spec_replicas": ("gauge", "Desired replicas per deployment."),
    "up": ("gauge", "1 when the last scrape of the target succeeded."),
    "kafka_consumergroup_lag": ("gauge", "Current approximate lag of a consumer group."),
}


def fqdn(namespace: str, service: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


class MetricsRecorder:
    """Keeps counter totals between ticks and writes one sample of every family per tick."""

    def __init__(self, store: SeriesStore) -> None:
        self._store = store
        self._counters: dict[Labels, float] = {}
        self._sticky: dict[str, set[Labels]] = {}
        """Per namespace: series written every tick once they exist (Envoy keeps its stats)."""
        self._written: set[Labels] = set()
        self._keys: dict[tuple[str, tuple[tuple[str, str], ...]], Labels] = {}
        """(name, label items) -> series identity; the same few thousand keys every tick."""
        self._histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[Labels]] = {}
        self._ns = ""
        self._restarts: dict[tuple[str, str], int] = {}
        for name, (type_, help_) in FAMILIES.items():
            store.describe(name, type_, help_)

    def record(self, app_tick: AppTick, dt: float) -> None:
        self._written = set()
        ns = self._ns = app_tick.app.namespace
        for st in app_tick.states.values():
            for cs in st.calls:
                callee = app_tick.states[cs.call.callee]
                if cs.call.protocol in ("grpc", "http"):
                    self._http_edge(st, cs, callee, dt)
                elif cs.call.protocol == "tcp":
                    self._tcp_edge(st, cs, callee, dt)
            self._containers(st, dt)
            self._workload(st)
        self._external_edge(app_tick, dt)
        for (group, topic), lag in app_tick.kafka_lag.items():
            labels = {"namespace": ns, "consumergroup": group, "topic": topic, "partition": "0"}
            self._gauge("kafka_consumergroup_lag", labels, round(lag))
        for key in self._sticky.get(ns, set()) - self._written:
            self._store.set(key, self._counters[key])

    # -- primitives ------------------------------------------------------------------

    def _key(self, name: str, labels: Mapping[str, str]) -> Labels:
        cache_key = (name, tuple(labels.items()))
        key = self._keys.get(cache_key)
        if key is None:
            key = self._keys[cache_key] = make_labels(name, labels)
        return key

    def _gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        key = self._key(name, labels)
        self._store.set(key, value)
        self._written.add(key)

    def _count(
        self, name: str, labels: Mapping[str, str], inc: float, *, sticky: bool = False
    ) -> None:
        self._bump(self._key(name, labels), inc, sticky=sticky)

    def _bump(self, key: Labels, inc: float, *, sticky: bool = False) -> None:
        total = self._counters.get(key, 0.0) + max(inc, 0.0)
        self._counters[key] = total
        self._store.set(key, total)
        self._written.add(key)
        if sticky:
            self._sticky.setdefault(self._ns, set()).add(key)

    def _histogram(self, name: str, labels: Mapping[str, str], count: float, dist: Dist) -> None:
        keys = self._bucket_keys(name, labels)
        for key, share in zip(keys, dist.cdf_many(BUCKETS_MS), strict=False):
            self._bump(key, count * share, sticky=True)
        self._bump(keys[-3], count, sticky=True)
        self._bump(keys[-2], count, sticky=True)
        self._bump(keys[-1], count * dist.mean, sticky=True)

    def _bucket_keys(self, name: str, labels: Mapping[str, str]) -> list[Labels]:
        """Keys of every bucket, then +Inf, _count and _sum, built once per label set."""
        cache_key = (name + "{histogram}", tuple(labels.items()))
        found = self._histograms.get(cache_key)
        if found is None:
            bucket = f"{name}_bucket"
            found = [make_labels(bucket, {**labels, "le": _le(b)}) for b in BUCKETS_MS]
            found += [
                make_labels(bucket, {**labels, "le": "+Inf"}),
                make_labels(f"{name}_count", labels),
                make_labels(f"{name}_sum", labels),
            ]
            self._histograms[cache_key] = found
        return found

    # -- families --------------------------------------------------------------------

    def _edge_labels(
        self, ns: str, source: str, dest: str, reporter: str, code: str
    ) -> dict[str, str]:
        return {
            "namespace": ns,
            "reporter": reporter,
            "source_workload": source,
            "source_workload_namespace": ns if source != "unknown" else "unknown",
            "destination_workload": dest,
            "destination_workload_namespace": ns,
            "destination_service": fqdn(ns, dest),
            "destination_service_name": dest,
            "destination_service_namespace": ns,
            "response_code": code,
        }

    def _http_edge(self, st: ServiceState, cs: CallState, callee: ServiceState, dt: float) -> None:
        ns, src, dst = st.app.namespace, st.spec.name, callee.spec.name
        for code, share in cs.codes.items():
            labels = self._edge_labels(ns, src, dst, "source", code)
            n = cs.rps * share * dt
            self._count("istio_requests_total", labels, n, sticky=True)
            latency = _source_latency(cs, code, st.deadline_ms)
            self._histogram("istio_request_duration_milliseconds", labels, n, latency)
        arrived = cs.rps * cs.reached
        if arrived > 0 or callee.running:
            self._server_side(ns, src, callee, arrived, dt)

    def _server_side(
        self, ns: str, source: str, callee: ServiceState, arrived: float, dt: float
    ) -> None:
        if not callee.running:
            return
        for code, share in (("200", 1.0 - callee.error), ("500", callee.error)):
            if share <= 1e-6:
                continue
            labels = self._edge_labels(ns, source, callee.spec.name, "destination", code)
            n = arrived * share * dt
            self._count("istio_requests_total", labels, n, sticky=True)
            self._histogram("istio_request_duration_milliseconds", labels, n, callee.latency)

    def _external_edge(self, app_tick: AppTick, dt: float) -> None:
        """Users outside the mesh: only the entrypoint's own sidecar reports them."""
        if app_tick.origin is not None:
            return
        entry = app_tick.states[app_tick.app.entrypoint]
        self._server_side(app_tick.app.namespace, "unknown", entry, entry.rps, dt)

    def _tcp_edge(self, st: ServiceState, cs: CallState, callee: ServiceState, dt: float) -> None:
        if cs.reached <= 0:
            return
        labels = {
            "namespace": st.app.namespace,
            "reporter": "source",
            "source_workload": st.spec.name,
            "destination_workload": callee.spec.name,
            "destination_service": fqdn(st.app.namespace, callee.spec.name),
            "destination_service_name": callee.spec.name,
        }
        calls = cs.rps * cs.reached * dt
        opened = calls * (1.0 if cs.infra_cause else 0.02)
        self._count("istio_tcp_connections_opened_total", labels, opened, sticky=True)
        self._count("istio_tcp_sent_bytes_total", labels, calls * 310.0, sticky=True)
        received = calls * (180.0 if cs.infra_cause else 1450.0)
        self._count("istio_tcp_received_bytes_total", labels, received, sticky=True)

    def _containers(self, st: ServiceState, dt: float) -> None:
        ns, name = st.app.namespace, st.spec.name
        image = st.runtime.image or st.spec.image
        restarts = st.restarts_per_pod()
        for index, pod in enumerate(st.pods):
            base = {"namespace": ns, "pod": pod, "container": name}
            self._pod_status(st, base, index, restarts[index])
            if pod not in st.running:
                continue
            labels = {**base, "image": image}
            if self._restarted(ns, pod, restarts[index]):
                self._reset_container(labels)
            self._count("container_cpu_usage_seconds_total", labels, st.cpu_m / 1000.0 * dt)
            self._gauge("container_memory_working_set_bytes", labels, round(st.memory_mib * MIB))
            if st.runtime.cpu_limit_m:
                periods = CFS_PERIODS_PER_S * dt
                self._count("container_cpu_cfs_periods_total", labels, periods)
                throttled = periods * st.throttled
                self._count("container_cpu_cfs_throttled_periods_total", labels, throttled)

    def _restarted(self, ns: str, pod: str, restarts: int) -> bool:
        previous = self._restarts.get((ns, pod))
        self._restarts[(ns, pod)] = restarts
        return previous is not None and restarts > previous

    def _reset_container(self, labels: Mapping[str, str]) -> None:
        for name in (
            "container_cpu_usage_seconds_total",
            "container_cpu_cfs_periods_total",
            "container_cpu_cfs_throttled_periods_total",
        ):
            self._counters.pop(make_labels(name, labels), None)

    def _pod_status(
        self, st: ServiceState, base: Mapping[str, str], index: int, restarts: int
    ) -> None:
        running = base["pod"] in st.running
        self._gauge("kube_pod_container_status_restarts_total", base, restarts)
        self._gauge("kube_pod_container_status_ready", base, 1.0 if running else 0.0)
        if st.runtime.waiting_reason and not running:
            waiting = {**base, "reason": st.runtime.waiting_reason}
            self._gauge("kube_pod_container_status_waiting_reason", waiting, 1.0)
        limits = st.runtime
        if limits.cpu_limit_m:
            cpu = {**base, "resource": "cpu", "unit": "core"}
            self._gauge("kube_pod_container_resource_limits", cpu, limits.cpu_limit_m / 1000.0)
        if limits.memory_limit_mib:
            mem = {**base, "resource": "memory", "unit": "byte"}
            self._gauge("kube_pod_container_resource_limits", mem, limits.memory_limit_mib * MIB)
        target = {
            "job": "kubernetes-pods",
            "namespace": base["namespace"],
            "pod": base["pod"],
            "instance": f"{pod_ip(base['namespace'], base['pod'])}:{st.spec.port}",
        }
        self._gauge("up", target, 1.0 if running and st.down != "refused" else 0.0)

    def _workload(self, st: ServiceState) -> None:
        labels = {"namespace": st.app.namespace, "deployment": st.spec.name}
        available = min(st.runtime.ready_replicas, len(st.running))
        self._gauge("kube_deployment_status_replicas_available", labels, available)
        self._gauge("kube_deployment_spec_replicas", labels, st.runtime.desired_replicas)


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def _source_latency(cs: CallState, code: str, deadline_ms: float) -> Dist:
    """Caller-side duration of calls answered with ``code``."""
    if code == "504":
        return Dist.point(deadline_ms)
    if code == "503":
        return Dist.lognormal(0.8, 0.3)
    if code == "500":
        return cs.reply.scale(0.6)
    return cs.reply
