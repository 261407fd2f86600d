"""Fixtures of the hsm tier: a real SoftHSM2 token, and `strongroom dev` serving it.

Without SoftHSM2 these fixtures fail the tests; they never skip them.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strongroom.hsm.engine import Engine
from strongroom.hsm.sidecar import SOFTHSM2_MODULE, write_softhsm_config
from strongroom.tls import Issued
from strongroom.vault.auth import DevIssuer


def _require_softhsm() -> None:
    if not Path(SOFTHSM2_MODULE).exists() or shutil.which("softhsm2-util") is None:
        pytest.fail(f"the hsm tier needs SoftHSM2 ({SOFTHSM2_MODULE}); run scripts/setup")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on libsofthsm2 in this process, with vault `t` created."""
    _require_softhsm()
    state = tmp_path_factory.mktemp("engine")
    os.environ["SOFTHSM2_CONF"] = str(write_softhsm_config(state))
    hsm = Engine(SOFTHSM2_MODULE, b"engine-tier-pool-secret-0123456789")
    hsm.ensure_vault("t")
    yield hsm
    hsm.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DevServer:
    state: Path
    url: str
    ca: str
    token_file: str
    log: Path
    process: subprocess.Popen[bytes]
    info: dict[str, Any]

    @property
    def token(self) -> str:
        return Path(self.token_file).read_text().strip()

    def admin_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the dev CA and presents the operator's client
        certificate: what the management API and the pool's administrator need."""
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.info["clientCertificate"], self.info["clientKey"])
        return context

    def client_ca(self) -> Issued:
        """The client CA the dev server trusts for the operator, as the operator holds it."""
        return Issued(
            Path(self.info["clientCaFile"]).read_bytes(),
            Path(self.info["clientCaKey"]).read_bytes(),
        )

    def issue(
        self,
        subject: str,
        audience: str = "strongroom.io/vault",
        ttl: int = 3600,
        now: float | None = None,
    ) -> str:
        return DevIssuer.load_or_create(self.state / "issuer.key").issue(
            subject, audience, ttl, now
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


def start_dev(
    state: Path,
    log: Path,
    log_level: str = "INFO",
    keep: bool = False,
    namespace: str | None = None,
    await_activation: bool = False,
    backup_dir: Path | None = None,
    extra: tuple[str, ...] = (),
) -> DevServer:
    port = free_port()
    (state / "dev.json").unlink(missing_ok=True)
    handle = log.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "--log-level",
            log_level,
            "dev",
            "--state-dir",
            str(state),
            "--port",
            str(port),
        ]
        + (["--keep-state"] if keep else [])
        + (["--namespace", namespace] if namespace else [])
        + (["--await-activation"] if await_activation else [])
        + (["--backup-dir", str(backup_dir)] if backup_dir is not None else [])
        + list(extra),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    dev_json = state / "dev.json"
    while not dev_json.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"strongroom dev did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    info: dict[str, Any] = json.loads(dev_json.read_text())
    return DevServer(state, info["vaultUrl"], info["caFile"], info["tokenFile"], log, process, info)


def stop_dev(server: DevServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    _require_softhsm()
    base = tmp_path_factory.mktemp("dev")
    server = start_dev(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


@pytest.fixture(scope="session")
def clients(dev: DevServer) -> "Clients":
    return Clients(dev)


class Clients:
    """Official Azure SDK clients pointed at the dev server."""

    def __init__(self, dev: DevServer) -> None:
        from azure.keyvault.keys import KeyClient
        from azure.keyvault.secrets import SecretClient

        from strongroom.devclient import FileTokenCredential

        self.dev = dev
        self.credential = FileTokenCredential(dev.token_file)
        options = {"verify_challenge_resource": False, "connection_verify": dev.ca}
        self.keys = KeyClient(dev.url, self.credential, **options)
        self.secrets = SecretClient(dev.url, self.credential, **options)
        self.options = options

    def crypto(self, key: Any) -> Any:
        from azure.keyvault.keys.crypto import CryptographyClient

        return CryptographyClient(key, self.credential, **self.options)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A `strongroom dev` with two vaults and narrow subjects (tests/hsm/tenants.py), one per
    test module: the attack tests' target."""
    from .tenants import start_tenants  # tenants.py builds on this module

    base = tmp_path_factory.mktemp("tenants")
    server = start_tenants(base / "state", base / "dev.log")
    yield server
    stop_dev(server)
