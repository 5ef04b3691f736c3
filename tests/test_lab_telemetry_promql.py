"""PromQL engine semantics against a hand-filled series store (no model, no HTTP)."""

from __future__ import annotations

import math

import pytest

from lab.telemetry.promql import (
    Engine,
    Matrix,
    PromQLError,
    Scalar,
    Vector,
    format_value,
    histogram_quantile,
)
from lab.telemetry.series import SeriesStore, make_labels

T0 = 1_000_000.0
STEP = 10.0
TICKS = 61  # ten minutes at 10 s


def _fill() -> SeriesStore:
    store = SeriesStore(retention_s=3600, max_samples=500)
    for i in range(TICKS):
        store.begin(T0 + i * STEP)
        for svc, per_s in (("geo", 2.0), ("rate", 1.0)):
            for code, share in (("200", 0.9), ("500", 0.1)):
                labels = {"destination_service": svc, "response_code": code, "namespace": "hr"}
                store.set(make_labels("requests_total", labels), per_s * share * i * STEP)
        reset = (i % 30) * STEP * 3.0  # counter that restarts every 30 ticks
        store.set(make_labels("restarting_total", {"pod": "a"}), reset)
        store.set(make_labels("mem_bytes", {"pod": "a", "service": "geo"}), 100.0 + i)
        store.set(make_labels("mem_bytes", {"pod": "b", "service": "rate"}), 50.0)
        store.set(make_labels("limit_bytes", {"service": "geo"}), 200.0)
        store.set(make_labels("limit_bytes", {"service": "rate"}), 100.0)
        for le, count in (("10", 50.0), ("100", 90.0), ("+Inf", 100.0)):
            store.set(make_labels("lat_bucket", {"le": le, "svc": "geo"}), count * i)
        if i < 40:
            store.set(make_labels("gone", {"pod": "old"}), 1.0)
    return store


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(_fill())


NOW = T0 + (TICKS - 1) * STEP


def _vector(engine: Engine, query: str, t: float = NOW) -> dict[tuple[tuple[str, str], ...], float]:
    value = engine.instant(query, t)
    assert isinstance(value, Vector), value
    return {s.labels: s.value for s in value.samples}


def _one(engine: Engine, query: str, t: float = NOW) -> float:
    values = list(_vector(engine, query, t).values())
    assert len(values) == 1, values
    return values[0]


def test_selectors_and_matchers(engine: Engine) -> None:
    assert len(_vector(engine, "requests_total")) == 4
    assert len(_vector(engine, 'requests_total{destination_service="geo"}')) == 2
    assert len(_vector(engine, 'requests_total{destination_service!="geo"}')) == 2
    assert len(_vector(engine, 'requests_total{response_code=~"5.."}')) == 2
    assert len(_vector(engine, 'requests_total{response_code!~"5..|2.."}')) == 0
    assert len(_vector(engine, '{__name__=~"mem_.*"}')) == 2
    assert _one(engine, 'requests_total{destination_service="geo",response_code="500"}') == 120.0


def test_staleness_and_offset(engine: Engine) -> None:
    assert _vector(engine, "gone") == {}
    assert _one(engine, "gone", NOW - 25 * STEP) == 1.0
    assert _one(engine, 'mem_bytes{pod="a"} offset 10m') == 100.0
    assert _one(engine, 'mem_bytes{pod="a"} @ 1000100') == 110.0


