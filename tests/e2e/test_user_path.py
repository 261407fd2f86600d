"""The user's path, in order, on the installed chart: `helm test`, then examples/ as the
README has users apply them, the Azure SDK signing through the vault, a pod reading its
secret through the CSI driver, the active operator replica killed while it makes keys
and its standby taking over, soft delete and purge protection, no secret value anywhere
it should not be, `helm upgrade`, and `helm uninstall` leaving only what the user keeps.

The tests share one installation and run in file order; each one builds on the last.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from prometheus_client.parser import text_string_to_metric_families

from strongroom.devclient import FileTokenCredential

from .release import (
    API_GROUP_KINDS,
    DRIVER,
    IMAGE,
    NAMESPACE,
    RELEASE,
    ROOT,
    Release,
    is_ready,
)

EXAMPLES = ROOT / "examples"
DEMO = "demo"  # the examples' namespace
API = "strongroom.io/v1alpha1"
BURST = 100  # Keys created one by one; the active operator is killed midway
KILL_AFTER = 20  # Keys created (and one of them Ready) before the kill
TAKEOVER_SECONDS = 30  # from the kill to the new active replica's first key
CANARY = f"canary-{uuid.uuid4().hex}"
POOL_METRICS, OPERATOR_METRICS, CSI_METRICS = 9102, 9103, 9104  # the chart's metrics.ports
OWNER_TAG = "strongroom.io/uid"  # the tag that names the resource an object belongs to


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": DEMO},
        "spec": spec,
    }


def b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def reader_pod(name: str, objects: str, script: str) -> dict[str, Any]:
    """A pod of the `reader` ServiceAccount with the demo vault's objects mounted at
    /secrets through the CSI driver, running `script` (never printing a value)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": DEMO},
        "spec": {
            "serviceAccountName": "reader",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "vault", "mountPath": "/secrets", "readOnly": True}],
                }
            ],
            "volumes": [
                {
                    "name": "vault",
                    "csi": {
                        "driver": DRIVER,
                        "readOnly": True,
                        "volumeAttributes": {"vault": "demo", "objects": objects},
                    },
                }
            ],
        },
    }


def digest(value: str | bytes) -> str:
    """What the watching pods print instead of a value: the first 16 hex digits of its
    SHA-256."""
    raw = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(raw).hexdigest()[:16]


def audit_lines(release: Release) -> list[dict[str, Any]]:
    """The demo pool's audit trail: its vault-server's JSON lines marked audit."""
    text = release.k("-n", DEMO, "logs", "demo-pool-0", "-c", "vault-server", "--tail=-1").stdout
    found = []
    for line in text.splitlines():
        if line.startswith("{") and '"audit":true' in line:
            found.append(json.loads(line))
    return found


# Run in the pool's vault-server container with the vault's name as its argument.
STORED_KEYS_SCRIPT = """
import asyncio, json, sqlite3, sys
from strongroom.hsm.client import HsmClient
vault = sys.argv[1]
async def token_keys():
    client = HsmClient('/run/strongroom/hsm.sock')
    try:
        return await client.token_key_ids(vault)
    finally:
        await client.close()
db = sqlite3.connect('file:/var/lib/strongroom/records/records.db?mode=ro', uri=True)
rows = db.execute("SELECT version FROM versions WHERE vault=? AND kind='key'", (vault,))
print(json.dumps({'token': asyncio.run(token_keys()), 'versions': [r[0] for r in rows]}))
"""


def stored_key_versions(release: Release, vault: str) -> list[str]:
    """Every key version in the vault's record storage, read in the pool's own pod; and
    the check that the vault's token holds no working key (keys live in the storage only
    as blobs wrapped by the HSM, and in the HSM as session objects)."""
    answer = release.k(
        "-n",
        DEMO,
        "exec",
        "demo-pool-0",
        "-c",
        "vault-server",
        "--",
        "python",
        "-c",
        STORED_KEYS_SCRIPT,
        vault,
    )
    found = json.loads(answer.stdout)
    assert found["token"] == [], f"working keys in the token of vault {vault}: {found['token']}"
    return list(found["versions"])


def test_helm_test_passes(release: Release) -> None:
    result = release.h("test", RELEASE, "-n", NAMESPACE, "--timeout=4m", timeout=300)
    assert "Succeeded" in result.stdout, result.stdout


def test_the_pool_runs_its_vault_server_and_hsm_sidecar(release: Release) -> None:
    release.cleanups.append(DEMO)
    release.apply_file(EXAMPLES / "00-namespace.yaml", EXAMPLES / "01-hsmpool.yaml")
    pool = release.wait_ready("hsmpool", "demo", DEMO, timeout=300)
    assert pool["status"]["phase"] == "Ready"
    assert pool["status"]["endpoint"] == "https://demo-pool.demo.svc"
    pod = release.get("pod", "demo-pool-0", DEMO)
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"vault-server", "hsm"}
    image = release.get("deployment", "strongroom-operator", NAMESPACE)["spec"]["template"]
    assert containers["hsm"]["image"] == image["spec"]["containers"][0]["image"]
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    claim = release.get("pvc", "demo-pool-tokens", DEMO)
    assert claim["status"]["phase"] == "Bound"


def test_the_vault_is_ready_at_its_uri(release: Release) -> None:
    release.apply_file(EXAMPLES / "02-vault.yaml")
    vault = release.wait_ready("vault", "demo", DEMO)
    assert vault["status"]["vaultUri"] == "https://demo-vault.demo.svc"


def test_a_signature_made_through_the_azure_sdk_verifies_with_the_status_jwk(
    release: Release,
) -> None:
    release.apply_file(EXAMPLES / "03-key.yaml")
    key = release.wait_ready("key", "signing", DEMO)
    jwk = key["status"]["publicKey"]
    assert jwk["kty"] == "EC-HSM" and jwk["crv"] == "P-256"
    assert "d" not in jwk
    token = release.tmp / "signer.token"
    token.write_text(release.vault_token("signer", DEMO))
    credential = FileTokenCredential(token)
    ca = str(release.ca_file())
    digest = hashlib.sha256(b"signed in the HSM, checked against Key.status").digest()
    with release.reach(release.get("vault", "demo", DEMO)) as uri:
        # The SDK's default challenge check: the vault's host is under the resource it names.
        client = KeyClient(uri, credential, connection_verify=ca)
        fetched = client.get_key("signing")
        assert fetched.id == key["status"]["kid"]
        crypto = CryptographyClient(fetched, credential, connection_verify=ca)
        signature = crypto.sign(SignatureAlgorithm.es256, digest).signature
    public = ec.EllipticCurvePublicNumbers(
        b64url_int(jwk["x"]), b64url_int(jwk["y"]), ec.SECP256R1()
    ).public_key()
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    prehashed = ec.ECDSA(Prehashed(hashes.SHA256()))
    public.verify(der, digest, prehashed)
    with pytest.raises(InvalidSignature):
        public.verify(der, hashlib.sha256(b"something else").digest(), prehashed)


