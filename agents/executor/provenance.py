"""Where each value of a proposed action comes from: a restoration, or something new.

An action's values are written by a model, and a model reads logs an attacker
can write. A value the target *had before* is a restoration and carries little
risk: an earlier ReplicaSet's pod template (the Deployment's rollout history),
the replica count an earlier ReplicaSet was scaled for, the last known-good
state the store recorded after a verified fix, the labels its own Pods carry
(for a Service selector), the port its Pods' containers expose (for a
targetPort). Anything else is a *new value*, shown as such with the exact
before → after diff, and only a person may approve it: automatic approval
(``--yes``, the benchmark) covers restorations only.

``trace`` reads the live target's surroundings through the given (read-only)
client when the proposal is made; ``snapshot`` digests a target's restorable
values after a verified execution, which is what a later ``trace`` compares
against as "last known good". Blocking calls: run them in a thread.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kubernetes import client
from pydantic import BaseModel, ConfigDict

from agents.executor.actions import (
    ActionSpec,
    PatchConfigMap,
    PatchServicePort,
    PatchServiceSelector,
    Rollback,
    Scale,
    ScaleNeighbour,
    SetCommand,
    SetEnv,
    SetImage,
    SetResources,
)
from agents.executor.apply import revision_of
from agents.executor.parse import ActionError
from agents.redact import redact
from agents.tools.kube import get_items
from agents.tools.paths import object_path

DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_DIFF_LINES = 400
Values = dict[str, Any]


class Origin(StrEnum):
    RESTORATION = "restoration"
    NEW = "new"


class ValueChange(BaseModel):
    """One value the action sets: where it is, before → after (redacted), and its origin."""

    model_config = ConfigDict(frozen=True)

    field: str
    origin: Origin
    source: str
    diff: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"{self.origin}: {self.field} ({self.source})", *(f"  {d}" for d in self.diff)]


class Provenance(BaseModel):
    """Every value of one action with its origin; empty when the action sets no value."""

    model_config = ConfigDict(frozen=True)

    changes: tuple[ValueChange, ...] = ()

    @property
    def restores_only(self) -> bool:
        return all(c.origin is Origin.RESTORATION for c in self.changes)

    def diff(self) -> list[str]:
        """What a person reads before approving: one block per value."""
        if not self.changes:
            return ["sets no value (a restart or a pod replacement)"]
        return [line for change in self.changes for line in change.lines()]

    def to_json(self) -> list[dict[str, Any]]:
        return [change.model_dump(mode="json") for change in self.changes]

    @classmethod
    def from_json(cls, rows: Iterable[Mapping[str, Any]] | None) -> Provenance:
        return cls(changes=tuple(ValueChange.model_validate(row) for row in rows or ()))


@dataclass(frozen=True)
class KnownGood:
    """A target's restorable values as digests, recorded after a verified execution."""

    proposal_id: int
    at: str
    fields: Mapping[str, str]

    def label(self) -> str:
        return f"last known good: after proposal #{self.proposal_id} was verified at {self.at}"


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _digest_of(value: Any) -> str | None:
    """An absent value has no digest: it matches a field the snapshot does not hold."""
    return None if value is None else digest(value)


def restorable_values(kind: str, obj: Mapping[str, Any]) -> Values:
    """The values an action may set on ``obj``, by field name (absent fields left out)."""
    spec = obj.get("spec") or {}
    if kind == "Deployment":
        values = _template_values(spec.get("template") or {})
        if spec.get("replicas") is not None:
            values["replicas"] = int(spec["replicas"])
        return values
    if kind == "Service":
        values = {"selector": dict(spec.get("selector") or {})}
        for port in spec.get("ports") or []:
            values[f"ports[{port.get('port')}].targetPort"] = port.get("targetPort")
        return values
    if kind == "ConfigMap":
        return {f"data[{k}]": v for k, v in (obj.get("data") or {}).items()}
    return {}


