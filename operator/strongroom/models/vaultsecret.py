"""VaultSecret: a secret in a vault, with versions. Its value is never in the resource."""

from datetime import datetime

from pydantic import Field

from ..api.durations import MINUTES_OR_MORE_PATTERN
from ..api.vocabulary import SecretEncoding
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

# An ISO 8601 duration of whole minutes or more: P30D, P1Y, PT12H, P1DT6H, PT5M.
ROTATE_AFTER_PATTERN = MINUTES_OR_MORE_PATTERN

Encoding = SecretEncoding


class GenerateSource(Model):
    """The vault makes the value from the HSM's random number generator, when it makes the
    secret and at each rotation (spec.rotation); a change of length or encoding applies from
    the next version the vault makes."""

    length: int = Field(32, ge=16, le=4096, description="Bytes of randomness (16-4096).")
    encoding: Encoding = Field(
        "base64", description="How the random bytes are written: base64, hex or alphanumeric."
    )


class SecretKeySelector(Model):
    """One key of a Kubernetes Secret in this namespace."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    key: str = Field(description="Key within the Secret's data.", min_length=1, max_length=253)


class ExternalSource(Model):
    """The value is set through the vault's API; the operator only reports the secret."""


class SecretSource(Model):
    """Where the value comes from. Set exactly one; which one cannot be changed."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "[has(self.generate), has(self.fromSecret), has(self.external)]"
                ".filter(x, x).size() == 1",
                "spec.source takes exactly one of generate, fromSecret or external",
            ),
            rule(
                "has(self.generate) == has(oldSelf.generate) && "
                "has(self.fromSecret) == has(oldSelf.fromSecret) && "
                "has(self.external) == has(oldSelf.external)",
                "spec.source cannot switch between generate, fromSecret and external: the "
                "secret was made from the first; make a new VaultSecret",
                "FieldValueForbidden",
            ),
        )
    }

    generate: GenerateSource | None = Field(None, description="Generate the value in the vault.")
    from_secret: SecretKeySelector | None = Field(
        None,
        description="Import the value once from a Kubernetes Secret of this namespace; later "
        "changes of that Secret are not followed (rotate through the vault's API instead). "
        "The Secret must opt in: its annotation strongroom.io/allow-import lists the names of "
        "the VaultSecrets that may import it, comma-separated, or is * for any in the "
        "namespace. Otherwise nothing is read and the VaultSecret is Ready=False with reason "
        "ImportNotAllowed (also when the Secret does not exist). Cannot be changed.",
        json_schema_extra=rules(
            immutable(
                "spec.source.fromSecret",
                "the value is imported once, when the secret is made; set a new value through "
                "the vault's API, or make a new VaultSecret",
            )
        ),
    )
    external: ExternalSource | None = Field(
        None,
        description="Set to {} when the value is set through the vault's API; the operator "
        "then only reports the secret.",
    )


class SecretRotation(Model):
    """When the vault makes a new generated value."""

    rotate_after: str = Field(
        description="Make a new version this long after the current one was created (ISO 8601, "
        "whole minutes or more: P30D, PT12H, P1DT6H; a month is 30 days, a year 365). The "
        "vault draws the new value from its HSM; the old versions stay readable by version. "
        "The operator checks once a minute, so a rotation happens within a minute of "
        "status.nextRotation. Pods that mount the secret through csi.strongroom.io get the new "
        "value at their next republish. A secret keeps at most 500 versions: at that point "
        "rotation stops with Ready=False, reason QuotaExceeded.",
        pattern=ROTATE_AFTER_PATTERN,
        max_length=32,
        json_schema_extra=rules(
            rule(
                "self.matches('[0-9][YMWDH]$')",
                "spec.rotation.rotateAfter is an ISO 8601 duration of whole minutes or more, "
                "such as P30D, PT12H or PT5M",
            )
        ),
    )


class VaultSecretSpec(Model):
    """The desired secret."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "!has(self.rotation) || has(self.source.generate)",
                "spec.rotation is only for generated secrets (spec.source.generate)",
            ),
            rule(
                "!has(self.adopt) || !self.adopt || has(self.source.generate)",
                "spec.adopt is for generated secrets (spec.source.generate): a fromSecret "
                "VaultSecret would replace the adopted value with the imported one, and "
                "source.external already reports a secret set through the vault's API without "
                "adopting it",
            ),
            rule(
                "(has(self.secretName) ? self.secretName : '') == "
                "(has(oldSelf.secretName) ? oldSelf.secretName : '')",
                "spec.secretName cannot be changed: make a new VaultSecret",
                "FieldValueForbidden",
            ),
            rule(
                "(has(self.contentType) ? self.contentType : '') == "
                "(has(oldSelf.contentType) ? oldSelf.contentType : '')",
                "spec.contentType cannot be changed, set or removed: the secret is made with it; "
                "make a new VaultSecret",
                "FieldValueForbidden",
            ),
        )
    }

    vault_ref: LocalRef = Field(
        description="The Vault, in this namespace, that holds the secret. Cannot be changed.",
        json_schema_extra=rules(immutable("spec.vaultRef", "make a new VaultSecret")),
    )
    secret_name: str | None = Field(
        None,
        description="The secret's name in the vault; the resource's name when unset. "
        "1-127 letters, digits and dashes. Cannot be changed.",
        min_length=1,
        max_length=127,
        json_schema_extra=rules(rule(KEY_VAULT_NAME_RULE, KEY_VAULT_NAME_MESSAGE)),
    )
    source: SecretSource = Field(
        description="Where the secret's value comes from: generate, fromSecret or external, "
        "which cannot be changed once the VaultSecret exists."
    )
    content_type: str | None = Field(
        None,
        description="A hint of what the value is (e.g. text/plain), given to the vault when it "
        "generates or imports the secret. Cannot be changed, set or removed once the "
        "VaultSecret exists: make a new VaultSecret.",
        max_length=255,
    )
    rotation: SecretRotation | None = Field(
        None, description="When a generated secret gets a new value."
    )
    adopt: bool = Field(
        False,
        description="Generated secrets only: take over a secret of this name that was set "
        "through the vault's API (no Key or VaultSecret owns it), instead of refusing it with "
        "Ready=False, reason SecretNameTaken. The Vault must consent: its annotation "
        "strongroom.io/allow-adopt lists the secret's name in the vault (comma-separated "
        "names of keys and secrets, or *); otherwise Ready=False, reason AdoptionNotAllowed. "
        "With spec.contentType set, the secret's must be the same, else AdoptionMismatch; a "
        "deleted secret is not adopted (recover it first). Its versions and value are kept; "
        "from then on it is this VaultSecret's as if generated for it: spec.rotation replaces "
        "its value with generated ones, and deleting the VaultSecret soft-deletes it. Not "
        "with source.fromSecret (the import would replace the value) or source.external "
        "(which reports a secret without adopting it). A secret another resource owns is "
        "never adopted. Without a secret of this name, one is generated as usual.",
    )


class VaultSecretStatus(HasConditions):
    """What the operator observed of the secret. Never its value."""

    id: str | None = Field(None, description="The current version's id (URL) in the vault.")
    current_version: str | None = Field(
        None,
        description="The version in use: the newest, which a read without a version (and "
        "csi.strongroom.io) gets.",
    )
    current_version_created: datetime | None = Field(
        None, description="When the vault made the current version."
    )
    next_rotation: datetime | None = Field(
        None,
        description="With spec.rotation: when the current version is due to be replaced by a "
        "new generated one (currentVersionCreated + rotateAfter). The operator makes it within "
        "a minute of this time. Unset without spec.rotation.",
    )
