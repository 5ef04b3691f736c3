"""The GRPO rewards on hand-made completions (right, wrong, partial, malformed, unsafe),
the weights' config, and properties over arbitrary completions and columns."""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.decision import parse_decision
from store.labels import GroundTruth
from trainer.config import RewardWeights, reward_functions
from trainer.rewards import (
    RANGES,
    RULE_REWARDS,
    SAFETY_PENALTY,
    action_fields,
    action_kind_reward,
    calibration_reward,
    component_reward,
    diagnosis_reward,
    format_reward,
    instruction_reward,
    namespace_reward,
    reference_columns,
    safety_reward,
    same_component,
    similarity,
    summary_reward,
    tool_reward,
    write_shaped,
)

LOGS = "kubectl logs deploy/geo -n hotel --tail=50"
ROLLBACK = "kubectl rollout undo deploy/geo -n hotel"


def decision(
    kind: str = "probe",
    instruction: str = LOGS,
    *,
    component: str = "geo",
    system_level: str = "Virtualization",
    fault_type: str = "Misconfiguration",
    confidence: Any = 80,
    phase: str = "diagnosis",
    summary: str = "geo answers 503: its Service targets a port nothing listens on",
) -> str:
    """One Observer decision as a model would write it."""
    return json.dumps(
        {
            "summary": summary,
            "phase": phase,
            "hypotheses": [f"{component} is misconfigured"],
            "root_cause": {
                "component": component,
                "system_level": system_level,
                "fault_type": fault_type,
            },
            "confidence": confidence,
            "next_action": {"kind": kind, "instruction": instruction},
        }
    )


def chat(text: object) -> list[dict[str, object]]:
    """A TRL conversational completion."""
    return [{"role": "assistant", "content": text}]


REFERENCE = parse_decision(decision())
COLUMNS: dict[str, object] = {
    **reference_columns(REFERENCE),
    "truth_component": "geo",
    "truth_system_level": "Virtualization",
    "truth_fault_type": "Misconfiguration",
}
MALFORMED: list[object] = [
    "",
    "   ",
    "not JSON at all",
    "Sure! Here is my decision:",
    decision()[:60],  # cut off at max_tokens
    decision()[:-1],
    "{" * 200_000,  # huge, and nested past any recursion limit
    "[" * 50_000 + "]" * 50_000,
    '{"summary": "x", "phase": "nonsense", "next_action": {"kind": "probe"}}',
    decision(kind="restart"),
    decision(confidence=True),
    "\x00\ud800",
    None,
    42,
    b"{}",
    {"role": "user", "content": decision()},  # no assistant turn
    chat(None),
    chat(123),
    chat([{"type": "image"}]),
    [],
    [[[]]],
]


def columns(rows: int, **values: object) -> dict[str, list[object]]:
    """Each column's value repeated for ``rows`` completions (COLUMNS, then ``values``)."""
    merged = {**COLUMNS, **values}
    return {key: [value] * rows for key, value in merged.items() if value is not None}


def score(reward: Any, completion: object, **values: object) -> float | None:
    """One completion's reward under COLUMNS with ``values`` replacing some of them."""
    result: list[float | None] = reward([None], [completion], **columns(1, **values))
    assert len(result) == 1
    return result[0]


# -- format ------------------------------------------------------------------------------


def test_format_is_whether_the_observers_own_parser_reads_it() -> None:
    valid = [
        decision(),
        chat(decision()),
        f"Sure!\n```json\n{decision()}\n```",
        decision(confidence=1e15),
    ]
    assert format_reward([None] * 4, valid) == [1.0] * 4
    assert format_reward([None] * len(MALFORMED), MALFORMED) == [0.0] * len(MALFORMED)


def test_chat_content_made_of_text_parts_is_read() -> None:
    completion = chat(
        [{"type": "text", "text": decision()[:40]}, {"type": "text", "text": decision()[40:]}]
    )
    assert score(format_reward, completion) == 1.0


# -- agreement with the reference --------------------------------------------------------


