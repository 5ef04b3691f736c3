"""The live thread writer: one investigation's events as a streamed Slack thread reply.

A `ThreadStream` renders the events of `agents.events` into the incident's thread
with Slack's native streaming (``chat.startStream`` / ``appendStream`` /
``stopStream``, plan display mode): a `PlanUpdateChunk` per phase change, a
`TaskUpdateChunk` per probe call (``in_progress``, then ``complete`` or ``error``
with one line of its result), and markdown lines for everything else. Every
string taken from an event passes through `bot.text.safe` (escaped, one line,
bounded); tool output is never shown raw.

The stream methods are called directly, not through ``client.chat_stream()``:
that helper neither checks which of its calls reached Slack nor lets a failed
call fall back, and this writer must know exactly what a message holds. All the
state is kept here (the messages, their lines and tasks with their statuses), so
whatever Slack does, nothing is lost and nothing is shown twice:

- Rollover: each message has a budget of ``max_chars`` characters (its rendering,
  each task counted once at its largest); an item that would not fit starts the
  next message. A message whose tasks are still running stays open until they end.
- Fallback: when ``chat.startStream`` is refused, or any stream call fails or
  loses its response (an expired stream, a dropped connection), streaming ends for
  the thread. Each unfinished message becomes plain mrkdwn text (its whole
  rendering, in ``text`` and in section blocks, which replace the streamed
  content): one whose ts is known is stopped (best effort) and edited with
  ``chat.update``, one whose ts is not is posted with `bot.slack_api.Poster`
  (exactly once by key). A stream whose ``chat.startStream`` response was lost is
  first looked for in the thread (by its text), so it is stopped and edited rather
  than left open beside a second copy of its lines. Writes are coalesced, at most
  one per ``max(1 s, min_update_interval_s)``, longer when Slack asks (``Retry-After``).

Slack is written by a background task, so `event` never waits on Slack; `finish`
flushes and closes. Slack trouble is logged and counted in ``errors``, never
raised; a programming error in the writer is raised by the next `event`/`finish`.

Example::

    stream = ThreadStream(client, channel="C1", thread_ts=ts, team_id="T1", user_id="U1")
    await stream.start()
    async for event in investigate(...):
        await stream.event(event)
    await stream.finish()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.messages.chunk import (
    Chunk,
    MarkdownTextChunk,
    PlanUpdateChunk,
    TaskUpdateChunk,
)
from slack_sdk.web.async_client import AsyncWebClient

from agents.events import (
    AnyEvent,
    DiagnosisEvent,
    ErrorEvent,
    FindingEvent,
    Finished,
    Hypothesis,
    Plan,
    ProbeCall,
    ProbeResult,
    ProposalEvent,
    Started,
)
from bot.slack_api import POST_EVENT_TYPE, Poster, SlackUnavailable, classify
from bot.text import safe

log = logging.getLogger(__name__)

STATUS = "is investigating…"
TITLE_LIMIT = 150
"""A task's title (the probe invocation) and the plan title."""
OUTPUT_LIMIT = 200
"""A task's output: one line of the probe's result."""
LINE_LIMIT = 600
"""The event text of one markdown line (a finding, a diagnosis, an error)."""
NOTE_LIMIT = 3_000
SECTION_LIMIT = 3_000
"""Slack's limit on a section block's text."""
CHUNKS_PER_CALL = 50
MAX_BLOCKS = 50
STREAM_GAP_S = 0.6
"""Pause between stream calls: ``chat.appendStream`` is Tier 4 (about 100 a minute)."""
BACKOFF_MAX_S = 10.0
FINISH_ATTEMPTS = 3
FINISH_TIMEOUT_S = 60.0
SLACK_MAX_CHARS = 11_000
LOST_START_WAIT_S = 0.5
"""After a lost ``chat.startStream``: the wait before looking for the stream it made."""
LOOKUP_PAGES = 10

SlackTrouble = (SlackUnavailable, SlackClientError, aiohttp.ClientError, TimeoutError, OSError)
"""What a Slack call may raise that is Slack's (or the network's) trouble, not ours."""

