"""The pool's management API under /_strongroom/v1/, for the operator only.

The caller must present the operator's TLS client certificate (verified against the
client CA, subject CN the admin client name); a bearer token is never looked at here, so
no token a pool or a workload receives opens it. A vault's config is kept, sealed, in the
pool's record storage, so the vault is served again after a restart.
"""

import asyncio
import base64
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography import x509
from pydantic import ValidationError

from .. import poolbackup
from ..api import management as wire
from ..api.management import PREFIX
from ..tls import ServerTls
from .app import DataPlane, Vault
from .certificates import certificate_owner
from .config import VaultConfig
from .errors import (
    NOT_ACTIVATED,
    AccessDenied,
    BadParameter,
    Conflict,
    NotActivated,
    NotFound,
    Unauthorized,
    VaultError,
)
from .middleware import audit, gated
from .migration import delete_vault_config, write_vault_config
from .names import check_name
from .objects import CertificateEntry, Deletion, KeyEntry, SecretEntry, owner_of
from .store import guarded

# A vault's name labels its PKCS#11 token (32 characters at most) and a Service (a DNS label).
VAULT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?")

# What the management API serves before the pool is activated: no vault is made or changed.
BEFORE_ACTIVATION = frozenset({"Health", "TlsGet", "TlsPut", "VaultList", "VaultGet"})

Answer = tuple[int, wire.WireModel | None]
Handler = Callable[[web.Request, str], Awaitable[Answer]]
Body = TypeVar("Body", bound=wire.WireModel)