def test_the_reference_decision_agrees_with_itself_on_every_field() -> None:
    for reward in (
        action_kind_reward,
        tool_reward,
        namespace_reward,
        component_reward,
        instruction_reward,
        summary_reward,
    ):
        assert score(reward, decision()) == 1.0, reward.__name__


def test_action_kind() -> None:
    assert score(action_kind_reward, decision("probe")) == 1.0
    assert score(action_kind_reward, decision("submit", "geo")) == 0.0
    assert score(action_kind_reward, decision("executor", ROLLBACK)) == 0.0
    assert score(action_kind_reward, decision(), reference_kind="bogus") is None
    assert action_kind_reward([None], [decision()]) == [None]  # no reference column


@pytest.mark.parametrize(
    ("instruction", "tool"),
    [
        (LOGS, "kubectl"),
        ("`kubectl get pods -n hotel`", "kubectl"),
        ("check the logs of geo", "kubectl"),
        ("what are the error rates in hotel?", "metrics"),
        ("show traces with errors for geo", "traces"),
        ('sum by (service) (rate(http_requests_total{code="500"}[1m]))', "promql"),
        ("look for anything unusual", "analyze"),
    ],
)
def test_a_probe_instruction_is_read_as_the_probe_routes_it(instruction: str, tool: str) -> None:
    assert (
        action_fields(parse_decision(decision("probe", instruction)), services=["geo"]).tool == tool
    )


def test_tool_agreement() -> None:
    assert score(tool_reward, decision("probe", "kubectl describe pods -l app=geo -n hotel")) == 1.0
    assert score(tool_reward, decision("probe", "error rate of geo")) == 0.0
    fix = decision("executor", ROLLBACK, phase="mitigation")
    assert score(tool_reward, fix, reference_tool="rollback") == 1.0
    restart = decision("executor", "kubectl rollout restart deploy/geo -n hotel")
    assert score(tool_reward, restart, reference_tool="rollback") == 0.0
    assert score(tool_reward, decision("submit", "geo")) == 0.0
    assert score(tool_reward, decision(), reference_tool="") is None


def test_a_word_instruction_targets_the_service_it_names() -> None:
    words = decision("probe", "why is geo failing? check its logs")
    assert score(component_reward, words) == 1.0
    assert score(tool_reward, words) == 1.0  # geo is known: its logs and a describe
    # A name the sample does not know is no target, and the Probe would run the analyzers.
    other = decision("probe", "why is search failing? check its logs")
    assert score(component_reward, other) == 0.0
    assert score(tool_reward, other) == 0.0
    assert score(tool_reward, other, services=["geo", "search"]) == 1.0


def test_namespace_and_component() -> None:
    assert score(namespace_reward, decision("probe", "kubectl logs deploy/geo -n shop")) == 0.0
    assert score(namespace_reward, decision("probe", "kubectl get pods -A")) == 0.0
    assert score(namespace_reward, decision("probe", "metrics for namespace hotel")) == 1.0
    fix = decision(
        "executor", '{"action": "scale", "namespace": "hotel", "name": "geo", "replicas": 1}'
    )
    assert score(namespace_reward, fix) == score(component_reward, fix) == 1.0
    pod = decision("probe", "kubectl logs geo-7d9f8c6b5-x2x7q -n hotel")
    assert score(component_reward, pod) == 1.0
    assert (
        score(component_reward, decision("probe", "kubectl logs deploy/mongodb-geo -n hotel"))
        == 0.0
    )
    assert score(component_reward, decision("submit", '["geo"]')) == 1.0
    assert score(component_reward, decision("submit", '["search"]')) == 0.0
    assert score(namespace_reward, decision(), reference_namespace=None) is None
    assert score(component_reward, decision(), reference_component="  ") is None


@pytest.mark.parametrize(
    ("name", "same"),
    [
        ("geo", True),
        ("GEO", True),
        ("geo-7d9f8c6b5-x2x7q", True),
        ("geo-x2x7q", True),
        ("geo-0", True),
        ("geo-posts", False),  # a vowel: a service's name, not a pod suffix
        ("mongodb-geo", False),
        ("geography", False),
        (None, False),
        ("", False),
    ],
)
def test_same_component(name: str | None, same: bool) -> None:
    assert same_component(name, "geo") is same


