"""``kubectl describe``-like text: the object's key facts, then the Events about it.

Describe is how responders find a fault's reason: the last termination's exit
code and message, a probe on the wrong port, a FailedScheduling event, a
Service whose TargetPort differs from the container's. The text follows
kubectl's layout (``Key:  value`` lines, indented containers, an Events table)
for the kinds incidents involve, and falls back to YAML plus Events for others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client

from agents.probe.render import Obj, age, endpoint_addresses, event_time, pod_status, strip
from agents.probe.resources import ENDPOINTS, EVENTS, PODS, REPLICASETS, Resource
from agents.tools.kube import get_items
from agents.tools.table import render_table

Lines = list[str]


def describe(api: client.ApiClient, resource: Resource, obj: Obj) -> str:
    """The describe text for one object, with its Events (read through ``api``)."""
    kind = resource.kind
    body = {
        "Pod": _pod,
        "Deployment": _deployment,
        "Service": _service,
        "Node": _node,
        "PersistentVolumeClaim": _pvc,
    }.get(kind)
    lines = _header(obj)
    lines += body(api, obj) if body else _generic(obj)
    lines += _events(api, resource, obj)
    return "\n".join(lines) + "\n"


def _kv(key: str, value: object, indent: int = 0, width: int = 16) -> str:
    text = "<none>" if value in (None, "", [], {}) else str(value)
    return f"{' ' * indent}{(key + ':').ljust(width)}{text}"


def _map_lines(key: str, mapping: dict[str, str] | None, indent: int = 0) -> Lines:
    items = [f"{k}={v}" for k, v in (mapping or {}).items()]
    if not items:
        return [_kv(key, None, indent)]
    pad = " " * (indent + 16)
    return [_kv(key, items[0], indent)] + [pad + item for item in items[1:]]


def _header(obj: Obj) -> Lines:
    meta = obj.get("metadata") or {}
    lines = [_kv("Name", meta.get("name"))]
    if meta.get("namespace"):
        lines.append(_kv("Namespace", meta["namespace"]))
    lines += _map_lines("Labels", meta.get("labels"))
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    lines += _map_lines("Annotations", annotations)
    return lines


# -- pods and containers ---------------------------------------------------------------


def _pod(api: client.ApiClient, pod: Obj) -> Lines:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    lines = [
        _kv(
            "Node",
            f"{spec.get('nodeName')}/{status.get('hostIP')}" if spec.get("nodeName") else None,
        ),
        _kv("Start Time", status.get("startTime")),
        _kv("Status", pod_status(pod)),
        _kv("IP", status.get("podIP")),
        _kv("Controlled By", ", ".join(f"{o['kind']}/{o['name']}" for o in owners)),
        "Containers:",
    ]
    by_name = {cs.get("name"): cs for cs in status.get("containerStatuses") or []}
    for container in spec.get("containers") or []:
        lines += _container(container, by_name.get(container.get("name")))
    lines += ["Conditions:", "  Type              Status"]
    lines += [f"  {c.get('type', ''):<18}{c.get('status')}" for c in status.get("conditions") or []]
    lines += _volumes(spec)
    lines += _map_lines("Node-Selectors", spec.get("nodeSelector"))
    return lines


def _container(container: Obj, cs: Obj | None, indent: int = 2) -> Lines:
    pad = indent + 2
    lines = [f"{' ' * indent}{container.get('name')}:"]
    lines.append(_kv("Image", container.get("image"), pad))
    ports = [
        f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in container.get("ports") or []
    ]
    lines.append(_kv("Port", ", ".join(ports), pad))
    for key in ("command", "args"):
        if container.get(key):
            lines.append(f"{' ' * pad}{key.capitalize()}:")
            lines += [f"{' ' * (pad + 2)}{word}" for word in container[key]]
    if cs is not None:
        lines += _state("State", cs.get("state") or {}, pad)
        if cs.get("lastState"):
            lines += _state("Last State", cs["lastState"], pad)
        lines += [
            _kv("Ready", cs.get("ready"), pad),
            _kv("Restart Count", cs.get("restartCount", 0), pad),
        ]
    lines += _resources(container.get("resources") or {}, pad)
    for probe in ("liveness", "readiness", "startup"):
        found = container.get(f"{probe}Probe")
        if found:
            lines.append(_kv(probe.capitalize(), probe_text(found), pad))
    lines += _env(container, pad)
    mounts = [
        f"{m.get('mountPath')} from {m.get('name')}" for m in container.get("volumeMounts") or []
    ]
    lines += [f"{' ' * pad}Mounts:"] + [f"{' ' * (pad + 2)}{m}" for m in mounts or ["<none>"]]
    return lines


def _state(label: str, state: Obj, pad: int) -> Lines:
    if not state:
        return [_kv(label, None, pad)]
    name, detail = next(iter(state.items()))
    lines = [_kv(label, name.capitalize(), pad)]
    keys = {
        "reason": "Reason",
        "message": "Message",
        "exitCode": "Exit Code",
        "startedAt": "Started",
        "finishedAt": "Finished",
    }
    for key, title in keys.items():
        if isinstance(detail, dict) and detail.get(key) not in (None, ""):
            lines.append(_kv(title, detail[key], pad + 2))
    return lines


def probe_text(probe: Obj) -> str:
    """kubectl's one-line probe summary: ``tcp-socket :8083 delay=15s ... #failure=3``."""
    if "tcpSocket" in probe:
        how = f"tcp-socket :{probe['tcpSocket'].get('port')}"
    elif "httpGet" in probe:
        get = probe["httpGet"]
        scheme = str(get.get("scheme", "HTTP")).lower()
        how = f"http-get {scheme}://:{get.get('port')}{get.get('path', '/')}"
    elif "exec" in probe:
        how = "exec " + str((probe["exec"] or {}).get("command"))
    else:
        how = "unknown"
    return (
        f"{how} delay={probe.get('initialDelaySeconds', 0)}s "
        f"timeout={probe.get('timeoutSeconds', 1)}s "
        f"period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)} "
        f"#failure={probe.get('failureThreshold', 3)}"
    )


