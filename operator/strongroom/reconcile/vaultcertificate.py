"""Reconcile a VaultCertificate: the certificate made once in its vault, its policy kept to
the spec, a signing request merged once its chain is in a Secret, its status read back.

The certificate's identity is the resource's uid: the vault tags the certificate (and
its key and secret) with it and makes it only when none of that name exists, so a re-run,
or an operator killed between the vault's create and the status write, finds the
certificate it made. A certificate made through the vault's API has no such tag and is
not taken over.

Issuer Self: the vault signs in its HSM and renews on the policy's lifetime action (the
status follows at the next check). Issuer Unknown: the vault keeps a signing request
pending (status.csr); the chain the user signs for it is read from the Secret the spec
names and merged. At renewBefore the operator asks the vault for a new request, and the
current version serves until the new chain is merged.
"""

import base64
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..api import management as wire
from ..api.durations import DAY, InvalidDuration, parse_duration
from ..builders.common import Owner
from ..models.vaultcertificate import (
    CONTENT_TYPES,
    VaultCertificateSpec,
    VaultCertificateStatus,
)
from .adopt import Notify
from .conditions import with_condition
from .context import Context
from .errors import InvalidSpec, NotReady, PoolApiError, ReconcileError
from .poolapi import VaultAddress, read_answer
from .vault import vault_address, vault_address_for_delete

DEFAULT_RENEW_PERCENTAGE = 80
# The vault takes days_before_expiry up to 27 days a month of the validity.
DAYS_A_MONTH = 27
MAX_CHAIN_BYTES = 64 * 1024


def certificate_name(owner: Owner, spec: VaultCertificateSpec) -> str:
    return spec.certificate_name or owner.name


# --- the policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """When to renew: a percentage of the lifetime, or days before expiry."""

    percentage: int | None = None
    days: int | None = None

    def wire(self) -> dict[str, int]:
        if self.percentage is not None:
            return {"lifetime_percentage": self.percentage}
        assert self.days is not None
        return {"days_before_expiry": self.days}

    def at(self, nbf: int, exp: int) -> int:
        """The moment (unix seconds) the trigger falls for a version valid nbf to exp; the
        vault's own arithmetic (certpolicy.renewal_due)."""
        if self.percentage is not None:
            return nbf + (exp - nbf) * self.percentage // 100
        assert self.days is not None
        return exp - self.days * DAY


def renew_trigger(spec: VaultCertificateSpec) -> Trigger:
    """spec.renewBefore as the policy's trigger; InvalidSpec when the vault would refuse it."""
    text = spec.renew_before
    if text is None:
        return Trigger(percentage=DEFAULT_RENEW_PERCENTAGE)
    if text.endswith("%"):
        percentage = int(text[:-1]) if text[:-1].isdigit() else 0
        if not 1 <= percentage <= 99:
            raise InvalidSpec(f"spec.renewBefore {text!r}: a percentage is from 1% to 99%")
        return Trigger(percentage=percentage)
    try:
        seconds = parse_duration(text, at_least=DAY)
    except InvalidDuration as exc:
        raise InvalidSpec(f"spec.renewBefore: {exc}") from None
    days = seconds // DAY
    most = spec.validity_months * DAYS_A_MONTH
    if days > most:
        raise InvalidSpec(
            f"spec.renewBefore {text!r} is {days} days, longer than the vault allows for a "
            f"validity of {spec.validity_months} month(s) ({most} days, 27 a month): every "
            "version would be due for renewal as soon as it is made"
        )
    return Trigger(days=days)


def check_spec(spec: VaultCertificateSpec) -> None:
    """Refuse what the CRD's rules cannot see, before the vault does."""
    renew_trigger(spec)
    for address in spec.ip_addresses or ():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidSpec(
                f"spec.ipAddresses holds {address!r}, which is not an IPv4 or IPv6 address"
            ) from None
    if spec.subject is not None:
        try:
            x509.Name.from_rfc4514_string(spec.subject)
        except ValueError:
            raise InvalidSpec(
                f"spec.subject {spec.subject[:80]!r} is not a distinguished name such as "
                "CN=api.example.com, O=Example"
            ) from None


