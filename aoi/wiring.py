"""Turn settings into the explicit objects the packages take (the only place that does).

Every other package takes a URL, a client or a path; this module reads the one
settings object and builds them: the store's engine, the cluster access of the
read-only observer, the separate executor identity, and the model backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
from store import migrate
from store.db import make_engine


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


def model_from(settings: Settings, override: str | None = None) -> ChatModel | None:
    return make_model(
        override or settings.model,
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
