"""What the Executor never does, even with an approval.

Approval is a human judgement under time pressure; some changes are too
destructive or too privileged to ever be one click away: deleting namespaces,
nodes or volumes, anything on RBAC objects or Secrets, exec / port-forward /
attach / cp, any change in a protected namespace, and the values
``agents.executor.rules`` never accepts (shells, unlisted registries, replica
counts out of bounds). The list is checked when a command is parsed, when a
proposal is made, and again right before an approved proposal runs, so a
tampered database row cannot slip past it.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.executor.actions import ActionSpec
from agents.executor.rules import (
    DEFAULT_PROTECTED_NAMESPACES,
    DEFAULT_RULES,
    ActionRules,
    value_refusal,
)

PROTECTED_NAMESPACES = DEFAULT_PROTECTED_NAMESPACES
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


def check_spec(spec: ActionSpec, rules: ActionRules = DEFAULT_RULES) -> str | None:
    """Why this action may never run, or None."""
    if spec.namespace in rules.protected_namespaces:
        return (f"{spec.namespace} is a protected namespace: the Executor only reads there; "
                "a human with cluster-admin rights must make this change")  # fmt: skip
    return value_refusal(spec, rules)


def check_command(
    verb: str, words: Sequence[str], namespace: str | None, rules: ActionRules = DEFAULT_RULES
) -> str | None:
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
    if namespace in rules.protected_namespaces:
        return f"{namespace} is a protected namespace: the Executor only reads there"
    return None
