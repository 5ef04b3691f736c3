"""Container logs of the simulated pods, served by the kubelet simulator verbatim.

Logs are where most incidents are finally explained (an auth error naming a
database, a panic after a bad rollout), so each container prints what its real
counterpart would: startup chatter, a little noise while healthy, its errors on
every failing batch of requests (repetitive, as real logs are), crash output
when it cannot run, and the lines a scenario plants. ``logs_for`` implements
the kubelet's query semantics (tailLines, sinceSeconds/sinceTime, timestamps,
previous, limitBytes) so the kubelet simulator only passes parameters through.
Memory is bounded: a ring buffer per container instance and a cap on pods.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lab.telemetry import vocabulary as vocab
from lab.telemetry.state import AppFaults
from lab.telemetry.world import (
    TLS_REQUIRED,
    AppTick,
    ErrorCause,
    ServiceState,
    database_name,
    pod_ip,
)

Line = tuple[float, str]


@dataclass(frozen=True)
class Mongo:
    """One MongoDB structured log record before its timestamp is known."""

    s: str
    c: str
    id: int
    ctx: str
    msg: str
    attr: dict[str, object] = field(default_factory=dict)


Entry = tuple[str, str, str] | Mongo | str
"""(level, source, message) for the family's logger, a MongoDB record, or a raw line."""

PLANT_EVERY_S = 30.0
LINE_GAP_S = 1e-5
STARTUP_GAP_S = 1e-3
STARTUP_LEAD_S = 0.1
"""A tick's lines are stamped just before the tick, in order: whoever follows the log
with ``since`` = the time of their last read (the kubelet simulator does) misses none."""
MAX_PODS = 1000


class LogsUnavailableError(LookupError):
    """The kubelet would answer 400 with this message (nothing to read yet, no previous)."""


@dataclass
class _Container:
    """One pod's container: its current instance's lines and the previous instance's."""

    service: str
    lines: deque[Line]
    previous: deque[Line] | None = None
    started: bool = False
    restarts: int = 0
    signature: tuple[str, tuple[str, ...]] = ("", ())
    waiting: str | None = None
    planted_at: float = -math.inf
    connections: int = 0
    seen: float = 0.0
    last_checkpoint: int = -1


@dataclass
class _TickContext:
    now: float
    dt: float
    rng: random.Random
    faults: AppFaults
    flags: frozenset[str] = frozenset()
    db_events: dict[str, list[ErrorCause]] = field(default_factory=dict)
    tls_victims: dict[str, list[str]] = field(default_factory=dict)


