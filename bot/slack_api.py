"""Slack Web API plumbing: a client that retries only what is safe, and exactly-once posting.

A Slack call can fail in three ways, and each asks for something else:

* **Refused** (HTTP 429, or the connection never opened): Slack did nothing, so any
  method may be sent again. 429s wait for `Retry-After` (up to 5 times); a refused or
  timed-out connect is retried with backoff.
* **Lost** (the connection dropped or timed out after the request went out, HTTP
  5xx, `internal_error`/`fatal_error`): Slack may or may not have acted. Idempotent
  methods (`IDEMPOTENT`: reads, `chat.update`, `assistant.threads.setStatus`,
  `chat.stopStream`, ...) are sent again; writes that would act twice
  (`chat.postMessage`, `chat.startStream`, `chat.appendStream`,
  `chat.postEphemeral`, `views.open`) never are: the client raises, and the caller
  decides. `Poster.post` decides by looking for the message it may have posted.
* **Final** (`channel_not_found`, `msg_too_long`, ...): raised at once.

`Poster` fails only with `SlackUnavailable` (the method, Slack's error code, and
whether Slack may have acted), never with a raw aiohttp or slack_sdk exception;
`unavailable(method, exc)` turns what a bare client call raised (`CALL_ERRORS`) into
the same, and `classify(exc)` says which of the three kinds it was.

`chat.stopStream` counts as idempotent: if a lost stop did land, the retry answers
`message_not_in_streaming_state`, which the stream layer takes as "stopped" after a
stop it sent (the error cannot tell a landed stop from an expired stream, so a stop
should carry no content that exists nowhere else).

Example::

    client = make_client(token, base_url="https://slack.com/api/", metrics=metrics)
    poster = Poster(client, bot_user_id="U0AOIBOT")
    ts = await poster.post(channel, thread_ts=thread, text="Diagnosis", blocks=blocks,
                           key=f"incident:{incident_id}:diagnosis")
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import BotMetrics

POST_EVENT_TYPE = "aoi_post"

# Methods that may be sent again after a lost response: reads, and writes whose second
# application changes nothing (or, for chat.stopStream, fails harmlessly).
IDEMPOTENT = frozenset(
    {
        "api.test",
        "auth.test",
        "bots.info",
        "chat.getPermalink",
        "chat.update",
        "chat.stopStream",
        "assistant.threads.setStatus",
        "assistant.threads.setTitle",
        "assistant.threads.setSuggestedPrompts",
        "conversations.history",
        "conversations.info",
        "conversations.list",
        "conversations.members",
        "conversations.replies",
        "team.info",
        "usergroups.list",
        "usergroups.users.list",
        "users.info",
        "users.list",
        "users.lookupByEmail",
        "views.publish",
        "views.update",
    }
)

# HTTP statuses and Slack error codes after which Slack may or may not have acted.
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable"})

Outcome = Literal["refused", "lost", "final"]


class SlackUnavailable(Exception):  # noqa: N818  (the interface's name)
    """A Slack call failed for good (after the retries that were safe).

    `error` is Slack's error code (`channel_not_found`, `ratelimited`, `http_503`) or the
    transport's (`disconnected`, `timeout`, `connect_failed`); `ambiguous` is True when
    Slack may have acted anyway (a write whose response was lost).
    """

    def __init__(self, method: str, error: str, *, ambiguous: bool = False) -> None:
        self.method = method
        self.error = error
        self.ambiguous = ambiguous
        maybe = " (it may have gone through)" if ambiguous else ""
        super().__init__(f"Slack call {method} failed: {error}{maybe}")


def method_of(url: str) -> str:
    """The API method a request URL calls: `.../api/chat.update?x=1` -> `chat.update`."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def is_idempotent(method: str) -> bool:
    return method in IDEMPOTENT


def _not_sent(error: BaseException) -> bool:
    """The request never left: the connection was refused or its connect timed out."""
    if isinstance(error, aiohttp.ClientSSLError):
        return False  # a certificate problem does not heal on retry
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)  # aiohttp >= 3.10
    return isinstance(error, aiohttp.ClientConnectorError) or (
        connect_timeout is not None and isinstance(error, connect_timeout)
    )


def _lost(error: BaseException) -> bool:
    """The request may have reached Slack but no (complete) response came back."""
    if isinstance(error, aiohttp.ClientSSLError):
        return False
    return isinstance(
        error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | asyncio.TimeoutError
    )


