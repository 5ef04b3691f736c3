"""Observer decisions as the scripted model answers them, for tests of the loop."""

from __future__ import annotations

import json


def decision(
    kind: str,
    instruction: str,
    component: str = "user-service",
    confidence: int = 60,
    *,
    system_level: str = "Virtualization",
    fault_type: str = "Operation Error",
) -> str:
    """One decision's JSON: ``kind`` is probe, executor or submit."""
    return json.dumps(
        {
            "summary": f"next: {kind}",
            "phase": "diagnosis",
            "hypotheses": [component],
            "root_cause": {
                "component": component,
                "system_level": system_level,
                "fault_type": fault_type,
            },
            "confidence": confidence,
            "next_action": {"kind": kind, "instruction": instruction},
        }
    )
