"""Propose, then (only once approved) execute: the Executor's two entry points.

``propose`` records what would run and never runs it: the action, its target
and a fingerprint of the target at that moment, where each of its values comes
from (``agents.executor.provenance``: a restoration or a new value, with the
diff), the expected effect, the verification, who asked and when the offer
expires. ``execute`` runs only an APPROVED proposal, and re-checks everything a
human approved against:

1. the proposal is APPROVED (not pending, rejected, done...);
2. the approval is not past the offer's expiry, the approval policy admits the
   approver recorded on the row (someone, not the requester unless self-approval
   is on, and never an automatic approval of a new value), and the denylist
   still allows the action under the configured rules (a tampered row, or one a
   front end approved around the store, is refused here);
3. the target is unchanged since the proposal → else STALE. "Unchanged" means the
   same object (uid) with the same spec, data, labels and annotations: its
   `fingerprint`. Status updates do not count; a crash-looping Deployment moves
   its resourceVersion every few seconds and would otherwise never be fixable;
4. exactly one caller wins ``claim_for_execution`` (double clicks, replicas);
5. it runs with the *executor* identity, then polls its verification, and the
   proposal ends DONE or FAILED with the result.

The store's state machine has no APPROVED→EXPIRED (or →REJECTED) move, so an
approved proposal refused by step 2 is claimed and finished FAILED with the
reason, without running; pending proposals past their expiry go EXPIRED via
``store.proposals.expire``. A verified execution records the target's
restorable values (as digests) in the result: the "last known good" that a later
proposal on the same target can restore.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from agents.executor.actions import ActionSpec, Target, action_from_json, action_to_json
from agents.executor.apply import apply_action, read_target
from agents.executor.denylist import check_spec
from agents.executor.parse import ActionError
from agents.executor.provenance import KnownGood, Provenance, snapshot, trace
from agents.executor.rules import DEFAULT_RULES, ActionRules
from agents.executor.verify import DEFAULT_TIMEOUT_S, verify
from agents.redact import redact
from agents.tools.errors import describe_error
from store.db import session_scope
from store.models import Proposal, ProposalState
from store.policy import ApprovalPolicy
from store.proposals import claim_for_execution, expire, finish, mark_stale, transition
from store.types import utcnow

DEFAULT_TTL_S = 15 * 60


class ExecutionResult(BaseModel):
    """What ``execute`` did: whether anything ran, and the proposal's state afterwards."""

    model_config = ConfigDict(frozen=True)

    proposal_id: int
    state: ProposalState | None
    ran: bool = False
    verified: bool | None = None
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