def _resources(resources: Obj, pad: int) -> Lines:
    lines: Lines = []
    for key in ("limits", "requests"):
        values = resources.get(key) or {}
        if values:
            lines.append(f"{' ' * pad}{key.capitalize()}:")
            lines += [_kv(k, v, pad + 2, 10) for k, v in values.items()]
    return lines


def _env(container: Obj, pad: int) -> Lines:
    env = container.get("env") or []
    lines = [f"{' ' * pad}Environment:" + ("" if env else "  <none>")]
    for item in env:
        source = item.get("valueFrom") or {}
        if "value" in item:
            value = item["value"]
        elif "secretKeyRef" in source:  # a reference, as kubectl shows it: never the value
            ref = source["secretKeyRef"] or {}
            value = f"<set to the key '{ref.get('key')}' in secret '{ref.get('name')}'>"
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"] or {}
            value = f"<set to the key '{ref.get('key')}' of config map '{ref.get('name')}'>"
        elif "fieldRef" in source:
            value = f"({(source['fieldRef'] or {}).get('fieldPath')})"
        else:
            value = "<set from a reference>"
        lines.append(f"{' ' * (pad + 2)}{item.get('name')}:  {value}")
    return lines


def _volumes(spec: Obj) -> Lines:
    lines = ["Volumes:"]
    for volume in spec.get("volumes") or []:
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"].get("claimName")
            what = f"PersistentVolumeClaim (ClaimName: {claim})"
        elif "configMap" in volume:
            what = f"ConfigMap (Name: {volume['configMap'].get('name')})"
        else:
            what = ", ".join(k for k in volume if k != "name")
        lines.append(f"  {volume.get('name')}:  {what}")
    return lines if len(lines) > 1 else ["Volumes:  <none>"]


# -- deployments, services, nodes, claims ------------------------------------------------


def _deployment(api: client.ApiClient, dep: Obj) -> Lines:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    replicas = (
        f"{spec.get('replicas', 1)} desired | {status.get('updatedReplicas', 0)} updated | "
        f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
        f"{status.get('unavailableReplicas', 0)} unavailable"
    )
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    lines = [
        _kv("Selector", ",".join(f"{k}={v}" for k, v in selector.items())),
        _kv("Replicas", replicas),
        _kv("StrategyType", (spec.get("strategy") or {}).get("type", "RollingUpdate")),
        "Pod Template:",
    ]
    lines += _map_lines("Labels", (template.get("metadata") or {}).get("labels"), 2)
    lines.append("  Containers:")
    for container in (template.get("spec") or {}).get("containers") or []:
        lines += _container(container, None, indent=4)
    lines += ["  " + line for line in _volumes(template.get("spec") or {})]
    lines += _map_lines("Node-Selectors", (template.get("spec") or {}).get("nodeSelector"), 2)
    lines += ["Conditions:", "  Type           Status  Reason"]
    for cond in status.get("conditions") or []:
        lines.append(f"  {cond.get('type', ''):<15}{cond.get('status', ''):<8}{cond.get('reason')}")
    lines += _replica_sets(api, dep)
    return lines


def _replica_sets(api: client.ApiClient, dep: Obj) -> Lines:
    meta = dep["metadata"]
    sets = [
        rs
        for rs in get_items(api, REPLICASETS.path(meta["namespace"]))
        if any(o.get("uid") == meta.get("uid") for o in rs["metadata"].get("ownerReferences") or [])
    ]
    current = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
    new = [rs for rs in sets if _revision(rs) == current]
    old = [rs for rs in sets if _revision(rs) != current and (rs.get("spec") or {}).get("replicas")]
    return [
        _kv("OldReplicaSets", ", ".join(_rs_text(rs) for rs in old)),
        _kv("NewReplicaSet", ", ".join(_rs_text(rs) for rs in new)),
    ]