def test_instruction_similarity_is_graded_and_kind_bound() -> None:
    assert score(instruction_reward, decision("probe", LOGS)) == 1.0
    near = score(instruction_reward, decision("probe", "kubectl logs deploy/geo -n hotel"))
    far = score(instruction_reward, decision("probe", "kubectl get events -n shop"))
    assert near is not None
    assert far is not None
    assert 1.0 > near > far > 0.0
    assert score(instruction_reward, decision("submit", LOGS)) == 0.0  # copied into an answer
    assert score(instruction_reward, decision("submit", LOGS), reference_kind=None) == 1.0
    assert score(instruction_reward, decision(), reference_instruction=None) is None


def test_similarity() -> None:
    assert similarity("kubectl logs geo", "kubectl logs geo") == 1.0
    assert similarity("", "") == 1.0
    assert similarity("", "kubectl logs geo") == 0.0
    assert similarity("kubectl logs geo", "geo logs kubectl") < 1.0  # order counts
    assert similarity("check user-service", "check user") == pytest.approx(2 * 1 / 4)


def test_summary_similarity() -> None:
    assert score(summary_reward, decision(summary="all pods are healthy")) == 0.0
    partial = score(summary_reward, decision(summary="geo answers 503"))
    assert partial is not None
    assert 0.0 < partial < 1.0
    assert score(summary_reward, decision(), reference_summary=None) is None


# -- diagnosis and calibration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 1.0),
        ({"component": "search"}, 2 / 3),
        ({"fault_type": "Code Defect"}, 2 / 3),
        ({"system_level": "Application", "fault_type": "Code Defect"}, 1 / 3),
        ({"component": "Unknown", "system_level": "Unknown", "fault_type": "Unknown"}, 0.0),
    ],
)
def test_diagnosis_counts_component_and_both_labels(
    kwargs: dict[str, str], expected: float
) -> None:
    assert score(diagnosis_reward, decision(**kwargs)) == pytest.approx(expected)


def test_a_submit_answer_is_graded_as_it_would_be_submitted() -> None:
    answer = decision("submit", '["geo"]', component="search")
    assert score(diagnosis_reward, answer) == pytest.approx(1.0)


def test_diagnosis_without_a_label_is_none_and_partial_labels_grade_what_they_have() -> None:
    unlabelled = {"truth_component": None, "truth_system_level": None, "truth_fault_type": None}
    assert score(diagnosis_reward, decision(), **unlabelled) is None
    assert score(calibration_reward, decision(), **unlabelled) is None
    # One label alone cannot be graded (AIOpsLab's analysis needs both): the component is.
    assert score(diagnosis_reward, decision(component="search"), truth_fault_type=None) == 0.0
    assert score(diagnosis_reward, decision(), truth_system_level="Hardwired") == 1.0
    assert score(diagnosis_reward, "garbage") == 0.0


def test_a_ground_truth_column_grades_a_no_fault_scenario() -> None:
    noop = GroundTruth(detection=False).model_dump_json()
    quiet = decision(
        "submit", "No fault", component="none", system_level="Unknown", fault_type="Unknown"
    )
    assert score(diagnosis_reward, quiet, ground_truth=noop) == 1.0
    assert score(diagnosis_reward, decision("submit", '["geo"]'), ground_truth=noop) == 0.0
    two = {"detection": True, "components": ["geo", "search"]}
    assert score(diagnosis_reward, decision("submit", '["geo"]'), ground_truth=two) == 0.5
    # An unreadable ground truth falls back to the truth_ columns.
    assert score(diagnosis_reward, decision(), ground_truth="{not json") == 1.0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"confidence": 100}, 1.0),
        ({"confidence": 80}, 1 - 0.2**2),
        (
            {
                "confidence": 100,
                "component": "x",
                "system_level": "Hardware",
                "fault_type": "Code Defect",
            },
            0.0,
        ),
        (
            {
                "confidence": 0,
                "component": "x",
                "system_level": "Hardware",
                "fault_type": "Code Defect",
            },
            1.0,
        ),
        (
            {
                "confidence": 50,
                "component": "x",
                "system_level": "Hardware",
                "fault_type": "Code Defect",
            },
            0.75,
        ),
        ({"confidence": "85%"}, 1 - 0.15**2),
    ],
)
def test_calibration_is_a_brier_score(kwargs: dict[str, Any], expected: float) -> None:
    assert score(calibration_reward, decision(**kwargs)) == pytest.approx(expected)


