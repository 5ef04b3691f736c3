"""Turn settings into the explicit objects the packages take (the only place that does).

Every other package takes a URL, a client or a path; this module reads the one
settings object and builds them: the store's engine, the cluster access of the
read-only observer, the separate executor identity, and the model backend.

Which model is served (`served_model`): a `--model` option, else AOI_MODEL when it
is set (in the environment or .env), else the version `aoi models use` activated
in the store, else the embedded model. `version:NAME` (or `version:ID`) names a
registered version; its file is checked against its registration first, so the
agents only ever get a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from kubernetes import client
from sqlalchemy.engine import Engine

from agents.llm import ChatModel, make_model
from agents.runtime import ClusterAccess, Limits
from agents.tools.identity import UnsafeObserver, require_read_only
from aoi.approvals import action_rules
from aoi.settings import Settings
from lab.client import LabClient
from lab.errors import LabError
from lab.k8s import api_client
from store import migrate, model_versions
from store.db import make_engine, mask_url, parse_url, sqlite_path
from store.models import ModelVersion


@dataclass
class Wiring:
    engine: Engine
    cluster: ClusterAccess
    executor_api: client.ApiClient | None
    cluster_name: str


def lab_state_dir(settings: Settings) -> Path:
    return settings.lab_state_dir.resolve()


def cluster_access(settings: Settings) -> tuple[ClusterAccess, client.ApiClient | None, str]:
    """The observer's view of the cluster, and the executor identity (if one is configured)."""
    if settings.cluster == "lab":
        lab = LabClient.connect(lab_state_dir(settings))
        ends = lab.state.endpoints
        observer = api_client(Path(ends["observer_kubeconfig"]))
        executor = api_client(Path(ends["executor_kubeconfig"]))
        return (
            ClusterAccess(
                api=observer, prometheus_url=ends["prometheus_url"], jaeger_url=ends["jaeger_url"]
            ),
            executor,
            "lab",
        )
    path = Path(settings.cluster).expanduser()
    if not path.is_file():
        raise LabError(
            f"AOI_CLUSTER={settings.cluster}: no such kubeconfig file; give the "
            "observer identity's kubeconfig path, or 'lab'."
        )
    executor = (
        api_client(settings.executor_kubeconfig.expanduser())
        if settings.executor_kubeconfig
        else None
    )
    return (
        ClusterAccess(
            api=api_client(path),
            prometheus_url=settings.prometheus_url or None,
            jaeger_url=settings.jaeger_url or None,
        ),
        executor,
        str(path),
    )


_VERIFIED_OBSERVERS: set[str] = set()


def check_observer(api: client.ApiClient, source: str, *, allow_writable: bool) -> None:
    """The start-up check: the API server is asked what the observer may do (once per process)."""
    if source in _VERIFIED_OBSERVERS:
        return
    try:
        require_read_only(api, source=source, allow_writable=allow_writable)
    except UnsafeObserver:
        raise
    except Exception as exc:
        raise LabError(
            f"cannot ask the cluster of {source} what the observer identity may do: "
            f"{' '.join(str(exc).split())[:300]}; check that the cluster is reachable"
        ) from None
    _VERIFIED_OBSERVERS.add(source)


def store_engine(settings: Settings) -> Engine:
    """The store's engine with its schema ready (a SQLite file prepares itself on first use)."""
    engine = make_engine(settings.database_url)
    try:
        migrate.prepare(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def wire(settings: Settings) -> Wiring:
    cluster, executor, name = cluster_access(settings)
    check_observer(cluster.api, name, allow_writable=settings.allow_writable_observer)
    return Wiring(
        engine=store_engine(settings),
        cluster=cluster,
        executor_api=executor,
        cluster_name=name,
    )


@dataclass(frozen=True)
class ServedModel:
    """The model a command serves: the spec `make_model` takes, why, and the version behind it.

    ``source``: "--model" (a command's option), "AOI_MODEL" (set explicitly), "active"
    (`aoi models use`) or "default" (AOI_MODEL left at its default, nothing active).
    """

    spec: str
    source: str
    version: ModelVersion | None = None

    def describe(self) -> str:
        """One phrase for people: which version is served and why; '' when none is."""
        if self.version is None:
            return ""
        why = "activated with `aoi models use`" if self.source == "active" else self.source
        return f"version {self.version.name} (#{self.version.id}, {why})"


def served_model(settings: Settings, override: str | None = None) -> ServedModel:
    """Which model to serve: `override`, else an explicit AOI_MODEL, else the active version.

    A version's file is verified (size and sha256) before it is returned: a missing
    or changed one raises `store.model_versions.ModelFileRefused` saying what to do.
    Looking up the active version creates nothing: a SQLite file that does not exist
    yet, or a store from before model versions, has none active.
    """
    if override:
        return _explicit(settings, override, source="--model")
    if "model" in settings.model_fields_set:
        return _explicit(settings, settings.model, source="AOI_MODEL")
    engine = _registry(settings)
    if engine is None:
        return ServedModel(spec=settings.model, source="default")
    try:
        version = model_versions.active_version(engine)
    finally:
        engine.dispose()
    if version is None:
        return ServedModel(spec=settings.model, source="default")
    path = model_versions.verified_path(version)
    return ServedModel(spec=str(path), source="active", version=version)


def _explicit(settings: Settings, spec: str, *, source: str) -> ServedModel:
    if not spec.strip().startswith(model_versions.VERSION_PREFIX):
        return ServedModel(spec=spec, source=source)
    engine = _registry(settings)
    if engine is None:
        raise model_versions.ModelVersionNotFound(
            f"{source}={spec}: the store at {mask_url(settings.database_url)} has no model "
            "versions yet; register one (`aoi train export`) or choose another model"
        )
    try:
        version = model_versions.get_version(engine, spec)
    finally:
        engine.dispose()
    path = model_versions.verified_path(version)
    return ServedModel(spec=str(path), source=source, version=version)


def _registry(settings: Settings) -> Engine | None:
    """An engine on a store that can hold model versions; None when it cannot yet."""
    url = parse_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None and not path.exists():
            return None
    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table("model_activations"):
            engine.dispose()
            return None
    except BaseException:
        engine.dispose()
        raise
    return engine


def model_from(settings: Settings, override: str | None = None) -> ChatModel | None:
    """The model backend to serve (see `served_model`); None for the analyzers alone."""
    return build_model(settings, served_model(settings, override))


def build_model(settings: Settings, served: ServedModel) -> ChatModel | None:
    """The backend for an already resolved `served` model, with the settings' limits."""
    return make_model(
        served.spec,
        threads=settings.model_threads,
        timeout_s=settings.model_timeout_s,
        api_key=settings.model_api_key.get_secret_value() or None,
        model_name=settings.model_name,
    )


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_steps=settings.max_steps,
        probe_calls=settings.probe_calls_per_step,
        proposal_ttl_s=settings.proposal_ttl_s,
        rules=action_rules(settings),
    )
