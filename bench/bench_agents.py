"""The agent runtime's figures (issue 4), all measured in one run on the lab.

- per-step runtime overhead excluding model time (target < 100 ms median): a
  scripted Observer that answers instantly, so what is left is prompt building,
  parsing, redaction, compression, the store writes and the event stream;
- compression ratio on the lab's largest container logs under a fault;
- embedded-model tokens/s (SmolLM2-135M Q4_1 through llama-cpp-python), and how
  many of its answers are schema-valid over whole investigations on the lab;

Accuracy over the scenario catalogue is the benchmark's (``aoi bench``,
``lab.benchmark``; its own cost is ``bench_benchmark``), not measured here.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from kubernetes import client
from rich.console import Console

from agents.compressor import compress
from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA, DecisionError, parse_decision
from agents.llm import Completion, LlamaCppModel, ScriptedModel, embedded_model_path
from agents.prompts import observer_messages
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from lab.k8s import api_client
from lab.scenarios import Registry, Scenario
from lab.scenarios.loader import load_catalog
from store.db import make_engine
from store.migrate import upgrade
from tests.support.lab import LabThread

SYMPTOM_WAIT_S = float(os.environ.get("AOI_BENCH_SYMPTOM_WAIT_S", "4"))
EMBEDDED_STEPS = 5
EMBEDDED_SCENARIOS = (
    "revoke_auth_mongodb-analysis-1",
    "k8s_target_port-misconfig-mitigation-1",
    "astronomy_shop_cart_service_failure-detection-1",
    "scale_pod_zero_social_net-localization-1",
    "pod_failure_hotel_res-detection-1",
    "noop_detection_astronomy_shop-1",
)
console = Console()


def _decision(kind: str, instruction: str) -> str:
    return json.dumps(
        {
            "summary": "checking",
            "phase": "diagnosis",
            "hypotheses": ["geo"],
            "root_cause": {
                "component": "geo",
                "system_level": "Application",
                "fault_type": "Authentication Issue",
            },
            "confidence": 40,
            "next_action": {"kind": kind, "instruction": instruction},
        }
    )


async def _overhead(engine: Any, access: ClusterAccess) -> dict[str, float]:
    replies = [
        _decision("probe", f"kubectl get pods -n test-hotel-reservation -l x={i}") for i in range(7)
    ] + [_decision("submit", "mongodb-geo")]
    model = ScriptedModel(replies)
    times: list[float] = []
    probe_ms: list[float] = []
    last = plan_at = time.perf_counter()
    async for event in investigate(
        IncidentContext(question="geo errors"),
        engine=engine,
        cluster=access,
        model=model,
        limits=Limits(max_steps=8),
    ):
        now = time.perf_counter()
        if event.kind == "plan":
            # From the previous step's last event to this plan: prompt building, the
            # (instant) model, parsing, redaction and the store write.
            times.append((now - last) * 1000)
            plan_at = now
        if event.kind == "probe_result":
            probe_ms.append((now - plan_at) * 1000)
        last = now
    return {
        "step_overhead_median_ms": round(statistics.median(times[1:] or times), 1),
        "probe_tool_median_ms": round(statistics.median(probe_ms), 1) if probe_ms else 0.0,
    }


def _compression(api: client.ApiClient, namespace: str) -> dict[str, float]:
    core = client.CoreV1Api(api)
    logs = []
    for pod in core.list_namespaced_pod(namespace).items:
        try:
            text = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        except client.ApiException:
            continue
        logs.append((f"kubectl logs {pod.metadata.name} -n {namespace}", text))
    logs.sort(key=lambda x: -len(x[1]))
    largest = logs[:5]
    started = time.perf_counter()
    obs = compress(largest, budget_tokens=600)
    return {
        "compression_raw_chars": obs.raw_chars,
        "compression_kept_chars": obs.kept_chars,
        "compression_ratio": round(obs.ratio, 4),
        "compression_errors_kept": obs.errors_kept,
        "compression_ms": round((time.perf_counter() - started) * 1000, 1),
    }


async def _tokens_per_s() -> dict[str, float]:
    model = LlamaCppModel(embedded_model_path(), threads=1)
    messages = observer_messages(
        question="search returns errors",
        history=[],
        observation="geo: not authorized on geo-db",
        step=1,
        max_steps=3,
    )
    rates = []
    try:
        for _ in range(3):
            c = await model.complete(
                messages, schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS
            )
            rates.append(c.tokens_out / max(c.latency_s, 1e-6))
        free = await model.complete(messages, max_tokens=128)
    finally:
        await model.aclose()
    return {
        "embedded_decision_tokens_per_s": round(statistics.median(rates), 1),
        "embedded_free_tokens_per_s": round(free.tokens_out / max(free.latency_s, 1e-6), 1),
    }


class _Counting:
    """The embedded model, with every schema-constrained answer checked as it leaves."""

    def __init__(self, model: LlamaCppModel) -> None:
        self.model = model
        self.answers = 0
        self.invalid: list[str] = []
        self.cut_off = 0

    @property
    def name(self) -> str:
        return self.model.name

    async def complete(self, messages: Any, **kwargs: Any) -> Completion:
        completion = await self.model.complete(messages, **kwargs)
        if kwargs.get("schema") is not None:
            self.answers += 1
            self.cut_off += completion.finish_reason == "length"
            try:
                parse_decision(completion.text)
            except DecisionError as exc:
                self.invalid.append(exc.reason)
        return completion

    def stream(self, messages: Any, **kwargs: Any) -> AsyncGenerator[str, None]:
        return self.model.stream(messages, **kwargs)

    async def aclose(self) -> None:
        await self.model.aclose()


def _recover(handle: LabThread) -> None:
    """Back to a healthy lab, every app Ready, before the next scenario."""
    handle.run(handle.lab.recover())
    handle.run(handle.lab.wait_ready(timeout_s=120))


async def _embedded_run(
    engine: Any, access: ClusterAccess, model: _Counting, scenario: Scenario
) -> int:
    steps = 0
    # What a user would say: the symptom and the app, never the scenario's ground truth.
    ctx = IncidentContext(question=f"Users report errors in {scenario.app}: what is wrong?")
    async for event in investigate(
        ctx, engine=engine, cluster=access, model=model, limits=Limits(max_steps=EMBEDDED_STEPS)
    ):
        steps += event.kind == "plan"
        if event.kind == "error":
            console.print(f"  {scenario.id}: {event.message}")  # type: ignore[attr-defined]
    return steps


def _embedded_validity(
    handle: LabThread, engine: Any, access: ClusterAccess, registry: Registry
) -> dict[str, Any]:
    """Whole investigations with the embedded model: is every step's answer schema-valid?"""
    model = _Counting(LlamaCppModel(embedded_model_path(), threads=1))
    steps = 0
    try:
        for sid in EMBEDDED_SCENARIOS:
            _recover(handle)
            scenario = registry.get(sid)
            handle.run(handle.lab.inject(scenario))
            time.sleep(SYMPTOM_WAIT_S)
            steps += asyncio.run(_embedded_run(engine, access, model, scenario))
    finally:
        asyncio.run(model.aclose())
        _recover(handle)
    for reason in model.invalid:
        console.print(f"invalid embedded answer: {reason}")
    return {
        "embedded_investigations": len(EMBEDDED_SCENARIOS),
        "embedded_steps": steps,
        "embedded_answers": model.answers,
        "embedded_answers_valid": model.answers - len(model.invalid),
        "embedded_answers_cut_off": model.cut_off,
    }


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="aoi-bench-agents-"))
    url = f"sqlite:///{state / 'aoi.db'}"
    upgrade(url)
    engine = make_engine(url)
    handle = LabThread(state / "lab", tick_s=0.5)
    handle.start()
    figures: dict[str, Any] = {}
    try:
        ends = handle.lab.endpoints
        assert ends is not None
        access = ClusterAccess(
            api=api_client(Path(ends.observer_kubeconfig)),
            prometheus_url=ends.prometheus_url,
            jaeger_url=ends.jaeger_url,
        )
        figures |= asyncio.run(_tokens_per_s())
        registry = load_catalog()
        handle.run(handle.lab.inject(registry.get("revoke_auth_mongodb-localization-1")))
        time.sleep(SYMPTOM_WAIT_S)
        figures |= asyncio.run(_overhead(engine, access))
        figures |= _compression(access.api, "test-hotel-reservation")
        # _embedded_validity recovers the lab from the fault above before its first run.
        figures |= _embedded_validity(handle, engine, access, registry)
    finally:
        handle.stop()
        engine.dispose()
    for key, value in figures.items():
        console.print(f"{key}: {value}")
    print(json.dumps({"bench": "agents", **figures}))


if __name__ == "__main__":
    main()
