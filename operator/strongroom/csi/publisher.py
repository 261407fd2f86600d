"""Publishing a volume: fetch every object with the pod's token, then write them all at once.

A first publish that fails leaves nothing mounted. A republish that fails
(the vault unreachable, a token expired) leaves the files the pod already has.
"""

import asyncio
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .fetch import Fetcher, FetchError
from .volume import InvalidVolume, VolumeRequest
from .writer import File, UnsafeTarget, write_payload

log = logging.getLogger(__name__)

TMPFS_SIZE = "4m"
MOUNT = "/bin/mount"
UMOUNT = "/bin/umount"


class PublishError(Exception):
    """Why a volume could not be published, with the gRPC status name to answer with."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def is_mountpoint(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


@dataclass
class Publisher:
    fetcher: Fetcher
    use_tmpfs: bool = True

    async def publish(
        self, target: Path, request: VolumeRequest, token: str | None, gid: int | None = None
    ) -> bool:
        if token is None:
            raise PublishError(
                "no ServiceAccount token for audience strongroom.io/vault reached the driver; "
                "the CSIDriver object must request one (tokenRequests)",
                "UNAUTHENTICATED",
            )
        first = not (target / "..data").exists()
        try:
            contents = await asyncio.gather(
                *(self.fetcher.fetch(request.vault_url, obj, token) for obj in request.objects)
            )
        except FetchError as exc:
            code = {
                401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED",
                404: "NOT_FOUND",
                400: "INVALID_ARGUMENT",
            }.get(exc.status, "UNAVAILABLE")
            if first:
                self._undo(target)
            raise PublishError(str(exc), code) from None
        files = {
            obj.path: File(content, obj.mode)
            for obj, content in zip(request.objects, contents, strict=True)
        }
        try:
            self._prepare(target)
            changed = await asyncio.to_thread(write_payload, target, files, gid)
        except UnsafeTarget as exc:
            if first:
                self._undo(target)
            raise PublishError(
                f"the target directory is not safe to write: {exc}", "INVALID_ARGUMENT"
            ) from None
        except OSError as exc:
            if first:
                self._undo(target)
            raise PublishError(f"writing the volume failed: {exc.strerror}", "INTERNAL") from None
        if changed:
            log.info("published %d object(s) to %s", len(files), target)
        return changed

    def _prepare(self, target: Path) -> None:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        if target.is_symlink():
            raise UnsafeTarget("the target path is a symlink")
        if self.use_tmpfs and not is_mountpoint(target):
            subprocess.run(  # noqa: S603 - fixed arguments
                [
                    MOUNT,
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={TMPFS_SIZE},mode=0755,nosuid,nodev,noexec",
                    "strongroom",
                    str(target),
                ],
                check=True,
                capture_output=True,
            )

    def _undo(self, target: Path) -> None:
        try:
            self.unpublish(target)
        except OSError as exc:
            log.warning("cleaning up %s after a failed publish failed: %s", target, exc.strerror)

    def unpublish(self, target: Path) -> None:
        """Unmount and remove the target; absent is success."""
        if not target.exists() and not target.is_symlink():
            return
        if target.is_symlink():
            target.unlink()
            return
        if is_mountpoint(target):
            subprocess.run([UMOUNT, str(target)], check=True, capture_output=True)  # noqa: S603
        _remove_volume_dir(target)


def _remove_volume_dir(target: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(target, topdown=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.rmdir(full)
    os.rmdir(target)


__all__ = ["InvalidVolume", "PublishError", "Publisher"]
