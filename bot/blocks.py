"""The bot's Block Kit: diagnoses, proposals and what became of them, the label modal.

Pure functions from agents' and store's data to JSON-ready block lists, so that
the live thread, a restarted bot re-rendering a pending proposal and the tests
all build the same messages. Every string from the cluster, a model or a person
goes through ``bot.text`` (redacted, one line, escaped, bounded), and Slack's
limits (3,000 characters a section, 150 a header, 75 a button, 50 blocks a
message...) are enforced while building, not left to Slack to refuse: each
builder ends in ``check_blocks``, which also parses the result with slack-sdk's
block models, so an invalid block is never returned.

Buttons carry an id and nothing else (``value`` is ``str(id)``): what a click
means is read back from the store, never from the message. A proposal shows
each value it sets as a restoration or a NEW VALUE with its before → after diff,
and Approve asks for confirmation when it sets a new value or the action is
destructive (``DESTRUCTIVE_ACTIONS``).

Example::

    blocks = proposal_blocks_from_row(row)
    await poster.post(channel, thread_ts=ts, text=fallback_text(blocks), blocks=blocks, key=...)
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Final, get_args

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block as SlackBlock
from slack_sdk.models.views import View

from agents.analyzers.finding import FaultType, SystemLevel
from agents.decision import COMPONENT_CHARS
from agents.events import DiagnosisEvent
from agents.executor import ACTIONS, Provenance, action_from_json
from agents.redact import redact
from bot.text import code, date, escape, mention, plain, prefix, safe
from store.models import Proposal, ProposalState

Block = dict[str, Any]

# Slack's limits (https://docs.slack.dev/reference/block-kit/).
MESSAGE_BLOCKS: Final = 50
MODAL_BLOCKS: Final = 100
TEXT_CHARS: Final = 3000  # a section's text, a context element
FIELD_CHARS: Final = 2000
FIELDS: Final = 10
HEADER_CHARS: Final = 150
BUTTON_TEXT_CHARS: Final = 75
BUTTON_VALUE_CHARS: Final = 2000
CONFIRM_TITLE_CHARS: Final = 100
CONFIRM_TEXT_CHARS: Final = 300
CONFIRM_BUTTON_CHARS: Final = 30
CONTEXT_ELEMENTS: Final = 10
ACTIONS_ELEMENTS: Final = 25
OPTIONS: Final = 100
OPTION_TEXT_CHARS: Final = 75
OPTION_VALUE_CHARS: Final = 150
MODAL_TITLE_CHARS: Final = 24
LABEL_CHARS: Final = 2000
PLACEHOLDER_CHARS: Final = 150
NOTE_CHARS: Final = 2000

FEEDBACK_CORRECT: Final = "aoi_feedback_correct"
FEEDBACK_WRONG: Final = "aoi_feedback_wrong"
APPROVE: Final = "aoi_approve"
REJECT: Final = "aoi_reject"
LABEL_CALLBACK: Final = "aoi_label"
DECISION_BLOCK: Final = "aoi_decision"

# What the analysis task grades (AIOpsLab's taxonomy): a label is ground truth, so
# the decision's "Unknown" is no choice here.
LABEL_SYSTEM_LEVELS: Final[tuple[str, ...]] = get_args(SystemLevel)
LABEL_FAULT_TYPES: Final[tuple[str, ...]] = get_args(FaultType)

# Actions that take something away that the proposal does not give back: running
# pods, or another workload's capacity. ``scale`` joins them when it scales down
# (or when its diff does not say), and an action outside the catalogue always does.
DESTRUCTIVE_ACTIONS: Final[Mapping[str, str]] = {
    "delete_pod": "deletes a running pod (its controller starts a new one)",
    "rollout_restart": "replaces every pod of the deployment",
    "scale_neighbour": "scales another workload down",
}
_SCALE_DOWN = "scales the deployment down"
_UNKNOWN_ACTION = "is not an action of the catalogue"
_RESTARTS_PODS = frozenset({"rollback", "set_image", "set_command", "set_env", "set_resources"})
_RISK_MARK = {"low": "🟢", "medium": "🟡", "high": "🔴"}
_SOURCES = {
    "model": "model (Observer)",
    "analyzers": "deterministic analyzers",
    "model+analyzers": "model, confirmed by the analyzers",
}
_MAX_ID = 2**63 - 1
_VALUE_SECTIONS = 8
_VALUES_CHARS = 6000  # of all value sections together (the rest of a message takes ~4k)
_DETAIL_LINES = 8
_CHANGE_CHARS = 2900  # one value, its diff included: it always fits in one section
_LINE_CHARS = 20_000  # of one diff line: far more than a value section shows
_EVIDENCE_LINES = 5
_RULED_OUT = 10
_PENDING_SHOWN = 10
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
_HEAD = re.compile(r"(restoration|new): (.*?)(?: \((.*)\))?")
_REPLICAS = re.compile(r"\s*(\d+) -> (\d+)\s*")


class InvalidBlocks(ValueError):  # noqa: N818
    """A block list Slack would refuse; raised by ``check_blocks`` (a bug in a builder)."""


# -- Parts -------------------------------------------------------------------------------


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack must not turn names, channels or "@here" into links or pings.
    return {"type": "mrkdwn", "text": text or "—", "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text or "—", "emoji": True}


def _header(text: str) -> Block:
    return {"type": "header", "text": _plain(plain(text, HEADER_CHARS))}


def _section(text: str, *, fields: Sequence[str] = ()) -> Block:
    block: Block = {"type": "section", "text": _mrkdwn(_clip(text, TEXT_CHARS))}
    if fields:
        block["fields"] = [_mrkdwn(_clip(f, FIELD_CHARS)) for f in fields[:FIELDS]]
    return block


def _context(texts: Sequence[str], *, block_id: str | None = None) -> Block:
    block: Block = {
        "type": "context",
        "elements": [_mrkdwn(_clip(t, TEXT_CHARS)) for t in texts[:CONTEXT_ELEMENTS]],
    }
    if block_id:
        block["block_id"] = block_id
    return block


def _button(
    text: str,
    *,
    action_id: str,
    value: str,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(plain(text, BUTTON_TEXT_CHARS)),
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _clip(markup: str, limit: int) -> str:
    """Markup the bot composed, within ``limit``: whole lines are dropped from the end.

    The parts of every line are bounded already; this only trims a composition
    that came out longer, and never cuts through an escape, a code span or a date.
    """
    if len(markup) <= limit:
        return markup
    lines = markup.split("\n")
    while lines and len("\n".join([*lines, "…"])) > limit:
        lines.pop()
    return "\n".join([*lines, "…"]) if lines else "…"


def _id_value(value: int) -> str:
    """A button's whole value: the id as decimal digits, nothing else."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an id must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_ID:
        raise ValueError(f"an id must be between 0 and {_MAX_ID}, not {value}")
    return str(value)


