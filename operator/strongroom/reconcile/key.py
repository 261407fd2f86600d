"""Reconcile a Key: the key made once in its vault, its attributes and rotation policy kept
to the spec, its status read back from the vault; soft-deleted with the resource.

The key's identity is the resource's uid: the vault tags the key with it and
makes it only when no key of that name exists, so a re-run (or an operator
killed between the HSM's create and the status write) finds the key it made.
A key made through the vault's API has no such tag; with spec.adopt, and the Vault's
consent (reconcile/adopt.py), the vault tags it for the resource and it is the
resource's from then on, its versions kept.
"""

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api import management as wire
from ..api.durations import InvalidDuration, parse_duration
from ..api.vocabulary import KEY_OPS, family
from ..builders.common import Owner
from ..models import KeySpec, KeyStatus
from ..models.key import JsonWebKey, KeyVersionStatus, RotationPolicy
from .adopt import Notify, check_allowed
from .conditions import with_condition
from .context import Context
from .errors import InvalidSpec, PoolApiError, ReconcileError
from .poolapi import VaultAddress, read_answer
from .vault import vault_address, vault_address_for_delete


def key_name(owner: Owner, spec: KeySpec) -> str:
    return spec.key_name or owner.name


def duration_seconds(text: str) -> int:
    """Seconds in a duration of the spec, counted as the vault counts them."""
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise InvalidSpec(str(exc)) from None


