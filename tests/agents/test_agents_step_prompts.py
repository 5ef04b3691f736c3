"""Every Observer decision in the store keeps the exact prompt the model was sent.

A training sample must be rebuilt from the store byte for byte, so these tests run a
whole investigation against a real HTTP server speaking the Kubernetes API (its pod
logs full of the redaction corpus' secrets), a real store (SQLite and PostgreSQL)
and the scripted model double, which records every prompt it receives. For every
reason step the stored messages must equal what the double got, hash to the step's
`prompt_hash`, name the prompt version and the guidance shown, and hold no secret.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redaction_corpus import LEAKS, Leak, leaked
from sqlmodel import col, select
from support.decisions import decision
from support.kube_api import kube_cluster

from agents import prompts
from agents.decision import Decision, NextAction, RootCause
from agents.events import Finished
from agents.llm import Message, ScriptedModel
from agents.prompts import (
    GUIDANCE_SNIPPETS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    StoredPromptError,
    guidance_id,
    guidance_ids,
    observer_messages,
    prompt_hash,
    step_messages,
    stored_prompt,
)
from agents.redact import redact
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import IncidentContext, Trajectory
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.models import Guidance, Step, StepPhase

NAMESPACE = "shop"
POD = "geo-7c9d5b6f4-x2x9q"
# One leak of each form the corpus knows: what a pod that dumps its environment and
# configuration into its log would show.
PLANTED: list[Leak] = list({leak.form: leak for leak in reversed(LEAKS)}.values())
QUESTION_SECRET = "hunter2-prod"
GUIDANCE_SECRET = "geo-Passw0rd"
QUESTION = f"geo checkout fails in shop since DB_PASSWORD={QUESTION_SECRET} was rotated, why?"
GUIDANCE_TEXT = (
    f"geo reads mongodb://admin:{GUIDANCE_SECRET}@mongodb-geo:27017; check its auth first"
)
HISTORY_SECRET = "xoxb-123456789012-9876543210-abcdefghijklmnopqrstuvwx"


def _plain(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the JSON column holds them."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _log_text() -> str:
    lines = ["2026-01-01T12:00:00Z starting geo", *(leak.line for leak in PLANTED)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cluster() -> Iterator[ClusterAccess]:
    with kube_cluster(NAMESPACE, {POD: _log_text()}) as access:
        yield access


def _script() -> list[str]:
    """Probe the logs, then a broken answer and its repair, then the forced submission."""
    return [
        decision("probe", f"kubectl logs {POD} -n {NAMESPACE} --tail=200", component="geo").replace(
            "next: probe", f"saw SLACK_BOT_TOKEN={HISTORY_SECRET} in the env"
        ),
        "this is not a JSON decision",
        decision("probe", f"kubectl get pods -n {NAMESPACE}", component="geo"),
        decision("submit", "geo", component="geo"),
    ]


def _reason_steps(engine: sa.Engine) -> list[Step]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Step).where(col(Step.phase) == StepPhase.REASON).order_by(col(Step.step_index))
        )
        return list(rows)


def _raw_messages(engine: sa.Engine) -> list[Any]:
    """The messages column as the database holds it, without the ORM in between."""
    with engine.connect() as connection:
        values = connection.execute(
            sa.text("SELECT messages FROM steps WHERE phase = 'reason' ORDER BY step_index")
        ).scalars()
        return [json.loads(v) if isinstance(v, str) else v for v in values]


def _secrets() -> list[tuple[str, str]]:
    """(line, secret) pairs planted anywhere the Observer's prompt draws from."""
    planted = [(leak.line, secret) for leak in PLANTED for secret in leak.secrets]
    return [
        *planted,
        (QUESTION, QUESTION_SECRET),
        (GUIDANCE_TEXT, GUIDANCE_SECRET),
        (f"SLACK_BOT_TOKEN={HISTORY_SECRET}", HISTORY_SECRET),
    ]


