"""Reconcile an HsmPool: its pool secret (made once), TLS certificate, workload and health."""

import base64
import datetime
import secrets
from typing import Any

import aiohttp
from cryptography import x509

from ..builders.pool import (
    Pool,
    build_children,
    build_pool_secret,
    build_tls_secret,
    build_token_review_binding,
)
from ..hsm.pins import POOL_SECRET_BYTES
from ..models import HsmPoolStatus
from ..tls import Issued, issue_server_cert
from .conditions import with_condition
from .context import Context
from .errors import NotReady, PoolApiError

RENEW_BEFORE = datetime.timedelta(days=30)


async def reconcile_pool(
    ctx: Context, pool: Pool, status: HsmPoolStatus, generation: int
) -> HsmPoolStatus:
    """Bring the pool's objects to what its spec says; Ready when its pod answers health checks.

    Raises NotReady (after the status to write is known) while the pod comes up.
    """
    await ensure_pool_secret(ctx, pool)
    await ensure_tls(ctx, pool)
    for obj in build_children(pool, ctx.settings) + [build_token_review_binding(pool)]:
        await ctx.kube.apply(obj)
    base = status.model_copy(
        update={
            "endpoint": pool.endpoint,
            "ca_bundle": ctx.ca.cert_pem.decode(),
            "observed_generation": generation,
        }
    )
    try:
        health = await ctx.pools.health(pool.endpoint)
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
    return base.model_copy(
        update={
            "phase": "Ready",
            "hsm_platform": str(health.get("hsmPlatform", "")) or None,
            "conditions": with_condition(
                status.conditions, "Ready", True, "PoolReady", "The pool's HSM answers.", generation
            ),
        }
    )


class PoolStarting(NotReady):
    """The pool's pod is not answering yet; the status to write says so."""

    reason = "PoolStarting"
    retry_after = 10.0

    def __init__(self, status: HsmPoolStatus) -> None:
        ready = next(c for c in status.conditions if c.type == "Ready")
        super().__init__(ready.message)
        self.status = status


async def ensure_pool_secret(ctx: Context, pool: Pool) -> None:
    """Create the pool secret once. Never replaced: every vault's PINs derive from it."""
    found = await ctx.kube.get("v1", "Secret", pool.owner.namespace, pool.secret_name)
    if found is None:
        value = secrets.token_hex(POOL_SECRET_BYTES)
        await ctx.kube.create_once(build_pool_secret(pool, value))


def needs_new_certificate(
    found: dict[str, Any] | None, ca: Issued, pool: Pool, now: datetime.datetime
) -> bool:
    """Pure: a missing, foreign-CA, expiring or mis-named certificate is replaced."""
    if found is None:
        return True
    data = found.get("data") or {}
    try:
        ca_pem = base64.b64decode(data["ca.crt"])
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    except (KeyError, ValueError):
        return True
    if ca_pem.strip() != ca.cert_pem.strip():
        return True
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return True
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    return sorted(names.get_values_for_type(x509.DNSName)) != sorted(pool.tls_hosts)


async def ensure_tls(ctx: Context, pool: Pool) -> None:
    found = await ctx.kube.get("v1", "Secret", pool.owner.namespace, pool.tls_secret_name)
    if needs_new_certificate(found, ctx.ca, pool, datetime.datetime.now(datetime.UTC)):
        issued = issue_server_cert(ctx.ca, pool.tls_hosts)
        await ctx.kube.apply(
            build_tls_secret(
                pool, issued.cert_pem.decode(), issued.key_pem.decode(), ctx.ca.cert_pem.decode()
            )
        )


async def delete_pool(ctx: Context, pool: Pool) -> None:
    """Remove what owner references cannot: the cluster-scoped TokenReview binding."""
    binding = build_token_review_binding(pool)
    await ctx.kube.delete(binding["apiVersion"], binding["kind"], None, binding["metadata"]["name"])
