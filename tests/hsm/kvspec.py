"""strongroom's own OpenAPI (Swagger 2.0) description of the Azure Key Vault data-plane
operations on keys, secrets and certificates that the vault serves, at api-version
2025-07-01.

It describes Key Vault's wire format, not strongroom's behaviour: the paths and methods,
the parameters, the request bodies with their required fields, types and enumerations,
the answers and the error body, as the service and its SDKs exchange them. The fuzz tier
(tests/hsm/test_spec_fuzz.py) checks strongroom against it; where strongroom deliberately
departs from it, that test says so and why, and nowhere here.

Operations of Key Vault that strongroom does not serve (releasing a key, key
attestation) are left out: their paths answer 405 like any other method the vault does
not take. The latest version of an object is described twice where clients ask for it
both ways: without a version segment, and (certificates) with an empty one, `name/`.
"""

import copy
from typing import Any

API_VERSION = "2025-07-01"

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/definitions/{name}"}


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def b64url(**extra: Any) -> Schema:
    """Bytes, as base64url without padding."""
    return string(format="base64url", **extra)


def unix_time(**extra: Any) -> Schema:
    """Seconds since 1970-01-01T00:00:00Z."""
    return {"type": "integer", "format": "unixtime", **extra}


def int32(**extra: Any) -> Schema:
    return {"type": "integer", "format": "int32", **extra}


