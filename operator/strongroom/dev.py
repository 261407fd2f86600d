"""`strongroom dev`: the HSM sidecar and a vault server on localhost, no Kubernetes needed.

Everything lives in a throwaway state directory: a fresh SoftHSM2 token
store, a dev CA, a local token issuer and one vault named `dev`.
"""

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import aio
from .tls import issue_server_cert, make_ca, write_pair
from .vault.auth import DevIssuer
from .vault.config import ServerConfig
from .vault.server import Listen, serve

log = logging.getLogger(__name__)

AUDIENCE = "strongroom.io/vault"
ADMIN = "dev:admin"
READER = "dev:reader"


def prepare(state: Path, port: int, keep: bool = False) -> dict[str, str]:
    """Lay out the state directory; return what clients need (the content of dev.json)."""
    info = {
        "vaultUrl": f"https://localhost:{port}",
        "caFile": str(state / "ca.crt"),
        "tokenFile": str(state / "token"),
        "issuerKey": str(state / "issuer.key"),
        "jwksFile": str(state / "jwks.json"),
        "audience": AUDIENCE,
        "subject": ADMIN,
    }
    if keep and (state / "pool-secret").exists():
        (state / "dev.json").unlink(missing_ok=True)
        return info
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True, mode=0o700)
    (state / "pool-secret").touch(mode=0o600)
    (state / "pool-secret").write_text(secrets.token_hex(32))
    ca = make_ca("strongroom dev CA")
    (state / "ca.crt").write_bytes(ca.cert_pem)
    write_pair(
        issue_server_cert(ca, ["localhost", "127.0.0.1", "::1"]),
        state / "tls.crt",
        state / "tls.key",
    )
    issuer = DevIssuer.load_or_create(state / "issuer.key")
    (state / "jwks.json").write_text(json.dumps(issuer.jwks()))
    token_file = state / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(issuer.issue(ADMIN, AUDIENCE))
    config = {
        "audiences": [AUDIENCE],
        "vaults": [
            {
                "name": "dev",
                "hosts": ["localhost", "127.0.0.1", "::1"],
                "retentionDays": 7,
                "access": [
                    {"subject": ADMIN, "keys": ["all"], "secrets": ["all"]},
                    {
                        "subject": READER,
                        "keys": ["get", "list", "verify"],
                        "secrets": ["get", "list"],
                    },
                ],
            }
        ],
    }
    (state / "config.json").write_text(json.dumps(config, indent=2))
    return info


def start_sidecar(state: Path) -> subprocess.Popen[bytes]:
    level = logging.getLevelName(logging.getLogger().level)
    command = [
        sys.executable,
        "-m",
        "strongroom.cli",
        "--log-level",
        level,
        "hsm",
        "--state-dir",
        str(state / "hsm"),
        "--socket",
        str(state / "hsm.sock"),
        "--pool-secret-file",
        str(state / "pool-secret"),
        "--vault",
        "dev",
    ]
    return subprocess.Popen(command)


def usage(info: dict[str, str]) -> str:
    return f"""strongroom dev is serving vault "dev" at {info["vaultUrl"]}

  export AZURE_KEYVAULT_URL={info["vaultUrl"]}
  export REQUESTS_CA_BUNDLE={info["caFile"]}      # trust the dev CA
  token file (a bearer token for subject {info["subject"]}): {info["tokenFile"]}

  from azure.keyvault.secrets import SecretClient
  from strongroom.devclient import FileTokenCredential
  client = SecretClient("{info["vaultUrl"]}", FileTokenCredential("{info["tokenFile"]}"),
                        verify_challenge_resource=False)   # localhost has no parent domain
  client.set_secret("hello", "world")

Stop with Ctrl-C. The next start begins afresh unless it is given --keep-state."""


def run(state: Path, port: int, keep: bool = False) -> None:
    info = prepare(state, port, keep)
    sidecar = start_sidecar(state)
    try:
        aio.run(_serve(state, port, info))
    finally:
        sidecar.send_signal(signal.SIGTERM)
        try:
            sidecar.wait(10)
        except subprocess.TimeoutExpired:
            sidecar.kill()


async def _serve(state: Path, port: int, info: dict[str, str]) -> None:
    config = ServerConfig.load(state / "config.json")
    issuer = DevIssuer.load_or_create(state / "issuer.key")
    ready = asyncio.Event()
    listen = Listen("127.0.0.1", port, state / "tls.crt", state / "tls.key")
    server = asyncio.create_task(
        serve(
            config,
            listen,
            state / "hsm.sock",
            issuer.authenticator(config.audiences),
            ready=ready,
            admin_subjects=(ADMIN,),  # the dev admin may also use the management API
        )
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        waiter.cancel()
        await server  # raises the start-up error
        return
    dev_json = state / "dev.json"
    # Written whole, then renamed: whoever waits for dev.json never reads half of it.
    partial = state / "dev.json.partial"
    partial.write_text(json.dumps(info, indent=2))
    partial.rename(dev_json)
    print(usage(info), flush=True)
    os.environ.setdefault("STRONGROOM_DEV_JSON", str(dev_json))
    await server
