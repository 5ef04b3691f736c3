"""Health endpoints: /healthz (the process answers), /readyz (it can do its job), /metrics.

`health_routes` gives the three routes for any aiohttp app (the HTTP-mode bot adds them
to its own); `serve_health` runs them on a port of their own, which Socket Mode needs,
having no web server otherwise. /readyz asks `ready()`, which answers `(ok, reason)`;
a `ready` that raises or takes longer than `READY_TIMEOUT_S` counts as not ready.
Reasons are redacted before they are served.

Example::

    runner = await serve_health("0.0.0.0", 8080, health_routes(ready=check, metrics=metrics))
    ...
    await runner.cleanup()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from agents.redact import redact
from bot.metrics import BotMetrics

log = logging.getLogger("aoi.bot.health")

READY_TIMEOUT_S = 5.0
Ready = Callable[[], Awaitable[tuple[bool, str]]]


def health_routes(
    *, ready: Ready, metrics: BotMetrics, ready_timeout_s: float = READY_TIMEOUT_S
) -> list[web.RouteDef]:
    """GET (and HEAD) /healthz, /readyz and /metrics."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        try:
            ok, reason = await asyncio.wait_for(ready(), ready_timeout_s)
        except TimeoutError:
            ok, reason = False, f"readiness check took over {ready_timeout_s:g}s"
        except Exception as exc:
            log.warning("readiness check failed", exc_info=True)
            ok, reason = False, f"readiness check failed: {type(exc).__name__}: {exc}"
        text = redact(reason or ("ready" if ok else "not ready"))
        return web.Response(status=200 if ok else 503, text=text)

    async def metrics_view(_: web.Request) -> web.Response:
        payload, content_type = metrics.render()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_view),
    ]


async def serve_health(host: str, port: int, routes: list[web.RouteDef]) -> web.AppRunner:
    """Serve `routes` on host:port (port 0: any free one, see `runner.addresses`).

    The caller stops it with `await runner.cleanup()`.
    """
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
