"""Serving the bot: Socket Mode (the default, no public URL) or HTTP events, and SIGTERM.

Socket Mode connects out to Slack over a websocket (``apps.connections.open``)
and needs only an app-level token; health and metrics are then served on their
own port. HTTP mode serves ``/slack/events`` (bolt verifies each request's
signature and timestamp against the signing secret) beside ``/healthz``,
``/readyz`` and ``/metrics`` on one port.

On SIGTERM or SIGINT the bot stops taking events (Socket Mode disconnects, so
Slack delivers to another replica; HTTP answers 503, so Slack retries
elsewhere), lets running investigations finish within the grace period, marks
the rest interrupted and says so in their threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.app import AoiBot
from bot.health import health_routes
from bot.slack_api import CALL_ERRORS, unavailable

log = logging.getLogger("aoi.bot")

EVENTS_PATH = "/slack/events"


def events_app(bot: AoiBot) -> web.Application:
    """An aiohttp application: Slack events and interactivity, plus health and metrics."""

    async def events(request: web.Request) -> web.Response:
        if bot.draining:
            return web.Response(status=503, text="shutting down; retry on another replica")
        # Bolt parses the body before it verifies anything and answers what it cannot
        # parse (or a non-numeric timestamp) with a 500, which Slack retries: refuse first.
        refusal = bot.http_refusal(await request.read(), request.headers)
        if refusal is not None:
            return web.Response(status=refusal[0], text=refusal[1])
        response = await bot.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    application = web.Application(client_max_size=1024 * 1024)
    application.router.add_post(EVENTS_PATH, events)
    application.add_routes(health_routes(ready=bot.ready, metrics=bot.metrics))
    return application


@dataclass
class Serving:
    """A started server: how to stop taking events, and the port it listens on."""

    stop_events: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    port: int


async def serve_http(bot: AoiBot, *, host: str, port: int) -> Serving:
    runner = web.AppRunner(events_app(bot), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = _bound_port(runner, port)
    log.info("serving Slack events on http://%s:%s%s", host, bound, EVENTS_PATH)

    async def stop_events() -> None:
        bot.draining = True  # /slack/events answers 503 from now on

    return Serving(stop_events=stop_events, close=runner.cleanup, port=bound)


async def serve_socket_mode(
    bot: AoiBot, *, app_token: str, health_host: str, health_port: int
) -> Serving:
    handler = _AckingHandler(bot.app, app_token, web_client=bot.client)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
    except CALL_ERRORS as exc:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]
        raise unavailable("apps.connections.open", exc) from None
    health = web.Application()
    health.add_routes(health_routes(ready=bot.ready, metrics=bot.metrics))
    runner = web.AppRunner(health, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, health_host, health_port).start()
    bound = _bound_port(runner, health_port)
    log.info("connected to Slack over Socket Mode; health on http://%s:%s", health_host, bound)

    async def stop_events() -> None:
        bot.draining = True
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]

    async def close() -> None:
        await stop_events()
        await runner.cleanup()

    return Serving(stop_events=stop_events, close=close, port=bound)


class _AckingHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, but an envelope bolt cannot even parse is still acked.

    Without the ack Slack shows the person an error and delivers the envelope again.
    """

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        try:
            await super().handle(client, req)
        except Exception as exc:
            log.warning("acknowledged a Socket Mode envelope bolt could not handle: %s", exc)
            with contextlib.suppress(Exception):
                await client.send_socket_mode_response(
                    SocketModeResponse(envelope_id=req.envelope_id)
                )


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


async def run_until_signalled(
    bot: AoiBot,
    start: Callable[[], Awaitable[Serving]],
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Serving], None] | None = None,
) -> list[int]:
    """Start the bot and its server, wait for SIGTERM/SIGINT (or ``stop``), shut down.

    Returns the incident ids that were interrupted by the shutdown.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        await bot.start()
        serving = await start()
        if on_ready is not None:
            on_ready(serving)
        await stop.wait()
        log.info("stopping: no new events; running investigations get %ss", bot.config.grace_s)
        await serving.stop_events()
        interrupted = await bot.stop()
        await serving.close()
        return interrupted
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
