"""bot.health over a real aiohttp server, bot.metrics' exposition, and bot.logs' JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.health import health_routes, serve_health
from bot.logs import LOGGERS, configure, current_incident, incident_scope
from bot.metrics import BotMetrics

SECRET = "hunter2-s3cr3t"


# --- metrics ----------------------------------------------------------------------------


def families(metrics: BotMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    payload, _ = metrics.render()
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(payload.decode())
    }


def test_metrics_render_every_series() -> None:
    metrics = BotMetrics()
    metrics.investigation_started()
    metrics.investigation_started()
    metrics.investigation_finished("answered", 42.0)
    metrics.slack_error("chat.update", "message_not_found")
    metrics.rate_limited("chat.postMessage")
    metrics.event("app_mention")
    metrics.approval("approved")
    metrics.set_model_queue(lambda: 3)
    payload, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    text = payload.decode()
    for line in (
        "aoi_investigations_running 1.0",
        'aoi_investigations_total{status="answered"} 1.0',
        "aoi_investigation_seconds_count 1.0",
        'aoi_investigation_seconds_bucket{le="60.0"} 1.0',
        'aoi_slack_api_errors_total{error="message_not_found",method="chat.update"} 1.0',
        'aoi_slack_rate_limited_total{method="chat.postMessage"} 1.0',
        "aoi_model_queue_length 3.0",
        'aoi_events_total{kind="app_mention"} 1.0',
        'aoi_approvals_total{outcome="approved"} 1.0',
    ):
        assert line in text.splitlines(), line
    assert set(families(metrics)) >= {
        "aoi_investigations_running",
        "aoi_investigations",
        "aoi_investigation_seconds",
        "aoi_slack_api_errors",
        "aoi_slack_rate_limited",
        "aoi_model_queue_length",
        "aoi_events",
        "aoi_approvals",
    }


def test_each_bot_has_its_own_registry() -> None:
    one, two = BotMetrics(), BotMetrics()  # would raise "Duplicated timeseries" if shared
    one.event("app_mention")
    assert b'aoi_events_total{kind="app_mention"}' not in two.render()[0]
    assert REGISTRY.get_sample_value("aoi_events_total", {"kind": "app_mention"}) is None


def test_a_failing_queue_reader_does_not_break_the_scrape() -> None:
    metrics = BotMetrics()

    def broken() -> int:
        raise RuntimeError("model server gone")

    metrics.set_model_queue(broken)
    [(_, value)] = families(metrics)["aoi_model_queue_length"]
    assert math.isnan(value)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_label_values_never_break_the_exposition(method: str, error: str) -> None:
    metrics = BotMetrics()
    metrics.slack_error(method, error)
    [(labels, value)] = [
        (labels, value)
        for labels, value in families(metrics)["aoi_slack_api_errors"]
        if "method" in labels
    ]
    assert labels == {"method": method, "error": error}
    assert value == 1.0


# --- health endpoints -------------------------------------------------------------------


class Readiness:
    def __init__(self) -> None:
        self.answer: tuple[bool, str] = (True, "ready")
        self.raises: Exception | None = None
        self.delay_s = 0.0

    async def __call__(self) -> tuple[bool, str]:
        await asyncio.sleep(self.delay_s)
        if self.raises is not None:
            raise self.raises
        return self.answer


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Readiness, BotMetrics]]:
    ready, metrics = Readiness(), BotMetrics()
    routes = health_routes(ready=ready, metrics=metrics, ready_timeout_s=0.3)
    runner = await serve_health("127.0.0.1", 0, routes)
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", ready, metrics
    finally:
        await runner.cleanup()


async def get(url: str, *, method: str = "GET") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, await response.text(), response.headers["Content-Type"]


async def test_healthz(served: tuple[str, Readiness, BotMetrics]) -> None:
    base, ready, _ = served
    ready.answer = (False, "store down")  # liveness does not depend on readiness
    assert (await get(f"{base}/healthz"))[:2] == (200, "ok")
    status, _, _ = await get(f"{base}/healthz", method="HEAD")
    assert status == 200


async def test_readyz(served: tuple[str, Readiness, BotMetrics]) -> None:
    base, ready, _ = served
    assert (await get(f"{base}/readyz"))[:2] == (200, "ready")
    ready.answer = (False, "Slack socket not connected")
    assert (await get(f"{base}/readyz"))[:2] == (503, "Slack socket not connected")
    ready.answer = (False, f"store: password={SECRET} refused")
    status, text, _ = await get(f"{base}/readyz")
    assert status == 503
    assert SECRET not in text
    assert "[REDACTED:password]" in text
    ready.answer = (False, "")
    assert (await get(f"{base}/readyz"))[:2] == (503, "not ready")


async def test_readyz_when_the_check_fails_or_hangs(
    served: tuple[str, Readiness, BotMetrics],
) -> None:
    base, ready, _ = served
    ready.raises = ConnectionRefusedError(f"postgresql://aoi:{SECRET}@db:5432/aoi")
    status, text, _ = await get(f"{base}/readyz")
    assert status == 503
    assert text.startswith("readiness check failed: ConnectionRefusedError")
    assert SECRET not in text
    ready.raises, ready.delay_s = None, 2.0
    status, text, _ = await get(f"{base}/readyz")
    assert (status, text) == (503, "readiness check took over 0.3s")


async def test_metrics_endpoint(served: tuple[str, Readiness, BotMetrics]) -> None:
    base, _, metrics = served
    metrics.rate_limited("chat.update")
    status, text, content_type = await get(f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'aoi_slack_rate_limited_total{method="chat.update"} 1.0' in text
    assert {f.name for f in text_string_to_metric_families(text)} >= {"aoi_slack_rate_limited"}


async def test_serve_health_on_a_busy_port_fails_cleanly() -> None:
    routes = health_routes(ready=Readiness(), metrics=BotMetrics())
    first = await serve_health("127.0.0.1", 0, routes)
    port = first.addresses[0][1]
    try:
        with pytest.raises(OSError, match="address already in use"):
            await serve_health("127.0.0.1", port, routes)
    finally:
        await first.cleanup()


# --- logs -------------------------------------------------------------------------------


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """JSON logs of the default loggers into a buffer; the loggers restored afterwards."""
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in LOGGERS
        for lg in [logging.getLogger(name)]
    }
    stream = io.StringIO()
    configure("debug", stream=stream)
    try:
        yield stream
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_incident_and_extras(logged: io.StringIO) -> None:
    log = logging.getLogger("aoi.bot.test")
    log.info("before")
    with incident_scope(42):
        assert current_incident() == 42
        log.info("probe %s finished", "pod_logs", extra={"probe": "pod_logs", "seconds": 1.5})
    log.warning("after")
    before, during, after = lines(logged)
    assert set(before) == {"time", "level", "logger", "message"}
    assert before["message"] == "before"
    assert during == {
        "time": during["time"],
        "level": "INFO",
        "logger": "aoi.bot.test",
        "message": "probe pod_logs finished",
        "incident_id": 42,
        "probe": "pod_logs",
        "seconds": 1.5,
    }
    assert str(during["time"]).endswith("+00:00")
    assert "incident_id" not in after
    assert after["level"] == "WARNING"


def test_secrets_never_reach_the_log(logged: io.StringIO) -> None:
    log = logging.getLogger("slack_sdk.web")
    log.debug("sending password=%s to db", SECRET)
    log.info("ok", extra={"password": "plain", "url": f"https://bob:{SECRET}@x/y", "obj": object()})
    try:
        raise RuntimeError(f"DB_PASSWORD={SECRET}")
    except RuntimeError:
        logging.getLogger("agents.runtime").exception("probe failed token xoxb-1234-5678-abcdefgh")
    text = logged.getvalue()
    assert SECRET not in text
    assert "xoxb-1234-5678-abcdefgh" not in text
    first, second, third = lines(logged)
    assert first["message"] == "sending password=[REDACTED:password] to db"
    assert second["password"] == "[REDACTED:password]"
    assert "RuntimeError" in str(third["exc"])


async def test_tasks_and_threads_inherit_the_incident(logged: io.StringIO) -> None:
    log = logging.getLogger("aoi.bot.test")

    async def work(n: int) -> None:
        await asyncio.sleep(0)
        log.info("task %d", n)

    with incident_scope(7):
        task = asyncio.create_task(work(1))
        await asyncio.to_thread(log.info, "thread")
    with incident_scope(8):
        await work(2)
    await task
    by_message = {line["message"]: line.get("incident_id") for line in lines(logged)}
    assert by_message == {"task 1": 7, "thread": 7, "task 2": 8}


def test_configure_is_idempotent_and_not_propagating(logged: io.StringIO) -> None:
    handler = configure("info", stream=logged)
    for name in LOGGERS:
        lg = logging.getLogger(name)
        ours = [h for h in lg.handlers if isinstance(h, type(handler))]
        assert ours == [handler]
        assert not lg.propagate
    logging.getLogger("aoi").debug("hidden")  # level now info
    logging.getLogger("aoi").info("once")
    assert [line["message"] for line in lines(logged)] == ["once"]
    with pytest.raises(ValueError, match="unknown log level"):
        configure("loud", stream=logged)


def test_text_lines_stay_one_line() -> None:
    stream = io.StringIO()
    handler = configure("info", stream=stream, json_lines=False, loggers=["aoi.test_text"])
    try:
        with incident_scope("inc-9"):
            logging.getLogger("aoi.test_text").info(
                "forged\n2024-01-01 INFO aoi admin approved", extra={"token": SECRET}
            )
    finally:
        logging.getLogger("aoi.test_text").removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert " INFO aoi.test_text incident=inc-9 forged\\n2024-01-01" in line
    assert SECRET not in line


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_message_is_one_valid_json_line(message: str) -> None:
    stream = io.StringIO()
    handler = configure("info", stream=stream, loggers=["aoi.test_any"])
    try:
        logging.getLogger("aoi.test_any").info("%s", message)
    finally:
        logging.getLogger("aoi.test_any").removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert set(json.loads(line)) == {"time", "level", "logger", "message"}
    text = io.StringIO()
    handler = configure("info", stream=text, json_lines=False, loggers=["aoi.test_any"])
    try:
        logging.getLogger("aoi.test_any").info("%s", message)
    finally:
        logging.getLogger("aoi.test_any").removeHandler(handler)
    assert len(text.getvalue().splitlines()) == 1