def _bar(confidence: int) -> str:
    score = max(0, min(100, int(confidence)))
    filled = (score + 5) // 10
    return f"{'▰' * filled}{'▱' * (10 - filled)} {score}%"


# -- Validation --------------------------------------------------------------------------


def check_blocks(blocks: Sequence[Block], *, max_blocks: int = MESSAGE_BLOCKS) -> list[Block]:
    """``blocks`` as a list, after checking them against Slack's limits and slack-sdk's models.

    Raises ``InvalidBlocks`` naming the first problem: too many blocks, a text out
    of bounds or with a control character, an unknown block type, or anything
    slack-sdk's validators refuse.
    """
    if not 0 < len(blocks) <= max_blocks:
        raise InvalidBlocks(f"{len(blocks)} blocks: a message or view holds 1 to {max_blocks}")
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.get('type')})"
        _check_node(block, where)
        _check_block(block, where)
        try:
            parsed = SlackBlock.parse(dict(block))
            if parsed is None:
                raise InvalidBlocks(f"{where}: not a block type slack-sdk knows")
            parsed.to_dict()
        except SlackObjectFormationError as exc:
            raise InvalidBlocks(f"{where}: {exc}") from exc
    return list(blocks)


def _check_block(block: Mapping[str, Any], where: str) -> None:
    """The limits slack-sdk's validators do not cover."""
    kind = block.get("type")
    if kind == "section":
        fields = block.get("fields") or []
        if len(fields) > FIELDS or any(len(f["text"]) > FIELD_CHARS for f in fields):
            raise InvalidBlocks(f"{where}: at most {FIELDS} fields of {FIELD_CHARS} characters")
    elif kind == "actions":
        elements = block.get("elements") or []
        if not 0 < len(elements) <= ACTIONS_ELEMENTS:
            raise InvalidBlocks(f"{where}: 1 to {ACTIONS_ELEMENTS} elements")
        for element in elements:
            if len(element.get("value", "")) > BUTTON_VALUE_CHARS:
                raise InvalidBlocks(f"{where}: a button value over {BUTTON_VALUE_CHARS}")
    elif kind == "context" and not 0 < len(block.get("elements") or []) <= CONTEXT_ELEMENTS:
        raise InvalidBlocks(f"{where}: 1 to {CONTEXT_ELEMENTS} elements")
    elif kind == "input":
        element = block.get("element") or {}
        options = element.get("options") or []
        if len(options) > OPTIONS or any(
            len(o["text"]["text"]) > OPTION_TEXT_CHARS or len(o["value"]) > OPTION_VALUE_CHARS
            for o in options
        ):
            raise InvalidBlocks(f"{where}: options out of Slack's limits")


