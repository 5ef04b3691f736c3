"""Simulated nodes: Node objects, leases, pod status and container logs.

There are no containers in the lab, but everything above the kubelet is real:
the scheduler binds pods to these nodes, the simulator writes the status a
kubelet would (so ReplicaSets, Endpoints and Deployments react for real), emits
kubelet events, finalises deleted pods, and serves ``/containerLogs`` over TLS so
``kubectl logs`` and the Python client's ``read_namespaced_pod_log`` work through
the apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from kubernetes import client
from kubernetes.client.rest import ApiException

from lab.kubelet.containers import ContainerSim, Event, NodeView, rfc3339, step
from lab.kubelet.images import ImageCatalog

log = logging.getLogger(__name__)

SERVICE_LABEL = "app.kubernetes.io/name"
RECONCILE_S = 0.25
LEASE_S = 10.0


class LogSource(Protocol):
    def logs_for(
        self,
        namespace: str,
        service: str,
        pod: str,
        container: str,
        *,
        previous: bool = False,
        since: datetime | timedelta | None = None,
        tail: int | None = None,
        limit_bytes: int | None = None,
        timestamps: bool = False,
    ) -> str: ...


@dataclass
class PodRecord:
    namespace: str
    name: str
    uid: str
    node: str
    service: str
    ip: str
    containers: dict[str, ContainerSim] = field(default_factory=dict)
    last_status: str = ""
    events_seen: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """Callbacks into the rest of the lab (the app model and the lab's own state)."""

    memory_need_mib: Callable[[str, str], float]
    on_container_start: Callable[[str, str, str], None] = lambda ns, svc, pod: None


class KubeletSimulator:
    """Nodes whose kubelet is this object."""

    def __init__(
        self,
        *,
        api: client.ApiClient,
        images: ImageCatalog,
        logs: LogSource,
        world: World,
        cert: Path,
        key: Path,
        nodes: tuple[str, ...] = ("lab-node-1", "lab-node-2", "lab-node-3"),
        port: int = 0,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.images = images
        self.logs = logs
        self.world = world
        self.nodes = nodes
        self.port = port
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(str(cert), str(key))
        self.pods: dict[str, PodRecord] = {}
        self.failing_pods: set[tuple[str, str]] = set()
        self._ips: dict[str, int] = {n: 2 for n in nodes}
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._configmaps: dict[str, dict[str, dict[str, str]]] = {}
        self._services: dict[str, dict[str, frozenset[int]]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._serve_logs()
        await asyncio.to_thread(self._register_nodes)
        self._tasks = [
            asyncio.create_task(self._forever(self._renew_leases, LEASE_S), name="kubelet-leases"),
            asyncio.create_task(self._forever(self.reconcile, RECONCILE_S), name="kubelet-pods"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner:
            await self._runner.cleanup()

    async def _forever(self, fn: Callable[[], Any], period: float) -> None:
        while True:
            try:
                await asyncio.to_thread(fn)
            except Exception:
                log.exception("kubelet simulator: %s failed; retrying", fn.__name__)
            await asyncio.sleep(period)

    # -- nodes -----------------------------------------------------------------------------

    def _node_body(self, name: str) -> dict[str, Any]:
        now = rfc3339(time.time())
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHas{r}",
                "message": m,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for t, r, m in (
                ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "aoi-lab",
                },
            },
            "spec": {"podCIDR": f"10.244.{self.nodes.index(name) + 1}.0/24"},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": conditions,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "nodeInfo": {
                    "kubeletVersion": "v1.20.2",
                    "kubeProxyVersion": "v1.20.2",
                    "containerRuntimeVersion": "containerd://1.6.20",
                    "osImage": "AOI lab node",
                    "kernelVersion": "6.1.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "machineID": name,
                    "systemUUID": name,
                    "bootID": name,
                },
            },
        }

    def _register_nodes(self) -> None:
        for name in self.nodes:
            body = self._node_body(name)
            try:
                self.core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self.core.delete_node(name)
                self.core.create_node(body)
        self._renew_leases()

    def _renew_leases(self) -> None:
        now = time.time()
        # MicroTime must carry a fraction; isoformat() drops a zero one.
        micro = datetime.fromtimestamp(now, UTC).replace(microsecond=int(now * 1e6) % 10**6 or 1)
        for name in self.nodes:
            body = {
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro},
            }
            try:
                self.coordination.patch_namespaced_lease(name, "kube-node-lease", body)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.coordination.create_namespaced_lease("kube-node-lease", body)
            stamp = rfc3339(now)
            status = self._node_body(name)["status"]
            for cond in status["conditions"]:
                cond["lastHeartbeatTime"] = stamp
            self.core.patch_node_status(name, {"status": {"conditions": status["conditions"]}})

    # -- pods ------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """One pass: write every bound pod's status, finalise deleted pods."""
        resp = self.core.list_pod_for_all_namespaces(_preload_content=False)
        pods = json.loads(resp.data)["items"]
        self._refresh_namespaces({p["metadata"]["namespace"] for p in pods})
        seen: set[str] = set()
        now = time.time()
        for pod in pods:
            if pod["spec"].get("nodeName") not in self.nodes:
                continue
            seen.add(pod["metadata"]["uid"])
            if pod["metadata"].get("deletionTimestamp"):
                self._finalise(pod)
                continue
            self._sync_pod(pod, now)
        for uid in set(self.pods) - seen:
            del self.pods[uid]

    def _refresh_namespaces(self, namespaces: set[str]) -> None:
        cms = json.loads(self.core.list_config_map_for_all_namespaces(_preload_content=False).data)[
            "items"
        ]
        svcs = json.loads(self.core.list_service_for_all_namespaces(_preload_content=False).data)[
            "items"
        ]
        self._configmaps = {ns: {} for ns in namespaces}
        for cm in cms:
            ns = cm["metadata"]["namespace"]
            self._configmaps.setdefault(ns, {})[cm["metadata"]["name"]] = cm.get("data") or {}
        self._services = {ns: {} for ns in namespaces}
        for svc in svcs:
            ports = frozenset(int(p["port"]) for p in svc["spec"].get("ports") or [])
            ns = svc["metadata"]["namespace"]
            self._services.setdefault(ns, {})[svc["metadata"]["name"]] = ports

    def _finalise(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions={"uid": meta["uid"]}
                ),
            )

    def _record(self, pod: Mapping[str, Any], now: float) -> PodRecord:
        meta = pod["metadata"]
        record = self.pods.get(meta["uid"])
        if record is None:
            node = pod["spec"]["nodeName"]
            self._ips[node] += 1
            index = self._ips[node]
            record = PodRecord(
                namespace=meta["namespace"],
                name=meta["name"],
                uid=meta["uid"],
                node=node,
                service=(meta.get("labels") or {}).get(SERVICE_LABEL, meta["name"]),
                ip=f"10.244.{self.nodes.index(node) + 1}.{index % 250 + 2}",
            )
            self.pods[meta["uid"]] = record
        for ctr in pod["spec"]["containers"]:
            record.containers.setdefault(ctr["name"], ContainerSim(first_seen=now))
        return record

    def _sync_pod(self, pod: Mapping[str, Any], now: float) -> None:
        record = self._record(pod, now)
        view = NodeView(
            memory_need_mib=self.world.memory_need_mib(record.namespace, record.service),
            service_ports=self._services.get(record.namespace, {}),
            config_maps=self._configmaps.get(record.namespace, {}),
            failing=(record.namespace, record.name) in self.failing_pods,
        )
        statuses = []
        for ctr in pod["spec"]["containers"]:
            sim = record.containers[ctr["name"]]
            was_running = sim.started_at is not None
            statuses.append(
                step(sim, ctr, images=self.images, view=view, now=now, pod_ip=record.ip)
            )
            if sim.started_at is not None and not was_running:
                self.world.on_container_start(record.namespace, record.service, record.name)
            for event in sim.take_events():
                self._emit(record, ctr["name"], event)
        body = self._pod_status(pod, record, statuses)
        encoded = json.dumps(body, sort_keys=True)
        if encoded != record.last_status:
            try:
                self.core.patch_namespaced_pod_status(record.name, record.namespace, body)
                record.last_status = encoded
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _pod_status(
        self, pod: Mapping[str, Any], record: PodRecord, statuses: list[dict[str, Any]]
    ) -> dict[str, Any]:
        started = all(s.get("started") or "lastState" in s for s in statuses)
        ready = all(s["ready"] for s in statuses)
        created = pod["metadata"].get("creationTimestamp")
        not_ready = [s["name"] for s in statuses if not s["ready"]]
        reason = None if ready else "ContainersNotReady"
        message = None if ready else f"containers with unready status: [{' '.join(not_ready)}]"
        conditions = [
            {"type": "Initialized", "status": "True", "lastTransitionTime": created},
            {
                "type": "Ready",
                "status": str(ready),
                "reason": reason,
                "message": message,
                "lastTransitionTime": created,
            },
            {
                "type": "ContainersReady",
                "status": str(ready),
                "reason": reason,
                "message": message,
                "lastTransitionTime": created,
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
        ]
        return {
            "status": {
                "phase": "Running" if started else "Pending",
                "hostIP": "127.0.0.1",
                "podIP": record.ip,
                "podIPs": [{"ip": record.ip}],
                "startTime": created,
                "qosClass": "Burstable",
                "conditions": conditions,
                "containerStatuses": statuses,
            }
        }

    def _emit(self, record: PodRecord, container: str, event: Event) -> None:
        key = f"{event.reason}:{event.message}"
        now = rfc3339(time.time())
        name = record.events_seen.get(key)
        if name:
            with contextlib.suppress(ApiException):
                current = self.core.read_namespaced_event(name, record.namespace)
                self.core.patch_namespaced_event(
                    name,
                    record.namespace,
                    {"count": (current.count or 1) + 1, "lastTimestamp": now},
                )
            return
        name = f"{record.name}.{int(time.time() * 1e6):x}"
        body = {
            "metadata": {"name": name, "namespace": record.namespace},
            "involvedObject": {
                "kind": "Pod",
                "namespace": record.namespace,
                "name": record.name,
                "uid": record.uid,
                "apiVersion": "v1",
                "fieldPath": f"spec.containers{{{container}}}",
            },
            "reason": event.reason,
            "message": event.message,
            "type": event.type,
            "source": {"component": "kubelet", "host": record.node},
            "reportingComponent": "kubelet",
            "reportingInstance": record.node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_event(record.namespace, body)
            record.events_seen[key] = name

    # -- faults at the node level ---------------------------------------------------------

    def kill_container(self, namespace: str, pod: str, container: str | None = None) -> bool:
        """Kill a running container once (it restarts), like `crictl stop`."""
        for record in self.pods.values():
            if record.namespace == namespace and record.name == pod:
                for name, sim in record.containers.items():
                    if container in (None, name):
                        sim.kill_requested = True
                return True
        return False

    def find_pods(self, namespace: str, service: str) -> list[str]:
        return sorted(
            r.name for r in self.pods.values() if r.namespace == namespace and r.service == service
        )

    # -- logs ------------------------------------------------------------------------------

    async def _serve_logs(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

    def _pod_by_name(self, namespace: str, pod: str) -> PodRecord | None:
        for record in self.pods.values():
            if record.namespace == namespace and record.name == pod:
                return record
        return None

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        record = self._pod_by_name(ns, pod)
        if record is None or container not in record.containers:
            raise web.HTTPNotFound(text=f"container {container!r} in pod {pod!r} not found")
        query = request.query
        since: datetime | timedelta | None = None
        if "sinceSeconds" in query:
            since = timedelta(seconds=float(query["sinceSeconds"]))
        elif "sinceTime" in query:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
        try:
            text = self.logs.logs_for(
                ns,
                record.service,
                pod,
                container,
                previous=query.get("previous") == "true",
                since=since,
                tail=int(query["tailLines"]) if "tailLines" in query else None,
                limit_bytes=int(query["limitBytes"]) if "limitBytes" in query else None,
                timestamps=query.get("timestamps") == "true",
            )
        except LookupError as exc:
            # What a kubelet answers for a waiting container or a missing previous one.
            raise web.HTTPBadRequest(text=str(exc).strip("'\"")) from None
        if query.get("follow") != "true":
            return web.Response(text=text, content_type="text/plain")
        return await self._follow(request, record, container, text)

    async def _follow(
        self, request: web.Request, record: PodRecord, container: str, first: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(first.encode())
        last = datetime.now(UTC)
        timestamps = request.query.get("timestamps") == "true"
        while record.uid in self.pods:
            await asyncio.sleep(0.5)
            with contextlib.suppress(LookupError):
                text = self.logs.logs_for(
                    record.namespace,
                    record.service,
                    record.name,
                    container,
                    since=last,
                    timestamps=timestamps,
                )
                if text:
                    await resp.write(text.encode())
            last = datetime.now(UTC)
        return resp
