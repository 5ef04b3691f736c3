"""`aoi bot`: the Slack bot, over Socket Mode (default) or HTTP events (`--http PORT`).

Builds the bot's configuration from settings: the incident channels, the
clusters it serves (``AOI_CLUSTER``, or several through ``AOI_CLUSTER_ROUTES``),
the approval policy and action rules every front end shares, the model (one
supervised worker shared by all incidents) and the Slack client with its retry
handlers. The routes file is YAML::

    - name: prod
      channels: "^inc-prod-"          # regular expression on channel names
      channel_ids: [C0123ABC]         # and/or channel ids
      cluster: ~/.kube/aoi-observer-prod.yaml   # or "lab"
      executor_kubeconfig: ~/.kube/aoi-executor-prod.yaml
      prometheus_url: http://prometheus.prod:9090
      jaeger_url: http://jaeger.prod:16686
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console

from agents.llm import ChatModel
from aoi.approvals import action_rules, approval_policy
from aoi.errors import SettingProblem, SettingsError
from aoi.settings import Settings, load_settings
from aoi.wiring import check_observer, cluster_access, limits_from, model_from, store_engine
from bot.app import AoiBot
from bot.config import BotConfig, ClusterRoute, channel_ids
from bot.logs import configure
from bot.metrics import BotMetrics
from bot.server import Serving, run_until_signalled, serve_http, serve_socket_mode
from bot.slack_api import make_client

BOT_THREADS = 64
CONNECT_HELP = (
    "Slack is not connected: put AOI_SLACK_BOT_TOKEN (xoxb-...) and AOI_SLACK_APP_TOKEN "
    "(xapp-..., Socket Mode) in .env, or AOI_SLACK_SIGNING_SECRET with --http PORT. "
    "manifests/slack-app.yaml creates the app in one paste; the README walks through it."
)


class RouteFile(BaseModel):
    """One entry of AOI_CLUSTER_ROUTES."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    channels: str | None = None
    channel_ids: list[str] = Field(default_factory=list)
    cluster: str = "lab"
    executor_kubeconfig: Path | None = None
    prometheus_url: str = ""
    jaeger_url: str = ""

    @field_validator("channels")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value