def _check_node(node: object, where: str) -> None:
    """Every text object: 1 to 3,000 characters, no control or format character but the
    newlines of mrkdwn."""
    if isinstance(node, Mapping):
        if node.get("type") in ("mrkdwn", "plain_text") and "text" in node:
            text = node["text"]
            if not isinstance(text, str) or not 0 < len(text) <= TEXT_CHARS or not text.strip():
                raise InvalidBlocks(f"{where}: a text object needs 1 to {TEXT_CHARS} characters")
            allowed = "\n" if node["type"] == "mrkdwn" else ""
            bad = next(
                (c for c in text if c not in allowed and unicodedata.category(c)[0] == "C"), None
            )
            if bad is not None:
                raise InvalidBlocks(f"{where}: control or format character {bad!r} in a text")
        for value in node.values():
            _check_node(value, where)
    elif isinstance(node, list):
        for item in node:
            _check_node(item, where)


def fallback_text(blocks: Sequence[Block], *, limit: int = 300) -> str:
    """The notification text for a message of ``blocks``: its header, else its first text."""
    for block in blocks:
        if block.get("type") == "header":
            return safe(block["text"]["text"], limit)
    for block in blocks:
        text = (block.get("text") or {}).get("text")
        if isinstance(text, str):
            return _clip(text.split("\n")[0], limit)
    return "AOI"


# -- Diagnosis ---------------------------------------------------------------------------


def diagnosis_blocks(
    d: DiagnosisEvent, *, evidence: Sequence[str], ruled_out: Sequence[str], incident_id: int
) -> list[Block]:
    """A diagnosis: what is at fault and how sure, the evidence, what was ruled out, and
    the feedback buttons (value: the incident id)."""
    value = _id_value(incident_id)
    names = _first([plain(c, 60) for c in d.components[:20]], 8)
    if d.detected:
        title = f"🔎 Diagnosis: {', '.join(names) or 'component unknown'}"
    else:
        title = "🟢 No fault found"
    blocks = [_header(title), _section(safe(d.summary, 2000), fields=_diagnosis_fields(d))]
    shown = [f"• {line}" for line in _first((safe(e, 400) for e in evidence), _EVIDENCE_LINES)]
    if shown:
        if len(evidence) > len(shown):
            shown.append(f"_…and {len(evidence) - len(shown)} more_")
        blocks.append(_section("\n".join(["*Evidence*", *shown])))
    excluded = _first((safe(r, 200) for r in ruled_out), _RULED_OUT)
    if excluded:
        text = " · ".join(excluded)
        if len(ruled_out) > len(excluded):
            text += f" · _…and {len(ruled_out) - len(excluded)} more_"
        blocks.append(_context([f"*Ruled out:* {text}"]))
    blocks.append(_section("*Was this right?* Your answer grades the diagnosis."))
    blocks.append(
        {
            "type": "actions",
            "block_id": "aoi_feedback",
            "elements": [
                _button("✅ Correct", action_id=FEEDBACK_CORRECT, value=value, style="primary"),
                _button("✏️ Wrong — label it", action_id=FEEDBACK_WRONG, value=value),
            ],
        }
    )
    return check_blocks(blocks)


def _first(texts: Iterable[str], count: int) -> list[str]:
    """The first ``count`` texts that are not empty (the others are not even built)."""
    return list(islice((t for t in texts if t), count))