class Management:
    def __init__(
        self,
        plane: DataPlane,
        tls: ServerTls,
        backup_dir: Path | None = None,
        records_file: Path | None = None,
    ) -> None:
        self.plane = plane
        self.tls = tls
        self.backup_dir = backup_dir
        self.records_file = records_file
        # A backup, and a vault made or deleted, one at a time: every record a backup holds
        # has its vault's token in the same backup (poolbackup.py).
        self._exclusive = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/health", self._wrap("Health", self.health)),
            web.get(f"{PREFIX}/tls", self._wrap("TlsGet", self.get_tls)),
            web.put(f"{PREFIX}/tls", self._wrap("TlsPut", self.put_tls)),
            web.get(f"{PREFIX}/vaults", self._wrap("VaultList", self.list_vaults)),
            web.get(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultGet", self.get_vault)),
            web.put(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultPut", self.put_vault)),
            web.delete(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultDelete", self.delete_vault)),
            web.get(
                f"{PREFIX}/vaults/{{name}}/keys/{{object}}", self._wrap("KeyGet", self.get_key)
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/keys/{{object}}", self._wrap("KeyEnsure", self.put_key)
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/keys/{{object}}/owner",
                self._wrap("KeyAdopt", self.put_key_owner),
            ),
            web.get(
                f"{PREFIX}/vaults/{{name}}/certificates/{{object}}",
                self._wrap("CertificateGet", self.get_certificate),
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/certificates/{{object}}",
                self._wrap("CertificateEnsure", self.put_certificate),
            ),
            web.get(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}",
                self._wrap("SecretGet", self.get_secret),
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}",
                self._wrap("SecretEnsure", self.put_secret),
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}/owner",
                self._wrap("SecretAdopt", self.put_secret_owner),
            ),
            web.post(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}/rotate",
                self._wrap("SecretRotate", self.rotate_secret),
            ),
            web.get(
                f"{PREFIX}/securitydomain/download",
                self._wrap("SecurityDomainHeld", self.held_domain),
            ),
            web.delete(
                f"{PREFIX}/securitydomain/download",
                self._wrap("SecurityDomainRelease", self.release_domain),
            ),
            web.post(f"{PREFIX}/backups", self._wrap("BackupCreate", self.create_backup)),
            web.get(f"{PREFIX}/backups", self._wrap("BackupList", self.list_backups)),
            web.delete(
                f"{PREFIX}/backups/{{file}}", self._wrap("BackupDelete", self.delete_backup)
            ),
        ]

    def _wrap(self, operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        """A management handler behind the admin gate; authentication, errors and the audit
        line are the server's middleware's (vault/middleware.py), as for the data plane."""

        async def gate(request: web.Request) -> None:
            record = audit(request)
            record.operation = f"Management{operation}"
            record.vault = request.match_info.get("name", "")
            record.object = request.match_info.get("object", "") or request.match_info.get(
                "file", ""
            )
            record.caller = await self._admin(request)
            if operation not in BEFORE_ACTIVATION and not self.plane.activated:
                raise NotActivated(NOT_ACTIVATED)

        async def handle(request: web.Request) -> web.Response:
            status, body = await handler(request, request.match_info.get("name", ""))
            if body is None:
                return web.Response(status=status)
            return web.json_response(body.wire(), status=status)

        return gated(gate, handle)

    async def _admin(self, request: web.Request) -> str:
        admin = self.plane.admin
        name = admin.common_name(request)
        if name is None:
            raise Unauthorized(
                "The management API is for the pool's operator only: present its TLS client "
                f"certificate (subject CN {admin.name!r}, issued by the operator's client CA)."
            )
        if name != admin.name:
            raise AccessDenied(
                f"The client certificate {name!r} may not use the management API: "
                f"only {admin.name!r} may."
            )
        return admin.caller

    async def health(self, request: web.Request, _: str) -> Answer:
        platform = await self.plane.hsm.platform()
        domain = await guarded(self.plane.hsm.domain_state())
        return 200, wire.Health(
            status="ok",
            hsm_platform=str(platform),
            vaults=sorted(self.plane.vaults),
            security_domain=str(domain.get("state", "")),
            security_domain_held=bool(domain.get("held", False)),
            security_domain_id=str(domain.get("domain", "")),
        )

    async def get_tls(self, request: web.Request, _: str) -> Answer:
        """What the certificate served to new connections names, and until when."""
        served = self.tls.served
        if served is None:
            raise NotFound("The server has no certificate.", code="CertificateNotFound")
        return 200, wire.ServedTls(dns_names=list(served.dns_names), not_after=served.not_after)

    async def put_tls(self, request: web.Request, _: str) -> Answer:
        """Serve this certificate chain and key from the next handshake on (kept in memory
        only: the Secret mounted at start holds the same after the operator's update)."""
        body = await _body(request, wire.TlsUpdate)
        try:
            self.tls.replace(body.certificate.encode(), body.private_key.encode())
        except ValueError as exc:
            raise BadParameter(f"The certificate is refused: {exc}.") from None
        return 204, None

    async def list_vaults(self, request: web.Request, _: str) -> Answer:
        return 200, wire.VaultList(
            value=[v.config.wire() for _, v in sorted(self.plane.vaults.items())]
        )

    async def get_vault(self, request: web.Request, name: str) -> Answer:
        vault = self.plane.vaults.get(_vault_name(name))
        if vault is None:
            raise NotFound(f"No vault {name!r} is served by this pool.", code="VaultNotFound")
        return 200, vault.config.wire()

    async def put_vault(self, request: web.Request, name: str) -> Answer:
        """Create or update a vault: its token, hosts, access list and soft-delete rules."""
        name = _vault_name(name)
        settings = await _body(request, wire.VaultSettings, "The vault's config is invalid")
        config = VaultConfig.of(name, settings)
        current = self.plane.vaults.get(name)
        if current is not None:
            if current.config.purge_protection and not config.purge_protection:
                raise Conflict("Purge protection of a vault cannot be turned off once it is on.")
            if current.config.retention_days != config.retention_days:
                raise Conflict("The retention of a vault cannot be changed once it is made.")
        self.plane.check_hosts(config)
        async with self._exclusive:
            await self.plane.hsm.ensure_vault(name)
            # Loaded (made, or migrated) before its config is stored: a stored config names
            # a vault whose records are in the storage.
            await self.plane.serve_vault(config)
            await write_vault_config(self.plane.hsm, self.plane.storage, name, config.raw())
        return (200 if current is not None else 201), config.wire()

    async def delete_vault(self, request: web.Request, name: str) -> Answer:
        """Stop serving a vault. Its token and keys stay: serving it again finds them."""
        name = _vault_name(name)
        async with self._exclusive:
            if name in self.plane.vaults:
                self.plane.stop_serving(name)
            await delete_vault_config(self.plane.storage, name)
        return 204, None

    # --- the security domain the operator downloaded --------------------------------------

    async def held_domain(self, request: web.Request, _: str) -> Answer:
        """The blob of the download that activated the pool, while the pool holds it: the
        operator fetches it again when the download's answer was lost on the way."""
        try:
            blob = await guarded(self.plane.hsm.domain_held_download())
        except Conflict as exc:
            raise NotFound(exc.message, code="SecurityDomainNotHeld") from None
        return 200, wire.HeldSecurityDomain(value=blob)

    async def release_domain(self, request: web.Request, _: str) -> Answer:
        """The operator keeps the blob now (in a Secret, for the pool's administrators to take
        offline): the pool forgets it."""
        await guarded(self.plane.hsm.domain_release_download())
        return 204, None

    # --- backups (poolbackup.py) -----------------------------------------------------------

    def _backups(self) -> Path:
        if self.backup_dir is None or self.records_file is None:
            raise Conflict(
                "This pool has no backup volume: give its HsmPool spec.backup (the server's "
                "--backup-dir).",
                code="BackupVolumeMissing",
            )
        if not self.backup_dir.is_dir():
            raise VaultError(
                f"The backup volume {self.backup_dir} is not mounted.",
                code="BackupVolumeMissing",
                status=503,
            )
        return self.backup_dir

    async def create_backup(self, request: web.Request, _: str) -> Answer:
        """Write a backup of the pool (its token directory and record storage, with their
        manifest) to the backup volume: 201 with its size, SHA-256 and manifest."""
        backup_dir = self._backups()
        body = await _body(request, wire.BackupRequest, "The backup request is invalid")
        async with self._exclusive:
            return 201, await self._backup(backup_dir, body)

    async def _backup(self, backup_dir: Path, body: wire.BackupRequest) -> wire.BackupMade:
        assert self.records_file is not None
        await asyncio.to_thread(poolbackup.clean_partials, backup_dir)
        if (backup_dir / body.name).exists():
            raise Conflict(f"A backup named {body.name} exists already.", code="BackupExists")
        staging = backup_dir / f".staging-{secrets.token_hex(8)}"
        staging.mkdir(mode=0o700)
        snapshot: Path | None = None
        try:
            # Records first, then tokens: a record in the copy has its token in the copy.
            records = staging / poolbackup.RECORDS
            await asyncio.to_thread(poolbackup.snapshot_records, self.records_file, records)
            taken = await guarded(self.plane.hsm.snapshot_tokens())
            snapshot = Path(str(taken["path"]))
            if not snapshot.name.startswith("tokens-") or not snapshot.is_file():
                raise VaultError("The HSM's token snapshot is not where it says.")
            domain = await guarded(self.plane.hsm.domain_state())
            manifest = await asyncio.to_thread(
                poolbackup.write_backup,
                backup_dir,
                body.name,
                body.pool.model_dump(),
                records,
                snapshot,
                {"state": str(domain.get("state", "")), "domain": str(domain.get("domain", ""))},
            )
            if manifest["parts"][poolbackup.TOKENS]["sha256"] != taken.get("sha256"):
                (backup_dir / body.name).unlink(missing_ok=True)
                raise VaultError("The token snapshot changed before it was packed.")
            target = backup_dir / body.name
            digest = await asyncio.to_thread(poolbackup.sha256_file, target)
        except poolbackup.BackupError as exc:
            raise VaultError(f"The backup failed: {exc}.", code="BackupFailed") from None
        except OSError as exc:
            raise VaultError(
                f"The backup failed: the backup volume refused a write ({type(exc).__name__}).",
                code="BackupFailed",
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if snapshot is not None:
                snapshot.unlink(missing_ok=True)
        return wire.BackupMade(
            name=body.name,
            size=target.stat().st_size,
            sha256=digest,
            created=str(manifest["created"]),
            security_domain=str(domain.get("domain", "")),
            parts={
                part: wire.BackupPart(size=entry["size"], sha256=entry["sha256"])
                for part, entry in manifest["parts"].items()
            },
        )

    async def list_backups(self, request: web.Request, _: str) -> Answer:
        backup_dir = self._backups()
        found = await asyncio.to_thread(poolbackup.list_backups, backup_dir)
        return 200, wire.BackupList(
            backups=[
                wire.BackupFileEntry(name=f.name, size=f.size, modified=f.modified) for f in found
            ]
        )

    async def delete_backup(self, request: web.Request, _: str) -> Answer:
        """Delete one backup file (the operator's retention). 204 also when there is none."""
        backup_dir = self._backups()
        try:
            name = poolbackup.check_name(request.match_info["file"])
        except poolbackup.BackupError as exc:
            raise BadParameter(f"{exc}.") from None
        async with self._exclusive:
            (backup_dir / name).unlink(missing_ok=True)
        return 204, None

    # --- keys and secrets, made once for the custom resource that owns them ---------------
    #
    # The operator reads the state of an object in one call, and creates it with a PUT
    # that is idempotent on the owner (the custom resource's uid): the look and the create
    # happen under the object's lock in the vault. An object made through the data plane has
    # no owner until the operator adopts it (PUT .../owner), which is all that call changes.
    # Everything else it does through the data plane, where admin subjects hold every
    # permission. No answer holds a secret value.

    def _served(self, name: str) -> Vault:
        vault = self.plane.vaults.get(_vault_name(name))
        if vault is None:
            raise NotFound(f"No vault {name!r} is served by this pool.", code="VaultNotFound")
        return vault

    async def get_key(self, request: web.Request, name: str) -> Answer:
        vault = self._served(name)
        key = check_name(request.match_info["object"], "key")
        entry = await vault.keys.find(key)
        if entry is None or not entry.versions:
            raise NotFound(f"No key {key} in vault {name}.", code="KeyNotFound")
        return 200, key_state(vault, entry)

    async def put_key(self, request: web.Request, name: str) -> Answer:
        """Create the key for its owner unless it exists: 201 made now, 200 found."""
        vault = self._served(name)
        key = check_name(request.match_info["object"], "key")
        body = await _body(request, wire.KeyPut)
        create = body.model_dump(mode="json", exclude_unset=True, exclude={"owner"})
        entry, created = await vault.keys.create_owned(key, body.owner, create)
        return (201 if created else 200), key_state(vault, entry)

    async def put_key_owner(self, request: web.Request, name: str) -> Answer:
        """Adopt a key made through the data plane for `owner`: the owner tag on each of its
        versions, nothing else changed. 200 with the key's state, also when `owner` has it
        already; 409 when another owner has it or it is deleted; 404 when there is none."""
        vault = self._served(name)
        key = check_name(request.match_info["object"], "key")
        body = await _body(request, wire.OwnerPut)
        return 200, key_state(vault, await vault.keys.adopt(key, body.owner))

    async def get_secret(self, request: web.Request, name: str) -> Answer:
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        entry = await vault.secrets.find(secret)
        if entry is None or not entry.versions:
            raise NotFound(f"No secret {secret} in vault {name}.", code="SecretNotFound")
        return 200, secret_state(vault, entry)

    async def put_secret(self, request: web.Request, name: str) -> Answer:
        """Set the secret for its owner unless it exists, from `value` or generated in the
        HSM (`generate`: length in bytes of randomness, encoding): 201 made now, 200 found."""
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        body = await _body(request, wire.SecretPut)
        generate, given = body.generate, body.value

        async def value() -> str:
            if generate is not None:
                return await vault.secrets.generate_value(generate.length, generate.encoding)
            assert given is not None  # SecretPut holds one of the two
            return given

        fields = body.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude={"owner", "generate", "value"}
        )
        entry, created = await vault.secrets.set_owned(secret, body.owner, fields, value)
        return (201 if created else 200), secret_state(vault, entry)

    async def put_secret_owner(self, request: web.Request, name: str) -> Answer:
        """Adopt a secret set through the data plane for `owner`, as put_key_owner does a
        key: its versions and values stay as they are."""
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        body = await _body(request, wire.OwnerPut)
        return 200, secret_state(vault, await vault.secrets.adopt(secret, body.owner))

    async def rotate_secret(self, request: web.Request, name: str) -> Answer:
        """Give the owner's generated secret a new version from the HSM's random number
        generator, if its current version is still `ifCurrentVersion`: 201 made now, 200 not
        (the current version is another one, e.g. a retry of a rotation that was made)."""
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        body = await _body(request, wire.SecretRotate)
        generate = body.generate

        async def value() -> str:
            return await vault.secrets.generate_value(generate.length, generate.encoding)

        fields = body.model_dump(
            mode="json",
            by_alias=True,
            exclude_unset=True,
            exclude={"owner", "if_current_version", "generate"},
        )
        entry, rotated = await vault.secrets.rotate_owned(
            secret, body.owner, body.if_current_version, fields, value
        )
        return (201 if rotated else 200), secret_state(vault, entry)

    async def get_certificate(self, request: web.Request, name: str) -> Answer:
        vault = self._served(name)
        certificate = check_name(request.match_info["object"], "certificate")
        entry = await vault.certificates.find(certificate)
        if entry is None or not (entry.versions or entry.pending):
            raise NotFound(
                f"No certificate {certificate} in vault {name}.", code="CertificateNotFound"
            )
        return 200, certificate_state(vault, entry)

    async def put_certificate(self, request: web.Request, name: str) -> Answer:
        """Create the certificate for its owner unless it exists: 201 made now (issued, for
        issuer Self; a signing request pending, for Unknown), 200 found."""
        vault = self._served(name)
        certificate = check_name(request.match_info["object"], "certificate")
        body = await _body(request, wire.CertificatePut)
        create = body.model_dump(mode="json", exclude_unset=True, exclude={"owner"})
        entry, created = await vault.certificates.create_owned(certificate, body.owner, create)
        return (201 if created else 200), certificate_state(vault, entry)


def base_url(vault: Vault) -> str:
    """The vault's URL as clients in the cluster use it: ids and kids start with it."""
    return f"https://{vault.config.hosts[0]}"


def _deletion(deletion: Deletion | None) -> wire.Deletion | None:
    if deletion is None:
        return None
    return wire.Deletion(
        deleted_date=deletion.deleted_date, scheduled_purge_date=deletion.scheduled_purge_date
    )


def key_state(vault: Vault, entry: KeyEntry) -> wire.KeyState:
    """A key as the operator sees it: owner, versions oldest first, the current public JWK
    and size, the rotation policy and whether it is deleted."""
    base, store = base_url(vault), vault.keys
    current = entry.current
    return wire.KeyState(
        name=entry.name,
        owner=owner_of(entry.versions[0].tags),
        key=current.jwk(store.kid(base, entry, current)),
        versions=[
            wire.KeyVersionState(
                version=v.version,
                key_ops=list(v.key_ops),
                attributes=wire.ObjectAttributes.model_validate(
                    store.item(base, entry, v)["attributes"]
                ),
            )
            for v in entry.versions
        ],
        rotation_policy=entry.rotation_policy,
        deleted=_deletion(entry.deletion),
        key_size=current.size,
    )


def secret_state(vault: Vault, entry: SecretEntry) -> wire.SecretState:
    """A secret as the operator sees it: never its value."""
    base = base_url(vault)
    return wire.SecretState(
        name=entry.name,
        owner=owner_of(entry.versions[0].tags),
        id=f"{base}/secrets/{entry.name}/{entry.versions[-1].version}",
        content_type=entry.versions[-1].content_type,
        versions=[
            wire.SecretVersionState(
                version=v.version, created=v.attributes.created, enabled=v.attributes.enabled
            )
            for v in entry.versions
        ],
        deleted=_deletion(entry.deletion),
    )


def certificate_state(vault: Vault, entry: CertificateEntry) -> wire.CertificateState:
    """A certificate as the operator sees it: owner, versions, policy and pending operation;
    the signing request, never a private key."""
    base, store = base_url(vault), vault.certificates
    pending = entry.pending
    subject = None
    if entry.versions:
        leaf = x509.load_der_x509_certificate(base64.b64decode(entry.current.cer))
        subject = leaf.subject.rfc4514_string()
    return wire.CertificateState(
        name=entry.name,
        owner=certificate_owner(entry),
        versions=[
            wire.CertificateVersionState(
                version=v.version,
                x5t=(item := store.item(base, entry, v))["x5t"],
                attributes=wire.ObjectAttributes.model_validate(item["attributes"]),
            )
            for v in entry.versions
        ],
        subject=subject,
        policy={k: v for k, v in entry.policy.items() if not k.startswith("_")},
        pending=None
        if pending is None
        else wire.PendingCertificate(
            status=str(pending.get("status") or ""),
            status_details=str(pending.get("status_details") or ""),
            request_id=str(pending.get("request_id") or ""),
            csr=pending.get("csr") if pending.get("status") == "inProgress" else None,
            error=pending.get("error"),
        ),
        deleted=_deletion(entry.deletion),
    )


async def _body(
    request: web.Request, model: type[Body], invalid: str = "The request body is invalid"
) -> Body:
    """The request's body as `model`; a 400 that names each wrong field otherwise."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        raise BadParameter(f"{invalid}: {wire.problems(exc)}") from None


def _vault_name(name: str) -> str:
    if not VAULT_NAME.fullmatch(name):
        raise BadParameter(
            "A vault's name is 1-32 lowercase letters, digits and dashes, starting with a letter."
        )
    return name
