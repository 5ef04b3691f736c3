"""A running AoiBot on a Slack stand-in, reached over Socket Mode or signed HTTP.

`BotRig` starts the real bot (slack-bolt, slack-sdk, the store, the runtime)
against `SlackStandIn` and delivers what Slack would: mentions as Events API
envelopes, clicks and modal submissions as interactive payloads, over the
transport the test picked. Over HTTP every request is signed with the signing
secret, exactly as Slack signs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from sqlalchemy.engine import Engine

from agents.llm import ChatModel
from bot.app import AoiBot
from bot.config import BotConfig
from bot.server import Serving, serve_http, serve_socket_mode
from bot.slack_api import RetryPolicy, make_client
from support.slack_standin import Message, SlackStandIn, form_body, signed_headers

SECRET = "standin-signing-secret"
Transport = Literal["socket", "http"]


@dataclass
class Delivery:
    """What Slack got back for one delivery: the HTTP status or the Socket Mode ack."""

    status: int
    body: dict[str, Any] | str


@dataclass
class BotRig:
    bot: AoiBot
    slack: SlackStandIn
    serving: Serving
    transport: Transport

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.serving.port}/slack/events"

    async def event(self, body: dict[str, Any], *, retry: int = 0) -> Delivery:
        if self.transport == "socket":
            ack = await self.slack.socket_mode.deliver("events_api", body, retry_attempt=retry)
            return Delivery(200, ack)
        raw = json.dumps(body).encode()
        headers = signed_headers(SECRET, raw)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(raw, headers)

    async def interactive(self, payload: dict[str, Any]) -> Delivery:
        if self.transport == "socket":
            ack = await self.slack.socket_mode.deliver("interactive", payload)
            return Delivery(200, ack)
        raw = form_body(payload)
        return await self.post(raw, signed_headers(SECRET, raw) | _FORM)

    async def post(self, raw: bytes, headers: dict[str, str]) -> Delivery:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.events_url, data=raw, headers=headers) as response,
        ):
            text = await response.text()
        try:
            return Delivery(response.status, json.loads(text) if text else "")
        except json.JSONDecodeError:
            return Delivery(response.status, text)

    async def mention(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> dict[str, Any]:
        body = self.slack.mention(
            channel, user, f"<@{self.slack.bot_user_id}> {text}", thread_ts=thread_ts
        )
        await self.event(body)
        return body

    async def click(
        self, user: str, message: Message, action_id: str, value: str | None = None
    ) -> Delivery:
        if value is None:
            value = button_value(message, action_id)
        payload = self.slack.click(user, message.channel, message.ts, action_id, value)
        return await self.interactive(payload)

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return self.slack.thread(channel, thread_ts)


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def button_value(message: Message, action_id: str) -> str:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return str(element.get("value"))
    raise AssertionError(f"no {action_id} button on message {message.ts}")


def has_button(message: Message, action_id: str) -> bool:
    try:
        button_value(message, action_id)
    except AssertionError:
        return False
    return True


def texts(message: Message) -> str:
    """Everything a person reads in one message: its text, blocks and streamed chunks."""
    return "\n".join([message.text, json.dumps(message.blocks), json.dumps(message.chunks)])


async def wait_for(
    condition: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def fast_client(slack: SlackStandIn) -> Any:
    """The bot's real client, with retry waits shortened for tests."""
    return make_client(
        slack.bot_token, base_url=slack.base_url, retry=RetryPolicy(backoff_s=0.01, jitter_s=0.0)
    )


@asynccontextmanager
async def running_bot(
    slack: SlackStandIn,
    config: BotConfig,
    *,
    engine: Engine,
    transport: Transport = "socket",
    model: ChatModel | None = None,
    grace_s: float = 30.0,
) -> AsyncIterator[BotRig]:
    bot = AoiBot(
        config,
        engine=engine,
        client=fast_client(slack),
        model=model,
        signing_secret=SECRET if transport == "http" else "",
    )
    await bot.start()
    if transport == "socket":
        serving = await serve_socket_mode(
            bot, app_token=slack.app_token, health_host="127.0.0.1", health_port=0
        )
        await slack.socket_mode.wait_connected()
    else:
        serving = await serve_http(bot, host="127.0.0.1", port=0)
    try:
        yield BotRig(bot=bot, slack=slack, serving=serving, transport=transport)
    finally:
        await serving.stop_events()
        await bot.stop(grace_s=grace_s)
        await serving.close()
