"""The product's identities inside the lab, made from the RBAC YAML it ships.

The lab applies ``manifests/rbac`` exactly as a user would apply it to a real
cluster, then asks the apiserver for ServiceAccount tokens (TokenRequest) and
writes one kubeconfig per identity. The executor is bound, as a user would bind
it, with one copy of ``executor-namespace/rolebinding.yaml`` per managed
namespace: the lab's app namespaces and nothing else. Tests then prove the
read-only promise and the executor's limits with the apiserver's own refusals
rather than with our code's good behaviour.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from lab.controlplane import write_kubeconfig
from lab.k8s import ObjectStore, load_yaml_dir

NAMESPACE = "aoi-system"
TOKEN_TTL_S = 7 * 24 * 3600
DEFAULT_RBAC_DIR = Path(__file__).resolve().parents[1] / "manifests" / "rbac"


@dataclass(frozen=True)
class Identities:
    observer_kubeconfig: Path
    executor_kubeconfig: Path


def _token(core: client.CoreV1Api, name: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc"], expiration_seconds=TOKEN_TTL_S
        )
    )
    response = core.create_namespaced_service_account_token(name, NAMESPACE, request)
    return str(response.status.token)


def create_identities(
    *, api: client.ApiClient, server: str, ca_cert: Path, out_dir: Path, rbac_dir: Path
) -> Identities:
    """Apply the shipped RBAC and write observer/executor kubeconfigs into ``out_dir``."""
    ObjectStore(api).create_all(load_yaml_dir(rbac_dir))
    core = client.CoreV1Api(api)
    paths = {}
    for role in ("observer", "executor"):
        paths[role] = write_kubeconfig(
            out_dir / f"{role}.kubeconfig",
            server=server,
            ca_cert=ca_cert,
            user=f"aoi-{role}",
            token=_token(core, f"aoi-{role}"),
        )
    return Identities(observer_kubeconfig=paths["observer"], executor_kubeconfig=paths["executor"])


def executor_bindings(namespaces: Iterable[str], *, rbac_dir: Path) -> list[dict[str, Any]]:
    """The shipped executor RoleBinding, one copy per managed namespace."""
    template = yaml.safe_load((rbac_dir / "executor-namespace" / "rolebinding.yaml").read_text())
    bindings = []
    for namespace in sorted(set(namespaces)):
        binding = copy.deepcopy(template)
        binding["metadata"]["namespace"] = namespace
        bindings.append(binding)
    return bindings


def bind_executor(api: client.ApiClient, namespaces: Iterable[str], *, rbac_dir: Path) -> None:
    """Let the executor act in ``namespaces`` (which must exist) and nowhere else."""
    ObjectStore(api).create_all(executor_bindings(namespaces, rbac_dir=rbac_dir))
