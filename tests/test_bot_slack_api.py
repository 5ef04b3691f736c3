"""bot.slack_api against a real AsyncWebClient and a loopback Web API stand-in.

`MiniSlack` below is a small aiohttp server that does the few methods these tests
need and injects faults per request: 429 (with Retry-After), 500 before or after it
did the work, a dropped connection after the work, a response slower than the
client's timeout, or Slack's 200 `internal_error`. Nothing is mocked: the client's
own retry loop, HTTP and JSON run as in production.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from support.slack_standin import SlackStandIn

from bot.metrics import BotMetrics
from bot.slack_api import (
    IDEMPOTENT,
    POST_EVENT_TYPE,
    Poster,
    RetryPolicy,
    SlackUnavailable,
    classify,
    make_client,
    method_of,
)

TOKEN = "xoxb-mini-0123456789"
BOT = "U0AOIBOT"
FAST = RetryPolicy(backoff_s=0.0, jitter_s=0.0)

# Faults: "429", "500" (before the work), "500after", "drop" (after the work),
# "slow" (after the work, slower than the client's timeout), "late" (the work itself
# slower than the timeout), "transient" (200 internal_error, before the work), "ok".
Fault = str


@dataclass
class Seen:
    method: str
    params: dict[str, Any]
    fault: Fault
    did_work: bool


@dataclass
class MiniSlack:
    """A loopback Slack Web API with per-method fault queues."""

    retry_after: str = "0"
    slow_s: float = 1.0
    page_size: int = 1000
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    posted: asyncio.Event = field(default_factory=asyncio.Event)  # set by each post
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _n: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, method: str, *faults: Fault) -> None:
        self.faults.setdefault(method, deque()).extend(faults)

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    def with_key(self, key: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key
        ]

    def seed(self, channel: str, *, user: str, thread_ts: str | None = None, **extra: Any) -> str:
        ts = self._ts()
        self.messages.append(
            {"channel": channel, "ts": ts, "thread_ts": thread_ts, "user": user, **extra}
        )
        return ts

    def _ts(self) -> str:
        # Real-clock ts, strictly increasing (top-level look-ups filter on `oldest`).
        self._n += 1
        return f"{time.time():.0f}.{self._n:06d}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        queue = self.faults.get(method) or self.faults.get("*")
        fault = queue.popleft() if queue else "ok"
        seen = Seen(method, params, fault, did_work=False)
        self.seen.append(seen)
        if fault == "429":
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if fault == "500":
            return web.Response(status=500, text="<html>upstream error</html>")
        if fault == "transient":
            return web.json_response({"ok": False, "error": "internal_error"})
        if fault == "late":  # Slack still working when the client gives up
            await asyncio.sleep(self.slow_s)
        body = self._work(method, params)
        seen.did_work = body.get("ok") is True
        if fault == "500after":
            return web.json_response({"ok": False, "error": "internal_error"}, status=503)
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        return web.json_response(body)

    def _work(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": BOT}
        if method == "chat.postMessage":
            channel = p.get("channel")
            if channel == "C0GONE":
                return {"ok": False, "error": "channel_not_found"}
            ts = self._ts()
            self.messages.append(
                {
                    "channel": channel,
                    "ts": ts,
                    "thread_ts": p.get("thread_ts"),
                    "user": BOT,
                    "bot_id": "B0AOI",
                    "text": p.get("text"),
                    "blocks": p.get("blocks"),
                    "metadata": p.get("metadata"),
                    "updated": 0,
                }
            )
            self.posted.set()
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "chat.update":
            for m in self.messages:
                if m["channel"] == p.get("channel") and m["ts"] == p.get("ts"):
                    m.update(text=p.get("text"), updated=m.get("updated", 0) + 1)
                    if "blocks" in p:
                        m["blocks"] = p["blocks"]
                    return {"ok": True, "ts": m["ts"], "channel": m["channel"]}
            return {"ok": False, "error": "message_not_found"}
        if method == "chat.postEphemeral":
            self.ephemerals.append(dict(p))
            return {"ok": True, "message_ts": self._ts()}
        if method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
            return {"ok": True, "ts": p.get("ts") or self._ts(), "channel": p.get("channel")}
        if method == "assistant.threads.setStatus":
            return {"ok": True}
        if method == "conversations.replies":
            thread = [
                m
                for m in self.messages
                if m["channel"] == p.get("channel") and p.get("ts") in (m["ts"], m["thread_ts"])
            ]
            return self._page(thread, p)
        if method == "conversations.history":
            oldest = float(p.get("oldest") or 0)
            top = [
                m
                for m in reversed(self.messages)
                if m["channel"] == p.get("channel")
                and m["thread_ts"] is None
                and float(m["ts"]) > oldest
            ]
            return self._page(top, p)
        return {"ok": False, "error": "unknown_method"}

    def _page(self, messages: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
        start = int(p.get("cursor") or 0)
        size = min(int(p.get("limit") or 100), self.page_size)
        page = messages[start : start + size]
        with_meta = p.get("include_all_metadata") in ("1", "true", True)
        shown = [{k: v for k, v in m.items() if k != "metadata" or (with_meta and v)} for m in page]
        more = start + size < len(messages)
        return {
            "ok": True,
            "messages": shown,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + size) if more else ""},
        }


@pytest.fixture
async def slack() -> AsyncIterator[MiniSlack]:
    mini = MiniSlack()
    await mini.start()
    try:
        yield mini
    finally:
        await mini.stop()


def client_for(
    slack: MiniSlack, *, metrics: BotMetrics | None = None, timeout_s: float = 5.0
) -> AsyncWebClient:
    return make_client(
        TOKEN, base_url=slack.base_url, timeout_s=timeout_s, metrics=metrics, retry=FAST
    )


def poster_for(slack: MiniSlack, **kwargs: Any) -> Poster:
    client = kwargs.pop("client", None) or client_for(slack)
    return Poster(client, bot_user_id=BOT, backoff_s=0.0, **kwargs)


def sample(metrics: BotMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"aoi_{name}", labels)
    return 0.0 if value is None else value


# --- the client's retries -----------------------------------------------------------------


async def test_429_is_retried_after_retry_after_and_counted(slack: MiniSlack) -> None:
    metrics = BotMetrics()
    slack.retry_after = "1"
    slack.fail("chat.postMessage", "429")
    started = time.monotonic()
    response = await client_for(slack, metrics=metrics).chat_postMessage(channel="C1", text="hi")
    assert response["ok"]
    assert time.monotonic() - started >= 1.0  # it waited as Slack asked
    assert len(slack.calls("chat.postMessage")) == 2
    assert len(slack.messages) == 1
    assert sample(metrics, "slack_rate_limited_total", method="chat.postMessage") == 1
    text = metrics.render()[0].decode()
    assert 'slack_rate_limited_total{method="chat.postMessage"} 1.0' in text


async def test_429_gives_up_after_five_retries(slack: MiniSlack) -> None:
    metrics = BotMetrics()
    slack.fail("chat.update", *["429"] * 7)
    poster = poster_for(slack, client=client_for(slack, metrics=metrics))
    with pytest.raises(SlackUnavailable) as caught:
        await poster.update("C1", "1.1", text="x")
    assert caught.value.error == "ratelimited"
    assert not caught.value.ambiguous
    assert len(slack.calls("chat.update")) == 6
    assert sample(metrics, "slack_rate_limited_total", method="chat.update") == 6


@pytest.mark.parametrize("retry_after", ["3600", "junk"])
async def test_retry_after_too_long_or_junk(slack: MiniSlack, retry_after: str) -> None:
    """A Retry-After beyond the cap fails at once; a junk one waits 1 s, not a crash."""
    slack.retry_after = retry_after
    slack.fail("auth.test", "429")
    client = make_client(
        TOKEN,
        base_url=slack.base_url,
        retry=RetryPolicy(backoff_s=0, jitter_s=0, max_retry_after_s=2),
    )
    if retry_after == "3600":
        with pytest.raises(SlackApiError):
            await client.auth_test()
        assert len(slack.calls("auth.test")) == 1
    else:
        assert (await client.auth_test())["ok"]
        assert len(slack.calls("auth.test")) == 2


@pytest.mark.parametrize(
    "method",
    ["chat.update", "assistant.threads.setStatus", "conversations.replies", "auth.test"],
)
@pytest.mark.parametrize("fault", ["drop", "500", "500after", "transient", "slow"])
async def test_idempotent_methods_are_retried(slack: MiniSlack, method: str, fault: str) -> None:
    slack.slow_s = 1.0
    ts = slack.seed("C1", user=BOT, text="old")
    slack.fail(method, fault, fault)
    client = client_for(slack, timeout_s=0.3 if fault == "slow" else 5.0)
    args: dict[str, Any] = {
        "chat.update": {"channel": "C1", "ts": ts, "text": "new"},
        "assistant.threads.setStatus": {"channel_id": "C1", "thread_ts": ts, "status": "…"},
        "conversations.replies": {"channel": "C1", "ts": ts},
        "auth.test": {},
    }[method]
    response = await client.api_call(method, json=args)
    assert response["ok"]
    assert [s.fault for s in slack.calls(method)] == [fault, fault, "ok"]


@pytest.mark.parametrize(
    "method", ["chat.postMessage", "chat.startStream", "chat.appendStream", "chat.postEphemeral"]
)
@pytest.mark.parametrize("fault", ["drop", "500", "500after", "transient"])
async def test_writes_are_never_retried_blindly(slack: MiniSlack, method: str, fault: str) -> None:
    slack.fail(method, fault)
    client = client_for(slack)
    with pytest.raises((SlackApiError, aiohttp.ClientError)):
        await client.api_call(method, json={"channel": "C1", "text": "x", "user": "U1", "ts": "1"})
    assert len(slack.calls(method)) == 1


async def test_timed_out_post_is_not_resent_by_the_client(slack: MiniSlack) -> None:
    slack.fail("chat.postMessage", "slow")
    with pytest.raises(TimeoutError):
        await client_for(slack, timeout_s=0.3).chat_postMessage(channel="C1", text="x")
    assert len(slack.calls("chat.postMessage")) == 1


async def test_a_refused_connection_is_retried_for_any_method() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = BotMetrics()
    client = make_client(
        TOKEN, base_url=f"http://127.0.0.1:{port}/api/", metrics=metrics, retry=FAST
    )
    poster = Poster(client, backoff_s=0.0, attempts=2)
    with pytest.raises(SlackUnavailable) as caught:
        await poster.post("C1", thread_ts=None, text="x", key="k")
    assert caught.value.error == "connect_failed"
    assert not caught.value.ambiguous  # nothing reached Slack
    # 2 posts, each retried 3 times by the client; no look-ups (nothing can have landed).
    errors = "slack_api_errors_total"
    assert sample(metrics, errors, method="chat.postMessage", error="connect_failed") == 8
    assert sample(metrics, errors, method="conversations.history", error="connect_failed") == 0


def test_method_classification() -> None:
    assert method_of("https://slack.com/api/chat.update") == "chat.update"
    assert method_of("http://127.0.0.1:1/api/conversations.replies?channel=C1") == (
        "conversations.replies"
    )
    for write in (
        "chat.postMessage",
        "chat.startStream",
        "chat.appendStream",
        "chat.postEphemeral",
        "views.open",
        "reactions.add",
        "chat.delete",
    ):
        assert write not in IDEMPOTENT
    for safe in (
        "chat.update",
        "chat.stopStream",
        "assistant.threads.setStatus",
        "auth.test",
        "conversations.replies",
        "conversations.history",
        "usergroups.users.list",
    ):
        assert safe in IDEMPOTENT


def test_classify_errors() -> None:
    assert classify(TimeoutError()) == ("timeout", "lost")
    assert classify(aiohttp.ServerDisconnectedError()) == ("disconnected", "lost")
    assert classify(aiohttp.ClientOSError(104, "reset")) == ("connection_error", "lost")
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "refused"),
    )
    assert classify(refused) == ("connect_failed", "refused")


# --- exactly-once posting ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "500after", "slow"])
@pytest.mark.parametrize("thread", [True, False])
async def test_lost_post_response_yields_one_message(
    slack: MiniSlack, fault: str, thread: bool
) -> None:
    """Slack posted, the answer was lost: the look-up finds the message, none is added."""
    slack.slow_s = 0.6
    parent = slack.seed("C1", user="U0ALICE", text="checkout is down") if thread else None
    slack.fail("chat.postMessage", fault)
    client = client_for(slack, timeout_s=0.3 if fault == "slow" else 5.0)
    ts = await poster_for(slack, client=client).post(
        "C1", thread_ts=parent, text="Looking", key="inc:1:ack"
    )
    await asyncio.sleep(0.4 if fault == "slow" else 0)  # let a slow handler finish
    [message] = slack.with_key("inc:1:ack")
    assert message["ts"] == ts
    assert message["thread_ts"] == parent
    assert len(slack.calls("chat.postMessage")) == 1
    lookup = "conversations.replies" if thread else "conversations.history"
    [seen] = slack.calls(lookup)
    assert seen.params["include_all_metadata"] in ("1", "true")


async def test_the_look_up_waits_for_a_slow_post_to_land(slack: MiniSlack) -> None:
    """A timed-out post Slack is still working on: the backoff before the look-up
    lets it land, so the look-up finds it instead of posting a second one."""
    parent = slack.seed("C1", user="U0ALICE")
    slack.slow_s = 0.4
    slack.fail("chat.postMessage", "late")
    poster = Poster(client_for(slack, timeout_s=0.2), bot_user_id=BOT, backoff_s=1.0)
    ts = await poster.post("C1", thread_ts=parent, text="x", key="late")
    assert [m["ts"] for m in slack.with_key("late")] == [ts]
    assert len(slack.calls("chat.postMessage")) == 1


@pytest.mark.parametrize("fault", ["500", "transient", "429"])
async def test_post_refused_before_the_work_is_posted_again(slack: MiniSlack, fault: str) -> None:
    parent = slack.seed("C1", user="U0ALICE", text="help")
    slack.fail("chat.postMessage", fault)
    ts = await poster_for(slack).post("C1", thread_ts=parent, text="x", key="k1")
    assert [m["ts"] for m in slack.with_key("k1")] == [ts]
    assert [s.fault for s in slack.calls("chat.postMessage")] == [fault, "ok"]
    # A 429 needs no look-up (Slack did nothing); a 5xx does.
    assert len(slack.calls("conversations.replies")) == (0 if fault == "429" else 1)


async def test_post_sends_text_blocks_and_metadata(slack: MiniSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Diagnosis*"}}]
    ts = await poster_for(slack).post(
        "C1", thread_ts=None, text="Diagnosis", blocks=blocks, key="d"
    )
    [message] = slack.messages
    assert message["ts"] == ts
    assert message["text"] == "Diagnosis"  # the notification fallback goes with the blocks
    assert message["blocks"] == blocks
    assert message["metadata"] == {"event_type": POST_EVENT_TYPE, "event_payload": {"key": "d"}}


async def test_same_key_posts_once_sequentially_and_concurrently(slack: MiniSlack) -> None:
    parent = slack.seed("C1", user="U0ALICE")
    poster = poster_for(slack)
    first = await poster.post("C1", thread_ts=parent, text="a", key="same")
    again = await poster.post("C1", thread_ts=parent, text="a", key="same")
    assert first == again
    results = await asyncio.gather(
        *(poster.post("C1", thread_ts=parent, text="b", key="conc") for _ in range(5))
    )
    assert len(set(results)) == 1
    assert len(slack.with_key("same")) == 1
    assert len(slack.with_key("conc")) == 1
    assert not poster._locks._locks  # no lock left behind


async def test_failed_lookup_is_ambiguous_then_resolved_by_the_next_post(
    slack: MiniSlack,
) -> None:
    parent = slack.seed("C1", user="U0ALICE")
    slack.fail("chat.postMessage", "drop")
    slack.fail("conversations.replies", *["500"] * 4)  # the client's 3 retries all fail
    poster = poster_for(slack)
    with pytest.raises(SlackUnavailable) as caught:
        await poster.post("C1", thread_ts=parent, text="x", key="amb")
    assert caught.value.ambiguous
    assert caught.value.method == "chat.postMessage"
    assert "may have gone through" in str(caught.value)
    assert len(slack.calls("chat.postMessage")) == 1  # never posted blindly
    # The caller tries again later: the post is looked up first and found.
    ts = await poster.post("C1", thread_ts=parent, text="x", key="amb")
    assert [m["ts"] for m in slack.with_key("amb")] == [ts]
    assert len(slack.calls("chat.postMessage")) == 1


async def test_a_post_cancelled_in_flight_is_looked_up_next_time(slack: MiniSlack) -> None:
    parent = slack.seed("C1", user="U0ALICE")
    slack.slow_s = 2.0
    slack.fail("chat.postMessage", "slow")  # posts at once, answers after 2 s
    poster = poster_for(slack)
    task = asyncio.create_task(poster.post("C1", thread_ts=parent, text="x", key="cx"))
    await asyncio.wait_for(slack.posted.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ts = await poster.post("C1", thread_ts=parent, text="x", key="cx")
    assert [m["ts"] for m in slack.with_key("cx")] == [ts]
    assert len(slack.calls("chat.postMessage")) == 1


async def test_lookup_pages_through_a_long_thread(slack: MiniSlack) -> None:
    parent = slack.seed("C1", user="U0ALICE")
    for i in range(9):
        slack.seed("C1", user="U0BOB", thread_ts=parent, text=f"reply {i}")
    slack.page_size = 2
    slack.fail("chat.postMessage", "drop")
    ts = await poster_for(slack).post("C1", thread_ts=parent, text="x", key="deep")
    assert [m["ts"] for m in slack.with_key("deep")] == [ts]
    assert len(slack.calls("conversations.replies")) == 6  # 11 messages, 2 a page


async def test_lookup_ignores_other_users_messages_with_the_key(slack: MiniSlack) -> None:
    """Another app's message carrying our key is not ours: the post still happens."""
    parent = slack.seed("C1", user="U0ALICE")
    forged = {"event_type": POST_EVENT_TYPE, "event_payload": {"key": "k"}}
    slack.seed("C1", user="U0MALLORY", thread_ts=parent, metadata=forged)
    slack.fail("chat.postMessage", "500")
    ts = await poster_for(slack).post("C1", thread_ts=parent, text="x", key="k")
    ours = [m for m in slack.with_key("k") if m["user"] == BOT]
    assert [m["ts"] for m in ours] == [ts]