def snapshot(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """Digests of ``obj``'s restorable values: what the store keeps as "known good"."""
    return {field: digest(value) for field, value in restorable_values(kind, obj).items()}


def trace(
    api: client.ApiClient,
    spec: ActionSpec,
    live: Mapping[str, Any],
    *,
    known_good: KnownGood | None = None,
) -> Provenance:
    """The provenance of every value ``spec`` would set on the ``live`` target (blocking).

    Raises ``ActionError`` when the action cannot apply to this target at all (no
    such container or port, no earlier revision, a neighbour scaled up).
    """
    tracer = _Tracer(api, spec, live, known_good)
    return Provenance(changes=tuple(tracer.changes()))


class _Tracer:
    def __init__(
        self,
        api: client.ApiClient,
        spec: ActionSpec,
        live: Mapping[str, Any],
        known_good: KnownGood | None,
    ) -> None:
        self.api, self.spec, self.live, self.known_good = api, spec, live, known_good
        self.current = restorable_values(spec.target.kind, live)

    def changes(self) -> list[ValueChange]:
        spec = self.spec
        if isinstance(spec, Scale):
            return [self._replicas(spec)]
        if isinstance(spec, Rollback):
            return self._rollback(spec)
        if isinstance(spec, SetImage | SetCommand | SetEnv | SetResources):
            return self._container(spec)
        if isinstance(spec, PatchServicePort):
            return [self._target_port(spec)]
        if isinstance(spec, PatchServiceSelector):
            return [self._selector(spec)]
        if isinstance(spec, PatchConfigMap):
            return [self._value(f"data[{k}]", v, []) for k, v in spec.data.items()]
        return []  # rollout_restart, delete_pod: nothing is set

    def _value(
        self, field: str, after: Any, history: list[tuple[str, Values]], found: str | None = None
    ) -> ValueChange:
        """Classify one value: unchanged, seen in ``history``, known good, ``found``, or new."""
        before = self.current.get(field)
        source = found
        if after == before:
            source = "unchanged: the target has this value now"
        if source is None:
            source = next((label for label, seen in history if seen.get(field) == after), None)
        good = self.known_good
        if source is None and good is not None and good.fields.get(field) == _digest_of(after):
            source = good.label()
        origin = Origin.NEW if source is None else Origin.RESTORATION
        return ValueChange(
            field=field,
            origin=origin,
            source=source or "new value: the target never had it as far as its history shows",
            diff=tuple(_diff(before, after)),
        )

    # -- Deployments -------------------------------------------------------------------

    def _history(self) -> list[tuple[str, dict[str, Any]]]:
        """The Deployment's own ReplicaSets, newest revision first."""
        uid = (self.live.get("metadata") or {}).get("uid")
        path = object_path("/apis/apps/v1", "replicasets", namespace=self.spec.namespace)
        owned = [
            rs
            for rs in get_items(self.api, path)
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        ]
        owned.sort(key=lambda rs: revision_of(rs) or 0, reverse=True)
        return [
            (f"ReplicaSet {rs['metadata']['name']} (revision {revision_of(rs)})", rs)
            for rs in owned
        ]

    def _template_history(self) -> list[tuple[str, Values]]:
        return [
            (label, _template_values((rs.get("spec") or {}).get("template") or {}))
            for label, rs in self._history()
        ]

    def _replicas(self, spec: Scale) -> ValueChange:
        before = self.current.get("replicas")
        if isinstance(spec, ScaleNeighbour) and before is not None and spec.replicas >= before:
            raise ActionError(
                f"scale_neighbour only scales a neighbour down, and {spec.name} runs {before} "
                f"replica(s), not more than {spec.replicas}"
            )
        history = []
        for label, rs in self._history():
            desired = ((rs.get("metadata") or {}).get("annotations") or {}).get(DESIRED_REPLICAS)
            if desired is not None and str(desired).isdigit():
                history.append((f"{label} ran {desired} replica(s)", {"replicas": int(desired)}))
        return self._value("replicas", spec.replicas, history)

    def _rollback(self, spec: Rollback) -> list[ValueChange]:
        current = revision_of(dict(self.live))
        history = self._history()
        if spec.to_revision is not None:
            chosen = [(label, rs) for label, rs in history if revision_of(rs) == spec.to_revision]
        else:
            chosen = [
                (label, rs)
                for label, rs in history
                if current is None or (revision_of(rs) or 0) < current
            ][:1]
        if not chosen:
            which = f"revision {spec.to_revision}" if spec.to_revision else "an earlier revision"
            raise ActionError(
                f"deployment {spec.namespace}/{spec.name} has no {which} to roll back to"
            )
        label, rs = chosen[0]
        restored = _template_values((rs.get("spec") or {}).get("template") or {})
        fields = sorted(set(restored) | {f for f in self.current if f != "replicas"})
        return [
            ValueChange(
                field=field,
                origin=Origin.RESTORATION,
                source=label,
                diff=tuple(_diff(self.current.get(field), restored.get(field))),
            )
            for field in fields
            if self.current.get(field) != restored.get(field)
        ]

    def _container(self, spec: SetImage | SetCommand | SetEnv | SetResources) -> list[ValueChange]:
        containers = _containers((self.live.get("spec") or {}).get("template") or {})
        names = [str(c.get("name")) for c in containers]
        name = spec.container or (names[0] if names else None)
        if name not in names:
            have = ", ".join(names) or "none"
            raise ActionError(
                f"deployment {spec.namespace}/{spec.name} has no container {name!r} (it has {have})"
            )
        history = self._template_history()
        at = f"containers[{name}]"
        if isinstance(spec, SetImage):
            return [self._value(f"{at}.image", spec.image, history)]
        if isinstance(spec, SetCommand):
            return [self._value(f"{at}.command", list(spec.command), history)]
        if isinstance(spec, SetEnv):
            return [self._value(f"{at}.env[{k}]", v, history) for k, v in spec.env.items()]
        return [
            self._value(f"{at}.resources.{group}.{key}", value, history)
            for group, values in (("limits", spec.limits), ("requests", spec.requests))
            for key, value in values.items()
        ]

    # -- Services ----------------------------------------------------------------------

    def _pods(self, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        if not selector:
            return []
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))}
        path = object_path("/api/v1", "pods", namespace=self.spec.namespace)
        return get_items(self.api, path, query)

    def _target_port(self, spec: PatchServicePort) -> ValueChange:
        ports = (self.live.get("spec") or {}).get("ports") or []
        port = spec.port or (ports[0].get("port") if ports else None)
        if port is None or not any(p.get("port") == port for p in ports):
            raise ActionError(f"service {spec.namespace}/{spec.name} has no port {port}")
        selector = (self.live.get("spec") or {}).get("selector") or {}
        exposed = [
            (pod["metadata"]["name"], p)
            for pod in self._pods(selector)
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
        ]
        found = next(
            (
                f"container port {p.get('containerPort')}"
                + (f" ({p['name']})" if p.get("name") else "")
                + f" of its pod {pod}"
                for pod, p in exposed
                if spec.target_port in (p.get("containerPort"), p.get("name"))
            ),
            None,
        )
        return self._value(f"ports[{port}].targetPort", spec.target_port, [], found)

    def _selector(self, spec: PatchServiceSelector) -> ValueChange:
        return self._value("selector", dict(spec.selector), [], self._own_pods_carry(spec))

    def _own_pods_carry(self, spec: PatchServiceSelector) -> str | None:
        """The Service's own Pods are its namesake Deployment's; the selector picks those only."""
        wanted = spec.selector.items()
        deployments = get_items(
            self.api, object_path("/apis/apps/v1", "deployments", namespace=spec.namespace)
        )
        own = [d for d in deployments if d["metadata"]["name"] == spec.name]
        picked = [d for d in deployments if wanted <= _pod_labels(d).items()]
        if not own or picked != own:
            return None
        uid = own[0]["metadata"].get("uid")
        rs_path = object_path("/apis/apps/v1", "replicasets", namespace=spec.namespace)
        own_rs = {
            rs["metadata"]["name"]
            for rs in get_items(self.api, rs_path)
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        }
        for pod in self._pods(spec.selector):
            owners = {o.get("name") for o in pod["metadata"].get("ownerReferences") or []}
            if not owners & own_rs:
                return None
        return f"the labels of deployment {spec.name}'s pods, and no other workload's"


def _containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((template.get("spec") or {}).get("containers") or [])


def _pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    template = (deployment.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def _template_values(template: Mapping[str, Any]) -> Values:
    values: Values = {}
    for c in _containers(template):
        at = f"containers[{c.get('name')}]"
        values[f"{at}.image"] = c.get("image")
        if c.get("command") is not None:
            values[f"{at}.command"] = list(c["command"])
        for var in c.get("env") or []:
            values[f"{at}.env[{var.get('name')}]"] = (
                var.get("value", "") if "valueFrom" not in var else {"valueFrom": var["valueFrom"]}
            )
        for group in ("limits", "requests"):
            for key, value in ((c.get("resources") or {}).get(group) or {}).items():
                values[f"{at}.resources.{group}.{key}"] = value
    return {k: v for k, v in values.items() if v is not None}


def _text(value: Any) -> str:
    if value is None:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _diff(before: Any, after: Any) -> list[str]:
    """The exact change, redacted: ``before -> after`` on one line, a unified diff for text."""
    old, new = _text(before), _text(after)
    if "\n" not in old and "\n" not in new:
        return [redact(f"{old} -> {new}")]
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), "before", "after", lineterm="", n=1
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more diff lines"]
    return [redact(line) for line in lines]