_ICONS = {
    "pending": ":white_circle:",
    "in_progress": ":hourglass_flowing_sand:",
    "complete": ":white_check_mark:",
    "error": ":x:",
}
_ICON_MAX = max(len(icon) for icon in _ICONS.values())
_COMPLETE = frozenset({"SUCCESS", "NO_DATA", "OK", "COMPLETE"})
_DEAD = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
        "restricted_action",
    }
)
"""Errors after which no write to this thread can succeed."""
_FOR_GOOD = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
"""Errors after which writing that one message again cannot succeed."""


def _text(value: object, limit: int) -> str:
    """Event text as it may be shown: redacted, escaped, one line, at most ``limit``."""
    return safe(str(value), limit)


def _b(text: str, md: bool) -> str:
    return f"**{text}**" if md else f"*{text}*"


def _task_line(icon: str, title: str, output: str) -> str:
    line = f"{icon} `{title}`"  # safe() made every backtick in the title a look-alike
    return f"{line} → {output}" if output else line


@dataclass
class _Task:
    id: str
    title: str
    key: tuple[int, str]
    message: int
    status: str = "in_progress"
    output: str = ""

    def chunk(self) -> TaskUpdateChunk:
        return TaskUpdateChunk(
            id=self.id, title=self.title, status=self.status, output=self.output or None
        )

    def mrkdwn(self) -> str:
        return _task_line(_ICONS[self.status], self.title, self.output)

    def cost(self) -> int:
        """The most this task's line can ever take (any status, a full output)."""
        return len(_task_line("x" * _ICON_MAX, self.title, "x" * OUTPUT_LIMIT)) + 1


@dataclass
class _Item:
    """One element of a message: a markdown line, a plan title or a task."""

    markdown: str = ""
    mrkdwn: str = ""
    plan: str | None = None
    task: _Task | None = None

    def chunk(self) -> Chunk:
        if self.task is not None:
            return self.task.chunk()
        if self.plan is not None:
            return PlanUpdateChunk(title=self.plan)
        return MarkdownTextChunk(text=self.markdown + "\n")

    def text(self) -> str:
        return self.task.mrkdwn() if self.task is not None else self.mrkdwn

    def cost(self) -> int:
        if self.task is not None:
            return self.task.cost()
        return max(len(self.markdown), len(self.mrkdwn)) + 1


class _State(Enum):
    STREAM = "stream"  # a native stream (to be) opened
    TEXT = "text"  # plain text, edited with chat.update
    DONE = "done"  # stream stopped with everything delivered
    ABANDONED = "abandoned"  # refused for good (or still at finish): kept here only


@dataclass
class _Message:
    index: int
    state: _State
    items: list[_Item] = field(default_factory=list)
    cost: int = 0
    ts: str | None = None
    retired: bool = False
    pending: list[Chunk] = field(default_factory=list)  # STREAM: chunks not yet sent
    version: int = 0  # TEXT: changes made
    synced: int = -1  # TEXT: the version Slack shows
    stop_first: bool = False  # TEXT: stop the stream it was (best effort) first
    failures: int = 0

    def running(self) -> bool:
        return any(i.task is not None and i.task.status == "in_progress" for i in self.items)


