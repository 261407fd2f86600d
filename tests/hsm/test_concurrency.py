"""16 concurrent clients signing for 30 s through one vault: zero errors, zero crashes, and
every signature verifies with the key's public half.

Set STRONGROOM_SOAK_SECONDS to run longer or shorter.
"""

import asyncio
import base64
import hashlib
import os
import ssl
import time
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .conftest import DevServer

CLIENTS = 16
SECONDS = float(os.environ.get("STRONGROOM_SOAK_SECONDS", "30"))
DIGEST = hashlib.sha256(b"soak").digest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def as_int(text: str) -> int:
    return int.from_bytes(unb64(text), "big")


def verifier(jwk: dict[str, Any]) -> Any:
    """A function that raises InvalidSignature unless a signature of DIGEST is the key's."""
    if jwk["kty"].startswith("RSA"):
        rsa_key = rsa.RSAPublicNumbers(as_int(jwk["e"]), as_int(jwk["n"])).public_key()

        def verify_rs256(signature: bytes) -> None:
            rsa_key.verify(signature, DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

        return verify_rs256
    ec_key = ec.EllipticCurvePublicNumbers(
        as_int(jwk["x"]), as_int(jwk["y"]), ec.SECP256R1()
    ).public_key()

    def verify_es256(signature: bytes) -> None:
        if len(signature) != 64:  # JWS: r and s, 32 bytes each
            raise InvalidSignature(f"an ES256 signature of {len(signature)} bytes")
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = utils.encode_dss_signature(r, s)
        ec_key.verify(der, DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    return verify_es256


async def soak(dev: DevServer) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
    """The keys' JWKs by kid, every (kid, signature) answered, and every error."""
    context = ssl.create_default_context(cafile=dev.ca)
    headers = {"Authorization": f"Bearer {dev.token}"}
    query = "?api-version=7.6"
    async with aiohttp.ClientSession(headers=headers) as setup:
        keys = {}
        for name, body in (
            ("soak-rsa", {"kty": "RSA-HSM", "key_size": 2048}),
            ("soak-ec", {"kty": "EC-HSM", "crv": "P-256"}),
        ):
            async with setup.post(
                f"{dev.url}/keys/{name}/create{query}", json=body, ssl=context
            ) as response:
                assert response.status == 200, await response.text()
                jwk = (await response.json())["key"]
                keys[jwk["kid"]] = jwk
    kids = sorted(keys)
    digest = b64(DIGEST)
    errors: list[str] = []
    signatures: list[tuple[str, str]] = []
    deadline = time.monotonic() + SECONDS

    async def client(index: int) -> None:
        kid = kids[index % 2]
        alg = "RS256" if "soak-rsa" in kid else "ES256"
        async with aiohttp.ClientSession(headers=headers) as session:  # keep-alive per client
            while time.monotonic() < deadline:
                async with session.post(
                    f"{kid}/sign{query}", json={"alg": alg, "value": digest}, ssl=context
                ) as response:
                    if response.status != 200:
                        errors.append(f"{response.status} {await response.text()}")
                        continue
                    answer = await response.json()
                    if answer.get("kid") != kid:
                        errors.append(f"asked {kid}, answered for {answer.get('kid')}")
                    signatures.append((kid, answer["value"]))

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return keys, signatures, errors


def test_sixteen_clients_sign_concurrently_without_errors(dev: DevServer) -> None:
    keys, signatures, errors = asyncio.run(soak(dev))
    assert errors == []
    count = len(signatures)
    assert count > SECONDS * 50, f"only {count} signatures in {SECONDS}s"
    assert {kid for kid, _ in signatures} == set(keys)  # both keys were used
    verify = {kid: verifier(jwk) for kid, jwk in keys.items()}
    bad = []
    for kid, signature in signatures:
        try:
            verify[kid](unb64(signature))
        except InvalidSignature:
            bad.append(f"{kid}: {signature}")
    assert bad == [], f"{len(bad)} of {count} signatures do not verify, e.g. {bad[:3]}"
    assert dev.alive()
    print(f"{count} signatures in {SECONDS:.0f}s from {CLIENTS} clients, all verified")
