"""An unreachable cluster is an answer with a clear error, never a crashed investigation."""

from __future__ import annotations

from kubernetes import client
from sqlalchemy.engine import Engine

from agents.events import DiagnosisEvent, ErrorEvent, Finished
from agents.runtime import ClusterAccess, investigate
from agents.trajectory import IncidentContext

UNREACHABLE = ClusterAccess(
    api=client.ApiClient(client.Configuration(host="http://127.0.0.1:9")),
    prometheus_url="http://127.0.0.1:9",
)


async def test_an_unreachable_cluster_gives_an_error_event_and_no_diagnosis(
    migrated_engine: Engine,
) -> None:
    events = [
        e
        async for e in investigate(
            IncidentContext(question="is prod down?"),
            engine=migrated_engine,
            cluster=UNREACHABLE,
            model=None,
        )
    ]
    errors = [e.message for e in events if isinstance(e, ErrorEvent)]
    assert any("cannot be read" in m and "kubeconfig" in m for m in errors), errors
    (diagnosis,) = [e for e in events if isinstance(e, DiagnosisEvent)]
    assert not diagnosis.detected
    assert isinstance(events[-1], Finished)
    assert events[-1].status == "DIAGNOSED"
