"""The simulated container lifecycle: what a kubelet would report for one container.

Pure logic, no API calls: given the pod spec, the image catalogue, the node's
view of memory and the faults injected at the node level, it advances one
container's state machine and returns the ``containerStatus`` a real kubelet
would write, plus the events it would emit. Time is compressed (back-off grows
1, 2, 4 … 16 s instead of 10 s … 5 min) so restart counts grow within a test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lab.kubelet.images import ImageCatalog, Launch

CREATE_DELAY_S = 0.3
PULL_ERROR_S = 2.0
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 16.0
CRASH_RUN_S = 0.6
OOM_RUN_S = 1.5
LIVENESS_RUN_S = 3.0

_MEMORY_UNITS = {
    "Ki": 1 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "K": 1 / 1048.576,
    "M": 1 / 1.048576,
    "G": 1000 / 1.048576,
}
_HOSTPORT = re.compile(r"(?:^|//|@)([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d{2,5})\b")
_ADDRESS_ENV = re.compile(r"(_ADDR|_HOST|_URL|_URI|_ADDRESS|_ENDPOINT|_SERVER)S?$")
_PLAIN_ADDRESS_ENV = re.compile(r"(_ADDR|_ADDRESS)$")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_memory_mib(quantity: str | None) -> float | None:
    if not quantity:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", quantity.strip())
    if not match:
        return None
    value = float(match.group(1))
    unit = match.group(2)
    return value * _MEMORY_UNITS[unit] if unit else value / 1048576


@dataclass
class Event:
    reason: str
    message: str
    type: str = "Normal"


@dataclass
class NodeView:
    """What the node knows beyond the pod spec when it runs a container."""

    memory_need_mib: float
    """The process's working set right now (the app model's figure, leaks included)."""
    service_ports: Mapping[str, frozenset[int]]
    """Services of the pod's namespace and their ports, for checking address settings."""
    config_maps: Mapping[str, Mapping[str, str]]
    """ConfigMaps of the pod's namespace."""
    failing: bool = False
    """A node-level fault keeps this pod's containers failing (chaos pod-failure)."""


@dataclass
class ContainerSim:
    first_seen: float
    restarts: int = 0
    started_at: float | None = None
    backoff_until: float | None = None
    last_term: dict[str, Any] | None = None
    kill_requested: bool = False
    events: list[Event] = field(default_factory=list)
    _emitted: set[str] = field(default_factory=set)

    def emit_once(self, key: str, event: Event) -> None:
        if key not in self._emitted:
            self._emitted.add(key)
            self.events.append(event)

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def _backoff(restarts: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(restarts - 1, 0), BACKOFF_MAX_S))


def _probe_port(probe: Mapping[str, Any] | None, container: Mapping[str, Any]) -> int | None:
    if not probe:
        return None
    handler = probe.get("tcpSocket") or probe.get("httpGet") or probe.get("grpc")
    if not handler:
        return None
    port = handler.get("port")
    if isinstance(port, int):
        return port
    for cport in container.get("ports") or []:
        if cport.get("name") == port:
            return int(cport["containerPort"])
    return -1


def _config_error(container: Mapping[str, Any], view: NodeView) -> str | None:
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref and not ref.get("optional") and ref["name"] not in view.config_maps:
            return f'configmap "{ref["name"]}" not found'
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
        if not ref or ref.get("optional"):
            continue
        data = view.config_maps.get(ref["name"])
        if data is None:
            return f'configmap "{ref["name"]}" not found'
        if ref["key"] not in data:
            return f"couldn't find key {ref['key']} in ConfigMap {ref['name']}"
    return None


