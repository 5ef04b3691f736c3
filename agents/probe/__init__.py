"""The Probe: read-only eyes on the cluster for the Observer.

It holds the observer identity and turns instructions into tool calls:
kubectl-style reads (allowlisted before anything runs), named Prometheus
queries, Jaeger error-trace summaries and the deterministic analyzers. Every
call returns a ``ToolResult``; nothing here writes to the cluster.

``Probe`` is imported lazily: the analyzers use this package's clients
(metrics, traces) and the Probe uses the analyzers, so an eager import here
would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.probe.probe import Call, Probe, kubectl_commands

__all__ = ["Call", "Probe", "kubectl_commands"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agents.probe import probe

        return getattr(probe, name)
    raise AttributeError(f"module 'agents.probe' has no attribute {name!r}")
