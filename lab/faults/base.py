"""The contract every fault family meets, and the cluster operations they share.

A fault is injected, recovered and checked through the same means the real fault
would use: Kubernetes objects are patched through the API (so the agents see a
real diff, real events and real controller reactions); state that lives inside
applications (a revoked database role, netem loss) goes to ``AppFaults``; what a
node does (kill a container) goes to the kubelet simulator. A check inspects
real state, never "all pods Ready" alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from lab.apps.spec import AppSpec
from lab.errors import LabError
from lab.k8s import ObjectStore
from lab.kubelet.images import ImageCatalog
from lab.kubelet.simulator import KubeletSimulator
from lab.telemetry.state import AppFaults

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """The mitigation check's answer."""

    mitigated: bool
    detail: str


@dataclass
class FaultContext:
    """What a fault may touch: the admin API, the app, in-app state and the nodes."""

    api: client.ApiClient
    app: AppSpec
    baseline: list[dict[str, Any]]
    faults: AppFaults
    kubelet: KubeletSimulator
    images: ImageCatalog
    periodic: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Actions the lab repeats every few seconds while a fault is active (pod-kill chaos)."""

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps_api(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def ns(self) -> str:
        return self.app.namespace

    def baseline_object(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.baseline:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise LabError(f"{self.app.name} has no {kind} named {name!r}")

    def restore(self, kind: str, name: str) -> None:
        ObjectStore(self.api).restore(self.baseline_object(kind, name))

    def deployment(self, name: str) -> dict[str, Any]:
        resp = self.apps_api.read_namespaced_deployment(name, self.ns, _preload_content=False)
        return dict(json.loads(resp.data))

    def container(self, name: str) -> dict[str, Any]:
        return dict(self.deployment(name)["spec"]["template"]["spec"]["containers"][0])

    def patch_container(self, name: str, fields: Mapping[str, Any]) -> None:
        """Strategic-merge patch of the deployment's main container (merge key: name)."""
        container_name = self.container(name)["name"]
        body = {
            "spec": {"template": {"spec": {"containers": [{"name": container_name, **fields}]}}}
        }
        self.apps_api.patch_namespaced_deployment(name, self.ns, body)

    def rollout_restart(self, name: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}
                }
            }
        }
        self.apps_api.patch_namespaced_deployment(name, self.ns, body)

    def pods(self, service: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_pod(
            self.ns, label_selector=f"app.kubernetes.io/name={service}", _preload_content=False
        )
        return [
            p for p in json.loads(resp.data)["items"] if not p["metadata"].get("deletionTimestamp")
        ]

    def rollout_ready(self, name: str) -> Verdict:
        """Every desired replica is updated, ready, and no pod waits or restarts now."""
        try:
            dep = self.deployment(name)
        except ApiException as exc:
            return Verdict(False, f"deployment {name} unreadable: {exc.reason}")
        want = int(dep["spec"].get("replicas", 1))
        status = dep.get("status") or {}
        ready = int(status.get("readyReplicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        if want == 0:
            return Verdict(False, f"deployment {name} is scaled to 0")
        if ready < want or updated < want:
            return Verdict(False, f"deployment {name}: {ready}/{want} ready, {updated} updated")
        for pod in self.pods(name):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting")
                if waiting:
                    return Verdict(False, f"pod {pod['metadata']['name']} is {waiting['reason']}")
        return Verdict(True, f"deployment {name}: {ready}/{want} ready")


def all_of(*verdicts: Verdict) -> Verdict:
    failed = [v.detail for v in verdicts if not v.mitigated]
    if failed:
        return Verdict(False, "; ".join(failed))
    return Verdict(True, "; ".join(v.detail for v in verdicts))


class Fault(Protocol):
    """One fault family."""

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None: ...

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None: ...

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict: ...
