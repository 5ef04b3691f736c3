"""The lab's applications: real AIOpsLab names and ports, and manifests a cluster accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from lab.apps import APPS, AppSpec, app_for_namespace
from lab.apps.manifests import labels, render, volume_names

HOST_PORT = re.compile(r"^([a-z0-9-]+):(\d+)$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
IANA_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")

HOTEL_PORTS = {
    "frontend": 5000,
    "search": 8082,
    "geo": 8083,
    "profile": 8081,
    "rate": 8084,
    "recommendation": 8085,
    "user": 8086,
    "reservation": 8087,
    "consul": 8500,
    "jaeger": 16686,
}
EXPECTED_SERVICES = {
    "hotel-reservation": {
        *HOTEL_PORTS,
        *(f"mongodb-{d}" for d in ("geo", "profile", "rate", "recommendation", "reservation")),
        "mongodb-user",
        "memcached-profile",
        "memcached-rate",
        "memcached-reserve",
    },
    "social-network": {
        "nginx-thrift", "compose-post-service", "home-timeline-service", "home-timeline-redis",
        "media-service", "media-mongodb", "media-memcached", "media-frontend",
        "post-storage-service", "post-storage-mongodb", "post-storage-memcached",
        "social-graph-service", "social-graph-mongodb", "social-graph-redis", "text-service",
        "unique-id-service", "url-shorten-service", "url-shorten-mongodb", "url-shorten-memcached",
        "user-service", "user-mongodb", "user-memcached", "user-mention-service",
        "user-timeline-service", "user-timeline-mongodb", "user-timeline-redis", "jaeger",
    },
    "astronomy-shop": {
        "frontend", "frontend-proxy", "ad", "cart", "checkout", "currency", "email", "payment",
        "product-catalog", "quote", "recommendation", "shipping", "accounting", "fraud-detection",
        "kafka", "valkey-cart", "flagd", "image-provider", "load-generator",
    },
}  # fmt: skip
NAMESPACES = {
    "hotel-reservation": "test-hotel-reservation",
    "social-network": "test-social-network",
    "astronomy-shop": "astronomy-shop",
}

apps = pytest.mark.parametrize("app", list(APPS.values()), ids=list(APPS))


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _walk_names(objects: list[dict[str, Any]]) -> Iterator[str]:
    for obj in objects:
        yield obj["metadata"]["name"]
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            yield from (v["name"] for v in pod["volumes"])
            yield from (c["name"] for c in pod["containers"])


def test_three_apps_with_aiopslab_names_and_namespaces() -> None:
    assert {name: app.namespace for name, app in APPS.items()} == NAMESPACES
    for name, app in APPS.items():
        assert set(app.service_names) == EXPECTED_SERVICES[name]
        assert len(app.service_names) == len(set(app.service_names))
        assert app_for_namespace(app.namespace) is app
    assert app_for_namespace("kube-system") is None


def test_hotel_reservation_is_the_real_deployment() -> None:
    hotel = APPS["hotel-reservation"]
    for name, port in HOTEL_PORTS.items():
        assert hotel.service(name).port == port
    go = [s for s in hotel.services if s.image == "yinfangchen/hotelreservation:latest"]
    assert {s.name for s in go} == set(HOTEL_PORTS) - {"consul", "jaeger"}
    assert all(s.command == (s.name,) for s in go), "each Go service runs its own binary"
    assert hotel.service("frontend").calls == (
        "search",
        "profile",
        "recommendation",
        "user",
        "reservation",
    )
    assert hotel.service("search").calls == ("geo", "rate")
    assert {s.port for s in hotel.services if s.kind == "mongodb"} == {27017}
    assert {s.port for s in hotel.services if s.kind == "memcached"} == {11211}


def test_social_network_thrift_services_listen_on_9090() -> None:
    social = APPS["social-network"]
    for target in ("user-service", "text-service", "post-storage-service"):
        assert social.service(target).port == 9090
    assert social.service("nginx-thrift").port == 8080
    assert social.entrypoint == "nginx-thrift"
    compose = social.service("compose-post-service").calls
    assert {"text-service", "unique-id-service", "media-service", "user-service"} <= set(compose)
    assert set(social.service("text-service").calls) == {
        "url-shorten-service",
        "user-mention-service",
    }


def test_astronomy_shop_call_graph_and_flags() -> None:
    shop = APPS["astronomy-shop"]
    assert set(shop.service("frontend-proxy").calls) == {"frontend", "image-provider"}
    assert {"ad", "cart", "checkout", "currency", "product-catalog"} <= set(
        shop.service("frontend").calls
    )
    assert {"payment", "email", "kafka", "shipping"} <= set(shop.service("checkout").calls)
    assert "kafka" in shop.service("accounting").calls
    assert "kafka" in shop.service("fraud-detection").calls
    assert shop.service("cart").calls[0] == "valkey-cart"
    flags = json.loads(shop.configmaps["flagd-config"]["demo.flagd.json"])["flags"]
    assert set(flags) == {
        "adFailure", "adHighCpu", "adManualGc", "cartFailure", "imageSlowLoad",
        "kafkaQueueProblems", "loadGeneratorFloodHomepage", "paymentFailure",
        "paymentUnreachable", "productCatalogFailure", "recommendationCacheFailure",
    }  # fmt: skip
    for flag in flags.values():
        assert flag["defaultVariant"] == "off"
        assert set(flag["variants"]) == {"on", "off"}


@apps
def test_call_graph_points_at_existing_services_and_is_acyclic(app: AppSpec) -> None:
    names = set(app.service_names)
    assert app.entrypoint in names
    for svc in app.services:
        assert set(svc.calls) <= names, f"{svc.name} calls a service {app.name} lacks"
        assert svc.name not in svc.calls
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"call cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for callee in app.service(name).calls:
            visit(callee)
        visiting.discard(name)
        done.add(name)

    for svc in app.services:
        visit(svc.name)


@apps
def test_resources_are_plausible(app: AppSpec) -> None:
    for svc in app.services:
        assert 0 < svc.cpu_request_m <= svc.cpu_limit_m
        assert 0 < svc.memory_request_mib <= svc.memory_limit_mib
        assert 0 < svc.working_set_mib < svc.memory_limit_mib, svc.name
        assert svc.base_latency_ms >= 0


@apps
def test_render_is_deterministic_and_in_apply_order(app: AppSpec) -> None:
    objects = render(app)
    assert json.dumps(objects, sort_keys=True) == json.dumps(render(app), sort_keys=True)
    kinds = [o["kind"] for o in objects]
    order = ["Namespace", "PersistentVolume", "PersistentVolumeClaim", "ConfigMap"]
    order += ["Deployment", "Service"]
    assert kinds == sorted(kinds, key=order.index)
    assert kinds[0] == "Namespace"
    assert objects[0]["metadata"]["name"] == app.namespace
    for obj in objects[1:]:
        if obj["kind"] != "PersistentVolume":
            assert obj["metadata"]["namespace"] == app.namespace


@apps
def test_names_are_valid_kubernetes_names(app: AppSpec) -> None:
    objects = render(app)
    for name in _walk_names(objects):
        assert DNS_1123_LABEL.match(name), name
    for name in _of_kind(objects, "Service"):
        assert DNS_1035_LABEL.match(name), name
    for deployment in _of_kind(objects, "Deployment").values():
        for port in _container(deployment)["ports"]:
            assert IANA_PORT_NAME.match(port["name"]), port["name"]


@apps
def test_every_service_selects_its_deployment(app: AppSpec) -> None:
    objects = render(app)
    deployments = _of_kind(objects, "Deployment")
    services = _of_kind(objects, "Service")
    assert set(deployments) == set(services) == set(app.service_names)
    for name, service in services.items():
        deployment = deployments[name]
        selector = service["spec"]["selector"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert selector == labels(app, app.service(name))
        others = [d for n, d in deployments.items() if n != name]
        assert not any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in others
        ), f"Service {name} also selects another Deployment"


@apps
def test_ports_probes_and_containers_are_consistent(app: AppSpec) -> None:
    objects = render(app)
    deployments = _of_kind(objects, "Deployment")
    for name, service in _of_kind(objects, "Service").items():
        spec = app.service(name)
        container = _container(deployments[name])
        assert container["name"] == name
        assert container["image"] == spec.image
        assert container.get("command", []) == list(spec.command)
        (port,) = service["spec"]["ports"]
        (container_port,) = container["ports"]
        assert service["spec"]["type"] == "ClusterIP"
        assert port["port"] == spec.port
        assert port["targetPort"] == container_port["containerPort"] == spec.port
        assert port["name"] == container_port["name"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["tcpSocket"]["port"] == spec.port
        assert {e["name"]: e["value"] for e in container["env"]} == dict(spec.env)


@apps
def test_mounted_configmaps_and_claims_exist(app: AppSpec) -> None:
    objects = render(app)
    configmaps = _of_kind(objects, "ConfigMap")
    claims = _of_kind(objects, "PersistentVolumeClaim")
    assert set(configmaps) == set(app.configmaps)
    for deployment in _of_kind(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert {m["name"] for m in _container(deployment)["volumeMounts"]} == set(volumes)
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            else:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_hotel_databases_have_static_volumes_that_bind_without_claim_ref() -> None:
    hotel = APPS["hotel-reservation"]
    objects = render(hotel)
    volumes = _of_kind(objects, "PersistentVolume")
    claims = _of_kind(objects, "PersistentVolumeClaim")
    databases = [s for s in hotel.services if s.kind == "mongodb"]
    assert len(volumes) == len(claims) == len(databases) == 6
    assert volume_names(hotel.service("mongodb-geo")) == ("geo-pv", "geo-pvc", "geo-storage")
    for db in databases:
        pv, pvc, storage_class = volume_names(db)
        assert "claimRef" not in volumes[pv]["spec"]
        assert volumes[pv]["spec"]["storageClassName"] == storage_class
        assert claims[pvc]["spec"]["storageClassName"] == storage_class
        assert "hostPath" in volumes[pv]["spec"]
    classes = [v["spec"]["storageClassName"] for v in volumes.values()]
    assert len(set(classes)) == len(classes), "one class per volume: each claim binds its own"
    for app in (APPS["social-network"], APPS["astronomy-shop"]):
        assert not _of_kind(render(app), "PersistentVolume")


@pytest.mark.parametrize("app", [APPS["hotel-reservation"], APPS["social-network"]], ids=str)
def test_mongodb_config_and_init_script(app: AppSpec) -> None:
    for db in (s for s in app.services if s.kind == "mongodb"):
        mounted = dict(db.config_mounts)
        conf = app.configmaps[f"{db.name}-config"]["mongod.conf"]
        assert "mode: disabled" in conf
        assert f"{db.name}-config" in mounted
        assert f"{db.name}-init" in mounted
        init = app.configmaps[f"{db.name}-init"]
        assert init["app-roles"] == "readWrite"
        assert f'db: "{init["app-database"]}"' in init["init-user.js"]
        assert "readWrite" in init["init-user.js"]


def test_images_that_share_a_binary_agree_on_its_port() -> None:
    """The simulated runtime maps (image, binary) to a port; apps must not disagree."""
    seen: dict[tuple[str, str], int] = {}
    for app in APPS.values():
        for svc in app.services:
            binary = (svc.command[0] if svc.command else svc.name).rsplit("/", 1)[-1]
            assert seen.setdefault((svc.image, binary), svc.port) == svc.port, svc.name
    assert ("yinfangchen/hotelreservation:latest", "geo") in seen, "wrong_bin_usage runs geo"


@apps
def test_addresses_in_env_use_the_callee_port(app: AppSpec) -> None:
    """The simulated runtime crashes a process whose address names a Service on a wrong port."""
    for svc in app.services:
        for key, value in svc.env:
            match = HOST_PORT.match(value)
            if match and match.group(1) in app.service_names:
                assert int(match.group(2)) == app.service(match.group(1)).port, (svc.name, key)


@apps
def test_log_styles_have_a_vocabulary(app: AppSpec) -> None:
    vocabulary = pytest.importorskip("lab.telemetry.vocabulary")
    for svc in app.services:
        assert svc.log_style in vocabulary.FAMILIES, svc.name
