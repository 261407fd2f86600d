"""Reconcile a VaultSecret: its value generated in the vault or imported once from a
Kubernetes Secret, or set through the vault's API by someone else; status reports the
secret's id and version, never its value.

Generated values are made by the vault from its HSM's random number generator:
the operator never holds them. An imported value passes through the operator's
memory once, on its way from the Kubernetes Secret to the vault, and only when the
Secret names the importing VaultSecret in its `strongroom.io/allow-import`
annotation: the operator reads every Secret, its users may not.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

from ..builders.common import Owner
from ..models import VaultSecretSpec, VaultSecretStatus
from .conditions import with_condition
from .context import Context
from .errors import ImportNotAllowed, InvalidSpec, NotReady
from .vault import vault_address, vault_address_for_delete


@dataclass(frozen=True)
class SecretState:
    """The secret as the pool's management API reports it: no value."""

    name: str
    owner: str | None
    id: str
    versions: tuple[str, ...]
    deleted: bool

    @property
    def current_version(self) -> str:
        return self.versions[-1]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "SecretState":
        return cls(
            name=raw["name"],
            owner=raw.get("owner"),
            id=raw["id"],
            versions=tuple(v["version"] for v in raw["versions"]),
            deleted=raw.get("deleted") is not None,
        )


def secret_name(owner: Owner, spec: VaultSecretSpec) -> str:
    return spec.secret_name or owner.name


# --- pure decisions ----------------------------------------------------------------------

Source = Literal["generate", "fromSecret", "external"]


def source_of(spec: VaultSecretSpec) -> Source:
    if spec.source.generate is not None:
        return "generate"
    if spec.source.from_secret is not None:
        return "fromSecret"
    return "external"


def generate_body(spec: VaultSecretSpec) -> dict[str, Any]:
    """What the vault is asked to make; it draws the value from its HSM."""
    generate = spec.source.generate
    assert generate is not None
    body: dict[str, Any] = {
        "generate": {"length": generate.length, "encoding": generate.encoding},
    }
    if spec.content_type is not None:
        body["contentType"] = spec.content_type
    return body


ALLOW_IMPORT = "strongroom.io/allow-import"


def import_allowed(secret: dict[str, Any] | None, importer: str) -> bool:
    """Pure: whether the Secret opts in to being imported by the VaultSecret `importer`."""
    if secret is None:
        return False
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    allowed = {name.strip() for name in str(annotations.get(ALLOW_IMPORT, "")).split(",")}
    return "*" in allowed or importer in allowed


def allowed_source(secret: dict[str, Any] | None, importer: str, source: str) -> dict[str, Any]:
    """The Secret to import from, if it allows `importer`. A missing Secret gets the same
    answer as one that does not opt in: the VaultSecret's author learns nothing of Secrets
    they could not read themselves."""
    if secret is None or not import_allowed(secret, importer):
        raise ImportNotAllowed(
            f"The Secret {source!r} does not exist or does not allow VaultSecret {importer!r} "
            f"to import it: its owner can add the annotation {ALLOW_IMPORT}: {importer} "
            "(a comma-separated list of VaultSecret names, or *)"
        )
    return secret


def imported_value(secret: dict[str, Any], spec: VaultSecretSpec) -> str:
    """The value to import, from the data of a Kubernetes Secret that allows it (see
    allowed_source). Messages name the Secret and its key, never any part of it."""
    selector = spec.source.from_secret
    assert selector is not None
    data = secret.get("data") or {}
    if selector.key not in data:
        raise NotReady(
            f"The Secret {selector.name!r} has no key {selector.key!r}",
            reason="SourceKeyNotFound",
        )
    try:
        return base64.b64decode(data[selector.key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidSpec(
            f"The value under key {selector.key!r} of Secret {selector.name!r} is not UTF-8 "
            "text; a vault secret is a string (store binary data base64-encoded)",
            reason="SourceNotText",
        ) from None


def check_owner(state: SecretState, uid: str, spec: VaultSecretSpec, vault: str) -> None:
    """A secret the operator makes must be this resource's; an external one may be anyone's."""
    if source_of(spec) != "external" and state.owner != uid:
        raise InvalidSpec(
            f"A secret named {state.name} already exists in vault {vault} and was not made for "
            "this resource; delete it there, set spec.secretName to another name, or use "
            "source.external to only report it",
            reason="SecretNameTaken",
        )


def should_delete(state: SecretState | None, uid: str) -> bool:
    """Pure: soft-delete only a live secret that this resource made (never an external one)."""
    return state is not None and state.owner == uid and not state.deleted


def secret_status(
    state: SecretState, vault: str, status: VaultSecretStatus, generation: int
) -> VaultSecretStatus:
    return status.model_copy(
        update={
            "id": state.id,
            "current_version": state.current_version,
            "observed_generation": generation,
            "conditions": with_condition(
                status.conditions,
                "Ready",
                True,
                "SecretReady",
                f"Secret {state.name} in vault {vault}, version {state.current_version}.",
                generation,
            ),
        }
    )


# --- carrying them out -------------------------------------------------------------------


async def reconcile_secret(
    ctx: Context,
    owner: Owner,
    spec: VaultSecretSpec,
    status: VaultSecretStatus,
    generation: int,
) -> VaultSecretStatus:
    vault = await vault_address(ctx, owner.namespace, spec.vault_ref.name)
    name = secret_name(owner, spec)
    raw = await ctx.pools.get_secret(vault, name)
    source = source_of(spec)
    if raw is None:
        if source == "external":
            raise NotReady(
                f"Secret {name} has no value in vault {vault.vault} yet; set it through the "
                "vault's API",
                reason="WaitingForValue",
            )
        if source == "generate":
            body = generate_body(spec)
        else:
            selector = spec.source.from_secret
            assert selector is not None
            found = await ctx.kube.get("v1", "Secret", owner.namespace, selector.name)
            allowed = allowed_source(found, owner.name, selector.name)
            body = {"value": imported_value(allowed, spec)}
            if spec.content_type is not None:
                body["contentType"] = spec.content_type
        raw = await ctx.pools.create_secret(vault, name, owner.uid, body)
    state = SecretState.parse(raw)
    check_owner(state, owner.uid, spec, vault.vault)
    if state.deleted:
        if source == "external":
            raise NotReady(
                f"Secret {name} is deleted in vault {vault.vault}", reason="SecretDeleted"
            )
        await ctx.pools.recover_secret(vault, name)
    return secret_status(state, vault.vault, status, generation)


async def delete_secret(ctx: Context, owner: Owner, spec: VaultSecretSpec) -> None:
    """Soft-delete the secret this resource made; an external one is left to its owner."""
    vault = await vault_address_for_delete(ctx, owner.namespace, spec.vault_ref.name)
    if vault is None:
        return
    name = secret_name(owner, spec)
    raw = await ctx.pools.get_secret(vault, name)
    state = None if raw is None else SecretState.parse(raw)
    if should_delete(state, owner.uid):
        await ctx.pools.delete_secret(vault, name)