def test_rate_increase_and_counter_resets(engine: Engine) -> None:
    got = _one(engine, 'rate(requests_total{destination_service="geo",response_code="200"}[1m])')
    assert got == pytest.approx(1.8)
    got = _one(
        engine, 'increase(requests_total{destination_service="geo",response_code="200"}[1m])'
    )
    assert got == pytest.approx(108.0)
    assert _one(engine, "irate(restarting_total[1m])", NOW - STEP) == pytest.approx(3.0)
    # The window spans the reset at T0 + 300: the drop is added back (870 -> 0 counts as +0,
    # so one 30-unit step is lost, as in Prometheus), then extrapolated over 120 s of 110.
    got = _one(engine, "rate(restarting_total[2m])", T0 + 330)
    assert got == pytest.approx(300.0 * (120 / 110) / 120)
    assert _one(engine, 'delta(mem_bytes{pod="a"}[5m])') == pytest.approx(30.0, rel=0.05)
    assert _one(engine, 'deriv(mem_bytes{pod="a"}[5m])') == pytest.approx(0.1)


def test_over_time_functions(engine: Engine) -> None:
    assert _one(engine, 'max_over_time(mem_bytes{pod="a"}[1m])') == 160.0
    assert _one(engine, 'min_over_time(mem_bytes{pod="a"}[1m])') == 155.0
    assert _one(engine, 'avg_over_time(mem_bytes{pod="a"}[1m])') == pytest.approx(157.5)
    assert _one(engine, 'sum_over_time(mem_bytes{pod="b"}[1m])') == 300.0
    assert _one(engine, 'count_over_time(mem_bytes{pod="b"}[1m])') == 6.0
    assert _one(engine, 'max_over_time(deriv(mem_bytes{pod="a"}[2m])[5m:30s])') == pytest.approx(
        0.1
    )


def test_aggregations(engine: Engine) -> None:
    by_service = _vector(engine, "sum by (destination_service) (rate(requests_total[1m]))")
    assert by_service == {
        (("destination_service", "geo"),): pytest.approx(2.0),
        (("destination_service", "rate"),): pytest.approx(1.0),
    }
    without = _vector(engine, "sum without (response_code) (requests_total)")
    assert all(dict(k).keys() == {"destination_service", "namespace"} for k in without)
    assert _one(engine, "count(requests_total)") == 4.0
    assert _one(engine, "avg(limit_bytes)") == 150.0
    assert _one(engine, "quantile(0.5, limit_bytes)") == 150.0
    top = _vector(engine, "topk(1, mem_bytes)")
    assert list(top) == [make_labels("mem_bytes", {"pod": "a", "service": "geo"})]
    assert list(_vector(engine, "bottomk(1, mem_bytes)").values()) == [50.0]
    assert len(_vector(engine, 'count_values("v", limit_bytes)')) == 2


def test_binary_operators(engine: Engine) -> None:
    ratio = _vector(engine, "mem_bytes / on(service) limit_bytes")
    assert ratio == {(("service", "geo"),): 0.8, (("service", "rate"),): 0.5}
    grouped = _vector(engine, "mem_bytes / on(service) group_left limit_bytes")
    assert {dict(k)["pod"] for k in grouped} == {"a", "b"}
    errors = _vector(
        engine,
        'sum by (destination_service) (rate(requests_total{response_code=~"5.."}[1m]))'
        " / sum by (destination_service) (rate(requests_total[1m]))",
    )
    assert all(v == pytest.approx(0.1) for v in errors.values())
    assert _vector(engine, "mem_bytes > 100") == {
        make_labels("mem_bytes", {"pod": "a", "service": "geo"}): 160.0
    }
    flags = _vector(engine, "mem_bytes > bool 100")
    assert sorted(flags.values()) == [0.0, 1.0]
    assert all("__name__" not in dict(k) for k in flags)
    assert _one(engine, "mem_bytes * 2 - 10 > 100") == 310.0
    assert len(_vector(engine, 'mem_bytes and on(service) limit_bytes{service="geo"}')) == 1
    assert len(_vector(engine, 'mem_bytes unless on(service) limit_bytes{service="geo"}')) == 1
    assert len(_vector(engine, "mem_bytes or limit_bytes")) == 4  # no shared label sets
    assert _one(engine, '-(mem_bytes{pod="b"})') == -50.0


