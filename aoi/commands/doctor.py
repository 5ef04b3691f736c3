"""`aoi doctor`: check every part a user configured, one line each, before it matters at 3 a.m.

Each check says what it found, and when something is wrong, what to do about it.
The model is loaded and asked for a few tokens in its supervised worker process,
so a build that crashes on this CPU is reported here instead of killing us. The
cluster check asks the API server what the observer identity may do: one that
can write, exec or read Secrets is reported as unsafe. `make run` runs this
first and stops when an essential part fails.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from agents.llm import Message, ModelError, SupervisedModel
from agents.tools.identity import UnsafeObserver, require_read_only
from aoi.settings import Settings, load_settings
from aoi.wiring import ServedModel, build_model, lab_state_dir, served_model
from lab.client import LabClient
from lab.controlplane import find_binaries
from lab.errors import LabError, LabNotRunningError
from lab.k8s import api_client
from store import migrate
from store.db import make_engine, mask_url, parse_url, sqlite_path
from store.errors import StoreError

HTTP_TIMEOUT_S = 5.0
MODEL_TIMEOUT_S = 60.0
EXIT_UNHEALTHY = 1


@dataclass(frozen=True)
class Check:
    """One part's verdict: `ok`, and a line saying what was found or what to do."""

    part: str
    ok: bool
    detail: str
    essential: bool = True


def check_database(settings: Settings) -> Check:
    where = mask_url(settings.database_url)
    try:
        url = parse_url(settings.database_url)
    except StoreError as exc:
        return Check("database", False, str(exc))
    path = sqlite_path(url) if url.get_backend_name() == "sqlite" else None
    if path is not None and not path.exists() and url.query.get("mode") != "ro":
        return Check("database", True, f"{where} is created on first use")
    try:
        engine = make_engine(url)
    except StoreError as exc:
        return Check("database", False, str(exc))
    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision()
        if current == head:
            return Check("database", True, f"{where} is at revision {head}")
        if migrate.prepares_itself(engine):
            state = "is created" if current is None else f"is migrated from {current}"
            return Check("database", True, f"{where} {state} to {head} on first use")
        migrate.prepare(engine)  # raises the one-line SchemaMissing with what to run
        return Check("database", True, f"{where} is at revision {head}")
    except StoreError as exc:
        return Check("database", False, " ".join(str(exc).split()))
    finally:
        engine.dispose()


def check_model(settings: Settings) -> Check:
    try:
        served = served_model(settings)
    except StoreError as exc:  # a version's file changed, or the store holding it is down
        return Check("model", False, " ".join(str(exc).split()))
    if served.spec == "analyzers":
        return Check("model", True, "none configured: the analyzers answer alone (AOI_MODEL)")
    try:
        return asyncio.run(_probe_model(settings, served))
    except ModelError as exc:
        return Check("model", False, f"{exc}")


async def _probe_model(settings: Settings, served: ServedModel) -> Check:
    model = build_model(settings, served)
    assert model is not None
    try:
        started = time.perf_counter()
        prompt: list[Message] = [{"role": "user", "content": "Reply with the word OK."}]
        completion = await model.complete(prompt, max_tokens=8, timeout_s=MODEL_TIMEOUT_S)
        seconds = time.perf_counter() - started
        serves = served.describe()
        detail = (
            (f"serves {serves}: " if serves else "")
            + f"{model.name} answered {completion.tokens_out} tokens in {seconds:.1f} s "
            f"({completion.tokens_out / max(completion.latency_s, 1e-6):.0f} tokens/s)"
        )
        if isinstance(model, SupervisedModel) and model.info is not None:
            features = ",".join(model.info.cpu_features) or "baseline"
            detail += f" in a worker process; CPU features {features}"
        return Check("model", True, detail)
    finally:
        await model.aclose()


def check_cluster(settings: Settings) -> list[Check]:
    """The cluster and, through it, the telemetry the agents read."""
    if settings.cluster == "lab":
        return _check_lab(settings)
    path = Path(settings.cluster).expanduser()
    if not path.is_file():
        return [Check("cluster", False, f"AOI_CLUSTER={path}: no such kubeconfig file")]
    checks = [_check_observer(path)]
    checks += _check_telemetry(settings.prometheus_url, settings.jaeger_url)
    return checks


