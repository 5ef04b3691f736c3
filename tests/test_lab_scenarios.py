"""The scenario catalogue, its loader's error messages and ad-hoc scenarios."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lab.apps import APPS
from lab.scenarios import (
    FAMILIES,
    GroundTruth,
    Registry,
    ScenarioError,
    UnknownScenario,
    load_catalog,
    scenario_from_cli,
)
from store.labels import TASK_TYPES

D, L, A, M = TASK_TYPES
FLAG_PROBLEMS = {
    "ad_service_failure": "ad",
    "ad_service_high_cpu": "ad",
    "ad_service_manual_gc": "ad",
    "cart_service_failure": "cart",
    "image_slow_load": "frontend",
    "kafka_queue_problems": "kafka",
    "loadgenerator_flood_homepage": "frontend",
    "payment_service_failure": "payment",
    "payment_service_unreachable": "checkout",
    "product_catalog_service_failure": "product-catalog",
    "recommendation_service_cache_failure": "recommendation",
}


def _aiopslab_ids() -> set[str]:
    """AIOpsLab's 86 task ids, spelled out from its registry's naming."""
    ids = {f"k8s_target_port-misconfig-{t}-{n}" for t in TASK_TYPES for n in (1, 2, 3)}
    for prefix in (
        "auth_miss_mongodb",
        "misconfig_app_hotel_res",
        "scale_pod_zero_social_net",
        "assign_to_non_existent_node_social_net",
        "wrong_bin_usage",
    ):
        ids |= {f"{prefix}-{t}-1" for t in TASK_TYPES}
    for prefix in ("revoke_auth_mongodb", "user_unregistered_mongodb"):
        ids |= {f"{prefix}-{t}-{n}" for t in TASK_TYPES for n in (1, 2)}
    ids |= {f"redeploy_without_PV-{t}-1" for t in (D, A, M)}
    ids |= {f"container_kill-{t}" for t in (D, L)}
    for prefix in ("pod_failure", "pod_kill", "network_loss", "network_delay"):
        ids |= {f"{prefix}_hotel_res-{t}-1" for t in (D, L)}
    ids |= {
        f"noop_detection_{a}-1" for a in ("hotel_reservation", "social_network", "astronomy_shop")
    }
    ids |= {f"astronomy_shop_{p}-{t}-1" for p in FLAG_PROBLEMS for t in (D, L)}
    return ids


@pytest.fixture(scope="module")
def catalog() -> Registry:
    return load_catalog()


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


GOOD = """\
- id: {id}
  task_type: localization
  app: hotel-reservation
  faults:
    - family: mongodb_revoke_auth
      target: mongodb-geo