def test_scalars_and_functions(engine: Engine) -> None:
    assert engine.instant("1 + 2 * 3", NOW) == Scalar(7.0)
    assert engine.instant('scalar(mem_bytes{pod="b"})', NOW) == Scalar(50.0)
    assert engine.instant("time()", NOW) == Scalar(NOW)
    assert _one(engine, 'clamp_max(mem_bytes{pod="a"}, 120)') == 120.0
    assert _one(engine, 'clamp_min(mem_bytes{pod="b"}, 70)') == 70.0
    assert _one(engine, 'abs(-1 * mem_bytes{pod="b"})') == 50.0
    replaced = _vector(
        engine, 'label_replace(mem_bytes{pod="a"}, "svc", "$1-x", "service", "(.*)")'
    )
    assert dict(next(iter(replaced)))["svc"] == "geo-x"
    assert _vector(engine, 'absent(nope{job="x"})') == {(("job", "x"),): 1.0}
    assert _vector(engine, "absent(mem_bytes)") == {}


def test_histogram_quantile(engine: Engine) -> None:
    p50 = _one(engine, "histogram_quantile(0.5, rate(lat_bucket[1m]))")
    assert p50 == pytest.approx(10.0)
    p95 = _one(engine, "histogram_quantile(0.95, sum by (le) (rate(lat_bucket[1m])))")
    assert p95 == pytest.approx(100.0)
    assert histogram_quantile(0.9, [(1.0, 0.0), (math.inf, 0.0)]) != histogram_quantile(
        0.9, [(1.0, 0.0), (math.inf, 0.0)]
    )  # NaN: no observations
    assert histogram_quantile(0.5, [(10.0, 10.0), (20.0, 20.0), (math.inf, 20.0)]) == 10.0


def test_range_query_shapes(engine: Engine) -> None:
    matrix = engine.range("sum(rate(requests_total[1m]))", NOW - 300, NOW, 60)
    assert isinstance(matrix, Matrix)
    assert len(matrix.series) == 1
    assert [t for t, _ in matrix.series[0].points] == [NOW - 300 + 60 * i for i in range(6)]
    scalar = engine.range("1", NOW - 60, NOW, 30)
    assert scalar.series[0].labels == ()
    assert len(scalar.series[0].points) == 3


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("sum(rate(x[5m]", "parse error"),
        ("rate(x)", "expected type matrix"),
        ("foo{", "parse error"),
        ("", "no expression"),
        ("nosuchfunction(x)", "parse error"),
        ('{job=~""}', "at least one non-empty matcher"),
        ('x{a=~"("}', "regex"),
    ],
)
def test_errors_are_promql_errors(engine: Engine, query: str, fragment: str) -> None:
    with pytest.raises(PromQLError) as excinfo:
        engine.instant(query, NOW)
    assert fragment in str(excinfo.value)
    assert excinfo.value.error_type == "bad_data"


def test_range_query_rejects_range_vectors(engine: Engine) -> None:
    with pytest.raises(PromQLError, match="range vector"):
        engine.range("mem_bytes[1m]", NOW - 60, NOW, 30)


def test_many_to_many_is_an_execution_error(engine: Engine) -> None:
    with pytest.raises(PromQLError) as excinfo:
        engine.instant("requests_total / on(destination_service) requests_total", NOW)
    assert excinfo.value.error_type == "execution"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (1e-7, "0.0000001"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (1234567.25, "1234567.25"),
    ],
)
def test_format_value_matches_go(value: float, text: str) -> None:
    assert format_value(value) == text


def test_store_retention_is_bounded() -> None:
    store = SeriesStore(retention_s=100, max_samples=20)
    for i in range(200):
        store.begin(float(i))
        store.set(make_labels("x", {}), float(i))
        if i < 10:
            store.set(make_labels("early", {}), 1.0)
    assert store.oldest_time is not None
    assert store.oldest_time >= 199 - 20 - 20 // 8
    assert len(store) == 1
    with pytest.raises(ValueError, match="not after"):
        store.begin(5.0)
