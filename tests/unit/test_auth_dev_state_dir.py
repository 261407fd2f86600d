"""`strongroom dev --state-dir X` never deletes a directory it did not make."""

import subprocess
import sys
from pathlib import Path

import pytest

from strongroom import dev

PORT = 18443


def test_a_directory_it_did_not_make_is_refused_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / "projects" / "thesis.tex").write_text("years of work")
    (home / ".bashrc").write_text("export PATH")
    with pytest.raises(dev.StateDirRefused, match="not made by strongroom dev"):
        dev.prepare(home, PORT)
    assert (home / "projects" / "thesis.tex").read_text() == "years of work"
    assert (home / ".bashrc").read_text() == "export PATH"
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", "projects"]


def test_a_file_or_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / dev.MARKER).write_text("planted")
    (target / "precious").write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(dev.StateDirRefused, match="not a directory"):
        dev.prepare(link, PORT)
    assert (target / "precious").read_text() == "keep me"
    plain = tmp_path / "file"
    plain.write_text("data")
    with pytest.raises(dev.StateDirRefused, match="not a directory"):
        dev.prepare(plain, PORT)
    assert plain.read_text() == "data"


def test_its_own_directory_starts_afresh_and_an_empty_one_is_used(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    info = dev.prepare(empty, PORT)
    assert (empty / dev.MARKER).is_file()
    assert Path(info["clientCertificate"]).is_file() and Path(info["clientCaFile"]).is_file()
    first_secret = (empty / "pool-secret").read_text()
    (empty / "leftover").write_text("from the last run")
    dev.prepare(empty, PORT)
    assert not (empty / "leftover").exists()
    assert (empty / "pool-secret").read_text() != first_secret
    fresh = tmp_path / "new" / "state"
    dev.prepare(fresh, PORT)
    assert (fresh / dev.MARKER).is_file()


def test_the_command_says_what_is_wrong_and_deletes_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "strongroom.cli", "dev", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "not made by strongroom dev" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