def lifetime_action(spec: VaultCertificateSpec) -> str:
    """AutoRenew when the vault can renew on its own (Self); otherwise EmailContacts, which
    the vault only records (the operator renews an Unknown certificate itself)."""
    return "AutoRenew" if spec.auto_renew and spec.issuer.name == "Self" else "EmailContacts"


def desired_policy(spec: VaultCertificateSpec) -> dict[str, Any]:
    """Pure: the certificate policy, in Key Vault's wire shape, that the spec asks for."""
    key_props: dict[str, Any] = {
        "kty": spec.key_type,
        "exportable": spec.exportable,
        "reuse_key": False,
    }
    if spec.key_type.startswith("EC"):
        key_props["crv"] = spec.curve or "P-256"
    else:
        key_props["key_size"] = spec.key_size or 2048
    x509_props: dict[str, Any] = {
        "subject": spec.subject or "",
        "validity_months": spec.validity_months,
    }
    sans: dict[str, list[str]] = {}
    # Without repeats, as the vault keeps them: a repeated name must not read as a change.
    if spec.dns_names:
        sans["dns_names"] = list(dict.fromkeys(spec.dns_names))
    if spec.ip_addresses:
        sans["ipAddresses"] = list(dict.fromkeys(spec.ip_addresses))
    if sans:
        x509_props["sans"] = sans
    return {
        "key_props": key_props,
        "secret_props": {"contentType": CONTENT_TYPES[spec.content_type]},
        "x509_props": x509_props,
        "lifetime_actions": [
            {
                "trigger": renew_trigger(spec).wire(),
                "action": {"action_type": lifetime_action(spec)},
            }
        ],
        "issuer": {"name": spec.issuer.name},
        "attributes": {"enabled": True},
    }


def identity(policy: dict[str, Any]) -> tuple[Any, ...]:
    """Pure: what a certificate is made with; a change of it makes a new version."""
    key = policy.get("key_props") or {}
    props = policy.get("x509_props") or {}
    sans = props.get("sans") or {}
    family = str(key.get("kty") or "")
    return (
        family,
        key.get("crv") if family.startswith("EC") else key.get("key_size"),
        bool(key.get("exportable")),
        (policy.get("secret_props") or {}).get("contentType"),
        props.get("subject") or "",
        tuple(sans.get("dns_names") or ()),
        tuple(sans.get("ipAddresses") or ()),
        props.get("validity_months"),
        (policy.get("issuer") or {}).get("name"),
    )


def renewal(policy: dict[str, Any]) -> list[Any]:
    return list(policy.get("lifetime_actions") or [])


# --- the certificate as the pool reports it ------------------------------------------------


@dataclass(frozen=True)
class Version:
    version: str
    x5t: str
    nbf: int | None
    exp: int | None
    enabled: bool


