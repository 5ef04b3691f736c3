"""What the portable llama.cpp build and the model worker's process boundary cost.

Printed, all from one run on the embedded SmolLM2-135M GGUF, one thread:
- the CPU features the installed build reports (no AVX-512/AMX by design);
- tokens/s of the portable build, in process and through the worker;
- the process boundary's cost per decision: the same 1-token answer and the
  same schema-constrained decision, median ms in process against the worker;
- decisions/s and median decision latency with 1 and with 4 concurrent
  investigations sharing one worker (requests queue; the worker answers one at
  a time), with the longest queue seen.
A JSON line follows the table for machines.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA
from agents.llm import LlamaCppModel, Message, SupervisedModel, embedded_model_path

REPEATS = int(os.environ.get("AOI_BENCH_MODEL_REPEATS", "9"))
DECISIONS_PER_INVESTIGATION = int(os.environ.get("AOI_BENCH_MODEL_DECISIONS", "3"))
PROMPT: list[Message] = [
    {"role": "system", "content": "You diagnose Kubernetes incidents. Answer in JSON."},
    {
        "role": "user",
        "content": "Pod geo in test-hotel-reservation is in CrashLoopBackOff; its log says "
        "'panic: no reachable servers' for mongodb-geo:27017. What next?",
    },
]
ONE_TOKEN: list[Message] = [{"role": "user", "content": "Say OK."}]


async def _median_ms(call: Callable[[], Awaitable[Any]], repeats: int) -> float:
    await call()  # warm: grammar compiled, caches filled
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _tokens_per_s(model: LlamaCppModel | SupervisedModel) -> float:
    """Median over three warm 128-token answers (prompt evaluation included)."""
    await model.complete(PROMPT, max_tokens=8)
    rates = []
    for _ in range(3):
        completion = await model.complete(PROMPT, max_tokens=128, temperature=0.0)
        rates.append(completion.tokens_out / max(completion.latency_s, 1e-9))
    return statistics.median(rates)


async def _concurrent(model: SupervisedModel, investigations: int) -> dict[str, float]:
    latencies: list[float] = []
    longest_queue = 0

    async def one() -> None:
        nonlocal longest_queue
        for _ in range(DECISIONS_PER_INVESTIGATION):
            started = time.perf_counter()
            call = model.complete(PROMPT, schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS)
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0)
            longest_queue = max(longest_queue, model.queue_length)
            await task
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(investigations)))
    wall = time.perf_counter() - started
    return {
        "investigations": investigations,
        "decisions": len(latencies),
        "decisions_per_s": len(latencies) / wall,
        "median_latency_s": statistics.median(latencies),
        "longest_queue": longest_queue,
    }


async def _measure() -> dict[str, Any]:
    path = embedded_model_path()
    inproc = LlamaCppModel(path, threads=1)
    worker = SupervisedModel(path, threads=1)
    try:
        info = await worker.start()
        figures: dict[str, Any] = {"cpu_features": info.cpu_features, "worker_start_s": info.load_s}
        figures["tokens_per_s_in_process"] = await _tokens_per_s(inproc)
        figures["tokens_per_s_worker"] = await _tokens_per_s(worker)

        def one_token(model: LlamaCppModel | SupervisedModel) -> Callable[[], Awaitable[Any]]:
            return lambda: model.complete(ONE_TOKEN, max_tokens=1)

        def decision(model: LlamaCppModel | SupervisedModel) -> Callable[[], Awaitable[Any]]:
            return lambda: model.complete(
                PROMPT, schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS
            )

        figures["one_token_ms_in_process"] = await _median_ms(one_token(inproc), REPEATS)
        figures["one_token_ms_worker"] = await _median_ms(one_token(worker), REPEATS)
        figures["decision_ms_in_process"] = await _median_ms(decision(inproc), REPEATS)
        figures["decision_ms_worker"] = await _median_ms(decision(worker), REPEATS)
        await inproc.aclose()
        figures["concurrency"] = [await _concurrent(worker, n) for n in (1, 4)]
        return figures
    finally:
        await inproc.aclose()
        await worker.aclose()


def main() -> None:
    figures = asyncio.run(_measure())
    console = Console()
    console.print(f"llama.cpp CPU features: {', '.join(figures['cpu_features'])}")
    table = Table(title="embedded SmolLM2-135M, one thread: in process vs the worker process")
    table.add_column("figure")
    table.add_column("in process", justify="right")
    table.add_column("worker", justify="right")
    table.add_column("boundary cost", justify="right")
    table.add_row(
        "tokens/s (warm 128-token answer, median of 3)",
        f"{figures['tokens_per_s_in_process']:.1f}",
        f"{figures['tokens_per_s_worker']:.1f}",
        "",
    )
    for label, key in (
        ("1-token answer, median ms", "one_token"),
        ("decision, median ms", "decision"),
    ):
        a, b = figures[f"{key}_ms_in_process"], figures[f"{key}_ms_worker"]
        table.add_row(label, f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f} ms ({b / a:.2f}x)")
    console.print(table)
    shared = Table(title="one worker shared by concurrent investigations")
    for column in (
        "investigations",
        "decisions",
        "decisions/s",
        "median latency s",
        "longest queue",
    ):
        shared.add_column(column, justify="right")
    for row in figures["concurrency"]:
        shared.add_row(
            str(row["investigations"]),
            str(row["decisions"]),
            f"{row['decisions_per_s']:.2f}",
            f"{row['median_latency_s']:.2f}",
            str(row["longest_queue"]),
        )
    console.print(shared)
    print(json.dumps({"bench": "model", **figures}, default=float))


if __name__ == "__main__":
    main()