class LogStore:
    """Per-pod ring buffers of rendered log lines.

    Usage::

        text = store.logs_for("test-hotel-reservation", "geo", "geo-0", "hotel-reserv-geo",
                              tail=50, since=timedelta(minutes=5), timestamps=True)
    """

    def __init__(self, *, max_lines: int = 2000, seed: int = 0, max_pods: int = MAX_PODS) -> None:
        self.max_lines = max_lines
        self.max_pods = max_pods
        self.seed = seed
        self._pods: dict[tuple[str, str], _Container] = {}
        self._now = 0.0

    # -- reading -------------------------------------------------------------------

    def logs_for(
        self,
        namespace: str,
        service: str,
        pod: str,
        container: str,
        *,
        previous: bool = False,
        since: datetime | timedelta | float | None = None,
        tail: int | None = None,
        limit_bytes: int | None = None,
        timestamps: bool = False,
    ) -> str:
        """The container's log text, as ``GET /containerLogs/{ns}/{pod}/{container}`` returns it.

        ``since`` is sinceTime (a datetime, or unix seconds as a float) or sinceSeconds
        (a timedelta before the last tick). Raises ``LogsUnavailableError`` (a kubelet
        answers 400) for a container that never started or a ``previous`` instance that
        does not exist. The container name is only used in messages: the lab's pods run
        one container each. An unknown pod has no logs yet: "".
        """
        state = self._pods.get((namespace, pod))
        if state is None:
            return ""
        lines = self._instance(state, pod, container, previous=previous)
        cutoff = self._cutoff(since)
        selected = (
            [line for line in lines if line[0] >= cutoff] if cutoff is not None else list(lines)
        )
        if tail is not None and tail >= 0:
            selected = selected[-tail:] if tail else []
        text = "".join(_with_stamp(line, timestamps) for line in selected)
        if limit_bytes is not None and limit_bytes >= 0:
            raw = text.encode()[:limit_bytes]
            text = raw.decode(errors="ignore")
        return text

    def _instance(
        self, state: _Container, pod: str, container: str, *, previous: bool
    ) -> deque[Line]:
        if previous:
            if state.previous is None:
                raise LogsUnavailableError(
                    f'previous terminated container "{container}" in pod "{pod}" not found'
                )
            return state.previous
        if not state.started:
            reason = state.waiting or "ContainerCreating"
            raise LogsUnavailableError(
                f'container "{container}" in pod "{pod}" is waiting to start: {reason}'
            )
        return state.lines

    def _cutoff(self, since: datetime | timedelta | float | None) -> float | None:
        if since is None:
            return None
        if isinstance(since, timedelta):
            return self._now - since.total_seconds()
        if isinstance(since, datetime):
            return since.timestamp()
        return float(since)

    def pods(self, namespace: str) -> list[str]:
        """Pods with logs in ``namespace`` (for tests and the lab's diagnostics)."""
        return sorted(pod for ns, pod in self._pods if ns == namespace)

    # -- writing -------------------------------------------------------------------

    def advance(self, app_tick: AppTick, faults: AppFaults, now: float, dt: float) -> None:
        """Write what every container of the application printed since the last tick."""
        self._now = max(self._now, now)
        rng = random.Random(f"{self.seed}:{now!r}:logs:{app_tick.app.namespace}")
        ctx = _TickContext(now, dt, rng, faults, app_tick.flags.active)
        _collect_db_events(app_tick, ctx)
        for st in app_tick.states.values():
            self._advance_service(st, ctx)
        self._evict()

    def _advance_service(self, st: ServiceState, ctx: _TickContext) -> None:
        reason = st.runtime.waiting_reason
        crashing = set(st.crashing)
        signature = (st.runtime.image or st.spec.image, tuple(st.runtime.command))
        for pod, restarts in zip(st.pods, st.restarts_per_pod(), strict=True):
            state = self._container(st, pod, signature, restarts)
            state.seen = ctx.now
            running = pod in st.running
            if not running and pod not in crashing:
                if not state.started:
                    state.waiting = "ContainerCreating" if reason in (None, "Pending") else reason
                continue
            if not state.started:
                self._start(state, st, pod, ctx, crashing=not running)
            elif restarts > state.restarts:
                state.previous = state.lines
                state.lines = deque(maxlen=self.max_lines)
                self._start(state, st, pod, ctx, crashing=not running)
            state.restarts = restarts
            if running:
                self._running(state, st, pod, ctx)

    def _container(
        self, st: ServiceState, pod: str, signature: tuple[str, tuple[str, ...]], restarts: int
    ) -> _Container:
        """The pod's container record; a new image or command means a new container."""
        key = (st.app.namespace, pod)
        state = self._pods.get(key)
        if state is None or state.signature != signature:
            state = _Container(st.spec.name, deque(maxlen=self.max_lines), signature=signature)
            state.restarts = restarts
            self._pods[key] = state
        return state

    def _start(
        self, state: _Container, st: ServiceState, pod: str, ctx: _TickContext, *, crashing: bool
    ) -> None:
        state.started = True
        state.waiting = None
        t0 = ctx.now - STARTUP_LEAD_S
        entries = [] if _never_ran(st) else list(startup_entries(st, pod))
        if crashing:
            entries += crash_entries(st)
        entries += self._planted(state, st, ctx)
        for i, entry in enumerate(entries):
            state.lines.append(_render(st, entry, t0 + i * STARTUP_GAP_S, pod))

    def _planted(self, state: _Container, st: ServiceState, ctx: _TickContext) -> list[Entry]:
        """A scenario's planted lines, verbatim, at start and every ``PLANT_EVERY_S``."""
        lines = ctx.faults.planted_logs.get(st.spec.name)
        if not lines or ctx.now - state.planted_at < PLANT_EVERY_S:
            return []
        state.planted_at = ctx.now
        return list(lines)

    def _running(self, state: _Container, st: ServiceState, pod: str, ctx: _TickContext) -> None:
        batch: list[Entry] = []
        batch += chatter(st, state, pod, ctx)
        for cause in st.causes:
            batch += error_entries(st, cause, ctx)
        batch += db_side_lines(st, state, ctx)
        batch += tls_server_lines(st, ctx)
        batch += flag_lines(st, ctx.flags)
        ctx.rng.shuffle(batch)
        batch += self._planted(state, st, ctx)
        for i, item in enumerate(batch):
            state.lines.append(_render(st, item, ctx.now - (len(batch) - i) * LINE_GAP_S, pod))

    def _evict(self) -> None:
        if len(self._pods) <= self.max_pods:
            return
        oldest = sorted(self._pods, key=lambda k: self._pods[k].seen)
        for key in oldest[: len(self._pods) - self.max_pods]:
            del self._pods[key]


