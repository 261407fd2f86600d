"""The pool's security domain, on the operator's side (docs/security.md, "Recovering a pool").

- **How the pod starts** (`start_mode`). Only a token store the operator makes new for a pool
  with spec.securityDomain or spec.recoverFrom starts `--await-activation`, and the claim
  says so itself (annotation strongroom.io/await-activation, set when it is created, never
  later): the decision survives an operator killed at any point, and a store that existed
  before (retained from an earlier HsmPool of the name, or made before security domains) is
  never started awaiting: it has no domain state, holds vault tokens, and would wait for an
  upload forever.
- **Activation** (`settle_domain`). A new pool with spec.securityDomain is activated by the
  operator: it reads the holders' certificates from the ConfigMap, downloads the domain
  through the pool's `/securitydomain/download` with its client certificate, stores the blob
  (encrypted to the holders) in a Secret for the administrators to take offline, then tells
  the pool to forget its copy. The pool keeps the blob until then, so an operator killed
  between the download and the Secret fetches it again: the domain is never lost on the way.
- **Recovery.** A pool made with spec.recoverFrom awaits the upload of the old pool's domain:
  the holders do it (the operator holds no share and cannot); the status says how.
- **A pool without spec.securityDomain** activates itself with a domain never exported: its
  condition SecurityDomain says plainly that it cannot be recovered.
"""

import logging
from collections.abc import Callable
from typing import Any

from cryptography import x509

from ..api import management as wire
from ..builders.pool import (
    AWAIT_ANNOTATION,
    Pool,
    StartMode,
    build_security_domain_secret,
)
from ..models import HsmPoolStatus
from ..securitydomain import document
from .conditions import with_condition
from .context import Context
from .errors import InvalidSpec, NotReady, PoolApiError
from .owned import create_owned
from .poolapi import read_answer

log = logging.getLogger(__name__)

# (type, reason, message): a Kubernetes Event about the HsmPool.
Events = Callable[[str, str, str], None]

# What the pool's HSM says (hsm/domain.py).
AWAITING, ACTIVATED, RESTORED, UNEXPORTED = "awaiting", "activated", "restored", "unexported"
CONDITION = "SecurityDomain"
MAX_CERTIFICATES_BYTES = 256 * 1024


def _ignore(kind: str, reason: str, message: str) -> None:
    """No Events (tests, and callers that post none)."""


async def start_mode(ctx: Context, pool: Pool, status: HsmPoolStatus) -> StartMode:
    """Whether the pod starts awaiting activation, and with the restore init container."""
    found = await ctx.kube.get("v1", "PersistentVolumeClaim", pool.owner.namespace, pool.claim_name)
    recover = pool.spec.recover_from is not None
    if found is None:
        awaiting = pool.spec.security_domain is not None or recover
    else:
        annotations = found.get("metadata", {}).get("annotations") or {}
        awaiting = annotations.get(AWAIT_ANNOTATION) == "true"
        if recover and not awaiting:
            raise InvalidSpec(
                f"spec.recoverFrom: the token store PersistentVolumeClaim {pool.claim_name} "
                "exists already (kept from an earlier HsmPool of this name, or made before), "
                "and a backup is laid down only into a new pool's store. Nothing was changed: "
                "give the new HsmPool another name, or delete that claim if its keys are not "
                "needed",
                reason="StoreNotNew",
            )
    # Once the domain is restored, the init container has done its work: the pod no longer
    # needs the backup's volume (it would find its marker and do nothing anyway).
    restore = recover and awaiting and status.security_domain != "Activated"
    return StartMode(await_activation=awaiting, restore=restore)


def certificate_jwks(data: dict[str, str] | None, name: str) -> list[dict[str, Any]]:
    """The holders' certificates from a ConfigMap's values (PEM; a value may hold several),
    as Managed HSM's certificate JWKs; InvalidSpec saying what is wrong otherwise."""
    where = f"ConfigMap {name} (spec.securityDomain.certificates)"
    if not data:
        raise InvalidSpec(f"{where} has no data: put the holders' PEM certificates in it")
    if sum(len(v) for v in data.values()) > MAX_CERTIFICATES_BYTES:
        raise InvalidSpec(f"{where} is larger than {MAX_CERTIFICATES_BYTES} bytes")
    jwks: list[dict[str, Any]] = []
    for key in sorted(data):
        try:
            certificates = x509.load_pem_x509_certificates(data[key].encode())
        except ValueError:
            raise InvalidSpec(f"{where}: the value of {key!r} is not PEM certificates") from None
        for certificate in certificates:
            try:
                jwks.append(document.certificate_jwk(certificate))
            except document.DomainError as exc:
                raise InvalidSpec(f"{where}: a certificate in {key!r}: {exc}") from None
    return jwks


