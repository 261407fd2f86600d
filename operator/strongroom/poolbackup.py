"""A pool's backup: one file holding a consistent copy of its token directory and its record
storage, with a manifest; checked whole before it is laid down into a new pool.

The file is a tar archive of exactly three members, in this order:

- `manifest.json`: format and version, the pool it was taken of (namespace, name, uid), when,
  the security domain it belongs to (its id, from the HSM), and the size and SHA-256 of
  each of the two parts;
- `records.db`: the record storage, copied with SQLite's online backup API (one consistent
  snapshot while the server goes on writing);
- `tokens.tar`: the SoftHSM2 token directory, copied by the HSM sidecar between two of its
  operations (it runs them one at a time, so none is half done in the copy).

The vault server takes the records first and the tokens second, and makes or deletes no
vault meanwhile: every record in the copy has its vault's token in the copy.

A backup is useless alone: each vault's root keys are in its token, encrypted by SoftHSM2
under a key derived from the token's PIN, and the PINs derive from the pool secret, which
the pool's security domain protects; the records are sealed under those root keys. It is
laid down only into a pool started `--await-activation`, which serves nothing until a quorum
of the domain's holders restore the domain into it (docs/security.md, "The security
domain").

The manifest's hashes find a damaged or altered file before anything is written: a backup
whose members, names, sizes or hashes are not exactly what its manifest says, or whose token
archive holds anything but plain files in token directories, is refused whole.
"""

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FORMAT = "strongroom.io/pool-backup"
VERSION = 1
MANIFEST = "manifest.json"
RECORDS = "records.db"
TOKENS = "tokens.tar"
PARTS = (RECORDS, TOKENS)
SUFFIX = ".tar"
# A backup's file name: no directory, no hidden file; what the operator makes is
# `<pool>-<uid prefix>-<UTC time>.tar`.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.tar")
RESTORE_MARKER = "restore.json"
RESTORE_STAGING = ".restore"
SNAPSHOTS = "snapshots"

MAX_MANIFEST_BYTES = 64 * 1024
MAX_PART_BYTES = 64 * 1024**3
MAX_TOKEN_FILES = 200_000
_CHUNK = 1024 * 1024
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BackupError(Exception):
    """A backup that cannot be taken, or a file that is not a sound backup: the message says
    what is wrong (never a value from inside it)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or ".." in name:
        raise BackupError(
            f"{name[:64]!r} is not a backup file name: 1-200 letters, digits, dots, dashes "
            "and underscores, not starting with a dot, ending in .tar"
        )
    return name


# --- taking a backup --------------------------------------------------------------------


def snapshot_tokens(tokens_dir: Path, state_dir: Path) -> dict[str, Any]:
    """A tar of the token directory (names relative to it), written into `state_dir`'s
    `snapshots/` for the vault server to pick up; earlier snapshots there are removed (one
    backup runs at a time). Called by the HSM sidecar between two operations."""
    if not tokens_dir.is_dir():
        raise BackupError(f"the token directory {tokens_dir} does not exist")
    out_dir = state_dir / SNAPSHOTS
    out_dir.mkdir(mode=0o700, exist_ok=True)
    for old in out_dir.glob("tokens-*.tar*"):
        old.unlink(missing_ok=True)
    out = out_dir / f"tokens-{secrets.token_hex(8)}.tar"
    files = 0
    with open(out, "xb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for token in sorted(tokens_dir.iterdir()):
                if not token.is_dir() or token.is_symlink():
                    continue
                archive.add(token, token.name, recursive=False)
                for item in sorted(token.iterdir()):
                    if item.is_file() and not item.is_symlink():
                        archive.add(item, f"{token.name}/{item.name}", recursive=False)
                        files += 1
        handle.flush()
        os.fsync(handle.fileno())
    return {
        "path": str(out),
        "sha256": sha256_file(out),
        "size": out.stat().st_size,
        "files": files,
    }


def snapshot_records(database: Path, out: Path) -> None:
    """One consistent copy of the record database with SQLite's online backup API, while
    the server's writer goes on (WAL: the copy is the database as of one transaction)."""
    if not database.is_file():
        raise BackupError(f"the record storage {database} does not exist")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30.0)
    try:
        target = sqlite3.connect(out)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    os.chmod(out, 0o600)


