"""What the simulated container runtime knows about images.

A real node pulls an image and runs a binary from it; what happens next depends
on the image, the command and the limits. The lab has no containers, so this
catalogue says which images "exist", which binaries each holds and which port
each binary listens on. Faults then behave as they would on a real node: a
missing tag is ImagePullBackOff, a wrong binary listens on the wrong port, a
buggy build crashes at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.apps.spec import AppSpec


@dataclass(frozen=True)
class ImageInfo:
    binaries: dict[str, int] = field(default_factory=dict)
    """Binary name -> the port it listens on (0: listens on nothing)."""
    crash: str | None = None
    """A startup failure message, for builds that are known to be broken."""
    extra_memory_mib: int = 0


@dataclass(frozen=True)
class Launch:
    """What starting one container leads to."""

    listen_port: int | None
    error: str | None = None
    """Why the process dies at start, as its last log line says."""
    exit_code: int = 0
    run_error: bool = False
    """True when the runtime cannot even start the process (RunContainerError)."""


# Builds that exist in the (simulated) registry but are known to be broken.
# Faults refer to them by name, as AIOpsLab's buggy-image fault does.
BROKEN_BUILDS: dict[str, ImageInfo] = {
    "yinfangchen/geo:app3": ImageInfo(
        binaries={"geo": 8083},
        crash=(
            "panic: server selection error: server selection timeout, current topology: "
            "{ Type: Unknown, Servers: [{ Addr: mongodb-geo:27777, Type: Unknown, "
            "Last error: dial tcp: connect: connection refused }] }"
        ),
    ),
}


# Images every cluster runs besides the apps: shells for jobs, and the cluster DNS.
UTILITY_IMAGES: dict[str, ImageInfo] = {
    **{
        name: ImageInfo(binaries={"sh": 0, "sleep": 0})
        for name in ("busybox:1.36", "alpine:3.19", "bitnami/kubectl:1.20")
    },
    "coredns/coredns:1.7.0": ImageInfo(binaries={"coredns": 53}),
}


class ImageCatalog:
    """Images of the lab's applications, plus known broken builds."""

    def __init__(self, apps: Iterable[AppSpec]) -> None:
        images: dict[str, dict[str, int]] = {}
        for app in apps:
            for svc in app.services:
                binary = svc.command[0] if svc.command else svc.name
                images.setdefault(svc.image, {})[_basename(binary)] = svc.port
        self._images = {name: ImageInfo(binaries=b) for name, b in images.items()}
        self._images.update(BROKEN_BUILDS)
        self._images.update(UTILITY_IMAGES)

    def info(self, image: str) -> ImageInfo | None:
        """The image, or a ``-buggy`` tag of a known repository (a build that crashes)."""
        known = self._images.get(image)
        if known is not None:
            return known
        repo, _, tag = image.rpartition(":")
        base = next(
            (i for name, i in self._images.items() if name.rpartition(":")[0] == repo), None
        )
        if base is None or not tag.endswith("-buggy"):
            return None
        return ImageInfo(
            binaries=base.binaries,
            crash=f"panic: runtime error: invalid memory address or nil pointer dereference "
            f"[signal SIGSEGV: segmentation violation] (build {tag})",
        )

    def exists(self, image: str) -> bool:
        return self.info(image) is not None

    def launch(self, image: str, command: list[str] | None) -> Launch:
        info = self.info(image)
        if info is None:
            return Launch(listen_port=None, error=f"image {image!r} not found", run_error=True)
        if info.crash:
            return Launch(listen_port=None, error=info.crash, exit_code=2)
        binary = _basename(command[0]) if command else next(iter(info.binaries), "")
        if binary in info.binaries:
            return Launch(listen_port=info.binaries[binary])
        if binary in {"sh", "bash", "sleep", "true"}:
            return Launch(listen_port=0)
        return Launch(
            listen_port=None,
            error=(
                f'OCI runtime create failed: exec: "{binary}": '
                "executable file not found in $PATH: unknown"
            ),
            exit_code=128,
            run_error=True,
        )


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
