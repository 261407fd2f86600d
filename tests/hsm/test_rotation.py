"""A due rotation happens: the vault's maintenance task makes the new version on the real
token, with the policy's expiry and the owner's tag, and only when it is due."""

import asyncio
import time
from typing import Any

import pytest

from strongroom.hsm.engine import Engine
from strongroom.hsm.sidecar import Sidecar
from strongroom.vault.config import VaultConfig
from strongroom.vault.keys import KeyStore
from strongroom.vault.objects import OWNER_TAG

DAY = 86400
POLICY = {
    "lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
    "attributes": {"expiryTime": "P1Y"},
}


class InProcessHsm:
    """The sidecar's dispatch, called in this process: KeyStore's view of the HSM."""

    def __init__(self, engine: Engine) -> None:
        self.sidecar = Sidecar(engine)

    async def call(self, op: str, **args: Any) -> Any:
        return self.sidecar.call(op, args)


def test_a_due_rotation_makes_one_new_version_for_the_same_owner(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(VaultConfig("t", ("t.example",)), InProcessHsm(engine))  # type: ignore[arg-type]
    start = time.time()

    def travel(days: int) -> None:
        monkeypatch.setattr(time, "time", lambda: start + days * DAY)

    async def scenario() -> None:
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
        assert set(engine.key_ids("t")) >= {v.version for v in entry.versions}

    asyncio.run(scenario())
