"""The Slack app: mentions start or continue incidents, buttons decide, modals label.

``AoiBot`` wires slack-bolt's ``AsyncApp`` to the incident runner, the approval
desk and the feedback desk. Its handlers only validate, de-duplicate and hand
off, so Slack gets its acknowledgement well inside 3 s; the work runs in
tracked tasks. Slack retries and duplicated deliveries carry the same event id,
which the store claims once (a unique key, so it holds across replicas).

Example::

    bot = AoiBot(config, engine=engine, client=make_client(token, base_url=url), model=model,
                 signing_secret=secret)
    await bot.start()
    ...  # serve bot.app over Socket Mode or HTTP (bot.server)
    await bot.stop()
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from agents.llm import ChatModel
from bot import blocks
from bot.approvals import ApprovalDesk, Click
from bot.config import BotConfig
from bot.directory import ChannelDirectory, GroupDirectory
from bot.feedback import LABEL_CALLBACK, FeedbackDesk, parse_command
from bot.incidents import IncidentRunner, Thread
from bot.metrics import BotMetrics
from bot.slack_api import CALL_ERRORS, CountErrors, Poster, SlackUnavailable, unavailable
from bot.text import safe
from store import slack as slack_store
from store.models import Incident, IncidentStatus
from store.types import utcnow

log = logging.getLogger("aoi.bot")

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")
_TS = re.compile(r"^[0-9]{1,12}\.[0-9]{1,9}$")
_ANY = re.compile(r".*", re.DOTALL)
MAX_QUESTION = 4000
_STORE_DOWN = (
    ":warning: I could not handle that just now (my store did not answer). Nothing ran; "
    "mention me again in a minute."
)
MAX_EVENT_ID = 255
MAX_CLOCK_SKEW_S = 300
"""Slack's own bound: a signed request older (or newer) than this is a replay."""


