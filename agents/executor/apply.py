"""Carry out one approved action through the executor identity.

Each action is one small request (a strategic-merge patch, a scale, a delete)
so the audit log shows exactly what changed. Rollback is implemented here
because apps/v1 Deployments have no rollback subresource: the previous
revision's ReplicaSet (by ``deployment.kubernetes.io/revision``) holds the old
pod template, which is written back with a JSON patch, as ``kubectl rollout
undo`` does. Blocking calls: run them in a thread.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from agents.executor.actions import (
    ActionSpec,
    DeletePod,
    PatchConfigMap,
    PatchServicePort,
    PatchServiceSelector,
    Rollback,
    RolloutRestart,
    Scale,
    SetCommand,
    SetEnv,
    SetImage,
    SetResources,
    Target,
)
from agents.tools.kube import get_items, get_json, request
from agents.tools.paths import object_path
from store.types import utcnow

REVISION = "deployment.kubernetes.io/revision"
_PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


class ApplyError(RuntimeError):
    """The action cannot be carried out as asked (no earlier revision, no such container)."""


_TARGET_KINDS = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Pod": ("/api/v1", "pods"),
    "Node": ("/api/v1", "nodes"),
}


def target_path(target: Target, subresource: str | None = None) -> str:
    """The API path of an action's target object, from validated parts (``InvalidPathPart``)."""
    prefix, plural = _TARGET_KINDS[target.kind]
    namespace = None if plural == "nodes" else target.namespace
    return object_path(
        prefix, plural, namespace=namespace, name=target.name, subresource=subresource
    )


def read_target(api: client.ApiClient, target: Target) -> dict[str, Any]:
    return get_json(api, target_path(target))


def _patch(api: client.ApiClient, path: str, body: Any, kind: str = "strategic") -> dict[str, Any]:
    raw = request(api, "PATCH", path, body=body, content_type=_PATCH_TYPES[kind])
    decoded = json.loads(raw)
    return dict(decoded) if isinstance(decoded, dict) else {}


def apply_action(api: client.ApiClient, spec: ActionSpec) -> dict[str, Any]:
    """Run ``spec``; returns what was done (for the proposal's result). Raises on API errors."""
    path = target_path(spec.target)
    if isinstance(spec, Scale):
        _patch(
            api, target_path(spec.target, "scale"), {"spec": {"replicas": spec.replicas}}, "merge"
        )
        return {"replicas": spec.replicas}
    if isinstance(spec, RolloutRestart):
        stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        annotations = {"kubectl.kubernetes.io/restartedAt": stamp}
        _patch(api, path, {"spec": {"template": {"metadata": {"annotations": annotations}}}})
        return {"restartedAt": stamp}
    if isinstance(spec, Rollback):
        return rollback(api, spec)
    if isinstance(spec, SetImage | SetCommand | SetEnv | SetResources):
        return _container_patch(api, path, spec)
    return _object_patch(api, path, spec)


def _object_patch(api: client.ApiClient, path: str, spec: ActionSpec) -> dict[str, Any]:
    if isinstance(spec, PatchServicePort):
        return _service_port(api, path, spec)
    if isinstance(spec, PatchServiceSelector):
        _patch(api, path, {"spec": {"selector": spec.selector}})
        return {"selector": spec.selector}
    if isinstance(spec, PatchConfigMap):
        _patch(api, path, {"data": spec.data}, "merge")
        return {"keys": sorted(spec.data)}
    if isinstance(spec, DeletePod):
        uid = get_json(api, path)["metadata"].get("uid")
        request(api, "DELETE", path)
        return {"deleted_uid": uid}
    raise ApplyError(f"no way to apply {spec.action}")


def _service_port(api: client.ApiClient, path: str, spec: PatchServicePort) -> dict[str, Any]:
    ports = (get_json(api, path).get("spec") or {}).get("ports") or []
    port = spec.port or (ports[0]["port"] if ports else None)
    if port is None or not any(p.get("port") == port for p in ports):
        raise ApplyError(f"service {spec.namespace}/{spec.name} has no port {port}")
    _patch(api, path, {"spec": {"ports": [{"port": port, "targetPort": spec.target_port}]}})
    return {"port": port, "targetPort": spec.target_port}


def _container_name(api: client.ApiClient, path: str, wanted: str | None) -> str:
    dep = get_json(api, path)
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    names = [str(c.get("name")) for c in containers]
    if wanted is None and names:
        return names[0]
    if wanted in names:
        return str(wanted)
    raise ApplyError(f"deployment has no container {wanted!r} (it has {', '.join(names)})")


def _container_patch(
    api: client.ApiClient, path: str, spec: SetImage | SetCommand | SetEnv | SetResources
) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": _container_name(api, path, spec.container)}
    if isinstance(spec, SetImage):
        fields["image"] = spec.image
    elif isinstance(spec, SetCommand):
        fields["command"] = spec.command
    elif isinstance(spec, SetEnv):
        fields["env"] = [
            {"name": k, "value": v} if v is not None else {"name": k, "$patch": "delete"}
            for k, v in spec.env.items()
        ]
    else:
        fields["resources"] = {
            k: v for k, v in (("limits", spec.limits), ("requests", spec.requests)) if v
        }
    _patch(api, path, {"spec": {"template": {"spec": {"containers": [fields]}}}})
    return {"container": fields["name"], "changed": sorted(k for k in fields if k != "name")}


def revision_of(obj: dict[str, Any]) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def rollback(api: client.ApiClient, spec: Rollback) -> dict[str, Any]:
    """``kubectl rollout undo``: write an earlier ReplicaSet's pod template back."""
    path = target_path(spec.target)
    dep = get_json(api, path)
    current = revision_of(dep)
    owned = [
        rs
        for rs in get_items(
            api, object_path("/apis/apps/v1", "replicasets", namespace=spec.namespace)
        )
        if any(
            o.get("uid") == dep["metadata"].get("uid")
            for o in rs["metadata"].get("ownerReferences") or []
        )
        and revision_of(rs) is not None
    ]
    if spec.to_revision is not None:
        chosen = [rs for rs in owned if revision_of(rs) == spec.to_revision]
    else:
        chosen = sorted(
            (rs for rs in owned if current is None or (revision_of(rs) or 0) < current),
            key=lambda rs: revision_of(rs) or 0,
        )[-1:]
    if not chosen:
        which = f"revision {spec.to_revision}" if spec.to_revision else "an earlier revision"
        raise ApplyError(f"deployment {spec.namespace}/{spec.name} has no {which} to roll back to")
    template = dict((chosen[0].get("spec") or {}).get("template") or {})
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop("pod-template-hash", None)
    template["metadata"] = {**(template.get("metadata") or {}), "labels": labels}
    _patch(api, path, [{"op": "replace", "path": "/spec/template", "value": template}], "json")
    return {"from_revision": current, "to_revision": revision_of(chosen[0])}