def check_request(jwks: list[dict[str, Any]], quorum: int, name: str) -> None:
    """What the pool would refuse, said before anything is sent (the pool checks again)."""
    try:
        document.read_certificate_request({"certificates": jwks, "required": quorum})
    except document.DomainError as exc:
        raise InvalidSpec(
            f"spec.securityDomain cannot be used with ConfigMap {name}: {exc}",
            reason="SecurityDomainCertificatesInvalid",
        ) from None


class AwaitingDomain(NotReady):
    """The pool answers but serves no key until its security domain is activated or
    uploaded; the status to write says what happens next."""

    retry_after = 15.0

    def __init__(self, status: HsmPoolStatus, reason: str) -> None:
        ready = next(c for c in status.conditions if c.type == "Ready")
        super().__init__(ready.message, reason=reason)
        self.status = status


def _not_ready(
    status: HsmPoolStatus, reason: str, message: str, generation: int, **update: Any
) -> AwaitingDomain:
    conditions = with_condition(status.conditions, "Ready", False, reason, message, generation)
    conditions = with_condition(conditions, CONDITION, False, reason, message, generation)
    return AwaitingDomain(
        status.model_copy(update={"phase": "Pending", "conditions": conditions} | update), reason
    )


def upload_steps(pool: Pool) -> str:
    backup = pool.spec.recover_from.file if pool.spec.recover_from is not None else ""
    return (
        f"The pool was laid down from the backup {backup} "
        "and awaits the upload of the security domain of the pool that backup was taken of. "
        f"The holders: get this pool's transfer key (GET {pool.endpoint}/securitydomain/upload, "
        "with the official SecurityDomainClient's get_transfer_key or `az keyvault "
        "security-domain init-recovery`), make the restore blob offline from the domain and a "
        "quorum of their private keys (`strongroom security-domain restore-blob`), and upload "
        "it (begin_upload, or `az keyvault security-domain upload`). See docs/security.md."
    )


async def settle_domain(
    ctx: Context,
    pool: Pool,
    status: HsmPoolStatus,
    health: wire.Health,
    start: StartMode,
    generation: int,
    events: Events = _ignore,
) -> HsmPoolStatus:
    """The pool's security domain where its spec wants it. Returns the status; raises
    AwaitingDomain (with the status) while the pool is not activated."""
    state = health.security_domain
    spec = pool.spec
    if state == AWAITING:
        if spec.recover_from is not None:
            if status.security_domain != "Recovering":
                events(
                    "Normal",
                    "AwaitingSecurityDomainUpload",
                    f"The backup {spec.recover_from.file} is laid down; the pool awaits the "
                    "upload of its security domain by a quorum of its holders.",
                )
            raise _not_ready(
                status,
                "AwaitingSecurityDomainUpload",
                upload_steps(pool),
                generation,
                security_domain="Recovering",
            )
        if spec.security_domain is None:
            raise _not_ready(
                status,
                "AwaitingSecurityDomain",
                "The pool's token store was made for a pool with spec.securityDomain or "
                "spec.recoverFrom and awaits its security domain; this HsmPool names neither. "
                "Upload the domain of the pool its tokens came from, or delete the claim "
                f"{pool.claim_name} if its keys are not needed.",
                generation,
                security_domain="NotActivated",
            )
        status = status.model_copy(update={"security_domain": "NotActivated"})
        await _activate(ctx, pool, status, generation, events)
        # Activated: the pool holds the blob until the Secret is made (below, now).
        health = read_answer(wire.Health, await ctx.pools.health(pool.endpoint))
        state = health.security_domain
    held = health.security_domain_held
    if state == ACTIVATED and held:
        status = await _keep_blob(ctx, pool, status, events)
    if state in (ACTIVATED, RESTORED):
        if state == RESTORED and status.security_domain == "Recovering":
            events(
                "Normal",
                "SecurityDomainRestored",
                "The security domain was uploaded: the pool is recovered and serves its "
                "vaults' keys.",
            )
        if spec.security_domain is None and spec.recover_from is None:
            message = "The pool's security domain is activated."
        elif state == RESTORED:
            message = (
                "The pool's security domain was restored by an upload; it is recovered with "
                "the same holders and backups of it restore with the same domain."
            )
        else:
            message = (
                "The pool's security domain was downloaded by the operator: a backup and a "
                "quorum of its holders recover the pool."
            )
        return status.model_copy(
            update={
                "security_domain": "Activated",
                "security_domain_id": health.security_domain_id or status.security_domain_id,
                "conditions": with_condition(
                    status.conditions, CONDITION, True, "Activated", message, generation
                ),
            }
        )
    # Unexported, or a pool too old to say: never recoverable.
    if spec.security_domain is not None and not start.await_activation:
        reason, message = (
            "StoreNotNew",
            f"The token store {pool.claim_name} existed before this HsmPool (retained from an "
            "earlier one of this name, or made before security domains): it was activated "
            "with a security domain that is never exported, so spec.securityDomain does not "
            "apply and THIS POOL CANNOT BE RECOVERED. Make a new HsmPool (another name) with "
            "spec.securityDomain and move the keys.",
        )
        if not _has_reason(status, reason):
            events("Warning", reason, message)
    else:
        reason, message = (
            "NotExported",
            "This pool's security domain is never exported: IT CANNOT BE RECOVERED. If its "
            f"pool secret (Secret {pool.secret_name}) is lost, every key in it is lost, and a "
            "copy of its volume is worthless. A pool made with spec.securityDomain can be.",
        )
    return status.model_copy(
        update={
            "security_domain": None,
            "conditions": with_condition(
                status.conditions, CONDITION, False, reason, message, generation
            ),
        }
    )


