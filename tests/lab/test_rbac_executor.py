"""The executor identity, asked of the real apiserver: exactly the catalogue, nowhere else.

Each request below is sent with the lab's executor token, so the answer is the
apiserver's own RBAC decision, not our code's restraint. Writes that are allowed
are sent with ``dryRun=All``: authorization is decided exactly as for a real
request, and the shared lab stays as it is. A 403 here means "RBAC refused";
anything else means the request got past authorization (even a 404 would).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support.lab import LabThread

from lab.apps import APPS

HOTEL = "test-hotel-reservation"
MANAGED = sorted(app.namespace for app in APPS.values())
DRY_RUN = {"dryRun": "All"}
MERGE = "application/merge-patch+json"
APPS_V1 = f"/apis/apps/v1/namespaces/{HOTEL}"
CORE_V1 = f"/api/v1/namespaces/{HOTEL}"
RBAC_V1 = "/apis/rbac.authorization.k8s.io/v1"


def _send(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> Any:
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    method, url, headers, body, _ = api.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=15)
    response.read()
    return response


def _status(api: client.ApiClient, method: str, path: str, **kwargs: Any) -> int:
    """The HTTP status the apiserver answers ``method path`` with, for this identity."""
    try:
        return int(_send(api, method, path, **kwargs).status)
    except ApiException as exc:
        return int(exc.status)


def _a_pod(api: client.ApiClient) -> str:
    response = _send(api, "GET", f"{CORE_V1}/pods")
    assert response.status == 200, response.data
    return str(json.loads(response.data)["items"][0]["metadata"]["name"])


# What the catalogue sends (agents/executor/apply.py, verify.py, proposals.py), in an
# app namespace: each must get past RBAC.
ALLOWED: list[tuple[str, str, str, Any]] = [
    ("read a deployment", "GET", f"{APPS_V1}/deployments/geo", None),
    ("restart / set image / roll back", "PATCH", f"{APPS_V1}/deployments/geo", {}),
    ("scale", "PATCH", f"{APPS_V1}/deployments/geo/scale", {"spec": {"replicas": 1}}),
    ("rollback history", "GET", f"{APPS_V1}/replicasets", None),
    ("read a service", "GET", f"{CORE_V1}/services/geo", None),
    ("patch a service", "PATCH", f"{CORE_V1}/services/geo", {}),
    ("read a configmap", "GET", f"{CORE_V1}/configmaps/mongodb-geo-init", None),
    ("patch a configmap", "PATCH", f"{CORE_V1}/configmaps/mongodb-geo-init", {}),
    ("verify: pods", "GET", f"{CORE_V1}/pods", None),
    ("verify: endpoints", "GET", f"{CORE_V1}/endpoints/geo", None),
]


@pytest.mark.parametrize(("what", "method", "path", "body"), ALLOWED, ids=[a[0] for a in ALLOWED])
def test_the_executor_may_do_what_the_catalogue_sends(
    lab: LabThread, executor: client.ApiClient, what: str, method: str, path: str, body: Any
) -> None:
    query = DRY_RUN if method != "GET" else None
    status = _status(executor, method, path, body=body, query=query, content_type=MERGE)
    assert status == 200, f"{what}: {method} {path} answered {status}"


def test_the_executor_may_delete_a_pod_in_an_app_namespace(
    lab: LabThread, executor: client.ApiClient
) -> None:
    pod = _a_pod(executor)
    assert _status(executor, "DELETE", f"{CORE_V1}/pods/{pod}", query=DRY_RUN) == 200


def test_the_executor_is_bound_in_every_app_namespace(
    lab: LabThread, executor: client.ApiClient
) -> None:
    for namespace in MANAGED:
        for path in (
            f"/apis/apps/v1/namespaces/{namespace}/replicasets",
            f"/api/v1/namespaces/{namespace}/pods",
        ):
            assert _status(executor, "GET", path) == 200, path


# Everything the catalogue leaves out, and every namespace it does not manage.
FORBIDDEN: list[tuple[str, str, str, Any, Mapping[str, str] | None]] = [
    ("kube-system: read", "GET", "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
     None, None),
    ("kube-system: patch a configmap", "PATCH",
     "/api/v1/namespaces/kube-system/configmaps/coredns", {}, DRY_RUN),
    ("kube-system: delete a pod", "DELETE", "/api/v1/namespaces/kube-system/pods/x", None,
     DRY_RUN),
    ("aoi-system: patch the bot", "PATCH", "/apis/apps/v1/namespaces/aoi-system/deployments/aoi",
     {}, DRY_RUN),
    ("default: patch a deployment", "PATCH", "/apis/apps/v1/namespaces/default/deployments/x",
     {}, DRY_RUN),
    ("read a secret", "GET", f"{CORE_V1}/secrets/geo", None, None),
    ("list secrets", "GET", f"{CORE_V1}/secrets", None, None),
    ("list secrets everywhere", "GET", "/api/v1/secrets", None, None),
    ("exec", "POST", f"{CORE_V1}/pods/x/exec", None, {"command": "sh", "stdout": "true"}),
    ("attach", "POST", f"{CORE_V1}/pods/x/attach", None, {"stdout": "true"}),
    ("port-forward", "POST", f"{CORE_V1}/pods/x/portforward", None, {"ports": "80"}),
    ("create a pod", "POST", f"{CORE_V1}/pods", {"metadata": {"name": "x"}}, DRY_RUN),
    ("delete a deployment", "DELETE", f"{APPS_V1}/deployments/geo", None, DRY_RUN),
    ("update a deployment", "PUT", f"{APPS_V1}/deployments/geo", {}, DRY_RUN),
    ("watch deployments", "GET", f"{APPS_V1}/deployments", None, {"watch": "true"}),
    ("list deployments everywhere", "GET", "/apis/apps/v1/deployments", None, None),
    ("read a deployment's scale", "GET", f"{APPS_V1}/deployments/geo/scale", None, None),
    ("patch a statefulset", "PATCH", f"{APPS_V1}/statefulsets/x", {}, DRY_RUN),
    ("list statefulsets", "GET", f"{APPS_V1}/statefulsets", None, None),
    ("controllerrevisions", "GET", f"{APPS_V1}/controllerrevisions", None, None),
    ("patch a replicaset", "PATCH", f"{APPS_V1}/replicasets/x", {}, DRY_RUN),
    ("update a service", "PUT", f"{CORE_V1}/services/geo", {}, DRY_RUN),
    ("delete a service", "DELETE", f"{CORE_V1}/services/geo", None, DRY_RUN),
    ("delete a configmap", "DELETE", f"{CORE_V1}/configmaps/mongodb-geo-init", None, DRY_RUN),
    ("patch a pod", "PATCH", f"{CORE_V1}/pods/x", {}, DRY_RUN),
    ("events", "GET", f"{CORE_V1}/events", None, None),
    ("patch a node (cordon)", "PATCH", "/api/v1/nodes/x", {}, DRY_RUN),
    ("list nodes", "GET", "/api/v1/nodes", None, None),
    ("delete the namespace", "DELETE", f"/api/v1/namespaces/{HOTEL}", None, DRY_RUN),
    ("delete a volume", "DELETE", "/api/v1/persistentvolumes/x", None, DRY_RUN),
    ("delete a claim", "DELETE", f"{CORE_V1}/persistentvolumeclaims/x", None, DRY_RUN),
    ("a role binding", "POST", f"{RBAC_V1}/namespaces/{HOTEL}/rolebindings", {}, DRY_RUN),
    ("a service account token", "POST", f"{CORE_V1}/serviceaccounts/default/token", {}, DRY_RUN),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "query"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN]
)
def test_the_apiserver_refuses_the_executor_everything_else(
    lab: LabThread,
    executor: client.ApiClient,
    what: str,
    method: str,
    path: str,
    body: Any,
    query: Mapping[str, str] | None,
) -> None:
    status = _status(executor, method, path, body=body, query=query, content_type=MERGE)
    assert status == 403, f"{what}: {method} {path} answered {status}, not 403"


def test_the_executor_identity_is_bound_per_namespace_only(admin: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    cluster_wide = [
        b.metadata.name
        for b in rbac.list_cluster_role_binding().items
        if any(s.name == "aoi-executor" for s in b.subjects or [])
    ]
    assert cluster_wide == []
    bound = sorted(
        b.metadata.namespace
        for b in rbac.list_role_binding_for_all_namespaces().items
        if any(s.name == "aoi-executor" for s in b.subjects or [])
    )
    assert bound == MANAGED


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "query"),
    [f for f in FORBIDDEN if f[0] != "watch deployments"],  # a watch would stream
    ids=[f[0] for f in FORBIDDEN if f[0] != "watch deployments"],
)
def test_the_same_requests_pass_rbac_for_an_admin(
    lab: LabThread,
    admin: client.ApiClient,
    what: str,
    method: str,
    path: str,
    body: Any,
    query: Mapping[str, str] | None,
) -> None:
    # The refusals above are RBAC's, not malformed requests: cluster-admin gets past it
    # (to a 404, a 422 or a dry run), never to a 403.
    status = _status(admin, method, path, body=body, query=query, content_type=MERGE)
    assert status != 403, f"{what}: {method} {path}"
