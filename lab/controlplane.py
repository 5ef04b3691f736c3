"""A real Kubernetes control plane on loopback: etcd, apiserver, controllers, scheduler.

The agents must meet the same API, RBAC and controllers as in production, but
users and CI have no Docker and no cluster. The binaries are Debian's (built once
by ``lab/build_control_plane.sh`` into the cache folder); this module only
generates certificates and tokens, starts the processes on free loopback ports in
the right order, waits for readiness, and stops them again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.errors import LabError
from lab.pki import PkiPaths, generate_pki

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
BUILD_SCRIPT = Path(__file__).with_name("build_control_plane.sh")


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the lab process dies, so no apiserver is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return


def find_binaries(cache_dir: Path) -> dict[str, Path]:
    """Locate the control-plane binaries, or say how to build them."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in BINARIES:
        candidate = cache_dir / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found[name] = candidate
        elif name == "etcd" and shutil.which("etcd"):
            found[name] = Path(shutil.which("etcd") or "")
        else:
            missing.append(name)
    if missing:
        raise LabError(
            f"control-plane binaries missing in {cache_dir / 'bin'}: {', '.join(missing)}. "
            f"Build them once (about 5 minutes on 2 cores) with `make control-plane` "
            f"or `{BUILD_SCRIPT} {cache_dir}`."
        )
    return found


def free_port() -> int:
    """A free loopback port below the ephemeral range.

    A port from bind(0) is an ephemeral one: between closing it here and etcd
    binding it, any outgoing connection on the machine may take it as its local
    port (seen: "bind: address already in use" while a second lab ran). Ports
    below the range are never handed out that way.
    """
    low = _ephemeral_low()
    for _ in range(64):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
    return low if low > 2048 else 32768


def ensure_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LabError(
                f"port {port} for {what} is already in use on 127.0.0.1 ({exc.strerror}); "
                "stop whatever holds it, or choose another port."
            ) from None


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, token: str, namespace: str = "default"
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "aoi-lab",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"{user}@aoi-lab",
                "context": {"cluster": "aoi-lab", "user": user, "namespace": namespace},
            }
        ],
        "current-context": f"{user}@aoi-lab",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


_PORT_ATTEMPTS = 3


@dataclass
class ControlPlane:
    """Processes of one lab control plane, rooted in ``state_dir``."""

    state_dir: Path
    cache_dir: Path
    api_port: int = 0
    etcd_port: int = 0
    server: str = ""
    admin_kubeconfig: Path = field(default_factory=Path)
    pki: PkiPaths | None = None
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start etcd, the apiserver and the controllers; raises ``LabError`` with the cause.

        Ports left at 0 are chosen here; if a process still loses its port to
        another program in the moment between choosing and binding, the start
        is retried with new ports (pinned ports are never changed).
        """
        pinned = (self.api_port, self.etcd_port)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._start(timeout_s)
                return
            except LabError as exc:
                if attempt == _PORT_ATTEMPTS or "address already in use" not in str(exc).lower():
                    raise
                self.api_port, self.etcd_port = pinned  # _start stopped what it began

    def _start(self, timeout_s: float) -> None:
        binaries = find_binaries(self.cache_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = self.api_port or free_port()
        self.etcd_port = self.etcd_port or free_port()
        ensure_port_free(self.api_port, "kube-apiserver")
        ensure_port_free(self.etcd_port, "etcd")
        self.pki = generate_pki(self.state_dir / "pki", service_ip=SERVICE_IP)
        token = secrets.token_hex(24)
        (self.state_dir / "tokens.csv").write_text(f'{token},aoi-lab-admin,1,"system:masters"\n')
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.admin_kubeconfig = write_kubeconfig(
            self.state_dir / "admin.kubeconfig",
            server=self.server,
            ca_cert=self.pki.ca_cert,
            user="aoi-lab-admin",
            token=token,
        )
        try:
            self._start_etcd(binaries["etcd"])
            self._start_apiserver(binaries["kube-apiserver"])
            self._wait_ready(token, timeout_s)
            self._start_controllers(binaries)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.state_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._procs.append((name, proc))

    def _start_etcd(self, binary: Path) -> None:
        peer = free_port()
        data = self.state_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                str(binary),
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
        )

    def _start_apiserver(self, binary: Path) -> None:
        assert self.pki is not None
        self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--insecure-port=0",
                f"--tls-cert-file={self.pki.apiserver_cert}",
                f"--tls-private-key-file={self.pki.apiserver_key}",
                f"--client-ca-file={self.pki.ca_cert}",
                f"--token-auth-file={self.state_dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={self.pki.sa_pub}",
                f"--service-account-signing-key-file={self.pki.sa_key}",
                "--api-audiences=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--event-ttl=2h",
                "--v=0",
            ],
        )

    def _start_controllers(self, binaries: dict[str, Path]) -> None:
        common = [
            f"--kubeconfig={self.admin_kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            "--port=0",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                *common,
                "--controllers=*,-serviceaccount-token",
                "--node-monitor-grace-period=40s",
                "--pod-eviction-timeout=10m",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--concurrent-endpoint-syncs=20",
            ],
        )
        self._spawn("kube-scheduler", [str(binaries["kube-scheduler"]), *common])

    def _wait_ready(self, token: str, timeout_s: float) -> None:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {token}"}
        )
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise LabError(
            f"kube-apiserver did not become ready within {timeout_s:.0f}s ({last}); "
            f"see {self.state_dir / 'kube-apiserver.log'}"
        )

    def check_alive(self) -> None:
        """Raise a LabError naming the first control-plane process that died."""
        for name, proc in self._procs:
            if proc.poll() is not None:
                tail = _tail(self.state_dir / f"{name}.log")
                raise LabError(f"{name} exited with code {proc.returncode}: {tail}")

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs}

    def stop(self) -> None:
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])
