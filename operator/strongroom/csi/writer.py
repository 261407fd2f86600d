"""Atomic replacement of a volume's files: readers see the old set or the new set, never a mix.

Layout of a target directory:

    ..2026_11_29_14_40_01.123456_ab12/   one generation of the payload
    ..data -> ..2026_11_29_14_40_01.123456_ab12
    db -> ..data/db                       one symlink per top-level user path

A new generation is written into a fresh directory, then `..data` is swapped
with one rename. The previous generation is kept until the next write, so a
reader that opened `..data` just before a swap can finish reading it.

Nothing here follows a symlink the writer did not make: a planted entry in
the target directory makes the write fail with UnsafeTarget.
"""

import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"


class UnsafeTarget(Exception):
    """The target directory holds something the writer did not put there."""


@dataclass(frozen=True)
class File:
    content: bytes
    mode: int = 0o444


def _generation_name() -> str:
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    return f"..{stamp}.{time.time_ns() % 1_000_000_000:09d}_{secrets.token_hex(2)}"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _check_layout(target: Path) -> str | None:
    """Return the current generation's name; refuse anything the writer would not have made."""
    current: str | None = None
    data = _lstat(target / DATA)
    if data is not None:
        if not stat.S_ISLNK(data.st_mode):
            raise UnsafeTarget(f"{DATA} in the volume is not the writer's symlink")
        current = os.readlink(target / DATA)
        if "/" in current or not current.startswith(".."):
            raise UnsafeTarget(f"{DATA} points outside the volume")
    for entry in os.listdir(target):
        info = os.lstat(target / entry)
        if entry.startswith(".."):
            if entry in (DATA, DATA_TMP):
                continue
            if stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
                continue
            raise UnsafeTarget(f"unexpected entry {entry!r} in the volume")
        if not stat.S_ISLNK(info.st_mode) or os.readlink(target / entry) != f"{DATA}/{entry}":
            raise UnsafeTarget(f"entry {entry!r} in the volume was not made by the writer")
    return current


def _read_generation(
    target: Path, generation: str, files: dict[str, File], gid: int | None
) -> bool:
    """True when the generation holds exactly these files with these contents and modes."""
    root = target / generation
    seen = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            seen.add(os.path.relpath(os.path.join(dirpath, name), root))
    if seen != set(files):
        return False
    for path, wanted in files.items():
        info = os.lstat(root / path)
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != wanted.mode:
            return False
        if gid is not None and info.st_gid != gid:
            return False
        with open(root / path, "rb") as handle:
            if handle.read() != wanted.content:
                return False
    return True


def _write_generation(target: Path, files: dict[str, File], gid: int | None) -> str:
    generation = _generation_name()
    root = target / generation
    os.mkdir(root, 0o755)
    for path, wanted in sorted(files.items()):
        parent = root
        for part in path.split("/")[:-1]:
            parent = parent / part
            if _lstat(parent) is None:
                os.mkdir(parent, 0o755)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(root / path, flags, 0o600)
        try:
            view = memoryview(wanted.content)
            while view:
                view = view[os.write(fd, view) :]
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, wanted.mode)
        finally:
            os.close(fd)
    return generation


def write_payload(target: Path, files: dict[str, File], gid: int | None = None) -> bool:
    """Make `target` hold exactly `files`; return whether anything changed.

    Paths must already be checked (see volume.check_path). With `gid` (the pod's fsGroup)
    files belong to that group and are group-readable, as the kubelet makes them for fsGroup.
    """
    if gid is not None:
        files = {path: File(f.content, f.mode | 0o040) for path, f in files.items()}
    current = _check_layout(target)
    if current is not None and _read_generation(target, current, files, gid):
        return False
    generation = _write_generation(target, files, gid)
    tmp = target / DATA_TMP
    if _lstat(tmp) is not None:
        os.unlink(tmp)
    os.symlink(generation, tmp)
    os.rename(tmp, target / DATA)
    wanted_top = {path.split("/", 1)[0] for path in files}
    for name in wanted_top:
        if _lstat(target / name) is None:
            os.symlink(f"{DATA}/{name}", target / name)
    for entry in os.listdir(target):
        if entry.startswith(".."):
            if entry not in (DATA, generation, current) and entry != DATA_TMP:
                _remove_tree(target / entry)
        elif entry not in wanted_top:
            os.unlink(target / entry)
    return True


def _remove_tree(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)
