"""The supervised model worker: real llama.cpp in a child process, killed in every way we can.

A crash inside native code must cost one request, never the caller: the request
fails with `ModelUnavailable` naming the signal, and the next request gets an
answer from a restarted worker. The queue in front of the worker is bounded and
its length visible.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.crash import CRASHING_WORKER, kill_when_busy

from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA, parse_decision
from agents.llm import (
    Message,
    ModelTimeout,
    ModelUnavailable,
    SupervisedModel,
    describe_exit,
    embedded_model_path,
)

HELLO: list[Message] = [{"role": "user", "content": "Say hello."}]
DECISION_PROMPT: list[Message] = [
    {"role": "system", "content": "You diagnose Kubernetes incidents. Answer in JSON."},
    {"role": "user", "content": "Pod geo is in CrashLoopBackOff: 'panic: connect mongodb-geo'."},
]


@pytest.fixture
async def model() -> AsyncIterator[SupervisedModel]:
    supervised = SupervisedModel(embedded_model_path(), threads=1)
    try:
        yield supervised
    finally:
        await supervised.aclose()


async def test_a_decision_through_the_worker_parses(model: SupervisedModel) -> None:
    completion = await model.complete(
        DECISION_PROMPT, schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS
    )
    decision = parse_decision(completion.text)
    assert decision.next_action.kind in ("probe", "executor", "submit")
    assert completion.tokens_in > 20
    assert completion.tokens_out > 0
    assert model.info is not None
    assert model.info.pid != os.getpid()
    assert "AVX512 = 1" not in model.info.system_info
    assert "AMX_INT8 = 1" not in model.info.system_info


async def test_streaming_through_the_worker(model: SupervisedModel) -> None:
    pieces = [piece async for piece in model.stream(HELLO, max_tokens=12)]
    assert len(pieces) >= 2
    assert "".join(pieces).strip()


async def test_sigkill_mid_answer_fails_that_request_and_the_next_one_restarts(
    model: SupervisedModel,
) -> None:
    killer = asyncio.create_task(kill_when_busy(model, signal.SIGKILL, 0.3))
    with pytest.raises(ModelUnavailable, match=r"killed by SIGKILL during this request"):
        await model.complete(DECISION_PROMPT, schema=DECISION_SCHEMA, max_tokens=400)
    await killer
    first_pid = model.info.pid if model.info else 0
    completion = await model.complete(HELLO, max_tokens=8)
    assert completion.text.strip()
    assert model.stats()["restarts"] == 1
    assert model.info is not None
    assert model.info.pid != first_pid


async def test_a_segfault_inside_generation_is_reported_not_suffered(tmp_path: Path) -> None:
    trigger = tmp_path / "crash-once"
    trigger.touch()
    os.environ["AOI_TEST_CRASH_FILE"] = str(trigger)
    model = SupervisedModel(embedded_model_path(), threads=1, worker_argv=CRASHING_WORKER)
    try:
        with pytest.raises(ModelUnavailable, match=r"killed by SIGSEGV.*Segmentation fault"):
            await model.complete(HELLO, max_tokens=32)
        assert not trigger.exists()
        assert "SIGSEGV" in model.stats()["last_death"]
        assert (await model.complete(HELLO, max_tokens=8)).text.strip()
        assert model.stats()["restarts"] == 1
    finally:
        del os.environ["AOI_TEST_CRASH_FILE"]
        await model.aclose()


async def test_a_timeout_stops_the_answer_and_the_worker_serves_on(
    model: SupervisedModel,
) -> None:
    await model.start()
    pid = model.pid
    with pytest.raises(ModelTimeout, match=r"within 0.3 s"):
        await model.complete(HELLO, max_tokens=2000, timeout_s=0.3)
    assert (await model.complete(HELLO, max_tokens=8)).text.strip()
    assert model.pid == pid  # cancelled in the worker, not killed


async def test_leaving_a_stream_early_frees_the_worker(model: SupervisedModel) -> None:
    async for _ in model.stream(HELLO, max_tokens=500):
        break
    answer = await asyncio.wait_for(model.complete(HELLO, max_tokens=8), 30)
    assert answer.text.strip()


async def test_requests_queue_one_at_a_time_and_the_queue_is_visible(
    model: SupervisedModel,
) -> None:
    await model.start()
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(model.queue_length)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(*(model.complete(HELLO, max_tokens=12) for _ in range(4)))
    watcher.cancel()
    assert all(a.text.strip() for a in answers)
    assert max(seen) == 3
    assert model.queue_length == 0


async def test_a_full_queue_refuses_at_once() -> None:
    model = SupervisedModel(embedded_model_path(), threads=1, queue_limit=1)
    try:
        await model.start()
        calls = [asyncio.create_task(model.complete(HELLO, max_tokens=16)) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, ModelUnavailable)]
        assert len(refused) == 1
        assert "busy" in str(refused[0])
    finally:
        await model.aclose()


async def test_a_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    model = SupervisedModel(broken, threads=1)
    try:
        with pytest.raises(ModelUnavailable, match=str(broken)):
            await model.complete(HELLO, max_tokens=4)
    finally:
        await model.aclose()


async def test_a_worker_that_keeps_dying_is_not_restarted_in_a_loop() -> None:
    dying = [sys.executable, "-c", "import os; os.abort()"]
    model = SupervisedModel(embedded_model_path(), worker_argv=dying, start_timeout_s=10)
    try:
        for _ in range(3):
            with pytest.raises(ModelUnavailable, match=r"killed by SIGABRT while loading"):
                await model.complete(HELLO, max_tokens=4)
        with pytest.raises(ModelUnavailable, match=r"died 3 times .* not restarting"):
            await model.complete(HELLO, max_tokens=4)
        assert model.stats()["starts"] == 3
    finally:
        await model.aclose()


def test_exit_codes_in_words() -> None:
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(None) == "still running"


async def test_one_model_serves_successive_event_loops() -> None:
    model = SupervisedModel(embedded_model_path(), threads=1)

    async def once() -> str:
        return (await model.complete(HELLO, max_tokens=6)).text

    try:
        first = await asyncio.to_thread(asyncio.run, once())
        second = await asyncio.to_thread(asyncio.run, once())
        assert first.strip()
        assert second.strip()
        assert model.stats()["starts"] == 1
    finally:
        await model.aclose()
