"""HTTP routes of the data plane, in the shapes of the Azure Key Vault REST API.

One handler takes every request: it finds the vault by host name, identifies the
caller (the pool's administrator by its TLS client certificate, anyone else by a
bearer token bound to this vault), checks the api-version and the caller's
permission (the operation and its permission come from the table in routes.py), then
calls the vault's key or secret store. Paths are split before percent-decoding so that
an encoded `/` or `..` stays inside one name and is refused by name rules.
"""

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from ..hsm.api import Hsm
from ..hsm.errors import HsmError
from ..storage import Storage
from . import http1
from .auth import AdminClient, Authenticator
from .certificates import CertificateMeta, CertificateStore
from .config import ServerConfig, VaultConfig
from .encoding import b64url
from .errors import (
    NOT_ACTIVATED,
    AccessDenied,
    BadParameter,
    ChallengeNeeded,
    Conflict,
    MethodNotAllowed,
    NotActivated,
    NotFound,
    Unauthorized,
    VaultError,
)
from .keys import KeyStore
from .metrics import METRICS, NO_TOKEN, ServerMetrics
from .middleware import answers, audit, gated
from .migration import VAULT_CONFIG, migrate, read_vault_config
from .names import check_name, check_version
from .routes import RouteSpec, shapes
from .secrets import SecretStore
from .store import ObjectStore, guarded

log = logging.getLogger(__name__)
# The vault, the caller and whether it is the pool's administrator, as the gate found them.
_CALLER = web.RequestKey("strongroom_caller", tuple)
# One encoder for every answer: json.dumps with options builds a new one per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode

API_VERSIONS = frozenset({"7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"})
MAX_BODY_BYTES = 256 * 1024
# A body (at most MAX_BODY_BYTES) that takes longer than this to arrive holds a connection
# and a request slot for nothing: the request fails with 408.
BODY_TIMEOUT_SECONDS = 10.0
# Paths whose resolution (route, checked name and version) is kept: the hot ones of a
# busy vault; all are forgotten when it fills up.
RESOLVED_PATHS = 4096
PAGE_SIZE = 25
MAINTENANCE_SECONDS = 60.0

Handler = Callable[["Call"], Awaitable[Any]]


@dataclass
class Vault:
    """One served vault: its configuration and its two stores."""

    config: VaultConfig
    keys: KeyStore
    secrets: SecretStore
    certificates: CertificateStore

    @classmethod
    def make(cls, config: VaultConfig, hsm: Hsm, storage: Storage) -> "Vault":
        keys, secrets = KeyStore(config, hsm, storage), SecretStore(config, hsm, storage)
        return cls(config, keys, secrets, CertificateStore(keys, secrets))

    @property
    def certificate_meta(self) -> CertificateMeta:
        return CertificateMeta(self.certificates)

    async def load(self) -> None:
        """Make the vault's token if it is new, and bring its records into the storage
        if they are still in the token (the first design)."""
        hsm = self.keys.hsm
        await guarded(hsm.ensure_vault(self.config.name))
        await migrate(hsm, self.keys.storage, self.config.name, self.keys, self.secrets)

    async def maintain(self) -> None:
        await self.keys.purge_expired()
        await self.secrets.purge_expired()
        await self.certificates.purge_expired()
        await self.keys.rotate_due()
        await self.certificates.renew_due()


@dataclass
class Call:
    """What a route handler needs of one request."""

    request: web.Request
    vault: Vault
    base: str
    name: str = ""
    version: str | None = None
    body: dict[str, Any] | None = None
    may_decrypt: bool = False  # whether the caller holds keys/decrypt in this vault

    def json_body(self) -> dict[str, Any]:
        return self.body or {}


@dataclass(frozen=True)
class Route:
    operation: str
    kind: str  # "keys", "secrets" or "" (any permission in the vault)
    permission: str
    handler: Handler
    has_body: bool = False