def test_examples_06_signs_in_a_pod_with_its_vault_uri_token(release: Release) -> None:
    """06 as the README has users apply it: the example-app image (the SDK baked in by
    e2e/build-example-image), a projected token whose audience is the vault's URI."""
    vault = release.get("vault", "demo", DEMO)
    audience = (vault.get("status") or {}).get("audience")
    assert audience == vault["status"]["vaultUri"], vault.get("status")
    release.k(
        "-n",
        DEMO,
        "create",
        "configmap",
        "strongroom-ca",
        f"--from-file=ca.crt={release.ca_file()}",
    )
    release.apply_file(EXAMPLES / "06-app-signs.yaml")
    phase = release.wait_for(
        "sign-with-hsm-key to finish",
        lambda: (
            release.get("pod", "sign-with-hsm-key", DEMO)["status"].get("phase")
            in ("Succeeded", "Failed")
            and release.get("pod", "sign-with-hsm-key", DEMO)["status"]["phase"]
        ),
        timeout=180,
    )
    log = release.k("-n", DEMO, "logs", "sign-with-hsm-key").stdout
    assert phase == "Succeeded", log
    assert "verified: True" in log, log
    key = release.get("key", "signing", DEMO)
    assert key["status"]["kid"].rsplit("/", 1)[0] in log, log


def served_certificate(release: Release, vault: dict[str, Any], ca: Path) -> str:
    """The SHA-256 of the certificate a new connection to the vault's Service gets."""
    host = vault["status"]["vaultUri"].removeprefix("https://").split("/")[0]
    address = release.get("service", host.split(".")[0], DEMO)["spec"]["clusterIP"]
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((address, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der, "the vault sent no certificate"
    return hashlib.sha256(der).hexdigest()


class SignLoop(threading.Thread):
    """Signs in a loop until stopped, counting answers and keeping every failure."""

    def __init__(self, name: str, sign: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.sign = sign
        self.ok = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.sign()
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                self.failures.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.2)


def test_a_renewed_pool_certificate_is_served_without_a_restart_or_a_failed_request(
    release: Release,
) -> None:
    """The pool's TLS Secret is deleted (the way to force a renewal) while two clients sign
    in a loop: the SDK's client on its kept-alive connection, and plain requests that each
    open a new connection. The operator issues a new certificate and the running pool
    serves it to new connections at once; the pod is not restarted and no request fails."""
    vault = release.get("vault", "demo", DEMO)
    key = release.wait_ready("key", "signing", DEMO)
    kid = key["status"]["kid"]
    ca = release.ca_file()
    pod = release.get("pod", "demo-pool-0", DEMO)
    restarts = {c["name"]: c["restartCount"] for c in pod["status"]["containerStatuses"]}
    before = served_certificate(release, vault, ca)
    token = release.vault_token("signer", DEMO)
    token_file = release.tmp / "renewal.token"
    token_file.write_text(token)
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"renewal").digest()).decode().rstrip("=")
    with release.reach(vault) as uri:
        path = kid.removeprefix(uri) + "/sign"

        def sign_on_a_new_connection() -> None:
            answer = requests.post(
                f"{uri}{path}",
                params={"api-version": "7.6"},
                json={"alg": "ES256", "value": digest},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                verify=str(ca),
                timeout=30,
            )
            if answer.status_code != 200:
                raise AssertionError(f"HTTP {answer.status_code}: {answer.text[:200]}")
            if not answer.json().get("value"):
                raise AssertionError(f"no signature in {answer.text[:200]}")

        credential = FileTokenCredential(token_file)
        crypto = CryptographyClient(kid, credential, connection_verify=str(ca))
        hashed = hashlib.sha256(b"renewal").digest()

        def sign_with_the_sdk() -> None:
            crypto.sign(SignatureAlgorithm.es256, hashed)

        loops = [
            SignLoop("sdk-signer", sign_with_the_sdk),
            SignLoop("new-connections", sign_on_a_new_connection),
        ]
        for loop in loops:
            loop.start()
        try:
            release.wait_for("both signers signing", lambda: all(x.ok >= 5 for x in loops), 60)
            release.k("-n", DEMO, "delete", "secret", "demo-pool-tls")
            after = release.wait_for(
                "the pool serving a new certificate",
                lambda: (now := served_certificate(release, vault, ca)) != before and now,
                timeout=180,
            )
            at_switch = [x.ok for x in loops]
            release.wait_for(
                "20 signatures each after the switch",
                lambda: all(x.ok >= n + 20 for x, n in zip(loops, at_switch, strict=True)),
                timeout=60,
            )
        finally:
            for loop in loops:
                loop.halt.set()
            for loop in loops:
                loop.join(timeout=60)
    failures = {x.name: x.failures for x in loops if x.failures}
    assert failures == {}, f"requests failed across the renewal: {failures}"
    assert after != before
    issued = release.get("secret", "demo-pool-tls", DEMO)
    served = x509.load_pem_x509_certificate(base64.b64decode(issued["data"]["tls.crt"]))
    assert hashlib.sha256(served.public_bytes(serialization.Encoding.DER)).hexdigest() == after
    pod_after = release.get("pod", "demo-pool-0", DEMO)
    assert pod_after["metadata"]["uid"] == pod["metadata"]["uid"], "the pool pod was replaced"
    assert {c["name"]: c["restartCount"] for c in pod_after["status"]["containerStatuses"]} == (
        restarts
    )


def test_a_pod_reads_its_secret_through_the_csi_volume(release: Release) -> None:
    release.apply_file(EXAMPLES / "04-vaultsecret.yaml")
    release.wait_ready("vaultsecret", "db-password", DEMO)
    release.apply_file(EXAMPLES / "05-pod-reads-secret.yaml")
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/read-secret", "--timeout=180s")
    log = release.wait_for(
        "the pod's first lines",
        lambda: (
            text
            if "BEGIN PUBLIC KEY" in (text := release.k("-n", DEMO, "logs", "read-secret").stdout)
            else ""
        ),
        timeout=60,
    )
    # 32 random bytes from the HSM, written as alphanumerics: 43 characters.
    assert "db password: 43 bytes (value not shown)" in log, log
    assert "-----BEGIN PUBLIC KEY-----" in log, log


ROTATING = "rotating"  # generated, rotated every minute; the watch-rotation pod mounts it
WATCH_SCRIPT = """trap 'exit 0' TERM
while true; do
  echo "value: $(sha256sum < /secrets/value | cut -c1-16)"
  sleep 5 & wait $!
done
"""


