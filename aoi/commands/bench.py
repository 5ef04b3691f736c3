"""`aoi bench`: the agents against AIOpsLab's tasks, ours, held-out or generated scenarios.

Starts a private lab (its own control plane on free ports; a lab you run with
`aoi lab up` is left alone), runs each scenario K times through
`lab.benchmark.runner`, keeps every finished attempt in `--out/results.json`
(rerun the same command to continue after a crash), and writes `report.md` and
`report.png` beside it. Trajectories go to `--out/trajectories.db`, a store the
trainer can read.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from agents.llm import ChatModel
from agents.runtime import ClusterAccess
from aoi.approvals import action_rules
from aoi.settings import load_settings
from aoi.wiring import model_from
from lab.benchmark import report
from lab.benchmark.harness import LabThread
from lab.benchmark.results import AttemptResult, BenchmarkError, ResultsFile, RunInfo
from lab.benchmark.runner import AGENTS, Benchmark, BenchSettings
from lab.benchmark.suites import SUITES, select
from lab.k8s import api_client
from lab.scenarios.loader import load_catalog
from lab.scenarios.schema import Scenario
from store.db import make_engine
from store.migrate import upgrade


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def bench(
    suite: Annotated[
        str,
        typer.Option(help=f"{' | '.join(SUITES)}, or comma-separated scenario ids."),
    ] = "aiopslab",
    scenarios_dir: Annotated[
        Path | None, typer.Option("--scenarios-dir", help="Your own scenario YAML files.")
    ] = None,
    agent: Annotated[
        str,
        typer.Option(
            help="analyzers (no model) | llm (the Observer's own answer) | llm+analyzers (merged)."
        ),
    ] = "analyzers",
    model: Annotated[
        str | None,
        typer.Option(help="For llm agents: 'embedded', a GGUF path or an http(s) URL."),
    ] = None,
    attempts: Annotated[int, typer.Option(min=1, help="Attempts per scenario (K).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of --suite generated.")] = 1,
    count: Annotated[int, typer.Option(min=1, help="Scenarios of --suite generated.")] = 64,
    max_steps: Annotated[int, typer.Option(min=1, help="Observer steps per attempt.")] = 4,
    window: Annotated[
        int, typer.Option(min=5, help="Seconds of telemetry and logs the analyzers read.")
    ] = 20,
    symptom_wait: Annotated[
        float, typer.Option(min=0, help="Seconds between injection and the question.")
    ] = 12.0,
    back_to_back: Annotated[
        bool,
        typer.Option(
            "--back-to-back",
            help="No quiet wait after recovery: the previous fault's symptoms may linger.",
        ),
    ] = False,
    serial: Annotated[
        bool, typer.Option("--serial", help="One scenario at a time (no per-app lanes).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default var/bench/SUITE-AGENT[-b2b]); reruns resume."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the aggregate as JSON.")] = False,
) -> None:
    """Run the benchmark: each scenario K times, scored with AIOpsLab's evaluators."""
    if agent not in AGENTS:
        raise typer.BadParameter(f"--agent must be one of {', '.join(AGENTS)}")
    settings = load_settings()
    dirs = [d for d in (settings.scenarios_dir, scenarios_dir) if d is not None]
    scenarios = select(suite, load_catalog(dirs), seed=seed, count=count)
    if not scenarios:
        raise BenchmarkError(f"suite {suite!r} holds no scenarios")
    options = BenchSettings(
        agent=agent,  # type: ignore[arg-type]  # checked against AGENTS above
        attempts=attempts,
        max_steps=max_steps,
        window_s=window,
        symptom_s=symptom_wait,
        back_to_back=back_to_back,
        concurrent=not serial,
    )
    model_spec = model or settings.model
    name = suite if suite in SUITES else "ids"
    out_dir = out or Path("var/bench") / (
        f"{name}-{agent.replace('+', '-')}" + ("-b2b" if back_to_back else "")
    )
    info = RunInfo(
        suite=name,
        scenarios=[s.id for s in scenarios],
        agent=agent,
        model="analyzers" if agent == "analyzers" else model_spec,
        attempts=attempts,
        seed=seed if suite == "generated" else None,
        max_steps=max_steps,
        window_s=window,
        symptom_s=symptom_wait,
        back_to_back=back_to_back,
        concurrent=not serial,
        git_commit=git_commit(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    results = ResultsFile.open(out_dir, info)
    console = Console(stderr=True)
    todo = len(scenarios) * attempts - len(results.done())
    if results.attempts:
        console.print(f"resuming {out_dir}: {len(results.attempts)} attempt(s) already done")
    chat: ChatModel | None = None
    if agent != "analyzers":
        chat = model_from(settings, model_spec)
    try:
        run_attempts(results, scenarios, options, chat, out_dir, settings.cache_dir, console, todo)
    finally:
        if chat is not None:
            asyncio.run(chat.aclose())
    runs = [report.load(out_dir)]
    md, png = report.write(out_dir, runs)
    aggregate = runs[0]["aggregate"]
    if as_json:
        typer.echo(json.dumps(aggregate))
    else:
        _print(console, aggregate)
    console.print(f"results: {results.path}  report: {md}" + (f"  chart: {png}" if png else ""))


def run_attempts(
    results: ResultsFile,
    scenarios: list[Scenario],
    options: BenchSettings,
    chat: ChatModel | None,
    out_dir: Path,
    cache_dir: Path,
    console: Console,
    todo: int,
    *,
    db_url: str | None = None,
    model_for: Callable[[Scenario], ChatModel] | None = None,
) -> None:
    """Run what ``results`` lacks on a private lab; trajectories go to ``db_url`` (default:
    ``out_dir/trajectories.db``), each attempt's model from ``model_for`` when given."""
    if todo <= 0:
        return
    url = db_url or f"sqlite:///{out_dir / 'trajectories.db'}"
    upgrade(url)
    engine = make_engine(url)
    state = Path(tempfile.mkdtemp(prefix="aoi-bench-lab-"))
    handle = LabThread(state, cache_dir=cache_dir)
    try:
        with console.status("starting a private lab (control plane, nodes, apps)..."):
            handle.start()
        ends = handle.lab.endpoints
        assert ends is not None
        bench = Benchmark(
            lab=handle,
            engine=engine,
            access=ClusterAccess(
                api=api_client(Path(ends.observer_kubeconfig)),
                prometheus_url=ends.prometheus_url,
                jaeger_url=ends.jaeger_url,
            ),
            executor_api=api_client(Path(ends.executor_kubeconfig)),
            model=chat,
            settings=options,
            rules=action_rules(load_settings()),
            model_for=model_for,
        )
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ok {task.fields[ok]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("bench", total=todo, ok=0)
            ok = 0

            def progress(result: AttemptResult) -> None:
                nonlocal ok
                ok += result.success
                mark = "ok " if result.success else "MISS"
                bar.console.print(
                    f"{mark} {result.scenario_id} #{result.attempt}: {result.detail}", markup=False
                )
                bar.update(task, advance=1, ok=ok)

            asyncio.run(bench.run(scenarios, results, progress=progress))
    finally:
        handle.stop()
        engine.dispose()
        shutil.rmtree(state, ignore_errors=True)


def _print(console: Console, aggregate: dict[str, Any]) -> None:
    k = aggregate["k"]
    table = Table(title=f"{aggregate['tasks']} tasks x {k} attempt(s)")
    for column in ("task type", "tasks", "avg@1 %", f"avg@{k} %", f"best@{k} %", "sd %"):
        table.add_column(column)
    rows = [*list(aggregate["by_task_type"].items()), ("overall", aggregate)]
    for name, row in rows:
        table.add_row(
            name,
            str(row["tasks"]),
            *(
                "-" if row[key] is None else f"{row[key]:.1f}"
                for key in ("avg_at_1", f"avg_at_{k}", f"best_at_{k}", "std_across_attempts")
            ),
        )
    console.print(table)
