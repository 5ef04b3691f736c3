"""Real processes racing to approve and execute the same proposals.

Why processes and not threads: the guarantee we sell is "two bot replicas, or
a double click handled by two workers, never run an action twice". Each round
gets a fresh PENDING proposal; every process waits at a barrier, then tries
`approve` (every worker is an approver under the race's policy) followed by
`claim_for_execution` on it. Exactly one claim may win.
Used by the test suite (pass/fail) and by `bench` (figures).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.synchronize import Barrier
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from store.db import make_engine, session_scope
from store.models import Incident, Proposal, ProposalState
from store.policy import ApprovalPolicy
from store.proposals import approve, claim_for_execution
from store.types import utcnow

_TIMEOUT_S = 120.0


@dataclass
class Attempt:
    approved: bool
    claimed: bool
    approve_s: float
    claim_s: float


@dataclass
class RaceReport:
    """What happened: per-round winners, per-statement latencies, racing wall time."""

    rounds: int
    processes: int
    claim_winners: list[int]
    approve_winners: list[int]
    latencies_s: list[float]
    wall_s: float
    final_states: dict[str, int] = field(default_factory=dict)

    @property
    def one_winner_rounds(self) -> int:
        pairs = zip(self.claim_winners, self.approve_winners, strict=True)
        return sum(1 for claims, approvals in pairs if claims == 1 and approvals == 1)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.latencies_s, n=20)[-1] * 1000

    @property
    def rounds_per_s(self) -> float:
        return self.rounds / self.wall_s if self.wall_s else 0.0


def prepare_proposals(url: str, *, rounds: int) -> list[int]:
    """One incident and `rounds` fresh PENDING proposals; their ids in order."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            incident = Incident(question="race", requester="bench")
            session.add(incident)
            session.flush()
            assert incident.id is not None
            proposals = [
                Proposal(
                    incident_id=incident.id,
                    action="scale",
                    action_spec={"replicas": 1, "round": number},
                    requester="bench",
                    expires_at=utcnow() + timedelta(hours=1),
                )
                for number in range(rounds)
            ]
            session.add_all(proposals)
            session.flush()
            return [proposal.id for proposal in proposals if proposal.id is not None]
    finally:
        engine.dispose()


def _worker(
    url: str, ids: list[int], barrier: Barrier, results: Any, name: str, policy: ApprovalPolicy
) -> None:
    try:
        engine = make_engine(url)
        with engine.connect():
            pass  # open the pooled connection before the clock starts
        barrier.wait(_TIMEOUT_S)
        started = time.monotonic()
        attempts = [
            _attempt(engine, proposal_id, barrier=barrier, name=name, policy=policy)
            for proposal_id in ids
        ]
        results.put((name, attempts, started, time.monotonic(), None))
        engine.dispose()
    except BaseException as exc:  # the parent must hear about it, or it waits forever
        barrier.abort()
        results.put((name, [], 0.0, 0.0, f"{type(exc).__name__}: {exc}"))


def _attempt(
    engine: sa.Engine, proposal_id: int, *, barrier: Barrier, name: str, policy: ApprovalPolicy
) -> Attempt:
    barrier.wait(_TIMEOUT_S)
    begin = time.perf_counter()
    approved = approve(engine, proposal_id, approver=name, policy=policy)
    middle = time.perf_counter()
    claimed = claim_for_execution(engine, proposal_id)
    end = time.perf_counter()
    return Attempt(approved, claimed, middle - begin, end - middle)


def race(url: str, *, rounds: int = 200, processes: int = 2) -> RaceReport:
    """Race `processes` spawned processes over `rounds` fresh proposals in the database at `url`."""
    ids = prepare_proposals(url, rounds=rounds)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    names = [f"UWORKER{index}" for index in range(processes)]
    policy = ApprovalPolicy(approvers=frozenset(names))
    workers = [
        context.Process(target=_worker, args=(url, ids, barrier, results, name, policy))
        for name in names
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=_TIMEOUT_S) for _ in workers]
    finally:
        for worker in workers:
            worker.join(_TIMEOUT_S)
    errors = [error for *_, error in outcomes if error]
    if errors:
        raise RuntimeError(f"race worker failed: {errors[0]}")
    return _report(url, ids, outcomes, processes=processes)


def _report(url: str, ids: list[int], outcomes: list[Any], *, processes: int) -> RaceReport:
    per_worker: list[list[Attempt]] = [attempts for _, attempts, *_ in outcomes]
    rounds = list(zip(*per_worker, strict=True))
    return RaceReport(
        rounds=len(ids),
        processes=processes,
        claim_winners=[sum(a.claimed for a in attempts) for attempts in rounds],
        approve_winners=[sum(a.approved for a in attempts) for attempts in rounds],
        latencies_s=[
            s for attempts in per_worker for a in attempts for s in (a.approve_s, a.claim_s)
        ],
        wall_s=max(end for *_, end, _ in outcomes) - min(start for *_, start, _, _ in outcomes),
        final_states=_states(url, ids),
    )


def _states(url: str, ids: list[int]) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(col(Proposal.state), sa.func.count())
                .where(col(Proposal.id).in_(ids))
                .group_by(Proposal.state)
            ).all()
        return {str(state): int(count) for state, count in rows}
    finally:
        engine.dispose()


__all__ = ["ProposalState", "RaceReport", "prepare_proposals", "race"]