def _with_stamp(line: Line, timestamps: bool) -> str:
    if timestamps:
        return f"{vocab.rfc3339_nano(line[0])} {line[1]}\n"
    return line[1] + "\n"


def _render(st: ServiceState, entry: Entry, t: float, pod: str) -> Line:
    if isinstance(entry, str):
        return t, entry
    if isinstance(entry, Mongo):
        return t, vocab.mongo_line(t, entry.s, entry.c, entry.id, entry.ctx, entry.msg, entry.attr)
    level, source, message = entry
    return t, vocab.render(st.family, level, source, message, t, pod)


def _line_no(*parts: str) -> int:
    return 40 + random.Random(":".join(parts)).randrange(0, 260)


# -- what each family says --------------------------------------------------------


def startup_entries(st: ServiceState, pod: str) -> list[Entry]:
    """A fresh container's first lines; a wrong binary prints the other service's."""
    name = st.impersonates or st.spec.name
    spec = st.app.service(name)
    family = st.family
    port = spec.port
    if st.unknown_binary:
        return []
    if spec.kind == "mongodb":
        return _mongo_startup(st, pod)
    if family == "go":
        return _go_startup(st, name, port, pod)
    camel = "".join(p.capitalize() for p in name.split("-"))
    table: dict[str, list[Entry]] = {
        "cpp": [
            ("info", f"{camel}.cpp:{_line_no(name, 'main')}:main", f"Starting the {name} server...")
        ],
        "envoy": [
            (
                "info",
                "main",
                "[source/server/server.cc:430] initializing epoch 0 "
                "(base id=0, hot restart version=11.104)",
            ),
            ("info", "main", "[source/server/server.cc:951] starting main dispatch loop"),
        ],
        "node": [("info", "", f"{name} gRPC server started on port {port}")],
        "java": [
            ("info", f"oteldemo.{camel}", f"{camel} starting."),
            ("info", f"oteldemo.{camel}", f"{camel} started, listening on {port}"),
        ],
        "dotnet": [
            ("info", "Microsoft.Hosting.Lifetime", f"Now listening on: http://[::]:{port}"),
            (
                "info",
                "Microsoft.Hosting.Lifetime",
                "Application started. Press Ctrl+C to shut down.",
            ),
        ],
        "python": [
            (
                "info",
                f"{name.replace('-', '_')}_server.py:{_line_no(name)}",
                f"Listening on port: {port}",
            )
        ],
        "logrus": [("info", "", f"starting {name} grpc server at :{port}")],
        "redis": [
            ("info", "", "oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo"),
            (
                "info",
                "",
                "Redis version=6.2.4, bits=64, commit=00000000, modified=0, pid=1, just started",
            ),
            ("info", "", "Server initialized"),
            ("info", "", "Ready to accept connections"),
        ],
        "kafka": [("info", "kafka.server.KafkaServer", "[KafkaServer id=1] started")],
        "nginx": [],
        "memcached": [],
    }
    return table.get(family, [("info", "", f"{name} started on port {port}")])


