"""The OpenTelemetry demo ("astronomy shop"), as AIOpsLab deploys it.

AIOpsLab's eleven astronomy-shop problems flip a feature flag in flagd, so the
flag file lives here as the ``flagd-config`` ConfigMap with every flag off; the
``feature_flag`` fault turns one on. Ports, memory limits and ``*_ADDR``
variables follow the demo's own defaults; the two Kafka consumers (accounting
and fraud-detection) listen on nothing in the demo and get a nominal 8080 here
because every lab service has a Service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lab.apps.spec import AppSpec, ServiceKind, ServiceSpec

NAME = "astronomy-shop"
NAMESPACE = "astronomy-shop"
DEMO_IMAGE = "otel/demo:2.0.2"
FLAGD_PORT = 8013
FLAGD_DIR = "/etc/flagd"

FLAGS: dict[str, tuple[str, object, object]] = {
    "adFailure": ("Fail ad service", True, False),
    "adHighCpu": ("Triggers high cpu load in the ad service", True, False),
    "adManualGc": ("Triggers full manual garbage collections in the ad service", True, False),
    "cartFailure": ("Fail cart service", True, False),
    "imageSlowLoad": ("Slow loading images in the frontend", 10000, 0),
    "kafkaQueueProblems": (
        "Overloads Kafka queue while simultaneously introducing a consumer side delay "
        "leading to a lag spike", 100, 0,
    ),
    "loadGeneratorFloodHomepage": ("Flood the frontend with a large amount of requests.", 100, 0),
    "paymentFailure": ("Fail payment service charge requests", 1, 0),
    "paymentUnreachable": ("Payment service is unavailable", True, False),
    "productCatalogFailure": ("Fail product catalog service on a specific product", True, False),
    "recommendationCacheFailure": ("Fail recommendation service cache", True, False),
}  # fmt: skip
"""Flag name -> (description, value when on, value when off), as in the demo's flag file."""


@dataclass(frozen=True)
class _Row:
    name: str
    kind: ServiceKind
    port: int
    calls: tuple[str, ...]
    memory_limit_mib: int
    working_set_mib: int
    latency_ms: float
    log_style: str
    image: str = ""
    command: tuple[str, ...] = ()


_ROWS = (
    _Row("frontend-proxy", "proxy", 8080, ("frontend", "image-provider"), 65, 30, 0.3, "envoy",
         command=("envoy",)),
    _Row("frontend", "frontend", 8080,
         ("ad", "cart", "checkout", "currency", "product-catalog", "recommendation", "shipping"),
         250, 140, 3.0, "node"),
    _Row("image-provider", "service", 8081, (), 50, 12, 0.5, "nginx", command=("nginx",)),
    _Row("ad", "service", 9555, ("flagd",), 300, 210, 1.5, "java"),
    _Row("cart", "service", 7070, ("valkey-cart", "flagd"), 160, 90, 1.0, "dotnet"),
    _Row("checkout", "service", 5050,
         ("cart", "currency", "email", "payment", "product-catalog", "shipping", "kafka", "flagd"),
         20, 12, 2.0, "go"),
    _Row("currency", "service", 7001, (), 20, 8, 0.4, "cpp"),
    _Row("email", "service", 6060, (), 100, 60, 1.0, "go"),
    _Row("payment", "service", 50051, ("flagd",), 120, 70, 1.0, "node"),
    _Row("product-catalog", "service", 3550, ("flagd",), 20, 10, 0.6, "go"),
    _Row("quote", "service", 8090, (), 40, 25, 0.8, "go"),
    _Row("recommendation", "service", 9001, ("product-catalog", "flagd"), 500, 180, 1.5, "python"),
    _Row("shipping", "service", 50050, ("quote",), 20, 8, 0.8, "go"),
    _Row("accounting", "service", 8080, ("kafka",), 120, 80, 1.0, "dotnet"),
    _Row("fraud-detection", "service", 8080, ("kafka", "flagd"), 300, 200, 1.0, "java"),
    _Row("kafka", "kafka", 9092, (), 600, 420, 0.8, "java"),
    _Row("valkey-cart", "redis", 6379, (), 20, 8, 0.2, "redis",
         image="valkey/valkey:8.1-alpine", command=("valkey-server",)),
    _Row("flagd", "flagd", FLAGD_PORT, (), 75, 30, 0.3, "go",
         image="open-feature/flagd:v0.12.8",
         command=("/flagd-build", "start", "--uri", f"file:{FLAGD_DIR}/demo.flagd.json")),
    _Row("load-generator", "loadgenerator", 8089, ("frontend-proxy", "flagd"), 1500, 400, 0.0,
         "python"),
)  # fmt: skip

_ENV_NAMES = {"valkey-cart": "VALKEY_ADDR"}


def _env(row: _Row, ports: dict[str, int]) -> tuple[tuple[str, str], ...]:
    env = [("OTEL_SERVICE_NAME", row.name)]
    for callee in row.calls:
        if callee == "flagd":
            env += [("FLAGD_HOST", "flagd"), ("FLAGD_PORT", str(FLAGD_PORT))]
            continue
        key = _ENV_NAMES.get(callee, f"{callee.upper().replace('-', '_')}_ADDR")
        env.append((key, f"{callee}:{ports[callee]}"))
    return tuple(env)


def _service(row: _Row, ports: dict[str, int]) -> ServiceSpec:
    mounts = (("flagd-config", FLAGD_DIR),) if row.name == "flagd" else ()
    return ServiceSpec(
        name=row.name,
        kind=row.kind,
        image=row.image or f"{DEMO_IMAGE}-{row.name}",
        port=row.port,
        command=row.command,
        calls=row.calls,
        cpu_request_m=50,
        cpu_limit_m=500,
        memory_request_mib=max(16, row.memory_limit_mib // 2),
        memory_limit_mib=row.memory_limit_mib,
        working_set_mib=row.working_set_mib,
        base_cpu_m=10,
        base_latency_ms=row.latency_ms,
        env=_env(row, ports),
        log_style=row.log_style,
        config_mounts=mounts,
    )


def flag_file() -> str:
    """The demo's flag file with every flag off; the feature-flag fault flips one."""
    flags = {
        name: {
            "description": description,
            "state": "ENABLED",
            "variants": {"on": on, "off": off},
            "defaultVariant": "off",
        }
        for name, (description, on, off) in FLAGS.items()
    }
    return json.dumps({"flags": flags}, indent=2) + "\n"


def _services() -> tuple[ServiceSpec, ...]:
    ports = {row.name: row.port for row in _ROWS}
    return tuple(_service(row, ports) for row in _ROWS)


APP = AppSpec(
    name=NAME,
    namespace=NAMESPACE,
    entrypoint="frontend-proxy",
    base_rps=20.0,
    services=_services(),
    configmaps={"flagd-config": {"demo.flagd.json": flag_file()}},
)
