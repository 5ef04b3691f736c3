"""Read what the cluster shows for each application service.

The application model must react to the real Kubernetes state, not to the
scenario that caused it: a Service whose targetPort misses the container, a
Deployment scaled to zero, a pod stuck Pending all reach the model only through
objects read here from the apiserver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from lab.apps.spec import AppSpec
from lab.kubelet.containers import parse_memory_mib
from lab.kubelet.images import ImageCatalog
from lab.telemetry.state import AppFaults, ServiceRuntime

SERVICE_LABEL = "app.kubernetes.io/name"
NEIGHBOUR_LABEL = "aoi.lab/neighbour-of"
NEIGHBOUR_CPU_ANNOTATION = "aoi.lab/cpu-millicores"
RETRY_BACKOFF_SUFFIX = "_RETRY_BACKOFF_MS"
_REWRITE = re.compile(r"^\s*rewrite\s+name\s+(?:exact\s+)?([a-z0-9-]+)\.([a-z0-9-]+)\.svc", re.M)


@dataclass
class ClusterSnapshot:
    runtimes: dict[tuple[str, str], ServiceRuntime] = field(default_factory=dict)
    pods: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    derived: AppFaults = field(default_factory=AppFaults)
    """In-app effects of cluster objects: a CPU-hungry neighbour, retries without back-off,
    a DNS rewrite rule that breaks a name."""


def _items(resp: Any) -> list[dict[str, Any]]:
    return list(json.loads(resp.data)["items"])


def _cpu_m(quantity: str | None) -> int | None:
    if not quantity:
        return None
    if quantity.endswith("m"):
        return int(float(quantity[:-1]))
    return int(float(quantity) * 1000)


def parse_flags(flagd_json: str) -> dict[str, bool]:
    """Feature flags that are on, from flagd's flag file."""
    try:
        flags = json.loads(flagd_json).get("flags", {})
    except (ValueError, AttributeError):
        return {}
    result: dict[str, bool] = {}
    for name, spec in flags.items():
        if not isinstance(spec, dict):
            continue
        variant = spec.get("defaultVariant")
        value = (spec.get("variants") or {}).get(variant, variant)
        enabled = spec.get("state", "ENABLED") == "ENABLED"
        result[name] = bool(enabled and value not in (False, "off", 0, None))
    return result


class ClusterReader:
    """Lists the objects of the application namespaces and folds them per service."""

    def __init__(self, *, api: client.ApiClient, apps: Iterable[AppSpec], images: ImageCatalog):
        self.core = client.CoreV1Api(api)
        self.apps_api = client.AppsV1Api(api)
        self.apps = list(apps)
        self.images = images

    def snapshot(self) -> ClusterSnapshot:
        snap = ClusterSnapshot()
        for app in self.apps:
            self._read_namespace(app, snap)
        self._read_dns(snap)
        return snap

    def _read_dns(self, snap: ClusterSnapshot) -> None:
        resp = self.core.list_namespaced_config_map(
            "kube-system", field_selector="metadata.name=coredns", _preload_content=False
        )
        for cm in _items(resp):
            for name, _ns in _REWRITE.findall((cm.get("data") or {}).get("Corefile", "")):
                snap.derived.dns_failure.add(name)

    def _read_namespace(self, app: AppSpec, snap: ClusterSnapshot) -> None:
        ns = app.namespace
        pre = {"_preload_content": False}
        deployments = {
            d["metadata"]["name"]: d
            for d in _items(self.apps_api.list_namespaced_deployment(ns, **pre))
        }
        services = {
            s["metadata"]["name"]: s for s in _items(self.core.list_namespaced_service(ns, **pre))
        }
        endpoints = {
            e["metadata"]["name"]: e for e in _items(self.core.list_namespaced_endpoints(ns, **pre))
        }
        configmaps = {
            c["metadata"]["name"]: c.get("data") or {}
            for c in _items(self.core.list_namespaced_config_map(ns, **pre))
        }
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in _items(self.core.list_namespaced_pod(ns, **pre)):
            svc = (pod["metadata"].get("labels") or {}).get(SERVICE_LABEL)
            if svc:
                pods.setdefault(svc, []).append(pod)
        _derive(app, deployments, snap.derived)
        if "flagd-config" in configmaps:
            for text in configmaps["flagd-config"].values():
                snap.flags.update(parse_flags(text))
        for spec in app.services:
            runtime = _runtime(
                ns,
                spec.name,
                deployments.get(spec.name),
                services.get(spec.name),
                endpoints.get(spec.name),
                pods.get(spec.name, []),
                configmaps,
                self.images,
            )
            snap.runtimes[(ns, spec.name)] = runtime
            live = [
                p for p in pods.get(spec.name, []) if not p["metadata"].get("deletionTimestamp")
            ]
            # Ready pods first: the model takes the first ready_replicas names as serving.
            live.sort(key=lambda p: (not _pod_ready(p), p["metadata"]["name"]))
            snap.pods[(ns, spec.name)] = [p["metadata"]["name"] for p in live]