def _has_reason(status: HsmPoolStatus, reason: str) -> bool:
    return any(c.type == CONDITION and c.reason == reason for c in status.conditions)


async def _activate(
    ctx: Context, pool: Pool, status: HsmPoolStatus, generation: int, events: Events
) -> None:
    """Download the new pool's security domain for the ConfigMap's certificates."""
    spec = pool.spec.security_domain
    assert spec is not None
    name = spec.certificates.name
    found = await ctx.kube.get("v1", "ConfigMap", pool.owner.namespace, name)
    try:
        if found is None:
            raise InvalidSpec(
                f"ConfigMap {name} (spec.securityDomain.certificates) does not exist: create "
                "it with the holders' PEM certificates",
                reason="SecurityDomainCertificatesMissing",
            )
        jwks = certificate_jwks(found.get("data"), name)
        check_request(jwks, spec.quorum, name)
    except InvalidSpec as exc:
        # Retried: the ConfigMap may be made or fixed; the pool waits, activating nothing.
        raise _not_ready(
            status,
            exc.reason if exc.reason != "InvalidSpec" else "SecurityDomainCertificatesInvalid",
            f"The pool awaits activation: {exc.message}.",
            generation,
        ) from None
    try:
        await ctx.pools.download_security_domain(pool.endpoint, jwks, spec.quorum)
    except PoolApiError as exc:
        if exc.status == 409 and exc.code == "SecurityDomainConflict":
            # Activated meanwhile (a download whose answer was lost): the pool holds the blob.
            return
        if exc.status == 400:
            raise _not_ready(
                status,
                "SecurityDomainCertificatesInvalid",
                f"The pool refused the security domain's certificates: {exc.message}",
                generation,
            ) from None
        raise
    events(
        "Normal",
        "SecurityDomainActivated",
        f"The operator activated the pool: its security domain was downloaded for "
        f"{len(jwks)} certificates, {spec.quorum} required.",
    )


async def _keep_blob(
    ctx: Context, pool: Pool, status: HsmPoolStatus, events: Events
) -> HsmPoolStatus:
    """The downloaded blob into its Secret, then released by the pool: in that order, so
    that it is never in neither place."""
    try:
        held = wire.HeldSecurityDomain.model_validate(
            await ctx.pools.held_security_domain(pool.endpoint)
        )
    except PoolApiError as exc:
        if exc.status == 404:
            return status  # released meanwhile: the Secret was made
        raise
    secret = build_security_domain_secret(pool, held.value)
    await create_owned(ctx.kube, secret, pool.owner)
    await ctx.pools.release_security_domain(pool.endpoint)
    name = pool.security_domain_secret_name
    events(
        "Normal",
        "SecurityDomainStored",
        f"The security domain is in Secret {name}: take it offline (kubectl get secret {name} "
        "-o jsonpath='{.data.security-domain\\.json}' | base64 -d > security-domain.json), "
        "keep it with the holders, then delete the Secret.",
    )
    return status.model_copy(update={"security_domain_secret": name})
