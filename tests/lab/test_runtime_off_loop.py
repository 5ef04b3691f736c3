"""Nothing an investigation does blocks the event loop it shares with the others.

Proven by recording, not by timing: every store statement (a SQLAlchemy
``before_cursor_execute`` listener), every Kubernetes request (``ApiClient.call_api``,
the REST client's ``request``, urllib3's ``urlopen``), every blocking HTTP or
socket call (``http.client``, ``socket.connect`` on a blocking socket,
``socket.getaddrinfo``) notes whether it ran in the thread where the
investigation's loop is running. A full investigation against the lab with a
fault injected (probes of every kind, the analyzers, Prometheus, Jaeger, a
proposal), then a follow-up of it, must make zero such calls on the loop, while
the recorders prove each path was really taken (off the loop). Prometheus and
Jaeger are reached with aiohttp, on the loop and non-blocking by design: they are
counted to show that path ran. A second test shows two investigations on one loop
interleave: one whose model call is pending does not hold back the other.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import urllib3
from kubernetes import client
from kubernetes.client import rest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from support.decisions import decision
from support.lab import LabThread

from agents.events import AnyEvent, Started
from agents.llm import Completion, Message, ScriptedModel
from agents.runtime import ClusterAccess, Limits, investigate
from agents.trajectory import FOLLOW_UP_MARK, IncidentContext
from lab.scenarios.loader import scenario_from_cli
from store.db import session_scope
from store.models import Incident, IncidentStatus, Proposal, Step

SOCIAL = "test-social-network"


@dataclass
class Recorder:
    """Which blocking calls ran on the watched loop's thread, and how many ran anywhere."""

    loop: asyncio.AbstractEventLoop | None = None
    on_loop: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, what: object = "", *, blocking: bool = True) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        on = self.loop is not None and running is self.loop
        with self.lock:
            self.counts[f"{kind}{'@loop' if on else ''}"] += 1
            if on and blocking:
                self.on_loop.append(
                    f"{kind}: {str(what)[:160]} ({threading.current_thread().name})"
                )

    def off(self, kind: str) -> int:
        return self.counts[kind]