def _diagnosis_fields(d: DiagnosisEvent) -> list[str]:
    components = _first((code(c, 80) for c in d.components if c.strip()), 8)
    if len(d.components) > len(components):
        components.append(f"+{len(d.components) - len(components)} more")
    return [
        f"*Component(s)*\n{', '.join(components) or '—'}",
        f"*Namespace*\n{code(d.namespace, 80) if d.namespace else '—'}",
        f"*System level*\n{safe(d.system_level or '', 80) or '—'}",
        f"*Fault type*\n{safe(d.fault_type or '', 80) or '—'}",
        f"*Confidence*\n{_bar(d.confidence)}",
        f"*Source*\n{_SOURCES.get(d.source) or safe(d.source, 80) or '—'}",
    ]


# -- Proposals ---------------------------------------------------------------------------


@dataclass
class _Change:
    """One value of a proposal as ``Provenance.diff`` lists it (``origin`` None: a note)."""

    origin: str | None
    name: str
    source: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def new(self) -> bool:
        return self.origin == "new"


def _parse_diff(diff: Sequence[str]) -> list[_Change]:
    changes: list[_Change] = []
    for full in diff:
        line = prefix(full, _LINE_CHARS)
        head = _HEAD.fullmatch(line) if line.startswith(("restoration: ", "new: ")) else None
        if head:
            changes.append(_Change(head.group(1), head.group(2), head.group(3) or ""))
        elif line.startswith("  ") and changes and changes[-1].origin is not None:
            changes[-1].details.append(line[2:])
        else:
            changes.append(_Change(None, line))
    return changes


def is_destructive(action: str, diff: Sequence[str] = ()) -> str | None:
    """Why approving ``action`` takes something away (None: it does not)."""
    if action not in ACTIONS:
        return _UNKNOWN_ACTION
    if action in DESTRUCTIVE_ACTIONS:
        return DESTRUCTIVE_ACTIONS[action]
    if action == "scale":
        for change in _parse_diff(diff):
            if change.name == "replicas":
                moves = [_REPLICAS.fullmatch(d) for d in change.details]
                if moves and all(m and int(m.group(2)) >= int(m.group(1)) for m in moves):
                    return None
        return _SCALE_DOWN
    return None


def risk_of(action: str, restores_only: bool) -> str:
    """``"low|medium|high — why"``: what approving ``action`` can break."""
    if action not in ACTIONS:
        return "high — not an action of the catalogue"
    if not restores_only:
        return "high — sets a value the target never had: read the diff before approving"
    if action == "scale_neighbour":
        return "high — takes capacity from another workload"
    if action == "rollout_restart":
        return "medium — sets no value, but every pod of the deployment is replaced"
    if action == "delete_pod":
        return "medium — one pod is deleted and its controller replaces it"
    if action == "scale":
        return "medium — changes how many replicas run, to a count the deployment ran before"
    if action in _RESTARTS_PODS:
        return "medium — restores earlier values, and every pod of the deployment is replaced"
    return "low — restores an earlier value; no pod is restarted"


def proposal_blocks(
    *,
    proposal_id: int,
    action: str,
    target: str,
    command: str,
    expected_effect: str,
    diff: Sequence[str],
    restores_only: bool,
    risk: str,
    expires_at: datetime,
    requester: str,
) -> list[Block]:
    """A pending proposal: the exact action, target and command, each value's origin and
    diff, the risk, the expiry, and Approve / Reject (value: the proposal id).

    ``diff`` is ``Provenance.diff()``. A ``new:`` line in it counts as a new value
    even when ``restores_only`` says otherwise: the message errs towards caution.
    """
    value = _id_value(proposal_id)
    changes = _parse_diff(diff)
    new = [c for c in changes if c.new]
    sets_new = bool(new) or not restores_only
    destructive = is_destructive(action, diff)
    blocks = [_header(f"🛠️ Proposal #{value}: {action}")]
    blocks.append(
        _section(
            f"*Action:* {code(action, 80)} on {code(target, 300)}\n"
            f"*Command:* {code(command, 1200)}\n"
            f"*Expected effect:* {safe(expected_effect, 1000) or '—'}"
        )
    )
    blocks += [_section(text) for text in _value_sections(changes, new, sets_new)]
    level = risk.split(" ", 1)[0].lower()
    blocks.append(
        _section(
            "*Risk and expiry*",
            fields=[
                f"*Risk*\n{_RISK_MARK.get(level, '⚪')} {safe(risk, 300) or '—'}",
                f"*Expires*\n{date(expires_at)} — nothing runs unless approved by then",
                f"*Requested by*\n{mention(requester)}",
            ],
        )
    )
    confirm = _confirm(value, target, command, new=len(new), sets_new=sets_new, why=destructive)
    blocks.append(
        {
            "type": "actions",
            "block_id": "aoi_proposal",
            "elements": [
                _button(
                    "Approve", action_id=APPROVE, value=value, style="primary", confirm=confirm
                ),
                _button("Reject", action_id=REJECT, value=value, style="danger"),
            ],
        }
    )
    return check_blocks(blocks)


