"""AIOpsLab's evaluators and the GRPO rewards built on them, on hand-made submissions:
right, wrong, partial, malformed and false alarms, plus properties on arbitrary input."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.decisions import decision

from agents import decision as decisions
from agents.scoring import (
    Verdict,
    analysis_reward,
    completion_text,
    decision_answer,
    detection_reward,
    judge,
    localization_reward,
    submission_valid,
    task_reward,
)
from store import labels
from store.labels import TASK_TYPES, GroundTruth

FAULT = GroundTruth(
    detection=True,
    components=("mongodb-geo",),
    system_level="Application",
    fault_type="Authentication Issue",
)
TWO = GroundTruth(detection=True, components=("profile", "search"))
NONE = GroundTruth(detection=False)
UNLABELLED = GroundTruth(detection=True, components=("geo",))
# Answers shaped like name lists, with the wrappings models add around names.
NAME_LISTS = st.lists(
    st.tuples(
        st.sampled_from(["", "deploy/", "svc/", "ns/", "pod/"]),
        st.sampled_from(["geo", "mongodb-geo", "Profile", "none", "yes", "a b"]),
        st.sampled_from(["", " -n ns", ":8080", ".ns.svc"]),
    ).map("".join),
    max_size=4,
).flatmap(
    lambda names: st.sampled_from(
        [json.dumps(names), repr(names), ", ".join(names), f"submit({json.dumps(names)})"]
    )
)


def test_the_labels_have_one_source() -> None:
    """agents.decision's variants are store.labels' values plus "Unknown", not a copy."""
    assert (*labels.SYSTEM_LEVELS, "Unknown") == decisions.SYSTEM_LEVELS
    assert (*labels.FAULT_TYPES, "Unknown") == decisions.FAULT_TYPES
    assert (
        get_args(labels.TaskType)
        == TASK_TYPES
        == (
            "detection",
            "localization",
            "analysis",
            "mitigation",
        )
    )


# -- detection ---------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["Yes", " yes. ", "YES", True, '"Yes"', "true"])
def test_detection_right_yes(answer: object) -> None:
    assert judge("detection", answer, FAULT) == Verdict(True, 1.0, "right: Yes, there is a fault")


def test_detection_wrong_and_noop() -> None:
    missed = judge("detection", "No", FAULT)
    assert not missed.success
    assert missed.score == 0.0
    assert missed.detail.startswith("missed")
    assert judge("detection", "No", NONE).success
    assert judge("detection", False, NONE).success
    alarm = judge("detection", "Yes", NONE)
    assert not alarm.success
    assert alarm.score == 0.0
    assert alarm.detail.startswith("false alarm")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("maybe", "'maybe'"),
        (None, "no answer"),
        (["Yes"], "a list"),
        ({"detected": True}, "an object"),
        (1, "int"),
        ('["Yes"', "does not parse"),
        ("[]", "a list"),
    ],
)
def test_detection_malformed(answer: object, why: str) -> None:
    verdict = judge("detection", answer, FAULT)
    assert verdict.success is False
    assert verdict.score == 0.0
    assert verdict.detail.startswith("malformed: ")
    assert why in verdict.detail
    assert not submission_valid("detection", answer)


# -- localization ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [["mongodb-geo"], "mongodb-geo", '["mongodb-geo"]', [" MongoDB-Geo "], ("mongodb-geo",)],
)
def test_localization_exact(answer: object) -> None:
    verdict = judge("localization", answer, FAULT)
    assert verdict.success
    assert verdict.score == 1.0


def test_localization_wrong_and_partial() -> None:
    superset = judge("localization", ["mongodb-geo", "geo"], FAULT)
    assert not superset.success, "AIOpsLab: a superset fails ..."
    assert superset.score == 0.5, "... and is graded by the true share"
    assert "also [geo]" in superset.detail
    wrong = judge("localization", ["geo"], FAULT)
    assert wrong == Verdict(False, 0.0, "wrong: named [geo]; faulty: [mongodb-geo]")
    assert not judge("localization", [], FAULT).success
    assert judge("localization", ["search", "profile"], TWO).score == 1.0
    one = judge("localization", ["search"], TWO)
    assert one.success, "one true name of several passes (len == 1)"
    assert one.score == 0.5
    assert not judge("localization", ["search", "geo"], TWO).success
    assert judge("localization", "search, profile", TWO).success


def test_localization_without_components_wants_an_empty_list() -> None:
    assert judge("localization", [], NONE) == Verdict(True, 1.0, "right: nothing to name")
    assert judge("localization", "[]", NONE).success
    flagged = judge("localization", ["geo"], NONE)
    assert not flagged.success
    assert flagged.score == 0.0


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"services": ["mongodb-geo"]}, "not an object"),
        ('{"services": ["mongodb-geo"]}', "not an object"),
        ([1, 2], "not one"),
        ([["mongodb-geo"]], "a list is not one"),
        (True, "boolean true"),
        (None, "no answer"),
        ('["mongodb-geo"', "does not parse"),
        (3.5, "float"),
    ],
)
def test_localization_malformed(answer: object, why: str) -> None:
    verdict = judge("localization", answer, FAULT)
    assert verdict.success is False
    assert verdict.score == 0.0
    assert verdict.detail.startswith("malformed: ")
    assert why in verdict.detail


# -- analysis ----------------------------------------------------------------------------


def _labels(level: Any = "Application", fault: Any = "Authentication Issue") -> dict[str, Any]:
    return {"system_level": level, "fault_type": fault}


def test_analysis_right_partial_wrong() -> None:
    assert judge("analysis", _labels(), FAULT) == Verdict(
        True, 1.0, "right: Application / Authentication Issue"
    )
    assert judge("analysis", _labels("application", "authentication issue"), FAULT).success
    assert judge("analysis", json.dumps(_labels()), FAULT).success
    one = judge("analysis", _labels(fault="Misconfiguration"), FAULT)
    assert not one.success
    assert one.score == 0.5
    assert "fault_type Misconfiguration is not Authentication Issue" in one.detail
    other = judge("analysis", _labels(level="Virtualization"), FAULT)
    assert not other.success
    assert other.score == 0.5
    both = judge("analysis", _labels("Hardware", "Code Defect"), FAULT)
    assert not both.success
    assert both.score == 0.0


def test_analysis_without_labels_cannot_succeed() -> None:
    verdict = judge("analysis", _labels(), UNLABELLED)
    assert not verdict.success
    assert "no analysis labels" in verdict.detail


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (_labels(level="Kernel"), "'Kernel' is not one of"),
        (_labels(fault="Unknown"), "'Unknown' is not one of"),
        (_labels(level=None), "must be a string"),
        ({"system_level": "Application"}, "lacks fault_type"),
        (["Application", "Authentication Issue"], "a list"),
        ("Application / Authentication Issue", "not 'Application"),
        ("{garbage", "does not parse"),
        (None, "no answer"),
    ],
)
def test_analysis_malformed(answer: object, why: str) -> None:
    verdict = judge("analysis", answer, FAULT)
    assert verdict.success is False
    assert verdict.score == 0.0
    assert verdict.detail.startswith("malformed: ")
    assert why in verdict.detail


# -- mitigation --------------------------------------------------------------------------


def test_mitigation_is_decided_by_the_state_check() -> None:
    assert judge("mitigation", None, FAULT, mitigated=True).success
    present = judge("mitigation", "done", FAULT, mitigated=False)
    assert present == Verdict(False, 0.0, "not mitigated: the fault is still present")
    assert judge("mitigation", None, FAULT) == Verdict(False, 0.0, "not mitigated: no check ran")
    assert submission_valid("mitigation", {"anything": 1})


def test_an_unknown_task_type_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError, match="unknown task type 'triage'"):
        judge("triage", "Yes", FAULT)  # type: ignore[arg-type]


# -- rewards -----------------------------------------------------------------------------


def _chat(text: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": "is anything wrong?"},
        {"role": "assistant", "content": text},
    ]


SUBMIT_GEO = decision(
    "submit",
    '["mongodb-geo"]',
    "mongodb-geo",
    system_level="Application",
    fault_type="Authentication Issue",
)


def test_rewards_read_strings_and_conversations() -> None:
    completions: list[object] = [SUBMIT_GEO, _chat(SUBMIT_GEO), "no JSON here", _chat("{")]
    truth = [FAULT, FAULT.model_dump(), FAULT, FAULT]
    prompts = [""] * 4
    assert detection_reward(prompts, completions, ground_truth=truth) == [1.0, 1.0, 0.0, 0.0]
    assert localization_reward(prompts, completions, ground_truth=truth) == [1.0, 1.0, 0.0, 0.0]
    assert analysis_reward(prompts, completions, ground_truth=truth) == [1.0, 1.0, 0.0, 0.0]


def test_rewards_take_the_answer_from_the_decision() -> None:
    no = decision("submit", "No", "none")
    yes_word = decision("submit", "Yes", "none")
    by_component = decision("submit", "the database refuses logins", "geo")
    names = decision("submit", "search, profile", "search")
    probe = decision("probe", "kubectl get pods -n test-hotel-reservation", "profile")
    rows = [no, yes_word, by_component, names, probe]
    truths: list[object] = [NONE, NONE, TWO, TWO, TWO]
    prompts = [""] * len(rows)
    assert detection_reward(prompts, rows, ground_truth=truths) == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert localization_reward(prompts, rows, ground_truth=truths) == [1.0, 1.0, 0.0, 1.0, 0.5]


# -- reading a decision (one rule for the rewards, the benchmark and the adapter) ----------


def _submit(
    instruction: str,
    component: str = "geo",
    *,
    system_level: str = "Virtualization",
    fault_type: str = "Operation Error",
) -> decisions.Decision:
    text = decision(
        "submit", instruction, component, system_level=system_level, fault_type=fault_type
    )
    return decisions.parse_decision(text)


@pytest.mark.parametrize(
    ("instruction", "component", "expected"),
    [
        ("Yes", "none", "Yes"),
        (" yes. ", "none", "Yes"),
        ('submit("Yes")', "none", "Yes"),
        ("true", "Unknown", "Yes"),
        ("anomalies in geo", "Unknown", "Yes"),
        ("No", "geo", "No"),
        ("no anomalies found", "geo", "No"),
        ("Found no fault in the services", "geo", "No"),
        ("mongodb-geo refuses geo", "mongodb-geo", "Yes"),
        ("all healthy", "none", "No"),
        ("", "Unknown", "No"),
        ("", "geo", "Yes"),
    ],
)
def test_decision_answer_detection(instruction: str, component: str, expected: str) -> None:
    assert decision_answer("detection", _submit(instruction, component)) == expected


@pytest.mark.parametrize(
    ("instruction", "component", "expected"),
    [
        ('["geo", "mongodb-geo"]', "rate", ["geo", "mongodb-geo"]),
        ("['rate']", "geo", ["rate"]),
        ("('rate', 'Rate')", "geo", ["rate"]),
        ('"rate"', "geo", ["rate"]),
        ("geo, profile", "rate", ["geo", "profile"]),
        ("Geo, `profile`, geo", "rate", ["geo", "profile"]),
        ("deploy/geo", "rate", ["geo"]),
        ("svc/geo, pod/profile", "rate", ["geo", "profile"]),
        ("test-hotel-reservation/geo", "rate", ["geo"]),
        ("test-hotel-reservation/deployment/geo", "rate", ["geo"]),
        ("geo -n test-hotel-reservation", "rate", ["geo"]),
        ("geo --namespace=test-hotel-reservation", "rate", ["geo"]),
        ('["deploy/geo -n test-hotel-reservation"]', "rate", ["geo"]),
        ("geo.test-hotel-reservation.svc.cluster.local:8083", "rate", ["geo"]),
        ('submit(["user"])', "geo", ["user"]),
        ("none", "geo", []),
        ("No fault.", "geo", []),
        ("[]", "geo", []),
        ('["none"]', "geo", []),
        ("Yes", "geo", ["geo"]),
        ("the geo service crashes on start", "geo", ["geo"]),
        ("the faulty one", "Unknown", []),
        ("[1, 2]", "geo", ["geo"]),
        ("", "deploy/geo", ["geo"]),
        ("", "geo, profile", ["geo", "profile"]),
        ("", "the geo pods", []),
    ],
)
def test_decision_answer_localization(
    instruction: str, component: str, expected: list[str]
) -> None:
    assert decision_answer("localization", _submit(instruction, component)) == expected


def test_decision_answer_analysis_and_mitigation() -> None:
    named = _submit('{"system_level": "Application", "fault_type": "Code Defect"}')
    assert decision_answer("analysis", named) == {
        "system_level": "Application",
        "fault_type": "Code Defect",
    }
    words = _submit("an operating system misconfiguration", system_level="Hardware")
    assert decision_answer("analysis", words) == {
        "system_level": "Operating System",
        "fault_type": "Misconfiguration",
    }
    own = _submit("see root cause", system_level="Application", fault_type="Code Defect")
    assert decision_answer("analysis", own) == {
        "system_level": "Application",
        "fault_type": "Code Defect",
    }
    nothing = _submit("no fault", "none", system_level="Unknown", fault_type="Unknown")
    assert decision_answer("analysis", nothing) is None
    unsure = _submit("x", "geo", system_level="Unknown", fault_type="Unknown")
    assert decision_answer("analysis", unsure) == {
        "system_level": "Unknown",
        "fault_type": "Unknown",
    }
    assert decision_answer("mitigation", own) is None


def test_decision_answer_reads_only_a_submit_instruction() -> None:
    """A probe's instruction is a command: only its root cause answers."""
    said = "No: Hardware? kubectl get nodes"
    probe = decisions.parse_decision(
        decision("probe", said, "geo", system_level="Application", fault_type="Code Defect")
    )
    assert decision_answer("detection", probe) == "Yes"
    assert decision_answer("localization", probe) == ["geo"]
    assert decision_answer("analysis", probe) == {
        "system_level": "Application",
        "fault_type": "Code Defect",
    }


