"""The vault survives being killed: objects persist in the record storage, and a key made
by a request that died before its record was written is gone with the HSM's session."""

import asyncio
import hashlib
import os
import signal
import uuid

import pytest
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient

from strongroom.devclient import FileTokenCredential
from strongroom.hsm.client import HsmClient
from strongroom.hsm.errors import KeyNotLoaded

from .conftest import Clients, DevServer, start_dev, stop_dev


def sdk(dev: DevServer) -> tuple[KeyClient, SecretClient, FileTokenCredential]:
    sdk = Clients(dev)
    return sdk.keys, sdk.secrets, sdk.credential


async def hsm_call(dev: DevServer, op: str, **args: object) -> object:
    client = HsmClient(dev.state / "hsm.sock")
    try:
        return await getattr(client, op)(vault="dev", **args)
    finally:
        await client.close()


def test_a_killed_vault_restarts_with_its_objects_and_no_orphan(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("restart")
    first = start_dev(base / "state", base / "dev.log")
    keys, secrets, _ = sdk(first)
    key = keys.create_ec_key("survivor", curve="P-256")
    secrets.set_secret("survivor", "still here")
    # A key made in the HSM by a request that died before its record was written.
    orphan = uuid.uuid4().hex
    asyncio.run(hsm_call(first, "generate_ec", key_id=orphan, label="orphan", curve="P-256"))
    digest = hashlib.sha256(b"before a crash").digest()
    assert asyncio.run(hsm_call(first, "sign", key_id=orphan, alg="ES256", digest=digest))
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()

    second = start_dev(base / "state", base / "dev.log", keep=True)
    try:
        keys, secrets, credential = sdk(second)
        again = keys.get_key("survivor")
        assert again.key.x == key.key.x
        assert secrets.get_secret("survivor").value == "still here"
        crypto = CryptographyClient(
            again, credential, verify_challenge_resource=False, connection_verify=second.ca
        )
        digest = hashlib.sha256(b"after a crash").digest()
        signature = crypto.sign(SignatureAlgorithm.es256, digest).signature
        assert crypto.verify(SignatureAlgorithm.es256, digest, signature).is_valid
        with pytest.raises(KeyNotLoaded):
            asyncio.run(hsm_call(second, "sign", key_id=orphan, alg="ES256", digest=digest))
        assert asyncio.run(hsm_call(second, "token_key_ids")) == []
    finally:
        stop_dev(second)
