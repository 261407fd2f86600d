"""Reconcile a VaultSecret: its value generated in the vault or imported once from a
Kubernetes Secret, or set through the vault's API by someone else; status reports the
secret's id and version, never its value.

Generated values are made by the vault from its HSM's random number generator:
the operator never holds them. An imported value passes through the operator's
memory once, on its way from the Kubernetes Secret to the vault, and only when the
Secret names the importing VaultSecret in its `strongroom.io/allow-import`
annotation: the operator reads every Secret, its users may not.

A generated secret with `spec.adopt` takes over a secret of its name that was set
through the vault's API (no owner), when the Vault consents (reconcile/adopt.py): its
versions and value are kept, and it rotates from then on like one the vault generated.

A generated secret with `spec.rotation` gets a new version once its current one is
older than `rotateAfter`, checked at each reconcile (the handlers' timer runs one a
minute). The pool adds the version only if the current one is still the version the
operator saw, so a retried or concurrent rotation makes one version, not two.
"""

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..api import management as wire
from ..api.durations import InvalidDuration, parse_duration
from ..builders.common import Owner
from ..models import VaultSecretSpec, VaultSecretStatus
from .adopt import Notify, check_allowed
from .conditions import with_condition
from .context import Context
from .errors import ImportNotAllowed, InvalidSpec, NotReady, PoolApiError, ReconcileError
from .poolapi import VaultAddress, read_answer
from .vault import vault_address, vault_address_for_delete


@dataclass(frozen=True)
class SecretState:
    """The secret as the pool's management API reports it: no value."""

    name: str
    owner: str | None
    id: str
    versions: tuple[str, ...]
    deleted: bool
    current_created: int | None = None
    content_type: str | None = None  # the current version's

    @property
    def current_version(self) -> str:
        return self.versions[-1]

    @classmethod
    def of(cls, answer: wire.SecretState) -> "SecretState":
        return cls(
            name=answer.name,
            owner=answer.owner,
            id=answer.id,
            versions=tuple(v.version for v in answer.versions),
            deleted=answer.deleted is not None,
            current_created=answer.versions[-1].created,
            content_type=answer.content_type,
        )

    @classmethod
    def parse(cls, raw: object) -> "SecretState":
        """The secret from the pool's answer, which must be a management API SecretState."""
        return cls.of(read_answer(wire.SecretState, raw))


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


def create_body(spec: VaultSecretSpec, value: str | None = None) -> dict[str, Any]:
    """What the vault is asked to set: `value`, or one it generates from its HSM (the
    management API's SecretCreate, without the owner the pool client adds)."""
    generate = spec.source.generate
    if value is not None:
        body = wire.SecretCreate(value=value)
    else:
        assert generate is not None
        body = wire.SecretCreate(
            generate=wire.SecretGenerate(length=generate.length, encoding=generate.encoding)
        )
    if spec.content_type is not None:
        body = body.model_copy(update={"content_type": spec.content_type})
    return body.wire()


def generate_body(spec: VaultSecretSpec) -> dict[str, Any]:
    """What the vault is asked to make; it draws the value from its HSM."""
    return create_body(spec)


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


def check_adopt_source(spec: VaultSecretSpec) -> None:
    """Pure: only a generated secret adopts. An imported one would have to replace the
    adopted value with the Secret's, and an external one only reports a secret, whoever
    set it, without taking it over (the CRD refuses both; this is for older CRDs)."""
    if spec.adopt and source_of(spec) != "generate":
        raise InvalidSpec(
            "spec.adopt is for generated secrets (spec.source.generate): a fromSecret "
            "VaultSecret would replace the adopted value with the imported one, and "
            "source.external already reports a secret set through the vault's API without "
            "adopting it",
            reason="AdoptionNotSupported",
        )


def owned_elsewhere(name: str, vault: str) -> InvalidSpec:
    return InvalidSpec(
        f"A secret named {name} already exists in vault {vault} and belongs to another "
        "resource; set spec.secretName to another name, or use source.external to only "
        "report it",
        reason="SecretNameTaken",
    )


def check_owner(state: SecretState, uid: str, spec: VaultSecretSpec, vault: str) -> bool:
    """Pure: whether the secret is to be adopted (False: it is this resource's, or external).

    A secret the operator makes must be this resource's; an external one may be anyone's.
    One another resource owns is never taken; one set through the vault's API (no owner)
    only by a generated VaultSecret with spec.adopt, and the message says so.
    """
    if source_of(spec) == "external" or state.owner == uid:
        return False
    if state.owner is not None:
        raise owned_elsewhere(state.name, vault)
    if not spec.adopt or source_of(spec) != "generate":
        raise InvalidSpec(
            f"A secret named {state.name} already exists in vault {vault}, set through the "
            "vault's API; to bring it under this VaultSecret use source.generate with "
            "spec.adopt: true (the Vault must allow it with its annotation "
            "strongroom.io/allow-adopt), or source.external to only report it, or set "
            "spec.secretName to another name",
            reason="SecretNameTaken",
        )
    return True


