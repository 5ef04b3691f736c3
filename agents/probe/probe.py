"""The Probe: a free-text instruction from the Observer → a few read-only tool calls.

Small models are better at saying *what* they want to see ("check geo's
logs", "error rates", "traces for checkout") than at writing exact commands,
so routing is deterministic and cheap: a kubectl command runs as written
(through the allowlist), a named service gets its logs and a describe,
metric words become named Prometheus queries, trace words a Jaeger summary,
and anything else the analyzers. At most ``max_calls`` calls run per
instruction, an identical call is never repeated within one investigation
(the model gets "already ran" instead), each call has a total deadline, and
nothing here raises: whatever the model writes, a failure is an observation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from kubernetes import client

from agents.analyzers.runner import analyzers_tool
from agents.probe.command import READ_VERBS, WRITE_VERBS, CommandError, parse_kubectl
from agents.probe.kubectl import run_kubectl
from agents.probe.metrics import PrometheusClient, named_query, promql_tool
from agents.probe.traces import JaegerClient, error_traces_tool
from agents.redact import redact
from agents.tools.deadline import TOOL_DEADLINE_S, bounded, deadline_message
from agents.tools.errors import describe_error
from agents.tools.kube import get_items
from agents.tools.paths import object_path
from agents.tools.result import ToolResult

Tool = Literal["kubectl", "metrics", "promql", "traces", "analyze"]
DEFAULT_MAX_CALLS = 3
ANALYZE_DEADLINE_S = 90.0
LOG_TAIL = 50
_INTENT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("error_rate", ("error rate", "errors", "5xx", "failing requests", "failure rate")),
    ("latency_p99", ("latency", "p99", "slow", "response time")),
    ("cpu_throttling", ("throttl",)),
    ("cpu", ("cpu",)),
    ("memory", ("memory", "oom")),
    ("restarts", ("restart",)),
    ("kafka_lag", ("lag", "kafka", "queue")),
    ("request_rate", ("traffic", "rps", "request rate", "load")),
)
METRIC_WORDS = ("metric", "prometheus", *(w for _, words in _INTENT_WORDS for w in words))
TRACE_WORDS = ("trace", "span", "jaeger")
_CHECK_WORDS = ("log", "check", "inspect", "describe", "look at", "status of", "why")
_PROMQL_PREFIX = re.compile(r"^\s*(?:promql|prometheus query|query)\s*:?\s+(?P<q>.+)$", re.I | re.S)
_PROMQL_SHAPE = re.compile(
    r"^\s*(?:(?:sum|avg|max|min|count|topk|bottomk|rate|irate|increase|histogram_quantile|"
    r"avg_over_time|max_over_time)\b\s*(?:by|without)?\s*[(]|[a-z_:][\w:]*\{[^}]*\})"
)
NAMESPACE_FLAG = re.compile(r"(?:-n|--namespace[= ]|namespace)\s*([a-z0-9][a-z0-9-]*)")


@dataclass(frozen=True)
class Call:
    tool: Tool
    invocation: str
    namespace: str | None = None
    service: str | None = None
    intent: str | None = None


@dataclass
class _Workload:
    namespace: str
    selector: str


@dataclass
class Probe:
    """Routes instructions to read-only tools as the observer identity.

    Usage::

        probe = Probe(observer_api, prometheus_url, jaeger_url, max_calls=3)
        results = await probe.run("check the logs of geo")
    """

    observer_api: client.ApiClient
    prometheus_url: str | None
    jaeger_url: str | None
    _: KW_ONLY
    max_calls: int = DEFAULT_MAX_CALLS
    namespaces: Sequence[str] = ()
    window: str = "1m"
    deadline_s: float = TOOL_DEADLINE_S
    """Total time for one tool call (every request and the reading of every answer)."""
    analyze_deadline_s: float = ANALYZE_DEADLINE_S
    """The analyzers read every kind in every namespace in scope: they get longer."""
    _seen: set[str] = field(default_factory=set, init=False, repr=False)
    _workloads: dict[str, _Workload] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.prometheus = PrometheusClient(self.prometheus_url) if self.prometheus_url else None
        self.jaeger = JaegerClient(self.jaeger_url) if self.jaeger_url else None

    def reset(self) -> None:
        """Start a new investigation: earlier calls may run again."""
        self._seen.clear()
        self._workloads = None

    async def run(self, instruction: str) -> list[ToolResult]:
        """At most ``max_calls`` results for one instruction; never raises."""
        try:
            return await self._run(instruction)
        except Exception as exc:  # the Probe never raises into the loop
            invocation = str(instruction).strip()[:200]
            return [ToolResult.failure(invocation, redact(describe_error(exc)))]

    async def _run(self, instruction: str) -> list[ToolResult]:
        try:
            calls = await asyncio.wait_for(self.plan(instruction), self.deadline_s)
        except TimeoutError:
            reason = deadline_message("listing the workloads", self.deadline_s)
            return [ToolResult.failure(instruction.strip()[:200], reason)]
        results = []
        for call in calls[: self.max_calls]:
            if call.invocation in self._seen:
                results.append(
                    ToolResult.no_data(
                        call.invocation,
                        "already ran in this investigation: reuse its earlier result "
                        "or ask for something else",
                    )
                )
                continue
            self._seen.add(call.invocation)
            results.append(await self._execute(call))
        return results

    # -- planning ---------------------------------------------------------------------------

    async def plan(self, instruction: str) -> list[Call]:
        """The calls an instruction asks for, in order (deterministic)."""
        commands = kubectl_commands(instruction)
        if commands:
            return [Call("kubectl", c) for c in commands]
        query = promql_expression(instruction)
        if query:
            return [Call("promql", f"promql {query}")]
        text = instruction.lower()
        workloads = await self._catalog()
        namespace = self._namespace(text)
        services = mentioned(text, list(workloads))
        calls: list[Call] = []
        if any(word in text for word in TRACE_WORDS):
            calls += self._trace_calls(services, namespace, workloads)
        if any(word in text for word in METRIC_WORDS):
            calls += self._metric_calls(text, services, namespace, workloads)
        if "event" in text:
            ns = namespace or _first_namespace(services, workloads)
            calls.append(Call("kubectl", f"kubectl get events -n {ns} --sort-by=.lastTimestamp"))
        if services and (not calls or any(word in text for word in _CHECK_WORDS)):
            calls += self._check_calls(services, workloads)
        if not calls and ("pods" in text or "status" in text) and namespace:
            calls.append(Call("kubectl", f"kubectl get pods -n {namespace} -o wide"))
        if not calls:
            calls.append(self._analyze_call(namespace))
        return _unique(calls)

    def _namespace(self, text: str) -> str | None:
        match = NAMESPACE_FLAG.search(text)
        if match:
            return match.group(1)
        for namespace in self.namespaces:
            if namespace in text:
                return namespace
        return self.namespaces[0] if len(self.namespaces) == 1 else None

    def _trace_calls(
        self, services: list[str], namespace: str | None, workloads: dict[str, _Workload]
    ) -> list[Call]:
        if not services:
            return [Call("traces", f"traces errors -n {namespace or '*'}", namespace)]
        return [
            Call(
                "traces",
                f"traces errors {s} -n {workloads[s].namespace}",
                workloads[s].namespace,
                s,
            )
            for s in services[:2]
        ]

    def _metric_calls(
        self, text: str, services: list[str], namespace: str | None, workloads: dict[str, _Workload]
    ) -> list[Call]:
        ns = namespace or _first_namespace(services, workloads)
        intents = [intent for intent, words in _INTENT_WORDS if any(w in text for w in words)]
        intents = intents or ["error_rate", "latency_p99"]
        return [Call("metrics", f"metrics {i} -n {ns or '*'}", ns, intent=i) for i in intents]

    def _check_calls(self, services: list[str], workloads: dict[str, _Workload]) -> list[Call]:
        calls = []
        for service in services[:2]:
            found = workloads[service]
            ns = found.namespace
            calls.append(
                Call("kubectl", f"kubectl logs deploy/{service} -n {ns} --tail={LOG_TAIL}")
            )
            calls.append(Call("kubectl", f"kubectl describe pods -l {found.selector} -n {ns}"))
        return calls

    def _analyze_call(self, namespace: str | None) -> Call:
        scope = namespace or ",".join(self.namespaces) or "*"
        return Call("analyze", f"analyze -n {scope} [{self.window}]", namespace)

    async def _catalog(self) -> dict[str, _Workload]:
        """Deployment name → (namespace, pod selector), listed once per investigation."""
        if self._workloads is None:
            self._workloads = await asyncio.to_thread(self._list_workloads)
        return self._workloads

    def _list_workloads(self) -> dict[str, _Workload]:
        scopes: list[str | None] = list(self.namespaces) or [None]
        paths = [object_path("/apis/apps/v1", "deployments", namespace=ns) for ns in scopes]
        found: dict[str, _Workload] = {}
        for path in paths:
            for dep in get_items(self.observer_api, path):
                labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                selector = ",".join(f"{k}={v}" for k, v in labels.items())
                found.setdefault(
                    dep["metadata"]["name"], _Workload(dep["metadata"]["namespace"], selector)
                )
        return found

    # -- running ----------------------------------------------------------------------------

    async def _execute(self, call: Call) -> ToolResult:
        """One call within ``deadline_s``; any exception or timeout is an ERROR result."""
        return await bounded(
            self._dispatch(call),
            invocation=call.invocation,
            deadline_s=self.analyze_deadline_s if call.tool == "analyze" else self.deadline_s,
            what=f"`{call.invocation}`",
            clean=redact,
        )

    async def _dispatch(self, call: Call) -> ToolResult:
        if call.tool == "kubectl":
            return await run_kubectl(
                call.invocation,
                api=self.observer_api,
                prometheus=self.prometheus,
                default_namespace=self._default_namespace(),
                deadline_s=self.deadline_s,
            )
        if call.tool == "metrics":
            return await self._metrics(call)
        if call.tool == "traces":
            return await self._traces(call)
        if call.tool == "promql":
            return await self._promql(call)
        return await analyzers_tool(
            self.observer_api,
            namespaces=self._scope(call),
            prometheus_url=self.prometheus_url,
            jaeger_url=self.jaeger_url,
            window=self.window,
        )

    def _default_namespace(self) -> str | None:
        return self.namespaces[0] if len(self.namespaces) == 1 else None

    def _scope(self, call: Call) -> list[str] | None:
        if call.namespace:
            return [call.namespace]
        return list(self.namespaces) or None

    async def _metrics(self, call: Call) -> ToolResult:
        if self.prometheus is None:
            return ToolResult.failure(
                call.invocation, "no Prometheus is configured for this cluster"
            )
        return await named_query(
            self.prometheus, call.intent or "error_rate", call.namespace, self.window
        )

    async def _promql(self, call: Call) -> ToolResult:
        if self.prometheus is None:
            return ToolResult.failure(
                call.invocation, "no Prometheus is configured for this cluster"
            )
        return await promql_tool(self.prometheus, call.invocation.removeprefix("promql "))

    async def _traces(self, call: Call) -> ToolResult:
        if self.jaeger is None:
            return ToolResult.failure(call.invocation, "no Jaeger is configured for this cluster")
        return await error_traces_tool(self.jaeger, namespace=call.namespace, service=call.service)


def kubectl_commands(instruction: str) -> list[str]:
    """The commands in an instruction: `backticked` parts, else lines, from ``kubectl`` on (or
    starting with a kubectl verb). Write verbs are kept: the kubectl tool refuses them visibly."""
    quoted: list[str] = re.findall(r"`([^`]+)`", instruction)
    found: list[str] = []
    for raw in quoted or instruction.strip().splitlines():
        line = raw.strip().strip("'\"").removeprefix("$ ").strip()
        start = line.find("kubectl ")
        if start >= 0:
            found.append(line[start:])
        elif line.split(" ", 1)[0] in READ_VERBS | WRITE_VERBS and _looks_like_command(line):
            found.append(line)
    return found


def promql_expression(instruction: str) -> str | None:
    """A PromQL query in the instruction: after ``promql:``/``query:``, or the text itself when
    it reads like PromQL (``sum by (x) (rate(...))``, ``metric{label="v"}``)."""
    text = instruction.strip().strip("`").strip()
    prefixed = _PROMQL_PREFIX.match(text)
    if prefixed:
        return prefixed.group("q").strip()
    return text if _PROMQL_SHAPE.match(text) else None


def _looks_like_command(line: str) -> bool:
    """``describe pod x`` is a command; ``describe what is wrong`` is a request in words."""
    try:
        parse_kubectl(line)
    except CommandError as exc:
        return exc.denied
    return True


def mentioned(text: str, names: list[str]) -> list[str]:
    """Service names written in the text as whole words, longest names first."""
    found: list[str] = []
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
            found.append(name)
    return found


def _first_namespace(services: list[str], workloads: dict[str, _Workload]) -> str | None:
    return workloads[services[0]].namespace if services else None


def _unique(calls: list[Call]) -> list[Call]:
    seen: set[str] = set()
    unique = []
    for call in calls:
        if call.invocation not in seen:
            seen.add(call.invocation)
            unique.append(call)
    return unique
