"""Property tests: whatever text a model writes, the action parser answers with an action
that passes the denylist and the value rules, or with an ``ActionError``; nothing else.

A model's answer can be anything, and a crash in the parser used to end the
whole investigation. Three generators: arbitrary text, kubectl-like word salads
built from the parser's own vocabulary (verbs, kinds, flags, namespaces) with
arbitrary JSON patches, and JSON actions whose fields hold arbitrary JSON.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.executor import (
    ACTIONS,
    ActionError,
    ActionSpec,
    action_from_json,
    action_to_json,
    parse_action,
)
from agents.executor.denylist import check_spec
from agents.executor.rules import DEFAULT_RULES

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = [
    "kubectl", "scale", "rollout", "restart", "undo", "set", "image", "env", "resources",
    "patch", "delete", "cordon", "exec", "deploy", "deploy/geo", "deployment", "svc",
    "svc/geo", "service", "cm", "configmap", "pod", "pod/geo-1", "node", "secret", "geo",
    "-n", "--namespace", "shop", "kube-system", "monitoring", "--replicas", "--replicas=1",
    "--replicas=0", "--to-revision", "--to-revision=2", "-c", "geo", "--limits",
    "memory=1Gi", "--requests", "cpu=1", "--type", "json", "-p", "geo=mongo:4.4.6",
    "geo=attacker.invalid/x", "A=1", "B-", "*", "/", "=", ";", "|", "--",
]  # fmt: skip
PATCH_KEYS = [
    "spec", "template", "containers", "ports", "selector", "data", "name", "command", "image",
    "port", "targetPort", "op", "path", "value", "app",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(PATCH_KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "namespace", "name", "replicas", "to_revision", "container", "image", "command", "env",
    "limits", "requests", "port", "target_port", "selector", "data",
]  # fmt: skip


def _parse(text: str) -> ActionSpec | ActionError:
    """The parser's answer; any other exception escapes and fails the test."""
    try:
        return parse_action(text)
    except ActionError as exc:
        return exc


def _holds(text: str) -> None:
    """The property: an ActionError that says why, or an action the rules accept."""
    answer = _parse(text)
    if isinstance(answer, ActionError):
        assert answer.reason.strip()
        return
    assert check_spec(answer, DEFAULT_RULES) is None, answer
    assert action_from_json(action_to_json(answer)) == answer


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_is_an_action_or_an_action_error(text: str) -> None:
    _holds(text)


def _pick(*plausible: Any) -> st.SearchStrategy[Any]:
    """Mostly values the parser should accept or refuse on purpose, sometimes anything."""
    return st.integers(0, 3).flatmap(
        lambda i: st.text(max_size=12) if i == 0 else st.sampled_from(plausible)
    )


NAMESPACES = _pick("shop", "test-hotel-reservation", "kube-system", "monitoring", "Bad_NS")
NAMES = _pick("geo", "cart", "user-service", "geo-7d9f-1", "-bad")
IMAGES = _pick("mongo:4.4.6", "otel/demo:2.0.2", "attacker.invalid/pwn", "attacker/x:1", "x y")
COMMAND = st.lists(_pick("geo", "profile", "sh", "-c", "bash", "|", "python3", "--port=1"))
ENV = st.dictionaries(_pick("A", "DB_URL", "A B"), st.none() | _pick("1", "x"), max_size=3)
LABELS = st.dictionaries(_pick("app", "tier"), _pick("geo", "attacker"), max_size=2)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "replicas": st.integers(-2, 60),
    "to_revision": st.integers(-1, 5) | st.none(),
    "container": st.none() | NAMES,
    "image": IMAGES,
    "command": COMMAND,
    "env": ENV,
    "limits": st.dictionaries(_pick("cpu", "memory", "gpu"), _pick("1", "256Mi"), max_size=2),
    "requests": st.dictionaries(_pick("cpu", "memory"), _pick("1", "256Mi"), max_size=2),
    "port": st.none() | st.integers(0, 70000),
    "target_port": st.integers(0, 70000) | _pick("http", "9090"),
    "selector": LABELS,
    "data": st.dictionaries(_pick("k", "flags.json"), _pick("v", "{}"), max_size=2),
}


@st.composite
def _kubectl(draw: st.DrawFn) -> str:
    ns, name = draw(NAMESPACES), draw(NAMES)
    patch = draw(
        st.sampled_from(
            [
                {
                    "spec": {
                        "ports": [{"port": 9090, "targetPort": draw(FIELD_VALUES["target_port"])}]
                    }
                },
                {"spec": {"selector": draw(LABELS)}},
                {"data": draw(FIELD_VALUES["data"])},
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": name, "command": draw(COMMAND)}]}
                        }
                    }
                },
                {"spec": {"template": {"spec": {"containers": [{"image": draw(IMAGES)}]}}}},
                [
                    {
                        "op": "replace",
                        "path": "/spec/template/spec/containers/0/command",
                        "value": draw(COMMAND),
                    }
                ],
            ]
        )
        | JSON_VALUES
    )
    quoted = shlex.quote(json.dumps(patch))
    templates = [
        f"kubectl scale deploy/{name} --replicas={draw(FIELD_VALUES['replicas'])} -n {ns}",
        f"kubectl rollout {draw(_pick('restart', 'undo', 'pause'))} deploy/{name} -n {ns}",
        f"kubectl set image deploy/{name} {draw(NAMES)}={draw(IMAGES)} -n {ns}",
        f"kubectl set env deploy/{name} {draw(_pick('A=1', 'B-', 'A B=1'))} -n {ns}",
        f"kubectl patch {draw(_pick('svc', 'deploy', 'cm', 'secret'))} {name} -n {ns} -p {quoted}",
        f"kubectl delete {draw(_pick('pod', 'deploy', 'ns'))} {name} -n {ns}",
    ]
    words = draw(st.sampled_from(templates)).split(" ")
    extra = draw(st.lists(st.sampled_from(WORDS) | st.text(max_size=10), max_size=2))
    position = draw(st.integers(0, len(words)))
    return " ".join(words[:position] + extra + words[position:])


@SETTINGS
@given(_kubectl())
def test_kubectl_like_text_is_an_action_or_an_action_error(text: str) -> None:
    _holds(text)


@st.composite
def _json_action(draw: st.DrawFn) -> str:
    body: dict[str, Any] = {
        "action": draw(st.sampled_from([*ACTIONS, "reboot"])),
        "namespace": draw(NAMESPACES),
        "name": draw(NAMES),
    }
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        arbitrary = draw(st.integers(0, 3)) == 0
        body[field] = draw(JSON_VALUES if arbitrary else FIELD_VALUES.get(field, NAMES))
    return json.dumps(body)


@SETTINGS
@given(_json_action())
def test_json_actions_are_an_action_or_an_action_error(text: str) -> None:
    _holds(text)


@SETTINGS
@given(
    st.lists(st.text(max_size=12) | st.sampled_from(["sh", "-c", "bash", "|", "geo"]), max_size=5)
)
def test_a_returned_command_is_never_a_shell(command: list[str]) -> None:
    text = json.dumps(
        {"action": "set_command", "namespace": "shop", "name": "geo", "command": command}
    )
    answer = _parse(text)
    if isinstance(answer, ActionError):
        return
    assert answer.action == "set_command"
    program = command[0].rsplit("/", 1)[-1]
    assert program not in {"sh", "bash"}
    assert not any(c in arg for arg in command for c in "|;&`")
