"""What the stand-in workspace holds: recorded calls, messages and the ts clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})


@dataclass
class Call:
    """One Web API request as the stand-in saw it.

    `status` is the HTTP status it answered (or would have, when `dropped`);
    `error` is the `error` of an ``ok: false`` answer; `at` is ``time.monotonic()``
    on arrival, so benches can count calls per second.
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    dropped: bool = False
    error: str | None = None

    @property
    def channel(self) -> str | None:
        """The channel the call addressed (`channel`, or setStatus' `channel_id`)."""
        value = self.params.get("channel", self.params.get("channel_id"))
        return value if isinstance(value, str) else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class Message:
    """A message in a channel, posted by the bot, a seeded user, or a stream.

    `streaming` marks a message made by chat.startStream (it stays True);
    `stopped` is set by chat.stopStream; `expired` once the stream timed out or
    `expire_streams` ran. `tasks` holds every status each task_update chunk gave a
    task id, in order; `plan_titles` every plan_update title. `text` of a stream is
    its markdown_text chunks joined. `updated` counts chat.update edits.
    """

    ts: str
    thread_ts: str | None
    user: str
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False
    stopped: bool = False
    ephemeral_for: str | None = None
    updated: int = 0
    channel: str = ""
    bot_id: str | None = None
    tasks: dict[str, list[str]] = field(default_factory=dict)
    plan_titles: list[str] = field(default_factory=list)
    expires_at: float | None = None
    """``time.monotonic()`` after which an open stream refuses appends; None: never."""

    @property
    def expired(self) -> bool:
        return (
            self.streaming
            and not self.stopped
            and self.expires_at is not None
            and time.monotonic() >= self.expires_at
        )

    @property
    def open(self) -> bool:
        """A stream that still takes chat.appendStream / chat.stopStream."""
        return self.streaming and not self.stopped and not self.expired

    def task_status(self, task_id: str) -> str | None:
        """The last status a task_update gave `task_id`, or None."""
        statuses = self.tasks.get(task_id)
        return statuses[-1] if statuses else None


class TsClock:
    """Message timestamps: "1700000000.000100", "1700000000.000200", ... never repeating."""

    BASE_US = 1_700_000_000 * 1_000_000
    STEP_US = 100

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> str:
        self._n += 1
        us = self.BASE_US + self._n * self.STEP_US
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key of a Slack ts (numeric, not lexicographic); malformed ones sort last."""
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds), int(fraction[:6].ljust(6, "0"))
    except ValueError:
        return 2**63, 0
