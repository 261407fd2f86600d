"""Atomic replacement of a volume's files: readers see the old set or the new set, never a mix.

Layout of a volume directory:

    ..2026_11_29_14_40_01.123456_ab12/   one generation of the payload
    ..data -> ..2026_11_29_14_40_01.123456_ab12
    db -> ..data/db                       one symlink per top-level user path

A new generation is written into a fresh directory, then `..data` is swapped
with one rename. The previous generation is kept until the next write, so a
reader that opened `..data` just before a swap can finish reading it.

Nothing here follows a symlink: every path part is opened relative to the
directory fd of its parent with O_NOFOLLOW, so an entry swapped for a symlink
at any level, at any moment, makes the call fail inside the volume instead of
reaching outside it. A planted entry in the volume directory makes the write
fail with UnsafeTarget; removal unlinks symlinks and never descends into them.
"""

import errno
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATA = "..data"
DATA_TMP = "..data_tmp"
_GENERATION = re.compile(r"\.\.\d{4}(_\d\d){5}\.\d{9}_[0-9a-f]{4}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeTarget(Exception):
    """The volume directory holds something the writer did not put there."""


@dataclass(frozen=True)
class File:
    content: bytes
    mode: int = 0o444


def _generation_name() -> str:
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    return f"..{stamp}.{time.time_ns() % 1_000_000_000:09d}_{secrets.token_hex(2)}"


@contextmanager
def _opened_dir(name: str | Path, parent: int | None = None) -> Iterator[int]:
    """A directory fd for `name` (relative to `parent`), refusing a symlink in its place."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeTarget(f"{str(name)!r} in the volume is not a directory") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _lstat(name: str, parent: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _check_layout(root: int) -> str | None:
    """Return the current generation's name; refuse anything the writer would not have made."""
    current: str | None = None
    data = _lstat(DATA, root)
    if data is not None:
        if not stat.S_ISLNK(data.st_mode):
            raise UnsafeTarget(f"{DATA} in the volume is not the writer's symlink")
        current = os.readlink(DATA, dir_fd=root)
        if not _GENERATION.fullmatch(current):
            raise UnsafeTarget(f"{DATA} does not point at a generation of the volume")
    for entry in os.listdir(root):
        info = _lstat(entry, root)
        if info is None:
            continue
        if entry.startswith(".."):
            if entry in (DATA, DATA_TMP):
                continue
            if _GENERATION.fullmatch(entry) and stat.S_ISDIR(info.st_mode):
                continue
            raise UnsafeTarget(f"unexpected entry {entry!r} in the volume")
        if not stat.S_ISLNK(info.st_mode) or os.readlink(entry, dir_fd=root) != f"{DATA}/{entry}":
            raise UnsafeTarget(f"entry {entry!r} in the volume was not made by the writer")
    return current


def _tree(parent: int, prefix: str = "") -> Iterator[tuple[str, int, os.stat_result]]:
    """Every regular file under `parent` as (relative path, parent fd, lstat); a symlink or
    any other kind of entry raises UnsafeTarget, and nothing is followed."""
    for name in os.listdir(parent):
        info = _lstat(name, parent)
        if info is None:
            raise UnsafeTarget(f"{prefix}{name!r} vanished while the volume was read")
        if stat.S_ISDIR(info.st_mode):
            with _opened_dir(name, parent) as child:
                yield from _tree(child, f"{prefix}{name}/")
        elif stat.S_ISREG(info.st_mode):
            yield f"{prefix}{name}", parent, info
        else:
            raise UnsafeTarget(f"{prefix}{name!r} in the volume is not a regular file")


def _read_file(name: str, parent: int) -> bytes:
    fd = os.open(name, _READ_FLAGS, dir_fd=parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeTarget(f"{name!r} in the volume is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _holds(root: int, generation: str, files: dict[str, File], gid: int | None) -> bool:
    """True when the generation holds exactly these files with these contents and modes."""
    try:
        with _opened_dir(generation, root) as top:
            seen = 0
            for path, parent, info in _tree(top):
                wanted = files.get(path)
                seen += 1
                if wanted is None or stat.S_IMODE(info.st_mode) != wanted.mode:
                    return False
                if gid is not None and info.st_gid != gid:
                    return False
                if _read_file(path.rsplit("/", 1)[-1], parent) != wanted.content:
                    return False
            return seen == len(files)
    except (UnsafeTarget, FileNotFoundError):
        return False  # whatever is there, a fresh generation replaces it


def _write_file(parent: int, name: str, wanted: File, gid: int | None) -> None:
    fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
    try:
        view = memoryview(wanted.content)
        while view:
            view = view[os.write(fd, view) :]
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, wanted.mode)
    finally:
        os.close(fd)


def _write_into(parent: int, tree: dict[str, File], gid: int | None) -> None:
    """Write `tree` (paths relative to `parent`) one directory fd at a time."""
    subdirs: dict[str, dict[str, File]] = {}
    for path, wanted in sorted(tree.items()):
        head, _, rest = path.partition("/")
        if rest:
            subdirs.setdefault(head, {})[rest] = wanted
        else:
            _write_file(parent, head, wanted, gid)
    for name, subtree in sorted(subdirs.items()):
        os.mkdir(name, 0o755, dir_fd=parent)
        with _opened_dir(name, parent) as child:
            _write_into(child, subtree, gid)


def _write_generation(root: int, files: dict[str, File], gid: int | None) -> str:
    generation = _generation_name()
    os.mkdir(generation, 0o755, dir_fd=root)
    with _opened_dir(generation, root) as top:
        _write_into(top, files, gid)
    return generation


def _remove(name: str, parent: int) -> None:
    """Remove `name` under `parent`: symlinks and files are unlinked, directories emptied
    through their own fds; a directory swapped for a symlink meanwhile is unlinked too."""
    info = _lstat(name, parent)
    if info is None:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    try:
        with _opened_dir(name, parent) as child:
            for entry in os.listdir(child):
                _remove(entry, child)
    except UnsafeTarget:
        os.unlink(name, dir_fd=parent)  # no longer a directory: unlink, never follow
        return
    os.rmdir(name, dir_fd=parent)


def write_payload(target: Path, files: dict[str, File], gid: int | None = None) -> bool:
    """Make the directory `target` hold exactly `files`; return whether anything changed.

    Paths must already be checked (see volume.check_path). With `gid` (the pod's fsGroup)
    files belong to that group and are group-readable, as the kubelet makes them for fsGroup.
    """
    if gid is not None:
        files = {path: File(f.content, f.mode | 0o040) for path, f in files.items()}
    with _opened_dir(target) as root:
        current = _check_layout(root)
        if current is not None and _holds(root, current, files, gid):
            return False
        generation = _write_generation(root, files, gid)
        _remove(DATA_TMP, root)
        os.symlink(generation, DATA_TMP, dir_fd=root)
        os.rename(DATA_TMP, DATA, src_dir_fd=root, dst_dir_fd=root)
        wanted_top = {path.split("/", 1)[0] for path in files}
        for name in sorted(wanted_top):
            if _lstat(name, root) is None:
                os.symlink(f"{DATA}/{name}", name, dir_fd=root)
        for entry in os.listdir(root):
            if entry.startswith(".."):
                if entry not in (DATA, generation, current):
                    _remove(entry, root)
            elif entry not in wanted_top:
                _remove(entry, root)
    return True


def remove_volume(target: Path) -> None:
    """Remove the directory `target` and everything in it, following no symlink."""
    with _opened_dir(target) as root:
        for entry in os.listdir(root):
            _remove(entry, root)
    os.rmdir(target)