@dataclass(frozen=True)
class CertificateState:
    name: str
    owner: str | None
    versions: tuple[Version, ...]
    subject: str | None
    policy: dict[str, Any]
    pending_status: str | None
    pending_details: str
    pending_error: str | None
    csr: str | None  # base64 DER, while a signing request is pending
    deleted: bool

    @property
    def current(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    @property
    def signing(self) -> bool:
        return self.pending_status == "inProgress"

    @classmethod
    def parse(cls, raw: object) -> "CertificateState":
        answer = read_answer(wire.CertificateState, raw)
        pending = answer.pending
        error = None
        if pending is not None and pending.error:
            error = str(pending.error.get("message") or pending.error.get("code") or "")
        return cls(
            name=answer.name,
            owner=answer.owner,
            versions=tuple(
                Version(v.version, v.x5t, v.attributes.nbf, v.attributes.exp, v.attributes.enabled)
                for v in answer.versions
            ),
            subject=answer.subject,
            policy=dict(answer.policy),
            pending_status=pending.status if pending is not None else None,
            pending_details=pending.status_details if pending is not None else "",
            pending_error=error,
            csr=pending.csr if pending is not None else None,
            deleted=answer.deleted is not None,
        )


def check_owner(state: CertificateState, uid: str, vault: str) -> None:
    """Pure: refuse a certificate this resource did not make."""
    if state.owner == uid:
        return
    made = (
        "belongs to another resource"
        if state.owner is not None
        else "was made through the vault's API (certificates are not adopted)"
    )
    raise InvalidSpec(
        f"A certificate named {state.name} already exists in vault {vault} and {made}; set "
        "spec.certificateName to another name",
        reason="CertificateNameTaken",
    )


def should_delete(state: CertificateState | None, uid: str) -> bool:
    """Pure: soft-delete only a live certificate that this resource made."""
    return state is not None and state.owner == uid and not state.deleted


def thumbprint_hex(x5t: str) -> str:
    """Key Vault's x5t (base64url SHA-1) as the hexadecimal thumbprint tools show."""
    raw = base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4))
    return raw.hex().upper()


def csr_pem(der_b64: str) -> str:
    request = x509.load_der_x509_csr(base64.b64decode(der_b64))
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _moment(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def renews_at(state: CertificateState) -> int | None:
    current = state.current
    actions = renewal(state.policy)
    if current is None or current.nbf is None or current.exp is None or not actions:
        return None
    trigger = actions[0].get("trigger") or {}
    found = Trigger(trigger.get("lifetime_percentage"), trigger.get("days_before_expiry"))
    if found.percentage is None and found.days is None:
        return None
    return found.at(current.nbf, current.exp)


def chain_for_request(pem: bytes, csr_b64: str) -> list[str] | None:
    """The chain (base64 DER, leaf first) in a Secret's PEM, if its first certificate is
    for the pending request's key; None when it is for another key (a previous version's).
    InvalidSpec when it holds no certificate."""
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise InvalidSpec(
            "The signed chain Secret holds no PEM certificate: put the certificate signed for "
            "status.csr first, then its issuers, as PEM",
            reason="InvalidSignedChain",
        ) from None
    request = x509.load_der_x509_csr(base64.b64decode(csr_b64))
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*spki) != request.public_key().public_bytes(*spki):
        return None
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]


def certificate_status(
    state: CertificateState,
    spec: VaultCertificateSpec,
    vault: VaultAddress,
    status: VaultCertificateStatus,
    generation: int,
    now: datetime | None = None,
) -> VaultCertificateStatus:
    """Pure: the status of the certificate as the vault reports it."""
    current = state.current
    base = f"https://{vault.host}"
    update: dict[str, Any] = {"observed_generation": generation}
    update["csr"] = csr_pem(state.csr) if state.signing and state.csr else None
    where = spec.issuer.signed_chain_secret_ref
    sign_hint = (
        f"sign the request in status.csr with your CA and put the chain (PEM, its certificate "
        f"first) in Secret {where.name!r}, key {where.key!r}"
        if where is not None
        else "sign the request in status.csr with your CA and merge the chain through the "
        "vault's API (or set spec.issuer.signedChainSecretRef)"
    )
    if current is not None:
        at = renews_at(state)
        update |= {
            "id": f"{base}/certificates/{state.name}/{current.version}",
            "version": current.version,
            "secret_id": f"{base}/secrets/{state.name}/{current.version}",
            "thumbprint": thumbprint_hex(current.x5t),
            "subject": state.subject,
            "not_before": _moment(current.nbf),
            "expires": _moment(current.exp),
            "renews_at": _moment(at),
        }
        message = (
            f"Certificate {state.name} in vault {vault.vault}, version {current.version}, "
            f"valid until {_moment(current.exp):%Y-%m-%d %H:%M:%S}Z."
            if current.exp is not None
            else f"Certificate {state.name} in vault {vault.vault}, version {current.version}."
        )
        if state.signing:
            message += f" A renewal's signing request is pending: {sign_hint}."
        conditions = with_condition(
            status.conditions, "Ready", True, "Issued", message, generation, now
        )
    elif state.signing:
        conditions = with_condition(
            status.conditions,
            "Ready",
            False,
            "PendingSignature",
            f"Certificate {state.name} in vault {vault.vault} waits for its signature: "
            f"{sign_hint}.",
            generation,
            now,
        )
    else:
        detail = state.pending_error or state.pending_details or "no version was issued"
        conditions = with_condition(
            status.conditions,
            "Ready",
            False,
            "Failed",
            f"Certificate {state.name} in vault {vault.vault} was not issued "
            f"({state.pending_status or 'no operation'}): {detail}",
            generation,
            now,
        )
    update["conditions"] = conditions
    return status.model_copy(update=update)


