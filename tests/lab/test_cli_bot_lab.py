"""`aoi bot` as a user runs it: a process serving the lab, answering Slack, stopping on SIGTERM.

The process reads its settings from the environment like any deployment; Slack
is the loopback stand-in, the cluster is the lab's observer identity. Each test
delivers a mention over the process's own transport and waits for the
diagnosis in the thread, then sends SIGTERM and expects a clean exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from support.cli import AOI_SCRIPT
from support.lab import LabThread
from support.slack_bot import SECRET, has_button, wait_for
from support.slack_standin import SlackStandIn, signed_headers

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CHANNEL = "C0INC1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(lab: LabThread, slack: SlackStandIn, tmp_path: Path, **extra: str) -> dict[str, str]:
    ends = lab.lab.endpoints
    assert ends is not None
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AOI_")}
    return clean | {
        "AOI_DATABASE_URL": f"sqlite:///{tmp_path / 'aoi.db'}",
        "AOI_CLUSTER": str(ends.observer_kubeconfig),
        "AOI_EXECUTOR_KUBECONFIG": str(ends.executor_kubeconfig),
        "AOI_PROMETHEUS_URL": ends.prometheus_url,
        "AOI_JAEGER_URL": ends.jaeger_url,
        "AOI_MODEL": "analyzers",
        "AOI_SLACK_BOT_TOKEN": slack.bot_token,
        "AOI_SLACK_API_URL": slack.base_url,
        "AOI_APPROVERS": "U0ALICE",
        "AOI_BOT_HOST": "127.0.0.1",
        "AOI_BOT_GRACE_S": "5",
        **extra,
    }


@asynccontextmanager
async def _aoi(
    *args: str, env: dict[str, str], cwd: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        str(AOI_SCRIPT) if AOI_SCRIPT.exists() else sys.executable,
        *([] if AOI_SCRIPT.exists() else ["-m", "aoi"]),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _ready(port: int, process: asyncio.subprocess.Process) -> None:
    async def answer() -> int:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/readyz") as response,
            ):
                return response.status
        except aiohttp.ClientError:
            return 0

    for _ in range(600):
        if process.returncode is not None:
            err = (await process.stderr.read()).decode() if process.stderr else ""
            raise AssertionError(f"aoi bot exited {process.returncode}: {err[-2000:]}")
        if await answer() == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("aoi bot never became ready")


async def _diagnosis_in(slack: SlackStandIn, ts: str) -> None:
    await wait_for(
        lambda: any(has_button(m, "aoi_feedback_correct") for m in slack.thread(CHANNEL, ts)),
        timeout_s=90,
        what="the diagnosis in the thread",
    )


async def _stopped(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), timeout=60)
    err = (await process.stderr.read()).decode() if process.stderr else ""
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    return err


async def test_aoi_bot_over_http_answers_signed_events_and_stops_on_sigterm(
    lab: LabThread, tmp_path: Path
) -> None:
    port = _free_port()
    async with SlackStandIn() as slack:
        env = _env(lab, slack, tmp_path, AOI_SLACK_SIGNING_SECRET=SECRET)
        async with _aoi("bot", "--http", str(port), env=env, cwd=tmp_path) as process:
            await _ready(port, process)
            body = slack.mention(CHANNEL, "U0BOB", f"<@{slack.bot_user_id}> is anything broken?")
            raw = json.dumps(body).encode()
            url = f"http://127.0.0.1:{port}/slack/events"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=raw, headers=signed_headers(SECRET, raw)) as r:
                    assert r.status == 200
                forged = signed_headers("not-the-secret", raw)
                async with session.post(url, data=raw, headers=forged) as r:
                    assert r.status == 401
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert "aoi_" in await r.text()
            await _diagnosis_in(slack, body["event"]["ts"])
            await _stopped(process)


async def test_aoi_bot_over_socket_mode_answers_and_stops_on_sigterm(
    lab: LabThread, tmp_path: Path
) -> None:
    health = _free_port()
    async with SlackStandIn() as slack:
        env = _env(
            lab,
            slack,
            tmp_path,
            AOI_SLACK_APP_TOKEN=slack.app_token,
            AOI_BOT_HEALTH_PORT=str(health),
        )
        async with _aoi("bot", env=env, cwd=tmp_path) as process:
            await _ready(health, process)
            await slack.socket_mode.wait_connected(timeout_s=30)
            body = slack.mention(CHANNEL, "U0BOB", f"<@{slack.bot_user_id}> is anything broken?")
            await slack.socket_mode.deliver("events_api", body)
            await _diagnosis_in(slack, body["event"]["ts"])
            await _stopped(process)
            assert slack.socket_mode.connected == 0


async def test_a_wrong_token_is_one_line(lab: LabThread, tmp_path: Path) -> None:
    async with SlackStandIn() as slack:
        env = _env(lab, slack, tmp_path, AOI_SLACK_APP_TOKEN="xapp-wrong")
        env["AOI_SLACK_BOT_TOKEN"] = "xoxb-wrong"
        async with _aoi("bot", env=env, cwd=tmp_path) as process:
            await asyncio.wait_for(process.wait(), timeout=120)
            err = (await process.stderr.read()).decode() if process.stderr else ""
        assert process.returncode == 1, err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ")
        assert "invalid_auth" in lines[-1]
        assert "xoxb-wrong" not in err
