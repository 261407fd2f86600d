"""The bodies of the pool's management API (/_strongroom/v1/ on the vault server).

The vault server parses requests and writes answers with these models; the operator
writes requests and parses answers with the same ones, so the two cannot drift apart.
Field names on the wire are camelCase, except in a key's create body, which is Azure
Key Vault's own (snake_case). Types are strict: a JSON number is not a string, nor
`true` a number. `wire()` writes the fields that were set, None included, so what a
side sets is exactly what the other reads.

No model here holds a secret value except SecretCreate.value (an imported value on its
way to the vault), and no validation message repeats what it was given.
"""

import datetime
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .vocabulary import (
    ALL,
    CERTIFICATE_PERMISSIONS,
    KEY_PERMISSIONS,
    SECRET_PERMISSIONS,
    SecretEncoding,
)

PREFIX = "/_strongroom/v1"
# The uid of the custom resource an object is made for.
OWNER_MAX = 128


class WireModel(BaseModel):
    """A management API body: camelCase on the wire, strict types, unknown fields ignored
    (a newer operator may send what an older pool does not read yet)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        strict=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object to send: the fields that were set, None included."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def problems(error: ValidationError) -> str:
    """What is wrong with a body, field by field (`access[0].keys: ...`), for a 400 answer
    or a log line: never the values given."""
    found = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        where = ""
        for part in problem["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
        message = problem["msg"].removeprefix("Value error, ")
        found.append(f"{where}: {message}" if where else message)
    return "; ".join(found)


# --- errors ---------------------------------------------------------------------------------


class ErrorDetail(WireModel):
    code: str = ""
    message: str = ""


class ErrorBody(WireModel):
    """Every answer other than success: Azure Key Vault's error shape."""

    error: ErrorDetail


# --- the pool ------------------------------------------------------------------------------


class Health(WireModel):
    """GET /health. `securityDomain`: the pool's security-domain state as its HSM says
    (awaiting, activated, restored, unexported; empty from a pool before security domains),
    and `securityDomainHeld` whether it still holds the blob of the download that activated
    it (GET and DELETE /securitydomain/download below)."""

    status: str
    hsm_platform: str = ""
    vaults: list[str] = Field(default_factory=list)
    security_domain: str = ""
    security_domain_held: bool = False
    security_domain_id: str = ""


class HeldSecurityDomain(WireModel):
    """GET /securitydomain/download: the blob of the download that activated the pool,
    encrypted to its holders' certificates, as Managed HSM's download answers it."""

    value: str = Field(min_length=1)


# --- backups --------------------------------------------------------------------------------

BACKUP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.tar$"


class BackupPool(WireModel):
    """The pool a backup is of, as its HsmPool names it (written into the manifest)."""

    namespace: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=63)
    uid: str = Field(min_length=1, max_length=128)


class BackupRequest(WireModel):
    """POST /backups: write a backup of the pool to its backup volume under `name`."""

    name: str = Field(pattern=BACKUP_NAME_PATTERN)
    pool: BackupPool


class BackupPart(WireModel):
    size: int
    sha256: str


class BackupMade(WireModel):
    """A backup written: its file, the whole file's size and SHA-256, and its manifest's
    time, security domain id and parts."""

    name: str
    size: int
    sha256: str
    created: str
    security_domain: str = ""
    parts: dict[str, BackupPart] = Field(default_factory=dict)


class BackupFileEntry(WireModel):
    name: str
    size: int
    modified: str


class BackupList(WireModel):
    """GET /backups: the backup files on the pool's backup volume, by name."""

    backups: list[BackupFileEntry] = Field(default_factory=list)


class ServedTls(WireModel):
    """GET /tls: what the certificate served to new connections names, and until when."""

    dns_names: list[str]
    not_after: datetime.datetime = Field(strict=False)  # an ISO 8601 string on the wire

    @field_serializer("not_after")
    def _not_after(self, value: datetime.datetime) -> str:
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TlsUpdate(WireModel):
    """PUT /tls: serve this certificate chain and key from the next handshake on."""

    certificate: str = Field(min_length=1, description="PEM chain, the server's first")
    private_key: str = Field(min_length=1, description="PEM private key of the certificate")


