"""Storage analyzers: claims that stay Pending, and why.

A Pending claim keeps its pod Pending forever with no crash to look at. The
reason decides the fix: a storage class nobody provisions (the claim or the
Deployment is wrong) versus a volume that still carries a claimRef to a claim
deleted by a redeploy (the volume must be freed, which only a human with
rights over PersistentVolumes should do).
"""

from __future__ import annotations

from agents.analyzers.changes import history, pod_spec
from agents.analyzers.finding import Fault, Finding, Severity
from agents.analyzers.snapshot import Obj, Snapshot
from agents.executor.actions import Rollback


def analyze_claims(snap: Snapshot) -> list[Finding]:
    findings = []
    for claim in snap.claims:
        if (claim.get("status") or {}).get("phase") != "Pending":
            continue
        for dep in _mounting(snap, claim):
            findings.append(_claim_finding(snap, claim, dep))
    return findings


def _mounting(snap: Snapshot, claim: Obj) -> list[Obj]:
    name = claim["metadata"]["name"]
    found = []
    for dep in snap.deployments:
        volumes = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "volumes"
        ) or []
        if any((v.get("persistentVolumeClaim") or {}).get("claimName") == name for v in volumes):
            found.append(dep)
    return found


def _claim_finding(snap: Snapshot, claim: Obj, dep: Obj) -> Finding:
    name = claim["metadata"]["name"]
    klass = (claim.get("spec") or {}).get("storageClassName")
    released = _released_volume(snap, claim)
    owner = dep["metadata"]["name"]
    evidence = [f"claim {name} is Pending (storageClassName {klass})"]
    evidence += [str(e.get("message")) for e in snap.events_for("PersistentVolumeClaim", name)][-2:]
    fix = None
    if released is not None:
        evidence.append(
            f"volume {released} is Released: it still references the deleted claim {name}"
        )
        summary = (
            f"claim {name} of {owner} cannot bind: its volume {released} was kept from before "
            "a redeploy and still points at the old claim"
        )
        fault: Fault = ("Virtualization", "Operation Error")
    else:
        known = {sc["metadata"]["name"] for sc in snap.cluster.storage_classes}
        if klass and klass not in known:
            evidence.append(f"storage class {klass} does not exist and no volume offers it")
        summary = (
            f"claim {name} of {owner} stays Pending: no volume or provisioner for class {klass}"
        )
        fault = ("Virtualization", "Network/Storage Issue")
        fix = _rollback_if_new_claim(snap, dep, name)
    return Finding(
        analyzer="storage",
        severity=Severity.CRITICAL,
        namespace=snap.namespace,
        kind="PersistentVolumeClaim",
        name=name,
        component=snap.component_of(dep),
        summary=summary,
        evidence=evidence,
        suggested_fault=fault,
        remediation=fix,
        score=0.93,
    )


def _released_volume(snap: Snapshot, claim: Obj) -> str | None:
    meta = claim["metadata"]
    klass = (claim.get("spec") or {}).get("storageClassName")
    for volume in snap.cluster.volumes:
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        same_class = (volume.get("spec") or {}).get("storageClassName") == klass
        stale = ref.get("name") == meta["name"] and ref.get("uid") != meta.get("uid")
        phase = (volume.get("status") or {}).get("phase")
        if same_class and (stale or phase == "Released"):
            return str(volume["metadata"]["name"])
    return None


def _rollback_if_new_claim(snap: Snapshot, dep: Obj, claim: str) -> Rollback | None:
    _, previous = history(snap, dep)
    if previous is None:
        return None
    volumes = pod_spec(previous).get("volumes") or []
    if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in volumes):
        return None
    return Rollback(namespace=snap.namespace, name=dep["metadata"]["name"])