# --- carrying them out ---------------------------------------------------------------------


async def reconcile_certificate(
    ctx: Context,
    owner: Owner,
    spec: VaultCertificateSpec,
    status: VaultCertificateStatus,
    generation: int,
    notify: Notify | None = None,
    warn: Notify | None = None,
    now: datetime | None = None,
) -> VaultCertificateStatus:
    """Make the certificate and keep it to the spec. `notify` posts a Normal Event (a new
    version requested or merged), `warn` a Warning Event (near expiry without renewal)."""
    check_spec(spec)
    vault = await vault_address(ctx, owner.namespace, spec.vault_ref.name)
    name = certificate_name(owner, spec)
    wanted = desired_policy(spec)
    raw = await ctx.pools.get_certificate(vault, name)
    if raw is None:
        raw = await _create(ctx, vault, name, owner, wanted)
    state = CertificateState.parse(raw)
    check_owner(state, owner.uid, vault.vault)
    if state.deleted:
        # Deleted through the vault's API while the resource still wants it: bring it back.
        await ctx.pools.recover_certificate(vault, name)
        state = await _read(ctx, vault, name)
    if identity(state.policy) != identity(wanted):
        if state.signing:
            # The pending request was made for the old spec: replace it.
            await ctx.pools.delete_pending_certificate(vault, name)
        await ctx.pools.new_certificate_version(vault, name, wanted)
        _post(
            notify,
            "NewVersionRequested",
            f"The spec changed: {_made(spec)} certificate {name} with the new policy.",
        )
        state = await _read(ctx, vault, name)
    elif renewal(state.policy) != renewal(wanted):
        await ctx.pools.update_certificate_policy(
            vault, name, {"lifetime_actions": wanted["lifetime_actions"]}
        )
        state = await _read(ctx, vault, name)
    moment = int((now or datetime.now(UTC)).timestamp())
    due = renews_at(state)
    if (
        spec.issuer.name == "Unknown"
        and spec.auto_renew
        and not state.signing
        and due is not None
        and moment >= due
    ):
        await ctx.pools.new_certificate_version(vault, name, wanted)
        _post(
            notify,
            "RenewalRequested",
            f"Certificate {name} reached its renewal time: the vault made a new key and "
            "signing request (status.csr) to be signed; the current version serves until the "
            "chain is merged.",
        )
        state = await _read(ctx, vault, name)
    if state.signing and state.csr and spec.issuer.signed_chain_secret_ref is not None:
        state = await _merge_if_signed(ctx, vault, owner, spec, state, notify)
    new_status = certificate_status(state, spec, vault, status, generation, now)
    current = state.current
    if (
        current is not None
        and not spec.auto_renew
        and due is not None
        and moment >= due
        and status.notified_version != current.version
    ):
        _post(
            warn,
            "NearExpiry",
            f"Certificate {name} expires at {_moment(current.exp):%Y-%m-%d %H:%M:%S}Z and is "
            "not renewed (spec.autoRenew is false): make a new version, or set autoRenew.",
        )
        new_status = new_status.model_copy(update={"notified_version": current.version})
    return new_status