# --- vaults --------------------------------------------------------------------------------


def _permissions(given: list[str], known: frozenset[str], kind: str) -> list[str]:
    """The names in their canonical spelling (they match case-insensitively), `all` kept."""
    canonical = {name.lower(): name for name in known} | {ALL: ALL}
    unknown = sorted({name for name in given if name.lower() not in canonical})
    if unknown:
        raise ValueError(f"unknown {kind} permission(s): {', '.join(unknown)}")
    return [canonical[name.lower()] for name in given]


class AccessGrant(WireModel):
    """What one subject may do in a vault: a ServiceAccount's username, or `*` for anyone
    the vault authenticates. `all` grants every permission of its kind."""

    subject: str = Field(min_length=1, max_length=512)
    keys: list[str] = Field(default_factory=list, max_length=64)
    secrets: list[str] = Field(default_factory=list, max_length=64)
    certificates: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        return _permissions(value, KEY_PERMISSIONS, "keys")

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        return _permissions(value, SECRET_PERMISSIONS, "secrets")

    @field_validator("certificates")
    @classmethod
    def _certificates(cls, value: list[str]) -> list[str]:
        return _permissions(value, CERTIFICATE_PERMISSIONS, "certificates")


class VaultSettings(WireModel):
    """PUT /vaults/{name}: the vault's hosts, access list and soft-delete rules."""

    hosts: list[str] = Field(min_length=1, max_length=64)
    access: list[AccessGrant] = Field(default_factory=list, max_length=1024)
    retention_days: int = Field(90, ge=7, le=90)
    purge_protection: bool = False
    # The `resource` of the Bearer challenge; clients check that the vault's host ends with it.
    challenge_resource: str | None = None
    # The vault's own URI: a token for this audience is good for this vault only.
    audience: str | None = Field(None, min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        if not all(1 <= len(host) <= 253 for host in value):
            raise ValueError("each host name is 1-253 characters")
        return [host.lower() for host in value]


class VaultBody(VaultSettings):
    """A vault as the pool serves it: GET and PUT /vaults/{name} answer with it, and the
    pool keeps it in the vault's token."""

    name: str = Field(min_length=1)


class VaultList(WireModel):
    """GET /vaults."""

    value: list[VaultBody]


# --- keys and secrets, made once for the custom resource that owns them ---------------------


class NewAttributes(WireModel):
    """Attributes of a new object; times are unix seconds."""

    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


class KeyCreate(WireModel):
    """A key's create body, as Azure Key Vault's data plane takes it (snake_case); the
    vault checks the values as it checks the data plane's."""

    model_config = ConfigDict(alias_generator=None)

    kty: str
    key_size: int | None = None
    crv: str | None = None
    key_ops: list[str] | None = None
    public_exponent: int | None = None
    attributes: NewAttributes | None = None
    tags: dict[str, str] | None = None


class KeyPut(KeyCreate):
    """PUT /vaults/{name}/keys/{key}: make the key for `owner` unless it exists."""

    owner: str = Field(min_length=1, max_length=OWNER_MAX)


class OwnerPut(WireModel):
    """PUT /vaults/{name}/keys/{key}/owner and .../secrets/{secret}/owner: give an object
    that has no owner (it was made through the vault's API) to `owner`, the custom resource
    that adopts it. The same owner again changes nothing; another owner's object, or a
    deleted one, is refused with 409."""

    owner: str = Field(min_length=1, max_length=OWNER_MAX)


class SecretGenerate(WireModel):
    """A value made in the vault from its HSM's random number generator."""

    length: int = Field(32, description="bytes of randomness, 16-4096")
    encoding: SecretEncoding = "base64"

    @field_validator("length")
    @classmethod
    def _length(cls, value: int) -> int:
        if not 16 <= value <= 4096:
            raise ValueError("16-4096 bytes of randomness")
        return value


class SecretFields(WireModel):
    """What a new version of a secret carries besides its value."""

    content_type: str | None = None
    tags: dict[str, str] | None = None
    attributes: NewAttributes | None = None


class SecretCreate(SecretFields):
    """A secret's first version: its `value`, or one to `generate`."""

    value: str | None = Field(None, repr=False)
    generate: SecretGenerate | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.value is None) == (self.generate is None):
            raise ValueError("give the secret's 'value' or 'generate', one of the two")
        return self