def digests_seen(release: Release, pod: str) -> list[str]:
    """The digests a watching pod printed, oldest first, each once."""
    seen: list[str] = []
    for line in release.k("-n", DEMO, "logs", pod, "--tail=-1").stdout.splitlines():
        if line.startswith("value: ") and (value := line.removeprefix("value: ")) not in seen:
            seen.append(value)
    return seen


MATCH_SCRIPT = """
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
chain = x509.load_pem_x509_certificates(open('/tls/tls.crt', 'rb').read())
key = serialization.load_pem_private_key(open('/tls/tls.key', 'rb').read(), None)
same = key.public_key().public_numbers() == chain[0].public_key().public_numbers()
print(chain[0].fingerprint(hashes.SHA1()).hex(), same)
"""


def test_examples_07_a_vault_certificate_is_issued_and_mounted_with_its_key(
    release: Release,
) -> None:
    """07 as the README has users apply it: the vault signs the certificate (issuer Self),
    the status and printer columns say so, and the pod's tls.crt and tls.key are that
    certificate and its own key."""
    release.apply_file(EXAMPLES / "07-vaultcertificate.yaml")
    cert = release.wait_ready("vaultcertificate", "demo-tls", DEMO, timeout=180)
    status = cert["status"]
    assert status.get("thumbprint") and status.get("expires") and status.get("version"), status
    listed = release.k("-n", DEMO, "get", "vaultcertificates").stdout
    assert "CN=demo-tls.demo.svc" in listed and "True" in listed, listed
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/serve-tls", "--timeout=180s")
    log = release.wait_for(
        "the pod's first lines",
        lambda: (
            text
            if "private key:" in (text := release.k("-n", DEMO, "logs", "serve-tls").stdout)
            else ""
        ),
        timeout=60,
    )
    assert "-----BEGIN CERTIFICATE-----" in log, log
    answer = release.k(
        "-n", DEMO, "exec", "serve-tls", "--", "python3", "-c", MATCH_SCRIPT
    ).stdout.split()
    assert answer == [status["thumbprint"].lower().replace(":", ""), "True"], (answer, status)
    # The certificate's key signs through the data plane as any key (the managed key).
    token = release.vault_token("signer", DEMO)
    with release.reach(release.get("vault", "demo", DEMO)) as uri:
        got = release.vault_call(uri, token, "GET", "/keys/demo-tls")
    assert got.status_code == 200, got.text
    assert got.json().get("managed") is True, got.text


HTTPS_SERVER = """
import socket, ssl
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 8443))
listener.listen(16)
print("serving", flush=True)
while True:
    conn, _ = listener.accept()
    try:
        # The mounted files, read for each connection: a renewal swaps them in place.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            tls.recv(4096)
            head = b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\n"
            tls.sendall(head + b"ok\\n")
    except Exception as exc:
        print("connection failed:", type(exc).__name__, flush=True)
        conn.close()
"""
HTTPS_HOST = "demo-tls.demo.svc"  # a name of the certificate, and its Service's


def https_pod_and_service() -> list[dict[str, Any]]:
    labels = {"app": "demo-tls"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "https-tls", "namespace": DEMO, "labels": labels},
            "spec": {
                "serviceAccountName": "reader",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "fsGroup": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "app",
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", HTTPS_SERVER],
                        "ports": [{"containerPort": 8443}],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                    }
                ],
                "volumes": [
                    {
                        "name": "tls",
                        "csi": {
                            "driver": DRIVER,
                            "readOnly": True,
                            "volumeAttributes": {
                                "vault": "demo",
                                "objects": "- kind: certificate\n  name: demo-tls\n",
                            },
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "demo-tls", "namespace": DEMO},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    ]


def https_served(release: Release, trusted_pem: str, hostname: str) -> str:
    """The SHA-1 thumbprint of the certificate the pod serves, after a handshake that trusts
    only `trusted_pem` and checks `hostname` (ssl.SSLCertVerificationError otherwise), and an
    HTTP answer read whole."""
    address = release.get("service", "demo-tls", DEMO)["spec"]["clusterIP"]
    context = ssl.create_default_context(cadata=trusted_pem)
    with socket.create_connection((address, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok\n"), answer
    assert der is not None
    return hashlib.sha1(der).hexdigest()  # noqa: S324 - Key Vault's x5t thumbprint


def mounted_certificate(release: Release) -> str:
    return release.k("-n", DEMO, "exec", "https-tls", "--", "cat", "/tls/tls.crt").stdout


def test_a_pod_serves_https_with_the_vault_certificate_and_a_new_version_reaches_it_running(
    release: Release,
) -> None:
    """After 07: a pod serves HTTPS with the mounted tls.crt and tls.key; a client that
    trusts that certificate (and nothing else) connects and the host name is checked. The
    vault then makes a new version (a change of the certificate's names: at once for issuer
    Self, the same new certificate-key-secret version a renewal makes); the running pod, not
    restarted, serves the new certificate once its volume is republished."""
    release.apply(*https_pod_and_service())
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/https-tls", "--timeout=180s")
    pod = release.get("pod", "https-tls", DEMO)
    before = release.get("vaultcertificate", "demo-tls", DEMO)["status"]
    first_pem = mounted_certificate(release)
    thumbprint = before["thumbprint"].lower().replace(":", "")
    assert https_served(release, first_pem, HTTPS_HOST) == thumbprint
    # The host name is checked: a name the certificate does not hold is refused.
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        https_served(release, first_pem, "someone-else.demo.svc")

    spec = release.get("vaultcertificate", "demo-tls", DEMO)["spec"]
    release.k(
        "-n",
        DEMO,
        "patch",
        "vaultcertificate",
        "demo-tls",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"dnsNames": [*spec["dnsNames"], "demo-tls"]}}),
    )

    def new_version() -> dict[str, Any] | None:
        status = release.get("vaultcertificate", "demo-tls", DEMO).get("status") or {}
        return status if status.get("version") not in (None, before["version"]) else None

    after = release.wait_for("the certificate's new version", new_version, timeout=180)
    new_thumbprint = after["thumbprint"].lower().replace(":", "")
    assert new_thumbprint != thumbprint

    def serving_new() -> str | None:
        pem = mounted_certificate(release)
        if pem == first_pem:
            return None
        return pem if https_served(release, pem, HTTPS_HOST) == new_thumbprint else None

    new_pem = release.wait_for("the pod serving the new certificate", serving_new, timeout=300)
    leaf = x509.load_pem_x509_certificates(new_pem.encode())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "demo-tls" in names.get_values_for_type(x509.DNSName)
    # The old certificate is no longer trusted for it: the client that trusts only it fails.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_served(release, first_pem, HTTPS_HOST)
    now = release.get("pod", "https-tls", DEMO)
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert now["status"]["containerStatuses"][0]["restartCount"] == 0
    log = release.k("-n", DEMO, "logs", "https-tls").stdout
    assert "serving" in log and "PRIVATE KEY" not in log


