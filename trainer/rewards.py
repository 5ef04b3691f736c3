"""The GRPO rewards for Observer decisions, in TRL's reward-function signature.

A training sample is one step of a successful trajectory (AOI's step-level
samples): the prompt is the Observer's context at that step, the reference is
the decision taken there, and the incident's label grades the diagnosis. Each
reward here scores one aspect of a completion, so TRL logs each by its function
name and ``trainer.config.RewardWeights`` weighs them:

==========================  =====================================================  ==========
reward                      what it scores                                         range
==========================  =====================================================  ==========
``format_reward``           the completion is a decision ``parse_decision`` reads  0 or 1
``summary_reward``          summary token similarity to ``reference_summary``      [0, 1]
``action_kind_reward``      next_action.kind equals ``reference_kind``             0 or 1
``tool_reward``             the tool it would use equals ``reference_tool``        0 or 1
``namespace_reward``        its target namespace equals ``reference_namespace``    0 or 1
``component_reward``        its target component equals ``reference_component``    0 or 1
``instruction_reward``      instruction token similarity (same kind only)          [0, 1]
``diagnosis_reward``        root cause against the label (AIOpsLab's graders)      [0, 1]
``safety_reward``           a write in an observe phase, or a denylisted action    -1 or 0
``calibration_reward``      1 - (confidence/100 - diagnosis)², Brier-style         [0, 1]
==========================  =====================================================  ==========

Each returns ``None`` for a row it cannot score (the sample lacks the reference
field or the label), which TRL leaves out of the weighted sum. Whatever the
model wrote, none of them raises: an unreadable completion (empty, not JSON, cut
off, a non-string content) scores the lowest value, 0.0, and ``SAFETY_PENALTY``
for safety, because an answer that cannot be read cannot be shown to be read-only.

How a decision's action is read — its tool, namespace and component — is
``action_fields``, built on the Probe's own command grammar and router and on the
Executor's action parser, so a completion is read as the runtime would act on
it. ``reference_columns`` reads a reference decision the same way: a dataset
built with it agrees with these rewards by construction. Diagnoses are graded by
``agents.scoring`` (AIOpsLab's semantics), never re-implemented here.

Columns (each a list with one value per completion; all optional):
``reference_kind``, ``reference_tool``, ``reference_namespace``,
``reference_component``, ``reference_instruction``, ``reference_summary``,
``phase``, ``truth_component``, ``truth_system_level``, ``truth_fault_type``,
``ground_truth`` (a ``GroundTruth``, its JSON or dict, instead of the ``truth_``
columns) and ``services`` (names the cluster has, to read "check geo's logs").
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.decision import ACTION_KINDS, INSTRUCTION_CHARS, SUMMARY_CHARS, Decision, parse_decision
from agents.executor import ActionError, parse_action
from agents.probe.command import CommandError, parse_kubectl

# The Probe's routing words: a word instruction is read as the Probe routes it. Its router
# (Probe.plan) needs the cluster's workload list, so it cannot be called offline.
from agents.probe.probe import (
    METRIC_WORDS,
    NAMESPACE_FLAG,
    TRACE_WORDS,
    kubectl_commands,
    mentioned,
    promql_expression,
)
from agents.scoring import completion_text, decision_answer, judge
from store.labels import FAULT_TYPES, SYSTEM_LEVELS, GroundTruth

log = logging.getLogger(__name__)

RewardFunction = Callable[..., list[float | None]]
"""TRL's reward signature: ``fn(prompts, completions, **columns) -> list[float | None]``."""

SAFETY_PENALTY = -1.0
"""What ``safety_reward`` gives an unsafe (or unreadable) completion; a safe one gets 0.0."""

ACT_PHASES = frozenset({"mitigation", "act"})
"""The phase values (a decision's, or the store's StepPhase) in which a change may be proposed;
every other phase (triage, diagnosis, verification, observe, reason, none) observes."""

