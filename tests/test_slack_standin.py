"""The Slack stand-in, driven by the real slack-sdk and slack-bolt clients.

Every test talks HTTP or websockets to a `SlackStandIn` on 127.0.0.1: what
passes here is what the bot's own tests may rely on (shapes, errors, faults).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.models.messages.chunk import (
    MarkdownTextChunk,
    PlanUpdateChunk,
    TaskUpdateChunk,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from support.slack_standin import (
    SlackStandIn,
    block_action,
    block_errors,
    form_body,
    mention_event,
    signed_headers,
    view_submission,
)
from support.slack_standin.state import TsClock, ts_key

pytestmark = pytest.mark.timeout(30)

INC = "C0INC1"
NO_WAIT = FixedValueRetryIntervalCalculator(0.0)
SECTION = {"type": "section", "block_id": "s1", "text": {"type": "mrkdwn", "text": "*hi*"}}
MODAL = {
    "type": "modal",
    "callback_id": "reject",
    "title": {"type": "plain_text", "text": "Reject"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "why",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        }
    ],
}


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(channels={INC: "inc-checkout", "D0DM": "dm"}) as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandIn) -> AsyncWebClient:
    """A bot client that never retries, so every fault shows."""
    return AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])


async def _error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# -- messages ---------------------------------------------------------------------


async def test_post_reply_and_read_the_thread_back_with_metadata(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    parent = slack.add_message(INC, "U0ALICE", "checkout is down")
    meta = {"event_type": "aoi_post", "event_payload": {"key": "inc-1/ack"}}
    posted = await client.chat_postMessage(
        channel=INC, thread_ts=parent.ts, text="on it", blocks=[SECTION], metadata=meta
    )
    assert posted["channel"] == INC
    assert posted["message"]["metadata"] == meta
    reply = slack.thread(INC, parent.ts)[-1]
    assert (reply.ts, reply.thread_ts, reply.user, reply.text) == (
        posted["ts"],
        parent.ts,
        slack.bot_user_id,
        "on it",
    )
    assert reply.blocks == [SECTION]

    replies = await client.conversations_replies(
        channel=INC, ts=parent.ts, include_all_metadata=True
    )
    messages = replies["messages"]
    assert [m["ts"] for m in messages] == [parent.ts, posted["ts"]]
    assert messages[0]["user"] == "U0ALICE"
    assert "bot_id" not in messages[0]
    assert messages[0]["thread_ts"] == parent.ts
    assert messages[0]["reply_count"] == 1
    assert messages[1]["bot_id"] == slack.bot_id
    assert messages[1]["thread_ts"] == parent.ts
    assert messages[1]["metadata"] == meta
    plain = await client.conversations_replies(channel=INC, ts=parent.ts)
    assert all("metadata" not in m for m in plain["messages"])


async def test_form_and_query_bodies_carry_json_text(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    meta = {"event_type": "aoi_post", "event_payload": {"key": "k"}}
    form = await client.api_call(
        "chat.postMessage",
        data={
            "channel": INC,
            "text": "form",
            "blocks": json.dumps([SECTION]),
            "metadata": json.dumps(meta),
        },
    )
    query = await client.api_call(
        "chat.postMessage",
        params={"channel": INC, "text": "query", "blocks": json.dumps([SECTION])},
    )
    first, second = slack.messages[INC]
    assert (first.ts, first.text, first.blocks, first.metadata) == (
        form["ts"],
        "form",
        [SECTION],
        meta,
    )
    assert (second.ts, second.blocks) == (query["ts"], [SECTION])
    assert slack.calls[0].params["blocks"] == [SECTION]  # recorded decoded


async def test_token_is_checked_by_kind(slack: SlackStandIn) -> None:
    def with_token(token: str | None) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=slack.base_url, retry_handlers=[])

    for token, error in [
        ("xoxb-wrong", "invalid_auth"),
        (None, "not_authed"),
        (slack.app_token, "not_allowed_token_type"),
    ]:
        refused = await _error(with_token(token).chat_postMessage(channel=INC, text="x"))
        assert refused.response["error"] == error
    bot = with_token(slack.bot_token)
    assert (await _error(bot.apps_connections_open(app_token=slack.bot_token))).response[
        "error"
    ] == "not_allowed_token_type"
    opened = await bot.apps_connections_open(app_token=slack.app_token)  # token as a param
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.url.rsplit(':', 1)[1]}/link/?ticket=")
    assert INC not in slack.messages
    assert [c.error for c in slack.calls] == [
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "not_allowed_token_type",
        None,
    ]
    assert "token" not in slack.calls[-1].params


async def test_update_replaces_what_it_is_given(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel=INC, text="one", blocks=[SECTION])
    await client.chat_update(channel=INC, ts=posted["ts"], text="two")
    message = slack.messages[INC][0]
    assert (message.text, message.blocks, message.updated) == ("two", [SECTION], 1)
    await client.chat_update(channel=INC, ts=posted["ts"], text="three", blocks=[])
    assert (message.text, message.blocks, message.updated) == ("three", [], 2)

    human = slack.add_message(INC, "U0ALICE", "mine")
    errors = [
        (await _error(client.chat_update(channel=INC, ts="1.000001", text="x"))).response["error"],
        (await _error(client.chat_update(channel=INC, ts=human.ts, text="x"))).response["error"],
        (await _error(client.chat_update(channel="C0NOPE", ts=posted["ts"], text="x"))).response[
            "error"
        ],
        (await _error(client.chat_postMessage(channel="C0NOPE", text="x"))).response["error"],
        (await _error(client.api_call("chat.postMessage", json={"channel": INC}))).response[
            "error"
        ],
    ]
    assert errors == [
        "message_not_found",
        "cant_update_message",
        "channel_not_found",
        "channel_not_found",
        "no_text",
    ]
    assert human.text == "mine"


async def test_ephemeral_is_not_in_replies(slack: SlackStandIn, client: AsyncWebClient) -> None:
    parent = slack.add_message(INC, "U0ALICE", "help")
    sent = await client.chat_postEphemeral(
        channel=INC, user="U0BOB", text="only you", thread_ts=parent.ts
    )
    assert slack.thread(INC, parent.ts)[-1].ephemeral_for == "U0BOB"
    assert slack.thread(INC, parent.ts)[-1].ts == sent["message_ts"]
    replies = await client.conversations_replies(channel=INC, ts=parent.ts)
    assert [m["ts"] for m in replies["messages"]] == [parent.ts]
    update = client.chat_update(channel=INC, ts=sent["message_ts"], text="x")
    assert (await _error(update)).response["error"] == "message_not_found"


async def test_replies_page_and_answer_a_reply_ts_alone(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    parent = slack.add_message(INC, "U0ALICE", "p")
    posted = [
        (await client.chat_postMessage(channel=INC, thread_ts=parent.ts, text=str(i)))["ts"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.conversations_replies(channel=INC, ts=parent.ts, limit=2, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not page["has_more"]:
            assert cursor == ""
            break
    assert seen == [parent.ts, *posted]
    alone = await client.conversations_replies(channel=INC, ts=posted[2])
    assert [m["text"] for m in alone["messages"]] == ["2"]
    # A reply to a reply lands in the parent's thread, as in Slack.
    nested = await client.chat_postMessage(channel=INC, thread_ts=posted[0], text="nested")
    assert slack.message(INC, nested["ts"]) is not None
    assert slack.message(INC, nested["ts"]).thread_ts == parent.ts  # type: ignore[union-attr]
    missing = client.conversations_replies(channel=INC, ts="1600000000.000100")
    assert (await _error(missing)).response["error"] == "thread_not_found"


async def test_malformed_input_is_refused_like_slack(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    bad_meta = client.chat_postMessage(channel=INC, text="x", metadata={"event_type": "a"})
    assert (await _error(bad_meta)).response["error"] == "invalid_metadata_format"
    bad_json = client.api_call("chat.postMessage", data={"channel": INC, "blocks": "[{"})
    assert (await _error(bad_json)).response["error"] == "invalid_blocks_format"
    too_many = client.chat_postMessage(channel=INC, text="x", blocks=[{"type": "divider"}] * 51)
    refused = await _error(too_many)
    assert refused.response["error"] == "invalid_blocks"
    assert refused.response["errors"] == ["must be at most 50 items [json-pointer:/blocks]"]
    dup = client.chat_postMessage(channel=INC, text="x", blocks=[SECTION, SECTION])
    assert "duplicate block_id" in (await _error(dup)).response["errors"][0]
    long_text = client.chat_postMessage(channel=INC, text="x" * 40_001)
    assert (await _error(long_text)).response["error"] == "msg_too_long"
    unknown = client.api_call("chat.scheduleMessage", json={"channel": INC})
    assert (await _error(unknown)).response["error"] == "unknown_method"
    assert INC not in slack.messages

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{slack.base_url}chat.postMessage",
            data=b"{not json",
            headers={"Content-Type": "application/json", "Authorization": "Bearer xoxb-standin"},
        ) as response,
    ):
        assert await response.json() == {"ok": False, "error": "invalid_json"}


# -- streams ------------------------------------------------------------------------


async def test_stream_follows_plan_tasks_and_text(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    parent = slack.add_message(INC, "U0ALICE", "why is checkout down?")
    recipients = {"recipient_team_id": slack.team_id, "recipient_user_id": "U0ALICE"}
    started = await client.chat_startStream(
        channel=INC,
        thread_ts=parent.ts,
        task_display_mode="plan",
        chunks=[
            PlanUpdateChunk(title="Triage"),
            TaskUpdateChunk(id="p1", title="get pods", status="pending"),
        ],
        **recipients,
    )
    ts = started["ts"]
    stream = slack.message(INC, ts)
    assert stream is not None
    assert stream.streaming
    assert stream.open
    assert stream.thread_ts == parent.ts
    await client.chat_appendStream(
        channel=INC,
        ts=ts,
        chunks=[
            TaskUpdateChunk(id="p1", title="get pods", status="in_progress"),
            MarkdownTextChunk(text="Looking at pods. "),
        ],
    )
    await client.chat_appendStream(channel=INC, ts=ts, markdown_text="Found it.")
    stopped = await client.chat_stopStream(
        channel=INC,
        ts=ts,
        chunks=[TaskUpdateChunk(id="p1", title="get pods", status="complete", output="3 pods")],
        blocks=[SECTION],
    )
    assert stopped["message"]["blocks"] == [SECTION]
    assert stream.tasks == {"p1": ["pending", "in_progress", "complete"]}
    assert stream.task_status("p1") == "complete"
    assert stream.plan_titles == ["Triage"]
    assert stream.text == "Looking at pods. Found it."
    assert (stream.stopped, stream.open) == (True, False)
    late = client.chat_appendStream(channel=INC, ts=ts, markdown_text="more")
    assert (await _error(late)).response["error"] == "message_not_in_streaming_state"
    again = client.chat_stopStream(channel=INC, ts=ts)
    assert (await _error(again)).response["error"] == "message_not_in_streaming_state"
    assert [c.method for c in slack.calls_to("chat.appendStream", channel=INC)] == [
        "chat.appendStream"
    ] * 3


async def test_the_sdk_chat_stream_helper_works_against_it(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    parent = slack.add_message(INC, "U0ALICE", "q")
    streamer = await client.chat_stream(
        channel=INC,
        thread_ts=parent.ts,
        recipient_team_id=slack.team_id,
        recipient_user_id="U0ALICE",
        buffer_size=8,
    )
    for word in ["alpha ", "beta ", "gamma"]:
        await streamer.append(markdown_text=word)
    await streamer.stop()
    stream = slack.thread(INC, parent.ts)[-1]
    assert (stream.text, stream.stopped) == ("alpha beta gamma", True)


async def test_stream_start_is_refused_without_what_slack_requires(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    parent = slack.add_message(INC, "U0ALICE", "q")
    no_team = client.chat_startStream(
        channel=INC, thread_ts=parent.ts, recipient_user_id="U0ALICE", markdown_text="x"
    )
    assert (await _error(no_team)).response["error"] == "missing_recipient_team_id"
    no_user = client.chat_startStream(
        channel=INC, thread_ts=parent.ts, recipient_team_id=slack.team_id, markdown_text="x"
    )
    assert (await _error(no_user)).response["error"] == "missing_recipient_user_id"
    no_thread = client.api_call("chat.startStream", json={"channel": "D0DM", "markdown_text": "x"})
    assert (await _error(no_thread)).response["error"] == "invalid_arguments"
    both = client.chat_startStream(
        channel="D0DM",
        thread_ts="1.000001",
        markdown_text="x",
        chunks=[MarkdownTextChunk(text="y")],
    )
    assert (await _error(both)).response["error"] == "cannot_provide_both_markdown_text_and_chunks"
    bad_task = client.chat_startStream(
        channel="D0DM",
        thread_ts="1.000001",
        chunks=[{"type": "task_update", "id": "t", "status": "done"}],
    )
    refused = await _error(bad_task)
    assert refused.response["error"] == "invalid_chunks"
    assert len(refused.response["errors"]) == 2
    assert "D0DM" not in slack.messages
    assert INC in slack.messages
    dm = await client.chat_startStream(channel="D0DM", thread_ts="1.000001", markdown_text="ok")
    assert slack.message("D0DM", dm["ts"]).text == "ok"  # type: ignore[union-attr]


async def test_markdown_text_is_capped_and_a_refused_append_changes_nothing(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    started = await client.chat_startStream(
        channel="D0DM", thread_ts="1.000001", markdown_text="x" * 12_000
    )
    stream = slack.message("D0DM", started["ts"])
    assert stream is not None
    assert len(stream.text) == 12_000
    over = client.chat_appendStream(
        channel="D0DM",
        ts=started["ts"],
        chunks=[
            TaskUpdateChunk(id="t", title="t", status="pending"),
            MarkdownTextChunk(text="y" * 12_001),
        ],
    )
    assert (await _error(over)).response["error"] == "msg_too_long"
    assert (len(stream.text), stream.tasks, len(stream.chunks)) == (12_000, {}, 1)
    assert stream.open


async def test_max_stream_chars_caps_the_whole_stream() -> None:
    async with SlackStandIn(channels={"D0DM": "dm"}, max_stream_chars=10) as slack:
        bot = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])
        started = await bot.chat_startStream(channel="D0DM", thread_ts="1.1", markdown_text="12345")
        await bot.chat_appendStream(channel="D0DM", ts=started["ts"], markdown_text="67890")
        over = bot.chat_appendStream(channel="D0DM", ts=started["ts"], markdown_text="!")
        assert (await _error(over)).response["error"] == "msg_too_long"


async def test_streams_expire_on_demand_and_by_ttl() -> None:
    async with SlackStandIn(channels={"D0DM": "dm"}, stream_ttl_s=0.2) as slack:
        bot = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])
        first = await bot.chat_startStream(channel="D0DM", thread_ts="1.1", markdown_text="a")
        slack.expire_streams()
        late = bot.chat_appendStream(channel="D0DM", ts=first["ts"], markdown_text="b")
        assert (await _error(late)).response["error"] == "message_not_in_streaming_state"
        stop = bot.chat_stopStream(channel="D0DM", ts=first["ts"])
        assert (await _error(stop)).response["error"] == "message_not_in_streaming_state"
        expired = slack.message("D0DM", first["ts"])
        assert expired is not None
        assert expired.expired
        assert expired.text == "a"
        # What was streamed stays; the message can still be edited.
        await bot.chat_update(channel="D0DM", ts=first["ts"], text="a (final)")

        second = await bot.chat_startStream(channel="D0DM", thread_ts="1.1", markdown_text="c")
        await bot.chat_appendStream(channel="D0DM", ts=second["ts"], markdown_text="d")
        await asyncio.sleep(0.25)
        timed_out = bot.chat_appendStream(channel="D0DM", ts=second["ts"], markdown_text="e")
        assert (await _error(timed_out)).response["error"] == "message_not_in_streaming_state"
        assert slack.message("D0DM", second["ts"]).text == "cd"  # type: ignore[union-attr]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    updates=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["pending", "in_progress", "complete", "error"]),
        ),
        min_size=1,
        max_size=12,
    ),
    batch=st.integers(min_value=1, max_value=4),
)
async def test_task_history_is_every_update_in_order(
    updates: list[tuple[str, str]], batch: int
) -> None:
    async with SlackStandIn(channels={"D0DM": "dm"}) as slack:
        bot = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])
        chunks = [TaskUpdateChunk(id=i, title=f"task {i}", status=s) for i, s in updates]
        started = await bot.chat_startStream(channel="D0DM", thread_ts="1.1", chunks=chunks[:batch])
        for at in range(batch, len(chunks), batch):
            await bot.chat_appendStream(
                channel="D0DM", ts=started["ts"], chunks=chunks[at : at + batch]
            )
        expected: dict[str, list[str]] = {}
        for task_id, status in updates:
            expected.setdefault(task_id, []).append(status)
        assert slack.message("D0DM", started["ts"]).tasks == expected  # type: ignore[union-attr]


# -- the rest of the methods --------------------------------------------------------


async def test_status_views_groups_channels_identity(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    for status in ["is investigating…", "is reading logs…", ""]:
        await client.assistant_threads_setStatus(channel_id=INC, thread_ts="1.1", status=status)
    assert slack.status_history(INC, "1.1") == ["is investigating…", "is reading logs…", ""]
    bad = client.assistant_threads_setStatus(channel_id="C0NOPE", thread_ts="1.1", status="x")
    assert (await _error(bad)).response["error"] == "channel_not_found"

    assert (await client.usergroups_users_list(usergroup="S0SRE"))["users"] == ["U0ALICE"]
    none = client.usergroups_users_list(usergroup="S0NONE")
    assert (await _error(none)).response["error"] == "no_such_subteam"
    info = await client.conversations_info(channel=INC)
    assert (
        info["channel"].items() >= {"id": INC, "name": "inc-checkout", "is_channel": True}.items()
    )
    me = await client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("U0AOIBOT", "B0AOIBOT", "T0STANDIN")


async def test_views_open_checks_the_view_and_the_trigger(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel=INC, text="x")
    click = slack.click("U0ALICE", INC, posted["ts"], "reject", "7")
    opened = await client.views_open(trigger_id=click["trigger_id"], view=MODAL)
    assert opened["view"]["callback_id"] == "reject"
    assert opened["view"]["id"].startswith("V")
    assert slack.views[0]["trigger_id"] == click["trigger_id"]
    reused = client.views_open(trigger_id=click["trigger_id"], view=MODAL)
    assert (await _error(reused)).response["error"] == "exchanged_trigger_id"

    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    refused = await _error(client.views_open(trigger_id="T9", view=long_title))
    assert refused.response["error"] == "invalid_arguments"
    assert "/view/title/text" in refused.response["response_metadata"]["messages"][0]
    no_submit = {k: v for k, v in MODAL.items() if k != "submit"}
    assert (await _error(client.views_open(trigger_id="T9", view=no_submit))).response[
        "error"
    ] == "invalid_arguments"

    slack.TRIGGER_TTL_S = 0.0
    stale = slack.click("U0ALICE", INC, posted["ts"], "reject", "7")
    await asyncio.sleep(0.01)
    expired = client.views_open(trigger_id=stale["trigger_id"], view=MODAL)
    assert (await _error(expired)).response["error"] == "expired_trigger_id"
    assert len(slack.views) == 1


# -- faults -------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(slack: SlackStandIn) -> None:
    retrying = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    began = time.monotonic()
    posted = await retrying.chat_postMessage(channel=INC, text="x")
    waited = time.monotonic() - began
    assert posted["ok"]
    assert waited >= 1.0
    assert [(c.status, c.error) for c in slack.calls] == [(429, "ratelimited"), (200, None)]
    assert len(slack.messages[INC]) == 1


async def test_429_and_5xx_answer_without_doing_anything(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    limited = await _error(client.chat_postMessage(channel=INC, text="x"))
    assert limited.response.status_code == 429
    assert limited.response["error"] == "ratelimited"
    assert limited.response.headers["Retry-After"] == "7"
    slack.fail_next("*", status=503, count=2)
    unavailable = await _error(client.chat_postMessage(channel=INC, text="x"))
    assert (unavailable.response.status_code, unavailable.response["error"]) == (
        503,
        "service_unavailable",
    )
    assert (await _error(client.auth_test())).response.status_code == 503
    assert INC not in slack.messages
    # Method faults go before "*" ones, and each is used once.
    slack.fail_next("*", status=500)
    slack.fail_next("auth.test", status=429)
    assert (await _error(client.auth_test())).response.status_code == 429
    assert (await _error(client.auth_test())).response.status_code == 500
    assert (await client.auth_test())["ok"]
    healing = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[
            AsyncServerErrorRetryHandler(max_retry_count=1, interval_calculator=NO_WAIT)
        ],
    )
    slack.fail_next("chat.update", status=500)
    posted = await client.chat_postMessage(channel=INC, text="a")
    await healing.chat_update(channel=INC, ts=posted["ts"], text="b")
    assert slack.messages[INC][0].text == "b"


async def test_a_dropped_response_still_did_the_work(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    slack.drop_next("chat.postMessage")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_postMessage(channel=INC, text="lost answer")
    assert [m.text for m in slack.messages[INC]] == ["lost answer"]
    assert [(c.method, c.status, c.dropped) for c in slack.calls] == [
        ("chat.postMessage", 200, True)
    ]
    # The next call is answered; a connection-error retry posts a duplicate (why the bot's
    # writes are never retried blindly).
    await client.chat_postMessage(channel=INC, text="fine")
    naive = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=NO_WAIT)
        ],
    )
    slack.drop_next("*")
    await naive.chat_postMessage(channel=INC, text="twice")
    assert [m.text for m in slack.messages[INC]] == ["lost answer", "fine", "twice", "twice"]


async def test_writes_are_rate_limited_per_channel() -> None:
    async with SlackStandIn(channels={INC: "a", "C0OTHER": "b"}, rate_limit_per_s=2) as slack:
        bot = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])
        await bot.chat_postMessage(channel=INC, text="1")
        await bot.chat_postMessage(channel=INC, text="2")
        limited = await _error(bot.chat_postMessage(channel=INC, text="3"))
        assert limited.response.status_code == 429
        assert int(limited.response.headers["Retry-After"]) >= 1
        await bot.chat_postMessage(channel="C0OTHER", text="elsewhere")
        await bot.conversations_info(channel=INC)  # reads are not limited
        assert [m.text for m in slack.messages[INC]] == ["1", "2"]


async def test_calls_are_recorded_with_times(slack: SlackStandIn, client: AsyncWebClient) -> None:
    began = time.monotonic()
    await client.chat_postMessage(channel=INC, text="a")
    await client.conversations_info(channel=INC)
    assert [c.method for c in slack.calls] == ["chat.postMessage", "conversations.info"]
    assert all(began <= c.at <= time.monotonic() for c in slack.calls)
    assert slack.calls[0].at <= slack.calls[1].at
    assert slack.calls[0].params == {"channel": INC, "text": "a"}
    assert [c.ok for c in slack.calls] == [True, True]


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=300))
def test_ts_values_increase_and_never_repeat(count: int) -> None:
    clock = TsClock()
    values = [clock.next() for _ in range(count)]
    assert len(set(values)) == count
    assert values == sorted(values, key=ts_key) == sorted(values)
    assert all(len(v.split(".")[1]) == 6 for v in values)


# -- Socket Mode --------------------------------------------------------------------


async def test_socket_mode_client_connects_acks_and_reconnects(slack: SlackStandIn) -> None:
    web_client = AsyncWebClient(base_url=slack.base_url)
    socket = SocketModeClient(app_token=slack.app_token, web_client=web_client, ping_interval=0.2)
    frames: list[dict[str, Any]] = []
    requests: list[SocketModeRequest] = []

    async def on_frame(_: Any, message: dict[str, Any], raw: str | None) -> None:
        frames.append(message)

    async def on_request(client: Any, request: SocketModeRequest) -> None:
        requests.append(request)
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload={"seen": True})
        )

    socket.message_listeners.append(on_frame)
    socket.socket_mode_request_listeners.append(on_request)
    try:
        await cast(Any, socket).connect()
        await slack.socket_mode.wait_connected()
        body = slack.mention(INC, "U0ALICE", "why is checkout down?")
        ack = await slack.socket_mode.deliver("events_api", body)
        assert ack == {"envelope_id": requests[0].envelope_id, "payload": {"seen": True}}
        assert frames[0]["type"] == "hello"
        assert frames[0]["num_connections"] == 1
        assert requests[0].type == "events_api"
        assert requests[0].payload == body
        assert requests[0].retry_attempt == 0
        assert requests[0].retry_reason == ""
        assert slack.socket_mode.acks == [ack]

        await slack.socket_mode.disconnect(hard=True)
        await slack.socket_mode.wait_connected(count=2)
        retry = await slack.socket_mode.deliver("events_api", body, retry_attempt=1)
        assert requests[1].retry_attempt == 1
        assert requests[1].retry_reason == "timeout"
        assert retry["envelope_id"] == requests[1].envelope_id

        await slack.socket_mode.disconnect(reason="warning")
        await slack.socket_mode.wait_connected(count=3)
        click = slack.click("U0ALICE", INC, body["event"]["ts"], "approve", "1")
        await slack.socket_mode.deliver("interactive", click)
        assert requests[2].payload["type"] == "block_actions"
        assert [c.method for c in slack.calls] == ["apps.connections.open"] * 3
    finally:
        await cast(Any, socket).close()


async def test_deliver_times_out_without_ack_or_connection(slack: SlackStandIn) -> None:
    with pytest.raises(TimeoutError, match="no Socket Mode connection"):
        await slack.socket_mode.deliver("events_api", {}, timeout_s=0.1)
    socket = SocketModeClient(
        app_token=slack.app_token,
        web_client=AsyncWebClient(base_url=slack.base_url),
        ping_interval=0.2,
    )
    try:
        await cast(Any, socket).connect()
        with pytest.raises(TimeoutError, match="no ack"):
            await slack.socket_mode.deliver("events_api", {"x": 1}, timeout_s=0.2)
        assert len(slack.socket_mode.delivered) == 1
        assert slack.socket_mode.acks == []
    finally:
        await cast(Any, socket).close()
    with pytest.raises(ValueError, match="unknown envelope type"):
        await slack.socket_mode.deliver("hello", {})


async def test_stop_closes_a_live_socket_promptly() -> None:
    slack = SlackStandIn()
    await slack.start()
    socket = SocketModeClient(
        app_token=slack.app_token,
        web_client=AsyncWebClient(base_url=slack.base_url),
        ping_interval=0.2,
    )
    try:
        await cast(Any, socket).connect()
        await slack.socket_mode.wait_connected()
        began = time.monotonic()
        await slack.stop()
        assert time.monotonic() - began < 2.0
        assert slack.socket_mode.connected == 0
    finally:
        await cast(Any, socket).close()


async def test_socket_needs_an_issued_ticket(slack: SlackStandIn) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{slack.socket_mode.base_ws_url}/link/?ticket=forged")
    assert refused.value.status == 401


async def test_bolt_app_over_socket_mode_sees_mentions_clicks_and_submissions(
    slack: SlackStandIn,
) -> None:
    app = AsyncApp(
        token=slack.bot_token,
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.base_url),
    )
    seen: list[str] = []

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any], say: Any) -> None:
        seen.append(event["text"])
        await say(text="looking", thread_ts=event["ts"])

    @app.action("approve")
    async def approved(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        seen.append(f"approve {body['actions'][0]['value']} by {body['user']['id']}")

    @app.view("reject")
    async def rejected(ack: Any, view: dict[str, Any]) -> None:
        seen.append(view["state"]["values"]["why"]["text"]["value"])
        await ack(response_action="errors", errors={"why": "say more"})

    handler = AsyncSocketModeHandler(app, slack.app_token)
    await cast(Any, handler).connect_async()
    try:
        body = slack.mention(INC, "U0ALICE", "why?")
        await slack.socket_mode.deliver("events_api", body)
        for _ in range(100):
            if len(slack.thread(INC, body["event"]["ts"])) == 2:
                break
            await asyncio.sleep(0.02)
        reply = slack.thread(INC, body["event"]["ts"])[1]
        assert reply.text == "looking"
        assert reply.user == slack.bot_user_id

        await slack.socket_mode.deliver(
            "interactive", slack.click("U0ALICE", INC, reply.ts, "approve", "42")
        )
        submitted = await slack.socket_mode.deliver(
            "interactive", slack.submit("U0ALICE", "reject", "42", {"why": {"text": "no"}})
        )
        assert submitted["payload"] == {"response_action": "errors", "errors": {"why": "say more"}}
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.02)
        assert seen == ["<@U0AOIBOT> why?", "approve 42 by U0ALICE", "no"]
    finally:
        await cast(Any, handler).close_async()


# -- payloads and signatures --------------------------------------------------------


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = json.dumps(mention_event(INC, "U0ALICE", "hi", ts="1.1", event_id="Ev1")).encode()
    headers = signed_headers("s3cret", body)
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, headers)
    assert headers["Content-Type"] == "application/json"
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b" ", headers)
    old = signed_headers("s3cret", body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, old)
    form = signed_headers("s3cret", form_body({"type": "block_actions"}))
    assert form["Content-Type"] == "application/x-www-form-urlencoded"


def _bolt_request(body: str, secret: str) -> AsyncBoltRequest:
    headers: dict[str, str | Sequence[str]] = dict(signed_headers(secret, body.encode()))
    return AsyncBoltRequest(body=body, headers=headers)


async def test_bolt_over_http_accepts_signed_payloads(slack: SlackStandIn) -> None:
    app = AsyncApp(
        signing_secret="s3cret",
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.base_url),
    )
    seen: list[str] = []

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any]) -> None:
        seen.append(event.get("thread_ts", "-"))

    @app.action("approve")
    async def approved(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        seen.append(body["container"]["message_ts"])

    event = json.dumps(
        mention_event(INC, "U0ALICE", "hi", ts="2.2", thread_ts="1.1", event_id="Ev1")
    )
    answer = await app.async_dispatch(_bolt_request(event, "s3cret"))
    assert answer.status == 200
    click = form_body(block_action("U0ALICE", INC, "3.3", "approve", "9")).decode()
    answer = await app.async_dispatch(_bolt_request(click, "s3cret"))
    assert answer.status == 200
    forged = await app.async_dispatch(_bolt_request(click, "wrong"))
    assert forged.status == 401
    for _ in range(50):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(seen) == ["1.1", "3.3"]


def test_payload_shapes() -> None:
    body = mention_event(INC, "U0ALICE", "look <@U0AOIBOT> now", ts="2.2", event_id="Ev9")
    assert body["event"]["text"] == "look <@U0AOIBOT> now"
    assert "thread_ts" not in body["event"]
    assert body["authorizations"][0]["user_id"] == "U0AOIBOT"
    assert (body["type"], body["event_id"], body["team_id"]) == (
        "event_callback",
        "Ev9",
        "T0STANDIN",
    )
    click = block_action("U0ALICE", INC, "3.3", "approve", "9", thread_ts="1.1")
    assert click["container"] == {
        "type": "message",
        "message_ts": "3.3",
        "channel_id": INC,
        "is_ephemeral": False,
        "thread_ts": "1.1",
    }
    assert (
        click["actions"][0].items()
        >= {"action_id": "approve", "value": "9", "type": "button"}.items()
    )
    submitted = view_submission(
        "U0ALICE", "reject", "42", {"why": {"text": "no"}, "sel": {"s": {"type": "static_select"}}}
    )
    assert submitted["view"]["state"]["values"] == {
        "why": {"text": {"type": "plain_text_input", "value": "no"}},
        "sel": {"s": {"type": "static_select"}},
    }


async def test_response_url_posts_are_recorded(slack: SlackStandIn, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(
        channel=INC,
        text="x",
        blocks=[
            {
                "type": "actions",
                "block_id": "decide",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "value": "1",
                        "text": {"type": "plain_text", "text": "Approve"},
                    }
                ],
            }
        ],
    )
    click = slack.click("U0ALICE", INC, posted["ts"], "approve", "1")
    assert click["actions"][0]["block_id"] == "decide"
    assert click["message"]["blocks"][0]["block_id"] == "decide"
    answer = await AsyncWebhookClient(click["response_url"]).send(
        text="done", replace_original=True
    )
    assert answer.status_code == 200
    key = click["response_url"].rsplit("/", 1)[1]
    assert slack.responses[key] == [{"text": "done", "replace_original": True}]


@settings(max_examples=60)
@given(length=st.integers(min_value=0, max_value=3100), fill=st.characters())
def test_section_text_limit(length: int, fill: str) -> None:
    text = fill * length
    block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    assert (block_errors([block]) == []) == (1 <= len(text) <= 3000)


def test_benches_import_it_from_the_repository_root() -> None:
    # `python -m bench` runs from the root, where the package is `tests.support.slack_standin`.
    names = (
        "SlackStandIn, SocketModeStandIn, signed_headers, mention_event, block_action,"
        " view_submission"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"from tests.support.slack_standin import {names}"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_CHUNKS = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["markdown_text", "task_update", "plan_update", "blocks", "x"])},
        optional={
            "text": _JSON,
            "id": _JSON,
            "title": _JSON,
            "status": st.sampled_from(["pending", "complete", "done"]) | _JSON,
            "blocks": _JSON,
        },
    ),
    max_size=3,
)
_BLOCKS = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["section", "header", "actions", "context", "input", "markdown"])},
        optional={
            "text": _JSON | st.fixed_dictionaries({"type": st.just("mrkdwn"), "text": _JSON}),
            "elements": _JSON,
            "fields": _JSON,
            "element": _JSON,
            "label": _JSON,
            "accessory": _JSON,
            "block_id": _JSON,
        },
    ),
    max_size=3,
)
_VALUES = (
    _JSON
    | _CHUNKS
    | _BLOCKS
    | st.fixed_dictionaries({"type": st.just("modal"), "title": _JSON, "blocks": _BLOCKS})
    | st.sampled_from([INC, "1700000000.000100", "1700000000.000200", "S0SRE", "[]", "{}"])
)
_KEYS = [
    "channel",
    "channel_id",
    "ts",
    "thread_ts",
    "text",
    "markdown_text",
    "blocks",
    "chunks",
    "metadata",
    "view",
    "trigger_id",
    "status",
    "usergroup",
    "limit",
    "cursor",
    "include_all_metadata",
    "recipient_team_id",
    "recipient_user_id",
    "task_display_mode",
    "user",
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(SlackStandIn.METHODS),
    params=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6),
)
async def test_any_json_gets_a_slack_answer_never_a_crash(
    method: str, params: dict[str, Any]
) -> None:
    async with SlackStandIn(channels={INC: "inc"}) as slack:
        seed = slack.add_message(INC, "U0ALICE", "seed")
        bot = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])
        await bot.chat_startStream(
            channel=INC,
            thread_ts=seed.ts,
            recipient_team_id=slack.team_id,
            recipient_user_id="U0ALICE",
            markdown_text="open stream",
        )
        try:
            response = await bot.api_call(method, json=params)
        except SlackApiError as exc:
            response = exc.response
        assert response.status_code == 200
        assert response["ok"] is True or isinstance(response["error"], str)
        assert slack.internal_errors == []
