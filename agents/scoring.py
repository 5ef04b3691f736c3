"""AIOpsLab's evaluators, written once, and the GRPO rewards built on them.

The benchmark (``lab.benchmark``), ``bench/`` and the trainer's rewards must agree
on what counts as a right answer, and the trainer may not import ``lab``, so the
rules live here, in ``agents``, with no I/O and no cluster. They follow AIOpsLab's
evaluators (DESIGN.md section 5):

* detection: the submission is "Yes" or "No"; right when it says whether a fault
  was injected. On a no-fault (noop) scenario "Yes" is a false alarm.
* localization: the submission is a list of service names; success is AIOpsLab's
  ``is_exact or (is_subset and len(answer) == 1)``: exactly the faulty set, or one
  name that is one of the faulty services. The score is its graded "Localization
  Accuracy" (1 for exact, the true share of a superset), here in [0, 1].
* analysis: ``{"system_level": ..., "fault_type": ...}``; success needs both labels
  right (case-insensitively); the score counts the labels that are right.
* mitigation: no answer is graded; the lab's fault-specific state check after the
  agent's approved actions decides (``mitigated``), since "all pods Ready" passes
  faults that crash nothing.

``judge`` never raises on what an agent submitted: a malformed answer is a failure
that says why (``"malformed: ..."``), because a benchmark or a training batch must
not stop on one bad answer.

The rewards have TRL's reward-function signature, ``(prompts, completions,
**columns) -> list[float | None]``, and read each completion as an Observer decision
(``agents.decision``); ``None`` marks a row that reward cannot score.

``decision_answer`` is the one reading of a decision as a submission: the rewards,
the benchmark's ``llm`` view and the AIOpsLab adapter's ``submit`` all use it, so a
decision counts the same wherever it is graded.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from agents.decision import Decision, parse_decision
from store.labels import FAULT_TYPES, SYSTEM_LEVELS, TASK_TYPES, GroundTruth, TaskType

_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
_SHOWN = 60  # characters of a bad answer quoted back in a verdict

# Reading a decision (decision_answer). What an answer or a component says when it
# blames nothing:
_NOTHING = frozenset(
    {"", "-", "no", "none", "null", "nil", "n/a", "na", "nothing", "unknown", "no fault",
     "healthy", "false"}
)  # fmt: skip
_NOT_NAMES = frozenset({"yes", "true"})  # a detection answer, not a service called "yes"
_SAYS_YES = re.compile(r"^\W*(?:yes|true|anomal\w*|detected)\b", re.IGNORECASE)
_SAYS_NO = re.compile(
    r"^\W*(?:no|false|none|nothing|healthy)\b|\bno (?:anomal|fault|problem|issue)", re.IGNORECASE
)
_SUBMIT_CALL = re.compile(r"`*\s*submit\s*\((.*)\)\s*`*", re.DOTALL)
_WRAPPING = " \t\r\n`'\"[]().!"
_NAMESPACE_FLAG = re.compile(r"(?:^|\s)(?:-n|--namespace)(?:\s*=\s*|\s+)\S+")
_PORT = re.compile(r":\d{1,5}$")
_DNS_FORM = re.compile(r"\.[a-z0-9-]+\.svc(?:\.cluster\.local)?$")  # geo.NS.svc.cluster.local
# A Kubernetes object name (DNS subdomain), as AIOpsLab's services are named.
_K8S_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?")


@dataclass(frozen=True)
class Verdict:
    """One graded answer: AIOpsLab's success, a score in [0, 1], and why."""

    success: bool
    score: float
    detail: str


class _MalformedError(ValueError):
    """An answer that is not a submission of its task type at all."""


