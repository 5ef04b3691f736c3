"""Checks five-field cron expressions, so a typo in the digest schedule fails at start-up.

A scheduler that silently never fires is worse than one that refuses to start:
the weekly digest would just stop arriving. Supported per field: `*`, numbers,
ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and month / weekday names
(JAN..DEC, SUN..SAT).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),
)


def validate_cron(expression: str) -> str:
    """The expression with single spaces and upper-case names; ValueError says what is wrong."""
    parts = expression.upper().split()
    if len(parts) != len(_FIELDS):
        raise ValueError(
            f"{expression!r} has {len(parts)} field(s); a cron expression has 5: "
            "minute hour day-of-month month day-of-week, e.g. '0 9 * * MON'"
        )
    for part, field in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            _check_item(item, field)
    return " ".join(parts)


def _check_item(item: str, field: _Field) -> None:
    span, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise ValueError(f"{field.name}: step {step!r} in {item!r} is not a positive number")
    if span == "*":
        return
    low, _, high = span.partition("-")
    values = [_value(low, field, item)] + ([_value(high, field, item)] if high else [])
    if len(values) == 2 and values[0] > values[1]:
        raise ValueError(f"{field.name}: range {item!r} runs backwards")


def _value(text: str, field: _Field, item: str) -> int:
    if text in field.names:
        return field.names.index(text) + field.low
    if not text.isdigit() or not field.low <= int(text) <= field.high:
        allowed = f"{field.low}-{field.high}"
        if field.names:
            allowed += f" or {field.names[0]}..{field.names[-1]}"
        raise ValueError(f"{field.name}: {item!r} is outside {allowed}")
    return int(text)
