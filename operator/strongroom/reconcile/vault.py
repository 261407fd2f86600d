"""Reconcile a Vault: its Service, its token, hosts, audience and access list pushed to its
pool, and its names in the pool's certificate."""

import asyncio
import time
from typing import Any

from ..api import management as wire
from ..api.vocabulary import ALL
from ..builders.common import Owner
from ..builders.pool import Pool, build_vault_service, vault_hosts, vault_uri
from ..models import API_VERSION, AccessEntry, HsmPoolSpec, VaultSpec, VaultStatus
from .certificate import ensure_certificate, serve_certificate
from .conditions import with_condition
from .context import Context
from .errors import DeletionBlocked, NotReady, classify
from .owned import apply_owned
from .poolapi import VaultAddress

# Built-in roles, after Azure Key Vault's RBAC roles of the same names: what each grants
# of keys, secrets and certificates. As in Azure, a certificate's private key is its
# secret: CertificateUser reads it, CertificatesOfficer and Reader do not.
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Administrator": ((ALL,), (ALL,), (ALL,)),
    "CryptoOfficer": ((ALL,), (), ()),
    "CryptoUser": (
        ("get", "list", "encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"),
        (),
        (),
    ),
    "SecretsOfficer": ((), (ALL,), ()),
    "SecretsUser": ((), ("get", "list"), ()),
    "CertificatesOfficer": (("get", "list"), ("list",), (ALL,)),
    "CertificateUser": ((), ("get",), ("get", "list")),
    "Reader": (
        ("get", "list", "getrotationpolicy"),
        ("list",),
        ("get", "list", "getissuers", "listissuers"),
    ),
}


def subject(entry: AccessEntry, namespace: str) -> str:
    if entry.service_account is not None:
        account = entry.service_account
        return f"system:serviceaccount:{account.namespace or namespace}:{account.name}"
    assert entry.subject is not None  # the CRD's rule: one of the two
    return entry.subject


def access_list(spec: VaultSpec, namespace: str) -> list[wire.AccessGrant]:
    """Pure: the Vault's access entries as the pool's management API takes them."""
    out = []
    for entry in spec.access:
        keys: set[str] = set(entry.keys or ())
        secrets: set[str] = set(entry.secrets or ())
        certificates: set[str] = set(entry.certificates or ())
        for role in entry.roles or ():
            keys.update(ROLES[role][0])
            secrets.update(ROLES[role][1])
            certificates.update(ROLES[role][2])
        out.append(
            wire.AccessGrant(
                subject=subject(entry, namespace),
                keys=sorted(keys),
                secrets=sorted(secrets),
                certificates=sorted(certificates),
            )
        )
    return out


def vault_config(name: str, namespace: str, spec: VaultSpec) -> dict[str, Any]:
    """Pure: what the operator PUTs to /_strongroom/v1/vaults/<name> (the management API's
    VaultSettings). `audience`: a token issued for the vault's own URI is good for this vault
    only, from any namespace."""
    return wire.VaultSettings(
        hosts=vault_hosts(name, namespace),
        audience=vault_uri(name, namespace),
        access=access_list(spec, namespace),
        retention_days=spec.soft_delete.retention_days,
        purge_protection=spec.soft_delete.purge_protection,
    ).wire()


async def _ready_pool(ctx: Context, vault: Owner, spec: VaultSpec) -> Pool:
    name = spec.hsm_pool_ref.name
    body = await ctx.kube.get(API_VERSION, "HsmPool", vault.namespace, name)
    if body is None:
        raise NotReady(
            f"HsmPool {name!r} does not exist in {vault.namespace}", reason="PoolNotFound"
        )
    if not _is_ready(body):
        raise NotReady(f"HsmPool {name!r} is not Ready yet", reason="PoolNotReady")
    return Pool(Owner.of("HsmPool", body["metadata"]), HsmPoolSpec.model_validate(body["spec"]))


async def reconcile_vault(
    ctx: Context, vault: Owner, spec: VaultSpec, status: VaultStatus, generation: int
) -> VaultStatus:
    pool = await _ready_pool(ctx, vault, spec)
    await apply_owned(ctx.kube, build_vault_service(pool, vault), vault)
    await ctx.pools.put_vault(
        pool.endpoint, vault.name, vault_config(vault.name, vault.namespace, spec)
    )
    served = await serve_certificate(ctx, pool, await ensure_certificate(ctx, pool))
    missing = [host for host in vault_hosts(vault.name, vault.namespace) if host not in served]
    if missing:
        raise CertificatePending(
            f"The pool {pool.owner.name!r} does not serve a certificate for "
            f"{', '.join(missing)} yet; waiting for it to take the new one"
        )
    uri = vault_uri(vault.name, vault.namespace)
    return status.model_copy(
        update={
            "vault_uri": uri,
            "audience": uri,
            "hsm_pool": pool.owner.name,
            "observed_generation": generation,
            "conditions": with_condition(
                status.conditions, "Ready", True, "VaultReady", f"Served at {uri}.", generation
            ),
        }
    )