class SecretPut(SecretCreate):
    """PUT /vaults/{name}/secrets/{secret}: set the secret for `owner` unless it exists."""

    owner: str = Field(min_length=1, max_length=OWNER_MAX)


class SecretRotate(SecretFields):
    """POST /vaults/{name}/secrets/{secret}/rotate: a new version generated for `owner`'s
    secret, if its current version is still `ifCurrentVersion` (so that a retry makes
    nothing). The content type is the current version's unless given."""

    owner: str = Field(min_length=1, max_length=OWNER_MAX)
    if_current_version: str = Field(min_length=1, max_length=64)
    generate: SecretGenerate

    @model_validator(mode="before")
    @classmethod
    def _no_value(cls, data: Any) -> Any:
        if isinstance(data, dict) and "value" in data:
            raise ValueError("a rotation is generated in the HSM: give 'generate', not 'value'")
        return data


class Deletion(WireModel):
    """When a deleted object was deleted and when it is purged (unix seconds)."""

    deleted_date: int
    scheduled_purge_date: int


class ObjectAttributes(WireModel):
    """A version's attributes as Azure Key Vault writes them; times are unix seconds.
    Attributes this model does not name are passed on as they are."""

    model_config = ConfigDict(extra="allow")

    enabled: bool
    created: int
    updated: int | None = None
    nbf: int | None = None
    exp: int | None = None
    recovery_level: str | None = None
    recoverable_days: int | None = None
    exportable: bool | None = None


class KeyVersionState(WireModel):
    version: str
    key_ops: list[str]
    attributes: ObjectAttributes


class KeyState(WireModel):
    """GET and PUT /vaults/{name}/keys/{key}: the key's owner, its versions oldest first,
    the current version's public JWK and size, its rotation policy (Azure's shape) and
    whether it is deleted."""

    name: str
    owner: str | None
    key: dict[str, Any]
    versions: list[KeyVersionState] = Field(min_length=1)
    rotation_policy: dict[str, Any] | None
    deleted: Deletion | None
    # The current version's size in bits (RSA, oct-HSM); None for EC keys, whose JWK names
    # the curve, and from pools that do not report it yet.
    key_size: int | None = None


class SecretVersionState(WireModel):
    version: str
    created: int
    enabled: bool


class SecretState(WireModel):
    """GET and PUT /vaults/{name}/secrets/{secret}: never the value."""

    name: str
    owner: str | None
    id: str
    content_type: str | None = None
    versions: list[SecretVersionState] = Field(min_length=1)
    deleted: Deletion | None


# --- certificates, made once for the VaultCertificate that owns them -------------------------


class CertificatePut(WireModel):
    """PUT /vaults/{name}/certificates/{certificate}: create the certificate for `owner`
    unless it exists. `policy` is Key Vault's certificate policy (its wire shape, snake_case),
    checked by the vault as the data plane checks it."""

    owner: str = Field(min_length=1, max_length=OWNER_MAX)
    policy: dict[str, Any]
    tags: dict[str, str] | None = None


class CertificateVersionState(WireModel):
    version: str
    x5t: str  # SHA-1 thumbprint of the certificate, base64url
    attributes: ObjectAttributes


class PendingCertificate(WireModel):
    """The certificate's last operation: `inProgress` with a signing request (`csr`, base64
    DER) to be signed and merged, `completed`, `cancelled` or `failed` (`error`)."""

    status: str
    status_details: str = ""
    request_id: str = ""
    csr: str | None = None
    error: dict[str, Any] | None = None


class CertificateState(WireModel):
    """GET and PUT /vaults/{name}/certificates/{certificate}: the owner, the versions oldest
    first (none while the first signing request is pending), the current certificate's
    subject, the policy (Key Vault's shape), the pending operation and whether it is
    deleted. Never a private key."""

    name: str
    owner: str | None
    versions: list[CertificateVersionState]
    subject: str | None = None
    policy: dict[str, Any]
    pending: PendingCertificate | None
    deleted: Deletion | None
