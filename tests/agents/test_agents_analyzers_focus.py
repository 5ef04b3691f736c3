"""Focus: the namespaces a question names, and a diagnosis that answers about them.

``focus_namespaces`` reads untrusted text (a Slack question), so beside the examples a
property test checks it never raises and never focuses a namespace it was not given.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from agents.analyzers.finding import Finding, Severity
from agents.analyzers.focus import focus_namespaces
from agents.analyzers.rank import diagnose
from agents.analyzers.recency import stopped

HOTEL, SOCIAL, SHOP = "test-hotel-reservation", "test-social-network", "astronomy-shop"
LAB = [HOTEL, SOCIAL, SHOP]


def test_an_app_is_named_however_it_is_spelt() -> None:
    for question in (
        "Is anything wrong with Hotel Reservation?",
        "hotel-reservation: users cannot log in",
        "The service test-hotel-reservation returns errors",
        "what's up with hotel_reservation",
        "HOTELRESERVATION is slow",
    ):
        assert focus_namespaces(question, LAB) == [HOTEL], question
    assert focus_namespaces("the social network app is slow", LAB) == [SOCIAL]
    assert focus_namespaces("checkout fails in the Astronomy Shop", LAB) == [SHOP]


def test_a_question_naming_no_app_focuses_on_nothing() -> None:
    assert focus_namespaces("something is slow", LAB) == []
    assert focus_namespaces("", LAB) == []
    assert focus_namespaces("the hotel is slow", LAB) == []  # one word of two is not the name
    assert focus_namespaces("a workshop on networks", ["shop", "network"]) == []


def test_several_apps_named_are_all_focused_in_the_given_order() -> None:
    question = "the astronomy shop and the hotel reservation app both fail"
    assert focus_namespaces(question, LAB) == [HOTEL, SHOP]


def test_the_generic_prefix_is_optional_but_words_are_not() -> None:
    assert focus_namespaces("test social network", LAB) == [SOCIAL]
    assert focus_namespaces("social", LAB) == []
    assert focus_namespaces("is prod down?", ["prod", "test-prod"]) == ["prod", "test-prod"]


@given(st.text(max_size=300), st.lists(st.text(max_size=40), max_size=8))
def test_focus_never_raises_and_never_invents_a_namespace(
    question: str, namespaces: list[str]
) -> None:
    found = focus_namespaces(question, namespaces)
    assert set(found) <= set(namespaces)
    assert len(found) == len(set(found))


@given(st.sampled_from(LAB), st.text(max_size=80), st.text(max_size=80))
def test_a_namespace_written_out_in_a_question_is_always_found(
    namespace: str, before: str, after: str
) -> None:
    assert namespace in focus_namespaces(f"{before} {namespace} {after}", LAB)


def _finding(
    component: str,
    namespace: str,
    score: float,
    *,
    severity: Severity = Severity.WARNING,
) -> Finding:
    return Finding(
        analyzer="logs",
        severity=severity,
        namespace=namespace,
        kind="Service",
        name=component,
        component=component,
        summary=f"{component} fails",
        score=score,
    )


def test_the_root_cause_comes_from_the_focus_namespace() -> None:
    elsewhere = _finding("mongodb-geo", HOTEL, 0.95, severity=Severity.CRITICAL)
    here = _finding("post-storage-mongodb", SOCIAL, 0.6)
    diagnosis = diagnose([elsewhere, here], focus=[SOCIAL])
    assert diagnosis.detected
    assert diagnosis.namespace == SOCIAL
    assert diagnosis.components == ["post-storage-mongodb"]
    assert diagnosis.findings == [here, elsewhere]  # kept, listed after the focus
    assert diagnose([elsewhere, here]).components == ["mongodb-geo"]  # without a focus


def test_a_healthy_focus_app_answers_no_fault_while_another_app_is_broken() -> None:
    elsewhere = _finding("mongodb-geo", HOTEL, 0.95, severity=Severity.CRITICAL)
    diagnosis = diagnose([elsewhere], focus=[SOCIAL])
    assert not diagnosis.detected
    assert diagnosis.components == []
    assert diagnosis.answers()["detection"] == "No"
    assert diagnosis.namespace == SOCIAL  # so the other app reads as "also seen in ..."
    assert diagnosis.findings == [elsewhere]


def test_only_information_in_focus_is_a_weak_lead_not_an_alarm() -> None:
    elsewhere = _finding("mongodb-geo", HOTEL, 0.95, severity=Severity.CRITICAL)
    hint = _finding("home-timeline", SOCIAL, 0.3, severity=Severity.INFO)
    diagnosis = diagnose([elsewhere, hint], focus=[SOCIAL])
    assert not diagnosis.detected
    assert diagnosis.components == ["home-timeline"]


def test_what_stopped_in_focus_is_no_fault_now() -> None:
    past = stopped(_finding("mongodb-geo", HOTEL, 0.95), timedelta(seconds=15))
    diagnosis = diagnose([past], focus=[HOTEL])
    assert not diagnosis.detected
    assert diagnosis.components == []
    assert "stopped" in diagnosis.summary


def test_no_focus_and_an_empty_focus_weigh_every_namespace() -> None:
    found = [
        _finding("mongodb-geo", HOTEL, 0.95),
        _finding("post-storage-mongodb", SOCIAL, 0.6),
    ]
    assert diagnose(found, focus=[]).components == diagnose(found).components == ["mongodb-geo"]
