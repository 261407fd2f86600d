"""The operator's client of each pool's management API (/_strongroom/v1/ on the vault server)."""

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from .errors import PoolApiError

PREFIX = "/_strongroom/v1"


class PoolApi:
    """One HTTP session for every pool; trusts the operator's CA; sends the operator's token."""

    def __init__(self, ca_pem: str, token_file: Path, timeout: float = 30.0) -> None:
        self._ssl = ssl.create_default_context(cadata=ca_pem)
        self._token_file = token_file
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def _call(self, method: str, endpoint: str, path: str, body: Any = None) -> Any:
        token = self._token_file.read_text().strip()  # re-read: the kubelet rotates it
        async with self._session.request(
            method,
            f"{endpoint}{PREFIX}{path}",
            data=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ssl=self._ssl,
        ) as response:
            raw = await response.read()
            answer = json.loads(raw) if raw else None
            if response.status >= 300:
                error = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
                raise PoolApiError(
                    response.status, str(error.get("code", "")), str(error.get("message", ""))
                )
            return answer

    async def health(self, endpoint: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", endpoint, "/health")
        return answer

    async def put_vault(self, endpoint: str, name: str, config: dict[str, Any]) -> None:
        await self._call("PUT", endpoint, f"/vaults/{name}", config)

    async def delete_vault(self, endpoint: str, name: str) -> None:
        await self._call("DELETE", endpoint, f"/vaults/{name}")

    async def close(self) -> None:
        await self._session.close()