def _add_file(archive: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o600
    info.mtime = int(path.stat().st_mtime)
    with open(path, "rb") as handle:
        archive.addfile(info, handle)


def write_backup(
    backup_dir: Path,
    name: str,
    pool: dict[str, str],
    records: Path,
    tokens: Path,
    security_domain: dict[str, Any],
) -> dict[str, Any]:
    """Pack the two parts with their manifest into `backup_dir/name`: written whole under a
    temporary name, made durable, then renamed. Returns the manifest."""
    check_name(name)
    target = backup_dir / name
    if target.exists():
        raise BackupError(f"a backup named {name} exists already")
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "pool": pool,
        "created": _now(),
        "securityDomain": security_domain,
        "parts": {
            part: {"size": path.stat().st_size, "sha256": sha256_file(path)}
            for part, path in ((RECORDS, records), (TOKENS, tokens))
        },
    }
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    partial = backup_dir / f".{name}.partial"
    with open(partial, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(raw)
            info.mode = 0o600
            archive.addfile(info, io.BytesIO(raw))
            _add_file(archive, RECORDS, records)
            _add_file(archive, TOKENS, tokens)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(target)
    _fsync_dir(backup_dir)
    return manifest


def clean_partials(backup_dir: Path) -> None:
    """What an interrupted backup left (its temporary file and staging directory)."""
    for item in backup_dir.glob(".*.partial"):
        item.unlink(missing_ok=True)
    for item in backup_dir.glob(".staging-*"):
        shutil.rmtree(item, ignore_errors=True)


@dataclass(frozen=True)
class BackupFile:
    name: str
    size: int
    modified: str


def list_backups(backup_dir: Path) -> list[BackupFile]:
    found = []
    for item in sorted(backup_dir.iterdir()):
        if item.is_file() and not item.is_symlink() and NAME.fullmatch(item.name):
            stat = item.stat()
            modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC)
            found.append(
                BackupFile(item.name, stat.st_size, modified.strftime("%Y-%m-%dT%H:%M:%SZ"))
            )
    return found


# --- checking a backup ------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A backup whose every part matches its manifest."""

    manifest: dict[str, Any]
    sha256: str  # of the whole file


def _read_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise BackupError("its manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"its manifest is not a strongroom pool backup's (format {FORMAT})")
    if manifest.get("version") != VERSION:
        raise BackupError(
            f"its manifest has version {str(manifest.get('version'))[:16]}; this strongroom "
            f"reads version {VERSION}"
        )
    pool = manifest.get("pool")
    if not isinstance(pool, dict) or not all(
        isinstance(pool.get(field), str) for field in ("namespace", "name", "uid")
    ):
        raise BackupError("its manifest does not name the pool it was taken of")
    parts = manifest.get("parts")
    if not isinstance(parts, dict) or sorted(parts) != sorted(PARTS):
        raise BackupError(f"its manifest does not list exactly the parts {list(PARTS)}")
    for part in PARTS:
        entry = parts[part]
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.fullmatch(entry["sha256"])
        ):
            raise BackupError(f"its manifest's entry for {part} has no size and sha256")
    return manifest


def _copy_checked(source: IO[bytes], out: IO[bytes] | None, size: int) -> str:
    digest = hashlib.sha256()
    left = size
    while left:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            raise BackupError("it ends early (truncated)")
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def check_backup(path: Path, staging: Path | None = None) -> Checked:
    """Check the whole file against its manifest; with `staging`, also write the two parts
    there (records.db, tokens.tar) as they are checked. Raises BackupError, naming the file
    and what is wrong."""
    try:
        return _check(path, staging)
    except BackupError as exc:
        raise BackupError(f"the backup {path.name} is refused: {exc}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(
            f"the backup {path.name} is refused: it is not a readable backup archive "
            f"({type(exc).__name__})"
        ) from None


