"""The replay loop: recover → inject → ask → score, per scenario and attempt.

One implementation for ``aoi bench``, the tests and ``bench/``. Each attempt
recovers the scenario's application (quiet mode waits until the previous
fault's symptoms have left the window the agents read; ``back_to_back`` does
not, as a person drilling does not), injects the scenario, lets the symptoms
show, and asks the agents the task's question as AIOpsLab phrases it. The
answer is scored with ``agents.scoring`` — the same evaluators the trainer's
rewards use — and mitigation tasks approve *restorations only* (``--yes``'s
rule, enforced by the store) before the fault's own state check decides.

The three applications live in separate namespaces, so their scenarios run
concurrently, one lane per application; scenarios whose faults reach beyond
their namespace (nodes, cluster DNS) run alone afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from kubernetes import client
from sqlalchemy.engine import Engine

from agents.decision import Decision
from agents.events import DiagnosisEvent, ErrorEvent, Finished, ProbeResult, ProposalEvent
from agents.executor import ActionRules, execute
from agents.llm import ChatModel
from agents.runtime import ClusterAccess, Limits, investigate
from agents.scoring import Verdict, decision_answer, judge, submission_valid
from agents.trajectory import IncidentContext
from lab.apps import APPS
from lab.benchmark.harness import LabThread
from lab.benchmark.questions import task_question
from lab.benchmark.results import AttemptResult, ResultsFile
from lab.scenarios.schema import Scenario
from store import proposals as proposal_store
from store.errors import ApprovalRefused
from store.labels import TASK_TYPES
from store.outcomes import record_lab_outcome
from store.policy import ApprovalPolicy

AgentKind = Literal["analyzers", "llm", "llm+analyzers"]
AGENTS: tuple[AgentKind, ...] = get_args(AgentKind)

REQUESTER = "bench"
APPROVER = "bench:automatic"
CLUSTER_WIDE = frozenset({"noisy_neighbour", "dns_failure"})
"""Families whose injection reaches beyond the scenario's namespace: a node's CPU, cluster DNS."""
CHECK_PERIOD_S = 1.0
MIN_RECENT_S = 5
AUTOMATIC = ApprovalPolicy(approvers=frozenset({APPROVER}))
"""The benchmark approves as one automatic identity; the store lets it approve restorations only."""


@dataclass(frozen=True)
class BenchSettings:
    agent: AgentKind = "analyzers"
    attempts: int = 1
    max_steps: int = 4
    window_s: int = 20
    """How far back the analyzers read telemetry and logs."""
    symptom_s: float = 12.0
    """Between injection and the question: the symptoms' onset, as a person notices. At 8 s
    the astronomy shop's feature-flag faults (ad failure, manual GC, product-catalog failure)
    had left too few error spans to tell from noise; at 12 s they were found."""
    back_to_back: bool = False
    concurrent: bool = True
    check_timeout_s: float = 30.0
    recover_timeout_s: float = 90.0

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent must be one of {', '.join(AGENTS)}, not {self.agent!r}")
        if self.attempts < 1 or self.max_steps < 1 or self.window_s < 1 or self.symptom_s < 0:
            raise ValueError("attempts, max_steps and window_s must be >= 1, symptom_s >= 0")

    @property
    def recent_s(self) -> int:
        """What counts as happening now: the time since injection, so back to back a symptom
        that stopped with the previous fault's recovery reads as stopped."""
        return max(MIN_RECENT_S, min(self.window_s, round(self.symptom_s)))

    @property
    def settle_s(self) -> float:
        """The quiet gap after recovery: until the window read at question time is clean."""
        return 0.0 if self.back_to_back else max(0.0, self.window_s - self.symptom_s)


Progress = Callable[[AttemptResult], None]


