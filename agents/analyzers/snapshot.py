"""One consistent read of what the analyzers look at, as the observer identity.

Every analyzer needs the same objects (pods, Deployments, ReplicaSets,
Services, Endpoints, events, claims, nodes); listing each kind once per
namespace and sharing the result keeps a full analysis to a dozen API calls
and lets all analyzers judge the same moment. The helpers answer the
questions they all ask: which service is this pod, which pods does this
Service select, is that dependency healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from agents.tools.kube import get_items
from agents.tools.paths import object_path

Obj = dict[str, Any]
NAME_LABELS = ("app.kubernetes.io/name", "app", "k8s-app", "name")
_CORE, _APPS = "/api/v1", "/apis/apps/v1"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "aoi-system"})


@dataclass
class ClusterWide:
    nodes: list[Obj] = field(default_factory=list)
    volumes: list[Obj] = field(default_factory=list)
    storage_classes: list[Obj] = field(default_factory=list)
    corefile: str = ""


@dataclass
class Snapshot:
    """The objects of one namespace plus the cluster-wide ones, read at ``now``."""

    namespace: str
    pods: list[Obj] = field(default_factory=list)
    deployments: list[Obj] = field(default_factory=list)
    replicasets: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    endpoints: list[Obj] = field(default_factory=list)
    events: list[Obj] = field(default_factory=list)
    claims: list[Obj] = field(default_factory=list)
    configmaps: list[Obj] = field(default_factory=list)
    cluster: ClusterWide = field(default_factory=ClusterWide)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    recent: timedelta | None = None
    """The recent window (``agents.analyzers.recency``): a symptom last seen before it has
    stopped. None: no such judgement (the window is itself short)."""
    window: timedelta | None = None
    """The long window the analysis reads (set beside ``recent``)."""

    # -- names ---------------------------------------------------------------------------

    def component_of(self, obj: Obj) -> str:
        """The service name an object belongs to (label first, then its controller)."""
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        for key in NAME_LABELS:
            if labels.get(key):
                return str(labels[key])
        dep = self.deployment_of(obj) if obj.get("kind", "Pod") == "Pod" else None
        return str((dep or obj)["metadata"]["name"])

    def deployment_of(self, pod: Obj) -> Obj | None:
        owners = (pod.get("metadata") or {}).get("ownerReferences") or []
        rs_name = next((o["name"] for o in owners if o.get("kind") == "ReplicaSet"), None)
        rs = self.by_name(self.replicasets, rs_name)
        if rs is None:
            return None
        rs_owners = rs["metadata"].get("ownerReferences") or []
        dep_name = next((o["name"] for o in rs_owners if o.get("kind") == "Deployment"), None)
        return self.by_name(self.deployments, dep_name)

    @staticmethod
    def by_name(objs: list[Obj], name: str | None) -> Obj | None:
        if name is None:
            return None
        return next((o for o in objs if o["metadata"]["name"] == name), None)

    @property
    def service_names(self) -> set[str]:
        return {s["metadata"]["name"] for s in self.services}

    # -- relations -----------------------------------------------------------------------

    def pods_of(self, dep: Obj) -> list[Obj]:
        """Live pods owned (through a ReplicaSet) by this Deployment."""
        uid = dep["metadata"].get("uid")
        rs_names = {
            rs["metadata"]["name"]
            for rs in self.replicasets
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        }
        return [p for p in self.pods if _owner_name(p) in rs_names and not _deleting(p)]

    def selected_pods(self, selector: Mapping[str, str]) -> list[Obj]:
        return [
            p
            for p in self.pods
            if selector
            and _matches(selector, p["metadata"].get("labels") or {})
            and not _deleting(p)
        ]

    def deployments_matching(self, selector: Mapping[str, str]) -> list[Obj]:
        """Deployments whose pod template carries the selector's labels."""
        found = []
        for dep in self.deployments:
            labels = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {})
            if selector and _matches(selector, labels.get("labels") or {}):
                found.append(dep)
        return found

    def events_for(self, kind: str, name: str) -> list[Obj]:
        return [
            e
            for e in self.events
            if (e.get("involvedObject") or {}).get("kind") == kind
            and (e.get("involvedObject") or {}).get("name") == name
        ]

    def ready_endpoints(self, service: str) -> int:
        eps = self.by_name(self.endpoints, service)
        if eps is None:
            return 0
        return sum(len(s.get("addresses") or []) for s in eps.get("subsets") or [])

    def service_healthy(self, name: str) -> bool:
        """A Service that exists and has a ready endpoint (its port may still be wrong)."""
        return name in self.service_names and self.ready_endpoints(name) > 0

    def deployment_ready(self, name: str) -> bool:
        dep = self.by_name(self.deployments, name)
        if dep is None:
            return False
        want = int((dep.get("spec") or {}).get("replicas", 1))
        return want > 0 and int((dep.get("status") or {}).get("readyReplicas") or 0) >= want


def _owner_name(obj: Obj) -> str | None:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((str(o["name"]) for o in owners), None)


def _deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- reading ------------------------------------------------------------------------------


def read_cluster(api: client.ApiClient) -> ClusterWide:
    """Nodes, volumes, storage classes and the CoreDNS Corefile (each optional)."""
    wide = ClusterWide(
        nodes=_optional(api, object_path(_CORE, "nodes")),
        volumes=_optional(api, object_path(_CORE, "persistentvolumes")),
        storage_classes=_optional(api, object_path("/apis/storage.k8s.io/v1", "storageclasses")),
    )
    coredns = _optional(
        api,
        object_path(_CORE, "configmaps", namespace="kube-system"),
        {"fieldSelector": "metadata.name=coredns"},
    )
    if coredns:
        wide.corefile = str((coredns[0].get("data") or {}).get("Corefile", ""))
    return wide


def _optional(
    api: client.ApiClient, path: str, query: Mapping[str, str] | None = None
) -> list[Obj]:
    """Cluster-wide context improves findings but an identity may lack it: then skip it."""
    try:
        return get_items(api, path, query)
    except Exception:
        return []


def read_namespace(api: client.ApiClient, namespace: str, cluster: ClusterWide) -> Snapshot:
    """Every namespaced kind the analyzers use, one list call each."""

    def listed(prefix: str, plural: str) -> list[Obj]:
        return get_items(api, object_path(prefix, plural, namespace=namespace))

    snap = Snapshot(
        namespace=namespace,
        pods=listed(_CORE, "pods"),
        deployments=listed(_APPS, "deployments"),
        replicasets=listed(_APPS, "replicasets"),
        services=listed(_CORE, "services"),
        endpoints=listed(_CORE, "endpoints"),
        events=listed(_CORE, "events"),
        claims=listed(_CORE, "persistentvolumeclaims"),
        configmaps=listed(_CORE, "configmaps"),
        cluster=cluster,
    )
    for kind, items in (("Pod", snap.pods), ("Deployment", snap.deployments)):
        for item in items:
            item.setdefault("kind", kind)
    return snap


def app_namespaces(api: client.ApiClient) -> list[str]:
    """Namespaces worth analysing when none are named: all but the system ones."""
    names = [n["metadata"]["name"] for n in get_items(api, object_path(_CORE, "namespaces"))]
    return [n for n in names if n not in SYSTEM_NAMESPACES and n != "default"]