class AoiBot:
    """One bot process: the bolt app, its desks, its background sweeper and its metrics."""

    def __init__(
        self,
        config: BotConfig,
        *,
        engine: Engine,
        client: AsyncWebClient,
        model: ChatModel | None,
        signing_secret: str = "",
        metrics: BotMetrics | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self._secret = signing_secret.encode()
        self.client = client
        self.model = model
        self.metrics = metrics or _counting(client) or BotMetrics()
        _count_into(client, self.metrics)
        self.poster = Poster(client)
        self.channels = ChannelDirectory(client)
        self.groups = GroupDirectory(client, ttl_s=config.group_cache_s)
        self.runner = IncidentRunner(
            engine=engine,
            client=client,
            poster=self.poster,
            config=config,
            model=model,
            metrics=self.metrics,
        )
        self.approvals = ApprovalDesk(
            engine=engine,
            poster=self.poster,
            config=config,
            groups=self.groups,
            metrics=self.metrics,
        )
        self.feedback = FeedbackDesk(
            engine=engine, client=client, poster=self.poster, metrics=self.metrics
        )
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret or None,
            request_verification_enabled=bool(signing_secret),
            process_before_response=False,
        )
        self.slack_connected = False
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._register()
        stats = getattr(model, "stats", None)
        if callable(stats):
            self.metrics.set_model_queue(lambda: int(stats().get("queue_length", 0)))

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token with ``auth.test``, then sweep expired proposals now and then."""
        try:
            identity = await self.client.auth_test()
        except (*CALL_ERRORS, OSError) as exc:
            raise unavailable("auth.test", exc) from None
        self.poster.bot_user_id = str(identity.get("user_id") or "") or None
        self.slack_connected = True
        # Pending approvals live in the store: their buttons work again as they are. What
        # expired while no bot ran gets its message updated now.
        await self._sweep_once()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="aoi-proposal-sweeper")

    async def stop(self, grace_s: float | None = None) -> list[int]:
        """Stop taking events, let work finish within ``grace_s``, interrupt the rest."""
        self.draining = True
        grace = self.config.grace_s if grace_s is None else grace_s
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        interrupted = await self.runner.shutdown(grace)
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=max(grace, 1.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return interrupted

    async def ready(self) -> tuple[bool, str]:
        """For /readyz: connected to Slack, the store answers, and not shutting down."""
        if self.draining:
            return False, "shutting down"
        if not self.slack_connected:
            return False, "not connected to Slack yet"
        try:
            await asyncio.to_thread(_ping, self.engine)
        except Exception as exc:
            return False, f"the store does not answer: {' '.join(str(exc).split())[:200]}"
        return True, "ready"

    def http_refusal(
        self, raw: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> tuple[int, str] | None:
        """Why an HTTP delivery must not reach bolt, as (status, reason); None: hand it on.

        Checked before bolt parses anything, since bolt answers a body it cannot parse
        (broken JSON, a list, bytes that are not UTF-8) or a timestamp that is not a
        number with a 500, which Slack retries. Unsigned, mis-signed, stale or future
        requests get 401 whatever their body; signed ones that are not a JSON object
        (or a form whose ``payload`` is one) get 400.
        """
        if self._secret:
            stamp = _header(headers, "X-Slack-Request-Timestamp")
            signature = _header(headers, "X-Slack-Signature")
            clock = time.time() if now is None else now
            if not (
                stamp.isascii()
                and stamp.isdigit()
                and len(stamp) <= 12
                and signature.isascii()
                and 0 < len(signature) <= 200
            ):
                return 401, "missing or malformed signature headers"
            if abs(clock - int(stamp)) > MAX_CLOCK_SKEW_S:
                return 401, "stale or future request timestamp"
            # Slack signs the raw bytes: "v0:<timestamp>:<body>", HMAC-SHA256, hex.
            mac = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
            if not hmac.compare_digest("v0=" + mac.hexdigest(), signature):
                return 401, "invalid signature"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "the body is not UTF-8"
        content_type = _header(headers, "Content-Type").split(";")[0].strip().lower()
        if not text.strip():
            return 400, "the body is empty"
        try:
            if content_type == "application/json" or text.startswith("{"):
                body: object = json.loads(text)
            else:
                form = dict(parse_qsl(text, keep_blank_values=True))
                body = json.loads(form["payload"]) if "payload" in form else form
        except ValueError:
            return 400, "the body is not valid JSON"
        if not isinstance(body, dict):
            return 400, "the body is not a JSON object"
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            await self._sweep_once()

    async def _sweep_once(self) -> None:
        try:
            await self.approvals.sweep()
        except Exception:
            log.exception(
                "the proposal sweep failed; it runs again in %ss", self.config.sweep_interval_s
            )

    def _track(self, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("%s failed: %s", task.get_name(), error, exc_info=error)

    # -- handlers ----------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(self._guard)
        app.event("app_mention")(self._on_mention)
        app.action("aoi_approve")(self._on_click(self.approvals.approve, "approve"))
        app.action("aoi_reject")(self._on_click(self.approvals.reject, "reject"))
        app.action("aoi_feedback_correct")(self._on_feedback_correct)
        app.action("aoi_feedback_wrong")(self._on_feedback_wrong)
        app.view(LABEL_CALLBACK)(self._on_label)
        app.event("message")(self._ignore)
        # Last, so they match only what nothing above took: an interaction bolt finds no
        # listener for gets no ack, and Slack shows the person an error and retries it.
        app.action(_ANY)(self._unhandled)
        app.view(_ANY)(self._unhandled)
        app.error(self._on_error)

    async def _ignore(self, body: dict[str, Any]) -> None:
        return None

    async def _guard(self, body: dict[str, Any], next: Callable[[], Awaitable[Any]]) -> Any:
        """Acknowledge, and go no further with, what no handler of ours should see.

        Bolt's own matchers fail on payloads not in Slack's shape (an ``actions`` that is
        not a list of actions, a ``view`` that is not an object) and find no listener for
        kinds we do not handle (shortcuts, slash commands, other events); either way no
        ack goes back, and Slack shows the person an error and delivers it again.
        """
        kind = _unwanted(body)
        if kind is None:
            return await next()
        self.metrics.event(kind)
        log.info("acknowledged and ignored a %s request", kind)
        return BoltResponse(status=200, body="")

    async def _unhandled(self, ack: Callable[..., Awaitable[None]]) -> None:
        await ack()
        self.metrics.event("unhandled")

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("a Slack request failed in a handler: %s", safe(str(error), 300))

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        event_id = _text(body.get("event_id"))
        channel = _text(event.get("channel"))
        user = _text(event.get("user"))
        ts = _text(event.get("ts"))
        thread_ts = _text(event.get("thread_ts")) or ts
        team = _text(body.get("team_id")) or _text(event.get("team"))
        if not (
            0 < len(event_id) <= MAX_EVENT_ID
            and _SLACK_ID.fullmatch(channel)
            and _SLACK_ID.fullmatch(user)
            and _TS.fullmatch(ts)
            and _TS.fullmatch(thread_ts)
        ):
            self.metrics.event("malformed")
            log.warning("ignored a malformed app_mention (event id %r)", event_id[:40])
            return
        thread = Thread(team_id=team, channel_id=channel, thread_ts=thread_ts, user_id=user)
        try:
            claimed = await asyncio.to_thread(
                slack_store.claim_event, self.engine, event_id, kind="app_mention"
            )
        except Exception:  # the store is down: say so rather than drop the mention silently
            log.exception("could not record event %s", event_id[:40])
            self.metrics.event("store_error")
            await self._ephemeral(thread, _STORE_DOWN)
            return
        if not claimed:
            self.metrics.event("duplicate")
            return
        self.metrics.event("app_mention")
        text = _MENTION.sub(" ", _text(event.get("text"))).strip()[:MAX_QUESTION]
        self._track(self._mention(thread, text, event_id), f"aoi-mention-{event_id}")

    async def _mention(self, thread: Thread, text: str, event_id: str) -> None:
        try:
            await self._mention_checked(thread, text, event_id)
        except Exception:
            log.exception("could not handle the mention %s", event_id[:40])
            await self._reply(thread, _STORE_DOWN, key=f"aoi-reply-{event_id}-failed")

    async def _mention_checked(self, thread: Thread, text: str, event_id: str) -> None:
        reply_key = f"aoi-reply-{event_id}"
        if self.draining or not self.runner.accepting:
            await self._reply(
                thread, "I am restarting: mention me again in a minute.", key=reply_key
            )
            return
        found = await self.channels.name(thread.channel_id)
        if found is None and thread.channel_id not in self.config.incident_channel_ids:
            await self._ephemeral(
                thread,
                "Sorry, Slack would not tell me about this channel just now, so I cannot "
                "tell whether it is an incident channel; mention me again in a minute.",
            )
            return
        name = found or ""
        if not self.config.is_incident_channel(thread.channel_id, name):
            await self._ephemeral(
                thread,
                "Sorry, I only investigate in incident channels "
                f"({self.config.describe_channels()}). Open or join one and mention me there.",
            )
            return
        existing = await asyncio.to_thread(
            slack_store.thread_incident, self.engine, thread.channel_id, thread.thread_ts
        )
        command = parse_command(text)
        if command is not None:
            await self._command(thread, command.name, command.argument, existing, reply_key)
            return
        if not text:
            await self._reply(thread, blocks.help_text(), key=reply_key)
            return
        route = self.config.route_for(thread.channel_id, name)
        if route is None:
            await self._reply(
                thread,
                "No cluster is configured for this channel, so I cannot investigate here "
                "(an administrator maps channels to clusters with AOI_CLUSTER_ROUTES).",
                key=reply_key,
            )
            return
        incident_id: int | None = None
        if existing is not None:
            refusal = self._follow_up_refusal(thread, existing)
            if refusal is not None:
                await self._reply(thread, refusal, key=reply_key)
                return
            incident_id = existing.id
            if existing.status is IncidentStatus.INVESTIGATING and existing.id is not None:
                # Stale: the replica that ran it stopped answering. Compare-and-set, so of
                # several replicas one takes it over.
                await asyncio.to_thread(
                    slack_store.mark_interrupted,
                    self.engine,
                    existing.id,
                    "its investigation stopped answering (a replica died?)",
                )
        try:
            self.runner.start(thread, text, route, incident_id=incident_id, event_id=event_id)
        except RuntimeError as exc:
            await self._reply(thread, f"{exc}.", key=reply_key)

    def _follow_up_refusal(self, thread: Thread, incident: Incident) -> str | None:
        if incident.status is IncidentStatus.CLOSED:
            return (
                f"Incident #{incident.id} was closed as resolved; I do not reopen it. Start a "
                "new thread for a new problem."
            )
        running_here = self.runner.run_in(thread) is not None
        stale = incident.updated_at < utcnow() - timedelta(
            seconds=self.config.stale_investigation_s
        )
        if running_here or (incident.status is IncidentStatus.INVESTIGATING and not stale):
            return (
                f"I am still investigating incident #{incident.id}; mention me again once the "
                "diagnosis is posted and I will continue from there."
            )
        return None

    async def _command(
        self,
        thread: Thread,
        name: str,
        argument: str,
        existing: Incident | None,
        key: str,
    ) -> None:
        if name == "help":
            await self._reply(thread, blocks.help_text(), key=key)
        elif name == "status":
            await self._reply(
                thread, await self.feedback.status(existing.id if existing else None), key=key
            )
        elif existing is None or existing.id is None:
            await self._reply(thread, "There is no incident in this thread to resolve.", key=key)
        elif self.runner.run_in(thread) is not None:
            await self._reply(
                thread,
                f"I am still investigating incident #{existing.id}; resolve it once I am done.",
                key=key,
            )
        else:
            policy = self.config.policy
            groups = await self.groups.groups_of(thread.user_id, policy.groups)
            allowed = (
                thread.user_id == existing.requester
                or policy.admitted_by(thread.user_id, groups) is not None
            )
            reply = await self.feedback.resolved(
                incident_id=existing.id, user=thread.user_id, cause=argument, allowed=allowed
            )
            await self._reply(thread, reply, key=key)

    def _on_click(
        self, decide: Callable[[Click], Awaitable[None]], kind: str
    ) -> Callable[..., Awaitable[None]]:
        async def handler(ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
            await ack()
            click = _click(body)
            if click is None:
                self.metrics.event("malformed")
                log.warning("ignored a malformed %s click", kind)
                return
            self._track(decide(click), f"aoi-{kind}-{safe(str(click.value), 20)}")

        return handler

    async def _on_feedback_correct(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]
    ) -> None:
        await ack()
        click = _click(body)
        if click is not None:
            self._track(
                self.feedback.correct(
                    user=click.user,
                    channel=click.channel,
                    value=click.value,
                    thread_ts=click.thread_ts,
                ),
                "aoi-feedback",
            )

    async def _on_feedback_wrong(
        self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]
    ) -> None:
        await ack()
        click = _click(body)
        trigger = _text(body.get("trigger_id"))
        if click is not None and trigger:
            # views.open must follow the click within 3 s: no task queue in between.
            await self.feedback.wrong(
                user=click.user,
                channel=click.channel,
                value=click.value,
                thread_ts=click.thread_ts,
                trigger_id=trigger,
            )

    async def _on_label(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        user = _text(_field(body, "user").get("id"))
        view = _field(body, "view")
        values = _field(view, "state").get("values")
        if not _SLACK_ID.fullmatch(user) or not isinstance(values, dict):
            await ack(response_action="errors", errors={"component": "This form is malformed."})
            return
        errors = await self.feedback.submit_label(
            user=user, private_metadata=_text(view.get("private_metadata")), values=values
        )
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    async def _reply(self, thread: Thread, text: str, *, key: str) -> None:
        try:
            await self.poster.post(
                thread.channel_id, thread_ts=thread.thread_ts, text=text, key=key
            )
        except SlackUnavailable as exc:
            log.warning("could not reply in %s: %s", thread.key, exc)

    async def _ephemeral(self, thread: Thread, text: str) -> None:
        try:
            await self.poster.ephemeral(
                thread.channel_id, thread.user_id, text, thread_ts=thread.thread_ts
            )
        except SlackUnavailable as exc:
            log.warning("could not answer %s: %s", thread.user_id, exc)


_EVENTS = frozenset({"app_mention", "message"})


def _unwanted(body: object) -> str | None:
    """Why the handlers must not get this request ("malformed", "unhandled"), or None."""
    if not isinstance(body, dict):
        return "malformed"
    if "command" in body:
        return "unhandled"  # a slash command: the app has none
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "malformed"
        return None if event["type"] in _EVENTS else "unhandled"
    if kind == "block_actions":
        actions = body.get("actions")
        if not (
            isinstance(body.get("user"), dict)
            and isinstance(actions, list)
            and actions
            and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
            and all(isinstance(a.get("block_id", ""), str) for a in actions)
        ):
            return "malformed"
        return None
    if kind == "view_submission":
        view = body.get("view")
        if not (
            isinstance(body.get("user"), dict)
            and isinstance(view, dict)
            and isinstance(view.get("callback_id"), str)
        ):
            return "malformed"
        return None
    if kind in ("url_verification", "ssl_check"):
        return None  # bolt answers these itself, before this guard
    return "unhandled"


def _counting(client: AsyncWebClient) -> BotMetrics | None:
    """The metrics the client's retry handlers already count Slack errors into, if any."""
    return next((h.metrics for h in client.retry_handlers if isinstance(h, CountErrors)), None)


