"""`strongroom dev`: the HSM sidecar and a vault server on localhost, no Kubernetes needed.

Everything lives in a throwaway state directory: a fresh SoftHSM2 token
store, a dev CA, a client CA with the operator's client certificate (for the
management API), a local token issuer and one vault named `dev`. The directory
is marked as made by `strongroom dev`; a directory without the mark is never deleted.
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
from .tls import OPERATOR_CLIENT_NAME, issue_client_cert, issue_server_cert, make_ca, write_pair
from .vault.auth import DevIssuer
from .vault.config import ServerConfig
from .vault.server import Listen, serve

log = logging.getLogger(__name__)

AUDIENCE = "strongroom.io/vault"
ADMIN = "dev:admin"
READER = "dev:reader"
MARKER = ".strongroom-dev"  # in every state directory strongroom dev made, and only there
CLIENT_CERT_DAYS = 365


class StateDirRefused(Exception):
    """The state directory is not one strongroom dev made: nothing in it was touched."""


def prepare(
    state: Path, port: int, keep: bool = False, namespace: str | None = None
) -> dict[str, str]:
    """Lay out the state directory; return what clients need (the content of dev.json)."""
    info = {
        "vaultUrl": f"https://localhost:{port}",
        # The pool's own endpoint (the security domain's): the same server, every host.
        "hsmUrl": f"https://localhost:{port}",
        "caFile": str(state / "ca.crt"),
        "tokenFile": str(state / "token"),
        "issuerKey": str(state / "issuer.key"),
        "jwksFile": str(state / "jwks.json"),
        "audience": AUDIENCE,
        "subject": ADMIN,
        # The operator's side of the management API: its client certificate and its CA.
        "clientCertificate": str(state / "client.crt"),
        "clientKey": str(state / "client.key"),
        "clientCaFile": str(state / "client-ca.crt"),
        "clientCaKey": str(state / "client-ca.key"),
    }
    if keep and (state / "pool-secret").exists():
        (state / "dev.json").unlink(missing_ok=True)
        _client_identity(state)  # a state directory of an older strongroom dev has none
        _write_config(state, namespace)
        return info
    _fresh_state_dir(state)
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
    _client_identity(state)
    _write_config(state, namespace)
    return info


def _fresh_state_dir(state: Path) -> None:
    """An empty state directory, marked as ours; refuse to empty one we did not make."""
    if state.is_symlink() or (state.exists() and not state.is_dir()):
        raise StateDirRefused(f"{state} is not a directory; nothing was deleted")
    if state.exists() and any(state.iterdir()):
        if not (state / MARKER).is_file():
            raise StateDirRefused(
                f"{state} is not empty and was not made by strongroom dev (it has no "
                f"{MARKER} file); nothing was deleted. Choose another --state-dir, or "
                "remove this one yourself."
            )
        shutil.rmtree(state)
    state.mkdir(parents=True, mode=0o700, exist_ok=True)
    (state / MARKER).write_text("made by strongroom dev; emptied at its next start\n")


def _client_identity(state: Path) -> None:
    """The client CA the dev server trusts, and the operator's client certificate from it."""
    if (state / "client-ca.crt").exists() and (state / "client.crt").exists():
        return
    client_ca = make_ca("strongroom dev client CA")
    write_pair(client_ca, state / "client-ca.crt", state / "client-ca.key")
    write_pair(
        issue_client_cert(client_ca, OPERATOR_CLIENT_NAME, CLIENT_CERT_DAYS),
        state / "client.crt",
        state / "client.key",
    )


def _write_config(state: Path, namespace: str | None) -> None:
    """The dev server's config: the `dev` vault. A kept state directory keeps its vaults and
    access lists (a test or a user may have added some); only the namespace is set anew."""
    existing = state / "config.json"
    if existing.exists():
        try:
            kept = json.loads(existing.read_text())
        except (OSError, ValueError):
            kept = None
        if isinstance(kept, dict) and kept.get("vaults"):
            kept.setdefault("securityOfficers", [ADMIN])
            kept.pop("namespace", None)
            if namespace:
                kept["namespace"] = namespace
            existing.write_text(json.dumps(kept, indent=2))
            return
    config: dict[str, object] = {
        "audiences": [AUDIENCE],
        # The dev token's subject may download and upload the pool's security domain.
        "securityOfficers": [ADMIN],
        "vaults": [
            {
                "name": "dev",
                "hosts": ["localhost", "127.0.0.1", "::1"],
                "retentionDays": 7,
                "access": [
                    {
                        "subject": ADMIN,
                        "keys": ["all"],
                        "secrets": ["all"],
                        "certificates": ["all"],
                    },
                    {
                        "subject": READER,
                        "keys": ["get", "list", "verify"],
                        "secrets": ["get", "list"],
                        "certificates": ["get", "list"],
                    },
                ],
            }
        ],
    }
    if namespace:
        config["namespace"] = namespace
    (state / "config.json").write_text(json.dumps(config, indent=2))


