"""Read back what the observer identity may do, so "read-only" is checked, not assumed.

The Probe's parser refuses writes, but the identity it runs as is the last line:
an admin kubeconfig configured as the observer would turn any parser hole into a
write or a Secret read. So the identity's permissions are asked of the API server
itself (SelfSubjectAccessReview: the server answers for the caller, and any
authenticated user may ask) for every capability an observer must not have.

    >>> problems = forbidden_capabilities(api)
    >>> [str(p) for p in problems]
    ['can delete pods in namespace default', 'can get secrets cluster-wide']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from agents.tools.kube import get_items, post_json
from agents.tools.paths import ACCESS_REVIEW_PATH, RULES_REVIEW_PATH, object_path

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Capability:
    """One thing an observer must not be able to do."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    namespaced: bool = True

    def describe(self, namespace: str) -> str:
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        return f"can {self.verb} {what} {where}"


@dataclass(frozen=True, slots=True)
class Violation:
    capability: Capability
    namespace: str

    def __str__(self) -> str:
        return self.capability.describe(self.namespace)


_WRITES = ("create", "update", "patch", "delete")
# Most alarming first: messages name the first few an identity has.
FORBIDDEN: tuple[Capability, ...] = (
    Capability("get", "secrets"),
    Capability("list", "secrets"),
    Capability("watch", "secrets"),
    Capability("create", "pods", subresource="exec"),
    Capability("create", "pods", subresource="attach"),
    Capability("create", "pods", subresource="portforward"),
    *(Capability(verb, "pods") for verb in _WRITES),
    *(Capability(verb, "deployments", "apps") for verb in _WRITES),
    *(Capability(verb, "services") for verb in ("create", "patch", "delete")),
    *(Capability(verb, "configmaps") for verb in ("create", "patch", "delete")),
    Capability("patch", "statefulsets", "apps"),
    Capability("patch", "deployments", "apps", subresource="scale"),
    Capability("get", "services", subresource="proxy"),
    Capability("create", "serviceaccounts", subresource="token"),
    Capability("impersonate", "serviceaccounts"),
    Capability("delete", "namespaces", namespaced=False),
    Capability("delete", "nodes", namespaced=False),
    Capability("delete", "persistentvolumes", namespaced=False),
    Capability("get", "nodes", subresource="proxy", namespaced=False),
    Capability("create", "clusterrolebindings", "rbac.authorization.k8s.io", namespaced=False),
    Capability("escalate", "clusterroles", "rbac.authorization.k8s.io", namespaced=False),
    Capability("bind", "clusterroles", "rbac.authorization.k8s.io", namespaced=False),
    Capability("impersonate", "users", namespaced=False),
)


class Unverifiable(Exception):  # noqa: N818
    """The identity cannot list namespaces, so its rights in each one cannot be read back."""


def allowed(api: client.ApiClient, capability: Capability, namespace: str, name: str = "") -> bool:
    """Whether the API server says the caller may do `capability` in `namespace` ("" = all).

    `name` narrows the question to one object (`kubectl auth can-i get pods/geo-1`).
    """
    attributes = {
        "verb": capability.verb,
        "resource": capability.resource,
        "group": capability.group,
        "subresource": capability.subresource,
        "namespace": namespace,
        "name": name,
    }
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    status = post_json(api, ACCESS_REVIEW_PATH, review).get("status") or {}
    return bool(status.get("allowed"))


