"""A model worker that crashes with a real SIGSEGV inside generation, once.

The supervision tests start it in place of `agents.llm.worker`. While the file
named by AOI_TEST_CRASH_FILE exists, the third streamed token of a request
removes the file and reads address 0 through ctypes: a segmentation fault in
native code on the model's thread, as a broken llama.cpp build would cause.
Without the file it is the ordinary worker.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from typing import Any

from agents.llm import worker
from agents.llm.llamacpp import LlamaCppModel

_consume = LlamaCppModel._consume


def _crashing_consume(
    self: LlamaCppModel, llama: Any, chunks: Iterator[dict[str, Any]], stop: Any, on_piece: Any
) -> Any:
    trigger = os.environ.get("AOI_TEST_CRASH_FILE", "")

    def counted() -> Iterator[dict[str, Any]]:
        for index, chunk in enumerate(chunks):
            if index == 3 and trigger and os.path.exists(trigger):
                os.remove(trigger)
                ctypes.string_at(0)  # SIGSEGV
            yield chunk

    return _consume(self, llama, counted(), stop, on_piece)


LlamaCppModel._consume = _crashing_consume  # type: ignore[method-assign]

if __name__ == "__main__":
    worker.main()
