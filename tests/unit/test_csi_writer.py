"""The atomic writer: whole sets of files swap at once, and planted entries are refused."""

import os
import threading
from pathlib import Path

import pytest

from strongroom.csi.writer import DATA, File, UnsafeTarget, write_payload

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
    write_payload(tmp_path, payload(1))
    write_payload(tmp_path, payload(2))
    write_payload(tmp_path, {"a": File(b"only a")})
    assert sorted(e for e in os.listdir(tmp_path) if not e.startswith("..")) == ["a"]
    generations = [e for e in os.listdir(tmp_path) if e.startswith("..") and e != DATA]
    assert len(generations) <= 2  # the current one and the one before


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
