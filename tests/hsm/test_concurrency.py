"""16 concurrent clients signing for 30 s through one vault: zero errors, zero crashes.

Set STRONGROOM_SOAK_SECONDS to run longer or shorter.
"""

import asyncio
import base64
import hashlib
import os
import ssl
import time

import aiohttp

from .conftest import DevServer

CLIENTS = 16
SECONDS = float(os.environ.get("STRONGROOM_SOAK_SECONDS", "30"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def soak(dev: DevServer) -> tuple[int, list[str]]:
    context = ssl.create_default_context(cafile=dev.ca)
    headers = {"Authorization": f"Bearer {dev.token}"}
    query = "?api-version=7.6"
    async with aiohttp.ClientSession(headers=headers) as setup:
        kids = []
        for name, body in (
            ("soak-rsa", {"kty": "RSA-HSM", "key_size": 2048}),
            ("soak-ec", {"kty": "EC-HSM", "crv": "P-256"}),
        ):
            async with setup.post(
                f"{dev.url}/keys/{name}/create{query}", json=body, ssl=context
            ) as response:
                assert response.status == 200
                kids.append((await response.json())["key"]["kid"])
    digest = b64(hashlib.sha256(b"soak").digest())
    errors: list[str] = []
    count = 0
    deadline = time.monotonic() + SECONDS

    async def client(index: int) -> None:
        nonlocal count
        kid = kids[index % 2]
        alg = "RS256" if "soak-rsa" in kid else "ES256"
        async with aiohttp.ClientSession(headers=headers) as session:  # keep-alive per client
            while time.monotonic() < deadline:
                async with session.post(
                    f"{kid}/sign{query}", json={"alg": alg, "value": digest}, ssl=context
                ) as response:
                    if response.status != 200:
                        errors.append(f"{response.status} {await response.text()}")
                    else:
                        count += 1

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return count, errors


def test_sixteen_clients_sign_concurrently_without_errors(dev: DevServer) -> None:
    count, errors = asyncio.run(soak(dev))
    assert errors == []
    assert count > SECONDS * 50, f"only {count} signatures in {SECONDS}s"
    assert dev.alive()
    print(f"{count} signatures in {SECONDS:.0f}s from {CLIENTS} clients")