def load_routes(path: Path) -> list[RouteFile]:
    """The routes file, or SettingsError naming the file and the entry that is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(
            [SettingProblem(name="AOI_CLUSTER_ROUTES", message=_line(exc), source=str(path))]
        ) from None
    if not isinstance(data, list) or not data:
        raise SettingsError(
            [
                SettingProblem(
                    name="AOI_CLUSTER_ROUTES",
                    message="expected a non-empty YAML list of routes",
                    source=str(path),
                )
            ]
        )
    routes: list[RouteFile] = []
    for index, entry in enumerate(data):
        try:
            routes.append(RouteFile.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise SettingsError(
                [
                    SettingProblem(
                        name="AOI_CLUSTER_ROUTES",
                        message=f"route {index + 1}, {where}: {first['msg']}",
                        source=str(path),
                    )
                ]
            ) from None
    return routes


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def cluster_routes(settings: Settings) -> tuple[ClusterRoute, ...]:
    """The clusters this bot serves, each with its observer checked read-only."""
    entries = (
        load_routes(settings.cluster_routes)
        if settings.cluster_routes
        else [RouteFile(name=settings.cluster if settings.cluster == "lab" else "default")]
    )
    routes = []
    for entry in entries:
        scoped = settings
        if settings.cluster_routes:
            scoped = settings.model_copy(
                update={
                    "cluster": entry.cluster,
                    "executor_kubeconfig": entry.executor_kubeconfig,
                    "prometheus_url": entry.prometheus_url,
                    "jaeger_url": entry.jaeger_url,
                }
            )
        access, executor, source = cluster_access(scoped)
        check_observer(access.api, source, allow_writable=settings.allow_writable_observer)
        routes.append(
            ClusterRoute(
                name=entry.name if settings.cluster_routes else source,
                access=access,
                executor_api=executor,
                channels=re.compile(entry.channels) if entry.channels else None,
                channel_ids=channel_ids(entry.channel_ids),
            )
        )
    return tuple(routes)


def bot_config(settings: Settings, routes: tuple[ClusterRoute, ...]) -> BotConfig:
    return BotConfig(
        routes=routes,
        policy=approval_policy(settings),
        rules=action_rules(settings),
        limits=limits_from(settings),
        incident_channels=re.compile(settings.incident_channel_pattern),
        incident_channel_ids=channel_ids(settings.incident_channels),
        grace_s=settings.bot_grace_s,
        max_investigations=settings.bot_max_investigations,
    )


def slack_configured(settings: Settings) -> bool:
    return bool(settings.slack_bot_token.get_secret_value())


def _mode_problems(settings: Settings, http_port: int | None) -> list[SettingProblem]:
    if not slack_configured(settings):
        return [SettingProblem(name="AOI_SLACK_BOT_TOKEN", message=CONNECT_HELP, source="default")]
    problems = []
    if http_port is None and not settings.slack_app_token.get_secret_value():
        problems.append(
            SettingProblem(
                name="AOI_SLACK_APP_TOKEN",
                message="Socket Mode needs the app-level token (xapp-...); or use --http PORT",
                source="default",
            )
        )
    if http_port is not None and not settings.slack_signing_secret.get_secret_value():
        problems.append(
            SettingProblem(
                name="AOI_SLACK_SIGNING_SECRET",
                message="HTTP events mode needs the signing secret to verify requests",
                source="default",
            )
        )
    return problems


def serve(
    settings: Settings,
    *,
    http_port: int | None,
    console: Console,
    model_spec: str | None = None,
) -> list[int]:
    """Run the bot until SIGTERM/SIGINT; returns the incidents the shutdown interrupted."""
    problems = _mode_problems(settings, http_port)
    if problems:
        raise SettingsError(problems)
    configure(settings.log_level)
    routes = cluster_routes(settings)
    engine = store_engine(settings)
    model = model_from(settings, model_spec)

    async def main() -> list[int]:
        # Store, Kubernetes and log reads of twenty concurrent incidents run in threads;
        # the default pool (cores + 4) would queue store writes behind slow log reads.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=BOT_THREADS, thread_name_prefix="aoi-io")
        )
        metrics = BotMetrics()
        client = make_client(
            settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            metrics=metrics,
        )
        bot = AoiBot(
            bot_config(settings, routes),
            engine=engine,
            client=client,
            model=model,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            metrics=metrics,
        )

        async def start() -> Serving:
            if http_port is not None:
                return await serve_http(bot, host=settings.bot_host, port=http_port)
            return await serve_socket_mode(
                bot,
                app_token=settings.slack_app_token.get_secret_value(),
                health_host=settings.bot_host,
                health_port=settings.bot_health_port,
            )

        def ready(serving: Serving) -> None:
            mode = f"HTTP on port {serving.port}" if http_port else "Socket Mode"
            console.print(
                f"[bold]AOI ChatOps bot[/] connected ({mode}); serving "
                f"{', '.join(r.name for r in routes)}. Mention @aoi in an incident channel. "
                "Ctrl-C stops it."
            )

        try:
            return await run_until_signalled(bot, start, on_ready=ready)
        finally:
            await _close_model(model)

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()


async def _close_model(model: ChatModel | None) -> None:
    if model is not None:
        await model.aclose()


def bot(
    http: Annotated[
        int | None,
        typer.Option(
            "--http",
            help="Serve Slack events over HTTP on this port (default: AOI_BOT_HTTP_PORT, "
            "else Socket Mode).",
            min=1,
            max=65535,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="'embedded', a GGUF path, an http(s) URL or 'analyzers'."),
    ] = None,
) -> None:
    """Start only the Slack bot (Socket Mode by default; --http PORT for HTTP events)."""
    settings = load_settings()
    console = Console(stderr=True)
    interrupted = serve(
        settings, http_port=http or settings.bot_http_port, console=console, model_spec=model
    )
    if interrupted:
        console.print(f"interrupted incidents: {', '.join(f'#{i}' for i in interrupted)}")


def describe_routes(settings: Settings) -> list[dict[str, Any]]:
    """For `aoi doctor`: the routes file's entries as plain data."""
    if settings.cluster_routes is None:
        return []
    return [r.model_dump(mode="json") for r in load_routes(settings.cluster_routes)]