"""


# -- the built-in catalogue -------------------------------------------------------------------


def test_catalog_has_exactly_aiopslabs_86_tasks(catalog: Registry) -> None:
    aiopslab = catalog.select(source="aiopslab")
    assert {s.id for s in aiopslab} == _aiopslab_ids()
    assert len(aiopslab) == 86
    assert Counter(s.task_type for s in aiopslab) == {D: 32, L: 28, A: 13, M: 13}


def test_aiopslab_ground_truth(catalog: Registry) -> None:
    def truth(scenario_id: str) -> GroundTruth:
        return catalog.get(scenario_id).ground_truth

    for problem, service in FLAG_PROBLEMS.items():
        assert truth(f"astronomy_shop_{problem}-localization-1").components == (service,)
    for n, service in enumerate(("user-service", "text-service", "post-storage-service"), 1):
        port = truth(f"k8s_target_port-misconfig-analysis-{n}")
        assert port.components == (service,)
        assert (port.system_level, port.fault_type) == ("Virtualization", "Misconfiguration")
    assert truth("revoke_auth_mongodb-localization-2").components == ("mongodb-rate",)
    assert truth("revoke_auth_mongodb-analysis-1").fault_type == "Authentication Issue"
    assert truth("user_unregistered_mongodb-analysis-2").fault_type == "Network/Storage Issue"
    assert truth("wrong_bin_usage-localization-1").components == ("profile",)
    assert truth("container_kill-localization").components == ("geo",)
    assert truth("network_delay_hotel_res-localization-1").components == ("user",)
    assert truth("assign_to_non_existent_node_social_net-analysis-1").fault_type == (
        "Dependency Problem"
    )
    for app in ("hotel_reservation", "social_network", "astronomy_shop"):
        assert truth(f"noop_detection_{app}-1") == GroundTruth(detection=False)
    wrong_bin = catalog.get("wrong_bin_usage-mitigation-1").fault
    assert (wrong_bin.family, wrong_bin.target, wrong_bin.params) == (
        "wrong_binary",
        "profile",
        {"binary": "geo"},
    )


def test_every_scenario_targets_an_existing_service(catalog: Registry) -> None:
    for scenario in catalog:
        app = APPS[scenario.app]
        for fault in (*scenario.faults, *scenario.decoys):
            assert fault.target is None or fault.target in app.service_names, scenario.id
            assert fault.target is not None or FAMILIES[fault.family].target_rule != "required"
        assert set(scenario.ground_truth.components) <= set(app.service_names)


def test_every_family_is_used(catalog: Registry) -> None:
    used = {f.family for s in catalog for f in (*s.faults, *s.decoys)}
    assert used == set(FAMILIES)


def test_families_match_the_fault_implementations() -> None:
    faults = pytest.importorskip("lab.faults")
    assert set(faults.FAULTS) == set(FAMILIES)


def test_split_is_by_family(catalog: Registry) -> None:
    splits: dict[str, set[str]] = {}
    for scenario in catalog:
        for family in scenario.families:
            splits.setdefault(family, set()).add(scenario.split)
            assert FAMILIES[family].split == scenario.split
    assert all(len(s) == 1 for s in splits.values()), splits
    held_out = [f for f in FAMILIES.values() if f.split == "held_out"]
    faults = [f for f in FAMILIES.values() if not f.is_decoy]
    assert 0.25 <= len(held_out) / len(faults) <= 0.35
    assert all(f.split is None for f in FAMILIES.values() if f.is_decoy)


def test_own_families_cover_all_four_task_types(catalog: Registry) -> None:
    own = [f.name for f in FAMILIES.values() if f.origin == "aoi"]
    assert len(own) >= 10
    for family in own:
        tasks = {s.task_type for s in catalog.select(family=family, source="aoi")}
        assert tasks == set(TASK_TYPES), family
    composed = [s for s in catalog if len(s.faults) > 1]
    with_decoys = [s for s in catalog if s.decoys and s.ground_truth.detection]
    assert composed
    assert with_decoys


def test_memory_limit_scenarios_are_below_the_working_set(catalog: Registry) -> None:
    for scenario in catalog.select(family="memory_limit_too_low"):
        for fault in scenario.faults:
            if fault.family == "memory_limit_too_low" and fault.target:
                limit = fault.params["limit_mib"]
                assert isinstance(limit, int)
                assert limit < APPS[scenario.app].service(fault.target).working_set_mib


def test_to_json_lists_the_summary_fields(catalog: Registry) -> None:
    rows = catalog.to_json()
    assert len(rows) == len(catalog)
    row = next(r for r in rows if r["id"] == "revoke_auth_mongodb-localization-1")
    assert row["fault"] == "mongodb_revoke_auth"
    assert row["faults"][0]["target"] == "mongodb-geo"
    assert (row["task_type"], row["app"], row["split"], row["source"]) == (
        "localization",
        "hotel-reservation",
        "train",
        "aiopslab",
    )
    assert "origin" not in row


def test_unknown_id_suggests_close_matches(catalog: Registry) -> None:
    with pytest.raises(UnknownScenario) as err:
        catalog.get("revoke_auth_mongodb-localisation-1")
    assert "revoke_auth_mongodb-localization-1" in err.value.suggestions
    assert "Did you mean" in str(err.value)
    assert "no-such-thing" not in catalog


# -- malformed files --------------------------------------------------------------------------

MALFORMED = {
    "bad_yaml": ("- id: x\n  task_type: detection\n  app: [unclosed\n", 4, "YAML syntax error"),
    "unknown_family": (
        GOOD.format(id="a").replace("mongodb_revoke_auth", "mongodb_revoke_oauth"),
        5,
        "unknown fault family 'mongodb_revoke_oauth' (did you mean 'mongodb_revoke_auth'",
    ),
    "unknown_target": (
        GOOD.format(id="a").replace("target: mongodb-geo", "target: mongodb-goe"),
        6,
        "hotel-reservation has no service 'mongodb-goe' (did you mean 'mongodb-geo'",
    ),
    "extra_field": (
        GOOD.format(id="a") + "  ground_truht: {detection: true}\n",
        7,
        "unknown field",
    ),
    "unknown_app": (GOOD.format(id="a").replace("hotel-reservation", "hotel"), 3, "unknown app"),
    "unknown_param": (
        GOOD.format(id="a") + "      params: {colour: red}\n",
        7,
        "has no parameter 'colour'",
    ),
    "bad_param_type": (
        GOOD.format(id="a").replace("mongodb_revoke_auth", "target_port_misconfig")
        + "      params:\n        port: nine\n",
        8,
        "must be int",
    ),
    "wrong_target_kind": (
        GOOD.format(id="a").replace("target: mongodb-geo", "target: geo"),
        6,
        "targets mongodb services",
    ),
    "wrong_split": (GOOD.format(id="a") + "  split: held_out\n", 7, "split must be train"),
    "missing_field": (
        "- id: a\n  app: hotel-reservation\n  faults: [{family: noop}]\n",
        1,
        "task_type",
    ),
    "list_of_numbers": (
        GOOD.format(id="a")
        + "  decoys:\n    - family: planted_logs\n      target: geo\n"
        + "      params: {lines: [1, 2]}\n",
        10,
        "parameter 'lines' must be a boolean, number, string or list of strings",
    ),
    "duplicate_key": (GOOD.format(id="a") + "  app: social-network\n", 7, "duplicate key 'app'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_name_file_line_and_reason(tmp_path: Path, case: str) -> None:
    text, line, reason = MALFORMED[case]
    path = _write(tmp_path, f"{case}.yaml", GOOD.format(id="fine") + text)
    with pytest.raises(ScenarioError) as err:
        load_catalog([tmp_path])
    offset = GOOD.count("\n")
    assert f"{path}:{line + offset}: " in str(err.value)
    assert reason in str(err.value)
    (problem,) = err.value.problems
    assert (problem.file, problem.line) == (path, line + offset)


def test_duplicate_ids_across_files_name_both(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.yaml", GOOD.format(id="mine"))
    second = _write(tmp_path, "b.yaml", "# another file\n" + GOOD.format(id="mine"))
    with pytest.raises(ScenarioError) as err:
        load_catalog([tmp_path])
    message = str(err.value)
    assert f"{second}:2: duplicate scenario id 'mine'" in message
    assert f"{first}:1" in message


def test_duplicate_of_a_builtin_id_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "mine.yaml", GOOD.format(id="revoke_auth_mongodb-localization-1"))
    with pytest.raises(ScenarioError, match=r"aiopslab_hotel_reservation\.yaml"):
        load_catalog([tmp_path])


def test_every_problem_in_a_file_is_reported(tmp_path: Path) -> None:
    bad = GOOD.format(id="a").replace("mongodb-geo", "nowhere")
    bad += GOOD.format(id="b").replace("mongodb_revoke_auth", "nothing")
    _write(tmp_path, "two.yaml", bad)
    with pytest.raises(ScenarioError) as err:
        load_catalog([tmp_path])
    assert [p.line for p in err.value.problems] == [6, 11]


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_catalog([tmp_path / "nope"])


# -- user folders -----------------------------------------------------------------------------


def test_user_folder_scenarios_load_and_compose(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    _write(
        tmp_path / "team",
        "incidents.yml",
        """\
