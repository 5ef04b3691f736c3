"""The Slack bot's figures (issue 12), measured in one run against a real lab.

The real bot (slack-bolt over Socket Mode, slack-sdk, the store, the runtime)
talks to the loopback Slack stand-in; the investigations read a real incident
lab (run in a child process, so the bot's memory and CPU are its own) with one
fault injected. Printed, with sample counts:

1. mention → first thread message (the `ThreadStream`'s ``first_message_at``
   minus the moment the Socket Mode delivery began), p50/p95, for one incident
   at a time and for 20 concurrent incidents (20 mentions in 20 incident
   channels delivered at once). Target p95 < 1 s. Analyzers only (model=None).
   Also the medians and p95s of its stages (the mention handler, the setStatus
   call, the incident row and the Started event, startStream's answer) and how
   late the event loop wakes up while 20 run.
2. API writes per message per second on the fallback path (``chat.startStream``
   refused for some incidents, open streams expired mid-run for the rest): the
   most ``chat.update`` calls, and the most writes of any kind, one message got
   in any 1-second window. Target ≤ 1 ``chat.update``.
3. Messages lost or duplicated under a storm of injected 429s (Retry-After 0-1 s
   on postMessage, appendStream, update; never more than 3 waiting per method, so
   within the client's 5 retries) and dropped responses (postMessage,
   appendStream): every thread must show the progress lines (start, diagnosis,
   each proposal, finish) and the diagnosis and proposal messages exactly once.
   Target 0 and 0. Then the same over a 15 s burst in which every write runs out
   of the client's retries, after which Slack recovers.
4. Memory per concurrent incident: the bot process's RSS before and at the peak
   of 20 concurrent incidents, divided by 20; and tracemalloc's peak over a
   separate round (tracing slows Python down, so that round is not timed).

A table, one JSON line, and var/bench/bot.png (latency distributions, 1 vs 20).
AOI_BENCH_BOT_SINGLE, AOI_BENCH_BOT_ROUNDS and AOI_BENCH_BOT_STORM change the
sample sizes; AOI_BENCH_BOT_DEBUG=1 prints each round's duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from agents.llm import ScriptedModel
from agents.runtime import ClusterAccess, Limits
from bot.config import BotConfig, ClusterRoute
from lab.k8s import api_client
from store.db import make_engine
from store.migrate import upgrade
from store.policy import ApprovalPolicy

# tests/support modules import each other as `support.x`: use them under that name only.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.slack_bot import BotRig, running_bot
from support.slack_standin import Message, SlackStandIn

OUT = Path("var/bench")
SCENARIO = "k8s_target_port-misconfig-mitigation-1"
SOCIAL = "test-social-network"
CONCURRENT = 20
SINGLE = int(os.environ.get("AOI_BENCH_BOT_SINGLE", "10"))
ROUNDS = int(os.environ.get("AOI_BENCH_BOT_ROUNDS", "3"))
STORM_INCIDENTS = int(os.environ.get("AOI_BENCH_BOT_STORM", "10"))
SUSTAINED_INCIDENTS = 4
SUSTAINED_BURST_S = 15.0
FALLBACK_INCIDENTS = 6
MODEL_DELAY_S = 0.4
"""A paced model's think time per decision, so events spread over seconds as with a real one."""
RUN_TIMEOUT_S = 180.0
REQUESTER, APPROVER = "U0BOB", "U0ALICE"
console = Console()


# -- the lab, in a process of its own -------------------------------------------------


