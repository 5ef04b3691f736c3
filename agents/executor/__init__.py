"""The Executor: proposes typed actions, and runs them only after a human approves.

It holds no standing permission to act: ``propose`` only records a proposal;
``execute`` runs an APPROVED one with the separate executor identity, after
re-checking expiry, the target's fingerprint and the denylist, and
verifies the effect. The approver allowlist is the caller's (bot or console)
to enforce with ``authorize``.

Usage::

    spec = parse_action("kubectl rollout undo deploy/geo -n hotel")
    proposal = await propose(engine, incident_id, spec, requester="aoi", ttl_s=900, api=observer)
    # ... a human clicks Approve: store.proposals.approve(engine, proposal.id, approver="U123")
    result = await execute(engine, proposal.id, executor_api)
"""

from agents.executor.actions import ACTIONS, ActionSpec, Target, action_from_json, action_to_json
from agents.executor.denylist import check_spec
from agents.executor.parse import ActionError, parse_action
from agents.executor.proposals import ExecutionResult, authorize, execute, propose

__all__ = [
    "ACTIONS",
    "ActionError",
    "ActionSpec",
    "ExecutionResult",
    "Target",
    "action_from_json",
    "action_to_json",
    "authorize",
    "check_spec",
    "execute",
    "parse_action",
    "propose",
]
