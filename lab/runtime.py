"""One running incident lab: control plane, nodes, apps, telemetry, faults.

``Lab`` owns the processes and the asyncio tasks of a lab and is what both the
``aoi lab up`` process and the test suite run. Everything a user (or an agent)
touches goes through real interfaces: the apiserver, the Prometheus and Jaeger
HTTP APIs, and the kubelet's log endpoint.

Recovering a fault is quick; its symptoms are not: they stay in the metric
windows, trace lookbacks and log tails the agents read for as long as those
reach back. ``recover`` therefore waits (outside the lock, so another app's
inject or recover goes on meanwhile) until the recovered app is ready and
healthy as the model sees it, then for ``settle_s`` more seconds of health,
and says whether it got there or gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from lab.apps import APPS
from lab.apps.manifests import render
from lab.apps.spec import AppSpec
from lab.cluster_view import ClusterReader, ClusterSnapshot
from lab.controlplane import ControlPlane
from lab.errors import LabError
from lab.faults import FAULTS, FaultContext, Verdict
from lab.faults.base import all_of
from lab.faults.inapp import clear_on_restart
from lab.identities import DEFAULT_RBAC_DIR, bind_executor, create_identities
from lab.k8s import ObjectStore, api_client
from lab.kubelet.images import ImageCatalog
from lab.kubelet.simulator import KubeletSimulator, World
from lab.scenarios.schema import FaultSpec, Scenario
from lab.system import system_objects
from lab.telemetry.model import AppModel, ServiceHealth
from lab.telemetry.server import TelemetryServer, start_telemetry_server
from lab.telemetry.state import AppFaults

log = logging.getLogger(__name__)
PERIODIC_S = 5.0
POLL_S = 0.5
# A service is healthy again when its error rate is within ERROR_SLACK of the fault-free
# baseline and its p99 within LATENCY_SLACK times the baseline's plus LATENCY_FLOOR_MS (a
# healthy tick's noise stays under 1.25 times; the analyzers flag 4 times the typical).
ERROR_SLACK = 0.01
LATENCY_SLACK = 1.5
LATENCY_FLOOR_MS = 5.0


@dataclass(frozen=True)
class LabEndpoints:
    """Where a running lab can be reached; written to the state file."""

    server: str
    admin_kubeconfig: str
    observer_kubeconfig: str
    executor_kubeconfig: str
    prometheus_url: str
    jaeger_url: str
    kubelet_port: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recovery:
    """What ``Lab.recover`` did: faults undone, seconds taken, and whether the lab went quiet."""

    recovered: int
    seconds: float
    quiet: bool
    """Ready and healthy (for ``settle_s`` when asked); False: it gave up at the bound."""
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ActiveFault:
    scenario_id: str
    app: str
    spec: FaultSpec
    decoy: bool = False


@dataclass
class Lab:
    """A lab rooted in ``state_dir``; binaries come from ``cache_dir``."""

    state_dir: Path
    cache_dir: Path
    rbac_dir: Path = DEFAULT_RBAC_DIR
    apps: Sequence[AppSpec] = field(default_factory=lambda: list(APPS.values()))
    seed: int = 0
    tick_s: float = 1.0
    api_port: int = 0
    telemetry_port: int = 0
    faults: AppFaults = field(default_factory=AppFaults)
    active: list[ActiveFault] = field(default_factory=list)
    endpoints: LabEndpoints | None = None
    _control: ControlPlane | None = None
    _api: client.ApiClient | None = None
    _kubelet: KubeletSimulator | None = None
    _model: AppModel | None = None
    _telemetry: TelemetryServer | None = None
    _reader: ClusterReader | None = None
    _snapshot: ClusterSnapshot = field(default_factory=ClusterSnapshot)
    _periodic: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _baseline: dict[tuple[str, str], ServiceHealth] = field(default_factory=dict)

    # -- start and stop --------------------------------------------------------------------

    async def start(self) -> LabEndpoints:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._control = ControlPlane(
            state_dir=self.state_dir, cache_dir=self.cache_dir, api_port=self.api_port
        )
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> LabEndpoints:
        assert self._control is not None
        await asyncio.to_thread(self._control.start)
        pki = self._control.pki
        assert pki is not None
        self._api = api_client(self._control.admin_kubeconfig)
        identities = await asyncio.to_thread(
            create_identities,
            api=self._api,
            server=self._control.server,
            ca_cert=pki.ca_cert,
            out_dir=self.state_dir,
            rbac_dir=self.rbac_dir,
        )
        images = ImageCatalog(self.apps)
        self._model = AppModel(list(self.apps), seed=self.seed)
        self._telemetry = await start_telemetry_server(self._model, port=self.telemetry_port)
        self._kubelet = KubeletSimulator(
            api=self._api,
            images=images,
            logs=self._model.logs,
            world=World(memory_need_mib=self._memory_need, on_container_start=self._on_start),
            cert=pki.kubelet_cert,
            key=pki.kubelet_key,
        )
        await self._kubelet.start()
        self._reader = ClusterReader(api=self._api, apps=self.apps, images=images)
        store = ObjectStore(self._api)
        await asyncio.to_thread(store.create_all, system_objects())
        for app in self.apps:
            await asyncio.to_thread(store.create_all, render(app))
        await asyncio.to_thread(
            bind_executor,
            self._api,
            [app.namespace for app in self.apps],
            rbac_dir=self.rbac_dir,
        )
        self._tasks = [
            asyncio.create_task(self._loop(self._observe, self.tick_s), name="lab-model"),
            asyncio.create_task(self._loop(self._run_periodic, PERIODIC_S), name="lab-chaos"),
        ]
        self.endpoints = LabEndpoints(
            server=self._control.server,
            admin_kubeconfig=str(self._control.admin_kubeconfig),
            observer_kubeconfig=str(identities.observer_kubeconfig),
            executor_kubeconfig=str(identities.executor_kubeconfig),
            prometheus_url=self._telemetry.prometheus_url,
            jaeger_url=self._telemetry.jaeger_url,
            kubelet_port=self._kubelet.port,
        )
        return self.endpoints

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._kubelet:
            await self._kubelet.stop()
        if self._telemetry:
            await self._telemetry.close()
        if self._api:
            self._api.close()
        if self._control:
            await asyncio.to_thread(self._control.stop)

    async def _loop(self, fn: Any, period: float) -> None:
        while True:
            try:
                await fn()
            except Exception:
                log.exception("lab: %s failed; continuing", getattr(fn, "__name__", fn))
            await asyncio.sleep(period)

    # -- the world the model sees ----------------------------------------------------------

    def _memory_need(self, namespace: str, service: str) -> float:
        for app in self.apps:
            if app.namespace == namespace and service in app.service_names:
                base = app.service(service).working_set_mib
                return base + self.faults.memory_leak_mib.get(service, 0.0)
        return 32.0

    def _on_start(self, namespace: str, service: str, pod: str) -> None:
        clear_on_restart(self.faults, service)

    def effective_faults(self) -> AppFaults:
        """Injected in-app state plus what cluster objects imply (neighbours, DNS, retries)."""
        merged = AppFaults(**{k: _copy(v) for k, v in vars(self.faults).items()})
        derived = self._snapshot.derived
        merged.dns_failure |= derived.dns_failure
        merged.retry_storm |= derived.retry_storm
        for svc, cpu in derived.cpu_stress_m.items():
            merged.cpu_stress_m[svc] = merged.cpu_stress_m.get(svc, 0) + cpu
        return merged

    async def _observe(self) -> None:
        assert self._reader is not None
        assert self._model is not None
        self._snapshot = await asyncio.to_thread(self._reader.snapshot)
        if self._control:
            self._control.check_alive()
        self._model.update(
            self._snapshot.runtimes,
            self.effective_faults(),
            flags=self._snapshot.flags,
            pods=self._snapshot.pods,
        )
        self._model.tick(time.time())

    async def _run_periodic(self) -> None:
        for action in list(self._periodic.values()):
            await asyncio.to_thread(action)

    # -- readiness and status --------------------------------------------------------------

    async def wait_ready(self, *, timeout_s: float = 60.0, app: str | None = None) -> float:
        """Wait until every Deployment of ``app`` (default: of every app), and kube-system's,
        is fully ready; returns the seconds waited."""
        started = time.monotonic()
        apps = self._apps(app)
        while True:
            pending = await asyncio.to_thread(self.unready, apps)
            if not pending:
                await self._observe()
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise LabError(f"apps not ready after {timeout_s:.0f}s: {', '.join(pending[:8])}")
            await asyncio.sleep(0.2)

    def _apps(self, app: str | None) -> list[AppSpec]:
        """The app named ``app`` (its name or namespace), or every app for None."""
        if app is None:
            return list(self.apps)
        found = [a for a in self.apps if app in (a.name, a.namespace)]
        if not found:
            names = ", ".join(a.name for a in self.apps)
            raise LabError(f"the lab runs no app named {app!r}; its apps: {names}")
        return found

    def unready(self, apps: Sequence[AppSpec] | None = None) -> list[str]:
        """Deployments whose rollout is not complete (kubectl rollout status's rule), in
        kube-system and ``apps`` (default: every app)."""
        assert self._api is not None
        apps_api = client.AppsV1Api(self._api)
        pending = []
        chosen = self.apps if apps is None else apps
        for namespace in ["kube-system", *(app.namespace for app in chosen)]:
            for dep in apps_api.list_namespaced_deployment(namespace).items:
                want = dep.spec.replicas or 0
                status = dep.status
                done = (
                    (status.observed_generation or 0) >= (dep.metadata.generation or 0)
                    and (status.updated_replicas or 0) >= want
                    and (status.ready_replicas or 0) >= want
                    and (status.replicas or 0) <= want
                )
                if want and not done:
                    pending.append(f"{namespace}/{dep.metadata.name}")
        return pending

    def status(self) -> dict[str, Any]:
        """Health per service (as the model sees it) and the active faults."""
        assert self._model is not None
        services = []
        for (ns, name), runtime in sorted(self._snapshot.runtimes.items()):
            health = self._model.health(ns, name)
            services.append(
                {
                    "namespace": ns,
                    "service": name,
                    "ready": f"{runtime.ready_replicas}/{runtime.desired_replicas}",
                    "endpoints": runtime.ready_endpoints,
                    "waiting": runtime.waiting_reason,
                    "rps": round(health.rps, 2),
                    "error_rate": round(health.error_rate, 4),
                    "p99_ms": round(health.p99_ms, 1),
                }
            )
        return {
            "endpoints": self.endpoints.to_dict() if self.endpoints else None,
            "active_faults": [
                {
                    "scenario": f.scenario_id,
                    "app": f.app,
                    "family": f.spec.family,
                    "target": f.spec.target,
                    "params": dict(f.spec.params),
                    "decoy": f.decoy,
                }
                for f in self.active
            ],
            "services": services,
        }

    # -- faults ----------------------------------------------------------------------------

    def _context(self, app_name: str) -> FaultContext:
        assert self._api is not None
        assert self._kubelet is not None
        app = next((a for a in self.apps if a.name == app_name), None)
        if app is None:
            raise LabError(f"the lab runs no app named {app_name!r}")
        return FaultContext(
            api=self._api,
            app=app,
            baseline=render(app),
            faults=self.faults,
            kubelet=self._kubelet,
            images=self._kubelet.images,
            periodic=self._periodic,
        )

    async def inject(self, scenario: Scenario) -> None:
        """Inject a scenario's faults and decoys (they compose with what is active)."""
        async with self._lock:
            ctx = self._context(scenario.app)
            for spec, decoy in _specs(scenario):
                fault = FAULTS.get(spec.family)
                if fault is None:
                    raise LabError(f"unknown fault family {spec.family!r}")
                await asyncio.to_thread(fault.inject, ctx, spec.target or "", spec.params)
                self.active.append(ActiveFault(scenario.id, scenario.app, spec, decoy))
            await self._observe()

    async def recover(
        self, *, app: str | None = None, settle_s: float = 0.0, timeout_s: float = 120.0
    ) -> Recovery:
        """Undo the active faults of ``app`` (default: of every app), newest first, then wait.

        The wait, bounded by ``timeout_s`` from the call: the app's Deployments ready; with
        ``settle_s`` > 0 also every service of the app healthy (error rate and p99 back to
        the fault-free baseline) and then healthy for ``settle_s`` seconds more, so the
        symptoms have left windows that long. It runs outside the lock: faults of other
        apps can be injected and recovered meanwhile. Never raises for a lab that does not
        go quiet; ``quiet`` says it and ``detail`` names what is still wrong.
        """
        started = time.monotonic()
        apps = self._apps(app)
        names = {a.name for a in apps}
        async with self._lock:
            mine = [f for f in self.active if f.app in names]
            for active in reversed(mine):
                ctx = self._context(active.app)
                fault = FAULTS[active.spec.family]
                await asyncio.to_thread(
                    fault.recover, ctx, active.spec.target or "", active.spec.params
                )
            self.active = [f for f in self.active if f.app not in names]
            namespaces = {a.namespace for a in apps}
            for key in list(self._periodic):
                # Keys are "<kind>:<namespace>/<target>": only the recovered apps' go.
                if app is None or key.split(":", 1)[-1].split("/", 1)[0] in namespaces:
                    del self._periodic[key]
            await self._observe()
        quiet, detail = await self._wait_quiet(apps, settle_s, started + timeout_s)
        return Recovery(len(mine), time.monotonic() - started, quiet, detail)

    async def _wait_quiet(
        self, apps: Sequence[AppSpec], settle_s: float, deadline: float
    ) -> tuple[bool, str]:
        which = apps[0].name if len(apps) == 1 else "every app"
        try:
            await self.wait_ready(
                timeout_s=max(deadline - time.monotonic(), 0.0),
                app=apps[0].name if len(apps) == 1 else None,
            )
        except LabError as exc:
            return False, str(exc)
        if settle_s <= 0:
            return True, f"{which} ready (no wait for the symptoms to leave the windows)"
        healthy_since: float | None = None
        sick: list[str] = []
        while True:
            now = time.monotonic()
            sick = self.unhealthy(apps)
            if sick:
                healthy_since = None
            elif healthy_since is None:
                healthy_since = now
            if healthy_since is not None and now - healthy_since >= settle_s:
                return True, f"{which} healthy for {settle_s:.0f}s"
            if now >= deadline:
                break
            await asyncio.sleep(min(POLL_S, max(deadline - now, 0.0)))
        if sick:
            more = f" and {len(sick) - 5} more" if len(sick) > 5 else ""
            return False, f"still unhealthy: {'; '.join(sick[:5])}{more}"
        held = time.monotonic() - (healthy_since or time.monotonic())
        return False, f"healthy for only {held:.0f}s of the {settle_s:.0f}s asked"

    def unhealthy(self, apps: Sequence[AppSpec] | None = None) -> list[str]:
        """Services of ``apps`` (default: every app) not serving, or whose error rate or p99
        is off the fault-free baseline, as the model sees them now; each with why."""
        assert self._model is not None
        chosen = self.apps if apps is None else apps
        found = []
        for app in chosen:
            for spec in app.services:
                key = (app.namespace, spec.name)
                runtime = self._snapshot.runtimes.get(key)
                if runtime is not None and runtime.ready_replicas < runtime.desired_replicas:
                    ready = f"{runtime.ready_replicas}/{runtime.desired_replicas}"
                    found.append(f"{app.namespace}/{spec.name} ({ready} ready)")
                    continue
                now, base = self._model.health(*key), self._healthy(key)
                if now.error_rate > base.error_rate + ERROR_SLACK:
                    why = f"{100 * now.error_rate:.0f}% errors"
                elif now.p99_ms > LATENCY_SLACK * base.p99_ms + LATENCY_FLOOR_MS:
                    why = f"p99 {now.p99_ms:.0f} ms, baseline {base.p99_ms:.0f} ms"
                else:
                    continue
                found.append(f"{app.namespace}/{spec.name} ({why})")
        return found

    def _healthy(self, key: tuple[str, str]) -> ServiceHealth:
        """The service's health in a fault-free world (the same model, nothing injected)."""
        if not self._baseline:
            clean = AppModel(list(self.apps), seed=self.seed)
            clean.update({}, AppFaults())
            self._baseline = {
                (a.namespace, s.name): clean.health(a.namespace, s.name)
                for a in self.apps
                for s in a.services
            }
        return self._baseline[key]

    async def check(self, scenario: Scenario) -> Verdict:
        """The scenario's mitigation check against live state."""
        ctx = self._context(scenario.app)
        verdicts = []
        for spec, decoy in _specs(scenario):
            if decoy:
                continue
            fault = FAULTS[spec.family]
            verdicts.append(
                await asyncio.to_thread(fault.check, ctx, spec.target or "", spec.params)
            )
        return all_of(*verdicts)

    @property
    def kubelet(self) -> KubeletSimulator:
        assert self._kubelet is not None
        return self._kubelet

    @property
    def api(self) -> client.ApiClient:
        assert self._api is not None
        return self._api

    @property
    def model(self) -> AppModel:
        assert self._model is not None
        return self._model


def _specs(scenario: Scenario) -> Iterable[tuple[FaultSpec, bool]]:
    for spec in scenario.faults:
        yield spec, False
    for spec in scenario.decoys:
        yield spec, True


def _copy(value: Any) -> Any:
    if isinstance(value, (set, dict, list)):
        return type(value)(value)
    return value
