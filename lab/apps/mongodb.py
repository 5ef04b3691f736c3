"""MongoDB as the lab's applications run it: one database per service, with auth.

Three AIOpsLab faults live inside MongoDB rather than in Kubernetes objects: TLS
switched to ``requireTLS`` (the ``mongod.conf`` ConfigMap), the application
user's role revoked, and the user dropped. The ConfigMaps rendered here are what
those faults edit and what a rollout restart re-applies: the init script creates
the application user with ``readWrite`` on the app database at every start, so
restarting the pod is the mitigation for a revoked role or a dropped user.
"""

from __future__ import annotations

from lab.apps.spec import ServiceSpec

IMAGE = "mongo:4.4.6"
PORT = 27017
APP_USER = "admin"
"""The user the application connects as (AIOpsLab's hotel reservation calls it admin)."""
APP_ROLES = ("readWrite",)
CONFIG_DIR = "/etc/mongod"
INIT_DIR = "/docker-entrypoint-initdb.d"


def mongod_conf(tls_mode: str = "disabled") -> str:
    """The server configuration; faults switch ``net.tls.mode`` to ``requireTLS``."""
    return (
        "net:\n"
        f"  port: {PORT}\n"
        "  bindIpAll: true\n"
        "  tls:\n"
        f"    mode: {tls_mode}\n"
        "security:\n"
        "  authorization: enabled\n"
        "storage:\n"
        "  dbPath: /data/db\n"
    )


def init_script(database: str) -> str:
    """The script that (re)creates the application user with its roles."""
    roles = ", ".join(f'{{role: "{role}", db: "{database}"}}' for role in APP_ROLES)
    return (
        "// Re-run at every start: a rollout restart restores the user and its roles.\n"
        'db = db.getSiblingDB("admin");\n'
        f'if (db.getUser("{APP_USER}") === null) {{\n'
        f'  db.createUser({{user: "{APP_USER}", pwd: "{APP_USER}", roles: [{roles}]}});\n'
        "} else {\n"
        f'  db.grantRolesToUser("{APP_USER}", [{roles}]);\n'
        "}\n"
    )


def configmaps(service: str, database: str) -> dict[str, dict[str, str]]:
    """The two ConfigMaps of one MongoDB service, keyed by ConfigMap name."""
    return {
        f"{service}-config": {"mongod.conf": mongod_conf()},
        f"{service}-init": {
            "init-user.js": init_script(database),
            "app-user": APP_USER,
            "app-database": database,
            "app-roles": ",".join(APP_ROLES),
        },
    }


def service(name: str, *, volume_gib: int = 0) -> ServiceSpec:
    """A MongoDB Deployment that mounts its config and init script."""
    return ServiceSpec(
        name=name,
        kind="mongodb",
        image=IMAGE,
        port=PORT,
        command=("mongod", "--config", f"{CONFIG_DIR}/mongod.conf"),
        cpu_request_m=100,
        cpu_limit_m=1000,
        memory_request_mib=256,
        memory_limit_mib=1024,
        working_set_mib=180,
        base_cpu_m=30,
        base_latency_ms=1.2,
        log_style="mongodb",
        config_mounts=((f"{name}-config", CONFIG_DIR), (f"{name}-init", INIT_DIR)),
        volume_gib=volume_gib,
    )