async def test_final_errors_are_clear_and_not_retried(slack: MiniSlack) -> None:
    metrics = BotMetrics()
    poster = poster_for(slack, client=client_for(slack, metrics=metrics))
    with pytest.raises(SlackUnavailable) as caught:
        await poster.post("C0GONE", thread_ts=None, text="x", key="k")
    assert str(caught.value) == "Slack call chat.postMessage failed: channel_not_found"
    assert (caught.value.method, caught.value.error) == ("chat.postMessage", "channel_not_found")
    assert not caught.value.ambiguous
    assert TOKEN not in str(caught.value)
    assert len(slack.calls("chat.postMessage")) == 1
    with pytest.raises(SlackUnavailable, match=r"chat.update failed: message_not_found$"):
        await poster.update("C1", "9.9", text="x")
    text = metrics.render()[0].decode()
    assert 'slack_api_errors_total{error="channel_not_found",method="chat.postMessage"} 1.0' in text
    assert 'slack_api_errors_total{error="message_not_found",method="chat.update"} 1.0' in text


async def test_attempts_are_bounded(slack: MiniSlack) -> None:
    parent = slack.seed("C1", user="U0ALICE")
    slack.fail("chat.postMessage", *["500"] * 10)
    with pytest.raises(SlackUnavailable) as caught:
        await poster_for(slack, attempts=3).post("C1", thread_ts=parent, text="x", key="b")
    assert caught.value.error == "http_500"
    assert not caught.value.ambiguous  # the last look-up saw nothing: nothing was posted
    assert len(slack.calls("chat.postMessage")) == 3
    assert slack.with_key("b") == []