def _revision(rs: Obj) -> str | None:
    annotations = rs["metadata"].get("annotations") or {}
    value = annotations.get("deployment.kubernetes.io/revision")
    return str(value) if value is not None else None


def _rs_text(rs: Obj) -> str:
    status = rs.get("status") or {}
    return (
        f"{rs['metadata']['name']} ({status.get('replicas', 0)}/"
        f"{(rs.get('spec') or {}).get('replicas', 0)} replicas created, revision {_revision(rs)})"
    )


def _service(api: client.ApiClient, svc: Obj) -> Lines:
    spec, meta = svc.get("spec") or {}, svc["metadata"]
    lines = [
        _kv("Selector", ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())),
        _kv("Type", spec.get("type", "ClusterIP")),
        _kv("IP", spec.get("clusterIP")),
    ]
    for port in spec.get("ports") or []:
        proto = port.get("protocol", "TCP")
        lines.append(_kv("Port", f"{port.get('name', '<unset>')}  {port.get('port')}/{proto}"))
        lines.append(_kv("TargetPort", f"{port.get('targetPort')}/{proto}"))
    try:
        eps = get_items(
            api,
            ENDPOINTS.path(meta["namespace"]),
            {"fieldSelector": f"metadata.name={meta['name']}"},
        )
    except Exception:  # the Endpoints line is a courtesy; describe the Service regardless
        eps = []
    lines.append(_kv("Endpoints", endpoint_addresses(eps[0]) if eps else None))
    return lines


def _node(api: client.ApiClient, node: Obj) -> Lines:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    taints = [
        f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in spec.get("taints") or []
    ]
    lines = [
        _kv("Taints", ", ".join(taints)),
        _kv("Unschedulable", bool(spec.get("unschedulable"))),
    ]
    lines += ["Conditions:", "  Type              Status  Reason"]
    for cond in status.get("conditions") or []:
        lines.append(f"  {cond.get('type', ''):<18}{cond.get('status', ''):<8}{cond.get('reason')}")
    lines += ["Allocatable:"] + [
        _kv(k, v, 2, 20) for k, v in (status.get("allocatable") or {}).items()
    ]
    return lines


def _pvc(api: client.ApiClient, pvc: Obj) -> Lines:
    spec, status, meta = pvc.get("spec") or {}, pvc.get("status") or {}, pvc["metadata"]
    pods = get_items(api, PODS.path(meta["namespace"]))
    users = [
        p["metadata"]["name"]
        for p in pods
        if any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]
            for v in (p.get("spec") or {}).get("volumes") or []
        )
    ]
    return [
        _kv("StorageClass", spec.get("storageClassName")),
        _kv("Status", status.get("phase")),
        _kv("Volume", spec.get("volumeName")),
        _kv("Capacity", (status.get("capacity") or {}).get("storage")),
        _kv("Access Modes", ",".join(spec.get("accessModes") or [])),
        _kv("Used By", ", ".join(users)),
    ]


def _generic(obj: Obj) -> Lines:
    clean = strip(obj)
    rest = {k: v for k, v in clean.items() if k not in ("apiVersion", "kind", "metadata")}
    text = yaml.safe_dump(rest, sort_keys=False, default_flow_style=False) if rest else ""
    return [line for line in text.splitlines() if line]


# -- events -----------------------------------------------------------------------------


def _events(api: client.ApiClient, resource: Resource, obj: Obj) -> Lines:
    meta = obj["metadata"]
    selector = f"involvedObject.name={meta['name']},involvedObject.kind={resource.kind}"
    namespace = meta.get("namespace") if resource.namespaced else None
    try:
        events = get_items(api, EVENTS.path(namespace or None), {"fieldSelector": selector})
    except Exception:  # events are context; a describe without them still helps
        return ["Events:  <unavailable>"]
    return events_table(events)


def events_table(events: Sequence[Obj], now: datetime | None = None) -> Lines:
    if not events:
        return ["Events:  <none>"]
    moment = now or datetime.now(UTC)
    ordered = sorted(events, key=lambda e: event_time(e) or "")
    rows = [_event_row(e, moment) for e in ordered]
    table = render_table(["Type", "Reason", "Age", "From", "Message"], rows)
    return ["Events:"] + ["  " + line for line in table.splitlines()]


def _event_row(ev: Obj, now: datetime) -> list[Any]:
    count = int(ev.get("count") or 1)
    seen = age(event_time(ev), now) + (
        f" (x{count} over {age(ev.get('firstTimestamp'), now)})" if count > 1 else ""
    )
    source = (ev.get("source") or {}).get("component") or ev.get("reportingComponent")
    return [
        ev.get("type"),
        ev.get("reason"),
        seen,
        source,
        " ".join(str(ev.get("message", "")).split()),
    ]
