"""API paths from validated parts only, and the guard every request passes before it leaves."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agents.tools.kube import RequestRefusedError, guard
from agents.tools.paths import (
    ACCESS_REVIEW_PATH,
    API_PREFIXES,
    API_RESOURCES,
    CLUSTER_SCOPED,
    InvalidPathPart,
    UnsafePathError,
    check_path,
    dns_label,
    dns_subdomain,
    object_path,
)

SEGMENT = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
ATTACKS = [
    "x/../../secrets/db",
    "../secrets",
    "..",
    ".",
    "default/../..",
    "kube-system/secrets#",
    "x#",
    "x?watch=true",
    "%2e%2e",
    "x%2fy",
    "%2E%2E%2Fsecrets",
    "x:80",
    "x/proxy",
    "x/exec",
    "x\x00y",
    "x\ny",
    "x y",
    "x\\..\\secrets",
    "\u0455ecrets",  # Cyrillic dze
    "\uff53ecrets",  # fullwidth
    "geo\u200b",  # zero-width space
    "Geo",
    "-geo",
    "geo-",
    "a" * 64,
    "",
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attack_values_are_refused_as_namespaces_and_names(value: str) -> None:
    with pytest.raises(InvalidPathPart) as info:
        object_path("/api/v1", "configmaps", namespace=value)
    assert info.value.part == "namespace"
    assert "DNS-1123 label" in str(info.value)
    with pytest.raises(InvalidPathPart):
        object_path("/api/v1", "services", namespace="default", name=value)


@pytest.mark.parametrize("value", [v for v in ATTACKS if v != "a" * 64])
def test_attack_values_are_refused_as_object_names(value: str) -> None:
    with pytest.raises(InvalidPathPart) as info:
        object_path("/api/v1", "pods", namespace="default", name=value)
    assert info.value.part == "pod name"


def test_the_message_names_the_part_the_value_and_the_rule() -> None:
    with pytest.raises(InvalidPathPart) as info:
        object_path(
            "/api/v1", "configmaps", namespace="default", name="x/../../secrets/" + "y" * 200
        )
    message = str(info.value)
    assert message.startswith("configmap name 'x/../../secrets/")
    assert "..." in message
    assert len(message) < 300
    assert "DNS-1123 subdomain" in message


def test_valid_parts_build_the_expected_paths() -> None:
    assert object_path("/api/v1", "pods", namespace="shop", name="geo-1", subresource="log") == (
        "/api/v1/namespaces/shop/pods/geo-1/log"
    )
    assert object_path("/apis/apps/v1", "deployments") == "/apis/apps/v1/deployments"
    assert object_path("/api/v1", "nodes", name="node-1.lab") == "/api/v1/nodes/node-1.lab"
    assert dns_subdomain("a" * 63 + ".b", what="x") == "a" * 63 + ".b"
    assert dns_label("a" * 63, what="x") == "a" * 63
    with pytest.raises(InvalidPathPart):
        dns_subdomain("a" * 254, what="pod name")


@pytest.mark.parametrize(
    ("prefix", "plural", "kwargs"),
    [
        ("/api/v1", "secrets", {"namespace": "default"}),
        ("/api/v1", "secrets", {}),
        ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", {}),
        ("/api/v1/../v1", "pods", {}),
        ("/api/v2", "pods", {}),
        ("/api/v1", "Pods", {}),
        ("/api/v1", "pods/exec", {}),
        ("/api/v1", "nodes", {"name": "n", "subresource": "proxy"}),
        ("/api/v1", "services", {"namespace": "d", "name": "x", "subresource": "proxy"}),
        ("/api/v1", "pods", {"namespace": "d", "name": "x", "subresource": "exec"}),
        ("/api/v1", "pods", {"namespace": "d", "name": "x", "subresource": "attach"}),
        ("/api/v1", "pods", {"namespace": "d", "name": "x", "subresource": "portforward"}),
        ("/api/v1", "pods", {"namespace": "d", "name": "x", "subresource": "eviction"}),
        ("/api/v1", "serviceaccounts", {"namespace": "d", "name": "x", "subresource": "token"}),
        ("/api/v1", "pods", {"namespace": "d", "subresource": "log"}),
        ("/api/v1", "nodes", {"namespace": "default"}),
        ("/apis/apps/v1", "pods", {}),
    ],
)
def test_unknown_prefixes_resources_and_subresources_are_refused(
    prefix: str, plural: str, kwargs: dict[str, str]
) -> None:
    with pytest.raises(InvalidPathPart):
        object_path(
            prefix,
            plural,
            namespace=kwargs.get("namespace"),
            name=kwargs.get("name"),
            subresource=kwargs.get("subresource"),
        )


def test_a_caller_can_narrow_the_subresource_allowlist() -> None:
    with pytest.raises(InvalidPathPart):
        object_path(
            "/apis/apps/v1",
            "deployments",
            namespace="d",
            name="x",
            subresource="scale",
            allowed_subresources=frozenset({"log"}),
        )


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/default/configmaps/x/../../secrets/db",
        "/api/v1/namespaces/default/secrets/db",
        "/api/v1/secrets",
        "/api/v1/namespaces/default/../../secrets",
        "/api/v1/namespaces/kube-system/secrets#/pods",
        "/api/v1/namespaces/x%2f..%2fsecrets/pods",
        "/api/v1/namespaces/%2e%2e/pods",
        "/api/v1/pods?watch=true",
        "/api/v1/nodes/n/proxy",
        "/api/v1/namespaces/d/services/x:80/proxy",
        "/api/v1/namespaces/d/pods/x/exec",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/api/v1/namespaces/d/pods/x/log/extra",
        "/api/v1/",
        "/api/v1",
        "api/v1/pods",
        "/api/v1//pods",
        "/API/v1/pods",
        "/api/v1/pods\x00",
        "/api/v1/pods\n",
        "/api/v1/namespaces/\u0455hop/pods",
    ],
)
def test_check_path_refuses_everything_outside_the_grammar(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_path(path)
    with pytest.raises(RequestRefusedError):
        guard("GET", path)


def test_guard_allows_reads_reviews_and_named_writes_only() -> None:
    guard("GET", "/api/v1/namespaces/d/pods", {"labelSelector": "app=geo"})
    guard("GET", "/api/v1/namespaces/d/pods/x/log", {"tailLines": 10, "previous": True})
    guard("POST", ACCESS_REVIEW_PATH)
    guard("PATCH", "/apis/apps/v1/namespaces/d/deployments/x/scale")
    guard("DELETE", "/api/v1/namespaces/d/pods/x")
    refused = [
        ("POST", "/api/v1/namespaces/d/pods", None),
        ("GET", ACCESS_REVIEW_PATH, None),
        ("DELETE", "/api/v1/namespaces/d/pods", None),
        ("DELETE", "/api/v1/namespaces/d", None),
        ("DELETE", "/api/v1/nodes/n", None),
        ("PATCH", "/api/v1/namespaces/d/pods/x/log", None),
        ("CONNECT", "/api/v1/namespaces/d/pods/x", None),
        ("get", "/api/v1/namespaces/d/pods", None),
        ("GET", "/api/v1/namespaces/d/pods", {"watch": True}),
        ("GET", "/api/v1/namespaces/d/pods", {"watch": "1"}),
        ("GET", "/api/v1/namespaces/d/pods/x/log", {"follow": True}),
        ("GET", "/api/v1/namespaces/d/pods", {"allowWatchBookmarks": True}),
        ("GET", "/api/v1/namespaces/d/pods", {"pretty": True}),
        ("GET", "/api/v1/namespaces/d/pods", {"fieldManager": "x"}),
    ]
    for method, path, query in refused:
        with pytest.raises(RequestRefusedError):
            guard(method, path, query)


# -- properties -------------------------------------------------------------------------

_PLURALS = sorted({plural for plurals in API_RESOURCES.values() for plural in plurals})
_NASTY = st.sampled_from(ATTACKS)
_NAMEISH = st.text(alphabet="abcz09-.", min_size=1, max_size=70)
_ANY_TEXT = st.one_of(st.text(max_size=300), _NASTY, _NAMEISH)


def _segments_ok(path: str) -> bool:
    return all(SEGMENT.fullmatch(s) for s in path.split("/")[1:])


@given(
    prefix=st.one_of(st.sampled_from(sorted(API_PREFIXES)), st.text(max_size=40)),
    plural=st.one_of(st.sampled_from(_PLURALS), st.text(max_size=30)),
    namespace=st.one_of(st.none(), _ANY_TEXT),
    name=st.one_of(st.none(), _ANY_TEXT),
    subresource=st.one_of(
        st.none(), st.sampled_from(["log", "status", "scale", "exec", "proxy"]), st.text()
    ),
)
@example(prefix="/api/v1", plural="pods", namespace="a", name="b", subresource="log")
@example(prefix="/api/v1", plural="configmaps", namespace="x", name="x/../../secrets/y",
         subresource=None)  # fmt: skip
def test_object_path_refuses_or_builds_a_path_of_exactly_the_given_parts(
    prefix: str, plural: str, namespace: str | None, name: str | None, subresource: str | None
) -> None:
    try:
        path = object_path(prefix, plural, namespace=namespace, name=name, subresource=subresource)
    except InvalidPathPart:
        return
    assert path.startswith(prefix + "/")
    assert _segments_ok(path)
    assert ".." not in path
    assert "secrets" not in path.split("/")
    decoded = [unquote(s) for s in path[len(prefix) + 1 :].split("/")]
    expected = (["namespaces", namespace] if namespace is not None else []) + [plural]
    expected += [p for p in (name, subresource) if p is not None]
    assert decoded == expected
    parsed = check_path(path)
    assert (parsed.prefix, parsed.plural, parsed.namespace, parsed.name, parsed.subresource) == (
        prefix,
        plural,
        namespace,
        name,
        subresource,
    )
    if namespace is not None:
        assert plural not in CLUSTER_SCOPED


_TOKENS = st.sampled_from(
    ["", "api", "apis", "v1", "apps", "namespaces", "default", "pods", "secrets", "nodes",
     "log", "exec", "proxy", "..", ".", "%2e%2e", "x#", "x?watch=true", "geo-1"]
)  # fmt: skip


@given(
    path=st.one_of(
        st.text(max_size=200),
        st.lists(st.one_of(_TOKENS, _ANY_TEXT), max_size=7).map("/".join),
        st.lists(_TOKENS, min_size=2, max_size=7).map("/".join),
    )
)
@example(path="/api/v1/namespaces/default/configmaps/x/../../secrets/db")
def test_check_path_accepts_only_plain_known_paths(path: str) -> None:
    try:
        parsed = check_path(path)
    except UnsafePathError:
        return
    assert _segments_ok(path)
    assert parsed.plural in API_RESOURCES[parsed.prefix]
    assert parsed.plural != "secrets"
    assert parsed.subresource in (None, "log", "status", "scale")
