"""One loopback HTTP server for the lab's metrics and traces.

Layout (document these two base URLs to agents and tools)::

    prometheus_url = http://127.0.0.1:PORT          # /api/v1/query, /api/v1/query_range, ...
    jaeger_url     = http://127.0.0.1:PORT/jaeger   # /api/services, /api/traces, ...

One port keeps the lab's wiring simple; the Jaeger prefix mirrors how
jaeger-query is commonly served behind ``--query.base-path``. Logs are not
served here: the kubelet simulator serves them through the Kubernetes API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from lab.telemetry.jaeger import JaegerAPI
from lab.telemetry.model import AppModel
from lab.telemetry.prometheus import PrometheusAPI

JAEGER_PREFIX = "/jaeger"


@dataclass
class TelemetryServer:
    """A running telemetry server; ``close()`` stops it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def jaeger_url(self) -> str:
        return f"http://{self.host}:{self.port}{JAEGER_PREFIX}"

    async def close(self) -> None:
        await self.runner.cleanup()


def build_app(model: AppModel, *, clock: Callable[[], float] | None = None) -> web.Application:
    """The aiohttp application serving both APIs; "now" defaults to the model's last tick."""
    now = clock or _model_clock(model)
    app = web.Application()
    PrometheusAPI(model.series, clock=now).add_routes(app)
    JaegerAPI(model.traces, clock=now).add_routes(app, prefix=JAEGER_PREFIX)
    return app


async def start_telemetry_server(
    model: AppModel,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] | None = None,
) -> TelemetryServer:
    """Serve ``model``'s metrics and traces; ``port=0`` picks a free port (see ``.port``).

    Usage::

        server = await start_telemetry_server(model)
        print(server.prometheus_url, server.jaeger_url)
        ...
        await server.close()
    """
    runner = web.AppRunner(build_app(model, clock=clock), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return TelemetryServer(runner=runner, host=host, port=int(bound))


def _model_clock(model: AppModel) -> Callable[[], float]:
    def now() -> float:
        return model.now if model.now is not None else time.time()

    return now