def judge(
    task_type: TaskType, answer: object, truth: GroundTruth, *, mitigated: bool | None = None
) -> Verdict:
    """Grade one submission as AIOpsLab's evaluator for ``task_type`` would.

    ``answer`` is what the agent submitted: detection "Yes"/"No" (or a bool),
    localization a list of names (or one name, comma-separated names, or JSON text of
    a list), analysis a dict of both labels (or JSON text of one). For mitigation the
    answer is ignored and ``mitigated`` (the lab's fault-specific check; ``None`` when
    none ran) decides. Raises ValueError only for a ``task_type`` that is not one of
    TASK_TYPES, which is the caller's mistake rather than the agent's.
    """
    try:
        if task_type == "detection":
            return _judge_detection(_detection(answer), truth)
        if task_type == "localization":
            return _judge_localization(_localization(answer), truth)
        if task_type == "analysis":
            return _judge_analysis(answer, truth)
    except _MalformedError as exc:
        return Verdict(False, 0.0, f"malformed: {exc}")
    if task_type == "mitigation":
        return _judge_mitigation(mitigated)
    raise ValueError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")


def submission_valid(task_type: TaskType, answer: object) -> bool:
    """Whether ``answer`` has the shape of a ``task_type`` submission (right or wrong).

    AIOpsLab counts invalid submissions separately from wrong ones; a mitigation
    submission carries nothing, so any answer is a valid one.
    """
    try:
        if task_type == "detection":
            _detection(answer)
        elif task_type == "localization":
            _localization(answer)
        elif task_type == "analysis":
            _labels(answer)
        elif task_type != "mitigation":
            raise ValueError(
                f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}"
            )
    except _MalformedError:
        return False
    return True


# -- detection ---------------------------------------------------------------------------


def _detection(answer: object) -> bool:
    value = _decode(answer)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().strip(".!").strip().lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
        raise _MalformedError(f'detection answer must be "Yes" or "No", not {_show(value)}')
    raise _MalformedError(f'detection answer must be "Yes" or "No", not {_kind(value)}')


def _judge_detection(said_fault: bool, truth: GroundTruth) -> Verdict:
    """AIOpsLab's detection evaluator: the Yes/No answer equals whether a fault exists."""
    if said_fault == truth.detection:
        what = "Yes, there is a fault" if said_fault else "No, there is no fault"
        return Verdict(True, 1.0, f"right: {what}")
    if said_fault:
        return Verdict(False, 0.0, "false alarm: answered Yes where no fault was injected")
    return Verdict(False, 0.0, "missed: answered No, but a fault was injected")


# -- localization ------------------------------------------------------------------------


def _localization(answer: object) -> list[str]:
    value = _decode(answer)
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, Mapping):
        raise _MalformedError("localization answer must be a list of service names, not an object")
    else:
        raise _MalformedError(
            f"localization answer must be a list of service names, not {_kind(value)}"
        )
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _MalformedError(f"a localization answer names services; {_kind(item)} is not one")
        name = item.strip().lower()
        if name and name not in names:
            names.append(name)
    return names


def _judge_localization(names: list[str], truth: GroundTruth) -> Verdict:
    """AIOpsLab's localization evaluator: success is ``is_exact or (is_subset and len == 1)``.

    ``is_subset`` there asks whether the one-element answer is among the faulty
    services. The score is its graded accuracy: 1 for the exact set, ``|truth| /
    |answer|`` for a superset of it; for a scenario with several faulty services a
    proper subset of them scores the share it names. A truth without components (no
    fault, or a fault with nothing to name) accepts only an empty list.
    """
    expected = {c.strip().lower() for c in truth.components}
    given = set(names)
    if given == expected:
        what = "nothing to name" if not expected else f"exactly {_list(expected)}"
        return Verdict(True, 1.0, f"right: {what}")
    if not expected:
        return Verdict(False, 0.0, f"wrong: no service is faulty, answer named {_list(given)}")
    if not given:
        return Verdict(False, 0.0, f"wrong: named no service; faulty: {_list(expected)}")
    if expected < given:
        extra = _list(given - expected)
        share = len(expected) / len(given)
        return Verdict(False, share, f"wrong: names the faulty services and also {extra}")
    if given < expected:
        share = len(given) / len(expected)
        if len(given) == 1:
            return Verdict(True, share, f"right: {_list(given)} is one of {_list(expected)}")
        return Verdict(False, share, f"wrong: names only part of {_list(expected)}")
    return Verdict(False, 0.0, f"wrong: named {_list(given)}; faulty: {_list(expected)}")


