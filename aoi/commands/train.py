"""`aoi train`: GRPO on the store's trajectories, and the result as a model version.

`run` builds step-level samples from the store's successful trajectories (the
exact prompts the Observer saw; `trainer.dataset`), keeps every fault family of
the lab's held-out split out of training, and trains with `trainer.grpo`;
`export` merges and converts the result to a GGUF and registers it as a model
version that `aoi models use` serves.

Examples::

    aoi bench --suite train --agent llm+analyzers --out var/bench/train   # trajectories
    AOI_DATABASE_URL=sqlite:///var/bench/train/trajectories.db aoi train run --steps 48
    aoi train export --name smollm2-grpo-1
    aoi models use smollm2-grpo-1
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from aoi.settings import load_settings
from aoi.wiring import store_engine
from lab.scenarios.loader import load_catalog
from store import model_versions

EXIT_USAGE = 2
DEFAULT_RUN_DIR = Path("var/train/run")

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
                "families; record some first (`aoi bench --suite train --agent llm+analyzers`, "
                "then point AOI_DATABASE_URL at its trajectories.db)"
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


def _fail(message: str) -> Any:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