def _go_startup(st: ServiceState, name: str, port: int, pod: str) -> list[Entry]:
    if st.spec.kind == "consul":
        return [
            ("info", "agent", "==> Starting Consul agent..."),
            ("info", "agent", "Consul agent running!"),
        ]
    if st.spec.kind in ("jaeger", "flagd"):
        return [("info", "main", f"{name} starting on port {port}")]
    spec = st.app.service(name)
    kinds = {s.name: s.kind for s in st.app.services}
    mongo = next((c for c in spec.calls if kinds.get(c) == "mongodb"), None)
    cache = next((c for c in spec.calls if kinds.get(c) == "memcached"), None)
    main = f"cmd/{name}/main.go"
    entries: list[Entry] = [("info", f"{main}:24", "Reading config...")]
    if mongo:
        entries += [
            ("info", f"{main}:37", f"Read database URL: {mongo}:27017"),
            ("info", f"{main}:38", "Initializing DB connection..."),
            ("info", f"cmd/{name}/db.go:29", "New session successfull..."),
        ]
    if cache:
        entries += [("info", f"{main}:41", f"Read {name} memcashed address: {cache}:11211")]
    agent_id = uuid.UUID(int=random.Random(f"{pod}:{name}").getrandbits(128))
    entries += [
        ("info", f"{main}:49", f"Read target port: {port}"),
        ("info", f"{main}:50", "Read consul address: consul:8500"),
        ("info", f"{main}:51", "Read jaeger address: jaeger:6831"),
        (
            "info",
            f"{main}:61",
            f"Initializing jaeger agent [service name: {name} | host: jaeger:6831]...",
        ),
        ("info", "tracing/tracer.go:26", "Jaeger client: adjusted sample ratio 1.000000"),
        ("info", f"{main}:66", "Jaeger agent initialized"),
        ("info", f"{main}:68", "Initializing consul agent [host: consul:8500]..."),
        ("info", f"{main}:73", "Consul agent initialized"),
        ("info", f"{main}:85", "Starting server..."),
        (
            "info",
            "registry/registry.go:91",
            f"Trying to register service [ name: srv-{name}, "
            f"id: {agent_id}, address: {pod_ip(st.app.namespace, pod)}:{port} ]",
        ),
        (
            "info",
            f"services/{name}/server.go:{_line_no(name, 'reg')}",
            "Successfully registered in consul",
        ),
    ]
    return entries


def _mongo_startup(st: ServiceState, pod: str) -> list[Entry]:
    tls = bool(TLS_REQUIRED.search(st.runtime.config.get("mongod.conf", "")))
    return [
        Mongo(
            "I",
            "CONTROL",
            23285,
            "main",
            "Automatically disabling TLS 1.0, to force-enable "
            "TLS 1.0 specify --sslDisabledProtocols 'none'",
        ),
        Mongo(
            "I",
            "CONTROL",
            4615611,
            "initandlisten",
            "MongoDB starting",
            {"pid": 1, "port": 27017, "dbPath": "/data/db", "architecture": "64-bit", "host": pod},
        ),
        Mongo(
            "I",
            "CONTROL",
            23403,
            "initandlisten",
            "Build Info",
            {
                "buildInfo": {
                    "version": "4.4.6",
                    "gitVersion": "72e66213c2c3eab37d9358d5e78ad7f5c1d0d0d7",
                }
            },
        ),
        Mongo("I", "NETWORK", 23015, "listener", "Listening on", {"address": "0.0.0.0"}),
        Mongo(
            "I",
            "NETWORK",
            23016,
            "listener",
            "Waiting for connections",
            {"port": 27017, "ssl": "requireSSL" if tls else "off"},
        ),
    ]


