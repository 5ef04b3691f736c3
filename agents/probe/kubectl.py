"""Run parsed read commands through the Python client as the observer, render like kubectl.

``run_kubectl`` is the Probe's kubectl tool: parse (allowlist first, every
name and namespace validated as the apiserver would), read through the observer
``ApiClient`` off the event loop within one total deadline, render as kubectl
would, redact secrets, and wrap everything in a ``ToolResult``: it never raises. The
lab has no metrics-server, so ``kubectl top`` answers from Prometheus's
container metrics, which is also what a responder would look at.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from kubernetes import client

from agents.probe.command import CommandError, KubectlCommand, Target, parse_kubectl
from agents.probe.describe import describe
from agents.probe.metrics import PrometheusClient, pod_usage
from agents.probe.render import Obj, get_table, to_json, to_yaml
from agents.probe.resources import PODS, REPLICASETS, Resource, lookup
from agents.redact import redact
from agents.tools.deadline import TOOL_DEADLINE_S, bounded
from agents.tools.identity import Capability, allowed
from agents.tools.kube import get_items, get_json, get_text
from agents.tools.paths import dns_label
from agents.tools.result import ToolResult
from agents.tools.table import render_table

DEFAULT_TAIL = 200
LOG_LIMIT_BYTES = 1024 * 1024
_SINCE = re.compile(r"^(\d+)([smh])$")


class KubectlError(RuntimeError):
    """A read that cannot be answered (no pod for the deployment, bad --since)."""


async def run_kubectl(
    command: str,
    *,
    api: client.ApiClient,
    prometheus: PrometheusClient | None = None,
    default_namespace: str | None = None,
    deadline_s: float = TOOL_DEADLINE_S,
) -> ToolResult:
    """One read-only kubectl command as a ``ToolResult``; writes come back DENIED, unrun.

    Usage::

        result = await run_kubectl("kubectl get pods -n shop", api=observer_api)

    Everything, the parse included, runs within ``deadline_s``; any failure is
    an ERROR (or DENIED) result, never an exception.
    """
    invocation = str(command).strip()
    return await bounded(
        _run(invocation, api, prometheus, default_namespace),
        invocation=invocation,
        deadline_s=deadline_s,
        what=f"`{invocation[:80]}`",
        clean=redact,
    )


async def _run(
    invocation: str,
    api: client.ApiClient,
    prometheus: PrometheusClient | None,
    default_namespace: str | None,
) -> ToolResult:
    try:
        parsed = parse_kubectl(invocation)
    except CommandError as exc:
        if exc.denied:
            return ToolResult.denied(invocation, f"refused, nothing ran: {exc.reason}")
        return ToolResult.failure(invocation, exc.reason)
    if parsed.namespace is None and default_namespace and not parsed.all_namespaces:
        parsed = _with_namespace(parsed, dns_label(default_namespace, what="default namespace"))
    try:
        if parsed.verb == "top":
            text = await _top(parsed, prometheus)
        else:
            text = await asyncio.to_thread(execute, api, parsed)
    except KubectlError as exc:
        return ToolResult.failure(invocation, redact(str(exc)))
    # Redaction is CPU work over what may be megabytes of output: off the event loop,
    # which every concurrent investigation shares.
    return await asyncio.to_thread(_result, invocation, parsed, text)


def _result(invocation: str, parsed: KubectlCommand, text: str) -> ToolResult:
    if not text.strip():
        return ToolResult.no_data(invocation, _nothing_found(parsed))
    return ToolResult.success(invocation, redact(text), verb=parsed.verb)


def _with_namespace(cmd: KubectlCommand, namespace: str) -> KubectlCommand:
    fields = dict(cmd.__dict__)
    fields["namespace"] = namespace
    return KubectlCommand(**fields)


def _nothing_found(cmd: KubectlCommand) -> str:
    where = f" in namespace {cmd.namespace}" if cmd.namespace else ""
    return f"No resources found{where}."


def execute(api: client.ApiClient, cmd: KubectlCommand) -> str:
    """The command's text output (blocking; the caller runs it in a thread)."""
    handlers: dict[str, Callable[[client.ApiClient, KubectlCommand], str]] = {
        "get": _get,
        "describe": _describe,
        "logs": _logs,
        "rollout": _rollout,
        "auth": _auth,
    }
    return handlers[cmd.verb](api, cmd)


