"""kopf handlers of the five kinds: parse the body, call one reconcile function, write status."""

from collections.abc import Callable
from typing import Any

import kopf

from ..builders.common import Owner
from ..builders.pool import Pool
from ..models import (
    GROUP,
    VERSION,
    HsmPoolSpec,
    HsmPoolStatus,
    KeySpec,
    KeyStatus,
    VaultCertificateSpec,
    VaultCertificateStatus,
    VaultSecretSpec,
    VaultSecretStatus,
    VaultSpec,
    VaultStatus,
)
from ..reconcile.context import Context
from ..reconcile.key import delete_key, reconcile_key
from ..reconcile.pool import delete_pool, reconcile_pool
from ..reconcile.secret import delete_secret, reconcile_secret
from ..reconcile.vault import delete_vault, reconcile_vault
from ..reconcile.vaultcertificate import delete_certificate, reconcile_certificate
from .reporting import reporting

POOLS: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": "hsmpools"}
VAULTS: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": "vaults"}
KEYS: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": "keys"}
SECRETS: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": "vaultsecrets"}
CERTIFICATES: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": "vaultcertificates"}
# Also how soon a Key's status shows a version its rotation policy made.
RECHECK_SECONDS = 60.0


def _context(memo: kopf.Memo) -> Context:
    context: Context = memo["context"]
    return context


def _generation(body: kopf.Body) -> int:
    return int(body.meta.get("generation") or 0)


def _notify(body: kopf.Body, kind: str = "Normal") -> Callable[[str, str], None]:
    """Post an Event about `body` (Normal: what a reconcile did that a person should see;
    Warning: what a person has to act on)."""

    def post(reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    return post


def _events(body: kopf.Body) -> Callable[[str, str, str], None]:
    """Post an Event of the given type (Normal, Warning) about `body`."""

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    return post


def _pool(body: kopf.Body) -> Pool:
    return Pool(Owner.of("HsmPool", body.meta), HsmPoolSpec.model_validate(dict(body.spec)))


@kopf.on.resume(**POOLS)
@kopf.on.create(**POOLS)
@kopf.on.update(**POOLS)
@kopf.timer(**POOLS, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS)
async def hsm_pool(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch):
        status = HsmPoolStatus.model_validate(dict(body.status))
        status = await reconcile_pool(
            _context(memo),
            _pool(body),
            status,
            _generation(body),
            annotations=dict(body.meta.annotations),
            events=_events(body),
        )
        patch.status.update(status.wire())


@kopf.on.delete(**POOLS)
async def hsm_pool_deleted(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch, action="delete"):
        await delete_pool(_context(memo), _pool(body))


@kopf.on.resume(**VAULTS)
@kopf.on.create(**VAULTS)
@kopf.on.update(**VAULTS)
@kopf.timer(**VAULTS, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS)
async def vault(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch):
        spec = VaultSpec.model_validate(dict(body.spec))
        status = VaultStatus.model_validate(dict(body.status))
        owner = Owner.of("Vault", body.meta)
        status = await reconcile_vault(_context(memo), owner, spec, status, _generation(body))
        patch.status.update(status.wire())


@kopf.on.delete(**VAULTS)
async def vault_deleted(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch, action="delete"):
        spec = VaultSpec.model_validate(dict(body.spec))
        pool_gone = await delete_vault(_context(memo), Owner.of("Vault", body.meta), spec)
        if pool_gone is not None:
            kopf.event(body, type="Normal", reason="PoolGone", message=pool_gone)


@kopf.on.resume(**KEYS)
@kopf.on.create(**KEYS)
@kopf.on.update(**KEYS)
@kopf.timer(**KEYS, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS)
async def key(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch):
        spec = KeySpec.model_validate(dict(body.spec))
        status = KeyStatus.model_validate(dict(body.status))
        owner = Owner.of("Key", body.meta)
        status = await reconcile_key(
            _context(memo), owner, spec, status, _generation(body), notify=_notify(body)
        )
        patch.status.update(status.wire())


@kopf.on.delete(**KEYS)
async def key_deleted(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch, action="delete"):
        spec = KeySpec.model_validate(dict(body.spec))
        await delete_key(_context(memo), Owner.of("Key", body.meta), spec)


@kopf.on.resume(**SECRETS)
@kopf.on.create(**SECRETS)
@kopf.on.update(**SECRETS)
@kopf.timer(**SECRETS, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS)
async def vault_secret(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch):
        spec = VaultSecretSpec.model_validate(dict(body.spec))
        status = VaultSecretStatus.model_validate(dict(body.status))
        owner = Owner.of("VaultSecret", body.meta)
        seen = status.current_version
        status = await reconcile_secret(
            _context(memo), owner, spec, status, _generation(body), notify=_notify(body)
        )
        patch.status.update(status.wire())
        if status.next_rotation is None and "nextRotation" in body.status:
            patch.status["nextRotation"] = None  # spec.rotation was removed
        if seen is not None and status.current_version != seen:
            kopf.event(
                body,
                type="Normal",
                reason="NewVersion",
                message=f"The secret's current version is now {status.current_version} "
                f"(was {seen}).",
            )


@kopf.on.delete(**SECRETS)
async def vault_secret_deleted(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    async with reporting(body, patch, action="delete"):
        spec = VaultSecretSpec.model_validate(dict(body.spec))
        await delete_secret(_context(memo), Owner.of("VaultSecret", body.meta), spec)


@kopf.on.resume(**CERTIFICATES)
@kopf.on.create(**CERTIFICATES)
@kopf.on.update(**CERTIFICATES)
@kopf.timer(**CERTIFICATES, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS)
async def vault_certificate(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    async with reporting(body, patch):
        spec = VaultCertificateSpec.model_validate(dict(body.spec))
        status = VaultCertificateStatus.model_validate(dict(body.status))
        owner = Owner.of("VaultCertificate", body.meta)
        seen = status.version
        status = await reconcile_certificate(
            _context(memo),
            owner,
            spec,
            status,
            _generation(body),
            notify=_notify(body),
            warn=_notify(body, "Warning"),
        )
        patch.status.update(status.wire())
        if status.csr is None and "csr" in body.status:
            patch.status["csr"] = None  # the signing request was merged or replaced
        if seen is not None and status.version is not None and status.version != seen:
            kopf.event(
                body,
                type="Normal",
                reason="Renewed",
                message=f"The certificate's current version is now {status.version} (was "
                f"{seen}), valid until {status.expires}; pods mounting it through "
                "csi.strongroom.io get it at their next republish.",
            )


@kopf.on.delete(**CERTIFICATES)
async def vault_certificate_deleted(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    async with reporting(body, patch):
        spec = VaultCertificateSpec.model_validate(dict(body.spec))
        await delete_certificate(_context(memo), Owner.of("VaultCertificate", body.meta), spec)
