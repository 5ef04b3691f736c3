"""`aoi doctor --json` against a healthy setup and against each part broken in turn.

The cluster is the running lab, reached the way a user reaches a real cluster
(kubeconfig paths and telemetry URLs in AOI_* variables), so the read-only
check asks the real API server about the real observer and admin identities.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from support.cli import assert_one_clean_error, run_aoi
from support.lab import LabThread

pytestmark = pytest.mark.slow


@pytest.fixture
def healthy_env(lab: LabThread, tmp_path: Path) -> dict[str, str]:
    ends = lab.lab.endpoints
    assert ends is not None
    return {
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path}/aoi.db",
        "AOI_CLUSTER": ends.observer_kubeconfig,
        "AOI_PROMETHEUS_URL": ends.prometheus_url,
        "AOI_JAEGER_URL": ends.jaeger_url,
    }


def _doctor(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = run_aoi("doctor", "--json", cwd=tmp_path, env=env, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    return result.returncode, report


def _by_part(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["part"]: check for check in report["checks"]}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_healthy_setup_passes_every_check(tmp_path: Path, healthy_env: dict[str, str]) -> None:
    code, report = _doctor(tmp_path, healthy_env)
    parts = _by_part(report)
    assert code == 0, report
    assert report["ok"] is True
    assert all(check["ok"] for check in report["checks"]), report
    assert "created" in parts["database"]["detail"]
    assert "tokens" in parts["model"]["detail"]
    assert "AVX512" not in parts["model"]["detail"]
    assert "read-only" in parts["cluster"]["detail"]
    assert set(parts) == {"database", "model", "cluster", "prometheus", "jaeger", "slack"}


def test_a_database_that_is_down_is_named(tmp_path: Path, healthy_env: dict[str, str]) -> None:
    env = {**healthy_env, "AOI_DATABASE_URL": f"postgresql://aoi:pw@127.0.0.1:{_closed_port()}/x"}
    code, report = _doctor(tmp_path, env)
    database = _by_part(report)["database"]
    assert code == 1
    assert database["ok"] is False
    assert "cannot reach the database" in database["detail"]
    assert "pw" not in json.dumps(report)


@pytest.mark.postgres
def test_an_unmigrated_postgres_says_to_upgrade(
    tmp_path: Path, healthy_env: dict[str, str], postgres_url: str
) -> None:
    code, report = _doctor(tmp_path, {**healthy_env, "AOI_DATABASE_URL": postgres_url})
    database = _by_part(report)["database"]
    assert code == 1
    assert "aoi db upgrade" in database["detail"]


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
def test_a_missing_or_corrupt_model_is_reported(
    tmp_path: Path, healthy_env: dict[str, str], broken: str
) -> None:
    path = tmp_path / "model.gguf"
    if broken == "corrupt":
        path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    code, report = _doctor(tmp_path, {**healthy_env, "AOI_MODEL": str(path)})
    model = _by_part(report)["model"]
    assert code == 1
    assert model["ok"] is False
    assert str(path) in model["detail"]
    assert ("not found" if broken == "missing" else "load") in model["detail"]


def test_an_admin_kubeconfig_as_the_observer_is_refused(
    lab: LabThread, tmp_path: Path, healthy_env: dict[str, str]
) -> None:
    ends = lab.lab.endpoints
    assert ends is not None
    code, report = _doctor(tmp_path, {**healthy_env, "AOI_CLUSTER": ends.admin_kubeconfig})
    cluster = _by_part(report)["cluster"]
    assert code == 1
    assert cluster["ok"] is False
    assert "not read-only" in cluster["detail"]
    assert "can get secrets" in cluster["detail"]


def test_the_executor_identity_as_the_observer_is_refused(
    lab: LabThread, tmp_path: Path, healthy_env: dict[str, str]
) -> None:
    ends = lab.lab.endpoints
    assert ends is not None
    code, report = _doctor(tmp_path, {**healthy_env, "AOI_CLUSTER": ends.executor_kubeconfig})
    assert code == 1
    # Bound only in the app namespaces, it cannot list namespaces: it is not passed unchecked.
    assert "cannot list namespaces" in _by_part(report)["cluster"]["detail"]


def test_unreachable_telemetry_is_a_warning_with_the_setting(
    tmp_path: Path, healthy_env: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {**healthy_env, "AOI_PROMETHEUS_URL": dead, "AOI_JAEGER_URL": dead}
    code, report = _doctor(tmp_path, env)
    parts = _by_part(report)
    assert parts["prometheus"]["ok"] is False
    assert "AOI_PROMETHEUS_URL" in parts["prometheus"]["detail"]
    assert parts["jaeger"]["ok"] is False
    assert parts["prometheus"]["essential"] is False
    assert code == 0  # investigations still run on the Kubernetes API and the logs


def test_an_unreachable_cluster_is_one_line(tmp_path: Path, healthy_env: dict[str, str]) -> None:
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{_closed_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    code, report = _doctor(tmp_path, {**healthy_env, "AOI_CLUSTER": str(kubeconfig)})
    cluster = _by_part(report)["cluster"]
    assert code == 1
    assert "cannot reach the cluster" in cluster["detail"]
    assert "\n" not in cluster["detail"]


def test_an_investigation_refuses_an_admin_observer_unless_overridden(
    lab: LabThread, tmp_path: Path, healthy_env: dict[str, str]
) -> None:
    ends = lab.lab.endpoints
    assert ends is not None
    env = {**healthy_env, "AOI_CLUSTER": ends.admin_kubeconfig, "AOI_MODEL": "analyzers"}
    refused = run_aoi("investigate", "is anything wrong?", "--json", cwd=tmp_path, env=env)
    line = assert_one_clean_error(refused, code=2)
    assert "not read-only" in line
    assert "AOI_ALLOW_WRITABLE_OBSERVER" in line

    overridden = run_aoi(
        "investigate",
        "is anything wrong?",
        "--json",
        cwd=tmp_path,
        env={**env, "AOI_ALLOW_WRITABLE_OBSERVER": "true"},
        timeout=180,
    )
    assert overridden.returncode == 0, overridden.stderr
    assert "UNSAFE" in overridden.stderr
    assert "incident_id" in json.loads(overridden.stdout)


def test_an_observer_that_can_write_in_one_namespace_is_refused(
    lab: LabThread, admin: client.ApiClient, tmp_path: Path, healthy_env: dict[str, str]
) -> None:
    """Read-only cluster-wide, plus one RoleBinding granting writes: a namespace-level hole."""
    ends = lab.lab.endpoints
    assert ends is not None
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    name, namespace = "aoi-sneaky", "test-hotel-reservation"
    core.create_namespaced_service_account("aoi-system", {"metadata": {"name": name}})
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": "aoi-system"}]
    reads = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "aoi-observer"}
    writes = {**reads, "name": "aoi-executor"}
    rbac.create_cluster_role_binding(
        {"metadata": {"name": name}, "roleRef": reads, "subjects": subject}
    )
    rbac.create_namespaced_role_binding(
        namespace, {"metadata": {"name": name}, "roleRef": writes, "subjects": subject}
    )
    try:
        token = core.create_namespaced_service_account_token(
            name, "aoi-system", {"spec": {"audiences": ["https://kubernetes.default.svc"]}}
        ).status.token
        config = yaml.safe_load(Path(ends.observer_kubeconfig).read_text())
        config["users"][0]["user"] = {"token": token}
        kubeconfig = tmp_path / "sneaky.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        code, report = _doctor(tmp_path, {**healthy_env, "AOI_CLUSTER": str(kubeconfig)})
    finally:
        rbac.delete_namespaced_role_binding(name, namespace)
        rbac.delete_cluster_role_binding(name)
        core.delete_namespaced_service_account(name, "aoi-system")
    cluster = _by_part(report)["cluster"]
    assert code == 1
    assert "not read-only" in cluster["detail"]
    assert f"in namespace {namespace}" in cluster["detail"]
