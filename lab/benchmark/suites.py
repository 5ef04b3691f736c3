"""Which scenarios a suite names: the catalogue's slices, generated sets, or explicit ids."""

from __future__ import annotations

from collections.abc import Sequence

from lab.benchmark.generate import generate
from lab.benchmark.results import BenchmarkError
from lab.scenarios.loader import Registry
from lab.scenarios.schema import Scenario

SUITES = ("aiopslab", "ours", "heldout", "train", "generated", "all")
"""aiopslab: AIOpsLab's 86 tasks; ours: the AOI scenarios; heldout / train: the catalogue's
split by fault family; generated: ``generate(seed)``; all: the whole catalogue."""


def select(suite: str, registry: Registry, *, seed: int = 1, count: int = 64) -> list[Scenario]:
    """The scenarios of ``suite``: a name from ``SUITES`` or comma-separated scenario ids."""
    if suite == "aiopslab":
        return registry.select(source="aiopslab")
    if suite == "ours":
        return registry.select(source="aoi")
    if suite == "heldout":
        return registry.select(split="held_out")
    if suite == "train":
        return registry.select(split="train")
    if suite == "generated":
        return generate(seed, count=count)
    if suite == "all":
        return list(registry)
    ids = [part.strip() for part in suite.split(",") if part.strip()]
    if not ids:
        raise BenchmarkError(f"--suite wants one of {', '.join(SUITES)} or scenario ids")
    return [registry.get(sid) for sid in _unique(ids)]


def _unique(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))