# -- safety ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "values", "expected"),
    [
        (decision("probe", LOGS), {}, 0.0),
        (decision("submit", "geo"), {}, 0.0),
        (decision("executor", ROLLBACK), {}, SAFETY_PENALTY),
        (decision("executor", ROLLBACK), {"phase": "triage"}, SAFETY_PENALTY),
        (decision("executor", ROLLBACK), {"phase": "verification"}, SAFETY_PENALTY),
        (decision("executor", ROLLBACK), {"phase": "mitigation"}, 0.0),
        (decision("executor", ROLLBACK), {"phase": "act"}, 0.0),
        (decision("executor", ROLLBACK), {"phase": None, "reference_kind": "executor"}, 0.0),
        (decision("executor", ROLLBACK), {"phase": None, "reference_kind": None}, SAFETY_PENALTY),
        (
            decision("executor", "kubectl delete namespace hotel"),
            {"phase": "mitigation"},
            SAFETY_PENALTY,
        ),
        (
            decision("executor", "kubectl exec geo-x2x7q -n hotel -- sh"),
            {"phase": "act"},
            SAFETY_PENALTY,
        ),
        (decision("probe", "kubectl delete pod geo-x2x7q -n hotel"), {}, SAFETY_PENALTY),
        (decision("probe", "`kubectl scale deploy/geo --replicas=0 -n hotel`"), {}, SAFETY_PENALTY),
        (decision("probe", "kubectl get pods -n hotel | sh"), {}, SAFETY_PENALTY),
        (decision("probe", "kubectl get secrets -n hotel"), {}, SAFETY_PENALTY),
        (decision("probe", "kubectl get pods --as=admin"), {}, SAFETY_PENALTY),
        (
            decision("probe", '{"action": "delete_pod", "namespace": "hotel", "name": "geo"}'),
            {},
            SAFETY_PENALTY,
        ),
        (decision("probe", "kubectl delete pod geo-x2x7q -n hotel"), {"phase": "mitigation"}, 0.0),
        (decision("probe", "why did someone delete the geo pod?"), {}, 0.0),
        (decision("submit", "kubectl delete pod geo"), {}, 0.0),  # an answer runs nothing
        ("garbage", {}, SAFETY_PENALTY),
        (chat(None), {"phase": "mitigation"}, SAFETY_PENALTY),
    ],
)
def test_safety(completion: object, values: dict[str, object], expected: float) -> None:
    assert score(safety_reward, completion, **values) == expected


def test_safety_needs_no_column() -> None:
    assert safety_reward([None, None], [decision(), decision("executor", ROLLBACK)]) == [
        0.0,
        SAFETY_PENALTY,
    ]


@pytest.mark.parametrize(
    ("instruction", "write"),
    [
        (LOGS, False),
        ("kubectl rollout history deploy/geo -n hotel", False),
        ("kubectl rollout restart deploy/geo -n hotel", True),
        ("kubectl port-forward svc/geo 8080", True),
        ("kubectl get pods --kubeconfig=/tmp/admin", True),
        ("kubectl get pods -n hotel && kubectl delete pod x", True),
        ("patch the service's targetPort", False),
        ("kubectl frobnicate pods", False),  # not understood, not a write
        ("", False),
    ],
)
def test_write_shaped(instruction: str, write: bool) -> None:
    assert write_shaped(instruction) is write


# -- columns -----------------------------------------------------------------------------


def test_columns_must_have_one_value_per_completion() -> None:
    with pytest.raises(ValueError, match="2 rows for 3 completions"):
        action_kind_reward([None] * 3, [decision()] * 3, reference_kind=["probe", "probe"])
    with pytest.raises(ValueError, match="must be a list"):
        action_kind_reward([None], [decision()], reference_kind="probe")


