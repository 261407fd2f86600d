"""The atomic writer: whole sets of files swap at once, and planted entries are refused."""

import contextlib
import os
import sys
import threading
from pathlib import Path

import pytest

from strongroom.csi.writer import DATA, File, UnsafeTarget, remove_volume, write_payload

REPUBLISHES = 1000


def payload(generation: int) -> dict[str, File]:
    marker = f"generation {generation}\n".encode()
    return {
        "a": File(marker * 50),
        "nested/b": File(marker * 200, 0o440),
        "c": File(marker),
    }


def test_files_appear_with_their_modes_and_nothing_outside(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    target.mkdir()
    before = set(tmp_path.rglob("*"))
    assert write_payload(target, payload(1)) is True
    assert (target / "a").read_bytes().startswith(b"generation 1")
    assert (target / "nested" / "b").stat().st_mode & 0o777 == 0o440
    assert os.readlink(target / "a") == f"{DATA}/a"
    after = set(tmp_path.rglob("*")) - before
    assert all(str(p).startswith(str(target)) for p in after)


def test_writing_the_same_payload_twice_changes_nothing(tmp_path: Path) -> None:
    write_payload(tmp_path, payload(1))
    generation = os.readlink(tmp_path / DATA)
    assert write_payload(tmp_path, payload(1)) is False
    assert os.readlink(tmp_path / DATA) == generation


def test_removed_objects_disappear_and_old_generations_are_collected(tmp_path: Path) -> None:
    written = []
    for files in (payload(1), payload(2), {"a": File(b"only a")}):
        assert write_payload(tmp_path, files) is True
        written.append(os.readlink(tmp_path / DATA))
    assert len(set(written)) == 3  # each write made a generation of its own
    assert sorted(e for e in os.listdir(tmp_path) if not e.startswith("..")) == ["a"]
    generations = [e for e in os.listdir(tmp_path) if e.startswith("..") and e != DATA]
    # Exactly the current one and the one before; the first is collected.
    assert sorted(generations) == sorted(written[1:])


@pytest.mark.parametrize("plant", ["symlink-out", "regular-file", "data-escape", "fake-gen-link"])
def test_planted_entries_are_refused_and_followed_nowhere(tmp_path: Path, plant: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "vol"
    target.mkdir()
    if plant == "symlink-out":
        os.symlink(outside, target / "a")
    elif plant == "regular-file":
        (target / "a").write_text("planted")
    elif plant == "data-escape":
        os.symlink("../outside", target / DATA)
    else:
        os.symlink(str(outside), target / "..2026_01_01")
    with pytest.raises(UnsafeTarget):
        write_payload(target, payload(1))
    assert list(outside.iterdir()) == []


def test_readers_never_see_a_mixed_or_partial_set(tmp_path: Path) -> None:
    """A reader at high frequency across 1,000 republishes: every read is whole and consistent."""
    write_payload(tmp_path, payload(0))
    stop = threading.Event()
    reads = 0
    bad: list[str] = []

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                data = os.open(tmp_path / DATA, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                # ..data itself is always there (it is replaced by rename); what can be gone
                # is the generation it named when this reader resolved it, two swaps ago.
                if not os.path.lexists(tmp_path / DATA):
                    bad.append("..data missing")
                continue
            texts = []
            try:
                for name in ("a", "nested/b", "c"):
                    fd = os.open(name, os.O_RDONLY, dir_fd=data)
                    with os.fdopen(fd, "rb") as handle:
                        texts.append(handle.read())
            except FileNotFoundError:
                # The generation this reader held was collected two swaps later: it starts
                # again on the current one. Not a mixed or partial read.
                continue
            finally:
                os.close(data)
            markers = {t.split(b"\n", 1)[0] for t in texts}
            if len(markers) != 1:
                bad.append(f"mixed: {markers}")
            if len(texts[0]) != 50 * len(texts[2]) or len(texts[1]) != 200 * len(texts[2]):
                bad.append("partial")
            # The user-facing paths are whole files too.
            single = (tmp_path / "a").read_bytes()
            if len(single) % len(single.split(b"\n", 1)[0] + b"\n"):
                bad.append("partial file through its own path")
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, REPUBLISHES + 1):
            assert write_payload(tmp_path, payload(generation))
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert reads > 100, f"the reader only managed {reads} reads"
    assert (tmp_path / "c").read_bytes() == f"generation {REPUBLISHES}\n".encode()


def test_with_an_fs_group_files_belong_to_it_and_are_group_readable(tmp_path: Path) -> None:
    write_payload(tmp_path, {"s": File(b"v", 0o400)}, gid=2000)
    info = (tmp_path / "s").stat()
    assert info.st_gid == 2000 and info.st_mode & 0o777 == 0o440
    assert write_payload(tmp_path, {"s": File(b"v", 0o400)}, gid=2000) is False
    assert write_payload(tmp_path, {"s": File(b"v", 0o400)}, gid=3000) is True
    assert (tmp_path / "s").stat().st_gid == 3000


# The attacks of a root container on its own volume, were the volume writable: it can swap
# any directory for a symlink to a directory outside (the timestamped generation, a nested
# directory, `..data`), at any moment. The writer must write and remove nothing outside.

DEEP = {f"d1/d2/d3/f{i}" for i in range(8)} | {"top/x", "d1/y"}


def deep_payload(generation: int) -> dict[str, File]:
    return {path: File(f"{path} {generation}\n".encode()) for path in sorted(DEEP)}


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` (not followed): a file's bytes, a symlink's target, a dir."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = "-> " + os.readlink(full)
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = full.read_bytes()
    return out


def outside_dir(tmp_path: Path) -> Path:
    """A directory outside the volume shaped like the payload, so that a followed symlink at
    any level leads to files the writer would read, overwrite or remove."""
    outside = tmp_path / "outside"
    for path in ("d2/d3/canary", "d3/canary", "d1/d2/d3/canary", "top/canary", "canary"):
        (outside / path).parent.mkdir(parents=True, exist_ok=True)
        (outside / path).write_text("outside the volume\n")
    for path in sorted(DEEP):  # a copy of a generation, for the reader to be fooled by
        (outside / path).parent.mkdir(parents=True, exist_ok=True)
        (outside / path).write_bytes(f"{path} 1\n".encode())
    return outside


def generations(target: Path) -> list[str]:
    return [e for e in os.listdir(target) if e.startswith("..2")]


@pytest.mark.parametrize("level", ["generation", "d1", "d1/d2", "d1/d2/d3", "data", "data_tmp"])
def test_a_directory_replaced_by_a_symlink_at_any_level_leads_nowhere(
    tmp_path: Path, level: str
) -> None:
    outside = outside_dir(tmp_path)
    target = tmp_path / "vol"
    target.mkdir()
    assert write_payload(target, deep_payload(1)) is True
    before = snapshot(outside)
    (current,) = generations(target)
    if level == "generation":
        os.rename(target / current, target / "..moved")
        os.symlink(outside, target / current)
    elif level == "data":
        os.symlink(outside, target / "..2026_01_01_00_00_00.000000000_abcd")
        os.unlink(target / DATA)
        os.symlink("..2026_01_01_00_00_00.000000000_abcd", target / DATA)
    elif level == "data_tmp":
        os.symlink(outside, target / "..data_tmp")
    else:
        os.rename(target / current / level, target / current / "moved")
        os.symlink(outside / level, target / current / level)  # a copy of the payload there
    for generation in (1, 2, 3):
        try:
            write_payload(target, deep_payload(generation))
        except UnsafeTarget:
            pass
    assert snapshot(outside) == before


def test_swapping_directories_for_symlinks_while_republishing_reaches_nothing_outside(
    tmp_path: Path,
) -> None:
    """A thread swaps every directory it finds in the volume for a symlink to outside, and
    `..data_tmp` too, as fast as it can, while the volume is republished 300 times."""
    outside = outside_dir(tmp_path)
    target = tmp_path / "vol"
    target.mkdir()
    assert write_payload(target, deep_payload(0))
    before = snapshot(outside)
    stop = threading.Event()
    swaps = 0

    def swap(path: Path, to: Path) -> None:
        nonlocal swaps
        # The attacker can reach its own volume only: never act through its own symlinks.
        try:
            if not os.path.realpath(path.parent).startswith(f"{target}/") or path.is_symlink():
                return
            os.rename(path, path.with_name(f"moved-{swaps}"))
            os.symlink(to, path)
            swaps += 1
        except OSError:
            pass

    def attacker() -> None:
        while not stop.is_set():
            try:
                names = generations(target)
            except OSError:
                continue
            for name in names:
                generation = target / name
                swap(generation / "d1" / "d2", outside / "d2")
                swap(generation / "d1", outside / "d1")
                swap(generation / "top", outside / "top")
            try:
                os.symlink(outside, target / "..data_tmp")
            except OSError:
                pass

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=attacker)
    thread.start()
    refused = 0
    try:
        for generation in range(1, 301):
            try:
                write_payload(target, deep_payload(generation))
            except (UnsafeTarget, OSError):
                refused += 1
                # The attacker's leftovers make the layout unsafe: the plugin refuses, and
                # a fresh volume (unpublish, publish) starts over. Keep racing on a fresh one,
                # removing the old one under attack too.
                with contextlib.suppress(OSError):
                    remove_volume(target)
                target.mkdir(exist_ok=True)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    assert snapshot(outside) == before
    assert swaps > 100, f"the attacker only managed {swaps} swaps"


def test_removing_a_volume_unlinks_symlinks_and_never_follows_them(tmp_path: Path) -> None:
    outside = outside_dir(tmp_path)
    target = tmp_path / "vol"
    target.mkdir()
    assert write_payload(target, deep_payload(1))
    before = snapshot(outside)
    (current,) = generations(target)
    os.rename(target / current / "d1", target / current / "moved")
    os.symlink(outside / "d1", target / current / "d1")
    os.symlink(outside, target / "..data_tmp")
    remove_volume(target)
    assert not target.exists()
    assert snapshot(outside) == before
