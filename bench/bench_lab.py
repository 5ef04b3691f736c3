"""The incident lab's speed and size: cold start, inject/recover per family, the 86-task cycle.

Targets (issue 3): all apps Ready < 30 s from a cold start with cached binaries,
inject and recover < 2 s median per family, the whole AIOpsLab catalogue's
inject/check/recover cycle < 10 minutes, peak memory < 2.5 GiB. Prints a table,
one JSON line, and writes a chart to var/bench/lab.png.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from lab.scenarios.loader import load_catalog
from tests.support.lab import LabThread

OUT = Path("var/bench")
console = Console()


def _peak_mib(pids: list[int]) -> float:
    """Sum of the processes' peak resident set (VmHWM), in MiB."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _cycle(handle: LabThread) -> tuple[dict[str, list[float]], dict[str, list[float]], float, int]:
    lab = handle.lab
    registry = load_catalog()
    scenarios = [registry.get(i) for i in registry.ids() if registry.get(i).source == "aiopslab"]
    inject: dict[str, list[float]] = defaultdict(list)
    recover: dict[str, list[float]] = defaultdict(list)
    started = time.perf_counter()
    passing_while_faulted = 0
    for n, scenario in enumerate(scenarios, 1):
        family = scenario.fault.family
        t = time.perf_counter()
        handle.run(lab.inject(scenario))
        inject[family].append(time.perf_counter() - t)
        verdict = handle.run(lab.check(scenario))
        passing_while_faulted += int(verdict.mitigated and family not in ("noop", "container_kill"))
        t = time.perf_counter()
        handle.run(lab.recover())
        handle.run(lab.wait_ready(timeout_s=120))
        recover[family].append(time.perf_counter() - t)
        console.print(f"[{n}/{len(scenarios)}] {scenario.id}", end="\r")
    console.print()
    return inject, recover, time.perf_counter() - started, passing_while_faulted


def _chart(inject: dict[str, list[float]], recover: dict[str, list[float]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    families = sorted(inject)
    y = range(len(families))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(families) + 1.2))
    ax.barh(
        [i - 0.2 for i in y], [statistics.median(inject[f]) for f in families], 0.4, label="inject"
    )
    ax.barh(
        [i + 0.2 for i in y],
        [statistics.median(recover[f]) for f in families],
        0.4,
        label="recover (until Ready)",
    )
    ax.set_yticks(list(y), families)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (median per family, log scale)")
    ax.axvline(2.0, color="grey", linestyle="--", linewidth=0.8)
    ax.legend(loc="lower right")
    ax.set_title("AOI lab: inject and recover per fault family")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "lab.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="aoi-bench-lab-"))
    handle = LabThread(state, tick_s=1.0)
    t = time.perf_counter()
    handle.start()
    cold = time.perf_counter() - t
    try:
        inject, recover, cycle_s, leaked = _cycle(handle)
        control = handle.lab._control
        pids = [os.getpid(), *(control.pids.values() if control else [])]
        peak = _peak_mib(pids)
        rss_now = (
            sum(psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)) / 2**20
        )
    finally:
        handle.stop()
    all_inject = [v for vs in inject.values() for v in vs]
    all_recover = [v for vs in recover.values() for v in vs]
    table = Table(title="AOI lab: inject / recover per family (seconds, median)")
    for column in ("family", "n", "inject", "recover"):
        table.add_column(column)
    for family in sorted(inject):
        table.add_row(
            family,
            str(len(inject[family])),
            f"{statistics.median(inject[family]):.2f}",
            f"{statistics.median(recover[family]):.2f}",
        )
    console.print(table)
    figures = {
        "cold_start_to_ready_s": round(cold, 2),
        "inject_median_s": round(statistics.median(all_inject), 3),
        "recover_median_s": round(statistics.median(all_recover), 3),
        "cycle_86_s": round(cycle_s, 1),
        "scenarios": len(all_inject),
        "peak_memory_mib": round(peak, 0),
        "rss_end_mib": round(rss_now, 0),
        "checks_passing_while_faulted": leaked,
    }
    chart = _chart(inject, recover)
    console.print(
        f"cold start → all apps Ready: {cold:.1f}s (target < 30 s)\n"
        f"inject median {figures['inject_median_s']}s, recover median "
        f"{figures['recover_median_s']}s (target < 2 s)\n"
        f"whole {len(all_inject)}-scenario cycle: {cycle_s:.0f}s (target < 600 s)\n"
        f"peak memory (lab process + control plane): {peak:.0f} MiB (target < 2560 MiB)"
        + (f"\nchart: {chart}" if chart else "")
    )
    print(json.dumps({"bench": "lab", **figures}))


if __name__ == "__main__":
    main()
