"""Render API objects the way kubectl shows them: tables for ``get``, YAML for ``-o yaml``.

The model was trained on kubectl output, and responders read it at a glance.
Only the columns kubectl prints are computed here (pod STATUS follows kubectl's
own rules: a waiting or terminated reason wins over the phase). ``managedFields``
are dropped from YAML and JSON: they are long and say nothing about a fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from agents.tools.table import render_table

Obj = dict[str, Any]
Row = list[object]


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(stamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short age: 45s, 7m, 3h, 2d."""
    when = parse_time(stamp)
    if when is None:
        return "<unknown>"
    seconds = max(int(((now or datetime.now(UTC)) - when).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def strip(obj: Obj) -> Obj:
    """A copy without managedFields (and the last-applied annotation), as kubectl users want."""
    clean = json.loads(json.dumps(obj))
    meta = clean.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return dict(clean)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files in ConfigMaps) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(items: Sequence[Obj], *, single: bool) -> str:
    doc = (
        strip(items[0])
        if single
        else {"apiVersion": "v1", "kind": "List", "items": [strip(i) for i in items]}
    )
    return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False))


def to_json(items: Sequence[Obj], *, single: bool) -> str:
    doc = (
        strip(items[0])
        if single
        else {"apiVersion": "v1", "kind": "List", "items": [strip(i) for i in items]}
    )
    return json.dumps(doc, indent=2) + "\n"


# -- pods ---------------------------------------------------------------------------


