"""The Probe's command parser: reads parse, everything else is refused before it runs."""

from __future__ import annotations

import pytest

from agents.probe.command import WRITE_VERBS, CommandError, parse_kubectl
from agents.probe.probe import kubectl_commands, mentioned, promql_expression


@pytest.mark.parametrize("verb", sorted(WRITE_VERBS))
def test_every_write_verb_is_denied(verb: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(f"kubectl {verb} pod geo -n hotel")
    assert info.value.denied


@pytest.mark.parametrize(
    "command",
    [
        "kubectl get pods -n hotel | grep geo",
        "kubectl get pods > /tmp/out",
        "kubectl get pods; kubectl delete ns hotel",
        "kubectl get pods && rm -rf /",
        "kubectl get pods $(whoami)",
        "kubectl logs `id`",
        "kubectl get pods\nkubectl delete pod x",
        "kubectl get secrets -n hotel",
        "kubectl get secret/db-password -n hotel",
        "kubectl describe secrets",
        "kubectl get pods,secrets -n hotel",
        "kubectl rollout restart deploy/geo -n hotel",
        "kubectl rollout undo deploy/geo",
        "kubectl get pods --kubeconfig=/root/.kube/admin",
        "kubectl get pods --as=system:admin",
        "kubectl get pods --token abc",
        "kubectl logs -f geo-1",
        "kubectl get pods -w",
        "kubectl exec -it geo-1 -- sh",
        "kubectl port-forward svc/geo 8080:80",
    ],
)
def test_dangerous_commands_are_denied(command: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(command)
    assert info.value.denied, info.value.reason


@pytest.mark.parametrize(
    "command",
    ["kubectl frobnicate pods", "kubectl get", "kubectl get widgets", "kubectl get pods -o toml",
     "kubectl logs", "kubectl top deploy", "kubectl get pods --tail=abc", ""],
)  # fmt: skip
def test_malformed_reads_are_errors_not_denials(command: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(command)
    assert not info.value.denied


def test_reads_parse_into_typed_commands() -> None:
    cmd = parse_kubectl("kubectl get pods -n hotel -o wide -l app=geo")
    assert (cmd.verb, cmd.target and cmd.target.resource.kind, cmd.namespace) == (
        "get",
        "Pod",
        "hotel",
    )
    assert (cmd.output, cmd.selector) == ("wide", "app=geo")
    cmd = parse_kubectl("get deploy/geo -n hotel -o yaml")
    assert cmd.target is not None
    assert (cmd.target.resource.plural, cmd.target.name) == (
        "deployments",
        "geo",
    )
    cmd = parse_kubectl("kubectl logs geo-1 -n hotel --tail=100 -c geo --previous --since=5m")
    assert (cmd.tail, cmd.container, cmd.previous, cmd.since) == (100, "geo", True, "5m")
    cmd = parse_kubectl("kubectl logs deploy/geo")
    assert cmd.target is not None
    assert cmd.target.resource.kind == "Deployment"
    cmd = parse_kubectl(
        "kubectl get events -n hotel --sort-by=.lastTimestamp --field-selector type=Warning"
    )
    assert (cmd.sort_by, cmd.field_selector) == (".lastTimestamp", "type=Warning")
    assert parse_kubectl("kubectl auth can-i delete pods -n x").args == ("delete", "pods")
    assert parse_kubectl("kubectl rollout history deploy/geo").subverb == "history"
    assert parse_kubectl("kubectl top pods -n hotel").verb == "top"
    assert len(parse_kubectl("kubectl get pods,svc -n x").targets) == 2
    assert parse_kubectl("kubectl get pods -nhotel").namespace == "hotel"
    assert parse_kubectl("kubectl get pvc -A").all_namespaces


def test_instructions_yield_commands_only_when_they_are_commands() -> None:
    assert kubectl_commands("kubectl get pods -n x") == ["kubectl get pods -n x"]
    assert kubectl_commands("please run `kubectl logs geo` and `kubectl get svc`") == [
        "kubectl logs geo",
        "kubectl get svc",
    ]
    assert kubectl_commands("describe what is wrong with geo") == []
    assert kubectl_commands("describe pod geo-1 -n x") == ["describe pod geo-1 -n x"]
    assert kubectl_commands("delete pod geo-1 -n x") == ["delete pod geo-1 -n x"]
    assert kubectl_commands("run kubectl get pods | sh") == ["kubectl get pods | sh"]


def test_service_names_match_whole_words_only() -> None:
    names = ["geo", "mongodb-geo", "user", "user-service"]
    assert mentioned("check mongodb-geo please", names) == ["mongodb-geo"]
    assert mentioned("is user-service or user down?", names) == ["user-service", "user"]
    assert mentioned("geography", names) == []


def test_promql_is_recognised_by_prefix_or_shape() -> None:
    assert promql_expression('promql: up{job="x"}') == 'up{job="x"}'
    rate = "sum by (destination_service_name) (rate(istio_requests_total[1m]))"
    assert promql_expression(rate) == rate
    assert promql_expression("what is the error rate of geo?") is None
    assert promql_expression("summarize the errors (by service)") is None
