"""One real lab for the whole session: control plane, simulated nodes, the three apps.

Starting it costs a few seconds (binaries are cached by `make control-plane`);
tests that inject faults use `clean_lab`, which recovers and waits for health
afterwards so each test starts from the healthy baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from support.lab import LabThread

from agents.runtime import ClusterAccess
from lab.k8s import api_client
from store.db import make_engine
from store.migrate import upgrade


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabThread]:
    handle = LabThread(tmp_path_factory.mktemp("lab"))
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def clean_lab(lab: LabThread) -> Iterator[LabThread]:
    yield lab
    lab.run(lab.lab.recover())
    lab.run(lab.lab.wait_ready(timeout_s=60))


@pytest.fixture(scope="session")
def admin(lab: LabThread) -> client.ApiClient:
    assert lab.lab.endpoints is not None
    return api_client(Path(lab.lab.endpoints.admin_kubeconfig))


@pytest.fixture(scope="session")
def observer(lab: LabThread) -> client.ApiClient:
    assert lab.lab.endpoints is not None
    return api_client(Path(lab.lab.endpoints.observer_kubeconfig))


@pytest.fixture(scope="session")
def executor(lab: LabThread) -> client.ApiClient:
    assert lab.lab.endpoints is not None
    return api_client(Path(lab.lab.endpoints.executor_kubeconfig))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store of this test's own."""
    url = f"sqlite:///{tmp_path / 'aoi.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def access(lab: LabThread) -> ClusterAccess:
    """The lab as the runtime sees a cluster: the observer identity and the telemetry APIs."""
    ends = lab.lab.endpoints
    assert ends is not None
    return ClusterAccess(
        api=api_client(Path(ends.observer_kubeconfig)),
        prometheus_url=ends.prometheus_url,
        jaeger_url=ends.jaeger_url,
    )
