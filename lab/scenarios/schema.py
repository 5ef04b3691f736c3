"""The shape of a scenario: what a YAML file says and what the loader hands out.

Scenarios are data so that people can add incidents without writing Python, and
so that the benchmark, the trainer and the Evolver all read one ground truth.
Two models keep that honest: ``ScenarioDoc`` is exactly what a file may contain
(unknown fields are errors, because a typo such as ``ground_truht`` must not
silently drop the answer key), and ``Scenario`` is the resolved form with every
default filled in from the fault families.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The vocabulary lives in store.labels (one definition for every package); these
# names stay importable from here for the lab's own modules and older callers.
from store.labels import TASK_TYPES as TASK_TYPES
from store.labels import GroundTruth as GroundTruth
from store.labels import TaskType as TaskType

Split = Literal["train", "held_out"]
Source = Literal["aiopslab", "aoi", "user"]
ParamValue = bool | int | float | str | list[str]
"""What a fault parameter may hold; bool first so ``true`` stays a bool."""

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    """One fault (or decoy) to inject: a family from ``FAMILIES`` applied to one service."""

    family: str
    target: str | None = None
    """The service the fault is injected into; omitted for namespace-wide families."""
    params: dict[str, ParamValue] = Field(default_factory=dict)


class ScenarioDoc(_Strict):
    """One scenario as written in a file; optional fields default from the families."""

    id: str = Field(pattern=ID_PATTERN)
    task_type: TaskType
    app: str
    description: str = ""
    """For people reading the catalogue; never shown to the agent under test."""
    split: Split | None = None
    faults: tuple[FaultSpec, ...] = Field(min_length=1)
    decoys: tuple[FaultSpec, ...] = ()
    """Noise that is not the fault: planted log lines, a restarted healthy pod."""
    ground_truth: GroundTruth | None = None
    source: Source | None = None


class Scenario(_Strict):
    """A validated scenario with every default resolved."""

    id: str
    task_type: TaskType
    app: str
    description: str
    split: Split
    faults: tuple[FaultSpec, ...]
    decoys: tuple[FaultSpec, ...] = ()
    ground_truth: GroundTruth
    source: Source
    origin: str = Field(default="", exclude=True)
    """Where the scenario was defined (``file:line``), for error messages."""

    @property
    def fault(self) -> FaultSpec:
        """The first (for single-fault scenarios, the only) fault."""
        return self.faults[0]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(f.family for f in self.faults)
