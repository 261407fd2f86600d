"""The vault's objects (keys and secrets with their versions) and their Azure wire shapes.

Each object is stored in the vault's token as a head record (name, deletion,
the list of its versions) and one record per version (private PKCS#11 data
objects), so that no record grows with an object's history; this module turns
them to and from JSON and holds every limit on what a caller may store.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..api import durations
from .encoding import b64url, now
from .errors import BadParameter

KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM", "oct-HSM")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
CURVES = ("P-256", "P-384", "P-521")

SIGN_ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
}
EC_ALGORITHM_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
RSA_ENCRYPTION = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
SECRET_MAX_BYTES = 25 * 1024
CONTENT_TYPE_MAX = 255
MAX_TAGS = 15
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
# Quotas: objects of one kind (keys, or secrets) in a vault, deleted ones included, and
# versions of one object. They bound what one subject can make a pool store: records
# live on disk and are read when needed, so a vault holds 100,000s at a bounded cost.
MAX_OBJECTS = 250_000
MAX_VERSIONS = 500
# Unix times in attributes: anything up to the year 36812 is plenty.
MAX_UNIX_TIME = 2**40
# Tags under this prefix are the operator's: only the management API sets them.
RESERVED_TAG_PREFIX = "strongroom.io/"
# The tag that names the custom resource (by uid) an object was made for by the operator.
OWNER_TAG = RESERVED_TAG_PREFIX + "uid"


MAX_DURATION = 100 * 365 * 86400


def parse_duration(text: object) -> int:
    """Seconds in an ISO 8601 duration such as P30D or PT12H, at most 100 years (so a
    rotation never sets an exp beyond the attribute limits); a 400 when it is not one."""
    try:
        seconds = durations.parse_duration(text)
    except durations.InvalidDuration as exc:
        raise BadParameter(str(exc)) from None
    if seconds > MAX_DURATION:
        raise BadParameter(f"{str(text)[:40]!r} is longer than 100 years")
    return seconds


@dataclass
class Attributes:
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    created: int = field(default_factory=now)
    updated: int = field(default_factory=now)

    def update_from(self, raw: object) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            raise BadParameter("'attributes' must be an object")
        if "enabled" in raw and raw["enabled"] is not None:
            if not isinstance(raw["enabled"], bool):
                raise BadParameter("'attributes.enabled' must be true or false")
            self.enabled = raw["enabled"]
        for name in ("nbf", "exp"):
            if name in raw:
                value = raw[name]
                if value is not None and not _unix_time(value):
                    raise BadParameter(f"'attributes.{name}' must be a unix time in seconds")
                setattr(self, name, value)
        self.updated = now()

    def check(self) -> None:
        """Refuse attributes that no request could set (a restored backup's, say)."""
        if not isinstance(self.enabled, bool) or not all(
            _unix_time(value) for value in (self.created, self.updated)
        ):
            raise BadParameter("the object's attributes are invalid")
        for name in ("nbf", "exp"):
            value = getattr(self, name)
            if value is not None and not _unix_time(value):
                raise BadParameter(f"'attributes.{name}' must be a unix time in seconds")

    def usable_now(self) -> str | None:
        """Why the object cannot be used at this moment, or None."""
        if not self.enabled:
            return "Operation is not allowed on a disabled object."
        moment = now()
        if self.nbf is not None and moment < self.nbf:
            return "Operation is not allowed before the object's nbf (not-before) time."
        if self.exp is not None and moment >= self.exp:
            return "Operation is not allowed on an expired object."
        return None

    def wire(self, recovery_days: int, purge_protection: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "created": self.created,
            "updated": self.updated,
        }
        if self.nbf is not None:
            out["nbf"] = self.nbf
        if self.exp is not None:
            out["exp"] = self.exp
        custom = "CustomizedRecoverable" if recovery_days < 90 else "Recoverable"
        out["recoveryLevel"] = custom if purge_protection else custom + "+Purgeable"
        out["recoverableDays"] = recovery_days
        return out


def _unix_time(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_UNIX_TIME


def check_tags(raw: object) -> dict[str, str] | None:
    """A caller's tags, or None when it gave none; reserved names are refused."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise BadParameter("'tags' must be an object of string values")
    if len(raw) > MAX_TAGS:
        raise BadParameter(f"at most {MAX_TAGS} tags are allowed (got {len(raw)})")
    for name, value in raw.items():
        if not 1 <= len(name) <= TAG_NAME_MAX:
            raise BadParameter(f"a tag name is 1 to {TAG_NAME_MAX} characters")
        if len(value) > TAG_VALUE_MAX:
            raise BadParameter(f"the value of tag {name[:64]!r} is over {TAG_VALUE_MAX} characters")
        if name.lower().startswith(RESERVED_TAG_PREFIX):
            raise BadParameter(
                f"tag {name[:64]!r} is reserved: tags starting with {RESERVED_TAG_PREFIX!r} "
                "are set by the strongroom operator only"
            )
    return dict(raw)


def reserved_tags(tags: dict[str, str]) -> dict[str, str]:
    """The operator's tags of an object, which data-plane updates keep."""
    return {k: v for k, v in tags.items() if k.lower().startswith(RESERVED_TAG_PREFIX)}


def check_content_type(raw: object) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise BadParameter("'contentType' must be a string")
    if raw is not None and len(raw) > CONTENT_TYPE_MAX:
        raise BadParameter(f"'contentType' is at most {CONTENT_TYPE_MAX} characters")
    return raw


def owner_of(tags: dict[str, str]) -> str | None:
    return tags.get(OWNER_TAG)


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _head(name: str, versions: list[Any], deletion: "Deletion | None") -> dict[str, Any]:
    return {
        "name": name,
        "versions": [v.version for v in versions],
        "deletion": asdict(deletion) if deletion is not None else None,
    }


@dataclass
class Deletion:
    deleted_date: int
    scheduled_purge_date: int


@dataclass
class KeyVersion:
    version: str
    kty: str
    key_ops: list[str]
    public: dict[str, str]
    wrapped: str
    size: int | None = None
    crv: str | None = None
    attributes: Attributes = field(default_factory=Attributes)
    tags: dict[str, str] = field(default_factory=dict)
    # The key of a certificate version: changed only through its certificate.
    managed: bool = False

    def jwk(self, kid: str) -> dict[str, Any]:
        out: dict[str, Any] = {"kid": kid, "kty": self.kty, "key_ops": list(self.key_ops)}
        for name, value in self.public.items():
            out[name] = b64url(bytes.fromhex(value))
        if self.crv is not None:
            out["crv"] = self.crv
        return out


@dataclass
class KeyEntry:
    name: str
    versions: list[KeyVersion] = field(default_factory=list)
    deletion: Deletion | None = None
    rotation_policy: dict[str, Any] | None = None

    @property
    def current(self) -> KeyVersion:
        return self.versions[-1]

    def version(self, version: str | None) -> KeyVersion | None:
        if not version:
            return self.versions[-1] if self.versions else None
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        return None

    def dump(self) -> bytes:
        """The whole object in one document: what a backup seals."""
        return _json(asdict(self))

    def head(self) -> bytes:
        return _json(
            _head(self.name, self.versions, self.deletion)
            | {"rotation_policy": self.rotation_policy}
        )

    @staticmethod
    def dump_version(version: KeyVersion) -> bytes:
        return _json(asdict(version))

    @classmethod
    def from_parts(cls, head: dict[str, Any], versions: list[dict[str, Any]]) -> "KeyEntry":
        loaded = []
        for v in versions:
            loaded.append(KeyVersion(**v | {"attributes": Attributes(**v["attributes"])}))
        deletion = Deletion(**head["deletion"]) if head.get("deletion") else None
        return cls(head["name"], loaded, deletion, head.get("rotation_policy"))

    @classmethod
    def load(cls, raw: bytes) -> "KeyEntry":
        data = json.loads(raw)
        return cls.from_parts(data, data["versions"])


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None = None
    attributes: Attributes = field(default_factory=Attributes)
    tags: dict[str, str] = field(default_factory=dict)
    # The secret of a certificate version (its PFX or PEM): changed only through it.
    managed: bool = False


@dataclass
class SecretEntry:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deletion: Deletion | None = None

    def version(self, version: str | None) -> SecretVersion | None:
        if not version:
            return self.versions[-1] if self.versions else None
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        return None

    def dump(self) -> bytes:
        """The whole object in one document: what a backup seals."""
        return _json(asdict(self))

    def head(self) -> bytes:
        return _json(_head(self.name, self.versions, self.deletion))

    @staticmethod
    def dump_version(version: SecretVersion) -> bytes:
        return _json(asdict(version))

    @classmethod
    def from_parts(cls, head: dict[str, Any], versions: list[dict[str, Any]]) -> "SecretEntry":
        loaded = []
        for v in versions:
            loaded.append(SecretVersion(**v | {"attributes": Attributes(**v["attributes"])}))
        deletion = Deletion(**head["deletion"]) if head.get("deletion") else None
        return cls(head["name"], loaded, deletion)

    @classmethod
    def load(cls, raw: bytes) -> "SecretEntry":
        data = json.loads(raw)
        return cls.from_parts(data, data["versions"])


@dataclass
class CertificateVersion:
    version: str
    cer: str  # the certificate, DER in base64
    chain: list[str] = field(default_factory=list)  # its issuers' certificates, DER in base64
    content_type: str = "application/x-pkcs12"
    attributes: Attributes = field(default_factory=Attributes)
    tags: dict[str, str] = field(default_factory=dict)
    notified: bool = False  # an EmailContacts lifetime action has fired for this version


@dataclass
class CertificateEntry:
    """A certificate: its versions, its policy (the wire shape, checked), and its pending
    operation, if one was made (the wire shape plus what the vault keeps for it)."""

    name: str
    versions: list[CertificateVersion] = field(default_factory=list)
    deletion: Deletion | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Any] | None = None

    @property
    def current(self) -> CertificateVersion:
        return self.versions[-1]

    def version(self, version: str | None) -> CertificateVersion | None:
        if not version:
            return self.versions[-1] if self.versions else None
        for candidate in self.versions:
            if candidate.version == version:
                return candidate
        return None

    def dump(self) -> bytes:
        return _json(asdict(self))

    def head(self) -> bytes:
        return _json(
            _head(self.name, self.versions, self.deletion)
            | {"policy": self.policy, "pending": self.pending}
        )

    @staticmethod
    def dump_version(version: CertificateVersion) -> bytes:
        return _json(asdict(version))

    @classmethod
    def from_parts(cls, head: dict[str, Any], versions: list[dict[str, Any]]) -> "CertificateEntry":
        loaded = [
            CertificateVersion(**v | {"attributes": Attributes(**v["attributes"])})
            for v in versions
        ]
        deletion = Deletion(**head["deletion"]) if head.get("deletion") else None
        return cls(head["name"], loaded, deletion, head.get("policy") or {}, head.get("pending"))

    @classmethod
    def load(cls, raw: bytes) -> "CertificateEntry":
        data = json.loads(raw)
        return cls.from_parts(data, data["versions"])
