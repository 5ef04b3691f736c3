"""The Web API stand-in: an aiohttp server on 127.0.0.1 that answers like Slack.

It takes what slack-sdk sends (JSON bodies, forms, query strings; `blocks`,
`chunks`, `metadata` and `view` as JSON text or as objects), checks the bearer
token, keeps channels, threads, streams and statuses in memory, and records
every call. Faults are injected per method: `fail_next` answers an HTTP error
without doing anything, `drop_next` does the work and then cuts the connection
so the client never learns the outcome.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .limits import MARKDOWN_TEXT_MAX, MESSAGE_TEXT_MAX, block_errors, view_errors
from .payloads import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    block_action,
    mention_event,
    view_submission,
)
from .socket_mode import SocketModeStandIn
from .state import TASK_STATUSES, Call, Message, TsClock, ts_key

Params = dict[str, Any]
Handler = Callable[[Params], dict[str, Any]]

CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})
_FAULT_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


class _SlackError(Exception):
    """An ``ok: false`` answer."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class _Fault:
    status: int
    retry_after: int


class _Bucket:
    """Token bucket of one channel's writes: `rate` per second, bursts of max(1, rate)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.last = now

    def take(self, now: float) -> int:
        """0 when a write may go now, else the seconds to wait (Retry-After)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return value is True or value == 1


