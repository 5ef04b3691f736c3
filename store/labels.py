"""The ground-truth vocabulary: AIOpsLab's task types, analysis labels and answer key.

The analyzers suggest these labels, the Observer's decisions carry them, people
correct them in Slack, the store keeps them, the lab's scenarios declare them
and the benchmark and the trainer's rewards grade against them. They are
defined here, once, because ``store`` is the one package every one of those
users may import (import-linter's layers: store <- agents <- bot, trainer, lab).

The values are AIOpsLab's, spelled as its analysis evaluator expects them
(DESIGN.md section 5); the Observer's own "Unknown" is not one of them, since no
ground truth is ever unknown (``agents.decision`` adds it for answers).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

SystemLevel = Literal["Hardware", "Operating System", "Virtualization", "Application"]
FaultType = Literal[
    "Misconfiguration",
    "Code Defect",
    "Authentication Issue",
    "Network/Storage Issue",
    "Operation Error",
    "Dependency Problem",
]
TaskType = Literal["detection", "localization", "analysis", "mitigation"]

SYSTEM_LEVELS: tuple[SystemLevel, ...] = get_args(SystemLevel)
FAULT_TYPES: tuple[FaultType, ...] = get_args(FaultType)
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)


class GroundTruth(BaseModel):
    """The answer key, in AIOpsLab's vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detection: bool
    """Whether there is a fault at all (AIOpsLab's "Yes"/"No")."""
    components: tuple[str, ...] = ()
    """The faulty services a localization answer must name."""
    system_level: SystemLevel | None = None
    fault_type: FaultType | None = None
