"""Generated scenarios: the generalisation test.

The catalogue's scenarios were written beside the analyzers, so doing well on them
says little about faults nobody wrote a rule for. ``generate(seed)`` draws scenarios
the catalogue does not hold from the fault families' own declarations
(``lab.scenarios.families``) across the three apps: mostly single faults on services
the catalogue never pairs with that family, some catalogue-like pairs with fresh
parameters, two faults at once, decoys (harmless noise on healthy services) and
no-fault baselines, with the task types spread over what each family supports.
Analyzers and models tuned on the catalogue must hold up here.

Every scenario is built as a file entry and resolved by the loader's own checks
(``lab.scenarios.loader.resolve_doc``), so it is exactly as valid as a written one,
and its ground truth is the loader's default. The draw uses ``random.Random(seed)``
alone over sorted names: the same seed (and the same catalogue and families) gives
the same list, ids, parameters, decoys and answers included.

Beyond what the loader checks, the generator keeps to what the lab can inject with
a visible effect: parameters strong enough to be a fault (a memory limit below the
working set, a CPU limit below the need), faults that act on a call edge only on
services something calls, never two faults on one service or faults that undo each
other on recovery (a retry storm restores its callers' Deployments), and mitigation
tasks only for families the catalogue already asks to mitigate (those whose
restoration an approved Executor action can perform).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from lab.apps import APPS, AppSpec, ServiceSpec
from lab.scenarios.families import FAMILIES, FEATURE_FLAGS, ParamInfo, default_labels
from lab.scenarios.loader import load_catalog, resolve_doc
from lab.scenarios.schema import ParamValue, Scenario, Source, Split, TaskType

SOURCE: Source = "aoi"
"""Generated scenarios are ours; the suite, not the source, tells them from the catalogue's."""

_UNTARGETED_KINDS = frozenset({"jaeger", "loadgenerator"})
"""Tracing and the load generator are the lab's instruments, not part of the app under test."""

_EDGE_FAMILIES = frozenset(
    {
        "certificate_expiry",
        "dns_failure",
        "mongodb_require_tls",
        "mongodb_revoke_auth",
        "mongodb_user_unregistered",
        "network_delay",
        "network_loss",
        "retry_storm",
        "target_port_misconfig",
    }
)
"""Faults seen only by the target's callers: a service nothing calls would show nothing."""

_PLANTED_LINES = (
    "WARN upstream {other} answered slowly (1.8s); retrying once",
    "ERROR lost connection to {other}; reconnected after 1 attempt",
    "INFO health check of {other} recovered after a transient failure",
    "WARN cache miss storm while {other} warmed up; back to normal",
)
"""Misleading but harmless lines for planted_logs decoys: they name a healthy service."""

