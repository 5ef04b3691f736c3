"""The ``aoi lab up`` process: a Lab plus a small control API, and its state file.

Other commands (``aoi lab inject``, ``status``, ``check``, ``down``, the
benchmark, ``aoi investigate --scenario``) are separate processes; they find the
running lab through the state file and talk to it over loopback HTTP with a
bearer token only the file's owner can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.controlplane import free_port
from lab.errors import LabAlreadyRunningError, LabError
from lab.runtime import Lab
from lab.scenarios.loader import Registry, scenario_from_cli
from lab.scenarios.schema import Scenario

STATE_FILE = "state.json"


@dataclass(frozen=True)
class LabState:
    """What the state file says about a running lab."""

    pid: int
    control_url: str
    token: str
    endpoints: dict[str, Any]
    started_at: float
    ready_s: float

    @classmethod
    def read(cls, state_dir: Path) -> LabState | None:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def write(self, state_dir: Path) -> None:
        path = state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def refuse_second_lab(state_dir: Path) -> None:
    """A second `lab up` on the same state folder is refused while the first lives."""
    state = LabState.read(state_dir)
    if state is None:
        return
    if state.alive:
        raise LabAlreadyRunningError(
            f"a lab is already running (pid {state.pid}, apiserver "
            f"{state.endpoints.get('server')}); use it, or stop it with `aoi lab down`."
        )
    (state_dir / STATE_FILE).unlink(missing_ok=True)


def resolve(registry: Registry, body: dict[str, Any]) -> Scenario:
    """A scenario from a request: resolved by the caller, a catalogue id, or a family."""
    if "resolved" in body:
        return Scenario.model_validate(body["resolved"])
    if "scenario" in body:
        return registry.get(str(body["scenario"]))
    return scenario_from_cli(
        str(body["family"]),
        body.get("target"),
        {str(k): str(v) for k, v in (body.get("params") or {}).items()},
        app=body.get("app"),
        task_type=body.get("task_type", "mitigation"),
    )


MAX_WAIT_S = 1800.0
"""The longest a recover may be asked to wait (its client waits as long plus a margin)."""


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request; none (an empty body) is ``{}``."""
    if not await request.read():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise LabError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise LabError("the request body must be a JSON object")
    return body


def recover_options(body: dict[str, Any]) -> tuple[str | None, float, float]:
    """(app, settle_s, timeout_s) from a /recover body, each checked: {} is every app, no
    settle wait, 120 s bound."""
    unknown = set(body) - {"app", "settle_s", "timeout_s"}
    if unknown:
        raise LabError(f"unknown /recover field(s): {', '.join(sorted(unknown))}")
    app = body.get("app")
    if app is not None and (not isinstance(app, str) or not app):
        raise LabError("app must be an app's name, e.g. hotel-reservation")
    settle_s = _seconds(body, "settle_s", 0.0)
    timeout_s = _seconds(body, "timeout_s", 120.0)
    return app, settle_s, timeout_s


def _seconds(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabError(f"{key} must be a number of seconds")
    if not 0 <= value <= MAX_WAIT_S:
        raise LabError(f"{key} must be between 0 and {MAX_WAIT_S:.0f} seconds, not {value}")
    return float(value)


def control_app(
    lab: Lab, registry: Registry, token: str, shutdown: Callable[[], None]
) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "missing or wrong lab token"}, status=401)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except LabError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(lab.status())

    async def inject(request: web.Request) -> web.Response:
        scenario = resolve(registry, await request.json())
        started = time.perf_counter()
        await lab.inject(scenario)
        return web.json_response(
            {"scenario": scenario.model_dump(mode="json"), "seconds": time.perf_counter() - started}
        )

    async def recover(request: web.Request) -> web.Response:
        app, settle_s, timeout_s = recover_options(await _body(request))
        result = await lab.recover(app=app, settle_s=settle_s, timeout_s=timeout_s)
        return web.json_response(result.to_dict())

    async def check(request: web.Request) -> web.Response:
        scenario = resolve(registry, await request.json())
        verdict = await lab.check(scenario)
        return web.json_response(
            {"scenario": scenario.id, "mitigated": verdict.mitigated, "detail": verdict.detail}
        )

    async def stop(_: web.Request) -> web.Response:
        shutdown()
        return web.json_response({"stopping": True})

    app = web.Application(middlewares=[auth])
    app.router.add_get("/status", status)
    app.router.add_post("/inject", inject)
    app.router.add_post("/recover", recover)
    app.router.add_post("/check", check)
    app.router.add_post("/shutdown", stop)
    return app


async def serve(lab: Lab, registry: Registry, *, on_ready: Callable[[LabState], None]) -> None:
    """Start the lab, publish its state file, and serve until SIGINT/SIGTERM or /shutdown."""
    refuse_second_lab(lab.state_dir)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    started = time.monotonic()
    runner: web.AppRunner | None = None
    try:
        endpoints = await lab.start()
        await lab.wait_ready()
        token = secrets.token_hex(16)
        port = free_port()
        runner = web.AppRunner(control_app(lab, registry, token, done.set), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        state = LabState(
            pid=os.getpid(),
            control_url=f"http://127.0.0.1:{port}",
            token=token,
            endpoints=endpoints.to_dict(),
            started_at=time.time(),
            ready_s=time.monotonic() - started,
        )
        state.write(lab.state_dir)
        on_ready(state)
        await done.wait()
    finally:
        (lab.state_dir / STATE_FILE).unlink(missing_ok=True)
        if runner:
            await runner.cleanup()
        with contextlib.suppress(Exception):
            await lab.stop()
