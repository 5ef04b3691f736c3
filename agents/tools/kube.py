"""Plain JSON over the Kubernetes API, for every kind with one code path.

The generated client has one method per kind and verb and returns models whose
fields are all Optional; tools that render many kinds (kubectl-style get and
describe, analyzers that read a whole namespace) are simpler and faster with
raw JSON dicts. Requests go through the given ``ApiClient``, so its identity
(observer or executor) and TLS settings apply, and failures raise the client's
own ``ApiException``. Only reads live here; the Executor sends its writes with
``request`` from its own module, so no Probe code path holds a write helper.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

REQUEST_TIMEOUT_S = 15.0
Query = Mapping[str, str | int | bool | None]


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    query: Query | None = None,
    body: Any = None,
    *,
    accept: str = "application/json",
    content_type: str | None = None,
) -> bytes:
    params = [(k, _param(v)) for k, v in (query or {}).items() if v is not None]
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    method, url, headers, body, _ = api.param_serialize(
        method,
        path,
        query_params=params,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body,
                            _request_timeout=REQUEST_TIMEOUT_S)  # fmt: skip
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    data: bytes = response.data
    return data


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def get_json(api: client.ApiClient, path: str, query: Query | None = None) -> dict[str, Any]:
    """GET ``path`` (``/api/v1/namespaces/x/pods``) and decode the JSON object."""
    decoded = json.loads(request(api, "GET", path, query))
    return dict(decoded) if isinstance(decoded, dict) else {}


def get_items(api: client.ApiClient, path: str, query: Query | None = None) -> list[dict[str, Any]]:
    """The ``items`` of a list response."""
    return list(get_json(api, path, query).get("items") or [])


def get_text(api: client.ApiClient, path: str, query: Query | None = None) -> str:
    """GET a text endpoint (container logs)."""
    return request(api, "GET", path, query, accept="*/*").decode(errors="replace")


def post_json(api: client.ApiClient, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST a JSON object (only reviews: SelfSubjectAccessReview asks, it changes nothing)."""
    raw = request(api, "POST", path, body=dict(body), content_type="application/json")
    decoded = json.loads(raw)
    return dict(decoded) if isinstance(decoded, dict) else {}
