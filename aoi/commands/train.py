"""`aoi train`: GRPO on the store's trajectories, and the result as a model version.

`run` builds step-level samples from the store's successful trajectories (the
exact prompts the Observer saw; `trainer.dataset`), keeps every fault family of
the lab's held-out split out of training, and trains with `trainer.grpo`;
`export` merges and converts the result to a GGUF and registers it as a model
version that `aoi models use` serves.

`collect` runs the lab's train split with a teacher Observer and records its
trajectories, with their ground truth and verdicts, in the store.

Examples::

    aoi train collect --suite train --attempts 2            # the analyzers' teacher
    aoi train collect --teacher http://127.0.0.1:8000/v1     # or any OpenAI-compatible model
    aoi train run --steps 12
    aoi train export --name smollm2-grpo-1
    aoi models use smollm2-grpo-1
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from aoi.settings import load_settings
from aoi.wiring import store_engine
from lab.scenarios.loader import load_catalog
from store import model_versions

EXIT_USAGE = 2
DEFAULT_RUN_DIR = Path("var/train/run")
DEFAULT_COLLECT_DIR = Path("var/train/collect")
TEACHERS = ("analyzers",)
"""Built-in teachers; an http(s) URL names an OpenAI-compatible model instead."""

app = typer.Typer(
    help="Train the Observer with GRPO on recorded trajectories; export it as a model version.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
OutOpt = Annotated[Path, typer.Option("--out", help="The training run's folder.")]


def heldout_families() -> list[str]:
    """The fault families of the lab's held-out split: never trained on."""
    families = {f for s in load_catalog().select(split="held_out") for f in s.families}
    return sorted(families)