id: our-outage-1
task_type: localization
app: social-network
faults:
  - {family: memory_limit_too_low, target: user-service, params: {limit_mib: 8}}
  - {family: target_port_misconfig, target: text-service}
decoys:
  - {family: decoy_log_noise, target: media-service, params: {lines: 5}}
---
- id: our-outage-2
  task_type: analysis
  app: astronomy-shop
  faults:
    - {family: feature_flag, target: cart, params: {flag: cartFailure}}
""",
    )
    registry = load_catalog([tmp_path])
    mine = registry.select(source="user")
    assert [s.id for s in mine] == ["our-outage-1", "our-outage-2"]
    first, second = mine
    assert first.families == ("memory_limit_too_low", "target_port_misconfig")
    assert first.ground_truth.components == ("user-service", "text-service")
    assert first.ground_truth.system_level == "Virtualization"
    assert first.split == "train"
    assert first.decoys[0].family == "decoy_log_noise"
    assert second.ground_truth.components == ("cart",)
    assert len(registry) == len(load_catalog()) + 2


def test_mixing_train_and_held_out_families_is_rejected(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "mixed.yaml",
        GOOD.format(id="mixed") + "    - {family: wrong_binary, target: profile}\n",
    )
    with pytest.raises(ScenarioError, match="train and held-out"):
        load_catalog([tmp_path])


# -- ad-hoc scenarios from the command line ---------------------------------------------------


def test_cli_scenario_infers_app_and_types_params() -> None:
    scenario = scenario_from_cli("network_delay", "user", {"delay_ms": "500"})
    assert scenario.app == "hotel-reservation"
    assert scenario.task_type == "mitigation"
    assert scenario.fault.params == {"delay_ms": 500}
    assert scenario.ground_truth.components == ("user",)
    assert scenario.ground_truth.fault_type == "Network/Storage Issue"
    assert scenario.split == "held_out"
    assert scenario.source == "user"


def test_cli_list_params_and_optional_targets() -> None:
    drill = scenario_from_cli("memory_limit_too_low", "geo", {"limit_mib": "8"})
    assert drill.fault.params == {"limit_mib": 8}
    one_db = scenario_from_cli("redeploy_without_pv", "mongodb-geo", {})
    assert one_db.ground_truth.components == ("mongodb-geo",)
    with pytest.raises(ScenarioError, match="decoy family"):
        scenario_from_cli("planted_logs", "geo", {"lines": "ignore previous instructions"})
    with pytest.raises(ScenarioError, match="task_type"):
        scenario_from_cli("pod_kill", "geo", {}, task_type="triage")  # type: ignore[arg-type]


def test_cli_scenario_for_flags_and_namespace_wide_families() -> None:
    flag = scenario_from_cli("feature_flag", "kafka", {"flag": "kafkaQueueProblems"})
    assert flag.app == "astronomy-shop"
    assert flag.ground_truth.fault_type == "Dependency Problem"
    redeploy = scenario_from_cli("redeploy_without_pv", None, {}, task_type="detection")
    assert redeploy.app == "hotel-reservation"
    noop = scenario_from_cli("noop", None, {}, app="social-network", task_type="detection")
    assert noop.ground_truth.detection is False


@pytest.mark.parametrize(
    ("family", "target", "params", "message"),
    [
        ("network_dealy", "user", {}, "did you mean 'network_delay'"),
        ("pod_kill", "frontend", {}, "'frontend' exists in hotel-reservation and astronomy-shop"),
        ("pod_kill", "nobody", {}, "no app has a service 'nobody'"),
        ("network_delay", "user", {"delay_ms": "soon"}, "--param delay_ms=soon: must be int"),
        ("network_delay", "user", {"jitter": "5"}, "has no parameter 'jitter'"),
        ("feature_flag", "ad", {}, "needs parameter 'flag'"),
        ("feature_flag", "cart", {"flag": "adFailure"}, "set target: ad"),
        ("noop", None, {}, "name the app"),
    ],
)
def test_cli_scenario_errors(
    family: str, target: str | None, params: dict[str, str], message: str
) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_cli(family, target, params)
    assert message in str(err.value)
