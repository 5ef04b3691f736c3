"""Small helpers over the official Kubernetes client for the lab's own (admin) use.

The lab creates and restores plain object dicts (the rendered app manifests and
the shipped RBAC YAML) of many kinds; the dynamic client spares a table of
per-kind API calls. Restoring means a full replace with the baseline object, so
whatever a fault or an operator changed is undone exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


class ObjectStore:
    """Create, restore and delete objects given as dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.dynamic = dynamic.DynamicClient(api)

    def _resource(self, obj: Mapping[str, Any]) -> Any:
        return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def create(self, obj: Mapping[str, Any]) -> None:
        """Create, or restore to this definition if it already exists."""
        try:
            self._resource(obj).create(body=dict(obj), namespace=_ns(obj))
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.restore(obj)

    def create_all(self, objs: Iterable[Mapping[str, Any]]) -> None:
        for obj in objs:
            self.create(obj)

    def restore(self, obj: Mapping[str, Any], *, attempts: int = 5) -> None:
        """Replace the live object with the baseline definition (kept immutable fields).

        Controllers update status between our read and our write, so a conflict
        is retried with a fresh resourceVersion, as `kubectl replace` users do.
        """
        for attempt in range(attempts):
            try:
                self._restore_once(obj)
                return
            except ApiException as exc:
                if exc.status != 409 or attempt == attempts - 1:
                    raise

    def _restore_once(self, obj: Mapping[str, Any]) -> None:
        resource = self._resource(obj)
        name = obj["metadata"]["name"]
        try:
            live = resource.get(name=name, namespace=_ns(obj)).to_dict()
        except ApiException as exc:
            if exc.status != 404:
                raise
            resource.create(body=dict(obj), namespace=_ns(obj))
            return
        if obj["kind"] in ("PersistentVolumeClaim", "PersistentVolume"):
            return
        body = copy.deepcopy(dict(obj))
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if obj["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs"):
                if key in live["spec"]:
                    body["spec"][key] = live["spec"][key]
        resource.replace(body=body, namespace=_ns(obj))

    def delete(self, obj: Mapping[str, Any]) -> None:
        try:
            self._resource(obj).delete(name=obj["metadata"]["name"], namespace=_ns(obj))
        except ApiException as exc:
            if exc.status != 404:
                raise


def _ns(obj: Mapping[str, Any]) -> str | None:
    ns = obj.get("metadata", {}).get("namespace")
    return str(ns) if ns else None


def load_yaml_dir(directory: Path) -> list[dict[str, Any]]:
    """All objects of the YAML files in a folder (kustomization files excluded)."""
    objs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    order = {"Namespace": 0, "ServiceAccount": 1, "ClusterRole": 2, "Role": 2}
    return sorted(objs, key=lambda o: order.get(o["kind"], 3))
