"""Latency distributions as small mixtures of log-normals.

A request's latency is rarely one bell curve: a frontend whose one route in
five times out is fast at p50 and at the deadline at p99. A mixture keeps both
modes through the call graph (sums for sequential calls, mixtures for routes,
cache misses and failures, a point mass at the client deadline for timeouts),
so percentiles, histogram buckets and sampled span durations all agree. Each
component is kept as (weight, mean, variance), which add exactly under
convolution; a component is read as the log-normal with that mean and variance
(Fenton-Wilkinson), and mixtures are merged down to a few components.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_COMPONENTS = 6
_MIN_WEIGHT = 1e-7


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class Component:
    weight: float
    mean: float
    var: float

    def log_params(self) -> tuple[float, float]:
        """(mu, sigma) of the log-normal with this mean and variance."""
        mean = max(self.mean, 1e-9)
        sigma2 = math.log1p(self.var / (mean * mean))
        return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)

    def cdf(self, x: float) -> float:
        if x <= 0:
            return 0.0
        mu, sigma = self.log_params()
        if sigma < 1e-9:
            return 1.0 if x >= self.mean else 0.0
        return _phi((math.log(x) - mu) / sigma)


@dataclass(frozen=True)
class Dist:
    """A latency distribution in milliseconds."""

    parts: tuple[Component, ...]

    @staticmethod
    def lognormal(median: float, sigma: float) -> Dist:
        median = max(median, 1e-6)
        mean = median * math.exp(sigma * sigma / 2.0)
        var = (math.exp(sigma * sigma) - 1.0) * mean * mean
        return Dist((Component(1.0, mean, var),))

    @staticmethod
    def point(value: float) -> Dist:
        return Dist((Component(1.0, max(value, 0.0), 0.0),))

    @staticmethod
    def mixture(weighted: Iterable[tuple[float, Dist]]) -> Dist:
        """Each ``(probability, dist)``; probabilities should sum to one."""
        parts = [Component(p * c.weight, c.mean, c.var) for p, dist in weighted for c in dist.parts]
        return Dist(_reduce(parts))

    def plus(self, other: Dist) -> Dist:
        """Latency of doing one thing after the other."""
        parts = [
            Component(a.weight * b.weight, a.mean + b.mean, a.var + b.var)
            for a in self.parts
            for b in other.parts
        ]
        return Dist(_reduce(parts))

    def shift(self, delta_ms: float) -> Dist:
        return Dist(tuple(Component(c.weight, c.mean + delta_ms, c.var) for c in self.parts))

    def scale(self, factor: float) -> Dist:
        f2 = factor * factor
        return Dist(tuple(Component(c.weight, c.mean * factor, c.var * f2) for c in self.parts))

    def split_at(self, deadline: float) -> tuple[float, Dist]:
        """(share above ``deadline``, the distribution of what finished in time)."""
        below: list[Component] = []
        above = 0.0
        for c in self.parts:
            p_in = c.cdf(deadline)
            above += c.weight * (1.0 - p_in)
            if c.weight * p_in > _MIN_WEIGHT:
                below.append(Component(c.weight * p_in, *_truncated(c, deadline)))
        total = sum(c.weight for c in below)
        if total <= 0:
            return 1.0, Dist.point(deadline)
        normal = tuple(Component(c.weight / total, c.mean, c.var) for c in below)
        return min(above, 1.0), Dist(normal)

    def capped(self, deadline: float) -> Dist:
        """What a client waiting at most ``deadline`` sees: late answers become the deadline."""
        late, early = self.split_at(deadline)
        if late <= _MIN_WEIGHT:
            return early
        return Dist.mixture([(1.0 - late, early), (late, Dist.point(deadline))])

    def cdf(self, x: float) -> float:
        return sum(c.weight * c.cdf(x) for c in self.parts)

    def cdf_many(self, xs: Sequence[float]) -> list[float]:
        """``cdf`` at several points, reading each component's parameters once."""
        out = [0.0] * len(xs)
        for c in self.parts:
            mu, sigma = c.log_params()
            for i, x in enumerate(xs):
                if x <= 0:
                    continue
                if sigma < 1e-9:
                    out[i] += c.weight if x >= c.mean else 0.0
                else:
                    out[i] += c.weight * _phi((math.log(x) - mu) / sigma)
        return out

    def quantile(self, q: float) -> float:
        lo, hi = 1e-4, max(c.mean for c in self.parts) * 50.0 + 1.0
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            if self.cdf(mid) < q:
                lo = mid
            else:
                hi = mid
        return hi

    @property
    def mean(self) -> float:
        return sum(c.weight * c.mean for c in self.parts)

    def sample(self, rng: random.Random) -> float:
        pick = rng.random()
        for c in self.parts:
            pick -= c.weight
            if pick <= 0:
                break
        mu, sigma = c.log_params()
        return math.exp(mu + sigma * rng.gauss(0.0, 1.0))


def _truncated(c: Component, deadline: float) -> tuple[float, float]:
    """Mean and variance of a log-normal component conditioned on finishing by ``deadline``."""
    mu, sigma = c.log_params()
    if sigma < 1e-9:
        return min(c.mean, deadline), 0.0
    z = (math.log(deadline) - mu) / sigma
    p = max(_phi(z), 1e-12)
    mean = c.mean * _phi(z - sigma) / p
    mean = min(mean, deadline)
    return mean, min(c.var, (deadline - mean) ** 2 + c.var * p)


def _reduce(parts: Sequence[Component]) -> tuple[Component, ...]:
    """Drop negligible components and merge the closest (in log-mean) until few remain."""
    kept = sorted((c for c in parts if c.weight > _MIN_WEIGHT), key=lambda c: c.mean)
    if not kept:
        return (Component(1.0, 0.0, 0.0),)
    while len(kept) > MAX_COMPONENTS:
        gaps = [math.log((b.mean + 1e-6) / (a.mean + 1e-6)) for a, b in itertools.pairwise(kept)]
        i = gaps.index(min(gaps))
        kept[i : i + 2] = [_merge(kept[i], kept[i + 1])]
    return tuple(kept)


def _merge(a: Component, b: Component) -> Component:
    weight = a.weight + b.weight
    mean = (a.weight * a.mean + b.weight * b.mean) / weight
    second = (a.weight * (a.var + a.mean**2) + b.weight * (b.var + b.mean**2)) / weight
    return Component(weight, mean, max(second - mean * mean, 0.0))
