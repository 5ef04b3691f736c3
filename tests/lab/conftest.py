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
from support.lab import LabThread

from lab.k8s import api_client


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
