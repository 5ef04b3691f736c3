"""Structured logs: one JSON object per line, secrets redacted, tagged with the incident.

`configure` puts one handler on the bot's loggers (`LOGGERS`: ours, slack_bolt's and
slack_sdk's) and stops them propagating to the root, so each line is written once.
A line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, `incident_id`
(when inside `incident_scope`, or given as `extra`), any other `extra` keys, and
`exc` for a traceback. The message, the traceback and every extra string pass
through `agents.redact` first: a token in a Slack payload or a tool's output must not
reach the log store either.

Example::

    configure("info")
    with incident_scope(42):
        log.info("probe finished", extra={"probe": "pod_logs", "seconds": 1.2})
    # {"time": "...", "level": "INFO", "logger": "aoi.bot", "message": "probe finished",
    #  "incident_id": 42, "probe": "pod_logs", "seconds": 1.2}

Tasks and threads started inside the scope (`asyncio.create_task`,
`asyncio.to_thread`) copy the context, so their lines carry the incident too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from agents.redact import redact, redact_json

LOGGERS = ("aoi", "bot", "agents", "store", "slack_bolt", "slack_sdk")

_incident: ContextVar[int | str | None] = ContextVar("aoi_incident_id", default=None)
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
# Line breaks JSON leaves unescaped that str.splitlines (and some log shippers) split on.
_JSON_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_CORE = ("time", "level", "logger", "message", "incident_id", "exc", "stack")


@contextmanager
def incident_scope(incident_id: int | str | None) -> Iterator[None]:
    """Tag every log line written inside (in this task and tasks it starts)."""
    token = _incident.set(incident_id)
    try:
        yield
    finally:
        _incident.reset(token)


def current_incident() -> int | str | None:
    return _incident.get()


def _plain(value: object) -> Any:
    """`value` as JSON types; anything else becomes its str() (so it is redacted too)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def _safe_redact(text: str) -> str:
    try:
        return redact(text)
    except Exception:  # a bug in a rule must not leak the text through logging's fallback
        return "[unredactable log text]"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record as the redacted fields of its log line."""
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": _safe_redact(record.getMessage()),
    }
    incident = record.__dict__.get("incident_id", _incident.get())
    if incident is not None:
        out["incident_id"] = _plain(incident)
    extras = {
        (f"extra_{key}" if key in _CORE else key): value
        for key, value in record.__dict__.items()
        if key not in _RESERVED and key != "incident_id" and not key.startswith("_")
    }
    if extras:
        try:
            out.update(redact_json(_plain(extras)))
        except Exception:
            out["extra"] = "[unredactable extra fields]"
    if record.exc_info:
        out["exc"] = _safe_redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        out["exc"] = _safe_redact(record.exc_text)
    if record.stack_info:
        out["stack"] = _safe_redact(record.stack_info)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(fields(record), ensure_ascii=False, default=str)
        return line.translate(_JSON_BREAKS)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [incident=N] message key=value ...`, one line per record
    (line breaks in the message are escaped; a traceback follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        f = fields(record)
        parts = [f.pop("time"), f.pop("level"), f.pop("logger")]
        if "incident_id" in f:
            parts.append(f"incident={f.pop('incident_id')}")
        parts.append(_one_line(f.pop("message")))
        exc, stack = f.pop("exc", None), f.pop("stack", None)
        parts += [f"{key}={_one_line(json.dumps(value, default=str))}" for key, value in f.items()]
        line = " ".join(parts)
        return "\n".join([line, *(text for text in (exc, stack) if text)])


def _one_line(text: str) -> str:
    """`text` with backslashes and every line break escaped."""
    return "".join(_TEXT_ESCAPES.get(c, c) for c in text)


_TEXT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"} | {
    c: f"\\u{ord(c):04x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours: `configure` replaces it rather than adding a second one."""


def configure(
    level: str,
    *,
    stream: IO[str] | None = None,
    json_lines: bool = True,
    loggers: Iterable[str] = LOGGERS,
) -> logging.Handler:
    """Send `loggers` at `level` ("debug", "INFO", ...) to `stream` (default: the
    current sys.stderr); calling it again replaces the handler it installed."""
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(number)
        logger.propagate = False
    return handler
