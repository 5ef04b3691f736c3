"""`aoi lab`: the incident lab — start it, list and inject scenarios, check, recover.

`up` runs the lab in the foreground (or detached, writing a state file); the
other commands find it through that state file. Every command that prints data
has `--json` for scripts and the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aoi.settings import Settings, load_settings
from lab.client import LabClient, start_detached
from lab.runtime import Lab
from lab.scenarios.loader import Registry, load_catalog
from lab.service import LabState, refuse_second_lab, serve

app = typer.Typer(
    help="The incident lab: a real control plane with simulated nodes and apps.",
    no_args_is_help=True,
)
console = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ScenariosDir = Annotated[
    Path | None,
    typer.Option(
        "--scenarios-dir", help="A folder of your own scenario YAML files (adds to the catalogue)."
    ),
]


def registry(settings: Settings, extra: Path | None) -> Registry:
    dirs = [d for d in (settings.scenarios_dir, extra) if d is not None]
    return load_catalog(dirs)


def _lab(settings: Settings | None = None) -> LabClient:
    """The running lab of the configured state folder."""
    return LabClient.connect((settings or load_settings()).lab_state_dir.resolve())


def _print_endpoints(state: LabState) -> None:
    table = Table(title=f"AOI lab ready in {state.ready_s:.1f}s (pid {state.pid})")
    table.add_column("endpoint")
    table.add_column("value")
    for key, value in state.endpoints.items():
        table.add_row(key, str(value))
    table.add_row("control_url", state.control_url)
    console.print(table)


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background.")] = False,
    api_port: Annotated[int, typer.Option(help="kube-apiserver port (0: any free).")] = 0,
    telemetry_port: Annotated[
        int, typer.Option(help="Prometheus/Jaeger API port (0: any free).")
    ] = 0,
    scenarios_dir: ScenariosDir = None,
) -> None:
    """Start the lab: control plane, nodes, the three apps, metrics, traces and logs."""
    settings = load_settings()
    state_dir = settings.lab_state_dir.resolve()
    refuse_second_lab(state_dir)
    if detach:
        argv = [
            "-m",
            "aoi",
            "lab",
            "up",
            "--api-port",
            str(api_port),
            "--telemetry-port",
            str(telemetry_port),
        ]
        if scenarios_dir:
            argv += ["--scenarios-dir", str(scenarios_dir)]
        with console.status("starting the lab (control plane, nodes, apps)..."):
            state = start_detached(argv, state_dir)
        _print_endpoints(state)
        console.print(f"state file: {state_dir / 'state.json'}; stop with `aoi lab down`")
        return
    lab = Lab(
        state_dir=state_dir,
        cache_dir=settings.cache_dir,
        api_port=api_port,
        telemetry_port=telemetry_port,
    )

    def ready(state: LabState) -> None:
        _print_endpoints(state)
        console.print("the lab runs in the foreground; Ctrl-C stops it")

    asyncio.run(serve(lab, registry(settings, scenarios_dir), on_ready=ready))


@app.command()
def down() -> None:
    """Stop the running lab."""
    settings = load_settings()
    client = _lab(settings)
    client.shutdown()
    console.print(f"lab (pid {client.state.pid}) stopped")


@app.command()
def scenarios(as_json: JsonOpt = False, scenarios_dir: ScenariosDir = None) -> None:
    """List the scenario catalogue (AIOpsLab's 86 tasks, ours, and yours)."""
    rows = registry(load_settings(), scenarios_dir).to_json()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} scenarios")
    for column in ("id", "task_type", "app", "fault", "split", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(str(row.get(c, "")) for c in ("id", "task_type", "app", "fault", "split", "source"))
        )
    console.print(table)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param wants key=value, got {pair!r}")
        params[key] = value
    return params


def _body(
    scenario_id: str | None,
    fault: str | None,
    target: str | None,
    params: list[str],
    app_name: str | None,
) -> dict[str, Any]:
    if scenario_id and fault:
        raise typer.BadParameter("give a scenario id or --fault, not both")
    if scenario_id:
        return {"scenario": scenario_id}
    if not fault:
        raise typer.BadParameter("give a scenario id, or --fault FAMILY --target SERVICE")
    return {"family": fault, "target": target, "params": _params(params), "app": app_name}


