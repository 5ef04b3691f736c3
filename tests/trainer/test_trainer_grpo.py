"""GRPO end to end on real parts: TRL, peft, transformers, a real SQLite store, llama.cpp.

The fast tests train a tiny Llama built here (a ``tokenizers`` BPE trained in memory
over the Observer's own prompt text, wrapped in ``PreTrainedTokenizerFast`` with a
chat template, saved as a Hugging Face folder: the folder path of ``load_base``) on
samples made with ``trainer.dataset``'s own ``Sample`` and ``to_dataset``, scored by
the real reward functions. The slow one loads the embedded SmolLM2 GGUF into
transformers, trains LoRA for two steps, exports a GGUF with llama.cpp's converter
and asks the export for a schema-constrained decision through ``LlamaCppModel``.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support.decisions import decision

from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA, parse_decision
from agents.llm import LlamaCppModel, Message
from agents.prompts import PROMPT_VERSION, SYSTEM_PROMPT, observer_messages
from store.db import make_engine
from store.labels import GroundTruth
from store.migrate import upgrade
from store.models import TrainingStatus
from store.training import get_run, run_steps
from trainer.dataset import Sample, to_dataset
from trainer.export import ExportError, converter_dir, export_gguf
from trainer.grpo import (
    METRICS_FILE,
    ConfigError,
    TrainConfig,
    fit_prompts,
    last_checkpoint,
    load_base,
    load_config,
    parse_config,
    resolve_base,
    train,
)

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"
NAMESPACE = "test-hotel-reservation"
TRUTH = GroundTruth(
    detection=True,
    components=("geo",),
    system_level="Virtualization",
    fault_type="Misconfiguration",
)
OBSERVATION = (
    f"$ kubectl get pods -n {NAMESPACE}\n"
    "geo-7c9d5b6f4-x2x9q 0/1 CrashLoopBackOff 5 3m\n"
    "2026-01-01T12:00:00Z dial tcp 10.0.0.3:9999: connection refused\n"
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_STEPS = 2
REWARD_NAMES = ("format_reward", "diagnosis_reward", "safety_reward", "instruction_reward")

torch.set_num_threads(1)


def _sample(index: int, messages: list[Message] | None = None) -> Sample:
    prompt = messages or observer_messages(
        question=f"geo fails in {NAMESPACE}, why? (incident {index})",
        history=[],
        observation=OBSERVATION,
        step=1,
        max_steps=5,
    )
    reference = parse_decision(
        decision(
            "probe",
            f"kubectl describe service geo -n {NAMESPACE}",
            "geo",
            70,
            fault_type="Misconfiguration",
        )
    )
    return Sample(
        prompt=tuple(prompt),
        reference=reference,
        truth=TRUTH,
        success=True,
        label_source="lab",
        families=("target_port_misconfig",),
        split="train",
        incident_id=index + 1,
        step_index=1,
        scenario_id="geo-port",
        prompt_version=PROMPT_VERSION,
        guidance_ids=(),
        services=("geo", "frontend"),
    )


def _tiny_base(folder: Path, *, init: float = 0.02) -> Path:
    """A two-layer Llama and a BPE tokenizer over the Observer's own vocabulary, on disk.

    ``init`` is the weights' standard deviation: at transformers' 0.02 the final norm and
    head keep every distribution near uniform, whatever an adapter learns."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [SYSTEM_PROMPT, OBSERVATION, *(m["content"] for m in _sample(0).prompt)]
    corpus += [decision("probe", f"kubectl get pods -n {NAMESPACE}", "geo")] * 3
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=1200,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=init,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_base(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def sharp_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose head can become confident: a warm start's loss can fall."""
    return _tiny_base(tmp_path_factory.mktemp("sharp-llama"), init=0.2)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/aoi.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def _tiny_config(base: Path, **changes: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "base": str(base),
        "steps": TINY_STEPS,
        "per_device_batch": 4,
        "num_generations": 2,
        "max_completion_tokens": 8,
        "learning_rate": 1e-3,
        "beta": 0.04,  # the reference pass runs, so KL is logged
        "threads": 1,
        "save_every": 1,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "sft_steps": 0,
    }
    return TrainConfig.model_validate({**values, **changes})


# -- training the tiny model ------------------------------------------------------------


def test_tiny_llama_trains_records_metrics_and_resumes(
    tiny_base: Path, engine: sa.Engine, tmp_path: Path
) -> None:
    dataset = to_dataset([_sample(i) for i in range(4)])
    out = tmp_path / "run"

    first = train(_tiny_config(tiny_base), dataset, out_dir=out, engine=engine, progress=False)

    assert first.steps == TINY_STEPS
    assert [row["step"] for row in first.metrics] == [1.0, 2.0]
    for row in first.metrics:
        for name in REWARD_NAMES:
            assert f"rewards/{name}/mean" in row
        for key in ("reward", "kl", "completions/mean_length", "loss", "learning_rate"):
            assert key in row, key
        assert row["completions/mean_length"] <= 8
    # A random model writes no decision: unreadable, so unsafe by the rules.
    assert first.metrics[0]["rewards/safety_reward/mean"] == -1.0
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert (first.final_dir / "adapter_config.json").is_file()
    assert (first.final_dir / "tokenizer.json").is_file()
    assert json.loads((first.final_dir / "aoi_train.json").read_text())["lora"] is True
    checkpoint = last_checkpoint(out)
    assert checkpoint is not None
    assert checkpoint.name == f"checkpoint-{TINY_STEPS}"

    assert first.run_id is not None
    run = get_run(engine, first.run_id)
    assert run.status == TrainingStatus.SUCCEEDED
    assert run.last_step == TINY_STEPS
    assert run.config["steps"] == TINY_STEPS
    assert run.dataset["rows"] == 4
    stored = run_steps(engine, first.run_id)
    assert [step.step for step in stored] == [1, 2]
    assert stored[0].metrics["reward"] == pytest.approx(first.metrics[0]["reward"])
    assert "rewards/format_reward/mean" in stored[1].metrics

    # Three steps in all: the resumed run continues at step 3, in the same store row.
    more = _tiny_config(tiny_base, steps=TINY_STEPS + 1)
    second = train(more, dataset, out_dir=out, engine=engine, resume=True, progress=False)

    assert second.resumed_from == checkpoint
    assert second.steps == TINY_STEPS + 1
    assert [row["step"] for row in second.metrics] == [3.0]
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert second.run_id == first.run_id
    assert [step.step for step in run_steps(engine, first.run_id)] == [1, 2, 3]
    run = get_run(engine, first.run_id)
    assert run.status == TrainingStatus.SUCCEEDED
    assert run.last_step == TINY_STEPS + 1


def test_full_fine_tune_saves_the_whole_model(tiny_base: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_base, lora=None, steps=1, beta=0.0, save_every=10)
    result = train(config, to_dataset([_sample(0), _sample(1)]), out_dir=tmp_path, progress=False)

    assert result.steps == 1
    assert result.run_id is None
    assert (result.final_dir / "config.json").is_file()
    assert not (result.final_dir / "adapter_config.json").exists()
    assert "kl" not in result.metrics[0]  # beta 0: no reference model


def test_a_second_run_into_the_same_folder_must_say_resume(tiny_base: Path, tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    dataset = to_dataset([_sample(0)])

    with pytest.raises(ConfigError, match=r"checkpoint-3.*resume=True"):
        train(_tiny_config(tiny_base), dataset, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(_tiny_config(tiny_base), dataset, out_dir=tmp_path / "new", resume=True)


def test_prompts_over_the_limit_are_left_out_never_cut(tiny_base: Path, tmp_path: Path) -> None:
    _, tokenizer = load_base(_tiny_config(tiny_base))
    short: list[Message] = [{"role": "user", "content": "geo fails, why?"}]
    dataset = to_dataset([_sample(0), _sample(1, short)])

    kept, dropped = fit_prompts(dataset, tokenizer, 64)

    assert dropped == 1
    assert len(kept) == 1
    assert kept[0]["prompt"] == [dict(m) for m in short]
    with pytest.raises(ConfigError, match="max_prompt_tokens=16"):
        train(_tiny_config(tiny_base, max_prompt_tokens=16), dataset, out_dir=tmp_path)


# -- configuration ----------------------------------------------------------------------


def test_batch_not_divisible_by_the_group_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(6\) must be divisible by num_generations \(4\)"):
        parse_config({"per_device_batch": 6, "num_generations": 4})
    with pytest.raises(ConfigError, match="num_generations"):
        parse_config({"num_generations": 1, "per_device_batch": 2})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("steps = 3\nstep = 4\n", "'step'"),
        ("[rewards]\nformt = 0.5\n", "'rewards.formt'"),
        ("[lora]\nrank = 8\n", "'lora.rank'"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=key) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "known keys" in str(caught.value)


def test_yaml_and_toml_say_full_fine_tune_their_own_way(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("lora: null\nsteps: 5\n")
    (tmp_path / "b.toml").write_text("lora = false\n")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "d.yaml").write_text("- steps\n")

    assert load_config(tmp_path / "a.yaml").lora is None
    assert load_config(tmp_path / "a.yaml", steps=7).steps == 7
    assert load_config(tmp_path / "b.toml").lora is None
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml or \.yml"):
        load_config(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="expected a table"):
        load_config(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_the_shipped_configurations_load() -> None:
    assert load_config(CONFIGS / "cpu.toml") == TrainConfig()  # the file is the defaults
    gpu = load_config(CONFIGS / "gpu-7b.toml")
    assert gpu.device == "auto"
    assert gpu.lora is not None
    assert gpu.lora.r == 16
    assert gpu.prompts_per_step == 2
    for name in ("accelerate-zero2.yaml", "accelerate-fsdp.yaml"):
        text = (CONFIGS / name).read_text()
        config = yaml.safe_load(text)
        assert config["distributed_type"] in {"DEEPSPEED", "FSDP"}
        assert config["mixed_precision"] == "bf16"
        assert f"accelerate launch --config_file trainer/configs/{name}" in text
    assert tomllib.loads((CONFIGS / "gpu-7b.toml").read_text())["lora"]["r"] == 16


def test_a_base_must_be_local() -> None:
    with pytest.raises(ConfigError, match="never downloaded"):
        resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct")


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 16), accumulation=st.integers(1, 4), group=st.integers(2, 16))
def test_a_config_is_valid_exactly_when_groups_fill_the_batch(
    batch: int, accumulation: int, group: int
) -> None:
    values = {"per_device_batch": batch, "gradient_accumulation": accumulation}
    values["num_generations"] = group
    if (batch * accumulation) % group == 0:
        assert parse_config(values).prompts_per_step == batch * accumulation // group
    else:
        with pytest.raises(ConfigError, match="must be divisible"):
            parse_config(values)


@settings(max_examples=40, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
def test_any_unknown_key_is_named(key: str) -> None:
    if key in TrainConfig.model_fields:
        return
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        parse_config({key: 1})


# -- export -----------------------------------------------------------------------------


def test_export_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="make setup"):
        converter_dir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="neither a LoRA adapter"):
        export_gguf(tmp_path / "empty", tmp_path / "out.gguf", converter=tmp_path)


@pytest.mark.slow
def test_embedded_model_trains_exports_and_llama_cpp_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2 from its GGUF: a 2-step warm start, 2 GRPO steps (1 prompt, 2 x 16 tokens) on
    the same LoRA, an f16 GGUF, and a decision from it."""
    short: list[Message] = [
        {"role": "system", "content": "You diagnose Kubernetes incidents. Answer in JSON."},
        {"role": "user", "content": f"{OBSERVATION}What next?"},
    ]
    config = TrainConfig(
        steps=2,
        per_device_batch=2,
        num_generations=2,
        max_completion_tokens=16,
        threads=1,
        save_every=10,
        sft_steps=2,
        sft_batch=1,
    )

    result = train(config, to_dataset([_sample(0, short)]), out_dir=tmp_path, progress=False)
    assert result.summary["sft_steps"] == 2
    assert result.steps == 2
    assert len(result.metrics) == 2

    # Relative paths, as `aoi train export --out var/train/run` passes them: the converter
    # runs in another folder, so they must be resolved first.
    monkeypatch.chdir(tmp_path.parent)
    path = export_gguf(Path(tmp_path.name), Path(tmp_path.name) / "observer.gguf")
    assert path.read_bytes()[:4] == b"GGUF"

    async def ask() -> str:
        model = LlamaCppModel(path, threads=1, n_ctx=2048)
        try:
            completion = await model.complete(
                list(_sample(0).prompt), schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS
            )
        finally:
            await model.aclose()
        return completion.text

    answer = parse_decision(asyncio.run(ask()))
    assert answer.next_action.kind in {"probe", "executor", "submit"}


# -- the supervised warm start ----------------------------------------------------------


def test_warm_start_fits_the_references_then_grpo_trains_the_same_adapter(
    sharp_base: Path, engine: sa.Engine, tmp_path: Path
) -> None:
    from trainer.sft import SFT_DIR, SFT_METRICS, completions

    dataset = to_dataset([_sample(i) for i in range(4)])
    pairs = completions(dataset)
    assert pairs.column_names == ["prompt", "completion"]
    assert pairs[0]["completion"] == [{"role": "assistant", "content": dataset[0]["reference"]}]

    warm = {"sft_steps": 12, "sft_batch": 2, "sft_learning_rate": 2e-2}
    config = _tiny_config(sharp_base, steps=1, **warm)
    out = tmp_path / "run"
    result = train(config, dataset, out_dir=out, engine=engine, progress=False)

    losses = [json.loads(line)["loss"] for line in (out / SFT_DIR / SFT_METRICS).open()]
    assert len(losses) == 12
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 2.0  # measured 7.7 -> 4.1 nats: it learns the reference it is shown
    assert result.summary["sft_steps"] == 12
    assert result.summary["sft_loss_last"] == pytest.approx(losses[-1])
    assert result.steps == 1  # then GRPO, on the adapter the warm start fitted
    assert (out / SFT_DIR / "final" / "adapter_config.json").is_file()
    assert (result.final_dir / "adapter_config.json").is_file()
    assert result.run_id is not None
    assert get_run(engine, result.run_id).summary["sft_steps"] == 12

    # A resumed run loads the fitted adapter instead of fitting it again.
    more = _tiny_config(sharp_base, steps=2, **warm)
    again = train(more, dataset, out_dir=out, engine=engine, resume=True, progress=False)
    assert again.steps == 2
    assert len((out / SFT_DIR / SFT_METRICS).read_text().splitlines()) == 12


def test_a_warm_start_needs_an_adapter(tiny_base: Path, tmp_path: Path) -> None:
    config = _tiny_config(tiny_base, lora=None, sft_steps=2)

    with pytest.raises(ValueError, match="sft_steps needs a LoRA adapter"):
        train(config, to_dataset([_sample(0)]), out_dir=tmp_path, progress=False)
