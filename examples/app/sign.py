"""Sign a digest with an HSM key through the Azure Key Vault SDK for Python, then verify it.

The application of examples/06-app-signs.yaml, baked into the example-app image with the
SDK (e2e/build-example-image, or examples/app/Dockerfile). It authenticates with its own
projected ServiceAccount token, whose audience is the vault's URI, and trusts the
operator's CA. The private key never leaves the HSM; this process only sees signatures.

Settings, from the environment:
  VAULT_URL    the Vault's status.vaultUri      (default https://demo-vault.demo.svc)
  KEY_NAME     the key's name in the vault      (default signing)
  TOKEN_FILE   the projected token              (default /var/run/secrets/strongroom.io/token)
  CA_FILE      the operator CA's certificate    (default /etc/strongroom/ca.crt)
  SIGN_EVERY   seconds between rounds; unset or 0 signs once and exits 0 on success
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

VAULT_URL = os.environ.get("VAULT_URL", "https://demo-vault.demo.svc")
KEY_NAME = os.environ.get("KEY_NAME", "signing")
TOKEN = Path(os.environ.get("TOKEN_FILE", "/var/run/secrets/strongroom.io/token"))
CA = os.environ.get("CA_FILE", "/etc/strongroom/ca.crt")
EVERY = float(os.environ.get("SIGN_EVERY") or 0)


class FileTokenCredential:
    """The SDK asks for a token; this reads the projected one, which the kubelet keeps
    fresh (the same as strongroom.devclient.FileTokenCredential)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN.read_text().strip(), int(time.time()) + 300)


def sign_once(round_number: int) -> bool:
    credential = FileTokenCredential()
    keys = KeyClient(VAULT_URL, credential, connection_verify=CA)
    key = keys.get_key(KEY_NAME)
    crypto = CryptographyClient(key, credential, connection_verify=CA)
    digest = hashlib.sha256(f"round {round_number} from {VAULT_URL}".encode()).digest()
    signed = crypto.sign(SignatureAlgorithm.es256, digest)
    verified = crypto.verify(SignatureAlgorithm.es256, digest, signed.signature)
    # The current version's id; its private part stays in the HSM.
    print(
        f"round {round_number}: key {key.id} signature {signed.signature.hex()[:32]}... "
        f"verified: {verified.is_valid}",
        flush=True,
    )
    return bool(verified.is_valid)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop at once on delete
    round_number = 0
    while True:
        round_number += 1
        try:
            ok = sign_once(round_number)
        except Exception as error:  # reported; a looping app goes on
            # The error's type and the SDK's message: never a token or a key.
            print(f"round {round_number}: failed: {type(error).__name__}: {error}", flush=True)
            ok = False
        if not EVERY:
            return 0 if ok else 1
        time.sleep(EVERY)


if __name__ == "__main__":
    sys.exit(main())
