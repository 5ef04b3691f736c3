"""The action catalogue: every change the Executor can propose, as typed data.

A proposal shown to a human must say exactly what will run, on what, and what
should happen next; free text cannot be checked and cannot be replayed. Each
action is a pydantic model (discriminated by ``action``) that knows its target
(kind/namespace/name), the kubectl command it corresponds to, the effect it
should have, and the read-only check that proves it worked. Every action acts
inside one namespace: node actions (cordon, drain) are cluster-wide and stay with
cluster administrators, so the executor identity needs no cluster-wide right.
Nothing here talks to a cluster: ``agents.executor.apply`` runs actions,
``verify`` checks them.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from agents.redact import redact

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_RESOURCE_KEYS = frozenset({"cpu", "memory", "ephemeral-storage"})
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_Argument = Annotated[str, Field(max_length=4096)]
_PORT_NAME = r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$"  # an IANA service name (with a letter)


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(pattern=NAME_PATTERN, max_length=63)
    name: str = Field(pattern=NAME_PATTERN, max_length=253)
    target_kind: ClassVar[str] = "Deployment"

    @property
    def target(self) -> Target:
        return Target(kind=self.target_kind, namespace=self.namespace, name=self.name)

    def kubectl(self) -> str:
        """The kubectl command a person would type for the same change."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for people (Slack, the console): the equivalent kubectl command, redacted."""
        return redact(self.kubectl())

    def expected_effect(self) -> str:
        raise NotImplementedError

    def verification(self) -> str:
        """The read-only check run after execution, in words."""
        return (
            f"deployment {self.namespace}/{self.name} rolls out: every desired replica updated "
            "and ready, no container waiting or crash-looping"
        )

    def _ns(self) -> str:
        return f" -n {self.namespace}"


class _ContainerAction(_Action):
    container: str | None = Field(default=None, pattern=NAME_PATTERN)
    """The container to change; None means the pod's first (usually only) container."""

    def _c(self) -> str:
        return f" -c {self.container}" if self.container else ""


class Scale(_Action):
    action: Literal["scale"] = "scale"
    replicas: int = Field(ge=0, le=50)

    def kubectl(self) -> str:
        return f"kubectl scale deploy/{self.name} --replicas={self.replicas}{self._ns()}"

    def expected_effect(self) -> str:
        return f"deployment {self.namespace}/{self.name} runs {self.replicas} ready replica(s)"

    def verification(self) -> str:
        return f"deployment {self.namespace}/{self.name} has {self.replicas} ready replica(s)"


class ScaleNeighbour(Scale):
    """Scale a *neighbouring* workload (a batch job starving a service) rather than the victim."""

    action: Literal["scale_neighbour"] = "scale_neighbour"  # type: ignore[assignment]
    replicas: int = Field(default=0, ge=0, le=50)


class RolloutRestart(_Action):
    action: Literal["rollout_restart"] = "rollout_restart"

    def kubectl(self) -> str:
        return f"kubectl rollout restart deploy/{self.name}{self._ns()}"

    def expected_effect(self) -> str:
        return (
            f"every pod of deployment {self.namespace}/{self.name} is replaced by a fresh one "
            "(re-reading configuration and re-running init scripts)"
        )


class Rollback(_Action):
    action: Literal["rollback"] = "rollback"
    to_revision: int | None = Field(default=None, ge=1)
    """None: the revision before the current one."""

    def kubectl(self) -> str:
        to = f" --to-revision={self.to_revision}" if self.to_revision else ""
        return f"kubectl rollout undo deploy/{self.name}{to}{self._ns()}"

    def expected_effect(self) -> str:
        which = f"revision {self.to_revision}" if self.to_revision else "the previous revision"
        return (
            f"deployment {self.namespace}/{self.name} runs {which}'s pod template again "
            "(image, command, env, resources, probes, volumes, node selector)"
        )


class SetImage(_ContainerAction):
    action: Literal["set_image"] = "set_image"
    image: str = Field(min_length=1, max_length=512)

    def kubectl(self) -> str:
        container = self.container or "<first container>"
        return f"kubectl set image deploy/{self.name} {container}={self.image}{self._ns()}"

    def expected_effect(self) -> str:
        return f"deployment {self.namespace}/{self.name} runs image {self.image}"


class SetCommand(_ContainerAction):
    action: Literal["set_command"] = "set_command"
    command: list[_Argument] = Field(min_length=1, max_length=64)

    def kubectl(self) -> str:
        container = {"name": self.container or "<first container>", "command": self.command}
        patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
        return f"kubectl patch deploy {self.name}{self._ns()} -p '{json.dumps(patch)}'"

    def expected_effect(self) -> str:
        return f"deployment {self.namespace}/{self.name} starts `{' '.join(self.command)}`"


