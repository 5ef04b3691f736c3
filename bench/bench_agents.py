"""The agent runtime's figures (issue 4), all measured in one run on the lab.

- per-step runtime overhead excluding model time (target < 100 ms median): a
  scripted Observer that answers instantly, so what is left is prompt building,
  parsing, redaction, compression, the store writes and the event stream;
- compression ratio on the lab's largest container logs under a fault;
- embedded-model tokens/s (SmolLM2-135M Q4_1 through llama-cpp-python);
- analyzers-only accuracy over the scenario catalogue: detection, localization
  (AIOpsLab's rule) and analysis, per family and overall, with a chart.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from kubernetes import client
from rich.console import Console
from rich.table import Table

from agents.analyzers.rank import Diagnosis, diagnose
from agents.analyzers.runner import analyze
from agents.compressor import compress
from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA
from agents.llm import LlamaCppModel, ScriptedModel, embedded_model_path
from agents.prompts import observer_messages
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext
from lab.k8s import api_client
from lab.scenarios.loader import load_catalog
from lab.scenarios.scoring import score_analysis, score_detection, score_localization
from store.db import make_engine
from store.migrate import upgrade
from tests.support.lab import LabThread

OUT = Path("var/bench")
SYMPTOM_WAIT_S = float(os.environ.get("AOI_BENCH_SYMPTOM_WAIT_S", "4"))
WINDOW = "20s"
QUIET_TIMEOUT_S = 30.0
SYMPTOM_TIMEOUT_S = 15.0
SYMPTOM_SETTLE_S = 5.0
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


def _diagnose(handle: LabThread, access: ClusterAccess) -> Diagnosis:
    report = handle.run(
        analyze(
            access.api,
            prometheus_url=access.prometheus_url,
            jaeger_url=access.jaeger_url,
            window=WINDOW,
        )
    )
    return diagnose(report.findings)


def _until(handle: LabThread, access: ClusterAccess, detected: bool, timeout_s: float) -> Diagnosis:
    """Poll the analyzers until they do (or no longer) see a fault, or time runs out."""
    deadline = time.monotonic() + timeout_s
    diag = _diagnose(handle, access)
    while diag.detected != detected and time.monotonic() < deadline:
        time.sleep(1.0)
        diag = _diagnose(handle, access)
    return diag


def _accuracy(handle: LabThread, access: ClusterAccess) -> dict[str, Any]:
    """Each scenario from a quiet lab: the previous fault's errors must have left the
    metric window first, or they would be scored against the next scenario."""
    lab = handle.lab
    registry = load_catalog()
    per_family: dict[str, list[bool]] = defaultdict(list)
    totals: dict[str, list[bool]] = defaultdict(list)
    for n, sid in enumerate(registry.ids(), 1):
        scenario = registry.get(sid)
        _until(handle, access, detected=False, timeout_s=QUIET_TIMEOUT_S)
        handle.run(lab.inject(scenario))
        _until(handle, access, detected=True, timeout_s=SYMPTOM_TIMEOUT_S)
        time.sleep(SYMPTOM_SETTLE_S)
        diag = _diagnose(handle, access)
        truth = scenario.ground_truth
        totals["detection"].append(score_detection(diag.detected, truth))
        if truth.detection and truth.components:
            ok = score_localization(diag.components, truth)
            totals["localization"].append(ok)
            per_family[scenario.fault.family].append(ok)
        if truth.system_level and truth.fault_type:
            totals["analysis"].append(score_analysis(diag.system_level, diag.fault_type, truth))
        handle.run(lab.recover())
        handle.run(lab.wait_ready(timeout_s=120))
        console.print(f"[{n}/{len(registry.ids())}] {sid}", end="\r")
    console.print()
    return {"totals": totals, "per_family": per_family}


def _chart(per_family: dict[str, list[bool]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    families = sorted(per_family, key=lambda f: sum(per_family[f]) / len(per_family[f]))
    acc = [100 * sum(per_family[f]) / len(per_family[f]) for f in families]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(families) + 1.2))
    ax.barh(families, acc, color=["tab:green" if a >= 50 else "tab:red" for a in acc])
    ax.set_xlim(0, 100)
    ax.set_xlabel("localization accuracy, analyzers only (%)")
    ax.set_title("AOI analyzers: localization per fault family (lab catalogue)")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "analyzers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(values: list[bool]) -> float:
    return round(100 * sum(values) / len(values), 1) if values else 0.0


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
        handle.run(handle.lab.recover())
        handle.run(handle.lab.wait_ready())
        acc = _accuracy(handle, access)
    finally:
        handle.stop()
        engine.dispose()
    table = Table(title="analyzers-only localization per family")
    for column in ("family", "scenarios", "accuracy %"):
        table.add_column(column)
    for family, oks in sorted(acc["per_family"].items()):
        table.add_row(family, str(len(oks)), f"{_pct(oks):.0f}")
    console.print(table)
    for task, oks in acc["totals"].items():
        figures[f"analyzers_{task}_accuracy_pct"] = _pct(oks)
        figures[f"analyzers_{task}_n"] = len(oks)
    chart = _chart(acc["per_family"])
    for key, value in figures.items():
        console.print(f"{key}: {value}")
    if chart:
        console.print(f"chart: {chart}")
    print(json.dumps({"bench": "agents", **figures}))


if __name__ == "__main__":
    main()
