"""The data plane's answers when a token cannot be checked now, or is no token at all."""

import asyncio
from pathlib import Path

from aiohttp.test_utils import make_mocked_request

from strongroom.hsm.client import HsmClient
from strongroom.storage import SqliteStorage
from strongroom.vault.app import DataPlane
from strongroom.vault.auth import Throttled
from strongroom.vault.config import ServerConfig, VaultConfig
from strongroom.vault.middleware import answers, gated

VAULT = VaultConfig("dev", ("localhost",))


class Busy:
    """An authenticator whose review budget is spent."""

    def __init__(self) -> None:
        self.calls = 0

    async def authenticate(self, token: str, vault: VaultConfig) -> str:
        self.calls += 1
        raise Throttled("Too many bearer tokens are being checked; retry shortly.", 1)


def test_a_spent_review_budget_answers_429_with_retry_after() -> None:
    busy = Busy()
    plane = DataPlane(
        ServerConfig((VAULT,)),
        HsmClient(Path("/nonexistent")),
        SqliteStorage(Path("/nonexistent/records.db")),
        busy,
    )
    request = make_mocked_request(
        "GET",
        "/secrets?api-version=7.5",
        headers={"Host": "localhost", "Authorization": "Bearer a.b.c"},
    )
    response = asyncio.run(answers(request, gated(plane.identify, plane.handle)))
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert busy.calls == 1
