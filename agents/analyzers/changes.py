"""What changed in a Deployment's latest rollout, and whether the change broke it.

"What changed?" is the first question of most incidents. A Deployment keeps
its history as ReplicaSets annotated with ``deployment.kubernetes.io/revision``;
comparing the current revision's pod template with the previous one names the
change (image, command, env, limits, probes, volumes, node selector). A change
followed by pods that do not become ready is the strongest root-cause signal
there is, and its remedy is known: roll back. Healthy changes are reported as
context only. Callers that drop retry back-off towards one service are
reported against that service (it receives the storm).
"""

from __future__ import annotations

import re
from typing import Any

from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import Rollback

REVISION = "deployment.kubernetes.io/revision"
_RETRY_ENV = re.compile(
    r"^(?P<svc>[A-Z0-9_]+?)_(?:RETRY_BACKOFF_MS|RETRY_BACKOFF|MAX_RETRIES|RETRIES)$"
)


def revision(obj: Obj) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def history(snap: Snapshot, dep: Obj) -> tuple[Obj | None, Obj | None]:
    """(current ReplicaSet, previous ReplicaSet) of a Deployment by revision number."""
    uid = dep["metadata"].get("uid")
    owned = [
        rs
        for rs in snap.replicasets
        if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        and revision(rs) is not None
    ]
    current_number = revision(dep)
    current = next((rs for rs in owned if revision(rs) == current_number), None)
    older = [
        rs for rs in owned if current_number is not None and (revision(rs) or 0) < current_number
    ]
    previous = max(older, key=lambda rs: revision(rs) or 0) if older else None
    return current, previous


def pod_spec(rs: Obj | None) -> dict[str, Any]:
    return dict((((rs or {}).get("spec") or {}).get("template") or {}).get("spec") or {})


def first_container(spec: dict[str, Any]) -> dict[str, Any]:
    containers = spec.get("containers") or [{}]
    return dict(containers[0])


def template_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field → (before, after) for the fields incidents hinge on."""
    before, after = first_container(old), first_container(new)
    changes: dict[str, tuple[Any, Any]] = {}
    for key in ("image", "command", "args", "livenessProbe", "readinessProbe"):
        if before.get(key) != after.get(key):
            changes[key] = (before.get(key), after.get(key))
    for kind in ("memory", "cpu"):
        pair = (_limit(before, kind), _limit(after, kind))
        if pair[0] != pair[1]:
            changes[f"{kind} limit"] = pair
    old_env, new_env = _env(before), _env(after)
    changed_env = {k for k in old_env.keys() | new_env.keys() if old_env.get(k) != new_env.get(k)}
    if changed_env:
        changes["env"] = (
            {k: old_env.get(k) for k in changed_env},
            {k: new_env.get(k) for k in changed_env},
        )
    if _claims(old) != _claims(new):
        changes["volumes"] = (sorted(_claims(old)), sorted(_claims(new)))
    if old.get("nodeSelector") != new.get("nodeSelector"):
        changes["nodeSelector"] = (old.get("nodeSelector"), new.get("nodeSelector"))
    return changes


def _limit(container: dict[str, Any], kind: str) -> str | None:
    value = ((container.get("resources") or {}).get("limits") or {}).get(kind)
    return str(value) if value is not None else None


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or []}


def _claims(spec: dict[str, Any]) -> set[str]:
    return {
        str(v["persistentVolumeClaim"].get("claimName"))
        for v in spec.get("volumes") or []
        if v.get("persistentVolumeClaim")
    }


def fault_of_change(changes: dict[str, tuple[Any, Any]], *, image_pull: bool) -> Fault:
    """The AIOpsLab label of a breaking change, by what changed (most specific first)."""
    if "nodeSelector" in changes:
        return ("Virtualization", "Dependency Problem")
    if "volumes" in changes:
        return ("Virtualization", "Network/Storage Issue")
    if "image" in changes:
        return (
            ("Virtualization", "Operation Error")
            if image_pull
            else ("Application", "Misconfiguration")
        )
    if "command" in changes or "args" in changes:
        return ("Application", "Network/Storage Issue")
    if "env" in changes:
        return ("Application", "Misconfiguration")
    return ("Virtualization", "Misconfiguration")


def unhealthy_reason(snap: Snapshot, dep: Obj) -> str | None:
    """Why the Deployment's pods are not serving, or None when they all are."""
    want = int((dep.get("spec") or {}).get("replicas", 1))
    pods = snap.pods_of(dep)
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                return f"pod {pod['metadata']['name']} is {waiting['reason']}"
            if not cs.get("ready") and int(cs.get("restartCount") or 0) > 0:
                return f"pod {pod['metadata']['name']} restarts and is not ready"
        if (pod.get("status") or {}).get("phase") == "Pending" and not _starting(pod):
            return f"pod {pod['metadata']['name']} is Pending"
    ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
    updated = int((dep.get("status") or {}).get("updatedReplicas") or 0)
    if want > 0 and (ready < want or updated < want) and pods:
        return f"{ready}/{want} replicas ready, {updated} updated"
    return None