async def test_every_decision_stores_exactly_the_messages_the_model_received(
    migrated_engine: sa.Engine, cluster: ClusterAccess
) -> None:
    with session_scope(migrated_engine) as session:
        session.add(Guidance(symptom="geo checkout fails in shop", guidance=GUIDANCE_TEXT))
    model = ScriptedModel(_script())
    events = [
        event
        async for event in investigate(
            IncidentContext(question=QUESTION),
            engine=migrated_engine,
            cluster=cluster,
            model=model,
            limits=Limits(max_steps=3, probe_calls=2),
        )
    ]
    assert isinstance(events[-1], Finished)
    assert events[-1].status == "DIAGNOSED"

    # Four model calls: three Observer prompts and one repair request (its own system prompt).
    assert model.calls == 4
    sent = [p for p in model.prompts if p[0]["content"] == SYSTEM_PROMPT]
    assert len(sent) == 3
    steps = _reason_steps(migrated_engine)
    assert len(steps) == len(sent)
    assert _raw_messages(migrated_engine) == [_plain(p) for p in sent]
    for step, received in zip(steps, sent, strict=True):
        stored = step_messages(step)
        assert stored == received
        assert step.prompt_hash == prompt_hash(received) == prompt_hash(stored)
        assert step.prompt_version == PROMPT_VERSION
        assert step.guidance_ids == [guidance_id(GUIDANCE_TEXT)]

    # The planted text did reach the prompts (redacted), so the leak check below means something.
    users = [p[1]["content"] for p in sent]
    assert "<guidance>" in users[0]
    assert f"kubectl logs {POD}" in users[1]
    assert users[1].count("[REDACTED:") >= 10, users[1]
    assert "[REDACTED:" in users[0]  # the question's password, at least
    everything = json.dumps(_raw_messages(migrated_engine), ensure_ascii=False)
    prompts = "\n".join(m["content"] for p in model.prompts for m in p)
    found = [s for line, s in _secrets() if leaked(line, s, everything) or leaked(line, s, prompts)]
    assert found == []


async def test_a_failed_decision_keeps_its_prompt_too(
    migrated_engine: sa.Engine, cluster: ClusterAccess
) -> None:
    model = ScriptedModel(["not json", "still not json"])
    events = [
        event
        async for event in investigate(
            IncidentContext(question=QUESTION),
            engine=migrated_engine,
            cluster=cluster,
            model=model,
            limits=Limits(max_steps=2),
        )
    ]
    assert isinstance(events[-1], Finished)
    (step,) = _reason_steps(migrated_engine)
    assert step.decision is None
    assert "the model failed" in step.observation
    assert step_messages(step) == model.prompts[0]
    assert step.prompt_hash == prompt_hash(model.prompts[0])
    assert step.guidance_ids == []


# -- the prompt as the store keeps it ---------------------------------------------------

_lines = st.sampled_from([leak.line for leak in LEAKS])
_texts = st.text(st.characters(codec="utf-8"), max_size=200)
_chunks = st.lists(st.one_of(_lines, _texts), max_size=6).map("\n".join)


def _history(summaries: Sequence[str]) -> list[Decision]:
    return [
        Decision(
            summary=summary[:400],
            phase="diagnosis",
            hypotheses=[],
            root_cause=RootCause(component="geo", system_level="Unknown", fault_type="Unknown"),
            confidence=20,
            next_action=NextAction(kind="probe", instruction=summary[:100]),
        )
        for summary in summaries
    ]


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('prompts')}/aoi.db")
    upgrade(engine)
    yield engine
    engine.dispose()