async def propose(
    engine: Engine,
    incident_id: int,
    spec: ActionSpec,
    *,
    requester: str,
    ttl_s: float = DEFAULT_TTL_S,
    api: client.ApiClient,
    rules: ActionRules = DEFAULT_RULES,
) -> Proposal:
    """Record a PENDING proposal for ``spec``; nothing runs. Raises ``ActionError`` when the
    action is denylisted under ``rules``, its target does not exist or it cannot apply to
    it (read with ``api``, any identity that reads the target and its history)."""
    denied = check_spec(spec, rules)
    if denied:
        raise ActionError(denied, denied=True)
    try:
        target = await asyncio.to_thread(read_target, api, spec.target)
    except Exception as exc:  # 404, 403 or no connection: no proposal without a snapshot
        raise ActionError(f"cannot read {spec.target}: {describe_error(exc)}") from exc
    known_good = await asyncio.to_thread(_known_good, engine, spec.target)
    provenance = await _trace(api, spec, target, known_good)
    seen = _Observed.of(target)
    proposal = Proposal(
        incident_id=incident_id,
        action=spec.action,
        action_spec=action_to_json(spec),
        target_kind=spec.target.kind,
        target_namespace=spec.target.namespace,
        target_name=spec.target.name,
        target_resource_version=seen.resource_version,
        target_fingerprint=seen.fingerprint,
        provenance=provenance.to_json(),
        restores_only=provenance.restores_only,
        expected_effect=redact(spec.expected_effect()),
        verification_query=spec.verification(),
        requester=requester,
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    return await asyncio.to_thread(_insert, engine, proposal)


async def _trace(
    api: client.ApiClient, spec: ActionSpec, target: dict[str, Any], known_good: KnownGood | None
) -> Provenance:
    try:
        return await asyncio.to_thread(trace, api, spec, target, known_good=known_good)
    except ActionError:
        raise
    except Exception as exc:  # a read failed, or the live objects are not what we expect
        raise ActionError(
            f"cannot tell where the values of {spec.describe()} come from: {describe_error(exc)}"
        ) from exc


def _known_good(engine: Engine, target: Target) -> KnownGood | None:
    """The newest verified execution on ``target`` that recorded the values it left behind."""
    statement = (
        select(Proposal)
        .where(
            col(Proposal.state) == ProposalState.DONE,
            col(Proposal.target_kind) == target.kind,
            col(Proposal.target_namespace) == target.namespace,
            col(Proposal.target_name) == target.name,
        )
        .order_by(col(Proposal.finished_at).desc())
        .limit(20)
    )
    with session_scope(engine) as session:
        for row in session.exec(statement):
            good = (row.result or {}).get("known_good")
            if row.id is not None and (row.result or {}).get("verified") and isinstance(good, dict):
                at = row.finished_at.isoformat(timespec="seconds") if row.finished_at else "?"
                return KnownGood(proposal_id=row.id, at=at, fields=dict(good))
    return None


def _insert(engine: Engine, proposal: Proposal) -> Proposal:
    with session_scope(engine) as session:
        session.add(proposal)
        session.flush()
        session.refresh(proposal)
    return proposal


def _load(engine: Engine, proposal_id: int) -> Proposal | None:
    with session_scope(engine) as session:
        return session.get(Proposal, proposal_id)


class _UnreachableError(RuntimeError):
    """The target could not be read for a reason other than "it is gone"."""


class _ForbiddenError(RuntimeError):
    """The executor identity may not even read the target: it is not bound in its namespace."""


async def execute(
    engine: Engine,
    proposal_id: int,
    executor_api: client.ApiClient,
    *,
    policy: ApprovalPolicy,
    rules: ActionRules = DEFAULT_RULES,
    verify_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ExecutionResult:
    """Run one APPROVED proposal with the executor identity; refuse everything else.

    ``policy`` is the approval policy the front end approved under: the approver
    recorded on the row must still satisfy it, whoever wrote the row.
    """
    proposal = await asyncio.to_thread(_load, engine, proposal_id)
    refusal = await _precheck(engine, proposal_id, proposal)
    if refusal is not None or proposal is None:
        return refusal or _refused(proposal_id, None, "no such proposal")
    try:
        spec: ActionSpec | None = action_from_json(proposal.action_spec)
    except ValidationError:
        spec = None
    if proposal.expires_at <= utcnow():
        return await _expire_approved(engine, proposal_id)
    why = _approval_refusal(proposal, policy) or _policy_refusal(spec, rules)
    if why is not None or spec is None:
        return await _claim_and_refuse(engine, proposal_id, why or "refused: not an action")
    try:
        stale = await _stale(engine, proposal, spec, executor_api)
    except _UnreachableError as exc:
        return _refused(proposal_id, proposal.state, f"{exc}; try again")
    except _ForbiddenError as exc:
        return await _claim_and_refuse(engine, proposal_id, f"refused: {exc}")
    if stale is not None:
        return stale
    if not await asyncio.to_thread(claim_for_execution, engine, proposal_id):
        return _refused(
            proposal_id,
            await _state(engine, proposal_id),
            "another approval click or replica is already running it",
        )
    return await _run_claimed(engine, proposal, spec, executor_api, verify_timeout_s)


async def _precheck(
    engine: Engine, proposal_id: int, proposal: Proposal | None
) -> ExecutionResult | None:
    if proposal is None:
        return _refused(proposal_id, None, "no such proposal")
    if proposal.state is ProposalState.PENDING:
        if proposal.expires_at <= utcnow():
            await asyncio.to_thread(expire, engine)
            return _refused(
                proposal_id,
                await _state(engine, proposal_id),
                "it expired before anyone approved it",
            )
        return _refused(proposal_id, proposal.state, "it has not been approved")
    if proposal.state is not ProposalState.APPROVED:
        return _refused(proposal_id, proposal.state, f"it is {proposal.state}, not APPROVED")
    return None


async def _expire_approved(engine: Engine, proposal_id: int) -> ExecutionResult:
    """APPROVED but past its expiry: EXPIRED in one compare-and-set; nothing runs."""
    why = "refused: the approval came after the proposal expired; propose again"
    await asyncio.to_thread(
        transition,
        engine,
        proposal_id,
        from_state=ProposalState.APPROVED,
        to_state=ProposalState.EXPIRED,
        finished_at=utcnow(),
        result={"message": why},
    )
    return _refused(proposal_id, await _state(engine, proposal_id), why)


def _approval_refusal(proposal: Proposal, policy: ApprovalPolicy) -> str | None:
    """The approval policy, asked again about the approver the row records."""
    approval = proposal.approval or {}
    via = str(approval.get("via") or "")
    groups = frozenset({via.removeprefix("group:")}) if via.startswith("group:") else frozenset()
    why = policy.authorises(proposal.approver, requester=proposal.requester, approver_groups=groups)
    if why is None and approval.get("automatic") and not proposal.restores_only:
        why = "it was approved automatically but sets a new value: a person must approve it"
    return f"refused by the approval policy: {why}" if why else None


def _policy_refusal(spec: ActionSpec | None, rules: ActionRules) -> str | None:
    """Refusals that need no cluster read: the denylist and the value rules."""
    denied = check_spec(spec, rules) if spec is not None else None
    return f"refused by the denylist: {denied}" if denied else None


async def _claim_and_refuse(engine: Engine, proposal_id: int, why: str) -> ExecutionResult:
    """APPROVED has no move to EXPIRED or REJECTED: claim it and finish FAILED, running nothing."""
    if not await asyncio.to_thread(claim_for_execution, engine, proposal_id):
        return _refused(proposal_id, await _state(engine, proposal_id), "someone else claimed it")
    return await _finish(engine, proposal_id, ran=False, ok=False, message=why)


def fingerprint(obj: dict[str, Any]) -> str:
    """What a human approves against: the object's identity and desired state.

    uid, generation, labels, annotations, spec and (for ConfigMaps) data, hashed;
    status, resourceVersion and managedFields are left out, so a status update
    leaves it as it was while any edit to the object itself changes it.
    """
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {
        "uid": meta.get("uid"),
        "generation": meta.get("generation"),
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        **{key: obj[key] for key in ("spec", "data", "binaryData") if key in obj},
    }
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class _Observed(BaseModel):
    """The target as read when proposing and again before running: None when it is gone."""

    model_config = ConfigDict(frozen=True)

    resource_version: str | None
    fingerprint: str | None

    @classmethod
    def of(cls, target: dict[str, Any]) -> _Observed:
        return cls(
            resource_version=str(target["metadata"].get("resourceVersion") or ""),
            fingerprint=fingerprint(target),
        )

    def matches(self, proposal: Proposal) -> bool:
        if proposal.target_fingerprint is not None:
            return self.fingerprint == proposal.target_fingerprint
        return self.resource_version == proposal.target_resource_version  # rows before 0002


async def _stale(
    engine: Engine, proposal: Proposal, spec: ActionSpec, api: client.ApiClient
) -> ExecutionResult | None:
    """Mark the proposal STALE when its target changed (or vanished) since it was proposed."""
    assert proposal.id is not None
    observed = await _observe(spec, api)
    if observed.matches(proposal):
        return None
    version = observed.resource_version
    await asyncio.to_thread(mark_stale, engine, proposal.id, observed_resource_version=version)
    what = "disappeared" if version is None else f"was edited (resourceVersion {version})"
    target = f"{proposal.target_kind} {proposal.target_namespace}/{proposal.target_name}"
    return _refused(
        proposal.id,
        await _state(engine, proposal.id),
        f"its target {target} {what} since it was proposed: propose again",
    )


async def _observe(spec: ActionSpec, api: client.ApiClient) -> _Observed:
    """The target's version and fingerprint, None when it is gone; else raises
    ``_UnreachableError``."""
    try:
        target = await asyncio.to_thread(read_target, api, spec.target)
    except ApiException as exc:
        if exc.status == 404:
            return _Observed(resource_version=None, fingerprint=None)
        if exc.status == 403:
            raise _ForbiddenError(
                f"the executor identity may not act in namespace {spec.namespace!r} (the "
                "apiserver said 403): bind it there with manifests/rbac/executor-namespace/"
                "rolebinding.yaml if the Executor should manage it, or make the change by hand"
            ) from exc
        raise _UnreachableError(f"cannot read {spec.target}: {describe_error(exc)}") from exc
    except Exception as exc:  # connection errors: the cluster, not the proposal, is the problem
        raise _UnreachableError(f"cannot read {spec.target}: {describe_error(exc)}") from exc
    return _Observed.of(target)


async def _run_claimed(
    engine: Engine, proposal: Proposal, spec: ActionSpec, api: client.ApiClient, timeout_s: float
) -> ExecutionResult:
    assert proposal.id is not None
    try:
        unchanged = (await _observe(spec, api)).matches(proposal)
    except (_UnreachableError, _ForbiddenError):
        unchanged = False
    if not unchanged:
        message = (
            "refused: the target changed (or became unreadable) while the proposal was claimed"
        )
        return await _finish(engine, proposal.id, ran=False, ok=False, message=message)
    try:
        done = await asyncio.to_thread(apply_action, api, spec)
    except Exception as exc:  # the API refused or failed: record it, never raise to the caller
        message = f"failed: {describe_error(exc)}"
        return await _finish(engine, proposal.id, ran=False, ok=False, message=message)
    check = await verify(api, spec, done, timeout_s=timeout_s)
    outcome = "verified" if check.ok else "ran but not verified"
    details: dict[str, Any] = {"applied": done, "verification": check.detail}
    if check.ok:
        details |= await _known_good_after(api, spec)
    message = f"{spec.kubectl()}: {outcome}, {check.detail}"
    return await _finish(
        engine, proposal.id, ran=True, ok=check.ok, message=message, details=details
    )


async def _known_good_after(api: client.ApiClient, spec: ActionSpec) -> dict[str, Any]:
    """The verified target's restorable values as digests (nothing when it cannot be read)."""
    if spec.target.kind not in ("Deployment", "Service", "ConfigMap"):
        return {}
    try:
        target = await asyncio.to_thread(read_target, api, spec.target)
    except Exception:  # the fix is done and verified; a missing snapshot only costs history
        return {}
    return {"known_good": snapshot(spec.target.kind, target)}


async def _finish(
    engine: Engine,
    proposal_id: int,
    *,
    ran: bool,
    ok: bool,
    message: str,
    details: dict[str, Any] | None = None,
) -> ExecutionResult:
    result = {
        "ran": ran,
        "verified": ok if ran else None,
        "message": redact(message),
        **(details or {}),
    }
    await asyncio.to_thread(finish, engine, proposal_id, succeeded=ok, result=result)
    return ExecutionResult(
        proposal_id=proposal_id,
        state=await _state(engine, proposal_id),
        ran=ran,
        verified=ok if ran else None,
        message=redact(message),
        details=details or {},
    )


async def _state(engine: Engine, proposal_id: int) -> ProposalState | None:
    found = await asyncio.to_thread(_load, engine, proposal_id)
    return found.state if found is not None else None


def _refused(proposal_id: int, state: ProposalState | None, why: str) -> ExecutionResult:
    return ExecutionResult(
        proposal_id=proposal_id, state=state, message=f"refused, nothing ran: {why}"
    )
