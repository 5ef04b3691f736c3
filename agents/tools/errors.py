"""Error messages a person (or a small model) can act on, from client exceptions.

The Kubernetes client's ``ApiException`` prints a wall of headers; aiohttp
errors name sockets. Responders need what failed, why, and what to do next:
``403 Forbidden: the observer identity may not list secrets``.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from agents.tools.kube import RequestRefusedError, ResponseTooLargeError
from agents.tools.paths import InvalidPathPart

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]+)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]+)")?'
)


def identity_name(user: str) -> str:
    """``system:serviceaccount:aoi-system:aoi-observer`` → ``observer identity``."""
    account = user.rsplit(":", 1)[-1]
    return f"{account.removeprefix('aoi-')} identity" if account.startswith("aoi-") else account


def api_error_message(exc: ApiException) -> str:
    """One line: status, reason and the apiserver's own explanation."""
    status = exc.status or 0
    detail = _api_detail(exc)
    if status == 403:
        match = _FORBIDDEN.search(detail)
        if match:
            where = f" in namespace {match['ns']}" if match["ns"] else ""
            who = identity_name(match["user"])
            return f"403 Forbidden: the {who} may not {match['verb']} {match['resource']}{where}"
    reason = exc.reason or "error"
    if status == 0:
        return f"the Kubernetes API could not be reached: {reason}"
    return f"{status} {reason}: {detail}" if detail else f"{status} {reason}"


def _api_detail(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not body:
        return ""
    try:
        decoded = json.loads(body)
    except ValueError:
        return str(body).strip()[:300]
    if isinstance(decoded, dict):
        return str(decoded.get("message", "")).strip()
    return ""


def describe_error(exc: BaseException, *, service: str = "the Kubernetes API") -> str:
    """Any exception a tool may meet, as one actionable sentence."""
    if isinstance(exc, ApiException):
        return api_error_message(exc)
    if isinstance(exc, RequestRefusedError | InvalidPathPart):
        return f"refused, nothing was sent: {exc}"
    if isinstance(exc, ResponseTooLargeError):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"{service} did not answer in time; it may be overloaded or unreachable"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{service} answered {exc.status} {exc.message}"
    if isinstance(exc, aiohttp.ClientError | Urllib3Error | OSError):
        return f"cannot reach {service}: {exc}"
    return f"{type(exc).__name__}: {exc}"
