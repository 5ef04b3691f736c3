"""The Probe's command parser: reads parse, everything else is refused before it runs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shlex
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import RESTResponse

from agents.probe.command import READ_VERBS, WRITE_VERBS, CommandError, parse_kubectl
from agents.probe.kubectl import execute
from agents.probe.probe import Probe, kubectl_commands, mentioned, promql_expression
from agents.probe.resources import known_names
from agents.tools.paths import REVIEW_PATHS, check_path
from agents.tools.result import ToolResult


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


# -- names and namespaces never reach a URL as written --------------------------------------

PATH_ATTACKS = [
    "kubectl get cm/x/../../secrets/db -o yaml",
    "kubectl get cm x/../../secrets/db -o yaml",
    "kubectl get cm/x%2f..%2f..%2fsecrets%2fdb",
    "kubectl get cm/%2e%2e",
    "kubectl get cm/.. -n default",
    "kubectl get pods -n 'default/../..'",
    "kubectl get pods -n default/../../secrets",
    "kubectl get pods -n 'kube-system/secrets#'",
    "kubectl get pods -n '../../apis/rbac.authorization.k8s.io/v1/clusterroles#'",
    "kubectl get pods -n '%2e%2e'",
    "kubectl get pods 'x?watch=true' -n default",
    "kubectl get pods -n 'default?watch=true'",
    "kubectl get nodes/node-1/proxy",
    "kubectl get nodes node-1/proxy",
    "kubectl get svc/geo:80/proxy -n hotel",
    "kubectl get svc 'geo:80' -n hotel",
    "kubectl get pods/geo-1/exec -n hotel",
    "kubectl describe pod/geo-1/attach -n hotel",
    "kubectl logs 'geo-1/../../../secrets/db' -n hotel",
    "kubectl logs geo-1 -c '../../secrets' -n hotel",
    "kubectl logs deploy/geo/../../secrets -n hotel",
    "kubectl get pods 'geo\x00' -n hotel",
    "kubectl get pods -n 'hotel\x00'",
    "kubectl get pods -n '\uff48otel'",
    "kubectl get pod 'g\u0435o'",  # Cyrillic e
    "kubectl get pods -n 'hotel\u200b'",
    "kubectl get pods -n hotel\\#x",
    "kubectl get pods -n 'hotel x'",
]


@pytest.mark.parametrize("command", PATH_ATTACKS)
def test_path_attacks_are_refused_by_the_parser(command: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(command)
    assert info.value.denied, info.value.reason


@pytest.mark.parametrize(
    "command",
    [
        "kubectl get secrets.v1 -n hotel",
        "kubectl get SECRETS -n hotel",
        "kubectl get Secret/db -n hotel",
        "kubectl get secret.core/db",
        "kubectl get pods,secret -n hotel",
    ],
)
def test_secrets_in_any_spelling_are_denied(command: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(command)
    assert info.value.denied


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("kubectl get pods -n " + "a" * 64, "DNS-1123 label"),
        ("kubectl get pod " + "a" * 254, "DNS-1123 subdomain"),
        ("kubectl get pods -n Hotel", "DNS-1123 label"),
        ("kubectl get svc Geo -n hotel", "DNS-1123 label"),
    ],
)
def test_names_the_apiserver_would_reject_are_errors(command: str, why: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_kubectl(command)
    assert not info.value.denied
    assert why in info.value.reason
    assert "nothing was sent" in info.value.reason


def test_valid_names_still_parse() -> None:
    cmd = parse_kubectl("kubectl get pods geo-1.abc -n " + "a" * 63)
    assert cmd.target is not None
    assert cmd.target.name == "geo-1.abc"
    assert parse_kubectl("kubectl logs geo-1 geo -n hotel").container == "geo"
    assert parse_kubectl("kubectl get no node-1.lab").targets[0].name == "node-1.lab"


# -- properties: whatever the text, only the parser's error, and only allowlisted GETs --------

_OBJECT = {
    "kind": "Deployment",
    "metadata": {"name": "geo", "namespace": "hotel", "uid": "u1", "annotations": {}},
    "spec": {"selector": {"matchLabels": {"app": "geo"}}, "replicas": 1},
    "status": {},
    "items": [],
}


class FakeApi:
    """A real ``ApiClient`` whose transport records each request and answers a stock object."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.api = client.ApiClient(client.Configuration(host="http://probe.invalid"))
        self.api.call_api = self._call  # type: ignore[method-assign]

    def _call(self, method: str, url: str, *args: Any, **kwargs: Any) -> RESTResponse:
        self.sent.append((method, urllib3.util.parse_url(url).path or "/"))
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(json.dumps(_OBJECT).encode()), status=200, preload_content=False
        )
        return RESTResponse(raw)

    def assert_only_allowlisted_reads(self) -> None:
        for method, path in self.sent:
            if method == "POST":
                assert path in REVIEW_PATHS, path
                continue
            assert method == "GET", (method, path)
            parsed = check_path(path)
            assert parsed.plural != "secrets"
            assert parsed.subresource in (None, "log"), path


