"""A local GGUF model in a supervised child process: a native crash costs one decision.

`SupervisedModel` meets the `ChatModel` protocol and runs the model in
`agents.llm.worker`. Investigations share one worker: requests wait in a
bounded queue (`queue_length` says how many wait) for at most `queue_timeout_s`,
then run one at a time. When the worker dies (SIGSEGV in llama.cpp, SIGKILL,
out of memory), the request in flight fails with `ModelUnavailable` saying so,
which the runtime turns into an error event before it answers from the
analyzers, and the next request starts a fresh worker. A worker that dies again
and again right after starting is not restarted for a while (a crash loop would
only burn the CPU the investigations need).

The process handle and its pipes are plain `subprocess` objects read by a thread,
so one model serves any event loop (the CLI runs one per command, tests one per
test) and a stuck child never blocks a loop.

    >>> model = SupervisedModel(embedded_model_path(), threads=1)
    >>> completion = await model.complete(messages, schema=DECISION_SCHEMA, max_tokens=480)
    >>> model.stats()["restarts"]
    0
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agents.llm.base import Completion, Message, ModelError, ModelTimeout, ModelUnavailable
from agents.llm.llamacpp import check_gguf

START_TIMEOUT_S = 60.0
CANCEL_GRACE_S = 2.0
CRASH_LOOP_WINDOW_S = 10.0
CRASH_LOOP_LIMIT = 3
CRASH_LOOP_PAUSE_S = 30.0
_ERRORS: dict[str, type[ModelError]] = {
    "ModelError": ModelError,
    "ModelUnavailable": ModelUnavailable,
    "ModelTimeout": ModelTimeout,
}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a freshly started worker reported about itself."""

    pid: int
    model: str
    load_s: float
    system_info: str

    @property
    def cpu_features(self) -> list[str]:
        """The CPU features the llama.cpp build uses, from its system info (`AVX2`, `FMA`...)."""
        _, _, flags = self.system_info.partition(":")
        pairs = (part.strip().partition("=") for part in flags.split("|"))
        return [name.strip() for name, _, value in pairs if value.strip() == "1"]


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: `killed by SIGSEGV`, `exited with code 3`.

    >>> describe_exit(-11)
    'killed by SIGSEGV'
    """
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Worker:
    """One child process, its reader threads, and the requests it is answering."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.fatal = ""
        self._lock = threading.Lock()
        self._routes: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self._ready = threading.Event()
        self.hello: dict[str, Any] = {}
        self.exit_code: int | None = None
        threading.Thread(target=self._read_out, daemon=True, name="aoi-model-out").start()
        self._err_reader = threading.Thread(
            target=self._read_err, daemon=True, name="aoi-model-err"
        )
        self._err_reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.exit_code is None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """The worker's first line (`ready` or `fatal`), or `{}` if it died or said nothing."""
        self._ready.wait(timeout_s)
        return self.hello

    def route(self, request_id: int, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        with self._lock:
            if self.exit_code is not None:
                queue.put_nowait({"dead": self.exit_code})
            self._routes[request_id] = (loop, queue)
        return queue

    def unroute(self, request_id: int) -> None:
        with self._lock:
            self._routes.pop(request_id, None)

    def send(self, message: dict[str, Any]) -> None:
        """Write one request line; a broken pipe means the worker is gone (the reader says so)."""
        try:
            self._stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def drain_stderr(self, timeout_s: float = 1.0) -> None:
        """Wait until a dead worker's last words (a fatal-error report) have been read."""
        self._err_reader.join(timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to end (end of stdin), then make sure it has."""
        with suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not self._ready.is_set():
                self.hello = message
                self._ready.set()
                continue
            self._deliver(message.get("id"), message)
        code = self.process.wait()
        with self._lock:
            self.exit_code = code
            routes = list(self._routes.values())
        self._ready.set()
        for loop, queue in routes:
            _post(loop, queue, {"dead": code})

    def _deliver(self, request_id: Any, message: dict[str, Any]) -> None:
        with self._lock:
            route = self._routes.get(request_id) if isinstance(request_id, int) else None
        if route is not None:  # answers to abandoned requests are dropped
            _post(route[0], route[1], message)

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("Fatal Python error"):
                self.fatal = line  # the headline of a crash report, before its tracebacks
            if line:
                self.stderr_tail.append(line)


def _post(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> None:
    with suppress(RuntimeError):  # that request's loop is closed: nobody waits any more
        loop.call_soon_threadsafe(queue.put_nowait, item)


class SupervisedModel:
    """A GGUF model served by a child process that is restarted when it dies."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int = 1,
        n_ctx: int = 4096,
        seed: int = 0,
        queue_limit: int = 64,
        queue_timeout_s: float = 600.0,
        timeout_s: float | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        worker_argv: Sequence[str] | None = None,
    ) -> None:
        self._path = check_gguf(path)
        self._argv = [
            *(worker_argv or [sys.executable, "-m", "agents.llm.worker"]),
            "--model",
            str(self._path),
            "--threads",
            str(threads if threads > 0 else (os.cpu_count() or 1)),
            "--n-ctx",
            str(n_ctx),
            "--seed",
            str(seed),
        ]
        self._queue_limit = queue_limit
        self._queue_timeout_s = queue_timeout_s
        self._timeout_s = timeout_s  # per answer, when a call gives none
        self._start_timeout_s = start_timeout_s
        self._ids = itertools.count(1)
        self._worker: _Worker | None = None
        self._info: WorkerInfo | None = None
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._waiting = 0
        self._busy = False
        self._starts = 0
        self._recent_crashes: collections.deque[float] = collections.deque(maxlen=CRASH_LOOP_LIMIT)
        self._last_death = ""
        self._closed = False

    @property
    def name(self) -> str:
        return self._path.stem

    @property
    def path(self) -> Path:
        return self._path

    @property
    def info(self) -> WorkerInfo | None:
        """What the latest worker reported when it started (None before the first start)."""
        return self._info

    @property
    def queue_length(self) -> int:
        """Requests waiting for the worker (the one it is answering not counted)."""
        return self._waiting

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    def stats(self) -> dict[str, Any]:
        """Queue and restart counters, for metrics, `aoi doctor` and the bench."""
        return {
            "queue_length": self._waiting,
            "busy": self._busy,
            "pid": self.pid,
            "starts": self._starts,
            "restarts": max(self._starts - 1, 0),
            "last_death": self._last_death,
        }

    async def start(self) -> WorkerInfo:
        """Start the worker now if none runs (calls otherwise start it on demand)."""
        async with self._gate():
            return await asyncio.to_thread(self._ensure_worker)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> Completion:
        request = _request(messages, schema, max_tokens, temperature, stream=False)
        # aclosing: leaving the loop early must release the queue at once, not at GC time.
        async with aclosing(self._run(request, timeout_s or self._timeout_s)) as items:
            async for item in items:
                if isinstance(item, Completion):
                    return item
        raise ModelError(f"model worker for {self.name} ended the answer without a result")

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[str, None]:
        request = _request(messages, schema, max_tokens, temperature, stream=True)
        async with aclosing(self._run(request, timeout_s or self._timeout_s)) as items:
            async for item in items:
                if isinstance(item, str):
                    yield item

    async def aclose(self) -> None:
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.to_thread(worker.close)

    def _gate(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates = {k: v for k, v in self._gates.items() if not k.is_closed()}
            self._gates[loop] = asyncio.Lock()
        return self._gates[loop]

    async def _run(
        self, request: dict[str, Any], timeout_s: float | None
    ) -> AsyncGenerator[str | Completion, None]:
        if self._closed:
            raise ModelError(f"model {self.name} was closed; create a new one")
        gate = self._gate()
        if gate.locked() or self._waiting:
            await self._queue(gate)
        else:
            await gate.acquire()  # free: taken at once, without yielding to the loop
        self._busy = True
        try:
            worker = await asyncio.to_thread(self._ensure_worker_or_raise)
            async with aclosing(self._exchange(worker, request, timeout_s)) as items:
                async for item in items:
                    yield item
        finally:
            self._busy = False
            gate.release()

    async def _queue(self, gate: asyncio.Lock) -> None:
        if self._waiting >= self._queue_limit:
            raise ModelUnavailable(
                f"model {self.name} is busy: {self._waiting} requests already wait (the limit); "
                "try again shortly, or serve a bigger model over HTTP for this many incidents"
            )
        self._waiting += 1
        try:
            await asyncio.wait_for(gate.acquire(), self._queue_timeout_s)
        except TimeoutError as exc:
            raise ModelTimeout(
                f"waited {self._queue_timeout_s:.0f} s in the model queue for {self.name} "
                f"({self._waiting - 1} others waiting); the model is overloaded"
            ) from exc
        finally:
            self._waiting -= 1

    async def _exchange(
        self, worker: _Worker, request: dict[str, Any], timeout_s: float | None
    ) -> AsyncGenerator[str | Completion, None]:
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        replies = worker.route(request_id, loop)
        deadline = None if timeout_s is None else loop.time() + timeout_s
        started = time.perf_counter()
        finished = False
        try:
            # A pipe write blocks while a frozen worker does not read: never on the loop.
            await asyncio.to_thread(worker.send, {"op": "generate", "id": request_id, **request})
            while True:
                message = await self._reply(replies, deadline, timeout_s)
                if "piece" in message:
                    yield str(message["piece"])
                elif "done" in message:
                    finished = True
                    done = dict(message["done"])
                    done["latency_s"] = time.perf_counter() - started
                    yield Completion(**done)
                    return
                elif "error" in message:
                    finished = True
                    error = message["error"]
                    raise _ERRORS.get(error.get("type"), ModelError)(error.get("message", ""))
                elif "dead" in message:
                    finished = True
                    await asyncio.to_thread(worker.drain_stderr)
                    raise self._died(worker, int(message["dead"]))
        except ModelTimeout:
            finished = True
            await self._cancel(worker, request_id, replies)
            raise
        finally:
            if not finished and worker.alive:
                worker.send({"op": "cancel", "id": request_id})
            worker.unroute(request_id)

    async def _reply(
        self, replies: asyncio.Queue[Any], deadline: float | None, timeout_s: float | None
    ) -> dict[str, Any]:
        if deadline is None:
            reply: dict[str, Any] = await replies.get()
            return reply
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            reply = await asyncio.wait_for(replies.get(), remaining)
        except TimeoutError as exc:
            raise ModelTimeout(
                f"model {self.name} gave no complete answer within {timeout_s} s and was "
                "stopped; raise AOI_MODEL_TIMEOUT_S, lower max_tokens or use fewer prompt tokens"
            ) from exc
        return reply

    async def _cancel(self, worker: _Worker, request_id: int, replies: asyncio.Queue[Any]) -> None:
        """Stop a request that ran out of time; a worker that does not stop is killed."""
        worker.send({"op": "cancel", "id": request_id})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_GRACE_S
        while (remaining := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(replies.get(), remaining)
            except TimeoutError:
                break
            if "done" in message or "error" in message or "dead" in message:
                return
        worker.kill()  # stuck in native code: the next request gets a fresh worker

    def _died(self, worker: _Worker, code: int) -> ModelUnavailable:
        now = time.monotonic()
        self._recent_crashes.append(now)
        self._last_death = describe_exit(code) + (f" ({worker.fatal})" if worker.fatal else "")
        return ModelUnavailable(
            f"the model worker for {self.name} (pid {worker.pid}) {self._last_death} during "
            "this request; it is restarted for the next one"
        )

    def _ensure_worker_or_raise(self) -> _Worker:
        self._ensure_worker()
        assert self._worker is not None
        return self._worker

    def _ensure_worker(self) -> WorkerInfo:
        """The running worker's info, starting one if needed (runs on a thread)."""
        worker = self._worker
        if worker is not None and worker.alive and self._info is not None:
            return self._info
        if worker is not None:
            worker.close(timeout_s=1.0)
            self._worker = None
        self._refuse_during_crash_loop()
        worker = _Worker(self._argv)
        self._starts += 1
        hello = worker.wait_ready(self._start_timeout_s)
        if "ready" in hello:
            self._worker = worker
            self._info = WorkerInfo(**hello["ready"])
            return self._info
        worker.kill()
        worker.close(timeout_s=1.0)
        if "fatal" in hello:
            raise ModelUnavailable(str(hello["fatal"]))
        code = worker.process.returncode
        worker.drain_stderr()
        self._recent_crashes.append(time.monotonic())
        tail = " | ".join(list(worker.stderr_tail)[-3:])
        self._last_death = describe_exit(code)
        raise ModelUnavailable(
            f"the model worker for {self._path} {describe_exit(code)} while loading the model"
            + (f": {tail}" if tail else "")
            + f" (no answer within {self._start_timeout_s:.0f} s counts as a failure too); "
            "check the file with `aoi doctor`, or set AOI_MODEL to another model"
        )

    def _refuse_during_crash_loop(self) -> None:
        if len(self._recent_crashes) < CRASH_LOOP_LIMIT:
            return
        span = self._recent_crashes[-1] - self._recent_crashes[0]
        since = time.monotonic() - self._recent_crashes[-1]
        if span <= CRASH_LOOP_WINDOW_S and since < CRASH_LOOP_PAUSE_S:
            raise ModelUnavailable(
                f"the model worker for {self.name} died {CRASH_LOOP_LIMIT} times within "
                f"{span:.0f} s (last: {self._last_death}); not restarting it for another "
                f"{CRASH_LOOP_PAUSE_S - since:.0f} s. `aoi doctor` checks the model and the build"
            )


def _request(
    messages: Sequence[Message],
    schema: dict[str, Any] | None,
    max_tokens: int,
    temperature: float,
    *,
    stream: bool,
) -> dict[str, Any]:
    return {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "schema": schema,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": stream,
    }