def transport_error(error: BaseException) -> str:
    """A short error code for a transport failure (a metrics label, SlackUnavailable.error)."""
    if _not_sent(error):
        return "connect_failed"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "disconnected"
    if isinstance(error, aiohttp.ClientSSLError):
        return "tls_error"
    if isinstance(error, aiohttp.ClientError):
        return "connection_error"
    return type(error).__name__


def _response_error(status: int, body: object) -> str | None:
    """Slack's error code for a response, or None when it succeeded."""
    code = body.get("error") if isinstance(body, dict) else None
    if status != 200:
        return code if isinstance(code, str) and code else f"http_{status}"
    if isinstance(body, dict) and body.get("ok") is False:
        return code if isinstance(code, str) and code else "unknown_error"
    return None


def classify(error: BaseException) -> tuple[str, Outcome]:
    """The error code of a failed call and what it means for a write: refused (send
    again), lost (Slack may have acted) or final."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 0) or 0
        data = getattr(error.response, "data", None)
        code = _response_error(status, data) or "unknown_error"
        if status in SERVER_ERROR_STATUSES or code in TRANSIENT_ERRORS:
            return code, "lost"
        return code, "final"
    if _not_sent(error):
        return transport_error(error), "refused"
    if _lost(error):
        return transport_error(error), "lost"
    if isinstance(error, SlackClientError):
        return "client_error", "final"
    return transport_error(error), "final"


def unavailable(method: str, error: BaseException) -> SlackUnavailable:
    """`error`, raised by a `method` call, as a SlackUnavailable."""
    code, outcome = classify(error)
    return SlackUnavailable(method, code, ambiguous=outcome == "lost")


CALL_ERRORS = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError)
"""What a slack_sdk call raises when Slack (or the way to it) fails."""


# --- retry handlers ---------------------------------------------------------------------


class _UpTo(Jitter):
    """Adds a random 0..`seconds` to each wait."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def recalculate(self, duration: float) -> float:
        return duration + random.uniform(0.0, self.seconds)


def _header(response: HttpResponse, name: str) -> str | None:
    for key, values in response.headers.items():
        if key.lower() == name:
            value = values[0] if isinstance(values, list) and values else values
            return value if isinstance(value, str) else None
    return None


def _retry_after(response: HttpResponse) -> float:
    """Seconds Slack asks us to wait; 1 when it does not say (or says nonsense)."""
    raw = _header(response, "retry-after")
    try:
        seconds = float(raw) if raw is not None else 1.0
    except ValueError:
        return 1.0
    return seconds if 0.0 <= seconds < float("inf") else 1.0


class RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Retries an HTTP 429 (any method: Slack did nothing) after its `Retry-After`.

    Unlike slack_sdk's handler it reads fractional or missing values safely and gives
    up at once when Slack asks for more than `max_wait_s`: a caller then hears
    `ratelimited` instead of hanging for minutes.
    """

    def __init__(self, max_retry_count: int, *, jitter_s: float, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.jitter_s = jitter_s
        self.max_wait_s = max_wait_s

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (
            response is not None
            and response.status_code == 429
            and _retry_after(response) <= self.max_wait_s
        )

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = _retry_after(response) if response is not None else 1.0
        state.next_attempt_requested = True
        await asyncio.sleep(wait + random.uniform(0.0, self.jitter_s))
        state.increment_current_attempt()


class ConnectionRetry(AsyncRetryHandler):
    """Retries a connection that never opened (any method), and a lost response
    (dropped connection, timeout) of an idempotent method."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if error is None:
            return False
        if _not_sent(error):
            return True
        return _lost(error) and is_idempotent(method_of(request.url))


