"""Investigations as guarded background tasks, one per incident thread.

A mention is acknowledged at once; the investigation runs in a named task that
streams the agents' events into the thread, posts the diagnosis and each
proposal as Block Kit messages, and records those messages in the store so any
replica (or this one after a restart) can update them when someone clicks.
Nothing here blocks the event loop: store calls run in threads, the runtime
keeps its own Kubernetes, telemetry and model calls off the loop.

On shutdown the runner stops taking new work, lets running investigations
finish within the grace period, then cancels the rest: each cancelled one is
marked INTERRUPTED in the store and says so in its thread, and a later mention
in that thread continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import Engine

from agents.events import AnyEvent, DiagnosisEvent, Finished, ProposalEvent
from agents.executor import Provenance
from agents.llm import ChatModel
from agents.runtime import investigate
from agents.trajectory import IncidentContext
from bot import blocks
from bot.config import BotConfig, ClusterRoute
from bot.logs import incident_scope
from bot.metrics import BotMetrics
from bot.slack_api import TRANSIENT_ERRORS, Poster, SlackUnavailable
from bot.stream import ThreadStream
from bot.text import safe
from store import slack as slack_store
from store.db import session_scope
from store.models import Proposal

log = logging.getLogger("aoi.bot")

POST_RETRY_S = (2.0, 5.0, 10.0)
FIRST_MESSAGE_WAIT_S = 2.0
"""How long an investigation waits for its first thread message before it reads the cluster."""
"""Waits before posting a diagnosis or proposal again after Slack refused it for a while."""


@dataclass(frozen=True)
class Thread:
    """Where an incident lives in Slack, and who asked."""

    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel_id, self.thread_ts)


@dataclass
class RunRecord:
    """What the runner knows of one running investigation (for status and the bench)."""

    thread: Thread
    task: asyncio.Task[None]
    started: float
    incident_id: int | None = None
    stream: ThreadStream | None = None
    run_key: str = ""
    """Names this run's messages: the mention's event id (claimed once, across replicas), so
    a follow-up's diagnosis is a message of its own, not the first run's found again."""


class IncidentRunner:
    """Starts, tracks and stops investigations; at most one at a time per thread."""

    def __init__(
        self,
        *,
        engine: Engine,
        client: AsyncWebClient,
        poster: Poster,
        config: BotConfig,
        model: ChatModel | None,
        metrics: BotMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._client = client
        self._poster = poster
        self._config = config
        self._model = model
        self._metrics = metrics
        self._clock = clock
        self._runs: dict[tuple[str, str], RunRecord] = {}
        # At most this many investigate at once; the rest wait their turn, told so.
        self._slots = asyncio.Semaphore(max(1, config.max_investigations))
        self.accepting = True
        self.finished: list[RunRecord] = []
        """Records of finished runs, newest last (bounded; the bench reads first-message times)."""

    @property
    def running(self) -> int:
        return len(self._runs)

    def run_in(self, thread: Thread) -> RunRecord | None:
        return self._runs.get(thread.key)

    def start(
        self,
        thread: Thread,
        question: str,
        route: ClusterRoute,
        *,
        incident_id: int | None = None,
        event_id: str = "",
    ) -> RunRecord:
        """Start investigating ``question`` in ``thread``; returns at once."""
        if not self.accepting:
            raise RuntimeError("the bot is shutting down and takes no new investigations")
        if thread.key in self._runs:
            raise RuntimeError(f"an investigation is already running in thread {thread.key}")
        if len(self._runs) >= 3 * max(1, self._config.max_investigations):
            raise RuntimeError(
                f"I am at capacity ({len(self._runs)} investigations running or waiting); "
                "mention me again in a few minutes"
            )
        name = f"aoi-incident-{thread.channel_id}-{thread.thread_ts}"
        task = asyncio.create_task(
            self._guarded(thread, question, route, incident_id, event_id), name=name
        )
        record = RunRecord(
            thread=thread,
            task=task,
            started=self._clock(),
            run_key=event_id or f"run-{uuid.uuid4().hex[:16]}",
        )
        self._runs[thread.key] = record
        self._metrics.investigation_started()
        return record

    async def _guarded(
        self,
        thread: Thread,
        question: str,
        route: ClusterRoute,
        incident_id: int | None,
        event_id: str,
    ) -> None:
        record = self._runs[thread.key]
        status = "FAILED"
        try:
            if self._slots.locked():
                await self._say(
                    thread,
                    f":hourglass: {self._config.max_investigations} investigations are "
                    "running; yours starts as soon as one finishes.",
                    key=f"aoi-queued-{thread.channel_id}-{thread.thread_ts}-{record.run_key}",
                )
            async with self._slots:
                status = await self._investigate(record, question, route, incident_id, event_id)
        except asyncio.CancelledError:
            status = "INTERRUPTED"
            await self._interrupted(record)
            raise
        except Exception as exc:  # the guard: one broken investigation never takes the bot down
            log.exception("investigation in %s failed", thread.key)
            await self._say(
                thread,
                f":warning: I hit an internal error and stopped: {safe(str(exc), 300)}. "
                "Nothing was changed; mention me again to retry.",
                key=f"aoi-error-{thread.channel_id}-{thread.thread_ts}-{event_id}",
            )
        finally:
            self._runs.pop(thread.key, None)
            self.finished.append(record)
            del self.finished[:-200]
            self._metrics.investigation_finished(status, self._clock() - record.started)

    async def _investigate(
        self,
        record: RunRecord,
        question: str,
        route: ClusterRoute,
        incident_id: int | None,
        event_id: str,
    ) -> str:
        thread = record.thread
        ctx = IncidentContext(
            question=question,
            requester=thread.user_id,
            cluster=route.name,
            team_id=thread.team_id,
            channel_id=thread.channel_id,
            thread_ts=thread.thread_ts,
            incident_id=incident_id,
        )
        stream = ThreadStream(
            self._client,
            channel=thread.channel_id,
            thread_ts=thread.thread_ts,
            team_id=thread.team_id,
            user_id=thread.user_id,
            min_update_interval_s=self._config.stream_min_interval_s,
            status_refresh_s=self._config.status_refresh_s,
            poster=self._poster,
        )
        record.stream = stream
        status = "FAILED"
        events = investigate(
            ctx,
            engine=self._engine,
            cluster=route.access,
            model=self._model,
            limits=self._config.limits,
        )
        with contextlib.ExitStack() as scope:
            # The status call overlaps the incident's first store write (both wait on a
            # busy loop and thread pool under load); it still lands before the first message.
            starting = asyncio.ensure_future(stream.start())
            try:
                async for event in events:
                    first = record.incident_id is None
                    if first:
                        await starting
                        record.incident_id = event.incident_id
                        scope.enter_context(incident_scope(event.incident_id))
                    await stream.event(event)
                    if first:
                        # The first thread message goes out before the analyzers start: with
                        # many incidents at once their reads take the CPU and the thread
                        # pool, and every later mention's first message waited behind them.
                        await stream.first_message(FIRST_MESSAGE_WAIT_S)
                    if first and event_id:
                        await asyncio.to_thread(
                            slack_store.bind_event, self._engine, event_id, event.incident_id
                        )
                    await self._publish(event, record)
                    if isinstance(event, Finished):
                        status = event.status
            except asyncio.CancelledError:
                # Cancelled between two events: hand the cancellation to the runtime, so
                # the incident is recorded INTERRUPTED (not abandoned) with its steps.
                with contextlib.suppress(BaseException):
                    await events.athrow(asyncio.CancelledError())
                raise
            finally:
                await events.aclose()
                if not starting.done():  # the runtime failed before its first event
                    await asyncio.wait([starting])
                if not starting.cancelled():
                    starting.exception()  # retrieved here; finish() raises a writer failure
                await stream.finish()
        return status

    async def _publish(self, event: AnyEvent, record: RunRecord) -> None:
        """The diagnosis and each proposal get a message of their own, with buttons."""
        if isinstance(event, DiagnosisEvent):
            await self._post_diagnosis(event, record)
        elif isinstance(event, ProposalEvent):
            await self._post_proposal(event, record.thread)

    async def _post_diagnosis(self, event: DiagnosisEvent, record: RunRecord) -> None:
        thread = record.thread
        body = blocks.diagnosis_blocks(
            event,
            evidence=list(getattr(event, "evidence", []) or []),
            ruled_out=list(getattr(event, "ruled_out", []) or []),
            incident_id=event.incident_id,
        )
        # Every run of an incident (a follow-up too) ends with a diagnosis of its own.
        key = f"aoi-diagnosis-{event.incident_id}-{record.run_key}"
        text = f"Diagnosis for incident #{event.incident_id}: {safe(event.summary, 200)}"
        await self._post_recorded(
            thread, text, body, key=key, kind="diagnosis", incident_id=event.incident_id
        )

    async def _post_proposal(self, event: ProposalEvent, thread: Thread) -> None:
        row, provenance = await asyncio.to_thread(_proposal_row, self._engine, event.proposal_id)
        if row is None:
            return
        body = blocks.proposal_blocks_from_row(row, provenance)
        text = f"Proposal #{event.proposal_id}: {safe(event.command, 200)} (approve or reject)"
        await self._post_recorded(
            thread,
            text,
            body,
            key=f"aoi-proposal-{event.proposal_id}",
            kind="proposal",
            incident_id=event.incident_id,
            proposal_id=event.proposal_id,
        )

    async def _post_recorded(
        self,
        thread: Thread,
        text: str,
        body: list[dict[str, object]],
        *,
        key: str,
        kind: str,
        incident_id: int,
        proposal_id: int | None = None,
    ) -> None:
        for wait in (*POST_RETRY_S, None):
            try:
                ts = await self._poster.post(
                    thread.channel_id, thread_ts=thread.thread_ts, text=text, blocks=body, key=key
                )
                break
            except SlackUnavailable as exc:
                if wait is None or not _passing(exc):
                    # The row is in the store either way: `aoi` can still show it.
                    log.error("could not post the %s message: %s", kind, exc)
                    return
                # Past the client's own retries (a 429 storm, Slack down for a while): the
                # buttons matter, so wait and post again (the same key: never twice).
                log.warning("could not post the %s message (%s); again in %ss", kind, exc, wait)
                await asyncio.sleep(wait)
        await asyncio.to_thread(
            slack_store.record_message,
            self._engine,
            incident_id=incident_id,
            kind=kind,
            channel_id=thread.channel_id,
            ts=ts,
            proposal_id=proposal_id,
            post_key=key,
        )

    async def _interrupted(self, record: RunRecord) -> None:
        if record.incident_id is None:
            # Still waiting for a slot (or just starting): nothing ran, nothing is stored.
            await self._say(
                record.thread,
                ":pause_button: I was restarted before I could start on this; mention me "
                "again to investigate.",
                key=f"aoi-interrupted-{record.thread.channel_id}-{record.thread.thread_ts}-"
                f"{record.run_key}",
            )
            return
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                slack_store.mark_interrupted,
                self._engine,
                record.incident_id,
                "the bot stopped before the investigation finished",
            )
        await self._say(
            record.thread,
            f":pause_button: I was stopped before I finished incident #{record.incident_id}; "
            "it is marked *interrupted*. Mention me in this thread to continue it.",
            key=f"aoi-interrupted-{record.incident_id}-{record.run_key}",
        )

    async def _say(self, thread: Thread, text: str, *, key: str) -> None:
        try:
            await self._poster.post(
                thread.channel_id, thread_ts=thread.thread_ts, text=text, key=key
            )
        except SlackUnavailable as exc:
            log.error("could not post to the thread: %s", exc)

    async def shutdown(self, grace_s: float) -> list[int]:
        """Stop taking work, wait ``grace_s`` for running investigations, interrupt the rest.

        Returns the incident ids that were interrupted.
        """
        self.accepting = False
        records = list(self._runs.values())
        if not records:
            return []
        tasks = [r.task for r in records]
        _, pending = await asyncio.wait(tasks, timeout=max(grace_s, 0.0))
        interrupted = [r.incident_id for r in records if r.task in pending and r.incident_id]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [i for i in interrupted if i is not None]


def _passing(exc: SlackUnavailable) -> bool:
    """Slack trouble that may heal in seconds: rate limits, server errors, the network."""
    return (
        exc.ambiguous
        or exc.error in TRANSIENT_ERRORS
        or exc.error in ("ratelimited", "disconnected", "timeout", "connect_failed")
        or exc.error.startswith(("http_5", "lookup_"))
    )


def _proposal_row(engine: Engine, proposal_id: int) -> tuple[Proposal | None, Provenance]:
    with session_scope(engine) as session:
        row = session.get(Proposal, proposal_id)
        if row is None:
            return None, Provenance.from_json(None)
        session.expunge(row)
        return row, Provenance.from_json(row.provenance)
