"""The analyzers alone, on the real lab: one scenario per fault family, and the healthy lab.

For each family the lab injects a catalogue scenario; the analyzers (no model)
must name the faulty component within ~15 s. Noop scenarios, decoys included,
must come back "No" once the lab is quiet. Scenarios alternate between the
three apps so one test's lingering telemetry does not sit in the next one's
namespace; the analyzers use a short window for the same reason.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support.lab import LabThread

from agents.analyzers import Diagnosis, analyze, diagnose
from lab.apps import APPS
from lab.k8s import api_client
from lab.scenarios import FAMILIES, Scenario, load_catalog

WINDOW = "15s"
DETECT_S = 15.0
QUIET_S = 45.0
CATALOG = load_catalog()
FLAG = "cartFailure"
"""The feature flag tried here; flags whose culprit no signal names are in the benchmark."""


def _one_per_family() -> list[Scenario]:
    chosen: dict[str, Scenario] = {}
    for scenario in CATALOG:
        family = scenario.fault.family
        if len(scenario.faults) > 1 or scenario.decoys or family == "noop" or family in chosen:
            continue
        if family == "feature_flag" and scenario.fault.params.get("flag") != FLAG:
            continue
        chosen[family] = scenario
    missing = (
        set(FAMILIES) - set(chosen) - {"noop"} - {f for f, i in FAMILIES.items() if i.is_decoy}
    )
    assert not missing, f"no single-fault scenario for {sorted(missing)}"
    by_app: dict[str, list[Scenario]] = {}
    for scenario in sorted(chosen.values(), key=lambda s: s.id):
        by_app.setdefault(scenario.app, []).append(scenario)
    ordered: list[Scenario] = []
    while any(by_app.values()):
        for queue in by_app.values():
            if queue:
                ordered.append(queue.pop(0))
    return ordered


FAULTS = _one_per_family()
QUIET = [s for s in CATALOG if s.fault.family == "noop"]


def _diagnose(lab: LabThread, namespace: str) -> Diagnosis:
    ends = lab.lab.endpoints
    assert ends is not None
    api = api_client(Path(ends.observer_kubeconfig))
    report = asyncio.run(
        analyze(
            api,
            namespaces=[namespace],
            prometheus_url=ends.prometheus_url,
            jaeger_url=ends.jaeger_url,
            window=WINDOW,
        )
    )
    assert report.errors == []
    return diagnose(report.findings)


def _wait_quiet(lab: LabThread, namespace: str) -> Diagnosis:
    deadline = time.monotonic() + QUIET_S
    diagnosis = _diagnose(lab, namespace)
    while diagnosis.detected and time.monotonic() < deadline:
        time.sleep(1.0)
        diagnosis = _diagnose(lab, namespace)
    return diagnosis


@pytest.mark.parametrize("scenario", QUIET, ids=lambda s: s.id)
def test_a_healthy_lab_raises_no_alarm(clean_lab: LabThread, scenario: Scenario) -> None:
    namespace = APPS[scenario.app].namespace
    clean_lab.run(clean_lab.lab.inject(scenario))
    first = _wait_quiet(clean_lab, namespace)
    assert not first.detected, first.text()
    time.sleep(2.0)
    again = _diagnose(clean_lab, namespace)
    assert again.answers()["detection"] == "No", again.text()


@pytest.mark.parametrize("scenario", FAULTS, ids=lambda s: s.fault.family)
def test_analyzers_name_the_faulty_component(clean_lab: LabThread, scenario: Scenario) -> None:
    namespace = APPS[scenario.app].namespace
    expected = set(scenario.ground_truth.components)
    clean_lab.run(clean_lab.lab.inject(scenario))
    deadline = time.monotonic() + DETECT_S
    diagnosis = _diagnose(clean_lab, namespace)
    while not expected & set(diagnosis.components) and time.monotonic() < deadline:
        time.sleep(0.5)
        diagnosis = _diagnose(clean_lab, namespace)
    assert expected & set(diagnosis.components), f"{scenario.id}: {diagnosis.text()}"
