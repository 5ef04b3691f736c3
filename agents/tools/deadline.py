"""One total deadline per tool call, and no exception out of it.

Each HTTP client has its own timeouts, but they bound single socket reads, not
a call: ``kubectl describe`` sends several requests, a trace summary one per
service, and a trickling answer resets a read timeout on every byte. The model
is owed an observation in bounded time whatever happens, so every tool call
runs inside ``bounded``: past the deadline, or on any exception, it ends as an
ERROR ``ToolResult`` saying what happened and what to try instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agents.tools.errors import describe_error
from agents.tools.result import ToolResult

TOOL_DEADLINE_S = 30.0


def deadline_message(what: str, deadline_s: float) -> str:
    return (
        f"{what} did not finish within {deadline_s:g}s and was stopped; nothing more is read. "
        "Ask for less (one namespace, a label selector, --tail=50) or try again later"
    )


async def bounded(
    call: Awaitable[ToolResult],
    *,
    invocation: str,
    deadline_s: float = TOOL_DEADLINE_S,
    what: str = "the tool call",
    clean: Callable[[str], str] = str,
) -> ToolResult:
    """``await call`` within ``deadline_s``; a timeout or any exception becomes an ERROR result.

    Usage::

        result = await bounded(named_query(prom, "cpu", "shop"), invocation="metrics cpu")

    ``clean`` is applied to error messages (pass ``redact``): an exception's text
    can quote what the tool read. Cancellation of the caller still propagates.
    """
    try:
        async with asyncio.timeout(deadline_s) as scope:
            return await call
    except TimeoutError as exc:
        if scope.expired():
            return ToolResult.failure(invocation, deadline_message(what, deadline_s))
        return ToolResult.failure(invocation, clean(describe_error(exc)))
    except Exception as exc:  # a tool never raises into the loop
        return ToolResult.failure(invocation, clean(describe_error(exc)))