@given(
    kind=st.sampled_from(decisions.ACTION_KINDS),
    instruction=st.text(max_size=120) | NAME_LISTS,
    component=st.text(max_size=40),
)
def test_decision_answer_is_always_a_valid_submission(
    kind: str, instruction: str, component: str
) -> None:
    made = decisions.parse_decision(decision(kind, instruction, component))
    assert submission_valid("detection", decision_answer("detection", made))
    names = decision_answer("localization", made)
    assert submission_valid("localization", names)
    assert isinstance(names, list)
    assert all(name == name.strip().lower() and "/" not in name for name in names)
    analysis = decision_answer("analysis", made)
    assert analysis is None or isinstance(analysis, dict)


def test_analysis_reward_is_graded_and_none_without_labels() -> None:
    half = decision("submit", "x", "mongodb-geo", system_level="Application")
    unknown = decision("submit", "x", "mongodb-geo", system_level="no idea", fault_type="?")
    rows = [SUBMIT_GEO, half, unknown, SUBMIT_GEO]
    truth: list[object] = [FAULT, FAULT, FAULT, UNLABELLED]
    assert analysis_reward([""] * 4, rows, ground_truth=truth) == [1.0, 0.5, 0.0, None]


def test_task_reward_mixes_tasks_and_skips_unscorable_rows() -> None:
    rows = [SUBMIT_GEO] * 6
    kinds = ["detection", "localization", "analysis", "mitigation", "mitigation", "triage"]
    mitigated: list[object] = [None, None, None, True, None, None]
    truth: list[object] = [FAULT, FAULT, FAULT, FAULT, FAULT, FAULT]
    rewards = task_reward(
        [""] * 6, rows, ground_truth=truth, task_type=kinds, mitigated=mitigated, extra=[0] * 6
    )
    assert rewards == [1.0, 1.0, 1.0, 1.0, None, None]
    assert task_reward([""], [SUBMIT_GEO], ground_truth=[FAULT], task_type=["mitigation"]) == [None]