def check_adoptable(state: SecretState, spec: VaultSecretSpec, vault: str) -> None:
    """Pure: refuse to adopt a deleted secret, or one whose content type is not the one the
    spec sets (a spec without contentType takes the secret's)."""
    if state.deleted:
        raise ReconcileError(
            f"Secret {state.name} in vault {vault} is deleted, and a deleted secret is not "
            f"adopted: recover it through the vault's API (POST /deletedsecrets/{state.name}/"
            "recover) to adopt it, or purge it and this VaultSecret makes a new one",
            reason="SecretDeleted",
        )
    if spec.content_type is not None and spec.content_type != state.content_type:
        found = "no content type" if state.content_type is None else repr(state.content_type)
        raise InvalidSpec(
            f"Secret {state.name} in vault {vault} has {found}, but this VaultSecret's "
            f"spec.contentType is {spec.content_type!r}: it is not adopted; to adopt it, make "
            "this VaultSecret again with "
            + (
                "no spec.contentType"
                if state.content_type is None
                else f"spec.contentType: {state.content_type}"
            )
            + " (an existing VaultSecret's contentType cannot be changed)",
            reason="AdoptionMismatch",
        )


MINUTE = 60


def rotate_after_seconds(text: str) -> int:
    """Seconds in spec.rotation.rotateAfter (P30D, PT12H, P1DT6H, PT5M), counted as the
    vault counts durations; a minute at least."""
    try:
        return parse_duration(text, at_least=MINUTE)
    except InvalidDuration as exc:
        raise InvalidSpec(f"spec.rotation.rotateAfter: {exc}") from None


@dataclass(frozen=True)
class RotationPlan:
    """Whether to rotate now, and when the current version is due (unix seconds)."""

    due: bool
    next_at: int | None


def rotation_plan(spec: VaultSecretSpec, state: SecretState, now: float) -> RotationPlan:
    """Pure: a generated, live secret with spec.rotation is due once its current version is
    `rotateAfter` old. Without a known creation time nothing is due."""
    if spec.rotation is None or source_of(spec) != "generate" or state.deleted:
        return RotationPlan(False, None)
    if state.current_created is None:
        return RotationPlan(False, None)
    next_at = state.current_created + rotate_after_seconds(spec.rotation.rotate_after)
    return RotationPlan(now >= next_at, next_at)


def _moment(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def should_delete(state: SecretState | None, uid: str) -> bool:
    """Pure: soft-delete only a live secret that this resource made (never an external one)."""
    return state is not None and state.owner == uid and not state.deleted


def secret_status(
    state: SecretState,
    vault: str,
    status: VaultSecretStatus,
    generation: int,
    next_rotation: int | None = None,
) -> VaultSecretStatus:
    message = f"Secret {state.name} in vault {vault}, version {state.current_version}."
    if next_rotation is not None:
        message += f" Next rotation at {_moment(next_rotation):%Y-%m-%dT%H:%M:%SZ}."
    return status.model_copy(
        update={
            "id": state.id,
            "current_version": state.current_version,
            "current_version_created": _moment(state.current_created),
            "next_rotation": _moment(next_rotation),
            "observed_generation": generation,
            "conditions": with_condition(
                status.conditions, "Ready", True, "SecretReady", message, generation
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
    now: float | None = None,
    notify: Notify | None = None,
) -> VaultSecretStatus:
    """Make, import, adopt or only report the secret, and rotate it when due; `notify` posts
    a Normal Event (an adoption)."""
    check_adopt_source(spec)
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
            body = create_body(spec, imported_value(allowed, spec))
        raw = await ctx.pools.create_secret(vault, name, owner.uid, body)
    state = SecretState.parse(raw)
    if check_owner(state, owner.uid, spec, vault.vault):
        state = await _adopt(ctx, vault, name, owner, spec, state)
        if notify is not None:
            notify(
                "Adopted",
                f"Adopted secret {name} of vault {vault.vault}, set through the vault's API: "
                f"it now belongs to this VaultSecret, its {len(state.versions)} version(s) "
                f"kept (current {state.current_version}).",
            )
    if state.deleted:
        if source == "external":
            raise NotReady(
                f"Secret {name} is deleted in vault {vault.vault}", reason="SecretDeleted"
            )
        await ctx.pools.recover_secret(vault, name)
        return secret_status(state, vault.vault, status, generation)
    now = time.time() if now is None else now
    plan = rotation_plan(spec, state, now)
    if plan.due:
        raw = await ctx.pools.rotate_secret(
            vault, name, owner.uid, state.current_version, generate_body(spec)
        )
        state = SecretState.parse(raw)
        plan = rotation_plan(spec, state, now)
    return secret_status(state, vault.vault, status, generation, plan.next_at)


async def _adopt(
    ctx: Context,
    vault: VaultAddress,
    name: str,
    owner: Owner,
    spec: VaultSecretSpec,
    state: SecretState,
) -> SecretState:
    """Adopt the secret that has no owner, with the Vault's consent, if it is the spec's: the
    vault tags each version with the resource's uid, and changes nothing else."""
    await check_allowed(ctx, owner.namespace, spec.vault_ref.name, "secret", name)
    check_adoptable(state, spec, vault.vault)
    try:
        raw = await ctx.pools.adopt_secret(vault, name, owner.uid)
    except PoolApiError as exc:
        if exc.status == 409 and exc.code == "SecretOwnedElsewhere":
            raise owned_elsewhere(name, vault.vault) from None  # adopted by another first
        raise
    adopted = SecretState.parse(raw)
    if adopted.owner != owner.uid:
        raise ReconcileError(
            f"The pool did not adopt secret {name} of vault {vault.vault} for this VaultSecret",
            reason="AdoptionFailed",
        )
    return adopted


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
