"""The Socket Mode side: the websocket whose URL apps.connections.open hands out.

A connection presents a ticket the stand-in issued, gets Slack's ``hello`` first,
then envelopes from `deliver`; every JSON frame the client sends back that names
an ``envelope_id`` is an ack. Pings are answered by aiohttp itself (the SDK's
"sdk-ping-pong:<time>" payload comes back in the pong).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})
# Slack lets these answer with a payload in the ack (modal errors, slash command replies).
_RESPONSE_PAYLOAD_TYPES = frozenset({"view_submission", "block_suggestion"})


class SocketModeStandIn:
    """Socket Mode connections of the stand-in app, and what went over them.

    `acks` are the clients' acks as sent (``{"envelope_id": ..., "payload"?: ...}``);
    `delivered` the envelopes sent; `received` every other JSON frame.
    """

    path = "/link/"

    def __init__(self, *, app_id: str, ack_timeout_s: float = 5.0) -> None:
        self.app_id = app_id
        self.ack_timeout_s = ack_timeout_s
        self.base_ws_url = ""
        self.acks: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.connections_opened = 0
        self.tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._closing = False

    # -- what apps.connections.open hands out ---------------------------------

    def issue_url(self) -> str:
        """A fresh ``ws://.../link/?ticket=...`` URL (what apps.connections.open returns)."""
        ticket = uuid.uuid4().hex
        self.tickets.add(ticket)
        return f"{self.base_ws_url}{self.path}?ticket={ticket}"

    @property
    def connected(self) -> int:
        """How many sockets are open now."""
        return sum(1 for ws in self._sockets if not ws.closed)

    async def wait_connected(self, *, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until `count` connections have been opened in all (reconnects count)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.connections_opened >= count), timeout_s
            )

    async def deliver(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str | None = None,
        accepts_response_payload: bool | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one envelope on the newest open socket and return the client's ack.

        Waits for a connection first. `retry_reason` defaults to "" on a first
        attempt and "timeout" on a retry, as Slack sends them. Raises TimeoutError
        when no socket opens or no ack comes within `timeout_s` (default
        `ack_timeout_s`; Slack itself waits 3 s).
        """
        if envelope_type not in ENVELOPE_TYPES:
            raise ValueError(f"unknown envelope type {envelope_type!r}")
        limit = self.ack_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands" or (
                envelope_type == "interactive" and payload.get("type") in _RESPONSE_PAYLOAD_TYPES
            )
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason
            if retry_reason is not None
            else ("timeout" if retry_attempt else ""),
        }
        ws = await self._newest_socket(deadline)
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = ack
        try:
            await ws.send_str(json.dumps(envelope))
            self.delivered.append(envelope)
            return await asyncio.wait_for(ack, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise TimeoutError(
                f"no ack for {envelope_type} envelope {envelope_id} within {limit} s"
            ) from None
        finally:
            self._pending.pop(envelope_id, None)

    async def send_raw(self, message: dict[str, Any]) -> None:
        """Send any JSON frame on the newest open socket (waits up to `ack_timeout_s`)."""
        ws = await self._newest_socket(time.monotonic() + self.ack_timeout_s)
        await ws.send_str(json.dumps(message))

    async def disconnect(self, *, reason: str = "refresh_requested", hard: bool = False) -> None:
        """End the open connections the way Slack does.

        Soft (default): send ``{"type": "disconnect", "reason": ...}`` and leave the
        socket open; the SDK fetches a new URL, connects, then closes the old one.
        `hard`: close every socket with a close frame (the SDK reconnects on it).
        """
        for ws in list(self._sockets):
            if ws.closed:
                continue
            if hard:
                await ws.close(code=1001, message=reason.encode())
            else:
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "disconnect",
                            "reason": reason,
                            "debug_info": {"host": "applink-standin"},
                        }
                    )
                )

    async def close(self) -> None:
        """Close every socket and refuse new ones (the stand-in is stopping)."""
        self._closing = True
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.close(code=1001, message=b"server shutting down")
        for ack in self._pending.values():
            if not ack.done():
                ack.cancel()

    # -- the websocket endpoint --------------------------------------------------

    async def _newest_socket(self, deadline: float) -> web.WebSocketResponse:
        def newest() -> web.WebSocketResponse | None:
            live = [ws for ws in self._sockets if not ws.closed]
            return live[-1] if live else None

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: newest() is not None),
                    max(0.0, deadline - time.monotonic()),
                )
            except TimeoutError:
                raise TimeoutError("no Socket Mode connection is open") from None
        ws = newest()
        assert ws is not None
        return ws

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            return web.Response(status=503, text="shutting down")
        if request.query.get("ticket") not in self.tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections_opened += 1
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": self.connected,
                        "debug_info": {
                            "host": "applink-standin",
                            "build_number": 1,
                            "approximate_connection_time": 18060,
                        },
                        "connection_info": {"app_id": self.app_id},
                    }
                )
            )
            await self._notify()
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                self._receive(frame.data)
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    def _receive(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.received.append({"unparsed": data})
            return
        if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
            self.acks.append(message)
            pending = self._pending.get(message["envelope_id"])
            if pending is not None and not pending.done():
                pending.set_result(message)
        else:
            self.received.append(message if isinstance(message, dict) else {"value": message})
