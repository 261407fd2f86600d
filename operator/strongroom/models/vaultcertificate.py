"""VaultCertificate: an X.509 certificate in a vault, its key in the vault's HSM.

Not `Certificate`: that kind belongs to cert-manager, and clusters run both.
"""

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import (
    KEY_VAULT_NAME_MESSAGE,
    KEY_VAULT_NAME_RULE,
    HasConditions,
    LocalRef,
    Model,
    immutable,
    rule,
    rules,
)

CertificateKeyType = Literal["RSA", "RSA-HSM", "EC", "EC-HSM"]
RsaSize = Literal[2048, 3072, 4096]
Curve = Literal["P-256", "P-384", "P-521"]
ContentType = Literal["PKCS12", "PEM"]
IssuerName = Literal["Self", "Unknown"]

CONTENT_TYPES = {"PKCS12": "application/x-pkcs12", "PEM": "application/x-pem-file"}
MAX_VALIDITY_MONTHS = 1200
# renewBefore: an ISO 8601 duration of days or more (P30D, P2M), or a percentage of the
# lifetime after which to renew (80%).
RENEW_BEFORE_PATTERN = r"^(P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?|[1-9][0-9]?%)$"
# The API server's first check of an IP address (CEL's isIP needs Kubernetes 1.31); the
# operator reads each with Python's ipaddress before the vault sees it.
IP_PATTERN = r"^[0-9A-Fa-f:.]{2,45}$"
DNS_NAME_PATTERN = r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$"


class SignedChainSecretRef(Model):
    """A Kubernetes Secret of this namespace that holds the signed certificate chain."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    key: str = Field(
        "tls.crt",
        description="Key of the Secret's data holding the chain as PEM, the certificate "
        "signed for status.csr first, then its issuers (default tls.crt).",
        min_length=1,
        max_length=253,
    )


class CertificateIssuer(Model):
    """Who signs the certificate."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "self.name == 'Unknown' || !has(self.signedChainSecretRef)",
                "spec.issuer.signedChainSecretRef is for issuer Unknown: a Self certificate is "
                "signed by the vault",
            ),
        )
    }

    name: IssuerName = Field(
        "Self",
        description="Self: the vault signs the certificate with its own key, in the HSM, and "
        "renews it on its own. Unknown: the vault makes the key and a signing request "
        "(status.csr, PEM); sign it with your CA and put the chain in the Secret named by "
        "signedChainSecretRef, and the operator merges it. Cannot be changed.",
        json_schema_extra=rules(immutable("spec.issuer.name", "make a new VaultCertificate")),
    )
    signed_chain_secret_ref: SignedChainSecretRef | None = Field(
        None,
        description="Issuer Unknown: the Secret (in this namespace) where you put the chain "
        "signed for status.csr. The operator reads it while a signing request is pending and "
        "merges a chain whose first certificate is for the request's key; a chain for another "
        "key (the previous version's) is left alone.",
    )


