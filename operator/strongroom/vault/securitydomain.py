"""The pool's security domain over HTTPS, as Azure Managed HSM serves it.

Served by the pool's vault server on every host name it answers (Managed HSM serves them on
the HSM's own host; here the pool's endpoint, `https://<pool>-pool.<ns>.svc`, and in
`strongroom dev` `https://localhost:<port>`), beside the management API:

- `POST /securitydomain/download`: activate a new pool; 202 with the blob and an
  `Azure-AsyncOperation` to `GET /securitydomain/download/pending`.
- `GET /securitydomain/upload`: the transfer key of a pool awaiting a restore.
- `POST /securitydomain/upload`: restore; 202 with `status` and `Azure-AsyncOperation` to
  `GET /securitydomain/upload/pending`.

Who may: the pool's administrator by its TLS client certificate (the operator), or a bearer
token of a subject the server's config names in `securityOfficers` (in `strongroom dev`, the
dev token's subject). Activating chooses who can ever recover the pool, and restoring gives
the pool every key of the domain: it is the pool's administrators' act, never a vault's
callers', whatever their permissions in a vault.

The work is the HSM sidecar's (hsm/domain.py): the root secret, the shares, the transfer key
and the restore never pass through this process in the clear. This module checks requests
early (so that every refusal is a clear 400 before the HSM is asked), answers in Key Vault's
shapes and has the data plane load its vaults once the pool is activated.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..securitydomain import document
from .app import DataPlane, bearer_challenge
from .config import ServerConfig, VaultConfig
from .errors import BadParameter, ChallengeNeeded, Forbidden, NotFound, Unauthorized, VaultError
from .middleware import audit, gated
from .store import guarded

PREFIX = "/securitydomain"
# What Managed HSM's clients send: the Python SDK 2025-07-01 (and 7.5, 7.6), the CLI and
# PowerShell older ones.
API_VERSIONS = frozenset(
    {"7.2-preview", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-06-01", "2025-07-01"}
)
RETRY_AFTER_SECONDS = 1
POOL_SUBJECT = "(pool)"  # the audit line's vault for pool-level operations; no vault's name
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=_compact_json(body).encode(),
        content_type="application/json",
        headers=headers,
    )


class SecurityDomain:
    def __init__(self, plane: DataPlane, config: ServerConfig) -> None:
        self.plane = plane
        self.officers = frozenset(config.security_officers)
        # Bearer tokens are checked as for a vault whose URI is the pool's audience.
        self._pool = VaultConfig(POOL_SUBJECT, (), audience=config.pool_audience)
        self._last_upload_failure: str | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(f"{PREFIX}/download", self._gated("SecurityDomainDownload", self.download)),
            web.get(
                f"{PREFIX}/download/pending",
                self._gated("SecurityDomainDownloadStatus", self.download_status, True),
            ),
            web.get(
                f"{PREFIX}/upload", self._gated("SecurityDomainTransferKey", self.transfer_key)
            ),
            web.post(f"{PREFIX}/upload", self._gated("SecurityDomainUpload", self.upload)),
            web.get(
                f"{PREFIX}/upload/pending",
                self._gated("SecurityDomainUploadStatus", self.upload_status, True),
            ),
        ]

    def _gated(
        self,
        operation: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        version_optional: bool = False,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def gate(request: web.Request) -> None:
            record = audit(request)
            record.operation = operation
            record.vault = POOL_SUBJECT
            record.caller = await self._security_officer(request)
            version = request.query.get("api-version")
            if (version is not None or not version_optional) and version not in API_VERSIONS:
                raise BadParameter(
                    f"The specified version ({str(version)[:32]}) is not recognized. Consider "
                    f"using one of: {', '.join(sorted(API_VERSIONS))}."
                )

        return gated(gate, handler)

    async def _security_officer(self, request: web.Request) -> str:
        admin = self.plane.admin
        if admin.matches(request):
            return admin.caller
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = bearer_challenge(request.host)
        if scheme.lower() != "bearer" or not token.strip():
            raise ChallengeNeeded(challenge, "The request needs a bearer token.")
        try:
            subject = await self.plane.authenticator.authenticate(token.strip(), self._pool)
        except Unauthorized as exc:
            raise ChallengeNeeded(challenge, exc.message) from None
        if subject not in self.officers:
            raise Forbidden(
                f"The caller {subject!r} is not a security officer of this pool: the security "
                "domain is the pool's administrator's (its client certificate) and the "
                "subjects the server's config names in 'securityOfficers'.",
                code="Forbidden",
            )
        return subject

    @staticmethod
    def _status_link(request: web.Request, what: str) -> dict[str, str]:
        version = request.query.get("api-version", "7.5")
        return {
            "Azure-AsyncOperation": (
                f"https://{request.host}{PREFIX}/{what}/pending?api-version={version}"
            ),
            "Retry-After": str(RETRY_AFTER_SECONDS),
        }

    async def download(self, request: web.Request) -> web.Response:
        body = await DataPlane._read_json(request)
        try:
            _, required = document.read_certificate_request(body)
        except document.DomainError as exc:
            raise BadParameter(f"The security domain download is refused: {exc}.") from None
        # Only the fields the HSM reads cross the socket.
        asked = {"certificates": body["certificates"], "required": required}
        blob = await guarded(self.plane.hsm.domain_download(asked))
        await self.plane.domain_changed()
        return _json({"value": blob}, 202, self._status_link(request, "download"))

    async def download_status(self, request: web.Request) -> web.Response:
        state = await guarded(self.plane.hsm.domain_state())
        if state.get("state") == "activated":
            return _json(
                {
                    "status": "Success",
                    "status_details": "The pool is activated: its security domain was downloaded.",
                }
            )
        raise NotFound(
            "No security domain download was made on this pool.",
            code="SecurityDomainOperationNotFound",
        )

    async def transfer_key(self, request: web.Request) -> web.Response:
        key = await guarded(self.plane.hsm.domain_transfer_key())
        return _json({"key_format": "jwk", "transfer_key": key})

    async def upload(self, request: web.Request) -> web.Response:
        body = await DataPlane._read_json(request)
        value = body.get("value")
        try:
            if not isinstance(value, str):
                raise BadParameter(
                    "'value' must be the restore blob: the security domain encrypted for this "
                    "pool's transfer key, as JSON text."
                )
            try:
                document.read_upload(value)
            except document.DomainError as exc:
                raise BadParameter(f"The security domain upload is refused: {exc}.") from None
            result = await guarded(self.plane.hsm.domain_upload(value))
        except VaultError as exc:
            self._last_upload_failure = exc.message
            raise
        self._last_upload_failure = None
        await self.plane.domain_changed()
        return _json(
            {
                "status": str(result.get("status", "Success")),
                "status_details": str(result.get("status_details", "")),
            },
            202,
            self._status_link(request, "upload"),
        )

    async def upload_status(self, request: web.Request) -> web.Response:
        state = await guarded(self.plane.hsm.domain_state())
        if state.get("state") == "restored":
            return _json(
                {
                    "status": "Success",
                    "status_details": "The security domain is restored; the pool is activated.",
                }
            )
        if self._last_upload_failure is not None and state.get("state") == "awaiting":
            return _json({"status": "Failed", "status_details": self._last_upload_failure})
        raise NotFound(
            "No security domain upload was made on this pool.",
            code="SecurityDomainOperationNotFound",
        )
