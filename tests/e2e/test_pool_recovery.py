"""Recovering a pool on the installed chart, as docs/security.md has its administrators do it:
a pool made with spec.securityDomain is activated by the operator, whose Secret gives the
blob to take offline; a key signs; a backup is taken on demand; the pool and its Vault are
deleted (the disaster); a new HsmPool recovers from the backup, awaits the holders' upload
(status Recovering), gets it through the official SecurityDomainClient with a security
officer's token after the offline step, and the old key signs again through a new Vault of
the old name.

The tests run in file order in one namespace of their own; each builds on the last.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.securitydomain import SecurityDomainClient
from azure.keyvault.securitydomain.models import SecurityDomain
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from strongroom.devclient import FileTokenCredential
from strongroom.securitydomain.command import make_restore_blob

from ..unit.test_security_domain_formats import make_certificate
from .conftest import namespace_of
from .release import Release, resolving

API = "strongroom.io/v1alpha1"
NS = "recovery-e2e"
DIGEST = hashlib.sha256(b"signed before the disaster, and after").digest()


@dataclass
class Scenario:
    certs: list[Path] = field(default_factory=list)
    keys: list[Path] = field(default_factory=list)
    domain: Path | None = None
    public: dict[str, Any] = field(default_factory=dict)
    backup: str = ""


@pytest.fixture(scope="module")
def ns(release: Release) -> Iterator[str]:
    with namespace_of(release, NS) as name:
        yield name


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def vault_spec(pool: str) -> dict[str, Any]:
    return {
        "hsmPoolRef": {"name": pool},
        "access": [{"serviceAccount": {"name": "signer"}, "roles": ["CryptoUser"]}],
        "softDelete": {"retentionDays": 7, "purgeProtection": False},
    }


def officer() -> str:
    return f"system:serviceaccount:{NS}:recoverer"


def verify(public: dict[str, Any], signature: bytes) -> None:
    def number(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    key = ec.EllipticCurvePublicNumbers(
        number(public["x"]), number(public["y"]), ec.SECP256R1()
    ).public_key()
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    key.verify(der, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def sign(release: Release, vault_name: str) -> bytes:
    token = release.tmp / "recovery-signer.token"
    token.write_text(release.vault_token("signer", NS))
    credential = FileTokenCredential(token)
    ca = str(release.ca_file())
    with release.reach(release.get("vault", vault_name, NS)) as uri:
        key = KeyClient(uri, credential, connection_verify=ca).get_key("signing")
        crypto = CryptographyClient(key, credential, connection_verify=ca)
        return crypto.sign(SignatureAlgorithm.es256, DIGEST).signature


def events_of(release: Release, name: str) -> str:
    return release.k(
        "-n", NS, "get", "events", "--field-selector", f"involvedObject.name={name}", check=False
    ).stdout


def test_the_operator_activates_a_pool_with_a_security_domain(
    release: Release, ns: str, scenario: Scenario
) -> None:
    holders = release.tmp / "holders"
    holders.mkdir(exist_ok=True)
    data = {}
    for i in range(3):
        certificate, key = make_certificate(f"holder {i}")
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        (holders / f"sd{i}.cer").write_bytes(pem)
        (holders / f"sd{i}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        scenario.certs.append(holders / f"sd{i}.cer")
        scenario.keys.append(holders / f"sd{i}.key")
        data[f"holder-{i}.pem"] = pem.decode()
    release.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "holders", "namespace": NS},
            "data": data,
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "backups", "namespace": NS},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        *(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n, "namespace": NS}}
            for n in ("signer", "recoverer")
        ),
        resource(
            "HsmPool",
            "old",
            {
                "securityDomain": {"quorum": 2, "certificates": {"name": "holders"}},
                "backup": {"claimName": "backups", "retain": 3},
                "securityOfficers": [officer()],
                "deletionPolicy": "Delete",
            },
        ),
    )
    pool = release.wait_ready("hsmpool", "old", NS, timeout=300)
    status = pool["status"]
    assert status["securityDomain"] == "Activated", status
    assert status["securityDomainSecret"] == "old-pool-security-domain"
    claim = release.get("pvc", "old-pool-tokens", NS)
    assert claim["metadata"]["annotations"]["strongroom.io/await-activation"] == "true"
    pod = release.get("pod", "old-pool-0", NS)
    hsm = next(c for c in pod["spec"]["containers"] if c["name"] == "hsm")
    assert "--await-activation" in hsm["args"]
    # The administrators' step, as docs/security.md writes it: take the blob, delete the Secret.
    blob = release.k(
        "-n",
        NS,
        "get",
        "secret",
        "old-pool-security-domain",
        "-o",
        "jsonpath={.data.security-domain\\.json}",
    ).stdout
    domain = base64.b64decode(blob).decode()
    parsed = json.loads(domain)
    assert len(parsed["SharedKeys"]["enc_shares"]) == 3 and parsed["SharedKeys"]["required"] == 2
    scenario.domain = release.tmp / "security-domain.json"
    scenario.domain.write_text(domain)
    release.k("-n", NS, "delete", "secret", "old-pool-security-domain")
    events = events_of(release, "old")
    assert "SecurityDomainActivated" in events and "SecurityDomainStored" in events


def test_a_key_signs_and_a_backup_is_taken_on_demand(
    release: Release, ns: str, scenario: Scenario
) -> None:
    release.apply(
        resource("Vault", "books", vault_spec("old")),
        resource(
            "Key",
            "signing",
            {"vaultRef": {"name": "books"}, "kty": "EC-HSM", "curve": "P-256"},
        ),
    )
    release.wait_ready("vault", "books", NS)
    key = release.wait_ready("key", "signing", NS)
    scenario.public = key["status"]["publicKey"]
    verify(scenario.public, sign(release, "books"))
    release.k(
        "-n", NS, "annotate", "hsmpool", "old", "strongroom.io/backup-now=first", "--overwrite"
    )

    def taken() -> dict[str, Any] | None:
        backup = (release.get("hsmpool", "old", NS).get("status") or {}).get("backup") or {}
        last = backup.get("last")
        return last if last and backup.get("lastRequest") == "first" else None

    last = release.wait_for("the on-demand backup", taken, timeout=300)
    assert last["file"].startswith("old-") and last["file"].endswith(".tar")
    assert len(last["sha256"]) == 64 and last["size"] > 0
    pool = release.get("hsmpool", "old", NS)
    assert last["securityDomain"] == pool["status"]["securityDomainId"]
    condition = next(c for c in pool["status"]["conditions"] if c["type"] == "Backup")
    assert condition["status"] == "True" and condition["reason"] == "BackupTaken"
    scenario.backup = last["file"]


def test_the_disaster_the_pool_and_its_vault_are_gone(
    release: Release, ns: str, scenario: Scenario
) -> None:
    release.k("-n", NS, "delete", "key", "signing", "--timeout=120s", timeout=150)
    release.k("-n", NS, "delete", "vault", "books", "--timeout=120s", timeout=150)
    release.k("-n", NS, "delete", "hsmpool", "old", "--timeout=120s", timeout=150)
    release.wait_gone("pod", "old-pool-0", NS, timeout=180)
    assert release.exists("pvc", "backups", NS)


def test_a_new_pool_recovers_from_the_backup_with_the_holders_upload(
    release: Release, ns: str, scenario: Scenario
) -> None:
    assert scenario.backup and scenario.domain is not None
    release.apply(
        resource(
            "HsmPool",
            "new",
            {
                "recoverFrom": {"claimName": "backups", "file": scenario.backup},
                "securityOfficers": [officer()],
            },
        )
    )

    def recovering() -> dict[str, Any] | None:
        status = release.get("hsmpool", "new", NS).get("status") or {}
        return status if status.get("securityDomain") == "Recovering" else None

    status = release.wait_for("the new pool to await the upload", recovering, timeout=300)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AwaitingSecurityDomainUpload"
    assert "https://new-pool.recovery-e2e.svc/securitydomain/upload" in ready["message"]
    pod = release.get("pod", "new-pool-0", NS)
    [init] = pod["spec"]["initContainers"]
    assert init["name"] == "restore"
    assert (
        "laid down the backup" in release.k("-n", NS, "logs", "new-pool-0", "-c", "restore").stdout
    )

    endpoint = status["endpoint"]
    host = endpoint.removeprefix("https://")
    token = release.tmp / "recoverer.token"
    token.write_text(
        release.k(
            "-n", NS, "create", "token", "recoverer", "--audience", endpoint, "--duration=1h"
        ).stdout.strip()
    )
    service = release.get("service", "new-pool", NS)
    with resolving({host: service["spec"]["clusterIP"]}):
        client = SecurityDomainClient(
            endpoint,
            FileTokenCredential(token),
            connection_verify=str(release.ca_file()),
            verify_challenge_resource=False,
        )
        transfer = client.get_transfer_key()
        answer = release.tmp / "transfer-key.json"
        answer.write_text(
            json.dumps({"key_format": "jwk", "transfer_key": str(transfer.transfer_key)})
        )
        # Offline, where the holders' keys are: two of the three.
        value = make_restore_blob(
            scenario.domain, answer, scenario.certs, [scenario.keys[0], scenario.keys[2]]
        )
        client.begin_upload(SecurityDomain(value=value), polling_interval=2).result()
        assert client.get_upload_status().status == "Success"

    pool = release.wait_ready("hsmpool", "new", NS, timeout=300)
    assert pool["status"]["securityDomain"] == "Activated"
    assert "SecurityDomainRestored" in events_of(release, "new")
    # The old key signs again, through a new Vault of the old name on the recovered pool.
    release.apply(resource("Vault", "books", vault_spec("new")))
    release.wait_ready("vault", "books", NS)
    verify(scenario.public, sign(release, "books"))
    # Once restored, the pod no longer carries the restore step.
    release.wait_for(
        "the restore init container to be dropped",
        lambda: (
            "initContainers"
            not in release.get("statefulset", "new-pool", NS)["spec"]["template"]["spec"]
        ),
        timeout=180,
    )
