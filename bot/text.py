"""Text on its way into a Slack message: redacted, flattened, escaped and bounded.

Everything the bot shows comes from the cluster, a model or a person, and any of
them can write ``<!channel>``, ``<@U123>`` or ``<https://evil|docs>`` into a log
line: in Slack's mrkdwn those ping a channel or disguise a link. A right-to-left
override or a zero-width character hides what a command really says, a newline
breaks a one-line field out of its layout, a backtick ends an inline code span
early, and truncating after escaping would cut ``&amp;`` in half. So every string
from outside passes through one of these before it reaches a block:

- ``safe(text, limit)``: redact, flatten to one line, escape, fit in ``limit``;
- ``code(text, limit)``: the same as inline code that cannot be broken out of;
- ``plain(text, limit)``: for ``plain_text`` objects (headers, buttons, labels),
  which Slack does not parse: redacted and flattened, with ``<``/``>`` replaced
  by look-alikes so that nothing reads as a control sequence even when copied.

``escape`` and ``one_line`` are the parts, for text the bot writes itself.
``mention`` and ``date`` build the only control sequences a message may carry.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from agents.redact import redact

ELLIPSIS = "…"
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PLAIN = str.maketrans({"<": "\u2039", ">": "\u203a"})  # single angle quotation marks
_BACKTICK = "\u02cb"  # modifier letter grave accent: looks like a backtick, is a letter
_AT = "\uff20"  # full-width commercial at
# "@here" and friends are parsed into pings when a text object is not verbatim
# (and in the top-level ``text`` of a message): a full-width at sign is not.
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_MAX_MARKS = 3  # combining marks per character: enough for any script, not for "zalgo"
_CUT_SHORT = re.compile(r"(\[REDACTED:[a-z0-9_]+\])[A-Za-z0-9]\S*")
_SPACES = re.compile(r" {2,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
# Long inputs are cut (at a space) before redaction: a log dump of megabytes would
# otherwise be scanned whole to show a few hundred characters of it.
_SCAN_FACTOR = 4
_SCAN_MIN = 4_000


def escape(text: str) -> str:
    """``text`` with ``& < >`` as entities and broadcast words defused: mrkdwn shows it as
    written, and it can neither ping, nor link, nor mention anyone.

    >>> escape("<!channel> see <https://evil|docs> & co")
    '&lt;!channel&gt; see &lt;https://evil|docs&gt; &amp; co'
    """
    return "".join(_ESCAPES.get(c, c) for c in _BROADCAST.sub(_AT, text))


def one_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters: whitespace runs (newlines
    included) become one space, control, format and unassigned characters (Unicode
    category C: RTL overrides, zero-width joiners, NUL) go, and a longer text ends in
    an ellipsis.

    >>> one_line("a\\n\\tb\\u202ec\\u200b", 10)
    'a bc'
    >>> one_line("abcdef", 4)
    'abc…'
    """
    return _truncate(_flatten(text), limit)


def safe(text: str, limit: int) -> str:
    """Untrusted ``text`` ready for mrkdwn: redacted, on one line, escaped, at most
    ``limit`` characters (escapes counted, never cut), backticks as U+02CB, and no
    markdown link (``[text](url)`` becomes ``[text] (url)``: streamed text is markdown).

    >>> safe("<@U1> password=hunter2\\nok", 60)
    '&lt;@U1&gt; password=[REDACTED:password] ok'
    """
    return _fit(_prepare(text, limit).replace("`", _BACKTICK).replace("](", "] ("), limit)


def code(text: str, limit: int = 300) -> str:
    """Untrusted ``text`` as inline code of at most ``limit`` characters (backticks
    included); a backtick inside becomes U+02CB (a look-alike) so the span cannot end early."""
    _check_limit(limit, least=3)
    inner = _fit(_prepare(text, limit).replace("`", _BACKTICK), limit - 2)
    return f"`{inner or ' '}`"


def plain(text: str, limit: int) -> str:
    """Untrusted ``text`` for a ``plain_text`` object: redacted, on one line, at most
    ``limit`` characters, ``<``/``>`` as single angle quotes, broadcast words defused."""
    flat = _BROADCAST.sub(_AT, _prepare(text, limit)).translate(_PLAIN)
    return _truncate(flat, limit)


def mention(user: str) -> str:
    """``<@U…>`` for a Slack user id; anything else (``console:bob``) as safe text."""
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return safe(user, 80) or "someone"


def date(when: datetime, *, fmt: str = "{date_short_pretty} {time}") -> str:
    """A time every reader sees in their own time zone, with a UTC fallback.

    >>> date(datetime(2024, 5, 1, 12, 30, tzinfo=UTC))
    '<!date^1714566600^{date_short_pretty} {time}|2024-05-01 12:30 UTC>'
    """
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(aware.timestamp())}^{fmt}|{fallback}>"


def prefix(text: str, chars: int) -> str:
    """At most ``chars`` characters of raw ``text``, cut at whitespace where there is some,
    so that a token (a secret) is kept or dropped whole rather than cut in two."""
    if len(text) <= chars:
        return text
    cut = max(text.rfind(c, 0, chars) for c in " \n\t")
    return text[: cut if cut > 0 else chars]


def _check_limit(limit: int, *, least: int = 1) -> None:
    if limit < least:
        raise ValueError(f"a text limit must be at least {least}, not {limit}")


def _prepare(text: str, limit: int) -> str:
    """Redacted and flattened, redacted again: flattening can join what hid a secret
    (``pass\\u200bword=…``, a key split over two lines). A marker followed at once by
    a letter or digit means a detector stopped inside the value (``agents.redact``
    caps a value at 1,024 characters): the rest of that word goes too."""
    _check_limit(limit)
    text = prefix(text, max(_SCAN_MIN, _SCAN_FACTOR * limit))
    return _CUT_SHORT.sub(r"\1…", redact(_flatten(redact(text))))


def _flatten(text: str) -> str:
    flat = " ".join(text.split())
    if flat.isascii() and flat.isprintable():
        return flat
    kept: list[str] = []
    marks = 0
    for c in flat:
        category = unicodedata.category(c)
        if category[0] == "C":
            continue
        marks = marks + 1 if category[0] == "M" else 0
        if marks <= _MAX_MARKS:
            kept.append(c)
    # Dropping a character can leave two spaces side by side, or one at an end.
    return _SPACES.sub(" ", "".join(kept)).strip()


def _truncate(text: str, limit: int) -> str:
    _check_limit(limit)
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def _fit(text: str, limit: int) -> str:
    """``text`` escaped, in at most ``limit`` characters; an entity is never cut."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    used = 0
    for c in _BROADCAST.sub(_AT, text):
        piece = _ESCAPES.get(c, c)
        if used + len(piece) > limit - 1:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces).rstrip() + ELLIPSIS
