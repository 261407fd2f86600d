"""Recovering a pool on the installed chart, as docs/security.md has its administrators do it:
a pool made with spec.securityDomain (3 holders' certificates, quorum 2) is activated by the
operator, whose Secret gives the blob to take offline; keys of every type, secrets and a
certificate are made, a key and a secret are soft-deleted, a backup is taken on demand and
copied off the cluster; the pool, its token store and its whole namespace are deleted (the
disaster); a new HsmPool in another namespace recovers from the copied backup, awaits the
holders' upload (status Recovering), gets it through the official SecurityDomainClient with a
security officer's token after the offline step with 2 of the 3 private keys, and then every
key signs with its old public key, every secret reads its old value, the certificate is the
same, and the soft-deleted objects are recovered. Prints the time from "new pool created" to
"first signature".

The tests run in file order; each builds on the last.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyVaultCertificate
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from azure.keyvault.securitydomain import SecurityDomainClient
from azure.keyvault.securitydomain.models import SecurityDomain
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from strongroom.devclient import FileTokenCredential
from strongroom.securitydomain.command import make_restore_blob

from ..securitydomain_canaries import canaries, leaks
from ..unit.test_security_domain_formats import make_certificate
from .conftest import delete_contents, namespace_of
from .release import IMAGE, Release, resolving

API = "strongroom.io/v1alpha1"
NS = "recovery-e2e"
NEW_NS = "recovery-e2e-new"
DIGEST = hashlib.sha256(b"signed before the disaster, and after").digest()
WRAPPED_KEY = b"w" * 32
# Made through the vault's API with KeyClient, beside the Key resource `signing` (EC-HSM):
# every other key type and size family. name -> (kind, size or curve, in the HSM flag).
API_KEYS: dict[str, tuple[str, Any, bool]] = {
    "rsa-hsm": ("RSA", 2048, True),
    "rsa": ("RSA", 3072, False),
    "ec": ("EC", "P-256", False),
    "oct-hsm": ("oct", 256, True),
}
SECRET_VALUE = "kept across the disaster"
DELETED_SECRET_VALUE = "soft-deleted before the backup"
RUN_AS = 65532  # the pool's user: the backup file is its


@dataclass
class Scenario:
    certs: list[Path] = field(default_factory=list)
    keys: list[Path] = field(default_factory=list)
    domain: Path | None = None
    public: dict[str, dict[str, Any]] = field(default_factory=dict)
    wrapped: str = ""
    certificate: bytes = b""
    backup: str = ""
    backup_sha256: str = ""
    copied: Path | None = None


@pytest.fixture(scope="module")
def ns(release: Release) -> Iterator[str]:
    """The old pool's namespace; the disaster deletes it, so this only cleans up after a
    failure that left it."""
    release.k("create", "namespace", NS)
    release.cleanups.append(NS)
    release.wait_for(
        f"namespace {NS}'s default ServiceAccount",
        lambda: release.exists("serviceaccount", "default", NS),
    )
    yield NS
    if release.exists("namespace", NS):
        delete_contents(release, NS)
        release.k("delete", "namespace", NS, "--timeout=120s", timeout=150, check=False)
    release.cleanups.remove(NS)


@pytest.fixture(scope="module")
def new_ns(release: Release) -> Iterator[str]:
    with namespace_of(release, NEW_NS) as name:
        yield name


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def resource(kind: str, name: str, spec: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def accounts(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": n, "namespace": namespace},
        }
        for n in ("signer", "recoverer")
    ]


def backups_claim(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "backups", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def courier(namespace: str) -> dict[str, Any]:
    """A pod that mounts the backups claim, to carry a backup file off or onto it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "courier", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "courier",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "backups", "mountPath": "/backups"}],
                }
            ],
            "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": "backups"}}],
        },
    }


