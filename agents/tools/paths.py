"""Kubernetes API paths built from validated parts only, and checked again before they leave.

A name or namespace the model wrote must never become part of a URL as written:
the HTTP client resolves ``..`` and drops everything after ``#`` or ``?``, so
``cm/x/../../secrets/NAME`` would read a Secret and ``-n 'x/../..'`` would list
cluster-wide. Each part is therefore validated as the apiserver validates it
(RFC 1123 labels and subdomains; known API groups, resources and subresources
only) and quoted as one path segment. ``check_path`` re-parses a finished path
against the same grammar, the last line before a request is sent.

    >>> object_path("/api/v1", "pods", namespace="shop", name="geo-1", subresource="log")
    '/api/v1/namespaces/shop/pods/geo-1/log'
    >>> object_path("/api/v1", "configmaps", namespace="default", name="x/../../secrets/db")
    Traceback (most recent call last):
    ...
    agents.tools.paths.InvalidPathPart: configmap name 'x/../../secrets/db' is not valid: ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_REPR_MAX = 80

_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_LABEL.pattern}(?:\.{_LABEL.pattern})*")
_PLURAL = re.compile(r"[a-z][a-z0-9]*")

_WORKLOADS = frozenset({"deployments", "replicasets", "statefulsets", "daemonsets"})
_CORE = frozenset(
    {
        "pods",
        "services",
        "endpoints",
        "events",
        "configmaps",
        "persistentvolumeclaims",
        "serviceaccounts",
        "resourcequotas",
        "limitranges",
        "nodes",
        "namespaces",
        "persistentvolumes",
    }
)
_REVIEWS = frozenset({"selfsubjectaccessreviews", "selfsubjectrulesreviews"})

API_RESOURCES: dict[str, frozenset[str]] = {
    "/api/v1": _CORE,
    "/apis/apps/v1": _WORKLOADS,
    "/apis/batch/v1": frozenset({"jobs", "cronjobs"}),
    "/apis/batch/v1beta1": frozenset({"cronjobs"}),
    "/apis/autoscaling/v1": frozenset({"horizontalpodautoscalers"}),
    "/apis/autoscaling/v2": frozenset({"horizontalpodautoscalers"}),
    "/apis/networking.k8s.io/v1": frozenset({"ingresses", "networkpolicies"}),
    "/apis/storage.k8s.io/v1": frozenset({"storageclasses"}),
    "/apis/authorization.k8s.io/v1": _REVIEWS,
}
"""Every API prefix the product talks to, with the resources it may name under it.