_TOKEN = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
# Pod names under a workload: Kubernetes' random suffixes use an alphabet without vowels
# (so "user-posts" is no pod of "user"), after a ReplicaSet's hash; StatefulSets count.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_POD_SUFFIX = re.compile(rf"(?:{_SAFE}{{6,10}}-)?{_SAFE}{{5}}|[0-9]+")
_PARSE_CACHE = 1024
_CACHED_CHARS = 8192


# -- reading completions ---------------------------------------------------------------


def read_decision(completion: object) -> Decision | None:
    """The decision in a TRL completion (text or chat messages); None when there is none.

    Never raises: whatever the model produced, the answer is a decision or None.
    """
    text = completion_text(completion)
    if text is None:
        return None
    # Every reward reads the same completion: parse it once per batch, not once per reward,
    # but keep no huge text alive in the cache for it.
    return _parse_cached(text) if len(text) <= _CACHED_CHARS else _parse(text)


def _parse(text: str) -> Decision | None:
    try:
        return parse_decision(text)
    except Exception:  # the model's text: anything it makes the parser do is "no decision"
        return None


_parse_cached = functools.lru_cache(maxsize=_PARSE_CACHE)(_parse)


@dataclass(frozen=True)
class ActionFields:
    """What a decision's next action does, as the runtime would act on it.

    ``tool`` is the Probe tool a probe instruction goes to (kubectl, promql, traces,
    metrics, analyze) or the catalogue action an executor instruction is (scale,
    rollback, ...); None for a submit or an unreadable action. ``component`` is the
    object it targets (a deployment, pod or service name, or a submit's first
    localization name).
    """

    kind: str
    tool: str | None
    namespace: str | None
    component: str | None


def action_fields(decision: Decision, *, services: Sequence[str] = ()) -> ActionFields:
    """Read ``decision.next_action`` into kind, tool, namespace and component.

    ``services`` are workload names the cluster has: a word instruction ("check geo's
    logs") targets the first one it names, as the Probe routes it.
    """
    action = decision.next_action
    text = action.instruction
    known = [name.lower() for name in services if name]
    if action.kind == "probe":
        return _probe_fields(text, known)
    if action.kind == "executor":
        return _executor_fields(text)
    names = decision_answer("localization", decision)
    component = names[0] if isinstance(names, list) and names else None
    return ActionFields("submit", None, _namespace_in(text), component)


def reference_columns(decision: Decision, *, services: Sequence[str] = ()) -> dict[str, str | None]:
    """A reference decision as the dataset columns these rewards read (the label aside).

    Use it to build a dataset: references read with ``action_fields`` agree with how
    the rewards read completions.
    """
    fields = action_fields(decision, services=services)
    return {
        "reference_kind": fields.kind,
        "reference_tool": fields.tool,
        "reference_namespace": fields.namespace,
        "reference_component": fields.component,
        "reference_instruction": decision.next_action.instruction,
        "reference_summary": decision.summary,
        "phase": decision.phase,
    }


def _probe_fields(text: str, services: list[str]) -> ActionFields:
    commands = kubectl_commands(text)
    if commands:
        try:
            command = parse_kubectl(commands[0])
        except CommandError:  # refused or not understood: the kubectl tool still gets it
            return ActionFields("probe", "kubectl", _namespace_in(text), None)
        target = command.target
        component = target.name if target is not None and target.name else None
        if component is None and command.selector:
            component = command.selector.split(",", 1)[0].partition("=")[2] or None
        return ActionFields("probe", "kubectl", command.namespace or _namespace_in(text), component)
    lowered = text.lower()
    named = mentioned(lowered, services)
    return ActionFields(
        "probe", _word_tool(text, lowered, named), _namespace_in(text), named[0] if named else None
    )


def _word_tool(text: str, lowered: str, named: list[str]) -> str:
    """The tool of the Probe's first call for an instruction in words (Probe.plan's order)."""
    if promql_expression(text):
        return "promql"
    if any(word in lowered for word in TRACE_WORDS):
        return "traces"
    if any(word in lowered for word in METRIC_WORDS):
        return "metrics"
    if "event" in lowered or named:
        return "kubectl"
    if ("pods" in lowered or "status" in lowered) and NAMESPACE_FLAG.search(lowered):
        return "kubectl"
    return "analyze"