def _wrap(
    recorder: Recorder, kind: str, original: Callable[..., Any], describe: Callable[..., object]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recorder.note(kind, describe(*args, **kwargs))
        return original(*args, **kwargs)

    return wrapper


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> Iterator[Recorder]:
    seen = Recorder()

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.note("sql", sql.split("\n", 1)[0])

    event.listen(engine, "before_cursor_execute", statement)
    blocking = [
        (
            client.ApiClient,
            "call_api",
            "k8s.call_api",
            lambda _s, method, url, *a, **k: f"{method} {url}",
        ),
        (
            rest.RESTClientObject,
            "request",
            "k8s.rest",
            lambda _s, method, url, *a, **k: f"{method} {url}",
        ),
        (
            urllib3.connectionpool.HTTPConnectionPool,
            "urlopen",
            "urllib3",
            lambda s, method, url, *a, **k: f"{method} {s.host}{url}",
        ),
        (
            http.client.HTTPConnection,
            "request",
            "http.client",
            lambda s, method, url, *a, **k: f"{method} {s.host}{url}",
        ),
        (socket, "getaddrinfo", "dns", lambda host, *a, **k: host),
    ]
    for owner, name, kind, describe in blocking:
        monkeypatch.setattr(owner, name, _wrap(seen, kind, getattr(owner, name), describe))

    original_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.gettimeout() != 0.0:  # a blocking connect; the loop's own sockets never block
            seen.note("socket.connect", address)
        return original_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    original_request = aiohttp.ClientSession._request

    async def aiohttp_request(
        session: aiohttp.ClientSession, method: str, url: Any, *a: Any, **k: Any
    ) -> Any:
        seen.note("aiohttp", f"{method} {url}", blocking=False)
        return await original_request(session, method, url, *a, **k)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", aiohttp_request)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)


async def _watched(recorder: Recorder, job: Callable[[], Any]) -> Any:
    recorder.loop = asyncio.get_running_loop()
    try:
        return await job()
    finally:
        recorder.loop = None


async def _events(stream: Any) -> list[AnyEvent]:
    return [e async for e in stream]


def inject(lab: LabThread, family: str, target: str) -> None:
    lab.run(lab.lab.inject(scenario_from_cli(family, target, {})))
    time.sleep(4)


def test_a_full_investigation_and_its_follow_up_never_block_the_loop(
    clean_lab: LabThread, engine: Engine, access: ClusterAccess, recorder: Recorder
) -> None:
    inject(clean_lab, "scale_to_zero", "user-service")
    first_model = ScriptedModel(
        [
            decision("probe", f"kubectl get deploy user-service -n {SOCIAL}"),
            decision(
                "probe", f"check the error rate, latency and traces of user-service -n {SOCIAL}"
            ),
            decision("probe", "what else is going on?"),
            decision(
                "executor",
                f"kubectl scale deploy/user-service --replicas=1 -n {SOCIAL}",
                confidence=90,
            ),
        ]
    )
    limits = Limits(max_steps=5, probe_calls=6)

    async def first() -> list[AnyEvent]:
        ctx = IncidentContext(question="the social network timeline is broken", thread_ts="1.1")
        return await _events(
            investigate(ctx, engine=engine, cluster=access, model=first_model, limits=limits)
        )

    events = asyncio.run(_watched(recorder, first))
    kinds = [e.kind for e in events]
    assert kinds[0] == "started", kinds
    assert kinds[-1] == "finished", kinds
    assert "proposal" in kinds, [e for e in events if e.kind == "error"]
    invocations = [e.invocation for e in events if e.kind == "probe_call"]
    assert any(i.startswith("kubectl get deploy") for i in invocations), invocations
    assert any(i.startswith("metrics ") for i in invocations), invocations
    assert any(i.startswith("traces ") for i in invocations), invocations
    assert any(i.startswith("analyze") for i in invocations), invocations
    incident_id = events[0].incident_id
    first_steps = events[-1].steps

    follow_model = ScriptedModel(
        [
            decision("probe", f"kubectl get pods -n {SOCIAL}"),
            decision("submit", "user-service", confidence=95),
        ]
    )

    async def follow_up() -> list[AnyEvent]:
        ctx = IncidentContext(question="is user-service back?", incident_id=incident_id)
        return await _events(
            investigate(ctx, engine=engine, cluster=access, model=follow_model, limits=limits)
        )

    again = asyncio.run(_watched(recorder, follow_up))
    started = again[0]
    assert isinstance(started, Started)
    assert started.follow_up
    assert started.incident_id == incident_id
    prompt = follow_model.prompts[0][1]["content"]
    assert "asked: the social network timeline is broken" in prompt
    assert '"components":["user-service"' in prompt
    assert "proposal" in [e.kind for e in again], "the analyzers' fix is proposed on the follow-up"

    assert recorder.on_loop == [], "\n".join(recorder.on_loop)
    for kind in ("sql", "k8s.call_api", "k8s.rest", "urllib3"):
        assert recorder.off(kind) > 0, f"the {kind} path never ran: {recorder.counts}"
    assert recorder.counts["aiohttp@loop"] > 0, "Prometheus and Jaeger were never asked"
    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        assert incident.status == IncidentStatus.DIAGNOSED
        assert incident.question.endswith(f"{FOLLOW_UP_MARK}is user-service back?")
        indexes = sorted(
            s.step_index
            for s in session.exec(select(Step).where(col(Step.incident_id) == incident_id))
        )
        assert indexes == list(range(first_steps + again[-1].steps))
        assert len(session.exec(select(Incident)).all()) == 1
        assert len(session.exec(select(Proposal)).all()) == 2


class GatedModel(ScriptedModel):
    """A scripted model whose every answer waits until the test opens its gate."""

    def __init__(self, replies: Sequence[str]) -> None:
        super().__init__(replies, name="gated")
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        self.waiting.set()
        await self.gate.wait()
        return await super().complete(messages, **kwargs)


def test_two_investigations_on_one_loop_interleave(
    lab: LabThread, engine: Engine, access: ClusterAccess
) -> None:
    """B runs start to finish while A's model call is pending: A holds nothing B needs."""
    log: list[tuple[str, str]] = []

    async def consume(name: str, stream: Any) -> None:
        async for e in stream:
            log.append((name, e.kind))

    async def scenario() -> None:
        slow = GatedModel([decision("submit", "user-service")])
        quick = ScriptedModel(
            [decision("probe", f"kubectl get pods -n {SOCIAL}"), decision("submit", "user-service")]
        )
        a = asyncio.create_task(
            consume(
                "A",
                investigate(
                    IncidentContext(question="A?"), engine=engine, cluster=access, model=slow
                ),
            )
        )
        async with asyncio.timeout(240):
            await slow.waiting.wait()
            log.append(("A", "model waiting"))
            await consume(
                "B",
                investigate(
                    IncidentContext(question="B?"), engine=engine, cluster=access, model=quick
                ),
            )
            assert not a.done()
            slow.gate.set()
            await a

    asyncio.run(scenario())
    a_wait = log.index(("A", "model waiting"))
    b_done = log.index(("B", "finished"))
    a_plan = log.index(("A", "plan"))
    assert log.index(("B", "started")) > a_wait
    assert a_wait < b_done < a_plan
    assert log[-1] == ("A", "finished")
    assert [k for n, k in log if n == "B"].count("probe_result") >= 1
    with session_scope(engine) as session:
        statuses = [i.status for i in session.exec(select(Incident))]
    assert statuses == [IncidentStatus.DIAGNOSED, IncidentStatus.DIAGNOSED]
