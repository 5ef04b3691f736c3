"""Bounds on the values an action may carry, whoever wrote them and whoever approves them.

The catalogue fixes the *shape* of an action; its values still come from a model
or, through a log line the model read, from an attacker. Some values are never
acceptable whatever a person clicks: an image from a registry nobody listed, a
command that is a shell (``sh -c``, ``bash -c``, pipes) or an inline program
(``python -c``), a replica count outside the configured bounds, any change in a
protected namespace. ``ActionRules`` holds the configured part (``aoi`` builds it
from settings); ``value_refusal`` applies it, and the denylist runs it when an
instruction is parsed, when a proposal is made and again right before it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.executor.actions import ActionSpec, Scale, ScaleNeighbour, SetCommand, SetImage

# The control plane and the bot's own namespace always; by default also the usual
# cluster add-ons (the control plane alone let a patch of monitoring/prometheus-config
# through).
ALWAYS_PROTECTED = frozenset({"kube-system", "kube-public", "kube-node-lease", "aoi-system"})
DEFAULT_PROTECTED_NAMESPACES = ALWAYS_PROTECTED | frozenset(
    {
        "monitoring", "observability", "istio-system", "linkerd", "cert-manager",
        "ingress-nginx", "calico-system", "tigera-operator", "kube-flannel",
        "gatekeeper-system", "kyverno", "argocd", "flux-system", "velero",
        "local-path-storage",
    }
)  # fmt: skip
# Where the lab's apps come from: Docker Hub's official images and the few publishers
# the demo apps use. All of Docker Hub would admit anybody's upload.
DEFAULT_REGISTRIES: tuple[str, ...] = (
    "docker.io/library",
    "docker.io/otel",
    "docker.io/open-feature",
    "docker.io/valkey",
    "docker.io/yinfangchen",
    "docker.io/hashicorp",
    "docker.io/deathstarbench",
    "docker.io/yg397",
    "docker.io/jaegertracing",
)
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 10

SHELLS = frozenset(
    {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox"}
)
# Programs whose job is to start another program (or a shell) on our behalf.
LAUNCHERS = frozenset(
    {"env", "exec", "nohup", "timeout", "nice", "setsid", "su", "sudo", "chroot", "xargs",
     "script", "watch", "eval", "source"}
)  # fmt: skip
# Interpreters, with the flags that hand them a program as a string.
INLINE_CODE = {
    "python": ("-c",), "python2": ("-c",), "python3": ("-c",), "perl": ("-e", "-E"),
    "ruby": ("-e",), "node": ("-e", "--eval", "-p", "--print"), "php": ("-r",),
    "lua": ("-e",), "awk": (), "gawk": (),
}  # fmt: skip
_SHELL_SYNTAX = re.compile(r"[|;&`<>\n\r]|\$[({]")
_DOCKER_HUB = "docker.io"
_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ActionRules:
    """What no approval can override: protected namespaces, image registries, replica bounds.

    ``registries`` entries are registry hosts (``docker.io``, ``ghcr.io``) or
    host/path prefixes (``ghcr.io/acme``); Docker Hub short names (``mongo:4.4``)
    count as ``docker.io/library/mongo``. The control-plane namespaces and
    aoi-system stay protected whatever ``protected_namespaces`` says.
    """

    protected_namespaces: frozenset[str] = DEFAULT_PROTECTED_NAMESPACES
    registries: tuple[str, ...] = DEFAULT_REGISTRIES
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"replica bounds {self.min_replicas}..{self.max_replicas} are not 0 <= min <= max"
            )
        protected = frozenset(self.protected_namespaces) | ALWAYS_PROTECTED
        object.__setattr__(self, "protected_namespaces", protected)
        object.__setattr__(self, "registries", tuple(self.registries))
        object.__setattr__(self, "_prefixes", tuple(_prefix(r) for r in self.registries if r))

    def image_allowed(self, image: str) -> bool:
        full = normalise_image(image)
        return full is not None and any(
            full == p or full.startswith(p + "/") or full.startswith(p + ":")
            for p in self._prefixes
        )


def normalise_image(image: str) -> str | None:
    """``registry/path[:tag][@digest]`` with Docker Hub's defaults filled in; None if invalid."""
    match = _REFERENCE.match(image)
    if match is None:
        return None
    name = match["name"]
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        name = f"{_DOCKER_HUB}/{name if rest else 'library/' + name}"
    elif first in ("index.docker.io", "registry-1.docker.io"):
        name = f"{_DOCKER_HUB}/{rest}"
    return name + image[len(match["name"]) :]


def _prefix(entry: str) -> str:
    entry = entry.strip().rstrip("/").lower()
    return _DOCKER_HUB if entry in ("index.docker.io", "registry-1.docker.io") else entry


DEFAULT_RULES = ActionRules()


def shell_refusal(command: Iterable[str]) -> str | None:
    """Why ``command`` would be a shell (or a program handed as text), or None."""
    argv = list(command)
    if not argv:
        return "an empty command starts nothing: give the program and its arguments"
    program = argv[0].rsplit("/", 1)[-1]
    base = re.sub(r"[0-9.]+$", "", program)
    if program in SHELLS or base in SHELLS:
        return f"`{program}` is a shell: give the program to run, never a shell that runs text"
    if program in LAUNCHERS:
        return f"`{program}` starts another program: give that program itself"
    flags = INLINE_CODE.get(program, INLINE_CODE.get(base))
    if flags is not None and (not flags or any(a in flags for a in argv[1:])):
        return f"`{program}` with a program as text is a shell by another name"
    syntax = next((a for a in argv if _SHELL_SYNTAX.search(a)), None)
    if syntax is not None:
        return f"{syntax!r} holds shell syntax (pipes, chaining, redirection, substitution)"
    return None


def value_refusal(spec: ActionSpec, rules: ActionRules = DEFAULT_RULES) -> str | None:
    """Why one of ``spec``'s values is never acceptable under ``rules``, or None."""
    if isinstance(spec, SetImage) and not rules.image_allowed(spec.image):
        listed = ", ".join(rules.registries) or "none"
        return (
            f"image {spec.image!r} is not from an allowed registry ({listed}): use an image "
            "from one of them, or roll back to a revision that ran before"
        )
    if isinstance(spec, SetCommand):
        why = shell_refusal(spec.command)
        if why is not None:
            return f"refused command: {why}"
    if isinstance(spec, ScaleNeighbour):
        if spec.replicas > rules.max_replicas:
            return f"at most {rules.max_replicas} replicas, not {spec.replicas}"
    elif isinstance(spec, Scale) and not rules.min_replicas <= spec.replicas <= rules.max_replicas:
        return (
            f"replicas must be between {rules.min_replicas} and {rules.max_replicas}, not "
            f"{spec.replicas}: scaling a workload away is not a remediation"
        )
    return None