def start_sidecar(state: Path, await_activation: bool = False) -> subprocess.Popen[bytes]:
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
    ] + (["--await-activation"] if await_activation else [])
    return subprocess.Popen(command)


def usage(info: dict[str, str]) -> str:
    return f"""strongroom dev is serving vault "dev" at {info["vaultUrl"]}

  export AZURE_KEYVAULT_URL={info["vaultUrl"]}
  export REQUESTS_CA_BUNDLE={info["caFile"]}      # trust the dev CA
  token file (a bearer token for subject {info["subject"]}): {info["tokenFile"]}
  management API (/_strongroom/v1/): client certificate {info["clientCertificate"]}
                                     and key {info["clientKey"]}

  from azure.keyvault.secrets import SecretClient
  from strongroom.devclient import FileTokenCredential
  client = SecretClient("{info["vaultUrl"]}", FileTokenCredential("{info["tokenFile"]}"),
                        verify_challenge_resource=False)   # localhost has no parent domain
  client.set_secret("hello", "world")

Stop with Ctrl-C. The next start begins afresh unless it is given --keep-state."""


def activation_usage(info: dict[str, str]) -> str:
    return f"""strongroom dev started the pool at {info["hsmUrl"]} NOT ACTIVATED: it serves no key
or secret until its security domain is downloaded. Activate it with the official client
(`pip install azure-keyvault-securitydomain`), three or more RSA certificates of your own
(`openssl req -x509 -newkey rsa:2048 -nodes -keyout sd1.key -out sd1.cer -subj /CN=sd1`)
and a quorum; keep the blob and the private keys apart, they are the only way to recover:

  from azure.keyvault.securitydomain import SecurityDomainClient
  from azure.keyvault.securitydomain.models import CertificateInfo, SecurityDomainJsonWebKey
  from cryptography import x509
  from strongroom.devclient import FileTokenCredential
  from strongroom.securitydomain.document import certificate_jwk

  def jwk(path):
      return SecurityDomainJsonWebKey(certificate_jwk(x509.load_pem_x509_certificate(
          open(path, "rb").read())))

  client = SecurityDomainClient("{info["hsmUrl"]}", FileTokenCredential("{info["tokenFile"]}"),
                                connection_verify="{info["caFile"]}",
                                verify_challenge_resource=False)
  poller = client.begin_download(CertificateInfo(
      certificates=[jwk("sd1.cer"), jwk("sd2.cer"), jwk("sd3.cer")], required=2))
  open("security-domain.json", "w").write(poller.result().value)

(`strongroom security-domain jwk sd1.cer` prints one certificate's JWK.)
"""


def run(
    state: Path,
    port: int,
    keep: bool = False,
    namespace: str | None = None,
    await_activation: bool = False,
    backup_dir: Path | None = None,
    metrics_port: int = 0,
) -> None:
    info = prepare(state, port, keep, namespace)
    if backup_dir is not None:
        backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        info["backupDir"] = str(backup_dir.resolve())
    sidecar = start_sidecar(state, await_activation)
    # For tools and tests that need the sidecar itself (a crash test kills it alone).
    (state / "hsm.pid").write_text(f"{sidecar.pid}\n")
    try:
        aio.run(_serve(state, port, info, await_activation, backup_dir, metrics_port))
    finally:
        sidecar.send_signal(signal.SIGTERM)
        try:
            sidecar.wait(10)
        except subprocess.TimeoutExpired:
            sidecar.kill()


async def _serve(
    state: Path,
    port: int,
    info: dict[str, str],
    await_activation: bool = False,
    backup_dir: Path | None = None,
    metrics_port: int = 0,
) -> None:
    config = ServerConfig.load(state / "config.json")
    issuer = DevIssuer.load_or_create(state / "issuer.key")
    ready = asyncio.Event()
    listen = Listen(
        "127.0.0.1",
        port,
        state / "tls.crt",
        state / "tls.key",
        state / "client-ca.crt",
        metrics_port,
        "127.0.0.1",
    )
    server = asyncio.create_task(
        serve(
            config,
            listen,
            state / "hsm.sock",
            state / "records",
            issuer.authenticator(config.audiences, config.namespace),
            ready=ready,
            backup_dir=backup_dir.resolve() if backup_dir is not None else None,
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
    if await_activation:
        print(activation_usage(info), flush=True)
    os.environ.setdefault("STRONGROOM_DEV_JSON", str(dev_json))
    await server
