"""Every fault family shows itself the way the real fault would, and recovery heals it.

Each case injects one family through the lab, then polls the real interfaces an
SRE (or the agents) would look at: Kubernetes objects and events through the
apiserver, PromQL through the Prometheus API, traces through the Jaeger API, and
container logs through the apiserver's log proxy. Then it recovers and asserts
that the mitigation check passes and the symptom is gone.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client
from support.lab import LabThread

from lab.scenarios.loader import scenario_from_cli

HOTEL, SOCIAL, SHOP = "test-hotel-reservation", "test-social-network", "astronomy-shop"
POLL_S = 20.0


@dataclass
class Probe:
    """Read-only views of the lab for the symptom checks."""

    lab: LabThread
    core: client.CoreV1Api
    apps: client.AppsV1Api

    def promql(self, query: str) -> list[dict[str, Any]]:
        assert self.lab.lab.endpoints is not None
        url = f"{self.lab.lab.endpoints.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}
        )
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, query: str) -> float:
        result = self.promql(query)
        return max((float(r["value"][1]) for r in result), default=0.0)

    def error_ratio(self, ns: str, service: str) -> float:
        """Share of requests *from* a service's callers that fail, seen by the callers."""
        sel = f'namespace="{ns}",destination_service_name="{service}",reporter="source"'
        return self.value(
            f'sum(rate(istio_requests_total{{{sel},response_code=~"5..|0"}}[5s])) / '
            f"sum(rate(istio_requests_total{{{sel}}}[5s]))"
        )

    def error_traces(self, service: str) -> str:
        assert self.lab.lab.endpoints is not None
        query = urllib.parse.urlencode(
            {"service": service, "tags": '{"error":"true"}', "limit": 20, "lookback": "1m"}
        )
        url = f"{self.lab.lab.endpoints.jaeger_url}/api/traces?{query}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()

    def pods(self, ns: str, service: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                ns, label_selector=f"app.kubernetes.io/name={service}"
            ).items
        )

    def logs(self, ns: str, service: str, tail: int = 200) -> str:
        text = []
        for pod in self.pods(ns, service):
            try:
                text.append(
                    self.core.read_namespaced_pod_log(pod.metadata.name, ns, tail_lines=tail)
                )
            except client.ApiException:
                continue
        return "\n".join(text)

    def events(self, ns: str, service: str) -> str:
        items = self.core.list_namespaced_event(ns).items
        return "\n".join(
            f"{e.reason}: {e.message}" for e in items if e.involved_object.name.startswith(service)
        )

    def waiting(self, ns: str, service: str) -> set[str]:
        reasons = set()
        for pod in self.pods(ns, service):
            for cs in pod.status.container_statuses or []:
                if cs.state and cs.state.waiting:
                    reasons.add(cs.state.waiting.reason)
                if cs.last_state and cs.last_state.terminated:
                    reasons.add(f"last:{cs.last_state.terminated.reason}")
            if pod.status.phase == "Pending":
                reasons.add("Pending")
        return reasons

    def restarts(self, ns: str, service: str) -> int:
        return sum(
            cs.restart_count
            for p in self.pods(ns, service)
            for cs in p.status.container_statuses or []
        )


Symptom = Callable[[Probe], bool]


@dataclass
class Case:
    family: str
    target: str | None
    ns: str
    symptom: Symptom
    app: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    healthy: Symptom | None = None
    """Extra check after recovery (the lab's own mitigation check always runs)."""


def _no_errors(ns: str, service: str) -> Symptom:
    return lambda p: p.lab.lab.model.health(ns, service).error_rate < 0.05


