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
            'panic: server selection error: server selection timeout, current topology: '
            '{ Type: Unknown, Servers: [{ Addr: mongodb-geo:27777, Type: Unknown, '
            'Last error: dial tcp: connect: connection refused }] }'
        ),
    ),
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
        self.default_binary: dict[str, str] = {
            image: next(iter(info.binaries)) for image, info in self._images.items()
        }

    def exists(self, image: str) -> bool:
        return image in self._images

    def info(self, image: str) -> ImageInfo | None:
        return self._images.get(image)

    def launch(self, image: str, command: list[str] | None) -> Launch:
        info = self._images.get(image)
        if info is None:
            return Launch(listen_port=None, error=f"image {image!r} not found", run_error=True)
        if info.crash:
            return Launch(listen_port=None, error=info.crash, exit_code=2)
        binary = _basename(command[0]) if command else self.default_binary[image]
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