class DataPlane:
    def __init__(
        self,
        config: ServerConfig,
        hsm: Hsm,
        storage: Storage,
        authenticator: Authenticator,
        admin: AdminClient | None = None,
    ) -> None:
        self.hsm = hsm
        self.storage = storage
        self.authenticator = authenticator
        # The pool's administrator (the operator) holds every permission in every vault.
        self.admin = admin or AdminClient()
        self.vaults: dict[str, Vault] = {}
        self.by_host: dict[str, Vault] = {}
        self._keys = KeyRoutes()
        self._secrets = SecretRoutes()
        self._certificates = CertificateRoutes()
        # The security domain's state as the HSM last said (hsm/domain.py); see `activated`.
        self.domain: dict[str, Any] = {}
        self._loaded = False
        self._route_of: dict[RouteSpec, Route] = {}  # at most one per row of the table
        # (method, raw path) -> the route, name and version it resolved to and passed
        # the checks with; a path that failed them is not kept.
        self._resolved: dict[tuple[str, str], tuple[Route, str, str | None]] = {}
        for vault_config in config.vaults:
            self.add_vault(vault_config)

    def add_vault(self, config: VaultConfig) -> Vault:
        vault = Vault.make(config, self.hsm, self.storage)
        self.vaults[config.name] = vault
        for host in config.hosts:
            self.by_host[host] = vault
        return vault

    async def start(self) -> None:
        await self._wait_for_hsm(60)
        await self.storage.open()
        await self.domain_changed()

    @property
    def activated(self) -> bool:
        """Whether the pool is activated (vault/securitydomain.py): until it is, it serves
        no key or secret operation."""
        return bool(self.domain.get("activated", True))

    async def domain_changed(self) -> None:
        """The pool's security-domain state from the HSM; once activated, its vaults."""
        self.domain = await guarded(self.hsm.domain_state())
        if self.activated and not self._loaded:
            await self._load_vaults()
            self._loaded = True

    async def _load_vaults(self) -> None:
        for vault in self.vaults.values():
            await vault.load()
        # Vaults added through the management API keep their config in the storage; a
        # token of the first design keeps it among its records until it is migrated.
        names = set(await guarded(self.hsm.vault_names()))
        names |= set(await self.storage.vaults_with_meta(VAULT_CONFIG))
        for name in sorted(names - set(self.vaults)):
            try:
                if await guarded(self.hsm.has_vault(name)):
                    probe = Vault.make(
                        VaultConfig.parse({"name": name, "hosts": ["migration.invalid"]}),
                        self.hsm,
                        self.storage,
                    )
                    await probe.load()
                raw = await read_vault_config(self.hsm, self.storage, name)
                if raw is None:
                    continue
                await self.serve_vault(VaultConfig.parse(raw))
            except (VaultError, ValueError) as exc:
                log.warning("vault %s is not served: its stored config is refused: %s", name, exc)

    async def _wait_for_hsm(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.hsm.ping()
                return
            except HsmError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def check_hosts(self, config: VaultConfig) -> None:
        """Refuse a config whose host names another vault already serves."""
        for host in config.hosts:
            other = self.by_host.get(host)
            if other is not None and other.config.name != config.name:
                raise Conflict(
                    f"The host {host!r} is already served by vault {other.config.name!r}."
                )

    async def serve_vault(self, config: VaultConfig) -> Vault:
        """Serve a vault with this config from now on; load it when it is new."""
        self.check_hosts(config)
        vault = self.vaults.get(config.name)
        if vault is None:
            vault = Vault.make(config, self.hsm, self.storage)
            await vault.load()
            self.vaults[config.name] = vault
        else:
            for host in vault.config.hosts:
                self.by_host.pop(host, None)
            vault.config = vault.keys.config = vault.secrets.config = config
            vault.certificates.config = config
        for host in config.hosts:
            self.by_host[host] = vault
        return vault

    def stop_serving(self, name: str) -> None:
        vault = self.vaults.pop(name, None)
        if vault is not None:
            for host in vault.config.hosts:
                self.by_host.pop(host, None)

    async def maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            for vault in list(self.vaults.values()):
                try:
                    await vault.maintain()
                except (VaultError, HsmError) as exc:
                    log.warning("maintenance of vault %s failed: %s", vault.config.name, exc)

    # --- the one request handler ------------------------------------------------

    async def identify(self, request: web.Request) -> None:
        """The data plane's gate (run by the middleware): the vault by host name, and the
        caller: the pool's administrator by its client certificate, anyone else by a bearer
        token bound to this vault."""
        record = audit(request)
        vault = self._vault_for(request)
        record.vault = vault.config.name
        is_admin = self.admin.matches(request)
        record.caller = self.admin.caller if is_admin else await self._authenticate(request, vault)
        request[_CALLER] = (vault, record.caller, is_admin)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every data-plane request, once `identify` let it in; errors and the audit line
        are the middleware's."""
        vault, caller, is_admin = request[_CALLER]
        record = audit(request)
        api_version = _api_version(request)
        if api_version not in API_VERSIONS:
            raise BadParameter(
                f"The specified version ({api_version}) is not recognized. Consider using "
                f"one of: {', '.join(sorted(API_VERSIONS))}.",
                code="BadParameter",
            )
        route, call = self._route(request, vault)
        record.operation, record.object = route.operation, call.name
        record.version = call.version or ""
        if not is_admin:
            self._authorize(vault, caller, route)
        if not self.activated:
            raise NotActivated(NOT_ACTIVATED)
        call.may_decrypt = is_admin or "decrypt" in (vault.config.permissions(caller, "keys"))
        if route.has_body:
            call.body = await self._read_json(request)
        return self._respond(await route.handler(call))

    def _vault_for(self, request: web.Request) -> Vault:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        vault = self.by_host.get(host)
        if vault is None:
            raise NotFound(f"No vault is served at host {host[:255]!r}.", code="VaultNotFound")
        return vault

    def _challenge(self, request: web.Request, vault: Vault) -> str:
        return bearer_challenge(request.host, vault.config.challenge_resource)

    async def _authenticate(self, request: web.Request, vault: Vault) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ChallengeNeeded(self._challenge(request, vault), NO_TOKEN)
        try:
            return await self.authenticator.authenticate(token.strip(), vault.config)
        except Unauthorized as exc:
            raise ChallengeNeeded(self._challenge(request, vault), exc.message) from None

    @staticmethod
    def _authorize(vault: Vault, caller: str, route: Route) -> None:
        if not route.kind:
            if any(
                vault.config.permissions(caller, kind)
                for kind in ("keys", "secrets", "certificates")
            ):
                return
        elif route.permission in vault.config.permissions(caller, route.kind):
            return
        raise AccessDenied(
            f"The caller {caller!r} does not have {route.kind or 'any'} permission "
            f"{route.permission!r} on vault {vault.config.name!r}.",
            code="Forbidden",
        )

    @staticmethod
    async def _read_json(request: web.Request) -> dict[str, Any]:
        try:
            if isinstance(request, http1.Request):  # its body has arrived whole
                raw = request.body
            elif request.content.is_eof():  # all here already (the usual case): no timer
                raw = request.content.read_nowait(-1)
                if len(raw) > MAX_BODY_BYTES:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=MAX_BODY_BYTES, actual_size=len(raw)
                    )
            else:
                async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                    raw = await request.read()
        except TimeoutError:
            raise VaultError(
                f"The request body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} seconds.",
                code="RequestTimeout",
                status=408,
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise VaultError(
                f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                code="RequestBodyTooLarge",
                status=413,
            ) from None
        if not raw:
            raise BadParameter("The request body is required: a JSON object.")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadParameter("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise BadParameter("The request body must be a JSON object.")
        return body

    @staticmethod
    def _respond(result: Any) -> web.Response:
        if result is None:
            return web.Response(status=204)
        if isinstance(result, web.Response):
            return result
        return web.Response(body=_compact_json(result).encode(), content_type="application/json")

    # --- routing -------------------------------------------------------------------

    def _route(self, request: web.Request, vault: Vault) -> tuple[Route, Call]:
        """The table's row for this request (routes.ROUTES), its name and version checked."""
        raw_path = request.raw_path.split("?", 1)[0]
        method = request.method
        known = self._resolved.get((method, raw_path))
        if known is not None:  # this path was resolved and checked before: the same answer
            route, name, version = known
            return route, Call(request, vault, f"https://{request.host}", name, version)
        route, call = self._resolve(request, vault, method, raw_path)
        if len(self._resolved) >= RESOLVED_PATHS:
            self._resolved.clear()
        self._resolved[(method, raw_path)] = (route, call.name, call.version)
        return route, call

    def _resolve(
        self, request: web.Request, vault: Vault, method: str, raw_path: str
    ) -> tuple[Route, Call]:
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) == 2:
            segments = segments[:-1]  # "/keys/" lists like "/keys"
        call = Call(request, vault, f"https://{request.host}")
        candidates = shapes(segments)
        if not candidates:
            raise BadParameter(
                f"No operation {method[:16]} {raw_path[:200]} exists in this API.",
                code="BadParameter",
                status=404 if method == "GET" else 400,
            )
        named = next((m for m in candidates if m.name is not None), None)
        if named is not None:
            what = named.spec.kind.removesuffix("s")
            if named.spec.path.startswith("certificates/issuers/"):
                what = "issuer"
            call.name = check_name(named.name or "", what)
        chosen = next((m for m in candidates if m.spec.method == method), None)
        if chosen is None:
            allowed = sorted({m.spec.method for m in candidates})
            raise MethodNotAllowed(
                f"The method {method[:16]} is not allowed on {raw_path[:200]}; "
                f"use {', '.join(allowed)}.",
                allowed,
            )
        if chosen.version is not None:
            self._versioned(call, chosen.version, chosen.spec.kind.removesuffix("s").capitalize())
        spec = chosen.spec
        route = self._route_of.get(spec)
        if route is None:
            route = Route(
                spec.operation, spec.kind, spec.permission, self._handler(spec), spec.has_body
            )
            self._route_of[spec] = route
        return route, call

    def _handler(self, spec: RouteSpec) -> Handler:
        if spec.handler == "rng":
            return self._rng
        group, _, method = spec.handler.partition(".")
        routes = {"keys": self._keys, "secrets": self._secrets, "certificates": self._certificates}
        handler: Handler = getattr(routes[group], method)
        return handler

    @staticmethod
    def _versioned(call: Call, version: str, not_found: str) -> None:
        if version:
            try:
                check_version(version)
            except BadParameter:
                raise NotFound(
                    f"A {not_found.lower()} with that version was not found.",
                    code=not_found + "NotFound",
                ) from None
        call.version = version or None

    async def _rng(self, call: Call) -> dict[str, Any]:
        count = call.json_body().get("count")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 128:
            raise BadParameter("'count' must be an integer from 1 to 128")
        data = await guarded(self.hsm.random(call.vault.config.name, count))
        return {"value": b64url(data)}


def _api_version(request: web.Request) -> str | None:
    """The api-version query parameter: read straight off the request target when it is
    the only parameter and plainly written (the usual case), else from the parsed query."""
    query = request.raw_path.partition("?")[2]
    if query.startswith("api-version=") and not any(c in query for c in "&%+#;"):
        return query[len("api-version=") :]
    return request.query.get("api-version")


def bearer_challenge(host: str, resource: str | None = None) -> str:
    """The WWW-Authenticate value of a 401.

    The Azure SDKs accept the challenge only when the vault's host ends with
    "." + the resource's host, so the default resource is the vault's parent
    domain: `https://ns.svc:8443` for a vault at `https://vault.ns.svc:8443`.
    """
    if resource is None:
        parent = host.split(".", 1)[1] if "." in host else host
        resource = f"https://{parent}"
    return f'Bearer authorization="https://{host}/strongroom", resource="{resource}"'


def _page_size(call: Call) -> int:
    try:
        size = int(call.request.query.get("maxresults", PAGE_SIZE))
    except ValueError:
        raise BadParameter("'maxresults' must be an integer") from None
    if not 1 <= size <= PAGE_SIZE:
        raise BadParameter(f"'maxresults' must be between 1 and {PAGE_SIZE}")
    return size


def _skiptoken(call: Call) -> str:
    raw = call.request.query.get("$skiptoken")
    if not raw:
        return ""
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadParameter("'$skiptoken' is invalid") from None


def _next_link(call: Call, size: int, position: str | None) -> str | None:
    if position is None:
        return None
    token = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")
    return (
        f"{call.base}{quote(call.request.path)}?api-version="
        f"{call.request.query.get('api-version')}&maxresults={size}&$skiptoken={token}"
    )


def page(call: Call, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of a list held in memory (an object's versions), with a nextLink."""
    size = _page_size(call)
    token = _skiptoken(call)
    try:
        start = int(token) if token else 0
    except ValueError:
        raise BadParameter("'$skiptoken' is invalid") from None
    if start < 0:
        raise BadParameter("'$skiptoken' is invalid")
    chunk = items[start : start + size]
    more = start + size < len(items)
    return {"value": chunk, "nextLink": _next_link(call, size, str(start + size) if more else None)}


async def page_objects(call: Call, store: "ObjectStore[Any]", *, deleted: bool) -> dict[str, Any]:
    """One page of a vault's objects of one kind, read from the storage by name: the
    nextLink carries the last name, so no page costs more with a larger vault."""
    size = _page_size(call)
    entries, position = await store.page(deleted=deleted, after=_skiptoken(call), limit=size)
    items = [
        store.item(call.base, e, e.versions[-1])  # type: ignore[attr-defined]
        for e in entries
        if e.versions
    ]
    return {"value": items, "nextLink": _next_link(call, size, position)}


def key_body(call: Call) -> dict[str, Any]:
    """A key create, import or update body, refused if it asks for what no strongroom key
    is."""
    body = call.json_body()
    attributes = body.get("attributes")
    if isinstance(attributes, dict) and attributes.get("exportable") not in (None, False):
        raise BadParameter(
            "'attributes.exportable' can only be false: a strongroom key never leaves its HSM"
        )
    if body.get("release_policy") is not None:
        raise BadParameter("'release_policy' has no use: a strongroom key is never released")
    return body


def crypto_body(call: Call) -> dict[str, Any]:
    """An encrypt, decrypt, wrap or unwrap body whose optional iv, aad and tag, when given,
    are strings (an RSA algorithm uses none of them, but takes no other type either)."""
    body = call.json_body()
    for field in ("iv", "aad", "tag"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadParameter(f"'{field}' must be a base64url string")
    return body


class KeyRoutes:
    async def list(self, call: Call) -> dict[str, Any]:
        return await page_objects(call, call.vault.keys, deleted=False)

    async def versions(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry = await store.live(call.name)
        return page(call, [store.item(call.base, entry, v) for v in entry.versions])

    async def get(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.live_version(call.name, call.version)
        return store.bundle(call.base, entry, version)

    async def create(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.create(call.name, key_body(call))
        return store.bundle(call.base, entry, version)

    async def import_key(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.import_key(call.name, key_body(call))
        return store.bundle(call.base, entry, version)

    async def update(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.update(call.name, call.version, key_body(call))
        return store.bundle(call.base, entry, version)

    async def delete(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry = await store.delete(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def list_deleted(self, call: Call) -> dict[str, Any]:
        return await page_objects(call, call.vault.keys, deleted=True)

    async def get_deleted(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry = await store.deleted(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def purge(self, call: Call) -> None:
        await call.vault.keys.purge(call.name)

    async def recover(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry = await store.recover(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def backup(self, call: Call) -> dict[str, Any]:
        return {"value": await call.vault.keys.backup(call.name)}

    async def restore(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.restore(call.json_body())
        return store.bundle(call.base, entry, version)

    async def rotate(self, call: Call) -> dict[str, Any]:
        store = call.vault.keys
        entry, version = await store.rotate(call.name)
        return store.bundle(call.base, entry, version)

    async def get_policy(self, call: Call) -> dict[str, Any]:
        return await call.vault.keys.rotation_policy(call.base, call.name)

    async def set_policy(self, call: Call) -> dict[str, Any]:
        return await call.vault.keys.set_rotation_policy(call.base, call.name, call.json_body())

    async def _kid(self, call: Call, version: str) -> str:
        entry = await call.vault.keys.live(call.name)
        return f"{call.base}/keys/{entry.name}/{version}"

    async def sign(self, call: Call) -> dict[str, Any]:
        version, signature = await call.vault.keys.sign(call.name, call.version, call.json_body())
        return {"kid": await self._kid(call, version), "value": b64url(signature)}

    async def verify(self, call: Call) -> dict[str, Any]:
        return {"value": await call.vault.keys.verify(call.name, call.version, call.json_body())}

    async def encrypt(self, call: Call) -> dict[str, Any]:
        version, result = await call.vault.keys.encrypt(
            call.name, call.version, crypto_body(call), caller_may_decrypt=call.may_decrypt
        )
        return {"kid": await self._kid(call, version)} | result

    async def decrypt(self, call: Call) -> dict[str, Any]:
        version, plain = await call.vault.keys.decrypt(call.name, call.version, crypto_body(call))
        return {"kid": await self._kid(call, version), "value": b64url(plain)}

    async def wrapkey(self, call: Call) -> dict[str, Any]:
        version, result = await call.vault.keys.encrypt(
            call.name, call.version, crypto_body(call), op="wrapKey"
        )
        return {"kid": await self._kid(call, version)} | result

    async def unwrapkey(self, call: Call) -> dict[str, Any]:
        version, plain = await call.vault.keys.decrypt(
            call.name, call.version, crypto_body(call), op="unwrapKey"
        )
        return {"kid": await self._kid(call, version), "value": b64url(plain)}


class SecretRoutes:
    async def list(self, call: Call) -> dict[str, Any]:
        return await page_objects(call, call.vault.secrets, deleted=False)

    async def versions(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry = await store.live(call.name)
        return page(call, [store.item(call.base, entry, v) for v in entry.versions])

    async def get(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry, version = await store.readable(
            call.name, call.version, call.request.query.get("outContentType")
        )
        return store.bundle(call.base, entry, version, with_value=True)

    async def set(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry, version = await store.set(call.name, call.json_body())
        return store.bundle(call.base, entry, version, with_value=True)

    async def update(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry, version = await store.update(call.name, call.version, call.json_body())
        return store.bundle(call.base, entry, version, with_value=False)

    async def delete(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry = await store.delete(call.name)
        return store.bundle(call.base, entry, entry.versions[-1], with_value=False)

    async def list_deleted(self, call: Call) -> dict[str, Any]:
        return await page_objects(call, call.vault.secrets, deleted=True)

    async def get_deleted(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry = await store.deleted(call.name)
        return store.bundle(call.base, entry, entry.versions[-1], with_value=False)

    async def purge(self, call: Call) -> None:
        await call.vault.secrets.purge(call.name)

    async def recover(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry = await store.recover(call.name)
        return store.bundle(call.base, entry, entry.versions[-1], with_value=False)

    async def backup(self, call: Call) -> dict[str, Any]:
        return {"value": await call.vault.secrets.backup(call.name)}

    async def restore(self, call: Call) -> dict[str, Any]:
        store = call.vault.secrets
        entry, version = await store.restore(call.json_body())
        return store.bundle(call.base, entry, version, with_value=False)


def _include_pending(call: Call) -> None:
    """Refuse an includePending that is no boolean (certificates still pending are not
    listed either way: a list holds certificates with a version)."""
    value = call.request.query.get("includePending")
    if value is not None and value.lower() not in ("true", "false"):
        raise BadParameter("'includePending' must be true or false")


class CertificateRoutes:
    async def list(self, call: Call) -> dict[str, Any]:
        _include_pending(call)
        return await page_objects(call, call.vault.certificates, deleted=False)

    async def versions(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.live(call.name)
        return page(call, [store.item(call.base, entry, v) for v in entry.versions])

    async def get(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry, version = await store.live_version(call.name, call.version)
        return store.bundle(call.base, entry, version)

    async def create(self, call: Call) -> web.Response:
        store = call.vault.certificates
        entry = await store.create(call.name, call.json_body())
        # Key Vault answers a create with the operation in progress, whatever happens next;
        # the SDK's poller reads the outcome from the pending operation (here already done).
        operation = store.pending_wire(call.base, entry)
        operation.pop("target", None)
        operation["status"] = "inProgress"
        body = _compact_json(operation).encode()
        return web.Response(
            status=202,
            body=body,
            content_type="application/json",
            headers={"Location": f"{call.base}/certificates/{entry.name}/pending"},
        )

    async def import_(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.import_(call.name, call.json_body())
        return store.bundle(call.base, entry, entry.current)

    async def update(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry, version = await store.update(call.name, call.version, call.json_body())
        return store.bundle(call.base, entry, version)

    async def get_policy(self, call: Call) -> dict[str, Any]:
        # A certificate still waiting for its first signature has its policy already.
        store = call.vault.certificates
        entry = await store.find(call.name)
        if entry is None or entry.deletion is not None or not (entry.versions or entry.pending):
            raise store.not_found(call.name)
        return store.policy(call.base, entry)

    async def set_policy(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        return store.policy(call.base, await store.update_policy(call.name, call.json_body()))

    async def get_pending(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        return store.pending_wire(call.base, await store.get_pending(call.name))

    async def cancel_pending(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.cancel_pending(call.name, call.json_body())
        return store.pending_wire(call.base, entry)

    async def delete_pending(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        return store.pending_wire(call.base, await store.delete_pending(call.name))

    async def merge(self, call: Call) -> web.Response:
        store = call.vault.certificates
        entry = await store.merge(call.name, call.json_body())
        body = _compact_json(store.bundle(call.base, entry, entry.current)).encode()
        return web.Response(status=201, body=body, content_type="application/json")

    async def delete(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.delete(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def list_deleted(self, call: Call) -> dict[str, Any]:
        _include_pending(call)
        return await page_objects(call, call.vault.certificates, deleted=True)

    async def get_deleted(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.deleted(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def purge(self, call: Call) -> None:
        await call.vault.certificates.purge(call.name)

    async def recover(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.recover(call.name)
        return store.bundle(call.base, entry, entry.current)

    async def backup(self, call: Call) -> dict[str, Any]:
        return {"value": await call.vault.certificates.backup(call.name)}

    async def restore(self, call: Call) -> dict[str, Any]:
        store = call.vault.certificates
        entry = await store.restore(call.json_body())
        return store.bundle(call.base, entry, entry.current)

    async def get_contacts(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        return meta.contacts_wire(call.base, await meta.get_contacts())

    async def set_contacts(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        return meta.contacts_wire(call.base, await meta.set_contacts(call.json_body()))

    async def delete_contacts(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        return meta.contacts_wire(call.base, await meta.delete_contacts())

    async def list_issuers(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        issuers = await meta.issuers()
        items = [
            {"id": f"{call.base}/certificates/issuers/{name}", "provider": issuer["provider"]}
            for name, issuer in sorted(issuers.items(), key=lambda i: i[0].lower())
        ]
        return page(call, items)

    async def get_issuer(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        name, issuer = await meta.get_issuer(call.name)
        return meta.issuer_wire(call.base, name, issuer)

    async def set_issuer(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        issuer = await meta.set_issuer(call.name, call.json_body(), update=False)
        return meta.issuer_wire(call.base, call.name, issuer)

    async def update_issuer(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        issuer = await meta.set_issuer(call.name, call.json_body(), update=True)
        return meta.issuer_wire(call.base, call.name, issuer)

    async def delete_issuer(self, call: Call) -> dict[str, Any]:
        meta = call.vault.certificate_meta
        name, issuer = await meta.delete_issuer(call.name)
        return meta.issuer_wire(call.base, name, issuer)


async def healthz(request: web.Request) -> web.Response:
    plane: DataPlane = request.app["plane"]
    try:
        await plane.hsm.ping()
    except HsmError:
        return web.json_response({"status": "hsm unavailable"}, status=503)
    return web.json_response({"status": "ok"})


def make_app(
    plane: DataPlane,
    management_routes: list[web.RouteDef] | None = None,
    metrics: ServerMetrics | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[answers])
    app["plane"] = plane
    if metrics is not None:
        app[METRICS] = metrics
    app.router.add_get("/healthz", healthz, name="Healthz")
    app.router.add_routes(management_routes or [])
    # `.` stops at a newline: a name holding %0A would miss the data plane.
    app.router.add_route("*", r"/{tail:[\s\S]*}", gated(plane.identify, plane.handle))
    return app
