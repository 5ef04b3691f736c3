"""Path, subresource and write attacks through the Probe, with an admin identity behind it.

RBAC would refuse most of these for the observer identity, which would hide a
hole in our own checks. So here the Probe holds the lab's *admin* kubeconfig:
the admin may read Secrets, proxy to nodes and exec into pods, and only our
code stands in the way. Every request that actually leaves the client is
recorded (method and the path urllib3 sends, after it resolves ``..`` and drops
``#...``), and the test asserts that none went to a Secret, to a subresource
outside the allowlist, or was a write; and that the value of a Secret made for
the test appears in no tool result.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from support.lab import LabThread
from urllib3.util import parse_url

from agents.probe import Probe
from agents.probe.kubectl import run_kubectl
from agents.tools.paths import REVIEW_PATHS, check_path
from agents.tools.result import ToolResult, ToolStatus
from lab.k8s import api_client

HOTEL = "test-hotel-reservation"
SECRET = "aoi-attack-probe"

ATTACKS = [
    f"kubectl get cm/x/../../secrets/{SECRET} -n {HOTEL} -o yaml",
    f"kubectl get cm x/../../secrets/{SECRET} -n {HOTEL} -o yaml",
    f"kubectl get cm/x%2f..%2f..%2fsecrets%2f{SECRET} -n {HOTEL} -o yaml",
    f"kubectl get cm/..%2fsecrets%2f{SECRET} -n {HOTEL} -o json",
    f"kubectl describe cm x/../../secrets/{SECRET} -n {HOTEL}",
    f"kubectl get pods -n '{HOTEL}/secrets/{SECRET}#' -o yaml",
    f"kubectl get configmaps -n '{HOTEL}/secrets#' -o yaml",
    "kubectl get pods -n 'default/../..' -o yaml",
    "kubectl get secrets -n 'x/../..' -o yaml",
    "kubectl get pods -n '../../secrets#' -o yaml",
    "kubectl get pods -n '../../apis/rbac.authorization.k8s.io/v1/clusterroles#' -o yaml",
    "kubectl get pods -n '%2e%2e/%2e%2e/secrets' -o yaml",
    f"kubectl get pods 'x?watch=true' -n {HOTEL}",
    f"kubectl get pods -n '{HOTEL}?watch=true'",
    f"kubectl get pods -n '{HOTEL}/pods?watch=true#'",
    "kubectl get nodes/NODE/proxy",
    "kubectl get nodes 'NODE/proxy/metrics'",
    "kubectl get no -n '../nodes/NODE/proxy#'",
    f"kubectl get svc/geo:8083/proxy -n {HOTEL}",
    f"kubectl get svc 'geo:8083/proxy/' -n {HOTEL}",
    f"kubectl get pods -n '{HOTEL}/services/geo:8083/proxy#'",
    f"kubectl get pods/POD/exec -n {HOTEL}",
    f"kubectl get pods 'POD/exec?command=id' -n {HOTEL}",
    f"kubectl logs 'POD/../../../secrets/{SECRET}' -n {HOTEL}",
    f"kubectl logs POD -c '../../../secrets/{SECRET}' -n {HOTEL}",
    f"kubectl logs deploy/geo/../../secrets/{SECRET} -n {HOTEL}",
    f"kubectl get pod 'POD\x00' -n {HOTEL}",
    "kubectl get pods -n '\uff4bube-system' -o yaml",
    f"kubectl get secret/{SECRET} -n {HOTEL} -o yaml",
    f"kubectl get Secrets.v1 -n {HOTEL} -o yaml",
    f"kubectl get pods,secrets -n {HOTEL} -o yaml",
    f"kubectl get pods --raw /api/v1/namespaces/{HOTEL}/secrets/{SECRET}",
    f"kubectl delete pod POD -n {HOTEL}",
    f"kubectl scale deploy/geo --replicas=0 -n {HOTEL}",
    f"kubectl exec POD -n {HOTEL} -- cat /etc/passwd",
    f"kubectl port-forward POD 8080:8083 -n {HOTEL}",
    f"kubectl rollout restart deploy/geo -n {HOTEL}",
    f"kubectl get pods -w -n {HOTEL}",
    f"kubectl logs -f POD -n {HOTEL}",
    f"kubectl get pods -n {HOTEL} --as=system:admin",
    f"kubectl get pods -n {HOTEL}; kubectl get secrets -n {HOTEL}",
]
INSTRUCTIONS = [
    f"check the logs of geo -n '{HOTEL}/../../secrets#'",
    f"what is going on in namespace {HOTEL}/../../secrets",
    "error rate -n default/../..",
    f"please run `kubectl get cm/x/../../secrets/{SECRET} -n {HOTEL} -o yaml` and "
    f"`kubectl get nodes/NODE/proxy`",
    f"kubectl get pods -n {HOTEL}\nkubectl get secrets -n {HOTEL}",
]


class Recorder:
    """Every request that leaves ``api``, as (method, path urllib3 sends, query)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.sent: list[tuple[str, str, str]] = []
        rest = api.rest_client
        original = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parsed = parse_url(url)  # what urllib3 puts on the wire: dots resolved, no #...
            self.sent.append((method.upper(), parsed.path or "/", parsed.query or ""))
            return original(method, url, *args, **kwargs)

        rest.request = request


