"""The held-out reward: a model's decisions on stored samples, scored by the training rewards.

``score`` must agree with GRPO's own arithmetic (the weighted sum of the rewards that
scored a row) and rank a right decision above a wrong one above an unreadable one;
``complete_all`` must ask as the runtime asks (the submit-only grammar on a last step)
and count a model's failure as an unreadable answer rather than stop. The last test
runs the embedded SmolLM2 through llama.cpp on one sample, as ``aoi train eval`` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_clean_error, run_aoi
from support.decisions import decision

from agents.decision import DECISION_SCHEMA, SUBMIT_SCHEMA, parse_decision
from agents.llm import LlamaCppModel, ScriptedModel, embedded_model_path
from agents.prompts import PROMPT_VERSION, observer_messages
from store.labels import GroundTruth
from trainer.config import RewardWeights
from trainer.dataset import Sample, to_dataset
from trainer.evaluate import complete_all, score

NS = "test-hotel-reservation"
TRUTH = GroundTruth(
    detection=True,
    components=("geo",),
    system_level="Application",
    fault_type="Network/Storage Issue",
)
REFERENCE = decision(
    "submit",
    "geo",
    "geo",
    90,
    system_level="Application",
    fault_type="Network/Storage Issue",
)


def _rows(*, last: bool = False, count: int = 1) -> list[dict[str, Any]]:
    prompt = observer_messages(
        question=f"localize faults in {NS}",
        history=[],
        observation="[critical] geo: geo crash loops: its binary is profile",
        step=4 if last else 1,
        max_steps=4,
    )
    sample = Sample(
        prompt=tuple(prompt),
        reference=parse_decision(REFERENCE),
        truth=TRUTH,
        success=True,
        label_source="lab",
        families=("wrong_binary",),
        split="held_out",
        incident_id=1,
        step_index=1,
        scenario_id="wrong_bin_usage-localization-1",
        prompt_version=PROMPT_VERSION,
        guidance_ids=(),
        services=("geo", "profile"),
    )
    return list(to_dataset([sample] * count))


def test_the_reference_outscores_a_wrong_answer_which_outscores_an_unreadable_one() -> None:
    rows = _rows(count=3)
    wrong = decision("submit", "profile", "profile", 90, fault_type="Code Defect")

    report = score(rows, [REFERENCE, wrong, "I think geo is broken"])

    right, miss, unreadable = report.totals
    assert right > miss > unreadable
    assert unreadable == pytest.approx(-2.5)  # safety's weight x the penalty; nothing else
    assert report.samples == 3
    assert report.mean_reward == pytest.approx((right + miss + unreadable) / 3)
    assert report.per_reward["format_reward"] == pytest.approx(2 / 3)
    assert report.per_reward["diagnosis_reward"] == pytest.approx(1 / 3)
    assert "rewards/component_reward" in report.as_dict()


def test_the_weights_are_the_configs() -> None:
    rows = _rows()
    only_format = RewardWeights.model_validate(
        {name: 0.0 for name in RewardWeights.model_fields} | {"format": 1.0}
    )

    assert score(rows, [REFERENCE], only_format).mean_reward == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 rows but 2 completions"):
        score(rows, [REFERENCE, REFERENCE])
    with pytest.raises(ValueError, match="no samples"):
        score([], [])


def test_it_asks_as_the_runtime_does_and_a_failed_answer_scores_as_unreadable() -> None:
    model = ScriptedModel([REFERENCE])  # one reply for two rows: the second call fails
    rows = [*_rows(), *_rows(last=True)]
    seen: list[int] = []

    texts, failed = asyncio.run(complete_all(model, rows, progress=seen.append))

    assert texts == [REFERENCE, ""]
    assert failed == 1
    assert seen == [1, 2]
    assert model.schemas == [DECISION_SCHEMA]
    last_model = ScriptedModel([REFERENCE])
    asyncio.run(complete_all(last_model, _rows(last=True)))
    assert last_model.schemas == [SUBMIT_SCHEMA]
    assert score(rows, texts, failed=failed).failed == 1


def test_eval_on_a_store_without_samples_says_how_to_record_some(tmp_path: Path) -> None:
    env = {"AOI_DATABASE_URL": f"sqlite:///{tmp_path}/aoi.db"}
    empty = run_aoi("train", "eval", "--model", "embedded", cwd=tmp_path, env=env)
    assert "aoi train collect --heldout" in assert_one_clean_error(empty, code=2)
    bad = run_aoi("train", "eval", "--split", "test", cwd=tmp_path, env=env)
    assert "--split 'test'" in assert_one_clean_error(bad, code=2)


def test_the_embedded_model_answers_every_sample_readably() -> None:
    rows = _rows()

    async def ask() -> tuple[list[str], int]:
        model = LlamaCppModel(embedded_model_path(), threads=1, n_ctx=4096)
        try:
            return await complete_all(model, rows)
        finally:
            await model.aclose()

    texts, failed = asyncio.run(ask())
    report = score(rows, texts)

    assert failed == 0
    assert report.per_reward["format_reward"] == 1.0  # the grammar makes it readable
    assert report.per_reward["safety_reward"] == 0.0