def test_a_secret_rotated_every_minute_is_mounted_in_a_watching_pod(release: Release) -> None:
    """Starts the rotation proof: the secret and the pod that prints the digest of its
    mounted value every few seconds. The rest of the file's tests run while it rotates;
    test_the_watching_pod_sees_the_rotated_value checks what the pod saw."""
    release.apply(
        resource(
            "VaultSecret",
            ROTATING,
            {
                "vaultRef": {"name": "demo"},
                "source": {"generate": {"length": 32, "encoding": "alphanumeric"}},
                "contentType": "text/plain",
                "rotation": {"rotateAfter": "PT1M"},
            },
        )
    )
    secret = release.wait_ready("vaultsecret", ROTATING, DEMO)
    status = secret["status"]
    assert status.get("currentVersion") and status.get("nextRotation"), status
    objects = f"- kind: secret\n  name: {ROTATING}\n  path: value\n"
    release.apply(reader_pod("watch-rotation", objects, WATCH_SCRIPT))
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/watch-rotation", "--timeout=180s")
    first = release.wait_for(
        "the pod's first digest", lambda: digests_seen(release, "watch-rotation"), timeout=60
    )
    token = release.vault_token("reader", DEMO)
    with release.reach(release.get("vault", "demo", DEMO)) as uri:
        answer = release.vault_call(
            uri, token, "GET", f"/secrets/{ROTATING}/{status['currentVersion']}"
        )
    assert answer.status_code == 200, answer.text
    assert first[0] == digest(answer.json()["value"])


def test_helm_test_mounts_a_secret_as_a_workload(release: Release) -> None:
    """With tests.mount set to the quick start's vault, `helm test` also mounts a secret."""
    release.h(
        "upgrade",
        RELEASE,
        str(ROOT / "charts" / "strongroom"),
        "-n",
        NAMESPACE,
        "--reuse-values",
        "--set=tests.mount.enabled=true",
        f"--set=tests.mount.namespace={DEMO}",
        "--set=tests.mount.serviceAccount=reader",
        "--set=tests.mount.vault=demo",
        "--set=tests.mount.secret=db-password",
        "--wait",
        "--timeout=5m",
        timeout=330,
    )
    result = release.h("test", RELEASE, "-n", NAMESPACE, "--timeout=4m", timeout=300)
    # One suite entry per test pod, each "Phase: Succeeded": the install check and the mount.
    assert "strongroom-test-mount" in result.stdout, result.stdout
    assert result.stdout.count("Succeeded") >= 2, result.stdout


def ready_operator_pods(release: Release) -> list[str]:
    return [
        pod["metadata"]["name"]
        for pod in release.operator_pods()
        if pod["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions") or []
        )
    ]


def burst_keys(release: Release, names: list[str]) -> list[dict[str, Any]]:
    wanted = set(names)
    return [k for k in release.items("keys", "-n", DEMO) if k["metadata"]["name"] in wanted]


class KeyCreator(threading.Thread):
    """Creates the burst's Keys one by one, as a user's loop or a GitOps sync would."""

    def __init__(self, release: Release, names: list[str]) -> None:
        super().__init__(name="key-creator", daemon=True)
        self.release = release
        self.names = names
        self.created = 0
        self.error: BaseException | None = None
        self.some_made = threading.Event()

    def run(self) -> None:
        try:
            for name in self.names:
                self.release.apply(
                    resource(
                        "Key",
                        name,
                        {"vaultRef": {"name": "burst"}, "kty": "EC-HSM", "curve": "P-256"},
                    )
                )
                self.created += 1
                if self.created >= KILL_AFTER:
                    self.some_made.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.some_made.set()


