"""The official azure-keyvault-certificates client against `strongroom dev`: certificates
with their managed key and secret, the Unknown-issuer flow, import, contacts, issuers."""

import base64
import datetime
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContact,
    CertificateContentType,
    CertificatePolicy,
    KeyType,
    WellKnownIssuerNames,
)
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .conftest import Clients


@pytest.fixture(scope="module")
def certs(clients: Clients) -> Iterator[CertificateClient]:
    client = CertificateClient(clients.dev.url, clients.credential, **clients.options)
    yield client
    # The dev server is shared by the tier: leave no certificate (nor its managed key and
    # secret) for the other modules' lists.
    for item in list(client.list_properties_of_certificates()):
        client.begin_delete_certificate(item.name, _polling_interval=0).wait()
    for item in list(client.list_deleted_certificates()):
        client.purge_deleted_certificate(item.name)


def _create(certs: CertificateClient, name: str, policy: CertificatePolicy, **kw: Any) -> Any:
    return certs.begin_create_certificate(name, policy, _polling_interval=0, **kw).result()


def test_default_policy_self_signed_with_managed_key_and_secret(
    certs: CertificateClient, clients: Clients
) -> None:
    cert = _create(certs, "cert-web", CertificatePolicy.get_default(), tags={"app": "cert-web"})
    assert cert.name == "cert-web" and cert.cer and cert.key_id and cert.secret_id
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "DefaultPolicy"
    public = leaf.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 365 <= lifetime.days <= 366
    policy = certs.get_certificate_policy("cert-web")
    assert policy.exportable is True and policy.key_type == KeyType.rsa and policy.key_size == 2048
    assert policy.content_type == CertificateContentType.pkcs12
    assert policy.validity_in_months == 12
    assert policy.lifetime_actions[0].action == "AutoRenew"
    assert policy.lifetime_actions[0].lifetime_percentage == 80
    assert cert.properties.x509_thumbprint == hashlib.sha1(bytes(cert.cer)).digest()  # noqa: S324

    # The secret: the PFX, with the private key (exportable), managed.
    secret = clients.secrets.get_secret("cert-web")
    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    assert secret.properties.key_id == cert.key_id
    key, inside, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert key is not None and inside is not None
    assert inside.public_bytes(serialization.Encoding.DER) == bytes(cert.cer)
    assert key.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
    pem = clients.secrets._client.get_secret(
        "cert-web", "", out_content_type="application/x-pem-file"
    )
    assert "BEGIN PRIVATE KEY" in pem.value and "BEGIN CERTIFICATE" in pem.value

    # The key: managed, and signs what the certificate's public key verifies.
    managed = clients.keys.get_key("cert-web")
    assert managed.properties.managed is True
    digest = hashlib.sha256(b"signed by the certificate's key").digest()
    signed = clients.crypto(managed).sign(SignatureAlgorithm.rs256, digest)
    public.verify(
        signed.signature,
        b"signed by the certificate's key",
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert certs.get_certificate("cert-web").properties.tags == {"app": "cert-web"}


def test_managed_key_and_secret_refuse_changes(certs: CertificateClient, clients: Clients) -> None:
    _create(certs, "cert-guarded", CertificatePolicy.get_default())
    for call in (
        lambda: clients.secrets.set_secret("cert-guarded", "overwrite"),
        lambda: clients.secrets.begin_delete_secret("cert-guarded").wait(),
        lambda: clients.keys.create_rsa_key("cert-guarded"),
        lambda: clients.keys.begin_delete_key("cert-guarded").wait(),
        lambda: clients.keys.update_key_properties("cert-guarded", enabled=False),
    ):
        with pytest.raises(HttpResponseError) as refused:
            call()
        assert refused.value.status_code == 403
    assert clients.secrets.get_secret("cert-guarded").properties.managed is True


def test_ec_hsm_non_exportable_pem(certs: CertificateClient, clients: Clients) -> None:
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject="CN=api.example.test",
        san_dns_names=["api.example.test", "www.example.test"],
        key_type=KeyType.ec_hsm,
        key_curve_name="P-384",
        exportable=False,
        content_type=CertificateContentType.pem,
        validity_in_months=3,
    )
    cert = _create(certs, "cert-api", policy)
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.example.test", "www.example.test"]
    secret = clients.secrets.get_secret("cert-api")
    assert secret.properties.content_type == "application/x-pem-file"
    assert "PRIVATE KEY" not in secret.value and "BEGIN CERTIFICATE" in secret.value
    key = clients.keys.get_key("cert-api")
    digest = hashlib.sha384(b"ec").digest()
    signature = clients.crypto(key).sign(SignatureAlgorithm.es384, digest).signature
    assert clients.crypto(key).verify(SignatureAlgorithm.es384, digest, signature).is_valid
    with pytest.raises(HttpResponseError) as refused:
        _create(certs, "cert-bad", CertificatePolicy(
            issuer_name="Self", subject="CN=x", key_type=KeyType.rsa_hsm, exportable=True
        ))  # fmt: skip
    assert refused.value.status_code == 400 and "exportable" in str(refused.value)


