"""Secret redaction: the one choke point for text on its way to Slack, the store or a model.

Logs, env dumps, YAML, kubeconfigs and the question a person types leak credentials
all the time, and a leaked token in a Slack thread or a training set is hard to take
back. `redact` replaces only the secret itself with `[REDACTED:<kind>]` and keeps the
rest of the line (the key, the URL's scheme, user and host), so a redacted line still
says what went wrong; `redact_json` does the same for every string in a decision, a
list of tool calls or a diagnosis, and drops the values of keys such as `password`.

What counts as a secret lives in `agents.redact_rules`. This module runs those rules on
the text and on decoded views of it, because a secret hides as well behind an escape as
behind a key: JSON escapes (`{\\"password\\": \\"…\\"}`, a PEM's `\\n`; up to three
deep), URL encoding (`p%40ss`, a credential URL inside a query parameter; two deep) and
line breaks inside a long token (a JWT wrapped at 64 columns). Only the lines holding an
escape are decoded. Findings in a view map back to the original characters, overlapping
findings merge into one marker, and existing markers are never redacted again, so
`redact(redact(x)) == redact(x)`.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

from agents.redact_rules import (
    ALL,
    LOG_PREFIX,
    Detector,
    Hit,
    ScanText,
    classify_key,
    jwts,
    plausible,
)

T = TypeVar("T")
MARKER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_RANK = {detector: rank for rank, detector in enumerate(ALL)}
Ranked = tuple[int, int, str, int]  # a hit and the rank of the detector that found it


@dataclass(frozen=True, slots=True)
class _View:
    """Decoded text and the way back to the text it was decoded from (`parent`, or the
    original): view offset `views[i]` is offset `origins[i]` there, and offsets between
    two such points move together. Dropped text (a joined line break) has two points at
    one view offset: a finding that starts there starts after it, one that ends there
    ends before it.
    """

    text: str
    views: list[int]
    origins: list[int]
    parent: _View | None = None

    def start(self, pos: int) -> int:
        i = bisect.bisect_right(self.views, pos) - 1
        here = self.origins[i] + (pos - self.views[i])
        return self.parent.start(here) if self.parent else here

    def end(self, pos: int) -> int:
        i = bisect.bisect_left(self.views, pos)
        if i < len(self.views) and self.views[i] == pos:
            here = self.origins[i]
        else:
            here = self.origins[i - 1] + (pos - self.views[i - 1])
        return self.parent.end(here) if self.parent else here


_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|[\"\\/bfnrt'])")
_JSON_CHARS = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# A line break inside a long token: a JWT wrapped at 64 columns, or split at its dots.
_WRAP = re.compile(
    r"(?:(?<=[A-Za-z0-9+/=_.\-]{16})|(?<=\.))\r?\n" + LOG_PREFIX + r"[ \t]*(?=[A-Za-z0-9+/_.\-]{8})"
)
_JWT_LINES = 16  # a 4096-bit RSA JWT wrapped at 64 columns takes 14 lines


def _unescape_json(match: re.Match[str]) -> str:
    escape = match.group()[1:]
    if escape.startswith("u"):
        return chr(int(escape[1:], 16))
    return _JSON_CHARS.get(escape, escape)


def _unescape_url(match: re.Match[str]) -> str:
    return chr(int(match.group()[1:], 16))


def _lines_with(text: str, trigger: str, *, following: int = 0) -> list[tuple[int, int]]:
    """(start, end) of the runs of whole lines that contain `trigger`, each with up to
    `following` lines after it."""
    spans: list[tuple[int, int]] = []
    pos = text.find(trigger)
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        line_end = end = text.find("\n", pos)
        for _ in range(following):
            if end < 0:
                break
            end = text.find("\n", end + 1)
        end = len(text) if end < 0 else end
        if spans and start <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
        pos = text.find(trigger, line_end) if line_end >= 0 else -1
    return spans


def _view(
    text: str,
    escape: re.Pattern[str],
    decode: Callable[[re.Match[str]], str],
    windows: list[tuple[int, int]],
) -> _View | None:
    """The `windows` of `text`, decoded, or None when no escape is in them."""
    parts: list[str] = []
    views: list[int] = []
    origins: list[int] = []
    length = 0
    for start, end in windows:
        views.append(length)
        origins.append(start)
        last = start
        for match in escape.finditer(text, start, end):
            decoded = decode(match)
            parts += [text[last : match.start()], decoded]
            length += match.start() - last
            views += [length, length + len(decoded)]
            origins += [match.start(), match.end()]
            length += len(decoded)
            last = match.end()
        parts.append(text[last:end] + "\n")
        length += end - last + 1
    if len(views) == len(windows):
        return None
    return _View("".join(parts), views, origins)


def _compose(outer: _View, inner: _View) -> _View:
    """A view of a view, mapped back through `outer`."""
    return _View(inner.text, inner.views, inner.origins, outer)


def _views(text: str) -> Iterator[tuple[_View, tuple[Detector, ...]]]:
    """Decoded views of `text` worth scanning, each with the detectors to run on it."""
    decoded = [_View(text, [0], [0])]
    for trigger, escape, decode, rounds in (
        ("\\", _JSON_ESCAPE, _unescape_json, 3),
        ("%", _PERCENT, _unescape_url, 2),
    ):
        # Escaped more than once: JSON in a JSON string in a log record, a URL in a query.
        view = decoded[0]
        for _ in range(rounds):
            windows = _lines_with(view.text, trigger)
            inner = _view(view.text, escape, decode, windows) if windows else None
            if inner is None:
                break
            view = inner if view is decoded[0] else _compose(view, inner)
            decoded.append(view)
    for view in decoded[1:]:
        yield view, ALL
    for view in decoded:
        # A JWT wrapped across lines (maybe behind log prefixes), or split at its dots.
        if "eyJ" in view.text and "\n" in view.text:
            windows = _lines_with(view.text, "eyJ", following=_JWT_LINES)
            joined = _view(view.text, _WRAP, lambda _: "", windows)
            if joined is not None:
                yield _compose(view, joined), (jwts,)


def _scan(text: str, detectors: tuple[Detector, ...]) -> Iterator[Ranked]:
    scanned = ScanText(text)
    for detector in detectors:
        rank = _RANK[detector]
        for start, end, kind in detector(scanned):
            if start < end:
                yield start, end, kind, rank


def find_secrets(text: str) -> list[Hit]:
    """The spans of `text` to redact, merged and in order, with the kind of each.

    >>> find_secrets("user=bob password=hunter2")
    [(18, 25, 'password')]
    """
    hits = list(_scan(text, ALL))
    for view, detectors in _views(text):
        hits += [
            (view.start(start), view.end(end), kind, rank)
            for start, end, kind, rank in _scan(view.text, detectors)
        ]
    if "[REDACTED:" in text:
        hits = list(_outside_markers(text, hits))
    return _whole_values(text, _merge(hits))


# Detectors read a bare value for at most 1,024 characters (that keeps text made only of
# keys linear); a value that long goes on to the end of its run, in one linear pass.
_VALUE_CAP = 1024
_VALUE_RUN = re.compile(r"[^\s\"'`,;&\\]*")


def _whole_values(text: str, hits: list[Hit]) -> list[Hit]:
    out: list[Hit] = []
    for start, end, kind in hits:
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end), out[-1][2])
            continue
        if end - start >= _VALUE_CAP:
            run = _VALUE_RUN.match(text, end)
            end = run.end() if run else end
        out.append((start, end, kind))
    return out


def _outside_markers(text: str, hits: list[Ranked]) -> Iterator[Ranked]:
    """Hits cut to the text around existing markers; what is left must hold a letter or digit."""
    marks = [m.span() for m in MARKER.finditer(text)]
    starts = [start for start, _ in marks]
    for start, end, kind, rank in hits:
        pos = start
        first = max(0, bisect.bisect_right(starts, start) - 1)
        for mark_start, mark_end in marks[first:]:
            if mark_start >= end:
                break
            if mark_end <= pos:
                continue
            if any(c.isalnum() for c in text[pos:mark_start]):
                yield pos, mark_start, kind, rank
            pos = max(pos, mark_end)
        if pos < end and any(c.isalnum() for c in text[pos:end]):
            yield pos, end, kind, rank


def _merge(hits: list[Ranked]) -> list[Hit]:
    """Overlapping hits become one; it takes the kind of the most specific detector."""
    merged: list[Ranked] = []
    for start, end, kind, rank in sorted(hits):
        if merged and start < merged[-1][1]:
            first, last, first_kind, first_rank = merged[-1]
            if rank < first_rank:
                first_kind, first_rank = kind, rank
            merged[-1] = (first, max(last, end), first_kind, first_rank)
        else:
            merged.append((start, end, kind, rank))
    return [(start, end, kind) for start, end, kind, _ in merged]


class Redactor:
    """Redacts text and counts what it removed, by kind.

    >>> redactor = Redactor()
    >>> redactor.redact("DB_PASSWORD=hunter2 host=db")
    'DB_PASSWORD=[REDACTED:password] host=db'
    >>> redactor.counts
    Counter({'password': 1})
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def redact(self, text: str) -> str:
        hits = find_secrets(text)
        if not hits:
            return text
        parts: list[str] = []
        last = 0
        for start, end, kind in hits:
            parts += [text[last:start], f"[REDACTED:{kind}]"]
            last = end
            self.counts[kind] += 1
        parts.append(text[last:])
        return "".join(parts)

    def redact_json(self, value: T) -> T:
        """`value` with every string in it redacted, and the values of secret keys dropped.

        Dicts, lists and tuples are rebuilt; other values (numbers, enums, None) pass as
        they are. A string under a key such as `password` is replaced whole even when it
        does not look like a secret on its own.
        """
        return cast(T, self._walk(value, None))

    def _walk(self, value: object, key: str | None) -> object:
        if type(value) is str:
            found = classify_key(key) if key else None
            if found and plausible(value, found[1]):
                self.counts[found[0]] += 1
                return f"[REDACTED:{found[0]}]"
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._walk(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(item, key) for item in value]
        if isinstance(value, tuple):
            return tuple(self._walk(item, key) for item in value)
        return value


def redact(text: str) -> str:
    """`text` with every secret the rules recognise replaced by `[REDACTED:<kind>]`.

    >>> redact("mongodb://admin:s3cret@mongodb-geo:27017/geo")
    'mongodb://admin:[REDACTED:url_password]@mongodb-geo:27017/geo'
    """
    return Redactor().redact(text)


def redact_json(value: T) -> T:
    """`value` (a decision, tool calls, a diagnosis) with every string in it redacted.

    >>> redact_json({"password": "hunter2", "cmd": ["curl -u bob:pw1234 http://x"]})
    {'password': '[REDACTED:password]', 'cmd': ['curl -u bob:[REDACTED:password] http://x']}
    """
    return Redactor().redact_json(value)
