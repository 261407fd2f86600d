"""A pool's backup and its recovery, against real `strongroom dev` pools: a pool activated by
the official SecurityDomainClient is backed up through the management API while it signs and
makes keys; the backup is laid down into a fresh pool directory (`strongroom restore-backup`),
which starts awaiting activation; the holders' offline step and the official client's upload
restore it, and a key made before the backup signs there. Damaged or altered backups are
refused with what is wrong, and nothing is written."""

import hashlib
import http.client
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from azure.keyvault.securitydomain.models import CertificateInfo, SecurityDomain
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from strongroom import dev as devmod
from strongroom.devclient import FileTokenCredential
from strongroom.securitydomain.command import make_restore_blob

from .conftest import DevServer, free_port, start_dev, stop_dev
from .test_security_domain import Holders, key_client, make_holders, sd_client

DIGEST = b"\x3c" * 32
POOL = {"namespace": "team-a", "name": "payments", "uid": "0d6f8f5e-7a54-4bd0-9d0e-1f2a3b4c5d6e"}


def manage(
    dev: DevServer, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any] | None]:
    """A management API call with the operator's client certificate."""
    port = int(dev.url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection(
        "localhost", port, context=dev.admin_context(), timeout=120
    )
    try:
        connection.request(
            method,
            f"/_strongroom/v1{path}",
            body=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, (json.loads(raw) if raw else None)


def _verify(public: ec.EllipticCurvePublicKey, signature: bytes) -> None:
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    public.verify(der, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def _crypto(dev: DevServer, key: Any) -> CryptographyClient:
    return CryptographyClient(
        key,
        FileTokenCredential(dev.token_file),
        connection_verify=dev.ca,
        verify_challenge_resource=False,
    )


@dataclass
class Load:
    """Signing and key making in two threads until stopped; every failure kept."""

    dev: DevServer
    key: Any
    stop: threading.Event = field(default_factory=threading.Event)
    signed: int = 0
    made: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def _sign(self) -> None:
        crypto = _crypto(self.dev, self.key)
        while not self.stop.is_set():
            try:
                crypto.sign(SignatureAlgorithm.es256, DIGEST)
                self.signed += 1
            except Exception as exc:  # noqa: BLE001 - kept for the assertion
                self.errors.append(f"sign: {exc}")

    def _make(self) -> None:
        keys = key_client(self.dev)
        i = 0
        while not self.stop.is_set():
            try:
                keys.create_ec_key(f"load-{i}", curve="P-256")
                self.made.append(f"load-{i}")
            except Exception as exc:  # noqa: BLE001 - kept for the assertion
                self.errors.append(f"create: {exc}")
            i += 1

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self._sign), threading.Thread(target=self._make)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


@dataclass
class Backed:
    base: Path
    holders: Holders
    domain: str
    backup: Path
    other_backup: Path
    public: ec.EllipticCurvePublicKey
    keys_before: list[str]
    made: dict[str, Any]


@pytest.fixture(scope="module")
def backed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backed]:
    base = tmp_path_factory.mktemp("backed")
    holders = make_holders(base / "holders", 3)
    backups = base / "backups"
    dev = start_dev(base / "state", base / "dev.log", await_activation=True, backup_dir=backups)
    try:
        status, health = manage(dev, "GET", "/health")
        assert status == 200 and health is not None
        assert health["securityDomain"] == "awaiting" and health["securityDomainHeld"] is False
        # Not activated: no backup (there is nothing to back up yet).
        status, refused = manage(dev, "POST", "/backups", {"name": "early.tar", "pool": POOL})
        assert status == 409 and refused is not None
        assert refused["error"]["code"] == "PoolNotActivated"

        domain = (
            sd_client(dev)
            .begin_download(
                CertificateInfo(certificates=holders.jwks(), required=2), polling_interval=1
            )
            .result()
            .value
        )
        # The pool holds the blob until its administrator releases it.
        status, health = manage(dev, "GET", "/health")
        assert status == 200 and health is not None
        assert health["securityDomain"] == "activated" and health["securityDomainHeld"] is True
        status, held = manage(dev, "GET", "/securitydomain/download")
        assert status == 200 and held == {"value": domain}
        assert manage(dev, "DELETE", "/securitydomain/download")[0] == 204
        assert manage(dev, "DELETE", "/securitydomain/download")[0] == 204  # twice is fine
        status, gone = manage(dev, "GET", "/securitydomain/download")
        assert status == 404 and gone is not None
        assert gone["error"]["code"] == "SecurityDomainNotHeld"
        status, health = manage(dev, "GET", "/health")
        assert status == 200 and health is not None and health["securityDomainHeld"] is False

        keys = key_client(dev)
        key = keys.create_ec_key("signing", curve="P-256", hardware_protected=True)
        jwk = key.key
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1()
        ).public_key()
        secrets = SecretClient(
            dev.url,
            FileTokenCredential(dev.token_file),
            connection_verify=dev.ca,
            verify_challenge_resource=False,
        )
        assert secrets.set_secret("kept", "across the backup").value == "across the backup"

        with Load(dev, key) as load:
            while len(load.made) < 3 and not load.errors:
                threading.Event().wait(0.05)
            keys_before = list(load.made)
            status, made = manage(dev, "POST", "/backups", {"name": "under-load.tar", "pool": POOL})
            assert status == 201, made
            status, second = manage(dev, "POST", "/backups", {"name": "later.tar", "pool": POOL})
            assert status == 201, second
            signed_during = load.signed
        assert load.errors == []
        assert signed_during > 0 and load.signed > 0
        assert made is not None and made["name"] == "under-load.tar"

        # The same name twice is refused; a bad name is a 400; the list shows both.
        status, again = manage(dev, "POST", "/backups", {"name": "later.tar", "pool": POOL})
        assert status == 409 and again is not None and again["error"]["code"] == "BackupExists"
        status, bad = manage(dev, "POST", "/backups", {"name": "../x.tar", "pool": POOL})
        assert status == 400 and bad is not None and "name" in bad["error"]["message"]
        status, listed = manage(dev, "GET", "/backups")
        assert status == 200 and listed is not None
        assert [b["name"] for b in listed["backups"]] == ["later.tar", "under-load.tar"]
        assert not [p for p in backups.iterdir() if p.name.startswith(".")]
        # Nothing is left beside the token directory either.
        assert list((base / "state" / "hsm" / "snapshots").iterdir()) == []
        yield Backed(
            base,
            holders,
            domain,
            backups / "under-load.tar",
            backups / "later.tar",
            public,
            keys_before,
            made,
        )
    finally:
        stop_dev(dev)


