"""Read an Executor instruction into a typed action: kubectl write commands or JSON.

The Observer proposes fixes as text, usually the kubectl command an SRE would
type (``kubectl rollout undo deploy/geo -n hotel``), sometimes as structured
JSON. Either way the result is one catalogue action or an ``ActionError``
saying why not: unknown verbs, patches the catalogue cannot express, and
anything on the denylist (``denied=True``) are refused before a proposal exists.
The text is the model's, so nothing in it may raise anything else: whatever
goes wrong while reading it becomes an ``ActionError`` that says what to write.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pydantic import ValidationError

from agents.executor.actions import (
    ActionSpec,
    DeletePod,
    PatchConfigMap,
    PatchServicePort,
    PatchServiceSelector,
    Rollback,
    RolloutRestart,
    Scale,
    SetCommand,
    SetEnv,
    SetImage,
    SetResources,
    action_from_json,
)
from agents.executor.denylist import check_command, check_spec
from agents.executor.rules import DEFAULT_RULES, ActionRules

_SHELL = re.compile(r"[|;&<>`]|\$[({]|[\r\n]")
_VALUE_FLAGS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--replicas": "replicas",
    "--to-revision": "to_revision",
    "-p": "patch",
    "--patch": "patch",
    "--type": "type",
    "-c": "container",
    "--containers": "container",
    "--limits": "limits",
    "--requests": "requests",
}
_DEPLOYMENT = frozenset({"deploy", "deployment", "deployments", "deployment.apps"})
_SERVICE = frozenset({"svc", "service", "services"})
_CONFIGMAP = frozenset({"cm", "configmap", "configmaps"})
_POD = frozenset({"po", "pod", "pods"})
_NODE_VERBS = frozenset({"cordon", "uncordon", "drain", "taint"})
_DIGITS = re.compile(r"[0-9]{1,9}")
_HINT = (
    "write one kubectl command (e.g. `kubectl rollout undo deploy/NAME -n NAMESPACE`) "
    "or one JSON action"
)


class ActionError(ValueError):
    """An instruction that is not a catalogue action (``denied``: one that never may be)."""

    def __init__(self, reason: str, *, denied: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.denied = denied


def parse_action(
    instruction: str, *, default_namespace: str | None = None, rules: ActionRules = DEFAULT_RULES
) -> ActionSpec:
    """One action from a kubectl write command or a JSON object; raises only ``ActionError``.

    A returned action has passed the denylist under ``rules`` (protected
    namespaces, image registries, no shells, replica bounds).

    Usage::

        spec = parse_action("kubectl scale deploy/user-service --replicas=1 -n social")
        spec.kubectl()   # 'kubectl scale deploy/user-service --replicas=1 -n social'
    """
    try:
        spec = _parse(instruction, default_namespace, rules)
    except ActionError:
        raise
    except ValidationError as exc:
        raise ActionError(f"not a valid action: {validation_problems(exc)}") from None
    except Exception as exc:  # the text is the model's: nothing in it may escape as a crash
        why = f"{type(exc).__name__}: {str(exc)[:120]}"
        raise ActionError(f"cannot read that action ({why}); {_HINT}") from None
    denied = check_spec(spec, rules)
    if denied:
        raise ActionError(denied, denied=True)
    return spec


def validation_problems(exc: ValidationError) -> str:
    """pydantic's complaints as one line: ``field: message; ...`` (the first five)."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'action'}: {e['msg']}" for e in exc.errors()
    ]
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def _parse(instruction: str, default_namespace: str | None, rules: ActionRules) -> ActionSpec:
    if not isinstance(instruction, str):
        raise ActionError(f"an instruction is text, not {type(instruction).__name__}; {_HINT}")
    text = instruction.strip().strip("`").strip()
    if text.startswith("{"):
        return action_from_json(text)
    return _from_kubectl(text, default_namespace, rules)


