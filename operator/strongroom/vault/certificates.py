"""Certificates of one vault: the third kind of object, made of a key and a secret.

Each certificate version has a key (its private key, in the HSM) and a secret (the
certificate as PKCS#12 or PEM, with the private key only when the policy is exportable)
of the same name and version, both `managed`: the keys and secrets APIs read them but
change them not; the certificate's operations write all three in one durable write.

Creating with issuer `Self` makes the key in the HSM and signs the certificate with it
there, and the operation completes at once. With issuer `Unknown` the operation stays
pending with a signing request signed by the new key; merging the certificate the caller
had signed elsewhere completes it. Exportable keys are made by the HSM and leave it once,
at birth (hsm `generate_exportable`), into the secret's sealed record; a non-exportable
key never leaves the HSM. The vault's maintenance task runs the policy's lifetime
actions: AutoRenew makes a new version of certificate, key and secret together;
EmailContacts writes an audit line (the vault sends no mail).
"""

import base64
import json
import logging
import time
import uuid
from dataclasses import asdict
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from ..api.vocabulary import KEY_OPS, family
from ..hsm.errors import HsmError
from ..storage import Write
from .audit import AuditRecord
from .certpolicy import (
    PEM,
    PKCS12,
    SELF,
    UNKNOWN,
    check_policy,
    check_times,
    policy_wire,
    renewal_due,
)
from .encoding import b64url, now, unb64url
from .errors import BadParameter, Conflict, Forbidden, NotFound
from .keys import KeyStore
from .migration import meta_aad
from .objects import (
    OWNER_TAG,
    Attributes,
    CertificateEntry,
    CertificateVersion,
    Deletion,
    KeyEntry,
    KeyVersion,
    SecretEntry,
    SecretVersion,
    check_tags,
    owner_of,
    reserved_tags,
)
from .secrets import SecretStore
from .store import DAY, ObjectStore, guarded, stored
from .x509build import (
    PrivateKey,
    PublicKey,
    key_parts,
    load_private,
    parse_chain,
    pem_blocks,
    public_key,
    same_key,
    secret_value,
    self_signed,
    signature_alg,
    signing_request,
    thumbprint,
)

log = logging.getLogger(__name__)

# What each key usage of the policy lets the certificate's key do.
USAGE_OPS = {
    "digitalSignature": ("sign", "verify"),
    "nonRepudiation": ("sign", "verify"),
    "keyCertSign": ("sign", "verify"),
    "cRLSign": ("sign", "verify"),
    "keyEncipherment": ("wrapKey", "unwrapKey"),
    "dataEncipherment": ("encrypt", "decrypt"),
}
MAX_IMPORT_BYTES = 64 * 1024


def _der(text: str) -> bytes:
    return base64.b64decode(text)


