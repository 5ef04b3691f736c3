"""The fault families: the vocabulary shared by scenario files and fault injectors.

A scenario names a family; the lab's fault implementations (``lab.faults``)
register under exactly these names. Each family declares the parameters it
accepts, the services it may target and its default ground truth, so a scenario
file can be checked completely before anything touches a cluster.

Train / held-out split
----------------------
The split is by fault *family*, never by scenario, so a model evaluated on the
held-out set has never seen that kind of fault, only its symptoms' relatives
(the AOI paper's "held-out fault types" evaluation). Eight of the twenty-six fault
families (31 %) are held out; each has a trained sibling with related symptoms
and a different root cause:

* ``mongodb_user_unregistered`` (train has ``mongodb_revoke_auth``)
* ``wrong_binary`` (train has ``buggy_image``)
* ``nonexistent_node`` (train has ``scale_to_zero``)
* ``network_delay`` (train has ``network_loss``)
* ``redeploy_without_pv`` (train has ``pod_failure``)
* ``certificate_expiry`` (train has ``mongodb_require_tls``)
* ``pvc_pending`` (train has ``bad_rollout``: a pod that never starts)
* ``retry_storm`` (train has ``cpu_throttling``: latency from load)

Decoy families are noise added to a scenario, not fault types, and belong to
neither side. A scenario combining several faults must draw them from one side.

Ground-truth labels AIOpsLab does not publish
---------------------------------------------
AIOpsLab's catalogue has no analysis task for container kill, pod failure, pod
kill, network delay or the feature flags; their labels follow the closest
published problem: killed or failed pods are ``Virtualization / Operation Error``
(as its pod-failure evaluator), network delay is ``Application / Network/Storage
Issue`` (as its network-loss evaluator), and flags that make a service fail are
``Application / Code Defect`` (see ``FEATURE_FLAGS`` for the exceptions). Our own
families use the same vocabulary; the one judgement call is ``noisy_neighbour``,
labelled ``Virtualization / Dependency Problem`` because the service depends on node
capacity that another tenant takes, while its own code and limits are fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lab.apps.spec import ServiceKind
from lab.scenarios.schema import ParamValue, Split
from store.labels import FaultType, SystemLevel

ParamType = Literal["str", "int", "float", "bool", "list"]
TargetRule = Literal["required", "optional", "none"]
FamilyOrigin = Literal["aiopslab", "aoi", "decoy"]
_PYTHON_TYPES: dict[ParamType, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter a family accepts."""

    type: ParamType
    help: str
    default: ParamValue | None = None
    """None: the fault implementation derives a value from the target."""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class FamilyInfo:
    """What the scenario loader and the injectors know about one fault family."""

    name: str
    description: str
    origin: FamilyOrigin
    split: Split | None
    """None only for decoys, which are noise rather than a fault type."""
    system_level: SystemLevel | None = None
    fault_type: FaultType | None = None
    params: dict[str, ParamInfo] = field(default_factory=dict)
    target_rule: TargetRule = "required"
    """Whether a scenario names the service: ``optional`` and ``none`` act app-wide without one."""
    target_kinds: tuple[ServiceKind, ...] = ()
    """The service kinds it can be injected into; empty means any."""
    apps: tuple[str, ...] = ()
    """The applications it applies to; empty means any."""

    @property
    def is_decoy(self) -> bool:
        return self.origin == "decoy"


@dataclass(frozen=True)
class FlagInfo:
    """One astronomy-shop feature flag and the answer key when it is on."""

    service: str
    system_level: SystemLevel
    fault_type: FaultType


FEATURE_FLAGS: dict[str, FlagInfo] = {
    "adFailure": FlagInfo("ad", "Application", "Code Defect"),
    "adHighCpu": FlagInfo("ad", "Application", "Code Defect"),
    "adManualGc": FlagInfo("ad", "Application", "Code Defect"),
    "cartFailure": FlagInfo("cart", "Application", "Code Defect"),
    "imageSlowLoad": FlagInfo("frontend", "Application", "Network/Storage Issue"),
    "kafkaQueueProblems": FlagInfo("kafka", "Application", "Dependency Problem"),
    "loadGeneratorFloodHomepage": FlagInfo("frontend", "Application", "Operation Error"),
    "paymentFailure": FlagInfo("payment", "Application", "Code Defect"),
    "paymentUnreachable": FlagInfo("checkout", "Application", "Misconfiguration"),
    "productCatalogFailure": FlagInfo("product-catalog", "Application", "Code Defect"),
    "recommendationCacheFailure": FlagInfo("recommendation", "Application", "Code Defect"),
}
"""Flag -> the service AIOpsLab's localization task expects and our analysis labels."""

_MONGO: tuple[ServiceKind, ...] = ("mongodb",)


