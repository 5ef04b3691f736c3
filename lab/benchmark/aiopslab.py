"""Our Observer as an AIOpsLab agent, for a user's real AIOpsLab cluster.

AIOpsLab (microsoft/AIOpsLab) drives an agent through ``init_context(problem_desc,
instructions, apis)`` and then ``await get_action(state)`` once per step; each
answer must hold exactly one markdown-fenced API call (``exec_shell("...")``,
``get_logs(namespace, service)``, ``get_metrics(namespace, duration)``,
``get_traces(namespace, duration)``, ``read_metrics(path)``, ``read_traces(path)``
or the task's ``submit(...)``), which its orchestrator parses and runs. Our
Observer instead answers with one JSON decision (probe / executor / submit), so
``AoiAgent`` makes one decision per step and translates it:

- The state AIOpsLab returns is cluster output: redacted, compressed and fenced as
  DATA in the Observer's prompt, exactly like the runtime's observations, so an
  instruction inside a log is never followed.
- A probe that is a kubectl command goes out as ``exec_shell`` only after our
  Probe's parser accepted it as a read (``agents.probe.command``), re-quoted word
  by word (``shlex.join``) because AIOpsLab runs it through a shell. Words about
  logs, traces or metrics become ``get_logs`` / ``get_traces`` / ``get_metrics``.
  A refused command is never sent: it becomes a note, and the Observer is asked
  again (at most ``max_asks`` times a step, then a pod listing is sent instead).
- Our safety boundary says writes need a person's approval; AIOpsLab's mitigation
  task wants the agent itself to run the fix. So a fix goes out only if it is an
  Executor catalogue action (``agents.executor.parse_action``, denylist included)
  and ``approve(command)`` returns True. With no ``approve`` hook the fix is not
  run and the agent submits at once (the mitigation then fails, honestly).
- ``submit`` is written in the task's format (detection ``submit("Yes")``,
  localization ``submit(["svc"])``, analysis ``submit({"system_level": ...,
  "fault_type": ...})``, mitigation ``submit()``); the last step always submits.

Every string goes into the call so that AIOpsLab's parser reads back exactly
what was meant (``python_literal``, ``shell_call``): one that cannot be carried
unchanged is refused rather than sent garbled.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.compressor import compress
from agents.decision import (
    DECISION_MAX_TOKENS,
    DECISION_SCHEMA,
    SUBMIT_SCHEMA,
    Decision,
    DecisionError,
    parse_decision,
    repair_prompt,
)
from agents.executor import DEFAULT_RULES, ActionError, ActionRules, parse_action
from agents.llm import ChatModel, ModelError, Usage
from agents.llm.base import Message
from agents.probe.command import CommandError, parse_kubectl
from agents.probe.probe import kubectl_commands
from agents.prompts import observer_messages
from agents.redact import redact
from agents.runtime import OBSERVATION_TOKENS
from agents.scoring import decision_answer
from agents.tools.paths import InvalidPathPart, dns_label
from lab.benchmark.questions import task_question
from store.labels import TASK_TYPES, TaskType

NEXT_ACTION = "Please take the next action"
"""What AIOpsLab's orchestrator appends to every state it sends (and sends alone first)."""
DEFAULT_DURATION_MIN = 5
"""AIOpsLab's default for get_metrics / get_traces: the last five minutes."""
MAX_DURATION_MIN = 120
DEFAULT_MAX_ASKS = 3
NOTE_CHARS = 300
AIOPSLAB_APIS = frozenset(
    {"exec_shell", "get_logs", "get_metrics", "get_traces", "read_metrics", "read_traces", "submit"}
)
"""What every AIOpsLab task offers (``aiopslab.orchestrator.actions``)."""

