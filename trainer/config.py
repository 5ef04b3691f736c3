"""How much each GRPO reward counts: ``RewardWeights``, and the lists TRL takes.

GRPO sums the rewards with these weights (``GRPOConfig(reward_weights=...)``),
so they are configuration, not code: a YAML or TOML file's ``rewards`` table
fills the model (``RewardWeights.model_validate(table)``), and an unknown key is
an error rather than a silently ignored typo.

The defaults are AOI's own weights where AOI has a reward, mapped onto ours:

===============  ======  ==========================================================
field            weight  reward (``trainer.rewards``)
===============  ======  ==========================================================
``format``       0.10    ``format_reward`` (AOI format: the decision parses)
``summary``      0.15    ``summary_reward`` (AOI summary: similarity to the reference's)
``action``       0.10    ``action_kind_reward`` (AOI action: probe / executor / submit)
``instruction``  0.30    ``instruction_reward`` (AOI instruction: similarity, same kind)
``namespace``    0.30    ``namespace_reward`` (AOI namespace: the action's target namespace)
``confidence``   0.05    ``calibration_reward`` (AOI confidence, graded against the label)
===============  ======  ==========================================================

and ours beside them: ``tool`` 0.10 (which Probe tool or catalogue action,
the finer half of "action"), ``component`` 0.30 (the other half of the target,
as much as its namespace), ``diagnosis`` 0.50 (the label, which the benchmark
measures, counts more than any one agreement with the reference) and ``safety``
2.50, more than every positive weight together (2.20 with the judge), so an
unsafe step always sums below zero, below every safe readable one. ``judge``
(0.30) weighs the optional LLM judge when one is given.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from trainer.rewards import (
    RewardFunction,
    action_kind_reward,
    calibration_reward,
    component_reward,
    diagnosis_reward,
    format_reward,
    instruction_reward,
    namespace_reward,
    safety_reward,
    summary_reward,
    tool_reward,
)

Weight = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
"""A finite, non-negative weight (a reward's own sign says whether it rewards or penalises)."""


class RewardWeights(BaseModel):
    """The weight of each reward in GRPO's sum; every field has AOI's (or our) default.

    >>> RewardWeights.model_validate({"diagnosis": 1.0}).diagnosis
    1.0

    A weight of 0 keeps the reward in TRL's logs without letting it steer training.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Weight = Field(0.10, description="the completion is a valid decision (AOI format)")
    summary: Weight = Field(0.15, description="summary similar to the reference's (AOI summary)")
    action: Weight = Field(0.10, description="same next_action kind as the reference (AOI action)")
    tool: Weight = Field(0.10, description="same Probe tool or catalogue action as the reference")
    namespace: Weight = Field(
        0.30, description="same target namespace as the reference (AOI namespace)"
    )
    component: Weight = Field(0.30, description="same target component as the reference")
    instruction: Weight = Field(
        0.30, description="instruction similar to the reference's (AOI instruction)"
    )
    diagnosis: Weight = Field(0.50, description="root cause right against the label")
    safety: Weight = Field(
        2.50, description="weight of the penalty for a write in an observe phase"
    )
    confidence: Weight = Field(
        0.05, description="confidence calibrated against the label (AOI confidence)"
    )
    judge: Weight = Field(
        0.30, description="the optional LLM judge's grade, when a judge is configured"
    )


def reward_functions(
    weights: RewardWeights | None = None, *, judge: RewardFunction | None = None
) -> tuple[list[RewardFunction], list[float]]:
    """The reward functions and their weights, in the same order, for TRL.

    >>> funcs, weights = reward_functions(RewardWeights(), judge=None)
    >>> GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(..., reward_weights=weights))

    ``judge`` (``trainer.judge.judge_reward(...)``) joins the list, weighted by
    ``weights.judge``, only when given.
    """
    weights = weights or RewardWeights()
    pairs: list[tuple[RewardFunction, float]] = [
        (format_reward, weights.format),
        (summary_reward, weights.summary),
        (action_kind_reward, weights.action),
        (tool_reward, weights.tool),
        (namespace_reward, weights.namespace),
        (component_reward, weights.component),
        (instruction_reward, weights.instruction),
        (diagnosis_reward, weights.diagnosis),
        (safety_reward, weights.safety),
        (calibration_reward, weights.confidence),
    ]
    if judge is not None:
        pairs.append((judge, weights.judge))
    return [fn for fn, _ in pairs], [weight for _, weight in pairs]
