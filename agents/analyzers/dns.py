"""DNS analyzer: CoreDNS rules that send a Service's name somewhere else.

When a name stops resolving, every caller logs "no such host" and the Service
itself looks perfect. The cluster DNS configuration is where the cause is
visible: a ``rewrite name`` rule for ``<svc>.<ns>.svc.cluster.local``. Fixing
it means editing ``kube-system/coredns``, which the Executor never touches, so
the finding explains the fix for a human instead of proposing one.
"""

from __future__ import annotations

import re

from agents.analyzers.finding import Finding, Severity
from agents.analyzers.snapshot import Snapshot

_REWRITE = re.compile(
    r"^\s*rewrite\s+(?:stop\s+|continue\s+)?name\s+(?:exact\s+|suffix\s+|prefix\s+)?"
    r"(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc\.cluster\.local\.?\s+(?P<to>\S+)",
    re.M,
)


def analyze_dns(snap: Snapshot) -> list[Finding]:
    findings = []
    for match in _REWRITE.finditer(snap.cluster.corefile):
        svc, ns, to = match.group("svc"), match.group("ns"), match.group("to")
        if ns != snap.namespace or svc not in snap.service_names:
            continue
        summary = (
            f"CoreDNS rewrites {svc}.{ns}.svc.cluster.local to {to}: callers of {svc} "
            "cannot resolve it"
        )
        evidence = [
            f"kube-system/coredns Corefile: {match.group(0).strip()}",
            "fix (a human with rights on kube-system): remove the rewrite rule",
        ]
        findings.append(
            Finding(
                analyzer="dns",
                severity=Severity.CRITICAL,
                namespace=ns,
                kind="Service",
                name=svc,
                component=svc,
                summary=summary,
                evidence=evidence,
                suggested_fault=("Virtualization", "Network/Storage Issue"),
                score=0.95,
            )
        )
    return findings
