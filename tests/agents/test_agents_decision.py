"""Decisions from models are validated and repaired where that needs no guessing:
clamped confidence, truncated strings, unknown taxonomy values, prose around the JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from agents.decision import (
    ACTION_KINDS,
    DECISION_CONTRACT,
    DECISION_SCHEMA,
    FAULT_TYPES,
    PHASES,
    SUBMIT_SCHEMA,
    SUMMARY_CHARS,
    SYSTEM_LEVELS,
    Decision,
    DecisionError,
    parse_decision,
    repair_prompt,
)


def _answer(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "summary": "geo crashes: mongodb-geo refuses its credentials",
        "phase": "diagnosis",
        "hypotheses": ["readWrite role revoked on mongodb-geo"],
        "root_cause": {
            "component": "mongodb-geo",
            "system_level": "Application",
            "fault_type": "Authentication Issue",
        },
        "confidence": 70,
        "next_action": {"kind": "submit", "instruction": "mongodb-geo"},
    }
    answer.update(changes)
    return answer


def test_a_valid_answer_parses() -> None:
    decision = parse_decision(json.dumps(_answer()))
    assert decision.root_cause.fault_type == "Authentication Issue"
    assert decision.next_action.kind == "submit"
    assert parse_decision(decision.model_dump_json()) == decision


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (1000000000000000, 100),
        (-5, 0),
        (101, 100),
        ("85%", 85),
        (0.85, 85),
        (42.6, 43),
        (1e300, 100),
    ],
)
def test_confidence_is_clamped_into_0_to_100(confidence: Any, expected: int) -> None:
    assert parse_decision(json.dumps(_answer(confidence=confidence))).confidence == expected


def test_prose_and_fences_around_the_json_are_ignored() -> None:
    text = (
        "Sure! Here is my decision {as requested}:\n```json\n"
        + json.dumps(_answer())
        + "\n```\nLet me know if you need more {details}."
    )
    assert parse_decision(text).summary.startswith("geo crashes")


def test_unknown_taxonomy_values_become_unknown_and_spellings_are_forgiven() -> None:
    odd = _answer(
        phase="Diagnosis",
        root_cause={"component": "geo", "system_level": "Kubernetes", "fault_type": "network"},
        next_action={"kind": "PROBE", "instruction": "kubectl get pods"},
    )
    decision = parse_decision(json.dumps(odd))
    assert decision.phase == "diagnosis"
    assert decision.root_cause.system_level == "Unknown"
    assert decision.root_cause.fault_type == "Network/Storage Issue"
    assert decision.next_action.kind == "probe"
    spelled = _answer(
        root_cause={
            "component": "x",
            "system_level": "operating system",
            "fault_type": "Made up fault",
        }
    )
    root = parse_decision(json.dumps(spelled)).root_cause
    assert (root.system_level, root.fault_type) == ("Operating System", "Unknown")


def test_long_strings_are_truncated_and_hypotheses_capped() -> None:
    decision = parse_decision(
        json.dumps(
            _answer(
                summary="x" * 5000,
                hypotheses=[f"h{i % 7}" for i in range(20)],
                next_action={"kind": "submit", "instruction": {"services": ["geo"]}},
            )
        )
    )
    assert len(decision.summary) == SUMMARY_CHARS
    assert decision.summary.endswith("…")
    assert decision.hypotheses == ["h0", "h1", "h2", "h3", "h4"]
    assert decision.next_action.instruction == '{"services": ["geo"]}'


def test_placeholders_copied_from_the_contract_are_dropped() -> None:
    copied = _answer(
        hypotheses=["<short hypothesis>", "auth failure"],
        root_cause={
            "component": "<service or resource>",
            "system_level": "Hardware",
            "fault_type": "Unknown",
        },
    )
    decision = parse_decision(json.dumps(copied))
    assert decision.hypotheses == ["auth failure"]
    assert decision.root_cause.component == "Unknown"


@pytest.mark.parametrize("missing", ["summary", "phase", "root_cause", "confidence", "next_action"])
def test_missing_fields_are_errors_that_name_the_field(missing: str) -> None:
    answer = _answer()
    del answer[missing]
    with pytest.raises(DecisionError) as caught:
        parse_decision(json.dumps(answer))
    assert missing in caught.value.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I think the geo service is broken.", "no JSON object"),
        (json.dumps(_answer())[:150], "no complete JSON object"),
        (json.dumps(_answer(phase="panic")), "phase"),
        (
            json.dumps(_answer(next_action={"kind": "delete", "instruction": "x"})),
            "next_action.kind",
        ),
        (json.dumps(_answer(confidence="very high")), "confidence"),
        (json.dumps(_answer(confidence=True)), "confidence"),
    ],
)
def test_unrecoverable_answers_raise_decision_error(text: str, reason: str) -> None:
    with pytest.raises(DecisionError, match="invalid Observer decision") as caught:
        parse_decision(text)
    assert reason in caught.value.reason
    assert caught.value.text == text


def _walk(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, dict):
        return [schema, *(node for value in schema.values() for node in _walk(value))]
    if isinstance(schema, list):
        return [node for value in schema for node in _walk(value)]
    return []


def test_the_schema_is_inline_compact_and_matches_the_model() -> None:
    nodes = _walk(DECISION_SCHEMA)
    assert not any("$ref" in node or "$defs" in node or "title" in node for node in nodes)
    assert all(node.get("type") == "string" for node in nodes if "enum" in node)
    props = DECISION_SCHEMA["properties"]
    assert list(props) == list(Decision.model_fields)
    assert DECISION_SCHEMA["required"] == list(props)
    assert props["phase"]["enum"] == list(PHASES)
    assert props["root_cause"]["properties"]["system_level"]["enum"] == list(SYSTEM_LEVELS)
    assert props["root_cause"]["properties"]["fault_type"]["enum"] == list(FAULT_TYPES)
    assert props["next_action"]["properties"]["kind"]["enum"] == list(ACTION_KINDS)
    assert SUBMIT_SCHEMA["properties"]["next_action"]["properties"]["kind"]["enum"] == ["submit"]
    assert len(json.dumps(DECISION_SCHEMA)) < 1500


def test_llama_cpp_turns_the_schema_into_a_grammar_in_property_order() -> None:
    grammar = json_schema_to_gbnf(json.dumps(DECISION_SCHEMA))
    root = next(line for line in grammar.splitlines() if line.startswith("root ::="))
    order = [root.index(f"{name.replace('_', '-')}-kv") for name in DECISION_SCHEMA["properties"]]
    assert order == sorted(order)
    assert '"\\"Network/Storage Issue\\""' in grammar


def test_the_repair_prompt_carries_the_reason_the_answer_and_the_contract() -> None:
    bad = '{"summary": "geo", "phase": "panic"'
    try:
        parse_decision(bad)
    except DecisionError as error:
        messages = repair_prompt(bad, error=error)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "no complete JSON object" in messages[1]["content"]
    assert bad in messages[1]["content"]
    assert DECISION_CONTRACT in messages[1]["content"]
    assert repair_prompt(bad, error="phase: wrong")[1]["content"].startswith(
        "This answer was rejected: phase: wrong"
    )
