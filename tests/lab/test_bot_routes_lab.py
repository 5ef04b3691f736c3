"""One bot, several clusters: a routes file becomes checked ClusterRoutes (here, twice the lab)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.lab import LabThread

from aoi.commands.bot import bot_config, cluster_routes
from aoi.settings import Settings

pytestmark = pytest.mark.lab


def test_a_routes_file_maps_channels_to_clusters(lab: LabThread, tmp_path: Path) -> None:
    ends = lab.lab.endpoints
    assert ends is not None
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(
        f"""
- name: prod
  channels: "^inc-prod-"
  cluster: {ends.observer_kubeconfig}
  executor_kubeconfig: {ends.executor_kubeconfig}
  prometheus_url: {ends.prometheus_url}
  jaeger_url: {ends.jaeger_url}
- name: staging
  channel_ids: [C0STAGE]
  cluster: {ends.observer_kubeconfig}
"""
    )
    settings = Settings(_env_file=None, cluster_routes=routes_file)  # type: ignore[call-arg]
    routes = cluster_routes(settings)
    assert [r.name for r in routes] == ["prod", "staging"]
    prod, staging = routes
    assert prod.executor_api is not None
    assert prod.access.prometheus_url == ends.prometheus_url
    assert staging.executor_api is None
    config = bot_config(settings, routes)
    assert config.route_for("C1", "inc-prod-checkout") is prod
    assert config.route_for("C0STAGE", "inc-anything") is staging
    assert config.route_for("C1", "inc-dev") is None
