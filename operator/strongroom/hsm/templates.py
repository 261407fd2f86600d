"""PKCS#11 attribute templates for every kind of object strongroom keeps in a token.

SoftHSM2 defaults SENSITIVE to false, so every attribute that matters is set
explicitly here rather than left to the token's defaults.
"""

from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass

Template = dict[Attribute, Any]

APPLICATION = "strongroom"
KEK_LABEL = "strongroom:kek"
SEAL_LABEL = "strongroom:seal"


def _private_common(key_id: bytes, label: str) -> Template:
    # A working key is a session object: the token keeps root keys only, and the key
    # itself is kept as the blob its wrapping under the vault's key-encryption key gives.
    # EXTRACTABLE starts true only so the HSM can make that blob; the engine sets it to
    # false straight after, and CKA_EXTRACTABLE can never be set back to true.
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True,
        Attribute.MODIFIABLE: True,
        Attribute.ID: key_id,
        Attribute.LABEL: label,
    }


def rsa_public(key_id: bytes, label: str, bits: int) -> Template:
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: True,
        Attribute.ENCRYPT: True,
        Attribute.WRAP: False,
        Attribute.MODULUS_BITS: bits,
        Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01",
        Attribute.ID: key_id,
        Attribute.LABEL: label,
    }


def rsa_private(key_id: bytes, label: str) -> Template:
    return _private_common(key_id, label) | {
        Attribute.SIGN: True,
        Attribute.DECRYPT: True,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }


def ec_public(key_id: bytes, label: str, ec_params: bytes) -> Template:
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: True,
        Attribute.EC_PARAMS: ec_params,
        Attribute.ID: key_id,
        Attribute.LABEL: label,
    }


def ec_private(key_id: bytes, label: str) -> Template:
    return _private_common(key_id, label) | {
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.DERIVE: False,
    }


def aes_secret(key_id: bytes, label: str, bits: int) -> Template:
    return _private_common(key_id, label) | {
        Attribute.VALUE_LEN: bits // 8,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    }


def imported(base: Template, object_class: ObjectClass, key_type: KeyType) -> Template:
    """A working key made from a caller's private key (BYOK): the template of a generated
    key of its kind, with the class and type that C_CreateObject needs and without
    CKA_VALUE_LEN, which it refuses beside a CKA_VALUE. It is SENSITIVE from its first
    moment and, like a generated key, extractable only until its one wrapping."""
    template = base | {Attribute.CLASS: object_class, Attribute.KEY_TYPE: key_type}
    template.pop(Attribute.VALUE_LEN, None)
    return template


def restored(base: Template) -> Template:
    """A key unwrapped from its blob is non-extractable from its first moment."""
    return base | {Attribute.EXTRACTABLE: False}


def vault_kek() -> Template:
    """The vault's key-encryption key: wraps new keys for backups, nothing else."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.VALUE_LEN: 32,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.LABEL: KEK_LABEL,
    }


def vault_seal_key() -> Template:
    """The vault's sealing key: AES-GCM over backup blobs."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.VALUE_LEN: 32,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.LABEL: SEAL_LABEL,
    }


def record(name: str, value: bytes) -> Template:
    """A private data object: the vault's metadata and secret values live in these."""
    return {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.MODIFIABLE: True,
        Attribute.APPLICATION: APPLICATION,
        Attribute.LABEL: name,
        Attribute.VALUE: value,
    }