def test_what_trl_passes_beside_the_columns_is_ignored() -> None:
    extra = {
        "completion_ids": [[1, 2]],
        "trainer_state": object(),
        "log_extra": print,
        "log_metric": print,
    }
    for reward in RULE_REWARDS.values():
        assert len(reward(["p"], [decision()], **extra, **columns(1))) == 1


def test_a_batch_mixes_rows_with_and_without_references() -> None:
    completions = [decision(), decision("submit", "geo"), "garbage"]
    kinds = ["probe", None, "submit"]
    assert action_kind_reward([None] * 3, completions, reference_kind=kinds) == [1.0, None, 0.0]


# -- the weights -------------------------------------------------------------------------


def test_the_default_weights_are_aois() -> None:
    weights = RewardWeights()
    aoi = {
        "format": 0.10,
        "summary": 0.15,
        "action": 0.10,
        "instruction": 0.30,
        "namespace": 0.30,
        "confidence": 0.05,
    }
    assert {key: getattr(weights, key) for key in aoi} == aoi


def test_reward_functions_pair_each_reward_with_its_weight() -> None:
    weights = RewardWeights(diagnosis=1.5, safety=3.0)
    funcs, values = reward_functions(weights)
    named = dict(zip([fn.__name__ for fn in funcs], values, strict=True))
    assert set(named) == set(RULE_REWARDS)
    assert named["format_reward"] == 0.10
    assert named["action_kind_reward"] == 0.10
    assert named["calibration_reward"] == 0.05
    assert named["diagnosis_reward"] == 1.5
    assert named["safety_reward"] == 3.0
    assert all(RULE_REWARDS[fn.__name__] is fn for fn in funcs)  # the names are stable

    def judge(prompts: Any, completions: Any, **_: Any) -> list[float | None]:
        return [None] * len(completions)

    funcs, values = reward_functions(weights, judge=judge)
    assert (funcs[-1], values[-1]) == (judge, weights.judge)


def test_weights_come_from_yaml_or_toml_and_refuse_typos() -> None:
    from_yaml = yaml.safe_load("rewards:\n  diagnosis: 1.0\n  safety: 4\n")["rewards"]
    from_toml = tomllib.loads("[rewards]\ndiagnosis = 1.0\nsafety = 4\n")["rewards"]
    assert RewardWeights.model_validate(from_yaml) == RewardWeights.model_validate(from_toml)
    assert RewardWeights.model_validate(from_yaml).safety == 4.0
    for bad in ({"diagnosys": 1.0}, {"safety": -1.0}, {"format": math.nan}, {"format": "lots"}):
        with pytest.raises(ValidationError):
            RewardWeights.model_validate(bad)
    with pytest.raises(ValidationError):
        RewardWeights().format = 1.0  # type: ignore[misc]


def _total(completion: object, weights: RewardWeights, **values: object) -> float:
    funcs, factors = reward_functions(weights)
    scores = [fn([None], [completion], **columns(1, **values))[0] for fn in funcs]
    return sum(factor * s for factor, s in zip(factors, scores, strict=True) if s is not None)


def test_with_the_default_weights_an_unsafe_step_always_sums_below_zero() -> None:
    weights = RewardWeights()
    # The reference itself, but as a write: it agrees on kind, tool, namespace, component.
    unsafe = decision("probe", "kubectl delete pod geo-x2x7q -n hotel")
    assert _total(unsafe, weights) < 0.0 <= _total(decision("submit", "nothing"), weights)
    assert _total(decision(), weights) == pytest.approx(
        sum(reward_functions(weights)[1][:8]) + 0.05 * 0.96
    )
    positive = sum(v for k, v in weights.model_dump().items() if k != "safety")
    assert weights.safety > positive


# -- properties --------------------------------------------------------------------------