def test_unreadable_ground_truth_is_unscorable() -> None:
    truth: list[object] = [None, {"detection": "perhaps"}, "not json", FAULT.model_dump_json()]
    assert detection_reward([""] * 4, [SUBMIT_GEO] * 4, ground_truth=truth) == [
        None,
        None,
        None,
        1.0,
    ]


def test_column_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="1 rows for 2 completions"):
        detection_reward(["", ""], [SUBMIT_GEO, SUBMIT_GEO], ground_truth=[FAULT])


def test_completion_text_forms() -> None:
    assert completion_text("x") == "x"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]
    assert completion_text(parts) == "ab"
    assert completion_text([{"role": "user", "content": "q"}]) is None
    assert completion_text({"role": "assistant", "content": "y"}) == "y"
    assert completion_text(42) is None


# -- properties --------------------------------------------------------------------------

JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ANSWERS = JSON_LIKE | JSON_LIKE.map(lambda value: json.dumps(value)) | st.text(max_size=40)
NAMES = st.sampled_from(["geo", "mongodb-geo", "profile", "search", "user"])
TRUTHS = st.builds(
    GroundTruth,
    detection=st.booleans(),
    components=st.lists(NAMES, max_size=3, unique=True).map(tuple),
    system_level=st.none() | st.sampled_from(labels.SYSTEM_LEVELS),
    fault_type=st.none() | st.sampled_from(labels.FAULT_TYPES),
)


@given(
    task=st.sampled_from(TASK_TYPES), answer=ANSWERS, truth=TRUTHS, check=st.none() | st.booleans()
)
def test_judge_never_raises_and_scores_in_range(
    task: labels.TaskType, answer: object, truth: GroundTruth, check: bool | None
) -> None:
    verdict = judge(task, answer, truth, mitigated=check)
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.detail
    if task in ("detection", "analysis", "mitigation"):
        assert verdict.success == (verdict.score == 1.0)
    if verdict.detail.startswith("malformed"):
        assert not verdict.success
        assert not submission_valid(task, answer)


@given(text=st.text(max_size=200), truth=TRUTHS)
def test_rewards_never_raise_on_arbitrary_completions(text: str, truth: GroundTruth) -> None:
    for reward in (detection_reward, localization_reward, analysis_reward):
        (value,) = reward([""], [text], ground_truth=[truth])
        assert value is None or 0.0 <= value <= 1.0