def _made(spec: VaultCertificateSpec) -> str:
    return (
        "the vault issued a new version of"
        if spec.issuer.name == "Self"
        else ("the vault made a new signing request (status.csr) for")
    )


def _post(post: Notify | None, reason: str, message: str) -> None:
    if post is not None:
        post(reason, message)


async def _create(
    ctx: Context, vault: VaultAddress, name: str, owner: Owner, policy: dict[str, Any]
) -> dict[str, Any]:
    """The certificate as the vault made it, or found it made for this resource; None
    never: a refusal (another owner's, deleted) is read back for check_owner to name."""
    try:
        return await ctx.pools.create_certificate(vault, name, owner.uid, {"policy": policy})
    except PoolApiError as exc:
        if exc.status != 409:
            raise
        raw = await ctx.pools.get_certificate(vault, name)
        if raw is None:
            raise
        return raw


async def _merge_if_signed(
    ctx: Context,
    vault: VaultAddress,
    owner: Owner,
    spec: VaultCertificateSpec,
    state: CertificateState,
    notify: Notify | None,
) -> CertificateState:
    where = spec.issuer.signed_chain_secret_ref
    assert where is not None and state.csr is not None
    secret = await ctx.kube.get("v1", "Secret", owner.namespace, where.name)
    encoded = ((secret or {}).get("data") or {}).get(where.key)
    if not isinstance(encoded, str) or not encoded:
        return state  # not signed yet: the status says what to do
    try:
        pem = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise InvalidSpec(
            f"Secret {where.name!r} key {where.key!r} is not base64 data",
            reason="InvalidSignedChain",
        ) from None
    if len(pem) > MAX_CHAIN_BYTES:
        raise InvalidSpec(
            f"Secret {where.name!r} key {where.key!r} is larger than {MAX_CHAIN_BYTES} bytes: "
            "a signed chain is a few certificates",
            reason="InvalidSignedChain",
        )
    chain = chain_for_request(pem, state.csr)
    if chain is None:
        return state  # the chain of a previous request: wait for the new one
    try:
        await ctx.pools.merge_certificate(vault, state.name, chain)
    except PoolApiError as exc:
        if exc.status == 400:
            raise ReconcileError(
                f"The vault refused the signed chain in Secret {where.name!r}: {exc.message}",
                reason="MergeFailed",
            ) from None
        raise
    merged = await _read(ctx, vault, state.name)
    current = merged.current
    _post(
        notify,
        "Merged",
        f"The signed chain from Secret {where.name!r} was merged: certificate {state.name} "
        f"version {current.version if current else '?'}.",
    )
    return merged


async def _read(ctx: Context, vault: VaultAddress, name: str) -> CertificateState:
    raw = await ctx.pools.get_certificate(vault, name)
    if raw is None:
        raise NotReady(
            f"Certificate {name} vanished from vault {vault.vault}", reason="CertificateVanished"
        )
    return CertificateState.parse(raw)


async def delete_certificate(ctx: Context, owner: Owner, spec: VaultCertificateSpec) -> None:
    """Soft-delete the certificate this resource made, with its key and secret: they stay
    recoverable for the vault's retention, and with purge protection nobody can purge them
    sooner."""
    vault = await vault_address_for_delete(ctx, owner.namespace, spec.vault_ref.name)
    if vault is None:
        return
    name = certificate_name(owner, spec)
    raw = await ctx.pools.get_certificate(vault, name)
    state = None if raw is None else CertificateState.parse(raw)
    if not should_delete(state, owner.uid):
        return
    assert state is not None
    if state.signing and not state.versions:
        # Only a signing request: nothing was issued to keep recoverable.
        await ctx.pools.delete_pending_certificate(vault, name)
        return
    await ctx.pools.delete_certificate(vault, name)
