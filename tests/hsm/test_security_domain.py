"""The pool's security domain with the official `azure-keyvault-securitydomain` client against
`strongroom dev --await-activation`: activation by download (waiting on the poller), the
holders' offline step with strongroom's own command code, restore by upload into a fresh pool
holding a copy of the old pool's tokens and records, and the old keys working there; every
refusal clear and changing nothing."""

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
)
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from azure.keyvault.securitydomain import SecurityDomainClient
from azure.keyvault.securitydomain.models import (
    CertificateInfo,
    SecurityDomain,
    SecurityDomainJsonWebKey,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from strongroom.devclient import FileTokenCredential
from strongroom.securitydomain import document
from strongroom.securitydomain.command import make_restore_blob

from ..securitydomain_canaries import canaries, encodings, leaks
from ..unit.test_security_domain_formats import make_certificate
from .conftest import DevServer, start_dev, stop_dev

DIGEST = b"\x5a" * 32


@dataclass
class Holders:
    certs: list[Path]
    keys: list[Path]

    def jwks(self, indexes: list[int] | None = None) -> list[SecurityDomainJsonWebKey]:
        from cryptography import x509

        chosen = self.certs if indexes is None else [self.certs[i] for i in indexes]
        return [
            SecurityDomainJsonWebKey(
                document.certificate_jwk(x509.load_pem_x509_certificate(p.read_bytes()))
            )
            for p in chosen
        ]


def make_holders(where: Path, count: int) -> Holders:
    where.mkdir(parents=True, exist_ok=True)
    certs, keys = [], []
    for i in range(count):
        certificate, key = make_certificate(f"holder {i}")
        cert_path, key_path = where / f"sd{i}.cer", where / f"sd{i}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        certs.append(cert_path)
        keys.append(key_path)
    return Holders(certs, keys)


def sd_client(dev: DevServer, token_file: str | None = None) -> SecurityDomainClient:
    return SecurityDomainClient(
        dev.info["hsmUrl"],
        FileTokenCredential(token_file or dev.token_file),
        connection_verify=dev.ca,
        verify_challenge_resource=False,
    )


def key_client(dev: DevServer) -> KeyClient:
    return KeyClient(
        dev.url,
        FileTokenCredential(dev.token_file),
        connection_verify=dev.ca,
        verify_challenge_resource=False,
    )


@dataclass
class OldPool:
    state: Path
    holders: Holders
    outsider: Holders
    domain: str
    public_key: ec.EllipticCurvePublicKey
    signature: bytes
    key_id: str


def _not_activated(exc: pytest.ExceptionInfo[HttpResponseError]) -> None:
    assert exc.value.status_code == 409
    assert "not activated" in str(exc.value.message)


@pytest.fixture(scope="module")
def old_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldPool]:
    """A pool activated by the official client, with a key and a secret made after; stopped."""
    base = tmp_path_factory.mktemp("old-pool")
    holders = make_holders(base / "holders", 3)
    outsider = make_holders(base / "outsider", 1)
    dev = start_dev(base / "state", base / "dev.log", await_activation=True)
    try:
        assert dev.info["hsmUrl"].startswith("https://localhost:")
        keys = key_client(dev)
        # Not activated: no key operation, with Key Vault's error body saying why.
        with pytest.raises(HttpResponseError) as refused:
            keys.create_ec_key("before", curve="P-256")
        _not_activated(refused)
        client = sd_client(dev)
        poller = client.begin_download(
            CertificateInfo(certificates=holders.jwks(), required=2), polling_interval=1
        )
        domain = poller.result()
        assert poller.status().lower() in ("success", "succeeded")
        status = client.get_download_status()
        assert status.status == "Success"
        value = domain.value
        parsed = json.loads(value)
        assert parsed["version"] == 2 and parsed["SharedKeys"]["required"] == 2
        assert len(parsed["SharedKeys"]["enc_shares"]) == 3
        # Activated: the vault works now.
        key = keys.create_ec_key("signing", curve="P-256", hardware_protected=True)
        crypto = CryptographyClient(
            key,
            FileTokenCredential(dev.token_file),
            connection_verify=dev.ca,
            verify_challenge_resource=False,
        )
        signature = crypto.sign(SignatureAlgorithm.es256, DIGEST).signature
        secrets = SecretClient(
            dev.url,
            FileTokenCredential(dev.token_file),
            connection_verify=dev.ca,
            verify_challenge_resource=False,
        )
        assert secrets.set_secret("kept", "across the restore").value == "across the restore"
        jwk = key.key
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1()
        ).public_key()
        # A second download is refused, whatever certificates it names.
        with pytest.raises(ResourceExistsError) as again:
            client.begin_download(
                CertificateInfo(certificates=outsider.jwks() + holders.jwks([0, 1]), required=2),
                polling_interval=1,
            ).result()
        assert "downloaded already" in str(again.value.message)
        assert key.id is not None
        yield OldPool(base / "state", holders, outsider, value, public, signature, key.id)
    finally:
        stop_dev(dev)


