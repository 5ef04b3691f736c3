"""Which channels are incident channels, and which cluster answers in each."""

from __future__ import annotations

import re

from kubernetes import client

from agents.runtime import ClusterAccess
from bot.config import BotConfig, ClusterRoute
from store.policy import ApprovalPolicy

ACCESS = ClusterAccess(api=client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))
PROD = ClusterRoute(name="prod", access=ACCESS, channels=re.compile(r"^inc-prod-"))
STAGING = ClusterRoute(name="staging", access=ACCESS, channel_ids=frozenset({"C0STAGE"}))
ANY = ClusterRoute(name="default", access=ACCESS)


def _config(*routes: ClusterRoute, ids: frozenset[str] = frozenset()) -> BotConfig:
    return BotConfig(
        routes=routes, policy=ApprovalPolicy(approvers=frozenset()), incident_channel_ids=ids
    )


def test_incident_channels_by_name_pattern_or_id() -> None:
    config = _config(ANY, ids=frozenset({"C0WARROOM"}))
    assert config.is_incident_channel("C1", "inc-checkout")
    assert config.is_incident_channel("C1", "incident_db")
    assert config.is_incident_channel("C0WARROOM", "war-room")
    assert not config.is_incident_channel("C1", "general")
    assert not config.is_incident_channel("C1", "")  # a channel Slack would not name
    assert not config.is_incident_channel("C1", "team-inc-x")


def test_the_first_matching_route_answers_and_unmatched_channels_get_none() -> None:
    config = _config(PROD, STAGING)
    assert config.route_for("C1", "inc-prod-payments") is PROD
    assert config.route_for("C0STAGE", "inc-anything") is STAGING
    assert config.route_for("C1", "inc-dev-x") is None
    assert _config(PROD, ANY).route_for("C1", "inc-dev-x") is ANY


def test_the_refusal_describes_the_channels() -> None:
    text = _config(ANY, ids=frozenset({"C0A", "C0B"})).describe_channels()
    assert "^(inc|incident)[-_]" in text
    assert "2 listed channel(s)" in text
