"""VaultCertificate reconciles driven against a real vault server (`strongroom dev`).

The operator's reconcile functions and pool client run as in the operator, with a client
certificate from the dev server's client CA. Only the Kubernetes side is a fake: which
vault a resource names, and the Secret a signed chain is put in.
"""

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from strongroom.builders.common import Owner
from strongroom.models import VaultCertificateSpec, VaultCertificateStatus
from strongroom.reconcile import vaultcertificate as cert_reconcile
from strongroom.reconcile.context import Context
from strongroom.reconcile.errors import InvalidSpec
from strongroom.reconcile.poolapi import VaultAddress

from .conftest import DevServer
from .test_management_api import manage
from .test_reconcile_objects import NAMESPACE, FakeKube, data_plane, new_vault, run


def owner(name: str) -> Owner:
    return Owner("VaultCertificate", name, NAMESPACE, str(uuid.uuid4()))


def spec_of(vault: VaultAddress, **fields: Any) -> VaultCertificateSpec:
    return VaultCertificateSpec.model_validate({"vaultRef": {"name": vault.vault}} | fields)


class Events:
    """The Events a reconcile posts: (type, reason, message)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def normal(self, reason: str, message: str) -> None:
        self.posted.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.posted.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.posted]


def reconcile(
    dev: DevServer,
    vault: VaultAddress,
    resource: Owner,
    spec: VaultCertificateSpec,
    status: VaultCertificateStatus,
    monkeypatch: pytest.MonkeyPatch,
    kube: FakeKube | None = None,
    events: Events | None = None,
    now: datetime | None = None,
    generation: int = 1,
) -> VaultCertificateStatus:
    async def address(*_: Any) -> VaultAddress:
        return vault

    monkeypatch.setattr(cert_reconcile, "vault_address", address)
    monkeypatch.setattr(cert_reconcile, "vault_address_for_delete", address)
    events = events or Events()

    async def scenario(ctx: Context) -> VaultCertificateStatus:
        return await cert_reconcile.reconcile_certificate(
            ctx,
            resource,
            spec,
            status,
            generation,
            notify=events.normal,
            warn=events.warning,
            now=now,
        )

    result: VaultCertificateStatus = run(dev, vault, scenario, kube, monkeypatch)
    return result


def delete(
    dev: DevServer,
    vault: VaultAddress,
    resource: Owner,
    spec: VaultCertificateSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def address(*_: Any) -> VaultAddress:
        return vault

    monkeypatch.setattr(cert_reconcile, "vault_address_for_delete", address)

    async def scenario(ctx: Context) -> None:
        await cert_reconcile.delete_certificate(ctx, resource, spec)

    run(dev, vault, scenario, None, monkeypatch)


def ready(status: VaultCertificateStatus) -> tuple[str, str, str]:
    [condition] = [c for c in status.conditions if c.type == "Ready"]
    return condition.status, condition.reason, condition.message


def cert_versions(dev: DevServer, vault: VaultAddress, name: str) -> list[str]:
    status, answer = data_plane(dev, vault, "GET", f"/certificates/{name}/versions")
    assert status == 200, answer
    return sorted(item["id"].rsplit("/", 1)[1] for item in answer["value"])


def secret_value(dev: DevServer, vault: VaultAddress, name: str) -> tuple[str, str]:
    status, answer = data_plane(dev, vault, "GET", f"/secrets/{name}")
    assert status == 200, answer
    return answer["value"], answer["contentType"]


# --- a CA made in the test signs what issuer Unknown asks for ---------------------------------


class SigningCa:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strongroom test CA")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def sign(self, csr_pem: str, days: int = 90) -> bytes:
        """The chain, PEM, leaf first: the certificate signed for the request, then the CA."""
        request = x509.load_pem_x509_csr(csr_pem.encode())
        assert request.is_signature_valid
        now = datetime.now(UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(self.cert.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=days))
            .sign(self.key, hashes.SHA256())
        )
        return leaf.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(
            serialization.Encoding.PEM
        )


def put_chain(kube: FakeKube, name: str, pem: bytes, key: str = "tls.crt") -> None:
    kube.secrets[name] = {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {key: base64.b64encode(pem).decode()},
    }


# --- issuer Self ------------------------------------------------------------------------------


def test_a_self_signed_certificate_is_issued_once_and_its_status_names_it(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = owner("web")
    spec = spec_of(
        vault,
        subject="CN=web.team-r.svc",
        dnsNames=["web.team-r.svc", "web"],
        ipAddresses=["10.0.0.7"],
        keyType="EC",
        curve="P-256",
        validityMonths=3,
        renewBefore="P30D",
    )
    first = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    # Killed before its status was written: the next run finds the certificate it made.
    again = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    second = reconcile(dev, vault, resource, spec, first, monkeypatch)
    assert first.version == again.version == second.version
    assert cert_versions(dev, vault, "web") == [first.version]
    assert ready(second)[:2] == ("True", "Issued")
    assert first.id == f"https://{vault.host}/certificates/web/{first.version}"
    assert first.secret_id == f"https://{vault.host}/secrets/web/{first.version}"
    assert first.subject == "CN=web.team-r.svc" and first.csr is None

    status, answer = data_plane(dev, vault, "GET", f"/certificates/web/{first.version}")
    assert status == 200, answer
    cert = x509.load_der_x509_certificate(base64.b64decode(answer["cer"]))
    assert first.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert first.not_before == cert.not_valid_before_utc
    assert first.expires == cert.not_valid_after_utc
    assert first.renews_at == cert.not_valid_after_utc - timedelta(days=30)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web.team-r.svc", "web"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    policy = answer["policy"]
    assert policy["key_props"] == {
        "exportable": False,
        "kty": "EC",
        "reuse_key": False,
        "crv": "P-256",
        "key_size": 256,
    }
    assert policy["lifetime_actions"] == [
        {"trigger": {"days_before_expiry": 30}, "action": {"action_type": "AutoRenew"}}
    ]
    # Not exportable: the secret holds the certificate only, never a private key.
    value, content_type = secret_value(dev, vault, "web")
    assert content_type == "application/x-pkcs12"
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    sha1 = hashes.SHA1()  # noqa: S303 - the thumbprint Key Vault names (x5t)
    assert key is None
    assert [c.fingerprint(sha1) for c in [leaf, *extra] if c] == [cert.fingerprint(sha1)]


def test_a_certificate_of_another_resource_or_made_through_the_api_is_not_taken(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    spec = spec_of(vault, subject="CN=taken")
    made = reconcile(dev, vault, owner("taken"), spec, VaultCertificateStatus(), monkeypatch)
    with pytest.raises(InvalidSpec) as refused:
        reconcile(dev, vault, owner("taken"), spec, VaultCertificateStatus(), monkeypatch)
    assert refused.value.reason == "CertificateNameTaken"
    assert "another resource" in refused.value.message
    assert cert_versions(dev, vault, "taken") == [made.version]

    body = {"policy": {"issuer": {"name": "Self"}, "x509_props": {"subject": "CN=api"}}}
    status, answer = data_plane(dev, vault, "POST", "/certificates/by-api/create", body)
    assert status == 202, answer
    with pytest.raises(InvalidSpec) as refused:
        reconcile(
            dev,
            vault,
            owner("by-api"),
            spec_of(vault, subject="CN=api"),
            VaultCertificateStatus(),
            monkeypatch,
        )
    assert refused.value.reason == "CertificateNameTaken"
    assert "through the vault's API" in refused.value.message


def test_the_managed_key_and_secret_keep_the_owner_when_their_tags_change(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data-plane update of the certificate's tags does not drop the owner's tag (the
    vault keeps reserved tags, as it does for keys)."""
    vault = new_vault(dev)
    resource, spec = owner("tagged"), spec_of(vault, subject="CN=tagged")
    made = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    path = f"/certificates/tagged/{made.version}"
    status, answer = data_plane(dev, vault, "PATCH", path, {"tags": {"a": "b"}})
    assert status == 200, answer
    assert answer["tags"]["a"] == "b"
    again = reconcile(dev, vault, resource, spec, made, monkeypatch)
    assert again.version == made.version and ready(again)[1] == "Issued"
    status, state = manage(dev, "GET", f"/_strongroom/v1/vaults/{vault.vault}/certificates/tagged")
    assert status == 200 and state["owner"] == resource.uid