def test_a_backup_is_one_file_with_a_manifest_of_its_parts(backed: Backed) -> None:
    made = backed.made
    assert made["sha256"] == hashlib.sha256(backed.backup.read_bytes()).hexdigest()
    assert made["size"] == backed.backup.stat().st_size
    with tarfile.open(backed.backup) as archive:
        assert archive.getnames() == ["manifest.json", "records.db", "tokens.tar"]
        manifest = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for part in ("records.db", "tokens.tar"):
            data = archive.extractfile(part).read()  # type: ignore[union-attr]
            assert manifest["parts"][part] == {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            assert made["parts"][part] == manifest["parts"][part]
        tokens = tarfile.open(
            fileobj=io.BytesIO(archive.extractfile("tokens.tar").read())  # type: ignore[union-attr]
        )
        names = tokens.getnames()
    assert manifest["format"] == "strongroom.io/pool-backup" and manifest["version"] == 1
    assert manifest["pool"] == POOL
    assert manifest["securityDomain"]["state"] == "activated"
    assert manifest["securityDomain"]["domain"] == made["securityDomain"] != ""
    assert json.loads(backed.domain)  # the blob the backup belongs to
    # The token directory only: no domain state, no pool secret.
    assert names and all(len(n.split("/")) <= 2 for n in names)
    assert not any("domain.json" in n or "pool-secret" in n for n in names)
    # The pool secret is nowhere in the file.
    secret = (backed.base / "state" / "pool-secret").read_text().strip()
    assert secret.encode() not in backed.backup.read_bytes()


def _restore(backup: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "restore-backup",
            "--backup",
            str(backup),
            "--state-dir",
            str(state / "hsm"),
            "--records-dir",
            str(state / "records"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _repack(source: Path, target: Path, change: Any, fix_manifest: bool) -> Path:
    """A copy of the backup with `change(parts)` applied to its members' bytes; with
    `fix_manifest`, the manifest's hashes made to match (a careful forger)."""
    with tarfile.open(source) as archive:
        parts = {
            name: archive.extractfile(name).read()  # type: ignore[union-attr]
            for name in archive.getnames()
        }
    change(parts)
    if fix_manifest:
        manifest = json.loads(parts["manifest.json"])
        for part in ("records.db", "tokens.tar"):
            manifest["parts"][part] = {
                "size": len(parts[part]),
                "sha256": hashlib.sha256(parts[part]).hexdigest(),
            }
        parts["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(target, "w") as archive:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return target


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _evil_tokens(parts: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(parts["tokens.tar"])) as old,
        tarfile.open(fileobj=out, mode="w") as new,
    ):
        for member in old:
            data = old.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            new.addfile(member, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo("../../escaped")
        info.size = 4
        new.addfile(info, io.BytesIO(b"evil"))
    parts["tokens.tar"] = out.getvalue()


def _linked_tokens(parts: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as new:
        info = tarfile.TarInfo("token")
        info.type = tarfile.DIRTYPE
        new.addfile(info)
        link = tarfile.TarInfo("token/token.object")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        new.addfile(link)
    parts["tokens.tar"] = out.getvalue()


def _state_files(state: Path) -> list[str]:
    return sorted(str(p.relative_to(state)) for p in state.rglob("*"))


def test_damaged_or_altered_backups_are_refused_and_change_nothing(
    backed: Backed, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    devmod.prepare(state, free_port())
    before = _state_files(state)
    with tarfile.open(backed.backup) as archive:
        records_size = archive.getmember("records.db").size
    cases = [
        (
            _repack(
                backed.backup,
                tmp_path / "flipped.tar",
                lambda p: p.update({"records.db": _flip(p["records.db"], records_size // 2)}),
                False,
            ),
            "SHA-256 of its records.db is not the one its manifest records",
        ),
        (
            _repack(
                backed.backup,
                tmp_path / "tokens.tar",
                lambda p: p.update({"tokens.tar": _flip(p["tokens.tar"], 1000)}),
                False,
            ),
            "SHA-256 of its tokens.tar",
        ),
        (
            _repack(backed.backup, tmp_path / "escape.tar", _evil_tokens, True),
            "not a token directory or a plain file in one",
        ),
        (
            _repack(backed.backup, tmp_path / "link.tar", _linked_tokens, True),
            "not a token directory or a plain file in one",
        ),
        (
            _repack(
                backed.backup,
                tmp_path / "extra.tar",
                lambda p: p.update({"extra": b"more"}),
                False,
            ),
            "holds more than",
        ),
        (
            _repack(
                backed.backup,
                tmp_path / "format.tar",
                lambda p: p.update(
                    {"manifest.json": p["manifest.json"].replace(b"pool-backup", b"other")}
                ),
                False,
            ),
            "not a strongroom pool backup's",
        ),
        (
            _repack(
                backed.backup,
                tmp_path / "records.tar",
                lambda p: p.update({"records.db": b"\0" * 4096}),
                True,
            ),
            "records.db",
        ),
    ]
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(backed.backup.read_bytes()[: backed.backup.stat().st_size // 2])
    cases.append((truncated, "refused"))
    for backup, words in cases:
        result = _restore(backup, state)
        assert result.returncode != 0, backup.name
        assert f"the backup {backup.name} is refused" in result.stderr or words in result.stderr
        assert words in result.stderr, (backup.name, result.stderr)
        assert _state_files(state) == before, backup.name
    assert not (tmp_path / "escaped").exists()


@pytest.fixture(scope="module")
def restored(backed: Backed) -> Iterator[DevServer]:
    """A fresh pool directory with the backup laid down, started awaiting activation."""
    state = backed.base / "restored"
    devmod.prepare(state, free_port())
    assert (state / "pool-secret").read_text() != (
        backed.base / "state" / "pool-secret"
    ).read_text()
    result = _restore(backed.backup, state)
    assert result.returncode == 0, result.stderr
    assert "laid down the backup under-load.tar of pool team-a/payments" in result.stdout
    # Again: nothing to do. Another backup: refused, nothing changed.
    files = _state_files(state)
    again = _restore(backed.backup, state)
    assert again.returncode == 0 and "already; nothing to do" in again.stdout
    other = _restore(backed.other_backup, state)
    assert other.returncode != 0 and "was laid down from the backup under-load.tar" in other.stderr
    assert _state_files(state) == files
    dev = start_dev(state, backed.base / "restored.log", keep=True, await_activation=True)
    yield dev
    stop_dev(dev)


def test_a_restored_backup_signs_with_the_old_key_after_the_domain_upload(
    backed: Backed, restored: DevServer, tmp_path: Path
) -> None:
    keys = key_client(restored)
    with pytest.raises(HttpResponseError) as refused:
        keys.get_key("signing")
    assert refused.value.status_code == 409 and "not activated" in str(refused.value.message)
    status, health = manage(restored, "GET", "/health")
    assert status == 200 and health is not None and health["securityDomain"] == "awaiting"

    client = sd_client(restored)
    transfer = client.get_transfer_key()
    (tmp_path / "domain.json").write_text(backed.domain)
    (tmp_path / "transfer.json").write_text(
        json.dumps({"key_format": "jwk", "transfer_key": str(transfer.transfer_key)})
    )
    # The holders' offline step: two of the three private keys, never sent anywhere.
    value = make_restore_blob(
        tmp_path / "domain.json",
        tmp_path / "transfer.json",
        backed.holders.certs,
        [backed.holders.keys[1], backed.holders.keys[2]],
    )
    client.begin_upload(SecurityDomain(value=value), polling_interval=1).result()
    assert client.get_upload_status().status == "Success"

    key = keys.get_key("signing")
    _verify(backed.public, _crypto(restored, key).sign(SignatureAlgorithm.es256, DIGEST).signature)
    secrets = SecretClient(
        restored.url,
        FileTokenCredential(restored.token_file),
        connection_verify=restored.ca,
        verify_challenge_resource=False,
    )
    assert secrets.get_secret("kept").value == "across the backup"
    # Every key made before the backup began is there and signs.
    assert backed.keys_before
    for name in backed.keys_before:
        made = keys.get_key(name)
        assert _crypto(restored, made).sign(SignatureAlgorithm.es256, DIGEST).signature
    # The restored pool works as any: a new key, and a backup of it in turn needs a volume.
    assert keys.create_ec_key("after-restore", curve="P-256").id
    status, answer = manage(restored, "POST", "/backups", {"name": "x.tar", "pool": POOL})
    assert status == 409 and answer is not None
    assert answer["error"]["code"] == "BackupVolumeMissing"


def test_backups_are_for_the_operator_only(dev: DevServer) -> None:
    port = int(dev.url.rsplit(":", 1)[1])
    import ssl

    context = ssl.create_default_context(cafile=dev.ca)
    connection = http.client.HTTPSConnection("localhost", port, context=context)
    connection.request(
        "POST",
        "/_strongroom/v1/backups",
        body=json.dumps({"name": "x.tar", "pool": POOL}),
        headers={"Authorization": f"Bearer {dev.token}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 401 and "operator only" in answer["error"]["message"]
