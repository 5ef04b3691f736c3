"""Request bodies Slack would send the bot: events, interactions, and their signature.

They are plain dicts in Slack's shapes, usable over HTTP (sign the JSON with
`signed_headers`) or as Socket Mode payloads (`SocketModeStandIn.deliver`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0STANDIN"
TEAM_DOMAIN = "standin"
BOT_USER_ID = "U0AOIBOT"
BOT_ID = "B0AOIBOT"
APP_ID = "A0AOISTAND"
VERIFICATION_TOKEN = "standin-verification-token"


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs an HTTP request with (`timestamp` defaults to now).

    The content type follows the body: JSON for ``{...}``, a form otherwise
    (interactive payloads arrive as ``payload=<json>``).
    """
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    is_json = body.lstrip().startswith(b"{")
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/json" if is_json else "application/x-www-form-urlencoded",
    }


def form_body(payload: Mapping[str, Any]) -> bytes:
    """An interactive payload as Slack posts it over HTTP: ``payload=<json>``, form-encoded."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def mention_event(
    channel: str,
    user: str,
    text: str,
    *,
    ts: str,
    thread_ts: str | None = None,
    event_id: str,
    team_id: str = TEAM_ID,
    bot_user_id: str = BOT_USER_ID,
    api_app_id: str = APP_ID,
    event_time: int | None = None,
) -> dict[str, Any]:
    """An Events API ``event_callback`` body carrying an ``app_mention``.

    `text` gets ``<@bot_user_id> `` in front unless it already mentions the bot.
    """
    mention = f"<@{bot_user_id}>"
    full_text = text if mention in text else f"{mention} {text}"
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": full_text,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
        "client_msg_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}/{ts}")),
        "blocks": [
            {
                "type": "rich_text",
                "block_id": "mention",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": full_text}]}
                ],
            }
        ],
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-standin-{event_id}",
    }


def block_action(
    user: str,
    channel: str,
    message_ts: str,
    action_id: str,
    value: str,
    *,
    trigger_id: str = "T1",
    thread_ts: str | None = None,
    block_id: str = "actions",
    response_url: str = "",
    message_text: str = "",
    message_blocks: list[dict[str, Any]] | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
) -> dict[str, Any]:
    """The interactive payload of a button click on a bot message."""
    now = f"{time.time():.6f}"
    message: dict[str, Any] = {
        "type": "message",
        "ts": message_ts,
        "user": bot_user_id,
        "bot_id": BOT_ID,
        "text": message_text,
        "blocks": message_blocks or [],
    }
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
        container["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel.lower()},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": now,
            }
        ],
    }


def _state_values(values: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    # A bare string is the value of a plain_text_input; dicts pass as Slack's own shape.
    return {
        block_id: {
            action_id: (
                {"type": "plain_text_input", "value": v} if isinstance(v, str) or v is None else v
            )
            for action_id, v in actions.items()
        }
        for block_id, actions in values.items()
    }


def view_submission(
    user: str,
    callback_id: str,
    private_metadata: str,
    values: Mapping[str, Mapping[str, Any]],
    *,
    view_id: str = "V0STANDIN",
    trigger_id: str = "T2",
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    bot_id: str = BOT_ID,
    blocks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The interactive payload of a modal's submission.

    `values` is ``{block_id: {action_id: value}}``; a string value stands for a
    plain_text_input's, a dict is taken as Slack's element state as it is.
    """
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": _state_values(values)},
            "hash": f"{int(time.time())}.standin",
            "title": {"type": "plain_text", "text": "Stand-in"},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": {"type": "plain_text", "text": "Submit"},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": api_app_id,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": bot_id,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
