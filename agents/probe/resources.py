"""The kinds the Probe may read, with kubectl's names and where the API serves them.

kubectl accepts ``po``, ``pod`` and ``pods`` alike; models type all of them.
One table maps every accepted spelling to the API path, so parsing, the
allowlist and execution agree on what a resource is. Secrets are absent on
purpose: the Probe refuses them by name before asking the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.tools.paths import object_path


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    prefix: str
    """``/api/v1`` or ``/apis/<group>/<version>``."""
    namespaced: bool = True
    aliases: tuple[str, ...] = ()

    def path(
        self, namespace: str | None, name: str | None = None, *, subresource: str | None = None
    ) -> str:
        """The validated API path; ``namespace`` is ignored for cluster-scoped kinds.

        Raises ``agents.tools.paths.InvalidPathPart`` for a name or namespace the
        apiserver would not accept, before anything is sent.
        """
        return object_path(
            self.prefix,
            self.plural,
            namespace=namespace if self.namespaced and namespace else None,
            name=name or None,
            subresource=subresource,
        )


_CORE = "/api/v1"
_APPS = "/apis/apps/v1"

RESOURCES: tuple[Resource, ...] = (
    Resource("pods", "Pod", _CORE, aliases=("po", "pod")),
    Resource("services", "Service", _CORE, aliases=("svc", "service")),
    Resource("endpoints", "Endpoints", _CORE, aliases=("ep", "endpoint")),
    Resource("events", "Event", _CORE, aliases=("ev", "event")),
    Resource("configmaps", "ConfigMap", _CORE, aliases=("cm", "configmap")),
    Resource(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        _CORE,
        aliases=("pvc", "pvcs", "persistentvolumeclaim"),
    ),
    Resource("serviceaccounts", "ServiceAccount", _CORE, aliases=("sa", "serviceaccount")),
    Resource("resourcequotas", "ResourceQuota", _CORE, aliases=("quota", "resourcequota")),
    Resource("limitranges", "LimitRange", _CORE, aliases=("limits", "limitrange")),
    Resource("nodes", "Node", _CORE, namespaced=False, aliases=("no", "node")),
    Resource("namespaces", "Namespace", _CORE, namespaced=False, aliases=("ns", "namespace")),
    Resource(
        "persistentvolumes",
        "PersistentVolume",
        _CORE,
        namespaced=False,
        aliases=("pv", "pvs", "persistentvolume"),
    ),
    Resource("deployments", "Deployment", _APPS, aliases=("deploy", "deployment")),
    Resource("replicasets", "ReplicaSet", _APPS, aliases=("rs", "replicaset")),
    Resource("statefulsets", "StatefulSet", _APPS, aliases=("sts", "statefulset")),
    Resource("daemonsets", "DaemonSet", _APPS, aliases=("ds", "daemonset")),
    Resource("jobs", "Job", "/apis/batch/v1", aliases=("job",)),
    Resource("cronjobs", "CronJob", "/apis/batch/v1", aliases=("cj", "cronjob")),
    Resource(
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        "/apis/autoscaling/v1",
        aliases=("hpa", "horizontalpodautoscaler"),
    ),
    Resource("ingresses", "Ingress", "/apis/networking.k8s.io/v1", aliases=("ing", "ingress")),
    Resource(
        "networkpolicies",
        "NetworkPolicy",
        "/apis/networking.k8s.io/v1",
        aliases=("netpol", "networkpolicy"),
    ),
    Resource(
        "storageclasses",
        "StorageClass",
        "/apis/storage.k8s.io/v1",
        namespaced=False,
        aliases=("sc", "storageclass"),
    ),
)

FORBIDDEN_RESOURCES = frozenset({"secret", "secrets"})
"""Never read, whatever the identity could do: secrets would reach Slack, the store or a model."""

_BY_NAME = {name: r for r in RESOURCES for name in (r.plural, *r.aliases)}
_BY_PLURAL = {r.plural: r for r in RESOURCES}

PODS = _BY_PLURAL["pods"]
DEPLOYMENTS = _BY_PLURAL["deployments"]
REPLICASETS = _BY_PLURAL["replicasets"]
ENDPOINTS = _BY_PLURAL["endpoints"]
EVENTS = _BY_PLURAL["events"]


def lookup(name: str) -> Resource | None:
    """The resource for any kubectl spelling (``deploy``, ``deployments.apps``), or None."""
    key = name.lower().split(".", 1)[0]
    return _BY_NAME.get(key)


def known_names() -> list[str]:
    return sorted(_BY_NAME)
