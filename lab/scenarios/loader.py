"""Read scenario files into a registry, with errors that point at the offending line.

A scenario file holds one scenario (a mapping), a list of scenarios (a top-level
sequence), or several YAML documents separated by ``---``, each either of those.
The built-in catalogue is ``lab/scenarios/catalog/*.yaml``; users add folders with
``--scenarios-dir DIR`` (every ``*.yaml`` / ``*.yml`` below it, sorted by path).

Everything is checked before a scenario reaches a cluster: field names and types
(pydantic), then the families, apps, targets, parameters, split and ground truth
against ``lab.apps`` and ``lab.scenarios.families``. Every problem is reported as
``file:line: reason``; the line comes from the YAML node marks, so the person
fixing the file does not have to guess which of a hundred scenarios is wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lab.apps import APPS, AppSpec
from lab.errors import LabError
from lab.scenarios.families import (
    FAMILIES,
    FEATURE_FLAGS,
    FamilyInfo,
    check_param,
    default_labels,
    parse_param,
)
from lab.scenarios.schema import (
    FaultSpec,
    GroundTruth,
    ParamValue,
    Scenario,
    ScenarioDoc,
    Source,
    Split,
    TaskType,
)

CATALOG_DIR = Path(__file__).with_name("catalog")
Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]
"""A problem inside one scenario: where (a path of keys and indexes) and why."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario definition."""

    file: Path | None
    line: int | None
    reason: str

    def __str__(self) -> str:
        if self.file is None:
            return self.reason
        return f"{self.file}:{self.line}: {self.reason}"


class ScenarioError(LabError):
    """A scenario definition is invalid; ``problems`` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"invalid scenario definition ({len(self.problems)} problem(s)):\n{lines}\n"
            "Fix the lines above; the fields are described in lab/scenarios/schema.py "
            "and the fault families in lab/scenarios/families.py."
        )


class UnknownScenario(LabError, LookupError):  # noqa: N818 - the name callers catch
    """No scenario has the requested id."""

    def __init__(self, scenario_id: str, suggestions: Sequence[str], count: int) -> None:
        self.scenario_id = scenario_id
        self.suggestions = tuple(suggestions)
        hint = f" Did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"no scenario {scenario_id!r} among the {count} loaded.{hint}")


class Registry:
    """The loaded scenarios, in file order, by id."""

    def __init__(self, scenarios: Iterable[Scenario]) -> None:
        self._by_id: dict[str, Scenario] = {}
        for scenario in scenarios:
            if scenario.id in self._by_id:
                raise ScenarioError([_duplicate(self._by_id[scenario.id], scenario)])
            self._by_id[scenario.id] = scenario

    def get(self, scenario_id: str) -> Scenario:
        """The scenario with this id; raises ``UnknownScenario`` with close matches."""
        try:
            return self._by_id[scenario_id]
        except KeyError:
            close = difflib.get_close_matches(scenario_id, list(self._by_id), n=5, cutoff=0.6)
            raise UnknownScenario(scenario_id, close, len(self._by_id)) from None

    def __contains__(self, scenario_id: object) -> bool:
        return scenario_id in self._by_id

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def select(
        self,
        *,
        task_type: TaskType | None = None,
        split: Split | None = None,
        source: Source | None = None,
        app: str | None = None,
        family: str | None = None,
    ) -> list[Scenario]:
        """The scenarios matching every filter given, in catalogue order."""
        return [
            s
            for s in self
            if (task_type is None or s.task_type == task_type)
            and (split is None or s.split == split)
            and (source is None or s.source == source)
            and (app is None or s.app == app)
            and (family is None or family in s.families)
        ]

    def to_json(self) -> list[dict[str, Any]]:
        """Plain objects for ``--json`` output; ``fault`` is the first fault's family."""
        return [{**s.model_dump(mode="json"), "fault": s.fault.family} for s in self]


def load_catalog(extra_dirs: Sequence[Path] = ()) -> Registry:
    """The built-in catalogue plus every scenario file under ``extra_dirs``.

    >>> registry = load_catalog()
    >>> registry.get("revoke_auth_mongodb-localization-1").ground_truth.components
    ('mongodb-geo',)
    """
    files: list[tuple[Path, Source]] = [(path, "aoi") for path in _yaml_files(CATALOG_DIR)]
    for folder in extra_dirs:
        files += [(path, "user") for path in _yaml_files(folder)]
    scenarios: list[Scenario] = []
    problems: list[Problem] = []
    for path, source in files:
        try:
            scenarios += load_file(path, default_source=source)
        except ScenarioError as exc:
            problems += exc.problems
    problems += _duplicates(scenarios)
    if problems:
        raise ScenarioError(problems)
    return Registry(scenarios)


