"""The pool's management API under /_strongroom/v1/, for the operator only.

The caller must present the operator's TLS client certificate (verified against the
client CA, subject CN the admin client name); a bearer token is never looked at here, so
no token a pool or a workload receives opens it. A vault's config is kept, sealed, in the
pool's record storage, so the vault is served again after a restart.
"""

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..hsm.errors import HsmError
from ..tls import ServerTls
from .app import DataPlane, Vault
from .audit import AuditRecord
from .config import VaultConfig
from .errors import BadParameter, Conflict, Forbidden, NotFound, Unauthorized, VaultError, from_hsm
from .migration import delete_vault_config, write_vault_config
from .names import check_name
from .objects import Deletion, KeyEntry, SecretEntry, owner_of
from .secrets import ENCODINGS

PREFIX = "/_strongroom/v1"
# A vault's name labels its PKCS#11 token (32 characters at most) and a Service (a DNS label).
VAULT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?")

Handler = Callable[[web.Request, str], Awaitable[tuple[int, Any]]]


class Management:
    def __init__(self, plane: DataPlane, tls: ServerTls) -> None:
        self.plane = plane
        self.tls = tls

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
            web.get(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}",
                self._wrap("SecretGet", self.get_secret),
            ),
            web.put(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}",
                self._wrap("SecretEnsure", self.put_secret),
            ),
            web.post(
                f"{PREFIX}/vaults/{{name}}/secrets/{{object}}/rotate",
                self._wrap("SecretRotate", self.rotate_secret),
            ),
        ]

    def _wrap(self, operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def handle(request: web.Request) -> web.Response:
            started = time.perf_counter()
            caller, name = "", request.match_info.get("name", "")
            try:
                caller = await self._admin(request)
                status, body = await handler(request, name)
            except VaultError as exc:
                status, body = exc.status, {"error": {"code": exc.code, "message": exc.message}}
            except HsmError as exc:
                error = from_hsm(exc)
                status, body = (
                    error.status,
                    {"error": {"code": error.code, "message": error.message}},
                )
            AuditRecord(
                caller,
                name,
                f"Management{operation}",
                request.match_info.get("object", ""),
                "",
                status,
                round((time.perf_counter() - started) * 1000, 2),
            ).emit()
            if body is None:
                return web.Response(status=status)
            return web.json_response(body, status=status)

        return handle

    async def _admin(self, request: web.Request) -> str:
        admin = self.plane.admin
        name = admin.common_name(request)
        if name is None:
            raise Unauthorized(
                "The management API is for the pool's operator only: present its TLS client "
                f"certificate (subject CN {admin.name!r}, issued by the operator's client CA)."
            )
        if name != admin.name:
            raise Forbidden(
                f"The client certificate {name!r} may not use the management API: "
                f"only {admin.name!r} may."
            )
        return admin.caller

    async def health(self, request: web.Request, _: str) -> tuple[int, Any]:
        platform = await self.plane.hsm.platform()
        return 200, {"status": "ok", "hsmPlatform": platform, "vaults": sorted(self.plane.vaults)}

    async def get_tls(self, request: web.Request, _: str) -> tuple[int, Any]:
        """What the certificate served to new connections names, and until when."""
        served = self.tls.served
        if served is None:
            raise NotFound("The server has no certificate.", code="CertificateNotFound")
        return 200, served.raw()

    async def put_tls(self, request: web.Request, _: str) -> tuple[int, Any]:
        """Serve this certificate chain and key from the next handshake on (kept in memory
        only: the Secret mounted at start holds the same after the operator's update)."""
        body = await _json_object(request)
        certificate, key = body.get("certificate"), body.get("privateKey")
        if not isinstance(certificate, str) or not isinstance(key, str):
            raise BadParameter("Give 'certificate' (PEM chain) and 'privateKey' (PEM).")
        try:
            self.tls.replace(certificate.encode(), key.encode())
        except ValueError as exc:
            raise BadParameter(f"The certificate is refused: {exc}.") from None
        return 204, None

    async def list_vaults(self, request: web.Request, _: str) -> tuple[int, Any]:
        return 200, {"value": [v.config.raw() for _, v in sorted(self.plane.vaults.items())]}

    async def get_vault(self, request: web.Request, name: str) -> tuple[int, Any]:
        vault = self.plane.vaults.get(_vault_name(name))
        if vault is None:
            raise NotFound(f"No vault {name!r} is served by this pool.", code="VaultNotFound")
        return 200, vault.config.raw()

    async def put_vault(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Create or update a vault: its token, hosts, access list and soft-delete rules."""
        name = _vault_name(name)
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            config = VaultConfig.parse(body | {"name": name})
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadParameter(f"The vault's config is invalid: {exc}") from None
        current = self.plane.vaults.get(name)
        if current is not None:
            if current.config.purge_protection and not config.purge_protection:
                raise Conflict("Purge protection of a vault cannot be turned off once it is on.")
            if current.config.retention_days != config.retention_days:
                raise Conflict("The retention of a vault cannot be changed once it is made.")
        self.plane.check_hosts(config)
        await self.plane.hsm.ensure_vault(name)
        # Loaded (made, or migrated) before its config is stored: a stored config names a
        # vault whose records are in the storage.
        await self.plane.serve_vault(config)
        await write_vault_config(self.plane.hsm, self.plane.storage, name, config.raw())
        return (200 if current is not None else 201), config.raw()

    async def delete_vault(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Stop serving a vault. Its token and keys stay: serving it again finds them."""
        name = _vault_name(name)
        if name in self.plane.vaults:
            self.plane.stop_serving(name)
        await delete_vault_config(self.plane.storage, name)
        return 204, None

    # --- keys and secrets, made once for the custom resource that owns them ---------------
    #
    # The operator reads the state of an object in one call, and creates it with a PUT
    # that is idempotent on the owner (the custom resource's uid): the look and the create
    # happen under the object's lock in the vault. Everything else it does through the
    # data plane, where admin subjects hold every permission. No answer holds a secret value.

    def _served(self, name: str) -> Vault:
        vault = self.plane.vaults.get(_vault_name(name))
        if vault is None:
            raise NotFound(f"No vault {name!r} is served by this pool.", code="VaultNotFound")
        return vault

    async def get_key(self, request: web.Request, name: str) -> tuple[int, Any]:
        vault = self._served(name)
        key = check_name(request.match_info["object"], "key")
        entry = await vault.keys.find(key)
        if entry is None or not entry.versions:
            raise NotFound(f"No key {key} in vault {name}.", code="KeyNotFound")
        return 200, key_state(vault, entry)

    async def put_key(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Create the key for its owner unless it exists: 201 made now, 200 found."""
        vault = self._served(name)
        key = check_name(request.match_info["object"], "key")
        body = await _json_object(request)
        owner = _owner(body)
        entry, created = await vault.keys.create_owned(key, owner, body)
        return (201 if created else 200), key_state(vault, entry)

    async def get_secret(self, request: web.Request, name: str) -> tuple[int, Any]:
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        entry = await vault.secrets.find(secret)
        if entry is None or not entry.versions:
            raise NotFound(f"No secret {secret} in vault {name}.", code="SecretNotFound")
        return 200, secret_state(vault, entry)

    async def put_secret(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Set the secret for its owner unless it exists, from `value` or generated in the
        HSM (`generate`: length in bytes of randomness, encoding): 201 made now, 200 found."""
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        body = await _json_object(request)
        owner = _owner(body)
        generate = body.pop("generate", None)
        if generate is not None:
            length, encoding = _generate_params(generate)

            async def value() -> str:
                return await vault.secrets.generate_value(length, encoding)
        else:
            given = body.get("value")
            if not isinstance(given, str):
                raise BadParameter("Give the secret's 'value' or 'generate'.")

            async def value() -> str:
                return given

        entry, created = await vault.secrets.set_owned(secret, owner, body, value)
        return (201 if created else 200), secret_state(vault, entry)

    async def rotate_secret(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Give the owner's generated secret a new version from the HSM's random number
        generator, if its current version is still `ifCurrentVersion`: 201 made now, 200 not
        (the current version is another one, e.g. a retry of a rotation that was made)."""
        vault = self._served(name)
        secret = check_name(request.match_info["object"], "secret")
        body = await _json_object(request)
        owner = _owner(body)
        if_current = body.pop("ifCurrentVersion", None)
        if not isinstance(if_current, str) or not if_current:
            raise BadParameter("'ifCurrentVersion' (the version to rotate away from) is required.")
        if "value" in body:
            raise BadParameter("A rotation is generated in the HSM: give 'generate', not 'value'.")
        length, encoding = _generate_params(body.pop("generate", None))

        async def value() -> str:
            return await vault.secrets.generate_value(length, encoding)

        entry, rotated = await vault.secrets.rotate_owned(secret, owner, if_current, body, value)
        return (201 if rotated else 200), secret_state(vault, entry)


def base_url(vault: Vault) -> str:
    """The vault's URL as clients in the cluster use it: ids and kids start with it."""
    return f"https://{vault.config.hosts[0]}"


def _deletion(deletion: Deletion | None) -> dict[str, int] | None:
    if deletion is None:
        return None
    return {
        "deletedDate": deletion.deleted_date,
        "scheduledPurgeDate": deletion.scheduled_purge_date,
    }


def key_state(vault: Vault, entry: KeyEntry) -> dict[str, Any]:
    """A key as the operator sees it: owner, versions oldest first, the current public JWK,
    the rotation policy and whether it is deleted."""
    base, store = base_url(vault), vault.keys
    current = entry.current
    return {
        "name": entry.name,
        "owner": owner_of(entry.versions[0].tags),
        "key": current.jwk(store.kid(base, entry, current)),
        "versions": [
            {
                "version": v.version,
                "keyOps": list(v.key_ops),
                "attributes": store.item(base, entry, v)["attributes"],
            }
            for v in entry.versions
        ],
        "rotationPolicy": entry.rotation_policy,
        "deleted": _deletion(entry.deletion),
    }


def secret_state(vault: Vault, entry: SecretEntry) -> dict[str, Any]:
    """A secret as the operator sees it: never its value."""
    base = base_url(vault)
    return {
        "name": entry.name,
        "owner": owner_of(entry.versions[0].tags),
        "id": f"{base}/secrets/{entry.name}/{entry.versions[-1].version}",
        "contentType": entry.versions[-1].content_type,
        "versions": [
            {"version": v.version, "created": v.attributes.created, "enabled": v.attributes.enabled}
            for v in entry.versions
        ],
        "deleted": _deletion(entry.deletion),
    }


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise BadParameter("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadParameter("The request body must be a JSON object.")
    return body


def _owner(body: dict[str, Any]) -> str:
    owner = body.pop("owner", None)
    if not isinstance(owner, str) or not 1 <= len(owner) <= 128:
        raise BadParameter("'owner' (the uid of the resource the object is for) is required.")
    return owner


def _generate_params(raw: object) -> tuple[int, str]:
    if not isinstance(raw, dict):
        raise BadParameter("'generate' must be an object")
    length, encoding = raw.get("length", 32), raw.get("encoding", "base64")
    if not isinstance(length, int) or isinstance(length, bool) or not 16 <= length <= 4096:
        raise BadParameter("'generate.length' is 16-4096 bytes of randomness")
    if encoding not in ENCODINGS:
        raise BadParameter(f"'generate.encoding' is one of {', '.join(ENCODINGS)}")
    return length, encoding


def _vault_name(name: str) -> str:
    if not VAULT_NAME.fullmatch(name):
        raise BadParameter(
            "A vault's name is 1-32 lowercase letters, digits and dashes, starting with a letter."
        )
    return name
