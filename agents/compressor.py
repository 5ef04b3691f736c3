"""Turn raw tool output into a bounded observation a small model can read.

kubectl output and container logs are long, repetitive and mostly healthy; the
evidence is a handful of error lines and unhealthy rows. The compressor keeps
what a human on call would keep: each command followed by its result, in order;
error lines verbatim; repeated lines folded into one with a count (lines that
differ only in timestamps, numbers, ids, IPs or pod-hash suffixes are repeats);
large logs windowed around their errors; table headers with unhealthy rows
first. When the token budget is exceeded, healthy content goes first, section by
section (the largest first); errors are cut only when they alone exceed the
budget, and every cut leaves a `… N lines omitted …` marker. Secrets are
redacted before anything else happens. The result is deterministic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agents.redact import Redactor

Tokenizer = Callable[[str], int]

MAX_LEVEL = 4
TIMES = "\N{MULTIPLICATION SIGN}"  # folded lines end in "(<TIMES>N)"
_ERROR = re.compile(
    r"error|fail|refused|denied|exception|panic|oomkill|crashloop|back-?off|unhealthy"
    r"|timeout|timed out|not authori[sz]ed|unauthori[sz]ed|forbidden|certificate"
    r"|no such host|fatal|evicted|errimagepull|unreachable|killed|level=(?:err|crit)"
    r"|\"s\":\s*\"[EF]\"|\[(?:err|crit)[a-z]*\]|(?:status|code)[=:]\s*\"?5\d\d\b|\" 5\d\d ",
    re.IGNORECASE,
)
_ERROR_CASED = re.compile(r"^[EF]\d{4} |\bERR\b|\bWarning\b|\bE\d{4} \d\d:")
_COL = r"[A-Z][A-Z0-9_/.%:-]*(?:\([a-z%]+\))?"
_HEADER = re.compile(rf"^{_COL}(?: {_COL})*(?: {{2,}}{_COL}(?: {_COL})*)+\s*$")
_COLUMN = re.compile(r"\S+(?: \S+)*")
_HEALTHY_STATUS = frozenset(
    {"Running", "Completed", "Succeeded", "Active", "Bound", "Ready", "True", "Available"}
    | {"Healthy", "Established", "Complete", "Normal"}
)
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<ts>"),
    (re.compile(r"\b[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\b"), "<ts>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:\.\d+)?\b"), "<t>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"-(?=[a-z0-9]{0,15}\d)[a-z0-9]{8,10}-[a-z0-9]{5}\b"), "-<pod>"),
    (re.compile(r"-(?=[a-z]{0,4}\d)[a-z0-9]{5}\b"), "-<pod>"),
    (re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I), "#"),
    (re.compile(r"\d+"), "#"),
)
_MASK_CHARS = 500
_MAX_LINE_CHARS = 300
# Trimming levels, raised one section at a time while over budget: 0 everything
# (logs over 40 lines windowed: `context_lines` around errors, 3 head, 5 tail;
# up to 30 healthy rows), 1 a tighter window and 3 healthy rows, 2 errors with a
# last line and no healthy rows, 3 errors and unhealthy rows only, 4 at most five
# of them, long error lines clipped. For levels 1-2: (context, head, tail, lines
# up to which a log is shown whole).
_TEXT_LEVELS = {1: (1, 1, 3, 12), 2: (0, 0, 1, 0)}
_HEALTHY_ROWS = {0: 30, 1: 3}


@dataclass(frozen=True, slots=True)
class Observation:
    """A compressed observation and what the compression did.

    `ratio` is kept_chars / raw_chars (0.1 = a tenth of the raw text survived).
    `within_budget` is False only when the errors alone exceed the token budget.
    """

    text: str
    raw_chars: int
    kept_chars: int
    ratio: float
    folded_lines: int
    errors_kept: int
    tokens: int
    redactions: int
    within_budget: bool


@dataclass(slots=True)
class _Line:
    text: str
    severity: int  # 2 error or unhealthy, 1 suspicious (restarts), 0 healthy
    count: int = 1

    def render(self, *, clip_errors: bool) -> str:
        text = self.text
        if (self.severity < 2 or clip_errors) and len(text) > _MAX_LINE_CHARS:
            text = f"{text[:_MAX_LINE_CHARS]}…[+{len(text) - _MAX_LINE_CHARS} chars]"
        return text if self.count == 1 else f"{text} ({TIMES}{self.count})"


@dataclass(slots=True)
class _Block:
    header: str | None  # a table's header; None for logs and other text
    lines: list[_Line] = field(default_factory=list)


@dataclass(slots=True)
class _Section:
    command: str
    blocks: list[_Block]
    context: int = 3
    level: int = 0


def compress(
    sections: Sequence[tuple[str, str]],
    *,
    budget_tokens: int,
    tokenizer: Tokenizer | None = None,
    context_lines: int = 3,
) -> Observation:
    """Compress (command, raw output) pairs, in order, into at most `budget_tokens`.

    >>> obs = compress([("kubectl get pods", pods), ("kubectl logs geo-1", logs)],
    ...                budget_tokens=800)
    >>> print(obs.text)
    $ kubectl get pods
    NAME   READY   STATUS             RESTARTS   AGE
    geo-1  0/1     CrashLoopBackOff   7          9m
    … 12 healthy rows omitted …
    $ kubectl logs geo-1
    E1125 10:20:30 failed to connect to mongodb-geo: auth failed (\N{MULTIPLICATION SIGN}40)

    Tokens are estimated as characters / 4 unless `tokenizer` counts them. Logs
    longer than 40 lines keep `context_lines` lines around each error (fewer when
    the budget is tight).
    """
    count = tokenizer or _approx_tokens
    redactor = Redactor()
    parsed = [
        _parse(redactor.redact(cmd), redactor.redact(raw), context_lines) for cmd, raw in sections
    ]
    rendered = [_render(section) for section in parsed]
    costs = [count(text) for text, _ in rendered]
    while sum(costs) + len(parsed) > budget_tokens:
        candidates = [i for i, s in enumerate(parsed) if s.level < MAX_LEVEL]
        if not candidates:
            break
        # Trim the costliest section; on a tie the older one (the latest output matters most).
        index = max(candidates, key=lambda i: (costs[i], -i))
        parsed[index].level += 1
        rendered[index] = _render(parsed[index])
        costs[index] = count(rendered[index][0])
    text = "\n".join(part for part, _ in rendered)
    raw_chars = sum(len(cmd) + len(raw) for cmd, raw in sections)
    tokens = count(text)
    return Observation(
        text=text,
        raw_chars=raw_chars,
        kept_chars=len(text),
        ratio=round(len(text) / raw_chars, 4) if raw_chars else 1.0,
        folded_lines=sum(line.count - 1 for s in parsed for b in s.blocks for line in b.lines),
        errors_kept=sum(errors for _, errors in rendered),
        tokens=tokens,
        redactions=redactor.total,
        within_budget=tokens <= budget_tokens,
    )


def is_error_line(line: str) -> bool:
    """Whether a log line reports a failure (kept verbatim, never folded with healthy lines)."""
    return bool(_ERROR.search(line) or _ERROR_CASED.search(line))


def _approx_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _parse(command: str, raw: str, context: int) -> _Section:
    blocks: list[_Block] = []
    log = _Block(header=None)
    for chunk in re.split(r"\n[ \t]*\n", raw.strip("\n")):
        lines = [line.rstrip() for line in chunk.splitlines() if line.strip()]
        if len(lines) >= 2 and _HEADER.match(lines[0]):
            blocks.append(_table(lines[0], lines[1:]))
        else:
            log.lines.extend(_Line(line, 2 if is_error_line(line) else 0) for line in lines)
    if log.lines:
        blocks.append(_fold(log))
    return _Section(command=command, blocks=blocks, context=context)


def _table(header: str, rows: list[str]) -> _Block:
    columns = [(m.group(), m.start()) for m in _COLUMN.finditer(header)]
    scored = [_Line(row, _row_severity(columns, row)) for row in rows]
    scored.sort(key=lambda line: -line.severity)  # stable: unhealthy first, order kept
    return _Block(header=header, lines=scored)


def _row_severity(columns: list[tuple[str, int]], row: str) -> int:
    cells: dict[str, str] = {}
    for i, (name, start) in enumerate(columns):
        end = columns[i + 1][1] if i + 1 < len(columns) else len(row)
        cells[name] = row[start:end].strip()
    ready = re.fullmatch(r"(\d+)/(\d+)", cells.get("READY", ""))
    status = cells.get("STATUS", "")
    if (
        is_error_line(row)
        or (status and status not in _HEALTHY_STATUS)
        or (ready is not None and int(ready[1]) < int(ready[2]))
        or cells.get("TYPE") == "Warning"
        or cells.get("ENDPOINTS") == "<none>"
    ):
        return 2
    restarts = cells.get("RESTARTS", "").split(" ", 1)[0]
    return 1 if restarts.isdigit() and int(restarts) > 0 else 0


def _fold(block: _Block) -> _Block:
    """Merge repeats (same mask, same severity) into their first occurrence, with a count."""
    first: dict[tuple[str, int], _Line] = {}
    kept: list[_Line] = []
    for line in block.lines:
        key = (_mask(line.text), line.severity)
        if key in first:
            first[key].count += 1
        else:
            first[key] = line
            kept.append(line)
    return _Block(header=None, lines=kept)


def _mask(line: str) -> str:
    line = line[:_MASK_CHARS]
    for pattern, replacement in _MASKS:
        line = pattern.sub(replacement, line)
    return line


Rendered = list[tuple[str, bool]]  # (line, whether it is an error or unhealthy row)


def _render(section: _Section) -> tuple[str, int]:
    out: Rendered = [(f"$ {section.command}", False)]
    for block in section.blocks:
        if block.header is None:
            out.extend(_render_text(block.lines, section.level, section.context))
        else:
            out.extend(_render_table(block.header, block.lines, section.level))
    if len(out) == 1:
        out.append(("(no output)", False))
    return "\n".join(line for line, _ in out), sum(error for _, error in out)


def _shown(line: _Line, *, clip_errors: bool) -> tuple[str, bool]:
    return line.render(clip_errors=clip_errors), line.severity == 2


def _render_text(lines: list[_Line], level: int, context_lines: int) -> Rendered:
    if level >= 3:
        errors = [i for i, line in enumerate(lines) if line.severity == 2]
        if level >= MAX_LEVEL and len(errors) > 5:
            errors = errors[:2] + errors[-3:]
        return _with_markers(lines, set(errors), clip_errors=level >= MAX_LEVEL)
    context, head, tail, whole = _TEXT_LEVELS.get(level, (context_lines, 3, 5, 40))
    if len(lines) <= whole:
        return [_shown(line, clip_errors=False) for line in lines]
    keep = set(range(min(head, len(lines)))) | set(range(max(0, len(lines) - tail), len(lines)))
    for i, line in enumerate(lines):
        if line.severity == 2:
            keep.update(range(max(0, i - context), min(len(lines), i + context + 1)))
    return _with_markers(lines, keep, clip_errors=False)


def _with_markers(lines: list[_Line], keep: set[int], *, clip_errors: bool) -> Rendered:
    out: Rendered = []
    skipped = 0
    for i, line in enumerate(lines):
        if i in keep:
            if skipped:
                out.append((f"… {skipped} lines omitted …", False))
                skipped = 0
            out.append(_shown(line, clip_errors=clip_errors))
        else:
            skipped += 1
    if skipped:
        out.append((f"… {skipped} lines omitted …", False))
    return out


def _render_table(header: str, rows: list[_Line], level: int) -> Rendered:
    floor = 1 if level < 3 else 2  # from level 3 on only clearly unhealthy rows stay
    flagged = [row for row in rows if row.severity >= floor]
    if level >= MAX_LEVEL:
        flagged = flagged[:5]
    healthy = [row for row in rows if row.severity < floor]
    shown = healthy[: _HEALTHY_ROWS.get(level, 0)]
    out: Rendered = [(header, False)]
    out.extend(_shown(row, clip_errors=level >= MAX_LEVEL) for row in flagged)
    out.extend(_shown(row, clip_errors=False) for row in shown)
    omitted = len(rows) - len(flagged) - len(shown)
    if omitted:
        out.append((f"… {omitted} {'healthy ' if level < 3 else ''}rows omitted …", False))
    return out