def _executor_fields(text: str) -> ActionFields:
    try:
        spec = parse_action(text)
    except ActionError:
        return ActionFields("executor", None, _namespace_in(text), None)
    return ActionFields("executor", spec.action, spec.namespace, spec.name)


def _namespace_in(text: str) -> str | None:
    match = NAMESPACE_FLAG.search(text.lower())
    return match.group(1) if match else None


def write_shaped(instruction: str) -> bool:
    """Whether a probe instruction asks for a change: a command the Probe's grammar refuses
    (writes, exec, shell syntax, identity flags, Secrets) or one the Executor reads as an
    action. A request in words ("why does geo restart") is not a command."""
    for command in kubectl_commands(instruction):
        try:
            parse_kubectl(command)
        except CommandError as exc:
            if exc.denied:
                return True
    try:
        parse_action(instruction)
    except ActionError as exc:
        return exc.denied
    return True


def similarity(given: str, reference: str) -> float:
    """Token similarity in [0, 1]: difflib's ratio (2·matches / total) over lower-case words.

    Order counts (``kubectl logs geo`` is not ``geo logs kubectl``); names such as
    ``user-service`` stay one token, flags lose their dashes.
    """
    left = _TOKEN.findall(given.lower())
    right = _TOKEN.findall(reference.lower())
    if not left and not right:
        return 1.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


def same_component(given: str | None, reference: str) -> bool:
    """``given`` names ``reference``: the same name (any case), or one of its pods
    (``geo-7d9f8c6b5-x2x7q`` for ``geo``)."""
    if not given:
        return False
    name, want = given.strip().lower(), reference.strip().lower()
    if name == want:
        return True
    prefix = f"{want}-"
    return name.startswith(prefix) and _POD_SUFFIX.fullmatch(name[len(prefix) :]) is not None


# -- columns ---------------------------------------------------------------------------


def _column(columns: Mapping[str, object], name: str, rows: int) -> list[object]:
    """One value per row; all None when the dataset has no such column."""
    values = columns.get(name)
    if values is None:
        return [None] * rows
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise ValueError(f"the {name} column must be a list with one value per completion")
    if len(values) != rows:
        raise ValueError(f"the {name} column has {len(values)} rows for {rows} completions")
    return list(values)


def _text(value: object, limit: int = 2 * INSTRUCTION_CHARS) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:limit]


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [item for item in value if isinstance(item, str)]
    return []


def _rows(
    name: str,
    completions: Sequence[object],
    score: Callable[[int, Decision | None], float | None],
    *,
    lowest: float,
) -> list[float | None]:
    """``score(row, decision)`` for each completion; an unexpected error is the lowest value."""
    out: list[float | None] = []
    for index, completion in enumerate(completions):
        try:
            out.append(score(index, read_decision(completion)))
        except Exception as exc:  # a batch never stops on one completion
            log.warning(
                "%s: row %d scored %s after %s: %s", name, index, lowest, type(exc).__name__, exc
            )
            out.append(lowest)
    return out


# -- the rewards -----------------------------------------------------------------------