def forbidden_capabilities(
    api: client.ApiClient, *, namespaces: Sequence[str] | None = None
) -> list[Violation]:
    """Every forbidden capability the identity behind `api` has; empty for a true observer.

    A RoleBinding grants per namespace, so namespaced capabilities are checked in
    every namespace (`namespaces`, or all the identity can list): one
    SelfSubjectRulesReview per namespace returns the rules of every binding that
    applies there, matched here; where the server says its answer is incomplete,
    each capability is asked with a SelfSubjectAccessReview instead. Cluster-scoped
    capabilities are asked once. Raises the client's `ApiException` (or a
    connection error) when the server cannot answer.
    """
    violations: list[Violation] = []
    namespaced = [c for c in FORBIDDEN if c.namespaced]
    found: set[Capability] = set()
    for namespace in namespaces if namespaces is not None else _namespaces(api):
        rules = _rules(api, namespace)
        for capability in namespaced:
            if capability in found:
                continue  # one namespace is enough to say this identity has it
            granted = (
                allowed(api, capability, namespace)
                if rules is None
                else any(_grants(rule, capability) for rule in rules)
            )
            if granted:
                found.add(capability)
                violations.append(Violation(capability, namespace))
    for capability in FORBIDDEN:
        if not capability.namespaced and allowed(api, capability, ""):
            violations.append(Violation(capability, ""))
    return violations


def _namespaces(api: client.ApiClient) -> list[str]:
    try:
        items = get_items(api, object_path("/api/v1", "namespaces"))
    except ApiException as exc:
        if exc.status != 403:
            raise
        raise Unverifiable(
            "it cannot list namespaces, so what it may do in each one cannot be read back; "
            "an observer reads cluster-wide (manifests/rbac/observer.yaml)"
        ) from None
    return sorted(str((item.get("metadata") or {}).get("name", "")) for item in items)


def _rules(api: client.ApiClient, namespace: str) -> list[dict[str, Any]] | None:
    """The resource rules that apply to the caller in `namespace`; None if incomplete."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    status = post_json(api, RULES_REVIEW_PATH, review).get("status") or {}
    if status.get("incomplete"):
        return None
    return list(status.get("resourceRules") or [])


def _grants(rule: dict[str, Any], capability: Capability) -> bool:
    """Whether one RBAC resource rule allows `capability` (wildcards included)."""
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    wanted = capability.resource + (f"/{capability.subresource}" if capability.subresource else "")
    return (
        ("*" in verbs or capability.verb in verbs)
        and ("*" in groups or capability.group in groups)
        and ("*" in resources or wanted in resources or f"{capability.resource}/*" in resources)
        and not names  # a rule limited to named objects grants no general capability
    )


class UnsafeObserver(Exception):  # noqa: N818
    """The identity configured as the observer can do what an observer must not."""


def require_read_only(
    api: client.ApiClient,
    *,
    source: str,
    allow_writable: bool = False,
    namespaces: Sequence[str] | None = None,
) -> list[Violation]:
    """Refuse an observer identity that can write, exec or read Secrets (the start-up check).

    Returns the violations found; raises `UnsafeObserver` naming them unless
    `allow_writable` is set, in which case every call logs a warning, so an
    override is never silent.
    """
    try:
        violations = forbidden_capabilities(api, namespaces=namespaces)
    except Unverifiable as exc:
        if allow_writable:
            _log.warning("UNSAFE: the observer identity of %s is unchecked: %s", source, exc)
            return []
        raise UnsafeObserver(
            f"the observer identity of {source} cannot be checked: {exc} "
            "(AOI_ALLOW_WRITABLE_OBSERVER=true starts anyway, unsafely)"
        ) from None
    if not violations:
        return []
    shown = ", ".join(map(str, violations[:4])) + (" ..." if len(violations) > 4 else "")
    if allow_writable:
        _log.warning(
            "UNSAFE: the observer identity of %s is not read-only (%s); starting anyway "
            "because AOI_ALLOW_WRITABLE_OBSERVER is set",
            source,
            shown,
        )
        return violations
    raise UnsafeObserver(
        f"the observer identity of {source} is not read-only ({len(violations)} forbidden "
        f"capabilities: {shown}); give it the kubeconfig of the ServiceAccount from "
        "manifests/rbac/observer.yaml, never an admin's (AOI_ALLOW_WRITABLE_OBSERVER=true "
        "starts anyway, unsafely)"
    )
