"""Each tool call ends in bounded time, and nothing a tool or parser raises escapes the Probe."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.rest import RESTResponse

import agents.probe.kubectl as kubectl_module
import agents.probe.probe as probe_module
from agents.probe import Probe
from agents.probe.kubectl import run_kubectl
from agents.tools.deadline import bounded
from agents.tools.kube import request
from agents.tools.result import ToolResult, ToolStatus


class Trickle(io.RawIOBase):
    """An answer that never ends: one byte at a time, slowly."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        time.sleep(0.02)
        buffer[0:1] = b" "
        return 1


def _api(body: io.IOBase, *, delay_s: float = 0.0) -> client.ApiClient:
    api = client.ApiClient(client.Configuration(host="http://probe.invalid"))

    def call_api(*args: Any, **kwargs: Any) -> RESTResponse:
        time.sleep(delay_s)
        return RESTResponse(urllib3.HTTPResponse(body=body, status=200, preload_content=False))

    api.call_api = call_api  # type: ignore[method-assign]
    return api


def test_a_trickling_answer_is_cut_at_the_request_deadline() -> None:
    api = _api(io.BufferedReader(Trickle(), buffer_size=1))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        request(api, "GET", "/api/v1/namespaces/shop/pods/geo-1/log", timeout_s=0.3)
    assert time.monotonic() - started < 2.0


def test_a_slow_kubectl_call_becomes_an_error_result_at_the_tool_deadline() -> None:
    api = _api(io.BytesIO(b'{"items": []}'), delay_s=3.0)

    async def timed() -> tuple[ToolResult, float]:
        # Timed inside the loop: asyncio.run itself waits for the abandoned thread on exit.
        started = time.monotonic()
        found = await run_kubectl("kubectl get pods -n shop", api=api, deadline_s=0.3)
        return found, time.monotonic() - started

    result, elapsed = asyncio.run(timed())
    assert elapsed < 2.0
    assert result.status is ToolStatus.ERROR
    assert result.error is not None
    assert "did not finish within 0.3s" in result.error


def test_prometheus_and_jaeger_calls_end_at_the_probe_deadline() -> None:
    async def scenario() -> list[ToolResult]:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(30)

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        api = _api(io.BytesIO(b'{"items": []}'))
        probe = Probe(api, url, url, namespaces=["shop"], deadline_s=0.5)
        try:
            return await probe.run("error rate and traces")
        finally:
            server.close()

    started = time.monotonic()
    results = asyncio.run(scenario())
    assert time.monotonic() - started < 5.0
    assert results
    assert {r.status for r in results} == {ToolStatus.ERROR}
    assert all("did not finish within 0.5s" in (r.error or "") for r in results)


def test_any_exception_from_a_tool_or_the_parser_becomes_an_error_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _api(io.BytesIO(b'{"items": []}'))

    def broken_parser(text: str) -> Any:
        raise KeyError("the parser tripped")

    monkeypatch.setattr(kubectl_module, "parse_kubectl", broken_parser)
    result = asyncio.run(run_kubectl("kubectl get pods -n shop", api=api))
    assert result.status is ToolStatus.ERROR
    assert "KeyError" in (result.error or "")

    async def broken_tool(*args: Any, **kwargs: Any) -> ToolResult:
        raise RecursionError("deep")

    monkeypatch.setattr(probe_module, "run_kubectl", broken_tool)
    results = asyncio.run(Probe(api, None, None).run("kubectl get pods -n shop"))
    assert [r.status for r in results] == [ToolStatus.ERROR]
    assert "RecursionError: deep" in (results[0].error or "")


def test_bounded_passes_results_through_and_keeps_cancellation() -> None:
    async def fine() -> ToolResult:
        return ToolResult.success("x", "ok")

    assert asyncio.run(bounded(fine(), invocation="x")).data == "ok"

    async def cancelled() -> None:
        async def forever() -> ToolResult:
            await asyncio.sleep(30)
            return ToolResult.success("x", "late")

        task = asyncio.ensure_future(bounded(forever(), invocation="x", deadline_s=10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
