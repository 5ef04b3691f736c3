"""Typed description of the lab's microservice applications.

The lab deploys each application as real Deployments, Services and ConfigMaps,
and the application model (``lab.telemetry``) uses the same description to turn
the call graph, the load and the active faults into metrics, traces and logs.
Keeping both in one place means a fault that changes the cluster (a port, an
image, a replica count) and the telemetry it causes can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ServiceKind = Literal[
    "frontend",
    "service",
    "mongodb",
    "memcached",
    "redis",
    "kafka",
    "consul",
    "jaeger",
    "flagd",
    "loadgenerator",
    "proxy",
]


@dataclass(frozen=True)
class ServiceSpec:
    """One microservice: a Deployment plus a Service of the same name."""

    name: str
    kind: ServiceKind
    image: str
    port: int
    command: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    """Downstream services called while serving one request, in call order."""
    replicas: int = 1
    cpu_request_m: int = 100
    cpu_limit_m: int = 1000
    memory_request_mib: int = 64
    memory_limit_mib: int = 512
    working_set_mib: int = 40
    """Memory the process needs when healthy; a limit below it means OOMKilled."""
    base_cpu_m: int = 20
    base_latency_ms: float = 2.0
    """The service's own processing time per request, excluding downstream calls."""
    env: tuple[tuple[str, str], ...] = ()
    log_style: str = "go"
    """Which log vocabulary the service prints.

    One of ``lab.telemetry.vocabulary.FAMILIES``: go, cpp, nginx, envoy, node, java, dotnet,
    python, mongodb, memcached, redis, kafka.
    """
    config_mounts: tuple[tuple[str, str], ...] = ()
    """(ConfigMap name, mount path) pairs: the app's ConfigMaps this service reads."""
    volume_gib: int = 0
    """Size of the PersistentVolume (and claim) holding the service's data; 0 means none."""


@dataclass(frozen=True)
class AppSpec:
    """A whole application deployed into its own namespace."""

    name: str
    namespace: str
    entrypoint: str
    """The service that receives user traffic (the load generator's target)."""
    base_rps: float
    services: tuple[ServiceSpec, ...]
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)

    def service(self, name: str) -> ServiceSpec:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"{self.name} has no service {name!r}")

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)


JAEGER = ServiceSpec(
    name="jaeger",
    kind="jaeger",
    image="jaegertracing/all-in-one:1.57",
    port=16686,
    memory_request_mib=128,
    memory_limit_mib=1024,
    working_set_mib=150,
    log_style="go",
)
"""The tracing backend both DeathStarBench apps deploy beside their services."""
