"""Did the action work? Read-only checks run after execution, polled briefly.

"The patch was accepted" is not "the incident is mitigated": a rollback must
roll out, a Service must get endpoints on the right port, a ConfigMap must
read back. Each action's check reads the target (and its pods or endpoints)
and says in one sentence what it saw; ``verify`` polls until the check passes
or the time is up, so the proposal's result records the real outcome.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from agents.executor.actions import (
    ActionSpec,
    DeletePod,
    PatchConfigMap,
    PatchServicePort,
    PatchServiceSelector,
    Scale,
)
from agents.executor.apply import read_target
from agents.tools.kube import get_items, get_json
from agents.tools.paths import object_path

DEFAULT_TIMEOUT_S = 30.0
INTERVAL_S = 1.0


@dataclass(frozen=True)
class Verification:
    ok: bool
    detail: str


def check(api: client.ApiClient, spec: ActionSpec, context: dict[str, Any]) -> Verification:
    """One read-only look at whether ``spec`` had its effect (blocking)."""
    if isinstance(spec, PatchServicePort | PatchServiceSelector):
        return _service(api, spec)
    if isinstance(spec, PatchConfigMap):
        data = read_target(api, spec.target).get("data") or {}
        wrong = [k for k, v in spec.data.items() if data.get(k) != v]
        return Verification(
            not wrong, f"configmap keys {wrong} differ" if wrong else "configmap reads back"
        )
    if isinstance(spec, DeletePod):
        return _pod_replaced(api, spec, context.get("deleted_uid"))
    return rollout_complete(
        api, spec.namespace, spec.name, spec.replicas if isinstance(spec, Scale) else None
    )


def rollout_complete(
    api: client.ApiClient, namespace: str, name: str, replicas: int | None = None
) -> Verification:
    dep = get_json(api, object_path("/apis/apps/v1", "deployments", namespace=namespace, name=name))
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    if replicas is not None and want != replicas:
        return Verification(False, f"deployment wants {want} replicas, not {replicas}")
    if int(status.get("observedGeneration") or 0) < int(dep["metadata"].get("generation") or 0):
        return Verification(False, "the controller has not seen the change yet")
    counts = {
        k: int(status.get(k) or 0)
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    }
    if any(value != want for value in counts.values()):
        return Verification(False, f"rolling out: {counts} of {want}")
    waiting = _waiting_pods(api, namespace, spec)
    if waiting:
        return Verification(False, f"pod(s) not running: {', '.join(waiting)}")
    return Verification(True, f"deployment {name}: {want}/{want} updated and ready")


def _waiting_pods(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> list[str]:
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    waiting = []
    pods = object_path("/api/v1", "pods", namespace=namespace)
    for pod in get_items(api, pods, {"labelSelector": selector}):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if reason:
                waiting.append(f"{pod['metadata']['name']} {reason}")
    return waiting


def _service(api: client.ApiClient, spec: PatchServicePort | PatchServiceSelector) -> Verification:
    svc = read_target(api, spec.target)
    eps = get_json(
        api, object_path("/api/v1", "endpoints", namespace=spec.namespace, name=spec.name)
    )
    ready = sum(len(s.get("addresses") or []) for s in eps.get("subsets") or [])
    if ready == 0:
        return Verification(False, f"service {spec.name} has no ready endpoints yet")
    if isinstance(spec, PatchServiceSelector):
        return Verification(True, f"service {spec.name} has {ready} ready endpoint(s)")
    selector = (svc.get("spec") or {}).get("selector") or {}
    query = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
    pods = get_items(api, object_path("/api/v1", "pods", namespace=spec.namespace), query)
    declared = {
        (p.get("name"), p.get("containerPort"))
        for pod in pods
        for c in (pod.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
    }
    targets = [p.get("targetPort") for p in (svc.get("spec") or {}).get("ports") or []]
    missing = [t for t in targets if not any(t in pair for pair in declared)]
    if missing:
        return Verification(
            False, f"targetPort {missing} matches no container port {sorted(declared)}"
        )
    return Verification(
        True, f"service {spec.name}: {ready} endpoint(s), targetPort {targets} matches the pods"
    )


def _pod_replaced(api: client.ApiClient, spec: DeletePod, old_uid: object) -> Verification:
    try:
        pod = read_target(api, spec.target)
    except ApiException as exc:
        if exc.status == 404:
            return Verification(True, f"pod {spec.name} is gone; its controller replaces it")
        raise
    if pod["metadata"].get("uid") != old_uid:
        return Verification(True, f"pod {spec.name} was re-created")
    return Verification(False, f"pod {spec.name} is still terminating")


async def verify(
    api: client.ApiClient,
    spec: ActionSpec,
    context: dict[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = INTERVAL_S,
) -> Verification:
    """Poll ``check`` until it passes or ``timeout_s`` runs out (off the event loop)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = await asyncio.to_thread(check, api, spec, context)
        except ApiException as exc:
            result = Verification(False, f"cannot read the target: {exc.status} {exc.reason}")
        if result.ok or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(interval_s)
