"""Bounded in-memory time-series store behind the lab's Prometheus API.

The application model samples every metric once per tick, so all series share
one timestamp axis. Each series then only stores its float values (8 bytes a
sample) aligned to that axis, and the PromQL engine bisects the shared axis
once per evaluation time instead of once per series. A missing value (NaN) is a
staleness marker: the series was not exported at that tick (a pod went away).
Retention is bounded both in time and in samples so memory stays small however
fast the lab ticks.
"""

from __future__ import annotations

import bisect
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Labels = tuple[tuple[str, str], ...]
"""Sorted (name, value) pairs, ``__name__`` included: a series' identity."""

MatchOp = Literal["=", "!=", "=~", "!~"]
NAN = math.nan


def make_labels(name: str, labels: Mapping[str, str]) -> Labels:
    """The identity of series ``name{labels}``; empty values are dropped, as in Prometheus."""
    items = {k: v for k, v in labels.items() if v != ""}
    items["__name__"] = name
    return tuple(sorted(items.items()))


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are fully anchored like Prometheus's."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, op: MatchOp, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})\\Z", re.DOTALL)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return cls(name, op, value, regex)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        found = self._regex.match(value) is not None
        return found if self.op == "=~" else not found


@dataclass
class Series:
    """One series: its labels and values aligned to the store's tick axis from ``first``."""

    labels: Labels
    first: int
    values: array[float]
    gaps: bool = False
    """Whether any stored value is NaN (stale), so readers must filter."""

    def at(self, tick: int) -> float:
        pos = tick - self.first
        if 0 <= pos < len(self.values):
            return self.values[pos]
        return NAN

    @property
    def last_tick(self) -> int:
        return self.first + len(self.values) - 1


@dataclass(frozen=True)
class MetricMeta:
    type: str
    help: str
    unit: str = ""


