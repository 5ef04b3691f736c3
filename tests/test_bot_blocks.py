# ruff: noqa: RUF001  (look-alike characters are what these tests are about)
"""The bot's Block Kit: structure, Slack's limits, and what hostile text cannot do.

Text from logs, models and people can carry `<!channel>`, `<@U1>`, disguised
links, backticks, newlines, bidi overrides, zero-width characters and secrets.
Whatever goes in, every block list must parse with slack-sdk's models, stay
inside Slack's limits, hold no unescaped control sequence but the mentions and
dates the bot writes itself, no control or format character, no secret, and
buttons whose value is exactly the id.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block as SlackBlock
from slack_sdk.models.views import View

from agents.events import DiagnosisEvent
from agents.executor import Origin, Provenance
from agents.executor.provenance import ValueChange
from bot import blocks as bk
from bot.text import code, date, escape, mention, one_line, plain, safe
from store.db import session_scope
from store.models import Incident, Proposal, ProposalState

settings.register_profile("bot_blocks", max_examples=120, deadline=None)
settings.load_profile("bot_blocks")

SECRETS = (
    "hunter2",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
)
FRAGMENTS = (
    "<!channel>",
    "<!here|here>",
    "<!subteam^S0SRE>",
    "<@U1>",
    "<@U0ALICE|alice>",
    "<#C0GENERAL>",
    "<http://evil|x>",
    "<https://evil.example/login|docs>",
    "@here",
    "@channel",
    "@everyone",
    "`",
    "```",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\u2028",
    "\ud800",
    "&",
    "&lt;",
    "&amp;lt;!channel&amp;gt;",
    "*bold*",
    "_it_",
    ">quote",
    "e\u0301\u0301\u0301\u0301\u0301\u0301",
    "password=hunter2",
    f"token {SECRETS[1]}",
    "[REDACTED:password]",
)
# The only control sequences the bot writes itself.
DATE = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC>")
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})>")
ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")

hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=24)), max_size=10).map(
    " ".join
)
long_hostile = st.one_of(hostile, hostile.map(lambda t: "\n".join([t] * 300)))
ids = st.integers(min_value=0, max_value=2**63 - 1)
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


# -- Checks ------------------------------------------------------------------------------


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def assert_harmless(
    node: Any, *, users: frozenset[str] = frozenset(), plain_text: bool = False
) -> None:
    """No ping, link or mention but our own, no control/format character, no secret.

    ``plain_text`` strings (and those of plain_text objects) are not parsed by Slack:
    a raw ``&`` is fine there, entities are checked in mrkdwn only.
    """
    json.dumps(node, ensure_ascii=False).encode()  # serialisable, and valid UTF-8
    unparsed = {t["text"] for t in _text_objects(node) if t["type"] == "plain_text"}
    for text in strings(node):
        rest = DATE.sub("", text)
        for found in MENTION.findall(rest):
            assert found in users, f"a mention nobody asked for: {found!r} in {text!r}"
        rest = MENTION.sub("", rest)
        assert "<" not in rest, text
        assert ">" not in rest, text
        if not plain_text and text not in unparsed:
            assert not ENTITY.search(rest), f"a broken or raw entity in {text!r}"
        assert not re.search(r"(?<!＠)@(channel|here|everyone)\b", rest, re.I), text
        bad = [c for c in text if c != "\n" and unicodedata.category(c)[0] == "C"]
        assert not bad, f"{bad!r} in {text!r}"
        for secret in SECRETS:
            assert secret not in text


def assert_slack_valid(blocks: list[dict[str, Any]], *, max_blocks: int = 50) -> None:
    """Slack's limits, checked here independently of the builders, and slack-sdk's models."""
    assert 0 < len(blocks) <= max_blocks
    for block in blocks:
        parsed = SlackBlock.parse(block)
        assert parsed is not None, block
        parsed.to_dict()  # runs slack-sdk's validators
        kind = block["type"]
        if kind == "header":
            assert len(block["text"]["text"]) <= 150
        if kind == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(0 < len(f["text"]) <= 2000 for f in block.get("fields", []))
        if kind == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(0 < len(e["text"]) <= 3000 for e in block["elements"])
        if kind == "actions":
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= 75
                assert len(button["value"]) <= 2000
                confirm = button.get("confirm")
                if confirm:
                    assert len(confirm["title"]["text"]) <= 100
                    assert len(confirm["text"]["text"]) <= 300
                    assert len(confirm["confirm"]["text"]) <= 30
                    assert len(confirm["deny"]["text"]) <= 30
    for node in _text_objects(blocks):
        assert node["text"].strip(), "Slack refuses an empty text object"
        if node["type"] == "mrkdwn":
            assert node.get("verbatim") is True


def _text_objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text"):
            yield node
        for value in node.values():
            yield from _text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _text_objects(item)


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(strings(blocks))


def diagnosis(**changes: Any) -> DiagnosisEvent:
    fields: dict[str, Any] = {
        "incident_id": 7,
        "detected": True,
        "components": ["geo"],
        "namespace": "hotel",
        "system_level": "Application",
        "fault_type": "Misconfiguration",
        "confidence": 72,
        "summary": "geo crash-loops since image geo:buggy was rolled out",
        "source": "model+analyzers",
    }
    return DiagnosisEvent(**(fields | changes))


def proposal(**changes: Any) -> list[dict[str, Any]]:
    fields: dict[str, Any] = {
        "proposal_id": 12,
        "action": "rollback",
        "target": "Deployment/hotel/geo",
        "command": "kubectl rollout undo deploy/geo -n hotel",
        "expected_effect": "deployment hotel/geo runs the previous revision's pod template again",
        "diff": [
            "restoration: containers[geo].image (ReplicaSet geo-7f9 (revision 2))",
            "  geo:v1 -> geo:buggy",
        ],
        "restores_only": True,
        "risk": bk.risk_of("rollback", True),
        "expires_at": WHEN,
        "requester": "U0BOB",
    }
    return bk.proposal_blocks(**(fields | changes))


def approve_button(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return next(b for b in buttons(blocks) if b["action_id"] == "aoi_approve")


# -- bot.text ----------------------------------------------------------------------------


def test_escape_defuses_control_sequences_and_broadcasts() -> None:
    assert escape("<!channel> & <@U1> <http://evil|x> @here") == (
        "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://evil|x&gt; ＠here"
    )
    assert escape("already &lt; escaped") == "already &amp;lt; escaped"


def test_one_line_flattens_strips_and_truncates() -> None:
    assert one_line("a\n\n b\t\u202ec\u200bd\x00", 20) == "a b cd"
    assert one_line("x \u200b y", 20) == "x y"
    assert one_line("abcdefgh", 5) == "abcd…"
    assert one_line("", 5) == ""
    assert one_line("e" + "\u0301" * 50, 80) == "e" + "\u0301" * 3
    with pytest.raises(ValueError, match="at least 1"):
        one_line("x", 0)


def test_safe_redacts_escapes_and_never_cuts_an_entity() -> None:
    assert safe("DB_PASSWORD=hunter2 <@U1>", 80) == "DB_PASSWORD=[REDACTED:password] &lt;@U1&gt;"
    for limit in range(1, 30):
        out = safe("<" * 40, limit)
        assert len(out) <= limit
        assert not ENTITY.search(out)
        assert re.fullmatch(r"(&lt;)*…?", out)


def test_secrets_hidden_by_format_characters_or_cut_by_truncation_are_redacted() -> None:
    assert "hunter2" not in safe("pass\u200bword=hunter2", 100)
    assert "hunt" not in safe("password=hunter2" + " pad" * 10, 15)
    assert "hunt" not in safe(" " * 30_000 + "password=hunter2", 30)
    assert SECRETS[1] not in safe(f"x\n{SECRETS[1]}\n", 200)


def test_a_value_the_redactor_stopped_inside_goes_whole() -> None:
    # agents.redact redacts a keyed value whole, however long.
    assert safe("password=" + "hunter2" * 300 + " next", 200) == (
        "password=[REDACTED:password] next"
    )
    assert "hunter2" not in safe("password=hunter2" * 300, 3000)
    assert safe("mongodb://admin:s3cret@mongodb-geo:27017", 80) == (
        "mongodb://admin:[REDACTED:url_password]@mongodb-geo:27017"
    )


def test_code_cannot_be_broken_out_of() -> None:
    out = code("a`b``c\n<!here>", 40)
    assert out == "`aˋbˋˋc &lt;!here&gt;`"
    assert code("", 10) == "` `"
    assert len(code("x" * 1000, 50)) == 50
    with pytest.raises(ValueError, match="at least 3"):
        code("x", 2)


def test_plain_uses_look_alikes_and_mentions_only_user_ids() -> None:
    assert plain("<!channel> @here\nx", 40) == "‹!channel› ＠here x"
    assert mention("U0ALICE") == "<@U0ALICE>"
    assert mention("console:bob") == "console:bob"
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert date(WHEN) == "<!date^1714566600^{date_short_pretty} {time}|2024-05-01 12:30 UTC>"
    assert date(WHEN.replace(tzinfo=None)) == date(WHEN)


@given(hostile, st.integers(min_value=1, max_value=400))
def test_safe_holds_for_any_text(text: str, limit: int) -> None:
    out = safe(text, limit)
    assert len(out) <= limit
    assert "\n" not in out
    assert "`" not in out
    assert_harmless(out)


@given(hostile, st.integers(min_value=3, max_value=400))
def test_code_holds_for_any_text(text: str, limit: int) -> None:
    out = code(text, limit)
    assert len(out) <= limit
    assert out.startswith("`")
    assert out.endswith("`")
    assert out.count("`") == 2
    assert_harmless(out)


@given(hostile, st.integers(min_value=1, max_value=200))
def test_plain_holds_for_any_text(text: str, limit: int) -> None:
    out = plain(text, limit)
    assert len(out) <= limit
    assert_harmless(out, plain_text=True)


@given(hostile)
def test_mention_only_mentions_a_user_id(who: str) -> None:
    out = mention(who)
    users = frozenset({who}) if re.fullmatch(r"[UW][A-Z0-9]{2,20}", who) else frozenset()
    assert_harmless(out, users=users)


# -- Diagnosis ---------------------------------------------------------------------------


def test_diagnosis_structure() -> None:
    blocks = bk.diagnosis_blocks(
        diagnosis(),
        evidence=["pod geo-1: CrashLoopBackOff (restarts 12)", "image geo:buggy pulled"],
        ruled_out=["network: no loss between frontend and geo", "mongodb-geo is healthy"],
        incident_id=42,
    )
    assert_slack_valid(blocks)
    assert [b["type"] for b in blocks] == [
        "header",
        "section",
        "section",
        "context",
        "section",
        "actions",
    ]
    assert blocks[0]["text"]["text"] == "🔎 Diagnosis: geo"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Component(s)*\n`geo`",
        "*Namespace*\n`hotel`",
        "*System level*\nApplication",
        "*Fault type*\nMisconfiguration",
        "*Confidence*\n▰▰▰▰▰▰▰▱▱▱ 72%",
        "*Source*\nmodel, confirmed by the analyzers",
    ]
    assert blocks[2]["text"]["text"].splitlines() == [
        "*Evidence*",
        "• pod geo-1: CrashLoopBackOff (restarts 12)",
        "• image geo:buggy pulled",
    ]
    assert "*Ruled out:* network: no loss" in blocks[3]["elements"][0]["text"]
    assert [(b["action_id"], b["value"]) for b in buttons(blocks)] == [
        ("aoi_feedback_correct", "42"),
        ("aoi_feedback_wrong", "42"),
    ]
    assert buttons(blocks)[1]["text"]["text"] == "✏️ Wrong — label it"


def test_no_fault_found_without_evidence_or_ruled_out() -> None:
    event = diagnosis(detected=False, components=[], namespace=None, system_level=None)
    blocks = bk.diagnosis_blocks(event, evidence=[], ruled_out=[], incident_id=1)
    assert_slack_valid(blocks)
    assert blocks[0]["text"]["text"] == "🟢 No fault found"
    assert [b["type"] for b in blocks] == ["header", "section", "section", "actions"]
    assert "*Namespace*\n—" in [f["text"] for f in blocks[1]["fields"]]


def test_evidence_is_at_most_five_lines_each_one_line() -> None:
    lines = [f"line {i}\nsecond <!here>" for i in range(8)]
    blocks = bk.diagnosis_blocks(diagnosis(), evidence=lines, ruled_out=[], incident_id=1)
    evidence = blocks[2]["text"]["text"].splitlines()
    assert evidence[1:6] == [f"• line {i} second &lt;!here&gt;" for i in range(5)]
    assert evidence[6] == "_…and 3 more_"
    assert len(evidence) == 7


@pytest.mark.parametrize(
    ("confidence", "bar"), [(-5, "▱" * 10 + " 0%"), (1000, "▰" * 10 + " 100%")]
)
def test_confidence_is_clamped(confidence: int, bar: str) -> None:
    blocks = bk.diagnosis_blocks(
        diagnosis(confidence=confidence), evidence=[], ruled_out=[], incident_id=1
    )
    assert f"*Confidence*\n{bar}" in [f["text"] for f in blocks[1]["fields"]]


def test_diagnosis_at_every_limit() -> None:
    huge = "<!channel> word " * 20_000
    event = diagnosis(
        components=[f"svc-{i}-" + "x" * 300 for i in range(500)],
        namespace=huge,
        system_level=huge,
        fault_type=huge,
        summary=huge,
    )
    blocks = bk.diagnosis_blocks(
        event, evidence=[huge] * 30, ruled_out=[huge] * 30, incident_id=2**63 - 1
    )
    assert_slack_valid(blocks)
    assert_harmless(blocks)
    assert {b["value"] for b in buttons(blocks)} == {str(2**63 - 1)}


@pytest.mark.parametrize("bad", [True, -1, 2**63, "12", 1.0])
def test_ids_must_be_plain_ints_in_range(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        bk.diagnosis_blocks(diagnosis(), evidence=[], ruled_out=[], incident_id=bad)
    with pytest.raises((TypeError, ValueError)):
        proposal(proposal_id=bad)


@given(
    components=st.lists(long_hostile, max_size=12),
    namespace=st.one_of(st.none(), hostile),
    level=st.one_of(st.none(), hostile),
    fault=st.one_of(st.none(), hostile),
    summary=long_hostile,
    evidence=st.lists(long_hostile, max_size=8),
    ruled_out=st.lists(hostile, max_size=14),
    confidence=st.integers(min_value=-(10**6), max_value=10**6),
    detected=st.booleans(),
    incident_id=ids,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_diagnosis_blocks_hold_for_any_text(
    components: list[str],
    namespace: str | None,
    level: str | None,
    fault: str | None,
    summary: str,
    evidence: list[str],
    ruled_out: list[str],
    confidence: int,
    detected: bool,
    incident_id: int,
) -> None:
    event = diagnosis(
        detected=detected,
        components=components,
        namespace=namespace,
        system_level=level,
        fault_type=fault,
        summary=summary,
        confidence=confidence,
    )
    blocks = bk.diagnosis_blocks(
        event, evidence=evidence, ruled_out=ruled_out, incident_id=incident_id
    )
    assert_slack_valid(blocks)
    assert_harmless(blocks)
    assert [b["value"] for b in buttons(blocks)] == [str(incident_id)] * 2


# -- Proposals ---------------------------------------------------------------------------


def test_restoration_proposal_structure() -> None:
    blocks = proposal()
    assert_slack_valid(blocks)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "actions"]
    assert blocks[0]["text"]["text"] == "🛠️ Proposal #12: rollback"
    assert blocks[1]["text"]["text"].splitlines() == [
        "*Action:* `rollback` on `Deployment/hotel/geo`",
        "*Command:* `kubectl rollout undo deploy/geo -n hotel`",
        "*Expected effect:* deployment hotel/geo runs the previous revision's pod template again",
    ]
    assert blocks[2]["text"]["text"].splitlines() == [
        "✅ *Restorations only:* every value below is one the target had before.",
        "✅ restoration · `containers[geo].image` — _ReplicaSet geo-7f9 (revision 2)_",
        "     ↳ `geo:v1` → `geo:buggy`",
    ]
    fields = [f["text"] for f in blocks[3]["fields"]]
    assert fields[0].startswith("*Risk*\n🟡 medium — restores earlier values")
    assert fields[1].startswith("*Expires*\n<!date^1714566600^")
    assert fields[2] == "*Requested by*\n<@U0BOB>"
    approve, reject = buttons(blocks)
    assert (approve["action_id"], approve["style"], approve["value"]) == (
        "aoi_approve",
        "primary",
        "12",
    )
    assert (reject["action_id"], reject["style"], reject["value"]) == ("aoi_reject", "danger", "12")
    assert "confirm" not in approve
    assert "confirm" not in reject


def test_new_value_is_marked_and_approve_asks_first() -> None:
    blocks = proposal(
        action="set_image",
        command="kubectl set image deploy/geo geo=evil.example/geo:latest -n hotel",
        diff=[
            "new: containers[geo].image (new value: the target never had it as far as its "
            "history shows)",
            "  geo:v1 -> evil.example/geo:latest",
        ],
        restores_only=False,
        risk=bk.risk_of("set_image", False),
    )
    assert_slack_valid(blocks)
    values = blocks[2]["text"]["text"]
    assert values.startswith(
        "⚠️ *Sets 1 NEW VALUE* the target never had: `containers[geo].image` — read the diff"
    )
    assert "🆕 *NEW VALUE* · `containers[geo].image`" in values
    assert "`geo:v1` → `evil.example/geo:latest`" in values
    assert "🔴 high — sets a value the target never had" in texts(blocks)
    confirm = approve_button(blocks)["confirm"]
    assert confirm["title"]["text"] == "Approve proposal #12?"
    assert "*1 new value(s)*" in confirm["text"]["text"]
    assert "evil.example/geo:latest" in confirm["text"]["text"]
    assert confirm["style"] == "danger"
    assert "confirm" not in buttons(blocks)[1]


def test_a_new_line_in_the_diff_wins_over_restores_only() -> None:
    blocks = proposal(diff=["new: data[x] (new value)", "  a -> b"], restores_only=True)
    assert "confirm" in approve_button(blocks)
    assert "NEW VALUE" in blocks[2]["text"]["text"]


@pytest.mark.parametrize(
    ("action", "diff", "destructive"),
    [
        ("delete_pod", ["sets no value (a restart or a pod replacement)"], True),
        ("rollout_restart", ["sets no value (a restart or a pod replacement)"], True),
        ("scale_neighbour", ["restoration: replicas (ReplicaSet b-1 ran 0)", "  3 -> 0"], True),
        ("scale", ["restoration: replicas (ReplicaSet geo-1 ran 1)", "  3 -> 1"], True),
        ("scale", ["restoration: replicas (ReplicaSet geo-1 ran 3)", "  1 -> 3"], False),
        ("scale", ["restoration: replicas (ReplicaSet geo-1 ran 3)", "  (unset) -> 3"], True),
        ("rollback", ["restoration: containers[g].image (rs)", "  a -> b"], False),
        (
            "patch_service_port",
            ["restoration: ports[80].targetPort (pod)", "  9999 -> 8080"],
            False,
        ),
        ("drain_node", [], True),
    ],
)
def test_destructive_actions_ask_first(action: str, diff: list[str], destructive: bool) -> None:
    blocks = proposal(action=action, diff=diff, risk=bk.risk_of(action, True))
    assert_slack_valid(blocks)
    confirm = approve_button(blocks).get("confirm")
    assert (confirm is not None) is destructive
    if confirm:
        assert "This action " in confirm["text"]["text"]


def test_destructive_actions_come_from_the_catalogue() -> None:
    from agents.executor import ACTIONS

    assert set(bk.DESTRUCTIVE_ACTIONS) <= set(ACTIONS)
    for action in ACTIONS:
        level = bk.risk_of(action, True).split(" ")[0]
        assert level in ("low", "medium", "high")
        assert bk.risk_of(action, False).startswith("high — ")
    assert bk.risk_of("patch_configmap", True).startswith("low — ")
    assert bk.risk_of("scale_neighbour", True).startswith("high — ")
    assert bk.risk_of("cordon", True).startswith("high — ")


def test_sets_no_value() -> None:
    blocks = proposal(
        action="delete_pod", diff=Provenance().diff(), risk=bk.risk_of("delete_pod", True)
    )
    assert blocks[2]["text"]["text"].splitlines() == [
        "✅ *Sets no value.*",
        "⚪ sets no value (a restart or a pod replacement)",
    ]


def test_proposal_at_every_limit_still_counts_hidden_new_values() -> None:
    huge = "<@U1> `x` " * 10_000
    diff = []
    for i in range(400):
        origin = "new" if i % 2 else "restoration"
        diff += [f"{origin}: data[k{i}{huge}] ({huge})", *[f"  {huge} -> {huge}"] * 20]
    blocks = proposal(
        proposal_id=2**63 - 1,
        action="patch_configmap" + huge,
        target=huge,
        command=huge,
        expected_effect=huge,
        diff=diff,
        restores_only=False,
        risk="high " + huge,
        requester=huge,
    )
    assert_slack_valid(blocks)
    assert_harmless(blocks)
    assert len(blocks) <= 15
    # Slack refuses a message whose blocks hold more than about 13k characters in all.
    assert len(texts(blocks)) <= 12_000
    assert blocks[2]["text"]["text"].startswith("⚠️ *Sets 200 NEW VALUES*")
    hidden = re.search(
        r"and (\d+) more value\(s\) not shown here, (\d+) of them NEW", texts(blocks)
    )
    assert hidden is not None
    shown = texts(blocks).count("🆕 *NEW VALUE*")
    assert shown + int(hidden.group(2)) == 200
    assert {b["value"] for b in buttons(blocks)} == {str(2**63 - 1)}
    assert len(approve_button(blocks)["confirm"]["text"]["text"]) <= 300
    for chunk in texts(blocks).split("🆕 *NEW VALUE*")[1:]:
        value = chunk.split("✅ restoration")[0]
        shown_lines = value.count("↳ `")
        more = re.search(r"↳ _…(\d+) more diff line\(s\)_", value)
        assert more is not None
        assert shown_lines + int(more.group(1)) == 20


def test_a_long_unified_diff_is_cut_per_value() -> None:
    diff = ["new: data[app.yaml] (new value)", *[f"  +line {i}" for i in range(300)]]
    blocks = proposal(diff=diff, restores_only=False)
    values = blocks[2]["text"]["text"]
    assert values.count("↳ `+line") == 8
    assert "↳ _…292 more diff line(s)_" in values


diff_lines = st.one_of(
    st.builds(lambda f, s: f"restoration: {f} ({s})", hostile, hostile),
    st.builds(lambda f, s: f"new: {f} ({s})", hostile, hostile),
    st.builds(lambda a, b: f"  {a} -> {b}", long_hostile, hostile),
    hostile.map(lambda t: "  " + t),
    hostile,
)


@given(
    proposal_id=ids,
    action=st.one_of(st.sampled_from(["rollback", "delete_pod", "scale", "set_env"]), hostile),
    target=hostile,
    command=long_hostile,
    effect=long_hostile,
    diff=st.lists(diff_lines, max_size=30),
    restores_only=st.booleans(),
    risk=hostile,
    requester=hostile,
    expires=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_proposal_blocks_hold_for_any_text(
    proposal_id: int,
    action: str,
    target: str,
    command: str,
    effect: str,
    diff: list[str],
    restores_only: bool,
    risk: str,
    requester: str,
    expires: datetime,
) -> None:
    blocks = bk.proposal_blocks(
        proposal_id=proposal_id,
        action=action,
        target=target,
        command=command,
        expected_effect=effect,
        diff=diff,
        restores_only=restores_only,
        risk=risk,
        expires_at=expires,
        requester=requester,
    )
    assert_slack_valid(blocks)
    users = frozenset({requester})
    assert_harmless(blocks, users=users)
    assert [b["value"] for b in buttons(blocks)] == [str(proposal_id)] * 2
    if not restores_only:
        assert "confirm" in approve_button(blocks)
    decided = bk.decided_blocks(
        blocks, state="DONE", who=requester, when=expires, result=command, verified=True
    )
    assert_slack_valid(decided)
    assert_harmless(decided, users=users)
    assert not buttons(decided)


# -- Decisions ---------------------------------------------------------------------------


def test_decided_removes_the_buttons_and_says_what_happened() -> None:
    original = proposal()
    snapshot = json.dumps(original)
    approved = bk.decided_blocks(
        original, state="APPROVED", who="U0ALICE", when=WHEN, result=None, verified=None
    )
    assert json.dumps(original) == snapshot
    assert not buttons(approved)
    assert approved[:-1] == original[:-1]
    done = bk.decided_blocks(
        approved,
        state=ProposalState.DONE,
        who="U0ALICE",
        when=WHEN,
        result="deployment hotel/geo rolled out <!channel>",
        verified=True,
    )
    assert_slack_valid(done)
    decisions = [b for b in done if b.get("block_id") == "aoi_decision"]
    assert len(decisions) == 1
    line = decisions[0]["elements"][0]["text"]
    assert line == (
        f"✅ Approved by <@U0ALICE> at {date(WHEN)} — DONE: deployment hotel/geo rolled out "
        "&lt;!channel&gt; — verified ✅"
    )


@pytest.mark.parametrize(
    ("state", "verified", "expected"),
    [
        ("FAILED", False, "❌ Approved by <@U0ALICE> at "),
        ("REJECTED", None, "🚫 Rejected by <@U0ALICE> at "),
        ("EXECUTING", None, "⚙️ Approved by <@U0ALICE> at "),
        ("DONE", False, "— not verified ⚠️"),
        ("DONE", None, "— not verified ⚠️"),
    ],
)
def test_decision_lines(state: str, verified: bool | None, expected: str) -> None:
    blocks = bk.decided_blocks(
        proposal(), state=state, who="U0ALICE", when=WHEN, result="why", verified=verified
    )
    assert expected in blocks[-1]["elements"][0]["text"]


def test_expired_and_stale() -> None:
    expired = bk.expired_blocks(proposal(), state="EXPIRED", when=WHEN)
    assert expired[-1]["elements"][0]["text"] == (
        f"⌛ Expired unapproved at {date(WHEN)}; nothing was changed"
    )
    stale = bk.expired_blocks(proposal(), state=ProposalState.STALE)
    assert "the target changed" in stale[-1]["elements"][0]["text"]
    assert "nothing was changed" in stale[-1]["elements"][0]["text"]
    assert not buttons(expired)
    assert not buttons(stale)


def test_decided_keeps_within_fifty_blocks() -> None:
    original = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 50
    blocks = bk.decided_blocks(
        original, state="DONE", who="U1X", when=WHEN, result="", verified=True
    )
    assert len(blocks) == 50
    assert blocks[-1]["block_id"] == "aoi_decision"


def _stored_proposal(engine: sa.Engine, provenance: Provenance, **changes: Any) -> Proposal:
    with session_scope(engine) as session:
        incident = Incident(question="geo is down")
        session.add(incident)
        session.flush()
        assert incident.id is not None
        row = Proposal(
            incident_id=incident.id,
            action="set_image",
            action_spec={
                "action": "set_image",
                "namespace": "hotel",
                "name": "geo",
                "container": "geo",
                "image": "geo:v1",
            },
            target_kind="Deployment",
            target_namespace="hotel",
            target_name="geo",
            provenance=provenance.to_json(),
            restores_only=provenance.restores_only,
            expected_effect="deployment hotel/geo runs image geo:v1",
            requester="U0BOB",
            expires_at=WHEN,
            **changes,
        )
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def test_blocks_rebuild_from_a_stored_row(migrated_engine: sa.Engine) -> None:
    provenance = Provenance(
        changes=(
            ValueChange(
                field="containers[geo].image",
                origin=Origin.RESTORATION,
                source="ReplicaSet geo-1 (revision 1)",
                diff=("geo:buggy -> geo:v1",),
            ),
        )
    )
    row = _stored_proposal(migrated_engine, provenance)
    with session_scope(migrated_engine) as session:
        loaded = session.get(Proposal, row.id)
        assert loaded is not None
    blocks = bk.proposal_blocks_from_row(loaded)
    assert_slack_valid(blocks)
    assert blocks == bk.proposal_blocks(
        proposal_id=row.id or 0,
        action="set_image",
        target="Deployment/hotel/geo",
        command="kubectl set image deploy/geo geo=geo:v1 -n hotel",
        expected_effect="deployment hotel/geo runs image geo:v1",
        diff=provenance.diff(),
        restores_only=True,
        risk=bk.risk_of("set_image", True),
        expires_at=WHEN,
        requester="U0BOB",
    )
    assert bk.blocks_for_row(loaded) == blocks


def test_blocks_for_row_follow_the_state() -> None:
    base: dict[str, Any] = {
        "id": 5,
        "incident_id": 1,
        "action": "rollout_restart",
        "action_spec": {"action": "rollout_restart", "namespace": "hotel", "name": "geo"},
        "target_kind": "Deployment",
        "target_namespace": "hotel",
        "target_name": "geo",
        "requester": "U0BOB",
        "expires_at": WHEN,
    }
    done = Proposal(
        **base,
        state=ProposalState.DONE,
        approver="U0ALICE",
        decided_at=WHEN,
        result={"message": "rolled out", "verified": True},
    )
    line = bk.blocks_for_row(done)[-1]["elements"][0]["text"]
    assert line.startswith("✅ Approved by <@U0ALICE>")
    assert "verified ✅" in line
    expired = Proposal(**base, state=ProposalState.EXPIRED)
    assert "Expired unapproved" in bk.blocks_for_row(expired)[-1]["elements"][0]["text"]
    broken = Proposal(**(base | {"action_spec": {"action": "rm -rf"}}))
    assert "cannot be read" in texts(bk.blocks_for_row(broken))
    assert "confirm" in approve_button(bk.blocks_for_row(broken))


# -- Label modal -------------------------------------------------------------------------


def submission(
    component: Any = "geo",
    level: Any = "Application",
    fault: Any = "Misconfiguration",
    note: Any = "",
) -> dict[str, Any]:
    def select(value: Any) -> dict[str, Any]:
        option = (
            None if value is None else {"text": {"type": "plain_text", "text": "x"}, "value": value}
        )
        return {"value": {"type": "static_select", "selected_option": option}}

    return {
        "component": {"value": {"type": "plain_text_input", "value": component}},
        "system_level": select(level),
        "fault_type": select(fault),
        "note": {"value": {"type": "plain_text_input", "value": note}},
    }


def test_label_modal_structure() -> None:
    modal = bk.label_modal(incident_id=9, component_options=["geo", "mongodb-geo", "bad name!"])
    View(**modal).to_dict()
    assert (modal["type"], modal["callback_id"], modal["private_metadata"]) == (
        "modal",
        "aoi_label",
        "9",
    )
    blocks = modal["blocks"]
    assert_slack_valid(blocks, max_blocks=100)
    by_id = {b.get("block_id"): b for b in blocks}
    component = by_id["component"]
    assert component["element"]["type"] == "plain_text_input"
    assert component["element"]["initial_value"] == "geo"
    assert component["hint"]["text"] == "Diagnosed: geo, mongodb-geo"
    levels = [o["value"] for o in by_id["system_level"]["element"]["options"]]
    faults = [o["value"] for o in by_id["fault_type"]["element"]["options"]]
    assert levels == ["Hardware", "Operating System", "Virtualization", "Application"]
    assert "Unknown" not in faults
    assert "Network/Storage Issue" in faults
    assert by_id["note"]["optional"] is True


def test_label_modal_initial_choices_and_bad_vocabularies() -> None:
    modal = bk.label_modal(
        incident_id=1,
        component_options=[],
        initial_system_level="Virtualization",
        initial_fault_type="Nope",
    )
    by_id = {b.get("block_id"): b for b in modal["blocks"]}
    assert by_id["system_level"]["element"]["initial_option"]["value"] == "Virtualization"
    assert "initial_option" not in by_id["fault_type"]["element"]
    assert "initial_value" not in by_id["component"]["element"]
    for levels in ([], ["a", "a"], ["x" * 76], [f"l{i}" for i in range(101)], ["<!here>"]):
        with pytest.raises(ValueError, match="system_level"):
            bk.label_modal(incident_id=1, component_options=[], system_levels=levels)


def test_a_valid_label() -> None:
    label = bk.parse_label_submission(
        submission(component="  mongodb-geo ", note="admin user dropped\npassword=hunter2\u202e")
    )
    assert label == bk.Label(
        component="mongodb-geo",
        system_level="Application",
        fault_type="Misconfiguration",
        note="admin user dropped\npassword=[REDACTED:password]",
    )
    assert label.root_cause() == {
        "component": "mongodb-geo",
        "system_level": "Application",
        "fault_type": "Misconfiguration",
    }
    missing_note = submission()
    del missing_note["note"]
    assert bk.parse_label_submission(missing_note).note == ""


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (submission(component=""), {"component"}),
        (submission(component="   "), {"component"}),
        (submission(component=None), {"component"}),
        (submission(component="x" * 81), {"component"}),
        (submission(component="geo <!channel>"), {"component"}),
        (submission(component=5), {"component"}),
        (submission(level=None), {"system_level"}),
        (submission(level="Unknown"), {"system_level"}),
        (submission(fault="DROP TABLE"), {"fault_type"}),
        (submission(fault=["Code Defect"]), {"fault_type"}),
        (submission(note="x" * 2001), {"note"}),
        (submission(note=7), {"note"}),
        (
            submission(component="", level="?", fault="?"),
            {"component", "system_level", "fault_type"},
        ),
        ({}, {"component", "system_level", "fault_type"}),
        (
            {"component": "geo", "system_level": [], "fault_type": {"value": 1}},
            {"component", "system_level", "fault_type"},
        ),
    ],
)
def test_invalid_labels_say_what_is_wrong_per_field(values: Any, errors: set[str]) -> None:
    with pytest.raises(bk.LabelError) as caught:
        bk.parse_label_submission(values)
    assert set(caught.value.errors) == errors
    assert all(caught.value.errors.values())
    assert caught.value.response() == {"response_action": "errors", "errors": caught.value.errors}
    assert isinstance(caught.value, ValueError)


def test_a_text_field_posing_as_a_select_is_refused() -> None:
    values = submission()
    values["system_level"] = {"value": {"type": "plain_text_input", "value": "Application"}}
    with pytest.raises(bk.LabelError, match="system_level"):
        bk.parse_label_submission(values)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), hostile),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["value", "type", "selected_option", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(["component", "system_level", "fault_type", "note", "other"]),
        json_values,
    ),
    hostile,
    hostile,
)
def test_any_submission_is_a_label_or_field_errors(
    values: dict[str, Any], component: str, note: str
) -> None:
    for candidate in (values, submission(component=component, note=note)):
        outcome = _parse(candidate)
        if isinstance(outcome, bk.LabelError):
            assert set(outcome.errors) <= {"component", "system_level", "fault_type", "note"}
            assert all(0 < len(m) <= 150 for m in outcome.errors.values())
            assert_harmless(list(outcome.errors.values()), plain_text=True)
            continue
        assert outcome.system_level in bk.LABEL_SYSTEM_LEVELS
        assert outcome.fault_type in bk.LABEL_FAULT_TYPES
        assert 0 < len(outcome.component) <= 80
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]*", outcome.component)
        assert len(outcome.note) <= 2000
        assert all(c in "\n\t" or unicodedata.category(c)[0] != "C" for c in outcome.note)
        assert "hunter2" not in outcome.note


def _parse(values: Any) -> bk.Label | bk.LabelError:
    """A submission's label, or the error it raised (any other exception fails the test)."""
    try:
        return bk.parse_label_submission(values)
    except bk.LabelError as exc:
        return exc


