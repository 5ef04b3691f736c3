"""What one bot process serves: which channels, which clusters, under which policy.

``aoi`` builds a ``BotConfig`` from settings; the bot itself reads no settings.
One bot can serve several clusters: each ``ClusterRoute`` names the channels it
answers in (a regular expression on the channel's name, or channel ids) and the
cluster's read-only access, executor identity and telemetry. The first route
that matches a channel wins.

Example::

    route = ClusterRoute(name="prod", channels=re.compile(r"^inc-prod-"), access=access,
                         executor_api=executor)
    config = BotConfig(routes=(route,), policy=policy, rules=rules, limits=limits)
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from kubernetes import client

from agents.executor import DEFAULT_RULES, ActionRules
from agents.runtime import ClusterAccess, Limits
from store.policy import ApprovalPolicy


@dataclass(frozen=True)
class ClusterRoute:
    """A cluster and the incident channels whose mentions it answers."""

    name: str
    access: ClusterAccess
    executor_api: client.ApiClient | None = None
    channels: re.Pattern[str] | None = None
    """Channel names this route answers in; None (and no ``channel_ids``): every one."""
    channel_ids: frozenset[str] = frozenset()

    def matches(self, channel_id: str, channel_name: str) -> bool:
        if channel_id in self.channel_ids:
            return True
        if self.channels is not None:
            return bool(channel_name and self.channels.search(channel_name))
        return not self.channel_ids


@dataclass(frozen=True)
class BotConfig:
    """Everything the bot decides by: channels, clusters, approvals, limits and timings."""

    routes: tuple[ClusterRoute, ...]
    policy: ApprovalPolicy
    rules: ActionRules = DEFAULT_RULES
    limits: Limits = field(default_factory=Limits)
    incident_channels: re.Pattern[str] | None = re.compile(r"^(inc|incident)[-_]")
    """Channel names that count as incident channels (None: only ``incident_channel_ids``)."""
    incident_channel_ids: frozenset[str] = frozenset()
    max_investigations: int = 20
    """Investigations running at once; later mentions wait their turn (and are told so)."""
    grace_s: float = 60.0
    """On SIGTERM, how long running investigations may take to finish."""
    group_cache_s: float = 300.0
    """How long Slack user-group memberships are trusted before they are read again."""
    sweep_interval_s: float = 15.0
    """How often expired proposals are found and their messages updated."""
    status_refresh_s: float = 90.0
    stale_investigation_s: float = 1800.0
    """An incident still INVESTIGATING after this long (its replica died) takes follow-ups."""
    verify_timeout_s: float = 60.0
    stream_min_interval_s: float = 1.0
    channel_patterns_text: str = field(default="", compare=False)
    """How to describe the incident channels in a refusal (built from the pattern when empty)."""

    def is_incident_channel(self, channel_id: str, channel_name: str) -> bool:
        if channel_id in self.incident_channel_ids:
            return True
        pattern = self.incident_channels
        return bool(pattern is not None and channel_name and pattern.search(channel_name))

    def route_for(self, channel_id: str, channel_name: str) -> ClusterRoute | None:
        return next((r for r in self.routes if r.matches(channel_id, channel_name)), None)

    def describe_channels(self) -> str:
        if self.channel_patterns_text:
            return self.channel_patterns_text
        parts: list[str] = []
        if self.incident_channels is not None:
            parts.append(f"channels whose name matches `{self.incident_channels.pattern}`")
        if self.incident_channel_ids:
            parts.append(f"{len(self.incident_channel_ids)} listed channel(s)")
        return " or ".join(parts) or "no channel (none is configured)"


def channel_ids(values: Collection[str]) -> frozenset[str]:
    """Channel ids from settings, blanks dropped."""
    return frozenset(v.strip() for v in values if v.strip())