def obj(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def enum(*values: str) -> Schema:
    return string(enum=list(values))


TAGS: Schema = {"type": "object", "additionalProperties": string()}
READ_ONLY = {"readOnly": True}

# The attributes shared by both kinds of objects: times are set by the caller (nbf, exp)
# or by the vault (created, updated).
_BASE_ATTRIBUTES: Schema = {
    "enabled": {"type": "boolean"},
    "nbf": unix_time(),
    "exp": unix_time(),
    "created": unix_time(**READ_ONLY),
    "updated": unix_time(**READ_ONLY),
}
_RECOVERY: Schema = {
    "recoverableDays": int32(**READ_ONLY),
    "recoveryLevel": {**ref("DeletionRecoveryLevel"), **READ_ONLY},
}
# What a deleted object carries beyond the live one.
_DELETION: Schema = {
    "recoveryId": string(),
    "scheduledPurgeDate": unix_time(**READ_ONLY),
    "deletedDate": unix_time(**READ_ONLY),
}


def _list_result(item: str) -> Schema:
    """A page of a list; the last page's nextLink is null."""
    return obj(
        {
            "value": {"type": "array", "items": ref(item), **READ_ONLY},
            "nextLink": string(**READ_ONLY, **{"x-nullable": True}),
        }
    )


_KEY_BUNDLE: Schema = {
    "key": ref("JsonWebKey"),
    "attributes": ref("KeyAttributes"),
    "tags": TAGS,
    "managed": {"type": "boolean", **READ_ONLY},
    "release_policy": ref("KeyReleasePolicy"),
}

KEY_DEFINITIONS: dict[str, Schema] = {
    "JsonWebKeyType": enum("EC", "EC-HSM", "RSA", "RSA-HSM", "oct", "oct-HSM"),
    "JsonWebKeyCurveName": enum("P-256", "P-384", "P-521", "P-256K"),
    "JsonWebKeyOperation": enum(
        "encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"
    ),
    "JsonWebKeyEncryptionAlgorithm": enum(
        "RSA-OAEP",
        "RSA-OAEP-256",
        "RSA1_5",
        *(f"A{bits}{mode}" for mode in ("GCM", "KW", "CBC", "CBCPAD") for bits in (128, 192, 256)),
        "CKM_AES_KEY_WRAP",
        "CKM_AES_KEY_WRAP_PAD",
    ),
    "JsonWebKeySignatureAlgorithm": enum(
        *(f"{family}{bits}" for family in ("PS", "RS", "HS") for bits in (256, 384, 512)),
        "RSNULL",
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
    ),
    "KeyRotationPolicyAction": enum("Rotate", "Notify"),
    "JsonWebKey": obj(
        {
            "kid": string(),
            "kty": ref("JsonWebKeyType"),
            "key_ops": {"type": "array", "items": string()},
            **{
                part: b64url()
                for part in ("n", "e", "d", "dp", "dq", "qi", "p", "q", "k", "key_hsm")
            },
            "crv": ref("JsonWebKeyCurveName"),
            "x": b64url(),
            "y": b64url(),
        }
    ),
    "KeyAttestation": obj(
        {
            "certificatePemFile": b64url(),
            "privateKeyAttestation": b64url(),
            "publicKeyAttestation": b64url(),
            "version": string(),
        }
    ),
    "KeyAttributes": obj(
        {
            **_BASE_ATTRIBUTES,
            **_RECOVERY,
            "exportable": {"type": "boolean"},
            "hsmPlatform": string(**READ_ONLY),
            "attestation": {**ref("KeyAttestation"), **READ_ONLY},
        }
    ),
    "KeyReleasePolicy": obj(
        {
            "contentType": string(default="application/json; charset=utf-8"),
            "immutable": {"type": "boolean"},
            "data": b64url(),
        }
    ),
    "KeyBundle": obj(_KEY_BUNDLE),
    "KeyItem": obj(
        {
            "kid": string(),
            "attributes": ref("KeyAttributes"),
            "tags": TAGS,
            "managed": {"type": "boolean", **READ_ONLY},
        }
    ),
    "KeyCreateParameters": obj(
        {
            "kty": ref("JsonWebKeyType"),
            "key_size": int32(),
            "public_exponent": int32(),
            "key_ops": {"type": "array", "items": ref("JsonWebKeyOperation")},
            "attributes": ref("KeyAttributes"),
            "tags": TAGS,
            "crv": ref("JsonWebKeyCurveName"),
            "release_policy": ref("KeyReleasePolicy"),
        },
        required=("kty",),
    ),
    # ImportKey's body: the key's JWK with its private members; `Hsm` is spelt so on the wire.
    "KeyImportParameters": obj(
        {
            "Hsm": {"type": "boolean"},
            "key": ref("JsonWebKey"),
            "attributes": ref("KeyAttributes"),
            "tags": TAGS,
            "release_policy": ref("KeyReleasePolicy"),
        },
        required=("key",),
    ),
    "KeyUpdateParameters": obj(
        {
            "key_ops": {"type": "array", "items": ref("JsonWebKeyOperation")},
            "attributes": ref("KeyAttributes"),
            "tags": TAGS,
            "release_policy": ref("KeyReleasePolicy"),
        }
    ),
    "KeyOperationsParameters": obj(
        {
            "alg": ref("JsonWebKeyEncryptionAlgorithm"),
            "value": b64url(),
            "iv": b64url(),
            "aad": b64url(),
            "tag": b64url(),
        },
        required=("alg", "value"),
    ),
    "KeyOperationResult": obj(
        {
            "kid": string(**READ_ONLY),
            "value": b64url(**READ_ONLY),
            "iv": b64url(**READ_ONLY),
            "tag": b64url(**READ_ONLY),
            "aad": b64url(**READ_ONLY),
        }
    ),
    "KeySignParameters": obj(
        {"alg": ref("JsonWebKeySignatureAlgorithm"), "value": b64url()},
        required=("alg", "value"),
    ),
    "KeyVerifyParameters": obj(
        {"alg": ref("JsonWebKeySignatureAlgorithm"), "digest": b64url(), "value": b64url()},
        required=("alg", "digest", "value"),
    ),
    "KeyVerifyResult": obj({"value": {"type": "boolean", **READ_ONLY}}),
    "KeyRestoreParameters": obj({"value": b64url()}, required=("value",)),
    "BackupKeyResult": obj({"value": b64url(**READ_ONLY)}),
    "DeletedKeyBundle": obj({**_KEY_BUNDLE, **_DELETION}),
    "DeletedKeyItem": obj(
        {
            "kid": string(),
            "attributes": ref("KeyAttributes"),
            "tags": TAGS,
            "managed": {"type": "boolean", **READ_ONLY},
            **_DELETION,
        }
    ),
    "KeyListResult": _list_result("KeyItem"),
    "DeletedKeyListResult": _list_result("DeletedKeyItem"),
    "LifetimeActionsTrigger": obj({"timeAfterCreate": string(), "timeBeforeExpiry": string()}),
    "LifetimeActionsType": obj({"type": ref("KeyRotationPolicyAction")}),
    "LifetimeActions": obj(
        {"trigger": ref("LifetimeActionsTrigger"), "action": ref("LifetimeActionsType")}
    ),
    "KeyRotationPolicyAttributes": obj(
        {
            "expiryTime": string(),
            "created": unix_time(**READ_ONLY),
            "updated": unix_time(**READ_ONLY),
        }
    ),
    "KeyRotationPolicy": obj(
        {
            "id": string(**READ_ONLY),
            "lifetimeActions": {"type": "array", "items": ref("LifetimeActions")},
            "attributes": ref("KeyRotationPolicyAttributes"),
        }
    ),
    "GetRandomBytesRequest": obj(
        {"count": int32(minimum=1, maximum=128)},
        required=("count",),
    ),
    "RandomBytes": obj({"value": b64url()}, required=("value",)),
}

_SECRET_PROPERTIES: Schema = {
    "id": string(),
    "attributes": ref("SecretAttributes"),
    "tags": TAGS,
    "contentType": string(),
    "managed": {"type": "boolean", **READ_ONLY},
}
_SECRET_BUNDLE: Schema = {
    "value": string(),
    **_SECRET_PROPERTIES,
    "kid": string(**READ_ONLY),
    "previousVersion": string(),
}

SECRET_DEFINITIONS: dict[str, Schema] = {
    "SecretAttributes": obj({**_BASE_ATTRIBUTES, **_RECOVERY}),
    "SecretBundle": obj(_SECRET_BUNDLE),
    "DeletedSecretBundle": obj({**_SECRET_BUNDLE, **_DELETION}),
    "SecretItem": obj(_SECRET_PROPERTIES),
    "DeletedSecretItem": obj({**_SECRET_PROPERTIES, **_DELETION}),
    "SecretListResult": _list_result("SecretItem"),
    "DeletedSecretListResult": _list_result("DeletedSecretItem"),
    "SecretSetParameters": obj(
        {
            "value": string(),
            "tags": TAGS,
            "contentType": string(),
            "attributes": ref("SecretAttributes"),
        },
        required=("value",),
    ),
    "SecretUpdateParameters": obj(
        {"contentType": string(), "attributes": ref("SecretAttributes"), "tags": TAGS}
    ),
    "SecretRestoreParameters": obj({"value": b64url()}, required=("value",)),
    "BackupSecretResult": obj({"value": b64url(**READ_ONLY)}),
}

_CERTIFICATE_ITEM: Schema = {
    "id": string(),
    "attributes": ref("CertificateAttributes"),
    "tags": TAGS,
    "x5t": b64url(),
}
_CERTIFICATE_BUNDLE: Schema = {
    "id": string(**READ_ONLY),
    "kid": string(**READ_ONLY),
    "sid": string(**READ_ONLY),
    "x5t": b64url(**READ_ONLY),
    "policy": {**ref("CertificatePolicy"), **READ_ONLY},
    "cer": string(format="byte"),
    "contentType": string(),
    "attributes": ref("CertificateAttributes"),
    "tags": TAGS,
    "preserveCertOrder": {"type": "boolean"},
}
_STRINGS: Schema = {"type": "array", "items": string()}

CERTIFICATE_DEFINITIONS: dict[str, Schema] = {
    "CertificateAttributes": obj({**_BASE_ATTRIBUTES, **_RECOVERY}),
    "CertificateBundle": obj(_CERTIFICATE_BUNDLE),
    "DeletedCertificateBundle": obj({**_CERTIFICATE_BUNDLE, **_DELETION}),
    "CertificateItem": obj(_CERTIFICATE_ITEM),
    "DeletedCertificateItem": obj({**_CERTIFICATE_ITEM, **_DELETION}),
    "CertificateListResult": _list_result("CertificateItem"),
    "DeletedCertificateListResult": _list_result("DeletedCertificateItem"),
    "KeyProperties": obj(
        {
            "exportable": {"type": "boolean"},
            "kty": ref("JsonWebKeyType"),
            "key_size": int32(),
            "reuse_key": {"type": "boolean"},
            "crv": ref("JsonWebKeyCurveName"),
        }
    ),
    "SecretProperties": obj({"contentType": string()}),
    "SubjectAlternativeNames": obj(
        {name: _STRINGS for name in ("emails", "dns_names", "upns", "uris", "ipAddresses")}
    ),
    "KeyUsageType": enum(
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ),
    "X509CertificateProperties": obj(
        {
            "subject": string(),
            "ekus": _STRINGS,
            "sans": ref("SubjectAlternativeNames"),
            "key_usage": {"type": "array", "items": ref("KeyUsageType")},
            "validity_months": int32(minimum=0),
        }
    ),
    "CertificatePolicyAction": enum("EmailContacts", "AutoRenew"),
    "Trigger": obj(
        {"lifetime_percentage": int32(minimum=1, maximum=99), "days_before_expiry": int32()}
    ),
    "Action": obj({"action_type": ref("CertificatePolicyAction")}),
    "LifetimeAction": obj({"trigger": ref("Trigger"), "action": ref("Action")}),
    "IssuerParameters": obj(
        {"name": string(), "cty": string(), "cert_transparency": {"type": "boolean"}}
    ),
    "CertificatePolicy": obj(
        {
            "id": string(**READ_ONLY),
            "key_props": ref("KeyProperties"),
            "secret_props": ref("SecretProperties"),
            "x509_props": ref("X509CertificateProperties"),
            "lifetime_actions": {"type": "array", "items": ref("LifetimeAction")},
            "issuer": ref("IssuerParameters"),
            "attributes": ref("CertificateAttributes"),
        }
    ),
    "CertificateCreateParameters": obj(
        {
            "policy": ref("CertificatePolicy"),
            "attributes": ref("CertificateAttributes"),
            "tags": TAGS,
            "preserveCertOrder": {"type": "boolean"},
        }
    ),
    # The PFX (base64) or PEM to import, with its private key.
    "CertificateImportParameters": obj(
        {
            "value": string(),
            "pwd": string(),
            "policy": ref("CertificatePolicy"),
            "attributes": ref("CertificateAttributes"),
            "tags": TAGS,
            "preserveCertOrder": {"type": "boolean"},
        },
        required=("value",),
    ),
    "CertificateUpdateParameters": obj(
        {
            "policy": ref("CertificatePolicy"),
            "attributes": ref("CertificateAttributes"),
            "tags": TAGS,
        }
    ),
    "CertificateMergeParameters": obj(
        {
            "x5c": {"type": "array", "items": string(format="byte")},
            "attributes": ref("CertificateAttributes"),
            "tags": TAGS,
        },
        required=("x5c",),
    ),
    # The operation's error is null while there is none.
    "CertificateOperation": obj(
        {
            "id": string(**READ_ONLY),
            "issuer": ref("IssuerParameters"),
            "csr": string(format="byte"),
            "cancellation_requested": {"type": "boolean"},
            "status": string(),
            "status_details": string(),
            "error": {**ref("Error"), "x-nullable": True},
            "target": string(),
            "preserveCertOrder": {"type": "boolean"},
            "request_id": string(),
        }
    ),
    "CertificateOperationUpdateParameter": obj(
        {"cancellation_requested": {"type": "boolean"}},
        required=("cancellation_requested",),
    ),
    "CertificateRestoreParameters": obj({"value": b64url()}, required=("value",)),
    "BackupCertificateResult": obj({"value": b64url(**READ_ONLY)}),
    "Contact": obj({"email": string(), "name": string(), "phone": string()}),
    "Contacts": obj(
        {"id": string(**READ_ONLY), "contacts": {"type": "array", "items": ref("Contact")}}
    ),
    "IssuerCredentials": obj({"account_id": string(), "pwd": string()}),
    "AdministratorDetails": obj(
        {"first_name": string(), "last_name": string(), "email": string(), "phone": string()}
    ),
    "OrganizationDetails": obj(
        {"id": string(), "admin_details": {"type": "array", "items": ref("AdministratorDetails")}}
    ),
    "IssuerAttributes": obj(
        {
            "enabled": {"type": "boolean"},
            "created": unix_time(**READ_ONLY),
            "updated": unix_time(**READ_ONLY),
        }
    ),
    "IssuerBundle": obj(
        {
            "id": string(**READ_ONLY),
            "provider": string(),
            "credentials": ref("IssuerCredentials"),
            "org_details": ref("OrganizationDetails"),
            "attributes": ref("IssuerAttributes"),
        }
    ),
    "CertificateIssuerSetParameters": obj(
        {
            "provider": string(),
            "credentials": ref("IssuerCredentials"),
            "org_details": ref("OrganizationDetails"),
            "attributes": ref("IssuerAttributes"),
        },
        required=("provider",),
    ),
    "CertificateIssuerUpdateParameters": obj(
        {
            "provider": string(),
            "credentials": ref("IssuerCredentials"),
            "org_details": ref("OrganizationDetails"),
            "attributes": ref("IssuerAttributes"),
        }
    ),
    "CertificateIssuerItem": obj({"id": string(), "provider": string()}),
    "CertificateIssuerListResult": _list_result("CertificateIssuerItem"),
}

COMMON_DEFINITIONS: dict[str, Schema] = {
    "DeletionRecoveryLevel": enum(
        "Purgeable",
        "Recoverable+Purgeable",
        "Recoverable",
        "Recoverable+ProtectedSubscription",
        "CustomizedRecoverable+Purgeable",
        "CustomizedRecoverable",
        "CustomizedRecoverable+ProtectedSubscription",
    ),
    # Every error: {"error": {"code": ..., "message": ...}}, an inner error optional.
    "Error": obj(
        {"code": string(), "message": string(), "innererror": ref("Error")},
        required=("code", "message"),
    ),
    "KeyVaultError": obj({"error": ref("Error")}, required=("error",)),
}

# --- operations ----------------------------------------------------------------------

API_VERSION_PARAMETER: Schema = {
    "name": "api-version",
    "in": "query",
    "required": True,
    "type": "string",
    "minLength": 1,
}
MAXRESULTS: Schema = {
    "name": "maxresults",
    "in": "query",
    "required": False,
    "type": "integer",
    "format": "int32",
    "minimum": 1,
    "maximum": 25,
}
OUT_CONTENT_TYPE: Schema = {
    "name": "outContentType",
    "in": "query",
    "required": False,
    "type": "string",
    "enum": ["application/x-pkcs12", "application/x-pem-file"],
}
# An object's name is 1 to 127 characters; where Key Vault makes an object, the name is
# checked for letters, digits and dashes.
NAME_LENGTH = {"minLength": 1, "maxLength": 127}
NEW_NAME = {"pattern": "^[0-9a-zA-Z-]+$"}


def path_parameter(name: str, **extra: Any) -> Schema:
    if name.endswith("-name"):
        extra = {**NAME_LENGTH, **extra}
    return {"name": name, "in": "path", "required": True, "type": "string", **extra}


def body_parameter(name: str, schema: str) -> Schema:
    return {"name": name, "in": "body", "required": True, "schema": ref(schema)}


def operation(
    operation_id: str,
    answer: str | None,
    *parameters: Schema,
    status: str = "200",
    pageable: bool = False,
) -> Schema:
    success: Schema = {"description": "Success."}
    if answer is not None:
        success["schema"] = ref(answer)
    op: Schema = {
        "operationId": operation_id,
        "parameters": [API_VERSION_PARAMETER, *parameters],
        "responses": {
            status: success,
            "default": {"description": "A Key Vault error.", "schema": ref("KeyVaultError")},
        },
    }
    if pageable:
        op["x-ms-pageable"] = {"nextLinkName": "nextLink"}
    return op


def _key_paths() -> dict[str, Schema]:
    name = path_parameter("key-name")
    version = path_parameter("key-version")

    def crypto(operation_id: str, body: str, answer: str) -> Schema:
        return {
            "post": operation(
                operation_id, answer, name, version, body_parameter("parameters", body)
            )
        }

    return {
        "/keys": {"get": operation("GetKeys", "KeyListResult", MAXRESULTS, pageable=True)},
        "/keys/restore": {
            "post": operation(
                "RestoreKey", "KeyBundle", body_parameter("parameters", "KeyRestoreParameters")
            )
        },
        # The latest version, without a version segment.
        "/keys/{key-name}": {
            "put": operation(
                "ImportKey",
                "KeyBundle",
                path_parameter("key-name", **NEW_NAME),
                body_parameter("parameters", "KeyImportParameters"),
            ),
            "get": operation("GetKeyLatest", "KeyBundle", name),
            "delete": operation("DeleteKey", "DeletedKeyBundle", name),
        },
        "/keys/{key-name}/create": {
            "post": operation(
                "CreateKey",
                "KeyBundle",
                path_parameter("key-name", **NEW_NAME),
                body_parameter("parameters", "KeyCreateParameters"),
            )
        },
        "/keys/{key-name}/versions": {
            "get": operation("GetKeyVersions", "KeyListResult", name, MAXRESULTS, pageable=True)
        },
        "/keys/{key-name}/backup": {"post": operation("BackupKey", "BackupKeyResult", name)},
        "/keys/{key-name}/rotate": {
            "post": operation("RotateKey", "KeyBundle", path_parameter("key-name", **NEW_NAME))
        },
        "/keys/{key-name}/rotationpolicy": {
            "get": operation("GetKeyRotationPolicy", "KeyRotationPolicy", name),
            "put": operation(
                "UpdateKeyRotationPolicy",
                "KeyRotationPolicy",
                name,
                body_parameter("keyRotationPolicy", "KeyRotationPolicy"),
            ),
        },
        "/keys/{key-name}/{key-version}": {
            "get": operation("GetKey", "KeyBundle", name, version),
            "patch": operation(
                "UpdateKey",
                "KeyBundle",
                name,
                version,
                body_parameter("parameters", "KeyUpdateParameters"),
            ),
        },
        "/keys/{key-name}/{key-version}/encrypt": crypto(
            "encrypt", "KeyOperationsParameters", "KeyOperationResult"
        ),
        "/keys/{key-name}/{key-version}/decrypt": crypto(
            "decrypt", "KeyOperationsParameters", "KeyOperationResult"
        ),
        "/keys/{key-name}/{key-version}/wrapkey": crypto(
            "wrapKey", "KeyOperationsParameters", "KeyOperationResult"
        ),
        "/keys/{key-name}/{key-version}/unwrapkey": crypto(
            "unwrapKey", "KeyOperationsParameters", "KeyOperationResult"
        ),
        "/keys/{key-name}/{key-version}/sign": crypto(
            "sign", "KeySignParameters", "KeyOperationResult"
        ),
        "/keys/{key-name}/{key-version}/verify": crypto(
            "verify", "KeyVerifyParameters", "KeyVerifyResult"
        ),
        "/deletedkeys": {
            "get": operation("GetDeletedKeys", "DeletedKeyListResult", MAXRESULTS, pageable=True)
        },
        "/deletedkeys/{key-name}": {
            "get": operation("GetDeletedKey", "DeletedKeyBundle", name),
            "delete": operation("PurgeDeletedKey", None, name, status="204"),
        },
        "/deletedkeys/{key-name}/recover": {
            "post": operation("RecoverDeletedKey", "KeyBundle", name)
        },
        "/rng": {
            "post": operation(
                "GetRandomBytes",
                "RandomBytes",
                body_parameter("parameters", "GetRandomBytesRequest"),
            )
        },
    }


def _secret_paths() -> dict[str, Schema]:
    name = path_parameter("secret-name")
    version = path_parameter("secret-version")
    return {
        "/secrets": {"get": operation("GetSecrets", "SecretListResult", MAXRESULTS, pageable=True)},
        "/secrets/restore": {
            "post": operation(
                "RestoreSecret",
                "SecretBundle",
                body_parameter("parameters", "SecretRestoreParameters"),
            )
        },
        "/secrets/{secret-name}": {
            "put": operation(
                "SetSecret",
                "SecretBundle",
                path_parameter("secret-name", **NEW_NAME),
                body_parameter("parameters", "SecretSetParameters"),
            ),
            # The latest version, without a version segment.
            "get": operation("GetSecretLatest", "SecretBundle", name, OUT_CONTENT_TYPE),
            "delete": operation("DeleteSecret", "DeletedSecretBundle", name),
        },
        "/secrets/{secret-name}/versions": {
            "get": operation(
                "GetSecretVersions", "SecretListResult", name, MAXRESULTS, pageable=True
            )
        },
        "/secrets/{secret-name}/backup": {
            "post": operation("BackupSecret", "BackupSecretResult", name)
        },
        "/secrets/{secret-name}/{secret-version}": {
            "get": operation("GetSecret", "SecretBundle", name, version, OUT_CONTENT_TYPE),
            "patch": operation(
                "UpdateSecret",
                "SecretBundle",
                name,
                version,
                body_parameter("parameters", "SecretUpdateParameters"),
            ),
        },
        "/deletedsecrets": {
            "get": operation(
                "GetDeletedSecrets", "DeletedSecretListResult", MAXRESULTS, pageable=True
            )
        },
        "/deletedsecrets/{secret-name}": {
            "get": operation("GetDeletedSecret", "DeletedSecretBundle", name),
            "delete": operation("PurgeDeletedSecret", None, name, status="204"),
        },
        "/deletedsecrets/{secret-name}/recover": {
            "post": operation("RecoverDeletedSecret", "SecretBundle", name)
        },
    }


INCLUDE_PENDING: Schema = {
    "name": "includePending",
    "in": "query",
    "required": False,
    "type": "boolean",
}


def _certificate_paths() -> dict[str, Schema]:
    name = path_parameter("certificate-name")
    new_name = path_parameter("certificate-name", **NEW_NAME)
    version = path_parameter("certificate-version")
    issuer = path_parameter("issuer-name")

    def body(name: str, schema: str = "") -> Schema:
        return body_parameter(name, schema or name)

    return {
        "/certificates": {
            "get": operation(
                "GetCertificates",
                "CertificateListResult",
                MAXRESULTS,
                INCLUDE_PENDING,
                pageable=True,
            )
        },
        "/certificates/restore": {
            "post": operation(
                "RestoreCertificate",
                "CertificateBundle",
                body("parameters", "CertificateRestoreParameters"),
            )
        },
        "/certificates/contacts": {
            "get": operation("GetCertificateContacts", "Contacts"),
            "put": operation("SetCertificateContacts", "Contacts", body("contacts", "Contacts")),
            "delete": operation("DeleteCertificateContacts", "Contacts"),
        },
        "/certificates/issuers": {
            "get": operation(
                "GetCertificateIssuers", "CertificateIssuerListResult", MAXRESULTS, pageable=True
            )
        },
        "/certificates/issuers/{issuer-name}": {
            "get": operation("GetCertificateIssuer", "IssuerBundle", issuer),
            "put": operation(
                "SetCertificateIssuer",
                "IssuerBundle",
                issuer,
                body("parameter", "CertificateIssuerSetParameters"),
            ),
            "patch": operation(
                "UpdateCertificateIssuer",
                "IssuerBundle",
                issuer,
                body("parameter", "CertificateIssuerUpdateParameters"),
            ),
            "delete": operation("DeleteCertificateIssuer", "IssuerBundle", issuer),
        },
        # The latest version, without a version segment.
        "/certificates/{certificate-name}": {
            "get": operation("GetCertificateLatest", "CertificateBundle", name),
            "delete": operation("DeleteCertificate", "DeletedCertificateBundle", name),
        },
        # The latest version, with an empty version segment (as the SDKs ask for it).
        "/certificates/{certificate-name}/": {
            "get": operation("GetCertificateEmptyVersion", "CertificateBundle", name),
            "patch": operation(
                "UpdateCertificateEmptyVersion",
                "CertificateBundle",
                name,
                body("parameters", "CertificateUpdateParameters"),
            ),
        },
        "/certificates/{certificate-name}/create": {
            "post": operation(
                "CreateCertificate",
                "CertificateOperation",
                new_name,
                body("parameters", "CertificateCreateParameters"),
                status="202",
            )
        },
        "/certificates/{certificate-name}/import": {
            "post": operation(
                "ImportCertificate",
                "CertificateBundle",
                new_name,
                body("parameters", "CertificateImportParameters"),
            )
        },
        "/certificates/{certificate-name}/versions": {
            "get": operation(
                "GetCertificateVersions",
                "CertificateListResult",
                name,
                MAXRESULTS,
                pageable=True,
            )
        },
        "/certificates/{certificate-name}/backup": {
            "post": operation("BackupCertificate", "BackupCertificateResult", name)
        },
        "/certificates/{certificate-name}/policy": {
            "get": operation("GetCertificatePolicy", "CertificatePolicy", name),
            "patch": operation(
                "UpdateCertificatePolicy",
                "CertificatePolicy",
                name,
                body("certificatePolicy", "CertificatePolicy"),
            ),
        },
        "/certificates/{certificate-name}/pending": {
            "get": operation("GetCertificateOperation", "CertificateOperation", name),
            "patch": operation(
                "UpdateCertificateOperation",
                "CertificateOperation",
                name,
                body("certificateOperation", "CertificateOperationUpdateParameter"),
            ),
            "delete": operation("DeleteCertificateOperation", "CertificateOperation", name),
        },
        "/certificates/{certificate-name}/pending/merge": {
            "post": operation(
                "MergeCertificate",
                "CertificateBundle",
                name,
                body("parameters", "CertificateMergeParameters"),
                status="201",
            )
        },
        "/certificates/{certificate-name}/{certificate-version}": {
            "get": operation("GetCertificate", "CertificateBundle", name, version),
            "patch": operation(
                "UpdateCertificate",
                "CertificateBundle",
                name,
                version,
                body("parameters", "CertificateUpdateParameters"),
            ),
        },
        "/deletedcertificates": {
            "get": operation(
                "GetDeletedCertificates",
                "DeletedCertificateListResult",
                MAXRESULTS,
                INCLUDE_PENDING,
                pageable=True,
            )
        },
        "/deletedcertificates/{certificate-name}": {
            "get": operation("GetDeletedCertificate", "DeletedCertificateBundle", name),
            "delete": operation("PurgeDeletedCertificate", None, name, status="204"),
        },
        "/deletedcertificates/{certificate-name}/recover": {
            "post": operation("RecoverDeletedCertificate", "CertificateBundle", name)
        },
    }


def key_vault_spec() -> dict[str, Any]:
    """A fresh copy of the description, for a caller to change at will."""
    spec = {
        "swagger": "2.0",
        "info": {
            "title": "Key Vault data plane: keys, secrets, certificates, as strongroom serves them",
            "version": API_VERSION,
        },
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "AzureAD": {
                "type": "oauth2",
                "flow": "implicit",
                "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
                "scopes": {"https://vault.azure.net/.default": "the vault's data plane"},
            }
        },
        "security": [{"AzureAD": ["https://vault.azure.net/.default"]}],
        "paths": {**_key_paths(), **_secret_paths(), **_certificate_paths()},
        "definitions": {
            **COMMON_DEFINITIONS,
            **KEY_DEFINITIONS,
            **SECRET_DEFINITIONS,
            **CERTIFICATE_DEFINITIONS,
        },
    }
    return copy.deepcopy(spec)
