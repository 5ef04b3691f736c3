"""The Observer's one-JSON-object decision: its schema for constrained decoding, and a
forgiving parser for what models actually return.

Constrained decoding (llama.cpp grammars, server-side JSON modes) gets the shape
right but not the values: numeric bounds are not enforced (a 0-100 confidence came
back as 1000000000000000), HTTP backends may ignore the schema altogether, and
small models wrap JSON in prose. So the schema steers decoding, and
`parse_decision` repairs what can be repaired without guessing (clamp, truncate,
unknown taxonomy values become "Unknown", copied `<placeholders>` are dropped)
and raises `DecisionError` with the reason when it cannot, which the runtime
turns into one repair attempt.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.llm.base import Message
from store import labels

Phase = Literal["triage", "diagnosis", "mitigation", "verification"]
# The labels are store.labels' (AIOpsLab's); a decision may also say "Unknown". A
# Literal nested in a Literal flattens, for mypy and for get_args alike, so these are
# built from store.labels, not copied (tests/agents/test_agents_scoring.py checks).
SystemLevel = Literal[labels.SystemLevel, "Unknown"]
FaultType = Literal[labels.FaultType, "Unknown"]
ActionKind = Literal["probe", "executor", "submit"]

PHASES: tuple[Phase, ...] = get_args(Phase)
SYSTEM_LEVELS: tuple[SystemLevel, ...] = get_args(SystemLevel)
FAULT_TYPES: tuple[FaultType, ...] = get_args(FaultType)
ACTION_KINDS: tuple[ActionKind, ...] = get_args(ActionKind)

# What we accept (HTTP backends may send long answers) ...
SUMMARY_CHARS = 400
MAX_HYPOTHESES = 5
HYPOTHESIS_CHARS = 160
COMPONENT_CHARS = 80
INSTRUCTION_CHARS = 400
# ... and what constrained decoding may produce: tighter, so that even a decision
# that fills every field closes before DECISION_MAX_TOKENS.
_DECODE_SUMMARY_CHARS = 120
_DECODE_HYPOTHESES = 2
_DECODE_HYPOTHESIS_CHARS = 48
_DECODE_COMPONENT_CHARS = 40
_DECODE_INSTRUCTION_CHARS = 96

# Keys, enum values, a 16-digit integer (llama.cpp's bound) and every optional space
# take 113 tokens in SmolLM2's vocabulary at worst; other vocabularies differ a little.
_DECODE_STRUCTURE_TOKENS = 128

# A max_tokens at which a decision decoded under DECISION_SCHEMA always closes, even
# with every string at its limit: each token adds at least one character to a string
# (see _DECODE_CHAR). Typical decisions take 100-250.
DECISION_MAX_TOKENS = (
    _DECODE_SUMMARY_CHARS
    + _DECODE_HYPOTHESES * _DECODE_HYPOTHESIS_CHARS
    + _DECODE_COMPONENT_CHARS
    + _DECODE_INSTRUCTION_CHARS
    + _DECODE_STRUCTURE_TOKENS
)

_SEARCH_CHARS = 20_000
_SEARCH_ATTEMPTS = 50


class RootCause(BaseModel):
    """Where the fault is and what kind it is (AIOpsLab's analysis taxonomy plus Unknown)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    component: str = Field(max_length=COMPONENT_CHARS)
    system_level: SystemLevel
    fault_type: FaultType


class NextAction(BaseModel):
    """What happens next: a read-only probe, a proposed fix, or the final answer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ActionKind
    instruction: str = Field(max_length=INSTRUCTION_CHARS)


class Decision(BaseModel):
    """One Observer step (DESIGN.md section 4)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    summary: str = Field(max_length=SUMMARY_CHARS)
    phase: Phase
    hypotheses: list[str] = Field(max_length=MAX_HYPOTHESES)
    root_cause: RootCause
    confidence: int = Field(ge=0, le=100, strict=True)  # strict: true/false is no confidence
    next_action: NextAction


class DecisionError(ValueError):
    """A model answer that cannot be turned into a Decision; `reason` says why."""

    def __init__(self, reason: str, *, text: str = "") -> None:
        self.reason = reason
        self.text = text
        super().__init__(f"invalid Observer decision: {reason}")


# Printable ASCII without `"` and `\\`: under llama.cpp's default string rule a
# character may be a raw control character (invalid JSON), a `\\uXXXX` escape (up to
# six tokens) or a multi-byte letter (up to four byte tokens), so "at most N
# characters" did not bound the tokens, and answers ran into max_tokens. With this
# class every token yields at least one character, so DECISION_MAX_TOKENS holds.
# The class reads the same as a regular expression and as GBNF.
_DECODE_CHAR = r"[ -!#-[\]-~]"


def _string(max_length: int) -> dict[str, Any]:
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": f"^{_DECODE_CHAR}{{0,{max_length}}}$",
    }


