"""The task's question, worded per task type the way AIOpsLab words it (in our words).

AIOpsLab gives every problem of a task type the same statement: the role ("an
expert DevOps engineer assigned to ..."), the service's details (name,
namespace, description), "analyse the service's state and telemetry", then what
to submit and in which form. Asking our agents the same thing, with the fault
itself never named, is what makes our numbers comparable to AIOpsLab's: the
agent learns only the application and the namespace, as it would there. The
answer vocabulary comes from ``store.labels``, the one place it is defined.

The question has to fit the Observer's prompt (``agents.prompts.QUESTION_CHARS``),
so the application's description is the part that gets shortened.
"""

from __future__ import annotations

from agents.prompts import QUESTION_CHARS
from store.labels import FAULT_TYPES, SYSTEM_LEVELS, TASK_TYPES, TaskType

_ROLE = {
    "detection": "detect anomalies in",
    "localization": "localize faults in",
    "analysis": "analyse the root cause of faults in",
    "mitigation": "mitigate anomalies in",
}


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


_SUBMIT: dict[str, str] = {
    "detection": 'Submit "Yes" if you find anomalies, "No" if there are none.',
    "localization": (
        "Submit the list of faulty service names where the root cause lies, "
        'e.g. ["svc-a"], or [] if nothing is faulty.'
    ),
    "analysis": (
        f"Submit the system level (one of: {_choices(SYSTEM_LEVELS)}) "
        f"and the fault type (one of: {_choices(FAULT_TYPES)})."
    ),
    "mitigation": (
        "Fix the fault so that it is gone (each fix is one change that needs approval), "
        "check that it worked, then submit."
    ),
}
_MIN_DESCRIPTION = 24
"""Below this many characters a clipped description says nothing; it is left out instead."""


def task_question(
    task_type: TaskType, *, app_name: str, namespace: str, description: str = ""
) -> str:
    """The statement of a ``task_type`` task about ``app_name`` in ``namespace``.

    >>> task_question("detection", app_name="Hotel Reservation",
    ...               namespace="test-hotel-reservation")
    'You are a DevOps engineer asked to detect anomalies in a deployed service. ...'

    It names the service and namespace and says what to submit in which form; it
    never names the fault or the answer. At most ``QUESTION_CHARS`` characters:
    ``description`` is shortened (or left out) to fit.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    app = " ".join(app_name.split()) or "the application"
    ns = namespace.strip()
    if not ns:
        raise ValueError("a task question needs the namespace the service runs in")
    head = (
        f"You are a DevOps engineer asked to {_ROLE[task_type]} a deployed service. "
        f"Service: {app}, namespace {ns}."
    )
    tail = f"Start by reading the service's state and telemetry. {_SUBMIT[task_type]}"
    about = _fit(" ".join(description.split()), QUESTION_CHARS - len(head) - len(tail) - 2)
    question = " ".join(part for part in (head, about, tail) if part)
    if len(question) > QUESTION_CHARS:  # an application name or namespace far beyond any real one
        raise ValueError(
            f"the question would be {len(question)} characters, more than the Observer's "
            f"{QUESTION_CHARS}: shorten the application name or namespace"
        )
    return question


def _fit(description: str, room: int) -> str:
    """``description`` as one sentence of at most ``room`` characters ('' when none fits)."""
    if not description or room < _MIN_DESCRIPTION:
        return ""
    text = description if description.endswith(".") else description + "."
    if len(text) <= room:
        return text
    return text[: room - 1].rstrip(" ,;:.") + "…"
