"""A supervised warm start before GRPO: teach the base the decisions it should take.

GRPO learns from differences between the rewards of one prompt's completions. The
untrained SmolLM2-135M writes no decision that parses, so every completion of a
group scores the same, every advantage is zero and GRPO has nothing to follow
(measured: 0 of 12 completions parsed). AOI's Observer started from a model that
could already follow the format; a small one has to be shown first. So, when
``TrainConfig.sft_steps`` is set, the same LoRA adapter is first fitted with TRL's
``SFTTrainer`` to the reference decisions of the same samples (prompt: the
Observer's messages; completion: the decision it took, as the JSON it must write),
with the loss on the completion only, and GRPO then continues that adapter.

The adapter is saved to ``out_dir/sft/final``; a resumed run loads it from there
instead of fitting it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

    from trainer.grpo import TrainConfig

log = logging.getLogger(__name__)

SFT_DIR = "sft"
SFT_METRICS = "metrics.jsonl"


def completions(dataset: Dataset) -> Dataset:
    """``prompt`` / ``completion`` rows in TRL's conversational prompt-completion format.

    The completion is the reference decision exactly as the Observer must write it
    (the ``reference`` column, compact JSON in the decision's field order).
    """
    if "reference" not in dataset.column_names:
        raise ValueError("the dataset has no 'reference' column: build it with to_dataset")

    def pair(row: Mapping[str, Any]) -> dict[str, Any]:
        return {"completion": [{"role": "assistant", "content": row["reference"]}]}

    extra = [name for name in dataset.column_names if name != "prompt"]
    return dataset.map(pair, remove_columns=extra, desc="reference decisions")


def warm_start(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    dataset: Dataset,
    out_dir: Path,
    *,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """The base with its LoRA adapter fitted to the references; and what the fit measured.

    Returns a peft model (GRPO trains the same adapter on) and a summary (steps,
    first and last loss, runtime) for the run's record. An adapter already in
    ``out_dir/sft/final`` (an earlier, interrupted run) is loaded instead.
    """
    from peft import PeftModel

    from trainer.grpo import _MetricsRecorder, _peft_config

    final = out_dir / SFT_DIR / "final"
    if (final / "adapter_config.json").is_file():
        log.info("warm start: loading the adapter fitted before from %s", final)
        return PeftModel.from_pretrained(model, str(final), is_trainable=True), _read(final)
    if config.lora is None:
        raise ValueError(
            "sft_steps needs a LoRA adapter (lora); full fine-tuning has no warm start"
        )
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    sft_out = out_dir / SFT_DIR
    sft_out.mkdir(parents=True, exist_ok=True)
    args = SFTConfig(
        output_dir=str(sft_out / "checkpoints"),
        max_steps=config.sft_steps,
        learning_rate=config.sft_learning_rate,
        per_device_train_batch_size=config.sft_batch,
        gradient_accumulation_steps=1,
        lr_scheduler_type="cosine",
        warmup_steps=min(4, max(0, config.sft_steps // 10)),
        seed=config.seed,
        data_seed=config.seed,
        max_length=config.max_prompt_tokens + config.max_completion_tokens,
        completion_only_loss=True,
        packing=False,
        use_cpu=config.device == "cpu",
        bf16=False,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    recorder = _MetricsRecorder(sft_out / SFT_METRICS, None, None)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=completions(dataset),
        processing_class=tokenizer,
        peft_config=_peft_config(config),
        callbacks=[recorder.callback()],
    )
    output = trainer.train()
    trainer.save_model(str(final))
    losses = [row["loss"] for row in recorder.rows if "loss" in row]
    summary = {
        "sft_steps": trainer.state.global_step,
        "sft_loss_first": losses[0] if losses else None,
        "sft_loss_last": losses[-1] if losses else None,
        "sft_runtime_s": output.metrics.get("train_runtime"),
    }
    (final / "aoi_sft.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return trainer.model, summary


def _read(final: Path) -> dict[str, Any]:
    try:
        data = json.loads((final / "aoi_sft.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
