"""DeathStarBench's social network, as AIOpsLab deploys it.

The Thrift services all listen on 9090 because AIOpsLab's target-port fault
rewrites a Service's targetPort from 9090 to 9999; ``scale_pod_zero`` and the
non-existent-node fault hit ``user-service``; ``auth_miss_mongodb`` switches
``url-shorten-mongodb`` to requireTLS. The call graph follows the real
handlers: composing a post fans out to text, media, user, unique-id and the
storage and timeline services.
"""

from __future__ import annotations

from lab.apps import mongodb
from lab.apps.spec import JAEGER, AppSpec, ServiceKind, ServiceSpec

NAME = "social-network"
NAMESPACE = "test-social-network"
THRIFT_PORT = 9090
THRIFT_IMAGE = "deathstarbench/social-network-microservices:latest"

_THRIFT_CALLS: dict[str, tuple[str, ...]] = {
    "compose-post-service": (
        "text-service",
        "unique-id-service",
        "media-service",
        "user-service",
        "post-storage-service",
        "user-timeline-service",
        "home-timeline-service",
    ),
    "text-service": ("url-shorten-service", "user-mention-service"),
    "url-shorten-service": ("url-shorten-memcached", "url-shorten-mongodb"),
    "user-mention-service": ("user-memcached", "user-mongodb"),
    "media-service": (),
    "unique-id-service": (),
    "user-service": ("user-memcached", "user-mongodb"),
    "post-storage-service": ("post-storage-memcached", "post-storage-mongodb"),
    "user-timeline-service": (
        "user-timeline-redis",
        "user-timeline-mongodb",
        "post-storage-service",
    ),
    "home-timeline-service": (
        "home-timeline-redis",
        "social-graph-service",
        "post-storage-service",
    ),
    "social-graph-service": ("social-graph-redis", "social-graph-mongodb", "user-service"),
}
_LATENCY_MS = {
    "compose-post-service": 1.5,
    "text-service": 0.8,
    "unique-id-service": 0.2,
    "media-service": 0.5,
    "post-storage-service": 1.0,
    "home-timeline-service": 1.2,
    "user-timeline-service": 1.2,
    "social-graph-service": 1.0,
}
_DATABASES = {
    "media-mongodb": "media",
    "post-storage-mongodb": "post",
    "social-graph-mongodb": "social-graph",
    "url-shorten-mongodb": "url-shorten",
    "user-mongodb": "user",
    "user-timeline-mongodb": "user-timeline",
}
_MEMCACHED = (
    "media-memcached",
    "post-storage-memcached",
    "url-shorten-memcached",
    "user-memcached",
)
_REDIS = ("home-timeline-redis", "social-graph-redis", "user-timeline-redis")
_PORTS: dict[str, int] = {"mongodb": mongodb.PORT, "memcached": 11211, "redis": 6379}


def _port_of(name: str) -> int:
    """Stores are named after their kind (``user-mongodb``); everything else speaks Thrift."""
    return _PORTS.get(name.rsplit("-", 1)[-1], THRIFT_PORT)


def _binary(name: str) -> str:
    """``compose-post-service`` runs the ``ComposePostService`` binary."""
    return "".join(part.capitalize() for part in name.split("-"))


def _thrift_service(name: str, calls: tuple[str, ...]) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        kind="service",
        image=THRIFT_IMAGE,
        port=THRIFT_PORT,
        command=(_binary(name),),
        calls=calls,
        cpu_request_m=100,
        cpu_limit_m=1000,
        memory_request_mib=64,
        memory_limit_mib=512,
        working_set_mib=32,
        base_cpu_m=15,
        base_latency_ms=_LATENCY_MS.get(name, 1.0),
        env=tuple((f"{c.upper().replace('-', '_')}_ADDR", f"{c}:{_port_of(c)}") for c in calls),
        log_style="cpp",
    )


def _openresty(name: str, image: str, port: int, calls: tuple[str, ...]) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        kind="frontend",
        image=image,
        port=port,
        command=("/usr/local/openresty/bin/openresty", "-g", "daemon off;"),
        calls=calls,
        cpu_request_m=100,
        cpu_limit_m=1000,
        memory_request_mib=64,
        memory_limit_mib=256,
        working_set_mib=24,
        base_latency_ms=0.5,
        log_style="nginx",
    )


def _store(name: str, kind: ServiceKind, image: str, command: tuple[str, ...]) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        kind=kind,
        image=image,
        port=_PORTS[kind],
        command=command,
        cpu_request_m=50,
        cpu_limit_m=500,
        memory_request_mib=64,
        memory_limit_mib=256,
        working_set_mib=60,
        base_cpu_m=5,
        base_latency_ms=0.3,
        log_style=kind,
    )


def _services() -> tuple[ServiceSpec, ...]:
    frontends = (
        _openresty(
            "nginx-thrift",
            "yg397/openresty-thrift:xenial",
            8080,
            (
                "compose-post-service",
                "home-timeline-service",
                "user-timeline-service",
                "user-service",
                "social-graph-service",
            ),
        ),
        _openresty(
            "media-frontend",
            "yg397/media-frontend:xenial",
            8081,
            ("media-mongodb", "media-memcached"),
        ),
    )
    thrift = tuple(_thrift_service(n, c) for n, c in _THRIFT_CALLS.items())
    dbs = tuple(mongodb.service(n) for n in _DATABASES)
    caches = tuple(
        _store(n, "memcached", "memcached:1.6.7", ("memcached", "-m", "128")) for n in _MEMCACHED
    )
    redis = tuple(_store(n, "redis", "redis:6.2.4", ("redis-server",)) for n in _REDIS)
    return frontends + thrift + dbs + caches + redis + (JAEGER,)


def _configmaps() -> dict[str, dict[str, str]]:
    maps: dict[str, dict[str, str]] = {}
    for service, database in _DATABASES.items():
        maps.update(mongodb.configmaps(service, database))
    return maps


APP = AppSpec(
    name=NAME,
    namespace=NAMESPACE,
    entrypoint="nginx-thrift",
    base_rps=30.0,
    services=_services(),
    configmaps=_configmaps(),
)
