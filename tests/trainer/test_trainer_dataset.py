"""Training samples from a real store, filled by real investigations.

Each trajectory here is ``investigate(...)`` against a real HTTP server speaking the
Kubernetes API (``support.kube_api``), a real SQLite store and the scripted model
double, which records every prompt it receives. Lab incidents are graded the way the
benchmark grades them (``store.outcomes.record_lab_outcome``), production ones the
way the bot records a person's verdict (``store.slack.record_label`` with a Feedback
row, ``close_incident`` for ``@aoi resolved``). The samples must be exactly what the
double received and decided; the split must never let a held-out family train.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from support.decisions import decision
from support.kube_api import kube_cluster

from agents.decision import Decision, parse_decision
from agents.events import Finished
from agents.llm import Message, ScriptedModel
from agents.prompts import PROMPT_VERSION, SYSTEM_PROMPT
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from store import slack as slack_store
from store.db import make_engine, session_scope
from store.labels import GroundTruth
from store.migrate import upgrade
from store.models import Feedback, Rating
from store.outcomes import record_lab_outcome
from trainer.dataset import (
    REFERENCE_KEYS,
    Sample,
    collect_samples,
    deduplicate,
    split_by_family,
    to_dataset,
)
from trainer.rewards import RULE_REWARDS, diagnosis_score, reference_columns

NAMESPACE = "shop"
POD = "geo-7c9d5b6f4-x2x9q"
LOG = "2026-01-01T12:00:00Z dial tcp 10.0.0.3:9999: connection refused\n"
TRUTH = GroundTruth(
    detection=True,
    components=("geo",),
    system_level="Virtualization",
    fault_type="Misconfiguration",
)
FAMILY = "target_port_misconfig"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/aoi.db")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cluster() -> Iterator[ClusterAccess]:
    with kube_cluster(NAMESPACE, {POD: LOG}) as access:
        yield access


def _script(component: str = "geo") -> list[str]:
    """Probe the logs, a broken answer and its repair, then the submission."""
    return [
        decision(
            "probe",
            f"kubectl logs {POD} -n {NAMESPACE} --tail=50",
            component,
            fault_type="Misconfiguration",
        ),
        "this is not a JSON decision",
        decision("probe", f"kubectl get pods -n {NAMESPACE}", component),
        decision("submit", component, component, 80, fault_type="Misconfiguration"),
    ]


def _decisions(script: Sequence[str]) -> list[Decision]:
    """What the runtime took from the script: every reply that parses (the repair's too)."""
    out = []
    for text in script:
        try:
            out.append(parse_decision(text))
        except ValueError:
            continue
    return out


async def _run(
    engine: sa.Engine,
    cluster: ClusterAccess,
    ctx: IncidentContext,
    script: Sequence[str] | None = None,
) -> tuple[int, ScriptedModel]:
    model = ScriptedModel(list(script or _script()))
    events = [
        event
        async for event in investigate(
            ctx, engine=engine, cluster=cluster, model=model, limits=Limits(max_steps=3)
        )
    ]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.status == "DIAGNOSED"
    return finished.incident_id, model


def _lab(question: str = "geo fails in shop, why?", scenario: str = "geo-port") -> IncidentContext:
    return IncidentContext(
        question=question,
        requester="bench",
        cluster="lab",
        scenario_id=scenario,
        ground_truth=TRUTH.model_dump(mode="json"),
    )


def _slack(thread: str) -> IncidentContext:
    return IncidentContext(
        question=f"checkout is broken in {NAMESPACE} ({thread})",
        requester="U1",
        team_id="T1",
        channel_id="C1",
        thread_ts=thread,
    )


def _observer_prompts(model: ScriptedModel) -> list[list[Message]]:
    """The Observer's prompts (the repair request has its own system prompt)."""
    return [p for p in model.prompts if p[0]["content"] == SYSTEM_PROMPT]


def _verdict(engine: sa.Engine, incident_id: int, *, correct: bool, cause: dict[str, str]) -> None:
    """A person's verdict as the bot records it: an Outcome label and a Feedback row."""
    slack_store.record_label(
        engine, incident_id, by="U2", source="slack_feedback", correct=correct, root_cause=cause
    )
    rating = Rating.UP if correct else Rating.DOWN
    with session_scope(engine) as session:
        session.add(Feedback(incident_id=incident_id, slack_user="U2", rating=rating))


# -- collecting -------------------------------------------------------------------------


async def test_each_decision_of_a_successful_trajectory_is_a_sample_of_what_the_model_saw(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    incident_id, model = await _run(engine, cluster, _lab())
    record_lab_outcome(engine, incident_id, families=[FAMILY], split="train", correct=True)

    samples = collect_samples(engine, services=["frontend"])

    sent = _observer_prompts(model)
    assert len(sent) == 3
    assert [list(s.prompt) for s in samples] == sent
    assert [s.reference for s in samples] == _decisions(_script())
    assert [s.step_index for s in samples] == sorted({s.step_index for s in samples})
    for sample in samples:
        assert sample.incident_id == incident_id
        assert sample.truth == TRUTH
        assert (sample.families, sample.split, sample.success) == ((FAMILY,), "train", True)
        assert (sample.label_source, sample.scenario_id) == ("lab", "geo-port")
        assert sample.prompt_version == PROMPT_VERSION
        assert sample.services == ("frontend", "geo")
        row = sample.row()
        assert {k: row[k] for k in REFERENCE_KEYS} == reference_columns(
            sample.reference, services=sample.services
        )
        assert Decision.model_validate_json(row["reference"]) == sample.reference
    first = samples[0].row()
    assert first["reference_kind"] == "probe"
    assert (first["reference_tool"], first["reference_namespace"]) == ("kubectl", NAMESPACE)
    assert first["reference_component"] == POD
    assert samples[-1].row()["reference_kind"] == "submit"
    assert (first["truth_component"], first["truth_fault_type"]) == ("geo", "Misconfiguration")


async def test_failed_and_ungraded_trajectories_are_left_out_unless_asked_for(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    won, _ = await _run(engine, cluster, _lab("geo fails, first try"))
    lost, _ = await _run(engine, cluster, _lab("geo fails, second try"), _script("frontend"))
    ungraded, _ = await _run(engine, cluster, _lab("geo fails, never graded"))
    resolved, _ = await _run(engine, cluster, _slack("1.1"))
    record_lab_outcome(engine, won, families=[FAMILY], split="train", correct=True)
    record_lab_outcome(engine, lost, families=[FAMILY], split="train", correct=False)
    # `@aoi resolved` closes with a cause in words: it says nothing about the diagnosis.
    assert slack_store.close_incident(engine, resolved, by="U1", cause="rolled back geo")

    assert {s.incident_id for s in collect_samples(engine)} == {won}
    every = collect_samples(engine, only_successful=False)
    success = {s.incident_id: s.success for s in every}
    assert success == {won: True, lost: False, ungraded: None, resolved: None}
    assert {s.truth for s in every if s.incident_id == resolved} == {None}
    assert len(every) == 4 * 3


async def test_a_person_s_verdict_makes_a_production_incident_a_sample_labelled_by_it(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    confirmed, model = await _run(engine, cluster, _slack("1.1"))
    corrected, _ = await _run(engine, cluster, _slack("2.2"))
    changed_mind, _ = await _run(engine, cluster, _slack("3.3"))
    label = {"component": "geo", "system_level": "Virtualization", "fault_type": "Misconfiguration"}
    other = {"component": "mongodb-geo", "system_level": "Application", "fault_type": "Code Defect"}
    _verdict(engine, confirmed, correct=True, cause=label)
    _verdict(engine, corrected, correct=False, cause=other)
    _verdict(engine, changed_mind, correct=True, cause=label)
    _verdict(engine, changed_mind, correct=False, cause=other)  # the newest verdict decides

    samples = collect_samples(engine)
    assert {s.incident_id for s in samples} == {confirmed}
    assert [list(s.prompt) for s in samples] == _observer_prompts(model)
    assert {(s.truth, s.label_source, s.families, s.split) for s in samples} == {
        (TRUTH, "slack_feedback", (), "")
    }
    wrong = [s for s in collect_samples(engine, only_successful=False) if s.success is False]
    assert {s.incident_id for s in wrong} == {corrected, changed_mind}
    assert {s.truth for s in wrong} == {
        GroundTruth(
            detection=True,
            components=("mongodb-geo",),
            system_level="Application",
            fault_type="Code Defect",
        )
    }


async def test_identical_steps_are_one_sample_that_counts_its_copies(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    for _ in range(2):  # the same scenario, the same answers: the same prompts
        incident_id, _model = await _run(engine, cluster, _lab())
        record_lab_outcome(engine, incident_id, families=[FAMILY], split="train", correct=True)
    # Another family's scenario asked the same question and decided the same at step 1.
    other, _ = await _run(engine, cluster, _lab(), _script("geo")[:1] + ["not json"] * 3)
    record_lab_outcome(engine, other, families=["network_delay"], split="held_out", correct=True)

    every = collect_samples(engine, unique=False)
    samples = collect_samples(engine)
    assert len(every) == 3 + 3 + 1
    assert len(samples) == 3
    assert [s.copies for s in samples] == [3, 2, 2]
    assert len({s.key for s in samples}) == 3
    assert samples[0].families == (FAMILY, "network_delay")
    # The first step is also the held-out family's prompt, so it may not train.
    split = split_by_family(samples, {"network_delay"})
    assert [s.step_index for s in split.heldout] == [samples[0].step_index]
    assert FAMILY in {f for s in split.train for f in s.families}


async def test_a_step_whose_stored_prompt_was_edited_or_is_another_version_is_skipped(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    incident_id, _ = await _run(engine, cluster, _lab())
    record_lab_outcome(engine, incident_id, families=[FAMILY], split="train", correct=True)
    before = collect_samples(engine)
    assert len(before) == 3
    assert collect_samples(engine, prompt_versions={"observer-0+older"}) == []
    assert collect_samples(engine, prompt_versions={PROMPT_VERSION}) == before

    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE steps SET messages = json_set(messages, '$[1].content', 'edited') "
                "WHERE incident_id = :id AND step_index = :index"
            ),
            {"id": incident_id, "index": before[1].step_index},
        )
    assert collect_samples(engine) == [before[0], before[2]]


# -- the split --------------------------------------------------------------------------

_FAMILIES = ["target_port_misconfig", "scale_to_zero", "network_delay", "wrong_binary", "pod_kill"]
_REFERENCES = [
    parse_decision(decision("probe", f"kubectl get pods -n {NAMESPACE}")),
    parse_decision(decision("submit", "geo", "geo")),
]


def _sample(number: int, families: Sequence[str], *, prompt: int = 0, reference: int = 0) -> Sample:
    return Sample(
        prompt=(
            Message(role="system", content=SYSTEM_PROMPT),
            Message(role="user", content=f"Incident: {prompt}\nStep 1 of 3."),
        ),
        reference=_REFERENCES[reference],
        truth=TRUTH,
        success=True,
        label_source="lab",
        families=tuple(families),
        split="",
        incident_id=number,
        step_index=0,
        scenario_id=None,
        prompt_version=PROMPT_VERSION,
        guidance_ids=(),
        services=(),
    )


_assignments = st.lists(
    st.tuples(
        st.lists(st.sampled_from(_FAMILIES), max_size=2, unique=True),
        st.integers(0, 3),
        st.integers(0, len(_REFERENCES) - 1),
    ),
    max_size=30,
)


@given(_assignments, st.sets(st.sampled_from(_FAMILIES)))
@settings(max_examples=200, deadline=None)
def test_no_held_out_family_and_none_of_its_prompts_ever_trains(
    assignments: list[tuple[list[str], int, int]], heldout: set[str]
) -> None:
    samples = [
        _sample(n, families, prompt=prompt, reference=reference)
        for n, (families, prompt, reference) in enumerate(assignments)
    ]
    split = split_by_family(samples, heldout)
    assert split.train + split.heldout == sorted(
        samples, key=lambda s: bool(heldout & {*s.families})
    )
    assert all(not heldout.intersection(s.families) for s in split.train)
    assert all(heldout.intersection(s.families) for s in split.heldout)

    unique = split_by_family(deduplicate(samples), heldout)
    assert sum(s.copies for s in [*unique.train, *unique.heldout]) == len(samples)
    assert all(not heldout.intersection(s.families) for s in unique.train)
    held_out_keys = {s.key for s in samples if heldout.intersection(s.families)}
    assert held_out_keys.isdisjoint(s.key for s in unique.train)


def test_a_single_family_name_is_refused_rather_than_read_letter_by_letter() -> None:
    with pytest.raises(TypeError, match="collection of family names"):
        split_by_family([_sample(1, ["pod_kill"])], "pod_kill")


def test_the_key_is_the_prompt_and_the_reference() -> None:
    base = _sample(1, ["pod_kill"])
    assert _sample(2, ["scale_to_zero"]).key == base.key  # where it came from does not count
    assert _sample(1, ["pod_kill"], prompt=1).key != base.key
    assert _sample(1, ["pod_kill"], reference=1).key != base.key


# -- the dataset ------------------------------------------------------------------------

COLUMNS = {
    "prompt",
    *REFERENCE_KEYS,
    "reference",
    "ground_truth",
    "truth_component",
    "truth_system_level",
    "truth_fault_type",
    "services",
    "families",
    "split",
    "success",
    "label_source",
    "incident_id",
    "step_index",
    "scenario_id",
    "prompt_version",
    "guidance_ids",
    "copies",
}


async def test_the_dataset_is_conversational_and_the_rewards_read_its_references(
    engine: sa.Engine, cluster: ClusterAccess
) -> None:
    incident_id, model = await _run(engine, cluster, _lab())
    record_lab_outcome(engine, incident_id, families=[FAMILY], split="train", correct=True)
    samples = collect_samples(engine)

    dataset = to_dataset(samples)

    assert set(dataset.column_names) == COLUMNS
    assert dataset.num_rows == len(samples) == 3
    data: dict[str, list[Any]] = dataset.to_dict()  # the lists TRL hands the rewards
    assert data["prompt"] == _observer_prompts(model)
    assert GroundTruth.model_validate_json(data["ground_truth"][0]) == TRUTH
    assert data["families"] == [[FAMILY]] * 3
    assert data["success"] == [True] * 3

    # The reference, answered back as a completion, agrees with itself on every reward.
    prompts = data.pop("prompt")
    completions = [[{"role": "assistant", "content": text}] for text in data["reference"]]
    scores = {name: fn(prompts, completions, **data) for name, fn in RULE_REWARDS.items()}
    for name in ("format_reward", "summary_reward", "action_kind_reward", "instruction_reward"):
        assert scores[name] == [1.0] * 3, name
    for field in ("tool", "namespace", "component"):
        given = data[f"reference_{field}"]
        assert scores[f"{field}_reward"] == [None if g is None else 1.0 for g in given], field
    assert scores["diagnosis_reward"] == [diagnosis_score(s.reference, TRUTH) for s in samples]
    assert scores["safety_reward"] == [0.0] * 3


def test_no_samples_make_an_empty_dataset_with_every_column() -> None:
    dataset = to_dataset([])
    assert set(dataset.column_names) == COLUMNS
    assert dataset.num_rows == 0
