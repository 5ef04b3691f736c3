"""A lab running on its own event loop in a background thread.

The kubelet simulator serves container logs from the lab's event loop while
the agents read the cluster with the blocking ``kubernetes`` client from
worker threads; giving the lab a loop and a thread of its own keeps the two
from waiting on each other, exactly as a separate ``aoi lab up`` process
would, while the benchmark (and the tests) can still reach the lab's
internals directly. ``call`` awaits a lab coroutine from another loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from lab.runtime import Lab

T = TypeVar("T")


class LabThread:
    def __init__(self, state_dir: Path, *, cache_dir: Path, tick_s: float = 0.5) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self.lab = Lab(state_dir=state_dir, cache_dir=cache_dir, tick_s=tick_s)
        self.ready_s = 0.0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180.0) -> T:
        """Run a lab coroutine from plain (non-async) code and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a lab coroutine from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def start(self) -> None:
        self.thread.start()
        self.run(self.lab.start())
        self.ready_s = self.run(self.lab.wait_ready())

    def stop(self) -> None:
        try:
            self.run(self.lab.stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