def _check_lab(settings: Settings) -> list[Check]:
    try:
        lab = LabClient.connect(lab_state_dir(settings))
    except LabNotRunningError:
        try:
            binaries = find_binaries(settings.cache_dir)
        except LabError as exc:
            return [Check("cluster", False, " ".join(str(exc).split()))]
        folder = Path(next(iter(binaries.values()))).parent
        return [
            Check(
                "cluster",
                True,
                f"the lab is not running; its control plane is built in {folder} "
                "(`aoi run` or `aoi lab up --detach` starts it)",
            )
        ]
    ends = lab.state.endpoints
    checks = [_check_observer(Path(ends["observer_kubeconfig"]), label="lab")]
    checks += _check_telemetry(ends.get("prometheus_url", ""), ends.get("jaeger_url", ""))
    return checks


def _check_observer(kubeconfig: Path, *, label: str | None = None) -> Check:
    name = label or str(kubeconfig)
    try:
        api = api_client(kubeconfig)
        require_read_only(api, source=name)
    except UnsafeObserver as exc:
        return Check("cluster", False, str(exc))
    except Exception as exc:  # a kubeconfig or a connection failure, both worth one line
        return Check(
            "cluster",
            False,
            f"cannot reach the cluster of {name}: {_first_line(exc)}; check the server URL, "
            "credentials and network in that kubeconfig",
        )
    return Check("cluster", True, f"{name} answers; the observer identity is read-only")


def _check_telemetry(prometheus_url: str, jaeger_url: str) -> list[Check]:
    return [
        _check_http("prometheus", prometheus_url, "/api/v1/status/buildinfo", "AOI_PROMETHEUS_URL"),
        _check_http("jaeger", jaeger_url, "/api/services", "AOI_JAEGER_URL"),
    ]


def _check_http(part: str, base: str, path: str, setting: str) -> Check:
    if not base:
        return Check(part, True, f"not configured ({setting}): investigations skip it", False)
    url = base.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return Check(part, False, f"{url} answered HTTP {exc.code}; check {setting}", False)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check(part, False, f"{url} unreachable ({_first_line(exc)}); check {setting}", False)
    return Check(part, True, f"{base} answers", False)


def check_slack(settings: Settings) -> Check:
    token = settings.slack_bot_token.get_secret_value()
    if not token:
        return Check(
            "slack",
            True,
            "not configured: the console only; set AOI_SLACK_BOT_TOKEN (README: Slack)",
            False,
        )
    web = WebClient(token=token, base_url=settings.slack_api_url, timeout=int(HTTP_TIMEOUT_S))
    try:
        who = web.auth_test()
    except SlackApiError as exc:
        reason = exc.response.get("error", "error")
        return Check(
            "slack", False, f"auth.test refused the bot token ({reason}); reinstall the app"
        )
    except (SlackClientError, OSError) as exc:
        return Check("slack", False, f"cannot reach {settings.slack_api_url}: {_first_line(exc)}")
    if settings.slack_app_token.get_secret_value():
        mode = "Socket Mode (app token present)"
    elif settings.slack_signing_secret.get_secret_value():
        mode = "HTTP events (signing secret present)"
    else:
        return Check(
            "slack",
            False,
            "no AOI_SLACK_APP_TOKEN (Socket Mode) nor AOI_SLACK_SIGNING_SECRET (HTTP events)",
        )
    return Check(
        "slack", True, f"bot {who.get('user', '?')} in team {who.get('team', '?')}; {mode}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


CHECKS: tuple[Callable[[Settings], Check | list[Check]], ...] = (
    check_database,
    check_model,
    check_cluster,
    check_slack,
)


def run_checks(settings: Settings) -> list[Check]:
    results: list[Check] = []
    for check in CHECKS:
        found = check(settings)
        results += found if isinstance(found, list) else [found]
    return results


def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: {ok, checks: [...]}.")
    ] = False,
) -> None:
    """Check the database, the model, the cluster, telemetry and Slack; say how to fix each."""
    settings = load_settings()
    checks = run_checks(settings)
    healthy = all(c.ok for c in checks if c.essential)
    if as_json:
        payload: dict[str, Any] = {"ok": healthy, "checks": [asdict(c) for c in checks]}
        typer.echo(json.dumps(payload))
    else:
        console = Console(highlight=False, soft_wrap=True)
        for c in checks:
            mark = (
                "[green]ok  [/]" if c.ok else ("[red]FAIL[/]" if c.essential else "[yellow]warn[/]")
            )
            console.print(f"{mark} {c.part:<10} {escape(c.detail)}")
    if not healthy:
        raise typer.Exit(EXIT_UNHEALTHY)