def _check(path: Path, staging: Path | None) -> Checked:
    whole = sha256_file(path)
    manifest: dict[str, Any] | None = None
    seen: list[str] = []
    with tarfile.open(path, mode="r:") as archive:
        for member in archive:
            if len(seen) >= 3:
                raise BackupError(f"it holds more than {MANIFEST}, {RECORDS} and {TOKENS}")
            expected = [MANIFEST, RECORDS, TOKENS][len(seen)]
            if member.name != expected or not member.isreg():
                raise BackupError(
                    f"its member {len(seen) + 1} is {member.name[:64]!r}, not the file {expected}"
                )
            seen.append(member.name)
            source = archive.extractfile(member)
            assert source is not None
            if member.name == MANIFEST:
                if member.size > MAX_MANIFEST_BYTES:
                    raise BackupError("its manifest is too large")
                manifest = _read_manifest(source.read(member.size))
                continue
            assert manifest is not None
            entry = manifest["parts"][member.name]
            if member.size != entry["size"] or member.size > MAX_PART_BYTES:
                raise BackupError(
                    f"its {member.name} has {member.size} bytes; the manifest says {entry['size']}"
                )
            if staging is not None:
                with open(staging / member.name, "xb") as out:
                    os.fchmod(out.fileno(), 0o600)
                    digest = _copy_checked(source, out, member.size)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                digest = _copy_checked(source, None, member.size)
            if digest != entry["sha256"]:
                raise BackupError(
                    f"the SHA-256 of its {member.name} is not the one its manifest records: the "
                    "file was damaged or altered"
                )
            if member.name == TOKENS:
                nested = archive.extractfile(member)
                assert nested is not None
                with tarfile.open(fileobj=nested, mode="r:") as tokens:
                    for _ in _token_members(tokens):
                        pass
    if seen != [MANIFEST, RECORDS, TOKENS] or manifest is None:
        raise BackupError(f"it does not hold {MANIFEST}, {RECORDS} and {TOKENS}")
    return Checked(manifest, whole)


def _token_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The token archive's members, each a token directory or a plain file in one."""
    count = 0
    for member in archive:
        count += 1
        if count > MAX_TOKEN_FILES:
            raise BackupError(f"its token archive holds more than {MAX_TOKEN_FILES} entries")
        parts = member.name.split("/")
        named = all(_TOKEN_NAME.fullmatch(part) for part in parts)
        shape = (len(parts) == 1 and member.isdir()) or (len(parts) == 2 and member.isreg())
        if not named or not shape:
            raise BackupError(
                f"its token archive holds {member.name[:64]!r}, which is not a token "
                "directory or a plain file in one"
            )
        yield member