def test_a_renewal_by_the_vault_reaches_the_status_and_a_spec_change_issues_anew(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = owner("renewed")
    spec = spec_of(vault, subject="CN=renewed", exportable=True, contentType="PEM")
    first = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    value, content_type = secret_value(dev, vault, "renewed")
    assert content_type == "application/x-pem-file" and "PRIVATE KEY" in value

    # A new version as the vault's AutoRenew makes it (same policy): the status follows.
    status, answer = data_plane(dev, vault, "GET", "/certificates/renewed/policy")
    assert status == 200, answer
    policy = {k: v for k, v in answer.items() if k not in ("id", "attributes")}
    status, answer = data_plane(
        dev, vault, "POST", "/certificates/renewed/create", {"policy": policy}
    )
    assert status == 202, answer
    renewed = reconcile(dev, vault, resource, spec, first, monkeypatch)
    assert renewed.version != first.version and renewed.thumbprint != first.thumbprint
    assert cert_versions(dev, vault, "renewed") == sorted([first.version, renewed.version])

    # renewBefore changes the policy only; a new name issues a new version at once.
    events = Events()
    later = spec.model_copy(update={"renew_before": "50%"})
    same = reconcile(dev, vault, resource, later, renewed, monkeypatch, events=events)
    assert same.version == renewed.version and events.posted == []
    status, answer = data_plane(dev, vault, "GET", "/certificates/renewed/policy")
    assert answer["lifetime_actions"][0]["trigger"] == {"lifetime_percentage": 50}
    named = later.model_copy(update={"dns_names": ["renewed.example"]})
    reissued = reconcile(dev, vault, resource, named, same, monkeypatch, events=events)
    assert reissued.version not in (first.version, renewed.version)
    assert events.reasons() == ["NewVersionRequested"]
    # Once issued with the spec, nothing more is made.
    assert reconcile(dev, vault, resource, named, reissued, monkeypatch).version == (
        reissued.version
    )
    assert len(cert_versions(dev, vault, "renewed")) == 3


def test_near_expiry_without_auto_renew_is_one_warning_event_per_version(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource = owner("expiring")
    spec = spec_of(vault, subject="CN=expiring", autoRenew=False, renewBefore="P10D")
    first = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    status, answer = data_plane(dev, vault, "GET", "/certificates/expiring/policy")
    assert answer["lifetime_actions"][0]["action"] == {"action_type": "EmailContacts"}
    assert first.renews_at is not None and first.notified_version is None
    events = Events()
    near = first.renews_at + timedelta(hours=1)
    warned = reconcile(dev, vault, resource, spec, first, monkeypatch, events=events, now=near)
    assert [(t, r) for t, r, _ in events.posted] == [("Warning", "NearExpiry")]
    assert "autoRenew" in events.posted[0][2]
    assert warned.notified_version == first.version and warned.version == first.version
    reconcile(dev, vault, resource, spec, warned, monkeypatch, events=events, now=near)
    assert len(events.posted) == 1


# --- issuer Unknown ---------------------------------------------------------------------------


def test_a_signing_request_is_shown_signed_by_a_ca_merged_from_a_secret_and_renewed(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube, ca, events = FakeKube(), SigningCa(), Events()
    resource = owner("signed")
    spec = spec_of(
        vault,
        subject="CN=signed.example",
        dnsNames=["signed.example"],
        keyType="RSA-HSM",
        keySize=2048,
        issuer={"name": "Unknown", "signedChainSecretRef": {"name": "signed-chain"}},
    )
    pending = reconcile(
        dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch, kube, events
    )
    assert ready(pending)[:2] == ("False", "PendingSignature")
    assert "'signed-chain'" in ready(pending)[2] and pending.version is None
    assert pending.csr is not None and pending.csr.startswith("-----BEGIN CERTIFICATE REQUEST")
    # Re-run without a chain: the same request, nothing new.
    again = reconcile(dev, vault, resource, spec, pending, monkeypatch, kube, events)
    assert again.csr == pending.csr and ready(again)[1] == "PendingSignature"

    # A chain for another key is not merged (and not an error).
    other = SigningCa()
    put_chain(kube, "signed-chain", other.cert.public_bytes(serialization.Encoding.PEM))
    waiting = reconcile(dev, vault, resource, spec, again, monkeypatch, kube, events)
    assert ready(waiting)[1] == "PendingSignature"

    put_chain(kube, "signed-chain", ca.sign(pending.csr))
    issued = reconcile(dev, vault, resource, spec, waiting, monkeypatch, kube, events)
    assert ready(issued)[:2] == ("True", "Issued") and issued.csr is None
    assert issued.version is not None and events.reasons() == ["Merged"]
    status, answer = data_plane(dev, vault, "GET", "/certificates/signed")
    assert status == 200, answer
    leaf = x509.load_der_x509_certificate(base64.b64decode(answer["cer"]))
    assert leaf.issuer == ca.cert.subject
    assert issued.thumbprint == leaf.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    # The secret holds the chain the CA signed, and no private key (RSA-HSM).
    value, _ = secret_value(dev, vault, "signed")
    key, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    assert key is None
    assert [c.subject for c in [cert, *extra] if c] == [leaf.subject, ca.cert.subject]

    # At renewBefore (80% of the lifetime by default) the operator asks for a new request;
    # the current version serves until its chain is merged.
    assert issued.renews_at is not None
    due = issued.renews_at + timedelta(minutes=1)
    asked = reconcile(dev, vault, resource, spec, issued, monkeypatch, kube, events, now=due)
    assert events.reasons() == ["Merged", "RenewalRequested"]
    assert asked.version == issued.version and ready(asked)[:2] == ("True", "Issued")
    assert asked.csr is not None and asked.csr != pending.csr
    assert "renewal's signing request is pending" in ready(asked)[2]
    # The Secret still holds the old chain: left alone, no second request.
    still = reconcile(dev, vault, resource, spec, asked, monkeypatch, kube, events, now=due)
    assert still.csr == asked.csr and still.version == issued.version
    put_chain(kube, "signed-chain", ca.sign(asked.csr))
    renewed = reconcile(dev, vault, resource, spec, still, monkeypatch, kube, events)
    assert renewed.version not in (None, issued.version) and renewed.csr is None
    assert cert_versions(dev, vault, "signed") == sorted([issued.version, renewed.version])


def test_a_chain_the_vault_refuses_fails_with_the_vaults_message(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    kube = FakeKube()
    resource = owner("bad-chain")
    spec = spec_of(
        vault,
        subject="CN=bad",
        issuer={"name": "Unknown", "signedChainSecretRef": {"name": "s", "key": "chain.pem"}},
    )
    pending = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch, kube)
    put_chain(kube, "s", b"not a certificate", key="chain.pem")
    with pytest.raises(InvalidSpec) as refused:
        reconcile(dev, vault, resource, spec, pending, monkeypatch, kube)
    assert refused.value.reason == "InvalidSignedChain"


# --- deletion ---------------------------------------------------------------------------------


def test_deleting_the_resource_soft_deletes_the_certificate_with_its_key_and_secret(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("gone"), spec_of(vault, subject="CN=gone")
    reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    # Another resource of the same name deletes nothing.
    delete(dev, vault, owner("gone"), spec, monkeypatch)
    assert data_plane(dev, vault, "GET", "/certificates/gone")[0] == 200
    delete(dev, vault, resource, spec, monkeypatch)
    delete(dev, vault, resource, spec, monkeypatch)  # again: nothing left to do
    for path in ("/certificates/gone", "/keys/gone", "/secrets/gone"):
        assert data_plane(dev, vault, "GET", path)[0] == 404, path
    status, answer = data_plane(dev, vault, "GET", "/deletedcertificates/gone")
    assert status == 200 and answer["recoveryId"].endswith("/deletedcertificates/gone")

    # A pending request only: it is dropped, nothing issued to keep.
    kube = FakeKube()
    pending_owner = owner("only-pending")
    unknown = spec_of(vault, subject="CN=p", issuer={"name": "Unknown"})
    reconcile(dev, vault, pending_owner, unknown, VaultCertificateStatus(), monkeypatch, kube)
    delete(dev, vault, pending_owner, unknown, monkeypatch)
    path = f"/_strongroom/v1/vaults/{vault.vault}/certificates/only-pending"
    assert manage(dev, "GET", path)[0] == 404


def test_a_certificate_deleted_through_the_api_is_recovered_while_the_resource_wants_it(
    dev: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(dev)
    resource, spec = owner("back"), spec_of(vault, subject="CN=back")
    made = reconcile(dev, vault, resource, spec, VaultCertificateStatus(), monkeypatch)
    assert data_plane(dev, vault, "DELETE", "/certificates/back")[0] == 200
    back = reconcile(dev, vault, resource, spec, made, monkeypatch)
    assert back.version == made.version and ready(back)[1] == "Issued"
    assert data_plane(dev, vault, "GET", "/secrets/back")[0] == 200
