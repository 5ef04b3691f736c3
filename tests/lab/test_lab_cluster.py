"""The lab's cluster is real: apps Ready, RBAC enforced by the apiserver, logs via the API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support.lab import CACHE_DIR, LabThread

from lab import controlplane
from lab.apps import APPS

HOTEL = APPS["hotel-reservation"].namespace
kubectl = shutil.which("kubectl")


def _deployments(api: client.ApiClient, namespace: str) -> list[client.V1Deployment]:
    return list(client.AppsV1Api(api).list_namespaced_deployment(namespace).items)


def test_every_app_deployment_is_ready(lab: LabThread, observer: client.ApiClient) -> None:
    assert lab.ready_s < 60
    for app in APPS.values():
        deployments = _deployments(observer, app.namespace)
        assert {d.metadata.name for d in deployments} >= set(app.service_names)
        for dep in deployments:
            assert dep.status.ready_replicas == dep.spec.replicas, dep.metadata.name


def test_endpoints_list_ready_pod_ips(observer: client.ApiClient) -> None:
    core = client.CoreV1Api(observer)
    endpoints = core.read_namespaced_endpoints("geo", HOTEL)
    pods = core.list_namespaced_pod(HOTEL, label_selector="app.kubernetes.io/name=geo").items
    addresses = {a.ip for s in endpoints.subsets for a in s.addresses}
    assert addresses == {p.status.pod_ip for p in pods}


def test_nodes_are_ready_and_leases_renewed(observer: client.ApiClient) -> None:
    nodes = client.CoreV1Api(observer).list_node().items
    assert len(nodes) == 3
    for node in nodes:
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True"


@pytest.mark.parametrize(
    ("verb", "call"),
    [
        ("delete pod", lambda c: c.delete_namespaced_pod("geo-x", HOTEL)),
        (
            "create configmap",
            lambda c: c.create_namespaced_config_map(
                HOTEL, {"metadata": {"name": "x"}, "data": {}}
            ),
        ),
        (
            "patch service",
            lambda c: c.patch_namespaced_service(
                "geo", HOTEL, {"spec": {"ports": [{"port": 1, "targetPort": 2}]}}
            ),
        ),
        ("list secrets", lambda c: c.list_secret_for_all_namespaces()),
        ("read secret", lambda c: c.read_namespaced_secret("any", "kube-system")),
        ("exec", lambda c: c.connect_get_namespaced_pod_exec("geo-x", HOTEL, command=["sh"])),
    ],
)
def test_apiserver_refuses_the_observer(observer: client.ApiClient, verb: str, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiException) as info:
        call(client.CoreV1Api(observer))
    assert info.value.status == 403, verb


def test_apiserver_refuses_observer_deployment_writes(observer: client.ApiClient) -> None:
    apps_api = client.AppsV1Api(observer)
    with pytest.raises(ApiException) as info:
        apps_api.patch_namespaced_deployment_scale("geo", HOTEL, {"spec": {"replicas": 0}})
    assert info.value.status == 403


def test_executor_has_only_the_catalogue_verbs(executor: client.ApiClient) -> None:
    core = client.CoreV1Api(executor)
    for forbidden in (
        lambda: core.list_secret_for_all_namespaces(),
        lambda: core.delete_namespace(HOTEL),
        lambda: core.delete_persistent_volume("geo-pv"),
        lambda: client.RbacAuthorizationV1Api(executor).list_cluster_role(),
        lambda: core.create_namespaced_pod(
            HOTEL,
            {
                "metadata": {"name": "x"},
                "spec": {"containers": [{"name": "x", "image": "busybox:1.36"}]},
            },
        ),
    ):
        with pytest.raises(ApiException) as info:
            forbidden()
        assert info.value.status == 403
    deployment = client.AppsV1Api(executor).read_namespaced_deployment("geo", HOTEL)
    assert deployment.spec.replicas == 1


def test_container_logs_come_through_the_apiserver(observer: client.ApiClient) -> None:
    core = client.CoreV1Api(observer)
    pod = core.list_namespaced_pod(HOTEL, label_selector="app.kubernetes.io/name=geo").items[0]
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline and not text:
        text = core.read_namespaced_pod_log(pod.metadata.name, HOTEL, container="geo")
        time.sleep(0.5)
    assert text.strip()
    tail = core.read_namespaced_pod_log(pod.metadata.name, HOTEL, container="geo", tail_lines=2)
    assert 1 <= len(tail.strip().splitlines()) <= 2
    stamped = core.read_namespaced_pod_log(
        pod.metadata.name, HOTEL, container="geo", tail_lines=1, timestamps=True
    )
    assert stamped[:4].isdigit()
    assert "T" in stamped.split()[0]


@pytest.mark.skipif(kubectl is None, reason="kubectl is not installed on this machine")
def test_kubectl_reads_with_the_observer_kubeconfig(lab: LabThread) -> None:
    assert lab.lab.endpoints is not None
    config = lab.lab.endpoints.observer_kubeconfig
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", config, "get", "pods", "-A", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    phases = {p["status"].get("phase") for p in json.loads(out.stdout)["items"]}
    assert phases == {"Running"}
    denied = subprocess.run(
        [str(kubectl), "--kubeconfig", config, "auth", "can-i", "delete", "pods", "-n", HOTEL],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.stdout.strip() == "no"
    logs = subprocess.run(
        [str(kubectl), "--kubeconfig", config, "logs", "-n", HOTEL, "deploy/geo", "--tail=3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip()


def test_chosen_ports_lie_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {controlplane.free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    assert len(ports) > 1


def test_a_port_lost_before_etcd_binds_it_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another program takes the chosen etcd port first; the start picks new ports.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stolen = taken.getsockname()[1]
        real = controlplane.free_port
        picks = iter([controlplane.free_port(), stolen])
        monkeypatch.setattr(controlplane, "free_port", lambda: next(picks, None) or real())
        plane = controlplane.ControlPlane(state_dir=tmp_path / "cp", cache_dir=CACHE_DIR)
        try:
            plane.start(timeout_s=60)
            assert plane.etcd_port != stolen
            assert plane.server.startswith("https://127.0.0.1:")
        finally:
            plane.stop()


def test_a_pinned_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plane = controlplane.ControlPlane(
            state_dir=tmp_path / "cp", cache_dir=CACHE_DIR, etcd_port=port
        )
        with pytest.raises(controlplane.LabError, match=f"port {port} for etcd is already in use"):
            plane.start(timeout_s=30)
