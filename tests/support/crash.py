"""Helpers for the tests that kill the model worker: its crashing variant, and a timed SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from agents.llm import SupervisedModel

# `crashing_worker.py` segfaults inside generation once while AOI_TEST_CRASH_FILE exists.
CRASHING_WORKER = [sys.executable, str(Path(__file__).with_name("crashing_worker.py"))]


async def kill_when_busy(model: SupervisedModel, sig: signal.Signals, delay_s: float) -> None:
    """Send `sig` to the worker `delay_s` after it starts answering a request."""
    # Polling: the model has no event for "a request is in flight", and tests need none.
    while not (model.stats()["busy"] and model.pid):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await asyncio.sleep(delay_s)
    pid = model.pid
    assert pid is not None
    os.kill(pid, sig)