Draw = Callable[[random.Random, ServiceSpec], ParamValue]
_DRAWS: dict[tuple[str, str], Draw] = {
    # Ranges inside the declared bounds and strong enough to be a fault on this target.
    ("cpu_throttling", "limit_m"): lambda r, s: r.randint(1, max(1, s.base_cpu_m // 2)),
    ("decoy_log_noise", "lines"): lambda r, s: r.randint(5, 50),
    ("memory_limit_too_low", "limit_mib"): lambda r, s: r.randint(
        max(1, s.working_set_mib // 8), max(1, s.working_set_mib // 2)
    ),
    ("network_delay", "delay_ms"): lambda r, s: r.randint(500, 10000),
    ("network_loss", "loss"): lambda r, s: round(r.uniform(0.5, 1.0), 2),
    ("noisy_neighbour", "cpu_m"): lambda r, s: r.randint(2000, 8000),
    ("retry_storm", "retries"): lambda r, s: r.randint(3, 20),
    ("target_port_misconfig", "port"): lambda r, s: r.choice(
        [p for p in range(1024, 65536, 7) if p != s.port]
    ),
}


@dataclass(frozen=True)
class _Candidate:
    """One fault that can be injected: a family on one service (and flag, for flags)."""

    family: str
    app: str
    target: str
    flag: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.family, self.app, self.target)

    @property
    def split(self) -> Split:
        split = FAMILIES[self.family].split
        assert split is not None  # decoys are never candidates
        return split


@dataclass(frozen=True)
class _Facts:
    seen: frozenset[tuple[str, str, str | None]]
    """(family, app, target) of every fault in the catalogue."""
    mitigable: frozenset[str]
    """Families the catalogue has mitigation tasks for."""


@dataclass
class _Draft:
    kind: str
    faults: list[tuple[_Candidate, dict[str, ParamValue]]]


def generate(seed: int, *, count: int = 64) -> list[Scenario]:
    """``count`` random but valid scenarios; the same seed gives the same list.

    About 1/16 are no-fault baselines, 3/16 two-fault combinations, 1/8 catalogue-like
    pairs and the rest single faults on pairs the catalogue never uses; about a third
    of the faulty ones carry one or two decoys.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = random.Random(seed)
    facts = _catalog_facts()
    candidates = _candidates()
    n_noop, n_pair, n_seen = count // 16, count * 3 // 16, count // 8
    drafts = [_Draft("no fault", []) for _ in range(n_noop)]
    drafts += _pairs(rng, candidates, n_pair)
    seen = [c for c in candidates if c.key in facts.seen]
    unseen = [c for c in candidates if c.key not in facts.seen]
    # Families the catalogue already pairs with every target they can take (the flags)
    # only appear as catalogue pairs: they get the first turns there.
    only_seen = {c.family for c in seen} - {c.family for c in unseen}
    drafts += _singles(rng, seen, n_seen, "catalogue pair", first=only_seen)
    drafts += _singles(rng, unseen, count - len(drafts), "unseen pair")
    rng.shuffle(drafts)
    faulty = [n for n, d in enumerate(drafts) if d.faults]
    decoyed = set(rng.sample(faulty, len(faulty) * 5 // 16))
    used: Counter[TaskType] = Counter()
    scenarios = []
    for n, draft in enumerate(drafts):
        task_type = _task_type(rng, _allowed_tasks(draft, facts), used)
        used[task_type] += 1
        # A no-fault scenario with decoys is the loud baseline: a detector must stay quiet.
        noise = rng.choice((1, 2)) if n in decoyed else 0
        decoys = noise if draft.faults else rng.randint(0, 2)
        scenarios.append(_scenario(rng, seed, n, draft, task_type, decoys))
    return scenarios


# -- what the catalogue and the families allow ----------------------------------------------


@cache
def _catalog_facts() -> _Facts:
    registry = load_catalog()
    seen = frozenset((f.family, s.app, f.target) for s in registry for f in s.faults)
    mitigable = frozenset(
        f.family for s in registry.select(task_type="mitigation") for f in s.faults
    )
    return _Facts(seen, mitigable)


@cache
def _candidates() -> tuple[_Candidate, ...]:
    """Every (family, app, target) the lab can inject with an effect, in sorted order."""
    found: list[_Candidate] = []
    for app_name in sorted(APPS):
        app = APPS[app_name]
        for family in sorted(FAMILIES):
            info = FAMILIES[family]
            if info.is_decoy or family == "noop" or (info.apps and app_name not in info.apps):
                continue
            if family == "feature_flag":
                found += [
                    _Candidate(family, app_name, FEATURE_FLAGS[flag].service, flag)
                    for flag in sorted(FEATURE_FLAGS)
                    if FEATURE_FLAGS[flag].service in app.service_names
                ]
                continue
            for svc in sorted(app.services, key=lambda s: s.name):
                if _targetable(app, family, svc):
                    found.append(_Candidate(family, app_name, svc.name))
    return tuple(found)


def _targetable(app: AppSpec, family: str, svc: ServiceSpec) -> bool:
    info = FAMILIES[family]
    if svc.kind in _UNTARGETED_KINDS or (info.target_kinds and svc.kind not in info.target_kinds):
        return False
    if family in _EDGE_FAMILIES and not _callers(app, svc.name):
        return False
    # Only a service with a PersistentVolume can be redeployed without it.
    return family != "redeploy_without_pv" or svc.volume_gib > 0


def _callers(app: AppSpec, target: str) -> list[str]:
    return sorted(s.name for s in app.services if target in s.calls)


def _compatible(a: _Candidate, b: _Candidate) -> bool:
    """Two faults that can live side by side in one app and recover independently."""
    if a.app != b.app or a.target == b.target or a.family == b.family or a.split != b.split:
        return False
    app = APPS[a.app]
    # A retry storm is injected into (and recovered by restoring) its target's callers.
    return not any(
        x.family == "retry_storm" and y.target in _callers(app, x.target)
        for x, y in ((a, b), (b, a))
    )


# -- drafting the faults --------------------------------------------------------------------


def _singles(
    rng: random.Random,
    pool: Sequence[_Candidate],
    count: int,
    kind: str,
    *,
    first: Collection[str] = (),
) -> list[_Draft]:
    """``count`` single faults, cycling over the families so each gets its turn.

    The families in ``first`` take the first turns of the first round.
    """
    by_family: dict[str, list[_Candidate]] = {}
    for cand in pool:
        by_family.setdefault(cand.family, []).append(cand)
    fresh: dict[str, list[_Candidate]] = {}
    order: list[str] = []
    drafts: list[_Draft] = []
    while len(drafts) < count and by_family:
        if not order:
            order = sorted(by_family)
            rng.shuffle(order)
            if not drafts:  # turns are taken from the end
                order = [f for f in order if f not in first] + [f for f in order if f in first]
        family = order.pop()
        if not fresh.get(family):  # refill once every target had its turn
            fresh[family] = list(by_family[family])
            rng.shuffle(fresh[family])
        cand = fresh[family].pop()
        drafts.append(_Draft(kind, [(cand, _params(rng, cand))]))
    return drafts


def _pairs(rng: random.Random, candidates: Sequence[_Candidate], count: int) -> list[_Draft]:
    """Two faults in one app, on two services, from one side of the split."""
    drafts: list[_Draft] = []
    taken: set[tuple[tuple[str, str, str | None], ...]] = set()
    for _ in range(count * 20):
        if len(drafts) >= count:
            break
        split: Split = "held_out" if rng.random() < 0.25 else "train"
        app = rng.choice(sorted(APPS))
        pool = [c for c in candidates if c.app == app and c.split == split]
        if len(pool) < 2:
            continue
        first = rng.choice(pool)
        partners = [c for c in pool if _compatible(first, c)]
        if not partners:
            continue
        second = rng.choice(partners)
        key = tuple(sorted((first.key, second.key), key=str))
        if key in taken:
            continue
        taken.add(key)
        faults = [(c, _params(rng, c)) for c in (first, second)]
        drafts.append(_Draft("two faults", faults))
    return drafts


def _params(rng: random.Random, cand: _Candidate) -> dict[str, ParamValue]:
    info = FAMILIES[cand.family]
    app = APPS[cand.app]
    spec = app.service(cand.target)
    params: dict[str, ParamValue] = {}
    for name in sorted(info.params):
        value = _param(rng, cand, name, info.params[name], app, spec)
        if value is not None:
            params[name] = value
    return params


def _param(
    rng: random.Random,
    cand: _Candidate,
    name: str,
    param: ParamInfo,
    app: AppSpec,
    spec: ServiceSpec,
) -> ParamValue | None:
    """A value within the declared choices and bounds; None keeps a target-derived default."""
    if cand.flag is not None and name == "flag":
        return cand.flag
    draw = _DRAWS.get((cand.family, name))
    if draw is not None:
        return draw(rng, spec)
    if cand.family == "wrong_binary" and name == "binary":
        return _wrong_binary(rng, app, spec, param)
    if param.choices:
        return rng.choice(param.choices)
    return param.default


def _wrong_binary(
    rng: random.Random, app: AppSpec, spec: ServiceSpec, param: ParamInfo
) -> ParamValue | None:
    """Another service's binary from the same image (it starts, on the wrong port).

    The default (geo) is the target's own binary on hotel-reservation's geo, which
    would be no fault at all; images holding one binary keep the default, which they
    cannot run.
    """
    own = _binary(spec)
    others = sorted(
        {_binary(s) for s in app.services if s.image == spec.image and _binary(s) != own}
    )
    if others:
        return rng.choice(others)
    return param.default


def _binary(spec: ServiceSpec) -> str:
    return (spec.command[0] if spec.command else spec.name).rsplit("/", 1)[-1]


# -- task types, decoys and the scenario ----------------------------------------------------


def _allowed_tasks(draft: _Draft, facts: _Facts) -> list[TaskType]:
    if not draft.faults:
        return ["detection"]  # no components, no labels, nothing to mitigate
    allowed: list[TaskType] = ["detection", "localization"]
    labels = {default_labels(c.family, p) for c, p in draft.faults}
    if len(labels) == 1 and None not in next(iter(labels)):
        allowed.append("analysis")
    if all(c.family in facts.mitigable for c, _ in draft.faults):
        allowed.append("mitigation")
    return allowed


def _task_type(
    rng: random.Random, allowed: Sequence[TaskType], used: Counter[TaskType]
) -> TaskType:
    """The least used task type so far among those allowed (random among ties)."""
    fewest = min(used[t] for t in allowed)
    return rng.choice([t for t in allowed if used[t] == fewest])


def _decoys(rng: random.Random, app: AppSpec, busy: set[str], count: int) -> list[dict[str, Any]]:
    """``count`` decoys of different families, each on its own healthy service."""
    quiet = sorted(
        s.name for s in app.services if s.name not in busy and s.kind not in _UNTARGETED_KINDS
    )
    families = rng.sample(sorted(f for f, i in FAMILIES.items() if i.is_decoy), count)
    decoys = []
    for family, target in zip(families, rng.sample(quiet, count), strict=True):
        params: dict[str, ParamValue] = {}
        if family == "planted_logs":
            other = rng.choice([s for s in quiet if s != target])
            lines = rng.sample(_PLANTED_LINES, rng.randint(1, 2))
            params["lines"] = [line.format(other=other) for line in lines]
        else:
            cand = _Candidate(family, app.name, target)
            info = FAMILIES[family]
            for name in sorted(info.params):
                value = _param(rng, cand, name, info.params[name], app, app.service(target))
                if value is not None:
                    params[name] = value
        decoys.append({"family": family, "target": target, "params": params})
    return decoys


def _scenario(
    rng: random.Random, seed: int, n: int, draft: _Draft, task_type: TaskType, decoys: int
) -> Scenario:
    if draft.faults:
        app = APPS[draft.faults[0][0].app]
        faults = [{"family": c.family, "target": c.target, "params": p} for c, p in draft.faults]
        name = "-".join(f"{c.family}-{c.target}" for c, _ in draft.faults)
        split: Split = draft.faults[0][0].split
    else:
        app = APPS[rng.choice(sorted(APPS))]
        faults = [{"family": "noop"}]
        name = f"noop-{app.name}"
        split = "train"
    busy = {c.target for c, _ in draft.faults}
    decoy_specs = _decoys(rng, app, busy, decoys)
    what = "; ".join(
        f"{f['family']} on {f['target']}" if f.get("target") else "no fault" for f in faults
    )
    noise = "; decoys: " + ", ".join(f"{d['family']} on {d['target']}" for d in decoy_specs)
    doc: dict[str, Any] = {
        "id": f"gen{seed}-{n:03d}-{name}-{task_type}",
        "task_type": task_type,
        "app": app.name,
        "description": f"generated (seed {seed}), {draft.kind}: {what}"
        + (noise if decoy_specs else ""),
        "split": split,
        "faults": faults,
        "decoys": decoy_specs,
        "source": SOURCE,
    }
    labels = {default_labels(c.family, p) for c, p in draft.faults}
    if len(labels) > 1:
        # Two faults with different labels have no single analysis answer: leave it out
        # rather than let the first fault's labels pose as the answer key.
        components = [f["target"] for f in faults]
        doc["ground_truth"] = {"detection": True, "components": components}
    return resolve_doc(doc, source=SOURCE, origin=f"generate(seed={seed}) #{n}")