def load_file(path: Path, *, default_source: Source = "user") -> list[Scenario]:
    """The scenarios of one file; raises ``ScenarioError`` listing every problem in it."""
    scenarios: list[Scenario] = []
    problems: list[Problem] = []
    for node, data in _read_entries(path):
        scenario, issues = _build(data, default_source, origin=f"{path}:{_line(node, ())}")
        problems += _dedupe_lines(Problem(path, _line(node, loc), why) for loc, why in issues)
        if scenario is not None:
            scenarios.append(scenario)
    if problems:
        raise ScenarioError(problems)
    return scenarios


def scenario_from_cli(
    family: str,
    target: str | None,
    params: Mapping[str, str],
    app: str | None = None,
    task_type: TaskType = "mitigation",
) -> Scenario:
    """An ad-hoc scenario for ``aoi lab inject --fault FAMILY --target SERVICE --param k=v``.

    The app is inferred from the target when only one app has that service; the
    ground truth comes from the family's defaults.
    """
    info = FAMILIES.get(family)
    if info is None:
        raise _cli_error(f"unknown fault family {family!r}{_did_you_mean(family, FAMILIES)}")
    typed = {name: _parse_cli_param(info, name, raw) for name, raw in params.items()}
    app_name = app or _infer_app(info, target)
    fault = {"family": family, "target": target, "params": typed}
    scenario, issues = _build(
        {
            "id": f"adhoc-{family}-{target or app_name}-{task_type}",
            "task_type": task_type,
            "app": app_name,
            "faults": [fault],
        },
        "user",
        origin="command line",
    )
    if scenario is None:
        raise ScenarioError([Problem(None, None, why) for _, why in issues])
    return scenario


def resolve_doc(data: Mapping[str, Any], *, source: Source, origin: str) -> Scenario:
    """One scenario from plain data shaped like a file's entry, checked exactly as one.

    For scenarios built in code (the benchmark's generator): the same field, family,
    target, parameter, split and ground-truth checks as ``load_file``, so a built
    scenario is exactly as valid as a written one. Raises ``ScenarioError`` naming
    each offending field as a dotted path.
    """
    scenario, issues = _build(dict(data), source, origin)
    if scenario is None:
        raise ScenarioError(
            [
                Problem(None, None, f"{origin}: {'.'.join(map(str, loc)) or 'scenario'}: {why}")
                for loc, why in issues
            ]
        )
    return scenario


def default_truth(faults: Sequence[FaultSpec]) -> GroundTruth:
    """The answer key implied by the faults: their targets and the first family's labels."""
    components: list[str] = []
    for fault in faults:
        component = _component(fault)
        if component is not None and component not in components:
            components.append(component)
    level, fault_type = default_labels(faults[0].family, faults[0].params)
    return GroundTruth(
        detection=not all(f.family == "noop" for f in faults),
        components=tuple(components),
        system_level=level,
        fault_type=fault_type,
    )