async def test_update_and_ephemeral(slack: MiniSlack) -> None:
    ts = slack.seed("C1", user=BOT, text="old", blocks=[])
    poster = poster_for(slack)
    slack.fail("chat.update", "drop")
    blocks = [{"type": "divider"}]
    await poster.update("C1", ts, text="new", blocks=blocks)
    [message] = slack.messages
    assert (message["text"], message["blocks"]) == ("new", blocks)
    assert message["updated"] == 1 or message["updated"] == 2  # idempotent either way
    await poster.ephemeral("C1", "U0ALICE", "only you", thread_ts=ts)
    [eph] = slack.ephemerals
    assert (eph["user"], eph["text"], eph["thread_ts"]) == ("U0ALICE", "only you", ts)
    slack.fail("chat.postEphemeral", "drop")
    with pytest.raises(SlackUnavailable) as caught:
        await poster.ephemeral("C1", "U0ALICE", "again")
    assert caught.value.ambiguous
    assert len(slack.calls("chat.postEphemeral")) == 2  # not resent


async def test_empty_key_is_refused(slack: MiniSlack) -> None:
    with pytest.raises(ValueError, match="key"):
        await poster_for(slack).post("C1", thread_ts=None, text="x", key="")


# --- the property ----------------------------------------------------------------------------

