"""What the Executor never does, even with an approval.

Approval is a human judgement under time pressure; some changes are too
destructive or too privileged to ever be one click away: deleting namespaces,
nodes or volumes, anything on RBAC objects or Secrets, exec / port-forward /
attach / cp, and any change in the system namespaces. The list is checked when
a command is parsed, when a proposal is made, and again right before an
approved proposal runs, so a tampered database row cannot slip past it.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.executor.actions import ActionSpec

PROTECTED_NAMESPACES = frozenset({"kube-system", "aoi-system", "kube-public", "kube-node-lease"})
INTERACTIVE_VERBS = frozenset({"exec", "port-forward", "attach", "cp", "proxy", "debug"})
NEVER_DELETED = frozenset(
    {
        "ns", "namespace", "namespaces", "no", "node", "nodes", "pv", "pvs",
        "persistentvolume", "persistentvolumes", "pvc", "pvcs", "persistentvolumeclaim",
        "persistentvolumeclaims",
    }
)  # fmt: skip
NEVER_TOUCHED = frozenset(
    {
        "secret", "secrets", "role", "roles", "rolebinding", "rolebindings", "clusterrole",
        "clusterroles", "clusterrolebinding", "clusterrolebindings", "serviceaccount",
        "serviceaccounts", "sa", "certificatesigningrequest", "csr",
    }
)  # fmt: skip


def check_spec(spec: ActionSpec) -> str | None:
    """Why this action may never run, or None."""
    if spec.namespace in PROTECTED_NAMESPACES:
        return (f"{spec.namespace} is a system namespace: the Executor only reads there; "
                "a human with cluster-admin rights must make this change")  # fmt: skip
    return None


def check_command(verb: str, words: Sequence[str], namespace: str | None) -> str | None:
    """Why a kubectl write command may never run (before it is even parsed into an action)."""
    if verb in INTERACTIVE_VERBS:
        return f"`kubectl {verb}` opens a session into the cluster; the Executor never does that"
    kinds = {w.split("/", 1)[0].split(".", 1)[0].lower() for w in words}
    touched = sorted(kinds & NEVER_TOUCHED)
    if touched:
        what = ", ".join(touched)
        return f"{what}: Secrets, RBAC and service accounts are never changed by the Executor"
    deleted = sorted(kinds & NEVER_DELETED)
    if verb == "delete" and deleted:
        return f"deleting {', '.join(deleted)} is never allowed: it destroys data or capacity"
    if namespace in PROTECTED_NAMESPACES:
        return f"{namespace} is a system namespace: the Executor only reads there"
    return None
