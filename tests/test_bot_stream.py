"""ThreadStream against the Slack stand-in, through the real slack-sdk client.

Streams, rollover, the chat.update fallback (refused, expired and lost streams),
rate limits and the thread status; and, as properties, that no event text can
put a control sequence (``<!channel>``, ``<@U…>``) into the thread.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.messages.chunk import MarkdownTextChunk
from slack_sdk.web.async_client import AsyncWebClient
from support.slack_standin import SlackStandIn

from agents.events import (
    AnyEvent,
    DiagnosisEvent,
    ErrorEvent,
    FindingEvent,
    Finished,
    Hypothesis,
    Plan,
    ProbeCall,
    ProbeResult,
    ProposalEvent,
    Started,
)
from bot.slack_api import RetryPolicy, make_client
from bot.stream import STATUS, ThreadStream, _Item

CHANNEL = "C0INC1"
USER = "U0ALICE"
FAST = 0.01  # min_update_interval_s: streams pace at this; text still waits 1 s


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as standin:
        yield standin


def _client(slack: SlackStandIn, **retry: Any) -> AsyncWebClient:
    return make_client(
        slack.bot_token, base_url=slack.base_url, timeout_s=5.0, retry=RetryPolicy(**retry)
    )


def _thread(slack: SlackStandIn) -> str:
    return slack.add_message(CHANNEL, USER, "checkout is slow, please look").ts


def _stream(slack: SlackStandIn, thread_ts: str, **kwargs: Any) -> ThreadStream:
    options: dict[str, Any] = {
        "channel": CHANNEL,
        "thread_ts": thread_ts,
        "team_id": slack.team_id,
        "user_id": USER,
        "min_update_interval_s": FAST,
    }
    options.update(kwargs)
    client = options.pop("client", None) or _client(slack)
    return ThreadStream(client, **options)


def _replies(slack: SlackStandIn, thread_ts: str) -> list[Any]:
    return [m for m in slack.thread(CHANNEL, thread_ts) if m.ts != thread_ts]


async def _until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def _incident(first: int = 1, steps: int = 2) -> Iterator[AnyEvent]:
    """A whole investigation; every line it renders holds a unique marker ``m<n>``."""
    yield Started(incident_id=7, question="m0 why is checkout slow?", model="qwen-m1")
    yield Plan(
        incident_id=7,
        phase="triage",
        summary="m2 look around",
        next_action="probe",
        instruction="x",
    )
    yield FindingEvent(
        incident_id=7,
        analyzer="pods",
        severity="critical",
        component="checkout",
        summary="m3 CrashLoopBackOff",
    )
    yield FindingEvent(
        incident_id=7,
        analyzer="metrics",
        severity="warning",
        component="cart",
        summary="m4 p99 latency 2s",
    )
    for step in range(first, first + steps):
        yield Plan(
            incident_id=7,
            step=step,
            phase="diagnosis",
            summary=f"m5 step {step}",
            next_action="probe",
            instruction="x",
        )
        yield Hypothesis(incident_id=7, step=step, hypotheses=[f"m6-{step} oom"], confidence=60)
        yield ProbeCall(incident_id=7, step=step, invocation=f"kubectl get pods m7-{step}")
        yield ProbeResult(
            incident_id=7,
            step=step,
            invocation=f"kubectl get pods m7-{step}",
            status="SUCCESS",
            summary=f"m8-{step} 3 pods",
        )
        yield ProbeCall(incident_id=7, step=step, invocation=f"kubectl logs m9-{step}")
        yield ProbeResult(
            incident_id=7,
            step=step,
            invocation=f"kubectl logs m9-{step}",
            status="ERROR",
            summary=f"m10-{step} forbidden",
        )
    yield DiagnosisEvent(
        incident_id=7,
        detected=True,
        components=["checkout"],
        system_level="pod",
        fault_type="oom",
        confidence=80,
        summary="m11 checkout runs out of memory",
        source="model+analyzers",
    )
    yield ProposalEvent(
        incident_id=7,
        proposal_id=12,
        action="set_memory_limit",
        target="deploy/shop/checkout",
        expected_effect="no more OOM",
        expires_at="2030-01-01T00:00:00",
        command="m12",
    )
    yield ErrorEvent(incident_id=7, message="m13 jaeger did not answer")
    yield Finished(
        incident_id=7, status="completed", steps=3, tokens_in=1000, tokens_out=234, seconds=12.5
    )


def _markers(first: int = 1, steps: int = 2) -> list[str]:
    """What the text rendering of `_incident` shows, each once."""
    per_step = [f"m{k}-{s}" for s in range(first, first + steps) for k in (6, 7, 8, 9, 10)]
    return ["m0", "m2", "m3", "m4", *per_step, "m11", "m13", "set_memory_limit", "1234 tokens"]


def _assert_each_once(text: str, markers: list[str]) -> None:
    for marker in markers:
        assert text.count(marker) == 1, (marker, text)


async def _feed(stream: ThreadStream, events: Iterator[AnyEvent] | list[AnyEvent]) -> None:
    for event in events:
        await stream.event(event)


# -- streaming ---------------------------------------------------------------------------


async def test_a_whole_investigation_streams_plan_and_tasks(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    await stream.start()
    await _feed(stream, _incident())
    await stream.finish()

    (message,) = _replies(slack, thread_ts)
    assert message.streaming
    assert message.stopped
    assert stream.message_ts == [message.ts]
    assert stream.mode == "stream"
    assert stream.first_message_at is not None
    assert message.plan_titles == ["triage: m2 look around", "diagnosis: m5 step 1"]
    assert message.tasks == {
        "s1-1": ["in_progress", "complete"],
        "s1-2": ["in_progress", "error"],
        "s2-1": ["in_progress", "complete"],
        "s2-2": ["in_progress", "error"],
    }
    outputs = {c["id"]: c.get("output") for c in message.chunks if c["type"] == "task_update"}
    assert outputs["s1-2"] == "m10-1 forbidden"
    assert "**checkout**" in message.text
    assert "approval message below" in message.text
    assert "1234 tokens" in message.text
    assert "12.5 s" in message.text
    assert slack.calls_to("chat.update") == []
    assert slack.calls_to("chat.postMessage") == []
    assert slack.status_history(CHANNEL, thread_ts) == [STATUS, ""]
    assert not stream.errors


async def test_nothing_is_posted_before_the_first_content(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    await stream.start()
    await asyncio.sleep(0.05)
    assert _replies(slack, thread_ts) == []
    assert stream.first_message_at is None
    await stream.note(":speech_balloon: follow-up from <@U0ALICE>")
    await stream.finish(blocks=[{"type": "divider"}])
    (message,) = _replies(slack, thread_ts)
    assert message.text == ":speech_balloon: follow-up from <@U0ALICE>\n"  # notes are trusted
    assert message.blocks == [{"type": "divider"}]


async def test_a_result_without_its_call_and_a_call_without_its_result(
    slack: SlackStandIn,
) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    await stream.event(
        ProbeResult(incident_id=1, step=3, invocation="orphan", status="DENIED", summary="no")
    )
    await stream.event(ProbeCall(incident_id=1, step=3, invocation="never answered"))
    await stream.finish()
    (message,) = _replies(slack, thread_ts)
    assert message.tasks == {"s3-1": ["error"], "s3-2": ["in_progress", "error"]}
    assert message.stopped


async def test_text_that_is_nothing_once_cleaned_still_streams(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    await stream.event(ProbeCall(incident_id=1, step=1, invocation="\u200b\u202e"))
    await stream.event(
        ProbeResult(incident_id=1, step=1, invocation="\u200b\u202e", status="OK", summary="")
    )
    await stream.event(ErrorEvent(incident_id=1, message="\n\t"))
    await stream.finish()
    (message,) = _replies(slack, thread_ts)
    assert stream.mode == "stream"
    assert message.tasks == {"s1-1": ["in_progress", "complete"]}


async def test_rollover_before_max_chars(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, max_chars=2_000)
    await stream.event(
        Plan(incident_id=1, phase="triage", summary="wide", next_action="probe", instruction="")
    )
    summaries = [f"f{n:03d} " + "x" * 120 for n in range(40)]
    for n, summary in enumerate(summaries):
        await stream.event(
            FindingEvent(
                incident_id=1, analyzer="a", severity="info", component="c", summary=summary
            )
        )
        if n == 20:  # a task still running when its message fills up
            await stream.event(ProbeCall(incident_id=1, step=1, invocation="slow probe"))
    await stream.event(
        ProbeResult(incident_id=1, step=1, invocation="slow probe", status="SUCCESS", summary="ok")
    )
    await stream.finish()

    messages = _replies(slack, thread_ts)
    assert len(messages) >= 3
    assert [m.ts for m in messages] == stream.message_ts
    assert all(m.stopped and len(m.text) <= 2_000 for m in messages)
    text = "".join(m.text for m in messages)
    for summary in summaries:
        assert text.count(summary) == 1
    assert text.index(summaries[0]) < text.index(summaries[-1])
    # Each continuation opens with the plan's title; the task ends in its own message.
    assert all(m.plan_titles == ["triage: wide"] for m in messages)
    (owner,) = [m for m in messages if m.tasks]
    assert owner.tasks == {"s1-1": ["in_progress", "complete"]}


async def test_the_budget_holds_for_the_largest_items(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, max_chars=2_000)
    huge = "<!channel> " + "&amp; <@U1> " * 1_000
    for step in range(12):
        await stream.event(ProbeCall(incident_id=1, step=step, invocation=huge))
        await stream.event(
            ProbeResult(incident_id=1, step=step, invocation=huge, status="OK", summary=huge)
        )
        await stream.event(ErrorEvent(incident_id=1, message=huge))
    await stream.note("n" * 10_000)
    await stream.finish()
    messages = _replies(slack, thread_ts)
    assert len(messages) > 3
    for message in messages:
        assert len(message.text) <= 2_000
        for chunk in message.chunks:
            assert "<!" not in str(chunk)
            assert len(chunk.get("title", "")) <= 150
            assert len(chunk.get("output", "")) <= 200


# -- the fallback ------------------------------------------------------------------------


async def test_a_refused_stream_falls_back_to_one_edited_message(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="")  # stand-in: missing_recipient_team_id
    await stream.start()
    events = list(_incident())
    await _feed(stream, events[:5])
    await _until(lambda: len(_replies(slack, thread_ts)) == 1)
    await _feed(stream, events[5:])
    await stream.finish()

    (message,) = _replies(slack, thread_ts)
    assert not message.streaming
    assert stream.mode == "text"
    assert stream.fallback_reason == "chat.startStream:missing_recipient_team_id"
    assert message.metadata is not None
    assert message.metadata["event_type"] == "aoi_post"
    assert message.updated >= 1
    assert stream.message_ts == [message.ts]
    _assert_each_once(message.text, _markers())
    assert ":x: `kubectl logs m9-2` → m10-2 forbidden" in message.text
    assert "*triage: m2 look around*" in message.text
    # The blocks show the same text (they replace whatever a stream showed).
    shown = "\n".join(b["text"]["text"] for b in message.blocks)
    assert shown == message.text
    writes = [c.at for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(writes))


async def test_an_expired_stream_is_edited_in_place(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    events = list(_incident())
    await _feed(stream, events[:6])
    await _until(lambda: any("m6-1" in m.text for m in _replies(slack, thread_ts)))
    slack.expire_streams()
    await _feed(stream, events[6:])
    await _until(lambda: stream.mode == "text")  # the next append found it expired
    await stream.finish(blocks=[{"type": "divider"}])

    (message,) = _replies(slack, thread_ts)
    assert message.streaming
    assert message.updated >= 1
    assert stream.fallback_reason == "chat.appendStream:message_not_in_streaming_state"
    assert stream.message_ts == [message.ts]
    assert slack.calls_to("chat.postMessage") == []
    _assert_each_once(message.text, _markers())
    assert message.blocks[-1] == {"type": "divider"}
    shown = "\n".join(b["text"]["text"] for b in message.blocks[:-1])
    _assert_each_once(shown, _markers())


async def test_a_lost_append_shows_nothing_twice(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    events = list(_incident())
    await _feed(stream, events[:4])
    await _until(lambda: any("m4" in m.text for m in _replies(slack, thread_ts)))
    slack.drop_next("chat.appendStream")  # applied by the stand-in, answer lost
    await _feed(stream, events[4:])
    await _until(lambda: stream.mode == "text")
    await stream.finish()

    (message,) = _replies(slack, thread_ts)
    (dropped,) = [c for c in slack.calls if c.dropped]
    assert dropped.method == "chat.appendStream"
    assert len(slack.calls_to("chat.appendStream")) == 1  # never resent
    assert stream.mode == "text"
    assert stream.message_ts == [message.ts]
    _assert_each_once(message.text, _markers())


async def test_a_lost_final_stop_is_repaired_by_an_edit(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, client=_client(slack, retries=0))
    await _feed(stream, _incident())
    await _until(lambda: any("1234 tokens" in m.text for m in _replies(slack, thread_ts)))
    slack.drop_next("chat.stopStream")
    await stream.finish(blocks=[{"type": "divider"}])
    (message,) = _replies(slack, thread_ts)
    _assert_each_once(message.text, _markers())
    assert message.blocks[-1] == {"type": "divider"}


async def test_a_lost_fallback_post_is_found_not_repeated(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="")
    slack.drop_next("chat.postMessage")
    await _feed(stream, _incident())
    await stream.finish()
    (message,) = _replies(slack, thread_ts)
    assert stream.message_ts == [message.ts]
    _assert_each_once(message.text, _markers())


async def test_a_429_storm_keeps_edits_at_one_a_second(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="", min_update_interval_s=0.0)
    events = list(_incident(steps=3))
    await _feed(stream, events[:3])
    await _until(lambda: len(_replies(slack, thread_ts)) == 1)
    slack.fail_next("chat.update", status=429, retry_after=1, count=2)
    for event in events[3:]:
        await stream.event(event)
        await asyncio.sleep(0.05)
    await stream.finish()

    (message,) = _replies(slack, thread_ts)
    updates = [c.at for c in slack.calls_to("chat.update")]
    assert len(updates) >= 3  # two refused, then the edits
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(updates))
    _assert_each_once(message.text, _markers(steps=3))


async def test_a_rate_limit_the_client_gives_up_on_is_waited_out(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    client = _client(slack, rate_limit_retries=0)
    stream = _stream(slack, thread_ts, team_id="", client=client)
    events = list(_incident())
    await _feed(stream, events[:3])
    await _until(lambda: len(_replies(slack, thread_ts)) == 1)
    slack.fail_next("chat.update", status=429, retry_after=2)
    await _feed(stream, events[3:])
    await stream.finish()
    first, second, *_ = slack.calls_to("chat.update")
    assert first.status == 429
    assert second.ok
    assert second.at - first.at >= 1.9
    assert stream.errors["chat.update:ratelimited"] == 1
    (message,) = _replies(slack, thread_ts)
    _assert_each_once(message.text, _markers())


async def test_fallback_rolls_over_too(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="", max_chars=2_000)
    summaries = [f"g{n:03d} " + "y" * 150 for n in range(30)]
    for summary in summaries:
        await stream.event(ErrorEvent(incident_id=1, message=summary))
    await stream.finish()
    messages = _replies(slack, thread_ts)
    assert len(messages) >= 3
    assert [m.ts for m in messages] == stream.message_ts
    assert all(len(m.text) <= 2_000 for m in messages)
    text = "\n".join(m.text for m in messages)
    for summary in summaries:
        assert text.count(summary) == 1


async def test_a_stream_slack_caps_lower_falls_back_whole(slack: SlackStandIn) -> None:
    slack.max_stream_chars = 300  # Slack refuses appends past it: msg_too_long
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    events = list(_incident())
    await _feed(stream, events[:3])
    await _until(lambda: bool(_replies(slack, thread_ts)))
    await _feed(stream, events[3:])
    await stream.finish()
    (message,) = _replies(slack, thread_ts)
    assert (stream.fallback_reason or "").endswith("Stream:msg_too_long")
    _assert_each_once(message.text, _markers())


# -- the status --------------------------------------------------------------------------


async def test_the_status_is_refreshed_and_cleared(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, status_refresh_s=0.1)
    await stream.start()
    await asyncio.sleep(0.45)
    await stream.finish()
    history = slack.status_history(CHANNEL, thread_ts)
    assert history[-1] == ""
    assert history.count(STATUS) >= 3
    assert set(history[:-1]) == {STATUS}
    await asyncio.sleep(0.2)
    assert len(slack.status_history(CHANNEL, thread_ts)) == len(history)  # refresher gone


async def test_a_refused_status_is_not_retried(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, status_refresh_s=0.05, channel="C0NOPE")
    await stream.start()
    await asyncio.sleep(0.2)
    await stream.event(ErrorEvent(incident_id=1, message="lost"))
    await stream.finish()  # Slack trouble everywhere, and no exception
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1
    assert stream.errors["assistant.threads.setStatus:channel_not_found"] == 1
    assert stream.errors["chat.startStream:channel_not_found"] == 1
    assert stream.errors["chat.postMessage:channel_not_found"] == 1
    assert stream.message_ts == []


# -- the caller's contract ---------------------------------------------------------------


async def test_finish_is_idempotent_and_ends_the_stream(slack: SlackStandIn) -> None:
    stream = _stream(slack, _thread(slack))
    await stream.finish()
    await stream.finish()
    with pytest.raises(RuntimeError):
        await stream.event(ErrorEvent(incident_id=1, message="late"))
    with pytest.raises(ValueError, match="max_chars"):
        _stream(slack, "1.0", max_chars=12_000)


async def test_event_does_not_wait_for_slack(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="")
    slack.fail_next("chat.postMessage", status=429, retry_after=1, count=2)
    started = time.monotonic()
    await _feed(stream, _incident())
    assert time.monotonic() - started < 0.2
    await stream.finish()
    (message,) = _replies(slack, thread_ts)
    _assert_each_once(message.text, _markers())


class _BrokenPoster:
    async def post(self, *args: Any, **kwargs: Any) -> str:
        raise TypeError("a bug, not Slack")


async def test_a_bug_in_the_writer_reaches_the_caller(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts, team_id="", poster=_BrokenPoster())
    await stream.start()
    await stream.event(ErrorEvent(incident_id=1, message="x"))
    await _until(lambda: stream._failure is not None)
    with pytest.raises(TypeError, match="a bug"):
        await stream.event(ErrorEvent(incident_id=1, message="y"))
    with pytest.raises(TypeError, match="a bug"):
        await stream.finish()
    assert slack.status_history(CHANNEL, thread_ts) == [STATUS, ""]  # cleaned up all the same


async def test_a_cancelled_finish_leaves_nothing_running(slack: SlackStandIn) -> None:
    thread_ts = _thread(slack)
    client = _client(slack, rate_limit_retries=0)
    stream = _stream(slack, thread_ts, team_id="", client=client, status_refresh_s=0.05)
    await stream.start()
    await stream.event(ErrorEvent(incident_id=1, message="x"))
    await _until(lambda: bool(_replies(slack, thread_ts)))
    slack.fail_next("chat.update", status=429, retry_after=30, count=5)
    await stream.event(ErrorEvent(incident_id=1, message="y"))
    finishing = asyncio.create_task(stream.finish())
    await asyncio.sleep(1.3)  # the final edit was refused: finish waits out Retry-After
    assert not finishing.done()
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not names & {"aoi-thread-stream", "aoi-status"}


# -- properties --------------------------------------------------------------------------

_TOKENS = [*"<>!@&|`*_~^ \n\u202e\u200b", "a", "U1", "@here", "channel", "subteam", "#C1"]
_hostile = st.lists(st.sampled_from(_TOKENS), max_size=40).map(
    lambda parts: "<!channel> " + "".join(parts) + " <@U0ALICE> <!here>"
)


def _hostile_events(text: str) -> list[AnyEvent]:
    return [
        Started(incident_id=1, question=text, model=text),
        Plan(incident_id=1, phase=text, summary=text, next_action="probe", instruction=text),
        ProbeCall(incident_id=1, step=1, invocation=text),
        ProbeResult(incident_id=1, step=1, invocation=text, status=text, summary=text),
        FindingEvent(incident_id=1, analyzer=text, severity=text, component=text, summary=text),
        Hypothesis(incident_id=1, hypotheses=[text, text], confidence=5),
        DiagnosisEvent(
            incident_id=1,
            detected=True,
            components=[text],
            namespace=text,
            system_level=text,
            fault_type=text,
            confidence=1,
            summary=text,
            source="model",
        ),
        ProposalEvent(
            incident_id=1,
            proposal_id=1,
            action=text,
            target=text,
            expected_effect=text,
            expires_at=text,
            command=text,
        ),
        ErrorEvent(incident_id=1, message=text),
        Finished(incident_id=1, status=text, steps=1, tokens_in=1, tokens_out=1, seconds=0.1),
    ]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _assert_defused(strings: Iterator[str]) -> None:
    for s in strings:
        for banned in ("<!", "<@", "\u202e", "\u200b"):
            assert banned not in s, s


@settings(max_examples=150, deadline=None)
@given(text=_hostile)
def test_event_text_never_becomes_a_control_sequence(text: str) -> None:
    """Both renderings (streamed markdown and fallback mrkdwn) of every kind of event."""
    stream = ThreadStream(
        AsyncWebClient(token="x"), channel="C1", thread_ts="1.0", team_id="T", user_id="U"
    )
    for event in _hostile_events(text):
        stream._render(event)
    for message in stream._messages:
        texts = [item.markdown for item in message.items] + [stream._mrkdwn(message)]
        chunks = [chunk.to_dict() for chunk in message.pending]
        _assert_defused(iter(texts))
        _assert_defused(_strings(chunks))
        assert all("\n" not in item.markdown for item in message.items)


_sizes = st.lists(
    st.tuples(
        st.sampled_from(["finding", "error", "probe", "open", "note", "plan"]), st.integers(0, 900)
    ),
    max_size=80,
)


@settings(max_examples=100, deadline=None)
@given(items=_sizes, max_chars=st.integers(2_000, 4_000))
def test_every_message_fits_its_budget(items: list[tuple[str, int]], max_chars: int) -> None:
    """Whatever the mix and sizes, no message's text (streamed or edited) passes max_chars."""
    stream = ThreadStream(
        AsyncWebClient(token="x"),
        channel="C1",
        thread_ts="1.0",
        team_id="T",
        user_id="U",
        max_chars=max_chars,
    )
    open_calls: list[str] = []
    for n, (kind, size) in enumerate(items):
        text = f"<{n}>" + "&" * size
        if kind == "finding":
            stream._render(
                FindingEvent(
                    incident_id=1, analyzer="a", severity="s", component=text, summary=text
                )
            )
        elif kind == "error":
            stream._render(ErrorEvent(incident_id=1, message=text))
        elif kind == "note":
            stream._add(_Item(markdown=text[:1000], mrkdwn=text[:1000]))
        elif kind == "plan":
            stream._render(
                Plan(incident_id=1, phase=str(n), summary=text, next_action="", instruction="")
            )
        else:
            stream._render(ProbeCall(incident_id=1, step=1, invocation=text))
            open_calls.append(text)
            if kind == "probe" or len(open_calls) > 3:
                call = open_calls.pop(0)
                stream._render(
                    ProbeResult(incident_id=1, step=1, invocation=call, status="OK", summary=text)
                )
    stream._close(None)
    for message in stream._messages:
        assert len(stream._mrkdwn(message)) <= max_chars
        streamed = sum(len(c.text) for c in message.pending if isinstance(c, MarkdownTextChunk))
        assert streamed <= max_chars
    shown = [item.text() for message in stream._messages for item in message.items]
    assert len(shown) == len(set(shown))  # each once: every item carries its own <n>


