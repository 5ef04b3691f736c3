"""A real lab for the tests, run on its own event loop in a background thread.

The kubelet simulator serves container logs from the lab's event loop, and the
tests use the blocking ``kubernetes`` client; running the lab on a thread of its
own keeps the two from waiting on each other, exactly as a separate lab process
would, while tests can still reach the lab's internals (model, nodes) directly.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from lab.runtime import Lab

T = TypeVar("T")

CACHE_DIR = Path(os.environ.get("AOI_CACHE_DIR", Path.home() / ".cache" / "aoi"))


class LabThread:
    def __init__(self, state_dir: Path, *, tick_s: float = 0.5) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self.lab = Lab(state_dir=state_dir, cache_dir=CACHE_DIR, tick_s=tick_s)
        self.ready_s = 0.0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

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
