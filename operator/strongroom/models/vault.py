"""Vault: a named vault inside a pool, its own token, its access list and its soft-delete rules."""

from typing import Literal

from pydantic import Field

from ..api.vocabulary import CertificatePermission, KeyPermission, SecretPermission
from .base import HasConditions, LocalRef, Model, immutable, rule, rules

# As the vault takes them: its permissions, or "all" for every one of a kind.
KeyGrant = Literal["all", KeyPermission]
SecretGrant = Literal["all", SecretPermission]
CertificateGrant = Literal["all", CertificatePermission]
Role = Literal[
    "Administrator",
    "CryptoOfficer",
    "CryptoUser",
    "SecretsOfficer",
    "SecretsUser",
    "CertificatesOfficer",
    "CertificateUser",
    "Reader",
]


class ServiceAccountRef(Model):
    """A Kubernetes ServiceAccount, the identity of the pods that run as it."""

    name: str = Field(description="Name of the ServiceAccount.", min_length=1, max_length=253)
    namespace: str | None = Field(
        None,
        description="Namespace of the ServiceAccount; the Vault's own namespace when unset.",
        max_length=63,
    )


class AccessEntry(Model):
    """What one caller may do in the vault. Callers not listed may do nothing."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "has(self.serviceAccount) != has(self.subject)",
                "each access entry names its caller once: set serviceAccount or subject, not both",
            ),
            rule(
                "has(self.roles) || has(self.keys) || has(self.secrets) || has(self.certificates)",
                "each access entry grants something: set roles, keys, secrets or certificates",
            ),
        )
    }

    service_account: ServiceAccountRef | None = Field(
        None, description="The ServiceAccount this entry is for."
    )
    subject: str | None = Field(
        None,
        description="A username as Kubernetes authenticates it "
        "(system:serviceaccount:<namespace>:<name>), for callers outside this cluster's "
        "ServiceAccounts.",
        min_length=1,
        max_length=316,
    )
    roles: list[Role] | None = Field(
        None,
        description="Built-in roles, as in Azure Key Vault's RBAC: Administrator (everything), "
        "CryptoOfficer (manage keys), CryptoUser (use keys), SecretsOfficer (manage secrets), "
        "SecretsUser (read secrets), CertificatesOfficer (manage certificates, their contacts "
        "and issuers), CertificateUser (read certificates, and through the secrets API their "
        "secret: the PKCS#12 or PEM, with the private key when exportable), Reader (see "
        "keys, secrets and certificates, not secret values).",
        max_length=8,
    )
    keys: list[KeyGrant] | None = Field(
        None,
        description="Key permissions granted besides the roles ('all' for every one).",
        max_length=20,
    )
    secrets: list[SecretGrant] | None = Field(
        None,
        description="Secret permissions granted besides the roles ('all' for every one).",
        max_length=10,
    )
    certificates: list[CertificateGrant] | None = Field(
        None,
        description="Certificate permissions granted besides the roles ('all' for every one): "
        "get, list, update, create, import, delete, recover, purge, backup, restore, "
        "managecontacts, getissuers, listissuers, setissuers, deleteissuers. A certificate's "
        "private key is read through its secret: grant secrets get for that.",
        max_length=16,
    )


class SoftDelete(Model):
    """What happens to deleted keys, secrets and certificates."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                # has(): the API server also checks the rule against the schema's default, {}.
                "!(has(oldSelf.purgeProtection) && oldSelf.purgeProtection)"
                " || (has(self.purgeProtection) && self.purgeProtection)",
                "softDelete.purgeProtection cannot be turned off once it is on",
                "FieldValueForbidden",
            )
        )
    }

    retention_days: int = Field(
        90,
        ge=7,
        le=90,
        description="Days a deleted key or secret stays recoverable before it is purged (7-90). "
        "Cannot be changed once the vault exists.",
        json_schema_extra=rules(
            immutable("softDelete.retentionDays", "it is fixed when the vault is made")
        ),
    )
    purge_protection: bool = Field(
        False,
        description="When true, deleted keys and secrets cannot be purged before their "
        "retention ends. Once on, it cannot be turned off.",
    )


class VaultSpec(Model):
    """The desired vault."""

    hsm_pool_ref: LocalRef = Field(
        description="The HsmPool, in this namespace, that holds the vault's token. "
        "Cannot be changed: keys never leave their HSM.",
        json_schema_extra=rules(
            immutable("spec.hsmPoolRef", "keys never leave their HSM; make a new Vault")
        ),
    )
    access: list[AccessEntry] = Field(
        default_factory=list,
        description="Who may do what in the vault. Empty: nobody (denied by default).",
        max_length=256,
    )
    soft_delete: SoftDelete = Field(
        default=SoftDelete(),  # frozen, so one shared default is safe
        description="Retention and purge protection of deleted objects.",
        json_schema_extra={"default": {}},
    )


class VaultStatus(HasConditions):
    """What the operator observed of the vault."""

    vault_uri: str | None = Field(
        None,
        description="The URL that Azure Key Vault clients use for this vault "
        "(https://<name>-vault.<namespace>.svc).",
    )
    audience: str | None = Field(
        None,
        description="The audience to request for a ServiceAccount token that calls this vault "
        "(the vault URI), e.g. in a projected serviceAccountToken volume. A token for this "
        "audience is accepted by this vault only, from any namespace; the shared audience "
        "strongroom.io/vault (the CSI driver's) is accepted only from ServiceAccounts of the "
        "vault's own namespace.",
    )
    hsm_pool: str | None = Field(None, description="The HsmPool that serves the vault.")