def _opt_str(params: Params, key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


class SlackStandIn:
    """A loopback Slack workspace for tests and benches.

    Usage::

        async with SlackStandIn() as slack:
            client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
            await client.chat_postMessage(channel="C0INC1", text="hi")
            assert slack.messages["C0INC1"][0].text == "hi"

    State is public: `calls`, `messages` (by channel, in posting order),
    `internal_errors` (the stand-in's own bugs, answered as HTTP 500),
    `statuses` (assistant.threads.setStatus history per (channel, thread_ts)),
    `views` (views.open), `responses` (posts to response URLs, by key), and
    `socket_mode` (the Socket Mode side). `stream_ttl_s` makes streams expire on
    their own that many seconds after chat.startStream; `max_stream_chars` caps a
    stream's whole text (Slack documents only the 12,000-character cap per
    markdown_text); `rate_limit_per_s` limits each channel's writes.
    """

    bot_token = "xoxb-standin"
    app_token = "xapp-standin"
    team_id = TEAM_ID
    bot_user_id = BOT_USER_ID
    bot_id = BOT_ID
    api_app_id = APP_ID
    TRIGGER_TTL_S = 3.0
    METHODS = (
        "auth.test",
        "apps.connections.open",
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.update",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "assistant.threads.setStatus",
        "views.open",
        "usergroups.users.list",
        "conversations.info",
        "conversations.replies",
    )
    WRITE_METHODS = frozenset(
        {
            "chat.postMessage",
            "chat.postEphemeral",
            "chat.update",
            "chat.startStream",
            "chat.appendStream",
            "chat.stopStream",
        }
    )

    def __init__(
        self,
        *,
        channels: dict[str, str] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        stream_ttl_s: float | None = None,
        rate_limit_per_s: float | None = None,
        max_stream_chars: int | None = None,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self.channels: dict[str, str] = (
            dict(channels)
            if channels is not None
            else {"C0INC1": "inc-checkout", "C0INC2": "inc-payments", "C0GENERAL": "general"}
        )
        self.usergroups: dict[str, list[str]] = (
            {k: list(v) for k, v in usergroups.items()}
            if usergroups is not None
            else {"S0SRE": ["U0ALICE"]}
        )
        self.stream_ttl_s = stream_ttl_s
        self.rate_limit_per_s = rate_limit_per_s
        self.max_stream_chars = max_stream_chars
        self.calls: list[Call] = []
        self.messages: dict[str, list[Message]] = {}
        self.statuses: dict[tuple[str, str], list[str]] = {}
        self.views: list[dict[str, Any]] = []
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.internal_errors: list[Exception] = []
        self.socket_mode = SocketModeStandIn(app_id=self.api_app_id, ack_timeout_s=ack_timeout_s)
        self.base_url = ""
        self.url = ""
        self._ts = TsClock()
        self._serial = 0
        self._faults: dict[str, list[_Fault]] = {}
        self._drops: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._triggers: dict[str, float] = {}
        self._used_triggers: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.update": self._update,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "views.open": self._views_open,
            "usergroups.users.list": self._usergroup_users,
            "conversations.info": self._conversation_info,
            "conversations.replies": self._replies,
        }
        assert set(self._methods) == set(self.METHODS)

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1; sets `url`, `base_url`."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get(SocketModeStandIn.path, self.socket_mode.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self.base_url = f"{self.url}/api/"
        self.socket_mode.base_ws_url = f"ws://{host}:{port}"

    async def stop(self) -> None:
        await self.socket_mode.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- fault injection -------------------------------------------------------

    def fail_next(
        self, method: str, *, status: int = 429, retry_after: int = 0, count: int = 1
    ) -> None:
        """Answer the next `count` calls of `method` ("*": any) with HTTP `status`, doing nothing.

        429 carries ``Retry-After: retry_after`` and ``{"ok": false, "error": "ratelimited"}``.
        """
        self._faults.setdefault(method, []).extend(
            _Fault(status, retry_after) for _ in range(count)
        )

    def drop_next(self, method: str, *, count: int = 1) -> None:
        """Do the next `count` calls of `method` ("*": any), then cut the connection unanswered."""
        self._drops[method] = self._drops.get(method, 0) + count

    def expire_streams(self) -> None:
        """Every open stream stops taking appends (as when Slack times one out)."""
        now = time.monotonic()
        for message in self._all_messages():
            if message.open:
                message.expires_at = now

    # -- reading the state -----------------------------------------------------

    def thread(
        self, channel: str, thread_ts: str, *, include_ephemeral: bool = True
    ) -> list[Message]:
        """The parent (when known) and replies of a thread, oldest first."""
        found = [
            m
            for m in self.messages.get(channel, [])
            if (m.ts == thread_ts or m.thread_ts == thread_ts)
            and (include_ephemeral or m.ephemeral_for is None)
        ]
        return sorted(found, key=lambda m: ts_key(m.ts))

    def message(self, channel: str, ts: str) -> Message | None:
        for m in self.messages.get(channel, []):
            if m.ts == ts:
                return m
        return None

    def calls_to(self, method: str, *, channel: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and (channel is None or c.channel == channel)
        ]

    def status_history(self, channel: str, thread_ts: str) -> list[str]:
        return self.statuses.get((channel, thread_ts), [])

    def response_url(self, key: str | None = None) -> str:
        """A response URL whose posts land in ``responses[key]``."""
        return f"{self.url}/response/{key or uuid.uuid4().hex}"

    # -- what users do ---------------------------------------------------------

    def add_message(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> Message:
        """A message a person posted (no bot_id), with a fresh ts."""
        if channel not in self.channels:
            raise KeyError(f"no channel {channel!r} in the stand-in workspace")
        message = Message(
            ts=self._ts.next(), thread_ts=thread_ts, user=user, text=text, channel=channel
        )
        self.messages.setdefault(channel, []).append(message)
        return message

    def mention(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """Post `user`'s message mentioning the bot and return its event_callback body."""
        message = self.add_message(channel, user, "", thread_ts=thread_ts)
        body = mention_event(
            channel,
            user,
            text,
            ts=message.ts,
            thread_ts=thread_ts,
            event_id=f"Ev{self._next_serial():010d}",
            team_id=self.team_id,
            bot_user_id=self.bot_user_id,
            api_app_id=self.api_app_id,
        )
        message.text = body["event"]["text"]
        return body

    def click(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str,
        *,
        block_id: str | None = None,
    ) -> dict[str, Any]:
        """The block_actions payload of `user` clicking button `action_id` on a stored message.

        Takes the message's text, blocks, thread and (unless given) the id of the
        block holding the button from the store; the trigger id is fresh and
        expires after TRIGGER_TTL_S; the response URL records into `responses`.
        """
        message = self.message(channel, message_ts)
        if message is None:
            raise KeyError(f"no message {message_ts} in {channel}")
        if block_id is None:
            block_id = next(
                (
                    str(b.get("block_id", ""))
                    for b in message.blocks
                    if any(e.get("action_id") == action_id for e in _elements(b))
                ),
                "actions",
            )
        trigger_id = f"{self._next_serial()}.{self.team_id}.standin"
        self._triggers[trigger_id] = time.monotonic()
        return block_action(
            user,
            channel,
            message_ts,
            action_id,
            value,
            trigger_id=trigger_id,
            thread_ts=message.thread_ts,
            block_id=block_id,
            response_url=self.response_url(),
            message_text=message.text,
            message_blocks=message.blocks,
            team_id=self.team_id,
            api_app_id=self.api_app_id,
            bot_user_id=self.bot_user_id,
        )

    def submit(
        self,
        user: str,
        callback_id: str,
        private_metadata: str,
        values: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """The view_submission payload of `user` submitting a modal (fresh view and trigger ids)."""
        serial = self._next_serial()
        return view_submission(
            user,
            callback_id,
            private_metadata,
            values,
            view_id=f"V{serial:010d}",
            trigger_id=f"{serial}.{self.team_id}.standin",
            team_id=self.team_id,
            api_app_id=self.api_app_id,
            bot_id=self.bot_id,
        )

    # -- HTTP ------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        call = Call(method=method, params={}, at=time.monotonic())
        self.calls.append(call)
        status, body, headers = 200, {"ok": False, "error": "invalid_json"}, {}
        try:
            call.params = await _read_params(request)
        except ValueError:
            call.error = "invalid_json"
            return web.json_response(body)
        token = _bearer(request.headers.get("Authorization")) or _opt_str(call.params, "token")
        call.params.pop("token", None)
        with contextlib.suppress(_SlackError):  # recorded decoded; a bad one is answered below
            _decode_json_fields(call.params)
        fault = self._take_fault(method)
        if fault is not None:
            status = fault.status
            body = {"ok": False, "error": _FAULT_ERRORS.get(status, f"http_{status}")}
            if status == 429:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            status, body, headers = self._answer(method, call.params, token)
        call.status = status
        call.error = None if body.get("ok") else str(body.get("error"))
        if self._take_drop(method):
            call.dropped = True
            _cut(request)
            # The connection is gone: aiohttp discards whatever the handler answers now.
            raise web.HTTPServiceUnavailable()
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, params: Params, token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            self._check_token(method, token)
            handler = self._methods.get(method)
            if handler is None:
                raise _SlackError("unknown_method")
            if self.rate_limit_per_s is not None and method in self.WRITE_METHODS:
                wait = self._rate_wait(params)
                if wait:
                    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
            _decode_json_fields(params)
            return 200, {"ok": True, **handler(params)}, {}
        except _SlackError as exc:
            return 200, {"ok": False, "error": exc.error, **exc.extra}, {}
        except Exception as exc:  # a stand-in bug: loud for the test, never a hang
            self.internal_errors.append(exc)
            return 500, {"ok": False, "error": "standin_internal_error", "detail": repr(exc)}, {}

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise _SlackError("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise _SlackError("invalid_auth")
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            raise _SlackError("not_allowed_token_type")

    def _rate_wait(self, params: Params) -> int:
        channel = _opt_str(params, "channel") or _opt_str(params, "channel_id") or ""
        now = time.monotonic()
        assert self.rate_limit_per_s is not None
        bucket = self._buckets.get(channel)
        if bucket is None or bucket.rate != self.rate_limit_per_s:
            bucket = self._buckets[channel] = _Bucket(self.rate_limit_per_s, now)
        return bucket.take(now)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.pop(0)
        return None

    def _take_drop(self, method: str) -> bool:
        for key in (method, "*"):
            if self._drops.get(key, 0) > 0:
                self._drops[key] -= 1
                return True
        return False

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_params(request)
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_json"})
        self.responses.setdefault(request.match_info["key"], []).append(body)
        return web.json_response({"ok": True})

    # -- helpers of the methods ------------------------------------------------

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _all_messages(self) -> Iterator[Message]:
        for messages in self.messages.values():
            yield from messages

    def _channel(self, params: Params, key: str = "channel") -> str:
        channel = _opt_str(params, key)
        if not channel or channel not in self.channels:
            raise _SlackError("channel_not_found")
        return channel

    def _stored(self, channel: str, ts: str | None) -> Message:
        message = self.message(channel, ts or "")
        if message is None or message.ephemeral_for is not None:
            raise _SlackError("message_not_found")
        return message

    def _thread_root(self, channel: str, thread_ts: str | None) -> str | None:
        # A reply's ts names its thread's parent, as in Slack.
        if not thread_ts:
            return None
        target = self.message(channel, thread_ts)
        if target is not None and target.thread_ts and target.thread_ts != target.ts:
            return target.thread_ts
        return thread_ts

    def _new_message(self, channel: str, **fields: Any) -> Message:
        message = Message(
            ts=self._ts.next(), user=self.bot_user_id, channel=channel, bot_id=self.bot_id, **fields
        )
        self.messages.setdefault(channel, []).append(message)
        return message

    def _render(self, message: Message, *, metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "message",
            "ts": message.ts,
            "user": message.user,
            "text": message.text,
            "team": self.team_id,
        }
        if message.bot_id:
            out["bot_id"] = message.bot_id
            out["app_id"] = self.api_app_id
        replies = [
            m
            for m in self.messages.get(message.channel, [])
            if m.thread_ts == message.ts and m.ts != message.ts and m.ephemeral_for is None
        ]
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
        elif replies:
            out["thread_ts"] = message.ts
        if replies:
            out["reply_count"] = len(replies)
            out["reply_users"] = sorted({m.user for m in replies})
            out["latest_reply"] = max((m.ts for m in replies), key=ts_key)
        if message.blocks:
            out["blocks"] = message.blocks
        if metadata and message.metadata is not None:
            out["metadata"] = message.metadata
        if message.updated:
            out["edited"] = {"user": message.user, "ts": message.ts}
        return out

    # -- the methods -------------------------------------------------------------

    def _auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "AOI stand-in",
            "user": "aoi",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _connections_open(self, params: Params) -> dict[str, Any]:
        return {"url": self.socket_mode.issue_url()}

    def _post_message(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        text = _opt_str(params, "text") or ""
        markdown = _opt_str(params, "markdown_text")
        blocks = _blocks(params)
        if not text and not blocks and not markdown:
            raise _SlackError("no_text")
        if len(text) > MESSAGE_TEXT_MAX or len(markdown or "") > MARKDOWN_TEXT_MAX:
            raise _SlackError("msg_too_long")
        message = self._new_message(
            channel,
            thread_ts=self._thread_root(channel, _opt_str(params, "thread_ts")),
            text=text or markdown or "",
            blocks=blocks or [],
            metadata=_metadata(params),
        )
        return {
            "channel": channel,
            "ts": message.ts,
            "message": self._render(message, metadata=True),
        }

    def _post_ephemeral(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        user = _opt_str(params, "user")
        if not user:
            raise _SlackError("user_not_found")
        text = _opt_str(params, "text") or ""
        blocks = _blocks(params)
        if not text and not blocks:
            raise _SlackError("no_text")
        if len(text) > MESSAGE_TEXT_MAX:
            raise _SlackError("msg_too_long")
        message = self._new_message(
            channel,
            thread_ts=self._thread_root(channel, _opt_str(params, "thread_ts")),
            text=text,
            blocks=blocks or [],
            ephemeral_for=user,
        )
        return {"message_ts": message.ts}

    def _update(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._stored(channel, _opt_str(params, "ts"))
        if message.user != self.bot_user_id:
            raise _SlackError("cant_update_message")
        text = _opt_str(params, "text")
        blocks = _blocks(params)
        if text is None and blocks is None:
            raise _SlackError("no_text")
        if len(text or "") > MESSAGE_TEXT_MAX:
            raise _SlackError("msg_too_long")
        metadata = _metadata(params)
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if metadata is not None:
            message.metadata = metadata
        message.updated += 1
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._render(message, metadata=True),
        }

    def _stream_chunks(self, params: Params, message: Message | None) -> list[dict[str, Any]]:
        """The chunks a stream call adds (top-level markdown_text as one), checked."""
        markdown = _opt_str(params, "markdown_text")
        chunks = params.get("chunks")
        if markdown is not None and chunks is not None:
            raise _SlackError("cannot_provide_both_markdown_text_and_chunks")
        if chunks is None:
            chunks = [{"type": "markdown_text", "text": markdown}] if markdown is not None else []
        if not isinstance(chunks, list):
            raise _SlackError("invalid_chunks", errors=["must be a list [json-pointer:/chunks]"])
        errors: list[str] = []
        added = 0
        for i, chunk in enumerate(chunks):
            errors.extend(_chunk_errors(chunk, i))
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text = chunk.get("text")
                if isinstance(text, str) and len(text) > MARKDOWN_TEXT_MAX:
                    raise _SlackError("msg_too_long")
                added += len(text) if isinstance(text, str) else 0
        if errors:
            raise _SlackError("invalid_chunks", errors=errors)
        current = len(message.text) if message is not None else 0
        if self.max_stream_chars is not None and current + added > self.max_stream_chars:
            raise _SlackError("msg_too_long")
        return chunks

    def _open_stream(self, params: Params) -> Message:
        channel = self._channel(params)
        message = self._stored(channel, _opt_str(params, "ts"))
        if not message.open:
            raise _SlackError("message_not_in_streaming_state")
        return message

    def _start_stream(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        thread_ts = _opt_str(params, "thread_ts")
        if not thread_ts:
            raise _SlackError("invalid_arguments", errors=["missing thread_ts"])
        if channel.startswith("C"):
            if not _opt_str(params, "recipient_team_id"):
                raise _SlackError("missing_recipient_team_id")
            if not _opt_str(params, "recipient_user_id"):
                raise _SlackError("missing_recipient_user_id")
        mode = params.get("task_display_mode")
        if mode is not None and mode not in ("timeline", "plan"):
            raise _SlackError("invalid_arguments", errors=["task_display_mode"])
        chunks = self._stream_chunks(params, None)
        ttl = self.stream_ttl_s
        message = self._new_message(
            channel,
            thread_ts=self._thread_root(channel, thread_ts),
            streaming=True,
            expires_at=None if ttl is None else time.monotonic() + ttl,
        )
        _apply_chunks(message, chunks)
        return {"channel": channel, "ts": message.ts}

    def _append_stream(self, params: Params) -> dict[str, Any]:
        message = self._open_stream(params)
        chunks = self._stream_chunks(params, message)
        if not chunks:
            raise _SlackError("invalid_arguments", errors=["markdown_text or chunks required"])
        _apply_chunks(message, chunks)
        return {"channel": message.channel, "ts": message.ts}

    def _stop_stream(self, params: Params) -> dict[str, Any]:
        message = self._open_stream(params)
        chunks = self._stream_chunks(params, message)
        blocks = _blocks(params)
        metadata = _metadata(params)
        _apply_chunks(message, chunks)
        if blocks is not None:
            message.blocks = blocks
        if metadata is not None:
            message.metadata = metadata
        message.stopped = True
        return {
            "channel": message.channel,
            "ts": message.ts,
            "message": self._render(message, metadata=True),
        }

    def _set_status(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params, "channel_id")
        thread_ts = _opt_str(params, "thread_ts")
        status = _opt_str(params, "status")
        if not thread_ts or status is None:
            raise _SlackError("invalid_arguments", errors=["thread_ts and status are required"])
        self.statuses.setdefault((channel, thread_ts), []).append(status)
        return {}

    def _views_open(self, params: Params) -> dict[str, Any]:
        trigger_id = _opt_str(params, "trigger_id")
        if not trigger_id:
            raise _SlackError("invalid_trigger_id")
        if trigger_id in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        issued = self._triggers.get(trigger_id)
        if issued is not None and time.monotonic() - issued > self.TRIGGER_TTL_S:
            raise _SlackError("expired_trigger_id")
        view = params.get("view")
        errors = view_errors(view)
        if errors:
            raise _SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        assert isinstance(view, dict)
        self._used_triggers.add(trigger_id)
        opened = {
            "id": f"V{self._next_serial():010d}",
            "team_id": self.team_id,
            "app_id": self.api_app_id,
            "bot_id": self.bot_id,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.standin",
            "private_metadata": "",
            "callback_id": "",
            **view,
        }
        self.views.append({"trigger_id": trigger_id, "view": opened})
        return {"view": opened}

    def _usergroup_users(self, params: Params) -> dict[str, Any]:
        group = _opt_str(params, "usergroup")
        if not group or group not in self.usergroups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _conversation_info(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        return {
            "channel": {
                "id": channel,
                "name": self.channels[channel],
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
                "created": 1_700_000_000,
                "context_team_id": self.team_id,
            }
        }

    def _replies(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        ts = _opt_str(params, "ts")
        if not ts:
            raise _SlackError("invalid_arguments", errors=["ts is required"])
        target = self.message(channel, ts)
        if target is not None and target.thread_ts and target.thread_ts != ts:
            found = [target]  # the ts of a reply: that reply alone, as Slack answers
        else:
            found = self.thread(channel, ts, include_ephemeral=False)
        if not found:
            raise _SlackError("thread_not_found")
        try:
            limit = max(1, min(1000, int(params.get("limit") or 1000)))
            start = int(_opt_str(params, "cursor") or 0)
        except ValueError:
            raise _SlackError("invalid_cursor") from None
        page = found[start : start + limit]
        more = start + limit < len(found)
        with_metadata = _flag(params.get("include_all_metadata"))
        return {
            "messages": [self._render(m, metadata=with_metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


# -- request parsing -----------------------------------------------------------


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


async def _read_params(request: web.Request) -> Params:
    """Query string, then the body (JSON object or form) on top; ValueError on bad JSON."""
    params: Params = dict(request.query)
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the JSON body is not an object")
        params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _decode_json_fields(params: Params) -> None:
    """`blocks`, `chunks`, `metadata`, `view` sent as JSON text become objects."""
    for key in ("blocks", "chunks", "metadata", "view", "attachments"):
        value = params.get(key)
        if isinstance(value, str):
            if not value.strip() and key != "view":
                params[key] = None
                continue
            try:
                params[key] = json.loads(value)
            except ValueError:
                error = "invalid_blocks_format" if key == "blocks" else "invalid_arguments"
                raise _SlackError(error, errors=[f"{key} is not valid JSON"]) from None


def _blocks(params: Params) -> list[dict[str, Any]] | None:
    blocks = params.get("blocks")
    if blocks is None:
        return None
    errors = block_errors(blocks)
    if errors:
        raise _SlackError(
            "invalid_blocks",
            errors=errors,
            response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
        )
    assert isinstance(blocks, list)
    return blocks


def _metadata(params: Params) -> dict[str, Any] | None:
    metadata = params.get("metadata")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise _SlackError("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}


def _chunk_errors(chunk: Any, i: int) -> list[str]:
    pointer = f"[json-pointer:/chunks/{i}]"
    if not isinstance(chunk, dict) or chunk.get("type") not in CHUNK_TYPES:
        return [f"unsupported chunk {pointer}"]
    kind = chunk["type"]
    if kind == "markdown_text" and not isinstance(chunk.get("text"), str):
        return [f"text must be a string {pointer}"]
    if kind == "plan_update" and not isinstance(chunk.get("title"), str):
        return [f"title must be a string {pointer}"]
    if kind == "task_update":
        errors = [
            f"{key} must be a non-empty string {pointer}"
            for key in ("id", "title")
            if not isinstance(chunk.get(key), str) or not chunk[key]
        ]
        if chunk.get("status") not in TASK_STATUSES:
            errors.append(f"status must be one of {sorted(TASK_STATUSES)} {pointer}")
        return errors
    if kind == "blocks":
        return [f"{e} {pointer}" for e in block_errors(chunk.get("blocks"))]
    return []


def _apply_chunks(message: Message, chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        kind = chunk["type"]
        if kind == "markdown_text":
            message.text += chunk["text"]
        elif kind == "task_update":
            message.tasks.setdefault(chunk["id"], []).append(chunk["status"])
        elif kind == "plan_update":
            message.plan_titles.append(chunk["title"])
        elif kind == "blocks":
            message.blocks.extend(chunk["blocks"])
        message.chunks.append(chunk)


def _elements(block: dict[str, Any]) -> list[dict[str, Any]]:
    found = [e for e in block.get("elements", []) if isinstance(e, dict)]
    for key in ("accessory", "element"):
        if isinstance(block.get(key), dict):
            found.append(block[key])
    return found


def _cut(request: web.Request) -> None:
    """Close the request's connection at once, before any byte of a response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
