"""A model behind an OpenAI-compatible `/v1/chat/completions` (vLLM, llama.cpp server, Ollama).

This is how a bigger Observer than the embedded one is used: the operator runs a
server and points AOI_MODEL at it. Servers disagree on how to ask for
schema-constrained output, and strict ones reject unknown keys, so exactly one
way is sent, chosen by `json_mode`. Failures become `ModelUnavailable` (cannot
reach it, 5xx, rate limited: try later), `ModelTimeout` or `ModelError` (the
request is wrong: bad key, unknown model, rejected format), always naming the URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal, NoReturn, get_args

import aiohttp

from agents.llm.base import Completion, Message, ModelError, ModelTimeout, ModelUnavailable

JsonMode = Literal["json_schema", "guided_json", "json_object", "none"]
_SNIPPET_CHARS = 300


def chat_completions_url(base_url: str) -> str:
    """The endpoint for a base URL given with or without `/v1` (or as the full endpoint)."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


class OpenAIHttpModel:
    """A chat model served over HTTP; one aiohttp session per instance, used from one loop.

    >>> model = OpenAIHttpModel("http://127.0.0.1:8000", model="qwen", api_key=None, timeout_s=60)
    >>> completion = await model.complete(messages, schema=DECISION_SCHEMA)
    >>> await model.aclose()

    `json_mode` picks how a schema is requested: "json_schema" (OpenAI style
    `response_format`, also llama.cpp server and recent vLLM), "guided_json" (older
    vLLM), "json_object" (any JSON; Ollama) or "none" (the prompt alone).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None,
        timeout_s: float,
        json_mode: JsonMode = "json_schema",
        schema_name: str = "decision",
    ) -> None:
        if json_mode not in get_args(JsonMode):
            raise ValueError(f"json_mode {json_mode!r}: choose one of {get_args(JsonMode)}")
        self._url = chat_completions_url(base_url)
        self._model = model
        self._api_key = api_key or None
        self._timeout_s = timeout_s
        self._json_mode = json_mode
        self._schema_name = schema_name
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self._model or self._url

    @property
    def url(self) -> str:
        return self._url

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        body = self._body(messages, schema, max_tokens, temperature, stream=False)
        timeout = timeout_s or self._timeout_s
        started = time.perf_counter()
        try:
            async with self._post(body, timeout) as response:
                await self._check_status(response)
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            self._raise_for(exc, timeout)
        return self._completion(data, time.perf_counter() - started)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[str, None]:
        body = self._body(messages, schema, max_tokens, temperature, stream=True)
        timeout = timeout_s or self._timeout_s
        try:
            # Leaving early closes the connection, which tells the server to stop.
            async with self._post(body, timeout) as response:
                await self._check_status(response)
                async for data in _sse_data(response):
                    if data == "[DONE]":
                        return
                    for piece in self._pieces(json.loads(data)):
                        yield piece
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            self._raise_for(exc, timeout)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _body(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        *,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if self._model:
            body["model"] = self._model
        if schema is not None:
            body.update(self._schema_fields(schema))
        return body

    def _schema_fields(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self._json_mode == "json_schema":
            spec = {"name": self._schema_name, "schema": schema}
            return {"response_format": {"type": "json_schema", "json_schema": spec}}
        if self._json_mode == "guided_json":
            return {"guided_json": schema}
        if self._json_mode == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _post(self, body: dict[str, Any], timeout: float) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        return self._session.post(
            self._url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        )

    async def _check_status(self, response: aiohttp.ClientResponse) -> None:
        if response.status < 400:
            return
        snippet = (await response.text(errors="replace"))[:_SNIPPET_CHARS]
        where = f"model server {self._url} answered HTTP {response.status}: {snippet!r}"
        if response.status >= 500 or response.status == 429:
            raise ModelUnavailable(f"{where}; it may be overloaded or still loading, retry later")
        if response.status in (401, 403):
            raise ModelError(f"{where}; check AOI_MODEL_API_KEY")
        if response.status == 404:
            raise ModelError(f"{where}; check AOI_MODEL (the base URL) and AOI_MODEL_NAME")
        raise ModelError(
            f"{where}; if it objects to response_format or guided_json, pick another json_mode"
        )

    def _raise_for(self, exc: BaseException, timeout: float) -> NoReturn:
        if isinstance(exc, TimeoutError):
            raise ModelTimeout(
                f"model server {self._url} gave no complete answer within {timeout} s; "
                "raise AOI_MODEL_TIMEOUT_S or check the server's load"
            ) from exc
        if isinstance(exc, aiohttp.ClientConnectionError):
            raise ModelUnavailable(
                f"cannot reach model server {self._url}: {exc}; check that it is running "
                "and that AOI_MODEL points at it"
            ) from exc
        raise ModelError(f"model server {self._url} sent an unreadable answer: {exc}") from exc

    def _completion(self, data: Any, latency_s: float) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            snippet = json.dumps(data)[:_SNIPPET_CHARS]
            raise ModelError(
                f"model server {self._url} answered without choices[0].message.content: "
                f"{snippet}; is it an OpenAI-compatible chat completions endpoint?"
            ) from exc
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_s=latency_s,
            model=str(data.get("model") or self.name),
            finish_reason=choice.get("finish_reason"),
        )

    def _pieces(self, event: Any) -> list[str]:
        if isinstance(event, dict) and event.get("error"):
            raise ModelError(f"model server {self._url} failed mid-stream: {event['error']}")
        choices = event.get("choices") if isinstance(event, dict) else None
        pieces: list[str] = []
        for choice in choices or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                pieces.append(content)
        return pieces


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data` of each server-sent event (multi-line data joined by newlines)."""
    lines: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)
