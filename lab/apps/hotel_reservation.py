"""DeathStarBench's hotel reservation, as AIOpsLab deploys it.

Service names, ports, the shared Go image and the per-service binary names are
the real ones because AIOpsLab's faults refer to them: ``wrong_bin_usage`` runs
the ``geo`` binary in the profile container, ``misconfig_app_hotel_res`` swaps
geo's image, the MongoDB auth faults target ``mongodb-geo`` and ``mongodb-rate``,
and ``redeploy_without_PV`` needs the databases' PersistentVolumes.
"""

from __future__ import annotations

from lab.apps import mongodb
from lab.apps.spec import JAEGER, AppSpec, ServiceSpec

NAME = "hotel-reservation"
NAMESPACE = "test-hotel-reservation"
GO_IMAGE = "yinfangchen/hotelreservation:latest"
MEMCACHED_PORT = 11211
_DATABASES = ("geo", "profile", "rate", "recommendation", "reservation", "user")

_COMMON_ENV = (
    ("JAEGER_SAMPLE_RATIO", "1"),
    ("CONSUL_ADDRESS", "consul:8500"),
    ("JAEGER_AGENT_HOST", "jaeger"),
    ("JAEGER_AGENT_PORT", "6831"),
    ("LOG_LEVEL", "info"),
)


def _go_service(
    name: str,
    port: int,
    calls: tuple[str, ...],
    latency_ms: float,
    *,
    mongo: str | None = None,
    memcached: str | None = None,
) -> ServiceSpec:
    env = list(_COMMON_ENV)
    if mongo:
        env.append(("MONGO_ADDRESS", f"{mongo}:{mongodb.PORT}"))
    if memcached:
        env.append(("MEMCACHED_ADDRESS", f"{memcached}:{MEMCACHED_PORT}"))
    return ServiceSpec(
        name=name,
        kind="frontend" if name == "frontend" else "service",
        image=GO_IMAGE,
        port=port,
        command=(name,),
        calls=calls,
        cpu_request_m=100,
        cpu_limit_m=1000,
        memory_request_mib=64,
        memory_limit_mib=256,
        working_set_mib=28,
        base_cpu_m=15,
        base_latency_ms=latency_ms,
        env=tuple(env),
        log_style="go",
    )


def _memcached(name: str) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        kind="memcached",
        image="memcached:1.6.7",
        port=MEMCACHED_PORT,
        command=("memcached", "-m", "128", "-t", "2"),
        cpu_request_m=50,
        cpu_limit_m=500,
        memory_request_mib=64,
        memory_limit_mib=256,
        working_set_mib=70,
        base_cpu_m=5,
        base_latency_ms=0.3,
        log_style="memcached",
    )


def _infrastructure() -> tuple[ServiceSpec, ...]:
    consul = ServiceSpec(
        name="consul",
        kind="consul",
        image="hashicorp/consul:1.15",
        port=8500,
        command=("consul", "agent", "-dev", "-client", "0.0.0.0"),
        memory_limit_mib=256,
        working_set_mib=60,
        log_style="go",
    )
    return consul, JAEGER


def _services() -> tuple[ServiceSpec, ...]:
    go = (
        _go_service(
            "frontend", 5000, ("search", "profile", "recommendation", "user", "reservation"), 1.0
        ),
        _go_service("search", 8082, ("geo", "rate"), 0.8),
        _go_service("geo", 8083, ("mongodb-geo",), 1.5, mongo="mongodb-geo"),
        _go_service(
            "profile",
            8081,
            ("memcached-profile", "mongodb-profile"),
            1.2,
            mongo="mongodb-profile",
            memcached="memcached-profile",
        ),
        _go_service(
            "rate",
            8084,
            ("memcached-rate", "mongodb-rate"),
            1.5,
            mongo="mongodb-rate",
            memcached="memcached-rate",
        ),
        _go_service(
            "recommendation", 8085, ("mongodb-recommendation",), 2.0, mongo="mongodb-recommendation"
        ),
        _go_service("user", 8086, ("mongodb-user",), 1.0, mongo="mongodb-user"),
        _go_service(
            "reservation",
            8087,
            ("memcached-reserve", "mongodb-reservation"),
            2.5,
            mongo="mongodb-reservation",
            memcached="memcached-reserve",
        ),
    )
    dbs = tuple(mongodb.service(f"mongodb-{d}", volume_gib=1) for d in _DATABASES)
    caches = tuple(_memcached(f"memcached-{c}") for c in ("profile", "rate", "reserve"))
    return go + dbs + caches + _infrastructure()


def _configmaps() -> dict[str, dict[str, str]]:
    maps: dict[str, dict[str, str]] = {}
    for db in _DATABASES:
        maps.update(mongodb.configmaps(f"mongodb-{db}", f"{db}-db"))
    return maps


APP = AppSpec(
    name=NAME,
    namespace=NAMESPACE,
    entrypoint="frontend",
    base_rps=40.0,
    services=_services(),
    configmaps=_configmaps(),
)
