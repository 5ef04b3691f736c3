"""`aoi investigate` and `aoi run`: the console investigation and the product's main job.

`investigate` asks one question of a cluster (the lab by default), renders the
agents' work live and asks before it changes anything. `run` is what
`make run` does on embedded defaults: bring up the lab, break something, and
investigate it with the embedded model until the fault is fixed and verified.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agents.events import ProposalEvent
from agents.executor import Provenance
from agents.trajectory import IncidentContext
from aoi.approvals import action_rules, approval_policy, local_approver
from aoi.commands.bot import CONNECT_HELP, serve, slack_configured
from aoi.console import Approvals, Asker, Outcome, run_console
from aoi.settings import Settings, load_settings
from aoi.wiring import lab_state_dir, limits_from, model_from, store_engine, wire
from lab.client import LabClient, start_detached
from lab.errors import LabNotRunningError
from lab.scenarios.loader import load_catalog

SYMPTOM_WAIT_S = 6.0
SAMPLE_SCENARIO = "k8s_target_port-misconfig-mitigation-1"


def ensure_lab(settings: Settings, console: Console) -> tuple[LabClient, bool]:
    """The running lab, starting one (detached) if none is up; True if we started it."""
    state_dir = lab_state_dir(settings)
    try:
        return LabClient.connect(state_dir), False
    except LabNotRunningError:
        with console.status("starting the incident lab (control plane, nodes, apps)..."):
            state = start_detached(["-m", "aoi", "lab", "up"], state_dir)
        console.print(f"lab up in {state.ready_s:.1f}s (pid {state.pid})")
        return LabClient(state), True


def inject_scenario(
    lab: LabClient, settings: Settings, scenario_id: str, console: Console
) -> dict[str, Any]:
    dirs = [settings.scenarios_dir] if settings.scenarios_dir else []
    scenario = load_catalog(dirs).get(scenario_id)
    lab.inject({"resolved": scenario.model_dump(mode="json")})
    with console.status(f"injected {scenario_id}; letting the symptoms show..."):
        time.sleep(SYMPTOM_WAIT_S)
    return scenario.model_dump(mode="json")


def verify(lab: LabClient, scenario: dict[str, Any], *, timeout_s: float = 45.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        verdict = lab.check({"resolved": scenario})
        if verdict["mitigated"] or time.monotonic() > deadline:
            return verdict
        time.sleep(1.0)


def _asker(console: Console) -> Asker:
    """Ask the person at the terminal; with no terminal, leave the proposal PENDING."""

    def ask(event: ProposalEvent, provenance: Provenance) -> bool | None:
        if not sys.stdin.isatty():
            hint = (
                "--yes would approve it: it only restores values"
                if provenance.restores_only
                else "it sets a new value, which only a person may approve"
            )
            console.print(f"  no terminal to ask for approval: proposal left PENDING ({hint})")
            return None
        return typer.confirm(
            f"  approve proposal #{event.proposal_id} ({event.command})?", default=False
        )

    return ask


def _approvals(settings: Settings, *, yes: bool, console: Console) -> Approvals:
    local = local_approver()
    return Approvals(
        ask=_asker(console),
        approver=local,
        policy=approval_policy(settings, local=local),
        rules=action_rules(settings),
        automatic=yes,
    )


def _investigate(
    settings: Settings,
    question: str,
    *,
    model_spec: str | None,
    yes: bool,
    scenario: dict[str, Any] | None,
    console: Console,
) -> Outcome:
    wiring = wire(settings)
    model = model_from(settings, model_spec)
    truth = scenario.get("ground_truth") if scenario else None
    ctx = IncidentContext(
        question=question,
        requester="console",
        cluster=wiring.cluster_name,
        scenario_id=scenario["id"] if scenario else None,
        ground_truth=truth,
    )

    async def investigate_then_close() -> Outcome:
        try:
            return await run_console(
                ctx=ctx,
                wiring=wiring,
                model=model,
                limits=limits_from(settings),
                approvals=_approvals(settings, yes=yes, console=console),
                console=console,
            )
        finally:
            if model is not None:
                await model.aclose()  # ends the model's worker process

    try:
        return asyncio.run(investigate_then_close())
    finally:
        wiring.engine.dispose()


def investigate(
    question: Annotated[str, typer.Argument(help="What is wrong, in your words.")],
    cluster: Annotated[
        str | None, typer.Option(help="'lab' or a kubeconfig path (default: AOI_CLUSTER).")
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="Inject this lab scenario first (starts the lab if it is not up)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="'embedded', a GGUF path, an http(s) URL, or 'analyzers' (default: AOI_MODEL)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Approve restorations without asking; new values still need a person."
        ),
    ] = False,
) -> None:
    """Investigate an incident read-only; propose fixes and run them only when approved."""
    settings = load_settings()
    if cluster:
        settings = settings.model_copy(update={"cluster": cluster})
    console = Console(stderr=as_json)
    picked = None
    lab: LabClient | None = None
    if scenario:
        settings = settings.model_copy(update={"cluster": "lab"})
        lab, _ = ensure_lab(settings, console)
        picked = inject_scenario(lab, settings, scenario, console)
    outcome = _investigate(
        settings, question, model_spec=model, yes=yes, scenario=picked, console=console
    )
    result = outcome.to_json()
    if lab is not None and picked is not None:
        result["mitigated"] = verify(lab, picked, timeout_s=20.0)["mitigated"]
    if as_json:
        typer.echo(json.dumps(result))


def run(
    scenario: Annotated[
        str, typer.Option(help="The sample fault to investigate.")
    ] = SAMPLE_SCENARIO,
    model: Annotated[str | None, typer.Option(help="Model (default: AOI_MODEL).")] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Approve restorations without asking; new values still need a person."
        ),
    ] = False,
    keep_lab: Annotated[bool, typer.Option(help="Leave the lab running afterwards.")] = False,
    max_steps: Annotated[int, typer.Option(help="Observer steps for this demo run.")] = 4,
) -> None:
    """The main job: the Slack bot when Slack tokens are set, else the console demo.

    With AOI_SLACK_BOT_TOKEN set, the bot serves the configured cluster (the lab by
    default, started for it). Without, on embedded defaults: lab up, inject a fault,
    investigate, fix, verify, in the terminal.
    """
    configured = load_settings()
    if slack_configured(configured):
        _run_bot(configured, keep_lab=keep_lab, model=model)
        return
    settings = configured.model_copy(update={"cluster": "lab", "max_steps": max_steps})
    console = Console()
    console.print(
        "[bold]AOI ChatOps[/]: local incident investigation (no data leaves this machine)"
    )
    Path(settings.lab_state_dir).mkdir(parents=True, exist_ok=True)
    store_engine(settings).dispose()  # a store problem stops us before the lab starts
    lab, started = ensure_lab(settings, console)
    try:
        picked = inject_scenario(lab, settings, scenario, console)
        question = f"Users report errors in {picked['app']}: what is wrong?"
        outcome = _investigate(
            settings, question, model_spec=model, yes=yes, scenario=picked, console=console
        )
        executed = [p for p in outcome.proposals if p.get("state") == "DONE"]
        verdict = verify(lab, picked) if executed else lab.check({"resolved": picked})
        if verdict["mitigated"]:
            console.print(f"[green]fixed and verified[/]: {verdict['detail']}")
        else:
            why = (
                "no approved action ran"
                if not executed
                else "the action ran but the fault is still there"
            )
            console.print(f"[red]not fixed[/] ({why}): {verdict['detail']}")
        lab.recover()
    finally:
        if started and not keep_lab:
            lab.shutdown()
            console.print("lab stopped")
    console.print(f"[dim]{CONNECT_HELP}[/]")


def _run_bot(settings: Settings, *, keep_lab: bool, model: str | None) -> None:
    console = Console(stderr=True)
    store_engine(settings).dispose()  # a store problem stops us before the lab starts
    lab: LabClient | None = None
    started = False
    if settings.cluster == "lab" and settings.cluster_routes is None:
        Path(settings.lab_state_dir).mkdir(parents=True, exist_ok=True)
        lab, started = ensure_lab(settings, console)
    try:
        serve(settings, http_port=settings.bot_http_port, console=console, model_spec=model)
    finally:
        if lab is not None and started and not keep_lab:
            lab.shutdown()
            console.print("lab stopped")
