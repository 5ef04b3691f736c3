"""Executor instructions → typed actions; the denylist refuses what must never run."""

from __future__ import annotations

import pytest

from agents.executor import ActionError, action_from_json, action_to_json, check_spec, parse_action
from agents.executor.actions import (
    Cordon,
    DeletePod,
    PatchConfigMap,
    PatchServicePort,
    PatchServiceSelector,
    Rollback,
    RolloutRestart,
    Scale,
    ScaleNeighbour,
    SetCommand,
    SetEnv,
    SetImage,
    SetResources,
    Uncordon,
)

PORT_PATCH = """'{"spec":{"ports":[{"port":9090,"targetPort":9090}]}}'"""
COMMAND_PATCH = (
    """'{"spec":{"template":{"spec":{"containers":[{"name":"x","command":["profile"]}]}}}}'"""
)
JSON_PATCH = (
    """'[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["p"]}]'"""
)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("kubectl scale deploy/x --replicas=1 -n ns", Scale(namespace="ns", name="x", replicas=1)),
        (
            "kubectl scale deployment x --replicas 3 -n ns",
            Scale(namespace="ns", name="x", replicas=3),
        ),
        ("kubectl rollout restart deploy/x -n ns", RolloutRestart(namespace="ns", name="x")),
        ("kubectl rollout undo deploy/x -n ns", Rollback(namespace="ns", name="x")),
        (
            "kubectl rollout undo deploy/x --to-revision=2 -n ns",
            Rollback(namespace="ns", name="x", to_revision=2),
        ),
        (
            "kubectl set image deploy/x c=img:2 -n ns",
            SetImage(namespace="ns", name="x", container="c", image="img:2"),
        ),
        (
            "kubectl set env deploy/x A=1 B- -n ns",
            SetEnv(namespace="ns", name="x", env={"A": "1", "B": None}),
        ),
        (
            "kubectl set resources deploy/x --limits=memory=256Mi,cpu=1 -n ns",
            SetResources(namespace="ns", name="x", limits={"memory": "256Mi", "cpu": "1"}),
        ),
        (
            "kubectl patch svc x -n ns -p " + PORT_PATCH,
            PatchServicePort(namespace="ns", name="x", port=9090, target_port=9090),
        ),
        (
            """kubectl patch svc x -n ns -p '{"spec":{"selector":{"app":"x"}}}'""",
            PatchServiceSelector(namespace="ns", name="x", selector={"app": "x"}),
        ),
        (
            """kubectl patch cm flags -n ns -p '{"data":{"k":"v"}}'""",
            PatchConfigMap(namespace="ns", name="flags", data={"k": "v"}),
        ),
        (
            "kubectl patch deploy x -n ns -p " + COMMAND_PATCH,
            SetCommand(namespace="ns", name="x", container="x", command=["profile"]),
        ),
        (
            "kubectl patch deploy x -n ns --type=json -p " + JSON_PATCH,
            SetCommand(namespace="ns", name="x", command=["p"]),
        ),
        ("kubectl delete pod x-1 -n ns", DeletePod(namespace="ns", name="x-1")),
        ("kubectl cordon node-1", Cordon(name="node-1")),
        ("kubectl uncordon node/node-1", Uncordon(name="node-1")),
        (
            '{"action": "scale_neighbour", "namespace": "ns", "name": "batch"}',
            ScaleNeighbour(namespace="ns", name="batch", replicas=0),
        ),
    ],
)
def test_commands_and_json_parse_into_actions(command: str, expected: object) -> None:
    assert parse_action(command) == expected


@pytest.mark.parametrize(
    "command",
    [
        "kubectl delete namespace test-hotel-reservation",
        "kubectl delete ns shop",
        "kubectl delete node lab-node-1",
        "kubectl delete pv geo-pv",
        "kubectl delete pvc geo-pvc -n ns",
        "kubectl delete secret db -n ns",
        "kubectl patch secret db -n ns -p '{}'",
        "kubectl delete clusterrolebinding aoi-executor",
        "kubectl patch role x -n ns -p '{}'",
        "kubectl exec -it x -n ns -- sh",
        "kubectl port-forward svc/x 8080:80 -n ns",
        "kubectl attach x -n ns",
        "kubectl cp x:/etc/passwd /tmp/p -n ns",
        "kubectl rollout restart deploy/coredns -n kube-system",
        "kubectl scale deploy/aoi-bot --replicas=0 -n aoi-system",
        """kubectl patch cm coredns -n kube-system -p '{"data":{"Corefile":""}}'""",
        '{"action": "rollout_restart", "namespace": "kube-system", "name": "coredns"}',
        "kubectl scale deploy/x --replicas=1 -n ns; kubectl delete ns ns",
    ],
)
def test_denylisted_instructions_are_refused(command: str) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(command)
    assert info.value.denied, info.value.reason


@pytest.mark.parametrize(
    "command",
    [
        "kubectl apply -f x.yaml",
        "kubectl scale deploy/x -n ns",
        "kubectl rollout pause deploy/x -n ns",
        "kubectl rollout undo deploy/x",
        "kubectl patch svc x -n ns -p 'not json'",
        'kubectl patch svc x -n ns -p \'{"spec":{"type":"NodePort"}}\'',
        '{"action": "reboot"}',
        "kubectl scale deploy/x --replicas=1000 -n ns",
        "",
    ],
)
def test_instructions_outside_the_catalogue_are_errors(command: str) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(command)
    assert not info.value.denied


def test_actions_round_trip_through_json_and_describe_themselves() -> None:
    spec = parse_action(
        "kubectl patch svc user-service -n social -p "
        """'{"spec":{"ports":[{"port":9090,"targetPort":9090}]}}'"""
    )
    assert action_from_json(action_to_json(spec)) == spec
    assert spec.target.kind == "Service"
    assert "9090" in spec.expected_effect()
    assert "targetPort" in spec.verification()
    assert parse_action(spec.kubectl()) == spec
    assert (
        parse_action("kubectl rollout undo deploy/geo", default_namespace="hotel").namespace
        == "hotel"
    )


def test_the_denylist_checks_stored_specs_again() -> None:
    tampered = RolloutRestart.model_construct(namespace="aoi-system", name="aoi-bot")
    assert check_spec(tampered) is not None
    assert check_spec(RolloutRestart(namespace="shop", name="cart")) is None