_AIOPSLAB = (
    FamilyInfo(
        "target_port_misconfig", "The Service's targetPort points at a port nothing listens on.",
        "aiopslab", "train", "Virtualization", "Misconfiguration",
        {"port": ParamInfo("int", "the wrong targetPort", 9999, minimum=1, maximum=65535)},
    ),
    FamilyInfo(
        "mongodb_require_tls", "mongod.conf switched to net.tls.mode requireTLS; pods restarted.",
        "aiopslab", "train", "Application", "Misconfiguration", target_kinds=_MONGO,
    ),
    FamilyInfo(
        "mongodb_revoke_auth", "The app user's role on the app database is revoked.",
        "aiopslab", "train", "Application", "Authentication Issue",
        target_kinds=_MONGO,
    ),
    FamilyInfo(
        "mongodb_user_unregistered", "The app user is dropped from the database.",
        "aiopslab", "held_out", "Application", "Network/Storage Issue",
        target_kinds=_MONGO,
    ),
    FamilyInfo(
        "buggy_image", "The Deployment's image is replaced by a build that crashes at start.",
        "aiopslab", "train", "Application", "Misconfiguration",
        {"image": ParamInfo("str", "the buggy image (default: a broken build of the target's)")},
    ),
    FamilyInfo(
        "scale_to_zero", "The Deployment is scaled to zero replicas.",
        "aiopslab", "train", "Virtualization", "Operation Error",
    ),
    FamilyInfo(
        "nonexistent_node", "A nodeSelector pins the pods to a node that does not exist.",
        "aiopslab", "held_out", "Virtualization", "Dependency Problem",
        {"node": ParamInfo("str", "the missing node's hostname", "extra-node")},
    ),
    FamilyInfo(
        "redeploy_without_pv",
        "The app is redeployed without deleting its PersistentVolumes; new claims stay Pending.",
        "aiopslab", "held_out", "Virtualization", "Operation Error",
        target_rule="optional", target_kinds=_MONGO, apps=("hotel-reservation",),
    ),
    FamilyInfo(
        "wrong_binary", "The container command runs another service's binary.",
        "aiopslab", "held_out", "Application", "Network/Storage Issue",
        {"binary": ParamInfo("str", "the binary to run instead", "geo")},
    ),
    FamilyInfo(
        "container_kill", "The service's container is killed (chaos-mesh container-kill).",
        "aiopslab", "train", "Virtualization", "Operation Error",
    ),
    FamilyInfo(
        "pod_failure", "The service's pod fails for a while (chaos-mesh pod-failure).",
        "aiopslab", "train", "Virtualization", "Operation Error",
    ),
    FamilyInfo(
        "pod_kill", "The service's pod is killed (chaos-mesh pod-kill).",
        "aiopslab", "train", "Virtualization", "Operation Error",
    ),
    FamilyInfo(
        "network_loss", "Packets to and from the service are dropped (tc netem loss).",
        "aiopslab", "train", "Application", "Network/Storage Issue",
        {"loss": ParamInfo("float", "fraction of packets lost", 0.99, minimum=0.0, maximum=1.0)},
    ),
    FamilyInfo(
        "network_delay", "Packets to and from the service are delayed (tc netem delay).",
        "aiopslab", "held_out", "Application", "Network/Storage Issue",
        {"delay_ms": ParamInfo("int", "added latency in milliseconds", 10000, minimum=1)},
    ),
    FamilyInfo(
        "feature_flag", "An astronomy-shop feature flag in flagd is turned on.",
        "aiopslab", "train", "Application", "Code Defect",
        {
            "flag": ParamInfo("str", "the flag to turn on", required=True,
                              choices=tuple(FEATURE_FLAGS)),
        },
        apps=("astronomy-shop",),
    ),
    FamilyInfo(
        "noop", "No fault: the healthy baseline a detector must not flag.",
        "aiopslab", "train", target_rule="none",
    ),
)  # fmt: skip