@given(
    question=_chunks,
    observation=_chunks,
    guidance=st.lists(_chunks, max_size=5),
    summaries=st.lists(_chunks, max_size=4),
    step=st.integers(1, 6),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_prompt_is_redacted_and_comes_back_from_the_store_unchanged(
    sqlite_engine: sa.Engine,
    question: str,
    observation: str,
    guidance: list[str],
    summaries: list[str],
    step: int,
) -> None:
    messages = observer_messages(
        question=question,
        history=_history(summaries),
        observation=observation,
        guidance=guidance,
        step=step,
        max_steps=6,
    )
    # Already redacted: redacting again (as the store does) changes nothing.
    assert [redact(m["content"]) for m in messages] == [m["content"] for m in messages]
    stored = _store(sqlite_engine, stored_prompt(messages, guidance=guidance))
    assert step_messages(stored) == messages
    assert stored.prompt_hash == prompt_hash(messages)
    assert stored.guidance_ids == guidance_ids(guidance)


def _store(engine: sa.Engine, prompt: dict[str, Any]) -> Step:
    async def write() -> int:
        trajectory = Trajectory(engine)
        await trajectory.open(IncidentContext(question="q"))
        await trajectory.step(StepPhase.REASON, **prompt)
        return trajectory.incident_id

    incident_id = asyncio.run(write())
    with session_scope(engine) as session:
        return session.exec(select(Step).where(col(Step.incident_id) == incident_id)).one()


@given(st.lists(st.text(max_size=40), max_size=8))
def test_guidance_ids_name_the_items_the_prompt_shows_in_order(guidance: list[str]) -> None:
    shown = [g for g in guidance if g.strip()][:GUIDANCE_SNIPPETS]
    assert guidance_ids(guidance) == [guidance_id(g) for g in shown]
    user = observer_messages(
        question="q", history=[], observation=None, guidance=guidance, step=1, max_steps=3
    )[1]["content"]
    block = user.split("<guidance>", 1)[1].split("</guidance>", 1)[0] if shown else ""
    assert block.count("\n- ") == len(shown)


def test_guidance_ids_are_stable_content_hashes() -> None:
    assert guidance_id("look at payment first") == guidance_id("look at payment first")
    assert guidance_id("look at payment first") != guidance_id("look at payment first.")
    assert len(guidance_id("x")) == 64


def test_the_prompt_version_follows_the_system_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PROMPT_VERSION.startswith(f"observer-{prompts.PROMPT_LAYOUT}+")
    before = prompts._fingerprint()
    monkeypatch.setattr(prompts, "SYSTEM_PROMPT", SYSTEM_PROMPT + " Be brief.")
    assert prompts._fingerprint() != before
    monkeypatch.setattr(prompts, "OBSERVATION_CHARS", prompts.OBSERVATION_CHARS + 1)
    monkeypatch.setattr(prompts, "SYSTEM_PROMPT", SYSTEM_PROMPT)
    assert prompts._fingerprint() != before


# -- reading a stored prompt back --------------------------------------------------------


def _step(messages: Any, hash_of: Sequence[Message] | None = None) -> Step:
    return Step(
        incident_id=7,
        step_index=2,
        phase=StepPhase.REASON,
        messages=messages,
        prompt_hash=prompt_hash(hash_of) if hash_of is not None else "",
    )


_PROMPT: list[Message] = [
    Message(role="system", content=SYSTEM_PROMPT),
    Message(role="user", content="Incident: q\nStep 1 of 3."),
]


def test_a_step_without_a_stored_prompt_says_why_it_cannot_be_replayed() -> None:
    with pytest.raises(StoredPromptError, match=r"step 2 of incident #7 has no stored prompt"):
        step_messages(_step(None))


def test_messages_that_no_longer_match_their_hash_are_refused() -> None:
    edited = _plain(_PROMPT)
    edited[1]["content"] += " "
    with pytest.raises(StoredPromptError, match="do not hash to its prompt_hash"):
        step_messages(_step(edited, hash_of=_PROMPT))
    assert step_messages(_step(_plain(_PROMPT), hash_of=_PROMPT)) == _PROMPT


@pytest.mark.parametrize(
    "stored",
    [
        [{"role": "system", "content": "x", "name": "extra"}],
        [{"role": "tool", "content": "x"}],
        [{"role": "user", "content": 3}],
        ["user: x"],
        {"role": "user", "content": "x"},
    ],
)
def test_a_message_of_the_wrong_shape_is_refused(stored: Any) -> None:
    with pytest.raises(StoredPromptError, match="role/content pair"):
        step_messages(_step(stored))