class ServerErrorRetry(AsyncRetryHandler):
    """Retries an idempotent method after HTTP 5xx or a transient Slack error."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not is_idempotent(method_of(request.url)):
            return False
        if response.status_code in SERVER_ERROR_STATUSES:
            return True
        code = _response_error(response.status_code, response.body)
        return code in TRANSIENT_ERRORS


class CountErrors(AsyncRetryHandler):
    """Never retries; counts every failed attempt into `metrics` (it must come first)."""

    def __init__(self, metrics: BotMetrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = method_of(request.url)
        if response is not None:
            if response.status_code == 429:
                self.metrics.rate_limited(method)
            elif (code := _response_error(response.status_code, response.body)) is not None:
                self.metrics.slack_error(method, code)
        elif error is not None:
            self.metrics.slack_error(method, transport_error(error))
        return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries. Attempts are shared: `retries` bounds connection and
    5xx retries together, counting any 429 retries before them."""

    rate_limit_retries: int = 5
    retries: int = 3
    backoff_s: float = 0.5  # 0.5, 1, 2 s ...
    jitter_s: float = 1.0  # plus up to this much, random
    max_retry_after_s: float = 30.0


def retry_handlers(
    policy: RetryPolicy = RetryPolicy(), metrics: BotMetrics | None = None
) -> list[AsyncRetryHandler]:
    backoff = BackoffRetryIntervalCalculator(policy.backoff_s, _UpTo(policy.jitter_s))
    handlers: list[AsyncRetryHandler] = [] if metrics is None else [CountErrors(metrics)]
    return [
        *handlers,
        RateLimitRetry(
            policy.rate_limit_retries,
            jitter_s=policy.jitter_s,
            max_wait_s=policy.max_retry_after_s,
        ),
        ConnectionRetry(policy.retries, backoff),
        ServerErrorRetry(policy.retries, backoff),
    ]


