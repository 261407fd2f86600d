"""Key: a key made and used inside a vault's HSM token, with its versions."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..api.durations import DAYS_OR_MORE_PATTERN
from ..api.vocabulary import KeyOperation
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

KeyType = Literal["RSA", "RSA-HSM", "EC", "EC-HSM", "oct-HSM"]
KeySize = Literal[2048, 3072, 4096, 128, 192, 256]
Curve = Literal["P-256", "P-384", "P-521"]

RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)

# An ISO 8601 duration of days or more, as Key Vault rotation policies take (P90D, P1Y2M).
DURATION_PATTERN = DAYS_OR_MORE_PATTERN


class RotationPolicy(Model):
    """When the vault makes a new version of the key on its own."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "has(self.timeAfterCreate) != has(self.timeBeforeExpiry)",
                "a rotation policy rotates either timeAfterCreate or timeBeforeExpiry: set one",
            )
        )
    }

    time_after_create: str | None = Field(
        None,
        description="Rotate this long after a version is created (ISO 8601, e.g. P90D).",
        pattern=DURATION_PATTERN,
        max_length=32,
    )
    time_before_expiry: str | None = Field(
        None,
        description="Rotate this long before a version expires (ISO 8601, e.g. P30D).",
        pattern=DURATION_PATTERN,
        max_length=32,
    )
    expiry_time: str | None = Field(
        None,
        description="New versions expire this long after they are made (ISO 8601, e.g. P1Y).",
        pattern=DURATION_PATTERN,
        max_length=32,
    )


class KeySpec(Model):
    """The desired key."""

    model_config = Model.model_config | {
        "json_schema_extra": rules(
            rule(
                "!has(self.size) || self.kty.startsWith('RSA') || self.kty == 'oct-HSM'",
                "spec.size is for RSA and oct-HSM keys; EC keys take spec.curve",
            ),
            rule(
                "!has(self.size) || !self.kty.startsWith('RSA') || self.size in [2048, 3072, 4096]",
                "an RSA key's size is 2048, 3072 or 4096",
            ),
            rule(
                "!has(self.size) || self.kty != 'oct-HSM' || self.size in [128, 192, 256]",
                "an oct-HSM key's size is 128, 192 or 256",
            ),
            rule(
                "!has(self.curve) || self.kty.startsWith('EC')",
                "spec.curve is for EC keys; RSA and oct-HSM keys take spec.size",
            ),
            rule(
                "(has(self.size) ? self.size : 0) == (has(oldSelf.size) ? oldSelf.size : 0)",
                "spec.size cannot be changed: make a new Key",
                "FieldValueForbidden",
            ),
            rule(
                "(has(self.curve) ? self.curve : '') == (has(oldSelf.curve) ? oldSelf.curve : '')",
                "spec.curve cannot be changed: make a new Key",
                "FieldValueForbidden",
            ),
            rule(
                "(has(self.keyName) ? self.keyName : '') == "
                "(has(oldSelf.keyName) ? oldSelf.keyName : '')",
                "spec.keyName cannot be changed: make a new Key",
                "FieldValueForbidden",
            ),
        )
    }

    vault_ref: LocalRef = Field(
        description="The Vault, in this namespace, that holds the key. Cannot be changed.",
        json_schema_extra=rules(immutable("spec.vaultRef", "keys never leave their vault")),
    )
    key_name: str | None = Field(
        None,
        description="The key's name in the vault; the resource's name when unset. "
        "1-127 letters, digits and dashes. Cannot be changed.",
        min_length=1,
        max_length=127,
        json_schema_extra=rules(rule(KEY_VAULT_NAME_RULE, KEY_VAULT_NAME_MESSAGE)),
    )
    kty: KeyType = Field(
        description="Key type: RSA, RSA-HSM, EC, EC-HSM or oct-HSM (AES). All are made in the "
        "HSM and never leave it. Cannot be changed.",
        json_schema_extra=rules(immutable("spec.kty", "make a new Key")),
    )
    size: KeySize | None = Field(
        None,
        description="RSA: 2048 (default), 3072 or 4096 bits. oct-HSM: 128, 192 or 256 (default) "
        "bits. Not for EC keys. Cannot be changed.",
    )
    curve: Curve | None = Field(
        None,
        description="EC: P-256 (default), P-384 or P-521. Only for EC keys. Cannot be changed.",
    )
    key_ops: list[KeyOperation] | None = Field(
        None,
        description="Operations the key may be used for; every one its type allows when unset.",
        max_length=6,
    )
    enabled: bool = Field(True, description="Whether the key may be used.")
    not_before: datetime | None = Field(
        None, description="The key may not be used before this time (RFC 3339)."
    )
    expires: datetime | None = Field(
        None, description="The key may not be used after this time (RFC 3339)."
    )
    rotation_policy: RotationPolicy | None = Field(
        None, description="When the vault makes new versions of the key on its own."
    )
    adopt: bool = Field(
        False,
        description="Take over a key of this name that was made through the vault's API (no "
        "Key or VaultSecret owns it), instead of refusing it with Ready=False, reason "
        "KeyNameTaken. The Vault must consent: its annotation strongroom.io/allow-adopt lists "
        "the key's name in the vault (comma-separated names of keys and secrets, or *); "
        "otherwise Ready=False, reason AdoptionNotAllowed. The key must be of the spec's kty "
        "(RSA, EC or oct, with or without -HSM) and size or curve (their defaults when "
        "unset), else AdoptionMismatch; a deleted key is not adopted (recover it first). Its "
        "versions are kept and none is made; from then on it is this Key's as if made for "
        "it: keyOps, enabled, notBefore, expires and rotationPolicy are set to the spec's as "
        "for a key it made (an expiry the spec does not set is cleared), and deleting the Key "
        "soft-deletes it. A "
        "key another resource owns is never adopted. Without a key of this name, one is "
        "made as usual.",
    )


class KeyVersionStatus(Model):
    """One version of the key."""

    version: str = Field(description="The version's id (32 hexadecimal characters).")
    created: datetime | None = Field(None, description="When the version was made.")
    enabled: bool | None = Field(None, description="Whether the version may be used.")


class JsonWebKey(Model):
    """The public half of the key as a JSON Web Key (RFC 7517); empty for oct-HSM keys."""

    kid: str | None = Field(None, description="The key's id: its URL in the vault, with version.")
    kty: str | None = Field(None, description="JWK key type.")
    key_ops: list[str] | None = Field(
        None, alias="key_ops", description="Operations the key allows."
    )
    n: str | None = Field(None, description="RSA modulus, base64url.")
    e: str | None = Field(None, description="RSA public exponent, base64url.")
    crv: str | None = Field(None, description="EC curve name.")
    x: str | None = Field(None, description="EC x coordinate, base64url.")
    y: str | None = Field(None, description="EC y coordinate, base64url.")


class KeyStatus(HasConditions):
    """What the operator observed of the key."""

    kid: str | None = Field(None, description="The current version's id (URL) in the vault.")
    current_version: str | None = Field(None, description="The version in use.")
    versions: list[KeyVersionStatus] | None = Field(
        None, description="Every version, oldest first."
    )
    public_key: JsonWebKey | None = Field(None, description="The current version's public JWK.")
