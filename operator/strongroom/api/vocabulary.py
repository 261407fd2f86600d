"""Names the vault serves and the operator grants: access permissions, key operations by
key family, and the encodings of generated secret values."""

from typing import Literal, get_args

# Permissions of an access entry, as in Azure Key Vault's access policies.
KeyPermission = Literal[
    "get",
    "list",
    "update",
    "create",
    "import",
    "delete",
    "recover",
    "purge",
    "backup",
    "restore",
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
]
SecretPermission = Literal["get", "list", "set", "delete", "recover", "purge", "backup", "restore"]
CertificatePermission = Literal[
    "get",
    "list",
    "update",
    "create",
    "import",
    "delete",
    "recover",
    "purge",
    "backup",
    "restore",
    "managecontacts",
    "getissuers",
    "listissuers",
    "setissuers",
    "deleteissuers",
]
# Grants every permission of its kind, those added later included.
ALL = "all"
KEY_PERMISSIONS: frozenset[str] = frozenset(get_args(KeyPermission))
SECRET_PERMISSIONS: frozenset[str] = frozenset(get_args(SecretPermission))
CERTIFICATE_PERMISSIONS: frozenset[str] = frozenset(get_args(CertificatePermission))

# What a key may be used for; each family allows these, and they are a new key's default.
KeyOperation = Literal["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
KEY_OPS: dict[str, tuple[KeyOperation, ...]] = {
    "RSA": ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"),
    "EC": ("sign", "verify"),
    "oct": ("encrypt", "decrypt", "wrapKey", "unwrapKey"),
}

SecretEncoding = Literal["base64", "hex", "alphanumeric"]


def family(kty: str) -> str:
    """RSA-HSM -> RSA, EC-HSM -> EC, oct-HSM -> oct."""
    return kty.removesuffix("-HSM")