POST_FAULTS = st.lists(
    st.sampled_from(["429", "500", "500after", "drop", "transient", "ok"]), max_size=8
)
LOOKUP_FAULTS = st.lists(st.sampled_from(["500", "drop", "transient", "ok"]), max_size=5)


async def _scenario(
    post_faults: Iterable[Fault], lookup_faults: Iterable[Fault], thread: bool
) -> tuple[MiniSlack, str | SlackUnavailable]:
    slack = MiniSlack()
    await slack.start()
    try:
        parent = slack.seed("C1", user="U0ALICE") if thread else None
        slack.fail("chat.postMessage", *post_faults)
        slack.fail("conversations.replies" if thread else "conversations.history", *lookup_faults)
        poster = poster_for(slack, attempts=3)
        try:
            return slack, await poster.post("C1", thread_ts=parent, text="x", key="P")
        except SlackUnavailable as exc:
            return slack, exc
    finally:
        await slack.stop()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(post_faults=POST_FAULTS, lookup_faults=LOOKUP_FAULTS, thread=st.booleans())
def test_any_fault_sequence_posts_at_most_once(
    post_faults: list[Fault], lookup_faults: list[Fault], thread: bool
) -> None:
    slack, result = asyncio.run(_scenario(post_faults, lookup_faults, thread))
    messages = slack.with_key("P")
    assert len(messages) <= 1
    landed = any(s.did_work for s in slack.calls("chat.postMessage"))
    assert landed == (len(messages) == 1)
    if isinstance(result, str):
        assert [m["ts"] for m in messages] == [result]
    elif result.ambiguous:
        assert result.error.startswith("lookup_")  # only an unanswered look-up leaves doubt
    else:
        assert messages == []  # "not posted" is only said when it is true
    if landed and all(f == "ok" for f in lookup_faults):
        assert isinstance(result, str)  # look-ups that work always find a landed post
    # Every post attempt beyond the first followed a look-up that found nothing.
    assert len(slack.calls("chat.postMessage")) <= 3 + 5 * 3


