"""AIOpsLab's grading rules as pure functions.

The benchmark, the trainer's rewards and the Evolver must agree on what counts
as a correct answer, so the rules live here once, with no I/O and no cluster:

* detection: "Yes" when there is a fault, "No" when there is none;
* localization: success when the answer is exactly the set of faulty services,
  or a one-element answer naming one of them (AIOpsLab's ``is_exact or
  (is_subset and len == 1)``); ``localization_accuracy`` is its graded score;
* analysis: system level and fault type both match (case-insensitively).

Mitigation is judged by fault-specific state checks in the lab, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.scenarios.schema import GroundTruth

_YES = {"yes", "true"}
_NO = {"no", "false"}


def parse_detection(answer: str | bool | None) -> bool | None:
    """``True`` for yes, ``False`` for no, ``None`` for anything else."""
    if isinstance(answer, bool) or answer is None:
        return answer
    word = answer.strip().strip(".").lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    return None


def score_detection(answer: str | bool | None, truth: GroundTruth) -> bool:
    """Whether a "Yes"/"No" answer matches whether a fault was injected."""
    parsed = parse_detection(answer)
    return parsed is not None and parsed == truth.detection


def _names(answer: Sequence[str] | str | None) -> list[str]:
    if answer is None:
        return []
    items = [answer] if isinstance(answer, str) else list(answer)
    return [item.strip().lower() for item in items if isinstance(item, str) and item.strip()]


def score_localization(answer: Sequence[str] | str | None, truth: GroundTruth) -> bool:
    """Exact set of faulty services, or a single name that is one of them."""
    names = _names(answer)
    expected = {c.lower() for c in truth.components}
    if not names:
        return not expected and answer is not None
    return set(names) == expected or (len(names) == 1 and names[0] in expected)


def localization_accuracy(answer: Sequence[str] | str | None, truth: GroundTruth) -> float:
    """AIOpsLab's graded score in [0, 1]: 1 for exact, the true share for a superset."""
    names = set(_names(answer))
    expected = {c.lower() for c in truth.components}
    if names == expected:
        return 1.0
    if expected and expected <= names:
        return len(expected) / len(names)
    return 0.0


def score_analysis(system_level: str | None, fault_type: str | None, truth: GroundTruth) -> bool:
    """Both labels right; a truth without labels cannot be matched."""
    if truth.system_level is None or truth.fault_type is None:
        return False
    return _same(system_level, truth.system_level) and _same(fault_type, truth.fault_type)


def _same(answer: str | None, expected: str) -> bool:
    return answer is not None and answer.strip().lower() == expected.lower()