def _lab_child(conn: Connection, state_dir: str, scenario_id: str) -> None:
    """Start the lab, break it, hand back its endpoints, then wait for "stop"."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.lab import LabThread

    from lab.scenarios.loader import load_catalog

    handle = LabThread(Path(state_dir), tick_s=0.5)
    started = time.monotonic()
    try:
        handle.start()
        ready_s = time.monotonic() - started
        scenario = load_catalog().get(scenario_id)
        handle.run(handle.lab.inject(scenario))
        for _ in range(100):  # until the fault shows
            if not handle.run(handle.lab.check(scenario)).mitigated:
                break
            time.sleep(0.1)
        time.sleep(2.0)  # some telemetry of the broken state for the analyzers
        ends = handle.lab.endpoints
        assert ends is not None
        conn.send({"ends": ends.to_dict(), "ready_s": ready_s})
        conn.recv()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send({"error": repr(exc)})
        raise
    finally:
        handle.stop()


@contextlib.contextmanager
def _lab(state: Path) -> Iterator[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_lab_child, args=(child, str(state), SCENARIO), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 240
        while not parent.poll(1.0):
            if not process.is_alive():
                raise RuntimeError(f"the lab process exited ({process.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the lab did not start within 240 s")
        info = parent.recv()
        if "error" in info:
            raise RuntimeError(f"the lab failed: {info['error']}")
        yield info
    finally:
        with contextlib.suppress(Exception):
            parent.send("stop")
        process.join(90)
        if process.is_alive():
            process.terminate()
            process.join(10)


# -- models ---------------------------------------------------------------------------


def _decision(step: int) -> str:
    probes = (
        f"kubectl get endpoints user-service -n {SOCIAL}",
        f"kubectl get pods -n {SOCIAL}",
        f"kubectl get service user-service -n {SOCIAL} -o yaml",
        f"kubectl get events -n {SOCIAL}",
    )
    return json.dumps(
        {
            "summary": f"checking step {step}",
            "phase": "diagnosis" if step > 1 else "triage",
            "hypotheses": ["user-service"],
            "root_cause": {
                "component": "user-service",
                "system_level": "Virtualization",
                "fault_type": "Misconfiguration",
            },
            "confidence": 40,
            "next_action": {"kind": "probe", "instruction": probes[step % len(probes)]},
        }
    )


class PacedModel(ScriptedModel):
    """Probes every step, after MODEL_DELAY_S of "thinking"; shared by every incident."""

    def __init__(self) -> None:
        super().__init__([_reply] * 100_000, name="paced-scripted")

    async def complete(self, messages: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(MODEL_DELAY_S)
        return await super().complete(messages, **kwargs)


def _reply(messages: Sequence[Any]) -> str:
    text = "\n".join(str(m["content"]) for m in messages)
    found = re.findall(r"[Ss]tep (\d+)", text)
    return _decision(int(found[-1]) if found else 1)


# -- one bot, many incidents ------------------------------------------------------------


def _channels(prefix: str, n: int) -> dict[str, str]:
    return {f"C0{prefix}{i:03d}": f"inc-bench-{prefix.lower()}-{i}" for i in range(n)}


@dataclass
class Incident:
    channel: str
    ts: str
    delivered_at: float
    acked_at: float = 0.0
    first_at: float | None = None  # ThreadStream.first_message_at
    first_call_at: float | None = None  # the stand-in's arrival of the thread's first write
    started_at: float | None = None  # the runner started the investigation task
    status_at: float | None = None  # the stand-in's arrival of the first setStatus
    stream: Any = None
    incident_id: int | None = None


@dataclass
class Bench:
    rig: BotRig
    slack: SlackStandIn
    incidents: list[Incident] = field(default_factory=list)
    rounds: list[tuple[int, float]] = field(default_factory=list)
    """(incidents delivered at once, seconds until the last investigation ended)"""


@contextlib.asynccontextmanager
async def _bot(
    access: ClusterAccess, prefix: str, n: int, *, model: Any = None, steps: int = 4
) -> AsyncIterator[Bench]:
    folder = tempfile.TemporaryDirectory(prefix="aoi-bench-bot-")
    url = f"sqlite:///{folder.name}/aoi.db"
    upgrade(url)
    engine = make_engine(url)
    config = BotConfig(
        routes=(ClusterRoute(name="lab", access=access),),
        policy=ApprovalPolicy(approvers=frozenset({APPROVER})),
        limits=Limits(max_steps=steps, proposal_ttl_s=600),
        sweep_interval_s=3600.0,
    )
    try:
        async with (
            SlackStandIn(channels=_channels(prefix, n)) as slack,
            running_bot(slack, config, engine=engine, model=model, grace_s=60.0) as rig,
        ):
            yield Bench(rig=rig, slack=slack)
    finally:
        engine.dispose()
        folder.cleanup()


async def _deliver(bench: Bench, channels: list[str]) -> list[Incident]:
    """Deliver one mention per channel, all at once; wait for every investigation to end."""
    rig = bench.rig
    bodies = [
        rig.slack.mention(c, REQUESTER, f"<@{rig.slack.bot_user_id}> users get errors posting")
        for c in channels
    ]
    incidents = [Incident(c, b["event"]["ts"], 0.0) for c, b in zip(channels, bodies, strict=True)]
    keys = {(i.channel, i.ts) for i in incidents}
    runner = rig.bot.runner

    def finished() -> dict[tuple[str, str], Any]:
        return {r.thread.key: r for r in runner.finished if r.thread.key in keys}

    async def one(incident: Incident, body: dict[str, Any]) -> None:
        incident.delivered_at = time.monotonic()
        await rig.event(body)
        incident.acked_at = time.monotonic()

    began = time.monotonic()
    await asyncio.gather(*(one(i, b) for i, b in zip(incidents, bodies, strict=True)))
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(finished()) < len(keys) or runner.running:
        if time.monotonic() > deadline:
            for task in asyncio.all_tasks():
                if task.get_name().startswith("aoi-incident"):
                    print(f"still running: {task.get_name()}: {_awaiting(task)}", file=sys.stderr)
            raise AssertionError(
                f"only {len(finished())} of {len(keys)} "
                f"investigations finished within {RUN_TIMEOUT_S}s"
            )
        await asyncio.sleep(0.05)
    took = time.monotonic() - began
    records = finished()
    for incident in incidents:
        record = records.get((incident.channel, incident.ts))
        if record is None or record.stream is None:
            continue
        incident.stream = record.stream
        incident.first_at = record.stream.first_message_at
        incident.incident_id = record.incident_id
        incident.first_call_at = _first_write(bench.slack, incident)
        incident.started_at = record.started
        incident.status_at = next(
            (
                c.at
                for c in bench.slack.calls
                if c.method == "assistant.threads.setStatus"
                and c.channel == incident.channel
                and c.params.get("thread_ts") == incident.ts
            ),
            None,
        )
    bench.incidents += incidents
    bench.rounds.append((len(channels), took))
    if os.environ.get("AOI_BENCH_BOT_DEBUG"):
        print(f"  {len(channels)} incident(s) took {took:.1f}s", flush=True)
    return incidents


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where a stuck task waits: its chain of awaited coroutines, innermost last."""
    where = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        frame = frame or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return " -> ".join(where)


