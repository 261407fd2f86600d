"""What a vault server serves: its vaults, their host names, access lists and retention."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.vocabulary import KEY_PERMISSIONS, SECRET_PERMISSIONS

# The audience every vault of every pool accepts from its own namespace's ServiceAccounts:
# what the CSI driver's token requests ask for.
SHARED_AUDIENCE = "strongroom.io/vault"


@dataclass(frozen=True)
class AccessEntry:
    """Permissions of one subject (a ServiceAccount's username, or `*` for anyone authenticated)."""

    subject: str
    keys: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "AccessEntry":
        subject = raw.get("subject")
        if not isinstance(subject, str) or not subject:
            raise ValueError("every access entry needs a 'subject'")
        keys = _permissions(raw.get("keys", []), KEY_PERMISSIONS, "keys")
        secrets = _permissions(raw.get("secrets", []), SECRET_PERMISSIONS, "secrets")
        return cls(subject, keys, secrets)

    def raw(self) -> dict[str, Any]:
        return {"subject": self.subject, "keys": sorted(self.keys), "secrets": sorted(self.secrets)}


def _permissions(raw: object, allowed: frozenset[str], kind: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ValueError(f"'{kind}' must be a list of permission names")
    if "all" in raw:
        return allowed
    lowered = {p.lower(): p for p in allowed}
    unknown = [p for p in raw if p.lower() not in lowered]
    if unknown:
        raise ValueError(f"unknown {kind} permission(s): {', '.join(sorted(unknown))}")
    return frozenset(lowered[p.lower()] for p in raw)


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

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "VaultConfig":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("every vault needs a 'name'")
        hosts = raw.get("hosts", [])
        if not isinstance(hosts, list) or not hosts:
            raise ValueError(f"vault {name!r} needs at least one host name in 'hosts'")
        audience = raw.get("audience")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ValueError(f"vault {name!r}: 'audience' must be a non-empty string")
        retention = int(raw.get("retentionDays", 90))
        if not 7 <= retention <= 90:
            raise ValueError(f"vault {name!r}: retentionDays must be between 7 and 90")
        return cls(
            name=name,
            hosts=tuple(str(h).lower() for h in hosts),
            access=tuple(AccessEntry.parse(a) for a in raw.get("access", [])),
            retention_days=retention,
            purge_protection=bool(raw.get("purgeProtection", False)),
            challenge_resource=raw.get("challengeResource"),
            audience=audience,
        )

    def raw(self) -> dict[str, Any]:
        """The shape `parse` reads: what the management API takes, returns and persists."""
        raw: dict[str, Any] = {
            "name": self.name,
            "hosts": list(self.hosts),
            "access": [entry.raw() for entry in self.access],
            "retentionDays": self.retention_days,
            "purgeProtection": self.purge_protection,
        }
        if self.challenge_resource is not None:
            raw["challengeResource"] = self.challenge_resource
        if self.audience is not None:
            raw["audience"] = self.audience
        return raw

    def permissions(self, subject: str, kind: str) -> frozenset[str]:
        granted: set[str] = set()
        for entry in self.access:
            if entry.subject in (subject, "*"):
                granted |= entry.keys if kind == "keys" else entry.secrets
        return frozenset(granted)


@dataclass(frozen=True)
class ServerConfig:
    vaults: tuple[VaultConfig, ...]
    # Shared audiences: accepted for every vault, from `namespace`'s ServiceAccounts only.
    audiences: tuple[str, ...] = (SHARED_AUDIENCE,)
    # The pool's namespace; None (dev, tests) lifts the restriction on shared audiences.
    namespace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
        return cls(vaults=vaults, audiences=audiences, namespace=namespace)
