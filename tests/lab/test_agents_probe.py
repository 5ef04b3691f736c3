"""The Probe against the real lab: reads work and look like kubectl, writes never run.

Two layers keep the observer read-only: our allowlist refuses writes before any
request is sent (DENIED), and, when that layer is bypassed on purpose here, the
apiserver itself refuses the observer identity (403).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support.lab import LabThread

from agents.executor.actions import Scale
from agents.executor.apply import apply_action
from agents.probe import Probe
from agents.probe.kubectl import run_kubectl
from agents.probe.metrics import PrometheusClient
from agents.tools.errors import describe_error
from agents.tools.kube import RequestRefusedError, request
from agents.tools.result import ToolStatus

HOTEL = "test-hotel-reservation"


def _kubectl(observer: client.ApiClient, lab: LabThread, command: str) -> tuple[ToolStatus, str]:
    assert lab.lab.endpoints is not None
    prom = PrometheusClient(lab.lab.endpoints.prometheus_url)
    result = asyncio.run(run_kubectl(command, api=observer, prometheus=prom))
    return result.status, result.data or result.error or ""


def test_reads_render_like_kubectl(lab: LabThread, observer: client.ApiClient) -> None:
    status, text = _kubectl(observer, lab, f"kubectl get pods -n {HOTEL} -o wide")
    assert status is ToolStatus.SUCCESS
    assert text.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert any(line.startswith("geo-") and "Running" in line for line in text.splitlines())
    status, text = _kubectl(observer, lab, f"kubectl get deploy/geo -n {HOTEL} -o yaml")
    assert "kind: Deployment" in text
    assert "managedFields" not in text
    status, text = _kubectl(observer, lab, f"kubectl describe deploy geo -n {HOTEL}")
    assert "Replicas:" in text
    assert "Readiness:" in text
    status, text = _kubectl(observer, lab, f"kubectl describe svc geo -n {HOTEL}")
    assert "TargetPort:" in text
    assert "Events:" in text
    status, text = _kubectl(observer, lab, f"kubectl logs deploy/geo -n {HOTEL} --tail=5")
    assert status is ToolStatus.SUCCESS
    assert text.startswith("(logs of pod geo-")


def test_top_rollout_auth_and_events(lab: LabThread, observer: client.ApiClient) -> None:
    status, text = _kubectl(observer, lab, f"kubectl top pods -n {HOTEL}")
    assert status is ToolStatus.SUCCESS
    assert "CPU(cores)" in text
    assert "geo-" in text
    _, text = _kubectl(observer, lab, f"kubectl rollout status deploy/geo -n {HOTEL}")
    assert text.strip() == 'deployment "geo" successfully rolled out'
    _, text = _kubectl(observer, lab, f"kubectl rollout history deploy/geo -n {HOTEL}")
    assert "REVISION" in text
    assert _kubectl(observer, lab, f"kubectl auth can-i delete pods -n {HOTEL}")[1].strip() == "no"
    assert _kubectl(observer, lab, f"kubectl auth can-i list pods -n {HOTEL}")[1].strip() == "yes"
    status, text = _kubectl(
        observer, lab, f"kubectl get events -n {HOTEL} --sort-by=.lastTimestamp"
    )
    assert "REASON" in text.splitlines()[0]


@pytest.mark.parametrize(
    "command",
    [
        f"kubectl delete pod geo -n {HOTEL}",
        f"kubectl scale deploy/geo --replicas=0 -n {HOTEL}",
        f"kubectl get secrets -n {HOTEL}",
        f"kubectl get pods -n {HOTEL} | xargs kubectl delete pod",
        f"kubectl exec -it deploy/geo -n {HOTEL} -- sh",
    ],
)
def test_writes_are_denied_before_anything_runs(
    lab: LabThread, observer: client.ApiClient, admin: client.ApiClient, command: str
) -> None:
    before = (
        client.AppsV1Api(admin).read_namespaced_deployment("geo", HOTEL).metadata.resource_version
    )
    status, text = _kubectl(observer, lab, command)
    assert status is ToolStatus.DENIED
    assert "nothing ran" in text
    after = (
        client.AppsV1Api(admin).read_namespaced_deployment("geo", HOTEL).metadata.resource_version
    )
    assert after == before


def test_the_apiserver_refuses_the_observer_when_our_allowlist_is_bypassed(
    observer: client.ApiClient,
) -> None:
    pods = client.CoreV1Api(observer).list_namespaced_pod(HOTEL).items
    # Our request guard refuses a Secret path before sending it; the generated
    # client has no such guard, so it shows what the apiserver does on its own.
    with pytest.raises(RequestRefusedError):
        request(observer, "GET", f"/api/v1/namespaces/{HOTEL}/secrets")
    attempts = [
        lambda: request(
            observer, "DELETE", f"/api/v1/namespaces/{HOTEL}/pods/{pods[0].metadata.name}"
        ),
        lambda: client.CoreV1Api(observer).list_namespaced_secret(HOTEL),
        lambda: apply_action(observer, Scale(namespace=HOTEL, name="geo", replicas=0)),
    ]
    for attempt in attempts:
        with pytest.raises(ApiException) as info:
            attempt()
        assert info.value.status == 403
        assert describe_error(info.value).startswith("403 Forbidden: the observer identity may not")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl binary on this machine")
def test_the_real_kubectl_with_the_observer_kubeconfig_is_refused_too(lab: LabThread) -> None:
    assert lab.lab.endpoints is not None
    kubeconfig = lab.lab.endpoints.observer_kubeconfig
    done = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "delete", "pod", "x", "-n", HOTEL],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "forbidden" in done.stderr.lower()


def _probe(lab: LabThread, observer: client.ApiClient, max_calls: int = 3) -> Probe:
    ends = lab.lab.endpoints
    assert ends is not None
    return Probe(
        observer,
        ends.prometheus_url,
        ends.jaeger_url,
        max_calls=max_calls,
        namespaces=[HOTEL],
        window="30s",
    )


def test_probe_routes_instructions_to_tools(lab: LabThread, observer: client.ApiClient) -> None:
    probe = _probe(lab, observer)
    logs = asyncio.run(probe.run("check the logs of geo"))
    assert [r.invocation.split()[1] for r in logs] == ["logs", "describe"]
    assert all(r.status is ToolStatus.SUCCESS for r in logs)
    metrics = asyncio.run(probe.run("what are the error rates and latency?"))
    assert [r.meta.get("intent") for r in metrics] == ["error_rate", "latency_p99"]
    traces = asyncio.run(probe.run("show me traces"))
    assert traces[0].invocation.startswith("traces errors")
    assert traces[0].status in (ToolStatus.SUCCESS, ToolStatus.NO_DATA)
    analysis = asyncio.run(probe.run("what is going on?"))
    assert analysis[0].invocation.startswith("analyze")
    assert analysis[0].meta["answers"]["detection"] in ("Yes", "No")
    command = asyncio.run(probe.run(f"kubectl get svc geo -n {HOTEL}"))
    assert command[0].status is ToolStatus.SUCCESS
    query = (
        f'sum by (destination_service_name) (rate(istio_requests_total{{namespace="{HOTEL}"}}[1m]))'
    )
    promql = asyncio.run(probe.run(query))
    assert promql[0].status is ToolStatus.SUCCESS
    assert 'destination_service_name="geo"' in promql[0].data


def test_probe_caps_calls_refuses_repeats_and_never_raises(
    lab: LabThread, observer: client.ApiClient
) -> None:
    probe = _probe(lab, observer, max_calls=1)
    first = asyncio.run(probe.run("check geo"))
    assert len(first) == 1
    again = asyncio.run(probe.run("check geo"))
    assert again[0].status is ToolStatus.NO_DATA
    assert "already ran" in again[0].data
    denied = asyncio.run(probe.run(f"kubectl delete deploy geo -n {HOTEL}"))
    assert denied[0].status is ToolStatus.DENIED
    broken = Probe(observer, "http://127.0.0.1:9", "http://127.0.0.1:9", namespaces=[HOTEL])
    results = asyncio.run(broken.run("error rate and traces"))
    assert {r.status for r in results} == {ToolStatus.ERROR}
    assert "cannot reach Prometheus" in json.dumps([r.error for r in results])
