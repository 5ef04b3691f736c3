"""What is failing now, told apart from what failed and stopped.

A cluster has a past: a fault recovered a minute ago still sits in the
metric windows, the trace lookback and the log tail the analyzers read. Read
alone, those leftovers look like a live incident, and a question asked right
after one drill was answered with the previous drill's services. So each
analyzer that knows *when* it saw a symptom checks a second, recent window
(``recent``, 15 s by default, against the long ``window``): a symptom present
over the long window but absent from the recent one is **stopped**. A stopped
finding is kept (it is context: "geo failed until 40 s ago") but demoted to
INFO with a fraction of its score, so it neither raises the alarm nor names
the root cause. Findings about state that is true now (zero replicas, a wrong
targetPort, a Pending pod) are never aged.

A stopped finding has ``Finding.stopped`` set, and its summary says so for
the people and the model who read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.analyzers.finding import Finding, Severity

STOPPED_FACTOR = 0.3
"""A stopped finding keeps this share of its score: it can still be read, never lead."""
TREND_FACTOR = 0.25
"""A recent error ratio below this share of the long one is a recovery under way."""
_MARK = "(stopped: not seen in the last "


def label(recent: timedelta) -> str:
    """``15s``, ``2m``: the recent window as the suffix names it."""
    seconds = int(recent.total_seconds())
    return f"{seconds // 60}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}s"


def stopped(finding: Finding, recent: timedelta, *, evidence: str | None = None) -> Finding:
    """The finding demoted: INFO, score scaled by ``STOPPED_FACTOR``, its summary suffixed."""
    if is_stopped(finding):
        return finding
    lines = [*finding.evidence, evidence] if evidence else list(finding.evidence)
    return finding.model_copy(
        update={
            "severity": Severity.INFO,
            "score": round(finding.score * STOPPED_FACTOR, 4),
            "summary": f"{finding.summary} {_MARK}{label(recent)})",
            "evidence": lines,
            "stopped": True,
        }
    )


def is_stopped(finding: Finding) -> bool:
    return finding.stopped


def aged(
    finding: Finding, seen: datetime | None, now: datetime, recent: timedelta | None, what: str
) -> Finding:
    """``finding`` marked stopped when its newest sighting ``seen`` lies before the recent
    window (evidence: "<what> 40s ago"); unchanged when either is unknown."""
    if recent is None or seen is None or now - seen <= recent:
        return finding
    return stopped(finding, recent, evidence=f"{what} {int((now - seen).total_seconds())}s ago")


__all__ = ["STOPPED_FACTOR", "TREND_FACTOR", "aged", "is_stopped", "label", "stopped"]
