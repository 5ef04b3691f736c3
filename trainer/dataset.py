"""Step-level training samples from the store, as AOI builds them, and their ``datasets`` form.

For step *n* of a successful trajectory, the prompt is what the Observer was sent at
*n* — the stored messages, read back by ``agents.prompts.step_messages`` and checked
against their hash, never rebuilt — and the reference is the decision it took there.
``trainer.rewards.reference_columns`` turns that decision into the ``reference_*``
columns and ``phase``, so the rewards read a completion and the dataset reads its
reference the same way; the incident's label fills ``ground_truth`` and the
``truth_*`` columns that ``diagnosis_reward`` and ``calibration_reward`` grade against.

Where labels and verdicts come from:

* **Lab incidents**: the benchmark opens each with its ``GroundTruth`` and, once it has
  graded the attempt, records the scenario's fault families, its split and an Outcome
  of source "lab" saying whether the answer passed (``store.outcomes``).
* **Production incidents**: a person's verdict on the diagnosis, an Outcome of source
  "slack_feedback" (the Correct / Wrong buttons and the label form) or "console". A
  confirmation ("Correct", ``correct=True``) makes the trajectory successful, labelled
  by the diagnosis it confirmed; a correction ("Wrong") is a failure, labelled by what
  the person said it was. ``@aoi resolved: <cause>`` closes an incident with a cause in
  words and says nothing about whether the diagnosis was right, so it grades nothing.

An incident's newest verdict (the last Outcome of those sources with ``correct`` set)
decides; the lab's ground truth, where there is one, is the label, else the verdict's
root cause. Failed trajectories are left out unless ``only_successful=False``: AOI
learns only from decisions that led to a right answer.

The trainer may not import the lab, so the lab's train / held-out split reaches
``split_by_family`` as data: the caller passes the held-out family names.

Example::

    samples = collect_samples(engine, services=["geo", "frontend"])
    split = split_by_family(samples, heldout_families={"network_delay", "wrong_binary"})
    train = to_dataset(split.train)    # GRPOTrainer(train_dataset=train, ...)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from agents.decision import Decision
from agents.llm import Message
from agents.prompts import StoredPromptError, prompt_hash, step_messages
from store.db import session_scope
from store.labels import FAULT_TYPES, SYSTEM_LEVELS, GroundTruth
from store.models import Incident, Outcome, Step, StepPhase
from store.outcomes import LAB_SOURCE
from trainer.rewards import reference_columns

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

HUMAN_SOURCES = ("slack_feedback", "console")
"""Outcome sources where a person said whether the diagnosis was right."""
VERDICT_SOURCES = (LAB_SOURCE, *HUMAN_SOURCES)
_CHUNK = 500  # incident ids per IN (...) query: far below every back end's parameter limit

REFERENCE_KEYS = (
    "reference_kind",
    "reference_tool",
    "reference_namespace",
    "reference_component",
    "reference_instruction",
    "reference_summary",
    "phase",
)
"""The columns ``trainer.rewards.reference_columns`` gives, in the dataset's order."""


@dataclass(frozen=True)
class Sample:
    """One Observer step to learn from: what it was sent, what it decided, and the label."""

    prompt: tuple[Message, ...]
    """The messages the model received at this step, byte for byte (redacted as stored)."""
    reference: Decision
    """The decision it took there."""
    truth: GroundTruth | None
    """The incident's label; None when nothing says what was wrong."""
    success: bool | None
    """Whether the trajectory's answer was right; None when nobody graded it."""
    label_source: str
    """Where the verdict came from: "lab", "slack_feedback", "console", or "" (none)."""
    families: tuple[str, ...]
    """The lab fault families behind the incident; () for production incidents."""
    split: str
    """The lab scenario's split ("train" or "held_out"), "" outside the lab."""
    incident_id: int
    step_index: int
    scenario_id: str | None
    prompt_version: str
    guidance_ids: tuple[str, ...]
    services: tuple[str, ...]
    """Service names the reference (and the rewards, from the ``services`` column) read
    word instructions by: the caller's, then the label's components."""
    copies: int = 1
    """How many stored steps this sample stands for (see ``deduplicate``)."""

    @property
    def key(self) -> str:
        """The deduplication key: sha256 over the prompt's hash and the reference's JSON.

        The prompt part is ``agents.prompts.prompt_hash`` (canonical JSON of the role /
        content pairs, the hash the store keeps); the reference part is the decision's
        canonical JSON (keys sorted, no spaces). Equal prompts with equal decisions are
        one sample, whichever incident or step they came from.
        """
        reference = json.dumps(
            self.reference.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        text = f"{prompt_hash(self.prompt)}\n{reference}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def row(self) -> dict[str, Any]:
        """The sample as one dataset row (see ``to_dataset`` for the columns)."""
        truth = self.truth
        components = truth.components if truth is not None else ()
        return {
            "prompt": [{"role": m["role"], "content": m["content"]} for m in self.prompt],
            **reference_columns(self.reference, services=self.services),
            "reference": self.reference.model_dump_json(),
            "ground_truth": truth.model_dump_json() if truth is not None else None,
            "truth_component": components[0] if components else None,
            "truth_system_level": truth.system_level if truth is not None else None,
            "truth_fault_type": truth.fault_type if truth is not None else None,
            "services": list(self.services),
            "families": list(self.families),
            "split": self.split,
            "success": self.success,
            "label_source": self.label_source,
            "incident_id": self.incident_id,
            "step_index": self.step_index,
            "scenario_id": self.scenario_id,
            "prompt_version": self.prompt_version,
            "guidance_ids": list(self.guidance_ids),
            "copies": self.copies,
        }


@dataclass(frozen=True)
class _Verdict:
    source: str
    correct: bool
    root_cause: Mapping[str, Any] | None


class Split(NamedTuple):
    """Samples for training, and those whose fault families the lab holds out."""

    train: list[Sample]
    heldout: list[Sample]


def collect_samples(
    engine: Engine,
    *,
    only_successful: bool = True,
    services: Sequence[str] = (),
    prompt_versions: Collection[str] | None = None,
    unique: bool = True,
) -> list[Sample]:
    """Every Observer step in the store that can be a sample, oldest incident first.

    ``only_successful``: only trajectories whose verdict says the answer was right
    (False: every graded or ungraded trajectory, with ``success`` saying which).
    ``services``: names the cluster has, for reading word instructions ("check geo's
    logs") in references. ``prompt_versions``: keep only steps built by these prompt
    layouts (None: all). ``unique``: ``deduplicate`` the result. A step without a
    stored prompt (an older row, or one whose messages no longer match their hash) or
    without a readable decision (the model failed there) is skipped and counted in
    the log.
    """
    skipped: Counter[str] = Counter()
    samples: list[Sample] = []
    with session_scope(engine) as session:
        incidents = list(session.exec(select(Incident).order_by(col(Incident.id))))
        verdicts = _verdicts(session.exec(_verdict_query()))
        chosen = [
            incident
            for incident in incidents
            if incident.id is not None
            and (not only_successful or _succeeded(verdicts.get(incident.id)))
        ]
        for batch in _chunks(chosen, _CHUNK):
            by_id = {incident.id: incident for incident in batch}
            steps = session.exec(
                select(Step)
                .where(col(Step.incident_id).in_(list(by_id)), col(Step.phase) == StepPhase.REASON)
                .order_by(col(Step.incident_id), col(Step.step_index))
            )
            for step in steps:
                incident = by_id[step.incident_id]
                assert incident.id is not None
                sample = _sample(
                    step, incident, verdicts.get(incident.id), services, prompt_versions, skipped
                )
                if sample is not None:
                    samples.append(sample)
    if skipped:
        log.info(
            "collect_samples: %d sample(s); skipped %s",
            len(samples),
            ", ".join(f"{count} {why}" for why, count in sorted(skipped.items())),
        )
    return deduplicate(samples) if unique else samples


def deduplicate(samples: Iterable[Sample]) -> list[Sample]:
    """One sample per ``Sample.key`` (same prompt, same reference), in first-seen order.

    The first occurrence is kept, with its label and verdict; ``copies`` counts the
    steps it stands for, and ``families`` becomes the union of theirs, so a prompt
    that a held-out family also produced stays out of training (``split_by_family``).
    """
    kept: dict[str, Sample] = {}
    for sample in samples:
        key = sample.key
        first = kept.get(key)
        if first is None:
            kept[key] = sample
            continue
        families = (*first.families, *(f for f in sample.families if f not in first.families))
        kept[key] = replace(first, copies=first.copies + sample.copies, families=families)
    return list(kept.values())


def split_by_family(samples: Iterable[Sample], heldout_families: Collection[str]) -> Split:
    """Samples with any held-out family go to ``heldout``; every other one to ``train``.

    ``heldout_families`` is the lab's held-out split as family names (the trainer does
    not import the lab; its caller passes them). A sample without families (a
    production incident) is no lab family's, so it trains.
    """
    if isinstance(heldout_families, str):
        raise TypeError(
            "heldout_families must be a collection of family names, not one string "
            f"({heldout_families!r}): pass [{heldout_families!r}]"
        )
    heldout = frozenset(heldout_families)
    split = Split([], [])
    for sample in samples:
        (split.heldout if heldout.intersection(sample.families) else split.train).append(sample)
    return split


def to_dataset(samples: Iterable[Sample]) -> Dataset:
    """The samples as a ``datasets.Dataset`` in TRL's conversational format.

    Columns: ``prompt`` (a list of {role, content}), the reference columns
    (``REFERENCE_KEYS``, from ``reference_columns``), ``reference`` (the decision as
    JSON), the label (``ground_truth`` as ``GroundTruth`` JSON, ``truth_component``,
    ``truth_system_level``, ``truth_fault_type``), ``services``, and for bookkeeping
    ``families``, ``split``, ``success``, ``label_source``, ``incident_id``,
    ``step_index``, ``scenario_id``, ``prompt_version``, ``guidance_ids``, ``copies``.
    The rewards read what they need by name and ignore the rest (GRPOConfig keeps the
    extra columns with ``remove_unused_columns=False``).
    """
    from datasets import Dataset  # imported here: the package is heavy to import

    rows = [sample.row() for sample in samples]
    columns = {name: [row[name] for row in rows] for name in _features()}
    return Dataset.from_dict(columns, features=_features())


def _features() -> Any:
    from datasets import Features, List, Value

    text = Value("string")
    return Features(
        {
            "prompt": List({"role": text, "content": text}),
            **dict.fromkeys(REFERENCE_KEYS, text),
            "reference": text,
            "ground_truth": text,
            "truth_component": text,
            "truth_system_level": text,
            "truth_fault_type": text,
            "services": List(text),
            "families": List(text),
            "split": text,
            "success": Value("bool"),
            "label_source": text,
            "incident_id": Value("int64"),
            "step_index": Value("int64"),
            "scenario_id": text,
            "prompt_version": text,
            "guidance_ids": List(text),
            "copies": Value("int64"),
        }
    )


# -- reading the store ------------------------------------------------------------------


def _verdict_query() -> Any:
    return (
        select(Outcome)
        .where(col(Outcome.source).in_(VERDICT_SOURCES), col(Outcome.correct).is_not(None))
        .order_by(col(Outcome.id))
    )


def _verdicts(outcomes: Iterable[Outcome]) -> dict[int, _Verdict]:
    """Each incident's newest verdict (outcomes arrive oldest first)."""
    newest: dict[int, _Verdict] = {}
    for outcome in outcomes:
        if outcome.correct is not None:
            newest[outcome.incident_id] = _Verdict(
                outcome.source, outcome.correct, outcome.root_cause
            )
    return newest


def _succeeded(verdict: _Verdict | None) -> bool:
    return verdict is not None and verdict.correct


def _sample(
    step: Step,
    incident: Incident,
    verdict: _Verdict | None,
    services: Sequence[str],
    prompt_versions: Collection[str] | None,
    skipped: Counter[str],
) -> Sample | None:
    if prompt_versions is not None and step.prompt_version not in prompt_versions:
        skipped["from other prompt versions"] += 1
        return None
    try:
        prompt = step_messages(step)
    except StoredPromptError as exc:
        log.debug("skipped: %s", exc)
        skipped["without a usable stored prompt"] += 1
        return None
    if step.decision is None:
        skipped["where the model gave no decision"] += 1
        return None
    try:
        reference = Decision.model_validate(step.decision)
    except ValidationError:
        skipped["with an unreadable decision"] += 1
        return None
    assert incident.id is not None
    truth = _truth(incident, verdict)
    known = [*services, *(truth.components if truth is not None else ())]
    return Sample(
        prompt=tuple(prompt),
        reference=reference,
        truth=truth,
        success=verdict.correct if verdict is not None else None,
        label_source=verdict.source if verdict is not None else "",
        families=tuple(_strings(incident.families)),
        split=incident.split,
        incident_id=incident.id,
        step_index=step.step_index,
        scenario_id=incident.scenario_id,
        prompt_version=step.prompt_version,
        guidance_ids=tuple(_strings(step.guidance_ids)),
        services=tuple(dict.fromkeys(name for name in known if name)),
    )


def _truth(incident: Incident, verdict: _Verdict | None) -> GroundTruth | None:
    """The lab's answer key when there is one, else what a person's verdict says."""
    if incident.ground_truth is not None:
        try:
            return GroundTruth.model_validate(incident.ground_truth)
        except ValidationError:
            log.warning("incident #%s: its stored ground truth is not a GroundTruth", incident.id)
    if verdict is None or verdict.source not in HUMAN_SOURCES:
        return None
    return _human_truth(verdict, incident.diagnosis)


def _human_truth(verdict: _Verdict, diagnosis: Mapping[str, Any] | None) -> GroundTruth | None:
    """A person's label: the root cause they confirmed ("Correct") or gave ("Wrong").

    AIOpsLab grades analysis on both labels or neither, so one without the other is
    dropped; a confirmed diagnosis that found no fault labels "no fault".
    """
    cause = verdict.root_cause or {}
    component = _label_text(cause.get("component"))
    level = next((v for v in SYSTEM_LEVELS if v == cause.get("system_level")), None)
    fault = next((v for v in FAULT_TYPES if v == cause.get("fault_type")), None)
    if level is None or fault is None:
        level = fault = None
    if component is None and level is None:
        if verdict.correct and diagnosis is not None and diagnosis.get("detected") is False:
            return GroundTruth(detection=False)
        return None
    return GroundTruth(
        detection=True,
        components=(component,) if component else (),
        system_level=level,
        fault_type=fault,
    )


def _label_text(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip() or value.strip().lower() == "unknown":
        return None
    return value.strip()


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _chunks(items: Sequence[Incident], size: int) -> Iterator[Sequence[Incident]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
