"""Log analyzer: known error signatures in container logs, blamed on the right component.

Logs are where an application says what is wrong in its own words: MongoDB's
"Checking authorization failed", a driver's "no such host", an x509 error. The
analyzer reads the recent tail of every pod (and the previous instance of a
restarted container), recognises signatures with ``attribution.classify`` and
blames with ``attribution.blame``, so an auth failure reported by geo is a
finding about the *database*. Log lines are data: nothing in them is obeyed,
and lines matching no signature (however alarming) produce nothing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from kubernetes import client

from agents.analyzers.attribution import Blame, blame, classify
from agents.analyzers.finding import Finding, Severity
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import ActionSpec, PatchConfigMap, RolloutRestart
from agents.redact import redact
from agents.tools.kube import get_text
from agents.tools.paths import object_path

TAIL = 100
PARALLEL = 8
MIN_LINES = 3
_TLS_MODE = re.compile(r"(mode:\s*)(require(?:TLS|SSL))")


@dataclass
class _Hit:
    blame: Blame
    kind: str
    lines: int = 0
    reporters: set[str] = field(default_factory=set)
    sample: str = ""


async def analyze_logs(
    api: client.ApiClient, snap: Snapshot, *, since_s: int = 120, tail: int = TAIL
) -> list[Finding]:
    texts = await _read_all(api, snap, since_s, tail)
    hits: dict[tuple[str, str], _Hit] = {}
    for component, text in texts:
        for line in text.splitlines():
            _scan(snap, component, line, hits)
    return [_to_finding(snap, hit) for hit in hits.values()]


def _scan(snap: Snapshot, component: str, line: str, hits: dict[tuple[str, str], _Hit]) -> None:
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


async def _read_all(
    api: client.ApiClient, snap: Snapshot, since_s: int, tail: int
) -> list[tuple[str, str]]:
    gate = asyncio.Semaphore(PARALLEL)
    jobs = []
    for pod in snap.pods:
        component = snap.component_of(pod)
        jobs.append(_read(api, snap.namespace, pod, component, gate, since_s, tail, previous=False))
        if _restarted(pod):
            jobs.append(_read(api, snap.namespace, pod, component, gate, None, 30, previous=True))
    return [found for found in await asyncio.gather(*jobs) if found is not None]


def _restarted(pod: Obj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(int(cs.get("restartCount") or 0) > 0 for cs in statuses)


async def _read(
    api: client.ApiClient,
    namespace: str,
    pod: Obj,
    component: str,
    gate: asyncio.Semaphore,
    since_s: int | None,
    tail: int,
    *,
    previous: bool,
) -> tuple[str, str] | None:
    name = pod["metadata"]["name"]
    query = {"tailLines": tail, "sinceSeconds": since_s, "previous": previous or None}
    async with gate:
        try:
            path = object_path("/api/v1", "pods", namespace=namespace, name=name, subresource="log")
            text = await asyncio.to_thread(get_text, api, path, query)
        except Exception:  # a container that never started has no logs: nothing to scan
            return None
    return component, text


def _to_finding(snap: Snapshot, hit: _Hit) -> Finding:
    component = hit.blame.component
    reporters = sorted(hit.reporters)
    summary = (
        f"{component}: {hit.blame.reason} ({hit.lines} log line(s) from {', '.join(reporters)})"
    )
    return Finding(
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