def _count_into(client: AsyncWebClient, metrics: BotMetrics) -> None:
    """Make the client count its failed attempts (429s, errors) into ``metrics``.

    A client built without them (``make_client`` with no ``metrics``) would leave the
    bot's slack_rate_limited_total and slack_api_errors_total at zero. The counter goes
    first: slack_sdk asks the handlers in order and stops at the first that retries.
    """
    if not any(isinstance(h, CountErrors) and h.metrics is metrics for h in client.retry_handlers):
        client.retry_handlers = [CountErrors(metrics), *client.retry_handlers]


def _text(value: object) -> str:
    """A payload field that should be a string: itself, or "" for anything else."""
    return value if isinstance(value, str) else ""


def _field(body: object, key: str) -> dict[str, Any]:
    """A payload field that should be an object: itself, or {} for anything else."""
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, dict) else {}


def _click(body: dict[str, Any]) -> Click | None:
    """The clicking user, the channel, the message and the button's value, validated.

    Anything not in Slack's shape (a field of the wrong type, several actions) is None.
    """
    user = _text(_field(body, "user").get("id"))
    channel = _text(_field(body, "channel").get("id"))
    message = _field(body, "message")
    message_ts = _text(_field(body, "container").get("message_ts")) or _text(message.get("ts"))
    thread_ts = _text(message.get("thread_ts"))
    actions = body.get("actions") if isinstance(body, dict) else None
    if not (isinstance(actions, list) and len(actions) == 1 and isinstance(actions[0], dict)):
        return None
    if not (
        _SLACK_ID.fullmatch(user) and _SLACK_ID.fullmatch(channel) and _TS.fullmatch(message_ts)
    ):
        return None
    if thread_ts and not _TS.fullmatch(thread_ts):
        thread_ts = ""
    return Click(
        user=user,
        channel=channel,
        message_ts=message_ts,
        value=actions[0].get("value"),
        thread_ts=thread_ts,
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), "")
    return value if isinstance(value, str) else ""


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