@given(st.lists(hostile, max_size=20), ids)
def test_label_modal_holds_for_any_component_options(options: list[str], incident_id: int) -> None:
    modal = bk.label_modal(incident_id=incident_id, component_options=options)
    View(**modal).to_dict()
    assert modal["private_metadata"] == str(incident_id)
    assert_slack_valid(modal["blocks"], max_blocks=100)
    assert_harmless(modal)


# -- Help and status ---------------------------------------------------------------------


def test_help_text() -> None:
    text = bk.help_text()
    assert "`@aoi status`" in text
    assert "`@aoi &lt;what is wrong&gt;`" in text
    assert "NEW VALUE" in text
    assert_harmless(text)
    assert len(text) <= 3000


def test_status_blocks() -> None:
    pending = [
        Proposal(
            id=i,
            incident_id=3,
            action="rollback",
            target_kind="Deployment",
            target_namespace="hotel",
            target_name="geo",
            expires_at=WHEN + timedelta(minutes=i),
        )
        for i in range(1, 14)
    ]
    blocks = bk.status_blocks(
        incident_id=3,
        state="INVESTIGATING",
        steps=4,
        running_s=252.4,
        pending=pending,
        question="checkout <!here> returns 502s",
        phase="diagnosis",
    )
    assert_slack_valid(blocks)
    assert_harmless(blocks)
    head = blocks[0]["text"]["text"]
    assert head == "*Incident #3* — INVESTIGATING\n_checkout &lt;!here&gt; returns 502s_"
    fields = [f["text"] for f in blocks[0]["fields"]]
    assert fields == [
        "*Phase*\ndiagnosis",
        "*Steps so far*\n4",
        "*Running for*\n4m 12s",
        "*Pending proposals*\n13",
    ]
    lines = blocks[1]["text"]["text"].splitlines()
    assert lines[1].startswith("• #1 `rollback` on `Deployment/hotel/geo` — expires <!date^")
    assert lines[-1] == "_…and 3 more_"
    idle = bk.status_blocks(incident_id=3, state="DIAGNOSED", steps=9, running_s=7300)
    assert len(idle) == 1
    assert "*Running for*\n2h 01m" in texts(idle)