# -- analysis ----------------------------------------------------------------------------


def _labels(answer: object) -> tuple[str, str]:
    value = _decode(answer)
    if not isinstance(value, Mapping):
        raise _MalformedError(
            "analysis answer must be an object with system_level and fault_type, "
            f"not {_kind(value)}"
        )
    missing = [key for key in ("system_level", "fault_type") if key not in value]
    if missing:
        raise _MalformedError(f"analysis answer lacks {' and '.join(missing)}")
    level = _label(value["system_level"], "system_level", SYSTEM_LEVELS)
    fault = _label(value["fault_type"], "fault_type", FAULT_TYPES)
    return level, fault


def _label(value: object, key: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise _MalformedError(f"{key} must be a string, not {_kind(value)}")
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise _MalformedError(f"{key} {_show(value)} is not one of {', '.join(choices)}")


def _judge_analysis(answer: object, truth: GroundTruth) -> Verdict:
    """AIOpsLab's analysis evaluator: system level and fault type both exact.

    It records each label's correctness; the score here is the share right (0, 0.5
    or 1), success needs both. A truth without labels cannot be graded (a failure).
    """
    if truth.system_level is None or truth.fault_type is None:
        return Verdict(False, 0.0, "cannot grade: the ground truth has no analysis labels")
    level, fault = _labels(answer)
    level_ok = level == truth.system_level
    fault_ok = fault == truth.fault_type
    if level_ok and fault_ok:
        return Verdict(True, 1.0, f"right: {level} / {fault}")
    wrong = []
    if not level_ok:
        wrong.append(f"system_level {level} is not {truth.system_level}")
    if not fault_ok:
        wrong.append(f"fault_type {fault} is not {truth.fault_type}")
    return Verdict(False, (level_ok + fault_ok) / 2, "wrong: " + "; ".join(wrong))


# -- mitigation --------------------------------------------------------------------------


def _judge_mitigation(mitigated: bool | None) -> Verdict:
    """AIOpsLab's mitigation evaluator: the fault-specific check finds the fault gone."""
    if mitigated is None:
        return Verdict(False, 0.0, "not mitigated: no check ran")
    if mitigated is True:
        return Verdict(True, 1.0, "mitigated: the fault-specific check found the fault gone")
    return Verdict(False, 0.0, "not mitigated: the fault is still present")


# -- answers as text ---------------------------------------------------------------------


def _decode(answer: object) -> object:
    """JSON text decoded (``'["geo"]'``, ``'"Yes"'``); other text and values as they are."""
    if answer is None:
        raise _MalformedError("no answer was submitted")
    if not isinstance(answer, str):
        return answer
    text = answer.strip()
    if not text:
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        if text[0] in '[{"':
            raise _MalformedError(
                f"answer looks like JSON but does not parse: {_show(text)}"
            ) from exc
        return text


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return _show(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {_show(repr(value))}"


def _show(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")


def _list(names: set[str]) -> str:
    return "[" + ", ".join(sorted(names)) + "]"


# -- rewards (TRL's reward-function signature) -------------------------------------------


def detection_reward(
    prompts: Sequence[object],
    completions: Sequence[object],
    *,
    ground_truth: Sequence[object],
    **_: object,
) -> list[float | None]:
    """1.0 for the right Yes/No, 0.0 for a wrong or unreadable one (AIOpsLab's detection)."""
    return _rewards("detection", completions, ground_truth)


def localization_reward(
    prompts: Sequence[object],
    completions: Sequence[object],
    *,
    ground_truth: Sequence[object],
    **_: object,
) -> list[float | None]:
    """AIOpsLab's graded localization accuracy of the services the decision names."""
    return _rewards("localization", completions, ground_truth)


def analysis_reward(
    prompts: Sequence[object],
    completions: Sequence[object],
    *,
    ground_truth: Sequence[object],
    **_: object,
) -> list[float | None]:
    """The share of the two analysis labels right; None where the truth has no labels."""
    return _rewards("analysis", completions, ground_truth)


def task_reward(
    prompts: Sequence[object],
    completions: Sequence[object],
    *,
    ground_truth: Sequence[object],
    task_type: Sequence[object],
    mitigated: Sequence[object] | None = None,
    **_: object,
) -> list[float | None]:
    """Each row graded by its own ``task_type`` column, for datasets that mix tasks.

    Mitigation rows are scored from a ``mitigated`` column (the lab's check, recorded
    when the data was made); without one, or with an unknown task type, a row is None.
    """
    rows = len(completions)
    _check_rows("task_type", task_type, rows)
    if mitigated is not None:
        _check_rows("mitigated", mitigated, rows)
    _check_rows("ground_truth", ground_truth, rows)
    out: list[float | None] = []
    for index, (completion, kind, raw_truth) in enumerate(
        zip(completions, task_type, ground_truth, strict=True)
    ):
        task = next((t for t in TASK_TYPES if t == kind), None)
        if task is None:
            out.append(None)
        elif task == "mitigation":
            check = None if mitigated is None else mitigated[index]
            out.append(float(check) if isinstance(check, bool) else None)
        else:
            out.append(_reward(task, completion, raw_truth))
    return out


def _rewards(
    task_type: TaskType, completions: Sequence[object], ground_truth: Sequence[object]
) -> list[float | None]:
    _check_rows("ground_truth", ground_truth, len(completions))
    return [
        _reward(task_type, completion, truth)
        for completion, truth in zip(completions, ground_truth, strict=True)
    ]


def _check_rows(column: str, values: object, rows: int) -> None:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise ValueError(f"the {column} column must be a list with one value per completion")
    if len(values) != rows:
        raise ValueError(f"the {column} column has {len(values)} rows for {rows} completions")


def _reward(task_type: TaskType, completion: object, raw_truth: object) -> float | None:
    truth = _ground_truth(raw_truth)
    if truth is None:
        return None
    if task_type == "analysis" and (truth.system_level is None or truth.fault_type is None):
        return None
    decision = _decision(completion)
    if decision is None:
        return 0.0
    return judge(task_type, decision_answer(task_type, decision), truth).score


def _ground_truth(value: object) -> GroundTruth | None:
    if isinstance(value, GroundTruth):
        return value
    try:
        if isinstance(value, str | bytes):
            return GroundTruth.model_validate_json(value)
        if isinstance(value, Mapping):
            return GroundTruth.model_validate(dict(value))
    except ValidationError:
        return None
    return None


def completion_text(completion: object) -> str | None:
    """The model's answer in a TRL completion: the text itself, or the last assistant turn.

    TRL passes plain strings for standard datasets and lists of ``{"role", "content"}``
    messages for conversational ones; content may also be a list of text parts.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, Sequence):
        return None
    for message in reversed(completion):
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            return _content(message.get("content"))
    return None


def _content(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return "".join(parts) if parts else None
    return None


def _decision(completion: object) -> Decision | None:
    text = completion_text(completion)
    if text is None:
        return None
    try:
        return parse_decision(text)
    except (ValueError, RecursionError):
        return None


def decision_answer(task_type: TaskType, decision: Decision) -> object:
    """What an Observer decision submits for ``task_type``, in ``judge``'s answer shapes.

    The one reading of a decision as an answer: the benchmark, the trainer's rewards
    and the AIOpsLab adapter (``lab.benchmark.aiopslab.submission``) all use it. A
    submit decision's instruction (``submit(...)`` around it is dropped) is its answer
    where it says something; otherwise (or when it is empty) its root cause answers.
    Other decisions are read by their root cause alone (their instruction is a
    command, not an answer), so a step that probes first is not scored as if it had
    said nothing.

    * detection: "Yes" or "No". An instruction opening with yes/true/anomalies/
      detected says Yes; one opening with no/false/none/nothing/healthy, or saying
      "no anomaly/fault/problem/issue", says No; else Yes unless the component
      names nothing ("none", "unknown", ...).
    * localization: a list of lower-case service names, read from a JSON or Python
      list or comma-separated names, each stripped of a kind or namespace prefix
      (``deploy/geo``, ``ns/svc/geo``), a ``-n NS`` and a ``geo.NS.svc`` DNS form or
      ``:port``; "none", "no fault", "[]" and the like are ``[]``. Prose, or a bare
      Yes, is no list: the component is read the same way instead.
    * analysis: ``{"system_level", "fault_type"}``, each the first label of its kind
      the instruction names, else the root cause's; None (nothing to submit) when
      both are Unknown and the component names nothing.
    * mitigation: None; the lab's state check grades it, not an answer.
    """
    cause = decision.root_cause
    said = _said(decision)
    if task_type == "detection":
        return "Yes" if _detected(said, cause.component) else "No"
    if task_type == "localization":
        listed = _names(said) if said else None
        if listed is not None:
            return listed
        return _names(cause.component) or []
    if task_type == "analysis":
        level = _named_label(said, SYSTEM_LEVELS) or cause.system_level
        fault = _named_label(said, FAULT_TYPES) or cause.fault_type
        if level == fault == "Unknown" and _nothing(cause.component):
            return None
        return {"system_level": level, "fault_type": fault}
    return None


def _said(decision: Decision) -> str:
    """A submit decision's answer text, without a ``submit(...)`` around it; else ""."""
    if decision.next_action.kind != "submit":
        return ""
    text = decision.next_action.instruction.strip()
    match = _SUBMIT_CALL.fullmatch(text)
    return match.group(1).strip() if match else text


def _detected(said: str, component: str) -> bool:
    if _SAYS_YES.search(said):
        return True
    if _SAYS_NO.search(said):
        return False
    return not _nothing(component)


def _names(text: str) -> list[str] | None:
    """The service names ``text`` lists; ``[]`` when it says none; None when it lists none.

    A JSON or Python list (or one quoted string) may hold anything: its strings that
    are names count. Bare text must be comma-separated words, or it is prose.
    """
    if _nothing(text):
        return []
    value = _literal(text)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        items = [item for item in value if isinstance(item, str)]
        if value and not items:
            return None
    else:
        items = [_NAMESPACE_FLAG.sub("", item).strip(_WRAPPING) for item in text.split(",")]
        if any(char.isspace() for item in items for char in item):
            return None
    if all(_nothing(item) for item in items):
        return []
    names = [name for name in map(_service, items) if name is not None]
    return list(dict.fromkeys(names)) or None


def _service(item: str) -> str | None:
    """One service name as AIOpsLab spells it, or None when ``item`` is not one."""
    name = _NAMESPACE_FLAG.sub("", item).strip(_WRAPPING).lower()
    name = _PORT.sub("", name.rsplit("/", 1)[-1])  # kubernetes names hold no "/"
    name = _DNS_FORM.sub("", name)
    if _nothing(name) or name in _NOT_NAMES or len(name) > 253 or not _K8S_NAME.fullmatch(name):
        return None
    return name


def _named_label(said: str, labels: Sequence[str]) -> str | None:
    """The first of ``labels`` that ``said`` names (a JSON value or the words themselves)."""
    lowered = said.lower()
    hits = sorted((lowered.find(label.lower()), label) for label in labels)
    return next((label for at, label in hits if at >= 0), None)


def _nothing(text: str) -> bool:
    return text.strip(_WRAPPING).lower() in _NOTHING


def _literal(text: str) -> object:
    """``text`` read as JSON or as a Python literal (``['geo']``); None when it is neither."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if text[:1] not in "[('\"":
        return None
    try:
        # An odd escape ("\d") is a SyntaxWarning when parsed: noise, not news, here.
        with warnings.catch_warnings(action="ignore"):
            return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