def _ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _sign_csr(csr_der: bytes, ca_key: rsa.RSAPrivateKey, ca: x509.Certificate) -> x509.Certificate:
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .sign(ca_key, hashes.SHA256())
    )


def test_unknown_issuer_csr_merge_cancel_and_delete_pending(
    certs: CertificateClient, clients: Clients
) -> None:
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=signed.test")
    operation = certs.begin_create_certificate("cert-signed", policy).result()
    assert operation.status == "inProgress" and operation.csr
    assert certs.get_certificate_operation("cert-signed").csr == operation.csr
    # Its policy is there before its first version, as in Key Vault.
    assert certs.get_certificate_policy("cert-signed").issuer_name == "Unknown"
    ca_key, ca = _ca()
    leaf = _sign_csr(bytes(operation.csr), ca_key, ca)
    with pytest.raises(HttpResponseError) as mismatch:
        certs.merge_certificate("cert-signed", [ca.public_bytes(serialization.Encoding.DER)])
    assert mismatch.value.status_code == 400
    merged = certs.merge_certificate(
        "cert-signed",
        [
            leaf.public_bytes(serialization.Encoding.DER),
            ca.public_bytes(serialization.Encoding.DER),
        ],
    )
    assert bytes(merged.cer) == leaf.public_bytes(serialization.Encoding.DER)
    assert certs.get_certificate_operation("cert-signed").status == "completed"
    key, inside, chain = pkcs12.load_key_and_certificates(
        base64.b64decode(clients.secrets.get_secret("cert-signed").value), None
    )
    assert key is not None and inside is not None and len(chain) == 1
    digest = hashlib.sha256(b"m").digest()
    signature = clients.crypto(clients.keys.get_key("cert-signed")).sign(
        SignatureAlgorithm.rs256, digest
    )
    leaf.public_key().verify(signature.signature, b"m", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,arg-type]

    certs.begin_create_certificate("cert-cancelled", policy).result()
    cancelled = certs.cancel_certificate_operation("cert-cancelled")
    assert cancelled.cancellation_requested is True and cancelled.status == "cancelled"
    deleted = certs.delete_certificate_operation("cert-cancelled")
    assert deleted.status == "cancelled"
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate_operation("cert-cancelled")


def test_versions_update_list_delete_recover_purge_backup(certs: CertificateClient) -> None:
    first = _create(certs, "cert-cycle", CertificatePolicy.get_default())
    second = _create(certs, "cert-cycle", CertificatePolicy.get_default())
    versions = {p.version for p in certs.list_properties_of_certificate_versions("cert-cycle")}
    assert versions == {first.properties.version, second.properties.version}
    assert certs.get_certificate_version("cert-cycle", first.properties.version).cer == first.cer
    updated = certs.update_certificate_properties("cert-cycle", enabled=False, tags={"t": "1"})
    assert updated.properties.enabled is False and updated.properties.tags == {"t": "1"}
    assert "cert-cycle" in {c.name for c in certs.list_properties_of_certificates()}
    new_policy = certs.update_certificate_policy(
        "cert-cycle",
        CertificatePolicy(issuer_name="Self", subject="CN=renamed", validity_in_months=6),
    )
    assert new_policy.subject == "CN=renamed" and new_policy.validity_in_months == 6
    backup = certs.backup_certificate("cert-cycle")
    deleted = certs.begin_delete_certificate("cert-cycle", _polling_interval=0).result()
    assert deleted.recovery_id.endswith("/deletedcertificates/cert-cycle")
    assert "cert-cycle" in {c.name for c in certs.list_deleted_certificates()}
    assert certs.get_deleted_certificate("cert-cycle").name == "cert-cycle"
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate("cert-cycle")
    certs.begin_recover_deleted_certificate("cert-cycle", _polling_interval=0).result()
    assert certs.get_certificate("cert-cycle").properties.version == second.properties.version
    certs.begin_delete_certificate("cert-cycle", _polling_interval=0).wait()
    certs.purge_deleted_certificate("cert-cycle")
    with pytest.raises(ResourceNotFoundError):
        certs.get_deleted_certificate("cert-cycle")
    restored = certs.restore_certificate_backup(backup)
    assert restored.name == "cert-cycle" and restored.cer == second.cer