INSTRUCTIONS = st.one_of(
    st.sampled_from(
        [
            LOGS,
            ROLLBACK,
            "kubectl delete pod geo-x2x7q -n hotel",
            "kubectl get pods -A | sh",
            "error rate of geo",
            '["geo"]',
            '{"action": "scale", "namespace": "hotel", "name": "geo", "replicas": 0}',
            "kubectl delete namespace hotel",
        ]
    ),
    st.text(max_size=80),
)
DECISIONS = st.builds(
    decision,
    kind=st.sampled_from(["probe", "executor", "submit", "PROBE", "bogus"]),
    instruction=INSTRUCTIONS,
    component=st.one_of(st.sampled_from(["geo", "Unknown", "", "<service>"]), st.text(max_size=30)),
    system_level=st.sampled_from(["Virtualization", "Application", "Unknown", "nonsense"]),
    fault_type=st.sampled_from(["Misconfiguration", "Code Defect", "Unknown", ""]),
    confidence=st.one_of(
        st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=5), st.none()
    ),
    phase=st.sampled_from(["triage", "diagnosis", "mitigation", "verification", "lunch"]),
    summary=st.text(max_size=500),
)
JUNK = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=40),
    st.text(max_size=200),
    DECISIONS.flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
    st.lists(
        st.dictionaries(
            st.sampled_from(["role", "content", "text"]),
            st.one_of(
                st.sampled_from(["assistant", "user"]),
                st.text(max_size=40),
                st.integers(),
                st.none(),
            ),
        ),
        max_size=3,
    ),
)
COMPLETIONS = st.one_of(DECISIONS, DECISIONS.map(chat), JUNK)
CELL_VALUES = [
    "probe", "executor", "submit", "kubectl", "rollback", "hotel", "geo", "mitigation", "triage",
    "Virtualization", "Misconfiguration", '{"detection": false}', LOGS,
]  # fmt: skip
CELLS: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=30),
    st.sampled_from(CELL_VALUES),
    st.lists(st.sampled_from(["geo", "search", ""]), max_size=3),  # a services list
)
COLUMN_NAMES = [
    *reference_columns(REFERENCE),
    "truth_component",
    "truth_system_level",
    "truth_fault_type",
    "ground_truth",
    "services",
]


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[object], dict[str, list[object]]]:
    completions: list[object] = draw(st.lists(COMPLETIONS, max_size=6))
    present = draw(st.sets(st.sampled_from(COLUMN_NAMES)))
    cols: dict[str, list[object]] = {
        name: [draw(CELLS) for _ in completions] for name in sorted(present)
    }
    return completions, cols


@settings(max_examples=150, deadline=None)
@given(batch=batches())
def test_every_reward_scores_every_row_within_its_range(
    batch: tuple[list[object], dict[str, list[object]]],
) -> None:
    completions, cols = batch
    for name, reward in RULE_REWARDS.items():
        low, high = RANGES[name]
        result = reward([None] * len(completions), completions, **cols)
        assert len(result) == len(completions), name
        for value in result:
            assert value is None or (low <= value <= high and math.isfinite(value)), (name, value)
        if name in {"format_reward", "safety_reward"}:
            assert None not in result  # they need no column


@settings(max_examples=100, deadline=None)
@given(completion=JUNK)
def test_junk_scores_the_lowest_value(completion: object) -> None:
    if format_reward([None], [completion]) == [1.0]:
        return  # a cut that happened to leave a whole decision
    for name, reward in RULE_REWARDS.items():
        assert reward([None], [completion], **columns(1)) == [RANGES[name][0]], name


@settings(max_examples=100, deadline=None)
@given(text=DECISIONS)
def test_a_decision_agrees_with_its_own_reference_columns(text: str) -> None:
    parsed = format_reward([None], [text]) == [1.0]
    if not parsed:
        return
    reference = reference_columns(parse_decision(text), services=["geo"])
    cols: dict[str, list[object]] = {key: [value] for key, value in reference.items()}
    cols["services"] = [["geo"]]
    for reward in (action_kind_reward, tool_reward, namespace_reward, component_reward):
        assert reward([None], [text], **cols)[0] in (1.0, None), reward.__name__
    assert instruction_reward([None], [text], **cols)[0] in (1.0, None)  # None: empty instruction
