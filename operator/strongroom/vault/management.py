"""The pool's management API under /_strongroom/v1/, for the operator only.

Callers authenticate with a bearer token like any other and must be one of
the server's admin subjects (the operator's ServiceAccount). A vault's config
is kept in the vault's own token, so the vault is served again after a restart.
"""

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..hsm.errors import HsmError
from .app import VAULT_RECORD, DataPlane
from .audit import AuditRecord
from .config import VaultConfig
from .errors import BadParameter, Conflict, Forbidden, NotFound, Unauthorized, VaultError, from_hsm

PREFIX = "/_strongroom/v1"
# A vault's name labels its PKCS#11 token (32 characters at most) and a Service (a DNS label).
VAULT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?")

Handler = Callable[[web.Request, str], Awaitable[tuple[int, Any]]]


class Management:
    def __init__(self, plane: DataPlane, admin_subjects: tuple[str, ...]) -> None:
        self.plane = plane
        self.admin_subjects = frozenset(admin_subjects)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/health", self._wrap("Health", self.health)),
            web.get(f"{PREFIX}/vaults", self._wrap("VaultList", self.list_vaults)),
            web.get(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultGet", self.get_vault)),
            web.put(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultPut", self.put_vault)),
            web.delete(f"{PREFIX}/vaults/{{name}}", self._wrap("VaultDelete", self.delete_vault)),
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
                "",
                "",
                status,
                round((time.perf_counter() - started) * 1000, 2),
            ).emit()
            if body is None:
                return web.Response(status=status)
            return web.json_response(body, status=status)

        return handle

    async def _admin(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The management API needs a bearer token.")
        subject = await self.plane.authenticator.authenticate(token.strip())
        if subject not in self.admin_subjects:
            raise Forbidden(f"The caller {subject!r} may not use the management API.")
        return subject

    async def health(self, request: web.Request, _: str) -> tuple[int, Any]:
        platform = await self.plane.hsm.call("platform")
        return 200, {"status": "ok", "hsmPlatform": platform, "vaults": sorted(self.plane.vaults)}

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
        await self.plane.hsm.call("ensure_vault", vault=name)
        await self.plane.hsm.call(
            "put_record",
            vault=name,
            name=VAULT_RECORD,
            value=json.dumps(config.raw(), sort_keys=True).encode(),
        )
        await self.plane.serve_vault(config)
        return (200 if current is not None else 201), config.raw()

    async def delete_vault(self, request: web.Request, name: str) -> tuple[int, Any]:
        """Stop serving a vault. Its token and keys stay: serving it again finds them."""
        name = _vault_name(name)
        if name in self.plane.vaults:
            self.plane.stop_serving(name)
        if await self.plane.hsm.call("has_vault", vault=name):
            await self.plane.hsm.call("delete_record", vault=name, name=VAULT_RECORD)
        return 204, None


def _vault_name(name: str) -> str:
    if not VAULT_NAME.fullmatch(name):
        raise BadParameter(
            "A vault's name is 1-32 lowercase letters, digits and dashes, starting with a letter."
        )
    return name
