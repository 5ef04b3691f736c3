"""The generated suite: every scenario valid as a file one, reproducible, and varied.

The generator is the generalisation test, so what matters is that it really draws
what the catalogue lacks (unseen family x service pairs, two faults, decoys, no-fault
baselines, every task type), that a seed pins the whole set down, and that nothing it
emits would be refused by the loader or be a fault with no effect.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.apps import APPS
from lab.benchmark.generate import generate
from lab.scenarios.families import FAMILIES, default_labels
from lab.scenarios.loader import ScenarioError, load_catalog, load_file, resolve_doc
from lab.scenarios.schema import ID_PATTERN, TASK_TYPES, Scenario

SEEDS = (0, 1, 2, 42, 2024)


def _dumps(scenarios: list[Scenario]) -> list[dict[str, object]]:
    return [s.model_dump(mode="json") for s in scenarios]


def _catalogue_pairs() -> set[tuple[str, str, str | None]]:
    return {(f.family, s.app, f.target) for s in load_catalog() for f in s.faults}


def _mitigable() -> set[str]:
    return {f.family for s in load_catalog().select(task_type="mitigation") for f in s.faults}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_scenario_revalidates_through_the_loader(seed: int) -> None:
    for scenario in generate(seed):
        again = resolve_doc(scenario.model_dump(mode="json"), source="aoi", origin="test")
        assert again.model_dump() == scenario.model_dump()


def test_generated_scenarios_load_from_a_file_unchanged(tmp_path: Path) -> None:
    scenarios = generate(1)
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(_dumps(scenarios), sort_keys=False), encoding="utf-8")
    assert _dumps(load_file(path, default_source="aoi")) == _dumps(scenarios)


def test_same_seed_same_list_and_different_seeds_differ() -> None:
    assert _dumps(generate(7)) == _dumps(generate(7))
    first, second = generate(1), generate(2)
    strip = [{**d, "id": None, "description": None} for d in _dumps(first)]
    assert strip != [{**d, "id": None, "description": None} for d in _dumps(second)]


def test_seed_one_has_at_least_sixty_scenarios_with_unique_ids() -> None:
    scenarios = generate(1)
    assert len(scenarios) >= 60
    ids = [s.id for s in scenarios]
    assert len(set(ids)) == len(ids)
    assert all(re.match(ID_PATTERN, i) and i.startswith("gen1-") for i in ids)


def test_seed_one_covers_what_the_catalogue_lacks() -> None:
    scenarios = generate(1)
    seen = _catalogue_pairs()
    singles = [s for s in scenarios if len(s.faults) == 1 and s.fault.family != "noop"]
    unseen = [s for s in singles if (s.fault.family, s.app, s.fault.target) not in seen]
    assert len(unseen) >= len(singles) // 2
    assert any((s.fault.family, s.app, s.fault.target) in seen for s in singles)
    assert sum(len(s.faults) == 2 for s in scenarios) >= 5
    assert sum(bool(s.decoys) for s in scenarios) >= 5
    assert any(s.families == ("noop",) for s in scenarios)
    assert {s.task_type for s in scenarios} == set(TASK_TYPES)
    assert {s.app for s in scenarios} == set(APPS)
    assert {s.split for s in scenarios} == {"train", "held_out"}
    drawn = {f for s in scenarios for f in s.families}
    assert drawn == {name for name, info in FAMILIES.items() if not info.is_decoy}


@pytest.mark.parametrize("seed", SEEDS)
def test_two_fault_scenarios_name_both_services_from_one_split(seed: int) -> None:
    for scenario in generate(seed):
        if len(scenario.faults) != 2:
            continue
        first, second = scenario.faults
        assert first.target != second.target
        assert {FAMILIES[f.family].split for f in scenario.faults} == {scenario.split}
        assert scenario.ground_truth.components == (first.target, second.target)
        labels = {default_labels(f.family, f.params) for f in scenario.faults}
        if len(labels) > 1:
            assert scenario.task_type != "analysis"
            assert scenario.ground_truth.system_level is None
            assert scenario.ground_truth.fault_type is None


@pytest.mark.parametrize("seed", SEEDS)
def test_tasks_decoys_and_parameters_are_ones_the_lab_can_act_on(seed: int) -> None:
    mitigable = _mitigable()
    for scenario in generate(seed):
        app = APPS[scenario.app]
        if scenario.families == ("noop",):
            assert scenario.task_type == "detection"
            assert scenario.ground_truth.detection is False
        else:
            assert scenario.ground_truth.detection is True
        if scenario.task_type == "mitigation":
            assert set(scenario.families) <= mitigable
        targets = [f.target for f in scenario.faults if f.target]
        decoy_targets = [d.target for d in scenario.decoys]
        assert len(set(targets + decoy_targets)) == len(targets) + len(decoy_targets)
        assert len({d.family for d in scenario.decoys}) == len(scenario.decoys) <= 2
        for fault in scenario.faults:
            if fault.target is None:
                continue
            spec = app.service(fault.target)
            assert spec.kind not in {"jaeger", "loadgenerator"}
            limit = fault.params.get("limit_mib")
            if fault.family == "memory_limit_too_low":
                assert isinstance(limit, int)
                assert limit < spec.working_set_mib
            if fault.family == "cpu_throttling":
                cpu = fault.params["limit_m"]
                assert isinstance(cpu, int)
                assert cpu < spec.base_cpu_m
            if fault.family == "target_port_misconfig":
                assert fault.params["port"] != spec.port


def test_held_out_scenarios_use_held_out_families_only() -> None:
    for seed in SEEDS:
        for scenario in generate(seed):
            splits = {FAMILIES[f].split for f in scenario.families}
            assert splits == {scenario.split}


def test_bad_arguments_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate(-1)
    with pytest.raises(ValueError, match="count"):
        generate(1, count=0)


def test_resolve_doc_refuses_what_a_file_would_not_hold() -> None:
    doc = {
        "id": "bad-1",
        "task_type": "localization",
        "app": "hotel-reservation",
        "faults": [{"family": "mongodb_revoke_auth", "target": "frontend"}],
    }
    with pytest.raises(ScenarioError, match=r"faults\.0\.target: mongodb_revoke_auth targets"):
        resolve_doc(doc, source="aoi", origin="test")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**40), count=st.integers(min_value=1, max_value=40))
def test_any_seed_gives_a_reproducible_valid_set(seed: int, count: int) -> None:
    scenarios = generate(seed, count=count)
    assert len(scenarios) == count
    assert _dumps(scenarios) == _dumps(generate(seed, count=count))
    assert len({s.id for s in scenarios}) == count
    for scenario in scenarios:
        assert {FAMILIES[f].split for f in scenario.families} == {scenario.split}
        targets = [f.target for f in scenario.faults if f.target]
        assert len(set(targets)) == len(targets)
        resolve_doc(scenario.model_dump(mode="json"), source="aoi", origin="hypothesis")
