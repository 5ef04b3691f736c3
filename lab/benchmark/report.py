"""``report.md`` and ``report.png`` from one or more runs' ``results.json``.

The tables say what people compare: avg@1, avg@K and best@K per task type and
overall, with the spread across attempts, the times to answer, steps, tokens,
tool errors and invalid submissions; the chart shows success by task type for
each agent (or each run given, such as quiet against back-to-back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from store.labels import TASK_TYPES

REPORT_MD = "report.md"
REPORT_PNG = "report.png"


def load(path: Path) -> dict[str, Any]:
    """A ``results.json`` (or the folder holding one)."""
    file = path / "results.json" if path.is_dir() else path
    data: dict[str, Any] = json.loads(file.read_text())
    return data


def label(run: dict[str, Any]) -> str:
    info = run["run"]
    mode = "back-to-back" if info["back_to_back"] else "quiet"
    return f"{info['agent']} · {info['suite']} · {mode}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def markdown(runs: Sequence[dict[str, Any]]) -> str:
    lines: list[str] = []
    for run in runs:
        info, agg = run["run"], run["aggregate"]
        k = agg["k"]
        lines += [
            f"## {label(run)}",
            "",
            f"{agg['tasks']} tasks x {k} attempt(s), model `{info['model']}`, "
            f"max steps {info['max_steps']}, window {info['window_s']} s, symptoms "
            f"{info['symptom_s']} s, seed {info.get('seed')}, commit `{info['git_commit'][:10]}`, "
            f"wall {run.get('wall_s', 0):.0f} s.",
            "",
            f"| task type | tasks | avg@1 % | avg@{k} % | best@{k} % | sd % | "
            "median time to answer s | mean steps | tokens in/out | tool errors | invalid |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [(t, agg["by_task_type"][t]) for t in TASK_TYPES if t in agg["by_task_type"]]
        for name, row in [*rows, ("**overall**", agg)]:
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        _cell(row["tasks"]),
                        _cell(row["avg_at_1"]),
                        _cell(row[f"avg_at_{k}"]),
                        _cell(row[f"best_at_{k}"]),
                        _cell(row["std_across_attempts"]),
                        _cell(row["median_time_to_answer_s"]),
                        _cell(row["mean_steps"]),
                        f"{row['tokens_in']}/{row['tokens_out']}",
                        _cell(row["tool_errors"]),
                        _cell(row["invalid_submissions"]),
                    ]
                )
                + " |"
            )
        lines += [
            "",
            f"Framework overhead per attempt (median): {_cell(agg['median_overhead_s'])} s; "
            f"agent time (median): {_cell(agg['median_agent_s'])} s; attempts after a recovery "
            f"that did not go quiet: {agg['not_quiet']}; attempts that failed to run: "
            f"{agg['errors']}.",
            "",
        ]
        views = agg.get("views_avg_at_1") or {}
        if len(views) > 1:
            lines += [
                "The same trajectories scored as each agent (avg@1): "
                + ", ".join(f"{name} {_cell(value)} %" for name, value in views.items())
                + ".",
                "",
            ]
        misses = [a for a in run["attempts"] if not a["success"]]
        if misses:
            lines += ["<details><summary>failed attempts</summary>", ""]
            lines += [
                f"- `{a['scenario_id']}` #{a['attempt']}: {a['detail']}"
                + (f" (answer {json.dumps(a['answer'])})" if a.get("answer") is not None else "")
                for a in misses
            ]
            lines += ["", "</details>", ""]
    return "\n".join(lines)


def chart(runs: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Success (avg@1) by task type, one bar per run; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = [*TASK_TYPES, "overall"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        agg = run["aggregate"]
        values = [
            (agg["by_task_type"].get(g) or {}).get("avg_at_1")
            if g != "overall"
            else agg["avg_at_1"]
            for g in groups
        ]
        xs = [j + i * width for j in range(len(groups))]
        bars = ax.bar(xs, [v or 0 for v in values], width, label=label(run))
        for bar, value in zip(bars, values, strict=True):
            if value is not None:
                ax.annotate(
                    f"{value:.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(groups))], groups)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success, avg@1 (%)")
    ax.set_title("AOI benchmark: success by task type")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(out_dir: Path, runs: Sequence[dict[str, Any]]) -> tuple[Path, Path | None]:
    """``report.md`` and ``report.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / REPORT_MD
    md.write_text("# AOI benchmark report\n\n" + markdown(runs))
    return md, chart(runs, out_dir / REPORT_PNG)
