"""Publishing a volume: fetch every object with the pod's own token, then write them all at once.

The plugin never writes through a path the pod can change. Each volume is a
tmpfs mounted in the plugin's staging directory, which no pod sees; the pod's
target path is a read-only bind mount of it (MS_BIND, then
MS_REMOUNT|MS_BIND|MS_RDONLY), so a root container cannot plant a symlink or
write a byte in its volume. Republishes write into the staging mount; the
pod sees the new files through its read-only view of the same tmpfs.

A first publish that fails leaves nothing mounted. A republish that fails
(the vault unreachable, a token expired) leaves the files the pod already has.
"""

import asyncio
import errno
import hashlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .fetch import Fetcher, FetchError
from .volume import InvalidVolume, VolumeRequest
from .writer import DATA, File, UnsafeTarget, remove_volume, write_payload

if TYPE_CHECKING:
    from .metrics import CsiMetrics

log = logging.getLogger(__name__)

TMPFS_SIZE = "4m"
MOUNT = "/bin/mount"
UMOUNT = "/bin/umount"
STAGING_DIR = Path("/csi/volumes")
_MOUNT_OPTIONS = "nosuid,nodev,noexec"


class PublishError(Exception):
    """Why a volume could not be published, with the gRPC status name to answer with."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def is_mountpoint(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise OSError(errno.EIO, f"{' '.join(command)}: {done.stderr.strip()}")


def _mount(*args: str) -> None:
    _run([MOUNT, *args])


def _umount(path: Path) -> None:
    _run([UMOUNT, str(path)])


@dataclass
class Publisher:
    fetcher: Fetcher
    use_tmpfs: bool = True
    staging_dir: Path = STAGING_DIR
    metrics: "CsiMetrics | None" = None

    def staging(self, target: Path) -> Path:
        """The plugin's own, writable mount of a target's tmpfs; no pod sees this path."""
        return self.staging_dir / hashlib.sha256(str(target).encode()).hexdigest()[:32]

    def _write_dir(self, target: Path) -> Path:
        return self.staging(target) if self.use_tmpfs else target

    async def publish(
        self, target: Path, request: VolumeRequest, token: str | None, gid: int | None = None
    ) -> bool:
        if token is None:
            raise PublishError(
                "no ServiceAccount token for audience strongroom.io/vault reached the driver; "
                "the CSIDriver object must request one (tokenRequests)",
                "UNAUTHENTICATED",
            )
        started = time.perf_counter()
        first = not (is_mountpoint(target) if self.use_tmpfs else os.path.lexists(target / DATA))
        try:
            contents = await asyncio.gather(
                *(
                    self.fetcher.fetch_files(request.vault_url, obj, token)
                    for obj in request.objects
                )
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
            path: File(content, obj.mode)
            for obj, written in zip(request.objects, contents, strict=True)
            for path, content in written
        }
        try:
            await asyncio.to_thread(self._prepare, target)
            changed = await asyncio.to_thread(write_payload, self._write_dir(target), files, gid)
            await asyncio.to_thread(self._expose, target)
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
        if self.metrics is not None:
            kind = "mount" if first else "refresh"
            self.metrics.publish_seconds.labels(kind).observe(time.perf_counter() - started)
            if changed and not first:
                self.metrics.rotations.inc()
        return changed

    def _prepare(self, target: Path) -> None:
        """Make the directory the payload is written into: the staging tmpfs (mounted
        afresh, or again from the target after a restart of the plugin) or, without tmpfs,
        the target itself."""
        if target.is_symlink():
            raise UnsafeTarget("the target path is a symlink")
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not self.use_tmpfs:
            return
        staging = self.staging(target)
        staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        if is_mountpoint(staging):
            return
        if is_mountpoint(target):
            # The plugin restarted: its staging mounts are gone, the pods' are not. Mount the
            # same tmpfs again, writable for the plugin only.
            _mount("--bind", str(target), str(staging))
            _mount("-o", f"remount,bind,rw,{_MOUNT_OPTIONS}", str(staging))
            return
        _mount(
            "-t",
            "tmpfs",
            "-o",
            f"size={TMPFS_SIZE},mode=0755,{_MOUNT_OPTIONS}",
            "strongroom",
            str(staging),
        )

    def _expose(self, target: Path) -> None:
        """Give the pod its read-only view of the staging tmpfs, once."""
        if not self.use_tmpfs or is_mountpoint(target):
            return
        _mount("--bind", str(self.staging(target)), str(target))
        _mount("-o", f"remount,bind,ro,{_MOUNT_OPTIONS}", str(target))

    def _undo(self, target: Path) -> None:
        try:
            self.unpublish(target)
        except OSError as exc:
            log.warning("cleaning up %s after a failed publish failed: %s", target, exc.strerror)

    def unpublish(self, target: Path) -> None:
        """Unmount and remove the target and its staging mount; absent is success."""
        if self.use_tmpfs:
            staging = self.staging(target)
            if is_mountpoint(staging):
                _umount(staging)
            if staging.is_dir() and not staging.is_symlink():
                staging.rmdir()
        if not target.exists() and not target.is_symlink():
            return
        if target.is_symlink():
            target.unlink()
            return
        while is_mountpoint(target):
            _umount(target)
        remove_volume(target)


__all__ = ["InvalidVolume", "PublishError", "Publisher"]
