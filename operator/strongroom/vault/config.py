"""What a vault server serves: its vaults, their host names, access lists and retention."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..api.management import AccessGrant, VaultBody, VaultSettings, problems
from ..api.vocabulary import ALL, CERTIFICATE_PERMISSIONS, KEY_PERMISSIONS, SECRET_PERMISSIONS

# The audience every vault of every pool accepts from its own namespace's ServiceAccounts:
# what the CSI driver's token requests ask for.
SHARED_AUDIENCE = "strongroom.io/vault"
# Distinct (subject, kind) answers a VaultConfig keeps; past that it starts afresh.
GRANTS_REMEMBERED = 4096


@dataclass(frozen=True)
class AccessEntry:
    """Permissions of one subject (a ServiceAccount's username, or `*` for anyone authenticated)."""

    subject: str
    keys: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    certificates: frozenset[str] = frozenset()

    @classmethod
    def of(cls, grant: AccessGrant) -> "AccessEntry":
        """The grant with `all` spelled out as every permission this server knows."""
        return cls(
            grant.subject,
            KEY_PERMISSIONS if ALL in grant.keys else frozenset(grant.keys),
            SECRET_PERMISSIONS if ALL in grant.secrets else frozenset(grant.secrets),
            CERTIFICATE_PERMISSIONS if ALL in grant.certificates else frozenset(grant.certificates),
        )

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "AccessEntry":
        try:
            return cls.of(AccessGrant.model_validate(raw))
        except ValidationError as exc:
            raise ValueError(f"invalid access entry: {problems(exc)}") from None

    def wire(self) -> AccessGrant:
        return AccessGrant(
            subject=self.subject,
            keys=sorted(self.keys),
            secrets=sorted(self.secrets),
            certificates=sorted(self.certificates),
        )


@dataclass(frozen=True)
class VaultConfig:
    name: str
    hosts: tuple[str, ...]
    access: tuple[AccessEntry, ...] = ()
    retention_days: int = 90
    purge_protection: bool = False
    # The `resource` of the Bearer challenge; clients check that the vault's host ends with it.
    challenge_resource: str | None = None
    # The vault's own URI: a token for this audience is good for this vault only, from any
    # namespace.
    audience: str | None = None
    # What `permissions` found, by (subject, kind): this config never changes (a changed
    # access list is a new VaultConfig), so neither do its answers.
    _granted: dict[tuple[str, str], frozenset[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def of(cls, name: str, settings: VaultSettings) -> "VaultConfig":
        return cls(
            name=name,
            hosts=tuple(settings.hosts),
            access=tuple(AccessEntry.of(grant) for grant in settings.access),
            retention_days=settings.retention_days,
            purge_protection=settings.purge_protection,
            challenge_resource=settings.challenge_resource,
            audience=settings.audience,
        )

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "VaultConfig":
        """A vault as the management API's VaultBody has it (the shape `raw` writes)."""
        try:
            body = VaultBody.model_validate(raw)
        except ValidationError as exc:
            name = raw.get("name") if isinstance(raw, dict) else None
            which = f"vault {name!r}" if isinstance(name, str) and name else "a vault"
            raise ValueError(f"{which}: {problems(exc)}") from None
        return cls.of(body.name, body)

    def wire(self) -> VaultBody:
        """What the management API answers with and the pool keeps in the vault's token."""
        optional = {
            field: value
            for field, value in (
                ("challenge_resource", self.challenge_resource),
                ("audience", self.audience),
            )
            if value is not None
        }
        return VaultBody(
            name=self.name,
            hosts=list(self.hosts),
            access=[entry.wire() for entry in self.access],
            retention_days=self.retention_days,
            purge_protection=self.purge_protection,
            **optional,
        )

    def raw(self) -> dict[str, Any]:
        """The shape `parse` reads."""
        return self.wire().wire()

    def permissions(self, subject: str, kind: str) -> frozenset[str]:
        found = self._granted.get((subject, kind))
        if found is None:
            if len(self._granted) >= GRANTS_REMEMBERED:
                self._granted.clear()
            found = self._granted[(subject, kind)] = self._permissions(subject, kind)
        return found

    def _permissions(self, subject: str, kind: str) -> frozenset[str]:
        granted: set[str] = set()
        for entry in self.access:
            if entry.subject in (subject, "*"):
                granted |= {
                    "keys": entry.keys,
                    "secrets": entry.secrets,
                    "certificates": entry.certificates,
                }.get(kind, frozenset())
        return frozenset(granted)


@dataclass(frozen=True)
class ServerConfig:
    vaults: tuple[VaultConfig, ...]
    # Shared audiences: accepted for every vault, from `namespace`'s ServiceAccounts only.
    audiences: tuple[str, ...] = (SHARED_AUDIENCE,)
    # The pool's namespace; None (dev, tests) lifts the restriction on shared audiences.
    namespace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Subjects whose bearer tokens may run the pool's security-domain operations (besides the
    # operator's client certificate), and the audience such a token must hold (else a shared
    # audience, as for vaults): vault/securitydomain.py.
    security_officers: tuple[str, ...] = ()
    pool_audience: str | None = None

    @classmethod
    def load(cls, path: Path) -> "ServerConfig":
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read vault server config {path}: {exc}") from None
        vaults = tuple(VaultConfig.parse(v) for v in raw.get("vaults", []))
        names = [v.name for v in vaults]
        if len(set(names)) != len(names):
            raise ValueError("vault names in the config must be unique")
        audiences = tuple(raw.get("audiences", [SHARED_AUDIENCE]))
        namespace = raw.get("namespace")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ValueError("'namespace' must be the pool's namespace")
        officers = raw.get("securityOfficers", [])
        if not isinstance(officers, list) or not all(isinstance(o, str) and o for o in officers):
            raise ValueError("'securityOfficers' must be a list of subjects")
        pool_audience = raw.get("poolAudience")
        if pool_audience is not None and (not isinstance(pool_audience, str) or not pool_audience):
            raise ValueError("'poolAudience' must be a non-empty string")
        return cls(
            vaults=vaults,
            audiences=audiences,
            namespace=namespace,
            security_officers=tuple(officers),
            pool_audience=pool_audience,
        )
