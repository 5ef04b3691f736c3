"""Who may approve an action: one policy, applied by the store's approve transition.

Front ends (Slack buttons, the console, a benchmark) only collect a decision;
whether that decision counts is this policy's to say, and the store applies it
inside the same compare-and-set that moves a proposal to APPROVED, so no front
end can forget it. ``agents.executor.execute`` asks the same policy again about
the approver recorded on the row before anything runs.

Example::

    policy = ApprovalPolicy(approvers=frozenset({"U012AB3CD"}), groups=frozenset({"S0SRE"}))
    policy.authorises("U012AB3CD", requester="U999")        # None: admitted
    policy.authorises("U999", requester="U999")             # the reason it is refused
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApprovalPolicy:
    """Approver ids, approver groups (membership resolved by the front end), self-approval."""

    approvers: frozenset[str]
    groups: frozenset[str] = field(default_factory=frozenset)
    allow_self_approval: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable of strings but keep the frozen, hashable form; a blank
        # entry would let an empty approver through.
        object.__setattr__(self, "approvers", frozenset(a for a in self.approvers if a.strip()))
        object.__setattr__(self, "groups", frozenset(g for g in self.groups if g.strip()))

    def authorises(
        self,
        approver: str | None,
        *,
        requester: str,
        approver_groups: frozenset[str] = frozenset(),
    ) -> str | None:
        """Why ``approver`` may not approve a proposal that ``requester`` asked for, or None."""
        if approver is None or not approver.strip():
            return (
                "no approver is recorded: an approval must name the person who gave it; "
                "approve again from Slack or the console"
            )
        if self.admitted_by(approver, approver_groups) is None:
            return (
                f"{approver} is not an approver: the approval policy lists neither this user "
                "nor a group of theirs; ask a listed approver, or have an administrator add them"
            )
        if not self.allow_self_approval and approver == requester:
            return (
                f"{approver} asked for this action and may not approve it too: ask another "
                "approver (self-approval is switched off)"
            )
        return None

    def admitted_by(
        self, approver: str, approver_groups: frozenset[str] = frozenset()
    ) -> str | None:
        """What admits ``approver``: ``"approvers"``, ``"group:<id>"``, or None."""
        if approver in self.approvers:
            return "approvers"
        shared = sorted(set(approver_groups) & self.groups)
        return f"group:{shared[0]}" if shared else None
