"""Faults that change Kubernetes objects: Services, Deployments, ConfigMaps, volumes.

Each is what an operator's mistake or a bad release really looks like in the
API: the agents can find it with get/describe/events, and an approved patch,
rollback or scale through the executor identity really undoes it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab.apps.spec import ServiceSpec
from lab.cluster_view import NEIGHBOUR_CPU_ANNOTATION, NEIGHBOUR_LABEL
from lab.faults.base import FaultContext, Params, Verdict, all_of
from lab.kubelet.containers import parse_memory_mib


class _RestoresDeployment:
    """Recovery shared by faults that only edit one Deployment: put the baseline back."""

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.restore("Deployment", target)


def _listen_port(ctx: FaultContext, container: dict[str, Any]) -> int | None:
    return ctx.images.launch(container.get("image", ""), container.get("command")).listen_port


class TargetPortMisconfig:
    """Service targetPort no longer matches the port the container listens on."""

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        port = int(params.get("port", 9999))
        svc = ctx.core.read_namespaced_service(target, ctx.ns)
        ports = [
            {"name": p.name, "port": p.port, "targetPort": port, "protocol": p.protocol}
            for p in svc.spec.ports
        ]
        ctx.core.patch_namespaced_service(target, ctx.ns, {"spec": {"ports": ports}})

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.restore("Service", target)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        svc = ctx.core.read_namespaced_service(target, ctx.ns)
        target_port = svc.spec.ports[0].target_port
        container = ctx.container(target)
        if isinstance(target_port, str):
            named = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
            target_port = named.get(target_port)
        listen = _listen_port(ctx, container)
        if target_port != listen:
            return Verdict(
                False, f"service {target} targetPort {target_port} != listening {listen}"
            )
        eps = ctx.core.read_namespaced_endpoints(target, ctx.ns)
        ready = sum(len(s.addresses or []) for s in eps.subsets or [])
        if ready == 0:
            return Verdict(False, f"service {target} has no ready endpoints")
        return Verdict(True, f"service {target} targets port {listen} with {ready} endpoints")


class ScaleToZero(_RestoresDeployment):
    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.apps_api.patch_namespaced_deployment_scale(target, ctx.ns, {"spec": {"replicas": 0}})

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        return ctx.rollout_ready(target)


class NonexistentNode(_RestoresDeployment):
    """A nodeSelector that no node satisfies: new pods stay Pending (FailedScheduling)."""

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        node = str(params.get("node", "extra-node"))
        body = {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": node}}}}}
        ctx.apps_api.patch_namespaced_deployment(target, ctx.ns, body)
        # The real fault deletes the running pod too, so nothing keeps serving.
        for pod in ctx.pods(target):
            ctx.core.delete_namespaced_pod(pod["metadata"]["name"], ctx.ns)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        selector = ctx.deployment(target)["spec"]["template"]["spec"].get("nodeSelector") or {}
        nodes = {n.metadata.name for n in ctx.core.list_node().items}
        wanted = selector.get("kubernetes.io/hostname")
        if wanted is not None and wanted not in nodes:
            return Verdict(False, f"nodeSelector still names missing node {wanted}")
        return ctx.rollout_ready(target)


def _matches(baseline: Any, live: Any) -> bool:
    """Live equals baseline, ignoring fields the apiserver filled in with defaults."""
    if isinstance(baseline, dict) and isinstance(live, dict):
        return all(_matches(v, live.get(k)) for k, v in baseline.items())
    return bool(baseline == live)


class _PatchesContainer(_RestoresDeployment):
    """Faults that set container fields and are mitigated when they are back to baseline."""

    field_name = ""

    def baseline_value(self, ctx: FaultContext, target: str) -> Any:
        dep = ctx.baseline_object("Deployment", target)
        return dep["spec"]["template"]["spec"]["containers"][0].get(self.field_name)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        live = ctx.container(target).get(self.field_name)
        if not _matches(self.baseline_value(ctx, target), live):
            return Verdict(False, f"{target} container {self.field_name} is still {live!r}")
        return ctx.rollout_ready(target)


class BuggyImage(_PatchesContainer):
    field_name = "image"

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.patch_container(
            target, {"image": str(params.get("image") or _buggy_build(ctx, target))}
        )


def _buggy_build(ctx: FaultContext, target: str) -> str:
    """AIOpsLab's broken geo build for geo; a ``-buggy`` tag of the target's image otherwise."""
    if target == "geo":
        return "yinfangchen/geo:app3"
    return f"{str(ctx.container(target)['image']).rsplit(':', 1)[0]}:{target}-buggy"


class BadRollout(_PatchesContainer):
    """A release whose image tag was never pushed: the new ReplicaSet cannot pull."""

    field_name = "image"

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        image = str(ctx.container(target)["image"]).rsplit(":", 1)[0]
        ctx.patch_container(target, {"image": f"{image}:{params.get('tag', 'v2.0.0-rc1')}"})


class WrongBinary(_PatchesContainer):
    field_name = "command"

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.patch_container(target, {"command": [str(params.get("binary", "geo"))]})


class LivenessProbeMisconfig(_PatchesContainer):
    field_name = "livenessProbe"

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        probe = dict(ctx.container(target).get("livenessProbe") or {})
        listen = _listen_port(ctx, ctx.container(target)) or 8080
        probe.pop("httpGet", None)
        probe["tcpSocket"] = {"port": int(params.get("port", listen + 1))}
        ctx.patch_container(target, {"livenessProbe": probe})


class MemoryLimitTooLow(_RestoresDeployment):
    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        limit = f"{int(params.get('limit_mib', 16))}Mi"
        ctx.patch_container(
            target, {"resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}
        )

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        spec: ServiceSpec = ctx.app.service(target)
        limits = (ctx.container(target).get("resources") or {}).get("limits") or {}
        limit = parse_memory_mib(limits.get("memory"))
        need = spec.working_set_mib + ctx.faults.memory_leak_mib.get(target, 0.0)
        if limit is not None and limit < need:
            return Verdict(False, f"{target} memory limit {limit:.0f}Mi < working set {need:.0f}Mi")
        return ctx.rollout_ready(target)


class CpuThrottling(_RestoresDeployment):
    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        limit = f"{int(params.get('limit_m', 5))}m"
        ctx.patch_container(
            target, {"resources": {"limits": {"cpu": limit}, "requests": {"cpu": limit}}}
        )

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        spec = ctx.app.service(target)
        limits = (ctx.container(target).get("resources") or {}).get("limits") or {}
        cpu = str(limits.get("cpu", ""))
        millis = int(float(cpu[:-1])) if cpu.endswith("m") else int(float(cpu or 0) * 1000)
        if cpu and millis < spec.base_cpu_m * 2:
            return Verdict(
                False, f"{target} cpu limit {cpu} is below its need ({spec.base_cpu_m}m)"
            )
        return ctx.rollout_ready(target)


class BadConfigEnv(_RestoresDeployment):
    """A configuration value pointing a service at the wrong port of its dependency."""

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        spec = ctx.app.service(target)
        dep_name = str(params.get("dependency", spec.calls[0] if spec.calls else target))
        dep = ctx.app.service(dep_name)
        key = str(params.get("key", f"{dep_name.upper().replace('-', '_')}_ADDR"))
        value = str(params.get("value", f"{dep_name}:{dep.port + 1}"))
        ctx.patch_container(target, {"env": [{"name": key, "value": value}]})

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        base = ctx.baseline_object("Deployment", target)
        base_env = base["spec"]["template"]["spec"]["containers"][0].get("env") or []
        live_env = ctx.container(target).get("env") or []
        extra = [e["name"] for e in live_env if e not in base_env]
        if extra:
            return Verdict(False, f"{target} still has changed settings {', '.join(extra)}")
        return ctx.rollout_ready(target)


class PvcPending(_RestoresDeployment):
    """A new volume claim with a storage class nobody provisions: new pods stay Pending."""

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        claim = f"{target}-cache"
        storage_class = str(params.get("storage_class", "fast-ssd"))
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": ctx.ns},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        existing = {
            c.metadata.name for c in ctx.core.list_namespaced_persistent_volume_claim(ctx.ns).items
        }
        if claim not in existing:
            ctx.core.create_namespaced_persistent_volume_claim(ctx.ns, body)
        container = ctx.container(target)
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "volumes": [
                            {"name": "cache", "persistentVolumeClaim": {"claimName": claim}}
                        ],
                        "containers": [
                            {
                                "name": container["name"],
                                "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/app"}],
                            }
                        ],
                    }
                }
            }
        }
        ctx.apps_api.patch_namespaced_deployment(target, ctx.ns, patch)

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        ctx.restore("Deployment", target)
        claims = {
            c.metadata.name for c in ctx.core.list_namespaced_persistent_volume_claim(ctx.ns).items
        }
        if f"{target}-cache" in claims:
            ctx.core.delete_namespaced_persistent_volume_claim(f"{target}-cache", ctx.ns)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        volumes = ctx.deployment(target)["spec"]["template"]["spec"].get("volumes") or []
        claims = {
            c.metadata.name: c.status.phase
            for c in ctx.core.list_namespaced_persistent_volume_claim(ctx.ns).items
        }
        for volume in volumes:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claims.get(claim) != "Bound":
                return Verdict(
                    False, f"{target} mounts claim {claim} which is {claims.get(claim, 'missing')}"
                )
        return ctx.rollout_ready(target)


class RedeployWithoutPv:
    """The app was redeployed but its old PersistentVolumes were kept: new claims can't bind.

    A retained volume still carries a claimRef to the deleted claim, so it is
    ``Released``; the new claim waits (no provisioner) and the database pod stays
    Pending. Freeing the volume's claimRef, or recreating the claim, mitigates it.
    Without a target, every stateful service of the app is redeployed.
    """

    def _claims(self, ctx: FaultContext, target: str) -> list[tuple[str, dict[str, Any]]]:
        """(deployment, claim) pairs: the target's, or every stateful service's."""
        pairs = []
        for obj in ctx.baseline:
            if obj["kind"] != "Deployment" or (target and obj["metadata"]["name"] != target):
                continue
            for volume in obj["spec"]["template"]["spec"].get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    pairs.append(
                        (
                            obj["metadata"]["name"],
                            ctx.baseline_object("PersistentVolumeClaim", claim),
                        )
                    )
        if not pairs:
            raise ValueError(f"{target or ctx.app.name} has no persistent volume claim")
        return pairs

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        for deployment, claim in self._claims(ctx, target):
            name = claim["metadata"]["name"]
            ctx.apps_api.delete_namespaced_deployment(deployment, ctx.ns)
            ctx.core.delete_namespaced_persistent_volume_claim(name, ctx.ns)
            _wait_gone(ctx, name)
            fresh = json.loads(json.dumps(claim))
            fresh["spec"].pop("volumeName", None)
            ctx.core.create_namespaced_persistent_volume_claim(ctx.ns, fresh)
            ctx.restore("Deployment", deployment)

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        claims = {claim["metadata"]["name"] for _, claim in self._claims(ctx, target)}
        for volume in ctx.core.list_persistent_volume().items:
            ref = volume.spec.claim_ref
            if (
                ref is not None
                and ref.namespace == ctx.ns
                and ref.name in claims
                and (volume.status.phase == "Released")
            ):
                ctx.core.patch_persistent_volume(volume.metadata.name, {"spec": {"claimRef": None}})
        for deployment, _ in self._claims(ctx, target):
            ctx.restore("Deployment", deployment)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        verdicts = []
        for deployment, claim in self._claims(ctx, target):
            name = claim["metadata"]["name"]
            phase = ctx.core.read_namespaced_persistent_volume_claim(name, ctx.ns).status.phase
            verdicts.append(Verdict(phase == "Bound", f"claim {name} is {phase}"))
            verdicts.append(ctx.rollout_ready(deployment))
        return all_of(*verdicts)


def _wait_gone(ctx: FaultContext, claim: str) -> None:
    for _ in range(50):
        names = {
            c.metadata.name for c in ctx.core.list_namespaced_persistent_volume_claim(ctx.ns).items
        }
        if claim not in names:
            return
        time.sleep(0.1)


class FeatureFlag:
    """Turns on one of the astronomy shop's failure flags in flagd's ConfigMap."""

    def _set(self, ctx: FaultContext, flag: str, variant: str) -> None:
        cm = ctx.core.read_namespaced_config_map("flagd-config", ctx.ns)
        key = next(iter(cm.data))
        doc = json.loads(cm.data[key])
        if flag not in doc.get("flags", {}):
            raise ValueError(f"flagd-config has no flag {flag!r}")
        doc["flags"][flag]["defaultVariant"] = variant
        ctx.core.patch_namespaced_config_map(
            "flagd-config", ctx.ns, {"data": {key: json.dumps(doc, indent=2)}}
        )

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        self._set(ctx, str(params["flag"]), "on")

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        self._set(ctx, str(params["flag"]), "off")

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        cm = ctx.core.read_namespaced_config_map("flagd-config", ctx.ns)
        doc = json.loads(next(iter(cm.data.values())))
        variant = doc["flags"][str(params["flag"])]["defaultVariant"]
        if variant != "off":
            return Verdict(False, f"flag {params['flag']} is {variant}")
        return all_of(Verdict(True, f"flag {params['flag']} is off"), ctx.rollout_ready(target))


class NoisyNeighbour:
    """A batch job placed beside the target burns the node's CPU."""

    def _name(self, target: str) -> str:
        return f"batch-reindex-{target}"[:50]

    def inject(self, ctx: FaultContext, target: str, params: Params) -> None:
        pods = ctx.pods(target)
        node = pods[0]["spec"].get("nodeName") if pods else None
        labels = {"app.kubernetes.io/name": self._name(target), NEIGHBOUR_LABEL: target}
        spec: dict[str, Any] = {
            "containers": [
                {
                    "name": "reindex",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "reindex --all"],
                    "resources": {"requests": {"cpu": "100m"}},
                }
            ]
        }
        if node:
            spec["nodeName"] = node
        cpu = str(int(params.get("cpu_m", 4000)))
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self._name(target),
                "namespace": ctx.ns,
                "labels": labels,
                "annotations": {NEIGHBOUR_CPU_ANNOTATION: cpu},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        }
        ctx.apps_api.create_namespaced_deployment(ctx.ns, body)

    def recover(self, ctx: FaultContext, target: str, params: Params) -> None:
        names = {d.metadata.name for d in ctx.apps_api.list_namespaced_deployment(ctx.ns).items}
        if self._name(target) in names:
            ctx.apps_api.delete_namespaced_deployment(self._name(target), ctx.ns)

    def check(self, ctx: FaultContext, target: str, params: Params) -> Verdict:
        deps = {d.metadata.name: d for d in ctx.apps_api.list_namespaced_deployment(ctx.ns).items}
        neighbour = deps.get(self._name(target))
        if neighbour is not None and (neighbour.spec.replicas or 0) > 0:
            return Verdict(False, f"{self._name(target)} still runs beside {target}")
        return ctx.rollout_ready(target)