def _value_sections(changes: list[_Change], new: list[_Change], sets_new: bool) -> list[str]:
    """The values, a section each until they fill ``_VALUE_SECTIONS``; the rest counted."""
    if sets_new:
        named = ", ".join(code(c.name, 80) for c in new[:5]) + (" …" if len(new) > 5 else "")
        count = f"{len(new)} NEW VALUE{'S' if len(new) != 1 else ''}" if new else "a NEW VALUE"
        summary = f"⚠️ *Sets {count}* the target never had{': ' + named if named else ''}"
        summary += " — read the diff before approving."
    elif any(c.origin for c in changes):
        summary = "✅ *Restorations only:* every value below is one the target had before."
    else:
        summary = "✅ *Sets no value.*"
    sections: list[str] = []
    current = summary
    shown = 0  # characters of the sections so far: Slack refuses a message whose blocks
    # hold more than about 13k characters in all, however valid each block is
    first = 0  # the first change in ``current``
    for i, change in enumerate(changes):
        chunk = _render_change(change)
        if len(current) + 1 + len(chunk) <= TEXT_CHARS:
            current += "\n" + chunk
            continue
        sections.append(current)
        shown += len(current)
        if len(sections) == _VALUE_SECTIONS or shown + len(chunk) > _VALUES_CHARS:
            return [*sections, _hidden(changes[i:])]
        current, first = chunk, i
    if sections and shown + len(current) > _VALUES_CHARS:
        return [*sections, _hidden(changes[first:])]
    sections.append(current)
    return sections


def _hidden(rest: list[_Change]) -> str:
    new = sum(c.new for c in rest)
    return f"⚠️ _…and {len(rest)} more value(s) not shown here, {new} of them NEW._"


def _render_change(change: _Change) -> str:
    if change.origin is None:
        return f"⚪ {safe(change.name, 500) or '—'}"
    mark = "🆕 *NEW VALUE*" if change.new else "✅ restoration"
    source = safe(change.source, 400)
    head = f"{mark} · {code(change.name, 200)}" + (f" — _{source}_" if source else "")
    lines = [head]
    used = len(head)
    # Room is kept for the line counting what is left out; a detail line is ≤ 620.
    for detail in change.details[:_DETAIL_LINES]:
        line = f"     ↳ {_render_detail(detail)}"
        if used + 1 + len(line) > _CHANGE_CHARS - 40:
            break
        lines.append(line)
        used += 1 + len(line)
    hidden = len(change.details) - (len(lines) - 1)
    if hidden:
        lines.append(f"     ↳ _…{hidden} more diff line(s)_")
    return "\n".join(lines)


def _render_detail(line: str) -> str:
    if line.count(" -> ") == 1:
        before, after = line.split(" -> ")
        return f"{code(before, 300)} → {code(after, 300)}"
    return code(line, 400)


def _confirm(
    value: str, target: str, command: str, *, new: int, sets_new: bool, why: str | None
) -> dict[str, Any] | None:
    """The dialog Approve opens first, when the proposal sets a new value or ``why`` says
    what it takes away; None when it only restores values."""
    parts = []
    if sets_new:
        count = f"*{new} new value(s)*" if new else "*a new value*"
        parts.append(f"This sets {count} that {code(target, 60)} never had.")
    if why:
        parts.append(f"This action {why}.")
    if not parts:
        return None
    lead = " ".join(parts)
    room = CONFIRM_TEXT_CHARS - len(lead) - len(" Run ?")
    text = f"{lead} Run {code(command, room)}?" if room >= 20 else lead
    return {
        "title": _plain(plain(f"Approve proposal #{value}?", CONFIRM_TITLE_CHARS)),
        "text": _mrkdwn(_clip(text, CONFIRM_TEXT_CHARS)),
        "confirm": _plain("Approve and run"),
        "deny": _plain("Cancel"),
        "style": "danger",
    }


