"""The training rewards as an evaluation: a served model's mean reward on stored samples.

GRPO's rewards (``trainer.rewards``, weighted by ``trainer.config.RewardWeights``) say
how close one decision is to the reference and the label. Asked of a model on
samples it never trained on (the held-out split's families), their mean is the
held-out reward: the training signal measured where training cannot have reached.
The model answers as the bot would run it (any ``ChatModel``: the embedded GGUF, an
exported version, an HTTP endpoint), through the same decode grammar the runtime
uses: ``SUBMIT_SCHEMA`` on a last step, ``DECISION_SCHEMA`` otherwise.

The total is TRL's: the weighted sum of the rewards that scored the row (a reward
that cannot score a row, ``None``, is left out of its sum).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA, SUBMIT_SCHEMA
from agents.llm import ChatModel, Message, ModelError
from agents.prompts import LAST_STEP
from trainer.config import RewardWeights, reward_functions


@dataclass(frozen=True)
class RewardReport:
    """Mean rewards of one model's completions on a set of samples."""

    samples: int
    mean_reward: float
    """Mean of the weighted sums, TRL's ``reward``."""
    std_reward: float
    per_reward: dict[str, float]
    """Each reward function's mean over the rows it scored."""
    failed: int = 0
    """Completions the model did not give (an error); scored as empty text."""
    totals: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mean_reward": self.mean_reward,
            "std_reward": self.std_reward,
            "failed": self.failed,
            **{f"rewards/{name}": value for name, value in self.per_reward.items()},
        }


def score(
    rows: Sequence[Mapping[str, Any]],
    completions: Sequence[str],
    weights: RewardWeights | None = None,
    *,
    failed: int = 0,
) -> RewardReport:
    """The rewards of ``completions`` (one text per row of ``rows``, dataset rows)."""
    if len(rows) != len(completions):
        raise ValueError(f"{len(rows)} rows but {len(completions)} completions")
    if not rows:
        raise ValueError("nothing to score: no samples")
    funcs, scales = reward_functions(weights)
    columns = {name: [row.get(name) for row in rows] for name in rows[0] if name != "prompt"}
    prompts = [row["prompt"] for row in rows]
    wrapped = [[{"role": "assistant", "content": text}] for text in completions]
    totals = [0.0] * len(rows)
    per_reward: dict[str, float] = {}
    for fn, scale in zip(funcs, scales, strict=True):
        values = fn(prompts=prompts, completions=wrapped, **columns)
        scored = [v for v in values if v is not None]
        name = getattr(fn, "__name__", type(fn).__name__)
        if scored:
            per_reward[name] = statistics.fmean(scored)
        for index, value in enumerate(values):
            if value is not None:
                totals[index] += scale * value
    return RewardReport(
        samples=len(rows),
        mean_reward=statistics.fmean(totals),
        std_reward=statistics.pstdev(totals),
        per_reward=per_reward,
        failed=failed,
        totals=totals,
    )


async def complete_all(
    model: ChatModel,
    rows: Sequence[Mapping[str, Any]],
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """The model's decision for each row's prompt, greedy, under the runtime's grammar.

    A model error (timeout, crash) is an empty completion, counted in the second value:
    it scores as unreadable, as the runtime would have had no decision either.
    """
    texts: list[str] = []
    failed = 0
    for index, row in enumerate(rows, start=1):
        messages: list[Message] = [
            Message(role=m["role"], content=m["content"]) for m in row["prompt"]
        ]
        last = LAST_STEP in (messages[-1]["content"] if messages else "")
        try:
            completion = await model.complete(
                messages,
                schema=SUBMIT_SCHEMA if last else DECISION_SCHEMA,
                max_tokens=DECISION_MAX_TOKENS,
                temperature=0.0,
            )
            texts.append(completion.text)
        except ModelError:
            texts.append("")
            failed += 1
        if progress is not None:
            progress(index)
    return texts, failed