class CertificateStore(ObjectStore[CertificateEntry]):
    kind = "certificate"

    def __init__(self, keys: KeyStore, secrets: SecretStore) -> None:
        super().__init__(keys.config, keys.hsm, keys.storage)
        self.keys = keys
        self.secrets = secrets

    def scheduled(self, entry: CertificateEntry) -> bool:
        return bool(entry.versions and entry.policy.get("lifetime_actions"))

    def parse(self, raw: bytes) -> CertificateEntry:
        return CertificateEntry.load(raw)

    def from_parts(self, head: dict[str, Any], versions: list[dict[str, Any]]) -> CertificateEntry:
        return CertificateEntry.from_parts(head, versions)

    def dump_version(self, version: Any) -> bytes:
        return CertificateEntry.dump_version(version)

    def _locks(self, name: str) -> Any:
        """The certificate's lock, then its key's and its secret's (always in this order)."""
        return _Locks(self, name)

    # --- wire shapes ------------------------------------------------------------

    def item(
        self, base: str, entry: CertificateEntry, version: CertificateVersion
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{base}/certificates/{entry.name}/{version.version}",
            "x5t": b64url(thumbprint(_der(version.cer))),
            "attributes": version.attributes.wire(
                self.config.retention_days, self.config.purge_protection
            ),
        }
        if version.tags:
            out["tags"] = version.tags
        return out | self.deletion_fields(base, entry)

    def bundle(
        self, base: str, entry: CertificateEntry, version: CertificateVersion
    ) -> dict[str, Any]:
        return self.item(base, entry, version) | {
            "kid": f"{base}/keys/{entry.name}/{version.version}",
            "sid": f"{base}/secrets/{entry.name}/{version.version}",
            "cer": version.cer,
            "contentType": version.content_type,
            "policy": self.policy(base, entry),
        }

    def policy(self, base: str, entry: CertificateEntry) -> dict[str, Any]:
        stamps = entry.policy.get("_stamps", [now(), now()])
        shown = {k: v for k, v in entry.policy.items() if not k.startswith("_")}
        return policy_wire(base, entry.name, shown, stamps[0], stamps[1])

    @staticmethod
    def pending_wire(base: str, entry: CertificateEntry) -> dict[str, Any]:
        pending = entry.pending or {}
        out: dict[str, Any] = {
            "id": f"{base}/certificates/{entry.name}/pending",
            "issuer": pending["issuer"],
            "cancellation_requested": pending["cancellation_requested"],
            "status": pending["status"],
            "status_details": pending["status_details"],
            "request_id": pending["request_id"],
        }
        if pending.get("csr"):
            out["csr"] = pending["csr"]
        if pending.get("error"):
            out["error"] = pending["error"]
        if pending["status"] == "completed":
            out["target"] = f"{base}/certificates/{entry.name}"
        return out

    # --- lookup ---------------------------------------------------------------

    async def live_version(
        self, name: str, version: str | None
    ) -> tuple[CertificateEntry, CertificateVersion]:
        entry = await self.live(name)
        found = entry.version(version)
        if found is None:
            raise self.not_found(f"{name}/{version}")
        return entry, found

    async def with_pending(self, name: str) -> CertificateEntry:
        entry = await self.find(name)
        if entry is None or entry.pending is None or entry.deletion is not None:
            raise NotFound(
                f"Pending certificate not found: {name}", code="PendingCertificateNotFound"
            )
        return entry

    async def _companions(
        self, name: str, *, new_version: bool
    ) -> tuple[KeyEntry | None, SecretEntry | None]:
        """The certificate's key and secret; a key or secret of this name that is not a
        certificate's, or a deleted one, is refused (409)."""
        key = await self.keys.find(name)
        secret = await self.secrets.find(name)
        for what, found in (("key", key), ("secret", secret)):
            if found is None or not found.versions:
                continue
            if not getattr(found.versions[-1], "managed", False):
                raise Conflict(
                    f"A {what} named {name} exists in this vault and is not a certificate's: "
                    "a certificate needs its name free among keys and secrets too.",
                    code="Conflict",
                )
            if found.deletion is not None and new_version:
                raise Conflict(f"The {what} {name} is deleted; recover or purge it first.")
        if new_version:
            await self.keys.check_quota(name, key)
            await self.secrets.check_quota(name, secret)
        return key, secret

    # --- making versions --------------------------------------------------------------

    async def _make_key(
        self, name: str, version_id: str, policy: dict[str, Any]
    ) -> tuple[KeyVersion, PrivateKey | None]:
        props = policy["key_props"]
        kty, exportable = props["kty"], props["exportable"]
        fam = family(kty)
        if exportable:
            made = await guarded(
                self.hsm.generate_exportable(
                    self.vault, version_id, name, fam, props.get("key_size") or 0,
                    props.get("crv") or "",
                )
            )  # fmt: skip
        elif fam == "RSA":
            made = await guarded(
                self.hsm.generate_rsa(self.vault, version_id, name, props["key_size"])
            )
        else:
            made = await guarded(self.hsm.generate_ec(self.vault, version_id, name, props["crv"]))
        usage = policy["x509_props"].get("key_usage", [])
        ops = [op for u in usage for op in USAGE_OPS.get(u, ())]
        allowed = KEY_OPS[fam]
        key_ops: list[str] = [op for op in dict.fromkeys(ops) if op in allowed] or ["verify"]
        version = KeyVersion(
            version=version_id,
            kty=kty,
            key_ops=key_ops,
            public={k: str(v) for k, v in made.public.items()},
            wrapped=base64.b64encode(made.wrapped).decode(),
            size=props.get("key_size") if fam == "RSA" else None,
            crv=props.get("crv") if fam == "EC" else None,
            managed=True,
        )
        private = load_private(made.private) if made.private is not None else None
        return version, private

    async def _reused_key(
        self, entry: CertificateEntry, version_id: str, policy: dict[str, Any]
    ) -> tuple[KeyVersion, PrivateKey | None]:
        """reuse_key: the current version's key again, under the new version's id."""
        key_entry = await self.keys.find(entry.name)
        old = key_entry.version(entry.current.version) if key_entry else None
        if old is None:
            return await self._make_key(entry.name, version_id, policy)
        private = None
        if policy["key_props"]["exportable"]:
            secret = await self.secrets.find(entry.name)
            found = secret.version(entry.current.version) if secret else None
            private = _private_of(found.value, found.content_type) if found else None
        version = KeyVersion(**asdict(old) | {"version": version_id, "attributes": Attributes()})
        await guarded(
            self.hsm.load_key(
                self.vault, version_id, entry.name, version.kty, base64.b64decode(version.wrapped)
            )
        )
        return version, private

    async def _sign(self, name: str, key: KeyVersion, alg: str, digest: bytes) -> bytes:
        return await self.keys._with_key(
            key, name, lambda: self.hsm.sign(self.vault, key.version, alg, digest)
        )

    def _public(self, key: KeyVersion) -> PublicKey:
        return public_key(key.kty, key.crv, key.public)

    async def _complete(
        self,
        entry: CertificateEntry,
        key: KeyVersion,
        private: PrivateKey | None,
        certificate: x509.Certificate,
        chain: list[x509.Certificate],
        policy: dict[str, Any],
        enabled: bool,
        tags: dict[str, str],
        *,
        new: bool,
    ) -> CertificateVersion:
        """Write the new version of certificate, key and secret together; call under
        the certificate's locks."""
        key_entry, secret_entry = await self._companions(entry.name, new_version=True)
        nbf = int(certificate.not_valid_before_utc.timestamp())
        exp = int(certificate.not_valid_after_utc.timestamp())
        attributes = Attributes(enabled=enabled, nbf=nbf, exp=exp)
        der = certificate.public_bytes(serialization.Encoding.DER)
        content_type = policy["secret_props"]["contentType"]
        version = CertificateVersion(
            version=key.version,
            cer=base64.b64encode(der).decode(),
            chain=[
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain
            ],
            content_type=content_type,
            attributes=attributes,
            tags=tags,
        )
        key.attributes = Attributes(enabled=enabled, nbf=nbf, exp=exp)
        key.tags = dict(tags)
        secret = SecretVersion(
            version=key.version,
            value=secret_value(content_type, certificate, chain, private),
            content_type=content_type,
            attributes=Attributes(enabled=enabled, nbf=nbf, exp=exp),
            tags=dict(tags),
            managed=True,
        )
        new_key, new_secret = key_entry is None, secret_entry is None
        key_entry = key_entry or KeyEntry(name=entry.name)
        secret_entry = secret_entry or SecretEntry(name=entry.name)
        entry.versions.append(version)
        key_entry.versions.append(key)
        secret_entry.versions.append(secret)
        write = Write(self.vault)
        try:
            await self.stage(write, entry, [version])
            await self.keys.stage(write, key_entry, [key])
            await self.secrets.stage(write, secret_entry, [secret])
            staged: list[tuple[ObjectStore[Any], Any, bool]] = [
                (self, entry, new),
                (self.keys, key_entry, new_key),
                (self.secrets, secret_entry, new_secret),
            ]
            await self.commit(write, staged)
        except BaseException:
            entry.versions.remove(version)
            key_entry.versions.remove(key)
            secret_entry.versions.remove(secret)
            raise
        return version

    def _operation(self, issuer: dict[str, Any], status: str, details: str) -> dict[str, Any]:
        return {
            "request_id": uuid.uuid4().hex,
            "issuer": issuer,
            "cancellation_requested": False,
            "status": status,
            "status_details": details,
        }

    # --- create, pending operations, merge -----------------------------------------

    async def create(self, name: str, body: dict[str, Any]) -> CertificateEntry:
        policy, enabled, tags = _create_fields(body)
        async with self._locks(name):
            return await self._create_locked(name, policy, enabled, tags)

    async def create_owned(
        self, name: str, owner: str, body: dict[str, Any]
    ) -> tuple[CertificateEntry, bool]:
        """Create the certificate for `owner` (the custom resource that asks for it) unless
        it exists; True when it was made now. The look and the create happen under the
        certificate's locks, so a retried request never makes a second version. A
        certificate of another owner, or none (made through the data plane), or a deleted
        one, is refused with 409 and a code the caller can act on."""
        policy, enabled, tags = _create_fields(body)
        async with self._locks(name):
            entry = await self.find(name)
            if entry is not None and (entry.versions or entry.pending):
                if certificate_owner(entry) != owner:
                    raise Conflict(
                        f"A certificate named {name} exists in this vault and belongs to "
                        "another owner.",
                        code="CertificateOwnedElsewhere",
                    )
                if entry.deletion is not None:
                    raise Conflict(
                        f"Certificate {name} is deleted and recoverable; recover it or purge it.",
                        code="CertificateDeleted",
                    )
                return entry, False
            made = await self._create_locked(name, policy, enabled, tags | {OWNER_TAG: owner})
            return made, True

    async def _create_locked(
        self, name: str, policy: dict[str, Any], enabled: bool, tags: dict[str, str]
    ) -> CertificateEntry:
        issuer = policy["issuer"]["name"]
        entry = await self.find(name)
        await self.check_quota(name, entry)
        if entry is not None and entry.deletion is not None:
            raise Conflict(
                f"Certificate {name} is currently in a deleted but recoverable state, and "
                "its name cannot be reused; in this state, the certificate can only be "
                "recovered or purged."
            )
        if entry is not None and entry.pending and entry.pending["status"] == "inProgress":
            raise Conflict(
                f"Certificate {name} has a pending operation; merge, cancel or delete it "
                "before creating another version.",
                code="Conflict",
            )
        await self._companions(name, new_version=True)
        new = entry is None
        if entry is not None:
            # A new version of an owned certificate stays its owner's, as a rotated key does.
            current = entry.current.tags if entry.versions else (entry.pending or {}).get("tags")
            tags = tags | reserved_tags(dict(current or {}))
        entry = entry or CertificateEntry(name=name)
        stamps = entry.policy.get("_stamps", [now(), now()])
        entry.policy = policy | {"_stamps": [stamps[0], now()]}
        if issuer == SELF:
            await self._self_issue(entry, policy, enabled, tags, new=new)
        else:
            await self._start_pending(entry, policy, enabled, tags, new=new)
        return entry

    async def _self_issue(
        self,
        entry: CertificateEntry,
        policy: dict[str, Any],
        enabled: bool,
        tags: dict[str, str],
        *,
        new: bool,
        reuse: bool = False,
    ) -> CertificateVersion:
        version_id = uuid.uuid4().hex
        if reuse and entry.versions:
            key, private = await self._reused_key(entry, version_id, policy)
        else:
            key, private = await self._make_key(entry.name, version_id, policy)
        try:
            alg = signature_alg(key.kty, key.crv)
            serial = await guarded(self.hsm.random(self.vault, 16))
            certificate = await self_signed(
                policy,
                self._public(key),
                serial,
                lambda a, d: self._sign(entry.name, key, a, d),
                now(),
            )
            del alg
            entry.pending = self._operation(
                policy["issuer"], "completed", "The certificate was issued by the vault (Self)."
            )
            return await self._complete(
                entry, key, private, certificate, [], policy, enabled, tags, new=new
            )
        except BaseException:
            entry.pending = None
            await self.keys._destroy_quietly(version_id)
            raise

    async def _start_pending(
        self,
        entry: CertificateEntry,
        policy: dict[str, Any],
        enabled: bool,
        tags: dict[str, str],
        *,
        new: bool,
    ) -> None:
        version_id = uuid.uuid4().hex
        key, private = await self._make_key(entry.name, version_id, policy)
        try:
            request = await signing_request(
                policy, self._public(key), lambda a, d: self._sign(entry.name, key, a, d)
            )
            pending = self._operation(
                policy["issuer"],
                "inProgress",
                "Pending certificate created. Please perform the merge to complete the request.",
            )
            pending["csr"] = base64.b64encode(
                request.public_bytes(serialization.Encoding.DER)
            ).decode()
            # What the merge needs, sealed with the certificate's head: the key version
            # and, for an exportable policy, its private key (it has no secret yet).
            pending["key"] = asdict(key)
            pending["private"] = (
                base64.b64encode(
                    private.private_bytes(
                        serialization.Encoding.DER,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                ).decode()
                if private is not None
                else None
            )
            pending["enabled"], pending["tags"] = enabled, tags
            pending["policy"] = policy
            entry.pending = pending
            await self._save(entry, new=new)
        except BaseException:
            entry.pending = None
            await self.keys._destroy_quietly(version_id)
            raise

    async def get_pending(self, name: str) -> CertificateEntry:
        return await self.with_pending(name)

    async def cancel_pending(self, name: str, body: dict[str, Any]) -> CertificateEntry:
        requested = body.get("cancellation_requested")
        if not isinstance(requested, bool):
            raise BadParameter("'cancellation_requested' must be true or false")
        async with self.lock(name):
            entry = await self.with_pending(name)
            pending = entry.pending or {}
            if requested and pending["status"] == "inProgress":
                pending["cancellation_requested"] = True
                pending["status"] = "cancelled"
                pending["status_details"] = "The pending operation was cancelled."
                version_id = pending["key"]["version"]
                _drop_material(pending)
                await self._save(entry)
                await self.keys._destroy_quietly(version_id)
            return entry

    async def delete_pending(self, name: str) -> CertificateEntry:
        async with self.lock(name):
            entry = await self.with_pending(name)
            shown = CertificateEntry(entry.name, [], None, entry.policy, dict(entry.pending or {}))
            pending = entry.pending or {}
            version_id = (pending.get("key") or {}).get("version")
            entry.pending = None
            if entry.versions:
                await self._save(entry)
            else:
                await self._forget(entry)
            if version_id:
                await self.keys._destroy_quietly(version_id)
            return shown

    async def merge(self, name: str, body: dict[str, Any]) -> CertificateEntry:
        chain = parse_chain(body.get("x5c"))
        tags = check_tags(body.get("tags"))
        attributes = body.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise BadParameter("'attributes' must be an object")
        if attributes is not None:
            check_times(attributes, "attributes")
            if not isinstance(attributes.get("enabled", False), bool | None):
                raise BadParameter("'attributes.enabled' must be true or false")
        async with self._locks(name):
            entry = await self.find(name)
            if (
                entry is None
                or entry.deletion is not None
                or entry.pending is None
                or entry.pending["status"] != "inProgress"
            ):
                raise NotFound(
                    f"Pending certificate not found: {name}", code="PendingCertificateNotFound"
                )
            pending = entry.pending
            key = KeyVersion(
                **pending["key"] | {"attributes": Attributes(**pending["key"]["attributes"])}
            )
            if not same_key(chain[0], self._public(key)):
                raise BadParameter(
                    "The public key of the first certificate in 'x5c' does not match the "
                    "pending request's key: x5c starts with the certificate signed for the CSR.",
                    code="BadParameter",
                )
            private = load_private(base64.b64decode(pending["private"])) if pending.get(
                "private"
            ) else None  # fmt: skip
            enabled = pending["enabled"]
            if isinstance(attributes, dict) and isinstance(attributes.get("enabled"), bool):
                enabled = attributes["enabled"]
            policy = pending["policy"]
            new = not entry.versions
            completed = self._operation(pending["issuer"], "completed", "")
            completed["request_id"] = pending["request_id"]
            entry.pending = completed
            try:
                await self._complete(
                    entry,
                    key,
                    private,
                    chain[0],
                    chain[1:],
                    policy,
                    enabled,
                    tags | reserved_tags(pending["tags"]) if tags is not None else pending["tags"],
                    new=new and await self.find(name) is None,
                )
            except BaseException:
                entry.pending = pending
                raise
            return entry

    # --- import -----------------------------------------------------------------------

    async def import_(self, name: str, body: dict[str, Any]) -> CertificateEntry:
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise BadParameter("'value' is required: a base64 PFX, or PEM text")
        if len(value) > MAX_IMPORT_BYTES:
            raise BadParameter(f"'value' is at most {MAX_IMPORT_BYTES} characters")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise BadParameter("'pwd' must be a string")
        private, certificate, chain, given_type = _read_import(value, password)
        kty, size, crv, parts = key_parts(private.public_key())
        raw_policy = body.get("policy") if body.get("policy") is not None else {}
        if not isinstance(raw_policy, dict):
            raise BadParameter("'policy' must be an object")
        key_props = dict(raw_policy.get("key_props") or {})
        key_props.setdefault("kty", kty)
        if family(str(key_props["kty"])) != kty:
            raise BadParameter(
                f"the policy's key type {key_props['kty']!r} does not match the imported {kty} key"
            )
        if kty == "RSA":
            key_props["key_size"] = size
        else:
            key_props["crv"] = crv
            key_props.pop("key_size", None)
        subject = certificate.subject.rfc4514_string()
        x509_props = dict(raw_policy.get("x509_props") or {})
        x509_props.setdefault("subject", subject or None)
        if not subject and not x509_props.get("sans"):
            x509_props["sans"] = {"dns_names": ["imported.invalid"]}
        secret_props = dict(raw_policy.get("secret_props") or {})
        secret_props.setdefault("contentType", given_type)
        issuer = dict(raw_policy.get("issuer") or {})
        issuer.setdefault("name", UNKNOWN)
        policy = check_policy(
            raw_policy
            | {
                "key_props": key_props,
                "x509_props": x509_props,
                "secret_props": secret_props,
                "issuer": issuer,
            }
        )
        enabled, tags = _enabled_and_tags(body)
        async with self._locks(name):
            entry = await self.find(name)
            await self.check_quota(name, entry)
            if entry is not None and entry.deletion is not None:
                raise Conflict(
                    f"Certificate {name} is currently in a deleted but recoverable state; "
                    "recover or purge it first."
                )
            await self._companions(name, new_version=True)
            version_id = uuid.uuid4().hex
            imported = await import_private_key(self, name, version_id, private)
            key = KeyVersion(
                version=version_id,
                kty=policy["key_props"]["kty"],
                key_ops=_key_ops(policy, kty),
                public=parts,
                wrapped=base64.b64encode(imported).decode(),
                size=size,
                crv=crv,
                managed=True,
            )
            new = entry is None
            entry = entry or CertificateEntry(name=name)
            stamps = entry.policy.get("_stamps", [now(), now()])
            before = (entry.policy, entry.pending)
            entry.policy = policy | {"_stamps": [stamps[0], now()]}
            entry.pending = None
            keep = private if policy["key_props"]["exportable"] else None
            try:
                await self._complete(
                    entry, key, keep, certificate, chain, policy, enabled, tags, new=new
                )
            except BaseException:
                entry.policy, entry.pending = before
                await self.keys._destroy_quietly(version_id)
                raise
            return entry

    # --- update, policy ----------------------------------------------------------------

    async def update(
        self, name: str, version: str | None, body: dict[str, Any]
    ) -> tuple[CertificateEntry, CertificateVersion]:
        tags = check_tags(body.get("tags"))
        attributes = body.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise BadParameter("'attributes' must be an object")
        attributes = attributes or {}
        for field in ("nbf", "exp"):
            if attributes.get(field) is not None:
                raise BadParameter(
                    f"'attributes.{field}' of a certificate is its certificate's own validity "
                    "and cannot be set"
                )
        enabled = attributes.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise BadParameter("'attributes.enabled' must be true or false")
        async with self._locks(name):
            entry, found = await self.live_version(name, version)
            if body.get("policy") is not None:
                entry.policy = self._updated_policy(entry, body["policy"])
            if enabled is not None:
                found.attributes.enabled = enabled
            if tags is not None:
                found.tags = tags | reserved_tags(found.tags)
            found.attributes.updated = now()
            key_entry, secret_entry = await self._companions(name, new_version=False)
            write = Write(self.vault)
            staged: list[tuple[ObjectStore[Any], Any, bool]] = [(self, entry, False)]
            await self.stage(write, entry, [found])
            companions: list[tuple[ObjectStore[Any], Any]] = [
                (self.keys, key_entry),
                (self.secrets, secret_entry),
            ]
            for store, companion in companions:
                match = companion.version(found.version) if companion else None
                if companion is None or match is None:
                    continue
                if enabled is not None:
                    match.attributes.enabled = enabled
                if tags is not None:
                    match.tags = dict(tags) | reserved_tags(match.tags)
                match.attributes.updated = now()
                await store.stage(write, companion, [match])
                staged.append((store, companion, False))
            await self.commit(write, staged)
            return entry, found

    def _updated_policy(self, entry: CertificateEntry, raw: object) -> dict[str, Any]:
        stored_policy = {k: v for k, v in entry.policy.items() if not k.startswith("_")}
        checked = check_policy(raw, stored_policy)
        stamps = entry.policy.get("_stamps", [now(), now()])
        return checked | {"_stamps": [stamps[0], now()]}

    async def update_policy(self, name: str, body: dict[str, Any]) -> CertificateEntry:
        async with self.lock(name):
            entry = await self.live(name)
            entry.policy = self._updated_policy(entry, body)
            await self._save(entry)
            return entry

    # --- soft delete, recover, purge ---------------------------------------------------

    async def delete(self, name: str) -> CertificateEntry:
        async with self._locks(name):
            entry = await self.live(name)
            moment = now()
            deletion = Deletion(moment, moment + self.config.retention_days * DAY)
            await self._mark(entry, deletion)
            return entry

    async def recover(self, name: str) -> CertificateEntry:
        async with self._locks(name):
            entry = await self.deleted(name)
            await self._mark(entry, None)
            return entry

    async def _mark(self, entry: CertificateEntry, deletion: Deletion | None) -> None:
        """Delete (or recover) the certificate, its key and its secret in one write."""
        key_entry, secret_entry = await self._companions(entry.name, new_version=False)
        write = Write(self.vault)
        staged: list[tuple[ObjectStore[Any], Any, bool]] = []
        parts: list[tuple[ObjectStore[Any], Any]] = [
            (self, entry),
            (self.keys, key_entry),
            (self.secrets, secret_entry),
        ]
        for store, item in parts:
            if item is None:
                continue
            item.deletion = deletion
            await store.stage(write, item)
            staged.append((store, item, False))
        await self.commit(write, staged)

    async def purge(self, name: str, *, expired: bool = False) -> None:
        async with self._locks(name):
            entry = await self.deleted(name)
            if self.config.purge_protection and not expired:
                raise Forbidden(
                    'Operation "purge" is not allowed because purge protection is enabled for '
                    f"this vault. Certificate {name} will be purged after its retention period."
                )
            key_entry, secret_entry = await self._companions(name, new_version=False)
            key = name.lower()
            write = Write(self.vault, delete_objects=[(self.kind, key)])
            if key_entry is not None:
                write.delete_objects.append((self.keys.kind, key))
            if secret_entry is not None:
                write.delete_objects.append((self.secrets.kind, key))
            for store in (self, self.keys, self.secrets):
                store._cache.pop(key, None)
            await stored(self.storage.write(write))
            for store, item in (
                (self, entry),
                (self.keys, key_entry),
                (self.secrets, secret_entry),
            ):
                if item is not None and store._count is not None:
                    store._count -= 1
            for version in key_entry.versions if key_entry else []:
                await self.keys._destroy_quietly(version.version)
            pending_key = ((entry.pending or {}).get("key") or {}).get("version")
            if pending_key:
                await self.keys._destroy_quietly(pending_key)

    # --- backup and restore ---------------------------------------------------------------

    async def backup(self, name: str) -> str:
        async with self._locks(name):
            entry = await self.live(name)
            key_entry, secret_entry = await self._companions(name, new_version=False)
            saved = CertificateEntry(entry.name, entry.versions, None, entry.policy, None)
            document = {
                "kind": self.kind,
                "entry": json.loads(saved.dump()),
                "key": json.loads(key_entry.dump()) if key_entry else None,
                "secret": json.loads(secret_entry.dump()) if secret_entry else None,
            }
            blob = json.dumps(document).encode()
            return b64url(await guarded(self.hsm.seal(self.vault, blob, self._aad())))

    async def restore(self, body: dict[str, Any]) -> CertificateEntry:
        sealed = unb64url(body.get("value"), "value")
        try:
            data = json.loads(await self.hsm.unseal(self.vault, sealed, self._aad()))
            if data.get("kind") != self.kind:
                raise ValueError
            entry = self.parse(json.dumps(data["entry"]).encode())
            key_entry = self.keys.parse(json.dumps(data["key"]).encode())
            secret_entry = self.secrets.parse(json.dumps(data["secret"]).encode())
        except (HsmError, ValueError, KeyError, TypeError):
            raise BadParameter(
                "The backup blob is invalid, or was not made by this vault."
            ) from None
        versions: list[Any] = [*entry.versions, *key_entry.versions, *secret_entry.versions]
        for item in versions:
            item.attributes.check()
        async with self._locks(entry.name):
            await self.check_free(entry)
            await self.keys.check_free(key_entry)
            await self.secrets.check_free(secret_entry)
            loaded: list[str] = []
            try:
                for version in key_entry.versions:
                    await guarded(
                        self.hsm.load_key(
                            self.vault,
                            version.version,
                            entry.name,
                            version.kty,
                            base64.b64decode(version.wrapped),
                        )
                    )
                    loaded.append(version.version)
                write = Write(self.vault)
                staged: list[tuple[ObjectStore[Any], Any, bool]] = []
                restored: list[tuple[ObjectStore[Any], Any]] = [
                    (self, entry),
                    (self.keys, key_entry),
                    (self.secrets, secret_entry),
                ]
                for store, item in restored:
                    item.deletion = None
                    await store.stage(write, item, item.versions)
                    staged.append((store, item, True))
                await self.commit(write, staged)
            except BaseException:
                for version_id in loaded:
                    await self.keys._destroy_quietly(version_id)
                raise
            return entry

    # --- lifetime actions ------------------------------------------------------------------

    async def renew_due(self) -> None:
        """Run the lifetime action due for each certificate's current version."""
        moment = now()
        after = ""
        while True:
            names = await stored(self.storage.scheduled(self.vault, self.kind, after, 100))
            if not names:
                return
            after = names[-1]
            for name in names:
                try:
                    await self._renew_if_due(name, moment)
                except Exception as exc:  # noqa: BLE001 - one certificate must not stop the rest
                    log.warning("lifetime action of certificate %s failed: %s", name, exc)

    async def _renew_if_due(self, name: str, moment: int) -> None:
        async with self._locks(name):
            entry = await self.find(name)
            if entry is None or entry.deletion is not None or not entry.versions:
                return
            current = entry.current
            if current.notified or current.attributes.nbf is None or current.attributes.exp is None:
                return
            action = renewal_due(
                entry.policy, current.attributes.nbf, current.attributes.exp, moment
            )
            if action is None:
                return
            policy = {k: v for k, v in entry.policy.items() if not k.startswith("_")}
            issued_here = policy["issuer"]["name"] == SELF
            if action == "AutoRenew" and issued_here:
                started = time.perf_counter()
                version = await self._self_issue(
                    entry,
                    policy,
                    policy["attributes"].get("enabled", True),
                    dict(current.tags),
                    new=False,
                    reuse=policy["key_props"]["reuse_key"],
                )
                _audit(self.vault, "CertificateRenew", name, version.version, started)
                return
            # EmailContacts (and AutoRenew of a certificate signed elsewhere): the vault
            # sends no mail; the audit line is the notice, once per version.
            started = time.perf_counter()
            current.notified = True
            await self._save(entry, [current])
            _audit(self.vault, "CertificateNearExpiry", name, current.version, started)


class _Locks:
    def __init__(self, store: CertificateStore, name: str) -> None:
        self._held = [store.lock(name), store.keys.lock(name), store.secrets.lock(name)]

    async def __aenter__(self) -> None:
        entered = []
        try:
            for lock in self._held:
                await lock.__aenter__()
                entered.append(lock)
        except BaseException:
            for lock in reversed(entered):
                await lock.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: object) -> None:
        for lock in reversed(self._held):
            await lock.__aexit__(*exc)