def pod_status(pod: Obj) -> str:
    """kubectl's STATUS column."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    reason = status.get("reason") or status.get("phase") or "Unknown"
    running_ready = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            term = state["terminated"]
            reason = term.get("reason") or f"ExitCode:{term.get('exitCode')}"
        elif "running" in state and cs.get("ready"):
            running_ready = True
    if reason == "Completed" and running_ready:
        return "Running"
    return str(reason)


def pod_ready(pod: Obj) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or statuses)
    return f"{sum(1 for cs in statuses if cs.get('ready'))}/{total}"


def pod_restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(cs.get("restartCount") or 0) for cs in statuses)


def _pod_row(pod: Obj, now: datetime, wide: bool) -> Row:
    status = pod.get("status") or {}
    row: Row = [
        pod["metadata"]["name"],
        pod_ready(pod),
        pod_status(pod),
        pod_restarts(pod),
        age(pod["metadata"].get("creationTimestamp"), now),
    ]
    if wide:
        row += [status.get("podIP"), (pod.get("spec") or {}).get("nodeName")]
    return row


# -- workloads and services ---------------------------------------------------------------


def _deployment_row(dep: Obj, now: datetime, wide: bool) -> Row:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = spec.get("replicas", 1)
    row: Row = [
        dep["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{want}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(dep["metadata"].get("creationTimestamp"), now),
    ]
    if wide:
        containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        row += [
            ",".join(c["name"] for c in containers),
            ",".join(c.get("image", "") for c in containers),
            _labels(selector),
        ]
    return row


def _replicaset_row(rs: Obj, now: datetime, wide: bool) -> Row:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    row: Row = [
        rs["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(rs["metadata"].get("creationTimestamp"), now),
    ]
    if wide:
        containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
        row += [",".join(c.get("image", "") for c in containers)]
    return row


def service_ports(svc: Obj) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports)


def _service_row(svc: Obj, now: datetime, wide: bool) -> Row:
    spec = svc.get("spec") or {}
    row: Row = [
        svc["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP"),
        None,
        service_ports(svc),
        age(svc["metadata"].get("creationTimestamp"), now),
    ]
    if wide:
        row.append(_labels(spec.get("selector") or {}))
    return row


def endpoint_addresses(ep: Obj) -> str:
    found = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for address in subset.get("addresses") or []:
            found += [
                f"{address.get('ip')}:{port}" if port else address.get("ip") for port in ports
            ]
    return ",".join(str(x) for x in found)


def _endpoints_row(ep: Obj, now: datetime, wide: bool) -> Row:
    return [
        ep["metadata"]["name"],
        endpoint_addresses(ep),
        age(ep["metadata"].get("creationTimestamp"), now),
    ]


# -- cluster objects -------------------------------------------------------------------


def _node_row(node: Obj, now: datetime, wide: bool) -> Row:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready: Obj = next((c for c in conditions if c.get("type") == "Ready"), {})
    status = "Ready" if ready.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = ",".join(k.rsplit("/", 1)[-1] for k in labels if k.startswith("node-role."))
    version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
    return [
        node["metadata"]["name"],
        status,
        roles,
        age(node["metadata"].get("creationTimestamp"), now),
        version,
    ]


def _pvc_row(pvc: Obj, now: datetime, wide: bool) -> Row:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    return [
        pvc["metadata"]["name"],
        status.get("phase"),
        spec.get("volumeName"),
        (status.get("capacity") or {}).get("storage"),
        ",".join(_short_modes(status.get("accessModes") or [])),
        spec.get("storageClassName"),
        age(pvc["metadata"].get("creationTimestamp"), now),
    ]


def _pv_row(pv: Obj, now: datetime, wide: bool) -> Row:
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    claim = spec.get("claimRef") or {}
    claim_text = f"{claim.get('namespace')}/{claim.get('name')}" if claim else ""
    return [
        pv["metadata"]["name"],
        (spec.get("capacity") or {}).get("storage"),
        ",".join(_short_modes(spec.get("accessModes") or [])),
        spec.get("persistentVolumeReclaimPolicy"),
        status.get("phase"),
        claim_text,
        spec.get("storageClassName"),
        age(pv["metadata"].get("creationTimestamp"), now),
    ]


def _short_modes(modes: Sequence[str]) -> list[str]:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX"}
    return [short.get(m, m) for m in modes]


def _configmap_row(cm: Obj, now: datetime, wide: bool) -> Row:
    return [
        cm["metadata"]["name"],
        len(cm.get("data") or {}),
        age(cm["metadata"].get("creationTimestamp"), now),
    ]


def event_time(ev: Obj) -> str | None:
    return (
        str(
            ev.get("lastTimestamp")
            or ev.get("eventTime")
            or (ev.get("metadata") or {}).get("creationTimestamp")
            or ""
        )
        or None
    )


def _event_row(ev: Obj, now: datetime, wide: bool) -> Row:
    obj = ev.get("involvedObject") or {}
    message = " ".join(str(ev.get("message", "")).split())
    count = int(ev.get("count") or 1)
    seen = age(event_time(ev), now) + (f" (x{count})" if count > 1 else "")
    return [
        seen,
        ev.get("type"),
        ev.get("reason"),
        f"{str(obj.get('kind', '')).lower()}/{obj.get('name')}",
        message,
    ]


def _namespace_row(ns: Obj, now: datetime, wide: bool) -> Row:
    return [
        ns["metadata"]["name"],
        (ns.get("status") or {}).get("phase"),
        age(ns["metadata"].get("creationTimestamp"), now),
    ]


def _default_row(obj: Obj, now: datetime, wide: bool) -> Row:
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp"), now)]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


RowFn = Callable[[Obj, datetime, bool], Row]
TABLES: dict[str, tuple[list[str], list[str], RowFn]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"], _pod_row),
    "Deployment": (
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        _deployment_row,
    ),
    "ReplicaSet": (["NAME", "DESIRED", "CURRENT", "READY", "AGE"], ["IMAGES"], _replicaset_row),
    "Service": (
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["SELECTOR"],
        _service_row,
    ),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], [], _endpoints_row),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"], [], _node_row),
    "PersistentVolumeClaim": (
        ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"],
        [],
        _pvc_row,
    ),
    "PersistentVolume": (
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "AGE",
        ],
        [],
        _pv_row,
    ),
    "ConfigMap": (["NAME", "DATA", "AGE"], [], _configmap_row),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], _event_row),
    "Namespace": (["NAME", "STATUS", "AGE"], [], _namespace_row),
}


def get_table(
    kind: str,
    items: Sequence[Obj],
    *,
    wide: bool = False,
    with_namespace: bool = False,
    show_labels: bool = False,
    no_headers: bool = False,
    now: datetime | None = None,
) -> str:
    """``kubectl get`` output for objects of one kind."""
    headers, wide_headers, row_fn = TABLES.get(kind, (["NAME", "AGE"], [], _default_row))
    moment = now or datetime.now(UTC)
    headers = headers + (wide_headers if wide else [])
    rows = []
    for obj in items:
        row = row_fn(obj, moment, wide)
        if with_namespace:
            row = [obj["metadata"].get("namespace"), *row]
        if show_labels:
            row.append(_labels(obj["metadata"].get("labels") or {}))
        rows.append(row)
    if with_namespace:
        headers = ["NAMESPACE", *headers]
    if show_labels:
        headers = [*headers, "LABELS"]
    return render_table(headers, rows, no_headers=no_headers)