def test_fallback_text() -> None:
    assert bk.fallback_text(proposal()) == "🛠️ Proposal #12: rollback"
    status = bk.status_blocks(incident_id=3, state="OPEN", steps=0, running_s=0)
    assert bk.fallback_text(status) == "*Incident #3* — OPEN"


def test_check_blocks_refuses_what_slack_would() -> None:
    ok = {"type": "section", "text": {"type": "mrkdwn", "text": "x", "verbatim": True}}
    bad: list[list[dict[str, Any]]] = [
        [],
        [ok] * 51,
        [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
        [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
        [{"type": "section", "text": {"type": "mrkdwn", "text": "a\u202eb"}}],
        [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
        [{"type": "header", "text": {"type": "plain_text", "text": "a\nb"}}],
        [{"type": "section", "text": ok["text"], "fields": [ok["text"]] * 11}],
        [
            {
                "type": "section",
                "text": ok["text"],
                "fields": [{"type": "mrkdwn", "text": "x" * 2001}],
            }
        ],
        [{"type": "context", "elements": [ok["text"]] * 11}],
        [{"type": "nonsense"}],
        [
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "x" * 76},
                        "action_id": "a",
                    }
                ],
            }
        ],
        [
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "x"},
                        "action_id": "a",
                        "value": "1" * 2001,
                    }
                ],
            }
        ],
    ]
    for blocks in bad:
        with pytest.raises(bk.InvalidBlocks):
            bk.check_blocks(blocks)
    assert bk.check_blocks([ok]) == [ok]