def _audit(vault: str, operation: str, name: str, version: str, started: float) -> None:
    AuditRecord(
        "strongroom:maintenance",
        vault,
        operation,
        name,
        version,
        200,
        round((time.perf_counter() - started) * 1000, 2),
    ).emit()


def _drop_material(pending: dict[str, Any]) -> None:
    """Forget what a pending operation kept of its key."""
    pending.pop("private", None)
    pending.pop("key", None)
    pending.pop("csr", None)


def certificate_owner(entry: CertificateEntry) -> str | None:
    """The custom resource a certificate was made for: the owner tag of its first version,
    or of its pending operation before it has one."""
    if entry.versions:
        return owner_of(entry.versions[0].tags)
    return owner_of(dict((entry.pending or {}).get("tags") or {}))


def _create_fields(body: dict[str, Any]) -> tuple[dict[str, Any], bool, dict[str, str]]:
    """A create's checked policy, enabled and tags; an issuer other than Self or Unknown is
    refused."""
    policy = check_policy(body.get("policy"))
    enabled, tags = _enabled_and_tags(body)
    issuer = policy["issuer"]["name"]
    if issuer not in (SELF, UNKNOWN):
        raise BadParameter(
            f"issuer {issuer[:64]!r}: strongroom signs certificates itself (Self) or hands "
            "out a signing request to be merged (Unknown); it calls no external CA",
            code="BadParameter",
        )
    return policy, enabled, tags


