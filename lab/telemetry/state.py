"""What the application model needs to know about the world.

``ServiceRuntime`` is what the cluster shows for one service, read through the
Kubernetes API by the lab's watcher. ``AppFaults`` is the state that lives
*inside* the simulated applications and is invisible to the Kubernetes API, the
way a revoked MongoDB role or a tc netem delay is in a real cluster. The model
combines both into telemetry; it never looks at which scenario is active.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServiceRuntime:
    """One service as the Kubernetes API shows it right now."""

    namespace: str
    name: str
    desired_replicas: int = 1
    ready_replicas: int = 1
    ready_endpoints: int = 1
    """Ready addresses in the Service's Endpoints object."""
    port_reachable: bool = True
    """False when the Service's targetPort matches no port the container listens on."""
    image: str = ""
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    memory_limit_mib: int | None = None
    cpu_limit_m: int | None = None
    restarts: int = 0
    waiting_reason: str | None = None
    """CrashLoopBackOff, ImagePullBackOff, ContainerCreating... when not running."""
    config: dict[str, str] = field(default_factory=dict)
    """Data of the ConfigMaps the service mounts, merged."""
    last_termination_reason: str | None = None
    """containerStatuses[].lastState.terminated.reason of a pod (Error, OOMKilled...)."""
    last_termination_message: str | None = None
    """...and its message: why the process died, which its logs end with."""


@dataclass
class AppFaults:
    """Fault state inside the applications (not visible through the Kubernetes API)."""

    revoked_roles: set[str] = field(default_factory=set)
    """Database services whose application user lost its readWrite role."""
    dropped_users: set[str] = field(default_factory=set)
    """Database services whose application user was dropped."""
    network_loss: dict[str, float] = field(default_factory=dict)
    """Service -> fraction of packets lost on its interface (0..1)."""
    network_delay_ms: dict[str, float] = field(default_factory=dict)
    cpu_stress_m: dict[str, int] = field(default_factory=dict)
    """Service -> extra millicores burnt by a noisy neighbour or a hot loop."""
    memory_leak_mib: dict[str, float] = field(default_factory=dict)
    dns_failure: set[str] = field(default_factory=set)
    """Services whose name no longer resolves for their callers."""
    cert_expired: set[str] = field(default_factory=set)
    """Services whose serving certificate has expired (callers fail TLS)."""
    retry_storm: set[str] = field(default_factory=set)
    """Services whose clients retry without backoff, multiplying load downstream."""
    load_multiplier: float = 1.0
    """Scales the user load (loadgenerator floods)."""
    planted_logs: dict[str, list[str]] = field(default_factory=dict)
    """Service -> extra lines its containers print (decoys, prompt-injection, secret leaks)."""
