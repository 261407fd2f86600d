"""A pool of the first storage design (records and keys in the token) is migrated in place at
start, once: every object, version, tag, policy and deletion is served from the record
storage after it, keys sign as before, and the token keeps its root keys only."""

import asyncio
import hashlib
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.devclient import FileTokenCredential
from strongroom.hsm.client import HsmClient

from .conftest import Clients, DevServer, start_dev, stop_dev

DATA = Path(__file__).parent / "data"


def _unpack(target: Path) -> dict[str, object]:
    with tarfile.open(DATA / "first-design-pool.tar.gz") as archive:
        archive.extractall(target, filter="data")
    expected: dict[str, object] = json.loads((DATA / "first-design-pool.json").read_text())
    return expected


def _clients(dev: DevServer) -> tuple[KeyClient, SecretClient, FileTokenCredential]:
    sdk = Clients(dev)
    return sdk.keys, sdk.secrets, sdk.credential


async def _token_state(dev: DevServer) -> tuple[list[str], dict[str, bytes]]:
    client = HsmClient(dev.state / "hsm.sock")
    try:
        keys = await client.token_key_ids("dev")
        records = await client.list_token_records("dev", "")
        return keys, records["records"]
    finally:
        await client.close()


def _check_everything(dev: DevServer, expected: dict[str, object]) -> None:
    keys, secrets, credential = _clients(dev)
    want_keys: dict[str, list[str]] = expected["keys"]  # type: ignore[assignment]
    for name, versions in want_keys.items():
        listed = [p.version for p in keys.list_properties_of_key_versions(name)]
        assert sorted(listed) == sorted(versions), name
        assert keys.get_key(name).properties.version == versions[-1]
    public: dict[str, object] = expected["public"]  # type: ignore[assignment]
    ec_key = keys.get_key("legacy-ec")
    assert [ec_key.key.x.hex(), ec_key.key.y.hex()] == public["legacy-ec"]
    rsa_key = keys.get_key("legacy-rsa")
    assert rsa_key.key.n.hex() == public["legacy-rsa"]
    assert rsa_key.properties.tags == {"team": "a"}
    policy = keys.get_key_rotation_policy("legacy-rsa")
    assert policy.expires_in == "P90D"
    assert [a.time_after_create for a in policy.lifetime_actions] == ["P30D"]
    assert [k.name for k in keys.list_deleted_keys()] == ["legacy-deleted"]
    # The migrated keys work: loaded from their wrapped blobs into the HSM on first use.
    digest = hashlib.sha256(b"migrated").digest()
    options = {"verify_challenge_resource": False, "connection_verify": dev.ca}
    signature = (
        CryptographyClient(ec_key, credential, **options)
        .sign(SignatureAlgorithm.es256, digest)
        .signature
    )
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(ec_key.key.x, "big"), int.from_bytes(ec_key.key.y, "big"), ec.SECP256R1()
    )
    half = len(signature) // 2
    from cryptography.hazmat.primitives.asymmetric.utils import (
        Prehashed,
        encode_dss_signature,
    )

    numbers.public_key().verify(
        encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        ),
        digest,
        ec.ECDSA(Prehashed(hashes.SHA256())),
    )
    want_secrets: dict[str, list[str]] = expected["secrets"]  # type: ignore[assignment]
    assert secrets.get_secret("legacy-secret").value == "second value"
    assert secrets.get_secret("legacy-secret").properties.content_type == "text/plain"
    assert secrets.get_secret("legacy-secret", want_secrets["legacy-secret"][0]).value == (
        "first value"
    )
    assert secrets.get_secret("legacy-mixed").value == "x" * 20000
    names = {p.name for p in secrets.list_properties_of_secrets()}
    assert names - {"after-migration"} == {"Legacy-Mixed", "legacy-secret"}
    assert [s.name for s in secrets.list_deleted_secrets()] == ["legacy-deleted-secret"]


def test_a_first_design_pool_is_migrated_once_and_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    expected = _unpack(state)
    assert not (state / "records").exists()
    dev = start_dev(state, tmp_path / "dev.log", keep=True)
    try:
        _check_everything(dev, expected)
        token_keys, token_records = asyncio.run(_token_state(dev))
        assert token_keys == [] and token_records == {}
        assert "moved 4 keys and 3 secrets" in dev.log_text()
        with sqlite3.connect(state / "records" / "records.db") as db:
            rows = db.execute("SELECT kind, name, head FROM objects").fetchall()
            versions = db.execute("SELECT body FROM versions").fetchall()
        assert {(k, n) for k, n, _ in rows} >= {("key", "legacy-ec"), ("secret", "legacy-mixed")}
        # Sealed: no value, tag or public part reads in the clear on disk.
        for (body,) in versions:
            assert b"second value" not in body and b"team" not in body
        # A write after migration, to see it survive the next start.
        _, secrets, _ = _clients(dev)
        secrets.set_secret("after-migration", "new")
    finally:
        stop_dev(dev)
    again = start_dev(state, tmp_path / "dev.log", keep=True)
    try:
        assert again.log_text().count("moved 4 keys and 3 secrets") == 1  # once only
        _check_everything(again, expected)
        _, secrets, _ = _clients(again)
        assert secrets.get_secret("after-migration").value == "new"
    finally:
        stop_dev(again)


@pytest.mark.parametrize("stage", ["before-cleanup"])
def test_a_migration_cut_short_after_its_write_finishes_the_cleanup(
    tmp_path: Path, stage: str
) -> None:
    """The storage write carries a note that the token still needs cleaning; a start that
    finds the note cleans the token and serves the stored objects, never the token's."""
    state = tmp_path / "state"
    expected = _unpack(state)
    dev = start_dev(state, tmp_path / "dev.log", keep=True)
    stop_dev(dev)
    with sqlite3.connect(state / "records" / "records.db") as db:
        db.execute("INSERT INTO meta VALUES ('dev', 'token-cleanup', X'31')")
    again = start_dev(state, tmp_path / "dev.log", keep=True)
    try:
        _check_everything(again, expected)
        with sqlite3.connect(state / "records" / "records.db") as db:
            assert db.execute(
                "SELECT count(*) FROM meta WHERE name='token-cleanup'"
            ).fetchone() == (0,)
    finally:
        stop_dev(again)