def _derive(app: AppSpec, deployments: Mapping[str, Mapping[str, Any]], derived: AppFaults) -> None:
    for dep in deployments.values():
        meta = dep["metadata"]
        target = (meta.get("labels") or {}).get(NEIGHBOUR_LABEL)
        ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
        if target and ready > 0:
            cpu = int((meta.get("annotations") or {}).get(NEIGHBOUR_CPU_ANNOTATION, "2000"))
            derived.cpu_stress_m[target] = derived.cpu_stress_m.get(target, 0) + cpu
    for spec in app.services:
        workload = deployments.get(spec.name)
        if not workload:
            continue
        for env in workload["spec"]["template"]["spec"]["containers"][0].get("env") or []:
            name = str(env.get("name", ""))
            if name.endswith(RETRY_BACKOFF_SUFFIX) and env.get("value") == "0":
                callee = name.removesuffix(RETRY_BACKOFF_SUFFIX).lower().replace("_", "-")
                if callee in spec.calls:
                    derived.retry_storm.add(callee)


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _ready_addresses(endpoints: Mapping[str, Any] | None) -> int:
    if not endpoints:
        return 0
    return sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])


def _port_reachable(
    service: Mapping[str, Any] | None, container: Mapping[str, Any] | None, listen: int | None
) -> bool:
    if not service or not container:
        return False
    ports = service["spec"].get("ports") or []
    if not ports:
        return False
    target = ports[0].get("targetPort", ports[0]["port"])
    if isinstance(target, str):
        named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
        if target not in named:
            return False
        target = named[target]
    return listen is not None and int(target) == listen


def _mounted_config(
    template: Mapping[str, Any],
    container: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, str]],
) -> tuple[dict[str, str], dict[str, str]]:
    """(config file data from mounted ConfigMaps, environment) of a pod template."""
    config: dict[str, str] = {}
    for volume in template["spec"].get("volumes") or []:
        ref = volume.get("configMap")
        if ref:
            config.update(configmaps.get(ref["name"], {}))
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            env.update(configmaps.get(ref["name"], {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = (item.get("valueFrom") or {}).get("configMapKeyRef") or {}
            env[item["name"]] = configmaps.get(ref.get("name", ""), {}).get(ref.get("key", ""), "")
    return config, env


def _runtime(
    ns: str,
    name: str,
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    endpoints: Mapping[str, Any] | None,
    pods: list[dict[str, Any]],
    configmaps: Mapping[str, Mapping[str, str]],
    images: ImageCatalog,
) -> ServiceRuntime:
    runtime = ServiceRuntime(namespace=ns, name=name)
    runtime.ready_endpoints = _ready_addresses(endpoints)
    if deployment is None:
        runtime.desired_replicas = runtime.ready_replicas = 0
        runtime.port_reachable = False
        return runtime
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    runtime.desired_replicas = int(deployment["spec"].get("replicas", 1))
    runtime.ready_replicas = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    runtime.image = container.get("image", "")
    runtime.command = tuple(container.get("command") or ())
    limits = (container.get("resources") or {}).get("limits") or {}
    memory = parse_memory_mib(limits.get("memory"))
    runtime.memory_limit_mib = int(memory) if memory is not None else None
    runtime.cpu_limit_m = _cpu_m(limits.get("cpu"))
    runtime.config, runtime.env = _mounted_config(template, container, configmaps)
    listen = images.launch(runtime.image, list(runtime.command) or None).listen_port
    runtime.port_reachable = _port_reachable(service, container, listen)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    for pod in live:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            runtime.restarts += int(status.get("restartCount") or 0)
            waiting = (status.get("state") or {}).get("waiting")
            if waiting and runtime.waiting_reason is None:
                runtime.waiting_reason = waiting.get("reason")
            terminated = (status.get("lastState") or {}).get("terminated")
            if terminated and runtime.last_termination_reason is None:
                runtime.last_termination_reason = terminated.get("reason")
                runtime.last_termination_message = terminated.get("message")
        if (pod.get("status") or {}).get("phase") == "Pending" and runtime.waiting_reason is None:
            runtime.waiting_reason = "Pending"
    return runtime