def _decision_line(
    state: str, who: str | None, when: datetime | None, result: str | None, verified: bool | None
) -> str:
    by = mention(who) if who else "someone"
    at = f" at {date(when)}" if when else ""
    outcome = safe(result or "", 1500)
    check = "verified ✅" if verified else "not verified ⚠️"
    name = str(state).upper()
    if name == ProposalState.APPROVED:
        return f"✅ Approved by {by}{at} — running…"
    if name == ProposalState.EXECUTING:
        return f"⚙️ Approved by {by}{at} — executing…"
    if name == ProposalState.DONE:
        return f"✅ Approved by {by}{at} — DONE: {outcome or 'ran'} — {check}"
    if name == ProposalState.FAILED:
        return f"❌ Approved by {by}{at} — FAILED: {outcome or 'no detail'} — {check}"
    if name == ProposalState.REJECTED:
        return f"🚫 Rejected by {by}{at}; nothing was changed"
    if name == ProposalState.EXPIRED:
        return f"⌛ Expired unapproved{at}; nothing was changed"
    if name == ProposalState.STALE:
        return f"⌛ Not run: the target changed since it was proposed{at}; nothing was changed"
    return f"State {safe(name, 40)}{at}"


def decided_blocks(
    original: Sequence[Block],
    *,
    state: str,
    who: str | None,
    when: datetime | None,
    result: str | None,
    verified: bool | None,
) -> list[Block]:
    """``original`` without its buttons, and one line saying who decided, when, and how
    it ended (replacing the line an earlier update added)."""
    kept = [
        copy.deepcopy(dict(b))
        for b in original
        if b.get("type") != "actions" and b.get("block_id") != DECISION_BLOCK
    ]
    line = _decision_line(state, who, when, result, verified)
    return check_blocks([*kept[: MESSAGE_BLOCKS - 1], _context([line], block_id=DECISION_BLOCK)])


def expired_blocks(
    original: Sequence[Block], *, state: str, when: datetime | None = None
) -> list[Block]:
    """``original`` without its buttons, marked EXPIRED or STALE: nothing was changed."""
    return decided_blocks(original, state=state, who=None, when=when, result=None, verified=None)


def _command_of(row: Proposal) -> str:
    try:
        return action_from_json(row.action_spec).describe()
    except ValueError:
        return "(the stored action cannot be read; it cannot run)"


def proposal_blocks_from_row(row: Proposal, provenance: Provenance | None = None) -> list[Block]:
    """The pending-proposal message for a stored row (a restarted bot has no event)."""
    if row.id is None:
        raise ValueError("a proposal row without an id has no message")
    values = provenance if provenance is not None else Provenance.from_json(row.provenance)
    restores_only = row.restores_only and values.restores_only
    return proposal_blocks(
        proposal_id=row.id,
        action=row.action,
        target=f"{row.target_kind}/{row.target_namespace}/{row.target_name}",
        command=_command_of(row),
        expected_effect=row.expected_effect,
        diff=values.diff(),
        restores_only=restores_only,
        risk=risk_of(row.action, restores_only),
        expires_at=row.expires_at,
        requester=row.requester,
    )


def blocks_for_row(row: Proposal, provenance: Provenance | None = None) -> list[Block]:
    """The message a proposal should show now, whatever its state."""
    blocks = proposal_blocks_from_row(row, provenance)
    if row.state == ProposalState.PENDING:
        return blocks
    if row.state in (ProposalState.EXPIRED, ProposalState.STALE):
        return expired_blocks(blocks, state=row.state, when=row.decided_at or row.finished_at)
    result = row.result or {}
    message = result.get("message")
    verified = result.get("verified")
    return decided_blocks(
        blocks,
        state=row.state,
        who=row.approver,
        when=row.decided_at,
        result=message if isinstance(message, str) else None,
        verified=verified if isinstance(verified, bool) else None,
    )


# -- Label modal -------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A person's root cause for an incident, validated."""

    component: str
    system_level: str
    fault_type: str
    note: str = ""

    def root_cause(self) -> dict[str, str]:
        return {
            "component": self.component,
            "system_level": self.system_level,
            "fault_type": self.fault_type,
        }