@pytest.fixture(scope="module")
def secret_value(admin: client.ApiClient) -> Iterator[str]:
    value = "aoi-canary-" + secrets.token_hex(16)
    core = client.CoreV1Api(admin)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET, namespace=HOTEL),
        string_data={"password": value},
    )
    core.create_namespaced_secret(HOTEL, body)
    try:
        yield value
    finally:
        core.delete_namespaced_secret(SECRET, HOTEL)


@pytest.fixture
def probe_api(lab: LabThread) -> tuple[client.ApiClient, Recorder]:
    """A fresh admin client (its own rest client, so the recording stays in this test)."""
    assert lab.lab.endpoints is not None
    api = api_client(Path(lab.lab.endpoints.admin_kubeconfig))
    return api, Recorder(api)


def _names(admin: client.ApiClient) -> dict[str, str]:
    core = client.CoreV1Api(admin)
    pods = [p.metadata.name for p in core.list_namespaced_pod(HOTEL).items]
    pod = next(name for name in pods if name.startswith("geo-"))
    node = core.list_node().items[0].metadata.name
    return {"POD": pod, "NODE": node}


def _fill(text: str, names: dict[str, str]) -> str:
    for placeholder, value in names.items():
        text = text.replace(placeholder, value)
    return text


def _assert_nothing_forbidden_left(sent: list[tuple[str, str, str]]) -> None:
    for method, path, query in sent:
        where = f"{method} {path}?{query}"
        assert "secrets" not in path.split("/"), where
        assert "watch" not in query, where
        assert "follow" not in query, where
        if method == "POST":
            assert path in REVIEW_PATHS, where
            continue
        assert method == "GET", where
        parsed = check_path(path)  # only the grammar we build: known resources, no proxy/exec
        assert parsed.subresource in (None, "log"), where


def _leaks(results: list[ToolResult], value: str) -> list[str]:
    encoded = base64.b64encode(value.encode()).decode()
    texts = [r.render() + repr(r.meta) for r in results]
    return [t for t in texts if value in t or encoded in t]


def test_the_admin_identity_could_read_the_secret(
    admin: client.ApiClient, secret_value: str
) -> None:
    """The control: with this identity only our code, not RBAC, keeps the Secret out."""
    secret = client.CoreV1Api(admin).read_namespaced_secret(SECRET, HOTEL)
    assert base64.b64decode(secret.data["password"]).decode() == secret_value


def test_the_recorder_sees_ordinary_reads(probe_api: tuple[client.ApiClient, Recorder]) -> None:
    api, recorder = probe_api
    result = asyncio.run(run_kubectl(f"kubectl logs deploy/geo -n {HOTEL} --tail=3", api=api))
    assert result.status is ToolStatus.SUCCESS, result.error
    paths = [path for _, path, _ in recorder.sent]
    assert f"/apis/apps/v1/namespaces/{HOTEL}/deployments/geo" in paths
    assert any(p.startswith(f"/api/v1/namespaces/{HOTEL}/pods/geo-") for p in paths)
    assert any(p.endswith("/log") for p in paths)


@pytest.mark.parametrize("command", ATTACKS)
def test_kubectl_attacks_send_nothing_forbidden(
    admin: client.ApiClient,
    probe_api: tuple[client.ApiClient, Recorder],
    secret_value: str,
    command: str,
) -> None:
    api, recorder = probe_api
    command = _fill(command, _names(admin))
    result = asyncio.run(run_kubectl(command, api=api, default_namespace=HOTEL))
    assert result.status in (ToolStatus.DENIED, ToolStatus.ERROR), result.render()
    assert recorder.sent == [], recorder.sent
    _assert_nothing_forbidden_left(recorder.sent)
    assert not _leaks([result], secret_value)


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_probe_instructions_send_nothing_forbidden(
    lab: LabThread,
    admin: client.ApiClient,
    probe_api: tuple[client.ApiClient, Recorder],
    secret_value: str,
    instruction: str,
) -> None:
    ends = lab.lab.endpoints
    assert ends is not None
    api, recorder = probe_api
    probe = Probe(
        api, ends.prometheus_url, ends.jaeger_url, namespaces=[HOTEL], window="30s", max_calls=5
    )
    results = asyncio.run(probe.run(_fill(instruction, _names(admin))))
    assert results
    _assert_nothing_forbidden_left(recorder.sent)
    assert not _leaks(results, secret_value)


def test_every_attack_in_one_investigation_leaves_no_trace(
    lab: LabThread,
    admin: client.ApiClient,
    probe_api: tuple[client.ApiClient, Recorder],
    secret_value: str,
) -> None:
    """All of it against one Probe, as a hostile model would send it, then ordinary reads."""
    ends = lab.lab.endpoints
    assert ends is not None
    api, recorder = probe_api
    names = _names(admin)
    probe = Probe(api, ends.prometheus_url, ends.jaeger_url, namespaces=[HOTEL], window="30s")
    results: list[ToolResult] = []
    for text in [*ATTACKS, *INSTRUCTIONS]:
        results += asyncio.run(probe.run(_fill(text, names)))
    results += asyncio.run(probe.run(f"kubectl get pods -n {HOTEL} -o yaml"))
    assert results[-1].status is ToolStatus.SUCCESS
    assert recorder.sent, "the recorder must have seen the ordinary read"
    _assert_nothing_forbidden_left(recorder.sent)
    assert not _leaks(results, secret_value)
