"""The approval policy and the action rules, built once from settings for every front end.

The store applies the policy and the Executor re-checks it, but both take it as
an argument; this is where it comes from, so the console, the bot and the
benchmark cannot each invent their own. The console is a local, single-operator
front end: the person at the terminal approves as ``console:<os user>``, an
identity the console adds to the approvers for its own session only. That
person already holds the executor's kubeconfig on this machine, so what the
console guards against is a model's or a log line's value, not the operator:
``--yes`` approves restorations only, and new values wait for the person.

Example::

    policy = approval_policy(settings, local=local_approver())
    rules = action_rules(settings)
"""

from __future__ import annotations

import getpass

from agents.executor import ActionRules
from aoi.settings import Settings
from store.policy import ApprovalPolicy


def local_approver() -> str:
    """The console operator's approver id: ``console:<os user>``."""
    try:
        return f"console:{getpass.getuser()}"
    except (KeyError, OSError):
        return "console:unknown-user"


def approval_policy(settings: Settings, *, local: str | None = None) -> ApprovalPolicy:
    """AOI_APPROVERS and AOI_APPROVER_GROUPS, plus ``local`` (the console's operator) if given."""
    approvers = frozenset(settings.approvers) | ({local} if local else frozenset())
    return ApprovalPolicy(
        approvers=approvers,
        groups=frozenset(settings.approver_groups),
        allow_self_approval=settings.allow_self_approval,
    )


def action_rules(settings: Settings) -> ActionRules:
    """Protected namespaces, image registries and replica bounds from the settings."""
    return ActionRules(
        protected_namespaces=frozenset(settings.protected_namespaces),
        registries=tuple(settings.image_registries),
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
    )