class SeriesStore:
    """Series sampled on a shared tick axis, with bounded retention.

    Usage::

        store = SeriesStore()
        store.begin(1000.0)
        store.set(make_labels("up", {"pod": "geo-0"}), 1.0)
        ticks = store.ticks_in(940.0, 1000.0)   # ticks with 940 < t <= 1000
    """

    def __init__(self, *, retention_s: float = 7200.0, max_samples: int = 1440) -> None:
        if retention_s <= 0 or max_samples < 2:
            raise ValueError("retention_s must be positive and max_samples at least 2")
        self.retention_s = retention_s
        self.max_samples = max_samples
        self._times: array[float] = array("d")
        self._base = 0
        """Tick index of ``_times[0]``."""
        self._series: dict[Labels, Series] = {}
        self._by_name: dict[str, set[Labels]] = {}
        self.metadata: dict[str, MetricMeta] = {}

    # -- writing ---------------------------------------------------------------

    def begin(self, t: float) -> None:
        """Open the tick at time ``t`` (seconds); later ``set`` calls write into it."""
        if len(self._times) and t <= self._times[-1]:
            raise ValueError(f"tick time {t} is not after the previous tick {self._times[-1]}")
        self._times.append(t)
        self._trim()

    def set(self, labels: Labels, value: float) -> None:
        """Record ``value`` for ``labels`` at the current tick."""
        if not len(self._times):
            raise RuntimeError("call begin() before set()")
        tick = self._base + len(self._times) - 1
        series = self._series.get(labels)
        if series is None:
            series = Series(labels, tick, array("d"))
            self._series[labels] = series
            self._by_name.setdefault(label_value(labels, "__name__"), set()).add(labels)
        gap = tick - series.last_tick - 1
        if gap < 0:
            series.values[-1] = value
            return
        if gap:
            series.values.extend([NAN] * gap)
            series.gaps = True
        if math.isnan(value):
            series.gaps = True
        series.values.append(value)

    def describe(self, name: str, type_: str, help_: str, unit: str = "") -> None:
        self.metadata[name] = MetricMeta(type_, help_, unit)

    def _trim(self) -> None:
        """Drop old ticks in chunks, so trimming costs O(1) amortised per tick."""
        slack = max(1, self.max_samples // 8)
        horizon = self._times[-1] - self.retention_s
        old = bisect.bisect_right(self._times, horizon)
        excess = len(self._times) - self.max_samples
        drop = max(old, excess)
        if drop < slack:
            return
        del self._times[:drop]
        self._base += drop
        for key in list(self._series):
            self._trim_series(key)

    def _trim_series(self, key: Labels) -> None:
        series = self._series[key]
        cut = self._base - series.first
        if cut <= 0:
            return
        if cut >= len(series.values) or all(math.isnan(v) for v in series.values[cut:]):
            del self._series[key]
            names = self._by_name[label_value(key, "__name__")]
            names.discard(key)
            return
        del series.values[:cut]
        series.first = self._base

    # -- reading ---------------------------------------------------------------

    @property
    def latest_time(self) -> float | None:
        return self._times[-1] if len(self._times) else None

    @property
    def oldest_time(self) -> float | None:
        return self._times[0] if len(self._times) else None

    def time_of(self, tick: int) -> float:
        return self._times[tick - self._base]

    def ticks_in(self, lo: float, hi: float) -> range:
        """Tick indices whose time t satisfies lo < t <= hi."""
        start = bisect.bisect_right(self._times, lo)
        stop = bisect.bisect_right(self._times, hi)
        return range(self._base + start, self._base + stop)

    def last_tick_at(self, t: float) -> int | None:
        """The latest tick at or before ``t``."""
        pos = bisect.bisect_right(self._times, t)
        return None if pos == 0 else self._base + pos - 1

    def select(self, matchers: Sequence[Matcher]) -> list[Series]:
        """Series matching every matcher (a missing label matches as the empty string)."""
        name_eq = [m.value for m in matchers if m.name == "__name__" and m.op == "="]
        candidates: Iterable[Labels] = (
            self._by_name.get(name_eq[0], set()) if name_eq else self._series.keys()
        )
        found = []
        for key in candidates:
            labels = dict(key)
            if all(m.matches(labels.get(m.name, "")) for m in matchers):
                found.append(self._series[key])
        found.sort(key=lambda s: s.labels)
        return found

    def samples(self, series: Series, ticks: range) -> Iterator[tuple[float, float]]:
        """(time, value) pairs of ``series`` over ``ticks``, skipping stale points."""
        lo = max(ticks.start, series.first)
        hi = min(ticks.stop, series.first + len(series.values))
        for tick in range(lo, hi):
            value = series.values[tick - series.first]
            if not math.isnan(value):
                yield self._times[tick - self._base], value

    def times_of(self, ticks: range) -> list[float]:
        """Times of ``ticks`` (a range from ``ticks_in``), for ``window``."""
        return self._times[ticks.start - self._base : ticks.stop - self._base].tolist()

    def window(
        self, series: Series, ticks: range, times: list[float]
    ) -> tuple[list[float], list[float]]:
        """(times, values) of ``series`` over ``ticks`` without stale points.

        ``times`` is ``times_of(ticks)``, computed once for all series of a query step.
        """
        lo = max(ticks.start, series.first)
        hi = min(ticks.stop, series.first + len(series.values))
        if lo >= hi:
            return [], []
        values = series.values[lo - series.first : hi - series.first].tolist()
        stamps = times[lo - ticks.start : hi - ticks.start]
        if series.gaps:
            keep = [i for i, v in enumerate(values) if v == v]
            if len(keep) != len(values):
                values = [values[i] for i in keep]
                stamps = [stamps[i] for i in keep]
        return stamps, values

    def has_samples(self, series: Series, ticks: range) -> bool:
        return next(self.samples(series, ticks), None) is not None

    def __len__(self) -> int:
        return len(self._series)
