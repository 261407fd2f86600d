"""A pool's server certificate: it names exactly the pool's Service and its vaults'
Services, is issued anew when that set changes, and is pushed to the running pool at once.

The pool reconcile and the Vault reconcile both call ensure_certificate and
serve_certificate: a new Vault gets its names served before it is Ready.
"""

import base64
import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..api import management as wire
from ..builders.pool import Pool, build_tls_secret
from ..models import API_VERSION
from ..tls import Issued, issue_server_cert
from .context import Context
from .owned import apply_owned
from .poolapi import read_answer

RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Certificate:
    """The pool's server certificate as its TLS Secret holds it."""

    cert_pem: str
    key_pem: str
    hosts: tuple[str, ...]
    not_after: datetime.datetime


def needs_new_certificate(
    found: dict[str, Any] | None,
    ca: Issued,
    client_ca: Issued,
    hosts: list[str],
    now: datetime.datetime,
) -> bool:
    """Pure: a missing, foreign-CA, expiring or mis-named certificate is replaced; so is one
    whose Secret lacks the operator's current client CA."""
    return usable_certificate(found, ca, client_ca, hosts, now) is None


def usable_certificate(
    found: dict[str, Any] | None,
    ca: Issued,
    client_ca: Issued,
    hosts: list[str],
    now: datetime.datetime,
) -> Certificate | None:
    """Pure: the Secret's certificate when it can stay: the operator's CAs, exactly
    `hosts`, and more than RENEW_BEFORE left."""
    current = read_certificate(found, ca, client_ca)
    if (
        current is None
        or current.not_after - now < RENEW_BEFORE
        or sorted(current.hosts) != sorted(hosts)
    ):
        return None
    return current


def read_certificate(
    found: dict[str, Any] | None, ca: Issued, client_ca: Issued
) -> Certificate | None:
    """Pure: the certificate of a TLS Secret, if it is whole and of the operator's CAs."""
    if found is None:
        return None
    data = found.get("data") or {}
    try:
        ca_pem = base64.b64decode(data["ca.crt"])
        client_ca_pem = base64.b64decode(data["client-ca.crt"])
        cert_pem = base64.b64decode(data["tls.crt"])
        key_pem = base64.b64decode(data["tls.key"])
        cert = x509.load_pem_x509_certificate(cert_pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (KeyError, ValueError, x509.ExtensionNotFound):
        return None
    if ca_pem.strip() != ca.cert_pem.strip() or client_ca_pem.strip() != client_ca.cert_pem.strip():
        return None
    return Certificate(
        cert_pem.decode(),
        key_pem.decode(),
        tuple(names.get_values_for_type(x509.DNSName)),
        cert.not_valid_after_utc,
    )


async def pool_vaults(ctx: Context, pool: Pool) -> list[str]:
    """The Vaults of the pool's namespace whose spec names this pool."""
    found = await ctx.kube.list_objects(API_VERSION, "Vault", pool.owner.namespace)
    return sorted(
        vault["metadata"]["name"]
        for vault in found
        if (vault.get("spec") or {}).get("hsmPoolRef", {}).get("name") == pool.owner.name
    )


async def ensure_certificate(ctx: Context, pool: Pool) -> Certificate:
    """The pool's certificate for exactly its Service and its vaults' Services, issued anew
    when that set changes (or it expires, or the operator's CAs changed)."""
    hosts = pool.tls_hosts(await pool_vaults(ctx, pool))
    found = await ctx.kube.get("v1", "Secret", pool.owner.namespace, pool.tls_secret_name)
    now = datetime.datetime.now(datetime.UTC)
    current = usable_certificate(found, ctx.ca, ctx.client_ca, hosts, now)
    if current is not None:
        return current
    issued = issue_server_cert(ctx.ca, hosts)
    secret = build_tls_secret(
        pool,
        issued.cert_pem.decode(),
        issued.key_pem.decode(),
        ctx.ca.cert_pem.decode(),
        ctx.client_ca.cert_pem.decode(),
    )
    await apply_owned(ctx.kube, secret, pool.owner)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    return Certificate(
        issued.cert_pem.decode(), issued.key_pem.decode(), tuple(hosts), cert.not_valid_after_utc
    )


def serves(answer: wire.ServedTls, certificate: Certificate) -> bool:
    """Pure: whether a pool's GET /tls answer is this certificate (same names, same expiry)."""
    return (
        sorted(answer.dns_names) == sorted(certificate.hosts)
        and answer.not_after == certificate.not_after
    )


async def serve_certificate(ctx: Context, pool: Pool, certificate: Certificate) -> list[str]:
    """Push the certificate to the running pool unless it serves it already; returns the
    names the pool serves afterwards. The pod reads the Secret when it starts; a running pod
    gets a new certificate only this way."""
    answer = read_answer(wire.ServedTls, await ctx.pools.get_tls(pool.endpoint))
    if not serves(answer, certificate):
        await ctx.pools.put_tls(pool.endpoint, certificate.cert_pem, certificate.key_pem)
        answer = read_answer(wire.ServedTls, await ctx.pools.get_tls(pool.endpoint))
    return answer.dns_names