def exec_bytes(
    release: Release, namespace: str, command: list[str], stdin: bytes | None = None
) -> bytes:
    """`kubectl exec` in the courier pod with binary input and output; fails on any error."""
    result = subprocess.run(
        [
            release.kubectl,
            "-n",
            namespace,
            "exec",
            *(["-i"] if stdin is not None else []),
            "courier",
            "--",
            *command,
        ],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def start_courier(release: Release, namespace: str) -> None:
    release.apply(courier(namespace))
    release.k(
        "-n",
        namespace,
        "wait",
        "--for=condition=Ready",
        "pod/courier",
        "--timeout=180s",
        timeout=200,
    )


def vault_spec(pool: str) -> dict[str, Any]:
    return {
        "hsmPoolRef": {"name": pool},
        "access": [{"serviceAccount": {"name": "signer"}, "roles": ["Administrator"]}],
        "softDelete": {"retentionDays": 7, "purgeProtection": False},
    }


def officer(namespace: str = NS) -> str:
    return f"system:serviceaccount:{namespace}:recoverer"


def number(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def verify(public: dict[str, Any], signature: bytes) -> None:
    """The signature over DIGEST checks with the public JWK (EC: ES256, RSA: RS256)."""
    if public["kty"].startswith("RSA"):
        rsa_key = rsa.RSAPublicNumbers(number(public["e"]), number(public["n"])).public_key()
        rsa_key.verify(
            signature,
            DIGEST,
            padding.PKCS1v15(),
            Prehashed(hashes.SHA256()),
        )
        return
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[public["crv"]]
    key = ec.EllipticCurvePublicNumbers(
        number(public["x"]), number(public["y"]), curve
    ).public_key()
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    key.verify(der, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def algorithm(public: dict[str, Any]) -> SignatureAlgorithm:
    if public["kty"].startswith("RSA"):
        return SignatureAlgorithm.rs256
    return SignatureAlgorithm.es256


def public_part(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k in ("kty", "crv", "n", "e", "x", "y")}


def public_of(jwk: Any) -> dict[str, Any]:
    """The public half of an SDK JsonWebKey, as the Key resource's status shows one."""
    kty = str(jwk.kty.value if hasattr(jwk.kty, "value") else jwk.kty)
    if kty.startswith("RSA"):
        return {"kty": kty, "n": b64(jwk.n), "e": b64(jwk.e)}
    if kty.startswith("EC"):
        crv = str(jwk.crv.value if hasattr(jwk.crv, "value") else jwk.crv)
        return {"kty": kty, "crv": crv, "x": b64(jwk.x), "y": b64(jwk.y)}
    return {"kty": kty}


@dataclass
class Clients:
    keys: KeyClient
    secrets: SecretClient
    certificates: CertificateClient
    credential: FileTokenCredential
    ca: str
    uri: str
    token: str

    def sign(self, name: str, public: dict[str, Any]) -> None:
        key = self.keys.get_key(name)
        crypto = CryptographyClient(key, self.credential, connection_verify=self.ca)
        verify(public, crypto.sign(algorithm(public), DIGEST).signature)


def clients(release: Release, namespace: str, uri: str) -> Clients:
    token = release.tmp / f"recovery-signer-{namespace}.token"
    text = release.vault_token("signer", namespace)
    token.write_text(text)
    credential = FileTokenCredential(token)
    ca = str(release.ca_file())
    return Clients(
        KeyClient(uri, credential, connection_verify=ca),
        SecretClient(uri, credential, connection_verify=ca),
        CertificateClient(uri, credential, connection_verify=ca),
        credential,
        ca,
        uri,
        text,
    )


def wrap(release: Release, c: Clients, name: str, op: str, value: bytes) -> bytes:
    """Key wrap through the vault's REST API (the SDK would wrap an oct key locally), with
    the key's current version."""
    version = c.keys.get_key(name).properties.version
    answer = release.vault_call(
        c.uri,
        c.token,
        "POST",
        f"/keys/{name}/{version}/{op}",
        {"alg": "A256KW", "value": b64(value)},
    )
    assert answer.status_code == 200, answer.text
    return base64.urlsafe_b64decode(answer.json()["value"] + "==")


def events_of(release: Release, name: str, namespace: str = NS) -> str:
    return release.k(
        "-n",
        namespace,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={name}",
        check=False,
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
        backups_claim(NS),
        *accounts(NS),
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


def test_keys_secrets_and_a_certificate_are_made_and_a_backup_is_taken_on_demand(
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
    vault = release.wait_ready("vault", "books", NS)
    key = release.wait_ready("key", "signing", NS)
    scenario.public["signing"] = public_part(key["status"]["publicKey"])
    with release.reach(vault) as uri:
        c = clients(release, NS, uri)
        c.sign("signing", scenario.public["signing"])
        for name, (kind, size, hsm) in API_KEYS.items():
            if kind == "RSA":
                made = c.keys.create_rsa_key(name, size=size, hardware_protected=hsm)
            elif kind == "EC":
                made = c.keys.create_ec_key(name, curve=size, hardware_protected=hsm)
            else:
                made = c.keys.create_oct_key(name, size=size, hardware_protected=hsm)
            scenario.public[name] = public_of(made.key)
            if kind != "oct":
                c.sign(name, scenario.public[name])
        scenario.wrapped = b64(wrap(release, c, "oct-hsm", "wrapkey", WRAPPED_KEY))
        retired = c.keys.create_ec_key("retired", curve="P-256", hardware_protected=True)
        scenario.public["retired"] = public_of(retired.key)
        c.keys.begin_delete_key("retired").wait()
        assert c.secrets.set_secret("kept", SECRET_VALUE).value == SECRET_VALUE
        c.secrets.set_secret("dropped", DELETED_SECRET_VALUE)
        c.secrets.begin_delete_secret("dropped").wait()
        certificate = c.certificates.begin_create_certificate(
            "tls", CertificatePolicy.get_default()
        ).result()
        assert isinstance(certificate, KeyVaultCertificate) and certificate.cer
        scenario.certificate = bytes(certificate.cer)
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
    scenario.backup_sha256 = last["sha256"]


def test_the_disaster_the_pool_its_store_and_its_namespace_are_gone(
    release: Release, ns: str, scenario: Scenario
) -> None:
    # The administrators copy the backup off the cluster, as they would to other storage.
    start_courier(release, NS)
    copied = exec_bytes(release, NS, ["cat", f"/backups/{scenario.backup}"])
    assert hashlib.sha256(copied).hexdigest() == scenario.backup_sha256
    scenario.copied = release.tmp / scenario.backup
    scenario.copied.write_bytes(copied)
    release.k("-n", NS, "delete", "pod", "courier", "--timeout=120s", timeout=150)
    release.k("-n", NS, "delete", "key", "signing", "--timeout=120s", timeout=150)
    release.k("-n", NS, "delete", "vault", "books", "--timeout=120s", timeout=150)
    release.k("-n", NS, "delete", "hsmpool", "old", "--timeout=120s", timeout=150)
    release.wait_gone("pod", "old-pool-0", NS, timeout=180)
    release.k("delete", "namespace", NS, "--timeout=300s", timeout=330)
    assert not release.exists("namespace", NS)


def test_a_new_pool_in_another_namespace_recovers_with_the_holders_upload(
    release: Release, new_ns: str, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scenario.copied is not None and scenario.domain is not None
    # The backup, brought back onto a volume of the new namespace.
    release.apply(*accounts(NEW_NS), backups_claim(NEW_NS))
    start_courier(release, NEW_NS)
    exec_bytes(
        release,
        NEW_NS,
        ["sh", "-c", f"cat > /backups/{scenario.backup}"],
        stdin=scenario.copied.read_bytes(),
    )
    check = exec_bytes(release, NEW_NS, ["sha256sum", f"/backups/{scenario.backup}"])
    assert check.decode().split()[0] == scenario.backup_sha256
    release.k("-n", NEW_NS, "delete", "pod", "courier", "--timeout=120s", timeout=150)

    created = time.monotonic()
    release.apply(
        resource(
            "HsmPool",
            "new",
            {
                "recoverFrom": {"claimName": "backups", "file": scenario.backup},
                "securityOfficers": [officer(NEW_NS)],
            },
            NEW_NS,
        )
    )

    def recovering() -> dict[str, Any] | None:
        status = release.get("hsmpool", "new", NEW_NS).get("status") or {}
        return status if status.get("securityDomain") == "Recovering" else None

    status = release.wait_for("the new pool to await the upload", recovering, timeout=300)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "AwaitingSecurityDomainUpload"
    assert f"https://new-pool.{NEW_NS}.svc/securitydomain/upload" in ready["message"]
    pod = release.get("pod", "new-pool-0", NEW_NS)
    [init] = pod["spec"]["initContainers"]
    assert init["name"] == "restore"
    restore_log = release.k("-n", NEW_NS, "logs", "new-pool-0", "-c", "restore").stdout
    assert "laid down the backup" in restore_log and f"of pool {NS}/old" in restore_log

    endpoint = status["endpoint"]
    host = endpoint.removeprefix("https://")
    token = release.tmp / "recoverer.token"
    token.write_text(
        release.k(
            "-n", NEW_NS, "create", "token", "recoverer", "--audience", endpoint, "--duration=1h"
        ).stdout.strip()
    )
    service = release.get("service", "new-pool", NEW_NS)
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

    pool = release.wait_ready("hsmpool", "new", NEW_NS, timeout=300)
    assert pool["status"]["securityDomain"] == "Activated"
    assert "SecurityDomainRestored" in events_of(release, "new", NEW_NS)
    # The old keys, through a new Vault of the old name on the recovered pool.
    release.apply(resource("Vault", "books", vault_spec("new"), NEW_NS))
    vault = release.wait_ready("vault", "books", NEW_NS)
    with release.reach(vault) as uri:
        c = clients(release, NEW_NS, uri)
        c.sign("signing", scenario.public["signing"])
        first_signature = time.monotonic() - created
        for name in ("signing", *API_KEYS):
            got = c.keys.get_key(name)
            assert public_of(got.key) == scenario.public[name], name
            if API_KEYS.get(name, ("",))[0] != "oct":
                c.sign(name, scenario.public[name])
        unwrapped = wrap(
            release, c, "oct-hsm", "unwrapkey", base64.urlsafe_b64decode(scenario.wrapped + "==")
        )
        assert unwrapped == WRAPPED_KEY
        assert c.secrets.get_secret("kept").value == SECRET_VALUE
        assert bytes(c.certificates.get_certificate("tls").cer or b"") == scenario.certificate
        # Soft-deleted before the backup: still recoverable after the recovery.
        assert c.keys.get_deleted_key("retired").name == "retired"
        c.keys.begin_recover_deleted_key("retired").wait()
        c.sign("retired", scenario.public["retired"])
        c.secrets.begin_recover_deleted_secret("dropped").wait()
        assert c.secrets.get_secret("dropped").value == DELETED_SECRET_VALUE
    with capsys.disabled():  # the measurement, shown whether or not pytest captures
        print(
            f"\nrecovery: new pool created -> first signature {first_signature:.1f}s "
            f"(backup {scenario.copied.stat().st_size} bytes, {len(scenario.public)} keys)"
        )
    # The canary: the domain's root secret, shares, pool secret and the holders' private keys
    # are in no log of the operator or the pool (audit lines, the restore step included), no
    # Event and no status.
    secrets = canaries(scenario.domain.read_text(), scenario.certs, scenario.keys)
    seen = {
        "operator logs": release.operator_log(),
        "pool pod logs": release.k(
            "-n", NEW_NS, "logs", "new-pool-0", "--all-containers", "--prefix"
        ).stdout,
        "events": release.k("-n", NEW_NS, "get", "events", "-o", "json").stdout,
        "HsmPool": json.dumps(release.get("hsmpool", "new", NEW_NS)),
        "Vault": json.dumps(release.get("vault", "books", NEW_NS)),
    }
    assert '"operation":"SecurityDomainUpload"' in seen["pool pod logs"]
    for what, text in seen.items():
        assert leaks(text, secrets) == [], what
    # Once restored, the pod no longer carries the restore step.
    release.wait_for(
        "the restore init container to be dropped",
        lambda: (
            "initContainers"
            not in release.get("statefulset", "new-pool", NEW_NS)["spec"]["template"]["spec"]
        ),
        timeout=180,
    )