class VaultCertificateSpec(Model):
    """The desired certificate. A change of its subject, names, key, validity or content type makes a new version (Self: at once; Unknown: a new signing request); renewBefore and autoRenew change the policy only."""  # noqa: E501

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "!self.keyType.endsWith('-HSM') || !self.exportable",
                "an -HSM key is made and kept in the HSM and cannot be exportable: set "
                "exportable: false, or use keyType RSA or EC",
            ),
            rule(
                "!self.keyType.startsWith('EC') || !has(self.keySize)",
                "EC keys take spec.curve, not spec.keySize",
            ),
            rule(
                "!self.keyType.startsWith('EC') || has(self.curve)",
                "an EC key needs spec.curve: P-256, P-384 or P-521",
            ),
            rule(
                "self.keyType.startsWith('EC') || !has(self.curve)",
                "spec.curve is for EC keys; RSA keys take spec.keySize",
            ),
            rule(
                "has(self.subject) || has(self.dnsNames) || has(self.ipAddresses)",
                "a certificate names someone: set spec.subject, spec.dnsNames or spec.ipAddresses",
            ),
            rule(
                "(has(self.certificateName) ? self.certificateName : '') == "
                "(has(oldSelf.certificateName) ? oldSelf.certificateName : '')",
                "spec.certificateName cannot be changed: make a new VaultCertificate",
                "FieldValueForbidden",
            ),
            rule(
                "!has(self.renewBefore) || !self.renewBefore.startsWith('P') || "
                "self.renewBefore.matches('[0-9][YMWD]$')",
                "spec.renewBefore is an ISO 8601 duration of days or more (P30D, P2M) or a "
                "percentage of the lifetime (80%)",
            ),
        )
    }

    vault_ref: LocalRef = Field(
        description="The Vault, in this namespace, that holds the certificate and its key. "
        "Cannot be changed.",
        json_schema_extra=rules(immutable("spec.vaultRef", "make a new VaultCertificate")),
    )
    certificate_name: str | None = Field(
        None,
        description="The certificate's name in the vault (also the name of its key and its "
        "secret there); the resource's name when unset. 1-127 letters, digits and dashes. "
        "Cannot be changed.",
        min_length=1,
        max_length=127,
        json_schema_extra=rules(rule(KEY_VAULT_NAME_RULE, KEY_VAULT_NAME_MESSAGE)),
    )
    subject: str | None = Field(
        None,
        description="The subject's distinguished name, e.g. CN=api.example.com, O=Example.",
        min_length=1,
        max_length=1024,
    )
    dns_names: list[str] | None = Field(
        None,
        description="DNS subject alternative names (e.g. api.example.com, *.example.com).",
        max_length=100,
        json_schema_extra={"items": {"pattern": DNS_NAME_PATTERN, "maxLength": 255}},
    )
    ip_addresses: list[str] | None = Field(
        None,
        description="IP address subject alternative names (IPv4 or IPv6).",
        max_length=100,
        json_schema_extra={"items": {"pattern": IP_PATTERN, "maxLength": 45}},
    )
    key_type: CertificateKeyType = Field(
        "RSA",
        description="The certificate's key: RSA or EC, made in the HSM; RSA-HSM and EC-HSM "
        "keys never leave it (not exportable). Default RSA. Applies from the next version.",
    )
    key_size: RsaSize | None = Field(
        None, description="RSA: 2048 (default), 3072 or 4096 bits. Not for EC keys."
    )
    curve: Curve | None = Field(
        None, description="EC (required): P-256, P-384 or P-521. Only for EC keys."
    )
    exportable: bool = Field(
        False,
        description="Whether the private key is in the certificate's secret (the PKCS#12 or "
        "PEM), for pods that serve TLS with it. When false (the default) the key is made "
        "in the HSM and never leaves it; the secret holds the certificate chain only. Not "
        "with RSA-HSM or EC-HSM.",
    )
    validity_months: int = Field(
        12,
        ge=1,
        le=MAX_VALIDITY_MONTHS,
        description="How long each version is valid, in months (1-1200, default 12).",
    )
    renew_before: str | None = Field(
        None,
        description="When the vault renews: an ISO 8601 duration before expiry (P30D, P2M) or "
        "a percentage of the lifetime after which to renew (80%). Default 80%. Becomes the "
        "policy's lifetime action (days_before_expiry or lifetime_percentage).",
        max_length=32,
        pattern=RENEW_BEFORE_PATTERN,
    )
    auto_renew: bool = Field(
        True,
        description="Self: the vault makes a new version at renewBefore on its own. Unknown: "
        "the operator asks the vault for a new signing request at renewBefore (status.csr), "
        "to be signed and put in signedChainSecretRef. When false, the certificate is not "
        "renewed and a Warning Event NearExpiry is posted on the resource at renewBefore.",
    )
    content_type: ContentType = Field(
        "PKCS12",
        description="The form of the certificate's secret: PKCS12 (application/x-pkcs12, "
        "default) or PEM (application/x-pem-file). Applies from the next version.",
    )
    issuer: CertificateIssuer = Field(
        default=CertificateIssuer(),  # frozen, so one shared default is safe
        description="Who signs: Self (default) or Unknown (a signing request you sign).",
        json_schema_extra={"default": {}},
    )


class VaultCertificateStatus(HasConditions):
    """What the operator observed of the certificate. Never its private key."""

    id: str | None = Field(None, description="The current version's id (URL) in the vault.")
    version: str | None = Field(None, description="The current version.")
    secret_id: str | None = Field(
        None,
        description="The id of the certificate's secret (the PKCS#12 or PEM), which the "
        "secrets API and csi.strongroom.io read.",
    )
    thumbprint: str | None = Field(
        None, description="SHA-1 thumbprint of the current certificate, hexadecimal."
    )
    subject: str | None = Field(None, description="The current certificate's subject.")
    not_before: datetime | None = Field(None, description="Start of the current validity.")
    expires: datetime | None = Field(None, description="End of the current validity.")
    renews_at: datetime | None = Field(
        None,
        description="When renewBefore falls for the current version: the vault renews then "
        "(or, without autoRenew, the NearExpiry Event is posted).",
    )
    csr: str | None = Field(
        None,
        description="Issuer Unknown, while a signing request is pending: the request (PEM) "
        "to sign; put the signed chain in spec.issuer.signedChainSecretRef.",
    )
    notified_version: str | None = Field(
        None,
        description="The version for which the NearExpiry Event was posted (once per version).",
    )
