"""`aoi doctor` without a cluster: the store, no model, and Slack through a loopback stand-in."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.cli import run_aoi


@pytest.fixture
def slack_api() -> Iterator[str]:
    """A Slack Web API stand-in answering auth.test: `xoxb-good` is valid, anything else not."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def auth_test(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token != "xoxb-good":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "user": "aoi", "team": "SRE", "user_id": "U1"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/api/auth.test", auth_test)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        holder["runner"] = runner
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    assert started.wait(10)
    yield f"http://127.0.0.1:{holder['port']}/api/"
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _doctor(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    base = {
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path}/aoi.db",
        "AOI_MODEL": "analyzers",
        "AOI_LAB_STATE_DIR": str(tmp_path / "lab"),
    }
    result = run_aoi("doctor", "--json", cwd=tmp_path, env={**base, **env})
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    return result.returncode, {check["part"]: check for check in report["checks"]}


def test_no_slack_and_no_lab_is_healthy_and_says_how_to_start(tmp_path: Path) -> None:
    code, parts = _doctor(tmp_path, {})
    assert code == 0
    assert "not running" in parts["cluster"]["detail"]
    assert "aoi run" in parts["cluster"]["detail"]
    assert "not configured" in parts["slack"]["detail"]
    assert "analyzers answer alone" in parts["model"]["detail"]
    assert not (tmp_path / "aoi.db").exists()  # the doctor looks; it creates nothing


def test_slack_with_a_good_token_and_socket_mode(tmp_path: Path, slack_api: str) -> None:
    env = {
        "AOI_SLACK_API_URL": slack_api,
        "AOI_SLACK_BOT_TOKEN": "xoxb-good",
        "AOI_SLACK_APP_TOKEN": "xapp-1-A1-1-abc",
    }
    code, parts = _doctor(tmp_path, env)
    assert code == 0
    assert parts["slack"]["ok"] is True
    assert "Socket Mode" in parts["slack"]["detail"]


def test_slack_with_a_revoked_token_says_so(tmp_path: Path, slack_api: str) -> None:
    env = {"AOI_SLACK_API_URL": slack_api, "AOI_SLACK_BOT_TOKEN": "xoxb-revoked"}
    code, parts = _doctor(tmp_path, env)
    assert code == 1
    assert parts["slack"]["ok"] is False
    assert "invalid_auth" in parts["slack"]["detail"]
    assert "xoxb-revoked" not in json.dumps(parts)


def test_slack_without_an_app_token_or_signing_secret(tmp_path: Path, slack_api: str) -> None:
    env = {"AOI_SLACK_API_URL": slack_api, "AOI_SLACK_BOT_TOKEN": "xoxb-good"}
    code, parts = _doctor(tmp_path, env)
    assert code == 1
    assert "AOI_SLACK_APP_TOKEN" in parts["slack"]["detail"]
