"""Service analyzers: selectors that match nothing, targetPorts that miss, empty endpoints,
and Deployments scaled to zero behind a Service.

Traffic reaches pods through a Service's selector and targetPort, and both
fail silently: the pods look healthy, the Service exists, and only the callers
see connection refused. These checks compare the Service with the pods it
selects (their declared container ports and the port their readiness probe
checks) and name the exact fix: the port to target, the replicas to restore.
"""

from __future__ import annotations

from agents.analyzers.changes import first_container
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import ActionSpec, PatchServicePort, PatchServiceSelector, Scale


def _finding(
    snap: Snapshot,
    svc: Obj,
    analyzer: str,
    summary: str,
    evidence: list[str],
    *,
    component: str | None = None,
    fault: Fault | None = None,
    fix: ActionSpec | None = None,
    score: float = 0.9,
    severity: Severity = Severity.CRITICAL,
) -> Finding:
    return Finding(
        analyzer=analyzer,
        severity=severity,
        namespace=snap.namespace,
        kind="Service",
        name=svc["metadata"]["name"],
        component=component or svc["metadata"]["name"],
        summary=summary,
        evidence=evidence,
        suggested_fault=fault,
        remediation=fix,
        score=score,
    )


def _selector(svc: Obj) -> dict[str, str]:
    return dict((svc.get("spec") or {}).get("selector") or {})


def analyze_services(snap: Snapshot) -> list[Finding]:
    findings: list[Finding] = []
    for svc in snap.services:
        selector = _selector(svc)
        if not selector:
            continue
        pods = snap.selected_pods(selector)
        if not pods:
            findings += _without_pods(snap, svc, selector)
            continue
        port_finding = _target_port(snap, svc, pods)
        if port_finding is not None:
            findings.append(port_finding)
        elif snap.ready_endpoints(svc["metadata"]["name"]) == 0:
            findings.append(_no_endpoints(snap, svc, pods))
    return findings


def _without_pods(snap: Snapshot, svc: Obj, selector: dict[str, str]) -> list[Finding]:
    name = svc["metadata"]["name"]
    deps = snap.deployments_matching(selector)
    zero = [d for d in deps if int((d.get("spec") or {}).get("replicas", 1)) == 0]
    if zero:
        dep = zero[0]
        dep_name = dep["metadata"]["name"]
        evidence = [
            f"service {name} selects {_labels(selector)}",
            f"deployment {dep_name} has replicas: 0",
        ]
        summary = f"deployment {dep_name} is scaled to 0 but service {name} still routes to it"
        fix = Scale(namespace=snap.namespace, name=dep_name, replicas=1)
        return [
            _finding(
                snap,
                svc,
                "scaled_to_zero",
                summary,
                evidence,
                component=snap.component_of(dep),
                fault=("Virtualization", "Operation Error"),
                fix=fix,
                score=0.95,
            )
        ]
    if deps:
        return []  # pods are being created (or cannot be scheduled): the pod analyzers say why
    return [_selector_mismatch(snap, svc, selector)]


def _selector_mismatch(snap: Snapshot, svc: Obj, selector: dict[str, str]) -> Finding:
    name = svc["metadata"]["name"]
    same = snap.by_name(snap.deployments, name)
    fix = None
    if same is not None:
        labels = (((same.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "labels"
        ) or {}
        if labels:
            fix = PatchServiceSelector(namespace=snap.namespace, name=name, selector=dict(labels))
    summary = f"service {name}'s selector {_labels(selector)} matches no pod: it has no endpoints"
    return _finding(
        snap,
        svc,
        "selector",
        summary,
        [f"selector {_labels(selector)}"],
        fault=("Virtualization", "Misconfiguration"),
        fix=fix,
        score=0.9,
    )


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _pod_ports(pods: list[Obj]) -> tuple[dict[str, int], set[int]]:
    """(named container ports, every port the pods declare or probe)."""
    named: dict[str, int] = {}
    numbers: set[int] = set()
    for pod in pods:
        container = first_container(pod.get("spec") or {})
        for port in container.get("ports") or []:
            if port.get("name"):
                named[str(port["name"])] = int(port["containerPort"])
            numbers.add(int(port["containerPort"]))
        probe = (container.get("readinessProbe") or {}).get("tcpSocket") or {}
        if isinstance(probe.get("port"), int):
            numbers.add(int(probe["port"]))
    return named, numbers


def _target_port(snap: Snapshot, svc: Obj, pods: list[Obj]) -> Finding | None:
    named, numbers = _pod_ports(pods)
    if not numbers:
        return None
    for port in (svc.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        resolved = named.get(target) if isinstance(target, str) else int(target)
        if resolved is not None and resolved in numbers:
            continue
        return _port_finding(snap, svc, port, target, named, numbers)
    return None


def _port_finding(
    snap: Snapshot, svc: Obj, port: Obj, target: object, named: dict[str, int], numbers: set[int]
) -> Finding:
    name = svc["metadata"]["name"]
    right = named.get(str(port.get("name"))) or (
        port.get("port") if port.get("port") in numbers else None
    )
    right = right or min(numbers)
    ready = snap.ready_endpoints(name)
    evidence = [
        f"service {name} port {port.get('port')} -> targetPort {target}",
        f"its pods declare container ports {sorted(numbers)} "
        f"({', '.join(f'{k}={v}' for k, v in named.items())})",
        f"endpoints: {ready} ready address(es), all on the wrong port",
    ]
    summary = (
        f"service {name} sends traffic to port {target}, where its pods do not listen "
        f"(they listen on {right}): callers get connection refused"
    )
    fix = PatchServicePort(
        namespace=snap.namespace, name=name, port=port.get("port"), target_port=right
    )
    return _finding(
        snap,
        svc,
        "target_port",
        summary,
        evidence,
        fault=("Virtualization", "Misconfiguration"),
        fix=fix,
        score=1.0,
    )


def _no_endpoints(snap: Snapshot, svc: Obj, pods: list[Obj]) -> Finding:
    name = svc["metadata"]["name"]
    evidence = [
        f"{len(pods)} selected pod(s), none ready: "
        + ", ".join(p["metadata"]["name"] for p in pods[:3])
    ]
    summary = f"service {name} has no ready endpoints: every request to it fails"
    return _finding(snap, svc, "endpoints", summary, evidence, severity=Severity.WARNING, score=0.6)