class SetEnv(_ContainerAction):
    action: Literal["set_env"] = "set_env"
    env: dict[str, str | None] = Field(min_length=1)
    """Variable → value; None removes the variable."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        wrong = sorted(k for k in value if not _ENV_NAME.match(k))
        if wrong:
            raise ValueError(f"not environment variable name(s): {wrong}")
        return value

    def kubectl(self) -> str:
        pairs = " ".join(f"{k}={v}" if v is not None else f"{k}-" for k, v in self.env.items())
        return f"kubectl set env deploy/{self.name} {pairs}{self._c()}{self._ns()}"

    def expected_effect(self) -> str:
        return (
            f"deployment {self.namespace}/{self.name} restarts with {', '.join(self.env)} changed"
        )


class SetResources(_ContainerAction):
    action: Literal["set_resources"] = "set_resources"
    limits: dict[str, str] = Field(default_factory=dict)
    requests: dict[str, str] = Field(default_factory=dict)

    @field_validator("limits", "requests")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - _RESOURCE_KEYS
        if unknown:
            raise ValueError(f"unknown resource(s) {sorted(unknown)}; use cpu or memory")
        return value

    def kubectl(self) -> str:
        pairs = (("limits", self.limits), ("requests", self.requests))
        parts = [f"--{key}={_pairs(values)}" for key, values in pairs if values]
        return f"kubectl set resources deploy/{self.name} {' '.join(parts)}{self._c()}{self._ns()}"

    def expected_effect(self) -> str:
        return (
            f"deployment {self.namespace}/{self.name} restarts with limits "
            f"{_pairs(self.limits) or '-'} and requests {_pairs(self.requests) or '-'}"
        )


def _pairs(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


class PatchServicePort(_Action):
    action: Literal["patch_service_port"] = "patch_service_port"
    target_kind: ClassVar[str] = "Service"
    port: int | None = Field(default=None, ge=1, le=65535)
    """The Service port to fix; None means its only (or first) port."""
    target_port: Annotated[int, Field(ge=1, le=65535)] | Annotated[str, Field(pattern=_PORT_NAME)]

    @field_validator("target_port")
    @classmethod
    def _named_port(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not any(c.isalpha() for c in value):
            raise ValueError(f"{value!r} is neither a port number nor a port name")
        return value

    def kubectl(self) -> str:
        patch = {
            "spec": {
                "ports": [{"port": self.port or "<first port>", "targetPort": self.target_port}]
            }
        }
        return f"kubectl patch svc {self.name}{self._ns()} -p '{json.dumps(patch)}'"

    def expected_effect(self) -> str:
        return (
            f"service {self.namespace}/{self.name} sends traffic to container port "
            f"{self.target_port}, where the pods listen"
        )

    def verification(self) -> str:
        return (
            f"service {self.namespace}/{self.name} has ready endpoints and its targetPort "
            "matches a port its pods' containers declare"
        )


class PatchServiceSelector(_Action):
    action: Literal["patch_service_selector"] = "patch_service_selector"
    target_kind: ClassVar[str] = "Service"
    selector: dict[str, str] = Field(min_length=1)

    def kubectl(self) -> str:
        patch = {"spec": {"selector": self.selector}}
        return f"kubectl patch svc {self.name}{self._ns()} -p '{json.dumps(patch)}'"

    def expected_effect(self) -> str:
        return f"service {self.namespace}/{self.name} selects the pods labelled {self.selector}"

    def verification(self) -> str:
        return f"service {self.namespace}/{self.name} has at least one ready endpoint"


class PatchConfigMap(_Action):
    action: Literal["patch_configmap"] = "patch_configmap"
    target_kind: ClassVar[str] = "ConfigMap"
    data: dict[str, str] = Field(min_length=1)

    def kubectl(self) -> str:
        return f"kubectl patch cm {self.name}{self._ns()} -p '{json.dumps({'data': self.data})}'"

    def expected_effect(self) -> str:
        return f"configmap {self.namespace}/{self.name} holds the new {', '.join(self.data)}"

    def verification(self) -> str:
        return f"configmap {self.namespace}/{self.name} reads back the new {', '.join(self.data)}"


class DeletePod(_Action):
    action: Literal["delete_pod"] = "delete_pod"
    target_kind: ClassVar[str] = "Pod"

    def kubectl(self) -> str:
        return f"kubectl delete pod {self.name}{self._ns()}"

    def expected_effect(self) -> str:
        return f"pod {self.namespace}/{self.name} is replaced by its controller with a fresh pod"

    def verification(self) -> str:
        return f"pod {self.namespace}/{self.name} is gone (or is a new pod with a new uid)"


ActionSpec = Annotated[
    Scale
    | ScaleNeighbour
    | RolloutRestart
    | Rollback
    | SetImage
    | SetCommand
    | SetEnv
    | SetResources
    | PatchServicePort
    | PatchServiceSelector
    | PatchConfigMap
    | DeletePod,
    Field(discriminator="action"),
]
ACTION_ADAPTER: TypeAdapter[ActionSpec] = TypeAdapter(ActionSpec)
ACTIONS: tuple[str, ...] = (
    "scale",
    "scale_neighbour",
    "rollout_restart",
    "rollback",
    "set_image",
    "set_command",
    "set_env",
    "set_resources",
    "patch_service_port",
    "patch_service_selector",
    "patch_configmap",
    "delete_pod",
)


def action_from_json(data: object) -> ActionSpec:
    """Validate a stored or model-written action (dict or JSON text)."""
    if isinstance(data, str | bytes):
        return ACTION_ADAPTER.validate_json(data)
    return ACTION_ADAPTER.validate_python(data)


def action_to_json(spec: ActionSpec) -> dict[str, object]:
    return dict(spec.model_dump(mode="json"))
