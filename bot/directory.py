"""Slack lookups the bot caches: channel names and user-group memberships.

Both are read from Slack (``conversations.info``, ``usergroups.users.list``) and
kept for a while, so a burst of mentions or clicks costs one call, not one each.
A lookup that fails is never taken as a yes: an unknown channel is not an
incident channel and an unreadable group admits nobody, and the caller says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_api import CALL_ERRORS, classify

log = logging.getLogger("aoi.bot")

_MAX_CHANNELS = 10_000


@dataclass
class _Entry:
    value: frozenset[str] | str
    at: float


class ChannelDirectory:
    """Channel id → name, cached: a renamed channel is seen after ``ttl_s``."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._names: dict[str, _Entry] = {}

    async def name(self, channel_id: str) -> str | None:
        """The channel's name; None when Slack will not say (then a name read before, however
        old, is used if there is one; else the caller says it could not read the channel)."""
        entry = self._names.get(channel_id)
        if entry is not None and self._clock() - entry.at < self._ttl_s:
            return str(entry.value)
        try:
            response = await self._client.conversations_info(channel=channel_id)
            name = str((response.get("channel") or {}).get("name") or "")
        except (*CALL_ERRORS, OSError) as exc:
            log.warning("cannot read the name of channel %s: %s", channel_id, classify(exc)[0])
            return str(entry.value) if entry is not None else None
        if len(self._names) >= _MAX_CHANNELS:
            self._names.clear()  # a bound, not an LRU: names are cheap to read again
        self._names[channel_id] = _Entry(name, self._clock())
        return name


class GroupDirectory:
    """Which of the approver groups a user belongs to, read with ``usergroups.users.list``.

    Memberships are cached for ``ttl_s`` per group; concurrent clicks share one read.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._members: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.errors: dict[str, str] = {}
        """The last error per group that could not be read (shown in refusals and logs)."""

    async def groups_of(self, user: str, groups: Iterable[str]) -> frozenset[str]:
        """The groups among ``groups`` that list ``user``; unreadable groups count as not."""
        found = []
        for group in sorted(set(groups)):
            members = await self._members_of(group)
            if user in members:
                found.append(group)
        return frozenset(found)

    async def _members_of(self, group: str) -> frozenset[str]:
        entry = self._members.get(group)
        if entry is not None and self._clock() - entry.at < self._ttl_s:
            return frozenset(entry.value)
        lock = self._locks.setdefault(group, asyncio.Lock())
        async with lock:
            entry = self._members.get(group)
            if entry is not None and self._clock() - entry.at < self._ttl_s:
                return frozenset(entry.value)
            try:
                response = await self._client.usergroups_users_list(usergroup=group)
            except (*CALL_ERRORS, OSError) as exc:
                self.errors[group] = classify(exc)[0]
                log.warning("cannot read the members of user group %s: %s", group, classify(exc)[0])
                return frozenset()
            users = frozenset(str(u) for u in (response.get("users") or []))
            self.errors.pop(group, None)
            self._members[group] = _Entry(users, self._clock())
            return users
