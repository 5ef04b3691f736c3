"""The bot's Prometheus metrics, in a registry of its own.

Each `BotMetrics` owns a `CollectorRegistry`, never the process-wide default one, so
tests and several bots in one process each count only their own. Series::

    investigations_running              gauge
    investigations_total{status}        counter
    investigation_seconds               histogram
    slack_api_errors_total{method,error}  counter, one per failed Slack API attempt
    slack_rate_limited_total{method}    counter, one per HTTP 429
    model_queue_length                  gauge, read from a callable at scrape time
    events_total{kind}                  counter
    approvals_total{outcome}            counter

Label values come from the bot's own vocabulary (statuses, Slack method names and
error codes), never from user text, so the number of series stays bounded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

log = logging.getLogger("aoi.bot.metrics")

# The classic text format, which every scraper reads (prometheus_client >= 0.22 would
# announce "version=1.0.0", which older scrapers do not know; the body is the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# An investigation takes from seconds (a cached answer) to many minutes (a slow model).
INVESTIGATION_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0)


NAMESPACE = "aoi"
"""Every series is named aoi_*, so a shared Prometheus tells them from other apps'."""


class BotMetrics:
    """The bot's counters and gauges; `render()` is the /metrics payload."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.investigations_running = Gauge(
            "investigations_running", "Investigations in progress.", namespace=NAMESPACE, registry=r
        )
        self.investigations_total = Counter(
            "investigations",
            "Finished investigations, by final status.",
            ["status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.investigation_seconds = Histogram(
            "investigation_seconds",
            "Wall time of an investigation, start to final answer.",
            buckets=INVESTIGATION_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.slack_api_errors_total = Counter(
            "slack_api_errors",
            "Failed Slack Web API attempts (including retried ones), by method and error code.",
            ["method", "error"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.slack_rate_limited_total = Counter(
            "slack_rate_limited",
            "HTTP 429 answers from Slack, by method.",
            ["method"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.model_queue_length = Gauge(
            "model_queue_length",
            "Requests waiting for the local model.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.events_total = Counter(
            "events",
            "Slack events and interactions received, by kind.",
            ["kind"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.approvals_total = Counter(
            "approvals",
            "Proposal decisions, by outcome.",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )

    def investigation_started(self) -> None:
        self.investigations_running.inc()

    def investigation_finished(self, status: str, seconds: float) -> None:
        """One investigation ended with `status` after `seconds` (call once per start)."""
        self.investigations_running.dec()
        self.investigations_total.labels(status=status).inc()
        self.investigation_seconds.observe(max(0.0, seconds))

    def slack_error(self, method: str, error: str) -> None:
        self.slack_api_errors_total.labels(method=method, error=error).inc()

    def rate_limited(self, method: str) -> None:
        self.slack_rate_limited_total.labels(method=method).inc()

    def event(self, kind: str) -> None:
        self.events_total.labels(kind=kind).inc()

    def approval(self, outcome: str) -> None:
        self.approvals_total.labels(outcome=outcome).inc()

    def set_model_queue(self, fn: Callable[[], int]) -> None:
        """Read the model queue's length from `fn` at every scrape.

        A failing `fn` shows as NaN (and a log line) instead of breaking the scrape.
        """

        def read() -> float:
            try:
                return float(fn())
            except Exception:
                log.warning("model queue length unavailable", exc_info=True)
                return math.nan

        self.model_queue_length.set_function(read)

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE
