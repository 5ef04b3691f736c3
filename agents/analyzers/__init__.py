"""Deterministic, k8sgpt-style analyzers: the no-model baseline and the Observer's best tool.

``analyze`` reads each namespace once as the observer identity (plus
Prometheus, Jaeger and container logs when given), runs every analyzer, and
returns findings; ``diagnose`` ranks them into one root-cause guess that also
answers AIOpsLab's detection, localization, analysis and mitigation tasks.

Usage::

    report = await analyze(observer_api, namespaces=["shop"],
                           prometheus_url=prom, jaeger_url=jaeger)
    focus = focus_namespaces("checkout fails in the shop", report.namespaces)
    diagnosis = diagnose(report.findings, focus=focus)
    diagnosis.answers()   # {"detection": "Yes", "localization": ["cart"], ...}
"""

from agents.analyzers.finding import Fault, FaultType, Finding, Severity, SystemLevel
from agents.analyzers.focus import focus_namespaces
from agents.analyzers.rank import Diagnosis, diagnose
from agents.analyzers.runner import AnalysisReport, analyze, analyzers_tool

__all__ = [
    "AnalysisReport",
    "Diagnosis",
    "Fault",
    "FaultType",
    "Finding",
    "Severity",
    "SystemLevel",
    "analyze",
    "analyzers_tool",
    "diagnose",
    "focus_namespaces",
]
