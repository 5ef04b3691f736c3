"""The fault families the lab can inject, by the names scenario files use."""

from __future__ import annotations

from lab.faults import inapp, workload
from lab.faults.base import Fault, FaultContext, Verdict

FAULTS: dict[str, Fault] = {
    "target_port_misconfig": workload.TargetPortMisconfig(),
    "mongodb_require_tls": inapp.MongodbRequireTls(),
    "mongodb_revoke_auth": inapp.MongodbRevokeAuth(),
    "mongodb_user_unregistered": inapp.MongodbUserUnregistered(),
    "buggy_image": workload.BuggyImage(),
    "scale_to_zero": workload.ScaleToZero(),
    "nonexistent_node": workload.NonexistentNode(),
    "redeploy_without_pv": workload.RedeployWithoutPv(),
    "wrong_binary": workload.WrongBinary(),
    "container_kill": inapp.ContainerKill(),
    "pod_failure": inapp.PodFailure(),
    "pod_kill": inapp.PodKill(),
    "network_loss": inapp.NetworkLoss(),
    "network_delay": inapp.NetworkDelay(),
    "feature_flag": workload.FeatureFlag(),
    "noop": inapp.Noop(),
    "bad_configmap_env": workload.BadConfigEnv(),
    "liveness_probe_misconfig": workload.LivenessProbeMisconfig(),
    "memory_limit_too_low": workload.MemoryLimitTooLow(),
    "cpu_throttling": workload.CpuThrottling(),
    "dns_failure": inapp.DnsFailure(),
    "bad_rollout": workload.BadRollout(),
    "certificate_expiry": inapp.CertificateExpiry(),
    "pvc_pending": workload.PvcPending(),
    "noisy_neighbour": workload.NoisyNeighbour(),
    "retry_storm": inapp.RetryStorm(),
    "decoy_log_noise": inapp.DecoyLogNoise(),
    "decoy_restart": inapp.DecoyRestart(),
    "planted_logs": inapp.PlantedLogs(),
}

__all__ = ["FAULTS", "Fault", "FaultContext", "Verdict"]