def _verify(pool: OldPool, signature: bytes) -> None:
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    pool.public_key.verify(der, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_the_download_is_a_managed_hsm_security_domain(old_pool: OldPool) -> None:
    _verify(old_pool, old_pool.signature)
    parsed = json.loads(old_pool.domain)
    assert [s["x5t_256"] for s in parsed["SharedKeys"]["enc_shares"]] == [
        j["x5t#S256"] for j in old_pool.holders.jwks()
    ]
    assert [d["tag"] for d in parsed["EncData"]["data"]] == ["strongroom_pool"]
    # The pool secret is in the blob only encrypted.
    secret = (old_pool.state / "pool-secret").read_text().strip()
    assert secret not in old_pool.domain


@pytest.fixture(scope="module")
def new_pool(tmp_path_factory: pytest.TempPathFactory, old_pool: OldPool) -> Iterator[DevServer]:
    """A fresh pool awaiting activation, holding a copy of the old pool's tokens and records
    (as a backup would give them back); its own pool secret is not the old one."""
    base = tmp_path_factory.mktemp("new-pool")
    state = base / "state"
    first = start_dev(state, base / "dev.log", await_activation=True)
    stop_dev(first)
    assert (state / "pool-secret").read_text() != (old_pool.state / "pool-secret").read_text()
    for token in (old_pool.state / "hsm" / "tokens").iterdir():
        shutil.copytree(token, state / "hsm" / "tokens" / token.name)
    shutil.rmtree(state / "records", ignore_errors=True)
    shutil.copytree(old_pool.state / "records", state / "records")
    dev = start_dev(state, base / "dev.log", keep=True, await_activation=True)
    yield dev
    stop_dev(dev)


def _blob(
    pool: OldPool, tmp: Path, transfer: Any, keys: list[int], holders: Holders | None = None
) -> str:
    holders = holders or pool.holders
    (tmp / "domain.json").write_text(pool.domain)
    (tmp / "transfer.json").write_text(json.dumps(transfer))
    return make_restore_blob(
        tmp / "domain.json",
        tmp / "transfer.json",
        list(holders.certs) + list(pool.outsider.certs),
        [holders.keys[i] for i in keys],
    )


def test_a_restore_with_the_official_client_opens_the_old_keys(
    old_pool: OldPool, new_pool: DevServer, tmp_path: Path
) -> None:
    client = sd_client(new_pool)
    keys = key_client(new_pool)
    with pytest.raises(HttpResponseError) as refused:
        keys.get_key("signing")
    _not_activated(refused)
    # A download into a pool holding another pool's tokens is refused.
    with pytest.raises(ResourceExistsError) as download:
        client.begin_download(
            CertificateInfo(certificates=old_pool.outsider.jwks() + old_pool.holders.jwks([0, 1])),
            polling_interval=1,
        ).result()
    assert "holds vault tokens already" in str(download.value.message)

    transfer = client.get_transfer_key()
    assert transfer.key_format == "jwk"
    transfer_jwk = json.loads(str(transfer.transfer_key))
    assert transfer_jwk["alg"] == "RSA-OAEP-256" and len(transfer_jwk["x5c"]) == 1
    assert json.loads(str(client.get_transfer_key().transfer_key)) == transfer_jwk  # made once
    answer = {"key_format": "jwk", "transfer_key": str(transfer.transfer_key)}

    # M - 1 keys, or a key whose certificate is not in the set, make no blob.
    with pytest.raises(document.DomainError, match="needs 2 shares; the keys given open 1"):
        _blob(old_pool, tmp_path, answer, [1])
    with pytest.raises(document.DomainError, match="open 1"):
        make_restore_blob(
            _write(tmp_path / "d.json", old_pool.domain),
            _write(tmp_path / "t.json", json.dumps(answer)),
            old_pool.holders.certs + old_pool.outsider.certs,
            [old_pool.holders.keys[0], old_pool.outsider.keys[0]],
        )
    # A tampered download makes no blob.
    tampered = json.loads(old_pool.domain)
    share = tampered["SharedKeys"]["enc_shares"][2]
    parts = share["enc_key"].split(".")
    parts[4] = ("A" if parts[4][0] != "A" else "B") + parts[4][1:]
    share["enc_key"] = ".".join(parts)
    with pytest.raises(document.DomainError, match="authentication tag does not verify"):
        make_restore_blob(
            _write(tmp_path / "tampered.json", json.dumps(tampered)),
            _write(tmp_path / "t.json", json.dumps(answer)),
            old_pool.holders.certs,
            [old_pool.holders.keys[2], old_pool.holders.keys[0]],
        )

    value = _blob(old_pool, tmp_path, answer, [2, 0])

    # Tampered uploads are refused with what is wrong, and nothing changes.
    refusals = []
    doc = json.loads(value)
    parts = doc["EncData"]["data"][0]["compact_jwe"].split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    doc["EncData"]["data"][0]["compact_jwe"] = ".".join(parts)
    refusals.append((json.dumps(doc), "authentication tag does not verify"))
    doc = json.loads(value)
    parts = doc["EncData"]["data"][0]["compact_jwe"].split(".")
    parts[4] = parts[4][:22]  # a 16-byte tag, which Azure's CLI would let through
    doc["EncData"]["data"][0]["compact_jwe"] = ".".join(parts)
    refusals.append((json.dumps(doc), "16 bytes, not 32"))
    doc = json.loads(value)
    doc["WrappedKey"]["x5t_256"] = old_pool.holders.jwks([0])[0]["x5t#S256"]
    refusals.append((json.dumps(doc), "made for a different transfer key"))
    doc = json.loads(value)
    doc["EncData"]["data"].append(dict(doc["EncData"]["data"][0], tag="extra"))
    refusals.append((json.dumps(doc), "not exactly"))
    refusals.append((old_pool.domain, "no 'WrappedKey'"))
    refusals.append(("not json", "not JSON"))
    for body, match in refusals:
        with pytest.raises(HttpResponseError) as upload:
            client.begin_upload(SecurityDomain(value=body), polling_interval=1).result()
        assert upload.value.status_code == 400, body[:80]
        assert match in str(upload.value.message)
        failed = client.get_upload_status()
        assert failed.status == "Failed" and match in failed.status_details
        with pytest.raises(HttpResponseError) as still:
            keys.get_key("signing")
        _not_activated(still)

    # A blob made for another pool's transfer key (another pool's transfer certificate).
    other, _ = make_certificate("another pool's transfer key", 3072)
    elsewhere = _blob(old_pool, tmp_path, document.certificate_jwk(other), [0, 1])
    with pytest.raises(HttpResponseError) as wrong:
        client.begin_upload(SecurityDomain(value=elsewhere), polling_interval=1).result()
    assert wrong.value.status_code == 400 and "different transfer key" in str(wrong.value.message)

    # The right blob restores the pool.
    poller = client.begin_upload(SecurityDomain(value=value), polling_interval=1)
    assert poller.result() is None
    assert client.get_upload_status().status == "Success"

    key = keys.get_key("signing")
    assert key.id == old_pool.key_id.replace(old_pool.key_id.split("/keys/")[0], new_pool.url)
    crypto = CryptographyClient(
        key,
        FileTokenCredential(new_pool.token_file),
        connection_verify=new_pool.ca,
        verify_challenge_resource=False,
    )
    _verify(old_pool, crypto.sign(SignatureAlgorithm.es256, DIGEST).signature)
    secrets = SecretClient(
        new_pool.url,
        FileTokenCredential(new_pool.token_file),
        connection_verify=new_pool.ca,
        verify_challenge_resource=False,
    )
    assert secrets.get_secret("kept").value == "across the restore"

    # Activated now: no second upload, no download, no transfer key.
    with pytest.raises(ResourceExistsError) as again:
        client.begin_upload(SecurityDomain(value=value), polling_interval=1).result()
    assert "restored by an upload already" in str(again.value.message)
    with pytest.raises(ResourceExistsError):
        client.get_transfer_key()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_pool_activated_at_start_never_exports_its_domain(dev: DevServer, tmp_path: Path) -> None:
    holders = make_holders(tmp_path, 3)
    with pytest.raises(ResourceExistsError) as refused:
        sd_client(dev).begin_download(
            CertificateInfo(certificates=holders.jwks(), required=2), polling_interval=1
        ).result()
    assert "activated at start without a security domain" in str(refused.value.message)


def test_only_the_pools_security_officers_may(dev: DevServer, tmp_path: Path) -> None:
    holders = make_holders(tmp_path, 3)
    reader = tmp_path / "reader-token"
    reader.write_text(dev.issue("dev:reader"))
    with pytest.raises(HttpResponseError) as forbidden:
        sd_client(dev, str(reader)).begin_download(
            CertificateInfo(certificates=holders.jwks(), required=2), polling_interval=1
        ).result()
    assert forbidden.value.status_code == 403
    assert "not a security officer of this pool" in str(forbidden.value.message)
    forged = tmp_path / "forged-token"
    forged.write_text("e30.e30.c2ln")
    with pytest.raises(ClientAuthenticationError):
        sd_client(dev, str(forged)).get_download_status()


def test_bad_requests_get_key_vaults_error_body(dev: DevServer) -> None:
    import http.client
    import ssl

    port = int(dev.url.rsplit(":", 1)[1])
    context = dev.admin_context()
    for method, path, body, status, words in (
        ("POST", "/securitydomain/download?api-version=2025-07-01", b"{}", 400, "'certificates'"),
        ("POST", "/securitydomain/download?api-version=1999-01-01", b"{}", 400, "not recognized"),
        ("POST", "/securitydomain/upload?api-version=7.5", b'{"value": 1}', 400, "'value'"),
        ("GET", "/securitydomain/download/pending", None, 404, "No security domain download"),
    ):
        connection = http.client.HTTPSConnection("localhost", port, context=context)
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        assert response.status == status, (path, answer)
        assert words in answer["error"]["message"] and answer["error"]["code"]
    assert isinstance(context, ssl.SSLContext)


def test_no_domain_secret_in_any_log_or_audit_line(
    old_pool: OldPool, new_pool: DevServer, tmp_path: Path
) -> None:
    """After a download, refused uploads and a restore: the root secret, every share, the pool
    secret and the holders' private keys appear in neither pool's log (audit lines
    included), in hex, base64, base64url or as text. The check sees the secrets: each is
    recovered here the way the holders would, and one of them is shown to be findable."""
    secrets = canaries(old_pool.domain, old_pool.holders.certs, old_pool.holders.keys)
    assert len(secrets) == 1 + 3 + 1 + 3 * 3
    pool_secret = (old_pool.state / "pool-secret").read_text().strip()
    assert any(
        pool_secret in form or form in pool_secret
        for form in encodings(secrets["item strongroom_pool"])
    ), "the canaries must include the pool secret itself"
    try:  # a pool-level call on the new pool, whatever state the tests before left it in
        sd_client(new_pool).get_upload_status()
    except HttpResponseError:
        pass
    logs = {
        "old pool": (old_pool.state.parent / "dev.log").read_text(errors="replace"),
        "new pool": new_pool.log.read_text(errors="replace"),
    }
    for name, text in logs.items():
        # Not vacuous: the pool's security-domain calls are in its audit lines.
        assert '"audit":true' in text and '"operation":"SecurityDomain' in text, name
        assert leaks(text, secrets) == [], name
    # And the check would find one: a log line with a share in it is caught.
    assert leaks(f"share={secrets['share 1'].hex()}", secrets) == ["share 1"]
