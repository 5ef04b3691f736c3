"""The model worker: a child process that owns the GGUF model, so native crashes stay in it.

llama.cpp is native code: a bad build, a corrupt file or a bug can end the process
with SIGSEGV, and a process that dies takes every investigation in flight with it.
So the local model lives here, in a process of its own, and the product talks to
it through `agents.llm.supervised.SupervisedModel`, which restarts it when it dies.

The protocol is one JSON object per line. The parent writes requests on stdin::

    {"op": "generate", "id": 7, "messages": [...], "schema": {...}, "max_tokens": 480,
     "temperature": 0.0, "stream": true}
    {"op": "cancel", "id": 7}

and this process answers on the stdout it was started with (native code's own
prints are moved to stderr first, so they can never corrupt the protocol)::

    {"ready": {"pid": 123, "model": "...", "load_s": 0.2, "system_info": "..."}}
    {"fatal": "message"}                       (the model cannot be loaded; then exit 3)
    {"id": 7, "piece": "text"}                 (stream requests only)
    {"id": 7, "done": {"text": "...", "tokens_in": 10, "tokens_out": 4, ...}}
    {"id": 7, "error": {"type": "ModelError", "message": "..."}}

Requests run one at a time in arrival order. End of stdin (the parent went away)
ends this process.

Usage: python -m agents.llm.worker --model PATH [--threads N] [--n-ctx N] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from agents.llm.base import Message, ModelError
from agents.llm.llamacpp import LlamaCppModel

EXIT_FATAL = 3


class _Channel:
    """Writes protocol lines; only the event loop's thread writes, so lines never interleave."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, separators=(",", ":")) + "\n")
        self._out.flush()


class _Server:
    def __init__(self, model: LlamaCppModel, channel: _Channel) -> None:
        self._model = model
        self._channel = channel
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._cancelled: set[int] = set()
        self._current: tuple[int, asyncio.Task[None]] | None = None

    def receive(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # not ours; the parent only writes JSON lines
        if message.get("op") == "cancel":
            request_id = int(message.get("id", -1))
            if self._current is not None and self._current[0] == request_id:
                self._current[1].cancel()
            else:
                self._cancelled.add(request_id)
        elif message.get("op") == "generate":
            self._queue.put_nowait(message)

    async def serve(self) -> None:
        while True:
            request = await self._queue.get()
            request_id = int(request["id"])
            if request_id in self._cancelled:
                self._cancelled.discard(request_id)
                continue
            task = asyncio.create_task(self._handle(request_id, request))
            self._current = (request_id, task)
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # this server itself is being stopped
                self._channel.send({"id": request_id, "error": _error("cancelled", "cancelled")})
            finally:
                self._current = None

    async def _handle(self, request_id: int, request: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()

        def on_piece(piece: str) -> None:  # called on the model's thread
            loop.call_soon_threadsafe(self._channel.send, {"id": request_id, "piece": piece})

        messages: list[Message] = request["messages"]
        try:
            completion = await self._model.generate(
                messages,
                schema=request.get("schema"),
                max_tokens=int(request.get("max_tokens", 256)),
                temperature=float(request.get("temperature", 0.0)),
                on_piece=on_piece if request.get("stream") else None,
            )
        except ModelError as exc:
            self._channel.send({"id": request_id, "error": _error(type(exc).__name__, str(exc))})
            return
        except Exception as exc:  # anything else is still this request's failure, not ours
            message = f"{type(exc).__name__}: {exc}"
            self._channel.send({"id": request_id, "error": _error("ModelError", message)})
            return
        # Pieces were queued on the loop before this line runs, so "done" comes last.
        self._channel.send({"id": request_id, "done": asdict(completion)})


def _error(kind: str, message: str) -> dict[str, str]:
    return {"type": kind, "message": message}


async def _read_lines(server: _Server) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        server.receive(line)


async def _main(args: argparse.Namespace, channel: _Channel) -> int:
    started = time.perf_counter()
    try:
        model = LlamaCppModel(
            Path(args.model), threads=args.threads, n_ctx=args.n_ctx, seed=args.seed
        )
        await model.load()
    except ModelError as exc:
        channel.send({"fatal": str(exc)})
        return EXIT_FATAL
    from llama_cpp import llama_print_system_info

    channel.send(
        {
            "ready": {
                "pid": os.getpid(),
                "model": model.name,
                "load_s": round(time.perf_counter() - started, 3),
                "system_info": llama_print_system_info().decode(errors="replace").strip(),
            }
        }
    )
    server = _Server(model, channel)
    serving = asyncio.create_task(server.serve())
    try:
        await _read_lines(server)  # returns at end of stdin: the parent is gone or done
    finally:
        serving.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.llm.worker", description=__doc__)
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The protocol keeps the real stdout; fd 1 becomes stderr for whatever native code prints.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    code = asyncio.run(_main(args, _Channel(protocol)))
    # Skip interpreter teardown: llama.cpp's destructors have nothing left to save.
    protocol.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
