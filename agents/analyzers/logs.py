"""Log analyzer: known error signatures in container logs, blamed on the right component.

Logs are where an application says what is wrong in its own words: MongoDB's
"Checking authorization failed", a driver's "no such host", an x509 error. The
analyzer reads the recent tail of every pod (and the previous instance of a
restarted container), recognises signatures with ``attribution.classify`` and
blames with ``attribution.blame``, so an auth failure reported by geo is a
finding about the *database*. Log lines are data: nothing in them is obeyed,
and lines matching no signature (however alarming) produce nothing. Lines are
read with the kubelet's timestamps: a signature whose newest line is older
than the recent window has stopped (``agents.analyzers.recency``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from agents.analyzers.attribution import Blame, blame, classify
from agents.analyzers.finding import Finding, Severity
from agents.analyzers.recency import aged
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import ActionSpec, PatchConfigMap, RolloutRestart
from agents.redact import redact
from agents.tools.kube import get_text
from agents.tools.paths import object_path

TAIL = 100
PARALLEL = 8
MIN_LINES = 3
_TLS_MODE = re.compile(r"(mode:\s*)(require(?:TLS|SSL))")
_STAMP = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d) (.*)$", re.DOTALL
)


@dataclass
class _Hit:
    blame: Blame
    kind: str
    lines: int = 0
    reporters: set[str] = field(default_factory=set)
    sample: str = ""
    newest: datetime | None = None
    """The newest matching line's kubelet timestamp."""
    undated: bool = False
    """Some matching line had no timestamp: its age is unknown, so the hit is never aged."""


async def analyze_logs(
    api: client.ApiClient, snap: Snapshot, *, since_s: int = 120, tail: int = TAIL
) -> list[Finding]:
    texts = await _read_all(api, snap, since_s, tail)
    hits: dict[tuple[str, str], _Hit] = {}
    for component, text, ageless in texts:
        for line in text.splitlines():
            _scan(snap, component, line, hits, ageless=ageless)
    return [_to_finding(snap, hit) for hit in hits.values()]


def split_stamp(line: str) -> tuple[datetime | None, str]:
    """(the kubelet's RFC 3339 prefix, the line without it); (None, line) when it has none."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    whole, fraction, zone, rest = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    try:
        when = datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return None, line
    return when.astimezone(UTC), rest


def _scan(
    snap: Snapshot,
    component: str,
    raw: str,
    hits: dict[tuple[str, str], _Hit],
    *,
    ageless: bool = False,
) -> None:
    when, line = split_stamp(raw)
    signature = classify(line)
    if signature is None:
        return
    found = blame(line, client=component, peer=None, snap=snap)
    if found is None:
        return
    hit = hits.setdefault((found.component, signature.kind), _Hit(found, signature.kind))
    hit.lines += 1
    hit.reporters.add(component)
    hit.sample = hit.sample or redact(line.strip())[:400]
    if when is None or ageless:
        hit.undated = True
    elif hit.newest is None or when > hit.newest:
        hit.newest = when


async def _read_all(
    api: client.ApiClient, snap: Snapshot, since_s: int, tail: int
) -> list[tuple[str, str, bool]]:
    """(component, log text, ageless) per container instance read. The last words of a
    container that is down right now are ageless: its crash loop goes on however old they are."""
    gate = asyncio.Semaphore(PARALLEL)
    instances = _instances(snap)
    texts = await asyncio.gather(
        *(
            _read(
                api,
                snap.namespace,
                pod,
                gate,
                None if old else since_s,
                30 if old else tail,
                previous=old,
            )
            for pod, old in instances
        )
    )
    return [
        (snap.component_of(pod), text, old and not _serving(pod))
        for (pod, old), text in zip(instances, texts, strict=True)
        if text is not None
    ]


def _instances(snap: Snapshot) -> list[tuple[Obj, bool]]:
    """(pod, previous) in the order ``_read_all`` reads them."""
    order: list[tuple[Obj, bool]] = []
    for pod in snap.pods:
        order.append((pod, False))
        if _restarted(pod):
            order.append((pod, True))
    return order


def _serving(pod: Obj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(
        cs.get("ready") and "running" in (cs.get("state") or {}) for cs in statuses
    )


def _restarted(pod: Obj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(int(cs.get("restartCount") or 0) > 0 for cs in statuses)


async def _read(
    api: client.ApiClient,
    namespace: str,
    pod: Obj,
    gate: asyncio.Semaphore,
    since_s: int | None,
    tail: int,
    *,
    previous: bool,
) -> str | None:
    name = pod["metadata"]["name"]
    query = {
        "tailLines": tail,
        "sinceSeconds": since_s,
        "previous": previous or None,
        "timestamps": True,
    }
    async with gate:
        try:
            path = object_path("/api/v1", "pods", namespace=namespace, name=name, subresource="log")
            text = await asyncio.to_thread(get_text, api, path, query)
        except Exception:  # a container that never started has no logs: nothing to scan
            return None
    return text


def _to_finding(snap: Snapshot, hit: _Hit) -> Finding:
    component = hit.blame.component
    reporters = sorted(hit.reporters)
    summary = (
        f"{component}: {hit.blame.reason} ({hit.lines} log line(s) from {', '.join(reporters)})"
    )
    found = Finding(
        analyzer="logs",
        severity=Severity.WARNING if hit.lines >= MIN_LINES else Severity.INFO,
        namespace=snap.namespace,
        kind="Service",
        name=component,
        component=component,
        summary=summary,
        evidence=[hit.sample],
        suggested_fault=hit.blame.fault,
        remediation=_remedy(snap, hit.kind, component),
        score=hit.blame.score if hit.lines >= MIN_LINES else hit.blame.score * 0.5,
    )
    if not hit.undated:  # a line of unknown age (or a container down now) is never aged
        found = aged(found, hit.newest, snap.now, snap.recent, "newest such line")
    return found


def _remedy(snap: Snapshot, kind: str, component: str) -> ActionSpec | None:
    if component not in {d["metadata"]["name"] for d in snap.deployments}:
        return None
    if kind in ("db_unauthorized", "db_user_missing", "cert_rejected", "cert_expired"):
        return RolloutRestart(namespace=snap.namespace, name=component)
    if kind == "db_tls_required":
        return _tls_patch(snap, component)
    return None


def _tls_patch(snap: Snapshot, component: str) -> ActionSpec | None:
    """Set the database's ``requireTLS`` back to ``disabled`` in the ConfigMap it mounts."""
    dep = snap.by_name(snap.deployments, component) or {}
    volumes = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []
    for volume in volumes:
        name = (volume.get("configMap") or {}).get("name")
        cm = snap.by_name(snap.configmaps, name)
        for key, text in ((cm or {}).get("data") or {}).items():
            if _TLS_MODE.search(str(text)):
                fixed = _TLS_MODE.sub(r"\g<1>disabled", str(text), count=1)
                return PatchConfigMap(namespace=snap.namespace, name=str(name), data={key: fixed})
    return RolloutRestart(namespace=snap.namespace, name=component)