def make_client(
    token: str,
    *,
    base_url: str,
    timeout_s: float = 10.0,
    metrics: BotMetrics | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> AsyncWebClient:
    """An AsyncWebClient with the retries above; `timeout_s` bounds each attempt."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout_s,  # type: ignore[arg-type]  # slack_sdk says int; aiohttp takes float
        retry_handlers=retry_handlers(retry, metrics),
    )


# --- exactly-once posting ----------------------------------------------------------------


class _KeyLocks:
    """One asyncio.Lock per key while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    async def run(self, key: object, fn: Callable[[], Awaitable[str]]) -> str:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await fn()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Bounded(OrderedDict[tuple[str, str], str]):
    """A dict that forgets its oldest entries beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: tuple[str, str], value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class Poster:
    """Posts, edits and whispers in Slack; `post` puts a message up exactly once per key.

    Each post carries message metadata `{"event_type": "aoi_post", "event_payload":
    {"key": key}}`. When a post's response is lost, Slack may have posted it: `post`
    then reads the thread (`conversations.replies`, or `conversations.history` for a
    top-level post) for a message of this bot with that key, returns its ts if there is
    one, and posts again (up to `attempts` in all, with backoff) if not. A key whose
    outcome stayed unknown (the look-up failed too) is looked up first on the next
    `post` with that key; one already posted returns its ts without calling Slack.
    Concurrent posts with one key wait for each other.

    Keys must be unique per message the caller means (e.g. `incident:42:diagnosis`).
    The bot needs the `channels:history`/`groups:history` scopes for the look-ups.
    Residual risk: Slack still processing a timed-out post when the look-up runs;
    the wait before the look-up (`backoff_s`, doubling) makes that unlikely.
    """

    METHOD = "chat.postMessage"
    # A top-level look-up reads the channel back to this long before the first attempt
    # (our clock against Slack's: generous); a thread look-up reads the whole thread.
    LOOKBACK_S = 300.0
    MAX_PAGES = 20

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        bot_user_id: str | None = None,
        attempts: int = 4,
        backoff_s: float = 1.0,
        clock: Callable[[], float] | None = None,
        remember: int = 4096,
    ) -> None:
        self.client = client
        self.bot_user_id = bot_user_id
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._clock = clock or time.time
        self._posted = _Bounded(remember)  # (channel, key) -> ts
        self._unknown = _Bounded(remember)  # (channel, key) -> oldest ts to look from
        self._locks = _KeyLocks()

    async def post(
        self,
        channel: str,
        *,
        thread_ts: str | None,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        key: str,
    ) -> str:
        """Post `text` (and `blocks`; `text` is the notification fallback) once; its ts."""
        if not key:
            raise ValueError("post needs a non-empty key")
        slot = (channel, key)
        return await self._locks.run(
            slot, lambda: self._post(slot, thread_ts=thread_ts, text=text, blocks=blocks)
        )

    async def _post(
        self,
        slot: tuple[str, str],
        *,
        thread_ts: str | None,
        text: str,
        blocks: list[dict[str, Any]] | None,
    ) -> str:
        channel, key = slot
        if (ts := self._posted.get(slot)) is not None:
            return ts
        look = slot in self._unknown
        since = self._unknown.get(slot) or f"{self._clock() - self.LOOKBACK_S:.6f}"
        failure: SlackUnavailable | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self._backoff(attempt))  # also lets a lost post settle
            if look and (found := await self._look_up(slot, thread_ts, since)) is not None:
                return found
            # Unknown until Slack answers: a caller cancelled mid-call looks it up next time.
            self._unknown.put(slot, since)
            try:
                response = await self.client.chat_postMessage(
                    channel=channel,
                    thread_ts=thread_ts,
                    text=text,
                    blocks=blocks,
                    metadata={"event_type": POST_EVENT_TYPE, "event_payload": {"key": key}},
                )
            except CALL_ERRORS as exc:
                code, outcome = classify(exc)
                look = outcome == "lost"
                if not look:  # Slack did nothing (and a look-up found nothing before)
                    self._unknown.pop(slot, None)
                if outcome == "final":
                    raise SlackUnavailable(self.METHOD, code) from exc
                failure = SlackUnavailable(self.METHOD, code)
                continue
            ts = response.get("ts")
            if not isinstance(ts, str) or not ts:  # posted, but where? (stays unknown)
                raise SlackUnavailable(self.METHOD, "no_ts_in_response", ambiguous=True)
            self._remember(slot, ts)
            return ts
        if look:
            await asyncio.sleep(self._backoff(self.attempts))
            if (found := await self._look_up(slot, thread_ts, since)) is not None:
                return found
        # Every attempt failed and no look-up found the message: it is not there.
        self._unknown.pop(slot, None)
        assert failure is not None
        raise failure

    def _backoff(self, attempt: int) -> float:
        return float(self.backoff_s * 2 ** (attempt - 1) * random.uniform(1.0, 1.5))

    def _remember(self, slot: tuple[str, str], ts: str) -> None:
        self._unknown.pop(slot, None)
        self._posted.put(slot, ts)

    async def _look_up(
        self, slot: tuple[str, str], thread_ts: str | None, since: str
    ) -> str | None:
        """The ts of this bot's message with the slot's key, if Slack has it."""
        channel, key = slot
        cursor: str | None = None
        try:
            for _ in range(self.MAX_PAGES):
                if thread_ts:
                    response = await self.client.conversations_replies(
                        channel=channel,
                        ts=thread_ts,
                        include_all_metadata=True,
                        limit=200,
                        cursor=cursor,
                    )
                else:
                    response = await self.client.conversations_history(
                        channel=channel,
                        oldest=since,
                        include_all_metadata=True,
                        limit=200,
                        cursor=cursor,
                    )
                for message in response.get("messages") or []:
                    if self._ours(message, key):
                        ts = str(message["ts"])
                        self._remember(slot, ts)
                        return ts
                meta = response.get("response_metadata") or {}
                cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
                if not cursor:
                    return None
        except CALL_ERRORS as exc:
            code, _ = classify(exc)
            raise SlackUnavailable(self.METHOD, f"lookup_{code}", ambiguous=True) from exc
        raise SlackUnavailable(self.METHOD, "lookup_too_many_messages", ambiguous=True)

    def _ours(self, message: object, key: str) -> bool:
        if not isinstance(message, dict) or not message.get("ts"):
            return False
        if self.bot_user_id is not None and message.get("user") != self.bot_user_id:
            return False
        metadata = message.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("event_type") != POST_EVENT_TYPE:
            return False
        payload = metadata.get("event_payload")
        return isinstance(payload, dict) and payload.get("key") == key

    async def update(
        self, channel: str, ts: str, *, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Edit message `ts` (retried on a lost response: an edit is idempotent).

        `blocks=None` sends no blocks, and Slack keeps the message's current ones.
        """
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except CALL_ERRORS as exc:
            raise unavailable("chat.update", exc) from exc

    async def ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> None:
        """Show `text` to `user` only. Never resent after a lost response (an ephemeral
        cannot be looked up); that failure is SlackUnavailable with `ambiguous`."""
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )
        except CALL_ERRORS as exc:
            raise unavailable("chat.postEphemeral", exc) from exc
