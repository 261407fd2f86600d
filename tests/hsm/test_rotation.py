"""A due rotation happens: the vault's maintenance task makes the new version on the real
token, with the policy's expiry and the owner's tag, and only when it is due."""

import asyncio
import time
from pathlib import Path

import pytest

from strongroom.hsm.engine import Engine
from strongroom.storage import SqliteStorage
from strongroom.vault.config import VaultConfig
from strongroom.vault.keys import KeyStore
from strongroom.vault.objects import OWNER_TAG

from .inprocess import InProcessHsm

DAY = 86400
POLICY = {
    "lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
    "attributes": {"expiryTime": "P1Y"},
}


def test_a_due_rotation_makes_one_new_version_for_the_same_owner(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = SqliteStorage(tmp_path / "records.db")
    store = KeyStore(VaultConfig("t", ("t.example",)), InProcessHsm(engine), storage)  # type: ignore[arg-type]
    start = time.time()

    def travel(days: int) -> None:
        monkeypatch.setattr(time, "time", lambda: start + days * DAY)

    async def scenario() -> None:
        await storage.open()
        entry, created = await store.create_owned("due", "uid-1", {"kty": "EC-HSM"})
        assert created
        await store.set_rotation_policy("https://t.example", "due", POLICY)
        await store.rotate_due()
        assert len(entry.versions) == 1  # not due yet

        travel(31)
        await store.rotate_due()
        assert len(entry.versions) == 2
        new = entry.current
        assert new.tags[OWNER_TAG] == "uid-1"
        assert new.attributes.exp == int(start) + (31 + 365) * DAY
        await store.rotate_due()
        assert len(entry.versions) == 2  # the new version is not due

        _, created = await store.create_owned("due", "uid-1", {"kty": "EC-HSM"})
        assert not created  # still the owner's key after rotation
        travel(62)
        await store.rotate_due()
        assert len(entry.versions) == 3
        entry = await store.find("due")
        assert entry is not None and len(entry.versions) == 3
        # From the storage, not the cache: what a restart would find.
        store._cache.clear()
        stored = await store.find("due")
        assert stored is not None
        assert [v.version for v in stored.versions] == [v.version for v in entry.versions]
        await storage.close()

    asyncio.run(scenario())