CASES = [
    Case(
        "target_port_misconfig",
        "user-service",
        SOCIAL,
        lambda p: (
            p.core.read_namespaced_service("user-service", SOCIAL).spec.ports[0].target_port == 9999
            and p.error_ratio(SOCIAL, "user-service") > 0.5
        ),
        healthy=_no_errors(SOCIAL, "compose-post-service"),
    ),
    Case(
        "mongodb_require_tls",
        "url-shorten-mongodb",
        SOCIAL,
        lambda p: (
            "requireTLS"
            in p.core.read_namespaced_config_map("url-shorten-mongodb-config", SOCIAL).data[
                "mongod.conf"
            ]
            and p.error_ratio(SOCIAL, "url-shorten-service") > 0.1
        ),
    ),
    Case(
        "mongodb_revoke_auth",
        "mongodb-geo",
        HOTEL,
        lambda p: "not authorized" in p.logs(HOTEL, "geo") and not p.waiting(HOTEL, "mongodb-geo"),
        healthy=_no_errors(HOTEL, "geo"),
    ),
    Case(
        "mongodb_user_unregistered",
        "mongodb-rate",
        HOTEL,
        lambda p: (
            "Authentication failed" in p.logs(HOTEL, "rate")
            or "UserNotFound" in p.logs(HOTEL, "mongodb-rate")
        ),
        healthy=_no_errors(HOTEL, "rate"),
    ),
    Case(
        "buggy_image",
        "geo",
        HOTEL,
        lambda p: bool({"CrashLoopBackOff", "last:Error"} & p.waiting(HOTEL, "geo")),
    ),
    Case(
        "scale_to_zero",
        "user-service",
        SOCIAL,
        lambda p: (
            not p.core.read_namespaced_endpoints("user-service", SOCIAL).subsets
            and p.error_ratio(SOCIAL, "user-service") > 0.5
        ),
    ),
    Case(
        "nonexistent_node",
        "user-service",
        SOCIAL,
        lambda p: (
            "FailedScheduling" in p.events(SOCIAL, "user-service")
            and "Pending" in p.waiting(SOCIAL, "user-service")
        ),
    ),
    Case(
        "redeploy_without_pv",
        None,
        HOTEL,
        lambda p: (
            p.core.read_namespaced_persistent_volume_claim("geo-pvc", HOTEL).status.phase
            == "Pending"
        ),
    ),
    Case(
        "wrong_binary",
        "profile",
        HOTEL,
        lambda p: "Readiness probe failed" in p.events(HOTEL, "profile"),
    ),
    Case("container_kill", "geo", HOTEL, lambda p: p.restarts(HOTEL, "geo") >= 1),
    Case(
        "pod_failure",
        "user",
        HOTEL,
        lambda p: p.restarts(HOTEL, "user") >= 1 and p.error_ratio(HOTEL, "user") > 0.3,
    ),
    Case(
        "pod_kill",
        "user",
        HOTEL,
        lambda p: (
            "Killing" in p.events(HOTEL, "user")
            or any(pod.metadata.deletion_timestamp for pod in p.pods(HOTEL, "user"))
            or len(p.pods(HOTEL, "user")) != 1
            or p.restarts(HOTEL, "user") == 0
        ),
    ),
    Case(
        "network_loss",
        "user",
        HOTEL,
        lambda p: p.error_ratio(HOTEL, "user") > 0.5,
        healthy=_no_errors(HOTEL, "frontend"),
    ),
    Case(
        "network_delay",
        "user",
        HOTEL,
        lambda p: (
            p.value(
                "histogram_quantile(0.99, sum by (le) ("
                "rate(istio_request_duration_milliseconds_bucket"
                f'{{namespace="{HOTEL}",destination_service_name="user",reporter="source"}}[5s])))'
            )
            > 1000
        ),
    ),
    Case(
        "feature_flag",
        "ad",
        SHOP,
        lambda p: p.error_ratio(SHOP, "ad") > 0.05,
        params={"flag": "adFailure"},
        healthy=_no_errors(SHOP, "ad"),
    ),
    Case(
        "bad_configmap_env",
        "reservation",
        HOTEL,
        lambda p: (
            "CrashLoopBackOff" in p.waiting(HOTEL, "reservation")
            or "last:Error" in p.waiting(HOTEL, "reservation")
        ),
    ),
    Case(
        "liveness_probe_misconfig",
        "search",
        HOTEL,
        lambda p: "Liveness probe failed" in p.events(HOTEL, "search"),
    ),
    Case(
        "memory_limit_too_low",
        "rate",
        HOTEL,
        lambda p: "last:OOMKilled" in p.waiting(HOTEL, "rate"),
    ),
    Case(
        "cpu_throttling",
        "frontend",
        HOTEL,
        lambda p: (
            p.value(
                f'sum(rate(container_cpu_cfs_throttled_periods_total{{namespace="{HOTEL}",'
                f'container="frontend"}}[5s]))'
            )
            > 0
        ),
        app="hotel-reservation",
    ),
    Case(
        "dns_failure",
        "text-service",
        SOCIAL,
        lambda p: (
            "Name or service not known" in p.logs(SOCIAL, "compose-post-service")
            or p.error_ratio(SOCIAL, "text-service") > 0.5
        ),
    ),
    Case(
        "bad_rollout",
        "recommendation",
        HOTEL,
        lambda p: (
            "ImagePullBackOff" in p.waiting(HOTEL, "recommendation")
            or "ErrImagePull" in p.waiting(HOTEL, "recommendation")
        ),
        app="hotel-reservation",
    ),
    Case(
        "certificate_expiry",
        "payment",
        SHOP,
        lambda p: "certificate" in p.error_traces("checkout") or "x509" in p.logs(SHOP, "checkout"),
    ),
    Case(
        "pvc_pending",
        "mongodb-profile",
        HOTEL,
        lambda p: (
            "Pending" in p.waiting(HOTEL, "mongodb-profile")
            and "FailedScheduling" in p.events(HOTEL, "mongodb-profile")
        ),
    ),
    Case(
        "noisy_neighbour",
        "cart",
        SHOP,
        lambda p: any(
            d.metadata.name.startswith("batch-reindex") and (d.status.ready_replicas or 0) > 0
            for d in p.apps.list_namespaced_deployment(SHOP).items
        ),
    ),
    Case(
        "retry_storm",
        "post-storage-service",
        SOCIAL,
        lambda p: (
            "POST_STORAGE_SERVICE_RETRY_BACKOFF_MS"
            in str(
                p.apps.read_namespaced_deployment("compose-post-service", SOCIAL)
                .spec.template.spec.containers[0]
                .env
            )
        ),
    ),
]


