"""Approve and Reject clicks: the approval policy, the store's compare-and-set, the executor.

A button's value is the proposal id and nothing else; everything a decision
depends on is read from the store when the click arrives, so a click after a
restart, on another replica, or on a message that is hours old is judged on
the row as it is now. The store's approve transition applies the approval
policy (approvers, approver groups resolved here from Slack, self-approval) in
the same statement that moves the proposal, so double clicks and clicks on two
replicas approve once; ``execute`` re-checks the approver, the expiry and the
target's state, then runs the action with the executor identity.

Whoever is refused gets an ephemeral message saying why, and nothing moves.
The proposal's message is updated with who decided, when, the result and the
verification; expired or stale proposals' messages are updated by ``sweep``. An
approval whose execution ran nothing and left the proposal APPROVED (the
cluster could not be read) keeps its Approve button, and an approver's next
click runs the execution again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from agents.executor import Provenance, execute
from bot import blocks
from bot.config import BotConfig, ClusterRoute
from bot.directory import GroupDirectory
from bot.metrics import BotMetrics
from bot.slack_api import Poster, SlackUnavailable
from bot.text import mention, safe
from store import proposals as proposal_store
from store import slack as slack_store
from store.db import session_scope
from store.errors import ApprovalRefused
from store.models import Incident, Proposal, ProposalState, SlackMessage
from store.types import utcnow

log = logging.getLogger("aoi.bot")

_ID = re.compile(r"^[0-9]{1,12}$")
FINAL_STATES = frozenset(
    {
        ProposalState.DONE,
        ProposalState.FAILED,
        ProposalState.REJECTED,
        ProposalState.EXPIRED,
        ProposalState.STALE,
    }
)


def parse_id(value: object) -> int | None:
    """A button value as an id: digits only, or None (anything else is not ours)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return None
    number = int(value)
    return number if number > 0 else None


@dataclass(frozen=True)
class Click:
    """One Approve/Reject click as Slack delivered it."""

    user: str
    channel: str
    message_ts: str
    value: object
    thread_ts: str = ""


@dataclass
class _Loaded:
    proposal: Proposal
    provenance: Provenance
    message: SlackMessage | None
    incident: Incident | None