def _enabled_and_tags(body: dict[str, Any]) -> tuple[bool, dict[str, str]]:
    attributes = body.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise BadParameter("'attributes' must be an object")
    check_times(attributes or {}, "attributes")
    enabled = (attributes or {}).get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        raise BadParameter("'attributes.enabled' must be true or false")
    return enabled, check_tags(body.get("tags")) or {}


def _key_ops(policy: dict[str, Any], fam: str) -> list[str]:
    usage = policy["x509_props"].get("key_usage", [])
    ops = [op for u in usage for op in USAGE_OPS.get(u, ())]
    return [op for op in dict.fromkeys(ops) if op in KEY_OPS[fam]] or ["verify"]


def _private_of(value: str, content_type: str | None) -> PrivateKey | None:
    if content_type == PEM:
        keys = pem_blocks(value, "PRIVATE KEY")
        return load_private(keys[0]) if keys else None
    key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    if key is None:
        return None
    return load_private(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _read_import(
    value: str, password: str | None
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate], str]:
    """(private key, leaf, its issuers, content type) of an imported PFX or PEM (as text,
    or base64 of the PEM file as the SDKs send it)."""
    if "-----BEGIN" not in value:
        try:
            decoded = base64.b64decode(value, validate=True)
        except ValueError:
            raise BadParameter("'value' is neither base64 PKCS#12 nor PEM text") from None
        if decoded.lstrip().startswith(b"-----BEGIN"):
            value = decoded.decode("ascii", errors="replace")
    if "-----BEGIN" in value:
        keys = pem_blocks(value, "PRIVATE KEY")
        if not keys:
            raise BadParameter(
                "the PEM holds no private key: import needs a PKCS#8 '-----BEGIN PRIVATE KEY-----' "
                "block (unencrypted) and the certificate chain"
            )
        try:
            private = load_private(keys[0])
            certs = [x509.load_der_x509_certificate(d) for d in pem_blocks(value, "CERTIFICATE")]
        except ValueError:
            raise BadParameter("the PEM's private key or certificates cannot be read") from None
        content_type = PEM
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise BadParameter("'value' is neither base64 PKCS#12 nor PEM text") from None
        try:
            key, leaf, extra = pkcs12.load_key_and_certificates(
                raw, password.encode() if password else None
            )
        except ValueError:
            raise BadParameter(
                "the PKCS#12 cannot be opened: it is damaged, or 'pwd' is wrong or missing"
            ) from None
        if key is None:
            raise BadParameter("the PKCS#12 holds no private key")
        private = load_private(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        certs = ([leaf] if leaf is not None else []) + list(extra)
        content_type = PKCS12
    if not certs:
        raise BadParameter("the import holds no certificate")
    leaf_index = next((i for i, c in enumerate(certs) if same_key(c, private.public_key())), None)
    if leaf_index is None:
        raise BadParameter("no certificate of the import matches its private key")
    leaf = certs.pop(leaf_index)
    return private, leaf, certs, content_type


async def import_private_key(
    store: CertificateStore, name: str, version_id: str, private: PrivateKey
) -> bytes:
    """Put an imported private key into the HSM as the working key `version_id` (the HSM's
    `import_key`, the byok branch's operation): returns the KEK-wrapped blob the key's
    record keeps. Kept apart so that it can become a call of KeyLifecycle's own import
    once that is on main."""
    fam, _, crv, _ = key_parts(private.public_key())

    def raw(value: int, size: int = 0) -> bytes:
        return value.to_bytes(max(size, (value.bit_length() + 7) // 8), "big")

    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.private_numbers()
        public = numbers.public_numbers
        parts = {
            "n": raw(public.n),
            "e": raw(public.e),
            "d": raw(numbers.d),
            "p": raw(numbers.p),
            "q": raw(numbers.q),
            "dp": raw(numbers.dmp1),
            "dq": raw(numbers.dmq1),
            "qi": raw(numbers.iqmp),
        }
    else:
        size = {"P-256": 32, "P-384": 48, "P-521": 66}[crv or "P-256"]
        ec_numbers = private.private_numbers()
        parts = {
            "x": raw(ec_numbers.public_numbers.x, size),
            "y": raw(ec_numbers.public_numbers.y, size),
            "d": raw(ec_numbers.private_value, size),
        }
    made = await guarded(store.hsm.import_key(store.vault, version_id, name, fam, crv or "", parts))
    return made.wrapped


# --- contacts and issuers: one sealed meta record each per vault -----------------------

CONTACTS = "certificate-contacts"
ISSUERS = "certificate-issuers"
MAX_CONTACTS = 64
MAX_ISSUERS = 64
_TEXT_MAX = 256


def _text(raw: object, what: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > _TEXT_MAX:
        raise BadParameter(f"'{what}' is a string of at most {_TEXT_MAX} characters")
    return raw


class CertificateMeta:
    """A vault's certificate contacts and issuers (stored and returned only: the vault
    sends no mail and calls no CA). An issuer's password is kept sealed, never returned."""

    def __init__(self, store: CertificateStore) -> None:
        self.store = store

    async def _read(self, name: str) -> Any:
        sealed = await stored(self.store.storage.get_meta(self.store.vault, name))
        if sealed is None:
            return None
        opened = await self.store.sealer.open([meta_aad(self.store.vault, name)], [sealed])
        return json.loads(opened[0])

    async def _write(self, name: str, value: Any) -> None:
        write = Write(self.store.vault)
        if value is None:
            write.delete_meta.append(name)
        else:
            sealed = await self.store.sealer.seal(
                [meta_aad(self.store.vault, name)], [json.dumps(value).encode()]
            )
            write.put_meta.append((name, sealed[0]))
        await stored(self.store.storage.write(write))

    # contacts
    @staticmethod
    def contacts_wire(base: str, contacts: list[dict[str, str]]) -> dict[str, Any]:
        return {"id": f"{base}/certificates/contacts", "contacts": contacts}

    async def get_contacts(self) -> list[dict[str, str]]:
        found = await self._read(CONTACTS)
        if not found:
            raise NotFound("This vault has no certificate contacts.", code="ContactsNotFound")
        return list(found)

    async def set_contacts(self, body: dict[str, Any]) -> list[dict[str, str]]:
        raw = body.get("contacts")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_CONTACTS:
            raise BadParameter(f"'contacts' is a list of 1 to {MAX_CONTACTS} contacts")
        contacts = []
        for item in raw:
            if not isinstance(item, dict):
                raise BadParameter("each contact is an object with email, name and phone")
            email = _text(item.get("email"), "contacts.email")
            if not email or "@" not in email:
                raise BadParameter("each contact needs an 'email' address")
            contact = {"email": email}
            for field in ("name", "phone"):
                value = _text(item.get(field), f"contacts.{field}")
                if value:
                    contact[field] = value
            contacts.append(contact)
        async with self.store.lock("\0contacts"):
            await self._write(CONTACTS, contacts)
        return contacts

    async def delete_contacts(self) -> list[dict[str, str]]:
        async with self.store.lock("\0contacts"):
            found = await self.get_contacts()
            await self._write(CONTACTS, None)
            return found

    # issuers
    @staticmethod
    def issuer_wire(base: str, name: str, issuer: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"{base}/certificates/issuers/{name}"}
        out["provider"] = issuer["provider"]
        if issuer.get("account_id") is not None:
            out["credentials"] = {"account_id": issuer["account_id"]}
        if issuer.get("org_details"):
            out["org_details"] = issuer["org_details"]
        out["attributes"] = issuer["attributes"]
        return out

    async def issuers(self) -> dict[str, dict[str, Any]]:
        found = await self._read(ISSUERS)
        return dict(found or {})

    async def get_issuer(self, name: str) -> tuple[str, dict[str, Any]]:
        for stored_name, issuer in (await self.issuers()).items():
            if stored_name.lower() == name.lower():
                return stored_name, issuer
        raise NotFound(f"Issuer not found: {name}", code="CertificateIssuerNotFound")

    async def set_issuer(self, name: str, body: dict[str, Any], *, update: bool) -> dict[str, Any]:
        if name.lower() in (SELF.lower(), UNKNOWN.lower()):
            raise BadParameter(f"{name} is a reserved issuer name")
        async with self.store.lock("\0issuers"):
            issuers = await self.issuers()
            old_name, old = next(
                ((n, i) for n, i in issuers.items() if n.lower() == name.lower()), (name, None)
            )
            if update and old is None:
                raise NotFound(f"Issuer not found: {name}", code="CertificateIssuerNotFound")
            if not update and old is None and len(issuers) >= MAX_ISSUERS:
                raise BadParameter(f"a vault holds at most {MAX_ISSUERS} issuers")
            issuer = dict(old or {})
            # A set names the provider (required); an update keeps it when not given.
            provider = body.get("provider", issuer.get("provider") if update else None)
            if not isinstance(provider, str) or not provider or len(provider) > _TEXT_MAX:
                raise BadParameter("'provider' is required: the issuer's provider name")
            issuer["provider"] = provider
            credentials = body.get("credentials")
            if credentials is not None:
                if not isinstance(credentials, dict):
                    raise BadParameter("'credentials' must be an object")
                issuer["account_id"] = _text(credentials.get("account_id"), "account_id")
                issuer["pwd"] = _text(credentials.get("pwd"), "credentials.pwd")
            org = body.get("org_details")
            if org is not None:
                issuer["org_details"] = _org_details(org)
            attributes = body.get("attributes") or {}
            if not isinstance(attributes, dict):
                raise BadParameter("'attributes' must be an object")
            enabled = attributes.get(
                "enabled", (issuer.get("attributes") or {}).get("enabled", True)
            )
            if not isinstance(enabled, bool):
                raise BadParameter("'attributes.enabled' must be true or false")
            moment = now()
            created = (issuer.get("attributes") or {}).get("created", moment)
            issuer["attributes"] = {"enabled": enabled, "created": created, "updated": moment}
            issuers.pop(old_name, None)
            issuers[name] = issuer
            await self._write(ISSUERS, issuers)
            return issuer

    async def delete_issuer(self, name: str) -> tuple[str, dict[str, Any]]:
        async with self.store.lock("\0issuers"):
            stored_name, issuer = await self.get_issuer(name)
            issuers = await self.issuers()
            issuers.pop(stored_name, None)
            await self._write(ISSUERS, issuers)
            return stored_name, issuer


def _org_details(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadParameter("'org_details' must be an object")
    out: dict[str, Any] = {}
    if raw.get("id") is not None:
        out["id"] = _text(raw.get("id"), "org_details.id")
    admins = raw.get("admin_details") or []
    if not isinstance(admins, list) or len(admins) > MAX_CONTACTS:
        raise BadParameter(f"'org_details.admin_details' is a list of at most {MAX_CONTACTS}")
    out["admin_details"] = []
    for admin in admins:
        if not isinstance(admin, dict):
            raise BadParameter("each of 'org_details.admin_details' is an object")
        out["admin_details"].append(
            {
                k: _text(admin.get(k), f"admin_details.{k}")
                for k in ("first_name", "last_name", "email", "phone")
                if admin.get(k) is not None
            }
        )
    return out
