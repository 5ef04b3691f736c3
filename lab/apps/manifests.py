"""Turn an ``AppSpec`` into the Kubernetes objects the lab applies.

The lab deploys real objects to a real API server, so the controllers create
real ReplicaSets, Endpoints and scheduling events, and faults edit exactly what
they would edit in production (a Service's targetPort, a container command, a
ConfigMap). Output is plain dicts in apply order and fully deterministic, so a
redeploy produces the same objects and tests can compare them.
"""

from __future__ import annotations

from typing import Any

from lab.apps.spec import AppSpec, ServiceSpec

NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"

_KIND_PORT_NAMES = {
    "mongodb": "mongodb",
    "memcached": "memcached",
    "redis": "redis",
    "kafka": "kafka",
    "flagd": "grpc",
}
_APP_PORT_NAMES = {"social-network": "thrift"}
"""Plain application services speak gRPC unless their app says otherwise."""
_HTTP_SERVICES = {"image-provider", "email", "quote", "accounting", "fraud-detection"}
"""Astronomy-shop services that speak HTTP (or nothing) rather than gRPC."""
_DATA_DIRS = {"mongodb": "/data/db", "redis": "/data", "kafka": "/var/lib/kafka/data"}


def render(app: AppSpec) -> list[dict[str, Any]]:
    """All objects of ``app`` in apply order.

    Namespace, PersistentVolumes, claims, ConfigMaps, Deployments, then Services.
    """
    stateful = [svc for svc in app.services if svc.volume_gib > 0]
    return [
        _namespace(app),
        *(_persistent_volume(app, svc) for svc in stateful),
        *(_claim(app, svc) for svc in stateful),
        *(_configmap(app, name, data) for name, data in app.configmaps.items()),
        *(_deployment(app, svc) for svc in app.services),
        *(_service(app, svc) for svc in app.services),
    ]


def labels(app: AppSpec, svc: ServiceSpec) -> dict[str, str]:
    """The labels a service's pods carry and its Service selects."""
    return {NAME_LABEL: svc.name, PART_OF_LABEL: app.name}


def port_name(app: AppSpec, svc: ServiceSpec) -> str:
    """The container and Service port name, after the protocol spoken on it."""
    if svc.kind in _KIND_PORT_NAMES:
        return _KIND_PORT_NAMES[svc.kind]
    if svc.kind != "service" or svc.name in _HTTP_SERVICES:
        return "http"
    return _APP_PORT_NAMES.get(app.name, "grpc")


def volume_names(svc: ServiceSpec) -> tuple[str, str, str]:
    """(PersistentVolume, PersistentVolumeClaim, storageClassName) of a stateful service.

    Hotel reservation's ``mongodb-geo`` gets ``geo-pv``, ``geo-pvc`` and ``geo-storage``
    as in DeathStarBench; one storage class per volume makes each claim bind to its own
    volume without a claimRef.
    """
    short = svc.name.removeprefix("mongodb-")
    return f"{short}-pv", f"{short}-pvc", f"{short}-storage"


def _meta(app: AppSpec, name: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": app.namespace,
        "labels": {PART_OF_LABEL: app.name, **(extra or {})},
    }


def _namespace(app: AppSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": app.namespace, "labels": {PART_OF_LABEL: app.name}},
    }


def _configmap(app: AppSpec, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(app, name),
        "data": dict(data),
    }


def _persistent_volume(app: AppSpec, svc: ServiceSpec) -> dict[str, Any]:
    pv, _, storage_class = volume_names(svc)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv, "labels": labels(app, svc)},
        "spec": {
            "capacity": {"storage": f"{svc.volume_gib}Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "hostPath": {"path": f"/data/volumes/{pv}", "type": "DirectoryOrCreate"},
        },
    }


def _claim(app: AppSpec, svc: ServiceSpec) -> dict[str, Any]:
    _, pvc, storage_class = volume_names(svc)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(app, pvc, {NAME_LABEL: svc.name}),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": f"{svc.volume_gib}Gi"}},
        },
    }


def _resources(svc: ServiceSpec) -> dict[str, Any]:
    return {
        "requests": {"cpu": f"{svc.cpu_request_m}m", "memory": f"{svc.memory_request_mib}Mi"},
        "limits": {"cpu": f"{svc.cpu_limit_m}m", "memory": f"{svc.memory_limit_mib}Mi"},
    }


def _probe(svc: ServiceSpec, *, initial_delay_s: int, period_s: int) -> dict[str, Any]:
    return {
        "tcpSocket": {"port": svc.port},
        "initialDelaySeconds": initial_delay_s,
        "periodSeconds": period_s,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }


def _volumes(svc: ServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container volume mounts) for the ConfigMaps and the data volume."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for configmap, path in svc.config_mounts:
        volumes.append({"name": configmap, "configMap": {"name": configmap}})
        mounts.append({"name": configmap, "mountPath": path, "readOnly": True})
    if svc.volume_gib > 0:
        claim = volume_names(svc)[1]
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": "data", "mountPath": _DATA_DIRS.get(svc.kind, "/data")})
    return volumes, mounts


def _container(app: AppSpec, svc: ServiceSpec, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": svc.name,
        "image": svc.image,
        "ports": [{"name": port_name(app, svc), "containerPort": svc.port, "protocol": "TCP"}],
        "env": [{"name": key, "value": value} for key, value in svc.env],
        "resources": _resources(svc),
        "readinessProbe": _probe(svc, initial_delay_s=5, period_s=10),
        "livenessProbe": _probe(svc, initial_delay_s=15, period_s=20),
        "volumeMounts": mounts,
    }
    if svc.command:
        container["command"] = list(svc.command)
    return container


def _deployment(app: AppSpec, svc: ServiceSpec) -> dict[str, Any]:
    pod_labels = labels(app, svc)
    volumes, mounts = _volumes(svc)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(app, svc.name, pod_labels),
        "spec": {
            "replicas": svc.replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {"containers": [_container(app, svc, mounts)], "volumes": volumes},
            },
        },
    }


def _service(app: AppSpec, svc: ServiceSpec) -> dict[str, Any]:
    name = port_name(app, svc)
    port = {"name": name, "port": svc.port, "targetPort": svc.port, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, svc.name, labels(app, svc)),
        "spec": {"type": "ClusterIP", "selector": labels(app, svc), "ports": [port]},
    }