def test_the_standby_takes_over_within_30s_when_the_active_operator_is_killed_mid_burst(
    release: Release, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two operator replicas; Keys created one by one; the replica holding the Lease is
    force-deleted while they are being created. The standby takes the Lease over and
    reconciles within TAKEOVER_SECONDS of the kill, every Key ends Ready, and none has a
    second version: nothing was made twice across the takeover."""
    release.apply(
        resource(
            "Vault",
            "burst",
            {"hsmPoolRef": {"name": "demo"}, "softDelete": {"retentionDays": 7}},
        )
    )
    release.wait_ready("vault", "burst", DEMO)
    release.wait_for(
        "both operator replicas Ready", lambda: len(ready_operator_pods(release)) == 2, 180
    )
    victim = release.wait_for("an operator replica holding the Lease", release.lease_holder)
    pods = ready_operator_pods(release)
    assert victim in pods, f"the Lease names {victim}, not one of {pods}"
    [standby] = [pod for pod in pods if pod != victim]
    assert "became active" not in release.pod_log(standby), "the standby was reconciling"
    assert f"standing by for {victim}" in release.pod_log(standby)

    names = [f"burst-{i:02d}" for i in range(BURST)]
    creator = KeyCreator(release, names)
    creator.start()
    # Kill it while it makes keys: some created and at least one made, most still to come.
    assert creator.some_made.wait(timeout=300), "the Keys are not being created"
    assert creator.error is None, creator.error
    release.wait_for(
        "the active replica to make a first key",
        lambda: any(is_ready(key) for key in burst_keys(release, names)),
        timeout=120,
    )
    killed = time.monotonic()
    release.k("-n", NAMESPACE, "delete", "pod", victim, "--grace-period=0", "--force")
    created_when_killed = creator.created
    ready_when_killed = {k["metadata"]["name"] for k in burst_keys(release, names) if is_ready(k)}
    assert created_when_killed < BURST, "every Key was created before the kill"
    assert len(ready_when_killed) < BURST, "the operator made every key before it was killed"

    # Who reconciles next: the Lease names it (the standby, or the Deployment's replacement
    # pod if it got there first); its log says it became active.
    def successor() -> str | None:
        holder = release.lease_holder()
        return holder if holder not in (None, victim) else None

    new_holder = release.wait_for("another replica to take the Lease", successor, timeout=60)
    took_lease = time.monotonic() - killed
    ready_at_takeover = {k["metadata"]["name"] for k in burst_keys(release, names) if is_ready(k)}

    def made_since_takeover() -> bool:
        return any(
            is_ready(k) and k["metadata"]["name"] not in ready_at_takeover
            for k in burst_keys(release, names)
        )

    try:
        release.wait_for("a key made by the new active replica", made_since_takeover, timeout=60)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; {new_holder} took the Lease {took_lease:.1f}s after the kill\n"
            f"{release.operator_log()[-6000:]}"
        ) from None
    first_reconcile = time.monotonic() - killed
    with capsys.disabled():  # the measurement, shown whether or not pytest captures
        print(
            f"\nfailover: {victim} killed; {new_holder} took the Lease {took_lease:.1f}s "
            f"later and made its first key {first_reconcile:.1f}s after the kill "
            f"({len(ready_when_killed)} of {created_when_killed} created keys were ready at "
            "the kill)"
        )
    log = release.pod_log(new_holder)
    assert f"became active: {new_holder} holds Lease {NAMESPACE}/strongroom-operator" in log, log
    assert first_reconcile < TAKEOVER_SECONDS, (
        f"the new active replica made its first key {first_reconcile:.1f}s after the kill "
        f"(Lease taken after {took_lease:.1f}s)\n{release.operator_log()[-4000:]}"
    )

    creator.join(timeout=300)
    assert not creator.is_alive() and creator.error is None, creator.error
    assert creator.created == BURST

    def all_ready() -> list[dict[str, Any]]:
        keys = burst_keys(release, names)
        return keys if len(keys) == BURST and all(is_ready(k) for k in keys) else []

    ready = release.wait_for(f"all {BURST} keys Ready after the takeover", all_ready, timeout=300)
    # Made once each: one version per Key, and the vault stores exactly the versions they name.
    twice = {
        k["metadata"]["name"]: [v["version"] for v in k["status"].get("versions") or []]
        for k in ready
        if len(k["status"].get("versions") or []) != 1
    }
    assert not twice, f"keys with other than one version: {twice}"
    for key in ready:
        assert key["status"]["versions"][0]["version"] == key["status"]["currentVersion"]
    stored = stored_key_versions(release, "burst")
    assert sorted(stored) == sorted(k["status"]["currentVersion"] for k in ready), (
        "the vault holds a key version no Key resource names, or lacks one"
    )
    # The Deployment replaced the killed pod: two replicas again, one holding the Lease.
    release.wait_for(
        "two operator replicas Ready again", lambda: len(ready_operator_pods(release)) == 2, 180
    )
    assert victim not in ready_operator_pods(release)
    assert release.lease_holder() == new_holder
    others = [pod for pod in ready_operator_pods(release) if pod != new_holder]
    assert all("became active" not in release.pod_log(pod) for pod in others)


def test_the_watching_pod_sees_the_rotated_value(release: Release) -> None:
    """rotateAfter PT1M: the operator makes a new version within a minute or two of the
    last one, and the running pod's file changes to it at a republish, without a restart."""
    pod = release.get("pod", "watch-rotation", DEMO)
    seen = release.wait_for(
        "the watching pod to print a second digest",
        lambda: (found := digests_seen(release, "watch-rotation"))[1:] and found,
        timeout=300,
    )
    secret = release.get("vaultsecret", ROTATING, DEMO)
    status = secret["status"]
    token = release.vault_token("reader", DEMO)
    with release.reach(release.get("vault", "demo", DEMO)) as uri:
        listed = release.vault_call(uri, token, "GET", f"/secrets/{ROTATING}/versions")
        assert listed.status_code == 200, listed.text
        versions = [item["id"].rsplit("/", 1)[1] for item in listed.json()["value"]]
        values = {}
        for version in versions:
            answer = release.vault_call(uri, token, "GET", f"/secrets/{ROTATING}/{version}")
            assert answer.status_code == 200, answer.text
            values[digest(answer.json()["value"])] = version
    assert len(versions) >= 2, versions
    assert status["currentVersion"] in versions
    # Every value the pod saw is a version of the secret, the second one a rotated one.
    assert all(seen_digest in values for seen_digest in seen), (seen, values)
    assert values[seen[0]] != values[seen[1]]
    now = release.get("pod", "watch-rotation", DEMO)
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert now["status"]["containerStatuses"][0]["restartCount"] == 0
    # The rotations are on record: the current version is under a minute or two old.
    assert status.get("nextRotation") and status.get("currentVersionCreated"), status


SHARERS = 4  # pods of one ServiceAccount mounting one secret at once


def issuer_kids(release: Release) -> set[str]:
    jwks = json.loads(release.k("get", "--raw", "/openid/v1/jwks").stdout)
    return {key["kid"] for key in jwks["keys"]}


def test_after_the_cluster_rotates_its_issuer_key_pods_of_one_account_still_share(
    release: Release,
) -> None:
    """The cluster signs ServiceAccount tokens with a new key (e2e/cluster
    rotate-issuer-key, as a cluster operator rotates it). The CSI plugin's copy of the
    issuer keys does not know it; the first token naming it makes the plugin refresh, and
    pods of one ServiceAccount go on sharing fetches: SHARERS pods mounting one secret at
    once cost the vault fewer than SHARERS reads."""
    name = "shared-after-rotation"
    release.apply(
        resource(
            "VaultSecret",
            name,
            {
                "vaultRef": {"name": "demo"},
                "source": {"generate": {"length": 24, "encoding": "alphanumeric"}},
            },
        )
    )
    release.wait_ready("vaultsecret", name, DEMO)
    before = issuer_kids(release)
    rotation = subprocess.run(
        [str(ROOT / "e2e" / "cluster"), "rotate-issuer-key"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
        check=False,
    )
    assert rotation.returncode == 0, rotation.stderr + rotation.stdout
    release.wait_for("the API server answering", lambda: issuer_kids(release), timeout=120)
    added = issuer_kids(release) - before
    assert len(added) == 1 and before <= issuer_kids(release), (before, added)
    [new_kid] = added
    token = release.vault_token("reader", DEMO)
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    reads_before = len(audit_lines(release))
    objects = f"- kind: secret\n  name: {name}\n  path: value\n"
    pods = [f"share-{i}" for i in range(SHARERS)]
    release.apply(*(reader_pod(pod, objects, WATCH_SCRIPT) for pod in pods))
    release.k(
        "-n",
        DEMO,
        "wait",
        "--for=condition=Ready",
        *(f"pod/{pod}" for pod in pods),
        "--timeout=180s",
        timeout=200,
    )
    reads = [
        line
        for line in audit_lines(release)[reads_before:]
        if line["operation"] == "SecretGet" and line["object"] == name
    ]
    assert all(line["outcome"] == 200 for line in reads), reads
    if not 1 <= len(reads) < SHARERS:
        # What the plugin and its jwks-refresh container said about the keys, to see why.
        logs = release.k(
            "-n",
            NAMESPACE,
            "logs",
            csi_node_pod(release),
            "--all-containers",
            "--prefix",
            "--since=10m",
            check=False,
        ).stdout
        said = [ln for ln in logs.splitlines() if "issuer keys" in ln or "fetch-jwks" in ln]
        raise AssertionError(
            f"{SHARERS} pods of one ServiceAccount made {len(reads)} vault reads after the "
            f"issuer key rotation: {reads}\nthe CSI plugin on its issuer keys:\n"
            + "\n".join(said[-40:])
        )
    values = {tuple(digests_seen(release, pod)[:1]) for pod in pods}
    assert len(values) == 1 and values != {()}, values
    release.k("-n", DEMO, "delete", "pods", *pods, "--wait=false")


def test_a_deleted_key_is_soft_deleted_and_recoverable(release: Release) -> None:
    release.apply(
        resource(
            "Vault",
            "burst",
            {
                "hsmPoolRef": {"name": "demo"},
                "softDelete": {"retentionDays": 7},
                "access": [{"serviceAccount": {"name": "keeper"}, "roles": ["Administrator"]}],
            },
        )
    )
    release.k("-n", DEMO, "create", "serviceaccount", "keeper")
    release.wait_ready("vault", "burst", DEMO)
    release.k("-n", DEMO, "delete", "key", "burst-00", "--timeout=60s")
    token = release.vault_token("keeper", DEMO)
    with release.reach(release.get("vault", "burst", DEMO)) as uri:
        deleted = release.vault_call(uri, token, "GET", "/deletedkeys/burst-00")
        assert deleted.status_code == 200, deleted.text
        assert release.vault_call(uri, token, "GET", "/keys/burst-00").status_code == 404
        recovered = release.vault_call(uri, token, "POST", "/deletedkeys/burst-00/recover")
        assert recovered.status_code == 200, recovered.text
        back = release.wait_for(
            "the recovered key",
            lambda: (r := release.vault_call(uri, token, "GET", "/keys/burst-00")).ok and r,
            timeout=30,
        )
        assert back.json()["key"]["kid"].rsplit("/", 1)[-1] in stored_key_versions(release, "burst")


def test_with_purge_protection_a_deleted_key_cannot_be_purged(release: Release) -> None:
    release.apply(
        resource(
            "Vault",
            "guarded",
            {
                "hsmPoolRef": {"name": "demo"},
                "softDelete": {"retentionDays": 7, "purgeProtection": True},
                "access": [{"serviceAccount": {"name": "keeper"}, "roles": ["Administrator"]}],
            },
        ),
        resource("Key", "kept", {"vaultRef": {"name": "guarded"}, "kty": "EC-HSM"}),
    )
    release.wait_ready("vault", "guarded", DEMO)
    release.wait_ready("key", "kept", DEMO)
    release.k("-n", DEMO, "delete", "key", "kept", "--timeout=60s")
    token = release.vault_token("keeper", DEMO)
    with release.reach(release.get("vault", "guarded", DEMO)) as uri:
        assert release.vault_call(uri, token, "GET", "/deletedkeys/kept").status_code == 200
        purge = release.vault_call(uri, token, "DELETE", "/deletedkeys/kept")
        assert purge.status_code == 403, purge.text
        assert "purge protection" in purge.json()["error"]["message"]
        assert release.vault_call(uri, token, "GET", "/deletedkeys/kept").status_code == 200


def test_a_key_made_through_the_vault_api_is_adopted_and_keeps_its_version(
    release: Release,
) -> None:
    """A team moves a key it made through the vault's API under a Key resource: refused until
    the Vault consents (strongroom.io/allow-adopt), then adopted with its version, no new
    key made in the HSM."""
    release.k("-n", DEMO, "create", "serviceaccount", "migrator")
    release.apply(
        resource(
            "Vault",
            "adopting",
            {
                "hsmPoolRef": {"name": "demo"},
                "softDelete": {"retentionDays": 7},
                "access": [{"serviceAccount": {"name": "migrator"}, "roles": ["Administrator"]}],
            },
        )
    )
    vault = release.wait_ready("vault", "adopting", DEMO)
    token = release.vault_token("migrator", DEMO)
    with release.reach(vault) as uri:
        made = release.vault_call(
            uri, token, "POST", "/keys/legacy/create", {"kty": "EC-HSM", "crv": "P-256"}
        )
        assert made.status_code == 200, made.text
    version = made.json()["key"]["kid"].rsplit("/", 1)[-1]
    assert OWNER_TAG not in (made.json().get("tags") or {})

    release.apply(
        resource(
            "Key",
            "legacy",
            {
                "vaultRef": {"name": "adopting"},
                "kty": "EC-HSM",
                "curve": "P-256",
                "keyOps": ["sign"],
                "adopt": True,
            },
        )
    )

    def refused() -> dict[str, Any] | None:
        status = release.get("key", "legacy", DEMO).get("status") or {}
        for condition in status.get("conditions") or []:
            if condition["type"] == "Ready" and condition.get("reason") == "AdoptionNotAllowed":
                return dict(condition)
        return None

    condition = release.wait_for("the adoption refused without the Vault's consent", refused)
    assert condition["status"] == "False"
    assert "strongroom.io/allow-adopt=legacy" in condition["message"], condition
    with release.reach(vault) as uri:
        untouched = release.vault_call(uri, token, "GET", "/keys/legacy")
        assert untouched.status_code == 200, untouched.text
        assert OWNER_TAG not in (untouched.json().get("tags") or {})

    release.k("-n", DEMO, "annotate", "vault", "adopting", "strongroom.io/allow-adopt=legacy")
    # AdoptionNotAllowed is retried within a minute, as is every Key by its timer.
    key = release.wait_ready("key", "legacy", DEMO, timeout=240)
    assert key["status"]["currentVersion"] == version
    assert [v["version"] for v in key["status"]["versions"]] == [version]
    assert key["status"]["kid"].rsplit("/", 1)[-1] == version
    with release.reach(vault) as uri:
        listed = release.vault_call(uri, token, "GET", "/keys/legacy/versions")
        assert listed.status_code == 200, listed.text
        assert [item["kid"].rsplit("/", 1)[-1] for item in listed.json()["value"]] == [version]
        adopted = release.vault_call(uri, token, "GET", "/keys/legacy")
        assert adopted.status_code == 200, adopted.text
    # The key is the Key's now, and keeps to its spec.
    assert adopted.json()["tags"][OWNER_TAG] == key["metadata"]["uid"]
    assert adopted.json()["key"]["key_ops"] == ["sign"]
    assert stored_key_versions(release, "adopting") == [version], "a key version was made"

    def adopted_event() -> list[dict[str, Any]]:
        answer = release.k(
            "-n",
            DEMO,
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Key,involvedObject.name=legacy,reason=Adopted",
            "-o",
            "json",
        )
        return list(json.loads(answer.stdout)["items"])

    # One, or two when the Key's retry and its timer ran at the same moment (both adopt: the
    # pool's adoption is idempotent).
    events = release.wait_for("the Normal Event Adopted", adopted_event, timeout=60)
    for event in events:
        assert event["type"] == "Normal", event
        assert "key legacy of vault adopting" in event["message"], event
        assert f"1 version(s) kept (current {version})" in event["message"], event


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(release: Release, namespace: str, pod: str, port: int) -> tuple[Samples, str]:
    """A pod's /metrics through the API server's proxy, parsed with prometheus-client's
    parser (which refuses a malformed exposition)."""
    text = release.k(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"
    ).stdout
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def csi_node_pod(release: Release) -> str:
    [pod] = release.items("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=csi-node")
    return str(pod["metadata"]["name"])


def metrics_scrapes(release: Release) -> dict[str, str]:
    """Every metrics endpoint's whole output: the pool's, each operator replica's, the CSI
    node plugin's."""
    found = {"pool metrics": scrape(release, DEMO, "demo-pool-0", POOL_METRICS)[1]}
    for pod in release.operator_pods():
        name = pod["metadata"]["name"]
        found[f"operator metrics {name}"] = scrape(release, NAMESPACE, name, OPERATOR_METRICS)[1]
    found["csi metrics"] = scrape(release, NAMESPACE, csi_node_pod(release), CSI_METRICS)[1]
    return found


def test_every_metrics_endpoint_counts_what_the_user_did(release: Release) -> None:
    """The pool's, the active operator's and the CSI plugin's /metrics, before and after a
    known amount of work: counters move by exactly that much where only the test acts."""
    key = release.wait_ready("key", "signing", DEMO)
    vault = release.get("vault", "demo", DEMO)
    token = release.vault_token("signer", DEMO)
    holder = release.wait_for("the Lease's holder", release.lease_holder)
    csi = csi_node_pod(release)
    pool_before, _ = scrape(release, DEMO, "demo-pool-0", POOL_METRICS)
    operator_before, _ = scrape(release, NAMESPACE, holder, OPERATOR_METRICS)
    csi_before, _ = scrape(release, NAMESPACE, csi, CSI_METRICS)

    signs = 5
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"counted").digest()).decode().rstrip("=")
    with release.reach(vault) as uri:
        path = key["status"]["kid"].removeprefix(uri) + "/sign"
        for _ in range(signs):
            answer = release.vault_call(uri, token, "POST", path, {"alg": "ES256", "value": digest})
            assert answer.status_code == 200, answer.text
        refused = release.vault_call(uri, "not-a-token", "GET", "/keys/signing")
        assert refused.status_code == 401, refused.text
    release.apply(resource("Key", "counted", {"vaultRef": {"name": "demo"}, "kty": "EC-HSM"}))
    release.wait_ready("key", "counted", DEMO)
    objects = "- kind: secret\n  name: db-password\n  path: value\n"
    release.apply(reader_pod("counted-mount", objects, WATCH_SCRIPT))
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/counted-mount", "--timeout=180s")

    pool_after, _ = scrape(release, DEMO, "demo-pool-0", POOL_METRICS)
    operator_after, _ = scrape(release, NAMESPACE, holder, OPERATOR_METRICS)
    csi_after, _ = scrape(release, NAMESPACE, csi, CSI_METRICS)

    def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # The pool: its vault server, and its HSM sidecar through it.
    assert moved(
        pool_before, pool_after, "strongroom_requests_total", op="KeySign", code="200"
    ) == (signs)
    assert moved(pool_before, pool_after, "strongroom_auth_failures_total", reason="bad_token") == 1
    assert (
        moved(pool_before, pool_after, "strongroom_request_duration_seconds_count", op="KeySign")
        == signs
    )
    assert (
        moved(
            pool_before, pool_after, "strongroom_hsm_call_duration_seconds_count", operation="sign"
        )
        >= signs
    )
    assert (
        moved(pool_before, pool_after, "strongroom_hsm_operations_total", operation="sign") >= signs
    )
    assert total(pool_after, "strongroom_hsm_sidecar_up") == 1
    assert total(pool_after, "strongroom_vault_objects", vault="demo", kind="key") >= 2
    # The operator replica that holds the Lease reconciled the new Key.
    assert total(operator_after, "strongroom_operator_active") == 1
    assert (
        moved(
            operator_before, operator_after, "strongroom_reconciles_total", kind="Key", outcome="ok"
        )
        >= 1
    )
    # The CSI plugin mounted the new pod's volume once; the issuer-rotation test's pods shared.
    assert (
        moved(csi_before, csi_after, "strongroom_csi_publish_duration_seconds_count", kind="mount")
        == 1
    )
    assert moved(csi_before, csi_after, "strongroom_csi_publishes_total", code="OK") >= 1
    assert total(csi_after, "strongroom_csi_vault_fetches_total") >= 1
    assert total(csi_after, "strongroom_csi_shared_fetches_total") >= 1
    release.k("-n", DEMO, "delete", "pod", "counted-mount", "--wait=false")