_AOI = (
    FamilyInfo(
        "bad_configmap_env", "An environment or ConfigMap value is wrong; the service crashes.",
        "aoi", "train", "Application", "Misconfiguration",
        {
            "dependency": ParamInfo("str", "the callee to misaddress (default: the first)"),
            "key": ParamInfo("str", "the variable to set (default: DEPENDENCY_ADDR)"),
            "value": ParamInfo("str", "the bad value (default: the dependency on a wrong port)"),
        },
    ),
    FamilyInfo(
        "liveness_probe_misconfig", "The liveness probe checks a port nothing listens on.",
        "aoi", "train", "Virtualization", "Misconfiguration",
        {"port": ParamInfo("int", "the probed port (default: the service port + 1)", minimum=1,
                    maximum=65535)},
    ),
    FamilyInfo(
        "memory_limit_too_low", "The memory limit is below the working set: OOMKilled.",
        "aoi", "train", "Virtualization", "Misconfiguration",
        {"limit_mib": ParamInfo("int", "the new memory limit", 16, minimum=1)},
    ),
    FamilyInfo(
        "cpu_throttling", "The CPU limit is far below what the service needs: latency.",
        "aoi", "train", "Virtualization", "Misconfiguration",
        {"limit_m": ParamInfo("int", "the new CPU limit in millicores", 5, minimum=1)},
    ),
    FamilyInfo(
        "dns_failure", "The service's name stops resolving for its callers.",
        "aoi", "train", "Virtualization", "Network/Storage Issue",
    ),
    FamilyInfo(
        "bad_rollout", "A rollout to an image tag that does not exist: ImagePullBackOff.",
        "aoi", "train", "Virtualization", "Operation Error",
        {"tag": ParamInfo("str", "the missing tag", "v2.0.0-rc1")},
    ),
    FamilyInfo(
        "certificate_expiry", "The service's serving certificate has expired; callers fail TLS.",
        "aoi", "held_out", "Application", "Authentication Issue",
    ),
    FamilyInfo(
        "pvc_pending", "The data claim asks for a storage class nobody provides: Pending.",
        "aoi", "held_out", "Virtualization", "Network/Storage Issue",
        {"storage_class": ParamInfo("str", "the missing storage class", "fast-ssd")},
        target_kinds=("mongodb", "redis", "kafka"),
    ),
    FamilyInfo(
        "noisy_neighbour", "A pod on the same node burns CPU; the service slows down.",
        "aoi", "train", "Virtualization", "Dependency Problem",
        {"cpu_m": ParamInfo("int", "millicores the neighbour burns", 4000, minimum=1)},
    ),
    FamilyInfo(
        "retry_storm", "Callers retry without backoff and multiply the load on the service.",
        "aoi", "held_out", "Application", "Code Defect",
        {"retries": ParamInfo("int", "retries per failed call", 10, minimum=1)},
    ),
)  # fmt: skip

_DECOYS = (
    FamilyInfo(
        "decoy_log_noise", "A healthy service prints alarming but harmless log lines.",
        "decoy", None,
        params={
            "lines": ParamInfo("int", "how many lines", 20, minimum=1),
            "level": ParamInfo("str", "the log level shown", "ERROR",
                               choices=("INFO", "WARN", "ERROR")),
            "message": ParamInfo("str", "the line printed (default: a plausible transient error)"),
        },
    ),
    FamilyInfo(
        "decoy_restart", "A healthy service's container is killed once; it comes back Ready.",
        "decoy", None,
    ),
    FamilyInfo(
        "planted_logs",
        "Given lines appear in a service's logs: prompt-injection and secret-leak drills.",
        "decoy", None,
        params={"lines": ParamInfo("list", "the lines to plant", required=True)},
    ),
)  # fmt: skip

FAMILIES: dict[str, FamilyInfo] = {f.name: f for f in _AIOPSLAB + _AOI + _DECOYS}


def check_param(info: ParamInfo, value: ParamValue) -> str | None:
    """Why ``value`` is not acceptable for ``info``, or None when it is."""
    if not isinstance(value, _PYTHON_TYPES[info.type]) or (
        isinstance(value, bool) and info.type != "bool"
    ):
        return f"must be {info.type}, got {type(value).__name__} {value!r}"
    if info.choices and value not in info.choices:
        return f"must be one of {', '.join(info.choices)}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if info.minimum is not None and value < info.minimum:
            return f"must be at least {info.minimum:g}, got {value}"
        if info.maximum is not None and value > info.maximum:
            return f"must be at most {info.maximum:g}, got {value}"
    return None


def parse_param(info: ParamInfo, raw: str) -> ParamValue:
    """Convert a command-line ``k=v`` value to the parameter's type."""
    try:
        if info.type == "int":
            return int(raw)
        if info.type == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"must be {info.type}, got {raw!r}") from None
    if info.type == "list":
        return [raw]
    if info.type == "bool":
        lowered = raw.strip().lower()
        if lowered not in {"true", "false", "yes", "no", "1", "0"}:
            raise ValueError(f"must be true or false, got {raw!r}")
        return lowered in {"true", "yes", "1"}
    return raw


def default_labels(
    family: str, params: dict[str, ParamValue]
) -> tuple[SystemLevel | None, FaultType | None]:
    """The analysis answer for one fault: the family's, or the flag's for feature flags."""
    flag = params.get("flag")
    if family == "feature_flag" and isinstance(flag, str) and flag in FEATURE_FLAGS:
        info = FEATURE_FLAGS[flag]
        return info.system_level, info.fault_type
    fam = FAMILIES[family]
    return fam.system_level, fam.fault_type
