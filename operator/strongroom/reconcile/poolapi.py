"""The operator's client of each pool's management API (/_strongroom/v1/ on the vault server)."""

import json
import ssl
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from ..api import management as wire
from ..api.management import PREFIX
from ..tls import OPERATOR_CLIENT_NAME, Issued, issue_client_cert, load_cert_chain_pem
from .errors import PoolApiError

Answer = TypeVar("Answer", bound=wire.WireModel)
API_VERSION = "7.5"  # of the data plane's Azure Key Vault API
CLIENT_CERT_DAYS = 30
BACKUP_TIMEOUT = 900.0  # a backup copies the whole token store and record storage
CONNECTIONS_PER_POOL = 16
KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True)
class VaultAddress:
    """Where the operator reaches a vault: its pool's endpoint, and the vault's name and host.

    Data-plane calls go to the pool's endpoint with the vault's host in the Host header,
    which is how the vault server picks the vault (both names are in the pool's certificate).
    """

    endpoint: str
    vault: str
    host: str


class PoolApi:
    """One HTTP session for every pool; trusts the operator's CA for pool certificates and
    presents the operator's client certificate, issued in memory from `client_ca` and
    renewed when half its life is gone. It never sends a bearer token: the certificate is
    the operator's only credential, and a pool that receives it cannot replay it."""

    def __init__(self, ca_pem: str, client_ca: Issued, timeout: float = 30.0) -> None:
        self._ssl = ssl.create_default_context(cadata=ca_pem)
        self._client_ca = client_ca
        self._timeout = timeout
        self._renew_at = 0.0
        self._renew_client_cert()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                # As many requests in flight to one pool as help it (its HSM works one
                # operation at a time): more only adds mutual-TLS handshakes and memory on
                # both sides when hundreds of resources are reconciled at once.
                limit_per_host=CONNECTIONS_PER_POOL,
                # Below the pool's header timeout (vault.server.HEADER_TIMEOUT_SECONDS), so
                # that an idle connection is never reused just as the pool closes it.
                keepalive_timeout=KEEPALIVE_SECONDS,
            ),
            # Each request's own time, not its wait for one of those connections: connect
            # and TLS handshake, then the pool's silence, each bounded by `timeout`.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=timeout, sock_read=timeout
            ),
        )

    def _renew_client_cert(self) -> None:
        """Present a new client certificate on new connections; open ones keep theirs, which
        is valid for half its life still."""
        lifetime = CLIENT_CERT_DAYS * 86400
        issued = issue_client_cert(self._client_ca, OPERATOR_CLIENT_NAME, CLIENT_CERT_DAYS)
        load_cert_chain_pem(self._ssl, issued.cert_pem, issued.key_pem)
        self.client_cert_pem = issued.cert_pem
        self._renew_at = time.time() + lifetime / 2

    async def _call(
        self, method: str, endpoint: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        return await self._request(method, f"{endpoint}{PREFIX}{path}", body, timeout=timeout)

    async def _data_plane(
        self, method: str, vault: VaultAddress, path: str, body: Any = None
    ) -> Any:
        url = f"{vault.endpoint}{path}?api-version={API_VERSION}"
        return await self._request(method, url, body, {"Host": vault.host})

    async def _request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        if time.time() >= self._renew_at:
            self._renew_client_cert()
        options: dict[str, Any] = {}
        if timeout is not None:
            # A request the pool works on long (a backup): its silence may last that long.
            options["timeout"] = aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=self._timeout, sock_read=timeout
            )
        async with self._session.request(
            method,
            url,
            data=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"} | (headers or {}),
            ssl=self._ssl,
            **options,
        ) as response:
            raw = await response.read()
            if response.status >= 300:
                try:
                    error = wire.ErrorBody.model_validate_json(raw).error
                except ValidationError:  # not the pool's answer: a proxy's, or none
                    error = wire.ErrorDetail()
                raise PoolApiError(response.status, error.code, error.message)
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                raise PoolApiError(
                    502, "InvalidAnswer", f"{method} {url.split('?')[0]} answered no JSON"
                ) from None

    async def health(self, endpoint: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", endpoint, "/health")
        return answer

    # --- the security domain and backups ------------------------------------------------

    async def download_security_domain(
        self, endpoint: str, certificates: list[dict[str, Any]], required: int
    ) -> None:
        """Activate a new pool (Managed HSM's download, with the operator's certificate).
        The answer's blob is not kept here: the pool holds it until released, and the
        operator reads it from there (held_security_domain), whatever became of this answer."""
        await self._request(
            "POST",
            f"{endpoint}/securitydomain/download?api-version={API_VERSION}",
            {"certificates": certificates, "required": required},
        )

    async def held_security_domain(self, endpoint: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", endpoint, "/securitydomain/download")
        return answer

    async def release_security_domain(self, endpoint: str) -> None:
        await self._call("DELETE", endpoint, "/securitydomain/download")

    async def create_backup(self, endpoint: str, name: str, pool: dict[str, str]) -> dict[str, Any]:
        body = wire.BackupRequest(name=name, pool=wire.BackupPool.model_validate(pool))
        answer: dict[str, Any] = await self._call(
            "POST", endpoint, "/backups", body.wire(), timeout=BACKUP_TIMEOUT
        )
        return answer

    async def list_backups(self, endpoint: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", endpoint, "/backups")
        return answer

    async def delete_backup(self, endpoint: str, name: str) -> None:
        await self._call("DELETE", endpoint, f"/backups/{name}")

    async def put_vault(self, endpoint: str, name: str, config: dict[str, Any]) -> None:
        await self._call("PUT", endpoint, f"/vaults/{name}", config)

    async def delete_vault(self, endpoint: str, name: str) -> None:
        await self._call("DELETE", endpoint, f"/vaults/{name}")

    async def put_tls(self, endpoint: str, certificate_pem: str, private_key_pem: str) -> None:
        """Make the pool serve this certificate from its next handshake on."""
        update = wire.TlsUpdate(certificate=certificate_pem, private_key=private_key_pem)
        await self._call("PUT", endpoint, "/tls", update.wire())

    async def get_tls(self, endpoint: str) -> dict[str, Any]:
        """What the pool's certificate names (`dnsNames`) and its `notAfter`."""
        answer: dict[str, Any] = await self._call("GET", endpoint, "/tls")
        return answer

    # --- keys and secrets: state and create-once through management, changes through the
    # vault's own API. Answers that could hold a secret value are never returned or kept.

    async def get_key(self, vault: VaultAddress, name: str) -> dict[str, Any] | None:
        return await self._found(f"/vaults/{vault.vault}/keys/{name}", vault)

    async def create_key(
        self, vault: VaultAddress, name: str, owner: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(
            "PUT", vault.endpoint, f"/vaults/{vault.vault}/keys/{name}", body | {"owner": owner}
        )
        return answer

    async def adopt_key(self, vault: VaultAddress, name: str, owner: str) -> dict[str, Any]:
        """Make `owner` the owner of a key that has none (made through the vault's API)."""
        answer: dict[str, Any] = await self._call(
            "PUT",
            vault.endpoint,
            f"/vaults/{vault.vault}/keys/{name}/owner",
            wire.OwnerPut(owner=owner).wire(),
        )
        return answer

    async def update_key_version(
        self, vault: VaultAddress, name: str, version: str, body: dict[str, Any]
    ) -> None:
        await self._data_plane("PATCH", vault, f"/keys/{name}/{version}", body)

    async def set_rotation_policy(
        self, vault: VaultAddress, name: str, policy: dict[str, Any]
    ) -> None:
        await self._data_plane("PUT", vault, f"/keys/{name}/rotationpolicy", policy)

    async def delete_key(self, vault: VaultAddress, name: str) -> None:
        await self._data_plane("DELETE", vault, f"/keys/{name}")

    async def recover_key(self, vault: VaultAddress, name: str) -> None:
        await self._data_plane("POST", vault, f"/deletedkeys/{name}/recover")

    async def get_secret(self, vault: VaultAddress, name: str) -> dict[str, Any] | None:
        return await self._found(f"/vaults/{vault.vault}/secrets/{name}", vault)

    async def create_secret(
        self, vault: VaultAddress, name: str, owner: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Set the secret once: `body` has `generate` (made in the vault) or `value`."""
        answer: dict[str, Any] = await self._call(
            "PUT", vault.endpoint, f"/vaults/{vault.vault}/secrets/{name}", body | {"owner": owner}
        )
        return answer

    async def adopt_secret(self, vault: VaultAddress, name: str, owner: str) -> dict[str, Any]:
        """Make `owner` the owner of a secret that has none (set through the vault's API)."""
        answer: dict[str, Any] = await self._call(
            "PUT",
            vault.endpoint,
            f"/vaults/{vault.vault}/secrets/{name}/owner",
            wire.OwnerPut(owner=owner).wire(),
        )
        return answer

    async def rotate_secret(
        self, vault: VaultAddress, name: str, owner: str, current: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A new generated version if the current one is still `current`; a retry after the
        rotation was made changes nothing (`body` has `generate`, and `contentType`)."""
        answer: dict[str, Any] = await self._call(
            "POST",
            vault.endpoint,
            f"/vaults/{vault.vault}/secrets/{name}/rotate",
            body | {"owner": owner, "ifCurrentVersion": current},
        )
        return answer

    async def delete_secret(self, vault: VaultAddress, name: str) -> None:
        # The answer to a delete holds no value; it is dropped all the same.
        await self._data_plane("DELETE", vault, f"/secrets/{name}")

    async def recover_secret(self, vault: VaultAddress, name: str) -> None:
        await self._data_plane("POST", vault, f"/deletedsecrets/{name}/recover")

    # --- certificates: state and create-once through management, the rest (merge, policy,
    # new versions, delete) through the vault's own API. No answer holds a private key.

    async def get_certificate(self, vault: VaultAddress, name: str) -> dict[str, Any] | None:
        return await self._found(f"/vaults/{vault.vault}/certificates/{name}", vault)

    async def create_certificate(
        self, vault: VaultAddress, name: str, owner: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create the certificate for `owner` unless it exists (`body` has the policy)."""
        answer: dict[str, Any] = await self._call(
            "PUT",
            vault.endpoint,
            f"/vaults/{vault.vault}/certificates/{name}",
            wire.CertificatePut.model_validate(body | {"owner": owner}).wire(),
        )
        return answer

    async def new_certificate_version(
        self, vault: VaultAddress, name: str, policy: dict[str, Any]
    ) -> None:
        """Issue a new version (Self) or start a new signing request (Unknown) with
        `policy`, which becomes the certificate's policy."""
        await self._data_plane("POST", vault, f"/certificates/{name}/create", {"policy": policy})

    async def update_certificate_policy(
        self, vault: VaultAddress, name: str, policy: dict[str, Any]
    ) -> None:
        await self._data_plane("PATCH", vault, f"/certificates/{name}/policy", policy)

    async def merge_certificate(self, vault: VaultAddress, name: str, x5c: list[str]) -> None:
        """Complete the pending signing request with the chain signed for it (base64 DER,
        the request's certificate first)."""
        await self._data_plane("POST", vault, f"/certificates/{name}/pending/merge", {"x5c": x5c})

    async def delete_pending_certificate(self, vault: VaultAddress, name: str) -> None:
        await self._data_plane("DELETE", vault, f"/certificates/{name}/pending")

    async def delete_certificate(self, vault: VaultAddress, name: str) -> None:
        # The answer holds the certificate (public) and its policy; it is dropped.
        await self._data_plane("DELETE", vault, f"/certificates/{name}")

    async def recover_certificate(self, vault: VaultAddress, name: str) -> None:
        await self._data_plane("POST", vault, f"/deletedcertificates/{name}/recover")

    async def _found(self, path: str, vault: VaultAddress) -> dict[str, Any] | None:
        """The object's state, or None when the vault has no object of that name."""
        try:
            answer: dict[str, Any] = await self._call("GET", vault.endpoint, path)
        except PoolApiError as exc:
            if exc.status == 404 and exc.code != "VaultNotFound":
                return None
            raise
        return answer

    async def close(self) -> None:
        await self._session.close()


def read_answer(model: type[Answer], raw: object) -> Answer:
    """A pool's answer as the management API model it must be. One that is not fails as a
    pool error (retried), never as an invalid spec: the spec is not what is wrong."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PoolApiError(
            502,
            "InvalidAnswer",
            f"The pool's answer is not a {model.__name__}: {wire.problems(exc)}",
        ) from None