def test_a_canary_secret_appears_in_no_log_event_status_or_annotation(release: Release) -> None:
    release.k(
        "-n", DEMO, "create", "secret", "generic", "canary-source", f"--from-literal=value={CANARY}"
    )
    # The Secret offers itself to the VaultSecret that imports it (examples/README.md).
    release.k(
        "-n", DEMO, "annotate", "secret", "canary-source", "strongroom.io/allow-import=canary"
    )
    release.apply(
        resource(
            "VaultSecret",
            "canary",
            {
                "vaultRef": {"name": "demo"},
                "source": {"fromSecret": {"name": "canary-source", "key": "value"}},
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "canary-reader", "namespace": DEMO},
            "spec": {
                "serviceAccountName": "reader",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                "containers": [
                    {
                        "name": "app",
                        "image": release.get("pod", "read-secret", DEMO)["spec"]["containers"][0][
                            "image"
                        ],
                        "imagePullPolicy": "IfNotPresent",
                        # Proves the value arrived without printing it.
                        "command": ["sh", "-c", "sha256sum /secrets/canary; sleep 3600"],
                        "volumeMounts": [
                            {"name": "vault", "mountPath": "/secrets", "readOnly": True}
                        ],
                    }
                ],
                "volumes": [
                    {
                        "name": "vault",
                        "csi": {
                            "driver": DRIVER,
                            "readOnly": True,
                            "volumeAttributes": {
                                "vault": "demo",
                                "objects": json.dumps([{"kind": "secret", "name": "canary"}]),
                            },
                        },
                    }
                ],
            },
        },
    )
    release.wait_ready("vaultsecret", "canary", DEMO)
    release.k("-n", DEMO, "wait", "--for=condition=Ready", "pod/canary-reader", "--timeout=120s")
    expected = hashlib.sha256(CANARY.encode()).hexdigest()
    release.wait_for(
        "the canary's digest in the pod's log",
        lambda: expected in release.k("-n", DEMO, "logs", "canary-reader").stdout,
        timeout=30,
    )
    places = {"operator log": release.operator_log()}
    for pod in release.items("pods", "-n", NAMESPACE) + release.items("pods", "-n", DEMO):
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        places[f"log of {namespace}/{name}"] = release.k(
            "-n", namespace, "logs", name, "--all-containers", "--prefix", check=False
        ).stdout
    places["events"] = release.k("get", "events", "-A", "-o", "json").stdout
    places.update(metrics_scrapes(release))
    places["strongroom resources"] = release.k("get", API_GROUP_KINDS, "-A", "-o", "json").stdout
    places["pods, services, configmaps"] = release.k(
        "get", "pods,services,configmaps", "-A", "-o", "json"
    ).stdout
    encoded = base64.b64encode(CANARY.encode()).decode()
    leaks = [where for where, text in places.items() if CANARY in text or encoded in text]
    assert not leaks, f"the canary value appears in: {', '.join(leaks)}"
    # The private key of the VaultCertificate the https-tls pod serves with (exportable, so
    # mounted as tls.key): in none of those places either, in PKCS#8 base64 or as a number.
    pem = release.k("-n", DEMO, "exec", "https-tls", "--", "cat", "/tls/tls.key").stdout
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private = key.private_numbers().private_value
    needles = [
        base64.b64encode(der).decode()[36:96],
        format(private, "x").rjust(64, "0")[:48],
        base64.urlsafe_b64encode(private.to_bytes(32, "big")).decode()[:40],
    ]
    leaks = [where for where, text in places.items() if any(n in text for n in needles)]
    assert not leaks, f"the certificate's private key appears in: {', '.join(leaks)}"