@app.command()
def collect(
    suite: Annotated[
        str, typer.Option(help="train (the lab's train split), or comma-separated scenario ids.")
    ] = "train",
    attempts: Annotated[int, typer.Option(min=1, help="Attempts per scenario (K).")] = 1,
    teacher: Annotated[
        str,
        typer.Option(help="analyzers (a policy driven by the analyzers' findings) or an URL."),
    ] = "analyzers",
    max_steps: Annotated[int, typer.Option(min=1, help="Observer steps per attempt.")] = 4,
    out: Annotated[
        Path, typer.Option("--out", help="Where results.json goes; rerun to continue.")
    ] = DEFAULT_COLLECT_DIR,
    heldout: Annotated[
        bool,
        typer.Option(
            "--heldout",
            help="Record the held-out split for `aoi train eval` (training never reads it).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record teacher trajectories on the lab's train split, with their labels, in the store.

    With --heldout, the held-out split instead: references to measure a model's reward
    on faults it never trained on (`aoi train run` leaves their families out)."""
    from rich.console import Console

    from aoi.commands.bench import git_commit, run_attempts
    from aoi.wiring import model_from
    from lab.benchmark.results import ResultsFile, RunInfo
    from lab.benchmark.runner import BenchSettings
    from lab.benchmark.suites import select
    from lab.benchmark.teacher import TEACHER_NAME, AnalyzerTeacher

    settings = load_settings()
    dirs = [settings.scenarios_dir] if settings.scenarios_dir is not None else []
    if heldout:
        suite = "heldout" if suite == "train" else suite
    elif suite in ("heldout", "aiopslab", "all", "generated"):
        _fail(
            f"--suite {suite} would record held-out fault families; collect runs the train "
            "split (--suite train) or scenario ids of train families (--heldout records the "
            "held-out split for evaluation)"
        )
    try:
        scenarios = select(suite, load_catalog(dirs))
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    wrong_side = sorted(
        {s.id for s in scenarios if (s.split == "held_out") != heldout and s.split is not None}
    )
    if wrong_side and not heldout:
        _fail(
            f"held-out scenarios are for evaluation, never training: {', '.join(wrong_side[:5])}"
            + (" ..." if len(wrong_side) > 5 else "")
        )
    if wrong_side:
        _fail(f"--heldout records held-out scenarios only, not {', '.join(wrong_side[:5])}")
    if not scenarios:
        _fail(f"suite {suite!r} holds no scenarios")
    chat = None
    model_for = None
    if teacher == "analyzers":
        model_for = AnalyzerTeacher.for_scenario
        teacher_name = TEACHER_NAME
    elif teacher.startswith(("http://", "https://")):
        chat = model_from(settings, teacher)
        teacher_name = teacher
    else:
        _fail(f"--teacher {teacher!r}: use one of {', '.join(TEACHERS)} or an http(s) URL")
    options = BenchSettings(agent="llm", attempts=attempts, max_steps=max_steps)
    info = RunInfo(
        suite=suite if suite in ("train", "heldout") else "ids",
        scenarios=[s.id for s in scenarios],
        agent="llm",
        model=teacher_name,
        attempts=attempts,
        seed=None,
        max_steps=max_steps,
        window_s=options.window_s,
        symptom_s=options.symptom_s,
        back_to_back=False,
        concurrent=True,
        git_commit=git_commit(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    results = ResultsFile.open(out, info)
    console = Console(stderr=True)
    todo = len(scenarios) * attempts - len(results.done())
    try:
        run_attempts(
            results,
            scenarios,
            options,
            chat,
            out,
            settings.cache_dir,
            console,
            todo,
            db_url=settings.database_url,
            model_for=model_for,
        )
    finally:
        if chat is not None:
            asyncio.run(chat.aclose())
    payload = _collected(results.attempts, settings)
    payload["out"] = str(out)
    typer.echo(json.dumps(payload) if as_json else _lines(payload))


def _collected(attempts: list[Any], settings: Any) -> dict[str, Any]:
    """What the collection gave: attempts, successful ones, and the store's samples now."""
    from trainer.dataset import collect_samples, split_by_family

    engine = store_engine(settings)
    try:
        samples = collect_samples(engine)
    finally:
        engine.dispose()
    split = split_by_family(samples, heldout_families())
    return {
        "attempts": len(attempts),
        "successful": sum(1 for a in attempts if a.success),
        "train_samples": len(split.train),
        "heldout_samples": len(split.heldout),
    }


@app.command("eval")
def evaluate(
    model: Annotated[
        str | None,
        typer.Option(help="embedded, a GGUF path, version:NAME or an URL (default: served)."),
    ] = None,
    split: Annotated[
        str, typer.Option(help="heldout (families never trained on) or train.")
    ] = "heldout",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score the first N samples only.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="The training config whose weights to use.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A model's mean training reward on the store's samples (held-out families by default)."""
    from rich.console import Console

    from aoi.wiring import model_from
    from trainer.dataset import collect_samples, split_by_family, to_dataset
    from trainer.evaluate import complete_all, score
    from trainer.grpo import ConfigError, load_config, parse_config

    if split not in ("heldout", "train"):
        _fail(f"--split {split!r}: use heldout or train")
    try:
        cfg = load_config(config) if config else parse_config({})
    except ConfigError as exc:
        _fail(str(exc))
    settings = load_settings()
    engine = store_engine(settings)
    try:
        parts = split_by_family(collect_samples(engine), heldout_families())
    finally:
        engine.dispose()
    samples = (parts.heldout if split == "heldout" else parts.train)[:limit]
    if not samples:
        _fail(
            f"the store has no {split} sample to score; record some first "
            f"(`aoi train collect{' --heldout' if split == 'heldout' else ''}`)"
        )
    rows = list(to_dataset(samples))
    chat = model_from(settings, model)
    if chat is None:
        _fail("the analyzers write no decision to score: choose a model (--model)")
    console = Console(stderr=True)

    async def answers() -> tuple[list[str], int]:
        try:
            with console.status(f"{chat.name}: 0/{len(rows)} decisions") as status:
                return await complete_all(
                    chat,
                    rows,
                    progress=lambda n: status.update(f"{chat.name}: {n}/{len(rows)} decisions"),
                )
        finally:
            await chat.aclose()

    texts, failed = asyncio.run(answers())
    report = score(rows, texts, cfg.rewards, failed=failed)
    payload = {"model": chat.name, "split": split, **report.as_dict()}
    typer.echo(json.dumps(payload) if as_json else _lines(payload))


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="A TOML or YAML training config.")
    ] = None,
    base: Annotated[
        str | None, typer.Option("--base", help="embedded, a .gguf file or a model folder.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="GRPO steps.")] = None,
    out: OutOpt = DEFAULT_RUN_DIR,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train on the store's successful trajectories, held-out families left out."""
    from trainer.dataset import collect_samples, split_by_family, to_dataset
    from trainer.grpo import ConfigError, load_config, parse_config, train

    overrides = {"base": base, "steps": steps}
    try:
        settings = {k: v for k, v in overrides.items() if v is not None}
        cfg = load_config(config, **overrides) if config else parse_config(settings)
    except ConfigError as exc:
        _fail(str(exc))
    app_settings = load_settings()
    engine = store_engine(app_settings)
    try:
        samples = collect_samples(engine)
        split = split_by_family(samples, heldout_families())
        if not split.train:
            _fail(
                f"no trajectory to learn from: the store has {len(samples)} sample(s) from "
                f"successful investigations and {len(split.heldout)} of them are of held-out "
                "families; record some first (`aoi train collect`)"
            )
        result = train(cfg, to_dataset(split.train), out_dir=out, engine=engine, resume=resume)
    finally:
        engine.dispose()
    payload: dict[str, Any] = {
        "out": str(result.out_dir),
        "final": str(result.final_dir),
        "steps": result.steps,
        "run_id": result.run_id,
        "train_samples": len(split.train),
        "heldout_samples": len(split.heldout),
        **result.summary,
    }
    typer.echo(json.dumps(payload) if as_json else _lines(payload))


@app.command()
def export(
    name: Annotated[str, typer.Option("--name", help="The model version's name.")],
    out: OutOpt = DEFAULT_RUN_DIR,
    gguf: Annotated[
        Path | None,
        typer.Option("--gguf", help="Where to write the GGUF (default: --out/NAME.gguf)."),
    ] = None,
    outtype: Annotated[
        str, typer.Option("--outtype", help="f16 (default), q8_0, bf16 or f32.")
    ] = "f16",
    notes: Annotated[str, typer.Option("--notes", help="Kept with the version.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Merge and convert a finished run to GGUF and register it as model version NAME."""
    from trainer.export import ExportError, export_gguf

    if outtype not in ("f16", "q8_0", "bf16", "f32"):
        _fail(f"--outtype {outtype!r}: use f16, q8_0, bf16 or f32")
    kind: Literal["f16", "q8_0", "bf16", "f32"] = outtype  # type: ignore[assignment]
    run_info = _run_info(out)
    settings = load_settings()
    engine = store_engine(settings)
    try:
        model_versions.check_name(name)  # before minutes of conversion, not after
        if model_versions.find_version(engine, name) is not None:
            _fail(f"a model version named {name!r} exists; choose another --name")
        path = export_gguf(out, gguf or out / f"{name}.gguf", outtype=kind)
        version = model_versions.register_version(
            engine,
            name=name,
            path=path,
            base=str(run_info.get("config", {}).get("base", "")),
            run_id=_known_run(engine, run_info.get("run_id")),
            notes=notes,
            method="grpo",
        )
    except (ExportError, ValueError, model_versions.ModelVersionExists) as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    payload = {
        "name": version.name,
        "id": version.id,
        "path": version.path,
        "run_id": version.run_id,
    }
    typer.echo(json.dumps(payload) if as_json else _lines(payload))


def _run_info(out: Path) -> dict[str, Any]:
    from trainer.grpo import RUN_FILE

    try:
        info = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _known_run(engine: Any, run_id: object) -> int | None:
    """The run id when this store knows it (a run may have trained against another store)."""
    from store import training

    if not isinstance(run_id, int) or isinstance(run_id, bool):
        return None
    try:
        training.get_run(engine, run_id)
    except training.RunNotFound:
        return None
    return run_id


def _lines(payload: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in payload.items())


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