def format_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1.0 when the completion is a decision the Observer's own parser accepts, else 0.0.

    AOI's format reward: the runtime can act only on a decision it can read.
    """
    return _rows("format_reward", completions, lambda _i, d: float(d is not None), lowest=0.0)


def summary_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """Token similarity of the summary to ``reference_summary`` (AOI's summary reward)."""
    reference = _column(columns, "reference_summary", len(completions))

    def score(row: int, decision: Decision | None) -> float | None:
        want = _text(reference[row], SUMMARY_CHARS)
        if want is None:
            return None
        return 0.0 if decision is None else similarity(decision.summary, want)

    return _rows("summary_reward", completions, score, lowest=0.0)


def action_kind_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1.0 when next_action.kind (probe, executor, submit) is ``reference_kind`` (AOI action)."""
    reference = _column(columns, "reference_kind", len(completions))

    def score(row: int, decision: Decision | None) -> float | None:
        want = _text(reference[row])
        if want is None or want.lower() not in ACTION_KINDS:
            return None
        return float(decision is not None and decision.next_action.kind == want.lower())

    return _rows("action_kind_reward", completions, score, lowest=0.0)


def tool_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1.0 when the action goes to ``reference_tool`` (a Probe tool or a catalogue action)."""
    return _field_reward("tool_reward", "reference_tool", completions, columns)


def namespace_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1.0 when the action targets ``reference_namespace`` (AOI's namespace reward)."""
    return _field_reward("namespace_reward", "reference_namespace", completions, columns)


def component_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1.0 when the action targets ``reference_component`` (or one of its pods)."""
    return _field_reward("component_reward", "reference_component", completions, columns)


def _field_reward(
    name: str, column: str, completions: Sequence[object], columns: Mapping[str, object]
) -> list[float | None]:
    rows = len(completions)
    reference = _column(columns, column, rows)
    known = _column(columns, "services", rows)
    components = _column(columns, "reference_component", rows)

    def score(row: int, decision: Decision | None) -> float | None:
        want = _text(reference[row])
        if want is None:
            return None
        if decision is None:
            return 0.0
        # The reference component is a service this cluster has, whatever the column says.
        services = [*_names(known[row]), *_names(components[row])]
        fields = action_fields(decision, services=services)
        if column == "reference_component":
            return float(same_component(fields.component, want))
        got = fields.tool if column == "reference_tool" else fields.namespace
        return float(got is not None and got.lower() == want.lower())

    return _rows(name, completions, score, lowest=0.0)


def instruction_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """Token similarity to ``reference_instruction`` when the kinds agree, else 0.0.

    AOI's instruction reward. A probe command copied into a submit answer is not the
    same instruction, so a different kind scores nothing; with no ``reference_kind``
    the texts alone are compared.
    """
    rows = len(completions)
    reference = _column(columns, "reference_instruction", rows)
    kinds = _column(columns, "reference_kind", rows)

    def score(row: int, decision: Decision | None) -> float | None:
        want = _text(reference[row])
        if want is None:
            return None
        if decision is None:
            return 0.0
        kind = _text(kinds[row])
        if kind is not None and kind.lower() != decision.next_action.kind:
            return 0.0
        return similarity(decision.next_action.instruction, want)

    return _rows("instruction_reward", completions, score, lowest=0.0)


def diagnosis_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """How right the root cause is against the label, by AIOpsLab's graders; None unlabelled.

    The component counts as much as each of the two analysis labels: (localization
    score + 2 x analysis score) / 3 where the label has both, either alone otherwise.
    A no-fault label grades detection (a decision blaming nothing is right).
    """
    truths = _truths(columns, len(completions))

    def score(row: int, decision: Decision | None) -> float | None:
        truth = truths[row]
        if truth is None:
            return None
        return 0.0 if decision is None else diagnosis_score(decision, truth)

    return _rows("diagnosis_reward", completions, score, lowest=0.0)


def diagnosis_score(decision: Decision, truth: GroundTruth) -> float:
    """The decision's diagnosis graded against ``truth``, in [0, 1] (see diagnosis_reward)."""
    if not truth.detection:
        return judge("detection", decision_answer("detection", decision), truth).score
    total, weight = 0.0, 0
    if truth.components:
        total += judge("localization", decision_answer("localization", decision), truth).score
        weight += 1
    if truth.system_level is not None and truth.fault_type is not None:
        total += 2 * judge("analysis", decision_answer("analysis", decision), truth).score
        weight += 2
    if not weight:
        return judge("detection", decision_answer("detection", decision), truth).score
    return total / weight


def calibration_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """1 - (confidence/100 - diagnosis score)²: confident when right, unsure when wrong.

    A Brier score turned into a reward; None unlabelled (nothing says what was right).
    """
    truths = _truths(columns, len(completions))

    def score(row: int, decision: Decision | None) -> float | None:
        truth = truths[row]
        if truth is None:
            return None
        if decision is None:
            return 0.0
        return 1.0 - (decision.confidence / 100 - diagnosis_score(decision, truth)) ** 2

    return _rows("calibration_reward", completions, score, lowest=0.0)


def safety_reward(
    prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """``SAFETY_PENALTY`` for an unsafe step, else 0.0.

    Unsafe: an executor action in an observe phase; a probe instruction that is a write
    (``write_shaped``) in an observe phase; an executor action the denylist refuses in
    any phase; an unreadable completion. A step is an observe phase unless ``phase``
    says mitigation/act or the reference itself proposed a fix there (``reference_kind``
    executor); with neither column every step observes, the runtime's default.
    """
    rows = len(completions)
    phases = _column(columns, "phase", rows)
    kinds = _column(columns, "reference_kind", rows)

    def score(row: int, decision: Decision | None) -> float | None:
        if decision is None:
            return SAFETY_PENALTY
        observing = _observing(phases[row], kinds[row])
        action = decision.next_action
        if action.kind == "executor":
            return SAFETY_PENALTY if observing or _denied(action.instruction) else 0.0
        if action.kind == "probe" and observing and write_shaped(action.instruction):
            return SAFETY_PENALTY
        return 0.0

    return _rows("safety_reward", completions, score, lowest=SAFETY_PENALTY)


def _observing(phase: object, reference_kind: object) -> bool:
    said = (_text(phase) or "").lower()
    return said not in ACT_PHASES and (_text(reference_kind) or "").lower() != "executor"


def _denied(instruction: str) -> bool:
    try:
        parse_action(instruction)
    except ActionError as exc:
        return exc.denied
    return False


def _truths(columns: Mapping[str, object], rows: int) -> list[GroundTruth | None]:
    given = _column(columns, "ground_truth", rows)
    components = _column(columns, "truth_component", rows)
    levels = _column(columns, "truth_system_level", rows)
    faults = _column(columns, "truth_fault_type", rows)
    return [
        _ground_truth(given[row]) or _label(components[row], levels[row], faults[row])
        for row in range(rows)
    ]


def _ground_truth(value: object) -> GroundTruth | None:
    try:
        if isinstance(value, GroundTruth):
            return value
        if isinstance(value, str | bytes) and value.strip():
            return GroundTruth.model_validate_json(value)
        if isinstance(value, Mapping):
            return GroundTruth.model_validate(dict(value))
    except ValidationError:
        return None
    return None


def _label(component: object, level: object, fault: object) -> GroundTruth | None:
    """A fault's label from the ``truth_`` columns; None when they say nothing usable."""
    name = _text(component)
    system_level = next(
        (v for v in SYSTEM_LEVELS if v.lower() == (_text(level) or "").lower()), None
    )
    fault_type = next((v for v in FAULT_TYPES if v.lower() == (_text(fault) or "").lower()), None)
    if system_level is None or fault_type is None:
        system_level = fault_type = None  # AIOpsLab grades analysis on both labels or none
    if name is None and system_level is None:
        return None
    return GroundTruth(
        detection=True,
        components=(name,) if name else (),
        system_level=system_level,
        fault_type=fault_type,
    )


RULE_REWARDS: dict[str, RewardFunction] = {
    fn.__name__: fn
    for fn in (
        format_reward,
        summary_reward,
        action_kind_reward,
        tool_reward,
        namespace_reward,
        component_reward,
        instruction_reward,
        diagnosis_reward,
        safety_reward,
        calibration_reward,
    )
}
"""Every rule-based reward by its name (the name TRL logs it under)."""

RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in RULE_REWARDS},
    "safety_reward": (SAFETY_PENALTY, 0.0),
}
"""Each reward's lowest and highest value (None aside)."""
