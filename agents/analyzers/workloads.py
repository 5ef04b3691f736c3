"""Pod-level analyzers: crash loops, OOM kills, image pulls, config errors, scheduling,
probes, pod churn and past restarts.

These read what the kubelet and the scheduler wrote (container states, last
terminations, conditions, events), which is where a dying workload explains
itself: the exit code and message of the last crash, the image that cannot be
pulled, the FailedScheduling reason, the port a probe checks. Findings are per
workload (Deployment), not per pod, so three crashing replicas are one finding.
A past OOM kill or probe failure whose container runs and is ready again, last
seen before the recent window, is reported as stopped, and so is a past
restart from before the long window (``agents.analyzers.recency``); a crash
loop or a pull that fails now never is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from agents.analyzers.changes import first_container, history, pod_spec
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.recency import aged
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import ActionSpec, Rollback, SetResources
from agents.probe.render import parse_time

CRASH_REASONS = frozenset({"CrashLoopBackOff", "Error", "RunContainerError", "StartError"})
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
RECENT = timedelta(minutes=15)
CHURN_WINDOW = timedelta(minutes=3)
CHURN_PODS = 2
CHURN_ONGOING = timedelta(seconds=30)
_PROBE_PORT = re.compile(r"(Liveness|Readiness|Startup) probe failed: .*?:(\d+)\b")


def _statuses(pod: Obj) -> list[Obj]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _workloads(snap: Snapshot) -> Iterator[tuple[Obj, list[Obj]]]:
    for dep in snap.deployments:
        yield dep, snap.pods_of(dep)


def _finding(
    snap: Snapshot,
    dep: Obj,
    analyzer: str,
    summary: str,
    evidence: list[str],
    *,
    severity: Severity = Severity.CRITICAL,
    fault: Fault | None = None,
    fix: ActionSpec | None = None,
    score: float = 0.8,
) -> Finding:
    return Finding(
        analyzer=analyzer,
        severity=severity,
        namespace=snap.namespace,
        kind="Deployment",
        name=dep["metadata"]["name"],
        component=snap.component_of(dep),
        summary=summary,
        evidence=evidence,
        suggested_fault=fault,
        remediation=fix,
        score=score,
    )


def _rollback_if_changed(snap: Snapshot, dep: Obj) -> Rollback | None:
    current, previous = history(snap, dep)
    if current is None or previous is None or pod_spec(current) == pod_spec(previous):
        return None
    return Rollback(namespace=snap.namespace, name=dep["metadata"]["name"])


def _termination(cs: Obj) -> str:
    term = (cs.get("lastState") or {}).get("terminated") or {}
    if not term:
        return ""
    message = " ".join(str(term.get("message", "")).split())
    return f"last terminated: {term.get('reason')}, exit code {term.get('exitCode')}" + (
        f": {message}" if message else ""
    )


# -- crash loops and OOM kills -------------------------------------------------------------


def crash_loops(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        evidence, last_reason = [], ""
        for pod in pods:
            if _liveness_kills(snap, pod):
                continue
            for cs in _statuses(pod):
                waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
                last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason", "")
                if waiting in CRASH_REASONS and last != "OOMKilled":
                    evidence += [
                        f"pod {pod['metadata']['name']}: {waiting}, "
                        f"restarts {cs.get('restartCount', 0)}",
                        _termination(cs),
                    ]
                    last_reason = waiting
        if evidence:
            findings.append(_crash_finding(snap, dep, [e for e in evidence if e], last_reason))
    return findings


def _crash_finding(snap: Snapshot, dep: Obj, evidence: list[str], reason: str) -> Finding:
    fix = _rollback_if_changed(snap, dep)
    name = dep["metadata"]["name"]
    summary = f"deployment {name}'s containers keep crashing ({reason})"
    fault: Fault | None = None if fix else ("Virtualization", "Operation Error")
    if fix is None:
        summary += " although its spec did not change: the pods themselves fail"
    return _finding(snap, dep, "crash_loop", summary, evidence, fault=fault, fix=fix, score=0.85)


def _liveness_kills(snap: Snapshot, pod: Obj) -> bool:
    return any(
        str(e.get("message", "")).startswith("Liveness probe failed")
        for e in snap.events_for("Pod", pod["metadata"]["name"])
    )


def oom_kills(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        hits = [
            (pod, cs)
            for pod in pods
            for cs in _statuses(pod)
            if ((cs.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
            or ((cs.get("state") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
        ]
        if hits:
            found = _oom_finding(snap, dep, hits)
            if all(_serving(cs) for _, cs in hits):
                found = aged(found, _last_kill(hits), snap.now, snap.recent, "last OOM kill")
            findings.append(found)
    return findings


def _serving(cs: Obj) -> bool:
    """The container runs and is ready right now."""
    return bool(cs.get("ready")) and "running" in (cs.get("state") or {})


def _last_kill(hits: list[tuple[Obj, Obj]]) -> datetime | None:
    return _newest(
        [
            parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
            for _, cs in hits
        ]
    )


def _newest(times: list[datetime | None]) -> datetime | None:
    """The latest of ``times``; None when there are none or any is unknown (never aged then)."""
    known = [t for t in times if t is not None]
    return max(known) if known and len(known) == len(times) else None


def _oom_finding(snap: Snapshot, dep: Obj, hits: list[tuple[Obj, Obj]]) -> Finding:
    name = dep["metadata"]["name"]
    current, previous = history(snap, dep)
    limit = _memory_limit(
        pod_spec(current) or (dep.get("spec") or {}).get("template", {}).get("spec", {})
    )
    before = _memory_limit(pod_spec(previous)) if previous else None
    evidence = [
        f"pod {p['metadata']['name']}: OOMKilled, restarts {cs.get('restartCount', 0)}"
        for p, cs in hits
    ]
    evidence.append(
        f"memory limit {limit}" + (f" (was {before} in the previous revision)" if before else "")
    )
    suggestion = before if before and before != limit else _double(limit)
    fix = (
        SetResources(namespace=snap.namespace, name=name, limits={"memory": suggestion})
        if suggestion
        else None
    )
    summary = f"deployment {name} is OOMKilled: its memory limit {limit} is below what it needs"
    return _finding(
        snap,
        dep,
        "oom",
        summary,
        evidence,
        fault=("Virtualization", "Misconfiguration"),
        fix=fix,
        score=0.92,
    )


def _memory_limit(spec: Obj) -> str | None:
    value = ((first_container(spec).get("resources") or {}).get("limits") or {}).get("memory")
    return str(value) if value else None


def _double(limit: str | None) -> str | None:
    match = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", limit or "")
    return f"{int(match.group(1)) * 2}{match.group(2)}" if match else None


# -- image pulls and container config ------------------------------------------------------


def _waiting(pods: list[Obj], reasons: frozenset[str]) -> list[tuple[Obj, Obj]]:
    return [
        (pod, cs)
        for pod in pods
        for cs in _statuses(pod)
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in reasons
    ]


def image_pulls(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        hits = _waiting(pods, PULL_REASONS)
        if not hits:
            continue
        name = dep["metadata"]["name"]
        evidence = [
            f"pod {p['metadata']['name']}: {cs['state']['waiting']['reason']} for image "
            f"{cs.get('image')}: {cs['state']['waiting'].get('message', '')}"
            for p, cs in hits
        ]
        status = dep.get("status") or {}
        evidence.append(
            f"rollout stuck: {status.get('updatedReplicas', 0)} updated, "
            f"{status.get('availableReplicas', 0)} available of {dep['spec'].get('replicas', 1)}"
        )
        summary = (
            f"deployment {name} cannot pull image {hits[0][1].get('image')}: the rollout is stuck"
        )
        findings.append(
            _finding(
                snap,
                dep,
                "image_pull",
                summary,
                evidence,
                fault=("Virtualization", "Operation Error"),
                fix=_rollback_if_changed(snap, dep),
                score=0.92,
            )
        )
    return findings


def config_errors(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        hits = _waiting(pods, CONFIG_REASONS)
        if hits:
            evidence = [
                f"pod {p['metadata']['name']}: {cs['state']['waiting'].get('message', '')}"
                for p, cs in hits
            ]
            name = dep["metadata"]["name"]
            summary = f"deployment {name}'s containers cannot be created: {evidence[0]}"
            findings.append(
                _finding(
                    snap,
                    dep,
                    "container_config",
                    summary,
                    evidence,
                    fault=("Application", "Misconfiguration"),
                    fix=_rollback_if_changed(snap, dep),
                    score=0.9,
                )
            )
    return findings


# -- scheduling -----------------------------------------------------------------------------


def unschedulable(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        pending = [p for p in pods if _unscheduled(p)]
        if pending:
            findings.append(_scheduling_finding(snap, dep, pending))
    return findings


def _unscheduled(pod: Obj) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "Unschedulable")
    return None


def _scheduling_messages(snap: Snapshot, pending: list[Obj]) -> list[str]:
    messages = {_unscheduled(p) or "" for p in pending}
    for pod in pending:
        events = snap.events_for("Pod", pod["metadata"]["name"])
        messages |= {
            str(e.get("message", "")) for e in events if e.get("reason") == "FailedScheduling"
        }
    return sorted(m for m in messages if m)


def _scheduling_finding(snap: Snapshot, dep: Obj, pending: list[Obj]) -> Finding:
    name = dep["metadata"]["name"]
    messages = _scheduling_messages(snap, pending)
    template = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    missing = _unmatched_selector(snap, template.get("nodeSelector") or {})
    evidence = [f"pod {p['metadata']['name']} is Pending" for p in pending] + messages[:3]
    fix = _rollback_if_changed(snap, dep)
    if missing:
        evidence.append(f"nodeSelector {missing} matches none of {len(snap.cluster.nodes)} nodes")
        summary = (
            f"deployment {name}'s pods cannot be scheduled: nodeSelector {missing} matches no node"
        )
        fault: Fault = ("Virtualization", "Dependency Problem")
        return _finding(
            snap, dep, "scheduling", summary, evidence, fault=fault, fix=fix, score=0.92
        )
    storage = any("PersistentVolumeClaim" in m for m in messages)
    if storage:
        fault = ("Virtualization", "Network/Storage Issue")
    summary = (
        f"deployment {name}'s pods cannot be scheduled: {messages[0] if messages else 'Pending'}"
    )
    score = 0.6 if storage else 0.8
    return _finding(snap, dep, "scheduling", summary, evidence, fault=fault, fix=fix, score=score)


def _unmatched_selector(snap: Snapshot, selector: dict[str, str]) -> str | None:
    if not selector or not snap.cluster.nodes:
        return None
    for node in snap.cluster.nodes:
        labels = node["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in selector.items()):
            return None
    return ",".join(f"{k}={v}" for k, v in selector.items())


# -- probes ---------------------------------------------------------------------------------


def probe_failures(snap: Snapshot) -> list[Finding]:
    findings = []
    for dep, pods in _workloads(snap):
        failures: dict[tuple[str, int], int] = {}
        stamps: list[datetime | None] = []
        for pod in pods:
            for event in snap.events_for("Pod", pod["metadata"]["name"]):
                match = _PROBE_PORT.search(str(event.get("message", "")))
                if event.get("reason") == "Unhealthy" and match and _recent(snap, event):
                    key = (match.group(1), int(match.group(2)))
                    failures[key] = failures.get(key, 0) + int(event.get("count") or 1)
                    stamps.append(_stamp(event))
        if failures:
            found = _probe_finding(snap, dep, failures)
            if pods and all(_serving(cs) for p in pods for cs in _statuses(p)):
                last = _newest(stamps)
                found = aged(found, last, snap.now, snap.recent, "last probe failure")
            findings.append(found)
    return findings


def _stamp(event: Obj) -> datetime | None:
    return parse_time(event.get("lastTimestamp") or event.get("eventTime"))


def _recent(snap: Snapshot, event: Obj) -> bool:
    stamp = _stamp(event)
    return stamp is None or snap.now - stamp < RECENT


def _probe_finding(snap: Snapshot, dep: Obj, failures: dict[tuple[str, int], int]) -> Finding:
    name = dep["metadata"]["name"]
    container = first_container(((dep.get("spec") or {}).get("template") or {}).get("spec") or {})
    declared = {
        int(p["containerPort"]) for p in container.get("ports") or [] if p.get("containerPort")
    }
    evidence = [
        f"{probe} probe failed {count}x on port {port}" for (probe, port), count in failures.items()
    ]
    evidence.append(f"container declares ports {sorted(declared) or 'none'}")
    wrong = sorted({(probe, port) for probe, port in failures if declared and port not in declared})
    fix = _rollback_if_changed(snap, dep)
    if wrong:
        probe, port = wrong[0]
        summary = (
            f"deployment {name}'s {probe.lower()} probe checks port {port}, which the container "
            f"does not declare ({sorted(declared)}): healthy pods are failed by their probe"
        )
        return _finding(
            snap,
            dep,
            "probe",
            summary,
            evidence,
            fault=("Virtualization", "Misconfiguration"),
            fix=fix,
            score=0.92,
        )
    probe, port = next(iter(failures))
    summary = (
        f"deployment {name}'s pods fail their {probe.lower()} probe on their own port {port}: "
        "the process does not listen where it should"
    )
    return _finding(snap, dep, "probe", summary, evidence, fix=fix, score=0.75)


# -- churn and restarts -----------------------------------------------------------------------


def pod_churn(snap: Snapshot) -> list[Finding]:
    """Pods of an unchanged ReplicaSet re-created again and again: something deletes them.

    An alarm only while it goes on (a pod created in the last ``CHURN_ONGOING``); churn
    that stopped is reported as context.
    """
    findings = []
    for dep in snap.deployments:
        current, _ = history(snap, dep)
        if current is None or not _older_than(snap, current, CHURN_WINDOW):
            continue
        created = [
            e
            for e in snap.events_for("ReplicaSet", current["metadata"]["name"])
            if e.get("reason") == "SuccessfulCreate" and _within(snap, e, CHURN_WINDOW)
        ]
        if len(created) >= CHURN_PODS:
            findings.append(_churn_finding(snap, dep, current, created))
    return findings


def _churn_finding(snap: Snapshot, dep: Obj, current: Obj, created: list[Obj]) -> Finding:
    ongoing = any(_within(snap, e, CHURN_ONGOING) for e in created)
    minutes, replicas = int(CHURN_WINDOW.total_seconds() // 60), dep["spec"].get("replicas", 1)
    evidence = [
        f"ReplicaSet {current['metadata']['name']} created {len(created)} pods in the last "
        f"{minutes}m for {replicas} replica(s)",
        *(str(e.get("message")) for e in created[-3:]),
    ]
    name = dep["metadata"]["name"]
    summary = (
        f"deployment {name}'s pods keep being deleted and re-created (its spec did not change)"
    )
    if not ongoing:
        summary = f"deployment {name}'s pods were deleted and re-created repeatedly; it has stopped"
    severity = Severity.CRITICAL if ongoing else Severity.INFO
    fault: Fault = ("Virtualization", "Operation Error")
    score = 0.8 if ongoing else 0.3
    return _finding(
        snap, dep, "pod_churn", summary, evidence, severity=severity, fault=fault, score=score
    )


def _older_than(snap: Snapshot, obj: Obj, age: timedelta) -> bool:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return created is not None and snap.now - created > age


def _within(snap: Snapshot, event: Obj, window: timedelta) -> bool:
    stamp = parse_time(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    return stamp is not None and snap.now - stamp < window


def recent_restarts(snap: Snapshot) -> list[Finding]:
    """Containers that restarted recently but run and serve again: context, not an alarm.

    A restart is itself the whole symptom of a killed container, seen only after it, so it
    is aged against the long window, not the recent one: one from before the window the
    agents read is a leftover of an earlier fault (stopped), one within it a weak lead.
    """
    findings = []
    for dep, pods in _workloads(snap):
        for pod in pods:
            for cs in _statuses(pod):
                term = (cs.get("lastState") or {}).get("terminated") or {}
                finished = parse_time(term.get("finishedAt"))
                if not (cs.get("ready") and finished and snap.now - finished < RECENT):
                    continue
                summary = (
                    f"pod {pod['metadata']['name']} restarted {cs.get('restartCount', 0)}x "
                    "recently and is serving again"
                )
                found = _finding(
                    snap,
                    dep,
                    "restart",
                    summary,
                    [_termination(cs)],
                    severity=Severity.INFO,
                    fault=("Virtualization", "Operation Error"),
                    score=0.3,
                )
                findings.append(aged(found, finished, snap.now, snap.window, "restarted"))
    return findings


ANALYZERS = (
    crash_loops,
    oom_kills,
    image_pulls,
    config_errors,
    unschedulable,
    probe_failures,
    pod_churn,
    recent_restarts,
)
