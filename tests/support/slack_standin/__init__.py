"""A loopback Slack for tests and benches: the Web API, Socket Mode, and signed events.

`SlackStandIn` is an aiohttp server on 127.0.0.1 (a free port) that slack-sdk
and slack-bolt talk to through ``base_url``; it keeps the workspace in memory
(channels, threads, streams, statuses, modals), records every call, and injects
faults. `SocketModeStandIn` (``SlackStandIn.socket_mode``) is the websocket that
apps.connections.open hands out. The payload helpers build what Slack would send
the bot. Nothing here mocks slack-sdk: the real client does real HTTP.
"""

from .limits import block_errors, view_errors
from .payloads import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    block_action,
    form_body,
    mention_event,
    signed_headers,
    view_submission,
)
from .socket_mode import SocketModeStandIn
from .state import Call, Message
from .web import SlackStandIn

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "Call",
    "Message",
    "SlackStandIn",
    "SocketModeStandIn",
    "block_action",
    "block_errors",
    "form_body",
    "mention_event",
    "signed_headers",
    "view_errors",
    "view_submission",
]