_NOT_APP_OUTPUT = ("container ", "liveness probe failed")
"""Termination messages written by the kubelet, not printed by the process."""


def _never_ran(st: ServiceState) -> bool:
    """The runtime could not exec the binary: no startup output at all."""
    message = st.runtime.last_termination_message or ""
    return bool(st.unknown_binary) or "executable file not found" in message


def crash_entries(st: ServiceState) -> list[Entry]:
    """Why the container keeps dying, in its own words (the kubelet's reason first)."""
    message = st.runtime.last_termination_message or ""
    if st.oom:
        return _oom_lines(st.family)
    if message and not message.startswith(_NOT_APP_OUTPUT):
        return list(message.splitlines())
    if message:
        return []
    if st.unknown_binary:
        return [f'exec: "{st.unknown_binary}": executable file not found in $PATH']
    return _fallback_crash(st)


def _fallback_crash(st: ServiceState) -> list[Entry]:
    """A crash the runtime did not explain: a broken build or an unreachable database."""
    name = st.spec.name
    if st.buggy_image and st.family in ("go", "logrus"):
        return [
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8f2b3a]",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            f"\t/go/src/github.com/harlow/go-micro-services/cmd/{name}/main.go:59 +0x3fa",
        ]
    broken_db = next((c for c in st.calls if c.infra_cause and c.call.protocol == "tcp"), None)
    if broken_db and broken_db.infra_cause and st.family == "go":
        return [f"panic: {broken_db.infra_cause.message}", "", "goroutine 1 [running]:"]
    generic: dict[str, list[Entry]] = {
        "go": [("fatal", f"cmd/{name}/main.go:90", f"Failed to start {name}: exit status 1")],
        "node": [("fatal", "", "Unhandled exception, exiting")],
        "java": ['Exception in thread "main" java.lang.IllegalStateException: startup failed'],
        "python": ["Traceback (most recent call last):", "SystemExit: 1"],
    }
    return generic.get(st.family, [("error", "", f"{name} exited with status 1")])


def _oom_lines(family: str) -> list[Entry]:
    if family in ("go", "logrus"):
        return [
            "fatal error: runtime: out of memory",
            "",
            "runtime stack:",
            "runtime.throw({0x1a6b2c1, 0x16})",
            "\t/usr/local/go/src/runtime/panic.go:1198 +0x71",
        ]
    table: dict[str, list[Entry]] = {
        "java": ['Exception in thread "main" java.lang.OutOfMemoryError: Java heap space'],
        "node": [
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
        ],
        "python": ["MemoryError"],
        "dotnet": ["Out of memory."],
    }
    return table.get(family, [])