def _poll(probe: Probe, symptom: Symptom, what: str) -> None:
    deadline = time.monotonic() + POLL_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if symptom(probe):
                return
        except (client.ApiException, KeyError, AttributeError, TypeError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {POLL_S:.0f}s (last error: {last})")


@pytest.fixture
def probe(lab: LabThread, observer: client.ApiClient) -> Probe:
    return Probe(lab, client.CoreV1Api(observer), client.AppsV1Api(observer))


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
def test_fault_shows_and_recovery_heals(clean_lab: LabThread, probe: Probe, case: Case) -> None:
    lab = clean_lab.lab
    scenario = scenario_from_cli(case.family, case.target, case.params, app=case.app)
    clean_lab.run(lab.inject(scenario))
    _poll(probe, case.symptom, f"{case.family} symptom")
    if case.family not in ("container_kill", "noop"):
        assert not clean_lab.run(lab.check(scenario)).mitigated
    clean_lab.run(lab.recover())
    clean_lab.run(lab.wait_ready(timeout_s=60))
    deadline = time.monotonic() + POLL_S
    verdict = clean_lab.run(lab.check(scenario))
    while not verdict.mitigated and time.monotonic() < deadline:
        time.sleep(0.5)
        verdict = clean_lab.run(lab.check(scenario))
    assert verdict.mitigated, verdict.detail
    if case.healthy is not None:
        _poll(probe, case.healthy, f"{case.family} recovery")


def test_families_cover_the_catalogue() -> None:
    from lab.faults import FAULTS
    from lab.scenarios.families import FAMILIES

    covered = {c.family for c in CASES}
    faults = {name for name, info in FAMILIES.items() if not info.is_decoy} - {"noop"}
    assert faults <= covered
    assert set(FAMILIES) <= set(FAULTS)
