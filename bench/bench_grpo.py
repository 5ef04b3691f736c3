"""How fast the default CPU training configuration trains the embedded SmolLM2-135M.

``trainer.grpo.TrainConfig()`` (what ``trainer/configs/cpu.toml`` holds: LoRA r=8, a
supervised warm start of 2 samples a step, then GRPO with 4 completions of at most
128 tokens per prompt, 2 threads) for a few steps of each on Observer prompts built
by ``agents.prompts.observer_messages`` (~850 tokens, the size of a first step with
one observation). Printed: the warm start's seconds a step, each GRPO step's time
as TRL measures it, and the medians over the GRPO steps after the first: steps/s,
samples/s (completions scored and trained on per second) and prompts/s; and the
time the default run (``sft_steps`` + ``steps``) takes at these rates, which is how
the defaults were chosen. A JSON line follows the table for machines.

Env: ``AOI_BENCH_GRPO_STEPS`` (default 3), ``AOI_BENCH_SFT_STEPS`` (default 4),
``AOI_BENCH_GRPO_THREADS`` (default: the configuration's own, 2).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from agents.decision import Decision
from agents.prompts import PROMPT_VERSION, observer_messages
from store.labels import GroundTruth
from trainer.dataset import Sample, to_dataset
from trainer.grpo import TrainConfig, train

STEPS = int(os.environ.get("AOI_BENCH_GRPO_STEPS", "3"))
SFT_STEPS = int(os.environ.get("AOI_BENCH_SFT_STEPS", "4"))
THREADS = os.environ.get("AOI_BENCH_GRPO_THREADS")
NAMESPACE = "test-hotel-reservation"
OBSERVATION = (
    f"$ kubectl get pods -n {NAMESPACE}\n"
    "NAME READY STATUS RESTARTS AGE\n"
    "geo-7c9d5b6f4-x2x9q 0/1 CrashLoopBackOff 5 3m\n"
    "frontend-5d7f9c8b6-abcde 1/1 Running 0 3m\n"
    f"$ kubectl logs geo-7c9d5b6f4-x2x9q -n {NAMESPACE} --tail=20\n"
    + "2026-01-01T12:00:00Z dial tcp 10.0.0.3:9999: connection refused\n"
    * 3
)
TRUTH = GroundTruth(
    detection=True,
    components=("geo",),
    system_level="Virtualization",
    fault_type="Misconfiguration",
)


def _samples(count: int) -> list[Sample]:
    reference = Decision.model_validate(
        {
            "summary": "geo crash loops: its mongodb port is refused",
            "phase": "diagnosis",
            "hypotheses": ["geo"],
            "root_cause": {
                "component": "geo",
                "system_level": "Virtualization",
                "fault_type": "Misconfiguration",
            },
            "confidence": 70,
            "next_action": {
                "kind": "probe",
                "instruction": f"kubectl describe service geo -n {NAMESPACE}",
            },
        }
    )
    return [
        Sample(
            prompt=tuple(
                observer_messages(
                    question=f"geo fails in {NAMESPACE}, why? (incident {index})",
                    history=[],
                    observation=OBSERVATION,
                    step=1,
                    max_steps=5,
                )
            ),
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
        for index in range(count)
    ]


def _measure() -> dict[str, Any]:
    default = TrainConfig()
    changes: dict[str, Any] = {"steps": STEPS, "save_every": STEPS + 1, "sft_steps": SFT_STEPS}
    if THREADS is not None:
        changes["threads"] = int(THREADS)
    config = default.model_copy(update=changes)
    dataset = to_dataset(
        _samples(max(STEPS * config.prompts_per_step, SFT_STEPS * config.sft_batch))
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aoi-bench-grpo-") as out:
        result = train(config, dataset, out_dir=out, progress=False)
    wall = time.perf_counter() - started
    step_times = [row["step_time"] for row in result.metrics if "step_time" in row]
    warm = step_times[1:] or step_times
    median = statistics.median(warm)
    completions = config.per_device_batch * config.gradient_accumulation
    sft_step = (result.summary.get("sft_runtime_s") or 0.0) / max(1, SFT_STEPS)
    return {
        "sft_steps": SFT_STEPS,
        "sft_s_per_step": sft_step,
        "sft_samples_per_s": config.sft_batch / sft_step if sft_step else None,
        "default_run_min": (default.sft_steps * sft_step + default.steps * median) / 60,
        "threads": config.threads,
        "steps": len(step_times),
        "completions_per_step": completions,
        "max_completion_tokens": config.max_completion_tokens,
        "step_times_s": step_times,
        "median_step_s": median,
        "steps_per_s": 1.0 / median,
        "samples_per_s": completions / median,
        "prompts_per_s": config.prompts_per_step / median,
        "steps_per_hour": 3600.0 / median,
        "load_and_overhead_s": wall - sum(step_times) - sft_step * SFT_STEPS,
        "median_completion_tokens": statistics.median(
            row["completions/mean_length"] for row in result.metrics
        ),
    }


def main() -> None:
    figures = _measure()
    table = Table(title=f"Training, default CPU config, SmolLM2, {figures['threads']} thread(s)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("warm-start steps timed", str(figures["sft_steps"]))
    table.add_row("warm-start s a step", f"{figures['sft_s_per_step']:.1f}")
    table.add_row("warm-start samples/s", f"{figures['sft_samples_per_s'] or 0:.3f}")
    table.add_row("GRPO steps timed", str(figures["steps"]))
    table.add_row("step times s", ", ".join(f"{t:.1f}" for t in figures["step_times_s"]))
    table.add_row("median step s (after the first)", f"{figures['median_step_s']:.1f}")
    table.add_row("steps/s", f"{figures['steps_per_s']:.4f}")
    table.add_row("samples/s (completions)", f"{figures['samples_per_s']:.3f}")
    table.add_row("prompts/s", f"{figures['prompts_per_s']:.4f}")
    table.add_row("steps in an hour", f"{figures['steps_per_hour']:.0f}")
    table.add_row("median completion tokens", f"{figures['median_completion_tokens']:.0f}")
    table.add_row("load + setup + save s", f"{figures['load_and_overhead_s']:.1f}")
    table.add_row("default run (warm start + GRPO) min", f"{figures['default_run_min']:.0f}")
    Console().print(table)
    print(json.dumps({"bench": "grpo", **figures}))


if __name__ == "__main__":
    main()
