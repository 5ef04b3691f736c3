"""The Executor: proposes typed actions, and runs them only after a human approves.

It holds no standing permission to act: ``propose`` only records a proposal,
with the provenance of each of its values (a restoration of something the target
had, or a new value); ``execute`` runs an APPROVED one with the separate
executor identity, after re-checking the approval policy against the recorded
approver, expiry, the target's fingerprint, the denylist and the value rules,
and verifies the effect.

Usage::

    spec = parse_action("kubectl rollout undo deploy/geo -n hotel")
    proposal = await propose(engine, incident_id, spec, requester="U999", ttl_s=900, api=observer)
    policy = ApprovalPolicy(approvers=frozenset({"U123"}))
    # ... a human clicks Approve:
    store.proposals.approve(engine, proposal.id, approver="U123", policy=policy)
    result = await execute(engine, proposal.id, executor_api, policy=policy)
"""

from agents.executor.actions import ACTIONS, ActionSpec, Target, action_from_json, action_to_json
from agents.executor.denylist import check_spec
from agents.executor.parse import ActionError, parse_action
from agents.executor.proposals import ExecutionResult, execute, propose
from agents.executor.provenance import Origin, Provenance
from agents.executor.rules import DEFAULT_RULES, ActionRules

__all__ = [
    "ACTIONS",
    "DEFAULT_RULES",
    "ActionError",
    "ActionRules",
    "ActionSpec",
    "ExecutionResult",
    "Origin",
    "Provenance",
    "Target",
    "action_from_json",
    "action_to_json",
    "check_spec",
    "execute",
    "parse_action",
    "propose",
]