class ApprovalDesk:
    """Decides clicks on proposals and keeps their messages truthful."""

    def __init__(
        self,
        *,
        engine: Engine,
        poster: Poster,
        config: BotConfig,
        groups: GroupDirectory,
        metrics: BotMetrics,
    ) -> None:
        self._engine = engine
        self._poster = poster
        self._config = config
        self._groups = groups
        self._metrics = metrics
        self._running: set[int] = set()

    async def approve(self, click: Click) -> None:
        loaded = await self._load(click)
        if loaded is None:
            return
        proposal = loaded.proposal
        assert proposal.id is not None
        route = self._route(loaded.incident)
        if route is None or route.executor_api is None:
            cluster = loaded.incident.cluster if loaded.incident else "?"
            await self._refuse(
                click,
                f"I have no executor identity for cluster `{safe(cluster, 80)}`, so nothing "
                "can run: configure one (AOI_EXECUTOR_KUBECONFIG) and click again.",
                outcome="no_executor",
            )
            return
        groups = await self._groups.groups_of(click.user, self._config.policy.groups)
        try:
            won = await asyncio.to_thread(
                proposal_store.approve,
                self._engine,
                proposal.id,
                approver=click.user,
                policy=self._config.policy,
                approver_groups=groups,
            )
        except ApprovalRefused as exc:
            await self._refuse(click, safe(str(exc), 600) + self._unread(), outcome="refused")
            return
        if not won:
            if not await self._retry(click, proposal.id, route, groups):
                await self._lost(click, proposal.id)
            return
        self._metrics.approval("approved")
        self._running.add(proposal.id)  # a second click here now waits for this one
        try:
            await self._show(loaded, state="APPROVED", who=click.user, result="running…")
        finally:
            self._running.discard(proposal.id)
        await self._run(click, loaded, route)

    async def _retry(
        self, click: Click, proposal_id: int, route: ClusterRoute, groups: frozenset[str]
    ) -> bool:
        """Run an APPROVED proposal again whose last execution ran nothing; False: not that case.

        The approval on the row stands (``execute`` re-checks it); the clicker must be
        an approver too, and not the requester, or the click is refused.
        """
        if proposal_id in self._running:
            return False
        loaded = await asyncio.to_thread(_load, self._engine, proposal_id)
        if loaded is None or loaded.proposal.state is not ProposalState.APPROVED:
            return False
        refusal = self._config.policy.authorises(
            click.user, requester=loaded.proposal.requester, approver_groups=groups
        )
        if refusal is not None:
            await self._refuse(
                click,
                safe(f"Proposal #{proposal_id} not run again: {refusal}", 600) + self._unread(),
                outcome="refused",
            )
            return True
        self._metrics.approval("retried")
        await self._show(
            loaded, state="APPROVED", who=loaded.proposal.approver or click.user, result=None
        )
        await self._run(click, loaded, route)
        return True

    async def _run(self, click: Click, loaded: _Loaded, route: ClusterRoute) -> None:
        """Execute an APPROVED proposal, then make its message and the thread say how it went."""
        proposal = loaded.proposal
        assert proposal.id is not None
        assert route.executor_api is not None
        self._running.add(proposal.id)
        try:
            result = await execute(
                self._engine,
                proposal.id,
                route.executor_api,
                policy=self._config.policy,
                rules=self._config.rules,
                verify_timeout_s=self._config.verify_timeout_s,
            )
        finally:
            self._running.discard(proposal.id)
        state = str(result.state) if result.state else "FAILED"
        # "approved" counts approvals (once each); an execution that ran nothing is "not_run".
        not_run = result.state in (ProposalState.APPROVED, ProposalState.EXECUTING)
        self._metrics.approval("not_run" if not_run else state.lower())
        who = proposal.approver or click.user
        if result.state is ProposalState.APPROVED:
            # Nothing ran and the approval stands (the cluster could not be read): the
            # message keeps its Approve button so that an approver can try again.
            await self._show_retry(loaded, who=who, why=result.message)
        elif result.state in FINAL_STATES or result.state is None:
            if await self._show(
                loaded, state=state, who=who, result=result.message, verified=result.verified
            ):
                await self._final(loaded)
        else:
            # EXECUTING: another click or replica claimed it first; that one reports.
            await self._refuse(
                click,
                f"Proposal #{proposal.id} is already running (another click or replica); "
                "nothing was run twice.",
                outcome="already_decided",
            )
            return
        verdict = (
            "verified :white_check_mark:"
            if result.verified
            else "not verified yet :warning:"
            if result.ran
            else "nothing ran"
        )
        retry = " Click *Approve* to try again." if result.state is ProposalState.APPROVED else ""
        await self._note(
            loaded,
            f"Proposal #{proposal.id} approved by {mention(who)}: *{state}* — "
            f"{safe(result.message, 500)} ({verdict}).{retry}",
            key=f"aoi-result-{proposal.id}-{uuid.uuid4().hex[:16]}",  # one per attempt
        )

    async def reject(self, click: Click) -> None:
        loaded = await self._load(click)
        if loaded is None:
            return
        proposal = loaded.proposal
        assert proposal.id is not None
        policy = self._config.policy
        groups = await self._groups.groups_of(click.user, policy.groups)
        if click.user != proposal.requester and policy.admitted_by(click.user, groups) is None:
            await self._refuse(
                click,
                "Only an approver or the person who asked may reject a proposal; nothing changed."
                + self._unread(),
                outcome="refused",
            )
            return
        won = await asyncio.to_thread(
            proposal_store.reject, self._engine, proposal.id, approver=click.user
        )
        if not won:
            await self._lost(click, proposal.id)
            return
        self._metrics.approval("rejected")
        if await self._show(loaded, state="REJECTED", who=click.user, result="nothing was changed"):
            await self._final(loaded)

    def _unread(self) -> str:
        """A refusal's note on approver groups Slack would not list (they admitted nobody)."""
        unread = sorted(g for g in self._config.policy.groups if g in self._groups.errors)
        if not unread:
            return ""
        return f" (I could not read user group(s) {safe(', '.join(unread), 200)} from Slack.)"

    async def _load(self, click: Click) -> _Loaded | None:
        proposal_id = parse_id(click.value)
        if proposal_id is None:
            await self._refuse(
                click,
                "That button does not carry a proposal of mine; nothing changed.",
                outcome="malformed",
            )
            return None
        loaded = await asyncio.to_thread(_load, self._engine, proposal_id)
        if loaded is None:
            await self._refuse(
                click, f"There is no proposal #{proposal_id}; nothing changed.", outcome="unknown"
            )
            return None
        message = loaded.message
        if message is not None and message.channel_id != click.channel:
            await self._refuse(
                click,
                f"That button is not proposal #{proposal_id}'s message; nothing changed.",
                outcome="mismatch",
            )
            return None
        return loaded

    async def _lost(self, click: Click, proposal_id: int) -> None:
        """The compare-and-set found the proposal already decided, expired or gone."""
        loaded = await asyncio.to_thread(_load, self._engine, proposal_id)
        if loaded is None:
            await self._refuse(click, f"Proposal #{proposal_id} is gone.", outcome="unknown")
            return
        row = loaded.proposal
        if row.state is ProposalState.PENDING and row.expires_at <= utcnow():
            await asyncio.to_thread(proposal_store.expire, self._engine)
            loaded = await asyncio.to_thread(_load, self._engine, proposal_id) or loaded
            row = loaded.proposal
        who = f" by {mention(row.approver)}" if row.approver else ""
        await self._refuse(
            click,
            f"Proposal #{proposal_id} is already *{row.state}*{who}; nothing was run again.",
            outcome="already_decided",
        )
        if row.state in FINAL_STATES and await self._show(
            loaded, state=str(row.state), who=row.approver or "", result=None
        ):
            await self._final(loaded)

    async def _refuse(self, click: Click, text: str, *, outcome: str) -> None:
        self._metrics.approval(outcome)
        try:
            await self._poster.ephemeral(
                click.channel, click.user, text, thread_ts=click.thread_ts or None
            )
        except SlackUnavailable as exc:
            log.warning("could not tell %s why their click was refused: %s", click.user, exc)

    async def _show(
        self,
        loaded: _Loaded,
        *,
        state: str,
        who: str,
        result: str | None,
        verified: bool | None = None,
    ) -> bool:
        """Edit the proposal's message; False when there is none or Slack refused the edit."""
        message = loaded.message
        if message is None:
            return False
        stored = loaded.proposal.result if isinstance(loaded.proposal.result, dict) else {}
        if result is None and stored.get("message"):
            result = str(stored["message"])
        if verified is None and isinstance(stored.get("verified"), bool):
            verified = bool(stored["verified"])
        original = blocks.proposal_blocks_from_row(loaded.proposal, loaded.provenance)
        if state in ("EXPIRED", "STALE") and not who:
            body = blocks.expired_blocks(original, state=state)
        else:
            body = blocks.decided_blocks(
                original,
                state=state,
                who=who,
                when=loaded.proposal.decided_at or utcnow(),
                result=safe(result, 500) if result else None,
                verified=verified,
            )
        text = f"Proposal #{loaded.proposal.id}: {state}"
        try:
            await self._poster.update(message.channel_id, message.ts, text=text, blocks=body)
        except SlackUnavailable as exc:
            log.warning("could not update proposal #%s's message: %s", loaded.proposal.id, exc)
            return False
        return True

    async def _show_retry(self, loaded: _Loaded, *, who: str, why: str) -> None:
        """The pending rendering (its Approve button kept) and why the approval ran nothing."""
        message = loaded.message
        if message is None:
            return
        original = blocks.proposal_blocks_from_row(loaded.proposal, loaded.provenance)
        line = (
            f"✅ Approved by {mention(who)}, but nothing ran: {safe(why, 1200)}. "
            "An approver may click *Approve* to try again."
        )
        note: dict[str, Any] = {
            "type": "context",
            "block_id": blocks.DECISION_BLOCK,
            "elements": [{"type": "mrkdwn", "text": line}],
        }
        kept: list[dict[str, Any]] = []
        for block in original:
            if block.get("block_id") == blocks.DECISION_BLOCK:
                continue
            if block.get("type") == "actions":
                # Reject has no move from APPROVED: only Approve (try again) stays.
                elements = [
                    e for e in block.get("elements", []) if e.get("action_id") == blocks.APPROVE
                ]
                kept.append(note)
                if elements:
                    kept.append({**block, "elements": elements})
                continue
            kept.append(block)
        if note not in kept:
            kept.append(note)
        while len(kept) > blocks.MESSAGE_BLOCKS:  # room for the note: drop a detail above it
            del kept[kept.index(note) - 1]
        body = blocks.check_blocks(kept)
        text = f"Proposal #{loaded.proposal.id}: approved, nothing ran yet (try again)"
        try:
            await self._poster.update(message.channel_id, message.ts, text=text, blocks=body)
        except SlackUnavailable as exc:
            log.warning("could not update proposal #%s's message: %s", loaded.proposal.id, exc)

    async def _final(self, loaded: _Loaded) -> None:
        if loaded.message is not None and loaded.message.id is not None:
            await asyncio.to_thread(slack_store.mark_message_final, self._engine, loaded.message.id)

    async def _note(self, loaded: _Loaded, text: str, *, key: str) -> None:
        incident = loaded.incident
        if incident is None or not incident.channel_id:
            return
        try:
            await self._poster.post(
                incident.channel_id, thread_ts=incident.thread_ts or None, text=text, key=key
            )
        except SlackUnavailable as exc:
            log.warning("could not post the result of proposal #%s: %s", loaded.proposal.id, exc)

    def _route(self, incident: Incident | None) -> ClusterRoute | None:
        if incident is None:
            return None
        return next((r for r in self._config.routes if r.name == incident.cluster), None)

    async def sweep(self) -> int:
        """Expire overdue proposals and update each decided one's message once; returns how many."""
        await asyncio.to_thread(proposal_store.expire, self._engine)
        # Slack stops redelivering an event within the hour: a day of claims is plenty.
        await asyncio.to_thread(
            slack_store.prune_events, self._engine, before=utcnow() - timedelta(days=1)
        )
        rows = await asyncio.to_thread(slack_store.settled_proposal_messages, self._engine)
        updated = 0
        for proposal, message in rows:
            if proposal.state not in FINAL_STATES or proposal.id in self._running:
                continue
            assert message.id is not None
            # Claim the update first: of several replicas sweeping, one edits the message.
            if not await asyncio.to_thread(
                slack_store.mark_message_final, self._engine, message.id
            ):
                continue
            loaded = _Loaded(proposal, Provenance.from_json(proposal.provenance), message, None)
            await self._show(
                loaded, state=str(proposal.state), who=proposal.approver or "", result=None
            )
            updated += 1
        return updated


def _load(engine: Engine, proposal_id: int) -> _Loaded | None:
    with session_scope(engine) as session:
        proposal = session.get(Proposal, proposal_id)
        if proposal is None:
            return None
        incident = session.get(Incident, proposal.incident_id)
    message = slack_store.proposal_message(engine, proposal_id)
    return _Loaded(proposal, Provenance.from_json(proposal.provenance), message, incident)
