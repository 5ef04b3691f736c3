"""Error messages → the component to blame, the way an experienced responder reads them.

The same text means different culprits depending on who prints it and what it
names: ``not authorized on geo-db`` in geo's logs blames the *database*, not
geo; ``lookup payment: no such host`` blames payment's DNS when payment is a
real Service, but blames the *caller's configuration* when the host
(``badAddress``) exists nowhere; ``connection refused`` to a healthy Service on
a port it does not serve is the caller's mistake. ``classify`` recognises the
signatures (drivers' and runtimes' own wording) and ``blame`` applies those
rules, so logs and traces attribute failures identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agents.analyzers.finding import Fault
from agents.analyzers.snapshot import Snapshot

SignatureKind = Literal[
    "db_unauthorized",
    "db_user_missing",
    "db_tls_required",
    "cert_rejected",
    "cert_expired",
    "no_such_host",
    "refused",
    "auth_failed",
]


@dataclass(frozen=True)
class Signature:
    kind: SignatureKind
    server_side: bool
    """True when the line is printed by the component at fault (mongod about its own users)."""
    pattern: re.Pattern[str]
    fault: Fault | None
    meaning: str


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "db_unauthorized",
        True,
        re.compile(r"Checking authorization failed|\"codeName\":\"Unauthorized\""),
        ("Application", "Authentication Issue"),
        "the database refuses its application user: a role (readWrite) is missing",
    ),
    Signature(
        "db_user_missing",
        True,
        re.compile(r"UserNotFound: Could not find user"),
        ("Application", "Network/Storage Issue"),
        "the database no longer has the application's user",
    ),
    Signature(
        "db_tls_required",
        True,
        re.compile(
            r"only allow SSL connections|SSLHandshakeFailed|"
            r"peer did not return a certificate"
        ),
        ("Application", "Misconfiguration"),
        "the database requires TLS but its clients connect in plain text",
    ),
    Signature(
        "cert_rejected",
        True,
        re.compile(r"TLS handshake error from .*(bad certificate|certificate expired)"),
        ("Application", "Authentication Issue"),
        "clients reject this server's certificate",
    ),
    Signature(
        "cert_expired",
        False,
        re.compile(
            r"certificate has expired|CertificateExpired|NotTimeValid|"
            r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|x509: certificate"
        ),
        ("Application", "Authentication Issue"),
        "the server's TLS certificate is expired or invalid",
    ),
    Signature(
        "no_such_host",
        False,
        re.compile(
            r"no such host|could not be resolved|Name or service not known|"
            r"Name resolution failed|Unable to resolve host|ENOTFOUND|"
            r"DNS resolution failed|UnableToResolvePhysicalConnection|"
            r"Failed to resolve|HOSTNAME LOOKUP FAILURE"
        ),
        None,
        "a host name does not resolve",
    ),
    Signature(
        "auth_failed",
        False,
        re.compile(
            r"not authorized on \S+ to execute|Authentication failed|"
            r"SASL authentication"
        ),
        ("Application", "Authentication Issue"),
        "a database rejects this client's credentials or permissions",
    ),
    Signature(
        "refused",
        False,
        re.compile(
            r"[Cc]onnection refused|ECONNREFUSED|\(111: Connection refused\)|"
            r"connect error: 111|UnableToConnect"
        ),
        None,
        "nothing accepts connections where the client dials",
    ),
)

_HOSTS = (
    re.compile(r"<Host: (?P<host>[\w.-]+) Port: (?P<port>\d+)>"),
    re.compile(r"lookup (?P<host>[\w.-]+?) on \S+: no such host"),
    re.compile(r"cannot connect to (?P<host>[\w.-]+):(?P<port>\d+)"),
    re.compile(r"Addr: (?P<host>[\w.-]+):(?P<port>\d+)"),
    re.compile(r"calling hello on '(?P<host>[\w.-]+):(?P<port>\d+)'"),
    re.compile(r"Failed to resolve '(?P<host>[\w.-]+)'"),
    re.compile(r"DNS resolution failed for (?P<host>[\w.-]+):(?P<port>\d+)"),
    re.compile(r"dns:(?P<host>[\w.-]+):(?P<port>\d+)"),
    re.compile(r"Unable to resolve host (?P<host>[\w.-]+)"),
    re.compile(r"ENOTFOUND (?P<host>[\w.-]+)"),
    re.compile(r"(?P<host>[\w.-]+) could not be resolved"),
    re.compile(r"HOSTNAME LOOKUP FAILURE: (?P<host>[\w.-]+)"),
    re.compile(r"upstream (?P<host>[\w.-]+):(?P<port>\d+)"),
    re.compile(r"(?:connecting|connect) to (?P<host>[a-z][\w.-]*):(?P<port>\d+)"),
    re.compile(r"on (?P<host>[\w.-]+):(?P<port>\d+)/Interactive"),
    re.compile(r"dial tcp (?P<host>[a-z][\w.-]*):(?P<port>\d+)"),
    re.compile(r"(?:MongoDB|connect|from) (?P<host>[a-z][\w-]*):"),
)
_RPC_SERVICE = re.compile(r"\b(?:\w+\.)?(?P<svc>[A-Z]\w*?)(?:Service)?/\w+")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def classify(message: str) -> Signature | None:
    for signature in SIGNATURES:
        if signature.pattern.search(message):
            return signature
    return None


def named_host(message: str, snap: Snapshot) -> tuple[str | None, int | None]:
    """The host (normalised to a Service name when it is one) and port a message names."""
    for pattern in _HOSTS:
        match = pattern.search(message)
        if not match or _IP.match(match.group("host")):
            continue
        port = match.groupdict().get("port")
        return _service_name(match.group("host"), snap), int(port) if port else None
    rpc = _RPC_SERVICE.search(message)
    if rpc:
        kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", rpc.group("svc")).lower()
        if kebab in snap.service_names:
            return kebab, None
    return None, None


def _service_name(host: str, snap: Snapshot) -> str:
    short = host.split(".", 1)[0] if ".svc" in host or f".{snap.namespace}" in host else host
    return short


@dataclass(frozen=True)
class Blame:
    component: str
    fault: Fault | None
    reason: str
    score: float


def blame(message: str, *, client: str, peer: str | None, snap: Snapshot) -> Blame | None:
    """Who is at fault when ``client`` reports ``message`` (about ``peer``, if known)."""
    signature = classify(message)
    if signature is None:
        return None
    if signature.server_side:
        return Blame(client, signature.fault, signature.meaning, 0.95)
    host, port = named_host(message, snap)
    if signature.kind == "no_such_host":
        return _blame_dns(host or peer, client, snap)
    if signature.kind == "refused":
        return _blame_refused(host or peer, port, client, snap)
    culprit = host if host in snap.service_names else peer
    if culprit is None or culprit not in snap.service_names:
        culprit = _database_of(client, snap) if signature.kind == "auth_failed" else None
    if culprit is None:
        return None
    return Blame(culprit, signature.fault, f"{client} reports: {signature.meaning}", 0.7)


def _blame_dns(host: str | None, client: str, snap: Snapshot) -> Blame:
    if host and host in snap.service_names:
        reason = f"{client} cannot resolve the Service name {host}"
        return Blame(host, ("Virtualization", "Network/Storage Issue"), reason, 0.8)
    where = f" {host!r}" if host else ""
    reason = f"{client} calls a host{where} that does not exist: its address setting is wrong"
    return Blame(client, ("Application", "Misconfiguration"), reason, 0.8)


def _blame_refused(host: str | None, port: int | None, client: str, snap: Snapshot) -> Blame | None:
    if not host or host not in snap.service_names:
        return None
    served = _service_ports(host, snap)
    if port is not None and served and port not in served:
        reason = f"{client} dials {host}:{port} but {host} serves {sorted(served)}"
        return Blame(client, ("Application", "Misconfiguration"), reason, 0.75)
    if not snap.service_healthy(host):
        return Blame(host, None, f"{client} is refused by {host}, which has no ready endpoint", 0.5)
    return None  # refused by a Service that serves now: a transient (a restart), not a lead


def _service_ports(name: str, snap: Snapshot) -> set[int]:
    svc = snap.by_name(snap.services, name)
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    return {int(p["port"]) for p in ports if p.get("port")}


def _database_of(client: str, snap: Snapshot) -> str | None:
    """The database a client's settings point at (``MONGO_ADDRESS=mongodb-geo:27017``)."""
    dep = snap.by_name(snap.deployments, client)
    containers = (((dep or {}).get("spec") or {}).get("template") or {}).get("spec", {})
    for container in containers.get("containers") or []:
        for env in container.get("env") or []:
            value = str(env.get("value") or "")
            host = value.split("://")[-1].split("@")[-1].split(":")[0].split("/")[0]
            if "MONGO" in str(env.get("name", "")).upper() and host in snap.service_names:
                return host
    return None