def _from_kubectl(text: str, default_namespace: str | None, rules: ActionRules) -> ActionSpec:
    if _SHELL.search(text.split(" -p ", 1)[0].split(" --patch", 1)[0]):
        raise ActionError(
            "one kubectl command at a time, without shell pipes or chaining", denied=True
        )
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ActionError(f"cannot split the command: {exc}") from None
    words = words[1:] if words and words[0] == "kubectl" else words
    flags, positional, unknown = _split(words)
    namespace = flags.get("namespace") or default_namespace
    if not positional:
        raise ActionError(
            "empty command: write e.g. `kubectl rollout undo deploy/NAME -n NAMESPACE`"
        )
    denied = check_command(positional[0], positional[1:], namespace, rules)
    if denied:
        raise ActionError(denied, denied=True)
    if unknown:
        raise ActionError(f"unsupported flag(s) {', '.join(unknown)} in an action")
    return _build(positional[0], positional[1:], flags, namespace)


def _split(words: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(known flag values, positional words, unknown flags)."""
    flags: dict[str, str] = {}
    positional: list[str] = []
    unknown: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        name, eq, value = word.partition("=")
        if name in _VALUE_FLAGS and eq:
            flags[_VALUE_FLAGS[name]] = value
        elif name in _VALUE_FLAGS and index < len(words):
            flags[_VALUE_FLAGS[name]] = words[index]
            index += 1
        elif word.startswith("-") and len(word) > 1:
            unknown.append(name)
        else:
            positional.append(word)
    return flags, positional, unknown


def _target(words: list[str], kinds: frozenset[str], what: str) -> str:
    if words and "/" in words[0]:
        kind, _, name = words[0].partition("/")
        if kind.lower() in kinds and name:
            return name
    elif len(words) >= 2 and words[0].lower() in kinds:
        return words[1]
    raise ActionError(f"expected {what} as TYPE/NAME (e.g. deploy/geo), got {' '.join(words)!r}")


def _need_namespace(namespace: str | None) -> str:
    if not namespace:
        raise ActionError("say which namespace the target lives in (-n NAMESPACE)")
    return namespace


def _build(verb: str, rest: list[str], flags: dict[str, str], namespace: str | None) -> ActionSpec:
    try:
        if verb == "scale":
            return _scale(rest, flags, namespace)
        if verb == "rollout":
            return _rollout(rest, flags, namespace)
        if verb == "set":
            return _set(rest, flags, namespace)
        if verb == "patch":
            return _patch(rest, flags, namespace)
        if verb == "delete":
            return DeletePod(
                namespace=_need_namespace(namespace), name=_target(rest, _POD, "a pod")
            )
    except ValidationError as exc:
        raise ActionError(f"invalid {verb} command: {validation_problems(exc)}") from None
    if verb in _NODE_VERBS:
        raise ActionError(
            f"`kubectl {verb}` changes a node for the whole cluster; the Executor only changes "
            "workloads in the namespaces it manages: ask a cluster administrator",
            denied=True,
        )
    raise ActionError(
        f"`kubectl {verb}` is not in the action catalogue: use scale, rollout "
        "restart|undo, set image|env|resources, patch svc|deploy|cm or delete pod"
    )


def _scale(rest: list[str], flags: dict[str, str], namespace: str | None) -> ActionSpec:
    replicas = flags.get("replicas")
    if replicas is None or not _DIGITS.fullmatch(replicas):
        raise ActionError("kubectl scale needs --replicas=N")
    name = _target(rest, _DEPLOYMENT, "a deployment")
    return Scale(namespace=_need_namespace(namespace), name=name, replicas=int(replicas))


def _rollout(rest: list[str], flags: dict[str, str], namespace: str | None) -> ActionSpec:
    sub = rest[0] if rest else ""
    name = _target(rest[1:], _DEPLOYMENT, "a deployment")
    ns = _need_namespace(namespace)
    if sub == "restart":
        return RolloutRestart(namespace=ns, name=name)
    if sub == "undo":
        revision = flags.get("to_revision")
        if revision is not None and not _DIGITS.fullmatch(revision):
            raise ActionError(f"--to-revision takes a revision number, not {revision!r}")
        return Rollback(namespace=ns, name=name, to_revision=int(revision) if revision else None)
    raise ActionError(f"`kubectl rollout {sub}` is not an action: use restart or undo")


def _set(rest: list[str], flags: dict[str, str], namespace: str | None) -> ActionSpec:
    sub = rest[0] if rest else ""
    name = _target(rest[1:], _DEPLOYMENT, "a deployment")
    ns, container = _need_namespace(namespace), flags.get("container")
    args = rest[2:] if "/" in rest[1] else rest[3:]
    if sub == "image":
        if len(args) != 1 or "=" not in args[0]:
            raise ActionError("kubectl set image needs exactly one CONTAINER=IMAGE")
        container, _, image = args[0].partition("=")
        return SetImage(
            namespace=ns, name=name, container=container if container != "*" else None, image=image
        )
    if sub == "env":
        env: dict[str, str | None] = {a[:-1]: None for a in args if a.endswith("-")}
        env.update({k: v for k, _, v in (a.partition("=") for a in args if "=" in a)})
        return SetEnv(namespace=ns, name=name, container=container, env=env)
    if sub == "resources":
        return SetResources(
            namespace=ns,
            name=name,
            container=container,
            limits=_pairs(flags.get("limits")),
            requests=_pairs(flags.get("requests")),
        )
    raise ActionError(f"`kubectl set {sub}` is not an action: use image, env or resources")


def _pairs(text: str | None) -> dict[str, str]:
    return {k: v for k, _, v in (p.partition("=") for p in (text or "").split(",") if p)}


def _patch(rest: list[str], flags: dict[str, str], namespace: str | None) -> ActionSpec:
    raw = flags.get("patch")
    if not raw:
        raise ActionError("kubectl patch needs -p '<JSON>'")
    try:
        body: Any = json.loads(raw)
    except ValueError as exc:
        raise ActionError(f"the patch is not JSON: {exc}") from None
    ns = _need_namespace(namespace)
    kind = rest[0].split("/", 1)[0].lower() if rest else ""
    if kind in _SERVICE:
        return _service_patch(ns, _target(rest, _SERVICE, "a service"), body)
    if kind in _CONFIGMAP:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or set(body) != {"data"}:
            raise ActionError(
                'a ConfigMap patch may only set data: -p \'{"data": {"key": "value"}}\''
            )
        if not all(isinstance(v, str) for v in data.values()):
            raise ActionError("ConfigMap data values are strings: quote every value")
        return PatchConfigMap(
            namespace=ns, name=_target(rest, _CONFIGMAP, "a configmap"), data=data
        )
    if kind in _DEPLOYMENT:
        return _deployment_patch(ns, _target(rest, _DEPLOYMENT, "a deployment"), body)
    raise ActionError(
        "only Services (ports, selector), Deployments (command, image) and "
        "ConfigMaps (data) can be patched"
    )


def _service_patch(ns: str, name: str, body: Any) -> ActionSpec:
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise ActionError(
            'a Service patch looks like {"spec": {"ports": [...]}} or {"spec": {"selector": {...}}}'
        )
    ports = spec.get("ports")
    if (
        isinstance(ports, list)
        and len(ports) == 1
        and isinstance(ports[0], dict)
        and "targetPort" in ports[0]
    ):
        return PatchServicePort(
            namespace=ns, name=name, port=ports[0].get("port"), target_port=ports[0]["targetPort"]
        )
    if isinstance(spec.get("selector"), dict):
        return PatchServiceSelector(namespace=ns, name=name, selector=spec["selector"])
    raise ActionError("a Service patch may change one port's targetPort or the selector")


def _deployment_patch(ns: str, name: str, body: Any) -> ActionSpec:
    if isinstance(body, list):
        for op in body:
            if (
                isinstance(op, dict)
                and op.get("op") == "replace"
                and str(op.get("path", "")).endswith("/command")
            ):
                return SetCommand(namespace=ns, name=name, command=_argv(op.get("value")))
        raise ActionError("a JSON patch of a Deployment may only replace a container's command")
    containers = _dig(body, "spec", "template", "spec", "containers")
    if isinstance(containers, list) and len(containers) == 1 and isinstance(containers[0], dict):
        container = containers[0]
        if "command" in container:
            return SetCommand(
                namespace=ns,
                name=name,
                container=container.get("name"),
                command=_argv(container["command"]),
            )
        if "image" in container:
            return SetImage(
                namespace=ns, name=name, container=container.get("name"), image=container["image"]
            )
    raise ActionError("a Deployment patch may set one container's command or image")


def _dig(body: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _argv(value: Any) -> list[str]:
    """A command as a list of strings; one string would be split into its letters by list()."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ActionError('a command is a list of strings, e.g. ["profile", "--port", "8081"]')
    return list(value)
