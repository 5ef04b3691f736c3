"""Parse kubectl-style read commands, and refuse everything else before it runs.

The Observer writes commands as text (``kubectl get pods -n shop -o wide``).
Parsing with ``shlex`` into a typed ``KubectlCommand`` lets the Probe check the
verb against an allowlist of reads *before* anything reaches the cluster:
writes, exec, port-forward, identity-switching flags, Secrets and shell syntax
(pipes, redirections, chaining) are refused with a reason the model can read.
The apiserver would refuse the observer identity's writes anyway; this layer
means a refused write never even becomes a request.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from agents.probe.resources import FORBIDDEN_RESOURCES, Resource, lookup
from agents.tools.paths import InvalidPathPart, dns_label, object_name

READ_VERBS = frozenset({"get", "describe", "logs", "log", "top", "rollout", "auth", "events"})
WRITE_VERBS = frozenset(
    {
        "delete",
        "apply",
        "patch",
        "scale",
        "edit",
        "exec",
        "port-forward",
        "cp",
        "create",
        "replace",
        "annotate",
        "label",
        "set",
        "drain",
        "cordon",
        "uncordon",
        "taint",
        "autoscale",
        "expose",
        "run",
        "attach",
        "debug",
        "proxy",
        "certificate",
        "wait",
        "kustomize",
        "plugin",
        "alpha",
        "config",
    }
)
READ_SUBVERBS = {
    "rollout": frozenset({"status", "history"}),
    "auth": frozenset({"can-i", "whoami"}),
}
_SHELL = re.compile(r"[|;&<>`]|\$[({]|[\r\n]")
_IDENTITY_FLAGS = frozenset(
    {
        "--kubeconfig",
        "--token",
        "--as",
        "--as-group",
        "--as-uid",
        "--server",
        "-s",
        "--context",
        "--user",
        "--cluster",
        "--username",
        "--password",
        "--client-certificate",
        "--client-key",
        "--certificate-authority",
        "--insecure-skip-tls-verify",
        "--raw",
    }
)
# A value with URL or path syntax in it (or any character outside printable
# ASCII) is an attempt to reach another path, not a typo: refused, not corrected.
_PATH_SYNTAX = re.compile(r"[/\\%#?&=:@;\s]|\.\.|[^\x21-\x7e]")
_STREAM_FLAGS = frozenset({"-w", "--watch", "--watch-only", "-f", "--follow", "--filename"})
_VALUE_FLAGS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "-o": "output",
    "--output": "output",
    "-l": "selector",
    "--selector": "selector",
    "--field-selector": "field_selector",
    "--sort-by": "sort_by",
    "-c": "container",
    "--container": "container",
    "--tail": "tail",
    "--since": "since",
    "--revision": "revision",
    "--limit-bytes": "limit_bytes",
}
_BOOL_FLAGS = {
    "-A": "all_namespaces",
    "--all-namespaces": "all_namespaces",
    "-p": "previous",
    "--previous": "previous",
    "--timestamps": "timestamps",
    "--show-labels": "show_labels",
    "--no-headers": "no_headers",
    "--all-containers": "all_containers",
}
OUTPUTS = frozenset({"wide", "yaml", "json", "name"})


class CommandError(ValueError):
    """The command is not allowed (``denied``) or not understood (not ``denied``)."""

    def __init__(self, reason: str, *, denied: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.denied = denied


@dataclass(frozen=True)
class Target:
    resource: Resource
    name: str | None = None


@dataclass(frozen=True)
class KubectlCommand:
    """One parsed read command."""

    verb: str
    text: str
    subverb: str | None = None
    targets: tuple[Target, ...] = ()
    args: tuple[str, ...] = ()
    """Positional words that are not targets (``auth can-i VERB RESOURCE``, a container)."""
    namespace: str | None = None
    all_namespaces: bool = False
    output: str | None = None
    selector: str | None = None
    field_selector: str | None = None
    sort_by: str | None = None
    container: str | None = None
    tail: int | None = None
    since: str | None = None
    revision: int | None = None
    limit_bytes: int | None = None
    previous: bool = False
    timestamps: bool = False
    show_labels: bool = False
    no_headers: bool = False
    all_containers: bool = False

    @property
    def target(self) -> Target | None:
        return self.targets[0] if self.targets else None


def deny(reason: str) -> CommandError:
    return CommandError(reason, denied=True)


def invalid(reason: str) -> CommandError:
    return CommandError(reason, denied=False)


def parse_kubectl(text: str) -> KubectlCommand:
    """Parse one read-only kubectl command or raise ``CommandError``.

    Usage::

        cmd = parse_kubectl("kubectl logs deploy/geo -n hotel --tail=50")
        cmd.verb, cmd.target.name, cmd.tail      # ('logs', 'geo', 50)
    """
    if _SHELL.search(text):
        raise deny(
            "shell syntax (pipes, redirections, ;, &&, $( ), newlines) is not allowed: "
            "send one kubectl command at a time"
        )
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise invalid(f"cannot split the command: {exc}") from None
    if words and words[0] == "kubectl":
        words = words[1:]
    if not words:
        raise invalid("empty command: write e.g. `kubectl get pods -n NAMESPACE`")
    flags, positional = _split_flags(words)
    verb = positional[0] if positional else ""
    _check_verb(verb, positional[1:])
    values = _flag_values(flags)
    return _build(verb, positional[1:], values, text.strip())


def _check_verb(verb: str, rest: list[str]) -> None:
    if verb in WRITE_VERBS:
        raise deny(
            f"`kubectl {verb}` changes the cluster; the Probe only reads. "
            "Propose the change through the Executor instead"
        )
    if verb not in READ_VERBS:
        raise invalid(
            f"unknown or unsupported command {verb!r}; "
            f"read commands are: {', '.join(sorted(READ_VERBS))}"
        )
    allowed = READ_SUBVERBS.get(verb)
    if allowed is not None and (not rest or rest[0] not in allowed):
        sub = rest[0] if rest else ""
        if verb == "rollout" and sub in {"restart", "undo", "pause", "resume"}:
            raise deny(f"`kubectl rollout {sub}` changes the cluster; the Probe only reads")
        raise invalid(
            f"`kubectl {verb} {sub}` is not supported; use one of: {', '.join(sorted(allowed))}"
        )
    if any(w.split("/", 1)[0].lower() in FORBIDDEN_RESOURCES for w in rest if verb != "auth"):
        raise deny("Secrets are never read: their values would reach Slack, the store or a model")


def _split_flags(words: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    flags: list[tuple[str, str | None]] = []
    positional: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, eq, value = word.partition("=")
        _check_flag(name)
        if eq:
            flags.append((name, value))
        elif name in _VALUE_FLAGS:
            if index >= len(words):
                raise invalid(f"flag {name} needs a value")
            flags.append((name, words[index]))
            index += 1
        elif name.startswith("-") and not name.startswith("--") and name[:2] in _VALUE_FLAGS:
            flags.append((name[:2], name[2:]))
        else:
            flags.append((name, None))
    return flags, positional


def _check_flag(name: str) -> None:
    if name in _IDENTITY_FLAGS:
        raise deny(
            f"{name} would change the identity or the cluster the Probe talks to; "
            "the Probe always reads as the observer identity"
        )
    if name in _STREAM_FLAGS:
        raise deny(f"{name} streams or reads files; use a one-shot read (e.g. --tail=100)")


def _flag_values(flags: list[tuple[str, str | None]]) -> dict[str, str | bool]:
    values: dict[str, str | bool] = {}
    for name, value in flags:
        if name in _BOOL_FLAGS:
            values[_BOOL_FLAGS[name]] = value is None or value.lower() != "false"
        elif name in _VALUE_FLAGS and value is not None:
            values[_VALUE_FLAGS[name]] = value
        elif name in _VALUE_FLAGS:
            raise invalid(f"flag {name} needs a value")
        else:
            raise invalid(f"unsupported flag {name}")
    output = values.get("output")
    if isinstance(output, str) and output not in OUTPUTS:
        raise invalid(f"unsupported output {output!r}; use one of {', '.join(sorted(OUTPUTS))}")
    return values


def _int_flag(values: dict[str, str | bool], key: str) -> int | None:
    raw = values.get(key)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"--{key.replace('_', '-')} must be a number, got {raw!r}") from None


def _build(verb: str, rest: list[str], values: dict[str, str | bool], text: str) -> KubectlCommand:
    verb = "logs" if verb == "log" else verb
    subverb = None
    if verb in READ_SUBVERBS:
        subverb, rest = rest[0], rest[1:]
    if verb == "events":
        verb, rest = "get", ["events", *rest]
    targets, args = _targets(verb, subverb, rest)
    strings = {k: v for k, v in values.items() if isinstance(v, str)}
    bools = {k: v for k, v in values.items() if isinstance(v, bool)}
    namespace, container = strings.get("namespace"), strings.get("container")
    if verb == "logs" and container is None and args:
        container, args = args[0], args[1:]
    return KubectlCommand(
        verb=verb,
        text=text,
        subverb=subverb,
        targets=targets,
        args=args,
        namespace=_label(namespace, "namespace"),
        output=strings.get("output"),
        selector=strings.get("selector"),
        field_selector=strings.get("field_selector"),
        sort_by=strings.get("sort_by"),
        container=_label(container, "container name"),
        since=strings.get("since"),
        tail=_int_flag(values, "tail"),
        revision=_int_flag(values, "revision"),
        limit_bytes=_int_flag(values, "limit_bytes"),
        **bools,
    )


def _targets(
    verb: str, subverb: str | None, rest: list[str]
) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    if verb == "auth":
        return (), tuple(rest)
    if verb == "logs":
        return _log_target(rest)
    if verb == "top":
        return _top_target(rest)
    if not rest:
        raise invalid(f"`kubectl {verb}` needs a resource type, e.g. pods or deploy/NAME")
    if "/" in rest[0]:
        return tuple(_slash_target(word) for word in rest), ()
    resources = [_resource(word) for word in rest[0].split(",") if word]
    if not resources:
        raise invalid(f"`kubectl {verb}` needs a resource type, e.g. pods or deploy/NAME")
    names = rest[1:]
    if len(resources) > 1 and names:
        raise invalid("name several types without names, or one type with names")
    if not names:
        return tuple(Target(r) for r in resources), ()
    return tuple(_target(resources[0], name) for name in names), ()


def _slash_target(word: str) -> Target:
    kind, _, name = word.partition("/")
    if not name:
        raise invalid(f"{word!r}: write TYPE/NAME, e.g. deploy/geo")
    if "/" in name:
        raise deny(
            f"{_short(word)}: TYPE/NAME takes one slash; a name never contains '/', "
            "and subresources (exec, proxy, attach, ...) are not read by the Probe"
        )
    return _target(_resource(kind), name)


def _target(resource: Resource, name: str) -> Target:
    return Target(resource, _checked(name, lambda value: object_name(resource.plural, value)))


def _label(value: str | None, what: str) -> str | None:
    return None if value is None else _checked(value, lambda v: dns_label(v, what=what))


def _checked(value: str, rule: Callable[[str], str]) -> str:
    """``value`` when the apiserver would accept it (``rule``); refused before any request."""
    try:
        return rule(value)
    except InvalidPathPart as exc:
        reason = f"{exc}; nothing was sent"
        raise (deny(reason) if _PATH_SYNTAX.search(value) else invalid(reason)) from None


def _short(value: str) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _resource(word: str) -> Resource:
    if word.lower().split(".", 1)[0] in FORBIDDEN_RESOURCES:
        raise deny("Secrets are never read: their values would reach Slack, the store or a model")
    found = lookup(word)
    if found is None:
        raise invalid(
            f"unknown resource type {word!r}; try pods, deploy, svc, endpoints, "
            "events, nodes, pvc, cm, rs"
        )
    return found


def _log_target(rest: list[str]) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    if not rest:
        raise invalid("`kubectl logs` needs a pod (or deploy/NAME)")
    if "/" in rest[0]:
        target = _slash_target(rest[0])
        if target.resource.kind not in ("Pod", "Deployment", "ReplicaSet", "StatefulSet"):
            raise invalid("logs come from pods: use POD, pod/NAME or deploy/NAME")
    else:
        target = _target(_resource("pods"), rest[0])
    if len(rest) > 2:
        raise invalid("`kubectl logs` takes one pod and at most one container")
    return (target,), tuple(rest[1:2])


def _top_target(rest: list[str]) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    kind = rest[0] if rest else "pods"
    resource = _resource(kind)
    if resource.kind not in ("Pod", "Node"):
        raise invalid("`kubectl top` shows pods or nodes")
    if len(rest) > 1:
        return (_target(resource, rest[1]),), ()
    return (Target(resource),), ()