Secrets are absent on purpose (nothing of ours reads them, whatever the identity
could do); adding a resource here is a reviewed change, not a side effect of a
new tool.
"""

API_PREFIXES = frozenset(API_RESOURCES)

CLUSTER_SCOPED = frozenset(
    {"nodes", "namespaces", "persistentvolumes", "storageclasses", *_REVIEWS}
)

SUBRESOURCES = frozenset({"log", "status", "scale"})
"""Subresources the product uses: ``pods/log`` (Probe, analyzers), ``deployments/scale``
and ``status`` (Executor). Never ``exec``, ``attach``, ``portforward``, ``proxy``,
``eviction`` or ``token``."""

ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
RULES_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
REVIEW_PATHS = frozenset({ACCESS_REVIEW_PATH, RULES_REVIEW_PATH})
"""The only paths a POST may go to: reviews ask the apiserver a question and change nothing."""

_SUBRESOURCE_OF: dict[str, frozenset[str]] = {
    "pods": frozenset({"log", "status"}),
    "deployments": frozenset({"scale", "status"}),
    "replicasets": frozenset({"scale", "status"}),
    "statefulsets": frozenset({"scale", "status"}),
    "daemonsets": frozenset({"status"}),
    "nodes": frozenset({"status"}),
    "services": frozenset({"status"}),
}

# A service's name is an RFC 1035 label (it becomes a DNS name); a namespace's
# an RFC 1123 label; everything else the Probe names is an RFC 1123 subdomain.
_LABEL_NAMED = frozenset({"namespaces", "services"})


class InvalidPathPart(ValueError):  # noqa: N818 (the name callers import)
    """A name, namespace, resource or subresource that may not become part of a URL.

    ``part`` says which one (``namespace``, ``pod name``), ``value`` is what was
    given and ``rule`` what it must be.
    """

    def __init__(self, part: str, value: object, rule: str) -> None:
        shown = repr(value)
        if len(shown) > _REPR_MAX:
            shown = shown[: _REPR_MAX - 3] + "..."
        super().__init__(f"{part} {shown} is not valid: {rule}")
        self.part = part
        self.value = value
        self.rule = rule


class UnsafePathError(ValueError):
    """A finished path outside the grammar of paths this product sends; nothing was sent."""


def dns_label(value: str, *, what: str) -> str:
    """``value`` when it is an RFC 1123 label (namespaces, services); else ``InvalidPathPart``."""
    rule = (
        f"a DNS-1123 label: at most {DNS_LABEL_MAX} lowercase letters, digits or '-', "
        "starting and ending with a letter or digit"
    )
    if not isinstance(value, str) or len(value) > DNS_LABEL_MAX or not _LABEL.fullmatch(value):
        raise InvalidPathPart(what, value, rule)
    return value


def dns_subdomain(value: str, *, what: str) -> str:
    """``value`` when it is an RFC 1123 subdomain (most object names); else ``InvalidPathPart``."""
    rule = (
        f"a DNS-1123 subdomain: at most {DNS_SUBDOMAIN_MAX} characters, dot-separated "
        "labels of lowercase letters, digits or '-'"
    )
    if (
        not isinstance(value, str)
        or len(value) > DNS_SUBDOMAIN_MAX
        or not _SUBDOMAIN.fullmatch(value)
    ):
        raise InvalidPathPart(what, value, rule)
    return value


def object_name(plural: str, value: str) -> str:
    """``value`` validated as the name of a ``plural`` object (``services`` → label)."""
    what = f"{_singular(plural)} name"
    if plural in _LABEL_NAMED:
        return dns_label(value, what=what)
    return dns_subdomain(value, what=what)


def api_prefix(value: str) -> str:
    if value not in API_PREFIXES:
        raise InvalidPathPart("API prefix", value, f"one of {', '.join(sorted(API_PREFIXES))}")
    return value


def resource_plural(prefix: str, value: str) -> str:
    """``value`` when it is a resource the product may name under ``prefix``."""
    if not isinstance(value, str) or not _PLURAL.fullmatch(value):
        raise InvalidPathPart("resource", value, "a lowercase plural such as 'pods'")
    known = API_RESOURCES[api_prefix(prefix)]
    if value not in known:
        raise InvalidPathPart(
            "resource", value, f"under {prefix} one of {', '.join(sorted(known))}"
        )
    return value


def subresource_name(plural: str, value: str, *, allowed: frozenset[str] | None = None) -> str:
    """``value`` when ``plural`` has it and it is in ``allowed`` (default ``SUBRESOURCES``)."""
    permitted = (allowed if allowed is not None else SUBRESOURCES) & _SUBRESOURCE_OF.get(
        plural, frozenset()
    )
    if value not in permitted:
        rule = (
            f"for {plural} one of {', '.join(sorted(permitted))}"
            if permitted
            else f"{plural} has no subresource the product may use"
        )
        raise InvalidPathPart("subresource", value, rule)
    return value


def object_path(
    prefix: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
    allowed_subresources: frozenset[str] | None = None,
) -> str:
    """The API path of a collection or object, from validated, quoted parts.

    Usage::

        object_path("/apis/apps/v1", "deployments", namespace="shop")
        object_path("/api/v1", "nodes", name="node-1")
        object_path("/api/v1", "pods", namespace="shop", name="geo-1", subresource="log")

    ``namespace=None`` on a namespaced resource means all namespaces; a
    namespace on a cluster-scoped resource is refused, as is a subresource
    without a name. Raises ``InvalidPathPart`` naming the part that is wrong.
    """
    parts = [api_prefix(prefix)]
    resource_plural(prefix, plural)
    if namespace is not None:
        if plural in CLUSTER_SCOPED:
            raise InvalidPathPart("namespace", namespace, f"{plural} are cluster-scoped")
        parts += ["namespaces", _segment(dns_label(namespace, what="namespace"))]
    parts.append(plural)
    if name is not None:
        parts.append(_segment(object_name(plural, name)))
    if subresource is not None:
        if name is None:
            raise InvalidPathPart("subresource", subresource, "needs an object name")
        parts.append(_segment(subresource_name(plural, subresource, allowed=allowed_subresources)))
    return "/".join(parts)


def _segment(part: str) -> str:
    # Validated parts quote to themselves; quoting anyway keeps one segment one
    # segment should a rule above ever be loosened.
    return quote(part, safe="")


def _singular(plural: str) -> str:
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("s", "")):
        if plural.endswith(suffix):
            return plural[: -len(suffix)] + replacement
    return plural


@dataclass(frozen=True, slots=True)
class ParsedPath:
    """A path split back into its parts by ``check_path``."""

    prefix: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def check_path(path: str) -> ParsedPath:
    """Parse ``path`` with the grammar ``object_path`` produces, or raise ``UnsafePathError``.

    The last line before a request leaves: whatever built the path, only
    ``PREFIX[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]`` with known parts and
    plain segments (``[a-z0-9.-]``, no ``..``, no escapes, no ``?`` or ``#``) passes.
    """
    if not isinstance(path, str) or len(path) > 1024:
        raise UnsafePathError(f"path {_short(path)} is not a plain API path")
    if not re.fullmatch(r"(?:/[a-z0-9.-]+)+", path) or ".." in path:
        raise UnsafePathError(
            f"path {_short(path)} has characters outside [a-z0-9.-] or a '..': "
            "build paths with agents.tools.paths.object_path"
        )
    try:
        return _parse(path)
    except InvalidPathPart as exc:
        raise UnsafePathError(f"path {_short(path)} refused: {exc}") from None


def _parse(path: str) -> ParsedPath:
    prefix = next((p for p in sorted(API_PREFIXES, key=len, reverse=True)
                   if path == p or path.startswith(p + "/")), None)  # fmt: skip
    if prefix is None:
        raise InvalidPathPart("API prefix", path, f"one of {', '.join(sorted(API_PREFIXES))}")
    rest = path[len(prefix) + 1 :].split("/") if path != prefix else []
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces" and rest[1] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise InvalidPathPart("path", path, "PREFIX[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]")
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    rebuilt = object_path(prefix, plural, namespace=namespace, name=name, subresource=subresource)
    if rebuilt != path:
        raise InvalidPathPart("path", path, f"expected {rebuilt!r}")
    return ParsedPath(prefix, plural, namespace, name, subresource)


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _REPR_MAX else shown[: _REPR_MAX - 3] + "..."