_FENCE = "```"
_ROLE = re.compile(r"assigned to ([^.\n]+)", re.IGNORECASE)
# Most specific first: every task's text says "detected" somewhere.
_TASK_WORDS: tuple[tuple[TaskType, re.Pattern[str]], ...] = (
    ("mitigation", re.compile(r"\bmitigat", re.IGNORECASE)),
    ("analysis", re.compile(r"root[- ]cause analysis|system_level", re.IGNORECASE)),
    ("localization", re.compile(r"\blocali[sz]", re.IGNORECASE)),
    ("detection", re.compile(r"\bdetect|\bhas_anomaly\b", re.IGNORECASE)),
)
_DETAIL = {
    key: re.compile(rf"^\s*{label}:[ \t]*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
    for key, label in (
        ("app_name", "Service Name"),
        ("namespace", "Namespace"),
        ("description", "Description"),
    )
}
_LOG_OF = re.compile(
    r"\blogs?\s+(?:of|for|from)\s+(?:the\s+)?(?:service\s+|pod\s+|deployment\s+)?"
    r"[`'\"]?(?:deploy/|deployment/|svc/|pod/)?([a-z0-9][-a-z0-9.]*[a-z0-9]|[a-z0-9])\b"
)
_LOGS_AFTER = re.compile(r"\b([a-z0-9][-a-z0-9.]*[a-z0-9])(?:'s)?\s+(?:service\s+)?logs?\b")
_NOT_SERVICES = frozenset(
    {"the", "all", "its", "their", "recent", "error", "errors", "service", "services", "pod",
     "pods", "container", "any", "some", "more", "latest", "last", "these", "those", "check",
     "read", "get", "show", "see", "fetch", "collect", "application", "app", "this", "that"}
)  # fmt: skip
_TRACE_WORDS = ("trace", "span", "jaeger")
_METRIC_WORDS = (
    "metric", "prometheus", "cpu", "memory", "latency", "error rate", "throughput", "p99",
    "request rate", "traffic", "network", "disk", "throttl", "kpi", "rate(",
)  # fmt: skip
_MINUTES = re.compile(r"\b(\d{1,4})\s*(m|min|mins|minutes?|h|hours?)\b", re.IGNORECASE)
_TRACES_EXPORTED = re.compile(r"Traces data exported to:\s*(\S+\.csv)")
_METRICS_EXPORTED = re.compile(r"Metrics data exported to directory:\s*(\S+)")
_API_CALL = re.compile(r"^\s*(exec_shell|get_logs)\s*\((.*)\)\s*$", re.DOTALL)


class Unsendable(ValueError):  # noqa: N818 (a reason, read by the caller, not a failure)
    """A value AIOpsLab's response parser would not read back unchanged."""


class _Refused(Exception):  # noqa: N818
    """A decision the adapter will not send; ``note`` tells the Observer why."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


# -- the call syntax AIOpsLab parses ---------------------------------------------------------


def fenced(code: str) -> str:
    """One call as AIOpsLab's instructions ask: a bare markdown block, nothing else around it."""
    return f"{_FENCE}\n{code}\n{_FENCE}"


def python_literal(value: object) -> str:
    """``value`` as Python source that ``ast`` reads back equal (AIOpsLab parses args with ast).

    Strings are double-quoted and pure ASCII: backslashes, quotes, newlines, control
    characters, backticks (a fence inside the block would end it) and anything
    outside printable ASCII are escaped, so any string round-trips.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only string keys can be written for AIOpsLab")
        items = (f"{_string_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write a {type(value).__name__} for AIOpsLab")


def _string_literal(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '\\"':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F and ch != "`":
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def api_call(api: str, *args: object) -> str:
    """``api(args...)`` fenced, each argument a Python literal (not for exec_shell)."""
    if api == "exec_shell":
        raise ValueError("exec_shell has its own quoting: use shell_call")
    return fenced(f"{api}({', '.join(python_literal(a) for a in args)})")


def shell_call(command: str) -> str:
    """``exec_shell("command")`` fenced, quoted so AIOpsLab's shell-argument rule reads it back.

    AIOpsLab does not parse exec_shell's argument as Python: it strips the outer
    quote characters (all of them, at both ends) and turns ``\\"`` and ``\\'`` into
    quotes, nothing else. So a backslash, a backtick, a newline or a control
    character cannot be carried unchanged (``Unsendable``), and a command ending in
    ``"`` is wrapped in single quotes so the strip cannot eat it. What is sent also
    reads back unchanged as a Python string literal.
    """
    if not command.strip():
        raise Unsendable("an empty command")
    bad = sorted({ch for ch in command if ch in "\\`" or not ch.isprintable()})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:5])
        raise Unsendable(
            f"the command holds {shown}, which AIOpsLab's exec_shell parsing would change"
        )
    quote = "'" if command.endswith('"') else '"'
    return fenced(f"exec_shell({quote}{command.replace(quote, chr(92) + quote)}{quote})")


# -- the problem AIOpsLab poses ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What ``init_context`` learnt from AIOpsLab's problem description."""

    task_type: TaskType
    app_name: str
    namespace: str
    description: str = ""


def read_problem(problem_desc: str, *, apis: str = "") -> Problem:
    """The task type and the service's details in an AIOpsLab task description.

    The task type comes from the role sentence ("... assigned to localize faults in a
    deployed service"), else from the whole text and the APIs' documentation; the
    service from its "Service Name:", "Namespace:" and "Description:" lines.
    """
    details = {
        key: (m.group(1).strip() if (m := rule.search(problem_desc)) else "")
        for key, rule in _DETAIL.items()
    }
    if not details["namespace"]:
        raise ValueError(
            "the problem description has no 'Namespace:' line (AIOpsLab writes one in "
            "'Service Details'); pass namespace= to AoiAgent instead"
        )
    role = _ROLE.search(problem_desc)
    for text in (role.group(1) if role else "", problem_desc, apis):
        for task_type, words in _TASK_WORDS:
            if words.search(text):
                return Problem(task_type=task_type, **details)
    raise ValueError(
        "cannot tell the task type from the problem description; pass task_type= "
        f"(one of {', '.join(TASK_TYPES)}) to AoiAgent"
    )


def _apis_text(apis: Mapping[str, str] | str) -> str:
    if isinstance(apis, str):
        return apis
    return "\n\n".join(f"{name}\n{doc}" for name, doc in apis.items())


def _api_names(apis: Mapping[str, str] | str) -> frozenset[str]:
    """The APIs the task offers (AIOpsLab passes name -> docstring; a text lists the names)."""
    if not isinstance(apis, str):
        return frozenset(apis) or AIOPSLAB_APIS
    named = frozenset(a for a in AIOPSLAB_APIS if re.search(rf"\b{a}\b", apis))
    return named or AIOPSLAB_APIS


# -- the agent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API call the adapter answers with: ``text`` is exactly what AIOpsLab receives."""

    api: str
    args: tuple[Any, ...]
    text: str

    @property
    def code(self) -> str:
        return self.text.removeprefix(_FENCE + "\n").removesuffix("\n" + _FENCE)


@dataclass
class StepRecord:
    """What happened in one ``get_action``: the decisions asked for, the notes, the call sent."""

    step: int
    decisions: list[str] = field(default_factory=list)
    """Each decision's ``kind: instruction``, in order (more than one after a refusal)."""
    notes: list[str] = field(default_factory=list)
    sent: str = ""


class AoiAgent:
    """The AOI Observer behind AIOpsLab's agent interface.

    Usage (in AIOpsLab's environment)::

        agent = AoiAgent(make_model("path/to/model.gguf"), max_steps=30)
        orchestrator.register_agent(agent, name="aoi")
        desc, instructions, apis = orchestrator.init_problem(problem_id)
        agent.init_context(desc, instructions, apis)
        await orchestrator.start_problem(max_steps=30)

    ``max_steps`` must be the number given to ``start_problem``: the agent cannot see
    it, and it submits on that step. ``approve`` sees each fix's exact shell command
    (mitigation only); None runs no fix. ``task_type`` and ``namespace`` override
    what ``init_context`` reads from the description.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        max_steps: int,
        approve: Callable[[str], bool] | None = None,
        task_type: TaskType | None = None,
        namespace: str | None = None,
        rules: ActionRules = DEFAULT_RULES,
        max_asks: int = DEFAULT_MAX_ASKS,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1 (the step that submits)")
        if task_type is not None and task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {', '.join(TASK_TYPES)}")
        self.model = model
        self.max_steps = max_steps
        self.approve = approve
        self.rules = rules
        self.max_asks = max(1, max_asks)
        self._task_type = task_type
        self._namespace = namespace
        self.problem: Problem | None = None
        self.question = ""
        self.apis: frozenset[str] = AIOPSLAB_APIS
        self.steps = 0
        self.usage = Usage()
        self.history: list[Decision] = []
        self.records: list[StepRecord] = []
        self._state = ""
        self._notes: list[str] = []
        self._carry: list[str] = []
        self._last: Call | None = None
        self._last_instruction = ""
        self._seen: set[str] = set()

    # -- AIOpsLab's interface -------------------------------------------------------------------

    def init_context(
        self, problem_desc: str, instructions: str, apis: Mapping[str, str] | str
    ) -> None:
        """Read the task (as AIOpsLab's clients do); resets the agent for a new problem.

        ``instructions`` (AIOpsLab's reply format) is not shown to the model: the
        adapter writes the calls itself.
        """
        del instructions  # the format it describes is what fenced()/shell_call() write
        text = _apis_text(apis)
        if self._namespace and "Namespace:" not in problem_desc:
            problem_desc = f"{problem_desc}\nNamespace: {self._namespace}"
        problem = read_problem(problem_desc, apis=text)
        self.problem = Problem(
            task_type=self._task_type or problem.task_type,
            app_name=problem.app_name,
            namespace=self._namespace or problem.namespace,
            description=problem.description,
        )
        dns_label(self.problem.namespace, what="namespace")
        self.question = task_question(
            self.problem.task_type,
            app_name=self.problem.app_name,
            namespace=self.problem.namespace,
            description=self.problem.description,
        )
        self.apis = _api_names(apis)
        self.steps = 0
        self.usage = Usage()
        self.history = []
        self.records = []
        self._state, self._last, self._last_instruction = "", None, ""
        self._notes, self._carry = [], []
        self._seen = set()

    async def get_action(self, state: str) -> str:
        """The next call for AIOpsLab, given what the previous one returned (``state``)."""
        if self.problem is None:
            raise RuntimeError(
                "call init_context(problem_desc, instructions, apis) first, with what "
                "Orchestrator.init_problem returned"
            )
        self.steps += 1
        record = StepRecord(step=self.steps)
        self.records.append(record)
        output = _output(state)
        self._observe(output)
        last = self.steps >= self.max_steps
        if not last:
            follow = self._follow_up(output)
            if follow is not None:
                return self._send(record, follow)
        for _ in range(self.max_asks):
            messages = observer_messages(
                question=self.question,
                history=self.history,
                observation=self._observation(),
                step=min(self.steps, self.max_steps),
                max_steps=self.max_steps,
                force_submit=last,
            )
            try:
                decision = await self._decide(messages, last=last)
            except (ModelError, DecisionError) as exc:
                record.notes.append(_clip(f"the model failed ({exc}); submitting what it had"))
                return self._send(record, self._submission(self._latest()))
            self.history.append(decision)
            action = decision.next_action
            record.decisions.append(f"{action.kind}: {action.instruction}")
            if last or action.kind == "submit":
                return self._send(record, self._submission(decision))
            try:
                call = self._route(decision, record)
            except _Refused as refused:
                self._note(record, refused.note)
                continue
            if call.api != "submit" and call.text in self._seen:
                self._carry.clear()  # notes about a call that is not sent after all
                self._note(
                    record,
                    f"`{call.code}` already ran and nothing was changed since: reuse its "
                    "result or ask for something else",
                )
                continue
            self._last_instruction = action.instruction
            return self._send(record, call)
        try:
            fallback = self._pods()
        except _Refused:
            return self._send(record, self._submission(self._latest()))
        self._later(record, f"after {self.max_asks} refused requests a pod listing was sent")
        return self._send(record, fallback)

    # -- observing ------------------------------------------------------------------------------

    def _observe(self, output: str) -> None:
        if not output:
            self._state = ""
            return
        label = self._last.code if self._last else "AIOpsLab"
        text = redact(output)
        self._state = compress([(label, text)], budget_tokens=OBSERVATION_TOKENS).text

    def _observation(self) -> str:
        notes = [f"adapter note: {n}" for n in self._notes]
        return "\n".join([*notes, self._state]).strip()

    def _note(self, record: StepRecord, note: str) -> None:
        """A note for the Observer's next ask within this step (after a refusal)."""
        note = _clip(redact(note))
        record.notes.append(note)
        self._notes.append(note)

    def _later(self, record: StepRecord, note: str) -> None:
        """A note about the call being sent, shown with its result in the next step."""
        note = _clip(redact(note))
        record.notes.append(note)
        self._carry.append(note)

    def _follow_up(self, output: str) -> Call | None:
        """get_traces and get_metrics only say where they saved the data: read it next."""
        if self._last is None or not output:
            return None
        if self._last.api == "get_traces" and "read_traces" in self.apis:
            found = _TRACES_EXPORTED.search(output)
            if found:
                return self._call("read_traces", found.group(1))
        if self._last.api == "get_metrics" and "read_metrics" in self.apis:
            path = _metrics_file(output, self._last_instruction)
            if path:
                return self._call("read_metrics", path)
        return None

    # -- deciding -------------------------------------------------------------------------------

    async def _decide(self, messages: list[Message], *, last: bool) -> Decision:
        """One decision, schema-constrained, with one repair attempt (as the runtime does)."""
        schema = SUBMIT_SCHEMA if last else DECISION_SCHEMA
        completion = await self.model.complete(
            messages, schema=schema, max_tokens=DECISION_MAX_TOKENS
        )
        self.usage.add(completion)
        try:
            return parse_decision(completion.text)
        except DecisionError as exc:
            reason = exc.reason
            if completion.finish_reason == "length":
                reason += f" (the answer was cut off at max_tokens={DECISION_MAX_TOKENS})"
            completion = await self.model.complete(
                repair_prompt(completion.text, error=reason),
                schema=schema,
                max_tokens=2 * DECISION_MAX_TOKENS,
            )
            self.usage.add(completion)
            return parse_decision(completion.text)

    def _latest(self) -> Decision | None:
        return self.history[-1] if self.history else None

    def _send(self, record: StepRecord, call: Call) -> str:
        record.sent = call.text
        if call.api != "submit":
            self._seen.add(call.text)
        self._last = call
        # The notes were shown for this step; what the call itself leaves is shown next.
        self._notes, self._carry = self._carry, []
        return call.text

    # -- routing a decision to one call -----------------------------------------------------------

    def _route(self, decision: Decision, record: StepRecord) -> Call:
        instruction = decision.next_action.instruction
        if decision.next_action.kind == "executor":
            return self._fix(instruction, record)
        return self._read(instruction, record)

    def _read(self, instruction: str, record: StepRecord) -> Call:
        instruction = _unwrap(instruction)
        text = instruction.lower()
        # "logs of geo" reads like `kubectl logs of geo` (pod "of", container "geo"): words first.
        service = _log_service(text)
        if service is not None and "kubectl" not in text:
            return self._call("get_logs", self._ns, service)
        commands = kubectl_commands(instruction)
        if commands:
            call = self._kubectl(commands[0])
            if len(commands) > 1:
                self._later(record, f"sent only `{_short(commands[0])}`: one command a step")
            return call
        if service is not None or re.search(r"\blogs?\b", text):
            if service is None:
                raise _Refused("say whose logs to read, e.g. `logs of SERVICE`")
            return self._call("get_logs", self._ns, service)
        if any(word in text for word in _TRACE_WORDS):
            return self._call("get_traces", self._ns, _duration(text))
        if any(word in text for word in _METRIC_WORDS):
            return self._call("get_metrics", self._ns, _duration(text))
        if "event" in text:
            return self._kubectl(f"kubectl get events -n {self._ns} --sort-by=.lastTimestamp")
        if re.search(r"\b(?:services?|svc|endpoints?)\b", text):
            return self._kubectl(f"kubectl get services,endpoints -n {self._ns} -o wide")
        return self._pods()

    def _kubectl(self, command: str) -> Call:
        """A kubectl read as exec_shell, or ``_Refused`` (never sent) when it is not one."""
        try:
            parsed = parse_kubectl(command)
            words = shlex.split(command)
        except (CommandError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, CommandError) else str(exc)
            raise _Refused(f"`{_short(command)}` was not sent: {reason}") from None
        if words[0] != "kubectl":
            words.insert(0, "kubectl")
        if parsed.namespace is None and not parsed.all_namespaces:
            words += ["-n", self._ns]  # AIOpsLab's shell would read "default" otherwise
        # Quoted word by word: AIOpsLab runs the text in a shell, which must see our words.
        shell = shlex.join(words)
        try:
            parse_kubectl(shell)
            text = shell_call(shell)
        except (CommandError, Unsendable) as exc:
            reason = exc.reason if isinstance(exc, CommandError) else str(exc)
            raise _Refused(f"`{_short(command)}` was not sent: {reason}") from None
        self._require("exec_shell")
        return Call("exec_shell", (shell,), text)

    def _fix(self, instruction: str, record: StepRecord) -> Call:
        """A mitigation's fix as exec_shell: a catalogue action, approved, or nothing runs."""
        assert self.problem is not None
        if self.problem.task_type != "mitigation":
            raise _Refused(
                "this task asks for an answer, not a change: nothing was changed. "
                "Read more, or submit your answer"
            )
        try:
            spec = parse_action(instruction, default_namespace=self._ns, rules=self.rules)
        except ActionError as exc:
            raise _Refused(f"that fix is not an Executor action: {exc.reason}") from None
        command = spec.kubectl()
        if "<first" in command:
            raise _Refused(
                "name the container (-c NAME) or the Service port in the fix: the adapter "
                f"cannot fill in `{_short(command)}` for you"
            )
        shell = shlex.join(shlex.split(command))
        try:
            same = parse_action(shell, default_namespace=self._ns, rules=self.rules) == spec
            text = shell_call(shell)
        except (ActionError, Unsendable) as exc:
            raise _Refused(f"`{_short(command)}` cannot be sent unchanged: {exc}") from None
        if not same:
            raise _Refused(f"`{_short(command)}` would not reach the shell as written")
        if self.approve is None:
            record.notes.append(f"not run, no approver (writes need approval): {_short(shell)}")
            return self._submit_call(())
        if not self.approve(shell):
            raise _Refused(f"the approver declined `{_short(shell)}`: propose another or submit")
        self._require("exec_shell")
        self._seen.clear()  # the cluster changed: earlier reads may tell something new
        return Call("exec_shell", (shell,), text)

    def _pods(self) -> Call:
        return self._kubectl(f"kubectl get pods -n {self._ns} -o wide")

    def _call(self, api: str, *args: Any) -> Call:
        self._require(api)
        return Call(api, tuple(args), api_call(api, *args))

    def _require(self, api: str) -> None:
        if api not in self.apis:
            raise _Refused(f"this task offers no {api}; it offers {', '.join(sorted(self.apis))}")

    @property
    def _ns(self) -> str:
        assert self.problem is not None
        return self.problem.namespace

    # -- submitting -----------------------------------------------------------------------------

    def _submission(self, decision: Decision | None) -> Call:
        """The task's submit(...) from a decision (None: the "nothing found" answer)."""
        assert self.problem is not None
        return self._submit_call(submission(self.problem.task_type, decision))

    def _submit_call(self, args: tuple[Any, ...]) -> Call:
        return Call("submit", args, api_call("submit", *args))


def submission(task_type: TaskType, decision: Decision | None) -> tuple[Any, ...]:
    """The arguments of AIOpsLab's ``submit`` for ``task_type``, read from a decision.

    detection ``("Yes",)`` / ``("No",)``; localization ``(["svc", ...],)``; analysis
    ``({"system_level": ..., "fault_type": ...},)`` or ``()`` when no fault was found;
    mitigation ``()``. The decision is read by ``agents.scoring.decision_answer``, as
    the benchmark and the trainer's rewards read it; None (no decision at all) submits
    "nothing found".
    """
    if task_type == "mitigation":
        return ()
    if decision is None:
        return {"detection": ("No",), "localization": ([],)}.get(task_type, ())
    answer = decision_answer(task_type, decision)
    return () if answer is None else (answer,)


# -- reading instructions and states ----------------------------------------------------------


def _output(state: str) -> str:
    """What the previous call returned: the state without AIOpsLab's closing prompt."""
    text = state.rstrip()
    if text.endswith(NEXT_ACTION):
        text = text[: -len(NEXT_ACTION)]
    return text.strip()


def _unwrap(instruction: str) -> str:
    """An instruction written as an AIOpsLab call (``exec_shell("...")``) read as what it asks."""
    match = _API_CALL.match(instruction.strip().strip("`").strip())
    if match is None:
        return instruction
    try:
        args = ast.literal_eval(f"({match.group(2)},)")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return instruction
    strings = [a for a in args if isinstance(a, str)]
    if match.group(1) == "exec_shell" and strings:
        return f"`{strings[0]}`"
    if match.group(1) == "get_logs" and strings:
        return f"logs of {strings[-1]}"
    return instruction


def _log_service(text: str) -> str | None:
    for pattern in (_LOG_OF, _LOGS_AFTER):
        for match in pattern.finditer(text):
            name = match.group(1)
            if name in _NOT_SERVICES:
                continue
            try:
                return dns_label(name, what="service name")
            except InvalidPathPart:
                continue
    return None


def _duration(text: str) -> int:
    match = _MINUTES.search(text)
    if match is None:
        return DEFAULT_DURATION_MIN
    minutes = int(match.group(1)) * (60 if match.group(2).lower().startswith("h") else 1)
    return max(1, min(MAX_DURATION_MIN, minutes))


def _metrics_file(output: str, instruction: str) -> str | None:
    """The exported CSV that best matches what was asked (AIOpsLab lists the folder's files)."""
    found = _METRICS_EXPORTED.search(output)
    if found is None:
        return None
    root = found.group(1).rstrip("/")
    listing = output[found.end() :].split("Folder structure of exported metrics:", 1)[-1]
    stack: list[str] = []
    files: list[str] = []
    for line in listing.splitlines():
        name = line.strip()
        if not name:
            continue
        level = (len(line) - len(line.lstrip(" "))) // 4
        if name.endswith("/"):
            stack = [*stack[:level], name.rstrip("/")]
        elif name.endswith(".csv") and level >= 1:
            files.append("/".join([root, *stack[1:level], name]))
    if not files:
        return None
    wanted = set(re.findall(r"[a-z0-9]+", instruction.lower()))

    def score(path: str) -> int:
        words = set(re.findall(r"[a-z0-9]+", path.rsplit("/", 1)[-1].lower()))
        return len(words & wanted)

    return max(files, key=lambda path: (score(path), -files.index(path)))


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str) -> str:
    return _short(text, NOTE_CHARS)