def _extract_tokens(tokens_tar: Path, into: Path) -> int:
    """Write the token archive's files into `into`: directories 0700, files 0600, nothing
    but what _token_members lets through (no links, devices, absolute or `..` paths)."""
    into.mkdir(mode=0o700)
    files = 0
    with tarfile.open(tokens_tar, mode="r:") as archive:
        for member in _token_members(archive):
            target = into / member.name
            if member.isdir():
                target.mkdir(mode=0o700, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o700, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            with open(target, "xb") as out:
                os.fchmod(out.fileno(), 0o600)
                _copy_checked(source, out, member.size)
                out.flush()
                os.fsync(out.fileno())
            files += 1
    return files


def _check_records(database: Path) -> None:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            result = connection.execute("PRAGMA integrity_check").fetchone()
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BackupError(f"its records.db is not a sound SQLite database ({exc})") from None
    if result is None or result[0] != "ok":
        raise BackupError("its records.db fails SQLite's integrity check")


# --- laying a backup down into a new pool -----------------------------------------------


def _write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(json.dumps(value, indent=2, sort_keys=True))
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    _fsync_dir(path.parent)


def _empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def lay_down(backup: Path, state_dir: Path, records_dir: Path) -> str:
    """Lay the backup's token directory and records down into a new pool's state directory
    (the HSM sidecar's `--state-dir`: `tokens/` in it) and record directory (`records.db`),
    before either process starts. Returns what was done, for the log.

    Checked whole first: a damaged or altered backup changes nothing. Only into a new pool
    (no token, no records, no security-domain state): a pool holding anything is refused.
    Safe to run again, and to kill at any point: `restore.json` in the state directory says
    which backup this pool was laid down from, written before the parts are moved into
    place; a run that finds it for the same backup finishes the moves (or finds them done),
    one for another backup is refused."""
    marker = state_dir / RESTORE_MARKER
    tokens = state_dir / "tokens"
    records = records_dir / RECORDS
    state_staging = state_dir / RESTORE_STAGING
    records_staging = records_dir / RESTORE_STAGING
    whole = sha256_file(backup)
    done = _read_marker(marker)
    if done is not None and done.get("sha256") != whole:
        raise BackupError(
            f"this pool was laid down from the backup {str(done.get('backup'))[:200]} already; "
            f"{backup.name} is another backup. Nothing was changed."
        )
    if done is None:
        occupied = [
            str(path)
            for path, held in (
                (tokens, not _empty(tokens)),
                (records, records.exists()),
                (state_dir / "domain.json", (state_dir / "domain.json").exists()),
            )
            if held
        ]
        if occupied:
            raise BackupError(
                "a backup is laid down only into a new pool, and this one holds "
                f"{', '.join(occupied)}. Nothing was changed."
            )
        for staging in (state_staging, records_staging):
            shutil.rmtree(staging, ignore_errors=True)  # an interrupted earlier run's
        # The whole file is checked before anything is written.
        check_backup(backup)
        made = [d for d in (state_dir, records_dir) if not d.exists()]
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            records_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            state_staging.mkdir(mode=0o700)
            records_staging.mkdir(mode=0o700)
            checked = check_backup(backup, records_staging)
            if checked.sha256 != whole:
                raise BackupError(f"the backup {backup.name} changed while it was read")
            _check_records(records_staging / RECORDS)
            files = _extract_tokens(records_staging / TOKENS, state_staging / "tokens")
        except BaseException:
            shutil.rmtree(state_staging, ignore_errors=True)
            shutil.rmtree(records_staging, ignore_errors=True)
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        (records_staging / TOKENS).unlink()
        _fsync_dir(state_staging)
        _fsync_dir(records_staging)
        pool = checked.manifest["pool"]
        done = {
            "backup": backup.name,
            "sha256": whole,
            "pool": pool,
            "created": checked.manifest["created"],
            "securityDomain": checked.manifest.get("securityDomain"),
            "tokenFiles": files,
            "complete": False,
        }
        _write_json(marker, done)
    if done.get("complete") is True:
        return f"the pool was laid down from {backup.name} already; nothing to do"
    # Move the staged parts into place (each only if still staged: a run killed between the
    # two moves finds one done).
    if (state_staging / "tokens").exists():
        if tokens.exists():
            tokens.rmdir()  # empty: checked above, or left so by an earlier start
        (state_staging / "tokens").replace(tokens)
    if (records_staging / RECORDS).exists():
        (records_staging / RECORDS).replace(records)
    _fsync_dir(state_dir)
    _fsync_dir(records_dir)
    _write_json(marker, done | {"complete": True, "at": _now()})
    with contextlib.suppress(OSError):
        state_staging.rmdir()
        records_staging.rmdir()
    pool = done.get("pool") or {}
    return (
        f"laid down the backup {backup.name} of pool {pool.get('namespace')}/{pool.get('name')} "
        f"(taken {done.get('created')}): its tokens and records are in place; the pool awaits "
        "the upload of its security domain"
    )


def _read_marker(marker: Path) -> dict[str, Any] | None:
    if not marker.exists():
        return None
    try:
        value = json.loads(marker.read_text())
    except (OSError, ValueError):
        raise BackupError(f"{marker} is not readable; remove it only if no restore ran") from None
    if not isinstance(value, dict):
        raise BackupError(f"{marker} is not a restore record")
    return value
