"""The backup file and laying it down, on plain files (the hsm tier does it with real pools):
the archive's shape, a restore that is killed at any point and run again, a pool that holds
anything refused, and the CRD's rules about security domains, backups and recovery."""

import io
import json
import shutil
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from strongroom import poolbackup
from strongroom.models.crd import RESOURCES, custom_resource_definition

POOL = {"namespace": "team-a", "name": "main", "uid": "u-1"}


def make_backup(where: Path, name: str = "main-1.tar") -> Path:
    """A backup of a pool made of plain files: two token directories and a records.db."""
    state = where / "source"
    tokens = state / "tokens"
    for token in ("3f0c", "9ab1"):
        (tokens / token).mkdir(parents=True)
        (tokens / token / "token.object").write_bytes(token.encode() * 100)
        (tokens / token / "a.object").write_bytes(b"\x01\x02" * 50)
    database = state / "records.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE r (k TEXT PRIMARY KEY, v BLOB)")
    connection.execute("INSERT INTO r VALUES ('a', x'00ff')")
    connection.commit()
    connection.close()
    snapshot = poolbackup.snapshot_tokens(tokens, state)
    records = where / "records-copy.db"
    poolbackup.snapshot_records(database, records)
    backups = where / "backups"
    backups.mkdir(exist_ok=True)
    poolbackup.write_backup(
        backups, name, POOL, records, Path(snapshot["path"]), {"state": "activated", "domain": "d"}
    )
    return backups / name


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_backup_holds_its_manifest_and_two_parts(tmp_path: Path) -> None:
    backup = make_backup(tmp_path)
    checked = poolbackup.check_backup(backup)
    assert checked.manifest["pool"] == POOL and checked.manifest["format"] == poolbackup.FORMAT
    with tarfile.open(backup) as archive:
        assert archive.getnames() == ["manifest.json", "records.db", "tokens.tar"]
    assert not list((tmp_path / "backups").glob(".*"))  # no partial left


def test_laying_down_is_idempotent_and_resumes_after_a_kill(tmp_path: Path) -> None:
    backup = make_backup(tmp_path)
    state, records = tmp_path / "pool", tmp_path / "pool" / "records"
    said = poolbackup.lay_down(backup, state, records)
    assert "laid down the backup main-1.tar of pool team-a/main" in said
    laid = files(state)
    assert laid["tokens/3f0c/token.object"] == b"3f0c" * 100
    assert "records/records.db" in laid
    assert json.loads(laid["restore.json"])["complete"] is True
    assert "nothing to do" in poolbackup.lay_down(backup, state, records)
    assert files(state) == laid

    # Killed after the marker, between the two moves: the next run finishes.
    (records / ".restore").mkdir()
    (records / "records.db").replace(records / ".restore" / "records.db")
    marker = json.loads((state / "restore.json").read_text())
    (state / "restore.json").write_text(json.dumps(marker | {"complete": False}))
    poolbackup.lay_down(backup, state, records)
    assert (records / "records.db").read_bytes() == laid["records/records.db"]
    assert json.loads((state / "restore.json").read_text())["complete"] is True

    # Killed before the marker, with half a staging: started again from the file.
    fresh = tmp_path / "fresh"
    (fresh / ".restore" / "tokens" / "3f0c").mkdir(parents=True)
    (fresh / ".restore" / "tokens" / "3f0c" / "half").write_bytes(b"half")
    poolbackup.lay_down(backup, fresh, fresh / "records")
    assert not (fresh / "tokens" / "3f0c" / "half").exists()
    assert (fresh / "tokens" / "9ab1" / "a.object").read_bytes() == b"\x01\x02" * 50


@pytest.mark.parametrize("held", ["tokens/abc/token.object", "records/records.db", "domain.json"])
def test_a_pool_that_holds_anything_is_refused_and_unchanged(tmp_path: Path, held: str) -> None:
    backup = make_backup(tmp_path)
    state = tmp_path / "pool"
    (state / held).parent.mkdir(parents=True, exist_ok=True)
    (state / held).write_bytes(b"kept")
    before = files(state)
    with pytest.raises(poolbackup.BackupError, match="only into a new pool"):
        poolbackup.lay_down(backup, state, state / "records")
    assert files(state) == before


def test_another_backup_into_a_restored_pool_is_refused(tmp_path: Path) -> None:
    first = make_backup(tmp_path / "a")
    second = make_backup(tmp_path / "b", "main-2.tar")
    state = tmp_path / "pool"
    poolbackup.lay_down(first, state, state / "records")
    before = files(state)
    with pytest.raises(poolbackup.BackupError, match="laid down from the backup main-1.tar"):
        poolbackup.lay_down(second, state, state / "records")
    assert files(state) == before


@pytest.mark.parametrize("name", ["../x.tar", ".hidden.tar", "x.tgz", "a/b.tar", "", "x" * 300])
def test_backup_names_are_plain_file_names(name: str) -> None:
    with pytest.raises(poolbackup.BackupError):
        poolbackup.check_name(name)


def test_a_directory_in_the_place_of_a_part_is_refused(tmp_path: Path) -> None:
    backup = make_backup(tmp_path)
    with tarfile.open(backup) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w") as archive:
        for name in ("manifest.json", "records.db"):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            archive.addfile(info, io.BytesIO(members[name]))
        info = tarfile.TarInfo("tokens.tar")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    with pytest.raises(poolbackup.BackupError, match="not the file tokens.tar"):
        poolbackup.check_backup(forged)
    shutil.rmtree(tmp_path / "backups")


# --- the CRD's rules ----------------------------------------------------------------------


def _pool_schema() -> dict[str, Any]:
    resource = next(r for r in RESOURCES if r.kind == "HsmPool")
    crd = custom_resource_definition(resource)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


def _rules(node: dict[str, Any]) -> dict[str, str]:
    return {r["rule"]: r["message"] for r in node.get("x-kubernetes-validations", [])}


def test_security_domain_and_recovery_are_chosen_when_a_pool_is_made() -> None:
    spec = _pool_schema()
    rules = _rules(spec)
    for field in ("securityDomain", "recoverFrom"):
        message = rules[f"has(self.{field}) == has(oldSelf.{field})"]
        assert f"spec.{field} cannot be added to or removed from an existing pool" in message
        assert "self == oldSelf" in _rules(spec["properties"][field])
    assert "not both" in rules["!(has(self.securityDomain) && has(self.recoverFrom))"]
    backup_rule = "!has(self.backup) || has(self.securityDomain) || has(self.recoverFrom)"
    assert "can never be recovered" in rules[backup_rule]
    domain = spec["properties"]["securityDomain"]
    assert "CANNOT BE RECOVERED" in domain["description"]
    assert sorted(domain["required"]) == ["certificates", "quorum"]
    assert "self >= 2 && self <= 10" in _rules(domain["properties"]["quorum"])
    recover = spec["properties"]["recoverFrom"]
    assert sorted(recover["required"]) == ["claimName", "file"]
    assert recover["properties"]["file"]["pattern"].endswith(r"\.tar$")
    backup = spec["properties"]["backup"]
    assert "not both" in _rules(backup)["!(has(self.schedule) && has(self.interval))"]
    assert backup["properties"]["retain"]["minimum"] == 1
    assert backup["required"] == ["claimName"]