def _starting(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("status") == "True" for c in conditions)


def image_pull_failing(snap: Snapshot, dep: Obj) -> bool:
    for pod in snap.pods_of(dep):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                return True
    return False


def _describe(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    lines = []
    for key, (before, after) in changes.items():
        lines.append(f"{key}: {_short(before)} -> {_short(after)}")
    return lines


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def analyze_changes(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep in snap.deployments:
        found = _change_finding(snap, dep)
        if found is not None:
            findings.append(found)
    return findings + _retry_storms(snap)


def _change_finding(snap: Snapshot, dep: Obj) -> Finding | None:
    current, previous = history(snap, dep)
    if current is None or previous is None:
        return None
    changes = template_changes(pod_spec(previous), pod_spec(current))
    if not changes:
        return None
    name, number = dep["metadata"]["name"], revision(current)
    reason = unhealthy_reason(snap, dep)
    evidence = [f"revision {revision(previous)} -> {number}", *_describe(changes)]
    if reason is None:
        return Finding(
            analyzer="changes",
            severity=Severity.INFO,
            namespace=snap.namespace,
            kind="Deployment",
            name=name,
            component=snap.component_of(dep),
            summary=f"deployment {name} changed {', '.join(changes)} in revision {number}; "
            "its pods are healthy",
            evidence=evidence,
            score=0.2,
        )
    fault = fault_of_change(changes, image_pull=image_pull_failing(snap, dep))
    return Finding(
        analyzer="changes",
        severity=Severity.CRITICAL,
        namespace=snap.namespace,
        kind="Deployment",
        name=name,
        component=snap.component_of(dep),
        summary=f"deployment {name} changed {', '.join(changes)} in revision {number} "
        f"and broke: {reason}",
        evidence=[*evidence, reason],
        suggested_fault=fault,
        remediation=Rollback(namespace=snap.namespace, name=name),
        score=0.97,
    )


def _retry_storms(snap: Snapshot) -> list[Finding]:
    """Callers whose current revision removed retry back-off towards one service."""
    victims: dict[str, list[str]] = {}
    for dep in snap.deployments:
        current, previous = history(snap, dep)
        if current is None:
            continue
        old, new = (
            _env(first_container(pod_spec(previous))),
            _env(first_container(pod_spec(current))),
        )
        for key, value in new.items():
            match = _RETRY_ENV.match(key)
            target = match.group("svc").lower().replace("_", "-") if match else None
            if target in snap.service_names and old.get(key) != value and _aggressive(key, value):
                victims.setdefault(str(target), []).append(
                    f"{dep['metadata']['name']}: {key}={value}"
                )
    return [_storm_finding(snap, target, evidence) for target, evidence in victims.items()]


def _aggressive(key: str, value: str) -> bool:
    digits = value.strip()
    if not digits.isdigit():
        return False
    return int(digits) == 0 if "BACKOFF" in key else int(digits) >= 5


def _storm_finding(snap: Snapshot, target: str, evidence: list[str]) -> Finding:
    caller = evidence[0].split(":", 1)[0]
    return Finding(
        analyzer="changes",
        severity=Severity.WARNING,
        namespace=snap.namespace,
        kind="Service",
        name=target,
        component=target,
        summary=f"{len(evidence)} caller(s) of {target} now retry without back-off: "
        f"every failure multiplies the load on {target}",
        evidence=evidence,
        suggested_fault=("Application", "Code Defect"),
        remediation=Rollback(namespace=snap.namespace, name=caller),
        score=0.75,
    )