_WRITES = frozenset({"chat.startStream", "chat.postMessage"})


def _first_write(slack: SlackStandIn, incident: Incident) -> float | None:
    for call in slack.calls:
        if (
            call.method in _WRITES
            and call.ok
            and call.channel == incident.channel
            and call.params.get("thread_ts") == incident.ts
        ):
            return float(call.at)
    return None


def _latencies(incidents: list[Incident]) -> tuple[list[float], list[float], list[float]]:
    first = [i.first_at - i.delivered_at for i in incidents if i.first_at is not None]
    call = [i.first_call_at - i.delivered_at for i in incidents if i.first_call_at is not None]
    ack = [i.acked_at - i.delivered_at for i in incidents]
    return first, call, ack


def _stages(incidents: list[Incident]) -> dict[str, tuple[float, float]]:
    """Median and p95 ms of each stage from the delivery to the first message."""
    spans: dict[str, list[float]] = {
        "handler": [],  # delivery -> investigation task started (claim, channel, thread look-up)
        "status": [],  # -> the setStatus request arrives
        "open": [],  # -> the startStream request arrives (incident row, Started event)
        "answer": [],  # -> startStream answered
    }
    for i in incidents:
        if i.started_at is None or i.status_at is None:
            continue
        if i.first_call_at is None or i.first_at is None:
            continue
        spans["handler"].append(i.started_at - i.delivered_at)
        spans["status"].append(i.status_at - i.started_at)
        spans["open"].append(i.first_call_at - i.status_at)
        spans["answer"].append(i.first_at - i.first_call_at)
    return {
        k: (round(_pct(v, 0.5) * 1000, 1), round(_pct(v, 0.95) * 1000, 1))
        for k, v in spans.items()
        if v
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class _RssPeak:
    """Samples this process's RSS every 10 ms in a thread; `peak` is the largest seen."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


# -- 1 and 4: latency and memory ----------------------------------------------------------


class _LoopLag:
    """How late a 10 ms sleep wakes up on this loop, sampled while it runs (seconds)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            self.lags.append(time.monotonic() - t - 0.01)

    async def __aenter__(self) -> _LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _latency_and_memory(access: ClusterAccess) -> dict[str, Any]:
    async with _bot(access, "L", CONCURRENT) as bench:
        channels = list(bench.slack.channels)
        # A warm-up incident (first imports, connections, caches), not counted.
        await _deliver(bench, channels[:1])
        single: list[Incident] = []
        for n in range(SINGLE):
            single += await _deliver(bench, [channels[n % len(channels)]])
            await asyncio.sleep(0.2)
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        concurrent: list[Incident] = []
        peak = rss_before
        lags: list[float] = []
        for _ in range(ROUNDS):
            gc.collect()
            with _RssPeak() as rss:
                async with _LoopLag() as lag:
                    concurrent += await _deliver(bench, channels)
            peak = max(peak, rss.peak)
            lags += lag.lags
        rss_after = psutil.Process().memory_info().rss
        rounds = bench.rounds[1:]  # not the warm-up, not the traced round
        # One more round under tracemalloc: Python-level allocations only, not timed.
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await _deliver(bench, channels)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = _thread_stats(bench, single + concurrent)
    return {
        "single_round_s": statistics.median(t for n, t in rounds if n == 1),
        "concurrent_round_s": statistics.median(t for n, t in rounds if n == CONCURRENT),
        "single": _latencies(single),
        "concurrent": _latencies(concurrent),
        "single_stages": _stages(single),
        "concurrent_stages": _stages(concurrent),
        "loop_lag": lags,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_mib": peak / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "tracemalloc_peak_mib": (traced_peak - base) / 2**20,
        "threads": stats,
    }


def _thread_stats(bench: Bench, incidents: list[Incident]) -> dict[str, Any]:
    modes = Counter(i.stream.mode if i.stream else "none" for i in incidents)
    missing = sum(1 for i in incidents if i.first_at is None)
    return {"modes": dict(modes), "no_first_message": missing}


# -- 2: the fallback path ----------------------------------------------------------------


def _per_window(times: list[float], window_s: float = 1.0) -> int:
    """The most of `times` that fall in any half-open window of `window_s`."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def _fallback(access: ClusterAccess) -> dict[str, Any]:
    n = FALLBACK_INCIDENTS
    async with _bot(access, "F", n, model=PacedModel(), steps=6) as bench:
        slack = bench.slack
        refused = n // 2
        # A refused startStream (HTTP 500: never retried, as it may have acted) for half
        # the incidents; the other half stream until their streams expire under them.
        slack.fail_next("chat.startStream", status=500, count=refused)

        async def expire_when_streaming() -> None:
            while len(slack.calls_to("chat.startStream")) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)
            slack.expire_streams()

        expirer = asyncio.create_task(expire_when_streaming())
        incidents = await _deliver(bench, list(slack.channels))
        expirer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expirer
        updates_max = writes_max = 0
        per_message: list[int] = []
        messages = 0
        updates_total = 0
        gaps: list[float] = []
        reasons: Counter[str] = Counter()
        for incident in incidents:
            stream = incident.stream
            if stream is None:
                continue
            reasons[stream.fallback_reason or "streamed"] += 1
            for ts in stream.message_ts:
                calls = [
                    c
                    for c in slack.calls
                    if c.channel == incident.channel and c.params.get("ts") == ts
                ]
                updates = sorted(c.at for c in calls if c.method == "chat.update")
                if not updates:
                    continue
                messages += 1
                updates_total += len(updates)
                gaps += [b - a for a, b in itertools.pairwise(updates)]
                per_message.append(_per_window(updates))
                updates_max = max(updates_max, per_message[-1])
                writes_max = max(writes_max, _per_window([c.at for c in calls]))
        lost, dup, _ = _check_threads(bench, incidents)
    return {
        "incidents": len(incidents),
        "fallback_reasons": dict(reasons),
        "messages_edited": messages,
        "chat_update_calls": updates_total,
        "max_updates_per_msg_per_s": updates_max,
        "max_writes_per_msg_per_s": writes_max,
        "min_update_gap_s": round(min(gaps), 3) if gaps else None,
        "median_update_gap_s": round(statistics.median(gaps), 3) if gaps else None,
        "lost": lost,
        "duplicated": dup,
    }


# -- 3: lost or duplicated under faults -----------------------------------------------------


def _visible(message: Message) -> str:
    """What a person sees of one message: an edited one shows its last text only."""
    if message.updated or not message.streaming:
        return str(message.text)
    return "\n".join([message.text, *message.plan_titles])


def _meta_key(message: Message) -> str:
    payload = (message.metadata or {}).get("event_payload") or {}
    return str(payload.get("key", "")) if isinstance(payload, dict) else ""


def _check_threads(bench: Bench, incidents: list[Incident]) -> tuple[int, int, list[str]]:
    """Lost and duplicated expected messages over the threads, with what went wrong."""
    from sqlmodel import select

    from store.db import session_scope
    from store.models import Proposal

    engine = bench.rig.bot.engine
    with session_scope(engine) as session:
        proposals: dict[int, list[int]] = {}
        for row in session.exec(select(Proposal)):
            assert row.id is not None
            proposals.setdefault(row.incident_id, []).append(row.id)
    lost = dup = 0
    problems: list[str] = []
    for incident in incidents:
        thread = [
            m
            for m in bench.slack.thread(incident.channel, incident.ts)
            if m.user == bench.slack.bot_user_id and m.ephemeral_for is None
        ]
        seen = "\n".join(_visible(m) for m in thread)
        iid = incident.incident_id
        expected: dict[str, int] = {
            "progress: start": len(re.findall(r"Investigating\*{1,2} incident #\d+", seen)),
            "progress: diagnosis": len(re.findall(r"(Diagnosis|No fault found)\*{1,2} \(", seen)),
            "progress: finish": seen.count(":checkered_flag: finished ("),
            "diagnosis message": sum(
                1 for m in thread if _meta_key(m).startswith(f"aoi-diagnosis-{iid}-")
            ),
        }
        for pid in proposals.get(iid or -1, []):
            expected[f"progress: proposal #{pid}"] = seen.count(f"proposed #{pid}:")
            expected[f"proposal #{pid} message"] = sum(
                1 for m in thread if _meta_key(m) == f"aoi-proposal-{pid}"
            )
        if iid is None:
            expected["incident started"] = 0
        for what, count in expected.items():
            if count == 0:
                lost += 1
                problems.append(f"{incident.channel}/{incident.ts}: lost {what}")
            elif count > 1:
                dup += count - 1
                problems.append(f"{incident.channel}/{incident.ts}: {what} x{count}")
    return lost, dup, problems


async def _storm(access: ClusterAccess, *, n: int, bounded: bool, seed: int) -> dict[str, Any]:
    """N incidents under 429s and dropped responses; every expected message checked.

    ``bounded``: at most 3 injected 429s wait per method at any time, fewer than the
    client's 5 rate-limit retries, so a call gets through in the end. Otherwise a burst:
    for SUSTAINED_BURST_S every write method has 8 429s waiting at all times (every
    call runs out of the client's retries) and a dropped response queued, then Slack
    recovers (the faults left are cleared).
    """
    rng = random.Random(seed)
    injected: Counter[str] = Counter()
    _LOG.counts.clear()
    _LOG.notable.clear()
    prefix = "S" if bounded else "U"
    async with _bot(access, prefix, n, model=PacedModel(), steps=4) as bench:
        slack = bench.slack
        stop = asyncio.Event()
        methods = ("chat.postMessage", "chat.appendStream", "chat.update")
        droppable = ("chat.postMessage", "chat.appendStream")

        def throttled(method: str) -> int:
            return len(slack._faults.get(method, []))

        def dropping(method: str) -> int:
            return int(slack._drops.get(method, 0))

        def throttle(method: str, count: int) -> None:
            slack.fail_next(method, status=429, retry_after=rng.randint(0, 1), count=count)
            injected[f"429 {method}"] += count

        def drop(method: str) -> None:
            slack.drop_next(method)
            injected[f"drop {method}"] += 1

        async def storm() -> None:
            while not stop.is_set():
                method = rng.choice(methods)
                if throttled(method) == 0:
                    throttle(method, rng.randint(1, 3))
                if rng.random() < 0.25 and dropping(dropped := rng.choice(droppable)) == 0:
                    drop(dropped)
                await asyncio.sleep(0.25)

        async def burst() -> None:
            ends = time.monotonic() + SUSTAINED_BURST_S
            while time.monotonic() < ends and not stop.is_set():
                for method in methods:
                    if throttled(method) < 8:
                        throttle(method, 8 - throttled(method))
                for method in droppable:
                    if dropping(method) == 0:
                        drop(method)
                await asyncio.sleep(0.05)
            slack._faults.clear()
            slack._drops.clear()

        storming = asyncio.create_task(storm() if bounded else burst())
        try:
            incidents = await _deliver(bench, list(slack.channels))
        finally:
            stop.set()
            await storming
        lost, dup, problems = _check_threads(bench, incidents)
        hit = Counter(
            f"{'429' if c.status == 429 else ''}{'+' if c.status == 429 and c.dropped else ''}"
            f"{'drop' if c.dropped else ''} {c.method}"
            for c in slack.calls
            if c.dropped or c.status == 429
        )
        modes = Counter(i.stream.mode if i.stream else "none" for i in incidents)
        errors: Counter[str] = Counter()
        for incident in incidents:
            if incident.stream is not None:
                errors.update(incident.stream.errors)
        return {
            "incidents": len(incidents),
            "took_s": round(bench.rounds[-1][1], 1),
            "injected": dict(injected),
            "faults_hit": dict(hit),
            "modes": dict(modes),
            "stream_errors": dict(errors),
            "lost": lost,
            "duplicated": dup,
            "problems": problems,
            "bot_log": dict(_LOG.counts),
            "notable": list(_LOG.notable),
        }


# -- logging: counted, not printed ------------------------------------------------------------


class _Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.notable: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}: {record.msg}"] += 1
        if record.levelno >= logging.ERROR or "giving up" in str(record.msg):
            self.notable.append(f"{record.levelname} {record.name}: {record.getMessage()}")


_LOG = _Counting()


def _quiet() -> None:
    root = logging.getLogger()
    root.addHandler(_LOG)
    root.setLevel(logging.WARNING)
    for name in ("slack_bolt", "slack_sdk", "aiohttp"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- report -------------------------------------------------------------------------------------


def _chart(single: list[float], concurrent: list[float]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    top = max([*single, *concurrent, 1.0]) * 1000
    bins = [top * i / 40 for i in range(41)]
    ax.hist([v * 1000 for v in single], bins=bins, alpha=0.6, label=f"1 incident (n={len(single)})")
    ax.hist(
        [v * 1000 for v in concurrent],
        bins=bins,
        alpha=0.6,
        label=f"{CONCURRENT} concurrent (n={len(concurrent)})",
    )
    ax.axvline(1000, color="grey", linestyle="--", linewidth=0.8, label="target p95 1 s")
    ax.set_xlabel("mention → first thread message (ms)")
    ax.set_ylabel("incidents")
    ax.set_title("AOI Slack bot: time to the first thread message")
    ax.legend()
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bot.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(values: list[float], q: float) -> str:
    return f"{_pct(values, q) * 1000:.0f}"


async def _all(access: ClusterAccess) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    t = time.monotonic()
    figures["latency"] = await _latency_and_memory(access)
    console.print(f"latency and memory: {time.monotonic() - t:.0f}s")
    t = time.monotonic()
    figures["fallback"] = await _fallback(access)
    console.print(f"fallback: {time.monotonic() - t:.0f}s")
    t = time.monotonic()
    figures["storm"] = await _storm(access, n=STORM_INCIDENTS, bounded=True, seed=12)
    console.print(f"storm: {time.monotonic() - t:.0f}s")
    t = time.monotonic()
    figures["sustained"] = await _storm(access, n=SUSTAINED_INCIDENTS, bounded=False, seed=13)
    console.print(f"sustained storm: {time.monotonic() - t:.0f}s")
    return figures


def main() -> None:
    _quiet()
    state = Path(tempfile.mkdtemp(prefix="aoi-bench-bot-lab-"))
    with _lab(state) as info:
        ends = info["ends"]
        console.print(f"lab ready in {info['ready_s']:.1f}s, {SCENARIO} injected")
        access = ClusterAccess(
            api=api_client(Path(ends["observer_kubeconfig"])),
            prometheus_url=ends["prometheus_url"],
            jaeger_url=ends["jaeger_url"],
        )
        figures = asyncio.run(_all(access))
    lat, fb, st = figures["latency"], figures["fallback"], figures["storm"]
    su = figures["sustained"]
    s_first, s_call, s_ack = lat["single"]
    c_first, c_call, c_ack = lat["concurrent"]

    table = Table(title="Slack bot: mention → first thread message (ms)")
    for column in ("incidents at once", "n", "p50", "p95", "max", "stand-in p95", "ack p95"):
        table.add_column(column, justify="right")
    for label, first, call, ack in (
        ("1", s_first, s_call, s_ack),
        (str(CONCURRENT), c_first, c_call, c_ack),
    ):
        table.add_row(
            label,
            str(len(first)),
            _ms(first, 0.5),
            _ms(first, 0.95),
            _ms(first, 1.0),
            _ms(call, 0.95),
            _ms(ack, 0.95),
        )
    console.print(table)

    per_incident = (lat["rss_peak_mib"] - lat["rss_before_mib"]) / CONCURRENT
    lags = lat["loop_lag"]
    summary = {
        "first_message_1_p50_ms": round(_pct(s_first, 0.5) * 1000, 1),
        "first_message_1_p95_ms": round(_pct(s_first, 0.95) * 1000, 1),
        "first_message_1_n": len(s_first),
        "first_message_20_p50_ms": round(_pct(c_first, 0.5) * 1000, 1),
        "first_message_20_p95_ms": round(_pct(c_first, 0.95) * 1000, 1),
        "first_message_20_n": len(c_first),
        "investigation_1_s": round(lat["single_round_s"], 1),
        "investigation_20_all_done_s": round(lat["concurrent_round_s"], 1),
        "no_first_message": lat["threads"]["no_first_message"],
        "thread_modes": lat["threads"]["modes"],
        "fallback_incidents": fb["incidents"],
        "fallback_reasons": fb["fallback_reasons"],
        "fallback_messages_edited": fb["messages_edited"],
        "fallback_chat_update_calls": fb["chat_update_calls"],
        "fallback_max_chat_update_per_msg_per_s": fb["max_updates_per_msg_per_s"],
        "fallback_max_writes_per_msg_per_s": fb["max_writes_per_msg_per_s"],
        "fallback_min_update_gap_s": fb["min_update_gap_s"],
        "fallback_median_update_gap_s": fb["median_update_gap_s"],
        "fallback_lost": fb["lost"],
        "fallback_duplicated": fb["duplicated"],
        "storm_incidents": st["incidents"],
        "storm_took_s": st["took_s"],
        "storm_faults_hit": st["faults_hit"],
        "storm_thread_modes": st["modes"],
        "storm_lost": st["lost"],
        "storm_duplicated": st["duplicated"],
        "sustained_incidents": su["incidents"],
        "sustained_burst_s": SUSTAINED_BURST_S,
        "sustained_took_s": su["took_s"],
        "sustained_faults_hit": su["faults_hit"],
        "sustained_lost": su["lost"],
        "sustained_duplicated": su["duplicated"],
        "stages_1_p50_p95_ms": lat["single_stages"],
        "stages_20_p50_p95_ms": lat["concurrent_stages"],
        "loop_lag_20_p50_ms": round(_pct(lags, 0.5) * 1000, 1),
        "loop_lag_20_p95_ms": round(_pct(lags, 0.95) * 1000, 1),
        "loop_lag_20_max_ms": round(max(lags, default=0.0) * 1000, 1),
        "rss_before_20_mib": round(lat["rss_before_mib"], 1),
        "rss_peak_20_mib": round(lat["rss_peak_mib"], 1),
        "rss_per_incident_mib": round(per_incident, 2),
        "rss_after_rounds_mib": round(lat["rss_after_mib"], 1),
        "tracemalloc_peak_20_mib": round(lat["tracemalloc_peak_mib"], 1),
        "tracemalloc_per_incident_mib": round(lat["tracemalloc_peak_mib"] / CONCURRENT, 2),
    }
    chart = _chart(s_first, c_first)
    for name, run in (("storm", st), ("sustained", su)):
        for problem in run["problems"]:
            console.print(f"{name}: {problem}")
        for line in run["notable"]:
            console.print(f"{name} log: {line}")
        console.print(f"{name} stream errors: {run['stream_errors']}")
    for key, value in summary.items():
        console.print(f"{key}: {value}")
    console.print(
        f"first thread message p95: 1 incident {summary['first_message_1_p95_ms']} ms, "
        f"{CONCURRENT} concurrent {summary['first_message_20_p95_ms']} ms (target < 1000)\n"
        f"fallback chat.update per message per second: at most "
        f"{summary['fallback_max_chat_update_per_msg_per_s']} (target ≤ 1)\n"
        f"storm: {st['lost']} lost, {st['duplicated']} duplicated (target 0, 0); "
        f"429 bursts beyond the retry budget: {su['lost']} lost, {su['duplicated']} duplicated\n"
        f"memory: {per_incident:.2f} MiB RSS per concurrent incident"
        + (f"\nchart: {chart}" if chart else "")
    )
    print(json.dumps({"bench": "bot", **summary}))
    if st["lost"] or st["duplicated"] or fb["lost"] or fb["duplicated"]:
        raise AssertionError("a thread lost or repeated a message (see the lines above)")


if __name__ == "__main__":
    main()
