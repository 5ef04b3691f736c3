"""Recovery that waits, per app, and a diagnosis that holds up right after one.

The benchmark runs the three apps' scenarios side by side, so recovering one app must
leave another app's fault alone and must not hold the lab's lock while it waits for the
symptoms to leave. Back to back, as a person drills, the analyzers must answer about
the fault the question is about, not the one recovered a few seconds before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.lab import LabThread

from agents.analyzers import analyze, diagnose, focus_namespaces
from agents.analyzers.recency import is_stopped
from lab.apps import APPS
from lab.errors import LabError
from lab.k8s import api_client
from lab.scenarios.loader import scenario_from_cli
from lab.scenarios.schema import Scenario

HOTEL = APPS["hotel-reservation"]
SOCIAL = APPS["social-network"]
A_SERVICES = {"mongodb-geo", "geo"}
"""The first fault's database and the client that reports it."""
SIGNALS = frozenset({"logs", "traces", "error_rate", "latency"})
"""The analyzers that see a revoked role: its leftovers must read as stopped."""


def _revoke(app: str, target: str) -> Scenario:
    return scenario_from_cli("mongodb_revoke_auth", target, {}, app=app)


def _wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f}s"
        time.sleep(0.5)


def test_recovering_one_app_waits_for_quiet_and_leaves_the_other_apps_fault(
    clean_lab: LabThread,
) -> None:
    lab = clean_lab.lab
    clean_lab.run(lab.inject(_revoke(HOTEL.name, "mongodb-geo")))
    clean_lab.run(lab.inject(_revoke(SOCIAL.name, "user-mongodb")))
    _wait_for(lambda: lab.unhealthy([HOTEL]) and lab.unhealthy([SOCIAL]), "symptoms in both")

    pending = asyncio.run_coroutine_threadsafe(
        lab.recover(app=HOTEL.name, settle_s=3.0, timeout_s=60.0), clean_lab.loop
    )
    # The wait holds no lock: another app's fault goes in while the hotel settles.
    started = time.monotonic()
    clean_lab.run(lab.inject(scenario_from_cli("noop", None, {}, app=SOCIAL.name)))
    assert not pending.done(), "the recovery did not wait for its settle time"
    assert time.monotonic() - started < 3.0
    recovery = pending.result(90)

    assert recovery.quiet, recovery.detail
    assert recovery.recovered == 1
    assert recovery.seconds >= 3.0
    assert lab.unhealthy([HOTEL]) == []
    assert {(f.app, f.spec.family) for f in lab.active} >= {(SOCIAL.name, "mongodb_revoke_auth")}
    assert all(f.app == SOCIAL.name for f in lab.active)
    assert lab.unhealthy([SOCIAL]), "the other app's fault was recovered too"


def test_a_recovery_that_cannot_go_quiet_gives_up_and_says_why(clean_lab: LabThread) -> None:
    lab = clean_lab.lab
    clean_lab.run(lab.inject(_revoke(SOCIAL.name, "user-mongodb")))
    _wait_for(lambda: lab.unhealthy([SOCIAL]), "symptoms")
    # Only the recovered app's services count: the social network's fault does not hold it.
    hotel = clean_lab.run(lab.recover(app=HOTEL.name, settle_s=1.0, timeout_s=30.0))
    assert (hotel.recovered, hotel.quiet) == (0, True), hotel.detail
    # A settle time the bound cannot hold: it gives up at the bound and says so.
    social = clean_lab.run(lab.recover(app=SOCIAL.name, settle_s=60.0, timeout_s=3.0))
    assert social.recovered == 1
    assert not social.quiet
    assert "of the 60s asked" in social.detail
    assert 3.0 <= social.seconds < 10.0
    with pytest.raises(LabError, match="no app named"):
        clean_lab.run(lab.recover(app="no-such-app"))


def test_back_to_back_the_diagnosis_is_about_the_question_not_the_last_fault(
    clean_lab: LabThread,
) -> None:
    lab = clean_lab.lab
    ends = lab.endpoints
    assert ends is not None
    clean_lab.run(lab.inject(_revoke(HOTEL.name, "mongodb-geo")))
    time.sleep(8.0)
    recovery = clean_lab.run(lab.recover(app=HOTEL.name))  # no settle: as a person drills
    assert recovery.quiet, recovery.detail
    clean_lab.run(lab.inject(_revoke(SOCIAL.name, "user-mongodb")))
    time.sleep(12.0)  # B's symptoms arrive; A's leave the 10 s window, not the 1 m one

    api = api_client(Path(ends.observer_kubeconfig))
    namespaces = [HOTEL.namespace, SOCIAL.namespace]
    report = asyncio.run(
        analyze(
            api,
            namespaces=namespaces,
            prometheus_url=ends.prometheus_url,
            jaeger_url=ends.jaeger_url,
            window="1m",
            recent="10s",
        )
    )
    assert report.errors == []
    question = f"Users of the social network app ({SOCIAL.namespace}) see errors. Any fault?"
    focus = focus_namespaces(question, report.namespaces)
    assert focus == [SOCIAL.namespace]
    about_b = diagnose(report.findings, focus=focus)
    assert about_b.detected, about_b.text()
    assert about_b.namespace == SOCIAL.namespace
    assert not A_SERVICES & set(about_b.components), about_b.text()
    assert "user-mongodb" in about_b.components, about_b.text()

    # The hotel, asked about now, is healthy: what failed there has stopped. (Earlier tests
    # of this session may leave context there, a restart or a healthy rollout: no alarm.)
    about_a = diagnose(report.findings, focus=[HOTEL.namespace])
    assert not about_a.detected, about_a.text()
    assert "mongodb-geo" not in about_a.components, about_a.text()
    leftovers = [
        f
        for f in report.findings
        if f.namespace == HOTEL.namespace and f.component in A_SERVICES and f.analyzer in SIGNALS
    ]
    assert leftovers, "A's symptoms should still be in the 1m window, marked stopped"
    assert all(is_stopped(f) for f in leftovers), [f.summary for f in leftovers]