class CertificatePending(NotReady):
    """The vault's names are not in the certificate its pool serves yet."""

    reason = "CertificatePending"
    retry_after = 5.0


async def delete_vault(ctx: Context, vault: Owner, spec: VaultSpec) -> str | None:
    """Stop serving the vault. Its token and keys stay in the pool: a Vault of the same name
    in the same pool finds them again. The Service goes with its owner.

    Returns a note for a Normal Event when the pool is gone or going, and the finalizer is
    released without asking it (the vault's data follows the pool's deletionPolicy). Raises
    DeletionBlocked, saying how to force the deletion, while the pool does not answer."""
    name = spec.hsm_pool_ref.name
    body = await ctx.kube.get(API_VERSION, "HsmPool", vault.namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        going = "no longer exists" if body is None else "is being deleted"
        return (
            f"HsmPool {name!r} {going}: the Vault is released without asking it; its keys "
            "and secrets follow the pool's deletionPolicy"
        )
    pool = Pool(Owner.of("HsmPool", body["metadata"]), HsmPoolSpec.model_validate(body["spec"]))
    try:
        await ctx.pools.delete_vault(pool.endpoint, vault.name)
    except Exception as exc:  # noqa: BLE001 - any failure of the pool blocks the deletion
        error = classify(exc)
        raise DeletionBlocked(
            f"{error.message}. The deletion of Vault {vault.name!r} waits for HsmPool "
            f"{name!r} and is retried; to delete it without the pool (the vault stays in the "
            f"pool's token), remove its finalizer: kubectl -n {vault.namespace} patch vault "
            f"""{vault.name} --type=merge -p '{{"metadata":{{"finalizers":null}}}}'""",
            reason=error.reason,
        ) from None
    return None


def _is_ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# How long a Ready Vault's address is used without reading the Vault again. A Vault that
# stops being served within it makes the pool answer VaultNotFound, which is retried.
ADDRESS_SECONDS = 10.0


async def vault_address(ctx: Context, namespace: str, name: str) -> VaultAddress:
    """Where a Key or VaultSecret reaches its Vault; NotReady until the Vault is Ready."""
    cached = ctx.addresses.get((namespace, name))
    now = time.monotonic()
    if cached is not None and now - cached[0] < ADDRESS_SECONDS:
        return cached[1]
    # Many Keys of one Vault applied at once: one of them reads the Vault and its pool, the
    # others wait for that answer (or its error) instead of each asking the API server.
    looking = ctx.address_lookups.get((namespace, name))
    if looking is None:
        looking = asyncio.ensure_future(_vault_address(ctx, namespace, name))
        ctx.address_lookups[(namespace, name)] = looking
        looking.add_done_callback(lambda _: ctx.address_lookups.pop((namespace, name), None))
    address = await asyncio.shield(looking)
    ctx.addresses[(namespace, name)] = (now, address)
    return address


async def _vault_address(ctx: Context, namespace: str, name: str) -> VaultAddress:
    body = await ctx.kube.get(API_VERSION, "Vault", namespace, name)
    if body is None:
        raise NotReady(f"Vault {name!r} does not exist in {namespace}", reason="VaultNotFound")
    if not _is_ready(body):
        raise NotReady(f"Vault {name!r} is not Ready yet", reason="VaultNotReady")
    spec = VaultSpec.model_validate(body["spec"])
    pool = await _ready_pool(ctx, Owner.of("Vault", body["metadata"]), spec)
    return VaultAddress(pool.endpoint, name, vault_hosts(name, namespace)[0])


async def vault_address_for_delete(ctx: Context, namespace: str, name: str) -> VaultAddress | None:
    """Where to delete a Key or VaultSecret from; None when its Vault or pool is gone or
    going, and nothing is left to delete from (the objects stay in the pool's token)."""
    body = await ctx.kube.get(API_VERSION, "Vault", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    spec = VaultSpec.model_validate(body["spec"])
    pool = await ctx.kube.get(API_VERSION, "HsmPool", namespace, spec.hsm_pool_ref.name)
    if pool is None or pool["metadata"].get("deletionTimestamp"):
        return None
    if not _is_ready(body):
        raise NotReady(f"Vault {name!r} is not Ready yet", reason="VaultNotReady")
    served_by = Pool(
        Owner.of("HsmPool", pool["metadata"]), HsmPoolSpec.model_validate(pool["spec"])
    )
    return VaultAddress(served_by.endpoint, name, vault_hosts(name, namespace)[0])