# -- get and describe -------------------------------------------------------------------


def _fetch(api: client.ApiClient, cmd: KubectlCommand, target: Target) -> tuple[list[Obj], bool]:
    """(objects, whether one was asked for by name)."""
    resource = target.resource
    namespace = None if cmd.all_namespaces else cmd.namespace or "default"
    if target.name:
        return [get_json(api, resource.path(namespace, target.name))], True
    query = {"labelSelector": cmd.selector, "fieldSelector": cmd.field_selector}
    items = get_items(api, resource.path(namespace), query)
    for item in items:
        item.setdefault("kind", resource.kind)
    return _sorted(items, cmd.sort_by), False


def _sorted(items: list[Obj], sort_by: str | None) -> list[Obj]:
    if not sort_by:
        return items
    keys = [k for k in sort_by.strip("{}").lstrip(".").split(".") if k]

    def value(obj: Obj) -> str:
        current: Any = obj
        for key in keys:
            current = current.get(key) if isinstance(current, dict) else None
        return (
            ""
            if current is None
            else f"{current:>20}"
            if isinstance(current, int)
            else str(current)
        )

    return sorted(items, key=value)


def _get(api: client.ApiClient, cmd: KubectlCommand) -> str:
    parts = []
    for target in cmd.targets:
        items, single = _fetch(api, cmd, target)
        if not items:
            continue
        parts.append(_render_get(cmd, target.resource, items, single))
    return "\n".join(parts)


def _render_get(cmd: KubectlCommand, resource: Resource, items: list[Obj], single: bool) -> str:
    if cmd.output == "yaml":
        return to_yaml(items, single=single)
    if cmd.output == "json":
        return to_json(items, single=single)
    if cmd.output == "name":
        return "".join(f"{resource.kind.lower()}/{i['metadata']['name']}\n" for i in items)
    return get_table(
        resource.kind,
        items,
        wide=cmd.output == "wide",
        with_namespace=cmd.all_namespaces and resource.namespaced,
        show_labels=cmd.show_labels,
        no_headers=cmd.no_headers,
    )


def _describe(api: client.ApiClient, cmd: KubectlCommand) -> str:
    texts = []
    for target in cmd.targets:
        items, _ = _fetch(api, cmd, target)
        texts += [describe(api, target.resource, obj) for obj in items]
    return "\n\n".join(texts)


# -- logs -------------------------------------------------------------------------------


def _logs(api: client.ApiClient, cmd: KubectlCommand) -> str:
    target = cmd.target
    assert target is not None
    namespace = cmd.namespace or "default"
    pod = target.name or ""
    if target.resource.kind != "Pod":
        pod = _pod_of(api, target, namespace)
    query = {
        "container": cmd.container,
        "tailLines": cmd.tail if cmd.tail is not None and cmd.tail >= 0 else DEFAULT_TAIL,
        "previous": cmd.previous or None,
        "sinceSeconds": _since_seconds(cmd.since),
        "timestamps": cmd.timestamps or None,
        "limitBytes": cmd.limit_bytes if (cmd.limit_bytes or 0) > 0 else LOG_LIMIT_BYTES,
    }
    text = get_text(api, PODS.path(namespace, pod, subresource="log"), query)
    if target.resource.kind != "Pod":
        text = f"(logs of pod {pod})\n{text}"
    return text