def _timestamp(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


@dataclass(frozen=True)
class KeyVersionState:
    version: str
    created: int
    enabled: bool
    nbf: int | None
    exp: int | None
    key_ops: tuple[str, ...]


@dataclass(frozen=True)
class KeyState:
    """The key as the pool's management API reports it."""

    name: str
    owner: str | None
    jwk: dict[str, Any]
    versions: tuple[KeyVersionState, ...]
    rotation_policy: dict[str, Any] | None
    deleted: bool
    size: int | None = None  # of the current version, in bits (RSA, oct-HSM), when reported

    @property
    def current(self) -> KeyVersionState:
        return self.versions[-1]

    @classmethod
    def of(cls, answer: wire.KeyState) -> "KeyState":
        versions = tuple(
            KeyVersionState(
                version=v.version,
                created=v.attributes.created,
                enabled=v.attributes.enabled,
                nbf=v.attributes.nbf,
                exp=v.attributes.exp,
                key_ops=tuple(v.key_ops),
            )
            for v in answer.versions
        )
        return cls(
            name=answer.name,
            owner=answer.owner,
            jwk=dict(answer.key),
            versions=versions,
            rotation_policy=answer.rotation_policy,
            deleted=answer.deleted is not None,
            size=answer.key_size,
        )

    @classmethod
    def parse(cls, raw: object) -> "KeyState":
        """The key from the pool's answer, which must be a management API KeyState."""
        return cls.of(read_answer(wire.KeyState, raw))


# --- pure decisions ----------------------------------------------------------------------


def check_spec(spec: KeySpec) -> None:
    """Refuse what the CRD's rules cannot see: key operations the key type lacks, and rotation
    policies that would rotate forever or never."""
    allowed = KEY_OPS[family(spec.kty)]
    bad = [op for op in spec.key_ops or () if op not in allowed]
    if bad:
        raise InvalidSpec(
            f"spec.keyOps: {spec.kty} keys cannot {', '.join(bad)}; they allow {', '.join(allowed)}"
        )
    policy = spec.rotation_policy
    if policy is None:
        return
    if policy.expiry_time is not None and spec.expires is not None:
        raise InvalidSpec(
            "spec.expires and spec.rotationPolicy.expiryTime both set when the key expires: "
            "keep one (expiryTime gives each new version its lifetime)"
        )
    if policy.time_before_expiry is not None:
        if policy.expiry_time is None:
            raise InvalidSpec(
                "spec.rotationPolicy.timeBeforeExpiry needs spec.rotationPolicy.expiryTime, the "
                "lifetime of each new version; otherwise versions rotate once and never again"
            )
        if duration_seconds(policy.time_before_expiry) >= duration_seconds(policy.expiry_time):
            raise InvalidSpec(
                "spec.rotationPolicy.timeBeforeExpiry must be shorter than expiryTime, or every "
                "new version is due for rotation as soon as it is made"
            )
    for text in (policy.time_after_create, policy.expiry_time):
        if text is not None:
            duration_seconds(text)


def desired_key_ops(spec: KeySpec) -> tuple[str, ...]:
    return tuple(sorted(spec.key_ops if spec.key_ops is not None else KEY_OPS[family(spec.kty)]))


def create_body(spec: KeySpec, now: int) -> dict[str, Any]:
    """What the vault is asked to make: the key, with the spec's attributes from the start
    (the management API's KeyCreate, without the owner the pool client adds)."""
    expires = _timestamp(spec.expires)
    policy = spec.rotation_policy
    if policy is not None and policy.expiry_time is not None:
        expires = now + duration_seconds(policy.expiry_time)
    attributes = wire.NewAttributes(
        enabled=spec.enabled, nbf=_timestamp(spec.not_before), exp=expires
    )
    key_ops = list(desired_key_ops(spec))
    if family(spec.kty) == "EC":
        body = wire.KeyCreate(
            kty=spec.kty, crv=spec.curve or "P-256", key_ops=key_ops, attributes=attributes
        )
    else:
        size = spec.size or (256 if spec.kty == "oct-HSM" else 2048)
        body = wire.KeyCreate(kty=spec.kty, key_size=size, key_ops=key_ops, attributes=attributes)
    return body.wire()


def owned_elsewhere(name: str, vault: str) -> InvalidSpec:
    return InvalidSpec(
        f"A key named {name} already exists in vault {vault} and belongs to another "
        "resource; set spec.keyName to another name",
        reason="KeyNameTaken",
    )


def check_owner(state: KeyState, uid: str, vault: str, adopt: bool = False) -> bool:
    """Pure: whether the key is to be adopted (False: it is this resource's already).

    A key another resource owns is never taken; one made through the vault's API (no
    owner) only with spec.adopt, and the message says so.
    """
    if state.owner == uid:
        return False
    if state.owner is not None:
        raise owned_elsewhere(state.name, vault)
    if not adopt:
        raise InvalidSpec(
            f"A key named {state.name} already exists in vault {vault}, made through the "
            "vault's API; to bring it under this Key set spec.adopt: true (the Vault must "
            "allow it with its annotation strongroom.io/allow-adopt), or set spec.keyName to "
            "another name",
            reason="KeyNameTaken",
        )
    return True


def _rsa_bits(jwk: dict[str, Any]) -> int | None:
    modulus = jwk.get("n")
    if not isinstance(modulus, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw, "big").bit_length() or None


def _describe(kty: str, size: int | None, curve: str | None) -> str:
    if family(kty) == "EC":
        return f"{kty} key on curve {curve or 'unknown'}"
    return f"{kty} key of {size} bits" if size else f"{kty} key of unknown size"


def _fields(kty: str, size: int | None, curve: str | None) -> str:
    extra = f"curve: {curve}" if family(kty) == "EC" else f"size: {size}"
    return f"spec.kty: {kty} and spec.{extra}"


def check_adoptable(state: KeyState, spec: KeySpec, vault: str) -> None:
    """Pure: refuse to adopt a deleted key, or one whose type or size differs from the spec's
    (its kty family, and its size or curve, the spec's defaults when unset)."""
    if state.deleted:
        raise ReconcileError(
            f"Key {state.name} in vault {vault} is deleted, and a deleted key is not adopted: "
            f"recover it through the vault's API (POST /deletedkeys/{state.name}/recover) to "
            "adopt it, or purge it and this Key makes a new one",
            reason="KeyDeleted",
        )
    kty = str(state.jwk.get("kty") or "")
    wanted_family = family(spec.kty)
    if wanted_family == "EC":
        wanted_size, wanted_curve = None, spec.curve or "P-256"
    else:
        wanted_size, wanted_curve = spec.size or (256 if wanted_family == "oct" else 2048), None
    if family(kty) == "EC":
        size, curve = None, str(state.jwk.get("crv") or "") or None
    else:
        size, curve = state.size, None
        if size is None and family(kty) == "RSA":
            size = _rsa_bits(state.jwk)
    if (family(kty), size, curve) != (wanted_family, wanted_size, wanted_curve):
        hint = (
            f"; to adopt it, make this Key again with {_fields(kty, size, curve)} (an existing "
            "Key's kty, size and curve cannot be changed)"
            if kty and (size or curve)
            else ""
        )
        raise InvalidSpec(
            f"Key {state.name} in vault {vault} is an {_describe(kty or 'unknown', size, curve)}, "
            f"but this Key's spec asks for an {_describe(spec.kty, wanted_size, wanted_curve)}: "
            f"it is not adopted{hint}",
            reason="AdoptionMismatch",
        )


@dataclass(frozen=True)
class VersionUpdate:
    """A PATCH of one version's attributes and key operations."""

    version: str
    body: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class PolicyUpdate:
    policy: dict[str, Any] = field(hash=False)


def desired_policy(policy: RotationPolicy | None) -> dict[str, Any]:
    """The rotation policy as the vault takes it; no policy is an empty one."""
    if policy is None:
        return {"lifetimeActions": [], "attributes": {}}
    trigger = (
        {"timeAfterCreate": policy.time_after_create}
        if policy.time_after_create is not None
        else {"timeBeforeExpiry": policy.time_before_expiry}
    )
    attributes = {} if policy.expiry_time is None else {"expiryTime": policy.expiry_time}
    return {
        "lifetimeActions": [{"trigger": trigger, "action": {"type": "Rotate"}}],
        "attributes": attributes,
    }


def _comparable_policy(policy: dict[str, Any] | None) -> tuple[Any, Any]:
    if not policy:
        return [], None
    expiry = (policy.get("attributes") or {}).get("expiryTime")
    return policy.get("lifetimeActions") or [], expiry


def key_updates(spec: KeySpec, state: KeyState) -> list[VersionUpdate | PolicyUpdate]:
    """What to change so that the vault's key matches the spec.

    `enabled` applies to every version: a disabled Key cannot be used by any of its kids.
    Key operations, not-before and expiry apply to the current version, as an update
    without a version does in Azure Key Vault; with rotationPolicy.expiryTime the vault
    gives each new version its expiry and the operator leaves it alone.
    """
    updates: list[VersionUpdate | PolicyUpdate] = []
    policy = spec.rotation_policy
    vault_sets_expiry = policy is not None and policy.expiry_time is not None
    for version in state.versions:
        attributes: dict[str, Any] = {}
        body: dict[str, Any] = {}
        if version.enabled != spec.enabled:
            attributes["enabled"] = spec.enabled
        if version is state.current:
            if version.nbf != _timestamp(spec.not_before):
                attributes["nbf"] = _timestamp(spec.not_before)
            if not vault_sets_expiry and version.exp != _timestamp(spec.expires):
                attributes["exp"] = _timestamp(spec.expires)
            if tuple(sorted(version.key_ops)) != desired_key_ops(spec):
                body["key_ops"] = list(desired_key_ops(spec))
        if attributes:
            body["attributes"] = attributes
        if body:
            updates.append(VersionUpdate(version.version, body))
    wanted = desired_policy(policy)
    if _comparable_policy(state.rotation_policy) != _comparable_policy(wanted):
        updates.append(PolicyUpdate(wanted))
    return updates


def key_status(
    state: KeyState, vault: str, status: KeyStatus, generation: int, now: datetime | None = None
) -> KeyStatus:
    current = state.current
    return status.model_copy(
        update={
            "kid": state.jwk.get("kid"),
            "current_version": current.version,
            "versions": [
                KeyVersionStatus(
                    version=v.version,
                    created=datetime.fromtimestamp(v.created, UTC),
                    enabled=v.enabled,
                )
                for v in state.versions
            ],
            "public_key": JsonWebKey.model_validate(state.jwk),
            "observed_generation": generation,
            "conditions": with_condition(
                status.conditions,
                "Ready",
                True,
                "KeyReady",
                f"Key {state.name} in vault {vault}, version {current.version}.",
                generation,
                now,
            ),
        }
    )


def should_delete(state: KeyState | None, uid: str) -> bool:
    """Pure: soft-delete only a live key that this resource made."""
    return state is not None and state.owner == uid and not state.deleted


# --- carrying them out -------------------------------------------------------------------


async def reconcile_key(
    ctx: Context,
    key: Owner,
    spec: KeySpec,
    status: KeyStatus,
    generation: int,
    notify: Notify | None = None,
) -> KeyStatus:
    """Make or adopt the key and keep it to the spec; `notify` posts a Normal Event (an
    adoption)."""
    check_spec(spec)
    vault = await vault_address(ctx, key.namespace, spec.vault_ref.name)
    name = key_name(key, spec)
    raw = None
    if status.kid is None:
        # Never made, as far as the status knows: ask for it at once. The vault makes it
        # only when no key of that name exists, and answers with the one a killed run made.
        raw = await _create_unless_refused(ctx, vault, name, key, spec)
    if raw is None:
        raw = await ctx.pools.get_key(vault, name) or await _create(ctx, vault, name, key, spec)
    state = KeyState.parse(raw)
    if check_owner(state, key.uid, vault.vault, spec.adopt):
        state = await _adopt(ctx, vault, name, key, spec, state)
        if notify is not None:
            notify(
                "Adopted",
                f"Adopted key {name} of vault {vault.vault}, made through the vault's API: it "
                f"now belongs to this Key, its {len(state.versions)} version(s) kept (current "
                f"{state.current.version}).",
            )
    if state.deleted:
        # Deleted through the vault's API while the resource still wants it: bring it back.
        await ctx.pools.recover_key(vault, name)
        state = await _read(ctx, vault, name)
    updates = key_updates(spec, state)
    for update in updates:
        if isinstance(update, VersionUpdate):
            await ctx.pools.update_key_version(vault, name, update.version, update.body)
        else:
            await ctx.pools.set_rotation_policy(vault, name, update.policy)
    if updates:
        state = await _read(ctx, vault, name)
    return key_status(state, vault.vault, status, generation)


async def _create(
    ctx: Context, vault: VaultAddress, name: str, key: Owner, spec: KeySpec
) -> dict[str, Any]:
    """The key as the vault made it, or found it made for this resource."""
    now = int(datetime.now(UTC).timestamp())
    return await ctx.pools.create_key(vault, name, key.uid, create_body(spec, now))


async def _create_unless_refused(
    ctx: Context, vault: VaultAddress, name: str, key: Owner, spec: KeySpec
) -> dict[str, Any] | None:
    """As _create; None when the vault refuses (the name taken by another owner, or the key
    deleted): the caller reads the key and decides."""
    try:
        return await _create(ctx, vault, name, key, spec)
    except PoolApiError as exc:
        if exc.status == 409:
            return None
        raise


async def _adopt(
    ctx: Context, vault: VaultAddress, name: str, key: Owner, spec: KeySpec, state: KeyState
) -> KeyState:
    """Adopt the key that has no owner, with the Vault's consent, if it is the spec's: the
    vault tags each version with the resource's uid, and changes nothing else."""
    await check_allowed(ctx, key.namespace, spec.vault_ref.name, "key", name)
    check_adoptable(state, spec, vault.vault)
    try:
        raw = await ctx.pools.adopt_key(vault, name, key.uid)
    except PoolApiError as exc:
        if exc.status == 409 and exc.code == "KeyOwnedElsewhere":
            raise owned_elsewhere(name, vault.vault) from None  # adopted by another first
        raise
    adopted = KeyState.parse(raw)
    if adopted.owner != key.uid:
        raise ReconcileError(
            f"The pool did not adopt key {name} of vault {vault.vault} for this Key",
            reason="AdoptionFailed",
        )
    return adopted


async def _read(ctx: Context, vault: VaultAddress, name: str) -> KeyState:
    raw = await ctx.pools.get_key(vault, name)
    if raw is None:
        raise ReconcileError(f"Key {name} vanished from vault {vault.vault}", reason="KeyVanished")
    return KeyState.parse(raw)


async def delete_key(ctx: Context, key: Owner, spec: KeySpec) -> None:
    """Soft-delete the key this resource made: it stays recoverable for the vault's
    retention, and with purge protection nobody can purge it sooner."""
    vault = await vault_address_for_delete(ctx, key.namespace, spec.vault_ref.name)
    if vault is None:
        return
    name = key_name(key, spec)
    raw = await ctx.pools.get_key(vault, name)
    state = None if raw is None else KeyState.parse(raw)
    if should_delete(state, key.uid):
        await ctx.pools.delete_key(vault, name)