def test_helm_upgrade_to_a_changed_value_rolls_out_and_keeps_serving(release: Release) -> None:
    before = {p["metadata"]["uid"] for p in release.operator_pods()}
    release.h(
        "upgrade",
        RELEASE,
        str(ROOT / "charts" / "strongroom"),
        "-n",
        NAMESPACE,
        "--reuse-values",
        "--set=logLevel=DEBUG",
        "--set=csiNode.shareSeconds=10",
        "--wait",
        "--timeout=5m",
        timeout=330,
    )
    deployment = release.get("deployment", "strongroom-operator", NAMESPACE)
    assert "--log-level=DEBUG" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    daemonset = release.get("daemonset", "strongroom-csi-node", NAMESPACE)
    assert "--share-seconds=10" in daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
    # Rolled one pod at a time: the old pods may still be stopping when helm is done.

    def only_new_pods() -> list[dict[str, Any]]:
        pods = release.operator_pods()
        return pods if {p["metadata"]["uid"] for p in pods}.isdisjoint(before) else []

    after = release.wait_for("the old operator pods gone", only_new_pods, timeout=120)
    assert len(after) == 2
    new_pods = {p["metadata"]["name"] for p in after}
    release.wait_for(
        "a new replica holding the Lease", lambda: release.lease_holder() in new_pods, timeout=60
    )
    # The new operator picks up where the old one stopped, and makes new keys.
    release.apply(resource("Key", "after-upgrade", {"vaultRef": {"name": "demo"}, "kty": "EC-HSM"}))
    release.wait_ready("key", "after-upgrade", DEMO)
    release.wait_ready("key", "signing", DEMO)


