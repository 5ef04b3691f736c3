"""Incident scenarios: AIOpsLab's 86 tasks plus our own, as data with ground truth.

``load_catalog()`` reads the built-in YAML catalogue (and users' folders) into a
``Registry``; ``scenario_from_cli()`` builds one-off scenarios for ``aoi lab
inject``. Answers are graded the way AIOpsLab does by ``agents.scoring`` (the
trainer shares it), and the labels come from ``store.labels``.
"""

from __future__ import annotations

from lab.scenarios.families import FAMILIES, FEATURE_FLAGS, FamilyInfo, ParamInfo
from lab.scenarios.loader import (
    CATALOG_DIR,
    Problem,
    Registry,
    ScenarioError,
    UnknownScenario,
    load_catalog,
    load_file,
    scenario_from_cli,
)
from lab.scenarios.schema import FaultSpec, GroundTruth, Scenario

__all__ = [
    "CATALOG_DIR",
    "FAMILIES",
    "FEATURE_FLAGS",
    "FamilyInfo",
    "FaultSpec",
    "GroundTruth",
    "ParamInfo",
    "Problem",
    "Registry",
    "Scenario",
    "ScenarioError",
    "UnknownScenario",
    "load_catalog",
    "load_file",
    "scenario_from_cli",
]
