"""Reconcile an HsmPool: its image (allowlisted), pool secret (made once), TLS certificate
(naming the pool and its vaults), workload, token-review binding, and health."""

import secrets
from collections.abc import Mapping

import aiohttp

from ..api import management as wire
from ..builders.common import MANAGED_BY
from ..builders.pool import (
    COMPONENT,
    Pool,
    build_children,
    build_pool_secret,
    build_token_review_binding,
)
from ..hsm.pins import POOL_SECRET_BYTES
from ..models import HsmPoolStatus
from .backup import settle_backups
from .certificate import ensure_certificate, serve_certificate
from .conditions import with_condition
from .context import Context
from .domain import Events, _ignore, settle_domain, start_mode
from .errors import ImageNotAllowed, NotReady, PoolApiError
from .owned import apply_owned, create_owned, delete_owned, settle_ownership
from .poolapi import read_answer

RBAC = "rbac.authorization.k8s.io/v1"


async def reconcile_pool(
    ctx: Context,
    pool: Pool,
    status: HsmPoolStatus,
    generation: int,
    annotations: Mapping[str, str] | None = None,
    events: Events = _ignore,
) -> HsmPoolStatus:
    """Bring the pool's objects to what its spec says; Ready when its pod answers health checks
    and its security domain is activated (reconcile.domain); then its backups are due or not
    (reconcile.backup).

    Raises NotReady (after the status to write is known) while the pod comes up or awaits
    its security domain.
    """
    check_image(ctx, pool)
    start = await start_mode(ctx, pool, status)
    await ensure_pool_secret(ctx, pool)
    certificate = await ensure_certificate(ctx, pool)
    for obj in build_children(pool, ctx.settings, start):
        retained = COMPONENT if "ownerReferences" not in obj["metadata"] else None
        await apply_owned(ctx.kube, obj, pool.owner, retained_component=retained)
    await settle_token_store(ctx, pool)
    # Made once: all of it follows from the pool's uid, namespace and name, none of it changes.
    await create_owned(ctx.kube, build_token_review_binding(pool), pool.owner)
    await remove_legacy_binding(ctx, pool)
    base = status.model_copy(
        update={
            "endpoint": pool.endpoint,
            "ca_bundle": ctx.ca.cert_pem.decode(),
            "observed_generation": generation,
        }
    )
    try:
        health = read_answer(wire.Health, await ctx.pools.health(pool.endpoint))
    except (PoolApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise PoolStarting(
            base.model_copy(
                update={
                    "phase": "Pending",
                    "conditions": with_condition(
                        status.conditions,
                        "Ready",
                        False,
                        "PoolStarting",
                        f"Waiting for the pool's pod to answer at {pool.endpoint} "
                        f"({type(exc).__name__})",
                        generation,
                    ),
                }
            )
        ) from exc
    await serve_certificate(ctx, pool, certificate)
    base = base.model_copy(update={"hsm_platform": health.hsm_platform or None})
    base = await settle_domain(ctx, pool, base, health, start, generation, events)
    ready = base.model_copy(
        update={
            "phase": "Ready",
            "conditions": with_condition(
                base.conditions, "Ready", True, "PoolReady", "The pool's HSM answers.", generation
            ),
        }
    )
    return await settle_backups(ctx, pool, ready, annotations or {}, generation, events)


class PoolStarting(NotReady):
    """The pool's pod is not answering yet; the status to write says so."""

    reason = "PoolStarting"
    retry_after = 10.0

    def __init__(self, status: HsmPoolStatus) -> None:
        ready = next(c for c in status.conditions if c.type == "Ready")
        super().__init__(ready.message)
        self.status = status


def check_image(ctx: Context, pool: Pool) -> None:
    """A pool's image holds its keys and talks to the operator: only allowlisted ones run.
    Checked before anything is made, so a refused image changes nothing."""
    image = pool.image(ctx.settings)
    if not ctx.settings.allows(image):
        raise ImageNotAllowed(
            f"spec.image {image!r} is not an image this operator runs pools with; use its own "
            f"image ({ctx.settings.image}) or ask the cluster's administrators to add it to "
            "the operator's allowed images (chart value pools.allowedImages)"
        )


async def ensure_pool_secret(ctx: Context, pool: Pool) -> None:
    """Create the pool secret once. Never replaced: every vault's PINs derive from it. The
    new value is used only when no pool secret exists; one found must be this pool's."""
    fresh = build_pool_secret(pool, secrets.token_hex(POOL_SECRET_BYTES))
    found = await create_owned(ctx.kube, fresh, pool.owner, retained_component=COMPONENT)
    await settle_ownership(ctx.kube, found, pool.owner, owned=not pool.keeps_state)


# --- the token-review binding -------------------------------------------------------------


async def settle_token_store(ctx: Context, pool: Pool) -> None:
    """The claim follows deletionPolicy when it changes, as the pool secret does: owned by
    the pool with Delete, free of it with Retain (an apply alone cannot drop the reference
    the claim was created with)."""
    found = await ctx.kube.get("v1", "PersistentVolumeClaim", pool.owner.namespace, pool.claim_name)
    if found is not None:
        await settle_ownership(ctx.kube, found, pool.owner, owned=not pool.keeps_state)


async def remove_legacy_binding(ctx: Context, pool: Pool) -> None:
    """Delete the binding an earlier operator made for this very pool (to
    system:auth-delegator, under a name two pools could share): only when its labels say it
    was made for this pool's namespace and name."""
    name = pool.legacy_binding_name
    found = await ctx.kube.get(RBAC, "ClusterRoleBinding", None, name)
    if found is None:
        return
    found_labels = found["metadata"].get("labels") or {}
    if (
        found_labels.get("app.kubernetes.io/managed-by") == MANAGED_BY
        and found_labels.get("app.kubernetes.io/instance") == pool.owner.name
        and found_labels.get("strongroom.io/pool-namespace") == pool.owner.namespace
    ):
        await ctx.kube.delete(RBAC, "ClusterRoleBinding", None, name, uid=found["metadata"]["uid"])


async def delete_pool(ctx: Context, pool: Pool) -> None:
    """Remove what owner references cannot: the pool's cluster-scoped binding, and only it."""
    await delete_owned(
        ctx.kube, RBAC, "ClusterRoleBinding", None, pool.token_review_binding_name, pool.owner.uid
    )
    await remove_legacy_binding(ctx, pool)
