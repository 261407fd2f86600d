"""csi.strongroom.io on a real kubelet: pods mount vault objects with their own identity.

The vault server, its HSM sidecar and the CSI node plugin run here as host
processes (the chart runs them in pods; that is the e2e tier). The kubelet
finds the plugin through its plugin registration directory, and the vault
checks every pod token with a real TokenReview.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from strongroom.tls import issue_server_cert, make_ca, write_pair

from .conftest import _kubectl_for_cluster
from .kube import Kube

ROOT = Path(__file__).resolve().parents[2]
KUBELET_PLUGINS = Path("/var/lib/kubelet/plugins/csi.strongroom.io")
REGISTRY = Path("/var/lib/kubelet/plugins_registry")
READER, STRANGER, ADMIN = "reader", "stranger", "vault-admin"


@dataclass
class Stack:
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
            pytest.fail(f"{path} did not appear:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    kubectl, unusable = _kubectl_for_cluster()
    if unusable:
        pytest.fail(unusable, pytrace=False)
    namespace = f"csi-{uuid.uuid4().hex[:6]}"
    kube = Kube(kubectl, namespace)
    kube.run("create", "namespace", namespace, namespaced=False)
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
        import base64

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
    (work / "pool-secret").write_text(secrets.token_hex(32))
    sa = f"system:serviceaccount:{namespace}"
    (work / "config.json").write_text(
        json.dumps(
            {
                "audiences": ["strongroom.io/vault"],
                "vaults": [
                    {
                        "name": "mounts",
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
    processes = [
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
    ]
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
                "--auth",
                "tokenreview",
                "--kube-api",
                api_server,
                "--kube-ca",
                str(kube_ca),
                "--kube-token",
                str(work / "server-token"),
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
                "5",
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
            pytest.fail((logs / "vault.log").read_text()[-3000:])
        time.sleep(0.5)
    yield stack
    for process in reversed(processes):
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    kube.run("delete", "namespace", namespace, "--wait=false", check=False, namespaced=False)
    kube.run(
        "delete", "clusterrolebinding", f"{namespace}-vault-server", check=False, namespaced=False
    )


def mounting_pod(stack: Stack, name: str, account: str) -> dict[str, Any]:
    objects = [
        {"kind": "secret", "name": "db-password", "path": "db/password"},
        {"kind": "key", "name": "signing", "path": "signing.pem"},
    ]
    script = (
        'while true; do echo "password=$(cat /mnt/vault/db/password)"; '
        "head -1 /mnt/vault/signing.pem; sleep 1; done"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": account,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
            "containers": [
                {
                    "name": "app",
                    "image": stack.kube.image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                    "volumeMounts": [
                        {"name": "vault", "mountPath": "/mnt/vault", "readOnly": True}
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "vault",
                    "csi": {
                        "driver": "csi.strongroom.io",
                        "readOnly": True,
                        "volumeAttributes": {
                            "vaultUrl": stack.vault_url,
                            "objects": json.dumps(objects),
                        },
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> None:
    assert stack.admin("PUT", "/secrets/db-password", {"value": "first-value"}).ok
    assert stack.admin("POST", "/keys/signing/create", {"kty": "EC-HSM", "crv": "P-256"}).ok


def test_a_pod_reads_its_secret_and_public_key_and_sees_rotation(
    stack: Stack, seeded: None
) -> None:
    stack.kube.apply(mounting_pod(stack, "reader", READER))
    stack.kube.wait_until_ready("reader", timeout=180)
    deadline = time.monotonic() + 60
    while "password=first-value" not in (log := stack.kube.logs("reader")):
        assert time.monotonic() < deadline, log
        time.sleep(1)
    assert "-----BEGIN PUBLIC KEY-----" in log
    assert stack.admin("PUT", "/secrets/db-password", {"value": "rotated-value"}).ok
    deadline = time.monotonic() + 240  # the kubelet republishes on its pod sync
    while "password=rotated-value" not in stack.kube.logs("reader"):
        assert time.monotonic() < deadline, "the rotated value never reached the pod"
        time.sleep(2)


def test_a_pod_without_access_gets_nothing_and_an_event_says_why(
    stack: Stack, seeded: None
) -> None:
    stack.kube.apply(mounting_pod(stack, "stranger", STRANGER))
    deadline = time.monotonic() + 120
    message = ""
    while time.monotonic() < deadline:
        events = json.loads(
            stack.kube.run(
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=stranger",
                "--output",
                "json",
            ).stdout
        )["items"]
        mounts = [e for e in events if e.get("reason") == "FailedMount"]
        if mounts:
            message = mounts[-1]["message"]
            break
        time.sleep(2)
    assert "PermissionDenied" in message or "permission" in message.lower(), message
    pod = stack.kube.get("pod", "stranger")
    waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting", {})
    assert waiting.get("reason") == "ContainerCreating"


def test_no_token_or_value_in_the_plugin_log(stack: Stack, seeded: None) -> None:
    log = (stack.logs / "csi.log").read_text()
    assert "NodePublishVolume" in log
    assert "first-value" not in log and "rotated-value" not in log
    assert "eyJ" not in log  # no JWT
