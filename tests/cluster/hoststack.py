"""The CSI stack as host processes on the local cluster's node, for tests and benchmarks.

The vault server (TokenReview against the real API server), its HSM sidecar and
`strongroom csi-node` (registered with the real kubelet) run here; the chart
runs them in pods, which is the e2e tier.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from strongroom.tls import issue_server_cert, make_ca, write_pair

from .kube import Kube

ROOT = Path(__file__).resolve().parents[2]
KUBELET_PLUGINS = Path("/var/lib/kubelet/plugins/csi.strongroom.io")
REGISTRY = Path("/var/lib/kubelet/plugins_registry")
READER, STRANGER, ADMIN = "reader", "stranger", "vault-admin"


VAULT = "mounts"


@dataclass
class Stack:
    """`vault_url` is where the tests reach the vault server; pods name the vault `mounts`
    of their namespace (https://mounts-vault.<namespace>.svc), which the plugin is told
    to reach at `vault_url` (--vault-address)."""

    kube: Kube
    vault_url: str
    ca: Path
    admin_token: str
    logs: Path

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.vault_url}{path}?api-version=7.6",
            json=body,
            verify=str(self.ca),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )


def _kubeconfig() -> dict[str, Any]:
    return dict(yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text()))


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@contextmanager
def host_stack(kubectl: str, share_seconds: float = 5.0) -> Iterator[Stack]:
    """Vault server (TokenReview), HSM sidecar and csi-node as host processes, a namespace
    with the reader, stranger and admin ServiceAccounts; all removed on exit."""
    namespace = f"csi-{uuid.uuid4().hex[:6]}"
    kube = Kube(kubectl, namespace)
    kube.run("create", "namespace", namespace, namespaced=False)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        kube.run(
            "apply", "--filename", str(ROOT / "deploy" / "csi" / "csidriver.yaml"), namespaced=False
        )
        for account in (READER, STRANGER, ADMIN):
            kube.run("create", "serviceaccount", account)
        # The vault server's own identity: allowed to ask for TokenReviews, nothing else.
        kube.run("create", "serviceaccount", "vault-server")
        kube.run(
            "create",
            "clusterrolebinding",
            f"{namespace}-vault-server",
            "--clusterrole=system:auth-delegator",
            f"--serviceaccount={namespace}:vault-server",
            namespaced=False,
        )
        work = Path(tempfile.mkdtemp(prefix="strongroom-csi-"))
        logs = work / "logs"
        logs.mkdir()
        server_token = kube.run("create", "token", "vault-server", "--duration=2h").stdout.strip()
        (work / "server-token").write_text(server_token)
        config = _kubeconfig()
        cluster = config["clusters"][0]["cluster"]
        api_server = cluster["server"]
        kube_ca = work / "kube-ca.crt"
        if "certificate-authority-data" in cluster:
            kube_ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        else:
            kube_ca.write_bytes(Path(cluster["certificate-authority"]).read_bytes())
        (work / "jwks.json").write_text(
            kube.run("get", "--raw", "/openid/v1/jwks", namespaced=False).stdout
        )
        ca = make_ca("strongroom cluster-tier CA")
        (work / "ca.crt").write_bytes(ca.cert_pem)
        write_pair(
            issue_server_cert(ca, ["localhost", "127.0.0.1"]), work / "tls.crt", work / "tls.key"
        )
        # The pool trusts client certificates of this CA only (none is used here: the tier's
        # calls go through the data plane with ServiceAccount tokens).
        (work / "client-ca.crt").write_bytes(make_ca("strongroom cluster-tier client CA").cert_pem)
        (work / "pool-secret").write_text(secrets.token_hex(32))
        sa = f"system:serviceaccount:{namespace}"
        (work / "config.json").write_text(
            json.dumps(
                {
                    "audiences": ["strongroom.io/vault"],
                    "namespace": namespace,
                    "vaults": [
                        {
                            "name": VAULT,
                            "hosts": ["localhost", "127.0.0.1"],
                            "retentionDays": 7,
                            "access": [
                                {"subject": f"{sa}:{ADMIN}", "keys": ["all"], "secrets": ["all"]},
                                {"subject": f"{sa}:{READER}", "keys": ["get"], "secrets": ["get"]},
                            ],
                        }
                    ],
                }
            )
        )
        port = 18000 + secrets.randbelow(1000)
        cli = [sys.executable, "-m", "strongroom.cli"]
        processes.append(
            _start(
                cli
                + [
                    "hsm",
                    "--state-dir",
                    str(work / "hsm"),
                    "--socket",
                    str(work / "hsm.sock"),
                    "--pool-secret-file",
                    str(work / "pool-secret"),
                    "--vault",
                    "mounts",
                ],
                logs / "hsm.log",
            )
        )
        _wait_for(work / "hsm.sock", processes[0], logs / "hsm.log")
        processes.append(
            _start(
                cli
                + [
                    "vault-server",
                    "--config",
                    str(work / "config.json"),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--tls-cert",
                    str(work / "tls.crt"),
                    "--tls-key",
                    str(work / "tls.key"),
                    "--hsm-socket",
                    str(work / "hsm.sock"),
                    "--data-dir",
                    str(work / "records"),
                    "--auth",
                    "tokenreview",
                    "--kube-api",
                    api_server,
                    "--kube-ca",
                    str(kube_ca),
                    "--kube-token",
                    str(work / "server-token"),
                    "--client-ca",
                    str(work / "client-ca.crt"),
                ],
                logs / "vault.log",
            )
        )
        KUBELET_PLUGINS.mkdir(parents=True, exist_ok=True)
        registration = REGISTRY / "csi.strongroom.io-reg.sock"
        processes.append(
            _start(
                cli
                + [
                    "--log-level",
                    "DEBUG",
                    "csi-node",
                    "--endpoint",
                    f"unix://{KUBELET_PLUGINS}/csi.sock",
                    "--node-id",
                    os.uname().nodename,
                    "--vault-ca",
                    str(work / "ca.crt"),
                    "--jwks-file",
                    str(work / "jwks.json"),
                    "--share-seconds",
                    str(share_seconds),
                    "--staging-dir",
                    str(KUBELET_PLUGINS / "volumes"),
                    "--vault-address",
                    f"{VAULT}-vault.{namespace}.svc=https://localhost:{port}",
                    "--registration-socket",
                    str(registration),
                    "--kubelet-endpoint",
                    f"{KUBELET_PLUGINS}/csi.sock",
                ],
                logs / "csi.log",
            )
        )
        _wait_for(registration, processes[-1], logs / "csi.log")
        vault_url = f"https://localhost:{port}"
        admin_token = kube.run(
            "create", "token", ADMIN, "--audience", "strongroom.io/vault"
        ).stdout.strip()
        stack = Stack(kube, vault_url, work / "ca.crt", admin_token, logs)
        deadline = time.monotonic() + 60
        while True:
            try:
                if stack.admin("GET", "/secrets").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((logs / "vault.log").read_text()[-3000:])
            time.sleep(0.5)
        yield stack
    finally:
        _stop(processes, kube, namespace)


def _stop(processes: list[subprocess.Popen[bytes]], kube: Kube, namespace: str) -> None:
    """Stop the processes and leave the node as the chart expects to find it: no plugin of
    csi.strongroom.io registered, no socket of it left, and no CSIDriver that Helm would
    refuse to adopt."""
    for process in reversed(processes):
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    # csi-node removes its registration socket when stopped; a killed one leaves it.
    (REGISTRY / "csi.strongroom.io-reg.sock").unlink(missing_ok=True)
    (KUBELET_PLUGINS / "csi.sock").unlink(missing_ok=True)
    kube.run("delete", "namespace", namespace, "--wait=false", check=False, namespaced=False)
    kube.run(
        "delete", "clusterrolebinding", f"{namespace}-vault-server", check=False, namespaced=False
    )
    kube.run("delete", "csidriver", "csi.strongroom.io", "--ignore-not-found", namespaced=False)
    wait_until_unregistered(kube)


def wait_until_unregistered(kube: Kube, timeout: float = 60) -> None:
    """Until no node's CSINode lists csi.strongroom.io: the kubelet saw the socket go."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = json.loads(kube.run("get", "csinodes", "--output", "json", namespaced=False).stdout)
        drivers = [
            driver["name"]
            for node in nodes["items"]
            for driver in node["spec"].get("drivers") or []
        ]
        if "csi.strongroom.io" not in drivers:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the kubelet still lists csi.strongroom.io after its socket went")
        time.sleep(1)