def test_a_vault_deleted_after_its_pool_goes_at_once_with_an_event(release: Release) -> None:
    """The user deletes the pool first (its deletionPolicy keeps the token store), then the
    vaults: each goes without waiting for a pool that is no longer there, and a PoolGone
    Event on it says what became of its keys."""
    release.k("-n", DEMO, "delete", "pods", "--all", "--timeout=120s", timeout=150)
    release.k("-n", DEMO, "delete", "hsmpool", "demo", "--timeout=180s", timeout=200)
    release.wait_gone("pod", "demo-pool-0", DEMO)
    started = time.monotonic()
    release.k("-n", DEMO, "delete", "vault", "demo", "burst", "--timeout=60s", timeout=90)
    assert time.monotonic() - started < 60
    for vault in ("demo", "burst"):
        events = release.items(
            "events",
            "-n",
            DEMO,
            "--field-selector",
            f"involvedObject.kind=Vault,involvedObject.name={vault},reason=PoolGone",
        )
        assert events, f"no PoolGone Event for Vault {vault}"
        assert "HsmPool 'demo'" in events[-1]["message"], events[-1]["message"]
        assert "deletionPolicy" in events[-1]["message"], events[-1]["message"]


def test_helm_uninstall_leaves_only_the_crds_and_the_pools_volumes(release: Release) -> None:
    # As the chart's README says: the user's resources first, while the operator runs.
    release.k("-n", DEMO, "delete", "pods", "--all", "--timeout=120s")
    release.k("-n", DEMO, "delete", API_GROUP_KINDS, "--all", "--timeout=180s")
    release.h("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=3m", timeout=200)

    def leftovers() -> list[str]:
        found = []
        for kind in (
            "deployments",
            "daemonsets",
            "pods",
            "serviceaccounts",
            "secrets",
            "configmaps",
            "roles",
            "rolebindings",
            "services",
        ):
            for item in release.items(kind, "-n", NAMESPACE):
                name = item["metadata"]["name"]
                if name not in ("default", "kube-root-ca.crt"):
                    found.append(f"{kind}/{name}")
        for kind in ("clusterroles", "clusterrolebindings", "csidrivers"):
            found += [
                f"{kind}/{item['metadata']['name']}"
                for item in release.items(kind)
                if "strongroom" in item["metadata"]["name"]
            ]
        for node in release.items("csinodes"):
            if any(d["name"] == DRIVER for d in node["spec"].get("drivers") or []):
                found.append(f"csinode/{node['metadata']['name']} lists {DRIVER}")
        for item in release.items("all,configmaps,secrets,serviceaccounts", "-n", DEMO):
            labels = item["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") == "strongroom-operator":
                found.append(f"{DEMO}/{item['kind']}/{item['metadata']['name']}")
        return found

    # What a user keeps, as documented: the pool's token store and the secret its PINs
    # derive from (deletionPolicy Retain), and the CRDs.
    kept = {f"{DEMO}/Secret/demo-pool-secret"}
    deadline = time.monotonic() + 120
    while (left := [item for item in leftovers() if item not in kept]) and (
        time.monotonic() < deadline
    ):
        time.sleep(2)
    assert left == []
    assert release.exists("pvc", "demo-pool-tokens", DEMO)
    assert release.exists("secret", "demo-pool-secret", DEMO)
    assert release.exists("crd", "keys.strongroom.io")