# --- against the shared stand-in (tests/support/slack_standin) ------------------------------
# The same guarantees, checked against the workspace the bot's own tests use. The faults
# it lacks (5xx after the work, slow answers, 200 internal_error, conversations.history)
# stay with MiniSlack above.


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as workspace:
        yield workspace


def standin_client(workspace: SlackStandIn, metrics: BotMetrics | None = None) -> AsyncWebClient:
    return make_client(
        workspace.bot_token, base_url=workspace.base_url, metrics=metrics, retry=FAST
    )


async def test_standin_429_retried_and_counted(standin: SlackStandIn) -> None:
    metrics = BotMetrics()
    parent = standin.add_message("C0INC1", "U0ALICE", "checkout is down").ts
    standin.fail_next("chat.postMessage", status=429, retry_after=1)
    poster = Poster(standin_client(standin, metrics), bot_user_id=standin.bot_user_id)
    started = time.monotonic()
    ts = await poster.post("C0INC1", thread_ts=parent, text="Looking", key="ack")
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in standin.calls_to("chat.postMessage")] == [429, 200]
    assert [m.ts for m in standin.thread("C0INC1", parent)[1:]] == [ts]
    assert sample(metrics, "slack_rate_limited_total", method="chat.postMessage") == 1


async def test_standin_dropped_post_yields_one_message(standin: SlackStandIn) -> None:
    parent = standin.add_message("C0INC1", "U0ALICE", "checkout is down").ts
    standin.drop_next("chat.postMessage")
    poster = Poster(standin_client(standin), bot_user_id=standin.bot_user_id, backoff_s=0)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Looking*"}}]
    ts = await poster.post("C0INC1", thread_ts=parent, text="Looking", blocks=blocks, key="k")
    [reply] = standin.thread("C0INC1", parent)[1:]
    assert (reply.ts, reply.text, reply.blocks) == (ts, "Looking", blocks)
    assert reply.metadata == {"event_type": POST_EVENT_TYPE, "event_payload": {"key": "k"}}
    assert [c.dropped for c in standin.calls_to("chat.postMessage")] == [True]
    assert len(standin.calls_to("conversations.replies")) == 1


