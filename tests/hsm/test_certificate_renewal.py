"""Lifetime actions of certificates in the vault's maintenance: AutoRenew makes a new version
of certificate, key and secret together; EmailContacts becomes one audit line."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from strongroom.hsm.engine import Engine
from strongroom.storage import SqliteStorage
from strongroom.vault import audit
from strongroom.vault.app import Vault
from strongroom.vault.config import VaultConfig

from .inprocess import InProcessHsm

DAY = 86400


def _policy(action: str, trigger: dict[str, int]) -> dict[str, object]:
    return {
        "issuer": {"name": "Self"},
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": True},
        "x509_props": {"subject": "CN=renew.test", "validity_months": 1},
        "lifetime_actions": [{"trigger": trigger, "action": {"action_type": action}}],
    }


def test_autorenew_and_email_contacts_run_in_maintenance(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = SqliteStorage(tmp_path / "records.db")
    vault = Vault.make(VaultConfig("t", ("t.example",)), InProcessHsm(engine), storage)  # type: ignore[arg-type]
    start = time.time()
    read, write = os.pipe()
    audit.send_to(write)

    async def scenario() -> None:
        await storage.open()
        store = vault.certificates
        await store.create("renewed", {"policy": _policy("AutoRenew", {"lifetime_percentage": 50})})
        await store.create(
            "noticed", {"policy": _policy("EmailContacts", {"days_before_expiry": 3})}
        )
        await vault.maintain()
        assert len((await store.live("renewed")).versions) == 1  # not due yet

        monkeypatch.setattr(time, "time", lambda: start + 29 * DAY)
        await vault.maintain()
        renewed = await store.live("renewed")
        assert len(renewed.versions) == 2
        key = await vault.keys.live("renewed")
        secret = await vault.secrets.live("renewed")
        assert [v.version for v in key.versions] == [v.version for v in renewed.versions]
        assert [v.version for v in secret.versions] == [v.version for v in renewed.versions]
        assert key.versions[0].public != key.versions[1].public  # a new key, not reused
        noticed = await store.live("noticed")
        assert len(noticed.versions) == 1 and noticed.current.notified
        await vault.maintain()  # the notice is given once per version
        assert len((await store.live("renewed")).versions) == 2

    try:
        asyncio.run(scenario())
    finally:
        audit.send_to(1)
        os.close(write)
    lines = os.read(read, 1 << 20).decode()
    os.close(read)
    assert lines.count('"operation":"CertificateNearExpiry"') == 1
    assert lines.count('"operation":"CertificateRenew"') == 1