def _resolved_env(container: Mapping[str, Any], view: NodeView) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            env.update(view.config_maps.get(ref["name"], {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            env[item["name"]] = view.config_maps.get(ref["name"], {}).get(ref["key"], "")
    return env


def _address_error(env: Mapping[str, str], view: NodeView) -> str | None:
    """A setting that points at a known Service on a port it does not serve, or that is not
    an address at all, fails the process at start, as a real client's dial would."""
    for name, value in env.items():
        if not _ADDRESS_ENV.search(name):
            continue
        matches = list(_HOSTPORT.finditer(value))
        if not matches and _PLAIN_ADDRESS_ENV.search(name):
            return f"fatal: {name}={value!r}: address {value}: missing port in address"
        for match in matches:
            host, port = match.group(1), int(match.group(3))
            expected = view.service_ports.get(host)
            if expected is not None and port not in expected:
                return (
                    f"fatal: cannot connect to {host}:{port} ({name}): "
                    f"dial tcp {host}:{port}: connect: connection refused"
                )
    return None


def _failure(
    container: Mapping[str, Any], launch: Launch, view: NodeView
) -> tuple[str, str, int, float] | None:
    """Why a started process dies: (reason, message, exit code, seconds it runs first)."""
    if view.failing:
        return ("Error", "container failed (injected pod failure)", 1, CRASH_RUN_S)
    if launch.error:
        return ("Error", launch.error, launch.exit_code or 1, CRASH_RUN_S)
    bad_address = _address_error(_resolved_env(container, view), view)
    if bad_address:
        return ("Error", bad_address, 1, CRASH_RUN_S)
    limit = parse_memory_mib(((container.get("resources") or {}).get("limits") or {}).get("memory"))
    if limit is not None and view.memory_need_mib > limit:
        return ("OOMKilled", "", 137, OOM_RUN_S)
    liveness = _probe_port(container.get("livenessProbe"), container)
    if liveness is not None and liveness != launch.listen_port:
        return ("Error", f"liveness probe failed on port {liveness}", 137, LIVENESS_RUN_S)
    return None


def step(
    sim: ContainerSim,
    container: Mapping[str, Any],
    *,
    images: ImageCatalog,
    view: NodeView,
    now: float,
    pod_ip: str,
) -> dict[str, Any]:
    """Advance one container to ``now`` and return its containerStatus."""
    name = container["name"]
    image = container.get("image", "")
    status: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": "",
        "restartCount": sim.restarts,
        "ready": False,
        "started": False,
    }
    if sim.last_term:
        status["lastState"] = {"terminated": sim.last_term}
    if now - sim.first_seen < CREATE_DELAY_S:
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return status
    if not images.exists(image):
        return _image_pull_failure(sim, status, image, now)
    config_error = _config_error(container, view)
    if config_error:
        sim.emit_once(f"cfg:{config_error}", Event("Failed", f"Error: {config_error}", "Warning"))
        status["state"] = {
            "waiting": {"reason": "CreateContainerConfigError", "message": config_error}
        }
        return status
    launch = images.launch(image, container.get("command"))
    sim.emit_once(
        "pulled", Event("Pulled", f'Container image "{image}" already present on machine')
    )
    status["imageID"] = f"docker-pullable://{image}@sha256:{abs(hash(image)) % 10**12:012d}"
    return _run(sim, status, container, launch, view, now, pod_ip)


def _image_pull_failure(
    sim: ContainerSim, status: dict[str, Any], image: str, now: float
) -> dict[str, Any]:
    sim.emit_once("pulling", Event("Pulling", f'Pulling image "{image}"'))
    message = (
        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull '
        f'and unpack image "{image}": failed to resolve reference "{image}": not found'
    )
    sim.emit_once("pullfail", Event("Failed", message, "Warning"))
    if now - sim.first_seen < PULL_ERROR_S:
        status["state"] = {"waiting": {"reason": "ErrImagePull", "message": message}}
    else:
        sim.emit_once(
            "pullbackoff", Event("BackOff", f'Back-off pulling image "{image}"', "Normal")
        )
        status["state"] = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        }
    return status


def _terminate(sim: ContainerSim, reason: str, message: str, code: int, now: float) -> None:
    sim.restarts += 1
    sim.last_term = {
        "exitCode": code,
        "reason": reason,
        "startedAt": rfc3339(sim.started_at or now),
        "finishedAt": rfc3339(now),
        "containerID": f"containerd://{sim.restarts:064x}"[-77:],
    }
    if message:
        sim.last_term["message"] = message[:1024]
    sim.started_at = None
    sim.backoff_until = now + _backoff(sim.restarts)


def _run(
    sim: ContainerSim,
    status: dict[str, Any],
    container: Mapping[str, Any],
    launch: Launch,
    view: NodeView,
    now: float,
    pod_ip: str,
) -> dict[str, Any]:
    name = container["name"]
    if sim.started_at is None:
        if sim.backoff_until is not None and now < sim.backoff_until:
            sim.emit_once(
                f"backoff{sim.restarts}",
                Event("BackOff", "Back-off restarting failed container", "Warning"),
            )
            status["restartCount"] = sim.restarts
            status["lastState"] = {"terminated": sim.last_term}
            status["state"] = {
                "waiting": {
                    "reason": "RunContainerError" if launch.run_error else "CrashLoopBackOff",
                    "message": f"back-off {_backoff(sim.restarts):.0f}s restarting failed "
                    f"container={name}",
                }
            }
            return status
        sim.started_at = now
        sim.emit_once(f"created{sim.restarts}", Event("Created", f"Created container {name}"))
        sim.emit_once(f"started{sim.restarts}", Event("Started", f"Started container {name}"))
    failure = _failure(container, launch, view)
    if sim.kill_requested:
        sim.kill_requested = False
        sim.events.append(Event("Killing", f"Stopping container {name}"))
        _terminate(sim, "Error", "container killed", 137, now)
        sim.backoff_until = now
        return _run(sim, status, container, launch, view, now, pod_ip) | {
            "restartCount": sim.restarts,
            "lastState": {"terminated": sim.last_term},
        }
    if failure and now - sim.started_at >= failure[3]:
        reason, message, code, _ = failure
        if reason == "Error" and message.startswith("liveness probe failed"):
            port = message.rsplit(" ", 1)[-1]
            sim.events.append(
                Event(
                    "Unhealthy",
                    f"Liveness probe failed: dial tcp {pod_ip}:{port}: connect: connection refused",
                    "Warning",
                )
            )
            sim.events.append(
                Event("Killing", f"Container {name} failed liveness probe, will be restarted")
            )
        _terminate(sim, reason, message, code, now)
        return _run(sim, status, container, launch, view, now, pod_ip) | {
            "restartCount": sim.restarts,
            "lastState": {"terminated": sim.last_term},
        }
    readiness = _probe_port(container.get("readinessProbe"), container)
    probe_ok = readiness is None or readiness == launch.listen_port
    ready = failure is None and probe_ok
    if not probe_ok:
        sim.emit_once(
            f"unready{sim.restarts}",
            Event(
                "Unhealthy",
                f"Readiness probe failed: dial tcp {pod_ip}:{readiness}: "
                "connect: connection refused",
                "Warning",
            ),
        )
    status["state"] = {"running": {"startedAt": rfc3339(sim.started_at)}}
    status["ready"] = ready
    status["started"] = True
    status["containerID"] = f"containerd://{sim.restarts:064x}"[-77:]
    return status