@dataclass
class Benchmark:
    """Everything an attempt needs: the lab, the store, the agents' and executor's access."""

    lab: LabThread
    engine: Engine
    access: ClusterAccess
    executor_api: client.ApiClient
    model: ChatModel | None
    settings: BenchSettings
    rules: ActionRules
    policy: ApprovalPolicy = field(default_factory=lambda: AUTOMATIC)
    model_for: Callable[[Scenario], ChatModel] | None = None
    """A model per attempt instead of ``model``: a policy that needs the scenario (the
    trajectory collector's teacher, ``lab.benchmark.teacher``)."""

    async def run(
        self,
        scenarios: Sequence[Scenario],
        results: ResultsFile,
        *,
        progress: Progress | None = None,
    ) -> list[AttemptResult]:
        """Every (scenario, attempt) not yet in ``results``; each is recorded as it finishes."""
        done = results.done()
        todo = [
            (s, n)
            for n in range(1, self.settings.attempts + 1)
            for s in scenarios
            if (s.id, n) not in done
        ]
        started = time.monotonic()
        finished: list[AttemptResult] = []

        async def lane(items: Sequence[tuple[Scenario, int]]) -> None:
            for scenario, attempt in items:
                result = await self.attempt(scenario, attempt)
                results.add(result)
                finished.append(result)
                if progress is not None:
                    progress(result)
            if items:
                await self._recover(items[-1][0].app, settle_s=0.0)

        shared = [item for item in todo if not _cluster_wide(item[0])]
        alone = [item for item in todo if _cluster_wide(item[0])]
        try:
            if self.settings.concurrent:
                lanes: dict[str, list[tuple[Scenario, int]]] = defaultdict(list)
                for item in shared:
                    lanes[item[0].app].append(item)
                await asyncio.gather(*(lane(items) for items in lanes.values()))
            else:
                await lane(shared)
            await lane(alone)
        finally:
            results.wall_s += time.monotonic() - started
            results.save()
        return finished

    async def attempt(self, scenario: Scenario, attempt: int) -> AttemptResult:
        """One attempt at one scenario; an agent's failure is a recorded failure, not a crash."""
        began = time.monotonic()
        waited = 0.0
        settle = self.settings.settle_s
        recovery = await self._recover(scenario.app, settle_s=settle)
        waited += min(settle, recovery.seconds)
        await self.lab.call(self.lab.lab.inject(scenario))
        await asyncio.sleep(self.settings.symptom_s)
        waited += self.settings.symptom_s
        base = _base(scenario, attempt, quiet=recovery.quiet)
        agent_began = time.monotonic()
        try:
            outcome = await self._investigate(scenario)
        except Exception as exc:  # the runtime turns most failures into events; this is the rest
            agent_s = time.monotonic() - agent_began
            return AttemptResult(
                **base,
                success=False,
                score=0.0,
                detail="the investigation failed",
                valid=False,
                agent_s=round(agent_s, 3),
                wait_s=round(waited, 3),
                wall_s=round(time.monotonic() - began, 3),
                overhead_s=round(time.monotonic() - began - agent_s - waited, 3),
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        agent_s = time.monotonic() - agent_began
        answer = answer_of(scenario.task_type, outcome.diagnosis, agent=self.settings.agent)
        mitigated: bool | None = None
        answered_s = outcome.answered_s
        note = ""
        if scenario.task_type == "mitigation":
            fix = await self._mitigate(scenario, outcome.proposals)
            mitigated, note = fix.mitigated, fix.note()
            waited += fix.waited_s
            answered_s = agent_s + fix.fixed_s if mitigated else None
        verdict: Verdict = judge(
            scenario.task_type, answer, scenario.ground_truth, mitigated=mitigated
        )
        views = {
            view: judge(
                scenario.task_type,
                answer_of(scenario.task_type, outcome.diagnosis, agent=view),
                scenario.ground_truth,
                mitigated=mitigated,
            ).success
            for view in _views(self.settings.agent)
        }
        wall = time.monotonic() - began
        finished = outcome.finished
        if finished is not None:  # what the trainer's samples need: families, split, verdict
            await asyncio.to_thread(
                record_lab_outcome,
                self.engine,
                finished.incident_id,
                families=scenario.families,
                split=scenario.split,
                correct=verdict.success,
                resolved=mitigated is True,
                notes=verdict.detail + note,
            )
        return AttemptResult(
            **base,
            success=verdict.success,
            score=verdict.score,
            detail=verdict.detail + note,
            valid=submission_valid(scenario.task_type, answer),
            answer=answer,
            time_to_answer_s=round(answered_s, 3) if answered_s is not None else None,
            agent_s=round(agent_s, 3),
            wait_s=round(waited, 3),
            overhead_s=round(max(0.0, wall - agent_s - waited), 3),
            wall_s=round(wall, 3),
            steps=finished.steps if finished else 0,
            tokens_in=finished.tokens_in if finished else 0,
            tokens_out=finished.tokens_out if finished else 0,
            tool_errors=outcome.tool_errors,
            views=views,
        )

    async def _recover(self, app: str, *, settle_s: float) -> _Recovery:
        recovery = await self.lab.call(
            self.lab.lab.recover(
                app=app, settle_s=settle_s, timeout_s=self.settings.recover_timeout_s
            )
        )
        return _Recovery(seconds=recovery.seconds, quiet=recovery.quiet)

    async def _investigate(self, scenario: Scenario) -> _Outcome:
        app = APPS[scenario.app]
        ctx = IncidentContext(
            question=task_question(scenario.task_type, app_name=app.name, namespace=app.namespace),
            requester=REQUESTER,
            cluster="lab",
            scenario_id=scenario.id,
            ground_truth=scenario.ground_truth.model_dump(mode="json"),
        )
        model = self.model_for(scenario) if self.model_for is not None else self.model
        if self.settings.agent == "analyzers":
            model = None
        limits = Limits(
            max_steps=self.settings.max_steps,
            rules=self.rules,
            window=f"{self.settings.window_s}s",
            recent=f"{self.settings.recent_s}s",
        )
        outcome = _Outcome()
        started = time.monotonic()
        async for event in investigate(
            ctx, engine=self.engine, cluster=self.access, model=model, limits=limits
        ):
            if isinstance(event, DiagnosisEvent):
                outcome.diagnosis = event
                outcome.answered_s = time.monotonic() - started
            elif isinstance(event, ProposalEvent):
                outcome.proposals.append(event.proposal_id)
            elif (isinstance(event, ProbeResult) and event.status != "success") or isinstance(
                event, ErrorEvent
            ):
                outcome.tool_errors += 1
            elif isinstance(event, Finished):
                outcome.finished = event
        return outcome

    async def _mitigate(self, scenario: Scenario, proposals: Sequence[int]) -> _Mitigation:
        """Approve restorations only and run them; then the fault's own check decides.

        A proposal that sets a new value is left PENDING, as ``--yes`` leaves it: only
        a person may approve it, so the benchmark counts it and does not run it.
        """
        started = time.monotonic()
        ran = left = 0
        for proposal_id in proposals:
            try:
                won = await asyncio.to_thread(
                    proposal_store.approve,
                    self.engine,
                    proposal_id,
                    approver=APPROVER,
                    policy=self.policy,
                    automatic=True,
                )
            except ApprovalRefused:
                won = False
            if not won:
                left += 1
                continue
            await execute(
                self.engine, proposal_id, self.executor_api, policy=self.policy, rules=self.rules
            )
            ran += 1
        check_began = time.monotonic()
        deadline = check_began + self.settings.check_timeout_s
        while True:
            verdict = await self.lab.call(self.lab.lab.check(scenario))
            if verdict.mitigated or not ran or time.monotonic() >= deadline:
                break
            await asyncio.sleep(CHECK_PERIOD_S)
        now = time.monotonic()
        return _Mitigation(
            mitigated=verdict.mitigated,
            waited_s=now - check_began,
            fixed_s=now - started,
            ran=ran,
            left_for_a_person=left,
        )


@dataclass(frozen=True)
class _Mitigation:
    mitigated: bool
    waited_s: float
    fixed_s: float
    """From the agent's answer until the check passed (or gave up)."""
    ran: int
    left_for_a_person: int

    def note(self) -> str:
        if self.mitigated:
            return ""
        if self.left_for_a_person and not self.ran:
            return (
                f" ({self.left_for_a_person} proposal(s) set a new value: only a person may "
                "approve them, so none ran)"
            )
        return "" if self.ran else " (no action was proposed)"


@dataclass(frozen=True)
class _Recovery:
    seconds: float
    quiet: bool


@dataclass
class _Outcome:
    diagnosis: DiagnosisEvent | None = None
    answered_s: float | None = None
    finished: Finished | None = None
    tool_errors: int = 0
    proposals: list[int] = field(default_factory=list)


def _views(agent: AgentKind) -> tuple[AgentKind, ...]:
    """The agents one trajectory can be scored as: a model's run gives its own answer and the
    merged one (the same investigation, two submissions); the analyzers' only theirs."""
    return ("analyzers",) if agent == "analyzers" else ("llm", "llm+analyzers")


def _cluster_wide(scenario: Scenario) -> bool:
    return any(spec.family in CLUSTER_WIDE for spec in (*scenario.faults, *scenario.decoys))


def _base(scenario: Scenario, attempt: int, *, quiet: bool) -> dict[str, object]:
    return {
        "scenario_id": scenario.id,
        "attempt": attempt,
        "task_type": scenario.task_type,
        "app": scenario.app,
        "families": list(scenario.families),
        "split": scenario.split,
        "source": scenario.source,
        "quiet": quiet,
    }


def answer_of(task_type: str, diagnosis: DiagnosisEvent | None, *, agent: AgentKind) -> object:
    """The submission AIOpsLab would receive for ``task_type`` from this agent's answer.

    ``analyzers`` and ``llm+analyzers`` submit the runtime's final (merged) diagnosis;
    ``llm`` submits the Observer's own last decision, with no analyzer merge, read as
    the trainer's rewards read it (``agents.scoring.decision_answer``), so what the
    model itself contributes is measured. None: the agent gave no answer.
    """
    if diagnosis is None:
        return None
    if agent != "llm":
        if task_type == "detection":
            return "Yes" if diagnosis.detected else "No"
        if task_type == "localization":
            return list(diagnosis.components)
        if task_type == "analysis":
            return {"system_level": diagnosis.system_level, "fault_type": diagnosis.fault_type}
        return None
    own = diagnosis.observer
    if own is None or task_type not in TASK_TYPES:
        return None
    decision = Decision.model_validate(
        {
            "summary": "",
            "phase": "diagnosis",
            "hypotheses": [],
            "root_cause": {
                "component": own.component,
                "system_level": own.system_level,
                "fault_type": own.fault_type,
            },
            "confidence": own.confidence,
            "next_action": {"kind": own.kind, "instruction": own.instruction},
        }
    )
    return decision_answer(task_type, decision)  # type: ignore[arg-type]  # checked above