def test_import_pfx_with_password_and_pem(certs: CertificateClient, clients: Clients) -> None:
    ca_key, ca = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported")])
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=5))
        .sign(ca_key, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key, leaf, [ca], serialization.BestAvailableEncryption(b"pw")
    )
    imported = certs.import_certificate("imported-pfx", pfx, password="pw")
    assert bytes(imported.cer) == leaf.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(b"i").digest()
    signature = clients.crypto(clients.keys.get_key("imported-pfx")).sign(
        SignatureAlgorithm.es256, digest
    )
    assert (
        clients.crypto(clients.keys.get_key("imported-pfx"))
        .verify(SignatureAlgorithm.es256, digest, signature.signature)
        .is_valid
    )
    with pytest.raises(HttpResponseError) as wrong:
        certs.import_certificate("imported-bad", pfx, password="wrong")
    assert wrong.value.status_code == 400

    pem = (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    policy = CertificatePolicy(
        issuer_name="Unknown", subject="CN=imported", content_type=CertificateContentType.pem
    )
    from_pem = certs.import_certificate("imported-pem", pem, policy=policy)
    assert bytes(from_pem.cer) == leaf.public_bytes(serialization.Encoding.DER)
    secret = clients.secrets.get_secret("imported-pem")
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.value.count("BEGIN CERTIFICATE") == 2


def test_contacts_and_issuers(certs: CertificateClient) -> None:
    contacts = certs.set_contacts(
        [CertificateContact(email="ops@example.test", name="ops", phone="123")]
    )
    assert contacts[0].email == "ops@example.test"
    assert [c.name for c in certs.get_contacts()] == ["ops"]
    assert [c.email for c in certs.delete_contacts()] == ["ops@example.test"]
    with pytest.raises(ResourceNotFoundError):
        certs.get_contacts()
    issuer = certs.create_issuer("digicert", "DigiCert", account_id="acct", password="pw")
    assert issuer.provider == "DigiCert" and issuer.account_id == "acct" and issuer.password is None
    assert certs.update_issuer("digicert", enabled=False).enabled is False
    assert certs.get_issuer("digicert").provider == "DigiCert"
    assert [i.name for i in certs.list_properties_of_issuers()] == ["digicert"]
    certs.delete_issuer("digicert")
    with pytest.raises(ResourceNotFoundError):
        certs.get_issuer("digicert")


@pytest.mark.parametrize(
    "policy, words",
    [
        ({"issuer": {"name": "Self"}, "key_props": {"kty": "RSA", "key_size": 1024},
          "x509_props": {"subject": "CN=x"}}, "key_size"),
        ({"issuer": {"name": "Self"}, "x509_props": {}}, "subject"),
        ({"issuer": {"name": "Self"}, "x509_props": {"subject": "not a dn"}}, "distinguished"),
        ({"issuer": {"name": "Self"}, "x509_props": {"subject": "CN=x", "validity_months": 0}},
         "validity_months"),
        ({"issuer": {"name": "DigiCert"}, "x509_props": {"subject": "CN=x"}}, "external CA"),
        ({"issuer": {"name": "Self"}, "x509_props": {"subject": "CN=x"},
          "secret_props": {"contentType": "text/plain"}}, "contentType"),
        ({"issuer": {"name": "Self"}, "x509_props": {"subject": "CN=x"},
          "lifetime_actions": [{"trigger": {"lifetime_percentage": 100},
                                "action": {"action_type": "AutoRenew"}}]}, "lifetime_percentage"),
    ],
)  # fmt: skip
def test_bad_policies_are_clear_400s(clients: Clients, policy: dict[str, Any], words: str) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the dev server's https URL
        f"{clients.dev.url}/certificates/bad/create?api-version=2026-04-01",
        data=json.dumps({"policy": policy}).encode(),
        headers={
            "Authorization": f"Bearer {clients.dev.token}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    import ssl

    context = ssl.create_default_context(cafile=clients.dev.ca)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context)  # noqa: S310
    assert refused.value.code == 400
    body = json.loads(refused.value.read())
    assert body["error"]["code"] == "BadParameter" and words in body["error"]["message"]


def test_a_canary_private_key_never_reaches_logs_or_audit(
    certs: CertificateClient, clients: Clients
) -> None:
    canary = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canary")])
    now = datetime.datetime.now(datetime.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(canary.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=5))
        .sign(canary, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(
        None, canary, leaf, None, serialization.NoEncryption()
    )
    certs.import_certificate("canary", pfx)
    # PFX passwords: the right one, and a wrong one refused; neither is written anywhere.
    password, wrong = f"pw-{uuid.uuid4().hex}", f"wrong-{uuid.uuid4().hex}"
    locked = pkcs12.serialize_key_and_certificates(
        None,
        canary,
        leaf,
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )
    with pytest.raises(HttpResponseError) as refused:
        certs.import_certificate("canary-locked", locked, password=wrong)
    assert refused.value.status_code == 400
    certs.import_certificate("canary-locked", locked, password=password)
    certs.begin_delete_certificate("canary-locked", _polling_interval=0).wait()
    exported = clients.secrets.get_secret("canary").value
    certs.begin_delete_certificate("canary", _polling_interval=0).wait()
    assert exported  # the exportable key did leave, to its caller, in the answer only
    der = canary.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    numbers = canary.private_numbers()
    log = clients.dev.log_text()
    assert "canary" in log  # the audit lines of these calls are there
    for needle in (
        base64.b64encode(der).decode()[40:100],
        base64.b64encode(pfx).decode()[40:100],
        exported[40:100],
        format(numbers.d, "x")[:48],
        str(numbers.d)[:48],
        format(numbers.p, "x")[:48],
        password,
        wrong,
        base64.b64encode(password.encode()).decode(),
    ):
        assert needle not in log