def _pod_of(api: client.ApiClient, target: Target, namespace: str) -> str:
    """kubectl's choice of one pod for ``logs deploy/x``: the newest running one, else any."""
    owner = get_json(api, target.resource.path(namespace, target.name))
    labels = ((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    pods = get_items(api, PODS.path(namespace), {"labelSelector": selector})
    if not pods:
        raise KubectlError(f"no pods found for {target.resource.kind.lower()}/{target.name}")
    pods.sort(
        key=lambda p: (
            (p.get("status") or {}).get("phase") == "Running",
            p["metadata"].get("creationTimestamp", ""),
        )
    )
    return str(pods[-1]["metadata"]["name"])


def _since_seconds(since: str | None) -> int | None:
    if not since:
        return None
    match = _SINCE.match(since)
    if not match:
        raise KubectlError(f"--since={since!r}: use a duration such as 30s, 5m or 1h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


# -- rollout and auth -------------------------------------------------------------------


def _rollout(api: client.ApiClient, cmd: KubectlCommand) -> str:
    target = cmd.target
    if target is None or not target.name or target.resource.kind != "Deployment":
        raise KubectlError("rollout status|history work on deploy/NAME")
    namespace = cmd.namespace or "default"
    dep = get_json(api, target.resource.path(namespace, target.name))
    if cmd.subverb == "status":
        return rollout_status(dep) + "\n"
    return _history(api, dep, namespace, cmd.revision)


def rollout_status(dep: Obj) -> str:
    """kubectl rollout status's one-shot sentence."""
    name = dep["metadata"]["name"]
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if int(status.get("observedGeneration") or 0) < int(dep["metadata"].get("generation") or 0):
        return f'Waiting for deployment "{name}" spec update to be observed...'
    if updated < want:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {want} '
            "new replicas have been updated..."
        )
    if total > updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old '
            "replicas are pending termination..."
        )
    if available < updated:
        return (
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available..."
        )
    return f'deployment "{name}" successfully rolled out'


def _history(api: client.ApiClient, dep: Obj, namespace: str, revision: int | None) -> str:
    uid = dep["metadata"].get("uid")
    sets = [
        rs
        for rs in get_items(api, REPLICASETS.path(namespace))
        if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
    ]
    by_revision = {rev: rs for rs in sets if (rev := _revision(rs)) is not None}
    if revision is not None:
        rs = by_revision.get(revision)
        if rs is None:
            raise KubectlError(f"unable to find the specified revision {revision}")
        template = {"template": (rs.get("spec") or {}).get("template")}
        return f"revision {revision}:\n" + to_yaml([template], single=True)
    rows = [[number, _change_cause(by_revision[number])] for number in sorted(by_revision)]
    header = f"deployment.apps/{dep['metadata']['name']}\n"
    return header + render_table(["REVISION", "CHANGE-CAUSE"], rows)


def _revision(rs: Obj) -> int | None:
    raw = (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    return int(raw) if raw and str(raw).isdigit() else None


def _change_cause(rs: Obj) -> str:
    annotations = rs["metadata"].get("annotations") or {}
    cause = annotations.get("kubernetes.io/change-cause")
    if cause:
        return str(cause)
    containers = (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return "image " + ",".join(c.get("image", "") for c in containers)


def _auth(api: client.ApiClient, cmd: KubectlCommand) -> str:
    if cmd.subverb == "whoami":
        raise KubectlError(
            "`auth whoami` is not available on this cluster version; use `auth can-i VERB RESOURCE`"
        )
    if len(cmd.args) < 2:
        raise KubectlError("usage: kubectl auth can-i VERB RESOURCE[/NAME] [-n NAMESPACE]")
    verb, what = cmd.args[0], cmd.args[1]
    kind, _, name = what.partition("/")
    resource = lookup(kind)
    capability = Capability(verb, resource.plural if resource else kind, _group(resource))
    return "yes\n" if allowed(api, capability, cmd.namespace or "", name) else "no\n"


def _group(resource: Resource | None) -> str:
    if resource is None or resource.prefix == "/api/v1":
        return ""
    return resource.prefix.split("/")[2]


# -- top --------------------------------------------------------------------------------


async def _top(cmd: KubectlCommand, prometheus: PrometheusClient | None) -> str:
    if prometheus is None:
        raise KubectlError("`kubectl top` needs metrics; no Prometheus is configured")
    target = cmd.target
    if target is not None and target.resource.kind == "Node":
        raise KubectlError("`kubectl top nodes` is not available: use `kubectl top pods`")
    namespace = None if cmd.all_namespaces else cmd.namespace
    cpu, memory = await pod_usage(prometheus, namespace)
    rows = []
    for key in sorted(set(cpu) | set(memory)):
        if target is not None and target.name and key[1] != target.name:
            continue
        row = [
            key[1],
            f"{cpu.get(key, 0.0) * 1000:.0f}m",
            f"{memory.get(key, 0.0) / 1048576:.0f}Mi",
        ]
        rows.append([key[0], *row] if cmd.all_namespaces else row)
    headers = ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    return render_table(["NAMESPACE", *headers] if cmd.all_namespaces else headers, rows)