async def test_standin_writes_not_retried_blindly_reads_and_edits_are(
    standin: SlackStandIn,
) -> None:
    client = standin_client(standin)
    standin.drop_next("chat.postMessage")
    with pytest.raises(aiohttp.ClientError):
        await client.chat_postMessage(channel="C0INC1", text="x")
    standin.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C0INC1", text="x")
    assert len(standin.calls_to("chat.postMessage")) == 2
    assert len(standin.messages["C0INC1"]) == 1  # the dropped one landed; nothing twice
    ts = standin.messages["C0INC1"][0].ts
    standin.drop_next("chat.update")
    await client.chat_update(channel="C0INC1", ts=ts, text="edited")
    assert standin.messages["C0INC1"][0].text == "edited"
    standin.fail_next("chat.update", status=503)
    await client.chat_update(channel="C0INC1", ts=ts, text="edited twice")
    assert standin.messages["C0INC1"][0].text == "edited twice"
    assert [(c.status, c.dropped) for c in standin.calls_to("chat.update")] == [
        (200, True),
        (200, False),
        (503, False),
        (200, False),
    ]
    standin.fail_next("conversations.replies", status=500, count=2)
    assert (await client.conversations_replies(channel="C0INC1", ts=ts))["ok"]
    standin.fail_next("assistant.threads.setStatus", status=503)
    await client.assistant_threads_setStatus(channel_id="C0INC1", thread_ts=ts, status="…")
    assert len(standin.calls_to("assistant.threads.setStatus")) == 2


async def test_standin_lost_lookup_is_ambiguous_then_resolved(standin: SlackStandIn) -> None:
    parent = standin.add_message("C0INC1", "U0ALICE", "help").ts
    standin.drop_next("chat.postMessage")
    standin.fail_next("conversations.replies", status=500, count=4)
    poster = Poster(standin_client(standin), bot_user_id=standin.bot_user_id, backoff_s=0)
    with pytest.raises(SlackUnavailable) as caught:
        await poster.post("C0INC1", thread_ts=parent, text="x", key="amb")
    assert caught.value.ambiguous
    ts = await poster.post("C0INC1", thread_ts=parent, text="x", key="amb")
    assert [m.ts for m in standin.thread("C0INC1", parent)[1:]] == [ts]
    assert len(standin.calls_to("chat.postMessage")) == 1
