"""Plain JSON over the Kubernetes API, for every kind with one code path.

The generated client has one method per kind and verb and returns models whose
fields are all Optional; tools that render many kinds (kubectl-style get and
describe, analyzers that read a whole namespace) are simpler and faster with
raw JSON dicts. Requests go through the given ``ApiClient``, so its identity
(observer or executor) and TLS settings apply, and failures raise the client's
own ``ApiException``. Only reads live here; the Executor sends its writes with
``request`` from its own module, so no Probe code path holds a write helper.

Every request passes ``guard`` first, whoever built it: the path must parse
with the grammar of ``agents.tools.paths`` (known prefixes, resources and
subresources, plain segments, never a Secret), POST goes only to the
self-reviews, writes name one object, and query parameters come only as the
``query`` mapping, from an allowlist without ``watch`` or ``follow``. Each
request also has a total deadline, reading the body included, so a trickling
response cannot hold a tool call open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from agents.tools.paths import REVIEW_PATHS, ParsedPath, UnsafePathError, check_path

REQUEST_TIMEOUT_S = 15.0
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
Query = Mapping[str, str | int | bool | None]

METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
READ_QUERY = frozenset(
    {
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "container",
        "tailLines",
        "previous",
        "sinceSeconds",
        "timestamps",
        "limitBytes",
    }
)
WRITE_QUERY = frozenset({"fieldManager", "dryRun", "propagationPolicy", "gracePeriodSeconds"})
_STREAMING_QUERY = frozenset({"watch", "follow", "allowWatchBookmarks", "sendInitialEvents"})
_UNDELETABLE = frozenset({"namespaces", "nodes", "persistentvolumes"})


class RequestRefusedError(ValueError):
    """A request ``guard`` refused: nothing was sent."""


def guard(method: str, path: str, query: Query | None = None) -> ParsedPath:
    """Check one request before it leaves; ``RequestRefusedError`` says what is wrong with it.

    Usage::

        guard("GET", "/api/v1/namespaces/shop/pods", {"labelSelector": "app=geo"})
    """
    if method not in METHODS:
        raise RequestRefusedError(f"method {method!r} is not one this product sends")
    try:
        parsed = check_path(path)
    except UnsafePathError as exc:
        raise RequestRefusedError(str(exc)) from None
    is_review = path in REVIEW_PATHS
    if (method == "POST") != is_review:
        raise RequestRefusedError(
            f"{method} {path}: POST goes only to the self-reviews, and reviews only take POST"
        )
    if method in ("PATCH", "PUT", "DELETE"):
        if parsed.name is None:
            raise RequestRefusedError(f"{method} {path}: a write names exactly one object")
        if method == "DELETE" and (parsed.plural in _UNDELETABLE or parsed.subresource):
            raise RequestRefusedError(f"DELETE {path}: {parsed.plural} are never deleted")
        if parsed.subresource == "log":
            raise RequestRefusedError(f"{method} {path}: logs are read only")
    _check_query(method, query or {})
    return parsed


def _check_query(method: str, query: Query) -> None:
    allowed = READ_QUERY if method == "GET" else READ_QUERY | WRITE_QUERY
    for key, value in query.items():
        if key in _STREAMING_QUERY:
            raise RequestRefusedError(
                f"query parameter {key!r} streams without end; every read here is one-shot"
            )
        if key not in allowed:
            raise RequestRefusedError(
                f"query parameter {key!r} is not allowed; use one of {', '.join(sorted(allowed))}"
            )
        if value is not None and not isinstance(value, str | int | bool):
            raise RequestRefusedError(f"query parameter {key!r} must be text, a number or a bool")


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    query: Query | None = None,
    body: Any = None,
    *,
    accept: str = "application/json",
    content_type: str | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> bytes:
    """Send one guarded request and return its body, all within ``timeout_s``.

    Raises ``RequestRefusedError`` (nothing sent), ``TimeoutError`` (deadline passed,
    streaming included), or the client's ``ApiException`` for a non-2xx answer.
    """
    guard(method, path, query)
    params = [(k, _param(v)) for k, v in (query or {}).items() if v is not None]
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    deadline = time.monotonic() + timeout_s
    method, url, headers, body, _ = api.param_serialize(
        method,
        path,
        query_params=params,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body,
                            _request_timeout=timeout_s)  # fmt: skip
    response.data = _read_body(response, deadline, f"{method} {path}")
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    data: bytes = response.data
    return data


def _read_body(response: Any, deadline: float, what: str) -> bytes:
    """The body, read in chunks so the deadline and the size cap hold while it streams.

    ``read1`` returns whatever has arrived (``read`` would wait for a whole
    chunk), so a trickle is checked against the deadline at every arrival; each
    wait is bounded by the socket timeout the client set from ``timeout_s``.
    """
    raw = response.response
    read = getattr(raw, "read1", raw.read)
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := read(_CHUNK_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ResponseTooLargeError(
                    f"{what}: the answer exceeds {MAX_RESPONSE_BYTES // 1048576} MiB; "
                    "ask for less (a label selector, --tail, one namespace)"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: the answer was still arriving at the deadline")
    except BaseException:
        raw.close()
        raise
    raw.release_conn()
    return b"".join(chunks)


class ResponseTooLargeError(RuntimeError):
    """An answer larger than ``MAX_RESPONSE_BYTES``; the rest was not read."""


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
    if path not in REVIEW_PATHS:
        raise RequestRefusedError(f"POST {path}: only the self-reviews are ever posted")
    raw = request(api, "POST", path, body=dict(body), content_type="application/json")
    decoded = json.loads(raw)
    return dict(decoded) if isinstance(decoded, dict) else {}