# -- reading YAML with line numbers ---------------------------------------------------------


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ScenarioError(
            [Problem(None, None, f"scenarios folder {folder} does not exist or is not a folder")]
        )
    return sorted(p for p in folder.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def _read_entries(path: Path) -> list[tuple[yaml.Node, object]]:
    """(node, plain data) for each scenario in the file, in order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(path, 1, f"cannot read the file: {exc}")]) from None
    loader = yaml.SafeLoader(text)
    entries: list[tuple[yaml.Node, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _reject_duplicate_keys(path, node)
            entries += _document_entries(path, node, loader.construct_document(node))
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(path, exc)]) from None
    finally:
        loader.dispose()
    return entries


def _document_entries(path: Path, node: yaml.Node, data: object) -> list[tuple[yaml.Node, object]]:
    if isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        return list(zip(node.value, data, strict=True))
    if isinstance(node, yaml.MappingNode):
        return [(node, data)]
    if data is None:
        return []
    reason = "a scenario file holds a scenario mapping or a list of them, not a single value"
    raise ScenarioError([Problem(path, _line(node, ()), reason)])


def _reject_duplicate_keys(path: Path, node: yaml.Node) -> None:
    """YAML keeps the last of two equal keys silently; a scenario file must not."""
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ScenarioError([Problem(path, line, f"duplicate key {key.value!r}")])
                seen.add(key.value)
            children.append(value)
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        _reject_duplicate_keys(path, child)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(path, line, f"YAML syntax error: {problem}")


def _line(node: yaml.Node, loc: Loc) -> int:
    """The line of the deepest node along ``loc`` that exists (keys point at the key)."""
    line = node.start_mark.line + 1
    for part in loc:
        step = _child(node, part)
        if step is None:
            break
        line, node = step
    return line


def _child(node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key.start_mark.line + 1, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item.start_mark.line + 1, item
    return None


def _dedupe_lines(problems: Iterable[Problem]) -> list[Problem]:
    """One problem per line: a bad union value otherwise yields one error per member type."""
    seen: set[int | None] = set()
    unique = []
    for problem in problems:
        if problem.line not in seen:
            seen.add(problem.line)
            unique.append(problem)
    return unique


# -- validation -----------------------------------------------------------------------------


def _build(data: object, source: Source, origin: str) -> tuple[Scenario | None, list[Issue]]:
    if not isinstance(data, dict):
        return None, [((), "a scenario must be a mapping with id, task_type, app and faults")]
    try:
        doc = ScenarioDoc.model_validate(data)
    except ValidationError as exc:
        return None, [(tuple(err["loc"]), _pydantic_reason(err)) for err in exc.errors()]
    return _resolve_checked(doc, source, origin)


def _pydantic_reason(err: ErrorDetails) -> str:
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    if err["type"] == "missing":
        return f"missing required field {where!r}"
    loc = err["loc"]
    if "params" in loc[:-1]:
        name = loc[loc.index("params") + 1]
        return f"parameter {name!r} must be a boolean, number, string or list of strings"
    return f"{where}: {err['msg']}"


def _resolve_checked(
    doc: ScenarioDoc, source: Source, origin: str
) -> tuple[Scenario | None, list[Issue]]:
    app = APPS.get(doc.app)
    if app is None:
        return None, [(("app",), f"unknown app {doc.app!r}{_did_you_mean(doc.app, APPS)}")]
    issues = [
        *(i for n, f in enumerate(doc.faults) for i in _check_fault(app, f, ("faults", n), False)),
        *(i for n, f in enumerate(doc.decoys) for i in _check_fault(app, f, ("decoys", n), True)),
    ]
    if issues:
        return None, issues
    split, issues = _check_split(doc)
    truth = doc.ground_truth or default_truth(doc.faults)
    issues += _check_truth(doc, app, truth)
    if issues or split is None:
        return None, issues
    scenario = Scenario(
        id=doc.id,
        task_type=doc.task_type,
        app=doc.app,
        description=doc.description or _describe(doc.faults),
        split=split,
        faults=doc.faults,
        decoys=doc.decoys,
        ground_truth=truth,
        source=doc.source or source,
        origin=origin,
    )
    return scenario, []


def _check_fault(app: AppSpec, fault: FaultSpec, loc: Loc, as_decoy: bool) -> list[Issue]:
    info = FAMILIES.get(fault.family)
    where = (*loc, "family")
    if info is None:
        hint = _did_you_mean(fault.family, FAMILIES)
        return [(where, f"unknown fault family {fault.family!r}{hint}")]
    if info.is_decoy and not as_decoy:
        return [(where, f"{info.name} is a decoy family: list it under decoys, not faults")]
    if as_decoy and not info.is_decoy:
        return [(where, f"{info.name} is a fault family: decoys take decoy_* families only")]
    if info.apps and app.name not in info.apps:
        return [(where, f"{info.name} applies only to {', '.join(info.apps)}, not {app.name}")]
    return _check_target(app, info, fault, loc) + _check_params(info, fault, loc)


def _check_target(app: AppSpec, info: FamilyInfo, fault: FaultSpec, loc: Loc) -> list[Issue]:
    target = fault.target
    if target is None:
        needed = f"{info.name} needs a target: one of {app.name}'s services"
        return [(loc, needed)] if info.target_rule == "required" else []
    if info.target_rule == "none":
        return [((*loc, "target"), f"{info.name} takes no target: it acts on the whole app")]
    if target not in app.service_names:
        hint = _did_you_mean(target, app.service_names)
        return [((*loc, "target"), f"{app.name} has no service {target!r}{hint}")]
    kind = app.service(target).kind
    if info.target_kinds and kind not in info.target_kinds:
        kinds = ", ".join(info.target_kinds)
        return [((*loc, "target"), f"{info.name} targets {kinds} services; {target} is {kind}")]
    flag = fault.params.get("flag")
    if info.name == "feature_flag" and isinstance(flag, str) and flag in FEATURE_FLAGS:
        expected = FEATURE_FLAGS[flag].service
        if target != expected:
            return [((*loc, "target"), f"flag {flag} breaks {expected}; set target: {expected}")]
    return []


def _check_params(info: FamilyInfo, fault: FaultSpec, loc: Loc) -> list[Issue]:
    issues: list[Issue] = []
    for name, value in fault.params.items():
        where = (*loc, "params", name)
        param = info.params.get(name)
        if param is None:
            accepted = ", ".join(info.params) or "none"
            issues.append((where, f"{info.name} has no parameter {name!r} (accepted: {accepted})"))
        elif (why := check_param(param, value)) is not None:
            issues.append((where, f"parameter {name!r} {why}"))
    for name, param in info.params.items():
        if param.required and name not in fault.params:
            issues.append((loc, f"{info.name} needs parameter {name!r}"))
    return issues


def _check_split(doc: ScenarioDoc) -> tuple[Split | None, list[Issue]]:
    families = [FAMILIES[f.family] for f in doc.faults]
    if len(families) > 1 and any(f.name == "noop" for f in families):
        return None, [(("faults",), "noop means no fault; it cannot be combined with others")]
    splits = {f.split for f in families}
    if len(splits) > 1:
        why = "faults from train and held-out families cannot be combined (split is by family)"
        return None, [(("faults",), why)]
    split = families[0].split
    if doc.split is not None and doc.split != split:
        why = f"split must be {split}: family {families[0].name} is {split} (families.py)"
        return None, [(("split",), why)]
    return split, []


def _check_truth(doc: ScenarioDoc, app: AppSpec, truth: GroundTruth) -> list[Issue]:
    issues: list[Issue] = []
    for n, component in enumerate(truth.components):
        if component not in app.service_names:
            hint = _did_you_mean(component, app.service_names)
            why = f"{app.name} has no service {component!r}{hint}"
            issues.append((("ground_truth", "components", n), why))
    no_fault = all(f.family == "noop" for f in doc.faults)
    if truth.detection == no_fault:
        why = "must be false for noop and true when a fault is injected"
        issues.append((("ground_truth", "detection"), why))
    if doc.task_type == "localization" and not truth.components:
        issues.append((("ground_truth",), "a localization scenario needs components"))
    if doc.task_type == "analysis" and (truth.system_level is None or truth.fault_type is None):
        issues.append((("ground_truth",), "an analysis scenario needs system_level and fault_type"))
    return issues


# -- helpers --------------------------------------------------------------------------------


def _component(fault: FaultSpec) -> str | None:
    flag = fault.params.get("flag")
    if fault.family == "feature_flag" and isinstance(flag, str) and flag in FEATURE_FLAGS:
        return FEATURE_FLAGS[flag].service
    return fault.target


def _describe(faults: Sequence[FaultSpec]) -> str:
    return "; ".join(f"{f.family} on {f.target}" if f.target else f.family for f in faults)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _duplicate(first: Scenario, again: Scenario) -> Problem:
    file, _, line = again.origin.rpartition(":")
    reason = f"duplicate scenario id {again.id!r}: already defined at {first.origin}"
    return Problem(Path(file) if file else None, int(line) if line.isdigit() else None, reason)


def _duplicates(scenarios: Sequence[Scenario]) -> list[Problem]:
    first: dict[str, Scenario] = {}
    problems = []
    for scenario in scenarios:
        if scenario.id in first:
            problems.append(_duplicate(first[scenario.id], scenario))
        else:
            first[scenario.id] = scenario
    return problems


def _cli_error(reason: str) -> ScenarioError:
    return ScenarioError([Problem(None, None, reason)])


def _parse_cli_param(info: FamilyInfo, name: str, raw: str) -> ParamValue:
    param = info.params.get(name)
    if param is None:
        return raw  # reported with the accepted names by the common checks
    try:
        return parse_param(param, raw)
    except ValueError as exc:
        raise _cli_error(f"--param {name}={raw}: {exc}") from None


def _infer_app(info: FamilyInfo, target: str | None) -> str:
    allowed = [a for a in APPS.values() if not info.apps or a.name in info.apps]
    if target is None:
        if len(allowed) == 1:
            return allowed[0].name
        raise _cli_error(f"{info.name} has no target: name the app ({', '.join(APPS)})")
    owners = [a.name for a in allowed if target in a.service_names]
    if len(owners) == 1:
        return owners[0]
    if owners:
        raise _cli_error(f"{target!r} exists in {' and '.join(owners)}: name the app")
    every = {s for a in allowed for s in a.service_names}
    raise _cli_error(f"no app has a service {target!r}{_did_you_mean(target, every)}")