def chatter(st: ServiceState, state: _Container, pod: str, ctx: _TickContext) -> list[Entry]:
    """The little a healthy container prints between requests."""
    rng = ctx.rng
    lines: list[Entry] = []
    if st.spec.kind == "mongodb":
        return _mongo_chatter(st, state, ctx)
    if st.family == "redis" and int(ctx.now // 300) != state.last_checkpoint:
        if state.last_checkpoint >= 0:
            lines += [
                ("info", "", "100 changes in 300 seconds. Saving..."),
                ("info", "", "Background saving started by pid 7"),
                ("info", "", "DB saved on disk"),
                ("info", "", "Background saving terminated with success"),
            ]
        state.last_checkpoint = int(ctx.now // 300)
    if st.rps <= 0 or rng.random() > 0.3:
        return lines
    said = _CHATTER.get(st.spec.name) or _CHATTER.get(st.family)
    if said:
        level, source, template = said[rng.randrange(len(said))]
        lines.append((level, source, template.format(id=uuid.UUID(int=rng.getrandbits(128)))))
    if st.family == "envoy":
        lines.append(_envoy_access(st, rng, "200", "-"))
    return lines


FLAG_LINES: dict[str, tuple[str, tuple[str, str, str]]] = {
    "recommendationCacheFailure": (
        "recommendation",
        ("info", "recommendation_server.py:61", "get_product_list: cache miss"),
    ),
    "kafkaQueueProblems": (
        "checkout",
        (
            "info",
            "",
            "Warning: FeatureFlag 'kafkaQueueProblems' is activated, overloading queue now.",
        ),
    ),
    "adManualGc": (
        "ad",
        ("info", "oteldemo.AdService", "The artificially triggered GCs took: 412 ms"),
    ),
}
"""Flag -> (service, line) the demo's code prints while the flag is on."""


def flag_lines(st: ServiceState, flags: frozenset[str]) -> list[Entry]:
    name = st.spec.name
    return [line for flag, (svc, line) in FLAG_LINES.items() if flag in flags and svc == name]


_CHATTER: dict[str, list[tuple[str, str, str]]] = {
    "ad": [
        ("info", "oteldemo.AdService", "Targeted ad request received for [travel]"),
        (
            "info",
            "oteldemo.AdService",
            "Non-targeted ad request received, preparing random response.",
        ),
    ],
    "cart": [("info", "cart.cartstore.ValkeyCartStore", "GetCartAsync called with userId={id}")],
    "payment": [("info", "", "Charge request received."), ("info", "", "Transaction complete.")],
    "checkout": [
        ("info", "", '[PlaceOrder] user_id="{id}" user_currency="USD"'),
        ("info", "", "payment went through (transaction_id: {id})"),
    ],
    "recommendation": [
        (
            "info",
            "recommendation_server.py:47",
            "Receive ListRecommendations for product ids:['OLJCESPC7Z', '66VCHSJNUP']",
        )
    ],
    "fraud-detection": [
        (
            "info",
            "frauddetection",
            "Consumed record with orderId: {id}, and updated total count to: 1",
        )
    ],
    "accounting": [("info", "Accounting.Consumer", "Order details: {{orderId: {id}}}")],
    "email": [("info", "", "Order confirmation email sent to: someone@example.com")],
    "currency": [("info", "", "Convert conversion successful")],
}


def _mongo_chatter(st: ServiceState, state: _Container, ctx: _TickContext) -> list[Entry]:
    lines: list[Entry] = []
    minute = int(ctx.now // 60)
    if minute != state.last_checkpoint:
        state.last_checkpoint = minute
        message = (
            "[WT_VERB_CHECKPOINT_PROGRESS] saving checkpoint snapshot min: 37, "
            "snapshot max: 37 snapshot count: 0, oldest timestamp: (0, 0)"
        )
        lines.append(
            Mongo("I", "STORAGE", 22430, "Checkpointer", "WiredTiger message", {"message": message})
        )
    if st.rps > 0 and ctx.rng.random() < 0.2:
        conn, remote = _accept(state, ctx)
        lines += [
            Mongo(
                "I",
                "NETWORK",
                22943,
                "listener",
                "Connection accepted",
                {"remote": remote, "connectionId": conn, "connectionCount": 3},
            ),
            Mongo(
                "I",
                "ACCESS",
                20250,
                f"conn{conn}",
                "Authentication succeeded",
                {
                    "mechanism": "SCRAM-SHA-1",
                    "speculative": False,
                    "principalName": "admin",
                    "authenticationDatabase": "admin",
                    "remote": remote,
                    "extraInfo": {},
                },
            ),
        ]
    return lines


def _accept(state: _Container, ctx: _TickContext) -> tuple[int, str]:
    state.connections += 1
    remote = (
        f"10.244.{ctx.rng.randrange(0, 4)}.{ctx.rng.randrange(2, 255)}:"
        f"{ctx.rng.randrange(32768, 61000)}"
    )
    return state.connections, remote


def error_entries(st: ServiceState, cause: ErrorCause, ctx: _TickContext) -> list[Entry]:
    """A failing batch: the same error repeated, a few lines a tick."""
    pods = max(len(st.running), 1)
    failing = st.rps * cause.fraction / pods if cause.fatal else st.rps * 0.05 / pods
    if cause.kind in ("no_endpoints", "refused") and cause.dependency is None:
        return []
    if failing * max(ctx.dt, 1.0) < 0.05 and cause.fraction < 0.999:
        return []
    count = min(5, 1 + int(failing * ctx.dt / 25.0))
    entry = _error_entry(st, cause)
    return [entry] * count


def _error_entry(st: ServiceState, cause: ErrorCause) -> Entry:
    family, name, dep = st.family, st.spec.name, cause.dependency or ""
    kinds = {s.name: s.kind for s in st.app.services}
    dep_kind = kinds.get(dep, "")
    level = "error" if cause.fatal else "warn"
    if family == "envoy":
        code = {"timeout": "504", "upstream": "500"}.get(cause.kind, "503")
        flags = {"no_endpoints": "UH", "timeout": "UT", "no_such_host": "UH", "upstream": "-"}
        return _envoy_access(st, random.Random(cause.message), code, flags.get(cause.kind, "UF"))
    if family == "mongodb":
        return Mongo("E", "NETWORK", 22992, "conn1", cause.message)
    what = _what_failed(st, dep, dep_kind, cause)
    source = _source(family, name, dep)
    if family == "nginx":
        route = vocab.ROUTES.get(dep, "/")
        return (
            level,
            "",
            f"*{_line_no(name, dep)} [lua] {source}: {what}, client: 10.244.0.1, "
            f'server: localhost, request: "POST {route} HTTP/1.1", host: "{name}:8080"',
        )
    return (level, source, what)


def _what_failed(st: ServiceState, dep: str, dep_kind: str, cause: ErrorCause) -> str:
    msg = cause.message
    if not dep:
        return msg
    if st.family == "cpp":
        if dep_kind == "mongodb":
            return f"Failed to find data in MongoDB {dep}: {msg}"
        if dep_kind in ("memcached", "redis"):
            return f"Failed to get from {dep}: {msg}"
        if cause.kind == "upstream":
            return f"{dep} returned an error: {msg}"
        return f"Failed to connect {dep}: {msg}"
    if dep_kind == "mongodb":
        db = msg.split(" on ", 1)[-1].split(" ", 1)[0] if "not authorized" in msg else dep
        return f"Failed to query {db}: {msg}"
    if dep_kind in ("memcached", "redis"):
        return f"{dep} get failed, falling back to the database: {msg}"
    if st.spec.name == "checkout" and dep == "payment":
        return f"failed to charge card: could not charge the card: {msg}"
    operation = vocab.operation_name(dep, dep_kind, family=st.family)
    return f"{operation} failed: {msg}"


def _source(family: str, name: str, dep: str) -> str:
    camel = "".join(p.capitalize() for p in name.split("-")).removesuffix("Service")
    if family == "go":
        return f"services/{name}/server.go:{_line_no(name, dep)}"
    if family == "cpp":
        return f"{camel}Handler.h:{_line_no(name, dep)}:_{camel}Helper"
    if family == "nginx":
        return f"{name.replace('-', '_')}.lua:{_line_no(name, dep)}"
    if family == "java":
        return f"oteldemo.{camel}Service"
    if family == "dotnet":
        return f"{name}.services.{camel}Service"
    if family == "python":
        return f"{name.replace('-', '_')}_server.py:{_line_no(name, dep)}"
    return ""


def _envoy_access(st: ServiceState, rng: random.Random, code: str, flags: str) -> Entry:
    """Envoy's default access-log format (the renderer adds the timestamp)."""
    path = "/api/products" if code == "200" else "/"
    request_id = uuid.UUID(int=rng.getrandbits(128))
    upstream = "frontend:8080" if code == "200" else "-"
    size = 1215 if code == "200" else 19
    return (
        "access",
        "",
        f'"GET {path} HTTP/1.1" {code} {flags} via_upstream - "-" 0 {size} '
        f'{rng.randrange(3, 40)} - "-" "python-requests/2.31.0" "{request_id}" '
        f'"{st.spec.name}:{st.spec.port}" "{upstream}"',
    )


# -- the server side of auth, TLS and certificate failures ------------------------------


def _collect_db_events(app_tick: AppTick, ctx: _TickContext) -> None:
    for st in app_tick.states.values():
        for cs in st.calls:
            cause = cs.infra_cause
            if cause is None or cs.rps <= 0:
                continue
            if cause.kind in ("unauthorized", "auth_failed", "tls_required"):
                ctx.db_events.setdefault(cs.call.callee, []).append(cause)
            if cause.kind == "x509":
                ctx.tls_victims.setdefault(cs.call.callee, []).append(st.spec.name)


def db_side_lines(st: ServiceState, state: _Container, ctx: _TickContext) -> list[Entry]:
    """What mongod logs when its clients fail auth or speak plain TCP to a TLS-only server."""
    lines: list[Entry] = []
    for cause in ctx.db_events.get(st.spec.name, []):
        conn, remote = _accept(state, ctx)
        lines.append(
            Mongo(
                "I",
                "NETWORK",
                22943,
                "listener",
                "Connection accepted",
                {"remote": remote, "connectionId": conn, "connectionCount": 4},
            )
        )
        lines += _db_failure(cause, conn, remote, st)
        lines.append(
            Mongo(
                "I",
                "NETWORK",
                22944,
                f"conn{conn}",
                "Connection ended",
                {"remote": remote, "connectionId": conn, "connectionCount": 3},
            )
        )
    return lines


def _db_failure(cause: ErrorCause, conn: int, remote: str, st: ServiceState) -> list[Entry]:
    db = database_name(st.spec, st.runtime)
    ctx = f"conn{conn}"
    if cause.kind == "unauthorized":
        collection = db.removesuffix("-db")
        errmsg = (
            f'not authorized on {db} to execute command {{ find: "{collection}", '
            f'filter: {{}}, $db: "{db}" }}'
        )
        error = {"code": 13, "codeName": "Unauthorized", "errmsg": errmsg}
        return [Mongo("I", "ACCESS", 20436, ctx, "Checking authorization failed", {"error": error})]
    if cause.kind == "auth_failed":
        user = st.runtime.config.get("app-user", "admin")
        attr: dict[str, object] = {
            "mechanism": "SCRAM-SHA-1",
            "speculative": False,
            "principalName": user,
            "authenticationDatabase": "admin",
            "remote": remote,
            "extraInfo": {},
            "error": f'UserNotFound: Could not find user "{user}" for db "admin"',
        }
        return [Mongo("I", "ACCESS", 20249, ctx, "Authentication failed", attr)]
    handshake = {
        "code": 141,
        "codeName": "SSLHandshakeFailed",
        "errmsg": "The server is configured to only allow SSL connections",
    }
    return [
        Mongo(
            "W",
            "NETWORK",
            23235,
            ctx,
            "SSL peer certificate validation failed",
            {"reason": "peer did not return a certificate"},
        ),
        Mongo(
            "I",
            "NETWORK",
            22988,
            ctx,
            "Error receiving request from client. Ending connection from remote",
            {"error": handshake, "remote": remote, "connectionId": conn},
        ),
    ]


def tls_server_lines(st: ServiceState, ctx: _TickContext) -> list[Entry]:
    """A server with an expired certificate sees its clients abort the handshake."""
    clients = ctx.tls_victims.get(st.spec.name, [])
    if not clients or st.family not in ("go", "logrus"):
        return []
    ip = pod_ip(st.app.namespace, clients[0])
    port = ctx.rng.randrange(32768, 61000)
    message = f"http: TLS handshake error from {ip}:{port}: remote error: tls: bad certificate"
    return [("warn", "log.go:184", message)]