class LabelError(ValueError):
    """A label submission Slack should show back: ``errors`` maps block ids to messages."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))

    def response(self) -> dict[str, Any]:
        """The ``ack`` payload that shows the errors next to their fields."""
        return {"response_action": "errors", "errors": self.errors}


def _options(values: Sequence[str], what: str) -> list[dict[str, Any]]:
    if not 0 < len(values) <= OPTIONS or len(set(values)) != len(values):
        raise ValueError(f"{what}: 1 to {OPTIONS} distinct values, not {list(values)[:5]}…")
    for v in values:
        if not v or len(v) > OPTION_TEXT_CHARS or plain(v, OPTION_TEXT_CHARS) != v:
            raise ValueError(f"{what}: {v!r} cannot be an option")
    return [{"text": _plain(v), "value": v} for v in values]


def _select(
    block_id: str, label: str, values: Sequence[str], initial: str | None
) -> dict[str, Any]:
    options = _options(values, block_id)
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "placeholder": _plain(f"Choose the {label.lower()}"),
        "options": options,
    }
    if initial is not None and initial in values:
        element["initial_option"] = options[list(values).index(initial)]
    return {"type": "input", "block_id": block_id, "label": _plain(label), "element": element}


def label_modal(
    *,
    incident_id: int,
    component_options: Sequence[str],
    system_levels: Sequence[str] = LABEL_SYSTEM_LEVELS,
    fault_types: Sequence[str] = LABEL_FAULT_TYPES,
    initial_system_level: str | None = None,
    initial_fault_type: str | None = None,
) -> dict[str, Any]:
    """A ``views.open`` modal asking for the real root cause of an incident.

    The component is free text, filled with the first of ``component_options``
    (the diagnosed ones) and hinting at all of them; ``private_metadata`` is the
    incident id.
    """
    metadata = _id_value(incident_id)
    suggested = [c for c in component_options if _component_error(c) is None]
    component: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "max_length": COMPONENT_CHARS,
        "placeholder": _plain("the service at fault, e.g. geo"),
    }
    if suggested:
        component["initial_value"] = suggested[0]
    component_block: dict[str, Any] = {
        "type": "input",
        "block_id": "component",
        "label": _plain("Component at fault"),
        "element": component,
    }
    if suggested:
        hint = plain("Diagnosed: " + ", ".join(suggested), LABEL_CHARS)
        component_block["hint"] = _plain(hint)
    blocks = [
        _section(
            f"*Incident #{metadata}:* what was really wrong? Your label grades the diagnosis "
            "and becomes training data."
        ),
        component_block,
        _select("system_level", "System level", system_levels, initial_system_level),
        _select("fault_type", "Fault type", fault_types, initial_fault_type),
        {
            "type": "input",
            "block_id": "note",
            "optional": True,
            "label": _plain("Note"),
            "element": {
                "type": "plain_text_input",
                "action_id": "value",
                "multiline": True,
                "max_length": NOTE_CHARS,
                "placeholder": _plain("what gave it away, what fixed it (optional)"),
            },
        },
    ]
    modal: dict[str, Any] = {
        "type": "modal",
        "callback_id": LABEL_CALLBACK,
        "private_metadata": metadata,
        "title": _plain("Label the root cause"),
        "submit": _plain("Save label"),
        "close": _plain("Cancel"),
        "blocks": check_blocks(blocks, max_blocks=MODAL_BLOCKS),
    }
    try:
        View(**modal).to_dict()
    except SlackObjectFormationError as exc:
        raise InvalidBlocks(f"label modal: {exc}") from exc
    return modal


def _component_error(component: str) -> str | None:
    if not component:
        return "Enter the component at fault (the service's name, e.g. geo)."
    if len(component) > COMPONENT_CHARS:
        return f"At most {COMPONENT_CHARS} characters (this is {len(component)})."
    if not _COMPONENT.fullmatch(component):
        return "Use the service's name: letters, digits and . _ - / : only, no spaces."
    return None


def _state_value(values: Mapping[str, Any], block_id: str) -> Mapping[str, Any] | None:
    block = values.get(block_id)
    state = block.get("value") if isinstance(block, Mapping) else None
    return state if isinstance(state, Mapping) else None


def _text_value(values: Mapping[str, Any], block_id: str) -> str | None:
    state = _state_value(values, block_id)
    if state is None or state.get("type", "plain_text_input") != "plain_text_input":
        return None
    text = state.get("value")
    return text if isinstance(text, str) else "" if text is None else None


def _selected(values: Mapping[str, Any], block_id: str) -> str | None:
    state = _state_value(values, block_id)
    option = state.get("selected_option") if state is not None else None
    chosen = option.get("value") if isinstance(option, Mapping) else None
    return chosen if isinstance(chosen, str) else None


def _clean_note(note: str) -> str:
    """A note as the store keeps it: no control or format characters (newlines stay),
    redacted (people paste logs, and logs hold secrets)."""
    kept = "".join(c for c in note if c in "\n\t" or unicodedata.category(c)[0] != "C")
    return redact(kept.strip())


def parse_label_submission(
    values: Mapping[str, Any],
    *,
    system_levels: Sequence[str] = LABEL_SYSTEM_LEVELS,
    fault_types: Sequence[str] = LABEL_FAULT_TYPES,
) -> Label:
    """The ``Label`` in a ``view_submission``'s ``view.state.values``.

    Raises ``LabelError`` with a message per field (its block id) for a missing or
    over-long component, a select value not offered, an over-long note, or a field
    that is not what the modal sent.
    """
    if not isinstance(values, Mapping):
        raise LabelError({"component": "The form came back empty; open it again."})
    errors: dict[str, str] = {}
    raw = _text_value(values, "component")
    component = (raw or "").strip()
    problem = (
        "The component field is missing; open the form again."
        if raw is None
        else _component_error(component)
    )
    if problem:
        errors["component"] = problem
    choices = {}
    for block_id, allowed, what in (
        ("system_level", system_levels, "system level"),
        ("fault_type", fault_types, "fault type"),
    ):
        chosen = _selected(values, block_id)
        if chosen is None:
            errors[block_id] = f"Choose a {what}."
        elif chosen not in allowed:
            errors[block_id] = f"“{plain(chosen, 40)}” is not a {what} of the list; choose one."
        else:
            choices[block_id] = chosen
    note = _text_value(values, "note") if "note" in values else ""
    if note is None:
        errors["note"] = "The note field is not what the form sent; open it again."
    elif len(note) > NOTE_CHARS:
        errors["note"] = f"At most {NOTE_CHARS} characters (this is {len(note)})."
    if errors:
        raise LabelError(errors)
    return Label(
        component=component,
        system_level=choices["system_level"],
        fault_type=choices["fault_type"],
        note=_clean_note(note or ""),
    )


# -- Help and status ---------------------------------------------------------------------

COMMANDS: Final[tuple[tuple[str, str], ...]] = (
    (
        "@aoi <what is wrong>",
        "start an investigation in a thread, e.g. `@aoi checkout returns 502s`",
    ),
    ("@aoi <question> (in the thread)", "ask a follow-up about the same incident"),
    ("@aoi status", "what the investigation in this thread is doing"),
    (
        "@aoi resolved: <cause>",
        "close the incident with its cause (the requester or an approver)",
    ),
    ("@aoi help", "this message"),
)


def help_text(commands: Sequence[tuple[str, str]] = COMMANDS) -> str:
    """What the bot does and the commands it answers, as mrkdwn."""
    lines = [
        "*AOI* investigates Kubernetes incidents read-only, and changes nothing until "
        "a person approves a proposal.",
        *(f"• `{escape(cmd)}` — {what}" for cmd, what in commands),
        "Each proposal marks every value it sets as a *restoration* (the target had it "
        "before) or a *NEW VALUE*, with the exact diff; it expires if nobody approves it. "
        "The buttons under a diagnosis grade it.",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def status_blocks(
    *,
    incident_id: int,
    state: str,
    steps: int,
    running_s: float,
    pending: Sequence[Proposal] = (),
    question: str = "",
    phase: str | None = None,
) -> list[Block]:
    """The answer to ``@aoi status``: the incident, its state, steps so far, how long it
    has run, and the proposals waiting for a decision."""
    number = _id_value(incident_id)
    head = f"*Incident #{number}* — {safe(state, 40) or '—'}"
    if question.strip():
        head += f"\n_{safe(question, 500)}_"
    blocks = [
        _section(
            head,
            fields=[
                f"*Phase*\n{safe(phase or '', 40) or '—'}",
                f"*Steps so far*\n{max(0, int(steps))}",
                f"*Running for*\n{_duration(running_s)}",
                f"*Pending proposals*\n{len(pending)}",
            ],
        )
    ]
    if pending:
        lines = [
            f"• #{_id_value(p.id or 0)} {code(p.action, 60)} on "
            f"{code(f'{p.target_kind}/{p.target_namespace}/{p.target_name}', 200)}"
            f" — expires {date(p.expires_at)}"
            for p in pending[:_PENDING_SHOWN]
        ]
        more = len(pending) - len(lines)
        if more:
            lines.append(f"_…and {more} more_")
        blocks.append(_section("\n".join(["*Waiting for approval*", *lines])))
    return check_blocks(blocks)