async def _through_slack(text: str, *, team_id: str) -> list[Any]:
    async with SlackStandIn() as slack:
        thread_ts = _thread(slack)
        stream = _stream(slack, thread_ts, team_id=team_id)
        await _feed(stream, _hostile_events(text))
        await stream.finish()
        writes = [c.params for c in slack.calls if c.method.startswith("chat.")]
        return [*writes, *(m.__dict__ for m in _replies(slack, thread_ts))]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_hostile)
def test_the_thread_never_holds_a_control_sequence(text: str) -> None:
    """What reaches the stand-in, streamed and (for a few) through the fallback."""
    seen = asyncio.run(_through_slack(text, team_id="T0STANDIN"))
    _assert_defused(_strings(seen))


def test_the_fallback_thread_never_holds_a_control_sequence() -> None:
    seen = asyncio.run(_through_slack("<!channel> <@U1> <!subteam^S1> `x`\n<!here>", team_id=""))
    _assert_defused(_strings(seen))
    assert any("&lt;!channel&gt;" in s for s in _strings(seen))


async def test_first_message_waits_for_the_first_write_and_gives_up_when_slack_refuses(
    slack: SlackStandIn,
) -> None:
    thread_ts = _thread(slack)
    stream = _stream(slack, thread_ts)
    await stream.start()
    assert not await stream.first_message(0.05)  # nothing to write yet
    await stream.note("first line")
    assert await stream.first_message(5.0)
    assert stream.first_message_at is not None
    await stream.finish()

    refused = _thread(slack)
    slack.fail_next("chat.startStream", status=400, count=50)
    slack.fail_next("chat.postMessage", status=400, count=50)
    stream = _stream(slack, refused)
    await stream.start()
    await stream.note("nobody will see this")
    assert not await stream.first_message(0.5)
    await stream.finish()