def _enum(values: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def decision_schema(*, actions: Sequence[ActionKind] = ACTION_KINDS) -> dict[str, Any]:
    """The decision's JSON schema for constrained decoding; `actions` narrows next_action.kind.

    Hand-built rather than `Decision.model_json_schema()`: no `$ref`s or titles, string
    enums only, and tighter lengths than the model accepts (see the limits above).
    On the last step pass `actions=("submit",)` and the grammar itself forces an answer.
    """
    return _object(
        {
            "summary": _string(_DECODE_SUMMARY_CHARS),
            "phase": _enum(PHASES),
            "hypotheses": {
                "type": "array",
                "items": _string(_DECODE_HYPOTHESIS_CHARS),
                "maxItems": _DECODE_HYPOTHESES,
            },
            "root_cause": _object(
                {
                    "component": _string(_DECODE_COMPONENT_CHARS),
                    "system_level": _enum(SYSTEM_LEVELS),
                    "fault_type": _enum(FAULT_TYPES),
                }
            ),
            # Servers that honour bounds use them; llama.cpp ignores them (we clamp).
            "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
            "next_action": _object(
                {"kind": _enum(actions), "instruction": _string(_DECODE_INSTRUCTION_CHARS)}
            ),
        }
    )


DECISION_SCHEMA: dict[str, Any] = decision_schema()
SUBMIT_SCHEMA: dict[str, Any] = decision_schema(actions=("submit",))

DECISION_CONTRACT = (
    '{"summary": "<what the evidence shows>", '
    f'"phase": "{"|".join(PHASES)}", '
    '"hypotheses": ["<short hypothesis>"], '
    '"root_cause": {"component": "<service or resource>", '
    f'"system_level": "{"|".join(SYSTEM_LEVELS)}", '
    f'"fault_type": "{"|".join(FAULT_TYPES)}"}}, '
    '"confidence": <integer 0-100>, '
    f'"next_action": {{"kind": "{"|".join(ACTION_KINDS)}", '
    '"instruction": "<read-only command | fix to propose | final answer>"}}'
)


def parse_decision(text: str) -> Decision:
    """The Decision in a model's answer, repaired where that needs no guessing.

    >>> parse_decision('Sure! {"summary": "geo crashes", ..., "confidence": 1000000000000000, ...}')
    Decision(summary='geo crashes', ..., confidence=100, ...)

    Raises DecisionError when no JSON object is found, a required field is missing,
    or phase / next_action.kind is not one of their values.
    """
    data = _first_json_object(text)
    try:
        return Decision.model_validate(_normalise(data))
    except ValidationError as exc:
        raise DecisionError(_describe(exc), text=text) from exc


def repair_prompt(text: str, *, error: DecisionError | str) -> list[Message]:
    """Messages asking a model to rewrite a rejected answer as a valid decision."""
    reason = error.reason if isinstance(error, DecisionError) else error
    return [
        Message(role="system", content="You repair JSON. Reply with one JSON object only."),
        Message(
            role="user",
            content=(
                f"This answer was rejected: {reason}\n\n"
                f"Answer:\n{text[:1500]}\n\n"
                f"Rewrite it as one JSON object of this form:\n{DECISION_CONTRACT}\n"
                'Keep its meaning; use "Unknown" where it gives no value.'
            ),
        ),
    ]


def _first_json_object(text: str) -> dict[str, Any]:
    """The first {...} that parses and has a decision's keys (prose around it is ignored)."""
    # strict=False: a raw newline or tab inside a string (HTTP backends send them) is
    # still the model's meaning, not a reason to throw the answer away.
    decoder = json.JSONDecoder(strict=False)
    window = text[:_SEARCH_CHARS]
    start = window.find("{")
    for _ in range(_SEARCH_ATTEMPTS):
        if start < 0:
            break
        try:
            value, _end = decoder.raw_decode(window, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and value.keys() & {"summary", "phase", "next_action"}:
            return value
        start = window.find("{", start + 1)
    if "{" in window:
        raise DecisionError("no complete JSON object with a decision's keys", text=text)
    raise DecisionError("the answer holds no JSON object", text=text)


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "summary" in out:
        out["summary"] = _clip(out["summary"], SUMMARY_CHARS)
    if "phase" in out:
        out["phase"] = _match(out["phase"], PHASES, default=None)
    if "hypotheses" in out:
        out["hypotheses"] = _hypotheses(out["hypotheses"])
    if "confidence" in out:
        out["confidence"] = _confidence(out["confidence"])
    if isinstance(out.get("root_cause"), dict):
        out["root_cause"] = _root_cause(out["root_cause"])
    if isinstance(out.get("next_action"), dict):
        out["next_action"] = _next_action(out["next_action"])
    return out


def _root_cause(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "component" in out:
        component = _clip(out["component"], COMPONENT_CHARS)
        out["component"] = "Unknown" if _is_placeholder(component) else component
    if "system_level" in out:
        out["system_level"] = _match(out["system_level"], SYSTEM_LEVELS, default="Unknown")
    if "fault_type" in out:
        out["fault_type"] = _match(out["fault_type"], FAULT_TYPES, default="Unknown")
    return out


def _next_action(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "kind" in out:
        out["kind"] = _match(out["kind"], ACTION_KINDS, default=None)
    instruction = out.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        # A structured answer ({"services": [...]}) is still an answer: keep it as JSON text.
        instruction = json.dumps(instruction, ensure_ascii=False)
    if instruction is not None:
        out["instruction"] = _clip(instruction, INSTRUCTION_CHARS)
    return out


def _clip(value: Any, limit: int) -> Any:
    if not isinstance(value, str):
        return value
    value = value.strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _hypotheses(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    items = [_clip(str(item), HYPOTHESIS_CHARS) for item in value if str(item).strip()]
    items = [item for item in items if not _is_placeholder(item)]
    return list(dict.fromkeys(items))[:MAX_HYPOTHESES]  # small models repeat themselves


def _is_placeholder(value: Any) -> bool:
    """A contract placeholder copied as a value (small models do): `<service or resource>`."""
    return isinstance(value, str) and re.fullmatch(r"<[^<>]*>", value.strip()) is not None


def _confidence(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # refused by validation: true/false is not a confidence
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*%?\s*", value)
        if match is None:
            return value
        value = float(match.group(1))
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0 if value < 0 else 100
        # 0.85 from a model means 85 %, not "almost nothing".
        value = round(value * 100) if 0 < value < 1 else round(value)
    if isinstance(value, int):
        return max(0, min(100, value))
    return value


def _key(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


def _match(value: Any, choices: Sequence[str], *, default: str | None) -> Any:
    """`choices`' member that `value` names (ignoring case and punctuation, or by a prefix
    of four letters or more), else `default` (None leaves the value for validation)."""
    if not isinstance(value, str):
        return value if default is None else default
    key = _key(value)
    for choice in choices:
        if _key(choice) == key:
            return choice
    if len(key) >= 4:
        for choice in choices:
            if _key(choice).startswith(key):
                return choice
    return value if default is None else default


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "decision"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