@app.command()
def inject(
    scenario_id: Annotated[
        str | None, typer.Argument(help="A scenario id from the catalogue.")
    ] = None,
    fault: Annotated[str | None, typer.Option(help="A fault family, for an ad-hoc fault.")] = None,
    target: Annotated[str | None, typer.Option(help="The service to inject into.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Fault parameter key=value.")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="The app, if ambiguous.")] = None,
    as_json: JsonOpt = False,
    scenarios_dir: ScenariosDir = None,
) -> None:
    """Inject a scenario (by id) or an ad-hoc fault into the running lab."""
    body = _body(scenario_id, fault, target, param or [], app_name)
    settings = load_settings()
    if scenario_id:
        scenario = registry(settings, scenarios_dir).get(scenario_id)
        body = {"resolved": scenario.model_dump(mode="json")}
    result = _lab(settings).inject(body)
    if as_json:
        typer.echo(json.dumps(result))
        return
    scenario = result["scenario"]
    console.print(f"injected {scenario['id']} ({scenario['app']}) in {result['seconds']:.2f}s")


def _window_s(text: str | None) -> float:
    """``60s``, ``1m``, ``2h`` as seconds; None: the window the agents read by default."""
    if text is None:
        from agents.runtime import Limits  # here: only this command pays for the import

        text = Limits().window
    units = {"s": 1, "m": 60, "h": 3600}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise typer.BadParameter(
            f"{text!r} is not a duration like 60s, 1m or 2h", param_hint="--window"
        )
    return float(int(text[:-1]) * units[text[-1]])


@app.command()
def recover(
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Wait until the lab has been healthy this long, so the symptoms have left "
            "windows this long (default: the window the agents read, 1m).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, max=1800, help="Give up waiting after this many seconds."),
    ] = 120.0,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Return once the apps are ready; symptoms may linger."),
    ] = False,
    app_name: Annotated[
        str | None,
        typer.Option("--app", help="Recover only this app's faults (e.g. hotel-reservation)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Undo the active faults, then wait until the lab is healthy and quiet (bounded)."""
    settle_s = 0.0 if no_wait else _window_s(window)
    result = _lab().recover(app=app_name, settle_s=settle_s, timeout_s=timeout)
    if as_json:
        typer.echo(json.dumps(result))
        return
    done = f"recovered {result['recovered']} fault(s) in {result['seconds']:.1f}s"
    if result["quiet"]:
        console.print(f"{done}; the lab is quiet: {result['detail']}")
    else:
        console.print(
            f"{done}, but gave up after {timeout:.0f}s waiting for the lab to go quiet: "
            f"{result['detail']}"
        )


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Health per service and the active faults."""
    result = _lab().status()
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title="lab services")
    for column in (
        "namespace",
        "service",
        "ready",
        "endpoints",
        "waiting",
        "rps",
        "error_rate",
        "p99_ms",
    ):
        table.add_column(column)
    for row in result["services"]:
        table.add_row(
            *(
                str(row[c])
                for c in (
                    "namespace",
                    "service",
                    "ready",
                    "endpoints",
                    "waiting",
                    "rps",
                    "error_rate",
                    "p99_ms",
                )
            )
        )
    console.print(table)
    for fault in result["active_faults"]:
        console.print(f"active: {fault['scenario']} {fault['family']} -> {fault['target']}")


@app.command()
def check(
    scenario_id: Annotated[str, typer.Argument(help="The scenario whose mitigation to check.")],
    as_json: JsonOpt = False,
    scenarios_dir: ScenariosDir = None,
) -> None:
    """Run the scenario's mitigation check against live state (exit 1 if not mitigated)."""
    settings = load_settings()
    scenario = registry(settings, scenarios_dir).get(scenario_id)
    result = _lab(settings).check({"resolved": scenario.model_dump(mode="json")})
    if as_json:
        typer.echo(json.dumps(result))
    else:
        word = "mitigated" if result["mitigated"] else "NOT mitigated"
        console.print(f"{scenario_id}: {word} — {result['detail']}")
    if not result["mitigated"] and not as_json:
        sys.exit(1)
