"""Every generated scenario of seed 1 injects and recovers on the real lab.

The loader proves a generated scenario is well formed; only the lab proves it can
be injected: a target with the objects the fault edits, parameters the API
accepts, two faults and their decoys composing in one namespace. Each scenario is
injected, its mitigation check is read (a fault that left no trace would pass it at
once) and it is recovered; no waiting for symptoms, so the whole suite takes a
minute or two.
"""

from __future__ import annotations

import time

import pytest
from support.lab import LabThread

from lab.benchmark.generate import generate

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SELF_HEALING = frozenset({"container_kill", "noop"})
"""Families whose check may pass right after injection: a killed container restarts,
and no fault has nothing to check."""


def test_every_seed_one_scenario_injects_and_recovers(clean_lab: LabThread) -> None:
    lab = clean_lab
    problems: list[str] = []
    started = time.monotonic()
    for scenario in generate(1):
        try:
            lab.run(lab.lab.inject(scenario), timeout=60)
            verdict = lab.run(lab.lab.check(scenario), timeout=60)
            if verdict.mitigated and not set(scenario.families) <= SELF_HEALING:
                problems.append(f"{scenario.id}: no effect after injection ({verdict.detail})")
        except Exception as exc:  # every scenario's failure is reported at once
            problems.append(f"{scenario.id}: {type(exc).__name__}: {exc}")
        finally:
            lab.run(lab.lab.recover(), timeout=60)
    assert not problems, "\n".join(problems)
    lab.run(lab.lab.wait_ready(timeout_s=120), timeout=150)
    assert time.monotonic() - started < 240