_WORDS = st.sampled_from(
    [
        *sorted(READ_VERBS), *sorted(WRITE_VERBS)[:8], *known_names(), "secrets", "secret",
        "status", "history", "can-i", "-n", "-A", "-o", "yaml", "json", "wide", "-l", "app=geo",
        "-c", "--tail=5", "--previous", "--since=5m", "-w", "--raw", "--as=x", "deploy/geo",
        "pod/geo-1", "cm/x/../../secrets/y", "hotel", "default/../..", "kube-system/secrets#",
        "x?watch=true", "nodes/n/proxy", "svc/x:80/proxy", "pods/x/exec", "%2e%2e", "geo\x00",
        "\uff48otel", "a" * 64, "geo-1", "--field-selector=type=Warning", "--sort-by=.spec",
    ]
)  # fmt: skip
_VALUE = st.one_of(
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["geo", "geo-1", "hotel", "x/../../secrets/y", "default/../..", "x#", "%2e"]),
    st.text(max_size=16),
)
_FLAGS = st.sampled_from(
    ["-A", "-o yaml", "-o json", "-o wide", "-o name", "-l app=geo", "--tail=5", "--previous",
     "--since=5m", "--show-labels", "--no-headers", "--revision=1", "--sort-by=.metadata.name",
     "--field-selector=type=Warning", "--all-containers", "--timestamps", "--limit-bytes=10"]
)  # fmt: skip


@st.composite
def _structured(draw: st.DrawFn) -> str:
    """Mostly well-formed reads with hostile parts where names and namespaces go."""
    verb = draw(
        st.sampled_from(
            ["get", "describe", "logs", "rollout status", "rollout history", "top", "events",
             "auth can-i get", "auth can-i delete"]
        )
    )  # fmt: skip
    words = verb.split()
    resource = draw(st.sampled_from([*known_names(), "secrets", "Secret.v1"]))
    name = draw(st.one_of(st.none(), _VALUE))
    if verb in ("logs",) and name is not None:
        words.append(name if draw(st.booleans()) else f"{resource}/{name}")
    elif name is not None and draw(st.booleans()):
        words.append(f"{resource}/{name}")
    else:
        words += [resource] + ([name] if name is not None else [])
    namespace = draw(st.one_of(st.none(), _VALUE))
    if namespace is not None:
        words += ["-n", namespace]
    if verb == "logs" and draw(st.booleans()):
        words += ["-c", draw(_VALUE)]
    flags = [w for flag in draw(st.lists(_FLAGS, max_size=3)) for w in flag.split()]
    return "kubectl " + " ".join(shlex.quote(w) for w in [*words, *flags])


_COMMANDS = st.one_of(
    _structured(),
    _structured(),
    st.text(max_size=200),
    st.lists(st.one_of(_WORDS, st.text(max_size=12)), min_size=1, max_size=8).map(
        lambda words: "kubectl " + " ".join(shlex.quote(w) for w in words)
    ),
    st.lists(_WORDS, min_size=1, max_size=8).map(lambda words: "kubectl " + " ".join(words)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_COMMANDS)
@example(text="kubectl get cm/x/../../secrets/db -o yaml")
@example(text="kubectl get pods -n 'default/../..'")
@example(text="kubectl logs deploy/geo -n hotel --tail=5")
@example(text="kubectl describe '' 0")
def test_the_parser_raises_only_its_error_and_accepted_commands_only_read(text: str) -> None:
    try:
        cmd = parse_kubectl(text)
    except CommandError:
        return
    assert cmd.verb in READ_VERBS
    if cmd.verb == "top":
        return
    fake = FakeApi()
    # The stock answer does not fit every command; the requests sent are the point.
    with contextlib.suppress(Exception):
        execute(fake.api, cmd)
    fake.assert_only_allowlisted_reads()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instruction=st.one_of(_COMMANDS, st.text(max_size=200)))
@example(
    instruction="please run `kubectl get cm/x/../../secrets/y` and `kubectl get nodes/n/proxy`"
)
def test_the_probe_never_raises_and_never_sends_anything_but_reads(instruction: str) -> None:
    fake = FakeApi()
    probe = Probe(fake.api, None, None, namespaces=["hotel"], deadline_s=5.0)
    results = asyncio.run(probe.run(instruction))
    assert results
    assert all(isinstance(r, ToolResult) for r in results)
    fake.assert_only_allowlisted_reads()


@pytest.mark.parametrize(
    "command", ["kubectl describe '' 0", "kubectl get , geo", "kubectl get ''"]
)
def test_an_empty_resource_type_is_a_clear_error(command: str) -> None:
    with pytest.raises(CommandError, match="needs a resource type"):
        parse_kubectl(command)