class ThreadStream:
    """The live rendering of one investigation in its Slack thread (see the module).

    ``clock`` times the writes and ``first_message_at``; it must advance with real time
    (the writer sleeps for real). ``poster`` defaults to a `Poster` on ``client``.
    ``errors`` counts Slack trouble by ``method:error``; ``mode`` and
    ``fallback_reason`` tell whether, and why, streaming was given up.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        team_id: str,
        user_id: str,
        min_update_interval_s: float = 1.0,
        status_refresh_s: float = 90.0,
        max_chars: int = SLACK_MAX_CHARS,
        clock: Callable[[], float] = time.monotonic,
        poster: Poster | None = None,
    ) -> None:
        if not 2_000 <= max_chars <= SLACK_MAX_CHARS:
            raise ValueError(f"max_chars must be within 2000..{SLACK_MAX_CHARS}, not {max_chars}")
        self._client = client
        self._poster = poster if poster is not None else Poster(client)
        self._channel = channel
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._interval = max(1.0, min_update_interval_s)
        self._stream_gap = min(STREAM_GAP_S, max(0.0, min_update_interval_s))
        self._status_refresh_s = status_refresh_s
        self._max_chars = max_chars
        self._clock = clock
        self._nonce = uuid.uuid4().hex[:12]

        self.first_message_at: float | None = None
        self.message_ts: list[str] = []
        self.errors: Counter[str] = Counter()
        """Slack trouble by ``method:error``."""
        self.fallback_reason: str | None = None

        self._messages: list[_Message] = []
        self._open: dict[tuple[int, str], list[_Task]] = {}
        self._calls: Counter[int] = Counter()
        self._phase: str | None = None
        self._plan: str | None = None
        self._streaming = True
        self._next_write_at = 0.0
        self._wake = asyncio.Event()
        self._first = asyncio.Event()  # set once the first message exists (or never will)
        self._writer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._status_on = False
        self._status_ok = True
        self._closed = False
        self._finishing = False
        self._final_blocks: list[dict[str, Any]] | None = None
        self._failure: BaseException | None = None
        self._last_error = ""
        self._dead = False

    @property
    def mode(self) -> str:
        """``stream`` while native streaming is used, ``text`` after the fallback."""
        return "stream" if self._streaming else "text"

    # -- the caller's side ---------------------------------------------------------------

    async def start(self) -> None:
        """Set the thread's status and keep it set; the first message opens lazily."""
        self._check()
        self._kick()
        if self._status_on:
            return
        self._status_on = True
        await self._set_status(STATUS)
        if self._status_ok and self._status_refresh_s > 0:
            self._refresher = asyncio.create_task(self._refresh_status(), name="aoi-status")

    async def event(self, event: AnyEvent) -> None:
        """Render one event into the thread (queued; Slack is written in the background)."""
        self._check()
        self._render(event)
        self._kick()

    async def note(self, markdown: str) -> None:
        """Add free text the bot wrote (trusted: escape any user text in it first).

        Shown as is in both modes, so use what markdown and mrkdwn share (plain text,
        emoji, ``_italics_``, ``<@U…>`` mentions); bounded in length.
        """
        self._check()
        limit = min(NOTE_LIMIT, self._max_chars // 2)
        text = markdown if len(markdown) <= limit else markdown[: limit - 1] + "…"
        self._add(_Item(markdown=text, mrkdwn=text))
        self._kick()

    async def first_message(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the thread's first message; whether it is there.

        For a caller whose next work would compete with that write (an investigation
        about to start its heavy reads); Slack trouble never raises here.
        """
        if not self._first.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first.wait(), timeout_s)
        return self.first_message_at is not None

    async def finish(self, *, blocks: list[dict[str, Any]] | None = None) -> None:
        """Close every message (``blocks`` go at the end of the last) and clear the status.

        Waits for the last writes (at most FINISH_TIMEOUT_S); a second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._failure is None:
                self._close(blocks)
                self._kick()
                await self._drain()
        finally:
            if self._refresher is not None:
                self._refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._refresher
            if self._status_on:
                await self._set_status("")
        if self._failure is not None:
            raise self._failure

    def _close(self, blocks: list[dict[str, Any]] | None) -> None:
        for task in [t for tasks in self._open.values() for t in tasks]:
            task.status, task.output = "error", "no result"
            self._touch(task)
        self._open.clear()
        if blocks:
            self._final_blocks = blocks
            if not self._messages:
                self._line(":checkered_flag: finished", ":checkered_flag: finished")
            last = self._messages[-1]
            if last.state is _State.TEXT:
                last.version += 1  # written again, with the blocks
        self._finishing = True

    async def _drain(self) -> None:
        writer = self._writer
        if writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(writer), FINISH_TIMEOUT_S)
        except TimeoutError:
            log.warning("thread stream: gave up flushing after %ss", FINISH_TIMEOUT_S)
        finally:  # also when finish itself is cancelled: nothing keeps running
            if not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    # -- rendering -----------------------------------------------------------------------

    def _render(self, event: AnyEvent) -> None:
        if isinstance(event, Started):
            question = _text(event.question, LINE_LIMIT)
            model = _text(event.model, TITLE_LIMIT)
            head = "Follow-up on" if event.follow_up else "Investigating"
            tail = f" incident #{event.incident_id}: {question} _(model: {model})_"
            self._line(f":mag: {_b(head, True)}{tail}", f":mag: {_b(head, False)}{tail}")
        elif isinstance(event, Plan):
            if event.phase != self._phase:
                self._phase = event.phase
                self._plan = _text(f"{event.phase}: {event.summary}", TITLE_LIMIT)
                self._add(_Item(plan=self._plan, mrkdwn=_b(self._plan, False)))
        elif isinstance(event, ProbeCall):
            self._task(event.step, event.invocation)
        elif isinstance(event, ProbeResult):
            status = "complete" if event.status.upper() in _COMPLETE else "error"
            output = _text(event.summary, OUTPUT_LIMIT)
            waiting = self._open.get((event.step, event.invocation))
            if waiting:  # the oldest call of that invocation still running
                task = waiting[0]
                task.status, task.output = status, output
                self._touch(task)
            else:
                self._task(event.step, event.invocation, status=status, output=output)
        elif isinstance(event, FindingEvent):
            what = (
                f"{_text(event.component, TITLE_LIMIT)}",
                f"({_text(event.severity, 20)}): {_text(event.summary, LINE_LIMIT)}",
            )
            self._line(f"- {_b(what[0], True)} {what[1]}", f"• {_b(what[0], False)} {what[1]}")
        elif isinstance(event, Hypothesis):
            if event.hypotheses:
                joined = _text("; ".join(event.hypotheses), LINE_LIMIT)
                line = f"_hypotheses ({event.confidence}%): {joined}_"
                self._line(line, line)
        elif isinstance(event, DiagnosisEvent):
            self._diagnosis(event)
        elif isinstance(event, ProposalEvent):
            line = (
                f":hammer_and_wrench: proposed #{event.proposal_id}: "
                f"{_text(event.action, TITLE_LIMIT)} {_text(event.target, TITLE_LIMIT)} "
                "(approval message below)"
            )
            self._line(line, line)
        elif isinstance(event, ErrorEvent):
            line = f":warning: {_text(event.message, LINE_LIMIT)}"
            self._line(line, line)
        elif isinstance(event, Finished):
            line = (
                f":checkered_flag: finished ({_text(event.status, 40)}): {event.steps} steps, "
                f"{event.tokens_in + event.tokens_out} tokens, {event.seconds:.1f} s"
            )
            self._line(line, line)

    def _diagnosis(self, event: DiagnosisEvent) -> None:
        summary = _text(event.summary, LINE_LIMIT)
        if not event.detected:
            head = "No fault found"
            tail = f" ({event.confidence}%): {summary}"
        else:
            head = "Diagnosis"
            where = _text(", ".join(event.components) or "-", TITLE_LIMIT)
            kind = _text(f"{event.system_level or '-'} / {event.fault_type or '-'}", TITLE_LIMIT)
            tail = (
                f" ({event.confidence}%, from {_text(event.source, 40)}): {summary} "
                f"— components: {where}; {kind}"
            )
        icon = ":stethoscope:" if event.detected else ":white_check_mark:"
        self._line(f"{icon} {_b(head, True)}{tail}", f"{icon} {_b(head, False)}{tail}")

    def _line(self, markdown: str, mrkdwn: str) -> None:
        self._add(_Item(markdown=markdown, mrkdwn=mrkdwn))

    def _task(
        self, step: int, invocation: str, *, status: str = "in_progress", output: str = ""
    ) -> None:
        self._calls[step] += 1
        key = (step, invocation)
        task = _Task(
            id=f"s{step}-{self._calls[step]}",
            title=_text(invocation, TITLE_LIMIT) or "(probe)",  # Slack wants a title
            key=key,
            message=-1,
            status=status,
            output=output,
        )
        if status == "in_progress":
            self._open.setdefault(key, []).append(task)
        self._add(_Item(task=task))

    def _add(self, item: _Item) -> None:
        cost = item.cost()
        current = self._messages[-1] if self._messages else None
        if current is None or current.retired or current.cost + cost > self._max_chars:
            if current is not None:
                current.retired = True
            current = _Message(
                index=len(self._messages),
                state=_State.STREAM if self._streaming else _State.TEXT,
            )
            self._messages.append(current)
            if current.state is _State.STREAM and self._plan is not None and item.plan is None:
                # A continuation keeps the plan's title (streamed only: text shows it once).
                current.pending.append(PlanUpdateChunk(title=self._plan))
                current.cost += len(self._plan) + 1
        if item.task is not None:
            item.task.message = current.index
        current.items.append(item)
        current.cost += cost
        if current.state is _State.STREAM:
            current.pending.append(item.chunk())
        else:
            current.version += 1

    def _touch(self, task: _Task) -> None:
        if task.status != "in_progress":
            waiting = self._open.get(task.key, [])
            if task in waiting:
                waiting.remove(task)
        message = self._messages[task.message]
        if message.state is _State.STREAM:
            message.pending.append(task.chunk())
        elif message.state is _State.TEXT:
            message.version += 1

    def _mrkdwn(self, message: _Message) -> str:
        return "\n".join(item.text() for item in message.items)

    def _blocks(self, message: _Message) -> list[dict[str, Any]]:
        sections: list[str] = []
        for item in message.items:
            line = item.text()
            if sections and len(sections[-1]) + 1 + len(line) <= SECTION_LIMIT:
                sections[-1] += "\n" + line
            else:
                sections.append(line[:SECTION_LIMIT])
        last = self._finishing and message is self._messages[-1]
        extra = (self._final_blocks or []) if last else []
        room = max(1, MAX_BLOCKS - len(extra))  # Slack takes 50 blocks: the caller's come first
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
            for text in sections[:room]
        ]
        return blocks + extra[: MAX_BLOCKS - len(blocks)]

    # -- the writer ----------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise RuntimeError("this thread stream is finished")

    def _kick(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="aoi-thread-stream")
        self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                wait = await (self._sync_stream() if self._streaming else self._sync_text())
                if wait is None:
                    if self._finishing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                elif wait > 0:
                    await asyncio.sleep(wait)
        except Exception as exc:  # a bug of ours: raised to the caller by event/finish
            log.exception("thread stream writer failed")
            self._failure = exc
        finally:
            self._first.set()  # no first message can come from a writer that stopped

    def _due(self) -> float:
        return self._next_write_at - self._clock()

    async def _sync_stream(self) -> float | None:
        """One stream call if there is work (returns the wait before the next), else None."""
        if self._dead:
            return None
        for message in self._messages:
            if message.state is not _State.STREAM:
                continue
            closing = self._finishing or (message.retired and not message.running())
            if not message.pending and not closing:
                continue
            wait = self._due()
            if wait > 0:
                return wait
            ok = await self._stream_call(message, closing)
            self._next_write_at = self._clock() + self._stream_gap
            if not ok:
                self._fall_back()
            return 0.0
        return None

    async def _stream_call(self, message: _Message, closing: bool) -> bool:
        chunks = message.pending[:CHUNKS_PER_CALL]
        method = "chat.startStream"
        last = self._finishing and message is self._messages[-1] and bool(self._final_blocks)
        try:
            if message.ts is None:
                response = await self._client.chat_startStream(
                    channel=self._channel,
                    thread_ts=self._thread_ts,
                    recipient_team_id=self._team_id,
                    recipient_user_id=self._user_id,
                    task_display_mode="plan",
                    chunks=chunks,
                )
                ts = response.get("ts")
                if not isinstance(ts, str) or not ts:
                    self._trouble(method, "no_ts")
                    return False
                self._created(message, ts)
            elif closing and len(message.pending) <= CHUNKS_PER_CALL:
                method = "chat.stopStream"
                await self._client.chat_stopStream(
                    channel=self._channel,
                    ts=message.ts,
                    chunks=chunks or None,
                    blocks=self._final_blocks if last else None,
                )
                message.state = _State.DONE
            else:
                method = "chat.appendStream"
                await self._client.chat_appendStream(
                    channel=self._channel, ts=message.ts, chunks=chunks
                )
        except SlackTrouble as exc:
            self._trouble(method, exc)
            if method == "chat.startStream" and _maybe_acted(exc):
                # The stream may exist, holding these chunks: find it, so the fallback stops
                # and edits it instead of leaving it open beside a second copy of its lines.
                found = await self._find_started(chunks)
                if found is not None:
                    self._created(message, found)
            if method == "chat.stopStream" and not chunks and not last and _not_streaming(exc):
                # A stop with nothing in it: the stream is closed either way (it expired,
                # or a lost stop landed and its retry was refused), and all was delivered.
                message.state = _State.DONE
                return True
            return False
        del message.pending[: len(chunks)]
        return True

    def _fall_back(self) -> None:
        """Streaming ends for this thread: unfinished messages become edited text."""
        self._streaming = False
        self.fallback_reason = self.fallback_reason or self._last_error
        log.warning("thread stream: falling back to chat.update (%s)", self.fallback_reason)
        for message in self._messages:
            if message.state is _State.STREAM:
                message.state = _State.TEXT
                message.pending.clear()
                message.stop_first = message.ts is not None
                message.version += 1

    async def _sync_text(self) -> float | None:
        """One text write if there is work (returns the wait before the next), else None."""
        if self._dead:
            return None
        for message in self._messages:
            if message.state is not _State.TEXT:
                continue
            if message.ts is not None and message.synced >= message.version:
                continue
            wait = self._due()
            if wait > 0:
                return wait
            version = message.version
            failure = await self._text_call(message)
            now = self._clock()
            if failure is None:
                message.synced, message.failures = version, 0
                self._next_write_at = now + self._interval
                return 0.0
            message.failures += 1
            backoff = min(BACKOFF_MAX_S, self._interval * 2 ** (message.failures - 1))
            self._next_write_at = now + max(self._interval, _retry_after(failure), backoff)
            code = _code(failure)
            if code in _DEAD:
                log.warning("thread stream: Slack refuses this thread (%s): stopped writing", code)
                self._dead = True
                self._first.set()
            elif code in _FOR_GOOD or (self._finishing and message.failures >= FINISH_ATTEMPTS):
                # Its rendering stays here; later items go to a new message.
                log.warning("thread stream: giving up on message %s (%s)", message.ts, code)
                message.state = _State.ABANDONED
                message.retired = True
            return 0.0
        return None

    async def _text_call(self, message: _Message) -> BaseException | None:
        """Write a text message's whole rendering; the failure, if it failed."""
        text, blocks = self._mrkdwn(message), self._blocks(message)
        if message.stop_first and message.ts is not None:
            message.stop_first = False
            try:
                await self._client.chat_stopStream(channel=self._channel, ts=message.ts)
            except SlackTrouble as exc:  # best effort: an expired stream is stopped already
                self._trouble("chat.stopStream", exc)
        method = "chat.update"
        try:
            if message.ts is None:
                method = "chat.postMessage"
                ts = await self._poster.post(
                    self._channel,
                    thread_ts=self._thread_ts,
                    text=text,
                    blocks=blocks,
                    key=f"aoi-stream:{self._nonce}:{message.index}",
                )
                self._created(message, ts)
            else:
                await self._client.chat_update(
                    channel=self._channel, ts=message.ts, text=text, blocks=blocks
                )
        except SlackTrouble as exc:
            self._trouble(method, exc)
            return exc
        return None

    async def _find_started(self, chunks: list[Chunk]) -> str | None:
        """The ts of the stream a lost ``chat.startStream`` made, or None.

        Found by reading the thread: the newest message of this bot that carries no post
        key (streams carry none), is not one this writer knows, and whose text is the
        markdown of ``chunks``. Chunks without markdown cannot be told apart: None.
        """
        expected = _squash("".join(c.text for c in chunks if isinstance(c, MarkdownTextChunk)))
        if not expected:
            return None
        await asyncio.sleep(LOST_START_WAIT_S)  # let the lost call settle
        me = self._poster.bot_user_id
        found: str | None = None
        cursor: str | None = None
        try:
            for _ in range(LOOKUP_PAGES):
                response = await self._client.conversations_replies(
                    channel=self._channel,
                    ts=self._thread_ts,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
                for m in response.get("messages") or []:
                    if not isinstance(m, dict) or not isinstance(m.get("ts"), str):
                        continue
                    ours = m.get("user") == me if me else bool(m.get("bot_id"))
                    keyed = isinstance(m.get("metadata"), dict) and (
                        m["metadata"].get("event_type") == POST_EVENT_TYPE
                    )
                    if (
                        ours
                        and not keyed
                        and m["ts"] not in (self._thread_ts, *self.message_ts)
                        and _squash(str(m.get("text") or "")) == expected
                    ):
                        found = m["ts"]
                meta = response.get("response_metadata") or {}
                cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
                if not cursor:
                    break
        except SlackTrouble as exc:
            self._trouble("conversations.replies", exc)
            return None
        return found

    def _created(self, message: _Message, ts: str) -> None:
        message.ts = ts
        self.message_ts.append(ts)
        if self.first_message_at is None:
            self.first_message_at = self._clock()
            self._first.set()

    # -- status --------------------------------------------------------------------------

    async def _set_status(self, status: str) -> None:
        if not self._status_ok:
            return
        method = "assistant.threads.setStatus"
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel, thread_ts=self._thread_ts, status=status
            )
        except SlackApiError as exc:
            self._trouble(method, exc)
            if exc.response.status_code not in (429, 500, 502, 503, 504):
                self._status_ok = False  # not an assistant thread, or no scope: stop trying
        except SlackTrouble as exc:
            self._trouble(method, exc)

    async def _refresh_status(self) -> None:
        """Slack clears the status after two minutes without a message: set it again."""
        while self._status_ok:
            await asyncio.sleep(self._status_refresh_s)
            await self._set_status(STATUS)

    def _trouble(self, method: str, exc: BaseException | str) -> None:
        if isinstance(exc, str):
            error = exc
        elif isinstance(exc, SlackUnavailable):
            error = exc.error
        else:
            error, _ = classify(exc)
        self._last_error = f"{method}:{error}"
        self.errors[self._last_error] += 1
        log.warning(
            "slack %s failed: %s",
            method,
            error,
            extra={"channel": self._channel, "thread_ts": self._thread_ts},
        )


def _maybe_acted(exc: BaseException) -> bool:
    """Slack may have done what the failed call asked (its response was lost)."""
    if isinstance(exc, SlackUnavailable):
        return exc.ambiguous
    return classify(exc)[1] == "lost"


def _squash(text: str) -> str:
    return " ".join(text.split())


def _not_streaming(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and (
        exc.response.get("error") == "message_not_in_streaming_state"
    )


def _code(exc: BaseException) -> str:
    return exc.error if isinstance(exc, SlackUnavailable) else classify(exc)[0]


def _retry_after(exc: BaseException) -> float:
    """The seconds Slack asked to wait (``Retry-After`` of a 429), else 0."""
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        headers = exc.response.headers or {}
        for name, value in headers.items():
            if str(name).lower() == "retry-after":
                raw = value[0] if isinstance(value, list | tuple) and value else value
                with contextlib.suppress(TypeError, ValueError):
                    return min(max(0.0, float(raw)), 300.0)
        return 1.0
    return 0.0
